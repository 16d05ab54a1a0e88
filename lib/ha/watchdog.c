/*
 * The call watchdog (slots with ha.call_timeout): the probe thread looks at
 * the calls in flight and marks down the member of any call that has run
 * longer than its slot's call_timeout. Other threads then leave that member
 * before their next call, and new sessions avoid it, so one hung HSM does
 * not hold up the slot. Forwarded calls are abandoned past call_timeout by
 * offload.c; the watchdog covers the calls that run in the application's
 * thread (custom entry points, uncopiable parameters): such a thread waits
 * for the backend to return and then fails over like any failed call.
 */
#include "ha/ha.h"
#include "base/log.h"

struct scan {
	struct p11p_state *st;
	unsigned long long now, next;
};

static void scan_cb(void *value, void *arg)
{
	struct p11p_session *s = value;
	struct p11p_session_head *sh = p11p_shead(s);
	struct scan *sc = arg;
	unsigned long long started = p11p_session_call_started_locked(s);
	unsigned long timeout = p11p_vhead(sh->slot)->cfg->ha.call_timeout_ms;
	struct p11p_member *m;

	if (timeout == 0 || started == 0)
		return;
	if (sc->now - started < timeout) {
		if (started + timeout < sc->next)
			sc->next = started + timeout;
		return;
	}
	/* sh->member is read without the session's lock: at worst a stale index, checked here. */
	m = &p11p_vhead(sh->slot)
	         ->members[sh->member < p11p_vhead(sh->slot)->n_members ? sh->member : 0];
	/* Counted once; the member is not promoted back while the call is in flight. */
	p11p_session_call_hung_locked(s, m);
	if (atomic_load(&m->health) == P11P_DOWN)
		return;
	p11p_message("slot '%s': a call on member '%s' has run for %llu ms (call_timeout %lu ms)",
	             p11p_vhead(sh->slot)->label, m->cfg->name, sc->now - started, timeout);
	p11p_member_down_locked(sc->st, sh->slot, m, CKR_DEVICE_ERROR);
}

unsigned long long p11p_watchdog_scan_locked(struct p11p_state *st)
{
	struct scan sc = {.st = st, .now = p11p_now_ms()};

	sc.next = sc.now + p11p_state_watch_ms(st);
	p11p_sessions_each_locked(st, scan_cb, &sc);
	return sc.next > sc.now ? sc.next - sc.now : 1;
}
