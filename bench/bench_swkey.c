/*
 * bench_swkey — the software-key engine (crypto/swkey.h) beside `openssl
 * speed`, in the same run (information only).
 *
 *   bench_swkey [SECONDS [THREADS,... [ROUNDS]]]   (defaults: 1, "1,2", 3)
 *   bench_swkey speed [SECONDS [OP]]   (openssl speed alone, one line per operation,
 *                                       or OP's only: bench_swkeys' names)
 *
 * In speed mode the AES-GCM lines also carry `openssl speed -aead`'s figure
 * (aead_ops_s): its loop sets the IV, feeds 13 bytes of AAD, encrypts and
 * finishes the tag per message, the work of one PKCS#11 C_EncryptInit +
 * C_Encrypt on a key kept keyed, where plain `-evp aes-256-gcm` only streams
 * EVP_EncryptUpdate (no IV, no tag).
 *
 * Operations: AES-256-GCM encrypt of 1 KiB and 16 KiB, HMAC-SHA256 of 1 KiB,
 * ECDSA P-256 sign (CKM_ECDSA on a 32-byte hash), Ed25519 sign (32 bytes),
 * RSA-2048 sign (CKM_RSA_PKCS on a 51-byte DigestInfo), all single-part, each
 * at every thread count on one shared key. AES-256-GCM runs twice: "per-op"
 * (the engine's default: a keyed OpenSSL context made and cleansed per
 * operation) and "cached" (P11P_SWKEY_CACHE_CTX: one kept per key, the
 * choice key hygiene rules out); HMAC runs once ("per-op": the engine's keyed
 * SHA-2 states, kept in locked memory, copied per operation; the flag does
 * not change HMAC). `openssl speed -mr` measures the same
 * algorithm and size in one process; at N threads the engine is compared with
 * N times that (perfect scaling of openssl speed). The engine and openssl speed
 * alternate ROUNDS times and the best of each is kept (the machine is
 * shared: the best run is the one least disturbed). One line per measurement:
 *   RESULT part=swkey op=OP threads=N mode=MODE ops_s=W cpu_ops_s=C speed_ops_s=S
 *          ratio=C/S scaling=W/W(1 thread) cpu_scaling=C/C(1 thread)
 * Then, for AES-256-GCM 1 KiB and HMAC-SHA256 1 KiB, OpenSSL alone (no engine,
 * one thread, CPU time, best of ROUNDS), the ways to handle the keyed context,
 * the measurement behind the engine's choice (issue 12 item 4):
 *   RESULT part=swkey_evp op=OP way=WAY ns_op=N speed_ns_op=S ratio=S/N
 * WAY: "new-free" (a context made, keyed and freed per operation, through
 * EVP), "provider" (the same through the cipher provider's own functions,
 * crypto/cipher.h: the engine's way for ciphers), "rekey-scrub" (one context kept, keyed per
 * operation, then re-keyed with an all-zero key so that no key schedule
 * outlives the operation: the engine's HMAC way before hmac13), "keyed" (one
 * keyed context kept: the key schedule in the heap), and for HMAC
 * "sha-states" (the keyed inner and outer SHA-256 states kept, copied to a
 * working state per operation, hashed and finished with SHA-256's own calls:
 * the engine's HMAC way, its states in locked memory).
 * (ops_s is wall clock; cpu_ops_s sums per-thread ops per CPU second, which is
 * how `openssl speed` counts, so the ratio compares like with like on a busy
 * machine; the wall-clock scaling is only meaningful on an idle one) and a table. To add a column
 * (the proxy, SoftHSM2), add a runner beside engine_run() and print it in report(); to add an
 * operation, a row of ops[].
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "base/ossl.h"
#include "crypto/cipher.h"
#include "crypto/swkey.h"

struct op {
	const char *name;
	const char *short_name; /* bench_swkeys' name of the same operation */
	const char *speed_args; /* `openssl speed -mr` arguments */
	const char *aead_args;  /* the same per AEAD message (-aead), or NULL */
	const char *speed_tag;  /* the +F line to read: "+F:", "+F2:", "+F4:", "+F6:" */
	size_t len;             /* input bytes */
	int kind;               /* 0 GCM, 1 HMAC, 2 ECDSA, 3 Ed25519, 4 RSA */
};

static const struct op ops[] = {
    {"aes256gcm_1k", "gcm1k", "-evp aes-256-gcm -bytes 1024", "-aead -evp aes-256-gcm -bytes 1024",
     "+F:", 1024, 0},
    {"aes256gcm_16k", "gcm16k", "-evp aes-256-gcm -bytes 16384",
     "-aead -evp aes-256-gcm -bytes 16384", "+F:", 16384, 0},
    {"hmac_sha256_1k", "hmac", "-hmac sha256 -bytes 1024", NULL, "+F:", 1024, 1},
    {"ecdsa_p256_sign", "ecdsa", "ecdsap256", NULL, "+F4:", 32, 2},
    {"ed25519_sign", "ed25519", "ed25519", NULL, "+F6:", 32, 3},
    {"rsa2048_sign", "rsa2048", "rsa2048", NULL, "+F2:", 51, 4},
};
#define N_OPS (sizeof(ops) / sizeof(ops[0]))

static double secs = 1;
static int rounds = 3;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static CK_RV rnd(void *arg, unsigned char *buf, size_t len)
{
	(void)arg;
	return RAND_bytes(buf, (int)len) == 1 ? CKR_OK : CKR_FUNCTION_FAILED;
}

struct worker {
	const struct op *op;
	struct p11p_swkey *key;
	unsigned long n;
	double cpu; /* the thread's CPU seconds */
	CK_RV rv;
};

static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	unsigned char *in = calloc(1, w->op->len + 64), *out = calloc(1, w->op->len + 600);
	unsigned char iv[12] = {0};
	CK_GCM_PARAMS gp = {iv, 12, 96, NULL, 0, 128};
	CK_MECHANISM m;
	CK_ULONG len;
	double end;

	if (in == NULL || out == NULL) {
		w->rv = CKR_HOST_MEMORY;
		goto out;
	}
	switch (w->op->kind) {
	case 0:
		m = (CK_MECHANISM){CKM_AES_GCM, &gp, sizeof(gp)};
		break;
	case 1:
		m = (CK_MECHANISM){CKM_SHA256_HMAC, NULL, 0};
		break;
	case 2:
		m = (CK_MECHANISM){CKM_ECDSA, NULL, 0};
		break;
	case 3:
		m = (CK_MECHANISM){CKM_EDDSA, NULL, 0};
		break;
	default:
		m = (CK_MECHANISM){CKM_RSA_PKCS, NULL, 0};
		break;
	}
	end = now_s() + secs;
	w->cpu = cpu_s();
	while (w->rv == CKR_OK) {
		for (int i = 0; i < 16 && w->rv == CKR_OK; i++) {
			len = w->op->len + 600;
			w->rv = w->op->kind == 0
			            ? p11p_swkey_encrypt(w->key, &m, in, w->op->len, out, &len)
			            : p11p_swkey_sign(w->key, &m, in, w->op->len, out, &len);
			w->n++;
		}
		if (now_s() >= end)
			break;
	}
	w->cpu = cpu_s() - w->cpu;
out:
	free(in);
	free(out);
	return NULL;
}

static struct p11p_swkey *make_key(const struct op *op, unsigned flags)
{
	static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
	                                     0xce, 0x3d, 0x03, 0x01, 0x07};
	static const unsigned char ed[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
	struct p11p_swkey_pair_spec spec = {0};
	struct p11p_swkey *key = NULL;
	CK_RV rv;

	switch (op->kind) {
	case 0:
		rv = p11p_swkey_generate(CKK_AES, 32, rnd, NULL, flags, &key);
		break;
	case 1:
		rv = p11p_swkey_generate(CKK_GENERIC_SECRET, 32, rnd, NULL, flags, &key);
		break;
	default:
		spec.type = op->kind == 2 ? CKK_EC : op->kind == 3 ? CKK_EC_EDWARDS : CKK_RSA;
		spec.ec_params = op->kind == 2 ? p256 : ed;
		spec.ec_params_len = op->kind == 2 ? sizeof(p256) : sizeof(ed);
		spec.modulus_bits = 2048;
		rv = p11p_swkey_generate_pair(&spec, rnd, NULL, flags, &key, NULL);
		break;
	}
	if (rv != CKR_OK) {
		fprintf(stderr, "bench_swkey: %s: key: 0x%lx\n", op->name, (unsigned long)rv);
		return NULL;
	}
	return key;
}

/*
 * ops/s of the engine on one key shared by `threads` threads (wall clock), and
 * in *cpu the sum over threads of ops per CPU second (what `openssl speed`
 * reports: it times user CPU, and -multi adds up its processes); < 0 on error.
 */
static double engine_run(const struct op *op, struct p11p_swkey *key, int threads, double *cpu)
{
	struct worker w[16];
	pthread_t th[16];
	unsigned long total = 0;
	double t0 = now_s(), t;

	*cpu = 0;
	for (int i = 0; i < threads; i++) {
		w[i] = (struct worker){op, key, 0, 0, CKR_OK};
		if (pthread_create(&th[i], NULL, work, &w[i]) != 0)
			return -1;
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		if (w[i].rv != CKR_OK) {
			fprintf(stderr, "bench_swkey: %s: 0x%lx\n", op->name,
			        (unsigned long)w[i].rv);
			return -1;
		}
		total += w[i].n;
		*cpu += w[i].cpu > 0 ? (double)w[i].n / w[i].cpu : 0;
	}
	t = now_s() - t0;
	return (double)total / t;
}

/*
 * ops/s from `openssl speed -mr` (one process: user CPU time); < 0 when it
 * cannot be read. Not -multi: its processes report wall-clock rates, which a
 * busy machine depresses, while the single process reports CPU-time rates.
 */
static double speed_run_args(const struct op *op, const char *args)
{
	char cmd[256], line[512];
	FILE *p;
	double v = -1;

	snprintf(cmd, sizeof(cmd), "openssl speed -mr -seconds %d %s 2>/dev/null",
	         secs < 1 ? 1 : (int)secs, args);
	p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	while (fgets(line, sizeof(line), p) != NULL) {
		char *f[8] = {0};
		int nf = 0;

		if (strncmp(line, op->speed_tag, strlen(op->speed_tag)) != 0)
			continue;
		for (char *s = strtok(line, ":\n"); s != NULL && nf < 8; s = strtok(NULL, ":\n"))
			f[nf++] = s;
		if (op->kind <= 1 && nf >= 4 && strcasestr(f[2], op->kind == 0 ? "gcm" : "sha256"))
			v = strtod(f[3], NULL) / (double)op->len; /* bytes/s */
		else if ((op->kind == 2 || op->kind == 4) && nf >= 4)
			v = strtod(f[3], NULL); /* sign/s */
		else if (op->kind == 3 && nf >= 5)
			v = strtod(f[4], NULL);
	}
	pclose(p);
	return v;
}

static double speed_run(const struct op *op)
{
	return speed_run_args(op, op->speed_args);
}

/* ---- OpenSSL alone: the three ways of handling a keyed context ---------------- */

enum way { WAY_NEW_FREE, WAY_PROVIDER, WAY_REKEY_SCRUB, WAY_KEYED, WAY_SHA_STATES, WAY_N };
static const char *const way_names[WAY_N] = {"new-free", "provider", "rekey-scrub", "keyed",
                                             "sha-states"};

struct evp_bench {
	EVP_CIPHER *gcm;
	struct p11p_cipher pgcm; /* provider: the same cipher through crypto/cipher.h */
	EVP_MAC *hmac;
	EVP_MAC_CTX *tmpl; /* HMAC, SHA256 chosen, no key */
	SHA256_CTX st[2];  /* sha-states: after key ^ ipad, key ^ opad */
	unsigned char key[32], zero[32], iv[12], in[1024], out[1024 + 64];
};

/*
 * sha-states, as the engine does it (crypto/swop.c): st[] computed once, per
 * operation a working copy of the inner state, the outer one over its digest.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static void sha_states_key(struct evp_bench *b)
{
	unsigned char pad[64];

	for (int x = 0; x < 2; x++) {
		for (int i = 0; i < 64; i++)
			pad[i] = (unsigned char)((i < 32 ? b->key[i] : 0) ^ (x ? 0x5c : 0x36));
		SHA256_Init(&b->st[x]);
		SHA256_Update(&b->st[x], pad, sizeof(pad));
	}
	OPENSSL_cleanse(pad, sizeof(pad));
}

static bool sha_states_hmac(struct evp_bench *b)
{
	SHA256_CTX w = b->st[0];
	unsigned char ih[32];

	SHA256_Update(&w, b->in, sizeof(b->in));
	SHA256_Final(ih, &w);
	w = b->st[1];
	SHA256_Update(&w, ih, sizeof(ih));
	SHA256_Final(b->out, &w);
	OPENSSL_cleanse(&w, sizeof(w));
	OPENSSL_cleanse(ih, sizeof(ih));
	return true;
}
#pragma GCC diagnostic pop

/* One AES-256-GCM encryption of 1 KiB (IV, data, final, tag) on ctx; key NULL: ctx keyed. */
static bool evp_gcm(struct evp_bench *b, EVP_CIPHER_CTX *ctx, const EVP_CIPHER *c,
                    const unsigned char *key)
{
	int n = 0, m = 0;

	return EVP_EncryptInit_ex2(ctx, c, key, b->iv, NULL) &&
	       EVP_EncryptUpdate(ctx, b->out, &n, b->in, (int)sizeof(b->in)) &&
	       EVP_EncryptFinal_ex(ctx, b->out + n, &m) &&
	       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, b->out + n + m) > 0;
}

/* The same through its provider's functions (crypto/cipher.h), a context per operation. */
static bool provider_gcm(struct evp_bench *b)
{
	void *x = p11p_cipher_ctx_new(&b->pgcm);
	size_t n = 0, m = 0;
	bool ok =
	    x != NULL &&
	    p11p_cipher_init(&b->pgcm, x, true, b->key, sizeof(b->key), b->iv, sizeof(b->iv)) &&
	    p11p_cipher_update(&b->pgcm, x, b->out, &n, b->in, sizeof(b->in)) &&
	    p11p_cipher_final(&b->pgcm, x, b->out + n, &m) &&
	    p11p_cipher_get_tag(&b->pgcm, x, b->out + n + m, 16);

	p11p_cipher_ctx_free(&b->pgcm, x);
	return ok;
}

static bool evp_hmac(struct evp_bench *b, EVP_MAC_CTX *ctx, const unsigned char *key)
{
	size_t n = 0;

	return EVP_MAC_init(ctx, key, key != NULL ? sizeof(b->key) : 0, NULL) &&
	       EVP_MAC_update(ctx, b->in, sizeof(b->in)) &&
	       EVP_MAC_final(ctx, b->out, &n, sizeof(b->out));
}

/* ns per operation (process CPU time) of `way` on GCM (hmac false) or HMAC; < 0 on error. */
static double evp_run(struct evp_bench *b, bool hmac, enum way way)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	EVP_MAC_CTX *m = EVP_MAC_CTX_dup(b->tmpl);
	unsigned long n = 0;
	double end = now_s() + secs, cpu0;
	bool ok = c != NULL && m != NULL;

	if (ok && way == WAY_SHA_STATES) { /* the states, once; checked against EVP_MAC */
		unsigned char want[32];

		sha_states_key(b);
		ok = hmac && evp_hmac(b, m, b->key);
		memcpy(want, b->out, sizeof(want));
		ok = ok && sha_states_hmac(b) && memcmp(want, b->out, sizeof(want)) == 0;
	} else if (ok && way != WAY_NEW_FREE && way != WAY_PROVIDER) { /* kept, keyed once */
		ok = hmac ? evp_hmac(b, m, b->key) : evp_gcm(b, c, b->gcm, b->key);
	}
	cpu0 = cpu_s();
	while (ok && now_s() < end) {
		for (int i = 0; i < 64 && ok; i++, n++) {
			if (way == WAY_SHA_STATES) {
				ok = sha_states_hmac(b);
			} else if (way == WAY_PROVIDER) {
				ok = provider_gcm(b);
			} else if (way == WAY_NEW_FREE && hmac) {
				EVP_MAC_CTX *x = EVP_MAC_CTX_dup(b->tmpl);

				ok = x != NULL && evp_hmac(b, x, b->key);
				EVP_MAC_CTX_free(x);
			} else if (way == WAY_NEW_FREE) {
				EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();

				ok = x != NULL && evp_gcm(b, x, b->gcm, b->key);
				EVP_CIPHER_CTX_free(x);
			} else if (way == WAY_REKEY_SCRUB && hmac) {
				ok = evp_hmac(b, m, b->key) &&
				     EVP_MAC_init(m, b->zero, sizeof(b->zero), NULL);
			} else if (way == WAY_REKEY_SCRUB) {
				ok = evp_gcm(b, c, NULL, b->key) &&
				     EVP_EncryptInit_ex2(c, NULL, b->zero, NULL, NULL);
			} else {
				ok = hmac ? evp_hmac(b, m, NULL) : evp_gcm(b, c, NULL, NULL);
			}
		}
	}
	cpu0 = cpu_s() - cpu0;
	EVP_CIPHER_CTX_free(c);
	EVP_MAC_CTX_free(m);
	OPENSSL_cleanse(b->st, sizeof(b->st));
	return ok && n > 0 ? cpu0 / (double)n * 1e9 : -1;
}

/* The part=swkey_evp lines and table; speed_ns: openssl speed's ns per operation. */
static int evp_report(const double speed_ns[2])
{
	OSSL_PARAM params[2];
	struct evp_bench *b = calloc(1, sizeof(*b));
	char md[] = "SHA256";
	int rc = 0;

	if (b == NULL)
		return 1;
	b->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	b->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	b->tmpl = b->hmac != NULL ? EVP_MAC_CTX_new(b->hmac) : NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, md, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (b->gcm == NULL || !p11p_cipher_fetch(&b->pgcm, NULL, "AES-256-GCM") ||
	    b->tmpl == NULL || !EVP_MAC_CTX_set_params(b->tmpl, params) ||
	    RAND_bytes(b->key, sizeof(b->key)) != 1) {
		fprintf(stderr, "bench_swkey: OpenSSL set-up failed\n");
		rc = 1;
		goto out;
	}
	printf("\nOpenSSL alone, 1 thread, CPU time (the keyed context: new-free per operation, "
	       "rekey-scrub, keyed; HMAC: sha-states)\n");
	printf("%-16s %-12s %9s %9s %6s\n", "operation", "way", "ns/op", "speed ns", "ratio");
	for (int h = 0; h < 2; h++) {
		for (int w = 0; w < WAY_N; w++) {
			double best = -1;

			if ((w == WAY_SHA_STATES && h == 0) || (w == WAY_PROVIDER && h == 1))
				continue; /* HMAC only; GCM only */
			for (int r = 0; r < rounds; r++) {
				double v = evp_run(b, h == 1, (enum way)w);

				if (v < 0) {
					rc = 1;
					break;
				}
				best = best < 0 || v < best ? v : best;
			}
			if (best < 0)
				continue;
			printf("RESULT part=swkey_evp op=%s way=%s ns_op=%.0f speed_ns_op=%.0f "
			       "ratio=%.2f\n",
			       h ? "hmac_sha256_1k" : "aes256gcm_1k", way_names[w], best,
			       speed_ns[h], speed_ns[h] > 0 ? speed_ns[h] / best : 0);
			printf("%-16s %-12s %9.0f %9.0f %6.2f\n",
			       h ? "hmac_sha256_1k" : "aes256gcm_1k", way_names[w], best,
			       speed_ns[h], speed_ns[h] > 0 ? speed_ns[h] / best : 0);
		}
	}
out:
	EVP_MAC_CTX_free(b->tmpl);
	EVP_MAC_free(b->hmac);
	EVP_CIPHER_free(b->gcm);
	p11p_cipher_release(&b->pgcm);
	OPENSSL_cleanse(b->key, sizeof(b->key));
	free(b);
	return rc;
}

int main(int argc, char **argv)
{
	int threads[4] = {1, 2}, nthreads = 2;
	int rc = 0;
	double speed_ns[2] = {-1, -1}; /* openssl speed: GCM 1 KiB, HMAC 1 KiB */

	if (argc > 1 && strcmp(argv[1], "speed") == 0) {
		/*
		 * `bench_swkey speed [SECONDS [OP]]`: openssl speed alone on
		 * each operation (or OP), named as bench_swkeys names them
		 * (bench_swkeys runs it right after each of its runs):
		 *   RESULT side=speed op=OP ops_s=X [aead_ops_s=Y]   (Y: AES-GCM, -aead)
		 */
		secs = argc > 2 && atof(argv[2]) > 0 ? atof(argv[2]) : 1;
		for (size_t i = 0; i < N_OPS; i++) {
			double v, a;

			if (argc > 3 && strcmp(argv[3], ops[i].short_name) != 0)
				continue;
			v = speed_run(&ops[i]);

			if (v <= 0) {
				fprintf(stderr, "bench_swkey: openssl speed %s failed\n",
				        ops[i].speed_args);
				rc = 1;
				continue;
			}
			if (ops[i].aead_args == NULL) {
				printf("RESULT side=speed op=%s ops_s=%.0f\n", ops[i].short_name,
				       v);
				continue;
			}
			a = speed_run_args(&ops[i], ops[i].aead_args);
			if (a <= 0) {
				fprintf(stderr, "bench_swkey: openssl speed %s failed\n",
				        ops[i].aead_args);
				rc = 1;
				continue;
			}
			printf("RESULT side=speed op=%s ops_s=%.0f aead_ops_s=%.0f\n",
			       ops[i].short_name, v, a);
		}
		return rc;
	}
	if (argc > 1)
		secs = atof(argv[1]);
	if (secs <= 0)
		secs = 1;
	if (argc > 2) {
		char *dup = strdup(argv[2]);

		nthreads = 0;
		for (char *s = strtok(dup, ","); s != NULL && nthreads < 4; s = strtok(NULL, ","))
			if (atoi(s) >= 1 && atoi(s) <= 16)
				threads[nthreads++] = atoi(s);
		free(dup);
	}
	if (argc > 3)
		rounds = atoi(argv[3]);
	if (rounds < 1 || rounds > 20)
		rounds = 3;
	printf("%-16s %3s %-7s %11s %11s %11s %6s %8s\n", "operation", "thr", "mode", "wall op/s",
	       "cpu op/s", "speed op/s", "ratio", "scaling");
	for (size_t i = 0; i < N_OPS; i++) {
		const struct op *op = &ops[i];

		double speed[4] = {-1, -1, -1, -1};

		for (int mode = 0; mode < (op->kind == 0 ? 2 : 1); mode++) {
			struct p11p_swkey *key = make_key(op, mode ? P11P_SWKEY_CACHE_CTX : 0);
			const char *mname = mode ? "cached" : "per-op";
			double first = 0, first_cpu = 0;

			if (key == NULL) {
				rc = 1;
				continue;
			}
			for (int t = 0; t < nthreads; t++) {
				double e = 0, c = 0, ratio;

				/* openssl speed alternates with the first mode's runs only */
				for (int r = 0; r < rounds && e >= 0; r++) {
					double cr = 0, er = engine_run(op, key, threads[t], &cr);
					double sr = mode == 0 && t == 0 ? speed_run(op) : -1;

					e = er < 0 ? er : er > e ? er : e;
					c = cr > c ? cr : c;
					speed[t] = sr > speed[t] ? sr : speed[t];
				}
				if (e < 0) {
					rc = 1;
					break;
				}
				if (t > 0)
					speed[t] =
					    speed[0] > 0 ? speed[0] * threads[t] / threads[0] : -1;
				ratio = speed[t] > 0 ? c / speed[t] : 0;
				if (t == 0)
					first = e, first_cpu = c;
				printf(
				    "RESULT part=swkey op=%s threads=%d mode=%s ops_s=%.0f "
				    "cpu_ops_s=%.0f "
				    "speed_ops_s=%.0f ratio=%.2f scaling=%.2f cpu_scaling=%.2f\n",
				    op->name, threads[t], mname, e, c, speed[t], ratio,
				    first > 0 ? e / first : 0, first_cpu > 0 ? c / first_cpu : 0);
				printf("%-16s %3d %-7s %11.0f %11.0f %11.0f %6.2f %8.2f\n",
				       op->name, threads[t], mname, e, c, speed[t], ratio,
				       first > 0 ? e / first : 0);
			}
			p11p_swkey_free(key);
		}
		if ((i == 0 || i == 2) && speed[0] > 0)
			speed_ns[i / 2] = 1e9 / speed[0];
	}
	if (evp_report(speed_ns) != 0)
		rc = 1;
	p11p_ossl_ctx_free();
	return rc;
}
