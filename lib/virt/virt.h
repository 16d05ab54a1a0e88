/*
 * Virtualization: virtual slots, proxy sessions and proxy object handles.
 *
 * Locking: the lock-order note. Every lock of the library, outermost first;
 * a thread holding one may take only locks below it:
 *   1. g_init_lock (state.c): serializes C_Initialize and C_Finalize;
 *   2. a session's lock (a bit of its futex `word`, which also counts its
 *      references, session.c): held across backend calls on that session
 *      (the only lock held across a vendor call: PKCS#11 forbids concurrent
 *      use of one session anyway);
 *   3. pool_lock (backend/offload.c): the worker pool; the hung() hook of an
 *      abandoned call runs under it and takes the global lock;
 *   4. the global table lock, p11p_lock() (state.c p11p_g_lock, a futex
 *      word with a sequence that lets readers do without it: p11p_read_begin()):
 *      never held across a backend call or a wait on one;
 *   5. leaves, which take no other lock: g_wait (state.c: condition waits
 *      under the global lock; a waiter takes it before letting the global
 *      lock go and lets it go before taking that back; p11p_signal_locked()
 *      and fork take it under the global lock); an index handle's `db_mu`
 *      (its store connection, held across statements) then its `mu` (the
 *      in-memory copy, never held across a statement) (index/store.c), a
 *      slot generator's `lock` (crypto/rng.c: never held across the HSM
 *      callback), ossl_lock (base/ossl.c), a slot's PIN state file's
 *      flock(2) (pinstate.c: taken with at most a session's lock held,
 *      never under the global lock, and waited for 2 s at most). Messages
 *      (base/log.c) take no lock: they may be written under any of these.
 * The CLI's writers also take flock(2) on <state_dir>/slots/.lock (order.c)
 * before any of these. Functions named *_locked expect the global lock held.
 * A call on a session takes no lock but the session's: it enters the state
 * (state.c: p11p_g_entry, its thread's shard of p11p_g_busy), finds the
 * session (struct p11p_stab) and its last object (struct p11p_session_head's
 * cache, checked against the object and index generations) with atomics
 * alone; each of those says who writes it, under which lock. A new session's
 * member is picked without a lock too (member.c p11p_member_pick(),
 * p11p_read_begin()): opening a session and closing it take the global lock
 * once each, and once more to open a backend session when the slot's backend
 * session pool (guarded by the global lock, struct p11p_vslot be_pool) has
 * none, or to give it a clean one at close.
 *
 * Handle spaces: virtual slot ids are the slot's position in the config;
 * session handles start at P11P_SESSION_BASE and object handles at
 * P11P_OBJECT_BASE; no backend handle value ever reaches the application.
 */
#ifndef P11P_VIRT_H
#define P11P_VIRT_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "backend/call.h"
#include "base/clock.h"
#include "base/map.h"
#include "base/mech.h"
#include "base/pkcs11.h"
#include "base/secret.h"
#include "config/config.h"
#include "index/index.h"
#include "base/overlay.h"

/*
 * The core's globals read inline on hot paths: hidden, so that a read is one
 * load, not two through the GOT (-fvisibility=hidden covers definitions only).
 */
#define P11P_INTERNAL __attribute__((visibility("hidden")))

#define P11P_SESSION_BASE 0x53000000UL /* 'S' */
#define P11P_OBJECT_BASE  0x4f000000UL /* 'O' */
#define P11P_LOCAL_BASE   0x4c000000UL /* 'L': objects the proxy holds itself (local.c) */
#define P11P_HANDLE_SPAN  0x00ffffffUL
#define P11P_NO_USER      ((CK_USER_TYPE)-1)

/*
 * A virtual slot (slot.c). Its definition is lib/virt's alone (virt/core.h);
 * the rooms above read its head, struct p11p_vslot_head, through p11p_vhead()
 * (inline: the head is the slot's first member), and the rest through the
 * accessors below (slot.c: login state, the member order).
 */
struct p11p_vslot;
struct p11p_vslot_head {
	CK_SLOT_ID id;
	const struct p11p_slot_cfg *cfg;
	/*
	 * n_members only grows: an added member (the HA room's ha/order.c)
	 * takes the next free entry of members[] (published with a release
	 * store once set up), and no entry ever moves or is freed before the
	 * state is.
	 */
	size_t n_members;
	struct p11p_member members[P11P_MAX_MEMBERS];
	char label[33]; /* the token label applications see; guarded by the global lock */
	/*
	 * The rooms' data, one pointer per room to a struct the room defines
	 * (the core only declares it), made and freed by the room through its
	 * hooks with the state: ha (ha/ha.h: added members, the order overlay,
	 * replication; p11p_hook_ha_state_init / _free), vk (vkeys/policy.h:
	 * the key-management policy; vkey_state_init / _free), local
	 * (soft/local.c: fragments, entropy; local_state_init / _free; NULL:
	 * none). Each room's header says which lock guards each field.
	 */
	struct p11p_ha_slot *ha;
	struct p11p_vk_slot *vk;
	struct p11p_local_slot *local;
};
static inline struct p11p_vslot_head *p11p_vhead(struct p11p_vslot *vs)
{
	return (struct p11p_vslot_head *)(void *)vs;
}

/* Operations a session can have active, recorded for replay (op.c). */
enum p11p_op_kind {
	P11P_OP_FIND,
	P11P_OP_ENCRYPT,
	P11P_OP_DECRYPT,
	P11P_OP_DIGEST,
	P11P_OP_SIGN,
	P11P_OP_VERIFY,
	P11P_OP_SIGN_RECOVER,
	P11P_OP_VERIFY_RECOVER,
	P11P_OP_KINDS
};

/* Marks an UPDATE that has no output buffer (any non-NULL value would do). */
#define P11P_NO_OUTPUT ((CK_BYTE_PTR)(uintptr_t)1)

struct p11p_op {
	bool active;
	bool lost;         /* could not be replayed after a failover */
	bool replayable;   /* false: a failover ends it with an error */
	CK_MECHANISM mech; /* pParameter: our deep copy */
	void *param_mem;
	CK_OBJECT_HANDLE key; /* proxy handle, or CK_INVALID_HANDLE */
	CK_ATTRIBUTE *templ;  /* find: our deep copy */
	CK_ULONG templ_count;
	unsigned char *log; /* input fed so far: records of (type, value, bytes) */
	size_t log_len, log_cap;
	CK_OBJECT_HANDLE *returned; /* find: handles already handed out */
	size_t n_returned, cap_returned;
};

/*
 * A proxy session (session.c). Its definition is lib/virt's alone
 * (virt/core.h); the rooms above read its head, struct p11p_session_head,
 * through p11p_shead() (inline: the head is the session's first member), and
 * the rest through the accessors below.
 */
struct p11p_session;
struct p11p_session_head {
	CK_SESSION_HANDLE handle;
	struct p11p_vslot *slot;
	CK_FLAGS flags;
	size_t member; /* the member serving this session; guarded by its lock */
	/*
	 * Operations a failover lost (op.c), a hint read inline by the entry
	 * room: bit (1u << kind) set when one was; p11p_op_lost() answers and
	 * clears it. Guarded by the session's lock.
	 */
	unsigned ops_lost;
	/*
	 * The rooms' data, one pointer per room to a struct the room defines
	 * (the core only declares it), guarded by the session's lock: made
	 * by the room when it first needs it, freed through its hooks when the
	 * session is freed or goes back to the pool
	 * (p11p_hook_local_session_free, p11p_hook_vkey_session_free /
	 * _reset). local: the keys the proxy holds (soft/local.c: their
	 * operations); vk: the virtual keys (vkeys/vkey.c: the find's filter,
	 * the last record read).
	 */
	struct p11p_local_session *local;
	struct p11p_vk_session *vk;
	/*
	 * The object this session last named (oc_h; 0: none), cached so that a
	 * call on it takes no global lock; good while p11p_objects_gen() is
	 * still oc_gen: its handle oc_bh (0: not cached) on member oc_member as
	 * of that member's handle_gen oc_hgen (object.c; read inline by
	 * p11p_object_to_backend()). Guarded by the session's lock.
	 */
	CK_OBJECT_HANDLE oc_h, oc_bh;
	unsigned long oc_gen, oc_hgen;
	size_t oc_member;
};
static inline struct p11p_session_head *p11p_shead(struct p11p_session *s)
{
	return (struct p11p_session_head *)(void *)s;
}

/*
 * The session table (session.c): the open session with handle h is e[h &
 * mask]; handles are handed out so that no two open sessions share an entry,
 * and the table doubles before it is half full. Written under the global
 * lock, read without it (p11p_call_begin): a table replaced by a larger one
 * stays allocated (`older`) until the state is freed, and so does every
 * session (a closed one goes to its slot's pool for reuse). A reader that
 * meets a stale pointer thus still reads a session: it takes a reference
 * only while the count is not zero, then checks the handle.
 */
struct p11p_stab {
	size_t mask;  /* entries - 1 */
	size_t count; /* open sessions */
	struct p11p_stab *older;
	struct p11p_session *_Atomic e[];
};

#define P11P_ID_MAX 256 /* CKA_ID / CKA_LABEL bytes kept to re-find an object */

/*
 * What identifies a token object across members (slots with more than one
 * member): CKA_CLASS + CKA_ID + CKA_LABEL. Allocated apart from the object,
 * only where it is needed, so single-member slots keep objects small.
 */
struct p11p_identity {
	CK_OBJECT_CLASS cls;
	CK_ULONG id_len, label_len;
	CK_BYTE id[P11P_ID_MAX], label[P11P_ID_MAX];
};

/*
 * A proxy object handle's object (object.c): defined in virt/core.h, for
 * lib/virt alone; the rooms above reach their part of it through
 * p11p_object_vk_locked().
 */
struct p11p_object;

/*
 * The library's state (state.c). Its definition is lib/virt's alone
 * (virt/core.h); the rooms above read its head, struct p11p_state_head,
 * through p11p_sthead() (inline: the head is the state's first member), and
 * the rest through the accessors below (state.c: p11p_state_slot(), ...).
 */
struct p11p_state;
struct p11p_state_head {
	struct p11p_config *cfg;
	size_t n_slots; /* the slots: p11p_state_slot() */
	/*
	 * The rooms' data, as for a slot's (struct p11p_vslot_head): ha
	 * (ha/ha.h: the order overlays' check, the probe thread), vkeys
	 * (vkeys/vkey.c: the virtual-key index; NULL: none), local
	 * (soft/local.c).
	 */
	struct p11p_ha_state *ha;
	struct p11p_vkeys *vkeys;
	struct p11p_local_state *local;
};
static inline struct p11p_state_head *p11p_sthead(struct p11p_state *st)
{
	return (struct p11p_state_head *)(void *)st;
}

/* An entry point's view of one session for the length of a call. */
struct p11p_call {
	struct p11p_state *st;
	struct p11p_session *s;
	struct p11p_member *m;
	struct p11p_bctx bc;  /* calls to the member (deadline: timeout_ms) */
	CK_SESSION_HANDLE bs; /* the member's session handle */
	unsigned failovers;   /* made during this call (bounded by ha.retries) */
	/* call_timeout when backend calls run on a worker and are abandoned past it, else 0 */
	unsigned long timeout_ms;
	bool refreshed; /* made again on a new session after a passing server-side error */
	/* The last object mapped to the member in this call (object.c), and its handle there. */
	CK_OBJECT_HANDLE mapped, mapped_bh;
	bool reresolved; /* a handle the member dropped was found again once */
	/*
	 * Set by p11p_repl_new_keys(): the members holding the keys it was
	 * given (bit per member index), for the virtual-key record's presence.
	 */
	uint32_t new_key_holders;
	/*
	 * Set by p11p_creation_begin(): bit k, template k asked for a key that
	 * cannot be extracted, and was made extractable under trusted keys only
	 * so that replication can copy it; p11p_repl_new_keys() locks it.
	 */
	uint8_t repl_lock;
};

/* --- state.c: lifetime, the global lock, fork --- */
/*
 * The global lock (state.c p11p_g_lock): a futex word and its sequence (odd
 * while held, for p11p_read_begin()), in one cache line of their own: every
 * lock and unlock writes both, and a line moved between CPUs costs a
 * thread taking the lock more than its atomic does. Inline: the uncontended
 * lock and unlock are an atomic each.
 */
struct p11p_glock {
	alignas(64) atomic_uint word;
	atomic_ulong seq;
};
extern P11P_INTERNAL struct p11p_glock p11p_g_lock;
void p11p_lock_wait(unsigned v);
void p11p_lock_wake(void);
static inline void p11p_lock_seq_step(void)
{
	atomic_store_explicit(&p11p_g_lock.seq,
	                      atomic_load_explicit(&p11p_g_lock.seq, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}
static inline void p11p_lock(void)
{
	unsigned v = 0;

	if (!atomic_compare_exchange_strong_explicit(&p11p_g_lock.word, &v, 1, memory_order_acquire,
	                                             memory_order_relaxed))
		p11p_lock_wait(v);
	p11p_lock_seq_step();
	/* The odd value is seen before any write made under the lock. */
	atomic_thread_fence(memory_order_release);
}
static inline void p11p_unlock(void)
{
	/* Every write made under the lock is seen before the even value. */
	atomic_thread_fence(memory_order_release);
	p11p_lock_seq_step();
	if (atomic_exchange_explicit(&p11p_g_lock.word, 0, memory_order_release) == 2)
		p11p_lock_wake();
}
/*
 * Enters the library for one call: the live state with the count of calls in
 * flight taken, or NULL when not initialized (never, after fork, in the
 * child, or being finalized). Every non-NULL result is paired with
 * p11p_leave(). Neither takes a lock; p11p_enter_locked() is the same, for
 * callers that hold the global lock.
 */
/*
 * The live state and the count of calls in flight, in P11P_BUSY_SHARDS shards
 * of 128 bytes each (state.c says how they are used): a thread counts its
 * calls in its own shard, so threads calling at once write no common line.
 */
#define P11P_BUSY_SHARDS 16
struct p11p_busy_shard {
	alignas(128) atomic_ulong n; /* two lines: adjacent-line prefetch pairs them */
};
extern P11P_INTERNAL struct p11p_state *_Atomic p11p_g_entry;
extern P11P_INTERNAL struct p11p_busy_shard p11p_g_busy[P11P_BUSY_SHARDS];
/* This thread's shard + 1; 0 until its first call (p11p_busy_pick()). */
extern P11P_INTERNAL _Thread_local unsigned p11p_t_busy __attribute__((tls_model("initial-exec")));
P11P_INTERNAL unsigned p11p_busy_pick(void);
static inline atomic_ulong *p11p_busy_mine(void)
{
	unsigned s = p11p_t_busy;

	if (s == 0)
		s = p11p_busy_pick();
	return &p11p_g_busy[(s - 1) % P11P_BUSY_SHARDS].n;
}
static inline struct p11p_state *p11p_enter(void)
{
	atomic_ulong *busy = p11p_busy_mine();
	struct p11p_state *st;

	atomic_fetch_add(busy, 1);
	st = atomic_load(&p11p_g_entry);
	if (st == NULL)
		atomic_fetch_sub_explicit(busy, 1, memory_order_release);
	return st;
}
static inline struct p11p_state *p11p_enter_locked(void)
{
	return p11p_enter();
}
static inline void p11p_leave(struct p11p_state *st)
{
	(void)st;
	atomic_fetch_sub_explicit(p11p_busy_mine(), 1, memory_order_release);
}
/*
 * Reading what the global lock guards without taking it (a seqlock over
 * the lock, state.c p11p_g_lock.seq): s = p11p_read_begin(), then, when s is
 * even, the reads (P11P_RD: relaxed, as a writer may be storing; every value
 * read must be checked as if it came from outside, it may be half-made), then
 * p11p_read_valid(s): true when no thread took the lock meanwhile, so the
 * reads were all of one moment. Otherwise take the lock and read again.
 */
#define P11P_RD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
static inline unsigned long p11p_read_begin(void)
{
	return atomic_load_explicit(&p11p_g_lock.seq, memory_order_acquire);
}
static inline bool p11p_read_valid(unsigned long s)
{
	atomic_thread_fence(memory_order_acquire);
	return (s & 1) == 0 && atomic_load_explicit(&p11p_g_lock.seq, memory_order_relaxed) == s;
}
/* Is the library initialized (in this process)? Cheap and lock-free. */
bool p11p_initialized(void);
CK_RV p11p_initialize(CK_VOID_PTR init_args);
CK_RV p11p_finalize(CK_VOID_PTR reserved);
/* The next unused handle of a handle space (base + 1 .. base + span). Global lock held. */
CK_ULONG p11p_next_handle_locked(CK_ULONG *counter, CK_ULONG base, const struct p11p_map *used);
/* Wakes C_WaitForSlotEvent callers (finalize, and slot changes). Global lock held. */
void p11p_broadcast_locked(void);
/*
 * Signals cond (all: broadcasts) for a thread in p11p_cond_wait_locked() on
 * it. Global lock held. Never pthread_cond_signal() such a condition directly:
 * the wait would miss it.
 */
void p11p_signal_locked(pthread_cond_t *cond, bool all);
/* Waits on the slot-event condition for up to `ms` milliseconds. Global lock held. */
void p11p_wait_locked(unsigned ms);
/*
 * Waits on cond, signalled with p11p_signal_locked(), up to `ms` milliseconds;
 * the global lock is let go meanwhile. Global lock held.
 */
void p11p_cond_wait_locked(pthread_cond_t *cond, unsigned long long ms);
/*
 * The rest of the state, for the rooms above (state.c; off the hot paths).
 * p11p_state_slot: slot i (0 .. n_slots - 1 of the head), NULL past the end.
 * p11p_state_backend: backend i of the config, NULL past the end.
 * p11p_state_finalizing: C_Finalize waits for the calls in flight.
 * p11p_state_watch_ms: the watchdog's scan period (0: off).
 * p11p_state_probe_thread / _set_probe_thread: does the HA room's probe
 * thread run (set by its health_start hook before the state is shared,
 * cleared by health_stop; the core probes inline when it does not).
 * p11p_probe_wake_locked: wakes that thread; p11p_probe_wait_locked: waits
 * for that, up to ms milliseconds (global lock held; let go meanwhile).
 */
struct p11p_vslot *p11p_state_slot(struct p11p_state *st, size_t i);
struct p11p_backend *p11p_state_backend(struct p11p_state *st, size_t i);
bool p11p_state_finalizing(const struct p11p_state *st);
unsigned long p11p_state_watch_ms(const struct p11p_state *st);
bool p11p_state_probe_thread(const struct p11p_state *st);
void p11p_state_set_probe_thread(struct p11p_state *st, bool running);
void p11p_probe_wake_locked(struct p11p_state *st);
void p11p_probe_wait_locked(struct p11p_state *st, unsigned long long ms);

/* --- slot.c --- */
/* The slot with that id (global lock held), or NULL. */
struct p11p_vslot *p11p_slot_locked(struct p11p_state *st, CK_SLOT_ID id);
/*
 * A slot's login state, for the rooms above (global lock held).
 * p11p_vslot_login_locked: the user logged in (P11P_NO_USER: none).
 * p11p_vslot_logged_in_locked: is the login established on member i, and
 * since that member's handle_gen *gen (when gen is not NULL)?
 * p11p_vslot_logged_in_set_locked: it is now, as of gen, when the slot is
 * still logged in as user (false: it is not, nothing changed).
 * p11p_vslot_logged_in_clear_locked: it is no longer (its last session went).
 * p11p_vslot_login_pin_locked: whether the login's PIN is kept for replay;
 * then *out is a copy (NULL: out of memory), the caller's to free.
 */
CK_USER_TYPE p11p_vslot_login_locked(const struct p11p_vslot *vs);
bool p11p_vslot_logged_in_locked(const struct p11p_vslot *vs, size_t i, unsigned long *gen);
bool p11p_vslot_logged_in_set_locked(struct p11p_vslot *vs, size_t i, CK_USER_TYPE user,
                                     unsigned long gen);
void p11p_vslot_logged_in_clear_locked(struct p11p_vslot *vs, size_t i);
bool p11p_vslot_login_pin_locked(const struct p11p_vslot *vs, struct p11p_secret **out);
/*
 * Enters the library for a call on a slot: the state (busy count taken; the
 * caller p11p_leave()s it on CKR_OK), the slot and, when mp != NULL, the
 * member serving it now and that member's backend slot id (members are
 * resolved lazily). Never call with the global lock held.
 */
CK_RV p11p_slot_enter(CK_SLOT_ID id, struct p11p_state **stp, struct p11p_vslot **vsp,
                      struct p11p_member **mp, CK_SLOT_ID *be_slot);
/*
 * Is any member's token there (found, and not down)? From the members'
 * health, without backend calls: CKR_OK or CKR_TOKEN_NOT_PRESENT. No lock held.
 */
CK_RV p11p_slot_present(struct p11p_vslot *vs);
/* No member of the slot was ever found (vs. found and then failed). */
bool p11p_slot_never_seen(struct p11p_vslot *vs);
CK_RV p11p_get_slot_list(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count);
CK_RV p11p_get_slot_info(CK_SLOT_ID id, CK_SLOT_INFO_PTR info);
CK_RV p11p_get_token_info(CK_SLOT_ID id, CK_TOKEN_INFO_PTR info);
CK_RV p11p_get_mechanism_list(CK_SLOT_ID id, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count);
CK_RV p11p_get_mechanism_info(CK_SLOT_ID id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info);
CK_RV p11p_init_token(CK_SLOT_ID id, CK_UTF8CHAR_PTR pin, CK_ULONG len, CK_UTF8CHAR_PTR label);
CK_RV p11p_wait_for_slot_event(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved);
CK_RV p11p_init_pin(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len);

/*
 * --- pinstate.c: wrong user PINs the proxy checks itself (virt/pinstate.h) ---
 * All for a member whose PIN is configured (the proxy checks the
 * application's PIN); no lock held, the global lock taken inside.
 * p11p_pin_token_flags: the member's CKF_USER_PIN_* flags replaced by the
 * slot's. p11p_pin_check_locked: CKR_PIN_LOCKED at pin_max_tries (or when the
 * state cannot be read), with a message naming `p11proxy pin reset`; else
 * CKR_OK. p11p_pin_wrong: one more wrong PIN. p11p_pin_good: a good login
 * clears the count. p11p_pin_reset: the count back to 0 (the file rewritten,
 * a damaged one too), as `p11proxy pin reset` does (C_InitPIN, slot.c).
 */
void p11p_pin_token_flags(struct p11p_state *st, struct p11p_vslot *vs, const struct p11p_member *m,
                          CK_FLAGS *flags);
CK_RV p11p_pin_check_locked(struct p11p_state *st, struct p11p_vslot *vs);
void p11p_pin_wrong(struct p11p_state *st, struct p11p_vslot *vs);
void p11p_pin_good(struct p11p_state *st, struct p11p_vslot *vs);
void p11p_pin_reset(struct p11p_state *st, struct p11p_vslot *vs);

/* --- session.c --- */
/* Looks the session up, takes a reference and its lock. On CKR_OK call p11p_call_end. */
CK_RV p11p_call_begin(CK_SESSION_HANDLE h, struct p11p_call *c);
/* Unlocks and drops the reference. Returns rv. */
CK_RV p11p_call_end(struct p11p_call *c, CK_RV rv);
/* Points c at the session's current member (after a failover moved it). */
void p11p_call_sync(struct p11p_call *c);
CK_RV p11p_open_session(CK_SLOT_ID id, CK_FLAGS flags, CK_VOID_PTR application, CK_NOTIFY notify,
                        CK_SESSION_HANDLE_PTR out);
CK_RV p11p_close_session(CK_SESSION_HANDLE h);
CK_RV p11p_close_all_sessions(CK_SLOT_ID id);
CK_RV p11p_get_session_info(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info);
CK_RV p11p_login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len);
CK_RV p11p_logout(CK_SESSION_HANDLE h);
CK_RV p11p_set_pin(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,
                   CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len);
/*
 * The rest of a session, for the rooms above (off the hot paths). Session
 * lock held, unless said otherwise. p11p_session_op_active: is an operation
 * of kind k (on an HSM key) active? p11p_session_be / _set_be: the backend
 * session on member i (0: none).
 */
bool p11p_session_op_active(const struct p11p_session *s, enum p11p_op_kind k);
CK_SESSION_HANDLE p11p_session_be(const struct p11p_session *s, size_t i);
void p11p_session_set_be(struct p11p_session *s, size_t i, CK_SESSION_HANDLE bs);
/*
 * The watchdog's view (global lock held, not the session's):
 * p11p_session_call_started_locked: when the call in flight began (0: none,
 * or already counted as hung); p11p_session_call_hung_locked: counts it as
 * hung against member m (m->hung_calls, until the call ends).
 */
unsigned long long p11p_session_call_started_locked(struct p11p_session *s);
void p11p_session_call_hung_locked(struct p11p_session *s, struct p11p_member *m);
/* Frees a session no longer in the table (state teardown). */
void p11p_session_free(struct p11p_session *s);
/* Calls fn for every open session. Global lock held; fn must not open or close one. */
void p11p_sessions_each_locked(struct p11p_state *st, void (*fn)(void *session, void *arg),
                               void *arg);
/* Frees the table, its sessions and the slots' pools (state teardown: no call in flight). */
void p11p_sessions_free(struct p11p_state *st);

/* --- health.c --- */
/*
 * A backend call on m answered rv, a server-side error: is the member still
 * alive (a cheap call answers)? If not, it is marked down; so is a member
 * whose answer the backend layer refused (m->refused). No lock held.
 */
bool p11p_member_confirm(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m,
                         CK_RV rv);
/* Marks m down (global lock held). */
void p11p_member_down_locked(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m,
                             CK_RV why);
/* The member new work should go to, skipping `avoid` (may be NULL); NULL if none. Global lock held.
 */
struct p11p_member *p11p_member_pick_locked(struct p11p_vslot *vs, const struct p11p_member *avoid);
/*
 * The member order (vslot->order[]), for the HA room (ha/order.c, health.c).
 * p11p_slot_order_set_locked: the members new work may go to, first = highest
 * priority (n indexes into members[]); true when it changed.
 * p11p_slot_order_member_locked: the member at position i of the order, NULL
 * past its end. Global lock held.
 */
bool p11p_slot_order_set_locked(struct p11p_vslot *vs, const size_t *idx, size_t n);
struct p11p_member *p11p_slot_order_member_locked(struct p11p_vslot *vs, size_t i);
/* Sets up m->ctx (after m->be); member m's contexts count its sessions. */
void p11p_member_ctx_init(struct p11p_member *m);
void p11p_member_sessions_gone(void *m);
/*
 * Calls that probe member m (probes, confirmations, resolution) have a
 * deadline: the slot's call_timeout, else P11P_PROBE_TIMEOUT_MS (when the
 * application lets the proxy make threads). A probe abandoned past it counts
 * as a hung call on m: m is not probed again, nor taken back, until it returns.
 */
#define P11P_PROBE_TIMEOUT_MS 2000UL
void p11p_member_probe_ctx(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m,
                           struct p11p_bctx *out);
/*
 * A call about a slot (not a session) answered *rv on *m: true to call again,
 * on the member p11p_member_pick() chose when *m failed (confirmed), or on *m
 * once when it still answers (a failure that passed). *tries counts the
 * calls made (start at 0). No lock held.
 */
bool p11p_slot_retry(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member **m,
                     CK_SLOT_ID *be_slot, CK_RV *rv, unsigned *tries);
/*
 * The member new work should go to (p11p_member_pick_locked), else the first
 * that p11p_member_revive() brings back; with its backend slot id in
 * *be_slot. NULL when none answers. No lock held.
 */
struct p11p_member *p11p_member_pick(struct p11p_state *st, struct p11p_vslot *vs,
                                     CK_SLOT_ID *be_slot);

/* Server-side error or lost session: the results p11p_call_retry() acts on. */

bool p11p_rv_needs_failover(const struct p11p_member *m, CK_RV rv);
/* The member lost the session (it restarted, or closed it): CKR_SESSION_HANDLE_INVALID, _CLOSED. */
bool p11p_rv_session_lost(CK_RV rv);

/*
 * --- health.c: the backend layer's hooks for calls abandoned past call_timeout ---
 * p11p_call_hung(): a call in c (arg) was abandoned: the member is marked down
 * and not taken back while the call lasts (its hung_calls); the watchdog's
 * clock starts again. p11p_member_released(): that vendor call returned at
 * last. p11p_health_new_epoch_locked(): the state goes; abandoned calls
 * ending later leave its members alone (global lock held).
 */
void p11p_call_hung(void *arg, void **rel, unsigned long *token);
void p11p_member_released(void *rel, unsigned long token);
/*
 * The backend layer refused an answer (a lie about a length, a count or a
 * handle) of the member (arg) or of the member of call c (arg): m->refused,
 * which p11p_member_confirm() takes.
 */
void p11p_member_refused(void *arg);
void p11p_call_refused(void *arg);
void p11p_health_new_epoch_locked(void);

/* --- op.c: recording operations for replay --- */
void p11p_op_begin(struct p11p_call *c, enum p11p_op_kind k, const CK_MECHANISM *mech,
                   CK_OBJECT_HANDLE key);
void p11p_op_begin_find(struct p11p_call *c, const CK_ATTRIBUTE *templ, CK_ULONG count);
void p11p_op_update(struct p11p_call *c, enum p11p_op_kind k, const void *data, CK_ULONG len);
void p11p_op_digest_key(struct p11p_call *c, CK_OBJECT_HANDLE key);
void p11p_op_end(struct p11p_call *c, enum p11p_op_kind k);
/* A find handed out this handle (so a replayed find does not repeat it). */
void p11p_op_found(struct p11p_call *c, CK_OBJECT_HANDLE h);
bool p11p_op_was_found(const struct p11p_call *c, CK_OBJECT_HANDLE h);
void p11p_op_unreplayable(struct p11p_call *c);
/*
 * Replays the session's active operations on its (new) current member. An
 * operation that cannot be replayed is marked lost; a server-side error is
 * returned (the new member failed too).
 */
CK_RV p11p_op_replay(struct p11p_call *c);
/* Was operation k lost in a failover? (Then it is cleared: report CKR_DEVICE_ERROR once.) */
bool p11p_op_lost(struct p11p_call *c, enum p11p_op_kind k);
void p11p_op_free_all(struct p11p_session *s);

/* --- object.c --- */
/*
 * The member's handle for a proxy object handle, within a call. `invalid` is
 * the code for an unknown handle (CKR_OBJECT_HANDLE_INVALID or
 * CKR_KEY_HANDLE_INVALID, as the function's spec says). The mapping is noted
 * in c (mapped, mapped_bh): when the member answers that its handle is
 * invalid, p11p_call_retry() forgets it and the call maps the object again,
 * by identity (a token object on a slot with several members), once.
 */
CK_RV p11p_object_to_backend_locking(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_RV invalid,
                                     CK_OBJECT_HANDLE *out);
extern P11P_INTERNAL atomic_ulong p11p_g_objects_gen;
/*
 * The generation of the object tables (object.c): moves on whenever a
 * proxy object is dropped, one of its backend handles forgotten, or its
 * virtual-key binding changed (p11p_objects_changed_locked(), global lock
 * held), so that sessions' cached mappings (struct p11p_session_head) go stale.
 */
static inline unsigned long p11p_objects_gen(void)
{
	return atomic_load_explicit(&p11p_g_objects_gen, memory_order_acquire);
}
static inline CK_RV p11p_object_to_backend(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_RV invalid,
                                           CK_OBJECT_HANDLE *out)
{
	struct p11p_session_head *s = p11p_shead(c->s);
	size_t member = s->member;

	/* The object this session named last, unchanged since: no lock. */
	if (h == s->oc_h && s->oc_bh != 0 && member == s->oc_member &&
	    s->oc_gen == p11p_objects_gen() &&
	    s->oc_hgen == atomic_load_explicit(&p11p_vhead(s->slot)->members[member].handle_gen,
	                                       memory_order_relaxed)) {
		*out = c->mapped_bh = s->oc_bh;
		c->mapped = h;
		return CKR_OK;
	}
	return p11p_object_to_backend_locking(c, h, invalid, out);
}
/*
 * The proxy handle for a member's object, made on first sight. `owner` is
 * the creating session for a new session object, else 0.
 */
CK_RV p11p_object_from_backend(struct p11p_call *c, CK_OBJECT_HANDLE bh, bool session_object,
                               CK_OBJECT_HANDLE *out);
/*
 * The same for an object a find met (its session object flag false), except
 * that a member failing while the object's identity is read (an error
 * p11p_call_retry() acts on) is that error: the find goes on elsewhere.
 */
CK_RV p11p_object_found(struct p11p_call *c, CK_OBJECT_HANDLE bh, CK_OBJECT_HANDLE *out);
/*
 * The member answered that handle bh of object h is invalid: forgets it when
 * the object can be found again by identity (true). No lock held.
 */
bool p11p_object_forget_handle(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_OBJECT_HANDLE bh);
/*
 * Forgets every backend handle of a member that went down or lost its
 * sessions (global lock held).
 */
void p11p_objects_forget_member_locked(struct p11p_state *st, struct p11p_vslot *vs, size_t member);
/*
 * The virtual keys' slot of proxy object h (struct p11p_object.vk: see
 * vkeys/vkeys.h), or NULL when h is no object (of slot vs, when vs is not
 * NULL). Global lock held; the pointer is good while it is.
 */
struct p11p_vkbind **p11p_object_vk_locked(struct p11p_state *st, CK_OBJECT_HANDLE h,
                                           const struct p11p_vslot *vs);
/* Moves p11p_objects_gen() on (above). */
void p11p_objects_changed_locked(void);
/* Forgets the session objects a closed session owned. Global lock held. */
void p11p_objects_drop_owned_locked(struct p11p_state *st, struct p11p_session *s);
CK_RV p11p_find_objects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max,
                        CK_ULONG_PTR count);
CK_RV p11p_create_object(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                         CK_OBJECT_HANDLE_PTR out);
CK_RV p11p_copy_object(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR templ,
                       CK_ULONG count, CK_OBJECT_HANDLE_PTR out);
CK_RV p11p_destroy_object(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj);
CK_RV p11p_generate_key(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR templ,
                        CK_ULONG count, CK_OBJECT_HANDLE_PTR out);
CK_RV p11p_generate_key_pair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub,
                             CK_ULONG pub_count, CK_ATTRIBUTE_PTR priv, CK_ULONG priv_count,
                             CK_OBJECT_HANDLE_PTR pub_out, CK_OBJECT_HANDLE_PTR priv_out);
CK_RV p11p_wrap_key(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wrapping,
                    CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV p11p_unwrap_key(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE unwrapping,
                      CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR templ,
                      CK_ULONG count, CK_OBJECT_HANDLE_PTR out);
CK_RV p11p_derive_key(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base,
                      CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR out);
CK_RV p11p_set_operation_state(CK_SESSION_HANDLE h, CK_BYTE_PTR state, CK_ULONG len,
                               CK_OBJECT_HANDLE enc_key, CK_OBJECT_HANDLE auth_key);

/* Entry points on objects with logic of their own (object.c). */
CK_RV p11p_get_attribute_value(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR templ,
                               CK_ULONG count);
CK_RV p11p_set_attribute_value(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR templ,
                               CK_ULONG count);
CK_RV p11p_find_objects_init(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count);
/*
 * Before a *Init (operation k with mechanism m on key): true when the call is
 * settled here, with its result in *rv: a key the proxy holds itself
 * (local.c runs the operation), a local operation of that kind already
 * active, or a virtual key that may not be used so (vkey.c). false: go on
 * to the member. key CK_INVALID_HANDLE (C_DigestInit): false.
 */
bool p11p_key_gate(struct p11p_call *c, enum p11p_op_kind k, CK_MECHANISM_PTR m,
                   CK_OBJECT_HANDLE key, CK_RV *rv);
/*
 * Creates a token or session object from a template on the session's member
 * within a call: the backend C_CreateObject, replication of a token key, the
 * virtual-key record, and the proxy handle. Nothing is left behind on error.
 * (C_CreateObject, and local.c's key generation from mixed entropy.)
 */
/*
 * C_SetAttributeValue changed object h on the session's member: the change
 * goes to its copies on the other members, and a new CKA_ID or CKA_LABEL
 * becomes its identity (a token object on a slot with several members). old:
 * its identity before the change, from p11p_object_identity().
 */
bool p11p_object_identity(struct p11p_call *c, CK_OBJECT_HANDLE h, struct p11p_identity *out);
/*
 * Whether object h was made through the proxy by this application (process),
 * since its C_Initialize: C_CreateObject, C_CopyObject, a key generation,
 * unwrap or derivation, in any of its sessions; not an object found.
 */
bool p11p_object_created_here(struct p11p_state *st, CK_OBJECT_HANDLE h);
void p11p_object_changed(struct p11p_call *c, CK_OBJECT_HANDLE h, const struct p11p_identity *old,
                         CK_ATTRIBUTE_PTR templ, CK_ULONG count);
CK_RV p11p_object_create_in(struct p11p_call *c, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                            CK_OBJECT_HANDLE_PTR out);

/* The creation of objects whose outcome a failover can make unknown (ha/failover.c). */
#define P11P_CREATION_MAX_ATTRS 64
struct p11p_creation {
	size_t n; /* templates: 1, or 2 for a key pair */
	bool token[2], named[2];
	CK_OBJECT_CLASS cls[2];
	CK_ATTRIBUTE t[2][3]; /* CKA_CLASS, CKA_ID, CKA_LABEL (when given) */
	CK_ULONG tn[2];
	bool counted[2];    /* before[] is known (the member answered the find) */
	CK_ULONG before[2]; /* matches on the member before the call */
	/* A template the HA room rewrote for replication (the caller's, plus two). */
	CK_ATTRIBUTE rt[2][P11P_CREATION_MAX_ATTRS + 2];
	CK_BBOOL yes;
};

/* Objects the proxy holds itself (soft/) have handles of their own. */
static inline bool p11p_local_handle(CK_OBJECT_HANDLE h)
{
	return h > P11P_LOCAL_BASE && h <= P11P_LOCAL_BASE + P11P_HANDLE_SPAN;
}

/*
 * --- hooks: what the rooms above the core plug into it ---
 * The core calls the HA room (ha/ha.h), the virtual keys (vkeys/vkeys.h) and
 * the keys the proxy holds (soft/soft.h) only through p11p_hook_NAME(), which
 * calls the function p11p_NAME the room registered (p11p_ha_register(), ...,
 * at C_Initialize, by the entry room); the contracts are documented there. A
 * hook nobody registered does nothing and answers CKR_OK / false / NULL.
 *   X(KIND, RET, NAME, PARAMS, ARGS)   KIND: R returns RET, V returns nothing
 */
#define P11P_HA_HOOKS(X)                                                                           \
	X(R, bool, call_retry, (struct p11p_call * c, CK_RV * rv, bool repeatable),                \
	  (c, rv, repeatable))                                                                     \
	X(V, void, call_leave_down_member, (struct p11p_call * c), (c))                            \
	X(R, CK_RV, replay_login,                                                                  \
	  (struct p11p_vslot * vs, struct p11p_member * m, CK_SESSION_HANDLE bs), (vs, m, bs))     \
	X(V, void, creation_begin,                                                                 \
	  (struct p11p_call * c, struct p11p_creation * cr, size_t n,                              \
	   const CK_OBJECT_CLASS *default_cls, CK_ATTRIBUTE_PTR *templ, CK_ULONG *count),          \
	  (c, cr, n, default_cls, templ, count))                                                   \
	X(R, bool, creation_retry,                                                                 \
	  (struct p11p_call * c, struct p11p_creation * cr, CK_RV * rv, CK_OBJECT_HANDLE * bh),    \
	  (c, cr, rv, bh))                                                                         \
	X(R, CK_RV, repl_new_keys, (struct p11p_call * c, const CK_OBJECT_HANDLE *bh, size_t n),   \
	  (c, bh, n))                                                                              \
	X(V, void, repl_destroyed, (struct p11p_call * c, const struct p11p_identity *ident),      \
	  (c, ident))                                                                              \
	X(V, void, repl_changed,                                                                   \
	  (struct p11p_call * c, const struct p11p_identity *ident, CK_ATTRIBUTE_PTR templ,        \
	   CK_ULONG count),                                                                        \
	  (c, ident, templ, count))                                                                \
	X(R, bool, repl_settle_attrs, (struct p11p_call * c), (c))                                 \
	X(R, struct p11p_member *, member_revive,                                                  \
	  (struct p11p_state * st, struct p11p_vslot * vs), (st, vs))                              \
	X(V, void, health_start, (struct p11p_state * st, bool threads_allowed),                   \
	  (st, threads_allowed))                                                                   \
	X(V, void, health_stop, (struct p11p_state * st), (st))                                    \
	X(V, void, health_poll, (struct p11p_state * st), (st))                                    \
	X(R, CK_RV, ha_state_init, (struct p11p_state * st), (st))                                 \
	X(V, void, ha_state_free, (struct p11p_state * st), (st))                                  \
	X(R, CK_RV, repl_unlocked_set_locked,                                                      \
	  (struct p11p_state * st, CK_OBJECT_HANDLE h, bool on, bool *changed),                    \
	  (st, h, on, changed))                                                                    \
	X(R, bool, repl_unlocked_locked, (struct p11p_state * st, CK_OBJECT_HANDLE h), (st, h))    \
	X(V, void, order_init, (struct p11p_state * st, struct p11p_vslot * vs), (st, vs))
#define P11P_VKEY_HOOKS(X)                                                                         \
	X(R, CK_RV, vkey_state_init, (struct p11p_state * st), (st))                               \
	X(V, void, vkey_state_free, (struct p11p_state * st), (st))                                \
	X(V, void, vkey_object_free, (struct p11p_vkbind * *vk), (vk))                             \
	X(V, void, vkey_session_reset, (struct p11p_session * s), (s))                             \
	X(V, void, vkey_session_free, (struct p11p_session * s), (s))                              \
	X(R, CK_RV, vkey_use, (struct p11p_call * c, CK_OBJECT_HANDLE key, unsigned perm),         \
	  (c, key, perm))                                                                          \
	X(V, void, vkey_attrs_out,                                                                 \
	  (struct p11p_call * c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count,       \
	   CK_RV * rv),                                                                            \
	  (c, h, templ, count, rv))                                                                \
	X(R, bool, vkey_set,                                                                       \
	  (struct p11p_call * c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count,       \
	   CK_RV * rv),                                                                            \
	  (c, h, templ, count, rv))                                                                \
	X(R, bool, vkey_destroy,                                                                   \
	  (struct p11p_call * c, CK_OBJECT_HANDLE h, CK_RV * rv, uint64_t * vid), (c, h, rv, vid)) \
	X(V, void, vkey_destroyed, (struct p11p_call * c, uint64_t vid), (c, vid))                 \
	X(R, CK_RV, vkey_created, (struct p11p_call * c, const CK_OBJECT_HANDLE *bh, size_t n),    \
	  (c, bh, n))                                                                              \
	X(R, CK_RV, vkey_copied,                                                                   \
	  (struct p11p_call * c, CK_OBJECT_HANDLE src, CK_OBJECT_HANDLE bh), (c, src, bh))         \
	X(R, CK_RV, vkey_find_init,                                                                \
	  (struct p11p_call * c, CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_ATTRIBUTE * *btempl,   \
	   CK_ULONG * bcount),                                                                     \
	  (c, templ, count, btempl, bcount))                                                       \
	X(R, CK_RV, vkey_find_chunk, (struct p11p_call * c, const CK_OBJECT_HANDLE *ph, size_t n), \
	  (c, ph, n))                                                                              \
	X(R, bool, vkey_hidden, (struct p11p_call * c, CK_OBJECT_HANDLE ph), (c, ph))
#define P11P_SOFT_HOOKS(X)                                                                         \
	X(R, CK_RV, local_state_init, (struct p11p_state * st), (st))                              \
	X(V, void, local_state_free, (struct p11p_state * st), (st))                               \
	X(V, void, local_session_free, (struct p11p_session * s), (s))                             \
	X(R, bool, local_active, (struct p11p_session * s, enum p11p_op_kind k), (s, k))           \
	X(V, void, local_drop_owned_locked, (struct p11p_state * st, struct p11p_session * s),     \
	  (st, s))                                                                                 \
	X(R, bool, local_mechanism, (CK_MECHANISM_TYPE type), (type))                              \
	X(R, unsigned long long, local_poll, (struct p11p_state * st), (st))                       \
	X(R, CK_RV, local_init,                                                                    \
	  (struct p11p_call * c, enum p11p_op_kind k, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key),   \
	  (c, k, m, key))                                                                          \
	X(R, CK_RV, local_get_attrs,                                                               \
	  (struct p11p_call * c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count),      \
	  (c, h, templ, count))                                                                    \
	X(R, CK_RV, local_set_attrs,                                                               \
	  (struct p11p_call * c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count),      \
	  (c, h, templ, count))                                                                    \
	X(R, CK_RV, local_destroy, (struct p11p_call * c, CK_OBJECT_HANDLE h), (c, h))             \
	X(R, CK_RV, local_find_init,                                                               \
	  (struct p11p_call * c, const CK_ATTRIBUTE *templ, CK_ULONG count), (c, templ, count))    \
	X(R, CK_ULONG, local_find_next,                                                            \
	  (struct p11p_call * c, CK_OBJECT_HANDLE * out, CK_ULONG max), (c, out, max))             \
	X(R, CK_RV, local_derive,                                                                  \
	  (struct p11p_call * c, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base,                     \
	   CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR out),                      \
	  (c, mech, base, templ, count, out))                                                      \
	X(R, CK_RV, local_generate_key,                                                            \
	  (struct p11p_call * c, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR templ, CK_ULONG count,    \
	   CK_OBJECT_HANDLE_PTR out),                                                              \
	  (c, mech, templ, count, out))                                                            \
	X(R, bool, local_software,                                                                 \
	  (struct p11p_call * c, CK_MECHANISM_PTR mech, const CK_ATTRIBUTE *templ,                 \
	   CK_ULONG count),                                                                        \
	  (c, mech, templ, count))                                                                 \
	X(R, CK_RV, local_create,                                                                  \
	  (struct p11p_call * c, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR templ, CK_ULONG count,    \
	   CK_OBJECT_HANDLE_PTR out),                                                              \
	  (c, mech, templ, count, out))                                                            \
	X(R, CK_RV, local_create_pair,                                                             \
	  (struct p11p_call * c, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub, CK_ULONG pub_count,  \
	   CK_ATTRIBUTE_PTR priv, CK_ULONG priv_count, CK_OBJECT_HANDLE_PTR pub_out,               \
	   CK_OBJECT_HANDLE_PTR priv_out),                                                         \
	  (c, mech, pub, pub_count, priv, priv_count, pub_out, priv_out))                          \
	X(R, CK_RV, local_unwrap,                                                                  \
	  (struct p11p_call * c, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE unwrapping,               \
	   CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR templ, CK_ULONG count,      \
	   CK_OBJECT_HANDLE_PTR out),                                                              \
	  (c, mech, unwrapping, wrapped, wrapped_len, templ, count, out))

#define P11P_HOOK_FIELD(kind, ret, name, params, args) ret(*name) params;
struct p11p_hooks {
	P11P_HA_HOOKS(P11P_HOOK_FIELD)
	P11P_VKEY_HOOKS(P11P_HOOK_FIELD)
	P11P_SOFT_HOOKS(P11P_HOOK_FIELD)
};
#undef P11P_HOOK_FIELD
/* Set once at C_Initialize, before any call can use them (state.c). */
extern P11P_INTERNAL struct p11p_hooks p11p_hooks;

#define P11P_HOOK_R(ret, name, params, args)                                                       \
	static inline ret p11p_hook_##name params                                                  \
	{                                                                                          \
		return p11p_hooks.name != NULL ? p11p_hooks.name args : (ret)0;                    \
	}
#define P11P_HOOK_V(ret, name, params, args)                                                       \
	static inline void p11p_hook_##name params                                                 \
	{                                                                                          \
		if (p11p_hooks.name != NULL)                                                       \
			p11p_hooks.name args;                                                      \
	}
#define P11P_HOOK_CALL(kind, ret, name, params, args) P11P_HOOK_##kind(ret, name, params, args)
P11P_HA_HOOKS(P11P_HOOK_CALL)
P11P_VKEY_HOOKS(P11P_HOOK_CALL)
P11P_SOFT_HOOKS(P11P_HOOK_CALL)
#undef P11P_HOOK_CALL
#undef P11P_HOOK_R
#undef P11P_HOOK_V

/* A room's registration: sets its hooks (p11p_NAME for each). */
#define P11P_HOOK_SET(kind, ret, name, params, args) p11p_hooks.name = p11p_##name;

#endif
