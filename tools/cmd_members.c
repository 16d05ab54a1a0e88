/*
 * Member order: `p11proxy members SLOT [ACTION ...]`.
 *
 *   members SLOT                              list, in priority order, with a probe of each
 *   members SLOT top|up|down|bottom|delete MEMBER
 *   members SLOT add --name N --backend B (--slot-id X | --token-label L |
 *                    --token-serial S | --uri U) [--pin-source env:VAR|file:/path]
 *   members SLOT reset                        back to the configured order
 *
 * MEMBER is a member's name or its 1-based position (a name wins). `add`
 * checks what check-config checks before it writes: the token is found and
 * answers (calls under a deadline), the PIN source is readable and private
 * and logs in, and no member of the slot has that name or that token. Changes
 * go to the slot's overlay file in the config's state_dir (lib/virt/order.c:
 * format, locking, atomic replacement); processes that have the module
 * loaded follow within about a second. A damaged overlay is refused with its
 * FILE:LINE (fix it, or `reset`). PINs are never given here: an added
 * member's PIN source is read by each process that loads the module.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/call.h"
#include "base/mem.h"
#include "cli.h"
#include "keys.h"
#include "config/config.h"
#include "util.h"
#include "ha/order.h"

#define ERR_LEN 1024

/* ---- listing -------------------------------------------------------------------------------- */

static json_t *json_selector(const struct p11p_member_cfg *mc)
{
	json_t *o = json_object();
	char vb[32];

	cli_jset(o, "type", cli_jstr(p11p_selector_name(mc->sel)));
	if (mc->sel == P11P_SEL_SLOT_ID)
		cli_jset(o, "value", json_integer((json_int_t)mc->slot_id));
	else
		cli_jset(o, "value", cli_jstr(p11p_selector_value(mc, vb, sizeof(vb))));
	return o;
}

/* A damaged overlay: its FILE:LINE message, and the way out. */
static void damaged(const struct p11p_config *cfg, size_t slot, const char *err)
{
	char name[24];

	cli_error_plain(err);
	cli_error("fix the overlay, or go back to the configured order with 'p11proxy members %s "
	          "reset'",
	          cli_slot_name(cfg, slot, name, sizeof(name)));
}

static int list(const struct cli *cli, const struct p11p_config *cfg, size_t slot)
{
	struct cli_backends *bs;
	struct p11p_order o;
	char err[ERR_LEN], path[4096], name[24];
	const struct p11p_slot_cfg *sc = &cfg->slots[slot];
	bool listed[P11P_MAX_MEMBERS] = {false};
	json_t *doc = NULL, *jms = NULL, *jdel = NULL;
	struct p11p_index *idx = NULL;
	bool first;
	int store, rd;

	err[0] = '\0';
	store = keys_overlay_store(cfg, false, &idx);
	if (store < 0)
		return CLI_FAIL;
	if (store > 0 && idx == NULL) {
		p11p_order_from_config(cfg, slot, &o); /* no store yet: no overlay */
		rd = 0;
	} else {
		rd = p11p_order_read(cfg, idx, slot, &o, NULL, err, sizeof(err));
	}
	p11p_index_close(idx);
	if (rd < 0) {
		damaged(cfg, slot, err);
		return CLI_FAIL;
	}
	bs = cli_backends_new(cfg);
	if (bs == NULL) {
		p11p_order_clear(&o);
		cli_error("out of memory");
		return CLI_FAIL;
	}
	if (store > 0)
		snprintf(path, sizeof(path), "%s", cfg->index_path);
	else if (p11p_order_path(cfg, slot, path, sizeof(path)) != 0)
		path[0] = '\0';
	if (cli->json) {
		doc = json_object();
		jms = json_array();
		jdel = json_array();
		cli_jset(doc, "slot", json_integer((json_int_t)slot));
		cli_jset(doc, "label", cli_jstr(cli_slot_name(cfg, slot, name, sizeof(name))));
		cli_jset(doc, "order", json_string(o.from_file ? "overlay" : "config"));
		cli_jset(doc, "file", cli_jstr(path[0] != '\0' ? path : NULL));
	} else {
		printf("slot %s: order from %s\n",
		       cli_esc(cli_slot_name(cfg, slot, name, sizeof(name))),
		       o.from_file ? cli_esc(path) : "the configuration");
	}
	for (size_t i = 0; i < o.n; i++) {
		const struct p11p_member_cfg *mc = cli_order_member(cfg, slot, &o.e[i]);
		const char *bname = cfg->backends[mc->backend].name;
		char why[512], vb[32];
		bool ok = cli_member_probe(bs, mc, why, sizeof(why));

		if (o.e[i].spec == NULL)
			listed[o.e[i].config_index] = true;
		if (cli->json) {
			json_t *jm = json_object();

			cli_jset(jm, "member", json_integer((json_int_t)i + 1));
			cli_jset(jm, "priority", json_integer((json_int_t)i + 1));
			cli_jset(jm, "name", cli_jstr(o.e[i].name));
			cli_jset(jm, "backend", cli_jstr(bname));
			cli_jset(jm, "selector", json_selector(mc));
			cli_jset(jm, "pin", cli_jstr(mc->pin_source));
			cli_jset(jm, "added", json_boolean(o.e[i].spec != NULL));
			cli_jset(jm, "healthy", json_boolean(ok));
			cli_jset(jm, "reason", cli_jstr(ok ? NULL : why));
			json_array_append_new(jms, jm);
		} else {
			printf("  %2zu  %-16s backend %-12s %s=%s%s  %s%s\n", i + 1,
			       cli_esc(o.e[i].name), cli_esc(bname), p11p_selector_name(mc->sel),
			       cli_esc(p11p_selector_value(mc, vb, sizeof(vb))),
			       o.e[i].spec != NULL ? " (added)" : "",
			       ok ? "healthy" : "unhealthy: ", ok ? "" : cli_esc(why));
		}
	}
	/* Configured members the overlay leaves out are deleted. */
	first = true;
	for (size_t i = 0; i < sc->n_members; i++) {
		if (listed[i] || !o.from_file)
			continue;
		if (cli->json)
			json_array_append_new(jdel, cli_jstr(sc->members[i].name));
		else
			printf("%s%s", first ? "  deleted: " : ", ", cli_esc(sc->members[i].name));
		first = false;
	}
	if (cli->json) {
		cli_jset(doc, "members", jms);
		cli_jset(doc, "deleted", jdel);
		cli_json_print(doc);
	} else if (!first) {
		fputc('\n', stdout);
	}
	p11p_order_clear(&o);
	cli_backends_free(bs);
	return CLI_OK;
}

/* ---- changes ------------------------------------------------------------------------------ */

/* MEMBER as a name, else a 1-based position; (size_t)-1 when neither. */
static size_t find_member(const struct p11p_order *o, const char *arg)
{
	char *end;
	unsigned long pos;

	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->e[i].name, arg) == 0)
			return i;
	if (arg[0] >= '1' && arg[0] <= '9') {
		pos = strtoul(arg, &end, 10);
		if (*end == '\0' && pos >= 1 && pos <= o->n)
			return (size_t)pos - 1;
	}
	return (size_t)-1;
}

static void move_entry(struct p11p_order *o, size_t from, size_t to)
{
	struct p11p_order_entry e = o->e[from];

	if (from < to)
		memmove(&o->e[from], &o->e[from + 1], (to - from) * sizeof(e));
	else if (from > to)
		memmove(&o->e[to + 1], &o->e[to], (from - to) * sizeof(e));
	o->e[to] = e;
}

struct add_opts {
	const char *name, *backend, *pin_source;
	const char *sel_opt, *sel_val; /* the one selector option given */
	bool any;                      /* an add option was given */
};

/*
 * The new member as an overlay entry, checked exactly as the module will
 * read it: the spec is written as an overlay line and parsed back.
 */
static int build_entry(const struct p11p_config *cfg, size_t slot, const struct add_opts *a,
                       struct p11p_order *out)
{
	struct p11p_member_cfg *mc;
	struct p11p_order one;
	char err[ERR_LEN], *text = NULL, **sel;
	size_t b;
	int rc = CLI_FAIL;

	for (b = 0; b < cfg->n_backends; b++)
		if (strcmp(cfg->backends[b].name, a->backend) == 0)
			break;
	if (b == cfg->n_backends) {
		cli_error("no backend '%s' in %s", a->backend, cfg->path);
		return CLI_FAIL;
	}
	if (strlen(a->name) > P11P_NAME_MAX) {
		cli_error("member name '%.64s...' is longer than %d bytes", a->name, P11P_NAME_MAX);
		return CLI_FAIL;
	}
	mc = p11p_calloc(1, sizeof(*mc));
	if (mc == NULL)
		goto oom;
	mc->backend = b;
	mc->name = p11p_strdup(a->name);
	mc->pin_source = a->pin_source != NULL ? p11p_strdup(a->pin_source) : NULL;
	if (mc->name == NULL || (a->pin_source != NULL && mc->pin_source == NULL))
		goto oom;
	if (strcmp(a->sel_opt, "--slot-id") == 0) {
		char *end;

		mc->sel = P11P_SEL_SLOT_ID;
		mc->slot_id = strtoul(a->sel_val, &end, 0);
		if (a->sel_val[0] < '0' || a->sel_val[0] > '9' || *end != '\0') {
			cli_error("--slot-id '%s' is not an unsigned integer", a->sel_val);
			goto out;
		}
	} else {
		if (strcmp(a->sel_opt, "--token-label") == 0) {
			mc->sel = P11P_SEL_TOKEN_LABEL;
			sel = &mc->token_label;
		} else if (strcmp(a->sel_opt, "--token-serial") == 0) {
			mc->sel = P11P_SEL_TOKEN_SERIAL;
			sel = &mc->token_serial;
		} else {
			mc->sel = P11P_SEL_URI;
			sel = &mc->uri;
		}
		*sel = p11p_strdup(a->sel_val);
		if (*sel == NULL)
			goto oom;
	}
	memset(&one, 0, sizeof(one));
	snprintf(one.e[0].name, sizeof(one.e[0].name), "%s", a->name);
	one.e[0].spec = mc;
	one.n = 1;
	text = p11p_order_format(cfg, slot, &one);
	if (text == NULL) {
		cli_error("the member's values are too long");
		goto out;
	}
	err[0] = '\0';
	if (!p11p_order_parse(cfg, slot, "new member", text, strlen(text), out, err, sizeof(err))) {
		/* "new member:2: message": that line number means nothing to the user. */
		const char *msg = strstr(err, ": ");

		cli_error("%s", msg != NULL ? msg + 2 : err);
		goto out;
	}
	rc = CLI_OK;
	goto out;
oom:
	cli_error("out of memory");
out:
	p11p_free(text);
	p11p_member_cfg_free(mc);
	return rc;
}

/* ---- add: what check-config checks, before anything is written ----------------------------- */

/* Finds mc's token on its backend under the probe deadline: 0, or -1 with why. */
static int resolve(struct cli_backends *bs, const struct p11p_member_cfg *mc, struct p11p_member *m,
                   struct p11p_bctx *x, char *why, size_t whylen)
{
	CK_RV rv;

	memset(m, 0, sizeof(*m));
	m->cfg = mc;
	atomic_init(&m->health, P11P_UP);
	why[0] = '\0';
	m->be = cli_backend(bs, mc->backend, why, whylen);
	if (m->be == NULL)
		return -1;
	*x = (struct p11p_bctx){.be = m->be, .timeout_ms = CLI_PROBE_TIMEOUT_MS};
	rv = p11p_member_resolve(m, x, why, whylen);
	if (rv != CKR_OK) {
		if (why[0] == '\0')
			snprintf(why, whylen, "%s", cli_rv(rv));
		return -1;
	}
	return 0;
}

/* Same backend and the same selector, written the same way? */
static bool same_selector(const struct p11p_member_cfg *a, const struct p11p_member_cfg *b)
{
	char va[32], vb[32];

	return a->backend == b->backend && a->sel == b->sel &&
	       strcmp(p11p_selector_value(a, va, sizeof(va)),
	              p11p_selector_value(b, vb, sizeof(vb))) == 0;
}

/* Logs in with the PIN on the member's token (a session opened and closed): 0, or -1 with why. */
static int try_login(const struct p11p_member *m, const struct p11p_bctx *x,
                     const struct p11p_secret *pin, char *why, size_t whylen)
{
	CK_UTF8CHAR buf[P11P_MAX_PIN_LEN];
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	size_t len = p11p_secret_len(pin);
	CK_RV rv;

	rv = p11p_be_C_OpenSession(x, m->be_slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK) {
		snprintf(why, whylen, "C_OpenSession: %s", cli_rv(rv));
		return -1;
	}
	if (len > sizeof(buf)) {
		p11p_be_C_CloseSession(x, h);
		snprintf(why, whylen, "PIN too long");
		return -1;
	}
	memcpy(buf, p11p_secret_data(pin), len);
	rv = p11p_be_C_Login(x, h, CKU_USER, buf, (CK_ULONG)len);
	p11p_wipe(buf, sizeof(buf));
	if (rv == CKR_OK)
		p11p_be_C_Logout(x, h);
	p11p_be_C_CloseSession(x, h);
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		snprintf(why, whylen, "C_Login: %s", cli_rv(rv));
		return -1;
	}
	return 0;
}

/*
 * The checks of `members add` against the slot's current order o: no member
 * with that name, backend and selector, or token; the token is found and
 * answers; the PIN source is readable, private, ours, and logs in.
 */
static int check_add(const struct p11p_config *cfg, size_t slot, const struct p11p_order *o,
                     const struct p11p_order_entry *add)
{
	const struct p11p_member_cfg *mc = add->spec;
	struct cli_backends *bs;
	struct p11p_member m, om;
	struct p11p_bctx x, ox;
	struct p11p_secret *pin = NULL;
	char why[ERR_LEN], name[24], vb[32];
	const char *sname = cli_slot_name(cfg, slot, name, sizeof(name));
	int rc = CLI_FAIL;

	if (mc == NULL) /* a configured member by its own spec: the config check covered it */
		mc = &cfg->slots[slot].members[add->config_index];
	for (size_t i = 0; i < o->n; i++) {
		if (strcmp(o->e[i].name, add->name) == 0) {
			cli_error("slot %s already has a member '%s' (member %zu): choose another "
			          "--name",
			          sname, add->name, i + 1);
			return CLI_FAIL;
		}
	}
	for (size_t i = 0; i < o->n; i++) {
		const struct p11p_member_cfg *oc = cli_order_member(cfg, slot, &o->e[i]);

		if (same_selector(oc, mc)) {
			cli_error(
			    "slot %s: member %zu '%s' is already %s=%s on backend %s: delete it "
			    "first, or name another token",
			    sname, i + 1, o->e[i].name, p11p_selector_name(mc->sel),
			    p11p_selector_value(mc, vb, sizeof(vb)),
			    cfg->backends[mc->backend].name);
			return CLI_FAIL;
		}
	}
	if (mc->pin_source != NULL) {
		pin = cli_pin_from_source(mc->pin_source, why, sizeof(why));
		if (pin == NULL) {
			cli_error("--pin-source %s: %s; the module could not log in with it either",
			          mc->pin_source, why);
			return CLI_FAIL;
		}
	}
	bs = cli_backends_new(cfg);
	if (bs == NULL) {
		cli_error("out of memory");
		goto out;
	}
	if (resolve(bs, mc, &m, &x, why, sizeof(why)) != 0) {
		cli_error("member '%s': no such token on backend %s: %s (check the selector with "
		          "'p11proxy slots', or the token with the vendor's tool)",
		          add->name, cfg->backends[mc->backend].name, why);
		goto out;
	}
	/* The same token under another selector (a label here, a serial there). */
	for (size_t i = 0; i < o->n; i++) {
		const struct p11p_member_cfg *oc = cli_order_member(cfg, slot, &o->e[i]);

		if (oc->backend != mc->backend || resolve(bs, oc, &om, &ox, why, sizeof(why)) != 0)
			continue;
		if (om.be_slot == m.be_slot) {
			cli_error(
			    "slot %s: member %zu '%s' already uses that token (backend %s slot "
			    "%lu): delete it first, or name another token",
			    sname, i + 1, o->e[i].name, cfg->backends[mc->backend].name,
			    (unsigned long)m.be_slot);
			goto out;
		}
	}
	if (!cli_member_probe(bs, mc, why, sizeof(why))) {
		cli_error("member '%s': the token does not answer: %s", add->name, why);
		goto out;
	}
	if (pin != NULL && try_login(&m, &x, pin, why, sizeof(why)) != 0) {
		cli_error("member '%s': the PIN of --pin-source %s does not log in: %s", add->name,
		          mc->pin_source, why);
		goto out;
	}
	rc = CLI_OK;
out:
	p11p_secret_free(pin);
	cli_backends_free(bs);
	return rc;
}

static void print_order(const struct cli *cli, const struct p11p_config *cfg, size_t slot,
                        const struct p11p_order *o)
{
	char name[24];

	if (cli->json) {
		json_t *doc = json_object(), *a = json_array();

		cli_jset(doc, "slot", cli_jstr(cli_slot_name(cfg, slot, name, sizeof(name))));
		for (size_t i = 0; i < o->n; i++)
			json_array_append_new(a, cli_jstr(o->e[i].name));
		cli_jset(doc, "order", a);
		cli_json_print(doc);
		return;
	}
	printf("slot %s:", cli_esc(cli_slot_name(cfg, slot, name, sizeof(name))));
	for (size_t i = 0; i < o->n; i++)
		printf("%s %s", i > 0 ? "," : "", cli_esc(o->e[i].name));
	printf("\n");
}

static int change(const struct cli *cli, const struct p11p_config *cfg, size_t slot,
                  const char *action, const char *member, const struct add_opts *a)
{
	struct p11p_order o, added;
	struct p11p_index *idx = NULL;
	char err[ERR_LEN], name[24];
	size_t at = (size_t)-1;
	int lock = -1, rc = CLI_FAIL;
	bool reset = strcmp(action, "reset") == 0, add = strcmp(action, "add") == 0;

	memset(&o, 0, sizeof(o));
	memset(&added, 0, sizeof(added));
	if (add) {
		rc = build_entry(cfg, slot, a, &added);
		if (rc != CLI_OK)
			return rc;
		rc = CLI_FAIL;
	}

	err[0] = '\0';
	lock = p11p_order_lock(cfg, err, sizeof(err));
	if (lock < 0) {
		cli_error("%s", err);
		goto out;
	}
	/* After the lock, which made the state directory: the module's choice of store. */
	if (keys_overlay_store(cfg, true, &idx) < 0)
		goto out;
	if (reset) {
		if (p11p_order_write(cfg, idx, slot, &o, err, sizeof(err)) != 0) {
			cli_error("%s", err);
			goto out;
		}
		p11p_order_from_config(cfg, slot, &o);
		rc = CLI_OK;
		goto done;
	}
	if (p11p_order_read(cfg, idx, slot, &o, NULL, err, sizeof(err)) < 0) {
		damaged(cfg, slot, err);
		goto out;
	}
	if (add) {
		if (o.n >= P11P_MAX_MEMBERS) {
			cli_error("slot %s has %d members already, the most it may have",
			          cli_slot_name(cfg, slot, name, sizeof(name)), P11P_MAX_MEMBERS);
			goto out;
		}
		if (check_add(cfg, slot, &o, &added.e[0]) != CLI_OK)
			goto out;
		/* At the bottom: the operator moves it up once it is known to work. */
		o.e[o.n++] = added.e[0];
		added.n = 0; /* the spec now belongs to o */
	} else {
		at = find_member(&o, member);
		if (at == (size_t)-1) {
			cli_error("slot %s has no member '%s' (a name, or a number from 1 to %zu)",
			          cli_slot_name(cfg, slot, name, sizeof(name)), member, o.n);
			goto out;
		}
		if (strcmp(action, "top") == 0) {
			move_entry(&o, at, 0);
		} else if (strcmp(action, "up") == 0) {
			if (at > 0)
				move_entry(&o, at, at - 1);
		} else if (strcmp(action, "down") == 0) {
			if (at + 1 < o.n)
				move_entry(&o, at, at + 1);
		} else if (strcmp(action, "bottom") == 0) {
			move_entry(&o, at, o.n - 1);
		} else { /* delete */
			if (o.n == 1) {
				cli_error("cannot delete '%s': it is the last member of slot %s",
				          o.e[at].name,
				          cli_slot_name(cfg, slot, name, sizeof(name)));
				goto out;
			}
			p11p_member_cfg_free(o.e[at].spec);
			memmove(&o.e[at], &o.e[at + 1], (o.n - at - 1) * sizeof(o.e[0]));
			o.n--;
			memset(&o.e[o.n], 0, sizeof(o.e[0]));
		}
	}
	if (p11p_order_write(cfg, idx, slot, &o, err, sizeof(err)) != 0) {
		cli_error("%s", err);
		goto out;
	}
	rc = CLI_OK;
done:
	print_order(cli, cfg, slot, &o);
out:
	p11p_order_unlock(lock);
	p11p_index_close(idx);
	p11p_order_clear(&o);
	p11p_order_clear(&added);
	return rc;
}

int cmd_members(struct cli *cli, int argc, char **argv)
{
	enum { O_NAME = CLI_OPT_FIRST, O_BACKEND, O_SLOT_ID, O_LABEL, O_SERIAL, O_URI, O_PIN };
	static const struct option opts[] = {
	    {"name", required_argument, NULL, O_NAME},
	    {"backend", required_argument, NULL, O_BACKEND},
	    {"slot-id", required_argument, NULL, O_SLOT_ID},
	    {"token-label", required_argument, NULL, O_LABEL},
	    {"token-serial", required_argument, NULL, O_SERIAL},
	    {"uri", required_argument, NULL, O_URI},
	    {"pin-source", required_argument, NULL, O_PIN},
	    {NULL, 0, NULL, 0},
	};
	static const char *const actions[] = {"top",    "up",  "down",  "bottom",
	                                      "delete", "add", "reset", NULL};
	struct p11p_config *cfg;
	struct add_opts a;
	const char *slot_arg, *action, *member = NULL;
	size_t slot;
	int rc, o, n;

	memset(&a, 0, sizeof(a));
	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "", opts)) != -1) {
		const char *sel = NULL;

		switch (o) {
		case O_NAME:
			a.name = optarg;
			break;
		case O_BACKEND:
			a.backend = optarg;
			break;
		case O_PIN:
			a.pin_source = optarg;
			break;
		case O_SLOT_ID:
			sel = "--slot-id";
			break;
		case O_LABEL:
			sel = "--token-label";
			break;
		case O_SERIAL:
			sel = "--token-serial";
			break;
		case O_URI:
			sel = "--uri";
			break;
		default:
			return CLI_USAGE;
		}
		a.any = true;
		if (sel != NULL) {
			if (a.sel_opt != NULL)
				return cli_usage("members",
				                 "give one of --slot-id, --token-label, "
				                 "--token-serial, --uri (not %s and %s)",
				                 a.sel_opt, sel);
			a.sel_opt = sel;
			a.sel_val = optarg;
		}
	}
	n = argc - optind;
	if (n < 1)
		return cli_usage("members", "which SLOT?");
	slot_arg = argv[optind];
	if (strcmp(slot_arg, "help") == 0)
		return cli_cmd_help("members");
	action = n > 1 ? argv[optind + 1] : NULL;
	if (action != NULL && cli_action("members", action, actions, &rc) < 0)
		return rc;
	if (a.any && (action == NULL || strcmp(action, "add") != 0))
		return cli_usage("members",
		                 "--name, --backend, a selector and --pin-source go with "
		                 "'add'");
	if (action != NULL && strcmp(action, "add") == 0) {
		if (n > 2)
			return cli_usage("members", "unexpected argument '%s' for add",
			                 argv[optind + 2]);
		if (a.name == NULL || a.backend == NULL || a.sel_opt == NULL)
			return cli_usage("members",
			                 "add needs --name, --backend and one of --slot-id, "
			                 "--token-label, --token-serial, --uri");
	} else if (action != NULL && strcmp(action, "reset") == 0) {
		if (n > 2)
			return cli_usage("members", "reset takes no argument");
	} else if (action != NULL) {
		if (n != 3)
			return cli_usage("members",
			                 "%s needs one MEMBER (a name or a 1-based position)",
			                 action);
		member = argv[optind + 2];
	}
	cfg = cli_config(cli);
	if (cfg == NULL)
		return CLI_FAIL;
	slot = cli_slot_arg(cfg, "members", slot_arg);
	if (slot == (size_t)-1)
		rc = CLI_USAGE;
	else if (action == NULL)
		rc = list(cli, cfg, slot);
	else
		rc = change(cli, cfg, slot, action, member, &a);
	p11p_config_free(cfg);
	return rc;
}
