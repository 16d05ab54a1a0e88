/*
 * A strict reader of PostgreSQL's binary COPY format (COPY ... TO STDOUT
 * (FORMAT binary), PostgreSQL manual, "COPY", "Binary Format"), for the
 * store's bulk reads (lib/index/pg.c, p11p_sql_read): rows parsed straight
 * from the bytes libpq hands over, no result set built in between.
 *
 * The stream is: the 11-byte signature "PGCOPY\n\377\r\n\0", a 32-bit flags
 * field (bit 16: OIDs included; bits 0-15: critical, unknown ones refused;
 * bits 17-31: ignored), a 32-bit header-extension length and that many
 * bytes; then tuples, each a 16-bit field count and, per field, a 32-bit
 * length (-1: NULL) and that many bytes; then the trailer, a field count of
 * -1, and nothing after it. All integers are in network byte order.
 *
 * Checked: the signature, the flags (OIDs refused: we never ask for them),
 * the extension length against a limit, every tuple's field count against
 * the columns expected, every length (not below -1, never past the end of
 * the data: a field cut short waits for the next piece, and the end of the
 * stream with an unfinished tuple or without the trailer is refused), and
 * the length of every integer field (8: BIGINT). Text and blob values point
 * into the data (valid during the row callback only). The caller still
 * checks every value (NULLs, ranges): this only guarantees the framing.
 *
 * The stream may be cut anywhere between pieces (libpq hands one CopyData
 * message per call; the server sends one per tuple, the header with the
 * first): a tuple split across pieces is put together in a buffer of its own.
 */
#ifndef P11P_INDEX_PGCOPY_H
#define P11P_INDEX_PGCOPY_H

#include <stdbool.h>
#include <stddef.h>

#include "index/sql.h"

/* The most columns of a bulk read. */
#define P11P_PGCOPY_MAX_COLS 32
/* The longest header extension accepted (none is defined today). */
#define P11P_PGCOPY_MAX_EXT 4096u

struct p11p_pgcopy {
	const enum p11p_sql_type *types; /* ncols: P11P_SQL_INT, _TEXT or _BLOB */
	size_t ncols;
	p11p_sql_row_fn row;
	void *arg;
	int state;            /* 0: before the header, 1: tuples, 2: after the trailer */
	bool stop;            /* the callback asked to stop: later tuples are checked, not handed */
	enum p11p_sql_rc rc;  /* not OK: the stream failed (the rest is ignored) */
	size_t tuples;        /* tuples read */
	unsigned char *carry; /* the start of a tuple cut between pieces */
	size_t carry_len, carry_cap;
	char err[160]; /* why the stream was refused */
	struct p11p_sql_val cols[P11P_PGCOPY_MAX_COLS];
};

/*
 * Starts a stream of tuples of ncols columns of the given types (ncols from
 * 1 to P11P_PGCOPY_MAX_COLS; the array must live as long as pc). row sees
 * each tuple until it answers non-zero. P11P_SQL_FAILED for bad arguments.
 */
enum p11p_sql_rc p11p_pgcopy_init(struct p11p_pgcopy *pc, const enum p11p_sql_type *types,
                                  size_t ncols, p11p_sql_row_fn row, void *arg);
/*
 * The next piece of the stream (len bytes, any length). P11P_SQL_OK, or
 * P11P_SQL_FAILED (malformed: pc->err says why) or P11P_SQL_NOMEM; after a
 * failure every later piece answers the same failure.
 */
enum p11p_sql_rc p11p_pgcopy_feed(struct p11p_pgcopy *pc, const void *data, size_t len);
/* The end of the stream: P11P_SQL_OK only after a complete header, tuples and trailer. */
enum p11p_sql_rc p11p_pgcopy_end(struct p11p_pgcopy *pc);
/* Frees the buffer (the struct is the caller's). */
void p11p_pgcopy_free(struct p11p_pgcopy *pc);

#endif
