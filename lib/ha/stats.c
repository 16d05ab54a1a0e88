/*
 * Per-process statistics files (ha/stats.h): the format, shared by the
 * module (the writer, below) and the CLI's metrics listener (the reader).
 *
 * The writer runs in the probe thread (or, when the application forbids
 * threads, in the calls that probe inline), at most once per
 * P11P_STATS_INTERVAL_MS: it copies the counts under the global lock (the
 * members' states and counts the lock guards; the backends' counters are
 * relaxed atomics, read without it), formats and compares them with what it
 * wrote last without any lock, and replaces the file only when something
 * changed. No lock is held across file I/O. A state directory that does not
 * exist means no file, silently; one this process cannot write means no
 * file and one message per process (tried again every minute).
 */
#include "ha/stats.h"
#include "base/text.h"
#include "ha/ha.h"
#include "base/file.h"
#include "base/log.h"
#include "base/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETRY_MS 60000ULL /* after a failed write, or while there is no state directory */

static const char *const state_names[P11P_STATS_STATES] = {"up", "recovering", "down"};

const char *p11p_stats_state_name(enum p11p_stats_state s)
{
	return (unsigned)s < P11P_STATS_STATES ? state_names[s] : "?";
}

/* ---- file names ------------------------------------------------------------------------- */

int p11p_stats_dir(const char *state_dir, char *buf, size_t len)
{
	int n;

	if (state_dir == NULL || state_dir[0] != '/')
		return -1;
	n = snprintf(buf, len, "%s/stats", state_dir);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

int p11p_stats_path(const char *state_dir, long pid, char *buf, size_t len)
{
	int n;

	if (state_dir == NULL || state_dir[0] != '/' || pid <= 0)
		return -1;
	n = snprintf(buf, len, "%s/stats/%ld.stats", state_dir, pid);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Decimal digits [s, s + n) as a pid (1..INT_MAX); 0 when not one. */
static long digits_pid(const char *s, size_t n)
{
	long v = 0;

	if (n == 0 || n > 10 || s[0] == '0')
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (s[i] - '0');
	}
	return v <= INT_MAX ? v : 0;
}

long p11p_stats_name_pid(const char *name, bool *tmp)
{
	size_t n = strlen(name);

	*tmp = false;
	if (n > 6 && strcmp(name + n - 6, ".stats") == 0)
		return digits_pid(name, n - 6);
	if (n > 5 && name[0] == '.' && strcmp(name + n - 4, ".tmp") == 0) {
		long pid = digits_pid(name + 1, n - 5);

		*tmp = pid != 0;
		return pid;
	}
	return 0;
}

/* ---- the text --------------------------------------------------------------------------- */

/* A name as one field: bytes outside 0x21..0x7e, and '%', as %XX ("%" alone for ""). */
static const char *field(const char *s, char *out, size_t len)
{
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && o + 4 < len; p++) {
		if (*p > 0x20 && *p < 0x7f && *p != '%')
			out[o++] = (char)*p;
		else
			o += (size_t)snprintf(out + o, len - o, "%%%02X", *p);
	}
	if (o == 0 && len > 3)
		o += (size_t)snprintf(out, len, "%%00");
	out[o] = '\0';
	return out;
}

char *p11p_stats_format(const struct p11p_stats *s, size_t *len)
{
	struct p11p_strbuf b = {0};
	char f1[3 * (P11P_NAME_MAX + 1) + 4], f2[3 * (P11P_NAME_MAX + 1) + 4];

	p11p_strbuf_printf(&b, "p11proxy-stats %d\npid %ld start %llu\n", P11P_STATS_VERSION,
	                   s->pid, s->start);
	for (size_t i = 0; i < s->n_backends; i++) {
		const struct p11p_stats_backend *e = &s->backends[i];

		p11p_strbuf_printf(
		    &b,
		    "backend %s calls %llu server_errors %llu client_errors %llu refused %llu\n",
		    field(e->name, f1, sizeof(f1)), e->calls, e->server_errors, e->client_errors,
		    e->refused);
	}
	for (size_t i = 0; i < s->n_members; i++) {
		const struct p11p_stats_member *e = &s->members[i];

		p11p_strbuf_printf(
		    &b,
		    "member %s %s state %s down %llu failovers %llu hung %llu sessions %llu calls "
		    "%llu server_errors %llu client_errors %llu refused %llu\n",
		    field(e->slot, f1, sizeof(f1)), field(e->name, f2, sizeof(f2)),
		    p11p_stats_state_name(e->state), e->down, e->failovers, e->hung, e->sessions,
		    e->calls, e->server_errors, e->client_errors, e->refused);
	}
	p11p_strbuf_printf(&b, "end\n");
	if (b.oom) {
		p11p_free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

/* ---- parsing ---------------------------------------------------------------------------- */

#define MAX_FIELDS 24

struct parse {
	const char *name;
	unsigned long line;
	char *err;
	size_t errlen;
};

static bool perr(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool perr(struct parse *p, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(p->err, p->errlen, "%s:%lu: ", p->name, p->line);

	if (n >= 0 && (size_t)n < p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return false;
}

/* A name field into out (size len): %XX decoded; no NUL byte, at most len - 1 bytes. */
static bool unfield(struct parse *p, const char *what, const char *f, char *out, size_t len)
{
	size_t o = 0;

	for (; *f != '\0'; f++) {
		int c = (unsigned char)*f;

		if (c == '%') {
			int hi = p11p_hexval(f[1]), lo = hi < 0 ? -1 : p11p_hexval(f[2]);

			if (lo < 0)
				return perr(p, "%s: a %% not followed by two hex digits", what);
			c = hi << 4 | lo;
			f += 2;
			if (c == 0) {
				if (o == 0 && f[1] == '\0')
					break; /* "%00" alone: the empty name */
				return perr(p, "%s: a NUL byte", what);
			}
		} else if (c <= 0x20 || c >= 0x7f) {
			return perr(p, "%s: byte 0x%02x not escaped", what, (unsigned)c);
		}
		if (o + 1 >= len)
			return perr(p, "%s: longer than %zu bytes", what, len - 1);
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return true;
}

static bool number(struct parse *p, const char *what, const char *f, unsigned long long *out)
{
	unsigned long long v = 0;

	if (*f == '\0' || strlen(f) > 20)
		return perr(p, "%s: not a number", what);
	for (; *f != '\0'; f++) {
		if (*f < '0' || *f > '9')
			return perr(p, "%s: not a number", what);
		if (v > (~0ULL - (unsigned long long)(*f - '0')) / 10)
			return perr(p, "%s: out of range", what);
		v = v * 10 + (unsigned long long)(*f - '0');
	}
	*out = v;
	return true;
}

/* Keyword fields: f[i] must be kw[i] for every non-NULL kw[i] (n of them). */
static bool keywords(struct parse *p, char **f, size_t nf, const char *const *kw, size_t n)
{
	if (nf != n)
		return perr(p, "'%s' line with %zu fields, not %zu", f[0], nf, n);
	for (size_t i = 0; i < n; i++)
		if (kw[i] != NULL && strcmp(f[i], kw[i]) != 0)
			return perr(p, "field %zu: '%s' where '%s' belongs", i + 1, f[i], kw[i]);
	return true;
}

static bool parse_line(struct parse *p, char **f, size_t nf, struct p11p_stats *out, int *stage)
{
	static const char *const pid_kw[] = {"pid", NULL, "start", NULL};
	static const char *const be_kw[] = {"backend",       NULL, "calls",         NULL,
	                                    "server_errors", NULL, "client_errors", NULL,
	                                    "refused",       NULL};
	static const char *const m_kw[] = {
	    "member", NULL,        NULL, "state",         NULL, "down",
	    NULL,     "failovers", NULL, "hung",          NULL, "sessions",
	    NULL,     "calls",     NULL, "server_errors", NULL, "client_errors",
	    NULL,     "refused",   NULL};
	unsigned long long v;

	if (*stage == 0) {
		if (nf != 2 || strcmp(f[0], "p11proxy-stats") != 0)
			return perr(p, "not a p11proxy statistics file");
		if (strcmp(f[1], "1") != 0)
			return perr(p, "version '%s' is not supported (version %d is)", f[1],
			            P11P_STATS_VERSION);
		*stage = 1;
		return true;
	}
	if (*stage == 3)
		return perr(p, "a line after 'end'");
	if (*stage == 1) {
		if (!keywords(p, f, nf, pid_kw, 4) || !number(p, "pid", f[1], &v))
			return false;
		if (v == 0 || v > INT_MAX)
			return perr(p, "pid: out of range");
		out->pid = (long)v;
		*stage = 2;
		return number(p, "start", f[3], &out->start);
	}
	if (strcmp(f[0], "end") == 0) {
		if (nf != 1)
			return perr(p, "'end' line with %zu fields, not 1", nf);
		*stage = 3;
		return true;
	}
	if (strcmp(f[0], "backend") == 0) {
		struct p11p_stats_backend *b;

		if (out->n_backends == P11P_MAX_BACKENDS)
			return perr(p, "more than %d backends", P11P_MAX_BACKENDS);
		b = &out->backends[out->n_backends];
		if (!keywords(p, f, nf, be_kw, 10) ||
		    !unfield(p, "backend name", f[1], b->name, sizeof(b->name)) ||
		    !number(p, "calls", f[3], &b->calls) ||
		    !number(p, "server_errors", f[5], &b->server_errors) ||
		    !number(p, "client_errors", f[7], &b->client_errors) ||
		    !number(p, "refused", f[9], &b->refused))
			return false;
		out->n_backends++;
		return true;
	}
	if (strcmp(f[0], "member") == 0) {
		struct p11p_stats_member *m;
		size_t s;

		if (out->n_members == P11P_STATS_MAX_MEMBERS)
			return perr(p, "more than %d members", P11P_STATS_MAX_MEMBERS);
		m = &out->members[out->n_members];
		if (!keywords(p, f, nf, m_kw, 21) ||
		    !unfield(p, "slot", f[1], m->slot, sizeof(m->slot)) ||
		    !unfield(p, "member name", f[2], m->name, sizeof(m->name)))
			return false;
		for (s = 0; s < P11P_STATS_STATES; s++)
			if (strcmp(f[4], state_names[s]) == 0)
				break;
		if (s == P11P_STATS_STATES)
			return perr(p, "state: '%s' is not up, recovering or down", f[4]);
		m->state = (enum p11p_stats_state)s;
		if (!number(p, "down", f[6], &m->down) ||
		    !number(p, "failovers", f[8], &m->failovers) ||
		    !number(p, "hung", f[10], &m->hung) ||
		    !number(p, "sessions", f[12], &m->sessions) ||
		    !number(p, "calls", f[14], &m->calls) ||
		    !number(p, "server_errors", f[16], &m->server_errors) ||
		    !number(p, "client_errors", f[18], &m->client_errors) ||
		    !number(p, "refused", f[20], &m->refused))
			return false;
		out->n_members++;
		return true;
	}
	return perr(p, "unknown line '%s'", f[0]);
}

bool p11p_stats_parse(const char *name, const char *data, size_t len, struct p11p_stats *out,
                      char *err, size_t errlen)
{
	struct parse p = {.name = name, .err = err, .errlen = errlen};
	char line[P11P_STATS_LINE_MAX + 1];
	int stage = 0;
	size_t pos = 0;

	memset(out, 0, sizeof(*out));
	if (errlen > 0)
		err[0] = '\0';
	if (len > P11P_STATS_MAX_BYTES)
		return perr(&p, "larger than %d bytes", P11P_STATS_MAX_BYTES);
	while (pos < len) {
		const char *nl = memchr(data + pos, '\n', len - pos);
		size_t n = nl != NULL ? (size_t)(nl - (data + pos)) : len - pos;
		char *f[MAX_FIELDS], *save = NULL, *tok;
		size_t nf = 0;

		p.line++;
		if (nl == NULL)
			return perr(&p, "the last line has no newline (a file cut short)");
		if (n + 1 > P11P_STATS_LINE_MAX)
			return perr(&p, "line longer than %d bytes", P11P_STATS_LINE_MAX);
		if (memchr(data + pos, '\0', n) != NULL)
			return perr(&p, "a NUL byte");
		memcpy(line, data + pos, n);
		line[n] = '\0';
		pos += n + 1;
		if (n == 0 || line[0] == ' ' || line[n - 1] == ' ' || strstr(line, "  ") != NULL)
			return perr(&p, "fields are separated by one space");
		for (tok = strtok_r(line, " ", &save); tok != NULL;
		     tok = strtok_r(NULL, " ", &save)) {
			if (nf == MAX_FIELDS)
				return perr(&p, "more than %d fields", MAX_FIELDS);
			f[nf++] = tok;
		}
		if (!parse_line(&p, f, nf, out, &stage))
			return false;
	}
	if (stage != 3) {
		p.line++;
		return perr(&p, "no 'end' line (a file cut short)");
	}
	return true;
}

/* ---- processes -------------------------------------------------------------------------- */

unsigned long long p11p_stats_proc_start(long pid)
{
	char path[64], buf[2048], *p, *save = NULL;
	unsigned long long v = 0;
	ssize_t n;
	int fd, field = 2;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return 0;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* "PID (COMM) STATE ...": COMM may hold spaces and parentheses; field 3 follows the last
	 * ')'. */
	p = strrchr(buf, ')');
	if (p == NULL)
		return 0;
	for (char *tok = strtok_r(p + 1, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save))
		if (++field == 22) {
			char *end;

			errno = 0;
			v = strtoull(tok, &end, 10);
			return errno == 0 && end != tok && *end == '\0' ? v : 0;
		}
	return 0;
}

bool p11p_stats_alive(long pid, unsigned long long start)
{
	unsigned long long now;

	if (pid <= 0 || pid > INT_MAX)
		return false;
	if (kill((pid_t)pid, 0) != 0 && errno != EPERM)
		return false;
	/* Another process since given the same pid: its start time differs. */
	now = start != 0 ? p11p_stats_proc_start(pid) : 0;
	return now == 0 || now == start;
}

/* ---- the writer (the module) ------------------------------------------------------------ */

/*
 * One writer per process. pid says which process the rest belongs to: a
 * forked child starts afresh at its own C_Initialize, freeing what the
 * parent's writer held, also when the parent was writing at the fork (busy
 * set): p11p_stats_poll keeps every buffer it holds reachable from here.
 */
static struct {
	atomic_flag busy; /* a thread is writing (probe thread, or inline probes) */
	pid_t pid;        /* the process it was started in; 0: not started */
	_Atomic unsigned long long next_ms;
	struct p11p_stats *snap; /* the counts copied (big: kept) */
	char *last;              /* the text written last */
	char *pending; /* the text being written (the writer's, so that a fork loses none) */
	size_t last_len;
	bool wrote;       /* the file exists (ours) */
	pid_t logged_pid; /* the process that said it cannot write (once per process) */
	char state_dir[PATH_MAX], dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX];
} w = {.busy = ATOMIC_FLAG_INIT};

void p11p_stats_start(struct p11p_state *st)
{
	pid_t pid = getpid();
	int n;

	/*
	 * After C_Finalize in this process, stop freed everything; in a forked
	 * child, the parent's buffers are freed here (only this thread runs).
	 */
	if (!atomic_flag_test_and_set(&w.busy)) {
		p11p_free(w.last);
		p11p_free(w.snap);
	} else {
		/*
		 * A child forked while the parent was writing (p11p_stats_poll):
		 * every pointer the writer holds is to a live block at every step of
		 * it (never to one freed), so all go; the text being written too.
		 */
		p11p_free(w.snap);
		if (w.pending != w.last)
			p11p_free(w.pending);
		p11p_free(w.last);
	}
	w.pending = NULL;
	w.pid = 0;
	w.snap = NULL;
	w.last = NULL;
	w.last_len = 0;
	w.wrote = false;
	atomic_flag_clear(&w.busy);
	if (p11p_sthead(st)->cfg->state_dir == NULL ||
	    snprintf(w.state_dir, sizeof(w.state_dir), "%s", p11p_sthead(st)->cfg->state_dir) >=
	        (int)sizeof(w.state_dir) ||
	    p11p_stats_dir(w.state_dir, w.dir, sizeof(w.dir)) != 0 ||
	    p11p_stats_path(w.state_dir, pid, w.path, sizeof(w.path)) != 0)
		return;
	n = snprintf(w.tmp, sizeof(w.tmp), "%s/.%ld.tmp", w.dir, (long)pid);
	if (n < 0 || (size_t)n >= sizeof(w.tmp))
		return;
	w.snap = p11p_calloc(1, sizeof(*w.snap));
	if (w.snap == NULL)
		return;
	w.snap->pid = pid;
	w.snap->start = p11p_stats_proc_start(pid);
	atomic_store(&w.next_ms, 0);
	w.pid = pid;
}

/* The counts, copied under the global lock (the backends' without it). */
static void snapshot(struct p11p_state *st, struct p11p_stats *s)
{
	struct p11p_backend *be;

	s->n_backends = 0;
	for (size_t i = 0; i < P11P_MAX_BACKENDS && (be = p11p_state_backend(st, i)) != NULL; i++) {
		struct p11p_stats_backend *b = &s->backends[s->n_backends++];

		snprintf(b->name, sizeof(b->name), "%s", be->cfg != NULL ? be->cfg->name : "?");
		b->calls = atomic_load_explicit(&be->n_calls, memory_order_relaxed);
		b->server_errors = atomic_load_explicit(&be->n_server_errors, memory_order_relaxed);
		b->client_errors = atomic_load_explicit(&be->n_client_errors, memory_order_relaxed);
		b->refused = atomic_load_explicit(&be->n_refused, memory_order_relaxed);
	}
	s->n_members = 0;
	p11p_lock();
	for (size_t i = 0; i < p11p_sthead(st)->n_slots; i++) {
		struct p11p_vslot *vs = p11p_state_slot(st, i);

		for (size_t j = 0;
		     j < p11p_vhead(vs)->n_members && s->n_members < P11P_STATS_MAX_MEMBERS; j++) {
			struct p11p_member *m = &p11p_vhead(vs)->members[j];
			struct p11p_stats_member *e = &s->members[s->n_members++];
			int h = atomic_load(&m->health);

			if (p11p_vhead(vs)->cfg->label != NULL &&
			    p11p_vhead(vs)->cfg->label[0] != '\0')
				snprintf(e->slot, sizeof(e->slot), "%s",
				         p11p_vhead(vs)->cfg->label);
			else
				snprintf(e->slot, sizeof(e->slot), "#%zu", i);
			snprintf(e->name, sizeof(e->name), "%s", m->cfg->name);
			e->state = h == P11P_UP           ? P11P_STATS_UP
			           : h == P11P_RECOVERING ? P11P_STATS_RECOVERING
			                                  : P11P_STATS_DOWN;
			e->down = m->failures;
			e->failovers = atomic_load_explicit(&m->n_failovers, memory_order_relaxed);
			e->hung = m->hung_calls;
			e->sessions = m->n_sessions;
			e->calls = atomic_load_explicit(&m->n_calls, memory_order_relaxed);
			e->server_errors =
			    atomic_load_explicit(&m->n_server_errors, memory_order_relaxed);
			e->client_errors =
			    atomic_load_explicit(&m->n_client_errors, memory_order_relaxed);
			e->refused = atomic_load_explicit(&m->n_refused, memory_order_relaxed);
		}
	}
	p11p_unlock();
}

/* Replaces the file with text: 0, or -1 with errno set (ENOENT: no state directory). */
static int write_file(const char *text, size_t len)
{
	struct stat sb;
	int fd, e;

	/* The state directory is the operator's to make (the CLI does): never made here. */
	if (stat(w.state_dir, &sb) != 0)
		return -1;
	if (mkdir(w.dir, 0700) != 0 && errno != EEXIST)
		return -1;
	fd = open(w.tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0)
		return -1;
	if (p11p_file_write_all(fd, text, len) != 0) {
		e = errno;
		close(fd);
		unlink(w.tmp);
		errno = e;
		return -1;
	}
	if (close(fd) != 0 || rename(w.tmp, w.path) != 0) {
		e = errno;
		unlink(w.tmp);
		errno = e;
		return -1;
	}
	return 0;
}

unsigned long long p11p_stats_poll(struct p11p_state *st)
{
	unsigned long long now = p11p_now_ms(), next = atomic_load(&w.next_ms);
	char *text;
	size_t len;

	if (now < next)
		return next;
	if (atomic_flag_test_and_set(&w.busy))
		return now + P11P_STATS_INTERVAL_MS; /* another thread writes it now */
	if (w.pid == 0 || w.pid != getpid()) {
		atomic_store(&w.next_ms, ~0ULL); /* not started in this process: never */
		atomic_flag_clear(&w.busy);
		return ~0ULL;
	}
	next = now + P11P_STATS_INTERVAL_MS;
	snapshot(st, w.snap);
	text = p11p_stats_format(w.snap, &len);
	/*
	 * A child forked at any point of this frees what w points to
	 * (p11p_stats_start): the stores are kept in this order (the compiler
	 * fences), so that w never points to a freed block.
	 */
	w.pending = text;
	atomic_signal_fence(memory_order_seq_cst);
	if (text != NULL &&
	    (w.last == NULL || len != w.last_len || memcmp(text, w.last, len) != 0)) {
		if (write_file(text, len) == 0) {
			char *old = w.last;

			w.last = text;
			w.last_len = len;
			w.wrote = true;
			w.pending = NULL;
			text = NULL;
			atomic_signal_fence(memory_order_seq_cst);
			p11p_free(old);
		} else {
			if (errno != ENOENT && w.logged_pid != w.pid) {
				w.logged_pid = w.pid;
				p11p_notice(
				    "no statistics for the metrics listener from this process "
				    "(pid %ld): cannot write %s: %s",
				    (long)w.pid, w.path, strerror(errno));
			}
			next = now + RETRY_MS;
		}
	}
	w.pending = NULL;
	atomic_signal_fence(memory_order_seq_cst);
	p11p_free(text);
	atomic_store(&w.next_ms, next);
	atomic_flag_clear(&w.busy);
	return next;
}

void p11p_stats_stop(struct p11p_state *st)
{
	(void)st;
	if (w.pid == 0 || w.pid != getpid())
		return;
	if (w.wrote)
		unlink(w.path);
	unlink(w.tmp);
	p11p_free(w.last);
	p11p_free(w.snap);
	w.last = NULL;
	w.snap = NULL;
	w.pid = 0;
}
