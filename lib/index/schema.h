/*
 * The store's schema (lib/index/store.c), one text for both engines: the
 * statements differ only in the type of byte strings (SQLite BLOB,
 * PostgreSQL BYTEA). Integers are BIGINT in both (SQLite gives BIGINT integer
 * affinity). Unsigned 64-bit values (virtual ids) are stored as their signed
 * two's complement.
 *
 * Versioned: table migrations holds one row per applied version; the store
 * applies the steps that are missing in one write transaction at open (the
 * version number is P11P_STORE_SCHEMA_VERSION), so an existing store is
 * upgraded in place, and refuses a store whose version is newer than it
 * knows. A process that may not write the store (or, on PostgreSQL, alter
 * its tables: the application role) cannot upgrade it: a writer, or
 * `p11proxy store init`, must first.
 *
 * Tables (the pg helper's roles and grants follow this list):
 *   meta       name -> value: "seq" (the change counter), "audit_seq"
 *   migrations version, applied (Unix seconds)
 *   vkeys      one row per virtual key ever stored; a delete keeps the row
 *              with live = 0 (a tombstone: vids are never reused) so that
 *              another process's reload by seq sees it. seq: the change
 *              counter's value of the row's last change.
 *   blobs      vid -> wrapped key value (software keys), seq as in vkeys
 *   debts      replication debt (index.h): what a member still lacks;
 *              attrs (version 2): the template of a P11P_DEBT_ATTRS debt
 *   overlays   (slot, kind) -> text, version, seq: the member-order ("order")
 *              and policy ("policy") overlays of a virtual slot
 *   audit      the hash-chained trail: hash = SHA-256(prev || canonical row)
 *
 * Application role (PostgreSQL): SELECT on all; INSERT/UPDATE on vkeys and
 * blobs (keys it creates), UPDATE on meta (seq), INSERT on audit, all on
 * debts. Administrator role: everything.
 */
#ifndef P11P_INDEX_SCHEMA_H
#define P11P_INDEX_SCHEMA_H

#include <stddef.h>

#include "index/sql.h"

#define P11P_STORE_SCHEMA_VERSION 2

/*
 * The statements creating the newest version for engine e (*n of them): on
 * PostgreSQL they may run again over a store of any older version
 * (`p11proxy store init`).
 */
const char *const *p11p_store_schema(enum p11p_sql_engine e, size_t *n);
/*
 * The statements bringing a store of version - 1 to version (1: creating
 * it; 2: debts.attrs); NULL (*n 0) for a version that does not exist.
 */
const char *const *p11p_store_schema_step(enum p11p_sql_engine e, int version, size_t *n);

#endif
