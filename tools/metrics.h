/*
 * The health listener's reports (tools/cmd_health.c) and GET /metrics
 * (tools/metrics.c): a round of the CLI's own member probes, the replication
 * backlog (tools/cmd_sync.c, what `sync --check` counts), the virtual keys
 * by state (the index) and the module's counters (the statistics files each
 * process using the module writes, lib/ha/stats.h), in the Prometheus text
 * exposition format. Tool code only.
 */
#ifndef P11P_TOOLS_METRICS_H
#define P11P_TOOLS_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

#define CLI_WHY_LEN 512

/* One round of probes (tools/cmd_health.c). */
struct hmember {
	char name[P11P_NAME_MAX + 1];
	char backend[P11P_NAME_MAX + 1];
	bool healthy;
	double seconds; /* how long its probe took */
	char why[CLI_WHY_LEN];
};

struct hslot {
	size_t id;
	char name[40];
	bool from_file;
	char order_err[768]; /* a damaged or unreadable overlay ("" when fine) */
	size_t n;
	struct hmember m[P11P_MAX_MEMBERS];
};

struct hreport {
	size_t n;
	struct hslot *s; /* cfg->n_slots */
	bool healthy;
	double when; /* Unix time the round ended */
};

/*
 * The replication backlog of one slot (tools/cmd_sync.c), its members in the
 * effective order: the token keys each holds, and the keys some other member
 * holds that it lacks (by CKA_CLASS + CKA_ID + CKA_LABEL, as `sync --check`).
 * Only members with a PIN in the configuration (or an added member's PIN
 * source) are listed: nothing is asked for. listed[i] false: member i could
 * not be listed (err[i] says why), and its keys count for no one.
 */
struct cli_backlog {
	size_t n;
	char name[P11P_MAX_MEMBERS][P11P_NAME_MAX + 1];
	bool listed[P11P_MAX_MEMBERS];
	unsigned long keys[P11P_MAX_MEMBERS];
	unsigned long missing[P11P_MAX_MEMBERS];
	char err[P11P_MAX_MEMBERS][256];
};
struct cli_backends;
/* Fills out for slot s; false when out of memory (a message printed). */
bool cli_sync_backlog(const struct p11p_config *cfg, struct cli_backends *bs, size_t s,
                      struct cli_backlog *out);

/*
 * GET /metrics (tools/metrics.c). The state kept between requests: the
 * backlog (listed at most every CLI_BACKLOG_MS), the index handle, the last
 * error each kind of input gave (printed once when it changes).
 */
#define CLI_BACKLOG_MS 10000ULL
struct cli_metrics;
struct cli_metrics *cli_metrics_new(const struct p11p_config *cfg, struct cli_backends *bs,
                                    size_t only);
void cli_metrics_free(struct cli_metrics *m);
/*
 * The exposition text for round r (p11p_free it; *len its length), or NULL
 * when out of memory. Reads the statistics files of the processes using the
 * module (removing those of processes that are gone) and the index.
 */
char *cli_metrics_render(struct cli_metrics *m, const struct hreport *r, size_t *len);

#endif
