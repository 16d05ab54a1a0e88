#include "crypto/swkey.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/ossl.h"

/* OSSL_PARAM_construct_utf8_string() takes a non-const pointer. */
static char sha256_name[] = "SHA256";

/* GCM: at most 2^36 - 32 bytes of plaintext under one IV (SP 800-38D). */
#define GCM_MAX_DATA ((((uint64_t)1) << 36) - 32)
/* OpenSSL update calls take an int: feed large inputs in pieces. */
#define UPDATE_CHUNK (1 << 30)

struct p11p_swkey {
	CK_KEY_TYPE type;
	unsigned flags;
	struct p11p_secret *value;
	EVP_CIPHER *gcm; /* AES keys only */
	EVP_MAC *hmac;
	/* One ready context each (key schedule done); NULL when taken or not made yet. */
	_Atomic(EVP_CIPHER_CTX *) gcm_cache;
	_Atomic(EVP_MAC_CTX *) hmac_cache;
};

/* ---- keys ---------------------------------------------------------------- */

CK_RV p11p_swkey_from_secret(CK_KEY_TYPE type, struct p11p_secret **value, unsigned flags,
                             struct p11p_swkey **out)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	struct p11p_swkey *key = NULL;
	const char *cipher = NULL;
	size_t len;
	CK_RV rv;

	p11p_return_val_if_fail(value != NULL && *value != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(out != NULL, CKR_ARGUMENTS_BAD);
	*out = NULL;
	len = p11p_secret_len(*value);
	if (type == CKK_AES) {
		switch (len) {
		case 16:
			cipher = "AES-128-GCM";
			break;
		case 24:
			cipher = "AES-192-GCM";
			break;
		case 32:
			cipher = "AES-256-GCM";
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
	if (lib == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	key = p11p_calloc(1, sizeof(*key));
	if (key == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	key->type = type;
	key->flags = flags & (P11P_SWKEY_SENSITIVE | P11P_SWKEY_EXTRACTABLE);
	key->value = *value;
	*value = NULL;
	rv = CKR_GENERAL_ERROR;
	if (cipher != NULL) {
		key->gcm = EVP_CIPHER_fetch(lib, cipher, NULL);
		if (key->gcm == NULL)
			goto out;
	}
	key->hmac = EVP_MAC_fetch(lib, "HMAC", NULL);
	if (key->hmac == NULL)
		goto out;
	*out = key;
	key = NULL;
	rv = CKR_OK;
out:
	p11p_swkey_free(key);
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

void p11p_swkey_free(struct p11p_swkey *key)
{
	if (key == NULL)
		return;
	/* Freeing an OpenSSL cipher or MAC context wipes its key schedule. */
	EVP_CIPHER_CTX_free(atomic_exchange(&key->gcm_cache, NULL));
	EVP_MAC_CTX_free(atomic_exchange(&key->hmac_cache, NULL));
	EVP_CIPHER_free(key->gcm);
	EVP_MAC_free(key->hmac);
	p11p_secret_free(key->value);
	p11p_free(key);
}

CK_KEY_TYPE p11p_swkey_type(const struct p11p_swkey *key)
{
	return key->type;
}

size_t p11p_swkey_len(const struct p11p_swkey *key)
{
	return p11p_secret_len(key->value);
}

unsigned p11p_swkey_flags(const struct p11p_swkey *key)
{
	return key->flags;
}

CK_RV p11p_swkey_value(const struct p11p_swkey *key, unsigned char *out, CK_ULONG *out_len)
{
	size_t len;

	p11p_return_val_if_fail(key != NULL && out_len != NULL, CKR_ARGUMENTS_BAD);
	if ((key->flags & P11P_SWKEY_SENSITIVE) || !(key->flags & P11P_SWKEY_EXTRACTABLE))
		return CKR_ATTRIBUTE_SENSITIVE;
	len = p11p_secret_len(key->value);
	if (out == NULL) {
		*out_len = len;
		return CKR_OK;
	}
	if (*out_len < len) {
		*out_len = len;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(out, p11p_secret_data(key->value), len);
	*out_len = len;
	return CKR_OK;
}

/* ---- AES-GCM ------------------------------------------------------------- */

static CK_RV gcm_params(const CK_MECHANISM *mech, const CK_GCM_PARAMS **out)
{
	const CK_GCM_PARAMS *p;

	if (mech->mechanism != CKM_AES_GCM)
		return CKR_MECHANISM_INVALID;
	if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(CK_GCM_PARAMS))
		return CKR_MECHANISM_PARAM_INVALID;
	p = mech->pParameter;
	if (p->pIv == NULL || p->ulIvLen < 1 || p->ulIvLen > P11P_SWKEY_GCM_IV_MAX)
		return CKR_MECHANISM_PARAM_INVALID;
	if ((p->pAAD == NULL && p->ulAADLen > 0) || p->ulAADLen > 0xffffffffUL)
		return CKR_MECHANISM_PARAM_INVALID;
	switch (p->ulTagBits) {
	case 32:
	case 64:
	case 96:
	case 104:
	case 112:
	case 120:
	case 128:
		break;
	default:
		return CKR_MECHANISM_PARAM_INVALID;
	}
	*out = p;
	return CKR_OK;
}

static EVP_CIPHER_CTX *gcm_take(struct p11p_swkey *key)
{
	EVP_CIPHER_CTX *ctx = atomic_exchange(&key->gcm_cache, NULL);

	if (ctx != NULL)
		return ctx;
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		return NULL;
	if (!EVP_CipherInit_ex2(ctx, key->gcm, p11p_secret_data(key->value), NULL, 1, NULL)) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Back into the cache after a clean run; freed (and wiped) otherwise or when full. */
static void gcm_give(struct p11p_swkey *key, EVP_CIPHER_CTX *ctx, bool clean)
{
	EVP_CIPHER_CTX *expected = NULL;

	if (ctx == NULL)
		return;
	if (!clean || !atomic_compare_exchange_strong(&key->gcm_cache, &expected, ctx))
		EVP_CIPHER_CTX_free(ctx);
}

static bool update_all(EVP_CIPHER_CTX *ctx, unsigned char *out, const unsigned char *in,
                       uint64_t len)
{
	while (len > 0) {
		int n = len > UPDATE_CHUNK ? UPDATE_CHUNK : (int)len, outl = 0;

		if (!EVP_CipherUpdate(ctx, out, &outl, in, n) || (out != NULL && outl != n))
			return false;
		in += n;
		if (out != NULL)
			out += n;
		len -= (uint64_t)n;
	}
	return true;
}

/* Set up ctx for one message: IV length, IV, direction, AAD. */
static bool gcm_start(EVP_CIPHER_CTX *ctx, const CK_GCM_PARAMS *p, int enc)
{
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, (int)p->ulIvLen, NULL) <= 0)
		return false;
	if (!EVP_CipherInit_ex2(ctx, NULL, NULL, p->pIv, enc, NULL))
		return false;
	return update_all(ctx, NULL, p->pAAD, p->ulAADLen);
}

CK_RV p11p_swkey_encrypt(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                         CK_ULONG in_len, unsigned char *out, CK_ULONG *out_len)
{
	const CK_GCM_PARAMS *p = NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	CK_ULONG tag_len, need;
	int outl = 0;
	bool clean = false;
	CK_RV rv;

	p11p_return_val_if_fail(key != NULL && mech != NULL && out_len != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(in != NULL || in_len == 0, CKR_ARGUMENTS_BAD);
	rv = gcm_params(mech, &p);
	if (rv != CKR_OK)
		return rv;
	if (key->type != CKK_AES)
		return CKR_KEY_TYPE_INCONSISTENT;
	if ((uint64_t)in_len > GCM_MAX_DATA)
		return CKR_DATA_LEN_RANGE;
	tag_len = p->ulTagBits / 8;
	need = in_len + tag_len;
	if (out == NULL) {
		*out_len = need;
		return CKR_OK;
	}
	if (*out_len < need) {
		*out_len = need;
		return CKR_BUFFER_TOO_SMALL;
	}
	ctx = gcm_take(key);
	if (ctx == NULL)
		return CKR_HOST_MEMORY;
	rv = CKR_GENERAL_ERROR;
	if (!gcm_start(ctx, p, 1) || !update_all(ctx, out, in, in_len) ||
	    !EVP_CipherFinal_ex(ctx, out + in_len, &outl) || outl != 0 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, (int)tag_len, out + in_len) <= 0) {
		p11p_wipe(out, need);
		goto out;
	}
	*out_len = need;
	clean = true;
	rv = CKR_OK;
out:
	gcm_give(key, ctx, clean);
	return rv;
}

CK_RV p11p_swkey_decrypt(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                         CK_ULONG in_len, unsigned char *out, CK_ULONG *out_len)
{
	const CK_GCM_PARAMS *p = NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	CK_ULONG tag_len, need;
	unsigned char tag[16];
	int outl = 0;
	bool clean = false;
	CK_RV rv;

	p11p_return_val_if_fail(key != NULL && mech != NULL && out_len != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(in != NULL || in_len == 0, CKR_ARGUMENTS_BAD);
	rv = gcm_params(mech, &p);
	if (rv != CKR_OK)
		return rv;
	if (key->type != CKK_AES)
		return CKR_KEY_TYPE_INCONSISTENT;
	tag_len = p->ulTagBits / 8;
	if (in_len < tag_len || (uint64_t)(in_len - tag_len) > GCM_MAX_DATA)
		return CKR_ENCRYPTED_DATA_LEN_RANGE;
	need = in_len - tag_len;
	if (out == NULL) {
		*out_len = need;
		return CKR_OK;
	}
	if (*out_len < need) {
		*out_len = need;
		return CKR_BUFFER_TOO_SMALL;
	}
	/* A copy: out may overlap in (in-place decryption). */
	memcpy(tag, in + need, tag_len);
	ctx = gcm_take(key);
	if (ctx == NULL)
		return CKR_HOST_MEMORY;
	rv = CKR_GENERAL_ERROR;
	if (!gcm_start(ctx, p, 0) ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, (int)tag_len, tag) <= 0 ||
	    !update_all(ctx, out, in, need)) {
		p11p_wipe(out, need);
		goto out;
	}
	if (!EVP_CipherFinal_ex(ctx, out + need, &outl) || outl != 0) {
		/* Nothing of an unauthenticated message reaches the caller. */
		p11p_wipe(out, need);
		rv = CKR_ENCRYPTED_DATA_INVALID;
		goto out;
	}
	*out_len = need;
	clean = true;
	rv = CKR_OK;
out:
	gcm_give(key, ctx, clean);
	return rv;
}

/* ---- HMAC-SHA256 --------------------------------------------------------- */

static CK_RV hmac_params(const CK_MECHANISM *mech, size_t *mac_len)
{
	CK_ULONG n;

	switch (mech->mechanism) {
	case CKM_SHA256_HMAC:
		if (mech->pParameter != NULL || mech->ulParameterLen != 0)
			return CKR_MECHANISM_PARAM_INVALID;
		*mac_len = P11P_SWKEY_HMAC_LEN;
		return CKR_OK;
	case CKM_SHA256_HMAC_GENERAL:
		if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(CK_ULONG))
			return CKR_MECHANISM_PARAM_INVALID;
		memcpy(&n, mech->pParameter, sizeof(n));
		if (n < 1 || n > P11P_SWKEY_HMAC_LEN)
			return CKR_MECHANISM_PARAM_INVALID;
		*mac_len = n;
		return CKR_OK;
	default:
		return CKR_MECHANISM_INVALID;
	}
}

static EVP_MAC_CTX *hmac_take(struct p11p_swkey *key)
{
	EVP_MAC_CTX *ctx = atomic_exchange(&key->hmac_cache, NULL);
	OSSL_PARAM params[2];

	if (ctx != NULL) {
		/* Re-initialise with the key already set. */
		if (EVP_MAC_init(ctx, NULL, 0, NULL))
			return ctx;
		EVP_MAC_CTX_free(ctx);
	}
	ctx = EVP_MAC_CTX_new(key->hmac);
	if (ctx == NULL)
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, sha256_name, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(ctx, p11p_secret_data(key->value), p11p_secret_len(key->value), params)) {
		EVP_MAC_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static void hmac_give(struct p11p_swkey *key, EVP_MAC_CTX *ctx)
{
	EVP_MAC_CTX *expected = NULL;

	if (ctx != NULL && !atomic_compare_exchange_strong(&key->hmac_cache, &expected, ctx))
		EVP_MAC_CTX_free(ctx);
}

/* mac (32 bytes) = HMAC-SHA256(key, in). */
static CK_RV hmac_compute(struct p11p_swkey *key, const unsigned char *in, CK_ULONG in_len,
                          unsigned char mac[P11P_SWKEY_HMAC_LEN])
{
	EVP_MAC_CTX *ctx = hmac_take(key);
	size_t outl = 0;

	if (ctx == NULL)
		return CKR_HOST_MEMORY;
	if ((in_len > 0 && !EVP_MAC_update(ctx, in, in_len)) ||
	    !EVP_MAC_final(ctx, mac, &outl, P11P_SWKEY_HMAC_LEN) || outl != P11P_SWKEY_HMAC_LEN) {
		EVP_MAC_CTX_free(ctx);
		return CKR_GENERAL_ERROR;
	}
	hmac_give(key, ctx);
	return CKR_OK;
}

CK_RV p11p_swkey_sign(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                      CK_ULONG in_len, unsigned char *sig, CK_ULONG *sig_len)
{
	unsigned char mac[P11P_SWKEY_HMAC_LEN];
	size_t mac_len = 0;
	CK_RV rv;

	p11p_return_val_if_fail(key != NULL && mech != NULL && sig_len != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(in != NULL || in_len == 0, CKR_ARGUMENTS_BAD);
	rv = hmac_params(mech, &mac_len);
	if (rv != CKR_OK)
		return rv;
	if (sig == NULL) {
		*sig_len = mac_len;
		return CKR_OK;
	}
	if (*sig_len < mac_len) {
		*sig_len = mac_len;
		return CKR_BUFFER_TOO_SMALL;
	}
	rv = hmac_compute(key, in, in_len, mac);
	if (rv == CKR_OK) {
		memcpy(sig, mac, mac_len);
		*sig_len = mac_len;
	}
	p11p_wipe(mac, sizeof(mac));
	return rv;
}

CK_RV p11p_swkey_verify(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                        CK_ULONG in_len, const unsigned char *sig, CK_ULONG sig_len)
{
	unsigned char mac[P11P_SWKEY_HMAC_LEN];
	size_t mac_len = 0;
	CK_RV rv;

	p11p_return_val_if_fail(key != NULL && mech != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(in != NULL || in_len == 0, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(sig != NULL || sig_len == 0, CKR_ARGUMENTS_BAD);
	rv = hmac_params(mech, &mac_len);
	if (rv != CKR_OK)
		return rv;
	if (sig_len != mac_len)
		return CKR_SIGNATURE_LEN_RANGE;
	rv = hmac_compute(key, in, in_len, mac);
	if (rv == CKR_OK && CRYPTO_memcmp(mac, sig, mac_len) != 0)
		rv = CKR_SIGNATURE_INVALID;
	p11p_wipe(mac, sizeof(mac));
	return rv;
}
