/*
 * Messages and debug output. The library never writes to stdout: messages go
 * to stderr (or the file named by P11PROXY_DEBUG_FILE).
 *
 * P11PROXY_DEBUG is a comma-separated list of categories ("config,call,
 * session", or "all"); unset means only warnings and errors are printed.
 * Never pass a PIN or other secret to these functions.
 */
#ifndef P11P_LOG_H
#define P11P_LOG_H

#include <stdatomic.h>

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
/* Always printed (to stderr), prefixed "p11proxy: ". */
void p11p_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

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
