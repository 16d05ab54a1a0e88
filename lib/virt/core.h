/*
 * The virtual core's own structs, for lib/virt alone (tests/layers.sh fails
 * an include of this header from any other room): the rooms above see them
 * as incomplete types and use the accessors of virt/virt.h.
 */
#ifndef P11P_VIRT_CORE_H
#define P11P_VIRT_CORE_H

#include "virt/virt.h"

#include <stddef.h>

struct p11p_session {
	struct p11p_session_head head; /* first: p11p_shead() */
	/* Its lock (the lock-order note) and references, a futex word (session.c). */
	atomic_uint word;
	/* Guarded by the lock: */
	bool closed;
	bool ops_used;                          /* op.c: an operation began since it was made */
	CK_SESSION_HANDLE be[P11P_MAX_MEMBERS]; /* backend session per member; 0 = none */
	struct p11p_op ops[P11P_OP_KINDS];
	/* When the call in flight started (watchdog; 0: none). Written under the session's lock. */
	_Atomic unsigned long long call_started_ms;
	/* The watchdog counted this call as hung against that member (global lock). */
	bool call_hung;
	size_t call_hung_member;
	/*
	 * object.c: the running find's CKA_EXTRACTABLE, matched here (taken out
	 * of the member's find) on a slot that replicates, as
	 * C_GetAttributeValue shows it (repl_unlocked keys: false); guarded by
	 * the session's lock. 0: not in the template; 1: false wanted; 2: true
	 * wanted.
	 */
	unsigned char find_extr;
	/*
	 * The backend session pool (session.c): be[member] was opened (or
	 * taken from the pool) on member be_member at its handle_gen be_gen;
	 * be_dirty, it may hold state a later session must not inherit (a call
	 * answered with an error, an operation state set, a session moved by
	 * HA), so it is closed, never pooled. Guarded by the session's lock.
	 */
	bool be_dirty;
	bool be_objects; /* it made session objects: set when it is detached (global lock) */
	size_t be_member;
	unsigned long be_gen;

	/* Objects this session created as session objects; guarded by the global lock. */
	CK_OBJECT_HANDLE *owned;
	size_t n_owned, cap_owned;

	struct p11p_session *pool_next; /* in the slot's session_pool */
};
/* p11p_shead() is a cast: the head must stay first. */
_Static_assert(offsetof(struct p11p_session, head) == 0, "the session's head is its first member");

/*
 * Backend sessions kept open for reuse, per member and per kind (R/O, R/W):
 * at most this many each. An open + close of a proxy session then costs the
 * vendor nothing (a network HSM: no round trip). A few are enough for an
 * application that opens and closes sessions one after another; more would
 * only hold token sessions open longer.
 */
#define P11P_BE_POOL 4

/* A pooled backend session: its handle and its member's handle_gen when pooled. */
struct p11p_be_pooled {
	CK_SESSION_HANDLE h;
	unsigned long gen;
};

struct p11p_vslot {
	struct p11p_vslot_head head; /* first: p11p_vhead() */
	/* The rest is guarded by the global lock. */
	char serial[17];    /* virtual serial, stable for the slot */
	CK_USER_TYPE login; /* P11P_NO_USER when logged out */
	unsigned logged_in; /* members the login is established on (bit per member index) */
	/* Each member's handle_gen when its login was established (sessions lost since: unsure). */
	unsigned long login_gen[P11P_MAX_MEMBERS];

	struct p11p_secret *login_pin; /* for replay on another member; NULL: member PIN */
	unsigned long n_sessions, n_rw_sessions;
	bool reported_present; /* for C_WaitForSlotEvent */
	/*
	 * Member order: order[] lists the members new work may go to, first =
	 * highest priority; members not in it have `removed` set (members[]
	 * and n_members: the head). The core reads it to pick a member without
	 * a lock (member.c); set by the core at C_Initialize (the config's
	 * order), then by the HA room only through
	 * p11p_slot_order_set_locked(). Guarded by the global lock.
	 */
	size_t order[P11P_MAX_MEMBERS];
	size_t n_order;
	/* Virtual PIN state (pinstate.c), guarded by the global lock: */
	unsigned long pin_fails;             /* wrong user PINs, as last read or counted */
	struct p11p_overlay_stamp pin_stamp; /* the state file's version read */
	unsigned long long pin_read_ms;      /* when it was read (CLOCK_REALTIME) */
	bool pin_loaded;                     /* pin_fails, pin_stamp are from a read */
	bool pin_damaged;                    /* the file could not be read: every PIN is refused */
	bool pin_local;                      /* no usable file: counted in this process only */
	/*
	 * Closed sessions of this slot, kept for reuse (session.c): pushed
	 * without a lock by the last reference's holder, popped under the
	 * global lock; freed with the state.
	 */
	struct p11p_session *_Atomic session_pool;
	/*
	 * Clean backend sessions of closed proxy sessions, kept open for the
	 * next C_OpenSession on the same member with the same kind ([0] R/O,
	 * [1] R/W): session.c, "the backend session pool". Guarded by the
	 * global lock. Held only while the application holds a session on the
	 * slot (n_sessions > 0): the slot's last close closes them all.
	 */
	struct p11p_be_pooled be_pool[P11P_MAX_MEMBERS][2][P11P_BE_POOL];
	unsigned char n_be_pool[P11P_MAX_MEMBERS][2];
};
_Static_assert(offsetof(struct p11p_vslot, head) == 0, "the slot's head is its first member");

struct p11p_state {
	struct p11p_state_head head; /* first: p11p_sthead() */
	size_t n_backends;
	struct p11p_backend *backends;
	struct p11p_vslot *slots;           /* head.n_slots of them */
	struct p11p_stab *_Atomic sessions; /* written under the global lock (session.c) */
	/* Guarded by the global lock: */
	struct p11p_map objects;       /* (0, handle) -> object */
	struct p11p_map objects_rev;   /* (slot << 8 | member, backend handle) -> object */
	struct p11p_map objects_ident; /* (slot, identity hash) -> token object */
	CK_ULONG next_session, next_object;
	/*
	 * How many objects the HA room's set of keys made copyable for
	 * replication holds (hook repl_unlocked_set_locked; object.c), so that
	 * calls on other objects need not look: written under the global lock,
	 * read without (one load on the hot path).
	 */
	atomic_ulong n_repl_unlocked;
	bool finalizing; /* C_Finalize is waiting for calls in flight (state.c counts them) */
	/* Health probes (ha/health.c): a thread, or inline when the application forbids threads. */
	unsigned long watch_ms; /* watchdog scan period: half the smallest call_timeout; 0: off */
	bool threads_allowed; /* the application lets us create threads (backend/offload.c, probes)
	                       */
	/*
	 * The HA room's probe thread runs (set by its health_start hook before
	 * the state is shared, cleared by health_stop): the core probes inline
	 * when it does not (slot.c). probe_cond wakes that thread (the core
	 * signals it when a member goes down: p11p_signal_locked()).
	 */
	bool probe_thread_running;
	pthread_cond_t probe_cond;
};
_Static_assert(offsetof(struct p11p_state, head) == 0, "the state's head is its first member");

/* Points s's object cache at h as of generation gen, emptied unless it was there already. */
static inline void p11p_ocache_for(struct p11p_session *s, CK_OBJECT_HANDLE h, unsigned long gen)
{
	if (s->head.oc_h != h || s->head.oc_gen != gen) {
		s->head.oc_h = h;
		s->head.oc_gen = gen;
		s->head.oc_bh = 0;
	}
}

struct p11p_object {
	CK_OBJECT_HANDLE handle;
	struct p11p_vslot *slot;
	CK_SESSION_HANDLE owner; /* creating session for session objects, else 0 */
	bool created;            /* made through the proxy in this process (adopt_new), not found */
	bool token;              /* a token object (known when ident is) */
	struct p11p_identity *ident;           /* NULL: stays on the member it was found on */
	CK_OBJECT_HANDLE be[P11P_MAX_MEMBERS]; /* backend handle per member; 0 = unknown */
	unsigned long gen[P11P_MAX_MEMBERS];   /* the member's handle_gen when be[] was learnt */
	/*
	 * The virtual keys' data (vkeys/vkey.c: the token key's binding to its
	 * record; NULL: not looked at yet), guarded by the global lock; freed
	 * through p11p_hook_vkey_object_free().
	 */
	struct p11p_vkbind *vk;
};

#endif
