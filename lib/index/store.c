/*
 * The store (contracts: index.h; schema: schema.h; engines: sql.h).
 *
 * In memory: a struct rec per live record (its byte strings inline, its blob
 * apart; an allocation of its own, or a place in a chunk shared with other
 * records of a big load: struct chunk), found through three p11p_maps:
 *   by_id     (vid, 0)                         -> record
 *   by_label  (hash(slot), hash(label))        -> head of a chain of records
 *   by_cid    (hash(slot), hash(CKA_ID))       -> head of a chain of records
 * The chains are doubly linked, so that a record leaves them in O(1) even when
 * thousands of keys share an empty label. Lookups read only this copy.
 *
 * The copy follows the store by the change counter: every write transaction
 * takes the next value of meta.seq and stamps the rows it writes (vkeys and
 * blobs; a delete leaves a tombstone row, live = 0). A reload reads the vkeys
 * rows with seq above the highest it has seen, then the blobs of that range.
 * Writers are serialised by the store's write lock, so rows become visible in
 * seq order. p11p_index_refresh() asks the driver whether anything changed
 * (SQLite: PRAGMA data_version; PostgreSQL: a NOTIFY) and reloads only then.
 *
 * Store down: lookups keep answering from the copy; writes and refreshes fail
 * with a message naming the store; the next refresh or write at least
 * RECONNECT_MS after the failure opens a new connection and catches up.
 *
 * Audit: every write transaction that changes what a key is (created,
 * synced, permissions, state, label, rotation links, deleted, blobs) writes
 * one audit row per change in the same transaction, chained:
 * hash = SHA-256(previous hash || canonical row) (canon() below).
 *
 * Locks: db_mu (the connection; held across statements), then mu (the copy;
 * never held across a statement). Lookups take only mu. refresh() only tries
 * db_mu: a write in progress catches up anyway.
 */
#include "index/index.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/file.h"
#include "base/log.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/ossl.h"
#include "index/schema.h"
#include "index/sql.h"

#define ERR_MAX      512
#define RECONNECT_MS 1000
#define TIMEOUT_MS   5000
#define SEQ_MAX      (UINT64_C(1) << 62)

/* ---- records ---------------------------------------------------------------------------- */
/* ---- records ---------------------------------------------------------------------------- */

struct rec {
	struct rec *lab_prev, *lab_next, *cid_prev, *cid_next;
	uint64_t h_slot, h_label, h_cid;
	uint64_t vid, rev, prev, next;
	int64_t created, updated;
	CK_ULONG cls, key_type;
	uint32_t perms, presence;
	uint8_t state, origin;
	uint16_t slot_len, cid_len, label_len;
	unsigned char *blob; /* wrapped key value (software keys), NULL: none */
	size_t blob_len;
	struct chunk *chunk;  /* the chunk it lives in, NULL: an allocation of its own */
	unsigned char data[]; /* slot, CKA_ID, CKA_LABEL */
};

/*
 * Records read by a big load come from chunks: one allocation holds many
 * records with their byte strings and is freed with the last of them (live
 * counts them; changed under mu, or before the records reach the copy). The
 * first CHUNK_AFTER records of a load have allocations of their own, so that
 * a refresh of a few rows keeps no chunk alive for them.
 */
#define CHUNK_AFTER 256
#define CHUNK_BYTES ((size_t)256 * 1024)

struct chunk {
	size_t live, used;
	_Alignas(max_align_t) unsigned char mem[];
};

/* sizeof(struct rec) + n, rounded up so that the next record in a chunk is aligned. */
static size_t rec_size(size_t n)
{
	size_t a = _Alignof(struct rec);

	return (sizeof(struct rec) + n + a - 1) / a * a;
}

static const unsigned char *rec_slot(const struct rec *r)
{
	return r->data;
}

static const unsigned char *rec_cid(const struct rec *r)
{
	return r->data + r->slot_len;
}

static const unsigned char *rec_label(const struct rec *r)
{
	return r->data + r->slot_len + r->cid_len;
}

/* FNV-1a with a final mix: the maps' keys. */
static uint64_t hash_bytes(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/* Fills a record's strings and hashes; the rest zero. */
static struct rec *rec_init(struct rec *r, const char *slot, size_t slot_len,
                            const unsigned char *cid, size_t cid_len, const unsigned char *label,
                            size_t label_len)
{
	memset(r, 0, sizeof(*r));
	r->slot_len = (uint16_t)slot_len;
	r->cid_len = (uint16_t)cid_len;
	r->label_len = (uint16_t)label_len;
	memcpy(r->data, slot, slot_len);
	if (cid_len)
		memcpy(r->data + slot_len, cid, cid_len);
	if (label_len)
		memcpy(r->data + slot_len + cid_len, label, label_len);
	r->h_slot = hash_bytes(slot, slot_len);
	r->h_cid = hash_bytes(cid, cid_len);
	r->h_label = hash_bytes(label, label_len);
	return r;
}

static struct rec *rec_new(const char *slot, size_t slot_len, const unsigned char *cid,
                           size_t cid_len, const unsigned char *label, size_t label_len)
{
	struct rec *r = p11p_malloc(rec_size(slot_len + cid_len + label_len));

	if (r == NULL)
		return NULL;
	return rec_init(r, slot, slot_len, cid, cid_len, label, label_len);
}

/*
 * A record from *chunk (a new chunk when it has no room; the one it replaces
 * lives on through its records), or of its own while *n < CHUNK_AFTER.
 */
static struct rec *rec_new_chunked(struct chunk **chunk, size_t *n, const char *slot,
                                   size_t slot_len, const unsigned char *cid, size_t cid_len,
                                   const unsigned char *label, size_t label_len)
{
	size_t size = rec_size(slot_len + cid_len + label_len);
	struct chunk *c = *chunk;
	struct rec *r;

	if ((*n)++ < CHUNK_AFTER || size > CHUNK_BYTES)
		return rec_new(slot, slot_len, cid, cid_len, label, label_len);
	if (c == NULL || CHUNK_BYTES - c->used < size) {
		c = p11p_malloc(sizeof(*c) + CHUNK_BYTES);
		if (c == NULL)
			return NULL;
		c->live = 0;
		c->used = 0;
		*chunk = c;
	}
	r = rec_init((struct rec *)(void *)(c->mem + c->used), slot, slot_len, cid, cid_len, label,
	             label_len);
	r->chunk = c;
	c->used += size;
	c->live++;
	return r;
}

static void to_vkey(const struct rec *r, struct p11p_vkey *v)
{
	v->vid = r->vid;
	v->rev = r->rev;
	memcpy(v->slot, rec_slot(r), r->slot_len);
	v->slot[r->slot_len] = '\0';
	v->cls = r->cls;
	v->key_type = r->key_type;
	memcpy(v->ck_id, rec_cid(r), r->cid_len);
	v->ck_id[r->cid_len] = 0;
	v->ck_id_len = r->cid_len;
	memcpy(v->label, rec_label(r), r->label_len);
	v->label[r->label_len] = 0;
	v->label_len = r->label_len;
	v->perms = r->perms;
	v->state = (enum p11p_vk_state)r->state;
	v->origin = (enum p11p_vk_origin)r->origin;
	v->presence = r->presence;
	v->created = r->created;
	v->updated = r->updated;
	v->prev = r->prev;
	v->next = r->next;
}
/* ---- the handle ---------------------------------------------------------------------------- */

struct state {
	struct p11p_map by_id, by_label, by_cid;
	size_t count;
};

static void rec_free(struct rec *r)
{
	if (r == NULL)
		return;
	p11p_free(r->blob);
	if (r->chunk == NULL)
		p11p_free(r);
	else if (--r->chunk->live == 0)
		p11p_free(r->chunk);
}

static void free_rec_cb(void *value, void *arg)
{
	(void)arg;
	rec_free(value);
}

static void state_free(struct state *s)
{
	p11p_map_each(&s->by_id, free_rec_cb, NULL);
	p11p_map_clear(&s->by_id);
	p11p_map_clear(&s->by_label);
	p11p_map_clear(&s->by_cid);
	memset(s, 0, sizeof(*s));
}

/* The chains: maps' puts below run after p11p_map_reserve and cannot fail. */
static void link_rec(struct state *s, struct rec *r)
{
	void *head;

	/* The new record becomes the chain's head: one probe each. */
	(void)p11p_map_exchange(&s->by_label, r->h_slot, r->h_label, r, &head);
	r->lab_prev = NULL;
	r->lab_next = head;
	if (head != NULL)
		r->lab_next->lab_prev = r;

	(void)p11p_map_exchange(&s->by_cid, r->h_slot, r->h_cid, r, &head);
	r->cid_prev = NULL;
	r->cid_next = head;
	if (head != NULL)
		r->cid_next->cid_prev = r;
}

static void unlink_rec(struct state *s, struct rec *r)
{
	if (r->lab_prev != NULL)
		r->lab_prev->lab_next = r->lab_next;
	else if (r->lab_next != NULL)
		(void)p11p_map_put(&s->by_label, r->h_slot, r->h_label, r->lab_next);
	else
		p11p_map_remove(&s->by_label, r->h_slot, r->h_label);
	if (r->lab_next != NULL)
		r->lab_next->lab_prev = r->lab_prev;

	if (r->cid_prev != NULL)
		r->cid_prev->cid_next = r->cid_next;
	else if (r->cid_next != NULL)
		(void)p11p_map_put(&s->by_cid, r->h_slot, r->h_cid, r->cid_next);
	else
		p11p_map_remove(&s->by_cid, r->h_slot, r->h_cid);
	if (r->cid_next != NULL)
		r->cid_next->cid_prev = r->cid_prev;
}

/*
 * One change to the copy: put rec (owned) under vid (keeping the old record's
 * blob unless set_blob), delete vid (rec NULL, !set_blob), or replace the
 * blob of vid only (rec NULL, set_blob). blob is owned.
 */
struct op {
	uint64_t vid;
	struct rec *rec;
	bool set_blob;
	unsigned char *blob;
	size_t blob_len;
};

static void ops_free(struct op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		rec_free(ops[i].rec);
		p11p_free(ops[i].blob);
	}
	p11p_free(ops);
}

/*
 * Checks the record limit and makes every allocation applying ops needs.
 * Records new to the copy are counted once each; a vid put twice counts
 * twice, which errs on the safe side.
 */
static CK_RV txn_prepare(struct state *s, const struct op *ops, size_t n)
{
	size_t count = s->count;

	for (size_t i = 0; i < n; i++) {
		bool exists = p11p_map_get(&s->by_id, ops[i].vid, 0) != NULL;

		if (ops[i].rec != NULL && !exists)
			count++;
		else if (ops[i].rec == NULL && !ops[i].set_blob && exists && count > 0)
			count--;
	}
	if (count > P11P_INDEX_MAX_RECORDS)
		return CKR_DEVICE_MEMORY;
	if (p11p_map_reserve(&s->by_id, n) < 0 || p11p_map_reserve(&s->by_label, n) < 0 ||
	    p11p_map_reserve(&s->by_cid, n) < 0)
		return CKR_HOST_MEMORY;
	return CKR_OK;
}

/*
 * How many ops ahead txn_apply() prefetches the map slots an op will use: a
 * load of 100,000 keys makes three maps of a few MiB each, and every put is
 * otherwise a cache miss.
 */
#define PREFETCH_AHEAD 8

static void prefetch_op(const struct state *s, const struct op *o)
{
	p11p_map_prefetch(&s->by_id, o->vid, 0);
	if (o->rec != NULL) {
		p11p_map_prefetch(&s->by_label, o->rec->h_slot, o->rec->h_label);
		p11p_map_prefetch(&s->by_cid, o->rec->h_slot, o->rec->h_cid);
	}
}

/* Applies prepared ops in order; takes their records and blobs. Cannot fail. */
static void txn_apply(struct state *s, struct op *ops, size_t n)
{
	for (size_t i = 0; i < n && i < PREFETCH_AHEAD; i++)
		prefetch_op(s, &ops[i]);
	for (size_t i = 0; i < n; i++) {
		struct op *o = &ops[i];
		struct rec *old;
		void *prev;

		if (i + PREFETCH_AHEAD < n)
			prefetch_op(s, &ops[i + PREFETCH_AHEAD]);
		if (o->rec == NULL && o->set_blob) {
			old = p11p_map_get(&s->by_id, o->vid, 0);
			if (old != NULL) {
				p11p_free(old->blob);
				old->blob = o->blob;
				old->blob_len = o->blob_len;
				o->blob = NULL;
			}
			continue;
		}
		if (o->rec != NULL) {
			/* the record in by_id and the one it replaces, in one probe */
			(void)p11p_map_exchange(&s->by_id, o->vid, 0, o->rec, &prev);
			old = prev;
		} else {
			old = p11p_map_remove(&s->by_id, o->vid, 0);
		}
		if (old != NULL)
			unlink_rec(s, old);
		if (o->rec != NULL) {
			if (o->set_blob) {
				o->rec->blob = o->blob;
				o->rec->blob_len = o->blob_len;
				o->blob = NULL;
			} else if (old != NULL) {
				o->rec->blob = old->blob;
				o->rec->blob_len = old->blob_len;
				old->blob = NULL;
			}
			link_rec(s, o->rec);
			if (old == NULL)
				s->count++;
		} else if (old != NULL) {
			s->count--;
		}
		rec_free(old);
		o->rec = NULL;
	}
}

/* One overlay in the copy (text NULL: removed). */
struct ovl {
	struct ovl *next;
	int kind;
	uint64_t version;
	size_t len;
	char *text;
	char slot[P11P_INDEX_SLOT_MAX + 1];
};

static void ovl_free_all(struct ovl *o)
{
	while (o != NULL) {
		struct ovl *n = o->next;

		p11p_free(o->text);
		p11p_free(o);
		o = n;
	}
}

struct p11p_index {
	pthread_mutex_t db_mu;  /* the connection; before mu */
	pthread_mutex_t mu;     /* the copy */
	unsigned long fork_gen; /* p11p_fork_gen() of the process that opened it */
	char *target;
	bool is_file;
	bool readonly;               /* this process may not write the store */
	struct p11p_sql *db;         /* NULL while the store is down */
	unsigned long long retry_ms; /* no reconnect before (monotonic ms) */
	struct state st;
	uint64_t seq;    /* the highest vkeys seq loaded */
	struct ovl *ovl; /* the overlays (under mu) */
	uint64_t ov_seq; /* the highest overlays seq loaded */
	bool broken;     /* the last refresh failed */
	/* The audit chain's end within the write transaction under way (-1: not read yet). */
	int64_t txn_audit_id;
	bool txn_audit_dirty;
	char txn_audit_hash[65];
	/* Moves on, under mu, after every change of the records (p11p_index_gen()). */
	atomic_ulong gen;
	char err[ERR_MAX];
};

static void set_err(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/*
 * A handle inherited through fork() (index.h): the fork generation
 * (base/clock.h) is one load where getpid() was a system call on every lookup.
 */
static inline bool forked(const struct p11p_index *idx)
{
	return idx->fork_gen != p11p_fork_gen();
}

/* Calls on a handle inherited through fork() are refused (index.h). */
#define CHECK_OWNER(idx)                                                                           \
	do {                                                                                       \
		if (forked(idx))                                                                   \
			return CKR_CRYPTOKI_NOT_INITIALIZED;                                       \
	} while (0)

/* Parameter values. */
#define V_INT(x)     ((struct p11p_sql_val){.type = P11P_SQL_INT, .i = (int64_t)(x)})
#define V_TEXT(s, n) ((struct p11p_sql_val){.type = P11P_SQL_TEXT, .p = (s), .len = (n)})
#define V_STR(s)     V_TEXT((s), strlen(s))
#define V_BLOB(s, n) ((struct p11p_sql_val){.type = P11P_SQL_BLOB, .p = (s), .len = (n)})
#define NV(a)        (sizeof(a) / sizeof((a)[0]))

/* The CK_RV of a store failure; keeps the driver's message; drops a lost connection. */
static CK_RV sql_fail(struct p11p_index *idx, enum p11p_sql_rc rc, const char *what)
{
	const char *msg = p11p_sql_error(idx->db);

	if (rc == P11P_SQL_NOMEM) {
		set_err(idx->err, sizeof(idx->err), "%s: out of memory", idx->target);
		return CKR_HOST_MEMORY;
	}
	if (msg[0] != '\0')
		set_err(idx->err, sizeof(idx->err), "%s", msg);
	else
		set_err(idx->err, sizeof(idx->err), "store %s: %s failed", idx->target, what);
	if (rc == P11P_SQL_DOWN && idx->db != NULL) {
		p11p_sql_close(idx->db);
		idx->db = NULL;
		idx->retry_ms = p11p_now_ms() + RECONNECT_MS;
	}
	return rc == P11P_SQL_CONFLICT ? P11P_INDEX_CONFLICT : CKR_FUNCTION_FAILED;
}

/* ---- reading rows --------------------------------------------------------------------------- */

static int one_int_cb(void *arg, const struct p11p_sql_val *cols, size_t n)
{
	int64_t *v = arg;

	if (n >= 1 && cols[0].type == P11P_SQL_INT)
		*v = cols[0].i;
	return 1;
}

#define VKEY_COLS                                                                                  \
	"vid, seq, live, rev, slot, cls, key_type, ck_id, label, perms, state, origin, presence, " \
	"created, updated, prev, next"

/* The columns' types (the bulk read's, p11p_sql_read; the callbacks check every value). */
#define I_ P11P_SQL_INT
static const enum p11p_sql_type vkey_types[17] = {
    I_, I_, I_, I_, P11P_SQL_TEXT, I_, I_, P11P_SQL_BLOB, P11P_SQL_BLOB, I_, I_, I_, I_,
    I_, I_, I_, I_};
#undef I_
static const enum p11p_sql_type blob_types[2] = {P11P_SQL_INT, P11P_SQL_BLOB};

struct loader {
	struct op *ops;
	size_t n, cap;
	struct chunk *chunk; /* the records' current chunk (rec_new_chunked) */
	size_t n_recs;
	uint64_t max_seq;
	bool bad, nomem;
	int64_t bad_vid;
};

static bool bytes_col(const struct p11p_sql_val *v, size_t max)
{
	return (v->type == P11P_SQL_BLOB || v->type == P11P_SQL_TEXT) && v->len <= max;
}

static struct op *loader_next(struct loader *ld)
{
	if (ld->n == ld->cap) {
		size_t cap = ld->cap ? ld->cap * 2 : 256;
		struct op *o = p11p_reallocarray(ld->ops, cap, sizeof(*o));

		if (o == NULL)
			return NULL;
		ld->ops = o;
		ld->cap = cap;
	}
	memset(&ld->ops[ld->n], 0, sizeof(ld->ops[0]));
	return &ld->ops[ld->n++];
}

static int vkey_row_cb(void *arg, const struct p11p_sql_val *c, size_t n)
{
	struct loader *ld = arg;
	struct op *o;
	struct rec *r;

	if (n != 17) {
		ld->bad = true;
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		if (i == 4 || i == 7 || i == 8)
			continue;
		if (c[i].type != P11P_SQL_INT) {
			ld->bad = true;
			ld->bad_vid = c[0].type == P11P_SQL_INT ? c[0].i : 0;
			return 1;
		}
	}
	ld->bad_vid = c[0].i;
	if (c[0].i == 0 || c[1].i <= 0 || (uint64_t)c[1].i > SEQ_MAX ||
	    c[4].type != P11P_SQL_TEXT || c[4].len == 0 || c[4].len > P11P_INDEX_SLOT_MAX ||
	    memchr(c[4].p, 0, c[4].len) != NULL || !bytes_col(&c[7], P11P_INDEX_ID_MAX) ||
	    !bytes_col(&c[8], P11P_INDEX_LABEL_MAX) || c[3].i < 1 || (uint64_t)c[3].i > SEQ_MAX ||
	    (c[9].i & ~(int64_t)P11P_VK_ALL) != 0 || c[10].i < 0 || c[10].i > P11P_VK_DELETED ||
	    c[11].i < 0 || c[11].i > P11P_VK_SCANNED || c[12].i < 0 || c[12].i > 0xffff) {
		ld->bad = true;
		return 1;
	}
	if ((uint64_t)c[1].i > ld->max_seq)
		ld->max_seq = (uint64_t)c[1].i;
	o = loader_next(ld);
	if (o == NULL) {
		ld->nomem = true;
		return 1;
	}
	o->vid = (uint64_t)c[0].i;
	if (c[2].i == 0)
		return 0; /* a tombstone: delete */
	r = rec_new_chunked(&ld->chunk, &ld->n_recs, c[4].p, c[4].len, c[7].p, c[7].len, c[8].p,
	                    c[8].len);
	if (r == NULL) {
		ld->nomem = true;
		return 1;
	}
	o->rec = r;
	r->vid = o->vid;
	r->rev = (uint64_t)c[3].i;
	r->cls = (CK_ULONG)c[5].i;
	r->key_type = (CK_ULONG)c[6].i;
	r->perms = (uint32_t)c[9].i;
	r->state = (uint8_t)c[10].i;
	r->origin = (uint8_t)c[11].i;
	r->presence = (uint32_t)c[12].i;
	r->created = c[13].i;
	r->updated = c[14].i;
	r->prev = (uint64_t)c[15].i;
	r->next = (uint64_t)c[16].i;
	return 0;
}

static int blob_row_cb(void *arg, const struct p11p_sql_val *c, size_t n)
{
	struct loader *ld = arg;
	struct op *o;

	if (n != 2 || c[0].type != P11P_SQL_INT || !bytes_col(&c[1], P11P_INDEX_BLOB_MAX) ||
	    c[1].len == 0) {
		ld->bad = true;
		return 1;
	}
	o = loader_next(ld);
	if (o == NULL || (o->blob = p11p_malloc(c[1].len)) == NULL) {
		ld->nomem = true;
		return 1;
	}
	o->vid = (uint64_t)c[0].i;
	o->set_blob = true;
	memcpy(o->blob, c[1].p, c[1].len);
	o->blob_len = c[1].len;
	return 0;
}

/*
 * Reads what changed since idx->seq and applies it to the copy. Under db_mu
 * (takes mu to apply). CKR_OK when nothing changed too.
 */
static CK_RV load_records(struct p11p_index *idx)
{
	struct loader ld = {.max_seq = idx->seq};
	struct p11p_sql_val p[2] = {V_INT(idx->seq), V_INT(0)};
	enum p11p_sql_rc rc;
	CK_RV rv = CKR_OK;

	rc = p11p_sql_read(idx->db, "SELECT " VKEY_COLS " FROM vkeys WHERE seq > $1 ORDER BY seq",
	                   p, 1, vkey_types, NV(vkey_types), vkey_row_cb, &ld);
	if (rc == P11P_SQL_OK && !ld.bad && !ld.nomem && ld.max_seq > idx->seq) {
		p[1] = V_INT(ld.max_seq);
		rc = p11p_sql_read(idx->db,
		                   "SELECT vid, data FROM blobs WHERE seq > $1 AND seq <= $2 "
		                   "ORDER BY seq",
		                   p, 2, blob_types, NV(blob_types), blob_row_cb, &ld);
	}
	if (rc != P11P_SQL_OK) {
		rv = sql_fail(idx, rc, "read");
		goto out;
	}
	if (ld.nomem) {
		rv = CKR_HOST_MEMORY;
		set_err(idx->err, sizeof(idx->err), "%s: out of memory", idx->target);
		goto out;
	}
	if (ld.bad) {
		set_err(idx->err, sizeof(idx->err),
		        "store %s: damaged row (vkeys vid %016" PRIx64 ")", idx->target,
		        (uint64_t)ld.bad_vid);
		rv = CKR_FUNCTION_FAILED;
		goto out;
	}
	if (ld.n == 0)
		goto out;
	pthread_mutex_lock(&idx->mu);
	rv = txn_prepare(&idx->st, ld.ops, ld.n);
	if (rv == CKR_OK) {
		txn_apply(&idx->st, ld.ops, ld.n);
		idx->seq = ld.max_seq;
		atomic_fetch_add_explicit(&idx->gen, 1, memory_order_release);
	} else {
		set_err(idx->err, sizeof(idx->err), "%s: %s", idx->target,
		        rv == CKR_HOST_MEMORY ? "out of memory" : "too many records");
	}
	pthread_mutex_unlock(&idx->mu);
out:
	ops_free(ld.ops, ld.n);
	return rv;
}

/* ---- overlays ------------------------------------------------------------------------------ */

static const char *ovl_kind_name(int kind)
{
	return kind == P11P_OVERLAY_ORDER ? "member-order" : "policy";
}

struct ovl_loader {
	struct ovl *head;
	uint64_t max_seq;
	bool bad, nomem;
};

/* slot, kind, text, version, seq */
static int ovl_row_cb(void *arg, const struct p11p_sql_val *c, size_t n)
{
	struct ovl_loader *ld = arg;
	struct ovl *o;
	int kind;

	if (n != 5 || c[0].type != P11P_SQL_TEXT || c[0].len == 0 ||
	    c[0].len > P11P_INDEX_SLOT_MAX || memchr(c[0].p, 0, c[0].len) != NULL ||
	    c[1].type != P11P_SQL_TEXT || c[2].type != P11P_SQL_TEXT ||
	    c[2].len > P11P_INDEX_OVERLAY_MAX || memchr(c[2].p, 0, c[2].len) != NULL ||
	    c[3].type != P11P_SQL_INT || c[3].i < 0 || c[4].type != P11P_SQL_INT || c[4].i <= 0 ||
	    (uint64_t)c[4].i > SEQ_MAX) {
		ld->bad = true;
		return 1;
	}
	if (c[1].len == 12 && memcmp(c[1].p, "member-order", 12) == 0)
		kind = P11P_OVERLAY_ORDER;
	else if (c[1].len == 6 && memcmp(c[1].p, "policy", 6) == 0)
		kind = P11P_OVERLAY_POLICY;
	else
		return 0; /* a kind of a later version: not ours */
	o = p11p_calloc(1, sizeof(*o));
	if (o == NULL || (c[2].len > 0 && (o->text = p11p_malloc(c[2].len + 1)) == NULL)) {
		p11p_free(o);
		ld->nomem = true;
		return 1;
	}
	memcpy(o->slot, c[0].p, c[0].len);
	o->kind = kind;
	o->version = (uint64_t)c[3].i;
	o->len = c[2].len;
	if (o->text != NULL) {
		memcpy(o->text, c[2].p, c[2].len);
		o->text[c[2].len] = '\0';
	}
	if ((uint64_t)c[4].i > ld->max_seq)
		ld->max_seq = (uint64_t)c[4].i;
	o->next = ld->head;
	ld->head = o;
	return 0;
}

/* Puts o in the copy in place of the slot's overlay of its kind. Under mu; takes o. */
static void ovl_set_locked(struct p11p_index *idx, struct ovl *o)
{
	for (struct ovl **pp = &idx->ovl; *pp != NULL; pp = &(*pp)->next) {
		struct ovl *cur = *pp;

		if (cur->kind == o->kind && strcmp(cur->slot, o->slot) == 0) {
			o->next = cur->next;
			*pp = o;
			cur->next = NULL;
			ovl_free_all(cur);
			return;
		}
	}
	o->next = idx->ovl;
	idx->ovl = o;
}

/* Reads the overlays changed since idx->ov_seq into the copy. Under db_mu. */
static CK_RV load_overlays(struct p11p_index *idx)
{
	struct ovl_loader ld = {.max_seq = idx->ov_seq};
	struct p11p_sql_val p[] = {V_INT(idx->ov_seq)};
	enum p11p_sql_rc rc;

	rc = p11p_sql_exec(idx->db,
	                   "SELECT slot, kind, text, version, seq FROM overlays WHERE seq > $1 "
	                   "ORDER BY seq",
	                   p, NV(p), ovl_row_cb, &ld);
	if (rc != P11P_SQL_OK || ld.nomem || ld.bad) {
		ovl_free_all(ld.head);
		if (rc != P11P_SQL_OK)
			return sql_fail(idx, rc, "read");
		if (ld.nomem) {
			set_err(idx->err, sizeof(idx->err), "%s: out of memory", idx->target);
			return CKR_HOST_MEMORY;
		}
		set_err(idx->err, sizeof(idx->err), "store %s: damaged row (overlays)",
		        idx->target);
		return CKR_FUNCTION_FAILED;
	}
	/* ld.head is newest first: apply oldest first. */
	{
		struct ovl *rev = NULL;

		while (ld.head != NULL) {
			struct ovl *o = ld.head;

			ld.head = o->next;
			o->next = rev;
			rev = o;
		}
		pthread_mutex_lock(&idx->mu);
		while (rev != NULL) {
			struct ovl *o = rev;

			rev = o->next;
			o->next = NULL;
			ovl_set_locked(idx, o);
		}
		idx->ov_seq = ld.max_seq;
		pthread_mutex_unlock(&idx->mu);
	}
	return CKR_OK;
}

/* Reads what changed since the copy was made: records, blobs, overlays. Under db_mu. */
static CK_RV load_changes(struct p11p_index *idx)
{
	CK_RV rv = load_records(idx);

	return rv == CKR_OK ? load_overlays(idx) : rv;
}

/* ---- connecting ----------------------------------------------------------------------------- */

/* Creates or brings the schema up to date (a writer), or checks it (a reader). */
static CK_RV migrate(struct p11p_index *idx)
{
	int64_t version = -1;
	enum p11p_sql_rc rc;

	rc = p11p_sql_exec(idx->db, "SELECT max(version) FROM migrations", NULL, 0, one_int_cb,
	                   &version);
	if (rc == P11P_SQL_OK && version == P11P_STORE_SCHEMA_VERSION)
		return CKR_OK;
	if (rc == P11P_SQL_OK && version > P11P_STORE_SCHEMA_VERSION) {
		set_err(idx->err, sizeof(idx->err),
		        "store %s: schema version %" PRId64 " is newer than this p11proxy (%d)",
		        idx->target, version, P11P_STORE_SCHEMA_VERSION);
		return CKR_FUNCTION_FAILED;
	}
	if (rc == P11P_SQL_DOWN || rc == P11P_SQL_NOMEM || rc == P11P_SQL_CORRUPT)
		return sql_fail(idx, rc, "open");
	if (rc != P11P_SQL_OK || version < 1)
		version = 0; /* nothing there yet */
	if (idx->readonly) {
		if (version > 0)
			set_err(idx->err, sizeof(idx->err),
			        "store %s: schema version %" PRId64
			        " is older than this p11proxy (%d), and this process may not "
			        "upgrade it: a process that may write it does (`p11proxy sync`; "
			        "PostgreSQL: `p11proxy store init`)",
			        idx->target, version, P11P_STORE_SCHEMA_VERSION);
		else
			set_err(idx->err, sizeof(idx->err),
			        "store %s: not initialised, and this process may not write it",
			        idx->target);
		return CKR_FUNCTION_FAILED;
	}
	/* Every missing step, and its row in migrations, in one transaction. */
	rc = p11p_sql_begin(idx->db);
	/*
	 * Again, in the transaction: another process may have made or upgraded it
	 * meanwhile (SQLite's ALTER TABLE cannot run twice). Not on PostgreSQL
	 * while the table may be missing: a failed statement spoils the
	 * transaction there (and its steps may run twice).
	 */
	if (rc == P11P_SQL_OK && (version > 0 || p11p_sql_engine_of(idx->db) != P11P_SQL_PG)) {
		int64_t again = -1;

		if (p11p_sql_exec(idx->db, "SELECT max(version) FROM migrations", NULL, 0,
		                  one_int_cb, &again) == P11P_SQL_OK &&
		    again > version)
			version = again;
	}
	for (int v = (int)version + 1; rc == P11P_SQL_OK && v <= P11P_STORE_SCHEMA_VERSION; v++) {
		size_t n = 0;
		const char *const *ddl = p11p_store_schema_step(p11p_sql_engine_of(idx->db), v, &n);
		struct p11p_sql_val p[] = {V_INT(v), V_INT(time(NULL))};

		for (size_t i = 0; rc == P11P_SQL_OK && i < n; i++)
			rc = p11p_sql_exec(idx->db, ddl[i], NULL, 0, NULL, NULL);
		if (rc == P11P_SQL_OK)
			rc = p11p_sql_exec(idx->db,
			                   "INSERT INTO migrations (version, applied) VALUES ($1, "
			                   "$2) ON CONFLICT (version) DO NOTHING",
			                   p, NV(p), NULL, NULL);
	}
	if (rc == P11P_SQL_OK)
		rc = p11p_sql_commit(idx->db);
	if (rc != P11P_SQL_OK) {
		CK_RV rv;

		p11p_sql_rollback(idx->db);
		rv = sql_fail(idx, rc, version > 0 ? "upgrade the schema" : "create the schema");
		if (version > 0 && rc == P11P_SQL_DENIED)
			set_err(idx->err, sizeof(idx->err),
			        "store %s: schema version %" PRId64
			        " is older than this p11proxy (%d), and this role may not upgrade "
			        "it: run `p11proxy store init` as the administrator",
			        idx->target, version, P11P_STORE_SCHEMA_VERSION);
		return rv;
	}
	return CKR_OK;
}

/* Opens the connection when there is none. Under db_mu. */
static CK_RV connect_db(struct p11p_index *idx, bool now)
{
	char err[ERR_MAX];
	enum p11p_sql_rc rc;
	CK_RV rv;

	if (idx->db != NULL)
		return CKR_OK;
	if (!now && p11p_now_ms() < idx->retry_ms) {
		if (idx->err[0] == '\0')
			set_err(idx->err, sizeof(idx->err), "store %s: down", idx->target);
		return CKR_FUNCTION_FAILED;
	}
	rc = p11p_sql_open(idx->target, idx->readonly, TIMEOUT_MS, &idx->db, err, sizeof(err));
	if (rc == P11P_SQL_DENIED && !idx->readonly) {
		idx->readonly = true;
		rc = p11p_sql_open(idx->target, true, TIMEOUT_MS, &idx->db, err, sizeof(err));
	}
	if (rc != P11P_SQL_OK) {
		idx->db = NULL;
		idx->retry_ms = p11p_now_ms() + RECONNECT_MS;
		set_err(idx->err, sizeof(idx->err), "%s", err);
		return rc == P11P_SQL_NOMEM ? CKR_HOST_MEMORY : CKR_FUNCTION_FAILED;
	}
	rv = migrate(idx);
	if (rv != CKR_OK && idx->db != NULL) {
		p11p_sql_close(idx->db);
		idx->db = NULL;
		idx->retry_ms = p11p_now_ms() + RECONNECT_MS;
	}
	return rv;
}

/*
 * A file store: the directory must be safe (owned by you or root, not
 * writable by group or others), the file a regular file owned by you, root
 * or the directory's owner and not writable by group or others. Creates it
 * (0600) when absent and the directory may be written; else this process
 * reads only.
 */
static CK_RV check_file_store(struct p11p_index *idx, char *err, size_t errlen)
{
	const char *path = idx->target;
	char *dir, *slash = strrchr(path, '/');
	struct stat db, fb;
	CK_RV rv = CKR_FUNCTION_FAILED;
	int fd;

	dir = slash == NULL   ? p11p_strdup(".")
	      : slash == path ? p11p_strdup("/")
	                      : p11p_strndup(path, (size_t)(slash - path));
	if (dir == NULL)
		return CKR_HOST_MEMORY;
	if (stat(dir, &db) != 0) {
		set_err(err, errlen, "%s: directory %s: %s", path, dir, strerror(errno));
		goto out;
	}
	if (!S_ISDIR(db.st_mode) || !p11p_file_safe_owner(&db, true)) {
		set_err(err, errlen,
		        "%s: unsafe directory %s (must be owned by you or root and not writable "
		        "by group or others)",
		        path, dir);
		goto out;
	}
	if (lstat(path, &fb) != 0) {
		if (errno != ENOENT) {
			set_err(err, errlen, "%s: %s", path, strerror(errno));
			goto out;
		}
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST) {
			set_err(err, errlen, "%s: cannot create the store: %s", path,
			        strerror(errno));
			goto out;
		}
		if (fd >= 0) {
			close(fd);
			(void)p11p_file_sync_dir(dir);
		}
		if (lstat(path, &fb) != 0) {
			set_err(err, errlen, "%s: %s", path, strerror(errno));
			goto out;
		}
	}
	if (!S_ISREG(fb.st_mode)) {
		set_err(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	if ((fb.st_mode & 022) != 0 ||
	    (fb.st_uid != geteuid() && fb.st_uid != 0 && fb.st_uid != db.st_uid)) {
		set_err(err, errlen,
		        "%s: unsafe store file (must be owned by you, root or the directory's "
		        "owner, and not writable by group or others)",
		        path);
		goto out;
	}
	idx->readonly = access(path, W_OK) != 0 || access(dir, W_OK) != 0;
	rv = CKR_OK;
out:
	p11p_free(dir);
	return rv;
}

CK_RV p11p_index_open(const char *path, struct p11p_index **out, char *err, size_t errlen)
{
	struct p11p_index *idx;
	CK_RV rv;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	p11p_return_val_if_fail(path != NULL && out != NULL, CKR_ARGUMENTS_BAD);
	*out = NULL;
	if (*path == '\0') {
		set_err(err, errlen, "index: empty path");
		return CKR_ARGUMENTS_BAD;
	}
	idx = p11p_calloc(1, sizeof(*idx));
	if (idx == NULL) {
		set_err(err, errlen, "%s: out of memory", path);
		return CKR_HOST_MEMORY;
	}
	if (pthread_mutex_init(&idx->mu, NULL) != 0) {
		p11p_free(idx);
		set_err(err, errlen, "%s: out of memory", path);
		return CKR_HOST_MEMORY;
	}
	if (pthread_mutex_init(&idx->db_mu, NULL) != 0) {
		pthread_mutex_destroy(&idx->mu);
		p11p_free(idx);
		set_err(err, errlen, "%s: out of memory", path);
		return CKR_HOST_MEMORY;
	}
	atomic_init(&idx->gen, 1);
	idx->fork_gen = p11p_fork_watch();
	idx->target = p11p_strdup(path);
	if (idx->target == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	idx->is_file = !p11p_sql_is_pg(path);
	rv = idx->is_file ? check_file_store(idx, idx->err, sizeof(idx->err)) : CKR_OK;
	if (rv == CKR_OK)
		rv = connect_db(idx, true);
	if (rv == CKR_OK)
		rv = load_changes(idx);
out:
	if (rv != CKR_OK) {
		if (rv == CKR_HOST_MEMORY || idx->err[0] == '\0')
			set_err(err, errlen, "%s: %s", path,
			        rv == CKR_HOST_MEMORY ? "out of memory" : "cannot open");
		else
			set_err(err, errlen, "%s", idx->err);
		p11p_index_close(idx);
		return rv;
	}
	idx->err[0] = '\0';
	*out = idx;
	return CKR_OK;
}

void p11p_index_close(struct p11p_index *idx)
{
	if (idx == NULL)
		return;
	if (forked(idx)) {
		/* Forked: the connection is the parent's; nothing here talks to it. */
		if (pthread_mutex_trylock(&idx->db_mu) != 0)
			return;
		if (pthread_mutex_trylock(&idx->mu) != 0) {
			/* A parent thread held it at fork: its state may be half-changed. */
			pthread_mutex_unlock(&idx->db_mu);
			return;
		}
		p11p_sql_abandon(idx->db);
		idx->db = NULL;
		pthread_mutex_unlock(&idx->mu);
		pthread_mutex_unlock(&idx->db_mu);
	}
	p11p_sql_close(idx->db);
	state_free(&idx->st);
	ovl_free_all(idx->ovl);
	pthread_mutex_destroy(&idx->mu);
	pthread_mutex_destroy(&idx->db_mu);
	p11p_free(idx->target);
	p11p_free(idx);
}

CK_RV p11p_index_refresh(struct p11p_index *idx)
{
	bool changed = false;
	enum p11p_sql_rc rc;
	CK_RV rv;

	p11p_return_val_if_fail(idx != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	/* A write of this process in progress catches up on its own. */
	if (pthread_mutex_trylock(&idx->db_mu) != 0)
		return CKR_OK;
	rv = connect_db(idx, false);
	if (rv == CKR_OK) {
		changed = idx->broken;
		rc = p11p_sql_changed(idx->db, &changed);
		if (rc != P11P_SQL_OK)
			rv = sql_fail(idx, rc, "change notice");
		else if (changed || idx->broken)
			rv = load_changes(idx);
	}
	if (rv != CKR_OK && rv != CKR_HOST_MEMORY && !idx->broken)
		p11p_message("index: %s", idx->err);
	idx->broken = rv != CKR_OK;
	pthread_mutex_unlock(&idx->db_mu);
	return rv;
}

/* ---- audit ---------------------------------------------------------------------------------- */

static const char perm_letters[] = "edsvwuk";
static const char *const state_names[] = {"active", "deactivated", "missing", "deleted"};

static void perms_str(uint32_t perms, char out[8])
{
	for (int i = 0; i < 7; i++)
		out[i] = perms & (1u << i) ? perm_letters[i] : '-';
	out[7] = '\0';
}

/* The writer's identity, once per process. */
struct who {
	char host[256];
	char program[64];
	int64_t uid;
};

static void who_am_i(struct who *w)
{
	FILE *f;

	if (gethostname(w->host, sizeof(w->host)) != 0)
		snprintf(w->host, sizeof(w->host), "?");
	w->host[sizeof(w->host) - 1] = '\0';
	snprintf(w->program, sizeof(w->program), "?");
	f = fopen("/proc/self/comm", "re");
	if (f != NULL) {
		if (fgets(w->program, sizeof(w->program), f) != NULL)
			w->program[strcspn(w->program, "\n")] = '\0';
		fclose(f);
	}
	w->uid = (int64_t)geteuid();
}

/* Appends "<len>:<bytes>" (the canonical form of one field). */
static void canon_field(EVP_MD_CTX *md, const void *p, size_t len)
{
	char n[32];
	int k = snprintf(n, sizeof(n), "%zu:", len);

	EVP_DigestUpdate(md, n, (size_t)k);
	if (len > 0)
		EVP_DigestUpdate(md, p, len);
}

static void canon_int(EVP_MD_CTX *md, int64_t v)
{
	char n[32];
	int k = snprintf(n, sizeof(n), "%" PRId64, v);

	canon_field(md, n, (size_t)k);
}

bool p11p_index_audit_hash(const struct p11p_audit *a, const char *prev, char out[65])
{
	EVP_MD *sha = EVP_MD_fetch(p11p_ossl_ctx(), "SHA256", NULL);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char h[32];
	unsigned int hl = 0;
	bool ok = false;

	if (sha != NULL && md != NULL && EVP_DigestInit_ex(md, sha, NULL) == 1) {
		canon_field(md, prev, strlen(prev));
		canon_int(md, (int64_t)a->id);
		canon_int(md, a->time);
		canon_field(md, a->host, strlen(a->host));
		canon_int(md, a->uid);
		canon_field(md, a->program, strlen(a->program));
		canon_field(md, a->slot, strlen(a->slot));
		canon_int(md, (int64_t)a->vid);
		canon_field(md, a->label, a->label_len);
		canon_field(md, a->what, strlen(a->what));
		canon_field(md, a->from, strlen(a->from));
		canon_field(md, a->to, strlen(a->to));
		ok = EVP_DigestFinal_ex(md, h, &hl) == 1 && hl == sizeof(h);
	}
	EVP_MD_CTX_free(md);
	EVP_MD_free(sha);
	if (ok) {
		for (unsigned i = 0; i < sizeof(h); i++)
			snprintf(out + 2 * i, 3, "%02x", h[i]);
	}
	return ok;
}

static int hash_row_cb(void *arg, const struct p11p_sql_val *c, size_t n)
{
	char *h = arg;

	if (n == 1 && c[0].type == P11P_SQL_TEXT && c[0].len == 64) {
		memcpy(h, c[0].p, 64);
		h[64] = '\0';
	}
	return 1;
}

static struct who who;
static pthread_once_t who_once = PTHREAD_ONCE_INIT;

static void who_init(void)
{
	who_am_i(&who);
}

/* One audit row, in the caller's write transaction. */
static CK_RV audit_add(struct p11p_index *idx, const char *slot, uint64_t vid,
                       const unsigned char *label, size_t label_len, const char *what,
                       const char *from, const char *to)
{
	struct p11p_audit *a = p11p_calloc(1, sizeof(*a));
	char prev[65] = "", hash[65];
	int64_t last = 0;
	enum p11p_sql_rc rc;
	CK_RV rv = CKR_OK;

	if (a == NULL)
		return CKR_HOST_MEMORY;
	pthread_once(&who_once, who_init);
	if (idx->txn_audit_id >= 0) {
		last = idx->txn_audit_id;
		memcpy(prev, idx->txn_audit_hash, sizeof(prev));
	} else {
		rc = p11p_sql_exec(idx->db, "SELECT value FROM meta WHERE name = 'audit_seq'", NULL,
		                   0, one_int_cb, &last);
		if (rc == P11P_SQL_OK && last > 0) {
			struct p11p_sql_val p[] = {V_INT(last)};

			rc = p11p_sql_exec(idx->db, "SELECT hash FROM audit WHERE id = $1", p,
			                   NV(p), hash_row_cb, prev);
		}
		if (rc != P11P_SQL_OK) {
			rv = sql_fail(idx, rc, "audit");
			goto out;
		}
	}
	a->id = (uint64_t)last + 1;
	a->time = (int64_t)time(NULL);
	snprintf(a->host, sizeof(a->host), "%s", who.host);
	a->uid = (uint32_t)who.uid;
	snprintf(a->program, sizeof(a->program), "%s", who.program);
	snprintf(a->slot, sizeof(a->slot), "%s", slot);
	a->vid = vid;
	a->label_len = label_len <= P11P_INDEX_LABEL_MAX ? label_len : P11P_INDEX_LABEL_MAX;
	memcpy(a->label, label, a->label_len);
	snprintf(a->what, sizeof(a->what), "%s", what);
	snprintf(a->from, sizeof(a->from), "%s", from);
	snprintf(a->to, sizeof(a->to), "%s", to);
	if (!p11p_index_audit_hash(a, prev, hash)) {
		rv = CKR_HOST_MEMORY;
		set_err(idx->err, sizeof(idx->err), "%s: audit hash: out of memory", idx->target);
		goto out;
	}
	{
		struct p11p_sql_val p[] = {
		    V_INT(a->id),      V_INT(a->time),
		    V_STR(a->host),    V_INT(a->uid),
		    V_STR(a->program), V_STR(a->slot),
		    V_INT(a->vid),     V_BLOB(a->label, a->label_len),
		    V_STR(a->what),    V_STR(a->from),
		    V_STR(a->to),      V_TEXT(hash, 64),
		};

		rc = p11p_sql_exec(
		    idx->db,
		    "INSERT INTO audit (id, time, host, uid, program, slot, vid, label, "
		    "what, from_v, to_v, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
		    "$9, $10, $11, $12)",
		    p, NV(p), NULL, NULL);
	}
	if (rc == P11P_SQL_OK) {
		/* meta.audit_seq is written once, at the end of the transaction (write_end). */
		idx->txn_audit_id = (int64_t)a->id;
		idx->txn_audit_dirty = true;
		memcpy(idx->txn_audit_hash, hash, sizeof(idx->txn_audit_hash));
	} else {
		rv = sql_fail(idx, rc, "audit");
	}
out:
	p11p_free(a);
	return rv;
}

/* The audit rows of putting v over old (NULL: new). */
static CK_RV audit_put(struct p11p_index *idx, const struct rec *old, const struct rec *r)
{
	char slot[P11P_INDEX_SLOT_MAX + 1], a[64], b[64];
	const unsigned char *label = rec_label(r);
	CK_RV rv = CKR_OK;

	memcpy(slot, rec_slot(r), r->slot_len);
	slot[r->slot_len] = '\0';
	if (old == NULL) {
		perms_str(r->perms, b);
		return audit_add(idx, slot, r->vid, label, r->label_len,
		                 r->origin == P11P_VK_SCANNED ? "sync" : "create", "", b);
	}
	if (old->perms != r->perms) {
		perms_str(old->perms, a);
		perms_str(r->perms, b);
		rv = audit_add(idx, slot, r->vid, label, r->label_len, "perms", a, b);
	}
	if (rv == CKR_OK && old->state != r->state) {
		const char *what = r->state == P11P_VK_ACTIVE        ? "activate"
		                   : r->state == P11P_VK_DEACTIVATED ? "deactivate"
		                   : r->state == P11P_VK_DELETED     ? "delete"
		                                                     : "sync";

		rv = audit_add(idx, slot, r->vid, label, r->label_len, what,
		               state_names[old->state], state_names[r->state]);
	}
	if (rv == CKR_OK && (old->next != r->next || old->prev != r->prev)) {
		snprintf(a, sizeof(a), "%016" PRIx64 "/%016" PRIx64, old->prev, old->next);
		snprintf(b, sizeof(b), "%016" PRIx64 "/%016" PRIx64, r->prev, r->next);
		rv = audit_add(idx, slot, r->vid, label, r->label_len, "rotate", a, b);
	}
	if (rv == CKR_OK && old->presence != r->presence) {
		snprintf(a, sizeof(a), "%" PRIx32, old->presence);
		snprintf(b, sizeof(b), "%" PRIx32, r->presence);
		rv = audit_add(idx, slot, r->vid, label, r->label_len, "sync", a, b);
	}
	if (rv == CKR_OK &&
	    (old->label_len != r->label_len || memcmp(rec_label(old), label, r->label_len) != 0)) {
		rv = audit_add(idx, slot, r->vid, label, r->label_len, "label", "", "");
	}
	return rv;
}

/* ---- lookups ------------------------------------------------------------------------------- */

CK_RV p11p_index_get(struct p11p_index *idx, uint64_t vid, struct p11p_vkey *out, bool *found)
{
	struct rec *r;

	p11p_return_val_if_fail(idx != NULL && out != NULL && found != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	pthread_mutex_lock(&idx->mu);
	r = vid != 0 ? p11p_map_get(&idx->st.by_id, vid, 0) : NULL;
	*found = r != NULL;
	if (r != NULL)
		to_vkey(r, out);
	pthread_mutex_unlock(&idx->mu);
	return CKR_OK;
}

CK_RV p11p_index_get_brief(struct p11p_index *idx, uint64_t vid, struct p11p_vkey *out, bool *found,
                           unsigned long *gen)
{
	struct rec *r;

	p11p_return_val_if_fail(idx != NULL && out != NULL && found != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	pthread_mutex_lock(&idx->mu);
	if (gen != NULL)
		*gen = atomic_load_explicit(&idx->gen, memory_order_relaxed);
	r = vid != 0 ? p11p_map_get(&idx->st.by_id, vid, 0) : NULL;
	*found = r != NULL;
	if (r != NULL) {
		out->vid = r->vid;
		out->cls = r->cls;
		out->perms = r->perms;
		out->state = (enum p11p_vk_state)r->state;
	}
	pthread_mutex_unlock(&idx->mu);
	return CKR_OK;
}

unsigned long p11p_index_gen(struct p11p_index *idx)
{
	return atomic_load_explicit(&idx->gen, memory_order_acquire);
}

struct finder {
	const struct p11p_vkey_match *m;
	size_t slot_len;
	struct p11p_vkey *out;
	size_t max, count;
};

static void find_one(struct finder *f, const struct rec *r)
{
	const struct p11p_vkey_match *m = f->m;

	if (r->slot_len != f->slot_len || memcmp(rec_slot(r), m->slot, f->slot_len) != 0)
		return;
	if (m->has_class && r->cls != m->cls)
		return;
	if (m->has_ck_id && (r->cid_len != m->ck_id_len ||
	                     (m->ck_id_len && memcmp(rec_cid(r), m->ck_id, m->ck_id_len) != 0)))
		return;
	if (m->has_label && (r->label_len != m->label_len ||
	                     (m->label_len && memcmp(rec_label(r), m->label, m->label_len) != 0)))
		return;
	if (f->count < f->max)
		to_vkey(r, &f->out[f->count]);
	f->count++;
}

static void find_cb(void *value, void *arg)
{
	find_one(arg, value);
}

CK_RV p11p_index_find(struct p11p_index *idx, const struct p11p_vkey_match *m,
                      struct p11p_vkey *out, size_t max, size_t *count)
{
	struct finder f = {.m = m, .out = out, .max = max};
	const struct rec *r;
	uint64_t h_slot;

	p11p_return_val_if_fail(idx != NULL && m != NULL && m->slot != NULL && count != NULL &&
	                            (out != NULL || max == 0),
	                        CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(!m->has_ck_id || m->ck_id != NULL || m->ck_id_len == 0,
	                        CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(!m->has_label || m->label != NULL || m->label_len == 0,
	                        CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	*count = 0;
	f.slot_len = strnlen(m->slot, P11P_INDEX_SLOT_MAX + 1);
	if (f.slot_len == 0 || f.slot_len > P11P_INDEX_SLOT_MAX)
		return CKR_OK;
	h_slot = hash_bytes(m->slot, f.slot_len);
	pthread_mutex_lock(&idx->mu);
	if (m->has_label) {
		r = p11p_map_get(&idx->st.by_label, h_slot, hash_bytes(m->label, m->label_len));
		for (; r != NULL; r = r->lab_next)
			find_one(&f, r);
	} else if (m->has_ck_id) {
		r = p11p_map_get(&idx->st.by_cid, h_slot, hash_bytes(m->ck_id, m->ck_id_len));
		for (; r != NULL; r = r->cid_next)
			find_one(&f, r);
	} else {
		p11p_map_each(&idx->st.by_id, find_cb, &f);
	}
	pthread_mutex_unlock(&idx->mu);
	*count = f.count;
	return CKR_OK;
}

struct lister {
	const char *slot;
	size_t slot_len;
	uint64_t *ids;
	size_t n;
};

static void list_cb(void *value, void *arg)
{
	const struct rec *r = value;
	struct lister *l = arg;

	if (l->slot != NULL &&
	    (r->slot_len != l->slot_len || memcmp(rec_slot(r), l->slot, l->slot_len) != 0))
		return;
	l->ids[l->n++] = r->vid;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

CK_RV p11p_index_list(struct p11p_index *idx, const char *slot, uint64_t **ids, size_t *n)
{
	struct lister l = {.slot = slot};
	CK_RV rv = CKR_OK;

	p11p_return_val_if_fail(idx != NULL && ids != NULL && n != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	*ids = NULL;
	*n = 0;
	if (slot != NULL)
		l.slot_len = strlen(slot);
	pthread_mutex_lock(&idx->mu);
	if (idx->st.count == 0)
		goto out;
	l.ids = p11p_reallocarray(NULL, idx->st.count, sizeof(*l.ids));
	if (l.ids == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	p11p_map_each(&idx->st.by_id, list_cb, &l);
out:
	pthread_mutex_unlock(&idx->mu);
	if (l.n == 0) {
		p11p_free(l.ids);
		return rv;
	}
	if (l.n > 1)
		qsort(l.ids, l.n, sizeof(*l.ids), cmp_u64);
	*ids = l.ids;
	*n = l.n;
	return rv;
}

/* ---- writes -------------------------------------------------------------------------------- */

static bool vkey_valid(const struct p11p_vkey *v)
{
	size_t slot_len = strnlen(v->slot, sizeof(v->slot));

	return slot_len > 0 && slot_len <= P11P_INDEX_SLOT_MAX &&
	       v->ck_id_len <= P11P_INDEX_ID_MAX && v->label_len <= P11P_INDEX_LABEL_MAX &&
	       (v->perms & ~(uint32_t)P11P_VK_ALL) == 0 && (unsigned)v->state <= P11P_VK_DELETED &&
	       (unsigned)v->origin <= P11P_VK_SCANNED && v->presence <= 0xffff;
}

static uint64_t new_vid(const struct state *s)
{
	static atomic_uint_fast64_t counter;
	uint64_t v = 0;

	for (;;) {
		if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
			/* No entropy yet (early boot): unique enough, and checked below. */
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			v = hash_bytes(&ts, sizeof(ts)) ^ ((uint64_t)getpid() << 32) ^
			    atomic_fetch_add(&counter, 1);
		}
		if (v != 0 && p11p_map_get(&s->by_id, v, 0) == NULL)
			return v;
	}
}

/*
 * Starts a write: takes db_mu, connects, begins (the store's write lock),
 * catches up and takes the next change number into *seq. On failure db_mu is
 * released and idx->err says why.
 */
static CK_RV write_begin(struct p11p_index *idx, uint64_t *seq)
{
	int64_t cur = -1;
	enum p11p_sql_rc rc;
	CK_RV rv;

	pthread_mutex_lock(&idx->db_mu);
	rv = connect_db(idx, true);
	if (rv != CKR_OK)
		goto fail;
	if (idx->readonly) {
		set_err(idx->err, sizeof(idx->err),
		        "store %s: read-only for this process (it may not write the store; "
		        "keys are created and changed by its owner)",
		        idx->target);
		rv = CKR_FUNCTION_FAILED;
		goto fail;
	}
	rc = p11p_sql_begin(idx->db);
	if (rc != P11P_SQL_OK) {
		rv = sql_fail(idx, rc, "begin");
		goto fail;
	}
	rv = load_changes(idx);
	if (rv == CKR_OK) {
		rc = p11p_sql_exec(idx->db, "SELECT value FROM meta WHERE name = 'seq'", NULL, 0,
		                   one_int_cb, &cur);
		if (rc != P11P_SQL_OK)
			rv = sql_fail(idx, rc, "read");
		else if (cur < 0 || (uint64_t)cur >= SEQ_MAX) {
			set_err(idx->err, sizeof(idx->err), "store %s: bad change counter",
			        idx->target);
			rv = CKR_FUNCTION_FAILED;
		}
	}
	if (rv != CKR_OK) {
		p11p_sql_rollback(idx->db);
		goto fail;
	}
	*seq = (uint64_t)cur + 1;
	idx->txn_audit_id = -1;
	idx->txn_audit_dirty = false;
	return CKR_OK;
fail:
	if (rv != CKR_HOST_MEMORY)
		p11p_message("index: %s", idx->err);
	pthread_mutex_unlock(&idx->db_mu);
	return rv;
}

/*
 * Ends a write begun by write_begin(): with rv CKR_OK stores the change
 * counter, commits, and applies ops to the copy; else rolls back. Releases
 * db_mu. The result: rv, or the commit's failure.
 */
static CK_RV write_end(struct p11p_index *idx, CK_RV rv, uint64_t seq, struct op *ops, size_t nops,
                       uint64_t loaded_seq)
{
	enum p11p_sql_rc rc = P11P_SQL_OK;

	if (rv == CKR_OK && idx->db != NULL) {
		struct p11p_sql_val p[] = {V_INT(seq)};

		rc = p11p_sql_exec(idx->db, "UPDATE meta SET value = $1 WHERE name = 'seq'", p,
		                   NV(p), NULL, NULL);
		if (rc == P11P_SQL_OK && idx->txn_audit_dirty) {
			struct p11p_sql_val q[] = {V_INT(idx->txn_audit_id)};

			rc = p11p_sql_exec(idx->db,
			                   "UPDATE meta SET value = $1 WHERE name = 'audit_seq'", q,
			                   NV(q), NULL, NULL);
		}
		if (rc == P11P_SQL_OK && p11p_sql_engine_of(idx->db) == P11P_SQL_PG)
			rc = p11p_sql_exec(idx->db, "NOTIFY p11proxy", NULL, 0, NULL, NULL);
		if (rc == P11P_SQL_OK)
			rc = p11p_sql_commit(idx->db);
		if (rc != P11P_SQL_OK)
			rv = sql_fail(idx, rc, "commit");
	}
	if (rv != CKR_OK) {
		if (idx->db != NULL)
			p11p_sql_rollback(idx->db);
		if (rv != CKR_HOST_MEMORY && rv != P11P_INDEX_CONFLICT && rv != CKR_ARGUMENTS_BAD)
			p11p_message("index: %s", idx->err);
	} else if (nops > 0) {
		/* Prepared before the commit: applying cannot fail. */
		pthread_mutex_lock(&idx->mu);
		txn_apply(&idx->st, ops, nops);
		if (loaded_seq > idx->seq)
			idx->seq = loaded_seq;
		atomic_fetch_add_explicit(&idx->gen, 1, memory_order_release);
		pthread_mutex_unlock(&idx->mu);
	}
	pthread_mutex_unlock(&idx->db_mu);
	return rv;
}

static CK_RV put_row(struct p11p_index *idx, const struct rec *r, uint64_t seq)
{
	struct p11p_sql_val p[] = {
	    V_INT(r->vid),
	    V_INT(seq),
	    V_INT(1),
	    V_INT(r->rev),
	    V_TEXT(rec_slot(r), r->slot_len),
	    V_INT(r->cls),
	    V_INT(r->key_type),
	    V_BLOB(rec_cid(r), r->cid_len),
	    V_BLOB(rec_label(r), r->label_len),
	    V_INT(r->perms),
	    V_INT(r->state),
	    V_INT(r->origin),
	    V_INT(r->presence),
	    V_INT(r->created),
	    V_INT(r->updated),
	    V_INT(r->prev),
	    V_INT(r->next),
	};
	enum p11p_sql_rc rc;

	rc = p11p_sql_exec(
	    idx->db,
	    "INSERT INTO vkeys (" VKEY_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, "
	    "$8, $9, $10, $11, $12, $13, $14, $15, $16, $17) ON CONFLICT (vid) DO "
	    "UPDATE SET seq = excluded.seq, live = excluded.live, rev = excluded.rev, "
	    "slot = excluded.slot, cls = excluded.cls, key_type = excluded.key_type, "
	    "ck_id = excluded.ck_id, label = excluded.label, perms = excluded.perms, "
	    "state = excluded.state, origin = excluded.origin, "
	    "presence = excluded.presence, created = excluded.created, "
	    "updated = excluded.updated, prev = excluded.prev, next = excluded.next",
	    p, NV(p), NULL, NULL);
	return rc == P11P_SQL_OK ? CKR_OK : sql_fail(idx, rc, "write");
}

static CK_RV put_blob_row(struct p11p_index *idx, uint64_t vid, uint64_t seq,
                          const unsigned char *b, size_t len)
{
	struct p11p_sql_val p[] = {V_INT(vid), V_INT(seq), V_BLOB(b, len)};
	enum p11p_sql_rc rc;

	rc = p11p_sql_exec(
	    idx->db,
	    "INSERT INTO blobs (vid, seq, data) VALUES ($1, $2, $3) ON CONFLICT (vid) "
	    "DO UPDATE SET seq = excluded.seq, data = excluded.data",
	    p, NV(p), NULL, NULL);
	if (rc == P11P_SQL_OK) {
		/* The record's seq moves too: a reload reads blobs of the seq range it read. */
		rc = p11p_sql_exec(idx->db, "UPDATE vkeys SET seq = $2 WHERE vid = $1", p, 2, NULL,
		                   NULL);
	}
	return rc == P11P_SQL_OK ? CKR_OK : sql_fail(idx, rc, "write");
}

/*
 * put, put_batch, put_blob(s) and delete: one transaction. recs/n: the puts
 * (written back on success), blobs (NULL: none): blobs[i].data (NULL: none)
 * stored with recs[i]; del_vid: a delete instead.
 */
static CK_RV write_txn(struct p11p_index *idx, struct p11p_vkey *recs, size_t n,
                       const struct p11p_index_blob *blobs, uint64_t del_vid, bool *deleted)
{
	struct op *ops = NULL;
	struct rec *wb = NULL; /* what to write back into recs (the fixed part) */
	size_t nops = 0;
	int64_t now = (int64_t)time(NULL);
	uint64_t seq;
	CK_RV rv;

	rv = write_begin(idx, &seq);
	if (rv != CKR_OK)
		return rv;
	ops = p11p_calloc(recs ? n : 1, sizeof(*ops));
	if (ops == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	/* The copy changes only under db_mu, which this thread holds: read it without mu. */
	if (recs == NULL) {
		const struct rec *old = p11p_map_get(&idx->st.by_id, del_vid, 0);

		if (deleted != NULL)
			*deleted = old != NULL;
		if (old == NULL)
			goto out;
		ops[nops++].vid = del_vid;
		{
			struct p11p_sql_val p[] = {V_INT(del_vid), V_INT(seq)};
			enum p11p_sql_rc rc;

			rc = p11p_sql_exec(idx->db,
			                   "UPDATE vkeys SET live = 0, seq = $2 WHERE vid = $1", p,
			                   NV(p), NULL, NULL);
			if (rc == P11P_SQL_OK)
				rc = p11p_sql_exec(idx->db, "DELETE FROM blobs WHERE vid = $1", p,
				                   1, NULL, NULL);
			if (rc != P11P_SQL_OK) {
				rv = sql_fail(idx, rc, "delete");
				goto out;
			}
		}
		{
			char slot[P11P_INDEX_SLOT_MAX + 1];

			memcpy(slot, rec_slot(old), old->slot_len);
			slot[old->slot_len] = '\0';
			rv = audit_add(idx, slot, del_vid, rec_label(old), old->label_len, "delete",
			               state_names[old->state], "");
		}
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct p11p_vkey *v = &recs[i];
		const struct rec *old = v->vid ? p11p_map_get(&idx->st.by_id, v->vid, 0) : NULL;
		struct rec *r;

		for (size_t j = 0; old != NULL && j < nops; j++) {
			/* Put twice in one batch: the earlier put is the one to compare with. */
			if (ops[j].vid == v->vid)
				old = ops[j].rec;
		}
		if (v->rev != 0 && (old == NULL || old->rev != v->rev)) {
			set_err(idx->err, sizeof(idx->err),
			        "%s: record %016" PRIx64 " changed since it was read", idx->target,
			        v->vid);
			rv = P11P_INDEX_CONFLICT;
			goto out;
		}
		if (old != NULL && old->rev >= SEQ_MAX) {
			set_err(idx->err, sizeof(idx->err),
			        "%s: record %016" PRIx64 " revisions exhausted", idx->target,
			        v->vid);
			rv = CKR_DEVICE_MEMORY;
			goto out;
		}
		r = rec_new(v->slot, strlen(v->slot), v->ck_id, v->ck_id_len, v->label,
		            v->label_len);
		if (r == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		ops[nops].rec = r;
		ops[nops].vid = r->vid = v->vid ? v->vid : new_vid(&idx->st);
		nops++;
		r->rev = old != NULL ? old->rev + 1 : 1;
		r->cls = v->cls;
		r->key_type = v->key_type;
		r->perms = v->perms;
		r->state = (uint8_t)v->state;
		r->origin = (uint8_t)v->origin;
		r->presence = v->presence;
		r->created = v->created ? v->created : old != NULL ? old->created : now;
		r->updated = now;
		r->prev = v->prev;
		r->next = v->next;
		rv = put_row(idx, r, seq);
		if (rv == CKR_OK)
			rv = audit_put(idx, old, r);
		if (rv != CKR_OK)
			goto out;
	}
	for (size_t i = 0; blobs != NULL && i < n; i++) {
		if (blobs[i].data == NULL)
			continue;
		ops[i].blob = p11p_malloc(blobs[i].len);
		if (ops[i].blob == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		memcpy(ops[i].blob, blobs[i].data, blobs[i].len);
		ops[i].blob_len = blobs[i].len;
		ops[i].set_blob = true;
		rv = put_blob_row(idx, ops[i].vid, seq, blobs[i].data, blobs[i].len);
		if (rv != CKR_OK)
			goto out;
	}
out:
	if (rv == CKR_OK && nops > 0) {
		pthread_mutex_lock(&idx->mu);
		rv = txn_prepare(&idx->st, ops, nops);
		pthread_mutex_unlock(&idx->mu);
		if (rv == CKR_DEVICE_MEMORY)
			set_err(idx->err, sizeof(idx->err), "%s: more than %d records", idx->target,
			        P11P_INDEX_MAX_RECORDS);
	}
	if (rv == CKR_OK && nops == 0) {
		/* Nothing to write (a delete of an unknown vid). */
		p11p_sql_rollback(idx->db);
		pthread_mutex_unlock(&idx->db_mu);
		ops_free(ops, nops);
		return CKR_OK;
	}
	if (rv == CKR_OK && recs != NULL) {
		wb = p11p_calloc(n, sizeof(*wb));
		if (wb == NULL)
			rv = CKR_HOST_MEMORY;
		for (size_t i = 0; wb != NULL && i < n; i++)
			wb[i] = *ops[i].rec;
	}
	rv = write_end(idx, rv, seq, ops, nops, seq);
	for (size_t i = 0; rv == CKR_OK && recs != NULL && i < n; i++) {
		recs[i].vid = wb[i].vid;
		recs[i].rev = wb[i].rev;
		recs[i].created = wb[i].created;
		recs[i].updated = wb[i].updated;
	}
	p11p_free(wb);
	ops_free(ops, nops);
	return rv;
}

CK_RV p11p_index_put(struct p11p_index *idx, struct p11p_vkey *rec)
{
	return p11p_index_put_batch(idx, rec, 1);
}

CK_RV p11p_index_put_batch(struct p11p_index *idx, struct p11p_vkey *recs, size_t n)
{
	return p11p_index_put_batch_blobs(idx, recs, n, NULL);
}

CK_RV p11p_index_delete(struct p11p_index *idx, uint64_t vid, bool *deleted)
{
	p11p_return_val_if_fail(idx != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	if (deleted != NULL)
		*deleted = false;
	if (vid == 0)
		return CKR_OK;
	return write_txn(idx, NULL, 0, NULL, vid, deleted);
}

CK_RV p11p_index_stats(struct p11p_index *idx, struct p11p_index_stats *st)
{
	p11p_return_val_if_fail(idx != NULL && st != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&idx->mu);
	st->records = idx->st.count;
	st->seq = idx->seq;
	pthread_mutex_unlock(&idx->mu);
	pthread_mutex_lock(&idx->db_mu);
	st->readonly = idx->readonly;
	st->down = idx->db == NULL;
	pthread_mutex_unlock(&idx->db_mu);
	return CKR_OK;
}

void p11p_index_last_error(struct p11p_index *idx, char *buf, size_t len)
{
	if (buf == NULL || len == 0)
		return;
	buf[0] = '\0';
	if (idx == NULL || forked(idx))
		return;
	/* The message is written under db_mu (by whoever talks to the store). */
	pthread_mutex_lock(&idx->db_mu);
	snprintf(buf, len, "%s", idx->err);
	pthread_mutex_unlock(&idx->db_mu);
}

/* ---- blobs ---------------------------------------------------------------------------------- */

CK_RV p11p_index_put_blob(struct p11p_index *idx, struct p11p_vkey *rec, const unsigned char *blob,
                          size_t len)
{
	p11p_return_val_if_fail(idx != NULL && rec != NULL && blob != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	if (len == 0 || len > P11P_INDEX_BLOB_MAX || !vkey_valid(rec))
		return CKR_ARGUMENTS_BAD;
	return write_txn(idx, rec, 1, &(struct p11p_index_blob){.data = blob, .len = len}, 0, NULL);
}

CK_RV p11p_index_put_batch_blobs(struct p11p_index *idx, struct p11p_vkey *recs, size_t n,
                                 const struct p11p_index_blob *blobs)
{
	p11p_return_val_if_fail(idx != NULL && (recs != NULL || n == 0), CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	if (n == 0)
		return CKR_OK;
	if (n > P11P_INDEX_MAX_RECORDS)
		return CKR_DEVICE_MEMORY;
	for (size_t i = 0; i < n; i++) {
		if (!vkey_valid(&recs[i]) ||
		    (blobs != NULL && blobs[i].data != NULL &&
		     (blobs[i].len == 0 || blobs[i].len > P11P_INDEX_BLOB_MAX)))
			return CKR_ARGUMENTS_BAD;
	}
	return write_txn(idx, recs, n, blobs, 0, NULL);
}

CK_RV p11p_index_get_blob(struct p11p_index *idx, uint64_t vid, unsigned char *buf, size_t cap,
                          size_t *len, bool *found)
{
	const struct rec *r;
	CK_RV rv = CKR_OK;

	p11p_return_val_if_fail(idx != NULL && len != NULL && found != NULL &&
	                            (buf != NULL || cap == 0),
	                        CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	*len = 0;
	pthread_mutex_lock(&idx->mu);
	r = vid != 0 ? p11p_map_get(&idx->st.by_id, vid, 0) : NULL;
	*found = r != NULL && r->blob != NULL;
	if (*found) {
		*len = r->blob_len;
		if (cap < r->blob_len)
			rv = CKR_BUFFER_TOO_SMALL;
		else
			memcpy(buf, r->blob, r->blob_len);
	}
	pthread_mutex_unlock(&idx->mu);
	return rv;
}

CK_RV p11p_index_replace_blobs(struct p11p_index *idx, const struct p11p_index_blob *b, size_t n)
{
	struct op *ops = NULL;
	uint64_t seq;
	CK_RV rv;

	p11p_return_val_if_fail(idx != NULL && (b != NULL || n == 0), CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	if (n == 0)
		return CKR_OK;
	if (n > P11P_INDEX_MAX_RECORDS)
		return CKR_ARGUMENTS_BAD;
	for (size_t i = 0; i < n; i++) {
		if (b[i].vid == 0 || b[i].data == NULL || b[i].len == 0 ||
		    b[i].len > P11P_INDEX_BLOB_MAX)
			return CKR_ARGUMENTS_BAD;
	}
	ops = p11p_calloc(n, sizeof(*ops));
	if (ops == NULL)
		return CKR_HOST_MEMORY;
	for (size_t i = 0; i < n; i++) {
		ops[i].vid = b[i].vid;
		ops[i].set_blob = true;
		ops[i].blob_len = b[i].len;
		ops[i].blob = p11p_malloc(b[i].len);
		if (ops[i].blob == NULL) {
			ops_free(ops, n);
			return CKR_HOST_MEMORY;
		}
		memcpy(ops[i].blob, b[i].data, b[i].len);
	}
	rv = write_begin(idx, &seq);
	if (rv != CKR_OK) {
		ops_free(ops, n);
		return rv;
	}
	for (size_t i = 0; rv == CKR_OK && i < n; i++) {
		const struct rec *r = p11p_map_get(&idx->st.by_id, b[i].vid, 0);
		char slot[P11P_INDEX_SLOT_MAX + 1];

		if (r == NULL) {
			set_err(idx->err, sizeof(idx->err), "%s: no record %016" PRIx64,
			        idx->target, b[i].vid);
			rv = CKR_ARGUMENTS_BAD;
			break;
		}
		rv = put_blob_row(idx, b[i].vid, seq, b[i].data, b[i].len);
		if (rv == CKR_OK) {
			memcpy(slot, rec_slot(r), r->slot_len);
			slot[r->slot_len] = '\0';
			rv = audit_add(idx, slot, r->vid, rec_label(r), r->label_len, "rewrap", "",
			               "");
		}
	}
	rv = write_end(idx, rv, seq, ops, n, seq);
	ops_free(ops, n);
	return rv;
}

/* ---- replication debt ----------------------------------------------------------------------- */

#define DEBT_COLS "id, slot, member, op, cls, ck_id, label, since, tries, attrs"

/* The template's fields (index.h): type, length, big-endian. */
#define ATTR_HDR 12

static uint64_t get_be(const unsigned char *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be(unsigned char *p, uint64_t v, size_t n)
{
	for (size_t i = n; i-- > 0; v >>= 8)
		p[i] = (unsigned char)(v & 0xff);
}

bool p11p_debt_attrs_parse(struct p11p_debt *d, CK_ATTRIBUTE *out, size_t max, size_t *n)
{
	size_t off = 0;

	*n = 0;
	if (d->attrs_len > sizeof(d->attrs))
		return false;
	while (off < d->attrs_len) {
		uint64_t type, len;

		if (d->attrs_len - off < ATTR_HDR || *n >= max || *n >= P11P_DEBT_ATTRS_COUNT)
			return false;
		type = get_be(d->attrs + off, 8);
		len = get_be(d->attrs + off + 8, 4);
		off += ATTR_HDR;
		if (len > d->attrs_len - off || (uint64_t)(CK_ATTRIBUTE_TYPE)type != type)
			return false;
		for (size_t i = 0; i < *n; i++)
			if (out[i].type == type)
				return false;
		out[*n].type = (CK_ATTRIBUTE_TYPE)type;
		out[*n].pValue = len > 0 ? d->attrs + off : NULL;
		out[*n].ulValueLen = (CK_ULONG)len;
		(*n)++;
		off += len;
	}
	return true;
}

bool p11p_debt_attrs_set(struct p11p_debt *d, CK_ATTRIBUTE_TYPE type, const void *value, size_t len)
{
	unsigned char buf[P11P_DEBT_ATTRS_MAX];
	CK_ATTRIBUTE t[P11P_DEBT_ATTRS_COUNT];
	size_t n = 0, off = 0;
	bool put = false;

	if (len > P11P_DEBT_ATTRS_MAX || (len > 0 && value == NULL) ||
	    !p11p_debt_attrs_parse(d, t, P11P_DEBT_ATTRS_COUNT, &n))
		return false;
	/* Rewritten whole: the new value in place of the old one, or at the end. */
	for (size_t i = 0; i <= n; i++) {
		const void *v = i < n ? t[i].pValue : value;
		size_t l = i < n ? t[i].ulValueLen : len;

		if (i == n && put)
			break;
		if (i < n && t[i].type == type) {
			v = value;
			l = len;
			put = true;
		}
		if (i == n && n >= P11P_DEBT_ATTRS_COUNT)
			return false;
		if (sizeof(buf) - off < ATTR_HDR || sizeof(buf) - off - ATTR_HDR < l)
			return false;
		put_be(buf + off, i < n ? t[i].type : type, 8);
		put_be(buf + off + 8, l, 4);
		if (l > 0)
			memcpy(buf + off + ATTR_HDR, v, l);
		off += ATTR_HDR + l;
	}
	memcpy(d->attrs, buf, off);
	d->attrs_len = off;
	return true;
}

struct debt_list {
	struct p11p_debt *d;
	size_t n, cap;
	bool bad, nomem;
};

static int debt_row_cb(void *arg, const struct p11p_sql_val *c, size_t n)
{
	struct debt_list *l = arg;
	struct p11p_debt *d;

	if (n != 10 || c[0].type != P11P_SQL_INT || c[1].type != P11P_SQL_TEXT || c[1].len == 0 ||
	    c[1].len > P11P_INDEX_SLOT_MAX || c[2].type != P11P_SQL_TEXT ||
	    c[2].len > P11P_INDEX_MEMBER_MAX || c[3].type != P11P_SQL_INT || c[3].i < 1 ||
	    c[3].i > P11P_DEBT_ATTRS || c[4].type != P11P_SQL_INT ||
	    !bytes_col(&c[5], P11P_INDEX_ID_MAX) || !bytes_col(&c[6], P11P_INDEX_LABEL_MAX) ||
	    c[7].type != P11P_SQL_INT || c[8].type != P11P_SQL_INT || c[8].i < 0 ||
	    !bytes_col(&c[9], P11P_DEBT_ATTRS_MAX)) {
		l->bad = true;
		return 1;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct p11p_debt *nd = p11p_reallocarray(l->d, cap, sizeof(*nd));

		if (nd == NULL) {
			l->nomem = true;
			return 1;
		}
		l->d = nd;
		l->cap = cap;
	}
	d = &l->d[l->n++];
	memset(d, 0, sizeof(*d));
	d->id = (uint64_t)c[0].i;
	memcpy(d->slot, c[1].p, c[1].len);
	if (c[2].len > 0)
		memcpy(d->member, c[2].p, c[2].len);
	d->op = (enum p11p_debt_op)c[3].i;
	d->cls = (CK_OBJECT_CLASS)c[4].i;
	if (c[5].len > 0)
		memcpy(d->ck_id, c[5].p, c[5].len);
	d->ck_id_len = c[5].len;
	if (c[6].len > 0)
		memcpy(d->label, c[6].p, c[6].len);
	d->label_len = c[6].len;
	d->since = c[7].i;
	d->tries = c[8].i > UINT32_MAX ? UINT32_MAX : (uint32_t)c[8].i;
	if (c[9].len > 0)
		memcpy(d->attrs, c[9].p, c[9].len);
	d->attrs_len = c[9].len;
	return 0;
}

#define DEBT_KEY "slot = $2 AND member = $3 AND op = $4 AND cls = $5 AND ck_id = $6 AND label = $7"

CK_RV p11p_index_debt_add(struct p11p_index *idx, struct p11p_debt *d)
{
	struct debt_list l = {0}, old = {0};
	struct p11p_debt *m = NULL; /* d with an earlier change of the same object merged in */
	CK_ATTRIBUTE t[P11P_DEBT_ATTRS_COUNT];
	size_t slen, mlen, nt = 0;
	uint64_t seq;
	enum p11p_sql_rc rc;
	CK_RV rv;

	p11p_return_val_if_fail(idx != NULL && d != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	slen = strnlen(d->slot, sizeof(d->slot));
	mlen = strnlen(d->member, sizeof(d->member));
	if (slen == 0 || slen > P11P_INDEX_SLOT_MAX || mlen == 0 || mlen > P11P_INDEX_MEMBER_MAX ||
	    d->op < P11P_DEBT_COPY || d->op > P11P_DEBT_ATTRS || d->ck_id_len > P11P_INDEX_ID_MAX ||
	    d->label_len > P11P_INDEX_LABEL_MAX || d->attrs_len > P11P_DEBT_ATTRS_MAX)
		return CKR_ARGUMENTS_BAD;
	if (d->op == P11P_DEBT_ATTRS
	        ? !p11p_debt_attrs_parse(d, t, P11P_DEBT_ATTRS_COUNT, &nt) || nt == 0
	        : d->attrs_len != 0)
		return CKR_ARGUMENTS_BAD;
	rv = write_begin(idx, &seq);
	if (rv != CKR_OK)
		return rv;
	{
		struct p11p_sql_val p[] = {
		    V_INT(seq),
		    V_TEXT(d->slot, slen),
		    V_TEXT(d->member, mlen),
		    V_INT(d->op),
		    V_INT(d->cls),
		    V_BLOB(d->ck_id, d->ck_id_len),
		    V_BLOB(d->label, d->label_len),
		    V_INT(time(NULL)),
		    V_BLOB(d->attrs, d->attrs_len),
		};

		rc = P11P_SQL_OK;
		if (d->op == P11P_DEBT_ATTRS) {
			/* An earlier change still owed: merged, and recorded anew (last). */
			rc = p11p_sql_exec(idx->db,
			                   "SELECT " DEBT_COLS " FROM debts WHERE " DEBT_KEY, p, 7,
			                   debt_row_cb, &old);
			if (rc == P11P_SQL_OK && old.n == 1 && !old.bad && !old.nomem) {
				m = p11p_malloc(sizeof(*m));
				if (m == NULL) {
					old.nomem = true;
				} else {
					*m = old.d[0];
					for (size_t i = 0; i < nt; i++)
						if (!p11p_debt_attrs_set(m, t[i].type, t[i].pValue,
						                         t[i].ulValueLen)) {
							/* No room for both: the newer alone. */
							m->attrs_len = 0;
							for (size_t k = 0; k < nt; k++)
								(void)p11p_debt_attrs_set(
								    m, t[k].type, t[k].pValue,
								    t[k].ulValueLen);
							break;
						}
					p[8] = V_BLOB(m->attrs, m->attrs_len);
				}
			}
			if (rc == P11P_SQL_OK && old.n > 0 && !old.nomem)
				rc = p11p_sql_exec(idx->db, "DELETE FROM debts WHERE " DEBT_KEY, p,
				                   7, NULL, NULL);
		}
		if (rc == P11P_SQL_OK && !old.nomem)
			rc = p11p_sql_exec(
			    idx->db,
			    "INSERT INTO debts (" DEBT_COLS ") VALUES ($1, $2, $3, $4, $5, $6, "
			    "$7, $8, 0, $9) ON CONFLICT (slot, member, op, cls, ck_id, label) DO "
			    "NOTHING",
			    p, NV(p), NULL, NULL);
		if (rc == P11P_SQL_OK && !old.nomem)
			rc = p11p_sql_exec(idx->db,
			                   "SELECT " DEBT_COLS " FROM debts WHERE " DEBT_KEY, p, 7,
			                   debt_row_cb, &l);
	}
	if (rc != P11P_SQL_OK)
		rv = sql_fail(idx, rc, "debt");
	else if (l.nomem || old.nomem)
		rv = CKR_HOST_MEMORY;
	else if (l.bad || l.n != 1) {
		set_err(idx->err, sizeof(idx->err), "store %s: damaged debt row", idx->target);
		rv = CKR_FUNCTION_FAILED;
	}
	if (rv == CKR_OK) {
		d->id = l.d[0].id;
		d->since = l.d[0].since;
		d->tries = l.d[0].tries;
		memcpy(d->attrs, l.d[0].attrs, l.d[0].attrs_len);
		d->attrs_len = l.d[0].attrs_len;
	}
	p11p_free(m);
	p11p_free(old.d);
	p11p_free(l.d);
	return write_end(idx, rv, seq, NULL, 0, 0);
}

CK_RV p11p_index_debt_list(struct p11p_index *idx, const char *slot, struct p11p_debt **out,
                           size_t *n)
{
	struct debt_list l = {0};
	enum p11p_sql_rc rc;
	CK_RV rv;

	p11p_return_val_if_fail(idx != NULL && out != NULL && n != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&idx->db_mu);
	rv = connect_db(idx, true);
	if (rv == CKR_OK) {
		struct p11p_sql_val p[] = {V_STR(slot != NULL ? slot : "")};

		rc = p11p_sql_exec(idx->db,
		                   slot != NULL ? "SELECT " DEBT_COLS
		                                  " FROM debts WHERE slot = $1 ORDER BY since, id"
		                                : "SELECT " DEBT_COLS
		                                  " FROM debts ORDER BY since, id",
		                   p, slot != NULL ? 1 : 0, debt_row_cb, &l);
		if (rc != P11P_SQL_OK)
			rv = sql_fail(idx, rc, "debt");
		else if (l.nomem)
			rv = CKR_HOST_MEMORY;
		else if (l.bad) {
			set_err(idx->err, sizeof(idx->err), "store %s: damaged debt row",
			        idx->target);
			rv = CKR_FUNCTION_FAILED;
		}
	}
	pthread_mutex_unlock(&idx->db_mu);
	if (rv != CKR_OK || l.n == 0) {
		p11p_free(l.d);
		return rv;
	}
	*out = l.d;
	*n = l.n;
	return CKR_OK;
}

static CK_RV debt_change(struct p11p_index *idx, uint64_t id, const char *sql)
{
	struct p11p_sql_val p[] = {V_INT(id)};
	enum p11p_sql_rc rc;
	uint64_t seq;
	CK_RV rv;

	p11p_return_val_if_fail(idx != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	rv = write_begin(idx, &seq);
	if (rv != CKR_OK)
		return rv;
	rc = p11p_sql_exec(idx->db, sql, p, NV(p), NULL, NULL);
	if (rc != P11P_SQL_OK)
		rv = sql_fail(idx, rc, "debt");
	return write_end(idx, rv, seq, NULL, 0, 0);
}

CK_RV p11p_index_debt_done(struct p11p_index *idx, uint64_t id)
{
	return debt_change(idx, id, "DELETE FROM debts WHERE id = $1");
}

CK_RV p11p_index_debt_failed(struct p11p_index *idx, uint64_t id)
{
	return debt_change(idx, id, "UPDATE debts SET tries = tries + 1 WHERE id = $1");
}

/* ---- reading the audit trail ---------------------------------------------------------------- */

struct audit_walk {
	p11p_index_audit_fn fn;
	void *arg;
	bool bad, stop;
	uint64_t bad_id;
};

static bool text_col(const struct p11p_sql_val *v, char *out, size_t cap)
{
	if (v->type != P11P_SQL_TEXT || v->len >= cap)
		return false;
	if (v->len > 0)
		memcpy(out, v->p, v->len);
	out[v->len] = '\0';
	return memchr(out, 0, v->len) == NULL;
}

static int audit_row_cb(void *arg, const struct p11p_sql_val *c, size_t n)
{
	struct audit_walk *w = arg;
	struct p11p_audit a;

	memset(&a, 0, sizeof(a));
	if (n != 12 || c[0].type != P11P_SQL_INT || c[1].type != P11P_SQL_INT ||
	    c[3].type != P11P_SQL_INT || c[6].type != P11P_SQL_INT ||
	    !bytes_col(&c[7], P11P_INDEX_LABEL_MAX) || !text_col(&c[2], a.host, sizeof(a.host)) ||
	    !text_col(&c[4], a.program, sizeof(a.program)) ||
	    !text_col(&c[5], a.slot, sizeof(a.slot)) || !text_col(&c[8], a.what, sizeof(a.what)) ||
	    !text_col(&c[9], a.from, sizeof(a.from)) || !text_col(&c[10], a.to, sizeof(a.to)) ||
	    !text_col(&c[11], a.hash, sizeof(a.hash))) {
		w->bad = true;
		w->bad_id = c[0].type == P11P_SQL_INT ? (uint64_t)c[0].i : 0;
		return 1;
	}
	a.id = (uint64_t)c[0].i;
	a.time = c[1].i;
	a.uid = (uint32_t)c[3].i;
	a.vid = (uint64_t)c[6].i;
	if (c[7].len > 0)
		memcpy(a.label, c[7].p, c[7].len);
	a.label_len = c[7].len;
	if (w->fn(w->arg, &a) != 0) {
		w->stop = true;
		return 1;
	}
	return 0;
}

CK_RV p11p_index_audit(struct p11p_index *idx, const char *slot, int64_t since,
                       p11p_index_audit_fn fn, void *arg, int64_t *last_id)
{
	struct audit_walk w = {.fn = fn, .arg = arg};
	enum p11p_sql_rc rc;
	CK_RV rv;

	p11p_return_val_if_fail(idx != NULL && fn != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	pthread_mutex_lock(&idx->db_mu);
	rv = connect_db(idx, true);
	if (rv == CKR_OK) {
		struct p11p_sql_val p[] = {V_INT(since), V_STR(slot != NULL ? slot : "")};

		rc =
		    p11p_sql_exec(idx->db,
		                  slot != NULL ? "SELECT id, time, host, uid, program, slot, vid, "
		                                 "label, what, from_v, to_v, hash FROM audit WHERE "
		                                 "time >= $1 AND slot = $2 ORDER BY id"
		                               : "SELECT id, time, host, uid, program, slot, vid, "
		                                 "label, what, from_v, to_v, hash FROM audit WHERE "
		                                 "time >= $1 ORDER BY id",
		                  p, slot != NULL ? 2 : 1, audit_row_cb, &w);
		if (rc != P11P_SQL_OK)
			rv = sql_fail(idx, rc, "audit");
		else if (w.bad) {
			set_err(idx->err, sizeof(idx->err),
			        "store %s: audit row %" PRIu64 " is malformed", idx->target,
			        w.bad_id);
			rv = CKR_FUNCTION_FAILED;
		}
	}
	if (rv == CKR_OK && last_id != NULL) {
		*last_id = -1;
		rc = p11p_sql_exec(idx->db, "SELECT value FROM meta WHERE name = 'audit_seq'", NULL,
		                   0, one_int_cb, last_id);
		if (rc != P11P_SQL_OK)
			rv = sql_fail(idx, rc, "audit");
	}
	pthread_mutex_unlock(&idx->db_mu);
	return rv;
}

struct verifier {
	uint64_t expect;
	char prev[65];
	bool broken;
	char *why;
	size_t whylen;
	uint64_t bad;
};

static int verify_cb(void *arg, const struct p11p_audit *a)
{
	struct verifier *v = arg;
	char h[65];

	if (a->id != v->expect) {
		set_err(v->why, v->whylen,
		        a->id > v->expect ? "audit row %" PRIu64 " is missing (deleted)"
		                          : "audit row %" PRIu64 " is out of order",
		        v->expect);
		v->bad = v->expect;
		v->broken = true;
		return 1;
	}
	if (!p11p_index_audit_hash(a, v->prev, h) || strcmp(h, a->hash) != 0) {
		set_err(v->why, v->whylen,
		        "audit row %" PRIu64 " was altered (its hash does not cover its contents "
		        "and the previous row's hash)",
		        a->id);
		v->bad = a->id;
		v->broken = true;
		return 1;
	}
	memcpy(v->prev, a->hash, sizeof(v->prev));
	v->expect++;
	return 0;
}

CK_RV p11p_index_audit_verify(struct p11p_index *idx, uint64_t *rows, uint64_t *bad, char *why,
                              size_t whylen)
{
	struct verifier v = {.expect = 1, .why = why, .whylen = whylen};
	int64_t last = -1;
	CK_RV rv;

	p11p_return_val_if_fail(idx != NULL && rows != NULL && bad != NULL, CKR_ARGUMENTS_BAD);
	*rows = 0;
	*bad = 0;
	set_err(why, whylen, "%s", "");
	rv = p11p_index_audit(idx, NULL, INT64_MIN, verify_cb, &v, &last);
	if (rv != CKR_OK)
		return rv;
	*rows = v.expect - 1;
	if (!v.broken && last >= 0 && (uint64_t)last != v.expect - 1) {
		v.bad = v.expect;
		set_err(why, whylen,
		        "audit row %" PRIu64 " is missing (the trail ends at %" PRIu64
		        ", the store counted %" PRId64 ")",
		        v.expect, v.expect - 1, last);
		v.broken = true;
	}
	*bad = v.bad;
	return v.broken ? CKR_SIGNATURE_INVALID : CKR_OK;
}

/* ---- overlays: reading the copy, writing ---------------------------------------------------- */

static bool ovl_args_ok(const char *slot, enum p11p_overlay_kind kind)
{
	size_t n;

	if (slot == NULL || (kind != P11P_OVERLAY_ORDER && kind != P11P_OVERLAY_POLICY))
		return false;
	n = strnlen(slot, P11P_INDEX_SLOT_MAX + 1);
	return n > 0 && n <= P11P_INDEX_SLOT_MAX;
}

CK_RV p11p_index_overlay_get(struct p11p_index *idx, const char *slot, enum p11p_overlay_kind kind,
                             char **text, size_t *len, uint64_t *version)
{
	CK_RV rv = CKR_OK;

	p11p_return_val_if_fail(idx != NULL && text != NULL && len != NULL, CKR_ARGUMENTS_BAD);
	*text = NULL;
	*len = 0;
	if (version != NULL)
		*version = 0;
	if (!ovl_args_ok(slot, kind))
		return CKR_ARGUMENTS_BAD;
	CHECK_OWNER(idx);
	pthread_mutex_lock(&idx->mu);
	for (const struct ovl *o = idx->ovl; o != NULL; o = o->next) {
		if (o->kind != (int)kind || strcmp(o->slot, slot) != 0)
			continue;
		if (version != NULL)
			*version = o->version;
		if (o->text != NULL) {
			*text = p11p_malloc(o->len + 1);
			if (*text == NULL) {
				rv = CKR_HOST_MEMORY;
				break;
			}
			memcpy(*text, o->text, o->len + 1);
			*len = o->len;
		}
		break;
	}
	pthread_mutex_unlock(&idx->mu);
	return rv;
}

CK_RV p11p_index_overlay_put(struct p11p_index *idx, const char *slot, enum p11p_overlay_kind kind,
                             const char *text, const char *from, const char *to)
{
	struct ovl *o = NULL;
	uint64_t seq, version = 0;
	size_t len = 0;
	enum p11p_sql_rc rc;
	CK_RV rv;

	p11p_return_val_if_fail(idx != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	if (!ovl_args_ok(slot, kind))
		return CKR_ARGUMENTS_BAD;
	if (text != NULL) {
		len = strnlen(text, P11P_INDEX_OVERLAY_MAX + 1);
		if (len > P11P_INDEX_OVERLAY_MAX)
			return CKR_ARGUMENTS_BAD;
	}
	o = p11p_calloc(1, sizeof(*o));
	if (o == NULL || (len > 0 && (o->text = p11p_strndup(text, len)) == NULL)) {
		p11p_free(o);
		return CKR_HOST_MEMORY;
	}
	o->len = o->text != NULL ? len : 0;
	o->kind = (int)kind;
	snprintf(o->slot, sizeof(o->slot), "%s", slot);
	rv = write_begin(idx, &seq);
	if (rv != CKR_OK) {
		ovl_free_all(o);
		return rv;
	}
	/* write_begin caught the copy up under the store's write lock. */
	pthread_mutex_lock(&idx->mu);
	for (const struct ovl *c = idx->ovl; c != NULL; c = c->next)
		if (c->kind == o->kind && strcmp(c->slot, slot) == 0)
			version = c->version;
	pthread_mutex_unlock(&idx->mu);
	o->version = version + 1;
	{
		struct p11p_sql_val p[] = {
		    V_STR(slot),
		    V_STR(ovl_kind_name(o->kind)),
		    V_TEXT(o->text != NULL ? o->text : "", o->len),
		    V_INT(o->version),
		    V_INT(seq),
		};

		rc = p11p_sql_exec(idx->db,
		                   "INSERT INTO overlays (slot, kind, text, version, seq) VALUES "
		                   "($1, $2, $3, $4, $5) ON CONFLICT (slot, kind) DO UPDATE SET "
		                   "text = excluded.text, version = excluded.version, "
		                   "seq = excluded.seq",
		                   p, NV(p), NULL, NULL);
	}
	if (rc != P11P_SQL_OK)
		rv = sql_fail(idx, rc, "overlay");
	else
		rv = audit_add(idx, slot, 0, (const unsigned char *)"", 0, ovl_kind_name(o->kind),
		               from != NULL ? from : "", to != NULL ? to : "");
	rv = write_end(idx, rv, seq, NULL, 0, 0);
	if (rv != CKR_OK) {
		ovl_free_all(o);
		return rv;
	}
	pthread_mutex_lock(&idx->mu);
	{
		bool newer = true;

		for (const struct ovl *c = idx->ovl; c != NULL; c = c->next)
			if (c->kind == o->kind && strcmp(c->slot, slot) == 0)
				newer = c->version < o->version;
		if (newer)
			ovl_set_locked(idx, o);
		else
			ovl_free_all(o);
		if (seq > idx->ov_seq)
			idx->ov_seq = seq;
	}
	pthread_mutex_unlock(&idx->mu);
	return CKR_OK;
}
