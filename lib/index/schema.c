/* The store's schema (schema.h). */
#include "index/schema.h"

#include <stdbool.h>

/* B: the byte-string type of the engine. */
#define SCHEMA_V1(B)                                                                               \
	"CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",          \
	    "CREATE TABLE IF NOT EXISTS migrations (version BIGINT PRIMARY KEY, "                  \
	    "applied BIGINT NOT NULL)",                                                            \
	    "CREATE TABLE IF NOT EXISTS vkeys (vid BIGINT PRIMARY KEY, seq BIGINT NOT "            \
	    "NULL, "                                                                               \
	    "live BIGINT NOT NULL, rev BIGINT NOT NULL, slot TEXT NOT NULL, cls BIGINT "           \
	    "NOT NULL, "                                                                           \
	    "key_type BIGINT NOT NULL, ck_id " B " NOT NULL, label " B " NOT NULL, "               \
	    "perms BIGINT NOT NULL, state BIGINT NOT NULL, origin BIGINT NOT NULL, "               \
	    "presence BIGINT NOT NULL, created BIGINT NOT NULL, updated BIGINT NOT NULL, "         \
	    "prev BIGINT NOT NULL, next BIGINT NOT NULL)",                                         \
	    "CREATE INDEX IF NOT EXISTS vkeys_seq ON vkeys (seq)",                                 \
	    "CREATE TABLE IF NOT EXISTS blobs (vid BIGINT PRIMARY KEY, seq BIGINT NOT "            \
	    "NULL, "                                                                               \
	    "data " B " NOT NULL)",                                                                \
	    "CREATE INDEX IF NOT EXISTS blobs_seq ON blobs (seq)",                                 \
	    "CREATE TABLE IF NOT EXISTS debts (id BIGINT PRIMARY KEY, slot TEXT NOT "              \
	    "NULL, "                                                                               \
	    "member TEXT NOT NULL, op BIGINT NOT NULL, cls BIGINT NOT NULL, ck_id " B              \
	    " NOT NULL, "                                                                          \
	    "label " B " NOT NULL, since BIGINT NOT NULL, tries BIGINT NOT NULL, "                 \
	    "UNIQUE (slot, member, op, cls, ck_id, label))",                                       \
	    "CREATE TABLE IF NOT EXISTS overlays (slot TEXT NOT NULL, kind TEXT NOT "              \
	    "NULL, "                                                                               \
	    "text TEXT NOT NULL, version BIGINT NOT NULL, seq BIGINT NOT NULL, "                   \
	    "PRIMARY KEY (slot, kind))",                                                           \
	    "CREATE TABLE IF NOT EXISTS audit (id BIGINT PRIMARY KEY, time BIGINT NOT "            \
	    "NULL, "                                                                               \
	    "host TEXT NOT NULL, uid BIGINT NOT NULL, program TEXT NOT NULL, slot TEXT "           \
	    "NOT NULL, "                                                                           \
	    "vid BIGINT NOT NULL, label " B " NOT NULL, what TEXT NOT NULL, "                      \
	    "from_v TEXT NOT NULL, to_v TEXT NOT NULL, hash TEXT NOT NULL)",                       \
	    "INSERT INTO meta (name, value) VALUES ('seq', 0) ON CONFLICT (name) DO "              \
	    "NOTHING",                                                                             \
	    "INSERT INTO meta (name, value) VALUES ('audit_seq', 0) ON CONFLICT (name) "           \
	    "DO NOTHING"

/*
 * Version 2: the template of an attribute change a member still owes
 * (P11P_DEBT_ATTRS, index.h); existing debts get an empty one. PostgreSQL's
 * form may run again (`p11proxy store init` over an existing store).
 */
#define SCHEMA_V2_SQLITE "ALTER TABLE debts ADD COLUMN attrs BLOB NOT NULL DEFAULT x''"
#define SCHEMA_V2_PG                                                                               \
	"ALTER TABLE debts ADD COLUMN IF NOT EXISTS attrs BYTEA NOT NULL DEFAULT ''::bytea"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const v1_sqlite[] = {SCHEMA_V1("BLOB")};
static const char *const v1_pg[] = {SCHEMA_V1("BYTEA")};
static const char *const v2_sqlite[] = {SCHEMA_V2_SQLITE};
static const char *const v2_pg[] = {SCHEMA_V2_PG};
static const char *const all_sqlite[] = {SCHEMA_V1("BLOB"), SCHEMA_V2_SQLITE};
static const char *const all_pg[] = {SCHEMA_V1("BYTEA"), SCHEMA_V2_PG};

const char *const *p11p_store_schema(enum p11p_sql_engine e, size_t *n)
{
	if (e == P11P_SQL_PG) {
		*n = N(all_pg);
		return all_pg;
	}
	*n = N(all_sqlite);
	return all_sqlite;
}

const char *const *p11p_store_schema_step(enum p11p_sql_engine e, int version, size_t *n)
{
	bool pg = e == P11P_SQL_PG;

	switch (version) {
	case 1:
		*n = pg ? N(v1_pg) : N(v1_sqlite);
		return pg ? v1_pg : v1_sqlite;
	case 2:
		*n = pg ? N(v2_pg) : N(v2_sqlite);
		return pg ? v2_pg : v2_sqlite;
	default:
		*n = 0;
		return NULL;
	}
}
