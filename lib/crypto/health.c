#include "crypto/health.h"

#include <string.h>

/*
 * APT cutoffs for W = 512 and alpha = 2^-20, index H = 1..8, computed exactly
 * as 1 + CRITBINOM(512, 2^-H, 1 - 2^-20) (the smallest k with
 * P(Binomial(512, 2^-H) <= k) >= 1 - 2^-20, plus one); they agree with
 * SP 800-90B Table 2 where it lists the same H.
 */
static const unsigned short apt_cutoffs[9] = {0, 311, 177, 103, 62, 39, 25, 18, 13};

unsigned p11p_health_rct_cutoff(unsigned h_bits)
{
	if (h_bits < 1 || h_bits > 8)
		return 0;
	return 1 + (20 + h_bits - 1) / h_bits;
}

unsigned p11p_health_apt_cutoff(unsigned h_bits)
{
	if (h_bits < 1 || h_bits > 8)
		return 0;
	return apt_cutoffs[h_bits];
}

void p11p_health_init(struct p11p_health *h, unsigned h_bits)
{
	memset(h, 0, sizeof(*h));
	if (h_bits < 1 || h_bits > 8)
		h_bits = P11P_HEALTH_DEFAULT_H;
	h->h_bits = h_bits;
	h->rct_cutoff = p11p_health_rct_cutoff(h_bits);
	h->apt_cutoff = p11p_health_apt_cutoff(h_bits);
}

void p11p_health_reset(struct p11p_health *h)
{
	h->rct_have = false;
	h->rct_run = 0;
	h->apt_seen = 0;
	h->apt_count = 0;
	h->failed = P11P_HEALTH_OK;
}

bool p11p_health_feed(struct p11p_health *h, const unsigned char *buf, size_t len)
{
	if (h->failed != P11P_HEALTH_OK)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char x = buf[i];

		h->samples++;
		/* RCT (90B §4.4.1): a run of rct_cutoff identical samples fails. */
		if (h->rct_have && x == h->rct_last) {
			if (++h->rct_run >= h->rct_cutoff) {
				h->rct_failures++;
				h->failed = P11P_HEALTH_RCT_FAILED;
				return false;
			}
		} else {
			h->rct_have = true;
			h->rct_last = x;
			h->rct_run = 1;
		}
		/*
		 * APT (90B §4.4.2): the first sample of each window of W is
		 * counted among the W; reaching apt_cutoff occurrences fails.
		 */
		if (h->apt_seen == 0) {
			h->apt_sample = x;
			h->apt_count = 1;
		} else if (x == h->apt_sample) {
			if (++h->apt_count >= h->apt_cutoff) {
				h->apt_failures++;
				h->failed = P11P_HEALTH_APT_FAILED;
				return false;
			}
		}
		if (++h->apt_seen == P11P_HEALTH_APT_WINDOW)
			h->apt_seen = 0;
	}
	return true;
}

const char *p11p_health_result_name(enum p11p_health_result r)
{
	switch (r) {
	case P11P_HEALTH_OK:
		return "ok";
	case P11P_HEALTH_RCT_FAILED:
		return "repetition count test failed";
	case P11P_HEALTH_APT_FAILED:
		return "adaptive proportion test failed";
	}
	return "unknown";
}
