/*
 * index import FILE: brings the records of an old index journal
 * (lib/index/journal.h) into the store, once: a record whose virtual id the
 * store has already is skipped. One transaction: all imported, or none.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "cli.h"
#include "config/config.h"
#include "index/journal.h"
#include "keys.h"
#include "util.h"

static int do_import(struct cli *cli, const char *file)
{
	struct p11p_config *cfg = cli_config(cli);
	struct p11p_index *idx = NULL;
	struct p11p_vkey *recs = NULL;
	size_t n = 0, fresh = 0, skipped = 0;
	char err[1024];
	int rc = CLI_FAIL;
	CK_RV rv;

	if (cfg == NULL)
		return CLI_FAIL;
	rv = p11p_journal_read(file, &recs, &n, err, sizeof(err));
	if (rv != CKR_OK) {
		cli_error_plain(err);
		goto out;
	}
	if (keys_index_open(cfg, true, &idx) != 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct p11p_vkey have;
		bool found = false;

		if (p11p_index_get(idx, recs[i].vid, &have, &found) != CKR_OK)
			goto out;
		if (found) {
			skipped++;
			continue;
		}
		recs[fresh] = recs[i];
		recs[fresh].rev = 0;
		fresh++;
	}
	rv = p11p_index_put_batch(idx, recs, fresh);
	if (rv != CKR_OK) {
		p11p_index_last_error(idx, err, sizeof(err));
		cli_error("import: %s", err[0] ? err : cli_rv(rv));
		goto out;
	}
	if (cli->json) {
		json_t *doc = json_object();

		cli_jset(doc, "records", json_integer((json_int_t)n));
		cli_jset(doc, "imported", json_integer((json_int_t)fresh));
		cli_jset(doc, "skipped", json_integer((json_int_t)skipped));
		cli_json_print(doc);
	} else {
		printf("%zu records in %s: %zu imported, %zu skipped (already in the store)\n", n,
		       cli_esc(file), fresh, skipped);
	}
	rc = CLI_OK;
out:
	p11p_free(recs);
	p11p_index_close(idx);
	p11p_config_free(cfg);
	return rc;
}

int cmd_index(struct cli *cli, int argc, char **argv)
{
	static const char *const actions[] = {"import", NULL};
	int o, rc;

	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "", NULL)) != -1)
		return CLI_USAGE;
	if (optind >= argc)
		return cli_usage("index", "no action given");
	if (cli_action("index", argv[optind], actions, &rc) < 0)
		return rc;
	if (argc - optind != 2)
		return cli_usage("index", "import takes one FILE");
	return do_import(cli, argv[optind + 1]);
}
