/*
 * keys list|show|deactivate|activate|delete|rotate|allow|deny: the virtual
 * keys of the index (lib/index), under each slot's key-management policy
 * (the overlay: lib/virt/policy.h). What applies to which class, how a
 * record changes and where a change goes are the key model's
 * (lib/vkeys/model.h), the module's rules too.
 *
 * Every change is a read-modify-write of the record with its `rev`: the put
 * fails with P11P_INDEX_CONFLICT when another process changed the record in
 * between, and the command reads it again and re-applies its change (at most
 * KEYS_RETRIES times). Each change is one index transaction.
 *
 * Policy (p11p_vk_route()): deactivate/activate are virtual only. delete and
 * allow/deny change only the record unless the slot's policy has write_back,
 * in which case the
 * HSM key is changed on every member of the slot first (through the member
 * backends, logged in with each member's configured PIN): a member that
 * cannot be reached or logged in stops the command before anything changes;
 * a failure half-way is undone where PKCS#11 allows it (attributes are set
 * back; a destroyed key cannot come back, so the record then keeps the
 * members that still hold it). rotate creates a new HSM key, or, for a
 * software key (issue 12), a new software key sealed by the HSM under the
 * slot's wrapping key (rotate_software()).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/rand.h>

#include "base/mem.h"
#include "base/ossl.h"
#include "base/secret.h"
#include "crypto/swkey.h"
#include "keymodel/swblob.h"
#include "base/names.h"
#include "cli.h"
#include "keys.h"
#include "util.h"
#include "vkeys/policy.h"
#include "ha/replicate.h"

struct kctx {
	const struct cli *cli;
	struct p11p_config *cfg;
	struct p11p_index *idx;
	struct cli_backends *bes;
	const char *slot;   /* --slot's label, or NULL */
	const char *new_id; /* rotate --id HEX, or NULL; its bytes: */
	unsigned char id[P11P_INDEX_ID_MAX];
	size_t id_len;
	const char *action;
	bool json, all;
};

static int fail_rv(const char *what, CK_RV rv)
{
	cli_error("%s: %s", what, cli_rv(rv));
	return CLI_FAIL;
}

/*
 * What a change did, as the command's answer: a line of text, or under --json
 * {"action","vid","changed","message","key"} (key: the record as stored now,
 * null when it is gone).
 */
static void answer(struct kctx *k, const struct p11p_vkey *v, bool changed, bool gone,
                   const char *msg)
{
	json_t *doc;
	char vid[24];

	if (!k->json) {
		printf("%016llx: %s\n", (unsigned long long)v->vid, cli_esc(msg));
		return;
	}
	snprintf(vid, sizeof(vid), "%016llx", (unsigned long long)v->vid);
	doc = json_object();
	cli_jset(doc, "action", cli_jstr(k->action));
	cli_jset(doc, "vid", json_string(vid));
	cli_jset(doc, "changed", json_boolean(changed));
	cli_jset(doc, "message", cli_jstr(msg));
	cli_jset(doc, "key", gone ? json_null() : keys_json_record(k->cfg, v));
	cli_json_print(doc);
}

/* ---- list, show --------------------------------------------------------------------------- */

static int cmp_rec(const void *pa, const void *pb)
{
	const struct p11p_vkey *a = pa, *b = pb;
	int r = strcmp(a->slot, b->slot);
	size_t n;

	if (r != 0)
		return r;
	n = a->label_len < b->label_len ? a->label_len : b->label_len;
	r = memcmp(a->label, b->label, n);
	if (r == 0 && a->label_len != b->label_len)
		r = a->label_len < b->label_len ? -1 : 1;
	if (r != 0)
		return r;
	return a->vid < b->vid ? -1 : a->vid > b->vid ? 1 : 0;
}

static int do_list(struct kctx *k)
{
	uint64_t *ids = NULL;
	struct p11p_vkey *recs = NULL;
	size_t n_ids = 0, n = 0;
	CK_RV rv;

	if (k->idx != NULL) {
		rv = p11p_index_list(k->idx, k->slot, &ids, &n_ids);
		if (rv != CKR_OK)
			return fail_rv("reading the index", rv);
		recs = p11p_calloc(n_ids ? n_ids : 1, sizeof(*recs));
		if (recs == NULL) {
			p11p_free(ids);
			return fail_rv("reading the index", CKR_HOST_MEMORY);
		}
		for (size_t i = 0; i < n_ids; i++) {
			bool found = false;

			if (p11p_index_get(k->idx, ids[i], &recs[n], &found) == CKR_OK && found &&
			    (k->all || recs[n].state != P11P_VK_DELETED))
				n++;
		}
		p11p_free(ids);
		if (n > 1)
			qsort(recs, n, sizeof(*recs), cmp_rec);
	}
	if (k->json) {
		json_t *doc = json_object(), *a = json_array();

		cli_jset(doc, "index", cli_jstr(k->cfg->index_path));
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, keys_json_record(k->cfg, &recs[i]));
		cli_jset(doc, "keys", a);
		cli_jset(doc, "count", json_integer((json_int_t)n));
		cli_json_print(doc);
	} else if (n == 0) {
		printf("no virtual keys%s%s (p11proxy sync records the slots' keys)\n",
		       k->slot ? " in slot " : "", k->slot ? cli_esc(k->slot) : "");
	} else {
		printf("%-16s  %-12s %-7s %-7s %-24s %-32s %-7s %-11s %-7s %-20s %s\n", "VID",
		       "SLOT", "CLASS", "TYPE", "LABEL", "ID", "PERMS", "STATE", "ORIGIN",
		       "UPDATED", "MEMBERS");
		for (size_t i = 0; i < n; i++) {
			const struct p11p_vkey *v = &recs[i];
			char ib[2 * P11P_INDEX_ID_MAX + 1], tb[32], pb[P11P_VK_PERMS_STR], mb[256],
			    when[40];

			printf("%016llx  %-12s %-7s %-7s %-24s %-32s %-7s %-11s %-7s %-20s %s\n",
			       (unsigned long long)v->vid, cli_esc(v->slot),
			       p11p_vk_class_name(v->cls),
			       keys_type_name(v->key_type, tb, sizeof(tb)), keys_label(v),
			       keys_id(v, ib, sizeof(ib), "-"), keys_perms_shown(v, pb),
			       p11p_vk_state_name(v->state), p11p_vk_origin_name(v->origin),
			       cli_time(v->updated, when, sizeof(when)),
			       keys_presence_str(k->cfg, v, false, mb, sizeof(mb)));
		}
	}
	p11p_free(recs);
	return CLI_OK;
}

/* Resolves KEY; prints why not. 0 found, else an exit status. */
static int resolve(struct kctx *k, const char *key, bool with_deleted, struct p11p_vkey *out)
{
	int rc;

	if (k->idx == NULL) {
		cli_error("no key '%s': nothing is recorded yet (%s does not exist; p11proxy sync)",
		          key, k->cfg->index_path);
		return CLI_FAIL;
	}
	rc = keys_resolve(k->idx, k->cfg, key, k->slot, with_deleted, out);
	if (rc == 0)
		cli_error("no virtual key '%s'%s%s (by virtual id, URI, label or CKA_ID)", key,
		          k->slot ? " in slot " : "", k->slot ? k->slot : "");
	return rc == 1 ? 0 : CLI_FAIL;
}

static int do_show(struct kctx *k, const char *key)
{
	struct p11p_vkey v;
	char ib[2 * P11P_INDEX_ID_MAX + 1], tb[32], pb[P11P_VK_PERMS_STR], mb[256], t1[40], t2[40];
	int rc = resolve(k, key, true, &v);

	if (rc != 0)
		return rc;
	if (k->json) {
		cli_json_print(keys_json_record(k->cfg, &v));
		return CLI_OK;
	}
	printf("virtual id   %016llx (rev %llu)\n", (unsigned long long)v.vid,
	       (unsigned long long)v.rev);
	printf("slot         %s\n", cli_esc(v.slot));
	printf("class        %s\n", p11p_vk_class_name(v.cls));
	printf("key type     %s\n", keys_type_name(v.key_type, tb, sizeof(tb)));
	printf("label        \"%s\"\n", keys_label(&v));
	printf("id           %s\n", keys_id(&v, ib, sizeof(ib), "(none)"));
	printf("permissions  %s\n", keys_perms_shown(&v, pb));
	printf("state        %s\n", p11p_vk_state_name(v.state));
	printf("origin       %s\n", p11p_vk_origin_name(v.origin));
	printf("members      %s\n", keys_presence_str(k->cfg, &v, true, mb, sizeof(mb)));
	printf("created      %s\nupdated      %s\n", cli_time(v.created, t1, sizeof(t1)),
	       cli_time(v.updated, t2, sizeof(t2)));
	if (v.prev)
		printf("rotated from %016llx\n", (unsigned long long)v.prev);
	if (v.next)
		printf("rotated to   %016llx\n", (unsigned long long)v.next);
	return CLI_OK;
}

/* ---- read-modify-write -------------------------------------------------------------------- */

/* Changes v in place: 0 changed, 1 nothing to change (msg says why), -1 refused (msg). */
typedef int (*change_fn)(struct p11p_vkey *v, const void *arg, char *msg, size_t len);

/*
 * Re-reads the record, applies fn and puts it with the rev it read, until no
 * other writer came in between. *v: the record as stored afterwards.
 */
static int rmw(struct kctx *k, struct p11p_vkey *v, change_fn fn, const void *arg, bool *changed)
{
	char msg[KEYS_ERR_LEN], err[KEYS_ERR_LEN];
	uint64_t vid = v->vid;
	CK_RV rv = CKR_OK;

	*changed = false;
	for (int attempt = 0; attempt < KEYS_RETRIES; attempt++) {
		bool found = false;
		int r;

		rv = p11p_index_refresh(k->idx);
		if (rv == CKR_OK)
			rv = p11p_index_get(k->idx, vid, v, &found);
		if (rv != CKR_OK)
			break;
		if (!found) {
			cli_error("virtual key %016llx was removed meanwhile",
			          (unsigned long long)vid);
			return CLI_FAIL;
		}
		msg[0] = '\0';
		r = fn(v, arg, msg, sizeof(msg));
		if (r < 0) {
			cli_error("%016llx: %s", (unsigned long long)vid, msg);
			return CLI_FAIL;
		}
		if (r > 0) {
			answer(k, v, false, false, msg);
			return CLI_OK;
		}
		rv = p11p_index_put(k->idx, v);
		if (rv == CKR_OK) {
			*changed = true;
			return CLI_OK;
		}
		if (rv != P11P_INDEX_CONFLICT)
			break;
	}
	err[0] = '\0';
	p11p_index_last_error(k->idx, err, sizeof(err));
	cli_error("%016llx: not changed: %s", (unsigned long long)vid, err[0] ? err : cli_rv(rv));
	return CLI_FAIL;
}

/* The key model's verdict as rmw() wants it: 0 changed, 1 nothing to change, -1 refused. */
static int edit_rc(enum p11p_vk_edit e)
{
	return e == P11P_VK_EDIT_CHANGED ? 0 : e == P11P_VK_EDIT_SAME ? 1 : -1;
}

/* The state to go to (deactivate, activate, a virtual delete) and whether the key is software. */
struct state_change {
	enum p11p_vk_state to;
	bool software;
};

static int ch_state(struct p11p_vkey *v, const void *arg, char *msg, size_t len)
{
	const struct state_change *sc = arg;
	enum p11p_vk_state to = sc->to;
	const char *why = NULL;
	enum p11p_vk_edit e;

	/* A software key (issue 12) is held by no member: active, never missing. */
	if (sc->software && to == P11P_VK_ACTIVE && v->state == P11P_VK_MISSING) {
		v->state = P11P_VK_ACTIVE;
		return 0;
	}
	e = p11p_vk_set_state(v, to, &why);
	if (sc->software && e == P11P_VK_EDIT_CHANGED && v->state == P11P_VK_MISSING)
		v->state = P11P_VK_ACTIVE;

	if (e == P11P_VK_EDIT_SAME && to == P11P_VK_ACTIVE)
		snprintf(msg, len, "%s (state %s)", why, p11p_vk_state_name(v->state));
	else if (e != P11P_VK_EDIT_CHANGED)
		snprintf(msg, len, "%s", why);
	return edit_rc(e);
}

struct perm_change {
	uint32_t bits;
	bool allow;
};

static int ch_perms(struct p11p_vkey *v, const void *arg, char *msg, size_t len)
{
	const struct perm_change *pc = arg;
	const char *why = NULL;
	char pb[P11P_VK_PERMS_STR];
	enum p11p_vk_edit e = p11p_vk_set_perms(v, pc->bits, pc->allow ? pc->bits : 0, &why);

	if (e == P11P_VK_EDIT_SAME)
		snprintf(msg, len, "%s %s", why, keys_perms_shown(v, pb));
	else if (e != P11P_VK_EDIT_CHANGED)
		snprintf(msg, len, "%s", why);
	return edit_rc(e);
}

/* ---- the HSM side (write_back, rotate) ---------------------------------------------------- */

/* Sessions on every member of a slot, all logged in, or none (message printed). */
struct slot_sessions {
	size_t n;
	struct keys_member km[P11P_MAX_MEMBERS];
};

static bool open_all(struct kctx *k, size_t s, struct slot_sessions *ss)
{
	const struct p11p_slot_cfg *sc = &k->cfg->slots[s];

	memset(ss, 0, sizeof(*ss));
	if (k->bes == NULL)
		k->bes = cli_backends_new(k->cfg);
	if (k->bes == NULL) {
		cli_error("out of memory");
		return false;
	}
	for (size_t i = 0; i < sc->n_members && i < P11P_MAX_MEMBERS; i++) {
		if (!keys_member_open(k->bes, &sc->members[i], i, true, true, &ss->km[i])) {
			cli_error("slot %s %s: %s; nothing changed", sc->label,
			          keys_member_name(k->cfg, s, i), ss->km[i].err);
			for (size_t j = 0; j < i; j++)
				keys_member_close(&ss->km[j]);
			return false;
		}
		ss->n = i + 1;
	}
	return true;
}

static void close_all(struct slot_sessions *ss)
{
	for (size_t i = 0; i < ss->n; i++)
		keys_member_close(&ss->km[i]);
}

#define MAX_COPIES 4 /* objects of one identity on one member that we act on */

/* Sets the HSM key's usage flags for `bits` to `perms` on every member; undone on failure. */
static bool hsm_set_perms(struct kctx *k, size_t s, const struct p11p_vkey *v, uint32_t bits,
                          uint32_t perms)
{
	struct slot_sessions ss;
	struct undo {
		size_t m;
		CK_OBJECT_HANDLE h;
		CK_BBOOL old[P11P_VK_NPERMS];
	} undo[P11P_MAX_MEMBERS * MAX_COPIES];
	size_t n_undo = 0, n_attr;
	CK_ATTRIBUTE set[P11P_VK_NPERMS];
	CK_BBOOL val[P11P_VK_NPERMS];
	bool ok = true;

	n_attr = p11p_vk_usage_template(bits & p11p_vk_class_perms(v->cls), perms, set, val);
	if (n_attr == 0)
		return true;
	if (!open_all(k, s, &ss))
		return false;
	for (size_t m = 0; ok && m < ss.n; m++) {
		CK_OBJECT_HANDLE hs[MAX_COPIES];
		CK_ULONG nh = 0;
		CK_RV rv = keys_member_find(&ss.km[m], v->cls, v->ck_id, v->ck_id_len, v->label,
		                            v->label_len, hs, MAX_COPIES, &nh);

		if (rv != CKR_OK) {
			cli_error("%s: finding the key: %s", keys_member_name(k->cfg, s, m),
			          cli_rv(rv));
			ok = false;
			break;
		}
		for (CK_ULONG i = 0; i < nh && i < MAX_COPIES; i++) {
			struct undo *u = &undo[n_undo];
			CK_ATTRIBUTE get[P11P_VK_NPERMS];

			u->m = m;
			u->h = hs[i];
			for (size_t a = 0; a < n_attr; a++)
				get[a] = (CK_ATTRIBUTE){set[a].type, &u->old[a], 1};
			rv = p11p_be_C_GetAttributeValue(ss.km[m].bc, ss.km[m].h, hs[i], get,
			                                 (CK_ULONG)n_attr);
			if (rv == CKR_OK)
				rv = p11p_be_C_SetAttributeValue(ss.km[m].bc, ss.km[m].h, hs[i],
				                                 set, (CK_ULONG)n_attr);
			if (rv != CKR_OK) {
				cli_error("%s: setting the HSM key's usage flags: %s",
				          keys_member_name(k->cfg, s, m), cli_rv(rv));
				ok = false;
				break;
			}
			n_undo++;
		}
	}
	if (!ok) {
		for (size_t i = 0; i < n_undo; i++) {
			CK_ATTRIBUTE back[P11P_VK_NPERMS];

			for (size_t a = 0; a < n_attr; a++)
				back[a] = (CK_ATTRIBUTE){set[a].type, &undo[i].old[a], 1};
			p11p_be_C_SetAttributeValue(ss.km[undo[i].m].bc, ss.km[undo[i].m].h,
			                            undo[i].h, back, (CK_ULONG)n_attr);
		}
		cli_error("nothing changed");
	}
	close_all(&ss);
	return ok;
}

/*
 * Destroys the HSM key on every member. *left: the members that still hold
 * it afterwards (all of them when the sessions could not be opened).
 */
static bool hsm_destroy(struct kctx *k, size_t s, const struct p11p_vkey *v, uint32_t *left)
{
	struct slot_sessions ss;
	bool ok = true;

	*left = v->presence;
	if (!open_all(k, s, &ss))
		return false;
	for (size_t m = 0; m < ss.n; m++) {
		CK_OBJECT_HANDLE hs[MAX_COPIES];
		CK_ULONG nh = 0;
		CK_RV rv = keys_member_find(&ss.km[m], v->cls, v->ck_id, v->ck_id_len, v->label,
		                            v->label_len, hs, MAX_COPIES, &nh);

		for (CK_ULONG i = 0; rv == CKR_OK && i < nh && i < MAX_COPIES; i++)
			rv = p11p_be_C_DestroyObject(ss.km[m].bc, ss.km[m].h, hs[i]);
		if (rv == CKR_OK && nh > MAX_COPIES)
			rv = CKR_GENERAL_ERROR;
		if (rv != CKR_OK) {
			cli_error("%s: destroying the HSM key: %s", keys_member_name(k->cfg, s, m),
			          cli_rv(rv));
			ok = false;
			continue;
		}
		*left &= ~(1u << m);
	}
	close_all(&ss);
	return ok;
}

static int cmp_slot_policy(struct kctx *k, const struct p11p_vkey *v, size_t *s,
                           struct p11p_policy_cfg *pol)
{
	char err[KEYS_ERR_LEN];

	*s = keys_slot_by_label(k->cfg, v->slot);
	if (*s == (size_t)-1) {
		cli_error("%016llx: slot %s is not in %s", (unsigned long long)v->vid, v->slot,
		          k->cfg->path);
		return -1;
	}
	err[0] = '\0';
	if (p11p_policy_read(k->cfg, k->idx, *s, pol, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		return -1;
	}
	return 0;
}

/* deactivate, activate: the record only, whatever the policy (P11P_VK_CHANGE_STATE). */
static int do_state(struct kctx *k, const char *key, enum p11p_vk_state to, const char *done)
{
	struct p11p_vkey v;
	struct state_change sc = {.to = to};
	bool changed;
	size_t blen = 0;
	int rc = resolve(k, key, false, &v);
	CK_RV rv;

	if (rc != 0)
		return rc;
	rv = p11p_index_get_blob(k->idx, v.vid, NULL, 0, &blen, &sc.software);
	if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL)
		return fail_rv("reading the index", rv);
	rc = rmw(k, &v, ch_state, &sc, &changed);
	if (rc == CLI_OK && changed)
		answer(k, &v, true, false, done);
	return rc;
}

static int do_delete(struct kctx *k, const char *key)
{
	static const struct state_change deleted_state = {.to = P11P_VK_DELETED};
	struct p11p_policy_cfg pol;
	struct p11p_vkey v;
	uint32_t left;
	bool changed, deleted = false;
	size_t s;
	int rc = resolve(k, key, false, &v);
	CK_RV rv;

	if (rc != 0)
		return rc;
	if (cmp_slot_policy(k, &v, &s, &pol) != 0)
		return CLI_FAIL;
	if (p11p_vk_route(&pol, P11P_VK_CHANGE_DELETE) == P11P_VK_RECORD_ONLY) {
		rc = rmw(k, &v, ch_state, &deleted_state, &changed);
		if (rc == CLI_OK && changed)
			answer(k, &v, true, false,
			       "deleted (virtually: the HSM key stays; write_back is off)");
		return rc;
	}
	if (!hsm_destroy(k, s, &v, &left)) {
		if (left != v.presence) {
			/* Some copies are gone for good: the record says which members still hold
			 * one. */
			for (int attempt = 0; attempt < KEYS_RETRIES; attempt++) {
				bool found = false;

				if (p11p_index_refresh(k->idx) != CKR_OK ||
				    p11p_index_get(k->idx, v.vid, &v, &found) != CKR_OK || !found)
					break;
				v.presence &= left;
				if (p11p_index_put(k->idx, &v) != P11P_INDEX_CONFLICT)
					break;
			}
		}
		return CLI_FAIL;
	}
	rv = p11p_index_delete(k->idx, v.vid, &deleted);
	if (rv != CKR_OK)
		return fail_rv("the HSM key is destroyed but the record stays", rv);
	answer(k, &v, true, true, "deleted, with the HSM key on every member (write_back)");
	return CLI_OK;
}

static int do_perms(struct kctx *k, const char *key, bool allow, int argc, char **argv)
{
	struct perm_change pc = {0, allow};
	struct p11p_policy_cfg pol;
	struct p11p_vkey v;
	uint32_t applicable;
	bool changed, hsm;
	char pb[P11P_VK_PERMS_STR];
	const char *bad = NULL;
	size_t s;
	int rc;

	if (argc == 0)
		return cli_usage("keys",
		                 "%s needs at least one OPERATION (encrypt decrypt sign "
		                 "verify wrap unwrap derive, or all)",
		                 allow ? "allow" : "deny");
	pc.bits = p11p_vk_perm_list_parse(argc, argv, &bad);
	if (pc.bits == 0)
		return cli_usage("keys",
		                 "unknown operation '%s' (encrypt decrypt sign verify wrap "
		                 "unwrap derive, or all)",
		                 bad != NULL ? bad : "");
	rc = resolve(k, key, false, &v);
	if (rc != 0)
		return rc;
	/* Named one by one, each must apply to the key's class; `all` is what applies. */
	applicable = p11p_vk_class_perms(v.cls);
	for (int i = 0; i < argc; i++) {
		uint32_t b = p11p_vk_perm_parse(argv[i]);

		if (b != P11P_VK_ALL && !(b & applicable)) {
			cli_error("%016llx: '%s' does not apply to a %s key",
			          (unsigned long long)v.vid, argv[i], p11p_vk_class_name(v.cls));
			return CLI_FAIL;
		}
	}
	pc.bits &= applicable;
	if (cmp_slot_policy(k, &v, &s, &pol) != 0)
		return CLI_FAIL;
	hsm = p11p_vk_route(&pol, P11P_VK_CHANGE_PERMS) == P11P_VK_HSM_FIRST;
	if (hsm && !hsm_set_perms(k, s, &v, pc.bits, allow ? P11P_VK_ALL : 0))
		return CLI_FAIL;
	rc = rmw(k, &v, ch_perms, &pc, &changed);
	if (rc == CLI_OK && changed) {
		char msg[128];

		snprintf(msg, sizeof(msg), "permissions now %s%s", keys_perms_shown(&v, pb),
		         hsm ? " (and on the HSM key, write_back)" : "");
		answer(k, &v, true, false, msg);
	}
	return rc;
}

/* ---- rotate ------------------------------------------------------------------------------- */

/* The least CKA_ID length of a rotated key (random bytes), unless --id says otherwise. */
#define ROTATE_ID_MIN 16

/* A fresh virtual id no record has (checked on this handle's view; 2^-64 otherwise). */
static uint64_t fresh_vid(struct p11p_index *idx)
{
	for (;;) {
		uint64_t vid = 0;
		bool found = true;
		struct p11p_vkey tmp;

		if (getrandom(&vid, sizeof(vid), 0) != (ssize_t)sizeof(vid))
			return 0;
		if (vid != 0 && p11p_index_get(idx, vid, &tmp, &found) == CKR_OK && !found)
			return vid;
	}
}

/*
 * A random CKA_ID of id_len bytes that no key of the slot has (short ids have
 * few values: a few tries; the caller's key would otherwise share its id).
 */
static bool fresh_id(struct p11p_index *idx, const char *slot, unsigned char *id, size_t id_len)
{
	for (int tries = 0; tries < 1000; tries++) {
		struct p11p_vkey_match m = {
		    .slot = slot, .has_ck_id = true, .ck_id = id, .ck_id_len = id_len};
		size_t count = 1;

		if (getrandom(id, id_len, 0) != (ssize_t)id_len)
			return false;
		if (p11p_index_find(idx, &m, NULL, 0, &count) == CKR_OK && count == 0)
			return true;
	}
	return false;
}

struct rot_attrs {
	CK_KEY_TYPE kt;
	CK_ULONG value_len;
	CK_BBOOL flags[P11P_VK_NPERMS], sensitive, extractable, priv;
	CK_BYTE modulus[1024], exponent[16], ec_params[256];
	CK_ULONG modulus_len, exponent_len, ec_params_len;
	bool have_flag[P11P_VK_NPERMS];
	uint32_t usage; /* the usage flags that are true */
};

/* Reads what the new key copies from the old one (attributes it lacks are left out). */
static CK_RV read_old(struct keys_member *km, CK_OBJECT_HANDLE h, CK_OBJECT_CLASS cls,
                      struct rot_attrs *ra)
{
	CK_ATTRIBUTE a[8 + P11P_VK_NPERMS] = {
	    {CKA_KEY_TYPE, &ra->kt, sizeof(ra->kt)},
	    {CKA_SENSITIVE, &ra->sensitive, 1},
	    {CKA_EXTRACTABLE, &ra->extractable, 1},
	    {CKA_PRIVATE, &ra->priv, 1},
	    {CKA_VALUE_LEN, &ra->value_len, sizeof(ra->value_len)},
	    {CKA_MODULUS, ra->modulus, sizeof(ra->modulus)},
	    {CKA_PUBLIC_EXPONENT, ra->exponent, sizeof(ra->exponent)},
	    {CKA_EC_PARAMS, ra->ec_params, sizeof(ra->ec_params)},
	    /* then the usage flags */
	};
	CK_RV rv;

	memset(ra, 0, sizeof(*ra));
	p11p_vk_usage_template(P11P_VK_ALL, 0, a + 8, ra->flags);
	rv = p11p_be_C_GetAttributeValue(km->bc, km->h, h, a, sizeof(a) / sizeof(a[0]));
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE &&
	    rv != CKR_BUFFER_TOO_SMALL)
		return rv;
	if (a[0].ulValueLen != sizeof(ra->kt))
		return CKR_KEY_TYPE_INCONSISTENT;
	if (a[1].ulValueLen != 1)
		ra->sensitive = cls != CKO_PUBLIC_KEY;
	if (a[2].ulValueLen != 1)
		ra->extractable = CK_FALSE;
	if (a[3].ulValueLen != 1)
		ra->priv = CK_TRUE;
	if (a[4].ulValueLen != sizeof(ra->value_len))
		ra->value_len = 0;
	ra->modulus_len = a[5].ulValueLen <= sizeof(ra->modulus) ? a[5].ulValueLen : 0;
	ra->exponent_len = a[6].ulValueLen <= sizeof(ra->exponent) ? a[6].ulValueLen : 0;
	ra->ec_params_len = a[7].ulValueLen <= sizeof(ra->ec_params) ? a[7].ulValueLen : 0;
	for (unsigned i = 0; i < P11P_VK_NPERMS; i++)
		ra->have_flag[i] = a[8 + i].ulValueLen == 1;
	ra->usage = p11p_vk_usage_read(a + 8, P11P_VK_NPERMS);
	return CKR_OK;
}

/* Appends the usage flags the old key had (those its class carries: p11p_vk_class_attrs()). */
static CK_ULONG add_flags(CK_ATTRIBUTE *t, CK_ULONG n, struct rot_attrs *ra, uint32_t carried)
{
	for (unsigned b = 0; b < P11P_VK_NPERMS; b++)
		if (ra->have_flag[b] && (carried & (1u << b)))
			t[n++] = (CK_ATTRIBUTE){p11p_vk_perm_attr(b), &ra->flags[b], 1};
	return n;
}

/* The new HSM key(s) on member km: new_h[0] the key (secret or private), new_h[1] a public key. */
static bool generate(struct keys_member *km, const struct p11p_vkey *v, CK_OBJECT_HANDLE old_h,
                     CK_OBJECT_HANDLE old_pub, const unsigned char *id, size_t id_len,
                     CK_OBJECT_HANDLE new_h[2])
{
	static CK_BBOOL yes = CK_TRUE;
	struct rot_attrs ra, pa;
	CK_ATTRIBUTE t[24], pt[16];
	CK_ULONG n = 0, pn = 0, bits;
	CK_MECHANISM mech = {0, NULL, 0};
	CK_OBJECT_CLASS sec = CKO_SECRET_KEY, prv = CKO_PRIVATE_KEY, pub = CKO_PUBLIC_KEY;
	CK_BBOOL half[P11P_VK_NPERMS];
	char tb[32];
	CK_RV rv = read_old(km, old_h, v->cls, &ra);

	new_h[0] = new_h[1] = CK_INVALID_HANDLE;
	if (rv != CKR_OK) {
		cli_error("reading the old HSM key: %s", cli_rv(rv));
		return false;
	}
	t[n++] = (CK_ATTRIBUTE){CKA_CLASS, v->cls == CKO_SECRET_KEY ? &sec : &prv, sizeof(sec)};
	t[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &ra.kt, sizeof(ra.kt)};
	t[n++] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, 1};
	t[n++] = (CK_ATTRIBUTE){CKA_PRIVATE, &ra.priv, 1};
	t[n++] = (CK_ATTRIBUTE){CKA_SENSITIVE, &ra.sensitive, 1};
	t[n++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, &ra.extractable, 1};
	t[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)(uintptr_t)v->label, v->label_len};
	t[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)(uintptr_t)id, id_len};
	n = add_flags(t, n, &ra, p11p_vk_class_attrs(v->cls));
	if (v->cls == CKO_SECRET_KEY) {
		switch (ra.kt) {
		case CKK_AES:
			mech.mechanism = CKM_AES_KEY_GEN;
			break;
		case CKK_GENERIC_SECRET:
			mech.mechanism = CKM_GENERIC_SECRET_KEY_GEN;
			break;
		case CKK_DES3:
			mech.mechanism = CKM_DES3_KEY_GEN;
			break;
		default:
			cli_error("rotate: cannot generate a %s secret key",
			          keys_type_name(ra.kt, tb, sizeof(tb)));
			return false;
		}
		if (ra.kt != CKK_DES3 && ra.value_len > 0)
			t[n++] = (CK_ATTRIBUTE){CKA_VALUE_LEN, &ra.value_len, sizeof(ra.value_len)};
		rv = p11p_be_C_GenerateKey(km->bc, km->h, &mech, t, n, &new_h[0]);
		if (rv != CKR_OK) {
			cli_error("rotate: C_GenerateKey: %s", cli_rv(rv));
			return false;
		}
		return true;
	}
	/* A key pair: the public half copies the old public key's flags when there is one. */
	pt[pn++] = (CK_ATTRIBUTE){CKA_CLASS, &pub, sizeof(pub)};
	pt[pn++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &ra.kt, sizeof(ra.kt)};
	pt[pn++] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, 1};
	pt[pn++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)(uintptr_t)v->label, v->label_len};
	pt[pn++] = (CK_ATTRIBUTE){CKA_ID, (void *)(uintptr_t)id, id_len};
	if (old_pub != CK_INVALID_HANDLE && read_old(km, old_pub, CKO_PUBLIC_KEY, &pa) == CKR_OK) {
		pn = add_flags(pt, pn, &pa, p11p_vk_class_attrs(CKO_PUBLIC_KEY));
	} else {
		/* No old public key: the public halves of the private key's uses (as recorded). */
		pn += p11p_vk_usage_template(p11p_vk_class_perms(CKO_PUBLIC_KEY),
		                             p11p_vk_public_half(ra.usage), pt + pn, half);
	}
	if (ra.kt == CKK_RSA) {
		if (ra.modulus_len == 0) {
			cli_error("rotate: cannot read the old key's modulus");
			return false;
		}
		bits = ra.modulus_len * 8;
		mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
		pt[pn++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof(bits)};
		if (ra.exponent_len > 0)
			pt[pn++] =
			    (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, ra.exponent, ra.exponent_len};
	} else if (ra.kt == CKK_EC) {
		if (ra.ec_params_len == 0) {
			cli_error("rotate: cannot read the old key's curve (CKA_EC_PARAMS)");
			return false;
		}
		mech.mechanism = CKM_EC_KEY_PAIR_GEN;
		pt[pn++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, ra.ec_params, ra.ec_params_len};
	} else {
		cli_error("rotate: cannot generate a %s key pair",
		          keys_type_name(ra.kt, tb, sizeof(tb)));
		return false;
	}
	rv = p11p_be_C_GenerateKeyPair(km->bc, km->h, &mech, pt, pn, t, n, &new_h[1], &new_h[0]);
	if (rv != CKR_OK) {
		cli_error("rotate: C_GenerateKeyPair: %s", cli_rv(rv));
		return false;
	}
	return true;
}

/*
 * Copies the new key (and its public key) from member gen to the slot's other
 * members holding the old key, under the replication key. false (with a
 * message) when a member cannot be reached or refuses: the caller undoes.
 */
static bool copy_new(struct kctx *k, size_t s, const struct p11p_vkey *v, struct keys_member *km,
                     size_t gen, const CK_OBJECT_HANDLE new_h[2], struct keys_member **others,
                     CK_OBJECT_HANDLE made[][2], uint32_t *presence)
{
	const struct p11p_slot_cfg *sc = &k->cfg->slots[s];
	char why[256];

	*others = p11p_calloc(P11P_MAX_MEMBERS, sizeof(**others));
	if (*others == NULL) {
		cli_error("out of memory");
		return false;
	}
	for (size_t i = 0; i < sc->n_members && i < P11P_MAX_MEMBERS; i++) {
		struct keys_member *o = &(*others)[i];

		if (i == gen || !(v->presence & (1u << i)))
			continue;
		if (!keys_member_open(k->bes, &sc->members[i], i, true, true, o)) {
			cli_error("slot %s %s: %s; nothing changed", v->slot,
			          keys_member_name(k->cfg, s, i), o->err);
			return false;
		}
		for (int h = 0; h < 2; h++) {
			CK_RV rv;

			if (new_h[h] == CK_INVALID_HANDLE)
				continue;
			rv = p11p_repl_copy_key(km->m.be, km->h, gen, new_h[h], o->m.be, o->h, i,
			                        sc->ha.replication_key, &made[i][h], why,
			                        sizeof(why));
			if (rv != CKR_OK) {
				cli_error("rotate: copying the new key to %s: %s; nothing changed",
				          keys_member_name(k->cfg, s, i),
				          why[0] ? why : cli_rv(rv));
				return false;
			}
		}
		*presence |= 1u << i;
	}
	return true;
}

/* Destroys the new key on member gen and every copy made so far. */
static void undo_new(struct keys_member *km, const CK_OBJECT_HANDLE new_h[2],
                     struct keys_member *others, CK_OBJECT_HANDLE made[][2])
{
	for (int h = 0; h < 2; h++)
		if (new_h[h] != CK_INVALID_HANDLE)
			p11p_be_C_DestroyObject(km->bc, km->h, new_h[h]);
	for (size_t i = 0; others != NULL && i < P11P_MAX_MEMBERS; i++)
		for (int h = 0; h < 2; h++)
			if (others[i].open && made[i][h] != CK_INVALID_HANDLE)
				p11p_be_C_DestroyObject(others[i].bc, others[i].h, made[i][h]);
}

static int popcount16(uint32_t x)
{
	int n = 0;

	for (; x; x &= x - 1)
		n++;
	return n;
}

/*
 * The new key's CKA_ID: --id HEX (which no key of the slot may have already),
 * or at least ROTATE_ID_MIN random bytes, more when the old id was longer.
 */
static bool new_ck_id(struct kctx *k, const struct p11p_vkey *v, unsigned char *id, size_t *id_len)
{
	if (k->new_id != NULL) {
		struct p11p_vkey_match m = {.slot = v->slot, .has_ck_id = true, .ck_id = id};
		size_t count = 1;

		*id_len = k->id_len;
		memcpy(id, k->id, *id_len);
		m.ck_id_len = *id_len;
		if (p11p_index_find(k->idx, &m, NULL, 0, &count) != CKR_OK || count != 0) {
			cli_error("--id %s: a key of slot %s has that CKA_ID already", k->new_id,
			          v->slot);
			return false;
		}
		return true;
	}
	*id_len = v->ck_id_len > ROTATE_ID_MIN ? v->ck_id_len : ROTATE_ID_MIN;
	if (!fresh_id(k->idx, v->slot, id, *id_len)) {
		cli_error("no fresh CKA_ID of %zu bytes for the new key", *id_len);
		return false;
	}
	return true;
}

/*
 * The answer of a rotation: recs[1] the old key, recs[0] the new one,
 * recs[2] (n_recs > 2) its new public key; `where` says where it lives.
 */
static void rotated(struct kctx *k, const struct p11p_vkey *recs, size_t n_recs,
                    const unsigned char *id, size_t id_len, const char *where)
{
	char ib[2 * P11P_INDEX_ID_MAX + 1], pb[P11P_VK_PERMS_STR];

	if (k->json) {
		json_t *doc = json_object();

		cli_jset(doc, "action", json_string("rotate"));
		cli_jset(doc, "old", keys_json_record(k->cfg, &recs[1]));
		cli_jset(doc, "new", keys_json_record(k->cfg, &recs[0]));
		if (n_recs > 2)
			cli_jset(doc, "new_public", keys_json_record(k->cfg, &recs[2]));
		cli_json_print(doc);
		return;
	}
	printf("%016llx: rotated to %016llx (id %s, %s); the old key keeps %s\n",
	       (unsigned long long)recs[1].vid, (unsigned long long)recs[0].vid,
	       cli_hex(id, id_len, ib, sizeof(ib)), where, keys_perms_shown(&recs[1], pb));
	if (n_recs > 2)
		printf("%016llx: its new public key\n", (unsigned long long)recs[2].vid);
}

static int rotate_software(struct kctx *k, const struct p11p_vkey *old, size_t s);

static int do_rotate(struct kctx *k, const char *key)
{
	struct p11p_policy_cfg pol;
	struct p11p_vkey v, pubrec, recs[4];
	struct keys_member km;
	CK_OBJECT_HANDLE old_h[MAX_COPIES], old_pub[MAX_COPIES], new_h[2] = {0, 0};
	CK_ULONG nh = 0, np = 0;
	unsigned char id[P11P_INDEX_ID_MAX];
	size_t id_len, s, gen = 0, n_recs;
	bool have_pub = false, stored = false;
	CK_RV rv = CKR_OK;
	struct keys_member *others = NULL; /* the other members' sessions, by index */
	CK_OBJECT_HANDLE made[P11P_MAX_MEMBERS][2];
	uint32_t presence;
	const char *repl;
	bool copies;
	int rc = resolve(k, key, false, &v);

	if (rc != 0)
		return rc;
	if (cmp_slot_policy(k, &v, &s, &pol) != 0)
		return CLI_FAIL;
	repl = k->cfg->slots[s].ha.replication_key;
	if (v.cls == CKO_PUBLIC_KEY) {
		cli_error("%016llx: a public key: rotate its private key",
		          (unsigned long long)v.vid);
		return CLI_FAIL;
	}
	if (v.state != P11P_VK_ACTIVE && v.state != P11P_VK_DEACTIVATED) {
		cli_error("%016llx: %s: only an active or deactivated key can be rotated",
		          (unsigned long long)v.vid, p11p_vk_state_name(v.state));
		return CLI_FAIL;
	}
	if (v.next != 0) {
		cli_error("%016llx: already rotated (to %016llx)", (unsigned long long)v.vid,
		          (unsigned long long)v.next);
		return CLI_FAIL;
	}
	/*
	 * A software key (a record with a blob, issue 12): its successor is a
	 * software key too (rotate_software()), never an HSM key.
	 */
	{
		size_t blen = 0;
		bool sw = false;

		rv = p11p_index_get_blob(k->idx, v.vid, NULL, 0, &blen, &sw);
		if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL)
			return fail_rv("reading the index", rv);
		rv = CKR_OK;
		if (sw)
			return rotate_software(k, &v, s);
	}
	/*
	 * A key on several members: the new key is made on the first and copied to
	 * the others under ha.replication_key, as the module replicates new keys.
	 * Without a replication key it can live on one member only, which the slot
	 * must allow (single_member_keys): a failover would lose it otherwise.
	 */
	copies = popcount16(v.presence) > 1 && repl != NULL;
	if (popcount16(v.presence) > 1 && repl == NULL && !k->cfg->slots[s].ha.single_member_keys) {
		char mb[256];

		cli_error("%016llx: the key is on members %s of slot %s, and the slot has no "
		          "replication key to copy the new key with (ha.replication_key); set "
		          "one, or 'ha: {single_member_keys: true}' to keep the new key on one "
		          "member",
		          (unsigned long long)v.vid,
		          keys_presence_str(k->cfg, &v, true, mb, sizeof(mb)), v.slot);
		return CLI_FAIL;
	}
	while (gen < P11P_INDEX_MAX_MEMBERS && !(v.presence & (1u << gen)))
		gen++;
	if (gen >= k->cfg->slots[s].n_members) {
		cli_error("%016llx: no member holds the key (sync first)",
		          (unsigned long long)v.vid);
		return CLI_FAIL;
	}
	if (k->bes == NULL && (k->bes = cli_backends_new(k->cfg)) == NULL) {
		cli_error("out of memory");
		return CLI_FAIL;
	}
	if (!keys_member_open(k->bes, &k->cfg->slots[s].members[gen], gen, true, true, &km)) {
		cli_error("slot %s %s: %s; nothing changed", v.slot,
		          keys_member_name(k->cfg, s, gen), km.err);
		return CLI_FAIL;
	}
	rv = keys_member_find(&km, v.cls, v.ck_id, v.ck_id_len, v.label, v.label_len, old_h,
	                      MAX_COPIES, &nh);
	if (rv != CKR_OK || nh != 1) {
		cli_error("%016llx: %s holds %lu such keys%s%s", (unsigned long long)v.vid,
		          keys_member_name(k->cfg, s, gen), (unsigned long)nh,
		          rv != CKR_OK ? ": " : " (want one)", rv != CKR_OK ? cli_rv(rv) : "");
		rc = CLI_FAIL;
		goto out;
	}
	if (v.cls == CKO_PRIVATE_KEY &&
	    keys_member_find(&km, CKO_PUBLIC_KEY, v.ck_id, v.ck_id_len, v.label, v.label_len,
	                     old_pub, MAX_COPIES, &np) != CKR_OK)
		np = 0;
	if (!new_ck_id(k, &v, id, &id_len)) {
		rc = CLI_FAIL;
		goto out;
	}
	if (!generate(&km, &v, old_h[0], np == 1 ? old_pub[0] : CK_INVALID_HANDLE, id, id_len,
	              new_h)) {
		rc = CLI_FAIL;
		goto out;
	}
	presence = 1u << gen;
	memset(made, 0, sizeof(made));
	if (copies && !copy_new(k, s, &v, &km, gen, new_h, &others, made, &presence)) {
		undo_new(&km, new_h, others, made);
		rc = CLI_FAIL;
		goto out;
	}
	/* The records: new key (and public key) linked to the old one, in one transaction. */
	for (int attempt = 0; attempt < KEYS_RETRIES && !stored; attempt++) {
		struct p11p_vkey_match m = {.slot = v.slot,
		                            .has_class = true,
		                            .cls = CKO_PUBLIC_KEY,
		                            .has_ck_id = true,
		                            .ck_id = v.ck_id,
		                            .ck_id_len = v.ck_id_len,
		                            .has_label = true,
		                            .label = v.label,
		                            .label_len = v.label_len};
		bool found = false;
		size_t count = 0;

		rv = p11p_index_refresh(k->idx);
		if (rv == CKR_OK)
			rv = p11p_index_get(k->idx, v.vid, &v, &found);
		if (rv != CKR_OK || !found)
			break;
		have_pub = false;
		if (v.cls == CKO_PRIVATE_KEY &&
		    p11p_index_find(k->idx, &m, &pubrec, 1, &count) == CKR_OK && count == 1 &&
		    pubrec.state != P11P_VK_DELETED)
			have_pub = true;
		recs[0] = v;
		recs[0].vid = fresh_vid(k->idx);
		recs[0].rev = 0;
		memcpy(recs[0].ck_id, id, id_len);
		recs[0].ck_id_len = id_len;
		recs[0].state = P11P_VK_ACTIVE;
		recs[0].origin = P11P_VK_CREATED;
		recs[0].presence = presence;
		recs[0].created = 0;
		recs[0].prev = v.vid;
		recs[0].next = 0;
		recs[1] = v;
		recs[1].next = recs[0].vid;
		recs[1].perms = p11p_vk_rotated_perms(p11p_vk_perms_of(&v));
		n_recs = 2;
		if (new_h[1] != CK_INVALID_HANDLE) {
			recs[2] = recs[0];
			recs[2].vid = fresh_vid(k->idx);
			recs[2].cls = CKO_PUBLIC_KEY;
			/* The old public key's, or (as on the HSM) the private key's public half.
			 */
			recs[2].perms = have_pub ? p11p_vk_perms_of(&pubrec)
			                         : p11p_vk_public_half(p11p_vk_perms_of(&v));
			recs[2].prev = have_pub ? pubrec.vid : 0;
			n_recs = 3;
			if (have_pub) {
				recs[3] = pubrec;
				recs[3].next = recs[2].vid;
				recs[3].perms = p11p_vk_rotated_perms(p11p_vk_perms_of(&pubrec));
				n_recs = 4;
			}
		}
		if (recs[0].vid == 0 || (n_recs > 2 && recs[2].vid == 0)) {
			rv = CKR_FUNCTION_FAILED;
			break;
		}
		rv = p11p_index_put_batch(k->idx, recs, n_recs);
		if (rv == CKR_OK)
			stored = true;
		else if (rv != P11P_INDEX_CONFLICT)
			break;
	}
	if (!stored) {
		char err[KEYS_ERR_LEN] = "";

		p11p_index_last_error(k->idx, err, sizeof(err));
		cli_error("rotate: recording the new key failed (%s); the new HSM key is destroyed",
		          err[0] ? err : cli_rv(rv));
		undo_new(&km, new_h, others, made);
		rc = CLI_FAIL;
		goto out;
	}
	{
		char mb[256], where[300];

		snprintf(where, sizeof(where), "on members %s",
		         keys_presence_str(k->cfg, &recs[0], true, mb, sizeof(mb)));
		rotated(k, recs, n_recs, id, id_len, where);
	}
	rc = CLI_OK;
out:
	if (others != NULL) {
		for (size_t i = 0; i < P11P_MAX_MEMBERS; i++)
			keys_member_close(&others[i]);
		p11p_free(others);
	}
	keys_member_close(&km);
	return rc;
}

/* ---- the command -------------------------------------------------------------------------- */

/* ---- rewrap (software keys, issue 12) ----------------------------------------------------- */

/* The one secret key labelled `label` on the member (message printed otherwise). */
static bool rewrap_key(struct keys_member *km, const char *slot, const char *member,
                       const char *label, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_LABEL, (void *)(uintptr_t)label, strlen(label)},
	};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	CK_RV rv = p11p_be_C_FindObjectsInit(km->bc, km->h, t, 2);

	if (rv == CKR_OK) {
		rv = p11p_be_C_FindObjects(km->bc, km->h, h, 2, &n);
		p11p_be_C_FindObjectsFinal(km->bc, km->h);
	}
	if (rv != CKR_OK) {
		cli_error("slot %s %s: looking for the key labelled '%s': %s", slot, member,
		          cli_esc(label), cli_rv(rv));
		return false;
	}
	if (n != 1) {
		cli_error("slot %s %s: %s secret key labelled '%s'; nothing changed", slot, member,
		          n == 0 ? "no" : "more than one", cli_esc(label));
		return false;
	}
	*out = h[0];
	return true;
}

/* One AES-GCM call under an HSM key (the layout and additional data: keymodel/swblob.h). */
static CK_RV rewrap_gcm(struct keys_member *km, bool enc, CK_OBJECT_HANDLE key,
                        const struct p11p_vkey *rec, const unsigned char *hdr,
                        const unsigned char *in, size_t in_len, unsigned char *out,
                        CK_ULONG *out_len)
{
	unsigned char aad[P11P_SWB_AAD_MAX];
	size_t aad_len = p11p_swb_aad(rec, hdr, aad);
	CK_GCM_PARAMS gp;
	CK_MECHANISM m;
	CK_RV rv;

	if (aad_len == 0)
		return CKR_DATA_INVALID;
	p11p_swb_mech(&m, &gp, hdr + 5, aad, aad_len);
	rv = enc ? p11p_be_C_EncryptInit(km->bc, km->h, &m, key)
	         : p11p_be_C_DecryptInit(km->bc, km->h, &m, key);
	if (rv == CKR_OK)
		rv = enc ? p11p_be_C_Encrypt(km->bc, km->h, (CK_BYTE_PTR)(uintptr_t)in, in_len, out,
		                             out_len)
		         : p11p_be_C_Decrypt(km->bc, km->h, (CK_BYTE_PTR)(uintptr_t)in, in_len, out,
		                             out_len);
	return rv;
}

/*
 * rec's blob (blob, len) decrypted under the HSM key `key` into *clear
 * (locked memory); *flags: its attribute flags. false with a message.
 */
static bool blob_open(struct keys_member *km, CK_OBJECT_HANDLE key, const struct p11p_vkey *rec,
                      const unsigned char *blob, size_t len, struct p11p_secret **clear,
                      uint32_t *flags)
{
	struct p11p_swb sb;
	unsigned char *buf;
	size_t map_len = 0;
	int locked = 0;
	CK_ULONG clen;
	CK_RV rv;

	*clear = NULL;
	if (p11p_swb_parse(blob, len, &sb) != CKR_OK) {
		cli_error("key %016llx: its stored value is malformed; nothing changed",
		          (unsigned long long)rec->vid);
		return false;
	}
	clen = sb.ct_len;
	buf = p11p_locked_alloc(clen, &map_len, &locked);
	if (buf == NULL) {
		cli_error("out of memory");
		return false;
	}
	rv = rewrap_gcm(km, false, key, rec, sb.hdr, sb.ct, sb.ct_len, buf, &clen);
	if (rv != CKR_OK || clen != sb.ct_len - P11P_SWB_TAG_LEN)
		cli_error("key %016llx: its stored value does not decrypt under the current "
		          "wrapping key (%s): edited, moved, or already rewrapped; nothing changed",
		          (unsigned long long)rec->vid, cli_rv(rv));
	else if ((*clear = p11p_secret_new(buf, clen)) == NULL)
		cli_error("out of memory");
	p11p_wipe(buf, sb.ct_len);
	p11p_locked_free(buf, map_len, locked);
	*flags = sb.flags;
	return *clear != NULL;
}

/*
 * value (len bytes) sealed for rec with `flags` under the HSM key `key`
 * (keymodel/swblob.h) into *out (malloc'ed, *out_len bytes). false with a
 * message.
 */
static bool blob_seal(struct keys_member *km, CK_OBJECT_HANDLE key, const struct p11p_vkey *rec,
                      uint32_t flags, const unsigned char *value, size_t len, unsigned char **out,
                      size_t *out_len)
{
	unsigned char iv[P11P_SWB_IV_LEN], *nb;
	size_t total = P11P_SWB_HDR_LEN + len + P11P_SWB_TAG_LEN;
	CK_ULONG nlen = len + P11P_SWB_TAG_LEN;
	CK_RV rv = CKR_FUNCTION_FAILED;

	*out = NULL;
	if (len == 0 || len > P11P_SWB_VALUE_MAX || (nb = malloc(total)) == NULL) {
		cli_error("key %016llx: no room for its stored value; nothing changed",
		          (unsigned long long)rec->vid);
		return false;
	}
	if (getrandom(iv, sizeof(iv), 0) == (ssize_t)sizeof(iv)) {
		p11p_swb_header(nb, flags, iv);
		rv = rewrap_gcm(km, true, key, rec, nb, value, len, nb + P11P_SWB_HDR_LEN, &nlen);
	}
	if (rv != CKR_OK || nlen != len + P11P_SWB_TAG_LEN) {
		cli_error("key %016llx: encrypting under the wrapping key: %s; nothing changed",
		          (unsigned long long)rec->vid, cli_rv(rv));
		free(nb);
		return false;
	}
	*out = nb;
	*out_len = total;
	return true;
}

/* rec's blob (in `old`) decrypted under from and encrypted under to into *out (malloc'ed). */
/*
 * A session on any member of slot s that can be used (the wrapping keys are
 * on every member), in *km (*mi: which), and the slot's wrapping key there:
 * keys rewrap and keys rotate of a software key. false (message printed,
 * *km closed) when no member will do.
 */
static bool wrapping_member(struct kctx *k, size_t s, struct keys_member *km, size_t *mi,
                            CK_OBJECT_HANDLE *wk)
{
	const struct p11p_slot_cfg *sc = &k->cfg->slots[s];

	if (k->bes == NULL && (k->bes = cli_backends_new(k->cfg)) == NULL) {
		cli_error("out of memory");
		return false;
	}
	for (*mi = 0; *mi < sc->n_members; (*mi)++) {
		if (keys_member_open(k->bes, &sc->members[*mi], *mi, false, true, km))
			break;
		cli_error("slot %s %s: %s; trying the next member", sc->label,
		          keys_member_name(k->cfg, s, *mi), km->err);
	}
	if (*mi == sc->n_members) {
		cli_error("slot %s: no member could be used; nothing changed", sc->label);
		return false;
	}
	if (!rewrap_key(km, sc->label, keys_member_name(k->cfg, s, *mi), sc->swkeys.wrapping_key,
	                wk)) {
		keys_member_close(km);
		return false;
	}
	return true;
}

static bool rewrap_one(struct keys_member *km, CK_OBJECT_HANDLE from, CK_OBJECT_HANDLE to,
                       const struct p11p_vkey *rec, const unsigned char *old, size_t old_len,
                       unsigned char **out, size_t *out_len)
{
	struct p11p_secret *clear = NULL;
	uint32_t flags = 0;
	bool ok = blob_open(km, from, rec, old, old_len, &clear, &flags) &&
	          blob_seal(km, to, rec, flags, p11p_secret_data(clear), p11p_secret_len(clear),
	                    out, out_len);

	p11p_secret_free(clear);
	return ok;
}

static int do_rewrap(struct kctx *k, const char *slot_arg, const char *to_label)
{
	size_t s = cli_slot_arg(k->cfg, "keys", slot_arg);
	const struct p11p_slot_cfg *sc;
	struct keys_member km;
	struct p11p_index_blob *bl = NULL;
	unsigned char *buf = NULL;
	uint64_t *ids = NULL;
	size_t n_ids = 0, n = 0, mi;
	CK_OBJECT_HANDLE from, to;
	int rc = CLI_FAIL;
	CK_RV rv;

	if (s == (size_t)-1)
		return CLI_USAGE;
	sc = &k->cfg->slots[s];
	if (sc->swkeys.wrapping_key == NULL) {
		cli_error("slot %s has no software_keys: in %s", sc->label, k->cfg->path);
		return CLI_FAIL;
	}
	if (strcmp(sc->swkeys.wrapping_key, to_label) == 0) {
		cli_error("slot %s: '%s' is the wrapping key already", sc->label,
		          cli_esc(to_label));
		return CLI_FAIL;
	}
	if (!wrapping_member(k, s, &km, &mi, &from))
		return CLI_FAIL;
	if (!rewrap_key(&km, sc->label, keys_member_name(k->cfg, s, mi), to_label, &to))
		goto out;
	rv = p11p_index_list(k->idx, sc->label, &ids, &n_ids);
	if (rv != CKR_OK) {
		rc = fail_rv("reading the index", rv);
		goto out;
	}
	buf = malloc(P11P_INDEX_BLOB_MAX);
	bl = calloc(n_ids ? n_ids : 1, sizeof(*bl));
	if (buf == NULL || bl == NULL) {
		cli_error("out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_ids; i++) {
		struct p11p_vkey rec;
		bool found = false;
		size_t len = 0;
		unsigned char *nb;

		rv = p11p_index_get(k->idx, ids[i], &rec, &found);
		if (rv == CKR_OK && found)
			rv = p11p_index_get_blob(k->idx, ids[i], buf, P11P_INDEX_BLOB_MAX, &len,
			                         &found);
		if (rv != CKR_OK) {
			rc = fail_rv("reading the index", rv);
			goto out;
		}
		if (!found)
			continue; /* an HSM key */
		if (!rewrap_one(&km, from, to, &rec, buf, len, &nb, &len))
			goto out;
		bl[n].vid = ids[i];
		bl[n].data = nb;
		bl[n].len = len;
		n++;
	}
	rv = p11p_index_replace_blobs(k->idx, bl, n);
	if (rv != CKR_OK) {
		rc = fail_rv("storing the re-encrypted keys (nothing changed)", rv);
		goto out;
	}
	if (k->json) {
		json_t *doc = json_object();

		cli_jset(doc, "action", cli_jstr("rewrap"));
		cli_jset(doc, "slot", cli_jstr(sc->label));
		cli_jset(doc, "wrapping_key", cli_jstr(to_label));
		cli_jset(doc, "rewrapped", json_integer((json_int_t)n));
		cli_jset(doc, "records", json_integer((json_int_t)n_ids));
		cli_json_print(doc);
	} else {
		printf(
		    "slot %s: %zu software key%s re-encrypted under '%s' (of %zu records), in one "
		    "transaction\n",
		    sc->label, n, n == 1 ? "" : "s", cli_esc(to_label), n_ids);
		printf("now set software_keys: wrapping_key: %s for slot %s in %s: until then the "
		       "module cannot open these keys\n",
		       cli_esc(to_label), sc->label, k->cfg->path);
	}
	rc = CLI_OK;
out:
	for (size_t i = 0; bl != NULL && i < n; i++)
		free((void *)(uintptr_t)bl[i].data);
	free(bl);
	free(buf);
	p11p_free(ids);
	keys_member_close(&km);
	return rc;
}

/* ---- rotate of a software key (issue 12) -------------------------------------------------- */

/* The CLI's random source for new software keys: OpenSSL's private DRBG, private library context.
 */
static CK_RV cli_rand(void *arg, unsigned char *buf, size_t len)
{
	(void)arg;
	return RAND_priv_bytes_ex(p11p_ossl_ctx(), buf, len, 0) == 1 ? CKR_OK : CKR_FUNCTION_FAILED;
}

/*
 * A successor's attribute flags: its predecessor's, as a key the proxy
 * generated (CKA_LOCAL; CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE as
 * PKCS#11 sets them for a generated key).
 */
static uint32_t successor_flags(uint32_t old)
{
	uint32_t f =
	    (old & ~(uint32_t)(P11P_SWB_F_ALWAYS_SENSITIVE | P11P_SWB_F_NEVER_EXTRACTABLE)) |
	    P11P_SWB_F_LOCAL;

	if (f & P11P_SWB_F_SENSITIVE)
		f |= P11P_SWB_F_ALWAYS_SENSITIVE;
	if (!(f & P11P_SWB_F_EXTRACTABLE))
		f |= P11P_SWB_F_NEVER_EXTRACTABLE;
	return f;
}

/* A new public key's flags when there is no old public key: its private key's public uses. */
static uint32_t public_flags(uint32_t priv)
{
	return P11P_SWB_F_LOCAL | ((priv & P11P_SWB_F_SIGN) ? P11P_SWB_F_VERIFY : 0) |
	       ((priv & P11P_SWB_F_DECRYPT) ? P11P_SWB_F_ENCRYPT : 0);
}

/*
 * The new key (and public key) of the same kind as the old one, whose
 * serialised form is `old` (crypto/swkey.h), made by the software-key engine
 * with cli_rand: a secret key of the same type and length, or a key pair on
 * the same curve or of the same modulus size and public exponent.
 */
static CK_RV successor(const struct p11p_vkey *v, const struct p11p_secret *old,
                       struct p11p_swkey *nk[2])
{
	struct p11p_swkey_pair_spec spec = {.type = v->key_type};
	struct p11p_swkey *ok = NULL;
	unsigned char params[64], e[16];
	CK_ULONG pl = sizeof(params), el = sizeof(e), bits = 0, bl = sizeof(bits);
	CK_RV rv;

	if (v->cls == CKO_SECRET_KEY)
		return p11p_swkey_generate(v->key_type, p11p_secret_len(old), cli_rand, NULL, 0,
		                           &nk[0]);
	rv = p11p_swkey_from_der(CKO_PRIVATE_KEY, v->key_type, p11p_secret_data(old),
	                         p11p_secret_len(old), 0, &ok);
	if (rv == CKR_OK && v->key_type == CKK_RSA) {
		rv = p11p_swkey_attr(ok, CKA_MODULUS_BITS, (unsigned char *)&bits, &bl);
		if (rv == CKR_OK)
			rv = p11p_swkey_attr(ok, CKA_PUBLIC_EXPONENT, e, &el);
		spec.modulus_bits = bits;
		spec.public_exponent = e;
		spec.public_exponent_len = el;
	} else if (rv == CKR_OK) {
		rv = p11p_swkey_attr(ok, CKA_EC_PARAMS, params, &pl);
		spec.ec_params = params;
		spec.ec_params_len = pl;
	}
	p11p_swkey_free(ok);
	if (rv == CKR_OK)
		rv = p11p_swkey_generate_pair(&spec, cli_rand, NULL, 0, &nk[0], &nk[1]);
	return rv;
}

/*
 * keys rotate of a software key: as for an HSM key (a successor record linked
 * to the old one, which keeps p11p_vk_rotated_perms()), but the new value is
 * made in software (successor()) and stored only as a blob sealed by the HSM
 * under the slot's wrapping key (blob_seal(), as keys rewrap does), on any
 * member that can be used. The new records with their blobs, the old
 * records linked to them and the audit rows are one store transaction
 * (p11p_index_put_batch_blobs()): all of the rotation, or nothing of it.
 */
static int rotate_software(struct kctx *k, const struct p11p_vkey *old, size_t s)
{
	const struct p11p_slot_cfg *sc = &k->cfg->slots[s];
	struct p11p_vkey v = *old, pubrec, recs[4];
	struct keys_member km;
	CK_OBJECT_HANDLE wk;
	unsigned char id[P11P_INDEX_ID_MAX], *buf = NULL, *blob[2] = {NULL, NULL};
	size_t id_len = 0, len = 0, blob_len[2] = {0, 0}, mi, n_recs = 2, count = 0;
	struct p11p_secret *clear = NULL, *nv = NULL;
	struct p11p_swkey *nk[2] = {NULL, NULL};
	uint32_t flags = 0, pflags = 0;
	bool found = false, have_pub = false, linked = false;
	struct p11p_vkey_match m = {.slot = v.slot,
	                            .has_class = true,
	                            .cls = CKO_PUBLIC_KEY,
	                            .has_ck_id = true,
	                            .ck_id = v.ck_id,
	                            .ck_id_len = v.ck_id_len,
	                            .has_label = true,
	                            .label = v.label,
	                            .label_len = v.label_len};
	int rc = CLI_FAIL;
	CK_RV rv;

	memset(&km, 0, sizeof(km));
	if (sc->swkeys.wrapping_key == NULL) {
		cli_error(
		    "%016llx: a software key, and slot %s has no software_keys: in %s; nothing "
		    "changed",
		    (unsigned long long)v.vid, sc->label, k->cfg->path);
		return CLI_FAIL;
	}
	if (!new_ck_id(k, &v, id, &id_len))
		return CLI_FAIL;
	if (!wrapping_member(k, s, &km, &mi, &wk))
		return CLI_FAIL;
	if ((buf = malloc(P11P_INDEX_BLOB_MAX)) == NULL) {
		cli_error("out of memory");
		goto out;
	}
	rv = p11p_index_get_blob(k->idx, v.vid, buf, P11P_INDEX_BLOB_MAX, &len, &found);
	if (rv != CKR_OK || !found) {
		rc = fail_rv("reading the key's stored value",
		             rv != CKR_OK ? rv : CKR_KEY_HANDLE_INVALID);
		goto out;
	}
	if (!blob_open(&km, wk, &v, buf, len, &clear, &flags))
		goto out;
	rv = successor(&v, clear, nk);
	if (rv != CKR_OK) {
		char tb[32];

		cli_error("%016llx: cannot make a new %s software key: %s; nothing changed",
		          (unsigned long long)v.vid, keys_type_name(v.key_type, tb, sizeof(tb)),
		          cli_rv(rv));
		goto out;
	}
	/* The public key record of the old pair, whose flags and permissions the new one takes. */
	if (v.cls == CKO_PRIVATE_KEY && p11p_index_find(k->idx, &m, &pubrec, 1, &count) == CKR_OK &&
	    count == 1 && pubrec.state != P11P_VK_DELETED) {
		struct p11p_swb sb;

		have_pub = true;
		found = false;
		pflags = public_flags(flags);
		if (p11p_index_get_blob(k->idx, pubrec.vid, buf, P11P_INDEX_BLOB_MAX, &len,
		                        &found) == CKR_OK &&
		    found && p11p_swb_parse(buf, len, &sb) == CKR_OK)
			pflags = successor_flags(sb.flags);
	} else {
		pflags = public_flags(flags);
	}
	recs[0] = v;
	recs[0].vid = fresh_vid(k->idx);
	recs[0].rev = 0;
	memcpy(recs[0].ck_id, id, id_len);
	recs[0].ck_id_len = id_len;
	recs[0].state = P11P_VK_ACTIVE;
	recs[0].origin = P11P_VK_CREATED;
	recs[0].presence = 0; /* held by no member */
	recs[0].created = 0;
	recs[0].prev = v.vid;
	recs[0].next = 0;
	if (nk[1] != NULL) {
		recs[2] = recs[0];
		recs[2].vid = fresh_vid(k->idx);
		recs[2].cls = CKO_PUBLIC_KEY;
		recs[2].perms = have_pub ? p11p_vk_perms_of(&pubrec)
		                         : p11p_vk_public_half(p11p_vk_perms_of(&v));
		recs[2].prev = have_pub ? pubrec.vid : 0;
		n_recs = have_pub ? 4 : 3;
	}
	if (recs[0].vid == 0 || (n_recs > 2 && recs[2].vid == 0)) {
		cli_error("no fresh virtual id; nothing changed");
		goto out;
	}
	/* Sealed for their records (vid, slot, class, type, CKA_ID: the additional data). */
	for (int i = 0; i < 2; i++) {
		if (nk[i] == NULL)
			continue;
		rv = p11p_swkey_serialise(nk[i], &nv);
		if (rv != CKR_OK) {
			rc = fail_rv("the new key", rv);
			goto out;
		}
		if (!blob_seal(&km, wk, &recs[i == 0 ? 0 : 2],
		               i == 0 ? successor_flags(flags) : pflags, p11p_secret_data(nv),
		               p11p_secret_len(nv), &blob[i], &blob_len[i]))
			goto out;
		p11p_secret_free(nv);
		nv = NULL;
	}
	/*
	 * The new records with their blobs and the old ones pointing to them, as a
	 * rotate leaves them, with the audit rows: one transaction (a failure or a
	 * crash leaves the old key as it was). Retried when the old records
	 * changed since they were read.
	 */
	for (int attempt = 0; attempt < KEYS_RETRIES && !linked; attempt++) {
		struct p11p_index_blob bl[4] = {{0}};
		struct p11p_vkey put[4];
		size_t n = 2;
		bool f1 = false, f2 = false;

		rv = p11p_index_refresh(k->idx);
		if (rv == CKR_OK)
			rv = p11p_index_get(k->idx, v.vid, &recs[1], &f1);
		if (rv == CKR_OK && n_recs > 3)
			rv = p11p_index_get(k->idx, pubrec.vid, &recs[3], &f2);
		if (rv != CKR_OK)
			break;
		if (!f1 || recs[1].next != 0 ||
		    (recs[1].state != P11P_VK_ACTIVE && recs[1].state != P11P_VK_DEACTIVATED)) {
			cli_error("%016llx: changed meanwhile (deleted, or rotated already)",
			          (unsigned long long)v.vid);
			rv = CKR_FUNCTION_FAILED;
			break;
		}
		recs[1].next = recs[0].vid;
		recs[1].perms = p11p_vk_rotated_perms(p11p_vk_perms_of(&recs[1]));
		put[0] = recs[0];
		bl[0].data = blob[0];
		bl[0].len = blob_len[0];
		put[1] = recs[1];
		if (n_recs > 2) {
			put[n] = recs[2];
			bl[n].data = blob[1];
			bl[n].len = blob_len[1];
			n++;
		}
		if (n_recs > 3 && f2 && recs[3].next == 0) {
			recs[3].next = recs[2].vid;
			recs[3].perms = p11p_vk_rotated_perms(p11p_vk_perms_of(&recs[3]));
			put[n++] = recs[3];
		}
		rv = p11p_index_put_batch_blobs(k->idx, put, n, bl);
		if (rv == CKR_OK) {
			linked = true;
			for (size_t i = 0; i < n; i++)
				recs[i] = put[i];
		} else if (rv != P11P_INDEX_CONFLICT) {
			break;
		}
	}
	if (!linked) {
		char err[KEYS_ERR_LEN] = "";

		p11p_index_last_error(k->idx, err, sizeof(err));
		cli_error("rotate: recording the new software key failed (%s); nothing changed",
		          err[0] ? err : cli_rv(rv));
		goto out;
	}
	rotated(k, recs, n_recs, id, id_len, "a software key");
	rc = CLI_OK;
out:
	for (int i = 0; i < 2; i++) {
		p11p_swkey_free(nk[i]);
		free(blob[i]);
	}
	p11p_secret_free(nv);
	p11p_secret_free(clear);
	free(buf);
	keys_member_close(&km);
	return rc;
}

int cmd_keys(struct cli *cli, int argc, char **argv)
{
	enum { O_ALL = CLI_OPT_FIRST, O_SLOT, O_ID, O_TO };
	static const struct option opts[] = {
	    {"all", no_argument, NULL, O_ALL},
	    {"slot", required_argument, NULL, O_SLOT},
	    {"id", required_argument, NULL, O_ID},
	    {"to", required_argument, NULL, O_TO},
	    {NULL, 0, NULL, 0},
	};
	static const char *const actions[] = {"list",   "show",  "deactivate", "activate", "delete",
	                                      "rotate", "allow", "deny",       "rewrap",   NULL};
	struct kctx k = {.cli = cli};
	const char *action, *key = NULL, *slot_arg = NULL, *to = NULL;
	char **rest;
	int n_rest, rc = CLI_FAIL, o;

	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "", opts)) != -1) {
		if (o == O_ALL)
			k.all = true;
		else if (o == O_SLOT)
			slot_arg = optarg;
		else if (o == O_ID)
			k.new_id = optarg;
		else if (o == O_TO)
			to = optarg;
		else
			return CLI_USAGE;
	}
	k.json = cli->json;
	if (optind >= argc)
		return cli_usage("keys", "no action given");
	action = argv[optind];
	rest = argv + optind + 1;
	n_rest = argc - optind - 1;
	if (cli_action("keys", action, actions, &rc) < 0)
		return rc;
	k.action = action;
	if ((to != NULL) != (strcmp(action, "rewrap") == 0))
		return cli_usage("keys",
		                 "rewrap SLOT --to LABEL: --to goes with rewrap, and rewrap "
		                 "needs it");
	if (to != NULL && (n_rest != 1 || slot_arg != NULL))
		return cli_usage("keys", "rewrap takes one SLOT (and --to LABEL)");
	if (k.new_id != NULL && strcmp(action, "rotate") != 0)
		return cli_usage("keys", "--id goes with rotate");
	if (k.new_id != NULL) {
		long n = cli_unhex(k.new_id, k.id, sizeof(k.id));

		if (n <= 0)
			return cli_usage("keys", "--id wants hex digits (1 to %d bytes), not '%s'",
			                 P11P_INDEX_ID_MAX, k.new_id);
		k.id_len = (size_t)n;
	}
	if (k.all && strcmp(action, "list") != 0)
		return cli_usage("keys", "--all goes with list");
	if (strcmp(action, "list") == 0) {
		if (n_rest > 0)
			return cli_usage("keys", "list takes no KEY (use --slot S)");
	} else {
		if (n_rest < 1)
			return cli_usage("keys", "%s needs a KEY", action);
		key = rest[0];
		if (n_rest > 1 && strcmp(action, "allow") != 0 && strcmp(action, "deny") != 0)
			return cli_usage("keys", "%s takes one KEY", action);
	}
	k.cfg = cli_config(cli);
	if (k.cfg == NULL)
		return CLI_FAIL;
	if (slot_arg != NULL) {
		size_t s = cli_slot_arg(k.cfg, "keys", slot_arg);

		if (s == (size_t)-1) {
			rc = CLI_USAGE;
			goto out;
		}
		k.slot = k.cfg->slots[s].label;
		if (k.slot == NULL || k.slot[0] == '\0') {
			cli_error("slot %s has no label: it has no virtual keys", slot_arg);
			goto out;
		}
	}
	if (keys_index_open(k.cfg, false, &k.idx) != 0)
		goto out;
	if (strcmp(action, "rewrap") == 0)
		rc = do_rewrap(&k, key, to);
	else if (strcmp(action, "list") == 0)
		rc = do_list(&k);
	else if (strcmp(action, "show") == 0)
		rc = do_show(&k, key);
	else if (strcmp(action, "deactivate") == 0)
		rc = do_state(&k, key, P11P_VK_DEACTIVATED,
		              "deactivated (virtually; the HSM key is unchanged)");
	else if (strcmp(action, "activate") == 0)
		rc = do_state(&k, key, P11P_VK_ACTIVE, "activated");
	else if (strcmp(action, "delete") == 0)
		rc = do_delete(&k, key);
	else if (strcmp(action, "rotate") == 0)
		rc = do_rotate(&k, key);
	else
		rc = do_perms(&k, key, strcmp(action, "allow") == 0, n_rest - 1, rest + 1);
out:
	keys_orders_free();
	cli_backends_free(k.bes);
	p11p_index_close(k.idx);
	p11p_config_free(k.cfg);
	return rc;
}
