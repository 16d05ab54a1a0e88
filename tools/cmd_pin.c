/*
 * pin status [SLOT] | reset SLOT: the virtual PIN state of slots whose
 * members have a configured PIN (the proxy checks the application's PIN
 * itself): wrong PINs counted in "<state_dir>/slots/<LABEL>.pin"
 * (lib/virt/pinstate.c), the token flags the module shows for them, and the
 * administrator's reset of a locked PIN. Counts only: no PIN is read here.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config/config.h"
#include "util.h"
#include "virt/pinstate.h"

#define ERR_LEN (PATH_MAX + 256)

/* Does the proxy check the slot's user PIN itself (a configured member PIN)? */
static bool checked_by_proxy(const struct p11p_slot_cfg *sc)
{
	for (size_t i = 0; i < sc->n_members; i++)
		if (sc->members[i].pin != NULL)
			return true;
	return false;
}

static bool show_slot(const struct p11p_config *cfg, size_t s, json_t *jslots)
{
	const struct p11p_slot_cfg *sc = &cfg->slots[s];
	char path[PATH_MAX], err[ERR_LEN], nb[32], fb[256];
	const char *label = cli_slot_name(cfg, s, nb, sizeof(nb));
	unsigned long n = 0, max = p11p_pinstate_max(sc);
	bool proxy = checked_by_proxy(sc);
	CK_FLAGS flags;
	int rc = 0;

	err[0] = '\0';
	if (p11p_pinstate_path(cfg, s, path, sizeof(path)) != 0) {
		path[0] = '\0';
		snprintf(err, sizeof(err), "no usable state_dir in the configuration");
		rc = -1;
	} else {
		rc = p11p_pinstate_read(path, &n, NULL, err, sizeof(err));
	}
	/* What the module makes of it: a damaged file locks, one it cannot open does not. */
	flags = rc == P11P_PINSTATE_DAMAGED ? CKF_USER_PIN_LOCKED : p11p_pinstate_flags(n, max);
	if (rc == P11P_PINSTATE_DAMAGED)
		cli_error("%s (`p11proxy pin reset %s` rewrites it)", err, label);
	else if (rc < 0)
		cli_error("%s", err);
	if (jslots != NULL) {
		json_t *js = json_object();

		cli_jset(js, "slot", cli_jstr(label));
		cli_jset(js, "checked_by_proxy", json_boolean(proxy));
		cli_jset(js, "user_failures", json_integer((json_int_t)n));
		cli_jset(js, "pin_max_tries", json_integer((json_int_t)max));
		cli_jset(js, "locked", json_boolean((flags & CKF_USER_PIN_LOCKED) != 0));
		cli_jset(js, "flags", cli_json_token_flags(flags));
		cli_jset(js, "file", cli_jstr(path[0] != '\0' ? path : NULL));
		cli_jset(js, "error", cli_jstr(rc < 0 ? err : NULL));
		json_array_append_new(jslots, js);
	} else if (!proxy) {
		printf("slot %s: the members check the PIN themselves (no configured member PIN)\n",
		       cli_esc(label));
	} else {
		printf("slot %s: %lu wrong PIN%s of %lu%s%s\n", cli_esc(label), n,
		       n == 1 ? "" : "s", max, flags != 0 ? ", " : "",
		       flags != 0 ? cli_token_flags(flags, fb, sizeof(fb)) : "");
	}
	return rc >= 0;
}

static int show(const struct cli *cli, const struct p11p_config *cfg, size_t only)
{
	json_t *jslots = cli->json ? json_array() : NULL;
	bool ok = true;

	for (size_t s = 0; s < cfg->n_slots; s++)
		if (only == (size_t)-1 || s == only)
			ok &= show_slot(cfg, s, jslots);
	if (cli->json) {
		json_t *doc = json_object();

		cli_jset(doc, "slots", jslots);
		cli_jset(doc, "ok", json_boolean(ok));
		cli_json_print(doc);
	}
	return ok ? CLI_OK : CLI_FAIL;
}

static int reset(const struct cli *cli, const struct p11p_config *cfg, size_t s)
{
	char path[PATH_MAX], err[ERR_LEN];

	err[0] = '\0';
	if (p11p_pinstate_path(cfg, s, path, sizeof(path)) != 0) {
		cli_error("no usable state_dir in the configuration");
		return CLI_FAIL;
	}
	if (p11p_pinstate_update(path, false, NULL, err, sizeof(err)) != 0) {
		cli_error("%s", err);
		return CLI_FAIL;
	}
	return show(cli, cfg, s);
}

int cmd_pin(struct cli *cli, int argc, char **argv)
{
	struct p11p_config *cfg;
	static const char *const actions[] = {"status", "reset", NULL};
	const char *action;
	char **rest;
	size_t s = (size_t)-1;
	int n, rc, a;

	a = cli_action_words(cli, "pin", argc, argv, actions, 0, &rest, &n, &rc);
	if (a < 0)
		return rc;
	action = actions[a];
	if (n > 1)
		return cli_usage("pin", "give at most one SLOT");
	if (strcmp(action, "reset") == 0 && n < 1)
		return cli_usage("pin", "reset needs a SLOT");
	cfg = cli_config(cli);
	if (cfg == NULL)
		return CLI_FAIL;
	if (n > 0 && (s = cli_slot_arg(cfg, "pin", rest[0])) == (size_t)-1)
		rc = CLI_USAGE;
	else if (strcmp(action, "status") == 0)
		rc = show(cli, cfg, s);
	else
		rc = reset(cli, cfg, s);
	p11p_config_free(cfg);
	return rc;
}
