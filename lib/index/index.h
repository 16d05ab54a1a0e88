/*
 * The virtual-key index: one durable record per virtual key, shared by every
 * process on the host that opens the same file. No key material is stored.
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
 * ("torn tail") and cut off by the next writer. Damage anywhere else — a bad
 * checksum or line followed by a later committed transaction, a bad header, a
 * malformed field in a line whose checksum is right — refuses the file with
 * "path:line: byte offset: reason". When the journal grows past the size of
 * the live records (and at least P11P_INDEX_COMPACT_MIN), the writer rewrites
 * the file as one snapshot transaction: temp file in the same directory,
 * fsync, rename over the index, fsync of the directory, all under the lock.
 *
 * Readers take a shared flock while they read; p11p_index_refresh() is one
 * stat(2) when nothing changed (same inode, same size); otherwise it reads
 * only the bytes appended since the last refresh, or everything after a
 * compaction replaced the file. Writers that find the file replaced after
 * they got its lock (a compaction renamed a new one in) let go and lock the
 * new one. flock(2) is per open file description, so two handles in one
 * process exclude each other like two processes do; the file belongs on a
 * local file system (flock over NFS is emulated and not trusted here).
 *
 * Lock order: the handle's mutex, then the file's flock; never the reverse.
 *
 * Threads: every function may be called from any thread; one mutex per handle
 * guards it and is never held across a caller's code. Writes hold it across
 * their fdatasync, so a lookup in another thread may wait that long.
 *
 * Fork: a handle belongs to the process that opened it. In a forked child
 * every function but p11p_index_close() returns CKR_CRYPTOKI_NOT_INITIALIZED
 * (the child shares the parent's open file description, so its flock would
 * not exclude the parent); the child closes the inherited handle and opens
 * its own. close() in a child frees nothing that another parent thread might
 * have been changing at the fork (it only closes the descriptor when it cannot
 * take the handle's mutex).
 */
#ifndef P11P_INDEX_H
#define P11P_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pkcs11.h"

#define P11P_INDEX_SLOT_MAX    64          /* bytes in a virtual slot label */
#define P11P_INDEX_ID_MAX      256         /* bytes of CKA_ID */
#define P11P_INDEX_LABEL_MAX   256         /* bytes of CKA_LABEL */
#define P11P_INDEX_MAX_RECORDS 1000000     /* live records, and records in one transaction */
#define P11P_INDEX_MAX_MEMBERS 16          /* bits of presence */
#define P11P_INDEX_LINE_MAX    4096        /* bytes in one line, newline included */
#define P11P_INDEX_FILE_MAX    (4LL << 30) /* bytes in the file */
#define P11P_INDEX_COMPACT_MIN (1 << 20)   /* journal bytes before compaction is considered */

/* Permission bits of a virtual key (what the proxy lets an application do). */
enum {
	P11P_VK_ENCRYPT = 1 << 0,
	P11P_VK_DECRYPT = 1 << 1,
	P11P_VK_SIGN = 1 << 2,
	P11P_VK_VERIFY = 1 << 3,
	P11P_VK_WRAP = 1 << 4,
	P11P_VK_UNWRAP = 1 << 5,
	P11P_VK_DERIVE = 1 << 6,
	P11P_VK_ALL = 0x7f,
};

enum p11p_vk_state {
	P11P_VK_ACTIVE = 0,
	P11P_VK_DEACTIVATED = 1,
	P11P_VK_MISSING = 2, /* a sync found it on no member */
	/*
	 * Deleted virtually (write_back false): the HSM key stays, the virtual
	 * key is gone for applications, and no scan imports it again.
	 */
	P11P_VK_DELETED = 3,
};

enum p11p_vk_origin {
	P11P_VK_CREATED = 0, /* created through the proxy */
	P11P_VK_SCANNED = 1, /* imported by a sync */
};

/*
 * One virtual key, as callers see it (a copy: lookups never hand out pointers
 * into the index). Byte strings are (array, length); ck_id and label also
 * carry a NUL after their bytes for convenience, and may contain NULs.
 */
struct p11p_vkey {
	uint64_t vid; /* stable virtual id, never reused; 0 in a put: allocate one */
	/*
	 * Revision: 1 for a new record, +1 per put. A put with rev != 0 replaces
	 * the record only if the stored one still has that revision (else
	 * P11P_INDEX_CONFLICT): read, modify, put with the rev you read, and no
	 * other process's update is lost in between. rev 0: unconditional.
	 */
	uint64_t rev;
	char slot[P11P_INDEX_SLOT_MAX + 1]; /* virtual slot label, non-empty, NUL-terminated */
	CK_OBJECT_CLASS cls;                /* CKA_CLASS */
	CK_KEY_TYPE key_type;               /* CKA_KEY_TYPE */
	unsigned char ck_id[P11P_INDEX_ID_MAX + 1];
	size_t ck_id_len;
	unsigned char label[P11P_INDEX_LABEL_MAX + 1]; /* bytes as the token has them */
	size_t label_len;
	uint32_t perms; /* P11P_VK_* bits */
	enum p11p_vk_state state;
	enum p11p_vk_origin origin;
	uint32_t presence;   /* bit i: the slot's member i holds the key (i < 16) */
	int64_t created;     /* Unix seconds; a put with 0 keeps the stored value or uses now */
	int64_t updated;     /* set to now by every put */
	uint64_t prev, next; /* rotation links: virtual ids, 0 for none */
};

/* What p11p_index_find() matches: slot always, the rest when has_* is set. */
struct p11p_vkey_match {
	const char *slot;
	bool has_class;
	CK_OBJECT_CLASS cls;
	bool has_ck_id;
	const unsigned char *ck_id;
	size_t ck_id_len;
	bool has_label;
	const unsigned char *label;
	size_t label_len;
};

struct p11p_index_stats {
	size_t records;            /* live records */
	uint64_t seq;              /* last committed transaction */
	uint64_t file_bytes;       /* committed bytes of the file */
	uint64_t journal_bytes;    /* of which appended since the last snapshot */
	unsigned long compactions; /* done by this handle */
};

/* A put with a stale rev (someone else changed the record first). */
#define P11P_INDEX_CONFLICT CKR_FUNCTION_REJECTED

struct p11p_index;

/*
 * Opens the index at `path`, creating it (mode 0600, atomically) when absent,
 * and loads it. The file must be a regular file (not a symlink) owned by the
 * effective user and not writable by group or others; its directory must be
 * owned by that user or root and not writable by group or others.
 * Errors: CKR_HOST_MEMORY; CKR_FUNCTION_FAILED (I/O, unsafe file, damaged
 * file), with a one-line message naming the file in err (when errlen > 0;
 * err is "" on success). Messages never include record contents.
 */
CK_RV p11p_index_open(const char *path, struct p11p_index **out, char *err, size_t errlen);

/* Frees the handle (NULL is fine). See the fork note above. */
void p11p_index_close(struct p11p_index *idx);

/*
 * Picks up other handles' and processes' commits. One stat(2) when nothing
 * changed. On error (CKR_HOST_MEMORY, CKR_FUNCTION_FAILED: damaged file, I/O)
 * the handle keeps the last state it loaded and every write fails until a
 * refresh succeeds; p11p_index_last_error() says why.
 */
CK_RV p11p_index_refresh(struct p11p_index *idx);

/*
 * Lookups see the state as of this handle's last open, refresh or write;
 * they never touch the file. *found / *count say what matched.
 */
CK_RV p11p_index_get(struct p11p_index *idx, uint64_t vid, struct p11p_vkey *out, bool *found);
/*
 * The same, reading in place only what a use check needs: vid, cls, perms
 * and state are set in *out, no other field. *gen (gen may be NULL): the
 * handle's p11p_index_gen() as of that answer.
 */
CK_RV p11p_index_get_brief(struct p11p_index *idx, uint64_t vid, struct p11p_vkey *out, bool *found,
                           unsigned long *gen);
/*
 * A number that moves on whenever what lookups answer may change (a refresh
 * that read something, a write); read without the handle's mutex, so that a
 * caller can keep an answer while the number stays the same.
 */
unsigned long p11p_index_gen(struct p11p_index *idx);

/*
 * Records matching m, at most `max` copied to out (out may be NULL when max
 * is 0); *count is the number of matches, which may exceed max. Order is
 * unspecified. Uses the label index when m->has_label, else the CKA_ID index
 * when m->has_ck_id, else scans the whole index.
 */
CK_RV p11p_index_find(struct p11p_index *idx, const struct p11p_vkey_match *m,
                      struct p11p_vkey *out, size_t max, size_t *count);

/*
 * The virtual ids of every record of `slot` (every record when slot is NULL),
 * ascending, in a p11p_malloc'ed array the caller frees with p11p_free (NULL
 * when *n is 0).
 */
CK_RV p11p_index_list(struct p11p_index *idx, const char *slot, uint64_t **ids, size_t *n);

/*
 * Writes. Each call is one transaction: it first takes the file lock and
 * applies every commit made by others since, then checks and appends, and is
 * durable (fdatasync) when it returns CKR_OK; on any error nothing of it is
 * stored. put inserts or replaces by vid (allocating a random non-zero vid
 * when rec->vid is 0) and writes the stored vid, rev, created and updated back
 * into *rec. Errors: CKR_ARGUMENTS_BAD (a field out of range: empty or too
 * long slot label, slot label with a NUL, ck_id/label too long, unknown perms
 * bits, state or origin, presence past 16 bits), P11P_INDEX_CONFLICT,
 * CKR_HOST_MEMORY, CKR_DEVICE_MEMORY (P11P_INDEX_MAX_RECORDS reached),
 * CKR_FUNCTION_FAILED (I/O, damaged file).
 */
CK_RV p11p_index_put(struct p11p_index *idx, struct p11p_vkey *rec);

/* Many puts in one transaction (a sync): all stored, or none. n == 0: no-op. */
CK_RV p11p_index_put_batch(struct p11p_index *idx, struct p11p_vkey *recs, size_t n);

/* Deletes vid; *deleted (may be NULL) says whether it existed. */
CK_RV p11p_index_delete(struct p11p_index *idx, uint64_t vid, bool *deleted);

/* Rewrites the file as one snapshot now (writes do it on their own). */
CK_RV p11p_index_compact(struct p11p_index *idx);

CK_RV p11p_index_stats(struct p11p_index *idx, struct p11p_index_stats *st);

/* The message of the last failed call on this handle ("" if none). */
void p11p_index_last_error(struct p11p_index *idx, char *buf, size_t len);

/*
 * ---- Being added (issues 10, 11, 12); implemented by the SQL store. ----
 *
 * Wrapped key values (software keys, issue 12). A blob is what the HSM wrote
 * (opaque to the store, at most P11P_INDEX_BLOB_MAX bytes). put_blob stores
 * the record (as p11p_index_put) and its blob in one transaction; get_blob
 * copies the blob of vid into buf (cap bytes; *len: its size, also when buf
 * is too small: then CKR_BUFFER_TOO_SMALL); *found false when vid has no
 * blob. Blobs are part of the in-memory copy (a software key keeps working
 * while the store is down). replace_blobs replaces the blobs of n existing
 * records in one transaction (wrapping-key rotation): all, or none.
 */
#define P11P_INDEX_BLOB_MAX 16384
struct p11p_index_blob {
	uint64_t vid;
	const unsigned char *data;
	size_t len;
};
CK_RV p11p_index_put_blob(struct p11p_index *idx, struct p11p_vkey *rec,
                          const unsigned char *blob, size_t len);
CK_RV p11p_index_get_blob(struct p11p_index *idx, uint64_t vid, unsigned char *buf, size_t cap,
                          size_t *len, bool *found);
CK_RV p11p_index_replace_blobs(struct p11p_index *idx, const struct p11p_index_blob *b, size_t n);

/*
 * Replication debt (issue 10): what a member of a slot still lacks, durably,
 * so that any process or the CLI completes it. member is the member's stable
 * name (its token's serial number and label, as the HA room writes it);
 * the object is named by its identity (class, CKA_ID, CKA_LABEL). Adding a
 * debt that already exists (same slot, member, op and identity) keeps one.
 */
enum p11p_debt_op {
	P11P_DEBT_COPY = 1,    /* copy the object to the member */
	P11P_DEBT_DESTROY = 2, /* destroy it there */
	P11P_DEBT_UPDATE = 3,  /* bring its attributes level with the others */
};
#define P11P_INDEX_MEMBER_MAX 128
struct p11p_debt {
	uint64_t id; /* assigned by the store */
	char slot[P11P_INDEX_SLOT_MAX + 1];
	char member[P11P_INDEX_MEMBER_MAX + 1];
	enum p11p_debt_op op;
	CK_OBJECT_CLASS cls;
	unsigned char ck_id[P11P_INDEX_ID_MAX + 1];
	size_t ck_id_len;
	unsigned char label[P11P_INDEX_LABEL_MAX + 1];
	size_t label_len;
	int64_t since;    /* Unix seconds it was first recorded */
	uint32_t tries;   /* failed attempts so far */
};
CK_RV p11p_index_debt_add(struct p11p_index *idx, struct p11p_debt *d);
/* Every debt of slot (all slots when NULL), oldest first; p11p_free(*out). */
CK_RV p11p_index_debt_list(struct p11p_index *idx, const char *slot, struct p11p_debt **out,
                           size_t *n);
/* Settled: removed. Failed again: tries + 1. */
CK_RV p11p_index_debt_done(struct p11p_index *idx, uint64_t id);
CK_RV p11p_index_debt_failed(struct p11p_index *idx, uint64_t id);

#endif
