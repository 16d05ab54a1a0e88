#include "keys.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <p11-kit/uri.h>

#include "base/mem.h"
#include "base/names.h"
#include "base/secret.h"
#include "cli.h"
#include "util.h"
#include "ha/order.h"
#include "index/sql.h"

/* ---- the index ---------------------------------------------------------------------------- */

int keys_index_open(const struct p11p_config *cfg, bool create, struct p11p_index **out)
{
	char err[KEYS_ERR_LEN], dir[PATH_MAX];
	struct stat sb;
	char *slash;
	CK_RV rv;

	*out = NULL;
	if (cfg->index_path == NULL ||
	    (cfg->index_path[0] != '/' && !p11p_sql_is_pg(cfg->index_path))) {
		cli_error("no virtual-key index in the configuration (index: or state_dir:)");
		return -1;
	}
	if (!p11p_sql_is_pg(cfg->index_path) && stat(cfg->index_path, &sb) != 0 &&
	    errno == ENOENT) {
		if (!create)
			return 0;
		/* The directory holding it (state_dir by default), private like the index. */
		snprintf(dir, sizeof(dir), "%s", cfg->index_path);
		slash = strrchr(dir, '/');
		if (slash != NULL && slash != dir) {
			*slash = '\0';
			if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
				cli_error("cannot create %s: %s", dir, strerror(errno));
				return -1;
			}
		}
	}
	err[0] = '\0';
	rv = p11p_index_open(cfg->index_path, out, err, sizeof(err));
	if (rv != CKR_OK) {
		cli_error("%s", err[0] != '\0' ? err : cli_rv(rv));
		*out = NULL;
		return -1;
	}
	return 0;
}

int keys_overlay_store(const struct p11p_config *cfg, bool create, struct p11p_index **out)
{
	struct stat sb;

	*out = NULL;
	if (cfg->index_path == NULL || cfg->index_path[0] == '\0')
		return 0;
	if (!cfg->index_explicit &&
	    (cfg->state_dir == NULL || stat(cfg->state_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)))
		return 0;
	return keys_index_open(cfg, create, out) != 0 ? -1 : 1;
}

/* ---- names (the words are the key model's) ---------------------------------------------- */

const char *keys_perms_shown(const struct p11p_vkey *v, char buf[P11P_VK_PERMS_STR])
{
	return p11p_vk_perms_str(p11p_vk_perms_of(v), buf);
}

const char *keys_type_name(CK_KEY_TYPE kt, char *buf, size_t len)
{
	const char *n = kt == CKK_EC ? "CKK_EC" : p11p_ckk_name(kt);

	if (n != NULL && strncmp(n, "CKK_", 4) == 0)
		return n + 4;
	snprintf(buf, len, "0x%lx", (unsigned long)kt);
	return buf;
}

const char *keys_label(const struct p11p_vkey *v)
{
	return cli_escn(v->label, v->label_len);
}

const char *keys_id(const struct p11p_vkey *v, char *buf, size_t len, const char *none)
{
	return v->ck_id_len > 0 ? cli_hex(v->ck_id, v->ck_id_len, buf, len) : none;
}

/* The effective member order of each slot, read once (tools are short-lived). */
static struct {
	const struct p11p_config *cfg;
	struct p11p_order *o[P11P_MAX_SLOTS];
} orders;

void keys_orders_free(void)
{
	for (size_t i = 0; i < P11P_MAX_SLOTS; i++) {
		if (orders.o[i] != NULL)
			p11p_order_clear(orders.o[i]);
		p11p_free(orders.o[i]);
		orders.o[i] = NULL;
	}
	orders.cfg = NULL;
}

static const struct p11p_order *slot_order(const struct p11p_config *cfg, size_t s)
{
	char err[1024];

	if (orders.cfg != cfg)
		keys_orders_free();
	orders.cfg = cfg;
	if (s >= P11P_MAX_SLOTS)
		return NULL;
	if (orders.o[s] == NULL) {
		orders.o[s] = p11p_calloc(1, sizeof(*orders.o[s]));
		if (orders.o[s] == NULL)
			return NULL;
		cli_slot_order(cfg, s, orders.o[s], err, sizeof(err));
	}
	return orders.o[s];
}

/* Presence bit i of slot s: its number in the effective order (0: left out), and its name. */
static size_t member_of(const struct p11p_config *cfg, size_t s, unsigned i, const char **name)
{
	const struct p11p_order *o;

	*name = "?";
	if (s == (size_t)-1 || i >= cfg->slots[s].n_members)
		return 0;
	if (cfg->slots[s].members[i].name != NULL)
		*name = cfg->slots[s].members[i].name;
	o = slot_order(cfg, s);
	return o != NULL ? cli_member_number(o, i) : 0;
}

const char *keys_presence_str(const struct p11p_config *cfg, const struct p11p_vkey *v,
                              bool names, char *buf, size_t len)
{
	size_t s = keys_slot_by_label(cfg, v->slot), o = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < P11P_INDEX_MAX_MEMBERS; i++) {
		const char *name;
		size_t num;
		int w;

		if (!(v->presence & (1u << i)))
			continue;
		num = member_of(cfg, s, i, &name);
		if (num == 0)
			w = snprintf(buf + o, len - o, "%s%s (deleted)", o > 0 ? ", " : "",
			             cli_esc(name));
		else if (names)
			w = snprintf(buf + o, len - o, "%s%zu %s", o > 0 ? ", " : "", num,
			             cli_esc(name));
		else
			w = snprintf(buf + o, len - o, "%s%zu", o > 0 ? "," : "", num);
		if (w < 0 || (size_t)w >= len - o)
			break;
		o += (size_t)w;
	}
	if (o == 0)
		snprintf(buf, len, "-");
	return buf;
}

static json_t *vid_json(uint64_t vid)
{
	char b[24];

	if (vid == 0)
		return json_null();
	snprintf(b, sizeof(b), "%016llx", (unsigned long long)vid);
	return json_string(b);
}

json_t *keys_json_record(const struct p11p_config *cfg, const struct p11p_vkey *v)
{
	char b[2 * P11P_INDEX_ID_MAX + 1], perms[P11P_VK_PERMS_STR], tb[32];
	uint32_t granted = p11p_vk_perms_of(v);
	size_t s = keys_slot_by_label(cfg, v->slot);
	json_t *o = json_object(), *jp = json_array(), *jpres = json_array(), *jnames = json_array();

	cli_jset(o, "vid", vid_json(v->vid));
	cli_jset(o, "rev", json_integer((json_int_t)v->rev));
	cli_jset(o, "slot", cli_jstr(v->slot));
	cli_jset(o, "class", json_string(p11p_vk_class_name(v->cls)));
	cli_jset(o, "key_type", cli_jstr(keys_type_name(v->key_type, tb, sizeof(tb))));
	cli_jset(o, "label", cli_jstrn(v->label, v->label_len));
	cli_jset(o, "id", cli_jstr(cli_hex(v->ck_id, v->ck_id_len, b, sizeof(b))));
	cli_jset(o, "perms", json_string(p11p_vk_perms_str(granted, perms)));
	for (unsigned i = 0; i < P11P_VK_NPERMS; i++)
		if (granted & (1u << i))
			json_array_append_new(jp, json_string(p11p_vk_perm_name(i)));
	cli_jset(o, "permissions", jp);
	cli_jset(o, "state", json_string(p11p_vk_state_name(v->state)));
	cli_jset(o, "origin", json_string(p11p_vk_origin_name(v->origin)));
	for (unsigned i = 0; i < P11P_INDEX_MAX_MEMBERS; i++) {
		const char *name;
		size_t num;

		if (!(v->presence & (1u << i)))
			continue;
		num = member_of(cfg, s, i, &name);
		if (num > 0)
			json_array_append_new(jpres, json_integer((json_int_t)num));
		json_array_append_new(jnames, cli_jstr(name));
	}
	cli_jset(o, "presence", jpres);
	cli_jset(o, "members", jnames);
	cli_jset(o, "created", cli_jtime(v->created));
	cli_jset(o, "updated", cli_jtime(v->updated));
	cli_jset(o, "prev", vid_json(v->prev));
	cli_jset(o, "next", vid_json(v->next));
	return o;
}

/* ---- KEY resolution ----------------------------------------------------------------------- */

size_t keys_slot_by_label(const struct p11p_config *cfg, const char *label)
{
	for (size_t i = 0; i < cfg->n_slots; i++)
		if (cfg->slots[i].label != NULL && strcmp(cfg->slots[i].label, label) == 0)
			return i;
	return (size_t)-1;
}

/* Matches collected over the slots searched. */
struct matches {
	struct p11p_vkey *v;
	size_t n, cap;
};

static int add_matches(struct matches *ms, struct p11p_index *idx, struct p11p_vkey_match *m,
                       bool with_deleted)
{
	size_t count = 0;
	struct p11p_vkey *buf;
	CK_RV rv = p11p_index_find(idx, m, NULL, 0, &count);

	if (rv != CKR_OK || count == 0)
		return rv == CKR_OK ? 0 : -1;
	buf = p11p_calloc(count, sizeof(*buf));
	if (buf == NULL)
		return -1;
	rv = p11p_index_find(idx, m, buf, count, &count);
	for (size_t i = 0; rv == CKR_OK && i < count; i++) {
		if (!with_deleted && buf[i].state == P11P_VK_DELETED)
			continue;
		if (ms->n == ms->cap) {
			size_t cap = ms->cap ? ms->cap * 2 : 8;
			struct p11p_vkey *g = p11p_reallocarray(ms->v, cap, sizeof(*g));

			if (g == NULL) {
				rv = CKR_HOST_MEMORY;
				break;
			}
			ms->v = g;
			ms->cap = cap;
		}
		ms->v[ms->n++] = buf[i];
	}
	p11p_free(buf);
	return rv == CKR_OK ? 0 : -1;
}

/* Searches every slot (or `slot`) with the template m (m.slot set per slot). */
static int search(struct matches *ms, struct p11p_index *idx, const struct p11p_config *cfg,
                  const char *slot, struct p11p_vkey_match *m, bool with_deleted)
{
	if (slot != NULL) {
		m->slot = slot;
		return add_matches(ms, idx, m, with_deleted);
	}
	for (size_t i = 0; i < cfg->n_slots; i++) {
		if (cfg->slots[i].label == NULL || cfg->slots[i].label[0] == '\0')
			continue;
		m->slot = cfg->slots[i].label;
		if (add_matches(ms, idx, m, with_deleted) != 0)
			return -1;
	}
	return 0;
}

/* A pkcs11: URI into a match template: object=, id=, type=, token= (the slot). */
static int uri_match(const char *key, struct p11p_vkey_match *m, const char **slot,
                     unsigned char *id, unsigned char *label, char *token)
{
	P11KitUri *uri = p11_kit_uri_new();
	CK_ATTRIBUTE *a;
	CK_TOKEN_INFO *ti;
	int rc = -1, prv;

	if (uri == NULL) {
		cli_error("out of memory");
		return -1;
	}
	prv = p11_kit_uri_parse(key, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, uri);
	if (prv != P11_KIT_URI_OK) {
		cli_error("'%s': not a valid PKCS#11 URI (%s)", key, p11_kit_uri_message(prv));
		goto out;
	}
	a = p11_kit_uri_get_attribute(uri, CKA_LABEL);
	if (a != NULL) {
		if (a->ulValueLen > P11P_INDEX_LABEL_MAX) {
			cli_error("'%s': object= is too long", key);
			goto out;
		}
		memcpy(label, a->pValue, a->ulValueLen);
		m->has_label = true;
		m->label = label;
		m->label_len = a->ulValueLen;
	}
	a = p11_kit_uri_get_attribute(uri, CKA_ID);
	if (a != NULL) {
		if (a->ulValueLen > P11P_INDEX_ID_MAX) {
			cli_error("'%s': id= is too long", key);
			goto out;
		}
		memcpy(id, a->pValue, a->ulValueLen);
		m->has_ck_id = true;
		m->ck_id = id;
		m->ck_id_len = a->ulValueLen;
	}
	a = p11_kit_uri_get_attribute(uri, CKA_CLASS);
	if (a != NULL && a->ulValueLen == sizeof(CK_OBJECT_CLASS)) {
		memcpy(&m->cls, a->pValue, sizeof(m->cls));
		m->has_class = true;
	}
	if (!m->has_label && !m->has_ck_id) {
		cli_error("'%s': the URI names no object (object= or id=)", key);
		goto out;
	}
	ti = p11_kit_uri_get_token_info(uri);
	if (ti != NULL && ti->label[0] != 0 && ti->label[0] != ' ') {
		char tl[33];

		p11p_unpad(tl, ti->label, sizeof(ti->label));
		if (*slot != NULL && strcmp(*slot, tl) != 0) {
			cli_error("'%s': token=%s is not slot %s", key, tl, *slot);
			goto out;
		}
		memcpy(token, tl, sizeof(tl));
		*slot = token;
	}
	rc = 0;
out:
	p11_kit_uri_free(uri);
	return rc;
}

static int pick(struct matches *ms, const char *key, const char *how, struct p11p_vkey *out)
{
	char ib[2 * P11P_INDEX_ID_MAX + 1];

	if (ms->n == 1) {
		*out = ms->v[0];
		return 1;
	}
	cli_error("'%s' matches %zu keys (by %s); name one by its virtual id:", key, ms->n, how);
	for (size_t i = 0; i < ms->n; i++) {
		const struct p11p_vkey *v = &ms->v[i];

		fprintf(stderr, "  %016llx  slot %s  %s key \"%s\" id %s  %s\n",
		        (unsigned long long)v->vid, cli_esc(v->slot), p11p_vk_class_name(v->cls),
		        keys_label(v), keys_id(v, ib, sizeof(ib), "(none)"),
		        p11p_vk_state_name(v->state));
	}
	return -1;
}

int keys_resolve(struct p11p_index *idx, const struct p11p_config *cfg, const char *key,
                 const char *slot, bool with_deleted, struct p11p_vkey *out)
{
	unsigned char id[P11P_INDEX_ID_MAX + 1], label[P11P_INDEX_LABEL_MAX + 1];
	char token[33];
	struct matches ms = {0};
	struct p11p_vkey_match m;
	size_t klen = strlen(key);
	long n;
	int rc = 0;

	/* 1. A virtual id. */
	if (klen == 16 && strspn(key, "0123456789abcdefABCDEF") == 16) {
		uint64_t vid = strtoull(key, NULL, 16);
		bool found = false;

		if (p11p_index_get(idx, vid, out, &found) != CKR_OK)
			goto oom;
		if (found && (slot == NULL || strcmp(out->slot, slot) == 0))
			return 1;
	}
	/* 2. A pkcs11: URI. */
	if (strncmp(key, "pkcs11:", 7) == 0) {
		memset(&m, 0, sizeof(m));
		if (uri_match(key, &m, &slot, id, label, token) != 0)
			return -1;
		if (search(&ms, idx, cfg, slot, &m, with_deleted) != 0)
			goto oom;
		rc = ms.n == 0 ? 0 : pick(&ms, key, "URI", out);
		goto out;
	}
	/* 3. A label. */
	if (klen <= P11P_INDEX_LABEL_MAX) {
		memset(&m, 0, sizeof(m));
		m.has_label = true;
		m.label = (const unsigned char *)key;
		m.label_len = klen;
		if (search(&ms, idx, cfg, slot, &m, with_deleted) != 0)
			goto oom;
		if (ms.n > 0) {
			rc = pick(&ms, key, "label", out);
			goto out;
		}
	}
	/* 4. A CKA_ID in hex. */
	n = cli_unhex(key, id, P11P_INDEX_ID_MAX);
	if (n > 0) {
		memset(&m, 0, sizeof(m));
		m.has_ck_id = true;
		m.ck_id = id;
		m.ck_id_len = (size_t)n;
		if (search(&ms, idx, cfg, slot, &m, with_deleted) != 0)
			goto oom;
		if (ms.n > 0)
			rc = pick(&ms, key, "CKA_ID", out);
	}
out:
	p11p_free(ms.v);
	return rc;
oom:
	p11p_free(ms.v);
	cli_error("cannot search the index: out of memory");
	return -1;
}

/* ---- member sessions ---------------------------------------------------------------------- */

bool keys_member_open(struct cli_backends *bes, const struct p11p_member_cfg *mc, size_t idx,
                      bool rw, bool need_login, struct keys_member *km)
{
	CK_UTF8CHAR pinbuf[P11P_MAX_PIN_LEN];
	size_t len;
	CK_RV rv;

	memset(km, 0, sizeof(*km));
	km->m.cfg = mc;
	km->m.index = idx;
	atomic_init(&km->m.health, P11P_UP);
	km->m.be = cli_backend(bes, mc->backend, km->err, sizeof(km->err));
	if (km->m.be == NULL)
		return false;
	km->bc = p11p_backend_ctx(km->m.be);
	rv = p11p_member_resolve(&km->m, p11p_backend_ctx(km->m.be), km->err, sizeof(km->err));
	if (rv != CKR_OK) {
		if (km->err[0] == '\0')
			snprintf(km->err, sizeof(km->err), "%s", cli_rv(rv));
		return false;
	}
	rv = p11p_be_C_OpenSession(km->bc, km->m.be_slot,
	                           CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0), NULL, NULL,
	                           &km->h);
	if (rv != CKR_OK) {
		snprintf(km->err, sizeof(km->err), "C_OpenSession: %s", cli_rv(rv));
		return false;
	}
	km->open = true;
	if (mc->pin == NULL) {
		if (!need_login)
			return true;
		snprintf(km->err, sizeof(km->err),
		         "no PIN configured for the member (pin: in proxy.yaml): cannot change "
		         "its keys");
		keys_member_close(km);
		return false;
	}
	len = p11p_secret_len(mc->pin);
	if (len > sizeof(pinbuf)) {
		snprintf(km->err, sizeof(km->err), "PIN too long");
		keys_member_close(km);
		return false;
	}
	memcpy(pinbuf, p11p_secret_data(mc->pin), len);
	rv = p11p_be_C_Login(km->bc, km->h, CKU_USER, pinbuf, (CK_ULONG)len);
	p11p_wipe(pinbuf, sizeof(pinbuf));
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		snprintf(km->err, sizeof(km->err), "C_Login: %s", cli_rv(rv));
		keys_member_close(km);
		return false;
	}
	km->logged_in = true;
	return true;
}

void keys_member_close(struct keys_member *km)
{
	if (!km->open)
		return;
	if (km->logged_in)
		p11p_be_C_Logout(km->bc, km->h);
	p11p_be_C_CloseSession(km->bc, km->h);
	km->open = false;
	km->logged_in = false;
}

CK_RV keys_member_find(struct keys_member *km, CK_OBJECT_CLASS cls, const unsigned char *id,
                       size_t id_len, const unsigned char *label, size_t label_len,
                       CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *n)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_ID, (void *)(uintptr_t)id, id_len},
	    {CKA_LABEL, (void *)(uintptr_t)label, label_len},
	};
	CK_OBJECT_HANDLE extra[16];
	CK_ULONG got = 0, more;
	CK_RV rv;

	*n = 0;
	rv = p11p_be_C_FindObjectsInit(km->bc, km->h, t, 4);
	if (rv != CKR_OK)
		return rv;
	rv = p11p_be_C_FindObjects(km->bc, km->h, out, max, &got);
	if (rv == CKR_OK && got > max)
		rv = CKR_GENERAL_ERROR;
	/* Count what did not fit, so that callers can tell "one" from "several". */
	while (rv == CKR_OK && got == max) {
		more = 0;
		rv = p11p_be_C_FindObjects(km->bc, km->h, extra, 16, &more);
		if (rv != CKR_OK || more == 0 || more > 16)
			break;
		*n += more;
	}
	p11p_be_C_FindObjectsFinal(km->bc, km->h);
	*n += got;
	return rv;
}

const char *keys_member_name(const struct p11p_config *cfg, size_t s, size_t i)
{
	const char *name;
	size_t num = member_of(cfg, s, (unsigned)i, &name);
	char *buf = p11p_malloc(160);

	if (buf == NULL)
		return "member ?";
	if (num > 0)
		snprintf(buf, 160, "member %zu %s", num, name);
	else
		snprintf(buf, 160, "member %s (not in the member order)", name);
	/* Kept with the escaped strings: valid until cli_esc's ring turns. */
	name = cli_esc(buf);
	p11p_free(buf);
	return name;
}
