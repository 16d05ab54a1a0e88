/*
 * Messages and debug output (base/log.h).
 *
 * No lock: a line is formatted on the stack and written with one write(2)
 * (standard error, or P11PROXY_DEBUG_FILE opened with O_APPEND) or one
 * send(2) (a syslog datagram). The syslog socket is a `sink` published
 * through an atomic pointer and never freed once published, so a thread
 * sending on it can never meet a closed or reused descriptor; reconnecting
 * (syslog daemon restarted) is connect(2) again on the same descriptor,
 * which a datagram socket allows. Hence messages are safe under every lock of
 * the library (they are a leaf of the lock order by taking none) and in a
 * child forked while another thread was logging.
 */
#include "base/log.h"
#include "base/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* syslog(3) severities (RFC 5424 section 6.2.1), without <syslog.h>'s macros. */
#define SEV_WARNING 4
#define SEV_NOTICE  5
#define SEV_DEBUG   7

#define TEXT_MAX     1024 /* a message's text before escaping; longer ones end in "..." */
#define MSG_LINE_MAX (4 * TEXT_MAX + 128)

atomic_int p11p_debug_mask;
static atomic_int g_target = P11P_LOG_STDERR;
static atomic_int g_facility = P11P_LOG_FACILITY_USER;

struct sink {
	int fd; /* AF_UNIX, SOCK_DGRAM, connected to sa (or to be, at the next send) */
	struct sockaddr_un sa;
	socklen_t sa_len;
	atomic_bool fallback_said; /* "messages go to standard error" was written */
	struct sink *prev;         /* the sink this one replaced (kept: never freed) */
};
static _Atomic(struct sink *) g_sink;
static atomic_ulong g_dropped; /* datagrams dropped on a full socket, not reported yet */

static const struct {
	const char *name;
	int bit;
} categories[] = {
    {"config", P11P_DBG_CONFIG}, {"backend", P11P_DBG_BACKEND}, {"session", P11P_DBG_SESSION},
    {"object", P11P_DBG_OBJECT}, {"call", P11P_DBG_CALL},       {"lib", P11P_DBG_LIB},
    {"all", P11P_DBG_ALL},
};

void p11p_log_init(void)
{
	const char *env = getenv("P11PROXY_DEBUG");
	int mask = 0;

	while (env != NULL && *env != '\0') {
		size_t len = strcspn(env, ", ");

		for (size_t i = 0; i < sizeof(categories) / sizeof(categories[0]); i++) {
			if (strlen(categories[i].name) == len &&
			    strncmp(env, categories[i].name, len) == 0)
				mask |= categories[i].bit;
		}
		/* "1" or "yes" switch everything on, as users try that first. */
		if ((len == 1 && env[0] == '1') || (len == 3 && strncmp(env, "yes", 3) == 0))
			mask = P11P_DBG_ALL;
		env += len;
		env += strspn(env, ", ");
	}
	atomic_store(&p11p_debug_mask, mask);
}

int(p11p_debug_on)(enum p11p_debug_cat cat)
{
	return p11p_debug_on(cat);
}

/* Control characters (and DEL) as \xNN: a message is one line whatever it quotes. */
static size_t escape(char *out, size_t cap, const char *in)
{
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p != '\0' && o + 5 < cap; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			snprintf(out + o, cap - o, "\\x%02x", *p);
			o += 4;
		} else {
			out[o++] = (char)*p;
		}
	}
	out[o] = '\0';
	return o;
}

static void format_text(char *out, size_t cap, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* The message's text, escaped; "..." ends one that did not fit. */
static void format_text(char *out, size_t cap, const char *fmt, va_list ap)
{
	char raw[TEXT_MAX];
	int n = vsnprintf(raw, sizeof(raw), fmt, ap);

	if (n < 0)
		snprintf(raw, sizeof(raw), "(message could not be formatted)");
	else if ((size_t)n >= sizeof(raw))
		memcpy(raw + sizeof(raw) - 4, "...", 4);
	escape(out, cap, raw);
}

/* One write(2) of the whole line, retried on EINTR. */
static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		buf += w;
		len -= (size_t)w;
	}
}

/* "p11proxy: PREFIXTEXT\n" to standard error, or appended to $P11PROXY_DEBUG_FILE. */
static void to_stderr(const char *prefix, const char *text)
{
	char line[MSG_LINE_MAX];
	const char *path = getenv("P11PROXY_DEBUG_FILE");
	int fd = STDERR_FILENO, own = -1;
	int n = snprintf(line, sizeof(line), "p11proxy: %s%s\n", prefix, text);

	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (path != NULL && *path != '\0') {
		own = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (own >= 0)
			fd = own;
	}
	write_all(fd, line, (size_t)n);
	if (own >= 0)
		close(own);
}

static struct sink *sink_new(const char *path)
{
	struct sink *s;

	if (strlen(path) >= sizeof(s->sa.sun_path))
		return NULL;
	/* libc's calloc, not p11p_calloc: logging must not use up a test's failure countdown. */
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		free(s);
		return NULL;
	}
	s->sa.sun_family = AF_UNIX;
	memcpy(s->sa.sun_path, path, strlen(path) + 1);
	s->sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
	atomic_init(&s->fallback_said, false);
	/* May fail (no daemon yet): the first send connects again. */
	(void)connect(s->fd, (struct sockaddr *)&s->sa, s->sa_len);
	return s;
}

void p11p_log_set_target(enum p11p_log_target target, int facility)
{
	if (target == P11P_LOG_SYSLOG) {
		const char *path = getenv("P11PROXY_SYSLOG_SOCKET");
		struct sink *cur = atomic_load(&g_sink);

		if (path == NULL || *path == '\0')
			path = P11P_SYSLOG_SOCKET;
		/*
		 * A sink is never freed (see the top of the file): a new one is made
		 * only when the socket path changed since the last C_Initialize,
		 * and the old one (a descriptor) stays, linked from the new one.
		 */
		if (cur == NULL || strcmp(cur->sa.sun_path, path) != 0) {
			struct sink *s = sink_new(path);

			if (s != NULL) {
				s->prev = cur;
				atomic_store(&g_sink, s);
			}
		}
		atomic_store(&g_facility, facility & ~7);
	}
	atomic_store(&g_target, target);
}

enum p11p_log_target p11p_log_get_target(void)
{
	return (enum p11p_log_target)atomic_load(&g_target);
}

/*
 * One RFC 3164 datagram, "<PRI>Mmm dd hh:mm:ss p11proxy[PID]: TEXT", as
 * glibc's syslog(3) sends it to /dev/log (the local daemon adds the host).
 * false: the socket cannot be reached (the caller writes to stderr).
 */
static bool to_syslog(int severity, const char *text)
{
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct sink *s = atomic_load(&g_sink);
	char line[MSG_LINE_MAX + 96];
	unsigned long dropped;
	struct tm tm;
	time_t now;
	int n, err;

	if (s == NULL)
		return false;
	now = time(NULL);
	if (localtime_r(&now, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	dropped = atomic_exchange(&g_dropped, 0);
	n = snprintf(line, sizeof(line), "<%d>%s %2d %02d:%02d:%02d p11proxy[%ld]: %s",
	             atomic_load(&g_facility) | severity, months[tm.tm_mon % 12], tm.tm_mday,
	             tm.tm_hour, tm.tm_min, tm.tm_sec, (long)getpid(), text);
	if (n < 0)
		return false;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	if (dropped > 0 && (size_t)n + 64 < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n,
		              " (%lu earlier message%s dropped: syslog socket full)", dropped,
		              dropped == 1 ? "" : "s");
	for (int attempt = 0; attempt < 3; attempt++) {
		if (send(s->fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
			if (atomic_load(&s->fallback_said)) /* back: say so again if it goes */
				atomic_store(&s->fallback_said, false);
			return true;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
			/* Never block a PKCS#11 call on a busy log daemon. */
			atomic_fetch_add(&g_dropped, dropped + 1);
			return true;
		}
		/* Not connected yet, or the daemon made a new socket: connect again, once. */
		if (attempt > 0 || connect(s->fd, (struct sockaddr *)&s->sa, s->sa_len) != 0)
			break;
	}
	err = errno;
	atomic_fetch_add(&g_dropped, dropped);
	if (!atomic_exchange(&s->fallback_said, true)) {
		char why[256], esc[4 * sizeof(why)];

		snprintf(why, sizeof(why), "syslog socket %s: %s; messages go to standard error",
		         s->sa.sun_path, strerror(err));
		escape(esc, sizeof(esc), why);
		to_stderr("", esc);
	}
	return false;
}

static void emit(int severity, const char *text)
{
	if (atomic_load(&g_target) == P11P_LOG_SYSLOG && to_syslog(severity, text))
		return;
	to_stderr("", text);
}

void(p11p_debug)(enum p11p_debug_cat cat, const char *fmt, ...)
{
	char text[MSG_LINE_MAX];
	va_list ap;

	if (!p11p_debug_on(cat))
		return;
	va_start(ap, fmt);
	format_text(text, sizeof(text), fmt, ap);
	va_end(ap);
	to_stderr("debug: ", text);
}

void p11p_message(const char *fmt, ...)
{
	char text[MSG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	format_text(text, sizeof(text), fmt, ap);
	va_end(ap);
	emit(SEV_WARNING, text);
}

void p11p_notice(const char *fmt, ...)
{
	char text[MSG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	format_text(text, sizeof(text), fmt, ap);
	va_end(ap);
	emit(SEV_NOTICE, text);
}

bool p11p_message_limited(struct p11p_ratelimit *rl, const char *fmt, ...)
{
	char text[MSG_LINE_MAX];
	unsigned long long now = p11p_now_ms(), start = atomic_load(&rl->window_ms);
	unsigned long suppressed;
	va_list ap;

	/* A new window: whoever swaps the start resets the count (races only blur the edge). */
	if (start == 0 || now - start >= P11P_RATELIMIT_WINDOW_MS) {
		if (atomic_compare_exchange_strong(&rl->window_ms, &start, now != 0 ? now : 1))
			atomic_store(&rl->in_window, 0);
	}
	if (atomic_fetch_add(&rl->in_window, 1) >= P11P_RATELIMIT_BURST) {
		atomic_fetch_add(&rl->suppressed, 1);
		return false;
	}
	suppressed = atomic_exchange(&rl->suppressed, 0);
	va_start(ap, fmt);
	format_text(text, sizeof(text) - 64, fmt, ap);
	va_end(ap);
	if (suppressed > 0)
		snprintf(text + strlen(text), 64, " (%lu similar message%s suppressed)", suppressed,
		         suppressed == 1 ? "" : "s");
	emit(SEV_WARNING, text);
	return true;
}
