/*
 * customer_fragments.json: parser and writer. See fragment.h for the format.
 *
 * Parsing uses config/ydoc.c, as config/config.c does: a prescan with the
 * event parser bounds depth, node count and document count, then
 * yaml_parser_load builds the tree and a fixed-depth schema walk reads it (so
 * aliases cannot make it loop). Every scalar of the document, the parser's
 * buffers and our copy of the file are wiped before they are freed: they hold
 * fragment values.
 */
#include "crypto/fragment.h"
#include "base/text.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <yaml.h>

#include "base/file.h"
#include "base/log.h"
#include "base/mem.h"
#include "config/ydoc.h"
#include "base/ossl.h"

struct fctx {
	struct p11p_ydoc y; /* name, err, the document */
	struct p11p_fragments *set;
};

/* The text holds fragment values: libyaml's copies of it are wiped. */
#define YDOC_INIT(name_, err_, errlen_)                                                            \
	{                                                                                          \
		.name = (name_), .debug_tag = "fragments: ", .err = (err_), .errlen = (errlen_),   \
		.secret = true                                                                     \
	}

/* ---- messages ------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Canonical base64 decoding to exactly outlen bytes. */
static bool b64_exact(const char *s, size_t len, unsigned char *out, size_t outlen)
{
	size_t n = 0;

	return p11p_b64_decode(s, len, out, outlen, &n) && n == outlen;
}

/* Well-formed UTF-8 (no overlongs, no surrogates), no NUL. */
static bool utf8_ok(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		unsigned cp;

		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		i += n + 1;
	}
	return true;
}

static bool name_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > P11P_FRAGMENT_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return false;
	return true;
}

/* ---- public helpers ------------------------------------------------------ */

const char *p11p_fragment_type_name(enum p11p_fragment_type type)
{
	switch (type) {
	case P11P_FRAGMENT_HSM_WRAPPED:
		return "hsm_wrapped";
	case P11P_FRAGMENT_HSM_SECURED:
		return "hsm_secured";
	}
	return "unknown";
}

enum p11p_fragment_type p11p_fragment_type_parse(const char *s)
{
	if (s == NULL)
		return 0;
	if (strcmp(s, "hsm_wrapped") == 0)
		return P11P_FRAGMENT_HSM_WRAPPED;
	if (strcmp(s, "hsm_secured") == 0)
		return P11P_FRAGMENT_HSM_SECURED;
	return 0;
}

CK_RV p11p_fragment_check_value(const unsigned char *value, size_t len,
                                unsigned char out[P11P_FRAGMENT_CHECK_LEN])
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_MD *sha = NULL;
	CK_RV rv = CKR_GENERAL_ERROR;

	p11p_return_val_if_fail(value != NULL && out != NULL, CKR_ARGUMENTS_BAD);
	if (lib == NULL)
		return CKR_HOST_MEMORY;
	sha = EVP_MD_fetch(lib, "SHA256", NULL);
	if (sha != NULL && EVP_Digest(value, len, md, &mdlen, sha, NULL) && mdlen == sizeof(md)) {
		memcpy(out, md, P11P_FRAGMENT_CHECK_LEN);
		rv = CKR_OK;
	}
	EVP_MD_free(sha);
	p11p_wipe(md, sizeof(md));
	return rv;
}

struct p11p_fragments *p11p_fragments_new(void)
{
	return p11p_calloc(1, sizeof(struct p11p_fragments));
}

static void fragment_clear(struct p11p_fragment *f)
{
	p11p_free(f->name);
	p11p_free(f->hsm_key_label);
	p11p_secret_free(f->value);
	p11p_free(f->id);
	p11p_free(f->description);
	memset(f, 0, sizeof(*f));
}

void p11p_fragments_free(struct p11p_fragments *set)
{
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->n; i++)
		fragment_clear(&set->items[i]);
	p11p_free(set->items);
	p11p_free(set->path);
	p11p_free(set);
}

const struct p11p_fragment *p11p_fragments_find(const struct p11p_fragments *set, const char *name)
{
	if (set == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->items[i].name, name) == 0)
			return &set->items[i];
	return NULL;
}

/* ---- parsing ------------------------------------------------------------- */

enum { FK_NAME, FK_TYPE, FK_LABEL, FK_VALUE, FK_CHECK, FK_ID, FK_DESC, FK_N };
static const char *const fragment_keys[FK_N] = {"name",        "type", "hsm_key_label", "value",
                                                "check_value", "id",   "description"};

static char *dup_or_oom(struct fctx *c, const char *s, size_t len)
{
	char *d = p11p_strndup(s, len);

	if (d == NULL)
		p11p_ydoc_oom(&c->y);
	return d;
}

static bool parse_value(struct fctx *c, const yaml_node_t *v, const yaml_node_t *check,
                        struct p11p_fragment *f)
{
	unsigned char raw[P11P_FRAGMENT_LEN], cv[P11P_FRAGMENT_CHECK_LEN], want[sizeof(cv)];
	const char *s, *cs;
	size_t len, clen;
	bool ok = false;

	if (!p11p_ydoc_string(&c->y, v, "value", 4 * P11P_FRAGMENT_LEN, &s, &len))
		return false;
	if (!p11p_hex_decode(s, len, raw, sizeof(raw)) && !b64_exact(s, len, raw, sizeof(raw))) {
		p11p_ydoc_report(
		    &c->y, &v->start_mark,
		    "'value' must be %d bytes in hex (%d digits) or base64 (%d characters)",
		    P11P_FRAGMENT_LEN, 2 * P11P_FRAGMENT_LEN, (P11P_FRAGMENT_LEN + 2) / 3 * 4);
		goto out;
	}
	if (check != NULL) {
		if (!p11p_ydoc_string(&c->y, check, "check_value", 2 * sizeof(cv), &cs, &clen))
			goto out;
		if (!p11p_hex_decode(cs, clen, cv, sizeof(cv))) {
			p11p_ydoc_report(&c->y, &check->start_mark,
			                 "'check_value' must be %zu hex digits", 2 * sizeof(cv));
			goto out;
		}
		if (p11p_fragment_check_value(raw, sizeof(raw), want) != CKR_OK) {
			p11p_ydoc_report(&c->y, &check->start_mark,
			                 "cannot compute the check value");
			goto out;
		}
		if (memcmp(cv, want, sizeof(cv)) != 0) {
			p11p_ydoc_report(&c->y, &check->start_mark,
			                 "'check_value' does not match 'value'");
			goto out;
		}
	}
	f->value = p11p_secret_new(raw, sizeof(raw));
	if (f->value == NULL) {
		p11p_ydoc_oom(&c->y);
		goto out;
	}
	ok = true;
out:
	p11p_wipe(raw, sizeof(raw));
	return ok;
}

static bool parse_fragment(struct fctx *c, const yaml_node_t *n, struct p11p_fragment *f)
{
	yaml_node_t *v[FK_N];
	char buf[P11P_YDOC_SHOW_BUF], tname[16];
	const char *s;
	size_t len;

	if (n->type != YAML_MAPPING_NODE)
		return p11p_ydoc_report(&c->y, &n->start_mark, "each fragment must be a mapping");
	if (!p11p_ydoc_walk_map(&c->y, n, "in fragment", fragment_keys, FK_N, v, NULL))
		return false;
	f->line = (unsigned long)n->start_mark.line + 1;
	f->column = (unsigned long)n->start_mark.column + 1;
	for (int i = FK_NAME; i <= FK_VALUE; i++)
		if (v[i] == NULL)
			return p11p_ydoc_report(&c->y, &n->start_mark,
			                        "missing key '%s' in fragment", fragment_keys[i]);

	if (!p11p_ydoc_string(&c->y, v[FK_NAME], "name", P11P_FRAGMENT_NAME_MAX, &s, &len))
		return false;
	if (len == 0)
		return p11p_ydoc_report(&c->y, &v[FK_NAME]->start_mark, "fragment name is empty");
	f->name = dup_or_oom(c, s, len);
	if (f->name == NULL)
		return false;
	if (!name_ok(f->name))
		return p11p_ydoc_report(
		    &c->y, &v[FK_NAME]->start_mark,
		    "fragment name '%s' may only contain letters, digits, '.', '_', '-'",
		    p11p_ydoc_show(s, len, buf));
	for (size_t i = 0; i < c->set->n && &c->set->items[i] != f; i++)
		if (strcmp(c->set->items[i].name, f->name) == 0)
			return p11p_ydoc_report(&c->y, &v[FK_NAME]->start_mark,
			                        "duplicate fragment name '%s' (first at line %lu)",
			                        f->name, c->set->items[i].line);

	if (v[FK_TYPE]->type != YAML_SCALAR_NODE)
		return p11p_ydoc_report(&c->y, &v[FK_TYPE]->start_mark, "'type' must be a string");
	s = (const char *)v[FK_TYPE]->data.scalar.value;
	len = v[FK_TYPE]->data.scalar.length;
	f->type = 0;
	if (len < sizeof(tname) && memchr(s, '\0', len) == NULL) {
		memcpy(tname, s, len);
		tname[len] = '\0';
		f->type = p11p_fragment_type_parse(tname);
	}
	if (f->type == 0)
		return p11p_ydoc_report(&c->y, &v[FK_TYPE]->start_mark,
		                        "fragment type '%s' must be 'hsm_wrapped' or 'hsm_secured'",
		                        p11p_ydoc_show(s, len, buf));

	if (!p11p_ydoc_string(&c->y, v[FK_LABEL], "hsm_key_label", P11P_FRAGMENT_LABEL_MAX, &s,
	                      &len))
		return false;
	if (len == 0)
		return p11p_ydoc_report(&c->y, &v[FK_LABEL]->start_mark, "hsm_key_label is empty");
	f->hsm_key_label = dup_or_oom(c, s, len);
	if (f->hsm_key_label == NULL)
		return false;

	if (v[FK_ID] != NULL) {
		if (!p11p_ydoc_string(&c->y, v[FK_ID], "id", P11P_FRAGMENT_TEXT_MAX, &s, &len))
			return false;
		f->id = dup_or_oom(c, s, len);
		if (f->id == NULL)
			return false;
	}
	if (v[FK_DESC] != NULL) {
		if (!p11p_ydoc_string(&c->y, v[FK_DESC], "description", P11P_FRAGMENT_TEXT_MAX, &s,
		                      &len))
			return false;
		f->description = dup_or_oom(c, s, len);
		if (f->description == NULL)
			return false;
	}
	return parse_value(c, v[FK_VALUE], v[FK_CHECK], f);
}

static const char *const root_keys[1] = {"customer_fragments"};

static bool parse_root(struct fctx *c)
{
	yaml_node_t *root = yaml_document_get_root_node(&c->y.doc), *list;
	size_t count;

	if (root == NULL)
		return p11p_ydoc_report(&c->y, NULL, "empty file");
	if (root->type != YAML_MAPPING_NODE)
		return p11p_ydoc_report(&c->y, &root->start_mark,
		                        "the top level must be a mapping");
	if (!p11p_ydoc_walk_map(&c->y, root, "at the top level", root_keys, 1, &list, NULL))
		return false;
	if (list == NULL)
		return p11p_ydoc_report(&c->y, &root->start_mark,
		                        "missing key 'customer_fragments'");
	if (list->type != YAML_SEQUENCE_NODE)
		return p11p_ydoc_report(&c->y, &list->start_mark,
		                        "'customer_fragments' must be a list");
	count = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
	if (count == 0)
		return p11p_ydoc_report(&c->y, &list->start_mark,
		                        "'customer_fragments' must not be empty");
	if (count > P11P_FRAGMENTS_MAX) {
		const yaml_node_t *extra =
		    p11p_ydoc_node(&c->y, list->data.sequence.items.start[P11P_FRAGMENTS_MAX]);

		return p11p_ydoc_report(&c->y, extra ? &extra->start_mark : &list->start_mark,
		                        "too many fragments (at most %d)", P11P_FRAGMENTS_MAX);
	}
	c->set->items = p11p_calloc(count, sizeof(*c->set->items));
	if (c->set->items == NULL)
		return p11p_ydoc_oom(&c->y);
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *item = p11p_ydoc_node(&c->y, list->data.sequence.items.start[i]);

		if (item == NULL)
			return p11p_ydoc_report(&c->y, &list->start_mark, "malformed list");
		/* Counted first so that a half-built entry is freed with the set. */
		c->set->n = i + 1;
		if (!parse_fragment(c, item, &c->set->items[i]))
			return false;
	}
	return true;
}

static const struct p11p_ydoc_limits fragment_limits = {
    .max_bytes = P11P_FRAGMENT_FILE_MAX,
    .max_depth = P11P_FRAGMENT_MAX_DEPTH,
    .max_nodes = P11P_FRAGMENT_MAX_NODES,
};

struct p11p_fragments *p11p_fragments_parse(const char *name, const void *data, size_t len,
                                            char *err, size_t errlen)
{
	struct fctx c = {.y = YDOC_INIT(name != NULL ? name : "<fragments>", err, errlen)};
	bool ok = false;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (data == NULL)
		len = 0;
	if (!p11p_ydoc_load(&c.y, data ? data : (const void *)"", len, &fragment_limits))
		goto out;
	c.set = p11p_fragments_new();
	if (c.set == NULL) {
		p11p_ydoc_oom(&c.y);
		goto out;
	}
	c.set->path = p11p_strdup(c.y.name);
	if (c.set->path == NULL) {
		p11p_ydoc_oom(&c.y);
		goto out;
	}
	ok = parse_root(&c);
out:
	p11p_ydoc_free(&c.y);
	if (!ok) {
		p11p_fragments_free(c.set);
		return NULL;
	}
	p11p_debug(P11P_DBG_CONFIG, "%s: %zu fragment(s)", c.y.name, c.set->n);
	return c.set;
}

struct p11p_fragments *p11p_fragments_load(const char *path, char *err, size_t errlen)
{
	struct p11p_ydoc y = YDOC_INIT(path, err, errlen);
	struct p11p_fragments *set = NULL;
	unsigned char *buf;
	size_t len;

	p11p_return_val_if_fail(path != NULL, NULL);
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (p11p_ydoc_read_file(&y, P11P_FRAGMENT_FILE_MAX, true, &buf, &len)) {
		set = p11p_fragments_parse(path, buf, len, err, errlen);
		p11p_wipe(buf, len);
		p11p_free(buf);
	}
	return set;
}

/* ---- adding and writing --------------------------------------------------- */

CK_RV p11p_fragments_add(struct p11p_fragments *set, const char *name, enum p11p_fragment_type type,
                         const char *hsm_key_label, const unsigned char *value, size_t value_len,
                         const char *description, char *err, size_t errlen)
{
	struct p11p_fragment f = {0}, *items;
	char buf[P11P_YDOC_SHOW_BUF];

	p11p_return_val_if_fail(set != NULL, CKR_ARGUMENTS_BAD);
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (name == NULL || !name_ok(name)) {
		set_err(err, errlen,
		        "fragment name '%s' must be 1 to %d letters, digits, '.', '_', '-'",
		        name ? p11p_ydoc_show(name, strlen(name), buf) : "",
		        P11P_FRAGMENT_NAME_MAX);
		return CKR_ARGUMENTS_BAD;
	}
	if (p11p_fragments_find(set, name) != NULL) {
		set_err(err, errlen, "a fragment named '%s' exists already", name);
		return CKR_ARGUMENTS_BAD;
	}
	if (type != P11P_FRAGMENT_HSM_WRAPPED && type != P11P_FRAGMENT_HSM_SECURED) {
		set_err(err, errlen, "fragment type must be hsm_wrapped or hsm_secured");
		return CKR_ARGUMENTS_BAD;
	}
	if (hsm_key_label == NULL || hsm_key_label[0] == '\0' ||
	    strlen(hsm_key_label) > P11P_FRAGMENT_LABEL_MAX ||
	    !utf8_ok(hsm_key_label, strlen(hsm_key_label))) {
		set_err(err, errlen, "HSM key label must be 1 to %d bytes of UTF-8",
		        P11P_FRAGMENT_LABEL_MAX);
		return CKR_ARGUMENTS_BAD;
	}
	if (description != NULL && (strlen(description) > P11P_FRAGMENT_TEXT_MAX ||
	                            !utf8_ok(description, strlen(description)))) {
		set_err(err, errlen, "description must be at most %d bytes of UTF-8",
		        P11P_FRAGMENT_TEXT_MAX);
		return CKR_ARGUMENTS_BAD;
	}
	if (value == NULL || value_len != P11P_FRAGMENT_LEN) {
		set_err(err, errlen, "a fragment value is %d bytes", P11P_FRAGMENT_LEN);
		return CKR_ARGUMENTS_BAD;
	}
	if (set->n >= P11P_FRAGMENTS_MAX) {
		set_err(err, errlen, "too many fragments (at most %d)", P11P_FRAGMENTS_MAX);
		return CKR_ARGUMENTS_BAD;
	}
	f.type = type;
	f.name = p11p_strdup(name);
	f.hsm_key_label = p11p_strdup(hsm_key_label);
	f.value = p11p_secret_new(value, value_len);
	if (description != NULL)
		f.description = p11p_strdup(description);
	if (f.name == NULL || f.hsm_key_label == NULL || f.value == NULL ||
	    (description != NULL && f.description == NULL))
		goto oom;
	items = p11p_reallocarray(set->items, set->n + 1, sizeof(*items));
	if (items == NULL)
		goto oom;
	set->items = items;
	set->items[set->n++] = f;
	return CKR_OK;
oom:
	fragment_clear(&f);
	set_err(err, errlen, "out of memory");
	return CKR_HOST_MEMORY;
}

/* A JSON text builder that only counts while buf is NULL. */
struct jout {
	char *buf;
	size_t len;
};

static void jraw(struct jout *o, const char *s, size_t n)
{
	if (o->buf != NULL)
		memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void jlit(struct jout *o, const char *s)
{
	jraw(o, s, strlen(s));
}

/* A JSON string: quotes, backslashes and control characters escaped; UTF-8 passed through. */
static void jstr(struct jout *o, const char *s)
{
	static const char hexd[] = "0123456789abcdef";

	jraw(o, "\"", 1);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			char e[2] = {'\\', (char)ch};

			jraw(o, e, 2);
		} else if (ch < 0x20 || ch == 0x7f) {
			char e[6] = {'\\', 'u', '0', '0', hexd[ch >> 4], hexd[ch & 15]};

			jraw(o, e, 6);
		} else {
			jraw(o, (const char *)&ch, 1);
		}
	}
	jraw(o, "\"", 1);
}

static void jfield(struct jout *o, const char *key, const char *val, bool last)
{
	jlit(o, "      ");
	jstr(o, key);
	jlit(o, ": ");
	jstr(o, val);
	jlit(o, last ? "\n" : ",\n");
}

static CK_RV emit(const struct p11p_fragments *set, struct jout *o)
{
	char b64[(P11P_FRAGMENT_LEN + 2) / 3 * 4 + 1], cvhex[2 * P11P_FRAGMENT_CHECK_LEN + 1];
	unsigned char cv[P11P_FRAGMENT_CHECK_LEN];
	CK_RV rv = CKR_OK;

	jlit(o, "{\n  \"customer_fragments\": [\n");
	for (size_t i = 0; i < set->n; i++) {
		const struct p11p_fragment *f = &set->items[i];

		if (p11p_secret_len(f->value) != P11P_FRAGMENT_LEN) {
			rv = CKR_ARGUMENTS_BAD;
			goto out;
		}
		rv = p11p_fragment_check_value(p11p_secret_data(f->value), P11P_FRAGMENT_LEN, cv);
		if (rv != CKR_OK)
			goto out;
		for (size_t k = 0; k < sizeof(cv); k++)
			snprintf(cvhex + 2 * k, 3, "%02x", cv[k]);
		p11p_b64_encode(p11p_secret_data(f->value), P11P_FRAGMENT_LEN, b64);
		jlit(o, "    {\n");
		jfield(o, "name", f->name, false);
		jfield(o, "type", p11p_fragment_type_name(f->type), false);
		jfield(o, "hsm_key_label", f->hsm_key_label, false);
		jfield(o, "value", b64, false);
		jfield(o, "check_value", cvhex, f->id == NULL && f->description == NULL);
		if (f->id != NULL)
			jfield(o, "id", f->id, f->description == NULL);
		if (f->description != NULL)
			jfield(o, "description", f->description, true);
		jlit(o, i + 1 < set->n ? "    },\n" : "    }\n");
	}
	jlit(o, "  ]\n}\n");
out:
	p11p_wipe(b64, sizeof(b64));
	return rv;
}

CK_RV p11p_fragments_to_json(const struct p11p_fragments *set, struct p11p_secret **json)
{
	struct jout o = {NULL, 0};
	size_t need;
	CK_RV rv;

	p11p_return_val_if_fail(set != NULL && json != NULL, CKR_ARGUMENTS_BAD);
	*json = NULL;
	rv = emit(set, &o);
	if (rv != CKR_OK)
		return rv;
	need = o.len;
	o.buf = p11p_malloc(need);
	o.len = 0;
	if (o.buf == NULL)
		return CKR_HOST_MEMORY;
	rv = emit(set, &o);
	if (rv == CKR_OK && o.len == need) {
		*json = p11p_secret_new(o.buf, o.len);
		if (*json == NULL)
			rv = CKR_HOST_MEMORY;
	} else if (rv == CKR_OK) {
		rv = CKR_GENERAL_ERROR;
	}
	p11p_wipe(o.buf, need);
	p11p_free(o.buf);
	return rv;
}

CK_RV p11p_fragments_write(const struct p11p_fragments *set, const char *path, char *err,
                           size_t errlen)
{
	struct p11p_secret *json = NULL;
	CK_RV rv;

	p11p_return_val_if_fail(set != NULL && path != NULL, CKR_ARGUMENTS_BAD);
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	rv = p11p_fragments_to_json(set, &json);
	if (rv != CKR_OK) {
		set_err(err, errlen, "%s: cannot format the fragments", path);
		return rv;
	}
	rv = p11p_file_replace(path, p11p_secret_data(json), p11p_secret_len(json), 0600, err,
	                       errlen);
	p11p_secret_free(json);
	return rv;
}
