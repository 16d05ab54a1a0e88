/*
 * The PostgreSQL driver (lib/index/pg.c) against a real server, for
 * tests/suites/62-pgstore.sh. The driver is used through its table
 * (p11p_sql_pg_driver), exactly as lib/index/sql.c dispatches to it.
 *
 *   pgdriver types URI       every parameter and result type, blobs with NULs,
 *                            errors classified (syntax, unique, read-only)
 *   pgdriver tx URI          commit, rollback, a failed transaction's commit
 *   pgdriver lock URI        two connections: begin serialises them; a lock
 *                            wait and a slow statement end within the timeout
 *   pgdriver notify URI      a commit on one connection is seen by the other's
 *                            changed() and wakes its notify_fd; not by its own
 *   pgdriver password URI    a URI with a password is refused, naming the
 *                            passfile, without the password in the message
 *   pgdriver fork URI        a child abandons the connection; the parent's
 *                            connection still works
 *   pgdriver down URI        steps driven over stdin/stdout by the suite:
 *                            "ready" -> (server stopped) "stopped" -> DOWN,
 *                            a transaction's commit not acknowledged ->
 *                            (server started) "started" -> reconnects by
 *                            itself, changed reported, the lost row absent
 *   pgdriver writer URI TAG  inserts rows TAG-0, TAG-1, ... one transaction
 *                            each, and writes "i\n" with one write(2) after
 *                            each commit returned OK (a promise of
 *                            durability); ends at the first failure
 *   pgdriver check URI TAG N rows TAG-0..TAG-(N-1) are all there
 *   pgdriver load URI        the bulk read (COPY binary) and the store's load
 *                            through it; damaged rows refused (URI: an empty
 *                            database)
 *   pgdriver sql URI RC SQL [RC SQL ...]
 *                            runs each SQL (one statement, no parameters) on
 *                            one connection and expects the answer RC (OK,
 *                            DENIED, ...); prints each answer and message
 *
 * Exit 0 when every check holds; failures are printed on stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "index/index.h"
#include "index/schema.h"
#include "index/sql.h"

static const struct p11p_sql_driver *D = &p11p_sql_pg_driver;
static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "pgdriver:%d: %s: ", __LINE__, #cond);                     \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

static const char *rcname(enum p11p_sql_rc rc)
{
	static const char *const names[] = {"OK",      "DOWN",   "DENIED", "CONFLICT",
	                                    "CORRUPT", "FAILED", "NOMEM"};
	return (unsigned)rc < sizeof(names) / sizeof(names[0]) ? names[rc] : "?";
}

static struct p11p_sql *open_or_die(const char *uri, bool ro, unsigned timeout_ms)
{
	struct p11p_sql *c = NULL;
	char err[P11P_SQL_ERR_MAX];
	enum p11p_sql_rc rc = D->open(uri, ro, timeout_ms, &c, err, sizeof(err));
	if (rc != P11P_SQL_OK) {
		fprintf(stderr, "pgdriver: open: %s: %s\n", rcname(rc), err);
		exit(1);
	}
	return c;
}

static enum p11p_sql_rc ex(struct p11p_sql *c, const char *sql)
{
	enum p11p_sql_rc rc = D->exec(c, sql, NULL, 0, NULL, NULL);
	if (rc != P11P_SQL_OK)
		fprintf(stderr, "pgdriver: (%s: %s) %s\n", sql, rcname(rc), c->err);
	return rc;
}

/* Collects the first row's values (copies). */
struct row1 {
	size_t rows, ncols;
	struct p11p_sql_val v[8];
	unsigned char buf[8][256];
};

static int take_row(void *arg, const struct p11p_sql_val *cols, size_t ncols)
{
	struct row1 *r = arg;
	if (r->rows++ == 0) {
		r->ncols = ncols;
		for (size_t i = 0; i < ncols && i < 8; i++) {
			r->v[i] = cols[i];
			if ((cols[i].type == P11P_SQL_TEXT || cols[i].type == P11P_SQL_BLOB) &&
			    cols[i].len <= sizeof(r->buf[i])) {
				if (cols[i].len)
					memcpy(r->buf[i], cols[i].p, cols[i].len);
				r->v[i].p = r->buf[i];
			}
		}
	}
	return 0;
}

static int count_rows(void *arg, const struct p11p_sql_val *cols, size_t ncols)
{
	(*(size_t *)arg)++;
	return 0;
}

static int stop_at_two(void *arg, const struct p11p_sql_val *cols, size_t ncols)
{
	return ++*(size_t *)arg == 2;
}

static int64_t count_of(struct p11p_sql *c, const char *sql)
{
	struct row1 r = {0};
	enum p11p_sql_rc rc = D->exec(c, sql, NULL, 0, take_row, &r);
	if (rc != P11P_SQL_OK || r.rows != 1 || r.v[0].type != P11P_SQL_INT)
		return -1;
	return r.v[0].i;
}

static int t_types(const char *uri)
{
	struct p11p_sql *c = open_or_die(uri, false, 5000);
	CHECK(D->engine == P11P_SQL_PG, "engine");
	ex(c, "DROP TABLE IF EXISTS t_types");
	CHECK(ex(c, "CREATE TABLE t_types (k bigint PRIMARY KEY, i bigint, s text, b bytea, n "
	            "text, small integer, flag boolean)") == P11P_SQL_OK,
	      "create");

	static const unsigned char blob[] = {0, 1, 0, 0xff, 0x80, 0, '\\', 'x', 0};
	static const char text[] = "caf\xc3\xa9 'quoted' \\ $1";
	const int64_t ints[] = {INT64_MIN, -1, 0, 1, INT64_MAX};
	for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]); k++) {
		struct p11p_sql_val p[5] = {
		    {.type = P11P_SQL_INT, .i = (int64_t)k},
		    {.type = P11P_SQL_INT, .i = ints[k]},
		    {.type = P11P_SQL_TEXT, .p = text, .len = strlen(text)},
		    {.type = P11P_SQL_BLOB, .p = blob, .len = sizeof(blob)},
		    {.type = P11P_SQL_NULL},
		};
		enum p11p_sql_rc rc = D->exec(c,
		                              "INSERT INTO t_types (k, i, s, b, n, small, flag) "
		                              "VALUES ($1, $2, $3, $4, $5, 7, true)",
		                              p, 5, NULL, NULL);
		CHECK(rc == P11P_SQL_OK, "insert %zu: %s %s", k, rcname(rc), c->err);
	}
	for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]); k++) {
		struct row1 r = {0};
		struct p11p_sql_val key = {.type = P11P_SQL_INT, .i = (int64_t)k};
		enum p11p_sql_rc rc =
		    D->exec(c, "SELECT k, i, s, b, n, small, flag FROM t_types WHERE k = $1", &key,
		            1, take_row, &r);
		CHECK(rc == P11P_SQL_OK && r.rows == 1 && r.ncols == 7, "select %zu: %s", k,
		      rcname(rc));
		CHECK(r.v[0].type == P11P_SQL_INT && r.v[0].i == (int64_t)k, "k");
		CHECK(r.v[1].type == P11P_SQL_INT && r.v[1].i == ints[k], "int %" PRId64, ints[k]);
		CHECK(r.v[2].type == P11P_SQL_TEXT && r.v[2].len == strlen(text) &&
		          memcmp(r.v[2].p, text, strlen(text)) == 0,
		      "text");
		CHECK(r.v[3].type == P11P_SQL_BLOB && r.v[3].len == sizeof(blob) &&
		          memcmp(r.v[3].p, blob, sizeof(blob)) == 0,
		      "blob with NULs (len %zu)", r.v[3].len);
		CHECK(r.v[4].type == P11P_SQL_NULL, "null");
		CHECK(r.v[5].type == P11P_SQL_INT && r.v[5].i == 7, "int4");
		CHECK(r.v[6].type == P11P_SQL_INT && r.v[6].i == 1, "bool");
	}
	/* Empty text and blob are values, not NULL. */
	struct p11p_sql_val e[3] = {{.type = P11P_SQL_INT, .i = 100},
	                            {.type = P11P_SQL_TEXT, .p = NULL, .len = 0},
	                            {.type = P11P_SQL_BLOB, .p = NULL, .len = 0}};
	CHECK(D->exec(c, "INSERT INTO t_types (k, s, b) VALUES ($1, $2, $3)", e, 3, NULL, NULL) ==
	          P11P_SQL_OK,
	      "empty values: %s", c->err);
	struct row1 r = {0};
	CHECK(D->exec(c, "SELECT s, b FROM t_types WHERE k = 100", NULL, 0, take_row, &r) ==
	          P11P_SQL_OK,
	      "select empty");
	CHECK(r.v[0].type == P11P_SQL_TEXT && r.v[0].len == 0, "empty text");
	CHECK(r.v[1].type == P11P_SQL_BLOB && r.v[1].len == 0, "empty blob");

	/*
	 * Results of a statement with parameters come in binary format: narrow integers keep
	 * their sign, an oid is unsigned, a name is text, and a type the driver does not read
	 * fails the statement rather than passing its bytes on as text.
	 */
	struct p11p_sql_val one = {.type = P11P_SQL_INT, .i = 1};
	memset(&r, 0, sizeof(r));
	CHECK(D->exec(c,
	              "SELECT (-2)::smallint, (-70000)::integer, 4000000000::oid, "
	              "current_database(), $1::bigint, 'vc'::varchar, false",
	              &one, 1, take_row, &r) == P11P_SQL_OK &&
	          r.rows == 1 && r.ncols == 7,
	      "binary types: %s", c->err);
	CHECK(r.v[0].type == P11P_SQL_INT && r.v[0].i == -2, "int2 -2: %" PRId64, r.v[0].i);
	CHECK(r.v[1].type == P11P_SQL_INT && r.v[1].i == -70000, "int4 -70000: %" PRId64, r.v[1].i);
	CHECK(r.v[2].type == P11P_SQL_INT && r.v[2].i == INT64_C(4000000000), "oid: %" PRId64,
	      r.v[2].i);
	CHECK(r.v[3].type == P11P_SQL_TEXT && r.v[3].len > 0 &&
	          memchr(r.v[3].p, 0, r.v[3].len) == NULL,
	      "name as text");
	CHECK(r.v[4].type == P11P_SQL_INT && r.v[4].i == 1, "int8");
	CHECK(r.v[5].type == P11P_SQL_TEXT && r.v[5].len == 2 && memcmp(r.v[5].p, "vc", 2) == 0,
	      "varchar");
	CHECK(r.v[6].type == P11P_SQL_INT && r.v[6].i == 0, "bool false");
	memset(&r, 0, sizeof(r));
	CHECK(D->exec(c, "SELECT 1.5::numeric + $1", &one, 1, take_row, &r) == P11P_SQL_FAILED &&
	          r.rows == 0 && strstr(c->err, "binary") != NULL,
	      "a numeric column refused: %s", c->err);

	size_t n = 0;
	CHECK(D->exec(c, "SELECT k FROM t_types", NULL, 0, count_rows, &n) == P11P_SQL_OK && n == 6,
	      "6 rows, %zu", n);
	n = 0;
	CHECK(D->exec(c, "SELECT k FROM t_types", NULL, 0, stop_at_two, &n) == P11P_SQL_OK &&
	          n == 2,
	      "the callback stops the rows (%zu)", n);
	/* The connection is still usable after a stopped result. */
	CHECK(count_of(c, "SELECT count(*) FROM t_types") == 6, "count after stop");

	/* Errors by class, and the connection goes on. */
	enum p11p_sql_rc rc = D->exec(c, "SELEC nonsense", NULL, 0, NULL, NULL);
	CHECK(rc == P11P_SQL_FAILED && strstr(c->err, "42601"), "syntax: %s %s", rcname(rc),
	      c->err);
	struct p11p_sql_val dup[1] = {{.type = P11P_SQL_INT, .i = 0}};
	rc = D->exec(c, "INSERT INTO t_types (k) VALUES ($1)", dup, 1, NULL, NULL);
	CHECK(rc == P11P_SQL_CONFLICT, "unique: %s %s", rcname(rc), c->err);
	struct p11p_sql_val bad[1] = {{.type = P11P_SQL_TEXT, .p = "secret-value", .len = 12}};
	rc = D->exec(c, "SELECT $1::bigint", bad, 1, NULL, NULL);
	CHECK(rc == P11P_SQL_FAILED && !strstr(c->err, "secret-value"),
	      "a data error does not quote the value: %s", c->err);
	CHECK(count_of(c, "SELECT count(*) FROM t_types") == 6, "usable after errors");
	D->close(c);

	/* A read-only connection is refused writes by the server. */
	c = open_or_die(uri, true, 5000);
	rc = D->exec(c, "DELETE FROM t_types", NULL, 0, NULL, NULL);
	CHECK(rc == P11P_SQL_DENIED && strstr(c->err, "25006"), "read-only: %s %s", rcname(rc),
	      c->err);
	CHECK(count_of(c, "SELECT count(*) FROM t_types") == 6, "read-only reads");
	D->close(c);
	return failures != 0;
}

static int t_tx(const char *uri)
{
	struct p11p_sql *c = open_or_die(uri, false, 5000);
	ex(c, "DROP TABLE IF EXISTS t_tx");
	ex(c, "CREATE TABLE t_tx (k bigint PRIMARY KEY)");
	CHECK(D->begin(c) == P11P_SQL_OK, "begin: %s", c->err);
	CHECK(D->begin(c) == P11P_SQL_FAILED, "nested begin refused");
	ex(c, "INSERT INTO t_tx VALUES (1)");
	D->rollback(c);
	CHECK(count_of(c, "SELECT count(*) FROM t_tx") == 0, "rolled back");

	CHECK(D->begin(c) == P11P_SQL_OK, "begin");
	ex(c, "INSERT INTO t_tx VALUES (2)");
	CHECK(D->commit(c) == P11P_SQL_OK, "commit: %s", c->err);
	CHECK(count_of(c, "SELECT count(*) FROM t_tx") == 1, "committed");

	/* A failed statement spoils the transaction: commit says so, nothing is kept. */
	CHECK(D->begin(c) == P11P_SQL_OK, "begin");
	ex(c, "INSERT INTO t_tx VALUES (3)");
	CHECK(D->exec(c, "INSERT INTO t_tx VALUES (2)", NULL, 0, NULL, NULL) == P11P_SQL_CONFLICT,
	      "dup");
	enum p11p_sql_rc rc = D->commit(c);
	CHECK(rc != P11P_SQL_OK, "commit of a failed transaction: %s", rcname(rc));
	CHECK(count_of(c, "SELECT count(*) FROM t_tx") == 1, "nothing of it kept");
	CHECK(D->commit(c) == P11P_SQL_FAILED, "commit without begin");
	D->close(c);
	return failures != 0;
}

struct locker {
	const char *uri;
	unsigned long long begun_at, committed_at;
	enum p11p_sql_rc rc;
};

static void *lock_thread(void *arg)
{
	struct locker *l = arg;
	struct p11p_sql *c = open_or_die(l->uri, false, 10000);
	l->rc = D->begin(c);
	l->begun_at = p11p_now_ms();
	if (l->rc == P11P_SQL_OK) {
		ex(c, "INSERT INTO t_lock VALUES (2)");
		l->rc = D->commit(c);
		l->committed_at = p11p_now_ms();
	}
	D->close(c);
	return NULL;
}

static int t_lock(const char *uri)
{
	struct p11p_sql *a = open_or_die(uri, false, 5000);
	ex(a, "DROP TABLE IF EXISTS t_lock");
	ex(a, "CREATE TABLE t_lock (k bigint PRIMARY KEY)");
	CHECK(D->begin(a) == P11P_SQL_OK, "a begins");
	unsigned long long held = p11p_now_ms();
	struct locker l = {.uri = uri};
	pthread_t th;
	if (pthread_create(&th, NULL, lock_thread, &l) != 0)
		return 1;
	struct timespec ts = {0, 400 * 1000 * 1000};
	nanosleep(&ts, NULL);
	ex(a, "INSERT INTO t_lock VALUES (1)");
	unsigned long long released = p11p_now_ms();
	CHECK(D->commit(a) == P11P_SQL_OK, "a commits");
	pthread_join(th, NULL);
	CHECK(l.rc == P11P_SQL_OK, "b: %s", rcname(l.rc));
	CHECK(l.begun_at >= released, "b's begin waited for a's commit (%llu ms after a began)",
	      l.begun_at - held);
	printf("b's begin waited %llu ms for a's transaction\n", l.begun_at - held);

	/* Bounded: a lock wait and a slow statement end within the timeout. */
	struct p11p_sql *b = open_or_die(uri, false, 1000);
	CHECK(D->begin(a) == P11P_SQL_OK, "a holds");
	unsigned long long t0 = p11p_now_ms();
	enum p11p_sql_rc rc = D->begin(b);
	unsigned long long waited = p11p_now_ms() - t0;
	CHECK(rc == P11P_SQL_CONFLICT, "lock wait: %s %s", rcname(rc), b->err);
	CHECK(waited >= 800 && waited < 3000, "lock wait bounded: %llu ms", waited);
	printf("lock wait ended after %llu ms (timeout 1000): %s\n", waited, rcname(rc));
	D->rollback(a);
	t0 = p11p_now_ms();
	rc = D->exec(b, "SELECT pg_sleep(30)", NULL, 0, NULL, NULL);
	waited = p11p_now_ms() - t0;
	CHECK(rc == P11P_SQL_DOWN && waited < 3000, "slow statement: %s after %llu ms (%s)",
	      rcname(rc), waited, b->err);
	printf("slow statement ended after %llu ms (timeout 1000): %s\n", waited, rcname(rc));
	CHECK(count_of(b, "SELECT count(*) FROM t_lock") == 2, "b usable after its timeout");
	D->close(b);
	D->close(a);
	return failures != 0;
}

static int wait_readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, ms);
}

static int t_notify(const char *uri)
{
	struct p11p_sql *a = open_or_die(uri, false, 5000);
	struct p11p_sql *b = open_or_die(uri, true, 5000);
	bool ch = true;
	ex(a, "DROP TABLE IF EXISTS t_notify");
	ex(a, "CREATE TABLE t_notify (k bigint)");
	/* Settle: nothing pending on either side. */
	CHECK(D->changed(a, &ch) == P11P_SQL_OK, "a changed");
	CHECK(D->changed(b, &ch) == P11P_SQL_OK && !ch, "b quiet at first");
	int fd = D->notify_fd(b);
	CHECK(fd >= 0, "notify fd");

	CHECK(D->begin(a) == P11P_SQL_OK, "begin");
	ex(a, "INSERT INTO t_notify VALUES (1)");
	CHECK(wait_readable(fd, 200) == 0, "nothing before the commit");
	CHECK(D->changed(b, &ch) == P11P_SQL_OK && !ch, "no change before the commit");
	unsigned long long t0 = p11p_now_ms();
	CHECK(D->commit(a) == P11P_SQL_OK, "commit");
	CHECK(wait_readable(fd, 1000) == 1, "notify fd readable after the commit");
	ch = false;
	for (int i = 0; i < 100 && !ch; i++) {
		CHECK(D->changed(b, &ch) == P11P_SQL_OK, "changed");
		if (!ch)
			wait_readable(fd, 10);
	}
	unsigned long long dt = p11p_now_ms() - t0;
	CHECK(ch, "b saw the commit");
	printf("change seen by the other connection after %llu ms\n", dt);
	CHECK(D->changed(b, &ch) == P11P_SQL_OK && !ch, "consumed");
	/* a's own commit is not a change for a. */
	CHECK(D->changed(a, &ch) == P11P_SQL_OK && !ch, "a does not see its own commit");
	/* A rolled back transaction notifies nobody. */
	CHECK(D->begin(a) == P11P_SQL_OK, "begin");
	ex(a, "INSERT INTO t_notify VALUES (2)");
	D->rollback(a);
	CHECK(wait_readable(fd, 200) == 0, "no notice for a rollback");
	CHECK(D->changed(b, &ch) == P11P_SQL_OK && !ch, "no change for a rollback");
	D->close(a);
	D->close(b);
	return failures != 0;
}

static int t_password(const char *uri)
{
	static const char *const bad[] = {
	    "postgresql://app:Sup3rSecret@localhost/p11proxy",
	    "postgresql://localhost/p11proxy?user=app&password=Sup3rSecret",
	    "postgres://app:Sup3rSecret@/p11proxy?host=/nonexistent",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct p11p_sql *c = NULL;
		char err[P11P_SQL_ERR_MAX] = "";
		enum p11p_sql_rc rc = D->open(bad[i], false, 1000, &c, err, sizeof(err));
		CHECK(rc == P11P_SQL_DENIED && c == NULL, "refused: %s", rcname(rc));
		CHECK(strstr(err, "passfile") != NULL, "names the passfile: %s", err);
		CHECK(strstr(err, "Sup3rSecret") == NULL, "no password in: %s", err);
		printf("%s\n", err);
	}
	/* Not a URI for this driver. */
	struct p11p_sql *c = NULL;
	char err[P11P_SQL_ERR_MAX] = "";
	CHECK(D->open("/var/lib/p11proxy/keys.db", false, 1000, &c, err, sizeof(err)) ==
	          P11P_SQL_FAILED,
	      "a path is not a URI");
	/* A server that is not there: DOWN, within the timeout. */
	unsigned long long t0 = p11p_now_ms();
	enum p11p_sql_rc rc = D->open("postgresql:///p11proxy?host=/nonexistent-dir", false, 1000,
	                              &c, err, sizeof(err));
	CHECK(rc == P11P_SQL_DOWN && p11p_now_ms() - t0 < 3000, "no server: %s %s", rcname(rc),
	      err);
	return failures != 0;
}

static int t_fork(const char *uri)
{
	struct p11p_sql *c = open_or_die(uri, false, 5000);
	CHECK(count_of(c, "SELECT 1") == 1, "before fork");
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		D->abandon(c);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child");
	/* Had the child said goodbye on the socket, the server would have ended the session. */
	CHECK(count_of(c, "SELECT 2") == 2, "the parent's connection survived the child: %s",
	      c->err);
	bool ch;
	CHECK(D->changed(c, &ch) == P11P_SQL_OK, "changed after the child: %s", c->err);
	D->close(c);
	return failures != 0;
}

static bool expect_line(const char *want)
{
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		return false;
	line[strcspn(line, "\n")] = '\0';
	return strcmp(line, want) == 0;
}

static int t_down(const char *uri)
{
	struct p11p_sql *c = open_or_die(uri, false, 2000);
	ex(c, "DROP TABLE IF EXISTS t_down");
	ex(c, "CREATE TABLE t_down (k bigint)");
	CHECK(D->begin(c) == P11P_SQL_OK, "begin");
	CHECK(ex(c, "INSERT INTO t_down VALUES (1)") == P11P_SQL_OK, "insert in the open tx");
	printf("ready\n");
	fflush(stdout);
	if (!expect_line("stopped"))
		return 1;
	enum p11p_sql_rc rc = D->exec(c, "INSERT INTO t_down VALUES (2)", NULL, 0, NULL, NULL);
	CHECK(rc == P11P_SQL_DOWN, "exec with the server gone: %s (%s)", rcname(rc), c->err);
	rc = D->commit(c);
	CHECK(rc == P11P_SQL_DOWN, "commit not acknowledged: %s (%s)", rcname(rc), c->err);
	bool ch;
	rc = D->changed(c, &ch);
	CHECK(rc == P11P_SQL_DOWN, "changed while down: %s", rcname(rc));
	CHECK(D->notify_fd(c) == -1, "no fd while down");
	rc = D->exec(c, "SELECT 1", NULL, 0, NULL, NULL);
	CHECK(rc == P11P_SQL_DOWN && c->err[0], "exec while down: %s (%s)", rcname(rc), c->err);
	fprintf(stderr, "pgdriver: while down: %s\n", c->err);
	printf("down-checked\n");
	fflush(stdout);
	if (!expect_line("started"))
		return 1;
	/* Reconnects by itself on a later call (it may be refused while the server starts). */
	unsigned long long t0 = p11p_now_ms();
	ch = false;
	do {
		rc = D->changed(c, &ch);
		if (rc != P11P_SQL_OK) {
			struct timespec ts = {0, 50 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	} while (rc != P11P_SQL_OK && p11p_now_ms() - t0 < 10000);
	CHECK(rc == P11P_SQL_OK && ch, "reconnected and reported changed: %s", rcname(rc));
	printf("reconnected after %llu ms\n", p11p_now_ms() - t0);
	CHECK(count_of(c, "SELECT count(*) FROM t_down") == 0,
	      "the unacknowledged row is not there");
	CHECK(D->notify_fd(c) >= 0, "fd again");
	D->close(c);
	return failures != 0;
}

static int t_writer(const char *uri, const char *tag)
{
	struct p11p_sql *c = open_or_die(uri, false, 3000);
	(void)D->exec(c,
	              "CREATE TABLE IF NOT EXISTS t_dur (tag text, i bigint, PRIMARY KEY(tag, i))",
	              NULL, 0, NULL, NULL);
	for (int64_t i = 0;; i++) {
		struct p11p_sql_val p[2] = {{.type = P11P_SQL_TEXT, .p = tag, .len = strlen(tag)},
		                            {.type = P11P_SQL_INT, .i = i}};
		enum p11p_sql_rc rc = D->begin(c);
		if (rc == P11P_SQL_OK)
			rc = D->exec(c, "INSERT INTO t_dur VALUES ($1, $2)", p, 2, NULL, NULL);
		if (rc == P11P_SQL_OK)
			rc = D->commit(c);
		else
			D->rollback(c);
		if (rc != P11P_SQL_OK) {
			fprintf(stderr, "pgdriver: writer %s stops at %" PRId64 ": %s\n", tag, i,
			        c->err);
			break;
		}
		char line[32];
		int n = snprintf(line, sizeof(line), "%" PRId64 "\n", i);
		if (write(1, line, (size_t)n) != n)
			break;
	}
	D->close(c);
	return 0;
}

static int t_check(const char *uri, const char *tag, long n)
{
	struct p11p_sql *c = open_or_die(uri, true, 5000);
	struct p11p_sql_val p[2] = {{.type = P11P_SQL_TEXT, .p = tag, .len = strlen(tag)},
	                            {.type = P11P_SQL_INT, .i = n}};
	struct row1 r = {0};
	enum p11p_sql_rc rc =
	    D->exec(c, "SELECT count(*) FROM t_dur WHERE tag = $1 AND i < $2", p, 2, take_row, &r);
	CHECK(rc == P11P_SQL_OK && r.v[0].type == P11P_SQL_INT && r.v[0].i == n,
	      "%s: %ld acknowledged, %" PRId64 " present", tag, n, r.v[0].i);
	printf("%s: %ld acknowledged, %" PRId64 " of them present\n", tag, n, r.v[0].i);
	D->close(c);
	return failures != 0;
}

static int t_sql(const char *uri, char **pairs, int n)
{
	struct p11p_sql *c = NULL;
	char err[P11P_SQL_ERR_MAX] = "";
	int bad = 0;
	enum p11p_sql_rc rc = D->open(uri, false, 5000, &c, err, sizeof(err));
	for (int i = 0; i + 1 < n; i += 2) {
		const char *want = pairs[i], *sql = pairs[i + 1];
		if (c != NULL) {
			rc = D->exec(c, sql, NULL, 0, NULL, NULL);
			snprintf(err, sizeof(err), "%s", rc == P11P_SQL_OK ? "" : c->err);
		}
		bool ok = strcmp(rcname(rc), want) == 0;
		printf("%s%s: %s%s%s\n", ok ? "" : "UNEXPECTED ", sql, rcname(rc),
		       err[0] ? ": " : "", err);
		bad += !ok;
	}
	if (c != NULL)
		D->close(c);
	return bad != 0;
}

/*
 * The store's replication debts on PostgreSQL (uri: an empty database): a
 * store of schema version 1 upgraded in place at open (its debt kept); an
 * ATTRS debt's template (with NULs) round trip, merged with a later change
 * of the same object; an oversized template in the table refused on read.
 */
static int t_debts(const char *uri)
{
	struct p11p_sql *c = open_or_die(uri, false, 5000);
	struct p11p_index *idx = NULL;
	struct p11p_debt *d = calloc(1, sizeof(*d)), *list = NULL;
	const char *const *v1;
	char err[512];
	size_t n = 0;
	uint64_t first;

	if (d == NULL)
		return 1;
	v1 = p11p_store_schema_step(P11P_SQL_PG, 1, &n);
	for (size_t i = 0; v1 != NULL && i < n; i++)
		ex(c, v1[i]);
	ex(c, "INSERT INTO migrations (version, applied) VALUES (1, 0)");
	ex(c, "INSERT INTO debts (id, slot, member, op, cls, ck_id, label, since, tries) VALUES "
	      "(7, 's1', 'm2', 1, 4, '\\x01', '\\x6b', 5, 0)");
	CHECK(count_of(c, "SELECT count(*) FROM information_schema.columns WHERE table_name = "
	                  "'debts' AND column_name = 'attrs'") == 0,
	      "version 1 has no debts.attrs");
	CHECK(p11p_index_open(uri, &idx, err, sizeof(err)) == CKR_OK, "open: %s", err);
	if (idx == NULL) {
		D->close(c);
		free(d);
		return 1;
	}
	CHECK(count_of(c, "SELECT max(version) FROM migrations") == P11P_STORE_SCHEMA_VERSION,
	      "upgraded in place");
	CHECK(p11p_index_debt_list(idx, "s1", &list, &n) == CKR_OK && n == 1 && list[0].id == 7 &&
	          list[0].attrs_len == 0,
	      "the version 1 debt kept (%zu)", n);
	p11p_free(list);

	memset(d, 0, sizeof(*d));
	snprintf(d->slot, sizeof(d->slot), "s1");
	snprintf(d->member, sizeof(d->member), "m2");
	d->op = P11P_DEBT_ATTRS;
	d->cls = 4;
	memcpy(d->ck_id, "\x01\x00", 2);
	d->ck_id_len = 2;
	memcpy(d->label, "k", 1);
	d->label_len = 1;
	CHECK(p11p_debt_attrs_set(d, CKA_ID, "\x00\x02", 2) &&
	          p11p_debt_attrs_set(d, CKA_LABEL, "k2", 2),
	      "template");
	CHECK(p11p_index_debt_add(idx, d) == CKR_OK, "add");
	first = d->id;
	CHECK(p11p_index_debt_list(idx, "s1", &list, &n) == CKR_OK && n == 2 &&
	          list[1].op == P11P_DEBT_ATTRS && list[1].attrs_len == d->attrs_len &&
	          memcmp(list[1].attrs, d->attrs, d->attrs_len) == 0,
	      "the template read back (%zu)", n);
	p11p_free(list);
	d->attrs_len = 0;
	CHECK(p11p_debt_attrs_set(d, CKA_LABEL, "k3", 2), "template");
	CHECK(p11p_index_debt_add(idx, d) == CKR_OK && d->id > first, "merged, recorded anew");
	{
		CK_ATTRIBUTE t[P11P_DEBT_ATTRS_COUNT];
		size_t nt = 0;

		CHECK(p11p_index_debt_list(idx, "s1", &list, &n) == CKR_OK && n == 2 &&
		          p11p_debt_attrs_parse(&list[1], t, P11P_DEBT_ATTRS_COUNT, &nt) &&
		          nt == 2 && t[0].type == CKA_ID && t[0].ulValueLen == 2 &&
		          memcmp(t[0].pValue, "\x00\x02", 2) == 0 && t[1].type == CKA_LABEL &&
		          t[1].ulValueLen == 2 && memcmp(t[1].pValue, "k3", 2) == 0,
		      "merged: the id of the first change, the label of the second");
		p11p_free(list);
	}
	ex(c, "UPDATE debts SET attrs = decode(repeat('00', 3000), 'hex') WHERE op = 4");
	list = NULL;
	CHECK(p11p_index_debt_list(idx, "s1", &list, &n) == CKR_FUNCTION_FAILED && list == NULL,
	      "an oversized template refused on read");
	p11p_index_close(idx);
	D->close(c);
	free(d);
	return failures != 0;
}

/* Stops after the first row. */
static int first_only(void *arg, const struct p11p_sql_val *cols, size_t ncols)
{
	(*(size_t *)arg)++;
	return 1;
}

/* Each record of a and b (by vid, from a's list) equal in every field. */
static bool same_records(struct p11p_index *a, struct p11p_index *b, const char *slot, size_t want)
{
	uint64_t *ids = NULL;
	size_t n = 0;
	bool ok = p11p_index_list(a, slot, &ids, &n) == CKR_OK && n == want;

	for (size_t i = 0; ok && i < n; i++) {
		struct p11p_vkey x, y;
		bool fx = false, fy = false;

		memset(&x, 0, sizeof(x));
		memset(&y, 0, sizeof(y));
		ok = p11p_index_get(a, ids[i], &x, &fx) == CKR_OK && fx &&
		     p11p_index_get(b, ids[i], &y, &fy) == CKR_OK && fy &&
		     memcmp(&x, &y, sizeof(x)) == 0;
	}
	p11p_free(ids);
	return ok;
}

/*
 * The bulk read (p11p_sql_read: COPY ... TO STDOUT (FORMAT binary)) and the
 * store's load through it (uri: an empty database): every type, NULLs and
 * NULs; a read of the wrong column count or an integer column that is not
 * BIGINT refused with a message and the connection still in step; a stop
 * asked by the callback; a non-integer parameter refused. Then a store's
 * records loaded by another handle equal in every field (blobs, tombstones),
 * and rows damaged in the database (a NULL, a label too long, a presence out
 * of range, a BIGINT column changed to integer) refused at open, naming the
 * row or the data; a damaged row that comes with a change refused by refresh.
 */
static int t_load(const char *uri)
{
	static const enum p11p_sql_type t4[4] = {P11P_SQL_INT, P11P_SQL_TEXT, P11P_SQL_BLOB,
	                                         P11P_SQL_INT};
	struct p11p_sql *c = open_or_die(uri, false, 5000);
	struct p11p_sql_val one = {.type = P11P_SQL_INT, .i = -5};
	struct p11p_sql_val txt = {.type = P11P_SQL_TEXT, .p = "x", .len = 1};
	struct row1 r = {0};
	size_t rows = 0;
	enum p11p_sql_rc rc;
	char err[512];

	rc = p11p_sql_read(c,
	                   "SELECT $1::bigint * 2, 'té'::text, '\\x00ff00'::bytea, NULL::bigint "
	                   "UNION ALL SELECT 9223372036854775807, '', ''::bytea, $1",
	                   &one, 1, t4, 4, take_row, &r);
	CHECK(rc == P11P_SQL_OK && r.rows == 2 && r.ncols == 4, "read: %s %s (%zu rows)",
	      rcname(rc), c->err, r.rows);
	CHECK(r.v[0].type == P11P_SQL_INT && r.v[0].i == -10, "an integer parameter");
	CHECK(r.v[1].type == P11P_SQL_TEXT && r.v[1].len == 3 &&
	          memcmp(r.v[1].p, "t\xc3\xa9", 3) == 0,
	      "text");
	CHECK(r.v[2].type == P11P_SQL_BLOB && r.v[2].len == 3 &&
	          memcmp(r.v[2].p, "\x00\xff\x00", 3) == 0,
	      "a blob with NULs");
	CHECK(r.v[3].type == P11P_SQL_NULL, "NULL");

	rc = p11p_sql_read(c, "SELECT 1::bigint, 'a'::text, ''::bytea", NULL, 0, t4, 4, take_row,
	                   &r);
	CHECK(rc == P11P_SQL_FAILED && strstr(c->err, "3 fields, 4 expected") != NULL,
	      "a wrong column count refused: %s %s", rcname(rc), c->err);
	CHECK(count_of(c, "SELECT 42") == 42, "in step after a refused read");
	rc = p11p_sql_read(c, "SELECT 1::int4, 'a'::text, ''::bytea, 2::bigint", NULL, 0, t4, 4,
	                   take_row, &r);
	CHECK(rc == P11P_SQL_FAILED && strstr(c->err, "4 bytes for a BIGINT") != NULL,
	      "an int4 column refused: %s %s", rcname(rc), c->err);
	CHECK(count_of(c, "SELECT 43") == 43, "in step after a refused read");
	rc = p11p_sql_read(
	    c, "SELECT g::bigint, 't'::text, ''::bytea, g::bigint FROM generate_series(1, 1000) g",
	    NULL, 0, t4, 4, first_only, &rows);
	CHECK(rc == P11P_SQL_OK && rows == 1, "the callback stops: %s (%zu rows)", rcname(rc),
	      rows);
	CHECK(count_of(c, "SELECT 44") == 44, "in step after a stop");
	rc = p11p_sql_read(c, "SELECT no_such_column", NULL, 0, t4, 4, take_row, &r);
	CHECK(rc == P11P_SQL_FAILED && strstr(c->err, "SQLSTATE 42703") != NULL,
	      "an error of the statement: %s %s", rcname(rc), c->err);
	CHECK(count_of(c, "SELECT 45") == 45, "in step after an error");
	CHECK(D->read(c, "SELECT $1", &txt, 1, t4, 1, take_row, &r) == P11P_SQL_FAILED,
	      "a text parameter refused (the driver's own check)");

	/* The store: a load by another handle gives the same records. */
	struct p11p_index *a = NULL, *b = NULL;
	struct p11p_vkey k[40];
	unsigned char blob[300];
	bool deleted = false;

	CHECK(p11p_index_open(uri, &a, err, sizeof(err)) == CKR_OK, "open: %s", err);
	if (a == NULL) {
		D->close(c);
		return 1;
	}
	memset(k, 0, sizeof(k));
	for (size_t i = 0; i < 40; i++) {
		snprintf(k[i].slot, sizeof(k[i].slot), "s-load");
		k[i].cls = i % 2 ? CKO_PRIVATE_KEY : CKO_SECRET_KEY;
		k[i].key_type = i % 2 ? CKK_EC : CKK_AES;
		k[i].ck_id_len = i % 5;
		memset(k[i].ck_id, (int)i, k[i].ck_id_len);
		k[i].label_len =
		    (size_t)snprintf((char *)k[i].label, sizeof(k[i].label), "k%zu", i);
		k[i].label[1] = i % 3 ? k[i].label[1] : 0; /* a NUL in some labels */
		k[i].perms = (uint32_t)i & P11P_VK_ALL;
		k[i].state = i % 4 == 3 ? P11P_VK_DEACTIVATED : P11P_VK_ACTIVE;
		k[i].origin = (enum p11p_vk_origin)(i % 2);
		k[i].presence = (uint32_t)i * 3 & 0xffff;
		k[i].prev = i > 0 ? 1000 + i : 0;
	}
	CHECK(p11p_index_put_batch(a, k, 40) == CKR_OK, "batch: %s",
	      (p11p_index_last_error(a, err, sizeof(err)), err));
	memset(blob, 0xa5, sizeof(blob));
	blob[0] = 0;
	CHECK(p11p_index_put_blob(a, &k[7], blob, sizeof(blob)) == CKR_OK, "blob");
	CHECK(p11p_index_delete(a, k[8].vid, &deleted) == CKR_OK && deleted, "delete");
	CHECK(p11p_index_open(uri, &b, err, sizeof(err)) == CKR_OK, "open: %s", err);
	if (b != NULL) {
		unsigned char got[400];
		size_t glen = 0;
		bool found = true;
		struct p11p_vkey v;

		CHECK(same_records(a, b, "s-load", 39),
		      "the records loaded equal the ones written");
		CHECK(p11p_index_get_blob(b, k[7].vid, got, sizeof(got), &glen, &found) == CKR_OK &&
		          found && glen == sizeof(blob) && memcmp(got, blob, glen) == 0,
		      "the blob loaded");
		CHECK(p11p_index_get(b, k[8].vid, &v, &found) == CKR_OK && !found,
		      "the deleted key absent");
		p11p_index_close(b);
		b = NULL;
	}

	/* Damaged rows: never trusted. */
	ex(c, "ALTER TABLE vkeys ALTER COLUMN label DROP NOT NULL");
	ex(c, "UPDATE vkeys SET label = NULL WHERE vid = (SELECT min(vid) FROM vkeys WHERE live <> "
	      "0)");
	err[0] = '\0';
	CHECK(p11p_index_open(uri, &b, err, sizeof(err)) == CKR_FUNCTION_FAILED && b == NULL &&
	          strstr(err, "damaged row") != NULL,
	      "a NULL label refused: %s", err);
	ex(c, "UPDATE vkeys SET label = decode(repeat('41', 300), 'hex') WHERE label IS NULL");
	err[0] = '\0';
	CHECK(p11p_index_open(uri, &b, err, sizeof(err)) == CKR_FUNCTION_FAILED && b == NULL &&
	          strstr(err, "damaged row") != NULL,
	      "a label too long refused: %s", err);
	ex(c, "UPDATE vkeys SET label = 'x'::bytea WHERE length(label) = 300");
	CHECK(p11p_index_open(uri, &b, err, sizeof(err)) == CKR_OK, "repaired: %s", err);
	p11p_index_close(b);
	b = NULL;
	ex(c, "UPDATE vkeys SET presence = 65536 WHERE vid = (SELECT min(vid) FROM vkeys WHERE "
	      "live <> 0)");
	err[0] = '\0';
	CHECK(p11p_index_open(uri, &b, err, sizeof(err)) == CKR_FUNCTION_FAILED && b == NULL &&
	          strstr(err, "damaged row") != NULL,
	      "a presence out of range refused: %s", err);
	ex(c, "UPDATE vkeys SET presence = 1 WHERE presence = 65536");
	ex(c, "ALTER TABLE vkeys ALTER COLUMN rev TYPE integer");
	err[0] = '\0';
	CHECK(p11p_index_open(uri, &b, err, sizeof(err)) == CKR_FUNCTION_FAILED && b == NULL &&
	          strstr(err, "COPY data refused") != NULL && strstr(err, "BIGINT") != NULL,
	      "an integer column of 4 bytes refused: %s", err);
	ex(c, "ALTER TABLE vkeys ALTER COLUMN rev TYPE bigint");
	/* the handle that has the records keeps them; its refresh does not take a damaged row */
	ex(c, "UPDATE vkeys SET state = 99, seq = seq + 1000 WHERE vid = (SELECT max(vid) FROM "
	      "vkeys)");
	ex(c, "NOTIFY p11proxy");
	for (int i = 0; i < 50 && p11p_index_refresh(a) == CKR_OK; i++)
		usleep(20000);
	CHECK(p11p_index_refresh(a) == CKR_FUNCTION_FAILED, "a damaged new row refused by refresh");
	CHECK(same_records(a, a, "s-load", 39), "the copy kept");
	p11p_index_close(a);
	D->close(c);
	return failures != 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: pgdriver TEST URI [ARGS]\n");
		return 2;
	}
	const char *t = argv[1], *uri = argv[2];
	if (strcmp(t, "types") == 0)
		return t_types(uri);
	if (strcmp(t, "tx") == 0)
		return t_tx(uri);
	if (strcmp(t, "lock") == 0)
		return t_lock(uri);
	if (strcmp(t, "notify") == 0)
		return t_notify(uri);
	if (strcmp(t, "password") == 0)
		return t_password(uri);
	if (strcmp(t, "fork") == 0)
		return t_fork(uri);
	if (strcmp(t, "down") == 0)
		return t_down(uri);
	if (strcmp(t, "writer") == 0 && argc == 4)
		return t_writer(uri, argv[3]);
	if (strcmp(t, "check") == 0 && argc == 5)
		return t_check(uri, argv[3], strtol(argv[4], NULL, 10));
	if (strcmp(t, "debts") == 0)
		return t_debts(uri);
	if (strcmp(t, "load") == 0)
		return t_load(uri);
	if (strcmp(t, "sql") == 0 && argc >= 5 && (argc - 3) % 2 == 0)
		return t_sql(uri, argv + 3, argc - 3);
	fprintf(stderr, "pgdriver: unknown test %s\n", t);
	return 2;
}
