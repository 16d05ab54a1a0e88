/*
 * Fuzz target for the binary COPY reader (p11p_pgcopy_*, lib/index/pgcopy.c):
 * the PostgreSQL store loads its records from that stream, which comes from
 * the server, so it is untrusted input. Built like fuzz_stats.c (libFuzzer
 * with `make fuzz`, the standalone driver in every `make check` build).
 *
 * Input: byte 0 the column count (1 to 8), byte 1 the size of the pieces the
 * stream is fed in (0: whole), byte 2 the columns' types (two bits each:
 * integer, text, blob), then the stream.
 *
 * Oracle, beyond no crash, leak or hang:
 *  - every value handed over has its column's type or is NULL, an integer
 *    came from 8 bytes, text and blobs fit in the input;
 *  - the answer and the values handed over do not depend on how the stream
 *    was cut: fed whole and fed in pieces give the same;
 *  - a refusal comes with a one-line reason; an acceptance saw the trailer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/pgcopy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond, ...)                                                                         \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_pgcopy: %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

struct seen {
	const enum p11p_sql_type *types;
	size_t ncols, size, rows;
	uint64_t digest; /* FNV-1a over every value handed over */
};

static void mix(uint64_t *h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		*h ^= b[i];
		*h *= 0x100000001b3ULL;
	}
}

static int row_cb(void *arg, const struct p11p_sql_val *c, size_t n)
{
	struct seen *s = arg;

	REQUIRE(n == s->ncols, "%zu columns, %zu expected", n, s->ncols);
	for (size_t i = 0; i < n; i++) {
		REQUIRE(c[i].type == P11P_SQL_NULL || c[i].type == s->types[i],
		        "column %zu type %d", i, (int)c[i].type);
		mix(&s->digest, &c[i].type, sizeof(c[i].type));
		if (c[i].type == P11P_SQL_INT) {
			mix(&s->digest, &c[i].i, sizeof(c[i].i));
		} else if (c[i].type != P11P_SQL_NULL) {
			REQUIRE(c[i].len <= s->size && (c[i].len == 0 || c[i].p != NULL),
			        "column %zu: %zu bytes", i, c[i].len);
			mix(&s->digest, &c[i].len, sizeof(c[i].len));
			if (c[i].len > 0)
				mix(&s->digest, c[i].p, c[i].len);
		}
	}
	s->rows++;
	return 0;
}

static enum p11p_sql_rc run(const enum p11p_sql_type *types, size_t ncols, const uint8_t *data,
                            size_t size, size_t piece, struct seen *s, char *err, size_t errlen)
{
	struct p11p_pgcopy pc;
	enum p11p_sql_rc rc;

	memset(s, 0, sizeof(*s));
	s->types = types;
	s->ncols = ncols;
	s->size = size;
	s->digest = 0xcbf29ce484222325ULL;
	REQUIRE(p11p_pgcopy_init(&pc, types, ncols, row_cb, s) == P11P_SQL_OK, "init");
	rc = P11P_SQL_OK;
	for (size_t at = 0; at < size && rc == P11P_SQL_OK;) {
		size_t k = piece == 0 || size - at < piece ? size - at : piece;

		rc = p11p_pgcopy_feed(&pc, data + at, k);
		at += k;
	}
	if (rc == P11P_SQL_OK)
		rc = p11p_pgcopy_end(&pc);
	REQUIRE(rc == P11P_SQL_OK || rc == P11P_SQL_FAILED, "rc %d (%s)", (int)rc, pc.err);
	REQUIRE(rc == P11P_SQL_OK || (pc.err[0] != '\0' && strchr(pc.err, '\n') == NULL),
	        "reason '%s'", pc.err);
	REQUIRE(pc.tuples == s->rows, "%zu tuples, %zu handed over", pc.tuples, s->rows);
	snprintf(err, errlen, "%s", pc.err);
	p11p_pgcopy_free(&pc);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum p11p_sql_type types[8];
	struct seen whole, cut;
	char e1[160], e2[160];
	size_t ncols, piece;

	if (size < 3)
		return 0;
	ncols = (size_t)(data[0] % 8) + 1;
	piece = data[1];
	for (size_t i = 0; i < ncols; i++) {
		unsigned t = (data[2] >> (2 * (i % 4))) & 3;

		types[i] = t == 1 ? P11P_SQL_TEXT : t == 2 ? P11P_SQL_BLOB : P11P_SQL_INT;
	}
	data += 3;
	size -= 3;
	enum p11p_sql_rc a = run(types, ncols, data, size, 0, &whole, e1, sizeof(e1));
	enum p11p_sql_rc b = run(types, ncols, data, size, piece, &cut, e2, sizeof(e2));

	REQUIRE(a == b, "whole %d (%s), in pieces of %zu %d (%s)", (int)a, e1, piece, (int)b, e2);
	REQUIRE(whole.rows == cut.rows && whole.digest == cut.digest,
	        "whole: %zu rows, in pieces of %zu: %zu rows (or other values)", whole.rows, piece,
	        cut.rows);
	return 0;
}
