/*
 * sync --check: do the members of a virtual slot hold the same token objects?
 * Lists the secret, private and public token keys, certificates and data
 * objects of every member by identity (CKA_CLASS + CKA_ID + CKA_LABEL, what
 * the proxy re-finds objects by after a failover; data objects have no
 * CKA_ID) and reports the objects some member lacks.
 *
 * sync --repair: copies each object a member lacks from a member that holds
 * it, as replication does (lib/ha/replicate.c: keys wrapped under the slot's
 * replication key, the rest by value), and prints counts per member. It talks to the
 * backends directly (lib/backend), logged in with each member's configured
 * PIN, or with one PIN read from the terminal (no echo) or stdin for the
 * members that have none.
 *
 * `sync` without --check adds the members' keys to the virtual-key index
 * (tools/cmd_sync_keys.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/call.h"
#include "base/attrs.h"
#include "base/mem.h"
#include "base/names.h"
#include "base/secret.h"
#include "cli.h"
#include "config/config.h"
#include "util.h"
#include "keymodel/model.h"
#include "ha/order.h"
#include "ha/replicate.h"
#include "metrics.h"
#include "index/index.h"
#include "keys.h"

#define ERR_LEN         512
#define SYNC_ID_MAX     256      /* CKA_ID / CKA_LABEL bytes compared (as the proxy keeps) */
#define SYNC_MAX_KEYS   100000UL /* keys of one class read from one member */
#define SYNC_FIND_CHUNK 256

struct key {
	CK_OBJECT_CLASS cls;
	CK_KEY_TYPE kt;
	CK_ULONG id_len, label_len;
	CK_BYTE id[SYNC_ID_MAX], label[SYNC_ID_MAX];
	size_t member;
	CK_OBJECT_HANDLE h; /* on that member (valid while its session is open: --repair) */
};

/* The classes compared and repaired, in that order. */
static const CK_OBJECT_CLASS sync_classes[] = {CKO_SECRET_KEY, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY,
                                               CKO_CERTIFICATE, CKO_DATA};
#define N_SYNC_CLASSES (sizeof(sync_classes) / sizeof(sync_classes[0]))

/* One member's listing. */
struct mstate {
	struct p11p_member m;
	struct p11p_bctx bc; /* calls under CLI_PROBE_TIMEOUT_MS */
	bool listed;
	unsigned long n_keys;
	char err[ERR_LEN];
	CK_SESSION_HANDLE h; /* kept open for --repair, else closed after listing */
	bool logged_in;
};

struct sync_ctx {
	const struct cli *cli;
	const struct p11p_config *cfg;
	struct cli_backends *bes;
	struct p11p_secret *pin; /* read once, for members without a configured PIN */
	bool pin_tried;
	struct key *keys;
	size_t n_keys, cap_keys;
};

/* The PIN for members without one in the config: asked once. NULL when none could be read. */
static const struct p11p_secret *shared_pin(struct sync_ctx *c)
{
	char buf[CLI_PIN_MAX + 1];
	long len;

	if (c->pin_tried)
		return c->pin;
	c->pin_tried = true;
	if (isatty(STDIN_FILENO))
		len = cli_read_pin_tty("User PIN (members without a configured PIN): ", buf,
		                       sizeof(buf));
	else
		len = cli_read_pin_fd(STDIN_FILENO, "stdin", buf, sizeof(buf));
	if (len > 0) {
		c->pin = p11p_secret_new(buf, (size_t)len);
		if (c->pin == NULL)
			cli_error("out of memory");
	} else if (len == 0) {
		cli_error("empty PIN");
	}
	p11p_wipe(buf, sizeof(buf));
	return c->pin;
}

/* Is there an index to read debts from? (None configured: no message, nothing to settle.) */
static bool has_index(const struct p11p_config *cfg)
{
	return cfg->index_path != NULL && cfg->index_path[0] == '/';
}

static int add_key(struct sync_ctx *c, const struct key *k)
{
	if (c->n_keys == c->cap_keys) {
		size_t cap = c->cap_keys ? c->cap_keys * 2 : 64;
		struct key *grown = p11p_reallocarray(c->keys, cap, sizeof(*grown));

		if (grown == NULL)
			return -1;
		c->keys = grown;
		c->cap_keys = cap;
	}
	c->keys[c->n_keys++] = *k;
	return 0;
}

/* Reads the token keys of one class into c->keys. */
static CK_RV list_class(struct sync_ctx *c, const struct p11p_bctx *bc, CK_SESSION_HANDLE h,
                        CK_OBJECT_CLASS cls, size_t member, unsigned long *count, char *err,
                        size_t errlen)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &yes, sizeof(yes)}};
	CK_OBJECT_HANDLE *hs = NULL, *grown;
	CK_ULONG n = 0, cap = 0, got;
	CK_RV rv = p11p_be_C_FindObjectsInit(bc, h, t, 2);

	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_FindObjectsInit: %s", cli_rv(rv));
		return rv;
	}
	for (;;) {
		if (n + SYNC_FIND_CHUNK > cap) {
			cap = cap ? cap * 2 : SYNC_FIND_CHUNK;
			grown = p11p_reallocarray(hs, cap, sizeof(*hs));
			if (grown == NULL) {
				rv = CKR_HOST_MEMORY;
				break;
			}
			hs = grown;
		}
		got = 0;
		rv = p11p_be_C_FindObjects(bc, h, hs + n, SYNC_FIND_CHUNK, &got);
		if (rv == CKR_OK && got > SYNC_FIND_CHUNK)
			rv = CKR_GENERAL_ERROR;
		if (rv != CKR_OK)
			break;
		n += got;
		if (got < SYNC_FIND_CHUNK)
			break;
		if (n >= SYNC_MAX_KEYS) {
			rv = CKR_BUFFER_TOO_SMALL;
			break;
		}
	}
	p11p_be_C_FindObjectsFinal(bc, h);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "%s",
		         rv == CKR_BUFFER_TOO_SMALL ? "too many keys to compare" : cli_rv(rv));
		goto out;
	}
	for (CK_ULONG i = 0; i < n; i++) {
		struct key k;
		CK_ATTRIBUTE a[] = {
		    {CKA_ID, k.id, sizeof(k.id)},
		    {CKA_LABEL, k.label, sizeof(k.label)},
		};
		CK_ATTRIBUTE kt = {CKA_KEY_TYPE, &k.kt, sizeof(k.kt)};

		memset(&k, 0, sizeof(k));
		k.cls = cls;
		k.member = member;
		k.h = hs[i];
		/* A data object has no CKA_ID: named by its label. */
		rv = cls == CKO_DATA ? p11p_be_C_GetAttributeValue(bc, h, hs[i], a + 1, 1)
		                     : p11p_be_C_GetAttributeValue(bc, h, hs[i], a, 2);
		if (cls == CKO_DATA)
			a[0].ulValueLen = 0;
		if (rv != CKR_OK || a[0].ulValueLen > sizeof(k.id) ||
		    a[1].ulValueLen > sizeof(k.label)) {
			snprintf(err, errlen, "cannot read a key's CKA_ID and CKA_LABEL: %s",
			         rv == CKR_OK ? "too long" : cli_rv(rv));
			rv = rv == CKR_OK ? CKR_GENERAL_ERROR : rv;
			goto out;
		}
		k.id_len = a[0].ulValueLen;
		k.label_len = a[1].ulValueLen;
		if (!p11p_vk_is_key_class(cls) ||
		    p11p_be_C_GetAttributeValue(bc, h, hs[i], &kt, 1) != CKR_OK ||
		    kt.ulValueLen != sizeof(k.kt))
			k.kt = CKK_VENDOR_DEFINED;
		if (add_key(c, &k) < 0) {
			rv = CKR_HOST_MEMORY;
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		(*count)++;
	}
out:
	p11p_free(hs);
	return rv;
}

/* Ends the session list_member kept open. */
static void member_close(struct mstate *ms)
{
	if (ms->h == CK_INVALID_HANDLE)
		return;
	if (ms->logged_in)
		p11p_be_C_Logout(&ms->bc, ms->h);
	p11p_be_C_CloseSession(&ms->bc, ms->h);
	ms->h = CK_INVALID_HANDLE;
	ms->logged_in = false;
}

/*
 * Finds the member's token, logs in, lists its token objects. keep: the
 * session stays open (read-write, member_close() ends it) for --repair.
 */
static void list_member(struct sync_ctx *c, const struct p11p_member_cfg *mc, size_t idx,
                        struct mstate *ms, bool keep)
{
	CK_UTF8CHAR pinbuf[P11P_MAX_PIN_LEN];
	const struct p11p_secret *pin;
	struct p11p_secret *own = NULL;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	const struct p11p_bctx *bc;
	bool logged_in = false;
	size_t len;
	CK_RV rv;

	memset(ms, 0, sizeof(*ms));
	ms->m.cfg = mc;
	atomic_init(&ms->m.health, P11P_UP);
	ms->m.be = cli_backend(c->bes, mc->backend, ms->err, sizeof(ms->err));
	if (ms->m.be == NULL)
		return;
	ms->bc = (struct p11p_bctx){.be = ms->m.be, .timeout_ms = CLI_PROBE_TIMEOUT_MS};
	bc = &ms->bc;
	rv = p11p_member_resolve(&ms->m, bc, ms->err, sizeof(ms->err));
	if (rv != CKR_OK) {
		if (ms->err[0] == '\0')
			snprintf(ms->err, sizeof(ms->err), "%s", cli_rv(rv));
		return;
	}
	rv = p11p_be_C_OpenSession(
	    bc, ms->m.be_slot, CKF_SERIAL_SESSION | (keep ? CKF_RW_SESSION : 0), NULL, NULL, &h);
	if (rv != CKR_OK) {
		snprintf(ms->err, sizeof(ms->err), "C_OpenSession: %s", cli_rv(rv));
		return;
	}
	if (mc->pin == NULL && mc->pin_source != NULL) {
		/* An added member: its PIN source, read as the module reads it. */
		char err[ERR_LEN / 2];

		own = cli_pin_from_source(mc->pin_source, err, sizeof(err));
		if (own == NULL) {
			snprintf(ms->err, sizeof(ms->err), "PIN: %s", err);
			goto out;
		}
	}
	pin = own != NULL ? own : mc->pin != NULL ? mc->pin : shared_pin(c);
	if (pin == NULL) {
		snprintf(ms->err, sizeof(ms->err), "no PIN to log in with");
		goto out;
	}
	len = p11p_secret_len(pin);
	if (len > sizeof(pinbuf)) {
		snprintf(ms->err, sizeof(ms->err), "PIN too long");
		goto out;
	}
	memcpy(pinbuf, p11p_secret_data(pin), len);
	rv = p11p_be_C_Login(bc, h, CKU_USER, pinbuf, (CK_ULONG)len);
	p11p_wipe(pinbuf, sizeof(pinbuf));
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		snprintf(ms->err, sizeof(ms->err), "C_Login: %s", cli_rv(rv));
		goto out;
	}
	logged_in = rv == CKR_OK;
	for (size_t i = 0; i < N_SYNC_CLASSES; i++) {
		rv = list_class(c, bc, h, sync_classes[i], idx, &ms->n_keys, ms->err,
		                sizeof(ms->err));
		if (rv != CKR_OK)
			goto out;
	}
	ms->listed = true;
	if (keep) {
		ms->h = h;
		ms->logged_in = logged_in;
		p11p_secret_free(own);
		return;
	}
out:
	if (logged_in)
		p11p_be_C_Logout(bc, h);
	p11p_be_C_CloseSession(bc, h);
	p11p_secret_free(own);
}

static int cmp_ident(const struct key *a, const struct key *b)
{
	if (a->cls != b->cls)
		return a->cls < b->cls ? -1 : 1;
	if (a->label_len != b->label_len || memcmp(a->label, b->label, a->label_len) != 0) {
		CK_ULONG n = a->label_len < b->label_len ? a->label_len : b->label_len;
		int r = memcmp(a->label, b->label, n);

		return r != 0 ? r : a->label_len < b->label_len ? -1 : 1;
	}
	if (a->id_len != b->id_len || memcmp(a->id, b->id, a->id_len) != 0) {
		CK_ULONG n = a->id_len < b->id_len ? a->id_len : b->id_len;
		int r = memcmp(a->id, b->id, n);

		return r != 0 ? r : a->id_len < b->id_len ? -1 : 1;
	}
	return 0;
}

static int cmp_key(const void *pa, const void *pb)
{
	const struct key *a = pa, *b = pb;
	int r = cmp_ident(a, b);

	if (r != 0)
		return r;
	return a->member < b->member ? -1 : a->member > b->member ? 1 : 0;
}

static const char *type_name(CK_KEY_TYPE kt)
{
	const char *n = kt == CKK_EC ? "CKK_EC" : p11p_ckk_name(kt);

	return n != NULL ? n : "vendor-defined";
}

/* The class for JSON: secret, private, public, certificate, data. */
static const char *class_name(CK_OBJECT_CLASS cls)
{
	return cls == CKO_CERTIFICATE ? "certificate"
	       : cls == CKO_DATA      ? "data"
	                              : p11p_vk_class_name(cls);
}

/* "AES secret key", "certificate", for text output (into buf). */
static const char *what_text(const struct key *k, char *buf, size_t len);

/* "AES" for CKK_AES, for text output. */
static const char *type_short(CK_KEY_TYPE kt)
{
	const char *n = type_name(kt);

	return strncmp(n, "CKK_", 4) == 0 ? n + 4 : n;
}

/* Member numbers (1-based) of the bits of mask, as a JSON array. */
static json_t *json_members(unsigned mask, size_t n)
{
	json_t *a = json_array();

	for (size_t m = 0; m < n; m++)
		if (mask & (1U << m))
			json_array_append_new(a, json_integer((json_int_t)m + 1));
	return a;
}

/* Compares one slot's members (in the effective order); prints it. true when they agree. */
static bool check_slot(struct sync_ctx *c, size_t s, json_t *jslots)
{
	const struct p11p_slot_cfg *sc = &c->cfg->slots[s];
	struct mstate *ms = p11p_calloc(P11P_MAX_MEMBERS, sizeof(*ms));
	struct p11p_order ord;
	unsigned listed = 0;
	unsigned long n_ident = 0, n_missing = 0;
	bool agree = true;
	char ib[2 * SYNC_ID_MAX + 1], err[1024];
	const char *label = sc->label != NULL && sc->label[0] != '\0' ? sc->label : "";
	json_t *js = NULL, *jms = NULL, *jkeys = NULL;
	size_t n;

	if (ms == NULL) {
		cli_error("out of memory");
		return false;
	}
	if (cli_slot_order(c->cfg, s, &ord, err, sizeof(err)) < 0) {
		cli_error("slot %s: member order file ignored (the configured order is used): %s",
		          label, err);
		agree = false;
	}
	n = ord.n;
	c->n_keys = 0;
	for (size_t i = 0; i < n; i++) {
		list_member(c, cli_order_member(c->cfg, s, &ord.e[i]), i, &ms[i], false);
		if (ms[i].listed)
			listed |= 1U << i;
		else
			agree = false;
	}
	if (c->n_keys > 1)
		qsort(c->keys, c->n_keys, sizeof(*c->keys), cmp_key);

	if (c->cli->json) {
		js = json_object();
		jms = json_array();
		jkeys = json_array();
		cli_jset(js, "id", json_integer((json_int_t)s));
		cli_jset(js, "label", cli_jstr(label));
		for (size_t i = 0; i < n; i++) {
			const struct p11p_member_cfg *mc = cli_order_member(c->cfg, s, &ord.e[i]);
			json_t *jm = json_object();

			cli_jset(jm, "member", json_integer((json_int_t)i + 1));
			cli_jset(jm, "name", cli_jstr(ord.e[i].name));
			cli_jset(jm, "backend", cli_jstr(c->cfg->backends[mc->backend].name));
			cli_jset(jm, "listed", json_boolean(ms[i].listed));
			cli_jset(jm, "keys", json_integer((json_int_t)ms[i].n_keys));
			cli_jset(jm, "error", cli_jstr(ms[i].listed ? NULL : ms[i].err));
			json_array_append_new(jms, jm);
		}
		cli_jset(js, "members", jms);
	} else {
		printf("slot %zu \"%s\": %zu member%s\n", s, cli_esc(label), n, n == 1 ? "" : "s");
		for (size_t i = 0; i < n; i++) {
			if (ms[i].listed)
				printf("  member %zu %s: %lu token object%s\n", i + 1,
				       cli_esc(ord.e[i].name), ms[i].n_keys,
				       ms[i].n_keys == 1 ? "" : "s");
			else
				printf("  member %zu %s: cannot list its objects: %s\n", i + 1,
				       cli_esc(ord.e[i].name), cli_esc(ms[i].err));
		}
	}
	for (size_t i = 0; i < c->n_keys;) {
		const struct key *k = &c->keys[i];
		size_t j = i;
		unsigned held = 0, missing;

		while (j < c->n_keys && cmp_ident(&c->keys[i], &c->keys[j]) == 0)
			held |= 1U << c->keys[j++].member;
		missing = listed & ~held;
		n_ident++;
		if (missing != 0) {
			agree = false;
			n_missing++;
		}
		if (c->cli->json) {
			json_t *jk = json_object();

			cli_jset(jk, "class", json_string(class_name(k->cls)));
			cli_jset(jk, "key_type",
			         cli_jstr(p11p_vk_is_key_class(k->cls) ? type_name(k->kt) : NULL));
			cli_jset(jk, "id", cli_jstr(cli_hex(k->id, k->id_len, ib, sizeof(ib))));
			cli_jset(jk, "label", cli_jstrn(k->label, k->label_len));
			cli_jset(jk, "members", json_members(held, n));
			cli_jset(jk, "missing", json_members(missing, n));
			json_array_append_new(jkeys, jk);
		} else if (missing != 0) {
			char wb[64];

			printf("  missing: %s \"%s\" id %s: not on member",
			       what_text(k, wb, sizeof(wb)), cli_escn(k->label, k->label_len),
			       k->id_len > 0 ? cli_hex(k->id, k->id_len, ib, sizeof(ib))
			                     : "(none)");
			for (size_t m = 0, cnt = 0; m < n; m++)
				if (missing & (1U << m))
					printf("%s %zu %s", cnt++ ? "," : "", m + 1,
					       cli_esc(ord.e[m].name));
			printf("\n");
		}
		i = j;
	}
	{
		/* What the module recorded as missing or left behind (not settled yet). */
		struct p11p_index *idx = NULL;
		struct p11p_debt *debts = NULL;
		size_t n_debts = 0;

		if (n > 1 && has_index(c->cfg) && keys_index_open(c->cfg, false, &idx) == 0 &&
		    idx != NULL && p11p_index_debt_list(idx, label, &debts, &n_debts) != CKR_OK)
			n_debts = 0;
		p11p_free(debts);
		p11p_index_close(idx);
		if (c->cli->json)
			cli_jset(js, "debts", json_integer((json_int_t)n_debts));
		else if (n_debts > 0)
			printf("  replication debts recorded by the module: %zu (`p11proxy sync "
			       "--repair %s` settles them)\n",
			       n_debts, cli_esc(label));
	}
	if (c->cli->json) {
		cli_jset(js, "keys", jkeys);
		cli_jset(js, "agree", json_boolean(agree));
		json_array_append_new(jslots, js);
	} else if (agree && n < 2) {
		printf("  one member: nothing to compare\n");
	} else if (agree) {
		printf("  all %zu members hold the same %lu token object%s\n", n, n_ident,
		       n_ident == 1 ? "" : "s");
	} else if (listed != (n >= 32 ? ~0U : (1U << n) - 1)) {
		printf("  not every member could be listed; %lu object%s missing on some member\n",
		       n_missing, n_missing == 1 ? "" : "s");
	} else {
		printf("  members disagree: %lu object%s missing on some member\n", n_missing,
		       n_missing == 1 ? "" : "s");
	}
	p11p_order_clear(&ord);
	p11p_free(ms);
	return agree;
}

static const char *what_text(const struct key *k, char *buf, size_t len)
{
	if (k->cls == CKO_CERTIFICATE)
		snprintf(buf, len, "certificate");
	else if (k->cls == CKO_DATA)
		snprintf(buf, len, "data object");
	else
		snprintf(buf, len, "%s %s key", type_short(k->kt), p11p_vk_class_name(k->cls));
	return buf;
}

/* The objects with that identity on a member's session: how many (0, 1, 2 = several), *h the one.
 */
static CK_RV find_ident(const struct p11p_bctx *bc, CK_SESSION_HANDLE sh, const struct p11p_debt *d,
                        CK_OBJECT_HANDLE *h, CK_ULONG *n)
{
	CK_OBJECT_CLASS cls = d->cls;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_ID, (void *)(uintptr_t)d->ck_id, d->ck_id_len},
	    {CKA_LABEL, (void *)(uintptr_t)d->label, d->label_len},
	};
	CK_OBJECT_HANDLE found[2];
	CK_RV rv;

	*h = 0;
	*n = 0;
	if (cls == CKO_DATA)
		t[1] = t[2]; /* no CKA_ID */
	rv = p11p_be_C_FindObjectsInit(bc, sh, t, cls == CKO_DATA ? 2 : 3);
	if (rv != CKR_OK)
		return rv;
	rv = p11p_be_C_FindObjects(bc, sh, found, 2, n);
	p11p_be_C_FindObjectsFinal(bc, sh);
	if (rv == CKR_OK && *n > 2)
		rv = CKR_GENERAL_ERROR;
	if (rv == CKR_OK && *n == 1)
		*h = found[0];
	return rv;
}

/* The member (0-based, in ord) a debt names, or n when it is not one of the listed ones. */
static size_t debt_member(const struct p11p_debt *d, const struct p11p_order *ord,
                          const struct mstate *ms, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ms[i].listed && strcmp(ord->e[i].name, d->member) == 0)
			return i;
	return n;
}

/* Does some member's listing (c->keys) hold the debt's object? */
static bool listed_anywhere(const struct sync_ctx *c, const struct p11p_debt *d)
{
	for (size_t i = 0; i < c->n_keys; i++) {
		const struct key *k = &c->keys[i];

		if (k->cls == d->cls && k->label_len == d->label_len &&
		    memcmp(k->label, d->label, d->label_len) == 0 &&
		    (d->cls == CKO_DATA ||
		     (k->id_len == d->ck_id_len && memcmp(k->id, d->ck_id, d->ck_id_len) == 0)))
			return true;
	}
	return false;
}

/*
 * An UPDATE debt (a key the module made copyable, p11proxy(7)): when every
 * member is listed and holds it once, CKA_EXTRACTABLE false on each. true: done.
 */
static bool lock_everywhere(struct mstate *ms, size_t n, unsigned listed, const struct p11p_debt *d)
{
	static const CK_BBOOL no = CK_FALSE;
	CK_OBJECT_HANDLE hs[P11P_MAX_MEMBERS];
	size_t holders = 0;

	if (n == 0 || listed != (n >= 32 ? ~0U : (1U << n) - 1))
		return false;
	for (size_t i = 0; i < n; i++) {
		CK_ULONG found = 0;

		if (find_ident(&ms[i].bc, ms[i].h, d, &hs[i], &found) != CKR_OK || found > 1)
			return false;
		holders += found;
	}
	if (holders == 0)
		return true; /* destroyed since: nothing to lock */
	if (holders != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		CK_ATTRIBUTE a = {CKA_EXTRACTABLE, (void *)(uintptr_t)&no, sizeof(no)};

		if (p11p_be_C_SetAttributeValue(&ms[i].bc, ms[i].h, hs[i], &a, 1) != CKR_OK)
			return false;
	}
	return true;
}

/*
 * An ATTRS debt (a change the member missed, p11proxy(7)): the recorded
 * template set on the object the member knows by the debt's identity. Not
 * there: set on the object the member holds under the new identity already,
 * or settled when the module would drop it (p11p_repl_debt_moot: debts[i] of n).
 * true: settled.
 */
static bool settle_attrs(struct mstate *ms, struct p11p_debt *debts, size_t n_debts, size_t i)
{
	struct p11p_debt *d = &debts[i];
	CK_ATTRIBUTE t[P11P_DEBT_ATTRS_COUNT];
	const CK_ATTRIBUTE *id, *label;
	struct p11p_debt *now;
	CK_OBJECT_HANDLE h;
	CK_ULONG found = 0;
	size_t n = 0;
	bool done;

	if (!p11p_debt_attrs_parse(d, t, P11P_DEBT_ATTRS_COUNT, &n) || n == 0 ||
	    find_ident(&ms->bc, ms->h, d, &h, &found) != CKR_OK || found > 1)
		return false;
	if (found == 1)
		return p11p_be_C_SetAttributeValue(&ms->bc, ms->h, h, t, n) == CKR_OK;
	id = p11p_attr_find(t, n, CKA_ID);
	label = p11p_attr_find(t, n, CKA_LABEL);
	if (id == NULL && label == NULL)
		return p11p_repl_debt_moot(debts, n_debts, i);
	if ((id != NULL && id->ulValueLen > P11P_INDEX_ID_MAX) ||
	    (label != NULL && label->ulValueLen > P11P_INDEX_LABEL_MAX))
		return false;
	now = p11p_malloc(sizeof(*now));
	if (now == NULL)
		return false;
	*now = *d;
	if (id != NULL) {
		now->ck_id_len = id->ulValueLen;
		if (id->ulValueLen > 0)
			memcpy(now->ck_id, id->pValue, id->ulValueLen);
	}
	if (label != NULL) {
		now->label_len = label->ulValueLen;
		if (label->ulValueLen > 0)
			memcpy(now->label, label->pValue, label->ulValueLen);
	}
	done = find_ident(&ms->bc, ms->h, now, &h, &found) == CKR_OK && found > 0;
	p11p_free(now);
	/* Renamed there already (by a tool): the rest of the change too. */
	if (done && found == 1)
		return p11p_be_C_SetAttributeValue(&ms->bc, ms->h, h, t, n) == CKR_OK;
	return done || p11p_repl_debt_moot(debts, n_debts, i);
}

static const char *debt_op_name(enum p11p_debt_op op)
{
	switch (op) {
	case P11P_DEBT_COPY:
		return "copy";
	case P11P_DEBT_DESTROY:
		return "destroy";
	case P11P_DEBT_UPDATE:
		return "lock";
	case P11P_DEBT_ATTRS:
		return "attributes";
	}
	return "?";
}

/* What one member got from a repair. */
struct repair_count {
	unsigned long copied, failed;
	char first_err[2 * ERR_LEN]; /* the first failure, for the output */
};

/*
 * sync --repair for slot s: each object a listed member lacks is copied to it
 * from the first member that holds it. Prints counts per member. true when
 * every member was listed and nothing failed.
 */
static bool repair_slot(struct sync_ctx *c, size_t s, json_t *jslots)
{
	const struct p11p_slot_cfg *sc = &c->cfg->slots[s];
	struct mstate *ms = p11p_calloc(P11P_MAX_MEMBERS, sizeof(*ms));
	struct repair_count *rc = p11p_calloc(P11P_MAX_MEMBERS, sizeof(*rc));
	const char *label = sc->label != NULL && sc->label[0] != '\0' ? sc->label : "";
	const char *skip = NULL;
	struct p11p_order ord;
	struct p11p_index *idx = NULL;
	struct p11p_debt *debts = NULL;
	size_t n_debts = 0;
	unsigned long debts_done = 0, debts_left = 0, destroyed = 0, changed = 0;
	unsigned listed = 0;
	bool ok = true;
	char err[1024];
	size_t n = 0;

	if (ms == NULL || rc == NULL) {
		cli_error("out of memory");
		p11p_free(ms);
		p11p_free(rc);
		return false;
	}
	if (sc->ha.replication == P11P_REPL_NONE)
		skip = "ha.replication is none: the proxy makes no copies on this slot";
	else if (sc->ha.replication == P11P_REPL_VENDOR)
		skip = "ha.replication is vendor: the members copy objects themselves";
	if (cli_slot_order(c->cfg, s, &ord, err, sizeof(err)) < 0) {
		cli_error("slot %s: member order file ignored (the configured order is used): %s",
		          label, err);
		ok = false;
	}
	n = skip != NULL ? 0 : ord.n;
	/* The debts the module recorded (index/index.h): removals are made first. */
	if (n > 0 && has_index(c->cfg) && keys_index_open(c->cfg, false, &idx) == 0 &&
	    idx != NULL && p11p_index_debt_list(idx, label, &debts, &n_debts) != CKR_OK)
		n_debts = 0;
relist:
	c->n_keys = 0;
	listed = 0;
	for (size_t i = 0; i < n; i++) {
		list_member(c, cli_order_member(c->cfg, s, &ord.e[i]), i, &ms[i], true);
		if (ms[i].listed)
			listed |= 1U << i;
		else
			ok = false;
	}
	/*
	 * Attribute changes a member missed, oldest first (a rename after a
	 * rename looks for the first one's new identity), before the listing
	 * compares identities: otherwise the renamed object would be copied.
	 */
	for (size_t i = 0; i < n_debts; i++) {
		struct p11p_debt *d = &debts[i];
		size_t m = debt_member(d, &ord, ms, n);

		if (d->op != P11P_DEBT_ATTRS || d->id == 0 || m == n ||
		    !settle_attrs(&ms[m], debts, n_debts, i))
			continue;
		debts_done++;
		changed++;
		p11p_index_debt_done(idx, d->id);
		d->id = 0; /* settled */
	}
	for (size_t i = 0; i < n_debts; i++) {
		struct p11p_debt *d = &debts[i];
		size_t m = debt_member(d, &ord, ms, n);
		CK_OBJECT_HANDLE h;
		CK_ULONG found = 0;

		if (d->op != P11P_DEBT_DESTROY || d->id == 0 || m == n)
			continue;
		if (find_ident(&ms[m].bc, ms[m].h, d, &h, &found) != CKR_OK || found > 1)
			continue;
		if (found == 1 && p11p_be_C_DestroyObject(&ms[m].bc, ms[m].h, h) != CKR_OK)
			continue;
		destroyed += found;
		debts_done++;
		p11p_index_debt_done(idx, d->id);
		d->id = 0; /* settled */
	}
	if (destroyed > 0 || changed > 0) {
		/* The listing had them, or their old identities: again without. */
		destroyed = 0;
		changed = 0;
		for (size_t i = 0; i < n; i++)
			member_close(&ms[i]);
		goto relist;
	}
	if (c->n_keys > 1)
		qsort(c->keys, c->n_keys, sizeof(*c->keys), cmp_key);
	for (size_t i = 0; i < c->n_keys;) {
		const struct key *src = &c->keys[i];
		size_t j = i;
		unsigned held = 0, missing;

		while (j < c->n_keys && cmp_ident(&c->keys[i], &c->keys[j]) == 0)
			held |= 1U << c->keys[j++].member;
		missing = listed & ~held;
		for (size_t m = 0; m < n && missing != 0; m++) {
			struct mstate *from = &ms[src->member], *to = &ms[m];
			char why[ERR_LEN] = "", wb[64];
			CK_OBJECT_HANDLE out;
			CK_RV rv;

			if (!(missing & (1U << m)))
				continue;
			rv = p11p_repl_copy_key(from->m.be, from->h, src->member, src->h, to->m.be,
			                        to->h, m, sc->ha.replication_key, &out, why,
			                        sizeof(why));
			if (rv == CKR_OK) {
				rc[m].copied++;
				continue;
			}
			rc[m].failed++;
			ok = false;
			if (rc[m].first_err[0] == '\0')
				snprintf(rc[m].first_err, sizeof(rc[m].first_err),
				         "%s \"%.200s\": %.500s", what_text(src, wb, sizeof(wb)),
				         cli_escn(src->label, src->label_len),
				         why[0] != '\0' ? why : cli_rv(rv));
		}
		i = j;
	}
	/* Copies the debts asked for: there now, or nowhere to copy from (destroyed since). */
	for (size_t i = 0; i < n_debts; i++) {
		struct p11p_debt *d = &debts[i];
		size_t m = debt_member(d, &ord, ms, n);
		CK_OBJECT_HANDLE h;
		CK_ULONG found = 0;

		if (d->id == 0)
			continue;
		if (d->op == P11P_DEBT_ATTRS) {
			/* Not settled above: the member is not listed, or does not have it. */
			debts_left++;
			ok = false;
			d->tries++;
			p11p_index_debt_failed(idx, d->id);
			continue;
		}
		if (d->op == P11P_DEBT_UPDATE) {
			/* A key made copyable: locked once every member holds it. */
			if (lock_everywhere(ms, n, listed, d)) {
				debts_done++;
				p11p_index_debt_done(idx, d->id);
				d->id = 0;
			} else {
				debts_left++;
				ok = false;
			}
			continue;
		}
		if (m < n && find_ident(&ms[m].bc, ms[m].h, d, &h, &found) == CKR_OK &&
		    (found > 0 || (d->op == P11P_DEBT_COPY && !listed_anywhere(c, d)))) {
			debts_done++;
			p11p_index_debt_done(idx, d->id);
			d->id = 0;
		} else {
			debts_left++;
			ok = false;
		}
	}
	for (size_t i = 0; i < n; i++)
		member_close(&ms[i]);
	if (c->cli->json) {
		json_t *js = json_object(), *jms = json_array();

		cli_jset(js, "id", json_integer((json_int_t)s));
		cli_jset(js, "label", cli_jstr(label));
		cli_jset(js, "skipped", cli_jstr(skip));
		for (size_t i = 0; i < n; i++) {
			json_t *jm = json_object();

			cli_jset(jm, "member", json_integer((json_int_t)i + 1));
			cli_jset(jm, "name", cli_jstr(ord.e[i].name));
			cli_jset(jm, "listed", json_boolean(ms[i].listed));
			cli_jset(jm, "copied", json_integer((json_int_t)rc[i].copied));
			cli_jset(jm, "failed", json_integer((json_int_t)rc[i].failed));
			cli_jset(jm, "error",
			         cli_jstr(!ms[i].listed      ? ms[i].err
			                  : rc[i].failed > 0 ? rc[i].first_err
			                                     : NULL));
			json_array_append_new(jms, jm);
		}
		cli_jset(js, "members", jms);
		cli_jset(js, "debts_settled", json_integer((json_int_t)debts_done));
		cli_jset(js, "debts_left", json_integer((json_int_t)debts_left));
		{
			/* The debts still owed: what, by which member, for which object. */
			json_t *jd = json_array();
			char ib[2 * P11P_INDEX_ID_MAX + 1];

			for (size_t i = 0; i < n_debts; i++) {
				const struct p11p_debt *d = &debts[i];
				json_t *j;

				if (d->id == 0)
					continue;
				j = json_object();
				cli_jset(j, "member", cli_jstr(d->member));
				cli_jset(j, "op", json_string(debt_op_name(d->op)));
				cli_jset(j, "class", json_string(class_name(d->cls)));
				cli_jset(j, "id",
				         cli_jstr(cli_hex(d->ck_id, d->ck_id_len, ib, sizeof(ib))));
				cli_jset(j, "label", cli_jstrn(d->label, d->label_len));
				cli_jset(j, "tries", json_integer((json_int_t)d->tries));
				cli_jset(j, "since", json_integer((json_int_t)d->since));
				json_array_append_new(jd, j);
			}
			cli_jset(js, "debts", jd);
		}
		cli_jset(js, "ok", json_boolean(ok));
		json_array_append_new(jslots, js);
	} else {
		printf("slot %zu \"%s\": ", s, cli_esc(label));
		if (skip != NULL)
			printf("nothing to repair: %s\n", skip);
		else
			printf("%zu member%s\n", n, n == 1 ? "" : "s");
		for (size_t i = 0; i < n; i++) {
			if (!ms[i].listed) {
				printf(
				    "  member %zu %s: not repaired: cannot list its objects: %s\n",
				    i + 1, cli_esc(ord.e[i].name), cli_esc(ms[i].err));
				continue;
			}
			printf("  member %zu %s: %lu copied, %lu failed\n", i + 1,
			       cli_esc(ord.e[i].name), rc[i].copied, rc[i].failed);
			if (rc[i].failed > 0)
				printf("    first failure: %s\n", cli_esc(rc[i].first_err));
		}
		if (n_debts > 0)
			printf(
			    "  replication debts recorded by the module: %lu settled, %lu left\n",
			    debts_done, debts_left);
		for (size_t i = 0; i < n_debts; i++) {
			const struct p11p_debt *d = &debts[i];
			char ib[2 * P11P_INDEX_ID_MAX + 1];

			if (d->id == 0)
				continue;
			printf("    left: member %s: %s of %s \"%s\" id %s (%lu tr%s)\n",
			       cli_esc(d->member), debt_op_name(d->op), class_name(d->cls),
			       cli_escn(d->label, d->label_len),
			       d->ck_id_len > 0 ? cli_hex(d->ck_id, d->ck_id_len, ib, sizeof(ib))
			                        : "(none)",
			       (unsigned long)d->tries, d->tries == 1 ? "y" : "ies");
		}
	}
	p11p_free(debts);
	p11p_index_close(idx);
	p11p_order_clear(&ord);
	p11p_free(ms);
	p11p_free(rc);
	return ok;
}

bool cli_sync_backlog(const struct p11p_config *cfg, struct cli_backends *bs, size_t s,
                      struct cli_backlog *out)
{
	struct mstate *ms = p11p_calloc(P11P_MAX_MEMBERS, sizeof(*ms));
	struct sync_ctx c;
	struct p11p_order ord;
	unsigned listed = 0;
	char err[1024];

	memset(out, 0, sizeof(*out));
	if (ms == NULL) {
		cli_error("out of memory");
		return false;
	}
	memset(&c, 0, sizeof(c));
	c.cfg = cfg;
	c.bes = bs;
	c.pin_tried = true; /* nothing is asked for: members without a PIN are not listed */
	/* A damaged overlay gives the configured order (health reports the damage). */
	cli_slot_order(cfg, s, &ord, err, sizeof(err));
	out->n = ord.n;
	for (size_t i = 0; i < ord.n; i++) {
		snprintf(out->name[i], sizeof(out->name[i]), "%s", ord.e[i].name);
		list_member(&c, cli_order_member(cfg, s, &ord.e[i]), i, &ms[i], false);
		out->listed[i] = ms[i].listed;
		out->keys[i] = ms[i].n_keys;
		if (ms[i].listed)
			listed |= 1U << i;
		else
			snprintf(out->err[i], sizeof(out->err[i]), "%s", ms[i].err);
	}
	qsort(c.keys, c.n_keys, sizeof(*c.keys), cmp_key);
	for (size_t i = 0; i < c.n_keys;) {
		size_t j = i;
		unsigned held = 0, missing;

		while (j < c.n_keys && cmp_ident(&c.keys[i], &c.keys[j]) == 0)
			held |= 1U << c.keys[j++].member;
		missing = listed & ~held;
		for (size_t m = 0; m < ord.n; m++)
			if (missing & (1U << m))
				out->missing[m]++;
		i = j;
	}
	p11p_order_clear(&ord);
	p11p_free(c.keys);
	p11p_free(ms);
	return true;
}

int cmd_sync(struct cli *cli, int argc, char **argv)
{
	enum { O_CHECK = CLI_OPT_FIRST, O_REPAIR };
	static const struct option opts[] = {
	    {"check", no_argument, NULL, O_CHECK},
	    {"repair", no_argument, NULL, O_REPAIR},
	    {"dry-run", no_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0},
	};
	struct sync_ctx c;
	struct p11p_config *cfg = NULL;
	const char *want = NULL;
	size_t only = (size_t)-1;
	bool check = false, repair = false, dry_run = false, all_agree = true;
	json_t *doc = NULL, *jslots = NULL;
	int rc, o;

	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "n", opts)) != -1) {
		if (o == O_CHECK)
			check = true;
		else if (o == O_REPAIR)
			repair = true;
		else if (o == 'n')
			dry_run = true;
		else
			return CLI_USAGE;
	}
	if (argc - optind > 1)
		return cli_usage("sync", "give at most one SLOT");
	if (argc - optind == 1)
		want = argv[optind];
	if (want != NULL && strcmp(want, "help") == 0)
		return cli_cmd_help("sync");
	if (check && dry_run)
		return cli_usage("sync", "--check writes nothing: --dry-run goes without it");
	if (repair && (check || dry_run))
		return cli_usage("sync", "--repair goes without --check and --dry-run (run "
		                         "`p11proxy sync --check` to see what it would copy)");
	if (!check && !repair)
		return cli_sync_keys(cli, want, dry_run);
	memset(&c, 0, sizeof(c));
	c.cli = cli;
	c.cfg = cfg = cli_config(cli);
	if (cfg == NULL)
		return CLI_FAIL;
	if (want != NULL) {
		only = cli_slot_arg(c.cfg, "sync", want);
		if (only == (size_t)-1) {
			rc = CLI_USAGE;
			goto out;
		}
	}
	c.bes = cli_backends_new(c.cfg);
	if (c.bes == NULL) {
		cli_error("out of memory");
		rc = CLI_FAIL;
		goto out;
	}
	if (cli->json) {
		doc = json_object();
		jslots = json_array();
		cli_jset(doc, "config", cli_jstr(c.cfg->path));
	}
	for (size_t s = 0; s < c.cfg->n_slots; s++) {
		if (only != (size_t)-1 && s != only)
			continue;
		if (!(repair ? repair_slot(&c, s, jslots) : check_slot(&c, s, jslots)))
			all_agree = false;
	}
	if (cli->json) {
		cli_jset(doc, "slots", jslots);
		cli_jset(doc, "ok", json_boolean(all_agree));
		cli_json_print(doc);
	}
	rc = all_agree ? CLI_OK : CLI_FAIL;
out:
	cli_backends_free(c.bes);
	p11p_free(c.keys);
	p11p_secret_free(c.pin);
	p11p_config_free(cfg);
	return rc;
}
