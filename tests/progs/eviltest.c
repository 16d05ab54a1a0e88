/*
 * A malicious backend behind the proxy (issue 9: a backend is untrusted input).
 *   eviltest PROXY EVIL CONFIG LIE
 * PROXY is libproxy.so, EVIL the malicious test module (tests/evil/evil.c),
 * loaded here first so that its counts (lies told, sessions open) can be read
 * (the proxy's p11-kit then opens the same copy). CONFIG names the slot used,
 * in P11PROXY_CONF (tests/suites/42-evil.sh):
 *   single  slot "single", whose only member is the evil token;
 *   ha      slot "ha" (failover): the evil token is member 1, the SoftHSM2
 *           token "m2" member 2 (an EC P-256 key pair, CKA_ID 01, label "k");
 *   hato    slot "hato": the same with call_timeout (calls run on the
 *           backend layer's worker, over copies of their buffers).
 * LIE is `none` (the control: the evil module tells no lie) or one EVIL_LIE
 * word (nolist badversion slotcount hugelist mechcount findcount attrlen signlen
 * nullsession nullobject nullhandle); eviltest sets EVIL_LIE itself.
 *
 * On the slot it lists mechanisms, opens a session and logs in, finds the
 * key, reads attributes, signs (in one part and in several), encrypts and
 * digests, each with buffers too short and long enough. Every output buffer
 * is followed by guard bytes that must stay untouched, and every length or
 * count the application gets back must be no larger than what it gave
 * (CKR_BUFFER_TOO_SMALL: the honest length needed). Where the lie applies the
 * proxy must answer CKR_DEVICE_ERROR (single: no other member), a clean
 * C_Initialize failure (nolist, badversion) or a slot without a token
 * (hugelist, slotcount); on the HA slots the call must be answered by the
 * healthy member instead, as if the evil one were not there. At the end the
 * proxy must have left no session open on the evil module (but the ones it
 * opened as handle 0, which cannot be named).
 * Prints "ok NAME" / "FAIL NAME (got ...)"; exits 1 when a check failed.
 */
#include "testmod.h"

#include <openssl/sha.h>
#include <stdarg.h>
#include <stdbool.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HAVE_MEMCHECK 1
#endif

#define GUARD      64   /* bytes after each output buffer that must stay untouched */
#define GUARD_BYTE 0xa5
#define SIG_LEN    64 /* ECDSA P-256, on either member */
#define DIGEST_LEN 32
#define SENTINEL   ((CK_ULONG)0x5e5e5e5eUL) /* a count the proxy must not have written */

static CK_FUNCTION_LIST *f;
static unsigned long (*lies_told)(void);
static unsigned long (*sessions_open)(void);
static const char *cfg, *lie_word;
static bool ha;
static char where[96];
static int failures;

static void check(bool ok, const char *name, const char *got, ...)
    __attribute__((format(printf, 3, 4)));

static void check(bool ok, const char *name, const char *got, ...)
{
	va_list ap;

	printf("%s %s: %s", ok ? "ok" : "FAIL", where, name);
	if (!ok && got != NULL) {
		printf(" (got ");
		va_start(ap, got);
		vprintf(got, ap);
		va_end(ap);
		printf(")");
	}
	printf("\n");
	fflush(stdout);
	if (!ok)
		failures++;
}

/* Is this the lie under test? (nullhandle is nullsession and nullobject together.) */
static bool lie(const char *w)
{
	if (strcmp(lie_word, w) == 0)
		return true;
	return strcmp(lie_word, "nullhandle") == 0 &&
	       (strcmp(w, "nullsession") == 0 || strcmp(w, "nullobject") == 0);
}

/* The proxy refuses the lie with no member to turn to: single config. */
static bool refused_alone(const char *w)
{
	return !ha && lie(w);
}

static const char *R(CK_RV rv)
{
	return testmod_ckr(rv);
}

/* What a check that accepts any result saw (for the reader; the suite skips it). */
static void note(const char *what, CK_RV rv)
{
	printf("note %s: %s answered %s\n", where, what, R(rv));
}

/*
 * ---- output buffers with guard bytes ----
 * The guard is off limits to ASan and valgrind too (poisoned, no access): a
 * write there is reported with the stack that made it.
 */

static void guard_close(CK_BYTE *g)
{
#ifdef __SANITIZE_ADDRESS__
	ASAN_POISON_MEMORY_REGION(g, GUARD);
#endif
#ifdef HAVE_MEMCHECK
	VALGRIND_MAKE_MEM_NOACCESS(g, GUARD);
#endif
	(void)g;
}

static void guard_open(CK_BYTE *g)
{
#ifdef __SANITIZE_ADDRESS__
	ASAN_UNPOISON_MEMORY_REGION(g, GUARD);
#endif
#ifdef HAVE_MEMCHECK
	VALGRIND_MAKE_MEM_DEFINED(g, GUARD);
#endif
	(void)g;
}

/* n bytes (and the guard after them) filled with GUARD_BYTE. */
static void gb_reset(void *p, CK_ULONG n)
{
	guard_open((CK_BYTE *)p + n);
	memset(p, GUARD_BYTE, n + GUARD);
	guard_close((CK_BYTE *)p + n);
}

static void *gb_new(CK_ULONG n)
{
	void *p = malloc(n + GUARD);

	if (p == NULL) {
		perror("malloc");
		exit(2);
	}
	guard_open((CK_BYTE *)p + n);
	gb_reset(p, n);
	return p;
}

static void gb_free(void *p, CK_ULONG n)
{
	guard_open((CK_BYTE *)p + n);
	free(p);
}

/* Bytes [n, n + GUARD) of p are untouched. */
static bool gb_intact(void *p, CK_ULONG n)
{
	CK_BYTE *g = (CK_BYTE *)p + n;
	bool ok = true;

	guard_open(g);
	for (CK_ULONG i = 0; i < GUARD; i++)
		ok &= g[i] == GUARD_BYTE;
	guard_close(g);
	return ok;
}

/*
 * The length an output call gave back: no larger than the buffer (CKR_OK, or
 * an error: nothing is said), or the honest length needed (CKR_BUFFER_TOO_SMALL).
 */
static bool len_ok(CK_RV rv, CK_ULONG len, CK_ULONG given, CK_ULONG needed)
{
	return rv == CKR_BUFFER_TOO_SMALL ? len == needed : len <= given;
}

/*
 * One call's output checks: its result (want; `any` accepts every result),
 * the length it gave back and the guard bytes after the buffer.
 */
static void out_checks(const char *what, CK_RV rv, CK_RV want, bool any, CK_ULONG len,
                       CK_ULONG given, CK_ULONG needed, CK_BYTE *buf)
{
	char name[160];

	if (!any) {
		snprintf(name, sizeof(name), "%s answers %s", what, R(want));
		check(rv == want, name, "%s", R(rv));
	} else {
		note(what, rv);
	}
	snprintf(name, sizeof(name), "%s: length back %s", what,
	         rv == CKR_BUFFER_TOO_SMALL ? "is the length needed" : "within the buffer given");
	check(len_ok(rv, len, given, needed), name, "%lu for a buffer of %lu, %s",
	      (unsigned long)len, (unsigned long)given, R(rv));
	snprintf(name, sizeof(name), "%s: nothing written past the buffer", what);
	check(gb_intact(buf, given), name, "guard bytes overwritten");
}

/* ---- loading ---- */

static void *load_proxy(const char *path)
{
	CK_C_GetFunctionList get;
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);

	if (dl == NULL) {
		fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
		exit(2);
	}
	get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
	if (get == NULL || get(&f) != CKR_OK || f == NULL) {
		fprintf(stderr, "%s: no usable C_GetFunctionList\n", path);
		exit(2);
	}
	return dl;
}

/* The slot whose token has that label; false when no present slot has it. */
static bool slot_of(const char *label, CK_SLOT_ID *out)
{
	CK_SLOT_ID ids[16];
	CK_ULONG n = 16;
	CK_TOKEN_INFO ti;
	char padded[32];

	memset(padded, ' ', sizeof(padded));
	memcpy(padded, label, strlen(label));
	if (f->C_GetSlotList(CK_TRUE, ids, &n) != CKR_OK)
		return false;
	for (CK_ULONG i = 0; i < n && i < 16; i++)
		if (f->C_GetTokenInfo(ids[i], &ti) == CKR_OK &&
		    memcmp(ti.label, padded, sizeof(padded)) == 0) {
			*out = ids[i];
			return true;
		}
	return false;
}

/* ---- the steps ---- */

static void mechanisms(CK_SLOT_ID slot)
{
	CK_ULONG n = SENTINEL, m;
	CK_MECHANISM_TYPE *list;
	bool ecdsa = false;
	CK_RV rv = f->C_GetMechanismList(slot, NULL, &n);

	if (refused_alone("mechcount")) {
		/* The proxy asks the member for its list even for a size query. */
		check(rv == CKR_DEVICE_ERROR, "C_GetMechanismList size query answers CKR_DEVICE_ERROR",
		      "%s", R(rv));
		check(n == SENTINEL, "C_GetMechanismList size query: count untouched", "%lu",
		      (unsigned long)n);
		n = 16;
	} else {
		check(rv == CKR_OK && n > 0 && n < 4096, "C_GetMechanismList size query answers",
		      "%s, %lu", R(rv), (unsigned long)n);
		if (rv != CKR_OK || n == 0 || n >= 4096)
			return;
	}
	m = n;
	list = gb_new(m * sizeof(*list));
	rv = f->C_GetMechanismList(slot, list, &n);
	if (refused_alone("mechcount")) {
		check(rv == CKR_DEVICE_ERROR, "C_GetMechanismList answers CKR_DEVICE_ERROR", "%s",
		      R(rv));
	} else {
		for (CK_ULONG i = 0; rv == CKR_OK && i < n && i < m; i++)
			ecdsa |= list[i] == CKM_ECDSA;
		check(rv == CKR_OK && ecdsa, "C_GetMechanismList lists CKM_ECDSA", "%s", R(rv));
		/* The evil module has 3; SoftHSM2 dozens. */
		if (ha && lie("mechcount"))
			check(rv == CKR_OK && n > 3,
			      "C_GetMechanismList answered by the healthy member (more than 3)",
			      "%s, %lu", R(rv), (unsigned long)n);
	}
	check(n <= m, "C_GetMechanismList: count back within the buffer given", "%lu for %lu",
	      (unsigned long)n, (unsigned long)m);
	check(gb_intact(list, m * sizeof(*list)),
	      "C_GetMechanismList: nothing written past the buffer", "guard bytes overwritten");
	gb_free(list, m * sizeof(*list));
}

/* A R/W session, logged in; false when the proxy (rightly) would not open one. */
static bool session(CK_SLOT_ID slot, CK_SESSION_HANDLE *s)
{
	CK_RV rv;

	*s = SENTINEL;
	rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, s);
	if (refused_alone("nullsession")) {
		check(rv == CKR_DEVICE_ERROR,
		      "C_OpenSession (member session handle 0) answers CKR_DEVICE_ERROR", "%s",
		      R(rv));
		if (rv == CKR_OK)
			f->C_CloseSession(*s);
		return false;
	}
	check(rv == CKR_OK && *s != 0 && *s != SENTINEL,
	      lie("nullsession") ? "C_OpenSession answered by the healthy member"
	                         : "C_OpenSession answers CKR_OK",
	      "%s, handle 0x%lx", R(rv), (unsigned long)*s);
	if (rv != CKR_OK)
		return false;
	rv = f->C_Login(*s, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4);
	check(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN, "C_Login answers CKR_OK", "%s",
	      R(rv));
	return true;
}

/* The key (CKA_ID 01, label "k"); 0 when the find (rightly) failed. */
static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE s)
{
	static const CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	static const CK_BYTE id = 0x01;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, (void *)&cls, sizeof(cls)},
	    {CKA_ID, (void *)&id, 1},
	    {CKA_LABEL, "k", 1},
	};
	const CK_ULONG max = 4;
	CK_OBJECT_HANDLE *out = gb_new(max * sizeof(*out)), key = 0;
	CK_ULONG n = SENTINEL;
	bool nonzero = true;
	CK_RV rv = f->C_FindObjectsInit(s, t, 3), rv2;

	check(rv == CKR_OK, "C_FindObjectsInit answers CKR_OK", "%s", R(rv));
	if (rv != CKR_OK) {
		gb_free(out, max * sizeof(*out));
		return 0;
	}
	rv = f->C_FindObjects(s, out, max, &n);
	if (refused_alone("findcount") || refused_alone("nullobject")) {
		check(rv == CKR_DEVICE_ERROR,
		      lie("findcount") ? "C_FindObjects (member count max + 10) answers CKR_DEVICE_ERROR"
		                       : "C_FindObjects (member handle 0) answers CKR_DEVICE_ERROR",
		      "%s", R(rv));
	} else {
		check(rv == CKR_OK && n == 1,
		      lie("findcount") || lie("nullobject")
		          ? "C_FindObjects answered by the healthy member: 1 key"
		          : "C_FindObjects finds the key",
		      "%s, %lu objects", R(rv), (unsigned long)n);
		if (rv == CKR_OK && n == 1)
			key = out[0];
	}
	if (rv == CKR_OK)
		for (CK_ULONG i = 0; i < n && i < max; i++)
			nonzero &= out[i] != 0;
	check(rv != CKR_OK || n <= max, "C_FindObjects: count back within max", "%lu for %lu",
	      (unsigned long)n, (unsigned long)max);
	check(nonzero, "C_FindObjects never hands out handle 0", "a handle 0");
	check(gb_intact(out, max * sizeof(*out)), "C_FindObjects: nothing written past max",
	      "guard bytes overwritten");
	rv2 = f->C_FindObjectsFinal(s);
	check(rv2 == CKR_OK || rv != CKR_OK, "C_FindObjectsFinal answers CKR_OK", "%s", R(rv2));
	gb_free(out, max * sizeof(*out));
	return key;
}

static const CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static void attributes(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
	CK_BYTE *label = gb_new(8), *params = gb_new(64), *small = gb_new(4);
	CK_ATTRIBUTE a[] = {{CKA_LABEL, label, 8}, {CKA_EC_PARAMS, params, 64}};
	CK_ATTRIBUTE b[] = {{CKA_EC_PARAMS, small, 4}};
	bool lens;
	CK_RV rv = f->C_GetAttributeValue(s, key, a, 2);

	lens = (a[0].ulValueLen <= 8 || a[0].ulValueLen == CK_UNAVAILABLE_INFORMATION) &&
	       (a[1].ulValueLen <= 64 || a[1].ulValueLen == CK_UNAVAILABLE_INFORMATION);
	if (refused_alone("attrlen")) {
		check(rv == CKR_DEVICE_ERROR,
		      "C_GetAttributeValue (member value lengths too large) answers CKR_DEVICE_ERROR",
		      "%s", R(rv));
	} else if (lie("attrlen")) {
		/* Found on the evil member: its identity could not be read, it cannot move. */
		note("C_GetAttributeValue", rv);
		check(rv != CKR_OK ||
		          (a[0].ulValueLen == 1 && memcmp(label, "k", 1) == 0 &&
		           a[1].ulValueLen == sizeof(p256) && memcmp(params, p256, sizeof(p256)) == 0),
		      "C_GetAttributeValue answers an error or the true values", "%s", R(rv));
	} else {
		check(rv == CKR_OK && a[0].ulValueLen == 1 && memcmp(label, "k", 1) == 0 &&
		          a[1].ulValueLen == sizeof(p256) && memcmp(params, p256, sizeof(p256)) == 0,
		      "C_GetAttributeValue(CKA_LABEL, CKA_EC_PARAMS) answers the key's values", "%s",
		      R(rv));
	}
	check(lens, "C_GetAttributeValue: each length back within the buffer given", "%lu/8, %lu/64",
	      (unsigned long)a[0].ulValueLen, (unsigned long)a[1].ulValueLen);
	check(gb_intact(label, 8) && gb_intact(params, 64),
	      "C_GetAttributeValue: nothing written past the buffers", "guard bytes overwritten");

	/* CKA_EC_PARAMS is 10 bytes: 4 are too few. */
	rv = f->C_GetAttributeValue(s, key, b, 1);
	if (refused_alone("attrlen"))
		check(rv == CKR_DEVICE_ERROR,
		      "C_GetAttributeValue into 4 bytes (member claims more) answers CKR_DEVICE_ERROR",
		      "%s", R(rv));
	else if (!lie("attrlen"))
		check(rv == CKR_BUFFER_TOO_SMALL,
		      "C_GetAttributeValue into 4 bytes answers CKR_BUFFER_TOO_SMALL", "%s", R(rv));
	check(b[0].ulValueLen == CK_UNAVAILABLE_INFORMATION ||
	          (rv == CKR_BUFFER_TOO_SMALL && b[0].ulValueLen == sizeof(p256)) ||
	          b[0].ulValueLen <= 4,
	      "C_GetAttributeValue into 4 bytes: length back within the buffer given", "%lu, %s",
	      (unsigned long)b[0].ulValueLen, R(rv));
	check(gb_intact(small, 4), "C_GetAttributeValue into 4 bytes: nothing written past it",
	      "guard bytes overwritten");
	gb_free(label, 8);
	gb_free(params, 64);
	gb_free(small, 4);
}

/*
 * What a lying output call must answer: CKR_DEVICE_ERROR with no other
 * member; on HA slots, the honest answer (honest) of the healthy member.
 * The key found on the evil member without its identity (attrlen, HA)
 * cannot move: any result, the length and guard checks still hold.
 */
static void expect_out(const char *what, CK_RV rv, CK_RV honest, CK_ULONG len, CK_ULONG given,
                       CK_ULONG needed, CK_BYTE *buf)
{
	bool any = ha && lie("attrlen");

	out_checks(what, rv, refused_alone("signlen") ? CKR_DEVICE_ERROR : honest, any, len, given,
	           needed, buf);
}

static const CK_BYTE data[32] = "an application's 32 bytes......";

/* Starts an operation again when the last call ended it (an error, or a result). */
static bool sign_init(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, const char *what)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	CK_RV rv = f->C_SignInit(s, &m, key);
	char name[96];

	snprintf(name, sizeof(name), "C_SignInit (%s) answers CKR_OK", what);
	if (ha && lie("attrlen"))
		note(name, rv);
	else
		check(rv == CKR_OK, name, "%s", R(rv));
	return rv == CKR_OK;
}

static void sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
	CK_BYTE *small = gb_new(16), *big = gb_new(256);
	CK_ULONG len;
	CK_RV rv;

	if (!sign_init(s, key, "one part"))
		goto out;
	len = SENTINEL;
	rv = f->C_Sign(s, (CK_BYTE_PTR)data, sizeof(data), NULL, &len);
	check(rv == CKR_OK && len == SIG_LEN, "C_Sign size query answers 64", "%s, %lu", R(rv),
	      (unsigned long)len);
	len = 16;
	rv = f->C_Sign(s, (CK_BYTE_PTR)data, sizeof(data), small, &len);
	expect_out("C_Sign into 16 bytes", rv, CKR_BUFFER_TOO_SMALL, len, 16, SIG_LEN, small);
	/* CKR_BUFFER_TOO_SMALL leaves the operation active; anything else ended it. */
	if (rv != CKR_BUFFER_TOO_SMALL && !sign_init(s, key, "again"))
		goto out;
	len = 256;
	rv = f->C_Sign(s, (CK_BYTE_PTR)data, sizeof(data), big, &len);
	expect_out("C_Sign into 256 bytes", rv, CKR_OK, len, 256, SIG_LEN, big);
	if (rv == CKR_OK && !(ha && lie("attrlen")))
		check(len == SIG_LEN, "C_Sign: a 64-byte signature", "%lu", (unsigned long)len);

	/*
	 * In several parts. SoftHSM2 (2.6) signs CKM_ECDSA in one part only: on
	 * the HA slots, once the healthy member serves the session, any result.
	 */
	if (!sign_init(s, key, "several parts"))
		goto out;
	rv = f->C_SignUpdate(s, (CK_BYTE_PTR)data, 16);
	if (rv == CKR_OK)
		rv = f->C_SignUpdate(s, (CK_BYTE_PTR)data + 16, 16);
	if (!ha)
		check(rv == CKR_OK, "C_SignUpdate answers CKR_OK", "%s", R(rv));
	if (rv != CKR_OK)
		goto out;
	gb_reset(big, 256);
	len = 256;
	rv = f->C_SignFinal(s, big, &len);
	out_checks("C_SignFinal into 256 bytes", rv,
	           refused_alone("signlen") ? CKR_DEVICE_ERROR : CKR_OK, ha, len, 256, SIG_LEN, big);
out:
	gb_free(small, 16);
	gb_free(big, 256);
}

/*
 * C_Encrypt with the EC key: the evil module takes any mechanism; SoftHSM2
 * refuses, so on the HA slots only the length and guard checks apply.
 */
static void encrypt(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
	CK_MECHANISM m = {CKM_AES_ECB, NULL, 0};
	CK_BYTE *small = gb_new(8), *big = gb_new(64);
	bool strict = !ha;
	CK_ULONG len;
	CK_RV rv = f->C_EncryptInit(s, &m, key);

	if (strict)
		check(rv == CKR_OK, "C_EncryptInit answers CKR_OK", "%s", R(rv));
	if (rv != CKR_OK)
		goto out;
	len = 8;
	rv = f->C_Encrypt(s, (CK_BYTE_PTR)data, 16, small, &len);
	out_checks("C_Encrypt of 16 bytes into 8", rv,
	           refused_alone("signlen") ? CKR_DEVICE_ERROR : CKR_BUFFER_TOO_SMALL, !strict, len,
	           8, 16, small);
	if (rv != CKR_BUFFER_TOO_SMALL) {
		rv = f->C_EncryptInit(s, &m, key);
		if (strict)
			check(rv == CKR_OK, "C_EncryptInit (again) answers CKR_OK", "%s", R(rv));
		if (rv != CKR_OK)
			goto out;
	}
	len = 64;
	rv = f->C_Encrypt(s, (CK_BYTE_PTR)data, 16, big, &len);
	out_checks("C_Encrypt of 16 bytes into 64", rv,
	           refused_alone("signlen") ? CKR_DEVICE_ERROR : CKR_OK, !strict, len, 64, 16, big);

	/* In parts: C_EncryptUpdate, C_EncryptFinal. */
	rv = f->C_EncryptInit(s, &m, key);
	if (strict)
		check(rv == CKR_OK, "C_EncryptInit (parts) answers CKR_OK", "%s", R(rv));
	if (rv != CKR_OK)
		goto out;
	gb_reset(big, 64);
	len = 64;
	rv = f->C_EncryptUpdate(s, (CK_BYTE_PTR)data, 16, big, &len);
	out_checks("C_EncryptUpdate of 16 bytes into 64", rv,
	           refused_alone("signlen") ? CKR_DEVICE_ERROR : CKR_OK, !strict, len, 64, 16, big);
	if (rv != CKR_OK)
		goto out;
	gb_reset(small, 8);
	len = 8;
	rv = f->C_EncryptFinal(s, small, &len);
	out_checks("C_EncryptFinal into 8 bytes", rv,
	           refused_alone("signlen") ? CKR_DEVICE_ERROR : CKR_OK, !strict, len, 8, 0, small);
out:
	gb_free(small, 8);
	gb_free(big, 64);
}

static void digest(CK_SESSION_HANDLE s)
{
	CK_MECHANISM m = {CKM_SHA256, NULL, 0};
	CK_BYTE *small = gb_new(8), *big = gb_new(64);
	CK_ULONG len;
	CK_RV rv = f->C_DigestInit(s, &m);

	check(rv == CKR_OK, "C_DigestInit answers CKR_OK", "%s", R(rv));
	if (rv != CKR_OK)
		goto out;
	len = 8;
	rv = f->C_Digest(s, (CK_BYTE_PTR)data, sizeof(data), small, &len);
	out_checks("C_Digest into 8 bytes", rv,
	           refused_alone("signlen") ? CKR_DEVICE_ERROR : CKR_BUFFER_TOO_SMALL, false, len,
	           8, DIGEST_LEN, small);
	if (rv != CKR_BUFFER_TOO_SMALL) {
		rv = f->C_DigestInit(s, &m);
		check(rv == CKR_OK, "C_DigestInit (again) answers CKR_OK", "%s", R(rv));
		if (rv != CKR_OK)
			goto out;
	}
	len = 64;
	rv = f->C_Digest(s, (CK_BYTE_PTR)data, sizeof(data), big, &len);
	out_checks("C_Digest into 64 bytes", rv, refused_alone("signlen") ? CKR_DEVICE_ERROR : CKR_OK,
	           false, len, 64, DIGEST_LEN, big);
	if (rv == CKR_OK)
		check(len == DIGEST_LEN, "C_Digest: 32 bytes", "%lu", (unsigned long)len);
	/*
	 * Who answered: SoftHSM2 computes a true SHA-256, the evil module does
	 * not. On the HA slots the evil member serves only the control; after
	 * any lie (but attrlen's, whose key cannot move) the healthy one does.
	 */
	if (ha && rv == CKR_OK && len == DIGEST_LEN && !lie("attrlen")) {
		CK_BYTE want[DIGEST_LEN];

		SHA256(data, sizeof(data), want);
		if (lie("none"))
			check(memcmp(big, want, DIGEST_LEN) != 0,
			      "C_Digest answered by the evil member (control)", "a true SHA-256");
		else
			check(memcmp(big, want, DIGEST_LEN) == 0,
			      "C_Digest answered by the healthy member (a true SHA-256)",
			      "the evil member's");
	}
out:
	gb_free(small, 8);
	gb_free(big, 64);
}

static void run_slot(const char *label)
{
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	CK_SLOT_ID slot = 0;
	bool present = slot_of(label, &slot);
	CK_RV rv;

	if (refused_alone("slotcount") || refused_alone("hugelist")) {
		CK_SLOT_ID ids[4];
		CK_ULONG n = 4;
		CK_SESSION_HANDLE h;

		check(!present, "the slot has no token (its member's slot list was refused)",
		      "a token");
		rv = f->C_GetSlotList(CK_FALSE, ids, &n);
		check(rv == CKR_OK && n == 1, "C_GetSlotList(all) still lists the slot", "%s, %lu",
		      R(rv), (unsigned long)n);
		if (rv == CKR_OK && n == 1) {
			rv = f->C_OpenSession(ids[0], CKF_SERIAL_SESSION, NULL, NULL, &h);
			check(rv == CKR_TOKEN_NOT_PRESENT,
			      "C_OpenSession on it answers CKR_TOKEN_NOT_PRESENT", "%s", R(rv));
			if (rv == CKR_OK)
				f->C_CloseSession(h);
		}
		return;
	}
	check(present,
	      ha && !lie("none") ? "the slot has a token (the healthy member)"
	                         : "the slot has a token",
	      "none");
	if (!present)
		return;
	mechanisms(slot);
	if (!session(slot, &s))
		return;
	key = find_key(s);
	if (key != 0) {
		attributes(s, key);
		sign(s, key);
		encrypt(s, key);
	}
	digest(s);
	rv = f->C_CloseSession(s);
	check(rv == CKR_OK, "C_CloseSession answers CKR_OK", "%s", R(rv));
	/* Handle 0 cannot be named, so it cannot be closed: left open. */
	if (!lie("nullsession"))
		check(sessions_open() == 0, "no session left open on the evil module",
		      "%lu sessions", sessions_open());
}

int main(int argc, char **argv)
{
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	void *evil;
	CK_RV rv;

	if (argc != 5 || (strcmp(argv[3], "single") != 0 && strcmp(argv[3], "ha") != 0 &&
	                  strcmp(argv[3], "hato") != 0)) {
		fprintf(stderr, "usage: eviltest PROXY EVIL single|ha|hato LIE\n");
		return 2;
	}
	cfg = argv[3];
	lie_word = argv[4];
	ha = strcmp(cfg, "single") != 0;
	if (strcmp(lie_word, "none") == 0)
		unsetenv("EVIL_LIE");
	else
		setenv("EVIL_LIE", lie_word, 1);
	/* Loaded first and kept: the proxy's p11-kit opens this same copy. */
	evil = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
	if (evil == NULL || (*(void **)&lies_told = dlsym(evil, "evil_lies_told")) == NULL ||
	    (*(void **)&sessions_open = dlsym(evil, "evil_sessions_open")) == NULL) {
		fprintf(stderr, "%s: %s\n", argv[2], dlerror());
		return 2;
	}
	load_proxy(argv[1]);
	snprintf(where, sizeof(where), "%s %s", cfg, lie_word);

	rv = f->C_Initialize(&args);
	if (refused_alone("nolist") || refused_alone("badversion")) {
		CK_ULONG n = 0;

		check(rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED,
		      "C_Initialize fails (the only backend is not a PKCS#11 2.x module)", "%s",
		      R(rv));
		if (rv == CKR_OK) {
			f->C_Finalize(NULL);
		} else {
			rv = f->C_GetSlotList(CK_FALSE, NULL, &n);
			check(rv == CKR_CRYPTOKI_NOT_INITIALIZED,
			      "after it, C_GetSlotList answers CKR_CRYPTOKI_NOT_INITIALIZED", "%s",
			      R(rv));
		}
	} else {
		check(rv == CKR_OK, "C_Initialize answers CKR_OK", "%s", R(rv));
		if (rv != CKR_OK)
			return 1;
		run_slot(cfg);
		rv = f->C_Finalize(NULL);
		check(rv == CKR_OK, "C_Finalize answers CKR_OK", "%s", R(rv));
	}
	if (strcmp(lie_word, "none") == 0)
		check(lies_told() == 0, "the evil module told no lie (control)", "%lu lies",
		      lies_told());
	else
		check(lies_told() > 0, "the evil module told its lie", "no lie told");
	/* No dlclose: leak checkers then still see the modules' symbols. */
	return failures == 0 ? 0 : 1;
}
