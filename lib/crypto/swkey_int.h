/*
 * Inside the software-key engine: the key object shared by swkey.c (keys)
 * and swop.c (operations). Nothing outside lib/crypto/sw*.c includes this.
 */
#ifndef P11P_SWKEY_INT_H
#define P11P_SWKEY_INT_H

#include <stdatomic.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "crypto/cipher.h"
#include "crypto/swkey.h"

/* Contexts a key may keep ready between operations (P11P_SWKEY_CACHE_CTX only). */
enum sw_cache {
	SW_CACHE_GCM,
	SW_CACHE_CBC_ENC,
	SW_CACHE_CBC_DEC,
	SW_CACHE_CTR,
	SW_CACHE_N,
};

/*
 * Raw ECDSA signing contexts (EVP_PKEY_CTX initialised for EVP_PKEY_sign) an
 * EC private key keeps ready between operations, whatever its flags: they
 * hold a reference on the key, whose scalar is in OpenSSL's secure heap, and
 * no key-derived data of their own. Two, so that two threads signing with
 * one key each find one. (Not Ed25519: OpenSSL 3.0 keeps an Ed25519 private
 * key's seed in ordinary heap, so a signing key lives for one operation.)
 */
#define SW_SIGN_CACHE 2

/* A SHA-2 state: SHA-256 (s256), or SHA-384 and SHA-512 (s512). */
union sw_sha_ctx {
	SHA256_CTX s256;
	SHA512_CTX s512;
};

/*
 * An HMAC key for one digest (RFC 2104): the digest's state after
 * compressing the block K ^ ipad (inner) and K ^ opad (outer), K the key
 * (hashed first when longer than the block) padded with zeros. Either is as
 * good as the key for computing MACs: kept only in a p11p_secret.
 */
struct sw_hmac_keyed {
	union sw_sha_ctx inner, outer;
};

struct p11p_swkey {
	atomic_uint refs;
	CK_OBJECT_CLASS cls;
	CK_KEY_TYPE type;
	unsigned flags;
	size_t len;                /* secret bytes; RSA modulus bytes; EC order bytes */
	struct p11p_secret *value; /* secret keys */
	EVP_PKEY *pkey;            /* private and public keys (Ed25519 private: public part only) */
	/*
	 * EC and Ed25519 private keys: the PKCS#8 form, kept so that neither
	 * serialisation nor (for Ed25519) signing goes through OpenSSL code that
	 * leaves copies of the scalar in ordinary heap.
	 */
	struct p11p_secret *der;
	/*
	 * RSA private keys read from the usual PKCS#8 form (swkey.c rsa_own):
	 * the engine's own RSA, built from its parse of key->der into
	 * secure-heap bignums, with RSA_FLAG_CACHE_PRIVATE cleared (OpenSSL would
	 * cache Montgomery contexts holding p and q in ordinary heap), and its
	 * blinding (rsa_blinding: r^e and r^-1 mod n, nothing of the private
	 * key), kept. Private operations go through p11p_swkey_rsa_private()
	 * and the RSA_* calls (deprecated in OpenSSL 3.0, which has no other way
	 * to a key with those properties); pkey is then the public key only.
	 */
	RSA *rsa;
	BN_BLINDING *rsa_blinding;
	int curve; /* EC: NID_X9_62_prime256v1 or NID_secp384r1 */
	/* AES keys: fetched from the private library context (no key material). */
	struct p11p_cipher gcm, cbc, ctr;
	/* Ready keyed cipher contexts (the provider's); used only with P11P_SWKEY_CACHE_CTX. */
	_Atomic(void *) cache[SW_CACHE_N];
	/* Ready ECDSA signing contexts (SW_SIGN_CACHE above), taken and given back by exchange. */
	_Atomic(void *) sign_cache[SW_SIGN_CACHE];
	/*
	 * Secret keys: per digest (0 SHA-256, 1 SHA-384, 2 SHA-512) a p11p_secret
	 * holding a struct sw_hmac_keyed, computed at the digest's first HMAC
	 * operation and published once by compare-and-swap (swop.c,
	 * hmac_keyed); read without a lock. Wiped and freed with the key.
	 */
	_Atomic(struct p11p_secret *) hmac_keyed[3];
};

/* The cipher whose contexts cache slot `slot` (enum sw_cache) keeps. */
static inline const struct p11p_cipher *p11p_swkey_cipher(const struct p11p_swkey *key, int slot)
{
	if (slot == SW_CACHE_GCM)
		return &key->gcm;
	return slot == SW_CACHE_CTR ? &key->ctr : &key->cbc;
}

/* Ed25519 signing key for one operation, from key->der (EVP_PKEY_free cleanses it). */
EVP_PKEY *p11p_swkey_ed25519_private(const struct p11p_swkey *key);

/*
 * The raw RSA private operation on key->rsa: out = in^d mod n, both the
 * modulus's length (key->len bytes). False when in is not below n, or on
 * failure (out is then wiped).
 */
bool p11p_swkey_rsa_private(const struct p11p_swkey *key, const unsigned char *in,
                            unsigned char *out);

#endif
