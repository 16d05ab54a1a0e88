/*
 * Unit tests for the key model (lib/vkeys/model.c): the permission table by
 * class, which the module and the CLI each used to carry and which had
 * diverged; records made from a key's attributes; the policy decisions;
 * the words records are shown with (and that they are the index file's).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "index/index.h"
#include "p11proxy.h"
#include "keymodel/model.h"

#define E P11P_VK_ENCRYPT
#define D P11P_VK_DECRYPT
#define S P11P_VK_SIGN
#define V P11P_VK_VERIFY
#define W P11P_VK_WRAP
#define U P11P_VK_UNWRAP
#define K P11P_VK_DERIVE

static struct p11p_vkey rec(CK_OBJECT_CLASS cls, uint32_t perms, enum p11p_vk_state st)
{
	struct p11p_vkey r;

	memset(&r, 0, sizeof(r));
	snprintf(r.slot, sizeof(r.slot), "va");
	r.vid = 7;
	r.cls = cls;
	r.perms = perms;
	r.state = st;
	r.presence = 1;
	return r;
}

/* The table of model.h, cell by cell: what every caller gets. */
START_TEST(test_class_table)
{
	ck_assert_uint_eq(p11p_vk_class_perms(CKO_SECRET_KEY), E | D | S | V | W | U | K);
	ck_assert_uint_eq(p11p_vk_class_perms(CKO_SECRET_KEY), P11P_VK_ALL);
	ck_assert_uint_eq(p11p_vk_class_perms(CKO_PRIVATE_KEY), D | S | U | K);
	ck_assert_uint_eq(p11p_vk_class_perms(CKO_PUBLIC_KEY), E | V | W);
	/* Not keys: nothing. The CLI's copy answered "everything" for these. */
	ck_assert_uint_eq(p11p_vk_class_perms(CKO_CERTIFICATE), 0);
	ck_assert_uint_eq(p11p_vk_class_perms(CKO_DATA), 0);
	ck_assert_uint_eq(p11p_vk_class_perms(0x7777), 0);
	/* Attributes carried: CKA_DERIVE is common to every key, a public key's too. */
	ck_assert_uint_eq(p11p_vk_class_attrs(CKO_SECRET_KEY), P11P_VK_ALL);
	ck_assert_uint_eq(p11p_vk_class_attrs(CKO_PRIVATE_KEY), D | S | U | K);
	ck_assert_uint_eq(p11p_vk_class_attrs(CKO_PUBLIC_KEY), E | V | W | K);
	ck_assert_uint_eq(p11p_vk_class_attrs(CKO_CERTIFICATE), 0);
	/* Every permission a class has is an attribute it carries. */
	for (CK_OBJECT_CLASS c = 0; c < 8; c++)
		ck_assert_uint_eq(p11p_vk_class_perms(c) & ~p11p_vk_class_attrs(c), 0);
	ck_assert(p11p_vk_is_key_class(CKO_SECRET_KEY));
	ck_assert(p11p_vk_is_key_class(CKO_PRIVATE_KEY));
	ck_assert(p11p_vk_is_key_class(CKO_PUBLIC_KEY));
	ck_assert(!p11p_vk_is_key_class(CKO_CERTIFICATE));
	ck_assert(!p11p_vk_is_key_class(CKO_DATA));
}
END_TEST

START_TEST(test_perm_attrs_names)
{
	static const CK_ATTRIBUTE_TYPE attrs[7] = {CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN,  CKA_VERIFY,
	                                           CKA_WRAP,    CKA_UNWRAP,  CKA_DERIVE};
	static const char *const names[7] = {"encrypt", "decrypt", "sign",  "verify",
	                                     "wrap",    "unwrap",  "derive"};

	ck_assert_int_eq(P11P_VK_NPERMS, 7);
	for (unsigned i = 0; i < 7; i++) {
		ck_assert_uint_eq(p11p_vk_perm_attr(i), attrs[i]);
		ck_assert_str_eq(p11p_vk_perm_name(i), names[i]);
		ck_assert_uint_eq(p11p_vk_attr_perm(attrs[i]), 1u << i);
		ck_assert_uint_eq(p11p_vk_perm_parse(names[i]), 1u << i);
	}
	ck_assert_uint_eq(p11p_vk_attr_perm(CKA_SIGN_RECOVER), 0);
	ck_assert_uint_eq(p11p_vk_attr_perm(CKA_LABEL), 0);
	ck_assert_uint_eq(p11p_vk_perm_parse("all"), P11P_VK_ALL);
	ck_assert_uint_eq(p11p_vk_perm_parse("fly"), 0);
	ck_assert_uint_eq(p11p_vk_perm_parse(""), 0);
	/* Operations: the recover variants need sign and verify. */
	ck_assert_uint_eq(p11p_vk_op_perm(CKF_ENCRYPT), E);
	ck_assert_uint_eq(p11p_vk_op_perm(CKF_DECRYPT), D);
	ck_assert_uint_eq(p11p_vk_op_perm(CKF_SIGN), S);
	ck_assert_uint_eq(p11p_vk_op_perm(CKF_SIGN_RECOVER), S);
	ck_assert_uint_eq(p11p_vk_op_perm(CKF_VERIFY), V);
	ck_assert_uint_eq(p11p_vk_op_perm(CKF_VERIFY_RECOVER), V);
	ck_assert_uint_eq(p11p_vk_op_perm(CKF_WRAP), W);
	ck_assert_uint_eq(p11p_vk_op_perm(CKF_UNWRAP), U);
	ck_assert_uint_eq(p11p_vk_op_perm(CKF_DERIVE), K);
	ck_assert_uint_eq(p11p_vk_op_perm(CKF_DIGEST), 0);
}
END_TEST

START_TEST(test_words)
{
	char b[P11P_VK_PERMS_STR], l[128];
	const char *bad = "x";
	char *ops[] = {"sign", "derive"}, *wrong[] = {"sign", "fly", "wrap"};
	uint32_t p;
	enum p11p_vk_state st;

	ck_assert_str_eq(p11p_vk_perms_str(P11P_VK_ALL, b), "edsvwuk");
	ck_assert_str_eq(p11p_vk_perms_str(0, b), "-------");
	ck_assert_str_eq(p11p_vk_perms_str(D | V, b), "-d-v---");
	ck_assert(p11p_vk_perms_parse("-d-v---", &p) && p == (D | V));
	ck_assert(p11p_vk_perms_parse("edsvwuk", &p) && p == P11P_VK_ALL);
	ck_assert(!p11p_vk_perms_parse("edsvwu", &p));
	ck_assert(!p11p_vk_perms_parse("desvwuk", &p));
	ck_assert_uint_eq(p11p_vk_perm_list_parse(2, ops, &bad), S | K);
	ck_assert_ptr_null(bad);
	ck_assert_uint_eq(p11p_vk_perm_list_parse(3, wrong, &bad), 0);
	ck_assert_str_eq(bad, "fly");
	ck_assert_str_eq(p11p_vk_perm_list_str(E | S | K, ",", l, sizeof(l)),
	                 "encrypt,sign,derive");
	ck_assert_str_eq(p11p_vk_perm_list_str(0, ",", l, sizeof(l)), "");
	ck_assert_str_eq(p11p_vk_perm_list_str(E | D, ", ", l, 10), "encrypt");
	for (int s = 0; s < 4; s++) {
		ck_assert(p11p_vk_state_parse(p11p_vk_state_name((enum p11p_vk_state)s), &st));
		ck_assert_int_eq(st, s);
	}
	ck_assert_str_eq(p11p_vk_state_name(P11P_VK_DEACTIVATED), "deactivated");
	ck_assert_str_eq(p11p_vk_state_name((enum p11p_vk_state)9), "?");
	ck_assert(!p11p_vk_state_parse("gone", &st));
	ck_assert_str_eq(p11p_vk_origin_name(P11P_VK_CREATED), "created");
	ck_assert_str_eq(p11p_vk_origin_name(P11P_VK_SCANNED), "scanned");
	ck_assert_str_eq(p11p_vk_class_name(CKO_SECRET_KEY), "secret");
	ck_assert_str_eq(p11p_vk_class_name(CKO_PRIVATE_KEY), "private");
	ck_assert_str_eq(p11p_vk_class_name(CKO_PUBLIC_KEY), "public");
	ck_assert_str_eq(p11p_vk_class_name(CKO_CERTIFICATE), "other");
	ck_assert_str_eq(p11p_vk_scan_name(P11P_SCAN_ALL), "all");
	ck_assert_str_eq(p11p_vk_scan_name(P11P_SCAN_OWNED), "owned");
}
END_TEST

/* The CLI shows records with the words of the store's audit trail: one vocabulary. */
struct audit_words {
	char what[4][16], from[4][64], to[4][64];
	int n;
};

static int audit_words_cb(void *arg, const struct p11p_audit *a)
{
	struct audit_words *w = arg;

	if (w->n < 4) {
		snprintf(w->what[w->n], sizeof(w->what[0]), "%s", a->what);
		snprintf(w->from[w->n], sizeof(w->from[0]), "%s", a->from);
		snprintf(w->to[w->n], sizeof(w->to[0]), "%s", a->to);
		w->n++;
	}
	return 0;
}

START_TEST(test_words_are_the_audit_trail_s)
{
	char dir[] = "/tmp/p11p-vkmodel-XXXXXX", path[128], tmp[160], b[P11P_VK_PERMS_STR];
	struct p11p_index *idx = NULL;
	struct p11p_vkey r = rec(CKO_PRIVATE_KEY, S | K, P11P_VK_DEACTIVATED);
	struct audit_words w = {0};
	char err[512];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/keys.db", dir);
	r.vid = 0;
	r.origin = P11P_VK_SCANNED;
	ck_assert_uint_eq(p11p_index_open(path, &idx, err, sizeof(err)), CKR_OK);
	ck_assert_uint_eq(p11p_index_put(idx, &r), CKR_OK);
	r.state = P11P_VK_ACTIVE;
	ck_assert_uint_eq(p11p_index_put(idx, &r), CKR_OK);
	ck_assert_uint_eq(p11p_index_audit(idx, NULL, 0, audit_words_cb, &w, NULL), CKR_OK);
	p11p_index_close(idx);
	ck_assert_int_eq(w.n, 2);
	ck_assert_str_eq(w.to[0], p11p_vk_perms_str(r.perms, b));
	ck_assert_str_eq(w.what[1], "activate");
	ck_assert_str_eq(w.from[1], p11p_vk_state_name(P11P_VK_DEACTIVATED));
	ck_assert_str_eq(w.to[1], p11p_vk_state_name(P11P_VK_ACTIVE));
	unlink(path);
	snprintf(tmp, sizeof(tmp), "%s-wal", path);
	unlink(tmp);
	snprintf(tmp, sizeof(tmp), "%s-shm", path);
	unlink(tmp);
	rmdir(dir);
}
END_TEST

START_TEST(test_usage_template)
{
	CK_ATTRIBUTE t[P11P_VK_NPERMS];
	CK_BBOOL v[P11P_VK_NPERMS];
	CK_ULONG n = p11p_vk_usage_template(P11P_VK_ALL, S | W, t, v);

	ck_assert_uint_eq(n, 7);
	for (CK_ULONG i = 0; i < n; i++) {
		ck_assert_uint_eq(t[i].type, p11p_vk_perm_attr((unsigned)i));
		ck_assert_uint_eq(t[i].ulValueLen, sizeof(CK_BBOOL));
	}
	ck_assert_uint_eq(p11p_vk_usage_read(t, n), S | W);
	n = p11p_vk_usage_template(D | K, D, t, v);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(t[0].type, CKA_DECRYPT);
	ck_assert_uint_eq(t[1].type, CKA_DERIVE);
	ck_assert_uint_eq(p11p_vk_usage_read(t, n), D);
	/* An attribute the token did not give counts as not set; any non-zero byte as set. */
	t[0].ulValueLen = CK_UNAVAILABLE_INFORMATION;
	v[1] = 2;
	ck_assert_uint_eq(p11p_vk_usage_read(t, n), K);
}
END_TEST

/* Records from attributes: the same record whether the module or a sync makes it. */
START_TEST(test_record_new)
{
	static const unsigned char id[] = {0x0a, 0x0b};
	struct p11p_vk_key k = {.cls = CKO_PUBLIC_KEY,
	                        .key_type = CKK_EC,
	                        .id = id,
	                        .id_len = 2,
	                        .label = (const unsigned char *)"ec1",
	                        .label_len = 3,
	                        .usage = P11P_VK_ALL};
	struct p11p_vkey r;
	char slot[P11P_INDEX_SLOT_MAX + 2];

	ck_assert(p11p_vk_record_new(&r, "va", &k, P11P_VK_ALL, P11P_VK_SCANNED, 0x10003));
	ck_assert_str_eq(r.slot, "va");
	ck_assert_uint_eq(r.cls, CKO_PUBLIC_KEY);
	ck_assert_uint_eq(r.key_type, CKK_EC);
	ck_assert_uint_eq(r.ck_id_len, 2);
	ck_assert_mem_eq(r.ck_id, id, 2);
	ck_assert_uint_eq(r.label_len, 3);
	ck_assert_mem_eq(r.label, "ec1", 3);
	/* A public key's CKA_DERIVE true on the HSM grants nothing. */
	ck_assert_uint_eq(r.perms, E | V | W);
	ck_assert_int_eq(r.state, P11P_VK_ACTIVE);
	ck_assert_int_eq(r.origin, P11P_VK_SCANNED);
	ck_assert_uint_eq(r.presence, 3);
	ck_assert_uint_eq(r.vid, 0);
	ck_assert_uint_eq(r.rev, 0);

	k.cls = CKO_PRIVATE_KEY;
	ck_assert(p11p_vk_record_new(&r, "va", &k, S | E, P11P_VK_CREATED, 1));
	ck_assert_uint_eq(r.perms, S); /* within the limit (a copy's original) and the class */
	ck_assert_int_eq(r.origin, P11P_VK_CREATED);

	k.cls = CKO_CERTIFICATE;
	ck_assert(!p11p_vk_record_new(&r, "va", &k, P11P_VK_ALL, P11P_VK_SCANNED, 1));
	k.cls = CKO_SECRET_KEY;
	k.label_len = P11P_INDEX_LABEL_MAX + 1;
	ck_assert(!p11p_vk_record_new(&r, "va", &k, P11P_VK_ALL, P11P_VK_SCANNED, 1));
	k.label_len = 3;
	ck_assert(!p11p_vk_record_new(&r, "", &k, P11P_VK_ALL, P11P_VK_SCANNED, 1));
	memset(slot, 'x', sizeof(slot) - 1);
	slot[sizeof(slot) - 1] = '\0';
	ck_assert(!p11p_vk_record_new(&r, slot, &k, P11P_VK_ALL, P11P_VK_SCANNED, 1));
	ck_assert(p11p_vk_identity_fits(P11P_INDEX_ID_MAX, P11P_INDEX_LABEL_MAX));
	ck_assert(!p11p_vk_identity_fits(P11P_INDEX_ID_MAX + 1, 0));
	ck_assert(!p11p_vk_identity_fits(0, CK_UNAVAILABLE_INFORMATION));
}
END_TEST

START_TEST(test_record_better)
{
	struct p11p_vkey a = rec(CKO_SECRET_KEY, 0, P11P_VK_ACTIVE), b = a;

	b.state = P11P_VK_DELETED;
	b.origin = P11P_VK_CREATED;
	b.vid = 1;
	ck_assert(p11p_vk_record_better(&a, &b)); /* not deleted first */
	ck_assert(!p11p_vk_record_better(&b, &a));
	b.state = P11P_VK_DEACTIVATED;
	a.origin = P11P_VK_SCANNED;
	ck_assert(p11p_vk_record_better(&b, &a)); /* then created */
	a.origin = P11P_VK_CREATED;
	ck_assert(p11p_vk_record_better(&b, &a)); /* then the lower id */
	ck_assert(!p11p_vk_record_better(&a, &b));
}
END_TEST

START_TEST(test_use_find_attrs)
{
	struct p11p_vkey r = rec(CKO_SECRET_KEY, E | D, P11P_VK_ACTIVE);
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE a;
	uint32_t mask = 0, vals = 0;

	ck_assert_uint_eq(p11p_vk_use_check(&r, E), CKR_OK);
	ck_assert_uint_eq(p11p_vk_use_check(&r, 0), CKR_OK);
	ck_assert_uint_eq(p11p_vk_use_check(&r, S), CKR_KEY_FUNCTION_NOT_PERMITTED);
	r.state = P11P_VK_MISSING;
	ck_assert_uint_eq(p11p_vk_use_check(&r, E), CKR_OK);
	r.state = P11P_VK_DEACTIVATED;
	ck_assert_uint_eq(p11p_vk_use_check(&r, 0), P11PROXY_CKR_KEY_DEACTIVATED);
	r.state = P11P_VK_DELETED;
	ck_assert_uint_eq(p11p_vk_use_check(&r, E), CKR_KEY_HANDLE_INVALID);

	/* Finds: the virtual values; an attribute the class lacks matches nothing. */
	r = rec(CKO_PRIVATE_KEY, S, P11P_VK_ACTIVE);
	ck_assert(p11p_vk_find_match(&r, S, S));
	ck_assert(!p11p_vk_find_match(&r, S, 0));
	ck_assert(p11p_vk_find_match(&r, S | K, S));
	ck_assert(!p11p_vk_find_match(&r, E, 0));
	ck_assert(p11p_vk_find_match(&r, 0, 0));
	r.state = P11P_VK_DELETED;
	ck_assert(!p11p_vk_find_match(&r, 0, 0));
	/* A public key carries CKA_DERIVE: false, even in a record that says otherwise. */
	r = rec(CKO_PUBLIC_KEY, V | K, P11P_VK_ACTIVE);
	ck_assert_uint_eq(p11p_vk_perms_of(&r), V);
	ck_assert(p11p_vk_find_match(&r, K, 0));
	ck_assert(!p11p_vk_find_match(&r, K, K));
	ck_assert(!p11p_vk_find_match(&r, S, 0));
	ck_assert_int_eq(p11p_vk_attr_value(&r, CKA_DERIVE), 0);
	ck_assert_int_eq(p11p_vk_attr_value(&r, CKA_VERIFY), 1);
	ck_assert_int_eq(p11p_vk_attr_value(&r, CKA_ENCRYPT), 0);
	ck_assert_int_eq(p11p_vk_attr_value(&r, CKA_SIGN), -1);
	ck_assert_int_eq(p11p_vk_attr_value(&r, CKA_LABEL), -1);
	ck_assert_uint_eq(p11p_vk_use_check(&r, K), CKR_KEY_FUNCTION_NOT_PERMITTED);

	a = (CK_ATTRIBUTE){CKA_SIGN, &yes, sizeof(yes)};
	ck_assert_uint_eq(p11p_vk_find_attr(&a), S);
	a.ulValueLen = 4;
	ck_assert_uint_eq(p11p_vk_find_attr(&a), 0);
	a = (CK_ATTRIBUTE){CKA_LABEL, &yes, sizeof(yes)};
	ck_assert_uint_eq(p11p_vk_find_attr(&a), 0);

	/* C_SetAttributeValue */
	a = (CK_ATTRIBUTE){CKA_VERIFY, &yes, sizeof(yes)};
	ck_assert_uint_eq(p11p_vk_set_usage(CKO_PUBLIC_KEY, &a, &mask, &vals), CKR_OK);
	ck_assert_uint_eq(mask, V);
	ck_assert_uint_eq(vals, V);
	a = (CK_ATTRIBUTE){CKA_VERIFY, &no, sizeof(no)};
	ck_assert_uint_eq(p11p_vk_set_usage(CKO_PUBLIC_KEY, &a, &mask, &vals), CKR_OK);
	ck_assert_uint_eq(vals, 0);
	a = (CK_ATTRIBUTE){CKA_SIGN, &yes, sizeof(yes)};
	ck_assert_uint_eq(p11p_vk_set_usage(CKO_PUBLIC_KEY, &a, &mask, &vals),
	                  CKR_ATTRIBUTE_TYPE_INVALID);
	a = (CK_ATTRIBUTE){CKA_DERIVE, &yes, sizeof(yes)};
	ck_assert_uint_eq(p11p_vk_set_usage(CKO_PUBLIC_KEY, &a, &mask, &vals),
	                  CKR_ATTRIBUTE_VALUE_INVALID);
	a = (CK_ATTRIBUTE){CKA_DERIVE, &no, sizeof(no)};
	ck_assert_uint_eq(p11p_vk_set_usage(CKO_PUBLIC_KEY, &a, &mask, &vals), CKR_OK);
	ck_assert_uint_eq(p11p_vk_set_usage(CKO_PRIVATE_KEY, &a, &mask, &vals), CKR_OK);
	a = (CK_ATTRIBUTE){CKA_DERIVE, &yes, 4};
	ck_assert_uint_eq(p11p_vk_set_usage(CKO_SECRET_KEY, &a, &mask, &vals),
	                  CKR_ATTRIBUTE_VALUE_INVALID);
	a = (CK_ATTRIBUTE){CKA_DERIVE, &yes, sizeof(yes)};
	ck_assert_uint_eq(p11p_vk_set_usage(CKO_CERTIFICATE, &a, &mask, &vals),
	                  CKR_ATTRIBUTE_TYPE_INVALID);
}
END_TEST

START_TEST(test_edits)
{
	struct p11p_vkey r = rec(CKO_PRIVATE_KEY, S, P11P_VK_ACTIVE);
	const char *why = NULL;

	ck_assert_int_eq(p11p_vk_set_state(&r, P11P_VK_DEACTIVATED, &why), P11P_VK_EDIT_CHANGED);
	ck_assert_int_eq(r.state, P11P_VK_DEACTIVATED);
	ck_assert_int_eq(p11p_vk_set_state(&r, P11P_VK_DEACTIVATED, &why), P11P_VK_EDIT_SAME);
	ck_assert_str_eq(why, "already deactivated");
	ck_assert_int_eq(p11p_vk_set_state(&r, P11P_VK_ACTIVE, &why), P11P_VK_EDIT_CHANGED);
	ck_assert_int_eq(r.state, P11P_VK_ACTIVE);
	ck_assert_int_eq(p11p_vk_set_state(&r, P11P_VK_ACTIVE, &why), P11P_VK_EDIT_SAME);
	/* Activated with no member holding it: missing. */
	r.state = P11P_VK_DEACTIVATED;
	r.presence = 0;
	ck_assert_int_eq(p11p_vk_set_state(&r, P11P_VK_ACTIVE, NULL), P11P_VK_EDIT_CHANGED);
	ck_assert_int_eq(r.state, P11P_VK_MISSING);
	ck_assert_int_eq(p11p_vk_set_state(&r, P11P_VK_MISSING, &why), P11P_VK_EDIT_REFUSED);
	ck_assert_int_eq(p11p_vk_set_state(&r, P11P_VK_DELETED, &why), P11P_VK_EDIT_CHANGED);
	ck_assert_int_eq(p11p_vk_set_state(&r, P11P_VK_DELETED, &why), P11P_VK_EDIT_SAME);
	ck_assert_int_eq(p11p_vk_set_state(&r, P11P_VK_ACTIVE, &why), P11P_VK_EDIT_REFUSED);
	ck_assert_int_eq(p11p_vk_set_state(&r, P11P_VK_DEACTIVATED, &why), P11P_VK_EDIT_REFUSED);
	ck_assert_int_eq(p11p_vk_set_perms(&r, S, 0, &why), P11P_VK_EDIT_REFUSED);

	r = rec(CKO_PRIVATE_KEY, S, P11P_VK_ACTIVE);
	ck_assert_int_eq(p11p_vk_set_perms(&r, P11P_VK_ALL, P11P_VK_ALL, NULL),
	                 P11P_VK_EDIT_CHANGED);
	ck_assert_uint_eq(r.perms, D | S | U | K); /* "allow all" on a private key */
	ck_assert_int_eq(p11p_vk_set_perms(&r, S, S, &why), P11P_VK_EDIT_SAME);
	ck_assert_int_eq(p11p_vk_set_perms(&r, S | E, 0, NULL), P11P_VK_EDIT_CHANGED);
	ck_assert_uint_eq(r.perms, D | U | K);
	/* A stale bit of another table goes with the next change. */
	r = rec(CKO_PUBLIC_KEY, V | K, P11P_VK_ACTIVE);
	ck_assert_int_eq(p11p_vk_set_perms(&r, E, E, NULL), P11P_VK_EDIT_CHANGED);
	ck_assert_uint_eq(r.perms, E | V);

	ck_assert_uint_eq(p11p_vk_rotated_perms(P11P_VK_ALL), D | V);
	ck_assert_uint_eq(p11p_vk_public_half(S), V);
	ck_assert_uint_eq(p11p_vk_public_half(D | S | U | K), E | V | W);
	ck_assert_uint_eq(p11p_vk_public_half(K), 0);
	ck_assert_uint_eq(p11p_vk_public_half(D | S | U | K) & ~p11p_vk_class_perms(CKO_PUBLIC_KEY),
	                  0);
}
END_TEST

START_TEST(test_sync)
{
	struct p11p_vkey r = rec(CKO_SECRET_KEY, E, P11P_VK_ACTIVE);

	r.key_type = CKK_AES;
	r.presence = 0x3;
	ck_assert_int_eq(p11p_vk_sync_seen(&r, 0x3, 0x3, CKK_AES), P11P_VK_SYNC_UNCHANGED);
	ck_assert_int_eq(p11p_vk_sync_seen(&r, 0x1, 0x3, CKK_AES), P11P_VK_SYNC_UPDATED);
	ck_assert_uint_eq(r.presence, 0x1);
	/* A member not listed completely keeps its bit. */
	r.presence = 0x3;
	ck_assert_int_eq(p11p_vk_sync_seen(&r, 0x1, 0x1, CKK_AES), P11P_VK_SYNC_UNCHANGED);
	ck_assert_uint_eq(r.presence, 0x3);
	ck_assert_int_eq(p11p_vk_sync_unseen(&r, 0x1), P11P_VK_SYNC_UPDATED);
	ck_assert_uint_eq(r.presence, 0x2);
	ck_assert_int_eq(p11p_vk_sync_unseen(&r, 0x3), P11P_VK_SYNC_MISSING);
	ck_assert_int_eq(r.state, P11P_VK_MISSING);
	ck_assert_int_eq(p11p_vk_sync_unseen(&r, 0x3), P11P_VK_SYNC_UNCHANGED);
	ck_assert_int_eq(p11p_vk_sync_seen(&r, 0x1, 0x3, CKK_AES), P11P_VK_SYNC_FOUND);
	ck_assert_int_eq(r.state, P11P_VK_ACTIVE);
	/* Permissions never change in a sync; a deactivated key stays deactivated. */
	ck_assert_uint_eq(r.perms, E);
	r.state = P11P_VK_DEACTIVATED;
	ck_assert_int_eq(p11p_vk_sync_unseen(&r, 0x3), P11P_VK_SYNC_MISSING);
	ck_assert_int_eq(r.state, P11P_VK_DEACTIVATED);
	r.state = P11P_VK_DELETED;
	ck_assert_int_eq(p11p_vk_sync_seen(&r, 0x1, 0x1, CKK_DES3), P11P_VK_SYNC_DELETED);
	ck_assert_uint_eq(r.key_type, CKK_AES);
	ck_assert_int_eq(p11p_vk_sync_unseen(&r, 0x1), P11P_VK_SYNC_DELETED);
}
END_TEST

/* write_back x scan: every cell. */
START_TEST(test_policy_matrix)
{
	for (int wb = 0; wb < 2; wb++) {
		for (int sc = 0; sc < 2; sc++) {
			struct p11p_policy_cfg p = {wb != 0, sc ? P11P_SCAN_OWNED : P11P_SCAN_ALL};
			enum p11p_vk_route hsm = wb ? P11P_VK_HSM_FIRST : P11P_VK_RECORD_ONLY;

			ck_assert_int_eq(p11p_vk_on_unrecorded(&p, true),
			                 sc ? P11P_VK_HIDE : P11P_VK_IMPORT);
			ck_assert_int_eq(p11p_vk_on_unrecorded(&p, false), P11P_VK_HIDE);
			ck_assert_int_eq(p11p_vk_route(&p, P11P_VK_CHANGE_PERMS), hsm);
			ck_assert_int_eq(p11p_vk_route(&p, P11P_VK_CHANGE_DELETE), hsm);
			ck_assert_int_eq(p11p_vk_route(&p, P11P_VK_CHANGE_ATTRS),
			                 wb ? P11P_VK_HSM_FIRST : P11P_VK_REFUSE);
			ck_assert_int_eq(p11p_vk_route(&p, P11P_VK_CHANGE_STATE),
			                 P11P_VK_RECORD_ONLY);
		}
	}
}
END_TEST

static Suite *vkmodel_suite(void)
{
	Suite *s = suite_create("vkmodel");
	TCase *tc = tcase_create("model");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_class_table);
	tcase_add_test(tc, test_perm_attrs_names);
	tcase_add_test(tc, test_words);
	tcase_add_test(tc, test_words_are_the_audit_trail_s);
	tcase_add_test(tc, test_usage_template);
	tcase_add_test(tc, test_record_new);
	tcase_add_test(tc, test_record_better);
	tcase_add_test(tc, test_use_find_attrs);
	tcase_add_test(tc, test_edits);
	tcase_add_test(tc, test_sync);
	tcase_add_test(tc, test_policy_matrix);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(vkmodel_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
