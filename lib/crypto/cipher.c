/*
 * AES through its OpenSSL provider's own functions (crypto/cipher.h).
 */
#include "crypto/cipher.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>

/* True when the colon-separated list `names` holds `name` (case-insensitive, as OpenSSL's). */
static bool names_hold(const char *names, const char *name)
{
	size_t n = strlen(name);

	while (names != NULL && *names != '\0') {
		const char *end = strchr(names, ':');
		size_t len = end != NULL ? (size_t)(end - names) : strlen(names);

		if (len == n && strncasecmp(names, name, n) == 0)
			return true;
		names = end != NULL ? end + 1 : NULL;
	}
	return false;
}

/* The functions of the implementation in algs named `name`; false when one is missing. */
static bool take_functions(struct p11p_cipher *c, const OSSL_ALGORITHM *algs, const char *name)
{
	const OSSL_DISPATCH *d = NULL;

	for (; algs != NULL && algs->algorithm_names != NULL; algs++) {
		if (names_hold(algs->algorithm_names, name)) {
			d = algs->implementation;
			break;
		}
	}
	for (; d != NULL && d->function_id != 0; d++) {
		switch (d->function_id) {
		case OSSL_FUNC_CIPHER_NEWCTX:
			c->newctx = OSSL_FUNC_cipher_newctx(d);
			break;
		case OSSL_FUNC_CIPHER_ENCRYPT_INIT:
			c->einit = OSSL_FUNC_cipher_encrypt_init(d);
			break;
		case OSSL_FUNC_CIPHER_DECRYPT_INIT:
			c->dinit = OSSL_FUNC_cipher_decrypt_init(d);
			break;
		case OSSL_FUNC_CIPHER_UPDATE:
			c->update = OSSL_FUNC_cipher_update(d);
			break;
		case OSSL_FUNC_CIPHER_FINAL:
			c->final = OSSL_FUNC_cipher_final(d);
			break;
		case OSSL_FUNC_CIPHER_FREECTX:
			c->freectx = OSSL_FUNC_cipher_freectx(d);
			break;
		case OSSL_FUNC_CIPHER_GET_CTX_PARAMS:
			c->get_params = OSSL_FUNC_cipher_get_ctx_params(d);
			break;
		case OSSL_FUNC_CIPHER_SET_CTX_PARAMS:
			c->set_params = OSSL_FUNC_cipher_set_ctx_params(d);
			break;
		default:
			break;
		}
	}
	return c->newctx != NULL && c->einit != NULL && c->dinit != NULL && c->update != NULL &&
	       c->final != NULL && c->freectx != NULL && c->get_params != NULL &&
	       c->set_params != NULL;
}

bool p11p_cipher_fetch(struct p11p_cipher *c, OSSL_LIB_CTX *lib, const char *name)
{
	const OSSL_PROVIDER *prov;
	const OSSL_ALGORITHM *algs;
	int no_store = 0;
	int block;
	bool ok;

	memset(c, 0, sizeof(*c));
	if (name == NULL)
		return false;
	c->evp = EVP_CIPHER_fetch(lib, name, NULL);
	prov = c->evp != NULL ? EVP_CIPHER_get0_provider(c->evp) : NULL;
	block = c->evp != NULL ? EVP_CIPHER_get_block_size(c->evp) : 0;
	if (prov == NULL || block < 1) {
		p11p_cipher_release(c);
		return false;
	}
	c->provctx = OSSL_PROVIDER_get0_provider_ctx(prov);
	c->block = (size_t)block;
	algs = OSSL_PROVIDER_query_operation(prov, OSSL_OP_CIPHER, &no_store);
	ok = algs != NULL && take_functions(c, algs, name);
	if (algs != NULL)
		OSSL_PROVIDER_unquery_operation(prov, OSSL_OP_CIPHER, algs);
	if (!ok)
		p11p_cipher_release(c);
	return ok;
}

void p11p_cipher_release(struct p11p_cipher *c)
{
	if (c == NULL)
		return;
	EVP_CIPHER_free(c->evp);
	memset(c, 0, sizeof(*c));
}

void *p11p_cipher_ctx_new(const struct p11p_cipher *c)
{
	return c->newctx != NULL ? c->newctx(c->provctx) : NULL;
}

void p11p_cipher_ctx_free(const struct p11p_cipher *c, void *ctx)
{
	if (ctx != NULL && c->freectx != NULL)
		c->freectx(ctx);
}

bool p11p_cipher_init(const struct p11p_cipher *c, void *ctx, bool enc, const unsigned char *key,
                      size_t key_len, const unsigned char *iv, size_t iv_len)
{
	OSSL_FUNC_cipher_encrypt_init_fn *init = enc ? c->einit : c->dinit;

	if (ctx == NULL || init == NULL)
		return false;
	return init(ctx, key, key != NULL ? key_len : 0, iv, iv != NULL ? iv_len : 0, NULL) == 1;
}

bool p11p_cipher_update(const struct p11p_cipher *c, void *ctx, unsigned char *out, size_t *out_len,
                        const unsigned char *in, size_t in_len)
{
	size_t room = in_len + (c->block > 1 ? c->block : 0);

	*out_len = 0;
	if (ctx == NULL || c->update == NULL || room < in_len)
		return false;
	return c->update(ctx, out, out_len, room, in, in_len) == 1;
}

bool p11p_cipher_final(const struct p11p_cipher *c, void *ctx, unsigned char *out, size_t *out_len)
{
	*out_len = 0;
	if (ctx == NULL || c->final == NULL)
		return false;
	return c->final(ctx, out, out_len, c->block > 1 ? c->block : 0) == 1;
}

bool p11p_cipher_padding(const struct p11p_cipher *c, void *ctx, bool on)
{
	unsigned int pad = on ? 1 : 0;
	OSSL_PARAM params[2];

	if (ctx == NULL || c->set_params == NULL)
		return false;
	params[0] = OSSL_PARAM_construct_uint(OSSL_CIPHER_PARAM_PADDING, &pad);
	params[1] = OSSL_PARAM_construct_end();
	return c->set_params(ctx, params) == 1;
}

bool p11p_cipher_get_tag(const struct p11p_cipher *c, void *ctx, unsigned char *tag, size_t len)
{
	/*
	 * Built in place (params.h's initializers): OSSL_PARAM_construct_*()
	 * return the structure through the stack, and reading it back stalled
	 * on the stores (1 % of an AES-GCM 1 KiB message).
	 */
	OSSL_PARAM params[] = {OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, len),
	                       OSSL_PARAM_END};

	if (ctx == NULL || c->get_params == NULL || tag == NULL || len == 0)
		return false;
	return c->get_params(ctx, params) == 1;
}

bool p11p_cipher_set_tag(const struct p11p_cipher *c, void *ctx, const unsigned char *tag,
                         size_t len)
{
	/* A parameter to set: the provider only reads it. Built in place (above). */
	OSSL_PARAM params[] = {
	    OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, (void *)(uintptr_t)tag, len),
	    OSSL_PARAM_END};

	if (ctx == NULL || c->set_params == NULL || tag == NULL || len == 0)
		return false;
	return c->set_params(ctx, params) == 1;
}
