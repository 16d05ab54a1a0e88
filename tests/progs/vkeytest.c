/*
 * Virtual keys through the module (tests/suites/56-vkeys.sh). Modes:
 *   vkeytest enforce MODULE LABEL PIN INDEX   creation records, enforcement of
 *       every operation class, deactivation, virtual permissions in
 *       GetAttributeValue and in finds, a second process's change (policy:
 *       write_back false, scan all)
 *   vkeytest virtual MODULE LABEL PIN INDEX   set/destroy with write_back false
 *   vkeytest writeback MODULE LABEL PIN INDEX set/destroy with write_back true
 *   vkeytest scan MODULE LABEL PIN INDEX all|owned   lazy import of keys made
 *       directly on the token (mkkeys), hidden under owned
 *   vkeytest mkkeys MODULE TOKEN PIN PREFIX   makes token keys PREFIX-aes
 *       (encrypt only) and PREFIX-ec (a pair) directly on a token
 *   vkeytest hsm MODULE TOKEN PIN LABEL CLASS ATTR
 *       prints "count N" and, when N is 1, "ATTR true|false|-": the HSM side
 *       (ATTR: sign, encrypt, ...; CLASS: secret|private|public)
 *   vkeytest mkaes MODULE LABEL PIN KEYLABEL IDHEX   an AES-128 token key
 *       (encrypt, decrypt) through the slot
 *   vkeytest use MODULE LABEL PIN KEYLABEL IDHEX encrypt|decrypt
 *       starts that operation with the secret key (label, id) and prints
 *       "rv 0x..." (what the proxy's key check answered); "rv none" when no
 *       key matches
 * LABEL is the virtual slot's label, INDEX its index file (opened here with
 * the index API, as the CLI would). Prints "ok ..." / "FAIL ..." lines; exits
 * 1 on any failure.
 */
#include "../tests/progs/testmod.h"

#include "index/index.h"
#include "p11proxy.h"

#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures;
static CK_FUNCTION_LIST *F;
static CK_SESSION_HANDLE S;
static const char *IDX, *SLOT;

static void expect(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void expect(int cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("%s ", cond ? "ok" : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	if (!cond)
		failures++;
}

/* Past the module's index refresh period (P11P_VKEY_REFRESH_MS, 100 ms). */
static void settle(void)
{
	struct timespec ts = {0, 250 * 1000 * 1000};

	nanosleep(&ts, NULL);
}

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

/* ---- the index, as another program sees it ---- */

/* The records of (slot, class, label): how many; the first in *out. */
static size_t rec_find(const char *label, CK_OBJECT_CLASS cls, struct p11p_vkey *out)
{
	struct p11p_index *idx = NULL;
	struct p11p_vkey_match m = {.slot = SLOT,
	                            .has_class = true,
	                            .cls = cls,
	                            .has_label = true,
	                            .label = (const unsigned char *)label,
	                            .label_len = strlen(label)};
	char err[512];
	size_t n = 0;

	if (p11p_index_open(IDX, &idx, err, sizeof(err)) != CKR_OK) {
		fprintf(stderr, "index: %s\n", err);
		return 0;
	}
	if (p11p_index_find(idx, &m, out, 1, &n) != CKR_OK)
		n = 0;
	p11p_index_close(idx);
	return n;
}

enum edit { E_PERMS, E_STATE };

/* Changes one record through a handle of its own (like the CLI); true when stored. */
static bool rec_edit(const char *label, CK_OBJECT_CLASS cls, enum edit what, uint32_t value)
{
	struct p11p_index *idx = NULL;
	struct p11p_vkey r;
	struct p11p_vkey_match m = {.slot = SLOT,
	                            .has_class = true,
	                            .cls = cls,
	                            .has_label = true,
	                            .label = (const unsigned char *)label,
	                            .label_len = strlen(label)};
	char err[512];
	size_t n = 0;
	bool ok = false;

	if (p11p_index_open(IDX, &idx, err, sizeof(err)) != CKR_OK) {
		fprintf(stderr, "index: %s\n", err);
		return false;
	}
	if (p11p_index_find(idx, &m, &r, 1, &n) == CKR_OK && n == 1) {
		if (what == E_PERMS)
			r.perms = value;
		else
			r.state = (enum p11p_vk_state)value;
		ok = p11p_index_put(idx, &r) == CKR_OK;
	}
	p11p_index_close(idx);
	return ok;
}

static bool rec_set_perms(const char *label, CK_OBJECT_CLASS cls, uint32_t perms)
{
	bool ok = rec_edit(label, cls, E_PERMS, perms);

	settle();
	return ok;
}

/* ---- PKCS#11 helpers ---- */

static CK_ULONG find_n(CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_HANDLE h[8];
	CK_ULONG got = 0;

	if (F->C_FindObjectsInit(S, t, n) != CKR_OK)
		return (CK_ULONG)-1;
	if (F->C_FindObjects(S, h, 8, &got) != CKR_OK)
		got = (CK_ULONG)-1;
	F->C_FindObjectsFinal(S);
	if (out != NULL && got >= 1 && got != (CK_ULONG)-1)
		*out = h[0];
	return got;
}

static CK_OBJECT_HANDLE find1(const char *label, CK_OBJECT_CLASS cls)
{
	CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)},
	                    {CKA_CLASS, &cls, sizeof(cls)}};
	CK_OBJECT_HANDLE h = 0;

	return find_n(t, 2, &h) == 1 ? h : 0;
}

/* A find by label and class with one permission attribute: how many. */
static CK_ULONG find_perm(const char *label, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type,
                          CK_BBOOL *val)
{
	CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)},
	                    {CKA_CLASS, &cls, sizeof(cls)},
	                    {type, val, sizeof(*val)}};

	return find_n(t, 3, NULL);
}

static int get_bool(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, CK_RV *rvp)
{
	CK_BBOOL v = 2;
	CK_ATTRIBUTE a = {type, &v, sizeof(v)};
	CK_RV rv = F->C_GetAttributeValue(S, h, &a, 1);

	if (rvp != NULL)
		*rvp = rv;
	return rv == CKR_OK ? v != CK_FALSE : -1;
}

static CK_OBJECT_HANDLE gen_aes(const char *label, CK_BBOOL token, CK_BBOOL extractable)
{
	CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ULONG len = 16;
	CK_ATTRIBUTE t[] = {
	    {CKA_TOKEN, &token, 1},  {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_ID, "\x01", 1},     {CKA_VALUE_LEN, &len, sizeof(len)},
	    {CKA_ENCRYPT, &yes, 1},  {CKA_DECRYPT, &yes, 1},
	    {CKA_WRAP, &yes, 1},     {CKA_UNWRAP, &yes, 1},
	    {CKA_DERIVE, &yes, 1},   {CKA_SIGN, &no, 1},
	    {CKA_VERIFY, &no, 1},    {CKA_EXTRACTABLE, &extractable, 1},
	    {CKA_SENSITIVE, &no, 1}, {CKA_PRIVATE, &yes, 1},
	};
	CK_OBJECT_HANDLE h = 0;
	CK_RV rv = F->C_GenerateKey(S, &mech, t, sizeof(t) / sizeof(t[0]), &h);

	expect(rv == CKR_OK, "generate AES key %s (rv 0x%lx)", label, rv);
	return h;
}

static const CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static void gen_ec(const char *label, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	/* Every permission attribute explicit: the records' expected perms are exact. */
	CK_ATTRIBUTE pt[] = {
	    {CKA_TOKEN, &yes, 1},  {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_ID, "\x02", 1},   {CKA_EC_PARAMS, (void *)p256, sizeof(p256)},
	    {CKA_VERIFY, &yes, 1}, {CKA_ENCRYPT, &no, 1},
	    {CKA_WRAP, &no, 1},    {CKA_DERIVE, &no, 1},
	};
	CK_ATTRIBUTE st[] = {
	    {CKA_TOKEN, &yes, 1},  {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_ID, "\x02", 1},   {CKA_SIGN, &yes, 1},
	    {CKA_DERIVE, &no, 1},  {CKA_PRIVATE, &yes, 1},
	    {CKA_DECRYPT, &no, 1}, {CKA_UNWRAP, &no, 1},
	};
	CK_RV rv = F->C_GenerateKeyPair(S, &mech, pt, sizeof(pt) / sizeof(pt[0]), st,
	                                sizeof(st) / sizeof(st[0]), pub, priv);

	expect(rv == CKR_OK, "generate EC pair %s (rv 0x%lx)", label, rv);
}

static void gen_rsa(const char *label, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
	CK_ULONG bits = 1024;
	CK_BYTE e[] = {1, 0, 1};
	CK_ATTRIBUTE pt[] = {
	    {CKA_TOKEN, &yes, 1},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_ID, "\x03", 1},
	    {CKA_MODULUS_BITS, &bits, sizeof(bits)},
	    {CKA_PUBLIC_EXPONENT, e, 3},
	    {CKA_VERIFY, &yes, 1},
	    {CKA_VERIFY_RECOVER, &yes, 1},
	    {CKA_ENCRYPT, &yes, 1},
	    {CKA_WRAP, &no, 1},
	    {CKA_DERIVE, &no, 1},
	};
	CK_ATTRIBUTE st[] = {
	    {CKA_TOKEN, &yes, 1},        {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_ID, "\x03", 1},         {CKA_SIGN, &yes, 1},
	    {CKA_SIGN_RECOVER, &yes, 1}, {CKA_DECRYPT, &yes, 1},
	    {CKA_PRIVATE, &yes, 1},      {CKA_UNWRAP, &no, 1},
	    {CKA_DERIVE, &no, 1},
	};
	CK_RV rv = F->C_GenerateKeyPair(S, &mech, pt, sizeof(pt) / sizeof(pt[0]), st,
	                                sizeof(st) / sizeof(st[0]), pub, priv);

	expect(rv == CKR_OK, "generate RSA pair %s (rv 0x%lx)", label, rv);
}

/* The operations, each as its Init (or one-shot) call on key h. */
enum opk { O_ENC, O_DEC, O_SIGN, O_VERIFY, O_SIGNREC, O_VERIFYREC, O_WRAP, O_UNWRAP, O_DERIVE };

static const char *const op_names[] = {"encrypt", "decrypt",      "sign",
                                       "verify",  "sign-recover", "verify-recover",
                                       "wrap",    "unwrap",       "derive"};

static CK_OBJECT_HANDLE g_wrappee; /* a session AES key, extractable */

static CK_RV run_op(enum opk k, CK_OBJECT_HANDLE h)
{
	CK_BYTE iv[16] = {0}, data[16] = {0}, out[512];
	CK_ULONG out_len = sizeof(out);
	CK_MECHANISM cbc = {CKM_AES_CBC, iv, sizeof(iv)};
	CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};
	CK_MECHANISM rsa = {CKM_RSA_PKCS, NULL, 0};
	CK_MECHANISM kw = {CKM_AES_KEY_WRAP, NULL, 0};
	CK_KEY_DERIVATION_STRING_DATA kd = {data, sizeof(data)};
	CK_MECHANISM drv = {CKM_AES_ECB_ENCRYPT_DATA, &kd, sizeof(kd)};
	CK_OBJECT_CLASS sk = CKO_SECRET_KEY;
	CK_KEY_TYPE aes = CKK_AES;
	CK_ULONG len16 = 16;
	CK_ATTRIBUTE nt[] = {{CKA_CLASS, &sk, sizeof(sk)},
	                     {CKA_KEY_TYPE, &aes, sizeof(aes)},
	                     {CKA_TOKEN, &no, 1},
	                     {CKA_VALUE_LEN, &len16, sizeof(len16)}};
	CK_OBJECT_HANDLE nh = 0;
	CK_RV rv;

	switch (k) {
	case O_ENC:
		rv = F->C_EncryptInit(S, &cbc, h);
		if (rv == CKR_OK)
			rv = F->C_Encrypt(S, data, sizeof(data), out, &out_len);
		return rv;
	case O_DEC:
		rv = F->C_DecryptInit(S, &cbc, h);
		if (rv == CKR_OK)
			rv = F->C_Decrypt(S, data, sizeof(data), out, &out_len);
		return rv;
	case O_SIGN:
		rv = F->C_SignInit(S, &ecdsa, h);
		if (rv == CKR_OK)
			rv = F->C_Sign(S, data, 16, out, &out_len);
		return rv;
	case O_VERIFY:
		rv = F->C_VerifyInit(S, &ecdsa, h);
		if (rv == CKR_OK) {
			memset(out, 1, 64);
			rv = F->C_Verify(S, data, 16, out, 64);
			if (rv == CKR_SIGNATURE_INVALID)
				rv = CKR_OK; /* the init was allowed: that is what is tested */
		}
		return rv;
	case O_SIGNREC:
		return F->C_SignRecoverInit(S, &rsa, h);
	case O_VERIFYREC:
		return F->C_VerifyRecoverInit(S, &rsa, h);
	case O_WRAP:
		return F->C_WrapKey(S, &kw, h, g_wrappee, out, &out_len);
	case O_UNWRAP:
		rv = F->C_WrapKey(S, &kw, h, g_wrappee, out, &out_len);
		if (rv == CKR_KEY_FUNCTION_NOT_PERMITTED)
			out_len = 24; /* wrap denied too: any 24 bytes reach the unwrap check */
		else if (rv != CKR_OK)
			return rv;
		rv = F->C_UnwrapKey(S, &kw, h, out, out_len, nt, 3, &nh);
		if (rv == CKR_OK)
			F->C_DestroyObject(S, nh);
		return rv;
	case O_DERIVE:
		rv = F->C_DeriveKey(S, &drv, h, nt, 4, &nh);
		if (rv == CKR_OK)
			F->C_DestroyObject(S, nh);
		return rv;
	}
	return CKR_GENERAL_ERROR;
}

static bool supported_here(CK_RV rv)
{
	return rv != CKR_FUNCTION_NOT_SUPPORTED && rv != CKR_MECHANISM_INVALID;
}

static void load(const char *module, const char *label, const char *pin, struct testmod *m)
{
	if (!testmod_load(m, module) || !testmod_session(m, label, pin, &S)) {
		printf("FAIL cannot open %s on %s\n", label, module);
		exit(1);
	}
	F = m->f;
}

/* ---- enforce ---- */

struct opcase {
	enum opk k;
	const char *label;
	CK_OBJECT_CLASS cls;
	uint32_t bit;
};

static int cmd_enforce(void)
{
	CK_OBJECT_HANDLE aes, ecpub, ecpriv, rsapub, rsapriv;
	struct p11p_vkey r;
	CK_RV rv;
	pid_t pid;
	int st;

	aes = gen_aes("vk-aes", CK_TRUE, CK_FALSE);
	gen_ec("vk-ec", &ecpub, &ecpriv);
	gen_rsa("vk-rsa", &rsapub, &rsapriv);
	g_wrappee = gen_aes("vk-session", CK_FALSE, CK_TRUE);

	/* Recorded at creation: origin created, the HSM key's permissions. */
	expect(rec_find("vk-aes", CKO_SECRET_KEY, &r) == 1 && r.origin == P11P_VK_CREATED &&
	           r.state == P11P_VK_ACTIVE &&
	           r.perms == (P11P_VK_ENCRYPT | P11P_VK_DECRYPT | P11P_VK_WRAP | P11P_VK_UNWRAP |
	                       P11P_VK_DERIVE) &&
	           r.presence == 1 && r.key_type == CKK_AES && r.ck_id_len == 1 && r.ck_id[0] == 1,
	       "AES key recorded: created, perms edwuk, presence 1");
	expect(rec_find("vk-ec", CKO_PRIVATE_KEY, &r) == 1 && r.origin == P11P_VK_CREATED &&
	           r.perms == P11P_VK_SIGN,
	       "EC private key recorded with sign only (derive false, no encrypt attribute)");
	expect(rec_find("vk-ec", CKO_PUBLIC_KEY, &r) == 1 && r.perms == P11P_VK_VERIFY,
	       "EC public key recorded with verify only");
	expect(rec_find("vk-rsa", CKO_PRIVATE_KEY, &r) == 1 &&
	           r.perms == (P11P_VK_SIGN | P11P_VK_DECRYPT),
	       "RSA private key recorded with sign, decrypt");
	expect(rec_find("vk-session", CKO_SECRET_KEY, &r) == 0, "a session key is not recorded");

	/* Every operation class: allowed, then denied by the record whatever the HSM says. */
	struct opcase cases[] = {
	    {O_ENC, "vk-aes", CKO_SECRET_KEY, P11P_VK_ENCRYPT},
	    {O_DEC, "vk-aes", CKO_SECRET_KEY, P11P_VK_DECRYPT},
	    {O_SIGN, "vk-ec", CKO_PRIVATE_KEY, P11P_VK_SIGN},
	    {O_VERIFY, "vk-ec", CKO_PUBLIC_KEY, P11P_VK_VERIFY},
	    {O_SIGNREC, "vk-rsa", CKO_PRIVATE_KEY, P11P_VK_SIGN},
	    {O_VERIFYREC, "vk-rsa", CKO_PUBLIC_KEY, P11P_VK_VERIFY},
	    {O_WRAP, "vk-aes", CKO_SECRET_KEY, P11P_VK_WRAP},
	    {O_UNWRAP, "vk-aes", CKO_SECRET_KEY, P11P_VK_UNWRAP},
	    {O_DERIVE, "vk-aes", CKO_SECRET_KEY, P11P_VK_DERIVE},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct opcase *oc = &cases[i];
		CK_OBJECT_HANDLE h = find1(oc->label, oc->cls);
		uint32_t before;
		CK_RV allowed, denied;

		if (rec_find(oc->label, oc->cls, &r) != 1) {
			expect(0, "%s: record of %s", op_names[oc->k], oc->label);
			continue;
		}
		before = r.perms;
		allowed = run_op(oc->k, h);
		if (!rec_set_perms(oc->label, oc->cls, before & ~oc->bit)) {
			expect(0, "%s: change the record", op_names[oc->k]);
			continue;
		}
		denied = run_op(oc->k, h);
		rec_set_perms(oc->label, oc->cls, before);
		if (!supported_here(allowed)) {
			/* SoftHSM2 has no SignRecover/VerifyRecover: the proxy's check still runs
			 * first. */
			expect(denied == CKR_KEY_FUNCTION_NOT_PERMITTED,
			       "%s: denied by the virtual key (0x%lx) before the token's 0x%lx",
			       op_names[oc->k], denied, allowed);
			continue;
		}
		expect(allowed == CKR_OK && denied == CKR_KEY_FUNCTION_NOT_PERMITTED,
		       "%s: allowed (0x%lx), then CKR_KEY_FUNCTION_NOT_PERMITTED (0x%lx)",
		       op_names[oc->k], allowed, denied);
		expect(run_op(oc->k, h) == CKR_OK, "%s: allowed again once restored",
		       op_names[oc->k]);
	}
	/* The HSM key lacks sign: granting it virtually does not make the HSM sign. */
	rec_set_perms("vk-aes", CKO_SECRET_KEY, P11P_VK_ALL);
	rv = run_op(O_ENC, aes);
	expect(rv == CKR_OK, "all virtual permissions: encrypt still works");
	rec_set_perms("vk-aes", CKO_SECRET_KEY,
	              P11P_VK_ENCRYPT | P11P_VK_DECRYPT | P11P_VK_WRAP | P11P_VK_UNWRAP |
	                  P11P_VK_DERIVE);

	/* GetAttributeValue and finds follow the virtual permissions. */
	rec_set_perms("vk-ec", CKO_PRIVATE_KEY, 0);
	expect(get_bool(ecpriv, CKA_SIGN, NULL) == 0, "CKA_SIGN reads false once denied");
	expect(find_perm("vk-ec", CKO_PRIVATE_KEY, CKA_SIGN, &yes) == 0,
	       "find CKA_SIGN=true skips the denied key");
	expect(find_perm("vk-ec", CKO_PRIVATE_KEY, CKA_SIGN, &no) == 1,
	       "find CKA_SIGN=false finds the denied key");
	expect(find_perm("vk-ec", CKO_PUBLIC_KEY, CKA_SIGN, &no) == 0,
	       "find CKA_SIGN=false skips a public key (it has no CKA_SIGN)");
	{
		CK_ATTRIBUTE t[] = {{CKA_LABEL, "vk-ec", 5}, {CKA_SIGN, &no, 1}};

		expect(find_n(t, 2, NULL) == 1,
		       "find label + CKA_SIGN=false: the private key only");
	}
	rec_set_perms("vk-ec", CKO_PRIVATE_KEY, P11P_VK_SIGN);
	expect(get_bool(ecpriv, CKA_SIGN, NULL) == 1, "CKA_SIGN reads true once granted");
	expect(find_perm("vk-ec", CKO_PRIVATE_KEY, CKA_SIGN, &yes) == 1 &&
	           find_perm("vk-ec", CKO_PRIVATE_KEY, CKA_SIGN, &no) == 0,
	       "finds by CKA_SIGN follow the grant");
	{
		CK_ATTRIBUTE t[] = {{CKA_LABEL, "vk-session", 10}, {CKA_ENCRYPT, &yes, 1}};
		CK_ATTRIBUTE u[] = {{CKA_LABEL, "vk-session", 10}, {CKA_ENCRYPT, &no, 1}};

		expect(find_n(t, 2, NULL) == 1 && find_n(u, 2, NULL) == 0,
		       "a session key is matched by its own (HSM) permissions");
	}

	/* Deactivated: visible, unusable, with the documented code. */
	expect(rec_edit("vk-ec", CKO_PRIVATE_KEY, E_STATE, P11P_VK_DEACTIVATED), "deactivate");
	settle();
	rv = run_op(O_SIGN, ecpriv);
	expect(rv == P11PROXY_CKR_KEY_DEACTIVATED, "sign with a deactivated key: 0x%lx", rv);
	expect(find1("vk-ec", CKO_PRIVATE_KEY) == ecpriv, "a deactivated key is still found");
	expect(get_bool(ecpriv, CKA_SIGN, NULL) == 1, "and its attributes read");
	expect(rec_edit("vk-ec", CKO_PRIVATE_KEY, E_STATE, P11P_VK_ACTIVE), "reactivate");
	settle();
	expect(run_op(O_SIGN, ecpriv) == CKR_OK, "signs again once active");

	/* Another process changes the record: seen without restart. */
	pid = fork();
	if (pid == 0)
		_exit(rec_edit("vk-ec", CKO_PRIVATE_KEY, E_PERMS, 0) ? 0 : 1);
	expect(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "a second process denies sign");
	settle();
	expect(run_op(O_SIGN, ecpriv) == CKR_KEY_FUNCTION_NOT_PERMITTED,
	       "the running process sees it within the refresh period");
	rec_set_perms("vk-ec", CKO_PRIVATE_KEY, P11P_VK_SIGN);

	/* A copy is a new virtual key, without what the original's lacks. */
	{
		CK_ATTRIBUTE ct[] = {{CKA_LABEL, "vk-ec-copy", 10}};
		CK_OBJECT_HANDLE cp = 0;

		rec_set_perms("vk-aes", CKO_SECRET_KEY, P11P_VK_ENCRYPT);
		rv = F->C_CopyObject(S, aes, ct, 1, &cp);
		expect(rv == CKR_OK && rec_find("vk-ec-copy", CKO_SECRET_KEY, &r) == 1 &&
		           r.perms == P11P_VK_ENCRYPT && r.origin == P11P_VK_CREATED,
		       "a copy is recorded with the original's virtual permissions (rv 0x%lx)", rv);
		expect(run_op(O_DEC, cp) == CKR_KEY_FUNCTION_NOT_PERMITTED,
		       "the copy cannot decrypt either");
	}
	return failures ? 1 : 0;
}

/* ---- set and destroy under the policy ---- */

/*
 * A public key carries CKA_DERIVE (common to every key) but is never granted
 * derive (vkeys/model.h): made with CKA_DERIVE true on the HSM, its record has
 * no derive, the attribute reads false through the slot and matches false in
 * finds, and it cannot be set true. Its private key derives.
 */
static void derive_public(void)
{
	CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pt[] = {
	    {CKA_TOKEN, &yes, 1},  {CKA_LABEL, "pd-ec", 5},
	    {CKA_ID, "\x07", 1},   {CKA_EC_PARAMS, (void *)p256, sizeof(p256)},
	    {CKA_VERIFY, &yes, 1}, {CKA_ENCRYPT, &no, 1},
	    {CKA_WRAP, &no, 1},    {CKA_DERIVE, &yes, 1},
	};
	CK_ATTRIBUTE st[] = {
	    {CKA_TOKEN, &yes, 1},  {CKA_LABEL, "pd-ec", 5}, {CKA_ID, "\x07", 1},
	    {CKA_SIGN, &yes, 1},   {CKA_DERIVE, &yes, 1},   {CKA_PRIVATE, &yes, 1},
	    {CKA_DECRYPT, &no, 1}, {CKA_UNWRAP, &no, 1},
	};
	CK_ATTRIBUTE on = {CKA_DERIVE, &yes, 1}, off = {CKA_DERIVE, &no, 1};
	CK_OBJECT_HANDLE pub = 0, priv = 0;
	struct p11p_vkey r;
	size_t n;
	CK_RV rv = F->C_GenerateKeyPair(S, &mech, pt, sizeof(pt) / sizeof(pt[0]), st,
	                                sizeof(st) / sizeof(st[0]), &pub, &priv);

	memset(&r, 0, sizeof(r));
	n = rec_find("pd-ec", CKO_PUBLIC_KEY, &r);
	expect(rv == CKR_OK && n == 1 && r.perms == P11P_VK_VERIFY,
	       "a public key made with CKA_DERIVE true is recorded without derive (rv 0x%lx, "
	       "perms 0x%x)",
	       rv, (unsigned)r.perms);
	n = rec_find("pd-ec", CKO_PRIVATE_KEY, &r);
	expect(n == 1 && r.perms == (P11P_VK_SIGN | P11P_VK_DERIVE),
	       "its private key keeps derive (perms 0x%x)", (unsigned)r.perms);
	expect(get_bool(pub, CKA_DERIVE, NULL) == 0, "the public key's CKA_DERIVE reads false");
	expect(find_perm("pd-ec", CKO_PUBLIC_KEY, CKA_DERIVE, &no) == 1 &&
	           find_perm("pd-ec", CKO_PUBLIC_KEY, CKA_DERIVE, &yes) == 0,
	       "and matches false in a find");
	rv = F->C_SetAttributeValue(S, pub, &on, 1);
	expect(rv == CKR_ATTRIBUTE_VALUE_INVALID,
	       "CKA_DERIVE true on a public key: value invalid (0x%lx)", rv);
	rv = F->C_SetAttributeValue(S, pub, &off, 1);
	n = rec_find("pd-ec", CKO_PUBLIC_KEY, &r);
	expect(rv == CKR_OK && n == 1 && r.perms == P11P_VK_VERIFY,
	       "CKA_DERIVE false on a public key: accepted, nothing to change (0x%lx)", rv);
}

static int cmd_virtual(void)
{
	CK_OBJECT_HANDLE aes, ecpub, ecpriv, h;
	struct p11p_vkey r;
	CK_ATTRIBUTE sign_off = {CKA_SIGN, &no, 1};
	CK_ATTRIBUTE mixed[] = {{CKA_SIGN, &yes, 1}, {CKA_LABEL, "renamed", 7}};
	CK_RV rv;

	aes = gen_aes("wb-aes", CK_TRUE, CK_FALSE);
	gen_ec("wb-ec", &ecpub, &ecpriv);
	rv = F->C_SetAttributeValue(S, ecpriv, &sign_off, 1);
	expect(rv == CKR_OK && rec_find("wb-ec", CKO_PRIVATE_KEY, &r) == 1 && r.perms == 0,
	       "write_back false: CKA_SIGN=false changes the record (rv 0x%lx)", rv);
	expect(run_op(O_SIGN, ecpriv) == CKR_KEY_FUNCTION_NOT_PERMITTED,
	       "and the key no longer signs");
	expect(get_bool(ecpriv, CKA_SIGN, NULL) == 0, "CKA_SIGN reads false");
	/* Its maker may name it (CKA_ID, CKA_LABEL alone), not with anything else. */
	rv = F->C_SetAttributeValue(S, ecpriv, mixed, 2);
	expect(rv == CKR_ATTRIBUTE_READ_ONLY && rec_find("wb-ec", CKO_PRIVATE_KEY, &r) == 1 &&
	           r.perms == 0,
	       "a mixed template changes nothing (0x%lx)", rv);
	rv = F->C_SetAttributeValue(S, ecpub, &sign_off, 1);
	expect(rv == CKR_ATTRIBUTE_TYPE_INVALID, "CKA_SIGN on a public key: type invalid (0x%lx)",
	       rv);
	derive_public();

	rv = F->C_DestroyObject(S, aes);
	expect(rv == CKR_OK && rec_find("wb-aes", CKO_SECRET_KEY, &r) == 1 &&
	           r.state == P11P_VK_DELETED,
	       "write_back false: destroy leaves a tombstone (rv 0x%lx)", rv);
	expect(run_op(O_ENC, aes) == CKR_KEY_HANDLE_INVALID, "the handle no longer encrypts");
	get_bool(aes, CKA_ENCRYPT, &rv);
	expect(rv == CKR_OBJECT_HANDLE_INVALID, "nor reads (0x%lx)", rv);
	expect(F->C_DestroyObject(S, aes) == CKR_OBJECT_HANDLE_INVALID, "nor is destroyed twice");
	expect(find1("wb-aes", CKO_SECRET_KEY) == 0, "and no find returns it");
	h = 0;
	{
		CK_ATTRIBUTE t = {CKA_LABEL, "wb-aes", 6};

		expect(find_n(&t, 1, &h) == 0, "not even a find by label alone");
	}
	return failures ? 1 : 0;
}

/* A new process on the same index: the tombstone still hides the HSM key. */
static int cmd_after(void)
{
	struct p11p_vkey r;
	CK_ATTRIBUTE lbl = {CKA_LABEL, "renamed", 7};
	CK_OBJECT_HANDLE h = find1("wb-ec", CKO_PRIVATE_KEY);
	CK_RV rv = h != 0 ? F->C_SetAttributeValue(S, h, &lbl, 1) : CKR_GENERAL_ERROR;

	/* Not made by this process: its label stays the HSM key's. */
	expect(rv == CKR_ATTRIBUTE_READ_ONLY,
	       "write_back false: CKA_LABEL of a key found is read-only (0x%lx)", rv);

	expect(find1("wb-aes", CKO_SECRET_KEY) == 0 &&
	           rec_find("wb-aes", CKO_SECRET_KEY, &r) == 1 && r.state == P11P_VK_DELETED,
	       "a new process: the deleted key stays hidden and is not imported again");
	expect(find1("wb-ec", CKO_PRIVATE_KEY) != 0 &&
	           rec_find("wb-ec", CKO_PRIVATE_KEY, &r) == 1 && r.perms == 0,
	       "a new process: the denied key is found, still denied");
	return failures ? 1 : 0;
}

static int cmd_writeback(void)
{
	CK_OBJECT_HANDLE aes, ecpub, ecpriv;
	struct p11p_vkey r;
	CK_ATTRIBUTE sign_off = {CKA_SIGN, &no, 1};
	CK_ATTRIBUTE lbl[] = {{CKA_LABEL, "wb-ec-renamed", 13}, {CKA_ID, "\x09", 1}};
	CK_ATTRIBUTE bad = {CKA_SIGN, &yes, 1};
	CK_RV rv;

	aes = gen_aes("wb-aes", CK_TRUE, CK_FALSE);
	gen_ec("wb-ec", &ecpub, &ecpriv);
	rv = F->C_SetAttributeValue(S, ecpriv, &sign_off, 1);
	expect(rv == CKR_OK && rec_find("wb-ec", CKO_PRIVATE_KEY, &r) == 1 && r.perms == 0,
	       "write_back true: CKA_SIGN=false changes the record (rv 0x%lx)", rv);
	rv = F->C_SetAttributeValue(S, ecpriv, lbl, 2);
	expect(rv == CKR_OK && rec_find("wb-ec-renamed", CKO_PRIVATE_KEY, &r) == 1 &&
	           r.ck_id_len == 1 && r.ck_id[0] == 9 &&
	           rec_find("wb-ec", CKO_PRIVATE_KEY, &r) == 0,
	       "write_back true: CKA_LABEL and CKA_ID follow into the record (rv 0x%lx)", rv);
	expect(find1("wb-ec-renamed", CKO_PRIVATE_KEY) == ecpriv, "found under its new label");
	/* A public key has no CKA_SIGN: refused, nothing changes. */
	rv = F->C_SetAttributeValue(S, ecpub, &bad, 1);
	expect(rv == CKR_ATTRIBUTE_TYPE_INVALID && rec_find("wb-ec", CKO_PUBLIC_KEY, &r) == 1 &&
	           r.perms == P11P_VK_VERIFY,
	       "CKA_SIGN on a public key: refused, record unchanged (0x%lx)", rv);
	rv = F->C_DestroyObject(S, aes);
	expect(rv == CKR_OK && rec_find("wb-aes", CKO_SECRET_KEY, &r) == 0,
	       "write_back true: destroy removes the record (rv 0x%lx)", rv);
	expect(find1("wb-aes", CKO_SECRET_KEY) == 0, "and the key");
	return failures ? 1 : 0;
}

/* ---- lazy import ---- */

static int cmd_scan(const char *mode)
{
	bool all = strcmp(mode, "all") == 0;
	CK_OBJECT_HANDLE ext, mine, mpub, mpriv;
	struct p11p_vkey r;
	CK_RV rv;

	ext = find1("ext-aes", CKO_SECRET_KEY);
	if (all) {
		expect(ext != 0, "scan all: a key made on the token is found");
		expect(rec_find("ext-aes", CKO_SECRET_KEY, &r) == 1 &&
		           r.origin == P11P_VK_SCANNED && r.perms == P11P_VK_ENCRYPT &&
		           r.state == P11P_VK_ACTIVE && r.presence == 1,
		       "and imported: origin scanned, the HSM key's permissions (encrypt)");
		expect(rec_find("ext-ec", CKO_PRIVATE_KEY, &r) == 0,
		       "a key no find met is not imported yet");
		expect(find1("ext-ec", CKO_PRIVATE_KEY) != 0 &&
		           rec_find("ext-ec", CKO_PRIVATE_KEY, &r) == 1 && r.perms == P11P_VK_SIGN,
		       "imported at first sight");
		expect(run_op(O_DEC, ext) == CKR_KEY_FUNCTION_NOT_PERMITTED,
		       "an imported key has its HSM permissions: no decrypt");
		return failures ? 1 : 0;
	}
	expect(find1("ext2-aes", CKO_SECRET_KEY) == 0 &&
	           rec_find("ext2-aes", CKO_SECRET_KEY, &r) == 0,
	       "scan owned: a key made on the token is hidden, not imported");
	{
		CK_ATTRIBUTE t = {CKA_LABEL, "ext2-ec", 7};

		expect(find_n(&t, 1, NULL) == 0, "a hidden pair: not found by label alone either");
	}
	expect(ext != 0 && find1("ext-ec", CKO_PRIVATE_KEY) != 0,
	       "keys imported by an earlier scan (all) stay managed");
	expect(run_op(O_DEC, ext) == CKR_KEY_FUNCTION_NOT_PERMITTED && run_op(O_ENC, ext) == CKR_OK,
	       "with their virtual permissions");
	mine = gen_aes("own-aes", CK_TRUE, CK_FALSE);
	gen_ec("own-ec", &mpub, &mpriv);
	expect(mine != 0 && find1("own-aes", CKO_SECRET_KEY) == mine &&
	           rec_find("own-aes", CKO_SECRET_KEY, &r) == 1 && r.origin == P11P_VK_CREATED,
	       "a key created through the slot is recorded and found");
	rv = run_op(O_ENC, mine);
	expect(rv == CKR_OK, "and used (0x%lx)", rv);
	return failures ? 1 : 0;
}

/* ---- the HSM side, directly ---- */

static CK_OBJECT_CLASS class_of(const char *s)
{
	return strcmp(s, "secret") == 0    ? CKO_SECRET_KEY
	       : strcmp(s, "private") == 0 ? CKO_PRIVATE_KEY
	                                   : CKO_PUBLIC_KEY;
}

static CK_ATTRIBUTE_TYPE attr_of(const char *s)
{
	static const struct {
		const char *n;
		CK_ATTRIBUTE_TYPE t;
	} t[] = {{"encrypt", CKA_ENCRYPT}, {"decrypt", CKA_DECRYPT}, {"sign", CKA_SIGN},
	         {"verify", CKA_VERIFY},   {"wrap", CKA_WRAP},       {"unwrap", CKA_UNWRAP},
	         {"derive", CKA_DERIVE}};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(s, t[i].n) == 0)
			return t[i].t;
	return CKA_LABEL;
}

static int cmd_hsm(const char *label, const char *cls, const char *attr)
{
	CK_OBJECT_CLASS c = class_of(cls);
	CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)}, {CKA_CLASS, &c, sizeof(c)}};
	CK_OBJECT_HANDLE h = 0;
	CK_ULONG n = find_n(t, 2, &h);
	int v;

	printf("count %lu\n", n);
	if (n == 1) {
		v = get_bool(h, attr_of(attr), NULL);
		printf("%s %s\n", attr, v < 0 ? "-" : v ? "true" : "false");
	}
	return 0;
}

static int cmd_mkkeys(const char *prefix)
{
	char l1[64], l2[64];
	CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ULONG len = 16;
	CK_OBJECT_HANDLE h, pub, priv;
	CK_RV rv;

	snprintf(l1, sizeof(l1), "%s-aes", prefix);
	snprintf(l2, sizeof(l2), "%s-ec", prefix);
	CK_ATTRIBUTE t[] = {
	    {CKA_TOKEN, &yes, 1},   {CKA_LABEL, l1, strlen(l1)}, {CKA_VALUE_LEN, &len, sizeof(len)},
	    {CKA_ENCRYPT, &yes, 1}, {CKA_DECRYPT, &no, 1},       {CKA_SIGN, &no, 1},
	    {CKA_VERIFY, &no, 1},   {CKA_WRAP, &no, 1},          {CKA_UNWRAP, &no, 1},
	    {CKA_DERIVE, &no, 1}};
	rv = F->C_GenerateKey(S, &mech, t, sizeof(t) / sizeof(t[0]), &h);
	expect(rv == CKR_OK, "made %s directly (0x%lx)", l1, rv);
	gen_ec(l2, &pub, &priv);
	return failures ? 1 : 0;
}

/* "0a1b" into bytes; the length, or 0 on a bad string. */
static size_t unhex(const char *s, CK_BYTE *out, size_t max)
{
	size_t n = 0;
	unsigned v;

	while (s[0] != '\0' && s[1] != '\0' && n < max && sscanf(s, "%2x", &v) == 1) {
		out[n++] = (CK_BYTE)v;
		s += 2;
	}
	return *s == '\0' ? n : 0;
}

static int cmd_mkaes(const char *label, const char *idhex)
{
	CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ULONG len = 16;
	CK_BYTE id[64];
	size_t id_len = unhex(idhex, id, sizeof(id));
	CK_ATTRIBUTE t[] = {
	    {CKA_TOKEN, &yes, 1},   {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_ID, id, id_len},   {CKA_VALUE_LEN, &len, sizeof(len)},
	    {CKA_ENCRYPT, &yes, 1}, {CKA_DECRYPT, &yes, 1},
	    {CKA_PRIVATE, &yes, 1}, {CKA_SENSITIVE, &yes, 1},
	};
	CK_OBJECT_HANDLE h = 0;
	CK_RV rv = F->C_GenerateKey(S, &mech, t, sizeof(t) / sizeof(t[0]), &h);

	expect(id_len > 0 && rv == CKR_OK, "AES key %s id %s through the slot (0x%lx)", label, idhex,
	       rv);
	return failures ? 1 : 0;
}

static int cmd_use(const char *label, const char *idhex, const char *op)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_BYTE id[64], iv[16] = {0};
	size_t id_len = unhex(idhex, id, sizeof(id));
	CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)},
	                    {CKA_CLASS, &cls, sizeof(cls)},
	                    {CKA_ID, id, id_len}};
	CK_MECHANISM mech = {CKM_AES_CBC_PAD, iv, sizeof(iv)};
	CK_OBJECT_HANDLE h = 0;
	CK_RV rv;

	if (id_len == 0 || find_n(t, 3, &h) != 1) {
		printf("rv none\n");
		return 0;
	}
	rv = strcmp(op, "encrypt") == 0 ? F->C_EncryptInit(S, &mech, h)
	                                : F->C_DecryptInit(S, &mech, h);
	printf("rv 0x%lx\n", rv);
	return 0;
}

int main(int argc, char **argv)
{
	struct testmod m;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 5) {
		fprintf(stderr, "usage: vkeytest enforce|virtual|after|writeback|scan|hsm|mkkeys "
		                "MODULE LABEL PIN ...\n");
		return 2;
	}
	SLOT = argv[3];
	IDX = argc > 5 ? argv[5] : "";
	load(argv[2], argv[3], argv[4], &m);
	if (strcmp(argv[1], "enforce") == 0 && argc == 6)
		rc = cmd_enforce();
	else if (strcmp(argv[1], "virtual") == 0 && argc == 6)
		rc = cmd_virtual();
	else if (strcmp(argv[1], "after") == 0 && argc == 6)
		rc = cmd_after();
	else if (strcmp(argv[1], "writeback") == 0 && argc == 6)
		rc = cmd_writeback();
	else if (strcmp(argv[1], "scan") == 0 && argc == 7)
		rc = cmd_scan(argv[6]);
	else if (strcmp(argv[1], "hsm") == 0 && argc == 8)
		rc = cmd_hsm(argv[5], argv[6], argv[7]);
	else if (strcmp(argv[1], "mkkeys") == 0 && argc == 6)
		rc = cmd_mkkeys(argv[5]);
	else if (strcmp(argv[1], "mkaes") == 0 && argc == 7)
		rc = cmd_mkaes(argv[5], argv[6]);
	else if (strcmp(argv[1], "use") == 0 && argc == 8)
		rc = cmd_use(argv[5], argv[6], argv[7]);
	else {
		fprintf(stderr, "vkeytest: bad arguments\n");
		rc = 2;
	}
	F->C_CloseSession(S);
	testmod_unload(&m);
	return rc;
}
