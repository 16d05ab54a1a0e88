/*
 * bench_vendor — the vendor mechanisms' figures (information only).
 *
 *   bench_vendor setup MODULE TOKEN PIN          an HMAC key "cf-key" on the token
 *   bench_vendor run MODULE TOKEN PIN OP [SECONDS]
 *
 * OP: random32, random4k (C_GenerateRandom of 32 B / 4 KiB: through a slot
 * with `entropy:`, or SoftHSM2's own), derive (C_DeriveKey with
 * CKM_P11PROXY_FRAGMENT_DERIVE on "cf-key", AES-256, then C_DestroyObject),
 * frag_wrapped / frag_secured (HMAC-SHA256 of 32 bytes with the configured
 * fragment "wr" / "sec": the secured one derives on each use), gcm1k, gcm16k
 * (AES-256-GCM single-part encrypt with a fragment-derived key). One line:
 *   RESULT op=OP ops_s=X mean_us=X mb_s=X ops=N
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11proxy.h>

#include "../tests/progs/testmod.h"

static CK_FUNCTION_LIST *f;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static CK_OBJECT_HANDLE find_label(CK_SESSION_HANDLE s, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h = 0;
	CK_ULONG n = 0;

	if (f->C_FindObjectsInit(s, t, 2) != CKR_OK)
		return 0;
	f->C_FindObjects(s, &h, 1, &n);
	f->C_FindObjectsFinal(s);
	return n == 1 ? h : 0;
}

static CK_RV derive(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE base, CK_OBJECT_HANDLE *out)
{
	P11PROXY_FRAGMENT_DERIVE_PARAMS p = {(CK_BYTE_PTR) "bench fragment value 0123456789ab", 32,
					     (CK_BYTE_PTR) "bench", 5};
	CK_MECHANISM m = {CKM_P11PROXY_FRAGMENT_DERIVE, &p, sizeof(p)};
	CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG len = 32;
	CK_ATTRIBUTE t[] = {{CKA_KEY_TYPE, &kt, sizeof(kt)}, {CKA_VALUE_LEN, &len, sizeof(len)}};

	return f->C_DeriveKey(s, &m, base, t, 2, out);
}

int main(int argc, char **argv)
{
	static unsigned char buf[16384 + 64], out[16384 + 64];
	struct testmod mod;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key = 0;
	const char *op;
	double secs = 1, t0, t;
	unsigned long n = 0;
	size_t bytes = 0;
	CK_RV rv = CKR_OK;

	if (argc < 5 || (strcmp(argv[1], "run") == 0 && argc < 6)) {
		fprintf(stderr, "usage: bench_vendor setup|run MODULE TOKEN PIN [OP [SECONDS]]\n");
		return 2;
	}
	if (!testmod_load(&mod, argv[2]))
		return 1;
	f = mod.f;
	if (!testmod_session(&mod, argv[3], argv[4], &s))
		return 1;
	if (strcmp(argv[1], "setup") == 0) {
		CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
		CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
		CK_ATTRIBUTE t2[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
				     {CKA_TOKEN, &yes, 1},           {CKA_SIGN, &yes, 1},
				     {CKA_SENSITIVE, &yes, 1},       {CKA_LABEL, "cf-key", 6},
				     {CKA_VALUE, "0123456789abcdef0123456789abcdef", 32}};

		rv = f->C_CreateObject(s, t2, 7, &key);
		if (rv != CKR_OK)
			fprintf(stderr, "bench_vendor: C_CreateObject: 0x%lx\n", (unsigned long)rv);
		testmod_unload(&mod);
		return rv == CKR_OK ? 0 : 1;
	}
	op = argv[5];
	if (argc > 6)
		secs = atof(argv[6]);
	memset(buf, 0x5a, sizeof(buf));
	if (strncmp(op, "gcm", 3) == 0 || strcmp(op, "derive") == 0) {
		CK_OBJECT_HANDLE base = find_label(s, "cf-key");

		if (base == 0 || (strncmp(op, "gcm", 3) == 0 && derive(s, base, &key) != CKR_OK)) {
			fprintf(stderr, "bench_vendor: no cf-key, or the derivation failed\n");
			return 1;
		}
		if (strcmp(op, "derive") == 0)
			key = base;
	} else if (strncmp(op, "frag_", 5) == 0) {
		key = find_label(s, strcmp(op, "frag_wrapped") == 0 ? "wr" : "sec");
		if (key == 0) {
			fprintf(stderr, "bench_vendor: no fragment object\n");
			return 1;
		}
	}
	t0 = now_s();
	do {
		for (int i = 0; i < 16 && rv == CKR_OK; i++, n++) {
			if (strcmp(op, "random32") == 0 || strcmp(op, "random4k") == 0) {
				size_t len = op[6] == '3' ? 32 : 4096;

				rv = f->C_GenerateRandom(s, out, len);
				bytes += len;
			} else if (strcmp(op, "derive") == 0) {
				CK_OBJECT_HANDLE d;

				rv = derive(s, key, &d);
				if (rv == CKR_OK)
					rv = f->C_DestroyObject(s, d);
			} else if (strncmp(op, "frag_", 5) == 0) {
				CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
				CK_ULONG len = 32;

				rv = f->C_SignInit(s, &m, key);
				if (rv == CKR_OK)
					rv = f->C_Sign(s, buf, 32, out, &len);
			} else if (strncmp(op, "gcm", 3) == 0) {
				size_t len = strcmp(op, "gcm16k") == 0 ? 16384 : 1024;
				CK_BYTE iv[12] = {0};
				CK_GCM_PARAMS gp = {iv, 12, 96, NULL, 0, 128};
				CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};
				CK_ULONG olen = sizeof(out);

				memcpy(iv, &n, sizeof(n) < 12 ? sizeof(n) : 12);
				rv = f->C_EncryptInit(s, &m, key);
				if (rv == CKR_OK)
					rv = f->C_Encrypt(s, buf, len, out, &olen);
				bytes += len;
			} else {
				fprintf(stderr, "bench_vendor: unknown op %s\n", op);
				return 2;
			}
		}
		t = now_s() - t0;
	} while (rv == CKR_OK && t < secs);
	if (rv != CKR_OK) {
		fprintf(stderr, "bench_vendor: %s: 0x%lx\n", op, (unsigned long)rv);
		return 1;
	}
	printf("RESULT op=%s ops_s=%.1f mean_us=%.2f mb_s=%.1f ops=%lu\n", op, n / t, t * 1e6 / n,
	       bytes / t / 1e6, n);
	(void)no;
	f->C_CloseSession(s);
	testmod_unload(&mod);
	return 0;
}
