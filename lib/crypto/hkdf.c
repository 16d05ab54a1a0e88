#include "crypto/hkdf.h"

#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/ossl.h"

/* OSSL_PARAM_construct_utf8_string() takes a non-const pointer. */
static char sha256_name[] = "SHA256";

CK_RV p11p_hkdf_sw_extract(void *ctx, const unsigned char *ikm, size_t ikm_len,
                           unsigned char prk[P11P_HKDF_HASH_LEN])
{
	static const unsigned char zeros[P11P_HKDF_HASH_LEN];
	const struct p11p_hkdf_salt *s = ctx;
	const unsigned char *salt = zeros;
	size_t salt_len = sizeof(zeros), outl = 0;
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	OSSL_PARAM params[2];
	EVP_MAC_CTX *mctx = NULL;
	EVP_MAC *mac = NULL;
	CK_RV rv = CKR_GENERAL_ERROR;

	p11p_return_val_if_fail(prk != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(ikm != NULL || ikm_len == 0, CKR_ARGUMENTS_BAD);
	if (s != NULL && s->len > 0) {
		p11p_return_val_if_fail(s->salt != NULL, CKR_ARGUMENTS_BAD);
		salt = s->salt;
		salt_len = s->len;
	}
	if (lib == NULL)
		return CKR_HOST_MEMORY;
	mac = EVP_MAC_fetch(lib, "HMAC", NULL);
	if (mac == NULL)
		goto out;
	mctx = EVP_MAC_CTX_new(mac);
	if (mctx == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, sha256_name, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(mctx, salt, salt_len, params) ||
	    (ikm_len > 0 && !EVP_MAC_update(mctx, ikm, ikm_len)) ||
	    !EVP_MAC_final(mctx, prk, &outl, P11P_HKDF_HASH_LEN) || outl != P11P_HKDF_HASH_LEN)
		goto out;
	rv = CKR_OK;
out:
	EVP_MAC_CTX_free(mctx);
	EVP_MAC_free(mac);
	return rv;
}

CK_RV p11p_hkdf_extract(p11p_hkdf_extract_fn extract, void *ctx, const unsigned char *ikm,
                        size_t ikm_len, struct p11p_secret **prk)
{
	unsigned char buf[P11P_HKDF_HASH_LEN];
	CK_RV rv;

	p11p_return_val_if_fail(extract != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(prk != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(ikm != NULL || ikm_len == 0, CKR_ARGUMENTS_BAD);
	*prk = NULL;
	if (ikm_len > P11P_HKDF_MAX_IKM)
		return CKR_ARGUMENTS_BAD;
	rv = extract(ctx, ikm, ikm_len, buf);
	if (rv == CKR_OK) {
		*prk = p11p_secret_new(buf, sizeof(buf));
		if (*prk == NULL)
			rv = CKR_HOST_MEMORY;
	}
	p11p_wipe(buf, sizeof(buf));
	return rv;
}

CK_RV p11p_hkdf_expand(const struct p11p_secret *prk, const unsigned char *info, size_t info_len,
                       size_t okm_len, struct p11p_secret **okm)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM params[5], *p = params;
	EVP_KDF_CTX *kctx = NULL;
	EVP_KDF *kdf = NULL;
	unsigned char *buf = NULL;
	CK_RV rv = CKR_GENERAL_ERROR;

	p11p_return_val_if_fail(prk != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(okm != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(info != NULL || info_len == 0, CKR_ARGUMENTS_BAD);
	*okm = NULL;
	if (p11p_secret_len(prk) < P11P_HKDF_HASH_LEN || okm_len == 0 ||
	    okm_len > P11P_HKDF_MAX_OKM || info_len > P11P_HKDF_MAX_INFO)
		return CKR_ARGUMENTS_BAD;
	if (lib == NULL)
		return CKR_HOST_MEMORY;
	buf = p11p_malloc(okm_len);
	if (buf == NULL)
		return CKR_HOST_MEMORY;
	kdf = EVP_KDF_fetch(lib, "HKDF", NULL);
	if (kdf == NULL)
		goto out;
	kctx = EVP_KDF_CTX_new(kdf);
	if (kctx == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	*p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, sha256_name, 0);
	*p++ = OSSL_PARAM_construct_octet_string(
	    OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)p11p_secret_data(prk), p11p_secret_len(prk));
	if (info_len > 0)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
		                                         (void *)(uintptr_t)info, info_len);
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, buf, okm_len, params) != 1)
		goto out;
	*okm = p11p_secret_new(buf, okm_len);
	rv = *okm != NULL ? CKR_OK : CKR_HOST_MEMORY;
out:
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	p11p_wipe(buf, okm_len);
	p11p_free(buf);
	return rv;
}

CK_RV p11p_hkdf(p11p_hkdf_extract_fn extract, void *ctx, const unsigned char *ikm, size_t ikm_len,
                const unsigned char *info, size_t info_len, size_t okm_len,
                struct p11p_secret **okm)
{
	struct p11p_secret *prk = NULL;
	CK_RV rv;

	p11p_return_val_if_fail(okm != NULL, CKR_ARGUMENTS_BAD);
	*okm = NULL;
	/* Check the expand arguments first: no HSM call for a request bound to fail. */
	if (okm_len == 0 || okm_len > P11P_HKDF_MAX_OKM || info_len > P11P_HKDF_MAX_INFO ||
	    (info == NULL && info_len > 0))
		return CKR_ARGUMENTS_BAD;
	rv = p11p_hkdf_extract(extract, ctx, ikm, ikm_len, &prk);
	if (rv == CKR_OK)
		rv = p11p_hkdf_expand(prk, info, info_len, okm_len, okm);
	p11p_secret_free(prk);
	return rv;
}
