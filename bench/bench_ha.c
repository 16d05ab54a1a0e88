/*
 * bench_ha — HA slot benchmark: steady-state signing, and failover over the
 * fault-injecting shim (not a test: it never judges the figures, it prints them).
 *
 *   bench_ha keys MODULE PIN LABEL
 *   bench_ha sign MODULE TOKEN PIN LABEL [--threads N[,N...]] [--seconds S]
 *   bench_ha failover MODULE CONTROL LOG PIN LABEL [--threads N[,N...]]
 *            [--failovers N] [--window S] [--rounds R] [--seed N]
 *   bench_ha clean MODULE PIN LABEL
 *
 * MODULE is libproxy.so with a configuration (bench/run.sh writes it) in
 * which slot "ha" is a failover slot over members m1 and m2 (tokens of one
 * SoftHSM2, probe_interval 100ms), and "v-m1", "v-m2" are one-member slots
 * over each token; for `sign`, MODULE may also be SoftHSM2 itself (TOKEN m1).
 *
 * keys: generates an EC P-256 key pair labelled LABEL (CKA_ID = LABEL) on
 *   v-m1 and creates the same private key on v-m2, as replication would.
 * clean: destroys the objects labelled LABEL on v-m1 and v-m2.
 * sign: N threads (default 1; each its own session) sign with the private
 *   key LABEL on TOKEN (C_SignInit + C_Sign, CKM_ECDSA over 32 bytes) for S
 *   seconds (default 1), after a warm-up; one line per thread count, in the
 *   format of bench/bench.c:
 *     RESULT op=ecdsa_p256_sign threads=N ops_s=X p50_us=X p99_us=X mean_us=X ops=N
 * failover: the same signing through "ha", while this thread fails members
 *   by writing the shim's control file CONTROL (P11SHIM_CONTROL) and watches
 *   its call log LOG (P11SHIM_LOG). Per thread count:
 *
 * 1. Failover gap, N failovers (default 20). After a random 10-60 ms, the
 *    member serving the sessions fails (`mX fail CKR_DEVICE_ERROR`); once
 *    every thread has had a good result from a call started after that, the
 *    rule is removed and the member's recovery awaited (two good probes of
 *    the proxy, seen in the call log as C_GetSessionInfo on it); the next
 *    failover then fails the other member. Per thread and failover, the gap
 *    is the time from the start of the first call that met the failure to the
 *    next good result in that thread. The proxy replays such a call on the
 *    other member, so it usually is the good result itself: the first failed
 *    call is then the call in flight when the rule appeared or one started
 *    after it, whichever took longer. When errors reach the application, the
 *    gap runs from the start of the first failed call to the end of the next
 *    good one.
 *
 * 2. Throughput under failures: R rounds (default 6) of a steady window of S
 *    seconds (default 1) and a failing window of about S seconds in which the
 *    serving member fails at random moments (after a random 0-150 ms, for a
 *    random 5-40 ms and until every thread has moved, then recovery awaited
 *    as above). Good signatures completed per second in each kind of window.
 *
 *   RESULT op=ha_failover_gap threads=N failovers=N samples=N gap_p50_us=X
 *          gap_p90_us=X gap_max_us=X sign_p50_us=X recovery_p50_ms=X
 *          recovery_max_ms=X app_errors=N
 *   RESULT op=ha_throughput threads=N steady_ops_s=X failing_ops_s=X ratio=X
 *          failovers=N steady_s=X failing_s=X app_errors=N
 *
 * sign_p50_us is the median of all good signatures of the gap phase;
 * recovery is from removing the rule to the second good probe. Exit status:
 * 0 when the runs completed (errors reaching the application during failover
 * are counted, not fatal), 1 when setup failed, a signature failed (sign), a
 * thread gave up, or a failover or a recovery did not happen within 5 s.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../tests/progs/testmod.h"

#define MAX_THREADS       16
#define MAX_COUNTS        8
#define MAX_FAILOVERS     1000
#define NS_MS             1000000ULL
#define NS_S              1000000000ULL
#define GIVE_UP_NS        (5 * NS_S) /* a failover or a recovery that takes longer failed */
#define MAX_ERRORS_IN_ROW 200000
#define GOOD_PROBES       2
#define INITIAL_RECORDS   (1u << 18)
#define ATTR(t, v)                                                                                 \
	{                                                                                          \
		(t), (void *)(v), sizeof(*(v))                                                     \
	}
#define ATTR_S(t, s)                                                                               \
	{                                                                                          \
		(t), (void *)(s), strlen(s)                                                        \
	}
#define ATTR_N(t, p, n)                                                                            \
	{                                                                                          \
		(t), (void *)(p), (n)                                                              \
	}

/* One signature: when it started and ended, and its result. */
struct rec {
	uint64_t start, end;
	CK_RV rv;
};

struct ha;

struct worker {
	struct ha *h;
	pthread_t tid;
	CK_SESSION_HANDLE s;
	struct rec *v;
	size_t n, cap;
	_Atomic uint64_t good_start; /* start of the latest good signature; 0: none yet */
	atomic_int done;             /* the thread has returned */
	int joined;
	CK_RV rv; /* why it gave up, CKR_OK if it did not */
	const char *why;
};

/* One injected failure: the control file was replaced between t0 and t1. */
struct fault {
	uint64_t t0, t1;
};

struct window {
	uint64_t start, end;
	int failing;
};

struct ha {
	struct testmod m;
	const char *control, *log;
	char control_tmp[4200];
	const char *label, *pin;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE login;
	CK_OBJECT_HANDLE key;
	/* options */
	int n_failovers, rounds;
	double window, seconds;
	int serving; /* 0: m1, 1: m2 */
	uint64_t rng;
	int log_fd;
	off_t log_off;
	char carry[256];
	size_t carry_len;
	atomic_int stop;
	/* per run */
	struct fault faults[MAX_FAILOVERS];
	size_t n_faults;
	double recovery_ms[MAX_FAILOVERS];
	size_t n_recoveries;
	struct window windows[64];
	size_t n_windows;
	size_t throughput_failovers;
};

/* Not const: PKCS#11 templates take non-const pointers. */
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_S + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / NS_S), (long)(ns % NS_S)};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Uniform in [lo, hi] milliseconds, as nanoseconds (xorshift64; fixed seed: repeatable). */
static uint64_t random_ms(struct ha *h, unsigned lo, unsigned hi)
{
	h->rng ^= h->rng << 13;
	h->rng ^= h->rng >> 7;
	h->rng ^= h->rng << 17;
	return (lo + h->rng % (hi - lo + 1)) * NS_MS;
}

static int fail_rv(const char *what, CK_RV rv)
{
	fprintf(stderr, "bench_ha: %s: 0x%08lx\n", what, (unsigned long)rv);
	return 0;
}

/* ---- the shim: control file and call log ---- */

/*
 * Replaces the control file in one go (temp file + rename: a new inode for the
 * shim). Its mtime is set 10 s into the past: the shim reads a file younger
 * than 2 s on every call (to see changes within one clock tick), which would
 * slow every call for 2 s after each failure; the new inode and ctime are
 * enough for it to see the change.
 */
static int control(struct ha *h, const char *rules)
{
	FILE *fp = fopen(h->control_tmp, "w");
	struct timespec times[2];
	int ok;

	if (fp == NULL) {
		fprintf(stderr, "bench_ha: %s: %s\n", h->control_tmp, strerror(errno));
		return 0;
	}
	clock_gettime(CLOCK_REALTIME, &times[0]);
	times[0].tv_sec -= 10;
	times[1] = times[0];
	ok = fputs(rules, fp) >= 0 && fflush(fp) == 0 && futimens(fileno(fp), times) == 0;
	ok = fclose(fp) == 0 && ok && rename(h->control_tmp, h->control) == 0;
	if (!ok)
		fprintf(stderr, "bench_ha: writing %s: %s\n", h->control, strerror(errno));
	return ok;
}

/* Empties the call log and reads it from the start again. */
static void log_reset(struct ha *h)
{
	if (ftruncate(h->log_fd, 0) != 0)
		fprintf(stderr, "bench_ha: truncating %s: %s\n", h->log, strerror(errno));
	h->log_off = 0;
	h->carry_len = 0;
}

/* Complete lines equal to `want` appended to the call log since the last look. */
static long log_scan(struct ha *h, const char *want)
{
	char buf[65536 + sizeof(h->carry)];
	long found = 0;

	for (;;) {
		size_t have = h->carry_len;
		ssize_t n;
		char *p = buf, *end, *nl;

		memcpy(buf, h->carry, have);
		n = pread(h->log_fd, buf + have, sizeof(buf) - have, h->log_off);
		if (n <= 0)
			return found;
		h->log_off += n;
		end = buf + have + n;
		while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
			*nl = '\0';
			if (strcmp(p, want) == 0)
				found++;
			p = nl + 1;
		}
		h->carry_len = (size_t)(end - p);
		if (h->carry_len >= sizeof(h->carry))
			h->carry_len = 0; /* not a shim line */
		memcpy(h->carry, p, h->carry_len);
	}
}

/* ---- setup: one EC P-256 key, the same on both tokens ---- */

/* Generates an extractable key pair on v-m1 and creates the same private key on v-m2. */
static int make_keys(struct ha *h)
{
	CK_FUNCTION_LIST *f = h->m.f;
	CK_OBJECT_CLASS priv_cls = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt = CKK_EC;
	CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_BYTE d[66];
	CK_ATTRIBUTE pub_t[] = {
	    ATTR(CKA_TOKEN, &yes),
	    ATTR(CKA_VERIFY, &yes),
	    ATTR_S(CKA_LABEL, h->label),
	    ATTR_S(CKA_ID, h->label),
	    ATTR_N(CKA_EC_PARAMS, p256, sizeof(p256)),
	};
	CK_ATTRIBUTE priv_t[] = {
	    ATTR(CKA_TOKEN, &yes),       ATTR(CKA_PRIVATE, &yes), ATTR(CKA_SENSITIVE, &no),
	    ATTR(CKA_EXTRACTABLE, &yes), ATTR(CKA_SIGN, &yes),    ATTR_S(CKA_LABEL, h->label),
	    ATTR_S(CKA_ID, h->label),
	};
	CK_ATTRIBUTE value = ATTR_N(CKA_VALUE, d, sizeof(d));
	CK_ATTRIBUTE copy_t[] = {
	    ATTR(CKA_CLASS, &priv_cls),
	    ATTR(CKA_KEY_TYPE, &kt),
	    ATTR(CKA_TOKEN, &yes),
	    ATTR(CKA_PRIVATE, &yes),
	    ATTR(CKA_SENSITIVE, &yes),
	    ATTR(CKA_SIGN, &yes),
	    ATTR_S(CKA_LABEL, h->label),
	    ATTR_S(CKA_ID, h->label),
	    ATTR_N(CKA_EC_PARAMS, p256, sizeof(p256)),
	    ATTR_N(CKA_VALUE, d, 0),
	};
	CK_OBJECT_HANDLE pub, priv, copy;
	CK_SESSION_HANDLE s;
	CK_RV rv;

	if (!testmod_session(&h->m, "v-m1", h->pin, &s))
		return 0;
	rv = f->C_GenerateKeyPair(s, &gen, pub_t, sizeof(pub_t) / sizeof(pub_t[0]), priv_t,
	                          sizeof(priv_t) / sizeof(priv_t[0]), &pub, &priv);
	if (rv == CKR_OK)
		rv = f->C_GetAttributeValue(s, priv, &value, 1);
	f->C_CloseSession(s);
	if (rv != CKR_OK)
		return fail_rv("EC key on v-m1", rv);
	copy_t[9].ulValueLen = value.ulValueLen;
	if (!testmod_session(&h->m, "v-m2", h->pin, &s))
		return 0;
	rv = f->C_CreateObject(s, copy_t, sizeof(copy_t) / sizeof(copy_t[0]), &copy);
	f->C_CloseSession(s);
	if (rv != CKR_OK)
		return fail_rv("EC key copy on v-m2", rv);
	return 1;
}

/* Destroys every object labelled h->label on the token behind one-member slot `slot`. */
static void cleanup_token(struct ha *h, const char *slot)
{
	CK_FUNCTION_LIST *f = h->m.f;
	CK_ATTRIBUTE t[] = {ATTR_S(CKA_LABEL, h->label)};
	CK_OBJECT_HANDLE found[8];
	CK_SESSION_HANDLE s;
	CK_ULONG n = 0;

	if (!testmod_session(&h->m, slot, h->pin, &s))
		return;
	if (f->C_FindObjectsInit(s, t, 1) == CKR_OK) {
		f->C_FindObjects(s, found, 8, &n);
		f->C_FindObjectsFinal(s);
	}
	for (CK_ULONG i = 0; i < n; i++)
		f->C_DestroyObject(s, found[i]);
	f->C_CloseSession(s);
}

/* Logs in to `token` and finds the private key h->label there. */
static int find_key(struct ha *h, const char *token)
{
	CK_FUNCTION_LIST *f = h->m.f;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = {ATTR(CKA_CLASS, &cls), ATTR_S(CKA_LABEL, h->label)};
	CK_ULONG n = 0;
	CK_RV rv;

	if (!testmod_find_token(&h->m, token, &h->slot) ||
	    !testmod_session(&h->m, token, h->pin, &h->login))
		return 0;
	rv = f->C_FindObjectsInit(h->login, t, 2);
	if (rv == CKR_OK) {
		rv = f->C_FindObjects(h->login, &h->key, 1, &n);
		f->C_FindObjectsFinal(h->login);
	}
	if (rv != CKR_OK || n != 1) {
		fprintf(stderr, "bench_ha: key '%s' not found on '%s' (0x%lx, %lu objects)\n",
		        h->label, token, (unsigned long)rv, (unsigned long)n);
		return 0;
	}
	return 1;
}

/* ---- the signing threads ---- */

static CK_RV sign_once(struct worker *w)
{
	CK_FUNCTION_LIST *f = w->h->m.f;
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	CK_BYTE hash[32], sig[64];
	CK_ULONG len = sizeof(sig);
	CK_RV rv;

	memset(hash, 0x5a, sizeof(hash));
	rv = f->C_SignInit(w->s, &m, w->h->key);
	if (rv != CKR_OK)
		return rv;
	return f->C_Sign(w->s, hash, sizeof(hash), sig, &len);
}

static int record(struct worker *w, uint64_t start, uint64_t end, CK_RV rv)
{
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : INITIAL_RECORDS;
		struct rec *p = realloc(w->v, cap * sizeof(*p));

		if (p == NULL)
			return 0;
		w->v = p;
		w->cap = cap;
	}
	w->v[w->n].start = start;
	w->v[w->n].end = end;
	w->v[w->n].rv = rv;
	w->n++;
	return 1;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned long errors_in_row = 0;

	while (!atomic_load_explicit(&w->h->stop, memory_order_relaxed)) {
		uint64_t t0 = now_ns(), t1;
		CK_RV rv = sign_once(w);

		t1 = now_ns();
		if (!record(w, t0, t1, rv)) {
			w->rv = CKR_HOST_MEMORY;
			w->why = "sample buffer";
			break;
		}
		if (rv == CKR_OK) {
			atomic_store_explicit(&w->good_start, t0, memory_order_release);
			errors_in_row = 0;
		} else if (++errors_in_row >= MAX_ERRORS_IN_ROW) {
			w->rv = rv;
			w->why = "signing (errors in a row)";
			break;
		}
	}
	atomic_store(&w->done, 1);
	return NULL;
}

/* ---- failing and recovering members ---- */

/* Waits until every thread had a good signature started after t (0: any). */
static int wait_moved(struct worker *w, int threads, uint64_t t)
{
	uint64_t give_up = now_ns() + GIVE_UP_NS;

	for (;;) {
		int all = 1;

		for (int i = 0; i < threads; i++) {
			if (atomic_load(&w[i].done))
				return 0;
			if (atomic_load_explicit(&w[i].good_start, memory_order_acquire) <= t)
				all = 0;
		}
		if (all)
			return 1;
		if (now_ns() > give_up) {
			fprintf(stderr, "bench_ha: a thread had no good result within 5 s\n");
			return 0;
		}
		sleep_ns(500000);
	}
}

/* Fails the serving member (rule written between t0 and t1). */
static int fail_serving(struct ha *h)
{
	char rule[64];
	struct fault *ft;

	if (h->n_faults == MAX_FAILOVERS)
		return 0;
	ft = &h->faults[h->n_faults];
	snprintf(rule, sizeof(rule), "m%d fail CKR_DEVICE_ERROR\n", h->serving + 1);
	ft->t0 = now_ns();
	if (!control(h, rule))
		return 0;
	ft->t1 = now_ns();
	h->n_faults++;
	return 1;
}

/* Removes the rule and waits for the proxy's two good probes of the failed member. */
static int recover(struct ha *h)
{
	char want[64];
	uint64_t start, give_up;
	long good = 0;

	snprintf(want, sizeof(want), "C_GetSessionInfo m%d CKR_OK", h->serving + 1);
	log_reset(h);
	start = now_ns();
	if (!control(h, ""))
		return 0;
	give_up = start + GIVE_UP_NS;
	while (good < GOOD_PROBES) {
		if (now_ns() > give_up) {
			fprintf(stderr, "bench_ha: m%d not probed good twice within 5 s\n",
			        h->serving + 1);
			return 0;
		}
		sleep_ns(NS_MS);
		good += log_scan(h, want);
	}
	if (h->n_recoveries < MAX_FAILOVERS)
		h->recovery_ms[h->n_recoveries++] = (double)(now_ns() - start) / 1e6;
	sleep_ns(2 * NS_MS); /* the probe's C_CloseSession, then the member is marked up */
	h->serving ^= 1;     /* the sessions are on the other member now */
	return 1;
}

/* One failover: fail the serving member, hold at least `hold`, until all threads moved. */
static int failover(struct ha *h, struct worker *w, int threads, uint64_t hold)
{
	uint64_t t;

	if (!fail_serving(h))
		return 0;
	t = h->faults[h->n_faults - 1].t1;
	if (hold > 0)
		sleep_ns(hold);
	if (!wait_moved(w, threads, t)) {
		control(h, "");
		return 0;
	}
	return recover(h);
}

/* ---- analysis ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank; v sorted, n > 0. */
static size_t rank(size_t n, double p)
{
	size_t r = (size_t)(p * (double)n + 0.999999);

	return r == 0 ? 0 : (r > n ? n : r) - 1;
}

static uint64_t lat(const struct rec *r)
{
	return r->end - r->start;
}

/*
 * The gap of one thread for one failure, in ns (0: not found). *pos is where
 * to start looking in the thread's records; faults come in time order.
 */
static uint64_t gap_ns(const struct worker *w, size_t *pos, const struct fault *ft)
{
	size_t j = *pos, k, best;

	while (j < w->n && w->v[j].end <= ft->t0)
		j++;
	*pos = j;
	/* Up to the first good signature started after the rule was in place. */
	for (k = j; k < w->n; k++) {
		if (w->v[k].rv != CKR_OK) {
			size_t g = k + 1;

			while (g < w->n && w->v[g].rv != CKR_OK)
				g++;
			return g < w->n ? w->v[g].end - w->v[k].start : 0;
		}
		if (w->v[k].start > ft->t1)
			break;
	}
	if (k >= w->n)
		return 0;
	/* No error reached the application: the failed call is the slowest of these. */
	best = j;
	for (size_t i = j + 1; i <= k; i++)
		if (lat(&w->v[i]) > lat(&w->v[best]))
			best = i;
	return lat(&w->v[best]);
}

static size_t count_errors(const struct worker *w, uint64_t from, uint64_t to)
{
	size_t n = 0;

	for (size_t i = 0; i < w->n; i++)
		if (w->v[i].rv != CKR_OK && w->v[i].end >= from && w->v[i].end < to)
			n++;
	return n;
}

static int report_gap(struct ha *h, struct worker *w, int threads, uint64_t from, uint64_t to)
{
	size_t n_gaps = 0, n_good = 0, errors = 0, pos[MAX_THREADS] = {0};
	uint64_t *gaps = calloc(h->n_faults * (size_t)threads + 1, sizeof(*gaps)), *good;
	double rec_p50 = 0, rec_max = 0;

	for (int i = 0; i < threads; i++) {
		n_good += w[i].n;
		errors += count_errors(&w[i], from, to);
	}
	good = malloc((n_good + 1) * sizeof(*good));
	if (gaps == NULL || good == NULL) {
		free(gaps);
		free(good);
		return 0;
	}
	for (size_t k = 0; k < h->n_faults; k++) {
		for (int i = 0; i < threads; i++) {
			uint64_t g = gap_ns(&w[i], &pos[i], &h->faults[k]);

			if (g > 0)
				gaps[n_gaps++] = g;
		}
	}
	n_good = 0;
	for (int i = 0; i < threads; i++)
		for (size_t j = 0; j < w[i].n; j++)
			if (w[i].v[j].rv == CKR_OK && w[i].v[j].end >= from && w[i].v[j].end < to)
				good[n_good++] = lat(&w[i].v[j]);
	qsort(gaps, n_gaps, sizeof(*gaps), cmp_u64);
	qsort(good, n_good, sizeof(*good), cmp_u64);
	qsort(h->recovery_ms, h->n_recoveries, sizeof(double), cmp_double);
	if (h->n_recoveries > 0) {
		rec_p50 = h->recovery_ms[rank(h->n_recoveries, 0.5)];
		rec_max = h->recovery_ms[h->n_recoveries - 1];
	}
	printf("RESULT op=ha_failover_gap threads=%d failovers=%zu samples=%zu gap_p50_us=%.1f "
	       "gap_p90_us=%.1f gap_max_us=%.1f sign_p50_us=%.1f recovery_p50_ms=%.1f "
	       "recovery_max_ms=%.1f app_errors=%zu\n",
	       threads, h->n_faults, n_gaps, n_gaps ? (double)gaps[rank(n_gaps, 0.5)] / 1e3 : 0.0,
	       n_gaps ? (double)gaps[rank(n_gaps, 0.9)] / 1e3 : 0.0,
	       n_gaps ? (double)gaps[n_gaps - 1] / 1e3 : 0.0,
	       n_good ? (double)good[rank(n_good, 0.5)] / 1e3 : 0.0, rec_p50, rec_max, errors);
	fflush(stdout);
	free(gaps);
	free(good);
	return n_gaps > 0;
}

static void report_throughput(struct ha *h, struct worker *w, int threads)
{
	uint64_t ns[2] = {0, 0};
	size_t ops[2] = {0, 0}, errors = 0;

	for (size_t k = 0; k < h->n_windows; k++) {
		const struct window *win = &h->windows[k];

		ns[win->failing] += win->end - win->start;
		for (int i = 0; i < threads; i++) {
			for (size_t j = 0; j < w[i].n; j++) {
				const struct rec *r = &w[i].v[j];

				if (r->end < win->start || r->end >= win->end)
					continue;
				if (r->rv == CKR_OK)
					ops[win->failing]++;
				else
					errors++;
			}
		}
	}
	double steady = ns[0] ? (double)ops[0] * 1e9 / (double)ns[0] : 0.0;
	double failing = ns[1] ? (double)ops[1] * 1e9 / (double)ns[1] : 0.0;

	printf("RESULT op=ha_throughput threads=%d steady_ops_s=%.1f failing_ops_s=%.1f "
	       "ratio=%.3f failovers=%zu steady_s=%.2f failing_s=%.2f app_errors=%zu\n",
	       threads, steady, failing, steady > 0 ? failing / steady : 0.0,
	       h->throughput_failovers, (double)ns[0] / 1e9, (double)ns[1] / 1e9, errors);
	fflush(stdout);
}

/* ---- one thread count: gap phase, then throughput phase ---- */

static int add_window(struct ha *h, uint64_t start, int failing)
{
	if (h->n_windows == sizeof(h->windows) / sizeof(h->windows[0]))
		return 0;
	h->windows[h->n_windows].start = start;
	h->windows[h->n_windows].end = now_ns();
	h->windows[h->n_windows].failing = failing;
	h->n_windows++;
	return 1;
}

/* failover: the gap phase, then the throughput phase. */
static int phases(struct ha *h, struct worker *w, int threads)
{
	uint64_t win_ns = (uint64_t)(h->window * 1e9), gap_from, gap_to, t;

	h->n_faults = h->n_recoveries = h->n_windows = h->throughput_failovers = 0;
	/* Warm-up: every session in use, signing on m1 (the first member, both up). */
	if (!wait_moved(w, threads, 0))
		return 0;
	sleep_ns(100 * NS_MS);
	h->serving = 0;

	gap_from = now_ns();
	for (int k = 0; k < h->n_failovers; k++) {
		sleep_ns(random_ms(h, 10, 60));
		if (!failover(h, w, threads, 0))
			return 0;
	}
	gap_to = now_ns();
	if (!report_gap(h, w, threads, gap_from, gap_to))
		return 0;

	for (int r = 0; r < h->rounds; r++) {
		t = now_ns();
		sleep_ns(win_ns);
		if (!add_window(h, t, 0))
			return 0;
		t = now_ns();
		for (;;) {
			uint64_t pause = random_ms(h, 0, 150);

			if (now_ns() + pause >= t + win_ns)
				break;
			sleep_ns(pause);
			if (!failover(h, w, threads, random_ms(h, 5, 40)))
				return 0;
			h->throughput_failovers++;
		}
		sleep_ns(t + win_ns > now_ns() ? t + win_ns - now_ns() : 0);
		if (!add_window(h, t, 1))
			return 0;
	}
	report_throughput(h, w, threads);
	return 1;
}

/* sign: after a warm-up, the signatures started and ended within h->seconds. */
static int steady(struct ha *h, struct worker *w, int threads)
{
	uint64_t t0, t1, sum = 0, *lats;
	size_t n = 0, total = 0;

	if (!wait_moved(w, threads, 0))
		return 0;
	t0 = now_ns();
	sleep_ns((uint64_t)(h->seconds * 1e9));
	t1 = now_ns();
	atomic_store(&h->stop, 1);
	for (int i = 0; i < threads; i++) {
		pthread_join(w[i].tid, NULL);
		w[i].joined = 1;
		total += w[i].n;
	}
	lats = malloc((total + 1) * sizeof(*lats));
	if (lats == NULL)
		return 0;
	for (int i = 0; i < threads; i++) {
		for (size_t j = 0; j < w[i].n; j++) {
			const struct rec *r = &w[i].v[j];

			if (r->start < t0 || r->end > t1)
				continue;
			if (r->rv != CKR_OK) {
				free(lats);
				return fail_rv("signing", r->rv);
			}
			lats[n++] = lat(r);
			sum += lat(r);
		}
	}
	if (n == 0) {
		free(lats);
		fprintf(stderr, "bench_ha: no signature completed\n");
		return 0;
	}
	qsort(lats, n, sizeof(*lats), cmp_u64);
	printf("RESULT op=ecdsa_p256_sign threads=%d ops_s=%.1f p50_us=%.2f p99_us=%.2f "
	       "mean_us=%.3f ops=%zu\n",
	       threads, (double)n * 1e9 / (double)(t1 - t0), (double)lats[rank(n, 0.5)] / 1e3,
	       (double)lats[rank(n, 0.99)] / 1e3, (double)sum / (double)n / 1e3, n);
	fflush(stdout);
	free(lats);
	return 1;
}

/* Runs `body` with `threads` signing threads, each with its own session on h->slot. */
static int run_threads(struct ha *h, int threads, int (*body)(struct ha *, struct worker *, int))
{
	struct worker *w = calloc((size_t)threads, sizeof(*w));
	int started = 0, ok = 1;

	if (w == NULL)
		return 0;
	atomic_store(&h->stop, 0);
	for (int i = 0; i < threads && ok; i++) {
		CK_RV rv = h->m.f->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL, &w[i].s);

		w[i].h = h;
		if (rv != CKR_OK)
			ok = fail_rv("C_OpenSession", rv);
	}
	for (int i = 0; i < threads && ok; i++) {
		if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
			fprintf(stderr, "bench_ha: pthread_create failed\n");
			ok = 0;
			break;
		}
		started++;
	}
	if (ok)
		ok = body(h, w, threads);
	atomic_store(&h->stop, 1);
	for (int i = 0; i < started; i++) {
		if (!w[i].joined)
			pthread_join(w[i].tid, NULL);
		if (w[i].rv != CKR_OK)
			ok = fail_rv(w[i].why, w[i].rv);
	}
	for (int i = 0; i < threads; i++) {
		if (w[i].s != CK_INVALID_HANDLE)
			h->m.f->C_CloseSession(w[i].s);
		free(w[i].v);
	}
	free(w);
	if (!ok)
		fprintf(stderr, "bench_ha: threads=%d failed\n", threads);
	return ok;
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(stderr,
	        "usage: bench_ha keys MODULE PIN LABEL\n"
	        "       bench_ha sign MODULE TOKEN PIN LABEL [--threads N[,N...]] [--seconds S]\n"
	        "       bench_ha failover MODULE CONTROL LOG PIN LABEL [--threads N[,N...]]\n"
	        "                [--failovers N] [--window S] [--rounds R] [--seed N]\n"
	        "       bench_ha clean MODULE PIN LABEL\n");
	exit(2);
}

static long number(const char *s, long lo, long hi)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (end == s || *end != '\0' || v < lo || v > hi)
		usage();
	return v;
}

static double seconds_arg(const char *s, double lo, double hi)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end != '\0' || !(v >= lo && v <= hi))
		usage();
	return v;
}

int main(int argc, char **argv)
{
	static struct ha h;
	const char *mode = argc > 1 ? argv[1] : "", *token = NULL;
	int counts[MAX_COUNTS], n_counts = 0, ok = 1, first_opt;

	h.n_failovers = 20;
	h.rounds = 6;
	h.window = 1.0;
	h.seconds = 1.0;
	h.rng = 1;
	if ((strcmp(mode, "keys") == 0 || strcmp(mode, "clean") == 0) && argc == 5) {
		h.pin = argv[3];
		h.label = argv[4];
		first_opt = argc;
	} else if (strcmp(mode, "sign") == 0 && argc >= 6) {
		token = argv[3];
		h.pin = argv[4];
		h.label = argv[5];
		first_opt = 6;
	} else if (strcmp(mode, "failover") == 0 && argc >= 7) {
		h.control = argv[3];
		h.log = argv[4];
		h.pin = argv[5];
		h.label = argv[6];
		first_opt = 7;
	} else {
		usage();
	}
	for (int i = first_opt; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--threads") == 0) {
			for (char *p = argv[++i], *end; *p != '\0'; p = end + (*end == ',')) {
				long v = strtol(p, &end, 10);

				if (end == p || v < 1 || v > MAX_THREADS ||
				    n_counts == MAX_COUNTS || (*end != ',' && *end != '\0'))
					usage();
				counts[n_counts++] = (int)v;
			}
		} else if (strcmp(argv[i], "--seconds") == 0 && token != NULL) {
			h.seconds = seconds_arg(argv[++i], 0.1, 3600.0);
		} else if (h.control == NULL) {
			usage();
		} else if (strcmp(argv[i], "--failovers") == 0) {
			h.n_failovers = (int)number(argv[++i], 1, MAX_FAILOVERS / 2);
		} else if (strcmp(argv[i], "--rounds") == 0) {
			h.rounds = (int)number(argv[++i], 1, 16);
		} else if (strcmp(argv[i], "--seed") == 0) {
			h.rng = (uint64_t)number(argv[++i], 1, 0x7fffffffL);
		} else if (strcmp(argv[i], "--window") == 0) {
			h.window = seconds_arg(argv[++i], 0.1, 600.0);
		} else {
			usage();
		}
	}
	if (n_counts == 0)
		counts[n_counts++] = 1;
	h.log_fd = -1;
	if (h.control != NULL) {
		snprintf(h.control_tmp, sizeof(h.control_tmp), "%s.tmp", h.control);
		h.log_fd = open(h.log, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (h.log_fd < 0) {
			fprintf(stderr, "bench_ha: %s: %s\n", h.log, strerror(errno));
			return 1;
		}
		if (!control(&h, ""))
			return 1;
	}
	if (!testmod_load(&h.m, argv[2]))
		return 1;

	if (strcmp(mode, "keys") == 0) {
		ok = make_keys(&h);
	} else if (strcmp(mode, "clean") == 0) {
		cleanup_token(&h, "v-m1");
		cleanup_token(&h, "v-m2");
	} else if (!find_key(&h, token != NULL ? token : "ha")) {
		ok = 0;
	} else {
		for (int c = 0; ok && c < n_counts; c++)
			ok = run_threads(&h, counts[c], token != NULL ? steady : phases);
	}

	if (h.control != NULL) {
		control(&h, "");
		close(h.log_fd);
	}
	if (h.login != CK_INVALID_HANDLE)
		h.m.f->C_CloseSession(h.login);
	testmod_unload(&h.m);
	return ok ? 0 : 1;
}
