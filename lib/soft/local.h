/*
 * Private to lib/soft/local.c and random.c: the per-slot state behind the
 * vendor mechanisms (issue 5).
 */
#ifndef P11P_VIRT_LOCAL_H
#define P11P_VIRT_LOCAL_H

#include <stdatomic.h>

#include "crypto/fragment.h"
#include "soft/entropy.h"
#include "soft/soft.h"

struct lfrag;

struct p11p_local_slot {
	/*
	 * The slot's generator: the `entropy:` policy when configured (then
	 * C_GenerateRandom uses it), else mix with on_hsm_failure os_only for
	 * what the proxy generates itself. Thread-safe; shared by the sessions.
	 */
	struct p11p_rng *rng;
	bool rng_public;             /* `entropy:` configured: C_GenerateRandom goes here */
	atomic_bool health_reported; /* the HSM stream's failure was reported */
	struct p11p_fragments *set;  /* the slot's customer_fragments.json, or NULL */
	size_t n_frags;
	struct lfrag *frags;
};

/*
 * len bytes from the slot's generator for the proxy's own use (fragments,
 * key values), drawing HSM bytes through c's session. CKR_DEVICE_ERROR when
 * the policy refuses.
 */
CK_RV p11p_local_random(struct p11p_call *c, unsigned char *buf, size_t len);
/* The slot's generator (random.c). */
CK_RV p11p_local_rng_new(struct p11p_vslot *vs, struct p11p_rng **out);
void p11p_local_rng_free(struct p11p_rng *rng);

#endif
