/* The store's schema (schema.h). */
#include "index/schema.h"

/* B: the byte-string type of the engine. */
#define SCHEMA_V1(B)                                                                               \
	{                                                                                          \
		"CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",  \
		    "CREATE TABLE IF NOT EXISTS migrations (version BIGINT PRIMARY KEY, "          \
		    "applied BIGINT NOT NULL)",                                                    \
		    "CREATE TABLE IF NOT EXISTS vkeys (vid BIGINT PRIMARY KEY, seq BIGINT NOT "    \
		    "NULL, "                                                                       \
		    "live BIGINT NOT NULL, rev BIGINT NOT NULL, slot TEXT NOT NULL, cls BIGINT "   \
		    "NOT NULL, "                                                                   \
		    "key_type BIGINT NOT NULL, ck_id " B " NOT NULL, label " B " NOT NULL, "       \
		    "perms BIGINT NOT NULL, state BIGINT NOT NULL, origin BIGINT NOT NULL, "       \
		    "presence BIGINT NOT NULL, created BIGINT NOT NULL, updated BIGINT NOT NULL, " \
		    "prev BIGINT NOT NULL, next BIGINT NOT NULL)",                                 \
		    "CREATE INDEX IF NOT EXISTS vkeys_seq ON vkeys (seq)",                         \
		    "CREATE TABLE IF NOT EXISTS blobs (vid BIGINT PRIMARY KEY, seq BIGINT NOT "    \
		    "NULL, "                                                                       \
		    "data " B " NOT NULL)",                                                        \
		    "CREATE INDEX IF NOT EXISTS blobs_seq ON blobs (seq)",                         \
		    "CREATE TABLE IF NOT EXISTS debts (id BIGINT PRIMARY KEY, slot TEXT NOT "      \
		    "NULL, "                                                                       \
		    "member TEXT NOT NULL, op BIGINT NOT NULL, cls BIGINT NOT NULL, ck_id " B      \
		    " NOT NULL, "                                                                  \
		    "label " B " NOT NULL, since BIGINT NOT NULL, tries BIGINT NOT NULL, "         \
		    "UNIQUE (slot, member, op, cls, ck_id, label))",                               \
		    "CREATE TABLE IF NOT EXISTS overlays (slot TEXT NOT NULL, kind TEXT NOT "      \
		    "NULL, "                                                                       \
		    "text TEXT NOT NULL, version BIGINT NOT NULL, seq BIGINT NOT NULL, "           \
		    "PRIMARY KEY (slot, kind))",                                                   \
		    "CREATE TABLE IF NOT EXISTS audit (id BIGINT PRIMARY KEY, time BIGINT NOT "    \
		    "NULL, "                                                                       \
		    "host TEXT NOT NULL, uid BIGINT NOT NULL, program TEXT NOT NULL, slot TEXT "   \
		    "NOT NULL, "                                                                   \
		    "vid BIGINT NOT NULL, label " B " NOT NULL, what TEXT NOT NULL, "              \
		    "from_v TEXT NOT NULL, to_v TEXT NOT NULL, hash TEXT NOT NULL)",               \
		    "INSERT INTO meta (name, value) VALUES ('seq', 0) ON CONFLICT (name) DO "      \
		    "NOTHING",                                                                     \
		    "INSERT INTO meta (name, value) VALUES ('audit_seq', 0) ON CONFLICT (name) "   \
		    "DO NOTHING",                                                                  \
	}

static const char *const v1_sqlite[] = SCHEMA_V1("BLOB");
static const char *const v1_pg[] = SCHEMA_V1("BYTEA");

const char *const *p11p_store_schema(enum p11p_sql_engine e, size_t *n)
{
	if (e == P11P_SQL_PG) {
		*n = sizeof(v1_pg) / sizeof(v1_pg[0]);
		return v1_pg;
	}
	*n = sizeof(v1_sqlite) / sizeof(v1_sqlite[0]);
	return v1_sqlite;
}
