/*
 * Virtual keys (issue 4): the module's side of the index (index/index.h).
 *
 * Binding. A proxy object that is a token key (CKA_TOKEN true; a secret,
 * private or public key) on a slot with virtual keys is bound to the index
 * record with the same (virtual slot label, class, CKA_ID, CKA_LABEL); the
 * binding (record id and identity) is cached in the proxy object, so the
 * per-call checks read no attribute. Other objects pass through. When several
 * records share an identity the best is taken: not deleted, then origin
 * created, then the lowest id (every process picks the same one). Two HSM
 * keys sharing an identity are one virtual key, except that a key created
 * through this process stays bound to its own record.
 *
 * Lazy import. A token key with no record is imported when first met (a
 * find, or any use of a handle) under `scan: all`: origin scanned, state
 * active, the HSM key's own permissions (attributes its class lacks count as
 * not granted), presence = the member it was met on; one index transaction
 * per find chunk. Under `scan: owned` it stays hidden: finds skip it and its
 * handle answers CKR_KEY_HANDLE_INVALID / CKR_OBJECT_HANDLE_INVALID. A key
 * whose CKA_ID or CKA_LABEL is too long for the index, or whose import
 * failed, is hidden too (fail closed; the failure is logged). When two
 * processes import one key at once, the later transaction yields: it deletes
 * its own record and binds to the earlier one.
 *
 * Enforcement (p11p_vkey_use): deleted -> CKR_KEY_HANDLE_INVALID;
 * deactivated -> P11PROXY_CKR_KEY_DEACTIVATED; a permission the virtual key
 * lacks -> CKR_KEY_FUNCTION_NOT_PERMITTED, whatever the HSM key allows.
 *
 * Other processes' changes: the store is refreshed (PRAGMA data_version or a
 * PostgreSQL notice when nothing changed) every P11P_VKEY_REFRESH_MS by the
 * probe thread (p11p_vkeys_poll()), or by a call when there is no such thread
 * or it is a period late: the hot path does not wait for the store.
 *
 * The rules (the permissions each key class has, the record made from a
 * key's attributes, what write_back and scan decide) are the key model's,
 * vkeys/model.h, which the CLI uses too; this file applies them.
 *
 * Locks: the global lock guards the objects' bindings; it is never held
 * across an index call (writes fdatasync) nor a backend call.
 */
#include "vkeys/vkeys.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/names.h"
#include "keymodel/model.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* A put with a stale revision is retried this often (each retry re-reads). */
#define PUT_RETRIES 16

struct p11p_vkeys {
	struct p11p_index *idx;
	_Atomic unsigned long long next_refresh_ms;
	atomic_bool refresh_failed; /* reported once until a refresh works again */
	/*
	 * The probe thread refreshes (p11p_vkeys_poll()): calls refresh only
	 * when it is a period late (busy with a slow probe), so that the hot path
	 * does not wait for the store.
	 */
	atomic_bool background;
};

/* The usage attributes (the key model: vkeys/model.h has the table by class). */
#define N_PERMS P11P_VK_NPERMS

/* ---- state ---- */

CK_RV p11p_vkey_state_init(struct p11p_state *st)
{
	const struct p11p_config *cfg = p11p_sthead(st)->cfg;
	struct p11p_vslot *vs;
	struct p11p_vkeys *vk;
	struct stat sb;
	char err[512];
	CK_RV rv;

	p11p_sthead(st)->vkeys = NULL;
	/* The policy's cache, per slot (vkeys.h), whether or not virtual keys are on. */
	for (size_t i = 0; (vs = p11p_state_slot(st, i)) != NULL; i++) {
		p11p_vhead(vs)->vk = p11p_calloc(1, sizeof(*p11p_vhead(vs)->vk));
		if (p11p_vhead(vs)->vk == NULL)
			return CKR_HOST_MEMORY; /* the state is freed: p11p_vkey_state_free() */
	}
	if (cfg->index_path == NULL || cfg->index_path[0] == '\0') {
		p11p_debug(P11P_DBG_OBJECT, "virtual keys off: no index path");
		return CKR_OK;
	}
	if (!cfg->index_explicit &&
	    (cfg->state_dir == NULL || stat(cfg->state_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
		p11p_debug(P11P_DBG_OBJECT, "virtual keys off: state directory %s is not there",
		           cfg->state_dir ? cfg->state_dir : "(none)");
		return CKR_OK;
	}
	vk = p11p_calloc(1, sizeof(*vk));
	if (vk == NULL)
		return CKR_HOST_MEMORY;
	err[0] = '\0';
	rv = p11p_index_open(cfg->index_path, &vk->idx, err, sizeof(err));
	if (rv != CKR_OK) {
		p11p_message("%s", err[0] ? err : "cannot open the virtual-key index");
		p11p_free(vk);
		return rv == CKR_HOST_MEMORY ? rv : CKR_GENERAL_ERROR;
	}
	atomic_init(&vk->next_refresh_ms, p11p_now_ms() + P11P_VKEY_REFRESH_MS);
	atomic_init(&vk->refresh_failed, false);
	p11p_sthead(st)->vkeys = vk;
	p11p_debug(P11P_DBG_OBJECT, "virtual keys: index %s", cfg->index_path);
	return CKR_OK;
}

void p11p_vkey_state_free(struct p11p_state *st)
{
	struct p11p_vslot *vs;

	for (size_t i = 0; (vs = p11p_state_slot(st, i)) != NULL; i++) {
		p11p_free(p11p_vhead(vs)->vk);
		p11p_vhead(vs)->vk = NULL;
	}
	if (p11p_sthead(st)->vkeys == NULL)
		return;
	p11p_index_close(p11p_sthead(st)->vkeys->idx);
	p11p_free(p11p_sthead(st)->vkeys);
	p11p_sthead(st)->vkeys = NULL;
}

struct p11p_index *p11p_vkey_index(struct p11p_state *st)
{
	return st != NULL && p11p_sthead(st)->vkeys != NULL ? p11p_sthead(st)->vkeys->idx : NULL;
}

P11P_INTERNAL struct p11p_vkbind p11p_vkbind_none;

/* The binding in an object's slot (*vkp): NULL when not a virtual key, or not looked at yet. */
static inline struct p11p_vkbind *vk_bind(struct p11p_vkbind *const *vkp)
{
	return *vkp != &p11p_vkbind_none ? *vkp : NULL;
}

static inline bool vk_known(struct p11p_vkbind *const *vkp)
{
	return *vkp != NULL;
}

void p11p_vkey_object_free(struct p11p_vkbind **vkp)
{
	p11p_objects_changed_locked();
	p11p_free(vk_bind(vkp));
	*vkp = NULL;
}

/* s's data of this room, made on first use; NULL: no memory (nothing is cached then). */
static struct p11p_vk_session *vk_session(struct p11p_session *s)
{
	if (p11p_shead(s)->vk == NULL)
		p11p_shead(s)->vk = p11p_calloc(1, sizeof(*p11p_shead(s)->vk));
	return p11p_shead(s)->vk;
}

void p11p_vkey_session_reset(struct p11p_session *s)
{
	if (p11p_shead(s)->vk != NULL)
		memset(p11p_shead(s)->vk, 0, sizeof(*p11p_shead(s)->vk));
}

void p11p_vkey_session_free(struct p11p_session *s)
{
	p11p_free(p11p_shead(s)->vk);
	p11p_shead(s)->vk = NULL;
}

/* The index for the call's slot, or NULL: virtual keys off (or a slot without a label). */
static struct p11p_vkeys *slot_vkeys(const struct p11p_call *c)
{
	return p11p_sthead(c->st)->vkeys != NULL &&
	               p11p_vhead(p11p_shead(c->s)->slot)->label[0] != '\0'
	           ? p11p_sthead(c->st)->vkeys
	           : NULL;
}

static void index_error(struct p11p_vkeys *vk, char *buf, size_t len)
{
	p11p_index_last_error(vk->idx, buf, len);
	if (buf[0] == '\0')
		snprintf(buf, len, "virtual-key index error");
}

/* Picks up other processes' changes, at most once per P11P_VKEY_REFRESH_MS. */
#define P11P_VKEY_LATE_EVERY 64 /* a power of two */
static void vk_refresh_due(struct p11p_vkeys *vk, unsigned long long now, unsigned long long due);

static void vk_refresh(struct p11p_vkeys *vk)
{
	static _Thread_local unsigned calls __attribute__((tls_model("initial-exec")));
	unsigned long long due, now;
	struct timespec ts;

	/*
	 * With the probe thread polling (p11p_vkeys_poll), the call path only
	 * covers for a poller a period late: a look at the clock on one call in
	 * P11P_VKEY_LATE_EVERY of this thread is enough for that.
	 */
	if (atomic_load_explicit(&vk->background, memory_order_relaxed) &&
	    (++calls & (P11P_VKEY_LATE_EVERY - 1)) != 0)
		return;
	due = atomic_load_explicit(&vk->next_refresh_ms, memory_order_relaxed);
	/*
	 * Once per call with virtual keys: the coarse clock (the same clock as
	 * p11p_now_ms()'s, read to the last tick) is cheaper, and a tick is
	 * nothing against P11P_VKEY_REFRESH_MS.
	 */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = (unsigned long long)ts.tv_sec * 1000ULL + (unsigned long long)ts.tv_nsec / 1000000ULL;
	if (now >= due + (atomic_load_explicit(&vk->background, memory_order_relaxed)
	                      ? P11P_VKEY_REFRESH_MS
	                      : 0))
		vk_refresh_due(vk, now, due);
}

unsigned long long p11p_vkeys_poll(struct p11p_state *st)
{
	struct p11p_vkeys *vk = p11p_sthead(st)->vkeys;
	unsigned long long now = p11p_now_ms(), due;

	if (vk == NULL)
		return ~0ULL;
	atomic_store(&vk->background, true);
	due = atomic_load(&vk->next_refresh_ms);
	if (now >= due)
		vk_refresh_due(vk, now, due);
	return atomic_load(&vk->next_refresh_ms);
}

/* vk_refresh() when the period is over. */
static void vk_refresh_due(struct p11p_vkeys *vk, unsigned long long now, unsigned long long due)
{
	char err[512];

	/* One thread per period does it; the others go on with what is loaded. */
	if (!atomic_compare_exchange_strong(&vk->next_refresh_ms, &due, now + P11P_VKEY_REFRESH_MS))
		return;
	if (p11p_index_refresh(vk->idx) == CKR_OK) {
		atomic_store(&vk->refresh_failed, false);
		return;
	}
	/* The handle keeps what it loaded last; said once until it works again. */
	if (!atomic_exchange(&vk->refresh_failed, true)) {
		index_error(vk, err, sizeof(err));
		p11p_message("virtual keys: cannot re-read the index (using what was read "
		             "before): %s",
		             err);
	}
}

/* Index write errors as the application sees them. */
static CK_RV write_error(struct p11p_vkeys *vk, const char *what, CK_RV rv)
{
	char err[512];

	if (rv == CKR_HOST_MEMORY)
		return rv;
	index_error(vk, err, sizeof(err));
	p11p_message("virtual keys: %s: %s", what, err);
	return CKR_FUNCTION_FAILED;
}

/* ---- reading a backend key ---- */

struct keyinfo {
	bool token_key;
	struct p11p_vkbind b;
	CK_KEY_TYPE key_type;
	uint32_t perms; /* the HSM key's usage flags that are true (p11p_vk_usage_read) */
};

/* What the binding needs of backend object bh (on the call's member). */
static CK_RV read_key(struct p11p_call *c, CK_OBJECT_HANDLE bh, struct keyinfo *k)
{
	CK_OBJECT_CLASS cls = 0;
	CK_BBOOL tok = CK_FALSE, v[N_PERMS];
	CK_KEY_TYPE kt = 0;
	CK_ATTRIBUTE a[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &tok, sizeof(tok)}};
	CK_ATTRIBUTE b[3] = {
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_ID, k->b.id, sizeof(k->b.id)},
	    {CKA_LABEL, k->b.label, sizeof(k->b.label)},
	};
	CK_ATTRIBUTE p[N_PERMS];
	CK_RV rv;

	k->token_key = false;
	k->b.unrecordable = false;
	k->perms = 0;
	rv = p11p_be_C_GetAttributeValue(&c->bc, c->bs, bh, a, 2);
	if (rv != CKR_OK)
		return rv;
	if (a[0].ulValueLen != sizeof(cls) || a[1].ulValueLen != sizeof(tok))
		return CKR_GENERAL_ERROR; /* the backend broke the contract */
	if (tok == CK_FALSE || !p11p_vk_is_key_class(cls))
		return CKR_OK;
	k->token_key = true;
	k->b.vid = 0;
	k->b.cls = cls;
	rv = p11p_be_C_GetAttributeValue(&c->bc, c->bs, bh, b, 3);
	if (rv == CKR_BUFFER_TOO_SMALL) {
		k->b.unrecordable = true;
		k->b.id_len = k->b.label_len = 0;
		return CKR_OK;
	}
	if (rv != CKR_OK)
		return rv;
	if (b[0].ulValueLen != sizeof(kt) || b[1].ulValueLen > sizeof(k->b.id) ||
	    b[2].ulValueLen > sizeof(k->b.label))
		return CKR_GENERAL_ERROR;
	k->key_type = kt;
	k->b.id_len = b[1].ulValueLen;
	k->b.label_len = b[2].ulValueLen;
	p11p_vk_usage_template(P11P_VK_ALL, 0, p, v);
	/* Attributes the class lacks come back unavailable: not granted. */
	rv = p11p_be_C_GetAttributeValue(&c->bc, c->bs, bh, p, N_PERMS);
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE)
		return rv;
	k->perms = p11p_vk_usage_read(p, N_PERMS);
	return CKR_OK;
}

/* One boolean attribute of backend object bh: 1 true, 0 false, -1 unknown. */
static int read_bool(struct p11p_call *c, CK_OBJECT_HANDLE bh, CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL v = CK_FALSE;
	CK_ATTRIBUTE a = {type, &v, sizeof(v)};

	if (p11p_be_C_GetAttributeValue(&c->bc, c->bs, bh, &a, 1) != CKR_OK ||
	    a.ulValueLen != sizeof(v))
		return -1;
	return v != CK_FALSE;
}

/* ---- records ---- */

/*
 * The best record of identity b on slot, other than `except` (0: none):
 * *found says whether there is one.
 */
static CK_RV lookup(struct p11p_vkeys *vk, const char *slot, const struct p11p_vkbind *b,
                    uint64_t except, struct p11p_vkey *best, bool *found)
{
	struct p11p_vkey_match m = {
	    .slot = slot,
	    .has_class = true,
	    .cls = b->cls,
	    .has_ck_id = true,
	    .ck_id = b->id,
	    .ck_id_len = b->id_len,
	    .has_label = true,
	    .label = b->label,
	    .label_len = b->label_len,
	};
	struct p11p_vkey small[4], *all = small;
	size_t count = 0, max = 4;
	CK_RV rv;

	*found = false;
	rv = p11p_index_find(vk->idx, &m, small, max, &count);
	if (rv != CKR_OK)
		return rv;
	if (count > max) {
		max = count;
		all = p11p_calloc(max, sizeof(*all));
		if (all == NULL)
			return CKR_HOST_MEMORY;
		rv = p11p_index_find(vk->idx, &m, all, max, &count);
		if (rv != CKR_OK)
			goto out;
	}
	if (count > max)
		count = max; /* grew in between (a refresh in another thread): the rest next time */
	for (size_t i = 0; i < count; i++) {
		if (all[i].vid == except)
			continue;
		if (!*found || p11p_vk_record_better(&all[i], best))
			*best = all[i];
		*found = true;
	}
out:
	if (all != small)
		p11p_free(all);
	return rv;
}

/*
 * Read, change, put with the revision read; a conflict (another writer got
 * there first: the put applied its commit) goes round again.
 */
typedef void (*rec_edit_fn)(struct p11p_vkey *r, const void *arg);

static CK_RV update_record(struct p11p_vkeys *vk, uint64_t vid, rec_edit_fn edit, const void *arg)
{
	for (int i = 0; i < PUT_RETRIES; i++) {
		struct p11p_vkey r;
		bool found = false;
		CK_RV rv = p11p_index_get(vk->idx, vid, &r, &found);

		if (rv != CKR_OK)
			return rv;
		if (!found)
			return CKR_OBJECT_HANDLE_INVALID; /* removed by another process meanwhile */
		edit(&r, arg);
		rv = p11p_index_put(vk->idx, &r);
		if (rv == CKR_OK)
			return CKR_OK;
		if (rv != P11P_INDEX_CONFLICT)
			return write_error(vk, "cannot update a virtual key", rv);
	}
	p11p_message("virtual keys: a record kept changing under an update; gave up");
	return CKR_FUNCTION_FAILED;
}

/* The record of a key read with read_key() (the key model's record_new). */
static CK_RV fill_record(struct p11p_vkey *r, struct p11p_vslot *vs, const struct keyinfo *k,
                         enum p11p_vk_origin origin, uint32_t limit, uint32_t presence)
{
	const struct p11p_vk_key key = {
	    .cls = k->b.cls,
	    .key_type = k->key_type,
	    .id = k->b.id,
	    .id_len = k->b.id_len,
	    .label = k->b.label,
	    .label_len = k->b.label_len,
	    .usage = k->perms,
	};

	return p11p_vk_record_new(r, p11p_vhead(vs)->label, &key, limit, origin, presence)
	           ? CKR_OK
	           : CKR_GENERAL_ERROR;
}

/* ---- bindings ---- */

/* Sets an object's binding (b NULL: not a virtual key). Global lock held. false: no memory. */
static bool set_bind_locked(struct p11p_vkbind **vkp, const struct p11p_vkbind *b)
{
	p11p_objects_changed_locked();
	if (b == NULL) {
		p11p_free(vk_bind(vkp));
		*vkp = &p11p_vkbind_none;
		return true;
	}
	if (vk_bind(vkp) == NULL) {
		struct p11p_vkbind *nb = p11p_malloc(sizeof(*nb));

		if (nb == NULL)
			return false;
		*vkp = nb;
	}
	**vkp = *b;
	return true;
}

/*
 * After importing r: when an earlier transaction (another process or
 * thread) recorded the same key, r yields to it (deleted); the id to bind to.
 */
static uint64_t settle_import(struct p11p_vkeys *vk, const struct p11p_vkey *r)
{
	struct p11p_vkbind b = {.cls = r->cls, .id_len = r->ck_id_len, .label_len = r->label_len};
	struct p11p_vkey other;
	bool found = false;

	memcpy(b.id, r->ck_id, r->ck_id_len);
	memcpy(b.label, r->label, r->label_len);
	if (lookup(vk, r->slot, &b, r->vid, &other, &found) != CKR_OK || !found)
		return r->vid;
	if (p11p_index_delete(vk->idx, r->vid, NULL) != CKR_OK)
		return r->vid; /* both stay; every process binds to the better one */
	return other.vid;
}

enum pend_what { P_SKIP, P_NOTKEY, P_BOUND, P_NEW };

struct pend {
	CK_OBJECT_HANDLE ph;
	enum pend_what what;
	size_t rec; /* P_NEW: its record in recs[] */
	struct keyinfo k;
};

/*
 * Binds the proxy objects ph[0..n) of the call's slot not bound yet: reads
 * them, finds their records, imports the new ones under `scan: all` in one
 * transaction. *err: the first error met (the objects it concerns stay
 * unbound; other objects are bound). Returns the first error of the member
 * reading them that p11p_call_retry() acts on (a member failing), else CKR_OK.
 */
static CK_RV bind_objects(struct p11p_call *c, const CK_OBJECT_HANDLE *ph, size_t n, CK_RV *err)
{
	struct p11p_vkeys *vk = slot_vkeys(c);
	struct p11p_vslot *vs = p11p_shead(c->s)->slot;
	struct p11p_policy_cfg pol;
	struct p11p_vkey *recs = NULL;
	struct pend *p;
	size_t np = 0, nrec = 0;
	CK_RV rv, failed = CKR_OK;

	*err = CKR_OK;
	if (vk == NULL || n == 0)
		return CKR_OK;
	p = p11p_calloc(n, sizeof(*p));
	if (p == NULL) {
		*err = CKR_HOST_MEMORY;
		return CKR_OK;
	}
	p11p_lock();
	for (size_t i = 0; i < n; i++) {
		struct p11p_vkbind **vkp = p11p_object_vk_locked(c->st, ph[i], vs);

		if (vkp != NULL && !vk_known(vkp))
			p[np++].ph = ph[i];
	}
	p11p_unlock();
	if (np == 0)
		goto out;
	p11p_policy_get(c->st, vs, &pol);
	for (size_t i = 0; i < np; i++) {
		CK_OBJECT_HANDLE bh;
		struct p11p_vkey best;
		bool found = false;

		rv = p11p_object_to_backend(c, p[i].ph, CKR_OBJECT_HANDLE_INVALID, &bh);
		if (rv == CKR_OK)
			rv = read_key(c, bh, &p[i].k);
		if (failed == CKR_OK && p11p_rv_needs_failover(c->m, rv))
			failed = rv;
		if (rv == CKR_OK && p[i].k.token_key && !p[i].k.b.unrecordable)
			rv = lookup(vk, p11p_vhead(vs)->label, &p[i].k.b, 0, &best, &found);
		if (rv != CKR_OK) {
			p[i].what = P_SKIP;
			if (*err == CKR_OK)
				*err = rv;
			continue;
		}
		if (!p[i].k.token_key) {
			p[i].what = P_NOTKEY;
		} else if (found) {
			p[i].k.b.vid = best.vid;
			p[i].what = P_BOUND;
		} else if (p11p_vk_on_unrecorded(&pol, !p[i].k.b.unrecordable) == P11P_VK_IMPORT) {
			p[i].what = P_NEW;
			p[i].rec = nrec++;
		} else {
			p[i].what = P_BOUND; /* vid 0: hidden */
			if (p[i].k.b.unrecordable)
				p11p_debug(P11P_DBG_OBJECT,
				           "slot '%s': a key's CKA_ID or CKA_LABEL is too long for "
				           "the index: hidden",
				           p11p_vhead(vs)->label);
		}
	}
	if (nrec > 0) {
		uint32_t presence = p11p_shead(c->s)->member < P11P_INDEX_MAX_MEMBERS
		                        ? 1u << p11p_shead(c->s)->member
		                        : 0;

		recs = p11p_calloc(nrec, sizeof(*recs));
		rv = recs == NULL ? CKR_HOST_MEMORY : CKR_OK;
		for (size_t i = 0; rv == CKR_OK && i < np; i++)
			if (p[i].what == P_NEW)
				rv = fill_record(&recs[p[i].rec], vs, &p[i].k, P11P_VK_SCANNED,
				                 P11P_VK_ALL, presence);
		if (rv == CKR_OK)
			rv = p11p_index_put_batch(vk->idx, recs, nrec);
		if (rv != CKR_OK) {
			/* Fail closed: the keys stay hidden; the next use tries again. */
			write_error(vk, "cannot import keys met in the slot (they stay hidden)",
			            rv);
			if (*err == CKR_OK)
				*err = rv == CKR_HOST_MEMORY ? rv : CKR_FUNCTION_FAILED;
		}
		for (size_t i = 0; i < np; i++) {
			if (p[i].what != P_NEW)
				continue;
			p[i].what = P_BOUND;
			p[i].k.b.vid = rv == CKR_OK ? settle_import(vk, &recs[p[i].rec]) : 0;
		}
		if (rv == CKR_OK)
			p11p_debug(P11P_DBG_OBJECT, "slot '%s': imported %zu key(s) (scan: all)",
			           p11p_vhead(vs)->label, nrec);
	}
	p11p_lock();
	for (size_t i = 0; i < np; i++) {
		struct p11p_vkbind **vkp;

		if (p[i].what == P_SKIP)
			continue;
		vkp = p11p_object_vk_locked(c->st, p[i].ph, NULL);
		if (vkp == NULL || vk_known(vkp))
			continue;
		if (!set_bind_locked(vkp, p[i].what == P_NOTKEY ? NULL : &p[i].k.b) &&
		    *err == CKR_OK)
			*err = CKR_HOST_MEMORY;
	}
	p11p_unlock();
out:
	p11p_free(recs);
	p11p_free(p);
	return failed;
}

enum vk_kind {
	VK_NONE,   /* not a virtual key (or not a handle of this slot): pass through */
	VK_HIDDEN, /* a token key without a record: not imported */
	VK_BOUND,  /* *rec: its record */
	VK_ERROR,  /* *err */
};

static enum vk_kind resolve_locking(struct p11p_call *c, struct p11p_vkeys *vk, CK_OBJECT_HANDLE h,
                                    struct p11p_vkey *rec, CK_RV *err);

/*
 * The virtual key behind proxy handle h, bound on first sight. No lock held.
 * VK_BOUND: *rec has the fields the checks read (vid, cls, perms, state), and
 * no other: the index fills only those.
 */
static enum vk_kind resolve(struct p11p_call *c, CK_OBJECT_HANDLE h, struct p11p_vkey *rec,
                            CK_RV *err)
{
	struct p11p_vkeys *vk = slot_vkeys(c);
	struct p11p_vk_session *vks = p11p_shead(c->s)->vk;

	*err = CKR_OK;
	if (vk == NULL)
		return VK_NONE;
	vk_refresh(vk);
	/*
	 * The record this session read last, binding and index unchanged since: no
	 * lock. (igen 0, nothing cached, never equals the index's generation,
	 * which starts at 1.)
	 */
	if (vks != NULL && h == vks->h && vks->gen == p11p_objects_gen() &&
	    vks->igen == p11p_index_gen(vk->idx)) {
		rec->vid = vks->vid;
		rec->cls = vks->cls;
		rec->perms = vks->perms;
		rec->state = (enum p11p_vk_state)vks->state;
		return VK_BOUND;
	}
	return resolve_locking(c, vk, h, rec, err);
}

/* resolve() from the tables and the index, under their locks. */
static enum vk_kind resolve_locking(struct p11p_call *c, struct p11p_vkeys *vk, CK_OBJECT_HANDLE h,
                                    struct p11p_vkey *rec, CK_RV *err)
{
	struct p11p_vk_session *vks = vk_session(c->s);
	struct p11p_vslot *vs = p11p_shead(c->s)->slot;

	for (int attempt = 0; attempt < 3; attempt++) {
		struct p11p_vkbind **vkp;
		struct p11p_vkbind b;
		struct p11p_policy_cfg pol;
		struct p11p_vkey best;
		bool known, have, found = false, import;
		uint64_t vid = 0;
		unsigned long igen;
		CK_RV rv;

		/* The binding this session saw last, unchanged since: no lock. */
		if (vks != NULL && h == vks->h && vks->kind != 0 &&
		    vks->gen == p11p_objects_gen()) {
			known = true;
			have = vks->kind == 2;
			vid = vks->vid;
			goto bound;
		}
		p11p_lock();
		vkp = p11p_object_vk_locked(c->st, h, vs);
		if (vkp == NULL) {
			p11p_unlock();
			return VK_NONE; /* the caller reports the bad handle */
		}
		known = vk_known(vkp);
		have = vk_bind(vkp) != NULL;
		if (have)
			vid = (*vkp)->vid;
		if (known && vks != NULL) {
			unsigned long gen = p11p_objects_gen();
			int kind = have ? 2 : 1;

			/* The record read is kept only for the binding it was read for. */
			if (vks->h != h || vks->gen != gen || vks->kind != kind || vks->vid != vid)
				vks->igen = 0;
			vks->h = h;
			vks->gen = gen;
			vks->kind = kind;
			vks->vid = vid;
		}
		p11p_unlock();
	bound:
		if (!known) {
			(void)bind_objects(c, &h, 1, err); /* *err has the member's error too */
			continue;
		}
		if (!have)
			return VK_NONE;
		if (vid != 0) {
			rv = p11p_index_get_brief(vk->idx, vid, rec, &found, &igen);
			if (rv != CKR_OK) {
				*err = rv;
				return VK_ERROR;
			}
			if (found && vks != NULL && h == vks->h && vks->kind == 2 &&
			    vks->vid == vid) {
				vks->igen = igen;
				vks->cls = rec->cls;
				vks->perms = rec->perms;
				vks->state = rec->state;
			}
			if (found)
				return VK_BOUND;
		}
		/* No record (not imported, or removed by another process): look again. */
		p11p_lock();
		vkp = p11p_object_vk_locked(c->st, h, NULL);
		if (vkp == NULL || vk_bind(vkp) == NULL) {
			p11p_unlock();
			continue;
		}
		b = **vkp;
		p11p_unlock();
		rv = b.unrecordable ? CKR_OK
		                    : lookup(vk, p11p_vhead(vs)->label, &b, 0, &best, &found);
		if (rv != CKR_OK) {
			*err = rv;
			return VK_ERROR;
		}
		p11p_policy_get(c->st, vs, &pol);
		import = p11p_vk_on_unrecorded(&pol, !b.unrecordable) == P11P_VK_IMPORT;
		p11p_lock();
		vkp = p11p_object_vk_locked(c->st, h, NULL);
		if (vkp != NULL && vk_bind(vkp) != NULL && (*vkp)->vid == vid) {
			p11p_objects_changed_locked();
			if (found)
				(*vkp)->vid = best.vid;
			else if (import)
				p11p_vkey_object_free(vkp); /* read again and import */
			else
				(*vkp)->vid = 0;
		}
		p11p_unlock();
		if (!found && !import)
			return VK_HIDDEN;
	}
	/* Still unbound: a read failed, or the import did (fail closed). */
	if (*err != CKR_OK)
		return VK_ERROR;
	return VK_HIDDEN;
}

/* ---- the hooks ---- */

struct p11p_index *p11p_vkey_index_fresh(struct p11p_state *st)
{
	if (st == NULL || p11p_sthead(st)->vkeys == NULL)
		return NULL;
	vk_refresh(p11p_sthead(st)->vkeys);
	return p11p_vkey_index(st);
}

CK_RV p11p_vkey_use(struct p11p_call *c, CK_OBJECT_HANDLE key, unsigned perm)
{
	static struct p11p_ratelimit refused; /* an application may retry in a loop */
	struct p11p_vkey rec;
	char ops[96];
	CK_RV err, rv;

	if (p11p_sthead(c->st)->vkeys == NULL || key == CK_INVALID_HANDLE || p11p_local_handle(key))
		return CKR_OK;
	switch (resolve(c, key, &rec, &err)) {
	case VK_NONE:
		return CKR_OK;
	case VK_HIDDEN:
		return CKR_KEY_HANDLE_INVALID;
	case VK_ERROR:
		return err;
	case VK_BOUND:
		break;
	}
	rv = p11p_vk_use_check(&rec, perm);
	if (rv != CKR_OK) {
		bool state = rec.state == P11P_VK_DEACTIVATED || rec.state == P11P_VK_DELETED;

		/* rec holds what the check reads (vid, class, permissions, state): no label. */
		p11p_message_limited(&refused, "slot '%s': key %016llx refused: %s%s",
		                     p11p_vhead(p11p_shead(c->s)->slot)->label,
		                     (unsigned long long)rec.vid,
		                     state ? p11p_vk_state_name(rec.state)
		                           : p11p_vk_perm_list_str(perm, " ", ops, sizeof(ops)),
		                     state ? "" : " not permitted");
	}
	return rv;
}

/*
 * The live virtual key of object h, for the object functions: 1 (*rec set);
 * 0 h is not a virtual key; -1 settled, with *rv (hidden or deleted:
 * CKR_OBJECT_HANDLE_INVALID, or the index's error).
 */
static int live_record(struct p11p_call *c, CK_OBJECT_HANDLE h, struct p11p_vkey *rec, CK_RV *rv)
{
	CK_RV err;

	switch (resolve(c, h, rec, &err)) {
	case VK_NONE:
		return 0;
	case VK_ERROR:
		*rv = err;
		return -1;
	case VK_HIDDEN:
		*rv = CKR_OBJECT_HANDLE_INVALID;
		return -1;
	case VK_BOUND:
		break;
	}
	if (rec->state == P11P_VK_DELETED) {
		*rv = CKR_OBJECT_HANDLE_INVALID;
		return -1;
	}
	return 1;
}

void p11p_vkey_attrs_out(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ,
                         CK_ULONG count, CK_RV *rv)
{
	struct p11p_vkey rec;

	/* The core calls it only with virtual keys on (c->st->vkeys set). */
	if (templ == NULL)
		return;
	/* Only answers that filled the template. */
	if (*rv != CKR_OK && *rv != CKR_ATTRIBUTE_SENSITIVE && *rv != CKR_ATTRIBUTE_TYPE_INVALID &&
	    *rv != CKR_BUFFER_TOO_SMALL)
		return;
	switch (live_record(c, h, &rec, rv)) {
	case 0:
	case -1:
		return;
	}
	for (CK_ULONG i = 0; i < count; i++) {
		int v = p11p_vk_maybe_usage(templ[i].type) ? p11p_vk_attr_value(&rec, templ[i].type)
		                                           : -1;

		/* Where the member gave the HSM key's value, the virtual key's goes instead. */
		if (v >= 0 && templ[i].pValue != NULL && templ[i].ulValueLen == sizeof(CK_BBOOL))
			*(CK_BBOOL *)templ[i].pValue = v ? CK_TRUE : CK_FALSE;
	}
}

CK_RV p11p_vkey_find_init(struct p11p_call *c, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                          CK_ATTRIBUTE **btempl, CK_ULONG *bcount)
{
	struct p11p_session *s = c->s;
	uint32_t mask = 0, want = 0;
	CK_ULONG strip = 0, j = 0;
	bool none = false;
	CK_ATTRIBUTE *out;

	*btempl = templ;
	*bcount = count;
	if (p11p_shead(s)->vk != NULL) {
		p11p_shead(s)->vk->find_mask = p11p_shead(s)->vk->find_want = 0;
		p11p_shead(s)->vk->find_none = false;
	}
	if (slot_vkeys(c) == NULL)
		return CKR_OK;
	for (CK_ULONG i = 0; i < count; i++) {
		uint32_t bit = p11p_vk_find_attr(&templ[i]);
		bool val;

		/* A malformed one stays in the member's find, which answers for it. */
		if (bit == 0)
			continue;
		val = *(const CK_BBOOL *)templ[i].pValue != CK_FALSE;
		if ((mask & bit) != 0 && ((want & bit) != 0) != val)
			none = true; /* CKA_SIGN true and false: nothing matches */
		mask |= bit;
		if (val)
			want |= bit;
		strip++;
	}
	if (strip == 0)
		return CKR_OK;
	out = p11p_calloc(count, sizeof(*out));
	if (out == NULL || vk_session(s) == NULL) {
		p11p_free(out);
		return CKR_HOST_MEMORY;
	}
	for (CK_ULONG i = 0; i < count; i++)
		if (p11p_vk_find_attr(&templ[i]) == 0)
			out[j++] = templ[i];
	*btempl = out;
	*bcount = j;
	p11p_shead(s)->vk->find_mask = mask;
	p11p_shead(s)->vk->find_want = want;
	p11p_shead(s)->vk->find_none = none;
	return CKR_OK;
}

CK_RV p11p_vkey_find_chunk(struct p11p_call *c, const CK_OBJECT_HANDLE *ph, size_t n)
{
	CK_RV err;

	/*
	 * Errors leave objects unbound: p11p_vkey_hidden() keeps them from the
	 * find. A failing member's are the find's: it goes on on another member
	 * (keys hidden because their member failed would be missing from it).
	 */
	return bind_objects(c, ph, n, &err);
}

/* Does a key that is not a virtual key match the find's permission filter (the HSM's values)? */
static bool hsm_matches(struct p11p_call *c, CK_OBJECT_HANDLE ph, uint32_t mask, uint32_t want)
{
	CK_ATTRIBUTE a[N_PERMS];
	CK_BBOOL v[N_PERMS];
	CK_OBJECT_HANDLE bh;
	CK_ULONG n;

	if (p11p_object_to_backend(c, ph, CKR_OBJECT_HANDLE_INVALID, &bh) != CKR_OK)
		return false;
	n = p11p_vk_usage_template(mask, 0, a, v);
	if (p11p_be_C_GetAttributeValue(&c->bc, c->bs, bh, a, n) != CKR_OK)
		return false; /* an object without one of them does not match */
	for (CK_ULONG i = 0; i < n; i++)
		if (a[i].ulValueLen != sizeof(CK_BBOOL))
			return false;
	return p11p_vk_usage_read(a, n) == (want & mask);
}

bool p11p_vkey_hidden(struct p11p_call *c, CK_OBJECT_HANDLE ph)
{
	const struct p11p_vk_session *vks = p11p_shead(c->s)->vk;
	uint32_t mask = vks != NULL ? vks->find_mask : 0, want = vks != NULL ? vks->find_want : 0;
	struct p11p_vkey rec;
	CK_RV err;

	if (slot_vkeys(c) == NULL)
		return false;
	if (vks != NULL && vks->find_none)
		return true;
	switch (resolve(c, ph, &rec, &err)) {
	case VK_HIDDEN:
	case VK_ERROR:
		return true;
	case VK_BOUND:
		/* Deleted, or not matching: an attribute the class lacks matches no value. */
		return !p11p_vk_find_match(&rec, mask, want);
	case VK_NONE:
		break;
	}
	return mask != 0 && !hsm_matches(c, ph, mask, want);
}

/* What a C_SetAttributeValue changes in a record. */
struct set_edit {
	uint32_t mask, vals;
	bool has_id, has_label;
	const CK_ATTRIBUTE *id, *label;
};

static void apply_set(struct p11p_vkey *r, const void *arg)
{
	const struct set_edit *e = arg;

	p11p_vk_set_perms(r, e->mask, e->vals, NULL);
	if (e->has_id) {
		memcpy(r->ck_id, e->id->pValue, e->id->ulValueLen);
		r->ck_id_len = e->id->ulValueLen;
		r->ck_id[r->ck_id_len] = '\0';
	}
	if (e->has_label) {
		memcpy(r->label, e->label->pValue, e->label->ulValueLen);
		r->label_len = e->label->ulValueLen;
		r->label[r->label_len] = '\0';
	}
}

/* A byte-string attribute that can go into the index (max bytes). */
static bool fits(const CK_ATTRIBUTE *a, size_t max)
{
	return a->ulValueLen <= max && (a->pValue != NULL || a->ulValueLen == 0);
}

bool p11p_vkey_set(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                   CK_RV *rv)
{
	struct p11p_identity ident;
	bool have_ident = false;
	struct p11p_vkeys *vk = slot_vkeys(c);
	struct p11p_policy_cfg pol;
	struct set_edit e = {0};
	struct p11p_vkey rec;
	CK_ATTRIBUTE old[N_PERMS + 2];
	CK_BBOOL oldv[N_PERMS];
	unsigned char old_id[P11P_INDEX_ID_MAX], old_label[P11P_INDEX_LABEL_MAX];
	CK_ULONG n_old = 0;
	bool other = false, can_revert = false, naming = true, write_back;
	CK_OBJECT_HANDLE bh;

	if (vk == NULL || p11p_local_handle(h))
		return false;
	switch (live_record(c, h, &rec, rv)) {
	case 0:
		return false;
	case -1:
		return true;
	}
	/* Checked whole first: all or nothing. */
	for (CK_ULONG i = 0; i < count; i++) {
		if (p11p_vk_attr_perm(templ[i].type) != 0) {
			*rv = p11p_vk_set_usage(rec.cls, &templ[i], &e.mask, &e.vals);
			if (*rv != CKR_OK)
				return true;
			naming = false;
			continue;
		}
		other = true;
		if (templ[i].type != CKA_ID && templ[i].type != CKA_LABEL)
			naming = false;
		if (templ[i].type == CKA_ID || templ[i].type == CKA_LABEL) {
			/* The index must be able to follow the HSM key. */
			if (!fits(&templ[i], templ[i].type == CKA_ID ? P11P_INDEX_ID_MAX
			                                             : P11P_INDEX_LABEL_MAX)) {
				*rv = CKR_ATTRIBUTE_VALUE_INVALID;
				return true;
			}
			if (templ[i].type == CKA_ID) {
				e.has_id = true;
				e.id = &templ[i];
			} else {
				e.has_label = true;
				e.label = &templ[i];
			}
		}
	}
	if (!(p11p_shead(c->s)->flags & CKF_RW_SESSION)) {
		*rv = CKR_SESSION_READ_ONLY;
		return true;
	}
	p11p_policy_get(c->st, p11p_shead(c->s)->slot, &pol);
	write_back = p11p_vk_route(&pol, P11P_VK_CHANGE_PERMS) != P11P_VK_RECORD_ONLY;
	/*
	 * Without write_back only permissions change: label and id stay the HSM
	 * key's. Except that the application that created the key through the
	 * proxy (this process, any of its sessions: NSS names a new key from
	 * another session than the one that generated it) may still name it, with
	 * a template of CKA_ID and CKA_LABEL only: that is the identity it is
	 * creating. It goes the write_back way (the HSM key, the record, every
	 * member). Keys found, not made here, keep the rule.
	 */
	if (other && p11p_vk_route(&pol, P11P_VK_CHANGE_ATTRS) == P11P_VK_REFUSE) {
		if (!naming || !p11p_object_created_here(c->st, h)) {
			*rv = CKR_ATTRIBUTE_READ_ONLY;
			return true;
		}
		write_back = true;
	}
	*rv = p11p_object_to_backend(c, h, CKR_OBJECT_HANDLE_INVALID, &bh);
	if (*rv != CKR_OK)
		return true;
	if (!write_back) {
		/* A key the HSM will not let change does not change virtually either. */
		if (read_bool(c, bh, CKA_MODIFIABLE) == 0) {
			*rv = CKR_ATTRIBUTE_READ_ONLY;
			return true;
		}
		*rv = update_record(vk, rec.vid, apply_set, &e);
		return true;
	}
	/* write_back: the HSM key first (its refusal stands, the index untouched). */
	n_old = p11p_vk_usage_template(e.mask, 0, old, oldv);
	if (e.has_id)
		old[n_old++] = (CK_ATTRIBUTE){CKA_ID, old_id, sizeof(old_id)};
	if (e.has_label)
		old[n_old++] = (CK_ATTRIBUTE){CKA_LABEL, old_label, sizeof(old_label)};
	can_revert =
	    n_old > 0 && p11p_be_C_GetAttributeValue(&c->bc, c->bs, bh, old, n_old) == CKR_OK;
	have_ident = p11p_object_identity(c, h, &ident);
	*rv = p11p_be_C_SetAttributeValue(&c->bc, c->bs, bh, templ, count);
	/* The member failed: the change is made where the session moved (object.c). */
	while (p11p_hook_call_retry(c, rv, true)) {
		*rv = p11p_object_to_backend(c, h, CKR_OBJECT_HANDLE_INVALID, &bh);
		if (*rv == CKR_OK)
			*rv = p11p_be_C_SetAttributeValue(&c->bc, c->bs, bh, templ, count);
	}
	if (*rv != CKR_OK)
		return true;
	*rv = update_record(vk, rec.vid, apply_set, &e);
	if (*rv != CKR_OK) {
		/* Undo on the HSM what the index could not follow (the bound attributes). */
		if (!can_revert ||
		    p11p_be_C_SetAttributeValue(&c->bc, c->bs, bh, old, n_old) != CKR_OK)
			p11p_message(
			    "slot '%s': a virtual key's HSM key was changed but its record "
			    "could not be: %s",
			    p11p_vhead(p11p_shead(c->s)->slot)->label, p11p_rv_str(*rv));
		return true;
	}
	/* The copies on the other members change too; a new id or label is the identity. */
	if (have_ident)
		p11p_object_changed(c, h, &ident, templ, count);
	if (e.has_id || e.has_label) {
		struct p11p_vkbind **vkp;

		p11p_lock();
		vkp = p11p_object_vk_locked(c->st, h, NULL);
		if (vkp != NULL && vk_bind(vkp) != NULL) {
			if (e.has_id) {
				memcpy((*vkp)->id, e.id->pValue, e.id->ulValueLen);
				(*vkp)->id_len = e.id->ulValueLen;
			}
			if (e.has_label) {
				memcpy((*vkp)->label, e.label->pValue, e.label->ulValueLen);
				(*vkp)->label_len = e.label->ulValueLen;
			}
		}
		p11p_unlock();
	}
	return true;
}

static void apply_delete(struct p11p_vkey *r, const void *arg)
{
	(void)arg;
	p11p_vk_set_state(r, P11P_VK_DELETED, NULL);
}

bool p11p_vkey_destroy(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_RV *rv, uint64_t *vid)
{
	struct p11p_vkeys *vk = slot_vkeys(c);
	struct p11p_policy_cfg pol;
	struct p11p_vkey rec;
	CK_OBJECT_HANDLE bh;

	*vid = 0;
	if (vk == NULL || p11p_local_handle(h))
		return false;
	switch (live_record(c, h, &rec, rv)) {
	case 0:
		return false;
	case -1:
		return true;
	}
	p11p_policy_get(c->st, p11p_shead(c->s)->slot, &pol);
	if (p11p_vk_route(&pol, P11P_VK_CHANGE_DELETE) == P11P_VK_HSM_FIRST) {
		*vid = rec.vid; /* the HSM key goes, then the record (p11p_vkey_destroyed) */
		return false;
	}
	/* Virtually: the checks a destroy of the HSM key would make, then the tombstone. */
	if (!(p11p_shead(c->s)->flags & CKF_RW_SESSION)) {
		*rv = CKR_SESSION_READ_ONLY;
		return true;
	}
	*rv = p11p_object_to_backend(c, h, CKR_OBJECT_HANDLE_INVALID, &bh);
	if (*rv != CKR_OK)
		return true;
	if (read_bool(c, bh, CKA_DESTROYABLE) == 0) {
		*rv = CKR_ACTION_PROHIBITED;
		return true;
	}
	*rv = update_record(vk, rec.vid, apply_delete, NULL);
	return true;
}

void p11p_vkey_destroyed(struct p11p_call *c, uint64_t vid)
{
	struct p11p_vkeys *vk = slot_vkeys(c);
	CK_RV rv;

	if (vk == NULL || vid == 0)
		return;
	rv = p11p_index_delete(vk->idx, vid, NULL);
	if (rv != CKR_OK)
		write_error(
		    vk, "the HSM key is destroyed but its record stays (a sync finds it missing)",
		    rv);
}

/* Records the token keys among bh[0..n) (origin created), perms limited to `limit`. */
static CK_RV record_created(struct p11p_call *c, const CK_OBJECT_HANDLE *bh, size_t n,
                            uint32_t limit)
{
	struct p11p_vkeys *vk = slot_vkeys(c);
	struct p11p_vslot *vs = p11p_shead(c->s)->slot;
	struct keyinfo *k = NULL;
	struct p11p_vkey *recs = NULL;
	size_t *which = NULL, nrec = 0;
	uint32_t holders, self;
	CK_RV rv = CKR_OK;

	if (vk == NULL || n == 0)
		return CKR_OK;
	self =
	    p11p_shead(c->s)->member < P11P_INDEX_MAX_MEMBERS ? 1u << p11p_shead(c->s)->member : 0;
	holders = (c->new_key_holders & self) != 0 ? c->new_key_holders : self;
	k = p11p_calloc(n, sizeof(*k));
	recs = p11p_calloc(n, sizeof(*recs));
	which = p11p_calloc(n, sizeof(*which));
	if (k == NULL || recs == NULL || which == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		rv = read_key(c, bh[i], &k[i]);
		if (rv != CKR_OK)
			goto out;
		if (!k[i].token_key)
			continue;
		if (k[i].b.unrecordable) {
			p11p_message(
			    "slot '%s': a new key's CKA_ID or CKA_LABEL is longer than the "
			    "index takes (%d bytes): not created",
			    p11p_vhead(vs)->label, P11P_INDEX_LABEL_MAX);
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
			goto out;
		}
		rv = fill_record(&recs[nrec], vs, &k[i], P11P_VK_CREATED, limit, holders);
		if (rv != CKR_OK)
			goto out;
		which[nrec++] = i;
	}
	if (nrec == 0)
		goto out;
	rv = p11p_index_put_batch(vk->idx, recs, nrec);
	if (rv != CKR_OK) {
		rv = write_error(vk, "cannot record a new key (it is destroyed)", rv);
		goto out;
	}
	/* Bound to their own records now: another HSM key may share the identity. */
	for (size_t j = 0; j < nrec; j++) {
		CK_OBJECT_HANDLE ph;
		struct p11p_vkbind **vkp;
		struct p11p_vkbind *b = &k[which[j]].b;

		b->vid = recs[j].vid;
		rv = p11p_object_from_backend(c, bh[which[j]], false, &ph);
		if (rv != CKR_OK)
			break;
		p11p_lock();
		vkp = p11p_object_vk_locked(c->st, ph, NULL);
		if (vkp == NULL || !set_bind_locked(vkp, b))
			rv = CKR_HOST_MEMORY;
		p11p_unlock();
		if (rv != CKR_OK)
			break;
	}
	if (rv != CKR_OK) {
		/* The caller destroys the keys: their records and bindings go. */
		for (size_t j = 0; j < nrec; j++) {
			CK_OBJECT_HANDLE ph;

			p11p_index_delete(vk->idx, recs[j].vid, NULL);
			if (p11p_object_from_backend(c, bh[which[j]], false, &ph) == CKR_OK) {
				struct p11p_vkbind **vkp;

				p11p_lock();
				vkp = p11p_object_vk_locked(c->st, ph, NULL);
				if (vkp != NULL)
					p11p_vkey_object_free(vkp);
				p11p_unlock();
			}
		}
	}
out:
	p11p_free(which);
	p11p_free(recs);
	p11p_free(k);
	return rv;
}

CK_RV p11p_vkey_created(struct p11p_call *c, const CK_OBJECT_HANDLE *bh, size_t n)
{
	return record_created(c, bh, n, P11P_VK_ALL);
}

CK_RV p11p_vkey_copied(struct p11p_call *c, CK_OBJECT_HANDLE src, CK_OBJECT_HANDLE bh)
{
	struct p11p_vkey rec;
	uint32_t limit = P11P_VK_ALL;
	CK_RV err;

	if (slot_vkeys(c) == NULL)
		return CKR_OK;
	/* The copy is a new virtual key, with no permission the original's lacks. */
	if (resolve(c, src, &rec, &err) == VK_BOUND)
		limit = p11p_vk_perms_of(&rec);
	return record_created(c, &bh, 1, limit);
}

void p11p_vkeys_register(void)
{
	P11P_VKEY_HOOKS(P11P_HOOK_SET)
}
