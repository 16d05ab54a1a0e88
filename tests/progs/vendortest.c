/*
 * The vendor mechanisms of p11proxy.h through libproxy.so over the shim.
 *   vendortest MODULE CONTROL LOG CASE [ARGS]
 * The config (tests/suites/58-vendor.sh): slots "v-f1" (token f1, nothing
 * configured), "frag" (f1, member PIN, fragments file, entropy mix/fail),
 * "frag-nopin" (the same without member PIN), "ent-os" (mix/os_only),
 * "ent-hsm" (hsm/fail), "pair" (m1 + m2, member PINs, a fragment whose HSM
 * key differs between them), "v-m1", "v-m2". Prints "ok ..." / "FAIL ...";
 * exit 1 on failure.
 */
#include "../tests/progs/testmod.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <p11proxy.h>
#include <sys/wait.h>

#include "shimctl.h"

#define P11P_TEST_BOGUS_HANDLE 0x4f00fffeUL
#define EXPECT_RV(rv, want, what)                                                                  \
	expect((rv) == (want), "%s: %s (want %s)", what, testmod_ckr(rv), testmod_ckr(want))

/* The HSM key of the configured fragments, and the fragments' value (58-vendor.sh). */
static const unsigned char cf_key[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char frag_value[32] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
					     0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
					     0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
					     0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f};

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

static int unhex(const char *s, unsigned char *out, size_t max)
{
	size_t n = strlen(s) / 2;

	if (n > max)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (sscanf(s + 2 * i, "%2hhx", &out[i]) != 1)
			return -1;
	return (int)n;
}

/* HKDF-SHA256 with OpenSSL: the reference. */
static int ref_hkdf(const unsigned char *salt, size_t salt_len, const unsigned char *ikm,
		    size_t ikm_len, const unsigned char *info, size_t info_len, unsigned char *okm,
		    size_t okm_len)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
	OSSL_PARAM p[] = {
	    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
	    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len),
	    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len),
	    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len),
	    OSSL_PARAM_END,
	};
	int ok = kc != NULL && EVP_KDF_derive(kc, okm, okm_len, p) == 1;

	EVP_KDF_CTX_free(kc);
	EVP_KDF_free(kdf);
	return ok;
}

static int ref_hmac(const unsigned char *key, size_t key_len, const unsigned char *in, size_t len,
		    unsigned char out[32])
{
	size_t olen = 32;

	return EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, in, len, out, 32,
			 &olen) != NULL &&
	       olen == 32;
}

static int ref_gcm(const unsigned char *key, const unsigned char *iv, size_t iv_len,
		   const unsigned char *aad, size_t aad_len, const unsigned char *in, size_t len,
		   unsigned char *out)
{
	EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
	int l = 0, ok;

	ok = cc != NULL && EVP_EncryptInit_ex(cc, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	     EVP_CIPHER_CTX_ctrl(cc, EVP_CTRL_GCM_SET_IVLEN, (int)iv_len, NULL) == 1 &&
	     EVP_EncryptInit_ex(cc, NULL, NULL, key, iv) == 1 &&
	     EVP_EncryptUpdate(cc, NULL, &l, aad, (int)aad_len) == 1 &&
	     EVP_EncryptUpdate(cc, out, &l, in, (int)len) == 1 &&
	     EVP_EncryptFinal_ex(cc, out + l, &l) == 1 &&
	     EVP_CIPHER_CTX_ctrl(cc, EVP_CTRL_GCM_GET_TAG, 16, out + len) == 1;
	EVP_CIPHER_CTX_free(cc);
	return ok;
}

/* A token secret key for HMAC with a known value (through a single-member slot). */
static CK_OBJECT_HANDLE import_hmac_key(CK_SESSION_HANDLE s, const char *label,
					const unsigned char *val, size_t len, CK_BBOOL token)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_TOKEN, &token, 1},             {CKA_SIGN, &yes, 1},
	    {CKA_VERIFY, &yes, 1},              {CKA_SENSITIVE, &yes, 1},
	    {CKA_LABEL, (void *)label, strlen(label)}, {CKA_VALUE, (void *)val, len},
	};
	CK_OBJECT_HANDLE h = 0;
	CK_RV rv = f->C_CreateObject(s, t, 8, &h);

	EXPECT_RV(rv, CKR_OK, "import the HMAC key");
	return h;
}

static CK_OBJECT_HANDLE find_label(CK_SESSION_HANDLE s, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
			    {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h[4] = {0};
	CK_ULONG n = 0;

	if (f->C_FindObjectsInit(s, t, 2) != CKR_OK)
		return 0;
	f->C_FindObjects(s, h, 4, &n);
	f->C_FindObjectsFinal(s);
	return n == 1 ? h[0] : 0;
}

/* Derives a key; rv returned, handle in *out. */
static CK_RV derive(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE base, const unsigned char *ikm,
		    size_t ikm_len, const unsigned char *info, size_t info_len, CK_KEY_TYPE kt,
		    CK_ULONG len, CK_BBOOL sensitive, CK_BBOOL extractable, CK_OBJECT_HANDLE *out)
{
	P11PROXY_FRAGMENT_DERIVE_PARAMS p = {(CK_BYTE_PTR)ikm, ikm_len, (CK_BYTE_PTR)info,
					     info_len};
	CK_MECHANISM m = {CKM_P11PROXY_FRAGMENT_DERIVE, &p, sizeof(p)};
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_SENSITIVE, &sensitive, 1},
	    {CKA_EXTRACTABLE, &extractable, 1}, {CKA_LABEL, "derived", 7},
	};

	*out = 0;
	return f->C_DeriveKey(s, &m, base, t, 6, out);
}

/* ---- cases ---- */

static void case_setup(void)
{
	CK_SESSION_HANDLE s = open_on("v-f1", 1);
	unsigned char other[32];

	import_hmac_key(s, "cf-key", cf_key, 32, CK_TRUE);
	f->C_CloseSession(s);
	s = open_on("v-m1", 1);
	import_hmac_key(s, "pair-key", cf_key, 32, CK_TRUE);
	f->C_CloseSession(s);
	memcpy(other, cf_key, 32);
	other[0] ^= 1;
	s = open_on("v-m2", 1);
	import_hmac_key(s, "pair-key", other, 32, CK_TRUE);
	f->C_CloseSession(s);
}

static void case_mech(void)
{
	CK_SLOT_ID slot;
	CK_MECHANISM_TYPE list[512];
	CK_ULONG n = 512, n2 = 0;
	CK_MECHANISM_INFO mi;
	int derive_seen = 0, gen_seen = 0;
	CK_RV rv;

	if (!testmod_find_token(&mod, "v-f1", &slot)) {
		expect(0, "find v-f1");
		return;
	}
	rv = f->C_GetMechanismList(slot, NULL, &n2);
	EXPECT_RV(rv, CKR_OK, "mechanism list size");
	rv = f->C_GetMechanismList(slot, list, &n);
	EXPECT_RV(rv, CKR_OK, "mechanism list");
	expect(n == n2, "size query and list agree (%lu, %lu)", n, n2);
	for (CK_ULONG i = 0; i < n; i++) {
		derive_seen += list[i] == CKM_P11PROXY_FRAGMENT_DERIVE;
		gen_seen += list[i] == CKM_P11PROXY_MIXED_KEY_GEN;
	}
	expect(derive_seen == 1, "CKM_P11PROXY_FRAGMENT_DERIVE listed once");
	expect(gen_seen == 1, "CKM_P11PROXY_MIXED_KEY_GEN listed once");
	n2 = n - 1;
	rv = f->C_GetMechanismList(slot, list, &n2);
	expect(rv == CKR_BUFFER_TOO_SMALL && n2 == n, "short buffer: CKR_BUFFER_TOO_SMALL, count");
	rv = f->C_GetMechanismInfo(slot, CKM_P11PROXY_FRAGMENT_DERIVE, &mi);
	expect(rv == CKR_OK && mi.flags == CKF_DERIVE, "derive info: CKF_DERIVE (%s)",
	       testmod_ckr(rv));
	rv = f->C_GetMechanismInfo(slot, CKM_P11PROXY_MIXED_KEY_GEN, &mi);
	expect(rv == CKR_OK && mi.flags == CKF_GENERATE && mi.ulMinKeySize <= 16 &&
		   mi.ulMaxKeySize >= 32,
	       "keygen info: CKF_GENERATE, sizes %lu..%lu", mi.ulMinKeySize, mi.ulMaxKeySize);
	rv = f->C_GetMechanismInfo(slot, CKM_VENDOR_DEFINED + P11PROXY_VENDOR_BASE + 0x7f, &mi);
	EXPECT_RV(rv, CKR_MECHANISM_INVALID, "an unknown vendor mechanism");
}

/* RFC 5869 A.1 and A.2 through the proxy: the salt as the HSM key. */
static void case_rfc(void)
{
	static const struct {
		const char *ikm, *salt, *info, *okm;
	} tc[] = {
	    {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "000102030405060708090a0b0c",
	     "f0f1f2f3f4f5f6f7f8f9",
	     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"},
	    {"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	     "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
	     "404142434445464748494a4b4c4d4e4f",
	     "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
	     "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
	     "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
	     "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
	     "d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef"
	     "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
	     "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
	     "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
	     "cc30c58179ec3e87c14c01d5c1f3434f1d87"},
	};
	CK_SESSION_HANDLE s = open_on("v-f1", 1);

	for (size_t i = 0; i < 2; i++) {
		unsigned char ikm[128], salt[128], info[128], okm[128], got[128];
		int ikm_len = unhex(tc[i].ikm, ikm, sizeof(ikm));
		int salt_len = unhex(tc[i].salt, salt, sizeof(salt));
		int info_len = unhex(tc[i].info, info, sizeof(info));
		int okm_len = unhex(tc[i].okm, okm, sizeof(okm));
		CK_OBJECT_HANDLE hk, dk;
		CK_ATTRIBUTE a = {CKA_VALUE, got, sizeof(got)};
		size_t key_len = (size_t)salt_len;
		CK_RV rv;

		/*
		 * SoftHSM2 refuses HMAC keys shorter than 32 bytes; HMAC pads a short key
		 * with zero bytes to the block size (RFC 2104), so the 13-byte salt of
		 * A.1 padded with zeros to 32 bytes is the same HMAC key.
		 */
		if (key_len < 32) {
			memset(salt + key_len, 0, 32 - key_len);
			key_len = 32;
		}
		hk = import_hmac_key(s, "rfc-salt", salt, key_len, CK_FALSE);
		rv = derive(s, hk, ikm, (size_t)ikm_len, info, (size_t)info_len,
			    CKK_GENERIC_SECRET, (CK_ULONG)okm_len, CK_FALSE, CK_TRUE, &dk);
		EXPECT_RV(rv, CKR_OK, "RFC 5869 derive");
		rv = f->C_GetAttributeValue(s, dk, &a, 1);
		expect(rv == CKR_OK && a.ulValueLen == (CK_ULONG)okm_len &&
			   memcmp(got, okm, (size_t)okm_len) == 0,
		       "RFC 5869 A.%zu: OKM (%lu bytes) matches", i + 1, a.ulValueLen);
		f->C_DestroyObject(s, dk);
		f->C_DestroyObject(s, hk);
	}
	f->C_CloseSession(s);
}

static CK_ULONG get_ulong(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t)
{
	CK_ULONG v = 0xdead;
	CK_ATTRIBUTE a = {t, &v, sizeof(v)};

	f->C_GetAttributeValue(s, h, &a, 1);
	return v;
}

static int get_bool(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t)
{
	CK_BBOOL v = 0xff;
	CK_ATTRIBUTE a = {t, &v, 1};

	if (f->C_GetAttributeValue(s, h, &a, 1) != CKR_OK)
		return -1;
	return v;
}

/* GCM encrypt through the proxy, single- or multi-part; the ciphertext||tag in out. */
static CK_RV gcm(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, int enc, int multi,
		 const unsigned char *iv, const unsigned char *in, CK_ULONG len, unsigned char *out,
		 CK_ULONG *out_len)
{
	CK_GCM_PARAMS gp = {(CK_BYTE_PTR)iv, 12, 96, (CK_BYTE_PTR) "aad", 3, 128};
	CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};
	CK_ULONG n, total = 0, cap = *out_len;
	CK_RV rv = enc ? f->C_EncryptInit(s, &m, k) : f->C_DecryptInit(s, &m, k);

	if (rv != CKR_OK)
		return rv;
	if (!multi)
		return enc ? f->C_Encrypt(s, (CK_BYTE_PTR)in, len, out, out_len)
			   : f->C_Decrypt(s, (CK_BYTE_PTR)in, len, out, out_len);
	for (CK_ULONG off = 0; off < len; off += 100) {
		CK_ULONG part = len - off < 100 ? len - off : 100;

		n = cap - total;
		rv = enc ? f->C_EncryptUpdate(s, (CK_BYTE_PTR)in + off, part, out + total, &n)
			 : f->C_DecryptUpdate(s, (CK_BYTE_PTR)in + off, part, out + total, &n);
		if (rv != CKR_OK)
			return rv;
		total += n;
	}
	n = cap - total;
	rv = enc ? f->C_EncryptFinal(s, out + total, &n) : f->C_DecryptFinal(s, out + total, &n);
	*out_len = total + n;
	return rv;
}

static CK_RV hmac(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, const unsigned char *in, CK_ULONG len,
		  unsigned char out[32])
{
	CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
	CK_ULONG n = 32;
	CK_RV rv = f->C_SignInit(s, &m, k);

	return rv == CKR_OK ? f->C_Sign(s, (CK_BYTE_PTR)in, len, out, &n) : rv;
}

/* Derived AES key: GCM and HMAC against OpenSSL, attributes, sensitivity, lifetime. */
static void case_derived(void)
{
	CK_SESSION_HANDLE s = open_on("v-f1", 1), s2;
	CK_OBJECT_HANDLE base = find_label(s, "cf-key"), k, ks, k2;
	unsigned char value[32], data[1000], ct[1100], ct2[1100], pt[1100], ref[1100], mac[32],
	    mac_ref[32], iv[12] = "iv-iv-iv-iv";
	CK_ATTRIBUTE a = {CKA_VALUE, value, sizeof(value)};
	CK_ULONG n;
	CK_RV rv;

	expect(base != 0, "the HSM key cf-key is found");
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7);
	rv = derive(s, base, (const unsigned char *)"fragment", 8, (const unsigned char *)"ctx", 3,
		    CKK_AES, 32, CK_FALSE, CK_TRUE, &k);
	EXPECT_RV(rv, CKR_OK, "derive an extractable AES-256 key");
	rv = f->C_GetAttributeValue(s, k, &a, 1);
	EXPECT_RV(rv, CKR_OK, "its CKA_VALUE is readable");
	ref_hkdf(cf_key, 32, (const unsigned char *)"fragment", 8, (const unsigned char *)"ctx", 3,
		 ref, 32);
	expect(a.ulValueLen == 32 && memcmp(value, ref, 32) == 0,
	       "value = HKDF-SHA256(salt = HSM key, IKM = fragment, info)");
	expect(get_bool(s, k, CKA_LOCAL) == 0 && get_bool(s, k, CKA_TOKEN) == 0 &&
		   get_bool(s, k, CKA_ALWAYS_SENSITIVE) == 0 &&
		   get_bool(s, k, CKA_NEVER_EXTRACTABLE) == 0,
	       "LOCAL, TOKEN, ALWAYS_SENSITIVE, NEVER_EXTRACTABLE false");
	expect(get_ulong(s, k, CKA_KEY_TYPE) == CKK_AES && get_ulong(s, k, CKA_VALUE_LEN) == 32 &&
		   get_ulong(s, k, CKA_CLASS) == CKO_SECRET_KEY &&
		   get_ulong(s, k, CKA_P11PROXY_FRAGMENT_MODE) == P11PROXY_FRAGMENT_DERIVED,
	       "class, key type, length, fragment mode");

	/* GCM single-part, multi-part, against OpenSSL; decrypt; a bad tag. */
	n = sizeof(ct);
	rv = gcm(s, k, 1, 0, iv, data, sizeof(data), ct, &n);
	ref_gcm(value, iv, 12, (const unsigned char *)"aad", 3, data, sizeof(data), ref);
	expect(rv == CKR_OK && n == sizeof(data) + 16 && memcmp(ct, ref, n) == 0,
	       "AES-GCM single-part equals OpenSSL (%s)", testmod_ckr(rv));
	n = sizeof(ct2);
	rv = gcm(s, k, 1, 1, iv, data, sizeof(data), ct2, &n);
	expect(rv == CKR_OK && n == sizeof(data) + 16 && memcmp(ct2, ref, n) == 0,
	       "AES-GCM multi-part equals OpenSSL (%s)", testmod_ckr(rv));
	n = sizeof(pt);
	rv = gcm(s, k, 0, 1, iv, ct, sizeof(data) + 16, pt, &n);
	expect(rv == CKR_OK && n == sizeof(data) && memcmp(pt, data, n) == 0,
	       "AES-GCM multi-part decrypt (%s)", testmod_ckr(rv));
	ct[5] ^= 1;
	n = sizeof(pt);
	rv = gcm(s, k, 0, 0, iv, ct, sizeof(data) + 16, pt, &n);
	EXPECT_RV(rv, CKR_ENCRYPTED_DATA_INVALID, "a changed ciphertext is refused");
	/* Size query and short buffer keep the operation; then it completes. */
	{
		CK_GCM_PARAMS gp = {iv, 12, 96, (CK_BYTE_PTR) "aad", 3, 128};
		CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};

		f->C_EncryptInit(s, &m, k);
		n = 0;
		rv = f->C_Encrypt(s, data, 10, NULL, &n);
		expect(rv == CKR_OK && n == 26, "size query: 26 bytes (%s, %lu)", testmod_ckr(rv),
		       n);
		n = 5;
		rv = f->C_Encrypt(s, data, 10, ct, &n);
		EXPECT_RV(rv, CKR_BUFFER_TOO_SMALL, "short buffer");
		n = sizeof(ct);
		rv = f->C_Encrypt(s, data, 10, ct, &n);
		expect(rv == CKR_OK && n == 26, "then the operation completes");
		rv = f->C_Encrypt(s, data, 10, ct, &n);
		EXPECT_RV(rv, CKR_OPERATION_NOT_INITIALIZED, "and is over");
	}
	/* HMAC sign / verify. */
	rv = hmac(s, k, data, sizeof(data), mac);
	ref_hmac(value, 32, data, sizeof(data), mac_ref);
	expect(rv == CKR_OK && memcmp(mac, mac_ref, 32) == 0, "HMAC-SHA256 equals OpenSSL (%s)",
	       testmod_ckr(rv));
	{
		CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};

		f->C_VerifyInit(s, &m, k);
		f->C_VerifyUpdate(s, data, 500);
		f->C_VerifyUpdate(s, data + 500, 500);
		rv = f->C_VerifyFinal(s, mac, 32);
		EXPECT_RV(rv, CKR_OK, "multi-part verify");
		mac[0] ^= 1;
		f->C_VerifyInit(s, &m, k);
		rv = f->C_Verify(s, data, sizeof(data), mac, 32);
		EXPECT_RV(rv, CKR_SIGNATURE_INVALID, "a wrong MAC");
	}

	/* A sensitive key: nothing to read; the flags say so. */
	rv = derive(s, base, (const unsigned char *)"fragment", 8, NULL, 0, CKK_AES, 16, CK_TRUE,
		    CK_TRUE, &ks);
	EXPECT_RV(rv, CKR_OK, "derive a sensitive AES-128 key");
	a.ulValueLen = sizeof(value);
	rv = f->C_GetAttributeValue(s, ks, &a, 1);
	expect(rv == CKR_ATTRIBUTE_SENSITIVE && a.ulValueLen == CK_UNAVAILABLE_INFORMATION,
	       "sensitive: CKR_ATTRIBUTE_SENSITIVE (%s)", testmod_ckr(rv));
	/* PKCS#11: ALWAYS_SENSITIVE only if the base key always was; an imported one never was. */
	expect(get_bool(s, ks, CKA_SENSITIVE) == 1 && get_bool(s, ks, CKA_ALWAYS_SENSITIVE) == 0 &&
		   get_bool(s, ks, CKA_NEVER_EXTRACTABLE) == 0,
	       "SENSITIVE; not ALWAYS_SENSITIVE, as the imported HSM key was not");
	{
		CK_ATTRIBUTE t[2] = {{CKA_VALUE_LEN, NULL, 0}, {0x7ffffffUL, NULL, 0}};

		rv = f->C_GetAttributeValue(s, ks, t, 2);
		expect(rv == CKR_ATTRIBUTE_TYPE_INVALID && t[0].ulValueLen == sizeof(CK_ULONG) &&
			   t[1].ulValueLen == CK_UNAVAILABLE_INFORMATION,
		       "size query with an unknown attribute (%s)", testmod_ckr(rv));
	}
	/* Default: sensitive, not extractable. */
	{
		P11PROXY_FRAGMENT_DERIVE_PARAMS p = {(CK_BYTE_PTR) "x", 1, NULL, 0};
		CK_MECHANISM m = {CKM_P11PROXY_FRAGMENT_DERIVE, &p, sizeof(p)};
		CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
		CK_ULONG len = 20;
		CK_ATTRIBUTE t[] = {{CKA_KEY_TYPE, &kt, sizeof(kt)}, {CKA_VALUE_LEN, &len, sizeof(len)},
				    {CKA_ENCRYPT, &no, 1}};
		CK_GCM_PARAMS gp = {iv, 12, 96, NULL, 0, 128};
		CK_MECHANISM gm = {CKM_AES_GCM, &gp, sizeof(gp)};

		rv = f->C_DeriveKey(s, &m, base, t, 3, &k2);
		EXPECT_RV(rv, CKR_OK, "derive with a minimal template");
		expect(get_bool(s, k2, CKA_SENSITIVE) == 1 && get_bool(s, k2, CKA_EXTRACTABLE) == 0,
		       "defaults: sensitive, not extractable");
		rv = f->C_EncryptInit(s, &gm, k2);
		EXPECT_RV(rv, CKR_KEY_FUNCTION_NOT_PERMITTED, "CKA_ENCRYPT false: no encryption");
		rv = f->C_EncryptInit(s, &gm, ks);
		EXPECT_RV(rv, CKR_OK, "AES key: GCM init");
		f->C_EncryptFinal(s, NULL, &n);
		n = sizeof(ct);
		f->C_EncryptFinal(s, ct, &n);
		{
			CK_MECHANISM hm = {CKM_SHA256_HMAC, NULL, 0};

			rv = f->C_EncryptInit(s, &gm, k2);
			EXPECT_RV(rv, CKR_KEY_FUNCTION_NOT_PERMITTED, "still not permitted");
			rv = f->C_SignInit(s, &hm, k2);
			EXPECT_RV(rv, CKR_OK, "generic secret: HMAC init");
			rv = f->C_SignInit(s, &hm, base);
			EXPECT_RV(rv, CKR_OPERATION_ACTIVE,
				  "an HSM sign while a local sign is active");
			n = 32;
			f->C_Sign(s, data, 1, mac, &n);
			rv = f->C_SignInit(s, &hm, base);
			EXPECT_RV(rv, CKR_OK, "HSM sign init");
			rv = f->C_SignInit(s, &hm, k2);
			EXPECT_RV(rv, CKR_OPERATION_ACTIVE,
				  "a local sign while an HSM sign is active");
			n = 32;
			f->C_Sign(s, data, 1, mac, &n);
		}
	}
	/* Attributes: label and id may change, nothing else. */
	{
		CK_ATTRIBUTE t[] = {{CKA_LABEL, "renamed", 7}, {CKA_ID, "\x01", 1}};
		CK_ATTRIBUTE t2 = {CKA_SENSITIVE, &no, 1};
		CK_ATTRIBUTE t3 = {0x7ffffffUL, &no, 1};
		char label[16] = {0};
		CK_ATTRIBUTE q = {CKA_LABEL, label, sizeof(label)};

		rv = f->C_SetAttributeValue(s, ks, t, 2);
		f->C_GetAttributeValue(s, ks, &q, 1);
		expect(rv == CKR_OK && q.ulValueLen == 7 && memcmp(label, "renamed", 7) == 0,
		       "CKA_LABEL and CKA_ID set (%s)", testmod_ckr(rv));
		rv = f->C_SetAttributeValue(s, ks, &t2, 1);
		EXPECT_RV(rv, CKR_ATTRIBUTE_READ_ONLY, "CKA_SENSITIVE is read-only");
		rv = f->C_SetAttributeValue(s, ks, &t3, 1);
		EXPECT_RV(rv, CKR_ATTRIBUTE_TYPE_INVALID, "an unknown attribute");
	}
	/* Found by a find with the slot's HSM objects. */
	{
		CK_ATTRIBUTE t = {CKA_LABEL, "renamed", 7};
		CK_OBJECT_HANDLE h[4];

		f->C_FindObjectsInit(s, &t, 1);
		n = 0;
		f->C_FindObjects(s, h, 4, &n);
		f->C_FindObjectsFinal(s);
		expect(n == 1 && h[0] == ks, "a find by label returns the derived key");
	}
	/* Another session sees it; its own derived keys go when it closes. */
	s2 = open_on("v-f1", 0);
	expect(get_bool(s2, ks, CKA_SENSITIVE) == 1, "another session sees the session object");
	rv = derive(s2, base, (const unsigned char *)"f", 1, NULL, 0, CKK_AES, 32, CK_FALSE,
		    CK_TRUE, &k2);
	EXPECT_RV(rv, CKR_OK, "derive in a second session");
	f->C_CloseSession(s2);
	rv = f->C_GetAttributeValue(s, k2, &a, 1);
	EXPECT_RV(rv, CKR_OBJECT_HANDLE_INVALID, "its key is gone with it");
	rv = f->C_DestroyObject(s, k);
	EXPECT_RV(rv, CKR_OK, "destroy a derived key");
	rv = f->C_GetAttributeValue(s, k, &a, 1);
	EXPECT_RV(rv, CKR_OBJECT_HANDLE_INVALID, "then it is gone");
	{
		CK_OBJECT_HANDLE cp;

		rv = f->C_CopyObject(s, ks, NULL, 0, &cp);
		EXPECT_RV(rv, CKR_ACTION_PROHIBITED, "no copies");
	}
	f->C_CloseSession(s);
}

/* Bad parameters and templates. */
static void case_bad(void)
{
	CK_SESSION_HANDLE s = open_on("v-f1", 1);
	CK_OBJECT_HANDLE base = find_label(s, "cf-key"), k;
	P11PROXY_FRAGMENT_DERIVE_PARAMS p = {(CK_BYTE_PTR) "frag", 4, NULL, 0};
	CK_MECHANISM m = {CKM_P11PROXY_FRAGMENT_DERIVE, &p, sizeof(p)};
	CK_KEY_TYPE aes = CKK_AES, rsa = CKK_RSA;
	CK_ULONG l32 = 32, l20 = 20;
	CK_ATTRIBUTE good[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)}, {CKA_VALUE_LEN, &l32, sizeof(l32)}};
	CK_ATTRIBUTE tok[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)},
			      {CKA_VALUE_LEN, &l32, sizeof(l32)},
			      {CKA_TOKEN, &yes, 1}};
	CK_ATTRIBUTE badtype[] = {{CKA_KEY_TYPE, &rsa, sizeof(rsa)},
				  {CKA_VALUE_LEN, &l32, sizeof(l32)}};
	CK_ATTRIBUTE badlen[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)},
				 {CKA_VALUE_LEN, &l20, sizeof(l20)}};
	CK_ATTRIBUTE nolen[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)}};
	CK_ATTRIBUTE val[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)},
			      {CKA_VALUE_LEN, &l32, sizeof(l32)},
			      {CKA_VALUE, "0123456789abcdef0123456789abcdef", 32}};
	CK_RV rv;

	rv = f->C_DeriveKey(s, &m, base, tok, 3, &k);
	EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "CKA_TOKEN true");
	rv = f->C_DeriveKey(s, &m, base, badtype, 2, &k);
	EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "CKK_RSA");
	rv = f->C_DeriveKey(s, &m, base, badlen, 2, &k);
	EXPECT_RV(rv, CKR_ATTRIBUTE_VALUE_INVALID, "AES of 20 bytes");
	rv = f->C_DeriveKey(s, &m, base, nolen, 1, &k);
	EXPECT_RV(rv, CKR_TEMPLATE_INCOMPLETE, "no CKA_VALUE_LEN");
	rv = f->C_DeriveKey(s, &m, base, val, 3, &k);
	EXPECT_RV(rv, CKR_ATTRIBUTE_READ_ONLY, "CKA_VALUE given");
	m.pParameter = NULL;
	rv = f->C_DeriveKey(s, &m, base, good, 2, &k);
	EXPECT_RV(rv, CKR_MECHANISM_PARAM_INVALID, "NULL parameter");
	m.pParameter = &p;
	m.ulParameterLen = sizeof(p) - 1;
	rv = f->C_DeriveKey(s, &m, base, good, 2, &k);
	EXPECT_RV(rv, CKR_MECHANISM_PARAM_INVALID, "short parameter");
	m.ulParameterLen = sizeof(p);
	p.pFragment = NULL;
	rv = f->C_DeriveKey(s, &m, base, good, 2, &k);
	EXPECT_RV(rv, CKR_MECHANISM_PARAM_INVALID, "NULL fragment");
	p.pFragment = (CK_BYTE_PTR) "frag";
	p.ulInfoLen = 5;
	rv = f->C_DeriveKey(s, &m, base, good, 2, &k);
	EXPECT_RV(rv, CKR_MECHANISM_PARAM_INVALID, "NULL info with a length");
	p.ulInfoLen = 0;
	rv = f->C_DeriveKey(s, &m, P11P_TEST_BOGUS_HANDLE, good, 2, &k);
	EXPECT_RV(rv, CKR_KEY_HANDLE_INVALID, "an unknown base key");
	rv = f->C_DeriveKey(s, &m, base, good, 2, NULL);
	EXPECT_RV(rv, CKR_ARGUMENTS_BAD, "NULL output handle");
	rv = f->C_DeriveKey(s, &m, base, good, 2, &k);
	EXPECT_RV(rv, CKR_OK, "and with good arguments it works");
	{
		CK_MECHANISM hm = {CKM_SHA256_HMAC_GENERAL, &l32, sizeof(l32)};
		CK_ULONG l0 = 0;
		CK_MECHANISM hm0 = {CKM_SHA256_HMAC_GENERAL, &l0, sizeof(l0)};
		CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
		CK_MECHANISM gcm0 = {CKM_AES_GCM, NULL, 0};

		rv = f->C_EncryptInit(s, &ecb, k);
		EXPECT_RV(rv, CKR_MECHANISM_INVALID, "AES-ECB on a local key");
		rv = f->C_EncryptInit(s, &gcm0, k);
		EXPECT_RV(rv, CKR_MECHANISM_PARAM_INVALID, "GCM without parameters");
		rv = f->C_SignInit(s, &hm0, k);
		EXPECT_RV(rv, CKR_MECHANISM_PARAM_INVALID, "HMAC_GENERAL of 0 bytes");
		rv = f->C_SignInit(s, &hm, k);
		EXPECT_RV(rv, CKR_OK, "HMAC_GENERAL of 32 bytes");
		rv = f->C_Sign(s, NULL, 5, NULL, &l20);
		EXPECT_RV(rv, CKR_ARGUMENTS_BAD, "C_Sign of NULL data with a length");
		rv = f->C_SignUpdate(s, (CK_BYTE_PTR) "x", 1);
		EXPECT_RV(rv, CKR_OPERATION_NOT_INITIALIZED, "which ended the operation");
	}
	{
		CK_MECHANISM gm = {CKM_P11PROXY_MIXED_KEY_GEN, NULL, 0};
		CK_ATTRIBUTE kt_only[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)}};

		rv = f->C_GenerateKey(s, &gm, kt_only, 1, &k);
		EXPECT_RV(rv, CKR_TEMPLATE_INCOMPLETE, "mixed keygen without CKA_VALUE_LEN");
		rv = f->C_GenerateKey(s, &gm, val, 3, &k);
		EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "mixed keygen with CKA_VALUE");
		rv = f->C_GenerateKey(s, &gm, badtype, 2, &k);
		EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "mixed keygen of CKK_RSA");
		gm.pParameter = &l32;
		gm.ulParameterLen = sizeof(l32);
		rv = f->C_GenerateKey(s, &gm, good, 2, &k);
		EXPECT_RV(rv, CKR_MECHANISM_PARAM_INVALID, "mixed keygen with a parameter");
	}
	f->C_CloseSession(s);
}

/* C_GenerateKey with mixed entropy: an HSM key with exactly the requested attributes. */
static void case_keygen(void)
{
	CK_SESSION_HANDLE s = open_on("frag", 1);
	CK_MECHANISM gm = {CKM_P11PROXY_MIXED_KEY_GEN, NULL, 0};
	CK_KEY_TYPE aes = CKK_AES;
	CK_ULONG len = 32;
	CK_ATTRIBUTE t[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)}, {CKA_VALUE_LEN, &len, sizeof(len)},
			    {CKA_TOKEN, &no, 1},               {CKA_SENSITIVE, &no, 1},
			    {CKA_EXTRACTABLE, &yes, 1},        {CKA_LABEL, "mixed", 5},
			    {CKA_ENCRYPT, &yes, 1}};
	unsigned char v1[32], v2[32];
	CK_ATTRIBUTE a = {CKA_VALUE, v1, 32};
	CK_OBJECT_HANDLE k1, k2;
	long before = log_lines();
	CK_RV rv;

	rv = f->C_GenerateKey(s, &gm, t, 7, &k1);
	EXPECT_RV(rv, CKR_OK, "mixed keygen of an AES-256 key");
	expect(log_count(before, "C_CreateObject f1 CKR_OK", NULL) == 1,
	       "created in the HSM with C_CreateObject");
	rv = f->C_GetAttributeValue(s, k1, &a, 1);
	expect(rv == CKR_OK && a.ulValueLen == 32, "its value is there (not sensitive)");
	expect(get_bool(s, k1, CKA_LOCAL) == 0 && get_bool(s, k1, CKA_ENCRYPT) == 1 &&
		   get_ulong(s, k1, CKA_KEY_TYPE) == CKK_AES,
	       "CKA_LOCAL false, the requested attributes");
	f->C_GenerateKey(s, &gm, t, 7, &k2);
	a.pValue = v2;
	f->C_GetAttributeValue(s, k2, &a, 1);
	expect(memcmp(v1, v2, 32) != 0, "two keys differ");
	f->C_CloseSession(s);
}

/* A configured fragment's key: found by name, used; HSM C_Sign counted. */
static void case_frag(const char *slot, const char *name, const char *mode)
{
	CK_SESSION_HANDLE s = open_on(slot, 1);
	CK_OBJECT_HANDLE k = find_label(s, name);
	unsigned char okm[32], mac[32], mac_ref[32], data[64] = "fragment data", ct[100], pt[100],
	    iv[12] = "0123456789a", value[32];
	char info[64];
	CK_ATTRIBUTE a = {CKA_VALUE, value, sizeof(value)};
	long before;
	CK_ULONG n;
	CK_RV rv;
	int secured = strcmp(mode, "secured") == 0;
	int preloaded = strcmp(mode, "wrapped-preloaded") == 0;

	expect(k != 0, "fragment '%s' is an object of slot %s", name, slot);
	expect(get_ulong(s, k, CKA_P11PROXY_FRAGMENT_MODE) ==
		   (secured ? P11PROXY_FRAGMENT_SECURED : P11PROXY_FRAGMENT_WRAPPED),
	       "its CKA_P11PROXY_FRAGMENT_MODE");
	rv = f->C_GetAttributeValue(s, k, &a, 1);
	EXPECT_RV(rv, CKR_ATTRIBUTE_SENSITIVE, "its value cannot be read");
	rv = f->C_DestroyObject(s, k);
	EXPECT_RV(rv, CKR_ACTION_PROHIBITED, "it cannot be destroyed");
	snprintf(info, sizeof(info), "p11proxy-fragment:%s", name);
	ref_hkdf(cf_key, 32, frag_value, 32, (const unsigned char *)info, strlen(info), okm, 32);
	ref_hmac(okm, 32, data, sizeof(data), mac_ref);

	before = log_lines();
	for (int i = 0; i < 3; i++) {
		rv = hmac(s, k, data, sizeof(data), mac);
		expect(rv == CKR_OK && memcmp(mac, mac_ref, 32) == 0,
		       "use %d: HMAC with the fragment's key = HMAC with HKDF(HSM key, fragment) (%s)",
		       i + 1, testmod_ckr(rv));
	}
	n = sizeof(ct);
	rv = gcm(s, k, 1, 0, iv, data, sizeof(data), ct, &n);
	EXPECT_RV(rv, CKR_OK, "AES-GCM encrypt with it");
	n = sizeof(pt);
	rv = gcm(s, k, 0, 0, iv, ct, sizeof(data) + 16, pt, &n);
	expect(rv == CKR_OK && n == sizeof(data) && memcmp(pt, data, n) == 0, "and decrypt");
	{
		long signs = log_count(before, "C_Sign f1 CKR_OK", NULL);

		if (secured)
			/* One extract per use, plus the member's check value once. */
			expect(signs == 5 || signs == 6, "hsm_secured: %ld HSM C_Sign for 5 uses",
			       signs);
		else if (preloaded)
			expect(signs == 0, "hsm_wrapped, derived at C_Initialize: %ld C_Sign in use",
			       signs);
		else
			expect(signs == 2, "hsm_wrapped, derived at first use: %ld C_Sign (check, "
					   "extract), then none",
			       signs);
	}
	f->C_CloseSession(s);
}

static void case_frag_nologin(void)
{
	CK_SESSION_HANDLE s = open_on("frag-nopin", 0);
	CK_OBJECT_HANDLE k = find_label(s, "wr");
	CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
	CK_RV rv;

	expect(k != 0, "the fragment's key is visible before login");
	rv = f->C_SignInit(s, &m, k);
	EXPECT_RV(rv, CKR_USER_NOT_LOGGED_IN, "its HSM key needs a login first");
	f->C_CloseSession(s);
}

static void case_mismatch(void)
{
	CK_SESSION_HANDLE s = open_on("pair", 1);
	CK_OBJECT_HANDLE k = find_label(s, "pf");
	CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
	CK_RV rv;

	expect(k != 0, "the pair's fragment is an object");
	rv = f->C_SignInit(s, &m, k);
	EXPECT_RV(rv, CKR_FUNCTION_FAILED, "members with different HSM keys: refused");
	f->C_CloseSession(s);
}

/* ---- entropy ---- */

static CK_RV rand32(const char *slot, unsigned char out[32])
{
	CK_SESSION_HANDLE s = open_on(slot, 0);
	CK_RV rv = f->C_GenerateRandom(s, out, 32);

	f->C_CloseSession(s);
	return rv;
}

/* rng SLOT RULE WANT: with the shim's rule on f1, C_GenerateRandom answers WANT; prints hex. */
static void case_rng(const char *slot, const char *rule, const char *want)
{
	unsigned char a[32], b[32];
	char hex[65];
	CK_SESSION_HANDLE s;
	CK_RV rv, rv2;
	long before;

	control(rule);
	s = open_on(slot, 0);
	before = log_lines();
	rv = f->C_GenerateRandom(s, a, 32);
	rv2 = f->C_GenerateRandom(s, b, 32);
	expect(strcmp(testmod_ckr(rv), want) == 0 && rv2 == rv, "%s with '%s': %s (want %s)",
	       slot, rule, testmod_ckr(rv), want);
	if (rv == CKR_OK) {
		testmod_hex(a, 32, hex);
		printf("random %s\n", hex);
		expect(memcmp(a, b, 32) != 0, "two calls differ");
	}
	if (strcmp(slot, "ent-os") != 0 || strstr(rule, "rand") == NULL)
		expect(log_count(before, "C_GenerateRandom f1", NULL) >= (rv == CKR_OK ? 1 : 0),
		       "the HSM was asked");
	rv = f->C_SeedRandom(s, (CK_BYTE_PTR) "seed", 4);
	EXPECT_RV(rv, CKR_OK, "C_SeedRandom adds input");
	rv = f->C_GenerateRandom(s, NULL, 5);
	EXPECT_RV(rv, CKR_ARGUMENTS_BAD, "NULL buffer");
	f->C_CloseSession(s);
	control("");
}

/* 1 MiB from the mixer: monobit, byte chi-square, runs (generous bounds; p ~ 1e-6). */
static void case_stat(const char *slot, const char *rule)
{
	static unsigned char buf[1 << 20];
	unsigned long counts[256] = {0}, ones = 0, runs = 1;
	CK_SESSION_HANDLE s;
	double chi = 0, expct = sizeof(buf) / 256.0, n_bits = sizeof(buf) * 8.0, d;
	CK_RV rv = CKR_OK;

	control(rule);
	s = open_on(slot, 0);
	for (size_t off = 0; off < sizeof(buf) && rv == CKR_OK; off += 4096)
		rv = f->C_GenerateRandom(s, buf + off, 4096);
	EXPECT_RV(rv, CKR_OK, "1 MiB of random");
	for (size_t i = 0; i < sizeof(buf); i++) {
		counts[buf[i]]++;
		ones += (unsigned long)__builtin_popcount(buf[i]);
		if (i > 0 && (buf[i] & 1) != (buf[i - 1] & 1))
			runs++;
	}
	for (int i = 0; i < 256; i++)
		chi += (counts[i] - expct) * (counts[i] - expct) / expct;
	/* |z| < 5, as d^2 < 25 var (no libm needed). */
	d = (double)ones - n_bits / 2;
	expect(d * d < 25 * (n_bits / 4), "monobit: %lu ones of %.0f bits, |z| < 5", ones, n_bits);
	/* 255 degrees of freedom: mean 255, sd 22.6; 5 sd either side. */
	expect(chi > 255 - 5 * 22.6 && chi < 255 + 5 * 22.6, "byte chi-square %.1f in 142..368",
	       chi);
	d = (double)runs - sizeof(buf) / 2.0;
	expect(d * d < 25 * (sizeof(buf) / 4.0), "runs of the low bit: %lu, |z| < 5", runs);
	f->C_CloseSession(s);
	control("");
}

/* A forked child (C_Initialize again) gets a fresh state: its output differs from the parent's. */
static void case_fork(const char *slot)
{
	unsigned char parent[32], child[32];
	int fds[2];
	pid_t pid;
	int st = 0;

	control("f1 rand replay 7");
	expect(rand32(slot, parent) == CKR_OK, "parent draws");
	if (pipe(fds) != 0) {
		expect(0, "pipe");
		return;
	}
	pid = fork();
	if (pid == 0) {
		CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
		unsigned char out[32] = {0};
		CK_RV rv = f->C_GenerateRandom(1, out, 32);
		int ok = rv == CKR_CRYPTOKI_NOT_INITIALIZED || rv == CKR_SESSION_HANDLE_INVALID;

		if (f->C_Initialize(&args) == CKR_OK && rand32(slot, out) == CKR_OK && ok)
			(void)!write(fds[1], out, 32);
		_exit(0);
	}
	close(fds[1]);
	expect(read(fds[0], child, 32) == 32, "the child drew after C_Initialize");
	close(fds[0]);
	waitpid(pid, &st, 0);
	expect(rand32(slot, parent + 0) == CKR_OK, "parent draws again");
	expect(memcmp(parent, child, 32) != 0, "child and parent outputs differ");
	control("");
}

int main(int argc, char **argv)
{
	const char *c;

	if (argc < 5) {
		fprintf(stderr, "usage: vendortest MODULE CONTROL LOG CASE [ARGS]\n");
		return 2;
	}
	control_path = argv[2];
	log_path = argv[3];
	c = argv[4];
	if (strcmp(c, "rng") != 0 && strcmp(c, "stat") != 0)
		control("");
	if (strcmp(c, "rng") == 0 && argc > 6)
		control(argv[6]); /* before C_Initialize too: nothing is drawn at init */
	if (!testmod_load(&mod, argv[1]))
		return 1;
	f = mod.f;
	if (strcmp(c, "setup") == 0)
		case_setup();
	else if (strcmp(c, "mech") == 0)
		case_mech();
	else if (strcmp(c, "rfc") == 0)
		case_rfc();
	else if (strcmp(c, "derived") == 0)
		case_derived();
	else if (strcmp(c, "bad") == 0)
		case_bad();
	else if (strcmp(c, "keygen") == 0)
		case_keygen();
	else if (strcmp(c, "frag") == 0 && argc > 7)
		case_frag(argv[5], argv[6], argv[7]);
	else if (strcmp(c, "nologin") == 0)
		case_frag_nologin();
	else if (strcmp(c, "mismatch") == 0)
		case_mismatch();
	else if (strcmp(c, "rng") == 0 && argc > 7)
		case_rng(argv[5], argv[6], argv[7]);
	else if (strcmp(c, "stat") == 0 && argc > 6)
		case_stat(argv[5], argv[6]);
	else if (strcmp(c, "fork") == 0 && argc > 5)
		case_fork(argv[5]);
	else {
		fprintf(stderr, "unknown case %s\n", c);
		return 2;
	}
	testmod_unload(&mod);
	return checks_verdict();
}
