/*
 * An application of a "host" of a fleet, for tests/suites/63-pgfleet.sh: the
 * module (MODULE, its configuration from P11PROXY_CONF) with a PostgreSQL
 * store. The PIN comes from $PGFLEET_PIN.
 *
 *   pgfleet mkaes MODULE SLOT LABEL
 *       makes a token AES key (encrypt, decrypt) through the virtual slot;
 *       prints "created" or "refused 0x..."; exit 0 when created. With
 *       $PGFLEET_WAIT set it prints "ready" once the module is initialised and
 *       the session open, and waits for a line on stdin before it creates
 *   pgfleet watch MODULE SLOT LABEL SECONDS
 *       finds the key, then encrypts with it every 5 ms for SECONDS. Prints
 *       "ready" after the first encryption, and on every change between
 *       allowed and refused a line "allowed|refused REALTIME_NS 0x<rv>"
 *       (CLOCK_REALTIME, so that the suite can compare it with the moment it
 *       changed the key), then "done OK_COUNT REFUSED_COUNT" at the end.
 *       Exit 0 unless the key could not be found or used at first.
 */
#include "../tests/progs/testmod.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

static CK_BBOOL yes = CK_TRUE;

static long long now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int mkaes(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, const char *label)
{
	CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ULONG len = 16;
	CK_ATTRIBUTE t[] = {
	    {CKA_TOKEN, &yes, 1},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_VALUE_LEN, &len, sizeof(len)},
	    {CKA_ENCRYPT, &yes, 1},
	    {CKA_DECRYPT, &yes, 1},
	    {CKA_PRIVATE, &yes, 1},
	    {CKA_SENSITIVE, &yes, 1},
	};
	CK_OBJECT_HANDLE h = 0;
	if (getenv("PGFLEET_WAIT") != NULL) {
		char line[32];
		printf("ready\n");
		if (!fgets(line, sizeof(line), stdin))
			return 1;
	}
	CK_RV rv = f->C_GenerateKey(s, &mech, t, sizeof(t) / sizeof(t[0]), &h);
	if (rv == CKR_OK) {
		printf("created\n");
		return 0;
	}
	printf("refused 0x%lx %s\n", (unsigned long)rv, testmod_ckr(rv));
	return 1;
}

static CK_RV encrypt_once(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
	CK_BYTE iv[16] = {0}, in[16] = {1}, out[64];
	CK_ULONG outlen = sizeof(out);
	CK_MECHANISM mech = {CKM_AES_CBC_PAD, iv, sizeof(iv)};
	CK_RV rv = f->C_EncryptInit(s, &mech, key);
	if (rv != CKR_OK)
		return rv;
	return f->C_Encrypt(s, in, sizeof(in), out, &outlen);
}

static int watch(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, const char *label, double seconds)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)},
	                    {CKA_CLASS, &cls, sizeof(cls)}};
	CK_OBJECT_HANDLE key = 0;
	CK_ULONG n = 0;
	if (f->C_FindObjectsInit(s, t, 2) != CKR_OK)
		return 1;
	f->C_FindObjects(s, &key, 1, &n);
	f->C_FindObjectsFinal(s);
	if (n != 1) {
		printf("no key %s\n", label);
		return 1;
	}
	CK_RV rv = encrypt_once(f, s, key);
	if (rv != CKR_OK) {
		printf("cannot use %s: 0x%lx\n", label, (unsigned long)rv);
		return 1;
	}
	printf("ready\n");
	bool allowed = true;
	unsigned long ok = 1, refused = 0;
	long long end = now_ns(CLOCK_MONOTONIC) + (long long)(seconds * 1e9);
	while (now_ns(CLOCK_MONOTONIC) < end) {
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
		rv = encrypt_once(f, s, key);
		if (rv == CKR_OK)
			ok++;
		else
			refused++;
		if ((rv == CKR_OK) != allowed) {
			allowed = rv == CKR_OK;
			printf("%s %lld 0x%lx\n", allowed ? "allowed" : "refused",
			       now_ns(CLOCK_REALTIME), (unsigned long)rv);
		}
	}
	printf("done %lu %lu\n", ok, refused);
	return 0;
}

int main(int argc, char **argv)
{
	struct testmod m;
	CK_SESSION_HANDLE s;
	const char *pin = getenv("PGFLEET_PIN");
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 5 || pin == NULL) {
		fprintf(stderr, "usage: PGFLEET_PIN=... pgfleet mkaes|watch MODULE SLOT LABEL "
		                "[SECONDS]\n");
		return 2;
	}
	if (!testmod_load(&m, argv[2]) || !testmod_session(&m, argv[3], pin, &s))
		return 1;
	if (strcmp(argv[1], "mkaes") == 0 && argc == 5)
		rc = mkaes(m.f, s, argv[4]);
	else if (strcmp(argv[1], "watch") == 0 && argc == 6)
		rc = watch(m.f, s, argv[4], strtod(argv[5], NULL));
	else
		rc = 2;
	m.f->C_CloseSession(s);
	testmod_unload(&m);
	return rc;
}
