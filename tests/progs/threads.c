/*
 * threads MODULE TOKEN_LABEL PIN NTHREADS ITER
 *
 * Concurrency test. Creates an RSA-2048 key pair and an AES-256 key on the
 * token (labels unique to this run), then NTHREADS threads, each with its own
 * session, each finding the keys by label and doing ITER iterations of
 *   - RSA PKCS#1 v1.5 SHA-256 sign + verify of a message unique to the
 *     thread and iteration (and a tampered signature must fail),
 *   - AES-GCM encrypt + decrypt round trip under a unique IV.
 * Every result is checked. Prints the counts; exits 0 only if every
 * operation succeeded. The keys are destroyed at the end.
 */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "testmod.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct shared {
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slot;
	char rsa_label[64], aes_label[64];
	int iters;
};

struct worker {
	pthread_t tid;
	int id;
	struct shared *sh;
	unsigned long sign_ok, verify_ok, tamper_ok, gcm_ok, failures;
};

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS cls_secret = CKO_SECRET_KEY, cls_priv = CKO_PRIVATE_KEY,
                       cls_pub = CKO_PUBLIC_KEY;
static CK_KEY_TYPE kt_aes = CKK_AES;

static void report(struct worker *w, const char *what, CK_RV rv)
{
	w->failures++;
	fprintf(stderr, "thread %d: %s: %s\n", w->id, what, testmod_ckr(rv));
}

static CK_OBJECT_HANDLE find_one(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                                 char *label, CK_RV *rvp)
{
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_LABEL, label, strlen(label)},
	};
	CK_OBJECT_HANDLE h[2] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE};
	CK_ULONG n = 0;
	CK_RV rv = f->C_FindObjectsInit(s, t, COUNT(t));

	if (rv == CKR_OK) {
		rv = f->C_FindObjects(s, h, 2, &n);
		if (f->C_FindObjectsFinal(s) != CKR_OK && rv == CKR_OK)
			rv = CKR_GENERAL_ERROR;
	}
	if (rv == CKR_OK && n != 1)
		rv = CKR_GENERAL_ERROR; /* exactly one expected */
	*rvp = rv;
	return h[0];
}

static void *work(void *arg)
{
	struct worker *w = arg;
	CK_FUNCTION_LIST *f = w->sh->f;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE priv, pub, aes;
	CK_MECHANISM m_rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
	unsigned char msg[64], sig[512], iv[12], aad[16], ct[128], pt[128];
	CK_RV rv;

	rv = f->C_OpenSession(w->sh->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK) {
		report(w, "C_OpenSession", rv);
		return NULL;
	}
	priv = find_one(f, s, cls_priv, w->sh->rsa_label, &rv);
	if (rv != CKR_OK)
		report(w, "find RSA private key", rv);
	pub = find_one(f, s, cls_pub, w->sh->rsa_label, &rv);
	if (rv != CKR_OK)
		report(w, "find RSA public key", rv);
	aes = find_one(f, s, cls_secret, w->sh->aes_label, &rv);
	if (rv != CKR_OK)
		report(w, "find AES key", rv);
	if (w->failures != 0)
		goto out;

	for (int i = 0; i < w->sh->iters; i++) {
		CK_ULONG siglen = sizeof(sig), ctlen = sizeof(ct), ptlen = sizeof(pt);
		CK_GCM_PARAMS gp = {iv, sizeof(iv), 96, aad, sizeof(aad), 128};
		CK_MECHANISM m_gcm = {CKM_AES_GCM, &gp, sizeof(gp)};
		int len = snprintf((char *)msg, sizeof(msg), "thread %d iteration %d", w->id, i);

		/* Sign + verify. */
		rv = f->C_SignInit(s, &m_rsa, priv);
		if (rv == CKR_OK)
			rv = f->C_Sign(s, msg, (CK_ULONG)len, sig, &siglen);
		if (rv != CKR_OK || siglen != 256) {
			report(w, "sign", rv);
			continue;
		}
		w->sign_ok++;
		rv = f->C_VerifyInit(s, &m_rsa, pub);
		if (rv == CKR_OK)
			rv = f->C_Verify(s, msg, (CK_ULONG)len, sig, siglen);
		if (rv != CKR_OK)
			report(w, "verify", rv);
		else
			w->verify_ok++;
		/* Another thread's message must not verify under this signature. */
		msg[7] ^= 0x01;
		rv = f->C_VerifyInit(s, &m_rsa, pub);
		if (rv == CKR_OK)
			rv = f->C_Verify(s, msg, (CK_ULONG)len, sig, siglen);
		if (rv != CKR_SIGNATURE_INVALID)
			report(w, "verify of a changed message", rv);
		else
			w->tamper_ok++;

		/* AES-GCM round trip, IV unique per (thread, iteration). */
		memset(iv, 0, sizeof(iv));
		memcpy(iv, &w->id, sizeof(w->id));
		memcpy(iv + 4, &i, sizeof(i));
		memset(aad, w->id & 0xff, sizeof(aad));
		rv = f->C_EncryptInit(s, &m_gcm, aes);
		if (rv == CKR_OK)
			rv = f->C_Encrypt(s, msg, (CK_ULONG)len, ct, &ctlen);
		if (rv != CKR_OK || ctlen != (CK_ULONG)len + 16) {
			report(w, "GCM encrypt", rv);
			continue;
		}
		rv = f->C_DecryptInit(s, &m_gcm, aes);
		if (rv == CKR_OK)
			rv = f->C_Decrypt(s, ct, ctlen, pt, &ptlen);
		if (rv != CKR_OK || ptlen != (CK_ULONG)len || memcmp(pt, msg, ptlen) != 0)
			report(w, "GCM decrypt / compare", rv);
		else
			w->gcm_ok++;
	}
out:
	rv = f->C_CloseSession(s);
	if (rv != CKR_OK)
		report(w, "C_CloseSession", rv);
	return NULL;
}

static int make_keys(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, struct shared *sh,
                     CK_OBJECT_HANDLE *keys)
{
	CK_ULONG bits = 2048, len = 32;
	unsigned char e[] = {1, 0, 1};
	CK_MECHANISM m_rsa = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
	CK_MECHANISM m_aes = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ATTRIBUTE pub[] = {
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_LABEL, sh->rsa_label, strlen(sh->rsa_label)},
	    {CKA_MODULUS_BITS, &bits, sizeof(bits)},
	    {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
	    {CKA_VERIFY, &yes, sizeof(yes)},
	};
	CK_ATTRIBUTE priv[] = {
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_PRIVATE, &yes, sizeof(yes)},
	    {CKA_LABEL, sh->rsa_label, strlen(sh->rsa_label)},
	    {CKA_SENSITIVE, &yes, sizeof(yes)},
	    {CKA_SIGN, &yes, sizeof(yes)},
	};
	CK_ATTRIBUTE aes[] = {
	    {CKA_CLASS, &cls_secret, sizeof(cls_secret)},
	    {CKA_KEY_TYPE, &kt_aes, sizeof(kt_aes)},
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_PRIVATE, &yes, sizeof(yes)},
	    {CKA_LABEL, sh->aes_label, strlen(sh->aes_label)},
	    {CKA_VALUE_LEN, &len, sizeof(len)},
	    {CKA_SENSITIVE, &yes, sizeof(yes)},
	    {CKA_EXTRACTABLE, &no, sizeof(no)},
	    {CKA_ENCRYPT, &yes, sizeof(yes)},
	    {CKA_DECRYPT, &yes, sizeof(yes)},
	};
	CK_RV rv;

	rv =
	    f->C_GenerateKeyPair(s, &m_rsa, pub, COUNT(pub), priv, COUNT(priv), &keys[0], &keys[1]);
	if (rv != CKR_OK) {
		fprintf(stderr, "RSA key generation: %s\n", testmod_ckr(rv));
		return 0;
	}
	rv = f->C_GenerateKey(s, &m_aes, aes, COUNT(aes), &keys[2]);
	if (rv != CKR_OK) {
		fprintf(stderr, "AES key generation: %s\n", testmod_ckr(rv));
		return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	struct testmod tm;
	struct shared sh;
	struct worker *w;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE keys[3] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE, CK_INVALID_HANDLE};
	unsigned long sign = 0, verify = 0, tamper = 0, gcm = 0, failures = 0;
	struct timespec t0, t1;
	int n, ok = 0;

	if (argc != 6 || atoi(argv[4]) < 1 || atoi(argv[4]) > 256 || atoi(argv[5]) < 1) {
		fprintf(stderr, "usage: threads MODULE TOKEN_LABEL PIN NTHREADS(1-256) ITER\n");
		return 2;
	}
	n = atoi(argv[4]);
	memset(&sh, 0, sizeof(sh));
	sh.iters = atoi(argv[5]);
	snprintf(sh.rsa_label, sizeof(sh.rsa_label), "threads-rsa-%ld-%ld", (long)getpid(),
	         (long)time(NULL));
	snprintf(sh.aes_label, sizeof(sh.aes_label), "threads-aes-%ld-%ld", (long)getpid(),
	         (long)time(NULL));
	w = calloc((size_t)n, sizeof(*w));
	if (w == NULL)
		return 1;
	if (!testmod_load(&tm, argv[1])) {
		free(w);
		return 1;
	}
	sh.f = tm.f;
	if (!testmod_find_token(&tm, argv[2], &sh.slot) ||
	    !testmod_session(&tm, argv[2], argv[3], &s) || !make_keys(tm.f, s, &sh, keys))
		goto out;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++) {
		w[i].id = i;
		w[i].sh = &sh;
		if (pthread_create(&w[i].tid, NULL, work, &w[i]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			for (int j = 0; j < i; j++)
				pthread_join(w[j].tid, NULL);
			goto out;
		}
	}
	for (int i = 0; i < n; i++) {
		pthread_join(w[i].tid, NULL);
		sign += w[i].sign_ok;
		verify += w[i].verify_ok;
		tamper += w[i].tamper_ok;
		gcm += w[i].gcm_ok;
		failures += w[i].failures;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("threads=%d iterations=%d: sign ok %lu, verify ok %lu, changed-message rejected "
	       "%lu, gcm round trips ok %lu, failures %lu\n",
	       n, sh.iters, sign, verify, tamper, gcm, failures);
	fprintf(stderr, "threads: %.2f s\n",
	        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	{
		unsigned long want = (unsigned long)n * (unsigned long)sh.iters;

		ok = failures == 0 && sign == want && verify == want && tamper == want &&
		     gcm == want;
	}
out:
	for (size_t i = 0; i < COUNT(keys); i++) {
		if (keys[i] != CK_INVALID_HANDLE) {
			CK_RV rv = tm.f->C_DestroyObject(s, keys[i]);

			if (rv != CKR_OK) {
				fprintf(stderr, "C_DestroyObject: %s\n", testmod_ckr(rv));
				ok = 0;
			}
		}
	}
	if (s != CK_INVALID_HANDLE) {
		tm.f->C_Logout(s);
		tm.f->C_CloseSession(s);
	}
	testmod_unload(&tm);
	free(w);
	return ok ? 0 : 1;
}
