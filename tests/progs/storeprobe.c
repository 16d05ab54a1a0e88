/*
 * An application for suite 54-store (the virtual-key store seen by a running
 * process):
 *
 *   storeprobe MODULE SLOT PIN LABEL watch STAMP
 *     Encrypts with the AES key labelled LABEL every 2 ms until the proxy
 *     refuses (CKR_KEY_FUNCTION_NOT_PERMITTED: a `keys deny` made in another
 *     process reached this one), for at most 5 s after the stamp appears. Prints "ready" once the
 *     first encryption worked (the suite then runs the CLI), and at the
 *     refusal "refused D ms after the CLI returned", D measured from the time
 *     (CLOCK_REALTIME, ns) the suite wrote to STAMP when the CLI returned.
 *     Exit 0 when refused within 2 s of that.
 *
 *   storeprobe MODULE SLOT PIN LABEL use
 *     Encrypts once with LABEL (must work), then creates a token AES key
 *     "storeprobe-new" (must fail: the store is read-only for this process).
 *     Prints "use ok" / "create refused: CKR_..." ; exit 0 when both held.
 */
#include "testmod.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static CK_RV encrypt_once(struct testmod *m, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
	CK_MECHANISM mech = {CKM_AES_ECB, NULL, 0};
	CK_BYTE in[16] = {0}, out[32];
	CK_ULONG len = sizeof(out);
	CK_RV rv = m->f->C_EncryptInit(s, &mech, key);

	if (rv != CKR_OK)
		return rv;
	return m->f->C_Encrypt(s, in, sizeof(in), out, &len);
}

static int read_stamp(const char *path, int64_t *out)
{
	FILE *f = fopen(path, "r");
	long long v = 0;
	int ok;

	if (f == NULL)
		return 0;
	ok = fscanf(f, "%lld", &v) == 1;
	fclose(f);
	*out = v;
	return ok;
}

int main(int argc, char **argv)
{
	struct testmod m;
	CK_SESSION_HANDLE s;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[2];
	CK_OBJECT_HANDLE key = 0;
	CK_ULONG n = 0;
	CK_RV rv;
	int rc = 1;

	if (argc < 6) {
		fprintf(stderr, "usage: storeprobe MODULE SLOT PIN LABEL watch STAMP | use\n");
		return 2;
	}
	if (!testmod_load(&m, argv[1]))
		return 1;
	if (!testmod_session(&m, argv[2], argv[3], &s))
		goto out;
	t[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
	t[1] = (CK_ATTRIBUTE){CKA_LABEL, argv[4], strlen(argv[4])};
	if (m.f->C_FindObjectsInit(s, t, 2) != CKR_OK ||
	    m.f->C_FindObjects(s, &key, 1, &n) != CKR_OK || m.f->C_FindObjectsFinal(s) != CKR_OK ||
	    n != 1) {
		fprintf(stderr, "storeprobe: no key labelled %s\n", argv[4]);
		goto out;
	}
	rv = encrypt_once(&m, s, key);
	if (rv != CKR_OK) {
		fprintf(stderr, "storeprobe: first encryption: %s\n", testmod_ckr(rv));
		goto out;
	}
	if (strcmp(argv[5], "watch") == 0 && argc == 7) {
		int64_t start = now_ns(), refused_at = 0, stamp = 0;

		printf("ready\n");
		fflush(stdout);
		/*
		 * Until refused; given up 5 s after the stamp (the CLI may be slow to
		 * run, under valgrind), or after 300 s without one.
		 */
		for (unsigned i = 0;; i++) {
			int64_t tnow = now_ns();

			if (stamp == 0 && i % 16 == 0)
				(void)read_stamp(argv[6], &stamp);
			if ((stamp != 0 && tnow - stamp > 5000000000LL) ||
			    tnow - start > 300000000000LL)
				break;
			rv = encrypt_once(&m, s, key);
			if (rv == CKR_KEY_FUNCTION_NOT_PERMITTED) {
				refused_at = now_ns();
				break;
			}
			if (rv != CKR_OK) {
				fprintf(stderr, "storeprobe: encryption: %s\n", testmod_ckr(rv));
				goto out;
			}
			usleep(2000);
		}
		if (refused_at == 0) {
			printf("not refused within 5 s of the CLI\n");
			goto out;
		}
		/* The suite writes the stamp right after the CLI returns. */
		for (int j = 0; j < 5000 && stamp == 0 && !read_stamp(argv[6], &stamp); j++)
			usleep(1000);
		if (stamp == 0) {
			printf("refused, but no stamp from the suite\n");
			goto out;
		}
		printf("refused %lld ms after the CLI returned\n",
		       (long long)((refused_at - stamp) / 1000000));
		rc = refused_at - stamp <= 2000000000LL ? 0 : 1;
	} else if (strcmp(argv[5], "use") == 0) {
		CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
		CK_ULONG vlen = 16;
		CK_BBOOL yes = CK_TRUE;
		CK_OBJECT_HANDLE nk;
		const char *label = "storeprobe-new";
		CK_ATTRIBUTE g[] = {
		    {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
		    {CKA_TOKEN, &yes, sizeof(yes)},
		    {CKA_ENCRYPT, &yes, sizeof(yes)},
		    {CKA_LABEL, (void *)label, strlen(label)},
		};

		printf("use ok\n");
		rv = m.f->C_GenerateKey(s, &gen, g, 4, &nk);
		printf("create %s: %s\n", rv == CKR_OK ? "allowed" : "refused", testmod_ckr(rv));
		rc = rv != CKR_OK ? 0 : 1;
	} else {
		fprintf(stderr, "storeprobe: unknown mode %s\n", argv[5]);
		rc = 2;
	}
out:
	testmod_unload(&m);
	return rc;
}
