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
/* Helpers of local.c shared with swstore.c. */
CK_RV p11p_local_hsm_find_key(const struct p11p_bctx *bc, CK_SESSION_HANDLE bs, const char *label,
                              CK_OBJECT_HANDLE *out);
CK_RV p11p_local_borrow_session(struct p11p_call *c, CK_SESSION_HANDLE *bs, bool *temp);
void p11p_local_end_session(struct p11p_call *c, CK_SESSION_HANDLE bs, bool temp);

/*
 * swstore.c: a software key's value sealed into a blob for rec (flags:
 * P11P_SWB_F_*; *blob p11p_malloc'ed), and opened again, by the HSM
 * through c's member (failing over). A missing wrapping key, or a blob that
 * fails authentication, is reported and answers CKR_FUNCTION_FAILED.
 */
struct p11p_vkey;
CK_RV p11p_sw_seal(struct p11p_call *c, const struct p11p_vkey *rec, uint32_t flags,
                   const unsigned char *value, size_t len, unsigned char **blob, size_t *blob_len);
CK_RV p11p_sw_open(struct p11p_call *c, const struct p11p_vkey *rec, const unsigned char *blob,
                   size_t blob_len, struct p11p_secret **value);

/* The slot's generator (random.c). */
CK_RV p11p_local_rng_new(struct p11p_vslot *vs, struct p11p_rng **out);
void p11p_local_rng_free(struct p11p_rng *rng);

#endif
