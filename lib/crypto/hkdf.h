/*
 * HKDF-SHA256 (RFC 5869) with a pluggable EXTRACT step.
 *
 * Fragment derivation (Akeyless customer fragments): the fragment is the
 * input keying material and the HMAC of the extract step is computed inside
 * the HSM with an HSM key (CKM_SHA256_HMAC): that key plays the part of the
 * salt, so PRK = HMAC-SHA256(hsm_key, fragment) never needs the key outside
 * the HSM. EXPAND runs in software (OpenSSL "HKDF", EXPAND_ONLY mode, in the
 * private library context). p11p_hkdf_sw_extract() is the same extract in
 * software (OpenSSL HMAC) with an explicit salt, for tests and for callers
 * that hold the salt themselves.
 *
 * PRK and OKM are returned as secrets (wiped on free); intermediate copies
 * are wiped before return.
 */
#ifndef P11P_HKDF_H
#define P11P_HKDF_H

#include <stddef.h>

#include "base/pkcs11.h"
#include "base/secret.h"

#define P11P_HKDF_HASH_LEN 32 /* SHA-256 */
#define P11P_HKDF_MAX_OKM  (255 * P11P_HKDF_HASH_LEN)
/* OpenSSL 3.0 HKDF keeps info in a 1024-byte buffer. */
#define P11P_HKDF_MAX_INFO 1024
#define P11P_HKDF_MAX_IKM  (64 * 1024)

/*
 * The extract step: prk = HMAC-SHA256(salt, ikm), with the salt implied by
 * ctx (an HSM key in production). Fills exactly P11P_HKDF_HASH_LEN bytes;
 * returns CKR_OK or the error to report (an HSM error passes through).
 */
typedef CK_RV (*p11p_hkdf_extract_fn)(void *ctx, const unsigned char *ikm, size_t ikm_len,
                                      unsigned char prk[P11P_HKDF_HASH_LEN]);

/* ctx of p11p_hkdf_sw_extract(): the salt (NULL/0 means HashLen zero bytes, RFC 5869 §2.2). */
struct p11p_hkdf_salt {
	const unsigned char *salt;
	size_t len;
};

/* Software extract; ctx is a const struct p11p_hkdf_salt *. */
CK_RV p11p_hkdf_sw_extract(void *ctx, const unsigned char *ikm, size_t ikm_len,
                           unsigned char prk[P11P_HKDF_HASH_LEN]);

/* EXTRACT through the callback; the PRK as a secret. */
CK_RV p11p_hkdf_extract(p11p_hkdf_extract_fn extract, void *ctx, const unsigned char *ikm,
                        size_t ikm_len, struct p11p_secret **prk);

/*
 * EXPAND in software: okm_len (1..P11P_HKDF_MAX_OKM) bytes from prk (at
 * least P11P_HKDF_HASH_LEN bytes) and info (0..P11P_HKDF_MAX_INFO bytes).
 * CKR_ARGUMENTS_BAD for lengths out of range.
 */
CK_RV p11p_hkdf_expand(const struct p11p_secret *prk, const unsigned char *info, size_t info_len,
                       size_t okm_len, struct p11p_secret **okm);

/* Both steps. The PRK is never returned. */
CK_RV p11p_hkdf(p11p_hkdf_extract_fn extract, void *ctx, const unsigned char *ikm, size_t ikm_len,
                const unsigned char *info, size_t info_len, size_t okm_len,
                struct p11p_secret **okm);

#endif
