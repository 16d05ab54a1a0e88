/*
 * The SoftHSM2 side of the sync benchmark (bench/run.sh, part sync):
 *
 *   bench_sync create MODULE TOKEN_LABEL PIN N   N AES-128 token keys (C_CreateObject)
 *   bench_sync list MODULE TOKEN_LABEL PIN       SoftHSM2's own listing of them
 *
 * `list` does what any client must do to see every key with its identity and
 * usage flags: C_Initialize, open, login, find every token object (chunks of
 * 1024), one C_GetAttributeValue per object for the same eleven attributes
 * `p11proxy sync` reads. run.sh times it and `p11proxy sync` as whole
 * processes, the same way, and prints the ratio. Figures are information only.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pkcs11.h"

static CK_FUNCTION_LIST *fl;

static void die(const char *what, CK_RV rv)
{
	fprintf(stderr, "bench_sync: %s: 0x%lx\n", what, (unsigned long)rv);
	exit(1);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Loads the module, finds the token, opens a logged-in R/W session. */
static CK_SESSION_HANDLE open_token(const char *module, const char *label, const char *pin)
{
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64;
	CK_SESSION_HANDLE h;
	void *dl = dlopen(module, RTLD_NOW);
	CK_RV rv;

	if (dl == NULL) {
		fprintf(stderr, "bench_sync: %s\n", dlerror());
		exit(1);
	}
	*(void **)&get = dlsym(dl, "C_GetFunctionList");
	if (get == NULL || get(&fl) != CKR_OK)
		die("C_GetFunctionList", CKR_GENERAL_ERROR);
	if ((rv = fl->C_Initialize(NULL)) != CKR_OK)
		die("C_Initialize", rv);
	if ((rv = fl->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
		die("C_GetSlotList", rv);
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		char tl[33];
		size_t l = 32;

		if (fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		memcpy(tl, ti.label, 32);
		while (l > 0 && tl[l - 1] == ' ')
			l--;
		tl[l] = '\0';
		if (strcmp(tl, label) != 0)
			continue;
		rv = fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
		                       &h);
		if (rv != CKR_OK)
			die("C_OpenSession", rv);
		rv = fl->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
		if (rv != CKR_OK)
			die("C_Login", rv);
		return h;
	}
	fprintf(stderr, "bench_sync: no token '%s'\n", label);
	exit(1);
}

static void create(CK_SESSION_HANDLE h, unsigned long n)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	unsigned char value[16], id[16];
	char label[32];

	srand(1);
	for (unsigned long i = 0; i < n; i++) {
		CK_ATTRIBUTE t[] = {
		    {CKA_CLASS, &cls, sizeof(cls)},
		    {CKA_KEY_TYPE, &kt, sizeof(kt)},
		    {CKA_TOKEN, &yes, 1},
		    {CKA_PRIVATE, &yes, 1},
		    {CKA_SENSITIVE, &yes, 1},
		    {CKA_EXTRACTABLE, &no, 1},
		    {CKA_ENCRYPT, &yes, 1},
		    {CKA_DECRYPT, &yes, 1},
		    {CKA_VALUE, value, sizeof(value)},
		    {CKA_ID, id, sizeof(id)},
		    {CKA_LABEL, label, 0},
		};
		CK_OBJECT_HANDLE o;
		CK_RV rv;

		for (size_t k = 0; k < 16; k++) {
			value[k] = (unsigned char)rand();
			id[k] = (unsigned char)(k < 8 ? i >> (8 * k) : (unsigned long)rand());
		}
		t[10].ulValueLen = (CK_ULONG)snprintf(label, sizeof(label), "sync-%06lu", i);
		if ((rv = fl->C_CreateObject(h, t, sizeof(t) / sizeof(t[0]), &o)) != CKR_OK)
			die("C_CreateObject", rv);
	}
}

static void list(CK_SESSION_HANDLE h, double start)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t = {CKA_TOKEN, &yes, 1};
	CK_OBJECT_HANDLE *hs = NULL;
	CK_ULONG n = 0, cap = 0, got;
	unsigned long keys = 0;
	double found;
	CK_RV rv;

	if ((rv = fl->C_FindObjectsInit(h, &t, 1)) != CKR_OK)
		die("C_FindObjectsInit", rv);
	for (;;) {
		if (n + 1024 > cap) {
			cap = cap ? cap * 2 : 4096;
			hs = realloc(hs, cap * sizeof(*hs));
			if (hs == NULL)
				die("realloc", CKR_HOST_MEMORY);
		}
		if ((rv = fl->C_FindObjects(h, hs + n, 1024, &got)) != CKR_OK)
			die("C_FindObjects", rv);
		if (got == 0)
			break;
		n += got;
	}
	fl->C_FindObjectsFinal(h);
	found = now_ms();
	for (CK_ULONG i = 0; i < n; i++) {
		CK_OBJECT_CLASS cls;
		CK_KEY_TYPE kt;
		unsigned char id[256], label[256];
		CK_BBOOL f[7];
		CK_ATTRIBUTE a[11] = {
		    {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
		    {CKA_ID, id, sizeof(id)},       {CKA_LABEL, label, sizeof(label)},
		    {CKA_ENCRYPT, &f[0], 1},        {CKA_DECRYPT, &f[1], 1},
		    {CKA_SIGN, &f[2], 1},           {CKA_VERIFY, &f[3], 1},
		    {CKA_WRAP, &f[4], 1},           {CKA_UNWRAP, &f[5], 1},
		    {CKA_DERIVE, &f[6], 1},
		};

		rv = fl->C_GetAttributeValue(h, hs[i], a, 11);
		if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID)
			die("C_GetAttributeValue", rv);
		keys += a[0].ulValueLen == sizeof(cls) && cls == CKO_SECRET_KEY;
	}
	printf("RESULT op=softhsm_list objects=%lu keys=%lu find_ms=%.1f attrs_ms=%.1f "
	       "in_process_ms=%.1f\n",
	       (unsigned long)n, keys, found - start, now_ms() - found, now_ms() - start);
	free(hs);
}

int main(int argc, char **argv)
{
	double start = now_ms();
	CK_SESSION_HANDLE h;

	if (argc < 5 || (strcmp(argv[1], "create") == 0 && argc < 6)) {
		fprintf(stderr, "usage: bench_sync create|list MODULE TOKEN_LABEL PIN [N]\n");
		return 2;
	}
	h = open_token(argv[2], argv[3], argv[4]);
	if (strcmp(argv[1], "create") == 0)
		create(h, strtoul(argv[5], NULL, 10));
	else
		list(h, start);
	fl->C_Logout(h);
	fl->C_CloseSession(h);
	fl->C_Finalize(NULL);
	return 0;
}
