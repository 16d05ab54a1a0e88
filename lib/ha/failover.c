/*
 * Moving a session to another member when its member fails: open a session
 * there, log in as the application did, replay the operations in progress.
 * Everything here runs under the session's lock (the caller's call), never
 * under the global lock across a backend call.
 */
#include "ha/ha.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/names.h"
#include "base/attrs.h"

#include <string.h>

CK_RV p11p_replay_login(struct p11p_vslot *vs, struct p11p_member *m, CK_SESSION_HANDLE bs)
{
	struct p11p_secret *pin = NULL;
	const struct p11p_secret *use;
	CK_UTF8CHAR buf[P11P_MAX_PIN_LEN];
	CK_USER_TYPE user;
	CK_SESSION_INFO si;
	unsigned long gen = atomic_load(&m->handle_gen);
	CK_RV rv = CKR_OK;
	bool done, has_pin;
	size_t len;

	p11p_lock();
	user = p11p_vslot_login_locked(vs);
	done = p11p_vslot_logged_in_locked(vs, m->index, NULL);
	p11p_unlock();
	if (user == P11P_NO_USER)
		return CKR_OK;
	/*
	 * Logged in there already, as far as the proxy knows: the new session
	 * says whether the token still is. On a slot with several members it
	 * logs out with its last session, which may have been on another
	 * member's side of the slot; and an HSM that restarted has forgotten the
	 * login before any call of ours may have seen it (one member or several).
	 */
	if (done && p11p_be_C_GetSessionInfo(&m->ctx, bs, &si) == CKR_OK &&
	    si.state != CKS_RO_PUBLIC_SESSION && si.state != CKS_RW_PUBLIC_SESSION)
		goto logged_in;
	p11p_lock();
	has_pin = p11p_vslot_login_pin_locked(vs, &pin);
	p11p_unlock();
	/* A member with its own PIN logs in with it (the application gave the virtual one). */
	use = user == CKU_USER && m->cfg->pin != NULL ? m->cfg->pin : pin;
	if (use == NULL) {
		rv = pin == NULL && has_pin ? CKR_HOST_MEMORY : CKR_USER_NOT_LOGGED_IN;
		goto out;
	}
	len = p11p_secret_len(use);
	if (len > sizeof(buf)) {
		rv = CKR_PIN_LEN_RANGE;
		goto out;
	}
	memcpy(buf, p11p_secret_data(use), len);
	rv = p11p_be_C_Login(&m->ctx, bs, user, buf, len);
	p11p_wipe(buf, sizeof(buf));
	/* Another session of ours may have logged this token in already. */
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;
	if (rv != CKR_OK)
		goto out;
logged_in:
	p11p_lock();
	p11p_vslot_logged_in_set_locked(vs, m->index, user, gen);
	p11p_unlock();
out:
	p11p_secret_free(pin);
	return rv;
}

/* Opens and prepares a session on member m for c's session. */
static CK_RV session_on(struct p11p_call *c, struct p11p_member *m)
{
	struct p11p_session *s = c->s;
	CK_SESSION_HANDLE bs = 0;
	struct p11p_bctx x;
	CK_SLOT_ID be_slot;
	CK_RV rv;

	p11p_lock();
	be_slot = m->be_slot;
	p11p_unlock();
	/* The member may be the one that hangs: bounded like a probe. */
	p11p_member_probe_ctx(c->st, p11p_shead(s)->slot, m, &x);
	rv = p11p_be_C_OpenSession(&x, be_slot, p11p_shead(s)->flags, NULL, NULL, &bs);
	if (rv != CKR_OK)
		return rv;
	p11p_lock();
	c->m->n_sessions--;
	m->n_sessions++;
	p11p_unlock();
	p11p_shead(s)->member = m->index;
	p11p_session_set_be(s, m->index, bs);
	p11p_call_sync(c);
	rv = p11p_replay_login(p11p_shead(c->s)->slot, m, bs);

	if (rv == CKR_OK)
		rv = p11p_op_replay(c);
	return rv;
}

/*
 * Moves c's session off `old` to the best member (`old` itself when it is
 * alive and up): CKR_OK, or why no member could take it.
 */
static CK_RV move_session(struct p11p_call *c, struct p11p_member *old, bool alive, bool refresh)
{
	struct p11p_vslot *vs = p11p_shead(c->s)->slot;
	struct p11p_member *next;
	CK_RV r = CKR_DEVICE_ERROR;

	p11p_session_set_be(c->s, old->index, 0);
	while (c->failovers < p11p_vhead(vs)->cfg->ha.retries) {
		c->failovers++;
		p11p_lock();
		/* A lost session on a live member: a new one there is the first choice. */
		next = alive && !old->removed && atomic_load(&old->health) == P11P_UP

		           ? old
		           : p11p_member_pick_locked(vs, NULL);
		p11p_unlock();
		/* Every member is down: one may have come back since it was marked. */
		if (next == NULL)
			next = p11p_member_revive(c->st, vs);
		/*
		 * None answered its probe. Members failing by turns may each have
		 * been probed in its own bad moment (the first one just before it
		 * came back, the next one just after it went): another round, while
		 * the call has attempts left (ha.retries).
		 */
		if (next == NULL)
			continue;
		r = session_on(c, next);
		if (r == CKR_OK) {
			p11p_debug(P11P_DBG_SESSION, "session 0x%lx moved to member '%s'",
			           (unsigned long)p11p_shead(c->s)->handle, next->cfg->name);
			return CKR_OK;
		}
		if (!p11p_rv_needs_failover(next, r))
			return r; /* it answers, but cannot take the session (a PIN it refuses) */
		/*
		 * A refresh on the member that just answered: its error is the
		 * request's, unless the new session itself was lost there (the
		 * member restarting meanwhile): that is the member's failure.
		 */
		if (refresh && next == old && !p11p_rv_session_lost(r))
			return r;
		if (p11p_session_be(c->s, next->index) != 0) {
			p11p_be_C_CloseSession(&next->ctx, p11p_session_be(c->s, next->index));
			p11p_session_set_be(c->s, next->index, 0);
		}
		if (next == old)
			alive = false;
		p11p_lock();
		p11p_member_down_locked(c->st, vs, next, r);
		p11p_unlock();
		r = CKR_DEVICE_ERROR;
	}
	/* No member can take the session: the slot is down until a probe brings one back. */
	return CKR_DEVICE_ERROR;
}

/*
 * One line per session moved to another member, rate-limited: a member going
 * down moves every session it served. Each is counted on the member it left
 * (the metrics' failovers).
 */
static void report_failover(const struct p11p_call *c, struct p11p_member *old, const char *why)
{
	static struct p11p_ratelimit rl;

	atomic_fetch_add_explicit(&old->n_failovers, 1, memory_order_relaxed);
	p11p_message_limited(&rl,
	                     "slot '%s': a session moved from member '%s' (backend '%s') to member "
	                     "'%s' (backend '%s'): %s",
	                     p11p_vhead(p11p_shead(c->s)->slot)->label, old->cfg->name,
	                     old->be->cfg->name, c->m->cfg->name, c->m->be->cfg->name, why);
}

bool p11p_call_retry(struct p11p_call *c, CK_RV *rv, bool repeatable)
{
	struct p11p_member *old = c->m;
	struct p11p_bctx old_bc;
	CK_SESSION_HANDLE old_bs;
	bool refresh = false;
	bool lost_session, alive, lied;
	CK_RV r;

	/*
	 * A handle the proxy mapped, which the member no longer knows (it lost
	 * its sessions, or dropped the object's handle): found again by
	 * identity, once per call, before the application sees anything.
	 */
	if ((*rv == CKR_OBJECT_HANDLE_INVALID || *rv == CKR_KEY_HANDLE_INVALID) && c->mapped != 0 &&
	    !c->reresolved) {
		c->reresolved = true;
		return p11p_object_forget_handle(c, c->mapped, c->mapped_bh);
	}
	if (!p11p_rv_needs_failover(c->m, *rv))
		return false;
	lost_session = p11p_rv_session_lost(*rv);
	/* A member that lost its sessions (an HSM restart) lost its object handles with them. */
	if (lost_session)
		p11p_member_sessions_gone(old); /* and its login: checked again before use */
	/*
	 * Marked down meanwhile (the watchdog saw this call hang): no second
	 * opinion. A member whose answer the backend layer refused is marked down
	 * too (p11p_member_confirm), but it answers: its session is closed below.
	 */
	lied = atomic_load(&c->m->refused);
	alive = atomic_load(&c->m->health) != P11P_DOWN &&
	        p11p_member_confirm(c->st, p11p_shead(c->s)->slot, c->m, *rv);

	if (alive && !lost_session) {
		/*
		 * The member answers at once: the error was about this request, or
		 * a failure that has passed already. Once per call, a repeatable
		 * call that met a device error (not CKR_GENERAL_ERROR) is made again
		 * on a new session there (login and operations replayed); the same
		 * error again is the request's.
		 */
		if (!repeatable || c->refreshed || *rv == CKR_GENERAL_ERROR)
			return false; /* SoftHSM2 and others answer bad requests so */
		c->refreshed = true;
		refresh = true;
	}

	/*
	 * The old backend session is gone, or on a member we no longer use. A
	 * live one is closed only once the new one is open: closing a token's
	 * last session logs it out and may end its object handles (SoftHSM2).
	 */
	old_bc = c->bc;
	old_bs = c->bs;
	r = move_session(c, old, alive, refresh);
	if (alive || lied)
		p11p_be_C_CloseSession(&old_bc, old_bs);
	if (r == CKR_OK && c->m != old)
		report_failover(c, old, p11p_rv_str(*rv));
	if (r == CKR_OK)
		return repeatable;
	*rv = r;
	return false;
}

void p11p_call_leave_down_member(struct p11p_call *c)
{
	/*
	 * Marked down meanwhile (by another thread's failure, or the watchdog
	 * for a hung call): do not send it more work. Its session there is
	 * abandoned, not closed: the member may not answer.
	 */
	if (p11p_vhead(p11p_shead(c->s)->slot)->n_members > 1 &&
	    atomic_load(&c->m->health) == P11P_DOWN) {
		struct p11p_member *old = c->m;

		if (move_session(c, old, false, false) == CKR_OK && c->m != old)
			report_failover(c, old, "its member is down");
	}
}

/* Objects matching t[0..n) on c's member: 0, 1 or 2 (= more than one); -1 when the find failed. */
static long count_matches(struct p11p_call *c, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *one)
{
	CK_OBJECT_HANDLE found[2];
	CK_ULONG got = 0;
	CK_RV rv = p11p_be_C_FindObjectsInit(&c->bc, c->bs, t, n);

	if (rv != CKR_OK)
		return -1;
	rv = p11p_be_C_FindObjects(&c->bc, c->bs, found, 2, &got);
	p11p_be_C_FindObjectsFinal(&c->bc, c->bs);
	if (rv != CKR_OK || got > 2)
		return -1;
	if (got == 1)
		*one = found[0];
	return (long)got;
}

/*
 * Template i asks for a secret or private key that cannot be extracted: made
 * extractable under trusted keys only (the replication key) into cr's own
 * copy, locked after the copies (replicate.c). A session key too (Java makes
 * its keys in the session, then copies them to the token): its token copy is
 * replicated and both are locked then (object.c p11p_copy_object); never
 * copied, it is gone with its session.
 */
static void unlock_for_copy(struct p11p_call *c, struct p11p_creation *cr, size_t i,
                            CK_ATTRIBUTE_PTR *templ, CK_ULONG *count)
{
	const CK_ATTRIBUTE *a = templ[i];
	CK_ULONG k = count[i], j = 0;

	/* Without a replication key nothing could copy it: made as asked. */
	if (p11p_vhead(p11p_shead(c->s)->slot)->n_members < 2 ||
	    p11p_vhead(p11p_shead(c->s)->slot)->cfg->ha.replication != P11P_REPL_WRAP ||
	    p11p_vhead(p11p_shead(c->s)->slot)->cfg->ha.replication_key == NULL ||
	    (cr->cls[i] != CKO_SECRET_KEY && cr->cls[i] != CKO_PRIVATE_KEY) ||
	    k > P11P_CREATION_MAX_ATTRS || p11p_attr_bool(a, k, CKA_EXTRACTABLE, false))
		return;
	cr->yes = CK_TRUE;
	for (CK_ULONG x = 0; x < k; x++) {
		if (a[x].type != CKA_EXTRACTABLE && a[x].type != CKA_WRAP_WITH_TRUSTED)
			cr->rt[i][j++] = a[x];
	}
	cr->rt[i][j++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, &cr->yes, sizeof(cr->yes)};
	cr->rt[i][j++] = (CK_ATTRIBUTE){CKA_WRAP_WITH_TRUSTED, &cr->yes, sizeof(cr->yes)};
	templ[i] = cr->rt[i];
	count[i] = j;
	c->repl_lock |= (uint8_t)(1u << i);
}

void p11p_creation_begin(struct p11p_call *c, struct p11p_creation *cr, size_t n,
                         const CK_OBJECT_CLASS *default_cls, CK_ATTRIBUTE_PTR *templ,
                         CK_ULONG *count)
{
	memset(cr, 0, sizeof(*cr));
	cr->n = n > 2 ? 2 : n;
	c->repl_lock = 0;
	for (size_t i = 0; i < cr->n; i++) {
		const CK_ATTRIBUTE *a = templ[i];
		CK_ULONG k = count[i];
		const CK_ATTRIBUTE *id = p11p_attr_find(a, k, CKA_ID);
		const CK_ATTRIBUTE *label = p11p_attr_find(a, k, CKA_LABEL);
		long m;
		CK_OBJECT_HANDLE unused;

		cr->token[i] = p11p_attr_bool(a, k, CKA_TOKEN, false);
		cr->cls[i] = p11p_attr_ulong(a, k, CKA_CLASS, default_cls[i]);
		unlock_for_copy(c, cr, i, templ, count);
		if (!cr->token[i] || id == NULL || id->pValue == NULL ||
		    p11p_vhead(p11p_shead(c->s)->slot)->n_members < 2)
			continue;
		cr->t[i][0] = (CK_ATTRIBUTE){CKA_CLASS, &cr->cls[i], sizeof(cr->cls[i])};
		cr->t[i][1] = *id;
		cr->tn[i] = 2;
		if (label != NULL && label->pValue != NULL)
			cr->t[i][cr->tn[i]++] = *label;
		cr->named[i] = true;
		m = count_matches(c, cr->t[i], cr->tn[i], &unused);
		cr->counted[i] = m >= 0; /* else an object found later cannot be adopted */
		cr->before[i] = m > 0 ? (CK_ULONG)m : 0;
	}
}

bool p11p_creation_retry(struct p11p_call *c, struct p11p_creation *cr, CK_RV *rv,
                         CK_OBJECT_HANDLE *bh)
{
	struct p11p_member *old = c->m;
	CK_SESSION_HANDLE old_bs = c->bs;
	bool any_token = false, all_found = true, none_found = true;
	CK_OBJECT_HANDLE found[2] = {0, 0};

	for (size_t i = 0; i < cr->n; i++)
		any_token |= cr->token[i];
	/* Session objects die with their session: making them again is safe. */
	if (p11p_call_retry(c, rv, !any_token))
		return true;
	if (*rv == CKR_OK || (c->m == old && c->bs == old_bs))
		return false; /* no failover: the result stands */

	for (size_t i = 0; i < cr->n; i++) {
		long m = cr->named[i] ? count_matches(c, cr->t[i], cr->tn[i], &found[i]) : -1;

		all_found &= m == 1 && cr->counted[i] && cr->before[i] == 0;
		none_found &= m == 0;
	}
	if (all_found) {
		for (size_t i = 0; i < cr->n; i++)
			bh[i] = found[i];
		p11p_message("member '%s' failed during a key creation; the new object is on "
		             "member '%s' (found by CKA_ID): adopted",
		             old->cfg->name, c->m->cfg->name);
		*rv = CKR_OK;
	} else if (none_found) {
		p11p_message("member '%s' failed during a key creation: not created on the "
		             "survivors: safe to repeat (CKR_DEVICE_ERROR)",
		             old->cfg->name);
		*rv = CKR_DEVICE_ERROR;
	} else {
		p11p_message(
		    "member '%s' failed during a key creation: outcome unknown "
		    "(no CKA_ID to look for, or ambiguous on member '%s'): CKR_DEVICE_ERROR",
		    old->cfg->name, c->m->cfg->name);
		*rv = CKR_DEVICE_ERROR;
	}
	return false;
}

CK_RV p11p_repl_unlocked_set_locked(struct p11p_state *st, CK_OBJECT_HANDLE h, bool on,
                                    bool *changed)
{
	struct p11p_ha_state *ha = p11p_sthead(st)->ha;

	*changed = false;
	if (ha == NULL)
		return on ? CKR_HOST_MEMORY : CKR_OK;
	if (!on) {
		*changed = p11p_map_remove(&ha->repl_unlocked, 0, h) != NULL;
		return CKR_OK;
	}
	if (p11p_map_get(&ha->repl_unlocked, 0, h) != NULL)
		return CKR_OK;
	if (p11p_map_put(&ha->repl_unlocked, 0, h, ha) < 0)
		return CKR_HOST_MEMORY;
	*changed = true;
	return CKR_OK;
}

bool p11p_repl_unlocked_locked(struct p11p_state *st, CK_OBJECT_HANDLE h)
{
	return p11p_sthead(st)->ha != NULL &&
	       p11p_map_get(&p11p_sthead(st)->ha->repl_unlocked, 0, h) != NULL;
}
