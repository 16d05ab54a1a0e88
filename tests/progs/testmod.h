/*
 * Header-only helpers for the black-box test programs and the benchmark:
 * load a PKCS#11 module the way an application does (dlopen +
 * C_GetFunctionList), find a token by label, open a logged-in session.
 * Used identically against SoftHSM2 directly and against libproxy.so.
 */
#ifndef P11P_TESTMOD_H
#define P11P_TESTMOD_H

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

struct testmod {
	void *dl;
	CK_FUNCTION_LIST *f;
};

/* Prints why and returns 0 on failure. Calls C_Initialize with CKF_OS_LOCKING_OK. */
static inline int testmod_load(struct testmod *m, const char *path)
{
	CK_C_GetFunctionList get;
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	CK_RV rv;

	memset(m, 0, sizeof(*m));
	m->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (m->dl == NULL) {
		fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
		return 0;
	}
	get = (CK_C_GetFunctionList)dlsym(m->dl, "C_GetFunctionList");
	if (get == NULL || get(&m->f) != CKR_OK || m->f == NULL) {
		fprintf(stderr, "%s: no usable C_GetFunctionList\n", path);
		return 0;
	}
	rv = m->f->C_Initialize(&args);
	if (rv != CKR_OK) {
		fprintf(stderr, "%s: C_Initialize: 0x%lx\n", path, (unsigned long)rv);
		return 0;
	}
	return 1;
}

static inline void testmod_unload(struct testmod *m)
{
	if (m->f != NULL)
		m->f->C_Finalize(NULL);
	/* No dlclose: leak checkers then still see the module's symbols. */
	m->f = NULL;
}

/* The slot whose token label (blank-padded) equals `label`; 0 on failure. */
static inline int testmod_find_token(struct testmod *m, const char *label, CK_SLOT_ID *out)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64;
	CK_TOKEN_INFO ti;
	char padded[32];
	size_t len = strlen(label);

	if (len > 32 || m->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		return 0;
	memset(padded, ' ', 32);
	memcpy(padded, label, len);
	for (CK_ULONG i = 0; i < n; i++) {
		if (m->f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    memcmp(ti.label, padded, 32) == 0) {
			*out = slots[i];
			return 1;
		}
	}
	fprintf(stderr, "no token labelled '%s'\n", label);
	return 0;
}

/* Opens an R/W session on the token and logs in as user when pin != NULL. */
static inline int testmod_session(struct testmod *m, const char *label, const char *pin,
				  CK_SESSION_HANDLE *out)
{
	CK_SLOT_ID slot;
	CK_RV rv;

	if (!testmod_find_token(m, label, &slot))
		return 0;
	rv = m->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, out);
	if (rv != CKR_OK) {
		fprintf(stderr, "C_OpenSession: 0x%lx\n", (unsigned long)rv);
		return 0;
	}
	if (pin != NULL) {
		CK_UTF8CHAR buf[256];
		size_t pinlen = strlen(pin);

		if (pinlen > sizeof(buf))
			pinlen = sizeof(buf);
		memcpy(buf, pin, pinlen);
		rv = m->f->C_Login(*out, CKU_USER, buf, pinlen);
		if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
			fprintf(stderr, "C_Login: 0x%lx\n", (unsigned long)rv);
			return 0;
		}
	}
	return 1;
}

/* ---- Names and printing (shared by battery, badinput, threads, forktest) ---- */

struct testmod_name {
	unsigned long value;
	const char *name;
};

#define TESTMOD_N(x) {x, #x}

/* Every CKR_* of PKCS#11 2.40. */
static const struct testmod_name testmod_ckr_names[] = {
	TESTMOD_N(CKR_OK),
	TESTMOD_N(CKR_CANCEL),
	TESTMOD_N(CKR_HOST_MEMORY),
	TESTMOD_N(CKR_SLOT_ID_INVALID),
	TESTMOD_N(CKR_GENERAL_ERROR),
	TESTMOD_N(CKR_FUNCTION_FAILED),
	TESTMOD_N(CKR_ARGUMENTS_BAD),
	TESTMOD_N(CKR_NO_EVENT),
	TESTMOD_N(CKR_NEED_TO_CREATE_THREADS),
	TESTMOD_N(CKR_CANT_LOCK),
	TESTMOD_N(CKR_ATTRIBUTE_READ_ONLY),
	TESTMOD_N(CKR_ATTRIBUTE_SENSITIVE),
	TESTMOD_N(CKR_ATTRIBUTE_TYPE_INVALID),
	TESTMOD_N(CKR_ATTRIBUTE_VALUE_INVALID),
	TESTMOD_N(CKR_ACTION_PROHIBITED),
	TESTMOD_N(CKR_DATA_INVALID),
	TESTMOD_N(CKR_DATA_LEN_RANGE),
	TESTMOD_N(CKR_DEVICE_ERROR),
	TESTMOD_N(CKR_DEVICE_MEMORY),
	TESTMOD_N(CKR_DEVICE_REMOVED),
	TESTMOD_N(CKR_ENCRYPTED_DATA_INVALID),
	TESTMOD_N(CKR_ENCRYPTED_DATA_LEN_RANGE),
	TESTMOD_N(CKR_FUNCTION_CANCELED),
	TESTMOD_N(CKR_FUNCTION_NOT_PARALLEL),
	TESTMOD_N(CKR_FUNCTION_NOT_SUPPORTED),
	TESTMOD_N(CKR_KEY_HANDLE_INVALID),
	TESTMOD_N(CKR_KEY_SIZE_RANGE),
	TESTMOD_N(CKR_KEY_TYPE_INCONSISTENT),
	TESTMOD_N(CKR_KEY_NOT_NEEDED),
	TESTMOD_N(CKR_KEY_CHANGED),
	TESTMOD_N(CKR_KEY_NEEDED),
	TESTMOD_N(CKR_KEY_INDIGESTIBLE),
	TESTMOD_N(CKR_KEY_FUNCTION_NOT_PERMITTED),
	TESTMOD_N(CKR_KEY_NOT_WRAPPABLE),
	TESTMOD_N(CKR_KEY_UNEXTRACTABLE),
	TESTMOD_N(CKR_MECHANISM_INVALID),
	TESTMOD_N(CKR_MECHANISM_PARAM_INVALID),
	TESTMOD_N(CKR_OBJECT_HANDLE_INVALID),
	TESTMOD_N(CKR_OPERATION_ACTIVE),
	TESTMOD_N(CKR_OPERATION_NOT_INITIALIZED),
	TESTMOD_N(CKR_PIN_INCORRECT),
	TESTMOD_N(CKR_PIN_INVALID),
	TESTMOD_N(CKR_PIN_LEN_RANGE),
	TESTMOD_N(CKR_PIN_EXPIRED),
	TESTMOD_N(CKR_PIN_LOCKED),
	TESTMOD_N(CKR_SESSION_CLOSED),
	TESTMOD_N(CKR_SESSION_COUNT),
	TESTMOD_N(CKR_SESSION_HANDLE_INVALID),
	TESTMOD_N(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
	TESTMOD_N(CKR_SESSION_READ_ONLY),
	TESTMOD_N(CKR_SESSION_EXISTS),
	TESTMOD_N(CKR_SESSION_READ_ONLY_EXISTS),
	TESTMOD_N(CKR_SESSION_READ_WRITE_SO_EXISTS),
	TESTMOD_N(CKR_SIGNATURE_INVALID),
	TESTMOD_N(CKR_SIGNATURE_LEN_RANGE),
	TESTMOD_N(CKR_TEMPLATE_INCOMPLETE),
	TESTMOD_N(CKR_TEMPLATE_INCONSISTENT),
	TESTMOD_N(CKR_TOKEN_NOT_PRESENT),
	TESTMOD_N(CKR_TOKEN_NOT_RECOGNIZED),
	TESTMOD_N(CKR_TOKEN_WRITE_PROTECTED),
	TESTMOD_N(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
	TESTMOD_N(CKR_UNWRAPPING_KEY_SIZE_RANGE),
	TESTMOD_N(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
	TESTMOD_N(CKR_USER_ALREADY_LOGGED_IN),
	TESTMOD_N(CKR_USER_NOT_LOGGED_IN),
	TESTMOD_N(CKR_USER_PIN_NOT_INITIALIZED),
	TESTMOD_N(CKR_USER_TYPE_INVALID),
	TESTMOD_N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
	TESTMOD_N(CKR_USER_TOO_MANY_TYPES),
	TESTMOD_N(CKR_WRAPPED_KEY_INVALID),
	TESTMOD_N(CKR_WRAPPED_KEY_LEN_RANGE),
	TESTMOD_N(CKR_WRAPPING_KEY_HANDLE_INVALID),
	TESTMOD_N(CKR_WRAPPING_KEY_SIZE_RANGE),
	TESTMOD_N(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
	TESTMOD_N(CKR_RANDOM_SEED_NOT_SUPPORTED),
	TESTMOD_N(CKR_RANDOM_NO_RNG),
	TESTMOD_N(CKR_DOMAIN_PARAMS_INVALID),
	TESTMOD_N(CKR_CURVE_NOT_SUPPORTED),
	TESTMOD_N(CKR_BUFFER_TOO_SMALL),
	TESTMOD_N(CKR_SAVED_STATE_INVALID),
	TESTMOD_N(CKR_INFORMATION_SENSITIVE),
	TESTMOD_N(CKR_STATE_UNSAVEABLE),
	TESTMOD_N(CKR_CRYPTOKI_NOT_INITIALIZED),
	TESTMOD_N(CKR_CRYPTOKI_ALREADY_INITIALIZED),
	TESTMOD_N(CKR_MUTEX_BAD),
	TESTMOD_N(CKR_MUTEX_NOT_LOCKED),
	TESTMOD_N(CKR_NEW_PIN_MODE),
	TESTMOD_N(CKR_NEXT_OTP),
	TESTMOD_N(CKR_EXCEEDED_MAX_ITERATIONS),
	TESTMOD_N(CKR_FIPS_SELF_TEST_FAILED),
	TESTMOD_N(CKR_LIBRARY_LOAD_FAILED),
	TESTMOD_N(CKR_PIN_TOO_WEAK),
	TESTMOD_N(CKR_PUBLIC_KEY_INVALID),
	TESTMOD_N(CKR_FUNCTION_REJECTED),
};

/*
 * The CKR_* name of rv, or its value in hex ("CKR_0x...") when unknown. The
 * hex form lives in a per-thread buffer, valid until the thread's next call.
 */
static inline const char *testmod_ckr(CK_RV rv)
{
	static _Thread_local char hex[32];

	for (size_t i = 0; i < sizeof(testmod_ckr_names) / sizeof(testmod_ckr_names[0]); i++) {
		if (testmod_ckr_names[i].value == rv)
			return testmod_ckr_names[i].name;
	}
	snprintf(hex, sizeof(hex), "CKR_0x%lx", (unsigned long)rv);
	return hex;
}

/* Lowercase hex of buf into out (2*len+1 bytes). */
static inline void testmod_hex(const unsigned char *buf, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[buf[i] >> 4];
		out[2 * i + 1] = digits[buf[i] & 15];
	}
	out[2 * len] = '\0';
}

#endif
