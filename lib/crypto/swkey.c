/*
 * Software keys: construction, serialisation, generation, public attributes,
 * the mechanism table. The operations are in swop.c.
 *
 * Key hygiene. Secret key bytes are in a p11p_secret (locked, MADV_DONTDUMP,
 * wiped). OpenSSL's cipher and MAC contexts hold key schedules (an AES-256
 * schedule begins with the raw key) in ordinary heap, and OpenSSL offers no
 * way to allocate them elsewhere short of CRYPTO_set_mem_functions, which is
 * process-wide and must precede the host's first allocation. So a context
 * is keyed only for one operation (p11p_swop) and freed (OpenSSL cleanses
 * it) at its end. HMAC does not use OpenSSL's MAC contexts: the key's keyed
 * SHA-2 states (inner and outer, swkey_int.h, struct sw_hmac_keyed) are
 * computed once per digest into a p11p_secret, and each operation copies
 * them into a working state it wipes at its end (swop.c, hmac_setup).
 * bench/bench_swkey.c measures these ways against keying a context per
 * operation and caching one keyed context per key (P11P_SWKEY_CACHE_CTX);
 * the figures are in bench/README.md.
 * Asymmetric private keys are EVP_PKEYs whose private parts OpenSSL puts in
 * its secure heap (see p11p_swkey_secure_heap_used() in the header). An EC
 * private key keeps up to two raw ECDSA signing contexts ready between
 * operations (swkey_int.h sign_cache): they hold a reference on the key and
 * nothing derived from it, and save a context and a fetch per signature.
 */
/* RSA_*: the engine's own RSA private keys (swkey_int.h). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "crypto/swkey_int.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/ossl.h"

/* CKA_EC_PARAMS encodings: DER OIDs, and the PrintableString form of Ed25519. */
static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
static const unsigned char str_ed25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                            'd',  's',  '2', '5', '5', '1', '9'};

/*
 * The engine's own PKCS#8 forms of EC and Ed25519 private keys (what
 * OpenSSL writes too): prefix, the scalar (or seed), then for EC the
 * public point after its tag. Built and read here, not by OpenSSL's ASN.1
 * code, which leaves copies of the scalar in freed heap.
 */
static const unsigned char p8_p256[] = {0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06,
                                        0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                                        0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                                        0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20};
static const unsigned char p8_p256_pub[] = {0xa1, 0x44, 0x03, 0x42, 0x00};
static const unsigned char p8_p384[] = {0x30, 0x81, 0xb6, 0x02, 0x01, 0x00, 0x30, 0x10, 0x06,
                                        0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                                        0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x04, 0x81, 0x9e,
                                        0x30, 0x81, 0x9b, 0x02, 0x01, 0x01, 0x04, 0x30};
static const unsigned char p8_p384_pub[] = {0xa1, 0x64, 0x03, 0x62, 0x00};
static const unsigned char p8_ed25519[] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
                                           0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};

/* OSSL_PARAM_construct_utf8_string() takes a non-const pointer. */
static char group_names[2][12] = {"prime256v1", "secp384r1"};

/* ---- the secure heap ------------------------------------------------------- */

static pthread_once_t sheap_once = PTHREAD_ONCE_INIT;

static void sheap_init(void)
{
	if (!CRYPTO_secure_malloc_initialized())
		(void)CRYPTO_secure_malloc_init(P11P_SWKEY_SECURE_HEAP, 32);
}

bool p11p_swkey_secure_heap_used(void)
{
	return CRYPTO_secure_malloc_initialized() != 0;
}

/* ---- keys ------------------------------------------------------------------ */

static struct p11p_swkey *key_alloc(CK_OBJECT_CLASS cls, CK_KEY_TYPE type, unsigned flags)
{
	struct p11p_swkey *key = p11p_calloc(1, sizeof(*key));

	if (key == NULL)
		return NULL;
	atomic_init(&key->refs, 1);
	key->cls = cls;
	key->type = type;
	key->flags = flags & (P11P_SWKEY_SENSITIVE | P11P_SWKEY_EXTRACTABLE | P11P_SWKEY_CACHE_CTX);
	for (int i = 0; i < SW_CACHE_N; i++)
		atomic_init(&key->cache[i], NULL);
	for (int i = 0; i < SW_SIGN_CACHE; i++)
		atomic_init(&key->sign_cache[i], NULL);
	for (int d = 0; d < 3; d++)
		atomic_init(&key->hmac_keyed[d], NULL);
	return key;
}

static void key_destroy(struct p11p_swkey *key)
{
	/* Freeing an OpenSSL cipher context cleanses its key schedule. */
	for (int i = 0; i < SW_CACHE_N; i++)
		p11p_cipher_ctx_free(p11p_swkey_cipher(key, i),
		                     atomic_exchange(&key->cache[i], NULL));
	for (int i = 0; i < SW_SIGN_CACHE; i++)
		EVP_PKEY_CTX_free(atomic_exchange(&key->sign_cache[i], NULL));
	for (int d = 0; d < 3; d++)
		p11p_secret_free(atomic_exchange(&key->hmac_keyed[d], NULL)); /* wipes */
	p11p_cipher_release(&key->gcm);
	p11p_cipher_release(&key->cbc);
	p11p_cipher_release(&key->ctr);
	EVP_PKEY_free(key->pkey);
	/* The blinding before the RSA: it uses the RSA's Montgomery context of n. */
	BN_BLINDING_free(key->rsa_blinding);
	RSA_free(key->rsa); /* clears its secure bignums */
	p11p_secret_free(key->der);
	p11p_secret_free(key->value);
	p11p_free(key);
}

struct p11p_swkey *p11p_swkey_ref(struct p11p_swkey *key)
{
	atomic_fetch_add(&key->refs, 1);
	return key;
}

void p11p_swkey_free(struct p11p_swkey *key)
{
	if (key != NULL && atomic_fetch_sub(&key->refs, 1) == 1)
		key_destroy(key);
}

CK_RV p11p_swkey_from_secret(CK_KEY_TYPE type, struct p11p_secret **value, unsigned flags,
                             struct p11p_swkey **out)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	struct p11p_swkey *key = NULL;
	const char *gcm = NULL, *cbc = NULL, *ctr = NULL;
	size_t len;
	CK_RV rv;

	p11p_return_val_if_fail(value != NULL && *value != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(out != NULL, CKR_ARGUMENTS_BAD);
	*out = NULL;
	len = p11p_secret_len(*value);
	if (type == CKK_AES) {
		switch (len) {
		case 16:
			gcm = "AES-128-GCM", cbc = "AES-128-CBC", ctr = "AES-128-CTR";
			break;
		case 24:
			gcm = "AES-192-GCM", cbc = "AES-192-CBC", ctr = "AES-192-CTR";
			break;
		case 32:
			gcm = "AES-256-GCM", cbc = "AES-256-CBC", ctr = "AES-256-CTR";
			break;
		default:
			rv = CKR_KEY_SIZE_RANGE;
			goto out;
		}
	} else if (type == CKK_GENERIC_SECRET) {
		if (len < 1 || len > P11P_SWKEY_GENERIC_MAX) {
			rv = CKR_KEY_SIZE_RANGE;
			goto out;
		}
	} else {
		rv = CKR_KEY_TYPE_INCONSISTENT;
		goto out;
	}
	rv = CKR_HOST_MEMORY;
	if (lib == NULL)
		goto out;
	key = key_alloc(CKO_SECRET_KEY, type, flags);
	if (key == NULL)
		goto out;
	key->value = *value;
	key->len = len;
	*value = NULL;
	rv = CKR_GENERAL_ERROR;
	if (gcm != NULL) {
		if (!p11p_cipher_fetch(&key->gcm, lib, gcm) ||
		    !p11p_cipher_fetch(&key->cbc, lib, cbc) ||
		    !p11p_cipher_fetch(&key->ctr, lib, ctr))
			goto out;
	}
	*out = key;
	key = NULL;
	rv = CKR_OK;
out:
	if (key != NULL)
		key_destroy(key);
	p11p_secret_free(*value);
	*value = NULL;
	return rv;
}

CK_RV p11p_swkey_new(CK_KEY_TYPE type, const unsigned char *value, size_t len, unsigned flags,
                     struct p11p_swkey **out)
{
	struct p11p_secret *s;

	p11p_return_val_if_fail(out != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(value != NULL || len == 0, CKR_ARGUMENTS_BAD);
	*out = NULL;
	if (len == 0)
		return type == CKK_AES || type == CKK_GENERIC_SECRET ? CKR_KEY_SIZE_RANGE
		                                                     : CKR_KEY_TYPE_INCONSISTENT;
	s = p11p_secret_new(value, len);
	if (s == NULL)
		return CKR_HOST_MEMORY;
	return p11p_swkey_from_secret(type, &s, flags, out);
}

/* Checks pkey against the class and type wanted and wraps it in a key (pkey taken). */
static CK_RV key_from_pkey(CK_OBJECT_CLASS cls, CK_KEY_TYPE type, EVP_PKEY *pkey, unsigned flags,
                           struct p11p_swkey **out)
{
	struct p11p_swkey *key;
	int curve = NID_undef, bits = 0;
	size_t len = 0;

	if (type == CKK_EC) {
		char name[64];
		size_t nl = 0;

		if (!EVP_PKEY_is_a(pkey, "EC")) {
			EVP_PKEY_free(pkey);
			return CKR_KEY_TYPE_INCONSISTENT;
		}
		if (EVP_PKEY_get_group_name(pkey, name, sizeof(name), &nl))
			curve = OBJ_sn2nid(name);
		if (curve == NID_X9_62_prime256v1)
			len = 32;
		else if (curve == NID_secp384r1)
			len = 48;
		else {
			EVP_PKEY_free(pkey);
			return CKR_KEY_SIZE_RANGE;
		}
	} else if (type == CKK_EC_EDWARDS) {
		if (!EVP_PKEY_is_a(pkey, "ED25519")) {
			EVP_PKEY_free(pkey);
			return EVP_PKEY_is_a(pkey, "ED448") ? CKR_KEY_SIZE_RANGE
			                                    : CKR_KEY_TYPE_INCONSISTENT;
		}
		len = 32;
	} else if (type == CKK_RSA) {
		if (!EVP_PKEY_is_a(pkey, "RSA")) {
			EVP_PKEY_free(pkey);
			return CKR_KEY_TYPE_INCONSISTENT;
		}
		bits = EVP_PKEY_get_bits(pkey);
		if (bits < P11P_SWKEY_RSA_MIN || bits > P11P_SWKEY_RSA_MAX) {
			EVP_PKEY_free(pkey);
			return CKR_KEY_SIZE_RANGE;
		}
		len = ((size_t)bits + 7) / 8;
	} else {
		EVP_PKEY_free(pkey);
		return CKR_KEY_TYPE_INCONSISTENT;
	}
	key = key_alloc(cls, type, flags);
	if (key == NULL) {
		EVP_PKEY_free(pkey);
		return CKR_HOST_MEMORY;
	}
	key->pkey = pkey;
	key->curve = curve;
	key->len = len;
	*out = key;
	return CKR_OK;
}

/* A new secret of the parts a, b, c, d concatenated (NULL parts skipped). */
static struct p11p_secret *concat(const unsigned char *a, size_t an, const unsigned char *b,
                                  size_t bn, const unsigned char *c, size_t cn,
                                  const unsigned char *d, size_t dn)
{
	size_t n = an + bn + cn + dn, map_len = 0;
	int locked = 0;
	unsigned char *buf = p11p_locked_alloc(n, &map_len, &locked);
	struct p11p_secret *s;

	if (buf == NULL)
		return NULL;
	memcpy(buf, a, an);
	memcpy(buf + an, b, bn);
	if (cn > 0)
		memcpy(buf + an + bn, c, cn);
	if (dn > 0)
		memcpy(buf + an + bn + cn, d, dn);
	s = p11p_secret_new(buf, n);
	p11p_wipe(buf, n);
	p11p_locked_free(buf, map_len, locked);
	return s;
}

/*
 * An EC key pair from d (olen bytes, big-endian) and its point (NULL: d.G),
 * through EVP_PKEY_fromdata with d in a secure bignum.
 */
static CK_RV ec_pkey(int nid, const unsigned char *d_bytes, const unsigned char *pub_in,
                     EVP_PKEY **out, unsigned char *pub_out)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	const char *name = nid == NID_secp384r1 ? "secp384r1" : "prime256v1";
	size_t olen = nid == NID_secp384r1 ? 48 : 32, plen = 1 + 2 * olen;
	unsigned char pub[1 + 2 * 48];
	EC_GROUP *group = NULL;
	EC_POINT *point = NULL;
	BN_CTX *bnctx = NULL;
	BIGNUM *d = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	CK_RV rv = CKR_FUNCTION_FAILED;

	*out = NULL;
	if (lib == NULL)
		return CKR_HOST_MEMORY;
	d = BN_secure_new();
	if (d == NULL || !BN_bin2bn(d_bytes, (int)olen, d))
		goto out;
	BN_set_flags(d, BN_FLG_CONSTTIME);
	if (pub_in != NULL) {
		memcpy(pub, pub_in, plen);
	} else {
		group = EC_GROUP_new_by_curve_name_ex(lib, NULL, nid);
		bnctx = BN_CTX_secure_new_ex(lib);
		point = group != NULL ? EC_POINT_new(group) : NULL;
		if (point == NULL || bnctx == NULL ||
		    !EC_POINT_mul(group, point, d, NULL, NULL, bnctx) ||
		    EC_POINT_point2oct(group, point, POINT_CONVERSION_UNCOMPRESSED, pub, plen,
		                       bnctx) != plen)
			goto out;
	}
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, name, 0) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, plen))
		goto out;
	params = OSSL_PARAM_BLD_to_param(bld);
	pctx = EVP_PKEY_CTX_new_from_name(lib, "EC", NULL);
	if (params == NULL || pctx == NULL || EVP_PKEY_fromdata_init(pctx) <= 0 ||
	    EVP_PKEY_fromdata(pctx, out, EVP_PKEY_KEYPAIR, params) <= 0)
		goto out;
	if (pub_out != NULL)
		memcpy(pub_out, pub, plen);
	rv = CKR_OK;
out:
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(d);
	EC_POINT_free(point);
	EC_GROUP_free(group);
	BN_CTX_free(bnctx);
	return rv;
}

/* An EC private key from d and the point (NULL: computed), with its PKCS#8. */
static CK_RV ec_key_new(int nid, const unsigned char *d, const unsigned char *pub_in,
                        unsigned flags, struct p11p_swkey **out)
{
	size_t olen = nid == NID_secp384r1 ? 48 : 32;
	unsigned char pub[1 + 2 * 48];
	EVP_PKEY *pkey = NULL;
	struct p11p_secret *der;
	CK_RV rv;

	/* Before OpenSSL allocates the private bignums: they go to the secure heap. */
	pthread_once(&sheap_once, sheap_init);
	rv = ec_pkey(nid, d, pub_in, &pkey, pub);

	if (rv != CKR_OK)
		return rv;
	der = nid == NID_secp384r1 ? concat(p8_p384, sizeof(p8_p384), d, olen, p8_p384_pub,
	                                    sizeof(p8_p384_pub), pub, 1 + 2 * olen)
	                           : concat(p8_p256, sizeof(p8_p256), d, olen, p8_p256_pub,
	                                    sizeof(p8_p256_pub), pub, 1 + 2 * olen);
	if (der == NULL) {
		EVP_PKEY_free(pkey);
		return CKR_HOST_MEMORY;
	}
	rv = key_from_pkey(CKO_PRIVATE_KEY, CKK_EC, pkey, flags, out);
	if (rv == CKR_OK)
		(*out)->der = der;
	else
		p11p_secret_free(der);
	return rv;
}

/*
 * An Ed25519 private key from its seed: the PKCS#8 form kept in a secret,
 * the EVP_PKEY public only; signing makes a private EVP_PKEY per operation.
 */
static CK_RV ed25519_key_new(const unsigned char seed[32], unsigned flags, struct p11p_swkey **out)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	EVP_PKEY *tmp, *pub;
	unsigned char raw[32];
	size_t n = sizeof(raw);
	struct p11p_secret *der;
	CK_RV rv;

	if (lib == NULL)
		return CKR_HOST_MEMORY;
	tmp = EVP_PKEY_new_raw_private_key_ex(lib, "ED25519", NULL, seed, 32);
	if (tmp == NULL || !EVP_PKEY_get_raw_public_key(tmp, raw, &n) || n != 32) {
		EVP_PKEY_free(tmp);
		return CKR_FUNCTION_FAILED;
	}
	EVP_PKEY_free(tmp); /* cleanses its copy of the seed */
	pub = EVP_PKEY_new_raw_public_key_ex(lib, "ED25519", NULL, raw, 32);
	if (pub == NULL)
		return CKR_FUNCTION_FAILED;
	der = concat(p8_ed25519, sizeof(p8_ed25519), seed, 32, NULL, 0, NULL, 0);
	if (der == NULL) {
		EVP_PKEY_free(pub);
		return CKR_HOST_MEMORY;
	}
	rv = key_from_pkey(CKO_PRIVATE_KEY, CKK_EC_EDWARDS, pub, flags, out);
	if (rv == CKR_OK)
		(*out)->der = der;
	else
		p11p_secret_free(der);
	return rv;
}

EVP_PKEY *p11p_swkey_ed25519_private(const struct p11p_swkey *key)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	unsigned char seed[32], pub[32];
	size_t n = sizeof(pub);
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *pctx;
	EVP_PKEY *pkey = NULL;

	if (lib == NULL || key->der == NULL || p11p_secret_len(key->der) != 48 ||
	    !EVP_PKEY_get_raw_public_key(key->pkey, pub, &n) || n != 32)
		return NULL;
	memcpy(seed, p11p_secret_data(key->der) + 16, 32);
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, seed, 32);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, 32);
	params[2] = OSSL_PARAM_construct_end();
	pctx = EVP_PKEY_CTX_new_from_name(lib, "ED25519", NULL);
	if (pctx == NULL || EVP_PKEY_fromdata_init(pctx) <= 0 ||
	    EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_KEYPAIR, params) <= 0)
		pkey = NULL;
	EVP_PKEY_CTX_free(pctx);
	p11p_wipe(seed, sizeof(seed));
	return pkey;
}

/* An Ed25519 key parsed by OpenSSL (another PKCS#8 form): through the seed. */
static CK_RV ed25519_from_pkey(EVP_PKEY *pkey, unsigned flags, struct p11p_swkey **out)
{
	unsigned char seed[32];
	size_t n = sizeof(seed);
	CK_RV rv = CKR_WRAPPED_KEY_INVALID;

	if (EVP_PKEY_get_raw_private_key(pkey, seed, &n) && n == 32)
		rv = ed25519_key_new(seed, flags, out);
	p11p_wipe(seed, sizeof(seed));
	EVP_PKEY_free(pkey);
	return rv;
}

/* The engine's own PKCS#8 forms; CKR_WRAPPED_KEY_INVALID when der is another form. */
static CK_RV own_form(CK_KEY_TYPE type, const unsigned char *der, size_t len, unsigned flags,
                      struct p11p_swkey **out)
{
	if (type == CKK_EC && len == sizeof(p8_p256) + 32 + sizeof(p8_p256_pub) + 65 &&
	    memcmp(der, p8_p256, sizeof(p8_p256)) == 0 &&
	    memcmp(der + sizeof(p8_p256) + 32, p8_p256_pub, sizeof(p8_p256_pub)) == 0)
		return ec_key_new(NID_X9_62_prime256v1, der + sizeof(p8_p256),
		                  der + sizeof(p8_p256) + 32 + sizeof(p8_p256_pub), flags, out);
	if (type == CKK_EC && len == sizeof(p8_p384) + 48 + sizeof(p8_p384_pub) + 97 &&
	    memcmp(der, p8_p384, sizeof(p8_p384)) == 0 &&
	    memcmp(der + sizeof(p8_p384) + 48, p8_p384_pub, sizeof(p8_p384_pub)) == 0)
		return ec_key_new(NID_secp384r1, der + sizeof(p8_p384),
		                  der + sizeof(p8_p384) + 48 + sizeof(p8_p384_pub), flags, out);
	if (type == CKK_EC_EDWARDS && len == sizeof(p8_ed25519) + 32 &&
	    memcmp(der, p8_ed25519, sizeof(p8_ed25519)) == 0)
		return ed25519_key_new(der + sizeof(p8_ed25519), flags, out);
	return CKR_WRAPPED_KEY_INVALID;
}

static CK_RV rsa_own(const unsigned char *der, size_t len, unsigned flags, struct p11p_swkey **out);

CK_RV p11p_swkey_from_der(CK_OBJECT_CLASS cls, CK_KEY_TYPE type, const unsigned char *der,
                          size_t len, unsigned flags, struct p11p_swkey **out)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	const unsigned char *p = der;
	EVP_PKEY *pkey = NULL;
	CK_RV rv;

	p11p_return_val_if_fail(out != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(der != NULL || len == 0, CKR_ARGUMENTS_BAD);
	*out = NULL;
	if (cls == CKO_SECRET_KEY)
		return p11p_swkey_new(type, der, len, flags, out);
	if (cls != CKO_PRIVATE_KEY && cls != CKO_PUBLIC_KEY)
		return CKR_KEY_TYPE_INCONSISTENT;
	if (type != CKK_EC && type != CKK_EC_EDWARDS && type != CKK_RSA)
		return CKR_KEY_TYPE_INCONSISTENT;
	if (lib == NULL)
		return CKR_HOST_MEMORY;
	if (len == 0 || len > LONG_MAX)
		return CKR_WRAPPED_KEY_INVALID;
	if (cls == CKO_PRIVATE_KEY && type == CKK_RSA) {
		/* The usual two-prime PKCS#8 form: parsed here (rsa_own), not by OpenSSL. */
		rv = rsa_own(der, len, flags, out);
		if (rv != CKR_WRAPPED_KEY_INVALID)
			goto der_copy;
	} else if (cls == CKO_PRIVATE_KEY) {
		rv = own_form(type, der, len, flags, out);
		/* not the engine's form, or a point OpenSSL refuses: OpenSSL's parser decides */
		if (rv != CKR_WRAPPED_KEY_INVALID && rv != CKR_FUNCTION_FAILED)
			return rv;
	}
	/*
	 * Other forms: OpenSSL 3.0's provider decoder copies the DER into ordinary
	 * heap and frees it without cleansing (two whole copies, which later
	 * allocations overwrite); the key's own bignums are secure-heap ones.
	 * Hence the engine's own forms above (EC, Ed25519, two-prime RSA).
	 */
	if (cls == CKO_PRIVATE_KEY) {
		PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);

		pthread_once(&sheap_once, sheap_init);
		if (p8 != NULL && p == der + len)
			pkey = EVP_PKCS82PKEY_ex(p8, lib, NULL);
		PKCS8_PRIV_KEY_INFO_free(p8); /* cleanses the key octets */
	} else {
		pkey = d2i_PUBKEY_ex(NULL, &p, (long)len, lib, NULL);
		if (pkey != NULL && p != der + len) {
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
	}
	if (pkey == NULL)
		return CKR_WRAPPED_KEY_INVALID;
	if (cls == CKO_PRIVATE_KEY && type == CKK_EC_EDWARDS && EVP_PKEY_is_a(pkey, "ED25519"))
		return ed25519_from_pkey(pkey, flags, out);
	rv = key_from_pkey(cls, type, pkey, flags, out);
der_copy:
	/* Serialised later from this copy, not by OpenSSL's encoder (copies in the heap). */
	if (rv == CKR_OK && cls == CKO_PRIVATE_KEY) {
		(*out)->der = p11p_secret_new(der, len);
		if ((*out)->der == NULL) {
			p11p_swkey_free(*out);
			*out = NULL;
			rv = CKR_HOST_MEMORY;
		}
	}
	return rv;
}

CK_RV p11p_swkey_generate(CK_KEY_TYPE type, size_t len, p11p_swkey_rand_fn rand, void *arg,
                          unsigned flags, struct p11p_swkey **out)
{
	struct p11p_secret *s;
	size_t map_len = 0;
	int locked = 0;
	unsigned char *buf;
	CK_RV rv;

	p11p_return_val_if_fail(out != NULL && rand != NULL, CKR_ARGUMENTS_BAD);
	*out = NULL;
	if (type != CKK_AES && type != CKK_GENERIC_SECRET)
		return CKR_KEY_TYPE_INCONSISTENT;
	if (type == CKK_AES ? (len != 16 && len != 24 && len != 32)
	                    : (len < 1 || len > P11P_SWKEY_GENERIC_MAX))
		return CKR_KEY_SIZE_RANGE;
	buf = p11p_locked_alloc(len, &map_len, &locked);
	if (buf == NULL)
		return CKR_HOST_MEMORY;
	rv = rand(arg, buf, len);
	s = rv == CKR_OK ? p11p_secret_new(buf, len) : NULL;
	p11p_wipe(buf, len);
	p11p_locked_free(buf, map_len, locked);
	if (rv != CKR_OK)
		return rv;
	if (s == NULL)
		return CKR_HOST_MEMORY;
	return p11p_swkey_from_secret(type, &s, flags, out);
}

/* ---- key pairs -------------------------------------------------------------- */

static bool bytes_are(const unsigned char *p, size_t n, const unsigned char *want, size_t wn)
{
	return n == wn && memcmp(p, want, n) == 0;
}

/* CKA_EC_PARAMS -> NID_X9_62_prime256v1, NID_secp384r1, NID_ED25519, or an error. */
static CK_RV curve_of(CK_KEY_TYPE type, const unsigned char *p, size_t n, int *nid)
{
	if (p == NULL || n < 2 || (size_t)p[1] + 2 != n || (p[0] != 0x06 && p[0] != 0x13))
		return CKR_DOMAIN_PARAMS_INVALID;
	if (type == CKK_EC && bytes_are(p, n, oid_p256, sizeof(oid_p256)))
		*nid = NID_X9_62_prime256v1;
	else if (type == CKK_EC && bytes_are(p, n, oid_p384, sizeof(oid_p384)))
		*nid = NID_secp384r1;
	else if (type == CKK_EC_EDWARDS && (bytes_are(p, n, oid_ed25519, sizeof(oid_ed25519)) ||
	                                    bytes_are(p, n, str_ed25519, sizeof(str_ed25519))))
		*nid = NID_ED25519;
	else
		return CKR_CURVE_NOT_SUPPORTED;
	return CKR_OK;
}

/* EC: d = (rand(order + 8 bytes) mod (n - 1)) + 1, big-endian into d_out (order bytes). */
static CK_RV ec_scalar(int nid, p11p_swkey_rand_fn rand, void *arg, unsigned char *d_out)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	size_t olen = nid == NID_secp384r1 ? 48 : 32, rlen = olen + 8;
	unsigned char r[56];
	EC_GROUP *group = NULL;
	BN_CTX *bnctx = NULL;
	BIGNUM *d = NULL, *nm1 = NULL;
	CK_RV rv;

	if (lib == NULL)
		return CKR_HOST_MEMORY;
	rv = rand(arg, r, rlen);
	if (rv != CKR_OK)
		goto out;
	rv = CKR_FUNCTION_FAILED;
	group = EC_GROUP_new_by_curve_name_ex(lib, NULL, nid);
	bnctx = BN_CTX_secure_new_ex(lib);
	d = BN_secure_new();
	nm1 = BN_new();
	if (group == NULL || bnctx == NULL || d == NULL || nm1 == NULL)
		goto out;
	BN_set_flags(d, BN_FLG_CONSTTIME);
	if (!BN_copy(nm1, EC_GROUP_get0_order(group)) || !BN_sub_word(nm1, 1) ||
	    !BN_bin2bn(r, (int)rlen, d) || !BN_nnmod(d, d, nm1, bnctx) || !BN_add_word(d, 1) ||
	    BN_bn2binpad(d, d_out, (int)olen) != (int)olen)
		goto out;
	rv = CKR_OK;
out:
	p11p_wipe(r, sizeof(r));
	BN_clear_free(d);
	BN_free(nm1);
	EC_GROUP_free(group);
	BN_CTX_free(bnctx);
	return rv;
}

/*
 * RSA: OpenSSL's key generation in a throwaway library context whose primary
 * and private DRBGs are reseeded with 48 bytes of rand as additional input
 * (on top of their own OS seed), then moved to the private context as
 * PKCS#8.
 */
static CK_RV rsa_generate(CK_ULONG bits, const unsigned char *e, size_t elen,
                          p11p_swkey_rand_fn rand, void *arg, unsigned flags,
                          struct p11p_swkey **out)
{
	OSSL_LIB_CTX *gen = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_PKEY *tmp = NULL;
	BIGNUM *bn_e = NULL;
	EVP_RAND_CTX *drbg;
	unsigned char seed[48], *der = NULL;
	int der_len = 0;
	CK_RV rv;

	*out = NULL;
	rv = rand(arg, seed, sizeof(seed));
	if (rv != CKR_OK)
		goto out;
	rv = CKR_HOST_MEMORY;
	gen = OSSL_LIB_CTX_new();
	if (gen == NULL)
		goto out;
	rv = CKR_FUNCTION_FAILED;
	drbg = RAND_get0_primary(gen);
	if (drbg == NULL || !EVP_RAND_reseed(drbg, 0, NULL, 0, seed, sizeof(seed)))
		goto out;
	drbg = RAND_get0_private(gen);
	if (drbg == NULL || !EVP_RAND_reseed(drbg, 0, NULL, 0, seed, sizeof(seed)))
		goto out;
	bn_e = e != NULL ? BN_bin2bn(e, (int)elen, NULL) : BN_new();
	if (bn_e == NULL || (e == NULL && !BN_set_word(bn_e, RSA_F4)))
		goto out;
	pctx = EVP_PKEY_CTX_new_from_name(gen, "RSA", NULL);
	if (pctx == NULL || EVP_PKEY_keygen_init(pctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_keygen_bits(pctx, (int)bits) <= 0 ||
	    EVP_PKEY_CTX_set1_rsa_keygen_pubexp(pctx, bn_e) <= 0 ||
	    EVP_PKEY_keygen(pctx, &tmp) <= 0)
		goto out;
	{
		PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(tmp);

		der_len = p8 != NULL ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1;
		PKCS8_PRIV_KEY_INFO_free(p8);
	}
	if (der_len <= 0)
		goto out;
	rv = p11p_swkey_from_der(CKO_PRIVATE_KEY, CKK_RSA, der, (size_t)der_len, flags, out);
out:
	if (der != NULL)
		OPENSSL_clear_free(der, (size_t)der_len);
	p11p_wipe(seed, sizeof(seed));
	BN_free(bn_e);
	EVP_PKEY_free(tmp);
	EVP_PKEY_CTX_free(pctx);
	OSSL_LIB_CTX_free(gen);
	return rv;
}

/* A public exponent: odd, 3..2^64-1, no more than 8 significant bytes. */
static bool exponent_ok(const unsigned char *e, size_t n)
{
	size_t i = 0;

	if (e == NULL)
		return n == 0;
	while (i < n && e[i] == 0)
		i++;
	if (n - i == 0 || n - i > 8 || !(e[n - 1] & 1))
		return false;
	return !(n - i == 1 && e[i] < 3);
}

CK_RV p11p_swkey_generate_pair(const struct p11p_swkey_pair_spec *spec, p11p_swkey_rand_fn rand,
                               void *arg, unsigned flags, struct p11p_swkey **priv_out,
                               struct p11p_swkey **pub_out)
{
	struct p11p_swkey *priv = NULL;
	int nid = NID_undef;
	CK_RV rv;

	p11p_return_val_if_fail(spec != NULL && rand != NULL && priv_out != NULL,
	                        CKR_ARGUMENTS_BAD);
	*priv_out = NULL;
	if (pub_out != NULL)
		*pub_out = NULL;
	if (p11p_ossl_ctx() == NULL)
		return CKR_HOST_MEMORY;
	pthread_once(&sheap_once, sheap_init);
	switch (spec->type) {
	case CKK_EC:
	case CKK_EC_EDWARDS: {
		unsigned char d[48];

		rv = curve_of(spec->type, spec->ec_params, spec->ec_params_len, &nid);
		if (rv != CKR_OK)
			return rv;
		rv = spec->type == CKK_EC ? ec_scalar(nid, rand, arg, d) : rand(arg, d, 32);
		if (rv == CKR_OK)
			rv = spec->type == CKK_EC ? ec_key_new(nid, d, NULL, flags, &priv)
			                          : ed25519_key_new(d, flags, &priv);
		p11p_wipe(d, sizeof(d));
		break;
	}
	case CKK_RSA:
		if (spec->modulus_bits < P11P_SWKEY_RSA_MIN ||
		    spec->modulus_bits > P11P_SWKEY_RSA_MAX || spec->modulus_bits % 8 != 0)
			return CKR_KEY_SIZE_RANGE;
		if (spec->public_exponent != NULL &&
		    !exponent_ok(spec->public_exponent, spec->public_exponent_len))
			return CKR_TEMPLATE_INCONSISTENT;
		rv = rsa_generate(spec->modulus_bits, spec->public_exponent,
		                  spec->public_exponent_len, rand, arg, flags, &priv);
		break;
	default:
		return CKR_KEY_TYPE_INCONSISTENT;
	}
	if (rv != CKR_OK)
		return rv;
	if (pub_out != NULL) {
		rv = p11p_swkey_public(priv, pub_out);
		if (rv != CKR_OK) {
			p11p_swkey_free(priv);
			priv = NULL;
		}
	}
	*priv_out = priv;
	return rv;
}

/* ---- keys from their PKCS#11 parts (C_CreateObject) -------------------------------- */

static bool given(const struct p11p_swkey_part *p)
{
	return p->p != NULL && p->len > 0;
}

/* CKA_EC_PARAMS of a created key: its curve, with C_CreateObject's return codes. */
static CK_RV parts_curve(const struct p11p_swkey_parts *k, int *nid)
{
	CK_RV rv;

	if (!given(&k->ec_params))
		return CKR_TEMPLATE_INCOMPLETE;
	rv = curve_of(k->type, k->ec_params.p, k->ec_params.len, nid);
	if (rv == CKR_CURVE_NOT_SUPPORTED &&
	    curve_of(k->type == CKK_EC ? CKK_EC_EDWARDS : CKK_EC, k->ec_params.p, k->ec_params.len,
	             nid) == CKR_OK)
		return CKR_TEMPLATE_INCONSISTENT; /* the other key type's curve */
	return rv == CKR_OK ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
}

/* CKA_EC_POINT: want bytes in a DER OCTET STRING (want < 128), or bare; NULL otherwise. */
static const unsigned char *point_of(const struct p11p_swkey_part *pt, size_t want)
{
	if (pt->len == want + 2 && pt->p[0] == 0x04 && pt->p[1] == want)
		return pt->p + 2;
	if (pt->len == want)
		return pt->p;
	return NULL;
}

/* An EC scalar: 1 <= d < n. */
static CK_RV ec_scalar_ok(int nid, const unsigned char *d, size_t len)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	EC_GROUP *group = lib != NULL ? EC_GROUP_new_by_curve_name_ex(lib, NULL, nid) : NULL;
	BIGNUM *bn = BN_secure_new();
	CK_RV rv = CKR_FUNCTION_FAILED;

	if (group != NULL && bn != NULL && BN_bin2bn(d, (int)len, bn) != NULL)
		rv = BN_is_zero(bn) || BN_cmp(bn, EC_GROUP_get0_order(group)) >= 0
		         ? CKR_ATTRIBUTE_VALUE_INVALID
		         : CKR_OK;
	BN_clear_free(bn);
	EC_GROUP_free(group);
	return rv;
}

/* An EC public key from its uncompressed point, checked to be on the curve. */
static CK_RV ec_public_key(int nid, const unsigned char *pt, size_t plen, unsigned flags,
                           struct p11p_swkey **out)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *pctx, *cctx = NULL;
	EVP_PKEY *pkey = NULL;
	unsigned char buf[1 + 2 * 48];
	CK_RV rv = CKR_ATTRIBUTE_VALUE_INVALID;

	if (pt[0] != 0x04) /* compressed or hybrid: not the form PKCS#11 2.40 stores */
		return CKR_ATTRIBUTE_VALUE_INVALID;
	memcpy(buf, pt, plen);
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_PKEY_PARAM_GROUP_NAME, nid == NID_secp384r1 ? group_names[1] : group_names[0], 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, buf, plen);
	params[2] = OSSL_PARAM_construct_end();
	pctx = EVP_PKEY_CTX_new_from_name(lib, "EC", NULL);
	if (pctx == NULL || EVP_PKEY_fromdata_init(pctx) <= 0) {
		rv = CKR_FUNCTION_FAILED;
		goto out;
	}
	/* OpenSSL refuses a point off the curve here, and the check says so again. */
	if (EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		goto out;
	cctx = EVP_PKEY_CTX_new_from_pkey(lib, pkey, NULL);
	if (cctx == NULL || EVP_PKEY_public_check(cctx) != 1)
		goto out;
	rv = key_from_pkey(CKO_PUBLIC_KEY, CKK_EC, pkey, flags, out);
	pkey = NULL;
out:
	EVP_PKEY_CTX_free(cctx);
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(pkey);
	return rv;
}

static CK_RV ec_from_parts(const struct p11p_swkey_parts *k, unsigned flags,
                           struct p11p_swkey **out)
{
	int nid = NID_undef;
	size_t olen;
	const unsigned char *pt;
	CK_RV rv;

	if (given(&k->modulus) || given(&k->public_exponent) || given(&k->private_exponent) ||
	    given(&k->prime_1) || given(&k->prime_2) || given(&k->exponent_1) ||
	    given(&k->exponent_2) || given(&k->coefficient))
		return CKR_TEMPLATE_INCONSISTENT;
	if (k->cls == CKO_PRIVATE_KEY ? given(&k->ec_point) : given(&k->value))
		return CKR_TEMPLATE_INCONSISTENT;
	if ((rv = parts_curve(k, &nid)) != CKR_OK)
		return rv;
	olen = nid == NID_secp384r1 ? 48 : 32;
	if (k->cls == CKO_PRIVATE_KEY) {
		if (!given(&k->value))
			return CKR_TEMPLATE_INCOMPLETE;
		if (k->value.len != olen)
			return CKR_ATTRIBUTE_VALUE_INVALID;
		pthread_once(&sheap_once, sheap_init);
		if (nid == NID_ED25519)
			return ed25519_key_new(k->value.p, flags, out);
		if ((rv = ec_scalar_ok(nid, k->value.p, olen)) != CKR_OK)
			return rv;
		return ec_key_new(nid, k->value.p, NULL, flags, out);
	}
	if (!given(&k->ec_point))
		return CKR_TEMPLATE_INCOMPLETE;
	pt = point_of(&k->ec_point, nid == NID_ED25519 ? 32 : 1 + 2 * olen);
	if (pt == NULL)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	if (nid == NID_ED25519) {
		EVP_PKEY *pkey =
		    EVP_PKEY_new_raw_public_key_ex(p11p_ossl_ctx(), "ED25519", NULL, pt, 32);

		if (pkey == NULL)
			return CKR_ATTRIBUTE_VALUE_INVALID;
		return key_from_pkey(CKO_PUBLIC_KEY, CKK_EC_EDWARDS, pkey, flags, out);
	}
	return ec_public_key(nid, pt, 1 + 2 * olen, flags, out);
}

/* RSA parts, in order: n, e, d, p, q, dp, dq, qinv. */
enum { R_N, R_E, R_D, R_P, R_Q, R_DP, R_DQ, R_QINV, R_NUM };

static const char *const rsa_names[R_NUM] = {
    OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
    OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
    OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
    OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
};

/*
 * p and q from n, e and d (NIST SP 800-56B rev. 2, appendix C.2): with
 * k = d e - 1 = 2^t r, r odd, some g^(r 2^i) is a square root of 1 other than
 * +-1, and gcd(it - 1, n) is a factor. false when none turns up (d is not
 * e's inverse for n).
 */
static bool rsa_factor(BIGNUM *bn[R_NUM], BN_CTX *ctx)
{
	BIGNUM *k, *y, *x, *nm1, *g;
	int t = 0;
	bool found = false;

	BN_CTX_start(ctx);
	k = BN_CTX_get(ctx);
	y = BN_CTX_get(ctx);
	x = BN_CTX_get(ctx);
	nm1 = BN_CTX_get(ctx);
	g = BN_CTX_get(ctx);
	if (g == NULL || !BN_mul(k, bn[R_D], bn[R_E], ctx) || !BN_sub_word(k, 1) ||
	    !BN_copy(nm1, bn[R_N]) || !BN_sub_word(nm1, 1) || BN_is_zero(k) || BN_is_odd(k))
		goto out;
	BN_set_flags(k, BN_FLG_CONSTTIME);
	while (!BN_is_odd(k)) {
		if (!BN_rshift1(k, k))
			goto out;
		t++;
	}
	for (BN_ULONG gw = 2; !found && gw < 100; gw++) {
		bool one = false; /* g^(d e - 1) = 1, as it is for a d that fits */

		if (!BN_set_word(g, gw) || !BN_mod_exp_mont_consttime(y, g, k, bn[R_N], ctx, NULL))
			goto out;
		if (BN_is_one(y) || BN_cmp(y, nm1) == 0)
			continue;
		for (int i = 0; i < t; i++) {
			if (!BN_mod_sqr(x, y, bn[R_N], ctx))
				goto out;
			one = BN_is_one(x) || BN_cmp(x, nm1) == 0;
			if (BN_is_one(x)) {
				/* y: a square root of 1 other than +-1 */
				if (!BN_sub_word(y, 1) || !BN_gcd(bn[R_P], y, bn[R_N], ctx) ||
				    !BN_div(bn[R_Q], NULL, bn[R_N], bn[R_P], ctx))
					goto out;
				found = !BN_is_one(bn[R_P]) && !BN_is_one(bn[R_Q]);
				break;
			}
			if (BN_cmp(x, nm1) == 0)
				break;
			if (!BN_copy(y, x))
				goto out;
		}
		if (!one)
			break; /* d is not e's inverse: no g will do */
	}
	if (found && BN_cmp(bn[R_P], bn[R_Q]) < 0)
		BN_swap(bn[R_P], bn[R_Q]); /* p > q, as OpenSSL makes them */
	/* The CRT parts the key will use. */
	if (found) {
		found = BN_copy(x, bn[R_P]) && BN_sub_word(x, 1) &&
		        BN_mod(bn[R_DP], bn[R_D], x, ctx) && BN_copy(x, bn[R_Q]) &&
		        BN_sub_word(x, 1) && BN_mod(bn[R_DQ], bn[R_D], x, ctx) &&
		        BN_mod_inverse(bn[R_QINV], bn[R_Q], bn[R_P], ctx) != NULL;
	}
out:
	BN_CTX_end(ctx);
	return found;
}

/*
 * e of a private key given without it: d's inverse mod lcm(p - 1, q - 1),
 * an exponent the engine takes (exponent_ok(): odd, 3 to 64 bits).
 * rsa_consistent() checks it against the rest of the key after.
 */
static bool rsa_public_exponent(BIGNUM *bn[R_NUM], BN_CTX *ctx)
{
	BIGNUM *p1, *q1, *g, *lam;
	unsigned char e[8];
	int n;
	bool ok = false;

	BN_CTX_start(ctx);
	p1 = BN_CTX_get(ctx);
	q1 = BN_CTX_get(ctx);
	g = BN_CTX_get(ctx);
	lam = BN_CTX_get(ctx);
	if (lam == NULL || BN_is_zero(bn[R_P]) || BN_is_zero(bn[R_Q]) || !BN_copy(p1, bn[R_P]) ||
	    !BN_sub_word(p1, 1) || !BN_copy(q1, bn[R_Q]) || !BN_sub_word(q1, 1) || BN_is_zero(p1) ||
	    BN_is_zero(q1) || !BN_gcd(g, p1, q1, ctx) || !BN_mul(lam, p1, q1, ctx) ||
	    !BN_div(lam, NULL, lam, g, ctx))
		goto out;
	BN_set_flags(lam, BN_FLG_CONSTTIME);
	if (BN_mod_inverse(bn[R_E], bn[R_D], lam, ctx) == NULL)
		goto out;
	n = BN_num_bytes(bn[R_E]);
	ok =
	    n > 0 && n <= (int)sizeof(e) && BN_bn2bin(bn[R_E], e) == n && exponent_ok(e, (size_t)n);
out:
	BN_CTX_end(ctx);
	return ok;
}

/*
 * One key: n = p q, e d = 1 mod p - 1 and q - 1, dp = d mod p - 1,
 * dq = d mod q - 1, qinv q = 1 mod p.
 */
static bool rsa_consistent(BIGNUM *const bn[R_NUM], BN_CTX *ctx)
{
	BIGNUM *t, *m;
	bool ok = false;

	BN_CTX_start(ctx);
	t = BN_CTX_get(ctx);
	m = BN_CTX_get(ctx);
	if (m == NULL || BN_is_zero(bn[R_P]) || BN_is_zero(bn[R_Q]) || BN_is_one(bn[R_P]) ||
	    BN_is_one(bn[R_Q]) || !BN_mul(t, bn[R_P], bn[R_Q], ctx) || BN_cmp(t, bn[R_N]) != 0)
		goto out;
	for (int i = 0; i < 2; i++) {
		const BIGNUM *pr = bn[i == 0 ? R_P : R_Q], *dx = bn[i == 0 ? R_DP : R_DQ];

		if (!BN_copy(m, pr) || !BN_sub_word(m, 1) || !BN_mod(t, bn[R_D], m, ctx) ||
		    BN_cmp(t, dx) != 0 || !BN_mod_mul(t, bn[R_E], bn[R_D], m, ctx) || !BN_is_one(t))
			goto out;
	}
	ok = BN_mod_mul(t, bn[R_QINV], bn[R_Q], bn[R_P], ctx) && BN_is_one(t);
out:
	BN_CTX_end(ctx);
	return ok;
}

/* DER: tag at *p, its length (short form, 0x81, 0x82; minimal); *p moves to the content. */
static bool der_take(const unsigned char **p, const unsigned char *end, unsigned char tag,
                     size_t *len)
{
	size_t n;

	if (end - *p < 2 || **p != tag)
		return false;
	n = (*p)[1];
	*p += 2;
	if (n == 0x81) {
		if (end - *p < 1 || **p < 0x80)
			return false;
		n = **p;
		*p += 1;
	} else if (n == 0x82) {
		if (end - *p < 2 || (*p)[0] == 0)
			return false;
		n = (size_t)(*p)[0] << 8 | (*p)[1];
		*p += 2;
	} else if (n > 0x7f) {
		return false;
	}
	if ((size_t)(end - *p) < n)
		return false;
	*len = n;
	return true;
}

/* The public key of RSA parts bn[R_N] and bn[R_E], in the proxy's library context. */
static EVP_PKEY *rsa_public_pkey(OSSL_LIB_CTX *lib, BIGNUM *const bn[R_NUM])
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_PKEY *pkey = NULL;

	if (bld != NULL && OSSL_PARAM_BLD_push_BN(bld, rsa_names[R_N], bn[R_N]) &&
	    OSSL_PARAM_BLD_push_BN(bld, rsa_names[R_E], bn[R_E]))
		params = OSSL_PARAM_BLD_to_param(bld);
	if (params != NULL)
		pctx = EVP_PKEY_CTX_new_from_name(lib, "RSA", NULL);
	if (pctx != NULL && (EVP_PKEY_fromdata_init(pctx) <= 0 ||
	                     EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return pkey;
}

/*
 * An RSA private key from its two-prime PKCS#8 form (RFC 5208 without
 * attributes, rsaEncryption with NULL parameters, RSAPrivateKey version 0:
 * what OpenSSL and rsa_pkcs8_key() write), parsed here: d, p, q, dp, dq and
 * qinv go from der (locked memory) straight into secure-heap bignums of the
 * engine's own RSA (swkey_int.h), checked to be one key; key->pkey is the
 * public key. OpenSSL's PKCS#8 decoder would leave copies of the DER in freed
 * heap, and its RSA import keeps the parts in ordinary bignums.
 * CKR_WRAPPED_KEY_INVALID: not that form (p11p_swkey_from_der() lets
 * OpenSSL's parser decide).
 */
static CK_RV rsa_own(const unsigned char *der, size_t len, unsigned flags, struct p11p_swkey **out)
{
	static const unsigned char head[] = {0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09,
	                                     0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
	                                     0x01, 0x01, 0x05, 0x00}; /* version, algorithm */
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	const unsigned char *p = der, *end = der + len;
	BIGNUM *bn[R_NUM] = {NULL};
	BN_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	RSA *rsa = NULL;
	BN_BLINDING *blinding = NULL;
	unsigned char e[8];
	size_t n = 0;
	int bits, el;
	CK_RV rv = CKR_WRAPPED_KEY_INVALID;

	if (!der_take(&p, end, 0x30, &n) || p + n != end || (size_t)(end - p) < sizeof(head) ||
	    memcmp(p, head, sizeof(head)) != 0)
		return CKR_WRAPPED_KEY_INVALID;
	p += sizeof(head);
	if (!der_take(&p, end, 0x04, &n) || p + n != end || !der_take(&p, end, 0x30, &n) ||
	    p + n != end || end - p < 3 || memcmp(p, "\x02\x01\x00", 3) != 0)
		return CKR_WRAPPED_KEY_INVALID;
	p += 3;
	pthread_once(&sheap_once, sheap_init);
	if (lib == NULL || (ctx = BN_CTX_secure_new_ex(lib)) == NULL)
		return CKR_HOST_MEMORY;
	for (int i = 0; i < R_NUM; i++) {
		if (!der_take(&p, end, 0x02, &n) || n == 0 || (p[0] & 0x80) ||
		    (n > 1 && p[0] == 0 && !(p[1] & 0x80)))
			goto out; /* not a minimal non-negative INTEGER */
		bn[i] = i >= R_D ? BN_secure_new() : BN_new();
		if (bn[i] == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		if (i >= R_D)
			BN_set_flags(bn[i], BN_FLG_CONSTTIME);
		if (BN_bin2bn(p, (int)n, bn[i]) == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		p += n;
	}
	bits = BN_num_bits(bn[R_N]);
	el = BN_num_bytes(bn[R_E]);
	if (p != end || bits < P11P_SWKEY_RSA_MIN || bits > P11P_SWKEY_RSA_MAX ||
	    !BN_is_odd(bn[R_N]) || el < 1 || el > (int)sizeof(e) || BN_bn2bin(bn[R_E], e) != el ||
	    !exponent_ok(e, (size_t)el) || !rsa_consistent(bn, ctx))
		goto out;
	rv = CKR_FUNCTION_FAILED;
	pkey = rsa_public_pkey(lib, bn);
	if (pkey == NULL)
		goto out;
	/*
	 * OpenSSL's own RSA code, whatever ENGINE the host made the default for
	 * RSA (RSA_new() would take it: a PKCS#11 engine, say).
	 */
	rsa = RSA_new();
	if (rsa == NULL || !RSA_set_method(rsa, RSA_PKCS1_OpenSSL()) ||
	    !RSA_set0_key(rsa, bn[R_N], bn[R_E], bn[R_D]))
		goto out;
	bn[R_N] = bn[R_E] = bn[R_D] = NULL;
	if (!RSA_set0_factors(rsa, bn[R_P], bn[R_Q]))
		goto out;
	bn[R_P] = bn[R_Q] = NULL;
	if (!RSA_set0_crt_params(rsa, bn[R_DP], bn[R_DQ], bn[R_QINV]))
		goto out;
	bn[R_DP] = bn[R_DQ] = bn[R_QINV] = NULL;
	/* No cached private Montgomery contexts (p and q in ordinary heap). */
	RSA_clear_flags(rsa, RSA_FLAG_CACHE_PRIVATE);
	/* The blinding the private operations share (p11p_swkey_rsa_private). */
	blinding = RSA_setup_blinding(rsa, ctx);
	if (blinding == NULL)
		goto out;
	rv = key_from_pkey(CKO_PRIVATE_KEY, CKK_RSA, pkey, flags, out);
	pkey = NULL; /* key_from_pkey took it */
	if (rv == CKR_OK) {
		(*out)->rsa_blinding = blinding;
		(*out)->rsa = rsa;
		blinding = NULL;
		rsa = NULL;
	}
out:
	BN_BLINDING_free(blinding);
	RSA_free(rsa);
	EVP_PKEY_free(pkey);
	for (int i = 0; i < R_NUM; i++)
		BN_clear_free(bn[i]);
	BN_CTX_free(ctx);
	return rv;
}

/*
 * A copy of rsa for one private operation: the private parts copied into
 * secure-heap bignums, OpenSSL's own RSA code, Montgomery contexts of p and q
 * cached (RSA_FLAG_CACHE_PRIVATE, OpenSSL's default), no blinding of its own
 * (the caller blinds). RSA_free() cleanses all of it.
 */
static RSA *rsa_private_copy(const RSA *rsa)
{
	const BIGNUM *n, *e, *d, *p, *q, *dp, *dq, *qinv;
	BIGNUM *pub[2] = {NULL}, *priv[6] = {NULL};
	RSA *c = RSA_new();
	bool ok = false;

	RSA_get0_key(rsa, &n, &e, &d);
	RSA_get0_factors(rsa, &p, &q);
	RSA_get0_crt_params(rsa, &dp, &dq, &qinv);
	{
		const BIGNUM *from[6] = {d, p, q, dp, dq, qinv};

		for (int i = 0; i < 6; i++) {
			priv[i] = BN_secure_new();
			if (priv[i] == NULL || from[i] == NULL || BN_copy(priv[i], from[i]) == NULL)
				goto out;
			BN_set_flags(priv[i], BN_FLG_CONSTTIME);
		}
	}
	pub[0] = BN_dup(n);
	pub[1] = BN_dup(e);
	if (c == NULL || pub[0] == NULL || pub[1] == NULL ||
	    !RSA_set_method(c, RSA_PKCS1_OpenSSL()) || !RSA_set0_key(c, pub[0], pub[1], priv[0]))
		goto out;
	pub[0] = pub[1] = priv[0] = NULL;
	if (!RSA_set0_factors(c, priv[1], priv[2]))
		goto out;
	priv[1] = priv[2] = NULL;
	if (!RSA_set0_crt_params(c, priv[3], priv[4], priv[5]))
		goto out;
	priv[3] = priv[4] = priv[5] = NULL;
	RSA_set_flags(c, RSA_FLAG_NO_BLINDING);
	ok = true;
out:
	BN_free(pub[0]);
	BN_free(pub[1]);
	for (int i = 0; i < 6; i++)
		BN_clear_free(priv[i]);
	if (!ok) {
		RSA_free(c);
		c = NULL;
	}
	return c;
}

/*
 * The input is blinded with the key's kept blinding (times r^e mod n, under
 * the blinding's own lock; its factor is squared per use and made anew every
 * 32, as OpenSSL does for a key's shared blinding), raised to d on a copy of
 * the key made for this operation only (rsa_private_copy), and unblinded
 * (times r^-1). The key itself keeps no Montgomery context of p or q (they
 * would hold p and q in ordinary heap); the copy does, for the operation's
 * length: OpenSSL then runs the two exponentiations of the CRT at once
 * (BN_mod_exp_mont_consttime_x2, with AVX-512 IFMA where the CPU has it:
 * twice as fast there as one after the other), and RSA_free() cleanses them.
 * The copy's own blinding would be made anew per operation: a modular
 * inverse, which cost as much as the signature saved.
 */
bool p11p_swkey_rsa_private(const struct p11p_swkey *key, const unsigned char *in,
                            unsigned char *out)
{
	size_t k = key->len;
	unsigned char blinded[P11P_SWKEY_RSA_MAX / 8];
	BN_CTX *ctx = NULL;
	BIGNUM *x, *unblind;
	const BIGNUM *n = NULL;
	RSA *copy = NULL;
	bool ok = false;

	if (key->rsa == NULL || key->rsa_blinding == NULL || k == 0 || k > sizeof(blinded))
		return false;
	RSA_get0_key(key->rsa, &n, NULL, NULL);
	ctx = BN_CTX_secure_new_ex(p11p_ossl_ctx());
	if (ctx == NULL)
		return false;
	BN_CTX_start(ctx);
	x = BN_CTX_get(ctx);
	unblind = BN_CTX_get(ctx);
	if (unblind == NULL || BN_bin2bn(in, (int)k, x) == NULL || BN_ucmp(x, n) >= 0)
		goto out;
	if (!BN_BLINDING_lock(key->rsa_blinding))
		goto out;
	ok = BN_BLINDING_convert_ex(x, unblind, key->rsa_blinding, ctx) == 1;
	BN_BLINDING_unlock(key->rsa_blinding);
	if (!ok || BN_bn2binpad(x, blinded, (int)k) != (int)k)
		goto fail;
	copy = rsa_private_copy(key->rsa);
	if (copy == NULL ||
	    RSA_private_encrypt((int)k, blinded, out, copy, RSA_NO_PADDING) != (int)k ||
	    BN_bin2bn(out, (int)k, x) == NULL ||
	    BN_BLINDING_invert_ex(x, unblind, key->rsa_blinding, ctx) != 1 ||
	    BN_bn2binpad(x, out, (int)k) != (int)k)
		goto fail;
	ok = true;
	goto out;
fail:
	ok = false;
	p11p_wipe(out, k);
out:
	RSA_free(copy);
	p11p_wipe(blinded, sizeof(blinded));
	BN_CTX_end(ctx);
	BN_CTX_free(ctx);
	return ok;
}

/* DER: the length of a length field for n content bytes (n < 2^16), and the field. */
static size_t der_len_len(size_t n)
{
	return n < 0x80 ? 1 : n < 0x100 ? 2 : 3;
}

static unsigned char *der_put_len(unsigned char *p, size_t n)
{
	if (n >= 0x100) {
		*p++ = 0x82;
		*p++ = (unsigned char)(n >> 8);
	} else if (n >= 0x80) {
		*p++ = 0x81;
	}
	*p++ = (unsigned char)n;
	return p;
}

/* DER INTEGER of a non-negative bignum: content bytes, and the whole. */
static size_t der_int_content(const BIGNUM *bn)
{
	size_t n = (size_t)BN_num_bytes(bn);

	return n == 0 ? 1 : n + (BN_is_bit_set(bn, (int)(8 * n - 1)) ? 1 : 0);
}

static unsigned char *der_put_int(unsigned char *p, const BIGNUM *bn)
{
	size_t c = der_int_content(bn), n = (size_t)BN_num_bytes(bn);

	*p++ = 0x02;
	p = der_put_len(p, c);
	if (c > n)
		*p++ = 0x00;
	return p + BN_bn2bin(bn, p);
}

/*
 * An RSA private key from its eight parts (n, e, d, p, q, dp, dq, qinv), through
 * its PKCS#8 form (RFC 5208, RFC 8017 RSAPrivateKey, version 0) written into
 * locked memory and read by p11p_swkey_from_der().
 */
static CK_RV rsa_pkcs8_key(BIGNUM *const bn[R_NUM], unsigned flags, struct p11p_swkey **out)
{
	static const unsigned char alg[] = {0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86,
	                                    0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};
	size_t ints = 3, key_len, oct_len, p8_len, total, map_len = 0;
	unsigned char *buf, *p;
	int locked = 0;
	CK_RV rv;

	for (int i = 0; i < R_NUM; i++)
		ints += 1 + der_len_len(der_int_content(bn[i])) + der_int_content(bn[i]);
	key_len = 1 + der_len_len(ints) + ints; /* RSAPrivateKey */
	oct_len = key_len;
	p8_len = sizeof(alg) + 1 + der_len_len(oct_len) + oct_len;
	total = 1 + der_len_len(p8_len) + p8_len;
	if (total > 0xffff)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	buf = p11p_locked_alloc(total, &map_len, &locked);
	if (buf == NULL)
		return CKR_HOST_MEMORY;
	p = buf;
	*p++ = 0x30;
	p = der_put_len(p, p8_len);
	memcpy(p, alg, sizeof(alg));
	p += sizeof(alg);
	*p++ = 0x04;
	p = der_put_len(p, oct_len);
	*p++ = 0x30;
	p = der_put_len(p, ints);
	*p++ = 0x02; /* version 0 (two primes) */
	*p++ = 0x01;
	*p++ = 0x00;
	for (int i = 0; i < R_NUM; i++)
		p = der_put_int(p, bn[i]);
	rv = (size_t)(p - buf) == total
	         ? p11p_swkey_from_der(CKO_PRIVATE_KEY, CKK_RSA, buf, total, flags, out)
	         : CKR_FUNCTION_FAILED;
	p11p_wipe(buf, total);
	p11p_locked_free(buf, map_len, locked);
	return rv == CKR_WRAPPED_KEY_INVALID ? CKR_FUNCTION_FAILED : rv;
}

static CK_RV rsa_from_parts(const struct p11p_swkey_parts *k, unsigned flags,
                            struct p11p_swkey **out)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	const struct p11p_swkey_part *in[R_NUM] = {
	    &k->modulus, &k->public_exponent, &k->private_exponent, &k->prime_1,
	    &k->prime_2, &k->exponent_1,      &k->exponent_2,       &k->coefficient,
	};
	bool priv = k->cls == CKO_PRIVATE_KEY;
	BIGNUM *bn[R_NUM] = {NULL};
	BN_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	int n_crt = 0, bits;
	CK_RV rv;

	if (given(&k->ec_params) || given(&k->ec_point) || given(&k->value))
		return CKR_TEMPLATE_INCONSISTENT;
	for (int i = R_D; i < R_NUM; i++) {
		if (given(in[i]) && !priv)
			return CKR_TEMPLATE_INCONSISTENT; /* private parts on a public key */
		if (i >= R_P)
			n_crt += given(in[i]);
	}
	if (!given(in[R_N]) || (!given(in[R_E]) && !priv) || (priv && !given(in[R_D])))
		return CKR_TEMPLATE_INCOMPLETE;
	if (n_crt != 0 && n_crt != R_NUM - R_P)
		return CKR_TEMPLATE_INCONSISTENT;
	/*
	 * PKCS#11 does not require CKA_PUBLIC_EXPONENT of a private key: with p
	 * and q, e is d's inverse mod lcm(p - 1, q - 1) (rsa_public_exponent());
	 * from n and d alone it cannot be had.
	 */
	if (!given(in[R_E]) && n_crt == 0) {
		p11p_message(
		    "RSA private key without CKA_PUBLIC_EXPONENT: add it, or the CRT parts "
		    "(CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2, "
		    "CKA_COEFFICIENT) it can be computed from");
		return CKR_TEMPLATE_INCOMPLETE;
	}
	if (given(in[R_E]) && !exponent_ok(in[R_E]->p, in[R_E]->len))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	for (int i = 0; i < R_NUM; i++)
		if (in[i]->len > P11P_SWKEY_RSA_MAX / 8 + 1 && in[i]->len > 0)
			return CKR_ATTRIBUTE_VALUE_INVALID; /* longer than any modulus here */
	pthread_once(&sheap_once, sheap_init);
	rv = CKR_HOST_MEMORY;
	ctx = BN_CTX_secure_new_ex(lib);
	if (lib == NULL || ctx == NULL)
		goto out;
	for (int i = 0; i < R_NUM; i++) {
		bn[i] = i >= R_D ? BN_secure_new() : BN_new();
		if (bn[i] == NULL)
			goto out;
		if (i >= R_D)
			BN_set_flags(bn[i], BN_FLG_CONSTTIME);
		if (given(in[i]) && BN_bin2bn(in[i]->p, (int)in[i]->len, bn[i]) == NULL)
			goto out;
	}
	rv = CKR_ATTRIBUTE_VALUE_INVALID;
	bits = BN_num_bits(bn[R_N]);
	if (bits < P11P_SWKEY_RSA_MIN || bits > P11P_SWKEY_RSA_MAX || !BN_is_odd(bn[R_N]))
		goto out;
	for (int i = R_D; priv && i < R_NUM; i++)
		if ((given(in[i]) || i == R_D) &&
		    (BN_is_zero(bn[i]) || BN_cmp(bn[i], bn[R_N]) >= 0))
			goto out;
	if (priv) {
		rv = CKR_TEMPLATE_INCONSISTENT;
		if (!given(in[R_E]) && !rsa_public_exponent(bn, ctx))
			goto out;
		if ((n_crt == 0 && !rsa_factor(bn, ctx)) || !rsa_consistent(bn, ctx))
			goto out;
	}
	if (priv) {
		/*
		 * Not EVP_PKEY_fromdata: OpenSSL 3.0's RSA import copies the private
		 * parameters into ordinary bignums (its PKCS#8 decoder makes secure
		 * ones), and its PKCS#8 encoder leaves copies in freed heap; the key
		 * is made from a PKCS#8 form written here in locked memory, kept for
		 * serialisation (test_hygiene_parts scans for both).
		 */
		rv = rsa_pkcs8_key(bn, flags, out);
		goto out;
	}
	rv = CKR_FUNCTION_FAILED;
	pkey = rsa_public_pkey(lib, bn);
	if (pkey == NULL)
		goto out;
	rv = key_from_pkey(k->cls, CKK_RSA, pkey, flags, out);
	pkey = NULL;
out:
	EVP_PKEY_free(pkey);
	for (int i = 0; i < R_NUM; i++)
		BN_clear_free(bn[i]);
	BN_CTX_free(ctx);
	return rv;
}

CK_RV p11p_swkey_from_parts(const struct p11p_swkey_parts *parts, unsigned flags,
                            struct p11p_swkey **out)
{
	p11p_return_val_if_fail(parts != NULL && out != NULL, CKR_ARGUMENTS_BAD);
	*out = NULL;
	if (parts->cls != CKO_PRIVATE_KEY && parts->cls != CKO_PUBLIC_KEY)
		return CKR_KEY_TYPE_INCONSISTENT;
	if (p11p_ossl_ctx() == NULL)
		return CKR_HOST_MEMORY;
	switch (parts->type) {
	case CKK_EC:
	case CKK_EC_EDWARDS:
		return ec_from_parts(parts, parts->cls == CKO_PUBLIC_KEY ? 0 : flags, out);
	case CKK_RSA:
		return rsa_from_parts(parts, parts->cls == CKO_PUBLIC_KEY ? 0 : flags, out);
	default:
		return CKR_KEY_TYPE_INCONSISTENT;
	}
}

bool p11p_swkey_consistent(const struct p11p_swkey *key)
{
	EVP_PKEY_CTX *cctx;
	bool ok;

	if (key == NULL || key->cls != CKO_PRIVATE_KEY || key->pkey == NULL)
		return false;
	if (key->type == CKK_EC_EDWARDS || key->rsa != NULL)
		return true; /* the engine's own RSA: checked when it was made (rsa_own) */
	cctx = EVP_PKEY_CTX_new_from_pkey(p11p_ossl_ctx(), key->pkey, NULL);
	ok = cctx != NULL && EVP_PKEY_pairwise_check(cctx) == 1;
	EVP_PKEY_CTX_free(cctx);
	return ok;
}

CK_RV p11p_swkey_public(const struct p11p_swkey *key, struct p11p_swkey **out)
{
	unsigned char *der = NULL;
	int n;
	CK_RV rv;

	p11p_return_val_if_fail(key != NULL && out != NULL, CKR_ARGUMENTS_BAD);
	*out = NULL;
	if (key->pkey == NULL)
		return CKR_KEY_TYPE_INCONSISTENT;
	n = i2d_PUBKEY(key->pkey, &der);
	if (n <= 0)
		return CKR_FUNCTION_FAILED;
	rv = p11p_swkey_from_der(CKO_PUBLIC_KEY, key->type, der, (size_t)n, 0, out);
	OPENSSL_free(der);
	return rv == CKR_WRAPPED_KEY_INVALID ? CKR_FUNCTION_FAILED : rv;
}

/* ---- inspection -------------------------------------------------------------- */

CK_OBJECT_CLASS p11p_swkey_class(const struct p11p_swkey *key)
{
	return key->cls;
}

CK_KEY_TYPE p11p_swkey_type(const struct p11p_swkey *key)
{
	return key->type;
}

size_t p11p_swkey_len(const struct p11p_swkey *key)
{
	return key->len;
}

unsigned p11p_swkey_flags(const struct p11p_swkey *key)
{
	return key->flags & (P11P_SWKEY_SENSITIVE | P11P_SWKEY_EXTRACTABLE);
}

CK_RV p11p_swkey_serialise(const struct p11p_swkey *key, struct p11p_secret **out)
{
	PKCS8_PRIV_KEY_INFO *p8;
	unsigned char *buf, *p;
	size_t map_len = 0;
	int locked = 0, n;

	p11p_return_val_if_fail(key != NULL && out != NULL, CKR_ARGUMENTS_BAD);
	*out = NULL;
	if (key->cls == CKO_SECRET_KEY) {
		*out = p11p_secret_dup(key->value);
		return *out != NULL ? CKR_OK : CKR_HOST_MEMORY;
	}
	if (key->cls == CKO_PUBLIC_KEY) {
		buf = NULL;
		n = i2d_PUBKEY(key->pkey, &buf);
		if (n <= 0)
			return CKR_FUNCTION_FAILED;
		*out = p11p_secret_new(buf, (size_t)n);
		OPENSSL_free(buf);
		return *out != NULL ? CKR_OK : CKR_HOST_MEMORY;
	}
	if (key->der != NULL) {
		*out = p11p_secret_dup(key->der);
		return *out != NULL ? CKR_OK : CKR_HOST_MEMORY;
	}
	/* RSA: straight into locked memory, so no clear copy sits in the heap. */
	p8 = EVP_PKEY2PKCS8(key->pkey);
	if (p8 == NULL)
		return CKR_FUNCTION_FAILED;
	n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL);
	if (n <= 0) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		return CKR_FUNCTION_FAILED;
	}
	buf = p11p_locked_alloc((size_t)n, &map_len, &locked);
	if (buf == NULL) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		return CKR_HOST_MEMORY;
	}
	p = buf;
	if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) == n)
		*out = p11p_secret_new(buf, (size_t)n);
	PKCS8_PRIV_KEY_INFO_free(p8);
	p11p_wipe(buf, (size_t)n);
	p11p_locked_free(buf, map_len, locked);
	return *out != NULL ? CKR_OK : CKR_HOST_MEMORY;
}

/* The size convention for n bytes at src. */
static CK_RV put(const void *src, size_t n, unsigned char *out, CK_ULONG *out_len)
{
	if (out == NULL) {
		*out_len = n;
		return CKR_OK;
	}
	if (*out_len < n) {
		*out_len = n;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(out, src, n);
	*out_len = n;
	return CKR_OK;
}

CK_RV p11p_swkey_value(const struct p11p_swkey *key, unsigned char *out, CK_ULONG *out_len)
{
	p11p_return_val_if_fail(key != NULL && out_len != NULL, CKR_ARGUMENTS_BAD);
	if (key->cls != CKO_SECRET_KEY)
		return CKR_ATTRIBUTE_TYPE_INVALID;
	if ((key->flags & P11P_SWKEY_SENSITIVE) || !(key->flags & P11P_SWKEY_EXTRACTABLE))
		return CKR_ATTRIBUTE_SENSITIVE;
	return put(p11p_secret_data(key->value), p11p_secret_len(key->value), out, out_len);
}

static CK_RV put_bn(const EVP_PKEY *pkey, const char *name, unsigned char *out, CK_ULONG *out_len)
{
	unsigned char buf[P11P_SWKEY_RSA_MAX / 8];
	BIGNUM *bn = NULL;
	int n;
	CK_RV rv;

	if (!EVP_PKEY_get_bn_param(pkey, name, &bn))
		return CKR_FUNCTION_FAILED;
	n = BN_num_bytes(bn) <= (int)sizeof(buf) ? BN_bn2bin(bn, buf) : -1;
	BN_free(bn);
	if (n <= 0)
		return CKR_FUNCTION_FAILED;
	rv = put(buf, (size_t)n, out, out_len);
	return rv;
}

CK_RV p11p_swkey_attr(const struct p11p_swkey *key, CK_ATTRIBUTE_TYPE type, unsigned char *out,
                      CK_ULONG *out_len)
{
	unsigned char buf[2 + 1 + 2 * 48];
	size_t n = 0;
	CK_ULONG ul;

	p11p_return_val_if_fail(key != NULL && out_len != NULL, CKR_ARGUMENTS_BAD);
	if (type == CKA_VALUE_LEN && key->cls == CKO_SECRET_KEY) {
		ul = key->len;
		return put(&ul, sizeof(ul), out, out_len);
	}
	if (key->pkey == NULL)
		return CKR_ATTRIBUTE_TYPE_INVALID;
	switch (type) {
	case CKA_EC_PARAMS:
		if (key->type == CKK_EC_EDWARDS)
			return put(oid_ed25519, sizeof(oid_ed25519), out, out_len);
		if (key->type != CKK_EC)
			break;
		return key->curve == NID_secp384r1 ? put(oid_p384, sizeof(oid_p384), out, out_len)
		                                   : put(oid_p256, sizeof(oid_p256), out, out_len);
	case CKA_EC_POINT:
		if (key->type == CKK_EC) {
			if (!EVP_PKEY_get_octet_string_param(key->pkey,
			                                     OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
			                                     buf + 2, sizeof(buf) - 2, &n))
				return CKR_FUNCTION_FAILED;
		} else if (key->type == CKK_EC_EDWARDS) {
			n = sizeof(buf) - 2;
			if (!EVP_PKEY_get_raw_public_key(key->pkey, buf + 2, &n))
				return CKR_FUNCTION_FAILED;
		} else
			break;
		/* DER OCTET STRING; the points here are all shorter than 128 bytes. */
		buf[0] = 0x04;
		buf[1] = (unsigned char)n;
		return put(buf, n + 2, out, out_len);
	case CKA_MODULUS:
		if (key->type != CKK_RSA)
			break;
		return put_bn(key->pkey, OSSL_PKEY_PARAM_RSA_N, out, out_len);
	case CKA_PUBLIC_EXPONENT:
		if (key->type != CKK_RSA)
			break;
		return put_bn(key->pkey, OSSL_PKEY_PARAM_RSA_E, out, out_len);
	case CKA_MODULUS_BITS:
		if (key->type != CKK_RSA)
			break;
		ul = (CK_ULONG)EVP_PKEY_get_bits(key->pkey);
		return put(&ul, sizeof(ul), out, out_len);
	case CKA_PUBLIC_KEY_INFO: {
		unsigned char *der = NULL;
		int dn = i2d_PUBKEY(key->pkey, &der);
		CK_RV rv;

		if (dn <= 0)
			return CKR_FUNCTION_FAILED;
		rv = put(der, (size_t)dn, out, out_len);
		OPENSSL_free(der);
		return rv;
	}
	default:
		break;
	}
	return CKR_ATTRIBUTE_TYPE_INVALID;
}

/* ---- the mechanism table ---------------------------------------------------------- */

static const CK_MECHANISM_TYPE mechs[] = {
    CKM_AES_GCM,
    CKM_AES_CBC,
    CKM_AES_CBC_PAD,
    CKM_AES_CTR,
    CKM_SHA256_HMAC,
    CKM_SHA256_HMAC_GENERAL,
    CKM_SHA384_HMAC,
    CKM_SHA384_HMAC_GENERAL,
    CKM_SHA512_HMAC,
    CKM_SHA512_HMAC_GENERAL,
    CKM_ECDSA,
    CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384,
    CKM_ECDSA_SHA512,
    CKM_EDDSA,
    CKM_RSA_PKCS,
    CKM_SHA256_RSA_PKCS,
    CKM_SHA384_RSA_PKCS,
    CKM_SHA512_RSA_PKCS,
    CKM_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_SHA384_RSA_PKCS_PSS,
    CKM_SHA512_RSA_PKCS_PSS,
    CKM_RSA_PKCS_OAEP,
};

size_t p11p_swkey_mechanisms(const CK_MECHANISM_TYPE **list)
{
	if (list != NULL)
		*list = mechs;
	return sizeof(mechs) / sizeof(mechs[0]);
}

CK_RV p11p_swkey_mechanism_info(CK_MECHANISM_TYPE mech, CK_MECHANISM_INFO *info)
{
	p11p_return_val_if_fail(info != NULL, CKR_ARGUMENTS_BAD);
	switch (mech) {
	case CKM_AES_GCM:
	case CKM_AES_CBC:
	case CKM_AES_CBC_PAD:
	case CKM_AES_CTR:
		*info = (CK_MECHANISM_INFO){16, 32, CKF_ENCRYPT | CKF_DECRYPT};
		return CKR_OK;
	case CKM_SHA256_HMAC:
	case CKM_SHA256_HMAC_GENERAL:
	case CKM_SHA384_HMAC:
	case CKM_SHA384_HMAC_GENERAL:
	case CKM_SHA512_HMAC:
	case CKM_SHA512_HMAC_GENERAL:
		*info = (CK_MECHANISM_INFO){1, P11P_SWKEY_GENERIC_MAX, CKF_SIGN | CKF_VERIFY};
		return CKR_OK;
	case CKM_ECDSA:
	case CKM_ECDSA_SHA256:
	case CKM_ECDSA_SHA384:
	case CKM_ECDSA_SHA512:
		*info = (CK_MECHANISM_INFO){256, 384,
		                            CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE |
		                                CKF_EC_UNCOMPRESS};
		return CKR_OK;
	case CKM_EDDSA:
		*info = (CK_MECHANISM_INFO){255, 255, CKF_SIGN | CKF_VERIFY};
		return CKR_OK;
	case CKM_RSA_PKCS:
	case CKM_RSA_PKCS_OAEP:
		*info = (CK_MECHANISM_INFO){P11P_SWKEY_RSA_MIN, P11P_SWKEY_RSA_MAX,
		                            (mech == CKM_RSA_PKCS ? CKF_SIGN | CKF_VERIFY : 0) |
		                                CKF_ENCRYPT | CKF_DECRYPT};
		return CKR_OK;
	case CKM_SHA256_RSA_PKCS:
	case CKM_SHA384_RSA_PKCS:
	case CKM_SHA512_RSA_PKCS:
	case CKM_RSA_PKCS_PSS:
	case CKM_SHA256_RSA_PKCS_PSS:
	case CKM_SHA384_RSA_PKCS_PSS:
	case CKM_SHA512_RSA_PKCS_PSS:
		*info = (CK_MECHANISM_INFO){P11P_SWKEY_RSA_MIN, P11P_SWKEY_RSA_MAX,
		                            CKF_SIGN | CKF_VERIFY};
		return CKR_OK;
	default:
		return CKR_MECHANISM_INVALID;
	}
}
