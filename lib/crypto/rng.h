/*
 * Entropy mixing: the proxy's random number generator (issue 5; Akeyless
 * HSM_USE_RAND, Vault entropy augmentation).
 *
 * Output comes from an OpenSSL CTR-DRBG (AES-256, with derivation function)
 * in the proxy's private library context. The proxy seeds and reseeds it
 * itself: seed = HMAC-SHA-512 keyed by a fixed domain string over
 *     "p11proxy rng seed v1" || counter || pid || flags
 *     || len(hsm) || hsm bytes || len(os) || os bytes
 * and the 64-byte result is handed to EVP_RAND_reseed() as its entropy
 * input. Why this is sound if either source is good:
 *  - HMAC with a fixed, public key is the HKDF-Extract construction (RFC 5869,
 *    Krawczyk 2010): its output is pseudorandom as long as its input holds
 *    enough min-entropy, wherever in the input that entropy sits. With 64 HSM
 *    bytes at the assumed 4 bits/byte (256 bits) or 32 getrandom() bytes (256
 *    bits), either source alone suffices.
 *  - The HSM bytes are requested *before* the OS bytes are read, so a
 *    malicious or broken HSM cannot make its output depend on the OS bytes
 *    (the "other source is independent" condition of the argument).
 *  - A reseed only adds to the DRBG state (CTR-DRBG reseed is Update(K, V)
 *    with the new seed), so a bad reseed never removes entropy already there.
 *  - Health tests (crypto/health.h) run on the raw HSM stream before it is
 *    used; a stuck or biased HSM is detected and handled by on_hsm_failure.
 *
 * Sources:
 *  - os:  getrandom() only; the HSM callback is never called.
 *  - hsm: the seed is extracted from HSM bytes only. OpenSSL's instantiate
 *         step draws its own seed from the OS when the DRBG is created (the
 *         EVP_RAND API has no way to switch that off without a test RNG as
 *         parent); that can only add entropy. Every reseed afterwards is
 *         HSM bytes only. On HSM failure with on_hsm_failure = os_only, the
 *         seed comes from the OS instead.
 *  - mix: both, as above.
 *
 * Reseeds: before the first output, after reseed_bytes of output, after
 * reseed_seconds (CLOCK_BOOTTIME), and in a forked child before its first
 * output (pid change), so a child never repeats its parent's stream.
 * OpenSSL's own reseed counters are switched off: the policy is ours.
 * The first HSM draw is P11P_HEALTH_STARTUP_SAMPLES bytes (90B start-up test);
 * later draws are P11P_RNG_HSM_SEED_BYTES.
 *
 * HSM failure: the callback returned an error, or a health test failed (a
 * health failure is latched until p11p_rng_reset_health(): the source is
 * considered broken; a callback error is retried at the next reseed).
 *  - fail:    p11p_rng_generate() returns CKR_DEVICE_ERROR.
 *  - os_only: the seed comes from the OS alone; a warning is logged once per
 *             instance; p11p_rng_status() reports degraded = true.
 *
 * Threads: every call is thread-safe. The HSM callback and getrandom() are
 * called without the lock held (gather first, then lock and reseed), so the
 * callback may take its own locks and may block. The rng must not be freed
 * while another thread uses it, and must be freed before the private
 * OpenSSL context (p11p_ossl_ctx_free()).
 *
 * Fork: the child may use the rng (it reseeds first). A fork while another
 * thread holds the rng's lock leaves the lock held in the child, as for any
 * mutex; the proxy rebuilds its state in the child at C_Initialize anyway.
 */
#ifndef P11P_RNG_H
#define P11P_RNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pkcs11.h"
#include "crypto/health.h"

#define P11P_RNG_DEFAULT_RESEED_BYTES   (1024 * 1024)
#define P11P_RNG_DEFAULT_RESEED_SECONDS 300
#define P11P_RNG_MAX_RESEED_BYTES       ((uint64_t)1 << 40)
#define P11P_RNG_MAX_RESEED_SECONDS     (366u * 24 * 3600)
/* HSM bytes per reseed: 256 bits at the assumed H = 4 bits/byte. */
#define P11P_RNG_HSM_SEED_BYTES 64
/* getrandom() bytes per reseed (full entropy: 256 bits + margin). */
#define P11P_RNG_OS_SEED_BYTES 48

enum p11p_rng_source {
	P11P_RNG_SOURCE_OS = 0,
	P11P_RNG_SOURCE_HSM,
	P11P_RNG_SOURCE_MIX,
};

enum p11p_rng_on_failure {
	P11P_RNG_ON_FAILURE_FAIL = 0,
	P11P_RNG_ON_FAILURE_OS_ONLY,
};

struct p11p_rng_config {
	enum p11p_rng_source source;
	enum p11p_rng_on_failure on_hsm_failure;
	uint64_t reseed_bytes;     /* 0: P11P_RNG_DEFAULT_RESEED_BYTES */
	unsigned reseed_seconds;   /* 0: P11P_RNG_DEFAULT_RESEED_SECONDS */
	unsigned hsm_entropy_bits; /* assumed min-entropy per HSM byte, 1..8; 0: 4 */
};

/*
 * Fills buf with len random bytes from the HSM (C_GenerateRandom in
 * production). Called without any rng lock held; len <= 4096.
 */
typedef CK_RV (*p11p_rng_hsm_fn)(void *ctx, unsigned char *buf, size_t len);

struct p11p_rng_status {
	enum p11p_rng_source source;
	enum p11p_rng_on_failure on_hsm_failure;
	bool seeded;
	/* The last reseed did without the HSM because of on_hsm_failure = os_only. */
	bool degraded;
	/* Latched health-test result of the HSM stream (P11P_HEALTH_OK when fine). */
	enum p11p_health_result health;
	CK_RV last_hsm_rv; /* CKR_OK, or the last error the callback returned */
	uint64_t output_bytes;
	uint64_t reseeds;
	uint64_t hsm_bytes; /* raw HSM bytes drawn */
	uint64_t os_bytes;
	uint64_t hsm_errors; /* callback errors */
	uint64_t rct_failures;
	uint64_t apt_failures;
	uint64_t forks;            /* pid changes seen */
	uint64_t failed_generates; /* generate calls refused (CKR_DEVICE_ERROR) */
};

struct p11p_rng;

/*
 * New generator. cfg is copied. hsm may be NULL only when cfg->source is os.
 * Does not call the HSM: the first seed is drawn by the first generate.
 * CKR_ARGUMENTS_BAD for a bad config, CKR_HOST_MEMORY, CKR_GENERAL_ERROR
 * when OpenSSL cannot set up the DRBG.
 */
CK_RV p11p_rng_new(const struct p11p_rng_config *cfg, p11p_rng_hsm_fn hsm, void *hsm_ctx,
                   struct p11p_rng **out);

/*
 * len random bytes into buf (C_GenerateRandom). CKR_DEVICE_ERROR when the
 * HSM failed under on_hsm_failure = fail, or the OS source failed; buf is
 * then wiped. len 0 is fine (buf may be NULL).
 */
CK_RV p11p_rng_generate(struct p11p_rng *rng, unsigned char *buf, size_t len);

/*
 * C_SeedRandom: data becomes DRBG additional input for the next output. It
 * never replaces entropy and is never counted as entropy.
 */
CK_RV p11p_rng_add_input(struct p11p_rng *rng, const unsigned char *data, size_t len);

/* A consistent snapshot of the state and counters. */
CK_RV p11p_rng_status(struct p11p_rng *rng, struct p11p_rng_status *st);

/* Clears a latched health-test failure: the HSM is tried again at the next reseed. */
void p11p_rng_reset_health(struct p11p_rng *rng);

/* Forces a reseed before the next output. */
void p11p_rng_request_reseed(struct p11p_rng *rng);

/* Wipes and frees; NULL is fine. */
void p11p_rng_free(struct p11p_rng *rng);

const char *p11p_rng_source_name(enum p11p_rng_source s);

/*
 * Tests only, never called by the library: while on, rngs created afterwards
 * instantiate their DRBG from a fixed seed (OpenSSL's TEST-RAND as parent)
 * and read a fixed byte stream instead of getrandom(), so their output is a
 * function of the HSM bytes alone: a test can check that the bytes it feeds
 * really determine the output. Not thread-safe with p11p_rng_new().
 */
void p11p_rng_test_set_deterministic(bool on);

#endif
