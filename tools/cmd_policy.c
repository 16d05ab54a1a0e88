/*
 * policy show [SLOT] | set SLOT [write_back=BOOL] [scan=all|owned] | reset SLOT:
 * a slot's key-management policy. `set` writes the overlay: into the store
 * (the `index:` the module opens), in one transaction with its audit row;
 * without a store, the file "<state_dir>/slots/<LABEL>.policy"
 * (lib/vkeys/policy.c). Both under the overlay lock; running processes follow
 * it within a second. `reset` removes it.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config/config.h"
#include "util.h"
#include "keys.h"
#include "keymodel/model.h"
#include "ha/order.h"
#include "vkeys/policy.h"

#define ERR_LEN 1024

/* One slot's effective policy: printed, or added to jslots. false when its overlay is damaged. */
static bool show_slot(const struct p11p_config *cfg, struct p11p_index *idx, bool store, size_t s,
                      json_t *jslots)
{
	struct p11p_policy_cfg p;
	char path[PATH_MAX], err[ERR_LEN], nb[32];
	const char *label = cli_slot_name(cfg, s, nb, sizeof(nb));
	int rc;

	err[0] = '\0';
	if (store)
		snprintf(path, sizeof(path), "%s", cfg->index_path);
	else if (p11p_policy_path(cfg, s, path, sizeof(path)) != 0)
		path[0] = '\0';
	if (store && idx == NULL) {
		p = cfg->slots[s].policy; /* no store yet: no overlay */
		rc = 0;
	} else {
		rc = p11p_policy_read(cfg, idx, s, &p, err, sizeof(err));
	}
	if (rc < 0)
		cli_error_plain(err);
	if (jslots != NULL) {
		json_t *js = json_object();

		cli_jset(js, "slot", cli_jstr(label));
		cli_jset(js, "write_back", json_boolean(p.write_back));
		cli_jset(js, "scan", json_string(p11p_vk_scan_name(p.scan)));
		cli_jset(js, "source", json_string(rc == 1 ? "overlay" : "config"));
		cli_jset(js, "overlay", cli_jstr(path[0] != '\0' ? path : NULL));
		cli_jset(js, "error", cli_jstr(rc < 0 ? err : NULL));
		json_array_append_new(jslots, js);
	} else {
		printf("slot %s: write_back %s, scan %s (from %s%s)\n", cli_esc(label),
		       p.write_back ? "true" : "false", p11p_vk_scan_name(p.scan),
		       rc == 1 ? (store ? "overlay in the store " : "overlay ")
		               : "the configuration",
		       rc == 1 ? cli_esc(path) : (rc < 0 ? "; the overlay is damaged" : ""));
	}
	return rc >= 0;
}

/* The answer of show, set and reset: text lines, or {"slots":[...],"ok":...}. */
static int show(const struct cli *cli, const struct p11p_config *cfg, struct p11p_index *idx,
                bool store, size_t only)
{
	json_t *jslots = cli->json ? json_array() : NULL;
	bool ok = true;

	for (size_t s = 0; s < cfg->n_slots; s++) {
		if (only != (size_t)-1 && s != only)
			continue;
		ok &= show_slot(cfg, idx, store, s, jslots);
	}
	if (cli->json) {
		json_t *doc = json_object();

		cli_jset(doc, "slots", jslots);
		cli_jset(doc, "ok", json_boolean(ok));
		cli_json_print(doc);
	}
	return ok ? CLI_OK : CLI_FAIL;
}

static int show_all(const struct cli *cli, const struct p11p_config *cfg, size_t only)
{
	struct p11p_index *idx = NULL;
	int store = keys_overlay_store(cfg, false, &idx), rc;

	if (store < 0)
		return CLI_FAIL;
	rc = show(cli, cfg, idx, store > 0, only);
	p11p_index_close(idx);
	return rc;
}

static int do_set(const struct cli *cli, const struct p11p_config *cfg, size_t s, bool reset,
                  int argc, char **argv)
{
	struct p11p_policy_cfg p;
	bool have_wb = false, have_scan = false, wb = false;
	enum p11p_scan_scope scan = P11P_SCAN_ALL;
	struct p11p_index *idx = NULL;
	char err[ERR_LEN];
	int fd, rc, store;

	if (reset && argc > 0)
		return cli_usage("policy", "reset takes only a SLOT");
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "write_back=true") == 0 || strcmp(a, "write_back=false") == 0) {
			if (have_wb)
				return cli_usage("policy", "write_back given twice");
			have_wb = true;
			wb = a[11] == 't';
		} else if (strcmp(a, "scan=all") == 0 || strcmp(a, "scan=owned") == 0) {
			if (have_scan)
				return cli_usage("policy", "scan given twice");
			have_scan = true;
			scan = a[5] == 'o' ? P11P_SCAN_OWNED : P11P_SCAN_ALL;
		} else {
			return cli_usage(
			    "policy", "'%s': expected write_back=true|false or scan=all|owned", a);
		}
	}
	if (!reset && !have_wb && !have_scan)
		return cli_usage("policy", "set needs write_back=... and/or scan=...");
	err[0] = '\0';
	fd = p11p_order_lock(cfg, err, sizeof(err));
	if (fd < 0) {
		cli_error("%s", err);
		return CLI_FAIL;
	}
	/* After the lock, which made the state directory: the module's choice of store. */
	store = keys_overlay_store(cfg, true, &idx);
	if (store < 0) {
		p11p_order_unlock(fd);
		return CLI_FAIL;
	}
	if (reset) {
		rc = p11p_policy_write(cfg, idx, s, NULL, err, sizeof(err));
	} else {
		/* The current policy, damaged overlay or not: set names what changes. */
		if (p11p_policy_read(cfg, idx, s, &p, err, sizeof(err)) < 0)
			cli_error("replacing a damaged overlay: %s", err);
		if (have_wb)
			p.write_back = wb;
		if (have_scan)
			p.scan = scan;
		rc = p11p_policy_write(cfg, idx, s, &p, err, sizeof(err));
	}
	p11p_order_unlock(fd);
	if (rc != 0)
		cli_error("%s", err);
	else
		rc = show(cli, cfg, idx, store > 0, s);
	p11p_index_close(idx);
	return rc != 0 ? CLI_FAIL : CLI_OK;
}

int cmd_policy(struct cli *cli, int argc, char **argv)
{
	struct p11p_config *cfg;
	static const char *const actions[] = {"show", "set", "reset", NULL};
	const char *action;
	char **rest;
	size_t s = (size_t)-1;
	int n, rc, a;

	a = cli_action_words(cli, "policy", argc, argv, actions, 0, &rest, &n, &rc);
	if (a < 0)
		return rc;
	action = actions[a];
	if (strcmp(action, "show") == 0 && n > 1)
		return cli_usage("policy", "give at most one SLOT");
	if (strcmp(action, "show") != 0 && n < 1)
		return cli_usage("policy", "%s needs a SLOT", action);
	cfg = cli_config(cli);
	if (cfg == NULL)
		return CLI_FAIL;
	if (n > 0 && (s = cli_slot_arg(cfg, "policy", rest[0])) == (size_t)-1)
		rc = CLI_USAGE;
	else if (strcmp(action, "show") == 0)
		rc = show_all(cli, cfg, s);
	else
		rc = do_set(cli, cfg, s, strcmp(action, "reset") == 0, n - 1, rest + 1);
	p11p_config_free(cfg);
	return rc;
}
