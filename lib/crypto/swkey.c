/*
 * Software keys: construction, serialisation, generation, public attributes,
 * the mechanism table. The operations are in swop.c.
 *
 * Key hygiene. Secret key bytes are in a p11p_secret (locked, MADV_DONTDUMP,
 * wiped). OpenSSL's cipher and MAC contexts hold key schedules (an AES-256
 * schedule begins with the raw key) in ordinary heap, and OpenSSL offers no
 * way to allocate them elsewhere short of CRYPTO_set_mem_functions, which is
 * process-wide and must precede the host's first allocation. So a keyed
 * context lives only for one operation (p11p_swop) and OpenSSL cleanses it
 * when freed. bench/bench_swkey.c measures this against caching one keyed
 * context per key (P11P_SWKEY_CACHE_CTX); the figures are in bench/README.md.
 * Asymmetric private keys are EVP_PKEYs whose private parts OpenSSL puts in
 * its secure heap (see p11p_swkey_secure_heap_used() in the header).
 */
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

/* OSSL_PARAM_construct_utf8_string() takes a non-const pointer. */
static char md_names[3][8] = {"SHA256", "SHA384", "SHA512"};

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
	return key;
}

static void key_destroy(struct p11p_swkey *key)
{
	for (int i = 0; i < SW_CACHE_N; i++) {
		void *c = atomic_exchange(&key->cache[i], NULL);

		if (c == NULL)
			continue;
		/* Freeing an OpenSSL cipher or MAC context cleanses its key schedule. */
		if (i >= SW_CACHE_HMAC256)
			EVP_MAC_CTX_free(c);
		else
			EVP_CIPHER_CTX_free(c);
	}
	for (int i = 0; i < 3; i++)
		EVP_MAC_CTX_free(key->hmac_tmpl[i]);
	EVP_CIPHER_free(key->gcm);
	EVP_CIPHER_free(key->cbc);
	EVP_CIPHER_free(key->ctr);
	EVP_PKEY_free(key->pkey);
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

/* Keyless HMAC contexts with the digest chosen: dup + init(key) per operation. */
static bool hmac_templates(struct p11p_swkey *key, OSSL_LIB_CTX *lib)
{
	EVP_MAC *mac = EVP_MAC_fetch(lib, "HMAC", NULL);
	bool ok = mac != NULL;

	for (int i = 0; ok && i < 3; i++) {
		OSSL_PARAM params[2];

		key->hmac_tmpl[i] = EVP_MAC_CTX_new(mac);
		params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, md_names[i], 0);
		params[1] = OSSL_PARAM_construct_end();
		ok = key->hmac_tmpl[i] != NULL && EVP_MAC_CTX_set_params(key->hmac_tmpl[i], params);
	}
	EVP_MAC_free(mac);
	return ok;
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
		key->gcm = EVP_CIPHER_fetch(lib, gcm, NULL);
		key->cbc = EVP_CIPHER_fetch(lib, cbc, NULL);
		key->ctr = EVP_CIPHER_fetch(lib, ctr, NULL);
		if (key->gcm == NULL || key->cbc == NULL || key->ctr == NULL)
			goto out;
	}
	if (!hmac_templates(key, lib))
		goto out;
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

CK_RV p11p_swkey_from_der(CK_OBJECT_CLASS cls, CK_KEY_TYPE type, const unsigned char *der,
                          size_t len, unsigned flags, struct p11p_swkey **out)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	const unsigned char *p = der;
	EVP_PKEY *pkey = NULL;

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
	if (cls == CKO_PRIVATE_KEY) {
		PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);

		if (p8 != NULL && p == der + len)
			pkey = EVP_PKCS82PKEY_ex(p8, lib, NULL);
		PKCS8_PRIV_KEY_INFO_free(p8); /* cleanses the key octets */
		if (pkey != NULL)
			pthread_once(&sheap_once, sheap_init);
	} else {
		pkey = d2i_PUBKEY_ex(NULL, &p, (long)len, lib, NULL);
		if (pkey != NULL && p != der + len) {
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
	}
	if (pkey == NULL)
		return CKR_WRAPPED_KEY_INVALID;
	return key_from_pkey(cls, type, pkey, flags, out);
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

/* EC: d = (rand(order + 8 bytes) mod (n - 1)) + 1, the public point d.G. */
static CK_RV ec_generate(int nid, p11p_swkey_rand_fn rand, void *arg, EVP_PKEY **out)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	const char *name = nid == NID_secp384r1 ? "secp384r1" : "prime256v1";
	size_t olen = nid == NID_secp384r1 ? 48 : 32, rlen = olen + 8, plen = 0;
	unsigned char r[56], pub[1 + 2 * 48];
	EC_GROUP *group = NULL;
	EC_POINT *point = NULL;
	BN_CTX *bnctx = NULL;
	BIGNUM *d = NULL, *nm1 = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	CK_RV rv = CKR_HOST_MEMORY;

	*out = NULL;
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
	point = group != NULL ? EC_POINT_new(group) : NULL;
	if (point == NULL || bnctx == NULL || d == NULL || nm1 == NULL)
		goto out;
	BN_set_flags(d, BN_FLG_CONSTTIME);
	if (!BN_copy(nm1, EC_GROUP_get0_order(group)) || !BN_sub_word(nm1, 1) ||
	    !BN_bin2bn(r, (int)rlen, d) || !BN_nnmod(d, d, nm1, bnctx) || !BN_add_word(d, 1) ||
	    !EC_POINT_mul(group, point, d, NULL, NULL, bnctx))
		goto out;
	plen = EC_POINT_point2oct(group, point, POINT_CONVERSION_UNCOMPRESSED, pub, sizeof(pub),
	                          bnctx);
	if (plen == 0)
		goto out;
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
	rv = CKR_OK;
out:
	p11p_wipe(r, sizeof(r));
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(d);
	BN_free(nm1);
	EC_POINT_free(point);
	EC_GROUP_free(group);
	BN_CTX_free(bnctx);
	return rv;
}

static CK_RV ed25519_generate(p11p_swkey_rand_fn rand, void *arg, EVP_PKEY **out)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	unsigned char seed[32];
	CK_RV rv;

	*out = NULL;
	if (lib == NULL)
		return CKR_HOST_MEMORY;
	rv = rand(arg, seed, sizeof(seed));
	if (rv == CKR_OK) {
		*out = EVP_PKEY_new_raw_private_key_ex(lib, "ED25519", NULL, seed, sizeof(seed));
		if (*out == NULL)
			rv = CKR_FUNCTION_FAILED;
	}
	p11p_wipe(seed, sizeof(seed));
	return rv;
}

/*
 * RSA: OpenSSL's key generation in a throwaway library context whose primary
 * and private DRBGs are reseeded with 48 bytes of rand as additional input
 * (on top of their own OS seed), then moved to the private context as
 * PKCS#8.
 */
static CK_RV rsa_generate(CK_ULONG bits, const unsigned char *e, size_t elen,
                          p11p_swkey_rand_fn rand, void *arg, EVP_PKEY **out)
{
	OSSL_LIB_CTX *gen = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_PKEY *tmp = NULL;
	BIGNUM *bn_e = NULL;
	EVP_RAND_CTX *drbg;
	unsigned char seed[48], *der = NULL;
	struct p11p_swkey *k = NULL;
	int der_len;
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
	rv = p11p_swkey_from_der(CKO_PRIVATE_KEY, CKK_RSA, der, (size_t)der_len, 0, &k);
	if (rv == CKR_OK) {
		*out = k->pkey;
		k->pkey = NULL;
	}
out:
	p11p_swkey_free(k);
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
	EVP_PKEY *pkey = NULL;
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
	case CKK_EC_EDWARDS:
		rv = curve_of(spec->type, spec->ec_params, spec->ec_params_len, &nid);
		if (rv != CKR_OK)
			return rv;
		rv = spec->type == CKK_EC ? ec_generate(nid, rand, arg, &pkey)
		                          : ed25519_generate(rand, arg, &pkey);
		break;
	case CKK_RSA:
		if (spec->modulus_bits < P11P_SWKEY_RSA_MIN ||
		    spec->modulus_bits > P11P_SWKEY_RSA_MAX || spec->modulus_bits % 8 != 0)
			return CKR_KEY_SIZE_RANGE;
		if (spec->public_exponent != NULL &&
		    !exponent_ok(spec->public_exponent, spec->public_exponent_len))
			return CKR_TEMPLATE_INCONSISTENT;
		rv = rsa_generate(spec->modulus_bits, spec->public_exponent,
		                  spec->public_exponent_len, rand, arg, &pkey);
		break;
	default:
		return CKR_KEY_TYPE_INCONSISTENT;
	}
	if (rv != CKR_OK)
		return rv;
	rv = key_from_pkey(CKO_PRIVATE_KEY, spec->type, pkey, flags, &priv);
	if (rv == CKR_OK && pub_out != NULL) {
		rv = p11p_swkey_public(priv, pub_out);
		if (rv != CKR_OK) {
			p11p_swkey_free(priv);
			priv = NULL;
		}
	}
	*priv_out = priv;
	return rv;
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
	/* Private: straight into locked memory, so no clear copy sits in the heap. */
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

/* ---- one-shot conveniences ---------------------------------------------------------- */

static CK_RV one_shot(struct p11p_swkey *key, enum p11p_swop_kind kind, const CK_MECHANISM *mech,
                      const unsigned char *in, CK_ULONG in_len, unsigned char *out,
                      CK_ULONG *out_len)
{
	struct p11p_swop *op = NULL;
	CK_RV rv;

	p11p_return_val_if_fail(key != NULL && mech != NULL && out_len != NULL, CKR_ARGUMENTS_BAD);
	rv = p11p_swop_init(key, kind, mech, &op);
	if (rv == CKR_OK)
		rv = p11p_swop_run(op, in, in_len, out, out_len);
	p11p_swop_free(op);
	return rv;
}

CK_RV p11p_swkey_encrypt(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                         CK_ULONG in_len, unsigned char *out, CK_ULONG *out_len)
{
	return one_shot(key, P11P_SWOP_ENCRYPT, mech, in, in_len, out, out_len);
}

CK_RV p11p_swkey_decrypt(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                         CK_ULONG in_len, unsigned char *out, CK_ULONG *out_len)
{
	return one_shot(key, P11P_SWOP_DECRYPT, mech, in, in_len, out, out_len);
}

CK_RV p11p_swkey_sign(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                      CK_ULONG in_len, unsigned char *sig, CK_ULONG *sig_len)
{
	return one_shot(key, P11P_SWOP_SIGN, mech, in, in_len, sig, sig_len);
}

CK_RV p11p_swkey_verify(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                        CK_ULONG in_len, const unsigned char *sig, CK_ULONG sig_len)
{
	struct p11p_swop *op = NULL;
	CK_RV rv;

	p11p_return_val_if_fail(key != NULL && mech != NULL, CKR_ARGUMENTS_BAD);
	rv = p11p_swop_init(key, P11P_SWOP_VERIFY, mech, &op);
	if (rv == CKR_OK)
		rv = p11p_swop_verify(op, in, in_len, sig, sig_len);
	p11p_swop_free(op);
	return rv;
}
