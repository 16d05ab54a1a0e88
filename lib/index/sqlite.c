/*
 * The SQLite driver (sql.h): a file path, WAL, synchronous=FULL, a busy
 * timeout, $N parameters bound by name, PRAGMA data_version for changed().
 *
 * Writers keep the WAL and its -shm file when they close
 * (SQLITE_FCNTL_PERSIST_WAL), so that a read-only connection in a directory
 * it may not write finds them and reads the database in WAL mode, seeing
 * other processes' commits. When even that fails (no -shm yet), a read-only
 * connection falls back to immutable reads: a snapshot, no change notices.
 *
 * Threads: a connection is used by one thread at a time (sql.h; the store
 * holds its db_mu around every call), so it is opened SQLITE_OPEN_NOMUTEX:
 * in the default serialized mode every sqlite3_column_*() call takes and
 * releases the connection's mutex, which was a third of the instructions of
 * loading 100,000 keys (17 columns a row).
 *
 * Fork: sqlite3_close() in a child could checkpoint or remove the parent's
 * WAL; abandon() keeps the handle on a list of its own instead (memory the
 * child never uses again, reachable, not freed).
 */
#include "index/sql.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/mem.h"

#define CACHE_N 24

struct lite {
	struct p11p_sql base;
	sqlite3 *db;
	bool readonly, immutable;
	bool force_changed; /* the next changed() says so (after a failure) */
	int64_t data_version;
	char *path;
	struct lite *abandoned_next;
	/* Prepared statements by text (the store's statements are string literals). */
	struct {
		char *sql;
		sqlite3_stmt *st;
	} cache[CACHE_N];
	unsigned cache_next;
};

static pthread_mutex_t abandoned_mu = PTHREAD_MUTEX_INITIALIZER;
static struct lite *abandoned;

static enum p11p_sql_rc classify(int code)
{
	switch (code & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return P11P_SQL_OK;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_CONSTRAINT:
		return P11P_SQL_CONFLICT;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return P11P_SQL_DENIED;
	case SQLITE_CANTOPEN:
		return errno == EACCES || errno == EPERM || errno == EROFS ? P11P_SQL_DENIED
		                                                           : P11P_SQL_DOWN;
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_PROTOCOL:
		return P11P_SQL_DOWN;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_SCHEMA:
		return P11P_SQL_CORRUPT;
	case SQLITE_NOMEM:
		return P11P_SQL_NOMEM;
	default:
		return P11P_SQL_FAILED;
	}
}

static enum p11p_sql_rc fail(struct lite *l, int code, const char *what)
{
	enum p11p_sql_rc rc = classify(code);

	snprintf(l->base.err, sizeof(l->base.err), "sqlite %s: %s: %s", l->path, what,
	         l->db != NULL ? sqlite3_errmsg(l->db) : sqlite3_errstr(code));
	if (rc == P11P_SQL_DOWN)
		l->force_changed = true;
	return rc;
}

static int simple(struct lite *l, const char *sql)
{
	return sqlite3_exec(l->db, sql, NULL, NULL, NULL);
}

static int read_version(struct lite *l, int64_t *v)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(l->db, "PRAGMA data_version", -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*v = sqlite3_column_int64(st, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

/*
 * simple() of a statement that takes the database's exclusive lock from a
 * read lock (journal_mode=WAL on a new file): SQLite answers SQLITE_BUSY at
 * once, without its busy handler, while another connection reads (two
 * processes opening a new store together). Tried again until the deadline.
 */
static int simple_until(struct lite *l, const char *sql, unsigned timeout_ms)
{
	unsigned long long end = p11p_now_ms() + timeout_ms;
	const struct timespec pause = {0, 5 * 1000 * 1000};
	int rc;

	while ((rc = simple(l, sql)) != SQLITE_OK && (rc & 0xff) == SQLITE_BUSY &&
	       p11p_now_ms() < end)
		nanosleep(&pause, NULL);
	return rc;
}

static int try_open(struct lite *l, const char *name, int flags, unsigned timeout_ms)
{
	int rc;

	rc = sqlite3_open_v2(name, &l->db, flags, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_extended_result_codes(l->db, 1);
	sqlite3_busy_timeout(l->db, timeout_ms > INT32_MAX ? INT32_MAX : (int)timeout_ms);
	if (!l->readonly) {
		int persist = 1;

		rc = simple_until(l, "PRAGMA journal_mode=WAL", timeout_ms);
		if (rc == SQLITE_OK)
			rc = simple(l, "PRAGMA synchronous=FULL");
		if (rc == SQLITE_OK)
			rc =
			    sqlite3_file_control(l->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	} else {
		/* Reads the schema: fails here when the WAL cannot be opened. */
		rc = simple(l, "SELECT count(*) FROM sqlite_master");
	}
	if (rc == SQLITE_OK)
		rc = read_version(l, &l->data_version);
	return rc;
}

static enum p11p_sql_rc lite_open(const char *target, bool readonly, unsigned timeout_ms,
                                  struct p11p_sql **out, char *err, size_t errlen)
{
	struct lite *l = p11p_calloc(1, sizeof(*l));
	int flags = SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX;
	enum p11p_sql_rc rc;
	int code;

	if (l == NULL || (l->path = p11p_strdup(target)) == NULL) {
		p11p_free(l);
		snprintf(err, errlen, "sqlite %s: out of memory", target);
		return P11P_SQL_NOMEM;
	}
	l->readonly = readonly;
	flags |= readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	errno = 0;
	code = try_open(l, target, flags, timeout_ms);
	if (code != SQLITE_OK && readonly) {
		/* No -shm to share and no right to make one: a snapshot. */
		char *uri = sqlite3_mprintf("file:%s?immutable=1", target);

		sqlite3_close(l->db);
		l->db = NULL;
		if (uri == NULL) {
			code = SQLITE_NOMEM;
		} else {
			l->immutable = true;
			code = try_open(l, uri, flags | SQLITE_OPEN_URI, timeout_ms);
			sqlite3_free(uri);
		}
	}
	if (code != SQLITE_OK) {
		rc = fail(l, code, "open");
		snprintf(err, errlen, "%s", l->base.err);
		sqlite3_close(l->db);
		p11p_free(l->path);
		p11p_free(l);
		return rc;
	}
	*out = &l->base;
	return P11P_SQL_OK;
}

static void lite_close(struct p11p_sql *c)
{
	struct lite *l = (struct lite *)c;

	for (unsigned i = 0; i < CACHE_N; i++) {
		sqlite3_finalize(l->cache[i].st);
		p11p_free(l->cache[i].sql);
	}
	sqlite3_close_v2(l->db);
	p11p_free(l->path);
	p11p_free(l);
}

static void lite_abandon(struct p11p_sql *c)
{
	struct lite *l = (struct lite *)c;

	pthread_mutex_lock(&abandoned_mu);
	l->abandoned_next = abandoned;
	abandoned = l;
	pthread_mutex_unlock(&abandoned_mu);
}

static int bind_all(sqlite3_stmt *st, const struct p11p_sql_val *params, size_t nparams)
{
	for (size_t i = 0; i < nparams; i++) {
		const struct p11p_sql_val *v = &params[i];
		char name[24];
		int at, rc;

		snprintf(name, sizeof(name), "$%zu", i + 1);
		at = sqlite3_bind_parameter_index(st, name);
		if (at == 0)
			continue;
		switch (v->type) {
		case P11P_SQL_INT:
			rc = sqlite3_bind_int64(st, at, v->i);
			break;
		case P11P_SQL_TEXT:
			if (v->len > INT32_MAX)
				return SQLITE_TOOBIG;
			rc = sqlite3_bind_text(st, at, v->p != NULL ? v->p : "", (int)v->len,
			                       SQLITE_STATIC);
			break;
		case P11P_SQL_BLOB:
			if (v->len > INT32_MAX)
				return SQLITE_TOOBIG;
			rc = sqlite3_bind_blob(st, at, v->p != NULL ? v->p : "", (int)v->len,
			                       SQLITE_STATIC);
			break;
		default:
			rc = sqlite3_bind_null(st, at);
			break;
		}
		if (rc != SQLITE_OK)
			return rc;
	}
	return SQLITE_OK;
}

#define MAX_COLS 32

/*
 * A prepared statement for sql: from the cache when the same text was
 * prepared before (compared by content), else prepared and cached
 * (round-robin eviction). NULL with *rc on failure. The connection is used
 * by one thread at a time and no row callback runs a statement, so a cached
 * statement is never in use twice.
 */
static sqlite3_stmt *prepare(struct lite *l, const char *sql, int *rc)
{
	sqlite3_stmt *st = NULL;
	unsigned slot;

	for (unsigned i = 0; i < CACHE_N; i++) {
		if (l->cache[i].st != NULL && strcmp(l->cache[i].sql, sql) == 0)
			return l->cache[i].st;
	}
	*rc = sqlite3_prepare_v3(l->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
	if (*rc != SQLITE_OK) {
		sqlite3_finalize(st);
		return NULL;
	}
	slot = l->cache_next++ % CACHE_N;
	sqlite3_finalize(l->cache[slot].st);
	/* The text is kept as a copy: callers may pass non-literal statements. */
	p11p_free(l->cache[slot].sql);
	l->cache[slot].sql = p11p_strdup(sql);
	if (l->cache[slot].sql == NULL) {
		l->cache[slot].st = NULL;
		sqlite3_finalize(st);
		*rc = SQLITE_NOMEM;
		return NULL;
	}
	l->cache[slot].st = st;
	return st;
}

/* Back to its initial state for the next use (bindings to SQLITE_STATIC buffers dropped). */
static void done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static enum p11p_sql_rc lite_exec(struct p11p_sql *c, const char *sql,
                                  const struct p11p_sql_val *params, size_t nparams,
                                  p11p_sql_row_fn row, void *arg)
{
	struct lite *l = (struct lite *)c;
	struct p11p_sql_val cols[MAX_COLS];
	sqlite3_stmt *st = NULL;
	int rc, n;

	st = prepare(l, sql, &rc);
	if (st == NULL)
		return fail(l, rc, "prepare");
	rc = bind_all(st, params, nparams);
	if (rc != SQLITE_OK) {
		done(st);
		return fail(l, rc, "bind");
	}
	n = sqlite3_column_count(st);
	if (n > MAX_COLS) {
		done(st);
		snprintf(l->base.err, sizeof(l->base.err), "sqlite %s: more than %d columns",
		         l->path, MAX_COLS);
		return P11P_SQL_FAILED;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (row == NULL)
			continue;
		for (int i = 0; i < n; i++) {
			/* One call into the statement per column; the value is read after it. */
			sqlite3_value *sv = sqlite3_column_value(st, i);
			struct p11p_sql_val *v = &cols[i];

			memset(v, 0, sizeof(*v));
			switch (sqlite3_value_type(sv)) {
			case SQLITE_INTEGER:
				v->type = P11P_SQL_INT;
				v->i = sqlite3_value_int64(sv);
				break;
			case SQLITE_TEXT:
				v->type = P11P_SQL_TEXT;
				v->p = sqlite3_value_text(sv);
				v->len = (size_t)sqlite3_value_bytes(sv);
				break;
			case SQLITE_BLOB:
				v->type = P11P_SQL_BLOB;
				v->p = sqlite3_value_blob(sv);
				v->len = (size_t)sqlite3_value_bytes(sv);
				break;
			case SQLITE_FLOAT:
				v->type = P11P_SQL_INT;
				v->i = (int64_t)sqlite3_value_double(sv);
				break;
			default:
				v->type = P11P_SQL_NULL;
				break;
			}
			if ((v->type == P11P_SQL_TEXT || v->type == P11P_SQL_BLOB) &&
			    v->p == NULL && v->len > 0) {
				done(st);
				return fail(l, SQLITE_NOMEM, "read");
			}
		}
		if (row(arg, cols, (size_t)n) != 0) {
			done(st);
			return P11P_SQL_OK;
		}
	}
	if (rc != SQLITE_DONE) {
		enum p11p_sql_rc r = fail(l, rc, "step");

		done(st);
		return r;
	}
	done(st);
	return P11P_SQL_OK;
}

static enum p11p_sql_rc lite_simple(struct lite *l, const char *sql, const char *what)
{
	int rc = simple(l, sql);

	return rc == SQLITE_OK ? P11P_SQL_OK : fail(l, rc, what);
}

static enum p11p_sql_rc lite_begin(struct p11p_sql *c)
{
	struct lite *l = (struct lite *)c;

	if (l->readonly) {
		snprintf(l->base.err, sizeof(l->base.err), "sqlite %s: opened read-only", l->path);
		return P11P_SQL_DENIED;
	}
	return lite_simple(l, "BEGIN IMMEDIATE", "begin");
}

static enum p11p_sql_rc lite_commit(struct p11p_sql *c)
{
	struct lite *l = (struct lite *)c;
	enum p11p_sql_rc rc = lite_simple(l, "COMMIT", "commit");

	if (rc != P11P_SQL_OK && !sqlite3_get_autocommit(l->db))
		(void)simple(l, "ROLLBACK");
	return rc;
}

static void lite_rollback(struct p11p_sql *c)
{
	struct lite *l = (struct lite *)c;

	if (!sqlite3_get_autocommit(l->db))
		(void)simple(l, "ROLLBACK");
}

static enum p11p_sql_rc lite_changed(struct p11p_sql *c, bool *changed)
{
	struct lite *l = (struct lite *)c;
	int64_t v = 0;
	int rc;

	if (l->immutable)
		return P11P_SQL_OK;
	rc = read_version(l, &v);
	if (rc != SQLITE_OK)
		return fail(l, rc, "data_version");
	*changed = v != l->data_version || l->force_changed;
	l->data_version = v;
	l->force_changed = false;
	return P11P_SQL_OK;
}

static int lite_notify_fd(struct p11p_sql *c)
{
	(void)c;
	return -1;
}

const struct p11p_sql_driver p11p_sql_sqlite_driver = {
    .engine = P11P_SQL_SQLITE,
    .open = lite_open,
    .close = lite_close,
    .abandon = lite_abandon,
    .exec = lite_exec,
    .begin = lite_begin,
    .commit = lite_commit,
    .rollback = lite_rollback,
    .changed = lite_changed,
    .notify_fd = lite_notify_fd,
};
