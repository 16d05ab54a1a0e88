/*
 * C_GenerateRandom and C_SeedRandom, and the slots' random generators.
 *
 * Without `entropy:` in the slot's config they pass through to the session's
 * member (and fail over like any call). With it, C_GenerateRandom returns the
 * output of the slot's generator (crypto/rng.h: a CTR-DRBG seeded through an
 * HMAC-SHA-512 extractor over HSM and OS bytes, with SP 800-90B health tests
 * on the HSM stream), and C_SeedRandom adds the caller's bytes as additional
 * input (they never reach the HSM and never count as entropy).
 *
 * One generator per slot, shared by its sessions (it is thread-safe). Its
 * HSM bytes come from the member of the session whose call needs a reseed:
 * the generator calls back without its own lock held, and the callback uses
 * that call (a thread-local pointer set around the generate) with the
 * session lock the call already holds, never the global lock. A forked child
 * gets CKR_CRYPTOKI_NOT_INITIALIZED until it calls C_Initialize, which builds
 * new generators; the generator also reseeds by itself on a pid change.
 *
 * Slots without `entropy:` still get a generator (source mix, on_hsm_failure
 * os_only) for what the proxy generates itself (key values of
 * CKM_P11PROXY_MIXED_KEY_GEN); C_GenerateRandom does not use it.
 */
#include "soft/local.h"
#include "base/log.h"

static _Thread_local struct p11p_call *tl_call;

static CK_RV hsm_bytes(void *ctx, unsigned char *buf, size_t len)
{
	struct p11p_call *c = tl_call;
	CK_RV rv;

	(void)ctx;
	if (c == NULL)
		return CKR_FUNCTION_FAILED;
	do {
		rv = p11p_be_C_GenerateRandom(&c->bc, c->bs, buf, len);
	} while (p11p_hook_call_retry(c, &rv, true));
	return rv;
}

CK_RV p11p_local_rng_new(struct p11p_vslot *vs, struct p11p_rng **out)
{
	return p11p_entropy_rng_new(&p11p_vhead(vs)->cfg->entropy, hsm_bytes, NULL, out);
}

void p11p_local_rng_free(struct p11p_rng *rng)
{
	p11p_entropy_free(rng);
}

/* Reports a failed HSM stream once per slot: which member, which test, what happens now. */
static void report_health(struct p11p_call *c, struct p11p_local_slot *ls)
{
	bool fails_closed = false;
	const char *test;

	if (atomic_load(&ls->health_reported))
		return;
	test = p11p_entropy_failure(ls->rng, &fails_closed);
	if (test == NULL || atomic_exchange(&ls->health_reported, true))
		return;
	p11p_message("slot '%s': member '%s': the HSM's random numbers failed the SP 800-90B %s "
	             "test; %s",
	             p11p_vhead(p11p_shead(c->s)->slot)->label, c->m->cfg->name, test,
	             fails_closed
	                 ? "on_hsm_failure: fail, so C_GenerateRandom answers CKR_DEVICE_ERROR"
	                 : "on_hsm_failure: os_only, so the OS's random numbers are used alone");
}

CK_RV p11p_local_random(struct p11p_call *c, unsigned char *buf, size_t len)
{
	struct p11p_local_slot *ls = p11p_vhead(p11p_shead(c->s)->slot)->local;
	struct p11p_call *prev = tl_call;
	CK_RV rv;

	if (ls == NULL || ls->rng == NULL)
		return CKR_GENERAL_ERROR;
	tl_call = c;
	rv = p11p_entropy_generate(ls->rng, buf, len);
	tl_call = prev;
	report_health(c, ls);
	return rv;
}

static bool entropy_on(struct p11p_call *c)
{
	struct p11p_local_slot *ls = p11p_vhead(p11p_shead(c->s)->slot)->local;

	return ls != NULL && ls->rng_public && ls->rng != NULL;
}

CK_RV p11p_generate_random(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len)
{
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (out == NULL && len > 0)
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	if (entropy_on(&c))
		return p11p_call_end(&c, p11p_local_random(&c, out, len));
	do {
		rv = p11p_be_C_GenerateRandom(&c.bc, c.bs, out, len);
	} while (p11p_hook_call_retry(&c, &rv, true));
	return p11p_call_end(&c, rv);
}

CK_RV p11p_seed_random(CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG len)
{
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (seed == NULL && len > 0)
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	if (entropy_on(&c))
		return p11p_call_end(
		    &c, p11p_entropy_add_input(p11p_vhead(p11p_shead(c.s)->slot)->local->rng, seed,
		                               len));
	do {
		rv = p11p_be_C_SeedRandom(&c.bc, c.bs, seed, len);
	} while (p11p_hook_call_retry(&c, &rv, true));
	return p11p_call_end(&c, rv);
}
