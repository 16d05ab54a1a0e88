/*
 * store: the PostgreSQL store's database, roles and grants.
 *
 *   p11proxy store init URI --admin-password-file FILE --app-password-file FILE
 *                           [--admin-role NAME] [--app-role NAME]
 *
 * URI (postgresql://, the password from a passfile) names a superuser of the
 * database the store lives in. In one transaction (under the store's writer
 * lock) init:
 *  - creates or updates two login roles: the administrator role (the CLI's:
 *    it owns the tables and may change anything) and the application role
 *    (the module's: it reads everything and records the keys it creates,
 *    nothing more);
 *  - creates the schema as the administrator role (the store's version-1
 *    statements, lib/index/schema.c) and records the version in migrations;
 *  - grants the application role, table by table and column by column:
 *      SELECT on every table;
 *      INSERT on vkeys, blobs and audit (a key it creates, its wrapped value,
 *      the audit record of the creation); UPDATE of vkeys and of blobs.seq
 *      (the store writes a record whole), where a trigger (p11p_guard)
 *      refuses, with SQLSTATE 42501, any change by another role than the
 *      administrator's of perms, state, live, slot, class, type, ck_id, label,
 *      origin, created, prev, next or of a blob's data: the role may change
 *      only which members hold a key and the counters (seq, rev, updated);
 *      UPDATE of meta.value, and row-level security limits that to the change
 *      counters ("seq", "audit_seq");
 *      SELECT, INSERT, UPDATE, DELETE on debts (replication it owes);
 *      nothing else: no UPDATE or DELETE of audit, no write to overlays
 *      (member order, policy) or migrations, no CREATE in the schema.
 *    The database refuses anything else with SQLSTATE 42501.
 *
 * Passwords: each FILE is read when it exists (one line; mode 0600 or
 * stricter, owned by the caller) or else created with a new random password
 * (32 bytes from OpenSSL's DRBG, base64) with mode 0600. They are never on
 * the command line or on stdout, and the server receives SCRAM verifiers
 * only (lib/index/pg.h). Running init again is safe: it sets the passwords
 * from the files and the grants again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "base/file.h"
#include "base/mem.h"
#include "base/secret.h"
#include "base/text.h"
#include "cli.h"
#include "index/pg.h"
#include "index/schema.h"
#include "index/sql.h"
#include "util.h"

#define STORE_TIMEOUT_MS 10000
#define PASSWORD_MAX     256
#define ROLE_MAX         63

enum {
	OPT_ADMIN_ROLE = CLI_OPT_FIRST,
	OPT_APP_ROLE,
	OPT_ADMIN_PW,
	OPT_APP_PW,
};

static bool role_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > ROLE_MAX || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return strncmp(s, "pg_", 3) != 0;
}

/*
 * The password of FILE: read (one line) when the file exists, else a new one
 * written to it (0600, O_EXCL). *created says which. 0, or -1 with the
 * message printed.
 */
static int password_from(const char *file, char *pw, size_t max, size_t *len, bool *created)
{
	*created = false;
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		struct stat st;
		unsigned char *buf = NULL;
		size_t n = 0;
		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
			close(fd);
			cli_error("%s: not a regular file", file);
			return -1;
		}
		if (!p11p_file_is_private(&st) || !p11p_file_safe_owner(&st, false)) {
			close(fd);
			cli_error("%s: must be yours and of mode 0600 (it holds a password)", file);
			return -1;
		}
		CK_RV rv = p11p_file_read_fd(fd, max, true, &buf, &n);
		close(fd);
		if (rv != CKR_OK) {
			cli_error("%s: cannot read: %s", file, strerror(errno));
			return -1;
		}
		size_t l = 0;
		while (l < n && buf[l] != '\n' && buf[l] != '\r')
			l++;
		int rc = 0;
		if (l == 0 || l >= max || memchr(buf, '\0', l)) {
			cli_error("%s: the first line must be a password of 1 to %zu bytes", file,
			          max - 1);
			rc = -1;
		} else {
			memcpy(pw, buf, l);
			pw[l] = '\0';
			*len = l;
		}
		p11p_wipe(buf, n);
		p11p_free(buf);
		return rc;
	}
	if (errno != ENOENT) {
		cli_error("%s: cannot open: %s", file, strerror(errno));
		return -1;
	}
	unsigned char raw[32];
	char b64[4 * ((sizeof(raw) + 2) / 3) + 2];
	if (RAND_priv_bytes(raw, sizeof(raw)) != 1) {
		cli_error("cannot generate a password (OpenSSL's generator failed)");
		return -1;
	}
	p11p_b64_encode(raw, sizeof(raw), b64);
	p11p_wipe(raw, sizeof(raw));
	size_t l = strlen(b64);
	if (l + 1 >= max) {
		p11p_wipe(b64, sizeof(b64));
		return -1;
	}
	fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		p11p_wipe(b64, sizeof(b64));
		cli_error("%s: cannot create: %s", file, strerror(errno));
		return -1;
	}
	b64[l] = '\n';
	int w = p11p_file_write_all(fd, b64, l + 1);
	if (w == 0)
		w = fsync(fd);
	if (close(fd) != 0)
		w = -1;
	b64[l] = '\0';
	if (w != 0) {
		p11p_wipe(b64, sizeof(b64));
		cli_error("%s: cannot write: %s", file, strerror(errno));
		unlink(file);
		return -1;
	}
	memcpy(pw, b64, l + 1);
	*len = l;
	p11p_wipe(b64, sizeof(b64));
	*created = true;
	return 0;
}

/* store init is PostgreSQL only: the driver is used directly (as lib/index/sql.c does). */
static const struct p11p_sql_driver *const D = &p11p_sql_pg_driver;

struct db_name {
	char name[128];
};

static int take_name(void *arg, const struct p11p_sql_val *cols, size_t ncols)
{
	struct db_name *d = arg;
	if (ncols == 1 && cols[0].type == P11P_SQL_TEXT && cols[0].len < sizeof(d->name)) {
		memcpy(d->name, cols[0].p, cols[0].len);
		d->name[cols[0].len] = '\0';
	}
	return 1;
}

static int sql_fail(struct p11p_sql *c, const char *what)
{
	cli_error("store init: %s: %s", what, c->err);
	return CLI_FAIL;
}

/*
 * Runs a statement template with @ADMIN@ and @APP@ replaced by the quoted role names, and
 * @ADMINLIT@ by the administrator role's bare name (role_name_ok(): safe in a literal).
 */
static const char *admin_name;

static enum p11p_sql_rc exec_roles(struct p11p_sql *c, const char *tmpl, const char *admin,
                                   const char *app)
{
	char sql[1024];
	size_t o = 0;
	for (const char *t = tmpl; *t;) {
		const char *put = NULL;
		if (strncmp(t, "@ADMINLIT@", 10) == 0) {
			put = admin_name;
			t += 10;
		} else if (strncmp(t, "@ADMIN@", 7) == 0) {
			put = admin;
			t += 7;
		} else if (strncmp(t, "@APP@", 5) == 0) {
			put = app;
			t += 5;
		}
		size_t n = put ? strlen(put) : 1;
		if (o + n >= sizeof(sql)) {
			snprintf(c->err, sizeof(c->err), "store init: statement too long");
			return P11P_SQL_FAILED;
		}
		memcpy(sql + o, put ? put : t, n);
		o += n;
		if (!put)
			t++;
	}
	sql[o] = '\0';
	return D->exec(c, sql, NULL, 0, NULL, NULL);
}

/*
 * The grants: @ADMIN@ is the administrator role, @APP@ the application role.
 * Column grants keep the application role off perms, state and the rest.
 */
static const char *const schema_grants[] = {
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    "GRANT USAGE, CREATE ON SCHEMA public TO @ADMIN@",
    "GRANT USAGE ON SCHEMA public TO @APP@",
};
static const char *const grants[] = {
    "REVOKE ALL ON meta, migrations, vkeys, blobs, debts, overlays, audit FROM @APP@",
    "GRANT SELECT ON meta, migrations, vkeys, blobs, debts, overlays, audit TO @APP@",
    "GRANT INSERT ON vkeys, blobs, audit TO @APP@",
    /*
     * The store writes a record whole (INSERT ... ON CONFLICT DO UPDATE of every column,
     * which needs UPDATE on each): the guard trigger refuses what the role may not change.
     */
    "GRANT UPDATE ON vkeys TO @APP@",
    "GRANT UPDATE (seq, data) ON blobs TO @APP@",
    "GRANT UPDATE (value) ON meta TO @APP@",
    "GRANT INSERT, UPDATE, DELETE ON debts TO @APP@",
    /* meta: the application role moves the change counters, nothing else. */
    "ALTER TABLE meta ENABLE ROW LEVEL SECURITY",
    "DROP POLICY IF EXISTS p11p_read ON meta",
    "DROP POLICY IF EXISTS p11p_counters ON meta",
    "CREATE POLICY p11p_read ON meta FOR SELECT USING (true)",
    /*
     * Whoever is not the administrator role (or a superuser) may change a key's presence and
     * counters, never its permissions, state, identity or rotation links, nor a wrapped value.
     */
    "CREATE OR REPLACE FUNCTION p11p_guard_vkeys() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN IF NOT pg_has_role(current_user, '@ADMINLIT@', 'USAGE') AND (NEW.vid, NEW.live, "
    "NEW.slot, NEW.cls, NEW.key_type, NEW.ck_id, NEW.label, NEW.perms, NEW.state, NEW.origin, "
    "NEW.created, NEW.prev, NEW.next) IS DISTINCT FROM (OLD.vid, OLD.live, OLD.slot, OLD.cls, "
    "OLD.key_type, OLD.ck_id, OLD.label, OLD.perms, OLD.state, OLD.origin, OLD.created, "
    "OLD.prev, OLD.next) THEN RAISE EXCEPTION 'p11proxy: role % may not change the "
    "permissions, state or identity of a key', current_user USING ERRCODE = '42501'; END IF; "
    "RETURN NEW; END $$",
    "CREATE OR REPLACE FUNCTION p11p_guard_blobs() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN IF NOT pg_has_role(current_user, '@ADMINLIT@', 'USAGE') AND (NEW.vid, NEW.data) IS "
    "DISTINCT FROM (OLD.vid, OLD.data) THEN RAISE EXCEPTION 'p11proxy: role % may not change "
    "the value of a key', current_user USING ERRCODE = '42501'; END IF; RETURN NEW; END $$",
    "ALTER FUNCTION p11p_guard_vkeys() OWNER TO @ADMIN@",
    "ALTER FUNCTION p11p_guard_blobs() OWNER TO @ADMIN@",
    "DROP TRIGGER IF EXISTS p11p_guard ON vkeys",
    "DROP TRIGGER IF EXISTS p11p_guard ON blobs",
    "CREATE TRIGGER p11p_guard BEFORE UPDATE ON vkeys FOR EACH ROW EXECUTE FUNCTION "
    "p11p_guard_vkeys()",
    "CREATE TRIGGER p11p_guard BEFORE UPDATE ON blobs FOR EACH ROW EXECUTE FUNCTION "
    "p11p_guard_blobs()",
    "CREATE POLICY p11p_counters ON meta FOR UPDATE TO @APP@ USING (name IN ('seq', "
    "'audit_seq')) WITH CHECK (name IN ('seq', 'audit_seq'))",
};

static int store_init(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"admin-role", required_argument, NULL, OPT_ADMIN_ROLE},
	    {"app-role", required_argument, NULL, OPT_APP_ROLE},
	    {"admin-password-file", required_argument, NULL, OPT_ADMIN_PW},
	    {"app-password-file", required_argument, NULL, OPT_APP_PW},
	    {NULL, 0, NULL, 0},
	};
	const char *admin = "p11proxy_admin", *app = "p11proxy_app";
	const char *admin_file = NULL, *app_file = NULL;
	int o;
	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "", opts)) != -1) {
		switch (o) {
		case OPT_ADMIN_ROLE:
			admin = optarg;
			break;
		case OPT_APP_ROLE:
			app = optarg;
			break;
		case OPT_ADMIN_PW:
			admin_file = optarg;
			break;
		case OPT_APP_PW:
			app_file = optarg;
			break;
		default:
			return CLI_USAGE;
		}
	}
	if (optind + 1 != argc)
		return cli_usage("store", "store init: one URI");
	const char *uri = argv[optind];
	if (strncmp(uri, "postgresql://", 13) != 0 && strncmp(uri, "postgres://", 11) != 0)
		return cli_usage("store", "store init: %s is not a postgresql:// URI",
		                 cli_esc(uri));
	if (!admin_file || !app_file)
		return cli_usage(
		    "store",
		    "store init: --admin-password-file and --app-password-file are needed");
	admin_name = admin;
	if (!role_name_ok(admin) || !role_name_ok(app) || strcmp(admin, app) == 0)
		return cli_usage("store", "store init: role names are two different names of "
		                          "a-z, 0-9 and _, not starting with a digit or pg_");

	char admin_pw[PASSWORD_MAX], app_pw[PASSWORD_MAX];
	size_t admin_len = 0, app_len = 0;
	bool admin_new = false, app_new = false;
	int rc = CLI_FAIL;
	struct p11p_sql *c = NULL;
	char *qa = NULL, *qp = NULL, *qd = NULL;
	if (password_from(admin_file, admin_pw, sizeof(admin_pw), &admin_len, &admin_new) != 0)
		return CLI_FAIL;
	if (password_from(app_file, app_pw, sizeof(app_pw), &app_len, &app_new) != 0)
		goto out;

	char err[P11P_SQL_ERR_MAX];
	if (D->open(uri, false, STORE_TIMEOUT_MS, &c, err, sizeof(err)) != P11P_SQL_OK) {
		cli_error("store init: %s", err);
		goto out;
	}
	if (p11p_pg_set_role(c, admin, admin_pw, admin_len) != P11P_SQL_OK) {
		rc = sql_fail(c, "the administrator role");
		goto out;
	}
	if (p11p_pg_set_role(c, app, app_pw, app_len) != P11P_SQL_OK) {
		rc = sql_fail(c, "the application role");
		goto out;
	}
	qa = p11p_pg_ident(c, admin);
	qp = p11p_pg_ident(c, app);
	if (!qa || !qp) {
		cli_error("store init: out of memory");
		goto out;
	}
	if (D->begin(c) != P11P_SQL_OK) {
		rc = sql_fail(c, "begin");
		goto out;
	}
	/* The database: both may connect. */
	struct db_name dbn = {0};
	if (D->exec(c, "SELECT current_database()", NULL, 0, take_name, &dbn) != P11P_SQL_OK ||
	    !dbn.name[0]) {
		rc = sql_fail(c, "current_database");
		goto rollback;
	}
	qd = p11p_pg_ident(c, dbn.name);
	if (!qd) {
		cli_error("store init: out of memory");
		goto rollback;
	}
	char sql[512];
	snprintf(sql, sizeof(sql), "GRANT CONNECT ON DATABASE %s TO %s, %s", qd, qa, qp);
	if (D->exec(c, sql, NULL, 0, NULL, NULL) != P11P_SQL_OK) {
		rc = sql_fail(c, "GRANT CONNECT");
		goto rollback;
	}
	for (size_t i = 0; i < sizeof(schema_grants) / sizeof(schema_grants[0]); i++)
		if (exec_roles(c, schema_grants[i], qa, qp) != P11P_SQL_OK) {
			rc = sql_fail(c, "grants on the schema");
			goto rollback;
		}
	/* The tables, owned by the administrator role. */
	if (exec_roles(c, "SET LOCAL ROLE @ADMIN@", qa, qp) != P11P_SQL_OK) {
		rc = sql_fail(c, "SET ROLE administrator");
		goto rollback;
	}
	size_t n = 0;
	const char *const *schema = p11p_store_schema(P11P_SQL_PG, &n);
	for (size_t i = 0; i < n; i++)
		if (D->exec(c, schema[i], NULL, 0, NULL, NULL) != P11P_SQL_OK) {
			rc = sql_fail(c, "schema");
			goto rollback;
		}
	struct p11p_sql_val ver = {.type = P11P_SQL_INT, .i = P11P_STORE_SCHEMA_VERSION};
	if (D->exec(c,
	            "INSERT INTO migrations (version, applied) VALUES ($1, "
	            "extract(epoch FROM now())::bigint) ON CONFLICT (version) DO NOTHING",
	            &ver, 1, NULL, NULL) != P11P_SQL_OK) {
		rc = sql_fail(c, "migrations");
		goto rollback;
	}
	if (D->exec(c, "RESET ROLE", NULL, 0, NULL, NULL) != P11P_SQL_OK) {
		rc = sql_fail(c, "RESET ROLE");
		goto rollback;
	}
	for (size_t i = 0; i < sizeof(grants) / sizeof(grants[0]); i++)
		if (exec_roles(c, grants[i], qa, qp) != P11P_SQL_OK) {
			rc = sql_fail(c, "grants");
			goto rollback;
		}
	if (D->commit(c) != P11P_SQL_OK) {
		rc = sql_fail(c, "commit");
		goto out;
	}
	printf("store initialised: schema version %d, administrator role %s, application role %s\n",
	       P11P_STORE_SCHEMA_VERSION, admin, app);
	printf("%s password: %s %s\n", admin, admin_new ? "new, written to" : "from",
	       cli_esc(admin_file));
	printf("%s password: %s %s\n", app, app_new ? "new, written to" : "from",
	       cli_esc(app_file));
	rc = CLI_OK;
	goto out;
rollback:
	D->rollback(c);
out:
	p11p_wipe(admin_pw, sizeof(admin_pw));
	p11p_wipe(app_pw, sizeof(app_pw));
	p11p_free(qa);
	p11p_free(qp);
	p11p_free(qd);
	if (c)
		D->close(c);
	return rc;
}

int cmd_store(struct cli *cli, int argc, char **argv)
{
	static const char *const actions[] = {"init", NULL};
	int rc;

	if (argc < 2)
		return cli_usage("store", "no action given");
	if (cli_action("store", argv[1], actions, &rc) < 0)
		return rc;
	return store_init(cli, argc - 1, argv + 1);
}
