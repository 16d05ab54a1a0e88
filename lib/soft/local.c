/*
 * Keys the proxy holds itself, and the vendor mechanisms of p11proxy.h
 * (issue 5): fragment derivation (C_DeriveKey, CKM_P11PROXY_FRAGMENT_DERIVE),
 * each configured customer fragment's key as an object of its slot, and key
 * generation from mixed entropy (C_GenerateKey, CKM_P11PROXY_MIXED_KEY_GEN).
 *
 * Objects ("local objects", handles in the P11P_LOCAL_BASE space) live in
 * one table of the state, guarded by the global lock:
 *  - a derived key: a session object of the session that derived it (freed,
 *    wiped, when that session closes or the object is destroyed);
 *  - a configured fragment's key (owner 0): one per fragment of the slot's
 *    `fragments:` file, labelled with the fragment's name, an AES-256 key
 *    OKM = HKDF-SHA256(salt = the HSM key named by hsm_key_label (HMAC in the
 *    HSM), IKM = the fragment value, info = "p11proxy-fragment:" NAME, 32).
 *    hsm_wrapped: derived once (at C_Initialize through a member whose PIN the
 *    config holds, else at its first use in a session that can reach the HSM
 *    key) and kept in locked, wiped memory; hsm_secured: derived again for
 *    every operation (every *Init costs an HSM C_Sign) and dropped at its end.
 * Key material sits in a refcounted `lkey` (a software key, crypto/swkey.h):
 * an operation holds a reference from its *Init to its end, so a key
 * destroyed meanwhile stays valid for that operation only.
 *
 * Check values: for a configured fragment (and for the HSM base key of a
 * C_DeriveKey on a slot with several members) the first use on each member
 * computes HMAC-SHA256(HSM key, "p11proxy check value v1") there. When two
 * members disagree, their HSM keys differ and every derivation would depend
 * on which member serves the session: the fragment (or base key) is refused
 * from then on with CKR_FUNCTION_FAILED and a message naming both members.
 *
 * Operations on local keys are single-part in the software engine; the
 * multi-part calls buffer their input (at most P11P_LOCAL_MULTIPART_MAX bytes,
 * CKR_DATA_LEN_RANGE beyond) and run the single-part operation at *Final, so
 * GCM decryption releases no plaintext before the tag is checked.
 *
 * Locking: the object table and the check values are guarded by the global
 * lock, never held across a backend call; a session's operations by its
 * session lock.
 */
#include "soft/local.h"
#include "base/attrs.h"
#include "base/log.h"
#include "base/mem.h"
#include "crypto/hkdf.h"
#include "crypto/swkey.h"

#include <p11proxy.h>
#include <stdio.h>
#include <string.h>

#define P11P_LOCAL_MULTIPART_MAX (1024UL * 1024) /* buffered multi-part input */
#define CHECK_LEN                4
static const char check_text[] = "p11proxy check value v1";
static const char frag_info_prefix[] = "p11proxy-fragment:";

/* Attribute bits of a local object. */
enum {
	F_SENSITIVE = 1u << 0,
	F_EXTRACTABLE = 1u << 1,
	F_ALWAYS_SENSITIVE = 1u << 2,
	F_NEVER_EXTRACTABLE = 1u << 3,
	F_ENCRYPT = 1u << 4,
	F_DECRYPT = 1u << 5,
	F_SIGN = 1u << 6,
	F_VERIFY = 1u << 7,
	F_DERIVE = 1u << 8,
	F_PRIVATE = 1u << 9,
	F_MODIFIABLE = 1u << 10,
	F_DESTROYABLE = 1u << 11,
};

/* Key material shared by an object and the operations using it. */
struct lkey {
	atomic_uint refs;
	struct p11p_swkey *sw;
};

/* Check values of one HSM key per member (global lock). */
struct lcheck {
	unsigned known; /* bit per member index */
	unsigned char v[P11P_MAX_MEMBERS][CHECK_LEN];
	bool bad; /* two members disagreed */
};

struct lfrag {
	const struct p11p_fragment *f; /* in the slot's set */
	CK_OBJECT_HANDLE handle;
	struct lcheck check;
};

struct lobj {
	CK_OBJECT_HANDLE handle;
	struct p11p_vslot *slot;
	CK_SESSION_HANDLE owner; /* deriving session; 0: a configured fragment's key */
	struct lfrag *frag;      /* a configured fragment's key, else NULL */
	CK_KEY_TYPE type;
	CK_ULONG len;
	unsigned flags;
	CK_ULONG label_len, id_len;
	CK_BYTE label[P11P_ID_MAX], id[P11P_ID_MAX];
	struct lkey *key; /* NULL: hsm_secured, or hsm_wrapped not derived yet */
};

struct p11p_local_state {
	struct p11p_map objects; /* (0, handle) -> lobj */
	struct p11p_map checks;  /* (slot, proxy handle of an HSM base key) -> lcheck */
	CK_ULONG next;
};

struct lop {
	CK_MECHANISM mech;
	CK_GCM_PARAMS gcm;
	CK_ULONG mac_len;
	unsigned char *iv, *aad;
	struct lkey *key;
	unsigned char *buf;
	size_t len, cap;
	bool multipart;
};

struct p11p_local_session {
	struct lop ops[P11P_OP_KINDS];
	CK_OBJECT_HANDLE *found;
	size_t n_found, pos;
};

/* ---- keys ---- */

static struct lkey *lkey_new(struct p11p_swkey *sw)
{
	struct lkey *k = p11p_calloc(1, sizeof(*k));

	if (k == NULL) {
		p11p_swkey_free(sw);
		return NULL;
	}
	atomic_init(&k->refs, 1);
	k->sw = sw;
	return k;
}

static struct lkey *lkey_ref(struct lkey *k)
{
	if (k != NULL)
		atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
	return k;
}

static void lkey_unref(struct lkey *k)
{
	if (k != NULL && atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) == 1) {
		p11p_swkey_free(k->sw);
		p11p_free(k);
	}
}

static void lobj_free(struct lobj *o)
{
	lkey_unref(o->key);
	p11p_wipe(o, sizeof(*o));
	p11p_free(o);
}

/* ---- the state ---- */

static void free_obj_cb(void *value, void *arg)
{
	(void)arg;
	lobj_free(value);
}

static void free_check_cb(void *value, void *arg)
{
	(void)arg;
	p11p_free(value);
}

static void slot_local_free(struct p11p_vslot *vs)
{
	struct p11p_local_slot *ls = vs->local;

	if (ls == NULL)
		return;
	p11p_local_rng_free(ls->rng);
	p11p_free(ls->frags);
	p11p_fragments_free(ls->set);
	p11p_free(ls);
	vs->local = NULL;
}

void p11p_local_state_free(struct p11p_state *st)
{
	for (size_t i = 0; i < st->n_slots; i++)
		slot_local_free(&st->slots[i]);
	if (st->local == NULL)
		return;
	p11p_map_each(&st->local->objects, free_obj_cb, NULL);
	p11p_map_clear(&st->local->objects);
	p11p_map_each(&st->local->checks, free_check_cb, NULL);
	p11p_map_clear(&st->local->checks);
	p11p_free(st->local);
	st->local = NULL;
}

static CK_RV obj_insert_locked(struct p11p_state *st, struct lobj *o)
{
	o->handle = p11p_next_handle_locked(&st->local->next, P11P_LOCAL_BASE, &st->local->objects);
	if (o->handle == CK_INVALID_HANDLE)
		return CKR_HOST_MEMORY;
	return p11p_map_put(&st->local->objects, 0, o->handle, o) < 0 ? CKR_HOST_MEMORY : CKR_OK;
}

/* The object behind h on c's slot (global lock held), or NULL. */
static struct lobj *obj_get_locked(struct p11p_call *c, CK_OBJECT_HANDLE h)
{
	struct lobj *o;

	if (c->st->local == NULL)
		return NULL;
	o = p11p_map_get(&c->st->local->objects, 0, h);
	return o != NULL && o->slot == c->s->slot ? o : NULL;
}

static void drop_owned_locked(struct p11p_state *st, struct p11p_session *s);

void p11p_local_drop_owned_locked(struct p11p_state *st, struct p11p_session *s)
{
	/* Every session close asks: usually there is no local object at all. */
	if (st->local != NULL && st->local->objects.count != 0)
		drop_owned_locked(st, s);
}

static void drop_owned_locked(struct p11p_state *st, struct p11p_session *s)
{
	struct lobj *gone[64];
	size_t n;

	/* Collect, then remove: the map must not change while it is walked. */
	do {
		n = 0;
		for (size_t i = 0; i < st->local->objects.cap && n < 64; i++) {
			struct lobj *o = st->local->objects.slots[i].value;

			if (o != NULL && o->owner != 0 && o->owner == s->handle &&
			    o->slot == s->slot)
				gone[n++] = o;
		}
		for (size_t i = 0; i < n; i++) {
			p11p_map_remove(&st->local->objects, 0, gone[i]->handle);
			lobj_free(gone[i]);
		}
	} while (n == 64);
}

/* ---- HSM helpers ---- */

/* HMAC-SHA256 of in with an HSM key, on a backend session. */
static CK_RV hsm_hmac(const struct p11p_bctx *bc, CK_SESSION_HANDLE bs, CK_OBJECT_HANDLE key,
                      const unsigned char *in, size_t in_len, unsigned char out[32])
{
	CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
	CK_ULONG olen = 32;
	CK_RV rv = p11p_be_C_SignInit(bc, bs, &m, key);

	if (rv == CKR_OK)
		rv = p11p_be_C_Sign(bc, bs, (CK_BYTE_PTR)(uintptr_t)in, in_len, out, &olen);
	if (rv == CKR_OK && olen != 32) {
		p11p_wipe(out, 32);
		rv = CKR_GENERAL_ERROR; /* a backend answering a wrong length */
	}
	return rv;
}

/* The secret key labelled `label` on a backend session: exactly one. */
static CK_RV hsm_find_key(const struct p11p_bctx *bc, CK_SESSION_HANDLE bs, const char *label,
                          CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_LABEL, (void *)(uintptr_t)label, strlen(label)},
	};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = 0;
	CK_RV rv = p11p_be_C_FindObjectsInit(bc, bs, t, 2);

	if (rv != CKR_OK)
		return rv;
	rv = p11p_be_C_FindObjects(bc, bs, found, 2, &n);
	p11p_be_C_FindObjectsFinal(bc, bs);
	if (rv == CKR_OK && (n == 0 || n > 2))
		rv = CKR_KEY_HANDLE_INVALID;
	else if (rv == CKR_OK && n == 2)
		rv = CKR_KEY_NOT_NEEDED; /* ambiguous: reported as such by callers */
	if (rv == CKR_OK)
		*out = found[0];
	return rv;
}

/*
 * Records member m's check value of an HSM key (global lock taken here).
 * CKR_FUNCTION_FAILED when another member's differs (reported once).
 */
static CK_RV check_record(struct p11p_vslot *vs, struct lcheck *ck, size_t m,
                          const unsigned char v[CHECK_LEN], const char *what)
{
	CK_RV rv = CKR_OK;
	size_t other = 0;
	bool report = false;

	p11p_lock();
	for (size_t i = 0; i < vs->n_members; i++) {
		if (i != m && (ck->known & (1u << i)) && memcmp(ck->v[i], v, CHECK_LEN) != 0) {
			other = i;
			if (!ck->bad)
				report = true;
			ck->bad = true;
		}
	}
	if (!ck->bad) {
		memcpy(ck->v[m], v, CHECK_LEN);
		ck->known |= 1u << m;
	} else {
		rv = CKR_FUNCTION_FAILED;
	}
	p11p_unlock();
	if (report)
		p11p_message(
		    "slot '%s': %s: the HSM keys of members '%s' and '%s' differ (check "
		    "values disagree); refused until they are made equal and the module is "
		    "initialized again",
		    vs->label, what, vs->members[other].cfg->name, vs->members[m].cfg->name);
	return rv;
}

static bool check_bad(struct lcheck *ck)
{
	bool bad;

	p11p_lock();
	bad = ck->bad;
	p11p_unlock();
	return bad;
}

/* Computes and records member m's check value unless known. */
static CK_RV check_member(struct p11p_vslot *vs, struct lcheck *ck, size_t m,
                          const struct p11p_bctx *bc, CK_SESSION_HANDLE bs, CK_OBJECT_HANDLE key,
                          const char *what)
{
	unsigned char mac[32];
	bool known;
	CK_RV rv;

	p11p_lock();
	known = (ck->known & (1u << m)) != 0;
	p11p_unlock();
	if (known)
		return check_bad(ck) ? CKR_FUNCTION_FAILED : CKR_OK;
	rv = hsm_hmac(bc, bs, key, (const unsigned char *)check_text, sizeof(check_text) - 1, mac);
	if (rv == CKR_OK)
		rv = check_record(vs, ck, m, mac, what);
	p11p_wipe(mac, sizeof(mac));
	return rv;
}

struct hsm_extract {
	const struct p11p_bctx *bc;
	CK_SESSION_HANDLE bs;
	CK_OBJECT_HANDLE key;
};

static CK_RV hsm_extract_cb(void *ctx, const unsigned char *ikm, size_t ikm_len,
                            unsigned char prk[P11P_HKDF_HASH_LEN])
{
	const struct hsm_extract *x = ctx;

	return hsm_hmac(x->bc, x->bs, x->key, ikm, ikm_len, prk);
}

/* Extract with a key the proxy holds: HMAC-SHA256 in software. */
static CK_RV sw_extract_cb(void *ctx, const unsigned char *ikm, size_t ikm_len,
                           unsigned char prk[P11P_HKDF_HASH_LEN])
{
	CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
	CK_ULONG len = P11P_HKDF_HASH_LEN;
	CK_RV rv = p11p_swkey_sign(ctx, &m, ikm, ikm_len, prk, &len);

	return rv == CKR_OK && len != P11P_HKDF_HASH_LEN ? CKR_GENERAL_ERROR : rv;
}

/*
 * A backend session of c's member for our own calls: the session's own
 * unless it has a find or sign operation active there (ours would clash),
 * else a temporary one (*temp set; close it with end_session).
 */
static CK_RV borrow_session(struct p11p_call *c, CK_SESSION_HANDLE *bs, bool *temp)
{
	CK_SLOT_ID be_slot;

	*temp = c->s->ops[P11P_OP_FIND].active || c->s->ops[P11P_OP_SIGN].active;
	if (!*temp) {
		*bs = c->bs;
		return CKR_OK;
	}
	p11p_lock();
	be_slot = c->m->be_slot;
	p11p_unlock();
	return p11p_be_C_OpenSession(&c->bc, be_slot, CKF_SERIAL_SESSION, NULL, NULL, bs);
}

static void end_session(struct p11p_call *c, CK_SESSION_HANDLE bs, bool temp)
{
	if (temp)
		p11p_be_C_CloseSession(&c->bc, bs);
}

/* ---- configured fragments ---- */

static CK_RV frag_info(const struct p11p_fragment *f, unsigned char *info, size_t cap, size_t *len)
{
	size_t pl = sizeof(frag_info_prefix) - 1, nl = strlen(f->name);

	if (pl + nl > cap)
		return CKR_GENERAL_ERROR;
	memcpy(info, frag_info_prefix, pl);
	memcpy(info + pl, f->name, nl);
	*len = pl + nl;
	return CKR_OK;
}

/* Derives a fragment's key through a backend session of member m. */
static CK_RV frag_derive_on(struct p11p_vslot *vs, struct lfrag *lf, size_t m,
                            const struct p11p_bctx *bc, CK_SESSION_HANDLE bs,
                            struct p11p_swkey **out)
{
	const struct p11p_fragment *f = lf->f;
	struct hsm_extract x = {.bc = bc, .bs = bs};
	struct p11p_secret *okm = NULL;
	unsigned char info[sizeof(frag_info_prefix) + P11P_FRAGMENT_NAME_MAX];
	size_t info_len;
	char what[P11P_FRAGMENT_NAME_MAX + 16];
	CK_RV rv;

	snprintf(what, sizeof(what), "fragment '%s'", f->name);
	rv = hsm_find_key(bc, bs, f->hsm_key_label, &x.key);
	if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_KEY_NOT_NEEDED)
		return rv;
	if (rv == CKR_OK)
		rv = check_member(vs, &lf->check, m, bc, bs, x.key, what);
	if (rv == CKR_OK)
		rv = frag_info(f, info, sizeof(info), &info_len);
	if (rv == CKR_OK)
		rv = p11p_hkdf(hsm_extract_cb, &x, p11p_secret_data(f->value),
		               p11p_secret_len(f->value), info, info_len, 32, &okm);
	if (rv == CKR_OK)
		rv = p11p_swkey_from_secret(CKK_AES, &okm, P11P_SWKEY_SENSITIVE, out);
	p11p_secret_free(okm);
	return rv;
}

/* The message for a fragment whose HSM key cannot be found on a member. */
static void frag_key_missing(struct p11p_vslot *vs, struct lfrag *lf, size_t m, CK_RV rv)
{
	p11p_message("slot '%s': fragment '%s': %s HSM secret key labelled '%s' on member '%s'",
	             vs->label, lf->f->name, rv == CKR_KEY_NOT_NEEDED ? "more than one" : "no",
	             lf->f->hsm_key_label, vs->members[m].cfg->name);
}

/*
 * A fragment's key for an operation in c: the kept one (hsm_wrapped, derived
 * now if it was not yet) or a fresh one the operation owns (hsm_secured).
 */
static CK_RV frag_key(struct p11p_call *c, struct lfrag *lf, CK_OBJECT_HANDLE h, struct lkey **out)
{
	struct p11p_vslot *vs = c->s->slot;
	struct p11p_swkey *sw = NULL;
	CK_SESSION_HANDLE bs;
	bool temp;
	CK_RV rv;

	if (check_bad(&lf->check))
		return CKR_FUNCTION_FAILED;
	for (;;) {
		rv = borrow_session(c, &bs, &temp);
		if (rv == CKR_OK) {
			rv = frag_derive_on(vs, lf, c->s->member, &c->bc, bs, &sw);
			end_session(c, bs, temp);
		}
		if (!p11p_hook_call_retry(c, &rv, true))
			break;
	}
	if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_KEY_NOT_NEEDED) {
		bool logged_in;

		p11p_lock();
		logged_in = vs->login != P11P_NO_USER;
		p11p_unlock();
		if (!logged_in && rv == CKR_KEY_HANDLE_INVALID)
			return CKR_USER_NOT_LOGGED_IN; /* the HSM key may be private */
		frag_key_missing(vs, lf, c->s->member, rv);
		return CKR_FUNCTION_FAILED;
	}
	if (rv != CKR_OK)
		return rv;
	*out = lkey_new(sw);
	if (*out == NULL)
		return CKR_HOST_MEMORY;
	if (lf->f->type == P11P_FRAGMENT_HSM_WRAPPED) {
		struct lobj *o;

		/* Keep it: the first thread to finish wins, the others use its key. */
		p11p_lock();
		o = obj_get_locked(c, h);
		if (o != NULL && o->key == NULL) {
			o->key = lkey_ref(*out);
		} else if (o != NULL) {
			lkey_unref(*out);
			*out = lkey_ref(o->key);
		}
		p11p_unlock();
	}
	return CKR_OK;
}

/* ---- state init ---- */

static CK_RV slot_local_init(struct p11p_state *st, struct p11p_vslot *vs)
{
	struct p11p_local_slot *ls = p11p_calloc(1, sizeof(*ls));
	char err[512];
	CK_RV rv;

	if (ls == NULL)
		return CKR_HOST_MEMORY;
	vs->local = ls;
	atomic_init(&ls->health_reported, false);
	ls->rng_public = vs->cfg->entropy.source != P11P_ENTROPY_PASSTHROUGH;
	rv = p11p_local_rng_new(vs, &ls->rng);
	if (rv != CKR_OK) {
		p11p_message("slot '%s': cannot set up the random generator", vs->label);
		return rv;
	}
	if (vs->cfg->fragments == NULL)
		return CKR_OK;
	ls->set = p11p_fragments_load(vs->cfg->fragments, err, sizeof(err));
	if (ls->set == NULL) {
		p11p_message("slot '%s': fragments: %s", vs->label, err);
		return CKR_GENERAL_ERROR;
	}
	ls->frags = p11p_calloc(ls->set->n ? ls->set->n : 1, sizeof(*ls->frags));
	if (ls->frags == NULL)
		return CKR_HOST_MEMORY;
	ls->n_frags = ls->set->n;
	for (size_t i = 0; i < ls->n_frags; i++) {
		struct lfrag *lf = &ls->frags[i];
		struct lobj *o = p11p_calloc(1, sizeof(*o));
		size_t nl = strlen(ls->set->items[i].name);

		if (o == NULL)
			return CKR_HOST_MEMORY;
		lf->f = &ls->set->items[i];
		o->slot = vs;
		o->frag = lf;
		o->type = CKK_AES;
		o->len = 32;
		o->flags = F_SENSITIVE | F_ALWAYS_SENSITIVE | F_NEVER_EXTRACTABLE | F_ENCRYPT |
		           F_DECRYPT | F_SIGN | F_VERIFY | F_DERIVE;
		o->label_len = nl < sizeof(o->label) ? nl : sizeof(o->label);
		memcpy(o->label, lf->f->name, o->label_len);
		if (obj_insert_locked(st, o) != CKR_OK) {
			lobj_free(o);
			return CKR_HOST_MEMORY;
		}
		lf->handle = o->handle;
	}
	return CKR_OK;
}

/* hsm_wrapped keys derived at C_Initialize where a member PIN allows it. */
static void slot_preload(struct p11p_state *st, struct p11p_vslot *vs)
{
	struct p11p_local_slot *ls = vs->local;

	for (size_t i = 0; i < ls->n_frags; i++) {
		struct lfrag *lf = &ls->frags[i];

		if (lf->f->type != P11P_FRAGMENT_HSM_WRAPPED)
			continue;
		for (size_t mi = 0; mi < vs->n_members; mi++) {
			struct p11p_member *m = &vs->members[mi];
			const struct p11p_secret *pin = m->cfg->pin;
			const struct p11p_bctx *bc;
			struct p11p_swkey *sw = NULL;
			CK_SESSION_HANDLE bs;
			struct lobj *o;
			CK_RV rv;

			if (!m->resolved || pin == NULL || atomic_load(&m->health) != P11P_UP)
				continue;
			bc = &m->ctx;
			if (p11p_be_C_OpenSession(bc, m->be_slot, CKF_SERIAL_SESSION, NULL, NULL,
			                          &bs) != CKR_OK)
				continue;
			rv = p11p_be_C_Login(bc, bs, CKU_USER,
			                     (CK_UTF8CHAR_PTR)(uintptr_t)p11p_secret_data(pin),
			                     p11p_secret_len(pin));
			if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
				rv = frag_derive_on(vs, lf, mi, bc, bs, &sw);
				if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_KEY_NOT_NEEDED)
					frag_key_missing(vs, lf, mi, rv);
			}
			p11p_be_C_CloseSession(bc, bs);
			if (rv != CKR_OK)
				continue;
			o = p11p_map_get(&st->local->objects, 0, lf->handle);
			if (o != NULL && o->key == NULL)
				o->key = lkey_new(sw); /* frees sw when it fails */
			else
				p11p_swkey_free(sw);
		}
	}
}

CK_RV p11p_local_state_init(struct p11p_state *st)
{
	CK_RV rv;

	st->local = p11p_calloc(1, sizeof(*st->local));
	if (st->local == NULL)
		return CKR_HOST_MEMORY;
	st->local->next = 1; /* handles are P11P_LOCAL_BASE + 1 .. + P11P_HANDLE_SPAN */
	for (size_t i = 0; i < st->n_slots; i++) {
		rv = slot_local_init(st, &st->slots[i]);
		if (rv != CKR_OK)
			return rv; /* the caller frees the state */
	}
	/* Not shared yet: backend calls without the global lock are fine. */
	for (size_t i = 0; i < st->n_slots; i++)
		if (st->slots[i].local->n_frags > 0)
			slot_preload(st, &st->slots[i]);
	return CKR_OK;
}

bool p11p_local_mechanism(CK_MECHANISM_TYPE type)
{
	return type == CKM_P11PROXY_FRAGMENT_DERIVE || type == CKM_P11PROXY_MIXED_KEY_GEN;
}

/* ---- sessions and operations ---- */

static void op_clear(struct lop *op)
{
	lkey_unref(op->key);
	if (op->buf != NULL) {
		p11p_wipe(op->buf, op->cap);
		p11p_free(op->buf);
	}
	p11p_free(op->iv);
	p11p_free(op->aad);
	memset(op, 0, sizeof(*op));
}

static void op_end(struct p11p_call *c, enum p11p_op_kind k)
{
	if (c->s->local != NULL)
		op_clear(&c->s->local->ops[k]);
	c->s->local_ops &= ~(1u << k);
}

void p11p_local_session_free(struct p11p_session *s)
{
	if (s->local == NULL)
		return;
	for (int k = 0; k < P11P_OP_KINDS; k++)
		op_clear(&s->local->ops[k]);
	p11p_free(s->local->found);
	p11p_free(s->local);
	s->local = NULL;
	s->local_ops = 0;
}

static CK_RV session_local(struct p11p_call *c)
{
	if (c->s->local == NULL && (c->s->local = p11p_calloc(1, sizeof(*c->s->local))) == NULL)
		return CKR_HOST_MEMORY;
	return CKR_OK;
}

static bool gcm_tag_ok(CK_ULONG bits)
{
	return bits == 32 || bits == 64 || bits == 96 || bits == 104 || bits == 112 ||
	       bits == 120 || bits == 128;
}

/* Checks and deep-copies the mechanism into op. */
static CK_RV op_mech(struct lop *op, enum p11p_op_kind k, const CK_MECHANISM *m, CK_KEY_TYPE type)
{
	bool crypt = k == P11P_OP_ENCRYPT || k == P11P_OP_DECRYPT;

	op->mech.mechanism = m->mechanism;
	switch (m->mechanism) {
	case CKM_AES_GCM: {
		CK_GCM_PARAMS p;

		if (!crypt)
			return CKR_MECHANISM_INVALID;
		if (type != CKK_AES)
			return CKR_KEY_TYPE_INCONSISTENT;
		if (m->pParameter == NULL || m->ulParameterLen != sizeof(CK_GCM_PARAMS))
			return CKR_MECHANISM_PARAM_INVALID;
		memcpy(&p, m->pParameter, sizeof(p));
		if (p.pIv == NULL || p.ulIvLen == 0 || p.ulIvLen > P11P_SWKEY_GCM_IV_MAX ||
		    (p.pAAD == NULL && p.ulAADLen > 0) || p.ulAADLen > 0xffffffffUL ||
		    !gcm_tag_ok(p.ulTagBits))
			return CKR_MECHANISM_PARAM_INVALID;
		op->iv = p11p_malloc(p.ulIvLen);
		op->aad = p11p_malloc(p.ulAADLen ? p.ulAADLen : 1);
		if (op->iv == NULL || op->aad == NULL)
			return CKR_HOST_MEMORY;
		memcpy(op->iv, p.pIv, p.ulIvLen);
		if (p.ulAADLen)
			memcpy(op->aad, p.pAAD, p.ulAADLen);
		op->gcm = p;
		op->gcm.pIv = op->iv;
		op->gcm.pAAD = p.ulAADLen ? op->aad : NULL;
		op->mech.pParameter = &op->gcm;
		op->mech.ulParameterLen = sizeof(op->gcm);
		return CKR_OK;
	}
	case CKM_SHA256_HMAC:
		if (crypt || k == P11P_OP_SIGN_RECOVER || k == P11P_OP_VERIFY_RECOVER)
			return CKR_MECHANISM_INVALID;
		if (m->pParameter != NULL || m->ulParameterLen != 0)
			return CKR_MECHANISM_PARAM_INVALID;
		return CKR_OK;
	case CKM_SHA256_HMAC_GENERAL:
		if (crypt || k == P11P_OP_SIGN_RECOVER || k == P11P_OP_VERIFY_RECOVER)
			return CKR_MECHANISM_INVALID;
		if (m->pParameter == NULL || m->ulParameterLen != sizeof(CK_ULONG))
			return CKR_MECHANISM_PARAM_INVALID;
		memcpy(&op->mac_len, m->pParameter, sizeof(CK_ULONG));
		if (op->mac_len == 0 || op->mac_len > P11P_SWKEY_HMAC_LEN)
			return CKR_MECHANISM_PARAM_INVALID;
		op->mech.pParameter = &op->mac_len;
		op->mech.ulParameterLen = sizeof(op->mac_len);
		return CKR_OK;
	default:
		return CKR_MECHANISM_INVALID;
	}
}

static unsigned kind_flag(enum p11p_op_kind k)
{
	switch (k) {
	case P11P_OP_ENCRYPT:
		return F_ENCRYPT;
	case P11P_OP_DECRYPT:
		return F_DECRYPT;
	case P11P_OP_SIGN:
		return F_SIGN;
	case P11P_OP_VERIFY:
		return F_VERIFY;
	default:
		return 0;
	}
}

/* The key material of local object h for use in c (a reference), checking `flag`. */
static CK_RV obj_key(struct p11p_call *c, CK_OBJECT_HANDLE h, unsigned flag, CK_RV invalid,
                     CK_KEY_TYPE *type, unsigned *flags, struct lkey **out)
{
	struct lfrag *lf = NULL;
	struct lobj *o;
	CK_RV rv = CKR_OK;

	*out = NULL;
	p11p_lock();
	o = obj_get_locked(c, h);
	if (o == NULL) {
		rv = invalid;
	} else if (flag != 0 && !(o->flags & flag)) {
		rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
	} else if (o->frag != NULL && o->frag->check.bad) {
		rv = CKR_FUNCTION_FAILED; /* the members' HSM keys differ */
	} else {
		*type = o->type;
		*flags = o->flags;
		if (o->key != NULL)
			*out = lkey_ref(o->key);
		else
			lf = o->frag;
	}
	p11p_unlock();
	if (rv != CKR_OK || *out != NULL)
		return rv;
	if (lf == NULL)
		return CKR_GENERAL_ERROR; /* every other object holds its key */
	return frag_key(c, lf, h, out);
}

CK_RV p11p_local_init(struct p11p_call *c, enum p11p_op_kind k, CK_MECHANISM_PTR m,
                      CK_OBJECT_HANDLE key)
{
	struct lop *op;
	CK_KEY_TYPE type;
	unsigned flags, flag = kind_flag(k);
	struct lkey *lk = NULL;
	CK_RV rv;

	if (m == NULL)
		return CKR_ARGUMENTS_BAD;
	if (c->s->ops[k].active) /* an operation of that kind on an HSM key */
		return CKR_OPERATION_ACTIVE;
	if (flag == 0) {
		/* Sign/verify recover: not with these keys. Still an invalid handle first. */
		p11p_lock();
		rv =
		    obj_get_locked(c, key) == NULL ? CKR_KEY_HANDLE_INVALID : CKR_MECHANISM_INVALID;
		p11p_unlock();
		return rv;
	}
	rv = session_local(c);
	if (rv != CKR_OK)
		return rv;
	op = &c->s->local->ops[k];
	op_clear(op);
	/* The mechanism is checked against the key's type before any HSM call. */
	p11p_lock();
	{
		struct lobj *o = obj_get_locked(c, key);

		if (o == NULL)
			rv = CKR_KEY_HANDLE_INVALID;
		else if (!(o->flags & flag))
			rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
		else
			type = o->type;
	}
	p11p_unlock();
	if (rv == CKR_OK)
		rv = op_mech(op, k, m, type);
	if (rv == CKR_OK)
		rv = obj_key(c, key, flag, CKR_KEY_HANDLE_INVALID, &type, &flags, &lk);
	if (rv != CKR_OK) {
		op_clear(op);
		return rv;
	}
	op->key = lk;
	c->s->local_ops |= 1u << k;
	return CKR_OK;
}

/* Appends multi-part input to the operation's buffer. */
static CK_RV op_feed(struct lop *op, const unsigned char *in, CK_ULONG len)
{
	op->multipart = true;
	if (len == 0)
		return CKR_OK;
	if (len > P11P_LOCAL_MULTIPART_MAX - op->len)
		return CKR_DATA_LEN_RANGE;
	if (op->len + len > op->cap) {
		size_t cap = op->cap ? op->cap : 256;
		unsigned char *nb;

		while (cap < op->len + len)
			cap *= 2;
		if (cap > P11P_LOCAL_MULTIPART_MAX)
			cap = P11P_LOCAL_MULTIPART_MAX;
		nb = p11p_malloc(cap);
		if (nb == NULL)
			return CKR_HOST_MEMORY;
		if (op->len)
			memcpy(nb, op->buf, op->len);
		if (op->buf != NULL) {
			p11p_wipe(op->buf, op->cap);
			p11p_free(op->buf);
		}
		op->buf = nb;
		op->cap = cap;
	}
	memcpy(op->buf + op->len, in, len);
	op->len += len;
	return CKR_OK;
}

static const unsigned char empty_input[1];

/* PKCS#11 5.2: a size query or a short buffer leaves the operation active. */
static CK_RV op_done(struct p11p_call *c, enum p11p_op_kind k, CK_RV rv, const void *out)
{
	if (!(rv == CKR_BUFFER_TOO_SMALL || (rv == CKR_OK && out == NULL)))
		op_end(c, k);
	return rv;
}

typedef CK_RV (*sw_out_fn)(struct p11p_swkey *, const CK_MECHANISM *, const unsigned char *,
                           CK_ULONG, unsigned char *, CK_ULONG *);

static CK_RV single(struct p11p_call *c, enum p11p_op_kind k, sw_out_fn fn, CK_BYTE_PTR in,
                    CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	struct lop *op = &c->s->local->ops[k];

	if ((in == NULL && in_len > 0) || out_len == NULL) {
		op_end(c, k);
		return CKR_ARGUMENTS_BAD;
	}
	if (op->multipart)
		return CKR_OPERATION_ACTIVE; /* started multi-part: finish it with *Final */
	return op_done(
	    c, k, fn(op->key->sw, &op->mech, in != NULL ? in : empty_input, in_len, out, out_len),
	    out);
}

static CK_RV update(struct p11p_call *c, enum p11p_op_kind k, CK_BYTE_PTR in, CK_ULONG in_len,
                    CK_BYTE_PTR out, CK_ULONG_PTR out_len, bool has_out)
{
	struct lop *op = &c->s->local->ops[k];
	CK_RV rv;

	if ((in == NULL && in_len > 0) || (has_out && out_len == NULL)) {
		op_end(c, k);
		return CKR_ARGUMENTS_BAD;
	}
	/* Buffered: no output before Final. A NULL output buffer is a size query. */
	if (has_out && out == NULL) {
		*out_len = 0;
		return CKR_OK;
	}
	rv = op_feed(op, in, in_len);
	if (rv != CKR_OK) {
		op_end(c, k);
		return rv;
	}
	if (has_out)
		*out_len = 0;
	return CKR_OK;
}

static CK_RV final(struct p11p_call *c, enum p11p_op_kind k, sw_out_fn fn, CK_BYTE_PTR out,
                   CK_ULONG_PTR out_len)
{
	struct lop *op = &c->s->local->ops[k];

	if (out_len == NULL) {
		op_end(c, k);
		return CKR_ARGUMENTS_BAD;
	}
	return op_done(
	    c, k,
	    fn(op->key->sw, &op->mech, op->len ? op->buf : empty_input, op->len, out, out_len),
	    out);
}

CK_RV p11p_local_C_Encrypt(struct p11p_call *c, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                           CK_ULONG_PTR out_len)
{
	return single(c, P11P_OP_ENCRYPT, p11p_swkey_encrypt, in, in_len, out, out_len);
}

CK_RV p11p_local_C_EncryptUpdate(struct p11p_call *c, CK_BYTE_PTR in, CK_ULONG in_len,
                                 CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	return update(c, P11P_OP_ENCRYPT, in, in_len, out, out_len, true);
}

CK_RV p11p_local_C_EncryptFinal(struct p11p_call *c, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	return final(c, P11P_OP_ENCRYPT, p11p_swkey_encrypt, out, out_len);
}

CK_RV p11p_local_C_Decrypt(struct p11p_call *c, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                           CK_ULONG_PTR out_len)
{
	return single(c, P11P_OP_DECRYPT, p11p_swkey_decrypt, in, in_len, out, out_len);
}

CK_RV p11p_local_C_DecryptUpdate(struct p11p_call *c, CK_BYTE_PTR in, CK_ULONG in_len,
                                 CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	return update(c, P11P_OP_DECRYPT, in, in_len, out, out_len, true);
}

CK_RV p11p_local_C_DecryptFinal(struct p11p_call *c, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	return final(c, P11P_OP_DECRYPT, p11p_swkey_decrypt, out, out_len);
}

CK_RV p11p_local_C_Sign(struct p11p_call *c, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR sig,
                        CK_ULONG_PTR sig_len)
{
	return single(c, P11P_OP_SIGN, p11p_swkey_sign, in, in_len, sig, sig_len);
}

CK_RV p11p_local_C_SignUpdate(struct p11p_call *c, CK_BYTE_PTR in, CK_ULONG in_len)
{
	return update(c, P11P_OP_SIGN, in, in_len, NULL, NULL, false);
}

CK_RV p11p_local_C_SignFinal(struct p11p_call *c, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	return final(c, P11P_OP_SIGN, p11p_swkey_sign, sig, sig_len);
}

CK_RV p11p_local_C_Verify(struct p11p_call *c, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR sig,
                          CK_ULONG sig_len)
{
	struct lop *op = &c->s->local->ops[P11P_OP_VERIFY];
	CK_RV rv;

	if ((in == NULL && in_len > 0) || sig == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if (op->multipart)
		return CKR_OPERATION_ACTIVE;
	else
		rv = p11p_swkey_verify(op->key->sw, &op->mech, in != NULL ? in : empty_input,
		                       in_len, sig, sig_len);
	op_end(c, P11P_OP_VERIFY);
	return rv;
}

CK_RV p11p_local_C_VerifyUpdate(struct p11p_call *c, CK_BYTE_PTR in, CK_ULONG in_len)
{
	return update(c, P11P_OP_VERIFY, in, in_len, NULL, NULL, false);
}

CK_RV p11p_local_C_VerifyFinal(struct p11p_call *c, CK_BYTE_PTR sig, CK_ULONG sig_len)
{
	struct lop *op = &c->s->local->ops[P11P_OP_VERIFY];
	CK_RV rv;

	if (sig == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else
		rv = p11p_swkey_verify(op->key->sw, &op->mech, op->len ? op->buf : empty_input,
		                       op->len, sig, sig_len);
	op_end(c, P11P_OP_VERIFY);
	return rv;
}

/* ---- attributes ---- */

struct bool_attr {
	CK_ATTRIBUTE_TYPE type;
	unsigned flag;
};

static const struct bool_attr bool_attrs[] = {
    {CKA_SENSITIVE, F_SENSITIVE},
    {CKA_EXTRACTABLE, F_EXTRACTABLE},
    {CKA_ALWAYS_SENSITIVE, F_ALWAYS_SENSITIVE},
    {CKA_NEVER_EXTRACTABLE, F_NEVER_EXTRACTABLE},
    {CKA_ENCRYPT, F_ENCRYPT},
    {CKA_DECRYPT, F_DECRYPT},
    {CKA_SIGN, F_SIGN},
    {CKA_VERIFY, F_VERIFY},
    {CKA_DERIVE, F_DERIVE},
    {CKA_PRIVATE, F_PRIVATE},
    {CKA_MODIFIABLE, F_MODIFIABLE},
    {CKA_DESTROYABLE, F_DESTROYABLE},
};

static const struct bool_attr *bool_attr(CK_ATTRIBUTE_TYPE t)
{
	for (size_t i = 0; i < sizeof(bool_attrs) / sizeof(bool_attrs[0]); i++)
		if (bool_attrs[i].type == t)
			return &bool_attrs[i];
	return NULL;
}

/*
 * One attribute of o into buf (cap bytes; buf NULL: length only). CKR_OK with
 * *len; CKR_ATTRIBUTE_SENSITIVE; CKR_ATTRIBUTE_TYPE_INVALID. Global lock held.
 */
static CK_RV obj_attr(const struct lobj *o, CK_ATTRIBUTE_TYPE t, unsigned char *tmp, size_t cap,
                      const void **val, CK_ULONG *len)
{
	const struct bool_attr *b = bool_attr(t);
	static const CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	static const CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	static const CK_MECHANISM_TYPE unavailable = CK_UNAVAILABLE_INFORMATION;
	CK_ULONG u;

	if (b != NULL) {
		*val = (o->flags & b->flag) ? &yes : &no;
		*len = sizeof(CK_BBOOL);
		return CKR_OK;
	}
	switch (t) {
	case CKA_CLASS:
		*val = &cls;
		*len = sizeof(cls);
		return CKR_OK;
	case CKA_KEY_TYPE:
		*val = &o->type;
		*len = sizeof(o->type);
		return CKR_OK;
	case CKA_TOKEN:
	case CKA_LOCAL:
	case CKA_COPYABLE:
	case CKA_WRAP:
	case CKA_UNWRAP:
	case CKA_WRAP_WITH_TRUSTED:
	case CKA_TRUSTED:
		*val = &no;
		*len = sizeof(CK_BBOOL);
		return CKR_OK;
	case CKA_LABEL:
		*val = o->label;
		*len = o->label_len;
		return CKR_OK;
	case CKA_ID:
		*val = o->id;
		*len = o->id_len;
		return CKR_OK;
	case CKA_START_DATE:
	case CKA_END_DATE:
		*val = o->label; /* empty */
		*len = 0;
		return CKR_OK;
	case CKA_KEY_GEN_MECHANISM:
		*val = &unavailable;
		*len = sizeof(unavailable);
		return CKR_OK;
	case CKA_VALUE_LEN:
		if (cap < sizeof(CK_ULONG))
			return CKR_GENERAL_ERROR;
		memcpy(tmp, &o->len, sizeof(CK_ULONG));
		*val = tmp;
		*len = sizeof(CK_ULONG);
		return CKR_OK;
	case CKA_P11PROXY_FRAGMENT_MODE:
		u = o->frag == NULL                                 ? P11PROXY_FRAGMENT_DERIVED
		    : o->frag->f->type == P11P_FRAGMENT_HSM_WRAPPED ? P11PROXY_FRAGMENT_WRAPPED
		                                                    : P11PROXY_FRAGMENT_SECURED;
		memcpy(tmp, &u, sizeof(u));
		*val = tmp;
		*len = sizeof(u);
		return CKR_OK;
	case CKA_P11PROXY_HSM_CHECK_VALUE:
		if (o->frag == NULL)
			return CKR_ATTRIBUTE_TYPE_INVALID;
		*len = 0;
		*val = tmp;
		for (size_t i = 0; i < o->slot->n_members; i++) {
			if (o->frag->check.known & (1u << i)) {
				memcpy(tmp, o->frag->check.v[i], CHECK_LEN);
				*len = CHECK_LEN;
				break;
			}
		}
		return CKR_OK;
	case CKA_VALUE:
		if ((o->flags & F_SENSITIVE) || !(o->flags & F_EXTRACTABLE) || o->key == NULL)
			return CKR_ATTRIBUTE_SENSITIVE;
		*len = cap;
		if (p11p_swkey_value(o->key->sw, tmp, len) != CKR_OK)
			return CKR_ATTRIBUTE_SENSITIVE;
		*val = tmp;
		return CKR_OK;
	default:
		return CKR_ATTRIBUTE_TYPE_INVALID;
	}
}

CK_RV p11p_local_get_attrs(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ,
                           CK_ULONG count)
{
	unsigned char tmp[P11P_SWKEY_GENERIC_MAX];
	struct lobj *o;
	CK_RV rv = CKR_OK;

	p11p_lock();
	o = obj_get_locked(c, h);
	if (o == NULL) {
		p11p_unlock();
		return CKR_OBJECT_HANDLE_INVALID;
	}
	/* PKCS#11 5.7: every attribute is processed; the worst problem is returned. */
	for (CK_ULONG i = 0; i < count; i++) {
		const void *val = NULL;
		CK_ULONG len = 0;
		CK_RV r = obj_attr(o, templ[i].type, tmp, sizeof(tmp), &val, &len);

		if (r != CKR_OK) {
			templ[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
			if (r == CKR_GENERAL_ERROR)
				r = CKR_ATTRIBUTE_TYPE_INVALID;
			if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
				rv = r;
		} else if (templ[i].pValue == NULL) {
			templ[i].ulValueLen = len;
		} else if (templ[i].ulValueLen < len) {
			templ[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
			if (rv == CKR_OK)
				rv = CKR_BUFFER_TOO_SMALL;
		} else {
			memcpy(templ[i].pValue, val, len);
			templ[i].ulValueLen = len;
		}
	}
	p11p_unlock();
	p11p_wipe(tmp, sizeof(tmp));
	return rv;
}

CK_RV p11p_local_set_attrs(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ,
                           CK_ULONG count)
{
	struct lobj *o;
	CK_RV rv = CKR_OK;

	p11p_lock();
	o = obj_get_locked(c, h);
	if (o == NULL)
		rv = CKR_OBJECT_HANDLE_INVALID;
	else if (!(o->flags & F_MODIFIABLE))
		rv = CKR_ACTION_PROHIBITED;
	/* All or nothing: check every attribute first. */
	for (CK_ULONG i = 0; rv == CKR_OK && i < count; i++) {
		if (templ[i].type != CKA_LABEL && templ[i].type != CKA_ID) {
			const void *val;
			unsigned char tmp[sizeof(CK_ULONG)];
			CK_ULONG len;
			CK_RV r = bool_attr(templ[i].type) != NULL || templ[i].type == CKA_VALUE
			              ? CKR_OK
			              : obj_attr(o, templ[i].type, tmp, sizeof(tmp), &val, &len);

			rv = r == CKR_ATTRIBUTE_TYPE_INVALID ? r : CKR_ATTRIBUTE_READ_ONLY;
		} else if (templ[i].pValue == NULL && templ[i].ulValueLen > 0) {
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
		} else if (templ[i].ulValueLen > P11P_ID_MAX) {
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
		}
	}
	for (CK_ULONG i = 0; rv == CKR_OK && i < count; i++) {
		CK_BYTE *dst = templ[i].type == CKA_LABEL ? o->label : o->id;

		if (templ[i].ulValueLen)
			memcpy(dst, templ[i].pValue, templ[i].ulValueLen);
		if (templ[i].type == CKA_LABEL)
			o->label_len = templ[i].ulValueLen;
		else
			o->id_len = templ[i].ulValueLen;
	}
	p11p_unlock();
	return rv;
}

CK_RV p11p_local_object_size(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ULONG_PTR size)
{
	CK_RV rv;

	if (size == NULL)
		return CKR_ARGUMENTS_BAD;
	p11p_lock();
	rv = obj_get_locked(c, h) != NULL ? CKR_OK : CKR_OBJECT_HANDLE_INVALID;
	p11p_unlock();
	if (rv == CKR_OK)
		*size = CK_UNAVAILABLE_INFORMATION; /* held in memory, nowhere else */
	return rv;
}

CK_RV p11p_local_destroy(struct p11p_call *c, CK_OBJECT_HANDLE h)
{
	struct lobj *o;
	CK_RV rv = CKR_OK;

	p11p_lock();
	o = obj_get_locked(c, h);
	if (o == NULL)
		rv = CKR_OBJECT_HANDLE_INVALID;
	else if (!(o->flags & F_DESTROYABLE))
		rv = CKR_ACTION_PROHIBITED; /* a configured fragment's key */
	else
		p11p_map_remove(&c->st->local->objects, 0, h);
	p11p_unlock();
	if (rv == CKR_OK)
		lobj_free(o); /* operations using it keep their own reference */
	return rv;
}

/* ---- find ---- */

static bool obj_matches(const struct lobj *o, const CK_ATTRIBUTE *templ, CK_ULONG count)
{
	unsigned char tmp[sizeof(CK_ULONG)];

	for (CK_ULONG i = 0; i < count; i++) {
		const void *val;
		CK_ULONG len;

		if (templ[i].type == CKA_VALUE ||
		    obj_attr(o, templ[i].type, tmp, sizeof(tmp), &val, &len) != CKR_OK ||
		    len != templ[i].ulValueLen ||
		    (len > 0 &&
		     (templ[i].pValue == NULL || memcmp(val, templ[i].pValue, len) != 0)))
			return false;
	}
	return true;
}

CK_RV p11p_local_find_init(struct p11p_call *c, const CK_ATTRIBUTE *templ, CK_ULONG count)
{
	struct p11p_local_session *ls;
	size_t n = 0, cap;
	CK_RV rv = session_local(c);

	if (rv != CKR_OK)
		return rv;
	ls = c->s->local;
	p11p_free(ls->found);
	ls->found = NULL;
	ls->n_found = ls->pos = 0;
	if (c->st->local == NULL)
		return CKR_OK;
	p11p_lock();
	cap = c->st->local->objects.count;
	if (cap > 0 && (ls->found = p11p_calloc(cap, sizeof(*ls->found))) == NULL)
		rv = CKR_HOST_MEMORY;
	for (size_t i = 0; rv == CKR_OK && i < c->st->local->objects.cap && n < cap; i++) {
		const struct lobj *o = c->st->local->objects.slots[i].value;

		if (o != NULL && o->slot == c->s->slot && obj_matches(o, templ, count))
			ls->found[n++] = o->handle;
	}
	p11p_unlock();
	ls->n_found = n;
	return rv;
}

CK_ULONG p11p_local_find_next(struct p11p_call *c, CK_OBJECT_HANDLE *out, CK_ULONG max)
{
	struct p11p_local_session *ls = c->s->local;
	CK_ULONG n = 0;

	if (ls == NULL || !c->s->ops[P11P_OP_FIND].active)
		return 0;
	p11p_lock();
	while (n < max && ls->pos < ls->n_found) {
		CK_OBJECT_HANDLE h = ls->found[ls->pos++];

		if (obj_get_locked(c, h) != NULL) /* not destroyed meanwhile */
			out[n++] = h;
	}
	p11p_unlock();
	return n;
}

/* ---- C_DeriveKey ---- */

struct newkey {
	CK_KEY_TYPE type;
	CK_ULONG len;
	unsigned flags;
	CK_ULONG label_len, id_len;
	const void *label, *id;
};

static CK_RV bbool(const CK_ATTRIBUTE *a, bool *out)
{
	if (a->pValue == NULL || a->ulValueLen != sizeof(CK_BBOOL))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	*out = *(const CK_BBOOL *)a->pValue != CK_FALSE;
	return CKR_OK;
}

static CK_RV ulong_attr(const CK_ATTRIBUTE *a, CK_ULONG *out)
{
	if (a->pValue == NULL || a->ulValueLen != sizeof(CK_ULONG))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	memcpy(out, a->pValue, sizeof(CK_ULONG));
	return CKR_OK;
}

/* The derived key's template: checked whole before anything is computed. */
static CK_RV parse_newkey(const CK_ATTRIBUTE *templ, CK_ULONG count, struct newkey *nk)
{
	bool have_len = false, v;
	CK_ULONG u;
	CK_RV rv;

	memset(nk, 0, sizeof(*nk));
	nk->type = CKK_GENERIC_SECRET;
	nk->flags =
	    F_SENSITIVE | F_ENCRYPT | F_DECRYPT | F_SIGN | F_VERIFY | F_MODIFIABLE | F_DESTROYABLE;
	for (CK_ULONG i = 0; i < count; i++) {
		const CK_ATTRIBUTE *a = &templ[i];
		const struct bool_attr *b = bool_attr(a->type);

		switch (a->type) {
		case CKA_CLASS:
			if ((rv = ulong_attr(a, &u)) != CKR_OK)
				return rv;
			if (u != CKO_SECRET_KEY)
				return CKR_TEMPLATE_INCONSISTENT;
			continue;
		case CKA_KEY_TYPE:
			if ((rv = ulong_attr(a, &nk->type)) != CKR_OK)
				return rv;
			if (nk->type != CKK_AES && nk->type != CKK_GENERIC_SECRET)
				return CKR_TEMPLATE_INCONSISTENT;
			continue;
		case CKA_VALUE_LEN:
			if ((rv = ulong_attr(a, &nk->len)) != CKR_OK)
				return rv;
			have_len = true;
			continue;
		case CKA_TOKEN:
		case CKA_WRAP:
		case CKA_UNWRAP:
		case CKA_COPYABLE:
		case CKA_TRUSTED:
		case CKA_WRAP_WITH_TRUSTED:
			if ((rv = bbool(a, &v)) != CKR_OK)
				return rv;
			if (v) /* never on disk; never wraps; stays one key */
				return CKR_TEMPLATE_INCONSISTENT;
			continue;
		case CKA_LABEL:
		case CKA_ID:
			if ((a->pValue == NULL && a->ulValueLen > 0) || a->ulValueLen > P11P_ID_MAX)
				return CKR_ATTRIBUTE_VALUE_INVALID;
			if (a->type == CKA_LABEL) {
				nk->label = a->pValue;
				nk->label_len = a->ulValueLen;
			} else {
				nk->id = a->pValue;
				nk->id_len = a->ulValueLen;
			}
			continue;
		case CKA_VALUE:
		case CKA_LOCAL:
		case CKA_ALWAYS_SENSITIVE:
		case CKA_NEVER_EXTRACTABLE:
		case CKA_KEY_GEN_MECHANISM:
		case CKA_P11PROXY_FRAGMENT_MODE:
			return CKR_ATTRIBUTE_READ_ONLY;
		default:
			break;
		}
		if (b == NULL)
			return CKR_ATTRIBUTE_TYPE_INVALID;
		if ((rv = bbool(a, &v)) != CKR_OK)
			return rv;
		if (v)
			nk->flags |= b->flag;
		else
			nk->flags &= ~b->flag;
	}
	if (!have_len)
		return CKR_TEMPLATE_INCOMPLETE;
	if (nk->type == CKK_AES && nk->len != 16 && nk->len != 24 && nk->len != 32)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	if (nk->len == 0 || nk->len > P11P_SWKEY_GENERIC_MAX)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	return CKR_OK;
}

static CK_RV derive_params(const CK_MECHANISM *mech, P11PROXY_FRAGMENT_DERIVE_PARAMS *p)
{
	if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(*p))
		return CKR_MECHANISM_PARAM_INVALID;
	memcpy(p, mech->pParameter, sizeof(*p));
	if (p->pFragment == NULL || p->ulFragmentLen == 0 || p->ulFragmentLen > P11P_HKDF_MAX_IKM ||
	    (p->pInfo == NULL && p->ulInfoLen > 0) || p->ulInfoLen > P11P_HKDF_MAX_INFO)
		return CKR_MECHANISM_PARAM_INVALID;
	return CKR_OK;
}

/* The per-member check values of an HSM base key (slots with several members). */
static struct lcheck *base_check(struct p11p_call *c, CK_OBJECT_HANDLE base)
{
	struct lcheck *ck;

	p11p_lock();
	ck = p11p_map_get(&c->st->local->checks, c->s->slot->id, base);
	if (ck == NULL && (ck = p11p_calloc(1, sizeof(*ck))) != NULL &&
	    p11p_map_put(&c->st->local->checks, c->s->slot->id, base, ck) < 0) {
		p11p_free(ck);
		ck = NULL;
	}
	p11p_unlock();
	return ck;
}

/* HKDF with an HSM base key, through c's member (failing over like other calls). */
static CK_RV derive_hsm(struct p11p_call *c, CK_OBJECT_HANDLE base,
                        const P11PROXY_FRAGMENT_DERIVE_PARAMS *p, CK_ULONG len,
                        unsigned *base_flags, struct p11p_secret **okm)
{
	struct lcheck *ck = NULL;
	CK_SESSION_HANDLE bs;
	bool temp;
	CK_RV rv;

	if (c->s->slot->n_members > 1 && (ck = base_check(c, base)) == NULL)
		return CKR_HOST_MEMORY;
	for (;;) {
		struct hsm_extract x;
		CK_BBOOL as = CK_FALSE, ne = CK_FALSE;
		CK_ATTRIBUTE q[] = {
		    {CKA_ALWAYS_SENSITIVE, &as, sizeof(as)},
		    {CKA_NEVER_EXTRACTABLE, &ne, sizeof(ne)},
		};

		rv = p11p_object_to_backend(c, base, CKR_KEY_HANDLE_INVALID, &x.key);
		if (rv == CKR_OK)
			rv = borrow_session(c, &bs, &temp);
		if (rv == CKR_OK) {
			x.bc = &c->bc;
			x.bs = bs;
			if (ck != NULL)
				rv = check_member(c->s->slot, ck, c->s->member, &c->bc, bs, x.key,
				                  "the base key of a fragment derivation");
			if (rv == CKR_OK)
				rv = p11p_hkdf(hsm_extract_cb, &x, p->pFragment, p->ulFragmentLen,
				               p->pInfo, p->ulInfoLen, len, okm);
			if (rv == CKR_OK) {
				*base_flags = 0;
				if (p11p_be_C_GetAttributeValue(&c->bc, bs, x.key, q, 2) ==
				    CKR_OK) {
					*base_flags |= as != CK_FALSE ? F_ALWAYS_SENSITIVE : 0;
					*base_flags |= ne != CK_FALSE ? F_NEVER_EXTRACTABLE : 0;
				}
			}
			end_session(c, bs, temp);
		}
		if (!p11p_hook_call_retry(c, &rv, true))
			break;
		p11p_secret_free(*okm);
		*okm = NULL;
	}
	return rv;
}

CK_RV p11p_local_derive(struct p11p_call *c, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base,
                        CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR out)
{
	P11PROXY_FRAGMENT_DERIVE_PARAMS p;
	struct newkey nk;
	struct p11p_secret *okm = NULL;
	struct p11p_swkey *sw = NULL;
	struct lobj *o;
	unsigned base_flags = 0;
	CK_RV rv;

	if (mech->mechanism != CKM_P11PROXY_FRAGMENT_DERIVE) {
		/* Keys the proxy holds derive only with the fragment mechanism. */
		if (p11p_local_handle(base)) {
			p11p_lock();
			rv = obj_get_locked(c, base) == NULL ? CKR_KEY_HANDLE_INVALID
			                                     : CKR_MECHANISM_INVALID;
			p11p_unlock();
			return rv;
		}
		return CKR_MECHANISM_INVALID;
	}
	rv = derive_params(mech, &p);
	if (rv == CKR_OK)
		rv = parse_newkey(templ, count, &nk);
	if (rv != CKR_OK)
		return rv;
	if (p11p_local_handle(base)) {
		struct lkey *lk = NULL;
		CK_KEY_TYPE type;

		rv = obj_key(c, base, F_DERIVE, CKR_KEY_HANDLE_INVALID, &type, &base_flags, &lk);
		if (rv == CKR_OK)
			rv = p11p_hkdf(sw_extract_cb, lk->sw, p.pFragment, p.ulFragmentLen, p.pInfo,
			               p.ulInfoLen, nk.len, &okm);
		lkey_unref(lk);
	} else {
		rv = derive_hsm(c, base, &p, nk.len, &base_flags, &okm);
	}
	if (rv != CKR_OK)
		return rv;
	rv = p11p_swkey_from_secret(nk.type, &okm,
	                            ((nk.flags & F_SENSITIVE) ? P11P_SWKEY_SENSITIVE : 0) |
	                                ((nk.flags & F_EXTRACTABLE) ? P11P_SWKEY_EXTRACTABLE : 0),
	                            &sw);
	if (rv != CKR_OK)
		return rv;
	o = p11p_calloc(1, sizeof(*o));
	if (o == NULL || (o->key = lkey_new(sw)) == NULL) {
		if (o == NULL)
			p11p_swkey_free(sw);
		p11p_free(o);
		return CKR_HOST_MEMORY;
	}
	o->slot = c->s->slot;
	o->owner = c->s->handle;
	o->type = nk.type;
	o->len = nk.len;
	/* PKCS#11 4.14: inherited from the base key and the new key's own settings. */
	o->flags = nk.flags;
	if ((nk.flags & F_SENSITIVE) && (base_flags & F_ALWAYS_SENSITIVE))
		o->flags |= F_ALWAYS_SENSITIVE;
	if (!(nk.flags & F_EXTRACTABLE) && (base_flags & F_NEVER_EXTRACTABLE))
		o->flags |= F_NEVER_EXTRACTABLE;
	o->label_len = nk.label_len;
	if (nk.label_len)
		memcpy(o->label, nk.label, nk.label_len);
	o->id_len = nk.id_len;
	if (nk.id_len)
		memcpy(o->id, nk.id, nk.id_len);
	p11p_lock();
	rv = obj_insert_locked(c->st, o);
	if (rv == CKR_OK)
		*out = o->handle;
	p11p_unlock();
	if (rv != CKR_OK)
		lobj_free(o);
	return rv;
}

/* ---- C_GenerateKey from mixed entropy ---- */

CK_RV p11p_local_generate_key(struct p11p_call *c, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR templ,
                              CK_ULONG count, CK_OBJECT_HANDLE_PTR out)
{
	const CK_ATTRIBUTE *kt, *vl, *cls;
	CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
	CK_ATTRIBUTE *t;
	CK_ULONG n = 0, len, type;
	unsigned char *value;
	CK_RV rv;

	if (mech->mechanism != CKM_P11PROXY_MIXED_KEY_GEN)
		return CKR_MECHANISM_INVALID;
	if (mech->pParameter != NULL || mech->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	kt = p11p_attr_find(templ, count, CKA_KEY_TYPE);
	vl = p11p_attr_find(templ, count, CKA_VALUE_LEN);
	cls = p11p_attr_find(templ, count, CKA_CLASS);
	if (kt == NULL || vl == NULL)
		return CKR_TEMPLATE_INCOMPLETE;
	if (p11p_attr_find(templ, count, CKA_VALUE) != NULL)
		return CKR_TEMPLATE_INCONSISTENT;
	if ((rv = ulong_attr(kt, &type)) != CKR_OK || (rv = ulong_attr(vl, &len)) != CKR_OK)
		return rv;
	if (cls != NULL) {
		CK_ULONG u;

		if ((rv = ulong_attr(cls, &u)) != CKR_OK)
			return rv;
		if (u != CKO_SECRET_KEY)
			return CKR_TEMPLATE_INCONSISTENT;
	}
	if (type != CKK_AES && type != CKK_GENERIC_SECRET)
		return CKR_TEMPLATE_INCONSISTENT;
	if ((type == CKK_AES && len != 16 && len != 24 && len != 32) || len == 0 ||
	    len > P11P_SWKEY_GENERIC_MAX)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	t = p11p_calloc(count + 2, sizeof(*t));
	value = p11p_malloc(len);
	if (t == NULL || value == NULL) {
		p11p_free(t);
		p11p_free(value);
		return CKR_HOST_MEMORY;
	}
	/* Exactly the requested attributes, less CKA_VALUE_LEN (implied by CKA_VALUE). */
	for (CK_ULONG i = 0; i < count; i++)
		if (templ[i].type != CKA_VALUE_LEN)
			t[n++] = templ[i];
	if (cls == NULL)
		t[n++] = (CK_ATTRIBUTE){CKA_CLASS, &secret, sizeof(secret)};
	rv = p11p_local_random(c, value, len);
	if (rv == CKR_OK) {
		t[n++] = (CK_ATTRIBUTE){CKA_VALUE, value, len};
		rv = p11p_object_create_in(c, t, n, out);
	}
	p11p_wipe(value, len);
	p11p_free(value);
	p11p_free(t);
	return rv;
}

void p11p_soft_register(void)
{
	P11P_SOFT_HOOKS(P11P_HOOK_SET)
}
