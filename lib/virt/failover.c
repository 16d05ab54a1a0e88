/*
 * Moving a session to another member when its member fails: open a session
 * there, log in as the application did, replay the operations in progress.
 * Everything here runs under the session's lock (the caller's call), never
 * under the global lock across a backend call.
 */
#include "virt/virt.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/names.h"

#include <string.h>

bool p11p_rv_needs_failover(const struct p11p_member *m, CK_RV rv)
{
	return rv != CKR_OK && (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	                        p11p_rv_is_server_error(m->be, rv));
}

CK_RV p11p_replay_login(struct p11p_vslot *vs, struct p11p_member *m, CK_SESSION_HANDLE bs)
{
	struct p11p_secret *pin = NULL;
	const struct p11p_secret *use;
	CK_UTF8CHAR buf[P11P_MAX_PIN_LEN];
	CK_USER_TYPE user;
	CK_RV rv = CKR_OK;
	bool done;
	size_t len;

	p11p_lock();
	user = vs->login;
	done = vs->logged_in & (1U << m->index);
	if (vs->login_pin != NULL && !done)
		pin = p11p_secret_dup(vs->login_pin);
	p11p_unlock();
	if (user == P11P_NO_USER || done)
		return CKR_OK;
	/* A member with its own PIN logs in with it (the application gave the virtual one). */
	use = user == CKU_USER && m->cfg->pin != NULL ? m->cfg->pin : pin;
	if (use == NULL) {
		rv =
		    pin == NULL && vs->login_pin != NULL ? CKR_HOST_MEMORY : CKR_USER_NOT_LOGGED_IN;
		goto out;
	}
	len = p11p_secret_len(use);
	if (len > sizeof(buf)) {
		rv = CKR_PIN_LEN_RANGE;
		goto out;
	}
	memcpy(buf, p11p_secret_data(use), len);
	rv = m->be->fl.C_Login(bs, user, buf, len);
	p11p_wipe(buf, sizeof(buf));
	/* Another session of ours may have logged this token in already. */
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;
	if (rv == CKR_OK) {
		p11p_lock();
		if (vs->login == user)
			vs->logged_in |= 1U << m->index;
		p11p_unlock();
	}
out:
	p11p_secret_free(pin);
	return rv;
}

/* Opens and prepares a session on member m for c's session. */
static CK_RV session_on(struct p11p_call *c, struct p11p_member *m)
{
	struct p11p_session *s = c->s;
	CK_SESSION_HANDLE bs = 0;
	CK_SLOT_ID be_slot;
	CK_RV rv;

	p11p_lock();
	be_slot = m->be_slot;
	p11p_unlock();
	rv = m->be->fl.C_OpenSession(be_slot, s->flags, NULL, NULL, &bs);
	if (rv != CKR_OK)
		return rv;
	p11p_lock();
	c->m->n_sessions--;
	m->n_sessions++;
	p11p_unlock();
	s->member = m->index;
	s->be[m->index] = bs;
	p11p_call_sync(c);
	rv = p11p_replay_login(c->s->slot, m, bs);

	if (rv == CKR_OK)
		rv = p11p_op_replay(c);
	return rv;
}

/*
 * Moves c's session off `old` to the best member (`old` itself when it is
 * alive and up): CKR_OK, or why no member could take it.
 */
static CK_RV move_session(struct p11p_call *c, struct p11p_member *old, bool alive)
{
	struct p11p_vslot *vs = c->s->slot;
	struct p11p_member *next;
	CK_RV r = CKR_DEVICE_ERROR;

	c->s->be[old->index] = 0;
	while (c->failovers < vs->cfg->ha.retries) {
		c->failovers++;
		p11p_lock();
		/* A lost session on a live member: a new one there is the first choice. */
		next = alive && !old->removed && atomic_load(&old->health) == P11P_UP

		           ? old
		           : p11p_member_pick_locked(vs, NULL);
		p11p_unlock();
		if (next == NULL)
			break;
		r = session_on(c, next);
		if (r == CKR_OK) {
			p11p_debug(P11P_DBG_SESSION, "session 0x%lx moved to member %zu",
			           (unsigned long)c->s->handle, next->index);
			return CKR_OK;
		}
		if (!p11p_rv_needs_failover(next, r))
			return r; /* it answers, but cannot take the session (a PIN it refuses) */
		if (c->s->be[next->index] != 0) {
			next->be->fl.C_CloseSession(c->s->be[next->index]);
			c->s->be[next->index] = 0;
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

bool p11p_call_retry(struct p11p_call *c, CK_RV *rv, bool repeatable)
{
	struct p11p_member *old = c->m;
	bool lost_session, alive;
	CK_RV r;

	if (!p11p_rv_needs_failover(c->m, *rv))
		return false;
	lost_session = *rv == CKR_SESSION_HANDLE_INVALID || *rv == CKR_SESSION_CLOSED;
	/* Marked down meanwhile (the watchdog saw this call hang): no second opinion. */
	alive = atomic_load(&c->m->health) != P11P_DOWN &&
	        p11p_member_confirm(c->st, c->s->slot, c->m, *rv);

	if (alive && !lost_session)
		return false; /* the member answers: the error was about this request */

	/* The old backend session is gone, or on a member we no longer use. */
	if (alive)
		c->fl->C_CloseSession(c->bs);
	r = move_session(c, old, alive);
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
	if (c->s->slot->n_members > 1 && atomic_load(&c->m->health) == P11P_DOWN)
		move_session(c, c->m, false);
}
