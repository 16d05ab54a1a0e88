/*
 * Shared by the test programs that drive the fault-injecting shim
 * (hatest.c, repltest.c, hafaults.c): result lines, time, the shim's control file and
 * call log, sessions through the proxy. Header-only, included once per program.
 */
#ifndef P11P_SHIMCTL_H
#define P11P_SHIMCTL_H

#include "testmod.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PIN "1234"

static struct testmod mod;
static CK_FUNCTION_LIST *f;
static const char *control_path, *log_path;
static int failures;

static void expect(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void expect(int cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("%s ", cond ? "ok" : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
	if (!cond)
		failures++;
}

/*
 * The program's verdict, last on stdout ("checks done: N failed", flushed:
 * stdio is not flushed when LeakSanitizer ends the process at exit) and as
 * the exit status. tests/lib.sh's lsan_tracer_crash_only reads the line.
 */
__attribute__((unused)) static int checks_verdict(void)
{
	printf("checks done: %d failed\n", failures);
	fflush(stdout);
	return failures ? 1 : 0;
}

__attribute__((unused)) static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((unused)) static void msleep(unsigned ms)
{
	usleep(ms * 1000);
}

/* Rewrites the shim's control file in one go (temp file + rename). */
static void control(const char *rules)
{
	char tmp[4096];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.tmp", control_path);
	fp = fopen(tmp, "w");
	if (fp == NULL || fputs(rules, fp) < 0 || fclose(fp) != 0 ||
	    rename(tmp, control_path) != 0) {
		perror("control");
		exit(2);
	}
}

/* Lines of the call log containing all of a, b (b may be NULL), from line `from` on. */
static long log_count(long from, const char *a, const char *b)
{
	FILE *fp = fopen(log_path, "r");
	char line[512];
	long n = 0, i = 0;

	if (fp == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (i++ >= from && strstr(line, a) != NULL &&
		    (b == NULL || strstr(line, b) != NULL))
			n++;
	fclose(fp);
	return n;
}

static long log_lines(void)
{
	return log_count(0, "", NULL);
}

__attribute__((unused)) static CK_SESSION_HANDLE open_on(const char *label, int login)
{
	CK_SESSION_HANDLE s = 0;

	if (!testmod_session(&mod, label, login ? PIN : NULL, &s)) {
		expect(0, "open a session on %s", label);
		exit(1);
	}
	return s;
}

/*
 * Imports the P-256 key pair `key` as token objects labelled `label` (CKA_ID a1)
 * on session s of module fl, params being the curve's DER OID. 0 on failure.
 */
static inline int shim_import_ec(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s, EVP_PKEY *key,
                                 const unsigned char *params, size_t params_len, const char *label)
{
	CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY, pub = CKO_PUBLIC_KEY;
	CK_KEY_TYPE kt = CKK_EC;
	CK_BBOOL yes = CK_TRUE;
	CK_BYTE id = 0xa1, d[32], point[67];
	CK_ULONG llen = (CK_ULONG)strlen(label);
	BIGNUM *bn = NULL;
	size_t plen = 0;
	CK_ATTRIBUTE tpriv[] = {
	    {CKA_CLASS, &priv, sizeof(priv)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_TOKEN, &yes, sizeof(yes)},   {CKA_PRIVATE, &yes, sizeof(yes)},
	    {CKA_LABEL, (void *)label, llen}, {CKA_ID, &id, 1},
	    {CKA_SIGN, &yes, sizeof(yes)},    {CKA_EC_PARAMS, (void *)params, params_len},
	    {CKA_VALUE, d, sizeof(d)},
	};
	CK_ATTRIBUTE tpub[] = {
	    {CKA_CLASS, &pub, sizeof(pub)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_LABEL, (void *)label, llen},
	    {CKA_ID, &id, 1},
	    {CKA_VERIFY, &yes, sizeof(yes)},
	    {CKA_EC_PARAMS, (void *)params, params_len},
	    {CKA_EC_POINT, point, sizeof(point)},
	};
	CK_OBJECT_HANDLE h;
	int ok;

	if (!EVP_PKEY_get_bn_param(key, "priv", &bn) || BN_bn2binpad(bn, d, 32) != 32 ||
	    !EVP_PKEY_get_octet_string_param(key, "pub", point + 2, 65, &plen) || plen != 65) {
		BN_clear_free(bn);
		return 0;
	}
	BN_clear_free(bn);
	point[0] = 0x04; /* DER OCTET STRING around the uncompressed point */
	point[1] = 65;
	ok = fl->C_CreateObject(s, tpriv, 9, &h) == CKR_OK &&
	     fl->C_CreateObject(s, tpub, 8, &h) == CKR_OK;
	OPENSSL_cleanse(d, sizeof(d));
	return ok;
}

#endif
