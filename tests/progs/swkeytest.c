/*
 * Software keys (issue 12) through libproxy.so over the shim.
 *   swkeytest MODULE CONTROL LOG CASE [ARGS]
 * The config (tests/suites/78-swkeys.sh): slots "soft" (tokens sw1 + sw2,
 * software_keys under wrap-a), "soft-new" (sw1, new_keys: true),
 * "soft-idle" (sw1, cache_idle 300ms), "soft-nokey" (sw1, a wrapping key
 * that does not exist), "plain" (sw1, no software_keys), "v-sw1", "v-sw2"
 * (one token each). Key values are derived at run time (SHA-256 of a name),
 * never constants of the program, and wiped after use, so that the core-dump
 * check (case hold) finds only what the proxy kept. Prints "ok ..." /
 * "FAIL ..."; exit 1 on failure.
 */
#include "../tests/progs/testmod.h"

#include <time.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <p11proxy.h>

#include "shimctl.h"

#define EXPECT_RV(rv, want, what)                                                                  \
	expect((rv) == (want), "%s: %s (want %s)", what, testmod_ckr(rv), testmod_ckr(want))

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

/* A key value: SHA-256 of its name (the suite computes the same with openssl dgst). */
static void key_value(const char *name, unsigned char out[32])
{
	unsigned int n = 32;

	EVP_Digest(name, strlen(name), out, &n, EVP_sha256(), NULL);
}

static int ref_hmac(const unsigned char *key, size_t key_len, const unsigned char *in, size_t len,
                    unsigned char out[32])
{
	size_t olen = 32;

	return EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, in, len, out, 32,
	                 &olen) != NULL &&
	       olen == 32;
}

static int ref_gcm(const unsigned char *key, const unsigned char *iv, const unsigned char *in,
                   size_t len, unsigned char *out)
{
	EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
	int l = 0, ok;

	ok = cc != NULL && EVP_EncryptInit_ex(cc, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	     EVP_CIPHER_CTX_ctrl(cc, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) == 1 &&
	     EVP_EncryptInit_ex(cc, NULL, NULL, key, iv) == 1 &&
	     EVP_EncryptUpdate(cc, NULL, &l, (const unsigned char *)"aad", 3) == 1 &&
	     EVP_EncryptUpdate(cc, out, &l, in, (int)len) == 1 &&
	     EVP_EncryptFinal_ex(cc, out + l, &l) == 1 &&
	     EVP_CIPHER_CTX_ctrl(cc, EVP_CTRL_GCM_GET_TAG, 16, out + len) == 1;
	EVP_CIPHER_CTX_free(cc);
	return ok;
}

/* A token AES key with a known value on the HSM (the wrapping keys). */
static void import_hsm(CK_SESSION_HANDLE s, const char *label, const char *name, CK_KEY_TYPE kt)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_BBOOL aes = kt == CKK_AES, mac = kt != CKK_AES, kek = strcmp(label, "kek") == 0;
	unsigned char v[32];
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_TOKEN, &yes, 1},
	    {CKA_ENCRYPT, &aes, 1},
	    {CKA_DECRYPT, &aes, 1},
	    {CKA_SIGN, &mac, 1},
	    {CKA_DERIVE, &mac, 1},
	    {CKA_UNWRAP, &kek, 1},
	    {CKA_SENSITIVE, &yes, 1},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_VALUE, v, 32},
	};
	CK_OBJECT_HANDLE h = 0;
	CK_RV rv;

	key_value(name, v);
	rv = f->C_CreateObject(s, t, 11, &h);
	OPENSSL_cleanse(v, sizeof(v));
	EXPECT_RV(rv, CKR_OK, "import an HSM key");
}

/* A software key from a known value (C_CreateObject, CKA_P11PROXY_SOFTWARE). */
static CK_RV create_sw(CK_SESSION_HANDLE s, const char *label, unsigned char id, CK_KEY_TYPE kt,
                       const char *name, CK_BBOOL token, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	unsigned char v[32];
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_TOKEN, &token, 1},
	    {CKA_P11PROXY_SOFTWARE, &yes, 1},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_ID, &id, 1},
	    {CKA_ENCRYPT, kt == CKK_AES ? &yes : &no, 1},
	    {CKA_DECRYPT, kt == CKK_AES ? &yes : &no, 1},
	    {CKA_SIGN, kt == CKK_AES ? &no : &yes, 1},
	    {CKA_VERIFY, kt == CKK_AES ? &no : &yes, 1},
	    {CKA_SENSITIVE, &yes, 1},
	    {CKA_VALUE, v, 32},
	};
	CK_RV rv;

	key_value(name, v);
	*out = 0;
	rv = f->C_CreateObject(s, t, 12, out);
	OPENSSL_cleanse(v, sizeof(v));
	return rv;
}

static CK_ULONG find_all(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out,
                         CK_ULONG max)
{
	CK_ULONG got = 0;

	if (f->C_FindObjectsInit(s, t, n) != CKR_OK)
		return 0;
	f->C_FindObjects(s, out, max, &got);
	f->C_FindObjectsFinal(s);
	return got;
}

static CK_OBJECT_HANDLE find_label(CK_SESSION_HANDLE s, const char *label)
{
	CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h[4] = {0};

	return find_all(s, t, 1, h, 4) == 1 ? h[0] : 0;
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

static CK_RV gcm(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, int enc, const unsigned char *iv,
                 const unsigned char *in, CK_ULONG len, unsigned char *out, CK_ULONG *out_len)
{
	CK_GCM_PARAMS gp = {(CK_BYTE_PTR)iv, 12, 96, (CK_BYTE_PTR) "aad", 3, 128};
	CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};
	CK_RV rv = enc ? f->C_EncryptInit(s, &m, k) : f->C_DecryptInit(s, &m, k);

	if (rv != CKR_OK)
		return rv;
	return enc ? f->C_Encrypt(s, (CK_BYTE_PTR)in, len, out, out_len)
	           : f->C_Decrypt(s, (CK_BYTE_PTR)in, len, out, out_len);
}

static CK_RV hmac(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, const unsigned char *in, CK_ULONG len,
                  unsigned char out[32])
{
	CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
	CK_ULONG n = 32;
	CK_RV rv = f->C_SignInit(s, &m, k);

	if (rv == CKR_OK)
		rv = f->C_Sign(s, (CK_BYTE_PTR)in, len, out, &n);
	return rv;
}

/* GCM with key k equals OpenSSL with the value of `name`; decrypts back; a bad tag refused. */
static void check_gcm(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, const char *name, const char *what)
{
	unsigned char v[32], data[1024], ct[1100], ref[1100], pt[1100], iv[12] = "swkey-iv-123";
	CK_ULONG n = sizeof(ct);
	CK_RV rv;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 13);
	rv = gcm(s, k, 1, iv, data, sizeof(data), ct, &n);
	key_value(name, v);
	ref_gcm(v, iv, data, sizeof(data), ref);
	OPENSSL_cleanse(v, sizeof(v));
	expect(rv == CKR_OK && n == sizeof(data) + 16 && memcmp(ct, ref, n) == 0,
	       "%s: AES-256-GCM equals OpenSSL on the same key (%s)", what, testmod_ckr(rv));
	n = sizeof(pt);
	rv = gcm(s, k, 0, iv, ct, sizeof(data) + 16, pt, &n);
	expect(rv == CKR_OK && n == sizeof(data) && memcmp(pt, data, n) == 0,
	       "%s: decrypts back (%s)", what, testmod_ckr(rv));
	ct[3] ^= 1;
	n = sizeof(pt);
	rv = gcm(s, k, 0, iv, ct, sizeof(data) + 16, pt, &n);
	EXPECT_RV(rv, CKR_ENCRYPTED_DATA_INVALID, "a changed ciphertext is refused");
}

static void check_hmac(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, const char *name, const char *what)
{
	unsigned char v[32], mac[32], ref[32];
	CK_RV rv = hmac(s, k, (const unsigned char *)"message", 7, mac);

	key_value(name, v);
	ref_hmac(v, 32, (const unsigned char *)"message", 7, ref);
	OPENSSL_cleanse(v, sizeof(v));
	expect(rv == CKR_OK && memcmp(mac, ref, 32) == 0, "%s: HMAC-SHA256 equals OpenSSL (%s)",
	       what, testmod_ckr(rv));
}

/* ---- every mechanism against OpenSSL ---- */

static int ref_cipher(const EVP_CIPHER *ciph, int pad, const unsigned char *key,
                      const unsigned char *iv, const unsigned char *in, int len, unsigned char *out)
{
	EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
	int l = 0, l2 = 0, ok;

	ok = cc != NULL && EVP_EncryptInit_ex(cc, ciph, NULL, key, iv) == 1 &&
	     EVP_CIPHER_CTX_set_padding(cc, pad) == 1 &&
	     EVP_EncryptUpdate(cc, out, &l, in, len) == 1 &&
	     EVP_EncryptFinal_ex(cc, out + l, &l2) == 1;
	EVP_CIPHER_CTX_free(cc);
	return ok ? l + l2 : -1;
}

/* Single-part encrypt and decrypt with mechanism m through the proxy. */
static CK_RV crypt1(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k, int enc,
                    const unsigned char *in, CK_ULONG len, unsigned char *out, CK_ULONG *out_len)
{
	CK_RV rv = enc ? f->C_EncryptInit(s, m, k) : f->C_DecryptInit(s, m, k);

	if (rv != CKR_OK)
		return rv;
	return enc ? f->C_Encrypt(s, (CK_BYTE_PTR)in, len, out, out_len)
	           : f->C_Decrypt(s, (CK_BYTE_PTR)in, len, out, out_len);
}

static void check_cipher(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, CK_MECHANISM *m,
                         const EVP_CIPHER *ciph, int pad, const unsigned char *iv, CK_ULONG len,
                         const char *what)
{
	unsigned char v[32], data[256], ct[300], ref[300], pt[300];
	CK_ULONG n = sizeof(ct), n2 = sizeof(pt);
	CK_RV rv, rv2;
	int rl;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 5 + 1);
	rv = crypt1(s, m, k, 1, data, len, ct, &n);
	key_value("software aes", v);
	rl = ref_cipher(ciph, pad, v, iv, data, (int)len, ref);
	OPENSSL_cleanse(v, sizeof(v));
	rv2 = rv == CKR_OK ? crypt1(s, m, k, 0, ct, n, pt, &n2) : rv;
	expect(rv == CKR_OK && rl >= 0 && n == (CK_ULONG)rl && memcmp(ct, ref, n) == 0 &&
	           rv2 == CKR_OK && n2 == len && memcmp(pt, data, len) == 0,
	       "%s: equals OpenSSL, decrypts back (%s, %s)", what, testmod_ckr(rv),
	       testmod_ckr(rv2));
}

static void check_mac(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, CK_MECHANISM_TYPE mt, const char *md,
                      size_t mac_len, CK_ULONG general)
{
	unsigned char v[32], mac[64], ref[64];
	CK_MECHANISM m = {mt, general ? &general : NULL, general ? sizeof(general) : 0};
	CK_ULONG n = sizeof(mac);
	size_t rl = 0;
	CK_RV rv = f->C_SignInit(s, &m, k);

	if (rv == CKR_OK) {
		/* Multi-part, in two pieces. */
		rv = f->C_SignUpdate(s, (CK_BYTE_PTR) "mess", 4);
		if (rv == CKR_OK)
			rv = f->C_SignUpdate(s, (CK_BYTE_PTR) "age", 3);
		if (rv == CKR_OK)
			rv = f->C_SignFinal(s, mac, &n);
	}
	key_value("software hmac", v);
	EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, v, 32, (const unsigned char *)"message", 7, ref,
	          sizeof(ref), &rl);
	OPENSSL_cleanse(v, sizeof(v));
	expect(rv == CKR_OK && n == mac_len && memcmp(mac, ref, mac_len) == 0,
	       "HMAC-%s%s (multi-part) equals OpenSSL (%s)", md, general ? " general" : "",
	       testmod_ckr(rv));
}

static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};

/* A software key pair, token keys of the slot (CKA_P11PROXY_SOFTWARE in the private template). */
static CK_RV gen_pair(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mt, const unsigned char *params,
                      size_t params_len, CK_ULONG bits, const char *label, CK_OBJECT_HANDLE *pub,
                      CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM m = {mt, NULL, 0};
	CK_ATTRIBUTE tpub[] = {
	    {CKA_TOKEN, &yes, 1},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_VERIFY, &yes, 1},
	    {params != NULL ? CKA_EC_PARAMS : CKA_MODULUS_BITS,
	     params != NULL ? (void *)params : (void *)&bits,
	     params != NULL ? params_len : sizeof(bits)},
	    {CKA_ENCRYPT, &yes, 1},
	};
	CK_ATTRIBUTE tpriv[] = {
	    {CKA_TOKEN, &yes, 1},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_SIGN, &yes, 1},
	    {CKA_SENSITIVE, &yes, 1},
	    {CKA_P11PROXY_SOFTWARE, &yes, 1},
	    {CKA_DECRYPT, &yes, 1},
	};

	return f->C_GenerateKeyPair(s, &m, tpub, params != NULL ? 4 : 5, tpriv,
	                            params != NULL ? 5 : 6, pub, priv);
}

/* The public key of a software pair, as OpenSSL reads it (CKA_PUBLIC_KEY_INFO). */
static EVP_PKEY *spki_of(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub)
{
	unsigned char der[2048];
	const unsigned char *p = der;
	CK_ATTRIBUTE a = {CKA_PUBLIC_KEY_INFO, der, sizeof(der)};

	if (f->C_GetAttributeValue(s, pub, &a, 1) != CKR_OK)
		return NULL;
	return d2i_PUBKEY(NULL, &p, (long)a.ulValueLen);
}

/* r || s as DER (ECDSA-Sig-Value), for OpenSSL. */
static size_t ecdsa_der(const unsigned char *sig, size_t len, unsigned char *out)
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	unsigned char *p = out;
	int n;

	if (es == NULL || !ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)len / 2, NULL),
	                                  BN_bin2bn(sig + len / 2, (int)len / 2, NULL))) {
		ECDSA_SIG_free(es);
		return 0;
	}
	n = i2d_ECDSA_SIG(es, &p);
	ECDSA_SIG_free(es);
	return n > 0 ? (size_t)n : 0;
}

static int ossl_verify(EVP_PKEY *pk, const EVP_MD *md, int pss, const unsigned char *sig,
                       size_t sig_len)
{
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	int ok;

	ok = mc != NULL && EVP_DigestVerifyInit(mc, &pc, md, NULL, pk) == 1 &&
	     (!pss || (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
	               EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32) == 1)) &&
	     EVP_DigestVerify(mc, sig, sig_len, (const unsigned char *)"message", 7) == 1;
	EVP_MD_CTX_free(mc);
	return ok;
}

/* Signs "message" with mechanism m; OpenSSL verifies with the exported public key. */
static void check_sig(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub,
                      CK_MECHANISM *m, const EVP_MD *md, int kind, const char *what)
{
	unsigned char sig[600], der[200];
	CK_ULONG n = sizeof(sig);
	EVP_PKEY *pk = spki_of(s, pub);
	CK_RV rv = f->C_SignInit(s, m, priv), rv2 = CKR_GENERAL_ERROR;
	int ok = 0;

	if (rv == CKR_OK)
		rv = f->C_Sign(s, (CK_BYTE_PTR) "message", 7, sig, &n);
	if (rv == CKR_OK && pk != NULL) {
		if (kind == 1) { /* ECDSA: r || s */
			size_t dl = ecdsa_der(sig, n, der);

			ok = dl > 0 && ossl_verify(pk, md, 0, der, dl);
		} else {
			ok = ossl_verify(pk, md, kind == 2, sig, n);
		}
		rv2 = f->C_VerifyInit(s, m, pub);
		if (rv2 == CKR_OK)
			rv2 = f->C_Verify(s, (CK_BYTE_PTR) "message", 7, sig, n);
	}
	expect(rv == CKR_OK && pk != NULL && ok && rv2 == CKR_OK,
	       "%s: OpenSSL verifies the proxy's signature with the exported public key; the "
	       "public key object verifies it too (%s, %s)",
	       what, testmod_ckr(rv), testmod_ckr(rv2));
	EVP_PKEY_free(pk);
}

static void case_mechs(const char *slot)
{
	CK_SESSION_HANDLE s = open_on(slot, 1);
	CK_OBJECT_HANDLE ka = find_label(s, "sk-aes"), kh = find_label(s, "sk-hmac"), pub, priv;
	unsigned char iv[16] = "0123456789abcdef";
	CK_MECHANISM cbc = {CKM_AES_CBC, iv, 16}, cbcpad = {CKM_AES_CBC_PAD, iv, 16};
	CK_AES_CTR_PARAMS ctr = {128, {0}};
	CK_MECHANISM mctr = {CKM_AES_CTR, &ctr, sizeof(ctr)};
	CK_MECHANISM ecdsa256 = {CKM_ECDSA_SHA256, NULL, 0}, ecdsa384 = {CKM_ECDSA_SHA384, NULL, 0},
	             eddsa = {CKM_EDDSA, NULL, 0}, rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
	CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
	CK_MECHANISM mpss = {CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss)};
	CK_RV rv;

	memcpy(ctr.cb, iv, 16);
	expect(ka != 0 && kh != 0, "the software keys are found");
	check_cipher(s, ka, &cbc, EVP_aes_256_cbc(), 0, iv, 64, "AES-256-CBC");
	check_cipher(s, ka, &cbcpad, EVP_aes_256_cbc(), 1, iv, 50, "AES-256-CBC-PAD");
	check_cipher(s, ka, &mctr, EVP_aes_256_ctr(), 0, iv, 77, "AES-256-CTR");
	check_mac(s, kh, CKM_SHA256_HMAC, "SHA256", 32, 0);
	check_mac(s, kh, CKM_SHA384_HMAC, "SHA384", 48, 0);
	check_mac(s, kh, CKM_SHA512_HMAC, "SHA512", 64, 0);
	check_mac(s, kh, CKM_SHA256_HMAC_GENERAL, "SHA256", 16, 16);

	rv =
	    gen_pair(s, CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), 0, "sk-p256", &pub, &priv);
	EXPECT_RV(rv, CKR_OK, "generate a software EC P-256 key pair");
	expect(get_bool(s, priv, CKA_P11PROXY_SOFTWARE) == 1 &&
	           get_bool(s, pub, CKA_P11PROXY_SOFTWARE) == 1 &&
	           get_ulong(s, pub, CKA_CLASS) == CKO_PUBLIC_KEY &&
	           get_ulong(s, priv, CKA_KEY_TYPE) == CKK_EC,
	       "both halves are software keys; the public one an ordinary public key");
	check_sig(s, priv, pub, &ecdsa256, EVP_sha256(), 1, "ECDSA P-256 SHA-256");
	rv =
	    gen_pair(s, CKM_EC_KEY_PAIR_GEN, oid_p384, sizeof(oid_p384), 0, "sk-p384", &pub, &priv);
	EXPECT_RV(rv, CKR_OK, "generate a software EC P-384 key pair");
	check_sig(s, priv, pub, &ecdsa384, EVP_sha384(), 1, "ECDSA P-384 SHA-384");
	rv = gen_pair(s, CKM_EC_EDWARDS_KEY_PAIR_GEN, oid_ed25519, sizeof(oid_ed25519), 0,
	              "sk-ed25519", &pub, &priv);
	EXPECT_RV(rv, CKR_OK, "generate a software Ed25519 key pair");
	check_sig(s, priv, pub, &eddsa, NULL, 0, "EdDSA Ed25519");
	rv = gen_pair(s, CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0, 2048, "sk-rsa", &pub, &priv);
	EXPECT_RV(rv, CKR_OK, "generate a software RSA-2048 key pair");
	check_sig(s, priv, pub, &rsa, EVP_sha256(), 0, "RSA PKCS#1 v1.5 SHA-256");
	check_sig(s, priv, pub, &mpss, EVP_sha256(), 2, "RSA-PSS SHA-256");
	{
		/* OAEP: OpenSSL encrypts with the exported public key, the proxy decrypts. */
		CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL,
		                              0};
		CK_MECHANISM moaep = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
		EVP_PKEY *pk = spki_of(s, pub);
		EVP_PKEY_CTX *pc = pk != NULL ? EVP_PKEY_CTX_new(pk, NULL) : NULL;
		unsigned char ct[256], pt[256];
		size_t cl = sizeof(ct);
		CK_ULONG pl = sizeof(pt);
		int ok = pc != NULL && EVP_PKEY_encrypt_init(pc) == 1 &&
		         EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) == 1 &&
		         EVP_PKEY_CTX_set_rsa_oaep_md(pc, EVP_sha256()) == 1 &&
		         EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) == 1 &&
		         EVP_PKEY_encrypt(pc, ct, &cl, (const unsigned char *)"secret", 6) == 1;

		rv = ok ? crypt1(s, &moaep, priv, 0, ct, cl, pt, &pl) : CKR_GENERAL_ERROR;
		expect(rv == CKR_OK && pl == 6 && memcmp(pt, "secret", 6) == 0,
		       "RSA-OAEP SHA-256: the proxy decrypts what OpenSSL encrypted (%s)",
		       testmod_ckr(rv));
		EVP_PKEY_CTX_free(pc);
		EVP_PKEY_free(pk);
	}
	{
		unsigned char buf[8];
		CK_ATTRIBUTE a = {CKA_PRIVATE_EXPONENT, buf, sizeof(buf)};

		rv = f->C_GetAttributeValue(s, priv, &a, 1);
		EXPECT_RV(rv, CKR_ATTRIBUTE_SENSITIVE, "the private exponent is never read");
	}
	f->C_CloseSession(s);
}

/* ---- keys from their PKCS#11 parts (C_CreateObject), C_UnwrapKey of private keys ---- */

/* A bignum of pk, big-endian: padded to n bytes (n 0: its own length); its length, 0 on error. */
static size_t bn_param(EVP_PKEY *pk, const char *name, unsigned char *out, size_t n)
{
	BIGNUM *bn = NULL;
	int len;

	if (!EVP_PKEY_get_bn_param(pk, name, &bn))
		return 0;
	len = n != 0 ? BN_bn2binpad(bn, out, (int)n) : BN_bn2bin(bn, out);
	BN_clear_free(bn);
	return len > 0 ? (size_t)len : 0;
}

/* C_CreateObject of a software token key of class cls: the usual attributes + parts. */
static CK_RV create_key(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, const char *label,
                        const CK_ATTRIBUTE *parts, CK_ULONG n_parts, CK_OBJECT_HANDLE *out)
{
	CK_ATTRIBUTE t[20] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_TOKEN, &yes, 1},
	    {CKA_P11PROXY_SOFTWARE, &yes, 1},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {cls == CKO_PRIVATE_KEY ? CKA_SIGN : CKA_VERIFY, &yes, 1},
	};

	if (n_parts > 14)
		return CKR_ARGUMENTS_BAD;
	memcpy(t + 6, parts, n_parts * sizeof(*parts));
	*out = 0;
	return f->C_CreateObject(s, t, 6 + n_parts, out);
}

/*
 * Signs "message" with priv (mechanism m); OpenSSL verifies with pk, the key
 * the parts came from; the public key object (pub, if any) verifies too and
 * exports the same public key.
 */
static void check_parts_sig(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub,
                            CK_MECHANISM *m, EVP_PKEY *pk, const EVP_MD *md, int ecdsa,
                            const char *what)
{
	unsigned char sig[600], der[200];
	CK_ULONG n = sizeof(sig);
	CK_RV rv = f->C_SignInit(s, m, priv), rv2 = CKR_OK;
	int ok = 0, same = 1;

	if (rv == CKR_OK)
		rv = f->C_Sign(s, (CK_BYTE_PTR) "message", 7, sig, &n);
	if (rv == CKR_OK) {
		size_t dl = ecdsa ? ecdsa_der(sig, n, der) : 0;

		ok = ecdsa ? dl > 0 && ossl_verify(pk, md, 0, der, dl)
		           : ossl_verify(pk, md, 0, sig, n);
	}
	if (rv == CKR_OK && pub != 0) {
		EVP_PKEY *exp = spki_of(s, pub);

		same = exp != NULL && EVP_PKEY_eq(exp, pk) == 1;
		EVP_PKEY_free(exp);
		rv2 = f->C_VerifyInit(s, m, pub);
		if (rv2 == CKR_OK)
			rv2 = f->C_Verify(s, (CK_BYTE_PTR) "message", 7, sig, n);
	}
	expect(rv == CKR_OK && ok && rv2 == CKR_OK && same,
	       "%s: OpenSSL verifies the proxy's signature with the original key%s (%s, %s)", what,
	       pub != 0 ? "; the public key object verifies it and exports that key" : "",
	       testmod_ckr(rv), testmod_ckr(rv2));
}

static const unsigned char str_ed25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                            'd',  's',  '2', '5', '5', '1', '9'};
static const unsigned char oid_p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};

/* EC P-256 (point as DER) and P-384 (point raw, as SoftHSM2 also takes it). */
static void parts_ec(CK_SESSION_HANDLE s, int p384)
{
	const unsigned char *oid = p384 ? oid_p384 : oid_p256;
	CK_ULONG oid_len = p384 ? sizeof(oid_p384) : sizeof(oid_p256);
	size_t olen = p384 ? 48 : 32, plen = 0;
	CK_KEY_TYPE kt = CKK_EC;
	CK_MECHANISM m = {p384 ? CKM_ECDSA_SHA384 : CKM_ECDSA_SHA256, NULL, 0};
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", p384 ? "P-384" : "P-256");
	unsigned char d[48], pt[2 + 97], buf[64];
	CK_OBJECT_HANDLE priv = 0, pub = 0, h;
	const char *label = p384 ? "pt-p384" : "pt-p256";
	CK_RV rv;

	expect(pk != NULL && bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, d, olen) == olen &&
	           EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pt + 2, 97,
	                                           &plen) == 1 &&
	           plen == 1 + 2 * olen,
	       "an EC key made by OpenSSL");
	pt[0] = 0x04;
	pt[1] = (unsigned char)plen;
	{
		CK_ATTRIBUTE a[] = {{CKA_EC_PARAMS, (void *)oid, oid_len}, {CKA_VALUE, d, olen}};

		rv = create_key(s, CKO_PRIVATE_KEY, kt, label, a, 2, &priv);
		EXPECT_RV(rv, CKR_OK,
		          p384 ? "create an EC P-384 private key from CKA_VALUE"
		               : "create an EC P-256 private key from CKA_VALUE");
	}
	{
		CK_ATTRIBUTE a[] = {{CKA_EC_PARAMS, (void *)oid, oid_len},
		                    {CKA_EC_POINT, p384 ? pt + 2 : pt, p384 ? plen : plen + 2}};

		rv = create_key(s, CKO_PUBLIC_KEY, kt, label, a, 2, &pub);
		EXPECT_RV(rv, CKR_OK,
		          p384 ? "create an EC P-384 public key (raw CKA_EC_POINT)"
		               : "create an EC P-256 public key (DER CKA_EC_POINT)");
	}
	check_parts_sig(s, priv, pub, &m, pk, p384 ? EVP_sha384() : EVP_sha256(), 1,
	                p384 ? "created ECDSA P-384" : "created ECDSA P-256");
	{
		CK_ATTRIBUTE a = {CKA_VALUE, buf, sizeof(buf)};

		rv = f->C_GetAttributeValue(s, priv, &a, 1);
		EXPECT_RV(rv, CKR_ATTRIBUTE_SENSITIVE, "CKA_VALUE of the created private key");
	}
	expect(get_bool(s, priv, CKA_P11PROXY_SOFTWARE) == 1 && get_bool(s, priv, CKA_LOCAL) == 0 &&
	           get_bool(s, priv, CKA_SENSITIVE) == 1 && get_bool(s, pub, CKA_TOKEN) == 1 &&
	           get_ulong(s, pub, CKA_CLASS) == CKO_PUBLIC_KEY,
	       "software token keys, the private one sensitive and not LOCAL");
	{
		CK_OBJECT_CLASS pc = CKO_PUBLIC_KEY;
		CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)},
		                    {CKA_LABEL, (void *)label, strlen(label)}};

		expect(find_all(s, t, 2, &h, 1) == 1 && h == pub,
		       "C_FindObjects finds the public key object");
	}
	OPENSSL_cleanse(d, sizeof(d));
	EVP_PKEY_free(pk);
}

static void parts_ed25519(CK_SESSION_HANDLE s)
{
	CK_KEY_TYPE kt = CKK_EC_EDWARDS;
	CK_MECHANISM m = {CKM_EDDSA, NULL, 0};
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	unsigned char seed[32], pt[34];
	size_t sl = 32, pl = 32;
	CK_OBJECT_HANDLE priv = 0, pub = 0;
	CK_RV rv;

	expect(pk != NULL && EVP_PKEY_get_raw_private_key(pk, seed, &sl) == 1 && sl == 32 &&
	           EVP_PKEY_get_raw_public_key(pk, pt + 2, &pl) == 1 && pl == 32,
	       "an Ed25519 key made by OpenSSL");
	pt[0] = 0x04;
	pt[1] = 32;
	{
		/* The printable form of the curve, as some applications write it. */
		CK_ATTRIBUTE a[] = {{CKA_EC_PARAMS, (void *)str_ed25519, sizeof(str_ed25519)},
		                    {CKA_VALUE, seed, 32}};

		rv = create_key(s, CKO_PRIVATE_KEY, kt, "pt-ed25519", a, 2, &priv);
		EXPECT_RV(rv, CKR_OK, "create an Ed25519 private key (params \"edwards25519\")");
	}
	{
		CK_ATTRIBUTE a[] = {{CKA_EC_PARAMS, (void *)oid_ed25519, sizeof(oid_ed25519)},
		                    {CKA_EC_POINT, pt, 34}};

		rv = create_key(s, CKO_PUBLIC_KEY, kt, "pt-ed25519", a, 2, &pub);
		EXPECT_RV(rv, CKR_OK, "create an Ed25519 public key (the curve's OID)");
	}
	check_parts_sig(s, priv, pub, &m, pk, NULL, 0, "created EdDSA Ed25519");
	OPENSSL_cleanse(seed, sizeof(seed));
	EVP_PKEY_free(pk);
}

/* The RSA parts of pk: n, e, d, p, q, dp, dq, qinv. */
static const char *const rsa_params[8] = {
    OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
    OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
    OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
    OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
};
static const CK_ATTRIBUTE_TYPE rsa_attrs[8] = {
    CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1,
    CKA_PRIME_2, CKA_EXPONENT_1,      CKA_EXPONENT_2,       CKA_COEFFICIENT,
};

struct rsa_parts {
	unsigned char v[8][512];
	CK_ATTRIBUTE a[8];
};

static int rsa_parts(EVP_PKEY *pk, struct rsa_parts *r)
{
	for (int i = 0; i < 8; i++) {
		size_t n = bn_param(pk, rsa_params[i], r->v[i], 0);

		if (n == 0)
			return 0;
		r->a[i] = (CK_ATTRIBUTE){rsa_attrs[i], r->v[i], n};
	}
	return 1;
}

static void parts_rsa(CK_SESSION_HANDLE s)
{
	CK_KEY_TYPE kt = CKK_RSA;
	CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	struct rsa_parts r;
	CK_OBJECT_HANDLE priv = 0, pub = 0, bare = 0;
	unsigned char buf[600];
	CK_ATTRIBUTE a = {CKA_PRIVATE_EXPONENT, buf, sizeof(buf)};
	CK_RV rv;

	expect(pk != NULL && rsa_parts(pk, &r), "an RSA-2048 key made by OpenSSL");
	rv = create_key(s, CKO_PRIVATE_KEY, kt, "pt-rsa", r.a, 8, &priv);
	EXPECT_RV(rv, CKR_OK, "create an RSA private key with its CRT parts");
	rv = create_key(s, CKO_PUBLIC_KEY, kt, "pt-rsa", r.a, 2, &pub);
	EXPECT_RV(rv, CKR_OK, "create an RSA public key (modulus, public exponent)");
	check_parts_sig(s, priv, pub, &m, pk, EVP_sha256(), 0, "created RSA with CRT");
	rv = create_key(s, CKO_PRIVATE_KEY, kt, "pt-rsa-bare", r.a, 3, &bare);
	EXPECT_RV(rv, CKR_OK, "create an RSA private key from n, e, d only");
	check_parts_sig(s, bare, pub, &m, pk, EVP_sha256(), 0, "created RSA from n, e, d");
	rv = f->C_GetAttributeValue(s, priv, &a, 1);
	EXPECT_RV(rv, CKR_ATTRIBUTE_SENSITIVE, "CKA_PRIVATE_EXPONENT of the created key");
	OPENSSL_cleanse(&r, sizeof(r));
	EVP_PKEY_free(pk);
}

/* Templates the engine must refuse, each with the return code PKCS#11 gives it. */
static void parts_bad(CK_SESSION_HANDLE s)
{
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	unsigned char d[32], zero[32] = {0}, order[32], pt[2 + 65];
	size_t plen = 0;
	struct rsa_parts r, r1;
	CK_OBJECT_HANDLE h;
	EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	CK_RV rv;

	expect(ec != NULL && rsa != NULL && small != NULL && g != NULL &&
	           bn_param(ec, OSSL_PKEY_PARAM_PRIV_KEY, d, 32) == 32 &&
	           BN_bn2binpad(EC_GROUP_get0_order(g), order, 32) == 32 &&
	           EVP_PKEY_get_octet_string_param(ec, OSSL_PKEY_PARAM_PUB_KEY, pt + 2, 65,
	                                           &plen) == 1 &&
	           plen == 65 && rsa_parts(rsa, &r) && rsa_parts(small, &r1),
	       "keys made by OpenSSL");
	pt[0] = 0x04;
	pt[1] = 65;
	{
		CK_ATTRIBUTE a[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)},
		                    {CKA_VALUE, d, 31}};

		rv = create_key(s, CKO_PRIVATE_KEY, CKK_EC, "bad", a, 2, &h);
		EXPECT_RV(rv, CKR_ATTRIBUTE_VALUE_INVALID, "P-256 CKA_VALUE of 31 bytes");
		a[1] = (CK_ATTRIBUTE){CKA_VALUE, zero, 32};
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_EC, "bad", a, 2, &h);
		EXPECT_RV(rv, CKR_ATTRIBUTE_VALUE_INVALID, "P-256 scalar 0");
		a[1] = (CK_ATTRIBUTE){CKA_VALUE, order, 32};
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_EC, "bad", a, 2, &h);
		EXPECT_RV(rv, CKR_ATTRIBUTE_VALUE_INVALID, "P-256 scalar = the group order");
		a[0] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)oid_p521, sizeof(oid_p521)};
		a[1] = (CK_ATTRIBUTE){CKA_VALUE, d, 32};
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_EC, "bad", a, 2, &h);
		EXPECT_RV(rv, CKR_ATTRIBUTE_VALUE_INVALID, "P-521 (not a curve of the engine)");
		a[0] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)oid_ed25519, sizeof(oid_ed25519)};
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_EC, "bad", a, 2, &h);
		EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "Ed25519 params on a CKK_EC key");
		a[0] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)"\x06\x08\x2a", 3};
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_EC, "bad", a, 2, &h);
		EXPECT_RV(rv, CKR_ATTRIBUTE_VALUE_INVALID, "CKA_EC_PARAMS that is not DER");
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_EC, "bad", a, 0, &h);
		EXPECT_RV(rv, CKR_TEMPLATE_INCOMPLETE, "no CKA_EC_PARAMS, no CKA_VALUE");
		a[0] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)};
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_EC, "bad", a, 1, &h);
		EXPECT_RV(rv, CKR_TEMPLATE_INCOMPLETE, "a private key without CKA_VALUE");
		a[1] = (CK_ATTRIBUTE){CKA_EC_POINT, pt, 67};
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_EC, "bad", a, 2, &h);
		EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "CKA_EC_POINT on a private key");
		pt[66] ^= 1;
		rv = create_key(s, CKO_PUBLIC_KEY, CKK_EC, "bad", a, 2, &h);
		EXPECT_RV(rv, CKR_ATTRIBUTE_VALUE_INVALID, "a point off the curve");
		pt[66] ^= 1;
		a[1] = (CK_ATTRIBUTE){CKA_EC_POINT, pt, 66};
		rv = create_key(s, CKO_PUBLIC_KEY, CKK_EC, "bad", a, 2, &h);
		EXPECT_RV(rv, CKR_ATTRIBUTE_VALUE_INVALID, "a point of the wrong length");
	}
	{
		CK_ATTRIBUTE a[8];

		memcpy(a, r.a, sizeof(a));
		r.v[2][r.a[2].ulValueLen - 1] ^= 2; /* d */
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_RSA, "bad", a, 3, &h);
		EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "RSA: a d that is not e's inverse");
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_RSA, "bad", a, 8, &h);
		EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "RSA: a wrong d with right CRT parts");
		r.v[2][r.a[2].ulValueLen - 1] ^= 2;
		r.v[5][r.a[5].ulValueLen - 1] ^= 2; /* dp */
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_RSA, "bad", a, 8, &h);
		EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "RSA: a wrong CKA_EXPONENT_1");
		r.v[5][r.a[5].ulValueLen - 1] ^= 2;
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_RSA, "bad", a, 5, &h);
		EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "RSA: some CRT parts, not all");
		rv = create_key(s, CKO_PUBLIC_KEY, CKK_RSA, "bad", a, 3, &h);
		EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "RSA: a private exponent on a public key");
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_RSA, "bad", r1.a, 8, &h);
		EXPECT_RV(rv, CKR_ATTRIBUTE_VALUE_INVALID, "RSA-1024 (below 2048 bits)");
		a[1] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, (void *)"\x01\x00\x00", 3};
		rv = create_key(s, CKO_PUBLIC_KEY, CKK_RSA, "bad", a, 2, &h);
		EXPECT_RV(rv, CKR_ATTRIBUTE_VALUE_INVALID, "RSA: an even public exponent");
		rv = create_key(s, CKO_PRIVATE_KEY, CKK_RSA, "bad", a, 1, &h);
		EXPECT_RV(rv, CKR_TEMPLATE_INCOMPLETE, "RSA: a modulus alone");
	}
	{
		CK_ATTRIBUTE t[] = {{CKA_LABEL, "bad", 3}};
		CK_OBJECT_HANDLE any[4];

		expect(find_all(s, t, 1, any, 4) == 0, "no refused key left an object");
	}
	OPENSSL_cleanse(&r, sizeof(r));
	OPENSSL_cleanse(&r1, sizeof(r1));
	OPENSSL_cleanse(d, sizeof(d));
	EC_GROUP_free(g);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(small);
}

static void case_parts(const char *slot)
{
	CK_SESSION_HANDLE s = open_on(slot, 1), hs;

	parts_ec(s, 0);
	parts_ec(s, 1);
	parts_ed25519(s);
	parts_rsa(s);
	parts_bad(s);
	f->C_CloseSession(s);
	hs = open_on("v-sw1", 1);
	expect(find_label(hs, "pt-p256") == 0 && find_label(hs, "pt-rsa") == 0,
	       "the member's token has none of them");
	f->C_CloseSession(hs);
}

/* The key of class cls labelled label. */
static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                    {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h[2] = {0};

	return find_all(s, t, 2, h, 2) == 1 ? h[0] : 0;
}

/* A new process: the created keys, opened from the store, sign; their public keys verify. */
static void case_partsuse(const char *slot)
{
	CK_SESSION_HANDLE s = open_on(slot, 1);
	CK_MECHANISM e256 = {CKM_ECDSA_SHA256, NULL, 0}, e384 = {CKM_ECDSA_SHA384, NULL, 0},
	             ed = {CKM_EDDSA, NULL, 0}, rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};

	check_sig(s, find_key(s, CKO_PRIVATE_KEY, "pt-p256"),
	          find_key(s, CKO_PUBLIC_KEY, "pt-p256"), &e256, EVP_sha256(), 1, "stored P-256");
	check_sig(s, find_key(s, CKO_PRIVATE_KEY, "pt-p384"),
	          find_key(s, CKO_PUBLIC_KEY, "pt-p384"), &e384, EVP_sha384(), 1, "stored P-384");
	check_sig(s, find_key(s, CKO_PRIVATE_KEY, "pt-ed25519"),
	          find_key(s, CKO_PUBLIC_KEY, "pt-ed25519"), &ed, NULL, 0, "stored Ed25519");
	check_sig(s, find_key(s, CKO_PRIVATE_KEY, "pt-rsa"), find_key(s, CKO_PUBLIC_KEY, "pt-rsa"),
	          &rsa, EVP_sha256(), 0, "stored RSA");
	check_sig(s, find_key(s, CKO_PRIVATE_KEY, "pt-rsa-bare"),
	          find_key(s, CKO_PUBLIC_KEY, "pt-rsa"), &rsa, EVP_sha256(), 0,
	          "stored RSA made from n, e, d");
	f->C_CloseSession(s);
}

/*
 * pk's PKCS#8, wrapped by OpenSSL with AES key wrap with padding under the
 * HSM's kek; with `other` (an EC key of the same curve), its public point in
 * place of pk's (the last bytes of the PKCS#8 OpenSSL writes).
 */
static size_t wrap_pkcs8(EVP_PKEY *pk, EVP_PKEY *other, unsigned char *out, size_t cap)
{
	PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
	unsigned char *der = NULL, kv[32], pt[65];
	int dl = p8 != NULL ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1, l = 0, l2 = 0, ok;
	EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
	size_t pl = 0;

	PKCS8_PRIV_KEY_INFO_free(p8);
	key_value("key encryption key", kv);
	ok = cc != NULL && dl > 65 && (size_t)dl + 16 <= cap;
	if (ok && other != NULL) {
		ok = EVP_PKEY_get_octet_string_param(other, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt),
		                                     &pl) == 1 &&
		     pl == 65;
		if (ok)
			memcpy(der + dl - 65, pt, 65);
	}
	if (ok) {
		EVP_CIPHER_CTX_set_flags(cc, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
		ok = EVP_EncryptInit_ex(cc, EVP_aes_256_wrap_pad(), NULL, kv, NULL) == 1 &&
		     EVP_EncryptUpdate(cc, out, &l, der, dl) == 1 &&
		     EVP_EncryptFinal_ex(cc, out + l, &l2) == 1;
	}
	EVP_CIPHER_CTX_free(cc);
	OPENSSL_cleanse(kv, sizeof(kv));
	if (der != NULL)
		OPENSSL_clear_free(der, (size_t)dl);
	return ok ? (size_t)(l + l2) : 0;
}

/* C_UnwrapKey of software private keys: PKCS#8 wrapped under the HSM's kek. */
static void case_unwrappriv(void)
{
	CK_SESSION_HANDLE s = open_on("soft", 1), hs;
	CK_OBJECT_HANDLE kek = find_label(s, "kek");
	CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
	CK_MECHANISM e256 = {CKM_ECDSA_SHA256, NULL, 0}, rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
	const char *names[2] = {"uw-p256", "uw-rsa"};

	for (int i = 0; i < 2; i++) {
		EVP_PKEY *pk = i == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
		                      : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
		CK_KEY_TYPE kt = i == 0 ? CKK_EC : CKK_RSA, wrong = i == 0 ? CKK_RSA : CKK_EC;
		CK_ATTRIBUTE t[] = {
		    {CKA_CLASS, &cls, sizeof(cls)},
		    {CKA_KEY_TYPE, &kt, sizeof(kt)},
		    {CKA_TOKEN, &yes, 1},
		    {CKA_P11PROXY_SOFTWARE, &yes, 1},
		    {CKA_SIGN, &yes, 1},
		    {CKA_LABEL, (void *)names[i], strlen(names[i])},
		};
		unsigned char wrapped[2048];
		size_t wl = pk != NULL ? wrap_pkcs8(pk, NULL, wrapped, sizeof(wrapped)) : 0;
		CK_OBJECT_HANDLE k = 0;
		CK_RV rv;

		expect(wl > (i == 0 ? 100u : 1024u) && kek != 0,
		       "a PKCS#8 key wrapped by OpenSSL under the HSM's kek (%zu bytes)", wl);
		t[1].pValue = &wrong;
		rv = f->C_UnwrapKey(s, &m, kek, wrapped, wl, t, 6, &k);
		EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "the wrapped key is of another type");
		if (i == 0) {
			/* An EC key whose PKCS#8 carries another key's public point: not one key.
			 */
			EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
			unsigned char bad[2048];
			size_t bl = other != NULL ? wrap_pkcs8(pk, other, bad, sizeof(bad)) : 0;

			t[1].pValue = &kt;
			rv = bl > 0 ? f->C_UnwrapKey(s, &m, kek, bad, bl, t, 6, &k)
			            : CKR_GENERAL_ERROR;
			EXPECT_RV(rv, CKR_WRAPPED_KEY_INVALID,
			          "a PKCS#8 EC key with a foreign point");
			EVP_PKEY_free(other);
		}
		t[1].pValue = &kt;
		rv = f->C_UnwrapKey(s, &m, kek, wrapped, wl, t, 6, &k);
		EXPECT_RV(rv, CKR_OK,
		          i == 0 ? "C_UnwrapKey of a software EC private key"
		                 : "C_UnwrapKey of a software RSA private key (over 1 KiB)");
		expect(get_bool(s, k, CKA_P11PROXY_SOFTWARE) == 1 &&
		           get_ulong(s, k, CKA_CLASS) == CKO_PRIVATE_KEY,
		       "a software private key");
		check_parts_sig(s, k, 0, i == 0 ? &e256 : &rsa, pk, EVP_sha256(), i == 0,
		                i == 0 ? "unwrapped P-256" : "unwrapped RSA-2048");
		EVP_PKEY_free(pk);
	}
	f->C_CloseSession(s);
	hs = open_on("v-sw1", 1);
	expect(find_label(hs, "uw-p256") == 0 && find_label(hs, "uw-rsa") == 0,
	       "no trace of them on the token");
	f->C_CloseSession(hs);
}

/* The key of class cls labelled label whose CKA_ID is (or, when `is` is 0, is not) id. */
static CK_OBJECT_HANDLE find_idd(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label,
                                 const unsigned char *id, size_t id_len, int is)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                    {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h[8], found = 0;
	CK_ULONG n = find_all(s, t, 2, h, 8), hits = 0;

	for (CK_ULONG i = 0; i < n && i < 8; i++) {
		unsigned char buf[64];
		CK_ATTRIBUTE a = {CKA_ID, buf, sizeof(buf)};
		int same = f->C_GetAttributeValue(s, h[i], &a, 1) == CKR_OK &&
		           a.ulValueLen == id_len && memcmp(buf, id, id_len) == 0;

		if (same == is) {
			found = h[i];
			hits++;
		}
	}
	return hits == 1 ? found : 0;
}

/*
 * After `keys rotate LABEL --id NEWID` of a software key: the successor (CKA_ID
 * newid) is a software key the proxy made (CKA_LOCAL) and does the work; the
 * old key (the other CKA_ID) is left as rotate leaves HSM keys: verify and
 * decrypt only. kind: hmac (value "software hmac"), gcm ("software aes 2"), ec.
 */
static void case_rotated(const char *slot, const char *label, const char *idhex, const char *kind)
{
	CK_SESSION_HANDLE s = open_on(slot, 1);
	unsigned char id[32];
	long idl = 0;
	unsigned char *idb = OPENSSL_hexstr2buf(idhex, &idl);
	int pair = strcmp(kind, "ec") == 0 || strcmp(kind, "ed") == 0 || strcmp(kind, "rsa") == 0;
	CK_OBJECT_CLASS cls = pair ? CKO_PRIVATE_KEY : CKO_SECRET_KEY;
	CK_OBJECT_HANDLE nk, ok;
	CK_RV rv;

	expect(idb != NULL && idl > 0 && idl <= 32, "the new CKA_ID");
	memcpy(id, idb, (size_t)idl);
	OPENSSL_free(idb);
	nk = find_idd(s, cls, label, id, (size_t)idl, 1);
	ok = find_idd(s, cls, label, id, (size_t)idl, 0);
	expect(nk != 0 && ok != 0 && nk != ok, "the old and the new key are both found (%lu, %lu)",
	       nk, ok);
	expect(get_bool(s, nk, CKA_P11PROXY_SOFTWARE) == 1 && get_bool(s, nk, CKA_LOCAL) == 1 &&
	           get_bool(s, nk, CKA_TOKEN) == 1 &&
	           get_bool(s, nk, CKA_SENSITIVE) == get_bool(s, ok, CKA_SENSITIVE) &&
	           get_ulong(s, nk, CKA_KEY_TYPE) == get_ulong(s, ok, CKA_KEY_TYPE),
	       "the successor: a software token key made by the proxy, of the old key's type");
	{
		/* Finds by usage see the virtual permissions: the successor signs or encrypts. */
		CK_BBOOL t = CK_TRUE;
		CK_ATTRIBUTE ft[] = {{CKA_CLASS, &cls, sizeof(cls)},
		                     {CKA_LABEL, (void *)label, strlen(label)},
		                     {strcmp(kind, "gcm") == 0 ? CKA_ENCRYPT : CKA_SIGN, &t, 1}};
		CK_ATTRIBUTE fl[] = {{CKA_LABEL, (void *)label, strlen(label)},
		                     {ft[2].type, &t, 1}};
		CK_OBJECT_HANDLE fh[8];
		CK_ULONG fn = find_all(s, ft, 3, fh, 8);

		expect(fn == 1 && fh[0] == nk,
		       "{CKA_CLASS, CKA_LABEL, %s true} finds the successor only (%lu found)",
		       strcmp(kind, "gcm") == 0 ? "CKA_ENCRYPT" : "CKA_SIGN", fn);
		fn = find_all(s, fl, 2, fh, 8);
		expect(fn == 1 && fh[0] == nk,
		       "{CKA_LABEL, %s true} finds the successor only (%lu found)",
		       strcmp(kind, "gcm") == 0 ? "CKA_ENCRYPT" : "CKA_SIGN", fn);
		t = CK_FALSE;
		fn = find_all(s, ft, 3, fh, 8);
		expect(fn == 1 && fh[0] == ok,
		       "{..., %s false} finds the rotated key only (%lu found)",
		       strcmp(kind, "gcm") == 0 ? "CKA_ENCRYPT" : "CKA_SIGN", fn);
	}
	if (strcmp(kind, "hmac") == 0) {
		unsigned char mac[32], ref[32], v[32];
		CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};

		rv = hmac(s, nk, (const unsigned char *)"m", 1, mac);
		EXPECT_RV(rv, CKR_OK, "the successor signs (HMAC)");
		key_value("software hmac", v);
		expect(ref_hmac(v, 32, (const unsigned char *)"m", 1, ref) &&
		           memcmp(mac, ref, 32) != 0,
		       "with a new value");
		rv = f->C_VerifyInit(s, &m, nk);
		if (rv == CKR_OK)
			rv = f->C_Verify(s, (CK_BYTE_PTR) "m", 1, mac, 32);
		EXPECT_RV(rv, CKR_OK, "the successor verifies its MAC");
		rv = hmac(s, ok, (const unsigned char *)"m", 1, mac);
		EXPECT_RV(rv, CKR_KEY_FUNCTION_NOT_PERMITTED, "the rotated key no longer signs");
		rv = f->C_VerifyInit(s, &m, ok);
		if (rv == CKR_OK)
			rv = f->C_Verify(s, (CK_BYTE_PTR) "m", 1, ref, 32);
		EXPECT_RV(rv, CKR_OK, "the rotated key still verifies what it made");
		OPENSSL_cleanse(v, sizeof(v));
	} else if (strcmp(kind, "gcm") == 0) {
		unsigned char iv[12] = "rotate-iv-12", ct[64], pt[64], v[32];
		CK_ULONG n = sizeof(ct), pn = sizeof(pt);

		rv = gcm(s, nk, 1, iv, (const unsigned char *)"rotated", 7, ct, &n);
		if (rv == CKR_OK)
			rv = gcm(s, nk, 0, iv, ct, n, pt, &pn);
		expect(rv == CKR_OK && pn == 7 && memcmp(pt, "rotated", 7) == 0,
		       "the successor encrypts and decrypts (AES-GCM) (%s)", testmod_ckr(rv));
		n = sizeof(ct);
		rv = gcm(s, ok, 1, iv, (const unsigned char *)"rotated", 7, ct, &n);
		EXPECT_RV(rv, CKR_KEY_FUNCTION_NOT_PERMITTED, "the rotated key no longer encrypts");
		key_value("software aes 2", v);
		pn = sizeof(pt);
		rv = ref_gcm(v, iv, (const unsigned char *)"rotated", 7, ct)
		         ? gcm(s, ok, 0, iv, ct, 7 + 16, pt, &pn)
		         : CKR_GENERAL_ERROR;
		expect(rv == CKR_OK && pn == 7 && memcmp(pt, "rotated", 7) == 0,
		       "the rotated key still decrypts what it encrypted (%s)", testmod_ckr(rv));
		OPENSSL_cleanse(v, sizeof(v));
	} else {
		int ec = strcmp(kind, "ec") == 0, ed = strcmp(kind, "ed") == 0;
		CK_MECHANISM m = {ec   ? CKM_ECDSA_SHA256
		                  : ed ? CKM_EDDSA
		                       : CKM_SHA256_RSA_PKCS,
		                  NULL, 0};
		CK_OBJECT_HANDLE np = find_idd(s, CKO_PUBLIC_KEY, label, id, (size_t)idl, 1);
		CK_OBJECT_HANDLE op = find_idd(s, CKO_PUBLIC_KEY, label, id, (size_t)idl, 0);
		unsigned char sig[600], a[600], b[600];
		CK_ATTRIBUTE ta = {ec || ed ? CKA_EC_PARAMS : CKA_MODULUS_BITS, a, sizeof(a)};
		CK_ATTRIBUTE tb = {ta.type, b, sizeof(b)};
		CK_ULONG n = sizeof(sig);

		expect(np != 0 && get_bool(s, np, CKA_P11PROXY_SOFTWARE) == 1,
		       "the successor's public key, a software key");
		expect(op != 0 && f->C_GetAttributeValue(s, np, &ta, 1) == CKR_OK &&
		           f->C_GetAttributeValue(s, op, &tb, 1) == CKR_OK &&
		           ta.ulValueLen == tb.ulValueLen && memcmp(a, b, ta.ulValueLen) == 0,
		       "the new pair is on the old one's curve / of its size");
		check_sig(s, nk, np, &m, ec || !ed ? EVP_sha256() : NULL, ec ? 1 : 0,
		          "the successor pair");
		rv = f->C_SignInit(s, &m, ok);
		if (rv == CKR_OK)
			rv = f->C_Sign(s, (CK_BYTE_PTR) "message", 7, sig, &n);
		EXPECT_RV(rv, CKR_KEY_FUNCTION_NOT_PERMITTED,
		          "the rotated private key no longer signs");
	}
	f->C_CloseSession(s);
}

/* ---- cases ---- */

/* C_UnwrapKey of a software key: the HSM unwraps (AES key wrap under "kek"), the proxy keeps it. */
static void case_unwrap(void)
{
	CK_SESSION_HANDLE s = open_on("soft", 1), hs;
	CK_OBJECT_HANDLE kek = find_label(s, "kek"), k = 0;
	CK_MECHANISM m = {CKM_AES_KEY_WRAP, NULL, 0};
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_TOKEN, &yes, 1},
	    {CKA_P11PROXY_SOFTWARE, &yes, 1},
	    {CKA_ENCRYPT, &yes, 1},
	    {CKA_DECRYPT, &yes, 1},
	    {CKA_LABEL, "sk-unwrapped", 12},
	};
	unsigned char kv[32], v[32], wrapped[40];
	EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
	int l = 0, l2 = 0, ok;
	CK_RV rv;

	key_value("key encryption key", kv);
	key_value("unwrapped aes", v);
	EVP_CIPHER_CTX_set_flags(cc, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	ok = cc != NULL && EVP_EncryptInit_ex(cc, EVP_aes_256_wrap(), NULL, kv, NULL) == 1 &&
	     EVP_EncryptUpdate(cc, wrapped, &l, v, 32) == 1 &&
	     EVP_EncryptFinal_ex(cc, wrapped + l, &l2) == 1 && l + l2 == 40;
	EVP_CIPHER_CTX_free(cc);
	OPENSSL_cleanse(kv, sizeof(kv));
	OPENSSL_cleanse(v, sizeof(v));
	expect(ok && kek != 0, "a key wrapped by OpenSSL under the HSM's kek");
	rv = f->C_UnwrapKey(s, &m, kek, wrapped, 40, t, 7, &k);
	EXPECT_RV(rv, CKR_OK, "C_UnwrapKey of a software key");
	expect(get_bool(s, k, CKA_P11PROXY_SOFTWARE) == 1 && get_bool(s, k, CKA_TOKEN) == 1 &&
	           get_bool(s, k, CKA_LOCAL) == 0,
	       "a software token key, not LOCAL");
	check_gcm(s, k, "unwrapped aes", "unwrapped key");
	f->C_CloseSession(s);
	hs = open_on("v-sw1", 1);
	expect(find_label(hs, "sk-unwrapped") == 0, "no trace of it on the token");
	f->C_CloseSession(hs);
}

/* One operation with the key labelled `label`: its result must be `want` (a CKR_ name). */
static void case_op(const char *slot, const char *label, const char *kind, const char *want)
{
	CK_SESSION_HANDLE s = open_on(slot, 1);
	CK_OBJECT_HANDLE k = find_label(s, label);
	unsigned char out[128], iv[12] = {0};
	CK_ULONG n = sizeof(out);
	CK_RV rv = strcmp(kind, "hmac") == 0
	               ? hmac(s, k, (const unsigned char *)"m", 1, out)
	               : gcm(s, k, 1, iv, (const unsigned char *)"m", 1, out, &n);

	expect(k != 0 && strcmp(testmod_ckr(rv), want) == 0, "%s with %s: %s (want %s)", kind,
	       label, testmod_ckr(rv), want);
	f->C_CloseSession(s);
}

/*
 * The same operation twice in one session of one process: `want1` first;
 * then "ready" is printed and stdin read to its end (the suite changes the
 * key's record with the CLI meanwhile); then the operation is made again
 * until it returns `want2`, for 3 s at most. A process that kept the record's
 * state or permissions past a change of the store would go on with `want1`.
 */
static void case_opagain(const char *slot, const char *label, const char *kind, const char *want1,
                         const char *want2)
{
	CK_SESSION_HANDLE s = open_on(slot, 1);
	CK_OBJECT_HANDLE k = find_label(s, label);
	unsigned char out[128], iv[12] = {0};
	const char *got = "";
	int ch;

	for (int round = 0; round < 2; round++) {
		const char *want = round == 0 ? want1 : want2;
		struct timespec end, now;

		clock_gettime(CLOCK_MONOTONIC, &end);
		end.tv_sec += 3;
		do {
			CK_ULONG n = sizeof(out);
			CK_RV rv = strcmp(kind, "hmac") == 0
			               ? hmac(s, k, (const unsigned char *)"m", 1, out)
			               : gcm(s, k, 1, iv, (const unsigned char *)"m", 1, out, &n);
			struct timespec pause = {0, 20 * 1000 * 1000};

			got = testmod_ckr(rv);
			if (round == 0 || strcmp(got, want) == 0)
				break;
			nanosleep(&pause, NULL);
			clock_gettime(CLOCK_MONOTONIC, &now);
		} while (now.tv_sec < end.tv_sec ||
		         (now.tv_sec == end.tv_sec && now.tv_nsec < end.tv_nsec));
		expect(k != 0 && strcmp(got, want) == 0, "%s with %s, %s the change: %s (want %s)",
		       kind, label, round == 0 ? "before" : "after", got, want);
		if (round == 0) {
			printf("ready\n");
			fflush(stdout);
			while ((ch = getchar()) != EOF)
				;
		}
	}
	f->C_CloseSession(s);
}

static void case_setup(void)
{
	const char *tokens[] = {"v-sw1", "v-sw2"};

	for (int i = 0; i < 2; i++) {
		CK_SESSION_HANDLE s = open_on(tokens[i], 1);

		import_hsm(s, "wrap-a", "wrapping key a", CKK_AES);
		import_hsm(s, "wrap-b", "wrapping key b", CKK_AES);
		import_hsm(s, "cf-key", "fragment base key", CKK_GENERIC_SECRET);
		import_hsm(s, "kek", "key encryption key", CKK_AES);
		f->C_CloseSession(s);
	}
}

static void case_create(const char *slot)
{
	CK_SESSION_HANDLE s = open_on(slot, 1), hs;
	CK_OBJECT_HANDLE ka, kh, found[16];
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE tsw[] = {{CKA_P11PROXY_SOFTWARE, &yes, 1}};
	CK_ATTRIBUTE tcls[] = {{CKA_CLASS, &cls, sizeof(cls)}};
	unsigned char buf[64];
	CK_ATTRIBUTE val = {CKA_VALUE, buf, sizeof(buf)};
	CK_ULONG n;
	CK_RV rv;

	rv = create_sw(s, "sk-aes", 1, CKK_AES, "software aes", CK_TRUE, &ka);
	EXPECT_RV(rv, CKR_OK, "create a software AES-256 token key");
	rv = create_sw(s, "sk-hmac", 2, CKK_GENERIC_SECRET, "software hmac", CK_TRUE, &kh);
	EXPECT_RV(rv, CKR_OK, "create a software HMAC token key");
	rv = create_sw(s, "sk-aes2", 3, CKK_AES, "software aes 2", CK_TRUE, &found[0]);
	EXPECT_RV(rv, CKR_OK, "create a second software AES-256 token key");
	expect(get_bool(s, ka, CKA_TOKEN) == 1 && get_bool(s, ka, CKA_P11PROXY_SOFTWARE) == 1 &&
	           get_bool(s, ka, CKA_SENSITIVE) == 1 && get_bool(s, ka, CKA_LOCAL) == 0 &&
	           get_bool(s, ka, CKA_ENCRYPT) == 1 && get_bool(s, ka, CKA_SIGN) == 0,
	       "TOKEN, CKA_P11PROXY_SOFTWARE, SENSITIVE true; LOCAL false; usage as created");
	expect(get_ulong(s, ka, CKA_CLASS) == CKO_SECRET_KEY &&
	           get_ulong(s, ka, CKA_KEY_TYPE) == CKK_AES &&
	           get_ulong(s, ka, CKA_VALUE_LEN) == 32,
	       "class, key type, length");
	rv = f->C_GetAttributeValue(s, ka, &val, 1);
	expect(rv == CKR_ATTRIBUTE_SENSITIVE && val.ulValueLen == CK_UNAVAILABLE_INFORMATION,
	       "CKA_VALUE of a sensitive software key: CKR_ATTRIBUTE_SENSITIVE (%s)",
	       testmod_ckr(rv));
	check_gcm(s, ka, "software aes", "created key");
	check_hmac(s, kh, "software hmac", "created key");
	n = find_all(s, tsw, 1, found, 16);
	expect(n == 3, "a find for CKA_P11PROXY_SOFTWARE true: the 3 software keys (%lu)", n);
	n = find_all(s, tcls, 1, found, 16);
	expect(n == 7, "secret keys: 3 software keys + wrap-a, wrap-b, cf-key, kek (%lu)", n);
	f->C_CloseSession(s);
	/* The token itself holds no such key: only the index has it, encrypted. */
	hs = open_on("v-sw1", 1);
	expect(find_label(hs, "sk-aes") == 0 && find_label(hs, "wrap-a") != 0,
	       "the member's token has no object sk-aes");
	f->C_CloseSession(hs);
}

/* A new process: the stored keys are found and opened (HSM C_Decrypt calls counted). */
static void case_use(const char *slot, const char *want)
{
	CK_SESSION_HANDLE s = open_on(slot, 1);
	CK_OBJECT_HANDLE ka = find_label(s, "sk-aes"), kh = find_label(s, "sk-hmac");
	long from = log_lines();

	expect(ka != 0 && kh != 0, "the software keys are found in a new process");
	if (strcmp(want, "refused") == 0) {
		unsigned char ct[64], iv[12] = {0};
		CK_ULONG n = sizeof(ct);
		CK_RV rv = gcm(s, ka, 1, iv, (const unsigned char *)"x", 1, ct, &n);

		EXPECT_RV(rv, CKR_FUNCTION_FAILED, "the key is refused");
	} else {
		check_gcm(s, ka, "software aes", "stored key");
		check_hmac(s, kh, "software hmac", "stored key");
		check_gcm(s, ka, "software aes", "again");
		expect(log_count(from, "C_Decrypt ", "CKR_OK") == atol(want),
		       "HSM C_Decrypt calls: %ld (want %s: one per key, then cached)",
		       log_count(from, "C_Decrypt ", "CKR_OK"), want);
	}
	f->C_CloseSession(s);
}

static void case_generate(void)
{
	CK_SESSION_HANDLE s = open_on("soft-new", 1);
	CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ULONG len = 32;
	CK_ATTRIBUTE t[] = {
	    {CKA_TOKEN, &yes, 1},   {CKA_VALUE_LEN, &len, sizeof(len)},
	    {CKA_LABEL, "gen", 3},  {CKA_ENCRYPT, &yes, 1},
	    {CKA_DECRYPT, &yes, 1},
	};
	CK_ATTRIBUTE ts[] = {
	    {CKA_TOKEN, &no, 1},
	    {CKA_VALUE_LEN, &len, sizeof(len)},
	    {CKA_P11PROXY_SOFTWARE, &yes, 1},
	    {CKA_LABEL, "sess", 4},
	};
	unsigned char data[100], ct[200], pt[200], iv[12] = "generated-iv";
	CK_OBJECT_HANDLE k = 0, ks = 0;
	CK_ULONG n = sizeof(ct);
	CK_RV rv;

	memset(data, 7, sizeof(data));
	rv = f->C_GenerateKey(s, &m, t, 5, &k);
	EXPECT_RV(rv, CKR_OK, "new_keys: C_GenerateKey of a token AES key");
	expect(get_bool(s, k, CKA_P11PROXY_SOFTWARE) == 1 && get_bool(s, k, CKA_LOCAL) == 1 &&
	           get_bool(s, k, CKA_ALWAYS_SENSITIVE) == 1 &&
	           get_bool(s, k, CKA_NEVER_EXTRACTABLE) == 1,
	       "it is a software key: SOFTWARE, LOCAL, ALWAYS_SENSITIVE, NEVER_EXTRACTABLE");
	rv = gcm(s, k, 1, iv, data, sizeof(data), ct, &n);
	EXPECT_RV(rv, CKR_OK, "encrypt with it");
	n = sizeof(pt);
	rv = gcm(s, k, 0, iv, ct, sizeof(data) + 16, pt, &n);
	expect(rv == CKR_OK && n == sizeof(data) && memcmp(pt, data, n) == 0,
	       "decrypt with it (%s)", testmod_ckr(rv));
	rv = f->C_GenerateKey(s, &m, ts, 4, &ks);
	EXPECT_RV(rv, CKR_OK, "a software session key (CKA_TOKEN false)");
	expect(get_bool(s, ks, CKA_TOKEN) == 0 && get_bool(s, ks, CKA_P11PROXY_SOFTWARE) == 1,
	       "TOKEN false, SOFTWARE true");
	rv = f->C_DestroyObject(s, k);
	EXPECT_RV(rv, CKR_OK, "destroy the token software key");
	expect(find_label(s, "gen") == 0, "gone from finds");
	f->C_CloseSession(s);
	/* Without software_keys: the attribute is refused, nothing is made. */
	s = open_on("plain", 1);
	rv = f->C_GenerateKey(s, &m, ts, 4, &ks);
	EXPECT_RV(rv, CKR_TEMPLATE_INCONSISTENT, "CKA_P11PROXY_SOFTWARE on a slot without it");
	t[2].pValue = "hsm";
	rv = f->C_GenerateKey(s, &m, t, 5, &k);
	EXPECT_RV(rv, CKR_OK, "an ordinary key there");
	expect(get_bool(s, k, CKA_P11PROXY_SOFTWARE) != 1, "is an HSM key");
	f->C_CloseSession(s);
}

static void case_idle(void)
{
	CK_SESSION_HANDLE s = open_on("soft-idle", 1);
	CK_OBJECT_HANDLE k;
	long from;
	CK_RV rv = create_sw(s, "idle", 9, CKK_AES, "idle aes", CK_TRUE, &k);

	EXPECT_RV(rv, CKR_OK, "create a software key");
	from = log_lines();
	check_gcm(s, k, "idle aes", "just created");
	expect(log_count(from, "C_Decrypt ", NULL) == 0, "held since its creation: no HSM call");
	msleep(600);
	from = log_lines();
	check_gcm(s, k, "idle aes", "idle past cache_idle");
	expect(log_count(from, "C_Decrypt ", "CKR_OK") == 1,
	       "evicted after 300ms idle: opened again by the HSM (%ld)",
	       log_count(from, "C_Decrypt ", "CKR_OK"));
	from = log_lines();
	check_gcm(s, k, "idle aes", "used again at once");
	expect(log_count(from, "C_Decrypt ", NULL) == 0, "cached again: no HSM call");
	f->C_CloseSession(s);
}

/* The lines of the debug file ($P11PROXY_DEBUG_FILE) telling of an eviction on slot soft-idle. */
static long debug_count(void)
{
	const char *path = getenv("P11PROXY_DEBUG_FILE");
	FILE *fp = path != NULL ? fopen(path, "r") : NULL;
	char line[1024];
	long n = 0;

	if (fp == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
		n += strstr(line, "slot 'soft-idle': software key ") != NULL &&
		     strstr(line, " evicted") != NULL;
	fclose(fp);
	return n;
}

/*
 * Eviction without a call (P11PROXY_DEBUG=object, P11PROXY_DEBUG_FILE set by
 * the suite): after its use the key is evicted by the probe thread while the
 * application makes no PKCS#11 call at all (within a generous 10 s), then
 * opened again by the HSM at the next use.
 */
static void case_idlebg(void)
{
	CK_SESSION_HANDLE s = open_on("soft-idle", 1);
	CK_OBJECT_HANDLE k;
	long from, before;
	int waited = 0;
	CK_RV rv = create_sw(s, "idlebg", 9, CKK_AES, "idle aes", CK_TRUE, &k);

	EXPECT_RV(rv, CKR_OK, "create a software key");
	check_gcm(s, k, "idle aes", "just created");
	before = debug_count();
	expect(getenv("P11PROXY_DEBUG_FILE") != NULL, "P11PROXY_DEBUG_FILE is set");
	from = log_lines();
	while (debug_count() == before && waited < 10000) {
		msleep(50);
		waited += 50;
	}
	expect(debug_count() > before,
	       "evicted past cache_idle with no call in between (after %d ms)", waited);
	expect(log_lines() == from, "no PKCS#11 call reached the HSM meanwhile");
	from = log_lines();
	check_gcm(s, k, "idle aes", "used after the eviction");
	expect(log_count(from, "C_Decrypt ", "CKR_OK") == 1, "opened again by the HSM (%ld)",
	       log_count(from, "C_Decrypt ", "CKR_OK"));
	f->C_CloseSession(s);
}

static void case_nokey(void)
{
	CK_SESSION_HANDLE s = open_on("soft-nokey", 1);
	CK_OBJECT_HANDLE k;
	CK_RV rv = create_sw(s, "nokey", 3, CKK_AES, "nokey aes", CK_TRUE, &k);

	EXPECT_RV(rv, CKR_FUNCTION_FAILED, "a missing wrapping key: creation refused");
	f->C_CloseSession(s);
}

/* The member doing the unwrap fails: the session moves and the unwrap happens on sw2. */
static void case_failover(void)
{
	CK_SESSION_HANDLE s = open_on("soft", 1);
	CK_OBJECT_HANDLE k = find_label(s, "sk-aes");
	long from = log_lines();

	expect(k != 0, "the software key is found");
	control("sw1 fail CKR_DEVICE_ERROR\n");
	check_gcm(s, k, "software aes", "member sw1 down at first use");
	expect(log_count(from, "C_Decrypt sw2", "CKR_OK") == 1, "the blob was opened on sw2 (%ld)",
	       log_count(from, "C_Decrypt sw2", "CKR_OK"));
	control("");
	f->C_CloseSession(s);
}

/*
 * Holds the software keys (AES, and HMAC: the engine keeps each HMAC key's
 * keyed SHA-2 states, inner and outer, for SHA-256 and SHA-512 here) and a
 * fragment-derived key in use, prints "ready", waits until stdin closes (the
 * suite takes a core dump meanwhile, and searches it for the key values and
 * for those states: case hmacstates).
 */
static void case_hold(void)
{
	CK_SESSION_HANDLE s = open_on("soft", 1);
	/* sk-hmac's keys: 78-swkeys has rotated it (the old key verifies only). */
	CK_ATTRIBUTE th[] = {{CKA_LABEL, (void *)"sk-hmac", 7}};
	CK_OBJECT_HANDLE k = find_label(s, "sk-aes"), base = find_label(s, "cf-key"), d = 0, kh = 0;
	unsigned char mac[32];
	P11PROXY_FRAGMENT_DERIVE_PARAMS p = {(CK_BYTE_PTR) "fragment", 8, (CK_BYTE_PTR) "ctx", 3};
	CK_MECHANISM m = {CKM_P11PROXY_FRAGMENT_DERIVE, &p, sizeof(p)};
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG len = 32;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_VALUE_LEN, &len, sizeof(len)},
	    {CKA_SENSITIVE, &yes, 1},
	};
	unsigned char data[64] = {0}, ct[100], iv[12] = "hold-iv-1234", v[32];
	CK_ULONG n = sizeof(ct);
	CK_OBJECT_HANDLE hk[4] = {0};
	CK_RV rv;
	int ch;

	/* The one that signs. */
	for (CK_ULONG i = 0, nk = find_all(s, th, 1, hk, 4); i < nk && i < 4 && kh == 0; i++)
		if (hmac(s, hk[i], data, sizeof(data), mac) == CKR_OK)
			kh = hk[i];
	rv = gcm(s, k, 1, iv, data, sizeof(data), ct, &n);
	EXPECT_RV(rv, CKR_OK, "the software key in use");
	for (int i = 0; i < 3; i++) {
		rv = hmac(s, kh, data, sizeof(data), mac);
		EXPECT_RV(rv, CKR_OK, "the software HMAC key in use");
	}
	/*
	 * The rotated sk-hmac (value "software hmac", verify-only) verifies a MAC
	 * OpenSSL made with SHA-256 and SHA-512: its keyed states are then kept.
	 */
	key_value("software hmac", v);
	for (int dg = 0; dg < 2; dg++) {
		CK_MECHANISM hm = {dg == 0 ? CKM_SHA256_HMAC : CKM_SHA512_HMAC, NULL, 0};
		unsigned char ref[64];
		size_t rl = 0;
		int ok = 0;

		if (EVP_Q_mac(NULL, "HMAC", NULL, dg == 0 ? "SHA256" : "SHA512", NULL, v, sizeof(v),
		              data, sizeof(data), ref, sizeof(ref), &rl) == NULL)
			rl = 0;
		for (CK_ULONG i = 0, nk = find_all(s, th, 1, hk, 4); i < nk && i < 4; i++)
			if (f->C_VerifyInit(s, &hm, hk[i]) == CKR_OK &&
			    f->C_Verify(s, data, sizeof(data), ref, rl) == CKR_OK)
				ok++;
		expect(ok == 1, "the old HMAC key verifies with %s (%d keys did)",
		       dg == 0 ? "SHA-256" : "SHA-512", ok);
		OPENSSL_cleanse(ref, sizeof(ref));
	}
	OPENSSL_cleanse(v, sizeof(v));
	rv = f->C_DeriveKey(s, &m, base, t, 4, &d);
	EXPECT_RV(rv, CKR_OK, "a fragment-derived key");
	n = sizeof(ct);
	rv = gcm(s, d, 1, iv, data, sizeof(data), ct, &n);
	EXPECT_RV(rv, CKR_OK, "the derived key in use");
	printf("ready\n");
	fflush(stdout);
	while ((ch = getchar()) != EOF)
		;
	f->C_CloseSession(s);
}

/*
 * For case hold's core-dump check: the HMAC keyed states of the key with the
 * value of `name` (SHA-256 inner, outer; SHA-512 inner, outer), each the
 * digest's chaining words as they lie in memory, one hex line each. Run in
 * a process of its own (not the one dumped).
 */
static void case_hmacstates(const char *name)
{
	unsigned char k[32], pad[128];
	SHA256_CTX c256;
	SHA512_CTX c512;

	key_value(name, k);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	for (int x = 0; x < 2; x++) {
		for (int i = 0; i < 64; i++)
			pad[i] = (unsigned char)((i < 32 ? k[i] : 0) ^ (x ? 0x5c : 0x36));
		SHA256_Init(&c256);
		SHA256_Update(&c256, pad, 64);
		for (size_t i = 0; i < sizeof(c256.h); i++)
			printf("%02x", ((const unsigned char *)c256.h)[i]);
		printf("\n");
	}
	for (int x = 0; x < 2; x++) {
		for (int i = 0; i < 128; i++)
			pad[i] = (unsigned char)((i < 32 ? k[i] : 0) ^ (x ? 0x5c : 0x36));
		SHA512_Init(&c512);
		SHA512_Update(&c512, pad, 128);
		for (size_t i = 0; i < sizeof(c512.h); i++)
			printf("%02x", ((const unsigned char *)c512.h)[i]);
		printf("\n");
	}
#pragma GCC diagnostic pop
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(pad, sizeof(pad));
}

int main(int argc, char **argv)
{
	const char *c;

	if (argc < 5) {
		fprintf(stderr, "usage: swkeytest MODULE CONTROL LOG CASE [ARGS]\n");
		return 2;
	}
	control_path = argv[2];
	log_path = argv[3];
	c = argv[4];
	control("");
	if (!testmod_load(&mod, argv[1]))
		return 1;
	f = mod.f;
	if (strcmp(c, "setup") == 0)
		case_setup();
	else if (strcmp(c, "create") == 0 && argc > 5)
		case_create(argv[5]);
	else if (strcmp(c, "use") == 0 && argc > 6)
		case_use(argv[5], argv[6]);
	else if (strcmp(c, "unwrap") == 0)
		case_unwrap();
	else if (strcmp(c, "op") == 0 && argc > 8)
		case_op(argv[5], argv[6], argv[7], argv[8]);
	else if (strcmp(c, "opagain") == 0 && argc > 9)
		case_opagain(argv[5], argv[6], argv[7], argv[8], argv[9]);
	else if (strcmp(c, "mechs") == 0 && argc > 5)
		case_mechs(argv[5]);
	else if (strcmp(c, "generate") == 0)
		case_generate();
	else if (strcmp(c, "idle") == 0)
		case_idle();
	else if (strcmp(c, "idlebg") == 0)
		case_idlebg();
	else if (strcmp(c, "nokey") == 0)
		case_nokey();
	else if (strcmp(c, "failover") == 0)
		case_failover();
	else if (strcmp(c, "hold") == 0)
		case_hold();
	else if (strcmp(c, "hmacstates") == 0 && argc > 5)
		case_hmacstates(argv[5]);
	else if (strcmp(c, "parts") == 0 && argc > 5)
		case_parts(argv[5]);
	else if (strcmp(c, "partsuse") == 0 && argc > 5)
		case_partsuse(argv[5]);
	else if (strcmp(c, "unwrappriv") == 0)
		case_unwrappriv();
	else if (strcmp(c, "rotated") == 0 && argc > 8)
		case_rotated(argv[5], argv[6], argv[7], argv[8]);
	else {
		fprintf(stderr, "unknown case %s\n", c);
		return 2;
	}
	testmod_unload(&mod);
	return checks_verdict();
}
