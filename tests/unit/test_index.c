/*
 * The virtual-key index (lib/index): round trips of every field, lookups,
 * revisions, damaged files (each refused with file:line and byte offset),
 * torn journal tails, two handles seeing each other, compaction, unsafe
 * files, fork, and allocation failure at every step of open and put.
 * Each test works in its own temp directory; every test resets the
 * allocation countdown in its teardown (CK_FORK=no shares one process).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/mem.h"
#include "index/index.h"

static char dir[256];
static char path[320];

static void rm_dir(const char *d)
{
	DIR *dp = opendir(d);
	struct dirent *e;
	char p[600];

	if (dp == NULL)
		return;
	while ((e = readdir(dp)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", d, e->d_name);
		unlink(p);
	}
	closedir(dp);
	rmdir(d);
}

static void setup(void)
{
	const char *t = getenv("TMPDIR");

	p11p_mem_fail_reset();
	snprintf(dir, sizeof(dir), "%s/p11p-index-test.XXXXXX", t ? t : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/index", dir);
}

static void teardown(void)
{
	p11p_mem_fail_reset();
	rm_dir(dir);
}

/* ---- helpers -------------------------------------------------------------------------------- */

static uint32_t crc32_ref(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		c ^= b[i];
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
	}
	return ~c;
}

static void write_file(const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(path, 0600), 0);
}

static void append_file(const char *data, size_t len)
{
	FILE *f = fopen(path, "ab");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

static char *read_all(size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = malloc(1 << 22);
	size_t n;

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(buf);
	n = fread(buf, 1, (1 << 22) - 1, f);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Appends a line with its checksum to a growing text. */
static void add_line(char *text, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_line(char *text, size_t cap, const char *fmt, ...)
{
	char line[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	ck_assert_int_lt(n, (int)sizeof(line) - 16);
	snprintf(line + n, sizeof(line) - (size_t)n, "\t%08x\n", crc32_ref(line, (size_t)n));
	ck_assert_uint_lt(strlen(text) + strlen(line), cap);
	strcat(text, line);
}

/* A commit line over the K/D lines that follow text[from..]. */
static void add_commit(char *text, size_t cap, size_t from, unsigned long seq, unsigned long count)
{
	add_line(text, cap, "C\t%lu\t%lu\t%08x", seq, count,
	         crc32_ref(text + from, strlen(text) - from));
}

#define REC_FMT                                                                                    \
	"K\t%016llx\t1\tv-slot\t3\t1f\t0102\tkey%%20one\tedsvwuk\tactive\tcreated\t3\t100\t200\t"  \
	"0000000000000000\t0000000000000000"

static struct p11p_index *open_ok(void)
{
	struct p11p_index *idx = NULL;
	char err[512];
	CK_RV rv = p11p_index_open(path, &idx, err, sizeof(err));

	ck_assert_msg(rv == CKR_OK, "open: 0x%lx %s", rv, err);
	ck_assert_str_eq(err, "");
	return idx;
}

/* Opens, expecting failure with a message containing every given needle. */
static void open_fails(const char *needle1, const char *needle2)
{
	struct p11p_index *idx = NULL;
	char err[512];
	CK_RV rv = p11p_index_open(path, &idx, err, sizeof(err));

	ck_assert_msg(rv == CKR_FUNCTION_FAILED, "rv 0x%lx (%s)", rv, err);
	ck_assert_ptr_null(idx);
	ck_assert_msg(strstr(err, path) != NULL, "no path in '%s'", err);
	ck_assert_msg(needle1 == NULL || strstr(err, needle1) != NULL, "no '%s' in '%s'", needle1,
	              err);
	ck_assert_msg(needle2 == NULL || strstr(err, needle2) != NULL, "no '%s' in '%s'", needle2,
	              err);
	ck_assert_ptr_null(strchr(err, '\n'));
}

static void key_init(struct p11p_vkey *v, const char *slot, const char *label, int n)
{
	memset(v, 0, sizeof(*v));
	snprintf(v->slot, sizeof(v->slot), "%s", slot);
	v->cls = CKO_SECRET_KEY;
	v->key_type = CKK_AES;
	v->ck_id_len = (size_t)snprintf((char *)v->ck_id, sizeof(v->ck_id), "id-%d", n);
	v->label_len = strlen(label);
	memcpy(v->label, label, v->label_len);
	v->perms = P11P_VK_ENCRYPT | P11P_VK_DECRYPT;
}

static void put_ok(struct p11p_index *idx, struct p11p_vkey *v)
{
	char err[512];
	CK_RV rv = p11p_index_put(idx, v);

	p11p_index_last_error(idx, err, sizeof(err));
	ck_assert_msg(rv == CKR_OK, "put: 0x%lx %s", rv, err);
}

static void assert_same(const struct p11p_vkey *a, const struct p11p_vkey *b)
{
	ck_assert_uint_eq(a->vid, b->vid);
	ck_assert_uint_eq(a->rev, b->rev);
	ck_assert_str_eq(a->slot, b->slot);
	ck_assert_uint_eq(a->cls, b->cls);
	ck_assert_uint_eq(a->key_type, b->key_type);
	ck_assert_uint_eq(a->ck_id_len, b->ck_id_len);
	ck_assert_mem_eq(a->ck_id, b->ck_id, a->ck_id_len);
	ck_assert_uint_eq(a->label_len, b->label_len);
	ck_assert_mem_eq(a->label, b->label, a->label_len);
	ck_assert_uint_eq(a->perms, b->perms);
	ck_assert_int_eq(a->state, b->state);
	ck_assert_int_eq(a->origin, b->origin);
	ck_assert_uint_eq(a->presence, b->presence);
	ck_assert_int_eq(a->created, b->created);
	ck_assert_int_eq(a->updated, b->updated);
	ck_assert_uint_eq(a->prev, b->prev);
	ck_assert_uint_eq(a->next, b->next);
}

static void get_ok(struct p11p_index *idx, uint64_t vid, struct p11p_vkey *out)
{
	bool found = false;

	ck_assert_uint_eq(p11p_index_get(idx, vid, out, &found), CKR_OK);
	ck_assert_msg(found, "vid %016llx not found", (unsigned long long)vid);
}

static bool has(struct p11p_index *idx, uint64_t vid)
{
	struct p11p_vkey out;
	bool found = true;

	ck_assert_uint_eq(p11p_index_get(idx, vid, &out, &found), CKR_OK);
	return found;
}

static size_t count_all(struct p11p_index *idx)
{
	struct p11p_index_stats st;

	ck_assert_uint_eq(p11p_index_stats(idx, &st), CKR_OK);
	return st.records;
}

/* ---- round trips ---------------------------------------------------------------------------- */

START_TEST(test_create_empty)
{
	struct p11p_index *idx = open_ok();
	struct stat sb;
	size_t len;
	char *text;

	ck_assert_uint_eq(count_all(idx), 0);
	p11p_index_close(idx);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0600);
	text = read_all(&len);
	ck_assert_str_eq(text, "p11proxy-index\t1\n");
	free(text);
	idx = open_ok();
	ck_assert_uint_eq(count_all(idx), 0);
	p11p_index_close(idx);
}
END_TEST

START_TEST(test_round_trip_every_field)
{
	static const unsigned char cid[] = {0x00, 0x01, 0x00, 0xff, '\t', '\n', '%', 0x00};
	static const char label[] =
	    "tab\there\nnewline %25 \xc3\xa9t\xc3\xa9 \xe2\x82\xac \x7f\x01";
	struct p11p_index *idx = open_ok();
	struct p11p_vkey keys[4], got;

	/* 0: odd bytes; 1: every limit at its maximum; 2: empties; 3: extremes */
	memset(keys, 0, sizeof(keys));
	strcpy(keys[0].slot, "v-slot %\t1");
	keys[0].cls = CKO_PRIVATE_KEY;
	keys[0].key_type = CKK_EC;
	memcpy(keys[0].ck_id, cid, sizeof(cid));
	keys[0].ck_id_len = sizeof(cid);
	memcpy(keys[0].label, label, sizeof(label) - 1);
	keys[0].label_len = sizeof(label) - 1;
	keys[0].perms = P11P_VK_SIGN | P11P_VK_DERIVE;
	keys[0].state = P11P_VK_DEACTIVATED;
	keys[0].origin = P11P_VK_SCANNED;
	keys[0].presence = 0x8001;
	keys[0].created = 1234567890;
	keys[0].prev = 0x0123456789abcdefULL;
	keys[0].next = 0xfedcba9876543210ULL;

	memset(keys[1].slot, 'S', P11P_INDEX_SLOT_MAX);
	keys[1].cls = CKO_SECRET_KEY;
	for (size_t i = 0; i < P11P_INDEX_ID_MAX; i++)
		keys[1].ck_id[i] = (unsigned char)i;
	keys[1].ck_id_len = P11P_INDEX_ID_MAX;
	for (size_t i = 0; i < P11P_INDEX_LABEL_MAX; i++)
		keys[1].label[i] = (unsigned char)(i % 255 + 1);
	keys[1].label_len = P11P_INDEX_LABEL_MAX;
	keys[1].perms = P11P_VK_ALL;
	keys[1].presence = 0xffff;

	strcpy(keys[2].slot, "e");
	keys[2].state = P11P_VK_MISSING;

	strcpy(keys[3].slot, "\xe2\x98\x83 slot");
	keys[3].cls = (CK_ULONG)-1;
	keys[3].key_type = CKK_VENDOR_DEFINED | 0x1234;
	keys[3].created = -5;
	keys[3].vid = 0xffffffffffffffffULL;
	keys[3].prev = 1;

	ck_assert_uint_eq(p11p_index_put_batch(idx, keys, 4), CKR_OK);
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_ne(keys[i].vid, 0);
		ck_assert_uint_eq(keys[i].rev, 1);
		ck_assert_int_ne(keys[i].updated, 0);
		get_ok(idx, keys[i].vid, &got);
		assert_same(&got, &keys[i]);
		ck_assert_uint_eq(got.ck_id[got.ck_id_len], 0);
		ck_assert_uint_eq(got.label[got.label_len], 0);
	}
	ck_assert_uint_eq(keys[3].vid, 0xffffffffffffffffULL);
	ck_assert_int_eq(keys[0].created, 1234567890);
	ck_assert_int_eq(keys[3].created, -5);
	ck_assert_int_eq(keys[1].created, keys[1].updated); /* 0: now */
	p11p_index_close(idx);

	/* From the file, by a new handle; then once more after a compaction. */
	for (int round = 0; round < 2; round++) {
		idx = open_ok();
		ck_assert_uint_eq(count_all(idx), 4);
		for (int i = 0; i < 4; i++) {
			get_ok(idx, keys[i].vid, &got);
			assert_same(&got, &keys[i]);
		}
		if (round == 0)
			ck_assert_uint_eq(p11p_index_compact(idx), CKR_OK);
		p11p_index_close(idx);
	}
}
END_TEST

START_TEST(test_update_keeps_created_and_bumps_rev)
{
	struct p11p_index *idx = open_ok();
	struct p11p_vkey v, got;
	uint64_t vid;

	key_init(&v, "s", "k", 1);
	v.created = 42;
	put_ok(idx, &v);
	vid = v.vid;
	v.created = 0;
	v.rev = 0;
	v.perms = P11P_VK_SIGN;
	put_ok(idx, &v);
	ck_assert_uint_eq(v.vid, vid);
	ck_assert_uint_eq(v.rev, 2);
	ck_assert_int_eq(v.created, 42);
	get_ok(idx, vid, &got);
	assert_same(&got, &v);
	ck_assert_uint_eq(count_all(idx), 1);
	p11p_index_close(idx);
}
END_TEST

START_TEST(test_rev_conflict)
{
	struct p11p_index *a = open_ok(), *b = open_ok();
	struct p11p_vkey v, va, vb, got;

	key_init(&v, "s", "k", 1);
	put_ok(a, &v);
	ck_assert_uint_eq(p11p_index_refresh(b), CKR_OK);
	get_ok(a, v.vid, &va);
	get_ok(b, v.vid, &vb);
	/* Both read rev 1; a writes first; b's write with rev 1 must be refused. */
	va.perms = P11P_VK_SIGN;
	put_ok(a, &va);
	ck_assert_uint_eq(va.rev, 2);
	vb.perms = P11P_VK_VERIFY;
	ck_assert_uint_eq(p11p_index_put(b, &vb), P11P_INDEX_CONFLICT);
	get_ok(b, v.vid, &got); /* the failed put brought b up to date */
	ck_assert_uint_eq(got.perms, P11P_VK_SIGN);
	ck_assert_uint_eq(got.rev, 2);
	got.perms |= P11P_VK_VERIFY;
	put_ok(b, &got);
	ck_assert_uint_eq(got.rev, 3);
	/* A rev for a vid that does not exist is a conflict too. */
	key_init(&v, "s", "other", 2);
	v.vid = 77;
	v.rev = 5;
	ck_assert_uint_eq(p11p_index_put(a, &v), P11P_INDEX_CONFLICT);
	ck_assert(!has(a, 77));
	p11p_index_close(a);
	p11p_index_close(b);
}
END_TEST

START_TEST(test_bad_arguments)
{
	struct p11p_index *idx = open_ok();
	struct p11p_vkey v, batch[2];

	key_init(&v, "s", "k", 1);
	v.slot[0] = '\0';
	ck_assert_uint_eq(p11p_index_put(idx, &v), CKR_ARGUMENTS_BAD);
	key_init(&v, "s", "k", 1);
	memset(v.slot, 'x', sizeof(v.slot)); /* no NUL */
	ck_assert_uint_eq(p11p_index_put(idx, &v), CKR_ARGUMENTS_BAD);
	key_init(&v, "s", "k", 1);
	v.ck_id_len = P11P_INDEX_ID_MAX + 1;
	ck_assert_uint_eq(p11p_index_put(idx, &v), CKR_ARGUMENTS_BAD);
	key_init(&v, "s", "k", 1);
	v.label_len = P11P_INDEX_LABEL_MAX + 1;
	ck_assert_uint_eq(p11p_index_put(idx, &v), CKR_ARGUMENTS_BAD);
	key_init(&v, "s", "k", 1);
	v.perms = 0x80;
	ck_assert_uint_eq(p11p_index_put(idx, &v), CKR_ARGUMENTS_BAD);
	key_init(&v, "s", "k", 1);
	v.state = (enum p11p_vk_state)4; /* past P11P_VK_DELETED */
	ck_assert_uint_eq(p11p_index_put(idx, &v), CKR_ARGUMENTS_BAD);
	key_init(&v, "s", "k", 1);
	v.origin = (enum p11p_vk_origin)2;
	ck_assert_uint_eq(p11p_index_put(idx, &v), CKR_ARGUMENTS_BAD);
	key_init(&v, "s", "k", 1);
	v.presence = 0x10000;
	ck_assert_uint_eq(p11p_index_put(idx, &v), CKR_ARGUMENTS_BAD);
	/* One bad record refuses the whole batch. */
	key_init(&batch[0], "s", "good", 1);
	key_init(&batch[1], "s", "bad", 2);
	batch[1].perms = ~0u;
	ck_assert_uint_eq(p11p_index_put_batch(idx, batch, 2), CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(count_all(idx), 0);
	ck_assert_uint_eq(p11p_index_put_batch(idx, batch, 0), CKR_OK);
	p11p_index_close(idx);
	idx = open_ok();
	ck_assert_uint_eq(count_all(idx), 0);
	p11p_index_close(idx);
}
END_TEST

/* ---- lookups -------------------------------------------------------------------------------- */

START_TEST(test_find_and_list)
{
	struct p11p_index *idx = open_ok();
	struct p11p_vkey pub, priv, other, empty, out[4];
	struct p11p_vkey_match m = {.slot = "s1"};
	uint64_t *ids;
	size_t n;

	/* A key pair shares CKA_ID and CKA_LABEL; they differ by class. */
	key_init(&pub, "s1", "pair", 1);
	pub.cls = CKO_PUBLIC_KEY;
	priv = pub;
	priv.cls = CKO_PRIVATE_KEY;
	key_init(&other, "s2", "pair", 1); /* same id and label, other slot */
	key_init(&empty, "s1", "", 9);
	empty.ck_id_len = 0;
	put_ok(idx, &pub);
	put_ok(idx, &priv);
	put_ok(idx, &other);
	put_ok(idx, &empty);

	m.has_label = true;
	m.label = (const unsigned char *)"pair";
	m.label_len = 4;
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 1, &n), CKR_OK);
	ck_assert_uint_eq(n, 2); /* more than max: the count says so */
	ck_assert_uint_eq(p11p_index_find(idx, &m, NULL, 0, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	m.has_class = true;
	m.cls = CKO_PRIVATE_KEY;
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(out[0].vid, priv.vid);
	/* The failover key: slot, class, CKA_ID, CKA_LABEL. */
	m.has_ck_id = true;
	m.ck_id = priv.ck_id;
	m.ck_id_len = priv.ck_id_len;
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	assert_same(&out[0], &priv);
	/* By CKA_ID alone. */
	m.has_label = false;
	m.has_class = false;
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	m.slot = "s2";
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(out[0].vid, other.vid);
	/* Empty label and empty CKA_ID are values too. */
	m.slot = "s1";
	m.has_ck_id = false;
	m.has_label = true;
	m.label = NULL;
	m.label_len = 0;
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(out[0].vid, empty.vid);
	/* Slot scan; unknown and over-long slots match nothing. */
	m.has_label = false;
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 3);
	m.slot = "nope";
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	m.slot = "0123456789012345678901234567890123456789012345678901234567890123456789";
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);

	ck_assert_uint_eq(p11p_index_list(idx, "s1", &ids, &n), CKR_OK);
	ck_assert_uint_eq(n, 3);
	ck_assert(ids[0] < ids[1] && ids[1] < ids[2]);
	p11p_free(ids);
	ck_assert_uint_eq(p11p_index_list(idx, NULL, &ids, &n), CKR_OK);
	ck_assert_uint_eq(n, 4);
	p11p_free(ids);
	ck_assert_uint_eq(p11p_index_list(idx, "none", &ids, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(ids);

	/* A changed label moves the record between chains. */
	priv.label_len = 3;
	memcpy(priv.label, "new", 3);
	priv.rev = 0;
	put_ok(idx, &priv);
	m.slot = "s1";
	m.has_label = true;
	m.label = (const unsigned char *)"pair";
	m.label_len = 4;
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(out[0].vid, pub.vid);
	m.label = (const unsigned char *)"new";
	m.label_len = 3;
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(out[0].vid, priv.vid);
	p11p_index_close(idx);
}
END_TEST

START_TEST(test_delete)
{
	struct p11p_index *idx = open_ok();
	struct p11p_vkey a, b, out[2];
	struct p11p_vkey_match m = {
	    .slot = "s", .has_label = true, .label = (const unsigned char *)"same", .label_len = 4};
	bool deleted;
	size_t n;

	key_init(&a, "s", "same", 1);
	key_init(&b, "s", "same", 2);
	put_ok(idx, &a);
	put_ok(idx, &b);
	ck_assert_uint_eq(p11p_index_delete(idx, a.vid, &deleted), CKR_OK);
	ck_assert(deleted);
	ck_assert_uint_eq(p11p_index_delete(idx, a.vid, &deleted), CKR_OK);
	ck_assert(!deleted);
	ck_assert_uint_eq(p11p_index_delete(idx, 0, NULL), CKR_OK);
	ck_assert(!has(idx, a.vid));
	ck_assert_uint_eq(p11p_index_find(idx, &m, out, 2, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(out[0].vid, b.vid);
	p11p_index_close(idx);
	idx = open_ok();
	ck_assert(!has(idx, a.vid));
	ck_assert(has(idx, b.vid));
	ck_assert_uint_eq(count_all(idx), 1);
	p11p_index_close(idx);
}
END_TEST

/* ---- sharing -------------------------------------------------------------------------------- */

START_TEST(test_two_handles)
{
	struct p11p_index *a = open_ok(), *b = open_ok();
	struct p11p_vkey v, got;
	struct p11p_index_stats st;

	key_init(&v, "s", "from a", 1);
	put_ok(a, &v);
	ck_assert(!has(b, v.vid)); /* lookups never touch the file */
	ck_assert_uint_eq(p11p_index_refresh(b), CKR_OK);
	get_ok(b, v.vid, &got);
	assert_same(&got, &v);

	key_init(&v, "s", "from b", 2);
	put_ok(b, &v);
	ck_assert_uint_eq(p11p_index_refresh(a), CKR_OK);
	ck_assert(has(a, v.vid));
	ck_assert_uint_eq(p11p_index_refresh(a), CKR_OK); /* nothing new */
	ck_assert_uint_eq(count_all(a), 2);

	/* b deletes, a sees it; a compacts (new file), b follows the rename. */
	ck_assert_uint_eq(p11p_index_delete(b, got.vid, NULL), CKR_OK);
	ck_assert_uint_eq(p11p_index_compact(a), CKR_OK);
	ck_assert(!has(a, got.vid));
	key_init(&v, "s", "after compaction", 3);
	put_ok(a, &v);
	ck_assert_uint_eq(p11p_index_refresh(b), CKR_OK);
	ck_assert(has(b, v.vid));
	ck_assert(!has(b, got.vid));
	ck_assert_uint_eq(count_all(b), 2);
	/* b writes on the compacted file without losing a's change. */
	key_init(&v, "s", "b again", 4);
	put_ok(b, &v);
	ck_assert_uint_eq(p11p_index_refresh(a), CKR_OK);
	ck_assert_uint_eq(count_all(a), 3);
	ck_assert_uint_eq(p11p_index_stats(a, &st), CKR_OK);
	ck_assert_uint_eq(st.compactions, 1);
	p11p_index_close(a);
	p11p_index_close(b);
}
END_TEST

/* A writer that has not refreshed still applies others' commits before its own. */
START_TEST(test_writer_catches_up)
{
	struct p11p_index *a = open_ok(), *b = open_ok();
	struct p11p_vkey va, vb;

	for (int i = 0; i < 20; i++) {
		key_init(&va, "s", "a", i);
		key_init(&vb, "s", "b", i);
		put_ok(a, &va);
		put_ok(b, &vb);
	}
	ck_assert_uint_eq(count_all(a), 39); /* all but b's last */
	ck_assert_uint_eq(count_all(b), 40);
	p11p_index_close(a);
	p11p_index_close(b);
	a = open_ok();
	ck_assert_uint_eq(count_all(a), 40);
	p11p_index_close(a);
}
END_TEST

START_TEST(test_auto_compaction)
{
	struct p11p_index *idx = open_ok(), *b;
	struct p11p_index_stats st;
	struct p11p_vkey v;
	uint64_t vids[50];
	struct stat sb;

	/* Rewriting 50 keys until the journal passes P11P_INDEX_COMPACT_MIN. */
	for (int i = 0; i < 50; i++) {
		key_init(&v, "s", "compact me", i);
		put_ok(idx, &v);
		vids[i] = v.vid;
	}
	for (int round = 0; round < 200; round++) {
		struct p11p_vkey batch[50];

		for (int i = 0; i < 50; i++) {
			key_init(&batch[i], "s", "compact me", i);
			batch[i].vid = vids[i];
			batch[i].presence = (uint32_t)round;
		}
		ck_assert_uint_eq(p11p_index_put_batch(idx, batch, 50), CKR_OK);
	}
	ck_assert_uint_eq(p11p_index_stats(idx, &st), CKR_OK);
	ck_assert_uint_ge(st.compactions, 1);
	ck_assert_uint_eq(st.records, 50);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_lt(sb.st_size, 2 * P11P_INDEX_COMPACT_MIN);
	p11p_index_close(idx);
	b = open_ok();
	for (int i = 0; i < 50; i++) {
		struct p11p_vkey got;

		get_ok(b, vids[i], &got);
		ck_assert_uint_eq(got.presence, 199);
		ck_assert_uint_eq(got.rev, 201);
	}
	p11p_index_close(b);
}
END_TEST

/* ---- damaged files -------------------------------------------------------------------------- */

#define TEXT_CAP 65536

/* A good file: header, txn 1 (two records), txn 2 (one record); returns the text. */
static char *good_text(size_t *txn2_at)
{
	char *t = calloc(1, TEXT_CAP);
	size_t from;

	ck_assert_ptr_nonnull(t);
	strcpy(t, "p11proxy-index\t1\n");
	from = strlen(t);
	add_line(t, TEXT_CAP, REC_FMT, 1ULL);
	add_line(t, TEXT_CAP, REC_FMT, 2ULL);
	add_commit(t, TEXT_CAP, from, 1, 2);
	if (txn2_at != NULL)
		*txn2_at = strlen(t);
	from = strlen(t);
	add_line(t, TEXT_CAP, REC_FMT, 3ULL);
	add_commit(t, TEXT_CAP, from, 2, 1);
	return t;
}

START_TEST(test_hand_written_file)
{
	char *t = good_text(NULL);
	struct p11p_index *idx;
	struct p11p_vkey got;

	write_file(t, strlen(t));
	idx = open_ok();
	ck_assert_uint_eq(count_all(idx), 3);
	get_ok(idx, 3, &got);
	ck_assert_str_eq(got.slot, "v-slot");
	ck_assert_uint_eq(got.label_len, 7);
	ck_assert_mem_eq(got.label, "key one", 7);
	ck_assert_uint_eq(got.perms, P11P_VK_ALL);
	ck_assert_uint_eq(got.cls, 3);
	ck_assert_uint_eq(got.key_type, 0x1f);
	ck_assert_uint_eq(got.presence, 3);
	ck_assert_int_eq(got.created, 100);
	p11p_index_close(idx);
	free(t);
}
END_TEST

START_TEST(test_damage_bad_magic)
{
	write_file("p11proxy-indx\t1\n", 16);
	open_fails(":1: byte 0", "bad magic");
	write_file("p11proxy-index\t2\n", 17);
	open_fails(":1: byte 0", "unsupported index version '2'");
	write_file("", 0);
	open_fails("empty file", NULL);
	write_file("\x7f"
	           "ELF\x02\x01\x01\0\0\0",
	           10);
	open_fails("bad magic", NULL);
	write_file("p11proxy-index\t1", 16); /* no newline */
	open_fails("bad magic", NULL);
}
END_TEST

START_TEST(test_damage_bad_checksum_mid_file)
{
	size_t at;
	char *t = good_text(&at);
	char *p = strstr(t, "key%20one"); /* in line 2, the first record */

	p[0] = 'K';
	write_file(t, strlen(t));
	/* line 2 is damaged and transaction 2 (line 6) is committed after it */
	open_fails(":2: byte 17: bad checksum", "committed transaction follows at line 6");
	free(t);
}
END_TEST

START_TEST(test_damage_truncated_line_mid_file)
{
	size_t at;
	char *t = good_text(&at);
	char *nl = strchr(t + 17, '\n');

	/* Cut line 2 short (drop its end and newline): it runs into line 3. */
	memmove(nl - 20, nl + 1, strlen(nl + 1) + 1);
	write_file(t, strlen(t));
	open_fails(":2: byte 17: bad checksum", "damaged file");
	free(t);
}
END_TEST

START_TEST(test_damage_valid_checksum_bad_fields)
{
	static const struct {
		const char *line, *msg;
	} cases[] = {
	    {"K\t0000000000000001\t1\ts\t3", "malformed record (field count)"},
	    {"K\t0000000000000000\t1\ts\t3\t1f\t\t\t-------\tactive\tcreated\t0\t0\t0\t"
	     "0000000000000000\t0000000000000000",
	     "malformed record (vid)"},
	    {"K\t0000000000000001\t0\ts\t3\t1f\t\t\t-------\tactive\tcreated\t0\t0\t0\t"
	     "0000000000000000\t0000000000000000",
	     "malformed record (rev)"},
	    {"K\t0000000000000001\t1\t\t3\t1f\t\t\t-------\tactive\tcreated\t0\t0\t0\t"
	     "0000000000000000\t0000000000000000",
	     "malformed record (slot)"},
	    {"K\t0000000000000001\t1\ta%00b\t3\t1f\t\t\t-------\tactive\tcreated\t0\t0\t0\t"
	     "0000000000000000\t0000000000000000",
	     "malformed record (slot)"},
	    {"K\t0000000000000001\t1\ts\t3\t1f\t0\t\t-------\tactive\tcreated\t0\t0\t0\t"
	     "0000000000000000\t0000000000000000",
	     "malformed record (CKA_ID)"},
	    {"K\t0000000000000001\t1\ts\t3\t1f\t\t%4\t-------\tactive\tcreated\t0\t0\t0\t"
	     "0000000000000000\t0000000000000000",
	     "malformed record (CKA_LABEL)"},
	    {"K\t0000000000000001\t1\ts\t3\t1f\t\t\tx------\tactive\tcreated\t0\t0\t0\t"
	     "0000000000000000\t0000000000000000",
	     "malformed record (permissions)"},
	    {"K\t0000000000000001\t1\ts\t3\t1f\t\t\t-------\tACTIVE\tcreated\t0\t0\t0\t"
	     "0000000000000000\t0000000000000000",
	     "malformed record (state)"},
	    {"K\t0000000000000001\t1\ts\t3\t1f\t\t\t-------\tactive\timported\t0\t0\t0\t"
	     "0000000000000000\t0000000000000000",
	     "malformed record (origin)"},
	    {"K\t0000000000000001\t1\ts\t3\t1f\t\t\t-------\tactive\tcreated\t10000\t0\t0\t"
	     "0000000000000000\t0000000000000000",
	     "malformed record (presence)"},
	    {"K\t0000000000000001\t1\ts\t3\t1f\t\t\t-------"
	     "\tactive\tcreated\t0\t99999999999999999999"
	     "\t0\t0000000000000000\t0000000000000000",
	     "malformed record (created)"},
	    {"K\t0000000000000001\t1\ts\t3\t10000000000000000\t\t\t-------"
	     "\tactive\tcreated\t0\t0\t0"
	     "\t0000000000000000\t0000000000000000",
	     "malformed record (key type)"},
	    {"K\t0000000000000001\t1\ts\t3\t1f\t\t\t-------\tactive\tcreated\t0\t0\t0\t"
	     "000000000000000\t0000000000000000",
	     "malformed record (previous id)"},
	    {"D\t00000000000000001", "bad delete line"},
	    {"X\tsomething", "unknown line type"},
	    {"C\tx\t0\t00000000", "bad commit line"},
	    {"Cx", "malformed line"},
	};
	char *t = malloc(TEXT_CAP);

	ck_assert_ptr_nonnull(t);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		strcpy(t, "p11proxy-index\t1\n");
		add_line(t, TEXT_CAP, "%s", cases[i].line);
		write_file(t, strlen(t));
		open_fails(":2: byte 17: ", cases[i].msg);
	}
	free(t);
}
END_TEST

START_TEST(test_damage_oversize_fields)
{
	char *t = malloc(TEXT_CAP), *label = malloc(1000), *slot = malloc(200);

	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_nonnull(label);
	ck_assert_ptr_nonnull(slot);
	memset(label, 'L', P11P_INDEX_LABEL_MAX + 1);
	label[P11P_INDEX_LABEL_MAX + 1] = '\0';
	strcpy(t, "p11proxy-index\t1\n");
	add_line(t, TEXT_CAP,
	         "K\t0000000000000001\t1\ts\t3\t1f\t\t%s\t-------\tactive\tcreated\t0\t0\t0\t"
	         "0000000000000000\t0000000000000000",
	         label);
	write_file(t, strlen(t));
	open_fails(":2: byte 17: malformed record (CKA_LABEL)", NULL);

	memset(slot, 'S', P11P_INDEX_SLOT_MAX + 1);
	slot[P11P_INDEX_SLOT_MAX + 1] = '\0';
	strcpy(t, "p11proxy-index\t1\n");
	add_line(t, TEXT_CAP,
	         "K\t0000000000000001\t1\t%s\t3\t1f\t\t\t-------\tactive\tcreated\t0\t0\t0\t"
	         "0000000000000000\t0000000000000000",
	         slot);
	write_file(t, strlen(t));
	open_fails("malformed record (slot)", NULL);

	/* A line over P11P_INDEX_LINE_MAX, then a committed transaction. */
	strcpy(t, "p11proxy-index\t1\n");
	for (int i = 0; i < 5000; i++)
		strcat(t, "x");
	strcat(t, "\n");
	add_line(t, TEXT_CAP, "C\t5\t0\t00000000");
	write_file(t, strlen(t));
	open_fails(":2: byte 17: line too long", "damaged");
	free(t);
	free(label);
	free(slot);
}
END_TEST

START_TEST(test_damage_garbage)
{
	char buf[4096];
	uint64_t x = 88172645463325252ULL;

	for (int round = 0; round < 50; round++) {
		size_t n = (size_t)(round * 37 % 4000) + 1;
		struct p11p_index *idx = NULL;
		char err[512];
		CK_RV rv;

		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (char)x;
		}
		write_file(buf, n);
		rv = p11p_index_open(path, &idx, err, sizeof(err));
		ck_assert_uint_eq(rv, CKR_FUNCTION_FAILED);
		ck_assert_ptr_null(idx);
		ck_assert_ptr_nonnull(strstr(err, path));
	}
	/* A good header, then garbage: a torn tail, as no commit follows. */
	strcpy(buf, "p11proxy-index\t1\n\x01\x02garbage\tmore\n\xff\xfe");
	write_file(buf, strlen(buf));
	p11p_index_close(open_ok());
}
END_TEST

START_TEST(test_damage_sequence)
{
	char *t = calloc(1, TEXT_CAP);
	size_t from;

	ck_assert_ptr_nonnull(t);
	strcpy(t, "p11proxy-index\t1\n");
	from = strlen(t);
	add_line(t, TEXT_CAP, REC_FMT, 1ULL);
	add_commit(t, TEXT_CAP, from, 1, 1);
	from = strlen(t);
	add_line(t, TEXT_CAP, REC_FMT, 2ULL);
	add_commit(t, TEXT_CAP, from, 3, 1); /* 2 is missing */
	write_file(t, strlen(t));
	open_fails(":5: byte", "transaction 3 out of sequence (after 1)");

	/* A snapshot commit is only valid first. */
	strcpy(t, "p11proxy-index\t1\n");
	from = strlen(t);
	add_line(t, TEXT_CAP, REC_FMT, 1ULL);
	add_commit(t, TEXT_CAP, from, 1, 1);
	from = strlen(t);
	add_line(t, TEXT_CAP, "S\t2\t0\t00000000");
	write_file(t, strlen(t));
	open_fails(":4: byte", "out of sequence");

	/* A snapshot missing a record (each line intact) is damage, not a torn tail. */
	strcpy(t, "p11proxy-index\t1\n");
	from = strlen(t);
	add_line(t, TEXT_CAP, REC_FMT, 1ULL);
	add_line(t, TEXT_CAP, "S\t4\t2\t%08x", crc32_ref(t + from, strlen(t) - from));
	write_file(t, strlen(t));
	open_fails(":3: byte", "snapshot does not match");
	free(t);
}
END_TEST

/* ---- torn tails ----------------------------------------------------------------------------- */

static void check_torn(const char *tail, size_t tail_len)
{
	char *t = good_text(NULL);
	size_t good_len = strlen(t), len;
	struct p11p_index *idx;
	struct p11p_vkey v;
	char *after;

	write_file(t, good_len);
	append_file(tail, tail_len);
	idx = open_ok();
	ck_assert_uint_eq(count_all(idx), 3);
	ck_assert(has(idx, 1) && has(idx, 2) && has(idx, 3));
	/* A write cuts the tail off, then appends. */
	key_init(&v, "s", "after the tail", 1);
	put_ok(idx, &v);
	p11p_index_close(idx);
	after = read_all(&len);
	ck_assert_mem_eq(after, t, good_len);
	ck_assert_int_eq(after[good_len], 'K');
	free(after);
	idx = open_ok();
	ck_assert_uint_eq(count_all(idx), 4);
	ck_assert(has(idx, v.vid));
	p11p_index_close(idx);
	free(t);
}

START_TEST(test_torn_tail_partial_line)
{
	char *t = calloc(1, TEXT_CAP);

	add_line(t, TEXT_CAP, REC_FMT, 9ULL);
	/* Every cut of the next transaction's first line, including a bare "K". */
	for (size_t cut = 1; cut < strlen(t); cut += 7)
		check_torn(t, cut);
	free(t);
}
END_TEST

START_TEST(test_torn_tail_records_without_commit)
{
	char *t = calloc(1, TEXT_CAP);

	add_line(t, TEXT_CAP, REC_FMT, 9ULL);
	add_line(t, TEXT_CAP, REC_FMT, 10ULL);
	check_torn(t, strlen(t));
	/* ... and with its commit line cut short */
	add_line(t, TEXT_CAP, "C\t3\t2\t00000000");
	check_torn(t, strlen(t) - 3);
	free(t);
}
END_TEST

START_TEST(test_torn_tail_bad_commit_body)
{
	/* Power loss: the commit reached the disk, a record before it did not. */
	char *t = calloc(1, TEXT_CAP);

	strcpy(t, "K\t\0\0\0\0\0\n");
	memset(t + 2, 0, 6);
	t[8] = '\n';
	add_line(t + 9, TEXT_CAP - 9, "C\t3\t1\t12345678");
	check_torn(t, 9 + strlen(t + 9));
	/* zeros only */
	memset(t, 0, 512);
	check_torn(t, 512);
	free(t);
}
END_TEST

/* A torn tail cut by one writer and replaced by a transaction of the same size. */
START_TEST(test_tail_replaced_same_size)
{
	struct p11p_index *h1 = open_ok(), *h2, *h3;
	struct p11p_vkey v;
	struct stat sb;
	off_t s1, s2;
	char junk[4096];

	key_init(&v, "s", "same shape", 1);
	v.vid = 0x1000;
	v.created = 1;
	put_ok(h1, &v);
	ck_assert_int_eq(stat(path, &sb), 0);
	s1 = sb.st_size;
	v.vid = 0x2000;
	v.rev = 0;
	put_ok(h1, &v);
	ck_assert_int_eq(stat(path, &sb), 0);
	s2 = sb.st_size;
	p11p_index_close(h1);
	/* Replace the second transaction with as many bytes of junk (no newline). */
	ck_assert_int_eq(truncate(path, s1), 0);
	ck_assert_uint_lt((size_t)(s2 - s1), sizeof(junk));
	memset(junk, 'j', sizeof(junk));
	append_file(junk, (size_t)(s2 - s1));

	h2 = open_ok();
	h3 = open_ok();
	ck_assert_uint_eq(count_all(h2), 1);
	v.vid = 0x3000;
	v.rev = 0;
	put_ok(h3, &v); /* cuts the tail, appends s2 - s1 bytes */
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_size, s2);
	ck_assert_uint_eq(p11p_index_refresh(h2), CKR_OK);
	ck_assert(has(h2, 0x3000));
	v.vid = 0x4000;
	v.rev = 0;
	put_ok(h2, &v); /* must not cut h3's transaction as a "tail" */
	p11p_index_close(h2);
	p11p_index_close(h3);
	h1 = open_ok();
	ck_assert(has(h1, 0x1000) && has(h1, 0x3000) && has(h1, 0x4000));
	ck_assert_uint_eq(count_all(h1), 3);
	p11p_index_close(h1);
}
END_TEST

/* The file cut short behind a handle's back: the handle reloads what is left. */
START_TEST(test_file_shrunk)
{
	struct p11p_index *idx = open_ok();
	struct p11p_vkey v;
	struct stat sb;

	key_init(&v, "s", "first", 1);
	put_ok(idx, &v);
	ck_assert_int_eq(stat(path, &sb), 0);
	key_init(&v, "s", "second", 2);
	put_ok(idx, &v);
	ck_assert_uint_eq(count_all(idx), 2);
	ck_assert_int_eq(truncate(path, sb.st_size), 0);
	ck_assert_uint_eq(p11p_index_refresh(idx), CKR_OK);
	ck_assert_uint_eq(count_all(idx), 1);
	ck_assert(!has(idx, v.vid));
	key_init(&v, "s", "third", 3);
	put_ok(idx, &v);
	p11p_index_close(idx);
	idx = open_ok();
	ck_assert_uint_eq(count_all(idx), 2);
	p11p_index_close(idx);
}
END_TEST

struct thread_arg {
	struct p11p_index *idx;
	int n;
	CK_RV rv;
};

static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	char label[32];

	for (int i = 0; i < 50 && a->rv == CKR_OK; i++) {
		struct p11p_vkey v, out[2];
		struct p11p_vkey_match m = {.slot = "t", .has_label = true};
		size_t n;

		snprintf(label, sizeof(label), "t%d-%d", a->n, i);
		key_init(&v, "t", label, i);
		a->rv = p11p_index_put(a->idx, &v);
		m.label = v.label;
		m.label_len = v.label_len;
		if (a->rv == CKR_OK)
			a->rv = p11p_index_find(a->idx, &m, out, 2, &n);
		if (a->rv == CKR_OK && n != 1)
			a->rv = CKR_GENERAL_ERROR;
		if (a->rv == CKR_OK && i % 10 == 0)
			a->rv = p11p_index_refresh(a->idx);
	}
	return NULL;
}

/* Threads on one handle and on two handles at once. */
START_TEST(test_threads)
{
	struct p11p_index *a = open_ok(), *b = open_ok();
	struct thread_arg args[4];
	pthread_t th[4];

	for (int i = 0; i < 4; i++) {
		args[i].idx = i < 3 ? a : b;
		args[i].n = i;
		args[i].rv = CKR_OK;
		ck_assert_int_eq(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
		ck_assert_uint_eq(args[i].rv, CKR_OK);
	}
	ck_assert_uint_eq(p11p_index_refresh(a), CKR_OK);
	ck_assert_uint_eq(p11p_index_refresh(b), CKR_OK);
	ck_assert_uint_eq(count_all(a), 200);
	ck_assert_uint_eq(count_all(b), 200);
	p11p_index_close(a);
	p11p_index_close(b);
}
END_TEST

/* ---- files ---------------------------------------------------------------------------------- */

START_TEST(test_unsafe_files)
{
	struct p11p_index *idx = open_ok();
	char link_path[400], err[512];

	p11p_index_close(idx);
	ck_assert_int_eq(chmod(path, 0620), 0);
	open_fails("unsafe index file", NULL);
	ck_assert_int_eq(chmod(path, 0602), 0);
	open_fails("unsafe index file", NULL);
	ck_assert_int_eq(chmod(path, 0640), 0); /* readable by group is fine */
	p11p_index_close(open_ok());
	ck_assert_int_eq(chmod(path, 0600), 0);

	snprintf(link_path, sizeof(link_path), "%s/link", dir);
	ck_assert_int_eq(symlink(path, link_path), 0);
	ck_assert_uint_eq(p11p_index_open(link_path, &idx, err, sizeof(err)), CKR_FUNCTION_FAILED);
	ck_assert_ptr_nonnull(strstr(err, "symbolic link"));

	ck_assert_int_eq(chmod(dir, 0777), 0);
	open_fails("unsafe directory", NULL);
	ck_assert_int_eq(chmod(dir, 0700), 0);

	unlink(path);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	open_fails("directory", NULL);
	rmdir(path);

	ck_assert_uint_eq(p11p_index_open("", &idx, err, sizeof(err)), CKR_ARGUMENTS_BAD);
	snprintf(link_path, sizeof(link_path), "%s/no/such/dir/index", dir);
	ck_assert_uint_eq(p11p_index_open(link_path, &idx, err, sizeof(err)), CKR_FUNCTION_FAILED);
	ck_assert_ptr_nonnull(strstr(err, "/no/such/dir"));
	/* Errors fit any buffer. */
	ck_assert_uint_eq(p11p_index_open(link_path, &idx, err, 4), CKR_FUNCTION_FAILED);
	ck_assert_uint_eq(strlen(err), 3);
	ck_assert_uint_eq(p11p_index_open(link_path, &idx, NULL, 0), CKR_FUNCTION_FAILED);
}
END_TEST

START_TEST(test_refresh_error_keeps_state)
{
	struct p11p_index *idx = open_ok();
	struct p11p_vkey v;
	char err[512];
	char *t;
	size_t len;

	key_init(&v, "s", "k", 1);
	put_ok(idx, &v);
	/* Someone replaces the file with a damaged one. */
	t = read_all(&len);
	t[0] = 'X';
	unlink(path);
	write_file(t, len);
	free(t);
	ck_assert_uint_eq(p11p_index_refresh(idx), CKR_FUNCTION_FAILED);
	p11p_index_last_error(idx, err, sizeof(err));
	ck_assert_ptr_nonnull(strstr(err, "bad magic"));
	ck_assert(has(idx, v.vid)); /* the last good state stays */
	ck_assert_uint_eq(p11p_index_put(idx, &v), CKR_FUNCTION_FAILED);
	p11p_index_close(idx);
}
END_TEST

START_TEST(test_fork_child_refused)
{
	struct p11p_index *idx = open_ok();
	struct p11p_vkey v;
	int status;
	pid_t pid;

	key_init(&v, "s", "k", 1);
	put_ok(idx, &v);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct p11p_index *mine = NULL;
		struct p11p_vkey w;
		char err[512];
		bool found;
		int rc = 0;

		if (p11p_index_get(idx, v.vid, &w, &found) != CKR_CRYPTOKI_NOT_INITIALIZED ||
		    p11p_index_put(idx, &v) != CKR_CRYPTOKI_NOT_INITIALIZED ||
		    p11p_index_refresh(idx) != CKR_CRYPTOKI_NOT_INITIALIZED)
			rc = 1;
		p11p_index_close(idx);
		if (rc == 0 && (p11p_index_open(path, &mine, err, sizeof(err)) != CKR_OK ||
		                p11p_index_get(mine, v.vid, &w, &found) != CKR_OK || !found))
			rc = 2;
		key_init(&w, "s", "from the child", 2);
		if (rc == 0 && p11p_index_put(mine, &w) != CKR_OK)
			rc = 3;
		p11p_index_close(mine);
		_exit(rc);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_uint_eq(p11p_index_refresh(idx), CKR_OK);
	ck_assert_uint_eq(count_all(idx), 2);
	p11p_index_close(idx);
}
END_TEST

/* ---- allocation failure --------------------------------------------------------------------- */

static void fill_some(void)
{
	struct p11p_index *idx = open_ok();
	struct p11p_vkey batch[30];

	for (int i = 0; i < 30; i++)
		key_init(&batch[i], i % 2 ? "s1" : "s2", i % 3 ? "label" : "other", i);
	ck_assert_uint_eq(p11p_index_put_batch(idx, batch, 30), CKR_OK);
	for (int i = 0; i < 30; i += 3)
		ck_assert_uint_eq(p11p_index_delete(idx, batch[i].vid, NULL), CKR_OK);
	p11p_index_close(idx);
}

START_TEST(test_alloc_failure_open)
{
	fill_some();
	for (long n = 0;; n++) {
		struct p11p_index *idx = NULL;
		char err[512];
		CK_RV rv;

		p11p_mem_fail_after(n);
		rv = p11p_index_open(path, &idx, err, sizeof(err));
		p11p_mem_fail_reset();
		if (rv == CKR_OK) {
			ck_assert_uint_eq(count_all(idx), 20);
			p11p_index_close(idx);
			ck_assert_uint_gt(n, 3);
			break;
		}
		ck_assert_msg(rv == CKR_HOST_MEMORY, "n=%ld rv=0x%lx %s", n, rv, err);
		ck_assert_ptr_null(idx);
		ck_assert_msg(strstr(err, "out of memory") != NULL, "n=%ld: %s", n, err);
		ck_assert_int_lt(n, 1000);
	}
}
END_TEST

START_TEST(test_alloc_failure_put)
{
	fill_some();
	for (int kind = 0; kind < 3; kind++) {
		for (long n = 0;; n++) {
			struct p11p_index *idx = open_ok(), *check;
			struct p11p_vkey batch[3];
			uint64_t del = 0;
			uint64_t *ids;
			size_t nids;
			bool deleted;
			CK_RV rv;

			ck_assert_uint_eq(p11p_index_list(idx, NULL, &ids, &nids), CKR_OK);
			ck_assert_uint_gt(nids, 0);
			del = ids[0];
			p11p_free(ids);
			for (int i = 0; i < 3; i++)
				key_init(&batch[i], "oom", "oom", (int)n * 3 + i);
			p11p_mem_fail_after(n);
			rv = kind == 0   ? p11p_index_put(idx, batch)
			     : kind == 1 ? p11p_index_put_batch(idx, batch, 3)
			                 : p11p_index_delete(idx, del, &deleted);
			p11p_mem_fail_reset();
			ck_assert_msg(rv == CKR_OK || rv == CKR_HOST_MEMORY, "rv 0x%lx", rv);
			/* What the handle and the file hold agree, and hold all or nothing. */
			check = open_ok();
			ck_assert_uint_eq(count_all(check), count_all(idx));
			if (kind < 2) {
				ck_assert(has(check, batch[0].vid) == (rv == CKR_OK));
				ck_assert(rv != CKR_OK || has(idx, batch[0].vid));
			} else {
				ck_assert(has(check, del) == (rv != CKR_OK));
				ck_assert(has(idx, del) == (rv != CKR_OK));
			}
			p11p_index_close(check);
			p11p_index_close(idx);
			if (rv == CKR_OK)
				break;
			ck_assert_int_lt(n, 1000);
		}
	}
}
END_TEST

START_TEST(test_alloc_failure_refresh)
{
	fill_some();
	for (long n = 0;; n++) {
		struct p11p_index *a = open_ok(), *b = open_ok();
		struct p11p_vkey batch[3];
		CK_RV rv;

		for (int i = 0; i < 3; i++)
			key_init(&batch[i], "r", "r", i);
		ck_assert_uint_eq(p11p_index_put_batch(a, batch, 3), CKR_OK);
		ck_assert_uint_eq(p11p_index_put(a, &batch[0]), CKR_OK);
		p11p_mem_fail_after(n);
		rv = p11p_index_refresh(b);
		p11p_mem_fail_reset();
		ck_assert_msg(rv == CKR_OK || rv == CKR_HOST_MEMORY, "rv 0x%lx", rv);
		/* b stays at a transaction boundary, and catches up afterwards. */
		ck_assert(has(b, batch[0].vid) == has(b, batch[2].vid));
		ck_assert_uint_eq(p11p_index_refresh(b), CKR_OK);
		ck_assert_uint_eq(count_all(b), count_all(a));
		ck_assert(has(b, batch[2].vid));
		for (int i = 0; i < 3; i++)
			ck_assert_uint_eq(p11p_index_delete(a, batch[i].vid, NULL), CKR_OK);
		p11p_index_close(a);
		p11p_index_close(b);
		if (rv == CKR_OK)
			break;
		ck_assert_int_lt(n, 1000);
	}
}
END_TEST

static TCase *new_case(Suite *s, const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *index_suite(void)
{
	Suite *s = suite_create("index");
	TCase *tc;

	tc = new_case(s, "records");
	tcase_add_test(tc, test_create_empty);
	tcase_add_test(tc, test_round_trip_every_field);
	tcase_add_test(tc, test_update_keeps_created_and_bumps_rev);
	tcase_add_test(tc, test_rev_conflict);
	tcase_add_test(tc, test_bad_arguments);
	tcase_add_test(tc, test_find_and_list);
	tcase_add_test(tc, test_delete);
	tc = new_case(s, "sharing");
	tcase_add_test(tc, test_two_handles);
	tcase_add_test(tc, test_writer_catches_up);
	tcase_add_test(tc, test_auto_compaction);
	tcase_add_test(tc, test_fork_child_refused);
	tcase_add_test(tc, test_tail_replaced_same_size);
	tcase_add_test(tc, test_file_shrunk);
	tcase_add_test(tc, test_threads);
	tc = new_case(s, "damage");
	tcase_add_test(tc, test_hand_written_file);
	tcase_add_test(tc, test_damage_bad_magic);
	tcase_add_test(tc, test_damage_bad_checksum_mid_file);
	tcase_add_test(tc, test_damage_truncated_line_mid_file);
	tcase_add_test(tc, test_damage_valid_checksum_bad_fields);
	tcase_add_test(tc, test_damage_oversize_fields);
	tcase_add_test(tc, test_damage_garbage);
	tcase_add_test(tc, test_damage_sequence);
	tcase_add_test(tc, test_torn_tail_partial_line);
	tcase_add_test(tc, test_torn_tail_records_without_commit);
	tcase_add_test(tc, test_torn_tail_bad_commit_body);
	tcase_add_test(tc, test_refresh_error_keeps_state);
	tc = new_case(s, "files");
	tcase_add_test(tc, test_unsafe_files);
	tc = new_case(s, "oom");
	tcase_add_test(tc, test_alloc_failure_open);
	tcase_add_test(tc, test_alloc_failure_put);
	tcase_add_test(tc, test_alloc_failure_refresh);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(index_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
