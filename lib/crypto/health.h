/*
 * Continuous health tests on a raw noise stream (NIST SP 800-90B §4.4):
 * the repetition count test (RCT) and the adaptive proportion test (APT).
 *
 * The proxy runs them on the bytes an HSM returns from C_GenerateRandom
 * before they reach the entropy extractor. Each byte is one sample. H is the
 * min-entropy per sample the proxy *assumes* of the HSM stream; it only sets
 * the cutoffs (false-alarm probability alpha = 2^-20 per test, as 90B
 * recommends):
 *   RCT cutoff C = 1 + ceil(20 / H)                  (H = 4: C = 6)
 *   APT window W = 512, cutoff C = 1 + CRITBINOM(W, 2^-H, 1 - 2^-20)
 *                                                    (H = 4: C = 62)
 * A vendor RNG output is a conditioned DRBG stream with close to 8 bits per
 * byte, so H = 4 is conservative: a working HSM never trips the tests, while
 * a stuck or grossly biased one does within a few hundred bytes.
 *
 * A failure is latched: once a test fails, p11p_health_feed() keeps
 * returning false until p11p_health_reset(). Not thread-safe: the owner
 * serialises calls (the RNG feeds it under its lock).
 */
#ifndef P11P_HEALTH_H
#define P11P_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define P11P_HEALTH_DEFAULT_H  4 /* assumed min-entropy, bits per byte */
#define P11P_HEALTH_APT_WINDOW 512
/* Samples a start-up test (90B §4.3) runs before the first use of a source. */
#define P11P_HEALTH_STARTUP_SAMPLES 1024

enum p11p_health_result {
	P11P_HEALTH_OK = 0,
	P11P_HEALTH_RCT_FAILED,
	P11P_HEALTH_APT_FAILED,
};

struct p11p_health {
	unsigned h_bits;
	unsigned rct_cutoff;
	unsigned apt_cutoff;
	/* RCT state */
	bool rct_have;
	unsigned char rct_last;
	unsigned rct_run;
	/* APT state */
	unsigned char apt_sample;
	unsigned apt_seen;  /* samples of the current window seen, 0 = none yet */
	unsigned apt_count; /* occurrences of apt_sample in the window */
	/* result and counters */
	enum p11p_health_result failed;
	uint64_t samples;
	uint64_t rct_failures;
	uint64_t apt_failures;
};

/* The cutoffs for an assumed min-entropy of h_bits per byte (1..8); 0 when out of range. */
unsigned p11p_health_rct_cutoff(unsigned h_bits);
unsigned p11p_health_apt_cutoff(unsigned h_bits);

/* Initialises h for h_bits (1..8; anything else means P11P_HEALTH_DEFAULT_H). */
void p11p_health_init(struct p11p_health *h, unsigned h_bits);

/*
 * Runs both tests over buf. Returns false when a test fails now or had
 * failed before (latched); h->failed says which.
 */
bool p11p_health_feed(struct p11p_health *h, const unsigned char *buf, size_t len);

/* Clears the latched failure and the test state (counters are kept). */
void p11p_health_reset(struct p11p_health *h);

const char *p11p_health_result_name(enum p11p_health_result r);

#endif
