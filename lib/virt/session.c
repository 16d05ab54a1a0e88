/*
 * Proxy sessions: each maps to one backend session per member it has used
 * (one member until HA failover moves it), and a virtual slot's login state,
 * kept so a login can be replayed on another member.
 */
#include "virt/virt.h"
#include "virt/core.h"
#include "base/log.h"
#include "base/mem.h"

#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

void p11p_session_free(struct p11p_session *s)
{
	/* Its lock is a word: in a forked child it may be held by a thread that is not there. */
	p11p_op_free_all(s);
	p11p_hook_local_session_free(s);
	if (s->head.vk != NULL)
		p11p_hook_vkey_session_free(s);
	p11p_free(s->owned);
	p11p_free(s);
}

CK_SESSION_HANDLE p11p_session_be(const struct p11p_session *s, size_t i)
{
	return i < P11P_MAX_MEMBERS ? s->be[i] : 0;
}

void p11p_session_set_be(struct p11p_session *s, size_t i, CK_SESSION_HANDLE bs)
{
	if (i < P11P_MAX_MEMBERS)
		s->be[i] = bs;
	s->be_dirty = true; /* moved by HA: what it holds is not known (the pool below) */
}

unsigned long long p11p_session_call_started_locked(struct p11p_session *s)
{
	return s->call_hung ? 0 : atomic_load(&s->call_started_ms);
}

void p11p_session_call_hung_locked(struct p11p_session *s, struct p11p_member *m)
{
	s->call_hung = true;
	s->call_hung_member = m->index;
	m->hung_calls++;
}

/*
 * A session's word (struct p11p_session.word): its lock (the lock-order
 * note) and its reference count in one atomic, so that a call takes both with
 * one compare-and-swap and lets both go with another. An atomic costs as much
 * as some 20 plain instructions here (bench/README.md, session 11): the
 * reference and the lock apart were four of the 16 an AES-GCM message of a
 * software key made.
 *   W_HELD     the lock is held;
 *   W_WAITERS  a thread may sleep on the word (U. Drepper, "Futexes Are
 *              Tricky", mutex 3: the unlock that clears it wakes one, and a
 *              thread that slept takes the lock with it set, so that its own
 *              unlock wakes the next);
 *   the rest   references, in units of W_REF: the table holds one, each call
 *              in flight one; 0: closed (on its way to the pool, or in it).
 * Waiters sleep in the kernel (the lock is held across backend calls) on the
 * whole word: a reference taken or dropped meanwhile only makes them look
 * again. Sessions are never freed while the state lives (struct p11p_stab),
 * so the word outlives every waiter.
 */
#define W_HELD    1u
#define W_WAITERS 2u
#define W_REF     4u

/* Takes the lock, waiting for it; the caller holds a reference. */
static void session_lock_wait(struct p11p_session *s)
{
	unsigned w = atomic_load_explicit(&s->word, memory_order_relaxed);
	unsigned slept = 0; /* W_WAITERS once this thread has slept */

	for (;;) {
		if (!(w & W_HELD)) {
			if (atomic_compare_exchange_weak_explicit(&s->word, &w, w | W_HELD | slept,
			                                          memory_order_acquire,
			                                          memory_order_relaxed))
				return;
			continue;
		}
		if (!(w & W_WAITERS) &&
		    !atomic_compare_exchange_weak_explicit(
		        &s->word, &w, w | W_WAITERS, memory_order_relaxed, memory_order_relaxed))
			continue;
		syscall(SYS_futex, &s->word, FUTEX_WAIT_PRIVATE, w | W_WAITERS, NULL, NULL, 0);
		slept = W_WAITERS;
		w = atomic_load_explicit(&s->word, memory_order_relaxed);
	}
}

/* Takes the lock; the caller holds a reference. */
static inline void session_lock(struct p11p_session *s)
{
	unsigned w = atomic_load_explicit(&s->word, memory_order_relaxed);

	if ((w & W_HELD) ||
	    !atomic_compare_exchange_strong_explicit(&s->word, &w, w | W_HELD, memory_order_acquire,
	                                             memory_order_relaxed))
		session_lock_wait(s);
}

/* Lets the lock go, keeping the caller's reference. */
static void session_unlock(struct p11p_session *s)
{
	if (atomic_fetch_and_explicit(&s->word, ~(W_HELD | W_WAITERS), memory_order_release) &
	    W_WAITERS)
		syscall(SYS_futex, &s->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/*
 * Puts a session no reference names any more in its slot's pool. No lock
 * needed. Its backend sessions are closed and forgotten (be[] all 0:
 * session_close_detached() clears each, session_new() relies on it).
 */
static void pool_push(struct p11p_session *s)
{
	struct p11p_vslot *vs = s->head.slot;
	struct p11p_session *head = atomic_load_explicit(&vs->session_pool, memory_order_relaxed);

#ifdef P11P_STRICT
	for (size_t i = 0; i < P11P_MAX_MEMBERS; i++)
		if (s->be[i] != 0) {
			p11p_message("%s: a pooled session keeps a backend session", __func__);
			abort();
		}
#endif

	do
		s->pool_next = head;
	while (!atomic_compare_exchange_weak_explicit(&vs->session_pool, &head, s,
	                                              memory_order_release, memory_order_relaxed));
}

/*
 * A session of the slot's pool, or NULL. Global lock held: pops are
 * serialized, so the head read cannot be popped and pushed back meanwhile.
 */
static struct p11p_session *pool_pop_locked(struct p11p_vslot *vs)
{
	struct p11p_session *s = atomic_load_explicit(&vs->session_pool, memory_order_acquire);

	while (s != NULL &&
	       !atomic_compare_exchange_weak_explicit(&vs->session_pool, &s, s->pool_next,
	                                              memory_order_acquire, memory_order_acquire))
		;
	return s;
}

/* The last reference went: what the session holds goes; the session itself is kept. */
static void session_release(struct p11p_session *s)
{
	/* (struct p11p_stab says why it is kept.) */
	p11p_op_free_all(s);
	if (s->head.local != NULL)
		p11p_hook_local_session_free(s);
	if (s->head.vk != NULL)
		p11p_hook_vkey_session_reset(s);
	if (s->owned != NULL) {
		p11p_free(s->owned);
		s->owned = NULL;
		s->n_owned = s->cap_owned = 0;
	}
	pool_push(s);
}

static inline void session_unref(struct p11p_session *s)
{
	if (atomic_fetch_sub_explicit(&s->word, W_REF, memory_order_acq_rel) < 2 * W_REF)
		session_release(s);
}

/* The end of a call: lets the lock go and drops the caller's reference, in one atomic. */
static inline void session_unlock_unref(struct p11p_session *s)
{
	unsigned w = atomic_load_explicit(&s->word, memory_order_relaxed), n;

	/* Waiters hold references: the count reaches 0 only without them. */
	do
		n = (w - W_REF) & ~(W_HELD | W_WAITERS);
	while (!atomic_compare_exchange_weak_explicit(&s->word, &w, n, memory_order_acq_rel,
	                                              memory_order_relaxed));
	if (w & W_WAITERS)
		syscall(SYS_futex, &s->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	if (n < W_REF)
		session_release(s);
}

/* --- the session table (struct p11p_stab) --- */

#define STAB_MIN 64

/* The open session with handle h, or NULL. Global lock held. */
static struct p11p_session *table_get_locked(struct p11p_state *st, CK_SESSION_HANDLE h)
{
	struct p11p_stab *t = atomic_load_explicit(&st->sessions, memory_order_relaxed);
	struct p11p_session *s =
	    t != NULL ? atomic_load_explicit(&t->e[h & t->mask], memory_order_relaxed) : NULL;

	return s != NULL && s->head.handle == h ? s : NULL;
}

/*
 * The open session with handle h, referenced and locked, or NULL. No other
 * lock: what it reads may be stale, but stays a session (struct p11p_stab).
 * Uncontended, the reference and the lock are one compare-and-swap.
 */
static struct p11p_session *table_take(struct p11p_state *st, CK_SESSION_HANDLE h)
{
	struct p11p_stab *t = atomic_load_explicit(&st->sessions, memory_order_acquire);
	struct p11p_session *s;
	unsigned w;

	if (t == NULL)
		return NULL;
	s = atomic_load_explicit(&t->e[h & t->mask], memory_order_acquire);
	if (s == NULL)
		return NULL;
	w = atomic_load_explicit(&s->word, memory_order_relaxed);
	for (;;) {
		if (w < W_REF)
			return NULL; /* closed: on its way to the pool */
		if (w & W_HELD) {
			/* Another call holds it: a reference first, then wait for the lock. */
			if (!atomic_compare_exchange_weak_explicit(&s->word, &w, w + W_REF,
			                                           memory_order_acquire,
			                                           memory_order_relaxed))
				continue;
			/* Its handle is set before its count leaves zero (table_put_locked). */
			if (s->head.handle != h) {
				session_unref(s); /* closed and reused since it was read */
				return NULL;
			}
			session_lock_wait(s);
			return s;
		}
		if (atomic_compare_exchange_weak_explicit(&s->word, &w, w + W_REF + W_HELD,
		                                          memory_order_acquire,
		                                          memory_order_relaxed))
			break;
	}
	if (s->head.handle == h)
		return s;
	session_unlock_unref(s); /* closed and reused since it was read */
	return NULL;
}

/*
 * Gives s the next free handle and puts it in the table with the table's
 * reference, doubling the table first when it would be half full. Global
 * lock held. -1: no memory.
 */
static int table_put_locked(struct p11p_state *st, struct p11p_session *s)
{
	struct p11p_stab *t = atomic_load_explicit(&st->sessions, memory_order_relaxed);
	CK_SESSION_HANDLE h;

	if (t == NULL || (t->count + 1) * 2 > t->mask + 1) {
		size_t n = t == NULL ? STAB_MIN : (t->mask + 1) * 2;
		struct p11p_stab *nt;

		if (n > P11P_HANDLE_SPAN + 1 ||
		    (nt = p11p_calloc(1, sizeof(*nt) + n * sizeof(nt->e[0]))) == NULL)
			return -1;
		nt->mask = n - 1;
		/* Entries apart in the old table stay apart in one twice as large. */
		for (size_t i = 0; t != NULL && i <= t->mask; i++) {
			struct p11p_session *o =
			    atomic_load_explicit(&t->e[i], memory_order_relaxed);

			if (o != NULL)
				atomic_init(&nt->e[o->head.handle & nt->mask], o);
		}
		nt->count = t != NULL ? t->count : 0;
		nt->older = t;
		atomic_store_explicit(&st->sessions, nt, memory_order_release);
		t = nt;
	}
	/* Sequential, never 0, never sharing an entry; wraps after P11P_HANDLE_SPAN handles. */
	do {
		h = P11P_SESSION_BASE + st->next_session;
		st->next_session = st->next_session < P11P_HANDLE_SPAN ? st->next_session + 1 : 1;
	} while (atomic_load_explicit(&t->e[h & t->mask], memory_order_relaxed) != NULL);
	s->head.handle = h;
	atomic_store_explicit(&s->word, W_REF, memory_order_release); /* the table's reference */
	atomic_store_explicit(&t->e[h & t->mask], s, memory_order_release);
	t->count++;
	return 0;
}

/* Takes s out of the table (its reference is the caller's to drop). Global lock held. */
static void table_remove_locked(struct p11p_state *st, struct p11p_session *s)
{
	struct p11p_stab *t = atomic_load_explicit(&st->sessions, memory_order_relaxed);

	if (t != NULL &&
	    atomic_load_explicit(&t->e[s->head.handle & t->mask], memory_order_relaxed) == s) {
		atomic_store_explicit(&t->e[s->head.handle & t->mask], NULL, memory_order_release);
		t->count--;
	}
}

void p11p_sessions_each_locked(struct p11p_state *st, void (*fn)(void *session, void *arg),
                               void *arg)
{
	struct p11p_stab *t = atomic_load_explicit(&st->sessions, memory_order_relaxed);

	for (size_t i = 0; t != NULL && i <= t->mask; i++) {
		struct p11p_session *s = atomic_load_explicit(&t->e[i], memory_order_relaxed);

		if (s != NULL)
			fn(s, arg);
	}
}

void p11p_sessions_free(struct p11p_state *st)
{
	struct p11p_stab *t = atomic_load_explicit(&st->sessions, memory_order_relaxed);
	struct p11p_session *s;

	for (size_t i = 0; t != NULL && i <= t->mask; i++) {
		s = atomic_load_explicit(&t->e[i], memory_order_relaxed);
		if (s != NULL)
			p11p_session_free(s);
	}
	while (t != NULL) {
		struct p11p_stab *older = t->older;

		p11p_free(t);
		t = older;
	}
	atomic_store(&st->sessions, NULL);
	for (size_t i = 0; st->slots != NULL && i < st->head.n_slots; i++)
		while ((s = pool_pop_locked(&st->slots[i])) != NULL)
			p11p_session_free(s);
}

/*
 * Enters the library and finds a session. On CKR_OK the global lock is still
 * held and the caller p11p_leave()s the state when done.
 */
static CK_RV session_find_lock(CK_SESSION_HANDLE h, struct p11p_state **stp,
                               struct p11p_session **sp)
{
	*stp = p11p_enter();
	if (*stp == NULL)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	p11p_lock();
	*sp = table_get_locked(*stp, h);
	if (*sp == NULL) {
		p11p_unlock();
		p11p_leave(*stp);
		return CKR_SESSION_HANDLE_INVALID;
	}
	return CKR_OK;
}

CK_RV p11p_call_begin(CK_SESSION_HANDLE h, struct p11p_call *c)
{
	struct p11p_state *st;
	struct p11p_session *s;

	st = p11p_enter();
	if (st == NULL)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	s = table_take(st, h);
	if (s == NULL) {
		p11p_leave(st);
		return CKR_SESSION_HANDLE_INVALID;
	}
	if (s->closed) {
		/* Closed by another thread while we waited for it. */
		session_unlock_unref(s);
		p11p_leave(st);
		return CKR_SESSION_CLOSED;
	}
	c->st = st;
	c->s = s;
	c->failovers = 0;
	c->refreshed = false;
	c->mapped = 0;
	c->reresolved = false;
	c->repl_lock = 0;
	/* Slots that time calls run them where they can be abandoned (backend/offload.c). */
	c->timeout_ms = s->head.slot->head.n_members > 1 && st->threads_allowed
	                    ? s->head.slot->head.cfg->ha.call_timeout_ms
	                    : 0;
	p11p_call_sync(c);
	if (s->head.slot->head.n_members > 1) /* its test, without the call where it cannot hold */
		p11p_hook_call_leave_down_member(c);
	/* Without a watchdog the stamp stays 0 (p11p_call_end), unread: no clock, no store. */
	if (st->watch_ms)
		s->call_started_ms = p11p_now_ms();
	return CKR_OK;
}

void p11p_call_sync(struct p11p_call *c)
{
	c->m = &c->s->head.slot->head.members[c->s->head.member];
	c->bc = (struct p11p_bctx){.be = c->m->be,
	                           .timeout_ms = c->timeout_ms,
	                           .hung = p11p_call_hung,
	                           .released = p11p_member_released,
	                           .refused = p11p_call_refused,
	                           .arg = c,
	                           .count = &c->m->n_be_sessions,
	                           .gone = p11p_member_sessions_gone,
	                           .gone_arg = c->m};
	c->bs = c->s->be[c->s->head.member];
}

/*
 * The end of a call whose slot has a watchdog (its stamp), or whose result
 * is not CKR_OK: an error may leave state in the backend session (an
 * operation one of the proxy's own calls began, an object it made), which
 * then is not pooled (below); an attribute the object lacks or hides is only
 * the answer. Out of line: the hot path tests both at once.
 */
static __attribute__((noinline, cold)) void call_end_slow(struct p11p_call *c, CK_RV rv)
{
	if (c->st->watch_ms) {
		c->s->call_started_ms = 0;
		p11p_lock();
		if (c->s->call_hung) {
			c->s->head.slot->head.members[c->s->call_hung_member].hung_calls--;
			c->s->call_hung = false;
		}
		p11p_unlock();
	}
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE)
		c->s->be_dirty = true;
}

CK_RV p11p_call_end(struct p11p_call *c, CK_RV rv)
{
	struct p11p_state *st = c->st;

	if (__builtin_expect((st->watch_ms | rv) != 0, 0))
		call_end_slow(c, rv);
	session_unlock_unref(c->s);
	p11p_leave(st);
	return rv;
}

/*
 * --- the backend session pool (struct p11p_vslot's be_pool) ---
 *
 * A proxy session whose backend session is clean leaves it open when it
 * closes, for the next C_OpenSession on the same member with the same kind
 * (R/O or R/W): an open + close then calls no vendor function. Clean means
 * nothing a later session could inherit: no operation active as far as the
 * proxy knows (op.c records every *Init and its end), none lost, no session
 * object made in it, no operation state set, no call on it answered with an
 * error (be_dirty), still on the member and backend session it was opened
 * with, and the member's handle_gen unchanged (a session loss, a restart or
 * the member marked down moves it on). What the token keeps per session
 * beyond that is its login state, which is token-wide.
 *
 * The pool holds sessions only while the application holds one on the slot:
 * the slot's last close takes them all out and closes them (the token logs
 * the application out with its last session). A pooled session that died
 * since (a restart the proxy has not seen yet) answers its first call with
 * CKR_SESSION_HANDLE_INVALID, which the session-loss path takes
 * (ha/failover.c) as for any session. Guarded by the global lock; closed
 * outside it.
 */

/* Backend sessions to close once the global lock is let go. */
struct be_drop {
	size_t n;
	struct {
		struct p11p_member *m;
		CK_SESSION_HANDLE h;
	} e[P11P_MAX_MEMBERS * 2 * P11P_BE_POOL];
};

/* A member marked down may not answer: its pooled sessions are forgotten, not closed. */
static void drop_add_locked(struct be_drop *d, struct p11p_member *m, CK_SESSION_HANDLE h)
{
	if (atomic_load(&m->health) != P11P_DOWN && d->n < sizeof(d->e) / sizeof(d->e[0])) {
		d->e[d->n].m = m;
		d->e[d->n].h = h;
		d->n++;
	}
}

/* No lock held (a session's may be). */
static void drop_close(struct be_drop *d)
{
	for (size_t i = 0; i < d->n; i++)
		p11p_be_C_CloseSession(&d->e[i].m->ctx, d->e[i].h);
	d->n = 0;
}

/*
 * A pooled backend session of member m for a session with these flags, its
 * generation in *gen; 0: none. Those of an older generation go to d. Not an
 * R/O one while the SO is logged in (the token would refuse to open it).
 */
static CK_SESSION_HANDLE pool_take_locked(struct p11p_vslot *vs, struct p11p_member *m,
                                          CK_FLAGS flags, unsigned long *gen, struct be_drop *d)
{
	size_t rw = (flags & CKF_RW_SESSION) != 0;
	unsigned char *n = &vs->n_be_pool[m->index][rw];
	const struct p11p_be_pooled *p = vs->be_pool[m->index][rw];
	unsigned long now = atomic_load(&m->handle_gen);

	while (*n > 0) {
		const struct p11p_be_pooled *e = &p[--*n];

		if (e->gen == now && (rw || vs->login != CKU_SO)) {
			*gen = now;
			return e->h;
		}
		drop_add_locked(d, m, e->h);
	}
	return 0;
}

/*
 * Keeps backend session h (clean, of generation gen) of member m in the pool,
 * if there is room. A member marked down since has moved its generation on
 * (p11p_member_down_locked); one deleted from the order gets no new session,
 * so its pooled ones wait for the slot's last close.
 */
static bool pool_put_locked(struct p11p_vslot *vs, struct p11p_member *m, CK_FLAGS flags,
                            CK_SESSION_HANDLE h, unsigned long gen)
{
	size_t rw = (flags & CKF_RW_SESSION) != 0;
	unsigned char *n = &vs->n_be_pool[m->index][rw];

	if (vs->n_sessions == 0 || *n >= P11P_BE_POOL || (!rw && vs->login == CKU_SO) ||
	    atomic_load(&m->handle_gen) != gen)
		return false;
	vs->be_pool[m->index][rw][(*n)++] = (struct p11p_be_pooled){.h = h, .gen = gen};
	return true;
}

/* Takes the slot's pooled sessions (only the R/O ones: ro_only) out, into d. */
static void pool_drain_locked(struct p11p_vslot *vs, bool ro_only, struct be_drop *d)
{
	for (size_t i = 0; i < vs->head.n_members; i++)
		for (size_t rw = 0; rw < (ro_only ? 1u : 2u); rw++)
			while (vs->n_be_pool[i][rw] > 0)
				drop_add_locked(d, &vs->head.members[i],
				                vs->be_pool[i][rw][--vs->n_be_pool[i][rw]].h);
}

/* May s's backend session on its member go to the pool? Its lock held. */
static bool be_clean(const struct p11p_session *s)
{
	if (s->be_dirty || s->be_objects || s->head.ops_lost != 0 || s->head.member != s->be_member)
		return false;
	for (int k = 0; s->ops_used && k < P11P_OP_KINDS; k++)
		if (s->ops[k].active)
			return false;
	for (size_t i = 0, n = s->head.slot->head.n_members; n > 1 && i < n; i++)
		if (i != s->head.member && s->be[i] != 0)
			return false;
	return true;
}

/*
 * A session from the slot's pool (what it held went with its last
 * reference: no operation, nothing owned), else a new one; its count stays
 * zero until table_put_locked(). Global lock held.
 */
static struct p11p_session *session_new(struct p11p_vslot *vs, struct p11p_member *m,
                                        CK_FLAGS flags, CK_SESSION_HANDLE bs, unsigned long gen)
{
	struct p11p_session *s = pool_pop_locked(vs);

	if (s != NULL) {
		/* Its be[] is all 0 (pool_push). */
		s->closed = false;
		atomic_store_explicit(&s->call_started_ms, 0, memory_order_relaxed);
		s->call_hung = false;
		s->call_hung_member = 0;
		s->head.oc_h = s->head.oc_bh = 0;
		s->head.ops_lost = 0;
	} else {
		s = p11p_calloc(1, sizeof(*s)); /* its lock free */
		if (s == NULL)
			return NULL;
		s->head.slot = vs;
	}
	s->head.flags = flags;
	s->head.member = m->index;
	s->be[s->head.member] = bs;
	s->be_member = m->index;
	s->be_gen = gen;
	s->be_dirty = false;
	s->be_objects = false;
	return s;
}

/*
 * Must a new session on member m go through the login replay (ha/failover.c)?
 * When the slot is logged in and the member is not yet; and, to check the
 * token still is, for a session just opened on the token (`fresh`: an HSM
 * that restarted has forgotten the login before any call of ours may have
 * seen it, and the new session is then public), on a slot with several
 * members, or on a member that lost its sessions since the login. A pooled
 * session of the same generation on a one-member slot is made at once: it
 * was logged in, and a restart since is met by its first call.
 */
static bool login_pending_locked(const struct p11p_vslot *vs, const struct p11p_member *m,
                                 bool fresh)
{
	return vs->login != P11P_NO_USER &&
	       (fresh || !(vs->logged_in & (1U << m->index)) || vs->head.n_members > 1 ||
	        vs->login_gen[m->index] != atomic_load(&m->handle_gen));
}

/* Notify callbacks are not forwarded: the backend would call them with its handle. */
CK_RV p11p_open_session(CK_SLOT_ID id, CK_FLAGS flags, CK_VOID_PTR application, CK_NOTIFY notify,
                        CK_SESSION_HANDLE_PTR out)
{
	struct p11p_state *st;
	struct p11p_vslot *vs;
	struct p11p_member *m;
	struct p11p_session *s;
	CK_SESSION_HANDLE bs = 0;
	CK_SLOT_ID be_slot;
	unsigned tries = 0;
	unsigned long gen = 0;
	bool from_pool, skip_pool = false;
	struct be_drop drop;
	CK_RV rv;

	drop.n = 0;
	rv = p11p_slot_enter(id, &st, &vs, &m, &be_slot);
	if (rv != CKR_OK)
		return rv;
	if (out == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	if (!(flags & CKF_SERIAL_SESSION)) {
		rv = CKR_SESSION_PARALLEL_NOT_SUPPORTED;
		goto out;
	}
	/* Notify callbacks are not forwarded: the backend would call them with its handle. */
	do {
		/* A pooled backend session first (the pool above), else a new one. */
	again:
		p11p_lock();
		bs = skip_pool ? 0 : pool_take_locked(vs, m, flags, &gen, &drop);
		from_pool = bs != 0;
		if (from_pool) {
			rv = CKR_OK;
		} else {
			gen =
			    atomic_load(&m->handle_gen); /* before: a loss meanwhile moves it on */
			p11p_unlock();
			rv = p11p_be_C_OpenSession(&m->ctx, be_slot, flags, NULL, NULL, &bs);
			if (rv == CKR_OK)
				p11p_lock();
		}
		/* Logged in on the slot: the new session is too (login_pending_locked). */
		if (rv == CKR_OK) {
			if (!login_pending_locked(vs, m, !from_pool))
				goto add_locked;
			p11p_unlock();
			rv = p11p_hook_replay_login(vs, m, bs);
			if (rv != CKR_OK)
				p11p_be_C_CloseSession(&m->ctx, bs);
			/*
			 * A pooled session that failed there: a new one, not counted
			 * as a retry. Lost with the token's others (a restart): the
			 * pool's other sessions of this generation too (handle_gen).
			 */
			if (rv != CKR_OK && from_pool) {
				if (p11p_rv_session_lost(rv))
					p11p_member_sessions_gone(m);
				skip_pool = true;
				goto again;
			}
		}
	} while (p11p_slot_retry(st, vs, &m, &be_slot, &rv, &tries));
	if (rv != CKR_OK)
		goto out;
	p11p_lock();
add_locked:
	s = session_new(vs, m, flags, bs, gen);
	if (s == NULL || table_put_locked(st, s) < 0) {
		if (s != NULL) {
			s->be[s->head.member] = 0; /* closed below */
			pool_push(s); /* a reader may still hold it from before: kept */
		}
		p11p_unlock();
		rv = CKR_HOST_MEMORY;
		goto close_backend;
	}
	vs->n_sessions++;
	if (flags & CKF_RW_SESSION)
		vs->n_rw_sessions++;
	m->n_sessions++;
	p11p_unlock();
	*out = s->head.handle;
	p11p_debug(P11P_DBG_SESSION, "slot %lu: session 0x%lx opened on member '%s'",
	           (unsigned long)id, (unsigned long)s->head.handle, m->cfg->name);
	goto out;
close_backend:
	p11p_be_C_CloseSession(&m->ctx, bs);
out:
	drop_close(&drop);
	p11p_leave(st);
	return rv;
}

/*
 * Takes a session out of the tables and the slot's counts. Global lock held.
 * The slot's last session takes the pooled backend sessions out too, into d.
 */
static void session_detach_locked(struct p11p_state *st, struct p11p_session *s, struct be_drop *d)
{
	struct p11p_vslot *vs = s->head.slot;

	table_remove_locked(st, s);
	s->be_objects = s->n_owned != 0; /* read by the closing thread (be_clean) */
	/* Usually it created no session object: then only the proxy-held keys are asked. */
	if (s->n_owned != 0)
		p11p_objects_drop_owned_locked(st, s);
	else
		p11p_hook_local_drop_owned_locked(st, s);
	vs->n_sessions--;
	if (s->head.flags & CKF_RW_SESSION)
		vs->n_rw_sessions--;
	vs->head.members[s->head.member].n_sessions--;
	if (vs->n_sessions == 0) {
		/* PKCS#11: closing a token's last session logs the application out. */
		vs->login = P11P_NO_USER;
		vs->logged_in = 0;

		p11p_secret_free(vs->login_pin);
		vs->login_pin = NULL;
		pool_drain_locked(vs, false, d);
	}
}

/* Closes a detached session's backend sessions, then drops the table's reference. */
static CK_RV session_close_detached(struct p11p_session *s)
{
	CK_RV rv = CKR_OK;

	session_lock(s);
	s->closed = true;
	/* Its current member's first (its answer is the call's), then any it used before. */
	if (s->be[s->head.member] != 0) {
		struct p11p_member *m = &s->head.slot->head.members[s->head.member];
		bool kept = false;
		CK_RV r;

		/* Clean: kept open for the next session (the pool above). */
		if (be_clean(s)) {
			p11p_lock();
			kept = pool_put_locked(s->head.slot, m, s->head.flags,
			                       s->be[s->head.member], s->be_gen);
			p11p_unlock();
		}
		if (!kept) {
			r = p11p_be_C_CloseSession(&m->ctx, s->be[s->head.member]);
			/* The application's session is closed whatever a failing member says. */
			if (!p11p_rv_needs_failover(m, r))
				rv = r;
		}
		s->be[s->head.member] = 0;
	}
	for (size_t i = 0, n = s->head.slot->head.n_members; n > 1 && i < n; i++) {
		if (s->be[i] != 0) {
			p11p_be_C_CloseSession(&s->head.slot->head.members[i].ctx, s->be[i]);
			s->be[i] = 0;
		}
	}
	session_unlock(s);
	session_unref(s);
	return rv;
}

CK_RV p11p_close_session(CK_SESSION_HANDLE h)
{
	struct p11p_state *st;
	struct p11p_session *s;
	struct be_drop drop;
	CK_RV rv;

	rv = session_find_lock(h, &st, &s);
	if (rv != CKR_OK)
		return rv;
	drop.n = 0;
	session_detach_locked(st, s, &drop);
	p11p_unlock();
	rv = session_close_detached(s);
	drop_close(&drop); /* the slot's last session: after its own, as a token would */
	p11p_debug(P11P_DBG_SESSION, "session 0x%lx closed", (unsigned long)h);
	p11p_leave(st);
	return rv;
}

struct collect {
	struct p11p_vslot *slot;
	struct p11p_session **list;
	size_t n;
};

static void collect_cb(void *value, void *arg)
{
	struct p11p_session *s = value;
	struct collect *c = arg;

	if (s->head.slot == c->slot)
		c->list[c->n++] = s;
}

CK_RV p11p_close_all_sessions(CK_SLOT_ID id)
{
	struct p11p_state *st;
	struct p11p_vslot *vs;
	struct collect col = {0};
	struct be_drop drop;
	CK_RV rv;

	rv = p11p_slot_enter(id, &st, &vs, NULL, NULL);
	if (rv != CKR_OK)
		return rv;
	p11p_lock();
	col.slot = vs;
	col.list = p11p_calloc(vs->n_sessions + 1, sizeof(*col.list));
	if (col.list == NULL) {
		p11p_unlock();
		p11p_leave(st);
		return CKR_HOST_MEMORY;
	}
	p11p_sessions_each_locked(st, collect_cb, &col);
	drop.n = 0;
	for (size_t i = 0; i < col.n; i++)
		session_detach_locked(st, col.list[i], &drop);
	p11p_unlock();
	/*
	 * One by one, not the backend's C_CloseAllSessions: another virtual
	 * slot may be served by the same token.
	 */
	for (size_t i = 0; i < col.n; i++)
		session_close_detached(col.list[i]);
	drop_close(&drop);
	p11p_free(col.list);
	p11p_leave(st);
	return CKR_OK;
}

CK_RV p11p_get_session_info(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (info == NULL)
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	do
		rv = p11p_be_C_GetSessionInfo(&c.bc, c.bs, info);
	while (p11p_hook_call_retry(&c, &rv, true));
	if (rv == CKR_OK)
		info->slotID = c.s->head.slot->head.id;
	return p11p_call_end(&c, rv);
}

/*
 * Does the application's PIN open a member whose PIN is configured? Either it
 * matches the slot's user_pin_hash, or (no hash) the member's PIN itself.
 */
static bool virtual_pin_ok(const struct p11p_vslot *vs, const struct p11p_member *m,
                           const CK_UTF8CHAR *pin, CK_ULONG len)
{
	if (pin == NULL)
		return false;
	if (vs->head.cfg->user_pin_hash != NULL)
		return p11p_pin_hash_verify(vs->head.cfg->user_pin_hash, pin, len);
	return p11p_secret_equals(m->cfg->pin, pin, len);
}

/* PKCS#11 takes PINs as non-const: hand it a wiped copy, not the secret itself. */
static CK_RV login_with_secret(struct p11p_call *c, CK_USER_TYPE user,
                               const struct p11p_secret *pin)
{
	CK_UTF8CHAR buf[P11P_MAX_PIN_LEN];
	size_t len = p11p_secret_len(pin);
	CK_RV rv;

	if (len > sizeof(buf))
		return CKR_PIN_LEN_RANGE;
	memcpy(buf, p11p_secret_data(pin), len);
	rv = p11p_be_C_Login(&c->bc, c->bs, user, buf, len);
	p11p_wipe(buf, sizeof(buf));
	return rv;
}

CK_RV p11p_login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
	struct p11p_call c;
	struct p11p_vslot *vs;
	const struct p11p_secret *member_pin;
	bool translate;
	CK_USER_TYPE current;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (pin == NULL && len > 0)
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	vs = c.s->head.slot;
	if (user == CKU_SO) {
		/* The token refuses the SO while R/O sessions exist: pooled ones must not count. */
		struct be_drop drop;

		drop.n = 0;
		p11p_lock();
		pool_drain_locked(vs, true, &drop);
		p11p_unlock();
		drop_close(&drop);
	}
again:
	member_pin = c.m->cfg->pin;
	translate = member_pin != NULL && (user == CKU_USER || user == CKU_CONTEXT_SPECIFIC);
	if (translate) {
		p11p_lock();
		current = vs->login;
		p11p_unlock();
		/* Same precedence as a token: login state before the PIN. */
		if (user == CKU_USER && current == CKU_USER)
			return p11p_call_end(&c, CKR_USER_ALREADY_LOGGED_IN);
		if (user == CKU_USER && current == CKU_SO)
			return p11p_call_end(&c, CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
		/* Counted here, as a token counts its own (pinstate.c). */
		rv = p11p_pin_check_locked(c.st, vs);
		if (rv != CKR_OK)
			return p11p_call_end(&c, rv);
		if (!virtual_pin_ok(vs, c.m, pin, len)) {
			p11p_debug(P11P_DBG_SESSION, "virtual PIN rejected");
			p11p_pin_wrong(c.st, vs);
			return p11p_call_end(&c, CKR_PIN_INCORRECT);
		}
		rv = login_with_secret(&c, user, member_pin);
		if (rv == CKR_OK)
			p11p_pin_good(c.st, vs);
	} else {
		rv = p11p_be_C_Login(&c.bc, c.bs, user, pin, len);
	}
	/* A PIN is never tried twice: only a failed member (not a refusal) moves the session. */
	if (rv != CKR_PIN_INCORRECT && rv != CKR_PIN_LOCKED && p11p_hook_call_retry(&c, &rv, true))
		goto again;
	if (rv == CKR_OK && user != CKU_CONTEXT_SPECIFIC) {
		/* Kept, wiped on logout, for logging in again on another member. */
		struct p11p_secret *keep = translate ? NULL : p11p_secret_new(pin, len);

		if (!translate && keep == NULL)
			p11p_debug(P11P_DBG_SESSION, "no memory to keep the PIN for replay");
		p11p_lock();
		vs->login = user;
		vs->logged_in = 1U << c.m->index; /* replayed on other members as needed */
		vs->login_gen[c.m->index] = atomic_load(&c.m->handle_gen);
		p11p_secret_free(vs->login_pin);
		vs->login_pin = keep;
		p11p_unlock();
	}
	return p11p_call_end(&c, rv);
}

/*
 * The login was replayed on other members (failovers, new sessions): log
 * those out too, or a later session there would be logged in without the
 * application having logged in. No lock held.
 */
static void logout_others(struct p11p_vslot *vs, const struct p11p_member *current)
{
	for (size_t i = 0; i < vs->head.n_members; i++) {
		struct p11p_member *m = &vs->head.members[i];
		CK_SESSION_HANDLE tmp;
		CK_SLOT_ID be_slot;
		bool logged;

		p11p_lock();
		logged = (vs->logged_in & (1U << i)) && m != current;
		be_slot = m->be_slot;
		p11p_unlock();
		if (!logged || p11p_be_C_OpenSession(&m->ctx, be_slot, CKF_SERIAL_SESSION, NULL,
		                                     NULL, &tmp) != CKR_OK)
			continue;
		p11p_be_C_Logout(&m->ctx, tmp);
		p11p_be_C_CloseSession(&m->ctx, tmp);
	}
}

CK_RV p11p_logout(CK_SESSION_HANDLE h)
{
	struct p11p_call c;
	struct p11p_vslot *vs;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	vs = c.s->head.slot;
	do
		rv = p11p_be_C_Logout(&c.bc, c.bs);
	while (p11p_hook_call_retry(&c, &rv, true));
	if (rv == CKR_OK || rv == CKR_USER_NOT_LOGGED_IN) {
		logout_others(vs, c.m);
		p11p_lock();
		vs->login = P11P_NO_USER;
		vs->logged_in = 0;
		p11p_secret_free(vs->login_pin);
		vs->login_pin = NULL;
		p11p_unlock();
	}
	return p11p_call_end(&c, rv);
}

CK_RV p11p_set_pin(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,
                   CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len)
{
	struct p11p_call c;
	struct p11p_vslot *vs;
	CK_USER_TYPE current;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if ((old_pin == NULL && old_len > 0) || (new_pin == NULL && new_len > 0))
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	vs = c.s->head.slot;
	p11p_lock();
	current = vs->login;
	p11p_unlock();
	/*
	 * With a member PIN in proxy.yaml the application never knows the
	 * member's PIN, and the virtual PIN lives in the config: change both
	 * there (p11proxy hash-pin), not through PKCS#11.
	 */
	if (c.m->cfg->pin != NULL && current != CKU_SO)
		return p11p_call_end(&c, CKR_FUNCTION_NOT_SUPPORTED);
	rv = p11p_be_C_SetPIN(&c.bc, c.bs, old_pin, old_len, new_pin, new_len);
	p11p_hook_call_retry(&c, &rv, false); /* changed or not on the failed member: unknown */
	if (rv == CKR_OK && current == CKU_USER) {
		struct p11p_secret *keep = p11p_secret_new(new_pin, new_len);

		p11p_lock();
		p11p_secret_free(vs->login_pin);
		vs->login_pin = keep;
		p11p_unlock();
	}
	return p11p_call_end(&c, rv);
}
