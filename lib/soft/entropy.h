/*
 * The module's view of crypto/rng.h (lib/soft/entropy.c). A separate unit
 * because crypto/health.h and backend/backend.h both name a `p11p_health`
 * (a struct and an enum): no file can include both.
 */
#ifndef P11P_VIRT_ENTROPY_H
#define P11P_VIRT_ENTROPY_H

#include <stdbool.h>
#include <stddef.h>

#include "base/pkcs11.h"
#include "config/config.h"

struct p11p_rng;

typedef CK_RV (*p11p_entropy_hsm_fn)(void *ctx, unsigned char *buf, size_t len);

/*
 * A generator for a slot's `entropy:` (PASSTHROUGH: the proxy's own
 * generator, mix with on_hsm_failure os_only).
 */
CK_RV p11p_entropy_rng_new(const struct p11p_entropy_cfg *en, p11p_entropy_hsm_fn hsm, void *ctx,
                           struct p11p_rng **out);
CK_RV p11p_entropy_generate(struct p11p_rng *rng, unsigned char *buf, size_t len);
CK_RV p11p_entropy_add_input(struct p11p_rng *rng, const unsigned char *data, size_t len);
void p11p_entropy_free(struct p11p_rng *rng);
/*
 * NULL while the HSM stream passes its health tests; else the failed test's
 * name, with *fails_closed telling whether the policy is `fail`.
 */
const char *p11p_entropy_failure(struct p11p_rng *rng, bool *fails_closed);

#endif
