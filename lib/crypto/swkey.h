/*
 * Software keys: key material the proxy holds itself (keys derived from
 * customer fragments, keys unwrapped from the index) and the operations it
 * runs on them with OpenSSL in the private library context (base/ossl.h).
 *
 * ---- Key kinds and their serialised (clear) form -------------------------
 * The serialised form is what the store wraps with the HSM and what
 * p11p_swkey_serialise() gives back. It is always a p11p_secret (locked,
 * non-dumpable, wiped) on the way out.
 *   class            key type            serialised form
 *   CKO_SECRET_KEY   CKK_AES             raw key, 16, 24 or 32 bytes
 *   CKO_SECRET_KEY   CKK_GENERIC_SECRET  raw key, 1..P11P_SWKEY_GENERIC_MAX bytes
 *   CKO_PRIVATE_KEY  CKK_EC              DER PKCS#8 PrivateKeyInfo (RFC 5208),
 *                                        named curve P-256 or P-384 only
 *   CKO_PRIVATE_KEY  CKK_EC_EDWARDS      DER PKCS#8 (RFC 8410), Ed25519 only
 *   CKO_PRIVATE_KEY  CKK_RSA             DER PKCS#8, modulus 2048..4096 bits
 *   CKO_PUBLIC_KEY   any of the three    DER SubjectPublicKeyInfo (RFC 5280)
 * Public keys are not secret, but use the same calls (their serialised form
 * is still handed back as a p11p_secret, for one code path in the store).
 *
 * ---- Mechanisms (PKCS#11 2.40 semantics and return codes) ---------------
 *   mechanism                        keys          ops       parts
 *   CKM_AES_GCM (CK_GCM_PARAMS)      AES           enc/dec   single+multi
 *   CKM_AES_CBC (16-byte IV)         AES           enc/dec   single+multi
 *   CKM_AES_CBC_PAD (16-byte IV)     AES           enc/dec   single+multi
 *   CKM_AES_CTR (CK_AES_CTR_PARAMS)  AES           enc/dec   single+multi
 *   CKM_SHA{256,384,512}_HMAC        AES, generic  sign/ver  single+multi
 *   CKM_SHA*_HMAC_GENERAL (CK_MAC_GENERAL_PARAMS) same     single+multi
 *   CKM_ECDSA (input = a hash)       EC            sign/ver  single only
 *   CKM_ECDSA_SHA{256,384,512}       EC            sign/ver  single+multi
 *   CKM_EDDSA (none, or PKCS#11 3.0's CK_EDDSA_PARAMS {CK_BBOOL phFlag;
 *              CK_ULONG ulContextDataLen; CK_BYTE_PTR pContextData;}
 *              without prehash and context)
 *                                    Ed25519       sign/ver  single only
 *   CKM_RSA_PKCS (raw DigestInfo)    RSA           sign/ver, enc/dec  single only
 *   CKM_SHA{256,384,512}_RSA_PKCS    RSA           sign/ver  single+multi
 *   CKM_RSA_PKCS_PSS (input = hash, CK_RSA_PKCS_PSS_PARAMS)
 *                                    RSA           sign/ver  single only
 *   CKM_SHA{256,384,512}_RSA_PKCS_PSS (CK_RSA_PKCS_PSS_PARAMS, hashAlg must
 *                                    match)        sign/ver  single+multi
 *   CKM_RSA_PKCS_OAEP (CK_RSA_PKCS_OAEP_PARAMS: SHA-2 hash and MGF1, source
 *                    CKZ_DATA_SPECIFIED or 0, label in pSourceData)
 *                                    RSA           enc/dec   single only
 * ECDSA signatures are r || s, each as long as the group order (64 bytes on
 * P-256, 96 on P-384), never DER. Sign/verify/decrypt need the private key,
 * encrypt and verify take a public or a private key.
 *
 * Parameter rules:
 *  - GCM: IV 1..128 bytes (OpenSSL 3's limit; longer ones get
 *    CKR_MECHANISM_PARAM_INVALID; ulIvBits is ignored, as most tokens do);
 *    AAD 0..2^32-1 bytes; ulTagBits in {32, 64, 96, 104, 112, 120, 128}
 *    (SP 800-38D). Encrypt output is ciphertext || tag. Decrypt releases no
 *    plaintext before the tag is verified: multi-part decrypt updates return
 *    0 bytes and the whole plaintext comes from Final; on a bad tag
 *    CKR_ENCRYPTED_DATA_INVALID and the output buffer is wiped.
 *  - CBC: data a multiple of 16 (else CKR_DATA_LEN_RANGE on encrypt,
 *    CKR_ENCRYPTED_DATA_LEN_RANGE on decrypt). CBC_PAD: PKCS#7 padding; a bad
 *    pad on decrypt is CKR_ENCRYPTED_DATA_INVALID; ciphertext must be a
 *    non-zero multiple of 16.
 *  - CTR: ulCounterBits 1..128; the counter must not wrap within the data
 *    (CKR_DATA_LEN_RANGE when the input would wrap it).
 *  - HMAC: _GENERAL length 1..digest length. Verify compares in constant time:
 *    CKR_SIGNATURE_LEN_RANGE on a wrong length, CKR_SIGNATURE_INVALID.
 *  - Signatures: verify with a wrong length -> CKR_SIGNATURE_LEN_RANGE, a bad
 *    one -> CKR_SIGNATURE_INVALID. Raw CKM_ECDSA takes any input length
 *    1..64 (a hash, truncated to the order as ECDSA does). CKM_RSA_PKCS input
 *    <= k - 11 (k = modulus bytes), else CKR_DATA_LEN_RANGE; CKM_RSA_PKCS_PSS
 *    input must be exactly the hashAlg length (CKR_DATA_LEN_RANGE); sLen
 *    <= k - hLen - 2 (CKR_MECHANISM_PARAM_INVALID).
 *  - RSA decrypt: input must be exactly k bytes (CKR_ENCRYPTED_DATA_LEN_RANGE);
 *    a padding failure is CKR_ENCRYPTED_DATA_INVALID. RSA encrypt: data
 *    <= k - 11 (PKCS) or k - 2 hLen - 2 (OAEP), else CKR_DATA_LEN_RANGE.
 *  - Wrong mechanism for the key type: CKR_KEY_TYPE_INCONSISTENT; a
 *    mechanism the engine does not know: CKR_MECHANISM_INVALID; an operation
 *    the key's class cannot do (sign with a public key, decrypt with a
 *    public key): CKR_KEY_FUNCTION_NOT_PERMITTED; bad or missing parameters:
 *    CKR_MECHANISM_PARAM_INVALID. (Usage attributes such as CKA_SIGN are the
 *    store's business, not the engine's.)
 * Output buffers follow PKCS#11 5.2: out NULL -> *out_len = the length needed
 * and CKR_OK; *out_len too small -> CKR_BUFFER_TOO_SMALL with *out_len set.
 * Both leave a multi-part operation active; any other result of a Final or
 * single-part call, and any error of an Update, ends it (p11p_swop_active()).
 *
 * ---- Threads, lifetime, memory -------------------------------------------
 * A key is immutable after creation (but for its HMAC keyed states, computed
 * once at first use and published atomically) and reference counted: it may be used
 * from several threads at once; p11p_swop_init() takes a reference, so an
 * operation survives the store dropping (evicting) the key. p11p_swkey_free()
 * drops one reference; the last one wipes and frees. Every key must be freed
 * before the private OpenSSL context (p11p_ossl_ctx_free()).
 * Key bytes of secret keys live in a p11p_secret (locked, MADV_DONTDUMP,
 * wiped). OpenSSL cipher contexts holding key schedules hold them only for
 * the length of one operation: they are freed (OpenSSL cleanses them) when
 * it ends. HMAC runs on SHA-2's own functions from the key's keyed inner and
 * outer states, computed per digest at first use into a p11p_secret (as good
 * as the key: locked, MADV_DONTDUMP, wiped with the key); an operation's
 * working copy is wiped when it ends (bench/README.md, bench_swkey, has the
 * costs of each way). Asymmetric private keys: EC and RSA are EVP_PKEYs whose private
 * bignums OpenSSL puts in its secure heap (p11p_swkey_secure_heap_used());
 * EC and Ed25519 keys also keep their PKCS#8 in a p11p_secret, read and
 * written without OpenSSL's ASN.1 code (which leaves the scalar in freed
 * heap); an Ed25519 signing key is made for each operation (OpenSSL 3.0
 * keeps an imported Ed25519 seed in ordinary heap), and RSA private
 * operations run on a copy of the key (OpenSSL caches Montgomery contexts
 * holding p and q in ordinary heap), freed and cleansed at the end.
 * tests/unit/test_swkey.c scans the process for all of this.
 * An operation object (p11p_swop) belongs to one thread at a time (a PKCS#11
 * session serialises its calls).
 */
#ifndef P11P_SWKEY_H
#define P11P_SWKEY_H

#include <stdbool.h>
#include <stddef.h>

#include "base/pkcs11.h"
#include "base/secret.h"

#define P11P_SWKEY_SENSITIVE   (1u << 0)
#define P11P_SWKEY_EXTRACTABLE (1u << 1)
/*
 * For measurement only (bench/bench_swkey.c): keep one keyed OpenSSL context
 * per mode between operations, as the engine did before. Those contexts are
 * in ordinary heap, so with this flag the key's schedule reaches core dumps.
 */
#define P11P_SWKEY_CACHE_CTX (1u << 2)

#define P11P_SWKEY_GENERIC_MAX 1024 /* bytes of a generic secret */
#define P11P_SWKEY_GCM_IV_MAX  128
#define P11P_SWKEY_HMAC_LEN    32 /* SHA-256 HMAC, the derived keys' MAC */
#define P11P_SWKEY_RSA_MIN     2048
#define P11P_SWKEY_RSA_MAX     4096
#define P11P_SWKEY_SIG_MAX     512 /* longest signature: RSA-4096 */

struct p11p_swkey;

/*
 * The caller's random source (the proxy's mixed entropy, crypto/rng.h):
 * fills buf with len bytes or returns an error, which the engine passes on.
 */
typedef CK_RV (*p11p_swkey_rand_fn)(void *arg, unsigned char *buf, size_t len);

/* ---- construction --------------------------------------------------------- */

/*
 * A secret key of type CKK_AES (16, 24 or 32 bytes) or CKK_GENERIC_SECRET (1
 * to P11P_SWKEY_GENERIC_MAX bytes) from a copy of value.
 * CKR_KEY_TYPE_INCONSISTENT for another type, CKR_KEY_SIZE_RANGE,
 * CKR_HOST_MEMORY, CKR_GENERAL_ERROR.
 */
CK_RV p11p_swkey_new(CK_KEY_TYPE type, const unsigned char *value, size_t len, unsigned flags,
                     struct p11p_swkey **out);
/* The same, taking ownership of *value (set to NULL) whatever the result. */
CK_RV p11p_swkey_from_secret(CK_KEY_TYPE type, struct p11p_secret **value, unsigned flags,
                             struct p11p_swkey **out);

/*
 * Any key from its serialised form (table above): class CKO_SECRET_KEY is
 * p11p_swkey_new(); CKO_PRIVATE_KEY parses DER PKCS#8, CKO_PUBLIC_KEY DER
 * SPKI; the key inside must be of `type` (CKK_EC on P-256/P-384,
 * CKK_EC_EDWARDS Ed25519, CKK_RSA 2048..4096 bits; the blob is trusted as
 * to consistency: the store authenticates it). CKR_KEY_TYPE_INCONSISTENT (another type or
 * class), CKR_KEY_SIZE_RANGE (other curve or size), CKR_WRAPPED_KEY_INVALID
 * (bytes that do not parse: the store's "blob is damaged"), CKR_HOST_MEMORY.
 * der is only read; the caller wipes it.
 */
CK_RV p11p_swkey_from_der(CK_OBJECT_CLASS cls, CK_KEY_TYPE type, const unsigned char *der,
                          size_t len, unsigned flags, struct p11p_swkey **out);

/*
 * A new secret key of len bytes (AES 16/24/32, generic 1..GENERIC_MAX), the
 * value drawn from rand (never from OpenSSL's RNG). Errors as p11p_swkey_new
 * plus whatever rand returns.
 */
CK_RV p11p_swkey_generate(CK_KEY_TYPE type, size_t len, p11p_swkey_rand_fn rand, void *arg,
                          unsigned flags, struct p11p_swkey **out);

/* What p11p_swkey_generate_pair() makes. */
struct p11p_swkey_pair_spec {
	CK_KEY_TYPE type; /* CKK_EC, CKK_EC_EDWARDS or CKK_RSA */
	/*
	 * CKK_EC, CKK_EC_EDWARDS: CKA_EC_PARAMS, DER. EC: the named-curve OID of
	 * P-256 (1.2.840.10045.3.1.7) or P-384 (1.3.132.0.34). Ed25519: the OID
	 * 1.3.101.112 or the PrintableString "edwards25519" (both occur).
	 */
	const unsigned char *ec_params;
	size_t ec_params_len;
	/* CKK_RSA: CKA_MODULUS_BITS, 2048..4096 and a multiple of 8. */
	CK_ULONG modulus_bits;
	/* CKK_RSA: CKA_PUBLIC_EXPONENT, big-endian; NULL -> 65537. Odd, 3..2^64-1. */
	const unsigned char *public_exponent;
	size_t public_exponent_len;
};

/*
 * A new key pair. EC and Ed25519: the private scalar (or Ed25519 seed) is
 * drawn from rand (EC: 8 extra bytes reduced mod the order - 1, plus 1, so
 * the bias is below 2^-64). RSA: OpenSSL's key generation, in a library
 * context of its own (not the shared private one) whose primary DRBG uses a
 * seed source that calls rand: the primes come from rand's entropy, mixed
 * through the DRBG (CTR-DRBG, AES-256). *priv_out and *pub_out both set on
 * success (pub_out may be NULL: then only the private key). Errors:
 * CKR_CURVE_NOT_SUPPORTED (ec_params not one of the curves above),
 * CKR_DOMAIN_PARAMS_INVALID (ec_params not DER), CKR_KEY_SIZE_RANGE (RSA
 * bits), CKR_TEMPLATE_INCONSISTENT (bad exponent), CKR_KEY_TYPE_INCONSISTENT,
 * CKR_HOST_MEMORY, rand's error, CKR_FUNCTION_FAILED.
 */
CK_RV p11p_swkey_generate_pair(const struct p11p_swkey_pair_spec *spec, p11p_swkey_rand_fn rand,
                               void *arg, unsigned flags, struct p11p_swkey **priv_out,
                               struct p11p_swkey **pub_out);

/* One attribute value given by the application (NULL, 0 when absent). */
struct p11p_swkey_part {
	const unsigned char *p;
	size_t len;
};

/*
 * What p11p_swkey_from_parts() builds a key from: the PKCS#11 2.40
 * attributes of a private or public key object (C_CreateObject).
 */
struct p11p_swkey_parts {
	CK_OBJECT_CLASS cls; /* CKO_PRIVATE_KEY or CKO_PUBLIC_KEY */
	CK_KEY_TYPE type;    /* CKK_EC, CKK_EC_EDWARDS or CKK_RSA */
	/*
	 * CKK_EC, CKK_EC_EDWARDS: CKA_EC_PARAMS (the encodings of
	 * p11p_swkey_pair_spec); private keys: CKA_VALUE (EC: the scalar d,
	 * big-endian, exactly the order's length (32 or 48 bytes), 1 <= d < n;
	 * Ed25519: the 32-byte private key of RFC 8032); public keys: CKA_EC_POINT
	 * (EC: the uncompressed point 04||X||Y; Ed25519: the 32-byte public key),
	 * as a DER OCTET STRING or, as SoftHSM2 also takes it, raw).
	 */
	struct p11p_swkey_part ec_params, value, ec_point;
	/*
	 * CKK_RSA: CKA_MODULUS and CKA_PUBLIC_EXPONENT (both halves), and for a
	 * private key CKA_PRIVATE_EXPONENT and optionally the CRT parts
	 * CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2,
	 * CKA_COEFFICIENT (all five or none), big-endian.
	 */
	struct p11p_swkey_part modulus, public_exponent, private_exponent, prime_1, prime_2,
	    exponent_1, exponent_2, coefficient;
};

/*
 * A private or public key from its PKCS#11 attributes (C_CreateObject),
 * built with EVP_PKEY_fromdata in the private library context (an RSA private
 * key through its PKCS#8 form, written in locked memory: OpenSSL 3.0's RSA
 * import keeps private parameters in ordinary bignums), the private parts in
 * secure bignums (cleared when freed); the caller's buffers are only read.
 * Every part is checked:
 *   CKR_TEMPLATE_INCOMPLETE     a required part is missing (EC: params and
 *                               value or point; RSA: modulus, public
 *                               exponent, and the private exponent of a
 *                               private key)
 *   CKR_ATTRIBUTE_VALUE_INVALID a part that is wrong on its own: params not
 *                               DER or not a curve above, a value of the
 *                               wrong length, d = 0 or d >= n, a point not on
 *                               the curve or not uncompressed, a modulus not
 *                               odd or outside 2048..4096 bits, an even or
 *                               too small public exponent, a private part
 *                               not below the modulus
 *   CKR_TEMPLATE_INCONSISTENT   parts that do not agree: a curve of the other
 *                               key type (Ed25519 params on CKK_EC and the
 *                               reverse), a part the class or type does not
 *                               have (a value on a public key, a point on a
 *                               private one, RSA parts on an EC key ...), some
 *                               CRT parts but not all, an RSA private key
 *                               whose parts are not one key (d*e != 1, p*q !=
 *                               n, wrong CRT values)
 *   CKR_KEY_TYPE_INCONSISTENT   another class or type; CKR_HOST_MEMORY;
 *   CKR_FUNCTION_FAILED         OpenSSL failed otherwise.
 */
CK_RV p11p_swkey_from_parts(const struct p11p_swkey_parts *parts, unsigned flags,
                            struct p11p_swkey **out);

/*
 * Whether a private key from an untrusted source (C_UnwrapKey: PKCS#8 the
 * application wrapped, which p11p_swkey_from_der() takes as it is) is one
 * key: EC, its public point is d G; RSA, n = p q with p and q prime and the
 * exponents and CRT values those of p, q and d (OpenSSL's pairwise check);
 * Ed25519 keys always are (the public key is derived from the private one).
 * False for other classes.
 */
bool p11p_swkey_consistent(const struct p11p_swkey *key);

/* The public half of a private key as a key of class CKO_PUBLIC_KEY (flags 0). */
CK_RV p11p_swkey_public(const struct p11p_swkey *key, struct p11p_swkey **out);

/* One more reference (key not NULL); returns key. */
struct p11p_swkey *p11p_swkey_ref(struct p11p_swkey *key);
/* Drops a reference; the last one wipes and frees. NULL is fine. */
void p11p_swkey_free(struct p11p_swkey *key);

/* ---- inspection ------------------------------------------------------------ */

CK_OBJECT_CLASS p11p_swkey_class(const struct p11p_swkey *key);
CK_KEY_TYPE p11p_swkey_type(const struct p11p_swkey *key);
/* Secret keys: value bytes (CKA_VALUE_LEN). RSA: modulus bytes. EC: field bytes. */
size_t p11p_swkey_len(const struct p11p_swkey *key);
unsigned p11p_swkey_flags(const struct p11p_swkey *key);

/*
 * The serialised form (table above), in a new secret, for wrapping by the
 * HSM. Ignores the SENSITIVE/EXTRACTABLE flags: those govern what the
 * application may see, not what the store keeps.
 */
CK_RV p11p_swkey_serialise(const struct p11p_swkey *key, struct p11p_secret **out);

/*
 * CKA_VALUE of a secret key: CKR_ATTRIBUTE_SENSITIVE when the key is
 * sensitive or not extractable; CKR_ATTRIBUTE_TYPE_INVALID for other classes;
 * else the size convention above.
 */
CK_RV p11p_swkey_value(const struct p11p_swkey *key, unsigned char *out, CK_ULONG *out_len);

/*
 * Public attributes of a private or public key, PKCS#11 encodings, with the
 * size convention:
 *   CKA_EC_PARAMS        DER OID of the curve (Ed25519: OID 1.3.101.112)
 *   CKA_EC_POINT         DER OCTET STRING holding the point (EC: uncompressed
 *                        04||X||Y; Ed25519: the 32-byte public key)
 *   CKA_MODULUS          big-endian, no leading zero
 *   CKA_PUBLIC_EXPONENT  big-endian, no leading zero
 *   CKA_MODULUS_BITS     CK_ULONG
 *   CKA_VALUE_LEN        CK_ULONG (secret keys; not sensitive)
 *   CKA_PUBLIC_KEY_INFO  DER SPKI
 * CKR_ATTRIBUTE_TYPE_INVALID for any other attribute or one the key type
 * does not have; never reveals private or secret values.
 */
CK_RV p11p_swkey_attr(const struct p11p_swkey *key, CK_ATTRIBUTE_TYPE type, unsigned char *out,
                      CK_ULONG *out_len);

/* ---- mechanisms ------------------------------------------------------------ */

/* What C_GetMechanismList/C_GetMechanismInfo should say about the engine. */
size_t p11p_swkey_mechanisms(const CK_MECHANISM_TYPE **list);
/* CKR_MECHANISM_INVALID when the engine does not do mech. */
CK_RV p11p_swkey_mechanism_info(CK_MECHANISM_TYPE mech, CK_MECHANISM_INFO *info);

/* ---- operations ------------------------------------------------------------ */

enum p11p_swop_kind {
	P11P_SWOP_ENCRYPT,
	P11P_SWOP_DECRYPT,
	P11P_SWOP_SIGN,
	P11P_SWOP_VERIFY,
};

struct p11p_swop;

/*
 * C_EncryptInit / C_DecryptInit / C_SignInit / C_VerifyInit: checks the
 * mechanism, its parameters (copied: the caller's mechanism may go away) and
 * the key, takes a reference on the key. Errors in the rules above;
 * CKR_HOST_MEMORY.
 */
CK_RV p11p_swop_init(struct p11p_swkey *key, enum p11p_swop_kind kind, const CK_MECHANISM *mech,
                     struct p11p_swop **out);
/*
 * The same, borrowing the key: the caller keeps a reference on key until
 * p11p_swop_end() or p11p_swop_free() (the soft room's operation holds the
 * object's key). No write to the key, which other threads read: no cache
 * line goes back and forth between threads using one key. *io: NULL, or an
 * object p11p_swop_end() ended, made the new operation (the soft room keeps
 * one per session and kind: no allocation per operation); when the
 * mechanism, its parameters or the key are refused, *io is NULL (the object
 * freed).
 */
CK_RV p11p_swop_init_borrow(struct p11p_swkey *key, enum p11p_swop_kind kind,
                            const CK_MECHANISM *mech, struct p11p_swop **io);
/*
 * Ends the operation (active or not): wipes and frees what it holds, drops
 * the key reference (if it took one), keeps the object itself for
 * p11p_swop_init_borrow(). NULL is fine.
 */
void p11p_swop_end(struct p11p_swop *op);
/* p11p_swop_end(), and frees the object. NULL is fine. */
void p11p_swop_free(struct p11p_swop *op);
/* False once a call has ended the operation (size rule above). */
bool p11p_swop_active(const struct p11p_swop *op);

/*
 * C_Encrypt / C_Decrypt / C_Sign: single-part, only on an operation that had
 * no update yet (else CKR_OPERATION_ACTIVE, which does not end it).
 */
CK_RV p11p_swop_run(struct p11p_swop *op, const unsigned char *in, CK_ULONG in_len,
                    unsigned char *out, CK_ULONG *out_len);
/* C_Verify, single-part. Ends the operation (except CKR_OPERATION_ACTIVE). */
CK_RV p11p_swop_verify(struct p11p_swop *op, const unsigned char *in, CK_ULONG in_len,
                       const unsigned char *sig, CK_ULONG sig_len);
/*
 * C_EncryptUpdate / C_DecryptUpdate (out, out_len given) and C_SignUpdate /
 * C_VerifyUpdate (out and out_len NULL). On a single-part-only mechanism
 * (table above): CKR_FUNCTION_NOT_SUPPORTED, and the operation ends (as
 * SoftHSM2 does). CBC/CBC_PAD updates output whole blocks (CBC_PAD decrypt
 * keeps the last block back for Final), CTR and GCM encrypt output as much
 * as they take, GCM decrypt outputs nothing before Final.
 */
CK_RV p11p_swop_update(struct p11p_swop *op, const unsigned char *in, CK_ULONG in_len,
                       unsigned char *out, CK_ULONG *out_len);
/* C_EncryptFinal / C_DecryptFinal / C_SignFinal. */
CK_RV p11p_swop_final(struct p11p_swop *op, unsigned char *out, CK_ULONG *out_len);
/* C_VerifyFinal. Always ends the operation. */
CK_RV p11p_swop_verify_final(struct p11p_swop *op, const unsigned char *sig, CK_ULONG sig_len);

/*
 * One-shot conveniences (init + run + free), as the derived keys use them.
 */
CK_RV p11p_swkey_encrypt(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                         CK_ULONG in_len, unsigned char *out, CK_ULONG *out_len);
CK_RV p11p_swkey_decrypt(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                         CK_ULONG in_len, unsigned char *out, CK_ULONG *out_len);
CK_RV p11p_swkey_sign(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                      CK_ULONG in_len, unsigned char *sig, CK_ULONG *sig_len);
CK_RV p11p_swkey_verify(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                        CK_ULONG in_len, const unsigned char *sig, CK_ULONG sig_len);

/*
 * OpenSSL's secure heap. Asymmetric private keys are EVP_PKEYs; OpenSSL keeps
 * their private components (EC scalar, Ed25519 seed, RSA d, p, q, ...) in its
 * secure heap (mlocked, MADV_DONTDUMP, cleansed) when that heap exists. It
 * is process-global and can be set up once: the engine sets it up
 * (P11P_SWKEY_SECURE_HEAP bytes) when it makes its first asymmetric private
 * key, unless the host application already did (then the host's is used).
 * Effects on the host: its own secure allocations share the heap, and in
 * OpenSSL 3.0 a full secure heap makes them fail rather than fall back.
 * p11p_swkey_secure_heap_used() reports whether it is in use. Capacity: an
 * RSA-2048 private key takes about 1 KiB of it (RSA-4096 about 2 KiB, one
 * more for the duration of each private operation), an EC key well under
 * 100 bytes; with the heap full, loading a key fails (from_der says
 * CKR_WRAPPED_KEY_INVALID: OpenSSL does not tell the two apart) and private
 * operations fail (CKR_HOST_MEMORY, CKR_FUNCTION_FAILED), so a key cache
 * in front of the engine should stay well below that.
 */
#define P11P_SWKEY_SECURE_HEAP (1u << 20)
bool p11p_swkey_secure_heap_used(void);

#endif
