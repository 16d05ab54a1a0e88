/*
 * What only the PostgreSQL driver (lib/index/pg.c) can do, for
 * `p11proxy store init` (tools/cmd_store.c): roles with passwords.
 */
#ifndef P11P_INDEX_PG_H
#define P11P_INDEX_PG_H

#include <stddef.h>

#include "index/sql.h"

/*
 * Creates the login role `role` (NOSUPERUSER NOCREATEDB NOCREATEROLE
 * NOINHERIT) when it does not exist, and sets its password in both cases.
 * The server receives a SCRAM-SHA-256 verifier computed here
 * (PQencryptPasswordConn), never the password itself, so the password is not
 * in the statement, the server's log or pg_stat_activity. c must be a
 * PostgreSQL connection of a role allowed to create roles. The copies made
 * here are wiped.
 */
enum p11p_sql_rc p11p_pg_set_role(struct p11p_sql *c, const char *role, const char *password,
                                  size_t password_len);

/* Quotes an identifier for a statement ("a""b"); NULL without memory. p11p_free the result. */
char *p11p_pg_ident(struct p11p_sql *c, const char *name);

#endif
