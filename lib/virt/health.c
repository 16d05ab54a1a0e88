/*
 * Member health: marking members down on confirmed server-side failures,
 * choosing the member for new work, and probing failed members until they
 * answer again (a thread, or inline when the application forbids threads).
 */
#include "virt/virt.h"
#include "base/log.h"
#include "base/names.h"

#include <string.h>
#include <time.h>

/* Abandoned calls count against the state they were made in (global lock). */
static unsigned long g_epoch = 1;

#define MAX_BACKOFF_MS         60000UL
#define GOOD_PROBES_TO_RECOVER 2

unsigned long long p11p_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000ULL +
	       (unsigned long long)ts.tv_nsec / 1000000ULL;
}

void p11p_member_down_locked(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m,
                             CK_RV why)
{
	if (atomic_load(&m->health) != P11P_DOWN) {
		m->failures++;
		p11p_message("slot '%s': member %zu (backend '%s') is down: %s", vs->label,
		             m->index, m->be->cfg->name, p11p_rv_str(why));
	}
	atomic_store(&m->health, P11P_DOWN);
	m->last_error = why;
	atomic_fetch_add(&m->handle_gen, 1);
	vs->logged_in &= ~(1U << m->index); /* it may come back restarted */

	m->good_probes = 0;
	m->backoff_ms = vs->cfg->ha.probe_interval_ms;
	m->next_probe_ms = p11p_now_ms() + m->backoff_ms;
	/* Its handles are not to be trusted when it comes back: re-find objects then. */
	p11p_objects_forget_member_locked(st, vs, m->index);
	pthread_cond_signal(&st->probe_cond);
	p11p_broadcast_locked(); /* slot events */
}

bool p11p_member_confirm(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m,
                         CK_RV rv)
{
	CK_TOKEN_INFO ti;
	CK_SLOT_ID be_slot;
	struct p11p_bctx x;
	CK_RV probe;

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
 * not in it, and never get new work.
 */
static struct p11p_member *pick_state(struct p11p_vslot *vs, const struct p11p_member *avoid,
                                      int want)
{
	struct p11p_member *best = NULL;

	for (size_t i = 0; i < vs->n_order; i++) {
		struct p11p_member *m = &vs->members[vs->order[i]];

		if (m == avoid || m->removed || !m->resolved || atomic_load(&m->health) != want)
			continue;
		if (vs->cfg->ha.mode != P11P_HA_BALANCE)
			return m;
		if (best == NULL || m->n_sessions < best->n_sessions)
			best = m;
	}
	return best;
}

struct p11p_member *p11p_member_pick_locked(struct p11p_vslot *vs, const struct p11p_member *avoid)
{
	struct p11p_member *m = pick_state(vs, avoid, P11P_UP);

	return m != NULL ? m : pick_state(vs, avoid, P11P_RECOVERING);
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

void p11p_member_ctx_init(struct p11p_member *m)
{
	m->ctx = (struct p11p_bctx){.be = m->be,
	                            .count = &m->n_be_sessions,
	                            .gone = p11p_member_sessions_gone,
	                            .gone_arg = m};
}

void p11p_member_probe_ctx(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m,
                           struct p11p_bctx *out)
{
	unsigned long t = vs->cfg->ha.call_timeout_ms;

	*out = (struct p11p_bctx){.be = m->be,
	                          .timeout_ms = !st->threads_allowed ? 0
	                                        : t != 0             ? t
	                                                             : P11P_PROBE_TIMEOUT_MS,
	                          .hung = probe_hung,
	                          .released = p11p_member_released,
	                          .arg = m,
	                          .count = &m->n_be_sessions,
	                          .gone = p11p_member_sessions_gone,
	                          .gone_arg = m};
}

static CK_RV probe(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m, bool revive)
{
	struct p11p_member tmp;
	struct p11p_bctx x;
	CK_SESSION_HANDLE s = 0;
	CK_SESSION_INFO si;
	char err[256];
	bool back_up = false;
	CK_RV rv;

	/* Find the token again: it may be back in another backend slot. */
	memset(&tmp, 0, sizeof(tmp));
	tmp.cfg = m->cfg;
	tmp.be = m->be;
	p11p_lock();
	tmp.resolved = m->resolved; /* where to look first */
	tmp.be_slot = m->be_slot;
	p11p_unlock();
	p11p_member_probe_ctx(st, vs, m, &x);
	rv = p11p_member_resolve(&tmp, &x, err, sizeof(err));
	if (rv == CKR_OK)
		rv = p11p_be_C_OpenSession(&x, tmp.be_slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (rv == CKR_OK) {
		rv = p11p_be_C_GetSessionInfo(&x, s, &si);
		p11p_be_C_CloseSession(&x, s);
	}
	p11p_lock();
	if (!revive)
		m->probing = false; /* a revival does not take the probe thread's turn */
	/* It answers probes, but a call on it still hangs: not healthy. */
	if (rv == CKR_OK && m->hung_calls > 0)
		rv = CKR_DEVICE_ERROR;
	if (rv == CKR_OK) {

		m->resolved = true;
		m->be_slot = tmp.be_slot;
		if (atomic_load(&m->health) != P11P_UP &&
		    (revive || ++m->good_probes >= GOOD_PROBES_TO_RECOVER)) {
			atomic_store(&m->health, P11P_UP);
			p11p_message("slot '%s': member %zu (backend '%s') is up again", vs->label,
			             m->index, m->be->cfg->name);
			p11p_broadcast_locked();
			back_up = true;
		} else if (atomic_load(&m->health) != P11P_UP) {
			atomic_store(&m->health, P11P_RECOVERING);
			m->next_probe_ms = p11p_now_ms() + vs->cfg->ha.probe_interval_ms;
			p11p_broadcast_locked();
		}
	} else if (atomic_load(&m->health) != P11P_UP) {
		atomic_store(&m->health, P11P_DOWN);
		m->good_probes = 0;
		m->backoff_ms =
		    m->backoff_ms * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : m->backoff_ms * 2;
		m->next_probe_ms = p11p_now_ms() + m->backoff_ms;
		p11p_debug(P11P_DBG_BACKEND, "slot '%s' member %zu: probe failed (%s)", vs->label,
		           m->index, rv == CKR_TOKEN_NOT_PRESENT ? err : p11p_rv_str(rv));
	}
	p11p_unlock();
	/* Keys made while it was away: copied to it now, outside the global lock (replicate.c). */
	if (back_up)
		p11p_repl_catch_up(st, vs, m);
	return rv;
}

CK_RV p11p_member_probe(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m)
{
	return probe(st, vs, m, false);
}

struct p11p_member *p11p_member_revive(struct p11p_state *st, struct p11p_vslot *vs)
{
	for (size_t i = 0;; i++) {
		struct p11p_member *m = NULL;
		bool up = false, skip = false;

		p11p_lock();
		if (i < vs->n_order) {
			m = &vs->members[vs->order[i]];
			/* Up meanwhile (another thread revived it); hung: skipped. */
			up = atomic_load(&m->health) == P11P_UP && !m->removed && m->resolved;
			skip = m->removed || m->hung_calls > 0;
		}
		p11p_unlock();
		if (m == NULL || up)
			return m;
		if (!skip && probe(st, vs, m, true) == CKR_OK && atomic_load(&m->health) == P11P_UP)
			return m;
	}
}

struct p11p_member *p11p_member_pick(struct p11p_state *st, struct p11p_vslot *vs,
                                     CK_SLOT_ID *be_slot)
{
	struct p11p_member *m;

	p11p_lock();
	m = p11p_member_pick_locked(vs, NULL);
	if (m != NULL)
		*be_slot = m->be_slot;
	p11p_unlock();
	if (m != NULL)
		return m;
	m = p11p_member_revive(st, vs);
	if (m != NULL) {
		p11p_lock();
		*be_slot = m->be_slot;
		p11p_unlock();
	}
	return m;
}

/* The next member due for a probe, marked as being probed; NULL if none. Global lock held. */
static struct p11p_member *due_locked(struct p11p_state *st, struct p11p_vslot **vsp,
                                      unsigned long long now, unsigned long long *next)
{
	for (size_t i = 0; i < st->n_slots; i++) {
		struct p11p_vslot *vs = &st->slots[i];

		for (size_t j = 0; j < vs->n_members; j++) {
			struct p11p_member *m = &vs->members[j];

			/* Deleted members are not probed: they get no new work anyway. */
			/* Nor members with a hung call: a probe would hang too. */
			if (atomic_load(&m->health) == P11P_UP || m->probing || m->removed ||
			    m->hung_calls > 0 || m->be->module == NULL)
				continue;
			if (m->next_probe_ms <= now) {
				m->probing = true;
				*vsp = vs;
				return m;
			}
			if (m->next_probe_ms < *next)
				*next = m->next_probe_ms;
		}
	}
	return NULL;
}

void p11p_health_poll(struct p11p_state *st)
{
	struct p11p_vslot *vs;
	struct p11p_member *m;
	unsigned long long next = ~0ULL;

	p11p_order_poll(st); /* the member order overlays, at most once a second */
	for (;;) {
		p11p_lock();
		m = due_locked(st, &vs, p11p_now_ms(), &next);
		p11p_unlock();
		if (m == NULL)
			return;
		p11p_member_probe(st, vs, m);
	}
}

static void *probe_main(void *arg)
{
	struct p11p_state *st = arg;
	unsigned long long order_due;

	p11p_lock();
	while (!st->probe_stop) {
		/* The member order overlays: checked when due (once a second), lock released. */
		p11p_unlock();
		order_due = p11p_order_poll(st);
		p11p_lock();
		if (st->probe_stop)
			break;

		unsigned long long now = p11p_now_ms(),
		                   next =
		                       now + (st->watch_ms ? p11p_watchdog_scan_locked(st) : 1000);

		struct p11p_vslot *vs;
		struct p11p_member *m = due_locked(st, &vs, now, &next);

		if (m != NULL) {
			p11p_unlock();
			p11p_member_probe(st, vs, m);
			p11p_lock();
			continue;
		}
		if (order_due < next)
			next = order_due;
		p11p_cond_wait_locked(&st->probe_cond, next > now ? next - now : 1);
	}
	p11p_unlock();
	return NULL;
}

void p11p_health_start(struct p11p_state *st, bool threads_allowed)
{
	if (!threads_allowed)
		return;
	st->probe_thread_running = pthread_create(&st->probe_thread, NULL, probe_main, st) == 0;
	if (!st->probe_thread_running)
		p11p_message("cannot start the health probe thread; probing inline");
}

void p11p_health_stop(struct p11p_state *st)
{
	if (!st->probe_thread_running)
		return;
	p11p_lock();
	st->probe_stop = true;
	pthread_cond_signal(&st->probe_cond);
	p11p_unlock();
	pthread_join(st->probe_thread, NULL);
	st->probe_thread_running = false;
}

void p11p_health_new_epoch_locked(void)
{
	g_epoch++;
}

void p11p_call_hung(void *arg, void **rel, unsigned long *token)
{
	struct p11p_call *c = arg;
	struct p11p_vslot *vs = c->s->slot;

	/* Not taken back while the call lasts, as for the watchdog's. */
	p11p_lock();
	*rel = c->m;
	*token = g_epoch;
	c->m->hung_calls++;
	if (atomic_load(&c->m->health) != P11P_DOWN) {
		p11p_message("slot '%s': a call on member %zu ran past call_timeout (%lu ms): "
		             "abandoned, answered by another member",
		             vs->label, c->m->index, c->timeout_ms);
		p11p_member_down_locked(c->st, vs, c->m, CKR_DEVICE_ERROR);
	}
	p11p_unlock();
	/* The call starts again on another member: so does the watchdog's clock. */
	if (atomic_load(&c->s->call_started_ms) != 0)
		atomic_store(&c->s->call_started_ms, p11p_now_ms());
}

void p11p_member_released(void *rel, unsigned long token)
{
	struct p11p_member *m = rel;

	p11p_lock();
	if (token == g_epoch && m->hung_calls > 0)
		m->hung_calls--;
	p11p_unlock();
}
