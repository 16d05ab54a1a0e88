/*
 * The binary COPY reader (lib/index/pgcopy.c) the PostgreSQL store loads its
 * records with: a well-formed stream read whole and cut at every byte, and
 * malformed ones refused without a crash: truncated anywhere, a wrong
 * signature, OIDs or unknown critical flags, a header extension too long,
 * wrong field counts, bad lengths, an integer of the wrong size, data after
 * the trailer; a callback that stops; allocation failure of the buffer a cut
 * tuple waits in.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "index/pgcopy.h"

static const enum p11p_sql_type types3[3] = {P11P_SQL_INT, P11P_SQL_TEXT, P11P_SQL_BLOB};

/* A stream under construction. */
struct buf {
	unsigned char b[4096];
	size_t n;
};

static void put(struct buf *s, const void *p, size_t n)
{
	ck_assert_uint_le(s->n + n, sizeof(s->b));
	memcpy(s->b + s->n, p, n);
	s->n += n;
}

static void put16(struct buf *s, int v)
{
	unsigned char b[2] = {(unsigned char)((unsigned)v >> 8), (unsigned char)v};
	put(s, b, 2);
}

static void put32(struct buf *s, int64_t v)
{
	uint32_t u = (uint32_t)v;
	unsigned char b[4] = {(unsigned char)(u >> 24), (unsigned char)(u >> 16),
	                      (unsigned char)(u >> 8), (unsigned char)u};
	put(s, b, 4);
}

static void put64(struct buf *s, int64_t v)
{
	put32(s, (int64_t)((uint64_t)v >> 32));
	put32(s, v);
}

static void header(struct buf *s, uint32_t flags, uint32_t ext)
{
	static const unsigned char sig[11] = {'P',  'G',  'C',  'O',  'P', 'Y',
	                                      '\n', 0xff, '\r', '\n', 0};
	put(s, sig, sizeof(sig));
	put32(s, flags);
	put32(s, ext);
	for (uint32_t i = 0; i < ext; i++)
		put(s, "x", 1);
}

/* One tuple (int, text, blob); text NULL: a NULL field. */
static void tuple(struct buf *s, int64_t i, const char *text, const void *blob, size_t blen)
{
	put16(s, 3);
	put32(s, 8);
	put64(s, i);
	if (text == NULL) {
		put32(s, -1);
	} else {
		put32(s, (int64_t)strlen(text));
		put(s, text, strlen(text));
	}
	put32(s, (int64_t)blen);
	put(s, blob, blen);
}

static void trailer(struct buf *s)
{
	put16(s, -1);
}

/* The good stream: three tuples, one with a NULL, a blob with NULs, negative integers. */
static void good(struct buf *s)
{
	s->n = 0;
	header(s, 0, 0);
	tuple(s, 1, "slot-a", "\x00\x01\x02", 3);
	tuple(s, -2, NULL, "", 0);
	tuple(s, INT64_C(0x7fffffffffffffff), "", "\xff\x00", 2);
	trailer(s);
}

/* What the callback saw: a line per tuple. */
struct seen {
	char text[1024];
	size_t n;
	size_t stop_after; /* 0: never stop */
};

static int row_cb(void *arg, const struct p11p_sql_val *c, size_t n)
{
	struct seen *sn = arg;
	size_t at = strlen(sn->text);

	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(c[0].type, P11P_SQL_INT);
	snprintf(sn->text + at, sizeof(sn->text) - at, "%lld|", (long long)c[0].i);
	at = strlen(sn->text);
	if (c[1].type == P11P_SQL_NULL) {
		snprintf(sn->text + at, sizeof(sn->text) - at, "NULL|");
	} else {
		ck_assert_int_eq(c[1].type, P11P_SQL_TEXT);
		snprintf(sn->text + at, sizeof(sn->text) - at, "%.*s|", (int)c[1].len,
		         (const char *)c[1].p);
	}
	at = strlen(sn->text);
	ck_assert_int_eq(c[2].type, P11P_SQL_BLOB);
	for (size_t i = 0; i < c[2].len; i++) {
		snprintf(sn->text + at, sizeof(sn->text) - at, "%02x",
		         ((const unsigned char *)c[2].p)[i]);
		at = strlen(sn->text);
	}
	snprintf(sn->text + at, sizeof(sn->text) - at, ";");
	sn->n++;
	return sn->stop_after != 0 && sn->n >= sn->stop_after;
}

#define GOOD_TEXT "1|slot-a|000102;-2|NULL|;9223372036854775807||ff00;"

/* Feeds s in pieces of `step` bytes (0: whole); the rc of the first failure or of end. */
static enum p11p_sql_rc read_stream(const struct buf *s, size_t step, struct seen *sn, char *err,
                                    size_t errlen)
{
	struct p11p_pgcopy pc;
	enum p11p_sql_rc rc;

	memset(sn->text, 0, sizeof(sn->text));
	sn->n = 0;
	ck_assert_int_eq(p11p_pgcopy_init(&pc, types3, 3, row_cb, sn), P11P_SQL_OK);
	rc = P11P_SQL_OK;
	for (size_t at = 0; at < s->n && rc == P11P_SQL_OK;) {
		size_t k = step == 0 || s->n - at < step ? s->n - at : step;

		rc = p11p_pgcopy_feed(&pc, s->b + at, k);
		at += k;
	}
	if (rc == P11P_SQL_OK)
		rc = p11p_pgcopy_end(&pc);
	else /* a failed stream keeps failing */
		ck_assert_int_eq(p11p_pgcopy_feed(&pc, "x", 1), rc);
	if (err != NULL)
		snprintf(err, errlen, "%s", pc.err);
	p11p_pgcopy_free(&pc);
	return rc;
}

START_TEST(test_good_whole_and_cut)
{
	struct buf s;
	struct seen sn = {0};

	good(&s);
	ck_assert_int_eq(read_stream(&s, 0, &sn, NULL, 0), P11P_SQL_OK);
	ck_assert_str_eq(sn.text, GOOD_TEXT);
	/* every piece size, down to one byte at a time */
	for (size_t step = 1; step < s.n; step++) {
		ck_assert_int_eq(read_stream(&s, step, &sn, NULL, 0), P11P_SQL_OK);
		ck_assert_str_eq(sn.text, GOOD_TEXT);
	}
	/* a header extension is skipped; bits 17-31 (not critical) are ignored */
	s.n = 0;
	header(&s, UINT32_C(1) << 20, 5);
	tuple(&s, 7, "x", "y", 1);
	trailer(&s);
	for (size_t step = 0; step < s.n; step += 3) {
		ck_assert_int_eq(read_stream(&s, step, &sn, NULL, 0), P11P_SQL_OK);
		ck_assert_str_eq(sn.text, "7|x|79;");
	}
	/* no tuples at all */
	s.n = 0;
	header(&s, 0, 0);
	trailer(&s);
	ck_assert_int_eq(read_stream(&s, 0, &sn, NULL, 0), P11P_SQL_OK);
	ck_assert_uint_eq(sn.n, 0);
}
END_TEST

START_TEST(test_truncated)
{
	struct buf s, cut;
	struct seen sn = {0};
	char err[160];

	good(&s);
	for (size_t len = 0; len < s.n; len++) {
		cut.n = 0;
		put(&cut, s.b, len);
		for (size_t step = 0; step < 3; step++) {
			ck_assert_int_eq(read_stream(&cut, step * 7, &sn, err, sizeof(err)),
			                 P11P_SQL_FAILED);
			ck_assert_msg(strstr(err, "cut short") || strstr(err, "missing") ||
			                  strstr(err, "no trailer"),
			              "len %zu: %s", len, err);
		}
	}
}
END_TEST

/* s with the 32-bit value at off replaced. */
static void patch32(struct buf *s, size_t off, int64_t v)
{
	struct buf t = {.n = 0};

	put32(&t, v);
	memcpy(s->b + off, t.b, 4);
}

START_TEST(test_bad_header)
{
	struct buf s;
	struct seen sn = {0};
	char err[160];

	good(&s);
	s.b[3] = 'X';
	ck_assert_int_eq(read_stream(&s, 0, &sn, err, sizeof(err)), P11P_SQL_FAILED);
	ck_assert_ptr_nonnull(strstr(err, "signature"));
	/* found as soon as the bytes differ, before the header is whole */
	ck_assert_int_eq(read_stream(&s, 1, &sn, err, sizeof(err)), P11P_SQL_FAILED);
	ck_assert_ptr_nonnull(strstr(err, "signature"));

	good(&s);
	patch32(&s, 11, UINT32_C(1) << 16);
	ck_assert_int_eq(read_stream(&s, 0, &sn, err, sizeof(err)), P11P_SQL_FAILED);
	ck_assert_ptr_nonnull(strstr(err, "OIDs"));

	good(&s);
	patch32(&s, 11, 1);
	ck_assert_int_eq(read_stream(&s, 0, &sn, err, sizeof(err)), P11P_SQL_FAILED);
	ck_assert_ptr_nonnull(strstr(err, "critical"));

	good(&s);
	patch32(&s, 15, P11P_PGCOPY_MAX_EXT + 1);
	ck_assert_int_eq(read_stream(&s, 0, &sn, err, sizeof(err)), P11P_SQL_FAILED);
	ck_assert_ptr_nonnull(strstr(err, "extension"));
	good(&s);
	patch32(&s, 15, -1);
	ck_assert_int_eq(read_stream(&s, 0, &sn, err, sizeof(err)), P11P_SQL_FAILED);
	ck_assert_uint_eq(sn.n, 0);
}
END_TEST

START_TEST(test_bad_tuples)
{
	struct buf s;
	struct seen sn = {0};
	char err[160];
	static const int counts[] = {0, 2, 4, 17, -2, 32767, -32768};

	/* a wrong field count, in the first and in a later tuple */
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		for (int later = 0; later < 2; later++) {
			s.n = 0;
			header(&s, 0, 0);
			if (later)
				tuple(&s, 1, "a", "b", 1);
			put16(&s, counts[i]);
			put32(&s, 8);
			put64(&s, 5);
			put32(&s, 1);
			put(&s, "t", 1);
			put32(&s, 1);
			put(&s, "b", 1);
			trailer(&s);
			ck_assert_int_eq(read_stream(&s, 0, &sn, err, sizeof(err)),
			                 P11P_SQL_FAILED);
			ck_assert_msg(strstr(err, "fields"), "%s", err);
			ck_assert_uint_eq(sn.n, (size_t)later);
		}
	}
	/* a length below -1 */
	s.n = 0;
	header(&s, 0, 0);
	put16(&s, 3);
	put32(&s, 8);
	put64(&s, 5);
	put32(&s, -2);
	trailer(&s);
	ck_assert_int_eq(read_stream(&s, 0, &sn, err, sizeof(err)), P11P_SQL_FAILED);
	ck_assert_msg(strstr(err, "field 2: length -2"), "%s", err);
	/* a length past the end of the data: waits, then the end refuses it */
	s.n = 0;
	header(&s, 0, 0);
	put16(&s, 3);
	put32(&s, 8);
	put64(&s, 5);
	put32(&s, 0x7fffffff);
	put(&s, "abc", 3);
	ck_assert_int_eq(read_stream(&s, 0, &sn, err, sizeof(err)), P11P_SQL_FAILED);
	ck_assert_ptr_nonnull(strstr(err, "cut short"));
	/* an integer of 4 bytes, of 0, of 16 */
	static const int lens[] = {4, 0, 16};
	for (size_t i = 0; i < 3; i++) {
		s.n = 0;
		header(&s, 0, 0);
		put16(&s, 3);
		put32(&s, lens[i]);
		for (int k = 0; k < lens[i]; k++)
			put(&s, "\x01", 1);
		put32(&s, -1);
		put32(&s, 0);
		trailer(&s);
		ck_assert_int_eq(read_stream(&s, 0, &sn, err, sizeof(err)), P11P_SQL_FAILED);
		ck_assert_msg(strstr(err, "for a BIGINT"), "%s", err);
		ck_assert_uint_eq(sn.n, 0);
	}
	/* anything after the trailer, in the same piece or the next */
	for (size_t step = 0; step < 2; step++) {
		good(&s);
		size_t whole = s.n;
		put(&s, "\x00", 1);
		ck_assert_int_eq(read_stream(&s, step ? whole : 0, &sn, err, sizeof(err)),
		                 P11P_SQL_FAILED);
		ck_assert_ptr_nonnull(strstr(err, "after the trailer"));
	}
}
END_TEST

START_TEST(test_stop_and_args)
{
	struct buf s;
	struct seen sn = {.stop_after = 1};
	struct p11p_pgcopy pc;
	static const enum p11p_sql_type bad_type[1] = {P11P_SQL_NULL};

	/* the callback stops: nothing more reaches it, the rest is still checked */
	good(&s);
	ck_assert_int_eq(read_stream(&s, 0, &sn, NULL, 0), P11P_SQL_OK);
	ck_assert_uint_eq(sn.n, 1);
	ck_assert_str_eq(sn.text, "1|slot-a|000102;");
	s.n -= 2; /* no trailer */
	ck_assert_int_eq(read_stream(&s, 0, &sn, NULL, 0), P11P_SQL_FAILED);

	ck_assert_int_eq(p11p_pgcopy_init(&pc, types3, 0, row_cb, &sn), P11P_SQL_FAILED);
	ck_assert_int_eq(p11p_pgcopy_init(&pc, types3, P11P_PGCOPY_MAX_COLS + 1, row_cb, &sn),
	                 P11P_SQL_FAILED);
	ck_assert_int_eq(p11p_pgcopy_init(&pc, NULL, 3, row_cb, &sn), P11P_SQL_FAILED);
	ck_assert_int_eq(p11p_pgcopy_init(&pc, types3, 3, NULL, &sn), P11P_SQL_FAILED);
	ck_assert_int_eq(p11p_pgcopy_init(&pc, bad_type, 1, row_cb, &sn), P11P_SQL_FAILED);
	ck_assert_int_eq(p11p_pgcopy_feed(&pc, "x", 1), P11P_SQL_FAILED);
	ck_assert_int_eq(p11p_pgcopy_end(&pc), P11P_SQL_FAILED);
	p11p_pgcopy_free(&pc);
	ck_assert_int_eq(p11p_pgcopy_feed(NULL, "x", 1), P11P_SQL_FAILED);
	ck_assert_int_eq(p11p_pgcopy_end(NULL), P11P_SQL_FAILED);
	p11p_pgcopy_free(NULL);
}
END_TEST

START_TEST(test_nomem)
{
	struct buf s;
	struct seen sn = {0};
	struct p11p_pgcopy pc;

	/* a tuple cut between pieces needs the buffer: its allocation fails */
	good(&s);
	ck_assert_int_eq(p11p_pgcopy_init(&pc, types3, 3, row_cb, &sn), P11P_SQL_OK);
	p11p_mem_fail_after(0);
	ck_assert_int_eq(p11p_pgcopy_feed(&pc, s.b, 25), P11P_SQL_NOMEM);
	p11p_mem_fail_reset();
	ck_assert_int_eq(p11p_pgcopy_feed(&pc, s.b + 25, s.n - 25), P11P_SQL_NOMEM);
	ck_assert_int_eq(p11p_pgcopy_end(&pc), P11P_SQL_NOMEM);
	p11p_pgcopy_free(&pc);
	/* whole tuples need none */
	ck_assert_int_eq(p11p_pgcopy_init(&pc, types3, 3, row_cb, &sn), P11P_SQL_OK);
	p11p_mem_fail_after(0);
	ck_assert_int_eq(p11p_pgcopy_feed(&pc, s.b, s.n), P11P_SQL_OK);
	ck_assert_int_eq(p11p_pgcopy_end(&pc), P11P_SQL_OK);
	p11p_mem_fail_reset();
	p11p_pgcopy_free(&pc);
	ck_assert_uint_eq(sn.n, 3);
}
END_TEST

static Suite *pgcopy_suite(void)
{
	Suite *s = suite_create("pgcopy");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_good_whole_and_cut);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_bad_header);
	tcase_add_test(tc, test_bad_tuples);
	tcase_add_test(tc, test_stop_and_args);
	tcase_add_test(tc, test_nomem);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pgcopy_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
