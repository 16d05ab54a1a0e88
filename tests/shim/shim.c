/*
 * libshim.so: a fault-injecting PKCS#11 2.40 module, for tests only.
 *
 * It wraps a real module and forwards all 68 functions to it, except that
 * calls concerning one token can be made to fail, hang, slow down or look
 * removed, on command, while the other tokens of the same module keep
 * working. HA tests load one SoftHSM2 with tokens m1, m2, ... through it and
 * kill "members" one at a time.
 *
 * Environment
 *   P11SHIM_MODULE   the real module (default /usr/lib/softhsm/libsofthsm2.so),
 *                    loaded at the first C_GetFunctionList / C_Initialize.
 *   P11SHIM_CONTROL  path of the control file (below). Unset: plain pass-through.
 *   P11SHIM_LOG      path of the call log (below). Unset: no log, no cost.
 *   Both paths are read again at every C_Initialize.
 *
 * Which token a call concerns
 *   slot calls (C_GetSlotInfo, C_GetTokenInfo, C_GetMechanismList/Info,
 *   C_InitToken, C_OpenSession, C_CloseAllSessions): the token in that slot;
 *   session calls: the token the session was opened on (recorded at
 *   C_OpenSession, forgotten at C_CloseSession / C_CloseAllSessions, kept
 *   after a `drop` so that the dead handles still count as the token's);
 *   C_GetSlotList, C_WaitForSlotEvent and unknown session handles: none.
 *   A token is named by its label with trailing blanks removed and any other
 *   blank (or control character) written as '_'.
 *
 * Control file: one rule a line, `LABEL ACTION [ARGS] [OPTIONS]`. LABEL is a
 * token label, or `*` for every call (including calls that concern no token).
 * `#` starts a comment. A line that does not parse is ignored with a message
 * on stderr. At most 64 rules; lines of at most 255 bytes; file of 64 KiB.
 *
 *   LABEL fail CKR_X [OPTIONS]        calls return CKR_X without reaching the
 *                                     real module. CKR_X: any CKR_* name of
 *                                     PKCS#11 2.40, or 0x hex (not CKR_OK).
 *   LABEL fail-fn C_Func CKR_X [OPTIONS]
 *                                     the same, only for calls of C_Func
 *                                     (shorthand for `fail CKR_X fn C_Func`).
 *   LABEL hang SECONDS [OPTIONS]      the call sleeps SECONDS, then returns
 *                                     CKR_DEVICE_ERROR. The file is checked every
 *                                     50 ms: once no hang rule matches the call
 *                                     any more (`ok`, emptied, removed), or at
 *                                     C_Finalize, the call returns early (still
 *                                     CKR_DEVICE_ERROR).
 *   LABEL slow MS [OPTIONS]           the call sleeps MS milliseconds, then goes
 *                                     on (to the real module, or to a later
 *                                     fail/hang rule).
 *   LABEL absent                      the token looks removed: C_GetSlotList
 *                                     (CK_TRUE) omits its slot, C_GetSlotInfo
 *                                     clears CKF_TOKEN_PRESENT, other slot calls
 *                                     return CKR_TOKEN_NOT_PRESENT, session calls
 *                                     CKR_DEVICE_REMOVED.
 *   LABEL drop                        once, when the file is (re)loaded: every
 *                                     session of the token is closed in the real
 *                                     module (C_CloseAllSessions of its slot), so
 *                                     the application's handles then get the real
 *                                     CKR_SESSION_HANDLE_INVALID. New sessions work.
 *                                     It waits for the calls in flight in the real
 *                                     module to return, and holds new ones back
 *                                     meanwhile (SoftHSM2 crashes when a session is
 *                                     closed under a call that uses it): as an HSM
 *                                     that restarts between two calls.
 *   LABEL rehandle                    once, when the file is (re)loaded: every
 *                                     object handle the shim has handed out for the
 *                                     token becomes invalid, as when an HSM restarts
 *                                     and its objects get new handles. The objects
 *                                     themselves stay; finds, creations and key
 *                                     generations hand out new values for them. An
 *                                     old value then gets, without reaching the real
 *                                     module, CKR_KEY_HANDLE_INVALID as the key of
 *                                     C_*Init, C_DigestKey, C_DeriveKey and the key
 *                                     wrapped by C_WrapKey,
 *                                     CKR_WRAPPING_KEY_HANDLE_INVALID /
 *                                     CKR_UNWRAPPING_KEY_HANDLE_INVALID as the
 *                                     (un)wrapping key, CKR_OBJECT_HANDLE_INVALID
 *                                     elsewhere (C_GetAttributeValue, C_CopyObject,
 *                                     ..., C_SetOperationState's keys).
 *                                     `* rehandle` does it for every token.
 *                                     See "Object handles" below.
 *   LABEL rand const BYTE             C_GenerateRandom of the token answers CKR_OK
 *                                     with every byte BYTE (0..255): a stuck RNG.
 *   LABEL rand cycle N                ... with bytes 0, 1, ..., N-1 repeated
 *                                     (N 1..256): a repeating RNG.
 *   LABEL rand replay SEED            ... with the same pseudo-random stream
 *                                     (xorshift from SEED) at every call: looks
 *                                     random, passes the health tests, but is
 *                                     constant between calls and processes.
 *                                     (fail rules for C_GenerateRandom still win.)
 *   LABEL ok                          nothing (documentation). An empty or
 *                                     missing file means all tokens are healthy.
 *
 *   OPTIONS (fail, fail-fn, hang, slow), in any order:
 *     after N     the first N matching calls are let through untouched;
 *     count M     then the rule acts on M calls, and never again (default: forever);
 *     fn C_Func   the rule matches only calls of C_Func.
 *
 * Evaluation of a call: C_Initialize, C_Finalize, C_GetInfo and
 * C_GetFunctionList are never touched. Otherwise `absent` is checked first;
 * then the fail/hang/slow rules that match the call, in file order: each
 * counts the call (for after/count), a slow rule in its window adds its
 * delay and evaluation goes on, the first fail or hang rule in its window
 * decides the result and ends evaluation (later rules do not count the call).
 *
 * Reloading: the file is stat()ed at every call and reloaded when its inode,
 * size, mtime or ctime changed; while its mtime is less than 2 s old it is
 * also read and reloaded when its content changed (writes within one clock
 * tick). Reloading resets every rule's counters and carries out `drop` rules
 * again. Write the file in one go (or to a temp file and rename it): a
 * half-written file is loaded as it is.
 *
 * Object handles: the shim translates them once a `rehandle` rule has been
 * loaded for a token, and never before (handles are then the real module's,
 * unchanged). Each token has a generation G, 0 at C_Initialize, incremented by
 * every load of a `rehandle` rule naming it (or `*`). With G > 0 the
 * application sees a real handle H as H | G << 32 (the high half of a 64-bit
 * CK_ULONG; 16 bits on 32-bit longs), and a value whose high half is not the
 * token's current G is stale. The real module must use handles that fit in the
 * low half (SoftHSM2 does: a counter). Handles inside mechanism parameters or
 * attribute values are not translated. Calls on sessions the shim does not
 * know (opened before C_Initialize, say) are never translated.
 *
 * Call log: one line per call, `C_Func LABEL CKR_NAME` (LABEL "-" when the
 * call concerns no token; the result in hex 0x... when it has no name),
 * appended with O_APPEND and one write() per line, so several processes and
 * threads can share the file.
 *
 * The shim's own calls into the real module (C_GetTokenInfo to learn a slot's
 * label, cached per slot until C_InitToken / C_Initialize / C_Finalize;
 * C_GetSlotList and C_CloseAllSessions for `drop`) obey no rule and are not
 * logged.
 *
 * Use from a test suite (tests/lib.sh), e.g. an HA pair over tokens m1, m2:
 *   export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$TMP/shim.ctl \
 *          P11SHIM_LOG=$TMP/shim.log
 *   SOFTHSM_MODULE=$BUILD/tests/libshim.so proxy_conf "$TMP/proxy.yaml" ...
 *   echo 'm1 fail CKR_DEVICE_ERROR' >"$TMP/shim.ctl"     # kill member m1
 *   ...
 *   grep -c '^C_Sign m2 CKR_OK$' "$TMP/shim.log"         # m2 took over
 *
 * Limitations: an injected failure does not end an operation that is active
 * in the real module (after `fail-fn C_Sign ...`, the real C_SignInit stays
 * active until the session's next real C_Sign). Labels with blanks are named
 * with '_' in place of each blank.
 *
 * Locking: one mutex guards the rules, the slot-label cache, the session table
 * and the control-file state; it is never held across a call into the real
 * module or a sleep. It is taken around fork() (pthread_atfork), so a child
 * gets it unlocked; a child simply calls C_Initialize again, which is forwarded.
 * A forwarded call holds a read-write lock shared while it is in the real
 * module (not while a rule delays it); `drop` takes it exclusive (writers
 * first). A child re-initializes it.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/names.h"
#include "base/p11fns.h"
#include "base/pkcs11.h"

#define SHIM_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define SHIM_MAX_RULES      64
#define SHIM_MAX_LINE       256 /* including the newline */
#define SHIM_MAX_FILE       (64 * 1024)
#define SHIM_MAX_WORDS      12
#define SHIM_LABEL_MAX      32
#define SHIM_SLOT_CACHE     64
#define SHIM_SESS_BUCKETS   256
#define SHIM_MAX_SLOTS      256 /* slots looked at by `drop` and the absent filter */
#define SHIM_HANG_STEP_MS   50
#define SHIM_RACY_SECONDS   2
#define SHIM_MAX_GENS       64 /* tokens with a handle generation (`rehandle`) */
/* Object handles seen by the application: the real one | generation << SHIM_GEN_SHIFT. */
#define SHIM_GEN_SHIFT (sizeof(CK_ULONG) * CHAR_BIT / 2)
#define SHIM_LOW_MASK  ((CK_ULONG)-1 >> SHIM_GEN_SHIFT)

/* ---- The function table ---- */

/* clang-format off */
enum shim_fn {
#define SHIM_FN_ENUM(kind, name, ...) FN_##name,
	P11P_FUNCTIONS(SHIM_FN_ENUM)
#undef SHIM_FN_ENUM
	FN_COUNT
};
/* clang-format on */

static const char *const fn_names[FN_COUNT] = {
#define SHIM_FN_NAME(kind, name, ...) #name,
    P11P_FUNCTIONS(SHIM_FN_NAME)
#undef SHIM_FN_NAME
};

/* ---- State (all under `lock`) ---- */

enum action { A_FAIL, A_HANG, A_SLOW, A_ABSENT, A_DROP, A_RAND, A_REHANDLE };
enum rand_mode { R_CONST, R_CYCLE, R_REPLAY };

struct rule {
	char label[SHIM_LABEL_MAX + 1]; /* "*": every call */
	enum action action;
	int fn;              /* FN_*, or -1 for every function */
	CK_RV rv;            /* A_FAIL */
	unsigned long arg;   /* A_HANG seconds, A_SLOW milliseconds, A_RAND byte/period/seed */
	enum rand_mode rand; /* A_RAND */
	unsigned long after; /* matching calls let through first */
	unsigned long count; /* calls acted on after those, when `counted` */
	int counted;
	unsigned long hits; /* matching calls seen since the last load */
};

struct ctl_key {
	int exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim, ctim;
};

struct slot_ent {
	int used;
	CK_SLOT_ID slot;
	char label[SHIM_LABEL_MAX + 1];
};

struct gen_ent {
	char label[SHIM_LABEL_MAX + 1];
	CK_ULONG gen;
};

struct sess_ent {
	CK_SESSION_HANDLE handle;
	CK_SLOT_ID slot;
	struct sess_ent *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static CK_FUNCTION_LIST *real; /* set once, before our list is handed out */
static int atfork_done;
static pthread_rwlock_t calls_rw; /* shared: a call in the real module; exclusive: `drop` */
static int calls_rw_ready;

static char ctl_path[PATH_MAX];
static int ctl_loaded;
static struct ctl_key ctl_key;
static uint64_t ctl_hash;
static char ctl_buf[SHIM_MAX_FILE + 1];

static struct rule rules[SHIM_MAX_RULES];
static size_t nrules;
static unsigned nabsent;
static unsigned long rules_gen; /* bumped at every load */
static unsigned long fin_gen;   /* bumped at every C_Finalize: ends hangs */

static char log_path[PATH_MAX];
static int log_fd = -1;

static struct slot_ent slot_cache[SHIM_SLOT_CACHE];
static size_t slot_next;
static struct sess_ent *sessions[SHIM_SESS_BUCKETS];
static struct gen_ent gens[SHIM_MAX_GENS]; /* per-token handle generations */
static size_t ngens;
static CK_ULONG star_gen; /* `* rehandle`: added to every token's */

/* ---- Small helpers ---- */

static void shim_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One message line on stderr (the control file's complaints). */
static void shim_msg(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "p11shim: %s\n", buf);
}

static void sleep_ms(unsigned long ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
	                      .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t fnv1a(const char *p, size_t n)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* A token label as rules and the log name it: trimmed, blanks as '_'. */
static void label_norm(const CK_UTF8CHAR *raw, char *out)
{
	size_t n = SHIM_LABEL_MAX;

	while (n > 0 && (raw[n - 1] == ' ' || raw[n - 1] == '\0'))
		n--;
	for (size_t i = 0; i < n; i++)
		out[i] = (raw[i] <= ' ' || raw[i] == 0x7f) ? '_' : (char)raw[i];
	out[n] = '\0';
}

/* ---- Slot labels and sessions ---- */

/* The label of the token in `slot` (cached); 0 when the slot has no token. */
static int slot_label(CK_SLOT_ID slot, char *out)
{
	CK_TOKEN_INFO ti;
	struct slot_ent *e;

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < SHIM_SLOT_CACHE; i++) {
		if (slot_cache[i].used && slot_cache[i].slot == slot) {
			memcpy(out, slot_cache[i].label, sizeof(slot_cache[i].label));
			pthread_mutex_unlock(&lock);
			return 1;
		}
	}
	pthread_mutex_unlock(&lock);

	if (real == NULL || real->C_GetTokenInfo == NULL ||
	    real->C_GetTokenInfo(slot, &ti) != CKR_OK)
		return 0;
	label_norm(ti.label, out);

	pthread_mutex_lock(&lock);
	e = &slot_cache[slot_next++ % SHIM_SLOT_CACHE];
	e->used = 1;
	e->slot = slot;
	memcpy(e->label, out, sizeof(e->label));
	pthread_mutex_unlock(&lock);
	return 1;
}

static void slot_forget(CK_SLOT_ID slot)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < SHIM_SLOT_CACHE; i++) {
		if (slot_cache[i].used && slot_cache[i].slot == slot)
			slot_cache[i].used = 0;
	}
	pthread_mutex_unlock(&lock);
}

static struct sess_ent **sess_find_unlocked(CK_SESSION_HANDLE h)
{
	struct sess_ent **pp = &sessions[h % SHIM_SESS_BUCKETS];

	while (*pp != NULL && (*pp)->handle != h)
		pp = &(*pp)->next;
	return pp;
}

/* Records (or, for a reused handle, re-records) a session's slot. */
static void sess_add(CK_SESSION_HANDLE h, CK_SLOT_ID slot)
{
	struct sess_ent **pp, *e;

	pthread_mutex_lock(&lock);
	pp = sess_find_unlocked(h);
	if (*pp != NULL) {
		(*pp)->slot = slot;
	} else if ((e = malloc(sizeof(*e))) != NULL) {
		e->handle = h;
		e->slot = slot;
		e->next = NULL;
		*pp = e;
	}
	pthread_mutex_unlock(&lock);
}

static int sess_slot(CK_SESSION_HANDLE h, CK_SLOT_ID *slot)
{
	struct sess_ent **pp;
	int found = 0;

	pthread_mutex_lock(&lock);
	pp = sess_find_unlocked(h);
	if (*pp != NULL) {
		*slot = (*pp)->slot;
		found = 1;
	}
	pthread_mutex_unlock(&lock);
	return found;
}

static void sess_del(CK_SESSION_HANDLE h)
{
	struct sess_ent **pp, *e;

	pthread_mutex_lock(&lock);
	pp = sess_find_unlocked(h);
	if ((e = *pp) != NULL) {
		*pp = e->next;
		free(e);
	}
	pthread_mutex_unlock(&lock);
}

/* Forgets the sessions of `slot`, or all of them when all != 0. */
static void sess_del_slot(CK_SLOT_ID slot, int all)
{
	pthread_mutex_lock(&lock);
	for (size_t b = 0; b < SHIM_SESS_BUCKETS; b++) {
		struct sess_ent **pp = &sessions[b], *e;

		while ((e = *pp) != NULL) {
			if (all || e->slot == slot) {
				*pp = e->next;
				free(e);
			} else {
				pp = &e->next;
			}
		}
	}
	pthread_mutex_unlock(&lock);
}

static void tables_reset(void)
{
	sess_del_slot(0, 1);
	pthread_mutex_lock(&lock);
	memset(slot_cache, 0, sizeof(slot_cache));
	slot_next = 0;
	memset(gens, 0, sizeof(gens));
	ngens = 0;
	star_gen = 0;
	pthread_mutex_unlock(&lock);
}

/* ---- Control file ---- */

static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return 0;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return 0;
	*out = v;
	return 1;
}

static int parse_ckr(const char *s, CK_RV *out)
{
	char *end;
	unsigned long v;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		if (s[2] == '\0')
			return 0;
		errno = 0;
		v = strtoul(s + 2, &end, 16);
		if (errno != 0 || *end != '\0')
			return 0;
		*out = v;
	} else if (p11p_ckr_value(s, out) != CKR_OK) {
		return 0;
	}
	return *out != CKR_OK;
}

static int never_failed(int fn)
{
	return fn == FN_C_Initialize || fn == FN_C_Finalize || fn == FN_C_GetInfo ||
	       fn == FN_C_GetFunctionList;
}

static int parse_fn(const char *s)
{
	for (int i = 0; i < FN_COUNT; i++) {
		if (strcmp(fn_names[i], s) == 0)
			return never_failed(i) ? -1 : i;
	}
	return -1;
}

/* Parses one line (NUL-terminated, no newline) into *r; 0 = nothing to keep. */
static int parse_line(char *line, unsigned ln, struct rule *r)
{
	char *tok[SHIM_MAX_WORDS], *save = NULL, *p;
	size_t n = 0, i;

	if ((p = strchr(line, '#')) != NULL)
		*p = '\0';
	for (p = strtok_r(line, " \t\r\f\v", &save); p != NULL;
	     p = strtok_r(NULL, " \t\r\f\v", &save)) {
		if (n == SHIM_MAX_WORDS) {
			shim_msg("%s:%u: too many words: line ignored", ctl_path, ln);
			return 0;
		}
		tok[n++] = p;
	}
	if (n == 0)
		return 0;
	if (n < 2) {
		shim_msg("%s:%u: no action: line ignored", ctl_path, ln);
		return 0;
	}
	memset(r, 0, sizeof(*r));
	r->fn = -1;
	if (strlen(tok[0]) > SHIM_LABEL_MAX) {
		shim_msg("%s:%u: label longer than %d: line ignored", ctl_path, ln, SHIM_LABEL_MAX);
		return 0;
	}
	strcpy(r->label, tok[0]);

	i = 2;
	if (strcmp(tok[1], "ok") == 0 || strcmp(tok[1], "drop") == 0 ||
	    strcmp(tok[1], "absent") == 0 || strcmp(tok[1], "rehandle") == 0) {
		if (n != 2) {
			shim_msg("%s:%u: '%s' takes no arguments: line ignored", ctl_path, ln,
			         tok[1]);
			return 0;
		}
		if (tok[1][0] == 'o')
			return 0;
		r->action = tok[1][0] == 'd' ? A_DROP : tok[1][0] == 'r' ? A_REHANDLE : A_ABSENT;
		return 1;
	} else if (strcmp(tok[1], "rand") == 0) {
		r->action = A_RAND;
		r->fn = FN_C_GenerateRandom;
		if (n != 4 ||
		    !((strcmp(tok[2], "const") == 0 && parse_ulong(tok[3], 255, &r->arg)) ||
		      (strcmp(tok[2], "cycle") == 0 && parse_ulong(tok[3], 256, &r->arg) &&
		       r->arg > 0) ||
		      (strcmp(tok[2], "replay") == 0 && parse_ulong(tok[3], ULONG_MAX, &r->arg)))) {
			shim_msg("%s:%u: rand needs const BYTE, cycle N or replay SEED: line ignored",
			         ctl_path, ln);
			return 0;
		}
		r->rand = tok[2][0] == 'c' ? (tok[2][1] == 'o' ? R_CONST : R_CYCLE) : R_REPLAY;
		return 1;
	} else if (strcmp(tok[1], "fail") == 0) {
		r->action = A_FAIL;
		if (n < 3 || !parse_ckr(tok[2], &r->rv)) {
			shim_msg(
			    "%s:%u: fail needs a CKR_ name or 0x value (not CKR_OK): line ignored",
			    ctl_path, ln);
			return 0;
		}
		i = 3;
	} else if (strcmp(tok[1], "fail-fn") == 0) {
		r->action = A_FAIL;
		if (n < 4 || (r->fn = parse_fn(tok[2])) < 0 || !parse_ckr(tok[3], &r->rv)) {
			shim_msg(
			    "%s:%u: fail-fn needs a function (not C_Initialize, C_Finalize, "
			    "C_GetInfo, C_GetFunctionList) and a CKR_ (not CKR_OK): line ignored",
			    ctl_path, ln);
			return 0;
		}
		i = 4;
	} else if (strcmp(tok[1], "hang") == 0 || strcmp(tok[1], "slow") == 0) {
		int hang = tok[1][0] == 'h';

		r->action = hang ? A_HANG : A_SLOW;
		if (n < 3 || !parse_ulong(tok[2], hang ? 86400 : 3600000, &r->arg)) {
			shim_msg("%s:%u: %s needs %s: line ignored", ctl_path, ln, tok[1],
			         hang ? "SECONDS (0..86400)" : "MS (0..3600000)");
			return 0;
		}
		i = 3;
	} else {
		shim_msg("%s:%u: unknown action '%s': line ignored", ctl_path, ln, tok[1]);
		return 0;
	}

	for (; i < n; i += 2) {
		int ok = i + 1 < n;

		if (ok && strcmp(tok[i], "after") == 0) {
			ok = parse_ulong(tok[i + 1], ULONG_MAX, &r->after);
		} else if (ok && strcmp(tok[i], "count") == 0) {
			ok = parse_ulong(tok[i + 1], ULONG_MAX, &r->count);
			r->counted = 1;
		} else if (ok && strcmp(tok[i], "fn") == 0) {
			ok = (r->fn = parse_fn(tok[i + 1])) >= 0;
		} else {
			ok = 0;
		}
		if (!ok) {
			shim_msg("%s:%u: bad option near '%s' (after N, count M, fn C_Func): "
			         "line ignored",
			         ctl_path, ln, tok[i]);
			return 0;
		}
	}
	return 1;
}

/* A `rehandle` rule loaded: the token's object handles so far are stale. */
static void gen_bump_unlocked(const char *label)
{
	size_t i;

	if (strcmp(label, "*") == 0) {
		star_gen++;
		return;
	}
	for (i = 0; i < ngens && strcmp(gens[i].label, label) != 0; i++)
		;
	if (i == ngens) {
		if (ngens == SHIM_MAX_GENS) {
			shim_msg("more than %d tokens with rehandle rules: %s ignored",
			         SHIM_MAX_GENS, label);
			return;
		}
		strcpy(gens[ngens++].label, label);
	}
	gens[i].gen++;
}

/* The token's handle generation (0: handles are the real module's); NULL: no token. */
static CK_ULONG gen_of_unlocked(const char *label)
{
	CK_ULONG g = star_gen;

	if (label == NULL)
		return 0;
	for (size_t i = 0; i < ngens; i++) {
		if (strcmp(gens[i].label, label) == 0)
			g += gens[i].gen;
	}
	return g & SHIM_LOW_MASK;
}

/* Replaces the rules by those of buf; the labels of `drop` rules go to drops. */
static void rules_load_unlocked(char *buf, size_t len, char drops[][SHIM_LABEL_MAX + 1],
                                size_t *ndrops)
{
	unsigned ln = 0;
	char *line = buf, *end = buf + len;

	nrules = 0;
	nabsent = 0;
	*ndrops = 0;
	rules_gen++;
	while (line < end) {
		char *nl = memchr(line, '\n', (size_t)(end - line));
		char *next = nl != NULL ? nl + 1 : end;
		struct rule r;

		ln++;
		if (next - line > SHIM_MAX_LINE || (nl == NULL && end - line >= SHIM_MAX_LINE)) {
			shim_msg("%s:%u: line longer than %d bytes: ignored", ctl_path, ln,
			         SHIM_MAX_LINE - 1);
			line = next;
			continue;
		}
		if (nl != NULL)
			*nl = '\0';
		else
			*end = '\0'; /* buf has room for it */
		if (strlen(line) != (size_t)((nl != NULL ? nl : end) - line)) {
			shim_msg("%s:%u: NUL byte: line ignored", ctl_path, ln);
		} else if (parse_line(line, ln, &r)) {
			if (nrules == SHIM_MAX_RULES) {
				shim_msg("%s:%u: more than %d rules: ignored", ctl_path, ln,
				         SHIM_MAX_RULES);
			} else {
				rules[nrules++] = r;
				if (r.action == A_ABSENT)
					nabsent++;
				if (r.action == A_DROP)
					strcpy(drops[(*ndrops)++], r.label);
				if (r.action == A_REHANDLE)
					gen_bump_unlocked(r.label);
			}
		}
		line = next;
	}
}

static int key_eq(const struct ctl_key *a, const struct ctl_key *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtim.tv_sec == b->mtim.tv_sec &&
	       a->mtim.tv_nsec == b->mtim.tv_nsec && a->ctim.tv_sec == b->ctim.tv_sec &&
	       a->ctim.tv_nsec == b->ctim.tv_nsec;
}

static void key_of(struct ctl_key *k, const struct stat *st)
{
	memset(k, 0, sizeof(*k));
	k->exists = 1;
	k->dev = st->st_dev;
	k->ino = st->st_ino;
	k->size = st->st_size;
	k->mtim = st->st_mtim;
	k->ctim = st->st_ctim;
}

/* Reads the control file into ctl_buf; -1 when it cannot be read. */
static ssize_t ctl_read_unlocked(struct ctl_key *k)
{
	struct stat st;
	size_t len = 0;
	int fd = open(ctl_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return -1;
	}
	key_of(k, &st);
	while (len < SHIM_MAX_FILE) {
		ssize_t r = read(fd, ctl_buf + len, SHIM_MAX_FILE - len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	ctl_buf[len] = '\0';
	return (ssize_t)len;
}

/*
 * Reloads the rules when the control file changed, then carries out the
 * `drop` rules of a new load (outside the lock: they call the real module).
 */
static void drop_token(const char *label);

static void control_refresh(void)
{
	char drops[SHIM_MAX_RULES][SHIM_LABEL_MAX + 1];
	size_t ndrops = 0;
	struct stat st;
	struct ctl_key k;
	struct timespec now;
	ssize_t len;
	uint64_t h;
	int changed, racy;

	pthread_mutex_lock(&lock);
	if (ctl_path[0] == '\0')
		goto out;
	if (stat(ctl_path, &st) != 0) {
		if (!ctl_loaded || ctl_key.exists) {
			memset(&ctl_key, 0, sizeof(ctl_key));
			ctl_hash = fnv1a("", 0);
			ctl_loaded = 1;
			rules_load_unlocked(ctl_buf, 0, drops, &ndrops);
		}
		goto out;
	}
	key_of(&k, &st);
	changed = !ctl_loaded || !key_eq(&k, &ctl_key);
	clock_gettime(CLOCK_REALTIME, &now);
	racy = now.tv_sec - st.st_mtim.tv_sec < SHIM_RACY_SECONDS;
	if (!changed && !racy)
		goto out;
	len = ctl_read_unlocked(&k);
	if (len < 0) {
		memset(&k, 0, sizeof(k));
		len = 0;
		changed = !ctl_loaded || ctl_key.exists;
	}
	h = fnv1a(ctl_buf, (size_t)len);
	if (!changed && h == ctl_hash && key_eq(&k, &ctl_key))
		goto out;
	if (len == SHIM_MAX_FILE)
		shim_msg("%s: only the first %d bytes are read", ctl_path, SHIM_MAX_FILE);
	ctl_key = k;
	ctl_hash = h;
	ctl_loaded = 1;
	rules_load_unlocked(ctl_buf, (size_t)len, drops, &ndrops);
out:
	pthread_mutex_unlock(&lock);
	for (size_t i = 0; i < ndrops; i++)
		drop_token(drops[i]);
}

static int label_match(const struct rule *r, const char *label)
{
	if (strcmp(r->label, "*") == 0)
		return 1;
	return label != NULL && strcmp(r->label, label) == 0;
}

static int absent_unlocked(const char *label)
{
	if (nabsent == 0 || label == NULL)
		return 0;
	for (size_t i = 0; i < nrules; i++) {
		if (rules[i].action == A_ABSENT && label_match(&rules[i], label))
			return 1;
	}
	return 0;
}

static int slot_absent(CK_SLOT_ID slot)
{
	char label[SHIM_LABEL_MAX + 1];
	int absent;

	if (!slot_label(slot, label))
		return 0;
	pthread_mutex_lock(&lock);
	absent = absent_unlocked(label);
	pthread_mutex_unlock(&lock);
	return absent;
}

/* Closes every real session on the slots of the token (all tokens for "*"). */
static void drop_token(const char *label)
{
	CK_SLOT_ID slots[SHIM_MAX_SLOTS];
	CK_ULONG n = SHIM_MAX_SLOTS;
	char l[SHIM_LABEL_MAX + 1];

	if (real == NULL)
		return;
	pthread_rwlock_wrlock(&calls_rw); /* no call in flight in the real module */
	if (real->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		n = 0;
	for (CK_ULONG i = 0; i < n && i < SHIM_MAX_SLOTS; i++) {
		if (strcmp(label, "*") == 0 || (slot_label(slots[i], l) && strcmp(l, label) == 0))
			real->C_CloseAllSessions(slots[i]);
	}
	pthread_rwlock_unlock(&calls_rw);
}

/* ---- Call log ---- */

static void log_call(int fn, const char *label, CK_RV rv)
{
	char line[160], hex[24];
	const char *name;
	int n;

	if (log_fd < 0)
		return;
	name = p11p_ckr_name(rv);
	if (name == NULL) {
		snprintf(hex, sizeof(hex), "0x%lx", (unsigned long)rv);
		name = hex;
	}
	n = snprintf(line, sizeof(line), "%s %s %s\n", fn_names[fn],
	             label != NULL && label[0] != '\0' ? label : "-", name);
	if (n > 0 && (size_t)n < sizeof(line) && write(log_fd, line, (size_t)n) < 0)
		return;
}

/* ---- Loading ---- */

static void atfork_prepare(void)
{
	pthread_mutex_lock(&lock);
}

static void atfork_release(void)
{
	pthread_mutex_unlock(&lock);
}

/* Writers first: a `drop` must not wait for a pause in a busy load. */
static void calls_rw_init(void)
{
	pthread_rwlockattr_t a;

	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&calls_rw, &a);
	pthread_rwlockattr_destroy(&a);
}

/* The child's calls in flight are gone with their threads. */
static void atfork_child(void)
{
	if (calls_rw_ready)
		calls_rw_init();
	pthread_mutex_unlock(&lock);
}

/* Picks up P11SHIM_CONTROL and P11SHIM_LOG. */
static void env_read_unlocked(void)
{
	const char *c = getenv("P11SHIM_CONTROL"), *l = getenv("P11SHIM_LOG");

	if (c == NULL || strlen(c) >= sizeof(ctl_path))
		c = "";
	if (strcmp(c, ctl_path) != 0) {
		strcpy(ctl_path, c);
		ctl_loaded = 0;
		nrules = 0;
		nabsent = 0;
	}
	if (l == NULL || strlen(l) >= sizeof(log_path))
		l = "";
	if (strcmp(l, log_path) != 0) {
		if (log_fd >= 0)
			close(log_fd);
		log_fd = -1;
		strcpy(log_path, l);
		if (l[0] != '\0') {
			log_fd = open(l, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
			if (log_fd < 0)
				shim_msg("cannot open log %s: %s", l, strerror(errno));
		}
	}
}

static CK_RV shim_load(void)
{
	CK_C_GetFunctionList get;
	CK_FUNCTION_LIST *list = NULL;
	const char *path;
	void *dl;
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&lock);
	if (!atfork_done && pthread_atfork(atfork_prepare, atfork_release, atfork_child) == 0)
		atfork_done = 1;
	if (!calls_rw_ready) {
		calls_rw_init();
		calls_rw_ready = 1;
	}
	if (real != NULL)
		goto out;
	env_read_unlocked();
	path = getenv("P11SHIM_MODULE");
	if (path == NULL || path[0] == '\0')
		path = SHIM_DEFAULT_MODULE;
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		shim_msg("dlopen %s: %s", path, dlerror());
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
	if (get == NULL || get(&list) != CKR_OK || list == NULL) {
		shim_msg("%s: no usable C_GetFunctionList", path);
		rv = CKR_GENERAL_ERROR;
		goto out; /* not closed: cheap, and its constructors may have run */
	}
	real = list;
out:
	pthread_mutex_unlock(&lock);
	return rv;
}

/* ---- Calls ---- */

enum call_kind { K_NONE, K_SLOT, K_SESSION };

struct call {
	int fn;
	enum call_kind kind;
	int absent;
	const char *label; /* NULL: concerns no (known) token; else points to buf */
	char buf[SHIM_LABEL_MAX + 1];
	CK_ULONG gen;  /* the token's handle generation when the call began */
	int forwarded; /* holds calls_rw shared, until call_end */
};

static int rule_hangs_unlocked(const struct call *c)
{
	for (size_t i = 0; i < nrules; i++) {
		const struct rule *r = &rules[i];

		if (r->action == A_HANG && label_match(r, c->label) &&
		    (r->fn < 0 || r->fn == c->fn))
			return 1;
	}
	return 0;
}

static CK_RV hang(const struct call *c, unsigned long secs)
{
	long long end = mono_ms() + (long long)secs * 1000;
	unsigned long gen, fin;
	int stop = 0;

	pthread_mutex_lock(&lock);
	gen = rules_gen;
	fin = fin_gen;
	pthread_mutex_unlock(&lock);
	while (!stop) {
		long long left = end - mono_ms();

		if (left <= 0)
			break;
		sleep_ms(left < SHIM_HANG_STEP_MS ? (unsigned long)left : SHIM_HANG_STEP_MS);
		control_refresh();
		pthread_mutex_lock(&lock);
		stop = fin_gen != fin || (rules_gen != gen && !rule_hangs_unlocked(c));
		gen = rules_gen;
		pthread_mutex_unlock(&lock);
	}
	return CKR_DEVICE_ERROR;
}

/* Decides a call's fate: CKR_OK means "forward it". */
static CK_RV call_begin(struct call *c, int fn, enum call_kind kind, CK_ULONG id)
{
	CK_SLOT_ID slot = id;
	unsigned long delay = 0, hang_secs = 0;
	int hangs = 0;
	CK_RV rv = CKR_OK;

	c->fn = fn;
	c->kind = kind;
	c->absent = 0;
	c->label = NULL;
	c->gen = 0;
	c->forwarded = 0;
	if (real == NULL)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	control_refresh();
	if (kind == K_SESSION && !sess_slot(id, &slot))
		kind = K_NONE;
	if (kind != K_NONE && slot_label(slot, c->buf))
		c->label = c->buf;

	pthread_mutex_lock(&lock);
	c->gen = gen_of_unlocked(c->label);
	c->absent = c->kind != K_NONE && absent_unlocked(c->label);
	if (c->absent && fn != FN_C_GetSlotInfo) {
		rv = c->kind == K_SLOT ? CKR_TOKEN_NOT_PRESENT : CKR_DEVICE_REMOVED;
		goto out;
	}
	for (size_t i = 0; i < nrules; i++) {
		struct rule *r = &rules[i];

		if (r->action == A_ABSENT || r->action == A_DROP || r->action == A_RAND ||
		    r->action == A_REHANDLE || !label_match(r, c->label) ||
		    (r->fn >= 0 && r->fn != fn))
			continue;
		if (r->hits != ULONG_MAX)
			r->hits++;
		if (r->hits <= r->after || (r->counted && r->hits - r->after > r->count))
			continue;
		if (r->action == A_SLOW) {
			delay += r->arg;
		} else if (r->action == A_HANG) {
			hangs = 1;
			hang_secs = r->arg;
			break;
		} else {
			rv = r->rv;
			break;
		}
	}
out:
	pthread_mutex_unlock(&lock);
	if (delay > 0)
		sleep_ms(delay);
	if (hangs)
		rv = hang(c, hang_secs);
	if (rv == CKR_OK) {
		pthread_rwlock_rdlock(&calls_rw);
		c->forwarded = 1;
	}
	return rv;
}

static CK_RV call_end(const struct call *c, CK_RV rv)
{
	if (c->forwarded)
		pthread_rwlock_unlock(&calls_rw);
	log_call(c->fn, c->label, rv);
	return rv;
}

/* ---- Hand-written entry points ---- */

static CK_FUNCTION_LIST shim_list;

static CK_RV shim_C_Initialize(CK_VOID_PTR init_args)
{
	CK_RV rv = shim_load();

	if (rv != CKR_OK)
		return rv;
	pthread_mutex_lock(&lock);
	env_read_unlocked();
	pthread_mutex_unlock(&lock);
	rv = real->C_Initialize(init_args);
	if (rv == CKR_OK)
		tables_reset();
	log_call(FN_C_Initialize, NULL, rv);
	return rv;
}

static CK_RV shim_C_Finalize(CK_VOID_PTR reserved)
{
	CK_RV rv;

	if (real == NULL)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_lock(&lock);
	fin_gen++;
	pthread_mutex_unlock(&lock);
	rv = real->C_Finalize(reserved);
	if (rv == CKR_OK)
		tables_reset();
	log_call(FN_C_Finalize, NULL, rv);
	return rv;
}

static CK_RV shim_C_GetInfo(CK_INFO_PTR info)
{
	CK_RV rv;

	if (real == NULL)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = real->C_GetInfo(info);
	log_call(FN_C_GetInfo, NULL, rv);
	return rv;
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	CK_RV rv;

	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = shim_load();
	if (rv == CKR_OK)
		*list = &shim_list;
	log_call(FN_C_GetFunctionList, NULL, rv);
	return rv;
}

static CK_RV shim_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	return C_GetFunctionList(list);
}

/* With an `absent` token, C_GetSlotList(CK_TRUE) leaves its slot out. */
static CK_RV slot_list_filtered(CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
	CK_SLOT_ID all[SHIM_MAX_SLOTS];
	CK_ULONG n = SHIM_MAX_SLOTS, keep = 0;
	CK_RV rv = real->C_GetSlotList(CK_TRUE, all, &n);

	if (rv != CKR_OK)
		return rv;
	for (CK_ULONG i = 0; i < n && i < SHIM_MAX_SLOTS; i++) {
		if (!slot_absent(all[i]))
			all[keep++] = all[i];
	}
	if (list != NULL && *count < keep)
		rv = CKR_BUFFER_TOO_SMALL;
	else if (list != NULL)
		memcpy(list, all, keep * sizeof(all[0]));
	*count = keep;
	return rv;
}

static CK_RV shim_C_GetSlotList(CK_BBOOL token_present, CK_SLOT_ID_PTR slot_list,
                                CK_ULONG_PTR count)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_GetSlotList, K_NONE, 0);
	unsigned absent;

	if (rv == CKR_OK) {
		pthread_mutex_lock(&lock);
		absent = nabsent;
		pthread_mutex_unlock(&lock);
		if (token_present && count != NULL && absent > 0)
			rv = slot_list_filtered(slot_list, count);
		else
			rv = real->C_GetSlotList(token_present, slot_list, count);
	}
	return call_end(&c, rv);
}

static CK_RV shim_C_GetSlotInfo(CK_SLOT_ID slot_id, CK_SLOT_INFO_PTR info)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_GetSlotInfo, K_SLOT, slot_id);

	if (rv == CKR_OK) {
		rv = real->C_GetSlotInfo(slot_id, info);
		if (rv == CKR_OK && c.absent && info != NULL)
			info->flags &= ~(CK_FLAGS)CKF_TOKEN_PRESENT;
	}
	return call_end(&c, rv);
}

static CK_RV shim_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_WaitForSlotEvent, K_NONE, 0);

	if (rv == CKR_OK)
		rv = real->C_WaitForSlotEvent(flags, slot, reserved);
	return call_end(&c, rv);
}

static CK_RV shim_C_InitToken(CK_SLOT_ID slot_id, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len,
                              CK_UTF8CHAR_PTR label)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_InitToken, K_SLOT, slot_id);

	if (rv == CKR_OK) {
		rv = real->C_InitToken(slot_id, pin, pin_len, label);
		if (rv == CKR_OK)
			slot_forget(slot_id); /* new label */
	}
	return call_end(&c, rv);
}

static CK_RV shim_C_OpenSession(CK_SLOT_ID slot_id, CK_FLAGS flags, CK_VOID_PTR application,
                                CK_NOTIFY notify, CK_SESSION_HANDLE_PTR session)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_OpenSession, K_SLOT, slot_id);

	if (rv == CKR_OK) {
		rv = real->C_OpenSession(slot_id, flags, application, notify, session);
		if (rv == CKR_OK && session != NULL)
			sess_add(*session, slot_id);
	}
	return call_end(&c, rv);
}

static CK_RV shim_C_CloseSession(CK_SESSION_HANDLE session)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_CloseSession, K_SESSION, session);

	if (rv == CKR_OK) {
		rv = real->C_CloseSession(session);
		if (rv == CKR_OK || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED)
			sess_del(session);
	}
	return call_end(&c, rv);
}

static CK_RV shim_C_CloseAllSessions(CK_SLOT_ID slot_id)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_CloseAllSessions, K_SLOT, slot_id);

	if (rv == CKR_OK) {
		rv = real->C_CloseAllSessions(slot_id);
		if (rv == CKR_OK)
			sess_del_slot(slot_id, 0);
	}
	return call_end(&c, rv);
}

/* A `rand` rule for the call's token: fills out and returns 1. */
static int rand_rule(const struct call *c, CK_BYTE_PTR out, CK_ULONG len)
{
	struct rule r;
	int found = 0;

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < nrules && !found; i++) {
		if (rules[i].action == A_RAND && label_match(&rules[i], c->label)) {
			r = rules[i];
			found = 1;
		}
	}
	pthread_mutex_unlock(&lock);
	if (!found)
		return 0;
	if (r.rand == R_CONST) {
		memset(out, (int)r.arg, len);
	} else if (r.rand == R_CYCLE) {
		for (CK_ULONG i = 0; i < len; i++)
			out[i] = (CK_BYTE)(i % r.arg);
	} else {
		uint64_t x = r.arg * 0x9e3779b97f4a7c15ULL + 1;

		for (CK_ULONG i = 0; i < len; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			out[i] = (CK_BYTE)(x >> 32);
		}
	}
	return 1;
}

static CK_RV shim_C_GenerateRandom(CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG out_len)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_GenerateRandom, K_SESSION, session);

	if (rv == CKR_OK) {
		if (out == NULL && out_len > 0)
			rv = CKR_ARGUMENTS_BAD;
		else if (!rand_rule(&c, out, out_len))
			rv = real->C_GenerateRandom(session, out, out_len);
	}
	return call_end(&c, rv);
}

/* ---- Object handles (`rehandle`) ---- */

/* The real handle behind an application's value: 0 when the value is stale. */
static int h_in(const struct call *c, CK_OBJECT_HANDLE *h)
{
	if (c->gen == 0)
		return 1;
	if (*h >> SHIM_GEN_SHIFT != c->gen)
		return 0;
	*h &= SHIM_LOW_MASK;
	return 1;
}

/* The application's value for a real handle (one the module handed out by the call). */
static void h_out(const struct call *c, CK_OBJECT_HANDLE_PTR h)
{
	if (c->gen != 0 && h != NULL && *h <= SHIM_LOW_MASK)
		*h |= c->gen << SHIM_GEN_SHIFT;
}

#define SHIM_REAL(name, args) (real->name != NULL ? real->name args : CKR_FUNCTION_NOT_SUPPORTED)

/* C_*Init taking a key: a stale key handle is CKR_KEY_HANDLE_INVALID. */
#define SHIM_KEY_INIT(name)                                                                        \
	static CK_RV shim_##name(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,            \
	                         CK_OBJECT_HANDLE key)                                             \
	{                                                                                          \
		struct call c;                                                                     \
		CK_RV rv = call_begin(&c, FN_##name, K_SESSION, session);                          \
                                                                                                   \
		if (rv == CKR_OK)                                                                  \
			rv = h_in(&c, &key) ? SHIM_REAL(name, (session, mechanism, key))           \
			                    : CKR_KEY_HANDLE_INVALID;                              \
		return call_end(&c, rv);                                                           \
	}

SHIM_KEY_INIT(C_EncryptInit)
SHIM_KEY_INIT(C_DecryptInit)
SHIM_KEY_INIT(C_SignInit)
SHIM_KEY_INIT(C_SignRecoverInit)
SHIM_KEY_INIT(C_VerifyInit)
SHIM_KEY_INIT(C_VerifyRecoverInit)

static CK_RV shim_C_DigestKey(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_DigestKey, K_SESSION, session);

	if (rv == CKR_OK)
		rv = h_in(&c, &key) ? SHIM_REAL(C_DigestKey, (session, key))
		                    : CKR_KEY_HANDLE_INVALID;
	return call_end(&c, rv);
}

static CK_RV shim_C_SetOperationState(CK_SESSION_HANDLE session, CK_BYTE_PTR state,
                                      CK_ULONG state_len, CK_OBJECT_HANDLE encryption_key,
                                      CK_OBJECT_HANDLE authentication_key)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_SetOperationState, K_SESSION, session);

	/* 0 names no key here: left as it is. */
	if (rv == CKR_OK && ((encryption_key != 0 && !h_in(&c, &encryption_key)) ||
	                     (authentication_key != 0 && !h_in(&c, &authentication_key))))
		rv = CKR_KEY_HANDLE_INVALID;
	else if (rv == CKR_OK)
		rv = SHIM_REAL(C_SetOperationState,
		               (session, state, state_len, encryption_key, authentication_key));
	return call_end(&c, rv);
}

static CK_RV shim_C_CreateObject(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                                 CK_OBJECT_HANDLE_PTR object)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_CreateObject, K_SESSION, session);

	if (rv == CKR_OK) {
		rv = SHIM_REAL(C_CreateObject, (session, templ, count, object));
		if (rv == CKR_OK)
			h_out(&c, object);
	}
	return call_end(&c, rv);
}

static CK_RV shim_C_CopyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                               CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                               CK_OBJECT_HANDLE_PTR new_object)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_CopyObject, K_SESSION, session);

	if (rv == CKR_OK && !h_in(&c, &object)) {
		rv = CKR_OBJECT_HANDLE_INVALID;
	} else if (rv == CKR_OK) {
		rv = SHIM_REAL(C_CopyObject, (session, object, templ, count, new_object));
		if (rv == CKR_OK)
			h_out(&c, new_object);
	}
	return call_end(&c, rv);
}

static CK_RV shim_C_DestroyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_DestroyObject, K_SESSION, session);

	if (rv == CKR_OK)
		rv = h_in(&c, &object) ? SHIM_REAL(C_DestroyObject, (session, object))
		                       : CKR_OBJECT_HANDLE_INVALID;
	return call_end(&c, rv);
}

static CK_RV shim_C_GetObjectSize(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                                  CK_ULONG_PTR size)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_GetObjectSize, K_SESSION, session);

	if (rv == CKR_OK)
		rv = h_in(&c, &object) ? SHIM_REAL(C_GetObjectSize, (session, object, size))
		                       : CKR_OBJECT_HANDLE_INVALID;
	return call_end(&c, rv);
}

static CK_RV shim_C_GetAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                                      CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_GetAttributeValue, K_SESSION, session);

	if (rv == CKR_OK)
		rv = h_in(&c, &object)
		         ? SHIM_REAL(C_GetAttributeValue, (session, object, templ, count))
		         : CKR_OBJECT_HANDLE_INVALID;
	return call_end(&c, rv);
}

static CK_RV shim_C_SetAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                                      CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_SetAttributeValue, K_SESSION, session);

	if (rv == CKR_OK)
		rv = h_in(&c, &object)
		         ? SHIM_REAL(C_SetAttributeValue, (session, object, templ, count))
		         : CKR_OBJECT_HANDLE_INVALID;
	return call_end(&c, rv);
}

static CK_RV shim_C_FindObjects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR objects,
                                CK_ULONG max_count, CK_ULONG_PTR count)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_FindObjects, K_SESSION, session);

	if (rv == CKR_OK) {
		rv = SHIM_REAL(C_FindObjects, (session, objects, max_count, count));
		if (rv == CKR_OK && objects != NULL && count != NULL) {
			for (CK_ULONG i = 0; i < *count && i < max_count; i++)
				h_out(&c, &objects[i]);
		}
	}
	return call_end(&c, rv);
}

static CK_RV shim_C_GenerateKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                                CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR key)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_GenerateKey, K_SESSION, session);

	if (rv == CKR_OK) {
		rv = SHIM_REAL(C_GenerateKey, (session, mechanism, templ, count, key));
		if (rv == CKR_OK)
			h_out(&c, key);
	}
	return call_end(&c, rv);
}

static CK_RV shim_C_GenerateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                                    CK_ATTRIBUTE_PTR pub_templ, CK_ULONG pub_count,
                                    CK_ATTRIBUTE_PTR priv_templ, CK_ULONG priv_count,
                                    CK_OBJECT_HANDLE_PTR pub_key, CK_OBJECT_HANDLE_PTR priv_key)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_GenerateKeyPair, K_SESSION, session);

	if (rv == CKR_OK) {
		rv = SHIM_REAL(C_GenerateKeyPair, (session, mechanism, pub_templ, pub_count,
		                                   priv_templ, priv_count, pub_key, priv_key));
		if (rv == CKR_OK) {
			h_out(&c, pub_key);
			h_out(&c, priv_key);
		}
	}
	return call_end(&c, rv);
}

static CK_RV shim_C_WrapKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                            CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key,
                            CK_BYTE_PTR wrapped, CK_ULONG_PTR wrapped_len)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_WrapKey, K_SESSION, session);

	if (rv == CKR_OK && !h_in(&c, &wrapping_key))
		rv = CKR_WRAPPING_KEY_HANDLE_INVALID;
	else if (rv == CKR_OK && !h_in(&c, &key))
		rv = CKR_KEY_HANDLE_INVALID;
	else if (rv == CKR_OK)
		rv = SHIM_REAL(C_WrapKey,
		               (session, mechanism, wrapping_key, key, wrapped, wrapped_len));
	return call_end(&c, rv);
}

static CK_RV shim_C_UnwrapKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                              CK_OBJECT_HANDLE unwrapping_key, CK_BYTE_PTR wrapped,
                              CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                              CK_OBJECT_HANDLE_PTR key)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_UnwrapKey, K_SESSION, session);

	if (rv == CKR_OK && !h_in(&c, &unwrapping_key)) {
		rv = CKR_UNWRAPPING_KEY_HANDLE_INVALID;
	} else if (rv == CKR_OK) {
		rv = SHIM_REAL(C_UnwrapKey, (session, mechanism, unwrapping_key, wrapped,
		                             wrapped_len, templ, count, key));
		if (rv == CKR_OK)
			h_out(&c, key);
	}
	return call_end(&c, rv);
}

static CK_RV shim_C_DeriveKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                              CK_OBJECT_HANDLE base_key, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                              CK_OBJECT_HANDLE_PTR key)
{
	struct call c;
	CK_RV rv = call_begin(&c, FN_C_DeriveKey, K_SESSION, session);

	if (rv == CKR_OK && !h_in(&c, &base_key)) {
		rv = CKR_KEY_HANDLE_INVALID;
	} else if (rv == CKR_OK) {
		rv = SHIM_REAL(C_DeriveKey, (session, mechanism, base_key, templ, count, key));
		if (rv == CKR_OK)
			h_out(&c, key);
	}
	return call_end(&c, rv);
}

/* ---- Generated forwarders ---- */

/*
 * SHIM_<function>: how its forwarder is made, and the argument list.
 *   OWN   hand-written above;
 *   SLOT  the first parameter, slot_id, names the token;
 *   SESS  the first parameter, session, names the token.
 * Functions with object handles among their parameters are OWN (above): they
 * translate the handles (`rehandle`).
 * The parameter lists come from lib/base/p11fns.h (its first three columns;
 * the macros take the rest as `...`, so new columns there do not break this).
 */
#define SHIM_C_Initialize          OWN, ()
#define SHIM_C_Finalize            OWN, ()
#define SHIM_C_GetInfo             OWN, ()
#define SHIM_C_GetFunctionList     OWN, ()
#define SHIM_C_GetSlotList         OWN, ()
#define SHIM_C_GetSlotInfo         OWN, ()
#define SHIM_C_GetTokenInfo        SLOT, (slot_id, info)
#define SHIM_C_WaitForSlotEvent    OWN, ()
#define SHIM_C_GetMechanismList    SLOT, (slot_id, list, count)
#define SHIM_C_GetMechanismInfo    SLOT, (slot_id, type, info)
#define SHIM_C_InitToken           OWN, ()
#define SHIM_C_InitPIN             SESS, (session, pin, pin_len)
#define SHIM_C_SetPIN              SESS, (session, old_pin, old_len, new_pin, new_len)
#define SHIM_C_OpenSession         OWN, ()
#define SHIM_C_CloseSession        OWN, ()
#define SHIM_C_CloseAllSessions    OWN, ()
#define SHIM_C_GetSessionInfo      SESS, (session, info)
#define SHIM_C_GetOperationState   SESS, (session, state, state_len)
#define SHIM_C_SetOperationState   OWN, ()
#define SHIM_C_Login               SESS, (session, user_type, pin, pin_len)
#define SHIM_C_Logout              SESS, (session)
#define SHIM_C_CreateObject        OWN, ()
#define SHIM_C_CopyObject          OWN, ()
#define SHIM_C_DestroyObject       OWN, ()
#define SHIM_C_GetObjectSize       OWN, ()
#define SHIM_C_GetAttributeValue   OWN, ()
#define SHIM_C_SetAttributeValue   OWN, ()
#define SHIM_C_FindObjectsInit     SESS, (session, templ, count)
#define SHIM_C_FindObjects         OWN, ()
#define SHIM_C_FindObjectsFinal    SESS, (session)
#define SHIM_C_EncryptInit         OWN, ()
#define SHIM_C_Encrypt             SESS, (session, data, data_len, out, out_len)
#define SHIM_C_EncryptUpdate       SESS, (session, part, part_len, out, out_len)
#define SHIM_C_EncryptFinal        SESS, (session, out, out_len)
#define SHIM_C_DecryptInit         OWN, ()
#define SHIM_C_Decrypt             SESS, (session, data, data_len, out, out_len)
#define SHIM_C_DecryptUpdate       SESS, (session, part, part_len, out, out_len)
#define SHIM_C_DecryptFinal        SESS, (session, out, out_len)
#define SHIM_C_DigestInit          SESS, (session, mechanism)
#define SHIM_C_Digest              SESS, (session, data, data_len, out, out_len)
#define SHIM_C_DigestUpdate        SESS, (session, part, part_len)
#define SHIM_C_DigestKey           OWN, ()
#define SHIM_C_DigestFinal         SESS, (session, out, out_len)
#define SHIM_C_SignInit            OWN, ()
#define SHIM_C_Sign                SESS, (session, data, data_len, sig, sig_len)
#define SHIM_C_SignUpdate          SESS, (session, part, part_len)
#define SHIM_C_SignFinal           SESS, (session, sig, sig_len)
#define SHIM_C_SignRecoverInit     OWN, ()
#define SHIM_C_SignRecover         SESS, (session, data, data_len, sig, sig_len)
#define SHIM_C_VerifyInit          OWN, ()
#define SHIM_C_Verify              SESS, (session, data, data_len, sig, sig_len)
#define SHIM_C_VerifyUpdate        SESS, (session, part, part_len)
#define SHIM_C_VerifyFinal         SESS, (session, sig, sig_len)
#define SHIM_C_VerifyRecoverInit   OWN, ()
#define SHIM_C_VerifyRecover       SESS, (session, sig, sig_len, data, data_len)
#define SHIM_C_DigestEncryptUpdate SESS, (session, part, part_len, out, out_len)
#define SHIM_C_DecryptDigestUpdate SESS, (session, part, part_len, out, out_len)
#define SHIM_C_SignEncryptUpdate   SESS, (session, part, part_len, out, out_len)
#define SHIM_C_DecryptVerifyUpdate SESS, (session, part, part_len, out, out_len)
#define SHIM_C_GenerateKey         OWN, ()
#define SHIM_C_GenerateKeyPair     OWN, ()
#define SHIM_C_WrapKey             OWN, ()
#define SHIM_C_UnwrapKey           OWN, ()
#define SHIM_C_DeriveKey           OWN, ()
#define SHIM_C_SeedRandom          SESS, (session, seed, seed_len)
#define SHIM_C_GenerateRandom      OWN, ()
#define SHIM_C_GetFunctionStatus   SESS, (session)
#define SHIM_C_CancelFunction      SESS, (session)

#define SHIM_GEN_OWN(name, params, args)
#define SHIM_GEN_FWD(name, params, args, kind, id)                                                 \
	static CK_RV shim_##name params                                                            \
	{                                                                                          \
		struct call c;                                                                     \
		CK_RV rv = call_begin(&c, FN_##name, kind, id);                                    \
                                                                                                   \
		if (rv == CKR_OK)                                                                  \
			rv = real->name != NULL ? real->name args : CKR_FUNCTION_NOT_SUPPORTED;    \
		return call_end(&c, rv);                                                           \
	}
#define SHIM_GEN_SLOT(name, params, args) SHIM_GEN_FWD(name, params, args, K_SLOT, slot_id)
#define SHIM_GEN_SESS(name, params, args) SHIM_GEN_FWD(name, params, args, K_SESSION, session)
/* Two steps of expansion turn SHIM_<name> into its two columns. */
#define SHIM_GEN3(cls, args, name, params) SHIM_GEN_##cls(name, params, args)
#define SHIM_GEN2(spec, name, params)      SHIM_GEN3(spec, name, params)
#define SHIM_GEN(kind, name, params, ...)  SHIM_GEN2(SHIM_##name, name, params)

P11P_FUNCTIONS(SHIM_GEN)

#define SHIM_LIST_ENTRY(kind, name, ...) .name = shim_##name,

/* clang-format off */
static CK_FUNCTION_LIST shim_list = {
	.version = {CRYPTOKI_VERSION_MAJOR, CRYPTOKI_VERSION_MINOR},
	P11P_FUNCTIONS(SHIM_LIST_ENTRY)
};
/* clang-format on */
