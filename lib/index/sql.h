/*
 * The SQL engines under the store (lib/index): one small driver interface,
 * two drivers. The store (schema, migrations, records, audit chain, the
 * in-memory copy) is written once over it; a driver only runs statements.
 *
 *   lib/index/sqlite.c   SQLite (a file path): WAL, synchronous=FULL
 *   lib/index/pg.c       PostgreSQL (a postgresql:// URI), libpq
 *
 * Statements use $1, $2, ... for parameters in both engines (the SQLite
 * driver binds them by name). Values cross the interface typed: NULL,
 * 64-bit integer, text (bytes, not NUL-terminated on the way in) or blob.
 * A result value points into the driver's memory and is valid only during
 * the row callback.
 *
 * Errors are classified so that the store can act on them without parsing
 * messages; p11p_sql_error() holds one line naming the engine and target
 * ("sqlite /var/lib/p11proxy/keys.db: ..." / "postgresql host/db: ...") and
 * never a parameter value or the password.
 *
 * Threads: a connection is used by one thread at a time (the store's mutex).
 * Fork: a connection belongs to the process that opened it; a child closes
 * it with p11p_sql_abandon(), which frees memory and descriptors without
 * talking to the server or touching the database's locks.
 */
#ifndef P11P_INDEX_SQL_H
#define P11P_INDEX_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum p11p_sql_engine {
	P11P_SQL_SQLITE = 1,
	P11P_SQL_PG = 2,
};

enum p11p_sql_rc {
	P11P_SQL_OK = 0,
	P11P_SQL_DOWN,     /* cannot reach the store (server down, connection lost, I/O) */
	P11P_SQL_DENIED,   /* refused by the store: permission, read-only database or directory */
	P11P_SQL_CONFLICT, /* another writer won: busy, serialization failure, unique violation */
	P11P_SQL_CORRUPT,  /* the database is damaged or not ours (bad schema, bad file) */
	P11P_SQL_FAILED,   /* anything else (a bad statement is a bug: logged as such) */
	P11P_SQL_NOMEM,
};

enum p11p_sql_type {
	P11P_SQL_NULL = 0,
	P11P_SQL_INT,
	P11P_SQL_TEXT,
	P11P_SQL_BLOB,
};

struct p11p_sql_val {
	enum p11p_sql_type type;
	int64_t i;     /* P11P_SQL_INT */
	const void *p; /* P11P_SQL_TEXT, P11P_SQL_BLOB: len bytes (p may be NULL when len is 0) */
	size_t len;
};

/* Row callback: 0 to go on, non-zero to stop (exec then returns P11P_SQL_OK). */
typedef int (*p11p_sql_row_fn)(void *arg, const struct p11p_sql_val *cols, size_t ncols);

struct p11p_sql;

/*
 * Opens a connection. target: a file path (SQLite) or a postgresql:// URI
 * (PostgreSQL; the password comes from libpq's passfile or PGPASSFILE, never
 * from the URI: a URI with a password is refused). readonly: the connection
 * never writes (SQLite: opened read-only, works in a directory the process
 * may not write when the database is in WAL mode with its -shm present, else
 * falls back to immutable reads; PostgreSQL: default_transaction_read_only).
 * timeout_ms bounds connecting and every statement (SQLite: busy timeout;
 * PostgreSQL: connect_timeout, statement_timeout and a poll deadline).
 */
enum p11p_sql_rc p11p_sql_open(const char *target, bool readonly, unsigned timeout_ms,
                               struct p11p_sql **out, char *err, size_t errlen);
void p11p_sql_close(struct p11p_sql *c);
void p11p_sql_abandon(struct p11p_sql *c);

enum p11p_sql_engine p11p_sql_engine_of(const struct p11p_sql *c);
/* true when target names a PostgreSQL store (postgresql:// or postgres://). */
bool p11p_sql_is_pg(const char *target);

/* One statement; row (may be NULL) sees each result row. */
enum p11p_sql_rc p11p_sql_exec(struct p11p_sql *c, const char *sql,
                               const struct p11p_sql_val *params, size_t nparams,
                               p11p_sql_row_fn row, void *arg);

/*
 * A bulk read (the store's load of its records): one SELECT whose ncols
 * result columns have the given types (P11P_SQL_INT for BIGINT, P11P_SQL_TEXT,
 * P11P_SQL_BLOB; at most 32 columns), with integer parameters only; row sees
 * each result row as with exec. PostgreSQL runs it as COPY (...) TO STDOUT
 * (FORMAT binary) and parses the rows straight from the stream (index/pgcopy.h:
 * framing, field counts and lengths checked; a malformed stream fails the
 * read, P11P_SQL_FAILED); a value there is of its column's type or NULL.
 * SQLite runs exec. Either way the callback still checks every value.
 */
enum p11p_sql_rc p11p_sql_read(struct p11p_sql *c, const char *sql,
                               const struct p11p_sql_val *params, size_t nparams,
                               const enum p11p_sql_type *types, size_t ncols, p11p_sql_row_fn row,
                               void *arg);

/*
 * Write transactions: begin takes the store's write lock at once (SQLite:
 * BEGIN IMMEDIATE; PostgreSQL: BEGIN, then a transaction-level advisory lock
 * shared by every p11proxy writer of that database), so that writers are
 * serialised and a read-modify-write inside is safe. commit is durable when
 * it returns P11P_SQL_OK.
 */
enum p11p_sql_rc p11p_sql_begin(struct p11p_sql *c);
enum p11p_sql_rc p11p_sql_commit(struct p11p_sql *c);
void p11p_sql_rollback(struct p11p_sql *c);

/*
 * Change notice, cheap enough for every refresh: *changed is true when some
 * other connection may have committed since the last call (SQLite: PRAGMA
 * data_version; PostgreSQL: a NOTIFY on channel "p11proxy" received on this
 * connection, which LISTENs from open; the store's writers NOTIFY in their
 * transactions). Never blocks. After a P11P_SQL_DOWN the next successful
 * call reports changed (the caller reloads).
 */
enum p11p_sql_rc p11p_sql_changed(struct p11p_sql *c, bool *changed);
/* A descriptor that becomes readable when a notice may be waiting (-1: none; SQLite). */
int p11p_sql_notify_fd(struct p11p_sql *c);

/* The last failure's message ("" if none). */
const char *p11p_sql_error(const struct p11p_sql *c);

/*
 * What a driver provides (lib/index/sql.c dispatches to it by target; every
 * connection begins with the driver's pointer, struct p11p_sql_conn). The
 * functions have the meaning of the p11p_sql_* functions of the same name;
 * sql.c checks the arguments and keeps the error message, so a driver
 * writes its message into c->err.
 */
#define P11P_SQL_ERR_MAX 512
struct p11p_sql_driver;
struct p11p_sql {
	const struct p11p_sql_driver *drv;
	char err[P11P_SQL_ERR_MAX];
};
struct p11p_sql_driver {
	enum p11p_sql_engine engine;
	enum p11p_sql_rc (*open)(const char *target, bool readonly, unsigned timeout_ms,
	                         struct p11p_sql **out, char *err, size_t errlen);
	void (*close)(struct p11p_sql *c);
	void (*abandon)(struct p11p_sql *c);
	enum p11p_sql_rc (*exec)(struct p11p_sql *c, const char *sql,
	                         const struct p11p_sql_val *params, size_t nparams,
	                         p11p_sql_row_fn row, void *arg);
	/* NULL: p11p_sql_read runs exec. */
	enum p11p_sql_rc (*read)(struct p11p_sql *c, const char *sql,
	                         const struct p11p_sql_val *params, size_t nparams,
	                         const enum p11p_sql_type *types, size_t ncols, p11p_sql_row_fn row,
	                         void *arg);
	enum p11p_sql_rc (*begin)(struct p11p_sql *c);
	enum p11p_sql_rc (*commit)(struct p11p_sql *c);
	void (*rollback)(struct p11p_sql *c);
	enum p11p_sql_rc (*changed)(struct p11p_sql *c, bool *changed);
	int (*notify_fd)(struct p11p_sql *c);
};
/* A driver's connection struct begins with a struct p11p_sql (named base). */
extern const struct p11p_sql_driver p11p_sql_sqlite_driver; /* lib/index/sqlite.c */
extern const struct p11p_sql_driver p11p_sql_pg_driver;     /* lib/index/pg.c */

#endif
