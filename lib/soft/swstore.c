/*
 * Software keys (issue 12): the HSM side. A software key's value is stored
 * only as a blob (keymodel/swblob.h) that the HSM wrote: AES-GCM under the
 * slot's wrapping key (`software_keys: wrapping_key:`, a secret key with the
 * same value on every member), with the record's identity as additional
 * data. Sealing and opening are backend calls on the call's member, through
 * the backend-call layer, failing over like the other calls of a session.
 * The objects, the cache and the operations are in local.c.
 */
#include "base/log.h"
#include "base/mem.h"
#include "base/secret.h"
#include "keymodel/swblob.h"
#include "soft/local.h"

#include <string.h>

/* The wrapping key on c's member: reported when absent or ambiguous. */
static CK_RV find_wrapping(struct p11p_call *c, CK_SESSION_HANDLE bs, CK_OBJECT_HANDLE *key)
{
	static struct p11p_ratelimit missing;
	struct p11p_vslot *vs = p11p_shead(c->s)->slot;
	const char *label = p11p_vhead(vs)->cfg->swkeys.wrapping_key;
	CK_RV rv = p11p_local_hsm_find_key(&c->bc, bs, label, key);

	if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_KEY_NOT_NEEDED) {
		bool logged_in;

		p11p_lock();
		logged_in = p11p_vslot_login_locked(vs) != P11P_NO_USER;
		p11p_unlock();
		if (!logged_in && rv == CKR_KEY_HANDLE_INVALID)
			return CKR_USER_NOT_LOGGED_IN; /* the wrapping key may be private */
		p11p_message_limited(
		    &missing,
		    "slot '%s': software keys: %s secret key labelled '%s' (software_keys: "
		    "wrapping_key) on member '%s': create that AES key on every member of the "
		    "slot, or set wrapping_key to the label of one there",
		    p11p_vhead(vs)->label, rv == CKR_KEY_NOT_NEEDED ? "more than one" : "no", label,
		    p11p_vhead(vs)->members[p11p_shead(c->s)->member].cfg->name);
		return CKR_FUNCTION_FAILED;
	}
	return rv;
}

/* One GCM operation under the wrapping key on c's member (failing over). */
static CK_RV hsm_gcm(struct p11p_call *c, bool enc, CK_MECHANISM *m, const unsigned char *in,
                     size_t in_len, unsigned char *out, CK_ULONG *out_len)
{
	CK_ULONG cap = *out_len;
	CK_RV rv;

	for (;;) {
		CK_SESSION_HANDLE bs;
		CK_OBJECT_HANDLE key;
		bool temp;

		*out_len = cap;
		rv = p11p_local_borrow_session(c, &bs, &temp);
		if (rv == CKR_OK) {
			rv = find_wrapping(c, bs, &key);
			if (rv == CKR_OK && enc) {
				rv = p11p_be_C_EncryptInit(&c->bc, bs, m, key);
				if (rv == CKR_OK)
					rv = p11p_be_C_Encrypt(&c->bc, bs,
					                       (CK_BYTE_PTR)(uintptr_t)in, in_len,
					                       out, out_len);
			} else if (rv == CKR_OK) {
				rv = p11p_be_C_DecryptInit(&c->bc, bs, m, key);
				if (rv == CKR_OK)
					rv = p11p_be_C_Decrypt(&c->bc, bs,
					                       (CK_BYTE_PTR)(uintptr_t)in, in_len,
					                       out, out_len);
			}
			p11p_local_end_session(c, bs, temp);
		}
		if (rv == CKR_FUNCTION_FAILED || rv == CKR_USER_NOT_LOGGED_IN)
			break; /* reported: no other member would do better */
		if (!p11p_hook_call_retry(c, &rv, true))
			break;
	}
	return rv;
}

CK_RV p11p_sw_seal(struct p11p_call *c, const struct p11p_vkey *rec, uint32_t flags,
                   const unsigned char *value, size_t len, unsigned char **blob, size_t *blob_len)
{
	unsigned char iv[P11P_SWB_IV_LEN], aad[P11P_SWB_AAD_MAX];
	CK_GCM_PARAMS gp;
	CK_MECHANISM m;
	CK_ULONG out_len;
	size_t aad_len, total = P11P_SWB_HDR_LEN + len + P11P_SWB_TAG_LEN;
	unsigned char *b;
	CK_RV rv;

	*blob = NULL;
	if (len == 0 || len > P11P_SWB_VALUE_MAX)
		return CKR_KEY_SIZE_RANGE;
	rv = p11p_local_random(c, iv, sizeof(iv));
	if (rv != CKR_OK)
		return rv;
	if ((b = p11p_malloc(total)) == NULL)
		return CKR_HOST_MEMORY;
	p11p_swb_header(b, flags, iv);
	aad_len = p11p_swb_aad(rec, b, aad);
	if (aad_len == 0) {
		p11p_free(b);
		return CKR_GENERAL_ERROR;
	}
	p11p_swb_mech(&m, &gp, b + 5, aad, aad_len);
	out_len = len + P11P_SWB_TAG_LEN;
	rv = hsm_gcm(c, true, &m, value, len, b + P11P_SWB_HDR_LEN, &out_len);
	if (rv == CKR_OK && out_len != len + P11P_SWB_TAG_LEN)
		rv = CKR_DEVICE_ERROR; /* a backend answering a wrong length */
	if (rv != CKR_OK) {
		p11p_free(b);
		return rv;
	}
	*blob = b;
	*blob_len = total;
	return CKR_OK;
}

CK_RV p11p_sw_open(struct p11p_call *c, const struct p11p_vkey *rec, const unsigned char *blob,
                   size_t blob_len, struct p11p_secret **value)
{
	static struct p11p_ratelimit refused;
	unsigned char aad[P11P_SWB_AAD_MAX];
	struct p11p_swb sb;
	CK_GCM_PARAMS gp;
	CK_MECHANISM m;
	CK_ULONG out_len;
	unsigned char *clear;
	size_t aad_len, map_len;
	int locked;
	CK_RV rv;

	*value = NULL;
	rv = p11p_swb_parse(blob, blob_len, &sb);
	aad_len = rv == CKR_OK ? p11p_swb_aad(rec, sb.hdr, aad) : 0;
	if (aad_len == 0) {
		p11p_message_limited(
		    &refused,
		    "slot '%s': software key %016llx: its stored value is malformed: "
		    "refused",
		    p11p_vhead(p11p_shead(c->s)->slot)->label, (unsigned long long)rec->vid);
		return CKR_FUNCTION_FAILED;
	}
	out_len = sb.ct_len;
	clear = p11p_locked_alloc(out_len, &map_len, &locked);
	if (clear == NULL)
		return CKR_HOST_MEMORY;
	p11p_swb_mech(&m, &gp, sb.iv, aad, aad_len);
	rv = hsm_gcm(c, false, &m, sb.ct, sb.ct_len, clear, &out_len);
	if (rv == CKR_OK && out_len != sb.ct_len - P11P_SWB_TAG_LEN)
		rv = CKR_DEVICE_ERROR;
	if (rv == CKR_OK && (*value = p11p_secret_new(clear, out_len)) == NULL)
		rv = CKR_HOST_MEMORY;
	p11p_wipe(clear, sb.ct_len);
	p11p_locked_free(clear, map_len, locked);
	if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
	    rv == CKR_GENERAL_ERROR) {
		/* SoftHSM2 and others answer CKR_GENERAL_ERROR to a forged tag. */
		p11p_message_limited(
		    &refused,
		    "slot '%s': software key %016llx: its stored value fails authentication under "
		    "wrapping key '%s' (edited, moved from another key's record, or encrypted "
		    "under "
		    "another wrapping key: see p11proxy keys rewrap): refused",
		    p11p_vhead(p11p_shead(c->s)->slot)->label, (unsigned long long)rec->vid,
		    p11p_vhead(p11p_shead(c->s)->slot)->cfg->swkeys.wrapping_key);
		rv = CKR_FUNCTION_FAILED;
	}
	return rv;
}
