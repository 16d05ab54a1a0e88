/*
 * bench_calls — the cost of single PKCS#11 calls, for counting instructions
 * under callgrind (bench/callgrind.sh runs it; not a test: it never judges).
 *
 *   bench_calls [--single-thread] MODULE TOKEN_LABEL PIN WORKLOAD [ITERATIONS]
 *
 * First starts and joins one thread, so that the process is multi-threaded
 * whatever MODULE does (unless --single-thread): libproxy.so starts its
 * health-probe thread in C_Initialize, and from the first pthread_create on
 * glibc leaves its single-thread fast paths (malloc without arena locking,
 * system calls without cancellation points), which would make SoftHSM2's own
 * work dearer through the proxy than directly and count that as the proxy's.
 * Then loads MODULE the way an application does (tests/progs/testmod.h), logs in
 * to the token labelled TOKEN_LABEL, creates the one key WORKLOAD needs (fixed
 * labels, so that every run on a fresh token stores the same bytes), opens a
 * second R/W session, runs WORKLOAD a few times as a warm-up (lazy binding,
 * first-use caches), then ITERATIONS times (default 10000) in run_loop(), and
 * prints
 *
 *   RESULT workload=NAME iterations=N ns_per_iter=X
 *
 * Under `valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no`
 * only run_loop() is instrumented and counted: it starts the instrumentation
 * and toggles collection on before the first iteration and off after the last
 * (<valgrind/callgrind.h>; outside valgrind the requests do nothing, and
 * ns_per_iter is then the wall time of one iteration). Collection is per
 * thread, so the proxy's own threads (health probes) are not counted.
 * C_Initialize, login, key creation and cleanup are outside the count.
 *
 * Workloads (one PKCS#11 operation = one iteration):
 *   get_attribute       C_GetAttributeValue(CKA_CLASS, CKA_KEY_TYPE) of an
 *                       AES-256 token key
 *   aes256_gcm_enc_64   C_EncryptInit + C_Encrypt, CKM_AES_GCM, 64 bytes,
 *                       a new 12-byte IV each time, the same AES token key
 *   session_open_close  C_OpenSession (R/O) + C_CloseSession, while the
 *                       logged-in setup session stays open
 *   ecdsa_p256_sign     C_SignInit + C_Sign, CKM_ECDSA over 32 bytes, with
 *                       an EC P-256 token key
 * Whether virtual keys are on is the configuration's business (callgrind.sh
 * runs each workload with them off, and its *_vkey rows with them on).
 *
 * Exit status: 0 when every call returned CKR_OK, 1 otherwise, 2 on usage.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The valgrind package has it (tests/install-deps.sh); without it nothing is counted. */
#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#define CALLGRIND_TOGGLE_COLLECT
#endif

#include "../tests/progs/testmod.h"

#define WARMUP       20
#define GCM_IN_LEN   64
#define GCM_TAG_BITS 128

struct ctx {
	struct testmod m;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE setup, s;
	CK_OBJECT_HANDLE aes, ec_pub, ec_priv;
	uint64_t iv_counter;
	const char *why; /* the call that failed */
};

struct workload {
	const char *name;
	int (*setup)(struct ctx *c);
	CK_RV (*run)(struct ctx *c);
};

/* Not const: PKCS#11 templates take non-const pointers. */
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static char label_aes[] = "bench-calls-aes", label_ec[] = "bench-calls-ec";

#define ATTR(t, v)                                                                                 \
	{                                                                                          \
		(t), (void *)(v), sizeof(*(v))                                                     \
	}
#define ATTR_S(t, s)                                                                               \
	{                                                                                          \
		(t), (void *)(s), sizeof(s) - 1                                                    \
	}

static int fail_rv(const char *what, CK_RV rv)
{
	fprintf(stderr, "bench_calls: %s: 0x%08lx\n", what, (unsigned long)rv);
	return 0;
}

/* ---- keys ---- */

static int setup_aes(struct ctx *c)
{
	CK_ULONG vlen = 32;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ATTRIBUTE at[] = {
	    ATTR(CKA_CLASS, &cls),        ATTR(CKA_KEY_TYPE, &kt),   ATTR(CKA_VALUE_LEN, &vlen),
	    ATTR(CKA_TOKEN, &yes),        ATTR(CKA_PRIVATE, &yes),   ATTR(CKA_SENSITIVE, &yes),
	    ATTR(CKA_EXTRACTABLE, &no),   ATTR(CKA_ENCRYPT, &yes),   ATTR(CKA_DECRYPT, &yes),
	    ATTR_S(CKA_LABEL, label_aes), ATTR_S(CKA_ID, label_aes),
	};
	CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
	CK_RV rv;

	rv = c->m.f->C_GenerateKey(c->setup, &m, at, sizeof(at) / sizeof(at[0]), &c->aes);
	return rv == CKR_OK ? 1 : fail_rv("C_GenerateKey (AES-256)", rv);
}

static int setup_ec(struct ctx *c)
{
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pt[] = {
	    ATTR(CKA_TOKEN, &yes),
	    ATTR(CKA_VERIFY, &yes),
	    ATTR_S(CKA_LABEL, label_ec),
	    ATTR_S(CKA_ID, label_ec),
	    {CKA_EC_PARAMS, p256, sizeof(p256)},
	};
	CK_ATTRIBUTE st[] = {
	    ATTR(CKA_TOKEN, &yes), ATTR(CKA_PRIVATE, &yes),     ATTR(CKA_SENSITIVE, &yes),
	    ATTR(CKA_SIGN, &yes),  ATTR_S(CKA_LABEL, label_ec), ATTR_S(CKA_ID, label_ec),
	};
	CK_RV rv;

	rv = c->m.f->C_GenerateKeyPair(c->setup, &m, pt, sizeof(pt) / sizeof(pt[0]), st,
	                               sizeof(st) / sizeof(st[0]), &c->ec_pub, &c->ec_priv);
	return rv == CKR_OK ? 1 : fail_rv("C_GenerateKeyPair (EC P-256)", rv);
}

static int setup_none(struct ctx *c)
{
	return 1;
}

/* ---- one iteration of each workload ---- */

static CK_RV w_getattr(struct ctx *c)
{
	CK_OBJECT_CLASS cls;
	CK_KEY_TYPE kt;
	CK_ATTRIBUTE a[] = {ATTR(CKA_CLASS, &cls), ATTR(CKA_KEY_TYPE, &kt)};
	CK_RV rv;

	c->why = "C_GetAttributeValue";
	rv = c->m.f->C_GetAttributeValue(c->s, c->aes, a, 2);
	if (rv == CKR_OK && (cls != CKO_SECRET_KEY || kt != CKK_AES)) {
		c->why = "C_GetAttributeValue (values)";
		return CKR_GENERAL_ERROR;
	}
	return rv;
}

static CK_RV w_gcm(struct ctx *c)
{
	CK_FUNCTION_LIST *f = c->m.f;
	CK_BYTE iv[12], in[GCM_IN_LEN], out[GCM_IN_LEN + GCM_TAG_BITS / 8];
	CK_GCM_PARAMS p = {0};
	CK_MECHANISM m = {CKM_AES_GCM, &p, sizeof(p)};
	CK_ULONG len = sizeof(out);
	CK_RV rv;

	memset(iv, 0, 4);
	memcpy(iv + 4, &c->iv_counter, 8);
	c->iv_counter++;
	memset(in, 0xa5, sizeof(in));
	p.pIv = iv;
	p.ulIvLen = sizeof(iv);
	p.ulIvBits = sizeof(iv) * 8;
	p.ulTagBits = GCM_TAG_BITS;
	c->why = "C_EncryptInit";
	rv = f->C_EncryptInit(c->s, &m, c->aes);
	if (rv != CKR_OK)
		return rv;
	c->why = "C_Encrypt";
	rv = f->C_Encrypt(c->s, in, sizeof(in), out, &len);
	if (rv == CKR_OK && len != sizeof(out)) {
		c->why = "C_Encrypt (output length)";
		return CKR_GENERAL_ERROR;
	}
	return rv;
}

static CK_RV w_session(struct ctx *c)
{
	CK_SESSION_HANDLE s;
	CK_RV rv;

	c->why = "C_OpenSession";
	rv = c->m.f->C_OpenSession(c->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK)
		return rv;
	c->why = "C_CloseSession";
	return c->m.f->C_CloseSession(s);
}

static CK_RV w_ecdsa(struct ctx *c)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	CK_BYTE data[32], sig[64];
	CK_ULONG len = sizeof(sig);
	CK_RV rv;

	memset(data, 0x5a, sizeof(data));
	c->why = "C_SignInit";
	rv = c->m.f->C_SignInit(c->s, &m, c->ec_priv);
	if (rv != CKR_OK)
		return rv;
	c->why = "C_Sign";
	rv = c->m.f->C_Sign(c->s, data, sizeof(data), sig, &len);
	if (rv == CKR_OK && len != sizeof(sig)) {
		c->why = "C_Sign (signature length)";
		return CKR_GENERAL_ERROR;
	}
	return rv;
}

static const struct workload workloads[] = {
    {"get_attribute", setup_aes, w_getattr},
    {"aes256_gcm_enc_64", setup_aes, w_gcm},
    {"session_open_close", setup_none, w_session},
    {"ecdsa_p256_sign", setup_ec, w_ecdsa},
};
#define N_WORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

/*
 * The measured region: instrumentation and collection are on exactly while
 * this runs (noinline, so that --toggle-collect=run_loop would do the same).
 */
__attribute__((noinline)) static CK_RV run_loop(struct ctx *c, const struct workload *w,
                                                unsigned long n)
{
	CK_RV rv = CKR_OK;

	CALLGRIND_START_INSTRUMENTATION;
	CALLGRIND_TOGGLE_COLLECT;
	for (unsigned long i = 0; i < n && rv == CKR_OK; i++)
		rv = w->run(c);
	CALLGRIND_TOGGLE_COLLECT;
	CALLGRIND_STOP_INSTRUMENTATION;
	return rv;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void destroy(struct ctx *c, CK_OBJECT_HANDLE h)
{
	CK_RV rv;

	if (h == CK_INVALID_HANDLE)
		return;
	rv = c->m.f->C_DestroyObject(c->setup, h);
	if (rv != CKR_OK)
		fail_rv("C_DestroyObject", rv);
}

static void *idle_thread(void *arg)
{
	return arg;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_calls [--single-thread] MODULE TOKEN_LABEL PIN WORKLOAD "
	                "[ITERATIONS]\n"
	                "workloads:");
	for (size_t i = 0; i < N_WORKLOADS; i++)
		fprintf(stderr, " %s", workloads[i].name);
	fprintf(stderr, "\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static struct ctx c;
	const struct workload *w = NULL;
	unsigned long n = 10000;
	uint64_t t0, t1;
	CK_RV rv = CKR_OK;
	pthread_t t;
	int ok = 0;

	if (argc > 1 && strcmp(argv[1], "--single-thread") == 0) {
		argv++;
		argc--;
	} else if (pthread_create(&t, NULL, idle_thread, NULL) != 0 || pthread_join(t, NULL) != 0) {
		fprintf(stderr, "bench_calls: cannot start a thread\n");
		return 1;
	}
	if (argc != 5 && argc != 6)
		usage();
	for (size_t i = 0; i < N_WORKLOADS; i++)
		if (strcmp(argv[4], workloads[i].name) == 0)
			w = &workloads[i];
	if (w == NULL)
		usage();
	if (argc == 6) {
		char *end;

		n = strtoul(argv[5], &end, 10);
		if (*end != '\0' || n == 0 || n > 100000000ul)
			usage();
	}
	c.aes = c.ec_pub = c.ec_priv = CK_INVALID_HANDLE;
	c.s = CK_INVALID_HANDLE;

	if (!testmod_load(&c.m, argv[1]))
		return 1;
	if (!testmod_find_token(&c.m, argv[2], &c.slot) ||
	    !testmod_session(&c.m, argv[2], argv[3], &c.setup))
		goto out;
	if (!w->setup(&c))
		goto cleanup;
	rv = c.m.f->C_OpenSession(c.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &c.s);
	if (rv != CKR_OK) {
		c.s = CK_INVALID_HANDLE;
		fail_rv("C_OpenSession", rv);
		goto cleanup;
	}
	for (int i = 0; i < WARMUP && rv == CKR_OK; i++)
		rv = w->run(&c);
	if (rv == CKR_OK) {
		t0 = now_ns();
		rv = run_loop(&c, w, n);
		t1 = now_ns();
	}
	if (rv != CKR_OK) {
		fail_rv(c.why, rv);
		goto cleanup;
	}
	printf("RESULT workload=%s iterations=%lu ns_per_iter=%.1f\n", w->name, n,
	       (double)(t1 - t0) / (double)n);
	ok = 1;
cleanup:
	if (c.s != CK_INVALID_HANDLE)
		c.m.f->C_CloseSession(c.s);
	destroy(&c, c.ec_priv);
	destroy(&c, c.ec_pub);
	destroy(&c, c.aes);
	c.m.f->C_CloseSession(c.setup);
out:
	testmod_unload(&c.m);
	return ok ? 0 : 1;
}
