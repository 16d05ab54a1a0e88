/*
 * Health for operators: `p11proxy health [SLOT] [--json] [--listen ADDR:PORT]`.
 *
 * Every member of every virtual slot (or of SLOT), in the order the module
 * uses (the member order overlay when there is one, see proxy.yaml(5)), is
 * probed from this process: find the token, open a session, C_GetTokenInfo,
 * C_GenerateRandom of one byte when the token has an RNG, close. Exit 0 only
 * when every member answered (and no overlay is damaged).
 *
 * --listen serves GET /health over HTTP with libmicrohttpd (one internal
 * thread, so requests are answered one at a time): 204 when healthy, 500
 * with a JSON body naming the unhealthy members otherwise, 404 for other
 * paths, 405 for methods other than GET and HEAD. The probes run at most
 * once per second whatever the request rate (the result is cached), so a
 * load balancer cannot hammer the HSMs. It binds only the address given and
 * runs until SIGINT or SIGTERM. A backend call that hangs holds the answer
 * up: give the checker a timeout.
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

#include "backend/call.h"
#include "base/mem.h"
#include "cli.h"
#include "config/config.h"
#include "util.h"
#include "ha/order.h"

#define WHY_LEN  512
#define CACHE_MS 1000
/* A member call that takes longer is abandoned and the member reported unhealthy. */
#define CLI_PROBE_TIMEOUT_MS 5000

/* ---- the backends and the probe, shared with `members`, `slots` and `sync` ------------------- */

struct cli_backend {
	struct p11p_backend be;
	bool tried;
	CK_RV rv;
	char err[WHY_LEN];
};

struct cli_backends {
	const struct p11p_config *cfg;
	struct cli_backend *b; /* cfg->n_backends */
};

struct cli_backends *cli_backends_new(const struct p11p_config *cfg)
{
	struct cli_backends *bs = p11p_calloc(1, sizeof(*bs));

	if (bs == NULL)
		return NULL;
	bs->cfg = cfg;
	bs->b = p11p_calloc(cfg->n_backends > 0 ? cfg->n_backends : 1, sizeof(*bs->b));
	if (bs->b == NULL) {
		p11p_free(bs);
		return NULL;
	}
	return bs;
}

void cli_backends_free(struct cli_backends *bs)
{
	if (bs == NULL)
		return;
	for (size_t i = 0; i < bs->cfg->n_backends; i++) {
		if (bs->b[i].tried && bs->b[i].rv == CKR_OK)
			p11p_backend_close(&bs->b[i].be, true);
	}
	p11p_free(bs->b);
	p11p_free(bs);
}

static struct cli_backend *backend_get(struct cli_backends *bs, size_t idx)
{
	struct cli_backend *b = &bs->b[idx];

	if (!b->tried) {
		b->tried = true;
		b->err[0] = '\0';
		b->rv = p11p_backend_open(&b->be, &bs->cfg->backends[idx], b->err, sizeof(b->err));
		if (b->rv != CKR_OK && b->err[0] == '\0') {
			char nb[32];

			snprintf(b->err, sizeof(b->err), "cannot load %s: %s",
			         bs->cfg->backends[idx].module, cli_rv_name(b->rv, nb, sizeof(nb)));
		}
	}
	return b;
}

struct p11p_backend *cli_backend(struct cli_backends *bs, size_t idx, char *why, size_t whylen)
{
	struct cli_backend *b;

	if (idx >= bs->cfg->n_backends) {
		snprintf(why, whylen, "backend index %zu out of range", idx);
		return NULL;
	}
	b = backend_get(bs, idx);
	if (b->rv != CKR_OK) {
		snprintf(why, whylen, "%s", b->err);
		return NULL;
	}
	return &b->be;
}

static bool probe_failed(char *why, size_t whylen, const char *call, CK_RV rv)
{
	char nb[32];

	snprintf(why, whylen, "%s: %s", call, cli_rv_name(rv, nb, sizeof(nb)));
	return false;
}

bool cli_member_probe(struct cli_backends *bs, const struct p11p_member_cfg *mc, char *why,
                      size_t whylen)
{
	struct p11p_member m;
	struct cli_backend *b;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_TOKEN_INFO ti;
	CK_BYTE byte;
	struct p11p_bctx probe;
	const struct p11p_bctx *bc;
	char err[WHY_LEN];
	CK_RV rv;
	bool ok = false;

	why[0] = '\0';
	if (mc->backend >= bs->cfg->n_backends) {
		snprintf(why, whylen, "backend index %zu out of range", mc->backend);
		return false;
	}
	b = backend_get(bs, mc->backend);
	if (b->rv != CKR_OK) {
		snprintf(why, whylen, "%s", b->err);
		return false;
	}
	memset(&m, 0, sizeof(m));
	m.cfg = mc;
	m.be = &b->be;
	atomic_init(&m.health, P11P_UP);
	err[0] = '\0';
	probe = (struct p11p_bctx){.be = &b->be, .timeout_ms = CLI_PROBE_TIMEOUT_MS};
	rv = p11p_member_resolve(&m, &probe, err, sizeof(err));
	if (rv != CKR_OK) {
		if (err[0] == '\0')
			return probe_failed(why, whylen, "token", rv);
		snprintf(why, whylen, "%s", err);
		return false;
	}
	bc = &probe;
	rv = p11p_be_C_OpenSession(bc, m.be_slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK)
		return probe_failed(why, whylen, "C_OpenSession", rv);
	rv = p11p_be_C_GetTokenInfo(bc, m.be_slot, &ti);
	if (rv != CKR_OK) {
		probe_failed(why, whylen, "C_GetTokenInfo", rv);
		goto out;
	}
	if (ti.flags & CKF_RNG) {
		rv = p11p_be_C_GenerateRandom(bc, h, &byte, 1);
		if (rv != CKR_OK) {
			probe_failed(why, whylen, "C_GenerateRandom", rv);
			goto out;
		}
	}
	ok = true;
out:
	rv = p11p_be_C_CloseSession(bc, h);
	if (ok && rv != CKR_OK)
		ok = probe_failed(why, whylen, "C_CloseSession", rv);
	return ok;
}

size_t cli_find_slot(const struct p11p_config *cfg, const char *arg)
{
	char *end;
	unsigned long id;

	for (size_t s = 0; s < cfg->n_slots; s++) {
		if (cfg->slots[s].label != NULL && strcmp(cfg->slots[s].label, arg) == 0)
			return s;
	}
	if (arg[0] >= '0' && arg[0] <= '9') {
		id = strtoul(arg, &end, 10);
		if (*end == '\0' && id < cfg->n_slots)
			return (size_t)id;
	}
	return (size_t)-1;
}

const char *cli_slot_name(const struct p11p_config *cfg, size_t slot, char *buf, size_t len)
{
	const char *label = cfg->slots[slot].label;

	if (label != NULL && label[0] != '\0')
		return label;
	snprintf(buf, len, "#%zu", slot);
	return buf;
}

/* ---- one round of probes ------------------------------------------------------------------- */

struct hmember {
	char name[P11P_NAME_MAX + 1];
	bool healthy;
	char why[WHY_LEN];
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
};

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
		rc = p11p_order_read(cfg, s, &o, NULL, hs->order_err, sizeof(hs->order_err));
		if (rc < 0) {
			/* As the module does: the configured order, and say why. */
			r->healthy = false;
			p11p_order_from_config(cfg, s, &o);
		} else {
			hs->order_err[0] = '\0';
		}
		hs->from_file = o.from_file;
		for (size_t i = 0; i < o.n; i++) {
			const struct p11p_member_cfg *mc =
			    o.e[i].spec != NULL ? o.e[i].spec
			                        : &cfg->slots[s].members[o.e[i].config_index];
			struct hmember *hm = &hs->m[hs->n++];

			snprintf(hm->name, sizeof(hm->name), "%s", o.e[i].name);
			hm->healthy = cli_member_probe(bs, mc, hm->why, sizeof(hm->why));
			r->healthy &= hm->healthy;
		}
		p11p_order_clear(&o);
		r->n++;
	}
}

static void report_json(FILE *f, const struct hreport *r)
{
	fprintf(f, "{\"healthy\":%s,\"slots\":[", r->healthy ? "true" : "false");
	for (size_t s = 0; s < r->n; s++) {
		const struct hslot *hs = &r->s[s];
		bool healthy = hs->order_err[0] == '\0';

		for (size_t i = 0; i < hs->n; i++)
			healthy &= hs->m[i].healthy;
		fprintf(f, "%s{\"id\":%zu,\"label\":", s > 0 ? "," : "", hs->id);
		cli_json_str(f, hs->name);
		fprintf(f, ",\"healthy\":%s,\"order\":\"%s\",\"order_error\":",
		        healthy ? "true" : "false", hs->from_file ? "overlay" : "config");
		cli_json_str(f, hs->order_err[0] != '\0' ? hs->order_err : NULL);
		fputs(",\"members\":[", f);
		for (size_t i = 0; i < hs->n; i++) {
			fprintf(f, "%s{\"priority\":%zu,\"name\":", i > 0 ? "," : "", i + 1);
			cli_json_str(f, hs->m[i].name);
			fprintf(f,
			        ",\"healthy\":%s,\"reason\":", hs->m[i].healthy ? "true" : "false");
			cli_json_str(f, hs->m[i].healthy ? NULL : hs->m[i].why);
			fputc('}', f);
		}
		fputs("]}", f);
	}
	fputs("]}\n", f);
}

static void report_text(FILE *f, const struct hreport *r)
{
	size_t bad = 0, total = 0;

	for (size_t s = 0; s < r->n; s++) {
		const struct hslot *hs = &r->s[s];

		if (hs->order_err[0] != '\0')
			fprintf(f, "%s: member order file ignored: %s\n", hs->name, hs->order_err);
		for (size_t i = 0; i < hs->n; i++) {
			total++;
			if (hs->m[i].healthy) {
				fprintf(f, "%s %s: healthy\n", hs->name, hs->m[i].name);
			} else {
				bad++;
				fprintf(f, "%s %s: unhealthy: %s\n", hs->name, hs->m[i].name,
				        hs->m[i].why);
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
};

static unsigned long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000ULL +
	       (unsigned long long)ts.tv_nsec / 1000000ULL;
}

/* The 500 body: {"healthy":false,"unhealthy":[{"slot":..,"member":..,"reason":..}]} */
static char *unhealthy_body(const struct hreport *r, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	bool first = true;

	if (f == NULL)
		return NULL;
	fputs("{\"healthy\":false,\"unhealthy\":[", f);
	for (size_t s = 0; s < r->n; s++) {
		const struct hslot *hs = &r->s[s];

		if (hs->order_err[0] != '\0') {
			fputs(first ? "{\"slot\":" : ",{\"slot\":", f);
			first = false;
			cli_json_str(f, hs->name);
			fputs(",\"member\":null,\"reason\":", f);
			cli_json_str(f, hs->order_err);
			fputc('}', f);
		}
		for (size_t i = 0; i < hs->n; i++) {
			if (hs->m[i].healthy)
				continue;
			fputs(first ? "{\"slot\":" : ",{\"slot\":", f);
			first = false;
			cli_json_str(f, hs->name);
			fputs(",\"member\":", f);
			cli_json_str(f, hs->m[i].name);
			fputs(",\"reason\":", f);
			cli_json_str(f, hs->m[i].why);
			fputc('}', f);
		}
	}
	fputs("]}\n", f);
	if (fclose(f) != 0) {
		free(buf); /* open_memstream's buffer comes from malloc */
		return NULL;
	}
	return buf;
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	struct server *sv = cls;
	char not_found[] = "not found\n", not_allowed[] = "method not allowed\n";
	unsigned long long now;
	enum MHD_Result ret;

	if (strcmp(url, "/health") != 0)
		return respond(conn, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1,
		               "text/plain");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed,
		               sizeof(not_allowed) - 1, "text/plain");
	pthread_mutex_lock(&sv->lock);
	now = mono_ms();
	if (!sv->have || now - sv->probed_ms >= CACHE_MS) {
		probe_all(sv->cfg, sv->bs, sv->only, &sv->r);
		free(sv->body);
		sv->body = sv->r.healthy ? NULL : unhealthy_body(&sv->r, &sv->body_len);
		sv->have = true;
		/* From the end of the round: a slow round does not turn into back-to-back ones. */
		sv->probed_ms = mono_ms();
	}
	if (sv->r.healthy) {
		ret = respond(conn, MHD_HTTP_NO_CONTENT, NULL, 0, NULL);
	} else if (sv->body != NULL) {
		ret = respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, sv->body, sv->body_len,
		              "application/json");
	} else {
		char oom[] = "{\"healthy\":false,\"unhealthy\":[]}\n";

		ret = respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, oom, sizeof(oom) - 1,
		              "application/json");
	}
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

static int serve(const struct cli *cli, const struct p11p_config *cfg, struct cli_backends *bs,
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
	if (sv.r.s == NULL) {
		freeaddrinfo(ai);
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
	if (cli->json)
		printf("{\"listening\":\"%s\",\"port\":%u}\n", listen_arg,
		       info != NULL ? (unsigned)info->port : 0U);
	else
		printf("listening on %s (port %u): GET /health\n", listen_arg,
		       info != NULL ? (unsigned)info->port : 0U);
	fflush(stdout);
	while (sigwait(&set, &sig) != 0 || (sig != SIGINT && sig != SIGTERM))
		;
	MHD_stop_daemon(d);
out:
	pthread_mutex_destroy(&sv.lock);
	free(sv.body);
	p11p_free(sv.r.s);
	return rc;
}

/* ---- the command --------------------------------------------------------------------------- */

int cmd_health(const struct cli *cli, int argc, char **argv)
{
	struct p11p_config *cfg;
	struct cli_backends *bs = NULL;
	struct hreport r = {0};
	const char *want = NULL, *listen_arg = NULL;
	size_t only = (size_t)-1;
	char err[1024];
	int rc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0) {
			if (i + 1 >= argc)
				return cli_usage("health", "--listen needs ADDRESS:PORT");
			listen_arg = argv[++i];
		} else if (strncmp(argv[i], "--listen=", 9) == 0) {
			listen_arg = argv[i] + 9;
		} else if (argv[i][0] == '-') {
			return cli_usage("health", "unknown option '%s'", argv[i]);
		} else if (want != NULL) {
			return cli_usage("health", "give at most one SLOT");
		} else {
			want = argv[i];
		}
	}
	err[0] = '\0';
	cfg = p11p_config_load(cli->config_path, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err[0] != '\0' ? err : "cannot load the configuration");
		return CLI_FAIL;
	}
	if (want != NULL) {
		only = cli_find_slot(cfg, want);
		if (only == (size_t)-1) {
			rc = cli_usage("health", "no virtual slot '%s' in %s", want, cfg->path);
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
		report_json(stdout, &r);
	else
		report_text(stdout, &r);
	rc = r.healthy ? CLI_OK : CLI_FAIL;
out:
	p11p_free(r.s);
	cli_backends_free(bs);
	p11p_config_free(cfg);
	return rc;
}
