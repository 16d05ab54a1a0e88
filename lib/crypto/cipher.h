/*
 * AES through its OpenSSL provider's own functions.
 *
 * The software-key engine (swop.c) keys a cipher context for every
 * operation (swkey.c, key hygiene), so what an operation costs around the
 * cipher itself counts: through EVP, a context keyed per 1 KiB AES-GCM
 * message took about 900 ns on the build machine, a third of it in EVP's
 * parameter round trips (the key and IV lengths asked of the provider on
 * every EVP_CipherInit_ex2, the tag through EVP_CIPHER_CTX_ctrl) and in the
 * EVP_CIPHER_CTX around the provider's context. A p11p_cipher is the
 * implementation a fetch found, called through the functions its provider
 * publishes (OSSL_PROVIDER_query_operation(3), provider-cipher(7)): the
 * same code and the same context as through EVP, without that layer (about
 * 630 ns for the same message).
 *
 * A cipher context here is the provider's own (void *). Its calls follow
 * EVP's for provider ciphers: the output room given to an update is the
 * input length plus one block for block modes (EVP_CipherUpdate), to a final
 * one block (EVP_CipherFinal_ex); callers size their buffers as for EVP.
 */
#ifndef P11P_CIPHER_H
#define P11P_CIPHER_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/core_dispatch.h>
#include <openssl/types.h>

struct p11p_cipher {
	EVP_CIPHER *evp; /* the fetched cipher: keeps its provider loaded */
	void *provctx;
	size_t block; /* 1 for stream modes (GCM, CTR) */
	OSSL_FUNC_cipher_newctx_fn *newctx;
	OSSL_FUNC_cipher_encrypt_init_fn *einit;
	OSSL_FUNC_cipher_decrypt_init_fn *dinit;
	OSSL_FUNC_cipher_update_fn *update;
	OSSL_FUNC_cipher_final_fn *final;
	OSSL_FUNC_cipher_freectx_fn *freectx;
	OSSL_FUNC_cipher_get_ctx_params_fn *get_params;
	OSSL_FUNC_cipher_set_ctx_params_fn *set_params;
};

/*
 * Fetches `name` from lib (NULL: OpenSSL's default context, as for
 * EVP_CIPHER_fetch) and finds its provider's functions. False (c zeroed)
 * when the cipher or one of the functions is missing.
 */
bool p11p_cipher_fetch(struct p11p_cipher *c, OSSL_LIB_CTX *lib, const char *name);
/* Releases what p11p_cipher_fetch took; c zeroed (a zeroed c is fine). */
void p11p_cipher_release(struct p11p_cipher *c);

/* A new unkeyed context; NULL on allocation failure. */
void *p11p_cipher_ctx_new(const struct p11p_cipher *c);
/* Frees ctx; the provider cleanses the key schedule. NULL is fine. */
void p11p_cipher_ctx_free(const struct p11p_cipher *c, void *ctx);

/*
 * (Re)starts ctx for encryption (enc) or decryption: key NULL keeps the
 * key schedule it has, iv NULL the IV. GCM takes any IV length here.
 */
bool p11p_cipher_init(const struct p11p_cipher *c, void *ctx, bool enc, const unsigned char *key,
                      size_t key_len, const unsigned char *iv, size_t iv_len);
/* in_len bytes through; out NULL: GCM's additional data. *out_len: bytes written. */
bool p11p_cipher_update(const struct p11p_cipher *c, void *ctx, unsigned char *out, size_t *out_len,
                        const unsigned char *in, size_t in_len);
/* Ends the stream (GCM decrypt: false when the tag does not match). */
bool p11p_cipher_final(const struct p11p_cipher *c, void *ctx, unsigned char *out, size_t *out_len);
/* Block modes: PKCS#7 padding on or off (on when a context is made). */
bool p11p_cipher_padding(const struct p11p_cipher *c, void *ctx, bool on);
/* GCM: the tag after an encryption's final; the expected tag before a decryption's. */
bool p11p_cipher_get_tag(const struct p11p_cipher *c, void *ctx, unsigned char *tag, size_t len);
bool p11p_cipher_set_tag(const struct p11p_cipher *c, void *ctx, const unsigned char *tag,
                         size_t len);

#endif
