/*
 * An application that keeps signing, for `make demo` (tools/demo.sh):
 *   signloop MODULE TOKEN KEY_LABEL SECONDS
 * One process, one session, logged in with the PIN in $DEMO_PIN (never on the
 * command line), ECDSA signatures of a SHA-256 digest every 50 ms with the
 * private key labelled KEY_LABEL, for SECONDS. Prints one line a second:
 * signatures made and failed so far, and the last error. Exit 0 when no
 * signature failed.
 */
#include "../tests/progs/testmod.h"

#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct testmod m;
	CK_SESSION_HANDLE s;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[2];
	CK_OBJECT_HANDLE key = 0;
	CK_ULONG n = 0;
	CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
	CK_BYTE digest[32], sig[256];
	const char *pin = getenv("DEMO_PIN");
	double start, next_report, seconds;
	unsigned long ok = 0, failed = 0;
	CK_RV last = CKR_OK;

	if (argc != 5 || pin == NULL) {
		fprintf(stderr, "usage: DEMO_PIN=... signloop MODULE TOKEN KEY_LABEL SECONDS\n");
		return 2;
	}
	seconds = atof(argv[4]);
	if (!testmod_load(&m, argv[1]) || !testmod_session(&m, argv[2], pin, &s))
		return 1;
	t[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
	t[1] = (CK_ATTRIBUTE){CKA_LABEL, argv[3], strlen(argv[3])};
	if (m.f->C_FindObjectsInit(s, t, 2) != CKR_OK ||
	    m.f->C_FindObjects(s, &key, 1, &n) != CKR_OK || m.f->C_FindObjectsFinal(s) != CKR_OK ||
	    n != 1) {
		fprintf(stderr, "signloop: no private key labelled '%s'\n", argv[3]);
		return 1;
	}
	memset(digest, 0x5a, sizeof(digest));
	start = now_s();
	next_report = start + 1;
	while (now_s() - start < seconds) {
		CK_ULONG len = sizeof(sig);
		CK_RV rv = m.f->C_SignInit(s, &mech, key);

		if (rv == CKR_OK)
			rv = m.f->C_Sign(s, digest, sizeof(digest), sig, &len);
		if (rv == CKR_OK) {
			ok++;
		} else {
			failed++;
			last = rv;
		}
		if (now_s() >= next_report) {
			printf("  [signer] %4.1fs: %lu signatures, %lu failed%s", now_s() - start,
			       ok, failed, last != CKR_OK ? " (last: " : "\n");
			if (last != CKR_OK)
				printf("%s)\n", testmod_ckr(last));
			fflush(stdout);
			next_report += 1;
		}
		usleep(50000);
	}
	printf("  [signer] done: %lu signatures, %lu failed\n", ok, failed);
	m.f->C_CloseSession(s);
	testmod_unload(&m);
	return failed == 0 ? 0 : 1;
}
