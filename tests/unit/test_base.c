/*
 * Base layer: the handle map (against a plain reference array), the
 * allocation countdown, secrets, attribute helpers and constant names.
 * Every test resets the countdown in its teardown: with CK_FORK=no (ASan,
 * valgrind) the tests share one process.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/attrs.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/names.h"
#include "base/secret.h"
#include "base/text.h"

#include <stdio.h>
#include <sys/resource.h>

static void setup(void)
{
	p11p_mem_fail_reset();
}

static void teardown(void)
{
	p11p_mem_fail_reset();
}

/* xorshift64*, fixed seed: the random tests are the same on every run. */
static uint64_t rng_state = 0x853c49e6748fea9bULL;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

/*
 * For hot loops: Check's ck_assert records every passing check (a write to its
 * log), which makes a million checks take a minute under valgrind.
 */
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			ck_abort_msg("%s:%d: failed: %s", __FILE__, __LINE__, #cond);              \
	} while (0)

/* ---- map ------------------------------------------------------------------------------------ */

/* Distinct, non-NULL values that say which key they belong to. */
static char value_pool[4096];

#define VAL(i) ((void *)&value_pool[(i)])

/* The map's own hash (map.c), to pick keys that collide; see test_map_collisions. */
static size_t map_hash(uint64_t a, uint64_t b)
{
	uint64_t x = a * 0x9e3779b97f4a7c15ULL ^ b;

	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return (size_t)x;
}

/* Every key of the reference holds what the map holds, and the counts agree. */
static void map_matches(const struct p11p_map *m, void *const *ref, size_t n_keys,
                        uint64_t (*key_a)(size_t), uint64_t (*key_b)(size_t))
{
	size_t live = 0;

	for (size_t k = 0; k < n_keys; k++) {
		CHECK(p11p_map_get(m, key_a(k), key_b(k)) == ref[k]);
		if (ref[k] != NULL)
			live++;
	}
	CHECK(m->count == live);
	CHECK(m->cap == 0 || (m->cap & (m->cap - 1)) == 0);
	CHECK(m->count * 2 <= m->cap || m->cap == 0);
}

START_TEST(test_map_empty)
{
	struct p11p_map m = {0};

	ck_assert_ptr_null(p11p_map_get(&m, 0, 0));
	ck_assert_ptr_null(p11p_map_remove(&m, 0, 0));
	p11p_map_clear(&m);
	ck_assert_ptr_null(m.slots);
	ck_assert_uint_eq(m.cap, 0);
	ck_assert_uint_eq(m.count, 0);
}
END_TEST

START_TEST(test_map_put_get_remove)
{
	struct p11p_map m = {0};

	ck_assert_int_eq(p11p_map_put(&m, 1, 2, VAL(1)), 0);
	ck_assert_int_eq(p11p_map_put(&m, 2, 1, VAL(2)), 0);
	ck_assert_int_eq(p11p_map_put(&m, 0, 0, VAL(3)), 0);
	ck_assert_int_eq(p11p_map_put(&m, UINT64_MAX, UINT64_MAX, VAL(4)), 0);
	ck_assert_uint_eq(m.count, 4);
	/* Both words are part of the key. */
	ck_assert_ptr_eq(p11p_map_get(&m, 1, 2), VAL(1));
	ck_assert_ptr_eq(p11p_map_get(&m, 2, 1), VAL(2));
	ck_assert_ptr_eq(p11p_map_get(&m, 0, 0), VAL(3));
	ck_assert_ptr_eq(p11p_map_get(&m, UINT64_MAX, UINT64_MAX), VAL(4));
	ck_assert_ptr_null(p11p_map_get(&m, 1, 1));
	ck_assert_ptr_null(p11p_map_get(&m, 2, 2));

	/* Replacing keeps the count. */
	ck_assert_int_eq(p11p_map_put(&m, 1, 2, VAL(5)), 0);
	ck_assert_uint_eq(m.count, 4);
	ck_assert_ptr_eq(p11p_map_get(&m, 1, 2), VAL(5));

	ck_assert_ptr_eq(p11p_map_remove(&m, 1, 2), VAL(5));
	ck_assert_ptr_null(p11p_map_remove(&m, 1, 2));
	ck_assert_ptr_null(p11p_map_get(&m, 1, 2));
	ck_assert_ptr_eq(p11p_map_get(&m, 2, 1), VAL(2));
	ck_assert_uint_eq(m.count, 3);

	/* Clear empties it; the map is usable again afterwards. */
	p11p_map_clear(&m);
	ck_assert_ptr_null(m.slots);
	ck_assert_uint_eq(m.cap, 0);
	ck_assert_uint_eq(m.count, 0);
	ck_assert_ptr_null(p11p_map_get(&m, 2, 1));
	ck_assert_int_eq(p11p_map_put(&m, 2, 1, VAL(6)), 0);
	ck_assert_ptr_eq(p11p_map_get(&m, 2, 1), VAL(6));
	p11p_map_clear(&m);
}
END_TEST

static uint64_t seq_a(size_t k)
{
	return k % 3;
}

static uint64_t seq_b(size_t k)
{
	return 0x1000 + k; /* sequential, like proxy handles */
}

START_TEST(test_map_growth)
{
	enum { N = 20000 };
	struct p11p_map m = {0};
	static void *ref[N];
	size_t last_cap = 0, grew = 0;

	for (size_t k = 0; k < N; k++) {
		CHECK(p11p_map_put(&m, seq_a(k), seq_b(k), VAL(k % sizeof(value_pool))) == 0);
		ref[k] = VAL(k % sizeof(value_pool));
		if (m.cap != last_cap) {
			ck_assert_uint_gt(m.cap, last_cap);
			last_cap = m.cap;
			grew++;
		}
	}
	ck_assert_uint_ge(grew, 8); /* 64 .. 65536 */
	map_matches(&m, ref, N, seq_a, seq_b);
	/* Remove every other one, then put them back. */
	for (size_t k = 0; k < N; k += 2) {
		CHECK(p11p_map_remove(&m, seq_a(k), seq_b(k)) == ref[k]);
		ref[k] = NULL;
	}
	map_matches(&m, ref, N, seq_a, seq_b);
	for (size_t k = 0; k < N; k += 2) {
		CHECK(p11p_map_put(&m, seq_a(k), seq_b(k), VAL(1)) == 0);
		ref[k] = VAL(1);
	}
	map_matches(&m, ref, N, seq_a, seq_b);
	p11p_map_clear(&m);
}
END_TEST

/* A small key space: with many removals, probe runs form, merge and wrap. */
#define RND_KEYS 600

static uint64_t rnd_a(size_t k)
{
	return k & 1 ? 7 : 0;
}

static uint64_t rnd_b(size_t k)
{
	return k >> 1;
}

START_TEST(test_map_random_ops)
{
	static void *ref[RND_KEYS];
	struct p11p_map m = {0};

	memset(ref, 0, sizeof(ref));
	for (unsigned long op = 0; op < 300000; op++) {
		size_t k = (size_t)(rnd() % RND_KEYS);
		uint64_t r = rnd() % 100;

		/* Phases: mostly puts, then mostly removes, so the table fills and drains. */
		if ((op / 20000) % 2 == 0 ? r < 70 : r < 25) {
			void *v = VAL(rnd() % sizeof(value_pool));

			if (r % 2 == 0) {
				CHECK(p11p_map_put(&m, rnd_a(k), rnd_b(k), v) == 0);
			} else {
				void *old = VAL(0);

				/* exchange: a put that returns what it replaced */
				p11p_map_prefetch(&m, rnd_a(k), rnd_b(k));
				CHECK(p11p_map_exchange(&m, rnd_a(k), rnd_b(k), v, &old) == 0);
				CHECK(old == ref[k]);
			}
			ref[k] = v;
		} else if (r < 90) {
			CHECK(p11p_map_remove(&m, rnd_a(k), rnd_b(k)) == ref[k]);
			ref[k] = NULL;
		} else {
			CHECK(p11p_map_get(&m, rnd_a(k), rnd_b(k)) == ref[k]);
		}
		if (op % 997 == 0)
			map_matches(&m, ref, RND_KEYS, rnd_a, rnd_b);
	}
	map_matches(&m, ref, RND_KEYS, rnd_a, rnd_b);
	p11p_map_clear(&m);
}
END_TEST

/* Keys chosen by index: key k is (COLL_A, coll_keys[k]). */
#define COLL_A 42
#define COLL_N 28
static uint64_t coll_keys[COLL_N];

static uint64_t coll_a(size_t k)
{
	(void)k;
	return COLL_A;
}

static uint64_t coll_b(size_t k)
{
	return coll_keys[k];
}

/*
 * Backward-shift deletion at its edges: in a 64-slot table, keys whose home is
 * one of the last slots or the first, so probe runs wrap around the end. Keys
 * are picked with a copy of map.c's hash; should the hash change, the test
 * still checks correctness, only with less targeted keys.
 */
START_TEST(test_map_collisions)
{
	static void *ref[COLL_N];
	struct p11p_map m = {0};
	size_t n = 0;

	for (uint64_t b = 0; n < COLL_N; b++) {
		size_t home = map_hash(COLL_A, b) & 63;

		if (home >= 60 || home <= 1)
			coll_keys[n++] = b;
	}
	/* Every order of removal in turn, from a full table (28 keys: no growth). */
	for (unsigned round = 0; round < 200; round++) {
		for (size_t k = 0; k < COLL_N; k++) {
			CHECK(p11p_map_put(&m, COLL_A, coll_keys[k], VAL(k + round)) == 0);
			ref[k] = VAL(k + round);
		}
		ck_assert_uint_eq(m.cap, 64);
		map_matches(&m, ref, COLL_N, coll_a, coll_b);
		while (m.count > 0) {
			size_t k = (size_t)(rnd() % COLL_N);

			CHECK(p11p_map_remove(&m, COLL_A, coll_keys[k]) == ref[k]);
			ref[k] = NULL;
			map_matches(&m, ref, COLL_N, coll_a, coll_b);
		}
	}
	p11p_map_clear(&m);
}
END_TEST

static void each_mark(void *value, void *arg)
{
	unsigned char *seen = arg;
	size_t i = (size_t)((char *)value - value_pool);

	ck_assert_uint_lt(i, sizeof(value_pool));
	seen[i]++;
}

START_TEST(test_map_each)
{
	static unsigned char seen[sizeof(value_pool)];
	struct p11p_map m = {0};

	memset(seen, 0, sizeof(seen));
	p11p_map_each(&m, each_mark, seen); /* empty: no call */
	for (size_t i = 0; i < 1000; i++)
		ck_assert_int_eq(p11p_map_put(&m, i, i * 3, VAL(i)), 0);
	for (size_t i = 0; i < 1000; i += 3)
		ck_assert_ptr_eq(p11p_map_remove(&m, i, i * 3), VAL(i));
	p11p_map_each(&m, each_mark, seen);
	for (size_t i = 0; i < sizeof(seen); i++)
		ck_assert_uint_eq(seen[i], (i < 1000 && i % 3 != 0) ? 1 : 0);
	p11p_map_clear(&m);
}
END_TEST

START_TEST(test_map_alloc_failure)
{
	struct p11p_map m = {0};
	size_t k;

	/* The first put allocates the table. */
	p11p_mem_fail_after(0);
	ck_assert_int_eq(p11p_map_put(&m, 1, 1, VAL(1)), -1);
	p11p_mem_fail_reset();
	ck_assert_uint_eq(m.count, 0);
	ck_assert_ptr_null(p11p_map_get(&m, 1, 1));

	/* A failed growth leaves every entry in place and the map usable. */
	for (k = 0; m.count + 1 <= m.cap / 2 || m.cap == 0; k++)
		ck_assert_int_eq(p11p_map_put(&m, 5, k, VAL(k)), 0);
	p11p_mem_fail_after(0);
	ck_assert_int_eq(p11p_map_put(&m, 5, k, VAL(k)), -1);
	p11p_mem_fail_reset();
	ck_assert_uint_eq(m.count, k);
	ck_assert_uint_eq(m.cap, 64);
	for (size_t i = 0; i < k; i++)
		ck_assert_ptr_eq(p11p_map_get(&m, 5, i), VAL(i));
	ck_assert_ptr_null(p11p_map_get(&m, 5, k));
	ck_assert_int_eq(p11p_map_put(&m, 5, k, VAL(k)), 0);
	ck_assert_ptr_eq(p11p_map_get(&m, 5, k), VAL(k));
	p11p_map_clear(&m);
}
END_TEST

START_TEST(test_map_exchange)
{
	struct p11p_map m = {0};
	void *old = VAL(9);
	size_t k;

	/* Into an empty map: allocates; a failure leaves it empty and *old NULL. */
	p11p_map_prefetch(&m, 1, 1); /* no table yet: nothing to touch */
	p11p_mem_fail_after(0);
	ck_assert_int_eq(p11p_map_exchange(&m, 1, 1, VAL(1), &old), -1);
	p11p_mem_fail_reset();
	ck_assert_ptr_null(old);
	ck_assert_uint_eq(m.count, 0);
	ck_assert_int_eq(p11p_map_exchange(&m, 1, 1, VAL(1), &old), 0);
	ck_assert_ptr_null(old);
	ck_assert_uint_eq(m.count, 1);
	/* Replacing: the old value back, the count kept. */
	ck_assert_int_eq(p11p_map_exchange(&m, 1, 1, VAL(2), &old), 0);
	ck_assert_ptr_eq(old, VAL(1));
	ck_assert_uint_eq(m.count, 1);
	ck_assert_ptr_eq(p11p_map_get(&m, 1, 1), VAL(2));
	/* Both words are the key. */
	ck_assert_int_eq(p11p_map_exchange(&m, 1, 2, VAL(3), &old), 0);
	ck_assert_ptr_null(old);
	ck_assert_ptr_eq(p11p_map_get(&m, 1, 1), VAL(2));
	/* A failed growth: every entry in place, nothing stored. */
	for (k = 0; m.count + 1 <= m.cap / 2; k++)
		ck_assert_int_eq(p11p_map_put(&m, 7, k, VAL(k)), 0);
	p11p_mem_fail_after(0);
	ck_assert_int_eq(p11p_map_exchange(&m, 7, k, VAL(k), &old), -1);
	p11p_mem_fail_reset();
	ck_assert_ptr_null(old);
	ck_assert_ptr_null(p11p_map_get(&m, 7, k));
	ck_assert_ptr_eq(p11p_map_get(&m, 1, 1), VAL(2));
	/* After p11p_map_reserve it cannot fail. */
	ck_assert_int_eq(p11p_map_reserve(&m, 1), 0);
	p11p_mem_fail_after(0);
	ck_assert_int_eq(p11p_map_exchange(&m, 7, k, VAL(k), &old), 0);
	p11p_mem_fail_reset();
	ck_assert_ptr_eq(p11p_map_get(&m, 7, k), VAL(k));
	p11p_map_clear(&m);
}
END_TEST

/* ---- mem ------------------------------------------------------------------------------------ */

START_TEST(test_mem_countdown)
{
	for (long n = 0; n < 12; n++) {
		void *ptrs[16];

		p11p_mem_fail_after(n);
		ck_assert_uint_eq(p11p_mem_failures(), 0);
		for (long i = 0; i < n; i++) {
			ptrs[i] = p11p_malloc((size_t)i + 1);
			ck_assert_msg(ptrs[i] != NULL, "allocation %ld of %ld failed", i + 1, n);
		}
		/* The (n+1)th and every later one fail, through every entry point. */
		ck_assert_ptr_null(p11p_malloc(8));
		ck_assert_ptr_null(p11p_calloc(1, 8));
		ck_assert_ptr_null(p11p_strdup("x"));
		ck_assert_ptr_null(p11p_strndup("xyz", 2));
		ck_assert_ptr_null(p11p_reallocarray(NULL, 2, 8));
		ck_assert_uint_eq(p11p_mem_failures(), 5);
		p11p_mem_fail_reset();
		/* Reset keeps the count of refusals but stops refusing. */
		ck_assert_uint_eq(p11p_mem_failures(), 5);
		for (long i = 0; i < n; i++)
			p11p_free(ptrs[i]);
		ptrs[0] = p11p_malloc(8);
		ck_assert_ptr_nonnull(ptrs[0]);
		p11p_free(ptrs[0]);
	}
}
END_TEST

START_TEST(test_mem_countdown_realloc)
{
	char *p = p11p_malloc(4), *q;

	ck_assert_ptr_nonnull(p);
	memcpy(p, "abc", 4);
	p11p_mem_fail_after(1);
	q = p11p_realloc(p, 64); /* the one allowed */
	ck_assert_ptr_nonnull(q);
	p = q;
	ck_assert_ptr_null(p11p_realloc(p, 128)); /* refused: p is untouched and still ours */
	ck_assert_str_eq(p, "abc");
	ck_assert_ptr_null(p11p_reallocarray(p, 2, 64));
	ck_assert_str_eq(p, "abc");
	ck_assert_uint_eq(p11p_mem_failures(), 2);
	p11p_mem_fail_reset();
	p11p_free(p);
}
END_TEST

START_TEST(test_mem_disabled)
{
	void *p;

	/* Negative: no countdown, however many allocations. */
	p11p_mem_fail_after(-1);
	for (int i = 0; i < 1000; i++) {
		p = p11p_malloc(1);
		ck_assert_ptr_nonnull(p);
		p11p_free(p);
	}
	ck_assert_uint_eq(p11p_mem_failures(), 0);
	/* A new countdown clears the count. */
	p11p_mem_fail_after(0);
	ck_assert_ptr_null(p11p_malloc(1));
	ck_assert_uint_eq(p11p_mem_failures(), 1);
	p11p_mem_fail_after(5);
	ck_assert_uint_eq(p11p_mem_failures(), 0);
	p11p_mem_fail_reset();
}
END_TEST

START_TEST(test_mem_basics)
{
	unsigned char *c;
	char *s;
	void *p, *z1, *z2;

	/* Zero-size requests give distinct, freeable pointers, not NULL. */
	z1 = p11p_malloc(0);
	z2 = p11p_malloc(0);
	ck_assert_ptr_nonnull(z1);
	ck_assert_ptr_nonnull(z2);
	ck_assert_ptr_ne(z1, z2);
	p11p_free(z1);
	p11p_free(z2);
	p = p11p_calloc(0, 0);
	ck_assert_ptr_nonnull(p);
	p11p_free(p);
	p = p11p_reallocarray(NULL, 0, 8);
	ck_assert_ptr_nonnull(p);
	p11p_free(p);

	c = p11p_calloc(100, 3);
	ck_assert_ptr_nonnull(c);
	for (size_t i = 0; i < 300; i++)
		ck_assert_uint_eq(c[i], 0);
	p11p_free(c);
	/*
	 * Small blocks come from malloc (mem.c): a block just freed dirty, which
	 * malloc hands back for the same size, comes back zeroed; a large one
	 * and an overflowing count go to calloc.
	 */
	for (size_t n = 64; n <= 4096; n *= 4) {
		c = p11p_malloc(n);
		ck_assert_ptr_nonnull(c);
		memset(c, 0xff, n);
		p11p_free(c);
		c = p11p_calloc(1, n);
		ck_assert_ptr_nonnull(c);
		for (size_t i = 0; i < n; i++)
			ck_assert_uint_eq(c[i], 0);
		p11p_free(c);
	}
	ck_assert_ptr_null(p11p_calloc(SIZE_MAX / 2, 3));

	s = p11p_strdup("hello");
	ck_assert_str_eq(s, "hello");
	p11p_free(s);
	s = p11p_strndup("hello", 3);
	ck_assert_str_eq(s, "hel");
	p11p_free(s);
	s = p11p_strndup("hi", 10);
	ck_assert_str_eq(s, "hi");
	p11p_free(s);
	s = p11p_strndup("hi", 0);
	ck_assert_str_eq(s, "");
	p11p_free(s);
	p11p_free(NULL);
}
END_TEST

START_TEST(test_mem_reallocarray_overflow)
{
	char *p = p11p_reallocarray(NULL, 4, 4);

	ck_assert_ptr_nonnull(p);
	memcpy(p, "0123456789abcde", 16);
	ck_assert_ptr_null(p11p_reallocarray(p, SIZE_MAX, 2));
	ck_assert_ptr_null(p11p_reallocarray(p, 2, SIZE_MAX));
	ck_assert_ptr_null(p11p_reallocarray(p, SIZE_MAX / 16 + 1, 16));
	ck_assert_ptr_null(p11p_reallocarray(NULL, (SIZE_MAX >> 1) + 1, 2));
	/* p is untouched after each failure. */
	ck_assert_str_eq(p, "0123456789abcde");
	p = p11p_reallocarray(p, 8, 4);
	ck_assert_ptr_nonnull(p);
	ck_assert_str_eq(p, "0123456789abcde");
	p11p_free(p);
}
END_TEST

/* ---- secret --------------------------------------------------------------------------------- */

/* VmLck of this process, in kB (-1 when /proc says nothing). */
static long vm_locked_kb(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (fp == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
			break;
	fclose(fp);
	return kb;
}

START_TEST(test_secret_locked)
{
	struct rlimit rl;
	long before = vm_locked_kb(), during;
	struct p11p_secret *s = p11p_secret_new("key material", 12);

	ck_assert_ptr_nonnull(s);
	during = vm_locked_kb();
	/* Locked whenever the memlock limit leaves room for a page. */
	if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur >= 65536) {
		ck_assert(p11p_secret_locked(s));
#ifndef __SANITIZE_ADDRESS__ /* ASan's mlock() does nothing (and says it worked) */
		ck_assert_int_ge(during - before, 4);
#else
		(void)during;
#endif
	}
	p11p_secret_free(s);
	if (before >= 0)
		ck_assert_int_eq(vm_locked_kb(), before); /* unlocked again */
	/* The countdown reaches secrets too. */
	p11p_mem_fail_after(0);
	ck_assert_ptr_null(p11p_secret_new("x", 1));
	p11p_mem_fail_reset();
}
END_TEST

START_TEST(test_secret_basics)
{
	char pin[] = "12345678";
	struct p11p_secret *s = p11p_secret_new(pin, 4), *d;

	ck_assert_ptr_nonnull(s);
	memset(pin, 'x', sizeof(pin) - 1); /* a copy, not a reference */
	ck_assert_uint_eq(p11p_secret_len(s), 4);
	ck_assert_mem_eq(p11p_secret_data(s), "1234", 4);
	ck_assert_uint_eq(p11p_secret_data(s)[4], '\0'); /* NUL-terminated for C APIs */
	ck_assert(p11p_secret_equals(s, "1234", 4));
	ck_assert(!p11p_secret_equals(s, "1235", 4));
	ck_assert(!p11p_secret_equals(s, "123", 3));
	ck_assert(!p11p_secret_equals(s, "12345", 5));
	ck_assert(!p11p_secret_equals(s, NULL, 4));
	ck_assert(!p11p_secret_equals(s, NULL, 0));
	ck_assert(!p11p_secret_equals(s, "", 0));

	d = p11p_secret_dup(s);
	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_ne(d, s);
	ck_assert_ptr_ne(p11p_secret_data(d), p11p_secret_data(s));
	ck_assert_uint_eq(p11p_secret_len(d), 4);
	ck_assert(p11p_secret_equals(d, "1234", 4));
	p11p_secret_free(s);
	ck_assert(p11p_secret_equals(d, "1234", 4)); /* independent of the original */
	p11p_secret_free(d);

	/* Binary content: NUL bytes are data, not terminators. */
	s = p11p_secret_new("a\0b", 3);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(p11p_secret_len(s), 3);
	ck_assert(p11p_secret_equals(s, "a\0b", 3));
	ck_assert(!p11p_secret_equals(s, "a\0c", 3));
	p11p_secret_free(s);
}
END_TEST

START_TEST(test_secret_empty_and_null)
{
	struct p11p_secret *s = p11p_secret_new(NULL, 0), *d;

	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(p11p_secret_len(s), 0);
	ck_assert_ptr_nonnull(p11p_secret_data(s));
	ck_assert_uint_eq(p11p_secret_data(s)[0], '\0');
	ck_assert(p11p_secret_equals(s, NULL, 0));
	ck_assert(p11p_secret_equals(s, "", 0));
	ck_assert(!p11p_secret_equals(s, "x", 1));
	d = p11p_secret_dup(s);
	ck_assert_ptr_nonnull(d);
	ck_assert_uint_eq(p11p_secret_len(d), 0);
	p11p_secret_free(d);
	p11p_secret_free(s);

	s = p11p_secret_new("abc", 0);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(p11p_secret_len(s), 0);
	p11p_secret_free(s);

	/* No data but a length: refused. */
	ck_assert_ptr_null(p11p_secret_new(NULL, 1));
	/* NULL secret: harmless everywhere. */
	ck_assert_ptr_null(p11p_secret_dup(NULL));
	ck_assert_ptr_null(p11p_secret_data(NULL));
	ck_assert_uint_eq(p11p_secret_len(NULL), 0);
	ck_assert(!p11p_secret_equals(NULL, "", 0));
	ck_assert(!p11p_secret_equals(NULL, NULL, 0));
	p11p_secret_free(NULL);
}
END_TEST

START_TEST(test_secret_alloc_failure)
{
	struct p11p_secret *s = p11p_secret_new("pin", 3);

	ck_assert_ptr_nonnull(s);
	p11p_mem_fail_after(0);
	ck_assert_ptr_null(p11p_secret_new("pin", 3));
	ck_assert_ptr_null(p11p_secret_new(NULL, 0));
	ck_assert_ptr_null(p11p_secret_dup(s));
	p11p_mem_fail_reset();
	p11p_secret_free(s);
}
END_TEST

START_TEST(test_wipe)
{
	unsigned char buf[32];

	memset(buf, 0xa5, sizeof(buf));
	p11p_wipe(buf, 16);
	for (size_t i = 0; i < 16; i++)
		ck_assert_uint_ne(buf[i], 0xa5);
	for (size_t i = 16; i < sizeof(buf); i++)
		ck_assert_uint_eq(buf[i], 0xa5);
	p11p_wipe(buf, 0);
	p11p_wipe(NULL, 16);
}
END_TEST

/* ---- attrs ---------------------------------------------------------------------------------- */

START_TEST(test_attr_find)
{
	CK_BBOOL t = CK_TRUE;
	char a[] = "a", second[] = "second";
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_TOKEN, &t, sizeof(t)},
	    {CKA_LABEL, a, 1},
	    {CKA_LABEL, second, 6},
	    {CKA_ID, NULL, 0},
	};

	ck_assert_ptr_eq(p11p_attr_find(tmpl, 4, CKA_TOKEN), &tmpl[0]);
	ck_assert_ptr_eq(p11p_attr_find(tmpl, 4, CKA_LABEL), &tmpl[1]); /* the first */
	ck_assert_ptr_eq(p11p_attr_find(tmpl, 4, CKA_ID), &tmpl[3]);
	ck_assert_ptr_null(p11p_attr_find(tmpl, 4, CKA_SIGN));
	/* The count bounds the search. */
	ck_assert_ptr_null(p11p_attr_find(tmpl, 3, CKA_ID));
	ck_assert_ptr_null(p11p_attr_find(tmpl, 0, CKA_TOKEN));
	ck_assert_ptr_null(p11p_attr_find(NULL, 0, CKA_TOKEN));
	ck_assert_ptr_null(p11p_attr_find(NULL, 5, CKA_TOKEN));
}
END_TEST

START_TEST(test_attr_bool)
{
	CK_BBOOL t = CK_TRUE, f = CK_FALSE, two = 2;
	/* One byte of storage behind each pointer: a longer read is an ASan error. */
	unsigned char *one = malloc(1);
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_TOKEN, &t, sizeof(t)},
	    {CKA_PRIVATE, &f, sizeof(f)},
	    {CKA_SIGN, &two, sizeof(two)},
	    {CKA_VERIFY, NULL, sizeof(CK_BBOOL)},
	    {CKA_ENCRYPT, one, 0},
	    {CKA_DECRYPT, one, 2},
	    {CKA_WRAP, one, sizeof(CK_ULONG)},
	    {CKA_UNWRAP, one, CK_UNAVAILABLE_INFORMATION},
	};
	CK_ULONG n = sizeof(tmpl) / sizeof(tmpl[0]);

	ck_assert_ptr_nonnull(one);
	*one = CK_TRUE;
	ck_assert(p11p_attr_bool(tmpl, n, CKA_TOKEN, false));
	ck_assert(!p11p_attr_bool(tmpl, n, CKA_PRIVATE, true));
	ck_assert(p11p_attr_bool(tmpl, n, CKA_SIGN, false)); /* any non-zero is true */
	/* Absent or malformed: the default, both ways. */
	for (int dflt = 0; dflt <= 1; dflt++) {
		ck_assert_int_eq(p11p_attr_bool(tmpl, n, CKA_DERIVE, dflt), dflt);
		ck_assert_int_eq(p11p_attr_bool(tmpl, n, CKA_VERIFY, dflt), dflt);
		ck_assert_int_eq(p11p_attr_bool(tmpl, n, CKA_ENCRYPT, dflt), dflt);
		ck_assert_int_eq(p11p_attr_bool(tmpl, n, CKA_DECRYPT, dflt), dflt);
		ck_assert_int_eq(p11p_attr_bool(tmpl, n, CKA_WRAP, dflt), dflt);
		ck_assert_int_eq(p11p_attr_bool(tmpl, n, CKA_UNWRAP, dflt), dflt);
		ck_assert_int_eq(p11p_attr_bool(NULL, 0, CKA_TOKEN, dflt), dflt);
		ck_assert_int_eq(p11p_attr_bool(tmpl, 0, CKA_TOKEN, dflt), dflt);
	}
	free(one);
}
END_TEST

/* ---- names ---------------------------------------------------------------------------------- */

START_TEST(test_names_known)
{
	ck_assert_str_eq(p11p_ckr_name(CKR_OK), "CKR_OK");
	ck_assert_str_eq(p11p_ckr_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
	ck_assert_str_eq(p11p_ckr_name(CKR_HOST_MEMORY), "CKR_HOST_MEMORY");
	ck_assert_str_eq(p11p_rv_str(CKR_OK), "CKR_OK");
	ck_assert_str_eq(p11p_rv_str(CKR_DEVICE_ERROR), "CKR_DEVICE_ERROR");
	ck_assert_str_eq(p11p_ckm_name(CKM_RSA_PKCS), "CKM_RSA_PKCS");
	ck_assert_str_eq(p11p_cka_name(CKA_LABEL), "CKA_LABEL");
	ck_assert_str_eq(p11p_cko_name(CKO_PRIVATE_KEY), "CKO_PRIVATE_KEY");
	ck_assert_str_eq(p11p_ckk_name(CKK_RSA), "CKK_RSA");
}
END_TEST

START_TEST(test_names_unknown)
{
	static const CK_RV unknown[] = {
	    CKR_VENDOR_DEFINED, CKR_VENDOR_DEFINED + 1, 0x12345, 0x4, CK_UNAVAILABLE_INFORMATION,
	};
	CK_RV v = 77;

	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		ck_assert_ptr_null(p11p_ckr_name(unknown[i]));
		ck_assert_ptr_nonnull(p11p_rv_str(unknown[i]));
		ck_assert_uint_gt(strlen(p11p_rv_str(unknown[i])), 0);
	}
	ck_assert_ptr_null(p11p_ckm_name(CKM_VENDOR_DEFINED + 5));
	ck_assert_ptr_null(p11p_cka_name(CKA_VENDOR_DEFINED + 5));
	ck_assert_uint_eq(p11p_ckr_value("CKR_NO_SUCH_THING", &v), CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(p11p_ckr_value("", &v), CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(p11p_ckr_value("ckr_ok", &v), CKR_ARGUMENTS_BAD); /* case matters */
	ck_assert_uint_eq(p11p_ckr_value("CKR_OK ", &v), CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(p11p_ckm_value("CKM_NOPE", &v), CKR_ARGUMENTS_BAD);
}
END_TEST

START_TEST(test_names_round_trip)
{
	size_t known = 0;

	/* Every standard return value lies below 0x400. */
	for (CK_RV rv = 0; rv < 0x400; rv++) {
		const char *name = p11p_ckr_name(rv);
		CK_RV back = (CK_RV)-1;

		ck_assert_ptr_nonnull(p11p_rv_str(rv));
		if (name == NULL)
			continue;
		known++;
		ck_assert_msg(strncmp(name, "CKR_", 4) == 0, "%s", name);
		ck_assert_str_eq(p11p_rv_str(rv), name);
		ck_assert_uint_eq(p11p_ckr_value(name, &back), CKR_OK);
		ck_assert_msg(back == rv, "%s: 0x%lx != 0x%lx", name, back, rv);
	}
	ck_assert_uint_ge(known, 80);

	for (CK_MECHANISM_TYPE m = 0; m < 0x2000; m++) {
		const char *name = p11p_ckm_name(m);
		CK_MECHANISM_TYPE back = (CK_MECHANISM_TYPE)-1;

		if (name == NULL)
			continue;
		ck_assert_uint_eq(p11p_ckm_value(name, &back), CKR_OK);
		/* Aliases share a value; the name is the first of them, so it maps back. */
		ck_assert_msg(back == m, "%s: 0x%lx != 0x%lx", name, back, m);
	}
}
END_TEST

/* One case per module, so that CK_RUN_CASE=map (for instance) runs just that. */
static TCase *new_case(Suite *s, const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return tc;
}

/* base/text.c: strict base64 (canonical only), exact hex, the growing buffer. */
START_TEST(test_text_codecs)
{
	unsigned char out[16], raw[3] = {0xde, 0xad, 0xbe};
	char enc[8];
	size_t n = 0;
	struct p11p_strbuf b = {0};

	ck_assert(p11p_b64_decode("3q2+", 4, out, sizeof(out), &n) && n == 3);
	ck_assert(memcmp(out, raw, 3) == 0);
	ck_assert(p11p_b64_decode("3q0=", 4, out, sizeof(out), &n) && n == 2);
	ck_assert(
	    !p11p_b64_decode("3q1=", 4, out, sizeof(out), &n)); /* stray bits: not canonical */
	ck_assert(!p11p_b64_decode("3q=+", 4, out, sizeof(out), &n)); /* '=' inside */
	ck_assert(!p11p_b64_decode("3q2", 3, out, sizeof(out), &n));  /* not a multiple of 4 */
	ck_assert(!p11p_b64_decode("3q 2", 4, out, sizeof(out), &n)); /* whitespace */
	ck_assert(!p11p_b64_decode("3q2+3q2+", 8, out, 3, &n));       /* more than max */
	p11p_b64_encode(raw, 3, enc);
	ck_assert_str_eq(enc, "3q2+");
	ck_assert(p11p_hex_decode("dEaDbe", 6, out, 3) && memcmp(out, raw, 3) == 0);
	ck_assert(!p11p_hex_decode("deadb", 5, out, 3));
	ck_assert(!p11p_hex_decode("deadbg", 6, out, 3));
	ck_assert_int_eq(p11p_hexval('f'), 15);
	ck_assert_int_eq(p11p_hexval('x'), -1);
	for (int i = 0; i < 1000; i++)
		p11p_strbuf_printf(&b, "%04d,", i);
	ck_assert(!b.oom && b.len == 5000 && strncmp(b.p + 4995, "0999,", 5) == 0);
	p11p_free(b.p);
}
END_TEST

static Suite *base_suite(void)
{
	Suite *s = suite_create("base");
	TCase *tc;

	tc = new_case(s, "map");
	tcase_add_test(tc, test_map_empty);
	tcase_add_test(tc, test_map_put_get_remove);
	tcase_add_test(tc, test_map_growth);
	tcase_add_test(tc, test_map_random_ops);
	tcase_add_test(tc, test_map_collisions);
	tcase_add_test(tc, test_map_each);
	tcase_add_test(tc, test_map_alloc_failure);
	tcase_add_test(tc, test_map_exchange);
	tc = new_case(s, "mem");
	tcase_add_test(tc, test_mem_countdown);
	tcase_add_test(tc, test_mem_countdown_realloc);
	tcase_add_test(tc, test_mem_disabled);
	tcase_add_test(tc, test_mem_basics);
	tcase_add_test(tc, test_mem_reallocarray_overflow);
	tc = new_case(s, "secret");
	tcase_add_test(tc, test_secret_basics);
	tcase_add_test(tc, test_secret_locked);
	tcase_add_test(tc, test_secret_empty_and_null);
	tcase_add_test(tc, test_secret_alloc_failure);
	tcase_add_test(tc, test_wipe);
	tc = new_case(s, "attrs");
	tcase_add_test(tc, test_attr_find);
	tcase_add_test(tc, test_attr_bool);
	tc = new_case(s, "names");
	tcase_add_test(tc, test_names_known);
	tcase_add_test(tc, test_names_unknown);
	tcase_add_test(tc, test_names_round_trip);
	tcase_add_test(tc, test_text_codecs);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(base_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
