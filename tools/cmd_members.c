/*
 * Member order: `p11proxy members SLOT [ACTION ...]`.
 *
 *   members SLOT                              list, in priority order, with a probe of each
 *   members SLOT top|up|down|bottom|delete MEMBER
 *   members SLOT add --name N --backend B (--slot-id X | --token-label L |
 *                    --token-serial S | --uri U) [--pin-source env:VAR|file:/path]
 *   members SLOT reset                        back to the configured order
 *
 * MEMBER is a member's name or its 1-based position (a name wins). Changes
 * go to the slot's overlay file in the config's state_dir (lib/virt/order.c:
 * format, locking, atomic replacement); processes that have the module
 * loaded follow within about a second. A damaged overlay is refused with its
 * FILE:LINE (fix it, or `reset`). PINs are never given here: an added
 * member's PIN source is read by each process that loads the module.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "cli.h"
#include "config/config.h"
#include "util.h"
#include "ha/order.h"

#define ERR_LEN 1024

static const struct p11p_member_cfg *entry_cfg(const struct p11p_config *cfg, size_t slot,
                                               const struct p11p_order_entry *e)
{
	return e->spec != NULL ? e->spec : &cfg->slots[slot].members[e->config_index];
}

/* ---- listing -------------------------------------------------------------------------------- */

static int list(const struct cli *cli, const struct p11p_config *cfg, size_t slot)
{
	struct cli_backends *bs;
	struct p11p_order o;
	char err[ERR_LEN], path[4096], name[24];
	const struct p11p_slot_cfg *sc = &cfg->slots[slot];
	bool listed[P11P_MAX_MEMBERS] = {false};
	bool first;

	err[0] = '\0';
	if (p11p_order_read(cfg, slot, &o, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		cli_error("fix the file, or go back to the configured order with 'p11proxy members "
		          "%s reset'",
		          cli_slot_name(cfg, slot, name, sizeof(name)));
		return CLI_FAIL;
	}
	bs = cli_backends_new(cfg);
	if (bs == NULL) {
		p11p_order_clear(&o);
		cli_error("out of memory");
		return CLI_FAIL;
	}
	if (p11p_order_path(cfg, slot, path, sizeof(path)) != 0)
		path[0] = '\0';
	if (cli->json) {
		printf("{\"slot\":%zu,\"label\":", slot);
		cli_json_str(stdout, cli_slot_name(cfg, slot, name, sizeof(name)));
		printf(",\"order\":\"%s\",\"file\":", o.from_file ? "overlay" : "config");
		cli_json_str(stdout, path[0] != '\0' ? path : NULL);
		fputs(",\"members\":[", stdout);
	} else {
		printf("slot %s: order from %s\n", cli_slot_name(cfg, slot, name, sizeof(name)),
		       o.from_file ? path : "the configuration");
	}
	for (size_t i = 0; i < o.n; i++) {
		const struct p11p_member_cfg *mc = entry_cfg(cfg, slot, &o.e[i]);
		const char *bname = cfg->backends[mc->backend].name;
		char why[512], vb[32];
		bool ok = cli_member_probe(bs, mc, why, sizeof(why));

		if (o.e[i].spec == NULL)
			listed[o.e[i].config_index] = true;
		if (cli->json) {
			printf("%s{\"priority\":%zu,\"name\":", i > 0 ? "," : "", i + 1);
			cli_json_str(stdout, o.e[i].name);
			fputs(",\"backend\":", stdout);
			cli_json_str(stdout, bname);
			fputs(",\"selector\":{\"type\":", stdout);
			cli_json_str(stdout, p11p_selector_name(mc->sel));
			fputs(",\"value\":", stdout);
			if (mc->sel == P11P_SEL_SLOT_ID)
				printf("%lu", (unsigned long)mc->slot_id);
			else
				cli_json_str(stdout, p11p_selector_value(mc, vb, sizeof(vb)));
			fputs("},\"pin\":", stdout);
			cli_json_str(stdout, mc->pin_source);
			printf(",\"added\":%s,\"healthy\":%s,\"reason\":",
			       o.e[i].spec != NULL ? "true" : "false", ok ? "true" : "false");
			cli_json_str(stdout, ok ? NULL : why);
			fputc('}', stdout);
		} else {
			printf("  %2zu  %-16s backend %-12s %s=%s%s  %s%s\n", i + 1, o.e[i].name,
			       bname, p11p_selector_name(mc->sel),
			       p11p_selector_value(mc, vb, sizeof(vb)),
			       o.e[i].spec != NULL ? " (added)" : "",
			       ok ? "healthy" : "unhealthy: ", ok ? "" : why);
		}
	}
	/* Configured members the overlay leaves out are deleted. */
	first = true;
	if (cli->json)
		fputs("],\"deleted\":[", stdout);
	for (size_t i = 0; i < sc->n_members; i++) {
		if (listed[i] || !o.from_file)
			continue;
		if (cli->json) {
			if (!first)
				fputc(',', stdout);
			cli_json_str(stdout, sc->members[i].name);
		} else {
			printf("%s%s", first ? "  deleted: " : ", ", sc->members[i].name);
		}
		first = false;
	}
	if (cli->json)
		fputs("]}\n", stdout);
	else if (!first)
		fputc('\n', stdout);
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
};

static int parse_add(int argc, char **argv, struct add_opts *a)
{
	static const char *const opts[] = {"--name",        "--backend",      "--slot-id",
	                                   "--token-label", "--token-serial", "--uri",
	                                   "--pin-source"};

	memset(a, 0, sizeof(*a));
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i], *val = NULL;
		size_t k, n;

		for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++) {
			n = strlen(opts[k]);
			if (strncmp(arg, opts[k], n) == 0 && (arg[n] == '\0' || arg[n] == '='))
				break;
		}
		if (k == sizeof(opts) / sizeof(opts[0]))
			return cli_usage("members", "unknown argument '%s' for add", arg);
		n = strlen(opts[k]);
		if (arg[n] == '=') {
			val = arg + n + 1;
		} else {
			if (i + 1 >= argc)
				return cli_usage("members", "%s needs a value", opts[k]);
			val = argv[++i];
		}
		switch (k) {
		case 0:
			a->name = val;
			break;
		case 1:
			a->backend = val;
			break;
		case 6:
			a->pin_source = val;
			break;
		default:
			if (a->sel_opt != NULL)
				return cli_usage("members",
				                 "give one of --slot-id, --token-label, "
				                 "--token-serial, --uri (not %s and %s)",
				                 a->sel_opt, opts[k]);
			a->sel_opt = opts[k];
			a->sel_val = val;
			break;
		}
	}
	if (a->name == NULL || a->backend == NULL || a->sel_opt == NULL)
		return cli_usage("members", "add needs --name, --backend and one of --slot-id, "
		                            "--token-label, --token-serial, --uri");
	return CLI_OK;
}

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

static void print_order(const struct p11p_config *cfg, size_t slot, const struct p11p_order *o)
{
	char name[24];

	printf("slot %s:", cli_slot_name(cfg, slot, name, sizeof(name)));
	for (size_t i = 0; i < o->n; i++)
		printf("%s %s", i > 0 ? "," : "", o->e[i].name);
	printf("\n");
}

static int change(const struct cli *cli, const struct p11p_config *cfg, size_t slot,
                  const char *action, int argc, char **argv)
{
	struct p11p_order o, added;
	struct add_opts a;
	char err[ERR_LEN], name[24];
	size_t at = (size_t)-1;
	int lock = -1, rc = CLI_FAIL;
	bool reset = strcmp(action, "reset") == 0, add = strcmp(action, "add") == 0;

	memset(&o, 0, sizeof(o));
	memset(&added, 0, sizeof(added));
	if (add) {
		rc = parse_add(argc, argv, &a);
		if (rc != CLI_OK)
			return rc;
		rc = build_entry(cfg, slot, &a, &added);
		if (rc != CLI_OK)
			return rc;
		rc = CLI_FAIL;
	} else if (reset) {
		if (argc > 0)
			return cli_usage("members", "reset takes no argument");
	} else if (argc != 1) {
		return cli_usage("members", "%s needs one MEMBER (a name or a 1-based position)",
		                 action);
	}

	err[0] = '\0';
	lock = p11p_order_lock(cfg, err, sizeof(err));
	if (lock < 0) {
		cli_error("%s", err);
		goto out;
	}
	if (reset) {
		if (p11p_order_write(cfg, slot, &o, err, sizeof(err)) != 0) {
			cli_error("%s", err);
			goto out;
		}
		p11p_order_from_config(cfg, slot, &o);
		rc = CLI_OK;
		goto done;
	}
	if (p11p_order_read(cfg, slot, &o, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		cli_error("fix the file, or go back to the configured order with 'p11proxy members "
		          "%s reset'",
		          cli_slot_name(cfg, slot, name, sizeof(name)));
		goto out;
	}
	if (add) {
		at = find_member(&o, added.e[0].name);
		if (at != (size_t)-1 && strcmp(o.e[at].name, added.e[0].name) == 0) {
			cli_error("slot %s already has a member '%s'",
			          cli_slot_name(cfg, slot, name, sizeof(name)), added.e[0].name);
			goto out;
		}
		if (o.n >= P11P_MAX_MEMBERS) {
			cli_error("slot %s has %d members already, the most it may have",
			          cli_slot_name(cfg, slot, name, sizeof(name)), P11P_MAX_MEMBERS);
			goto out;
		}
		/* At the bottom: the operator moves it up once it is known to work. */
		o.e[o.n++] = added.e[0];
		added.n = 0; /* the spec now belongs to o */
	} else {
		at = find_member(&o, argv[0]);
		if (at == (size_t)-1) {
			cli_error("slot %s has no member '%s'",
			          cli_slot_name(cfg, slot, name, sizeof(name)), argv[0]);
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
	if (p11p_order_write(cfg, slot, &o, err, sizeof(err)) != 0) {
		cli_error("%s", err);
		goto out;
	}
	rc = CLI_OK;
done:
	if (cli->json) {
		printf("{\"slot\":");
		cli_json_str(stdout, cli_slot_name(cfg, slot, name, sizeof(name)));
		printf(",\"order\":[");
		for (size_t i = 0; i < o.n; i++) {
			if (i > 0)
				fputc(',', stdout);
			cli_json_str(stdout, o.e[i].name);
		}
		printf("]}\n");
	} else {
		print_order(cfg, slot, &o);
	}
out:
	p11p_order_unlock(lock);
	p11p_order_clear(&o);
	p11p_order_clear(&added);
	return rc;
}

int cmd_members(const struct cli *cli, int argc, char **argv)
{
	static const char *const actions[] = {"top",    "up",  "down", "bottom",
	                                      "delete", "add", "reset"};
	struct p11p_config *cfg;
	char err[ERR_LEN];
	size_t slot;
	int rc;
	bool known = false;

	if (argc < 1)
		return cli_usage("members", "which SLOT?");
	if (argv[0][0] == '-')
		return cli_usage("members", "unknown option '%s'", argv[0]);
	if (argc > 1) {
		for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
			known |= strcmp(argv[1], actions[i]) == 0;
		if (!known)
			return cli_usage("members", "unknown action '%s'", argv[1]);
	}
	err[0] = '\0';
	cfg = p11p_config_load(cli->config_path, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err[0] != '\0' ? err : "cannot load the configuration");
		return CLI_FAIL;
	}
	slot = cli_find_slot(cfg, argv[0]);
	if (slot == (size_t)-1)
		rc = cli_usage("members", "no virtual slot '%s' in %s", argv[0], cfg->path);
	else if (argc == 1)
		rc = list(cli, cfg, slot);
	else
		rc = change(cli, cfg, slot, argv[1], argc - 2, argv + 2);
	p11p_config_free(cfg);
	return rc;
}
