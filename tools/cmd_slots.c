/*
 * Slot commands: slots (list virtual slots, members, tokens) and
 * test-connection (load, find the token, open a session, log in, log out).
 * They talk to the backends directly through lib/backend, not through
 * libproxy.so: an operator checks the members, not the proxy's view of them.
 * Members come in the effective order (the overlay of `members`, else the
 * configuration's), numbered from 1 as everywhere in the CLI.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/call.h"
#include "base/mem.h"
#include "base/secret.h"
#include "cli.h"
#include "config/config.h"
#include "util.h"
#include "ha/order.h"

#define ERR_LEN 512

struct ctx {
	const struct cli *cli;
	struct p11p_config *cfg;
	struct cli_backends *bes; /* each opened on first use: a broken, unused one costs nothing */
};

/* What a member check found. */
struct member_state {
	struct p11p_member m;
	struct p11p_bctx bc; /* calls under CLI_PROBE_TIMEOUT_MS */
	CK_RV rv;
	char err[ERR_LEN]; /* why it is not usable, when rv != CKR_OK */
};

static int ctx_open(struct ctx *c, const struct cli *cli)
{
	memset(c, 0, sizeof(*c));
	c->cli = cli;
	c->cfg = cli_config(cli);
	if (c->cfg == NULL)
		return CLI_FAIL;
	c->bes = cli_backends_new(c->cfg);
	if (c->bes == NULL) {
		cli_error("out of memory");
		p11p_config_free(c->cfg);
		c->cfg = NULL;
		return CLI_FAIL;
	}
	return CLI_OK;
}

static void ctx_close(struct ctx *c)
{
	cli_backends_free(c->bes);
	p11p_config_free(c->cfg);
	memset(c, 0, sizeof(*c));
}

/* Loads the member's backend and finds its token (calls with a deadline). */
static void member_find(struct ctx *c, const struct p11p_member_cfg *mc, struct member_state *ms)
{
	memset(ms, 0, sizeof(*ms));
	ms->m.cfg = mc;
	atomic_init(&ms->m.health, P11P_UP);
	ms->m.be = cli_backend(c->bes, mc->backend, ms->err, sizeof(ms->err));
	if (ms->m.be == NULL) {
		ms->rv = CKR_GENERAL_ERROR;
		return;
	}
	ms->bc = (struct p11p_bctx){.be = ms->m.be, .timeout_ms = CLI_PROBE_TIMEOUT_MS};
	ms->rv = p11p_member_resolve(&ms->m, &ms->bc, ms->err, sizeof(ms->err));
	if (ms->rv != CKR_OK && ms->err[0] == '\0')
		snprintf(ms->err, sizeof(ms->err), "%s", cli_rv(ms->rv));
}

static json_t *json_selector(const struct p11p_member_cfg *mc)
{
	json_t *o = json_object();
	char buf[32];

	cli_jset(o, "type", cli_jstr(p11p_selector_name(mc->sel)));
	if (mc->sel == P11P_SEL_SLOT_ID)
		cli_jset(o, "value", json_integer((json_int_t)mc->slot_id));
	else
		cli_jset(o, "value", cli_jstr(p11p_selector_value(mc, buf, sizeof(buf))));
	return o;
}

/* Token info strings, unpadded. */
struct token_text {
	char label[33], manufacturer[33], model[17], serial[17];
};

static void token_text(const CK_TOKEN_INFO *ti, struct token_text *t)
{
	p11p_unpad(t->label, ti->label, sizeof(ti->label));
	p11p_unpad(t->manufacturer, ti->manufacturerID, sizeof(ti->manufacturerID));
	p11p_unpad(t->model, ti->model, sizeof(ti->model));
	p11p_unpad(t->serial, ti->serialNumber, sizeof(ti->serialNumber));
}

/*
 * The label applications see. The quick start leaves it empty, meaning "the
 * member's own token label": show that when the first member answered.
 */
static void slot_label(const struct p11p_slot_cfg *sc, const struct member_state *first, char *buf,
                       size_t buflen)
{
	CK_TOKEN_INFO ti;

	if (sc->label != NULL && sc->label[0] != '\0') {
		snprintf(buf, buflen, "%s", sc->label);
		return;
	}
	buf[0] = '\0';
	if (first != NULL && first->rv == CKR_OK &&
	    p11p_be_C_GetTokenInfo(&first->bc, first->m.be_slot, &ti) == CKR_OK) {
		struct token_text t;

		token_text(&ti, &t);
		snprintf(buf, buflen, "%s", t.label);
	}
}

/* The slot's effective order; a damaged overlay is reported (the configured order is used). */
static void slot_order(struct ctx *c, size_t s, struct p11p_order *o, char *err, size_t errlen)
{
	if (cli_slot_order(c->cfg, s, o, err, errlen) < 0) {
		char nb[24];

		cli_error("slot %s: member order file ignored (the configured order is used): %s",
		          cli_slot_name(c->cfg, s, nb, sizeof(nb)), err);
	}
}

/* --- slots ------------------------------------------------------------------------------- */

static void slots_member_text(const struct ctx *c, size_t num, const char *name,
                              const struct member_state *ms)
{
	const struct p11p_member_cfg *mc = ms->m.cfg;
	const struct p11p_backend_cfg *bc = &c->cfg->backends[mc->backend];
	char vb[32], fb[512];
	CK_TOKEN_INFO ti;
	struct token_text t;
	CK_RV rv;

	printf("  member %zu %s: backend %s (%s), %s \"%s\"\n", num, cli_esc(name),
	       cli_esc(bc->name), cli_esc(bc->module), p11p_selector_name(mc->sel),
	       cli_esc(p11p_selector_value(mc, vb, sizeof(vb))));
	if (ms->rv != CKR_OK) {
		printf("    backend slot: not found: %s\n", cli_esc(ms->err));
		return;
	}
	printf("    backend slot: %lu\n", (unsigned long)ms->m.be_slot);
	rv = p11p_be_C_GetTokenInfo(&ms->bc, ms->m.be_slot, &ti);
	if (rv != CKR_OK) {
		printf("    token: C_GetTokenInfo: %s\n", cli_rv(rv));
		return;
	}
	token_text(&ti, &t);
	printf("    token: label \"%s\", manufacturer \"%s\", model \"%s\", serial \"%s\"\n",
	       cli_esc(t.label), cli_esc(t.manufacturer), cli_esc(t.model), cli_esc(t.serial));
	printf("    flags: %s\n", cli_token_flags(ti.flags, fb, sizeof(fb)));
}

static json_t *slots_member_json(const struct ctx *c, size_t num, const char *name,
                                 const struct member_state *ms)
{
	const struct p11p_member_cfg *mc = ms->m.cfg;
	const struct p11p_backend_cfg *bc = &c->cfg->backends[mc->backend];
	json_t *o = json_object(), *tok;
	CK_TOKEN_INFO ti;
	struct token_text t;
	CK_RV rv;

	cli_jset(o, "member", json_integer((json_int_t)num));
	cli_jset(o, "name", cli_jstr(name));
	cli_jset(o, "backend", cli_jstr(bc->name));
	cli_jset(o, "module", cli_jstr(bc->module));
	cli_jset(o, "selector", json_selector(mc));
	if (ms->rv != CKR_OK) {
		cli_jset(o, "found", json_false());
		cli_jset(o, "backend_slot", json_null());
		cli_jset(o, "error", cli_jstr(ms->err));
		return o;
	}
	cli_jset(o, "found", json_true());
	cli_jset(o, "backend_slot", json_integer((json_int_t)ms->m.be_slot));
	rv = p11p_be_C_GetTokenInfo(&ms->bc, ms->m.be_slot, &ti);
	if (rv != CKR_OK) {
		cli_jset(o, "token", json_null());
		cli_jset(o, "error", cli_jstr(cli_rv(rv)));
		return o;
	}
	token_text(&ti, &t);
	tok = json_object();
	cli_jset(tok, "label", cli_jstr(t.label));
	cli_jset(tok, "manufacturer", cli_jstr(t.manufacturer));
	cli_jset(tok, "model", cli_jstr(t.model));
	cli_jset(tok, "serial", cli_jstr(t.serial));
	cli_jset(tok, "flags", cli_json_token_flags(ti.flags));
	cli_jset(o, "token", tok);
	return o;
}

int cmd_slots(struct cli *cli, int argc, char **argv)
{
	struct member_state *ms = NULL;
	json_t *doc = NULL, *jslots = NULL;
	struct ctx c;
	int rc, o;

	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "", NULL)) != -1)
		return CLI_USAGE;
	if (argc - optind == 1 && strcmp(argv[optind], "help") == 0)
		return cli_cmd_help("slots");
	if (argc > optind)
		return cli_usage("slots", "unexpected argument '%s'", argv[optind]);
	rc = ctx_open(&c, cli);
	if (rc != CLI_OK)
		return rc;
	ms = p11p_calloc(P11P_MAX_MEMBERS, sizeof(*ms));
	if (ms == NULL) {
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
		const struct p11p_slot_cfg *sc = &c.cfg->slots[s];
		struct p11p_order ord;
		char label[64], serial[17], err[1024];
		json_t *js = NULL, *jm = NULL;

		slot_order(&c, s, &ord, err, sizeof(err));
		for (size_t i = 0; i < ord.n; i++)
			member_find(&c, cli_order_member(c.cfg, s, &ord.e[i]), &ms[i]);
		slot_label(sc, ord.n > 0 ? &ms[0] : NULL, label, sizeof(label));
		cli_slot_serial(c.cfg, s, serial, sizeof(serial));
		if (cli->json) {
			js = json_object();
			jm = json_array();
			cli_jset(js, "id", json_integer((json_int_t)s));
			cli_jset(js, "label", cli_jstr(label));
			cli_jset(js, "serial", cli_jstr(serial));
			cli_jset(js, "order", json_string(ord.from_file ? "overlay" : "config"));
			cli_jset(js, "order_error", cli_jstr(err[0] != '\0' ? err : NULL));
			cli_jset(js, "user_pin_hash", json_boolean(sc->user_pin_hash != NULL));
		} else {
			printf("slot %zu: %s\n", s,
			       label[0] != '\0' ? cli_esc(label) : "(unresolved label)");
		}
		for (size_t i = 0; i < ord.n; i++) {
			if (cli->json)
				json_array_append_new(jm,
				                      slots_member_json(&c, i + 1, ord.e[i].name, &ms[i]));
			else
				slots_member_text(&c, i + 1, ord.e[i].name, &ms[i]);
		}
		if (cli->json) {
			cli_jset(js, "members", jm);
			json_array_append_new(jslots, js);
		}
		p11p_order_clear(&ord);
	}
	if (cli->json) {
		cli_jset(doc, "slots", jslots);
		cli_json_print(doc);
	} else if (c.cfg->n_slots == 0) {
		printf("no virtual slots configured in %s\n", cli_esc(c.cfg->path));
	}
out:
	p11p_free(ms);
	ctx_close(&c);
	return rc;
}

/* --- test-connection ------------------------------------------------------------------- */

/*
 * Session + optional login on a found member. CKR_OK or the failing call in
 * err. An added member's PIN is read from its source here, as the module would.
 */
static CK_RV member_connect(struct member_state *ms)
{
	const struct p11p_bctx *bc = &ms->bc;
	const struct p11p_member_cfg *mc = ms->m.cfg;
	struct p11p_secret *own = NULL;
	const struct p11p_secret *pin = mc->pin;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	bool logged_in = false;
	CK_RV rv;

	if (pin == NULL && mc->pin_source != NULL) {
		char err[ERR_LEN / 2];

		own = cli_pin_from_source(mc->pin_source, err, sizeof(err));
		if (own == NULL) {
			snprintf(ms->err, sizeof(ms->err), "PIN: %s", err);
			return CKR_PIN_INCORRECT;
		}
		pin = own;
	}
	rv = p11p_be_C_OpenSession(bc, ms->m.be_slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK) {
		snprintf(ms->err, sizeof(ms->err), "C_OpenSession: %s", cli_rv(rv));
		p11p_secret_free(own);
		return rv;
	}
	if (pin != NULL) {
		size_t len = p11p_secret_len(pin);
		/* C_Login takes a non-const pointer: hand it a copy, wiped after. */
		CK_UTF8CHAR *copy = p11p_malloc(len > 0 ? len : 1);

		if (copy == NULL) {
			rv = CKR_HOST_MEMORY;
			snprintf(ms->err, sizeof(ms->err), "out of memory");
			goto out;
		}
		memcpy(copy, p11p_secret_data(pin), len);
		rv = p11p_be_C_Login(bc, h, CKU_USER, copy, (CK_ULONG)len);
		p11p_wipe(copy, len);
		p11p_free(copy);
		if (rv == CKR_OK) {
			logged_in = true;
		} else if (rv == CKR_USER_ALREADY_LOGGED_IN) {
			/* Another session of this process holds the login: still connected. */
			rv = CKR_OK;
		} else {
			snprintf(ms->err, sizeof(ms->err), "C_Login: %s", cli_rv(rv));
			goto out;
		}
	}
out:
	if (logged_in)
		p11p_be_C_Logout(bc, h);
	p11p_be_C_CloseSession(bc, h);
	p11p_secret_free(own);
	return rv;
}

int cmd_test_connection(struct cli *cli, int argc, char **argv)
{
	struct member_state *ms = NULL;
	const char *want = NULL;
	size_t only = (size_t)-1;
	bool all_ok = true;
	json_t *doc = NULL, *jms = NULL;
	struct ctx c;
	int rc, o;

	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "", NULL)) != -1)
		return CLI_USAGE;
	if (argc - optind > 1)
		return cli_usage("test-connection", "give at most one SLOT");
	if (argc - optind == 1)
		want = argv[optind];
	if (want != NULL && strcmp(want, "help") == 0)
		return cli_cmd_help("test-connection");
	rc = ctx_open(&c, cli);
	if (rc != CLI_OK)
		return rc;
	if (want != NULL) {
		only = cli_slot_arg(c.cfg, "test-connection", want);
		if (only == (size_t)-1) {
			rc = CLI_USAGE;
			goto out;
		}
	}
	ms = p11p_calloc(1, sizeof(*ms));
	if (ms == NULL) {
		cli_error("out of memory");
		rc = CLI_FAIL;
		goto out;
	}
	if (cli->json) {
		doc = json_object();
		jms = json_array();
		cli_jset(doc, "config", cli_jstr(c.cfg->path));
	}
	for (size_t s = 0; s < c.cfg->n_slots; s++) {
		const struct p11p_slot_cfg *sc = &c.cfg->slots[s];
		struct p11p_order ord;
		char label[64] = "", err[1024];

		if (only != (size_t)-1 && s != only)
			continue;
		slot_order(&c, s, &ord, err, sizeof(err));
		if (err[0] != '\0')
			all_ok = false;
		for (size_t i = 0; i < ord.n; i++) {
			const struct p11p_member_cfg *mc = cli_order_member(c.cfg, s, &ord.e[i]);
			const char *bname = mc->backend < c.cfg->n_backends
			                        ? c.cfg->backends[mc->backend].name
			                        : "?";
			char vb[32];

			member_find(&c, mc, ms);
			if (ms->rv == CKR_OK)
				ms->rv = member_connect(ms);
			if (i == 0)
				slot_label(sc, ms, label, sizeof(label));
			if (label[0] == '\0')
				snprintf(label, sizeof(label), "#%zu", s);
			if (ms->rv != CKR_OK)
				all_ok = false;
			if (cli->json) {
				json_t *jm = json_object();

				cli_jset(jm, "slot", json_integer((json_int_t)s));
				cli_jset(jm, "label", cli_jstr(label));
				cli_jset(jm, "member", json_integer((json_int_t)i + 1));
				cli_jset(jm, "name", cli_jstr(ord.e[i].name));
				cli_jset(jm, "added", json_boolean(ord.e[i].spec != NULL));
				cli_jset(jm, "backend", cli_jstr(bname));
				cli_jset(jm, "selector", json_selector(mc));
				cli_jset(jm, "login",
				         json_boolean(mc->pin != NULL || mc->pin_source != NULL));
				cli_jset(jm, "connected", json_boolean(ms->rv == CKR_OK));
				cli_jset(jm, "reason", cli_jstr(ms->rv == CKR_OK ? NULL : ms->err));
				json_array_append_new(jms, jm);
			} else {
				printf("%s member %zu %s (%s, %s=%s): %s%s\n", cli_esc(label), i + 1,
				       cli_esc(ord.e[i].name), cli_esc(bname),
				       p11p_selector_name(mc->sel),
				       cli_esc(p11p_selector_value(mc, vb, sizeof(vb))),
				       ms->rv == CKR_OK ? "Connected" : "Not connected: ",
				       ms->rv == CKR_OK ? "" : cli_esc(ms->err));
			}
		}
		p11p_order_clear(&ord);
	}
	if (cli->json) {
		cli_jset(doc, "members", jms);
		cli_jset(doc, "ok", json_boolean(all_ok));
		cli_json_print(doc);
	}
	rc = all_ok ? CLI_OK : CLI_FAIL;
out:
	p11p_free(ms);
	ctx_close(&c);
	return rc;
}
