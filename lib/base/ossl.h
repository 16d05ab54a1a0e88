/*
 * OpenSSL 3 in a private library context.
 *
 * Every OpenSSL object the proxy uses (KDFs, digests, ciphers, RAND) is
 * fetched from this context, never from the default one. The default context
 * reads the application's openssl.cnf, which may load a PKCS#11 provider or
 * engine configured to use libproxy.so itself: fetching from it inside a
 * PKCS#11 call could recurse into this module. A context made with
 * OSSL_LIB_CTX_new() reads no configuration file and loads only the built-in
 * default provider on first use.
 */
#ifndef P11P_OSSL_H
#define P11P_OSSL_H

#include <openssl/types.h>

/*
 * The private context, created on first use (thread-safe). NULL only when
 * OpenSSL cannot allocate it; callers treat that as CKR_HOST_MEMORY.
 */
OSSL_LIB_CTX *p11p_ossl_ctx(void);

/*
 * Frees the context (C_Finalize). The caller guarantees that no other thread
 * is still using it; a later p11p_ossl_ctx() creates a fresh one.
 */
void p11p_ossl_ctx_free(void);

#endif
