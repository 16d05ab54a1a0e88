/*
 * Crypto engines: HKDF (RFC 5869 vectors), software keys (AES-GCM, HMAC),
 * customer fragment files. The fragment catalogue in tests/data/fragments/
 * is copied into a temp directory with mode 0600 (git keeps no modes).
 */
#include <check.h>
#include <openssl/evp.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/secret.h"
#include "crypto/cipher.h"
#include "crypto/fragment.h"
#include "crypto/hkdf.h"
#include "base/ossl.h"
#include "crypto/swkey.h"

#ifndef P11P_TEST_SRCDIR
#define P11P_TEST_SRCDIR "tests"
#endif
#define DATA P11P_TEST_SRCDIR "/data/fragments/"

static char tmpdir[256];

/* ---- helpers --------------------------------------------------------------- */

static size_t unhex(const char *hex, unsigned char *out, size_t max)
{
	size_t n = strlen(hex) / 2;

	ck_assert_uint_le(n, max);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (unsigned char)v;
	}
	return n;
}

static void assert_hex(const unsigned char *got, size_t len, const char *want)
{
	unsigned char w[8192];
	size_t n = unhex(want, w, sizeof(w));

	ck_assert_uint_eq(len, n);
	ck_assert_msg(memcmp(got, w, n) == 0, "bytes differ from %s", want);
}

static void fill_range(unsigned char *b, unsigned from, unsigned to)
{
	for (unsigned i = from; i <= to; i++)
		b[i - from] = (unsigned char)i;
}

/* ---- HKDF ------------------------------------------------------------------- */

struct hkdf_case {
	unsigned char ikm[80], salt[80], info[80];
	size_t ikm_len, salt_len, info_len, okm_len;
	const char *prk, *okm;
};

static void rfc5869_case(int i, struct hkdf_case *c)
{
	memset(c, 0, sizeof(*c));
	switch (i) {
	case 0: /* Test Case 1 */
		memset(c->ikm, 0x0b, 22);
		c->ikm_len = 22;
		fill_range(c->salt, 0x00, 0x0c);
		c->salt_len = 13;
		fill_range(c->info, 0xf0, 0xf9);
		c->info_len = 10;
		c->okm_len = 42;
		c->prk = "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5";
		c->okm =
		    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5"
		    "b887185865";
		break;
	case 1: /* Test Case 2: longer inputs and outputs */
		fill_range(c->ikm, 0x00, 0x4f);
		c->ikm_len = 80;
		fill_range(c->salt, 0x60, 0xaf);
		c->salt_len = 80;
		fill_range(c->info, 0xb0, 0xff);
		c->info_len = 80;
		c->okm_len = 82;
		c->prk = "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244";
		c->okm =
		    "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99ca"
		    "c7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c"
		    "01d5c1f3434f1d87";
		break;
	default: /* Test Case 3: zero-length salt and info */
		memset(c->ikm, 0x0b, 22);
		c->ikm_len = 22;
		c->okm_len = 42;
		c->prk = "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04";
		c->okm =
		    "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395fa"
		    "a4b61a96c8";
		break;
	}
}

START_TEST(test_hkdf_rfc5869)
{
	struct hkdf_case c;
	struct p11p_hkdf_salt salt;
	struct p11p_secret *prk = NULL, *okm = NULL;

	rfc5869_case(_i, &c);
	salt.salt = c.salt_len ? c.salt : NULL;
	salt.len = c.salt_len;
	ck_assert_int_eq(p11p_hkdf_extract(p11p_hkdf_sw_extract, &salt, c.ikm, c.ikm_len, &prk),
	                 CKR_OK);
	assert_hex(p11p_secret_data(prk), p11p_secret_len(prk), c.prk);
	ck_assert_int_eq(p11p_hkdf_expand(prk, c.info, c.info_len, c.okm_len, &okm), CKR_OK);
	assert_hex(p11p_secret_data(okm), p11p_secret_len(okm), c.okm);
	p11p_secret_free(okm);
	okm = NULL;
	ck_assert_int_eq(p11p_hkdf(p11p_hkdf_sw_extract, &salt, c.ikm, c.ikm_len,
	                           c.info_len ? c.info : NULL, c.info_len, c.okm_len, &okm),
	                 CKR_OK);
	assert_hex(p11p_secret_data(okm), p11p_secret_len(okm), c.okm);
	p11p_secret_free(okm);
	p11p_secret_free(prk);
}
END_TEST

struct fake_extract {
	int calls;
	CK_RV rv;
};

static CK_RV fake_extract(void *ctx, const unsigned char *ikm, size_t ikm_len,
                          unsigned char prk[P11P_HKDF_HASH_LEN])
{
	struct fake_extract *f = ctx;

	f->calls++;
	if (f->rv != CKR_OK)
		return f->rv;
	memset(prk, 0x42, P11P_HKDF_HASH_LEN);
	return CKR_OK;
}

START_TEST(test_hkdf_limits)
{
	struct fake_extract fe = {0, CKR_OK};
	unsigned char ikm[16] = {1}, info[P11P_HKDF_MAX_INFO + 1] = {0};
	struct p11p_secret *okm = NULL, *shortprk;

	ck_assert_int_eq(
	    p11p_hkdf(fake_extract, &fe, ikm, sizeof(ikm), NULL, 0, P11P_HKDF_MAX_OKM, &okm),
	    CKR_OK);
	ck_assert_uint_eq(p11p_secret_len(okm), P11P_HKDF_MAX_OKM);
	p11p_secret_free(okm);
	ck_assert_int_eq(fe.calls, 1);
	/* Bad expand arguments are refused before the HSM is asked. */
	ck_assert_int_eq(
	    p11p_hkdf(fake_extract, &fe, ikm, sizeof(ikm), NULL, 0, P11P_HKDF_MAX_OKM + 1, &okm),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(p11p_hkdf(fake_extract, &fe, ikm, sizeof(ikm), NULL, 0, 0, &okm),
	                 CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(
	    p11p_hkdf(fake_extract, &fe, ikm, sizeof(ikm), info, sizeof(info), 32, &okm),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(fe.calls, 1);
	ck_assert_ptr_null(okm);
	ck_assert_int_eq(
	    p11p_hkdf(fake_extract, &fe, ikm, sizeof(ikm), info, P11P_HKDF_MAX_INFO, 32, &okm),
	    CKR_OK);
	p11p_secret_free(okm);
	/* An HSM error passes through. */
	fe.rv = CKR_DEVICE_ERROR;
	ck_assert_int_eq(p11p_hkdf(fake_extract, &fe, ikm, sizeof(ikm), NULL, 0, 32, &okm),
	                 CKR_DEVICE_ERROR);
	ck_assert_ptr_null(okm);
	/* A PRK shorter than HashLen is refused. */
	shortprk = p11p_secret_new(ikm, 16);
	ck_assert_int_eq(p11p_hkdf_expand(shortprk, NULL, 0, 32, &okm), CKR_ARGUMENTS_BAD);
	p11p_secret_free(shortprk);
}
END_TEST

START_TEST(test_hkdf_alloc_failures)
{
	struct hkdf_case c;
	struct p11p_hkdf_salt salt;
	struct p11p_secret *okm = NULL;
	long n;
	CK_RV rv = CKR_HOST_MEMORY;

	rfc5869_case(1, &c);
	salt.salt = c.salt;
	salt.len = c.salt_len;
	for (n = 0; n < 100; n++) {
		p11p_mem_fail_after(n);
		rv = p11p_hkdf(p11p_hkdf_sw_extract, &salt, c.ikm, c.ikm_len, c.info, c.info_len,
		               c.okm_len, &okm);
		p11p_mem_fail_reset();
		if (rv == CKR_OK)
			break;
		ck_assert_int_eq(rv, CKR_HOST_MEMORY);
		ck_assert_ptr_null(okm);
	}
	ck_assert_int_eq(rv, CKR_OK);
	ck_assert_int_gt(n, 1);
	assert_hex(p11p_secret_data(okm), p11p_secret_len(okm), c.okm);
	p11p_secret_free(okm);
}
END_TEST

/* ---- software keys: AES-GCM ----------------------------------------------------- */

static struct p11p_swkey *aes_key(size_t len, unsigned char fillbyte)
{
	unsigned char k[32];
	struct p11p_swkey *key = NULL;

	memset(k, fillbyte, sizeof(k));
	ck_assert_int_eq(p11p_swkey_new(CKK_AES, k, len, P11P_SWKEY_SENSITIVE, &key), CKR_OK);
	return key;
}

static CK_MECHANISM gcm_mech(CK_GCM_PARAMS *p, unsigned char *iv, CK_ULONG iv_len,
                             unsigned char *aad, CK_ULONG aad_len, CK_ULONG tag_bits)
{
	CK_MECHANISM m = {CKM_AES_GCM, p, sizeof(*p)};

	memset(p, 0, sizeof(*p));
	p->pIv = iv;
	p->ulIvLen = iv_len;
	p->ulIvBits = iv_len * 8;
	p->pAAD = aad;
	p->ulAADLen = aad_len;
	p->ulTagBits = tag_bits;
	return m;
}

/* EVP's answer for cipher `name`: GCM with aad and a 16-byte tag after the text; pad for CBC. */
static size_t evp_encrypt(const char *name, const unsigned char *key, const unsigned char *iv,
                          size_t iv_len, const unsigned char *aad, size_t aad_len, int pad,
                          const unsigned char *in, size_t in_len, unsigned char *out)
{
	EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	bool gcm = strstr(name, "GCM") != NULL;
	int n = 0, m = 0, a = 0;

	ck_assert(c != NULL && x != NULL);
	ck_assert(EVP_EncryptInit_ex2(x, c, NULL, NULL, NULL));
	if (gcm)
		ck_assert(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_IVLEN, (int)iv_len, NULL) > 0);
	ck_assert(EVP_EncryptInit_ex2(x, NULL, key, iv, NULL));
	ck_assert(EVP_CIPHER_CTX_set_padding(x, pad));
	if (aad_len > 0)
		ck_assert(EVP_EncryptUpdate(x, NULL, &a, aad, (int)aad_len));
	ck_assert(EVP_EncryptUpdate(x, out, &n, in, (int)in_len));
	ck_assert(EVP_EncryptFinal_ex(x, out + n, &m));
	if (gcm)
		ck_assert(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16, out + n + m) > 0);
	EVP_CIPHER_CTX_free(x);
	EVP_CIPHER_free(c);
	return (size_t)(n + m) + (gcm ? 16 : 0);
}

/* crypto/cipher.h against EVP on the same key: GCM's IV lengths and AAD, CBC's padding, CTR. */
START_TEST(test_cipher_against_evp)
{
	static const char *const names[] = {"AES-256-GCM", "AES-128-GCM", "AES-256-CBC",
	                                    "AES-128-CTR"};
	static const size_t iv_lens[] = {1, 12, 16, 60};
	unsigned char key[32], iv[60], aad[20], in[100], want[200], got[200], back[200];

	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)(i * 3 + 1);
	for (size_t i = 0; i < sizeof(iv); i++)
		iv[i] = (unsigned char)(i * 5 + 2);
	memset(aad, 0x5a, sizeof(aad));
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 11);
	for (size_t k = 0; k < 4; k++) {
		struct p11p_cipher c;
		bool gcm = k < 2, cbc = k == 2;
		size_t key_len = strstr(names[k], "128") != NULL ? 16 : 32;

		ck_assert(p11p_cipher_fetch(&c, p11p_ossl_ctx(), names[k]));
		ck_assert_uint_eq(c.block, cbc ? 16 : 1);
		for (size_t v = 0; v < (gcm ? 4 : 1); v++)
			for (int pad = 0; pad <= (cbc ? 1 : 0); pad++) {
				size_t iv_len = gcm ? iv_lens[v] : 16, len = cbc && !pad ? 96 : 100;
				size_t n = 0, m = 0, a = 0, b = 0;
				size_t want_len =
				    evp_encrypt(names[k], key, iv, iv_len, gcm ? aad : NULL,
				                gcm ? sizeof(aad) : 0, pad, in, len, want);
				void *x = p11p_cipher_ctx_new(&c);

				ck_assert(x != NULL);
				ck_assert(p11p_cipher_init(&c, x, true, key, key_len, iv, iv_len));
				ck_assert(p11p_cipher_padding(&c, x, pad) || !cbc);
				if (gcm)
					ck_assert(
					    p11p_cipher_update(&c, x, NULL, &a, aad, sizeof(aad)));
				ck_assert(p11p_cipher_update(&c, x, got, &n, in, len));
				ck_assert(p11p_cipher_final(&c, x, got + n, &m));
				if (gcm)
					ck_assert(p11p_cipher_get_tag(&c, x, got + n + m, 16));
				ck_assert_uint_eq(n + m + (gcm ? 16 : 0), want_len);
				ck_assert(memcmp(got, want, want_len) == 0);
				/*
				 * Back, on the same context: stream modes keep their key
				 * schedule (key NULL); CBC decrypts with another one.
				 */
				ck_assert(p11p_cipher_init(&c, x, false, cbc ? key : NULL, key_len,
				                           iv, iv_len));
				ck_assert(p11p_cipher_padding(&c, x, pad) || !cbc);
				if (gcm) {
					ck_assert(
					    p11p_cipher_update(&c, x, NULL, &a, aad, sizeof(aad)));
					ck_assert(p11p_cipher_set_tag(&c, x, want + n + m, 16));
				}
				ck_assert(p11p_cipher_update(&c, x, back, &a, want, n + m));
				ck_assert(p11p_cipher_final(&c, x, back + a, &b));
				ck_assert_uint_eq(a + b, len);
				ck_assert_msg(memcmp(back, in, len) == 0, "k %zu v %zu pad %d", k,
				              v, pad);
				if (gcm) { /* a wrong tag fails the final */
					got[n + m] ^= 1;
					ck_assert(
					    p11p_cipher_init(&c, x, false, NULL, 0, iv, iv_len));
					ck_assert(p11p_cipher_set_tag(&c, x, got + n + m, 16));
					ck_assert(p11p_cipher_update(&c, x, back, &a, want, n + m));
					ck_assert(!p11p_cipher_final(&c, x, back + a, &b));
				}
				p11p_cipher_ctx_free(&c, x);
			}
		p11p_cipher_release(&c);
		ck_assert(c.evp == NULL && c.newctx == NULL);
	}
	/* An unknown cipher: false, nothing held. */
	{
		struct p11p_cipher c;

		ck_assert(!p11p_cipher_fetch(&c, p11p_ossl_ctx(), "NO-SUCH-CIPHER"));
		ck_assert(c.evp == NULL && c.newctx == NULL);
		ck_assert(p11p_cipher_ctx_new(&c) == NULL);
		p11p_cipher_release(&c);
	}
}
END_TEST

/* NIST GCM spec test case 14: AES-256, zero key, zero IV, 16 zero bytes. */
START_TEST(test_gcm_known_answer)
{
	struct p11p_swkey *key;
	unsigned char zero_iv[12] = {0}, pt[16] = {0}, out[32];
	CK_ULONG out_len = sizeof(out);
	CK_GCM_PARAMS p;
	CK_MECHANISM m = gcm_mech(&p, zero_iv, 12, NULL, 0, 128);

	key = aes_key(32, 0);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, sizeof(pt), out, &out_len), CKR_OK);
	assert_hex(out, out_len,
	           "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
	/* Test case 13: empty plaintext, the tag alone. */
	out_len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, NULL, 0, out, &out_len), CKR_OK);
	assert_hex(out, out_len, "530f8afbc74536b9a963b4f1c4cb738b");
	p11p_swkey_free(key);
}
END_TEST

START_TEST(test_gcm_round_trip)
{
	static const size_t key_lens[] = {16, 24, 32};
	static const CK_ULONG iv_lens[] = {1, 12, 16, P11P_SWKEY_GCM_IV_MAX};
	static const CK_ULONG tag_bits[] = {32, 64, 96, 104, 112, 120, 128};
	unsigned char iv[256], aad[40], pt[1000], ct[1100], back[1100];

	for (size_t i = 0; i < sizeof(iv); i++)
		iv[i] = (unsigned char)(i * 7);
	memset(aad, 0xaa, sizeof(aad));
	for (size_t i = 0; i < sizeof(pt); i++)
		pt[i] = (unsigned char)(i * 13 + 1);
	for (size_t k = 0; k < 3; k++) {
		struct p11p_swkey *key = aes_key(key_lens[k], (unsigned char)(k + 1));

		for (size_t v = 0; v < 4; v++)
			for (size_t t = 0; t < 7; t++) {
				CK_GCM_PARAMS p;
				CK_MECHANISM m = gcm_mech(&p, iv, iv_lens[v], t % 2 ? aad : NULL,
				                          t % 2 ? sizeof(aad) : 0, tag_bits[t]);
				CK_ULONG len = (CK_ULONG)(100 * t + v), ct_len = sizeof(ct),
				         back_len = sizeof(back);

				ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, len, ct, &ct_len),
				                 CKR_OK);
				ck_assert_uint_eq(ct_len, len + tag_bits[t] / 8);
				ck_assert_int_eq(
				    p11p_swkey_decrypt(key, &m, ct, ct_len, back, &back_len),
				    CKR_OK);
				ck_assert_uint_eq(back_len, len);
				ck_assert(memcmp(back, pt, len) == 0);
				/* In place. */
				back_len = ct_len;
				ck_assert_int_eq(
				    p11p_swkey_decrypt(key, &m, ct, ct_len, ct, &back_len), CKR_OK);
				ck_assert(memcmp(ct, pt, len) == 0);
			}
		p11p_swkey_free(key);
	}
}
END_TEST

START_TEST(test_gcm_tamper)
{
	struct p11p_swkey *key = aes_key(32, 9);
	unsigned char iv[12] = {1, 2, 3}, aad[8] = "header", pt[64], ct[80], out[80];
	CK_ULONG ct_len = sizeof(ct), out_len;
	CK_GCM_PARAMS p;
	CK_MECHANISM m = gcm_mech(&p, iv, 12, aad, sizeof(aad), 128);

	memset(pt, 'p', sizeof(pt));
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, sizeof(pt), ct, &ct_len), CKR_OK);
	for (size_t bit = 0; bit < ct_len * 8; bit += 37) {
		ct[bit / 8] ^= (unsigned char)(1 << (bit % 8));
		out_len = sizeof(out);
		memset(out, 0x77, sizeof(out));
		ck_assert_int_eq(p11p_swkey_decrypt(key, &m, ct, ct_len, out, &out_len),
		                 CKR_ENCRYPTED_DATA_INVALID);
		/* No unauthenticated plaintext is left behind. */
		for (size_t i = 0; i < sizeof(pt); i++)
			ck_assert_int_eq(out[i], 0);
		ct[bit / 8] ^= (unsigned char)(1 << (bit % 8));
	}
	/* Wrong AAD, wrong IV. */
	aad[0] ^= 1;
	out_len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, ct, ct_len, out, &out_len),
	                 CKR_ENCRYPTED_DATA_INVALID);
	aad[0] ^= 1;
	iv[11] ^= 1;
	out_len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, ct, ct_len, out, &out_len),
	                 CKR_ENCRYPTED_DATA_INVALID);
	iv[11] ^= 1;
	/* The key still works after failures (its cached context was dropped). */
	out_len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, ct, ct_len, out, &out_len), CKR_OK);
	ck_assert(memcmp(out, pt, sizeof(pt)) == 0);
	p11p_swkey_free(key);
}
END_TEST

START_TEST(test_gcm_size_queries)
{
	struct p11p_swkey *key = aes_key(16, 3);
	unsigned char iv[12] = {0}, pt[10] = "0123456789", ct[26], out[26];
	CK_ULONG len;
	CK_GCM_PARAMS p;
	CK_MECHANISM m = gcm_mech(&p, iv, 12, NULL, 0, 96);

	len = 0;
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 10, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 22);
	len = 21;
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 10, ct, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 22);
	len = sizeof(ct);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 10, ct, &len), CKR_OK);
	ck_assert_uint_eq(len, 22);
	len = 0;
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, ct, 22, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 10);
	len = 9;
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, ct, 22, out, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 10);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, ct, 11, out, &len),
	                 CKR_ENCRYPTED_DATA_LEN_RANGE);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, ct, 22, out, &len), CKR_OK);
	ck_assert(memcmp(out, pt, 10) == 0);
	p11p_swkey_free(key);
}
END_TEST

START_TEST(test_gcm_bad_params)
{
	struct p11p_swkey *key = aes_key(32, 4), *gen = NULL;
	unsigned char iv[300] = {0}, aad[4] = {0}, buf[64], k[32] = {0};
	CK_ULONG len = sizeof(buf);
	CK_GCM_PARAMS p;
	CK_MECHANISM m;
	static const CK_ULONG bad_tags[] = {0, 8, 24, 40, 56, 72, 88, 100, 136, 256};

	m = gcm_mech(&p, iv, 12, NULL, 0, 128);
	m.pParameter = NULL;
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, buf, 8, buf, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	m = gcm_mech(&p, iv, 12, NULL, 0, 128);
	m.ulParameterLen = sizeof(p) - 1;
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, buf, 8, buf, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	m = gcm_mech(&p, iv, 0, NULL, 0, 128);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, buf, 8, buf, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	m = gcm_mech(&p, iv, P11P_SWKEY_GCM_IV_MAX + 1, NULL, 0, 128);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, buf, 20, buf, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	m = gcm_mech(&p, NULL, 12, NULL, 0, 128);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, buf, 8, buf, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	m = gcm_mech(&p, iv, 12, NULL, sizeof(aad), 128);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, buf, 8, buf, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	for (size_t i = 0; i < sizeof(bad_tags) / sizeof(bad_tags[0]); i++) {
		m = gcm_mech(&p, iv, 12, aad, sizeof(aad), bad_tags[i]);
		ck_assert_int_eq(p11p_swkey_encrypt(key, &m, buf, 8, buf, &len),
		                 CKR_MECHANISM_PARAM_INVALID);
	}
	m = gcm_mech(&p, iv, 12, NULL, 0, 128);
	m.mechanism = CKM_AES_ECB;
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, buf, 8, buf, &len), CKR_MECHANISM_INVALID);
	/* GCM needs an AES key. */
	ck_assert_int_eq(p11p_swkey_new(CKK_GENERIC_SECRET, k, 32, 0, &gen), CKR_OK);
	m = gcm_mech(&p, iv, 12, NULL, 0, 128);
	ck_assert_int_eq(p11p_swkey_encrypt(gen, &m, buf, 8, buf, &len), CKR_KEY_TYPE_INCONSISTENT);
	p11p_swkey_free(gen);
	p11p_swkey_free(key);
}
END_TEST

START_TEST(test_swkey_new)
{
	unsigned char k[2048] = {0}, out[64];
	struct p11p_swkey *key = (void *)1;
	struct p11p_secret *s;
	CK_ULONG len;

	ck_assert_int_eq(p11p_swkey_new(CKK_AES, k, 15, 0, &key), CKR_KEY_SIZE_RANGE);
	ck_assert_ptr_null(key);
	ck_assert_int_eq(p11p_swkey_new(CKK_AES, k, 33, 0, &key), CKR_KEY_SIZE_RANGE);
	ck_assert_int_eq(p11p_swkey_new(CKK_AES, k, 0, 0, &key), CKR_KEY_SIZE_RANGE);
	ck_assert_int_eq(p11p_swkey_new(CKK_RSA, k, 32, 0, &key), CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(p11p_swkey_new(CKK_GENERIC_SECRET, k, P11P_SWKEY_GENERIC_MAX + 1, 0, &key),
	                 CKR_KEY_SIZE_RANGE);
	ck_assert_int_eq(p11p_swkey_new(CKK_GENERIC_SECRET, k, 1, 0, &key), CKR_OK);
	p11p_swkey_free(key);

	/* from_secret takes the secret whatever happens. */
	s = p11p_secret_new(k, 20);
	ck_assert_int_eq(p11p_swkey_from_secret(CKK_AES, &s, 0, &key), CKR_KEY_SIZE_RANGE);
	ck_assert_ptr_null(s);
	memset(k, 0x31, 32);
	s = p11p_secret_new(k, 32);
	ck_assert_int_eq(p11p_swkey_from_secret(CKK_AES, &s, P11P_SWKEY_EXTRACTABLE, &key), CKR_OK);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(p11p_swkey_type(key), CKK_AES);
	ck_assert_uint_eq(p11p_swkey_len(key), 32);
	len = 0;
	ck_assert_int_eq(p11p_swkey_value(key, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 32);
	len = 31;
	ck_assert_int_eq(p11p_swkey_value(key, out, &len), CKR_BUFFER_TOO_SMALL);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_value(key, out, &len), CKR_OK);
	ck_assert(len == 32 && memcmp(out, k, 32) == 0);
	p11p_swkey_free(key);

	ck_assert_int_eq(
	    p11p_swkey_new(CKK_AES, k, 32, P11P_SWKEY_EXTRACTABLE | P11P_SWKEY_SENSITIVE, &key),
	    CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_value(key, out, &len), CKR_ATTRIBUTE_SENSITIVE);
	p11p_swkey_free(key);
	ck_assert_int_eq(p11p_swkey_new(CKK_AES, k, 32, 0, &key), CKR_OK);
	ck_assert_int_eq(p11p_swkey_value(key, out, &len), CKR_ATTRIBUTE_SENSITIVE);
	p11p_swkey_free(key);
}
END_TEST

/* ---- software keys: HMAC ------------------------------------------------------------ */

START_TEST(test_hmac)
{
	static const char data[] = "what do ya want for nothing?";
	struct p11p_swkey *key = NULL, *aes;
	CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
	CK_ULONG glen = 16;
	CK_MECHANISM g = {CKM_SHA256_HMAC_GENERAL, &glen, sizeof(glen)};
	unsigned char sig[64];
	CK_ULONG len;

	/* RFC 4231 test case 2. */
	ck_assert_int_eq(
	    p11p_swkey_new(CKK_GENERIC_SECRET, (const unsigned char *)"Jefe", 4, 0, &key), CKR_OK);
	len = 0;
	ck_assert_int_eq(p11p_swkey_sign(key, &m, (const unsigned char *)data, 28, NULL, &len),
	                 CKR_OK);
	ck_assert_uint_eq(len, 32);
	len = 31;
	ck_assert_int_eq(p11p_swkey_sign(key, &m, (const unsigned char *)data, 28, sig, &len),
	                 CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 32);
	for (int round = 0; round < 3; round++) { /* the cached context is reused */
		len = sizeof(sig);
		ck_assert_int_eq(
		    p11p_swkey_sign(key, &m, (const unsigned char *)data, 28, sig, &len), CKR_OK);
		assert_hex(sig, len,
		           "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	}
	ck_assert_int_eq(p11p_swkey_verify(key, &m, (const unsigned char *)data, 28, sig, 32),
	                 CKR_OK);
	sig[31] ^= 1;
	ck_assert_int_eq(p11p_swkey_verify(key, &m, (const unsigned char *)data, 28, sig, 32),
	                 CKR_SIGNATURE_INVALID);
	sig[31] ^= 1;
	ck_assert_int_eq(p11p_swkey_verify(key, &m, (const unsigned char *)data, 27, sig, 32),
	                 CKR_SIGNATURE_INVALID);
	ck_assert_int_eq(p11p_swkey_verify(key, &m, (const unsigned char *)data, 28, sig, 31),
	                 CKR_SIGNATURE_LEN_RANGE);
	/* General: truncated to 16 bytes. */
	len = sizeof(sig);
	ck_assert_int_eq(p11p_swkey_sign(key, &g, (const unsigned char *)data, 28, sig, &len),
	                 CKR_OK);
	assert_hex(sig, len, "5bdcc146bf60754e6a042426089575c7");
	ck_assert_int_eq(p11p_swkey_verify(key, &g, (const unsigned char *)data, 28, sig, 16),
	                 CKR_OK);
	ck_assert_int_eq(p11p_swkey_verify(key, &g, (const unsigned char *)data, 28, sig, 32),
	                 CKR_SIGNATURE_LEN_RANGE);
	/* Bad parameters and mechanisms. */
	glen = 0;
	ck_assert_int_eq(p11p_swkey_sign(key, &g, (const unsigned char *)data, 28, sig, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	glen = 33;
	ck_assert_int_eq(p11p_swkey_sign(key, &g, (const unsigned char *)data, 28, sig, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	g.pParameter = NULL;
	ck_assert_int_eq(p11p_swkey_sign(key, &g, (const unsigned char *)data, 28, sig, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	m.pParameter = sig;
	m.ulParameterLen = 4;
	ck_assert_int_eq(p11p_swkey_sign(key, &m, (const unsigned char *)data, 28, sig, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	m.mechanism = CKM_SHA_1_HMAC;
	ck_assert_int_eq(p11p_swkey_sign(key, &m, (const unsigned char *)data, 28, sig, &len),
	                 CKR_MECHANISM_INVALID);
	p11p_swkey_free(key);

	/* AES keys may HMAC too (Akeyless: "an AES key that supports HMAC-SHA256"). */
	aes = aes_key(32, 5);
	m.mechanism = CKM_SHA256_HMAC;
	m.pParameter = NULL;
	m.ulParameterLen = 0;
	len = sizeof(sig);
	ck_assert_int_eq(p11p_swkey_sign(aes, &m, NULL, 0, sig, &len), CKR_OK);
	ck_assert_int_eq(p11p_swkey_verify(aes, &m, NULL, 0, sig, 32), CKR_OK);
	p11p_swkey_free(aes);
}
END_TEST

/* Several threads on one key: the context cache hands each its own context. */
struct thr_arg {
	struct p11p_swkey *key;
	int id;
	int failures;
};

static void *gcm_thread(void *p)
{
	struct thr_arg *a = p;
	unsigned char iv[12] = {0}, pt[256], ct[300], back[300], sig[32];
	CK_MECHANISM hm = {CKM_SHA256_HMAC, NULL, 0};

	iv[0] = (unsigned char)a->id;
	memset(pt, a->id, sizeof(pt));
	for (int i = 0; i < 300; i++) {
		CK_GCM_PARAMS gp;
		CK_MECHANISM m = gcm_mech(&gp, iv, 12, NULL, 0, 128);
		CK_ULONG ct_len = sizeof(ct), back_len = sizeof(back), sig_len = sizeof(sig);

		iv[1] = (unsigned char)i;
		if (p11p_swkey_encrypt(a->key, &m, pt, sizeof(pt), ct, &ct_len) != CKR_OK ||
		    p11p_swkey_decrypt(a->key, &m, ct, ct_len, back, &back_len) != CKR_OK ||
		    back_len != sizeof(pt) || memcmp(back, pt, sizeof(pt)) != 0 ||
		    p11p_swkey_sign(a->key, &hm, pt, sizeof(pt), sig, &sig_len) != CKR_OK ||
		    p11p_swkey_verify(a->key, &hm, pt, sizeof(pt), sig, sig_len) != CKR_OK)
			a->failures++;
	}
	return NULL;
}

START_TEST(test_swkey_threads)
{
	struct p11p_swkey *key = aes_key(32, 6);
	pthread_t t[4];
	struct thr_arg a[4];

	for (int i = 0; i < 4; i++) {
		a[i] = (struct thr_arg){key, i + 1, 0};
		ck_assert_int_eq(pthread_create(&t[i], NULL, gcm_thread, &a[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(a[i].failures, 0);
	}
	p11p_swkey_free(key);
}
END_TEST

START_TEST(test_swkey_alloc_failures)
{
	unsigned char k[32] = {7};
	struct p11p_swkey *key = NULL;
	long n;
	CK_RV rv = CKR_HOST_MEMORY;

	for (n = 0; n < 20; n++) {
		p11p_mem_fail_after(n);
		rv = p11p_swkey_new(CKK_AES, k, 32, 0, &key);
		p11p_mem_fail_reset();
		if (rv == CKR_OK)
			break;
		ck_assert_int_eq(rv, CKR_HOST_MEMORY);
		ck_assert_ptr_null(key);
	}
	ck_assert_int_eq(rv, CKR_OK);
	ck_assert_int_gt(n, 0);
	p11p_swkey_free(key);
}
END_TEST

/* ---- fragments ---------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/p11p-crypto-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Copies DATA/name into tmpdir with the given mode; path gets the copy's path. */
static void stage(const char *name, mode_t mode, char *path, size_t len)
{
	char src[512], buf[65536];
	FILE *in, *out;
	size_t n;

	snprintf(src, sizeof(src), "%s%s", DATA, name);
	snprintf(path, len, "%s/%s", tmpdir, name);
	in = fopen(src, "rb");
	ck_assert_msg(in != NULL, "%s: %s", src, strerror(errno));
	out = fopen(path, "wb");
	ck_assert_ptr_nonnull(out);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
	fclose(in);
	fclose(out);
	ck_assert_int_eq(chmod(path, mode), 0);
}

START_TEST(test_fragments_good)
{
	char path[512], err[512];
	struct p11p_fragments *set;
	const struct p11p_fragment *f;
	unsigned char v1[32], v2[32];

	fill_range(v1, 1, 32);
	memset(v2, 0xa5, 16);
	fill_range(v2 + 16, 0, 15);

	stage("good-one.json", 0600, path, sizeof(path));
	set = p11p_fragments_load(path, err, sizeof(err));
	ck_assert_msg(set != NULL, "%s", err);
	ck_assert_uint_eq(set->n, 1);
	f = p11p_fragments_find(set, "HSM_CF");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->type, P11P_FRAGMENT_HSM_WRAPPED);
	ck_assert_str_eq(f->hsm_key_label, "akeyless_hsm");
	ck_assert_str_eq(f->id, "cf-0123456789abcdef");
	ck_assert_str_eq(f->description, "first fragment \"quoted\" \xc3\xa9");
	ck_assert(p11p_secret_equals(f->value, v1, 32));
	ck_assert_uint_eq(f->line, 3);
	ck_assert_ptr_null(p11p_fragments_find(set, "nope"));
	p11p_fragments_free(set);

	stage("good-two.json", 0400, path, sizeof(path));
	set = p11p_fragments_load(path, err, sizeof(err));
	ck_assert_msg(set != NULL, "%s", err);
	ck_assert_uint_eq(set->n, 2);
	ck_assert(p11p_secret_equals(p11p_fragments_find(set, "a")->value, v1, 32));
	f = p11p_fragments_find(set, "b.2-x");
	ck_assert_int_eq(f->type, P11P_FRAGMENT_HSM_SECURED);
	ck_assert(p11p_secret_equals(f->value, v2, 32));
	ck_assert_ptr_null(f->id);
	ck_assert_ptr_null(f->description);
	p11p_fragments_free(set);

	stage("good-yaml-style.json", 0600, path, sizeof(path));
	set = p11p_fragments_load(path, err, sizeof(err));
	ck_assert_msg(set != NULL, "%s", err);
	ck_assert_str_eq(set->items[0].hsm_key_label, "label with spaces");
	ck_assert(p11p_secret_equals(set->items[0].value, v2, 32));
	p11p_fragments_free(set);
}
END_TEST

struct bad_case {
	const char *file;
	const char *msg; /* after "PATH:" */
};

static const struct bad_case bad_cases[] = {
    {"bad-syntax.json",
     "2:1: syntax error: did not find expected ',' or ']' while parsing a flow sequence"},
    {"bad-empty.json", " empty file"},
    {"bad-top-list.json", "1:1: the top level must be a mapping"},
    {"bad-missing-list.json", "1:2: unknown key 'fragments' at the top level"},
    {"bad-list-empty.json", "1:24: 'customer_fragments' must not be empty"},
    {"bad-list-type.json", "1:24: 'customer_fragments' must be a list"},
    {"bad-item-type.json", "1:25: each fragment must be a mapping"},
    {"bad-missing-name.json", "1:25: missing key 'name' in fragment"},
    {"bad-missing-value.json", "1:25: missing key 'value' in fragment"},
    {"bad-unknown-key.json", "1:141: unknown key 'colour' in fragment"},
    {"bad-dup-key.json", "1:39: duplicate key 'name' in fragment"},
    {"bad-dup-name.json", "2:12: duplicate fragment name 'a' (first at line 1)"},
    {"bad-name-chars.json",
     "1:34: fragment name 'a b' may only contain letters, digits, '.', '_', '-'"},
    {"bad-type.json", "1:47: fragment type 'wrapped' must be 'hsm_wrapped' or 'hsm_secured'"},
    {"bad-label-empty.json", "1:79: hsm_key_label is empty"},
    {"bad-value-short.json",
     "1:93: 'value' must be 32 bytes in hex (64 digits) or base64 (44 characters)"},
    {"bad-value-hex.json",
     "1:93: 'value' must be 32 bytes in hex (64 digits) or base64 (44 characters)"},
    {"bad-value-b64-noncanonical.json",
     "1:93: 'value' must be 32 bytes in hex (64 digits) or base64 (44 characters)"},
    {"bad-value-list.json", "1:93: 'value' must be a string"},
    {"bad-check-value.json", "1:156: 'check_value' does not match 'value'"},
    {"bad-check-format.json", "1:156: 'check_value' must be 8 hex digits"},
    {"bad-nesting.json", "1:31: nesting deeper than 8 levels"},
    {"bad-two-docs.json", "2:1: more than one YAML document"},
    {"bad-utf8.json", "1:36: invalid input: invalid leading UTF-8 octet"},
    {"bad-too-many.json", "387:3: too many fragments (at most 64)"},
};

START_TEST(test_fragments_bad_catalogue)
{
	const struct bad_case *bc = &bad_cases[_i];
	char err[1024], path[512], want[1200];

	stage(bc->file, 0600, path, sizeof(path));
	memset(err, 'x', sizeof(err));
	ck_assert_msg(p11p_fragments_load(path, err, sizeof(err)) == NULL, "%s: loaded", bc->file);
	snprintf(want, sizeof(want), "%s:%s", path, bc->msg);
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_fragments_catalogue_complete)
{
	DIR *dir = opendir(DATA);
	struct dirent *de;
	size_t seen = 0;

	ck_assert_ptr_nonnull(dir);
	while ((de = readdir(dir)) != NULL) {
		bool found = strncmp(de->d_name, "good-", 5) == 0;

		if (de->d_name[0] == '.')
			continue;
		for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
			found = found || strcmp(bad_cases[i].file, de->d_name) == 0;
		ck_assert_msg(found, "%s is not in the test table", de->d_name);
		seen++;
	}
	closedir(dir);
	ck_assert_uint_eq(seen, sizeof(bad_cases) / sizeof(bad_cases[0]) + 3);
}
END_TEST

START_TEST(test_fragments_file_rules)
{
	char path[512], err[512], want[700];

	stage("good-one.json", 0640, path, sizeof(path));
	ck_assert_ptr_null(p11p_fragments_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want),
	         "%s: is accessible by group or others (mode 0640; use chmod 600)", path);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(chmod(path, 0604), 0);
	ck_assert_ptr_null(p11p_fragments_load(path, err, sizeof(err)));
	ck_assert_ptr_null(p11p_fragments_load(tmpdir, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: cannot read: not a regular file", tmpdir);
	ck_assert_str_eq(err, want);
	snprintf(path, sizeof(path), "%s/absent.json", tmpdir);
	ck_assert_ptr_null(p11p_fragments_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_fragments_write_round_trip)
{
	char path[512], err[512];
	struct p11p_fragments *set = p11p_fragments_new(), *back;
	struct p11p_secret *json = NULL;
	unsigned char v1[32], v2[32];
	struct stat st;

	memset(v1, 0x11, sizeof(v1));
	memset(v2, 0xee, sizeof(v2));
	ck_assert_ptr_nonnull(set);
	ck_assert_int_eq(p11p_fragments_add(set, "HSM_CF", P11P_FRAGMENT_HSM_WRAPPED,
	                                    "akeyless_hsm", v1, 32, NULL, err, sizeof(err)),
	                 CKR_OK);
	ck_assert_int_eq(p11p_fragments_add(set, "second", P11P_FRAGMENT_HSM_SECURED,
	                                    "label \"q\" \\ \t\xc3\xa9", v2, 32, "desc\nline", err,
	                                    sizeof(err)),
	                 CKR_OK);
	/* Refusals. */
	ck_assert_int_eq(p11p_fragments_add(set, "HSM_CF", P11P_FRAGMENT_HSM_WRAPPED, "k", v1, 32,
	                                    NULL, err, sizeof(err)),
	                 CKR_ARGUMENTS_BAD);
	ck_assert_str_eq(err, "a fragment named 'HSM_CF' exists already");
	ck_assert_int_eq(p11p_fragments_add(set, "bad name", P11P_FRAGMENT_HSM_WRAPPED, "k", v1, 32,
	                                    NULL, err, sizeof(err)),
	                 CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(p11p_fragments_add(set, "x", 0, "k", v1, 32, NULL, err, sizeof(err)),
	                 CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(p11p_fragments_add(set, "x", P11P_FRAGMENT_HSM_WRAPPED, "", v1, 32, NULL,
	                                    err, sizeof(err)),
	                 CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(p11p_fragments_add(set, "x", P11P_FRAGMENT_HSM_WRAPPED, "\xff", v1, 32,
	                                    NULL, err, sizeof(err)),
	                 CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(p11p_fragments_add(set, "x", P11P_FRAGMENT_HSM_WRAPPED, "k", v1, 31, NULL,
	                                    err, sizeof(err)),
	                 CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(set->n, 2);

	ck_assert_int_eq(p11p_fragments_to_json(set, &json), CKR_OK);
	ck_assert_ptr_nonnull(
	    strstr((const char *)p11p_secret_data(json),
	           "\"value\": \"ERERERERERERERERERERERERERERERERERERERERERE=\""));
	p11p_secret_free(json);

	snprintf(path, sizeof(path), "%s/customer_fragments.json", tmpdir);
	ck_assert_int_eq(p11p_fragments_write(set, path, err, sizeof(err)), CKR_OK);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	back = p11p_fragments_load(path, err, sizeof(err));
	ck_assert_msg(back != NULL, "%s", err);
	ck_assert_uint_eq(back->n, 2);
	ck_assert(p11p_secret_equals(p11p_fragments_find(back, "HSM_CF")->value, v1, 32));
	ck_assert_str_eq(p11p_fragments_find(back, "second")->hsm_key_label,
	                 "label \"q\" \\ \t\xc3\xa9");
	ck_assert_str_eq(p11p_fragments_find(back, "second")->description, "desc\nline");
	ck_assert_int_eq(p11p_fragments_find(back, "second")->type, P11P_FRAGMENT_HSM_SECURED);
	/* Rewriting an existing file replaces it. */
	ck_assert_int_eq(p11p_fragments_add(back, "third", P11P_FRAGMENT_HSM_WRAPPED, "k", v2, 32,
	                                    NULL, err, sizeof(err)),
	                 CKR_OK);
	ck_assert_int_eq(p11p_fragments_write(back, path, err, sizeof(err)), CKR_OK);
	p11p_fragments_free(back);
	back = p11p_fragments_load(path, err, sizeof(err));
	ck_assert_msg(back != NULL, "%s", err);
	ck_assert_uint_eq(back->n, 3);
	p11p_fragments_free(back);
	/* No temp file is left behind. */
	{
		DIR *d = opendir(tmpdir);
		struct dirent *de;
		int files = 0;

		while ((de = readdir(d)) != NULL)
			files += de->d_name[0] != '.';
		closedir(d);
		ck_assert_int_eq(files, 1);
	}
	snprintf(path, sizeof(path), "%s/no/such/dir/f.json", tmpdir);
	ck_assert_int_eq(p11p_fragments_write(set, path, err, sizeof(err)), CKR_FUNCTION_FAILED);
	ck_assert_ptr_nonnull(strstr(err, "cannot create"));
	p11p_fragments_free(set);
}
END_TEST

START_TEST(test_fragments_alloc_failures)
{
	char path[512], err[512];
	struct p11p_fragments *set = NULL;
	struct p11p_secret *json = NULL;
	unsigned char v[32] = {3};
	long n;

	stage("good-two.json", 0600, path, sizeof(path));
	for (n = 0; n < 10000; n++) {
		p11p_mem_fail_after(n);
		err[0] = '\0';
		set = p11p_fragments_load(path, err, sizeof(err));
		p11p_mem_fail_reset();
		if (set != NULL)
			break;
		ck_assert_msg(err[0] != '\0', "n=%ld: no message", n);
	}
	ck_assert_ptr_nonnull(set);
	ck_assert_int_gt(n, 5);
	for (n = 0; n < 100; n++) {
		CK_RV rv;

		p11p_mem_fail_after(n);
		rv = p11p_fragments_add(set, "new", P11P_FRAGMENT_HSM_SECURED, "k", v, 32, "d", err,
		                        sizeof(err));
		p11p_mem_fail_reset();
		if (rv == CKR_OK)
			break;
		ck_assert_int_eq(rv, CKR_HOST_MEMORY);
		ck_assert_uint_eq(set->n, 2);
	}
	ck_assert_uint_eq(set->n, 3);
	for (n = 0; n < 100; n++) {
		CK_RV rv;

		p11p_mem_fail_after(n);
		rv = p11p_fragments_to_json(set, &json);
		p11p_mem_fail_reset();
		if (rv == CKR_OK)
			break;
		ck_assert_int_eq(rv, CKR_HOST_MEMORY);
	}
	ck_assert_ptr_nonnull(json);
	p11p_secret_free(json);
	p11p_fragments_free(set);
}
END_TEST

/* Damaged files (every truncation, seeded byte flips) fail cleanly or load. */
START_TEST(test_fragments_damaged)
{
	char path[512], err[512], text[4096], copy[4096];
	unsigned int seed = 4242;
	static const char junk[] = "\0\n\r\t :-[]{}&*!|>'\"%@`#?,\xff\xc3=+/0aZ";
	struct p11p_fragments *set;
	FILE *f;
	size_t len;

	stage("good-one.json", 0600, path, sizeof(path));
	f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	len = fread(text, 1, sizeof(text), f);
	fclose(f);
	for (size_t cut = 0; cut < len; cut++) {
		set = p11p_fragments_parse("cut", text, cut, err, sizeof(err));
		if (set == NULL)
			ck_assert_msg(strncmp(err, "cut:", 4) == 0, "%s", err);
		p11p_fragments_free(set);
	}
	for (int round = 0; round < 1500; round++) {
		memcpy(copy, text, len);
		for (int k = 0; k < 1 + round % 4; k++) {
			seed = seed * 1103515245u + 12345u;
			copy[(seed >> 8) % len] = junk[(seed >> 20) % (sizeof(junk) - 1)];
		}
		set = p11p_fragments_parse("flip", copy, len, err, sizeof(err));
		if (set == NULL)
			ck_assert_msg(strncmp(err, "flip:", 5) == 0 && strchr(err, '\n') == NULL,
			              "%s", err);
		p11p_fragments_free(set);
	}
}
END_TEST

static Suite *crypto_suite(void)
{
	Suite *s = suite_create("crypto");
	TCase *tc = tcase_create("hkdf");

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_hkdf_rfc5869, 0, 3);
	tcase_add_test(tc, test_hkdf_limits);
	tcase_add_test(tc, test_hkdf_alloc_failures);
	suite_add_tcase(s, tc);

	tc = tcase_create("swkey");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_cipher_against_evp);
	tcase_add_test(tc, test_gcm_known_answer);
	tcase_add_test(tc, test_gcm_round_trip);
	tcase_add_test(tc, test_gcm_tamper);
	tcase_add_test(tc, test_gcm_size_queries);
	tcase_add_test(tc, test_gcm_bad_params);
	tcase_add_test(tc, test_swkey_new);
	tcase_add_test(tc, test_hmac);
	tcase_add_test(tc, test_swkey_threads);
	tcase_add_test(tc, test_swkey_alloc_failures);
	suite_add_tcase(s, tc);

	tc = tcase_create("fragments");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_fragments_good);
	tcase_add_loop_test(tc, test_fragments_bad_catalogue, 0,
	                    sizeof(bad_cases) / sizeof(bad_cases[0]));
	tcase_add_test(tc, test_fragments_catalogue_complete);
	tcase_add_test(tc, test_fragments_file_rules);
	tcase_add_test(tc, test_fragments_write_round_trip);
	tcase_add_test(tc, test_fragments_alloc_failures);
	tcase_add_test(tc, test_fragments_damaged);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(crypto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	/* Frees the private OpenSSL context: valgrind then sees no reachable leaks. */
	p11p_ossl_ctx_free();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
