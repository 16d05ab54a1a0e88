/*
 * GET /metrics of the health listener (`p11proxy health --listen`), in the
 * Prometheus text exposition format (version 0.0.4). What it exposes comes
 * from four places:
 *
 *   - the listener's own round of member probes (cmd_health.c), cached for a
 *     second as for GET /health: p11proxy_member_up, ..._probe_duration_seconds;
 *   - the replication backlog, listed at most every CLI_BACKLOG_MS
 *     (cmd_sync.c, what `sync --check` counts): p11proxy_replication_*;
 *   - the virtual-key index: p11proxy_virtual_keys by state;
 *   - the module's own counts, from the statistics files of the processes
 *     using it (lib/ha/stats.h), summed over the processes still running:
 *     p11proxy_module_*. The files of processes that are gone are removed.
 *
 * The catalogue, with what each series means, is p11proxy(7) METRICS.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "base/text.h"
#include "base/overlay.h"
#include "cli.h"
#include "config/config.h"
#include "ha/stats.h"
#include "index/index.h"
#include "metrics.h"
#include "util.h"

#define NS "p11proxy_"

enum { ERR_INDEX, ERR_STATS, ERR_KINDS };

/* The module's counts for one member, summed over the processes. */
struct agg_member {
	char slot[P11P_LABEL_MAX + 1];
	char name[P11P_NAME_MAX + 1];
	unsigned long long state[P11P_STATS_STATES]; /* processes seeing it so */
	unsigned long long down, failovers, hung, sessions;
	unsigned long long calls, server_errors, client_errors, refused;
};

struct agg_backend {
	char name[P11P_NAME_MAX + 1];
	unsigned long long calls, server_errors, client_errors, refused;
};

struct cli_metrics {
	const struct p11p_config *cfg;
	struct cli_backends *bs;
	size_t only; /* one slot, or (size_t)-1 */
	/* The replication backlog, per config slot. */
	struct cli_backlog *backlog;
	bool *backlog_have;
	bool backlog_done;
	unsigned long long backlog_ms; /* monotonic, when last listed */
	double backlog_when;           /* Unix time of it */
	/* The index (opened once it exists). */
	struct p11p_index *idx;
	/* The module's statistics: one file parsed at a time, and the sums. */
	struct p11p_stats *stats;
	struct agg_member *am;
	size_t n_am;
	struct agg_backend ab[P11P_MAX_BACKENDS];
	size_t n_ab;
	unsigned long processes, stats_errors;
	char last_err[ERR_KINDS][768]; /* said once, until it changes */
};

/* ---- output ----------------------------------------------------------------------------- */

static void family(struct p11p_strbuf *b, const char *name, const char *type, const char *help)
{
	p11p_strbuf_printf(b, "# HELP " NS "%s %s\n# TYPE " NS "%s %s\n", name, help, name, type);
}

/*
 * A label value: the text as the CLI prints it (control bytes and bytes that
 * are not UTF-8 as \xNN), with '\' and '"' escaped as the format wants.
 */
static const char *lv(const char *s, char *buf, size_t len)
{
	const char *e = cli_esc(s);
	size_t o = 0;

	for (; *e != '\0' && o + 3 < len; e++) {
		if (*e == '\\' || *e == '"')
			buf[o++] = '\\';
		buf[o++] = *e;
	}
	buf[o] = '\0';
	return buf;
}

#define LV_LEN (8 * (P11P_NAME_MAX + 1))

/* name{slot="S",member="M"} value */
static void sm(struct p11p_strbuf *b, const char *name, const char *slot, const char *member,
               const char *fmt_value, ...) __attribute__((format(printf, 5, 6)));

static void sm(struct p11p_strbuf *b, const char *name, const char *slot, const char *member,
               const char *fmt_value, ...)
{
	char v1[LV_LEN], v2[LV_LEN], value[64];
	va_list ap;

	va_start(ap, fmt_value);
	vsnprintf(value, sizeof(value), fmt_value, ap);
	va_end(ap);
	p11p_strbuf_printf(b, NS "%s{slot=\"%s\",member=\"%s\"} %s\n", name,
	                   lv(slot, v1, sizeof(v1)), lv(member, v2, sizeof(v2)), value);
}

/* snprintf, for messages that may be cut short. */
static void say(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* ---- messages, once ---------------------------------------------------------------------- */

static void note(struct cli_metrics *m, int kind, const char *msg)
{
	if (strcmp(m->last_err[kind], msg) == 0)
		return;
	snprintf(m->last_err[kind], sizeof(m->last_err[kind]), "%s", msg);
	/* Not cli_error(): a listener runs for months, and --json would keep every message. */
	fprintf(stderr, "p11proxy: metrics: %s\n", cli_esc(msg));
}

/* ---- setup ----------------------------------------------------------------------------- */

struct cli_metrics *cli_metrics_new(const struct p11p_config *cfg, struct cli_backends *bs,
                                    size_t only)
{
	struct cli_metrics *m = p11p_calloc(1, sizeof(*m));
	size_t n = cfg->n_slots > 0 ? cfg->n_slots : 1;

	if (m == NULL)
		return NULL;
	m->cfg = cfg;
	m->bs = bs;
	m->only = only;
	m->backlog = p11p_calloc(n, sizeof(*m->backlog));
	m->backlog_have = p11p_calloc(n, sizeof(*m->backlog_have));
	m->stats = p11p_calloc(1, sizeof(*m->stats));
	m->am = p11p_calloc(P11P_STATS_MAX_MEMBERS, sizeof(*m->am));
	if (m->backlog == NULL || m->backlog_have == NULL || m->stats == NULL || m->am == NULL) {
		cli_metrics_free(m);
		return NULL;
	}
	return m;
}

void cli_metrics_free(struct cli_metrics *m)
{
	if (m == NULL)
		return;
	p11p_index_close(m->idx);
	p11p_free(m->backlog);
	p11p_free(m->backlog_have);
	p11p_free(m->stats);
	p11p_free(m->am);
	p11p_free(m);
}

static double unix_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
}

/* ---- the module's statistics files --------------------------------------------------------- */

static struct agg_member *agg_member(struct cli_metrics *m, const struct p11p_stats_member *e)
{
	for (size_t i = 0; i < m->n_am; i++)
		if (strcmp(m->am[i].slot, e->slot) == 0 && strcmp(m->am[i].name, e->name) == 0)
			return &m->am[i];
	if (m->n_am == P11P_STATS_MAX_MEMBERS)
		return NULL;
	memset(&m->am[m->n_am], 0, sizeof(m->am[0]));
	snprintf(m->am[m->n_am].slot, sizeof(m->am[0].slot), "%s", e->slot);
	snprintf(m->am[m->n_am].name, sizeof(m->am[0].name), "%s", e->name);
	return &m->am[m->n_am++];
}

static struct agg_backend *agg_backend(struct cli_metrics *m, const char *name)
{
	for (size_t i = 0; i < m->n_ab; i++)
		if (strcmp(m->ab[i].name, name) == 0)
			return &m->ab[i];
	if (m->n_ab == P11P_MAX_BACKENDS)
		return NULL;
	memset(&m->ab[m->n_ab], 0, sizeof(m->ab[0]));
	snprintf(m->ab[m->n_ab].name, sizeof(m->ab[0].name), "%s", name);
	return &m->ab[m->n_ab++];
}

/* Is the member's slot one this listener reports on? */
static bool slot_wanted(const struct cli_metrics *m, const char *slot)
{
	char buf[24];

	return m->only == (size_t)-1 ||
	       strcmp(slot, cli_slot_name(m->cfg, m->only, buf, sizeof(buf))) == 0;
}

static void add_process(struct cli_metrics *m, const struct p11p_stats *s)
{
	m->processes++;
	for (size_t i = 0; i < s->n_backends; i++) {
		const struct p11p_stats_backend *e = &s->backends[i];
		struct agg_backend *a = agg_backend(m, e->name);

		if (a == NULL)
			continue;
		a->calls += e->calls;
		a->server_errors += e->server_errors;
		a->client_errors += e->client_errors;
		a->refused += e->refused;
	}
	for (size_t i = 0; i < s->n_members; i++) {
		const struct p11p_stats_member *e = &s->members[i];
		struct agg_member *a;

		if (!slot_wanted(m, e->slot) || (a = agg_member(m, e)) == NULL)
			continue;
		a->state[e->state]++;
		a->down += e->down;
		a->failovers += e->failovers;
		a->hung += e->hung;
		a->sessions += e->sessions;
		a->calls += e->calls;
		a->server_errors += e->server_errors;
		a->client_errors += e->client_errors;
		a->refused += e->refused;
	}
}

/* Reads every statistics file, sums those of live processes, removes those of dead ones. */
static void read_stats(struct cli_metrics *m)
{
	char dir[PATH_MAX], path[PATH_MAX + 64], err[768], first[768] = "";
	unsigned char *buf;
	struct dirent *de;
	size_t len;
	DIR *d;

	m->n_am = m->n_ab = 0;
	m->processes = m->stats_errors = 0;
	if (p11p_stats_dir(m->cfg->state_dir, dir, sizeof(dir)) != 0)
		return;
	d = opendir(dir);
	if (d == NULL) {
		if (errno != ENOENT)
			say(first, sizeof(first), "%s: cannot read: %s", dir, strerror(errno));
		goto out;
	}
	while ((de = readdir(d)) != NULL) {
		bool tmp;
		long pid = p11p_stats_name_pid(de->d_name, &tmp);
		int rc;

		if (pid == 0)
			continue;
		/* A writer's temp file: left behind by a process killed mid-write. */
		if (tmp) {
			if (!p11p_stats_alive(pid, 0))
				unlinkat(dirfd(d), de->d_name, 0);
			continue;
		}
		say(path, sizeof(path), "%s/%s", dir, de->d_name);
		rc = p11p_overlay_read(path, P11P_STATS_MAX_BYTES, NULL, &buf, &len, err,
		                       sizeof(err));
		if (rc == 0)
			continue; /* gone meanwhile: its process finalized */
		if (rc == 1 &&
		    !p11p_stats_parse(path, (const char *)buf, len, m->stats, err, sizeof(err)))
			rc = -1;
		p11p_free(buf);
		if (rc == 1 && m->stats->pid != pid) {
			say(err, sizeof(err), "%s: written by pid %ld, not %ld", path,
			    m->stats->pid, pid);
			rc = -1;
		}
		/* Whatever it holds, a file whose process is gone is ignored and removed. */
		if (!p11p_stats_alive(pid, rc == 1 ? m->stats->start : 0)) {
			unlink(path);
			continue;
		}
		if (rc != 1) {
			m->stats_errors++;
			if (first[0] == '\0')
				say(first, sizeof(first), "%s", err);
			continue;
		}
		add_process(m, m->stats);
	}
	closedir(d);
out:
	if (first[0] != '\0')
		note(m, ERR_STATS, first);
	else
		m->last_err[ERR_STATS][0] = '\0';
}

/* ---- the index ------------------------------------------------------------------------ */

/* counts[slot][state]; false when the index cannot be read (a message said why). */
static bool read_index(struct cli_metrics *m, unsigned long (*counts)[4])
{
	char err[768];
	struct stat sb;
	CK_RV rv;

	if (m->idx == NULL) {
		/* Nothing recorded yet: every count is 0 (the index is not created here). */
		if (stat(m->cfg->index_path, &sb) != 0 && errno == ENOENT) {
			m->last_err[ERR_INDEX][0] = '\0';
			return true;
		}
		err[0] = '\0';
		rv = p11p_index_open(m->cfg->index_path, &m->idx, err, sizeof(err));
		if (rv != CKR_OK) {
			m->idx = NULL;
			note(m, ERR_INDEX, err[0] != '\0' ? err : cli_rv(rv));
			return false;
		}
	} else if ((rv = p11p_index_refresh(m->idx)) != CKR_OK) {
		p11p_index_last_error(m->idx, err, sizeof(err));
		note(m, ERR_INDEX, err[0] != '\0' ? err : cli_rv(rv));
		return false;
	}
	for (size_t s = 0; s < m->cfg->n_slots; s++) {
		const char *label = m->cfg->slots[s].label;
		uint64_t *ids = NULL;
		size_t n = 0;

		if ((m->only != (size_t)-1 && s != m->only) || label == NULL || label[0] == '\0')
			continue;
		if (p11p_index_list(m->idx, label, &ids, &n) != CKR_OK)
			continue;
		for (size_t i = 0; i < n; i++) {
			struct p11p_vkey v;
			bool found = false;

			if (p11p_index_get(m->idx, ids[i], &v, &found) == CKR_OK && found &&
			    (unsigned)v.state < 4)
				counts[s][v.state]++;
		}
		p11p_free(ids);
	}
	m->last_err[ERR_INDEX][0] = '\0';
	return true;
}

/* ---- the exposition ---------------------------------------------------------------------- */

static void render_probes(struct p11p_strbuf *b, const struct hreport *r)
{
	family(b, "probe_timestamp_seconds", "gauge",
	       "Unix time of the listener's last round of member probes.");
	p11p_strbuf_printf(b, NS "probe_timestamp_seconds %.3f\n", r->when);
	family(b, "slot_healthy", "gauge",
	       "1 when every member of the slot answered the listener's probe and its member "
	       "order file (if any) is usable, else 0.");
	for (size_t s = 0; s < r->n; s++) {
		const struct hslot *hs = &r->s[s];
		bool healthy = hs->order_err[0] == '\0';
		char v[LV_LEN];

		for (size_t i = 0; i < hs->n; i++)
			healthy &= hs->m[i].healthy;
		p11p_strbuf_printf(b, NS "slot_healthy{slot=\"%s\"} %d\n",
		                   lv(hs->name, v, sizeof(v)), healthy);
	}
	family(b, "slot_order_ok", "gauge",
	       "0 when the slot's member order file is damaged or unreadable (the configured "
	       "order is used), else 1.");
	for (size_t s = 0; s < r->n; s++) {
		char v[LV_LEN];

		p11p_strbuf_printf(b, NS "slot_order_ok{slot=\"%s\"} %d\n",
		                   lv(r->s[s].name, v, sizeof(v)), r->s[s].order_err[0] == '\0');
	}
	family(b, "member_up", "gauge",
	       "1 when the member answered the listener's own probe (find the token, open a "
	       "session, C_GetTokenInfo, one random byte, close), else 0.");
	for (size_t s = 0; s < r->n; s++)
		for (size_t i = 0; i < r->s[s].n; i++)
			sm(b, "member_up", r->s[s].name, r->s[s].m[i].name, "%d",
			   r->s[s].m[i].healthy);
	family(b, "member_probe_duration_seconds", "gauge",
	       "How long the listener's last probe of the member took.");
	for (size_t s = 0; s < r->n; s++)
		for (size_t i = 0; i < r->s[s].n; i++)
			sm(b, "member_probe_duration_seconds", r->s[s].name, r->s[s].m[i].name,
			   "%.6f", r->s[s].m[i].seconds);
	family(b, "member_priority", "gauge",
	       "The member's position in the slot's effective order (1: first choice).");
	for (size_t s = 0; s < r->n; s++)
		for (size_t i = 0; i < r->s[s].n; i++)
			sm(b, "member_priority", r->s[s].name, r->s[s].m[i].name, "%zu", i + 1);
	family(b, "member_info", "gauge", "The member's backend (vendor library), as a label.");
	for (size_t s = 0; s < r->n; s++)
		for (size_t i = 0; i < r->s[s].n; i++) {
			char v1[LV_LEN], v2[LV_LEN], v3[LV_LEN];

			p11p_strbuf_printf(
			    b, NS "member_info{slot=\"%s\",member=\"%s\",backend=\"%s\"} 1\n",
			    lv(r->s[s].name, v1, sizeof(v1)), lv(r->s[s].m[i].name, v2, sizeof(v2)),
			    lv(r->s[s].m[i].backend, v3, sizeof(v3)));
		}
}

static void render_backlog(struct cli_metrics *m, struct p11p_strbuf *b, const struct hreport *r)
{
	unsigned long long now = p11p_now_ms();

	if (!m->backlog_done || now - m->backlog_ms >= CLI_BACKLOG_MS) {
		for (size_t k = 0; k < r->n; k++) {
			size_t s = r->s[k].id;

			/* One member: nothing to compare, nothing to list. */
			m->backlog_have[s] =
			    r->s[k].n >= 2 && cli_sync_backlog(m->cfg, m->bs, s, &m->backlog[s]);
		}
		m->backlog_done = true;
		m->backlog_ms = p11p_now_ms();
		m->backlog_when = unix_now();
	}
	family(b, "replication_check_timestamp_seconds", "gauge",
	       "Unix time the members' keys were last listed for the replication backlog.");
	p11p_strbuf_printf(b, NS "replication_check_timestamp_seconds %.3f\n", m->backlog_when);
	family(b, "replication_listed", "gauge",
	       "1 when the member's token keys could be listed (it answered, and has a PIN in "
	       "the configuration), else 0: its backlog is unknown. Slots of two members or more.");
	for (size_t k = 0; k < r->n; k++) {
		const struct cli_backlog *bl = &m->backlog[r->s[k].id];

		if (!m->backlog_have[r->s[k].id])
			continue;
		for (size_t i = 0; i < bl->n; i++)
			sm(b, "replication_listed", r->s[k].name, bl->name[i], "%d", bl->listed[i]);
	}
	family(b, "replication_backlog_keys", "gauge",
	       "Token keys another member of the slot holds that this member lacks (by class, "
	       "CKA_ID and CKA_LABEL, as sync --check counts them). Listed members only.");
	for (size_t k = 0; k < r->n; k++) {
		const struct cli_backlog *bl = &m->backlog[r->s[k].id];

		if (!m->backlog_have[r->s[k].id])
			continue;
		for (size_t i = 0; i < bl->n; i++)
			if (bl->listed[i])
				sm(b, "replication_backlog_keys", r->s[k].name, bl->name[i], "%lu",
				   bl->missing[i]);
	}
}

static void render_index(struct cli_metrics *m, struct p11p_strbuf *b)
{
	static const char *const states[4] = {"active", "deactivated", "missing", "deleted"};
	unsigned long(*counts)[4];
	bool ok;

	if (m->cfg->index_path == NULL || m->cfg->index_path[0] != '/')
		return;
	counts = p11p_calloc(m->cfg->n_slots > 0 ? m->cfg->n_slots : 1, sizeof(*counts));
	if (counts == NULL) {
		b->oom = true;
		return;
	}
	ok = read_index(m, counts);
	family(b, "index_ok", "gauge",
	       "1 when the virtual-key index could be read (or does not exist yet), else 0.");
	p11p_strbuf_printf(b, NS "index_ok %d\n", ok);
	family(b, "virtual_keys", "gauge", "Virtual keys of the slot in the index, by state.");
	for (size_t s = 0; ok && s < m->cfg->n_slots; s++) {
		const char *label = m->cfg->slots[s].label;
		char v[LV_LEN];

		if ((m->only != (size_t)-1 && s != m->only) || label == NULL || label[0] == '\0')
			continue;
		for (size_t k = 0; k < 4; k++)
			p11p_strbuf_printf(b, NS "virtual_keys{slot=\"%s\",state=\"%s\"} %lu\n",
			                   lv(label, v, sizeof(v)), states[k], counts[s][k]);
	}
	p11p_free(counts);
}

static void render_module(struct cli_metrics *m, struct p11p_strbuf *b)
{
	static const char *const classes[3] = {"server", "client", "refused"};

	read_stats(m);
	family(b, "module_processes", "gauge",
	       "Running processes using the module whose statistics file was read.");
	p11p_strbuf_printf(b, NS "module_processes %lu\n", m->processes);
	family(b, "module_stats_errors", "gauge",
	       "Statistics files of running processes that could not be read or parsed.");
	p11p_strbuf_printf(b, NS "module_stats_errors %lu\n", m->stats_errors);
	family(b, "module_member_state", "gauge",
	       "Processes using the module that see the member in that state (up, recovering, "
	       "down).");
	for (size_t i = 0; i < m->n_am; i++)
		for (size_t k = 0; k < P11P_STATS_STATES; k++) {
			char v1[LV_LEN], v2[LV_LEN];

			p11p_strbuf_printf(
			    b,
			    NS "module_member_state{slot=\"%s\",member=\"%s\",state=\"%s\"} %llu\n",
			    lv(m->am[i].slot, v1, sizeof(v1)), lv(m->am[i].name, v2, sizeof(v2)),
			    p11p_stats_state_name((enum p11p_stats_state)k), m->am[i].state[k]);
		}
	family(b, "module_member_down_total", "counter",
	       "Times the processes using the module marked the member down.");
	for (size_t i = 0; i < m->n_am; i++)
		sm(b, "module_member_down_total", m->am[i].slot, m->am[i].name, "%llu",
		   m->am[i].down);
	family(b, "module_member_failovers_total", "counter",
	       "Sessions that moved off the member to another member of the slot (failovers).");
	for (size_t i = 0; i < m->n_am; i++)
		sm(b, "module_member_failovers_total", m->am[i].slot, m->am[i].name, "%llu",
		   m->am[i].failovers);
	family(b, "module_member_hung_calls", "gauge",
	       "Calls on the member running past call_timeout now (abandoned or found by the "
	       "watchdog, not returned yet).");
	for (size_t i = 0; i < m->n_am; i++)
		sm(b, "module_member_hung_calls", m->am[i].slot, m->am[i].name, "%llu",
		   m->am[i].hung);
	family(b, "module_member_sessions", "gauge", "Application sessions the member serves now.");
	for (size_t i = 0; i < m->n_am; i++)
		sm(b, "module_member_sessions", m->am[i].slot, m->am[i].name, "%llu",
		   m->am[i].sessions);
	family(b, "module_member_calls_total", "counter",
	       "PKCS#11 calls the module made to the member (probes included).");
	for (size_t i = 0; i < m->n_am; i++)
		sm(b, "module_member_calls_total", m->am[i].slot, m->am[i].name, "%llu",
		   m->am[i].calls);
	family(b, "module_member_errors_total", "counter",
	       "Calls to the member that failed, by class: server (the member failed), client "
	       "(the request was wrong), refused (the answer broke the PKCS#11 rules; also "
	       "counted as server).");
	for (size_t i = 0; i < m->n_am; i++) {
		const unsigned long long v[3] = {m->am[i].server_errors, m->am[i].client_errors,
		                                 m->am[i].refused};

		for (size_t k = 0; k < 3; k++) {
			char v1[LV_LEN], v2[LV_LEN];

			p11p_strbuf_printf(
			    b,
			    NS "module_member_errors_total{slot=\"%s\",member=\"%s\",class=\"%s\"} "
			       "%llu\n",
			    lv(m->am[i].slot, v1, sizeof(v1)), lv(m->am[i].name, v2, sizeof(v2)),
			    classes[k], v[k]);
		}
	}
	family(b, "module_backend_calls_total", "counter",
	       "PKCS#11 calls the module made to the backend (vendor library), every member "
	       "and slot together.");
	for (size_t i = 0; i < m->n_ab; i++) {
		char v[LV_LEN];

		p11p_strbuf_printf(b, NS "module_backend_calls_total{backend=\"%s\"} %llu\n",
		                   lv(m->ab[i].name, v, sizeof(v)), m->ab[i].calls);
	}
	family(b, "module_backend_errors_total", "counter",
	       "Calls to the backend that failed, by class (as module_member_errors_total).");
	for (size_t i = 0; i < m->n_ab; i++) {
		const unsigned long long v[3] = {m->ab[i].server_errors, m->ab[i].client_errors,
		                                 m->ab[i].refused};

		for (size_t k = 0; k < 3; k++) {
			char v1[LV_LEN];

			p11p_strbuf_printf(
			    b, NS "module_backend_errors_total{backend=\"%s\",class=\"%s\"} %llu\n",
			    lv(m->ab[i].name, v1, sizeof(v1)), classes[k], v[k]);
		}
	}
}

char *cli_metrics_render(struct cli_metrics *m, const struct hreport *r, size_t *len)
{
	struct p11p_strbuf b = {0};

	render_probes(&b, r);
	render_backlog(m, &b, r);
	render_index(m, &b);
	render_module(m, &b);
	if (b.oom) {
		p11p_free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}
