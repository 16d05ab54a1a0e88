/*
 * The software-key engine (crypto/swkey.h) against OpenSSL directly, on the
 * same keys: known answers (NIST SP 800-38A/D, RFC 4231, RFC 8032), and
 * cross-verification both ways for ECDSA, RSA PKCS#1/PSS and OAEP; every
 * return-code rule of the header; multi-part equals single-part; one key in
 * two threads; and key hygiene: an idle key's bytes are only in
 * non-dumpable memory, a freed key's bytes nowhere.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <valgrind/valgrind.h>

#include "base/ossl.h"
#include "base/secret.h"
#include "crypto/swkey.h"

static const char rsa2048_pkcs8[] = "308204bd020100300d06092a864886f70d0101010500048204a7308204a302"
                                    "01000282010100a6d32f1775d2818aae64"
                                    "1ceedeb800c09fcd829264127a519075c6b13afb412b53fab8d96a823ea8e4"
                                    "e7ea57bd5decc33d3d9c84592e6f85bd34"
                                    "e13b21ba5962c34d5f3b4fd61568514db4b58e8531a41e32c7aad3d8bb5cd1"
                                    "ea57b60871b70807ac22b07e6eb1c1ccd7"
                                    "5b356175ecd68a4ff104876d74e4a53827044ffec091976b83cac4490dec72"
                                    "5ad70f38113dadd73c677416d4654b4929"
                                    "f3b902d6f239bfd9bfe0b039f7a5051d8a87b27910b25ed99b3cd6489c9294"
                                    "5002823a88da9dedc6bf3927e190188196"
                                    "8d44a74e7dc33b25a4b724674a1ea20dbcf6381e7cf1897b290a1375e64128"
                                    "4ae4aa5a8c086a4d3fa6359c3bfb9b2ec9"
                                    "0631237803110203010001028201002caebcdac2469f46d75dde3806b46f13"
                                    "28da412257a67157be6325545c11670ba5"
                                    "632eb6a126008579463ac8c4624f639dd80e3f8ea976da71eaa377149a168d"
                                    "f2f49ad0c699f742e91ff08a7e816361eb"
                                    "6abb7b2061d9114bf2420af2290f169a037b891d5c25c55c49c456c063770b"
                                    "a1a136d37938928a194cb87a99b888b826"
                                    "cd1e1c97d5b9038629db095de3828777c966260cba887cb7eeaa4855be5463"
                                    "21b78bc377b4df6196ef321abbc735ad3e"
                                    "2cdfd5ee9e7ae02284d045fd861c21632f29254ed8a9bbf9e84d095272d351"
                                    "8f4a1a4105998841e0a25624837ef30009"
                                    "ad66951f7007267c2f39a217f19698a122cb1bfdd47c141ddcf35fbe4ade77"
                                    "02818100e80d6b5e5e0de87c19faa9c3b6"
                                    "d46fdcbfe67cb23954322b544c758c33f045bc9050202d353e5a39eb015544"
                                    "69d4e5735e9b2931228624049277f5a554"
                                    "a6ec293110ac674be4eea71b0ad865c4a3298466cafc87fba24d7f2c8ac14e"
                                    "99e14b32a5bb1348fe540f09e6c35b0d1a"
                                    "9d78b0d27283fc97d5ec88b8bcb4a989fd791f02818100b80a85ec99c4285f"
                                    "b963defd82c18c71c2216fff511025d5cc"
                                    "50ede549b7bbbad6858a64c9204e93f09999c13b96e5edd9bbb32c5ef83a41"
                                    "ee6ef42af277917614e2a32a4bf68e2397"
                                    "cab3ef7b72edcd48c873ae17d630d1fe7ef42ce450cd73a7d35c78bd0733a6"
                                    "22155362e7c6bd40a7c011f519b6a89a82"
                                    "398a3ab9938dcf028180109ded635b8ed96811a02e89f24cb219f7aff49bfa"
                                    "98f9e2ba6da3393ffae3b3860e06cfd5f1"
                                    "3a1acda651c9cd5e4e73fd8154e8ccd5183d2f93e1864e5289b4c56bb13cd0"
                                    "657b6581fd3bd3c5c9fd4e1ae24c451c92"
                                    "d9c3d297b911fcd8f23e9539993eefdf6b18456b15d9115fd765aa1c433152"
                                    "5a224f0413974850b652f702818100b616"
                                    "e34ea70ca78d9e55abe95397c0274595e3c3cf2694e8a5d064aff971ea31ff"
                                    "d1fc8d9f5971a579e5df748a4ad08fb65f"
                                    "b9f4eab9da9a25186e4897c1a9901535ef8e07be97ffab4d891e271c1d2081"
                                    "24a31fdac1b767edcf1a33d86a01fcae4d"
                                    "b72e56886b97b21d3b759e30ca4ad02e7f15ec2d0740681c1a21e43e938d02"
                                    "81807c7a67fef76f2fc122701d3c22559c"
                                    "c5dbe7fdceb15c17c9c6cf7ee54499379a1ac5784a95ecce9a03ca56c52d9d"
                                    "efa78ebf2475a34e0fe2e7d6c186ebc70f"
                                    "ed6ef2ee4dc83acfb9d9e84381dd241c00939be2301d18ed91f0ea82434d9a"
                                    "ec91e38d85f13a5e599da9c8ab44545e7f"
                                    "8fda17a4acf138c3d40b8df919f0859e2a";
static const char p256_pkcs8[] =
    "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420ea071a6ec7119bd609109b"
    "8e"
    "293c471fb80be9b1af54dd31d31a0aa28afc5a77a14403420004be4dd560b9c5b7a814d6f24901cba57780fbaeeffd"
    "55"
    "9aefe8750cd7f95b59d81fba333de0a1ac910767dc7026b98113ee1e286dbcb10ded161049a4f8d26449";

/* ---- helpers ---------------------------------------------------------------- */

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
	unsigned char w[4096];
	size_t n = unhex(want, w, sizeof(w));

	ck_assert_uint_eq(len, n);
	ck_assert_msg(memcmp(got, w, n) == 0, "bytes differ from %s", want);
}

/* A random source handing out fixed bytes (then zeros). */
struct fixed_rand {
	const unsigned char *p;
	size_t n, pos;
	unsigned calls;
};

static CK_RV fixed_rand(void *arg, unsigned char *buf, size_t len)
{
	struct fixed_rand *r = arg;

	r->calls++;
	for (size_t i = 0; i < len; i++, r->pos++)
		buf[i] = r->pos < r->n ? r->p[r->pos] : 0;
	return CKR_OK;
}

static CK_RV real_rand(void *arg, unsigned char *buf, size_t len)
{
	(void)arg;
	return RAND_bytes(buf, (int)len) == 1 ? CKR_OK : CKR_FUNCTION_FAILED;
}

static CK_RV failing_rand(void *arg, unsigned char *buf, size_t len)
{
	(void)arg;
	(void)buf;
	(void)len;
	return CKR_DEVICE_ERROR;
}

static struct p11p_swkey *secret_key(CK_KEY_TYPE type, const char *hex, unsigned flags)
{
	unsigned char k[256];
	size_t n = unhex(hex, k, sizeof(k));
	struct p11p_swkey *key = NULL;

	ck_assert_int_eq(p11p_swkey_new(type, k, n, flags, &key), CKR_OK);
	return key;
}

static struct p11p_swkey *der_key(CK_OBJECT_CLASS cls, CK_KEY_TYPE type, const char *hex)
{
	unsigned char der[2048];
	size_t n = unhex(hex, der, sizeof(der));
	struct p11p_swkey *key = NULL;

	ck_assert_int_eq(p11p_swkey_from_der(cls, type, der, n, P11P_SWKEY_SENSITIVE, &key),
	                 CKR_OK);
	return key;
}

static struct p11p_swkey *ec_key(const unsigned char *params, size_t plen)
{
	struct p11p_swkey_pair_spec spec = {
	    .type = CKK_EC, .ec_params = params, .ec_params_len = plen};
	struct p11p_swkey *priv = NULL;

	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, real_rand, NULL, 0, &priv, NULL), CKR_OK);
	return priv;
}

static const unsigned char p256_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                            0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char p384_params[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char ed_params[] = {0x06, 0x03, 0x2b, 0x65, 0x70};

/* The key's private half as an EVP_PKEY of OpenSSL's default context. */
static EVP_PKEY *ossl_priv(const struct p11p_swkey *key)
{
	struct p11p_secret *s = NULL;
	const unsigned char *p;
	PKCS8_PRIV_KEY_INFO *p8;
	EVP_PKEY *pk;

	ck_assert_int_eq(p11p_swkey_serialise(key, &s), CKR_OK);
	p = p11p_secret_data(s);
	p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)p11p_secret_len(s));
	ck_assert_ptr_nonnull(p8);
	pk = EVP_PKCS82PKEY(p8);
	ck_assert_ptr_nonnull(pk);
	PKCS8_PRIV_KEY_INFO_free(p8);
	p11p_secret_free(s);
	return pk;
}

static EVP_PKEY *ossl_pub(const struct p11p_swkey *key)
{
	unsigned char der[1024];
	const unsigned char *p = der;
	CK_ULONG n = sizeof(der);
	EVP_PKEY *pk;

	ck_assert_int_eq(p11p_swkey_attr(key, CKA_PUBLIC_KEY_INFO, der, &n), CKR_OK);
	pk = d2i_PUBKEY(NULL, &p, (long)n);
	ck_assert_ptr_nonnull(pk);
	return pk;
}

/* Multi-part run of an encrypt/decrypt op in chunks of `chunk` bytes. */
static CK_RV multi_crypt(struct p11p_swkey *key, enum p11p_swop_kind kind, CK_MECHANISM *m,
                         const unsigned char *in, size_t len, size_t chunk, unsigned char *out,
                         CK_ULONG *out_len)
{
	struct p11p_swop *op = NULL;
	CK_ULONG total = 0, n;
	CK_RV rv = p11p_swop_init(key, kind, m, &op);

	if (rv != CKR_OK)
		return rv;
	for (size_t i = 0; i < len; i += chunk) {
		size_t c = len - i < chunk ? len - i : chunk;

		n = *out_len - total;
		rv = p11p_swop_update(op, in + i, c, out + total, &n);
		if (rv != CKR_OK) {
			p11p_swop_free(op);
			return rv;
		}
		total += n;
	}
	n = *out_len - total;
	rv = p11p_swop_final(op, out + total, &n);
	ck_assert(!p11p_swop_active(op));
	p11p_swop_free(op);
	if (rv == CKR_OK)
		*out_len = total + n;
	return rv;
}

static CK_MECHANISM gcm_mech(CK_GCM_PARAMS *p, unsigned char *iv, size_t ivlen, unsigned char *aad,
                             size_t aadlen, CK_ULONG tagbits)
{
	p->pIv = iv;
	p->ulIvLen = ivlen;
	p->ulIvBits = ivlen * 8;
	p->pAAD = aad;
	p->ulAADLen = aadlen;
	p->ulTagBits = tagbits;
	return (CK_MECHANISM){CKM_AES_GCM, p, sizeof(*p)};
}

/* ---- AES-GCM ------------------------------------------------------------------ */

/* McGrew & Viega test case 4 (AES-128, AAD, 60-byte message). */
#define GCM_K  "feffe9928665731c6d6a8f9467308308"
#define GCM_IV "cafebabefacedbaddecaf888"
#define GCM_A  "feedfacedeadbeeffeedfacedeadbeefabaddad2"
#define GCM_P                                                                                      \
	"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e24" \
	"4"                                                                                        \
	"9a6b525b16aedf5aa0de657ba637b39"
#define GCM_C                                                                                      \
	"42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5a" \
	"a"                                                                                        \
	"c84aa051ba30b396a0aac973d58e091"
#define GCM_T "5bc94fbc3221a5db94fae95ae7121a47"

START_TEST(test_gcm)
{
	struct p11p_swkey *key = secret_key(CKK_AES, GCM_K, 0);
	unsigned char iv[12], aad[20], pt[60], ct[76], out[128];
	CK_GCM_PARAMS p;
	CK_MECHANISM m = gcm_mech(&p, iv, unhex(GCM_IV, iv, 12), aad, unhex(GCM_A, aad, 20), 128);
	CK_ULONG len;
	struct p11p_swop *op = NULL;

	unhex(GCM_P, pt, sizeof(pt));
	/* size query, short buffer, then the known answer */
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 60, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 76);
	len = 75;
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 60, out, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 76);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 60, out, &len), CKR_OK);
	assert_hex(out, 60, GCM_C);
	assert_hex(out + 60, 16, GCM_T);
	memcpy(ct, out, 76);
	/* multi-part, every chunk size, equals single-part */
	for (size_t chunk = 1; chunk <= 61; chunk += 4) {
		len = sizeof(out);
		ck_assert_int_eq(multi_crypt(key, P11P_SWOP_ENCRYPT, &m, pt, 60, chunk, out, &len),
		                 CKR_OK);
		ck_assert(len == 76 && memcmp(out, ct, 76) == 0);
		len = sizeof(out);
		ck_assert_int_eq(multi_crypt(key, P11P_SWOP_DECRYPT, &m, ct, 76, chunk, out, &len),
		                 CKR_OK);
		ck_assert(len == 60 && memcmp(out, pt, 60) == 0);
	}
	/* decrypt: nothing before Final */
	ck_assert_int_eq(p11p_swop_init(key, P11P_SWOP_DECRYPT, &m, &op), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swop_update(op, ct, 70, out, &len), CKR_OK);
	ck_assert_uint_eq(len, 0);
	len = 0;
	ck_assert_int_eq(p11p_swop_update(op, ct + 70, 6, out, &len), CKR_OK);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(p11p_swop_final(op, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 60);
	len = 59;
	ck_assert_int_eq(p11p_swop_final(op, out, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert(p11p_swop_active(op));
	len = 60;
	ck_assert_int_eq(p11p_swop_final(op, out, &len), CKR_OK);
	ck_assert(len == 60 && memcmp(out, pt, 60) == 0);
	ck_assert_int_eq(p11p_swop_final(op, out, &len), CKR_OPERATION_NOT_INITIALIZED);
	p11p_swop_free(op);
	/* a bad tag: CKR_ENCRYPTED_DATA_INVALID, output wiped, single and multi-part */
	ct[75] ^= 1;
	memset(out, 0x55, sizeof(out));
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, ct, 76, out, &len),
	                 CKR_ENCRYPTED_DATA_INVALID);
	for (size_t i = 0; i < 60; i++)
		ck_assert_uint_eq(out[i], 0);
	memset(out, 0x55, sizeof(out));
	len = sizeof(out);
	ck_assert_int_eq(multi_crypt(key, P11P_SWOP_DECRYPT, &m, ct, 76, 16, out, &len),
	                 CKR_ENCRYPTED_DATA_INVALID);
	for (size_t i = 0; i < 60; i++)
		ck_assert_uint_eq(out[i], 0);
	ct[75] ^= 1;
	/* too short for the tag */
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, ct, 15, out, &len),
	                 CKR_ENCRYPTED_DATA_LEN_RANGE);
	len = sizeof(out);
	ck_assert_int_eq(multi_crypt(key, P11P_SWOP_DECRYPT, &m, ct, 15, 4, out, &len),
	                 CKR_ENCRYPTED_DATA_LEN_RANGE);
	/* a 96-bit tag */
	m = gcm_mech(&p, iv, 12, aad, 20, 96);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 60, out, &len), CKR_OK);
	ck_assert_uint_eq(len, 72);
	assert_hex(out + 60, 12, "5bc94fbc3221a5db94fae95a");
	p11p_swkey_free(key);
}
END_TEST

/* ---- AES-CBC, CBC-PAD, CTR (SP 800-38A F.2.1, F.5.1) ------------------------------ */

#define A_K "2b7e151628aed2a6abf7158809cf4f3c"
#define A_P                                                                                        \
	"6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc119" \
	"1a0a52eff69f2445df4f9b17ad2b417be66c3710"
#define CBC_C                                                                                      \
	"7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e" \
	"222295163ff1caa1681fac09120eca307586e1a7"
#define CTR_C                                                                                      \
	"874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff5ae4df3edbd5d35e5b4f0902" \
	"0db03eab1e031dda2fbe03d1792170a0f3009cee"

START_TEST(test_cbc)
{
	struct p11p_swkey *key = secret_key(CKK_AES, A_K, 0);
	unsigned char iv[16], pt[64], out[128], ref[128], back[128];
	CK_MECHANISM m = {CKM_AES_CBC, iv, 16};
	CK_ULONG len;
	int ol = 0, fl = 0;
	EVP_CIPHER_CTX *c;
	struct p11p_swop *op = NULL;

	for (int i = 0; i < 16; i++)
		iv[i] = (unsigned char)i;
	unhex(A_P, pt, 64);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 64, out, &len), CKR_OK);
	assert_hex(out, len, CBC_C);
	len = sizeof(back);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, out, 64, back, &len), CKR_OK);
	ck_assert(len == 64 && memcmp(back, pt, 64) == 0);
	for (size_t chunk = 1; chunk <= 40; chunk += 3) {
		len = sizeof(back);
		ck_assert_int_eq(multi_crypt(key, P11P_SWOP_ENCRYPT, &m, pt, 64, chunk, back, &len),
		                 CKR_OK);
		assert_hex(back, len, CBC_C);
		len = sizeof(back);
		ck_assert_int_eq(
		    multi_crypt(key, P11P_SWOP_DECRYPT, &m, out, 64, chunk, back, &len), CKR_OK);
		ck_assert(len == 64 && memcmp(back, pt, 64) == 0);
	}
	/* not a whole block */
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 63, out, &len), CKR_DATA_LEN_RANGE);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, pt, 17, out, &len),
	                 CKR_ENCRYPTED_DATA_LEN_RANGE);
	len = sizeof(out);
	ck_assert_int_eq(multi_crypt(key, P11P_SWOP_ENCRYPT, &m, pt, 33, 7, out, &len),
	                 CKR_DATA_LEN_RANGE);
	/* IV of the wrong length */
	m.ulParameterLen = 15;
	ck_assert_int_eq(p11p_swop_init(key, P11P_SWOP_ENCRYPT, &m, &op),
	                 CKR_MECHANISM_PARAM_INVALID);

	/* CBC_PAD against OpenSSL's aes-128-cbc with PKCS#7 padding, every length 0..48 */
	m = (CK_MECHANISM){CKM_AES_CBC_PAD, iv, 16};
	c = EVP_CIPHER_CTX_new();
	for (size_t n = 0; n <= 48; n++) {
		ck_assert(EVP_EncryptInit_ex2(
		    c, EVP_aes_128_cbc(),
		    (unsigned char *)"\x2b\x7e\x15\x16"
		                     "\x28\xae\xd2\xa6\xab\xf7\x15\x88\x09\xcf\x4f\x3c",
		    iv, NULL));
		ck_assert(EVP_EncryptUpdate(c, ref, &ol, pt, (int)n));
		ck_assert(EVP_EncryptFinal_ex(c, ref + ol, &fl));
		ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, n, NULL, &len), CKR_OK);
		ck_assert_uint_eq(len, (size_t)(ol + fl));
		len = sizeof(out);
		ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, n, out, &len), CKR_OK);
		ck_assert(len == (size_t)(ol + fl) && memcmp(out, ref, len) == 0);
		for (size_t chunk = 1; chunk <= 17; chunk += 5) {
			CK_ULONG l2 = sizeof(back);

			ck_assert_int_eq(
			    multi_crypt(key, P11P_SWOP_ENCRYPT, &m, pt, n, chunk, back, &l2),
			    CKR_OK);
			ck_assert(l2 == len && memcmp(back, ref, len) == 0);
			l2 = sizeof(back);
			ck_assert_int_eq(
			    multi_crypt(key, P11P_SWOP_DECRYPT, &m, ref, len, chunk, back, &l2),
			    CKR_OK);
			ck_assert(l2 == n && memcmp(back, pt, n) == 0);
		}
		/* single-part decrypt: exact length, a short buffer told the exact size */
		{
			CK_ULONG l2 = n;

			ck_assert_int_eq(p11p_swkey_decrypt(key, &m, ref, len, back, &l2), CKR_OK);
			ck_assert(l2 == n && memcmp(back, pt, n) == 0);
			if (n > 0) {
				l2 = n - 1;
				ck_assert_int_eq(p11p_swkey_decrypt(key, &m, ref, len, back, &l2),
				                 CKR_BUFFER_TOO_SMALL);
				ck_assert_uint_eq(l2, n);
			}
		}
	}
	EVP_CIPHER_CTX_free(c);
	/* a bad pad */
	len = sizeof(out);
	ck_assert_int_eq(
	    p11p_swkey_encrypt(key, &(CK_MECHANISM){CKM_AES_CBC, iv, 16}, pt, 32, out, &len),
	    CKR_OK);
	len = sizeof(back);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, out, 32, back, &len),
	                 CKR_ENCRYPTED_DATA_INVALID);
	len = sizeof(back);
	ck_assert_int_eq(multi_crypt(key, P11P_SWOP_DECRYPT, &m, out, 32, 5, back, &len),
	                 CKR_ENCRYPTED_DATA_INVALID);
	len = sizeof(back);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &m, out, 0, back, &len),
	                 CKR_ENCRYPTED_DATA_LEN_RANGE);
	len = sizeof(back);
	ck_assert_int_eq(multi_crypt(key, P11P_SWOP_DECRYPT, &m, out, 31, 5, back, &len),
	                 CKR_ENCRYPTED_DATA_LEN_RANGE);
	/* a short buffer on an update keeps the operation */
	ck_assert_int_eq(p11p_swop_init(key, P11P_SWOP_ENCRYPT, &m, &op), CKR_OK);
	len = 15;
	ck_assert_int_eq(p11p_swop_update(op, pt, 20, out, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 16);
	ck_assert(p11p_swop_active(op));
	ck_assert_int_eq(p11p_swop_update(op, pt, 20, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 16);
	len = 16;
	ck_assert_int_eq(p11p_swop_update(op, pt, 20, out, &len), CKR_OK);
	ck_assert_int_eq(p11p_swop_run(op, pt, 16, out, &len), CKR_OPERATION_ACTIVE);
	ck_assert(p11p_swop_active(op));
	p11p_swop_free(op);
	p11p_swkey_free(key);
}
END_TEST

START_TEST(test_ctr)
{
	struct p11p_swkey *key = secret_key(CKK_AES, A_K, 0);
	unsigned char pt[64], out[128], back[128];
	CK_AES_CTR_PARAMS p = {128, {0}};
	CK_MECHANISM m = {CKM_AES_CTR, &p, sizeof(p)};
	CK_ULONG len;

	unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", p.cb, 16);
	unhex(A_P, pt, 64);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 64, out, &len), CKR_OK);
	assert_hex(out, len, CTR_C);
	for (size_t chunk = 1; chunk <= 40; chunk += 3) {
		len = sizeof(back);
		ck_assert_int_eq(
		    multi_crypt(key, P11P_SWOP_DECRYPT, &m, out, 64, chunk, back, &len), CKR_OK);
		ck_assert(len == 64 && memcmp(back, pt, 64) == 0);
	}
	/* an 8-bit counter at 0xfe: two blocks (32 bytes), not one byte more */
	p.ulCounterBits = 8;
	p.cb[15] = 0xfe;
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 32, out, &len), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 33, out, &len), CKR_DATA_LEN_RANGE);
	len = sizeof(out);
	ck_assert_int_eq(multi_crypt(key, P11P_SWOP_ENCRYPT, &m, pt, 33, 7, out, &len),
	                 CKR_DATA_LEN_RANGE);
	len = sizeof(out);
	ck_assert_int_eq(multi_crypt(key, P11P_SWOP_DECRYPT, &m, pt, 32, 7, out, &len), CKR_OK);
	p.ulCounterBits = 0;
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 16, out, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	p.ulCounterBits = 129;
	ck_assert_int_eq(p11p_swkey_encrypt(key, &m, pt, 16, out, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	p11p_swkey_free(key);
}
END_TEST

/* ---- HMAC against OpenSSL's HMAC(), and RFC 4231 cases 1 and 6 --------------------------- */

/* Signs msg in multi-part pieces of uneven sizes (1, 7, 63, 65, 1000, 4097 bytes, again). */
static CK_RV hmac_parts(struct p11p_swkey *key, const CK_MECHANISM *m, enum p11p_swop_kind kind,
                        const unsigned char *msg, size_t n, unsigned char *mac, CK_ULONG *len)
{
	static const size_t piece[] = {1, 7, 63, 65, 1000, 4097};
	struct p11p_swop *op = NULL;
	CK_RV rv = p11p_swop_init(key, kind, m, &op);

	for (size_t off = 0, i = 0; rv == CKR_OK && off < n; i++) {
		size_t k = piece[i % 6] < n - off ? piece[i % 6] : n - off;

		rv = p11p_swop_update(op, msg + off, k, NULL, NULL);
		off += k;
	}
	if (rv == CKR_OK)
		rv = kind == P11P_SWOP_SIGN ? p11p_swop_final(op, mac, len)
		                            : p11p_swop_verify_final(op, mac, *len);
	p11p_swop_free(op);
	return rv;
}

START_TEST(test_hmac_openssl)
{
	static const size_t klen[] = {1, 32, 64, 65, 128, 200},
	                    mlen[] = {0, 1, 63, 64, 65, 1024, 100000};
	static const CK_MECHANISM_TYPE mech[3][2] = {
	    {CKM_SHA256_HMAC, CKM_SHA256_HMAC_GENERAL},
	    {CKM_SHA384_HMAC, CKM_SHA384_HMAC_GENERAL},
	    {CKM_SHA512_HMAC, CKM_SHA512_HMAC_GENERAL},
	};
	const EVP_MD *md[3] = {EVP_sha256(), EVP_sha384(), EVP_sha512()};
	unsigned char *msg = malloc(100000), k[200], want[64], mac[64];
	struct p11p_swkey *key = NULL;

	ck_assert_ptr_nonnull(msg);
	RAND_bytes(msg, 100000);
	RAND_bytes(k, sizeof(k));
	/* a key of 0 bytes cannot be made (CKK_GENERIC_SECRET is 1..GENERIC_MAX bytes) */
	ck_assert_int_eq(p11p_swkey_new(CKK_GENERIC_SECRET, k, 0, 0, &key), CKR_KEY_SIZE_RANGE);
	for (size_t ki = 0; ki < 6; ki++) {
		ck_assert_int_eq(p11p_swkey_new(CKK_GENERIC_SECRET, k, klen[ki], 0, &key), CKR_OK);
		for (int d = 0; d < 3; d++) {
			for (size_t mi = 0; mi < 7; mi++) {
				unsigned wl = 0;
				CK_MECHANISM m = {mech[d][0], NULL, 0};
				CK_ULONG len = sizeof(mac), glen;

				ck_assert_ptr_nonnull(
				    HMAC(md[d], k, (int)klen[ki], msg, mlen[mi], want, &wl));
				ck_assert_int_eq(p11p_swkey_sign(key, &m, msg, mlen[mi], mac, &len),
				                 CKR_OK);
				ck_assert_uint_eq(len, wl);
				ck_assert_mem_eq(mac, want, wl);
				ck_assert_int_eq(
				    p11p_swkey_verify(key, &m, msg, mlen[mi], want, wl), CKR_OK);
				len = sizeof(mac);
				memset(mac, 0, sizeof(mac));
				ck_assert_int_eq(
				    hmac_parts(key, &m, P11P_SWOP_SIGN, msg, mlen[mi], mac, &len),
				    CKR_OK);
				ck_assert_uint_eq(len, wl);
				ck_assert_mem_eq(mac, want, wl);
				len = wl;
				ck_assert_int_eq(hmac_parts(key, &m, P11P_SWOP_VERIFY, msg,
				                            mlen[mi], want, &len),
				                 CKR_OK);
				want[wl - 1] ^= 0x80;
				ck_assert_int_eq(hmac_parts(key, &m, P11P_SWOP_VERIFY, msg,
				                            mlen[mi], want, &len),
				                 CKR_SIGNATURE_INVALID);
				want[wl - 1] ^= 0x80;
				/* _GENERAL: 1, some length between, the whole */
				glen = mi == 0 ? 1 : mi == 6 ? wl : 1 + (ki * 7 + mi * 5) % wl;
				m = (CK_MECHANISM){mech[d][1], &glen, sizeof(glen)};
				len = sizeof(mac);
				ck_assert_int_eq(p11p_swkey_sign(key, &m, msg, mlen[mi], mac, &len),
				                 CKR_OK);
				ck_assert_uint_eq(len, glen);
				ck_assert_mem_eq(mac, want, glen);
				ck_assert_int_eq(
				    p11p_swkey_verify(key, &m, msg, mlen[mi], want, glen), CKR_OK);
				len = sizeof(mac);
				ck_assert_int_eq(
				    hmac_parts(key, &m, P11P_SWOP_SIGN, msg, mlen[mi], mac, &len),
				    CKR_OK);
				ck_assert_uint_eq(len, glen);
				ck_assert_mem_eq(mac, want, glen);
			}
		}
		p11p_swkey_free(key);
		key = NULL;
	}
	free(msg);
}
END_TEST

/* RFC 4231 test cases 1 (a 20-byte key) and 6 (131 bytes: longer than the block, hashed first). */
START_TEST(test_hmac_rfc4231)
{
	static const struct {
		const char *key_hex; /* NULL: 131 bytes of 0xaa */
		const char *msg;
		const char *mac[3];
	} v[] = {
	    {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
	     "Hi There",
	     {"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
	      "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af1"
	      "52e8b2fa9cb6",
	      "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b"
	      "274eaea3f4e4be9d914eeb61f1702e696c203a126854"}},
	    {NULL,
	     "Test Using Larger Than Block-Size Key - Hash Key First",
	     {"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
	      "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe829624"
	      "8df163f44952",
	      "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0f"
	      "d2215d6a1e5295e64f73f63f0aec8b915a985d786598"}},
	};
	static const CK_MECHANISM_TYPE mech[3] = {CKM_SHA256_HMAC, CKM_SHA384_HMAC,
	                                          CKM_SHA512_HMAC};

	for (size_t i = 0; i < 2; i++) {
		unsigned char k[131], mac[64];
		size_t kl = v[i].key_hex != NULL ? unhex(v[i].key_hex, k, sizeof(k)) : sizeof(k);
		struct p11p_swkey *key = NULL;

		if (v[i].key_hex == NULL)
			memset(k, 0xaa, sizeof(k));
		ck_assert_int_eq(p11p_swkey_new(CKK_GENERIC_SECRET, k, kl, 0, &key), CKR_OK);
		for (int d = 0; d < 3; d++) {
			CK_MECHANISM m = {mech[d], NULL, 0};
			CK_ULONG len = sizeof(mac);

			ck_assert_int_eq(p11p_swkey_sign(key, &m, (const unsigned char *)v[i].msg,
			                                 strlen(v[i].msg), mac, &len),
			                 CKR_OK);
			assert_hex(mac, len, v[i].mac[d]);
			len = sizeof(mac);
			ck_assert_int_eq(hmac_parts(key, &m, P11P_SWOP_SIGN,
			                            (const unsigned char *)v[i].msg,
			                            strlen(v[i].msg), mac, &len),
			                 CKR_OK);
			assert_hex(mac, len, v[i].mac[d]);
		}
		p11p_swkey_free(key);
	}
}
END_TEST

/* ---- HMAC (RFC 4231 test case 2) ----------------------------------------------------- */

START_TEST(test_hmac)
{
	static const struct {
		CK_MECHANISM_TYPE m, g;
		const char *mac;
	} v[] = {
	    {CKM_SHA256_HMAC, CKM_SHA256_HMAC_GENERAL,
	     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
	    {CKM_SHA384_HMAC, CKM_SHA384_HMAC_GENERAL,
	     "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b323"
	     "9ec"
	     "fab21649"},
	    {CKM_SHA512_HMAC, CKM_SHA512_HMAC_GENERAL,
	     "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034"
	     "f"
	     "65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
	};
	const unsigned char *msg = (const unsigned char *)"what do ya want for nothing?";
	struct p11p_swkey *key = secret_key(CKK_GENERIC_SECRET, "4a656665", 0);
	unsigned char mac[64], want[64];
	CK_ULONG len, glen;
	struct p11p_swop *op;

	for (size_t i = 0; i < 3; i++) {
		CK_MECHANISM m = {v[i].m, NULL, 0};
		size_t n = unhex(v[i].mac, want, sizeof(want));

		ck_assert_int_eq(p11p_swkey_sign(key, &m, msg, 28, NULL, &len), CKR_OK);
		ck_assert_uint_eq(len, n);
		len = n - 1;
		ck_assert_int_eq(p11p_swkey_sign(key, &m, msg, 28, mac, &len),
		                 CKR_BUFFER_TOO_SMALL);
		len = sizeof(mac);
		ck_assert_int_eq(p11p_swkey_sign(key, &m, msg, 28, mac, &len), CKR_OK);
		assert_hex(mac, len, v[i].mac);
		ck_assert_int_eq(p11p_swkey_verify(key, &m, msg, 28, want, n), CKR_OK);
		ck_assert_int_eq(p11p_swkey_verify(key, &m, msg, 28, want, n - 1),
		                 CKR_SIGNATURE_LEN_RANGE);
		want[3] ^= 1;
		ck_assert_int_eq(p11p_swkey_verify(key, &m, msg, 28, want, n),
		                 CKR_SIGNATURE_INVALID);
		want[3] ^= 1;
		/* multi-part in pieces */
		op = NULL;
		ck_assert_int_eq(p11p_swop_init(key, P11P_SWOP_SIGN, &m, &op), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, msg, 5, NULL, NULL), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, NULL, 0, NULL, NULL), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, msg + 5, 23, NULL, NULL), CKR_OK);
		ck_assert_int_eq(p11p_swop_run(op, msg, 28, mac, &len), CKR_OPERATION_ACTIVE);
		len = 2;
		ck_assert_int_eq(p11p_swop_final(op, mac, &len), CKR_BUFFER_TOO_SMALL);
		len = sizeof(mac);
		ck_assert_int_eq(p11p_swop_final(op, mac, &len), CKR_OK);
		assert_hex(mac, len, v[i].mac);
		p11p_swop_free(op);
		ck_assert_int_eq(p11p_swop_init(key, P11P_SWOP_VERIFY, &m, &op), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, msg, 20, NULL, NULL), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, msg + 20, 8, NULL, NULL), CKR_OK);
		ck_assert_int_eq(p11p_swop_verify_final(op, want, n), CKR_OK);
		ck_assert(!p11p_swop_active(op));
		p11p_swop_free(op);
		/* _GENERAL: a prefix, 1..n */
		glen = 10;
		m = (CK_MECHANISM){v[i].g, &glen, sizeof(glen)};
		len = sizeof(mac);
		ck_assert_int_eq(p11p_swkey_sign(key, &m, msg, 28, mac, &len), CKR_OK);
		ck_assert(len == 10 && memcmp(mac, want, 10) == 0);
		ck_assert_int_eq(p11p_swkey_verify(key, &m, msg, 28, want, 10), CKR_OK);
		ck_assert_int_eq(p11p_swkey_verify(key, &m, msg, 28, want, 11),
		                 CKR_SIGNATURE_LEN_RANGE);
		glen = n + 1;
		ck_assert_int_eq(p11p_swkey_sign(key, &m, msg, 28, mac, &len),
		                 CKR_MECHANISM_PARAM_INVALID);
		glen = 0;
		ck_assert_int_eq(p11p_swkey_sign(key, &m, msg, 28, mac, &len),
		                 CKR_MECHANISM_PARAM_INVALID);
	}
	p11p_swkey_free(key);
}
END_TEST

/* ---- Ed25519 (RFC 8032 7.1 test 1) ---------------------------------------------------- */

/*
 * One engine object made several operations in turn (p11p_swop_end, then
 * p11p_swop_init_borrow into it, as the soft room keeps one per session and
 * kind): each answers as a new object would, an ended one is not active, and
 * an init that fails frees it.
 */
START_TEST(test_reuse)
{
	struct p11p_swkey *aes = secret_key(CKK_AES, GCM_K, 0);
	struct p11p_swkey *mac = secret_key(CKK_GENERIC_SECRET, "4a656665", 0);
	const unsigned char *msg = (const unsigned char *)"what do ya want for nothing?";
	unsigned char iv[12], aad[20], pt[60], ct[76], out[128];
	CK_GCM_PARAMS p, bad;
	CK_MECHANISM m = gcm_mech(&p, iv, unhex(GCM_IV, iv, 12), aad, unhex(GCM_A, aad, 20), 128);
	CK_MECHANISM hm = {CKM_SHA256_HMAC, NULL, 0};
	CK_MECHANISM badm = gcm_mech(&bad, iv, 12, NULL, 0, 100); /* not a GCM tag length */
	struct p11p_swop *op = NULL, *first;
	CK_ULONG len;

	unhex(GCM_P, pt, sizeof(pt));
	unhex(GCM_C, ct, 60);
	unhex(GCM_T, ct + 60, 16);
	for (int round = 0; round < 2; round++) {
		/* GCM encrypt (its AAD copied into the object), HMAC, GCM decrypt. */
		ck_assert_int_eq(p11p_swop_init_borrow(aes, P11P_SWOP_ENCRYPT, &m, &op), CKR_OK);
		first = op;
		len = sizeof(out);
		ck_assert_int_eq(p11p_swop_run(op, pt, 60, out, &len), CKR_OK);
		ck_assert(len == 76 && memcmp(out, ct, 76) == 0);
		p11p_swop_end(op);
		ck_assert(!p11p_swop_active(op));
		len = sizeof(out);
		ck_assert_int_eq(p11p_swop_run(op, pt, 60, out, &len),
		                 CKR_OPERATION_NOT_INITIALIZED);

		ck_assert_int_eq(p11p_swop_init_borrow(mac, P11P_SWOP_SIGN, &hm, &op), CKR_OK);
		ck_assert_ptr_eq(op, first);
		len = sizeof(out);
		ck_assert_int_eq(p11p_swop_run(op, msg, 28, out, &len), CKR_OK);
		assert_hex(out, len,
		           "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
		p11p_swop_end(op);

		ck_assert_int_eq(p11p_swop_init_borrow(aes, P11P_SWOP_DECRYPT, &m, &op), CKR_OK);
		ck_assert_ptr_eq(op, first);
		len = sizeof(out);
		ck_assert_int_eq(p11p_swop_run(op, ct, 76, out, &len), CKR_OK);
		ck_assert(len == 60 && memcmp(out, pt, 60) == 0);
		/* Ended while active (the application's next *Init): nothing carried over. */
		ck_assert_int_eq(p11p_swop_init_borrow(aes, P11P_SWOP_ENCRYPT, &m, &op), CKR_OK);
		len = sizeof(out);
		ck_assert_int_eq(p11p_swop_update(op, pt, 16, out, &len), CKR_OK);
		p11p_swop_end(op);
		ck_assert_int_eq(p11p_swop_init_borrow(aes, P11P_SWOP_ENCRYPT, &m, &op), CKR_OK);
		len = sizeof(out);
		ck_assert_int_eq(p11p_swop_run(op, pt, 60, out, &len), CKR_OK);
		ck_assert(len == 76 && memcmp(out, ct, 76) == 0);
		p11p_swop_end(op);
		/* A failing init frees the object (the leak checkers see to the rest). */
		ck_assert_int_eq(p11p_swop_init_borrow(aes, P11P_SWOP_ENCRYPT, &badm, &op),
		                 CKR_MECHANISM_PARAM_INVALID);
		ck_assert_ptr_null(op);
	}
	p11p_swop_end(NULL);
	p11p_swkey_free(aes);
	p11p_swkey_free(mac);
}
END_TEST

START_TEST(test_ed25519)
{
	unsigned char seed[32], sig[64], pt[64];
	struct fixed_rand r = {seed, sizeof(seed), 0, 0};
	struct p11p_swkey_pair_spec spec = {
	    .type = CKK_EC_EDWARDS, .ec_params = ed_params, .ec_params_len = sizeof(ed_params)};
	struct p11p_swkey *priv = NULL, *pub = NULL;
	CK_MECHANISM m = {CKM_EDDSA, NULL, 0};
	struct {
		CK_BBOOL ph;
		CK_ULONG clen;
		CK_BYTE_PTR c;
	} ep = {CK_FALSE, 0, NULL};
	CK_ULONG len;
	struct p11p_swop *op = NULL;
	EVP_PKEY *opk;
	EVP_MD_CTX *md;

	unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", seed, 32);
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, fixed_rand, &r, 0, &priv, &pub), CKR_OK);
	ck_assert_uint_eq(r.calls, 1);
	ck_assert_int_eq(p11p_swkey_class(pub), CKO_PUBLIC_KEY);
	len = sizeof(pt);
	ck_assert_int_eq(p11p_swkey_attr(pub, CKA_EC_POINT, pt, &len), CKR_OK);
	assert_hex(pt, len, "0420d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
	len = sizeof(pt);
	ck_assert_int_eq(p11p_swkey_attr(priv, CKA_EC_PARAMS, pt, &len), CKR_OK);
	assert_hex(pt, len, "06032b6570");
	ck_assert_int_eq(p11p_swkey_sign(priv, &m, NULL, 0, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 64);
	ck_assert_int_eq(p11p_swkey_sign(priv, &m, NULL, 0, sig, &len), CKR_OK);
	assert_hex(
	    sig, len,
	    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
	    "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
	ck_assert_int_eq(p11p_swkey_verify(pub, &m, NULL, 0, sig, 64), CKR_OK);
	ck_assert_int_eq(p11p_swkey_verify(priv, &m, NULL, 0, sig, 64), CKR_OK);
	ck_assert_int_eq(p11p_swkey_verify(pub, &m, NULL, 0, sig, 63), CKR_SIGNATURE_LEN_RANGE);
	sig[10] ^= 1;
	ck_assert_int_eq(p11p_swkey_verify(pub, &m, NULL, 0, sig, 64), CKR_SIGNATURE_INVALID);
	sig[10] ^= 1;
	/* CK_EDDSA_PARAMS without prehash is fine; prehash or a context is not */
	m = (CK_MECHANISM){CKM_EDDSA, &ep, sizeof(ep)};
	len = sizeof(sig);
	ck_assert_int_eq(p11p_swkey_sign(priv, &m, (unsigned char *)"abc", 3, sig, &len), CKR_OK);
	ep.ph = CK_TRUE;
	ck_assert_int_eq(p11p_swkey_sign(priv, &m, (unsigned char *)"abc", 3, sig, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	/* OpenSSL verifies the engine's signature on "abc" */
	opk = ossl_pub(pub);
	md = EVP_MD_CTX_new();
	ck_assert(EVP_DigestVerifyInit(md, NULL, NULL, NULL, opk) == 1);
	ck_assert(EVP_DigestVerify(md, sig, 64, (unsigned char *)"abc", 3) == 1);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(opk);
	/* single-part only; signing with the public key is refused */
	m = (CK_MECHANISM){CKM_EDDSA, NULL, 0};
	ck_assert_int_eq(p11p_swop_init(priv, P11P_SWOP_SIGN, &m, &op), CKR_OK);
	ck_assert_int_eq(p11p_swop_update(op, sig, 3, NULL, NULL), CKR_FUNCTION_NOT_SUPPORTED);
	ck_assert(!p11p_swop_active(op));
	p11p_swop_free(op);
	ck_assert_int_eq(p11p_swop_init(pub, P11P_SWOP_SIGN, &m, &op),
	                 CKR_KEY_FUNCTION_NOT_PERMITTED);
	/* the PrintableString form of the curve, and a failing random source */
	spec.ec_params = (const unsigned char *)"\x13\x0c"
	                                        "edwards25519";
	spec.ec_params_len = 14;
	p11p_swkey_free(pub);
	pub = NULL;
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, failing_rand, NULL, 0, &pub, NULL),
	                 CKR_DEVICE_ERROR);
	ck_assert_ptr_null(pub);
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, real_rand, NULL, 0, &pub, NULL), CKR_OK);
	p11p_swkey_free(pub);
	p11p_swkey_free(priv);
}
END_TEST

/* ---- ECDSA -------------------------------------------------------------------------- */

/* r || s (n bytes each) <-> DER, with OpenSSL directly. */
static int raw_to_der(const unsigned char *sig, size_t n, unsigned char *der)
{
	ECDSA_SIG *s = ECDSA_SIG_new();
	unsigned char *p = der;
	int len;

	ck_assert(
	    ECDSA_SIG_set0(s, BN_bin2bn(sig, (int)n, NULL), BN_bin2bn(sig + n, (int)n, NULL)));
	len = i2d_ECDSA_SIG(s, &p);
	ECDSA_SIG_free(s);
	return len;
}

static void der_to_raw(const unsigned char *der, size_t len, size_t n, unsigned char *sig)
{
	const unsigned char *p = der;
	ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)len);

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(BN_bn2binpad(ECDSA_SIG_get0_r(s), sig, (int)n), (int)n);
	ck_assert_int_eq(BN_bn2binpad(ECDSA_SIG_get0_s(s), sig + n, (int)n), (int)n);
	ECDSA_SIG_free(s);
}

static void ecdsa_cross(struct p11p_swkey *priv, size_t n)
{
	static const CK_MECHANISM_TYPE mechs[] = {CKM_ECDSA_SHA256, CKM_ECDSA_SHA384,
	                                          CKM_ECDSA_SHA512};
	static const char *mds[] = {"SHA256", "SHA384", "SHA512"};
	const unsigned char msg[] = "the message signed";
	unsigned char sig[96], der[128], hash[64];
	struct p11p_swkey *pub = NULL;
	EVP_PKEY *opriv = ossl_priv(priv), *opub;
	EVP_MD_CTX *md;
	CK_ULONG len;
	size_t dl;
	unsigned hl = 0;

	ck_assert_int_eq(p11p_swkey_public(priv, &pub), CKR_OK);
	opub = ossl_pub(pub);
	for (int i = 0; i < 3; i++) {
		CK_MECHANISM m = {mechs[i], NULL, 0};
		struct p11p_swop *op = NULL;

		/* engine signs, OpenSSL verifies */
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, msg, sizeof(msg), NULL, &len), CKR_OK);
		ck_assert_uint_eq(len, 2 * n);
		len = 2 * n - 1;
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, msg, sizeof(msg), sig, &len),
		                 CKR_BUFFER_TOO_SMALL);
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, msg, sizeof(msg), sig, &len), CKR_OK);
		ck_assert_uint_eq(len, 2 * n);
		dl = (size_t)raw_to_der(sig, n, der);
		md = EVP_MD_CTX_new();
		ck_assert(EVP_DigestVerifyInit_ex(md, NULL, mds[i], NULL, NULL, opub, NULL) == 1);
		ck_assert(EVP_DigestVerify(md, der, dl, msg, sizeof(msg)) == 1);
		EVP_MD_CTX_free(md);
		/* OpenSSL signs, engine verifies, single and multi-part */
		md = EVP_MD_CTX_new();
		dl = sizeof(der);
		ck_assert(EVP_DigestSignInit_ex(md, NULL, mds[i], NULL, NULL, opriv, NULL) == 1);
		ck_assert(EVP_DigestSign(md, der, &dl, msg, sizeof(msg)) == 1);
		EVP_MD_CTX_free(md);
		der_to_raw(der, dl, n, sig);
		ck_assert_int_eq(p11p_swkey_verify(pub, &m, msg, sizeof(msg), sig, 2 * n), CKR_OK);
		ck_assert_int_eq(p11p_swop_init(pub, P11P_SWOP_VERIFY, &m, &op), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, msg, 4, NULL, NULL), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, msg + 4, sizeof(msg) - 4, NULL, NULL),
		                 CKR_OK);
		ck_assert_int_eq(p11p_swop_verify_final(op, sig, 2 * n), CKR_OK);
		p11p_swop_free(op);
		ck_assert_int_eq(p11p_swkey_verify(pub, &m, msg, sizeof(msg), sig, 2 * n + 1),
		                 CKR_SIGNATURE_LEN_RANGE);
		sig[5] ^= 0x80;
		ck_assert_int_eq(p11p_swkey_verify(pub, &m, msg, sizeof(msg), sig, 2 * n),
		                 CKR_SIGNATURE_INVALID);
		/* multi-part sign, single-part verify */
		ck_assert_int_eq(p11p_swop_init(priv, P11P_SWOP_SIGN, &m, &op), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, msg, 7, NULL, NULL), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, msg + 7, sizeof(msg) - 7, NULL, NULL),
		                 CKR_OK);
		ck_assert_int_eq(p11p_swop_final(op, NULL, &len), CKR_OK);
		ck_assert_uint_eq(len, 2 * n);
		ck_assert_int_eq(p11p_swop_final(op, sig, &len), CKR_OK);
		p11p_swop_free(op);
		ck_assert_int_eq(p11p_swkey_verify(pub, &m, msg, sizeof(msg), sig, 2 * n), CKR_OK);
		/* the public key signs nothing */
		ck_assert_int_eq(p11p_swop_init(pub, P11P_SWOP_SIGN, &m, &op),
		                 CKR_KEY_FUNCTION_NOT_PERMITTED);
	}
	/* raw CKM_ECDSA on a SHA-256 hash, both ways */
	{
		CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
		EVP_PKEY_CTX *pc;
		struct p11p_swop *op = NULL;

		ck_assert(EVP_Digest(msg, sizeof(msg), hash, &hl, EVP_sha256(), NULL));
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, hash, hl, sig, &len), CKR_OK);
		dl = (size_t)raw_to_der(sig, n, der);
		pc = EVP_PKEY_CTX_new(opub, NULL);
		ck_assert(EVP_PKEY_verify_init(pc) == 1);
		ck_assert(EVP_PKEY_verify(pc, der, dl, hash, hl) == 1);
		EVP_PKEY_CTX_free(pc);
		pc = EVP_PKEY_CTX_new(opriv, NULL);
		dl = sizeof(der);
		ck_assert(EVP_PKEY_sign_init(pc) == 1);
		ck_assert(EVP_PKEY_sign(pc, der, &dl, hash, hl) == 1);
		EVP_PKEY_CTX_free(pc);
		der_to_raw(der, dl, n, sig);
		ck_assert_int_eq(p11p_swkey_verify(pub, &m, hash, hl, sig, 2 * n), CKR_OK);
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, hash, 0, sig, &len), CKR_DATA_LEN_RANGE);
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, der, 65, sig, &len), CKR_DATA_LEN_RANGE);
		/* Signing again: on the context the key kept ready (swop.c ecdsa_sign_ctx). */
		for (int r = 0; r < 3; r++) {
			len = sizeof(sig);
			ck_assert_int_eq(p11p_swkey_sign(priv, &m, hash, hl, sig, &len), CKR_OK);
			ck_assert_uint_eq(len, 2 * n);
			dl = (size_t)raw_to_der(sig, n, der);
			pc = EVP_PKEY_CTX_new(opub, NULL);
			ck_assert(EVP_PKEY_verify_init(pc) == 1);
			ck_assert(EVP_PKEY_verify(pc, der, dl, hash, hl) == 1);
			EVP_PKEY_CTX_free(pc);
		}
		ck_assert_int_eq(p11p_swop_init(priv, P11P_SWOP_SIGN, &m, &op), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, hash, hl, NULL, NULL),
		                 CKR_FUNCTION_NOT_SUPPORTED);
		p11p_swop_free(op);
	}
	EVP_PKEY_free(opriv);
	EVP_PKEY_free(opub);
	p11p_swkey_free(pub);
}

START_TEST(test_ecdsa)
{
	struct p11p_swkey *k256 = ec_key(p256_params, sizeof(p256_params));
	struct p11p_swkey *k384 = ec_key(p384_params, sizeof(p384_params));
	struct p11p_swkey *kder = der_key(CKO_PRIVATE_KEY, CKK_EC, p256_pkcs8);
	unsigned char buf[128], want[128];
	CK_ULONG len;
	size_t wl;
	EVP_PKEY *opk;

	ck_assert_uint_eq(p11p_swkey_len(k256), 32);
	ck_assert_uint_eq(p11p_swkey_len(k384), 48);
	ecdsa_cross(k256, 32);
	ecdsa_cross(k384, 48);
	ecdsa_cross(kder, 32);
	/* public attributes as OpenSSL sees them */
	len = sizeof(buf);
	ck_assert_int_eq(p11p_swkey_attr(k384, CKA_EC_PARAMS, buf, &len), CKR_OK);
	ck_assert(len == sizeof(p384_params) && memcmp(buf, p384_params, len) == 0);
	opk = ossl_priv(kder);
	ck_assert(EVP_PKEY_get_octet_string_param(opk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, want,
	                                          sizeof(want), &wl));
	EVP_PKEY_free(opk);
	ck_assert_int_eq(p11p_swkey_attr(kder, CKA_EC_POINT, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, wl + 2);
	len = sizeof(buf);
	ck_assert_int_eq(p11p_swkey_attr(kder, CKA_EC_POINT, buf, &len), CKR_OK);
	ck_assert(buf[0] == 0x04 && buf[1] == wl && memcmp(buf + 2, want, wl) == 0);
	ck_assert_int_eq(p11p_swkey_attr(kder, CKA_MODULUS, buf, &len), CKR_ATTRIBUTE_TYPE_INVALID);
	ck_assert_int_eq(p11p_swkey_attr(kder, CKA_VALUE, buf, &len), CKR_ATTRIBUTE_TYPE_INVALID);
	ck_assert_int_eq(p11p_swkey_value(kder, buf, &len), CKR_ATTRIBUTE_TYPE_INVALID);
	p11p_swkey_free(k256);
	p11p_swkey_free(k384);
	p11p_swkey_free(kder);
}
END_TEST

/* ---- RSA ------------------------------------------------------------------------------- */

static CK_RSA_PKCS_PSS_PARAMS pss(CK_MECHANISM_TYPE h, CK_RSA_PKCS_MGF_TYPE g, CK_ULONG s)
{
	return (CK_RSA_PKCS_PSS_PARAMS){h, g, s};
}

static void rsa_checks(struct p11p_swkey *priv)
{
	const unsigned char msg[] = "a message for RSA";
	unsigned char sig[512], ref[512], hash[32], di[64], out[512];
	struct p11p_swkey *pub = NULL;
	EVP_PKEY *opriv = ossl_priv(priv), *opub;
	EVP_PKEY_CTX *pc;
	EVP_MD_CTX *md;
	CK_ULONG len;
	size_t rl;
	unsigned hl = 0;
	size_t k = p11p_swkey_len(priv);
	struct p11p_swop *op = NULL;

	memset(out, 0x42, sizeof(out));
	ck_assert_int_eq(p11p_swkey_public(priv, &pub), CKR_OK);
	opub = ossl_pub(pub);
	/* SHA256_RSA_PKCS is deterministic: the very bytes of OpenSSL */
	{
		CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};

		md = EVP_MD_CTX_new();
		rl = sizeof(ref);
		ck_assert(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, opriv) == 1);
		ck_assert(EVP_DigestSign(md, ref, &rl, msg, sizeof(msg)) == 1);
		EVP_MD_CTX_free(md);
		ck_assert_uint_eq(rl, k);
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, msg, sizeof(msg), sig, &len), CKR_OK);
		ck_assert(len == k && memcmp(sig, ref, k) == 0);
		ck_assert_int_eq(p11p_swop_init(priv, P11P_SWOP_SIGN, &m, &op), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, msg, 3, NULL, NULL), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, msg + 3, sizeof(msg) - 3, NULL, NULL),
		                 CKR_OK);
		len = k - 1;
		ck_assert_int_eq(p11p_swop_final(op, sig, &len), CKR_BUFFER_TOO_SMALL);
		ck_assert_uint_eq(len, k);
		ck_assert_int_eq(p11p_swop_final(op, sig, &len), CKR_OK);
		ck_assert(memcmp(sig, ref, k) == 0);
		p11p_swop_free(op);
		ck_assert_int_eq(p11p_swkey_verify(pub, &m, msg, sizeof(msg), ref, k), CKR_OK);
		ck_assert_int_eq(p11p_swkey_verify(pub, &m, msg, sizeof(msg), ref, k - 1),
		                 CKR_SIGNATURE_LEN_RANGE);
		ref[k - 1] ^= 1;
		ck_assert_int_eq(p11p_swkey_verify(pub, &m, msg, sizeof(msg), ref, k),
		                 CKR_SIGNATURE_INVALID);
		ref[k - 1] ^= 1;
	}
	/* SHA384 and SHA512 too (each its own DigestInfo): OpenSSL's very bytes */
	for (int i = 0; i < 2; i++) {
		CK_MECHANISM m = {i == 0 ? CKM_SHA384_RSA_PKCS : CKM_SHA512_RSA_PKCS, NULL, 0};
		unsigned char r2[512];

		md = EVP_MD_CTX_new();
		rl = sizeof(r2);
		ck_assert(EVP_DigestSignInit(md, NULL, i == 0 ? EVP_sha384() : EVP_sha512(), NULL,
		                             opriv) == 1);
		ck_assert(EVP_DigestSign(md, r2, &rl, msg, sizeof(msg)) == 1);
		EVP_MD_CTX_free(md);
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, msg, sizeof(msg), sig, &len), CKR_OK);
		ck_assert(len == k && rl == k && memcmp(sig, r2, k) == 0);
		ck_assert_int_eq(p11p_swkey_verify(pub, &m, msg, sizeof(msg), sig, k), CKR_OK);
	}
	/* raw CKM_RSA_PKCS on the DigestInfo gives the same signature */
	{
		CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};
		size_t dil = unhex("3031300d060960864801650304020105000420", di, sizeof(di));

		ck_assert(EVP_Digest(msg, sizeof(msg), hash, &hl, EVP_sha256(), NULL));
		memcpy(di + dil, hash, 32);
		dil += 32;
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, di, dil, sig, &len), CKR_OK);
		ck_assert(len == k && memcmp(sig, ref, k) == 0);
		ck_assert_int_eq(p11p_swkey_verify(pub, &m, di, dil, sig, k), CKR_OK);
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, out, k - 10, sig, &len),
		                 CKR_DATA_LEN_RANGE);
		ck_assert_int_eq(p11p_swop_init(priv, P11P_SWOP_SIGN, &m, &op), CKR_OK);
		ck_assert_int_eq(p11p_swop_update(op, di, 4, NULL, NULL),
		                 CKR_FUNCTION_NOT_SUPPORTED);
		p11p_swop_free(op);
	}
	/* PSS, hashed and raw, both ways */
	for (int raw = 0; raw < 2; raw++) {
		CK_RSA_PKCS_PSS_PARAMS pp = pss(CKM_SHA256, CKG_MGF1_SHA256, 32);
		CK_MECHANISM m = {raw ? CKM_RSA_PKCS_PSS : CKM_SHA256_RSA_PKCS_PSS, &pp,
		                  sizeof(pp)};
		const unsigned char *in = raw ? hash : msg;
		size_t inl = raw ? 32 : sizeof(msg);

		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, in, inl, sig, &len), CKR_OK);
		pc = EVP_PKEY_CTX_new(opub, NULL);
		ck_assert(EVP_PKEY_verify_init(pc) == 1);
		ck_assert(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1);
		ck_assert(EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1);
		ck_assert(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32) == 1);
		ck_assert(EVP_PKEY_verify(pc, sig, len, hash, 32) == 1);
		EVP_PKEY_CTX_free(pc);
		pc = EVP_PKEY_CTX_new(opriv, NULL);
		rl = sizeof(ref);
		ck_assert(EVP_PKEY_sign_init(pc) == 1);
		ck_assert(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1);
		ck_assert(EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1);
		ck_assert(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32) == 1);
		ck_assert(EVP_PKEY_sign(pc, ref, &rl, hash, 32) == 1);
		EVP_PKEY_CTX_free(pc);
		ck_assert_int_eq(p11p_swkey_verify(pub, &m, in, inl, ref, rl), CKR_OK);
		ref[0] ^= 1;
		ck_assert_int_eq(p11p_swkey_verify(pub, &m, in, inl, ref, rl),
		                 CKR_SIGNATURE_INVALID);
		if (raw) {
			len = sizeof(sig);
			ck_assert_int_eq(p11p_swkey_sign(priv, &m, in, 31, sig, &len),
			                 CKR_DATA_LEN_RANGE);
		}
		/* parameters: hash mismatch, SHA-1, salt too long, wrong size */
		pp = pss(CKM_SHA384, CKG_MGF1_SHA256, 32);
		len = sizeof(sig);
		ck_assert_int_eq(
		    p11p_swkey_sign(priv, &m, raw ? di : in, raw ? 48 : inl, sig, &len),
		    raw ? CKR_OK : CKR_MECHANISM_PARAM_INVALID);
		pp = pss(CKM_SHA_1, CKG_MGF1_SHA1, 20);
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, in, inl, sig, &len),
		                 CKR_MECHANISM_PARAM_INVALID);
		pp = pss(CKM_SHA256, CKG_MGF1_SHA256, k - 32 - 1);
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, in, inl, sig, &len),
		                 CKR_MECHANISM_PARAM_INVALID);
		pp = pss(CKM_SHA256, CKG_MGF1_SHA256, 32);
		m.ulParameterLen--;
		ck_assert_int_eq(p11p_swkey_sign(priv, &m, in, inl, sig, &len),
		                 CKR_MECHANISM_PARAM_INVALID);
	}
	/* OAEP with a label, both ways; PKCS#1 v1.5 encryption, both ways */
	for (int oaep = 0; oaep < 2; oaep++) {
		CK_RSA_PKCS_OAEP_PARAMS op_ = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED,
		                               (void *)"label", 5};
		CK_MECHANISM m = oaep ? (CK_MECHANISM){CKM_RSA_PKCS_OAEP, &op_, sizeof(op_)}
		                      : (CK_MECHANISM){CKM_RSA_PKCS, NULL, 0};
		size_t max = oaep ? k - 66 : k - 11;

		pc = EVP_PKEY_CTX_new(opub, NULL);
		ck_assert(EVP_PKEY_encrypt_init(pc) == 1);
		if (oaep) {
			ck_assert(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) == 1);
			ck_assert(EVP_PKEY_CTX_set_rsa_oaep_md(pc, EVP_sha256()) == 1);
			ck_assert(EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) == 1);
			ck_assert(
			    EVP_PKEY_CTX_set0_rsa_oaep_label(pc, OPENSSL_strdup("label"), 5) == 1);
		} else {
			ck_assert(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1);
		}
		rl = sizeof(ref);
		ck_assert(EVP_PKEY_encrypt(pc, ref, &rl, msg, sizeof(msg)) == 1);
		EVP_PKEY_CTX_free(pc);
		ck_assert_int_eq(p11p_swkey_decrypt(priv, &m, ref, rl, NULL, &len), CKR_OK);
		ck_assert_uint_ge(len, sizeof(msg));
		len = sizeof(msg) - 1;
		ck_assert_int_eq(p11p_swkey_decrypt(priv, &m, ref, rl, out, &len),
		                 CKR_BUFFER_TOO_SMALL);
		ck_assert_uint_eq(len, sizeof(msg));
		ck_assert_int_eq(p11p_swkey_decrypt(priv, &m, ref, rl, out, &len), CKR_OK);
		ck_assert(len == sizeof(msg) && memcmp(out, msg, len) == 0);
		ck_assert_int_eq(p11p_swkey_decrypt(priv, &m, ref, rl - 1, out, &len),
		                 CKR_ENCRYPTED_DATA_LEN_RANGE);
		ref[rl - 1] ^= 1;
		len = sizeof(out);
		ck_assert_int_eq(p11p_swkey_decrypt(priv, &m, ref, rl, out, &len),
		                 CKR_ENCRYPTED_DATA_INVALID);
		/* the engine encrypts (public key), OpenSSL decrypts */
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_encrypt(pub, &m, msg, sizeof(msg), sig, &len), CKR_OK);
		ck_assert_uint_eq(len, k);
		pc = EVP_PKEY_CTX_new(opriv, NULL);
		ck_assert(EVP_PKEY_decrypt_init(pc) == 1);
		if (oaep) {
			ck_assert(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) == 1);
			ck_assert(EVP_PKEY_CTX_set_rsa_oaep_md(pc, EVP_sha256()) == 1);
			ck_assert(EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) == 1);
			ck_assert(
			    EVP_PKEY_CTX_set0_rsa_oaep_label(pc, OPENSSL_strdup("label"), 5) == 1);
		} else {
			ck_assert(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1);
		}
		rl = sizeof(ref);
		ck_assert(EVP_PKEY_decrypt(pc, ref, &rl, sig, len) == 1);
		ck_assert(rl == sizeof(msg) && memcmp(ref, msg, rl) == 0);
		EVP_PKEY_CTX_free(pc);
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_encrypt(pub, &m, out, max, sig, &len), CKR_OK);
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_encrypt(pub, &m, out, max + 1, sig, &len),
		                 CKR_DATA_LEN_RANGE);
		ck_assert_int_eq(p11p_swkey_decrypt(pub, &m, sig, k, out, &len),
		                 CKR_KEY_FUNCTION_NOT_PERMITTED);
		ck_assert_int_eq(p11p_swop_init(priv, P11P_SWOP_ENCRYPT, &m, &op), CKR_OK);
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swop_update(op, msg, 3, sig, &len),
		                 CKR_FUNCTION_NOT_SUPPORTED);
		p11p_swop_free(op);
		if (oaep) {
			op_.hashAlg = CKM_SHA_1;
			ck_assert_int_eq(p11p_swkey_encrypt(pub, &m, msg, 3, sig, &len),
			                 CKR_MECHANISM_PARAM_INVALID);
			op_.hashAlg = CKM_SHA256;
			op_.source = 7;
			ck_assert_int_eq(p11p_swkey_encrypt(pub, &m, msg, 3, sig, &len),
			                 CKR_MECHANISM_PARAM_INVALID);
			op_.source = CKZ_DATA_SPECIFIED;
			op_.pSourceData = NULL;
			ck_assert_int_eq(p11p_swkey_encrypt(pub, &m, msg, 3, sig, &len),
			                 CKR_MECHANISM_PARAM_INVALID);
		}
	}
	/* public attributes */
	{
		unsigned char n[512];
		CK_ULONG bits = 0;
		BIGNUM *bn = NULL;

		len = sizeof(n);
		ck_assert_int_eq(p11p_swkey_attr(pub, CKA_MODULUS, n, &len), CKR_OK);
		ck_assert(EVP_PKEY_get_bn_param(opub, OSSL_PKEY_PARAM_RSA_N, &bn));
		ck_assert_uint_eq(len, (size_t)BN_num_bytes(bn));
		BN_bn2bin(bn, sig);
		ck_assert(memcmp(sig, n, len) == 0);
		BN_free(bn);
		len = sizeof(n);
		ck_assert_int_eq(p11p_swkey_attr(priv, CKA_PUBLIC_EXPONENT, n, &len), CKR_OK);
		assert_hex(n, len, "010001");
		len = sizeof(bits);
		ck_assert_int_eq(
		    p11p_swkey_attr(priv, CKA_MODULUS_BITS, (unsigned char *)&bits, &len), CKR_OK);
		ck_assert_uint_eq(bits, k * 8);
		ck_assert_int_eq(p11p_swkey_attr(priv, CKA_EC_POINT, n, &len),
		                 CKR_ATTRIBUTE_TYPE_INVALID);
	}
	EVP_PKEY_free(opriv);
	EVP_PKEY_free(opub);
	p11p_swkey_free(pub);
}

START_TEST(test_rsa)
{
	struct p11p_swkey *key = der_key(CKO_PRIVATE_KEY, CKK_RSA, rsa2048_pkcs8);

	ck_assert_uint_eq(p11p_swkey_len(key), 256);
	rsa_checks(key);
	p11p_swkey_free(key);
}
END_TEST

START_TEST(test_rsa_generate)
{
	static const unsigned char e3[] = {0x03};
	struct p11p_swkey_pair_spec spec = {.type = CKK_RSA, .modulus_bits = 2048};
	struct p11p_swkey *priv = NULL, *pub = NULL;
	struct fixed_rand r = {(const unsigned char *)"seed", 4, 0, 0};
	unsigned char e[8];
	CK_ULONG len = sizeof(e);

	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, fixed_rand, &r, 0, &priv, &pub), CKR_OK);
	ck_assert_uint_eq(r.calls, 1); /* the DRBGs were reseeded from it */
	ck_assert_int_eq(p11p_swkey_class(pub), CKO_PUBLIC_KEY);
	rsa_checks(priv);
	p11p_swkey_free(priv);
	p11p_swkey_free(pub);
	spec.modulus_bits = 1024;
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, real_rand, NULL, 0, &priv, NULL),
	                 CKR_KEY_SIZE_RANGE);
	spec.modulus_bits = 4104;
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, real_rand, NULL, 0, &priv, NULL),
	                 CKR_KEY_SIZE_RANGE);
	spec.modulus_bits = 2048;
	spec.public_exponent = (const unsigned char *)"\x01\x00\x00";
	spec.public_exponent_len = 3;
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, real_rand, NULL, 0, &priv, NULL),
	                 CKR_TEMPLATE_INCONSISTENT);
	spec.public_exponent = e3;
	spec.public_exponent_len = 1;
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, failing_rand, NULL, 0, &priv, NULL),
	                 CKR_DEVICE_ERROR);
	ck_assert_ptr_null(priv);
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, real_rand, NULL, 0, &priv, NULL), CKR_OK);
	ck_assert_int_eq(p11p_swkey_attr(priv, CKA_PUBLIC_EXPONENT, e, &len), CKR_OK);
	assert_hex(e, len, "03");
	p11p_swkey_free(priv);
}
END_TEST

/* ---- construction, serialisation, the general rules ----------------------------------- */

START_TEST(test_serialise)
{
	unsigned char der[2048], buf[2048];
	size_t n = unhex(p256_pkcs8, der, sizeof(der));
	struct p11p_swkey *k = NULL, *k2 = NULL, *pub = NULL;
	struct p11p_secret *s = NULL;
	struct fixed_rand r = {(const unsigned char *)"0123456789abcdef0123456789abcdef", 32, 0, 0};
	struct p11p_swkey_pair_spec spec = {.type = CKK_EC};
	CK_ULONG len;

	/* private: PKCS#8 in, the same PKCS#8 out */
	ck_assert_int_eq(p11p_swkey_from_der(CKO_PRIVATE_KEY, CKK_EC, der, n, 0, &k), CKR_OK);
	ck_assert_int_eq(p11p_swkey_class(k), CKO_PRIVATE_KEY);
	ck_assert_int_eq(p11p_swkey_serialise(k, &s), CKR_OK);
	ck_assert(p11p_secret_len(s) == n && memcmp(p11p_secret_data(s), der, n) == 0);
	p11p_secret_free(s);
	/* public: SPKI in and out */
	ck_assert_int_eq(p11p_swkey_public(k, &pub), CKR_OK);
	ck_assert_int_eq(p11p_swkey_serialise(pub, &s), CKR_OK);
	len = sizeof(buf);
	ck_assert_int_eq(p11p_swkey_attr(k, CKA_PUBLIC_KEY_INFO, buf, &len), CKR_OK);
	ck_assert(p11p_secret_len(s) == len && memcmp(p11p_secret_data(s), buf, len) == 0);
	ck_assert_int_eq(p11p_swkey_from_der(CKO_PUBLIC_KEY, CKK_EC, p11p_secret_data(s),
	                                     p11p_secret_len(s), 0, &k2),
	                 CKR_OK);
	ck_assert_int_eq(p11p_swkey_class(k2), CKO_PUBLIC_KEY);
	p11p_swkey_free(k2);
	p11p_secret_free(s);
	/* damaged, truncated, trailing bytes, other type or class */
	k2 = (void *)1;
	ck_assert_int_eq(p11p_swkey_from_der(CKO_PRIVATE_KEY, CKK_EC, der, n - 1, 0, &k2),
	                 CKR_WRAPPED_KEY_INVALID);
	ck_assert_ptr_null(k2);
	memcpy(buf, der, n);
	buf[n] = 0;
	ck_assert_int_eq(p11p_swkey_from_der(CKO_PRIVATE_KEY, CKK_EC, buf, n + 1, 0, &k2),
	                 CKR_WRAPPED_KEY_INVALID);
	buf[0] = 0x31;
	ck_assert_int_eq(p11p_swkey_from_der(CKO_PRIVATE_KEY, CKK_EC, buf, n, 0, &k2),
	                 CKR_WRAPPED_KEY_INVALID);
	ck_assert_int_eq(p11p_swkey_from_der(CKO_PRIVATE_KEY, CKK_RSA, der, n, 0, &k2),
	                 CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(p11p_swkey_from_der(CKO_PUBLIC_KEY, CKK_EC, der, n, 0, &k2),
	                 CKR_WRAPPED_KEY_INVALID);
	ck_assert_int_eq(p11p_swkey_from_der(CKO_DATA, CKK_EC, der, n, 0, &k2),
	                 CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(p11p_swkey_from_der(CKO_PRIVATE_KEY, CKK_EC, der, 0, 0, &k2),
	                 CKR_WRAPPED_KEY_INVALID);
	p11p_swkey_free(pub);
	p11p_swkey_free(k);
	/* secret keys: raw bytes both ways, from the caller's random source */
	ck_assert_int_eq(
	    p11p_swkey_generate(CKK_AES, 32, fixed_rand, &r, P11P_SWKEY_EXTRACTABLE, &k), CKR_OK);
	len = sizeof(buf);
	ck_assert_int_eq(p11p_swkey_value(k, buf, &len), CKR_OK);
	ck_assert(len == 32 && memcmp(buf, r.p, 32) == 0);
	ck_assert_int_eq(p11p_swkey_serialise(k, &s), CKR_OK);
	ck_assert(p11p_secret_len(s) == 32 && memcmp(p11p_secret_data(s), r.p, 32) == 0);
	ck_assert_int_eq(
	    p11p_swkey_from_der(CKO_SECRET_KEY, CKK_AES, p11p_secret_data(s), 32, 0, &k2), CKR_OK);
	len = sizeof(buf);
	ck_assert_int_eq(p11p_swkey_attr(k2, CKA_VALUE_LEN, buf, &len), CKR_OK);
	ck_assert_uint_eq(len, sizeof(CK_ULONG));
	ck_assert_int_eq(p11p_swkey_value(k2, buf, &len), CKR_ATTRIBUTE_SENSITIVE);
	ck_assert_int_eq(p11p_swkey_attr(k2, CKA_VALUE, buf, &len), CKR_ATTRIBUTE_TYPE_INVALID);
	p11p_secret_free(s);
	p11p_swkey_free(k2);
	p11p_swkey_free(k);
	ck_assert_int_eq(p11p_swkey_generate(CKK_AES, 20, real_rand, NULL, 0, &k),
	                 CKR_KEY_SIZE_RANGE);
	ck_assert_int_eq(p11p_swkey_generate(CKK_EC, 32, real_rand, NULL, 0, &k),
	                 CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(p11p_swkey_generate(CKK_GENERIC_SECRET, 64, failing_rand, NULL, 0, &k),
	                 CKR_DEVICE_ERROR);
	ck_assert_int_eq(p11p_swkey_generate(CKK_GENERIC_SECRET, 64, real_rand, NULL, 0, &k),
	                 CKR_OK);
	p11p_swkey_free(k);
	/* curves */
	spec.ec_params = (const unsigned char *)"\x06\x05\x2b\x81\x04\x00\x23"; /* P-521 */
	spec.ec_params_len = 7;
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, real_rand, NULL, 0, &k, NULL),
	                 CKR_CURVE_NOT_SUPPORTED);
	spec.ec_params = (const unsigned char *)"\x30\x03\x02\x01\x01";
	spec.ec_params_len = 5;
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, real_rand, NULL, 0, &k, NULL),
	                 CKR_DOMAIN_PARAMS_INVALID);
	spec.ec_params = ed_params;
	spec.ec_params_len = sizeof(ed_params);
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, real_rand, NULL, 0, &k, NULL),
	                 CKR_CURVE_NOT_SUPPORTED);
	spec.type = CKK_DSA;
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, real_rand, NULL, 0, &k, NULL),
	                 CKR_KEY_TYPE_INCONSISTENT);
}
END_TEST

START_TEST(test_rules)
{
	struct p11p_swkey *aes = secret_key(CKK_AES, A_K, 0);
	struct p11p_swkey *gen = secret_key(CKK_GENERIC_SECRET, A_K, 0);
	struct p11p_swkey *ec = ec_key(p256_params, sizeof(p256_params));
	unsigned char iv[16] = {0}, buf[64];
	CK_MECHANISM m = {CKM_AES_CBC, iv, 16};
	struct p11p_swop *op = NULL;
	CK_ULONG len = sizeof(buf);
	const CK_MECHANISM_TYPE *list;
	CK_MECHANISM_INFO info;
	size_t n;

	/* the mechanism for the operation, the key for the mechanism */
	ck_assert_int_eq(p11p_swop_init(aes, P11P_SWOP_SIGN, &m, &op), CKR_MECHANISM_INVALID);
	ck_assert_int_eq(p11p_swop_init(gen, P11P_SWOP_ENCRYPT, &m, &op),
	                 CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(p11p_swop_init(ec, P11P_SWOP_ENCRYPT, &m, &op), CKR_KEY_TYPE_INCONSISTENT);
	m = (CK_MECHANISM){CKM_SHA256_HMAC, NULL, 0};
	ck_assert_int_eq(p11p_swop_init(ec, P11P_SWOP_SIGN, &m, &op), CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(p11p_swop_init(aes, P11P_SWOP_ENCRYPT, &m, &op), CKR_MECHANISM_INVALID);
	m = (CK_MECHANISM){CKM_ECDSA_SHA256, NULL, 0};
	ck_assert_int_eq(p11p_swop_init(aes, P11P_SWOP_SIGN, &m, &op), CKR_KEY_TYPE_INCONSISTENT);
	m = (CK_MECHANISM){CKM_ECDSA_SHA256, iv, 4};
	ck_assert_int_eq(p11p_swop_init(ec, P11P_SWOP_SIGN, &m, &op), CKR_MECHANISM_PARAM_INVALID);
	m = (CK_MECHANISM){CKM_ECDSA_SHA1, NULL, 0};
	ck_assert_int_eq(p11p_swop_init(ec, P11P_SWOP_SIGN, &m, &op), CKR_MECHANISM_INVALID);
	m = (CK_MECHANISM){CKM_RSA_PKCS_OAEP, NULL, 0};
	ck_assert_int_eq(p11p_swop_init(ec, P11P_SWOP_SIGN, &m, &op), CKR_MECHANISM_INVALID);
	ck_assert_ptr_null(op);
	/* the operation lives until a call ends it */
	m = (CK_MECHANISM){CKM_SHA256_HMAC, NULL, 0};
	ck_assert_int_eq(p11p_swop_init(gen, P11P_SWOP_SIGN, &m, &op), CKR_OK);
	ck_assert_int_eq(p11p_swop_run(op, buf, 10, NULL, &len), CKR_OK);
	ck_assert(p11p_swop_active(op));
	ck_assert_int_eq(p11p_swop_verify_final(op, buf, 32), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(p11p_swop_run(op, NULL, 10, buf, &len), CKR_ARGUMENTS_BAD);
	ck_assert(!p11p_swop_active(op));
	ck_assert_int_eq(p11p_swop_run(op, buf, 10, buf, &len), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(p11p_swop_update(op, buf, 10, NULL, NULL), CKR_OPERATION_NOT_INITIALIZED);
	p11p_swop_free(op);
	/* an operation keeps its key: the owner may drop it */
	m = (CK_MECHANISM){CKM_AES_CBC, iv, 16};
	ck_assert_int_eq(p11p_swop_init(aes, P11P_SWOP_ENCRYPT, &m, &op), CKR_OK);
	p11p_swkey_free(aes);
	len = sizeof(buf);
	ck_assert_int_eq(p11p_swop_run(op, buf, 16, buf, &len), CKR_OK);
	p11p_swop_free(op);
	/* the table */
	n = p11p_swkey_mechanisms(&list);
	ck_assert_uint_eq(n, 24);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(p11p_swkey_mechanism_info(list[i], &info), CKR_OK);
	ck_assert_int_eq(p11p_swkey_mechanism_info(CKM_AES_ECB, &info), CKR_MECHANISM_INVALID);
	ck_assert_int_eq(p11p_swkey_mechanism_info(CKM_ECDSA, &info), CKR_OK);
	ck_assert(info.flags & CKF_SIGN);
	p11p_swkey_free(gen);
	p11p_swkey_free(ec);
}
END_TEST

/* ---- threads: one key, two threads ------------------------------------------------------ */

struct tctx {
	struct p11p_swkey *aes, *ec, *hmac, *ed, *rsa;
	int seed;
	int failures;
};

static void *worker(void *arg)
{
	struct tctx *t = arg;
	unsigned char iv[12] = {0}, pt[300], ct[400], back[400], sig[64];
	CK_GCM_PARAMS p;
	CK_MECHANISM g = gcm_mech(&p, iv, 12, NULL, 0, 128);
	CK_MECHANISM e = {CKM_ECDSA_SHA256, NULL, 0}, h = {CKM_SHA384_HMAC, NULL, 0};
	CK_ULONG len, bl;

	for (int i = 0; i < 200; i++) {
		memset(pt, t->seed + i, sizeof(pt));
		iv[0] = (unsigned char)i;
		len = sizeof(ct);
		bl = sizeof(back);
		if (p11p_swkey_encrypt(t->aes, &g, pt, sizeof(pt), ct, &len) != CKR_OK ||
		    p11p_swkey_decrypt(t->aes, &g, ct, len, back, &bl) != CKR_OK ||
		    bl != sizeof(pt) || memcmp(back, pt, bl) != 0)
			t->failures++;
		len = sizeof(sig);
		if (p11p_swkey_sign(t->hmac, &h, pt, 100, sig, &len) != CKR_OK ||
		    p11p_swkey_verify(t->hmac, &h, pt, 100, sig, len) != CKR_OK)
			t->failures++;
		if (i % 10 == 0) {
			CK_MECHANISM ed = {CKM_EDDSA, NULL, 0}, raw = {CKM_ECDSA, NULL, 0};

			len = sizeof(sig);
			if (p11p_swkey_sign(t->ec, &e, pt, 100, sig, &len) != CKR_OK ||
			    p11p_swkey_verify(t->ec, &e, pt, 100, sig, len) != CKR_OK)
				t->failures++;
			len = sizeof(sig);
			/* raw: the key's kept signing contexts, taken by both threads */
			if (p11p_swkey_sign(t->ec, &raw, pt, 32, sig, &len) != CKR_OK ||
			    p11p_swkey_verify(t->ec, &raw, pt, 32, sig, len) != CKR_OK)
				t->failures++;
			len = sizeof(sig);
			if (p11p_swkey_sign(t->ed, &ed, pt, 100, sig, &len) != CKR_OK ||
			    p11p_swkey_verify(t->ed, &ed, pt, 100, sig, len) != CKR_OK)
				t->failures++;
		}
		if (i % 50 == 0) {
			CK_MECHANISM r = {CKM_SHA256_RSA_PKCS, NULL, 0};

			len = sizeof(ct);
			if (p11p_swkey_sign(t->rsa, &r, pt, 100, ct, &len) != CKR_OK ||
			    p11p_swkey_verify(t->rsa, &r, pt, 100, ct, len) != CKR_OK)
				t->failures++;
		}
	}
	return NULL;
}

START_TEST(test_threads)
{
	for (unsigned flags = 0; flags <= P11P_SWKEY_CACHE_CTX; flags += P11P_SWKEY_CACHE_CTX) {
		struct tctx t[2];
		pthread_t th[2];
		struct p11p_swkey *aes = NULL, *hmac = NULL, *ec = ec_key(p256_params, 10),
		                  *ed = NULL;
		struct p11p_swkey *rsa = der_key(CKO_PRIVATE_KEY, CKK_RSA, rsa2048_pkcs8);
		struct p11p_swkey_pair_spec spec = {.type = CKK_EC_EDWARDS,
		                                    .ec_params = ed_params,
		                                    .ec_params_len = sizeof(ed_params)};

		ck_assert_int_eq(p11p_swkey_generate(CKK_AES, 32, real_rand, NULL, flags, &aes),
		                 CKR_OK);
		ck_assert_int_eq(
		    p11p_swkey_generate(CKK_GENERIC_SECRET, 48, real_rand, NULL, flags, &hmac),
		    CKR_OK);
		ck_assert_int_eq(p11p_swkey_generate_pair(&spec, real_rand, NULL, 0, &ed, NULL),
		                 CKR_OK);
		for (int i = 0; i < 2; i++) {
			t[i] = (struct tctx){aes, ec, hmac, ed, rsa, i * 7, 0};
			ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &t[i]), 0);
		}
		for (int i = 0; i < 2; i++) {
			ck_assert_int_eq(pthread_join(th[i], NULL), 0);
			ck_assert_int_eq(t[i].failures, 0);
		}
		p11p_swkey_free(aes);
		p11p_swkey_free(hmac);
		p11p_swkey_free(ec);
		p11p_swkey_free(ed);
		p11p_swkey_free(rsa);
	}
}
END_TEST

/* ---- hygiene ------------------------------------------------------------------------------ */

#define MASK 0xa5

/* Key bytes the test knows only masked (so that the test itself holds no clear copy). */
static unsigned char masked[32];

static CK_RV masked_rand(void *arg, unsigned char *buf, size_t len)
{
	(void)arg;
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(masked[i % sizeof(masked)] ^ MASK);
	return CKR_OK;
}

/*
 * Copies of the 32 key bytes, in either byte order (OpenSSL's bignums are
 * little-endian in memory), in the process's anonymous memory (heap, stack,
 * anonymous maps), counting non-dumpable mappings (VmFlags dd) only if
 * with_dd. Compares byte by byte against the masked copy: no clear needle.
 */
static unsigned scan_for(const unsigned char needle_masked[32], bool with_dd)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	unsigned long start = 0, end = 0;
	bool cand = false;
	unsigned hits = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long s, e;
		char perms[8] = "", path[256] = "";
		unsigned long off, inode;
		char dev[16];

		if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %255s", &s, &e, perms, &off, dev, &inode,
		           path) >= 6 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			start = s;
			end = e;
			cand = perms[0] == 'r' && inode == 0 &&
			       (path[0] == '\0' || strcmp(path, "[heap]") == 0 ||
			        strcmp(path, "[stack]") == 0);
			continue;
		}
		if (strncmp(line, "VmFlags:", 8) != 0 || !cand)
			continue;
		if (!with_dd && strstr(line, " dd") != NULL)
			continue;
		for (const volatile unsigned char *p = (const unsigned char *)start;
		     p + 32 <= (const unsigned char *)end; p++) {
			size_t i = 0, j = 0;

			while (i < 32 && p[i] == (unsigned char)(needle_masked[i] ^ MASK))
				i++;
			while (j < 32 && p[j] == (unsigned char)(needle_masked[31 - j] ^ MASK))
				j++;
			hits += (i == 32) + (j == 32);
		}
	}
	fclose(f);
	return hits;
}

static unsigned scan(bool with_dd)
{
	return scan_for(masked, with_dd);
}

/* masked = the 32 bytes after `marker` in a hex string, masked as they are read. */
static void mask_from_hex(const char *hex, const char *marker)
{
	const char *p = strstr(hex, marker);

	ck_assert_ptr_nonnull(p);
	p += strlen(marker);
	for (int i = 0; i < 32; i++) {
		unsigned v;

		ck_assert_int_eq(sscanf(p + 2 * i, "%2x", &v), 1);
		masked[i] = (unsigned char)(v ^ MASK);
		v = 0;
	}
}

/* A key from a hex PKCS#8, the DER wiped after. */
static struct p11p_swkey *der_key_wiped(CK_KEY_TYPE type, const char *hex)
{
	unsigned char der[2048];
	size_t n = unhex(hex, der, sizeof(der));
	struct p11p_swkey *key = NULL;

	ck_assert_int_eq(p11p_swkey_from_der(CKO_PRIVATE_KEY, type, der, n, 0, &key), CKR_OK);
	p11p_wipe(der, sizeof(der));
	return key;
}

static void one_of_each(struct p11p_swkey *key)
{
	unsigned char iv[16] = {1}, buf[256], out[300];
	CK_GCM_PARAMS p;
	CK_MECHANISM g = gcm_mech(&p, iv, 12, NULL, 0, 128), c = {CKM_AES_CBC, iv, 16},
	             h = {CKM_SHA256_HMAC, NULL, 0};
	CK_ULONG len = sizeof(out);

	memset(buf, 7, sizeof(buf));
	ck_assert_int_eq(p11p_swkey_encrypt(key, &g, buf, sizeof(buf), out, &len), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_decrypt(key, &c, buf, sizeof(buf), out, &len), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(p11p_swkey_sign(key, &h, buf, sizeof(buf), out, &len), CKR_OK);
}

START_TEST(test_hygiene)
{
	struct p11p_swkey *key = NULL;
	struct p11p_swkey_pair_spec spec = {
	    .type = CKK_EC_EDWARDS, .ec_params = ed_params, .ec_params_len = sizeof(ed_params)};
	CK_MECHANISM ed = {CKM_EDDSA, NULL, 0};
	unsigned char sig[64];
	CK_ULONG len = sizeof(sig);

#ifdef __SANITIZE_ADDRESS__
	return; /* ASan's shadow and quarantine are not the process a core dump shows */
#endif
	if (RUNNING_ON_VALGRIND)
		return; /* valgrind keeps the guest registers in its own memory */
	RAND_bytes(masked, sizeof(masked));
	ck_assert_uint_eq(scan(true), 0);
	/* AES-256: key bytes in the locked secret only, never in dumpable memory */
	ck_assert_int_eq(p11p_swkey_generate(CKK_AES, 32, masked_rand, NULL, 0, &key), CKR_OK);
	ck_assert_uint_ge(scan(true), 1); /* the scanner does see it (in the secret's pages) */
	one_of_each(key);
	ck_assert_uint_eq(scan(false), 0);
	p11p_swkey_free(key);
	ck_assert_uint_eq(scan(true), 0);
	/* the control: cached contexts put the AES-256 schedule (the key first) in the heap */
	ck_assert_int_eq(
	    p11p_swkey_generate(CKK_AES, 32, masked_rand, NULL, P11P_SWKEY_CACHE_CTX, &key),
	    CKR_OK);
	one_of_each(key);
	ck_assert_uint_ge(scan(false), 1);
	p11p_swkey_free(key);
	ck_assert_uint_eq(scan(true), 0);
	/* Ed25519: the seed in the key's secret only (signing keys live for one operation) */
	ck_assert_int_eq(p11p_swkey_generate_pair(&spec, masked_rand, NULL, 0, &key, NULL), CKR_OK);
	ck_assert(p11p_swkey_secure_heap_used());
	ck_assert_int_eq(p11p_swkey_sign(key, &ed, sig, 10, sig, &len), CKR_OK);
	ck_assert_uint_eq(scan(false), 0);
	ck_assert_uint_ge(scan(true), 1);
	p11p_swkey_free(key);
	ck_assert_uint_eq(scan(true), 0);
}
END_TEST

/*
 * An HMAC-SHA256 keyed state of the 32-byte key masked[] (unmasked): the
 * SHA-256 state after the block key ^ pad (0x36 inner, 0x5c outer), as
 * OpenSSL's SHA-256 keeps it (its low-level context: the words the engine
 * keeps, and the digest provider too), masked.
 */
static void hmac_state_masked(unsigned char out[32], unsigned char padbyte)
{
	unsigned char block[64];
	SHA256_CTX c;

	for (int i = 0; i < 64; i++)
		block[i] = (unsigned char)((i < 32 ? masked[i] ^ MASK : 0) ^ padbyte);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	SHA256_Init(&c);
	SHA256_Update(&c, block, sizeof(block));
#pragma GCC diagnostic pop
	ck_assert_uint_eq(sizeof(c.h), 32);
	memcpy(out, c.h, 32);
	for (int i = 0; i < 32; i++)
		out[i] ^= MASK;
	OPENSSL_cleanse(&c, sizeof(c));
	OPENSSL_cleanse(block, sizeof(block));
}

/*
 * The key's keyed HMAC states (inner and outer, as good as the key) are in
 * its non-dumpable secret only: never in dumpable memory once the
 * operations are over (single- and multi-part, one ended by an error), with
 * or without P11P_SWKEY_CACHE_CTX (which caches cipher contexts only), and
 * wiped when the key is freed. The scanner does find them in the secret's
 * pages while the key lives.
 */
START_TEST(test_hygiene_hmac)
{
	static const CK_MECHANISM_TYPE mechs[] = {CKM_SHA256_HMAC, CKM_SHA256_HMAC_GENERAL};
	unsigned char inner[32], outer[32], buf[200], sig[64];
	CK_ULONG general = 16;

#ifdef __SANITIZE_ADDRESS__
	return; /* as test_hygiene */
#endif
	if (RUNNING_ON_VALGRIND)
		return;
	RAND_bytes(masked, sizeof(masked));
	hmac_state_masked(inner, 0x36);
	hmac_state_masked(outer, 0x5c);
	ck_assert_uint_eq(scan_for(inner, true), 0);
	ck_assert_uint_eq(scan_for(outer, true), 0);
	memset(buf, 3, sizeof(buf));
	for (unsigned flags = 0; flags <= P11P_SWKEY_CACHE_CTX; flags += P11P_SWKEY_CACHE_CTX) {
		struct p11p_swkey *key = NULL;

		ck_assert_int_eq(
		    p11p_swkey_generate(CKK_GENERIC_SECRET, 32, masked_rand, NULL, flags, &key),
		    CKR_OK);
		for (int i = 0; i < 4; i++) {
			CK_MECHANISM m = {mechs[i % 2], i % 2 ? &general : NULL,
			                  i % 2 ? sizeof(general) : 0};
			CK_ULONG len = sizeof(sig);
			struct p11p_swop *op = NULL;

			ck_assert_int_eq(p11p_swkey_sign(key, &m, buf, sizeof(buf), sig, &len),
			                 CKR_OK);
			ck_assert_int_eq(p11p_swkey_verify(key, &m, buf, sizeof(buf), sig, len),
			                 CKR_OK);
			/* multi-part, and one ended by an error (a bad signature) */
			ck_assert_int_eq(p11p_swop_init(key, P11P_SWOP_VERIFY, &m, &op), CKR_OK);
			ck_assert_int_eq(p11p_swop_update(op, buf, 50, NULL, NULL), CKR_OK);
			sig[0] ^= 1;
			ck_assert_int_eq(p11p_swop_verify_final(op, sig, len),
			                 CKR_SIGNATURE_INVALID);
			p11p_swop_free(op);
		}
		ck_assert_uint_eq(scan(false), 0);
		ck_assert_uint_eq(scan_for(inner, false), 0);
		ck_assert_uint_eq(scan_for(outer, false), 0);
		/* the control: the scanner sees both states where they are kept */
		ck_assert_uint_ge(scan_for(inner, true), 1);
		ck_assert_uint_ge(scan_for(outer, true), 1);
		p11p_swkey_free(key);
		ck_assert_uint_eq(scan_for(inner, true), 0);
		ck_assert_uint_eq(scan_for(outer, true), 0);
	}
}
END_TEST

START_TEST(test_hygiene_asym)
{
	struct p11p_swkey *key;
	struct p11p_secret *ser = NULL;
	unsigned char sig[512], h[32] = {1};
	CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0}, rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
	CK_ULONG len = sizeof(sig);

#ifdef __SANITIZE_ADDRESS__
	return;
#endif
	if (RUNNING_ON_VALGRIND)
		return;
	/* EC P-256 from PKCS#8 (as the store loads it): the scalar d */
	mask_from_hex(p256_pkcs8, "0201010420");
	ck_assert_uint_eq(scan(true), 0);
	key = der_key_wiped(CKK_EC, p256_pkcs8);
	ck_assert_int_eq(p11p_swkey_sign(key, &ecdsa, h, 32, sig, &len), CKR_OK);

	ck_assert_int_eq(p11p_swkey_serialise(key, &ser), CKR_OK);
	p11p_secret_free(ser);
	ck_assert_uint_eq(scan(false), 0);
	p11p_swkey_free(key);
	ck_assert_uint_eq(scan(true), 0);
	/* RSA-2048 from PKCS#8: the first 32 bytes of the private exponent */
	mask_from_hex(rsa2048_pkcs8, "020301000102820100");
	ck_assert_uint_eq(scan(true), 0);
	key = der_key_wiped(CKK_RSA, rsa2048_pkcs8);
	len = sizeof(sig);
	ck_assert_int_eq(p11p_swkey_sign(key, &rsa, h, 32, sig, &len), CKR_OK);
	ck_assert_uint_eq(scan(false), 0);
	p11p_swkey_free(key);
	ck_assert_uint_eq(scan(true), 0);
	/* the same for the first 32 bytes of the prime p, serialised too */
	mask_from_hex(rsa2048_pkcs8, "5fbe4ade7702818100");
	key = der_key_wiped(CKK_RSA, rsa2048_pkcs8);
	len = sizeof(sig);
	ck_assert_int_eq(p11p_swkey_sign(key, &rsa, h, 32, sig, &len), CKR_OK);
	ck_assert_int_eq(p11p_swkey_serialise(key, &ser), CKR_OK);
	p11p_secret_free(ser);
	ck_assert_uint_eq(scan(false), 0);
	p11p_swkey_free(key);
	ck_assert_uint_eq(scan(true), 0);
}
END_TEST

/* ---- keys from their PKCS#11 parts ---------------------------------------------------------- */

/* The fixture's key parsed by OpenSSL (default context), for its parts. */
static EVP_PKEY *ossl_key(const char *hex)
{
	unsigned char der[2048];
	size_t n = unhex(hex, der, sizeof(der));
	const unsigned char *p = der;
	EVP_PKEY *pk = d2i_AutoPrivateKey(NULL, &p, (long)n);

	ck_assert_ptr_nonnull(pk);
	return pk;
}

static size_t part_of(EVP_PKEY *pk, const char *name, unsigned char *out, size_t pad)
{
	BIGNUM *bn = NULL;
	int n;

	ck_assert(EVP_PKEY_get_bn_param(pk, name, &bn));
	n = pad ? BN_bn2binpad(bn, out, (int)pad) : BN_bn2bin(bn, out);
	BN_clear_free(bn);
	ck_assert_int_gt(n, 0);
	return (size_t)n;
}

static void assert_serialised(struct p11p_swkey *key, const char *hex)
{
	struct p11p_secret *ser = NULL;

	ck_assert_int_eq(p11p_swkey_serialise(key, &ser), CKR_OK);
	assert_hex(p11p_secret_data(ser), p11p_secret_len(ser), hex);
	p11p_secret_free(ser);
}

START_TEST(test_from_parts)
{
	static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
	                                         0xce, 0x3d, 0x03, 0x01, 0x07};
	EVP_PKEY *ec = ossl_key(p256_pkcs8), *rsa = ossl_key(rsa2048_pkcs8);
	unsigned char d[32], pt[2 + 65], v[8][256], spki[512], *ref = NULL;
	size_t plen = 0, l[8];
	CK_ULONG sl = sizeof(spki);
	int rl;
	struct p11p_swkey *key = NULL;
	struct p11p_swkey_parts k = {.cls = CKO_PRIVATE_KEY, .type = CKK_EC};
	static const char *const names[8] = {
	    OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
	    OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
	    OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
	    OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};

	/* EC P-256 from d: the public point computed, the same PKCS#8 as the fixture. */
	part_of(ec, OSSL_PKEY_PARAM_PRIV_KEY, d, 32);
	k.ec_params = (struct p11p_swkey_part){oid_p256, sizeof(oid_p256)};
	k.value = (struct p11p_swkey_part){d, 32};
	ck_assert_int_eq(p11p_swkey_from_parts(&k, P11P_SWKEY_SENSITIVE, &key), CKR_OK);
	ck_assert_int_eq(p11p_swkey_class(key), CKO_PRIVATE_KEY);
	ck_assert_uint_eq(p11p_swkey_flags(key), P11P_SWKEY_SENSITIVE);
	assert_serialised(key, p256_pkcs8);
	p11p_swkey_free(key);
	/* its public key from the DER point: OpenSSL's SubjectPublicKeyInfo */
	ck_assert(EVP_PKEY_get_octet_string_param(ec, OSSL_PKEY_PARAM_PUB_KEY, pt + 2, 65, &plen));
	pt[0] = 0x04;
	pt[1] = 65;
	k = (struct p11p_swkey_parts){.cls = CKO_PUBLIC_KEY, .type = CKK_EC};
	k.ec_params = (struct p11p_swkey_part){oid_p256, sizeof(oid_p256)};
	k.ec_point = (struct p11p_swkey_part){pt, 67};
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_OK);
	ck_assert_int_eq(p11p_swkey_attr(key, CKA_PUBLIC_KEY_INFO, spki, &sl), CKR_OK);
	rl = i2d_PUBKEY(ec, &ref);
	ck_assert_int_eq(rl, (int)sl);
	ck_assert_mem_eq(spki, ref, sl);
	OPENSSL_free(ref);
	p11p_swkey_free(key);
	/* the same point bare; with the first coordinate byte changed it is off the curve */
	k.ec_point = (struct p11p_swkey_part){pt + 2, 65};
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_OK);
	p11p_swkey_free(key);
	pt[3] ^= 1;
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_ATTRIBUTE_VALUE_INVALID);
	ck_assert_ptr_null(key);

	/* RSA from n, e, d: p and q recovered, the same PKCS#8 (CRT parts) as the fixture. */
	for (int i = 0; i < 8; i++)
		l[i] = part_of(rsa, names[i], v[i], 0);
	k = (struct p11p_swkey_parts){.cls = CKO_PRIVATE_KEY, .type = CKK_RSA};
	k.modulus = (struct p11p_swkey_part){v[0], l[0]};
	k.public_exponent = (struct p11p_swkey_part){v[1], l[1]};
	k.private_exponent = (struct p11p_swkey_part){v[2], l[2]};
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_OK);
	ck_assert_uint_eq(p11p_swkey_len(key), 256);
	assert_serialised(key, rsa2048_pkcs8);
	p11p_swkey_free(key);
	/* with the CRT parts given: the same again */
	k.prime_1 = (struct p11p_swkey_part){v[3], l[3]};
	k.prime_2 = (struct p11p_swkey_part){v[4], l[4]};
	k.exponent_1 = (struct p11p_swkey_part){v[5], l[5]};
	k.exponent_2 = (struct p11p_swkey_part){v[6], l[6]};
	k.coefficient = (struct p11p_swkey_part){v[7], l[7]};
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_OK);
	assert_serialised(key, rsa2048_pkcs8);
	p11p_swkey_free(key);
	/* without CKA_PUBLIC_EXPONENT (PKCS#11 does not require it): e from d, p and q */
	k.public_exponent = (struct p11p_swkey_part){NULL, 0};
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_OK);
	{
		unsigned char e[8];
		CK_ULONG el = sizeof(e);

		ck_assert_int_eq(p11p_swkey_attr(key, CKA_PUBLIC_EXPONENT, e, &el), CKR_OK);
		ck_assert_uint_eq(el, l[1]);
		ck_assert_mem_eq(e, v[1], el);
	}
	assert_serialised(key, rsa2048_pkcs8);
	p11p_swkey_free(key);
	/* ... and d not of the key: no e found, or one the key refuses */
	v[2][l[2] - 1] ^= 2;
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_TEMPLATE_INCONSISTENT);
	v[2][l[2] - 1] ^= 2;
	/* from n and d alone e cannot be had: what to add is asked for */
	k.prime_1 = k.prime_2 = k.exponent_1 = k.exponent_2 = k.coefficient =
	    (struct p11p_swkey_part){NULL, 0};
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_TEMPLATE_INCOMPLETE);
	ck_assert_ptr_null(key);
	k.public_exponent = (struct p11p_swkey_part){v[1], l[1]};
	k.prime_1 = (struct p11p_swkey_part){v[3], l[3]};
	k.prime_2 = (struct p11p_swkey_part){v[4], l[4]};
	k.exponent_1 = (struct p11p_swkey_part){v[5], l[5]};
	k.exponent_2 = (struct p11p_swkey_part){v[6], l[6]};
	k.coefficient = (struct p11p_swkey_part){v[7], l[7]};
	/* a wrong coefficient, then a wrong d without CRT parts: not one key */
	v[7][l[7] - 1] ^= 1;
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_TEMPLATE_INCONSISTENT);
	v[7][l[7] - 1] ^= 1;
	k.prime_1 = k.prime_2 = k.exponent_1 = k.exponent_2 = k.coefficient =
	    (struct p11p_swkey_part){NULL, 0};
	v[2][0] ^= 0x40;
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_TEMPLATE_INCONSISTENT);
	/* an even modulus; a class the engine does not build */
	v[2][0] ^= 0x40;
	v[0][l[0] - 1] ^= 1;
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_ATTRIBUTE_VALUE_INVALID);
	v[0][l[0] - 1] ^= 1;
	k.cls = CKO_SECRET_KEY;
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_ptr_null(key);
	OPENSSL_cleanse(v, sizeof(v));
	OPENSSL_cleanse(d, sizeof(d));
	EVP_PKEY_free(ec);
	EVP_PKEY_free(rsa);
}
END_TEST

/* n bytes of hex after `marker` in a fixture, into out (the caller wipes it). */
static void bytes_after(const char *hex, const char *marker, unsigned char *out, size_t n)
{
	const char *p = strstr(hex, marker);

	ck_assert_ptr_nonnull(p);
	p += strlen(marker);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		ck_assert_int_eq(sscanf(p + 2 * i, "%2x", &v), 1);
		out[i] = (unsigned char)v;
	}
}

/* Keys made from their parts keep no private byte in dumpable memory; none once freed. */
START_TEST(test_hygiene_parts)
{
	static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
	                                         0xce, 0x3d, 0x03, 0x01, 0x07};
	static const unsigned char e[] = {1, 0, 1};
	unsigned char n[256], d[256], sig[512], h[32] = {1};
	CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0}, rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
	CK_ULONG len = sizeof(sig);
	struct p11p_swkey_parts k = {.cls = CKO_PRIVATE_KEY, .type = CKK_EC};
	struct p11p_swkey *key = NULL;
	struct p11p_secret *ser = NULL;

#ifdef __SANITIZE_ADDRESS__
	return;
#endif
	if (RUNNING_ON_VALGRIND)
		return;
	/* EC P-256 from d */
	mask_from_hex(p256_pkcs8, "0201010420");
	bytes_after(p256_pkcs8, "0201010420", d, 32);
	k.ec_params = (struct p11p_swkey_part){oid_p256, sizeof(oid_p256)};
	k.value = (struct p11p_swkey_part){d, 32};
	ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_OK);
	p11p_wipe(d, sizeof(d));
	ck_assert_int_eq(p11p_swkey_sign(key, &ecdsa, h, 32, sig, &len), CKR_OK);
	ck_assert_uint_eq(scan(false), 0);
	p11p_swkey_free(key);
	ck_assert_uint_eq(scan(true), 0);
	/* RSA-2048 from n, e, d (p and q recovered): d's and p's first 32 bytes */
	for (int round = 0; round < 2; round++) {
		mask_from_hex(rsa2048_pkcs8,
		              round == 0 ? "020301000102820100" : "5fbe4ade7702818100");
		bytes_after(rsa2048_pkcs8,
		            "02010002820101"
		            "00",
		            n, 256);
		bytes_after(rsa2048_pkcs8, "020301000102820100", d, 256);
		k = (struct p11p_swkey_parts){.cls = CKO_PRIVATE_KEY, .type = CKK_RSA};
		k.modulus = (struct p11p_swkey_part){n, 256};
		k.public_exponent = (struct p11p_swkey_part){e, sizeof(e)};
		k.private_exponent = (struct p11p_swkey_part){d, 256};
		ck_assert_int_eq(p11p_swkey_from_parts(&k, 0, &key), CKR_OK);
		p11p_wipe(d, sizeof(d));
		len = sizeof(sig);
		ck_assert_int_eq(p11p_swkey_sign(key, &rsa, h, 32, sig, &len), CKR_OK);
		ck_assert_int_eq(p11p_swkey_serialise(key, &ser), CKR_OK);
		p11p_secret_free(ser);
		ck_assert_uint_eq(scan(false), 0);
		p11p_swkey_free(key);
		ck_assert_uint_eq(scan(true), 0);
	}
}
END_TEST

/*
 * The content of the DER INTEGER at der[*pos] (its leading zero skipped);
 * *pos moves past it. 0: not an INTEGER.
 */
static size_t der_int_at(const unsigned char *der, size_t n, size_t *pos, size_t *off)
{
	size_t p = *pos, len;

	if (p + 2 > n || der[p] != 0x02)
		return 0;
	len = der[p + 1];
	p += 2;
	if (len == 0x81) {
		len = der[p++];
	} else if (len == 0x82) {
		len = (size_t)der[p] << 8 | der[p + 1];
		p += 2;
	}
	if (p + len > n)
		return 0;
	*pos = p + len;
	if (len > 0 && der[p] == 0) {
		p++;
		len--;
	}
	*off = p;
	return len;
}

/*
 * An RSA key read from PKCS#8 (p11p_swkey_from_der, as the store loads it),
 * used and serialised, keeps no part of d, p, q, dp, dq or qinv in dumpable
 * memory, and none is left once it is freed: three 32-byte windows of each
 * (start, middle, end), in either byte order; nor right after reading, freed
 * heap included (OpenSSL 3.0's PKCS#8 decoder left two copies of the whole
 * DER there: the engine parses the form itself, swkey.c rsa_own).
 */
START_TEST(test_hygiene_der_rsa)
{
	static const unsigned char d_mark[] = {0x02, 0x03, 0x01, 0x00, 0x01, 0x02, 0x82, 0x01};
	static unsigned char wins[6 * 3][32];
	unsigned char der[2048], sig[512], h[32] = {1};
	CK_MECHANISM rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
	CK_ULONG len = sizeof(sig);
	size_t n = unhex(rsa2048_pkcs8, der, sizeof(der)), pos = 0, nw = 0;
	struct p11p_swkey *key = NULL;
	struct p11p_secret *ser = NULL;

#ifdef __SANITIZE_ADDRESS__
	return;
#endif
	if (RUNNING_ON_VALGRIND)
		return;
	while (pos + sizeof(d_mark) < n && memcmp(der + pos, d_mark, sizeof(d_mark)) != 0)
		pos++;
	ck_assert_uint_lt(pos + sizeof(d_mark), n);
	pos += 5; /* d, then p, q, dp, dq, qinv */
	for (int part = 0; part < 6; part++) {
		size_t off = 0, l = der_int_at(der, n, &pos, &off);

		ck_assert_uint_ge(l, 64);
		for (int w = 0; w < 3; w++, nw++) {
			size_t at = w == 0 ? 0 : w == 1 ? l / 2 - 16 : l - 32;

			for (int i = 0; i < 32; i++)
				wins[nw][i] = (unsigned char)(der[off + at + i] ^ MASK);
		}
	}
	ck_assert_int_eq(p11p_swkey_from_der(CKO_PRIVATE_KEY, CKK_RSA, der, n, 0, &key), CKR_OK);
	p11p_wipe(der, sizeof(der));
	/* Right after reading too (OpenSSL's PKCS#8 decoder left two copies of the DER). */
	for (size_t i = 0; i < nw; i++)
		ck_assert_msg(scan_for(wins[i], false) == 0, "part %zu window %zu left by reading",
		              i / 3, i % 3);
	ck_assert_int_eq(p11p_swkey_sign(key, &rsa, h, 32, sig, &len), CKR_OK);
	ck_assert_int_eq(p11p_swkey_serialise(key, &ser), CKR_OK);
	p11p_secret_free(ser);
	for (size_t i = 0; i < nw; i++)
		ck_assert_msg(scan_for(wins[i], false) == 0,
		              "part %zu window %zu in dumpable memory", i / 3, i % 3);
	p11p_swkey_free(key);
	for (size_t i = 0; i < nw; i++)
		ck_assert_msg(scan_for(wins[i], true) == 0,
		              "part %zu window %zu left after the key", i / 3, i % 3);
}
END_TEST

static Suite *swkey_suite(void)
{
	Suite *s = suite_create("swkey");
	TCase *tc = tcase_create("engine");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_gcm);
	tcase_add_test(tc, test_cbc);
	tcase_add_test(tc, test_ctr);
	tcase_add_test(tc, test_hmac);
	tcase_add_test(tc, test_hmac_openssl);
	tcase_add_test(tc, test_hmac_rfc4231);
	tcase_add_test(tc, test_reuse);
	tcase_add_test(tc, test_ed25519);
	tcase_add_test(tc, test_ecdsa);
	tcase_add_test(tc, test_rsa);
	tcase_add_test(tc, test_rsa_generate);
	tcase_add_test(tc, test_serialise);
	tcase_add_test(tc, test_rules);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_hygiene);
	tcase_add_test(tc, test_hygiene_hmac);
	tcase_add_test(tc, test_hygiene_asym);
	tcase_add_test(tc, test_from_parts);
	tcase_add_test(tc, test_hygiene_parts);
	tcase_add_test(tc, test_hygiene_der_rsa);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(swkey_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	p11p_ossl_ctx_free();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
