/*
 * Software keys: key material the proxy holds itself (keys derived from
 * customer fragments, keys unwrapped from the index) and the operations it
 * runs on them with OpenSSL in the private library context.
 *
 * Mechanisms, with PKCS#11 2.40 semantics and return codes:
 *  - CKM_AES_GCM (CK_GCM_PARAMS) encrypt/decrypt, AES keys only.
 *    IV 1..128 bytes (12 recommended; ulIvBits is ignored, as most tokens
 *    do: the 2.40 header and text disagree about it). PKCS#11 allows up to
 *    256, but OpenSSL 3's GCM takes at most 128-byte IVs: longer ones get
 *    CKR_MECHANISM_PARAM_INVALID. AAD 0..2^32-1 bytes.
 *    ulTagBits one of 32, 64, 96, 104, 112, 120, 128 (the lengths NIST
 *    SP 800-38D allows; PKCS#11 only says <= 128). Output of encrypt is
 *    ciphertext || tag; decrypt takes the same and checks the tag before
 *    any plaintext is released (on a bad tag, CKR_ENCRYPTED_DATA_INVALID and
 *    the output buffer is wiped).
 *  - CKM_SHA256_HMAC and CKM_SHA256_HMAC_GENERAL (CK_MAC_GENERAL_PARAMS,
 *    1..32) sign/verify, AES or generic-secret keys. Verify compares in
 *    constant time: CKR_SIGNATURE_INVALID on mismatch,
 *    CKR_SIGNATURE_LEN_RANGE on a wrong length.
 * Output buffers follow the PKCS#11 size convention: out NULL -> *out_len =
 * the length needed and CKR_OK; *out_len too small -> CKR_BUFFER_TOO_SMALL
 * with *out_len set.
 *
 * Single-part only for now. A key is immutable after creation and may be
 * used from several threads at once; it caches one ready OpenSSL context per
 * operation kind (taken with an atomic exchange, so concurrent callers get a
 * fresh one) to keep key schedules and allocations off the hot path.
 * Multi-part operations fit as an op object that takes a context from the
 * key at *Init and gives it back at *Final.
 *
 * A key must not be freed while in use, and must be freed before the private
 * OpenSSL context (p11p_ossl_ctx_free()).
 */
#ifndef P11P_SWKEY_H
#define P11P_SWKEY_H

#include <stdbool.h>
#include <stddef.h>

#include "base/pkcs11.h"
#include "base/secret.h"

#define P11P_SWKEY_SENSITIVE   (1u << 0)
#define P11P_SWKEY_EXTRACTABLE (1u << 1)

#define P11P_SWKEY_GENERIC_MAX 1024 /* bytes of a generic secret */
#define P11P_SWKEY_GCM_IV_MAX  128
#define P11P_SWKEY_HMAC_LEN    32

struct p11p_swkey;

/*
 * A key of type CKK_AES (16, 24 or 32 bytes) or CKK_GENERIC_SECRET (1 to
 * P11P_SWKEY_GENERIC_MAX bytes) from a copy of value. CKR_KEY_TYPE_INCONSISTENT
 * for another type, CKR_KEY_SIZE_RANGE, CKR_HOST_MEMORY, CKR_GENERAL_ERROR.
 */
CK_RV p11p_swkey_new(CK_KEY_TYPE type, const unsigned char *value, size_t len, unsigned flags,
                     struct p11p_swkey **out);
/* The same, taking ownership of *value (set to NULL) whatever the result. */
CK_RV p11p_swkey_from_secret(CK_KEY_TYPE type, struct p11p_secret **value, unsigned flags,
                             struct p11p_swkey **out);
void p11p_swkey_free(struct p11p_swkey *key);

CK_KEY_TYPE p11p_swkey_type(const struct p11p_swkey *key);
size_t p11p_swkey_len(const struct p11p_swkey *key);
unsigned p11p_swkey_flags(const struct p11p_swkey *key);

/*
 * CKA_VALUE: CKR_ATTRIBUTE_SENSITIVE when the key is sensitive or not
 * extractable; else the size convention above.
 */
CK_RV p11p_swkey_value(const struct p11p_swkey *key, unsigned char *out, CK_ULONG *out_len);

/* C_Encrypt / C_Decrypt (CKM_AES_GCM). */
CK_RV p11p_swkey_encrypt(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                         CK_ULONG in_len, unsigned char *out, CK_ULONG *out_len);
CK_RV p11p_swkey_decrypt(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                         CK_ULONG in_len, unsigned char *out, CK_ULONG *out_len);

/* C_Sign / C_Verify (CKM_SHA256_HMAC, CKM_SHA256_HMAC_GENERAL). */
CK_RV p11p_swkey_sign(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                      CK_ULONG in_len, unsigned char *sig, CK_ULONG *sig_len);
CK_RV p11p_swkey_verify(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                        CK_ULONG in_len, const unsigned char *sig, CK_ULONG sig_len);

#endif
