/*
 * sync [SLOT] [--dry-run]: the members' token keys into the virtual-key index
 * ("SYNC KEYS"). Per slot:
 *
 *  1. every member is listed: one C_FindObjects over its token objects
 *     (CKA_TOKEN=true) fetched in chunks of SYNC_FIND_CHUNK, then ONE
 *     C_GetAttributeValue per object for class, key type, CKA_ID, CKA_LABEL
 *     and the seven usage flags: the cost of SoftHSM2's own listing. A member
 *     with a configured PIN is listed logged in; one without shows only its
 *     public objects, so it can add presence but never takes any away;
 *  2. keys are grouped by identity (CKA_CLASS + CKA_ID + CKA_LABEL) and
 *     looked up in the index with its label / CKA_ID index (no scan per key).
 *     What happens is the key model's (lib/vkeys/model.h), as in the module:
 *       - no record: `scan: all` imports it (p11p_vk_record_new(): origin
 *         scanned, the HSM key's usage flags that apply to its class as
 *         permissions, active); `scan: owned` does not (p11p_vk_on_unrecorded);
 *       - a record (p11p_vk_sync_seen): presence and key type are updated, a
 *         `missing` record becomes active again; permissions, state, origin
 *         and links are never touched; a `deleted` record (a virtual delete)
 *         is left alone;
 *  3. records of the slot found on no fully listed member lose those presence
 *     bits (p11p_vk_sync_unseen); one left on no member is reported missing
 *     (an active one becomes `missing`; a deactivated one stays deactivated).
 *     A software key (a record with a blob, issue 12) is held by no member and
 *     is never missing (one a former sync marked missing becomes active);
 *  4. every change is written in ONE index transaction (put_batch with each
 *     record's rev): all of it or nothing. A conflict (another process changed
 *     a record meanwhile) re-reads the index and recomputes, the listing kept.
 *
 * --dry-run prints what would change and writes nothing (it creates no index
 * either: without one, every key is new). A progress bar goes
 * to stderr for large tokens when stderr is a terminal.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/names.h"
#include "cli.h"
#include "keys.h"
#include "util.h"
#include "ha/order.h"
#include "vkeys/policy.h"

#define SYNC_FIND_CHUNK   1024
#define SYNC_MAX_OBJECTS  (4UL * 1000 * 1000) /* token objects listed on one member */
#define SYNC_PROGRESS_MIN 2000                /* objects before a progress bar is worth it */

/* One HSM key seen on one member (then: one identity over the members). */
struct hkey {
	CK_OBJECT_CLASS cls;
	CK_KEY_TYPE kt;
	uint32_t usage;   /* the HSM key's usage flags that are true */
	uint32_t members; /* bit per member index holding it */
	uint16_t id_len, label_len;
	unsigned char id[P11P_INDEX_ID_MAX], label[P11P_INDEX_LABEL_MAX];
};

struct listing {
	struct hkey *k;
	size_t n, cap;
	unsigned long skipped; /* keys whose CKA_ID / CKA_LABEL could not be kept */
};

struct mresult {
	bool listed, logged_in;
	unsigned long keys;
	char err[KEYS_ERR_LEN];
};

struct counts {
	unsigned long added, updated, missing, unchanged, not_imported, deleted;
};

/* Is vid a software key (issue 12): has it a blob, its value sealed by the HSM? */
static CK_RV is_software(struct p11p_index *idx, uint64_t vid, bool *sw)
{
	size_t len = 0;
	CK_RV rv = p11p_index_get_blob(idx, vid, NULL, 0, &len, sw);

	return rv == CKR_BUFFER_TOO_SMALL ? CKR_OK : rv;
}

static bool progress_on(unsigned long total)
{
	return total >= SYNC_PROGRESS_MIN && isatty(STDERR_FILENO);
}

static void progress(const char *slot, size_t member, unsigned long done, unsigned long total)
{
	char bar[31];
	size_t fill = total ? (size_t)(done * 30 / total) : 30;

	memset(bar, '#', fill);
	memset(bar + fill, '.', 30 - fill);
	bar[30] = '\0';
	fprintf(stderr, "\r%s member %zu: [%s] %lu/%lu keys", cli_esc(slot), member + 1, bar, done,
	        total);
	if (done == total)
		fputs("\n", stderr);
	fflush(stderr);
}

static int push_key(struct listing *l, const struct hkey *k)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct hkey *g = p11p_reallocarray(l->k, cap, sizeof(*g));

		if (g == NULL)
			return -1;
		l->k = g;
		l->cap = cap;
	}
	l->k[l->n++] = *k;
	return 0;
}

/* Lists the token keys of one member into l. */
static CK_RV list_member(struct keys_member *km, const char *slot, size_t idx, struct listing *l,
                         struct mresult *mr)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t = {CKA_TOKEN, &yes, sizeof(yes)};
	CK_OBJECT_HANDLE *hs = NULL, *g;
	CK_ULONG n = 0, cap = 0, got;
	bool bar;
	CK_RV rv;

	rv = p11p_be_C_FindObjectsInit(km->bc, km->h, &t, 1);
	if (rv != CKR_OK) {
		snprintf(mr->err, sizeof(mr->err), "C_FindObjectsInit: %s", cli_rv(rv));
		return rv;
	}
	for (;;) {
		if (n + SYNC_FIND_CHUNK > cap) {
			cap = cap ? cap * 2 : 4 * SYNC_FIND_CHUNK;
			g = p11p_reallocarray(hs, cap, sizeof(*hs));
			if (g == NULL) {
				rv = CKR_HOST_MEMORY;
				break;
			}
			hs = g;
		}
		got = 0;
		rv = p11p_be_C_FindObjects(km->bc, km->h, hs + n, SYNC_FIND_CHUNK, &got);
		if (rv == CKR_OK && got > SYNC_FIND_CHUNK)
			rv = CKR_GENERAL_ERROR;
		if (rv != CKR_OK || got == 0)
			break;
		n += got;
		if (n > SYNC_MAX_OBJECTS) {
			rv = CKR_BUFFER_TOO_SMALL;
			break;
		}
	}
	p11p_be_C_FindObjectsFinal(km->bc, km->h);
	if (rv != CKR_OK) {
		snprintf(mr->err, sizeof(mr->err), "listing the token objects: %s",
		         rv == CKR_BUFFER_TOO_SMALL ? "too many objects" : cli_rv(rv));
		goto out;
	}
	bar = progress_on(n);
	for (CK_ULONG i = 0; i < n; i++) {
		struct hkey k;
		CK_BBOOL fl[P11P_VK_NPERMS];
		CK_ATTRIBUTE a[4 + P11P_VK_NPERMS] = {
		    {CKA_CLASS, &k.cls, sizeof(k.cls)},
		    {CKA_KEY_TYPE, &k.kt, sizeof(k.kt)},
		    {CKA_ID, k.id, sizeof(k.id)},
		    {CKA_LABEL, k.label, sizeof(k.label)},
		    /* then the usage flags */
		};

		if (bar && (i % 256 == 0))
			progress(slot, idx, i, n);
		memset(&k, 0, sizeof(k));
		p11p_vk_usage_template(P11P_VK_ALL, 0, a + 4, fl);
		/* One call per object; attributes the object lacks come back unavailable. */
		rv = p11p_be_C_GetAttributeValue(km->bc, km->h, hs[i], a, 11);
		if (rv == CKR_OBJECT_HANDLE_INVALID)
			continue; /* destroyed meanwhile */
		if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID &&
		    rv != CKR_ATTRIBUTE_SENSITIVE && rv != CKR_BUFFER_TOO_SMALL) {
			snprintf(mr->err, sizeof(mr->err), "reading a key's attributes: %s",
			         cli_rv(rv));
			goto out;
		}
		rv = CKR_OK;
		if (a[0].ulValueLen != sizeof(k.cls) || !p11p_vk_is_key_class(k.cls))
			continue;
		if (!p11p_vk_identity_fits(a[2].ulValueLen, a[3].ulValueLen)) {
			/* Unreadable or longer than the index keeps: cannot be a virtual key. */
			l->skipped++;
			continue;
		}
		if (a[1].ulValueLen != sizeof(k.kt))
			k.kt = CKK_VENDOR_DEFINED;
		k.id_len = (uint16_t)a[2].ulValueLen;
		k.label_len = (uint16_t)a[3].ulValueLen;
		k.usage = p11p_vk_usage_read(a + 4, P11P_VK_NPERMS);
		k.members = 1u << idx;
		if (push_key(l, &k) != 0) {
			rv = CKR_HOST_MEMORY;
			snprintf(mr->err, sizeof(mr->err), "out of memory");
			goto out;
		}
		mr->keys++;
	}
	if (bar)
		progress(slot, idx, n, n);
out:
	p11p_free(hs);
	return rv;
}

static int cmp_bytes(const unsigned char *a, size_t al, const unsigned char *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int r = memcmp(a, b, n);

	return r != 0 ? r : al < bl ? -1 : al > bl ? 1 : 0;
}

static int cmp_ident(const struct hkey *a, const struct hkey *b)
{
	int r;

	if (a->cls != b->cls)
		return a->cls < b->cls ? -1 : 1;
	r = cmp_bytes(a->id, a->id_len, b->id, b->id_len);
	return r != 0 ? r : cmp_bytes(a->label, a->label_len, b->label, b->label_len);
}

static int cmp_hkey(const void *pa, const void *pb)
{
	const struct hkey *a = pa, *b = pb;
	int r = cmp_ident(a, b);

	/* Then by member, so that the first of a group is the lowest member's. */
	return r != 0 ? r : a->members < b->members ? -1 : a->members > b->members ? 1 : 0;
}

/* Groups by identity in place: one entry per identity with every member holding it. */
static void group(struct listing *l)
{
	size_t o = 0;

	if (l->n == 0)
		return;
	qsort(l->k, l->n, sizeof(*l->k), cmp_hkey);
	for (size_t i = 0; i < l->n; i++) {
		if (o > 0 && cmp_ident(&l->k[o - 1], &l->k[i]) == 0)
			l->k[o - 1].members |= l->k[i].members;
		else
			l->k[o++] = l->k[i];
	}
	l->n = o;
}

static int cmp_u64(const void *pa, const void *pb)
{
	uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;

	return a < b ? -1 : a > b ? 1 : 0;
}

/* A change to write: the record, and what it is (for the report). */
struct plan {
	struct p11p_vkey *recs;
	const char **what;
	size_t n, cap;
	uint64_t *seen; /* vids matched by a listed key */
	size_t n_seen, cap_seen;
	struct counts c;
};

static int plan_add(struct plan *p, const struct p11p_vkey *v, const char *what)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 256;
		struct p11p_vkey *g = p11p_reallocarray(p->recs, cap, sizeof(*g));
		const char **w;

		if (g == NULL)
			return -1;
		p->recs = g;
		w = p11p_reallocarray(p->what, cap, sizeof(*w));
		if (w == NULL)
			return -1;
		p->what = w;
		p->cap = cap;
	}
	p->what[p->n] = what;
	p->recs[p->n++] = *v;
	return 0;
}

static int plan_seen(struct plan *p, uint64_t vid)
{
	if (p->n_seen == p->cap_seen) {
		size_t cap = p->cap_seen ? p->cap_seen * 2 : 256;
		uint64_t *g = p11p_reallocarray(p->seen, cap, sizeof(*g));

		if (g == NULL)
			return -1;
		p->seen = g;
		p->cap_seen = cap;
	}
	p->seen[p->n_seen++] = vid;
	return 0;
}

static void plan_reset(struct plan *p)
{
	p->n = 0;
	p->n_seen = 0;
	memset(&p->c, 0, sizeof(p->c));
}

static void plan_free(struct plan *p)
{
	p11p_free(p->recs);
	p11p_free(p->what);
	p11p_free(p->seen);
}

/*
 * The changes for one slot from its grouped listing. full: members listed
 * completely (logged in), whose absence of a key counts. 0, or -1 (message).
 */
static int make_plan(struct p11p_index *idx, const char *slot, const struct listing *l,
                     uint32_t full, const struct p11p_policy_cfg *pol, struct plan *p)
{
	struct p11p_vkey found[8], v;
	uint64_t *ids = NULL;
	size_t n_ids = 0;
	CK_RV rv;

	plan_reset(p);
	for (size_t i = 0; i < l->n; i++) {
		const struct hkey *k = &l->k[i];
		struct p11p_vkey_match m = {
		    .slot = slot,
		    .has_class = true,
		    .cls = k->cls,
		    .has_ck_id = true,
		    .ck_id = k->id,
		    .ck_id_len = k->id_len,
		    .has_label = true,
		    .label = k->label,
		    .label_len = k->label_len,
		};
		size_t count = 0;

		/* No index yet (a dry run creates none): nothing is recorded. */
		rv = idx != NULL ? p11p_index_find(idx, &m, found, 8, &count) : CKR_OK;
		if (rv != CKR_OK)
			goto fail;
		if (count == 0) {
			const struct p11p_vk_key key = {
			    .cls = k->cls,
			    .key_type = k->kt,
			    .id = k->id,
			    .id_len = k->id_len,
			    .label = k->label,
			    .label_len = k->label_len,
			    .usage = k->usage,
			};

			if (p11p_vk_on_unrecorded(pol, true) == P11P_VK_HIDE) {
				p->c.not_imported++;
				continue;
			}
			if (!p11p_vk_record_new(&v, slot, &key, P11P_VK_ALL, P11P_VK_SCANNED,
			                        k->members)) {
				rv = CKR_GENERAL_ERROR; /* listed keys fit (list_member) */
				goto fail;
			}
			if (plan_add(p, &v, "add") != 0)
				goto oom;
			p->c.added++;
			continue;
		}
		for (size_t j = 0; j < count && j < 8; j++) {
			const char *what = "update";

			if (plan_seen(p, found[j].vid) != 0)
				goto oom;
			v = found[j];
			switch (p11p_vk_sync_seen(&v, k->members, full, k->kt)) {
			case P11P_VK_SYNC_DELETED:
				p->c.deleted++;
				continue;
			case P11P_VK_SYNC_UNCHANGED:
				p->c.unchanged++;
				continue;
			case P11P_VK_SYNC_FOUND:
				what = "found";
				break;
			case P11P_VK_SYNC_UPDATED:
			case P11P_VK_SYNC_MISSING:
				break;
			}
			if (plan_add(p, &v, what) != 0)
				goto oom;
			p->c.updated++;
		}
	}
	/* Records no listed key matched. */
	if (p->n_seen > 0)
		qsort(p->seen, p->n_seen, sizeof(*p->seen), cmp_u64);
	rv = idx != NULL ? p11p_index_list(idx, slot, &ids, &n_ids) : CKR_OK;
	if (rv != CKR_OK)
		goto fail;
	for (size_t i = 0; i < n_ids; i++) {
		bool ok = false, sw = false;

		if (p->n_seen > 0 &&
		    bsearch(&ids[i], p->seen, p->n_seen, sizeof(*p->seen), cmp_u64) != NULL)
			continue;
		rv = p11p_index_get(idx, ids[i], &v, &ok);
		if (rv != CKR_OK)
			goto fail;
		if (!ok)
			continue;
		rv = is_software(idx, ids[i], &sw);
		if (rv != CKR_OK)
			goto fail;
		if (sw) {
			/* A software key: no member holds it, never missing. */
			if (v.state != P11P_VK_MISSING) {
				p->c.unchanged++;
				continue;
			}
			v.state = P11P_VK_ACTIVE;
			if (plan_add(p, &v, "found") != 0)
				goto oom;
			p->c.updated++;
			continue;
		}
		switch (p11p_vk_sync_unseen(&v, full)) {
		case P11P_VK_SYNC_DELETED:
			break;
		case P11P_VK_SYNC_MISSING:
			if (plan_add(p, &v, "missing") != 0)
				goto oom;
			p->c.missing++;
			break;
		case P11P_VK_SYNC_UPDATED:
		case P11P_VK_SYNC_FOUND:
			if (plan_add(p, &v, "update") != 0)
				goto oom;
			p->c.updated++;
			break;
		case P11P_VK_SYNC_UNCHANGED:
			p->c.unchanged++;
			break;
		}
	}
	p11p_free(ids);
	return 0;
oom:
	rv = CKR_HOST_MEMORY;
fail:
	p11p_free(ids);
	cli_error("slot %s: reading the index: %s", slot, cli_rv(rv));
	return -1;
}

static void print_change(const struct p11p_config *cfg, const struct p11p_vkey *v, const char *what)
{
	char ib[2 * P11P_INDEX_ID_MAX + 1], tb[32], pb[256];

	printf("  %-7s %s %s key \"%s\" id %s members %s\n", what,
	       keys_type_name(v->key_type, tb, sizeof(tb)), p11p_vk_class_name(v->cls),
	       keys_label(v), keys_id(v, ib, sizeof(ib), "(none)"),
	       keys_presence_str(cfg, v, false, pb, sizeof(pb)));
}

struct sync_opts {
	bool dry_run;
	bool json;
	json_t *slots; /* --json: one object per slot */
};

/* Configured member i's number in the slot's effective order (0: left out of it). */
static size_t member_num(const struct p11p_config *cfg, size_t s, size_t i)
{
	struct p11p_order o;
	char err[1024];
	size_t n;

	cli_slot_order(cfg, s, &o, err, sizeof(err));
	n = cli_member_number(&o, i);
	p11p_order_clear(&o);
	return n;
}

/* Syncs one slot. true when every member was listed and the changes are stored. */
static bool sync_slot(struct p11p_config *cfg, struct cli_backends *bes, struct p11p_index *idx,
                      size_t s, struct sync_opts *o)
{
	const struct p11p_slot_cfg *sc = &cfg->slots[s];
	size_t nm = sc->n_members < P11P_INDEX_MAX_MEMBERS ? sc->n_members : P11P_INDEX_MAX_MEMBERS;
	struct mresult *mr = p11p_calloc(nm, sizeof(*mr));
	struct keys_member km;
	struct listing l = {0};
	struct plan p = {0};
	struct p11p_policy_cfg pol;
	uint32_t full = 0;
	char err[KEYS_ERR_LEN];
	bool ok = true, stored = false;
	int attempt;
	CK_RV rv = CKR_OK;

	if (mr == NULL) {
		cli_error("out of memory");
		return false;
	}
	if (sc->label == NULL || sc->label[0] == '\0') {
		cli_error("slot %zu has no label: its keys cannot be recorded", s);
		p11p_free(mr);
		return false;
	}
	err[0] = '\0';
	if (p11p_policy_read(cfg, idx, s, &pol, err, sizeof(err)) < 0) {
		cli_error("slot %s: %s", sc->label, err);
		p11p_free(mr);
		return false;
	}
	for (size_t i = 0; i < nm; i++) {
		if (!keys_member_open(bes, &sc->members[i], i, false, false, &km)) {
			snprintf(mr[i].err, sizeof(mr[i].err), "%s", km.err);
			ok = false;
			continue;
		}
		mr[i].logged_in = km.logged_in;
		if (list_member(&km, sc->label, i, &l, &mr[i]) == CKR_OK) {
			mr[i].listed = true;
			if (km.logged_in)
				full |= 1u << i;
		} else {
			ok = false;
		}
		keys_member_close(&km);
	}
	group(&l);
	for (attempt = 0; attempt < KEYS_RETRIES; attempt++) {
		rv = idx != NULL ? p11p_index_refresh(idx) : CKR_OK;
		if (rv != CKR_OK || make_plan(idx, sc->label, &l, full, &pol, &p) != 0) {
			ok = false;
			goto report;
		}
		if (o->dry_run || p.n == 0) {
			stored = !o->dry_run;
			break;
		}
		rv = p11p_index_put_batch(idx, p.recs, p.n);
		if (rv == CKR_OK) {
			stored = true;
			break;
		}
		if (rv != P11P_INDEX_CONFLICT)
			break;
	}
	if (!stored && !o->dry_run) {
		p11p_index_last_error(idx, err, sizeof(err));
		cli_error("slot %s: nothing written: %s", sc->label,
		          err[0] != '\0' ? err : cli_rv(rv));
		ok = false;
	}
report:
	if (o->json) {
		json_t *js = json_object(), *pj = json_object(), *jm = json_array(),
		       *jc = json_array();

		cli_jset(js, "slot", cli_jstr(sc->label));
		cli_jset(pj, "write_back", json_boolean(pol.write_back));
		cli_jset(pj, "scan", json_string(p11p_vk_scan_name(pol.scan)));
		cli_jset(js, "policy", pj);
		cli_jset(js, "dry_run", json_boolean(o->dry_run));
		cli_jset(js, "written", json_boolean(stored && p.n > 0));
		cli_jset(js, "added", json_integer((json_int_t)p.c.added));
		cli_jset(js, "updated", json_integer((json_int_t)p.c.updated));
		cli_jset(js, "missing", json_integer((json_int_t)p.c.missing));
		cli_jset(js, "unchanged", json_integer((json_int_t)p.c.unchanged));
		cli_jset(js, "not_imported", json_integer((json_int_t)p.c.not_imported));
		cli_jset(js, "deleted", json_integer((json_int_t)p.c.deleted));
		cli_jset(js, "skipped", json_integer((json_int_t)l.skipped));
		for (size_t i = 0; i < nm; i++) {
			json_t *m = json_object();
			const char *name;

			name = sc->members[i].name;
			cli_jset(m, "member", json_integer((json_int_t)member_num(cfg, s, i)));
			cli_jset(m, "name", cli_jstr(name));
			cli_jset(m, "listed", json_boolean(mr[i].listed));
			cli_jset(m, "logged_in", json_boolean(mr[i].logged_in));
			cli_jset(m, "keys", json_integer((json_int_t)mr[i].keys));
			cli_jset(m, "error", cli_jstr(mr[i].listed ? NULL : mr[i].err));
			json_array_append_new(jm, m);
		}
		cli_jset(js, "members", jm);
		for (size_t i = 0; o->dry_run && i < p.n; i++) {
			json_t *c = json_object();

			cli_jset(c, "action", cli_jstr(p.what[i]));
			cli_jset(c, "key", keys_json_record(cfg, &p.recs[i]));
			json_array_append_new(jc, c);
		}
		cli_jset(js, "changes", jc);
		json_array_append_new(o->slots, js);
	} else {
		for (size_t i = 0; i < nm; i++) {
			if (!mr[i].listed)
				cli_error("slot %s %s: not listed: %s; its presence bits are kept",
				          sc->label, keys_member_name(cfg, s, i), mr[i].err);
			else if (!mr[i].logged_in)
				cli_error("slot %s %s: no PIN configured: only its public objects "
				          "were listed (keys it does not show keep their presence)",
				          sc->label, keys_member_name(cfg, s, i));
		}
		printf("slot %s%s: added %lu, updated %lu, missing %lu, unchanged %lu",
		       cli_esc(sc->label), o->dry_run ? " (dry run, nothing written)" : "",
		       p.c.added, p.c.updated, p.c.missing, p.c.unchanged);
		if (p.c.not_imported)
			printf("; %lu not imported (scan: owned)", p.c.not_imported);
		if (p.c.deleted)
			printf("; %lu deleted virtually, left alone", p.c.deleted);
		if (l.skipped)
			printf("; %lu skipped (CKA_ID or CKA_LABEL unreadable or over %d bytes)",
			       l.skipped, P11P_INDEX_LABEL_MAX);
		printf("\n");
		for (size_t i = 0; o->dry_run && i < p.n; i++)
			print_change(cfg, &p.recs[i], p.what[i]);
	}
	plan_free(&p);
	p11p_free(l.k);
	p11p_free(mr);
	return ok;
}

int cli_sync_keys(struct cli *cli, const char *want, bool dry_run)
{
	struct p11p_config *cfg;
	struct cli_backends *bes = NULL;
	struct p11p_index *idx = NULL;
	struct sync_opts o = {.json = cli->json, .dry_run = dry_run};
	size_t only = (size_t)-1;
	bool all_ok = true;
	int rc = CLI_FAIL;

	cfg = cli_config(cli);
	if (cfg == NULL)
		return CLI_FAIL;
	if (want != NULL) {
		only = cli_slot_arg(cfg, "sync", want);
		if (only == (size_t)-1) {
			rc = CLI_USAGE;
			goto out;
		}
	}
	/* A dry run writes nothing, not even a new index. */
	if (keys_index_open(cfg, !o.dry_run, &idx) != 0)
		goto out;
	bes = cli_backends_new(cfg);
	if (bes == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (o.json)
		o.slots = json_array();
	for (size_t s = 0; s < cfg->n_slots; s++) {
		if (only != (size_t)-1 && s != only)
			continue;
		if (!sync_slot(cfg, bes, idx, s, &o))
			all_ok = false;
	}
	if (o.json) {
		json_t *doc = json_object();

		cli_jset(doc, "index", cli_jstr(cfg->index_path));
		cli_jset(doc, "slots", o.slots);
		cli_jset(doc, "ok", json_boolean(all_ok));
		cli_json_print(doc);
	}
	rc = all_ok ? CLI_OK : CLI_FAIL;
out:
	keys_orders_free();
	cli_backends_free(bes);
	p11p_index_close(idx);
	p11p_config_free(cfg);
	return rc;
}
