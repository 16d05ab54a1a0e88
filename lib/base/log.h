/*
 * Messages and debug output. The library never writes to stdout.
 *
 * Messages (p11p_message, p11p_notice) are one line each, for the operator:
 * a member down or up, a failover, a refused key, a damaged file. They go to
 * the target the configuration chooses (`log:` in proxy.yaml, applied with
 * p11p_log_set_target): standard error (the default; or the file named by
 * P11PROXY_DEBUG_FILE), or syslog. Debug output (P11PROXY_DEBUG) always goes
 * to standard error or P11PROXY_DEBUG_FILE: it is a developer's switch, and
 * would flood a system log.
 *
 * P11PROXY_DEBUG is a comma-separated list of categories ("config,call,
 * session", or "all"); unset means only messages are printed.
 *
 * Every line is written with one write(2) or send(2) and control characters
 * in it are escaped (\n -> \x0a), so a line stays one line whatever a file or
 * a backend put in it. No lock is taken: messages are safe from any thread,
 * under any lock of the library, and in a forked child.
 *
 * Never pass a PIN or other secret to these functions.
 */
#ifndef P11P_LOG_H
#define P11P_LOG_H

#include <stdatomic.h>
#include <stdbool.h>

enum p11p_debug_cat {
	P11P_DBG_CONFIG = 1 << 0,
	P11P_DBG_BACKEND = 1 << 1,
	P11P_DBG_SESSION = 1 << 2,
	P11P_DBG_OBJECT = 1 << 3,
	P11P_DBG_CALL = 1 << 4,
	P11P_DBG_LIB = 1 << 5,
	P11P_DBG_ALL = 0x3f,
};

/* Reads P11PROXY_DEBUG; safe to call more than once. */
void p11p_log_init(void);
/* Is the category enabled? Cheap: call sites guard costly formatting. */
int p11p_debug_on(enum p11p_debug_cat cat);
/* Inline at call sites: one load and a test. */
extern atomic_int p11p_debug_mask;
#define p11p_debug_on(cat)                                                                         \
	((atomic_load_explicit(&p11p_debug_mask, memory_order_relaxed) & (int)(cat)) != 0)

void p11p_debug(enum p11p_debug_cat cat, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The category is tested before the call: a disabled one costs no argument passing. */
#define p11p_debug(cat, ...)                                                                       \
	do {                                                                                       \
		if (p11p_debug_on(cat))                                                            \
			(p11p_debug)(cat, __VA_ARGS__);                                            \
	} while (0)

/*
 * Where messages go. P11P_LOG_SYSLOG: datagrams in the RFC 3164 format
 * ("<PRI>Mmm dd hh:mm:ss p11proxy[PID]: text") to the local syslog socket,
 * P11P_SYSLOG_SOCKET, or the Unix datagram socket named by
 * $P11PROXY_SYSLOG_SOCKET (read when the target is set; tests and
 * containers). The proxy does not use syslog(3): openlog() is process-wide
 * and would change the application's own ident and facility.
 *
 * A message that cannot reach the socket (no syslog daemon: no socket, or
 * nobody listening) goes to standard error instead; one that finds the
 * socket's queue full is dropped rather than block the caller, and the next
 * message delivered says how many were.
 */
enum p11p_log_target {
	P11P_LOG_STDERR = 0,
	P11P_LOG_SYSLOG = 1,
};
#define P11P_SYSLOG_SOCKET "/dev/log"
/* The syslog facilities `log_facility` may name, as <syslog.h> numbers them. */
#define P11P_LOG_FACILITY_USER   (1 << 3)  /* LOG_USER, the default */
#define P11P_LOG_FACILITY_DAEMON (3 << 3)  /* LOG_DAEMON */
#define P11P_LOG_FACILITY_LOCAL0 (16 << 3) /* LOG_LOCAL0; LOCAL1..7 follow by 1 << 3 */

/*
 * Sets the target for every later message (the module does so when it has
 * read the configuration). facility: one of the above. Never fails: without
 * a socket, messages go to standard error.
 */
void p11p_log_set_target(enum p11p_log_target target, int facility);
enum p11p_log_target p11p_log_get_target(void);

/* A message: syslog severity warning. Printed whatever P11PROXY_DEBUG says, prefixed "p11proxy: ".
 */
void p11p_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A message that something is well again (a member is up, a catch-up done): severity notice. */
void p11p_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Messages a client can cause at any rate (a refused key, a failover per
 * session): at most P11P_RATELIMIT_BURST lines per P11P_RATELIMIT_WINDOW_MS
 * from one call site; the first line of the next window says how many were
 * suppressed. One static struct p11p_ratelimit per call site, zero-initialized.
 * Returns whether the line was written.
 */
#define P11P_RATELIMIT_BURST     10U
#define P11P_RATELIMIT_WINDOW_MS 60000ULL
struct p11p_ratelimit {
	_Atomic unsigned long long window_ms; /* start of the current window (monotonic) */
	atomic_uint in_window;                /* lines asked for in it */
	atomic_ulong suppressed;              /* lines not written since the last written one */
};
bool p11p_message_limited(struct p11p_ratelimit *rl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Precondition check: logs the failed expression and returns `rv` from the
 * calling function. Test builds (P11P_STRICT defined) abort instead, so that
 * a violated contract cannot hide behind an error code.
 */
#ifdef P11P_STRICT
#include <stdlib.h>
#define p11p_return_val_if_fail(expr, rv)                                                          \
	do {                                                                                       \
		if (!(expr)) {                                                                     \
			p11p_message("%s: precondition failed: %s", __func__, #expr);              \
			abort();                                                                   \
		}                                                                                  \
	} while (0)
#else
#define p11p_return_val_if_fail(expr, rv)                                                          \
	do {                                                                                       \
		if (!(expr)) {                                                                     \
			p11p_message("%s: precondition failed: %s", __func__, #expr);              \
			return (rv);                                                               \
		}                                                                                  \
	} while (0)
#endif

#endif
