/*
 * The PostgreSQL driver under the store (contracts: index/sql.h), over libpq.
 *
 * Target: a postgresql:// (or postgres://) URI. A URI carrying a password
 * (user:secret@host or ?password=) is refused: the password comes from
 * libpq's passfile (~/.pgpass, or the file named by PGPASSFILE or by the
 * URI's passfile= parameter), so that it is never in proxy.yaml, in argv or
 * in a message.
 *
 * Every wait is bounded by the connection's timeout (timeout_ms, 5 s when 0):
 *  - connecting is PQconnectStartParams + PQconnectPoll under poll(2) with a
 *    deadline (connect_timeout is set too, for each address libpq tries);
 *  - statements are sent without blocking (PQsetnonblocking) and their
 *    results awaited with poll(2) until the deadline; the server's own
 *    statement_timeout (the same value) ends a slow statement first and
 *    answers an error, the client's deadline (a second later) covers a
 *    server that does not answer at all: the connection is then dropped.
 * Host names are resolved by libpq inside PQconnectStartParams, which may
 * wait for the resolver: use an address or a socket directory where that
 * matters.
 *
 * Values cross as typed parameters of the extended protocol: integers as
 * int8 text, text as text (binary format: no copy, no NUL needed), blobs as
 * bytea in binary (NULs and all). Results of a statement with parameters (the
 * extended protocol) come in binary format, which neither side has to print
 * or parse (loading 100,000 keys spent a sixth of its client time in strtoll
 * and PQunescapeBytea): int2/int4/int8/oid (network order) and bool (1/0) as
 * P11P_SQL_INT, bytea as P11P_SQL_BLOB and text, varchar, char and name as
 * P11P_SQL_TEXT, all pointing into libpq's result; a column of another type
 * fails the statement (P11P_SQL_FAILED, logged as a bug), as no statement of
 * ours reads one. Results of the simple protocol (several statements, no
 * parameters) come in text format and are typed the same way, bytea
 * unescaped, everything else as P11P_SQL_TEXT.
 *
 * Bulk reads (p11p_sql_read: the store's loads) run as one COPY (SELECT ...)
 * TO STDOUT (FORMAT binary), their integer parameters printed into the
 * statement (COPY takes none), and each row is parsed as libpq hands it over
 * (index/pgcopy.h, strict) instead of libpq building a result with every row
 * first: a load of 100,000 keys spent 248 M of its 669 M client instructions
 * there, and 120 M more reading the result back. A malformed stream is read
 * to its end (the connection stays in step) and fails the read; a COPY the
 * server ends early answers the server's error.
 *
 * Errors are classified by SQLSTATE (sql_class below); a lost connection is
 * P11P_SQL_DOWN and the next call connects again (not inside a transaction:
 * the transaction is gone, so its statements keep failing until the store
 * rolls back), and the next p11p_sql_changed() after a reconnection reports
 * a change, since notices may have been missed meanwhile.
 *
 * Writers: begin is BEGIN + pg_advisory_xact_lock(P11P_PG_LOCK_KEY), one
 * round trip, so every p11proxy writer of a database is serialised; commit
 * is NOTIFY p11proxy + COMMIT, one round trip, so every committed write
 * transaction wakes the other connections, which LISTEN p11proxy from open.
 * PostgreSQL delivers a notification only when its transaction commits.
 *
 * Fork: abandon() must not talk to the server (the parent still uses the
 * connection) and must not just close(2) the socket and call PQfinish (the
 * Terminate message would go to whatever later reuses that descriptor
 * number). It puts /dev/null over the socket's descriptor (dup2), so the
 * child's reference to the socket is dropped at once, and then PQfinish
 * frees everything: its Terminate message is refused by /dev/null (send(2)
 * on a non-socket) and goes nowhere.
 */
#include "index/pg.h"
#include "index/sql.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "index/pgcopy.h"

/* The advisory lock every p11proxy writer takes ("p11proxy" in ASCII). */
#define P11P_PG_LOCK_KEY           "8086664568574556537"
#define P11P_PG_CHANNEL            "p11proxy"
#define P11P_PG_DEFAULT_TIMEOUT_MS 5000u
/* The client's deadline comes this long after the server's statement_timeout. */
#define P11P_PG_SLACK_MS 1000u
/* After a failed reconnection, the next attempt waits this long (the hot path polls changed). */
#define P11P_PG_RETRY_MS 250u
/* PostgreSQL's limit on the parameters of one statement. */
#define P11P_PG_MAX_PARAMS 65535u

/* PostgreSQL type OIDs (catalog/pg_type.h, stable). */
#define OID_BOOL    16
#define OID_BYTEA   17
#define OID_INT8    20
#define OID_INT2    21
#define OID_INT4    23
#define OID_NAME    19
#define OID_TEXT    25
#define OID_OID     26
#define OID_BPCHAR  1042
#define OID_VARCHAR 1043

struct pgc {
	struct p11p_sql base; /* first: the store sees a struct p11p_sql */
	PGconn *pg;           /* NULL while the connection is lost */
	char *uri;            /* the target, without a password (checked at open) */
	char label[192];      /* "postgresql user@host:port/db" for messages */
	bool readonly;
	unsigned timeout_ms;
	bool in_tx;                  /* between begin and commit/rollback */
	bool tx_lost;                /* the connection was lost inside the transaction */
	bool changed;                /* report a change at the next changed() (reconnected) */
	unsigned long long retry_at; /* no reconnection before this (p11p_now_ms) */
	char cmd[32];                /* the command tag of the last result (COMMIT / ROLLBACK) */
};

static struct pgc *pgc_of(struct p11p_sql *c)
{
	return (struct pgc *)c;
}

/* One line into dst: control characters become spaces, trailing spaces go. */
static void set_msg(char *dst, size_t len, const char *label, const char *what, const char *detail)
{
	if (len == 0)
		return;
	snprintf(dst, len, "%s: %s%s%s", label, what, detail && *detail ? ": " : "",
	         detail ? detail : "");
	size_t n = strlen(dst);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
			dst[i] = ' ';
	while (n > 0 && dst[n - 1] == ' ')
		dst[--n] = '\0';
}

static void err(struct pgc *p, const char *what, const char *detail)
{
	set_msg(p->base.err, sizeof(p->base.err), p->label, what, detail);
}

/*
 * SQLSTATE -> what the store can act on (PostgreSQL manual, appendix A).
 */
static enum p11p_sql_rc sql_class(const char *state)
{
	if (!state || strlen(state) != 5)
		return P11P_SQL_FAILED;
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
	    strncmp(state, "58", 2) == 0 || strcmp(state, "57P01") == 0 ||
	    strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0 ||
	    strcmp(state, "57014") == 0)
		return P11P_SQL_DOWN; /* connection, resources, I/O, shutdown, timeout */
	if (strcmp(state, "42501") == 0 || strcmp(state, "25006") == 0 ||
	    strncmp(state, "28", 2) == 0)
		return P11P_SQL_DENIED; /* privilege, read-only transaction, authorization */
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
	    strcmp(state, "23505") == 0 || strcmp(state, "55P03") == 0)
		return P11P_SQL_CONFLICT; /* serialization, deadlock, unique, lock not available */
	if (strcmp(state, "XX001") == 0 || strcmp(state, "XX002") == 0)
		return P11P_SQL_CORRUPT; /* data or index corrupted */
	return P11P_SQL_FAILED;
}

/* The connection is gone: drop it; the next call outside a transaction connects again. */
static void lose(struct pgc *p)
{
	if (p->pg)
		PQfinish(p->pg);
	p->pg = NULL;
	if (p->in_tx)
		p->tx_lost = true;
}

/* Waits for the socket until deadline: 1 ready, 0 deadline passed, -1 error. */
static int wait_fd(int fd, short events, unsigned long long deadline)
{
	for (;;) {
		unsigned long long now = p11p_now_ms();
		if (now >= deadline)
			return 0;
		unsigned long long left = deadline - now;
		struct pollfd pfd = {.fd = fd, .events = events};
		int r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r > 0)
			return 1;
		if (r == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

/* The connection failed under a statement: dropped, DOWN. */
static enum p11p_sql_rc lost(struct pgc *p)
{
	err(p, "connection lost", p->pg ? PQerrorMessage(p->pg) : NULL);
	lose(p);
	return P11P_SQL_DOWN;
}

/* wait_fd answered w (0: the deadline, -1: poll failed): the connection is dropped, DOWN. */
static enum p11p_sql_rc timed_out(struct pgc *p, int w)
{
	err(p, "statement", w == 0 ? "no answer in time" : "poll failed");
	lose(p);
	return P11P_SQL_DOWN;
}

static enum p11p_sql_rc set_up(struct pgc *p);

static void quiet_notice(void *arg, const char *message)
{
	p11p_debug(P11P_DBG_LIB, "postgresql notice: %s", message);
}

/* Connects (p->pg is NULL). On failure p->base.err says why. */
static enum p11p_sql_rc connect_pg(struct pgc *p)
{
	char ctimeout[16];
	unsigned secs = (p->timeout_ms + 999) / 1000;
	snprintf(ctimeout, sizeof(ctimeout), "%u", secs < 2 ? 2 : secs);
	/* The URI first (expanded), then what we add: later keywords win. */
	const char *const keys[] = {"dbname", "connect_timeout", "fallback_application_name",
	                            "client_encoding", NULL};
	const char *const vals[] = {p->uri, ctimeout, "p11proxy", "UTF8", NULL};
	unsigned long long deadline = p11p_now_ms() + p->timeout_ms;

	PGconn *pg = PQconnectStartParams(keys, vals, 1);
	if (!pg) {
		err(p, "connect", "out of memory");
		return P11P_SQL_NOMEM;
	}
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	if (PQstatus(pg) == CONNECTION_BAD)
		st = PGRES_POLLING_FAILED;
	while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
		int fd = PQsocket(pg);
		int w = fd < 0
		            ? -1
		            : wait_fd(fd, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
		if (w == 0) {
			err(p, "connect", "timed out");
			PQfinish(pg);
			return P11P_SQL_DOWN;
		}
		if (w < 0)
			break;
		st = PQconnectPoll(pg);
	}
	if (PQstatus(pg) != CONNECTION_OK) {
		/* An authentication failure is a refusal, anything else: down. */
		const char *m = PQerrorMessage(pg);
		bool auth = strstr(m, "password authentication failed") ||
		            strstr(m, "no password supplied") ||
		            strstr(m, "authentication failed") || strstr(m, "does not exist");
		err(p, "connect", m);
		PQfinish(pg);
		return auth ? P11P_SQL_DENIED : P11P_SQL_DOWN;
	}
	if (PQsetnonblocking(pg, 1) != 0) {
		err(p, "connect", PQerrorMessage(pg));
		PQfinish(pg);
		return P11P_SQL_DOWN;
	}
	/* libpq prints the server's notices on stderr by default: not from a library. */
	PQsetNoticeProcessor(pg, quiet_notice, NULL);
	p->pg = pg;
	enum p11p_sql_rc rc = set_up(p);
	if (rc != P11P_SQL_OK)
		lose(p);
	return rc;
}

/* A big-endian integer of n bytes (2, 4 or 8), sign-extended unless is_unsigned. */
static int64_t be_int(const unsigned char *b, size_t n, bool is_unsigned)
{
	uint64_t u = 0;

	for (size_t i = 0; i < n; i++)
		u = u << 8 | b[i];
	if (!is_unsigned && n < 8 && (u >> (n * 8 - 1)) != 0)
		u |= ~UINT64_C(0) << (n * 8);
	return (int64_t)u;
}

/*
 * A column value in binary format: false when its type is not one we read
 * (or its length does not fit the type).
 */
static bool binary_value(struct p11p_sql_val *v, Oid type, const char *s, size_t n)
{
	const unsigned char *b = (const unsigned char *)s;

	switch (type) {
	case OID_INT8:
	case OID_INT4:
	case OID_INT2:
	case OID_OID:
		if (n != (type == OID_INT8 ? 8u : type == OID_INT2 ? 2u : 4u))
			return false;
		v->type = P11P_SQL_INT;
		v->i = be_int(b, n, type == OID_OID);
		return true;
	case OID_BOOL:
		if (n != 1)
			return false;
		v->type = P11P_SQL_INT;
		v->i = b[0] != 0;
		return true;
	case OID_BYTEA:
		v->type = P11P_SQL_BLOB;
		v->p = s;
		v->len = n;
		return true;
	case OID_TEXT:
	case OID_VARCHAR:
	case OID_BPCHAR:
	case OID_NAME:
		v->type = P11P_SQL_TEXT;
		v->p = s;
		v->len = n;
		return true;
	default:
		return false;
	}
}

/* Sends what libpq holds for the server before the deadline; DOWN (connection dropped) if not. */
static enum p11p_sql_rc flush_out(struct pgc *p, unsigned long long deadline)
{
	PGconn *pg = p->pg;

	for (;;) {
		int f = PQflush(pg);
		if (f == 0)
			return P11P_SQL_OK;
		if (f < 0)
			return lost(p);
		int w = wait_fd(PQsocket(pg), POLLOUT | POLLIN, deadline);
		if (w <= 0)
			return timed_out(p, w);
		if (!PQconsumeInput(pg))
			return lost(p);
	}
}

/* Reads until the next result is ready (PQgetResult will not block), before the deadline. */
static enum p11p_sql_rc await_result(struct pgc *p, unsigned long long deadline)
{
	PGconn *pg = p->pg;

	while (PQisBusy(pg)) {
		int w = wait_fd(PQsocket(pg), POLLIN, deadline);
		if (w <= 0)
			return timed_out(p, w);
		if (!PQconsumeInput(pg))
			return lost(p);
	}
	return P11P_SQL_OK;
}

/* An error result: its class, the message kept (the first error of a statement decides). */
static void result_error(struct pgc *p, PGresult *res, enum p11p_sql_rc *rc)
{
	if (*rc != P11P_SQL_OK)
		return;
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	*rc = sql_class(state);
	/* Data exceptions quote the value: only the SQLSTATE is kept. */
	char what[48];
	snprintf(what, sizeof(what), "SQLSTATE %s", state ? state : "?");
	if (state && strncmp(state, "22", 2) == 0)
		err(p, what, "invalid value");
	else
		err(p, what, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
	if (*rc == P11P_SQL_FAILED && state && strncmp(state, "42", 2) == 0)
		p11p_debug(P11P_DBG_LIB, "%s", p->base.err);
}

static bool is_error(ExecStatusType st)
{
	return st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR;
}

/* The rows of one result to row(): rc set on a failure, *stop when row() asks to. */
static void result_rows(struct pgc *p, PGresult *res, p11p_sql_row_fn row, void *arg,
                        enum p11p_sql_rc *rcp, bool *stopp)
{
	enum p11p_sql_rc rc = P11P_SQL_OK;
	bool stop = false;
	int nf = PQnfields(res), nt = PQntuples(res);
	struct p11p_sql_val *cols = nf > 0 ? p11p_calloc((size_t)nf, sizeof(*cols)) : NULL;
	unsigned char **blobs = nf > 0 ? p11p_calloc((size_t)nf, sizeof(*blobs)) : NULL;
	/* each column's type and format, asked once per result, not per row */
	Oid *ftype = nf > 0 ? p11p_calloc((size_t)nf, sizeof(*ftype)) : NULL;
	bool *fbin = nf > 0 ? p11p_calloc((size_t)nf, sizeof(*fbin)) : NULL;
	if (nf > 0 && (!cols || !blobs || !ftype || !fbin)) {
		err(p, "result", "out of memory");
		rc = P11P_SQL_NOMEM;
	}
	for (int f = 0; f < nf && rc == P11P_SQL_OK; f++) {
		ftype[f] = PQftype(res, f);
		fbin[f] = PQfformat(res, f) == 1;
	}
	for (int t = 0; t < nt && rc == P11P_SQL_OK && !stop; t++) {
		size_t nblobs = 0;
		for (int f = 0; f < nf && rc == P11P_SQL_OK; f++) {
			struct p11p_sql_val *v = &cols[f];
			memset(v, 0, sizeof(*v));
			if (PQgetisnull(res, t, f)) {
				v->type = P11P_SQL_NULL;
				continue;
			}
			const char *s = PQgetvalue(res, t, f);
			size_t n = (size_t)PQgetlength(res, t, f);
			Oid type = ftype[f];
			if (fbin[f]) {
				if (!binary_value(v, type, s, n)) {
					char what[48];

					snprintf(what, sizeof(what), "column %d (type %u)", f + 1,
					         (unsigned)type);
					err(p, what, "not readable in binary");
					p11p_debug(P11P_DBG_LIB, "%s", p->base.err);
					rc = P11P_SQL_FAILED;
				}
				continue;
			}
			if (type == OID_INT8 || type == OID_INT4 || type == OID_INT2 ||
			    type == OID_OID) {
				char *end;
				errno = 0;
				long long i = strtoll(s, &end, 10);
				if (errno == 0 && end != s && *end == '\0') {
					v->type = P11P_SQL_INT;
					v->i = i;
					continue;
				}
			} else if (type == OID_BOOL) {
				v->type = P11P_SQL_INT;
				v->i = s[0] == 't';
				continue;
			} else if (type == OID_BYTEA) {
				size_t bl = 0;
				unsigned char *b = PQunescapeBytea((const unsigned char *)s, &bl);
				if (!b) {
					err(p, "result", "out of memory");
					rc = P11P_SQL_NOMEM;
					break;
				}
				blobs[nblobs++] = b;
				v->type = P11P_SQL_BLOB;
				v->p = b;
				v->len = bl;
				continue;
			}
			v->type = P11P_SQL_TEXT;
			v->p = s;
			v->len = n;
		}
		if (rc == P11P_SQL_OK && row(arg, cols, (size_t)nf) != 0)
			stop = true;
		for (size_t b = 0; b < nblobs; b++)
			PQfreemem(blobs[b]);
	}
	p11p_free(cols);
	p11p_free(blobs);
	p11p_free(ftype);
	p11p_free(fbin);
	*rcp = rc;
	*stopp = stop;
}

static void copy_refused(struct pgc *p, const struct p11p_pgcopy *pc)
{
	err(p, "COPY data refused", pc->err);
	p11p_debug(P11P_DBG_LIB, "%s", p->base.err);
}

/*
 * The rows of a COPY ... TO STDOUT (FORMAT binary) under way, into pc until
 * the end of the copy (every row is read, even after a malformed one, so that
 * the connection stays in step; the end of the stream is checked by the
 * caller, after the result that follows). DOWN when the connection is lost.
 */
static enum p11p_sql_rc copy_rows(struct pgc *p, struct p11p_pgcopy *pc,
                                  unsigned long long deadline)
{
	PGconn *pg = p->pg;
	enum p11p_sql_rc rc = P11P_SQL_OK;

	for (;;) {
		char *buf = NULL;
		int n = PQgetCopyData(pg, &buf, 1);

		if (n > 0) {
			if (rc == P11P_SQL_OK)
				rc = p11p_pgcopy_feed(pc, buf, (size_t)n);
			PQfreemem(buf);
			continue;
		}
		if (buf)
			PQfreemem(buf);
		if (n == -1)
			break; /* the end of the copy: its result follows */
		if (n != 0)
			return lost(p);
		int w = wait_fd(PQsocket(pg), POLLIN, deadline);
		if (w <= 0)
			return timed_out(p, w);
		if (!PQconsumeInput(pg))
			return lost(p);
	}
	if (rc != P11P_SQL_OK)
		copy_refused(p, pc);
	return rc;
}

/*
 * Sends one statement (simple protocol when nparams < 0: several statements
 * allowed, no parameters) and reads every result before the deadline. The
 * first error decides the answer; rows go to row() until it asks to stop; a
 * COPY TO STDOUT's rows go to copy (which must then not be NULL).
 */
static enum p11p_sql_rc run_copy(struct pgc *p, const char *sql, int nparams, const Oid *types,
                                 const char *const *values, const int *lengths, const int *formats,
                                 p11p_sql_row_fn row, void *arg, struct p11p_pgcopy *copy)
{
	PGconn *pg = p->pg;
	unsigned long long deadline = p11p_now_ms() + p->timeout_ms + P11P_PG_SLACK_MS;
	p->cmd[0] = '\0';

	int sent = nparams < 0
	               ? PQsendQuery(pg, sql)
	               : PQsendQueryParams(pg, sql, nparams, types, values, lengths, formats, 1);
	if (!sent)
		return lost(p);
	enum p11p_sql_rc rc = flush_out(p, deadline);
	if (rc != P11P_SQL_OK)
		return rc;

	bool stop = false, copied = false;
	for (;;) {
		enum p11p_sql_rc wr = await_result(p, deadline);
		if (wr != P11P_SQL_OK)
			return wr;
		PGresult *res = PQgetResult(pg);
		if (!res)
			break;
		ExecStatusType st = PQresultStatus(res);
		if (is_error(st)) {
			result_error(p, res, &rc);
		} else if (st == PGRES_COPY_OUT) {
			PQclear(res);
			if (!copy) {
				/* not ours: the connection is out of step */
				err(p, "statement", "unexpected COPY");
				lose(p);
				return P11P_SQL_DOWN;
			}
			enum p11p_sql_rc cr = copy_rows(p, copy, deadline);
			if (cr == P11P_SQL_DOWN)
				return cr;
			copied = true;
			if (rc == P11P_SQL_OK)
				rc = cr;
			continue;
		} else if (st == PGRES_COPY_IN || st == PGRES_COPY_BOTH) {
			PQclear(res);
			err(p, "statement", "unexpected COPY");
			lose(p);
			return P11P_SQL_DOWN;
		} else if (st == PGRES_TUPLES_OK && row && !stop && rc == P11P_SQL_OK) {
			result_rows(p, res, row, arg, &rc, &stop);
		}
		snprintf(p->cmd, sizeof(p->cmd), "%s", PQcmdStatus(res));
		PQclear(res);
	}
	if (PQstatus(pg) == CONNECTION_BAD)
		return lost(p);
	/*
	 * A stream cut short is checked last: a server that ends a COPY early
	 * (statement_timeout, an error) says why in the result that follows it.
	 */
	if (copied && rc == P11P_SQL_OK) {
		rc = p11p_pgcopy_end(copy);
		if (rc != P11P_SQL_OK)
			copy_refused(p, copy);
	}
	return rc;
}

static enum p11p_sql_rc run(struct pgc *p, const char *sql, int nparams, const Oid *types,
                            const char *const *values, const int *lengths, const int *formats,
                            p11p_sql_row_fn row, void *arg)
{
	return run_copy(p, sql, nparams, types, values, lengths, formats, row, arg, NULL);
}

/* The session's settings and the LISTEN, one round trip. */
static enum p11p_sql_rc set_up(struct pgc *p)
{
	char sql[256];
	/* A lock wait ends first, as a conflict (55P03), not as a statement timeout. */
	unsigned lock_ms = p->timeout_ms - p->timeout_ms / 10;
	snprintf(sql, sizeof(sql),
	         "SET statement_timeout = %u; SET lock_timeout = %u; "
	         "SET default_transaction_read_only = %s; LISTEN " P11P_PG_CHANNEL,
	         p->timeout_ms, lock_ms ? lock_ms : 1, p->readonly ? "on" : "off");
	return run(p, sql, -1, NULL, NULL, NULL, NULL, NULL, NULL);
}

/* Before a statement: connected, or connects again (never inside a transaction). */
static enum p11p_sql_rc ensure(struct pgc *p)
{
	if (p->pg)
		return P11P_SQL_OK;
	if (p->in_tx) {
		err(p, "connection lost", "inside a transaction (rolled back by the server)");
		return P11P_SQL_DOWN;
	}
	unsigned long long now = p11p_now_ms();
	if (now < p->retry_at) {
		/* keep the last connection error */
		if (!p->base.err[0])
			err(p, "down", "waiting to reconnect");
		return P11P_SQL_DOWN;
	}
	enum p11p_sql_rc rc = connect_pg(p);
	if (rc != P11P_SQL_OK) {
		p->retry_at = p11p_now_ms() + P11P_PG_RETRY_MS;
		return rc;
	}
	p->changed = true;
	p->base.err[0] = '\0';
	return P11P_SQL_OK;
}

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static enum p11p_sql_rc pg_open(const char *target, bool readonly, unsigned timeout_ms,
                                struct p11p_sql **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	if (!has_prefix(target, "postgresql://") && !has_prefix(target, "postgres://")) {
		set_msg(errbuf, errlen, "postgresql", "not a postgresql:// URI", NULL);
		return P11P_SQL_FAILED;
	}
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(target, &perr);
	if (!opts) {
		/* libpq's message quotes the URI: only say it is malformed. */
		set_msg(errbuf, errlen, "postgresql", perr ? "malformed URI" : "out of memory",
		        NULL);
		if (perr)
			PQfreemem(perr);
		return perr ? P11P_SQL_FAILED : P11P_SQL_NOMEM;
	}
	const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL, *user = NULL;
	bool password = false;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		if (strcmp(o->keyword, "password") == 0)
			password = true;
		else if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			db = o->val;
		else if (strcmp(o->keyword, "user") == 0)
			user = o->val;
	}
	char label[192];
	snprintf(label, sizeof(label), "postgresql %s%s%s%s%s/%s", user ? user : "",
	         user ? "@" : "",
	         host       ? host
	         : hostaddr ? hostaddr
	                    : "localhost",
	         port ? ":" : "", port ? port : "", db ? db : (user ? user : ""));
	PQconninfoFree(opts);
	if (password) {
		set_msg(
		    errbuf, errlen, label,
		    "refused: the URI holds a password (use a passfile: ~/.pgpass, PGPASSFILE or "
		    "passfile=)",
		    NULL);
		return P11P_SQL_DENIED;
	}

	struct pgc *p = p11p_calloc(1, sizeof(*p));
	char *uri = p11p_strdup(target);
	if (!p || !uri) {
		p11p_free(p);
		p11p_free(uri);
		set_msg(errbuf, errlen, label, "out of memory", NULL);
		return P11P_SQL_NOMEM;
	}
	p->base.drv = &p11p_sql_pg_driver;
	p->uri = uri;
	memcpy(p->label, label, sizeof(label));
	p->readonly = readonly;
	p->timeout_ms = timeout_ms ? timeout_ms : P11P_PG_DEFAULT_TIMEOUT_MS;
	enum p11p_sql_rc rc = connect_pg(p);
	if (rc != P11P_SQL_OK) {
		if (errlen)
			snprintf(errbuf, errlen, "%s", p->base.err);
		p11p_free(p->uri);
		p11p_free(p);
		return rc;
	}
	*out = &p->base;
	return P11P_SQL_OK;
}

static void pg_close(struct p11p_sql *c)
{
	struct pgc *p = pgc_of(c);
	if (p->pg)
		PQfinish(p->pg);
	p11p_free(p->uri);
	p11p_free(p);
}

static void pg_abandon(struct p11p_sql *c)
{
	struct pgc *p = pgc_of(c);
	if (p->pg) {
		int fd = PQsocket(p->pg);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd >= 0 && null >= 0 && dup3(null, fd, O_CLOEXEC) == fd) {
			close(null);
			PQfinish(p->pg); /* talks to /dev/null only */
		} else {
			/* Cannot cover the socket: close it and leave libpq's memory. */
			if (null >= 0)
				close(null);
			if (fd >= 0)
				close(fd);
		}
		p->pg = NULL;
	}
	p11p_free(p->uri);
	p11p_free(p);
}

static enum p11p_sql_rc pg_exec(struct p11p_sql *c, const char *sql,
                                const struct p11p_sql_val *params, size_t nparams,
                                p11p_sql_row_fn row, void *arg)
{
	struct pgc *p = pgc_of(c);
	if (nparams > P11P_PG_MAX_PARAMS) {
		err(p, "statement", "too many parameters");
		return P11P_SQL_FAILED;
	}
	enum p11p_sql_rc rc = ensure(p);
	if (rc != P11P_SQL_OK)
		return rc;

	/* One block: types, values, lengths, formats, then the integers' text. */
	enum { INT_TEXT = 24 };
	size_t n = nparams ? nparams : 1;
	size_t size = n * (sizeof(Oid) + sizeof(char *) + 2 * sizeof(int) + INT_TEXT);
	unsigned char *block = p11p_malloc(size);
	if (!block) {
		err(p, "statement", "out of memory");
		return P11P_SQL_NOMEM;
	}
	const char **values = (const char **)block;
	Oid *types = (Oid *)(values + n);
	int *lengths = (int *)(types + n);
	int *formats = lengths + n;
	char *ints = (char *)(formats + n);
	for (size_t i = 0; i < nparams; i++) {
		const struct p11p_sql_val *v = &params[i];
		types[i] = 0;
		values[i] = NULL;
		lengths[i] = 0;
		formats[i] = 0;
		switch (v->type) {
		case P11P_SQL_NULL:
			break;
		case P11P_SQL_INT:
			types[i] = OID_INT8;
			snprintf(ints + i * INT_TEXT, INT_TEXT, "%" PRId64, v->i);
			values[i] = ints + i * INT_TEXT;
			break;
		case P11P_SQL_TEXT:
		case P11P_SQL_BLOB:
			if (v->len > INT_MAX || (v->len && !v->p)) {
				p11p_free(block);
				err(p, "statement", "bad parameter");
				return P11P_SQL_FAILED;
			}
			types[i] = v->type == P11P_SQL_TEXT ? OID_TEXT : OID_BYTEA;
			values[i] = v->len ? (const char *)v->p : "";
			lengths[i] = (int)v->len;
			formats[i] = 1;
			break;
		default:
			p11p_free(block);
			err(p, "statement", "bad parameter type");
			return P11P_SQL_FAILED;
		}
	}
	rc = run(p, sql, (int)nparams, types, (const char *const *)values, lengths, formats, row,
	         arg);
	p11p_free(block);
	return rc;
}

/*
 * A bulk read as COPY (sql) TO STDOUT (FORMAT binary), the rows parsed from
 * the stream (index/pgcopy.h) instead of a result set libpq would build with
 * every row (loading 100,000 keys spent most of its client time there). COPY
 * takes no parameters: each $n becomes the integer it stands for, printed
 * here (sql.c lets only integers through). One round trip.
 */
static enum p11p_sql_rc pg_read(struct p11p_sql *c, const char *sql,
                                const struct p11p_sql_val *params, size_t nparams,
                                const enum p11p_sql_type *types, size_t ncols, p11p_sql_row_fn row,
                                void *arg)
{
	static const char head[] = "COPY (", tail[] = ") TO STDOUT (FORMAT binary)";
	struct pgc *p = pgc_of(c);
	struct p11p_pgcopy pc;
	enum p11p_sql_rc rc = ensure(p);

	if (rc != P11P_SQL_OK)
		return rc;
	/* an integer is at most 20 characters, and replaces at least 2 */
	size_t len = strlen(sql), cap = sizeof(head) + sizeof(tail) + len + len / 2 * 20 + 1;
	char *q = p11p_malloc(cap), *o = q;
	if (!q) {
		err(p, "statement", "out of memory");
		return P11P_SQL_NOMEM;
	}
	memcpy(o, head, sizeof(head) - 1);
	o += sizeof(head) - 1;
	for (const char *s = sql; *s;) {
		if (*s != '$') {
			*o++ = *s++;
			continue;
		}
		char *end;
		errno = 0;
		unsigned long k = strtoul(s + 1, &end, 10);
		if (end == s + 1 || errno != 0 || k == 0 || k > nparams ||
		    params[k - 1].type != P11P_SQL_INT) {
			p11p_free(q);
			err(p, "statement", "bad parameter");
			return P11P_SQL_FAILED;
		}
		o += sprintf(o, "%" PRId64, params[k - 1].i);
		s = end;
	}
	memcpy(o, tail, sizeof(tail));
	rc = p11p_pgcopy_init(&pc, types, ncols, row, arg);
	if (rc == P11P_SQL_OK)
		rc = run_copy(p, q, -1, NULL, NULL, NULL, NULL, NULL, NULL, &pc);
	else
		err(p, "statement", pc.err);
	p11p_pgcopy_free(&pc);
	p11p_free(q);
	return rc;
}

static enum p11p_sql_rc pg_begin(struct p11p_sql *c)
{
	struct pgc *p = pgc_of(c);
	if (p->in_tx) {
		err(p, "begin", "already in a transaction");
		return P11P_SQL_FAILED;
	}
	enum p11p_sql_rc rc = ensure(p);
	if (rc != P11P_SQL_OK)
		return rc;
	rc = run(p, "BEGIN; SELECT pg_advisory_xact_lock(" P11P_PG_LOCK_KEY ")", -1, NULL, NULL,
	         NULL, NULL, NULL, NULL);
	if (rc != P11P_SQL_OK) {
		if (p->pg && PQtransactionStatus(p->pg) != PQTRANS_IDLE)
			(void)run(p, "ROLLBACK", -1, NULL, NULL, NULL, NULL, NULL, NULL);
		return rc;
	}
	p->in_tx = true;
	p->tx_lost = false;
	return P11P_SQL_OK;
}

static void end_tx(struct pgc *p)
{
	p->in_tx = false;
	p->tx_lost = false;
}

static void pg_rollback(struct p11p_sql *c)
{
	struct pgc *p = pgc_of(c);
	if (p->pg && PQtransactionStatus(p->pg) != PQTRANS_IDLE) {
		char keep[sizeof(p->base.err)];
		memcpy(keep, p->base.err, sizeof(keep));
		(void)run(p, "ROLLBACK", -1, NULL, NULL, NULL, NULL, NULL, NULL);
		memcpy(p->base.err, keep, sizeof(keep));
	}
	end_tx(p);
}

static enum p11p_sql_rc pg_commit(struct p11p_sql *c)
{
	struct pgc *p = pgc_of(c);
	if (!p->in_tx) {
		err(p, "commit", "no transaction");
		return P11P_SQL_FAILED;
	}
	if (p->tx_lost || !p->pg) {
		end_tx(p);
		err(p, "commit", "connection lost during the transaction (not committed)");
		return P11P_SQL_DOWN;
	}
	if (PQtransactionStatus(p->pg) == PQTRANS_INERROR) {
		pg_rollback(c);
		err(p, "commit", "a statement failed: rolled back");
		return P11P_SQL_FAILED;
	}
	enum p11p_sql_rc rc =
	    run(p, "NOTIFY " P11P_PG_CHANNEL "; COMMIT", -1, NULL, NULL, NULL, NULL, NULL, NULL);
	if (rc == P11P_SQL_OK && strcmp(p->cmd, "COMMIT") != 0) {
		/* COMMIT of a failed transaction answers ROLLBACK. */
		err(p, "commit", "rolled back by the server");
		rc = P11P_SQL_CONFLICT;
	}
	if (rc != P11P_SQL_OK) {
		/* DOWN here: the outcome is unknown, the change was not acknowledged. */
		pg_rollback(c);
		return rc;
	}
	end_tx(p);
	return P11P_SQL_OK;
}

static enum p11p_sql_rc pg_changed(struct p11p_sql *c, bool *changed)
{
	struct pgc *p = pgc_of(c);
	*changed = false;
	if (!p->pg && !p->in_tx) {
		enum p11p_sql_rc rc = ensure(p);
		if (rc != P11P_SQL_OK)
			return rc;
	}
	if (!p->pg) {
		err(p, "connection lost", "inside a transaction");
		return P11P_SQL_DOWN;
	}
	if (!PQconsumeInput(p->pg) || PQstatus(p->pg) == CONNECTION_BAD) {
		err(p, "connection lost", PQerrorMessage(p->pg));
		lose(p);
		return P11P_SQL_DOWN;
	}
	int self = PQbackendPID(p->pg);
	PGnotify *n;
	while ((n = PQnotifies(p->pg)) != NULL) {
		if (n->be_pid != self && strcmp(n->relname, P11P_PG_CHANNEL) == 0)
			p->changed = true;
		PQfreemem(n);
	}
	*changed = p->changed;
	p->changed = false;
	return P11P_SQL_OK;
}

static int pg_notify_fd(struct p11p_sql *c)
{
	struct pgc *p = pgc_of(c);
	return p->pg ? PQsocket(p->pg) : -1;
}

const struct p11p_sql_driver p11p_sql_pg_driver = {
    .engine = P11P_SQL_PG,
    .open = pg_open,
    .close = pg_close,
    .abandon = pg_abandon,
    .exec = pg_exec,
    .read = pg_read,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .changed = pg_changed,
    .notify_fd = pg_notify_fd,
};

char *p11p_pg_ident(struct p11p_sql *c, const char *name)
{
	struct pgc *p = pgc_of(c);
	if (c->drv != &p11p_sql_pg_driver || ensure(p) != P11P_SQL_OK)
		return NULL;
	char *q = PQescapeIdentifier(p->pg, name, strlen(name));
	if (!q)
		return NULL;
	char *out = p11p_strdup(q);
	PQfreemem(q);
	return out;
}

static int found_row(void *arg, const struct p11p_sql_val *cols, size_t ncols)
{
	*(bool *)arg = true;
	return 1;
}

enum p11p_sql_rc p11p_pg_set_role(struct p11p_sql *c, const char *role, const char *password,
                                  size_t password_len)
{
	struct pgc *p = pgc_of(c);
	if (c->drv != &p11p_sql_pg_driver) {
		set_msg(c->err, sizeof(c->err), "store", "roles need a PostgreSQL store", NULL);
		return P11P_SQL_FAILED;
	}
	enum p11p_sql_rc rc = ensure(p);
	if (rc != P11P_SQL_OK)
		return rc;
	struct p11p_sql_val name = {.type = P11P_SQL_TEXT, .p = role, .len = strlen(role)};
	bool exists = false;
	rc = pg_exec(c, "SELECT 1 FROM pg_roles WHERE rolname = $1", &name, 1, found_row, &exists);
	if (rc != P11P_SQL_OK)
		return rc;

	char *pw = p11p_strndup(password, password_len);
	if (!pw || strlen(pw) != password_len) {
		if (pw)
			OPENSSL_cleanse(pw, password_len);
		p11p_free(pw);
		err(p, "role", pw ? "a password with a NUL byte" : "out of memory");
		return pw ? P11P_SQL_FAILED : P11P_SQL_NOMEM;
	}
	char *verifier = PQencryptPasswordConn(p->pg, pw, role, "scram-sha-256");
	OPENSSL_cleanse(pw, password_len);
	p11p_free(pw);
	if (!verifier) {
		err(p, "role: cannot compute the password verifier", PQerrorMessage(p->pg));
		return P11P_SQL_FAILED;
	}
	char *lit = PQescapeLiteral(p->pg, verifier, strlen(verifier));
	char *id = PQescapeIdentifier(p->pg, role, strlen(role));
	OPENSSL_cleanse(verifier, strlen(verifier));
	PQfreemem(verifier);
	rc = P11P_SQL_NOMEM;
	if (lit && id) {
		size_t len = strlen(lit) + strlen(id) + 128;
		char *sql = p11p_malloc(len);
		if (sql) {
			snprintf(sql, len,
			         exists
			             ? "ALTER ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
			               "NOINHERIT PASSWORD %s"
			             : "CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
			               "NOINHERIT PASSWORD %s",
			         id, lit);
			rc = pg_exec(c, sql, NULL, 0, NULL, NULL);
			OPENSSL_cleanse(sql, len);
			p11p_free(sql);
		} else {
			err(p, "role", "out of memory");
		}
	} else {
		err(p, "role", "out of memory");
	}
	if (lit) {
		OPENSSL_cleanse(lit, strlen(lit));
		PQfreemem(lit);
	}
	if (id)
		PQfreemem(id);
	return rc;
}
