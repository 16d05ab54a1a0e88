/*
 * Key replication through libproxy.so over the fault-injecting shim.
 *   repltest MODULE CONTROL LOG CASE [quick]
 * The config (tests/suites/66-replication.sh) has slots "ha" (m1, m2,
 * replication_key "repl"), "single" (the same, single_member_keys: true) and
 * "dflt" (m1, m2, "repl", the default key policy) and
 * "v-m1", "v-m2" (one member each: the replication key goes onto both tokens
 * through them, and they show what each token holds). CONTROL is the shim's
 * control file, LOG its call log. "quick" (valgrind) leaves RSA out.
 * Prints "ok ..." / "FAIL ..."; exit 1 on failure.
 */
#include "../tests/progs/testmod.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#include "shimctl.h"

static int quick;

/* Objects of that class, id and label on the slot (0, 1, 2 = several). */
static CK_ULONG count_on(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, CK_BYTE id, const char *label)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
			    {CKA_ID, &id, 1},
			    {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;

	if (f->C_FindObjectsInit(s, t, 3) != CKR_OK)
		return 99;
	f->C_FindObjects(s, h, 2, &n);
	f->C_FindObjectsFinal(s);
	return n;
}

static CK_OBJECT_HANDLE find_one(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, CK_BYTE id,
				 const char *label)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
			    {CKA_ID, &id, 1},
			    {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h = 0;
	CK_ULONG n = 0;

	if (f->C_FindObjectsInit(s, t, 3) != CKR_OK)
		return 0;
	f->C_FindObjects(s, &h, 1, &n);
	f->C_FindObjectsFinal(s);
	return n == 1 ? h : 0;
}

/* How many of that key each token holds, seen through the single-member slots. */
static void on_members(CK_OBJECT_CLASS cls, CK_BYTE id, const char *label, CK_ULONG *m1,
		       CK_ULONG *m2)
{
	CK_SESSION_HANDLE s1 = open_on("v-m1", 1), s2 = open_on("v-m2", 1);

	*m1 = count_on(s1, cls, id, label);
	*m2 = count_on(s2, cls, id, label);
	f->C_CloseSession(s1);
	f->C_CloseSession(s2);
}

/*
 * CKA_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED and CKA_NEVER_EXTRACTABLE of that key
 * on one token ("v-m1" or "v-m2") as three characters of "ft": "???" when absent.
 */
static void key_flags(const char *token, CK_OBJECT_CLASS cls, CK_BYTE id, const char *label,
		      char out[4])
{
	CK_SESSION_HANDLE s = open_on(token, 1);
	CK_OBJECT_HANDLE h = find_one(s, cls, id, label);
	CK_BBOOL b[3] = {9, 9, 9};
	CK_ATTRIBUTE a[] = {{CKA_EXTRACTABLE, &b[0], 1},
			    {CKA_WRAP_WITH_TRUSTED, &b[1], 1},
			    {CKA_NEVER_EXTRACTABLE, &b[2], 1}};

	memcpy(out, "???", 4);
	if (h != 0 && f->C_GetAttributeValue(s, h, a, 3) == CKR_OK)
		for (int i = 0; i < 3; i++)
			out[i] = b[i] == CK_TRUE ? 't' : b[i] == CK_FALSE ? 'f' : '?';
	f->C_CloseSession(s);
}

/* --- setup: the replication key, the same value on both tokens --- */

static void setup_repl_key(void)
{
	const char *tokens[] = {"v-m1", "v-m2"};
	unsigned char value[32];
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE t[] = {
		{CKA_CLASS, &cls, sizeof(cls)},	  {CKA_KEY_TYPE, &kt, sizeof(kt)},
		{CKA_TOKEN, &yes, sizeof(yes)},	  {CKA_PRIVATE, &yes, sizeof(yes)},
		{CKA_LABEL, "repl", 4},		  {CKA_VALUE, value, sizeof(value)},
		{CKA_WRAP, &yes, sizeof(yes)},	  {CKA_UNWRAP, &yes, sizeof(yes)},
		{CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &no, sizeof(no)},
	};

	RAND_bytes(value, sizeof(value));
	for (int i = 0; i < 2; i++) {
		CK_SESSION_HANDLE s = open_on(tokens[i], 1);
		CK_OBJECT_HANDLE h;

		if (f->C_CreateObject(s, t, 10, &h) != CKR_OK) {
			expect(0, "import the replication key on %s", tokens[i]);
			exit(1);
		}
		f->C_CloseSession(s);
	}
	OPENSSL_cleanse(value, sizeof(value));
}

/* --- key generation through a slot --- */

static CK_RV gen_aes(CK_SESSION_HANDLE s, CK_BYTE id, const char *label, CK_BBOOL extractable,
		     CK_OBJECT_HANDLE *h)
{
	CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ULONG len = 32;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[] = {
		{CKA_TOKEN, &yes, sizeof(yes)},	    {CKA_PRIVATE, &yes, sizeof(yes)},
		{CKA_ID, &id, 1},		    {CKA_LABEL, (void *)label, strlen(label)},
		{CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_ENCRYPT, &yes, sizeof(yes)},
		{CKA_DECRYPT, &yes, sizeof(yes)},   {CKA_SENSITIVE, &yes, sizeof(yes)},
		{CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
	};

	return f->C_GenerateKey(s, &m, t, 9, h);
}

static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static CK_RV gen_ec(CK_SESSION_HANDLE s, CK_BYTE id, const char *label, CK_BBOOL extractable,
		    CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tpub[] = {
		{CKA_TOKEN, &yes, sizeof(yes)},	 {CKA_ID, &id, 1},
		{CKA_LABEL, (void *)label, strlen(label)}, {CKA_VERIFY, &yes, sizeof(yes)},
		{CKA_EC_PARAMS, (void *)p256, sizeof(p256)},
	};
	CK_ATTRIBUTE tpriv[] = {
		{CKA_TOKEN, &yes, sizeof(yes)},	  {CKA_PRIVATE, &yes, sizeof(yes)},
		{CKA_ID, &id, 1},		  {CKA_LABEL, (void *)label, strlen(label)},
		{CKA_SIGN, &yes, sizeof(yes)},	  {CKA_SENSITIVE, &yes, sizeof(yes)},
		{CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
	};

	return f->C_GenerateKeyPair(s, &m, tpub, 5, tpriv, 7, pub, priv);
}

static CK_RV gen_rsa(CK_SESSION_HANDLE s, CK_BYTE id, const char *label, CK_OBJECT_HANDLE *pub,
		     CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM m = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
	CK_BBOOL yes = CK_TRUE;
	CK_ULONG bits = 2048;
	CK_BYTE e[] = {1, 0, 1};
	CK_ATTRIBUTE tpub[] = {
		{CKA_TOKEN, &yes, sizeof(yes)},	   {CKA_ID, &id, 1},
		{CKA_LABEL, (void *)label, strlen(label)}, {CKA_VERIFY, &yes, sizeof(yes)},
		{CKA_ENCRYPT, &yes, sizeof(yes)},  {CKA_MODULUS_BITS, &bits, sizeof(bits)},
		{CKA_PUBLIC_EXPONENT, e, sizeof(e)},
	};
	CK_ATTRIBUTE tpriv[] = {
		{CKA_TOKEN, &yes, sizeof(yes)},	 {CKA_PRIVATE, &yes, sizeof(yes)},
		{CKA_ID, &id, 1},		 {CKA_LABEL, (void *)label, strlen(label)},
		{CKA_SIGN, &yes, sizeof(yes)},	 {CKA_DECRYPT, &yes, sizeof(yes)},
		{CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &yes, sizeof(yes)},
	};

	return f->C_GenerateKeyPair(s, &m, tpub, 7, tpriv, 8, pub, priv);
}

/* Raw ECDSA on the slot, verified by OpenSSL with the public key's CKA_EC_POINT (read there). */
static int ec_sign_verifies(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	unsigned char hash[32], sig[64], der[80], *p = der, point[80];
	CK_ATTRIBUTE a = {CKA_EC_POINT, point, sizeof(point)};
	CK_ULONG sig_len = sizeof(sig);
	EVP_PKEY *key = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	OSSL_PARAM params[3];
	ECDSA_SIG *es;
	int der_len, ok = 0;

	RAND_bytes(hash, sizeof(hash));
	if (f->C_SignInit(s, &m, priv) != CKR_OK || f->C_Sign(s, hash, 32, sig, &sig_len) != CKR_OK ||
	    sig_len != 64 || f->C_GetAttributeValue(s, pub, &a, 1) != CKR_OK || a.ulValueLen != 67 ||
	    point[0] != 0x04 || point[1] != 65)
		return 0;
	params[0] = OSSL_PARAM_construct_utf8_string("group", "P-256", 0);
	params[1] = OSSL_PARAM_construct_octet_string("pub", point + 2, 65);
	params[2] = OSSL_PARAM_construct_end();
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	EVP_PKEY_CTX_free(ctx);
	es = ECDSA_SIG_new();
	ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
	der_len = i2d_ECDSA_SIG(es, &p);
	ECDSA_SIG_free(es);
	ctx = EVP_PKEY_CTX_new(key, NULL);
	ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
	     EVP_PKEY_verify(ctx, der, (size_t)der_len, hash, sizeof(hash)) == 1;
out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(key);
	return ok;
}

static CK_RV aes_cbc(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, int enc, const unsigned char *in,
		     CK_ULONG in_len, unsigned char *out, CK_ULONG *out_len)
{
	unsigned char iv[16] = {9, 8, 7};
	CK_MECHANISM m = {CKM_AES_CBC_PAD, iv, sizeof(iv)};
	CK_RV rv = enc ? f->C_EncryptInit(s, &m, key) : f->C_DecryptInit(s, &m, key);

	if (rv != CKR_OK)
		return rv;
	return enc ? f->C_Encrypt(s, (CK_BYTE_PTR)in, in_len, out, out_len)
		   : f->C_Decrypt(s, (CK_BYTE_PTR)in, in_len, out, out_len);
}

static void case_copy(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE aes = 0, ecpub = 0, ecpriv = 0, rsapub = 0, rsapriv = 0, imp = 0, unw = 0;
	CK_OBJECT_HANDLE repl = 0;
	CK_ULONG n1 = 0, n2 = 0, n3 = 0, n4 = 0, clen = 64, plen;
	const char *msg = "replicated keys work on the other member";
	unsigned char ct[64], pt[64], wrapped[128], value[32];
	CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
	CK_OBJECT_CLASS sec = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_BBOOL yes = CK_TRUE;
	CK_ULONG wlen = sizeof(wrapped);
	CK_ATTRIBUTE imp_t[] = {
		{CKA_CLASS, &sec, sizeof(sec)},	 {CKA_KEY_TYPE, &kt, sizeof(kt)},
		{CKA_TOKEN, &yes, sizeof(yes)},	 {CKA_ID, "\x05", 1},
		{CKA_LABEL, "r-imp", 5},	 {CKA_VALUE, value, sizeof(value)},
		{CKA_ENCRYPT, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &yes, sizeof(yes)},
	};
	CK_ATTRIBUTE unw_t[] = {
		{CKA_CLASS, &sec, sizeof(sec)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
		{CKA_TOKEN, &yes, sizeof(yes)}, {CKA_ID, "\x06", 1},
		{CKA_LABEL, "r-unw", 5},	{CKA_DECRYPT, &yes, sizeof(yes)},
		{CKA_EXTRACTABLE, &yes, sizeof(yes)},
	};
	CK_BBOOL sens = CK_FALSE, extr = CK_FALSE;
	CK_ATTRIBUTE flags[] = {{CKA_SENSITIVE, &sens, 1}, {CKA_EXTRACTABLE, &extr, 1}};
	unsigned char rsasig[256], data[32] = {1, 2, 3};
	CK_ULONG rsasig_len = sizeof(rsasig);
	CK_MECHANISM rsam = {CKM_SHA256_RSA_PKCS, NULL, 0};
	long mark;

	expect(gen_aes(s, 0x01, "r-aes", CK_TRUE, &aes) == CKR_OK, "AES-256 token key through ha");
	on_members(CKO_SECRET_KEY, 0x01, "r-aes", &n1, &n2);
	expect(n1 == 1 && n2 == 1, "AES key on m1 and on m2 (same class, id, label): %lu, %lu", n1,
	       n2);
	{
		CK_SESSION_HANDLE s2 = open_on("v-m2", 1);
		CK_OBJECT_HANDLE copy = find_one(s2, CKO_SECRET_KEY, 0x01, "r-aes");

		expect(copy != 0 && f->C_GetAttributeValue(s2, copy, flags, 2) == CKR_OK &&
			       sens == CK_TRUE && extr == CK_TRUE,
		       "the copy keeps CKA_SENSITIVE and CKA_EXTRACTABLE");
		f->C_CloseSession(s2);
	}
	expect(gen_ec(s, 0x02, "r-ec", CK_TRUE, &ecpub, &ecpriv) == CKR_OK,
	       "EC P-256 pair through ha");
	on_members(CKO_PRIVATE_KEY, 0x02, "r-ec", &n1, &n2);
	on_members(CKO_PUBLIC_KEY, 0x02, "r-ec", &n3, &n4);
	expect(n1 == 1 && n2 == 1 && n3 == 1 && n4 == 1,
	       "EC private and public key on both members (%lu %lu, %lu %lu)", n1, n2, n3, n4);
	if (!quick) {
		expect(gen_rsa(s, 0x03, "r-rsa", &rsapub, &rsapriv) == CKR_OK,
		       "RSA-2048 pair through ha");
		on_members(CKO_PRIVATE_KEY, 0x03, "r-rsa", &n1, &n2);
		on_members(CKO_PUBLIC_KEY, 0x03, "r-rsa", &n3, &n4);
		expect(n1 == 1 && n2 == 1 && n3 == 1 && n4 == 1,
		       "RSA private and public key on both members (%lu %lu, %lu %lu)", n1, n2, n3,
		       n4);
	}
	/* C_CreateObject and C_UnwrapKey of token keys are replicated too. */
	RAND_bytes(value, sizeof(value));
	expect(f->C_CreateObject(s, imp_t, 8, &imp) == CKR_OK, "AES key imported through ha");
	on_members(CKO_SECRET_KEY, 0x05, "r-imp", &n1, &n2);
	expect(n1 == 1 && n2 == 1, "imported key on both members (%lu, %lu)", n1, n2);
	{
		CK_ATTRIBUTE t[] = {{CKA_CLASS, &sec, sizeof(sec)}, {CKA_LABEL, "repl", 4}};
		CK_ULONG n = 0;

		f->C_FindObjectsInit(s, t, 2);
		f->C_FindObjects(s, &repl, 1, &n);
		f->C_FindObjectsFinal(s);
	}
	expect(f->C_WrapKey(s, &kwp, repl, imp, wrapped, &wlen) == CKR_OK &&
		       f->C_UnwrapKey(s, &kwp, repl, wrapped, wlen, unw_t, 7, &unw) == CKR_OK,
	       "a key unwrapped through ha");
	on_members(CKO_SECRET_KEY, 0x06, "r-unw", &n1, &n2);
	expect(n1 == 1 && n2 == 1, "unwrapped key on both members (%lu, %lu)", n1, n2);

	expect(aes_cbc(s, aes, 1, (const unsigned char *)msg, strlen(msg), ct, &clen) == CKR_OK,
	       "encrypt on m1");
	if (!quick)
		expect(f->C_SignInit(s, &rsam, rsapriv) == CKR_OK &&
			       f->C_Sign(s, data, sizeof(data), rsasig, &rsasig_len) == CKR_OK,
		       "RSA sign on m1");

	/* m1 fails: the session moves to m2, where the copies are found by class, id, label. */
	control("m1 fail CKR_DEVICE_ERROR\n");
	mark = log_lines();
	plen = sizeof(pt);
	expect(aes_cbc(s, aes, 0, ct, clen, pt, &plen) == CKR_OK && plen == strlen(msg) &&
		       memcmp(pt, msg, plen) == 0,
	       "decrypt on m2 with the copy: the same key value");
	expect(log_count(mark, "C_Decrypt m2 CKR_OK", NULL) == 1, "served by m2");
	expect(ec_sign_verifies(s, ecpriv, ecpub), "EC sign on m2 verifies with the public key");
	if (!quick) {
		expect(f->C_VerifyInit(s, &rsam, rsapub) == CKR_OK &&
			       f->C_Verify(s, data, sizeof(data), rsasig, rsasig_len) == CKR_OK,
		       "m1's RSA signature verifies with the public key copy on m2");
		rsasig_len = sizeof(rsasig);
		expect(f->C_SignInit(s, &rsam, rsapriv) == CKR_OK &&
			       f->C_Sign(s, data, sizeof(data), rsasig, &rsasig_len) == CKR_OK &&
			       f->C_VerifyInit(s, &rsam, rsapub) == CKR_OK &&
			       f->C_Verify(s, data, sizeof(data), rsasig, rsasig_len) == CKR_OK,
		       "RSA sign and verify on m2");
	}
	control("");
	msleep(600);
	f->C_CloseSession(s);
	OPENSSL_cleanse(value, sizeof(value));
}

/*
 * Keys asked to be non-extractable are made extractable under trusted keys
 * only, copied, then locked: on both members, CKA_EXTRACTABLE false,
 * CKA_WRAP_WITH_TRUSTED true (CKA_NEVER_EXTRACTABLE false). A copy a member
 * refuses: the new key is refused and nothing is left behind.
 */
static void case_refuse(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE h = 0, pub = 0, priv = 0;
	CK_ULONG n1 = 9, n2 = 9, n3 = 9, n4 = 9;
	char f1[4], f2[4];
	CK_RV rv;

	rv = gen_aes(s, 0x11, "r-nx", CK_FALSE, &h);
	expect(rv == CKR_OK, "non-extractable AES key through ha: CKR_OK (%s)", testmod_ckr(rv));
	on_members(CKO_SECRET_KEY, 0x11, "r-nx", &n1, &n2);
	expect(n1 == 1 && n2 == 1, "on both members (%lu, %lu)", n1, n2);
	key_flags("v-m1", CKO_SECRET_KEY, 0x11, "r-nx", f1);
	key_flags("v-m2", CKO_SECRET_KEY, 0x11, "r-nx", f2);
	expect(strcmp(f1, "ftf") == 0 && strcmp(f2, "ftf") == 0,
	       "locked on both: extractable false, wrap-with-trusted true, never-extractable "
	       "false (m1 %s, m2 %s)",
	       f1, f2);
	{
		CK_BBOOL b = 9;
		CK_ATTRIBUTE a = {CKA_EXTRACTABLE, &b, 1};

		expect(f->C_GetAttributeValue(s, h, &a, 1) == CKR_OK && b == CK_FALSE,
		       "the application sees CKA_EXTRACTABLE false");
	}
	rv = gen_ec(s, 0x12, "r-nxec", CK_FALSE, &pub, &priv);
	expect(rv == CKR_OK, "EC pair with a non-extractable private key: CKR_OK (%s)",
	       testmod_ckr(rv));
	on_members(CKO_PRIVATE_KEY, 0x12, "r-nxec", &n1, &n2);
	on_members(CKO_PUBLIC_KEY, 0x12, "r-nxec", &n3, &n4);
	expect(n1 + n2 + n3 + n4 == 4, "both halves on both members (%lu %lu %lu %lu)", n1, n2,
	       n3, n4);
	key_flags("v-m1", CKO_PRIVATE_KEY, 0x12, "r-nxec", f1);
	key_flags("v-m2", CKO_PRIVATE_KEY, 0x12, "r-nxec", f2);
	expect(strcmp(f1, "ftf") == 0 && strcmp(f2, "ftf") == 0,
	       "the private key locked on both (m1 %s, m2 %s)", f1, f2);
	/* m2 refuses the copy (a client-side error: not a failed member): refused, no orphan. */
	control("m2 fail-fn C_UnwrapKey CKR_TEMPLATE_INCONSISTENT\n");
	rv = gen_aes(s, 0x14, "r-refused", CK_FALSE, &h);
	expect(rv == CKR_FUNCTION_FAILED, "a copy m2 refuses: CKR_FUNCTION_FAILED (%s)",
	       testmod_ckr(rv));
	rv = gen_ec(s, 0x15, "r-refused-ec", CK_FALSE, &pub, &priv);
	expect(rv == CKR_FUNCTION_FAILED, "an EC pair m2 refuses: CKR_FUNCTION_FAILED (%s)",
	       testmod_ckr(rv));
	control("");
	on_members(CKO_SECRET_KEY, 0x14, "r-refused", &n1, &n2);
	on_members(CKO_PRIVATE_KEY, 0x15, "r-refused-ec", &n3, &n4);
	expect(n1 + n2 + n3 + n4 == 0, "nothing left on either member (%lu %lu %lu %lu)", n1, n2,
	       n3, n4);
	on_members(CKO_PUBLIC_KEY, 0x15, "r-refused-ec", &n1, &n2);
	expect(n1 + n2 == 0, "nor the public half (%lu, %lu)", n1, n2);
	/* A different key with the same identity on m2 only: the new one would be confused with it. */
	{
		CK_SESSION_HANDLE s2 = open_on("v-m2", 1);
		CK_OBJECT_HANDLE other = 0;

		expect(gen_aes(s2, 0x13, "r-dup", CK_TRUE, &other) == CKR_OK, "a key on m2 only");
		f->C_CloseSession(s2);
		rv = gen_aes(s, 0x13, "r-dup", CK_TRUE, &h);
		expect(rv == CKR_FUNCTION_FAILED, "the same identity through ha: refused (%s)",
		       testmod_ckr(rv));
		on_members(CKO_SECRET_KEY, 0x13, "r-dup", &n1, &n2);
		expect(n1 == 0 && n2 == 1, "m1 has none, m2 keeps its own (%lu, %lu)", n1, n2);
		s2 = open_on("v-m2", 1);
		other = find_one(s2, CKO_SECRET_KEY, 0x13, "r-dup");
		f->C_DestroyObject(s2, other);
		f->C_CloseSession(s2);
	}
	/* Keys without CKA_ID and CKA_LABEL: every member gets each one. */
	{
		CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
		CK_ULONG len = 16;
		CK_BBOOL yes = CK_TRUE;
		/* SoftHSM2 makes keys non-extractable unless asked. */
		CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
				    {CKA_TOKEN, &yes, sizeof(yes)},
				    {CKA_EXTRACTABLE, &yes, sizeof(yes)}};
		CK_SESSION_HANDLE s1, s2;
		CK_OBJECT_CLASS sec = CKO_SECRET_KEY;
		CK_ATTRIBUTE q[] = {{CKA_CLASS, &sec, sizeof(sec)}, {CKA_LABEL, "", 0}, {CKA_ID, "", 0}};
		CK_OBJECT_HANDLE hs[4];

		expect(f->C_GenerateKey(s, &m, t, 3, &h) == CKR_OK &&
			       f->C_GenerateKey(s, &m, t, 3, &h) == CKR_OK,
		       "two unlabelled token keys through ha");
		s1 = open_on("v-m1", 1);
		s2 = open_on("v-m2", 1);
		n1 = n2 = 0;
		f->C_FindObjectsInit(s1, q, 3);
		f->C_FindObjects(s1, hs, 4, &n1);
		f->C_FindObjectsFinal(s1);
		f->C_FindObjectsInit(s2, q, 3);
		f->C_FindObjects(s2, hs, 4, &n2);
		f->C_FindObjectsFinal(s2);
		expect(n1 == 2 && n2 == 2, "both on both members (%lu, %lu)", n1, n2);
		f->C_CloseSession(s1);
		f->C_CloseSession(s2);
	}
	/* Session keys stay on one member, as before. */
	{
		CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
		CK_ULONG len = 16;
		CK_BBOOL no = CK_FALSE;
		CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
				    {CKA_EXTRACTABLE, &no, sizeof(no)}};

		expect(f->C_GenerateKey(s, &m, t, 2, &h) == CKR_OK,
		       "non-extractable session key: allowed");
	}
	f->C_CloseSession(s);
}

static void case_single(void)
{
	CK_SESSION_HANDLE s = open_on("single", 1);
	CK_OBJECT_HANDLE h = 0;
	CK_ULONG n1 = 9, n2 = 9;
	CK_RV rv;

	char f1[4];

	/* m2 refuses the copy: with single_member_keys the key stays on m1. */
	control("m2 fail-fn C_UnwrapKey CKR_TEMPLATE_INCONSISTENT\n");
	rv = gen_aes(s, 0x21, "r-single", CK_FALSE, &h);
	control("");
	expect(rv == CKR_OK, "single_member_keys: a key m2 refuses is allowed (%s)",
	       testmod_ckr(rv));
	f->C_CloseSession(s);
	on_members(CKO_SECRET_KEY, 0x21, "r-single", &n1, &n2);
	expect(n1 == 1 && n2 == 0, "it is on m1 only (%lu, %lu)", n1, n2);
	/* Not on every member: it stays copyable under trusted keys only, for the repair. */
	key_flags("v-m1", CKO_SECRET_KEY, 0x21, "r-single", f1);
	expect(strcmp(f1, "ttf") == 0, "extractable under trusted keys only until copied (%s)", f1);
}

static void case_catchup(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE h = 0, pub = 0, priv = 0;
	CK_ULONG n1 = 0, n2 = 0, n3 = 0;
	double t;

	control("m2 fail CKR_DEVICE_ERROR\n");
	expect(gen_aes(s, 0x31, "r-late", CK_TRUE, &h) == CKR_OK,
	       "with m2 failing, a key is made on m1 only: no error");
	expect(gen_ec(s, 0x32, "r-late-ec", CK_TRUE, &pub, &priv) == CKR_OK,
	       "and an EC pair");
	control("");
	t = now_s();
	while (now_s() - t < (quick ? 40 : 8)) { /* valgrind is slow */
		/* Debts and the catch-up copy in their own order: wait for all three. */
		on_members(CKO_PUBLIC_KEY, 0x32, "r-late-ec", &n1, &n3);
		on_members(CKO_PRIVATE_KEY, 0x32, "r-late-ec", &n1, &n2);
		if (n3 == 1 && n2 == 1) {
			on_members(CKO_SECRET_KEY, 0x31, "r-late", &n1, &n2);
			if (n2 == 1)
				break;
		}
		msleep(100);
	}
	on_members(CKO_SECRET_KEY, 0x31, "r-late", &n1, &n2);
	expect(n1 == 1 && n2 == 1, "m2 is back and caught up (%.2f s)", now_s() - t);
	on_members(CKO_PRIVATE_KEY, 0x32, "r-late-ec", &n1, &n2);
	expect(n2 == 1 && n3 == 1, "the EC pair too");
	/* Then m1 fails: the late keys work on m2. */
	control("m1 fail CKR_DEVICE_ERROR\n");
	expect(ec_sign_verifies(s, priv, pub), "EC sign on m2 with the caught-up key");
	control("");
	msleep(600);
	f->C_CloseSession(s);
}

/*
 * ha.replication none and vendor: no copies, the key as asked (not made
 * copyable); a slot without a replication key refuses, naming the command.
 * Leaves nothing behind.
 */
static void case_modes(void)
{
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE h = 0;
	CK_ULONG n1 = 9, n2 = 9;
	char f1[4];
	double t;
	CK_RV rv;

	s = open_on("none", 1);
	rv = gen_aes(s, 0x41, "r-none", CK_FALSE, &h);
	f->C_CloseSession(s);
	expect(rv == CKR_OK, "replication none: created (%s)", testmod_ckr(rv));
	on_members(CKO_SECRET_KEY, 0x41, "r-none", &n1, &n2);
	expect(n1 == 1 && n2 == 0, "replication none: on m1 only (%lu, %lu)", n1, n2);
	key_flags("v-m1", CKO_SECRET_KEY, 0x41, "r-none", f1);
	expect(strcmp(f1, "fft") == 0, "replication none: made as asked, never extractable (%s)",
	       f1);
	s = open_on("vend", 1);
	t = now_s();
	rv = gen_aes(s, 0x42, "r-vend", CK_FALSE, &h);
	t = now_s() - t;
	f->C_CloseSession(s);
	expect(rv == CKR_OK, "replication vendor: created (%s)", testmod_ckr(rv));
	expect(t >= 0.25, "replication vendor: waited for m2's copy (%.2f s)", t);
	on_members(CKO_SECRET_KEY, 0x42, "r-vend", &n1, &n2);
	expect(n1 == 1 && n2 == 0, "replication vendor: the proxy made no copy (%lu, %lu)", n1,
	       n2);
	s = open_on("nokey", 1);
	rv = gen_aes(s, 0x43, "r-nokey", CK_FALSE, &h);
	f->C_CloseSession(s);
	expect(rv == CKR_FUNCTION_FAILED, "no replication key: refused (%s)", testmod_ckr(rv));
	on_members(CKO_SECRET_KEY, 0x43, "r-nokey", &n1, &n2);
	expect(n1 == 0 && n2 == 0, "no replication key: nothing left (%lu, %lu)", n1, n2);
	s = open_on("v-m1", 1);
	h = find_one(s, CKO_SECRET_KEY, 0x41, "r-none");
	expect(h != 0 && f->C_DestroyObject(s, h) == CKR_OK, "r-none removed");
	h = find_one(s, CKO_SECRET_KEY, 0x42, "r-vend");
	expect(h != 0 && f->C_DestroyObject(s, h) == CKR_OK, "r-vend removed");
	f->C_CloseSession(s);
}

/* Destroys the key case_single left on m1: the members agree again. */
/* Destroying a replicated key destroys its copies: a failover must not bring it back. */
static void case_destroy(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE h = 0;
	CK_ULONG n1 = 0, n2 = 0;

	expect(gen_aes(s, 0x31, "r-destroy", CK_TRUE, &h) == CKR_OK, "AES key generated");
	on_members(CKO_SECRET_KEY, 0x31, "r-destroy", &n1, &n2);
	expect(n1 == 1 && n2 == 1, "on both members (%lu, %lu)", n1, n2);
	expect(f->C_DestroyObject(s, h) == CKR_OK, "destroyed through the slot");
	on_members(CKO_SECRET_KEY, 0x31, "r-destroy", &n1, &n2);
	expect(n1 == 0 && n2 == 0, "gone from both members (%lu, %lu)", n1, n2);
	f->C_CloseSession(s);
}

/*
 * The default key policy (slot "dflt", write_back false): the application
 * that made a key through the proxy names it afterwards, as NSS does (CKA_ID,
 * CKA_LABEL, from another session): the HSM key and its copy change. Other
 * attributes, and a key this process did not make (found after a new
 * C_Initialize), keep the rule: CKR_ATTRIBUTE_READ_ONLY.
 */
static void case_naming(void)
{
	CK_SESSION_HANDLE s = open_on("dflt", 1), s2 = open_on("dflt", 1);
	CK_OBJECT_HANDLE pub = 0, priv = 0, h;
	CK_BYTE id = 0x42;
	CK_ATTRIBUTE set_id = {CKA_ID, &id, 1};
	CK_ATTRIBUTE set_label = {CKA_LABEL, "r-named", 7};
	CK_ATTRIBUTE set_subject = {CKA_SUBJECT, "\x30\x00", 2};
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE mixed[] = {{CKA_ID, &id, 1}, {CKA_SIGN, &no, sizeof(no)}};
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	CK_ULONG n1 = 9, n2 = 9;
	CK_RV rv;

	expect(gen_ec(s, 0x41, "r-name", CK_FALSE, &pub, &priv) == CKR_OK,
	       "EC pair through dflt (default policy)");
	rv = f->C_SetAttributeValue(s, priv, &set_id, 1);
	expect(rv == CKR_OK, "its creator sets CKA_ID on the private key: %s", testmod_ckr(rv));
	rv = f->C_SetAttributeValue(s2, priv, &set_label, 1);
	expect(rv == CKR_OK, "and CKA_LABEL from another session of the application: %s",
	       testmod_ckr(rv));
	rv = f->C_SetAttributeValue(s2, pub, &set_id, 1);
	expect(rv == CKR_OK, "and CKA_ID on the public key: %s", testmod_ckr(rv));
	on_members(CKO_PRIVATE_KEY, 0x42, "r-named", &n1, &n2);
	expect(n1 == 1 && n2 == 1, "the private key renamed on m1 and on m2 (%lu, %lu)", n1, n2);
	on_members(CKO_PRIVATE_KEY, 0x41, "r-name", &n1, &n2);
	expect(n1 == 0 && n2 == 0, "the old name is gone on both (%lu, %lu)", n1, n2);
	rv = f->C_SetAttributeValue(s, priv, &set_subject, 1);
	expect(rv == CKR_ATTRIBUTE_READ_ONLY, "another attribute (CKA_SUBJECT) refused: %s",
	       testmod_ckr(rv));
	rv = f->C_SetAttributeValue(s, priv, mixed, 2);
	expect(rv == CKR_ATTRIBUTE_READ_ONLY, "CKA_ID with a usage flag refused: %s",
	       testmod_ckr(rv));
	f->C_CloseSession(s);
	f->C_CloseSession(s2);
	/* A new C_Initialize: the key is found now, not made here. */
	f->C_Finalize(NULL);
	expect(f->C_Initialize(&args) == CKR_OK, "C_Initialize again");
	s = open_on("dflt", 1);
	h = find_one(s, CKO_PRIVATE_KEY, 0x42, "r-named");
	id = 0x43;
	rv = h != 0 ? f->C_SetAttributeValue(s, h, &set_id, 1) : CKR_GENERAL_ERROR;
	expect(rv == CKR_ATTRIBUTE_READ_ONLY,
	       "a key found (not made by this process): CKA_ID refused: %s", testmod_ckr(rv));
	f->C_CloseSession(s);
}

/*
 * Java's way (SunPKCS11): a session key pair asked non-extractable, the
 * private key then copied to the token. The session key shows as asked; the
 * token copy is replicated and locked on both members (CKA_EXTRACTABLE false,
 * CKA_WRAP_WITH_TRUSTED true), and so is the session original; a copy asked
 * extractable is refused.
 */
static void case_sesscopy(void)
{
	CK_SESSION_HANDLE s = open_on("dflt", 1);
	CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE, extr = 9;
	CK_BYTE id = 0x45, cid = 0x46;
	CK_ATTRIBUTE tpub[] = {
		{CKA_TOKEN, &no, sizeof(no)},
		{CKA_ID, &id, 1},
		{CKA_LABEL, "r-sess", 6},
		{CKA_VERIFY, &yes, sizeof(yes)},
		{CKA_EC_PARAMS, (void *)p256, sizeof(p256)},
	};
	CK_ATTRIBUTE tpriv[] = {
		{CKA_TOKEN, &no, sizeof(no)},	{CKA_PRIVATE, &yes, sizeof(yes)},
		{CKA_ID, &id, 1},		{CKA_LABEL, "r-sess", 6},
		{CKA_SIGN, &yes, sizeof(yes)},	{CKA_SENSITIVE, &yes, sizeof(yes)},
		{CKA_EXTRACTABLE, &no, sizeof(no)},
	};
	CK_ATTRIBUTE to_token[] = {
		{CKA_TOKEN, &yes, sizeof(yes)}, {CKA_ID, &cid, 1}, {CKA_LABEL, "r-scopy", 7}};
	CK_ATTRIBUTE to_token_x[] = {{CKA_TOKEN, &yes, sizeof(yes)},
				     {CKA_ID, &cid, 1},
				     {CKA_LABEL, "r-scopy", 7},
				     {CKA_EXTRACTABLE, &yes, sizeof(yes)}};
	CK_ATTRIBUTE q = {CKA_EXTRACTABLE, &extr, sizeof(extr)};
	CK_OBJECT_HANDLE pub = 0, priv = 0, copy = 0;
	CK_ULONG n1 = 9, n2 = 9;
	char f1[4], f2[4], fs[4];
	CK_RV rv;

	rv = f->C_GenerateKeyPair(s, &m, tpub, 5, tpriv, 7, &pub, &priv);
	expect(rv == CKR_OK, "EC session pair, non-extractable, through dflt: %s", testmod_ckr(rv));
	expect(f->C_GetAttributeValue(s, priv, &q, 1) == CKR_OK && extr == CK_FALSE,
	       "the session key shows CKA_EXTRACTABLE false, as asked");
	key_flags("v-m1", CKO_PRIVATE_KEY, 0x45, "r-sess", fs);
	expect(strcmp(fs, "tt?") == 0 || strcmp(fs, "ttf") == 0,
	       "on m1 it is made copyable under trusted keys only: %s", fs);
	{
		CK_OBJECT_CLASS sec = CKO_SECRET_KEY;
		CK_ATTRIBUTE t[] = {{CKA_CLASS, &sec, sizeof(sec)}, {CKA_LABEL, "repl", 4}};
		CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
		CK_OBJECT_HANDLE repl = 0;
		unsigned char wrapped[512];
		CK_ULONG n = 0, wlen = sizeof(wrapped);

		f->C_FindObjectsInit(s, t, 2);
		f->C_FindObjects(s, &repl, 1, &n);
		f->C_FindObjectsFinal(s);
		rv = n == 1 ? f->C_WrapKey(s, &kwp, repl, priv, wrapped, &wlen) : CKR_GENERAL_ERROR;
		expect(rv == CKR_KEY_UNEXTRACTABLE,
		       "the session key cannot be wrapped by the application, even under the "
		       "replication key: %s",
		       testmod_ckr(rv));
	}
	rv = f->C_CopyObject(s, priv, to_token_x, 4, &copy);
	expect(rv == CKR_ATTRIBUTE_READ_ONLY, "a copy asked extractable: refused: %s",
	       testmod_ckr(rv));
	rv = f->C_CopyObject(s, priv, to_token, 3, &copy);
	expect(rv == CKR_OK, "the session key copied to the token: %s", testmod_ckr(rv));
	on_members(CKO_PRIVATE_KEY, 0x46, "r-scopy", &n1, &n2);
	expect(n1 == 1 && n2 == 1, "the token copy on m1 and on m2 (%lu, %lu)", n1, n2);
	key_flags("v-m1", CKO_PRIVATE_KEY, 0x46, "r-scopy", f1);
	key_flags("v-m2", CKO_PRIVATE_KEY, 0x46, "r-scopy", f2);
	expect(strcmp(f1, "ftf") == 0 && strcmp(f2, "ftf") == 0,
	       "locked on both: not extractable, wrap with trusted (m1 %s, m2 %s)", f1, f2);
	key_flags("v-m1", CKO_PRIVATE_KEY, 0x45, "r-sess", fs);
	expect(fs[0] == 'f', "the session original locked too: %s", fs);
	expect(ec_sign_verifies(s, copy, pub), "the token copy signs, the public key verifies");
	f->C_CloseSession(s);
	/* Gone through a write_back slot: from both members. */
	s = open_on("ha", 1);
	copy = find_one(s, CKO_PRIVATE_KEY, 0x46, "r-scopy");
	expect(copy != 0 && f->C_DestroyObject(s, copy) == CKR_OK, "the token copy destroyed");
	f->C_CloseSession(s);
}

/* Waits (up to 15 s, valgrind 60 s) until token ("v-m2") holds that object once. */
static int wait_on(const char *token, CK_OBJECT_CLASS cls, CK_BYTE id, const char *label)
{
	double t = now_s();
	CK_ULONG n = 0;

	while (now_s() - t < (quick ? 60 : 15)) {
		CK_SESSION_HANDLE s = open_on(token, 1);

		n = count_on(s, cls, id, label);
		f->C_CloseSession(s);
		if (n == 1)
			return 1;
		msleep(100);
	}
	return 0;
}

/*
 * CKA_END_DATE and a usage flag (type) of that object on one token:
 * "YYYYMMDD/t" ("-" for an empty date, "?" and the code when unreadable).
 * (SoftHSM2 cannot read back a date it was given on a private object: the
 * dates are checked on a public key.)
 */
static void date_flag(const char *token, CK_OBJECT_CLASS cls, CK_BYTE id, const char *label,
		      CK_ATTRIBUTE_TYPE type, char out[16])
{
	CK_SESSION_HANDLE s = open_on(token, 1);
	CK_OBJECT_HANDLE h = find_one(s, cls, id, label);
	char date[8];
	CK_BBOOL b = 9;
	CK_ATTRIBUTE a[] = {{CKA_END_DATE, date, 8}, {type, &b, 1}};
	CK_RV rv = h != 0 ? f->C_GetAttributeValue(s, h, a, 2) : CKR_OBJECT_HANDLE_INVALID;

	snprintf(out, 16, "?%lx", (unsigned long)rv);
	if (rv == CKR_OK && (a[0].ulValueLen == 8 || a[0].ulValueLen == 0))
		snprintf(out, 16, "%.*s/%c", a[0].ulValueLen == 8 ? 8 : 1,
			 a[0].ulValueLen == 8 ? date : "-",
			 b == CK_TRUE ? 't' : b == CK_FALSE ? 'f' : '?');
	f->C_CloseSession(s);
}

/*
 * Attribute changes a member misses (P11P_DEBT_ATTRS): a non-extractable key
 * (locked on both, so no copy can fix m2) renamed twice and its usage
 * changed, and a public key's end date and usage, while m2 is down; m2
 * back: it has the new CKA_ID, label and date (the usage flags as the HSM
 * holds them: 66-replication.sh reads them with pkcs11-tool; through the
 * proxy they are the virtual key's), and the application's handle works on
 * m2 after m1 fails
 * (the re-resolution finds it by its new identity: the same key, the same
 * handle).
 */
static void case_rename(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE h = 0, again = 0, pub = 0, priv = 0;
	CK_BYTE id2 = 0x62;
	CK_BBOOL no = CK_FALSE;
	char date[] = "20301231", flags[4], dd[16], label[16] = "";
	CK_ATTRIBUTE ren1[] = {{CKA_ID, &id2, 1}, {CKA_LABEL, "r-ren2", 6}};
	CK_ATTRIBUTE ren2[] = {{CKA_LABEL, "r-ren3", 6}};
	CK_ATTRIBUTE chg[] = {{CKA_DECRYPT, &no, 1}};
	CK_ATTRIBUTE pchg[] = {{CKA_END_DATE, date, 8}, {CKA_VERIFY, &no, 1}};
	CK_ATTRIBUTE ql = {CKA_LABEL, label, sizeof(label) - 1};
	unsigned char ct[64], pt[16] = "attrs replicate";
	CK_ULONG n1 = 9, n2 = 9, ct_len = sizeof(ct);
	CK_RV rv;

	rv = gen_aes(s, 0x61, "r-ren", CK_FALSE, &h);
	expect(rv == CKR_OK, "a non-extractable AES key through ha: %s", testmod_ckr(rv));
	on_members(CKO_SECRET_KEY, 0x61, "r-ren", &n1, &n2);
	expect(n1 == 1 && n2 == 1, "on both members (%lu, %lu)", n1, n2);
	key_flags("v-m2", CKO_SECRET_KEY, 0x61, "r-ren", flags);
	expect(flags[0] == 'f', "locked on m2 (%s): no copy can bring a change there", flags);
	rv = gen_ec(s, 0x63, "r-pub", CK_FALSE, &pub, &priv);
	on_members(CKO_PUBLIC_KEY, 0x63, "r-pub", &n1, &n2);
	expect(rv == CKR_OK && n1 == 1 && n2 == 1, "an EC pair on both members: %s",
	       testmod_ckr(rv));

	control("m2 fail CKR_DEVICE_ERROR\n");
	rv = f->C_SetAttributeValue(s, h, ren1, 2);
	expect(rv == CKR_OK, "m2 down: renamed (CKA_ID 62, label r-ren2): %s", testmod_ckr(rv));
	rv = f->C_SetAttributeValue(s, h, ren2, 1);
	expect(rv == CKR_OK, "renamed again (label r-ren3): %s", testmod_ckr(rv));
	rv = f->C_SetAttributeValue(s, h, chg, 1);
	expect(rv == CKR_OK, "CKA_DECRYPT false: %s", testmod_ckr(rv));
	rv = f->C_SetAttributeValue(s, pub, pchg, 2);
	expect(rv == CKR_OK, "an EC public key: end date, CKA_VERIFY false: %s", testmod_ckr(rv));
	control("");

	expect(wait_on("v-m2", CKO_SECRET_KEY, 0x62, "r-ren3"),
	       "m2 back: the key has its new CKA_ID and label there");
	on_members(CKO_SECRET_KEY, 0x61, "r-ren", &n1, &n2);
	expect(n1 == 0 && n2 == 0, "the old identity is on neither member (%lu, %lu)", n1, n2);
	on_members(CKO_SECRET_KEY, 0x62, "r-ren2", &n1, &n2);
	expect(n1 == 0 && n2 == 0, "nor the first rename's (%lu, %lu)", n1, n2);
	/* The usage flags as the HSM holds them: 66-replication.sh reads them with pkcs11-tool. */
	date_flag("v-m2", CKO_PUBLIC_KEY, 0x63, "r-pub", CKA_VERIFY, dd);
	expect(strncmp(dd, "20301231/", 9) == 0, "m2: the public key's new end date (%s)", dd);
	date_flag("v-m1", CKO_PUBLIC_KEY, 0x63, "r-pub", CKA_VERIFY, dd);
	expect(strncmp(dd, "20301231/", 9) == 0, "as on m1 (%s)", dd);
	/* m1 fails: the application's handle is the same key on m2. */
	control("m1 fail CKR_DEVICE_ERROR\n");
	rv = aes_cbc(s, h, 1, pt, sizeof(pt), ct, &ct_len);
	expect(rv == CKR_OK, "m1 down: the handle encrypts on m2: %s", testmod_ckr(rv));
	expect(f->C_GetAttributeValue(s, h, &ql, 1) == CKR_OK && strcmp(label, "r-ren3") == 0,
	       "and shows the new label (%s)", label);
	again = find_one(s, CKO_SECRET_KEY, 0x62, "r-ren3");
	expect(again == h, "found by its new identity on m2: the same handle (%lu, %lu)",
	       (unsigned long)again, (unsigned long)h);
	control("");
	msleep(600);
	f->C_CloseSession(s);
}

/* The keys case_rename left (for pkcs11-tool to look at), destroyed through ha. */
static void case_renclean(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE h = find_one(s, CKO_SECRET_KEY, 0x62, "r-ren3");
	CK_OBJECT_HANDLE pub = find_one(s, CKO_PUBLIC_KEY, 0x63, "r-pub");
	CK_OBJECT_HANDLE priv = find_one(s, CKO_PRIVATE_KEY, 0x63, "r-pub");
	CK_ULONG n1 = 9, n2 = 9;

	expect(h != 0 && f->C_DestroyObject(s, h) == CKR_OK && pub != 0 &&
	           f->C_DestroyObject(s, pub) == CKR_OK && priv != 0 &&
	           f->C_DestroyObject(s, priv) == CKR_OK,
	       "r-ren3 and the r-pub pair destroyed");
	on_members(CKO_SECRET_KEY, 0x62, "r-ren3", &n1, &n2);
	expect(n1 == 0 && n2 == 0, "from both members (%lu, %lu)", n1, n2);
	f->C_CloseSession(s);
}

/* Certificates with that id and label on one token (through "v-m1" / "v-m2"). */
static CK_ULONG certs_on(const char *token, CK_BYTE id, const char *label)
{
	CK_SESSION_HANDLE s = open_on(token, 1);
	CK_ULONG n = count_on(s, CKO_CERTIFICATE, id, label);

	f->C_CloseSession(s);
	return n;
}

/*
 * The other direction: m2 comes back with a rename still owed (the
 * application is not logged in, so neither the catch-up nor the probe thread
 * settles it), then m1 fails. The application's handle is found on m2 by
 * its new identity once the owed change is made there: the same object, the
 * same handle, not a different one under the old name.
 */
static void case_renfail(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 0);
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_CERTIFICATE_TYPE ct = CKC_X_509;
	CK_BBOOL yes = CK_TRUE;
	CK_BYTE id = 0x81, value[] = {0x30, 0x03, 0x02, 0x01, 0x01}, subject[] = {0x30, 0x00};
	CK_ATTRIBUTE t[] = {
		{CKA_CLASS, &cls, sizeof(cls)},	  {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
		{CKA_TOKEN, &yes, sizeof(yes)},	  {CKA_ID, &id, 1},
		{CKA_LABEL, "r-cert", 6},	  {CKA_SUBJECT, subject, sizeof(subject)},
		{CKA_VALUE, value, sizeof(value)},
	};
	CK_ATTRIBUTE ren[] = {{CKA_LABEL, "r-cert2", 7}};
	char label[16] = "";
	CK_ATTRIBUTE ql = {CKA_LABEL, label, sizeof(label) - 1};
	CK_OBJECT_HANDLE h = 0, again = 0;
	CK_ULONG n1, n2;
	CK_RV rv;

	rv = f->C_CreateObject(s, t, 7, &h);
	expect(rv == CKR_OK, "a certificate through ha, not logged in: %s", testmod_ckr(rv));
	n1 = certs_on("v-m1", 0x81, "r-cert");
	n2 = certs_on("v-m2", 0x81, "r-cert");
	expect(n1 == 1 && n2 == 1, "on both members (%lu, %lu)", n1, n2);
	control("m2 fail CKR_DEVICE_ERROR\n");
	rv = f->C_SetAttributeValue(s, h, ren, 1);
	expect(rv == CKR_OK, "m2 down: renamed r-cert2: %s", testmod_ckr(rv));
	control("");
	msleep(quick ? 3000 : 1000); /* m2 is up again (probes every 100 ms) */
	n2 = certs_on("v-m2", 0x81, "r-cert");
	expect(n2 == 1, "m2 is back with the old name still (%lu): the change is owed", n2);
	control("m1 fail CKR_DEVICE_ERROR\n");
	rv = f->C_GetAttributeValue(s, h, &ql, 1);
	expect(rv == CKR_OK && strcmp(label, "r-cert2") == 0,
	       "m1 down: the handle reads the new label on m2: %s (%s)", testmod_ckr(rv), label);
	again = find_one(s, CKO_CERTIFICATE, 0x81, "r-cert2");
	expect(again == h, "found by its new identity: the same handle (%lu, %lu)",
	       (unsigned long)again, (unsigned long)h);
	expect(find_one(s, CKO_CERTIFICATE, 0x81, "r-cert") == 0, "nothing under the old one");
	control("");
	msleep(600);
	rv = f->C_DestroyObject(s, h);
	expect(rv == CKR_OK, "destroyed: %s", testmod_ckr(rv));
	n1 = certs_on("v-m1", 0x81, "r-cert2");
	n2 = certs_on("v-m2", 0x81, "r-cert2");
	expect(n1 == 0 && n2 == 0, "from both members (%lu, %lu)", n1, n2);
	f->C_CloseSession(s);
}

/*
 * For `sync --repair` (66-replication.sh): two non-extractable keys, locked
 * on both members, renamed while m2 is down; the process ends before m2 is
 * back (the CONTROL file still fails it): only the store knows.
 */
static void case_renrepair(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE h = 0, g = 0;
	CK_BYTE id2 = 0x72;
	CK_ATTRIBUTE ren[] = {{CKA_ID, &id2, 1}, {CKA_LABEL, "r-rep2", 6}};
	CK_ATTRIBUTE reng[] = {{CKA_LABEL, "r-gone2", 7}};
	CK_ULONG n1 = 9, n2 = 9, g1 = 9, g2 = 9;
	CK_RV rv;

	expect(gen_aes(s, 0x71, "r-rep", CK_FALSE, &h) == CKR_OK &&
	           gen_aes(s, 0x73, "r-gone", CK_FALSE, &g) == CKR_OK,
	       "two non-extractable AES keys through ha");
	on_members(CKO_SECRET_KEY, 0x71, "r-rep", &n1, &n2);
	on_members(CKO_SECRET_KEY, 0x73, "r-gone", &g1, &g2);
	expect(n1 == 1 && n2 == 1 && g1 == 1 && g2 == 1, "on both members");
	control("m2 fail CKR_DEVICE_ERROR\n");
	rv = f->C_SetAttributeValue(s, h, ren, 2);
	expect(rv == CKR_OK, "m2 down: r-rep renamed (CKA_ID 72, r-rep2): %s", testmod_ckr(rv));
	rv = f->C_SetAttributeValue(s, g, reng, 1);
	expect(rv == CKR_OK, "r-gone renamed r-gone2: %s", testmod_ckr(rv));
	f->C_CloseSession(s);
}

/* On one token ("v-m1", "v-m2"): destroy (what "del") or make (else) an AES key id/label. */
static void on_token(const char *token, const char *what, CK_BYTE id, const char *label)
{
	CK_SESSION_HANDLE s = open_on(token, 1);
	CK_OBJECT_HANDLE h = find_one(s, CKO_SECRET_KEY, id, label);

	if (strcmp(what, "del") == 0)
		expect(h != 0 && f->C_DestroyObject(s, h) == CKR_OK, "%s: %s destroyed", token,
		       label);
	else
		expect(gen_aes(s, id, label, CK_FALSE, &h) == CKR_OK, "%s: %s made", token, label);
	f->C_CloseSession(s);
}

/* After the repair: m2 has r-rep under its new identity only. */
static void case_renchk(void)
{
	CK_ULONG n1 = 9, n2 = 9, o1 = 9, o2 = 9;

	on_members(CKO_SECRET_KEY, 0x72, "r-rep2", &n1, &n2);
	on_members(CKO_SECRET_KEY, 0x71, "r-rep", &o1, &o2);
	expect(n1 == 1 && n2 == 1 && o1 == 0 && o2 == 0,
	       "r-rep2 (id 72) on both members (%lu, %lu), r-rep on neither (%lu, %lu)", n1, n2,
	       o1, o2);
}

/* Both renamed keys destroyed through ha. */
static void case_rencleanup(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE h = find_one(s, CKO_SECRET_KEY, 0x72, "r-rep2");
	CK_OBJECT_HANDLE g = find_one(s, CKO_SECRET_KEY, 0x73, "r-gone2");

	expect(h != 0 && f->C_DestroyObject(s, h) == CKR_OK, "r-rep2 destroyed");
	expect(g != 0 && f->C_DestroyObject(s, g) == CKR_OK, "r-gone2 destroyed");
	f->C_CloseSession(s);
}

/* --- debts that must settle (issue 10): 66-replication.sh checks no "not settled yet" --- */

/*
 * A change m2 misses of a key m2 does not hold (destroyed there): the debt
 * is dropped when m2 is back, not retried for ever. Leaves nothing behind.
 */
static void case_attrgone(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE h = 0, h2 = 0;
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE chg = {CKA_ENCRYPT, &no, 1};
	CK_ULONG n1 = 9, n2 = 9;
	CK_RV rv;

	rv = gen_aes(s, 0x91, "r-ag", CK_FALSE, &h);
	on_members(CKO_SECRET_KEY, 0x91, "r-ag", &n1, &n2);
	expect(rv == CKR_OK && n1 == 1 && n2 == 1, "a non-extractable key on both members: %s",
	       testmod_ckr(rv));
	on_token("v-m2", "del", 0x91, "r-ag");
	control("m2 fail CKR_DEVICE_ERROR\n");
	rv = f->C_SetAttributeValue(s, h, &chg, 1);
	expect(rv == CKR_OK, "m2 down: CKA_ENCRYPT false (owed to m2): %s", testmod_ckr(rv));
	/* A copy to m2 fails: m2 is down for the slot, and its return a catch-up. */
	rv = gen_aes(s, 0x94, "r-ag2", CK_TRUE, &h2);
	expect(rv == CKR_OK, "and a key made on m1 only: %s", testmod_ckr(rv));
	control("");
	expect(wait_on("v-m2", CKO_SECRET_KEY, 0x94, "r-ag2"), "m2 back: caught up");
	msleep(quick ? 3000 : 1000); /* every debt tried */
	on_members(CKO_SECRET_KEY, 0x91, "r-ag", &n1, &n2);
	expect(n1 == 1 && n2 == 0, "m2 still does not hold r-ag (%lu, %lu)", n1, n2);
	expect(f->C_DestroyObject(s, h) == CKR_OK && f->C_DestroyObject(s, h2) == CKR_OK,
	       "both destroyed through ha");
	f->C_CloseSession(s);
}

/*
 * For `sync --repair` (66-replication.sh): as attrgone, but the process
 * ends while m2 is down (the CONTROL file still fails it): the repair
 * drops the change as the module would. "agcli-clean" destroys the key.
 */
static void case_agcli(int clean)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE h = find_one(s, CKO_SECRET_KEY, 0x95, "r-agc");
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE chg = {CKA_ENCRYPT, &no, 1};
	CK_ULONG n1 = 9, n2 = 9;
	CK_RV rv;

	if (clean) {
		expect(h != 0 && f->C_DestroyObject(s, h) == CKR_OK, "r-agc destroyed through ha");
		f->C_CloseSession(s);
		return;
	}
	rv = gen_aes(s, 0x95, "r-agc", CK_FALSE, &h);
	on_members(CKO_SECRET_KEY, 0x95, "r-agc", &n1, &n2);
	expect(rv == CKR_OK && n1 == 1 && n2 == 1, "a non-extractable key on both members: %s",
	       testmod_ckr(rv));
	on_token("v-m2", "del", 0x95, "r-agc");
	control("m2 fail CKR_DEVICE_ERROR\n");
	rv = f->C_SetAttributeValue(s, h, &chg, 1);
	expect(rv == CKR_OK, "m2 down: CKA_ENCRYPT false (owed to m2): %s", testmod_ckr(rv));
	f->C_CloseSession(s);
}

/*
 * A lock owed (m2 down when the key was made) and a rename before m2 is
 * back: the copy and the lock follow the rename; m2 back: the key is on
 * both members under its new identity, CKA_EXTRACTABLE false on both.
 */
static void case_lockren(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE h = 0;
	CK_BYTE id2 = 0x93;
	CK_ATTRIBUTE ren[] = {{CKA_ID, &id2, 1}, {CKA_LABEL, "r-lk2", 5}};
	CK_ULONG n1 = 9, n2 = 9;
	char f1[4] = "", f2[4] = "";
	double t;
	CK_RV rv;

	control("m2 fail CKR_DEVICE_ERROR\n");
	rv = gen_aes(s, 0x92, "r-lk", CK_FALSE, &h);
	expect(rv == CKR_OK, "m2 down: a non-extractable key made on m1: %s", testmod_ckr(rv));
	key_flags("v-m1", CKO_SECRET_KEY, 0x92, "r-lk", f1);
	expect(f1[0] == 't', "extractable on m1 until m2 holds it (%s): the lock is owed", f1);
	rv = f->C_SetAttributeValue(s, h, ren, 2);
	expect(rv == CKR_OK, "renamed (CKA_ID 93, r-lk2): %s", testmod_ckr(rv));
	control("");
	t = now_s();
	while (now_s() - t < (quick ? 40 : 10)) {
		key_flags("v-m1", CKO_SECRET_KEY, 0x93, "r-lk2", f1);
		key_flags("v-m2", CKO_SECRET_KEY, 0x93, "r-lk2", f2);
		if (f1[0] == 'f' && f2[0] == 'f')
			break;
		msleep(200);
	}
	on_members(CKO_SECRET_KEY, 0x93, "r-lk2", &n1, &n2);
	expect(n1 == 1 && n2 == 1, "m2 back: the key on both under its new identity (%lu, %lu)",
	       n1, n2);
	expect(f1[0] == 'f' && f2[0] == 'f', "locked on both: CKA_EXTRACTABLE false (m1 %s, m2 %s)",
	       f1, f2);
	on_members(CKO_SECRET_KEY, 0x92, "r-lk", &n1, &n2);
	expect(n1 == 0 && n2 == 0, "the old identity on neither (%lu, %lu)", n1, n2);
	expect(f->C_DestroyObject(s, h) == CKR_OK, "destroyed through ha");
	f->C_CloseSession(s);
}

/*
 * A rename chain A -> B -> C -> A -> D while m2 is down, with an end date
 * set on the way (under C): m2 back: named D, with the date.
 */
static void case_chain(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE pub = 0, priv = 0;
	CK_BYTE ida = 0xa1, idb = 0xa2;
	char date[] = "20351130", dd[16];
	CK_ATTRIBUTE toB[] = {{CKA_ID, &idb, 1}, {CKA_LABEL, "r-cb", 4}};
	CK_ATTRIBUTE toC[] = {{CKA_LABEL, "r-cc", 4}};
	CK_ATTRIBUTE dt[] = {{CKA_END_DATE, date, 8}};
	CK_ATTRIBUTE toA[] = {{CKA_ID, &ida, 1}, {CKA_LABEL, "r-ca", 4}};
	CK_ATTRIBUTE toD[] = {{CKA_LABEL, "r-cd", 4}};
	CK_ULONG n1 = 9, n2 = 9;
	CK_RV rv;

	rv = gen_ec(s, 0xa1, "r-ca", CK_FALSE, &pub, &priv);
	on_members(CKO_PUBLIC_KEY, 0xa1, "r-ca", &n1, &n2);
	expect(rv == CKR_OK && n1 == 1 && n2 == 1, "an EC pair on both members: %s",
	       testmod_ckr(rv));
	control("m2 fail CKR_DEVICE_ERROR\n");
	expect(f->C_SetAttributeValue(s, pub, toB, 2) == CKR_OK &&
	           f->C_SetAttributeValue(s, pub, toC, 1) == CKR_OK &&
	           f->C_SetAttributeValue(s, pub, dt, 1) == CKR_OK &&
	           f->C_SetAttributeValue(s, pub, toA, 2) == CKR_OK &&
	           f->C_SetAttributeValue(s, pub, toD, 1) == CKR_OK,
	       "m2 down: the public key renamed B, C (an end date), A, D");
	control("");
	expect(wait_on("v-m2", CKO_PUBLIC_KEY, 0xa1, "r-cd"), "m2 back: named D (r-cd, id a1)");
	msleep(quick ? 3000 : 1000); /* every debt tried */
	date_flag("v-m2", CKO_PUBLIC_KEY, 0xa1, "r-cd", CKA_VERIFY, dd);
	expect(strncmp(dd, "20351130/", 9) == 0, "with the end date set under C (%s)", dd);
	on_members(CKO_PUBLIC_KEY, 0xa2, "r-cb", &n1, &n2);
	expect(n1 == 0 && n2 == 0, "no B (%lu, %lu)", n1, n2);
	on_members(CKO_PUBLIC_KEY, 0xa1, "r-ca", &n1, &n2);
	expect(n1 == 0 && n2 == 0, "no A (%lu, %lu)", n1, n2);
	expect(f->C_DestroyObject(s, pub) == CKR_OK && f->C_DestroyObject(s, priv) == CKR_OK,
	       "the pair destroyed through ha");
	on_members(CKO_PUBLIC_KEY, 0xa1, "r-cd", &n1, &n2);
	expect(n1 == 0 && n2 == 0, "from both members (%lu, %lu)", n1, n2);
	f->C_CloseSession(s);
}

/*
 * For `sync --repair` (66-replication.sh), a change owed to m2 whose object
 * m2 holds renamed already: step 0, an EC public key renamed (CKA_ID b2,
 * r-rb) and given an end date while m2 is down, the process gone before m2
 * is back; step 1, the same rename made on m2 directly (a tool); step 2,
 * after the repair: m2 has the end date too; the pair destroyed through ha.
 * Step 3 instead of the repair: this process's module settles it (the probe
 * thread's pass over the store's debts), then as step 2.
 */
static void case_raready(int step)
{
	CK_SESSION_HANDLE s = open_on(step == 1 ? "v-m2" : "ha", 1);
	CK_OBJECT_HANDLE pub = 0, priv = 0;
	CK_BYTE idb = 0xb2;
	char date[] = "20361015", dd[16];
	CK_ATTRIBUTE ren[] = {{CKA_ID, &idb, 1}, {CKA_LABEL, "r-rb", 4}};
	CK_ATTRIBUTE dt[] = {{CKA_END_DATE, date, 8}};
	CK_ULONG n1 = 9, n2 = 9;
	CK_RV rv;

	if (step == 0) {
		rv = gen_ec(s, 0xb1, "r-ra", CK_FALSE, &pub, &priv);
		on_members(CKO_PUBLIC_KEY, 0xb1, "r-ra", &n1, &n2);
		expect(rv == CKR_OK && n1 == 1 && n2 == 1, "an EC pair on both members: %s",
		       testmod_ckr(rv));
		control("m2 fail CKR_DEVICE_ERROR\n");
		expect(f->C_SetAttributeValue(s, pub, ren, 2) == CKR_OK &&
		           f->C_SetAttributeValue(s, pub, dt, 1) == CKR_OK,
		       "m2 down: the public key renamed (b2, r-rb), then an end date");
	} else if (step == 1) {
		pub = find_one(s, CKO_PUBLIC_KEY, 0xb1, "r-ra");
		expect(pub != 0 && f->C_SetAttributeValue(s, pub, ren, 2) == CKR_OK,
		       "v-m2: the same rename made on m2 directly");
	} else {
		double t0 = now_s();

		/* Step 3: the probe thread settles the store's debts every 5 s. */
		date_flag("v-m2", CKO_PUBLIC_KEY, 0xb2, "r-rb", CKA_VERIFY, dd);
		while (step == 3 && now_s() - t0 < (quick ? 60 : 20) &&
		       strncmp(dd, "20361015/", 9) != 0) {
			msleep(200);
			date_flag("v-m2", CKO_PUBLIC_KEY, 0xb2, "r-rb", CKA_VERIFY, dd);
		}
		expect(strncmp(dd, "20361015/", 9) == 0, "m2: the end date as well (%s)", dd);
		pub = find_one(s, CKO_PUBLIC_KEY, 0xb2, "r-rb");
		priv = find_one(s, CKO_PRIVATE_KEY, 0xb1, "r-ra");
		expect(pub != 0 && priv != 0 && f->C_DestroyObject(s, pub) == CKR_OK &&
		           f->C_DestroyObject(s, priv) == CKR_OK,
		       "the pair destroyed through ha");
	}
	f->C_CloseSession(s);
}

/* Data objects with that label on one token ("v-m1", "v-m2"). */
static CK_ULONG data_on(const char *token, const char *label)
{
	CK_SESSION_HANDLE s = open_on(token, 1);
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
			    {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;

	if (f->C_FindObjectsInit(s, t, 2) == CKR_OK) {
		f->C_FindObjects(s, h, 2, &n);
		f->C_FindObjectsFinal(s);
	}
	f->C_CloseSession(s);
	return n;
}

/*
 * A data object (no CKA_ID) renamed while m2 is down: m2 back gets the new
 * label; then m1 fails and the application's handle is the object on m2.
 */
static void case_dataren(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL yes = CK_TRUE;
	CK_BYTE value[] = "replicated data";
	CK_ATTRIBUTE t[] = {
		{CKA_CLASS, &cls, sizeof(cls)},	 {CKA_TOKEN, &yes, sizeof(yes)},
		{CKA_PRIVATE, &yes, sizeof(yes)}, {CKA_LABEL, "r-data", 6},
		{CKA_APPLICATION, "repltest", 8}, {CKA_VALUE, value, sizeof(value)},
	};
	CK_ATTRIBUTE ren = {CKA_LABEL, "r-data2", 7};
	char label[16] = "";
	CK_ATTRIBUTE ql = {CKA_LABEL, label, sizeof(label) - 1};
	CK_OBJECT_HANDLE h = 0;
	double t0;
	CK_RV rv;

	rv = f->C_CreateObject(s, t, 6, &h);
	expect(rv == CKR_OK && data_on("v-m1", "r-data") == 1 && data_on("v-m2", "r-data") == 1,
	       "a data object through ha, on both members: %s", testmod_ckr(rv));
	control("m2 fail CKR_DEVICE_ERROR\n");
	rv = f->C_SetAttributeValue(s, h, &ren, 1);
	expect(rv == CKR_OK, "m2 down: renamed r-data2: %s", testmod_ckr(rv));
	control("");
	t0 = now_s();
	while (now_s() - t0 < (quick ? 40 : 10) && data_on("v-m2", "r-data2") != 1)
		msleep(100);
	expect(data_on("v-m2", "r-data2") == 1 && data_on("v-m2", "r-data") == 0,
	       "m2 back: the new label there, the old one gone");
	control("m1 fail CKR_DEVICE_ERROR\n");
	rv = f->C_GetAttributeValue(s, h, &ql, 1);
	expect(rv == CKR_OK && strcmp(label, "r-data2") == 0,
	       "m1 down: the handle is the object on m2: %s (%s)", testmod_ckr(rv), label);
	control("");
	msleep(600);
	rv = f->C_DestroyObject(s, h);
	expect(rv == CKR_OK && data_on("v-m1", "r-data2") == 0 && data_on("v-m2", "r-data2") == 0,
	       "destroyed through ha, on both members: %s", testmod_ckr(rv));
	f->C_CloseSession(s);
}

/* Private keys with that id whose CKA_EXTRACTABLE is extr, found on session s: how many. */
static CK_ULONG count_extr(CK_SESSION_HANDLE s, CK_BYTE id, CK_BBOOL extr, CK_OBJECT_HANDLE *h)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
			    {CKA_EXTRACTABLE, &extr, sizeof(extr)},
			    {CKA_ID, &id, 1}};
	CK_OBJECT_HANDLE found[2] = {0, 0};
	CK_ULONG n = 0;

	if (f->C_FindObjectsInit(s, t, 3) != CKR_OK)
		return 99;
	f->C_FindObjects(s, found, 2, &n);
	f->C_FindObjectsFinal(s);
	if (h != NULL)
		*h = found[0];
	return n;
}

/*
 * A session key asked non-extractable on a replicating slot is made
 * copyable under trusted keys (the member holds it extractable) but shows
 * CKA_EXTRACTABLE false: finds agree with what C_GetAttributeValue shows.
 */
static void case_sessfind(void)
{
	CK_SESSION_HANDLE s = open_on("dflt", 1);
	CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE, extr = 9;
	CK_BYTE id = 0x48, xid = 0x49;
	CK_ATTRIBUTE tpub[] = {
		{CKA_TOKEN, &no, sizeof(no)},	{CKA_ID, &id, 1},
		{CKA_LABEL, "r-sfind", 7},	{CKA_VERIFY, &yes, sizeof(yes)},
		{CKA_EC_PARAMS, (void *)p256, sizeof(p256)},
	};
	CK_ATTRIBUTE tpriv[] = {
		{CKA_TOKEN, &no, sizeof(no)},	{CKA_PRIVATE, &yes, sizeof(yes)},
		{CKA_ID, &id, 1},		{CKA_LABEL, "r-sfind", 7},
		{CKA_SIGN, &yes, sizeof(yes)},	{CKA_SENSITIVE, &yes, sizeof(yes)},
		{CKA_EXTRACTABLE, &no, sizeof(no)},
	};
	CK_ATTRIBUTE q = {CKA_EXTRACTABLE, &extr, sizeof(extr)};
	CK_OBJECT_HANDLE pub = 0, priv = 0, xpub = 0, xpriv = 0, h = 0;
	char fs[4];
	CK_ULONG n;
	CK_RV rv;

	rv = f->C_GenerateKeyPair(s, &m, tpub, 5, tpriv, 7, &pub, &priv);
	expect(rv == CKR_OK, "EC session pair, non-extractable, through dflt: %s", testmod_ckr(rv));
	key_flags("v-m1", CKO_PRIVATE_KEY, 0x48, "r-sfind", fs);
	expect(fs[0] == 't', "the member holds it extractable (%s)", fs);
	expect(f->C_GetAttributeValue(s, priv, &q, 1) == CKR_OK && extr == CK_FALSE,
	       "it shows CKA_EXTRACTABLE false");
	n = count_extr(s, 0x48, CK_FALSE, &h);
	expect(n == 1 && h == priv, "a find for CKA_EXTRACTABLE false finds it (%lu)", n);
	n = count_extr(s, 0x48, CK_TRUE, NULL);
	expect(n == 0, "a find for CKA_EXTRACTABLE true does not (%lu)", n);
	/* A key asked extractable is found as it is. */
	tpub[1].pValue = tpriv[2].pValue = &xid;
	tpriv[6].pValue = &yes;
	rv = f->C_GenerateKeyPair(s, &m, tpub, 5, tpriv, 7, &xpub, &xpriv);
	expect(rv == CKR_OK, "an extractable one: %s", testmod_ckr(rv));
	n = count_extr(s, 0x49, CK_TRUE, &h);
	expect(n == 1 && h == xpriv, "found for CKA_EXTRACTABLE true (%lu)", n);
	n = count_extr(s, 0x49, CK_FALSE, NULL);
	expect(n == 0, "not for false (%lu)", n);
	f->C_CloseSession(s);
}

static void case_cleanup(void)
{
	CK_SESSION_HANDLE s = open_on("v-m1", 1);
	CK_OBJECT_HANDLE h = find_one(s, CKO_SECRET_KEY, 0x21, "r-single");

	expect(h != 0 && f->C_DestroyObject(s, h) == CKR_OK, "single-member key destroyed");
	f->C_CloseSession(s);
}

int main(int argc, char **argv)
{
	const char *c;

	if (argc < 5) {
		fprintf(stderr, "usage: repltest MODULE CONTROL LOG CASE [quick]\n");
		return 2;
	}
	control_path = argv[2];
	log_path = argv[3];
	c = argv[4];
	quick = argc > 5 && strcmp(argv[5], "quick") == 0;
	control("");
	if (!testmod_load(&mod, argv[1]))
		return 1;
	f = mod.f;
	if (strcmp(c, "setup") == 0)
		setup_repl_key();
	else if (strcmp(c, "copy") == 0)
		case_copy();
	else if (strcmp(c, "refuse") == 0)
		case_refuse();
	else if (strcmp(c, "single") == 0)
		case_single();
	else if (strcmp(c, "catchup") == 0)
		case_catchup();
	else if (strcmp(c, "cleanup") == 0)
		case_cleanup();
	else if (strcmp(c, "modes") == 0)
		case_modes();
	else if (strcmp(c, "destroy") == 0)
		case_destroy();
	else if (strcmp(c, "naming") == 0)
		case_naming();
	else if (strcmp(c, "sesscopy") == 0)
		case_sesscopy();
	else if (strcmp(c, "sessfind") == 0)
		case_sessfind();
	else if (strcmp(c, "rename") == 0)
		case_rename();
	else if (strcmp(c, "renfail") == 0)
		case_renfail();
	else if (strcmp(c, "renclean") == 0)
		case_renclean();
	else if (strcmp(c, "renrepair") == 0)
		case_renrepair();
	else if (strcmp(c, "renchk") == 0)
		case_renchk();
	else if (strcmp(c, "rencleanup") == 0)
		case_rencleanup();
	else if (strcmp(c, "gone-del") == 0)
		on_token("v-m2", "del", 0x73, "r-gone");
	else if (strcmp(c, "attrgone") == 0)
		case_attrgone();
	else if (strcmp(c, "agcli") == 0)
		case_agcli(0);
	else if (strcmp(c, "agcli-clean") == 0)
		case_agcli(1);
	else if (strcmp(c, "raready") == 0)
		case_raready(0);
	else if (strcmp(c, "raready-m2") == 0)
		case_raready(1);
	else if (strcmp(c, "raready-chk") == 0)
		case_raready(2);
	else if (strcmp(c, "raready-mod") == 0)
		case_raready(3);
	else if (strcmp(c, "lockren") == 0)
		case_lockren();
	else if (strcmp(c, "chain") == 0)
		case_chain();
	else if (strcmp(c, "dataren") == 0)
		case_dataren();
	else if (strcmp(c, "gone-make") == 0)
		on_token("v-m2", "make", 0x73, "r-gone2");

	else {
		fprintf(stderr, "unknown case %s\n", c);
		return 2;
	}
	testmod_unload(&mod);
	return checks_verdict();
}
