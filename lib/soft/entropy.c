/* The module's view of crypto/rng.h: see entropy.h. */
#include "soft/entropy.h"
#include "crypto/rng.h"

CK_RV p11p_entropy_rng_new(const struct p11p_entropy_cfg *en, p11p_entropy_hsm_fn hsm, void *ctx,
                           struct p11p_rng **out)
{
	struct p11p_rng_config rc = {
	    .source = P11P_RNG_SOURCE_MIX,
	    .on_hsm_failure = P11P_RNG_ON_FAILURE_OS_ONLY,
	    .reseed_bytes = en->reseed_bytes,
	    .reseed_seconds = (unsigned)en->reseed_seconds,
	};

	switch (en->source) {
	case P11P_ENTROPY_PASSTHROUGH:
		break; /* the proxy's own use: mix, falling back to the OS */
	case P11P_ENTROPY_OS:
		rc.source = P11P_RNG_SOURCE_OS;
		break;
	case P11P_ENTROPY_HSM:
		rc.source = P11P_RNG_SOURCE_HSM;
		break;
	case P11P_ENTROPY_MIX:
		rc.source = P11P_RNG_SOURCE_MIX;
		break;
	}
	if (en->source != P11P_ENTROPY_PASSTHROUGH)
		rc.on_hsm_failure = en->on_hsm_failure == P11P_ENTROPY_OS_ONLY
		                        ? P11P_RNG_ON_FAILURE_OS_ONLY
		                        : P11P_RNG_ON_FAILURE_FAIL;
	return p11p_rng_new(&rc, hsm, ctx, out);
}

CK_RV p11p_entropy_generate(struct p11p_rng *rng, unsigned char *buf, size_t len)
{
	return p11p_rng_generate(rng, buf, len);
}

CK_RV p11p_entropy_add_input(struct p11p_rng *rng, const unsigned char *data, size_t len)
{
	return p11p_rng_add_input(rng, data, len);
}

void p11p_entropy_free(struct p11p_rng *rng)
{
	p11p_rng_free(rng);
}

const char *p11p_entropy_failure(struct p11p_rng *rng, bool *fails_closed)
{
	struct p11p_rng_status st;

	if (p11p_rng_status(rng, &st) != CKR_OK || st.health == P11P_HEALTH_OK)
		return NULL;
	*fails_closed = st.on_hsm_failure == P11P_RNG_ON_FAILURE_FAIL;
	return p11p_health_result_name(st.health);
}
