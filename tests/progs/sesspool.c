/*
 * The backend session pool (lib/virt/session.c), through libproxy.so over the
 * fault-injecting shim (tests/shim/shim.c), whose call log counts the calls
 * that reach the token.
 *   sesspool MODULE CONTROL LOG SLOT TOKEN
 * SLOT is the proxy slot's label, TOKEN the label of the token behind it (its
 * first member). The suite (tests/suites/61-sesspool.sh) runs it on a slot with
 * one member and on an HA pair. Prints "ok ..." / "FAIL ..."; exit 1 on failure.
 */
#include "../tests/progs/testmod.h"

#include <stdarg.h>
#include <unistd.h>

#include "shimctl.h"

#define SO_PIN "5678" /* tests/lib.sh TEST_SO_PIN */

static CK_SLOT_ID slot;
static const char *token;
static CK_OBJECT_HANDLE hmac_key;

/* Log lines for C_Func on the token with result res (NULL: any), from line `from` on. */
static long calls(long from, const char *fn, const char *res)
{
	char a[128], b[64];

	snprintf(a, sizeof(a), "%s %s ", fn, token);
	snprintf(b, sizeof(b), " %s\n", res != NULL ? res : "");
	return log_count(from, a, res != NULL ? b : NULL);
}

/* Backend sessions open on the token now, as the log tells (opened - closed). */
static long backend_open_now(void)
{
	return calls(0, "C_OpenSession", "CKR_OK") - calls(0, "C_CloseSession", "CKR_OK");
}

static CK_SESSION_HANDLE open_s(int rw)
{
	CK_SESSION_HANDLE s = 0;
	CK_RV rv =
	    f->C_OpenSession(slot, CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0), NULL, NULL, &s);

	if (rv != CKR_OK) {
		expect(0, "C_OpenSession (%s): 0x%lx", rw ? "R/W" : "R/O", (unsigned long)rv);
		exit(1);
	}
	return s;
}

static int login(CK_SESSION_HANDLE s)
{
	CK_RV rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN));

	return rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN;
}

/* Objects of class cls labelled label that session s finds (-1: the find failed). */
static long count_found(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                    {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h[8];
	CK_ULONG n = 0;

	if (f->C_FindObjectsInit(s, t, 2) != CKR_OK)
		return -1;
	if (f->C_FindObjects(s, h, 8, &n) != CKR_OK)
		n = (CK_ULONG)-1;
	if (f->C_FindObjectsFinal(s) != CKR_OK)
		return -1;
	return (long)n;
}

static CK_RV make_data(CK_SESSION_HANDLE s, CK_BBOOL tok, CK_BBOOL priv, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BYTE v[4] = {1, 2, 3, 4};
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                    {CKA_TOKEN, &tok, sizeof(tok)},
	                    {CKA_PRIVATE, &priv, sizeof(priv)},
	                    {CKA_LABEL, (void *)label, strlen(label)},
	                    {CKA_VALUE, v, sizeof(v)}};
	CK_OBJECT_HANDLE h;

	return f->C_CreateObject(s, t, 5, &h);
}

/* A token HMAC key for the operations below. */
static CK_RV make_hmac_key(CK_SESSION_HANDLE s)
{
	CK_MECHANISM m = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
	CK_BBOOL yes = CK_TRUE;
	CK_ULONG len = 32;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
	                    {CKA_TOKEN, &yes, sizeof(yes)}, {CKA_PRIVATE, &yes, sizeof(yes)},
	                    {CKA_SIGN, &yes, sizeof(yes)},  {CKA_VALUE_LEN, &len, sizeof(len)},
	                    {CKA_LABEL, "sp-hmac", 7}};

	return f->C_GenerateKey(s, &m, t, 7, &hmac_key);
}

static int state_is(CK_SESSION_HANDLE s, CK_STATE state, int rw)
{
	CK_SESSION_INFO si;
	CK_RV rv = f->C_GetSessionInfo(s, &si);

	return rv == CKR_OK && si.state == state && !!(si.flags & CKF_RW_SESSION) == rw &&
	       si.slotID == slot;
}

int main(int argc, char **argv)
{
	CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
	CK_MECHANISM bad = {CKM_VENDOR_DEFINED | 0x5350UL, NULL, 0};
	CK_SESSION_HANDLE setup, a, b, s;
	CK_BYTE sig[64];
	CK_ULONG sig_len;
	long mark, opens, closes;
	CK_RV rv;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 6) {
		fprintf(stderr, "usage: sesspool MODULE CONTROL LOG SLOT TOKEN\n");
		return 2;
	}
	control_path = argv[2];
	log_path = argv[3];
	token = argv[5];
	control("");
	if (!testmod_load(&mod, argv[1]))
		return 1;
	f = mod.f;
	if (!testmod_find_token(&mod, argv[4], &slot)) {
		expect(0, "slot %s found", argv[4]);
		return checks_verdict();
	}

	/* A logged-in setup session stays open, as in the benchmark. */
	setup = open_s(1);
	expect(login(setup), "login on the setup session");
	rv = make_data(setup, CK_TRUE, CK_TRUE, "sp-private");
	expect(rv == CKR_OK, "a private token object made (0x%lx)", (unsigned long)rv);
	rv = make_hmac_key(setup);
	expect(rv == CKR_OK, "an HMAC token key made (0x%lx)", (unsigned long)rv);

	/* 1. Open + close 100 times: the token sees about one open, not 100. */
	mark = log_lines();
	for (int i = 0; i < 100; i++) {
		s = open_s(0);
		if (i == 50)
			expect(state_is(s, CKS_RO_USER_FUNCTIONS, 0),
			       "a reused R/O session is logged in and R/O");
		f->C_CloseSession(s);
	}
	opens = calls(mark, "C_OpenSession", NULL);
	closes = calls(mark, "C_CloseSession", NULL);
	expect(opens <= 2 && closes <= 2,
	       "100 R/O opens + closes: %ld backend C_OpenSession, %ld C_CloseSession (<= 2)",
	       opens, closes);
	mark = log_lines();
	for (int i = 0; i < 50; i++)
		f->C_CloseSession(open_s(1));
	opens = calls(mark, "C_OpenSession", NULL);
	expect(opens <= 2, "50 R/W opens + closes: %ld backend C_OpenSession (<= 2)", opens);

	/* 2. R/O and R/W kept apart: each reused session says what it is. */
	a = open_s(0);
	b = open_s(1);
	expect(state_is(a, CKS_RO_USER_FUNCTIONS, 0), "R/O session: R/O user functions");
	expect(state_is(b, CKS_RW_USER_FUNCTIONS, 1), "R/W session: R/W user functions");
	f->C_CloseSession(a);
	f->C_CloseSession(b);
	b = open_s(1);
	a = open_s(0);
	expect(state_is(b, CKS_RW_USER_FUNCTIONS, 1), "R/W opened first: still R/W");
	expect(state_is(a, CKS_RO_USER_FUNCTIONS, 0), "R/O opened second: still R/O");
	f->C_CloseSession(a);
	f->C_CloseSession(b);

	/* 3. A session that was used cleanly (a find, a finished sign) is reused. */
	s = open_s(0);
	expect(count_found(s, CKO_DATA, "sp-private") == 1, "the private object is found");
	sig_len = sizeof(sig);
	rv = f->C_SignInit(s, &hmac, hmac_key);
	if (rv == CKR_OK)
		rv = f->C_Sign(s, (CK_BYTE_PTR) "abc", 3, sig, &sig_len);
	expect(rv == CKR_OK && sig_len == 32, "an HMAC sign (0x%lx)", (unsigned long)rv);
	mark = log_lines();
	f->C_CloseSession(s);
	f->C_CloseSession(open_s(0));
	expect(calls(mark, "C_CloseSession", NULL) == 0 && calls(mark, "C_OpenSession", NULL) == 0,
	       "a session used cleanly is kept and reused");

	/* 4. A session that made a session object is closed: the object is gone. */
	s = open_s(1);
	rv = make_data(s, CK_FALSE, CK_FALSE, "sp-session-obj");
	expect(rv == CKR_OK, "a session object made (0x%lx)", (unsigned long)rv);
	mark = log_lines();
	f->C_CloseSession(s);
	expect(calls(mark, "C_CloseSession", "CKR_OK") == 1,
	       "a session with a session object is closed on the token");
	s = open_s(1);
	expect(count_found(s, CKO_DATA, "sp-session-obj") == 0,
	       "its session object is gone for the next session");
	expect(count_found(setup, CKO_DATA, "sp-session-obj") == 0, "and for the setup session");
	f->C_CloseSession(s);

	/* 5. A session closed with an operation active is closed, not reused. */
	s = open_s(0);
	rv = f->C_SignInit(s, &hmac, hmac_key);
	expect(rv == CKR_OK, "C_SignInit (0x%lx)", (unsigned long)rv);
	mark = log_lines();
	f->C_CloseSession(s);
	expect(calls(mark, "C_CloseSession", "CKR_OK") == 1,
	       "a session with a sign active is closed on the token");
	for (int i = 0; i < 2 * 4 + 1; i++) { /* whatever the pool holds */
		s = open_s(0);
		rv = f->C_SignInit(s, &hmac, hmac_key);
		expect(rv == CKR_OK, "the next session's C_SignInit: 0x%lx", (unsigned long)rv);
		sig_len = sizeof(sig);
		f->C_Sign(s, (CK_BYTE_PTR) "abc", 3, sig, &sig_len);
		f->C_CloseSession(s);
	}
	s = open_s(0);
	rv = f->C_FindObjectsInit(s, NULL, 0);
	expect(rv == CKR_OK, "C_FindObjectsInit (0x%lx)", (unsigned long)rv);
	mark = log_lines();
	f->C_CloseSession(s);
	expect(calls(mark, "C_CloseSession", "CKR_OK") == 1,
	       "a session with a find active is closed on the token");
	s = open_s(0);
	expect(count_found(s, CKO_DATA, "sp-private") == 1,
	       "the next session finds (no find active)");
	f->C_CloseSession(s);

	/* 6. A session a call failed on is not reused. */
	s = open_s(0);
	rv = f->C_SignInit(s, &bad, hmac_key);
	expect(rv != CKR_OK, "C_SignInit with a bad mechanism fails (0x%lx)", (unsigned long)rv);
	mark = log_lines();
	f->C_CloseSession(s);
	expect(calls(mark, "C_CloseSession", "CKR_OK") == 1,
	       "a session a call failed on is closed on the token");

	/* 7. The last session closed: the pool goes, the token logs out. */
	f->C_CloseSession(open_s(0));
	f->C_CloseSession(open_s(1));
	f->C_CloseSession(setup);
	expect(backend_open_now() == 0,
	       "no backend session open on the token after the last close "
	       "(%ld)",
	       backend_open_now());
	s = open_s(0);
	expect(state_is(s, CKS_RO_PUBLIC_SESSION, 0), "a new session is public");
	expect(count_found(s, CKO_DATA, "sp-private") == 0, "private objects are not found");
	f->C_CloseSession(s);
	expect(backend_open_now() == 0, "none open after that one either (%ld)",
	       backend_open_now());

	/* 8. Sessions lost on the token (a restart): the pool is not handed out blindly. */
	setup = open_s(1);
	expect(login(setup), "login again");
	a = open_s(0);
	b = open_s(0);
	f->C_CloseSession(a);
	f->C_CloseSession(b); /* two pooled */
	{
		char rules[256];

		snprintf(rules, sizeof(rules), "%s drop\n", token);
		control(rules);
	}
	f->C_GetSlotInfo(slot, &(CK_SLOT_INFO){0}); /* any call makes the shim load the rule */
	s = open_s(0);
	expect(state_is(s, CKS_RO_USER_FUNCTIONS, 0),
	       "a session opened after the loss works, logged in");
	mark = log_lines();
	a = open_s(0);
	expect(state_is(a, CKS_RO_USER_FUNCTIONS, 0), "and the next one");
	expect(calls(mark, "C_GetSessionInfo", "CKR_SESSION_HANDLE_INVALID") == 0,
	       "the other pooled session (lost too) is not handed out");
	expect(state_is(setup, CKS_RW_USER_FUNCTIONS, 1), "the setup session works after the loss");
	expect(count_found(a, CKO_DATA, "sp-private") == 1, "private objects are found after it");
	f->C_CloseSession(a);
	f->C_CloseSession(s);
	f->C_CloseSession(setup);
	control("");

	/* 9. A pooled R/O session does not keep the SO out (the token refuses it while R/O ones
	 * exist). */
	setup = open_s(1);
	f->C_CloseSession(open_s(0)); /* one R/O pooled */
	rv = f->C_Login(setup, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN));
	expect(rv == CKR_OK, "the SO logs in with a pooled R/O session about (0x%lx)",
	       (unsigned long)rv);
	rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
	expect(rv == CKR_SESSION_READ_WRITE_SO_EXISTS,
	       "then an R/O session is refused as the token would (0x%lx)", (unsigned long)rv);
	f->C_Logout(setup);
	f->C_CloseSession(setup);

	f->C_Finalize(NULL);
	testmod_unload(&mod);
	return checks_verdict();
}
