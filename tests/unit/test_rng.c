/*
 * Entropy mixing RNG and the SP 800-90B health tests, with fake HSM sources:
 * good (OS-like), replayed (identical streams), stuck, biased, failing.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/mem.h"
#include "crypto/health.h"
#include "base/ossl.h"
#include "crypto/rng.h"

/* ---- fake HSM sources ---------------------------------------------------------- */

enum fake_mode { FAKE_GOOD, FAKE_REPLAY, FAKE_STUCK, FAKE_BIASED, FAKE_ERROR };

struct fake_hsm {
	pthread_mutex_t lock;
	enum fake_mode mode;
	uint64_t state;
	uint64_t pos;
	unsigned long calls;
	size_t last_len;
	CK_RV error_rv;
	struct p11p_rng *rng; /* when set, the callback checks it can take the rng's lock */
};

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void fake_init(struct fake_hsm *f, enum fake_mode mode, uint64_t seed)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	f->mode = mode;
	if (seed == 0)
		ck_assert_int_eq(getrandom(&seed, sizeof(seed), 0), (ssize_t)sizeof(seed));
	f->state = seed | 1;
	f->error_rv = CKR_DEVICE_REMOVED;
}

static CK_RV fake_hsm(void *ctx, unsigned char *buf, size_t len)
{
	struct fake_hsm *f = ctx;
	CK_RV rv = CKR_OK;

	if (f->rng != NULL) {
		/* Deadlocks (the test times out) if the rng called us with its lock held. */
		struct p11p_rng_status st;

		p11p_rng_status(f->rng, &st);
	}
	pthread_mutex_lock(&f->lock);
	f->calls++;
	f->last_len = len;
	for (size_t i = 0; i < len && f->mode != FAKE_ERROR; i++, f->pos++) {
		switch (f->mode) {
		case FAKE_STUCK:
			buf[i] = 0x42;
			break;
		case FAKE_BIASED:
			/* Every other byte is 0xA5: no long runs, but far too frequent. */
			buf[i] = f->pos % 2 == 0 ? 0xa5 : (unsigned char)xorshift(&f->state);
			break;
		default:
			buf[i] = (unsigned char)(xorshift(&f->state) >> 56);
			break;
		}
	}
	if (f->mode == FAKE_ERROR)
		rv = f->error_rv;
	pthread_mutex_unlock(&f->lock);
	return rv;
}

static struct p11p_rng *make_rng(enum p11p_rng_source src, enum p11p_rng_on_failure pol,
                                 struct fake_hsm *f)
{
	struct p11p_rng_config cfg = {src, pol, 0, 0, 0};
	struct p11p_rng *rng = NULL;

	ck_assert_int_eq(p11p_rng_new(&cfg, fake_hsm, f, &rng), CKR_OK);
	return rng;
}

static struct p11p_rng_status status(struct p11p_rng *rng)
{
	struct p11p_rng_status st;

	ck_assert_int_eq(p11p_rng_status(rng, &st), CKR_OK);
	return st;
}

static bool all_zero(const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

/* ---- health tests ---------------------------------------------------------------- */

START_TEST(test_health_cutoffs)
{
	ck_assert_uint_eq(p11p_health_rct_cutoff(4), 6);
	ck_assert_uint_eq(p11p_health_apt_cutoff(4), 62);
	ck_assert_uint_eq(p11p_health_rct_cutoff(8), 4);
	ck_assert_uint_eq(p11p_health_apt_cutoff(8), 13);
	ck_assert_uint_eq(p11p_health_rct_cutoff(1), 21);
	ck_assert_uint_eq(p11p_health_apt_cutoff(1), 311);
	ck_assert_uint_eq(p11p_health_rct_cutoff(0), 0);
	ck_assert_uint_eq(p11p_health_apt_cutoff(9), 0);
}
END_TEST

START_TEST(test_health_rct)
{
	struct p11p_health h;
	unsigned char b[16];

	p11p_health_init(&h, 4);
	memset(b, 7, sizeof(b));
	ck_assert(p11p_health_feed(&h, b, 5));  /* a run of 5 is fine */
	ck_assert(!p11p_health_feed(&h, b, 1)); /* the 6th fails */
	ck_assert_int_eq(h.failed, P11P_HEALTH_RCT_FAILED);
	ck_assert_uint_eq(h.rct_failures, 1);
	b[0] = 8;
	ck_assert(!p11p_health_feed(&h, b, 1)); /* latched */
	p11p_health_reset(&h);
	ck_assert(p11p_health_feed(&h, b, 1));
	/* Runs split across calls count as one run. */
	for (int i = 0; i < 5; i++)
		ck_assert(p11p_health_feed(&h, b + 1, 1));
	ck_assert(!p11p_health_feed(&h, b + 1, 1));
}
END_TEST

START_TEST(test_health_apt)
{
	struct p11p_health h;
	unsigned char b[P11P_HEALTH_APT_WINDOW];
	uint64_t s = 99;

	p11p_health_init(&h, 4);
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = i % 2 == 0 ? 0xa5 : (unsigned char)(xorshift(&s) >> 56);
	ck_assert(!p11p_health_feed(&h, b, sizeof(b)));
	ck_assert_int_eq(h.failed, P11P_HEALTH_APT_FAILED);
	ck_assert_uint_eq(h.rct_failures, 0);
	/* It fails at the 62nd occurrence: sample 2 * 61 = 122. */
	ck_assert_uint_eq(h.samples, 123);
}
END_TEST

START_TEST(test_health_good_data)
{
	static unsigned char b[256 * 1024];
	struct p11p_health h;

	for (size_t got = 0; got < sizeof(b);)
		got += (size_t)getrandom(b + got, sizeof(b) - got, 0);
	p11p_health_init(&h, 0); /* default H */
	ck_assert_uint_eq(h.h_bits, P11P_HEALTH_DEFAULT_H);
	ck_assert(p11p_health_feed(&h, b, sizeof(b)));
	ck_assert_uint_eq(h.samples, sizeof(b));
}
END_TEST

/* ---- sources and policies ------------------------------------------------------------ */

START_TEST(test_source_os)
{
	struct fake_hsm f;
	struct p11p_rng *rng;
	struct p11p_rng_status st;
	unsigned char a[64], b[64];

	fake_init(&f, FAKE_GOOD, 0);
	rng = make_rng(P11P_RNG_SOURCE_OS, P11P_RNG_ON_FAILURE_FAIL, &f);
	ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_OK);
	ck_assert_int_eq(p11p_rng_generate(rng, b, sizeof(b)), CKR_OK);
	ck_assert(memcmp(a, b, sizeof(a)) != 0);
	ck_assert_int_eq(p11p_rng_generate(rng, NULL, 0), CKR_OK);
	ck_assert_uint_eq(f.calls, 0); /* never the HSM */
	st = status(rng);
	ck_assert(st.seeded);
	ck_assert_uint_eq(st.hsm_bytes, 0);
	ck_assert_uint_eq(st.os_bytes, P11P_RNG_OS_SEED_BYTES);
	ck_assert_uint_eq(st.output_bytes, 128);
	ck_assert_uint_eq(st.reseeds, 1);
	p11p_rng_free(rng);

	/* source os needs no callback at all. */
	{
		struct p11p_rng_config cfg = {P11P_RNG_SOURCE_OS, P11P_RNG_ON_FAILURE_FAIL, 0, 0,
		                              0};

		ck_assert_int_eq(p11p_rng_new(&cfg, NULL, NULL, &rng), CKR_OK);
		ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_OK);
		p11p_rng_free(rng);
	}
}
END_TEST

START_TEST(test_source_mix_and_hsm)
{
	struct fake_hsm f;
	struct p11p_rng *rng;
	struct p11p_rng_status st;
	unsigned char a[64];

	fake_init(&f, FAKE_GOOD, 0);
	rng = make_rng(P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_FAIL, &f);
	ck_assert_uint_eq(f.calls, 0); /* new() does not call the HSM */
	ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_OK);
	ck_assert_uint_eq(f.calls, 1);
	ck_assert_uint_eq(f.last_len, P11P_HEALTH_STARTUP_SAMPLES); /* start-up test */
	p11p_rng_request_reseed(rng);
	ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_OK);
	ck_assert_uint_eq(f.calls, 2);
	ck_assert_uint_eq(f.last_len, P11P_RNG_HSM_SEED_BYTES);
	st = status(rng);
	ck_assert_uint_eq(st.hsm_bytes, P11P_HEALTH_STARTUP_SAMPLES + P11P_RNG_HSM_SEED_BYTES);
	ck_assert_uint_eq(st.os_bytes, 2 * P11P_RNG_OS_SEED_BYTES);
	ck_assert(!st.degraded);
	ck_assert_int_eq(st.health, P11P_HEALTH_OK);
	p11p_rng_free(rng);

	/* hsm: no OS bytes in any reseed. */
	fake_init(&f, FAKE_GOOD, 0);
	rng = make_rng(P11P_RNG_SOURCE_HSM, P11P_RNG_ON_FAILURE_FAIL, &f);
	ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_OK);
	p11p_rng_request_reseed(rng);
	ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_OK);
	st = status(rng);
	ck_assert_uint_eq(st.os_bytes, 0);
	ck_assert_uint_eq(st.reseeds, 2);
	p11p_rng_free(rng);
}
END_TEST

START_TEST(test_stuck_fail_closed)
{
	struct fake_hsm f;
	struct p11p_rng *rng;
	struct p11p_rng_status st;
	unsigned char a[64];

	for (int src = P11P_RNG_SOURCE_HSM; src <= P11P_RNG_SOURCE_MIX; src++) {
		fake_init(&f, FAKE_STUCK, 1);
		rng = make_rng(src, P11P_RNG_ON_FAILURE_FAIL, &f);
		memset(a, 0x55, sizeof(a));
		ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_DEVICE_ERROR);
		ck_assert(all_zero(a, sizeof(a))); /* nothing half-made is returned */
		st = status(rng);
		ck_assert_int_eq(st.health, P11P_HEALTH_RCT_FAILED);
		ck_assert_uint_eq(st.rct_failures, 1);
		ck_assert_uint_eq(st.failed_generates, 1);
		ck_assert(!st.seeded);
		/* Latched: refused again without asking the broken HSM. */
		ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_DEVICE_ERROR);
		ck_assert_uint_eq(f.calls, 1);
		/* Once it works again and the failure is cleared, output resumes. */
		f.mode = FAKE_GOOD;
		p11p_rng_reset_health(rng);
		ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_OK);
		ck_assert_int_eq(status(rng).health, P11P_HEALTH_OK);
		p11p_rng_free(rng);
	}
}
END_TEST

START_TEST(test_biased_apt)
{
	struct fake_hsm f;
	struct p11p_rng *rng;
	struct p11p_rng_status st;
	unsigned char a[16];

	fake_init(&f, FAKE_BIASED, 0);
	rng = make_rng(P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_FAIL, &f);
	ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_DEVICE_ERROR);
	st = status(rng);
	ck_assert_int_eq(st.health, P11P_HEALTH_APT_FAILED);
	ck_assert_uint_eq(st.apt_failures, 1);
	ck_assert_uint_eq(st.rct_failures, 0);
	p11p_rng_free(rng);
}
END_TEST

START_TEST(test_stuck_os_only)
{
	struct fake_hsm f1, f2;
	struct p11p_rng *r1, *r2;
	struct p11p_rng_status st;
	unsigned char a[64], b[64], c[64];

	fake_init(&f1, FAKE_STUCK, 1);
	fake_init(&f2, FAKE_STUCK, 1);
	r1 = make_rng(P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_OS_ONLY, &f1);
	r2 = make_rng(P11P_RNG_SOURCE_HSM, P11P_RNG_ON_FAILURE_OS_ONLY, &f2);
	ck_assert_int_eq(p11p_rng_generate(r1, a, sizeof(a)), CKR_OK);
	ck_assert_int_eq(p11p_rng_generate(r1, b, sizeof(b)), CKR_OK);
	ck_assert_int_eq(p11p_rng_generate(r2, c, sizeof(c)), CKR_OK);
	ck_assert(memcmp(a, b, sizeof(a)) != 0);
	ck_assert(memcmp(a, c, sizeof(a)) != 0);
	st = status(r1);
	ck_assert(st.degraded);
	ck_assert_int_eq(st.health, P11P_HEALTH_RCT_FAILED);
	ck_assert_uint_eq(st.failed_generates, 0);
	ck_assert(status(r2).degraded);
	ck_assert_uint_eq(status(r2).os_bytes, P11P_RNG_OS_SEED_BYTES);
	/* Later reseeds do not call the failed source again. */
	p11p_rng_request_reseed(r1);
	ck_assert_int_eq(p11p_rng_generate(r1, a, sizeof(a)), CKR_OK);
	ck_assert_uint_eq(f1.calls, 1);
	p11p_rng_free(r1);
	p11p_rng_free(r2);
}
END_TEST

START_TEST(test_hsm_errors)
{
	struct fake_hsm f;
	struct p11p_rng *rng;
	struct p11p_rng_status st;
	unsigned char a[32];

	fake_init(&f, FAKE_ERROR, 0);
	rng = make_rng(P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_FAIL, &f);
	ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_DEVICE_ERROR);
	st = status(rng);
	ck_assert_uint_eq(st.hsm_errors, 1);
	ck_assert_int_eq(st.last_hsm_rv, CKR_DEVICE_REMOVED);
	ck_assert_int_eq(st.health, P11P_HEALTH_OK); /* an error is not a health failure */
	/* Not latched: the next call asks again and succeeds when the HSM is back. */
	f.mode = FAKE_GOOD;
	ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_OK);
	ck_assert_uint_eq(f.calls, 2);
	ck_assert_int_eq(status(rng).last_hsm_rv, CKR_OK);
	/* A failure at a later reseed refuses output under "fail"... */
	f.mode = FAKE_ERROR;
	p11p_rng_request_reseed(rng);
	ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_DEVICE_ERROR);
	p11p_rng_free(rng);

	/* ...and degrades (with a warning) under os_only, recovering afterwards. */
	fake_init(&f, FAKE_ERROR, 0);
	rng = make_rng(P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_OS_ONLY, &f);
	ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_OK);
	ck_assert(status(rng).degraded);
	f.mode = FAKE_GOOD;
	p11p_rng_request_reseed(rng);
	ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_OK);
	ck_assert(!status(rng).degraded);
	p11p_rng_free(rng);
}
END_TEST

/* With mix, identical (replayed) HSM streams still give different outputs. */
START_TEST(test_replayed_hsm_differs)
{
	struct fake_hsm f1, f2;
	struct p11p_rng *r1, *r2;
	unsigned char a[64], b[64];

	fake_init(&f1, FAKE_REPLAY, 1234);
	fake_init(&f2, FAKE_REPLAY, 1234);
	r1 = make_rng(P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_FAIL, &f1);
	r2 = make_rng(P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_FAIL, &f2);
	ck_assert_int_eq(p11p_rng_generate(r1, a, sizeof(a)), CKR_OK);
	ck_assert_int_eq(p11p_rng_generate(r2, b, sizeof(b)), CKR_OK);
	ck_assert(memcmp(a, b, sizeof(a)) != 0);
	ck_assert(!status(r1).degraded);
	p11p_rng_free(r1);
	p11p_rng_free(r2);
}
END_TEST

/*
 * Deterministic test mode: fixed instantiate seed and a fixed "OS" stream,
 * so the output is a function of the HSM bytes: the bytes we feed really are
 * what the DRBG uses.
 */
START_TEST(test_deterministic_uses_our_bytes)
{
	struct fake_hsm f1, f2, f3, f4;
	struct p11p_rng *r1, *r2, *r3, *r4;
	unsigned char a[64], b[64], c[64], d[64];

	p11p_rng_test_set_deterministic(true);
	for (int src = P11P_RNG_SOURCE_OS; src <= P11P_RNG_SOURCE_MIX; src++) {
		fake_init(&f1, FAKE_REPLAY, 77);
		fake_init(&f2, FAKE_REPLAY, 77);
		fake_init(&f3, FAKE_REPLAY, 78);
		fake_init(&f4, FAKE_REPLAY, 77);
		r1 = make_rng(src, P11P_RNG_ON_FAILURE_FAIL, &f1);
		r2 = make_rng(src, P11P_RNG_ON_FAILURE_FAIL, &f2);
		r3 = make_rng(src, P11P_RNG_ON_FAILURE_FAIL, &f3);
		r4 = make_rng(src, P11P_RNG_ON_FAILURE_FAIL, &f4);
		ck_assert_int_eq(p11p_rng_generate(r1, a, sizeof(a)), CKR_OK);
		ck_assert_int_eq(p11p_rng_generate(r2, b, sizeof(b)), CKR_OK);
		ck_assert_int_eq(p11p_rng_generate(r3, c, sizeof(c)), CKR_OK);
		ck_assert_int_eq(p11p_rng_add_input(r4, (const unsigned char *)"seed", 4), CKR_OK);
		ck_assert_int_eq(p11p_rng_generate(r4, d, sizeof(d)), CKR_OK);
		ck_assert_msg(memcmp(a, b, sizeof(a)) == 0, "source %d: same input, other output",
		              src);
		if (src == P11P_RNG_SOURCE_OS)
			ck_assert(memcmp(a, c, sizeof(a)) == 0); /* the HSM is not used */
		else
			ck_assert_msg(memcmp(a, c, sizeof(a)) != 0,
			              "source %d: HSM bytes do not matter", src);
		/* C_SeedRandom input changes the output. */
		ck_assert(memcmp(a, d, sizeof(a)) != 0);
		/* The same again after a reseed. */
		p11p_rng_request_reseed(r1);
		p11p_rng_request_reseed(r2);
		ck_assert_int_eq(p11p_rng_generate(r1, a, sizeof(a)), CKR_OK);
		ck_assert_int_eq(p11p_rng_generate(r2, b, sizeof(b)), CKR_OK);
		ck_assert(memcmp(a, b, sizeof(a)) == 0);
		p11p_rng_free(r1);
		p11p_rng_free(r2);
		p11p_rng_free(r3);
		p11p_rng_free(r4);
	}
	p11p_rng_test_set_deterministic(false);
}
END_TEST

START_TEST(test_reseed_bytes)
{
	struct fake_hsm f;
	struct p11p_rng_config cfg = {P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_FAIL, 1000, 0, 0};
	struct p11p_rng *rng = NULL;
	unsigned char buf[5000];

	fake_init(&f, FAKE_GOOD, 0);
	ck_assert_int_eq(p11p_rng_new(&cfg, fake_hsm, &f, &rng), CKR_OK);
	ck_assert_int_eq(p11p_rng_generate(rng, buf, sizeof(buf)), CKR_OK);
	ck_assert_uint_eq(status(rng).reseeds, 5);
	ck_assert_uint_eq(f.calls, 5);
	ck_assert_int_eq(p11p_rng_generate(rng, buf, 1), CKR_OK);
	ck_assert_uint_eq(status(rng).reseeds, 6);
	ck_assert_int_eq(p11p_rng_generate(rng, buf, 999), CKR_OK);
	ck_assert_uint_eq(status(rng).reseeds, 6);
	p11p_rng_free(rng);
}
END_TEST

START_TEST(test_reseed_seconds)
{
	struct fake_hsm f;
	struct p11p_rng_config cfg = {P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_FAIL, 0, 1, 0};
	struct p11p_rng *rng = NULL;
	struct timespec ts = {1, 100 * 1000 * 1000};
	unsigned char buf[16];

	fake_init(&f, FAKE_GOOD, 0);
	ck_assert_int_eq(p11p_rng_new(&cfg, fake_hsm, &f, &rng), CKR_OK);
	ck_assert_int_eq(p11p_rng_generate(rng, buf, sizeof(buf)), CKR_OK);
	ck_assert_int_eq(p11p_rng_generate(rng, buf, sizeof(buf)), CKR_OK);
	ck_assert_uint_eq(status(rng).reseeds, 1);
	nanosleep(&ts, NULL);
	ck_assert_int_eq(p11p_rng_generate(rng, buf, sizeof(buf)), CKR_OK);
	ck_assert_uint_eq(status(rng).reseeds, 2);
	p11p_rng_free(rng);
}
END_TEST

START_TEST(test_bad_config)
{
	struct p11p_rng_config cfg = {P11P_RNG_SOURCE_HSM, P11P_RNG_ON_FAILURE_FAIL, 0, 0, 0};
	struct p11p_rng *rng = (void *)1;

	ck_assert_int_eq(p11p_rng_new(&cfg, NULL, NULL, &rng), CKR_ARGUMENTS_BAD);
	ck_assert_ptr_null(rng);
	cfg.source = P11P_RNG_SOURCE_MIX;
	ck_assert_int_eq(p11p_rng_new(&cfg, NULL, NULL, &rng), CKR_ARGUMENTS_BAD);
	cfg.source = 7;
	ck_assert_int_eq(p11p_rng_new(&cfg, fake_hsm, NULL, &rng), CKR_ARGUMENTS_BAD);
	cfg.source = P11P_RNG_SOURCE_OS;
	cfg.on_hsm_failure = 9;
	ck_assert_int_eq(p11p_rng_new(&cfg, NULL, NULL, &rng), CKR_ARGUMENTS_BAD);
	cfg.on_hsm_failure = P11P_RNG_ON_FAILURE_OS_ONLY;
	cfg.reseed_bytes = P11P_RNG_MAX_RESEED_BYTES + 1;
	ck_assert_int_eq(p11p_rng_new(&cfg, NULL, NULL, &rng), CKR_ARGUMENTS_BAD);
	cfg.reseed_bytes = 0;
	cfg.hsm_entropy_bits = 9;
	ck_assert_int_eq(p11p_rng_new(&cfg, NULL, NULL, &rng), CKR_ARGUMENTS_BAD);
	cfg.hsm_entropy_bits = 8;
	ck_assert_int_eq(p11p_rng_new(&cfg, NULL, NULL, &rng), CKR_OK);
	p11p_rng_free(rng);
	p11p_rng_free(NULL);
	ck_assert_str_eq(p11p_rng_source_name(P11P_RNG_SOURCE_MIX), "mix");
}
END_TEST

START_TEST(test_add_input)
{
	struct fake_hsm f;
	struct p11p_rng *rng;
	static unsigned char big[100000];
	unsigned char a[64], b[64];

	fake_init(&f, FAKE_GOOD, 0);
	rng = make_rng(P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_FAIL, &f);
	ck_assert_int_eq(p11p_rng_add_input(rng, NULL, 0), CKR_OK);
	ck_assert_int_eq(p11p_rng_add_input(rng, (const unsigned char *)"abc", 3), CKR_OK);
	ck_assert_int_eq(p11p_rng_add_input(rng, big, sizeof(big)), CKR_OK);
	ck_assert_int_eq(p11p_rng_generate(rng, a, sizeof(a)), CKR_OK);
	/* Constant input never makes the output constant. */
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(p11p_rng_add_input(rng, big, 64), CKR_OK);
		ck_assert_int_eq(p11p_rng_generate(rng, b, sizeof(b)), CKR_OK);
		ck_assert(memcmp(a, b, sizeof(a)) != 0);
		memcpy(a, b, sizeof(a));
	}
	ck_assert_uint_eq(status(rng).reseeds, 1); /* additional input is not a reseed */
	p11p_rng_free(rng);
}
END_TEST

/* A forked child's first output is not its parent's next output. */
START_TEST(test_fork)
{
	struct fake_hsm f;
	struct p11p_rng *rng;
	unsigned char parent_next[32], child_first[32], warm[32];
	struct {
		unsigned char out[32];
		uint64_t forks, reseeds;
		CK_RV rv;
	} msg;
	uint64_t reseeds_before;
	int fds[2], wst;
	pid_t pid;

	fake_init(&f, FAKE_GOOD, 0);
	rng = make_rng(P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_FAIL, &f);
	ck_assert_int_eq(p11p_rng_generate(rng, warm, sizeof(warm)), CKR_OK);
	reseeds_before = status(rng).reseeds;
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct p11p_rng_status st;

		memset(&msg, 0, sizeof(msg));
		msg.rv = p11p_rng_generate(rng, msg.out, sizeof(msg.out));
		p11p_rng_status(rng, &st);
		msg.forks = st.forks;
		msg.reseeds = st.reseeds;
		if (write(fds[1], &msg, sizeof(msg)) != (ssize_t)sizeof(msg))
			_exit(2);
		_exit(0);
	}
	close(fds[1]);
	ck_assert_int_eq(p11p_rng_generate(rng, parent_next, sizeof(parent_next)), CKR_OK);
	ck_assert_int_eq(read(fds[0], &msg, sizeof(msg)), (ssize_t)sizeof(msg));
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &wst, 0), pid);
	ck_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
	ck_assert_int_eq(msg.rv, CKR_OK);
	memcpy(child_first, msg.out, sizeof(child_first));
	ck_assert(memcmp(child_first, parent_next, sizeof(parent_next)) != 0);
	ck_assert_uint_eq(msg.forks, 1);
	ck_assert_uint_eq(msg.reseeds, reseeds_before + 1); /* our reseed, before output */
	ck_assert_uint_eq(status(rng).forks, 0);
	ck_assert_uint_eq(status(rng).reseeds, reseeds_before);
	p11p_rng_free(rng);
}
END_TEST

/* 1 MiB of output: monobit and byte-frequency chi-square, generous bounds. */
START_TEST(test_statistics)
{
	static unsigned char buf[1024 * 1024];
	unsigned long counts[256] = {0};
	uint64_t ones = 0;
	double chi = 0, expect = sizeof(buf) / 256.0, bits = sizeof(buf) * 8.0, z;
	struct fake_hsm f;
	struct p11p_rng *rng;

	fake_init(&f, FAKE_GOOD, 0);
	rng = make_rng(P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_FAIL, &f);
	ck_assert_int_eq(p11p_rng_generate(rng, buf, sizeof(buf)), CKR_OK);
	for (size_t i = 0; i < sizeof(buf); i++) {
		counts[buf[i]]++;
		ones += (uint64_t)__builtin_popcount(buf[i]);
	}
	for (int i = 0; i < 256; i++)
		chi += (counts[i] - expect) * (counts[i] - expect) / expect;
	z = fabs((double)ones - bits / 2) / sqrt(bits / 4);
	/* 255 degrees of freedom: mean 255, sd 22.6; 400 is beyond 6 sd. */
	ck_assert_msg(chi < 400 && chi > 130, "chi-square %.1f", chi);
	ck_assert_msg(z < 6, "monobit z = %.2f", z);
	p11p_rng_free(rng);
}
END_TEST

struct thr {
	struct p11p_rng *rng;
	int bad;
	unsigned char last[32];
};

static void *gen_thread(void *p)
{
	struct thr *t = p;
	unsigned char b[32];

	for (int i = 0; i < 400; i++) {
		if (p11p_rng_generate(t->rng, b, sizeof(b)) != CKR_OK ||
		    memcmp(b, t->last, 32) == 0)
			t->bad++;
		memcpy(t->last, b, sizeof(b));
		if (i % 50 == 0) {
			p11p_rng_request_reseed(t->rng);
			p11p_rng_add_input(t->rng, b, 8);
		}
	}
	return NULL;
}

/* Threads, with a callback that takes the rng's lock itself (no deadlock allowed). */
START_TEST(test_threads)
{
	struct fake_hsm f;
	struct p11p_rng *rng;
	pthread_t th[4];
	struct thr t[4];

	fake_init(&f, FAKE_GOOD, 0);
	rng = make_rng(P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_FAIL, &f);
	f.rng = rng;
	for (int i = 0; i < 4; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].rng = rng;
		ck_assert_int_eq(pthread_create(&th[i], NULL, gen_thread, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(t[i].bad, 0);
	}
	ck_assert_uint_eq(status(rng).output_bytes, 4 * 400 * 32);
	ck_assert_uint_ge(f.calls, 2);
	p11p_rng_free(rng);
}
END_TEST

START_TEST(test_alloc_failures)
{
	struct fake_hsm f;
	struct p11p_rng_config cfg = {P11P_RNG_SOURCE_MIX, P11P_RNG_ON_FAILURE_FAIL, 0, 0, 0};
	struct p11p_rng *rng = NULL;
	unsigned char buf[64];
	long n;
	CK_RV rv = CKR_HOST_MEMORY;

	fake_init(&f, FAKE_GOOD, 0);
	for (n = 0; n < 100; n++) {
		p11p_mem_fail_after(n);
		rv = p11p_rng_new(&cfg, fake_hsm, &f, &rng);
		if (rv == CKR_OK) {
			rv = p11p_rng_generate(rng, buf, sizeof(buf));
			if (rv != CKR_OK) {
				ck_assert(all_zero(buf, sizeof(buf)));
				/* The rng stays usable after a failed generate. */
				p11p_mem_fail_reset();
				ck_assert_int_eq(p11p_rng_generate(rng, buf, sizeof(buf)), CKR_OK);
				p11p_rng_free(rng);
				rng = NULL;
			}
		} else {
			ck_assert_ptr_null(rng);
		}
		p11p_mem_fail_reset();
		if (rv == CKR_OK)
			break;
		ck_assert_int_eq(rv, CKR_HOST_MEMORY);
	}
	ck_assert_int_eq(rv, CKR_OK);
	ck_assert_int_ge(n, 2); /* the rng itself and the seed buffer both failed once */
	p11p_rng_free(rng);
}
END_TEST

static Suite *rng_suite(void)
{
	Suite *s = suite_create("rng");
	TCase *tc = tcase_create("health");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_health_cutoffs);
	tcase_add_test(tc, test_health_rct);
	tcase_add_test(tc, test_health_apt);
	tcase_add_test(tc, test_health_good_data);
	suite_add_tcase(s, tc);

	tc = tcase_create("rng");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_source_os);
	tcase_add_test(tc, test_source_mix_and_hsm);
	tcase_add_test(tc, test_stuck_fail_closed);
	tcase_add_test(tc, test_biased_apt);
	tcase_add_test(tc, test_stuck_os_only);
	tcase_add_test(tc, test_hsm_errors);
	tcase_add_test(tc, test_replayed_hsm_differs);
	tcase_add_test(tc, test_deterministic_uses_our_bytes);
	tcase_add_test(tc, test_reseed_bytes);
	tcase_add_test(tc, test_reseed_seconds);
	tcase_add_test(tc, test_bad_config);
	tcase_add_test(tc, test_add_input);
	tcase_add_test(tc, test_fork);
	tcase_add_test(tc, test_statistics);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_alloc_failures);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(rng_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	p11p_ossl_ctx_free();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
