/*
 * Members (the core): their health states, the member chosen for new work,
 * the contexts calls to a member go through (backend/call.h: deadlines,
 * session counts, the hooks for abandoned calls).
 *
 *   UP ----server-side error, confirmed----> DOWN
 *   DOWN --probe answers--> RECOVERING --second good probe--> UP
 *   RECOVERING --probe fails--> DOWN (backoff doubles)
 *   DOWN, every member of the slot --a call's inline probe answers--> UP
 * The probes are the HA room's (ha/health.c).
 */
#include "virt/virt.h"
#include "virt/core.h"
#include "base/log.h"
#include "base/names.h"

#include <string.h>
#include <time.h>

/* Abandoned calls count against the state they were made in (global lock). */
static unsigned long g_epoch = 1;

void p11p_member_down_locked(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m,
                             CK_RV why)
{
	if (atomic_load(&m->health) != P11P_DOWN) {
		m->failures++;
		p11p_message("slot '%s': member '%s' (backend '%s') is down: %s", vs->head.label,
		             m->cfg->name, m->be->cfg->name, p11p_rv_str(why));
	}
	atomic_store(&m->health, P11P_DOWN);
	atomic_store(&m->refused, false);
	m->last_error = why;
	atomic_fetch_add(&m->handle_gen, 1);
	vs->logged_in &= ~(1U << m->index); /* it may come back restarted */

	m->good_probes = 0;
	m->backoff_ms = vs->head.cfg->ha.probe_interval_ms;
	m->next_probe_ms = p11p_now_ms() + m->backoff_ms;
	/* Its handles are not to be trusted when it comes back: re-find objects then. */
	p11p_objects_forget_member_locked(st, vs, m->index);
	p11p_signal_locked(&st->probe_cond, false);
	p11p_broadcast_locked(); /* slot events */
}

bool p11p_rv_session_lost(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED;
}

bool p11p_rv_needs_failover(const struct p11p_member *m, CK_RV rv)
{
	return rv != CKR_OK && (p11p_rv_session_lost(rv) || p11p_rv_is_server_error(m->be, rv));
}

bool p11p_member_confirm(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m,
                         CK_RV rv)
{
	CK_TOKEN_INFO ti;
	CK_SLOT_ID be_slot;
	struct p11p_bctx x;
	CK_RV probe;

	/*
	 * It answered what it was not asked for (a lie, not a bad request): down
	 * without a second opinion, when another member can serve (a slot's only
	 * member is asked again: marked down, it would lose its object handles).
	 */
	if (atomic_exchange(&m->refused, false) && vs->head.n_members > 1) {
		p11p_lock();
		p11p_member_down_locked(st, vs, m, rv);
		p11p_unlock();
		return false;
	}
	p11p_lock();
	be_slot = m->be_slot;
	p11p_unlock();
	/*
	 * Backends also use "server-side" codes for bad requests (SoftHSM2
	 * answers CKR_GENERAL_ERROR to a forged GCM tag). A member whose token
	 * still answers is alive: the error was about this request.
	 */
	p11p_member_probe_ctx(st, vs, m, &x);
	probe = p11p_be_C_GetTokenInfo(&x, be_slot, &ti);
	if (probe == CKR_OK)
		return true;
	p11p_lock();
	p11p_member_down_locked(st, vs, m, rv);
	p11p_unlock();
	return false;
}

/*
 * Least busy in balance mode, else first in priority order; among `want`.
 * The priority order is the slot's order[] (order.c): deleted members are
 * not in it, and never get new work. Global lock held, or within a
 * p11p_read_begin() / p11p_read_valid() pair: every field is read once,
 * relaxed, and an index out of range ends the search.
 */
static struct p11p_member *pick_state(struct p11p_vslot *vs, const struct p11p_member *avoid,
                                      int want)
{
	struct p11p_member *best = NULL;
	unsigned long best_n = 0;
	size_t n = P11P_RD(vs->n_order);
	bool balance = vs->head.cfg->ha.mode == P11P_HA_BALANCE;

	for (size_t i = 0; i < n && i < P11P_MAX_MEMBERS; i++) {
		size_t k = P11P_RD(vs->order[i]);
		struct p11p_member *m;
		unsigned long ns;

		if (k >= P11P_MAX_MEMBERS)
			break;
		m = &vs->head.members[k];
		if (m == avoid || P11P_RD(m->removed) || !P11P_RD(m->resolved) ||
		    atomic_load_explicit(&m->health, memory_order_relaxed) != want)
			continue;
		if (!balance)
			return m;
		ns = P11P_RD(m->n_sessions);
		if (best == NULL || ns < best_n) {
			best = m;
			best_n = ns;
		}
	}
	return best;
}

/* Up first, else recovering. Global lock held, or within a read pair (pick_state). */
static struct p11p_member *pick(struct p11p_vslot *vs, const struct p11p_member *avoid)
{
	struct p11p_member *m = pick_state(vs, avoid, P11P_UP);

	return m != NULL ? m : pick_state(vs, avoid, P11P_RECOVERING);
}

struct p11p_member *p11p_member_pick_locked(struct p11p_vslot *vs, const struct p11p_member *avoid)
{
	return pick(vs, avoid);
}

bool p11p_slot_order_set_locked(struct p11p_vslot *vs, const size_t *idx, size_t n)
{
	bool changed;

	if (n > P11P_MAX_MEMBERS)
		n = P11P_MAX_MEMBERS;
	changed = n != vs->n_order || memcmp(idx, vs->order, n * sizeof(idx[0])) != 0;
	memcpy(vs->order, idx, n * sizeof(idx[0]));
	vs->n_order = n;
	return changed;
}

struct p11p_member *p11p_slot_order_member_locked(struct p11p_vslot *vs, size_t i)
{
	return i < vs->n_order && vs->order[i] < vs->head.n_members
	           ? &vs->head.members[vs->order[i]]
	           : NULL;
}

/* A probe of the member (arg) was abandoned past its deadline. */
static void probe_hung(void *arg, void **rel, unsigned long *token)
{
	struct p11p_member *m = arg;

	p11p_lock();
	*rel = m;
	*token = g_epoch;
	m->hung_calls++;
	p11p_unlock();
}

void p11p_member_sessions_gone(void *arg)
{
	struct p11p_member *m = arg;

	atomic_fetch_add(&m->handle_gen, 1);
}

void p11p_member_refused(void *arg)
{
	struct p11p_member *m = arg;

	atomic_store(&m->refused, true);
}

void p11p_member_ctx_init(struct p11p_member *m)
{
	m->ctx = (struct p11p_bctx){.be = m->be,
	                            .refused = p11p_member_refused,
	                            .arg = m,
	                            .count = &m->n_be_sessions,
	                            .gone = p11p_member_sessions_gone,
	                            .gone_arg = m};
}

void p11p_member_probe_ctx(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m,
                           struct p11p_bctx *out)
{
	unsigned long t = vs->head.cfg->ha.call_timeout_ms;

	*out = (struct p11p_bctx){.be = m->be,
	                          .timeout_ms = !st->threads_allowed ? 0
	                                        : t != 0             ? t
	                                                             : P11P_PROBE_TIMEOUT_MS,
	                          .hung = probe_hung,
	                          .released = p11p_member_released,
	                          .refused = p11p_member_refused,
	                          .arg = m,
	                          .count = &m->n_be_sessions,
	                          .gone = p11p_member_sessions_gone,
	                          .gone_arg = m};
}

bool p11p_slot_retry(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member **m,
                     CK_SLOT_ID *be_slot, CK_RV *rv, unsigned *tries)
{
	/* A server-side error, or a session lost under the call (an HSM restart). */
	if (!p11p_rv_needs_failover(*m, *rv) || (*tries)++ > vs->head.n_members)
		return false;
	/*
	 * The member still answers: a failure that passed, asked once more
	 * there (not CKR_GENERAL_ERROR, which tokens also answer bad requests with).
	 */
	if (p11p_member_confirm(st, vs, *m, *rv))
		return *tries == 1 && *rv != CKR_GENERAL_ERROR;
	*m = p11p_member_pick(st, vs, be_slot);
	if (*m == NULL) {
		*rv = CKR_DEVICE_ERROR;
		return false;
	}
	return true;
}

/* p11p_member_pick() under the lock, else by reviving a member. */
static __attribute__((noinline)) struct p11p_member *
pick_slow(struct p11p_state *st, struct p11p_vslot *vs, CK_SLOT_ID *be_slot)
{
	struct p11p_member *m;

	p11p_lock();
	m = pick(vs, NULL);
	if (m != NULL)
		*be_slot = m->be_slot;
	p11p_unlock();
	if (m != NULL)
		return m;
	m = p11p_hook_member_revive(st, vs);
	if (m != NULL) {
		p11p_lock();
		*be_slot = m->be_slot;
		p11p_unlock();
	}
	return m;
}

struct p11p_member *p11p_member_pick(struct p11p_state *st, struct p11p_vslot *vs,
                                     CK_SLOT_ID *be_slot)
{
	/*
	 * New sessions ask this every time: read without the lock (virt.h,
	 * p11p_read_begin), and under it only when a writer came in between.
	 */
	unsigned long seq = p11p_read_begin();

	if ((seq & 1) == 0) {
		struct p11p_member *m = pick(vs, NULL);

		if (m != NULL) {
			CK_SLOT_ID bs = P11P_RD(m->be_slot);

			if (p11p_read_valid(seq)) {
				*be_slot = bs;
				return m;
			}
		}
	}
	return pick_slow(st, vs, be_slot);
}

void p11p_health_new_epoch_locked(void)
{
	g_epoch++;
}

void p11p_call_hung(void *arg, void **rel, unsigned long *token)
{
	struct p11p_call *c = arg;
	struct p11p_vslot *vs = c->s->head.slot;

	/* Not taken back while the call lasts, as for the watchdog's. */
	p11p_lock();
	*rel = c->m;
	*token = g_epoch;
	c->m->hung_calls++;
	if (atomic_load(&c->m->health) != P11P_DOWN) {
		p11p_message("slot '%s': a call on member '%s' ran past call_timeout (%lu ms): "
		             "abandoned, answered by another member",
		             vs->head.label, c->m->cfg->name, c->timeout_ms);
		p11p_member_down_locked(c->st, vs, c->m, CKR_DEVICE_ERROR);
	}
	p11p_unlock();
	/* The call starts again on another member: so does the watchdog's clock. */
	if (atomic_load(&c->s->call_started_ms) != 0)
		atomic_store(&c->s->call_started_ms, p11p_now_ms());
}

void p11p_call_refused(void *arg)
{
	struct p11p_call *c = arg;

	atomic_store(&c->m->refused, true);
}

void p11p_member_released(void *rel, unsigned long token)
{
	struct p11p_member *m = rel;

	p11p_lock();
	if (token == g_epoch && m->hung_calls > 0)
		m->hung_calls--;
	p11p_unlock();
}
