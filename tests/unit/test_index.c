/*
 * The virtual-key store (lib/index, SQLite engine): round trips of every
 * field, lookups, revisions, two handles seeing each other, blobs,
 * replication debt, the audit chain (altered and deleted rows found),
 * damaged rows, a read-only store, unsafe files, fork, and allocation
 * failure at every step of open, put and refresh.
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
#include <sqlite3.h>
#include <unistd.h>

#include "base/mem.h"
#include "index/index.h"
#include "index/schema.h"

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
	snprintf(path, sizeof(path), "%s/keys.db", dir);
}

static void teardown(void)
{
	p11p_mem_fail_reset();
	rm_dir(dir);
}

/* ---- helpers -------------------------------------------------------------------------------- */

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

/* Runs SQL on the store behind the module's back (as an intruder or the sqlite3 CLI would). */
static void sql(const char *stmt)
{
	sqlite3 *db = NULL;
	char *msg = NULL;

	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_msg(sqlite3_exec(db, stmt, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", stmt,
	              msg ? msg : "?");
	sqlite3_close(db);
}

static long long sql_int(const char *stmt)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	long long v = -1;

	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, stmt, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* ---- round trips ---------------------------------------------------------------------------- */

START_TEST(test_create_empty)
{
	struct p11p_index *idx = open_ok();
	struct stat sb;

	ck_assert_uint_eq(count_all(idx), 0);
	p11p_index_close(idx);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0600);
	/* WAL, kept after the last close (for read-only readers). */
	{
		char wal[400];

		snprintf(wal, sizeof(wal), "%s-wal", path);
		ck_assert_int_eq(stat(wal, &sb), 0);
		ck_assert_uint_eq(sb.st_mode & 0777, 0600);
	}
	ck_assert_int_eq(sql_int("SELECT max(version) FROM migrations"), P11P_STORE_SCHEMA_VERSION);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM migrations"), P11P_STORE_SCHEMA_VERSION);
	idx = open_ok();
	ck_assert_uint_eq(count_all(idx), 0);
	p11p_index_close(idx);
	/* A store with a newer schema than this build is refused. */
	sql("INSERT INTO migrations (version, applied) VALUES (99, 0)");
	open_fails("schema version 99", NULL);
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

	/* From the store, by a new handle. */
	idx = open_ok();
	ck_assert_uint_eq(count_all(idx), 4);
	for (int i = 0; i < 4; i++) {
		get_ok(idx, keys[i].vid, &got);
		assert_same(&got, &keys[i]);
	}
	p11p_index_close(idx);
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
	v.state = (enum p11p_vk_state)4;
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

/*
 * A load of more records than the store allocates one by one (its first 256):
 * the rest share chunks, each freed with its last record. Every record is
 * then changed through another handle, some deleted, and refreshed here in
 * steps of a few hundred (so that refreshes make chunks too) until no record
 * of the first load is left; lookups stay right throughout, and the ASan and
 * valgrind runs check the chunks' memory.
 */
START_TEST(test_big_load)
{
	enum { N = 3000, STEP = 500 };
	struct p11p_index *w = open_ok(), *r;
	struct p11p_vkey *keys = calloc(N, sizeof(*keys)), got, out[2];
	struct p11p_vkey_match m = {.has_label = true};
	size_t n, live = N;
	char label[32];

	ck_assert_ptr_nonnull(keys);
	for (int i = 0; i < N; i++) {
		snprintf(label, sizeof(label), "big %d", i);
		key_init(&keys[i], i % 2 ? "s1" : "s2", label, i);
	}
	ck_assert_uint_eq(p11p_index_put_batch(w, keys, N), CKR_OK);
	r = open_ok();
	ck_assert_uint_eq(count_all(r), N);
	for (int i = 0; i < N; i += 7) {
		get_ok(r, keys[i].vid, &got);
		assert_same(&got, &keys[i]);
	}
	for (int i = 0; i < N; i += STEP) {
		for (int k = i; k < i + STEP; k++)
			keys[k].perms ^= P11P_VK_SIGN;
		ck_assert_uint_eq(p11p_index_put_batch(w, keys + i, STEP), CKR_OK);
		/* a few deleted too */
		for (int k = i; k < i + STEP; k += 50) {
			ck_assert_uint_eq(p11p_index_delete(w, keys[k].vid, NULL), CKR_OK);
			keys[k].vid = 0;
			live--;
		}
		ck_assert_uint_eq(p11p_index_refresh(r), CKR_OK);
		ck_assert_uint_eq(count_all(r), live);
	}
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < N; i++) {
			m.slot = keys[i].slot;
			m.label = keys[i].label;
			m.label_len = keys[i].label_len;
			ck_assert_uint_eq(p11p_index_find(r, &m, out, 2, &n), CKR_OK);
			if (keys[i].vid == 0) {
				ck_assert_uint_eq(n, 0);
				continue;
			}
			ck_assert_uint_eq(n, 1);
			assert_same(&out[0], &keys[i]);
		}
		/* the same from a fresh load */
		p11p_index_close(r);
		r = open_ok();
		ck_assert_uint_eq(count_all(r), live);
	}
	p11p_index_close(r);
	p11p_index_close(w);
	free(keys);
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

	/* b deletes, a sees it. */
	ck_assert_uint_eq(p11p_index_delete(b, got.vid, NULL), CKR_OK);
	ck_assert(has(a, got.vid));
	ck_assert_uint_eq(p11p_index_refresh(a), CKR_OK);
	ck_assert(!has(a, got.vid));
	key_init(&v, "s", "after the delete", 3);
	put_ok(a, &v);
	ck_assert_uint_eq(p11p_index_refresh(b), CKR_OK);
	ck_assert(has(b, v.vid));
	ck_assert(!has(b, got.vid));
	ck_assert_uint_eq(count_all(b), 2);
	/* b writes without losing a's change. */
	key_init(&v, "s", "b again", 4);
	put_ok(b, &v);
	ck_assert_uint_eq(p11p_index_refresh(a), CKR_OK);
	ck_assert_uint_eq(count_all(a), 3);
	ck_assert_uint_eq(p11p_index_stats(a, &st), CKR_OK);
	ck_assert(!st.readonly && !st.down);
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
	open_fails("unsafe store file", NULL);
	ck_assert_int_eq(chmod(path, 0602), 0);
	open_fails("unsafe store file", NULL);
	ck_assert_int_eq(chmod(path, 0640), 0); /* readable by group is fine */
	p11p_index_close(open_ok());
	ck_assert_int_eq(chmod(path, 0600), 0);

	snprintf(link_path, sizeof(link_path), "%s/link", dir);
	ck_assert_int_eq(symlink(path, link_path), 0);
	ck_assert_uint_eq(p11p_index_open(link_path, &idx, err, sizeof(err)), CKR_FUNCTION_FAILED);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));

	ck_assert_int_eq(chmod(dir, 0777), 0);
	open_fails("unsafe directory", NULL);
	ck_assert_int_eq(chmod(dir, 0700), 0);

	unlink(path);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	open_fails("not a regular file", NULL);
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
	struct p11p_index *idx = open_ok(), *other = open_ok();
	struct p11p_vkey v, w, got;
	char err[512];

	key_init(&v, "s", "k", 1);
	put_ok(idx, &v);
	key_init(&w, "s", "w", 2);
	put_ok(other, &w);
	/* Someone damages a row behind the store's back. */
	sql("UPDATE vkeys SET perms = 999, seq = seq + 100 WHERE label = x'77'");
	ck_assert_uint_eq(p11p_index_refresh(idx), CKR_FUNCTION_FAILED);
	p11p_index_last_error(idx, err, sizeof(err));
	ck_assert_msg(strstr(err, "damaged row") != NULL && strstr(err, path) != NULL, "%s", err);
	ck_assert(has(idx, v.vid)); /* the last good state stays */
	ck_assert(!has(idx, w.vid));
	ck_assert_uint_eq(p11p_index_put(idx, &v), CKR_FUNCTION_FAILED);
	get_ok(idx, v.vid, &got);
	ck_assert_uint_eq(got.rev, 1);
	/* Repaired: the next refresh catches up. */
	sql("UPDATE vkeys SET perms = 3 WHERE label = x'77'");
	ck_assert_uint_eq(p11p_index_refresh(idx), CKR_OK);
	ck_assert(has(idx, w.vid));
	p11p_index_close(idx);
	p11p_index_close(other);
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

		pid_t gpid;
		int gstatus;

		/* The lookup of the operation path (no getpid: the fork generation) too. */
		if (p11p_index_get(idx, v.vid, &w, &found) != CKR_CRYPTOKI_NOT_INITIALIZED ||
		    p11p_index_get_brief(idx, v.vid, &w, &found, NULL) !=
		        CKR_CRYPTOKI_NOT_INITIALIZED ||
		    p11p_index_put(idx, &v) != CKR_CRYPTOKI_NOT_INITIALIZED ||
		    p11p_index_refresh(idx) != CKR_CRYPTOKI_NOT_INITIALIZED)
			rc = 1;
		p11p_index_close(idx);
		if (rc == 0 &&
		    (p11p_index_open(path, &mine, err, sizeof(err)) != CKR_OK ||
		     p11p_index_get(mine, v.vid, &w, &found) != CKR_OK || !found ||
		     p11p_index_get_brief(mine, v.vid, &w, &found, NULL) != CKR_OK || !found))
			rc = 2;
		key_init(&w, "s", "from the child", 2);
		if (rc == 0 && p11p_index_put(mine, &w) != CKR_OK)
			rc = 3;
		/* A grandchild: the child's own handle is refused there in turn. */
		gpid = rc == 0 ? fork() : -1;
		if (gpid == 0)
			_exit(p11p_index_get_brief(mine, v.vid, &w, &found, NULL) ==
			              CKR_CRYPTOKI_NOT_INITIALIZED
			          ? 0
			          : 1);
		if (rc == 0 && (gpid < 0 || waitpid(gpid, &gstatus, 0) != gpid ||
		                !WIFEXITED(gstatus) || WEXITSTATUS(gstatus) != 0))
			rc = 4;
		if (rc == 0 && p11p_index_get_brief(mine, v.vid, &w, &found, NULL) != CKR_OK)
			rc = 5;
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

/* ---- blobs ---------------------------------------------------------------------------------- */

START_TEST(test_blobs)
{
	struct p11p_index *a = open_ok(), *b = open_ok();
	unsigned char blob[300], buf[400];
	struct p11p_index_blob nb[2];
	struct p11p_vkey v, w;
	size_t len = 0;
	bool found = true;

	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (unsigned char)(i * 7);
	key_init(&v, "s", "soft", 1);
	ck_assert_uint_eq(p11p_index_put_blob(a, &v, blob, sizeof(blob)), CKR_OK);
	ck_assert_uint_ne(v.vid, 0);
	ck_assert_uint_eq(p11p_index_get_blob(a, v.vid, buf, sizeof(buf), &len, &found), CKR_OK);
	ck_assert(found);
	ck_assert_uint_eq(len, sizeof(blob));
	ck_assert_mem_eq(buf, blob, len);
	ck_assert_uint_eq(p11p_index_get_blob(a, v.vid, buf, 10, &len, &found),
	                  CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, sizeof(blob));
	/* Another handle: after a refresh. */
	ck_assert_uint_eq(p11p_index_get_blob(b, v.vid, buf, sizeof(buf), &len, &found), CKR_OK);
	ck_assert(!found);
	ck_assert_uint_eq(p11p_index_refresh(b), CKR_OK);
	ck_assert_uint_eq(p11p_index_get_blob(b, v.vid, buf, sizeof(buf), &len, &found), CKR_OK);
	ck_assert(found && len == sizeof(blob));
	ck_assert_mem_eq(buf, blob, len);
	/* A put without a blob keeps it, in this handle and the other. */
	v.perms = P11P_VK_ENCRYPT;
	put_ok(a, &v);
	ck_assert_uint_eq(p11p_index_get_blob(a, v.vid, buf, sizeof(buf), &len, &found), CKR_OK);
	ck_assert(found && len == sizeof(blob));
	ck_assert_uint_eq(p11p_index_refresh(b), CKR_OK);
	ck_assert_uint_eq(p11p_index_get_blob(b, v.vid, buf, sizeof(buf), &len, &found), CKR_OK);
	ck_assert(found && len == sizeof(blob));
	/* A key without a blob. */
	key_init(&w, "s", "hsm", 2);
	put_ok(a, &w);
	ck_assert_uint_eq(p11p_index_get_blob(a, w.vid, buf, sizeof(buf), &len, &found), CKR_OK);
	ck_assert(!found);
	/* replace_blobs: all or nothing. */
	nb[0] = (struct p11p_index_blob){
	    .vid = v.vid, .data = (const unsigned char *)"new-1", .len = 5};
	nb[1] = (struct p11p_index_blob){
	    .vid = 12345, .data = (const unsigned char *)"new-2", .len = 5};
	ck_assert_uint_eq(p11p_index_replace_blobs(a, nb, 2), CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(p11p_index_get_blob(a, v.vid, buf, sizeof(buf), &len, &found), CKR_OK);
	ck_assert(found && len == sizeof(blob));
	nb[1].vid = w.vid;
	ck_assert_uint_eq(p11p_index_replace_blobs(a, nb, 2), CKR_OK);
	ck_assert_uint_eq(p11p_index_get_blob(a, w.vid, buf, sizeof(buf), &len, &found), CKR_OK);
	ck_assert(found && len == 5 && memcmp(buf, "new-2", 5) == 0);
	ck_assert_uint_eq(p11p_index_refresh(b), CKR_OK);
	ck_assert_uint_eq(p11p_index_get_blob(b, v.vid, buf, sizeof(buf), &len, &found), CKR_OK);
	ck_assert(found && len == 5 && memcmp(buf, "new-1", 5) == 0);
	/* Bad arguments. */
	ck_assert_uint_eq(p11p_index_put_blob(a, &w, blob, 0), CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(p11p_index_put_blob(a, &w, blob, P11P_INDEX_BLOB_MAX + 1),
	                  CKR_ARGUMENTS_BAD);
	/* A new handle loads them; a delete drops them. */
	p11p_index_close(b);
	b = open_ok();
	ck_assert_uint_eq(p11p_index_get_blob(b, w.vid, buf, sizeof(buf), &len, &found), CKR_OK);
	ck_assert(found && len == 5);
	ck_assert_uint_eq(p11p_index_delete(a, v.vid, NULL), CKR_OK);
	ck_assert_uint_eq(p11p_index_get_blob(a, v.vid, buf, sizeof(buf), &len, &found), CKR_OK);
	ck_assert(!found);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM blobs"), 1);
	p11p_index_close(a);
	p11p_index_close(b);
}
END_TEST

/* ---- replication debt ----------------------------------------------------------------------- */

START_TEST(test_debts)
{
	struct p11p_index *a = open_ok(), *b = open_ok();
	struct p11p_debt d, e, *list = NULL;
	size_t n = 0;

	memset(&d, 0, sizeof(d));
	snprintf(d.slot, sizeof(d.slot), "s1");
	snprintf(d.member, sizeof(d.member), "SN123/member two");
	d.op = P11P_DEBT_COPY;
	d.cls = CKO_SECRET_KEY;
	memcpy(d.ck_id, "\x01\x00\x02", 3);
	d.ck_id_len = 3;
	memcpy(d.label, "k", 1);
	d.label_len = 1;
	ck_assert_uint_eq(p11p_index_debt_add(a, &d), CKR_OK);
	ck_assert_uint_ne(d.id, 0);
	ck_assert_int_ne(d.since, 0);
	e = d;
	e.id = 0;
	ck_assert_uint_eq(p11p_index_debt_add(b, &e), CKR_OK); /* the same debt: one */
	ck_assert_uint_eq(e.id, d.id);
	e.op = P11P_DEBT_DESTROY;
	ck_assert_uint_eq(p11p_index_debt_add(b, &e), CKR_OK);
	ck_assert_uint_ne(e.id, d.id);
	snprintf(e.slot, sizeof(e.slot), "s2");
	ck_assert_uint_eq(p11p_index_debt_add(b, &e), CKR_OK);

	ck_assert_uint_eq(p11p_index_debt_list(a, "s1", &list, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(list[0].id, d.id);
	ck_assert_str_eq(list[0].member, "SN123/member two");
	ck_assert_uint_eq(list[0].ck_id_len, 3);
	ck_assert_mem_eq(list[0].ck_id, "\x01\x00\x02", 3);
	ck_assert_uint_eq(list[0].tries, 0);
	p11p_free(list);
	ck_assert_uint_eq(p11p_index_debt_list(a, NULL, &list, &n), CKR_OK);
	ck_assert_uint_eq(n, 3);
	p11p_free(list);

	ck_assert_uint_eq(p11p_index_debt_failed(a, d.id), CKR_OK);
	ck_assert_uint_eq(p11p_index_debt_failed(b, d.id), CKR_OK);
	ck_assert_uint_eq(p11p_index_debt_list(b, "s1", &list, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(list[0].tries, 2);
	p11p_free(list);
	ck_assert_uint_eq(p11p_index_debt_done(b, d.id), CKR_OK);
	ck_assert_uint_eq(p11p_index_debt_list(a, "s1", &list, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(list[0].op, P11P_DEBT_DESTROY);
	p11p_free(list);
	ck_assert_uint_eq(p11p_index_debt_list(a, "none", &list, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(list);

	d.op = 9;
	ck_assert_uint_eq(p11p_index_debt_add(a, &d), CKR_ARGUMENTS_BAD);
	d.op = P11P_DEBT_COPY;
	d.member[0] = '\0';
	ck_assert_uint_eq(p11p_index_debt_add(a, &d), CKR_ARGUMENTS_BAD);
	p11p_index_close(a);
	p11p_index_close(b);
}
END_TEST

/* An ATTRS debt for member m2 of slot s1: the object known as (secret key, id, label). */
static void attrs_debt(struct p11p_debt *d, const char *id, const char *label)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->slot, sizeof(d->slot), "s1");
	snprintf(d->member, sizeof(d->member), "m2");
	d->op = P11P_DEBT_ATTRS;
	d->cls = CKO_SECRET_KEY;
	d->ck_id_len = strlen(id);
	memcpy(d->ck_id, id, d->ck_id_len);
	d->label_len = strlen(label);
	memcpy(d->label, label, d->label_len);
}

/* The value of type in d's template ("" when empty, NULL when absent). */
static const char *attr_of(struct p11p_debt *d, CK_ATTRIBUTE_TYPE type, size_t *len)
{
	CK_ATTRIBUTE t[P11P_DEBT_ATTRS_COUNT];
	size_t n = 0;

	ck_assert(p11p_debt_attrs_parse(d, t, P11P_DEBT_ATTRS_COUNT, &n));
	for (size_t i = 0; i < n; i++)
		if (t[i].type == type) {
			*len = t[i].ulValueLen;
			return t[i].pValue != NULL ? t[i].pValue : "";
		}
	return NULL;
}

START_TEST(test_debt_attrs)
{
	struct p11p_index *a = open_ok(), *b = open_ok();
	struct p11p_debt *d = calloc(1, sizeof(*d)), *e = calloc(1, sizeof(*e)), *list = NULL;
	CK_ATTRIBUTE t[P11P_DEBT_ATTRS_COUNT];
	CK_BBOOL no = CK_FALSE;
	unsigned char big[P11P_DEBT_ATTRS_MAX];
	size_t n = 0, len = 0;
	uint64_t first;

	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_nonnull(e);
	/* The template: set, replaced, appended; parsed back. */
	attrs_debt(d, "\x01", "k");
	ck_assert(p11p_debt_attrs_set(d, CKA_ID, "\x02", 1));
	ck_assert(p11p_debt_attrs_set(d, CKA_LABEL, "k2", 2));
	ck_assert(p11p_debt_attrs_set(d, CKA_ID, "\x02\x03", 2));
	ck_assert(p11p_debt_attrs_set(d, CKA_DECRYPT, &no, 1));
	ck_assert(p11p_debt_attrs_set(d, CKA_END_DATE, "", 0));
	ck_assert(p11p_debt_attrs_parse(d, t, P11P_DEBT_ATTRS_COUNT, &n));
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(t[0].type, CKA_ID);
	ck_assert_uint_eq(t[0].ulValueLen, 2);
	ck_assert_mem_eq(t[0].pValue, "\x02\x03", 2);
	ck_assert_uint_eq(t[3].type, CKA_END_DATE);
	ck_assert_uint_eq(t[3].ulValueLen, 0);
	/* Too many for out: refused, as is a value past the room. */
	ck_assert(!p11p_debt_attrs_parse(d, t, 3, &n));
	memset(big, 'x', sizeof(big));
	ck_assert(!p11p_debt_attrs_set(d, CKA_SUBJECT, big, sizeof(big)));
	ck_assert(p11p_debt_attrs_parse(d, t, P11P_DEBT_ATTRS_COUNT, &n) && n == 4);

	/* Stored and read back whole. */
	ck_assert_uint_eq(p11p_index_debt_add(a, d), CKR_OK);
	first = d->id;
	ck_assert_uint_ne(first, 0);
	ck_assert_uint_eq(p11p_index_debt_list(b, "s1", &list, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(list[0].op, P11P_DEBT_ATTRS);
	ck_assert_uint_eq(list[0].attrs_len, d->attrs_len);
	ck_assert_mem_eq(list[0].attrs, d->attrs, d->attrs_len);
	p11p_free(list);

	/* A later change of the object known so: merged (the new value wins), recorded last. */
	attrs_debt(e, "\x01", "k");
	ck_assert(p11p_debt_attrs_set(e, CKA_LABEL, "k3", 2));
	ck_assert(p11p_debt_attrs_set(e, CKA_START_DATE, "20260101", 8));
	ck_assert_uint_eq(p11p_index_debt_add(b, e), CKR_OK);
	ck_assert_uint_gt(e->id, first);
	ck_assert_uint_eq(p11p_index_debt_list(a, "s1", &list, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(list[0].id, e->id);
	ck_assert_mem_eq(attr_of(&list[0], CKA_LABEL, &len), "k3", 2);
	ck_assert_mem_eq(attr_of(&list[0], CKA_ID, &len), "\x02\x03", 2);
	ck_assert_mem_eq(attr_of(&list[0], CKA_START_DATE, &len), "20260101", 8);
	ck_assert_ptr_nonnull(attr_of(&list[0], CKA_DECRYPT, &len));
	ck_assert_uint_eq(len, 1);
	p11p_free(list);

	/* A second rename (its old identity: the first one's new) is a debt of its own, after. */
	attrs_debt(d, "\x02\x03", "k3");
	ck_assert(p11p_debt_attrs_set(d, CKA_LABEL, "k4", 2));
	ck_assert_uint_eq(p11p_index_debt_add(a, d), CKR_OK);
	ck_assert_uint_eq(p11p_index_debt_list(b, "s1", &list, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(list[0].id, e->id);
	ck_assert_uint_eq(list[1].id, d->id);
	p11p_free(list);

	/* What is not an ATTRS debt carries no template; an ATTRS debt needs one. */
	attrs_debt(e, "\x01", "k");
	ck_assert_uint_eq(p11p_index_debt_add(a, e), CKR_ARGUMENTS_BAD);
	e->op = P11P_DEBT_COPY;
	ck_assert(p11p_debt_attrs_set(e, CKA_LABEL, "x", 1));
	ck_assert_uint_eq(p11p_index_debt_add(a, e), CKR_ARGUMENTS_BAD);
	e->op = P11P_DEBT_ATTRS;
	e->attrs_len = 5; /* a header cut short */
	ck_assert_uint_eq(p11p_index_debt_add(a, e), CKR_ARGUMENTS_BAD);

	/* The store is untrusted: a damaged template is found when parsed, an oversized one
	 * when read. */
	sql("UPDATE debts SET attrs = x'00000000000000030000ffff00' WHERE label = x'6b33'");
	ck_assert_uint_eq(p11p_index_debt_list(a, "s1", &list, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert(!p11p_debt_attrs_parse(&list[1], t, P11P_DEBT_ATTRS_COUNT, &n));
	p11p_free(list);
	/* The same type twice. */
	sql("UPDATE debts SET attrs = x'0000000000000003000000016100000000000000030000000162' "
	    "WHERE label = x'6b33'");
	ck_assert_uint_eq(p11p_index_debt_list(a, "s1", &list, &n), CKR_OK);
	ck_assert(!p11p_debt_attrs_parse(&list[1], t, P11P_DEBT_ATTRS_COUNT, &n));
	p11p_free(list);
	sql("UPDATE debts SET attrs = randomblob(3000) WHERE label = x'6b33'");
	ck_assert_uint_eq(p11p_index_debt_list(a, "s1", &list, &n), CKR_FUNCTION_FAILED);
	ck_assert_ptr_null(list);
	free(d);
	free(e);
	p11p_index_close(a);
	p11p_index_close(b);
}
END_TEST

/* A store of schema version 1 (before debts.attrs) is upgraded in place at open, debts kept. */
START_TEST(test_upgrade_v1)
{
	struct p11p_index *idx;
	struct p11p_debt *d = calloc(1, sizeof(*d)), *list = NULL;
	const char *const *v1;
	size_t n = 0;

	ck_assert_ptr_nonnull(d);
	v1 = p11p_store_schema_step(P11P_SQL_SQLITE, 1, &n);
	ck_assert_ptr_nonnull(v1);
	for (size_t i = 0; i < n; i++)
		sql(v1[i]);
	sql("INSERT INTO migrations (version, applied) VALUES (1, 0)");
	sql("INSERT INTO debts (id, slot, member, op, cls, ck_id, label, since, tries) VALUES "
	    "(7, 's1', 'm2', 1, 4, x'01', x'6b', 5, 0)");
	ck_assert_int_eq(sql_int("SELECT count(*) FROM pragma_table_info('debts') WHERE name = "
	                         "'attrs'"),
	                 0);
	ck_assert_ptr_null(
	    p11p_store_schema_step(P11P_SQL_SQLITE, P11P_STORE_SCHEMA_VERSION + 1, &n));

	idx = open_ok();
	ck_assert_int_eq(sql_int("SELECT max(version) FROM migrations"), P11P_STORE_SCHEMA_VERSION);
	ck_assert_uint_eq(p11p_index_debt_list(idx, NULL, &list, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(list[0].id, 7);
	ck_assert_uint_eq(list[0].op, P11P_DEBT_COPY);
	ck_assert_uint_eq(list[0].attrs_len, 0);
	p11p_free(list);
	attrs_debt(d, "\x01", "k");
	ck_assert(p11p_debt_attrs_set(d, CKA_LABEL, "k2", 2));
	ck_assert_uint_eq(p11p_index_debt_add(idx, d), CKR_OK);
	p11p_index_close(idx);
	/* Opened again: nothing more to do. */
	idx = open_ok();
	ck_assert_int_eq(sql_int("SELECT count(*) FROM migrations"), P11P_STORE_SCHEMA_VERSION);
	ck_assert_uint_eq(p11p_index_debt_list(idx, "s1", &list, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(list[1].attrs_len, d->attrs_len);
	p11p_free(list);
	p11p_index_close(idx);
	free(d);
}
END_TEST

/* ---- audit ---------------------------------------------------------------------------------- */

struct seen {
	char what[32][16];
	char from[32][64], to[32][64];
	size_t n;
};

static int seen_cb(void *arg, const struct p11p_audit *a)
{
	struct seen *s = arg;

	if (s->n < 32) {
		snprintf(s->what[s->n], sizeof(s->what[0]), "%s", a->what);
		snprintf(s->from[s->n], sizeof(s->from[0]), "%s", a->from);
		snprintf(s->to[s->n], sizeof(s->to[0]), "%s", a->to);
		s->n++;
	}
	return 0;
}

static void verify(struct p11p_index *idx, CK_RV want, uint64_t want_bad, const char *needle)
{
	uint64_t rows = 0, bad = 0;
	char why[256];
	CK_RV rv = p11p_index_audit_verify(idx, &rows, &bad, why, sizeof(why));

	ck_assert_msg(rv == want, "verify 0x%lx, want 0x%lx (%s)", rv, want, why);
	ck_assert_uint_eq(bad, want_bad);
	ck_assert_msg(needle == NULL || strstr(why, needle) != NULL, "no '%s' in '%s'", needle,
	              why);
}

START_TEST(test_audit_chain)
{
	struct p11p_index *idx = open_ok();
	struct p11p_vkey v, w;
	struct seen s = {0};
	int64_t last = 0;

	key_init(&v, "s", "k", 1);
	put_ok(idx, &v);                         /* 1 create */
	v.perms = P11P_VK_SIGN | P11P_VK_VERIFY; /* 2 perms */
	put_ok(idx, &v);
	v.state = P11P_VK_DEACTIVATED; /* 3 deactivate */
	put_ok(idx, &v);
	v.state = P11P_VK_ACTIVE; /* 4 activate */
	put_ok(idx, &v);
	key_init(&w, "t", "scanned", 2);
	w.origin = P11P_VK_SCANNED; /* 5 sync */
	put_ok(idx, &w);
	v.next = w.vid; /* 6 rotate */
	put_ok(idx, &v);
	ck_assert_uint_eq(p11p_index_delete(idx, w.vid, NULL), CKR_OK); /* 7 delete */
	put_ok(idx, &v);                                                /* nothing changed */
	ck_assert_uint_eq(p11p_index_audit(idx, NULL, 0, seen_cb, &s, &last), CKR_OK);
	ck_assert_int_eq(last, 7);
	ck_assert_uint_eq(s.n, 7);
	ck_assert_str_eq(s.what[0], "create");
	ck_assert_str_eq(s.to[0], "ed-----");
	ck_assert_str_eq(s.what[1], "perms");
	ck_assert_str_eq(s.from[1], "ed-----");
	ck_assert_str_eq(s.to[1], "--sv---");
	ck_assert_str_eq(s.what[2], "deactivate");
	ck_assert_str_eq(s.what[3], "activate");
	ck_assert_str_eq(s.what[4], "sync");
	ck_assert_str_eq(s.what[5], "rotate");
	ck_assert_str_eq(s.what[6], "delete");
	memset(&s, 0, sizeof(s));
	ck_assert_uint_eq(p11p_index_audit(idx, "t", 0, seen_cb, &s, NULL), CKR_OK);
	ck_assert_uint_eq(s.n, 2);
	memset(&s, 0, sizeof(s));
	ck_assert_uint_eq(p11p_index_audit(idx, NULL, INT64_MAX, seen_cb, &s, NULL), CKR_OK);
	ck_assert_uint_eq(s.n, 0);
	verify(idx, CKR_OK, 0, NULL);

	/* Altered: row 2 says another permission. */
	sql("UPDATE audit SET to_v = 'edsvwuk' WHERE id = 2");
	verify(idx, CKR_SIGNATURE_INVALID, 2, "row 2 was altered");
	sql("UPDATE audit SET to_v = '--sv---' WHERE id = 2");
	verify(idx, CKR_OK, 0, NULL);
	/* Altered with its own hash recomputed: the next row no longer follows. */
	sql("UPDATE audit SET hash = (SELECT hash FROM audit WHERE id = 1) WHERE id = 3");
	verify(idx, CKR_SIGNATURE_INVALID, 3, "row 3 was altered");
	p11p_index_close(idx);
}
END_TEST

/* Overlays (issue 11): in the copy, versioned, followed by other handles, audited, checked. */
START_TEST(test_overlays)
{
	struct p11p_index *a = open_ok(), *b = open_ok();
	struct p11p_vkey v;
	struct seen s = {0};
	char *text = NULL, big[P11P_INDEX_OVERLAY_MAX + 2];
	size_t len = 99;
	uint64_t ver = 99;

	ck_assert_uint_eq(p11p_index_overlay_get(a, "s", P11P_OVERLAY_POLICY, &text, &len, &ver),
	                  CKR_OK);
	ck_assert_ptr_null(text);
	ck_assert_uint_eq(len, 0);
	ck_assert_uint_eq(ver, 0);
	ck_assert_uint_eq(p11p_index_overlay_put(a, "s", P11P_OVERLAY_POLICY, "scan = owned\n",
	                                         "write_back=false scan=all", "w scan=owned"),
	                  CKR_OK);
	/* The writer's copy has it at once; the other handle after a refresh. */
	ck_assert_uint_eq(p11p_index_overlay_get(a, "s", P11P_OVERLAY_POLICY, &text, &len, &ver),
	                  CKR_OK);
	ck_assert_str_eq(text, "scan = owned\n");
	ck_assert_uint_eq(len, 13);
	ck_assert_uint_eq(ver, 1);
	p11p_free(text);
	ck_assert_uint_eq(p11p_index_overlay_get(b, "s", P11P_OVERLAY_POLICY, &text, &len, &ver),
	                  CKR_OK);
	ck_assert_ptr_null(text);
	ck_assert_uint_eq(p11p_index_refresh(b), CKR_OK);
	ck_assert_uint_eq(p11p_index_overlay_get(b, "s", P11P_OVERLAY_POLICY, &text, &len, &ver),
	                  CKR_OK);
	ck_assert_str_eq(text, "scan = owned\n");
	ck_assert_uint_eq(ver, 1);
	p11p_free(text);
	/* Kinds and slots are apart. */
	ck_assert_uint_eq(p11p_index_overlay_get(b, "s", P11P_OVERLAY_ORDER, &text, &len, &ver),
	                  CKR_OK);
	ck_assert_ptr_null(text);
	ck_assert_uint_eq(p11p_index_overlay_get(b, "t", P11P_OVERLAY_POLICY, &text, &len, &ver),
	                  CKR_OK);
	ck_assert_ptr_null(text);
	/* b writes the order (after a key of a's), then removes the policy; a follows. */
	key_init(&v, "s", "k", 1);
	put_ok(a, &v);
	ck_assert_uint_eq(
	    p11p_index_overlay_put(b, "s", P11P_OVERLAY_ORDER, "m2\nm1\n", "m1,m2", "m2,m1"),
	    CKR_OK);
	ck_assert_uint_eq(p11p_index_overlay_put(b, "s", P11P_OVERLAY_POLICY, NULL, "x", "y"),
	                  CKR_OK);
	ck_assert(has(b, v.vid));
	ck_assert_uint_eq(p11p_index_refresh(a), CKR_OK);
	ck_assert_uint_eq(p11p_index_overlay_get(a, "s", P11P_OVERLAY_POLICY, &text, &len, &ver),
	                  CKR_OK);
	ck_assert_ptr_null(text);
	ck_assert_uint_eq(ver, 2);
	ck_assert_uint_eq(p11p_index_overlay_get(a, "s", P11P_OVERLAY_ORDER, &text, &len, &ver),
	                  CKR_OK);
	ck_assert_str_eq(text, "m2\nm1\n");
	ck_assert_uint_eq(ver, 1);
	p11p_free(text);
	/* Audited, in order, in the chain. */
	ck_assert_uint_eq(p11p_index_audit(a, NULL, 0, seen_cb, &s, NULL), CKR_OK);
	ck_assert_uint_eq(s.n, 4);
	ck_assert_str_eq(s.what[0], "policy");
	ck_assert_str_eq(s.from[0], "write_back=false scan=all");
	ck_assert_str_eq(s.to[0], "w scan=owned");
	ck_assert_str_eq(s.what[1], "create");
	ck_assert_str_eq(s.what[2], "member-order");
	ck_assert_str_eq(s.from[2], "m1,m2");
	ck_assert_str_eq(s.what[3], "policy");
	verify(a, CKR_OK, 0, NULL);
	/* Refused: bad slot, kind, size; nothing written. */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_uint_eq(p11p_index_overlay_put(a, "", P11P_OVERLAY_ORDER, "x", "", ""),
	                  CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(p11p_index_overlay_put(a, "s", (enum p11p_overlay_kind)7, "x", "", ""),
	                  CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(p11p_index_overlay_put(a, "s", P11P_OVERLAY_ORDER, big, "", ""),
	                  CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(p11p_index_overlay_get(a, NULL, P11P_OVERLAY_ORDER, &text, &len, NULL),
	                  CKR_ARGUMENTS_BAD);
	/* A damaged row: the refresh fails and the copy keeps what it had. */
	sql("UPDATE meta SET value = value + 1 WHERE name = 'seq'");
	sql("UPDATE overlays SET text = CAST(X'610062' AS TEXT), seq = (SELECT value FROM meta "
	    "WHERE name = 'seq') WHERE kind = 'member-order'");
	ck_assert_uint_eq(p11p_index_refresh(b), CKR_FUNCTION_FAILED);
	ck_assert_uint_eq(p11p_index_overlay_get(b, "s", P11P_OVERLAY_ORDER, &text, &len, &ver),
	                  CKR_OK);
	ck_assert_str_eq(text, "m2\nm1\n");
	p11p_free(text);
	p11p_index_close(a);
	p11p_index_close(b);
}
END_TEST

START_TEST(test_audit_deleted_rows)
{
	struct p11p_index *idx = open_ok();
	struct p11p_vkey v;

	key_init(&v, "s", "k", 1);
	put_ok(idx, &v);
	for (int i = 0; i < 4; i++) {
		v.perms = (uint32_t)(i + 1);
		put_ok(idx, &v);
	}
	verify(idx, CKR_OK, 0, NULL);
	sql("DELETE FROM audit WHERE id = 5"); /* the last row */
	verify(idx, CKR_SIGNATURE_INVALID, 5, "row 5 is missing");
	sql("DELETE FROM audit WHERE id = 3");
	verify(idx, CKR_SIGNATURE_INVALID, 3, "row 3 is missing");
	p11p_index_close(idx);
}
END_TEST

/* ---- read-only --------------------------------------------------------------------------------
 */

START_TEST(test_readonly_store)
{
	struct p11p_index *idx = open_ok();
	struct p11p_index_stats st;
	struct p11p_vkey v, got;
	char err[512];

	if (geteuid() == 0) {
		/* root writes anyway: 58-store's read-only case runs as another user. */
		p11p_index_close(idx);
		return;
	}
	key_init(&v, "s", "k", 1);
	put_ok(idx, &v);
	p11p_index_close(idx);
	ck_assert_int_eq(chmod(dir, 0500), 0);
	idx = open_ok();
	ck_assert_uint_eq(p11p_index_stats(idx, &st), CKR_OK);
	ck_assert(st.readonly);
	get_ok(idx, v.vid, &got);
	ck_assert_uint_eq(got.perms, v.perms);
	ck_assert_uint_eq(p11p_index_put(idx, &v), CKR_FUNCTION_FAILED);
	p11p_index_last_error(idx, err, sizeof(err));
	ck_assert_msg(strstr(err, "read-only") != NULL && strstr(err, path) != NULL, "%s", err);
	ck_assert_uint_eq(p11p_index_refresh(idx), CKR_OK);
	p11p_index_close(idx);
	ck_assert_int_eq(chmod(dir, 0700), 0);
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
	tcase_add_test(tc, test_big_load);
	tc = new_case(s, "sharing");
	tcase_add_test(tc, test_two_handles);
	tcase_add_test(tc, test_writer_catches_up);
	tcase_add_test(tc, test_fork_child_refused);
	tcase_add_test(tc, test_threads);
	tc = new_case(s, "blobs-debts");
	tcase_add_test(tc, test_blobs);
	tcase_add_test(tc, test_debts);
	tcase_add_test(tc, test_debt_attrs);
	tcase_add_test(tc, test_upgrade_v1);
	tc = new_case(s, "audit");
	tcase_add_test(tc, test_audit_chain);
	tcase_add_test(tc, test_overlays);
	tcase_add_test(tc, test_audit_deleted_rows);
	tc = new_case(s, "damage");
	tcase_add_test(tc, test_refresh_error_keeps_state);
	tc = new_case(s, "files");
	tcase_add_test(tc, test_unsafe_files);
	tcase_add_test(tc, test_readonly_store);
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
