/*
 * The key model: see model.h for the tables and the rules.
 */
#include "keymodel/model.h"
#include "p11proxy.h"

#include <string.h>

static const struct {
	CK_ATTRIBUTE_TYPE attr;
	const char *name;
	char letter;
} perms[P11P_VK_NPERMS] = {
    {CKA_ENCRYPT, "encrypt", 'e'}, {CKA_DECRYPT, "decrypt", 'd'}, {CKA_SIGN, "sign", 's'},
    {CKA_VERIFY, "verify", 'v'},   {CKA_WRAP, "wrap", 'w'},       {CKA_UNWRAP, "unwrap", 'u'},
    {CKA_DERIVE, "derive", 'k'},
};

_Static_assert(P11P_VK_ALL == (1u << P11P_VK_NPERMS) - 1, "seven permission bits");
_Static_assert(P11P_VK_ENCRYPT == 1u << 0 && P11P_VK_DECRYPT == 1u << 1 &&
                   P11P_VK_SIGN == 1u << 2 && P11P_VK_VERIFY == 1u << 3 &&
                   P11P_VK_WRAP == 1u << 4 && P11P_VK_UNWRAP == 1u << 5 &&
                   P11P_VK_DERIVE == 1u << 6,
               "the table above is in bit order");

/* The table of model.h. */
#define SECRET_PERMS  ((uint32_t)P11P_VK_ALL)
#define PRIVATE_PERMS ((uint32_t)(P11P_VK_DECRYPT | P11P_VK_SIGN | P11P_VK_UNWRAP | P11P_VK_DERIVE))
#define PUBLIC_PERMS  ((uint32_t)(P11P_VK_ENCRYPT | P11P_VK_VERIFY | P11P_VK_WRAP))
/* CKA_DERIVE is common to every key class (PKCS#11 3.0, 4.7). */
#define PUBLIC_ATTRS (PUBLIC_PERMS | (uint32_t)P11P_VK_DERIVE)

/* ---- permissions and classes -------------------------------------------------------------- */

CK_ATTRIBUTE_TYPE p11p_vk_perm_attr(unsigned i)
{
	return i < P11P_VK_NPERMS ? perms[i].attr : CKA_VENDOR_DEFINED;
}

const char *p11p_vk_perm_name(unsigned i)
{
	return i < P11P_VK_NPERMS ? perms[i].name : "?";
}

uint32_t p11p_vk_attr_perm(CK_ATTRIBUTE_TYPE type)
{
	if (!p11p_vk_maybe_usage(type))
		return 0;
	for (unsigned i = 0; i < P11P_VK_NPERMS; i++)
		if (perms[i].attr == type)
			return 1u << i;
	return 0;
}

bool p11p_vk_is_key_class(CK_OBJECT_CLASS cls)
{
	return cls == CKO_SECRET_KEY || cls == CKO_PRIVATE_KEY || cls == CKO_PUBLIC_KEY;
}

uint32_t p11p_vk_class_perms(CK_OBJECT_CLASS cls)
{
	switch (cls) {
	case CKO_SECRET_KEY:
		return SECRET_PERMS;
	case CKO_PRIVATE_KEY:
		return PRIVATE_PERMS;
	case CKO_PUBLIC_KEY:
		return PUBLIC_PERMS;
	default:
		return 0;
	}
}

uint32_t p11p_vk_class_attrs(CK_OBJECT_CLASS cls)
{
	return cls == CKO_PUBLIC_KEY ? PUBLIC_ATTRS : p11p_vk_class_perms(cls);
}

uint32_t p11p_vk_op_perm(CK_FLAGS op)
{
	switch (op) {
	case CKF_ENCRYPT:
		return P11P_VK_ENCRYPT;
	case CKF_DECRYPT:
		return P11P_VK_DECRYPT;
	case CKF_SIGN:
	case CKF_SIGN_RECOVER:
		return P11P_VK_SIGN;
	case CKF_VERIFY:
	case CKF_VERIFY_RECOVER:
		return P11P_VK_VERIFY;
	case CKF_WRAP:
		return P11P_VK_WRAP;
	case CKF_UNWRAP:
		return P11P_VK_UNWRAP;
	case CKF_DERIVE:
		return P11P_VK_DERIVE;
	default:
		return 0;
	}
}

/* ---- the usage attributes on a token key ------------------------------------------------- */

CK_ULONG p11p_vk_usage_template(uint32_t bits, uint32_t values, CK_ATTRIBUTE *t, CK_BBOOL *v)
{
	CK_ULONG n = 0;

	for (unsigned i = 0; i < P11P_VK_NPERMS; i++) {
		if (!(bits & (1u << i)))
			continue;
		v[n] = (values & (1u << i)) ? CK_TRUE : CK_FALSE;
		t[n] = (CK_ATTRIBUTE){perms[i].attr, &v[n], sizeof(CK_BBOOL)};
		n++;
	}
	return n;
}

uint32_t p11p_vk_usage_read(const CK_ATTRIBUTE *t, CK_ULONG n)
{
	uint32_t got = 0;

	for (CK_ULONG i = 0; i < n; i++) {
		uint32_t bit = p11p_vk_attr_perm(t[i].type);

		if (bit != 0 && t[i].pValue != NULL && t[i].ulValueLen == sizeof(CK_BBOOL) &&
		    *(const CK_BBOOL *)t[i].pValue != CK_FALSE)
			got |= bit;
	}
	return got;
}

/* ---- records ------------------------------------------------------------------------------ */

bool p11p_vk_identity_fits(CK_ULONG id_len, CK_ULONG label_len)
{
	return id_len <= P11P_INDEX_ID_MAX && label_len <= P11P_INDEX_LABEL_MAX;
}

bool p11p_vk_record_new(struct p11p_vkey *r, const char *slot, const struct p11p_vk_key *k,
                        uint32_t limit, enum p11p_vk_origin origin, uint32_t presence)
{
	size_t slen = slot != NULL ? strlen(slot) : 0;

	memset(r, 0, sizeof(*r));
	if (!p11p_vk_is_key_class(k->cls) || !p11p_vk_identity_fits(k->id_len, k->label_len) ||
	    slen == 0 || slen > P11P_INDEX_SLOT_MAX || (k->id_len > 0 && k->id == NULL) ||
	    (k->label_len > 0 && k->label == NULL))
		return false;
	memcpy(r->slot, slot, slen);
	r->cls = k->cls;
	r->key_type = k->key_type;
	if (k->id_len > 0)
		memcpy(r->ck_id, k->id, k->id_len);
	r->ck_id_len = k->id_len;
	if (k->label_len > 0)
		memcpy(r->label, k->label, k->label_len);
	r->label_len = k->label_len;
	r->perms = k->usage & p11p_vk_class_perms(k->cls) & limit;
	r->state = P11P_VK_ACTIVE;
	r->origin = origin;
	r->presence = presence & ((1u << P11P_INDEX_MAX_MEMBERS) - 1);
	return true;
}

bool p11p_vk_record_better(const struct p11p_vkey *a, const struct p11p_vkey *b)
{
	bool ad = a->state == P11P_VK_DELETED, bd = b->state == P11P_VK_DELETED;

	if (ad != bd)
		return !ad;
	if (a->origin != b->origin)
		return a->origin == P11P_VK_CREATED;
	return a->vid < b->vid;
}

/* ---- using a key, finds, attributes ------------------------------------------------------- */

uint32_t p11p_vk_perms_of(const struct p11p_vkey *r)
{
	return r->perms & p11p_vk_class_perms(r->cls);
}

CK_RV p11p_vk_use_check(const struct p11p_vkey *r, uint32_t perm)
{
	if (r->state == P11P_VK_DELETED)
		return CKR_KEY_HANDLE_INVALID;
	if (r->state == P11P_VK_DEACTIVATED)
		return P11PROXY_CKR_KEY_DEACTIVATED;
	if (perm != 0 && (p11p_vk_perms_of(r) & perm) != perm)
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	return CKR_OK;
}

uint32_t p11p_vk_find_attr(const CK_ATTRIBUTE *a)
{
	uint32_t bit = p11p_vk_attr_perm(a->type);

	if (bit == 0 || a->pValue == NULL || a->ulValueLen != sizeof(CK_BBOOL))
		return 0;
	return bit;
}

bool p11p_vk_find_match(const struct p11p_vkey *r, uint32_t mask, uint32_t want)
{
	if (r->state == P11P_VK_DELETED)
		return false;
	if ((mask & ~p11p_vk_class_attrs(r->cls)) != 0)
		return false;
	return (p11p_vk_perms_of(r) & mask) == (want & mask);
}

int p11p_vk_attr_value(const struct p11p_vkey *r, CK_ATTRIBUTE_TYPE type)
{
	uint32_t bit = p11p_vk_attr_perm(type);

	if ((bit & p11p_vk_class_attrs(r->cls)) == 0)
		return -1;
	/* A permission the class cannot have is never granted (a public key's derive). */
	return (p11p_vk_perms_of(r) & bit) != 0;
}

CK_RV p11p_vk_set_usage(CK_OBJECT_CLASS cls, const CK_ATTRIBUTE *a, uint32_t *mask, uint32_t *vals)
{
	uint32_t bit = p11p_vk_attr_perm(a->type);
	bool on;

	if (bit == 0 || (p11p_vk_class_attrs(cls) & bit) == 0)
		return CKR_ATTRIBUTE_TYPE_INVALID;
	if (a->pValue == NULL || a->ulValueLen != sizeof(CK_BBOOL))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	on = *(const CK_BBOOL *)a->pValue != CK_FALSE;
	if (on && (p11p_vk_class_perms(cls) & bit) == 0)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	*mask |= bit;
	if (on)
		*vals |= bit;
	else
		*vals &= ~bit;
	return CKR_OK;
}

/* ---- changing a record -------------------------------------------------------------------- */

static enum p11p_vk_edit edit(enum p11p_vk_edit e, const char **why, const char *msg)
{
	if (why != NULL)
		*why = msg;
	return e;
}

enum p11p_vk_edit p11p_vk_set_state(struct p11p_vkey *r, enum p11p_vk_state to, const char **why)
{
	if (why != NULL)
		*why = NULL;
	switch (to) {
	case P11P_VK_DEACTIVATED:
		if (r->state == P11P_VK_DELETED)
			return edit(P11P_VK_EDIT_REFUSED, why, "deleted: cannot be deactivated");
		if (r->state == P11P_VK_DEACTIVATED)
			return edit(P11P_VK_EDIT_SAME, why, "already deactivated");
		r->state = P11P_VK_DEACTIVATED;
		return P11P_VK_EDIT_CHANGED;
	case P11P_VK_ACTIVE:
		if (r->state == P11P_VK_DELETED)
			return edit(P11P_VK_EDIT_REFUSED, why, "deleted: cannot be activated");
		if (r->state != P11P_VK_DEACTIVATED)
			return edit(P11P_VK_EDIT_SAME, why, "not deactivated");
		/* A key no member holds any more is missing, not usable. */
		r->state = r->presence != 0 ? P11P_VK_ACTIVE : P11P_VK_MISSING;
		return P11P_VK_EDIT_CHANGED;
	case P11P_VK_DELETED:
		if (r->state == P11P_VK_DELETED)
			return edit(P11P_VK_EDIT_SAME, why, "already deleted");
		r->state = P11P_VK_DELETED;
		return P11P_VK_EDIT_CHANGED;
	case P11P_VK_MISSING:
		break;
	}
	return edit(P11P_VK_EDIT_REFUSED, why, "only a sync finds a key missing");
}

enum p11p_vk_edit p11p_vk_set_perms(struct p11p_vkey *r, uint32_t mask, uint32_t vals,
                                    const char **why)
{
	uint32_t m = mask & p11p_vk_class_perms(r->cls);
	uint32_t next = ((r->perms & ~m) | (vals & m)) & p11p_vk_class_perms(r->cls);

	if (why != NULL)
		*why = NULL;
	if (r->state == P11P_VK_DELETED)
		return edit(P11P_VK_EDIT_REFUSED, why, "deleted: its permissions cannot change");
	if (next == r->perms)
		return edit(P11P_VK_EDIT_SAME, why, "permissions already");
	r->perms = next;
	return P11P_VK_EDIT_CHANGED;
}

uint32_t p11p_vk_rotated_perms(uint32_t p)
{
	return p & (P11P_VK_DECRYPT | P11P_VK_VERIFY);
}

uint32_t p11p_vk_public_half(uint32_t p)
{
	return ((p & P11P_VK_SIGN) ? (uint32_t)P11P_VK_VERIFY : 0) |
	       ((p & P11P_VK_DECRYPT) ? (uint32_t)P11P_VK_ENCRYPT : 0) |
	       ((p & P11P_VK_UNWRAP) ? (uint32_t)P11P_VK_WRAP : 0);
}

/* ---- what a sync does to a record --------------------------------------------------------- */

enum p11p_vk_sync p11p_vk_sync_seen(struct p11p_vkey *r, uint32_t holders, uint32_t listed,
                                    CK_KEY_TYPE key_type)
{
	struct p11p_vkey was = *r;

	if (r->state == P11P_VK_DELETED)
		return P11P_VK_SYNC_DELETED;
	r->presence = (r->presence & ~listed) | holders;
	r->key_type = key_type;
	if (r->state == P11P_VK_MISSING)
		r->state = P11P_VK_ACTIVE;
	if (r->presence == was.presence && r->key_type == was.key_type && r->state == was.state)
		return P11P_VK_SYNC_UNCHANGED;
	return was.state == P11P_VK_MISSING ? P11P_VK_SYNC_FOUND : P11P_VK_SYNC_UPDATED;
}

enum p11p_vk_sync p11p_vk_sync_unseen(struct p11p_vkey *r, uint32_t listed)
{
	uint32_t old = r->presence;

	if (r->state == P11P_VK_DELETED)
		return P11P_VK_SYNC_DELETED;
	r->presence = old & ~listed;
	if (r->presence == 0 && old != 0) {
		if (r->state == P11P_VK_ACTIVE)
			r->state = P11P_VK_MISSING;
		return P11P_VK_SYNC_MISSING;
	}
	return r->presence != old ? P11P_VK_SYNC_UPDATED : P11P_VK_SYNC_UNCHANGED;
}

/* ---- the key-management policy ------------------------------------------------------------ */

enum p11p_vk_unrecorded p11p_vk_on_unrecorded(const struct p11p_policy_cfg *pol, bool recordable)
{
	return recordable && pol->scan == P11P_SCAN_ALL ? P11P_VK_IMPORT : P11P_VK_HIDE;
}

enum p11p_vk_route p11p_vk_route(const struct p11p_policy_cfg *pol, enum p11p_vk_change ch)
{
	switch (ch) {
	case P11P_VK_CHANGE_PERMS:
	case P11P_VK_CHANGE_DELETE:
		return pol->write_back ? P11P_VK_HSM_FIRST : P11P_VK_RECORD_ONLY;
	case P11P_VK_CHANGE_ATTRS:
		return pol->write_back ? P11P_VK_HSM_FIRST : P11P_VK_REFUSE;
	case P11P_VK_CHANGE_STATE:
		return P11P_VK_RECORD_ONLY;
	}
	return P11P_VK_REFUSE;
}

/* ---- words -------------------------------------------------------------------------------- */

static const char *const state_names[] = {"active", "deactivated", "missing", "deleted"};

const char *p11p_vk_perms_str(uint32_t p, char buf[P11P_VK_PERMS_STR])
{
	for (unsigned i = 0; i < P11P_VK_NPERMS; i++)
		buf[i] = (p & (1u << i)) ? perms[i].letter : '-';
	buf[P11P_VK_NPERMS] = '\0';
	return buf;
}

bool p11p_vk_perms_parse(const char *s, uint32_t *out)
{
	uint32_t p = 0;

	if (strlen(s) != P11P_VK_NPERMS)
		return false;
	for (unsigned i = 0; i < P11P_VK_NPERMS; i++) {
		if (s[i] == perms[i].letter)
			p |= 1u << i;
		else if (s[i] != '-')
			return false;
	}
	*out = p;
	return true;
}

uint32_t p11p_vk_perm_parse(const char *name)
{
	if (strcmp(name, "all") == 0)
		return P11P_VK_ALL;
	for (unsigned i = 0; i < P11P_VK_NPERMS; i++)
		if (strcmp(name, perms[i].name) == 0)
			return 1u << i;
	return 0;
}

uint32_t p11p_vk_perm_list_parse(int n, char *const *names, const char **bad)
{
	uint32_t bits = 0;

	if (bad != NULL)
		*bad = NULL;
	for (int i = 0; i < n; i++) {
		uint32_t b = p11p_vk_perm_parse(names[i]);

		if (b == 0) {
			if (bad != NULL)
				*bad = names[i];
			return 0;
		}
		bits |= b;
	}
	return bits;
}

const char *p11p_vk_perm_list_str(uint32_t p, const char *sep, char *buf, size_t len)
{
	size_t o = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	for (unsigned i = 0; i < P11P_VK_NPERMS; i++) {
		const char *s = o > 0 ? sep : "";
		size_t sl = strlen(s), nl = strlen(perms[i].name);

		if (!(p & (1u << i)))
			continue;
		if (o + sl + nl >= len)
			break; /* whole names only */
		memcpy(buf + o, s, sl);
		memcpy(buf + o + sl, perms[i].name, nl);
		o += sl + nl;
		buf[o] = '\0';
	}
	return buf;
}

const char *p11p_vk_state_name(enum p11p_vk_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

bool p11p_vk_state_parse(const char *name, enum p11p_vk_state *out)
{
	for (unsigned i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++) {
		if (strcmp(name, state_names[i]) == 0) {
			*out = (enum p11p_vk_state)i;
			return true;
		}
	}
	return false;
}

const char *p11p_vk_origin_name(enum p11p_vk_origin o)
{
	return o == P11P_VK_CREATED ? "created" : "scanned";
}

const char *p11p_vk_class_name(CK_OBJECT_CLASS cls)
{
	switch (cls) {
	case CKO_SECRET_KEY:
		return "secret";
	case CKO_PRIVATE_KEY:
		return "private";
	case CKO_PUBLIC_KEY:
		return "public";
	default:
		return "other";
	}
}

const char *p11p_vk_scan_name(enum p11p_scan_scope s)
{
	return s == P11P_SCAN_OWNED ? "owned" : "all";
}
