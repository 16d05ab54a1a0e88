/*
 * Proxy-specific behaviour, through the module as an application sees it:
 *   proxytest handles MODULE LABEL PIN    handle spaces, stable handles, session objects
 *   proxytest login MODULE LABEL GOOD BAD  login with a member PIN configured
 *   proxytest events MODULE               C_WaitForSlotEvent, C_GetInfo
 *   proxytest alloc LABEL PIN             allocation failures (static library, in-process)
 *   proxytest slots MODULE LABEL...       the virtual slot ids and labels, in order
 * Prints "ok ..." / "FAIL ..." lines; exits 1 on any failure.
 */
#include "../tests/progs/testmod.h"

#include "base/mem.h"
#include "virt/virt.h"

#include <pthread.h>
#include <stdarg.h>
#include <unistd.h>

static int failures;

static void expect(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void expect(int cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("%s ", cond ? "ok" : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	if (!cond)
		failures++;
}

static int in_space(CK_ULONG h, CK_ULONG base)
{
	return h > base && h <= base + P11P_HANDLE_SPAN;
}

static CK_OBJECT_HANDLE make_data(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, const char *label,
                                  CK_BBOOL token)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_TOKEN, &token, sizeof(token)},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_VALUE, "v", 1},
	};
	CK_OBJECT_HANDLE h = 0;
	CK_RV rv = f->C_CreateObject(s, t, 4, &h);

	expect(rv == CKR_OK, "create %s (rv 0x%lx)", label, rv);
	return h;
}

static CK_ULONG find_label(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, const char *label,
                           CK_OBJECT_HANDLE *out)
{
	CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
	CK_ULONG n = 0;

	*out = 0;
	if (f->C_FindObjectsInit(s, &t, 1) != CKR_OK)
		return 0;
	f->C_FindObjects(s, out, 1, &n);
	f->C_FindObjectsFinal(s);
	return n;
}

static int cmd_handles(const char *module, const char *label, const char *pin)
{
	struct testmod m;
	CK_SESSION_HANDLE s1, s2;
	CK_SESSION_INFO si;
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE tok, sess, found;
	CK_BYTE value[8];
	CK_ATTRIBUTE get = {CKA_VALUE, value, sizeof(value)};

	if (!testmod_load(&m, module) || !testmod_find_token(&m, label, &slot) ||
	    !testmod_session(&m, label, pin, &s1) || !testmod_session(&m, label, NULL, &s2))
		return 1;
	expect(in_space(s1, P11P_SESSION_BASE) && in_space(s2, P11P_SESSION_BASE) && s1 != s2,
	       "session handles in the proxy's space (0x%lx 0x%lx)", s1, s2);
	expect(m.f->C_GetSessionInfo(s1, &si) == CKR_OK && si.slotID == slot,
	       "session info names the virtual slot");
	tok = make_data(m.f, s1, "proxytest-token", CK_TRUE);
	sess = make_data(m.f, s1, "proxytest-session", CK_FALSE);
	expect(in_space(tok, P11P_OBJECT_BASE) && in_space(sess, P11P_OBJECT_BASE),
	       "object handles in the proxy's space (0x%lx 0x%lx)", tok, sess);
	expect(find_label(m.f, s2, "proxytest-token", &found) == 1 && found == tok,
	       "find from another session returns the same handle");
	expect(find_label(m.f, s1, "proxytest-token", &found) == 1 && found == tok,
	       "finding again returns the same handle");
	expect(m.f->C_GetAttributeValue(s2, sess, &get, 1) == CKR_OK,
	       "session object visible from another session");
	expect(m.f->C_GetAttributeValue(s1, 0x12345, &get, 1) == CKR_OBJECT_HANDLE_INVALID,
	       "a backend-looking handle is invalid");
	expect(m.f->C_CloseSession(s1) == CKR_OK, "close the creating session");
	expect(m.f->C_GetAttributeValue(s2, sess, &get, 1) == CKR_OBJECT_HANDLE_INVALID,
	       "session object gone with its session");
	expect(m.f->C_GetAttributeValue(s2, tok, &get, 1) == CKR_OK,
	       "token object handle survives its session");
	expect(m.f->C_GetAttributeValue(s1, tok, &get, 1) == CKR_SESSION_HANDLE_INVALID,
	       "closed session handle is invalid");
	expect(m.f->C_Login(s2, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)) ==
	           CKR_USER_ALREADY_LOGGED_IN,
	       "login is token-wide: still logged in through the other session");
	expect(m.f->C_DestroyObject(s2, tok) == CKR_OK, "destroy token object");
	expect(m.f->C_DestroyObject(s2, tok) == CKR_OBJECT_HANDLE_INVALID,
	       "destroyed handle is invalid");
	expect(m.f->C_CloseAllSessions(slot) == CKR_OK, "close all sessions");
	expect(m.f->C_CloseSession(s2) == CKR_SESSION_HANDLE_INVALID, "all sessions closed");
	expect(testmod_session(&m, label, NULL, &s1) && m.f->C_GetSessionInfo(s1, &si) == CKR_OK &&
	           si.state == CKS_RW_PUBLIC_SESSION,
	       "closing the last session logged the token out");
	testmod_unload(&m);
	return failures ? 1 : 0;
}

static int cmd_login(const char *module, const char *label, const char *good, const char *bad)
{
	struct testmod m;
	CK_SESSION_HANDLE s;
	CK_SESSION_INFO si;

	if (!testmod_load(&m, module) || !testmod_session(&m, label, NULL, &s))
		return 1;
	expect(m.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)bad, strlen(bad)) == CKR_PIN_INCORRECT,
	       "wrong virtual PIN refused");
	expect(m.f->C_Login(s, CKU_USER, NULL, 0) == CKR_PIN_INCORRECT, "empty PIN refused");
	expect(m.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)good, strlen(good)) == CKR_OK,
	       "virtual PIN logs the member in");
	expect(m.f->C_GetSessionInfo(s, &si) == CKR_OK && si.state == CKS_RW_USER_FUNCTIONS,
	       "session is in the user state");
	expect(m.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)good, strlen(good)) ==
	           CKR_USER_ALREADY_LOGGED_IN,
	       "second login: already logged in");
	expect(m.f->C_SetPIN(s, (CK_UTF8CHAR_PTR)good, strlen(good), (CK_UTF8CHAR_PTR) "9999", 4) ==
	           CKR_FUNCTION_NOT_SUPPORTED,
	       "C_SetPIN refused while the member PIN is configured");
	expect(m.f->C_Logout(s) == CKR_OK, "logout");
	expect(m.f->C_GetSessionInfo(s, &si) == CKR_OK && si.state == CKS_RW_PUBLIC_SESSION,
	       "session is public again");
	testmod_unload(&m);
	return failures ? 1 : 0;
}

struct waiter {
	CK_FUNCTION_LIST *f;
	CK_RV rv;
};

static void *wait_blocking(void *arg)
{
	struct waiter *w = arg;
	CK_SLOT_ID slot;

	w->rv = w->f->C_WaitForSlotEvent(0, &slot, NULL);
	return NULL;
}

static int cmd_events(const char *module)
{
	struct waiter w = {.rv = CKR_OK};
	pthread_t t;
	struct testmod m;
	CK_SLOT_ID slot;
	CK_INFO info;

	if (!testmod_load(&m, module))
		return 1;
	expect(m.f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL) == CKR_NO_EVENT,
	       "no slot event pending");
	expect(m.f->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL) == CKR_ARGUMENTS_BAD,
	       "NULL slot pointer");
	expect(m.f->C_GetInfo(&info) == CKR_OK && memcmp(info.manufacturerID, "p11proxy", 8) == 0 &&
	           info.cryptokiVersion.major == 2 && info.cryptokiVersion.minor == 40,
	       "C_GetInfo describes p11proxy, PKCS#11 2.40");
	/* A thread blocked in C_WaitForSlotEvent is released by C_Finalize. */
	w.f = m.f;
	pthread_create(&t, NULL, wait_blocking, &w);
	usleep(200 * 1000);
	expect(m.f->C_Finalize(NULL) == CKR_OK, "C_Finalize with a thread waiting for events");
	pthread_join(t, NULL);
	expect(w.rv == CKR_CRYPTOKI_NOT_INITIALIZED,
	       "the waiting thread got CKR_CRYPTOKI_NOT_INITIALIZED (0x%lx)", w.rv);
	expect(m.f->C_GetSlotList(CK_FALSE, NULL, &w.rv) == CKR_CRYPTOKI_NOT_INITIALIZED,
	       "calls after C_Finalize: not initialized");
	return failures ? 1 : 0;
}

static int cmd_slots(const char *module, int n, char **labels)
{
	struct testmod m;
	CK_SLOT_ID ids[16];
	CK_ULONG count = 16;
	CK_TOKEN_INFO ti;

	if (!testmod_load(&m, module))
		return 1;
	CK_RV rv = m.f->C_GetSlotList(CK_FALSE, ids, &count);

	expect(rv == CKR_OK && count == (CK_ULONG)n, "%lu virtual slots", count);
	for (CK_ULONG i = 0; i < count && i < (CK_ULONG)n; i++) {
		char want[32];

		memset(want, ' ', 32);
		memcpy(want, labels[i], strlen(labels[i]));
		expect(ids[i] == i && m.f->C_GetTokenInfo(ids[i], &ti) == CKR_OK &&
		           memcmp(ti.label, want, 32) == 0,
		       "slot %lu is %s", i, labels[i]);
	}
	testmod_unload(&m);
	return failures ? 1 : 0;
}

/* One pass of a workload; every result other than CKR_OK / CKR_HOST_MEMORY is a failure. */
static CK_RV workload(CK_FUNCTION_LIST *f, const char *label, const char *pin)
{
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	CK_SLOT_ID slots[8];
	CK_ULONG n = 8, found = 0;
	CK_SESSION_HANDLE s = 0;
	CK_OBJECT_HANDLE h = 0, objs[4];
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &no, sizeof(no)}, {CKA_LABEL, "alloc", 5}};
	CK_RV rv;

	(void)label;
	rv = f->C_Initialize(&args);
	if (rv != CKR_OK)
		return rv;
	rv = f->C_GetSlotList(CK_TRUE, slots, &n);
	if (rv == CKR_OK && n == 0)
		rv = CKR_TOKEN_NOT_PRESENT;
	if (rv == CKR_OK)
		rv =
		    f->C_OpenSession(slots[0], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
	if (rv == CKR_OK)
		rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	if (rv == CKR_OK)
		rv = f->C_CreateObject(s, t, 3, &h);
	if (rv == CKR_OK)
		rv = f->C_FindObjectsInit(s, t, 3);
	if (rv == CKR_OK) {
		rv = f->C_FindObjects(s, objs, 4, &found);
		f->C_FindObjectsFinal(s);
	}
	if (rv == CKR_OK && found != 1)
		rv = CKR_GENERAL_ERROR;
	if (rv == CKR_OK)
		rv = f->C_DestroyObject(s, h);
	f->C_Finalize(NULL);
	return rv;
}

static int cmd_alloc(const char *label, const char *pin)
{
	CK_FUNCTION_LIST *f;
	unsigned long refused = 0;
	long n;
	CK_RV rv = CKR_HOST_MEMORY;

	if (C_GetFunctionList(&f) != CKR_OK)
		return 1;
	/* Make the n-th allocation fail, for n = 0, 1, ... until a whole pass succeeds. */
	for (n = 0; n < 100000 && rv != CKR_OK; n++) {
		p11p_mem_fail_after(n);
		rv = workload(f, label, pin);
		refused += p11p_mem_failures();
		p11p_mem_fail_reset();
		if (rv != CKR_OK && rv != CKR_HOST_MEMORY && rv != CKR_GENERAL_ERROR) {
			expect(0, "allocation %ld failing gave 0x%lx", n, rv);
			break;
		}
	}
	expect(rv == CKR_OK && refused > 0,
	       "every allocation failure handled (%ld passes, %lu refusals)", n, refused);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && strcmp(argv[1], "handles") == 0)
		return cmd_handles(argv[2], argv[3], argv[4]);
	if (argc >= 6 && strcmp(argv[1], "login") == 0)
		return cmd_login(argv[2], argv[3], argv[4], argv[5]);
	if (argc >= 3 && strcmp(argv[1], "events") == 0)
		return cmd_events(argv[2]);
	if (argc >= 4 && strcmp(argv[1], "alloc") == 0)
		return cmd_alloc(argv[2], argv[3]);
	if (argc >= 3 && strcmp(argv[1], "slots") == 0)
		return cmd_slots(argv[2], argc - 3, argv + 3);
	fprintf(stderr, "usage: proxytest handles|login|events|alloc|slots ...\n");
	return 2;
}
