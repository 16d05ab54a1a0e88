/*
 * audit [--slot S] [--since T] [--json] | audit --verify [--json]: the
 * store's audit trail (lib/index, index.h): every key-management change, by
 * whom (host, uid, program), from what to what, hash-chained. --verify walks
 * the whole chain and exits 1 naming the first row missing or altered.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "config/config.h"
#include "index/index.h"
#include "keys.h"
#include "util.h"

/* T: Unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[Z] (UTC). */
static bool parse_since(const char *s, int64_t *out)
{
	static const char *const fmts[] = {"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"};
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (*s != '\0' && *end == '\0' && errno == 0 && v >= 0) {
		*out = v;
		return true;
	}
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		struct tm tm;
		const char *e;

		memset(&tm, 0, sizeof(tm));
		e = strptime(s, fmts[i], &tm);
		if (e != NULL && *e == '\0') {
			*out = (int64_t)timegm(&tm);
			return true;
		}
	}
	return false;
}

struct lister {
	json_t *rows;
	size_t n;
};

static int list_cb(void *arg, const struct p11p_audit *a)
{
	struct lister *l = arg;
	char tb[32], vb[20];
	struct tm tm;
	time_t t = (time_t)a->time;

	if (gmtime_r(&t, &tm) == NULL || strftime(tb, sizeof(tb), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(tb, sizeof(tb), "%" PRId64, a->time);
	snprintf(vb, sizeof(vb), "%016" PRIx64, a->vid);
	l->n++;
	if (l->rows != NULL) {
		json_t *j = json_object();

		cli_jset(j, "id", json_integer((json_int_t)a->id));
		cli_jset(j, "time", cli_jstr(tb));
		cli_jset(j, "host", cli_jstr(a->host));
		cli_jset(j, "uid", json_integer(a->uid));
		cli_jset(j, "program", cli_jstr(a->program));
		cli_jset(j, "slot", cli_jstr(a->slot));
		cli_jset(j, "vid", cli_jstr(vb));
		cli_jset(j, "label", cli_jstrn(a->label, a->label_len));
		cli_jset(j, "what", cli_jstr(a->what));
		cli_jset(j, "from", cli_jstr(a->from));
		cli_jset(j, "to", cli_jstr(a->to));
		cli_jset(j, "hash", cli_jstr(a->hash));
		json_array_append_new(l->rows, j);
		return 0;
	}
	printf("%" PRIu64 "  %s  %s uid %" PRIu32 " %s  slot %s  key %s \"%s\"  %s", a->id, tb,
	       cli_esc(a->host), a->uid, cli_esc(a->program), cli_esc(a->slot), vb,
	       cli_escn(a->label, a->label_len), cli_esc(a->what));
	if (a->from[0] != '\0' || a->to[0] != '\0')
		printf(" %s -> %s", a->from[0] ? cli_esc(a->from) : "(none)",
		       a->to[0] ? cli_esc(a->to) : "(none)");
	printf("\n");
	return 0;
}

int cmd_audit(struct cli *cli, int argc, char **argv)
{
	enum { O_SLOT = CLI_OPT_FIRST, O_SINCE, O_VERIFY };
	static const struct option opts[] = {
	    {"slot", required_argument, NULL, O_SLOT},
	    {"since", required_argument, NULL, O_SINCE},
	    {"verify", no_argument, NULL, O_VERIFY},
	    {NULL, 0, NULL, 0},
	};
	const char *slot_arg = NULL, *slot = NULL;
	struct p11p_config *cfg = NULL;
	struct p11p_index *idx = NULL;
	bool verify = false;
	int64_t since = INT64_MIN;
	int rc = CLI_FAIL, o;
	char err[512];
	CK_RV rv;

	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "", opts)) != -1) {
		if (o == O_SLOT)
			slot_arg = optarg;
		else if (o == O_SINCE) {
			if (!parse_since(optarg, &since))
				return cli_usage(
				    "audit",
				    "--since wants Unix seconds or YYYY-MM-DD[THH:MM:SS[Z]], "
				    "not '%s'",
				    optarg);
		} else if (o == O_VERIFY)
			verify = true;
		else
			return CLI_USAGE;
	}
	if (optind < argc)
		return cli_usage("audit", "unexpected '%s'", argv[optind]);
	if (verify && (slot_arg != NULL || since != INT64_MIN))
		return cli_usage("audit", "--verify checks the whole trail (no --slot, --since)");
	cfg = cli_config(cli);
	if (cfg == NULL)
		return CLI_FAIL;
	if (slot_arg != NULL) {
		size_t s = cli_slot_arg(cfg, "audit", slot_arg);

		if (s == (size_t)-1) {
			rc = CLI_USAGE;
			goto out;
		}
		slot = cfg->slots[s].label;
		if (slot == NULL || slot[0] == '\0') {
			cli_error("slot %s has no label: it has no virtual keys", slot_arg);
			goto out;
		}
	}
	if (keys_index_open(cfg, false, &idx) != 0)
		goto out;
	if (idx == NULL) {
		cli_error("no store yet at %s (nothing to audit)", cli_esc(cfg->index_path));
		goto out;
	}
	if (verify) {
		uint64_t rows = 0, bad = 0;

		err[0] = '\0';
		rv = p11p_index_audit_verify(idx, &rows, &bad, err, sizeof(err));
		if (rv != CKR_OK && rv != CKR_SIGNATURE_INVALID) {
			p11p_index_last_error(idx, err, sizeof(err));
			cli_error("%s", err[0] ? err : cli_rv(rv));
			goto out;
		}
		if (cli->json) {
			json_t *doc = json_object();

			cli_jset(doc, "ok", json_boolean(rv == CKR_OK));
			cli_jset(doc, "rows", json_integer((json_int_t)rows));
			if (rv != CKR_OK) {
				cli_jset(doc, "bad_row", json_integer((json_int_t)bad));
				cli_jset(doc, "error", cli_jstr(err));
			}
			cli_json_print(doc);
		} else if (rv == CKR_OK) {
			printf("audit trail intact: %" PRIu64 " rows, chain verified\n", rows);
		}
		if (rv != CKR_OK)
			cli_error("audit trail broken: %s", err);
		rc = rv == CKR_OK ? CLI_OK : CLI_FAIL;
		goto out;
	}
	{
		struct lister l = {.rows = cli->json ? json_array() : NULL};

		rv = p11p_index_audit(idx, slot, since, list_cb, &l, NULL);
		if (rv != CKR_OK) {
			p11p_index_last_error(idx, err, sizeof(err));
			cli_error("%s", err[0] ? err : cli_rv(rv));
			json_decref(l.rows);
			goto out;
		}
		if (l.rows != NULL) {
			json_t *doc = json_object();

			cli_jset(doc, "rows", l.rows);
			cli_json_print(doc);
		}
		rc = CLI_OK;
	}
out:
	p11p_index_close(idx);
	p11p_config_free(cfg);
	return rc;
}
