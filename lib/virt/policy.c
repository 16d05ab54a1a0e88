/*
 * A slot's key-management policy. Skeleton: the config's policy only (no
 * overlay yet); the real thing replaces these bodies.
 */
#include "virt/virt.h"

#include <stdio.h>

int p11p_policy_path(const struct p11p_config *cfg, size_t slot, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/slots/%s.policy", cfg->state_dir, cfg->slots[slot].label);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

int p11p_policy_read(const struct p11p_config *cfg, size_t slot, struct p11p_policy_cfg *out,
                     char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	*out = cfg->slots[slot].policy;
	return 0;
}

int p11p_policy_write(const struct p11p_config *cfg, size_t slot, const struct p11p_policy_cfg *p,
                      char *err, size_t errlen)
{
	(void)cfg;
	(void)slot;
	(void)p;
	snprintf(err, errlen, "policy overlays are not implemented yet");
	return -1;
}

void p11p_policy_get(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_policy_cfg *out)
{
	(void)st;
	*out = vs->cfg->policy;
}
