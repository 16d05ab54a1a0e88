/*
 * Health for operators: `p11proxy health [SLOT] [--json] [--listen ADDR:PORT]`.
 *
 * Every member of every virtual slot (or of SLOT), in the order the module
 * uses (the member order overlay when there is one, see proxy.yaml(5)), is
 * probed from this process: find the token, open a session, C_GetTokenInfo,
 * C_GenerateRandom of one byte when the token has an RNG, close. Exit 0 only
 * when every member answered (and no overlay is damaged).
 *
 * --listen serves HTTP with libmicrohttpd (one internal thread, so requests
 * are answered one at a time): GET /health, 204 when healthy, 500 with a
 * JSON body naming the unhealthy members otherwise; GET /metrics, the
 * Prometheus text format (tools/metrics.c); 404 for other paths, 405 for
 * methods other than GET and HEAD. The probes run at most once per second
 * whatever the request rate (the result is cached, and shared by both
 * paths), so a load balancer cannot hammer the HSMs. It binds only the
 * address given, tells systemd when it is listening (sd_notify READY=1, with
 * Type=notify; nothing without $NOTIFY_SOCKET) and runs until SIGINT or
 * SIGTERM (STOPPING=1). A backend call that hangs holds the answer up: give
 * the checker a timeout.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>
#include <systemd/sd-daemon.h>

#include "backend/call.h"
#include "base/mem.h"
#include "cli.h"
#include "config/config.h"
#include "metrics.h"
#include "util.h"
#include "ha/order.h"

#define CACHE_MS 1000

/* ---- one round of probes ------------------------------------------------------------------- */

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double unix_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
}

/* Probes the members of slot `only` ((size_t)-1: every slot) into r (r->s allocated). */
static void probe_all(const struct p11p_config *cfg, struct cli_backends *bs, size_t only,
                      struct hreport *r)
{
	r->n = 0;
	r->healthy = true;
	for (size_t s = 0; s < cfg->n_slots; s++) {
		struct hslot *hs = &r->s[r->n];
		struct p11p_order o;
		int rc;

		if (only != (size_t)-1 && s != only)
			continue;
		memset(hs, 0, sizeof(*hs));
		hs->id = s;
		snprintf(hs->name, sizeof(hs->name), "%s",
		         cli_slot_name(cfg, s, (char[24]){0}, 24));
		/* As the module does: a damaged overlay gives the configured order; say why. */
		rc = cli_slot_order(cfg, s, &o, hs->order_err, sizeof(hs->order_err));
		if (rc < 0)
			r->healthy = false;
		hs->from_file = o.from_file;
		for (size_t i = 0; i < o.n; i++) {
			const struct p11p_member_cfg *mc = cli_order_member(cfg, s, &o.e[i]);
			struct hmember *hm = &hs->m[hs->n++];

			double t0 = mono_s();

			snprintf(hm->name, sizeof(hm->name), "%s", o.e[i].name);
			snprintf(hm->backend, sizeof(hm->backend), "%s",
			         cfg->backends[mc->backend].name);
			hm->healthy = cli_member_probe(bs, mc, hm->why, sizeof(hm->why));
			hm->seconds = mono_s() - t0;
			r->healthy &= hm->healthy;
		}
		p11p_order_clear(&o);
		r->n++;
	}
	r->when = unix_s();
}

static json_t *report_json(const struct hreport *r)
{
	json_t *doc = json_object(), *slots = json_array();

	cli_jset(doc, "healthy", json_boolean(r->healthy));
	for (size_t s = 0; s < r->n; s++) {
		const struct hslot *hs = &r->s[s];
		json_t *js = json_object(), *ms = json_array();
		bool healthy = hs->order_err[0] == '\0';

		for (size_t i = 0; i < hs->n; i++) {
			json_t *jm = json_object();

			healthy &= hs->m[i].healthy;
			cli_jset(jm, "member", json_integer((json_int_t)i + 1));
			cli_jset(jm, "priority", json_integer((json_int_t)i + 1));
			cli_jset(jm, "name", cli_jstr(hs->m[i].name));
			cli_jset(jm, "healthy", json_boolean(hs->m[i].healthy));
			cli_jset(jm, "reason", cli_jstr(hs->m[i].healthy ? NULL : hs->m[i].why));
			json_array_append_new(ms, jm);
		}
		cli_jset(js, "id", json_integer((json_int_t)hs->id));
		cli_jset(js, "label", cli_jstr(hs->name));
		cli_jset(js, "healthy", json_boolean(healthy));
		cli_jset(js, "order", json_string(hs->from_file ? "overlay" : "config"));
		cli_jset(js, "order_error", cli_jstr(hs->order_err[0] != '\0' ? hs->order_err : NULL));
		cli_jset(js, "members", ms);
		json_array_append_new(slots, js);
	}
	cli_jset(doc, "slots", slots);
	return doc;
}

static void report_text(FILE *f, const struct hreport *r)
{
	size_t bad = 0, total = 0;

	for (size_t s = 0; s < r->n; s++) {
		const struct hslot *hs = &r->s[s];

		if (hs->order_err[0] != '\0')
			fprintf(f, "%s: member order file ignored: %s\n", cli_esc(hs->name),
			        cli_esc(hs->order_err));
		for (size_t i = 0; i < hs->n; i++) {
			total++;
			if (hs->m[i].healthy) {
				fprintf(f, "%s member %zu %s: healthy\n", cli_esc(hs->name), i + 1,
				        cli_esc(hs->m[i].name));
			} else {
				bad++;
				fprintf(f, "%s member %zu %s: unhealthy: %s\n", cli_esc(hs->name),
				        i + 1, cli_esc(hs->m[i].name), cli_esc(hs->m[i].why));
			}
		}
	}
	if (r->healthy)
		fprintf(f, "healthy (%zu member%s)\n", total, total == 1 ? "" : "s");
	else
		fprintf(f, "unhealthy (%zu of %zu member%s)\n", bad, total, total == 1 ? "" : "s");
}

/* ---- --listen --------------------------------------------------------------------------- */

struct server {
	const struct p11p_config *cfg;
	struct cli_backends *bs;
	size_t only;
	pthread_mutex_t lock; /* the cache below */
	struct hreport r;
	bool have;
	unsigned long long probed_ms;
	char *body; /* the 500 body of the cached report */
	size_t body_len;
	struct cli_metrics *metrics;
	char *mtext; /* GET /metrics of the cached report */
	size_t mtext_len;
	unsigned long long mtext_ms;
};

static unsigned long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000ULL +
	       (unsigned long long)ts.tv_nsec / 1000000ULL;
}

/* The 500 body: {"healthy":false,"unhealthy":[{"slot":..,"member":..,"name":..,"reason":..}]} */
static char *unhealthy_body(const struct hreport *r, size_t *len)
{
	json_t *doc = json_object(), *bad = json_array();
	char *text;

	cli_jset(doc, "healthy", json_false());
	for (size_t s = 0; s < r->n; s++) {
		const struct hslot *hs = &r->s[s];

		if (hs->order_err[0] != '\0') {
			json_t *e = json_object();

			cli_jset(e, "slot", cli_jstr(hs->name));
			cli_jset(e, "member", json_null());
			cli_jset(e, "name", json_null());
			cli_jset(e, "reason", cli_jstr(hs->order_err));
			json_array_append_new(bad, e);
		}
		for (size_t i = 0; i < hs->n; i++) {
			json_t *e;

			if (hs->m[i].healthy)
				continue;
			e = json_object();
			cli_jset(e, "slot", cli_jstr(hs->name));
			cli_jset(e, "member", json_integer((json_int_t)i + 1));
			cli_jset(e, "name", cli_jstr(hs->m[i].name));
			cli_jset(e, "reason", cli_jstr(hs->m[i].why));
			json_array_append_new(bad, e);
		}
	}
	cli_jset(doc, "unhealthy", bad);
	text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (text == NULL)
		return NULL;
	*len = strlen(text);
	return text;
}

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned int status, char *body,
                               size_t len, const char *type)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(len, len > 0 ? body : NULL, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (resp == NULL)
		return MHD_NO;
	if (type != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* A new round of probes when the cached one is a second old. sv->lock held. */
static void refresh_locked(struct server *sv)
{
	unsigned long long now = mono_ms();

	if (sv->have && now - sv->probed_ms < CACHE_MS)
		return;
	probe_all(sv->cfg, sv->bs, sv->only, &sv->r);
	free(sv->body);
	sv->body = sv->r.healthy ? NULL : unhealthy_body(&sv->r, &sv->body_len);
	sv->have = true;
	/* From the end of the round: a slow round does not turn into back-to-back ones. */
	sv->probed_ms = mono_ms();
}

static enum MHD_Result health(struct server *sv, struct MHD_Connection *conn)
{
	if (sv->r.healthy)
		return respond(conn, MHD_HTTP_NO_CONTENT, NULL, 0, NULL);
	if (sv->body != NULL)
		return respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, sv->body, sv->body_len,
		               "application/json");
	char oom[] = "{\"healthy\":false,\"unhealthy\":[]}\n";

	return respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, oom, sizeof(oom) - 1,
	               "application/json");
}

static enum MHD_Result metrics(struct server *sv, struct MHD_Connection *conn)
{
	char oom[] = "out of memory\n";

	/* Made again for a new round of probes, and at most once a second. */
	if (sv->mtext == NULL || sv->mtext_ms < sv->probed_ms ||
	    mono_ms() - sv->mtext_ms >= CACHE_MS) {
		p11p_free(sv->mtext);
		sv->mtext = cli_metrics_render(sv->metrics, &sv->r, &sv->mtext_len);
		sv->mtext_ms = mono_ms();
	}
	if (sv->mtext == NULL)
		return respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, oom, sizeof(oom) - 1,
		               "text/plain");
	return respond(conn, MHD_HTTP_OK, sv->mtext, sv->mtext_len,
	               "text/plain; version=0.0.4; charset=utf-8");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	struct server *sv = cls;
	char not_found[] = "not found (GET /health or /metrics)\n",
	     not_allowed[] = "method not allowed\n";
	bool is_metrics = strcmp(url, "/metrics") == 0;
	enum MHD_Result ret;

	if (strcmp(url, "/health") != 0 && !is_metrics)
		return respond(conn, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1,
		               "text/plain");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed,
		               sizeof(not_allowed) - 1, "text/plain");
	pthread_mutex_lock(&sv->lock);
	refresh_locked(sv);
	ret = is_metrics ? metrics(sv, conn) : health(sv, conn);
	pthread_mutex_unlock(&sv->lock);
	return ret;
}

/* "127.0.0.1:4441" or "[::1]:4441" (numeric only: the address is bound as given). */
static struct addrinfo *parse_listen(const char *arg)
{
	struct addrinfo hints, *ai = NULL;
	char host[128];
	const char *port;
	size_t hlen;

	if (arg[0] == '[') {
		const char *end = strchr(arg, ']');

		if (end == NULL || end[1] != ':')
			return NULL;
		hlen = (size_t)(end - arg - 1);
		if (hlen == 0 || hlen >= sizeof(host))
			return NULL;
		memcpy(host, arg + 1, hlen);
		port = end + 2;
	} else {
		const char *colon = strrchr(arg, ':');

		if (colon == NULL)
			return NULL;
		hlen = (size_t)(colon - arg);
		if (hlen == 0 || hlen >= sizeof(host) || memchr(arg, ':', hlen) != NULL)
			return NULL;
		memcpy(host, arg, hlen);
		port = colon + 1;
	}
	host[hlen] = '\0';
	if (port[0] == '\0' || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
	    atoi(port) > 65535)
		return NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return NULL;
	return ai;
}

static int serve(struct cli *cli, const struct p11p_config *cfg, struct cli_backends *bs,
                 size_t only, const char *listen_arg)
{
	struct server sv;
	struct addrinfo *ai;
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	sigset_t set;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	int sig = 0, rc = CLI_OK;

	ai = parse_listen(listen_arg);
	if (ai == NULL)
		return cli_usage("health",
		                 "--listen wants a numeric ADDRESS:PORT (e.g. 127.0.0.1:4441 or "
		                 "[::1]:4441), not '%s'",
		                 listen_arg);
	memset(&sv, 0, sizeof(sv));
	sv.cfg = cfg;
	sv.bs = bs;
	sv.only = only;
	sv.r.s = p11p_calloc(cfg->n_slots > 0 ? cfg->n_slots : 1, sizeof(*sv.r.s));
	sv.metrics = cli_metrics_new(cfg, bs, only);
	if (sv.r.s == NULL || sv.metrics == NULL) {
		freeaddrinfo(ai);
		p11p_free(sv.r.s);
		cli_metrics_free(sv.metrics);
		cli_error("out of memory");
		return CLI_FAIL;
	}
	pthread_mutex_init(&sv.lock, NULL);
	/* The daemon's thread inherits this mask: the signals come to sigwait below. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, &sv, MHD_OPTION_SOCK_ADDR,
	                     ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)32,
	                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
	freeaddrinfo(ai);
	if (d == NULL) {
		cli_error("cannot listen on %s", listen_arg);
		rc = CLI_FAIL;
		goto out;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (cli->json) {
		json_t *doc = json_object();

		cli_jset(doc, "listening", cli_jstr(listen_arg));
		cli_jset(doc, "port", json_integer(info != NULL ? info->port : 0));
		cli_json_print(doc);
	} else {
		printf("listening on %s (port %u): GET /health, GET /metrics\n",
		       cli_esc(listen_arg), info != NULL ? (unsigned)info->port : 0U);
	}
	fflush(stdout);
	/* Bound and listening: systemd (Type=notify) may start what waits for it. */
	sd_notifyf(0, "READY=1\nSTATUS=listening on %s (port %u)", listen_arg,
	           info != NULL ? (unsigned)info->port : 0U);
	while (sigwait(&set, &sig) != 0 || (sig != SIGINT && sig != SIGTERM))
		;
	sd_notify(0, "STOPPING=1");
	MHD_stop_daemon(d);
out:
	pthread_mutex_destroy(&sv.lock);
	free(sv.body);
	p11p_free(sv.mtext);
	cli_metrics_free(sv.metrics);
	p11p_free(sv.r.s);
	return rc;
}

/* ---- the command --------------------------------------------------------------------------- */

int cmd_health(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {NULL, 0, NULL, 0},
	};
	struct p11p_config *cfg;
	struct cli_backends *bs = NULL;
	struct hreport r = {0};
	const char *want = NULL, *listen_arg = NULL;
	size_t only = (size_t)-1;
	int rc, o;

	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "", opts)) != -1) {
		if (o == 'l')
			listen_arg = optarg;
		else
			return CLI_USAGE;
	}
	if (argc - optind > 1)
		return cli_usage("health", "give at most one SLOT");
	if (argc - optind == 1)
		want = argv[optind];
	if (want != NULL && strcmp(want, "help") == 0)
		return cli_cmd_help("health");
	cfg = cli_config(cli);
	if (cfg == NULL)
		return CLI_FAIL;
	if (want != NULL) {
		only = cli_slot_arg(cfg, "health", want);
		if (only == (size_t)-1) {
			rc = CLI_USAGE;
			goto out;
		}
	}
	bs = cli_backends_new(cfg);
	r.s = p11p_calloc(cfg->n_slots > 0 ? cfg->n_slots : 1, sizeof(*r.s));
	if (bs == NULL || r.s == NULL) {
		cli_error("out of memory");
		rc = CLI_FAIL;
		goto out;
	}
	if (listen_arg != NULL) {
		rc = serve(cli, cfg, bs, only, listen_arg);
		goto out;
	}
	probe_all(cfg, bs, only, &r);
	if (cli->json)
		cli_json_print(report_json(&r));
	else
		report_text(stdout, &r);
	rc = r.healthy ? CLI_OK : CLI_FAIL;
out:
	p11p_free(r.s);
	cli_backends_free(bs);
	p11p_config_free(cfg);
	return rc;
}
