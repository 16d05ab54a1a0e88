/*
 * The virtual-key index (format and contracts: index.h).
 *
 * In memory: one allocation per record (struct rec, its byte strings inline),
 * found through three p11p_maps:
 *   by_id     (vid, 0)                         -> record
 *   by_label  (hash(slot), hash(label))        -> head of a chain of records
 *   by_cid    (hash(slot), hash(CKA_ID))       -> head of a chain of records
 * The chains are doubly linked, so that a record leaves them in O(1) even when
 * thousands of keys share an empty label. A chain holds every record with that
 * hash pair; lookups compare the bytes.
 *
 * Transactions are applied all or nothing: every allocation a transaction
 * needs (its records, room in the maps: map_reserve) is made first, then the
 * file is written, then the maps are changed by steps that cannot fail.
 *
 * Locks: the handle's mutex, then the file's flock (never the other way).
 * Nothing outside this file runs under either.
 */
#include "index/index.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/file.h"
#include "base/text.h"
#include "base/log.h"
#include "base/map.h"
#include "base/mem.h"

#define MAGIC       "p11proxy-index\t1"
#define MAGIC_NAME  "p11proxy-index"
#define READ_CHUNK  (256 * 1024)
#define WRITE_CHUNK (64 * 1024)
#define K_FIELDS    16 /* with the tag, without the checksum */
#define ERR_MAX     512
/* Sequence and revision numbers stop here on parse, so that +1 never wraps. */
#define SEQ_MAX (UINT64_C(1) << 62)

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
	unsigned char data[]; /* slot, CKA_ID, CKA_LABEL */
};

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

static struct rec *rec_new(const char *slot, size_t slot_len, const unsigned char *cid,
                           size_t cid_len, const unsigned char *label, size_t label_len)
{
	struct rec *r = p11p_malloc(sizeof(*r) + slot_len + cid_len + label_len);

	if (r == NULL)
		return NULL;
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

/* ---- CRC-32 (IEEE 802.3, reflected), slicing by 4 ------------------------------------------ */

static uint32_t crc_table[4][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++) {
		for (int t = 1; t < 4; t++)
			crc_table[t][i] =
			    (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
	}
}

/* Continues crc (0 to start) over p[0..n). */
static uint32_t crc32_update(uint32_t crc, const void *p, size_t n)
{
	const unsigned char *b = p;
	uint32_t c = ~crc;

	while (n >= 4) {
		c ^= (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
		     (uint32_t)b[3] << 24;
		c = crc_table[3][c & 0xff] ^ crc_table[2][(c >> 8) & 0xff] ^
		    crc_table[1][(c >> 16) & 0xff] ^ crc_table[0][c >> 24];
		b += 4;
		n -= 4;
	}
	while (n--)
		c = crc_table[0][(c ^ *b++) & 0xff] ^ (c >> 8);
	return ~c;
}

/* ---- state -------------------------------------------------------------------------------- */

struct state {
	int fd;
	dev_t dev;
	ino_t ino;
	off_t end;          /* committed bytes: everything before is applied */
	off_t base;         /* end of the header or the snapshot transaction */
	off_t size;         /* file size at the last read; > end: a torn tail follows */
	unsigned long line; /* lines before end */
	uint64_t seq;       /* last committed transaction, 0 before the first */
	struct p11p_map by_id, by_label, by_cid;
	size_t count;
};

struct p11p_index {
	pthread_mutex_t mu;
	pid_t pid;
	char *path;
	char *dir;
	struct state st;
	bool broken; /* the last refresh failed: writes refused until one succeeds */
	unsigned long compactions;
	/* Moves on, under mu, after every change of the records (p11p_index_gen()). */
	atomic_ulong gen;
	char err[ERR_MAX];
};

static void state_init(struct state *s)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}

static void free_rec_cb(void *value, void *arg)
{
	(void)arg;
	p11p_free(value);
}

static void state_free(struct state *s)
{
	p11p_map_each(&s->by_id, free_rec_cb, NULL);
	p11p_map_clear(&s->by_id);
	p11p_map_clear(&s->by_label);
	p11p_map_clear(&s->by_cid);
	if (s->fd >= 0)
		close(s->fd);
	state_init(s);
}

/*
 * Makes room so that the next `extra` p11p_map_put calls cannot allocate:
 * map.c grows when (count + 1) * 2 > cap, so cap >= 2 * (count + extra + 1)
 * suffices. Rehashes through p11p_map_put into a map of that capacity, which
 * never grows either.
 */
static int map_reserve(struct p11p_map *m, size_t extra)
{
	size_t need = (m->count + extra + 1) * 2;
	size_t cap = m->cap ? m->cap : 64;
	struct p11p_map nm;

	if (need <= m->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	nm.slots = p11p_calloc(cap, sizeof(*nm.slots));
	if (nm.slots == NULL)
		return -1;
	nm.cap = cap;
	nm.count = 0;
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i].value != NULL)
			(void)p11p_map_put(&nm, m->slots[i].a, m->slots[i].b, m->slots[i].value);
	}
	p11p_map_clear(m);
	*m = nm;
	return 0;
}

/* The chains: maps' puts below run after map_reserve and cannot fail. */
static void link_rec(struct state *s, struct rec *r)
{
	struct rec *head = p11p_map_get(&s->by_label, r->h_slot, r->h_label);

	r->lab_prev = NULL;
	r->lab_next = head;
	if (head != NULL)
		head->lab_prev = r;
	(void)p11p_map_put(&s->by_label, r->h_slot, r->h_label, r);

	head = p11p_map_get(&s->by_cid, r->h_slot, r->h_cid);
	r->cid_prev = NULL;
	r->cid_next = head;
	if (head != NULL)
		head->cid_prev = r;
	(void)p11p_map_put(&s->by_cid, r->h_slot, r->h_cid, r);
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

/* One operation of a transaction: put rec (owned) under vid, or delete vid (rec NULL). */
struct op {
	uint64_t vid;
	struct rec *rec;
};

static void ops_free(struct op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p11p_free(ops[i].rec);
	p11p_free(ops);
}

/*
 * Checks the record limit and makes every allocation applying ops needs.
 * Records new to the index are counted once each; a vid put twice in one
 * transaction counts twice, which errs on the safe side.
 */
static CK_RV txn_prepare(struct state *s, const struct op *ops, size_t n)
{
	size_t count = s->count;

	for (size_t i = 0; i < n; i++) {
		bool exists = p11p_map_get(&s->by_id, ops[i].vid, 0) != NULL;

		if (ops[i].rec != NULL && !exists)
			count++;
		else if (ops[i].rec == NULL && exists && count > 0)
			count--;
	}
	if (count > P11P_INDEX_MAX_RECORDS)
		return CKR_DEVICE_MEMORY;
	if (map_reserve(&s->by_id, n) < 0 || map_reserve(&s->by_label, n) < 0 ||
	    map_reserve(&s->by_cid, n) < 0)
		return CKR_HOST_MEMORY;
	return CKR_OK;
}

/* Applies prepared ops; takes the records (ops[i].rec is NULL afterwards). Cannot fail. */
static void txn_apply(struct state *s, struct op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct rec *old = p11p_map_get(&s->by_id, ops[i].vid, 0);

		if (old != NULL)
			unlink_rec(s, old);
		if (ops[i].rec != NULL) {
			(void)p11p_map_put(&s->by_id, ops[i].vid, 0, ops[i].rec);
			link_rec(s, ops[i].rec);
			if (old == NULL)
				s->count++;
		} else if (old != NULL) {
			p11p_map_remove(&s->by_id, ops[i].vid, 0);
			s->count--;
		}
		p11p_free(old);
		ops[i].rec = NULL;
	}
}

/* ---- messages ------------------------------------------------------------------------------ */

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
	/* One printable line, whatever a path or a damaged file holds. */
	for (char *p = err; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
}

/* ---- the line format ----------------------------------------------------------------------- */

static const char hexdig[] = "0123456789abcdef";
static const char perm_letters[] = "edsvwuk";
static const char *const state_names[] = {"active", "deactivated", "missing", "deleted"};
static const char *const origin_names[] = {"created", "scanned"};

static char *put_hex64(char *o, uint64_t v)
{
	for (int i = 15; i >= 0; i--)
		*o++ = hexdig[(v >> (i * 4)) & 0xf];
	return o;
}

/* Lowercase hex without leading zeros ("0" for 0). */
static char *put_hexnum(char *o, uint64_t v)
{
	char tmp[16];
	int n = 0;

	do {
		tmp[n++] = hexdig[v & 0xf];
		v >>= 4;
	} while (v);
	while (n)
		*o++ = tmp[--n];
	return o;
}

static char *put_dec(char *o, uint64_t v)
{
	char tmp[20];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*o++ = tmp[--n];
	return o;
}

static char *put_sdec(char *o, int64_t v)
{
	if (v < 0) {
		*o++ = '-';
		return put_dec(o, (uint64_t)0 - (uint64_t)v);
	}
	return put_dec(o, (uint64_t)v);
}

static char *put_bytes_hex(char *o, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		*o++ = hexdig[b[i] >> 4];
		*o++ = hexdig[b[i] & 0xf];
	}
	return o;
}

static char *put_escaped(char *o, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (b[i] < 0x20 || b[i] == 0x7f || b[i] == '%') {
			*o++ = '%';
			*o++ = hexdig[b[i] >> 4];
			*o++ = hexdig[b[i] & 0xf];
		} else {
			*o++ = (char)b[i];
		}
	}
	return o;
}

static char *put_str(char *o, const char *s)
{
	size_t n = strlen(s);

	memcpy(o, s, n);
	return o + n;
}

/* Appends "\t<crc of line[0..o)>\n"; returns the end. */
static char *put_crc(char *line, char *o)
{
	uint32_t c = crc32_update(0, line, (size_t)(o - line));

	*o++ = '\t';
	for (int i = 7; i >= 0; i--)
		*o++ = hexdig[(c >> (i * 4)) & 0xf];
	*o++ = '\n';
	return o;
}

/* The longest K line: fixed fields plus the escaped and hex strings. */
#define K_LINE_MAX                                                                                 \
	(2 + 17 + 21 + 3 * P11P_INDEX_SLOT_MAX + 1 + 17 + 17 + 2 * P11P_INDEX_ID_MAX + 1 +         \
	 3 * P11P_INDEX_LABEL_MAX + 1 + 8 + 12 + 8 + 5 + 21 + 21 + 17 + 17 + 10)

_Static_assert(K_LINE_MAX < P11P_INDEX_LINE_MAX, "a record must fit a line");

/* Writes the K line of r at o (room for K_LINE_MAX); returns the end. */
static char *format_rec(char *o, const struct rec *r)
{
	char *line = o;

	*o++ = 'K';
	*o++ = '\t';
	o = put_hex64(o, r->vid);
	*o++ = '\t';
	o = put_dec(o, r->rev);
	*o++ = '\t';
	o = put_escaped(o, rec_slot(r), r->slot_len);
	*o++ = '\t';
	o = put_hexnum(o, r->cls);
	*o++ = '\t';
	o = put_hexnum(o, r->key_type);
	*o++ = '\t';
	o = put_bytes_hex(o, rec_cid(r), r->cid_len);
	*o++ = '\t';
	o = put_escaped(o, rec_label(r), r->label_len);
	*o++ = '\t';
	for (int i = 0; i < 7; i++)
		*o++ = r->perms & (1u << i) ? perm_letters[i] : '-';
	*o++ = '\t';
	o = put_str(o, state_names[r->state]);
	*o++ = '\t';
	o = put_str(o, origin_names[r->origin]);
	*o++ = '\t';
	o = put_hexnum(o, r->presence);
	*o++ = '\t';
	o = put_sdec(o, r->created);
	*o++ = '\t';
	o = put_sdec(o, r->updated);
	*o++ = '\t';
	o = put_hex64(o, r->prev);
	*o++ = '\t';
	o = put_hex64(o, r->next);
	return put_crc(line, o);
}

static char *format_del(char *o, uint64_t vid)
{
	char *line = o;

	*o++ = 'D';
	*o++ = '\t';
	o = put_hex64(o, vid);
	return put_crc(line, o);
}

/* tag 'C' (a transaction) or 'S' (a snapshot, first in a compacted file). */
static char *format_commit(char *o, char tag, uint64_t seq, size_t count, uint32_t body)
{
	char *line = o;

	*o++ = tag;
	*o++ = '\t';
	o = put_dec(o, seq);
	*o++ = '\t';
	o = put_dec(o, count);
	*o++ = '\t';
	for (int i = 7; i >= 0; i--)
		*o++ = hexdig[(body >> (i * 4)) & 0xf];
	return put_crc(line, o);
}

struct field {
	const char *p;
	size_t n;
};

/* Splits p[0..n) at TABs; returns the field count, or max + 1 when there are more. */
static size_t split(const char *p, size_t n, struct field *f, size_t max)
{
	size_t k = 0;
	const char *end = p + n;

	for (;;) {
		const char *t = memchr(p, '\t', (size_t)(end - p));

		if (k == max)
			return max + 1;
		f[k].p = p;
		f[k].n = t ? (size_t)(t - p) : (size_t)(end - p);
		k++;
		if (t == NULL)
			return k;
		p = t + 1;
	}
}

/* Is the line's last field the CRC-32 of what precedes its TAB? */
static bool line_crc_ok(const char *p, size_t n)
{
	uint32_t want = 0;

	if (n < 10 || p[n - 9] != '\t')
		return false;
	for (size_t i = n - 8; i < n; i++) {
		int v = p11p_hexval((unsigned char)p[i]);

		if (v < 0 || (p[i] >= 'A' && p[i] <= 'F'))
			return false;
		want = want << 4 | (uint32_t)v;
	}
	return crc32_update(0, p, n - 9) == want;
}

static bool parse_hex64(const struct field *f, uint64_t *v)
{
	uint64_t x = 0;

	if (f->n != 16)
		return false;
	for (size_t i = 0; i < 16; i++) {
		int d = p11p_hexval((unsigned char)f->p[i]);

		if (d < 0)
			return false;
		x = x << 4 | (uint64_t)d;
	}
	*v = x;
	return true;
}

static bool parse_hexnum(const struct field *f, size_t max_digits, uint64_t *v)
{
	uint64_t x = 0;

	if (f->n == 0 || f->n > max_digits)
		return false;
	for (size_t i = 0; i < f->n; i++) {
		int d = p11p_hexval((unsigned char)f->p[i]);

		if (d < 0)
			return false;
		x = x << 4 | (uint64_t)d;
	}
	*v = x;
	return true;
}

static bool parse_dec(const struct field *f, uint64_t *v)
{
	uint64_t x = 0;

	if (f->n == 0 || f->n > 20)
		return false;
	for (size_t i = 0; i < f->n; i++) {
		unsigned d = (unsigned char)f->p[i] - '0';

		if (d > 9 || x > (UINT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*v = x;
	return true;
}

static bool parse_sdec(const struct field *f, int64_t *v)
{
	struct field g = *f;
	bool neg = g.n > 0 && g.p[0] == '-';
	uint64_t x;

	if (neg) {
		g.p++;
		g.n--;
	}
	if (!parse_dec(&g, &x) || x > (uint64_t)INT64_MAX + (neg ? 1 : 0))
		return false;
	*v = neg ? (int64_t)(0 - x) : (int64_t)x;
	return true;
}

/* %XX-escaped bytes into out (room for max); no raw control bytes. */
static bool parse_escaped(const struct field *f, unsigned char *out, size_t max, size_t *len)
{
	size_t n = 0;

	for (size_t i = 0; i < f->n; i++) {
		unsigned char c = (unsigned char)f->p[i];

		if (c < 0x20 || c == 0x7f)
			return false;
		if (c == '%') {
			int hi, lo;

			if (f->n - i < 3)
				return false;
			hi = p11p_hexval((unsigned char)f->p[i + 1]);
			lo = p11p_hexval((unsigned char)f->p[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (n == max)
			return false;
		out[n++] = c;
	}
	*len = n;
	return true;
}

static bool parse_bytes_hex(const struct field *f, unsigned char *out, size_t max, size_t *len)
{
	if (f->n % 2 != 0 || f->n / 2 > max)
		return false;
	for (size_t i = 0; i < f->n; i += 2) {
		int hi = p11p_hexval((unsigned char)f->p[i]);
		int lo = p11p_hexval((unsigned char)f->p[i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i / 2] = (unsigned char)(hi << 4 | lo);
	}
	*len = f->n / 2;
	return true;
}

static int parse_word(const struct field *f, const char *const *names, int n)
{
	for (int i = 0; i < n; i++) {
		if (strlen(names[i]) == f->n && memcmp(names[i], f->p, f->n) == 0)
			return i;
	}
	return -1;
}

/*
 * A K line (checksum already verified) into a new record. NULL with *why set
 * (a field name) when a field is malformed, or with *why NULL when out of memory.
 */
static struct rec *parse_rec(const char *p, size_t n, const char **why)
{
	struct field f[K_FIELDS];
	char slot[P11P_INDEX_SLOT_MAX];
	unsigned char cid[P11P_INDEX_ID_MAX], label[P11P_INDEX_LABEL_MAX];
	size_t slot_len, cid_len, label_len;
	uint64_t vid, rev, cls, kt, presence, prev, next;
	int64_t created, updated;
	uint32_t perms = 0;
	int state, origin;
	struct rec *r;

	*why = "field count";
	if (split(p, n, f, K_FIELDS) != K_FIELDS)
		return NULL;
	*why = "vid";
	if (!parse_hex64(&f[1], &vid) || vid == 0)
		return NULL;
	*why = "rev";
	if (!parse_dec(&f[2], &rev) || rev == 0 || rev > SEQ_MAX)
		return NULL;
	*why = "slot";
	if (!parse_escaped(&f[3], (unsigned char *)slot, sizeof(slot), &slot_len) ||
	    slot_len == 0 || memchr(slot, '\0', slot_len) != NULL)
		return NULL;
	*why = "class";
	if (!parse_hexnum(&f[4], sizeof(CK_ULONG) * 2, &cls))
		return NULL;
	*why = "key type";
	if (!parse_hexnum(&f[5], sizeof(CK_ULONG) * 2, &kt))
		return NULL;
	*why = "CKA_ID";
	if (!parse_bytes_hex(&f[6], cid, sizeof(cid), &cid_len))
		return NULL;
	*why = "CKA_LABEL";
	if (!parse_escaped(&f[7], label, sizeof(label), &label_len))
		return NULL;
	*why = "permissions";
	if (f[8].n != 7)
		return NULL;
	for (int i = 0; i < 7; i++) {
		if (f[8].p[i] == perm_letters[i])
			perms |= 1u << i;
		else if (f[8].p[i] != '-')
			return NULL;
	}
	*why = "state";
	if ((state = parse_word(&f[9], state_names, 4)) < 0)
		return NULL;
	*why = "origin";
	if ((origin = parse_word(&f[10], origin_names, 2)) < 0)
		return NULL;
	*why = "presence";
	if (!parse_hexnum(&f[11], 4, &presence))
		return NULL;
	*why = "created";
	if (!parse_sdec(&f[12], &created))
		return NULL;
	*why = "updated";
	if (!parse_sdec(&f[13], &updated))
		return NULL;
	*why = "previous id";
	if (!parse_hex64(&f[14], &prev))
		return NULL;
	*why = "next id";
	if (!parse_hex64(&f[15], &next))
		return NULL;
	*why = NULL;
	r = rec_new(slot, slot_len, cid, cid_len, label, label_len);
	if (r == NULL)
		return NULL;
	r->vid = vid;
	r->rev = rev;
	r->cls = (CK_ULONG)cls;
	r->key_type = (CK_ULONG)kt;
	r->perms = perms;
	r->state = (uint8_t)state;
	r->origin = (uint8_t)origin;
	r->presence = (uint32_t)presence;
	r->created = created;
	r->updated = updated;
	r->prev = prev;
	r->next = next;
	return r;
}

struct commit {
	char tag;
	uint64_t seq, count;
	uint32_t body;
};

static bool parse_commit(const char *p, size_t n, struct commit *c)
{
	struct field f[4];
	uint64_t body;

	if (split(p, n, f, 4) != 4 || f[0].n != 1 || (f[0].p[0] != 'C' && f[0].p[0] != 'S'))
		return false;
	c->tag = f[0].p[0];
	if (!parse_dec(&f[1], &c->seq) || c->seq == 0 || c->seq > SEQ_MAX ||
	    !parse_dec(&f[2], &c->count) || c->count > P11P_INDEX_MAX_RECORDS || f[3].n != 8 ||
	    !parse_hexnum(&f[3], 8, &body))
		return false;
	c->body = (uint32_t)body;
	return true;
}

/* ---- reading ------------------------------------------------------------------------------- */

struct reader {
	int fd;
	off_t pos; /* file offset of buf[0] */
	char *buf;
	size_t len, off, cap;
	bool eof;
};

enum { L_EOF, L_LINE, L_PARTIAL, L_LONG, L_ERR, L_BIG };

static int fill(struct reader *r)
{
	ssize_t k;

	if (r->off > 0) {
		memmove(r->buf, r->buf + r->off, r->len - r->off);
		r->pos += (off_t)r->off;
		r->len -= r->off;
		r->off = 0;
	}
	if (r->pos + (off_t)r->len >= P11P_INDEX_FILE_MAX)
		return L_BIG;
	do {
		k = pread(r->fd, r->buf + r->len, r->cap - r->len, r->pos + (off_t)r->len);
	} while (k < 0 && errno == EINTR);
	if (k < 0)
		return L_ERR;
	if (k == 0)
		r->eof = true;
	r->len += (size_t)k;
	return L_LINE;
}

/*
 * The next line: *p, *n (without its newline), *at (its file offset).
 * L_LINE: a whole line; L_PARTIAL: the last bytes, with no newline;
 * L_LONG: a line over P11P_INDEX_LINE_MAX (skipped up to its newline);
 * L_EOF; L_ERR: read error (errno); L_BIG: past P11P_INDEX_FILE_MAX.
 */
static int next_line(struct reader *r, const char **p, size_t *n, off_t *at)
{
	for (;;) {
		char *s = r->buf + r->off;
		char *nl = memchr(s, '\n', r->len - r->off);
		int k;

		if (nl != NULL && nl - s < P11P_INDEX_LINE_MAX) {
			*p = s;
			*n = (size_t)(nl - s);
			*at = r->pos + (off_t)r->off;
			r->off += *n + 1;
			return L_LINE;
		}
		if (r->len - r->off >= P11P_INDEX_LINE_MAX) {
			*at = r->pos + (off_t)r->off;
			*p = s;
			*n = 0;
			/* Skip to the newline ending it, however far. */
			for (;;) {
				nl = memchr(r->buf + r->off, '\n', r->len - r->off);
				if (nl != NULL) {
					r->off = (size_t)(nl - r->buf) + 1;
					return L_LONG;
				}
				r->off = r->len;
				if (r->eof)
					return L_LONG;
				if ((k = fill(r)) != L_LINE)
					return k;
			}
		}
		if (r->eof) {
			if (r->off == r->len)
				return L_EOF;
			*p = s;
			*n = r->len - r->off;
			*at = r->pos + (off_t)r->off;
			r->off = r->len;
			return L_PARTIAL;
		}
		if ((k = fill(r)) != L_LINE)
			return k;
	}
}

/*
 * Reads s->fd from s->end to its end (the caller holds the flock), applying
 * each committed transaction. A torn tail (see index.h) leaves s->end at the
 * last commit; s->size is where reading stopped. On error the state is what
 * the last good transaction left.
 */
static CK_RV load_more(struct state *s, const char *path, char *err, size_t errlen)
{
	struct reader r = {.fd = s->fd, .pos = s->end};
	struct op *ops = NULL;
	size_t nops = 0, capops = 0;
	uint32_t body = 0;
	unsigned long lineno = s->line;
	bool tail = false;
	unsigned long bad_line = 0;
	off_t bad_at = 0;
	const char *bad_why = NULL;
	CK_RV rv = CKR_OK;
	const char *p;
	size_t n;
	off_t at;
	int k;

	r.cap = READ_CHUNK + P11P_INDEX_LINE_MAX;
	r.buf = p11p_malloc(r.cap);
	if (r.buf == NULL)
		return CKR_HOST_MEMORY;

	if (s->end == 0) {
		k = next_line(&r, &p, &n, &at);
		if (k == L_EOF) {
			set_err(err, errlen, "%s: empty file, not a p11proxy index", path);
			rv = CKR_FUNCTION_FAILED;
			goto out;
		}
		if (k == L_ERR) {
			set_err(err, errlen, "%s: read: %s", path, strerror(errno));
			rv = CKR_FUNCTION_FAILED;
			goto out;
		}
		if (k != L_LINE || n < sizeof(MAGIC_NAME) ||
		    memcmp(p, MAGIC_NAME "\t", sizeof(MAGIC_NAME)) != 0) {
			set_err(err, errlen, "%s:1: byte 0: bad magic, not a p11proxy index", path);
			rv = CKR_FUNCTION_FAILED;
			goto out;
		}
		if (n != sizeof(MAGIC) - 1 || memcmp(p, MAGIC, n) != 0) {
			set_err(err, errlen, "%s:1: byte 0: unsupported index version '%.*s'", path,
			        (int)(n - sizeof(MAGIC_NAME) > 20 ? 20 : n - sizeof(MAGIC_NAME)),
			        p + sizeof(MAGIC_NAME));
			rv = CKR_FUNCTION_FAILED;
			goto out;
		}
		s->end = s->base = (off_t)n + 1;
		s->line = lineno = 1;
	}

	while ((k = next_line(&r, &p, &n, &at)) != L_EOF) {
		struct commit c;
		const char *why;

		if (k == L_ERR) {
			set_err(err, errlen, "%s: read: %s", path, strerror(errno));
			rv = CKR_FUNCTION_FAILED;
			goto out;
		}
		if (k == L_BIG) {
			set_err(err, errlen, "%s: larger than %lld bytes", path,
			        (long long)P11P_INDEX_FILE_MAX);
			rv = CKR_FUNCTION_FAILED;
			goto out;
		}
		lineno++;
		if (tail) {
			/*
			 * After a bad line only an unfinished transaction may follow.
			 * A snapshot is never torn (it is renamed in whole), and a
			 * commit two past the last applied one means the one in
			 * between was committed (a writer starts a transaction only
			 * after the previous one is durable): that is damage.
			 */
			if (k == L_LINE && line_crc_ok(p, n) && parse_commit(p, n - 9, &c) &&
			    (c.tag == 'S' || c.seq >= s->seq + 2)) {
				set_err(
				    err, errlen,
				    "%s:%lu: byte %lld: %s, and a committed transaction follows "
				    "at line %lu: damaged file",
				    path, bad_line, (long long)bad_at, bad_why, lineno);
				rv = CKR_FUNCTION_FAILED;
				goto out;
			}
			continue;
		}
		if (k != L_LINE || !line_crc_ok(p, n)) {
			tail = true;
			bad_line = lineno;
			bad_at = at;
			bad_why = k == L_PARTIAL ? "unfinished line"
			          : k == L_LONG  ? "line too long"
			                         : "bad checksum";
			continue;
		}
		if (n < 2 || p[1] != '\t') {
			set_err(err, errlen, "%s:%lu: byte %lld: malformed line", path, lineno,
			        (long long)at);
			rv = CKR_FUNCTION_FAILED;
			goto out;
		}
		switch (p[0]) {
		case 'K':
		case 'D':
			if (nops == capops) {
				size_t cap = capops ? capops * 2 : 64;
				struct op *o;

				if (nops >= P11P_INDEX_MAX_RECORDS) {
					set_err(err, errlen,
					        "%s:%lu: byte %lld: transaction over %d records",
					        path, lineno, (long long)at,
					        P11P_INDEX_MAX_RECORDS);
					rv = CKR_FUNCTION_FAILED;
					goto out;
				}
				o = p11p_reallocarray(ops, cap, sizeof(*ops));
				if (o == NULL) {
					rv = CKR_HOST_MEMORY;
					goto out;
				}
				ops = o;
				capops = cap;
			}
			if (p[0] == 'K') {
				struct rec *rec = parse_rec(p, n - 9, &why);

				if (rec == NULL && why == NULL) {
					rv = CKR_HOST_MEMORY;
					goto out;
				}
				if (rec == NULL) {
					set_err(err, errlen,
					        "%s:%lu: byte %lld: malformed record (%s)", path,
					        lineno, (long long)at, why);
					rv = CKR_FUNCTION_FAILED;
					goto out;
				}
				ops[nops].vid = rec->vid;
				ops[nops].rec = rec;
			} else {
				struct field f[2];

				if (split(p, n - 9, f, 2) != 2 ||
				    !parse_hex64(&f[1], &ops[nops].vid) || ops[nops].vid == 0) {
					set_err(err, errlen, "%s:%lu: byte %lld: bad delete line",
					        path, lineno, (long long)at);
					rv = CKR_FUNCTION_FAILED;
					goto out;
				}
				ops[nops].rec = NULL;
			}
			nops++;
			body = crc32_update(body, p, n + 1);
			break;
		case 'C':
		case 'S':
			if (!parse_commit(p, n - 9, &c)) {
				set_err(err, errlen, "%s:%lu: byte %lld: bad commit line", path,
				        lineno, (long long)at);
				rv = CKR_FUNCTION_FAILED;
				goto out;
			}
			if ((c.count != nops || c.body != body) && c.tag == 'S') {
				/* A snapshot is renamed in whole: it cannot be unfinished. */
				set_err(
				    err, errlen,
				    "%s:%lu: byte %lld: snapshot does not match its commit line",
				    path, lineno, (long long)at);
				rv = CKR_FUNCTION_FAILED;
				goto out;
			}
			if (c.count != nops || c.body != body) {
				/* Unfinished (power loss), or damage if a later commit follows. */
				tail = true;
				bad_line = lineno;
				bad_at = at;
				bad_why = "transaction does not match its commit line";
				break;
			}
			if (c.tag == 'S' ? s->seq != 0 || s->end != s->base
			                 : s->seq != 0 && c.seq != s->seq + 1) {
				set_err(err, errlen,
				        "%s:%lu: byte %lld: transaction %" PRIu64
				        " out of sequence (after %" PRIu64 ")",
				        path, lineno, (long long)at, c.seq, s->seq);
				rv = CKR_FUNCTION_FAILED;
				goto out;
			}
			rv = txn_prepare(s, ops, nops);
			if (rv == CKR_DEVICE_MEMORY) {
				set_err(err, errlen, "%s:%lu: byte %lld: more than %d records",
				        path, lineno, (long long)at, P11P_INDEX_MAX_RECORDS);
				rv = CKR_FUNCTION_FAILED;
			}
			if (rv != CKR_OK)
				goto out;
			txn_apply(s, ops, nops);
			nops = 0;
			body = 0;
			s->seq = c.seq;
			s->end = at + (off_t)n + 1;
			s->line = lineno;
			if (c.tag == 'S')
				s->base = s->end;
			break;
		default:
			set_err(err, errlen, "%s:%lu: byte %lld: unknown line type", path, lineno,
			        (long long)at);
			rv = CKR_FUNCTION_FAILED;
			goto out;
		}
	}
	s->size = r.pos + (off_t)r.len;
	if ((tail || nops > 0) && p11p_debug_on(P11P_DBG_LIB))
		p11p_debug(P11P_DBG_LIB, "%s: ignoring an unfinished transaction at byte %lld",
		           path, (long long)s->end);
out:
	ops_free(ops, nops);
	p11p_free(r.buf);
	return rv;
}

/* ---- files --------------------------------------------------------------------------------- */

static int lock_fd(int fd, int how)
{
	int rc;

	do {
		rc = flock(fd, how);
	} while (rc != 0 && errno == EINTR);
	return rc;
}

/* Not p11p_file_write_all(): journal appends write at an offset (pwrite). */
static int write_all(int fd, const char *buf, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t k = pwrite(fd, buf, len, off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			if (k == 0)
				errno = EIO;
			return -1;
		}
		buf += k;
		len -= (size_t)k;
		off += k;
	}
	return 0;
}

/* The directory must be the user's or root's, and writable by no one else. */
static CK_RV check_dir(const char *path, const char *dir, char *err, size_t errlen)
{
	struct stat sb;

	if (stat(dir, &sb) != 0) {
		set_err(err, errlen, "%s: directory %s: %s", path, dir, strerror(errno));
		return CKR_FUNCTION_FAILED;
	}
	if (!S_ISDIR(sb.st_mode) || !p11p_file_safe_owner(&sb, true)) {
		set_err(err, errlen,
		        "%s: unsafe directory %s (must be owned by you or root and not writable "
		        "by group or others)",
		        path, dir);
		return CKR_FUNCTION_FAILED;
	}
	return CKR_OK;
}

static CK_RV check_file(int fd, const char *path, char *err, size_t errlen)
{
	struct stat sb;

	if (fstat(fd, &sb) != 0) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return CKR_FUNCTION_FAILED;
	}
	if (!S_ISREG(sb.st_mode)) {
		set_err(err, errlen, "%s: not a regular file", path);
		return CKR_FUNCTION_FAILED;
	}
	if (!p11p_file_safe_owner(&sb, false)) {
		set_err(err, errlen,
		        "%s: unsafe index file (must be owned by you and not writable by group or "
		        "others)",
		        path);
		return CKR_FUNCTION_FAILED;
	}
	return CKR_OK;
}

/*
 * Creates the index with just its header, atomically: a temp file in the same
 * directory, fsync, link(2) to the name (which fails if someone else created
 * it first: theirs wins), fsync of the directory. Not p11p_file_replace(),
 * which renames over whatever is there.
 */
static CK_RV create_file(const char *path, const char *dir, char *err, size_t errlen)
{
	size_t len = strlen(path);
	char *tmp = p11p_malloc(len + 8);
	static const char header[] = MAGIC "\n";
	CK_RV rv = CKR_FUNCTION_FAILED;
	int fd = -1;

	if (tmp == NULL)
		return CKR_HOST_MEMORY;
	memcpy(tmp, path, len);
	memcpy(tmp + len, ".XXXXXX", 8);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		set_err(err, errlen, "%s: cannot create: %s", path, strerror(errno));
		goto out;
	}
	if (fchmod(fd, 0600) != 0 || write_all(fd, header, sizeof(header) - 1, 0) != 0 ||
	    fsync(fd) != 0) {
		set_err(err, errlen, "%s: cannot create: %s", path, strerror(errno));
		goto out_unlink;
	}
	if (link(tmp, path) != 0 && errno != EEXIST) {
		set_err(err, errlen, "%s: cannot create: %s", path, strerror(errno));
		goto out_unlink;
	}
	(void)p11p_file_sync_dir(dir);
	rv = CKR_OK;
out_unlink:
	unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	p11p_free(tmp);
	return rv;
}

static CK_RV open_file(struct p11p_index *idx, struct state *s, char *err, size_t errlen)
{
	struct stat sb;
	CK_RV rv;

	for (int tries = 0; tries < 2; tries++) {
		s->fd = open(idx->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (s->fd >= 0 || errno != ENOENT)
			break;
		rv = create_file(idx->path, idx->dir, err, errlen);
		if (rv != CKR_OK)
			return rv;
	}
	if (s->fd < 0) {
		set_err(err, errlen, "%s: %s", idx->path,
		        errno == ELOOP ? "is a symbolic link" : strerror(errno));
		return CKR_FUNCTION_FAILED;
	}
	rv = check_file(s->fd, idx->path, err, errlen);
	if (rv != CKR_OK)
		return rv;
	if (fstat(s->fd, &sb) != 0) {
		set_err(err, errlen, "%s: %s", idx->path, strerror(errno));
		return CKR_FUNCTION_FAILED;
	}
	s->dev = sb.st_dev;
	s->ino = sb.st_ino;
	return CKR_OK;
}

/*
 * Takes the flock (`how`) on the file the path names now and brings the state
 * up to date with it: reads what was appended, or loads a replaced file whole
 * (swapping it in only when it loads). On CKR_OK the lock is held on
 * idx->st.fd; on error no lock is held and idx->st is unchanged or advanced
 * by whole transactions.
 */
static CK_RV sync_locked(struct p11p_index *idx, int how)
{
	struct state *s = &idx->st;
	char *err = idx->err;
	size_t errlen = sizeof(idx->err);
	struct stat sb;
	CK_RV rv;

	for (int tries = 0; tries < 100; tries++) {
		struct state ns;

		if (s->fd >= 0) {
			if (lock_fd(s->fd, how) != 0) {
				set_err(err, errlen, "%s: flock: %s", idx->path, strerror(errno));
				return CKR_FUNCTION_FAILED;
			}
			if (stat(idx->path, &sb) != 0) {
				set_err(err, errlen, "%s: %s", idx->path, strerror(errno));
				lock_fd(s->fd, LOCK_UN);
				return CKR_FUNCTION_FAILED;
			}
			/* Shorter than what we applied: cut by someone else; reload it whole. */
			if (sb.st_dev == s->dev && sb.st_ino == s->ino && sb.st_size >= s->end) {
				/*
				 * Same size is "nothing new" only without a torn tail: a
				 * writer may have cut one and appended as many bytes.
				 */
				if (sb.st_size == s->size && s->size == s->end)
					return CKR_OK;
				rv = load_more(s, idx->path, err, errlen);
				atomic_fetch_add_explicit(&idx->gen, 1, memory_order_release);
				if (rv != CKR_OK)
					lock_fd(s->fd, LOCK_UN);
				return rv;
			}
			lock_fd(s->fd, LOCK_UN);
		}
		/* First open, or a compaction replaced the file: load the new one whole. */
		state_init(&ns);
		rv = open_file(idx, &ns, err, errlen);
		if (rv == CKR_OK && lock_fd(ns.fd, how) != 0) {
			set_err(err, errlen, "%s: flock: %s", idx->path, strerror(errno));
			rv = CKR_FUNCTION_FAILED;
		}
		if (rv == CKR_OK)
			rv = load_more(&ns, idx->path, err, errlen);
		if (rv != CKR_OK) {
			state_free(&ns);
			return rv;
		}
		if (stat(idx->path, &sb) == 0 && sb.st_dev == ns.dev && sb.st_ino == ns.ino) {
			state_free(s);
			*s = ns;
			atomic_fetch_add_explicit(&idx->gen, 1, memory_order_release);
			return CKR_OK;
		}
		state_free(&ns); /* replaced again meanwhile: closing drops the lock */
	}
	set_err(err, errlen, "%s: the file keeps being replaced", idx->path);
	return CKR_FUNCTION_FAILED;
}

/* ---- compaction ---------------------------------------------------------------------------- */

struct snap {
	int fd;
	char *buf;
	size_t len;
	off_t off;
	uint32_t body;
	bool failed;
};

static int snap_flush(struct snap *w)
{
	if (w->failed)
		return -1;
	if (write_all(w->fd, w->buf, w->len, w->off) != 0) {
		w->failed = true;
		return -1;
	}
	w->off += (off_t)w->len;
	w->len = 0;
	return 0;
}

static void snap_rec_cb(void *value, void *arg)
{
	struct snap *w = arg;
	char *start, *end;

	if (w->failed)
		return;
	if (w->len + K_LINE_MAX > WRITE_CHUNK && snap_flush(w) != 0)
		return;
	start = w->buf + w->len;
	end = format_rec(start, value);
	w->body = crc32_update(w->body, start, (size_t)(end - start));
	w->len += (size_t)(end - start);
}

/*
 * Rewrites the index as header + one 'S' transaction of the live records
 * (temp file, fsync, rename, fsync of the directory) and switches the handle
 * to the new file. The caller holds the mutex and LOCK_EX on the current file
 * with the state up to date; on return the lock is held on idx->st.fd, old
 * or new. Failure leaves the old file in place and is not an error of the
 * write that triggered it (it returns the reason only). Not
 * p11p_file_replace(): the new file is written locked and stays open as the
 * handle's file.
 */
static CK_RV compact_locked(struct p11p_index *idx)
{
	struct state *s = &idx->st;
	size_t len = strlen(idx->path);
	char *tmp = p11p_malloc(len + 9);
	struct snap w = {.fd = -1};
	struct stat sb;
	CK_RV rv = CKR_FUNCTION_FAILED;

	if (tmp == NULL)
		return CKR_HOST_MEMORY;
	w.buf = p11p_malloc(WRITE_CHUNK);
	if (w.buf == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	memcpy(tmp, idx->path, len);
	memcpy(tmp + len, ".compact", 9);
	/* Only a writer holding LOCK_EX uses this name: a stale one is from a crash. */
	w.fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (w.fd < 0 || fchmod(w.fd, 0600) != 0 || lock_fd(w.fd, LOCK_EX) != 0) {
		set_err(idx->err, sizeof(idx->err), "%s: compaction: %s", tmp, strerror(errno));
		goto out;
	}
	memcpy(w.buf, MAGIC "\n", sizeof(MAGIC));
	w.len = sizeof(MAGIC);
	p11p_map_each(&s->by_id, snap_rec_cb, &w);
	if (!w.failed && w.len + 64 > WRITE_CHUNK)
		snap_flush(&w);
	if (!w.failed)
		w.len = (size_t)(format_commit(w.buf + w.len, 'S', s->seq ? s->seq : 1, s->count,
		                               w.body) -
		                 w.buf);
	if (snap_flush(&w) != 0 || fsync(w.fd) != 0 || fstat(w.fd, &sb) != 0) {
		set_err(idx->err, sizeof(idx->err), "%s: compaction: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	if (rename(tmp, idx->path) != 0) {
		set_err(idx->err, sizeof(idx->err), "%s: compaction: rename: %s", idx->path,
		        strerror(errno));
		goto out_unlink;
	}
	(void)p11p_file_sync_dir(idx->dir);
	close(s->fd); /* drops the old file's lock: waiters see the new inode */
	s->fd = w.fd;
	w.fd = -1;
	s->dev = sb.st_dev;
	s->ino = sb.st_ino;
	s->end = s->base = s->size = sb.st_size;
	s->line = 2 + s->count;
	if (s->seq == 0)
		s->seq = 1;
	idx->compactions++;
	rv = CKR_OK;
	goto out;
out_unlink:
	unlink(tmp);
out:
	if (w.fd >= 0)
		close(w.fd);
	p11p_free(w.buf);
	p11p_free(tmp);
	return rv;
}

/* The journal has outgrown the live records: compact (its failure is only logged). */
static void maybe_compact(struct p11p_index *idx)
{
	struct state *s = &idx->st;
	off_t journal = s->end - s->base;

	if (journal < P11P_INDEX_COMPACT_MIN || journal < s->base)
		return;
	if (compact_locked(idx) != CKR_OK)
		p11p_message("index: compaction postponed: %s", idx->err);
}

/* ---- the handle ---------------------------------------------------------------------------- */

/* Calls on a handle inherited through fork() are refused (index.h). */
#define CHECK_OWNER(idx)                                                                           \
	do {                                                                                       \
		if ((idx)->pid != getpid())                                                        \
			return CKR_CRYPTOKI_NOT_INITIALIZED;                                       \
	} while (0)

CK_RV p11p_index_open(const char *path, struct p11p_index **out, char *err, size_t errlen)
{
	struct p11p_index *idx;
	char *slash;
	CK_RV rv;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	p11p_return_val_if_fail(path != NULL && out != NULL, CKR_ARGUMENTS_BAD);
	*out = NULL;
	pthread_once(&crc_once, crc_init);
	if (*path == '\0') {
		set_err(err, errlen, "index: empty path");
		return CKR_ARGUMENTS_BAD;
	}
	idx = p11p_calloc(1, sizeof(*idx));
	if (idx == NULL || pthread_mutex_init(&idx->mu, NULL) != 0) {
		p11p_free(idx);
		set_err(err, errlen, "%s: out of memory", path);
		return CKR_HOST_MEMORY;
	}
	state_init(&idx->st);
	atomic_init(&idx->gen, 1);
	idx->pid = getpid();
	idx->path = p11p_strdup(path);
	if (idx->path == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	slash = strrchr(path, '/');
	idx->dir = slash == NULL   ? p11p_strdup(".")
	           : slash == path ? p11p_strdup("/")
	                           : p11p_strndup(path, (size_t)(slash - path));
	if (idx->dir == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	rv = check_dir(idx->path, idx->dir, idx->err, sizeof(idx->err));
	if (rv == CKR_OK)
		rv = sync_locked(idx, LOCK_SH);
	if (rv == CKR_OK)
		lock_fd(idx->st.fd, LOCK_UN);
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
	if (idx->pid != getpid() && pthread_mutex_trylock(&idx->mu) != 0) {
		/* A parent thread held it at fork: its state may be half-changed. */
		if (idx->st.fd >= 0)
			close(idx->st.fd);
		return;
	}
	if (idx->pid != getpid())
		pthread_mutex_unlock(&idx->mu);
	state_free(&idx->st);
	pthread_mutex_destroy(&idx->mu);
	p11p_free(idx->path);
	p11p_free(idx->dir);
	p11p_free(idx);
}

/* Logs and keeps the message of a failed refresh or write. */
static void report(struct p11p_index *idx, CK_RV rv)
{
	if (rv == CKR_HOST_MEMORY)
		set_err(idx->err, sizeof(idx->err), "%s: out of memory", idx->path);
	else
		p11p_message("index: %s", idx->err);
}

CK_RV p11p_index_refresh(struct p11p_index *idx)
{
	struct stat sb;
	CK_RV rv;

	p11p_return_val_if_fail(idx != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	pthread_mutex_lock(&idx->mu);
	if (!idx->broken && stat(idx->path, &sb) == 0 && sb.st_dev == idx->st.dev &&
	    sb.st_ino == idx->st.ino && sb.st_size == idx->st.end && idx->st.size == idx->st.end) {
		rv = CKR_OK;
		goto out;
	}
	rv = sync_locked(idx, LOCK_SH);
	if (rv == CKR_OK) {
		lock_fd(idx->st.fd, LOCK_UN);
		idx->broken = false;
	} else {
		idx->broken = true;
		report(idx, rv);
	}
out:
	pthread_mutex_unlock(&idx->mu);
	return rv;
}

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

/* Room for one more line after len bytes (doubling). */
static int grow_buf(char **buf, size_t *cap, size_t len)
{
	size_t want = *cap ? *cap : 4 * K_LINE_MAX;
	char *b;

	while (want < len + K_LINE_MAX)
		want *= 2;
	if (want == *cap)
		return 0;
	b = p11p_realloc(*buf, want);
	if (b == NULL)
		return -1;
	*buf = b;
	*cap = want;
	return 0;
}

/*
 * The write path shared by put, put_batch and delete: under the mutex and
 * LOCK_EX, catch up, cut a torn tail, build the transaction from the latest
 * state, prepare, append + fdatasync, apply, maybe compact.
 * recs/n: the puts (written back on success); del_vid: a delete instead.
 */
static CK_RV write_txn(struct p11p_index *idx, struct p11p_vkey *recs, size_t n, uint64_t del_vid,
                       bool *deleted)
{
	struct state *s = &idx->st;
	struct op *ops = NULL;
	size_t nops = 0;
	char *buf = NULL;
	size_t cap = 0, len;
	uint32_t body = 0;
	int64_t now = (int64_t)time(NULL);
	bool locked = false;
	CK_RV rv;

	pthread_mutex_lock(&idx->mu);
	rv = sync_locked(idx, LOCK_EX);
	if (rv != CKR_OK) {
		idx->broken = true;
		report(idx, rv);
		goto out;
	}
	locked = true;
	idx->broken = false;
	if (s->size > s->end) {
		/* A writer died mid-transaction: cut its unfinished bytes off. */
		if (ftruncate(s->fd, s->end) != 0) {
			set_err(idx->err, sizeof(idx->err), "%s: truncate: %s", idx->path,
			        strerror(errno));
			rv = CKR_FUNCTION_FAILED;
			report(idx, rv);
			goto out;
		}
		p11p_debug(P11P_DBG_LIB, "index: dropped %lld bytes of an unfinished transaction",
		           (long long)(s->size - s->end));
		s->size = s->end;
	}
	if (s->seq >= SEQ_MAX) {
		set_err(idx->err, sizeof(idx->err), "%s: transaction numbers exhausted", idx->path);
		rv = CKR_DEVICE_MEMORY;
		goto out;
	}
	if (recs == NULL) {
		bool exists = p11p_map_get(&s->by_id, del_vid, 0) != NULL;

		if (deleted != NULL)
			*deleted = exists;
		if (!exists)
			goto out;
	}

	ops = p11p_calloc(recs ? n : 1, sizeof(*ops));
	if (ops == NULL || grow_buf(&buf, &cap, 0) != 0) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	len = 0;
	if (recs == NULL) {
		ops[0].vid = del_vid;
		nops = 1;
		len = (size_t)(format_del(buf, del_vid) - buf);
	}
	for (size_t i = 0; recs != NULL && i < n; i++) {
		const struct p11p_vkey *v = &recs[i];
		const struct rec *old = v->vid ? p11p_map_get(&s->by_id, v->vid, 0) : NULL;
		struct rec *r;

		if (v->rev != 0 && (old == NULL || old->rev != v->rev)) {
			set_err(idx->err, sizeof(idx->err),
			        "%s: record %016" PRIx64 " changed since it was read", idx->path,
			        v->vid);
			rv = P11P_INDEX_CONFLICT;
			goto out;
		}
		if (old != NULL && old->rev >= SEQ_MAX) {
			set_err(idx->err, sizeof(idx->err),
			        "%s: record %016" PRIx64 " revisions exhausted", idx->path, v->vid);
			rv = CKR_DEVICE_MEMORY;
			goto out;
		}
		r = rec_new(v->slot, strlen(v->slot), v->ck_id, v->ck_id_len, v->label,
		            v->label_len);
		if (r == NULL || grow_buf(&buf, &cap, len) != 0) {
			p11p_free(r);
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		ops[nops].rec = r;
		ops[nops].vid = r->vid = v->vid ? v->vid : new_vid(s);
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
		len = (size_t)(format_rec(buf + len, r) - buf);
	}
	body = crc32_update(0, buf, len);
	if (grow_buf(&buf, &cap, len) != 0) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	len = (size_t)(format_commit(buf + len, 'C', s->seq + 1, nops, body) - buf);

	rv = txn_prepare(s, ops, nops);
	if (rv != CKR_OK) {
		if (rv == CKR_DEVICE_MEMORY)
			set_err(idx->err, sizeof(idx->err), "%s: more than %d records", idx->path,
			        P11P_INDEX_MAX_RECORDS);
		goto out;
	}
	if (s->end + (off_t)len > P11P_INDEX_FILE_MAX) {
		set_err(idx->err, sizeof(idx->err), "%s: would grow past %lld bytes", idx->path,
		        (long long)P11P_INDEX_FILE_MAX);
		rv = CKR_DEVICE_MEMORY;
		goto out;
	}
	if (write_all(s->fd, buf, len, s->end) != 0 || fdatasync(s->fd) != 0) {
		set_err(idx->err, sizeof(idx->err), "%s: write: %s", idx->path, strerror(errno));
		rv = CKR_FUNCTION_FAILED;
		report(idx, rv);
		/* Not committed: take the bytes back so that no one applies them. */
		if (ftruncate(s->fd, s->end) != 0)
			p11p_message("index: %s: truncate: %s", idx->path, strerror(errno));
		goto out;
	}
	for (size_t i = 0; recs != NULL && i < n; i++) {
		recs[i].vid = ops[i].vid;
		recs[i].rev = ops[i].rec->rev;
		recs[i].created = ops[i].rec->created;
		recs[i].updated = ops[i].rec->updated;
	}
	txn_apply(s, ops, nops);
	atomic_fetch_add_explicit(&idx->gen, 1, memory_order_release);
	s->seq++;
	s->end += (off_t)len;
	s->size = s->end;
	s->line += nops + 1;
	maybe_compact(idx);
out:
	if (locked)
		lock_fd(s->fd, LOCK_UN);
	pthread_mutex_unlock(&idx->mu);
	ops_free(ops, nops);
	p11p_free(buf);
	return rv;
}

CK_RV p11p_index_put(struct p11p_index *idx, struct p11p_vkey *rec)
{
	return p11p_index_put_batch(idx, rec, 1);
}

CK_RV p11p_index_put_batch(struct p11p_index *idx, struct p11p_vkey *recs, size_t n)
{
	p11p_return_val_if_fail(idx != NULL && (recs != NULL || n == 0), CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	if (n == 0)
		return CKR_OK;
	if (n > P11P_INDEX_MAX_RECORDS)
		return CKR_DEVICE_MEMORY;
	for (size_t i = 0; i < n; i++) {
		if (!vkey_valid(&recs[i]))
			return CKR_ARGUMENTS_BAD;
	}
	return write_txn(idx, recs, n, 0, NULL);
}

CK_RV p11p_index_delete(struct p11p_index *idx, uint64_t vid, bool *deleted)
{
	p11p_return_val_if_fail(idx != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	if (deleted != NULL)
		*deleted = false;
	if (vid == 0)
		return CKR_OK;
	return write_txn(idx, NULL, 0, vid, deleted);
}

CK_RV p11p_index_compact(struct p11p_index *idx)
{
	CK_RV rv;

	p11p_return_val_if_fail(idx != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	pthread_mutex_lock(&idx->mu);
	rv = sync_locked(idx, LOCK_EX);
	if (rv == CKR_OK) {
		if (idx->st.size > idx->st.end && ftruncate(idx->st.fd, idx->st.end) == 0)
			idx->st.size = idx->st.end;
		rv = compact_locked(idx);
		lock_fd(idx->st.fd, LOCK_UN);
	}
	if (rv != CKR_OK)
		report(idx, rv);
	pthread_mutex_unlock(&idx->mu);
	return rv;
}

CK_RV p11p_index_stats(struct p11p_index *idx, struct p11p_index_stats *st)
{
	p11p_return_val_if_fail(idx != NULL && st != NULL, CKR_ARGUMENTS_BAD);
	CHECK_OWNER(idx);
	pthread_mutex_lock(&idx->mu);
	st->records = idx->st.count;
	st->seq = idx->st.seq;
	st->file_bytes = (uint64_t)idx->st.end;
	st->journal_bytes = (uint64_t)(idx->st.end - idx->st.base);
	st->compactions = idx->compactions;
	pthread_mutex_unlock(&idx->mu);
	return CKR_OK;
}

void p11p_index_last_error(struct p11p_index *idx, char *buf, size_t len)
{
	if (buf == NULL || len == 0)
		return;
	buf[0] = '\0';
	if (idx == NULL || idx->pid != getpid())
		return;
	pthread_mutex_lock(&idx->mu);
	snprintf(buf, len, "%s", idx->err);
	pthread_mutex_unlock(&idx->mu);
}
