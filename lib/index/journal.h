/*
 * The journal file of p11proxy's first index, read-only: what
 * `p11proxy index import FILE` reads to bring an existing index into the
 * store. Nothing writes this format any more.
 *
 * File format (text, one record per line, fields separated by one TAB; the
 * last field of every line but the header is the CRC-32 (IEEE) of the line's
 * bytes before that last TAB, as 8 lowercase hex digits):
 *
 *   p11proxy-index<TAB>1                                   header (magic, version)
 *   K vid rev slot class keytype ckaid label perms state origin presence
 *     created updated prev next crc                         put a record
 *   D vid crc                                              delete a record
 *   C seq count bodycrc crc                                commit
 *
 *   vid, prev, next   16 hex digits (0000000000000000: none)
 *   rev, seq, count,  decimal; created/updated are Unix seconds
 *   created, updated
 *   slot, label       bytes, with '%', bytes < 0x20 and 0x7f written as %XX
 *   class, keytype    hex (CK_ULONG), ckaid: hex of the bytes (empty: none)
 *   perms             7 letters "edsvwuk" (encrypt decrypt sign verify wrap
 *                     unwrap derive), '-' for a permission not granted
 *   state             active | deactivated | missing | deleted;
 *                     origin: created | scanned
 *   presence          hex bitmask: bit i = member i of the slot holds the key
 *
 * The file is an append-only journal: each transaction is its K/D lines and
 * one C line naming the transaction's sequence number (the previous one + 1),
 * its line count and the CRC-32 of its K/D lines' bytes. Only transactions
 * with their commit line are applied. A writer appends under an exclusive
 * flock(2) on the file and fdatasync()s before it returns, so a kill -9 or a
 * crash leaves at most an unfinished transaction at the end: it is ignored
 * ("torn tail"). Damage anywhere else — a bad
 * checksum or line followed by a later committed transaction, a bad header, a
 * malformed field in a line whose checksum is right — refuses the file with
 * "path:line: byte offset: reason". A compaction rewrote the file as one
 * snapshot transaction (an S line in place of the C line, first in the file).
 */
#ifndef P11P_INDEX_JOURNAL_H
#define P11P_INDEX_JOURNAL_H

#include <stddef.h>

#include "index/index.h"

#define P11P_INDEX_LINE_MAX 4096        /* bytes in one line, newline included */
#define P11P_INDEX_FILE_MAX (4LL << 30) /* bytes in the file */

/*
 * Reads the journal at path (no lock: stop its writers first) and returns
 * the live records of its committed transactions, by ascending vid, in a
 * p11p_malloc'ed array (*out NULL when *n is 0). Errors: CKR_HOST_MEMORY;
 * CKR_FUNCTION_FAILED with a one-line message naming the file (and, for
 * damage, "path:line: byte offset: reason") in err.
 */
CK_RV p11p_journal_read(const char *path, struct p11p_vkey **out, size_t *n, char *err,
                        size_t errlen);

#endif
