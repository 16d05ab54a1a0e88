/* The binary COPY reader (pgcopy.h). */
#include "index/pgcopy.h"

#include <endian.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"

static const unsigned char signature[11] = {'P',  'G',  'C',  'O',  'P', 'Y',
                                            '\n', 0xff, '\r', '\n', 0};
#define HEADER_LEN     (sizeof(signature) + 8)
#define FLAG_OIDS      (UINT32_C(1) << 16)
#define FLAGS_CRITICAL UINT32_C(0xffff)

enum { S_HEADER = 0, S_TUPLES, S_DONE };

/* Big-endian integers at any alignment (memcpy: one load each). */
static uint32_t be32(const unsigned char *b)
{
	uint32_t v;

	memcpy(&v, b, sizeof(v));
	return be32toh(v);
}

static int64_t be64(const unsigned char *b)
{
	uint64_t v;

	memcpy(&v, b, sizeof(v));
	return (int64_t)be64toh(v);
}

static enum p11p_sql_rc bad(struct p11p_pgcopy *pc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum p11p_sql_rc bad(struct p11p_pgcopy *pc, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(pc->err, sizeof(pc->err), "tuple %zu: ", pc->tuples + 1);

	if (pc->state == S_HEADER)
		n = snprintf(pc->err, sizeof(pc->err), "header: ");
	else if (pc->state == S_DONE)
		n = snprintf(pc->err, sizeof(pc->err), "after the trailer: ");
	if (n < 0 || (size_t)n >= sizeof(pc->err))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(pc->err + n, sizeof(pc->err) - (size_t)n, fmt, ap);
	va_end(ap);
	pc->rc = P11P_SQL_FAILED;
	return P11P_SQL_FAILED;
}

enum p11p_sql_rc p11p_pgcopy_init(struct p11p_pgcopy *pc, const enum p11p_sql_type *types,
                                  size_t ncols, p11p_sql_row_fn row, void *arg)
{
	if (pc == NULL)
		return P11P_SQL_FAILED;
	memset(pc, 0, sizeof(*pc));
	if (types == NULL || row == NULL || ncols == 0 || ncols > P11P_PGCOPY_MAX_COLS) {
		snprintf(pc->err, sizeof(pc->err), "bad arguments");
		pc->rc = P11P_SQL_FAILED;
		return P11P_SQL_FAILED;
	}
	for (size_t i = 0; i < ncols; i++) {
		if (types[i] != P11P_SQL_INT && types[i] != P11P_SQL_TEXT &&
		    types[i] != P11P_SQL_BLOB) {
			snprintf(pc->err, sizeof(pc->err), "bad column type");
			pc->rc = P11P_SQL_FAILED;
			return P11P_SQL_FAILED;
		}
	}
	pc->types = types;
	pc->ncols = ncols;
	pc->row = row;
	pc->arg = arg;
	pc->state = S_HEADER;
	pc->rc = P11P_SQL_OK;
	return P11P_SQL_OK;
}

/*
 * Reads every whole unit (header, tuple, trailer) of b[0..n); *used: the
 * bytes they took (the rest is the start of a unit cut short).
 */
static enum p11p_sql_rc parse(struct p11p_pgcopy *pc, const unsigned char *b, size_t n,
                              size_t *used)
{
	size_t at = 0;

	*used = 0;
	while (at < n) {
		if (pc->state == S_DONE)
			return bad(pc, "%zu more bytes", n - at);
		if (pc->state == S_HEADER) {
			if (n - at < HEADER_LEN) {
				/* a wrong signature is refused as soon as its bytes differ */
				size_t k = n - at < sizeof(signature) ? n - at : sizeof(signature);

				if (memcmp(b + at, signature, k) != 0)
					return bad(pc, "not a binary COPY signature");
				break;
			}
			if (memcmp(b + at, signature, sizeof(signature)) != 0)
				return bad(pc, "not a binary COPY signature");
			uint32_t flags = be32(b + at + sizeof(signature));
			uint32_t ext = be32(b + at + sizeof(signature) + 4);

			if ((flags & FLAG_OIDS) != 0)
				return bad(pc, "OIDs included");
			if ((flags & FLAGS_CRITICAL) != 0)
				return bad(pc, "unknown critical flags 0x%04x",
				           (unsigned)(flags & FLAGS_CRITICAL));
			if (ext > P11P_PGCOPY_MAX_EXT)
				return bad(pc, "header extension of %u bytes", (unsigned)ext);
			if (n - at - HEADER_LEN < ext)
				break;
			at += HEADER_LEN + ext;
			pc->state = S_TUPLES;
			continue;
		}
		if (n - at < 2)
			break;
		int16_t count = (int16_t)(uint16_t)((unsigned)b[at] << 8 | b[at + 1]);

		if (count == -1) {
			at += 2;
			pc->state = S_DONE;
			continue;
		}
		if (count < 0 || (size_t)count != pc->ncols)
			return bad(pc, "%d fields, %zu expected", (int)count, pc->ncols);
		size_t p = at + 2;
		for (size_t i = 0; i < pc->ncols; i++) {
			struct p11p_sql_val *v = &pc->cols[i];

			if (n - p < 4)
				goto short_unit;
			int32_t len = (int32_t)be32(b + p);

			p += 4;
			if (len < 0) {
				if (len != -1)
					return bad(pc, "field %zu: length %d", i + 1, (int)len);
				v->type = P11P_SQL_NULL;
				v->i = 0;
				v->p = NULL;
				v->len = 0;
				continue;
			}
			if (n - p < (size_t)len)
				goto short_unit;
			if (pc->types[i] == P11P_SQL_INT) {
				if (len != 8)
					return bad(pc, "field %zu: %d bytes for a BIGINT", i + 1,
					           (int)len);
				v->type = P11P_SQL_INT;
				v->i = be64(b + p);
				v->p = NULL;
				v->len = 0;
			} else {
				v->type = pc->types[i];
				v->i = 0;
				v->p = b + p;
				v->len = (size_t)len;
			}
			p += (size_t)len;
		}
		pc->tuples++;
		at = p;
		*used = at;
		if (!pc->stop && pc->row(pc->arg, pc->cols, pc->ncols) != 0)
			pc->stop = true;
	}
short_unit:
	*used = at;
	return P11P_SQL_OK;
}

/* Keeps b[0..n) for the next piece. */
static enum p11p_sql_rc keep(struct p11p_pgcopy *pc, const unsigned char *b, size_t n)
{
	if (n == 0)
		return P11P_SQL_OK;
	if (pc->carry_len + n > pc->carry_cap) {
		size_t cap = pc->carry_cap ? pc->carry_cap : 256;

		while (cap < pc->carry_len + n) {
			if (cap > SIZE_MAX / 2)
				goto nomem;
			cap *= 2;
		}
		unsigned char *c = p11p_realloc(pc->carry, cap);

		if (c == NULL)
			goto nomem;
		pc->carry = c;
		pc->carry_cap = cap;
	}
	memcpy(pc->carry + pc->carry_len, b, n);
	pc->carry_len += n;
	return P11P_SQL_OK;
nomem:
	snprintf(pc->err, sizeof(pc->err), "out of memory");
	pc->rc = P11P_SQL_NOMEM;
	return P11P_SQL_NOMEM;
}

enum p11p_sql_rc p11p_pgcopy_feed(struct p11p_pgcopy *pc, const void *data, size_t len)
{
	enum p11p_sql_rc rc;
	size_t used = 0;

	if (pc == NULL)
		return P11P_SQL_FAILED;
	if (pc->rc != P11P_SQL_OK)
		return pc->rc;
	if (data == NULL && len > 0)
		return bad(pc, "no data");
	if (len == 0)
		return P11P_SQL_OK;
	if (pc->carry_len == 0) {
		/* the usual case: whole tuples, read in place */
		rc = parse(pc, data, len, &used);
		if (rc != P11P_SQL_OK)
			return rc;
		return keep(pc, (const unsigned char *)data + used, len - used);
	}
	rc = keep(pc, data, len);
	if (rc != P11P_SQL_OK)
		return rc;
	rc = parse(pc, pc->carry, pc->carry_len, &used);
	if (rc != P11P_SQL_OK)
		return rc;
	memmove(pc->carry, pc->carry + used, pc->carry_len - used);
	pc->carry_len -= used;
	return P11P_SQL_OK;
}

enum p11p_sql_rc p11p_pgcopy_end(struct p11p_pgcopy *pc)
{
	if (pc == NULL)
		return P11P_SQL_FAILED;
	if (pc->rc != P11P_SQL_OK)
		return pc->rc;
	if (pc->state == S_HEADER)
		return bad(pc, "%s", pc->carry_len ? "cut short" : "missing");
	if (pc->state != S_DONE)
		return bad(pc, "%s", pc->carry_len ? "cut short" : "no trailer (stream cut short)");
	return P11P_SQL_OK;
}

void p11p_pgcopy_free(struct p11p_pgcopy *pc)
{
	if (pc == NULL)
		return;
	p11p_free(pc->carry);
	pc->carry = NULL;
	pc->carry_len = pc->carry_cap = 0;
}
