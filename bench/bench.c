/*
 * bench — PKCS#11 throughput and latency benchmark (not a test: it never
 * judges the figures, it prints them).
 *
 *   bench MODULE TOKEN_LABEL PIN [--threads N[,N...]] [--seconds S] [--only NAME[,NAME...]]
 *
 * Loads MODULE the way an application does (tests/progs/testmod.h), logs in
 * to the token labelled TOKEN_LABEL, creates its keys and objects once
 * (labels unique to this run), runs every operation for S seconds (default 2)
 * at each thread count (default 1; each thread has its own session), and
 * destroys what it created. One line per (operation, thread count) on stdout:
 *
 *   RESULT op=NAME threads=N ops_s=X p50_us=X p99_us=X mean_us=X ops=N
 *
 * ops_s is the number of completed operations divided by the wall time of
 * the run; p50/p99/mean come from one CLOCK_MONOTONIC sample per operation.
 * Operations run in table order, each at every thread count before the next.
 * The 10,000 data objects exist only while find_10k runs, so find_1 measures
 * a search of a small token rather than a linear scan of 10,000 objects.
 * Exit status: 0 when every operation ran without error, 1 otherwise.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../tests/progs/testmod.h"

#define MAX_THREADS  64
#define MAX_COUNTS   8
#define N_MANY       10000
#define FIND_CHUNK   1000
#define GCM_IN_LEN   1024
#define GCM_TAG_BITS 128

struct bench {
	struct testmod m;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE setup; /* owns the session objects; keeps the login */
	char tag[48];            /* unique per run: labels and ids derive from it */
	char label_rsa[64], label_ec[64], label_aes[64], label_aes_s[64], label_one[64],
	    label_many[64];
	CK_OBJECT_HANDLE rsa_pub, rsa_priv, ec_pub, ec_priv, aes, aes_session, one;
	CK_OBJECT_HANDLE *many;
	size_t n_many;
	unsigned int worker_serial; /* distinct GCM IV prefix per worker */
	atomic_int stop;
};

struct worker {
	struct bench *b;
	const struct op *op;
	pthread_t tid;
	pthread_barrier_t *barrier;
	CK_SESSION_HANDLE s;
	uint32_t iv_prefix;
	uint64_t iv_counter;
	uint64_t *samples; /* nanoseconds per operation */
	size_t n, cap;
	CK_RV rv;        /* first error, CKR_OK if none */
	const char *why; /* which call failed */
	CK_OBJECT_HANDLE found[FIND_CHUNK];
};

struct op {
	const char *name;
	CK_RV (*run)(struct worker *w);
};

/* Not const: PKCS#11 templates take non-const pointers. */
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static char app_name[] = "p11proxy-bench";

#define ATTR(t, v)                                                                                 \
	{                                                                                          \
		(t), (void *)(v), sizeof(*(v))                                                     \
	}
#define ATTR_S(t, s)                                                                               \
	{                                                                                          \
		(t), (void *)(s), strlen(s)                                                        \
	}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int fail_rv(const char *what, CK_RV rv)
{
	fprintf(stderr, "bench: %s: 0x%08lx\n", what, (unsigned long)rv);
	return 0;
}

/* ---- operations (one call = one measured operation) ---- */

static CK_RV op_random(struct worker *w)
{
	CK_BYTE buf[32];

	w->why = "C_GenerateRandom";
	return w->b->m.f->C_GenerateRandom(w->s, buf, sizeof(buf));
}

static CK_RV sign(struct worker *w, CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE key, CK_ULONG maxlen)
{
	CK_FUNCTION_LIST *f = w->b->m.f;
	CK_MECHANISM m = {mech, NULL, 0};
	CK_BYTE data[32], sig[512];
	CK_ULONG len = maxlen;
	CK_RV rv;

	memset(data, 0x5a, sizeof(data));
	w->why = "C_SignInit";
	rv = f->C_SignInit(w->s, &m, key);
	if (rv != CKR_OK)
		return rv;
	w->why = "C_Sign";
	return f->C_Sign(w->s, data, sizeof(data), sig, &len);
}

static CK_RV op_ecdsa(struct worker *w)
{
	return sign(w, CKM_ECDSA, w->b->ec_priv, 64);
}

static CK_RV op_rsa(struct worker *w)
{
	return sign(w, CKM_SHA256_RSA_PKCS, w->b->rsa_priv, 256);
}

static CK_RV op_gcm(struct worker *w)
{
	CK_FUNCTION_LIST *f = w->b->m.f;
	CK_BYTE iv[12], in[GCM_IN_LEN], out[GCM_IN_LEN + GCM_TAG_BITS / 8];
	CK_GCM_PARAMS p = {0};
	CK_MECHANISM m = {CKM_AES_GCM, &p, sizeof(p)};
	CK_ULONG len = sizeof(out);
	CK_RV rv;

	/* A fresh IV every operation: 4-byte worker prefix + 8-byte counter. */
	memcpy(iv, &w->iv_prefix, 4);
	memcpy(iv + 4, &w->iv_counter, 8);
	w->iv_counter++;
	memset(in, 0xa5, sizeof(in));
	p.pIv = iv;
	p.ulIvLen = sizeof(iv);
	p.ulIvBits = sizeof(iv) * 8;
	p.ulTagBits = GCM_TAG_BITS;
	w->why = "C_EncryptInit";
	rv = f->C_EncryptInit(w->s, &m, w->b->aes);
	if (rv != CKR_OK)
		return rv;
	w->why = "C_Encrypt";
	rv = f->C_Encrypt(w->s, in, sizeof(in), out, &len);
	if (rv == CKR_OK && len != sizeof(out)) {
		w->why = "C_Encrypt output length";
		return CKR_GENERAL_ERROR;
	}
	return rv;
}

static CK_RV getattr(struct worker *w, CK_OBJECT_HANDLE key)
{
	char buf[64];
	CK_ATTRIBUTE a = {CKA_LABEL, buf, sizeof(buf)};

	w->why = "C_GetAttributeValue";
	return w->b->m.f->C_GetAttributeValue(w->s, key, &a, 1);
}

/* CKA_LABEL of the AES token key. */
static CK_RV op_getattr(struct worker *w)
{
	return getattr(w, w->b->aes);
}

/*
 * CKA_LABEL of a public (CKA_PRIVATE=false) AES session key. SoftHSM2
 * re-reads token state from its files on every access to a token object or
 * to a private object, which makes get_attribute's baseline tens of µs and
 * noisy; this one's baseline is about a µs, so the proxy's added cost per
 * call shows clearly.
 */
static CK_RV op_getattr_session(struct worker *w)
{
	return getattr(w, w->b->aes_session);
}

/* FindObjectsInit + FindObjects until exhausted + Final; checks the count. */
static CK_RV find(struct worker *w, CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, CK_ULONG expect)
{
	CK_FUNCTION_LIST *f = w->b->m.f;
	CK_ULONG total = 0, got;
	CK_RV rv;

	w->why = "C_FindObjectsInit";
	rv = f->C_FindObjectsInit(w->s, tmpl, n_tmpl);
	if (rv != CKR_OK)
		return rv;
	do {
		w->why = "C_FindObjects";
		rv = f->C_FindObjects(w->s, w->found, FIND_CHUNK, &got);
		if (rv != CKR_OK) {
			f->C_FindObjectsFinal(w->s);
			return rv;
		}
		total += got;
	} while (got > 0 && total < expect + 1);
	w->why = "C_FindObjectsFinal";
	rv = f->C_FindObjectsFinal(w->s);
	if (rv == CKR_OK && total != expect) {
		w->why = "C_FindObjects object count";
		return CKR_GENERAL_ERROR;
	}
	return rv;
}

static CK_RV op_find1(struct worker *w)
{
	CK_ATTRIBUTE t[] = {ATTR_S(CKA_LABEL, w->b->label_one)};

	return find(w, t, 1, 1);
}

static CK_RV op_find_many(struct worker *w)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_ATTRIBUTE t[] = {ATTR(CKA_CLASS, &cls), ATTR_S(CKA_LABEL, w->b->label_many)};

	return find(w, t, 2, N_MANY);
}

static CK_RV op_session(struct worker *w)
{
	CK_FUNCTION_LIST *f = w->b->m.f;
	CK_SESSION_HANDLE s;
	CK_RV rv;

	w->why = "C_OpenSession";
	rv = f->C_OpenSession(w->b->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK)
		return rv;
	w->why = "C_CloseSession";
	return f->C_CloseSession(s);
}

static const struct op ops[] = {
    {"random_32", op_random},
    {"ecdsa_p256_sign", op_ecdsa},
    {"rsa2048_sign", op_rsa},
    {"aes256_gcm_enc_1k", op_gcm},
    {"get_attribute", op_getattr},
    {"get_attribute_session", op_getattr_session},
    {"find_1", op_find1},
    {"find_10k", op_find_many},
    {"session_open_close", op_session},
};
#define N_OPS (sizeof(ops) / sizeof(ops[0]))

/* ---- setup and cleanup of the keys and objects ---- */

static int gen_pair(struct bench *b, CK_MECHANISM_TYPE mech, char *label, CK_ATTRIBUTE *extra,
                    CK_ULONG n_extra, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM m = {mech, NULL, 0};
	CK_ATTRIBUTE pt[8] = {
	    ATTR(CKA_TOKEN, &yes),
	    ATTR(CKA_VERIFY, &yes),
	    ATTR_S(CKA_LABEL, label),
	    ATTR_S(CKA_ID, label),
	};
	CK_ATTRIBUTE st[] = {
	    ATTR(CKA_TOKEN, &yes), ATTR(CKA_PRIVATE, &yes),  ATTR(CKA_SENSITIVE, &yes),
	    ATTR(CKA_SIGN, &yes),  ATTR_S(CKA_LABEL, label), ATTR_S(CKA_ID, label),
	};
	CK_ULONG np = 4;
	CK_RV rv;

	for (CK_ULONG i = 0; i < n_extra && np < 8; i++)
		pt[np++] = extra[i];
	rv = b->m.f->C_GenerateKeyPair(b->setup, &m, pt, np, st, sizeof(st) / sizeof(st[0]), pub,
	                               priv);
	if (rv != CKR_OK)
		return fail_rv(label, rv);
	return 1;
}

static int gen_aes(struct bench *b, char *label, CK_BBOOL *token, CK_BBOOL *private,
                   CK_OBJECT_HANDLE *out)
{
	CK_ULONG vlen = 32;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ATTRIBUTE at[] = {
	    ATTR(CKA_CLASS, &cls),   ATTR(CKA_KEY_TYPE, &kt),    ATTR(CKA_VALUE_LEN, &vlen),
	    ATTR(CKA_TOKEN, token),  ATTR(CKA_PRIVATE, private), ATTR(CKA_SENSITIVE, &yes),
	    ATTR(CKA_ENCRYPT, &yes), ATTR(CKA_DECRYPT, &yes),    ATTR_S(CKA_LABEL, label),
	    ATTR_S(CKA_ID, label),
	};
	CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
	CK_RV rv;

	rv = b->m.f->C_GenerateKey(b->setup, &m, at, sizeof(at) / sizeof(at[0]), out);
	if (rv != CKR_OK)
		return fail_rv(label, rv);
	return 1;
}

static int setup_keys(struct bench *b)
{
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	CK_ULONG bits = 2048;
	CK_BYTE e[] = {0x01, 0x00, 0x01};
	CK_ATTRIBUTE rsa[] = {ATTR(CKA_MODULUS_BITS, &bits), {CKA_PUBLIC_EXPONENT, e, sizeof(e)}};
	CK_ATTRIBUTE ec[] = {{CKA_EC_PARAMS, p256, sizeof(p256)}};

	return gen_pair(b, CKM_RSA_PKCS_KEY_PAIR_GEN, b->label_rsa, rsa, 2, &b->rsa_pub,
	                &b->rsa_priv) &&
	       gen_pair(b, CKM_EC_KEY_PAIR_GEN, b->label_ec, ec, 1, &b->ec_pub, &b->ec_priv) &&
	       gen_aes(b, b->label_aes, &yes, &yes, &b->aes) &&
	       gen_aes(b, b->label_aes_s, &no, &no, &b->aes_session);
}

static int create_data(struct bench *b, char *label, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BYTE value[16];
	CK_ATTRIBUTE t[] = {
	    ATTR(CKA_CLASS, &cls),    ATTR(CKA_TOKEN, &no),
	    ATTR(CKA_PRIVATE, &no),   ATTR_S(CKA_APPLICATION, app_name),
	    ATTR_S(CKA_LABEL, label), {CKA_VALUE, value, sizeof(value)},
	};
	CK_RV rv;

	memset(value, 0x42, sizeof(value));
	rv = b->m.f->C_CreateObject(b->setup, t, sizeof(t) / sizeof(t[0]), out);
	if (rv != CKR_OK)
		return fail_rv("C_CreateObject (data)", rv);
	return 1;
}

static int create_many(struct bench *b)
{
	b->many = calloc(N_MANY, sizeof(*b->many));
	if (b->many == NULL)
		return 0;
	for (b->n_many = 0; b->n_many < N_MANY; b->n_many++)
		if (!create_data(b, b->label_many, &b->many[b->n_many]))
			return 0;
	return 1;
}

static void destroy(struct bench *b, CK_OBJECT_HANDLE *h)
{
	CK_RV rv;

	if (*h == CK_INVALID_HANDLE)
		return;
	rv = b->m.f->C_DestroyObject(b->setup, *h);
	if (rv != CKR_OK)
		fail_rv("C_DestroyObject", rv);
	*h = CK_INVALID_HANDLE;
}

static void destroy_many(struct bench *b)
{
	for (size_t i = 0; i < b->n_many; i++)
		destroy(b, &b->many[i]);
	free(b->many);
	b->many = NULL;
	b->n_many = 0;
}

static void cleanup(struct bench *b)
{
	destroy_many(b);
	destroy(b, &b->one);
	destroy(b, &b->aes_session);
	destroy(b, &b->aes);
	destroy(b, &b->ec_priv);
	destroy(b, &b->ec_pub);
	destroy(b, &b->rsa_priv);
	destroy(b, &b->rsa_pub);
}

/* ---- measurement ---- */

/* 1 when stored, 2 when stored after growing the buffer, 0 when out of memory. */
static int record(struct worker *w, uint64_t ns)
{
	int grown = 0;

	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 65536;
		uint64_t *p = realloc(w->samples, cap * sizeof(*p));

		if (p == NULL)
			return 0;
		w->samples = p;
		w->cap = cap;
		grown = 1;
	}
	w->samples[w->n++] = ns;
	return 1 + grown;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	uint64_t t0, t1;
	CK_RV rv;

	/* Session and one warm-up operation before the clock starts. */
	w->why = "C_OpenSession";
	w->rv =
	    b->m.f->C_OpenSession(b->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &w->s);
	if (w->rv == CKR_OK)
		w->rv = w->op->run(w);
	pthread_barrier_wait(w->barrier);
	if (w->rv != CKR_OK)
		goto out;
	t0 = now_ns();
	while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
		rv = w->op->run(w);
		t1 = now_ns();
		if (rv != CKR_OK) {
			w->rv = rv;
			break;
		}
		switch (record(w, t1 - t0)) {
		case 0:
			w->rv = CKR_HOST_MEMORY;
			w->why = "sample buffer";
			goto out;
		case 2: /* the copy is not the next operation's time */
			t1 = now_ns();
			break;
		}
		t0 = t1;
	}
out:
	if (w->s != CK_INVALID_HANDLE)
		b->m.f->C_CloseSession(w->s);
	return NULL;
}

static void swap_u64(uint64_t *a, uint64_t *c)
{
	uint64_t t = *a;

	*a = *c;
	*c = t;
}

/* The k-th smallest of v[0..n) (0-based), by Wirth's selection; reorders v. */
static uint64_t select_kth(uint64_t *v, size_t n, size_t k)
{
	ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, kk = (ptrdiff_t)k;

	while (lo < hi) {
		uint64_t pivot = v[kk];
		ptrdiff_t i = lo, j = hi;

		do {
			while (v[i] < pivot)
				i++;
			while (pivot < v[j])
				j--;
			if (i <= j) {
				swap_u64(&v[i], &v[j]);
				i++;
				j--;
			}
		} while (i <= j);
		if (j < kk)
			lo = i;
		if (kk < i)
			hi = j;
	}
	return v[kk];
}

/* Nearest-rank percentile p (0 < p <= 1) of v[0..n). */
static double percentile_us(uint64_t *v, size_t n, double p)
{
	size_t rank = (size_t)(p * (double)n + 0.999999);

	if (rank == 0)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)select_kth(v, n, rank - 1) / 1000.0;
}

static int run_one(struct bench *b, const struct op *op, int threads, double seconds)
{
	struct worker *w = calloc((size_t)threads, sizeof(*w));
	pthread_barrier_t barrier;
	struct timespec ts;
	uint64_t start, end, sum = 0;
	size_t total = 0, pos = 0;
	uint64_t *all = NULL;
	int ok = 1, started = 0;

	if (w == NULL)
		return 0;
	pthread_barrier_init(&barrier, NULL, (unsigned)threads + 1);
	atomic_store(&b->stop, 0);
	for (int i = 0; i < threads; i++) {
		w[i].b = b;
		w[i].op = op;
		w[i].barrier = &barrier;
		w[i].s = CK_INVALID_HANDLE;
		w[i].iv_prefix = b->worker_serial++;
		if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
			fprintf(stderr, "bench: pthread_create failed\n");
			abort(); /* the barrier would never open */
		}
		started++;
	}
	pthread_barrier_wait(&barrier);
	start = now_ns();
	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	atomic_store(&b->stop, 1);
	for (int i = 0; i < started; i++)
		pthread_join(w[i].tid, NULL);
	end = now_ns();
	pthread_barrier_destroy(&barrier);

	for (int i = 0; i < threads; i++) {
		if (w[i].rv != CKR_OK) {
			fprintf(stderr, "bench: op=%s threads=%d thread %d: %s: 0x%08lx\n",
			        op->name, threads, i, w[i].why, (unsigned long)w[i].rv);
			ok = 0;
		}
		total += w[i].n;
	}
	if (ok && total > 0)
		all = malloc(total * sizeof(*all));
	if (all != NULL) {
		for (int i = 0; i < threads; i++) {
			memcpy(all + pos, w[i].samples, w[i].n * sizeof(*all));
			pos += w[i].n;
		}
		for (size_t i = 0; i < total; i++)
			sum += all[i];
		printf("RESULT op=%s threads=%d ops_s=%.1f p50_us=%.2f p99_us=%.2f "
		       "mean_us=%.3f ops=%zu\n",
		       op->name, threads, (double)total * 1e9 / (double)(end - start),
		       percentile_us(all, total, 0.50), percentile_us(all, total, 0.99),
		       (double)sum / (double)total / 1000.0, total);
		fflush(stdout);
	} else if (ok) {
		fprintf(stderr, "bench: op=%s threads=%d: no operation completed\n", op->name,
		        threads);
		ok = 0;
	}
	for (int i = 0; i < threads; i++)
		free(w[i].samples);
	free(all);
	free(w);
	return ok;
}

/* ---- main ---- */

static int name_listed(const char *list, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = list; p != NULL && *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);

		if (n == len && strncmp(p, name, n) == 0)
			return 1;
		p = comma ? comma + 1 : NULL;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench MODULE TOKEN_LABEL PIN [--threads N[,N...]] [--seconds S] "
	                "[--only NAME[,NAME...]]\noperations:");
	for (size_t i = 0; i < N_OPS; i++)
		fprintf(stderr, " %s", ops[i].name);
	fprintf(stderr, "\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static struct bench b;
	const char *only = NULL;
	int counts[MAX_COUNTS], n_counts = 0, ok = 1;
	double seconds = 2.0;
	int want[N_OPS], need_keys = 0, need_one = 0;
	uint64_t t;

	if (argc < 4)
		usage();
	for (int i = 4; i < argc; i++) {
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
		} else if (strcmp(argv[i], "--seconds") == 0) {
			char *end;

			seconds = strtod(argv[++i], &end);
			if (*end != '\0' || !(seconds > 0.0 && seconds <= 3600.0))
				usage();
		} else if (strcmp(argv[i], "--only") == 0) {
			only = argv[++i];
		} else {
			usage();
		}
	}
	if (n_counts == 0)
		counts[n_counts++] = 1;
	for (const char *p = only; p != NULL && *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p), k = 0;

		while (k < N_OPS && !(strlen(ops[k].name) == n && strncmp(ops[k].name, p, n) == 0))
			k++;
		if (k == N_OPS) {
			fprintf(stderr, "bench: unknown operation '%.*s'\n", (int)n, p);
			usage();
		}
		p = comma ? comma + 1 : NULL;
	}
	for (size_t i = 0; i < N_OPS; i++) {
		want[i] = only == NULL || name_listed(only, ops[i].name);
		if (want[i] &&
		    (ops[i].run == op_ecdsa || ops[i].run == op_rsa || ops[i].run == op_gcm ||
		     ops[i].run == op_getattr || ops[i].run == op_getattr_session))
			need_keys = 1;
		if (want[i] && ops[i].run == op_find1)
			need_one = 1;
	}

	t = now_ns();
	snprintf(b.tag, sizeof(b.tag), "bench-%ld-%08" PRIx32, (long)getpid(),
	         (uint32_t)(t ^ (t >> 32)));
	snprintf(b.label_rsa, sizeof(b.label_rsa), "%s-rsa", b.tag);
	snprintf(b.label_ec, sizeof(b.label_ec), "%s-ec", b.tag);
	snprintf(b.label_aes, sizeof(b.label_aes), "%s-aes", b.tag);
	snprintf(b.label_aes_s, sizeof(b.label_aes_s), "%s-aes-session", b.tag);
	snprintf(b.label_one, sizeof(b.label_one), "%s-one", b.tag);
	snprintf(b.label_many, sizeof(b.label_many), "%s-many", b.tag);
	b.rsa_pub = b.rsa_priv = b.ec_pub = b.ec_priv = CK_INVALID_HANDLE;
	b.aes = b.aes_session = b.one = CK_INVALID_HANDLE;

	if (!testmod_load(&b.m, argv[1]))
		return 1;
	if (!testmod_find_token(&b.m, argv[2], &b.slot) ||
	    !testmod_session(&b.m, argv[2], argv[3], &b.setup)) {
		testmod_unload(&b.m);
		return 1;
	}
	if ((need_keys && !setup_keys(&b)) || (need_one && !create_data(&b, b.label_one, &b.one)))
		ok = 0;

	for (size_t i = 0; ok && i < N_OPS; i++) {
		if (!want[i])
			continue;
		if (ops[i].run == op_find_many && !create_many(&b)) {
			ok = 0;
			break;
		}
		for (int c = 0; c < n_counts; c++)
			if (!run_one(&b, &ops[i], counts[c], seconds))
				ok = 0;
		if (ops[i].run == op_find_many)
			destroy_many(&b);
	}

	cleanup(&b);
	b.m.f->C_CloseSession(b.setup);
	testmod_unload(&b.m);
	return ok ? 0 : 1;
}
