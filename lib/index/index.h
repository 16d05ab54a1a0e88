/*
 * The virtual-key index: one durable record per virtual key in the store
 * (SQLite file or PostgreSQL, see store.c, schema.h, sql.h), shared by every
 * process that opens the same store. No key material is stored, only the
 * wrapped blobs of software keys.
 *
 * Each handle keeps an in-memory copy of the records (and blobs): lookups
 * never touch the store. p11p_index_refresh() asks the store whether anything
 * changed since (SQLite: PRAGMA data_version; PostgreSQL: LISTEN/NOTIFY) and
 * reads only the rows changed since the copy was made. Writes are one store
 * transaction each, durable when they return CKR_OK, with their audit rows.
 *
 * Store down: lookups keep answering from the copy, writes and refreshes fail
 * with a message naming the store, and the handle reconnects by itself on a
 * later refresh or write. A process that may not write the store (a read-only
 * state directory) opens it read-only: lookups work, writes fail saying so.
 *
 * Lock order: the handle's connection mutex, then its copy's mutex; never the
 * reverse. Nothing outside store.c runs under either.
 *
 * Threads: every function may be called from any thread. Lookups take only
 * the copy's mutex; writes hold the connection mutex across their transaction
 * and the copy's only to apply it; refresh() only tries the connection mutex.
 *
 * Fork: a handle belongs to the process that opened it. In a forked child
 * every function but p11p_index_close() returns CKR_CRYPTOKI_NOT_INITIALIZED;
 * the child closes the inherited handle (which abandons the connection
 * without talking to the store) and opens its own.
 */
#ifndef P11P_INDEX_H
#define P11P_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pkcs11.h"

#define P11P_INDEX_SLOT_MAX    64      /* bytes in a virtual slot label */
#define P11P_INDEX_ID_MAX      256     /* bytes of CKA_ID */
#define P11P_INDEX_LABEL_MAX   256     /* bytes of CKA_LABEL */
#define P11P_INDEX_MAX_RECORDS 1000000 /* live records, and records in one transaction */
#define P11P_INDEX_MAX_MEMBERS 16      /* bits of presence */

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
	size_t records; /* live records in the copy */
	uint64_t seq;   /* the store's change counter as of the copy */
	bool readonly;  /* this process may not write the store */
	bool down;      /* no connection at the moment */
};

/* A put with a stale rev (someone else changed the record first). */
#define P11P_INDEX_CONFLICT CKR_FUNCTION_REJECTED

struct p11p_index;

/*
 * Opens the store at `path`: a file path (SQLite; created, mode 0600, when
 * absent and the directory may be written) or a postgresql:// URI; creates or
 * migrates the schema (a writer) and loads the copy. A file must be a regular
 * file (not a symlink) owned by the effective user, root or its directory's
 * owner and not writable by group or others; its directory must be owned by
 * the effective user or root and not writable by group or others.
 * Errors: CKR_HOST_MEMORY; CKR_FUNCTION_FAILED (store unreachable, unsafe
 * file, damaged store), with a one-line message naming the store in err
 * (when errlen > 0; err is "" on success). Messages never include record
 * contents.
 */
CK_RV p11p_index_open(const char *path, struct p11p_index **out, char *err, size_t errlen);

/* Frees the handle (NULL is fine). See the fork note above. */
void p11p_index_close(struct p11p_index *idx);

/*
 * Picks up other handles' and processes' commits: one change notice when
 * nothing changed. On error (CKR_HOST_MEMORY, CKR_FUNCTION_FAILED: store
 * down, damaged rows) the handle keeps the copy it has;
 * p11p_index_last_error() says why. Returns CKR_OK at once when a write of
 * this handle is in progress (it catches up itself).
 */
CK_RV p11p_index_refresh(struct p11p_index *idx);

/*
 * Lookups see the state as of this handle's last open, refresh or write;
 * they never touch the store. *found / *count say what matched.
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
 * caller can keep an answer while the number stays the same. Never 0 (it
 * starts at 1), so that a caller can use 0 for "nothing kept".
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
 * Writes. Each call is one transaction: it takes the store's write lock,
 * applies every commit made by others since to the copy, then checks and
 * writes, with the audit rows of the change, and is durable when it returns
 * CKR_OK; on any error nothing of it is stored. put inserts or replaces by vid (allocating a random
 * non-zero vid when rec->vid is 0) and writes the stored vid, rev, created and updated back into
 * *rec. Errors: CKR_ARGUMENTS_BAD (a field out of range: empty or too long slot label, slot label
 * with a NUL, ck_id/label too long, unknown perms bits, state or origin, presence past 16 bits),
 * P11P_INDEX_CONFLICT, CKR_HOST_MEMORY, CKR_DEVICE_MEMORY (P11P_INDEX_MAX_RECORDS reached),
 * CKR_FUNCTION_FAILED (store down or read-only for this process, damaged
 * store: p11p_index_last_error() names the store).
 */
CK_RV p11p_index_put(struct p11p_index *idx, struct p11p_vkey *rec);

/* Many puts in one transaction (a sync): all stored, or none. n == 0: no-op. */
CK_RV p11p_index_put_batch(struct p11p_index *idx, struct p11p_vkey *recs, size_t n);

/* Deletes vid; *deleted (may be NULL) says whether it existed. */
CK_RV p11p_index_delete(struct p11p_index *idx, uint64_t vid, bool *deleted);

CK_RV p11p_index_stats(struct p11p_index *idx, struct p11p_index_stats *st);

/* The message of the last failed call on this handle ("" if none). */
void p11p_index_last_error(struct p11p_index *idx, char *buf, size_t len);

/*
 * ---- Blobs and replication debt (issues 10, 12) ----
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
CK_RV p11p_index_put_blob(struct p11p_index *idx, struct p11p_vkey *rec, const unsigned char *blob,
                          size_t len);
CK_RV p11p_index_get_blob(struct p11p_index *idx, uint64_t vid, unsigned char *buf, size_t cap,
                          size_t *len, bool *found);
CK_RV p11p_index_replace_blobs(struct p11p_index *idx, const struct p11p_index_blob *b, size_t n);
/*
 * put_batch and put_blob at once (a rotation of a software key): recs[i]
 * stored with blobs[i].data when blobs and it are not NULL (blobs[i].vid unused: the
 * record's), all with their audit rows in one transaction, or nothing.
 */
CK_RV p11p_index_put_batch_blobs(struct p11p_index *idx, struct p11p_vkey *recs, size_t n,
                                 const struct p11p_index_blob *blobs);

/*
 * Replication debt (issue 10): what a member of a slot still lacks, durably,
 * so that any process or the CLI completes it. member is the member's stable
 * name (its token's serial number and label, as the HA room writes it);
 * the object is named by its identity (class, CKA_ID, CKA_LABEL). Adding a
 * debt that already exists (same slot, member, op and identity) keeps one;
 * for P11P_DEBT_ATTRS the two templates are merged (the new values win) and
 * the debt moves to the end of the list (a new id, since now), so that
 * changes are settled in the order they were made.
 */
enum p11p_debt_op {
	P11P_DEBT_COPY = 1,    /* copy the object to the member */
	P11P_DEBT_DESTROY = 2, /* destroy it there */
	P11P_DEBT_UPDATE = 3,  /* the lock it owes: CKA_EXTRACTABLE false once everywhere */
	P11P_DEBT_ATTRS = 4,   /* C_SetAttributeValue of attrs on the object the member knows
	                          by the identity (a rename: its old CKA_ID / CKA_LABEL) */
};
#define P11P_INDEX_MEMBER_MAX 128
/*
 * The template of a P11P_DEBT_ATTRS debt, serialised: per attribute its type
 * (8 bytes), its value's length (4 bytes), both big-endian, and the value;
 * at most P11P_DEBT_ATTRS_COUNT attributes, each type once, in at most
 * P11P_DEBT_ATTRS_MAX bytes. Never a secret: the HA room records only the
 * non-sensitive attributes it knows (ha/replicate.c).
 */
#define P11P_DEBT_ATTRS_MAX   2048
#define P11P_DEBT_ATTRS_COUNT 32
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
	int64_t since;  /* Unix seconds it was first recorded */
	uint32_t tries; /* failed attempts so far */
	/* P11P_DEBT_ATTRS: the template (above); other ops: attrs_len 0 */
	unsigned char attrs[P11P_DEBT_ATTRS_MAX];
	size_t attrs_len;
};
CK_RV p11p_index_debt_add(struct p11p_index *idx, struct p11p_debt *d);
/*
 * Sets type to value (len bytes) in d's template: replaces the value the
 * type has there, or appends it. false (d unchanged): no room.
 */
bool p11p_debt_attrs_set(struct p11p_debt *d, CK_ATTRIBUTE_TYPE type, const void *value,
                         size_t len);
/*
 * d's template as attributes (out, up to max; *n of them), their values
 * pointing into d->attrs. false when it is malformed (a length past the end,
 * a type twice, more than max): a damaged or hostile store.
 */
bool p11p_debt_attrs_parse(struct p11p_debt *d, CK_ATTRIBUTE *out, size_t max, size_t *n);
/* Every debt of slot (all slots when NULL), oldest first; p11p_free(*out). */
CK_RV p11p_index_debt_list(struct p11p_index *idx, const char *slot, struct p11p_debt **out,
                           size_t *n);
/* Settled: removed. Failed again: tries + 1. */
CK_RV p11p_index_debt_done(struct p11p_index *idx, uint64_t id);
CK_RV p11p_index_debt_failed(struct p11p_index *idx, uint64_t id);

/*
 * ---- The audit trail (issue 11) ----
 *
 * Every write that changes a key writes one row per change in its own
 * transaction: what is one of create (through the module), sync (a scan
 * found or updated it), perms, deactivate, activate, delete, rotate, label,
 * rewrap (its blob replaced); from and to say what changed. Rows are numbered
 * from 1 without gaps, and hash = SHA-256 over the previous row's hash and
 * this row in a canonical form (each field as "<length>:<bytes>"), as 64
 * lowercase hex digits.
 */
struct p11p_audit {
	uint64_t id;
	int64_t time; /* Unix seconds */
	char host[256];
	uint32_t uid;
	char program[64];
	char slot[P11P_INDEX_SLOT_MAX + 1];
	uint64_t vid;
	unsigned char label[P11P_INDEX_LABEL_MAX + 1];
	size_t label_len;
	char what[16];
	char from[64];
	char to[64];
	char hash[65];
};
/* fn sees each row (0: go on; non-zero: stop). */
typedef int (*p11p_index_audit_fn)(void *arg, const struct p11p_audit *a);
/*
 * The rows of slot (every slot when NULL) with time >= since, by id, read
 * from the store. *last_id (may be NULL): the store's count of rows written.
 */
CK_RV p11p_index_audit(struct p11p_index *idx, const char *slot, int64_t since,
                       p11p_index_audit_fn fn, void *arg, int64_t *last_id);
/* a's hash given the previous row's (prev: "" for row 1). false: out of memory. */
bool p11p_index_audit_hash(const struct p11p_audit *a, const char *prev, char out[65]);
/*
 * Checks the whole chain: CKR_OK, or CKR_SIGNATURE_INVALID with *bad the
 * first row that is missing or altered and why[] saying which and how.
 * *rows: the rows checked.
 */
CK_RV p11p_index_audit_verify(struct p11p_index *idx, uint64_t *rows, uint64_t *bad, char *why,
                              size_t whylen);

/*
 * ---- Overlays (issue 11) ----
 *
 * A slot's operator overlays, as text (their formats and parsers are the
 * owners': the member order, ha/order.h; the key-management policy,
 * vkeys/policy.h). They are part of the in-memory copy: get reads the copy
 * (after a refresh it follows other processes' changes), never the store.
 * put writes (text non-NULL, at most P11P_INDEX_OVERLAY_MAX bytes, no NUL)
 * or removes (text NULL) the overlay in one transaction with its audit row
 * (what "policy" or "member-order", from/to as given, cut to 63 bytes).
 * version: moves on with every put of that overlay (0: never written).
 */
#define P11P_INDEX_OVERLAY_MAX 65536
enum p11p_overlay_kind {
	P11P_OVERLAY_ORDER = 1,  /* "member-order" */
	P11P_OVERLAY_POLICY = 2, /* "policy" */
};
/*
 * *text: a p11p_malloc'ed copy, NUL-terminated (*len bytes before the NUL), or
 * NULL (*len 0) when the slot has none. *version (may be NULL): as above.
 */
CK_RV p11p_index_overlay_get(struct p11p_index *idx, const char *slot, enum p11p_overlay_kind kind,
                             char **text, size_t *len, uint64_t *version);
CK_RV p11p_index_overlay_put(struct p11p_index *idx, const char *slot, enum p11p_overlay_kind kind,
                             const char *text, const char *from, const char *to);

#endif
