/*
 * C_GenerateRandom and C_SeedRandom. Without `entropy:` in the slot's config
 * they pass through to the session's member (and fail over like any call).
 */
#include "virt/virt.h"

CK_RV p11p_generate_random(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len)
{
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (out == NULL && len > 0)
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	do {
		rv = c.fl->C_GenerateRandom(c.bs, out, len);
	} while (p11p_call_retry(&c, &rv, true));
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
	do {
		rv = c.fl->C_SeedRandom(c.bs, seed, len);
	} while (p11p_call_retry(&c, &rv, true));
	return p11p_call_end(&c, rv);
}
