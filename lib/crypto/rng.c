/*
 * Entropy mixing RNG: see rng.h for the construction and its argument.
 *
 * Lock order: rng->lock is a leaf lock. It is never held across the HSM
 * callback or getrandom(); reseed() gathers first, then locks.
 */
#include "crypto/rng.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/secret.h"
#include "base/ossl.h"

/* OSSL_PARAM_construct_utf8_string() takes a non-const pointer. */
static char sha512_name[] = "SHA512";
static char ctr_cipher_name[] = "AES-256-CTR";

#define SEED_LEN            64 /* HMAC-SHA-512 output */
#define ADDIN_LEN           64
#define DRBG_STRENGTH       256
#define DEFAULT_MAX_REQUEST 65536

static const char extractor_key[] = "p11proxy rng extractor v1";
static const char addin_key[] = "p11proxy rng additional input v1";
static const char seed_label[] = "p11proxy rng seed v1";

static atomic_bool test_deterministic;

struct p11p_rng {
	pthread_mutex_t lock;
	struct p11p_rng_config cfg;
	p11p_rng_hsm_fn hsm;
	void *hsm_ctx;
	EVP_RAND_CTX *drbg;
	EVP_RAND_CTX *test_parent; /* deterministic test mode only */
	EVP_MAC *hmac;
	size_t max_request;
	bool deterministic;
	uint64_t test_os_counter;

	/* guarded by lock */
	bool seeded;
	bool force_reseed;
	bool startup_done; /* the HSM start-up test has run */
	bool warned;
	pid_t pid;
	uint64_t since_reseed;
	struct timespec reseed_at;
	bool have_addin;
	unsigned char addin[ADDIN_LEN];
	struct p11p_health health;
	struct p11p_rng_status st;
};

void p11p_rng_test_set_deterministic(bool on)
{
	atomic_store(&test_deterministic, on);
}

const char *p11p_rng_source_name(enum p11p_rng_source s)
{
	switch (s) {
	case P11P_RNG_SOURCE_OS:
		return "os";
	case P11P_RNG_SOURCE_HSM:
		return "hsm";
	case P11P_RNG_SOURCE_MIX:
		return "mix";
	}
	return "unknown";
}

static void now_boot(struct timespec *ts)
{
	if (clock_gettime(CLOCK_BOOTTIME, ts) != 0)
		clock_gettime(CLOCK_MONOTONIC, ts);
}

/* ---- HMAC helper (extractor and additional input) ------------------------ */

struct chunk {
	const void *p;
	size_t len;
};

/* out (64 bytes) = HMAC-SHA-512(key, chunks...). */
static bool hmac512(EVP_MAC *mac, const char *key, const struct chunk *c, size_t n,
                    unsigned char out[SEED_LEN])
{
	OSSL_PARAM params[2];
	EVP_MAC_CTX *ctx;
	size_t outl = 0;
	bool ok = false;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, sha512_name, 0);
	params[1] = OSSL_PARAM_construct_end();
	ctx = EVP_MAC_CTX_new(mac);
	if (ctx == NULL)
		return false;
	if (!EVP_MAC_init(ctx, (const unsigned char *)key, strlen(key), params))
		goto out;
	for (size_t i = 0; i < n; i++)
		if (c[i].len > 0 && !EVP_MAC_update(ctx, c[i].p, c[i].len))
			goto out;
	ok = EVP_MAC_final(ctx, out, &outl, SEED_LEN) && outl == SEED_LEN;
out:
	EVP_MAC_CTX_free(ctx);
	return ok;
}

/* ---- sources ------------------------------------------------------------- */

static bool os_random(struct p11p_rng *rng, unsigned char *buf, size_t len)
{
	size_t got = 0;

	if (rng->deterministic) {
		/* A fixed stream: a test checks the output depends on the HSM bytes only. */
		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)((rng->test_os_counter++ * 131u + 7u) & 0xff);
		return true;
	}
	while (got < len) {
		ssize_t r = getrandom(buf + got, len - got, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

/* ---- creation ------------------------------------------------------------ */

static CK_RV check_config(const struct p11p_rng_config *cfg, p11p_rng_hsm_fn hsm)
{
	if (cfg->source != P11P_RNG_SOURCE_OS && cfg->source != P11P_RNG_SOURCE_HSM &&
	    cfg->source != P11P_RNG_SOURCE_MIX)
		return CKR_ARGUMENTS_BAD;
	if (cfg->on_hsm_failure != P11P_RNG_ON_FAILURE_FAIL &&
	    cfg->on_hsm_failure != P11P_RNG_ON_FAILURE_OS_ONLY)
		return CKR_ARGUMENTS_BAD;
	if (cfg->source != P11P_RNG_SOURCE_OS && hsm == NULL)
		return CKR_ARGUMENTS_BAD;
	if (cfg->reseed_bytes > P11P_RNG_MAX_RESEED_BYTES ||
	    cfg->reseed_seconds > P11P_RNG_MAX_RESEED_SECONDS || cfg->hsm_entropy_bits > 8)
		return CKR_ARGUMENTS_BAD;
	return CKR_OK;
}

/* The TEST-RAND parent of deterministic test mode: a fixed instantiate seed. */
static EVP_RAND_CTX *test_parent_new(OSSL_LIB_CTX *lib)
{
	static unsigned char fixed[4096];
	unsigned strength = DRBG_STRENGTH;
	OSSL_PARAM params[4];
	EVP_RAND_CTX *ctx;
	EVP_RAND *r;

	memset(fixed, 0x5a, sizeof(fixed));
	r = EVP_RAND_fetch(lib, "TEST-RAND", NULL);
	if (r == NULL)
		return NULL;
	ctx = EVP_RAND_CTX_new(r, NULL);
	EVP_RAND_free(r);
	if (ctx == NULL)
		return NULL;
	params[0] = OSSL_PARAM_construct_uint(OSSL_RAND_PARAM_STRENGTH, &strength);
	params[1] =
	    OSSL_PARAM_construct_octet_string(OSSL_RAND_PARAM_TEST_ENTROPY, fixed, sizeof(fixed));
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_RAND_PARAM_TEST_NONCE, fixed, 16);
	params[3] = OSSL_PARAM_construct_end();
	if (!EVP_RAND_instantiate(ctx, DRBG_STRENGTH, 0, NULL, 0, params)) {
		EVP_RAND_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static CK_RV drbg_new(struct p11p_rng *rng)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	unsigned reseed_requests = 0;
	time_t reseed_interval = 0;
	size_t max_request = 0;
	OSSL_PARAM params[4];
	EVP_RAND *r;
	struct {
		char tag[24];
		pid_t pid;
		const void *self;
	} pers;

	if (lib == NULL)
		return CKR_HOST_MEMORY;
	rng->hmac = EVP_MAC_fetch(lib, "HMAC", NULL);
	if (rng->hmac == NULL)
		return CKR_GENERAL_ERROR;
	if (rng->deterministic) {
		rng->test_parent = test_parent_new(lib);
		if (rng->test_parent == NULL)
			return CKR_GENERAL_ERROR;
	}
	r = EVP_RAND_fetch(lib, "CTR-DRBG", NULL);
	if (r == NULL)
		return CKR_GENERAL_ERROR;
	rng->drbg = EVP_RAND_CTX_new(r, rng->test_parent);
	EVP_RAND_free(r);
	if (rng->drbg == NULL)
		return CKR_GENERAL_ERROR;
	/* Reseed policy is ours: switch off the DRBG's own counters. */
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_DRBG_PARAM_CIPHER, ctr_cipher_name, 0);
	params[1] = OSSL_PARAM_construct_uint(OSSL_DRBG_PARAM_RESEED_REQUESTS, &reseed_requests);
	params[2] =
	    OSSL_PARAM_construct_time_t(OSSL_DRBG_PARAM_RESEED_TIME_INTERVAL, &reseed_interval);
	params[3] = OSSL_PARAM_construct_end();
	memset(&pers, 0, sizeof(pers));
	memcpy(pers.tag, "p11proxy rng v1", sizeof("p11proxy rng v1"));
	pers.pid = rng->deterministic ? 0 : getpid();
	pers.self = rng->deterministic ? NULL : (const void *)rng;
	if (!EVP_RAND_instantiate(rng->drbg, DRBG_STRENGTH, 0, (const unsigned char *)&pers,
	                          sizeof(pers), params))
		return CKR_GENERAL_ERROR;
	params[0] = OSSL_PARAM_construct_size_t(OSSL_RAND_PARAM_MAX_REQUEST, &max_request);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_RAND_CTX_get_params(rng->drbg, params) || max_request == 0)
		max_request = DEFAULT_MAX_REQUEST;
	rng->max_request = max_request;
	return CKR_OK;
}

CK_RV p11p_rng_new(const struct p11p_rng_config *cfg, p11p_rng_hsm_fn hsm, void *hsm_ctx,
                   struct p11p_rng **out)
{
	struct p11p_rng *rng;
	CK_RV rv;

	p11p_return_val_if_fail(cfg != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(out != NULL, CKR_ARGUMENTS_BAD);
	*out = NULL;
	rv = check_config(cfg, hsm);
	if (rv != CKR_OK)
		return rv;
	rng = p11p_calloc(1, sizeof(*rng));
	if (rng == NULL)
		return CKR_HOST_MEMORY;
	if (pthread_mutex_init(&rng->lock, NULL) != 0) {
		p11p_free(rng);
		return CKR_HOST_MEMORY;
	}
	rng->cfg = *cfg;
	if (rng->cfg.reseed_bytes == 0)
		rng->cfg.reseed_bytes = P11P_RNG_DEFAULT_RESEED_BYTES;
	if (rng->cfg.reseed_seconds == 0)
		rng->cfg.reseed_seconds = P11P_RNG_DEFAULT_RESEED_SECONDS;
	if (rng->cfg.hsm_entropy_bits == 0)
		rng->cfg.hsm_entropy_bits = P11P_HEALTH_DEFAULT_H;
	rng->hsm = hsm;
	rng->hsm_ctx = hsm_ctx;
	rng->deterministic = atomic_load(&test_deterministic);
	p11p_health_init(&rng->health, rng->cfg.hsm_entropy_bits);
	rng->st.source = cfg->source;
	rng->st.on_hsm_failure = cfg->on_hsm_failure;
	rng->pid = getpid();
	rv = drbg_new(rng);
	if (rv != CKR_OK) {
		p11p_rng_free(rng);
		return rv;
	}
	p11p_debug(P11P_DBG_LIB,
	           "rng: source %s, reseed every %llu bytes / %u s, on HSM failure %s",
	           p11p_rng_source_name(cfg->source), (unsigned long long)rng->cfg.reseed_bytes,
	           rng->cfg.reseed_seconds,
	           cfg->on_hsm_failure == P11P_RNG_ON_FAILURE_FAIL ? "fail" : "os_only");
	*out = rng;
	return CKR_OK;
}

void p11p_rng_free(struct p11p_rng *rng)
{
	if (rng == NULL)
		return;
	EVP_RAND_CTX_free(rng->drbg);
	EVP_RAND_CTX_free(rng->test_parent);
	EVP_MAC_free(rng->hmac);
	pthread_mutex_destroy(&rng->lock);
	p11p_wipe(rng, sizeof(*rng));
	p11p_free(rng);
}

/* ---- reseeding ----------------------------------------------------------- */

/* Called with the lock held. Counts a fork once. */
static bool needs_reseed_locked(struct p11p_rng *rng)
{
	struct timespec now;
	pid_t pid = getpid();

	if (pid != rng->pid) {
		rng->pid = pid;
		rng->st.forks++;
		rng->force_reseed = true;
	}
	if (!rng->seeded || rng->force_reseed || rng->since_reseed >= rng->cfg.reseed_bytes)
		return true;
	now_boot(&now);
	return now.tv_sec < rng->reseed_at.tv_sec ||
	       (uint64_t)(now.tv_sec - rng->reseed_at.tv_sec) >= rng->cfg.reseed_seconds;
}

struct gather {
	unsigned char hsm[P11P_HEALTH_STARTUP_SAMPLES];
	unsigned char os[P11P_RNG_OS_SEED_BYTES];
	size_t hsm_len;
	CK_RV hsm_rv;
	bool hsm_tried;
	bool os_ok;
	int os_errno;
};

/*
 * One reseed: gather (HSM first, then OS) without the lock, then lock, run
 * the health tests, apply the failure policy, extract and reseed.
 */
static CK_RV reseed(struct p11p_rng *rng)
{
	struct gather *g;
	unsigned char seed[SEED_LEN];
	bool use_hsm, hsm_good = false, use_os;
	unsigned char flags;
	uint32_t hl, ol;
	pid_t pid;
	CK_RV rv = CKR_OK;

	g = p11p_calloc(1, sizeof(*g));
	if (g == NULL)
		return CKR_HOST_MEMORY;

	pthread_mutex_lock(&rng->lock);
	use_hsm = rng->cfg.source != P11P_RNG_SOURCE_OS && rng->health.failed == P11P_HEALTH_OK;
	g->hsm_len = rng->startup_done ? P11P_RNG_HSM_SEED_BYTES : P11P_HEALTH_STARTUP_SAMPLES;
	pthread_mutex_unlock(&rng->lock);

	if (use_hsm) {
		g->hsm_tried = true;
		g->hsm_rv = rng->hsm(rng->hsm_ctx, g->hsm, g->hsm_len);
	}
	/* For source hsm the OS bytes are a stand-by, used only under os_only. */
	g->os_ok = os_random(rng, g->os, sizeof(g->os));
	g->os_errno = errno;

	pthread_mutex_lock(&rng->lock);
	if (g->hsm_tried) {
		if (g->hsm_rv != CKR_OK) {
			rng->st.hsm_errors++;
			rng->st.last_hsm_rv = g->hsm_rv;
		} else {
			rng->st.last_hsm_rv = CKR_OK;
			rng->st.hsm_bytes += g->hsm_len;
			hsm_good = p11p_health_feed(&rng->health, g->hsm, g->hsm_len);
			rng->st.rct_failures = rng->health.rct_failures;
			rng->st.apt_failures = rng->health.apt_failures;
			rng->st.health = rng->health.failed;
			if (hsm_good)
				rng->startup_done = true;
			else
				p11p_message("rng: HSM random stream failed its health test (%s)",
				             p11p_health_result_name(rng->health.failed));
		}
	}
	use_os = rng->cfg.source != P11P_RNG_SOURCE_HSM;
	if (rng->cfg.source != P11P_RNG_SOURCE_OS && !hsm_good) {
		if (rng->cfg.on_hsm_failure == P11P_RNG_ON_FAILURE_FAIL) {
			rng->st.failed_generates++;
			rv = CKR_DEVICE_ERROR;
			goto out;
		}
		if (!rng->warned) {
			p11p_message("rng: HSM random source unavailable (%s); continuing from the "
			             "operating system's source only",
			             g->hsm_tried && g->hsm_rv == CKR_OK
			                 ? p11p_health_result_name(rng->health.failed)
			                 : "C_GenerateRandom failed");
			rng->warned = true;
		}
		rng->st.degraded = true;
		use_os = true;
	} else if (hsm_good) {
		rng->st.degraded = false;
	}
	if (use_os && !g->os_ok) {
		p11p_message("rng: getrandom failed: %s", strerror(g->os_errno));
		rng->st.failed_generates++;
		rv = CKR_DEVICE_ERROR;
		goto out;
	}

	flags = (unsigned char)((hsm_good ? 1 : 0) | (use_os ? 2 : 0));
	hl = hsm_good ? (uint32_t)g->hsm_len : 0;
	ol = use_os ? (uint32_t)sizeof(g->os) : 0;
	pid = rng->deterministic ? 0 : getpid();
	{
		uint64_t counter = rng->st.reseeds;
		const struct chunk c[] = {
		    {seed_label, sizeof(seed_label) - 1},
		    {&counter, sizeof(counter)},
		    {&pid, sizeof(pid)},
		    {&flags, 1},
		    {&hl, sizeof(hl)},
		    {g->hsm, hl},
		    {&ol, sizeof(ol)},
		    {g->os, ol},
		};

		if (!hmac512(rng->hmac, extractor_key, c, sizeof(c) / sizeof(c[0]), seed)) {
			rv = CKR_GENERAL_ERROR;
			goto out;
		}
	}
	if (!EVP_RAND_reseed(rng->drbg, 0, seed, sizeof(seed), NULL, 0)) {
		p11p_message("rng: DRBG reseed failed");
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	rng->seeded = true;
	rng->force_reseed = false;
	rng->since_reseed = 0;
	now_boot(&rng->reseed_at);
	rng->st.reseeds++;
	rng->st.seeded = true;
	rng->st.os_bytes += ol;
out:
	pthread_mutex_unlock(&rng->lock);
	p11p_wipe(seed, sizeof(seed));
	p11p_wipe(g, sizeof(*g));
	p11p_free(g);
	return rv;
}

/* ---- API ----------------------------------------------------------------- */

CK_RV p11p_rng_generate(struct p11p_rng *rng, unsigned char *buf, size_t len)
{
	size_t done = 0;
	CK_RV rv = CKR_OK;

	p11p_return_val_if_fail(rng != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(buf != NULL || len == 0, CKR_ARGUMENTS_BAD);
	while (done < len) {
		size_t n;
		bool need;

		pthread_mutex_lock(&rng->lock);
		need = needs_reseed_locked(rng);
		pthread_mutex_unlock(&rng->lock);
		if (need) {
			rv = reseed(rng);
			if (rv != CKR_OK)
				goto out;
		}
		pthread_mutex_lock(&rng->lock);
		if (needs_reseed_locked(rng)) {
			/* Another thread used up the budget, or we forked: reseed again. */
			pthread_mutex_unlock(&rng->lock);
			continue;
		}
		n = len - done;
		if (n > rng->max_request)
			n = rng->max_request;
		if (n > rng->cfg.reseed_bytes - rng->since_reseed)
			n = (size_t)(rng->cfg.reseed_bytes - rng->since_reseed);
		if (!EVP_RAND_generate(rng->drbg, buf + done, n, DRBG_STRENGTH, 0,
		                       rng->have_addin ? rng->addin : NULL,
		                       rng->have_addin ? sizeof(rng->addin) : 0)) {
			pthread_mutex_unlock(&rng->lock);
			p11p_message("rng: DRBG generate failed");
			rv = CKR_GENERAL_ERROR;
			goto out;
		}
		if (rng->have_addin) {
			p11p_wipe(rng->addin, sizeof(rng->addin));
			rng->have_addin = false;
		}
		rng->since_reseed += n;
		rng->st.output_bytes += n;
		pthread_mutex_unlock(&rng->lock);
		done += n;
	}
out:
	if (rv != CKR_OK && len > 0)
		p11p_wipe(buf, len);
	return rv;
}

CK_RV p11p_rng_add_input(struct p11p_rng *rng, const unsigned char *data, size_t len)
{
	unsigned char d[ADDIN_LEN];
	CK_RV rv = CKR_OK;

	p11p_return_val_if_fail(rng != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(data != NULL || len == 0, CKR_ARGUMENTS_BAD);
	pthread_mutex_lock(&rng->lock);
	{
		/* Chains with input not yet consumed, so none of it is lost. */
		const struct chunk c[] = {
		    {rng->addin, rng->have_addin ? sizeof(rng->addin) : 0},
		    {data, len},
		};

		if (!hmac512(rng->hmac, addin_key, c, 2, d)) {
			rv = CKR_GENERAL_ERROR;
			goto out;
		}
	}
	memcpy(rng->addin, d, sizeof(d));
	rng->have_addin = true;
out:
	pthread_mutex_unlock(&rng->lock);
	p11p_wipe(d, sizeof(d));
	return rv;
}

CK_RV p11p_rng_status(struct p11p_rng *rng, struct p11p_rng_status *st)
{
	p11p_return_val_if_fail(rng != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(st != NULL, CKR_ARGUMENTS_BAD);
	pthread_mutex_lock(&rng->lock);
	*st = rng->st;
	st->health = rng->health.failed;
	pthread_mutex_unlock(&rng->lock);
	return CKR_OK;
}

void p11p_rng_reset_health(struct p11p_rng *rng)
{
	if (rng == NULL)
		return;
	pthread_mutex_lock(&rng->lock);
	p11p_health_reset(&rng->health);
	rng->st.health = P11P_HEALTH_OK;
	rng->startup_done = false; /* the source runs its start-up test again */
	rng->force_reseed = true;
	pthread_mutex_unlock(&rng->lock);
}

void p11p_rng_request_reseed(struct p11p_rng *rng)
{
	if (rng == NULL)
		return;
	pthread_mutex_lock(&rng->lock);
	rng->force_reseed = true;
	pthread_mutex_unlock(&rng->lock);
}
