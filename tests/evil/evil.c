/*
 * libevil.so: a malicious PKCS#11 2.40 module, for tests only
 * (tests/progs/eviltest.c, tests/suites/42-evil.sh).
 *
 * A plausible token, then lies on command. One slot (id 1) holds a token
 * labelled "evil" (any PIN logs in); it has one EC P-256 private key, handle 7,
 * CKA_ID 01, CKA_LABEL "k", found by C_FindObjects once logged in. C_Sign and
 * C_SignFinal (CKM_ECDSA...) answer 64 bytes, C_Encrypt / C_Decrypt (any
 * mechanism, the key above) the input XOR 0x5a, C_Digest (CKM_SHA256) 32
 * bytes. None of it is real cryptography. Every other function answers
 * CKR_FUNCTION_NOT_SUPPORTED.
 *
 * EVIL_LIE (comma-separated; read at C_GetFunctionList and C_Initialize)
 * chooses the misbehaviour:
 *   nolist      C_GetFunctionList answers CKR_OK and sets *list = NULL;
 *   badversion  the function list says version 3.0;
 *   slotcount   C_GetSlotList with a buffer reports 10 more slots than given;
 *   hugelist    C_GetSlotList's size query answers 2^40 slots;
 *   mechcount   C_GetMechanismList with a buffer reports 10 more than given;
 *   findcount   C_FindObjects reports *count = max + 10;
 *   attrlen     C_GetAttributeValue reports each value given a buffer as
 *               EVIL_HUGE bytes longer than that buffer, with CKR_OK;
 *   signlen     C_Sign, C_SignFinal, C_Encrypt, C_EncryptUpdate,
 *               C_EncryptFinal, C_Decrypt and C_Digest, given a buffer,
 *               report 1000 bytes more than its length, with CKR_OK;
 *   nullsession C_OpenSession answers CKR_OK with session handle 0 (and
 *               takes 0 for that session afterwards);
 *   nullobject  C_FindObjects hands out object handle 0 for the key (and the
 *               key is also named 0 afterwards);
 *   nullhandle  both of the above.
 * The module never writes outside the caller's buffers: it lies about
 * lengths, it writes only what fits. Size queries (NULL buffers) are answered
 * truthfully, except hugelist's.
 *
 * evil_lies_told() (exported) counts the lies told since the library was
 * loaded, so that a test can tell that its lie was actually reached;
 * evil_sessions_open() the sessions open now.
 */
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVIL_EXPORT __attribute__((visibility("default")))

#define SLOT_ID      1
#define KEY_HANDLE   7
#define SIG_LEN      64
#define DIGEST_LEN   32
#define MAX_SESSIONS 64
#define LIE_MORE     1000UL        /* signlen: bytes claimed beyond the buffer */
#define EVIL_HUGE    0x10000000UL  /* attrlen: bytes claimed beyond the buffer */
#define HUGE_LIST    (1UL << 40)   /* hugelist */

enum {
	LIE_NOLIST = 1u << 0,
	LIE_BADVERSION = 1u << 1,
	LIE_SLOTCOUNT = 1u << 2,
	LIE_HUGELIST = 1u << 3,
	LIE_MECHCOUNT = 1u << 4,
	LIE_FINDCOUNT = 1u << 5,
	LIE_ATTRLEN = 1u << 6,
	LIE_SIGNLEN = 1u << 7,
	LIE_NULLSESSION = 1u << 8,
	LIE_NULLOBJECT = 1u << 9,
};

static const struct {
	const char *name;
	unsigned bits;
} lie_names[] = {
    {"nolist", LIE_NOLIST},
    {"badversion", LIE_BADVERSION},
    {"slotcount", LIE_SLOTCOUNT},
    {"hugelist", LIE_HUGELIST},
    {"mechcount", LIE_MECHCOUNT},
    {"findcount", LIE_FINDCOUNT},
    {"attrlen", LIE_ATTRLEN},
    {"signlen", LIE_SIGNLEN},
    {"nullsession", LIE_NULLSESSION},
    {"nullobject", LIE_NULLOBJECT},
    {"nullhandle", LIE_NULLSESSION | LIE_NULLOBJECT},
};

static atomic_uint lies;
static atomic_ulong told;

EVIL_EXPORT unsigned long evil_lies_told(void);
EVIL_EXPORT unsigned long evil_lies_told(void)
{
	return atomic_load(&told);
}

static void read_lies(void)
{
	const char *env = getenv("EVIL_LIE");
	unsigned bits = 0;

	while (env != NULL && *env != '\0') {
		size_t len = strcspn(env, ",");
		bool known = len == 0;

		for (size_t i = 0; i < sizeof(lie_names) / sizeof(lie_names[0]); i++)
			if (strlen(lie_names[i].name) == len &&
			    strncmp(env, lie_names[i].name, len) == 0) {
				bits |= lie_names[i].bits;
				known = true;
			}
		if (!known)
			fprintf(stderr, "libevil: unknown EVIL_LIE '%.*s'\n", (int)len, env);
		env += len;
		env += strspn(env, ",");
	}
	atomic_store(&lies, bits);
}

static bool lying(unsigned bit)
{
	if (!(atomic_load(&lies) & bit))
		return false;
	atomic_fetch_add(&told, 1);
	return true;
}

/* ---- state: one mutex guards all of it ---- */

struct session {
	bool open, rw;
	bool find_active, find_pending;
	bool sign, encrypt, decrypt, digest;
	unsigned long acc; /* what C_SignUpdate was fed (a hash, not the bytes) */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static bool initialized;
static CK_USER_TYPE login_user;
static bool logged_in;
static struct session sessions[MAX_SESSIONS];

EVIL_EXPORT unsigned long evil_sessions_open(void);
EVIL_EXPORT unsigned long evil_sessions_open(void)
{
	unsigned long n = 0;

	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < MAX_SESSIONS; i++)
		n += sessions[i].open;
	pthread_mutex_unlock(&mu);
	return n;
}

/* Session handles are index + 1; with nullsession, 0 names the session at index 0. */
static struct session *session_get(CK_SESSION_HANDLE h)
{
	struct session *s = NULL;

	if (h == 0 && (atomic_load(&lies) & LIE_NULLSESSION))
		s = &sessions[0];
	else if (h >= 1 && h <= MAX_SESSIONS)
		s = &sessions[h - 1];
	return s != NULL && s->open ? s : NULL;
}

static bool key_ok(CK_OBJECT_HANDLE key)
{
	return key == KEY_HANDLE || (key == 0 && (atomic_load(&lies) & LIE_NULLOBJECT));
}

/* Locks and finds the session: CKR_OK with the lock held, else unlocked. */
static CK_RV enter(CK_SESSION_HANDLE h, struct session **sp)
{
	pthread_mutex_lock(&mu);
	if (!initialized) {
		pthread_mutex_unlock(&mu);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	*sp = session_get(h);
	if (*sp == NULL) {
		pthread_mutex_unlock(&mu);
		return CKR_SESSION_HANDLE_INVALID;
	}
	return CKR_OK;
}

static CK_RV leave(CK_RV rv)
{
	pthread_mutex_unlock(&mu);
	return rv;
}

static CK_RV enter_slot(CK_SLOT_ID id)
{
	pthread_mutex_lock(&mu);
	if (!initialized) {
		pthread_mutex_unlock(&mu);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	if (id != SLOT_ID) {
		pthread_mutex_unlock(&mu);
		return CKR_SLOT_ID_INVALID;
	}
	return CKR_OK;
}

static void pad(CK_UTF8CHAR *field, size_t len, const char *s)
{
	size_t n = strlen(s);

	memset(field, ' ', len);
	memcpy(field, s, n < len ? n : len);
}

/*
 * PKCS#11 5.2 output of n bytes from src: a size query, CKR_BUFFER_TOO_SMALL,
 * or the bytes. With signlen, a buffer gets only what fits and a length 1000
 * bytes longer than it, with CKR_OK. *end: the operation is over.
 */
static CK_RV output(const CK_BYTE *src, CK_ULONG n, CK_BYTE_PTR out, CK_ULONG_PTR len, bool *end)
{
	CK_ULONG given;

	*end = true;
	if (len == NULL)
		return CKR_ARGUMENTS_BAD;
	if (out == NULL) {
		*end = false;
		*len = n;
		return CKR_OK;
	}
	given = *len;
	if (lying(LIE_SIGNLEN)) {
		memcpy(out, src, n < given ? n : given);
		*len = given + LIE_MORE;
		return CKR_OK;
	}
	if (given < n) {
		*end = false;
		*len = n;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(out, src, n);
	*len = n;
	return CKR_OK;
}

/* ---- the key ---- */

static const CK_OBJECT_CLASS key_class = CKO_PRIVATE_KEY;
static const CK_KEY_TYPE key_type = CKK_EC;
static const CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static const CK_BYTE key_id[] = {0x01};
static const char key_label[] = "k";
/* DER OID of P-256 (prime256v1). */
static const CK_BYTE key_ec_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

/* The key's value of attribute t (NULL: it has none); *sensitive: it has one, not shown. */
static const void *key_attr(CK_ATTRIBUTE_TYPE t, CK_ULONG *len, bool *sensitive)
{
	*sensitive = false;
	switch (t) {
	case CKA_CLASS:
		*len = sizeof(key_class);
		return &key_class;
	case CKA_KEY_TYPE:
		*len = sizeof(key_type);
		return &key_type;
	case CKA_ID:
		*len = sizeof(key_id);
		return key_id;
	case CKA_LABEL:
		*len = sizeof(key_label) - 1;
		return key_label;
	case CKA_EC_PARAMS:
		*len = sizeof(key_ec_params);
		return key_ec_params;
	case CKA_TOKEN:
	case CKA_PRIVATE:
	case CKA_SIGN:
	case CKA_SENSITIVE:
	case CKA_ALWAYS_SENSITIVE:
	case CKA_NEVER_EXTRACTABLE:
	case CKA_LOCAL:
		*len = sizeof(yes);
		return &yes;
	case CKA_MODIFIABLE:
	case CKA_EXTRACTABLE:
	case CKA_DECRYPT:
	case CKA_UNWRAP:
	case CKA_DERIVE:
	case CKA_SIGN_RECOVER:
	case CKA_ALWAYS_AUTHENTICATE:
		*len = sizeof(no);
		return &no;
	case CKA_VALUE:
		*sensitive = true;
		return NULL;
	default:
		return NULL;
	}
}

static bool key_matches(const CK_ATTRIBUTE *t, CK_ULONG n)
{
	if (!logged_in)
		return false; /* a private object */
	for (CK_ULONG i = 0; i < n; i++) {
		CK_ULONG len;
		bool sensitive;
		const void *v = key_attr(t[i].type, &len, &sensitive);

		if (v == NULL || t[i].ulValueLen != len ||
		    (len > 0 && (t[i].pValue == NULL || memcmp(t[i].pValue, v, len) != 0)))
			return false;
	}
	return true;
}

/* ---- general ---- */

static CK_FUNCTION_LIST function_list;

static CK_RV evil_C_Initialize(CK_VOID_PTR args)
{
	CK_RV rv = CKR_OK;

	read_lies();
	pthread_mutex_lock(&mu);
	if (initialized) {
		rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
	} else {
		initialized = true;
		logged_in = false;
		memset(sessions, 0, sizeof(sessions));
	}
	pthread_mutex_unlock(&mu);
	return rv;
}

static CK_RV evil_C_Finalize(CK_VOID_PTR reserved)
{
	CK_RV rv = CKR_OK;

	if (reserved != NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&mu);
	if (!initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	initialized = false;
	logged_in = false;
	memset(sessions, 0, sizeof(sessions));
	pthread_mutex_unlock(&mu);
	return rv;
}

static CK_RV evil_C_GetInfo(CK_INFO_PTR info)
{
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(info, 0, sizeof(*info));
	info->cryptokiVersion.major = 2;
	info->cryptokiVersion.minor = 40;
	pad(info->manufacturerID, sizeof(info->manufacturerID), "evil");
	pad(info->libraryDescription, sizeof(info->libraryDescription), "a module that lies");
	info->libraryVersion.major = 1;
	return CKR_OK;
}

static CK_RV evil_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

EVIL_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	return evil_C_GetFunctionList(list);
}

/* ---- slots and tokens ---- */

static CK_RV evil_C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
	CK_ULONG given;

	pthread_mutex_lock(&mu);
	if (!initialized)
		return leave(CKR_CRYPTOKI_NOT_INITIALIZED);
	if (count == NULL)
		return leave(CKR_ARGUMENTS_BAD);
	if (list == NULL) {
		*count = lying(LIE_HUGELIST) ? HUGE_LIST : 1;
		return leave(CKR_OK);
	}
	given = *count;
	if (given < 1) {
		*count = 1;
		return leave(CKR_BUFFER_TOO_SMALL);
	}
	list[0] = SLOT_ID;
	*count = lying(LIE_SLOTCOUNT) ? given + 10 : 1;
	return leave(CKR_OK);
}

static CK_RV evil_C_GetSlotInfo(CK_SLOT_ID id, CK_SLOT_INFO_PTR info)
{
	CK_RV rv = enter_slot(id);

	if (rv != CKR_OK)
		return rv;
	if (info == NULL)
		return leave(CKR_ARGUMENTS_BAD);
	memset(info, 0, sizeof(*info));
	pad(info->slotDescription, sizeof(info->slotDescription), "evil slot");
	pad(info->manufacturerID, sizeof(info->manufacturerID), "evil");
	info->flags = CKF_TOKEN_PRESENT | CKF_HW_SLOT;
	info->hardwareVersion.major = 1;
	info->firmwareVersion.major = 1;
	return leave(CKR_OK);
}

static CK_RV evil_C_GetTokenInfo(CK_SLOT_ID id, CK_TOKEN_INFO_PTR info)
{
	CK_ULONG n = 0;
	CK_RV rv = enter_slot(id);

	if (rv != CKR_OK)
		return rv;
	if (info == NULL)
		return leave(CKR_ARGUMENTS_BAD);
	for (size_t i = 0; i < MAX_SESSIONS; i++)
		n += sessions[i].open;
	memset(info, 0, sizeof(*info));
	pad(info->label, sizeof(info->label), "evil");
	pad(info->manufacturerID, sizeof(info->manufacturerID), "evil");
	pad(info->model, sizeof(info->model), "liar");
	pad((CK_UTF8CHAR *)info->serialNumber, sizeof(info->serialNumber), "0001");
	info->flags = CKF_TOKEN_INITIALIZED | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED;
	info->ulMaxSessionCount = MAX_SESSIONS;
	info->ulSessionCount = n;
	info->ulMaxRwSessionCount = MAX_SESSIONS;
	info->ulRwSessionCount = n;
	info->ulMaxPinLen = 64;
	info->ulMinPinLen = 1;
	info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
	info->hardwareVersion.major = 1;
	info->firmwareVersion.major = 1;
	return leave(CKR_OK);
}

static const CK_MECHANISM_TYPE mechs[] = {CKM_ECDSA, CKM_ECDSA_SHA256, CKM_SHA256};

static CK_RV evil_C_GetMechanismList(CK_SLOT_ID id, CK_MECHANISM_TYPE_PTR list,
                                     CK_ULONG_PTR count)
{
	const CK_ULONG n = sizeof(mechs) / sizeof(mechs[0]);
	CK_ULONG given;
	CK_RV rv = enter_slot(id);

	if (rv != CKR_OK)
		return rv;
	if (count == NULL)
		return leave(CKR_ARGUMENTS_BAD);
	if (list == NULL) {
		*count = n;
		return leave(CKR_OK);
	}
	given = *count;
	if (given < n) {
		*count = n;
		return leave(CKR_BUFFER_TOO_SMALL);
	}
	memcpy(list, mechs, sizeof(mechs));
	*count = lying(LIE_MECHCOUNT) ? given + 10 : n;
	return leave(CKR_OK);
}

static CK_RV evil_C_GetMechanismInfo(CK_SLOT_ID id, CK_MECHANISM_TYPE type,
                                     CK_MECHANISM_INFO_PTR info)
{
	CK_RV rv = enter_slot(id);

	if (rv != CKR_OK)
		return rv;
	if (info == NULL)
		return leave(CKR_ARGUMENTS_BAD);
	memset(info, 0, sizeof(*info));
	switch (type) {
	case CKM_ECDSA:
	case CKM_ECDSA_SHA256:
		info->ulMinKeySize = 256;
		info->ulMaxKeySize = 256;
		info->flags = CKF_HW | CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE |
		              CKF_EC_UNCOMPRESS;
		return leave(CKR_OK);
	case CKM_SHA256:
		info->flags = CKF_HW | CKF_DIGEST;
		return leave(CKR_OK);
	default:
		return leave(CKR_MECHANISM_INVALID);
	}
}

/* ---- sessions and login ---- */

static CK_RV evil_C_OpenSession(CK_SLOT_ID id, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                                CK_SESSION_HANDLE_PTR out)
{
	CK_RV rv = enter_slot(id);

	if (rv != CKR_OK)
		return rv;
	if (out == NULL)
		return leave(CKR_ARGUMENTS_BAD);
	if (!(flags & CKF_SERIAL_SESSION))
		return leave(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
	if (lying(LIE_NULLSESSION)) {
		/* Every such session is the one at index 0, named 0. */
		memset(&sessions[0], 0, sizeof(sessions[0]));
		sessions[0].open = true;
		sessions[0].rw = (flags & CKF_RW_SESSION) != 0;
		*out = 0;
		return leave(CKR_OK);
	}
	for (size_t i = 0; i < MAX_SESSIONS; i++) {
		if (sessions[i].open)
			continue;
		memset(&sessions[i], 0, sizeof(sessions[i]));
		sessions[i].open = true;
		sessions[i].rw = (flags & CKF_RW_SESSION) != 0;
		*out = i + 1;
		return leave(CKR_OK);
	}
	return leave(CKR_SESSION_COUNT);
}

static void logout_if_last(void)
{
	for (size_t i = 0; i < MAX_SESSIONS; i++)
		if (sessions[i].open)
			return;
	logged_in = false;
}

static CK_RV evil_C_CloseSession(CK_SESSION_HANDLE h)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	memset(s, 0, sizeof(*s));
	logout_if_last();
	return leave(CKR_OK);
}

static CK_RV evil_C_CloseAllSessions(CK_SLOT_ID id)
{
	CK_RV rv = enter_slot(id);

	if (rv != CKR_OK)
		return rv;
	memset(sessions, 0, sizeof(sessions));
	logged_in = false;
	return leave(CKR_OK);
}

static CK_RV evil_C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (info == NULL)
		return leave(CKR_ARGUMENTS_BAD);
	memset(info, 0, sizeof(*info));
	info->slotID = SLOT_ID;
	info->flags = CKF_SERIAL_SESSION | (s->rw ? CKF_RW_SESSION : 0);
	if (logged_in && login_user == CKU_SO)
		info->state = CKS_RW_SO_FUNCTIONS;
	else if (logged_in)
		info->state = s->rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
	else
		info->state = s->rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
	return leave(CKR_OK);
}

static CK_RV evil_C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
                          CK_ULONG pin_len)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (user != CKU_USER && user != CKU_SO && user != CKU_CONTEXT_SPECIFIC)
		return leave(CKR_USER_TYPE_INVALID);
	if (pin == NULL && pin_len > 0)
		return leave(CKR_ARGUMENTS_BAD);
	if (user == CKU_CONTEXT_SPECIFIC)
		return leave(logged_in ? CKR_OK : CKR_USER_NOT_LOGGED_IN);
	if (logged_in)
		return leave(login_user == user ? CKR_USER_ALREADY_LOGGED_IN
		                                : CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
	logged_in = true; /* any PIN */
	login_user = user;
	return leave(CKR_OK);
}

static CK_RV evil_C_Logout(CK_SESSION_HANDLE h)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (!logged_in)
		return leave(CKR_USER_NOT_LOGGED_IN);
	logged_in = false;
	return leave(CKR_OK);
}

/* ---- objects ---- */

static CK_RV evil_C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                                      CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (templ == NULL && count > 0)
		return leave(CKR_ARGUMENTS_BAD);
	if (!key_ok(obj) || !logged_in)
		return leave(CKR_OBJECT_HANDLE_INVALID);
	for (CK_ULONG i = 0; i < count; i++) {
		CK_ATTRIBUTE *a = &templ[i];
		CK_ULONG len = 0, given = a->ulValueLen;
		bool sensitive;
		const void *v = key_attr(a->type, &len, &sensitive);

		if (v == NULL) {
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			rv = sensitive ? CKR_ATTRIBUTE_SENSITIVE : CKR_ATTRIBUTE_TYPE_INVALID;
		} else if (a->pValue == NULL) {
			a->ulValueLen = len;
		} else if (lying(LIE_ATTRLEN)) {
			memcpy(a->pValue, v, len < given ? len : given);
			a->ulValueLen = given + EVIL_HUGE;
		} else if (given < len) {
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			rv = CKR_BUFFER_TOO_SMALL;
		} else {
			memcpy(a->pValue, v, len);
			a->ulValueLen = len;
		}
	}
	return leave(rv);
}

static CK_RV evil_C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (templ == NULL && count > 0)
		return leave(CKR_ARGUMENTS_BAD);
	if (s->find_active)
		return leave(CKR_OPERATION_ACTIVE);
	s->find_active = true;
	s->find_pending = key_matches(templ, count);
	return leave(CKR_OK);
}

static CK_RV evil_C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR objs, CK_ULONG max,
                                CK_ULONG_PTR count)
{
	struct session *s;
	CK_ULONG n = 0;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (objs == NULL || count == NULL)
		return leave(CKR_ARGUMENTS_BAD);
	if (!s->find_active)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	if (s->find_pending && max > 0) {
		objs[n++] = lying(LIE_NULLOBJECT) ? 0 : KEY_HANDLE;
		s->find_pending = false;
	}
	*count = lying(LIE_FINDCOUNT) ? max + 10 : n;
	return leave(CKR_OK);
}

static CK_RV evil_C_FindObjectsFinal(CK_SESSION_HANDLE h)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (!s->find_active)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	s->find_active = false;
	return leave(CKR_OK);
}

/* ---- cryptography, of a kind ---- */

static unsigned long fnv(unsigned long h, const CK_BYTE *p, CK_ULONG n)
{
	for (CK_ULONG i = 0; p != NULL && i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3UL;
	return h;
}

static void fill(CK_BYTE *out, size_t n, unsigned long seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005UL + 1442695040888963407UL;
		out[i] = (CK_BYTE)(seed >> 56);
	}
}

static CK_RV op_init(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key, int which)
{
	struct session *s;
	bool *active;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (mech == NULL)
		return leave(CKR_ARGUMENTS_BAD);
	active = which == 0 ? &s->sign : which == 1 ? &s->encrypt : &s->decrypt;
	if (*active)
		return leave(CKR_OPERATION_ACTIVE);
	if (!logged_in)
		return leave(CKR_USER_NOT_LOGGED_IN);
	if (!key_ok(key))
		return leave(CKR_KEY_HANDLE_INVALID);
	if (which == 0 && mech->mechanism != CKM_ECDSA && mech->mechanism != CKM_ECDSA_SHA256)
		return leave(CKR_MECHANISM_INVALID);
	*active = true;
	s->acc = 0xcbf29ce484222325UL;
	return leave(CKR_OK);
}

static CK_RV evil_C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
	return op_init(h, mech, key, 0);
}

static CK_RV evil_C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,
                         CK_ULONG_PTR sig_len)
{
	struct session *s;
	CK_BYTE buf[SIG_LEN];
	bool end;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (!s->sign)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	if (data == NULL && data_len > 0) {
		s->sign = false;
		return leave(CKR_ARGUMENTS_BAD);
	}
	fill(buf, sizeof(buf), fnv(s->acc, data, data_len));
	rv = output(buf, sizeof(buf), sig, sig_len, &end);
	if (end)
		s->sign = false;
	return leave(rv);
}

static CK_RV evil_C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (!s->sign)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	if (part == NULL && part_len > 0) {
		s->sign = false;
		return leave(CKR_ARGUMENTS_BAD);
	}
	s->acc = fnv(s->acc, part, part_len);
	return leave(CKR_OK);
}

static CK_RV evil_C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	struct session *s;
	CK_BYTE buf[SIG_LEN];
	bool end;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (!s->sign)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	fill(buf, sizeof(buf), s->acc);
	rv = output(buf, sizeof(buf), sig, sig_len, &end);
	if (end)
		s->sign = false;
	return leave(rv);
}

/* Encrypt / decrypt: the input XOR 0x5a, into out (PKCS#11 5.2 rules, output()). */
static CK_RV xor_out(bool *active, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                     CK_ULONG_PTR out_len, bool final)
{
	CK_BYTE *buf;
	bool end;
	CK_RV rv;

	if (!*active)
		return CKR_OPERATION_NOT_INITIALIZED;
	if (in == NULL && in_len > 0) {
		*active = false;
		return CKR_ARGUMENTS_BAD;
	}
	buf = malloc(in_len > 0 ? in_len : 1);
	if (buf == NULL)
		return CKR_HOST_MEMORY;
	for (CK_ULONG i = 0; i < in_len; i++)
		buf[i] = in[i] ^ 0x5a;
	rv = output(buf, in_len, out, out_len, &end);
	free(buf);
	if (end && final)
		*active = false;
	if (!final && rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL)
		*active = false;
	return rv;
}

static CK_RV evil_C_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
	return op_init(h, mech, key, 1);
}

static CK_RV evil_C_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len,
                            CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	return leave(xor_out(&s->encrypt, data, data_len, out, out_len, true));
}

static CK_RV evil_C_EncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len,
                                  CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	return leave(xor_out(&s->encrypt, part, part_len, out, out_len, false));
}

static CK_RV evil_C_EncryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	return leave(xor_out(&s->encrypt, NULL, 0, out, out_len, true));
}

static CK_RV evil_C_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
	return op_init(h, mech, key, 2);
}

static CK_RV evil_C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len,
                            CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	return leave(xor_out(&s->decrypt, data, data_len, out, out_len, true));
}

static CK_RV evil_C_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech)
{
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (mech == NULL)
		return leave(CKR_ARGUMENTS_BAD);
	if (s->digest)
		return leave(CKR_OPERATION_ACTIVE);
	if (mech->mechanism != CKM_SHA256)
		return leave(CKR_MECHANISM_INVALID);
	s->digest = true;
	return leave(CKR_OK);
}

static CK_RV evil_C_Digest(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len,
                           CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	struct session *s;
	CK_BYTE buf[DIGEST_LEN];
	bool end;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (!s->digest)
		return leave(CKR_OPERATION_NOT_INITIALIZED);
	if (data == NULL && data_len > 0) {
		s->digest = false;
		return leave(CKR_ARGUMENTS_BAD);
	}
	fill(buf, sizeof(buf), fnv(0xcbf29ce484222325UL, data, data_len));
	rv = output(buf, sizeof(buf), out, out_len, &end);
	if (end)
		s->digest = false;
	return leave(rv);
}

static CK_RV evil_C_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len)
{
	static unsigned long seed = 1;
	struct session *s;
	CK_RV rv = enter(h, &s);

	if (rv != CKR_OK)
		return rv;
	if (out == NULL && len > 0)
		return leave(CKR_ARGUMENTS_BAD);
	fill(out, len, seed++);
	return leave(CKR_OK);
}

/* ---- everything else ---- */

#define NOT_SUPPORTED(name, params)                                                                \
	static CK_RV evil_##name params                                                            \
	{                                                                                          \
		return CKR_FUNCTION_NOT_SUPPORTED;                                                 \
	}
NOT_SUPPORTED(C_WaitForSlotEvent, (CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved))
NOT_SUPPORTED(C_InitToken,
              (CK_SLOT_ID id, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len, CK_UTF8CHAR_PTR label))
NOT_SUPPORTED(C_InitPIN, (CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len))
NOT_SUPPORTED(C_SetPIN, (CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,
                         CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len))
NOT_SUPPORTED(C_GetOperationState, (CK_SESSION_HANDLE h, CK_BYTE_PTR state, CK_ULONG_PTR len))
NOT_SUPPORTED(C_SetOperationState, (CK_SESSION_HANDLE h, CK_BYTE_PTR state, CK_ULONG len,
                                    CK_OBJECT_HANDLE enc_key, CK_OBJECT_HANDLE auth_key))
NOT_SUPPORTED(C_CreateObject,
              (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR obj))
NOT_SUPPORTED(C_CopyObject, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR t,
                             CK_ULONG n, CK_OBJECT_HANDLE_PTR out))
NOT_SUPPORTED(C_DestroyObject, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj))
NOT_SUPPORTED(C_GetObjectSize, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ULONG_PTR size))
NOT_SUPPORTED(C_SetAttributeValue,
              (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR t, CK_ULONG n))
NOT_SUPPORTED(C_DecryptUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len,
                                CK_BYTE_PTR out, CK_ULONG_PTR out_len))
NOT_SUPPORTED(C_DecryptFinal, (CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len))
NOT_SUPPORTED(C_DigestUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len))
NOT_SUPPORTED(C_DigestKey, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key))
NOT_SUPPORTED(C_DigestFinal, (CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len))
NOT_SUPPORTED(C_SignRecoverInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key))
NOT_SUPPORTED(C_SignRecover, (CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len,
                              CK_BYTE_PTR sig, CK_ULONG_PTR sig_len))
NOT_SUPPORTED(C_VerifyInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key))
NOT_SUPPORTED(C_Verify, (CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len,
                         CK_BYTE_PTR sig, CK_ULONG sig_len))
NOT_SUPPORTED(C_VerifyUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len))
NOT_SUPPORTED(C_VerifyFinal, (CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len))
NOT_SUPPORTED(C_VerifyRecoverInit,
              (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key))
NOT_SUPPORTED(C_VerifyRecover, (CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len,
                                CK_BYTE_PTR data, CK_ULONG_PTR data_len))
NOT_SUPPORTED(C_DigestEncryptUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len,
                                      CK_BYTE_PTR out, CK_ULONG_PTR out_len))
NOT_SUPPORTED(C_DecryptDigestUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len,
                                      CK_BYTE_PTR out, CK_ULONG_PTR out_len))
NOT_SUPPORTED(C_SignEncryptUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len,
                                    CK_BYTE_PTR out, CK_ULONG_PTR out_len))
NOT_SUPPORTED(C_DecryptVerifyUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG part_len,
                                      CK_BYTE_PTR out, CK_ULONG_PTR out_len))
NOT_SUPPORTED(C_GenerateKey, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t,
                              CK_ULONG n, CK_OBJECT_HANDLE_PTR key))
NOT_SUPPORTED(C_GenerateKeyPair,
              (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub_t, CK_ULONG pub_n,
               CK_ATTRIBUTE_PTR priv_t, CK_ULONG priv_n, CK_OBJECT_HANDLE_PTR pub,
               CK_OBJECT_HANDLE_PTR priv))
NOT_SUPPORTED(C_WrapKey, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wrapping,
                          CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR out_len))
NOT_SUPPORTED(C_UnwrapKey, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE unwrapping,
                            CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR t,
                            CK_ULONG n, CK_OBJECT_HANDLE_PTR key))
NOT_SUPPORTED(C_DeriveKey, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base,
                            CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR key))
NOT_SUPPORTED(C_SeedRandom, (CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG seed_len))
NOT_SUPPORTED(C_GetFunctionStatus, (CK_SESSION_HANDLE h))
NOT_SUPPORTED(C_CancelFunction, (CK_SESSION_HANDLE h))
#undef NOT_SUPPORTED

static CK_FUNCTION_LIST function_list = {
    .version = {2, 40},
#define F(name) .name = evil_##name
    F(C_Initialize),
    F(C_Finalize),
    F(C_GetInfo),
    F(C_GetFunctionList),
    F(C_GetSlotList),
    F(C_GetSlotInfo),
    F(C_GetTokenInfo),
    F(C_GetMechanismList),
    F(C_GetMechanismInfo),
    F(C_InitToken),
    F(C_InitPIN),
    F(C_SetPIN),
    F(C_OpenSession),
    F(C_CloseSession),
    F(C_CloseAllSessions),
    F(C_GetSessionInfo),
    F(C_GetOperationState),
    F(C_SetOperationState),
    F(C_Login),
    F(C_Logout),
    F(C_CreateObject),
    F(C_CopyObject),
    F(C_DestroyObject),
    F(C_GetObjectSize),
    F(C_GetAttributeValue),
    F(C_SetAttributeValue),
    F(C_FindObjectsInit),
    F(C_FindObjects),
    F(C_FindObjectsFinal),
    F(C_EncryptInit),
    F(C_Encrypt),
    F(C_EncryptUpdate),
    F(C_EncryptFinal),
    F(C_DecryptInit),
    F(C_Decrypt),
    F(C_DecryptUpdate),
    F(C_DecryptFinal),
    F(C_DigestInit),
    F(C_Digest),
    F(C_DigestUpdate),
    F(C_DigestKey),
    F(C_DigestFinal),
    F(C_SignInit),
    F(C_Sign),
    F(C_SignUpdate),
    F(C_SignFinal),
    F(C_SignRecoverInit),
    F(C_SignRecover),
    F(C_VerifyInit),
    F(C_Verify),
    F(C_VerifyUpdate),
    F(C_VerifyFinal),
    F(C_VerifyRecoverInit),
    F(C_VerifyRecover),
    F(C_DigestEncryptUpdate),
    F(C_DecryptDigestUpdate),
    F(C_SignEncryptUpdate),
    F(C_DecryptVerifyUpdate),
    F(C_GenerateKey),
    F(C_GenerateKeyPair),
    F(C_WrapKey),
    F(C_UnwrapKey),
    F(C_DeriveKey),
    F(C_SeedRandom),
    F(C_GenerateRandom),
    F(C_GetFunctionStatus),
    F(C_CancelFunction),
    F(C_WaitForSlotEvent),
#undef F
};

static CK_RV evil_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	read_lies();
	if (lying(LIE_NOLIST)) {
		*list = NULL;
		return CKR_OK;
	}
	function_list.version.major = lying(LIE_BADVERSION) ? 3 : 2;
	function_list.version.minor = function_list.version.major == 3 ? 0 : 40;
	*list = &function_list;
	return CKR_OK;
}
