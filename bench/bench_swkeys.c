/*
 * bench_swkeys — software keys through the proxy against HSM keys of SoftHSM2
 * (information only; bench/run.sh part "swkeys" runs both in one run).
 *
 *   bench_swkeys MODULE TOKEN PIN SOFTWARE SECONDS THREADS OP...
 *
 * SOFTWARE 1: the keys are made with CKA_P11PROXY_SOFTWARE (token keys of a
 * slot with software_keys:, MODULE being libproxy.so); 0: ordinary session
 * keys of the token (SoftHSM2 directly). Each of THREADS threads opens its
 * own session and runs OP for SECONDS on the shared keys. OP: gcm1k, gcm16k
 * (AES-256-GCM single-part encrypt), hmac (HMAC-SHA256 of 1 KiB), ecdsa
 * (CKM_ECDSA on a 32-byte hash, P-256), ed25519 (CKM_EDDSA, 64 bytes),
 * rsa2048 (CKM_SHA256_RSA_PKCS of 32 bytes). One line per OP:
 *   RESULT op=OP threads=N ops_s=X cpu_ops_s=C vcsw_per_kop=V ops=T
 * ops_s is wall clock, all threads together; cpu_ops_s adds up each thread's
 * operations per CPU second of that thread (the work of both modules runs in
 * the calling thread), which other processes on a busy machine move much less:
 * bench/run.sh divides the 2-thread figures by the 1-thread ones (scaling).
 * Off-CPU waits do not show in cpu_ops_s, so vcsw_per_kop counts the
 * threads' voluntary context switches per 1000 operations: a lock that
 * serialises the threads makes them sleep on it (a futex wait), while the
 * load of other processes causes involuntary switches only. ops: the
 * operations made in all (under callgrind, --toggle-collect=worker gives the
 * instructions per operation: bench/README.md).
 */
#include <pthread.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11proxy.h>

#include "../tests/progs/testmod.h"

static struct testmod mod;
static CK_FUNCTION_LIST *f;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_SLOT_ID slot;
static double secs;
static CK_OBJECT_HANDLE k_aes, k_mac, k_ec, k_ed, k_rsa;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * BENCH_SWKEYS_SPEED set (bench/run.sh: "bench_swkey speed SECONDS"): that
 * command run with OP right after OP's run, its RESULT lines copied with the
 * thread count, so that the reference is measured within seconds of the run
 * it is compared with (this machine's speed drifts). Nonzero when it failed.
 */
static int reference(const char *op, int threads)
{
	const char *cmd = getenv("BENCH_SWKEYS_SPEED");
	char line[512], full[1024];
	int found = 0;
	FILE *p;

	if (cmd == NULL || *cmd == '\0')
		return 0;
	snprintf(full, sizeof(full), "%s %s", cmd, op);
	p = popen(full, "r");
	if (p == NULL)
		return 1;
	while (fgets(line, sizeof(line), p) != NULL) {
		if (strncmp(line, "RESULT side=speed ", 18) != 0)
			continue;
		printf("RESULT side=speed threads=%d %s", threads, line + 18);
		found = 1;
	}
	if (pclose(p) != 0 || !found) {
		fprintf(stderr, "bench_swkeys: %s: no openssl speed figure\n", full);
		return 1;
	}
	fflush(stdout);
	return 0;
}

static CK_RV secret(CK_SESSION_HANDLE s, CK_KEY_TYPE kt, int sw, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	unsigned char v[32];
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_VALUE, v, sizeof(v)},
	    {CKA_ENCRYPT, &yes, 1},
	    {CKA_SIGN, &yes, 1},
	    {CKA_TOKEN, sw ? &yes : &no, 1},
	    {CKA_P11PROXY_SOFTWARE, &yes, 1},
	};

	memset(v, 0x42, sizeof(v));
	return f->C_CreateObject(s, t, sw ? 7 : 6, out);
}

static CK_RV pair(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mt, const unsigned char *params,
                  size_t plen, int sw, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM m = {mt, NULL, 0};
	CK_ULONG bits = 2048;
	CK_OBJECT_HANDLE pub;
	CK_ATTRIBUTE tpub[] = {
	    {params ? CKA_EC_PARAMS : CKA_MODULUS_BITS, params ? (void *)params : (void *)&bits,
	     params ? plen : sizeof(bits)},
	    {CKA_TOKEN, sw ? &yes : &no, 1},
	    {CKA_VERIFY, &yes, 1},
	};
	CK_ATTRIBUTE tpriv[] = {
	    {CKA_SIGN, &yes, 1},
	    {CKA_TOKEN, sw ? &yes : &no, 1},
	    {CKA_P11PROXY_SOFTWARE, &yes, 1},
	};

	return f->C_GenerateKeyPair(s, &m, tpub, 3, tpriv, sw ? 3 : 2, &pub, priv);
}

struct job {
	const char *op;
	long n;
	double cpu; /* the thread's CPU seconds in the loop */
	long vcsw;  /* its voluntary context switches in the loop */
	CK_RV rv;
};

static long vcsw_now(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_nvcsw : 0;
}

static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static CK_RV one(CK_SESSION_HANDLE s, const char *op, unsigned char *buf, unsigned char *out)
{
	unsigned char iv[12] = {0};
	CK_GCM_PARAMS gp = {iv, 12, 96, NULL, 0, 128};
	CK_MECHANISM gcm = {CKM_AES_GCM, &gp, sizeof(gp)}, mac = {CKM_SHA256_HMAC, NULL, 0},
	             ecdsa = {CKM_ECDSA, NULL, 0}, eddsa = {CKM_EDDSA, NULL, 0},
	             rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
	CK_ULONG n = 17000;
	CK_RV rv;

	if (strncmp(op, "gcm", 3) == 0) {
		CK_ULONG len = strcmp(op, "gcm16k") == 0 ? 16384 : 1024;

		rv = f->C_EncryptInit(s, &gcm, k_aes);
		return rv == CKR_OK ? f->C_Encrypt(s, buf, len, out, &n) : rv;
	}
	if (strcmp(op, "hmac") == 0)
		rv = f->C_SignInit(s, &mac, k_mac);
	else if (strcmp(op, "ecdsa") == 0)
		rv = f->C_SignInit(s, &ecdsa, k_ec);
	else if (strcmp(op, "ed25519") == 0)
		rv = f->C_SignInit(s, &eddsa, k_ed);
	else
		rv = f->C_SignInit(s, &rsa, k_rsa);
	if (rv != CKR_OK)
		return rv;
	return f->C_Sign(s, buf,
	                 strcmp(op, "hmac") == 0      ? 1024
	                 : strcmp(op, "ed25519") == 0 ? 64
	                                              : 32,
	                 out, &n);
}

static void *worker(void *arg)
{
	struct job *j = arg;
	static unsigned char zero[16384];
	unsigned char *out = malloc(17000);
	CK_SESSION_HANDLE s;
	double end;

	j->rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (j->rv != CKR_OK || out == NULL) {
		free(out);
		return NULL;
	}
	end = now_s() + secs;
	j->cpu = cpu_s();
	j->vcsw = vcsw_now();
	while (now_s() < end) {
		for (int i = 0; i < 16; i++) {
			j->rv = one(s, j->op, zero, out);
			if (j->rv != CKR_OK)
				goto done;
			j->n++;
		}
	}
done:
	j->cpu = cpu_s() - j->cpu;
	j->vcsw = vcsw_now() - j->vcsw;
	f->C_CloseSession(s);
	free(out);
	return NULL;
}

int main(int argc, char **argv)
{
	static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
	                                     0xce, 0x3d, 0x03, 0x01, 0x07};
	static const unsigned char ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
	CK_SESSION_HANDLE s;
	int sw, threads;
	CK_RV rv;

	if (argc < 8) {
		fprintf(stderr,
		        "usage: bench_swkeys MODULE TOKEN PIN SOFTWARE SECONDS THREADS OP...\n");
		return 2;
	}
	sw = atoi(argv[4]);
	secs = atof(argv[5]);
	threads = atoi(argv[6]);
	if (threads < 1 || threads > 64 || !testmod_load(&mod, argv[1]))
		return 2;
	f = mod.f;
	if (!testmod_find_token(&mod, argv[2], &slot) ||
	    !testmod_session(&mod, argv[2], argv[3], &s))
		return 1;
	rv = secret(s, CKK_AES, sw, &k_aes);
	if (rv == CKR_OK)
		rv = secret(s, CKK_GENERIC_SECRET, sw, &k_mac);
	if (rv == CKR_OK)
		rv = pair(s, CKM_EC_KEY_PAIR_GEN, p256, sizeof(p256), sw, &k_ec);
	if (rv == CKR_OK)
		rv = pair(s, CKM_EC_EDWARDS_KEY_PAIR_GEN, ed25519, sizeof(ed25519), sw, &k_ed);
	if (rv == CKR_OK)
		rv = pair(s, CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0, sw, &k_rsa);
	if (rv != CKR_OK) {
		fprintf(stderr, "bench_swkeys: making the keys: %s\n", testmod_ckr(rv));
		return 1;
	}
	for (int i = 7; i < argc; i++) {
		struct job j[64];
		pthread_t t[64];
		long total = 0, vcsw = 0;
		double t0 = now_s(), el, cpu = 0;

		for (int k = 0; k < threads; k++) {
			j[k] = (struct job){argv[i], 0, 0, 0, CKR_OK};
			pthread_create(&t[k], NULL, worker, &j[k]);
		}
		for (int k = 0; k < threads; k++) {
			pthread_join(t[k], NULL);
			total += j[k].n;
			cpu += j[k].cpu > 0 ? j[k].n / j[k].cpu : 0;
			vcsw += j[k].vcsw;
			if (j[k].rv != CKR_OK) {
				fprintf(stderr, "bench_swkeys: %s: %s\n", argv[i],
				        testmod_ckr(j[k].rv));
				return 1;
			}
		}
		el = now_s() - t0;
		printf(
		    "RESULT op=%s threads=%d ops_s=%.0f cpu_ops_s=%.0f vcsw_per_kop=%.2f ops=%ld\n",
		    argv[i], threads, total / el, cpu, total > 0 ? 1000.0 * vcsw / total : 0,
		    total);
		fflush(stdout);
		if (reference(argv[i], threads) != 0)
			return 1;
	}
	testmod_unload(&mod);
	return 0;
}
