/*
 * What the commands share: the configuration, the backends (loaded on first
 * use) and the member probe, slots named by label, id or pkcs11: URI, and
 * the effective member order (the overlay `members` writes, as the module
 * reads it). Tool code only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/uri.h>

#include "backend/call.h"
#include "base/mem.h"
#include "cli.h"
#include "keys.h"
#include "config/config.h"
#include "util.h"
#include "ha/order.h"

#define WHY_LEN 512

struct p11p_config *cli_config(const struct cli *cli)
{
	struct p11p_config *cfg;
	char err[1024];

	err[0] = '\0';
	cfg = p11p_config_load(cli->config_path, err, sizeof(err));
	if (cfg == NULL)
		cli_error_plain(err[0] != '\0' ? err : "cannot load the configuration");
	return cfg;
}

/* ---- the backends and the probe, shared with `members`, `slots` and `sync` ------------------- */

struct cli_backend {
	struct p11p_backend be;
	bool tried;
	CK_RV rv;
	char err[WHY_LEN];
};

struct cli_backends {
	const struct p11p_config *cfg;
	struct cli_backend *b; /* cfg->n_backends */
};

struct cli_backends *cli_backends_new(const struct p11p_config *cfg)
{
	struct cli_backends *bs = p11p_calloc(1, sizeof(*bs));

	if (bs == NULL)
		return NULL;
	bs->cfg = cfg;
	bs->b = p11p_calloc(cfg->n_backends > 0 ? cfg->n_backends : 1, sizeof(*bs->b));
	if (bs->b == NULL) {
		p11p_free(bs);
		return NULL;
	}
	return bs;
}

void cli_backends_free(struct cli_backends *bs)
{
	if (bs == NULL)
		return;
	for (size_t i = 0; i < bs->cfg->n_backends; i++) {
		if (bs->b[i].tried && bs->b[i].rv == CKR_OK)
			p11p_backend_close(&bs->b[i].be, true);
	}
	p11p_free(bs->b);
	p11p_free(bs);
}

static struct cli_backend *backend_get(struct cli_backends *bs, size_t idx)
{
	struct cli_backend *b = &bs->b[idx];

	if (!b->tried) {
		b->tried = true;
		b->err[0] = '\0';
		b->rv = p11p_backend_open(&b->be, &bs->cfg->backends[idx], b->err, sizeof(b->err));
		if (b->rv != CKR_OK && b->err[0] == '\0')
			snprintf(b->err, sizeof(b->err), "cannot load %s: %s",
			         bs->cfg->backends[idx].module, cli_rv(b->rv));
	}
	return b;
}

struct p11p_backend *cli_backend(struct cli_backends *bs, size_t idx, char *why, size_t whylen)
{
	struct cli_backend *b;

	if (idx >= bs->cfg->n_backends) {
		snprintf(why, whylen, "backend index %zu out of range", idx);
		return NULL;
	}
	b = backend_get(bs, idx);
	if (b->rv != CKR_OK) {
		snprintf(why, whylen, "%s", b->err);
		return NULL;
	}
	return &b->be;
}

static bool probe_failed(char *why, size_t whylen, const char *call, CK_RV rv)
{
	snprintf(why, whylen, "%s: %s", call, cli_rv(rv));
	return false;
}

bool cli_member_probe(struct cli_backends *bs, const struct p11p_member_cfg *mc, char *why,
                      size_t whylen)
{
	return cli_member_probe_info(bs, mc, NULL, why, whylen);
}

bool cli_member_probe_info(struct cli_backends *bs, const struct p11p_member_cfg *mc,
                           CK_TOKEN_INFO *tinfo, char *why, size_t whylen)
{
	struct p11p_member m;
	struct cli_backend *b;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_TOKEN_INFO ti;
	CK_BYTE byte;
	struct p11p_bctx probe;
	const struct p11p_bctx *bc;
	char err[WHY_LEN];
	CK_RV rv;
	bool ok = false;

	why[0] = '\0';
	if (mc->backend >= bs->cfg->n_backends) {
		snprintf(why, whylen, "backend index %zu out of range", mc->backend);
		return false;
	}
	b = backend_get(bs, mc->backend);
	if (b->rv != CKR_OK) {
		snprintf(why, whylen, "%s", b->err);
		return false;
	}
	memset(&m, 0, sizeof(m));
	m.cfg = mc;
	m.be = &b->be;
	atomic_init(&m.health, P11P_UP);
	err[0] = '\0';
	probe = (struct p11p_bctx){.be = &b->be, .timeout_ms = CLI_PROBE_TIMEOUT_MS};
	rv = p11p_member_resolve(&m, &probe, err, sizeof(err));
	if (rv != CKR_OK) {
		if (err[0] == '\0')
			return probe_failed(why, whylen, "token", rv);
		snprintf(why, whylen, "%s", err);
		return false;
	}
	bc = &probe;
	rv = p11p_be_C_OpenSession(bc, m.be_slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK)
		return probe_failed(why, whylen, "C_OpenSession", rv);
	rv = p11p_be_C_GetTokenInfo(bc, m.be_slot, &ti);
	if (rv != CKR_OK) {
		probe_failed(why, whylen, "C_GetTokenInfo", rv);
		goto out;
	}
	if (tinfo != NULL)
		*tinfo = ti;
	if (ti.flags & CKF_RNG) {
		rv = p11p_be_C_GenerateRandom(bc, h, &byte, 1);
		if (rv != CKR_OK) {
			probe_failed(why, whylen, "C_GenerateRandom", rv);
			goto out;
		}
	}
	ok = true;
out:
	rv = p11p_be_C_CloseSession(bc, h);
	if (ok && rv != CKR_OK)
		ok = probe_failed(why, whylen, "C_CloseSession", rv);
	return ok;
}

/* ---- slots --------------------------------------------------------------------------------- */

/* The virtual serial, as lib/virt/state.c makes it: FNV-1a of the label (or first selector). */
const char *cli_slot_serial(const struct p11p_config *cfg, size_t slot, char *buf, size_t len)
{
	const struct p11p_slot_cfg *sc = &cfg->slots[slot];
	unsigned long long h = 0xcbf29ce484222325ULL;
	char vb[32];
	const char *s = sc->label != NULL && sc->label[0] != '\0'
	                    ? sc->label
	                    : p11p_selector_value(&sc->members[0], vb, sizeof(vb));

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	snprintf(buf, len, "%016llx", h);
	return buf;
}

/* Does the URI's token part name the slot? Asks the first member that answers when needed. */
static bool uri_matches_slot(const struct p11p_config *cfg, size_t s, P11KitUri *uri,
                             struct cli_backends **bs)
{
	CK_TOKEN_INFO ti, *want = p11_kit_uri_get_token_info(uri);
	char serial[17], why[WHY_LEN];

	memset(&ti, 0, sizeof(ti));
	/* Manufacturer and model are the serving member's (the module passes them through). */
	if (want->manufacturerID[0] != 0 || want->model[0] != 0) {
		struct p11p_order o;
		bool got = false;

		if (*bs == NULL)
			*bs = cli_backends_new(cfg);
		if (*bs == NULL)
			return false;
		cli_slot_order(cfg, s, &o, why, sizeof(why));
		for (size_t i = 0; i < o.n && !got; i++)
			got = cli_member_probe_info(*bs, cli_order_member(cfg, s, &o.e[i]), &ti, why,
			                            sizeof(why));
		p11p_order_clear(&o);
		if (!got)
			return false;
	}
	p11p_pad(ti.label, sizeof(ti.label), cfg->slots[s].label != NULL ? cfg->slots[s].label : "");
	p11p_pad(ti.serialNumber, sizeof(ti.serialNumber),
	         cli_slot_serial(cfg, s, serial, sizeof(serial)));
	return p11_kit_uri_match_token_info(uri, &ti) == 1;
}

static size_t find_slot_uri(const struct p11p_config *cfg, const char *arg)
{
	P11KitUri *uri = p11_kit_uri_new();
	struct cli_backends *bs = NULL;
	size_t found = (size_t)-1, n = 0;
	int rc;

	if (uri == NULL) {
		cli_error("out of memory");
		return found;
	}
	rc = p11_kit_uri_parse(arg, P11_KIT_URI_FOR_TOKEN, uri);
	if (rc != P11_KIT_URI_OK) {
		cli_error("'%s': not a valid PKCS#11 URI (%s)", arg, p11_kit_uri_message(rc));
		goto out;
	}
	for (size_t s = 0; s < cfg->n_slots; s++) {
		if (uri_matches_slot(cfg, s, uri, &bs)) {
			if (n++ == 0)
				found = s;
		}
	}
	if (n > 1) {
		cli_error("'%s' matches %zu virtual slots: add token= (the label) or serial=", arg, n);
		found = (size_t)-1;
	}
out:
	cli_backends_free(bs);
	p11_kit_uri_free(uri);
	return found;
}

size_t cli_find_slot(const struct p11p_config *cfg, const char *arg)
{
	char *end;
	unsigned long id;

	if (strncmp(arg, "pkcs11:", 7) == 0)
		return find_slot_uri(cfg, arg);
	for (size_t s = 0; s < cfg->n_slots; s++) {
		if (cfg->slots[s].label != NULL && strcmp(cfg->slots[s].label, arg) == 0)
			return s;
	}
	if (arg[0] >= '0' && arg[0] <= '9') {
		id = strtoul(arg, &end, 10);
		if (*end == '\0' && id < cfg->n_slots)
			return (size_t)id;
	}
	return (size_t)-1;
}

size_t cli_slot_arg(const struct p11p_config *cfg, const char *cmd, const char *arg)
{
	size_t s = cli_find_slot(cfg, arg);

	if (s == (size_t)-1)
		cli_usage(cmd, "no virtual slot '%s' in %s (a label, an id, or a pkcs11: URI)", arg,
		          cfg->path);
	return s;
}

const char *cli_slot_name(const struct p11p_config *cfg, size_t slot, char *buf, size_t len)
{
	const char *label = cfg->slots[slot].label;

	if (label != NULL && label[0] != '\0')
		return label;
	snprintf(buf, len, "#%zu", slot);
	return buf;
}

/* ---- member order ----------------------------------------------------------------------------- */

int cli_slot_order(const struct p11p_config *cfg, size_t slot, struct p11p_order *o, char *err,
                   size_t errlen)
{
	struct p11p_index *idx = NULL;
	int store, rc = 0;

	err[0] = '\0';
	/* The overlay is in the store when the module would open one (issue 11). */
	store = keys_overlay_store(cfg, false, &idx);
	if (store < 0) {
		snprintf(err, errlen, "cannot open the store holding the member order");
		p11p_order_from_config(cfg, slot, o);
		return -1;
	}
	if (store > 0 && idx == NULL)
		p11p_order_from_config(cfg, slot, o); /* no store yet: no overlay */
	else
		rc = p11p_order_read(cfg, idx, slot, o, NULL, err, errlen);
	p11p_index_close(idx);
	if (rc < 0) {
		p11p_order_from_config(cfg, slot, o);
		return -1;
	}
	err[0] = '\0';
	return 0;
}

const struct p11p_member_cfg *cli_order_member(const struct p11p_config *cfg, size_t slot,
                                               const struct p11p_order_entry *e)
{
	return e->spec != NULL ? e->spec : &cfg->slots[slot].members[e->config_index];
}

size_t cli_member_number(const struct p11p_order *o, size_t config_index)
{
	for (size_t i = 0; i < o->n; i++)
		if (o->e[i].spec == NULL && o->e[i].config_index == config_index)
			return i + 1;
	return 0;
}
