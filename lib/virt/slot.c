/*
 * Virtual slots: ids are positions in the config; each is served by its
 * members, resolved lazily so a token that appears later is picked up.
 */
#include "virt/virt.h"
#include "virt/core.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/names.h"

#include <p11proxy.h>
#include <stdio.h>
#include <string.h>

/* Bound on what a backend may report. */
#define MAX_MECHANISMS 4096
/* How often a blocking C_WaitForSlotEvent looks at the members. */
#define EVENT_POLL_MS 500

struct p11p_vslot *p11p_slot_locked(struct p11p_state *st, CK_SLOT_ID id)
{
	return id < st->head.n_slots ? &st->slots[id] : NULL;
}

CK_USER_TYPE p11p_vslot_login_locked(const struct p11p_vslot *vs)
{
	return vs->login;
}

bool p11p_vslot_logged_in_locked(const struct p11p_vslot *vs, size_t i, unsigned long *gen)
{
	if (i >= P11P_MAX_MEMBERS)
		return false;
	if (gen != NULL)
		*gen = vs->login_gen[i];
	return (vs->logged_in & (1U << i)) != 0;
}

bool p11p_vslot_logged_in_set_locked(struct p11p_vslot *vs, size_t i, CK_USER_TYPE user,
                                     unsigned long gen)
{
	if (i >= P11P_MAX_MEMBERS || vs->login != user)
		return false;
	vs->logged_in |= 1U << i;
	vs->login_gen[i] = gen;
	return true;
}

void p11p_vslot_logged_in_clear_locked(struct p11p_vslot *vs, size_t i)
{
	if (i < P11P_MAX_MEMBERS)
		vs->logged_in &= ~(1U << i);
}

bool p11p_vslot_login_pin_locked(const struct p11p_vslot *vs, struct p11p_secret **out)
{
	*out = vs->login_pin != NULL ? p11p_secret_dup(vs->login_pin) : NULL;
	return vs->login_pin != NULL;
}

CK_RV p11p_slot_present(struct p11p_vslot *vs)
{
	bool present = false;

	/* From the members' health: no backend call, so a hung member cannot hang this. */
	p11p_lock();
	for (size_t i = 0; i < vs->head.n_members; i++)
		present |= vs->head.members[i].resolved && !vs->head.members[i].removed &&
		           atomic_load(&vs->head.members[i].health) != P11P_DOWN;

	p11p_unlock();
	return present ? CKR_OK : CKR_TOKEN_NOT_PRESENT;
}

CK_RV p11p_slot_enter(CK_SLOT_ID id, struct p11p_state **stp, struct p11p_vslot **vsp,
                      struct p11p_member **mp, CK_SLOT_ID *be_slot)
{
	struct p11p_state *st;
	struct p11p_vslot *vs;
	struct p11p_member *m = NULL;

	st = p11p_enter();
	if (st == NULL)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	/* The slots are fixed from C_Initialize on: no lock to find one. */
	vs = p11p_slot_locked(st, id);
	if (vs == NULL) {
		p11p_leave(st);
		return CKR_SLOT_ID_INVALID;
	}
	if (!st->probe_thread_running)
		p11p_hook_health_poll(st);
	if (mp != NULL) {
		m = p11p_member_pick(st, vs, be_slot);
		if (m == NULL) {
			p11p_leave(st);
			/* Members configured but all failed: the device, not the token, is the
			 * problem. */
			return p11p_slot_never_seen(vs) ? CKR_TOKEN_NOT_PRESENT : CKR_DEVICE_ERROR;
		}
		*mp = m;
	}
	*stp = st;
	*vsp = vs;
	return CKR_OK;
}

bool p11p_slot_never_seen(struct p11p_vslot *vs)
{
	bool never = true;

	p11p_lock();
	for (size_t i = 0; i < vs->head.n_members; i++)
		never &= vs->head.members[i].failures == 0 && !vs->head.members[i].resolved;
	p11p_unlock();
	return never;
}

CK_RV p11p_get_slot_list(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
	struct p11p_state *st;
	CK_ULONG n = 0;
	CK_RV rv = CKR_OK;

	if (count == NULL)
		return p11p_initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	st = p11p_enter();
	if (st == NULL)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	/* Slot ids are dense positions: an id is listed when its slot qualifies. */
	if (!st->probe_thread_running)
		p11p_hook_health_poll(st);
	for (size_t i = 0; i < st->head.n_slots; i++) {
		if (present && p11p_slot_present(&st->slots[i]) != CKR_OK)
			continue;
		if (list != NULL && n < *count)
			list[n] = st->slots[i].head.id;
		n++;
	}
	if (list != NULL && n > *count)
		rv = CKR_BUFFER_TOO_SMALL;
	*count = n;
	p11p_leave(st);
	return rv;
}

CK_RV p11p_get_slot_info(CK_SLOT_ID id, CK_SLOT_INFO_PTR info)
{
	struct p11p_state *st;
	struct p11p_vslot *vs;
	char desc[65];
	CK_RV rv;

	rv = p11p_slot_enter(id, &st, &vs, NULL, NULL);
	if (rv != CKR_OK)
		return rv;
	if (info == NULL) {
		p11p_leave(st);
		return CKR_ARGUMENTS_BAD;
	}
	memset(info, 0, sizeof(*info));
	p11p_lock();
	snprintf(desc, sizeof(desc), "p11proxy virtual slot %s", vs->head.label);
	p11p_unlock();
	p11p_pad(info->slotDescription, sizeof(info->slotDescription), desc);
	p11p_pad(info->manufacturerID, sizeof(info->manufacturerID), "p11proxy");
	info->flags = p11p_slot_present(vs) == CKR_OK ? CKF_TOKEN_PRESENT : 0;
	info->hardwareVersion.major = P11PROXY_VERSION_MAJOR;
	info->hardwareVersion.minor = P11PROXY_VERSION_MINOR;
	info->firmwareVersion = info->hardwareVersion;
	p11p_leave(st);
	return CKR_OK;
}

CK_RV p11p_get_token_info(CK_SLOT_ID id, CK_TOKEN_INFO_PTR info)
{
	struct p11p_state *st;
	struct p11p_vslot *vs;
	struct p11p_member *m;
	CK_SLOT_ID be_slot;
	unsigned tries = 0;
	CK_RV rv;

	rv = p11p_slot_enter(id, &st, &vs, &m, &be_slot);
	if (rv != CKR_OK)
		return rv;
	if (info == NULL) {
		p11p_leave(st);
		return CKR_ARGUMENTS_BAD;
	}
	do
		rv = p11p_be_C_GetTokenInfo(&m->ctx, be_slot, info);
	while (p11p_slot_retry(st, vs, &m, &be_slot, &rv, &tries));
	if (rv == CKR_OK) {
		/* What the application sees is the virtual token, whichever member serves it. */
		p11p_lock();
		p11p_pad(info->label, sizeof(info->label), vs->head.label);
		p11p_pad(info->serialNumber, sizeof(info->serialNumber), vs->serial);
		p11p_unlock();
		/* Wrong PINs the proxy refused itself show as a token shows its own. */
		p11p_pin_token_flags(st, vs, m, &info->flags);
	}
	p11p_leave(st);
	return rv;
}

/*
 * The vendor mechanisms of p11proxy.h a member supports, from its own
 * mechanism list: fragment derivation needs CKM_SHA256_HMAC signing (the
 * extract step runs there), key generation from mixed entropy needs
 * C_CreateObject of a secret key type it can generate itself.
 */
static bool has_mech(const CK_MECHANISM_TYPE *list, CK_ULONG n, CK_MECHANISM_TYPE t)
{
	for (CK_ULONG i = 0; i < n; i++)
		if (list[i] == t)
			return true;
	return false;
}

static CK_ULONG vendor_mechs(const CK_MECHANISM_TYPE *list, CK_ULONG n, CK_MECHANISM_TYPE out[2])
{
	CK_ULONG k = 0;

	if (has_mech(list, n, CKM_SHA256_HMAC))
		out[k++] = CKM_P11PROXY_FRAGMENT_DERIVE;
	if (has_mech(list, n, CKM_AES_KEY_GEN) || has_mech(list, n, CKM_GENERIC_SECRET_KEY_GEN))
		out[k++] = CKM_P11PROXY_MIXED_KEY_GEN;
	return k;
}

CK_RV p11p_get_mechanism_list(CK_SLOT_ID id, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
	struct p11p_state *st;
	struct p11p_vslot *vs;
	struct p11p_member *m;
	CK_MECHANISM_TYPE *tmp = NULL, extra[2];
	CK_SLOT_ID be_slot;
	CK_ULONG n = 0, cap = 0, k;
	unsigned tries = 0;
	CK_RV rv;

	rv = p11p_slot_enter(id, &st, &vs, &m, &be_slot);
	if (rv != CKR_OK)
		return rv;
	if (count == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	/*
	 * Ask the backend into our own bounded buffer, then copy what fits. Both
	 * calls go to the next member when one fails (or its answer is refused).
	 */
	do {
		p11p_free(tmp);
		tmp = NULL;
		n = 0;
		rv = p11p_be_C_GetMechanismList(&m->ctx, be_slot, NULL, &n);
		if (rv != CKR_OK || n == 0 || n > MAX_MECHANISMS)
			continue;
		cap = n;
		tmp = p11p_calloc(cap, sizeof(*tmp));
		if (tmp == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		rv = p11p_be_C_GetMechanismList(&m->ctx, be_slot, tmp, &n);
	} while (p11p_slot_retry(st, vs, &m, &be_slot, &rv, &tries));
	if (rv != CKR_OK)
		goto out;
	if (n > MAX_MECHANISMS || (tmp != NULL && n > cap)) {
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	k = vendor_mechs(tmp, n, extra);
	if (list != NULL) {
		if (n + k > *count) {
			*count = n + k;
			rv = CKR_BUFFER_TOO_SMALL;
			goto out;
		}
		if (n > 0)
			memcpy(list, tmp, n * sizeof(*tmp));
		memcpy(list + n, extra, k * sizeof(*extra));
	}
	*count = n + k;
out:
	p11p_free(tmp);
	p11p_leave(st);
	return rv;
}

/* A vendor mechanism's info, from what the member says of the mechanisms it needs. */
static CK_RV vendor_info(const struct p11p_bctx *bc, CK_SLOT_ID be_slot, CK_MECHANISM_TYPE type,
                         CK_MECHANISM_INFO_PTR info)
{
	CK_MECHANISM_INFO mi;
	bool any = false;
	CK_RV rv;

	memset(info, 0, sizeof(*info));
	if (type == CKM_P11PROXY_FRAGMENT_DERIVE) {
		rv = p11p_be_C_GetMechanismInfo(bc, be_slot, CKM_SHA256_HMAC, &mi);
		if (rv == CKR_MECHANISM_INVALID || (rv == CKR_OK && !(mi.flags & CKF_SIGN)))
			return CKR_MECHANISM_INVALID;
		if (rv != CKR_OK)
			return rv;
		/* Key sizes: those of the base key, the member's HMAC key. */
		info->ulMinKeySize = mi.ulMinKeySize;
		info->ulMaxKeySize = mi.ulMaxKeySize;
		info->flags = CKF_DERIVE;
		return CKR_OK;
	}
	{
		static const CK_MECHANISM_TYPE gens[] = {CKM_AES_KEY_GEN,
		                                         CKM_GENERIC_SECRET_KEY_GEN};

		for (size_t i = 0; i < 2; i++) {
			rv = p11p_be_C_GetMechanismInfo(bc, be_slot, gens[i], &mi);
			if (rv == CKR_MECHANISM_INVALID)
				continue;
			if (rv != CKR_OK)
				return rv;
			if (!any || mi.ulMinKeySize < info->ulMinKeySize)
				info->ulMinKeySize = mi.ulMinKeySize;
			if (!any || mi.ulMaxKeySize > info->ulMaxKeySize)
				info->ulMaxKeySize = mi.ulMaxKeySize;
			any = true;
		}
	}
	if (!any)
		return CKR_MECHANISM_INVALID;
	info->flags = CKF_GENERATE;
	return CKR_OK;
}

CK_RV p11p_get_mechanism_info(CK_SLOT_ID id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
	struct p11p_state *st;
	struct p11p_vslot *vs;
	struct p11p_member *m;
	CK_SLOT_ID be_slot;
	unsigned tries = 0;
	CK_RV rv;

	rv = p11p_slot_enter(id, &st, &vs, &m, &be_slot);
	if (rv != CKR_OK)
		return rv;
	if (info == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if (p11p_hook_local_mechanism(type))
		do
			rv = vendor_info(&m->ctx, be_slot, type, info);
		while (p11p_slot_retry(st, vs, &m, &be_slot, &rv, &tries));
	else
		do
			rv = p11p_be_C_GetMechanismInfo(&m->ctx, be_slot, type, info);
		while (p11p_slot_retry(st, vs, &m, &be_slot, &rv, &tries));
	p11p_leave(st);
	return rv;
}

CK_RV p11p_init_token(CK_SLOT_ID id, CK_UTF8CHAR_PTR pin, CK_ULONG len, CK_UTF8CHAR_PTR label)
{
	struct p11p_state *st;
	struct p11p_vslot *vs;
	struct p11p_member *m;
	CK_SLOT_ID be_slot;
	CK_RV rv;

	rv = p11p_slot_enter(id, &st, &vs, &m, &be_slot);
	if (rv != CKR_OK)
		return rv;
	if (label == NULL || (pin == NULL && len > 0))
		rv = CKR_ARGUMENTS_BAD;
	else
		rv = p11p_be_C_InitToken(&m->ctx, be_slot, pin, len, label);
	p11p_leave(st);
	return rv;
}

CK_RV p11p_wait_for_slot_event(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved)
{
	struct p11p_state *st;
	CK_RV rv = CKR_NO_EVENT;

	if (!p11p_initialized())
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (slot == NULL || reserved != NULL)
		return CKR_ARGUMENTS_BAD;
	st = p11p_enter();
	if (st == NULL)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	for (;;) {
		if (!st->probe_thread_running)
			p11p_hook_health_poll(st);
		for (size_t i = 0; i < st->head.n_slots && rv == CKR_NO_EVENT; i++) {
			struct p11p_vslot *vs = &st->slots[i];
			bool present = p11p_slot_present(vs) == CKR_OK;

			p11p_lock();
			if (present != vs->reported_present) {
				vs->reported_present = present;
				*slot = vs->head.id;
				rv = CKR_OK;
			}
			p11p_unlock();
		}
		if (rv != CKR_NO_EVENT || (flags & CKF_DONT_BLOCK))
			break;
		p11p_lock();
		if (!st->finalizing)
			p11p_wait_locked(EVENT_POLL_MS);
		if (st->finalizing)
			rv = CKR_CRYPTOKI_NOT_INITIALIZED;
		p11p_unlock();
		if (rv != CKR_NO_EVENT)
			break;
	}
	p11p_leave(st);
	return rv;
}

/*
 * C_InitPIN (the SO sets the user PIN): on the session's member, as any call
 * (not repeated on another member when it fails: done or not there is
 * unknown), then on each other member of the slot that is up, on a session
 * of our own logged in as the application is (the SO login replayed). A
 * member that does not get it is named: the SO runs C_InitPIN again once it
 * is back. On success the slot's virtual PIN state (pinstate.c: the wrong
 * PINs the proxy counted, the lock) starts again from 0, as after
 * `p11proxy pin reset`.
 */
CK_RV p11p_init_pin(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
	struct p11p_call c;
	struct p11p_vslot *vs;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (pin == NULL && pin_len > 0)
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	vs = p11p_shead(c.s)->slot;
	rv = p11p_be_C_InitPIN(&c.bc, c.bs, pin, pin_len);
	p11p_hook_call_retry(&c, &rv, false);
	if (rv != CKR_OK)
		return p11p_call_end(&c, rv);
	for (size_t i = 0; i < vs->head.n_members; i++) {
		struct p11p_member *m = &vs->head.members[i];
		CK_SESSION_HANDLE tmp = 0;
		CK_SLOT_ID be_slot = 0;
		CK_RV r = CKR_DEVICE_REMOVED;
		bool up;

		if (m == c.m)
			continue;
		p11p_lock();
		up = !m->removed && m->resolved && atomic_load(&m->health) == P11P_UP;
		be_slot = m->be_slot;
		p11p_unlock();
		if (up)
			r = p11p_be_C_OpenSession(&m->ctx, be_slot,
			                          CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
			                          &tmp);
		if (up && r == CKR_OK) {
			r = p11p_hook_replay_login(vs, m, tmp);
			if (r == CKR_OK)
				r = p11p_be_C_InitPIN(&m->ctx, tmp, pin, pin_len);
			p11p_be_C_CloseSession(&m->ctx, tmp);
		}
		if (r != CKR_OK)
			p11p_message("slot '%s': member '%s' did not get the new user PIN (%s): "
			             "C_InitPIN again once it is back",
			             vs->head.label, m->cfg->name, p11p_rv_str(r));
	}
	p11p_pin_reset(c.st, vs);
	return p11p_call_end(&c, rv);
}
