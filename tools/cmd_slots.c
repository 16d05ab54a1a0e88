/*
 * Slot commands: slots (list virtual slots, members, tokens) and
 * test-connection (load, find the token, open a session, log in, log out).
 * They talk to the backends directly through lib/backend, not through
 * libproxy.so: an operator checks the members, not the proxy's view of them.
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

#define ERR_LEN 512

struct ctx {
	const struct cli *cli;
	struct p11p_config *cfg;
	struct cli_backends *bes; /* each opened on first use: a broken, unused one costs nothing */
};

/* What a member check found. */
struct member_state {
	struct p11p_member m;
	CK_RV rv;
	char err[ERR_LEN]; /* why it is not usable, when rv != CKR_OK */
};

static int ctx_open(struct ctx *c, const struct cli *cli)
{
	char err[1024];

	memset(c, 0, sizeof(*c));
	c->cli = cli;
	err[0] = '\0';
	c->cfg = p11p_config_load(cli->config_path, err, sizeof(err));
	if (c->cfg == NULL) {
		fprintf(stderr, "%s\n", err[0] != '\0' ? err : "cannot load the configuration");
		return CLI_FAIL;
	}
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

/* Loads the member's backend and finds its token. */
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
	ms->rv = p11p_member_resolve(&ms->m, p11p_backend_ctx(ms->m.be), ms->err, sizeof(ms->err));
	if (ms->rv != CKR_OK && ms->err[0] == '\0') {
		char nb[32];

		snprintf(ms->err, sizeof(ms->err), "%s", cli_rv_name(ms->rv, nb, sizeof(nb)));
	}
}

static void json_selector(FILE *f, const struct p11p_member_cfg *mc)
{
	char buf[32];

	fputs("\"selector\":{\"type\":", f);
	cli_json_str(f, p11p_selector_name(mc->sel));
	fputs(",\"value\":", f);
	if (mc->sel == P11P_SEL_SLOT_ID)
		fprintf(f, "%lu", (unsigned long)mc->slot_id);
	else
		cli_json_str(f, p11p_selector_value(mc, buf, sizeof(buf)));
	fputc('}', f);
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
	    p11p_be_C_GetTokenInfo(p11p_backend_ctx(first->m.be), first->m.be_slot, &ti) ==
	        CKR_OK) {
		struct token_text t;

		token_text(&ti, &t);
		snprintf(buf, buflen, "%s", t.label);
	}
}

/* --- slots ------------------------------------------------------------------------------- */

static void slots_member_text(const struct ctx *c, size_t idx, const struct member_state *ms)
{
	const struct p11p_member_cfg *mc = ms->m.cfg;
	const struct p11p_backend_cfg *bc = &c->cfg->backends[mc->backend];
	char vb[32], nb[32], fb[512];
	CK_TOKEN_INFO ti;
	CK_RV rv;

	printf("  member %zu: backend %s (%s), %s \"%s\"\n", idx, bc->name, bc->module,
	       p11p_selector_name(mc->sel), p11p_selector_value(mc, vb, sizeof(vb)));
	if (ms->rv != CKR_OK) {
		printf("    backend slot: not found: %s\n", ms->err);
		return;
	}
	printf("    backend slot: %lu\n", (unsigned long)ms->m.be_slot);
	rv = p11p_be_C_GetTokenInfo(p11p_backend_ctx(ms->m.be), ms->m.be_slot, &ti);
	if (rv != CKR_OK) {
		printf("    token: C_GetTokenInfo: %s\n", cli_rv_name(rv, nb, sizeof(nb)));
		return;
	}
	struct token_text t;

	token_text(&ti, &t);
	printf("    token: label \"%s\", manufacturer \"%s\", model \"%s\", serial \"%s\"\n",
	       t.label, t.manufacturer, t.model, t.serial);
	printf("    flags: %s\n", cli_token_flags(ti.flags, fb, sizeof(fb)));
}

static void slots_member_json(const struct ctx *c, size_t idx, const struct member_state *ms)
{
	const struct p11p_member_cfg *mc = ms->m.cfg;
	const struct p11p_backend_cfg *bc = &c->cfg->backends[mc->backend];
	char nb[32];
	CK_TOKEN_INFO ti;
	CK_RV rv;

	printf("{\"index\":%zu,\"backend\":", idx);
	cli_json_str(stdout, bc->name);
	fputs(",\"module\":", stdout);
	cli_json_str(stdout, bc->module);
	fputc(',', stdout);
	json_selector(stdout, mc);
	if (ms->rv != CKR_OK) {
		fputs(",\"found\":false,\"backend_slot\":null,\"error\":", stdout);
		cli_json_str(stdout, ms->err);
		fputc('}', stdout);
		return;
	}
	printf(",\"found\":true,\"backend_slot\":%lu", (unsigned long)ms->m.be_slot);
	rv = p11p_be_C_GetTokenInfo(p11p_backend_ctx(ms->m.be), ms->m.be_slot, &ti);
	if (rv != CKR_OK) {
		fputs(",\"token\":null,\"error\":", stdout);
		cli_json_str(stdout, cli_rv_name(rv, nb, sizeof(nb)));
		fputc('}', stdout);
		return;
	}
	struct token_text t;

	token_text(&ti, &t);
	fputs(",\"token\":{\"label\":", stdout);
	cli_json_str(stdout, t.label);
	fputs(",\"manufacturer\":", stdout);
	cli_json_str(stdout, t.manufacturer);
	fputs(",\"model\":", stdout);
	cli_json_str(stdout, t.model);
	fputs(",\"serial\":", stdout);
	cli_json_str(stdout, t.serial);
	fputs(",\"flags\":", stdout);
	cli_json_token_flags(stdout, ti.flags);
	fputs("}}", stdout);
}

int cmd_slots(const struct cli *cli, int argc, char **argv)
{
	struct member_state *ms = NULL;
	struct ctx c;
	int rc;

	if (argc > 0)
		return cli_usage("slots", "unexpected argument '%s'", argv[0]);
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
		fputs("{\"config\":", stdout);
		cli_json_str(stdout, c.cfg->path);
		fputs(",\"slots\":[", stdout);
	}
	for (size_t s = 0; s < c.cfg->n_slots; s++) {
		const struct p11p_slot_cfg *sc = &c.cfg->slots[s];
		size_t n = sc->n_members < P11P_MAX_MEMBERS ? sc->n_members : P11P_MAX_MEMBERS;
		char label[64];

		for (size_t i = 0; i < n; i++)
			member_find(&c, &sc->members[i], &ms[i]);
		slot_label(sc, n > 0 ? &ms[0] : NULL, label, sizeof(label));
		if (cli->json) {
			printf("%s{\"id\":%zu,\"label\":", s > 0 ? "," : "", s);
			cli_json_str(stdout, label);
			printf(",\"user_pin_hash\":%s,\"members\":[",
			       sc->user_pin_hash != NULL ? "true" : "false");
		} else {
			printf("slot %zu: %s\n", s,
			       label[0] != '\0' ? label : "(unresolved label)");
		}
		for (size_t i = 0; i < n; i++) {
			if (cli->json) {
				if (i > 0)
					fputc(',', stdout);
				slots_member_json(&c, i, &ms[i]);
			} else {
				slots_member_text(&c, i, &ms[i]);
			}
		}
		if (cli->json)
			fputs("]}", stdout);
	}
	if (cli->json)
		fputs("]}\n", stdout);
	else if (c.cfg->n_slots == 0)
		printf("no virtual slots configured in %s\n", c.cfg->path);
out:
	p11p_free(ms);
	ctx_close(&c);
	return rc;
}

/* --- test-connection ------------------------------------------------------------------- */

/* Session + optional login on a found member. CKR_OK or the failing call in err. */
static CK_RV member_connect(struct member_state *ms)
{
	const struct p11p_bctx *bc = p11p_backend_ctx(ms->m.be);
	const struct p11p_secret *pin = ms->m.cfg->pin;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	bool logged_in = false;
	char nb[32];
	CK_RV rv;

	rv = p11p_be_C_OpenSession(bc, ms->m.be_slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK) {
		snprintf(ms->err, sizeof(ms->err), "C_OpenSession: %s",
		         cli_rv_name(rv, nb, sizeof(nb)));
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
			snprintf(ms->err, sizeof(ms->err), "C_Login: %s",
			         cli_rv_name(rv, nb, sizeof(nb)));
			goto out;
		}
	}
out:
	if (logged_in)
		p11p_be_C_Logout(bc, h);
	p11p_be_C_CloseSession(bc, h);
	return rv;
}

int cmd_test_connection(const struct cli *cli, int argc, char **argv)
{
	struct member_state *ms = NULL;
	const char *want = NULL;
	size_t only = (size_t)-1;
	bool all_ok = true;
	bool first_json = true;
	struct ctx c;
	int rc;

	for (int i = 0; i < argc; i++) {
		if (argv[i][0] == '-')
			return cli_usage("test-connection", "unknown option '%s'", argv[i]);
		if (want != NULL)
			return cli_usage("test-connection", "give at most one SLOT");
		want = argv[i];
	}
	rc = ctx_open(&c, cli);
	if (rc != CLI_OK)
		return rc;
	if (want != NULL) {
		only = cli_find_slot(c.cfg, want);
		if (only == (size_t)-1) {
			rc = cli_usage("test-connection", "no virtual slot '%s' in %s", want,
			               c.cfg->path);
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
		fputs("{\"config\":", stdout);
		cli_json_str(stdout, c.cfg->path);
		fputs(",\"members\":[", stdout);
	}
	for (size_t s = 0; s < c.cfg->n_slots; s++) {
		const struct p11p_slot_cfg *sc = &c.cfg->slots[s];
		char label[64] = "";

		if (only != (size_t)-1 && s != only)
			continue;
		for (size_t i = 0; i < sc->n_members; i++) {
			const struct p11p_member_cfg *mc = &sc->members[i];
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
				printf("%s{\"slot\":%zu,\"label\":", first_json ? "" : ",", s);
				first_json = false;
				cli_json_str(stdout, label);
				printf(",\"member\":%zu,\"backend\":", i);
				cli_json_str(stdout, bname);
				fputc(',', stdout);
				json_selector(stdout, mc);
				printf(",\"login\":%s,\"connected\":%s,\"reason\":",
				       mc->pin != NULL ? "true" : "false",
				       ms->rv == CKR_OK ? "true" : "false");
				cli_json_str(stdout, ms->rv == CKR_OK ? NULL : ms->err);
				fputc('}', stdout);
			} else if (ms->rv == CKR_OK) {
				printf("%s member %zu (%s, %s=%s): Connected\n", label, i, bname,
				       p11p_selector_name(mc->sel),
				       p11p_selector_value(mc, vb, sizeof(vb)));
			} else {
				printf("%s member %zu (%s, %s=%s): Not connected: %s\n", label, i,
				       bname, p11p_selector_name(mc->sel),
				       p11p_selector_value(mc, vb, sizeof(vb)), ms->err);
			}
		}
	}
	if (cli->json)
		printf("],\"ok\":%s}\n", all_ok ? "true" : "false");
	rc = all_ok ? CLI_OK : CLI_FAIL;
out:
	p11p_free(ms);
	ctx_close(&c);
	return rc;
}
