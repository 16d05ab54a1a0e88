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
	atomic_uint refs;              /* the table holds one; each call in flight holds one */
	atomic_uint lock;              /* see the lock-order note; a futex word (session.c) */
	/* Guarded by `lock`: */
	bool closed;
	bool ops_used;                          /* op.c: an operation began since it was made */
	CK_SESSION_HANDLE be[P11P_MAX_MEMBERS]; /* backend session per member; 0 = none */
	struct p11p_op ops[P11P_OP_KINDS];
	/* When the call in flight started (watchdog; 0: none). Written under `lock`. */
	_Atomic unsigned long long call_started_ms;
	/* The watchdog counted this call as hung against that member (global lock). */
	bool call_hung;
	size_t call_hung_member;
	/*
	 * object.c: the running find's CKA_EXTRACTABLE, matched here (taken out
	 * of the member's find) on a slot that replicates, as
	 * C_GetAttributeValue shows it (repl_unlocked keys: false); guarded by
	 * `lock`. 0: not in the template; 1: false wanted; 2: true wanted.
	 */
	unsigned char find_extr;

	/* Objects this session created as session objects; guarded by the global lock. */
	CK_OBJECT_HANDLE *owned;
	size_t n_owned, cap_owned;

	struct p11p_session *pool_next; /* in the slot's session_pool */
};
/* p11p_shead() is a cast: the head must stay first. */
_Static_assert(offsetof(struct p11p_session, head) == 0, "the session's head is its first member");

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
