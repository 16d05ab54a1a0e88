/*
 * gen-fragment: a new customer fragment (Akeyless-style customer_fragments.json).
 *
 *   p11proxy gen-fragment --name NAME --type hsm_wrapped|hsm_secured
 *                         --hsm-key-label LABEL [--slot SLOT] [--out FILE]
 *                         [--description TEXT]
 *
 * Checks first that the HSM key exists and signs with CKM_SHA256_HMAC on the
 * slot's members (logged in with each member's configured PIN), and that all
 * members that hold it agree on its check value (HMAC of a fixed text): the
 * key must be the same everywhere, or derivations would depend on the member.
 * The value (32 bytes) comes from the entropy mixer over the first such
 * member's C_GenerateRandom and the OS's getrandom(); if the HSM's generator
 * fails (or its health tests do), the OS alone is used, with a warning.
 * Without --out the JSON goes to stdout; with it, the fragment is appended to
 * FILE (created if missing), written atomically with mode 0600.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend/call.h"
#include "base/names.h"
#include "base/secret.h"
#include "cli.h"
#include "config/config.h"
#include "crypto/fragment.h"
#include "util.h"
#include "soft/entropy.h"

static const char check_text[] = "p11proxy check value v1";

struct member_ctx {
	const struct p11p_bctx *bc;
	CK_SESSION_HANDLE h;
};

static CK_RV hsm_random(void *ctx, unsigned char *buf, size_t len)
{
	const struct member_ctx *m = ctx;

	return p11p_be_C_GenerateRandom(m->bc, m->h, buf, len);
}

/* Logs in with the member's PIN when the config has one. */
static CK_RV member_login(const struct p11p_bctx *bc, CK_SESSION_HANDLE h,
                          const struct p11p_member_cfg *mc)
{
	CK_UTF8CHAR pinbuf[P11P_MAX_PIN_LEN];
	size_t len;
	CK_RV rv;

	if (mc->pin == NULL)
		return CKR_OK;
	len = p11p_secret_len(mc->pin);
	if (len > sizeof(pinbuf))
		return CKR_PIN_LEN_RANGE;
	memcpy(pinbuf, p11p_secret_data(mc->pin), len);
	rv = p11p_be_C_Login(bc, h, CKU_USER, pinbuf, (CK_ULONG)len);
	p11p_wipe(pinbuf, sizeof(pinbuf));
	return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

/*
 * The member's check value of the HSM key: 1 done, 0 the member cannot be
 * reached (why in err), -1 the key is missing or unusable there (why in err).
 * The session stays open in *mctx for the random bytes when keep is set.
 */
static int member_check(struct cli_backends *bes, const struct p11p_member_cfg *mc,
                        const char *label, unsigned char cv[4], struct member_ctx *mctx, bool keep,
                        char *err, size_t errlen)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                    {CKA_LABEL, (void *)(uintptr_t)label, strlen(label)}};
	CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
	struct p11p_member m;
	CK_OBJECT_HANDLE keys[2];
	unsigned char mac[32];
	CK_ULONG n = 0, mlen = sizeof(mac);
	CK_SESSION_HANDLE h;
	const struct p11p_bctx *bc;
	int ret = -1;
	CK_RV rv;

	memset(&m, 0, sizeof(m));
	m.cfg = mc;
	atomic_init(&m.health, P11P_UP);
	m.be = cli_backend(bes, mc->backend, err, errlen);
	if (m.be == NULL)
		return 0;
	bc = p11p_backend_ctx(m.be);
	rv = p11p_member_resolve(&m, p11p_backend_ctx(m.be), err, errlen);
	if (rv != CKR_OK) {
		if (err[0] == '\0')
			snprintf(err, errlen, "%s", cli_rv(rv));
		return 0;
	}
	rv = p11p_be_C_OpenSession(bc, m.be_slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_OpenSession: %s", cli_rv(rv));
		return 0;
	}
	rv = member_login(bc, h, mc);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_Login: %s", cli_rv(rv));
		goto out;
	}
	rv = p11p_be_C_FindObjectsInit(bc, h, t, 2);
	if (rv == CKR_OK) {
		rv = p11p_be_C_FindObjects(bc, h, keys, 2, &n);
		p11p_be_C_FindObjectsFinal(bc, h);
	}
	if (rv != CKR_OK || n != 1) {
		snprintf(err, errlen, "%s secret key labelled '%s'%s",
		         rv != CKR_OK ? "cannot search for the"
		         : n == 0     ? "no"
		                      : "more than one",
		         label, mc->pin == NULL && n == 0 ? " (no member PIN configured)" : "");
		goto out;
	}
	rv = p11p_be_C_SignInit(bc, h, &mech, keys[0]);
	if (rv == CKR_OK)
		rv = p11p_be_C_Sign(bc, h, (CK_BYTE_PTR)(uintptr_t)check_text,
		                    sizeof(check_text) - 1, mac, &mlen);
	if (rv != CKR_OK || mlen != sizeof(mac)) {
		snprintf(err, errlen, "key '%s' does not sign with CKM_SHA256_HMAC: %s", label,
		         cli_rv(rv));
		goto out;
	}
	memcpy(cv, mac, 4);
	ret = 1;
out:
	if (ret == 1 && keep) {
		mctx->bc = bc;
		mctx->h = h;
	} else {
		p11p_be_C_CloseSession(bc, h);
	}
	return ret;
}

int cmd_gen_fragment(struct cli *cli, int argc, char **argv)
{
	enum { O_NAME = CLI_OPT_FIRST, O_TYPE, O_LABEL, O_SLOT, O_OUT, O_DESC };
	static const struct option opts[] = {
	    {"name", required_argument, NULL, O_NAME},
	    {"type", required_argument, NULL, O_TYPE},
	    {"hsm-key-label", required_argument, NULL, O_LABEL},
	    {"slot", required_argument, NULL, O_SLOT},
	    {"out", required_argument, NULL, O_OUT},
	    {"description", required_argument, NULL, O_DESC},
	    {NULL, 0, NULL, 0},
	};
	int o;
	const char *name = NULL, *type_s = NULL, *label = NULL, *slot_arg = NULL, *out = NULL,
	           *desc = NULL;
	enum p11p_fragment_type type;
	struct p11p_config *cfg = NULL;
	struct cli_backends *bes = NULL;
	struct p11p_fragments *set = NULL;
	struct p11p_secret *json = NULL;
	struct member_ctx mctx = {0};
	struct p11p_entropy_cfg ecfg = {.source = P11P_ENTROPY_PASSTHROUGH};
	struct p11p_rng *rng = NULL;
	const struct p11p_slot_cfg *sl;
	unsigned char value[P11P_FRAGMENT_LEN], cv[4], cv0[4];
	char err[1024], buf[64];
	size_t slot, holders = 0;
	int rc = CLI_FAIL;
	CK_RV rv;

	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "", opts)) != -1) {
		const char **dst = o == O_NAME    ? &name
		                   : o == O_TYPE  ? &type_s
		                   : o == O_LABEL ? &label
		                   : o == O_SLOT  ? &slot_arg
		                   : o == O_OUT   ? &out
		                   : o == O_DESC  ? &desc
		                                  : NULL;

		if (dst == NULL)
			return CLI_USAGE;
		*dst = optarg;
	}
	if (argc - optind == 1 && strcmp(argv[optind], "help") == 0)
		return cli_cmd_help("gen-fragment");
	if (argc > optind)
		return cli_usage("gen-fragment", "unexpected argument '%s'", argv[optind]);
	if (name == NULL || type_s == NULL || label == NULL)
		return cli_usage("gen-fragment", "--name, --type and --hsm-key-label are required");
	type = p11p_fragment_type_parse(type_s);
	if (type == 0)
		return cli_usage("gen-fragment", "--type must be hsm_wrapped or hsm_secured");
	cfg = cli_config(cli);
	if (cfg == NULL)
		return CLI_FAIL;
	if (slot_arg != NULL) {
		slot = cli_slot_arg(cfg, "gen-fragment", slot_arg);
		if (slot == (size_t)-1) {
			rc = CLI_USAGE;
			goto done;
		}
	} else if (cfg->n_slots == 1) {
		slot = 0;
	} else {
		rc = cli_usage("gen-fragment", "the config has %zu slots: name one with --slot",
		               cfg->n_slots);
		goto done;
	}
	sl = &cfg->slots[slot];
	/* The set to add to: the --out file if it exists, else a new one. */
	if (out != NULL && access(out, F_OK) == 0) {
		set = p11p_fragments_load(out, err, sizeof(err));
		if (set == NULL) {
			cli_error("%s", err);
			goto done;
		}
		if (p11p_fragments_find(set, name) != NULL) {
			cli_error("%s: a fragment named '%s' exists already", out, name);
			goto done;
		}
	} else if (out != NULL && errno != ENOENT) {
		cli_error("%s: %s", out, strerror(errno));
		goto done;
	} else if ((set = p11p_fragments_new()) == NULL) {
		cli_error("out of memory");
		goto done;
	}

	bes = cli_backends_new(cfg);
	if (bes == NULL) {
		cli_error("out of memory");
		goto done;
	}
	for (size_t i = 0; i < sl->n_members; i++) {
		int r;

		err[0] = '\0';
		r = member_check(bes, &sl->members[i], label, cv, &mctx, holders == 0, err,
		                 sizeof(err));
		if (r == 0) {
			cli_error("warning: slot '%s': member '%s' not reached (%s)",
			          cli_slot_name(cfg, slot, buf, sizeof(buf)), sl->members[i].name,
			          err);
			continue;
		}
		if (r < 0) {
			cli_error("slot '%s': member '%s': %s",
			          cli_slot_name(cfg, slot, buf, sizeof(buf)), sl->members[i].name,
			          err);
			goto done;
		}
		if (holders > 0 && memcmp(cv, cv0, sizeof(cv)) != 0) {
			cli_error(
			    "slot '%s': the HSM keys labelled '%s' differ between members (check "
			    "value of '%s' is not the first member's)",
			    cli_slot_name(cfg, slot, buf, sizeof(buf)), label, sl->members[i].name);
			goto done;
		}
		memcpy(cv0, cv, sizeof(cv));
		holders++;
	}
	if (holders == 0) {
		cli_error("slot '%s': no member could be reached to check the HSM key '%s'",
		          cli_slot_name(cfg, slot, buf, sizeof(buf)), label);
		goto done;
	}
	/* Mixed entropy: the member's RNG and the OS (the OS alone, with a warning, on failure). */
	rv = p11p_entropy_rng_new(&ecfg, hsm_random, &mctx, &rng);
	if (rv == CKR_OK)
		rv = p11p_entropy_generate(rng, value, sizeof(value));
	if (rv != CKR_OK) {
		cli_error("cannot generate the fragment value: %s", cli_rv(rv));
		goto done;
	}
	rv = p11p_fragments_add(set, name, type, label, value, sizeof(value), desc, err,
	                        sizeof(err));
	if (rv != CKR_OK) {
		cli_error("%s", err);
		goto done;
	}
	if (out != NULL) {
		rv = p11p_fragments_write(set, out, err, sizeof(err));
		if (rv != CKR_OK) {
			cli_error("%s", err);
			goto done;
		}
		if (cli->json) {
			json_t *doc = json_object();

			cli_jset(doc, "ok", json_true());
			cli_jset(doc, "name", cli_jstr(name));
			cli_jset(doc, "file", cli_jstr(out));
			cli_json_print(doc);
		}
		fprintf(stderr, "p11proxy: fragment '%s' added to %s\n", cli_esc(name), cli_esc(out));
	} else {
		rv = p11p_fragments_to_json(set, &json);
		if (rv != CKR_OK) {
			cli_error("cannot format the fragment: %s", cli_rv(rv));
			goto done;
		}
		fwrite(p11p_secret_data(json), 1, p11p_secret_len(json), stdout);
		if (fflush(stdout) != 0)
			goto done;
	}
	rc = CLI_OK;
done:
	p11p_wipe(value, sizeof(value));
	p11p_secret_free(json);
	p11p_entropy_free(rng);
	if (mctx.bc != NULL)
		p11p_be_C_CloseSession(mctx.bc, mctx.h);
	p11p_fragments_free(set);
	cli_backends_free(bes);
	p11p_config_free(cfg);
	return rc;
}
