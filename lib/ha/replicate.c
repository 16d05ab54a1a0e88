/*
 * Replication: a token object (key, certificate, data object) created
 * through a virtual slot with several members is copied to the other healthy
 * members before the creating call returns (ha.replication: wrap), and a
 * member that comes back from being down is brought up to date (catch-up).
 * `vendor` only waits for the members' own copies; `none` copies nothing.
 *
 * How a key travels: secret and private keys are wrapped on the member that
 * holds them under the slot's replication key (ha.replication_key: the label
 * of an AES key with the same value on every member, CKA_WRAP, CKA_UNWRAP and
 * CKA_TRUSTED set), with CKM_AES_KEY_WRAP_PAD or else CKM_AES_KEY_WRAP, and
 * unwrapped on the other member with the attributes read from the original
 * (class, key type, CKA_ID, CKA_LABEL, usage flags, CKA_SENSITIVE,
 * CKA_EXTRACTABLE, CKA_PRIVATE ...), so the copy has the identity (CKA_CLASS +
 * CKA_ID + CKA_LABEL) that object.c re-finds objects by after a failover.
 * Public keys, certificates and data objects are created from their
 * attributes. Key material never passes through the proxy in the clear.
 *
 * Keys asked to be non-extractable were made with CKA_EXTRACTABLE and
 * CKA_WRAP_WITH_TRUSTED true (p11p_creation_begin, failover.c): the copies are
 * unwrapped with CKA_EXTRACTABLE false and the original is locked once every
 * member holds it.
 *
 * Replication debts (index/index.h): what a member lacks (COPY), still holds
 * (DESTROY) or the lock a key still owes (UPDATE) is recorded in the index
 * and settled by any process: at catch-up, at each key creation, every 5 s
 * on the probe thread (p11p_repl_poll), and by `p11proxy sync --repair`.
 *
 * Every backend call here runs on sessions of our own (so an operation the
 * application has active on its session is not disturbed), without the
 * global lock. One replication or catch-up at a time per slot (repl_busy),
 * so a catch-up never copies a key that a replication is copying already.
 *
 * Logins: our session on a member is logged in as the application is on the
 * slot (p11p_replay_login). When that login was ours and no application
 * session is on the member, closing our session logs the token out, so the
 * member's login bit is cleared again (or a later session there would skip
 * its login).
 */
#include "ha/ha.h"
#include "base/attrs.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/names.h"
#include "index/index.h"
#include "keymodel/model.h"
#include "vkeys/vkeys.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define REPL_MAX_WRAPPED  (64UL * 1024) /* a wrapped key, as a backend sizes it */
#define REPL_MAX_VALUE    (64UL * 1024) /* one value: public key part, certificate, data */
#define REPL_MAX_KEYS     100000UL      /* token keys of one class a catch-up looks at */
#define REPL_FIND_CHUNK   256
#define REPL_MAX_ATTRS    40
#define REPL_MAX_BYTES    16 /* byte-string attributes of one template besides id and label */
#define WHY_LEN           256
#define REPL_DEBT_POLL_MS 5000ULL /* how often the probe thread settles debts */

/*
 * A backend session of our own on one member. vs and m are NULL for a
 * session a tool opened itself (p11p_repl_copy_key): then nothing is cached.
 */
struct msess {
	struct p11p_vslot *vs;
	struct p11p_member *m;
	struct p11p_backend *be;
	size_t index;                 /* the member's index */
	char name[P11P_NAME_MAX + 8]; /* the member, for messages: its name, or "#N" */
	const char *repl_label;       /* ha.replication_key */
	struct p11p_bctx ctx;
	const struct p11p_bctx *bc; /* &ctx, or the caller's */
	CK_SESSION_HANDLE h;
	bool took_login; /* the member's login bit was clear before we logged in */
};

/* Boolean attributes copied as they are (those the source reports). */
static const CK_ATTRIBUTE_TYPE bool_attrs[] = {
    CKA_PRIVATE, CKA_SENSITIVE,    CKA_EXTRACTABLE, CKA_ENCRYPT,           CKA_DECRYPT,
    CKA_SIGN,    CKA_SIGN_RECOVER, CKA_VERIFY,      CKA_VERIFY_RECOVER,    CKA_WRAP,
    CKA_UNWRAP,  CKA_DERIVE,       CKA_MODIFIABLE,  CKA_WRAP_WITH_TRUSTED, CKA_ALWAYS_AUTHENTICATE,
};
#define N_BOOL_ATTRS (sizeof(bool_attrs) / sizeof(bool_attrs[0]))

/* Byte-string attributes copied when present and not empty. */
static const CK_ATTRIBUTE_TYPE opt_byte_attrs[] = {CKA_SUBJECT, CKA_START_DATE, CKA_END_DATE};

/* What is needed to make a copy of one key on another member. */
struct keyinfo {
	CK_OBJECT_HANDLE h; /* on the source member */
	CK_OBJECT_CLASS cls;
	CK_KEY_TYPE kt;
	CK_BBOOL token;
	bool extractable, wrap_trusted;
	bool no_id; /* a data object: no CKA_ID, named by class and label */
	bool
	    lock; /* made extractable for the copy: CKA_EXTRACTABLE false on the copies and after */
	CK_BYTE id[P11P_ID_MAX], label[P11P_ID_MAX];
	CK_ULONG id_len, label_len;
	CK_BBOOL bools[N_BOOL_ATTRS];
	CK_ULONG value_len;
	bool has_value_len;
	void *bytes[REPL_MAX_BYTES]; /* values of byte-string attributes (ours) */
	size_t n_bytes;
	CK_ATTRIBUTE t[REPL_MAX_ATTRS]; /* the template for the copy */
	CK_ULONG n;
	CK_ULONG n_without_len; /* the template without CKA_VALUE_LEN (it comes last) */
	bool ambiguous;         /* its identity is not unique on the source already */
	unsigned char *wrapped; /* secret and private keys */
	CK_ULONG wrapped_len;
	CK_MECHANISM_TYPE mech;
};

/* Keys, as the key model says (keymodel/model.h). */
static bool is_key_class(CK_OBJECT_CLASS cls)
{
	return p11p_vk_is_key_class(cls);
}

/* What replication copies: keys, certificates and data objects. */
static bool is_replicated_class(CK_OBJECT_CLASS cls)
{
	return is_key_class(cls) || cls == CKO_CERTIFICATE || cls == CKO_DATA;
}

/* Classes a catch-up and a repair look at, in that order. */
static const CK_OBJECT_CLASS repl_classes[] = {CKO_SECRET_KEY, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY,
                                               CKO_CERTIFICATE, CKO_DATA};
#define N_REPL_CLASSES (sizeof(repl_classes) / sizeof(repl_classes[0]))

/* Attributes a certificate or data object is copied with, by value, when present. */
static const CK_ATTRIBUTE_TYPE cert_attrs[] = {CKA_CERTIFICATE_TYPE,
                                               CKA_VALUE,
                                               CKA_SUBJECT,
                                               CKA_ISSUER,
                                               CKA_SERIAL_NUMBER,
                                               CKA_PRIVATE,
                                               CKA_MODIFIABLE,
                                               CKA_START_DATE,
                                               CKA_END_DATE,
                                               CKA_URL,
                                               CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
                                               CKA_HASH_OF_ISSUER_PUBLIC_KEY};
static const CK_ATTRIBUTE_TYPE data_attrs[] = {CKA_APPLICATION, CKA_OBJECT_ID, CKA_VALUE,
                                               CKA_PRIVATE, CKA_MODIFIABLE};

static void keyinfo_clear(struct keyinfo *ki)
{
	for (size_t i = 0; i < ki->n_bytes; i++)
		p11p_free(ki->bytes[i]);
	if (ki->wrapped != NULL) {
		p11p_wipe(ki->wrapped, ki->wrapped_len);
		p11p_free(ki->wrapped);
	}
	memset(ki, 0, sizeof(*ki));
}

/* "AES secret key 'label' (id 0a0b)" for messages: printable ASCII only, bounded. */
static const char *describe(const struct keyinfo *ki, char *buf, size_t len)
{
	char label[65], id[2 * 16 + 4];
	const char *cls = ki->cls == CKO_SECRET_KEY    ? "secret key"
	                  : ki->cls == CKO_PRIVATE_KEY ? "private key"
	                  : ki->cls == CKO_PUBLIC_KEY  ? "public key"
	                  : ki->cls == CKO_CERTIFICATE ? "certificate"
	                  : ki->cls == CKO_DATA        ? "data object"
	                                               : "object";
	/* CKK_EC and CKK_ECDSA are one value: the name of today. */
	const char *kt = !is_key_class(ki->cls) ? NULL
	                 : ki->kt == CKK_EC     ? "CKK_EC"
	                                        : p11p_ckk_name(ki->kt);
	size_t j = 0;

	for (CK_ULONG i = 0; i < ki->label_len && j + 1 < sizeof(label); i++)
		label[j++] = ki->label[i] >= 0x20 && ki->label[i] < 0x7f ? (char)ki->label[i] : '?';
	label[j] = '\0';
	id[0] = '\0';
	j = 0;
	for (CK_ULONG i = 0; i < ki->id_len && i < 16; i++, j += 2)
		snprintf(id + j, sizeof(id) - j, "%02x", ki->id[i]);
	if (ki->id_len > 16)
		snprintf(id + j, sizeof(id) - j, "..");
	if (kt != NULL && strncmp(kt, "CKK_", 4) == 0)
		kt += 4;
	snprintf(buf, len, "%s%s%s '%s' (id %s)", kt != NULL ? kt : "", kt != NULL ? " " : "", cls,
	         label, ki->id_len > 0 ? id : "none");
	return buf;
}

/* --- sessions -------------------------------------------------------------------------- */

static CK_RV msess_open(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m,
                        struct msess *ms)
{
	CK_SLOT_ID be_slot;
	bool was_logged;
	CK_RV rv;

	memset(ms, 0, sizeof(*ms));
	ms->vs = vs;
	ms->m = m;
	ms->be = m->be;
	ms->index = m->index;
	snprintf(ms->name, sizeof(ms->name), "%s", m->cfg->name);
	ms->repl_label = p11p_vhead(vs)->cfg->ha.replication_key;
	/* Replication and catch-up run in probes and key creations: bounded like probes. */
	p11p_member_probe_ctx(st, vs, m, &ms->ctx);
	ms->bc = &ms->ctx;
	p11p_lock();
	be_slot = m->be_slot;
	was_logged = p11p_vslot_logged_in_locked(vs, m->index, NULL);
	p11p_unlock();
	rv = p11p_be_C_OpenSession(ms->bc, be_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
	                           &ms->h);
	if (rv != CKR_OK) {
		ms->h = 0;
		return rv;
	}
	rv = p11p_replay_login(vs, m, ms->h);
	ms->took_login = !was_logged;
	if (rv != CKR_OK) {
		p11p_be_C_CloseSession(ms->bc, ms->h);
		ms->h = 0;
	}
	return rv;
}

static void msess_close(struct msess *ms)
{
	if (ms->h == 0)
		return;
	if (ms->took_login) {
		/* Our session held the only login there: closing it logs the token out. */
		p11p_lock();
		if (ms->m->n_sessions == 0)
			p11p_vslot_logged_in_clear_locked(ms->vs, ms->m->index);
		p11p_unlock();
	}
	p11p_be_C_CloseSession(ms->bc, ms->h);
	ms->h = 0;
}

/* Objects matching a template: up to `max` handles into out, their number into *n. */
static CK_RV find(struct msess *ms, CK_ATTRIBUTE *t, CK_ULONG count, CK_OBJECT_HANDLE *out,
                  CK_ULONG max, CK_ULONG *n)
{
	CK_RV rv = p11p_be_C_FindObjectsInit(ms->bc, ms->h, t, count);

	*n = 0;
	if (rv != CKR_OK)
		return rv;
	rv = p11p_be_C_FindObjects(ms->bc, ms->h, out, max, n);
	p11p_be_C_FindObjectsFinal(ms->bc, ms->h);
	if (rv == CKR_OK && *n > max)
		rv = CKR_GENERAL_ERROR; /* a backend writing past what we gave it */
	return rv;
}

/* How many objects (0, 1 or 2 = several) on the member have this identity. */
static CK_RV count_identity(struct msess *ms, const struct keyinfo *ki, CK_ULONG *n)
{
	CK_OBJECT_CLASS cls = ki->cls;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_ID, (void *)(uintptr_t)ki->id, ki->id_len},
	    {CKA_LABEL, (void *)(uintptr_t)ki->label, ki->label_len},
	};
	CK_OBJECT_HANDLE found[2];

	if (ki->no_id) {
		t[1] = t[2];
		return find(ms, t, 2, found, 2, n);
	}
	return find(ms, t, 3, found, 2, n);
}

/*
 * The replication key's handle on ms's member: cached per member while the
 * member has not failed since. `refresh` drops the cached one first.
 */
static CK_RV repl_key(struct msess *ms, bool refresh, CK_OBJECT_HANDLE *out, char *why, size_t wl)
{
	struct p11p_vslot *vs = ms->vs; /* NULL: a tool's session, nothing cached */
	size_t i = ms->index;
	const char *label = ms->repl_label;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_LABEL, (void *)(uintptr_t)label, label != NULL ? strlen(label) : 0},
	};
	CK_OBJECT_HANDLE found[2];
	unsigned long gen = 0;
	CK_ULONG n = 0;
	CK_RV rv;

	*out = 0;
	if (label == NULL) {
		snprintf(
		    why, wl,
		    "no replication key on slot '%s' (ha.replication_key): set ha.replication_key "
		    "and run `p11proxy replication-key create %s`",
		    vs != NULL ? p11p_vhead(vs)->label : "SLOT",
		    vs != NULL ? p11p_vhead(vs)->label : "SLOT");
		return CKR_FUNCTION_FAILED;
	}
	if (vs != NULL) {
		p11p_lock();
		gen = ms->m->failures + 1;
		if (refresh || p11p_vhead(vs)->ha->repl_key_gen[i] != gen)
			p11p_vhead(vs)->ha->repl_key[i] = 0;
		*out = p11p_vhead(vs)->ha->repl_key[i];
		p11p_unlock();
		if (*out != 0)
			return CKR_OK;
	}
	rv = find(ms, t, 2, found, 2, &n);
	if (rv != CKR_OK) {
		snprintf(why, wl, "member '%s': cannot look for the replication key '%s': %s",
		         ms->name, label, p11p_rv_str(rv));
		return rv;
	}
	if (n != 1) {
		if (n == 0)
			snprintf(
			    why, wl,
			    "member '%s' has no replication key '%s' (ha.replication_key): run "
			    "`p11proxy replication-key create %s`",
			    ms->name, label, vs != NULL ? p11p_vhead(vs)->label : "SLOT");
		else
			snprintf(why, wl,
			         "member '%s' has more than one secret key labelled '%s' "
			         "(ha.replication_key): destroy the extra ones",
			         ms->name, label);
		return CKR_FUNCTION_FAILED;
	}
	if (vs != NULL) {
		p11p_lock();
		p11p_vhead(vs)->ha->repl_key[i] = found[0];
		p11p_vhead(vs)->ha->repl_key_gen[i] = gen;
		p11p_unlock();
	}
	*out = found[0];
	return CKR_OK;
}

static bool handle_invalid(CK_RV rv)
{
	return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID ||
	       rv == CKR_WRAPPING_KEY_HANDLE_INVALID || rv == CKR_UNWRAPPING_KEY_HANDLE_INVALID;
}

/* --- reading a key --------------------------------------------------------------------- */

static void add_attr(struct keyinfo *ki, CK_ATTRIBUTE_TYPE type, void *value, CK_ULONG len)
{
	if (ki->n < REPL_MAX_ATTRS) {
		ki->t[ki->n].type = type;
		ki->t[ki->n].pValue = value;
		ki->t[ki->n].ulValueLen = len;
		ki->n++;
	}
}

/*
 * A byte-string attribute of the source into the template: `required` ones
 * must be there; optional ones are left out when absent or empty.
 */
static CK_RV add_bytes(struct msess *src, struct keyinfo *ki, CK_ATTRIBUTE_TYPE type, bool required,
                       char *why, size_t wl)
{
	CK_ATTRIBUTE a = {type, NULL, 0};
	void *buf;
	CK_RV rv = p11p_be_C_GetAttributeValue(src->bc, src->h, ki->h, &a, 1);

	if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen == 0) {
		if (!required)
			return CKR_OK;
		snprintf(why, wl, "cannot read %s: %s", p11p_cka_name(type),
		         p11p_rv_str(rv != CKR_OK ? rv : CKR_ATTRIBUTE_TYPE_INVALID));
		return rv != CKR_OK ? rv : CKR_FUNCTION_FAILED;
	}
	if (a.ulValueLen > REPL_MAX_VALUE || ki->n_bytes >= REPL_MAX_BYTES) {
		snprintf(why, wl, "%s is too long (%lu bytes)", p11p_cka_name(type),
		         (unsigned long)a.ulValueLen);
		return CKR_FUNCTION_FAILED;
	}
	buf = p11p_malloc(a.ulValueLen);
	if (buf == NULL)
		return CKR_HOST_MEMORY;
	ki->bytes[ki->n_bytes++] = buf;
	a.pValue = buf;
	rv = p11p_be_C_GetAttributeValue(src->bc, src->h, ki->h, &a, 1);
	if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION ||
	    a.ulValueLen > REPL_MAX_VALUE) {
		snprintf(why, wl, "cannot read %s: %s", p11p_cka_name(type),
		         p11p_rv_str(rv != CKR_OK ? rv : CKR_GENERAL_ERROR));
		return rv != CKR_OK ? rv : CKR_FUNCTION_FAILED;
	}
	add_attr(ki, type, buf, a.ulValueLen);
	return CKR_OK;
}

/* The public values a public key of this type is made from; false: not supported. */
static bool public_values(CK_KEY_TYPE kt, const CK_ATTRIBUTE_TYPE **types, size_t *n)
{
	static const CK_ATTRIBUTE_TYPE rsa[] = {CKA_MODULUS, CKA_PUBLIC_EXPONENT};
	static const CK_ATTRIBUTE_TYPE ec[] = {CKA_EC_PARAMS, CKA_EC_POINT};
	static const CK_ATTRIBUTE_TYPE dsa[] = {CKA_PRIME, CKA_SUBPRIME, CKA_BASE, CKA_VALUE};
	static const CK_ATTRIBUTE_TYPE dh[] = {CKA_PRIME, CKA_BASE, CKA_VALUE};

	switch (kt) {
	case CKK_RSA:
		*types = rsa;
		*n = 2;
		return true;
	case CKK_EC:
#ifdef CKK_EC_EDWARDS
	case CKK_EC_EDWARDS:
#endif
#ifdef CKK_EC_MONTGOMERY
	case CKK_EC_MONTGOMERY:
#endif
		*types = ec;
		*n = 2;
		return true;
	case CKK_DSA:
		*types = dsa;
		*n = 4;
		return true;
	case CKK_DH:
		*types = dh;
		*n = 3;
		return true;
	default:
		return false;
	}
}

/* Identity (class, token, id, label) of a source object; key type when it has one. */
static CK_RV read_ident(struct msess *src, CK_OBJECT_HANDLE h, struct keyinfo *ki, char *why,
                        size_t wl)
{
	CK_ATTRIBUTE a[] = {
	    {CKA_CLASS, &ki->cls, sizeof(ki->cls)},
	    {CKA_TOKEN, &ki->token, sizeof(ki->token)},
	    {CKA_ID, ki->id, sizeof(ki->id)},
	    {CKA_LABEL, ki->label, sizeof(ki->label)},
	};
	CK_ATTRIBUTE kt = {CKA_KEY_TYPE, &ki->kt, sizeof(ki->kt)};
	CK_RV rv;

	ki->h = h;
	rv = p11p_be_C_GetAttributeValue(src->bc, src->h, h, a, 4);
	/* A data object has no CKA_ID: named by its class and label. */
	if (rv == CKR_ATTRIBUTE_TYPE_INVALID && a[2].ulValueLen == CK_UNAVAILABLE_INFORMATION &&
	    a[0].ulValueLen == sizeof(ki->cls) && ki->cls == CKO_DATA) {
		ki->no_id = true;
		a[2].ulValueLen = 0;
		rv = CKR_OK;
	}
	if (rv == CKR_BUFFER_TOO_SMALL || (rv == CKR_OK && (a[2].ulValueLen > sizeof(ki->id) ||
	                                                    a[3].ulValueLen > sizeof(ki->label)))) {
		snprintf(why, wl, "CKA_ID or CKA_LABEL longer than %d bytes", P11P_ID_MAX);
		return CKR_FUNCTION_FAILED;
	}
	if (rv != CKR_OK || a[0].ulValueLen != sizeof(ki->cls) ||
	    a[1].ulValueLen != sizeof(ki->token)) {
		snprintf(why, wl, "cannot read its class and identity: %s",
		         p11p_rv_str(rv != CKR_OK ? rv : CKR_GENERAL_ERROR));
		return rv != CKR_OK ? rv : CKR_FUNCTION_FAILED;
	}
	ki->id_len = a[2].ulValueLen;
	ki->label_len = a[3].ulValueLen;
	ki->kt = CKK_VENDOR_DEFINED;
	if (is_key_class(ki->cls) &&
	    (p11p_be_C_GetAttributeValue(src->bc, src->h, h, &kt, 1) != CKR_OK ||
	     kt.ulValueLen != sizeof(ki->kt)))
		ki->kt = CKK_VENDOR_DEFINED;
	return CKR_OK;
}

/* A certificate or data object: its attributes by value. */
static CK_RV read_by_value(struct msess *src, struct keyinfo *ki, char *why, size_t wl)
{
	static const CK_BBOOL yes = CK_TRUE;
	const CK_ATTRIBUTE_TYPE *types = ki->cls == CKO_CERTIFICATE ? cert_attrs : data_attrs;
	size_t n_types = ki->cls == CKO_CERTIFICATE ? sizeof(cert_attrs) / sizeof(cert_attrs[0])
	                                            : sizeof(data_attrs) / sizeof(data_attrs[0]);
	CK_RV rv;

	ki->n = 0;
	add_attr(ki, CKA_CLASS, &ki->cls, sizeof(ki->cls));
	add_attr(ki, CKA_TOKEN, (void *)(uintptr_t)&yes, sizeof(yes));
	if (!ki->no_id)
		add_attr(ki, CKA_ID, ki->id, ki->id_len);
	add_attr(ki, CKA_LABEL, ki->label, ki->label_len);
	for (size_t i = 0; i < n_types; i++) {
		rv = add_bytes(src, ki, types[i], ki->cls == CKO_CERTIFICATE && i < 2, why, wl);
		if (rv != CKR_OK)
			return rv;
	}
	ki->n_without_len = ki->n;
	if (ki->n >= REPL_MAX_ATTRS) {
		snprintf(why, wl, "too many attributes");
		return CKR_FUNCTION_FAILED;
	}
	return CKR_OK;
}

/* Everything the copy's template needs, after read_ident(). */
static CK_RV read_template(struct msess *src, struct keyinfo *ki, char *why, size_t wl)
{
	static const CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE b[N_BOOL_ATTRS];
	const CK_ATTRIBUTE_TYPE *pub;
	size_t n_pub = 0;
	CK_RV rv;

	if (!is_key_class(ki->cls))
		return read_by_value(src, ki, why, wl);
	ki->n = 0;
	add_attr(ki, CKA_CLASS, &ki->cls, sizeof(ki->cls));
	add_attr(ki, CKA_KEY_TYPE, &ki->kt, sizeof(ki->kt));
	add_attr(ki, CKA_TOKEN, (void *)(uintptr_t)&yes, sizeof(yes));
	add_attr(ki, CKA_ID, ki->id, ki->id_len);
	add_attr(ki, CKA_LABEL, ki->label, ki->label_len);
	for (size_t i = 0; i < N_BOOL_ATTRS; i++) {
		b[i].type = bool_attrs[i];
		b[i].pValue = &ki->bools[i];
		b[i].ulValueLen = sizeof(CK_BBOOL);
	}
	/* Attributes a class does not have come back unavailable: they are left out. */
	rv = p11p_be_C_GetAttributeValue(src->bc, src->h, ki->h, b, N_BOOL_ATTRS);
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE) {
		snprintf(why, wl, "cannot read its attributes: %s", p11p_rv_str(rv));
		return rv;
	}
	ki->extractable = ki->cls == CKO_PUBLIC_KEY;
	for (size_t i = 0; i < N_BOOL_ATTRS; i++) {
		if (b[i].ulValueLen != sizeof(CK_BBOOL))
			continue;
		add_attr(ki, b[i].type, &ki->bools[i], sizeof(CK_BBOOL));
		if (b[i].type == CKA_EXTRACTABLE)
			ki->extractable = ki->bools[i] != CK_FALSE;
		if (b[i].type == CKA_WRAP_WITH_TRUSTED)
			ki->wrap_trusted = ki->bools[i] != CK_FALSE;
	}
	for (size_t i = 0; i < sizeof(opt_byte_attrs) / sizeof(opt_byte_attrs[0]); i++) {
		rv = add_bytes(src, ki, opt_byte_attrs[i], false, why, wl);
		if (rv != CKR_OK)
			return rv;
	}
	if (ki->cls == CKO_PUBLIC_KEY) {
		if (!public_values(ki->kt, &pub, &n_pub)) {
			snprintf(why, wl, "public keys of type %s are not copied",
			         p11p_ckk_name(ki->kt) != NULL ? p11p_ckk_name(ki->kt)
			                                       : "(vendor-defined)");
			return CKR_FUNCTION_FAILED;
		}
		for (size_t i = 0; i < n_pub; i++) {
			rv = add_bytes(src, ki, pub[i], true, why, wl);
			if (rv != CKR_OK)
				return rv;
		}
	}
	ki->n_without_len = ki->n;
	if (ki->cls == CKO_SECRET_KEY) {
		CK_ATTRIBUTE vl = {CKA_VALUE_LEN, &ki->value_len, sizeof(ki->value_len)};

		/* Last: sent only to a member that asks for it (copy_to). */
		if (p11p_be_C_GetAttributeValue(src->bc, src->h, ki->h, &vl, 1) == CKR_OK &&
		    vl.ulValueLen == sizeof(ki->value_len)) {
			ki->has_value_len = true;
			add_attr(ki, CKA_VALUE_LEN, &ki->value_len, sizeof(ki->value_len));
		}
	}
	if (ki->n >= REPL_MAX_ATTRS) {
		snprintf(why, wl, "too many attributes");
		return CKR_FUNCTION_FAILED;
	}
	return CKR_OK;
}

/* Wraps a secret or private key under the replication key on the source member. */
static CK_RV wrap(struct msess *src, struct keyinfo *ki, char *why, size_t wl)
{
	static const CK_MECHANISM_TYPE mechs[] = {CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP};
	CK_OBJECT_HANDLE rk;
	CK_RV rv = CKR_OK;
	bool refreshed = false;

	/* No replication key: that is what to fix first. */
	rv = repl_key(src, false, &rk, why, wl);
	if (rv != CKR_OK)
		return rv;
	if (!ki->extractable) {
		snprintf(why, wl,
		         "the key is not extractable (CKA_EXTRACTABLE=false) and was not made "
		         "copyable: create it through a slot with 'ha: {replication: wrap}', or "
		         "allow 'ha: {single_member_keys: true}'");
		return CKR_KEY_UNEXTRACTABLE;
	}
	for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
		CK_MECHANISM m = {mechs[i], NULL, 0};
		CK_ULONG len = 0, got;

		rv = p11p_be_C_WrapKey(src->bc, src->h, &m, rk, ki->h, NULL, &len);
		if (handle_invalid(rv) && !refreshed) {
			/* The member was replaced or the key re-made: look it up again. */
			refreshed = true;
			rv = repl_key(src, true, &rk, why, wl);
			if (rv != CKR_OK)
				return rv;
			i--;
			continue;
		}
		if (rv == CKR_OK && (len == 0 || len > REPL_MAX_WRAPPED))
			rv = CKR_GENERAL_ERROR;
		if (rv == CKR_OK) {
			ki->wrapped = p11p_malloc(len);
			if (ki->wrapped == NULL)
				return CKR_HOST_MEMORY;
			got = len;
			rv = p11p_be_C_WrapKey(src->bc, src->h, &m, rk, ki->h, ki->wrapped, &got);
			if (rv == CKR_OK && (got == 0 || got > len))
				rv = CKR_GENERAL_ERROR;
			if (rv == CKR_OK) {
				ki->wrapped_len = got;
				ki->mech = mechs[i];
				return CKR_OK;
			}
			p11p_wipe(ki->wrapped, len);
			p11p_free(ki->wrapped);
			ki->wrapped = NULL;
		}
		if (rv == CKR_KEY_UNEXTRACTABLE || rv == CKR_KEY_NOT_WRAPPABLE ||
		    p11p_rv_is_server_error(src->be, rv) || rv == CKR_SESSION_HANDLE_INVALID)
			break;
		/* Mechanism or length refused: the next mechanism. */
	}
	if (ki->wrap_trusted &&
	    (rv == CKR_KEY_NOT_WRAPPABLE || rv == CKR_WRAPPING_KEY_TYPE_INCONSISTENT ||
	     rv == CKR_KEY_FUNCTION_NOT_PERMITTED))
		snprintf(
		    why, wl,
		    "the key has CKA_WRAP_WITH_TRUSTED and the replication key on member '%s' "
		    "is not trusted (CKA_TRUSTED, C_WrapKey answered %s): make it with "
		    "`p11proxy replication-key create %s` (it sets CKA_TRUSTED as the security "
		    "officer)",
		    src->name, p11p_rv_str(rv),
		    src->vs != NULL ? p11p_vhead(src->vs)->label : "SLOT");
	else if (rv == CKR_KEY_UNEXTRACTABLE || rv == CKR_KEY_NOT_WRAPPABLE)
		snprintf(why, wl, "the member will not wrap the key: %s", p11p_rv_str(rv));
	else
		snprintf(why, wl,
		         "C_WrapKey with CKM_AES_KEY_WRAP_PAD and CKM_AES_KEY_WRAP failed: %s",
		         p11p_rv_str(rv));
	return rv;
}

/* A secret or private key: read and wrap; a public key: read. */
static CK_RV prepare(struct msess *src, struct keyinfo *ki, char *why, size_t wl)
{
	CK_RV rv = read_template(src, ki, why, wl);

	if (rv == CKR_OK && (ki->cls == CKO_SECRET_KEY || ki->cls == CKO_PRIVATE_KEY))
		rv = wrap(src, ki, why, wl);
	return rv;
}

/* Makes the copy on the target member. */
static CK_RV copy_to(struct msess *t, struct keyinfo *ki, CK_OBJECT_HANDLE *out, char *why,
                     size_t wl)
{
	CK_MECHANISM m = {ki->mech, NULL, 0};
	CK_OBJECT_HANDLE rk;
	bool refreshed = false;
	CK_ULONG n = ki->n_without_len;
	CK_RV rv;

	*out = CK_INVALID_HANDLE;
	if (ki->cls != CKO_SECRET_KEY && ki->cls != CKO_PRIVATE_KEY) {
		rv = p11p_be_C_CreateObject(t->bc, t->h, ki->t, ki->n, out);
		if (rv != CKR_OK)
			snprintf(why, wl, "member '%s' refused the copy: C_CreateObject: %s",
			         t->name, p11p_rv_str(rv));
		return rv;
	}
	rv = repl_key(t, false, &rk, why, wl);
	if (rv != CKR_OK)
		return rv;
	for (;;) {
		rv = p11p_be_C_UnwrapKey(t->bc, t->h, &m, rk, ki->wrapped, ki->wrapped_len, ki->t,
		                         n, out);
		if (handle_invalid(rv) && !refreshed) {
			refreshed = true;
			rv = repl_key(t, true, &rk, why, wl);
			if (rv != CKR_OK)
				return rv;
			continue;
		}
		/*
		 * The AES key wraps give back the exact value, so the length is not
		 * sent: a token that wants it anyway says so. (SoftHSM2 refuses
		 * CKA_VALUE_LEN in an unwrap template, and leaves a half-made
		 * object behind when it does.)
		 */
		if (rv == CKR_TEMPLATE_INCOMPLETE && ki->has_value_len && n != ki->n) {
			n = ki->n;
			continue;
		}
		break;
	}
	if (rv == CKR_OK && *out == CK_INVALID_HANDLE)
		rv = CKR_GENERAL_ERROR;
	if (rv != CKR_OK)
		snprintf(why, wl, "member '%s' refused the copy: C_UnwrapKey: %s", t->name,
		         p11p_rv_str(rv));
	return rv;
}

/* --- serializing per slot -------------------------------------------------------------- */

static void slot_busy_begin(struct p11p_vslot *vs)
{
	p11p_lock();
	while (p11p_vhead(vs)->ha->repl_busy)
		p11p_wait_locked(20);
	p11p_vhead(vs)->ha->repl_busy = true;
	p11p_unlock();
}

static void slot_busy_end(struct p11p_vslot *vs)
{
	p11p_lock();
	p11p_vhead(vs)->ha->repl_busy = false;
	p11p_broadcast_locked();
	p11p_unlock();
}

/* --- catch-up -------------------------------------------------------------------------- */

static bool stopping(struct p11p_state *st)
{
	bool stop;

	p11p_lock();
	stop = p11p_sthead(st)->ha->probe_stop || p11p_state_finalizing(st);
	p11p_unlock();
	return stop;
}

/* --- replication debts: what a member still lacks, durably (index/index.h) -------------- */

/*
 * Records that member `member` of vs must get (COPY) or lose (DESTROY) the
 * token object with that identity. Without an index (no state_dir) it is
 * only logged: the next catch-up or `sync --repair` finds it by a scan.
 */
static void debt_add(struct p11p_state *st, struct p11p_vslot *vs, const struct p11p_member *m,
                     enum p11p_debt_op op, CK_OBJECT_CLASS cls, const CK_BYTE *id, CK_ULONG id_len,
                     const CK_BYTE *label, CK_ULONG label_len)
{
	struct p11p_index *idx = p11p_vkey_index(st);
	struct p11p_debt d;
	char err[256];
	CK_RV rv;

	if (idx == NULL || p11p_vhead(vs)->label[0] == '\0') {
		p11p_message("slot '%s': member '%s' %s an object; no index to record it in "
		             "(set state_dir): `p11proxy sync --repair` finds it",
		             p11p_vhead(vs)->label, m->cfg->name,
		             op == P11P_DEBT_COPY ? "lacks" : "keeps");
		return;
	}
	memset(&d, 0, sizeof(d));
	snprintf(d.slot, sizeof(d.slot), "%s", p11p_vhead(vs)->label);
	snprintf(d.member, sizeof(d.member), "%s", m->cfg->name);
	d.op = op;
	d.cls = cls;
	d.ck_id_len = id_len < sizeof(d.ck_id) ? id_len : 0;
	d.label_len = label_len < sizeof(d.label) ? label_len : 0;
	memcpy(d.ck_id, id, d.ck_id_len);
	memcpy(d.label, label, d.label_len);
	rv = p11p_index_debt_add(idx, &d);
	if (rv != CKR_OK) {
		p11p_index_last_error(idx, err, sizeof(err));
		p11p_message("slot '%s': cannot record what member '%s' lacks: %s",
		             p11p_vhead(vs)->label, m->cfg->name,
		             err[0] != '\0' ? err : p11p_rv_str(rv));
	}
}

static void debt_add_ki(struct p11p_state *st, struct p11p_vslot *vs, const struct p11p_member *m,
                        enum p11p_debt_op op, const struct keyinfo *ki)
{
	debt_add(st, vs, m, op, ki->cls, ki->id, ki->id_len, ki->label, ki->label_len);
}

/*
 * What an attribute change (C_SetAttributeValue) may record for a member
 * that did not get it (P11P_DEBT_ATTRS): the identity, dates, usage and
 * other flags, and the certificate and data object fields. Never a key's
 * value or part of one, nor a value whose form depends on the platform
 * (CK_ULONG): those are not recorded, with a message.
 */
static const CK_ATTRIBUTE_TYPE attrs_bool[] = {
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_SIGN,
    CKA_SIGN_RECOVER,
    CKA_VERIFY,
    CKA_VERIFY_RECOVER,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_DERIVE,
    CKA_SENSITIVE,
    CKA_EXTRACTABLE,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_PRIVATE,
    CKA_TRUSTED,
    CKA_WRAP_WITH_TRUSTED,
    CKA_ALWAYS_AUTHENTICATE,
};
static const CK_ATTRIBUTE_TYPE attrs_bytes[] = {
    CKA_LABEL,
    CKA_ID,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_SUBJECT,
    CKA_ISSUER,
    CKA_SERIAL_NUMBER,
    CKA_APPLICATION,
    CKA_OBJECT_ID,
    CKA_URL,
    CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
    CKA_HASH_OF_ISSUER_PUBLIC_KEY,
};

/* May a (type, len) of a change be recorded? */
static bool attr_recordable(const CK_ATTRIBUTE *a)
{
	for (size_t i = 0; i < sizeof(attrs_bool) / sizeof(attrs_bool[0]); i++)
		if (a->type == attrs_bool[i])
			return a->ulValueLen == sizeof(CK_BBOOL) && a->pValue != NULL;
	for (size_t i = 0; i < sizeof(attrs_bytes) / sizeof(attrs_bytes[0]); i++)
		if (a->type == attrs_bytes[i])
			return a->pValue != NULL || a->ulValueLen == 0;
	return false;
}

/*
 * An object's identity as a debt names it: class, CKA_ID, CKA_LABEL (a data
 * object has no CKA_ID: class and label).
 */
struct dident {
	CK_OBJECT_CLASS cls;
	size_t id_len, label_len;
	unsigned char id[P11P_INDEX_ID_MAX], label[P11P_INDEX_LABEL_MAX];
};

static void dident_of(const struct p11p_debt *d, struct dident *o)
{
	o->cls = d->cls;
	o->id_len = d->cls != CKO_DATA && d->ck_id_len <= sizeof(o->id) ? d->ck_id_len : 0;
	o->label_len = d->label_len <= sizeof(o->label) ? d->label_len : 0;
	memcpy(o->id, d->ck_id, o->id_len);
	memcpy(o->label, d->label, o->label_len);
}

static bool dident_eq(const struct dident *a, const struct dident *b)
{
	return a->cls == b->cls && a->id_len == b->id_len && a->label_len == b->label_len &&
	       memcmp(a->id, b->id, a->id_len) == 0 &&
	       memcmp(a->label, b->label, a->label_len) == 0;
}

/*
 * o as it is after the change t (its CKA_ID, CKA_LABEL): true when t names
 * either (a rename) and the new identity fits; false (o unchanged) else.
 */
static bool dident_apply(struct dident *o, const CK_ATTRIBUTE *t, size_t n)
{
	const CK_ATTRIBUTE *id = p11p_attr_find(t, n, CKA_ID);
	const CK_ATTRIBUTE *label = p11p_attr_find(t, n, CKA_LABEL);

	if (o->cls == CKO_DATA)
		id = NULL; /* not part of a data object's identity */
	if ((id == NULL && label == NULL) ||
	    (id != NULL &&
	     (id->ulValueLen > sizeof(o->id) || (id->pValue == NULL && id->ulValueLen > 0))) ||
	    (label != NULL && (label->ulValueLen > sizeof(o->label) ||
	                       (label->pValue == NULL && label->ulValueLen > 0))))
		return false;
	if (id != NULL) {
		o->id_len = id->ulValueLen;
		if (id->ulValueLen > 0)
			memcpy(o->id, id->pValue, id->ulValueLen);
	}
	if (label != NULL) {
		o->label_len = label->ulValueLen;
		if (label->ulValueLen > 0)
			memcpy(o->label, label->pValue, label->ulValueLen);
	}
	return true;
}

/* The identity d's object has once d is settled (an ATTRS debt may rename it). */
static void debt_after(struct p11p_debt *d, struct dident *o)
{
	CK_ATTRIBUTE t[P11P_DEBT_ATTRS_COUNT];
	size_t n = 0;

	dident_of(d, o);
	if (d->op == P11P_DEBT_ATTRS && p11p_debt_attrs_parse(d, t, P11P_DEBT_ATTRS_COUNT, &n))
		(void)dident_apply(o, t, n);
}

/* What else a member owes of an ATTRS debt's object (debt_owed). */
enum owed {
	OWED_NONE,
	OWED_COPY,  /* a copy: it carries the object's current attributes */
	OWED_OLDER, /* an older change still owed names the object as this debt does after it */
};

/*
 * Debt i of debts (n, oldest first; gone[j]: settled already), an ATTRS
 * debt whose object its member does not hold under the debt's identity:
 * does the member owe a copy of that object (under the debt's identity or
 * the one after its change), or an older change that renames it to the
 * debt's identity (the member knows it by an older one)?
 */
static enum owed debt_owed(struct p11p_debt *debts, size_t n, size_t i, const bool *gone)
{
	struct dident *w = p11p_malloc(4 * sizeof(*w)); /* before, after, debt j, j after */
	bool older = false;

	if (w == NULL)
		return OWED_OLDER; /* keep it: settled on a later pass */
	dident_of(&debts[i], &w[0]);
	debt_after(&debts[i], &w[1]);
	for (size_t j = 0; j < n; j++) {
		struct p11p_debt *o = &debts[j];

		if (j == i || o->id == 0 || (gone != NULL && gone[j]) ||
		    strcmp(o->member, debts[i].member) != 0 || strcmp(o->slot, debts[i].slot) != 0)
			continue;
		dident_of(o, &w[2]);
		if (o->op == P11P_DEBT_COPY &&
		    (dident_eq(&w[2], &w[0]) || dident_eq(&w[2], &w[1]))) {
			p11p_free(w);
			return OWED_COPY;
		}
		if (o->op == P11P_DEBT_ATTRS && j < i) {
			debt_after(o, &w[3]);
			older = older || (!dident_eq(&w[3], &w[2]) && dident_eq(&w[3], &w[0]));
		}
	}
	p11p_free(w);
	return older ? OWED_OLDER : OWED_NONE;
}

bool p11p_repl_debt_moot(struct p11p_debt *debts, size_t n, size_t i)
{
	CK_ATTRIBUTE t[P11P_DEBT_ATTRS_COUNT];
	size_t nt = 0;
	enum owed owed;

	if (debts == NULL || i >= n || debts[i].op != P11P_DEBT_ATTRS ||
	    !p11p_debt_attrs_parse(&debts[i], t, P11P_DEBT_ATTRS_COUNT, &nt))
		return false;
	owed = debt_owed(debts, n, i, NULL);
	return owed == OWED_COPY ||
	       (owed == OWED_NONE && p11p_attr_find(t, nt, CKA_LABEL) == NULL &&
	        (debts[i].cls == CKO_DATA || p11p_attr_find(t, nt, CKA_ID) == NULL));
}

/*
 * d (an ATTRS debt about to be recorded under the object's identity before
 * the change): when its member still owes an earlier change that renames the
 * object to that identity, the member knows the object by the earlier one: d
 * is recorded under it (the index merges the two), so that a chain of renames
 * made while a member is away settles as one change.
 */
static void debt_known_as(struct p11p_index *idx, struct p11p_debt *d)
{
	struct p11p_debt *debts = NULL;
	struct dident *w = NULL;
	size_t n = 0;

	if (p11p_index_debt_list(idx, d->slot, &debts, &n) != CKR_OK || n == 0 ||
	    (w = p11p_malloc(2 * sizeof(*w))) == NULL) {
		p11p_free(debts);
		return;
	}
	dident_of(d, &w[0]);
	for (size_t j = n; j-- > 0;) {
		struct p11p_debt *o = &debts[j];

		if (o->op != P11P_DEBT_ATTRS || o->cls != d->cls ||
		    strcmp(o->member, d->member) != 0 || o->ck_id_len > sizeof(d->ck_id) ||
		    o->label_len > sizeof(d->label))
			continue;
		debt_after(o, &w[1]);
		if (!dident_eq(&w[1], &w[0]))
			continue;
		d->ck_id_len = o->ck_id_len;
		d->label_len = o->label_len;
		memcpy(d->ck_id, o->ck_id, o->ck_id_len);
		memcpy(d->label, o->label, o->label_len);
		break;
	}
	p11p_free(w);
	p11p_free(debts);
}

/*
 * Records that member m must still get the change templ of the object it
 * knows by ident (its identity before the change): P11P_DEBT_ATTRS.
 */
static void debt_add_attrs(struct p11p_state *st, struct p11p_vslot *vs,
                           const struct p11p_member *m, const struct p11p_identity *ident,
                           const CK_ATTRIBUTE *templ, CK_ULONG count)
{
	struct p11p_index *idx = p11p_vkey_index(st);
	struct p11p_debt *d;
	size_t kept = 0;
	char err[256];
	CK_RV rv;

	if (p11p_vhead(vs)->cfg->ha.replication != P11P_REPL_WRAP)
		return; /* the members copy changes themselves, or nothing is copied */
	if (idx == NULL || p11p_vhead(vs)->label[0] == '\0') {
		p11p_message("slot '%s': member '%s' misses a change of an object's attributes; no "
		             "index to record it in (set state_dir): set them there again",
		             p11p_vhead(vs)->label, m->cfg->name);
		return;
	}
	if (ident->id_len > P11P_INDEX_ID_MAX || ident->label_len > P11P_INDEX_LABEL_MAX)
		return; /* not found by identity anyway */
	d = p11p_calloc(1, sizeof(*d));
	if (d == NULL) {
		p11p_message("slot '%s': cannot record what member '%s' misses: out of memory",
		             p11p_vhead(vs)->label, m->cfg->name);
		return;
	}
	snprintf(d->slot, sizeof(d->slot), "%s", p11p_vhead(vs)->label);
	snprintf(d->member, sizeof(d->member), "%s", m->cfg->name);
	d->op = P11P_DEBT_ATTRS;
	d->cls = ident->cls;
	d->ck_id_len = ident->id_len;
	d->label_len = ident->label_len;
	memcpy(d->ck_id, ident->id, d->ck_id_len);
	memcpy(d->label, ident->label, d->label_len);
	debt_known_as(idx, d);
	for (CK_ULONG i = 0; i < count; i++) {
		if (!attr_recordable(&templ[i])) {
			p11p_message(
			    "slot '%s': member '%s' misses the change of %s: not recorded "
			    "(a secret or a value the proxy does not record): set it there "
			    "again",
			    p11p_vhead(vs)->label, m->cfg->name, p11p_cka_name(templ[i].type));
			continue;
		}
		if (!p11p_debt_attrs_set(d, templ[i].type, templ[i].pValue, templ[i].ulValueLen)) {
			p11p_message("slot '%s': member '%s' misses the change of %s: too large to "
			             "record (%d bytes in all): set it there again",
			             p11p_vhead(vs)->label, m->cfg->name,
			             p11p_cka_name(templ[i].type), P11P_DEBT_ATTRS_MAX);
			continue;
		}
		kept++;
	}
	if (kept > 0) {
		rv = p11p_index_debt_add(idx, d);
		if (rv != CKR_OK) {
			p11p_index_last_error(idx, err, sizeof(err));
			p11p_message("slot '%s': cannot record what member '%s' misses: %s",
			             p11p_vhead(vs)->label, m->cfg->name,
			             err[0] != '\0' ? err : p11p_rv_str(rv));
		}
	}
	p11p_free(d);
}

/* The debt's identity as a keyinfo (for count_identity, describe). */
static void debt_ident(const struct p11p_debt *d, struct keyinfo *ki)
{
	memset(ki, 0, sizeof(*ki));
	ki->cls = d->cls;
	ki->kt = CKK_VENDOR_DEFINED;
	ki->no_id = d->cls == CKO_DATA;
	ki->id_len = d->ck_id_len <= sizeof(ki->id) ? d->ck_id_len : 0;
	ki->label_len = d->label_len <= sizeof(ki->label) ? d->label_len : 0;
	memcpy(ki->id, d->ck_id, ki->id_len);
	memcpy(ki->label, d->label, ki->label_len);
}

/* The one object with ki's identity on ms: CKR_OK and *h, or *h 0 when none (or several: *several).
 */
static CK_RV find_ident(struct msess *ms, const struct keyinfo *ki, CK_OBJECT_HANDLE *h,
                        bool *several)
{
	CK_OBJECT_CLASS cls = ki->cls;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_ID, (void *)(uintptr_t)ki->id, ki->id_len},
	    {CKA_LABEL, (void *)(uintptr_t)ki->label, ki->label_len},
	};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = 0;
	CK_RV rv;

	if (ki->no_id)
		t[1] = t[2];
	rv = find(ms, t, ki->no_id ? 2 : 3, found, 2, &n);
	*h = rv == CKR_OK && n == 1 ? found[0] : 0;
	*several = rv == CKR_OK && n > 1;
	return rv;
}

/*
 * An UPDATE debt: a key made copyable, to be locked (CKA_EXTRACTABLE false)
 * once every member of the slot holds it. Every other member must be up
 * (srcs, n_src of n_all) and hold it once, as m must.
 */
static CK_RV lock_everywhere(struct p11p_state *st, struct p11p_vslot *vs, const struct keyinfo *ki,
                             size_t n_all, struct p11p_member **srcs, size_t n_src,
                             struct p11p_member *m, char *why, size_t wl)
{
	static const CK_BBOOL no = CK_FALSE;
	struct p11p_member *all[P11P_MAX_MEMBERS + 1];
	CK_OBJECT_HANDLE hs[P11P_MAX_MEMBERS + 1];
	struct msess ss[P11P_MAX_MEMBERS + 1];
	size_t n = 0, opened = 0, holders = 0;
	const char *lacks = NULL;
	CK_RV rv = CKR_OK;

	if (n_src != n_all) {
		snprintf(why, wl, "not every member is up");
		return CKR_FUNCTION_FAILED;
	}
	all[n++] = m;
	for (size_t i = 0; i < n_src; i++)
		all[n++] = srcs[i];
	/* First every member must hold it: a lock before that would make it uncopyable. */
	for (size_t i = 0; i < n && rv == CKR_OK; i++) {
		bool several = false;

		rv = msess_open(st, vs, all[i], &ss[i]);
		if (rv != CKR_OK)
			break;
		opened++;
		rv = find_ident(&ss[i], ki, &hs[i], &several);
		if (rv == CKR_OK && hs[i] != 0)
			holders++;
		else if (rv == CKR_OK && lacks == NULL)
			lacks = all[i]->cfg->name;
	}
	/* Destroyed since: nothing to lock. */
	if (rv == CKR_OK && holders == 0)
		n = 0;
	else if (rv == CKR_OK && lacks != NULL) {
		snprintf(why, wl, "member '%s' does not hold it (yet)", lacks);
		rv = CKR_FUNCTION_FAILED;
	}
	for (size_t i = 0; i < n && rv == CKR_OK; i++) {
		CK_ATTRIBUTE a = {CKA_EXTRACTABLE, (void *)(uintptr_t)&no, sizeof(no)};

		rv = p11p_be_C_SetAttributeValue(ss[i].bc, ss[i].h, hs[i], &a, 1);
	}
	for (size_t i = 0; i < opened; i++)
		msess_close(&ss[i]);
	return rv;
}

/*
 * An ATTRS debt on dst (ki: the identity the member knows the object by;
 * debts[i] of n, gone: the debts settled already): the recorded template set
 * on that object. When it is not there, set on the object the member holds
 * under its new identity already (renamed since, by a repair or a tool), or
 * settled when a copy of it is owed there (the copy carries the
 * current attributes), or the change renames nothing and no older change of
 * it is owed there (the member does not hold the object: nothing to change);
 * else it stays.
 */
static CK_RV settle_attrs(struct msess *dst, struct p11p_debt *debts, size_t n_debts, size_t i,
                          const bool *gone, const struct keyinfo *ki, bool *done, char *why,
                          size_t wl)
{
	struct p11p_debt *d = &debts[i];
	CK_ATTRIBUTE t[P11P_DEBT_ATTRS_COUNT];
	const CK_ATTRIBUTE *id, *label;
	struct keyinfo *now;
	CK_OBJECT_HANDLE h = 0;
	bool several = false, renames;
	enum owed owed;
	char desc[160];
	size_t n = 0;
	CK_RV rv = CKR_OK;

	*done = false;
	if (!p11p_debt_attrs_parse(d, t, P11P_DEBT_ATTRS_COUNT, &n) || n == 0) {
		snprintf(why, wl, "the recorded change is damaged: remove it from the store");
		return CKR_FUNCTION_FAILED;
	}
	rv = find_ident(dst, ki, &h, &several);
	if (rv != CKR_OK)
		return rv;
	if (h != 0) {
		rv = p11p_be_C_SetAttributeValue(dst->bc, dst->h, h, t, n);
		*done = rv == CKR_OK;
		return rv;
	}
	if (several) {
		snprintf(why, wl, "more than one object has that identity there");
		return CKR_FUNCTION_FAILED;
	}
	/* Not under the old identity: under the new one already? */
	id = ki->no_id ? NULL : p11p_attr_find(t, n, CKA_ID);
	label = p11p_attr_find(t, n, CKA_LABEL);
	renames = id != NULL || label != NULL;
	if (renames) {
		now = p11p_malloc(sizeof(*now));
		if (now == NULL)
			return CKR_HOST_MEMORY;
		*now = *ki;
		if (id != NULL && id->ulValueLen <= sizeof(now->id)) {
			now->id_len = id->ulValueLen;
			if (id->ulValueLen > 0)
				memcpy(now->id, id->pValue, id->ulValueLen);
		}
		if (label != NULL && label->ulValueLen <= sizeof(now->label)) {
			now->label_len = label->ulValueLen;
			if (label->ulValueLen > 0)
				memcpy(now->label, label->pValue, label->ulValueLen);
		}
		rv = find_ident(dst, now, &h, &several);
		p11p_free(now);
		if (rv != CKR_OK)
			return rv;
		if (h != 0) {
			/* Renamed there already (a repair, a tool): the rest of the change too. */
			rv = p11p_be_C_SetAttributeValue(dst->bc, dst->h, h, t, n);
			*done = rv == CKR_OK;
			return rv;
		}
		if (several) {
			*done = true;
			return CKR_OK;
		}
	}
	owed = debt_owed(debts, n_debts, i, gone);
	if (owed == OWED_COPY || (owed == OWED_NONE && !renames)) {
		p11p_debug(P11P_DBG_OBJECT,
		           "slot '%s': member '%s': the attribute change of %s dropped: %s",
		           d->slot, d->member, describe(ki, desc, sizeof(desc)),
		           owed == OWED_COPY ? "a copy is owed there, with the current attributes"
		                             : "the member does not hold it");
		*done = true;
		return CKR_OK;
	}
	snprintf(why, wl, "%s",
	         owed == OWED_OLDER ? "an older change of it is owed there first"
	         : renames          ? "not found there, under the old identity or the new one"
	                            : "not found there");
	return CKR_OK;
}

/*
 * Settles the slot's debts whose member is up (DESTROY first, so that a copy
 * never brings back what was destroyed): the objects copied from an up
 * member that holds them, or destroyed. The slot is ours (repl_busy); needs
 * the application's user login (private objects).
 */
static void settle_debts(struct p11p_state *st, struct p11p_vslot *vs)
{
	struct p11p_index *idx = p11p_vkey_index(st);
	struct p11p_debt *debts = NULL;
	struct keyinfo *ki;
	bool *gone;
	size_t n = 0, settled = 0, failed = 0;

	if (idx == NULL || p11p_vhead(vs)->label[0] == '\0' ||
	    p11p_vhead(vs)->cfg->ha.replication != P11P_REPL_WRAP ||
	    p11p_index_debt_list(idx, p11p_vhead(vs)->label, &debts, &n) != CKR_OK || n == 0) {
		p11p_free(debts);
		return;
	}
	ki = p11p_calloc(1, sizeof(*ki));
	gone = p11p_calloc(n, sizeof(*gone)); /* settled in this round */
	if (gone == NULL) {
		p11p_free(ki);
		ki = NULL;
	}
	/*
	 * Attribute changes first, oldest first (a second rename's old identity
	 * is the first one's new one), so that what a removal or a copy looks
	 * for is named as it is now.
	 */
	for (int pass = 0; ki != NULL && pass < 4 && !stopping(st); pass++) {
		enum p11p_debt_op want = pass == 0   ? P11P_DEBT_ATTRS
		                         : pass == 1 ? P11P_DEBT_DESTROY
		                         : pass == 2 ? P11P_DEBT_COPY
		                                     : P11P_DEBT_UPDATE;

		for (size_t i = 0; i < n && !stopping(st); i++) {
			struct p11p_debt *d = &debts[i];
			struct p11p_member *m = NULL, *srcs[P11P_MAX_MEMBERS];
			size_t n_src = 0, n_all = 0;
			bool done = false, several = false;
			struct msess dst;
			CK_OBJECT_HANDLE h = 0;
			char why[WHY_LEN] = "", desc[160];
			CK_RV rv;

			if (d->op != want)
				continue;
			p11p_lock();
			for (size_t j = 0; j < p11p_vhead(vs)->n_members && j < P11P_MAX_MEMBERS;
			     j++) {
				struct p11p_member *o = &p11p_vhead(vs)->members[j];
				bool up = !o->removed && o->resolved &&
				          atomic_load(&o->health) == P11P_UP;

				if (strcmp(o->cfg->name, d->member) == 0)
					m = up ? o : NULL;
				else if (!o->removed)
					n_all++;
				if (up && strcmp(o->cfg->name, d->member) != 0)
					srcs[n_src++] = o;
			}
			p11p_unlock();
			if (m == NULL || msess_open(st, vs, m, &dst) != CKR_OK)
				continue; /* that member is not back: later */
			debt_ident(d, ki);
			if (d->op == P11P_DEBT_UPDATE) {
				msess_close(&dst);
				rv = lock_everywhere(st, vs, ki, n_all, srcs, n_src, m, why,
				                     sizeof(why));
				done = rv == CKR_OK;
				goto record;
			}
			if (d->op == P11P_DEBT_ATTRS) {
				rv = settle_attrs(&dst, debts, n, i, gone, ki, &done, why,
				                  sizeof(why));
				msess_close(&dst);
				goto record;
			}
			rv = find_ident(&dst, ki, &h, &several);
			if (rv == CKR_OK && d->op == P11P_DEBT_DESTROY) {
				if (h != 0)
					rv = p11p_be_C_DestroyObject(dst.bc, dst.h, h);
				done = rv == CKR_OK && !several;
			} else if (rv == CKR_OK && (h != 0 || several)) {
				done = true; /* it has it already */
			} else if (rv == CKR_OK) {
				size_t absent = 0;

				for (size_t j = 0; j < n_src && !done; j++) {
					struct msess src;
					CK_OBJECT_HANDLE sh = 0, copy;
					bool sev = false;

					if (msess_open(st, vs, srcs[j], &src) != CKR_OK)
						continue;
					if (find_ident(&src, ki, &sh, &sev) == CKR_OK && sh == 0 &&
					    !sev)
						absent++;
					if (sh != 0) {
						struct keyinfo *full =
						    p11p_calloc(1, sizeof(*full));

						rv = full == NULL ? CKR_HOST_MEMORY
						                  : read_ident(&src, sh, full, why,
						                               sizeof(why));
						if (rv == CKR_OK)
							rv = prepare(&src, full, why, sizeof(why));
						if (rv == CKR_OK)
							rv = copy_to(&dst, full, &copy, why,
							             sizeof(why));
						done = rv == CKR_OK;
						if (full != NULL)
							keyinfo_clear(full);
						p11p_free(full);
					}
					msess_close(&src);
				}
				/* Gone from every other member (destroyed since): nothing to copy.
				 */
				if (!done && absent == n_all && n_all > 0)
					done = true;
			}
			msess_close(&dst);
		record:
			if (done) {
				settled++;
				gone[i] = true;
				p11p_index_debt_done(idx, d->id);
			} else {
				failed++;
				p11p_index_debt_failed(idx, d->id);
				p11p_message("slot '%s': member '%s': %s of %s not settled yet: %s",
				             p11p_vhead(vs)->label, d->member,
				             d->op == P11P_DEBT_COPY      ? "the copy"
				             : d->op == P11P_DEBT_DESTROY ? "the removal"
				             : d->op == P11P_DEBT_ATTRS
				                 ? "the attribute change"
				                 : "the lock (CKA_EXTRACTABLE false)",
				             describe(ki, desc, sizeof(desc)),
				             why[0] != '\0' ? why : p11p_rv_str(rv));
			}
		}
	}
	if (settled > 0)
		p11p_notice("slot '%s': %zu replication debt%s settled, %zu left",
		            p11p_vhead(vs)->label, settled, settled == 1 ? "" : "s", failed);
	p11p_free(gone);
	p11p_free(ki);
	p11p_free(debts);
}

bool p11p_repl_settle_attrs(struct p11p_call *c)
{
	struct p11p_vslot *vs = p11p_shead(c->s)->slot;
	struct p11p_member *m = c->m;
	struct p11p_index *idx = p11p_vkey_index(c->st);
	struct p11p_debt *debts = NULL;
	struct keyinfo *ki = NULL;
	bool *gone = NULL;
	size_t n = 0, settled = 0, mine = 0;
	struct msess ms;

	if (idx == NULL || m == NULL || p11p_vhead(vs)->n_members < 2 ||
	    p11p_vhead(vs)->label[0] == '\0' ||
	    p11p_vhead(vs)->cfg->ha.replication != P11P_REPL_WRAP ||
	    p11p_index_debt_list(idx, p11p_vhead(vs)->label, &debts, &n) != CKR_OK)
		return false;
	for (size_t i = 0; i < n; i++)
		if (debts[i].op == P11P_DEBT_ATTRS && strcmp(debts[i].member, m->cfg->name) == 0)
			mine++;
	if (mine > 0) {
		ki = p11p_calloc(1, sizeof(*ki));
		gone = p11p_calloc(n, sizeof(*gone));
	}
	if (ki == NULL || gone == NULL || msess_open(c->st, vs, m, &ms) != CKR_OK) {
		p11p_free(gone);
		p11p_free(ki);
		p11p_free(debts);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		struct p11p_debt *d = &debts[i];
		char why[WHY_LEN] = "";
		bool done = false;

		if (d->op != P11P_DEBT_ATTRS || strcmp(d->member, m->cfg->name) != 0)
			continue;
		debt_ident(d, ki);
		if (settle_attrs(&ms, debts, n, i, gone, ki, &done, why, sizeof(why)) == CKR_OK &&
		    done) {
			gone[i] = true;
			p11p_index_debt_done(idx, d->id);
			settled++;
		}
	}
	msess_close(&ms);
	if (settled > 0)
		p11p_notice("slot '%s': member '%s': %zu attribute change%s it missed settled "
		            "(made, or dropped: the object is not there)",
		            p11p_vhead(vs)->label, m->cfg->name, settled, settled == 1 ? "" : "s");
	p11p_free(gone);
	p11p_free(ki);
	p11p_free(debts);
	return settled > 0;
}

/* Handles of the token keys of one class on a member, into a new array (p11p_free it). */
static CK_RV list_keys(struct msess *ms, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE **out, CK_ULONG *n)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &yes, sizeof(yes)}};
	CK_OBJECT_HANDLE *list = NULL, *grown;
	CK_ULONG count = 0, cap = 0, got;
	CK_RV rv = p11p_be_C_FindObjectsInit(ms->bc, ms->h, t, 2);

	*out = NULL;
	*n = 0;
	if (rv != CKR_OK)
		return rv;
	for (;;) {
		if (count + REPL_FIND_CHUNK > cap) {
			cap = cap ? cap * 2 : REPL_FIND_CHUNK;
			grown = p11p_reallocarray(list, cap, sizeof(*list));
			if (grown == NULL) {
				rv = CKR_HOST_MEMORY;
				break;
			}
			list = grown;
		}
		got = 0;
		rv = p11p_be_C_FindObjects(ms->bc, ms->h, list + count, REPL_FIND_CHUNK, &got);
		if (rv == CKR_OK && got > REPL_FIND_CHUNK)
			rv = CKR_GENERAL_ERROR;
		if (rv != CKR_OK)
			break;
		count += got;
		if (got < REPL_FIND_CHUNK)
			break;
		if (count >= REPL_MAX_KEYS) {
			p11p_message(
			    "slot '%s': member '%s' holds more than %lu keys of one class; "
			    "the catch-up looks at the first %lu",
			    p11p_vhead(ms->vs)->label, ms->m->cfg->name, REPL_MAX_KEYS,
			    REPL_MAX_KEYS);
			break;
		}
	}
	p11p_be_C_FindObjectsFinal(ms->bc, ms->h);
	if (rv != CKR_OK) {
		p11p_free(list);
		return rv;
	}
	*out = list;
	*n = count;
	return CKR_OK;
}

struct catchup_count {
	unsigned long copied, failed;
};

/* Copies the keys src holds and dst lacks. A server-side error of either ends it. */
static CK_RV catch_up_from(struct p11p_state *st, struct msess *src, struct msess *dst,
                           struct catchup_count *cnt)
{
	struct keyinfo *ki = p11p_calloc(1, sizeof(*ki));
	CK_RV rv = CKR_OK;

	if (ki == NULL)
		return CKR_HOST_MEMORY;
	for (size_t c = 0; c < N_REPL_CLASSES && rv == CKR_OK; c++) {
		CK_OBJECT_HANDLE *list = NULL;
		CK_ULONG n = 0;

		rv = list_keys(src, repl_classes[c], &list, &n);
		for (CK_ULONG i = 0; rv == CKR_OK && i < n && !stopping(st); i++) {
			char why[WHY_LEN] = "", desc[160];
			CK_OBJECT_HANDLE copy;
			CK_ULONG present = 0;
			CK_RV r;

			keyinfo_clear(ki);
			r = read_ident(src, list[i], ki, why, sizeof(why));
			if (r == CKR_OK)
				r = count_identity(dst, ki, &present);
			if (r == CKR_OK && present > 0)
				continue;
			if (r == CKR_OK)
				r = prepare(src, ki, why, sizeof(why));
			if (r == CKR_OK)
				r = copy_to(dst, ki, &copy, why, sizeof(why));
			if (r == CKR_OK) {
				cnt->copied++;
				p11p_debug(P11P_DBG_OBJECT, "slot '%s': copied %s to member '%s'",
				           p11p_vhead(src->vs)->label,
				           describe(ki, desc, sizeof(desc)), dst->m->cfg->name);
				continue;
			}
			if (p11p_rv_is_server_error(src->m->be, r) ||
			    p11p_rv_is_server_error(dst->m->be, r) || r == CKR_HOST_MEMORY) {
				rv = r;
				break;
			}
			cnt->failed++;
			p11p_message("slot '%s': catch-up of member '%s': %s not copied: %s",
			             p11p_vhead(src->vs)->label, dst->m->cfg->name,
			             describe(ki, desc, sizeof(desc)),
			             why[0] != '\0' ? why : p11p_rv_str(r));
		}
		p11p_free(list);
	}
	keyinfo_clear(ki);
	p11p_free(ki);
	return rv;
}

/* The catch-up itself; the slot is ours (repl_busy). */
static void catch_up_busy(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m)
{
	struct p11p_member *sources[P11P_MAX_MEMBERS];
	struct catchup_count cnt = {0, 0};
	struct msess dst;
	bool complete = true;
	size_t n_src = 0, n_members;
	CK_USER_TYPE login;
	bool up;
	CK_RV rv;

	p11p_lock();
	login = p11p_vslot_login_locked(vs);
	up = atomic_load(&m->health) == P11P_UP && !m->removed;
	n_members = p11p_vhead(vs)->n_members;
	for (size_t i = 0; i < n_members && i < P11P_MAX_MEMBERS; i++) {
		struct p11p_member *o = &p11p_vhead(vs)->members[i];

		if (o != m && !o->removed && o->resolved && atomic_load(&o->health) == P11P_UP)
			sources[n_src++] = o;
	}
	/* Private and secret keys are seen only when logged in: wait for the application. */
	if (login != CKU_USER && up && n_src > 0)
		p11p_vhead(vs)->ha->repl_pending |= 1U << m->index;
	else
		p11p_vhead(vs)->ha->repl_pending &= ~(1U << m->index);
	p11p_unlock();
	if (!up || n_src == 0)
		return;
	if (login != CKU_USER) {
		p11p_debug(P11P_DBG_OBJECT,
		           "slot '%s': member '%s' catches up once the application logs in",
		           p11p_vhead(vs)->label, m->cfg->name);
		return;
	}
	if (p11p_vhead(vs)->cfg->ha.replication != P11P_REPL_WRAP) {
		p11p_debug(P11P_DBG_OBJECT, "slot '%s': member '%s': no catch-up (ha.replication)",
		           p11p_vhead(vs)->label, m->cfg->name);
		return;
	}
	/* What was recorded first: removals before copies, so nothing comes back. */
	settle_debts(st, vs);
	if (p11p_vhead(vs)->cfg->ha.replication_key == NULL) {
		/* A slot without a replication key does not replicate: nothing to say. */
		p11p_debug(P11P_DBG_OBJECT,
		           "slot '%s': member '%s': no catch-up (no replication key)",
		           p11p_vhead(vs)->label, m->cfg->name);
		return;
	}
	rv = msess_open(st, vs, m, &dst);
	if (rv != CKR_OK) {
		p11p_message("slot '%s': catch-up of member '%s': cannot open a session: %s",
		             p11p_vhead(vs)->label, m->cfg->name, p11p_rv_str(rv));
		if (p11p_rv_is_server_error(m->be, rv))
			p11p_member_confirm(st, vs, m, rv);
		return;
	}
	for (size_t i = 0; i < n_src; i++) {
		struct msess src;

		if (stopping(st)) {
			complete = false;
			break;
		}
		rv = msess_open(st, vs, sources[i], &src);
		if (rv != CKR_OK) {
			complete = false;
			if (p11p_rv_is_server_error(sources[i]->be, rv))
				p11p_member_confirm(st, vs, sources[i], rv);
			continue;
		}
		rv = catch_up_from(st, &src, &dst, &cnt);
		msess_close(&src);
		if (rv != CKR_OK) {
			complete = false;
			p11p_message(
			    "slot '%s': catch-up of member '%s' from member '%s' stopped: %s",
			    p11p_vhead(vs)->label, m->cfg->name, sources[i]->cfg->name,
			    p11p_rv_str(rv));
			if (p11p_rv_is_server_error(m->be, rv) &&
			    !p11p_member_confirm(st, vs, m, rv))
				break;
			if (p11p_rv_is_server_error(sources[i]->be, rv))
				p11p_member_confirm(st, vs, sources[i], rv);
		}
	}
	msess_close(&dst);
	if (!complete) {
		/* Interrupted (a source failed): the rest at the slot's next key creation. */
		p11p_lock();
		if (atomic_load(&m->health) == P11P_UP)
			p11p_vhead(vs)->ha->repl_pending |= 1U << m->index;
		p11p_unlock();
	}
	if (cnt.copied > 0 || cnt.failed > 0 || !complete)
		p11p_message(
		    "slot '%s': member '%s' caught up%s: %lu key%s copied, %lu could not be",
		    p11p_vhead(vs)->label, m->cfg->name, complete ? "" : " in part", cnt.copied,
		    cnt.copied == 1 ? "" : "s", cnt.failed);
}

void p11p_repl_poll(struct p11p_state *st)
{
	static _Atomic unsigned long long next_ms;
	unsigned long long now = p11p_now_ms();

	if (now < atomic_load(&next_ms))
		return;
	atomic_store(&next_ms, now + REPL_DEBT_POLL_MS);
	for (size_t i = 0; i < p11p_sthead(st)->n_slots && !stopping(st); i++) {
		struct p11p_vslot *vs = p11p_state_slot(st, i);
		bool due;

		if (p11p_vhead(vs)->n_members < 2 ||
		    p11p_vhead(vs)->cfg->ha.replication != P11P_REPL_WRAP)
			continue;
		p11p_lock();
		due = p11p_vslot_login_locked(vs) == CKU_USER && !p11p_vhead(vs)->ha->repl_busy;
		p11p_unlock();
		if (!due)
			continue;
		slot_busy_begin(vs);
		settle_debts(st, vs);
		slot_busy_end(vs);
	}
}

void p11p_repl_catch_up(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m)
{
	if (p11p_vhead(vs)->n_members < 2)
		return;
	slot_busy_begin(vs);
	catch_up_busy(st, vs, m);
	slot_busy_end(vs);
}

/* Catch-ups that waited for a login (the slot is ours). */
static void catch_up_pending(struct p11p_state *st, struct p11p_vslot *vs)
{
	unsigned pending;

	bool user;

	p11p_lock();
	user = p11p_vslot_login_locked(vs) == CKU_USER;
	pending = user ? p11p_vhead(vs)->ha->repl_pending : 0;
	p11p_unlock();
	if (user && pending == 0)
		settle_debts(st, vs);
	for (size_t i = 0; pending != 0 && i < P11P_MAX_MEMBERS; i++) {
		if (pending & (1U << i))
			catch_up_busy(st, vs, &p11p_vhead(vs)->members[i]);
	}
}

/* --- new keys -------------------------------------------------------------------------- */

struct target {
	struct p11p_member *m;
	struct msess s;
	CK_OBJECT_HANDLE copies[2];
	bool ok, down;
	char why[WHY_LEN];
};

/* Destroys what a target holds of the new keys. */
static void target_undo(struct p11p_state *st, struct p11p_vslot *vs, struct target *t,
                        const struct keyinfo *ki, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		/* A copy that cannot be destroyed now is destroyed when the member is back. */
		if (t->copies[k] != CK_INVALID_HANDLE &&
		    (t->s.h == 0 ||
		     p11p_be_C_DestroyObject(t->s.bc, t->s.h, t->copies[k]) != CKR_OK))
			debt_add_ki(st, vs, t->m, P11P_DEBT_DESTROY, &ki[k]);
		t->copies[k] = CK_INVALID_HANDLE;
	}
	t->ok = false;
}

/* Copies the prepared keys (those with a source handle) to one target member. */
static void copy_to_target(struct p11p_state *st, struct p11p_vslot *vs, struct target *t,
                           struct keyinfo *ki, size_t n)
{
	CK_RV rv = msess_open(st, vs, t->m, &t->s);

	if (rv != CKR_OK) {
		snprintf(t->why, sizeof(t->why), "member '%s': cannot open a session or log in: %s",
		         t->m->cfg->name, p11p_rv_str(rv));
		goto out;
	}
	for (size_t k = 0; k < n && rv == CKR_OK; k++) {
		CK_ULONG present = 0;

		if (ki[k].h == CK_INVALID_HANDLE)
			continue;
		/*
		 * A key with this identity there already (made by hand, or one
		 * destroyed on another member only): after a failover it would be
		 * found instead of the new one. Unless the identity is not unique on
		 * the source either: then the members stay alike.
		 */
		if (!ki[k].ambiguous)
			rv = count_identity(&t->s, &ki[k], &present);
		if (rv == CKR_OK && present > 0) {
			snprintf(t->why, sizeof(t->why),
			         "member '%s' already holds a key with the same class, CKA_ID and "
			         "CKA_LABEL",
			         t->m->cfg->name);
			rv = CKR_FUNCTION_FAILED;
			break;
		}
		if (rv == CKR_OK)
			rv = copy_to(&t->s, &ki[k], &t->copies[k], t->why, sizeof(t->why));
	}
out:
	t->ok = rv == CKR_OK;
	if (!t->ok) {
		target_undo(st, vs, t, ki, n);
		if (t->why[0] == '\0')
			snprintf(t->why, sizeof(t->why), "member '%s': %s", t->m->cfg->name,
			         p11p_rv_str(rv));
		/* A member that failed is not one that refused: it catches up when back. */
		if ((p11p_rv_is_server_error(t->m->be, rv) || rv == CKR_SESSION_HANDLE_INVALID ||
		     rv == CKR_SESSION_CLOSED) &&
		    !p11p_member_confirm(st, vs, t->m, rv))
			t->down = true;
	}
}

/* Is one of the new objects a token key? (On the application's session: one cheap call each.) */
static bool any_token_key(struct p11p_call *c, const CK_OBJECT_HANDLE *bh, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		CK_OBJECT_CLASS cls = CKO_DATA;
		CK_BBOOL tok = CK_FALSE;
		CK_ATTRIBUTE a[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &tok, sizeof(tok)}};

		if (p11p_be_C_GetAttributeValue(&c->bc, c->bs, bh[k], a, 2) == CKR_OK &&
		    tok != CK_FALSE && is_replicated_class(cls))
			return true;
	}
	return false;
}

/* The index of CKA_EXTRACTABLE in bool_attrs. */
static size_t extractable_slot(void)
{
	size_t i = 0;

	while (i < N_BOOL_ATTRS && bool_attrs[i] != CKA_EXTRACTABLE)
		i++;
	return i;
}

/*
 * ha.replication: vendor. The members copy new objects themselves: waits up
 * to ha.replication_wait for each new token object to appear (by identity) on
 * every other up member; says which did not. The slot is ours (repl_busy).
 */
static void vendor_wait(struct p11p_call *c, struct msess *src, struct keyinfo *ki, size_t n)
{
	struct p11p_vslot *vs = p11p_shead(c->s)->slot;
	struct p11p_member *ms[P11P_MAX_MEMBERS];
	bool seen[P11P_MAX_MEMBERS][2];
	unsigned long long deadline = p11p_now_ms() + p11p_vhead(vs)->cfg->ha.replication_wait_ms;
	size_t n_m = 0, missing;
	char desc[160];

	memset(seen, 0, sizeof(seen));
	p11p_lock();
	for (size_t i = 0; i < p11p_vhead(vs)->n_members && i < P11P_MAX_MEMBERS; i++) {
		struct p11p_member *m = &p11p_vhead(vs)->members[i];

		if (m != c->m && !m->removed && m->resolved && atomic_load(&m->health) == P11P_UP)
			ms[n_m++] = m;
	}
	p11p_unlock();
	for (;;) {
		missing = 0;
		for (size_t i = 0; i < n_m; i++) {
			struct msess t;

			if (msess_open(c->st, vs, ms[i], &t) != CKR_OK) {
				missing++;
				continue;
			}
			for (size_t k = 0; k < n; k++) {
				CK_ULONG present = 0;

				if (ki[k].h == CK_INVALID_HANDLE || seen[i][k])
					continue;
				if (count_identity(&t, &ki[k], &present) == CKR_OK && present > 0)
					seen[i][k] = true;
				else
					missing++;
			}
			msess_close(&t);
		}
		if (missing == 0 || p11p_now_ms() >= deadline || stopping(c->st))
			break;
		nanosleep(&(struct timespec){0, 100L * 1000 * 1000}, NULL);
	}
	for (size_t i = 0; i < n_m; i++) {
		bool all = true;

		for (size_t k = 0; k < n; k++)
			all &= ki[k].h == CK_INVALID_HANDLE || seen[i][k];
		if (all) {
			if (ms[i]->index < 32)
				c->new_key_holders |= 1u << ms[i]->index;
			continue;
		}
		for (size_t k = 0; k < n; k++) {
			if (ki[k].h != CK_INVALID_HANDLE && !seen[i][k])
				p11p_message(
				    "slot '%s': new %s did not appear on member '%s' within "
				    "%lu ms (ha.replication: vendor; raise ha.replication_wait, "
				    "or check the members' own replication)",
				    p11p_vhead(vs)->label, describe(&ki[k], desc, sizeof(desc)),
				    ms[i]->cfg->name, p11p_vhead(vs)->cfg->ha.replication_wait_ms);
		}
	}
	(void)src;
}

/*
 * Keys made extractable for the copy (c->repl_lock): CKA_EXTRACTABLE false on
 * the original once every member of the slot holds it; until then it can be
 * wrapped under trusted keys only (CKA_WRAP_WITH_TRUSTED).
 */
static void lock_originals(struct p11p_call *c, struct msess *src, struct keyinfo *ki, size_t n,
                           bool everywhere)
{
	struct p11p_vslot *vs = p11p_shead(c->s)->slot;
	static const CK_BBOOL no = CK_FALSE;
	char desc[160];

	for (size_t k = 0; k < n; k++) {
		CK_ATTRIBUTE a = {CKA_EXTRACTABLE, (void *)(uintptr_t)&no, sizeof(no)};
		CK_RV rv;

		if (!ki[k].lock || ki[k].h == CK_INVALID_HANDLE)
			continue;
		if (!everywhere) {
			p11p_message(
			    "slot '%s': new %s is not on every member yet; it stays "
			    "extractable under trusted keys only (CKA_WRAP_WITH_TRUSTED) until "
			    "`p11proxy sync --repair %s` has copied it",
			    p11p_vhead(vs)->label, describe(&ki[k], desc, sizeof(desc)),
			    p11p_vhead(vs)->label);
			/* The lock is owed: an UPDATE debt, settled once every member holds it. */
			debt_add_ki(c->st, vs, c->m, P11P_DEBT_UPDATE, &ki[k]);
			continue;
		}
		rv = p11p_be_C_SetAttributeValue(src->bc, src->h, ki[k].h, &a, 1);
		if (rv != CKR_OK)
			p11p_message("slot '%s': new %s on member '%s' could not be made "
			             "non-extractable: %s",
			             p11p_vhead(vs)->label, describe(&ki[k], desc, sizeof(desc)),
			             src->name, p11p_rv_str(rv));
	}
}

/* A COPY debt for each new object on each member of the slot that does not hold it. */
static void record_missing(struct p11p_call *c, const struct keyinfo *ki, size_t n,
                           const struct target *tg, size_t n_tg)
{
	struct p11p_vslot *vs = p11p_shead(c->s)->slot;
	struct p11p_member *lack[P11P_MAX_MEMBERS];
	size_t n_lack = 0;

	p11p_lock();
	for (size_t i = 0; i < p11p_vhead(vs)->n_members && i < P11P_MAX_MEMBERS; i++) {
		struct p11p_member *m = &p11p_vhead(vs)->members[i];
		bool holds = m == c->m;

		for (size_t j = 0; j < n_tg && !holds; j++)
			holds = tg[j].m == m && tg[j].ok;
		if (!holds && !m->removed)
			lack[n_lack++] = m;
	}
	p11p_unlock();
	for (size_t i = 0; i < n_lack; i++)
		for (size_t k = 0; k < n; k++)
			if (ki[k].h != CK_INVALID_HANDLE)
				debt_add_ki(c->st, vs, lack[i], P11P_DEBT_COPY, &ki[k]);
}

CK_RV p11p_repl_new_keys(struct p11p_call *c, const CK_OBJECT_HANDLE *bh, size_t n)
{
	struct p11p_vslot *vs = p11p_shead(c->s)->slot;
	const struct p11p_ha_cfg *ha = &p11p_vhead(vs)->cfg->ha;
	struct p11p_member *pm = c->m;
	struct keyinfo *ki = NULL, *lead = NULL;
	struct target *tg = NULL;
	struct msess src = {0};
	char why[WHY_LEN] = "", desc[160] = "key";
	size_t n_tg = 0, healthy = 1, holders = 1, needed = 0, n_members, n_all = 1;
	bool busy = false;
	CK_RV rv = CKR_OK;

	c->new_key_holders = 1u << pm->index;
	if (p11p_vhead(vs)->n_members < 2 || n == 0 || n > 2 || !any_token_key(c, bh, n))
		return CKR_OK;
	if (ha->replication == P11P_REPL_NONE) {
		p11p_debug(P11P_DBG_OBJECT,
		           "slot '%s': new token object stays on member '%s' only "
		           "(ha.replication: none)",
		           p11p_vhead(vs)->label, pm->cfg->name);
		return CKR_OK;
	}
	ki = p11p_calloc(n, sizeof(*ki));
	tg = p11p_calloc(P11P_MAX_MEMBERS, sizeof(*tg));
	if (ki == NULL || tg == NULL) {
		rv = CKR_HOST_MEMORY;
		snprintf(why, sizeof(why), "out of memory");
		goto refuse;
	}
	slot_busy_begin(vs);
	busy = true;
	catch_up_pending(c->st, vs);
	rv = msess_open(c->st, vs, pm, &src);
	if (rv != CKR_OK) {
		snprintf(why, sizeof(why), "cannot open a session on member '%s': %s",
		         pm->cfg->name, p11p_rv_str(rv));
		goto refuse;
	}
	/* Read (and wrap) each new token key on the member that made it. */
	for (size_t k = 0; k < n; k++) {
		rv = read_ident(&src, bh[k], &ki[k], why, sizeof(why));
		if (rv != CKR_OK)
			goto refuse;
		if (ki[k].token == CK_FALSE || !is_replicated_class(ki[k].cls)) {
			ki[k].h = CK_INVALID_HANDLE; /* a session object stays where it is */
			continue;
		}
		/* Messages name the private key of a pair, else the key. */
		if (lead == NULL || ki[k].cls != CKO_PUBLIC_KEY)
			lead = &ki[k];
		describe(lead, desc, sizeof(desc));
		if (ha->replication == P11P_REPL_VENDOR)
			continue;
		ki[k].lock = (c->repl_lock & (1u << k)) != 0;
		rv = prepare(&src, &ki[k], why, sizeof(why));
		/* The copies are made as the application asked: not extractable. */
		if (rv == CKR_OK && ki[k].lock && extractable_slot() < N_BOOL_ATTRS)
			ki[k].bools[extractable_slot()] = CK_FALSE;
		if (rv == CKR_OK) {
			CK_ULONG same = 0;

			rv = count_identity(&src, &ki[k], &same);
			ki[k].ambiguous = same > 1;
		}
		if (rv != CKR_OK)
			goto refuse;
	}
	if (ha->replication == P11P_REPL_VENDOR) {
		vendor_wait(c, &src, ki, n);
		goto out;
	}
	p11p_lock();
	n_members = p11p_vhead(vs)->n_members;
	for (size_t i = 0; i < n_members && i < P11P_MAX_MEMBERS; i++) {
		struct p11p_member *m = &p11p_vhead(vs)->members[i];

		n_all += m != pm && !m->removed;
		if (m != pm && !m->removed && m->resolved && atomic_load(&m->health) == P11P_UP)
			tg[n_tg++].m = m;
	}
	p11p_unlock();
	for (size_t i = 0; i < n_tg; i++) {
		copy_to_target(c->st, vs, &tg[i], ki, n);
		healthy += !tg[i].down;
		holders += tg[i].ok;
		if (tg[i].ok && tg[i].m->index < 32)
			c->new_key_holders |= 1u << tg[i].m->index;
	}
	needed = ha->key_quorum != 0 ? ha->key_quorum : healthy;
	if (holders >= needed) {
		/* holders counts the member the key was made on. */
		if (holders > 1)
			p11p_notice("slot '%s': new %s copied to %zu other member%s",
			            p11p_vhead(vs)->label, desc, holders - 1,
			            holders == 2 ? "" : "s");
		for (size_t i = 0; i < n_tg; i++) {
			if (!tg[i].ok && !tg[i].down)
				p11p_message("slot '%s': %s is not on member '%s' (quorum of %zu "
				             "reached): %s",
				             p11p_vhead(vs)->label, desc, tg[i].m->cfg->name,
				             needed, tg[i].why);
		}
		lock_originals(c, &src, ki, n, holders == n_all);
		if (holders < n_all)
			record_missing(c, ki, n, tg, n_tg);
		rv = CKR_OK;
		goto out;
	}
	for (size_t i = 0; i < n_tg && why[0] == '\0'; i++) {
		if (!tg[i].ok && !tg[i].down)
			snprintf(why, sizeof(why), "%s", tg[i].why);
	}
	if (why[0] == '\0')
		snprintf(why, sizeof(why),
		         "ha.key_quorum is %zu but %zu member%s healthy: lower ha.key_quorum, or "
		         "bring the members back (`p11proxy health`)",
		         needed, healthy, healthy == 1 ? " is" : "s are");
	rv = CKR_FUNCTION_FAILED;
refuse:
	if (ha->single_member_keys && rv != CKR_HOST_MEMORY) {
		p11p_message("slot '%s': %s is on %zu member%s only (single_member_keys): %s",
		             p11p_vhead(vs)->label, desc, holders, holders == 1 ? "" : "s", why);
		lock_originals(c, &src, ki, ki != NULL ? n : 0, false);
		if (ki != NULL)
			record_missing(c, ki, n, tg, n_tg);
		rv = CKR_OK;
		goto out;
	}
	p11p_message("slot '%s': new %s refused and destroyed: %s", p11p_vhead(vs)->label, desc,
	             why);
	for (size_t i = 0; i < n_tg; i++)
		target_undo(c->st, vs, &tg[i], ki, n);
	for (size_t k = 0; k < n; k++) {
		/* No orphan: what cannot be destroyed now is, when the member is back. */
		if (p11p_be_C_DestroyObject(&c->bc, c->bs, bh[k]) != CKR_OK && ki != NULL &&
		    ki[k].h != CK_INVALID_HANDLE)
			debt_add_ki(c->st, vs, pm, P11P_DEBT_DESTROY, &ki[k]);
	}
	rv = rv == CKR_HOST_MEMORY ? rv : CKR_FUNCTION_FAILED;
out:
	for (size_t i = 0; i < n_tg; i++)
		msess_close(&tg[i].s);
	msess_close(&src);
	for (size_t k = 0; ki != NULL && k < n; k++)
		keyinfo_clear(&ki[k]);
	if (busy)
		slot_busy_end(vs);
	p11p_free(ki);
	p11p_free(tg);
	return rv;
}

/*
 * A rename through the slot (templ names CKA_ID or CKA_LABEL) of the object
 * ident names: the debts owed for it under ident follow it to its new
 * identity where the member knows it by that one now (got[i]: member i got
 * the change), and a copy or a lock always (the member lacks the object; a
 * lock looks for it on every member, after the changes are settled); the
 * others keep ident (that member knows the object by it still).
 */
static void debts_follow(struct p11p_state *st, struct p11p_vslot *vs,
                         const struct p11p_identity *ident, const CK_ATTRIBUTE *templ,
                         CK_ULONG count, const bool *got)
{
	struct p11p_index *idx = p11p_vkey_index(st);
	struct p11p_debt *debts = NULL, *nd = NULL;
	struct dident *w = NULL; /* before, after, debt j */
	size_t n = 0;
	char err[256];

	if (idx == NULL || p11p_vhead(vs)->label[0] == '\0' ||
	    p11p_vhead(vs)->cfg->ha.replication != P11P_REPL_WRAP ||
	    ident->id_len > P11P_INDEX_ID_MAX || ident->label_len > P11P_INDEX_LABEL_MAX ||
	    (w = p11p_malloc(3 * sizeof(*w))) == NULL)
		return;
	w[0].cls = ident->cls;
	w[0].id_len = ident->cls == CKO_DATA ? 0 : ident->id_len;
	w[0].label_len = ident->label_len;
	memcpy(w[0].id, ident->id, w[0].id_len);
	memcpy(w[0].label, ident->label, w[0].label_len);
	w[1] = w[0];
	if (!dident_apply(&w[1], templ, count) || dident_eq(&w[0], &w[1]) ||
	    p11p_index_debt_list(idx, p11p_vhead(vs)->label, &debts, &n) != CKR_OK || n == 0 ||
	    (nd = p11p_malloc(sizeof(*nd))) == NULL) {
		p11p_free(debts);
		p11p_free(w);
		return;
	}
	for (size_t j = 0; j < n; j++) {
		struct p11p_debt *d = &debts[j];
		bool follow = d->op == P11P_DEBT_COPY || d->op == P11P_DEBT_UPDATE;
		CK_RV rv;

		dident_of(d, &w[2]);
		if (!dident_eq(&w[2], &w[0]))
			continue;
		for (size_t i = 0; i < p11p_vhead(vs)->n_members && i < P11P_MAX_MEMBERS && !follow;
		     i++)
			follow =
			    got[i] && strcmp(p11p_vhead(vs)->members[i].cfg->name, d->member) == 0;
		if (!follow)
			continue;
		*nd = *d;
		nd->id = 0;
		nd->ck_id_len = w[1].id_len;
		nd->label_len = w[1].label_len;
		memcpy(nd->ck_id, w[1].id, w[1].id_len);
		memcpy(nd->label, w[1].label, w[1].label_len);
		rv = p11p_index_debt_add(idx, nd);
		if (rv == CKR_OK) {
			p11p_index_debt_done(idx, d->id);
			continue;
		}
		p11p_index_last_error(idx, err, sizeof(err));
		p11p_message("slot '%s': member '%s': a debt of a renamed object keeps its old "
		             "identity: %s",
		             p11p_vhead(vs)->label, d->member,
		             err[0] != '\0' ? err : p11p_rv_str(rv));
	}
	p11p_free(nd);
	p11p_free(debts);
	p11p_free(w);
}

/*
 * On each other up member, the copy of the token object with that identity
 * (exactly one match, as failover would re-find it): destroyed (templ NULL),
 * or given the attributes of templ.
 */
static void for_copies(struct p11p_call *c, const struct p11p_identity *ident,
                       CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	struct p11p_vslot *vs = p11p_shead(c->s)->slot;
	CK_OBJECT_CLASS cls = ident->cls;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_ID, (void *)(uintptr_t)ident->id, ident->id_len},
	    {CKA_LABEL, (void *)(uintptr_t)ident->label, ident->label_len},
	};
	bool got[P11P_MAX_MEMBERS] = {false}; /* members that have the change */

	if (ident->cls == CKO_DATA)
		t[1] = t[2]; /* no CKA_ID */
	for (size_t i = 0; i < p11p_vhead(vs)->n_members; i++) {
		struct p11p_member *m = &p11p_vhead(vs)->members[i];
		CK_OBJECT_HANDLE found[2];
		CK_ULONG n = 0;
		struct msess ms;
		CK_RV rv;
		bool up, other;

		p11p_lock();
		up = m != c->m && !m->removed && m->resolved && atomic_load(&m->health) == P11P_UP;
		other = m != c->m && !m->removed;
		p11p_unlock();
		if (m == c->m && i < P11P_MAX_MEMBERS)
			got[i] = true; /* the call's own */
		if (!up || msess_open(c->st, vs, m, &ms) != CKR_OK) {
			/* A member away keeps its copy: removed, or changed, when it is back. */
			if (templ == NULL && other)
				debt_add(c->st, vs, m, P11P_DEBT_DESTROY, ident->cls, ident->id,
				         ident->id_len, ident->label, ident->label_len);
			else if (other)
				debt_add_attrs(c->st, vs, m, ident, templ, count);
			continue;
		}
		rv = find(&ms, t, ident->cls == CKO_DATA ? 2 : 3, found, 2, &n);
		if (rv == CKR_OK && n == 1) {
			rv = templ == NULL
			         ? p11p_be_C_DestroyObject(ms.bc, ms.h, found[0])
			         : p11p_be_C_SetAttributeValue(ms.bc, ms.h, found[0], templ, count);
			if (rv == CKR_OK && i < P11P_MAX_MEMBERS)
				got[i] = true;
			if (rv != CKR_OK && templ == NULL)
				debt_add(c->st, vs, m, P11P_DEBT_DESTROY, ident->cls, ident->id,
				         ident->id_len, ident->label, ident->label_len);
			else if (rv != CKR_OK && !p11p_rv_is_server_error(m->be, rv))
				p11p_message("slot '%s': the copy on member '%s' of a changed "
				             "object keeps its old attributes: %s",
				             p11p_vhead(vs)->label, ms.name, p11p_rv_str(rv));
			else if (rv != CKR_OK)
				debt_add_attrs(c->st, vs, m, ident, templ, count);
			if (rv != CKR_OK && templ == NULL)
				p11p_message("slot '%s': the copy on member '%s' of a destroyed "
				             "object stays: %s",
				             p11p_vhead(vs)->label, ms.name, p11p_rv_str(rv));
		} else if (templ != NULL && (rv != CKR_OK || n == 0)) {
			/* Not there (yet: a copy owed) or not reachable: when it is. */
			debt_add_attrs(c->st, vs, m, ident, templ, count);
		}
		msess_close(&ms);
	}
	if (templ != NULL)
		debts_follow(c->st, vs, ident, templ, count, got);
}

void p11p_repl_destroyed(struct p11p_call *c, const struct p11p_identity *ident)
{
	for_copies(c, ident, NULL, 0);
}

void p11p_repl_changed(struct p11p_call *c, const struct p11p_identity *ident,
                       CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	for_copies(c, ident, templ, count);
}

CK_RV p11p_repl_copy_key(struct p11p_backend *src_be, CK_SESSION_HANDLE src_h, size_t src_index,
                         CK_OBJECT_HANDLE bh, struct p11p_backend *dst_be, CK_SESSION_HANDLE dst_h,
                         size_t dst_index, const char *repl_label, CK_OBJECT_HANDLE *out, char *why,
                         size_t wl)
{
	struct msess src = {.be = src_be,
	                    .index = src_index,
	                    .repl_label = repl_label,
	                    .bc = p11p_backend_ctx(src_be),
	                    .h = src_h};
	struct msess dst = {.be = dst_be,
	                    .index = dst_index,
	                    .repl_label = repl_label,
	                    .bc = p11p_backend_ctx(dst_be),
	                    .h = dst_h};
	struct keyinfo ki;
	CK_RV rv;

	/* The CLI numbers members from 1. */
	snprintf(src.name, sizeof(src.name), "#%zu", src_index + 1);
	snprintf(dst.name, sizeof(dst.name), "#%zu", dst_index + 1);
	memset(&ki, 0, sizeof(ki));
	*out = CK_INVALID_HANDLE;
	why[0] = '\0';
	rv = read_ident(&src, bh, &ki, why, wl);
	if (rv == CKR_OK && !is_replicated_class(ki.cls)) {
		snprintf(why, wl, "not a key, certificate or data object");
		rv = CKR_FUNCTION_FAILED;
	}
	if (rv == CKR_OK)
		rv = prepare(&src, &ki, why, wl);
	if (rv == CKR_OK)
		rv = copy_to(&dst, &ki, out, why, wl);
	keyinfo_clear(&ki);
	return rv;
}
