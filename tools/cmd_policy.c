/*
 * policy show [SLOT] | set SLOT [write_back=BOOL] [scan=all|owned] | reset SLOT:
 * a slot's key-management policy. `set` writes the overlay
 * "<state_dir>/slots/<LABEL>.policy" (lib/virt/policy.c) under the overlay
 * lock; running processes follow it within a second. `reset` removes it.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config/config.h"
#include "util.h"
#include "keymodel/model.h"
#include "ha/order.h"
#include "vkeys/policy.h"

#define ERR_LEN 1024

/* Prints one slot's effective policy. false when its overlay is damaged. */
static bool show_slot(const struct p11p_config *cfg, size_t s, bool json, bool first)
{
	struct p11p_policy_cfg p;
	char path[PATH_MAX], err[ERR_LEN], nb[32];
	const char *label = cli_slot_name(cfg, s, nb, sizeof(nb));
	int rc;

	err[0] = '\0';
	if (p11p_policy_path(cfg, s, path, sizeof(path)) != 0)
		path[0] = '\0';
	rc = p11p_policy_read(cfg, s, &p, err, sizeof(err));
	if (rc < 0)
		cli_error("%s", err);
	if (json) {
		printf("%s{\"slot\":", first ? "" : ",");
		cli_json_str(stdout, label);
		printf(",\"write_back\":%s,\"scan\":\"%s\",\"source\":\"%s\",\"overlay\":",
		       p.write_back ? "true" : "false", p11p_vk_scan_name(p.scan),
		       rc == 1 ? "overlay" : "config");
		cli_json_str(stdout, path[0] != '\0' ? path : NULL);
		fputs(",\"error\":", stdout);
		cli_json_str(stdout, rc < 0 ? err : NULL);
		fputc('}', stdout);
	} else {
		printf("slot %s: write_back %s, scan %s (from %s%s)\n", label,
		       p.write_back ? "true" : "false", p11p_vk_scan_name(p.scan),
		       rc == 1 ? "overlay " : "the configuration",
		       rc == 1 ? path : (rc < 0 ? "; the overlay is damaged" : ""));
	}
	return rc >= 0;
}

static int do_show(const struct p11p_config *cfg, const struct cli *cli, int argc, char **argv)
{
	bool json = cli->json, ok = true, first = true;
	size_t only = (size_t)-1;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (argv[i][0] == '-')
			return cli_usage("policy", "unknown option '%s'", argv[i]);
		else if (only != (size_t)-1)
			return cli_usage("policy", "give at most one SLOT");
		else if ((only = cli_find_slot(cfg, argv[i])) == (size_t)-1)
			return cli_usage("policy", "no virtual slot '%s' in %s", argv[i],
			                 cfg->path);
	}
	if (json)
		fputs("{\"slots\":[", stdout);
	for (size_t s = 0; s < cfg->n_slots; s++) {
		if (only != (size_t)-1 && s != only)
			continue;
		ok &= show_slot(cfg, s, json, first);
		first = false;
	}
	if (json)
		printf("],\"ok\":%s}\n", ok ? "true" : "false");
	return ok ? CLI_OK : CLI_FAIL;
}

static int do_set(const struct p11p_config *cfg, bool reset, int argc, char **argv)
{
	struct p11p_policy_cfg p;
	bool have_wb = false, have_scan = false, wb = false;
	enum p11p_scan_scope scan = P11P_SCAN_ALL;
	char err[ERR_LEN];
	size_t s;
	int fd, rc;

	if (argc < 1)
		return cli_usage("policy", "%s needs a SLOT", reset ? "reset" : "set");
	s = cli_find_slot(cfg, argv[0]);
	if (s == (size_t)-1)
		return cli_usage("policy", "no virtual slot '%s' in %s", argv[0], cfg->path);
	if (reset && argc > 1)
		return cli_usage("policy", "reset takes only a SLOT");
	for (int i = 1; i < argc; i++) {
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
	if (reset) {
		rc = p11p_policy_write(cfg, s, NULL, err, sizeof(err));
	} else {
		/* The current policy, damaged overlay or not: set names what changes. */
		if (p11p_policy_read(cfg, s, &p, err, sizeof(err)) < 0)
			fprintf(stderr, "p11proxy: replacing a damaged overlay: %s\n", err);
		if (have_wb)
			p.write_back = wb;
		if (have_scan)
			p.scan = scan;
		rc = p11p_policy_write(cfg, s, &p, err, sizeof(err));
	}
	p11p_order_unlock(fd);
	if (rc != 0) {
		cli_error("%s", err);
		return CLI_FAIL;
	}
	return show_slot(cfg, s, false, true) ? CLI_OK : CLI_FAIL;
}

int cmd_policy(const struct cli *cli, int argc, char **argv)
{
	struct p11p_config *cfg;
	const char *action = argc > 0 ? argv[0] : "show";
	char err[ERR_LEN];
	int rc;

	if (strcmp(action, "show") != 0 && strcmp(action, "set") != 0 &&
	    strcmp(action, "reset") != 0) {
		if (action[0] == '-' && argc > 0)
			action = "show"; /* `policy --json` */
		else
			return cli_usage("policy", "unknown action '%s' (show, set, reset)",
			                 action);
	} else if (argc > 0) {
		argc--;
		argv++;
	}
	err[0] = '\0';
	cfg = p11p_config_load(cli->config_path, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err[0] != '\0' ? err : "cannot load the configuration");
		return CLI_FAIL;
	}
	if (strcmp(action, "show") == 0)
		rc = do_show(cfg, cli, argc, argv);
	else
		rc = do_set(cfg, strcmp(action, "reset") == 0, argc, argv);
	p11p_config_free(cfg);
	return rc;
}
