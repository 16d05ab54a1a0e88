/*
 * The journal of p11proxy's first index (a text file, read-only here), for
 * `p11proxy index import` (journal.h has the format). The parser and the
 * transaction rules are those of the old writer's loader: only committed
 * transactions count, an unfinished one at the end is ignored, damage
 * anywhere else refuses the file with "path:line: byte offset: reason".
 */
#include "index/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/text.h"

#define MAGIC      "p11proxy-index\t1"
#define MAGIC_NAME "p11proxy-index"
#define READ_CHUNK (256 * 1024)
#define K_FIELDS   16 /* with the tag, without the checksum */
#define SEQ_MAX    (UINT64_C(1) << 62)

static const char perm_letters[] = "edsvwuk";
static const char *const state_names[] = {"active", "deactivated", "missing", "deleted"};
static const char *const origin_names[] = {"created", "scanned"};

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

/* ---- the records of committed transactions (by vid) ----------------------------------------- */

struct state {
	int fd;
	off_t end;  /* committed bytes: everything before is applied */
	off_t base; /* end of the header or the snapshot transaction */
	off_t size;
	unsigned long line; /* lines before end */
	uint64_t seq;       /* last committed transaction, 0 before the first */
	struct p11p_map by_id;
	size_t count;
};

struct rec {
	struct p11p_vkey v;
};

static struct rec *rec_new(const char *slot, size_t slot_len, const unsigned char *cid,
                           size_t cid_len, const unsigned char *label, size_t label_len)
{
	struct rec *r = p11p_calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	memcpy(r->v.slot, slot, slot_len);
	memcpy(r->v.ck_id, cid, cid_len);
	r->v.ck_id_len = cid_len;
	memcpy(r->v.label, label, label_len);
	r->v.label_len = label_len;
	return r;
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
	if (p11p_map_reserve(&s->by_id, n) != 0)
		return CKR_HOST_MEMORY;
	return CKR_OK;
}

static void txn_apply(struct state *s, struct op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct rec *old = p11p_map_get(&s->by_id, ops[i].vid, 0);

		if (ops[i].rec != NULL) {
			(void)p11p_map_put(&s->by_id, ops[i].vid, 0, ops[i].rec);
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
	r->v.vid = vid;
	r->v.rev = rev;
	r->v.cls = (CK_ULONG)cls;
	r->v.key_type = (CK_ULONG)kt;
	r->v.perms = perms;
	r->v.state = (enum p11p_vk_state)state;
	r->v.origin = (enum p11p_vk_origin)origin;
	r->v.presence = (uint32_t)presence;
	r->v.created = created;
	r->v.updated = updated;
	r->v.prev = prev;
	r->v.next = next;
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
			/* The field is not echoed: it may hold any byte (a CR, say). */
			set_err(err, errlen,
			        "%s:1: byte 0: unsupported index version (only version 1 is read)",
			        path);
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
				ops[nops].vid = rec->v.vid;
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

/* ---- reading a file ------------------------------------------------------------------------- */

struct collect {
	struct p11p_vkey *out;
	size_t n;
};

static void collect_cb(void *value, void *arg)
{
	struct collect *c = arg;

	c->out[c->n++] = ((struct rec *)value)->v;
}

static void free_cb(void *value, void *arg)
{
	(void)arg;
	p11p_free(value);
}

static int cmp_vid(const void *a, const void *b)
{
	uint64_t x = ((const struct p11p_vkey *)a)->vid, y = ((const struct p11p_vkey *)b)->vid;

	return x < y ? -1 : x > y;
}

CK_RV p11p_journal_read(const char *path, struct p11p_vkey **out, size_t *n, char *err,
                        size_t errlen)
{
	struct state s;
	struct stat sb;
	struct collect c = {0};
	CK_RV rv;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	p11p_return_val_if_fail(path != NULL && out != NULL && n != NULL, CKR_ARGUMENTS_BAD);
	*out = NULL;
	*n = 0;
	pthread_once(&crc_once, crc_init);
	memset(&s, 0, sizeof(s));
	s.fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (s.fd < 0) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return CKR_FUNCTION_FAILED;
	}
	if (fstat(s.fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		set_err(err, errlen, "%s: not a regular file", path);
		close(s.fd);
		return CKR_FUNCTION_FAILED;
	}
	rv = load_more(&s, path, err, errlen);
	if (rv == CKR_OK && s.count > 0) {
		c.out = p11p_reallocarray(NULL, s.count, sizeof(*c.out));
		if (c.out == NULL) {
			rv = CKR_HOST_MEMORY;
		} else {
			p11p_map_each(&s.by_id, collect_cb, &c);
			qsort(c.out, c.n, sizeof(*c.out), cmp_vid);
			*out = c.out;
			*n = c.n;
		}
	}
	if (rv == CKR_HOST_MEMORY)
		set_err(err, errlen, "%s: out of memory", path);
	p11p_map_each(&s.by_id, free_cb, NULL);
	p11p_map_clear(&s.by_id);
	close(s.fd);
	return rv;
}
