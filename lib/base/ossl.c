#include "base/ossl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include <openssl/crypto.h>

/*
 * A mutex rather than pthread_once: the context is freed at C_Finalize and
 * must be re-creatable by a later C_Initialize. The atomic pointer keeps the
 * common path (context already there) lock-free.
 */
static pthread_mutex_t ossl_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(OSSL_LIB_CTX *) ossl_ctx;

OSSL_LIB_CTX *p11p_ossl_ctx(void)
{
	OSSL_LIB_CTX *ctx = atomic_load_explicit(&ossl_ctx, memory_order_acquire);

	if (ctx != NULL)
		return ctx;
	pthread_mutex_lock(&ossl_lock);
	ctx = atomic_load_explicit(&ossl_ctx, memory_order_relaxed);
	if (ctx == NULL) {
		ctx = OSSL_LIB_CTX_new();
		atomic_store_explicit(&ossl_ctx, ctx, memory_order_release);
	}
	pthread_mutex_unlock(&ossl_lock);
	return ctx;
}

void p11p_ossl_ctx_free(void)
{
	OSSL_LIB_CTX *ctx;

	pthread_mutex_lock(&ossl_lock);
	ctx = atomic_exchange_explicit(&ossl_ctx, NULL, memory_order_acq_rel);
	pthread_mutex_unlock(&ossl_lock);
	OSSL_LIB_CTX_free(ctx);
}
