/*
 * Member health probes (the HA room): failed members are probed until they
 * answer again, by a thread or inline when the application forbids threads,
 * each probe with a deadline; when every member of a slot is down, a call
 * revives the first that answers. The member states themselves, and the
 * choice of the member for new work, are the core's (virt/member.c).
 */
#include "ha/ha.h"
#include "vkeys/vkeys.h"
#include "base/log.h"
#include "base/names.h"

#include <string.h>
#include <time.h>

#define MAX_BACKOFF_MS         60000UL
#define GOOD_PROBES_TO_RECOVER 2

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
			p11p_notice("slot '%s': member '%s' (backend '%s') is up again",
			            p11p_vhead(vs)->label, m->cfg->name, m->be->cfg->name);
			p11p_broadcast_locked();
			back_up = true;
		} else if (atomic_load(&m->health) != P11P_UP) {
			atomic_store(&m->health, P11P_RECOVERING);
			m->next_probe_ms =
			    p11p_now_ms() + p11p_vhead(vs)->cfg->ha.probe_interval_ms;
			p11p_broadcast_locked();
		}
	} else if (atomic_load(&m->health) != P11P_UP) {
		atomic_store(&m->health, P11P_DOWN);
		m->good_probes = 0;
		m->backoff_ms =
		    m->backoff_ms * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : m->backoff_ms * 2;
		m->next_probe_ms = p11p_now_ms() + m->backoff_ms;
		p11p_debug(P11P_DBG_BACKEND, "slot '%s' member '%s': probe failed (%s)",
		           p11p_vhead(vs)->label, m->cfg->name,
		           rv == CKR_TOKEN_NOT_PRESENT ? err : p11p_rv_str(rv));
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
		m = p11p_slot_order_member_locked(vs, i);
		if (m != NULL) {
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

/* The next member due for a probe, marked as being probed; NULL if none. Global lock held. */
static struct p11p_member *due_locked(struct p11p_state *st, struct p11p_vslot **vsp,
                                      unsigned long long now, unsigned long long *next)
{
	for (size_t i = 0; i < p11p_sthead(st)->n_slots; i++) {
		struct p11p_vslot *vs = p11p_state_slot(st, i);

		for (size_t j = 0; j < p11p_vhead(vs)->n_members; j++) {
			struct p11p_member *m = &p11p_vhead(vs)->members[j];

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
	p11p_stats_poll(st); /* this process's statistics file, at most once a second */
	p11p_repl_poll(st);  /* replication debts, at most every 5 s */
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
	unsigned long long order_due, stats_due, vkeys_due, local_due;

	pthread_setname_np(pthread_self(), "p11proxy-probe"); /* top -H, gdb */
	p11p_lock();
	while (!p11p_sthead(st)->ha->probe_stop) {
		/*
		 * The member order overlays: checked when due (once a second); the
		 * statistics file: written when due and changed. Lock released.
		 */
		p11p_unlock();
		order_due = p11p_order_poll(st);
		stats_due = p11p_stats_poll(st);
		vkeys_due = p11p_vkeys_poll(st);
		p11p_repl_poll(st);                   /* replication debts, at most every 5 s */
		local_due = p11p_hook_local_poll(st); /* software keys past cache_ttl/idle */
		p11p_lock();
		if (p11p_sthead(st)->ha->probe_stop)
			break;

		unsigned long long now = p11p_now_ms(),
		                   next = now + (p11p_state_watch_ms(st)
		                                     ? p11p_watchdog_scan_locked(st)
		                                     : 1000);

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
		if (stats_due < next)
			next = stats_due;
		if (vkeys_due < next)
			next = vkeys_due;
		if (local_due != 0 && local_due < next) /* 0: the soft room is not registered */
			next = local_due;
		p11p_probe_wait_locked(st, next > now ? next - now : 1);
	}
	p11p_unlock();
	return NULL;
}

void p11p_health_start(struct p11p_state *st, bool threads_allowed)
{
	p11p_stats_start(st);
	if (!threads_allowed)
		return;
	p11p_state_set_probe_thread(
	    st, pthread_create(&p11p_sthead(st)->ha->probe_thread, NULL, probe_main, st) == 0);
	if (!p11p_state_probe_thread(st))
		p11p_message("cannot start the health probe thread; probing inline");
}

void p11p_health_stop(struct p11p_state *st)
{
	if (p11p_state_probe_thread(st)) {
		p11p_lock();
		p11p_sthead(st)->ha->probe_stop = true;
		p11p_probe_wake_locked(st);
		p11p_unlock();
		pthread_join(p11p_sthead(st)->ha->probe_thread, NULL);
		p11p_state_set_probe_thread(st, false);
	}
	p11p_stats_stop(st);
}

void p11p_ha_register(void)
{
	P11P_HA_HOOKS(P11P_HOOK_SET)
}
