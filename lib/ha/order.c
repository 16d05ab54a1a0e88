/*
 * Member order: the operator's overlay over a slot's configured member list
 * (`p11proxy members`), followed by running processes without a restart.
 *
 * Where: in the store (index/index.h, p11p_index_overlay_get/put, kind
 * P11P_OVERLAY_ORDER, keyed by the slot's label or "@ID"), when the config
 * has one (the module: the store it opened for virtual keys; the CLI: the
 * same choice). The CLI writes it in one store transaction with its audit
 * row; the module follows it through the store's change notice (the probe
 * thread refreshes the store and compares the overlay's version at most once
 * per P11P_ORDER_CHECK_MS). Messages name it "store:<LABEL>.members".
 * Without a store it is a file, as described below.
 *
 * The file: "<state_dir>/slots/<LABEL>.members", LABEL being the slot's label
 * with every byte but [A-Za-z0-9_-] written %XX ("@ID" for a slot without a
 * label, the quick start). Text, at most P11P_ORDER_MAX_BYTES, lines of at
 * most P11P_ORDER_LINE_MAX bytes; blank lines and lines starting with '#' are
 * ignored. One member a line, highest priority first, at most
 * P11P_MAX_MEMBERS, names unique:
 *
 *   NAME                                  the config member of that name
 *   NAME backend=B SELECTOR=V [pin=SRC]   an added member; SELECTOR is one of
 *                                         slot_id, token_label, token_serial,
 *                                         uri; SRC is env:NAME or file:/path
 *
 * Values are %-encoded (blanks, controls, '%', '#' and bytes past 0x7e as
 * %XX). A spec line may carry a config member's name only with that member's
 * exact spec (it then is that member). When the file exists it is the whole
 * list: config members it does not name are deleted. Removing it returns the
 * slot to the config's order (`p11proxy members SLOT reset`).
 *
 * Writers (the CLI) take an exclusive flock on "<state_dir>/slots/.lock",
 * read, change, write a temp file in the same directory (0600), fsync it,
 * rename it over the overlay and fsync the directory; the directories are
 * made 0700. Readers do not lock: rename is atomic. The CLI refuses a
 * damaged overlay with FILE:LINE; the module ignores it with a message and
 * uses the config's order until it is fixed. The module reads only a regular
 * file that is not writable by group or others and belongs to root or to the
 * process's user.
 *
 * In the module, members keep their index in vslot->members[] forever:
 * sessions and objects refer to members by index, so entries never move and
 * are not freed before the state is. The overlay decides vslot->order[] (the
 * members new work may go to, in priority order) and each member's `removed`
 * flag; p11p_member_pick_locked() walks order[]. An added member takes the
 * next free entry (at most P11P_MAX_MEMBERS entries over the state's life;
 * deleting and adding back the same spec reuses its entry), with its spec
 * owned by the slot (vslot->ha->added[], freed at C_Finalize) and its PIN read
 * from its source in the process reading the overlay; it starts DOWN with an
 * immediate probe, so it serves once the probe thread has seen it answer. A
 * member that comes back from deletion restarts the same way. A deleted
 * member is not probed and gets no new session; the sessions it serves keep
 * working until they fail (then they fail over, as on any failure) or close.
 *
 * Noticing changes: the probe thread (or, without threads, the inline health
 * poll) stats each overlay at most once per P11P_ORDER_CHECK_MS with no lock
 * held, and reloads it when its device, inode, size, mtime or ctime changed.
 * A hung probe delays the check until the probe returns.
 */
#include "ha/ha.h"
#include "vkeys/vkeys.h"
#include "base/file.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/text.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p11-kit/uri.h>

#define SEL_KEYS 4
static const char *const sel_keys[SEL_KEYS] = {"slot_id", "token_label", "token_serial", "uri"};

/* ---- file names --------------------------------------------------------------------------- */

/* "<state_dir>/slots" into buf; -1 when it does not fit. */
static int slots_dir(const struct p11p_config *cfg, char *buf, size_t len)
{
	int n;

	if (cfg->state_dir == NULL || cfg->state_dir[0] != '/')
		return -1;
	n = snprintf(buf, len, "%s/slots", cfg->state_dir);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

int p11p_order_path(const struct p11p_config *cfg, size_t slot, char *buf, size_t len)
{
	if (slot >= cfg->n_slots)
		return -1;
	return p11p_overlay_path(cfg->state_dir, cfg->slots[slot].label, slot, ".members", buf,
	                         len);
}

/* ---- specs -------------------------------------------------------------------------------- */

void p11p_member_cfg_free(struct p11p_member_cfg *m)
{
	if (m == NULL)
		return;
	p11p_free(m->name);
	p11p_free(m->token_label);
	p11p_free(m->token_serial);
	p11p_free(m->uri);
	p11p_free(m->pin_source);
	p11p_secret_free(m->pin);
	p11p_free(m);
}

static bool str_same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool p11p_member_cfg_same(const struct p11p_member_cfg *a, const struct p11p_member_cfg *b)
{
	if (!str_same(a->name, b->name) || a->backend != b->backend || a->sel != b->sel ||
	    !str_same(a->pin_source, b->pin_source))
		return false;
	switch (a->sel) {
	case P11P_SEL_SLOT_ID:
		return a->slot_id == b->slot_id;
	case P11P_SEL_TOKEN_LABEL:
		return str_same(a->token_label, b->token_label);
	case P11P_SEL_TOKEN_SERIAL:
		return str_same(a->token_serial, b->token_serial);
	case P11P_SEL_URI:
		return str_same(a->uri, b->uri);
	}
	return false;
}

void p11p_order_clear(struct p11p_order *o)
{
	for (size_t i = 0; i < o->n; i++)
		p11p_member_cfg_free(o->e[i].spec);
	memset(o, 0, sizeof(*o));
}

void p11p_order_from_config(const struct p11p_config *cfg, size_t slot, struct p11p_order *out)
{
	const struct p11p_slot_cfg *sc = &cfg->slots[slot];

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < sc->n_members && i < P11P_MAX_MEMBERS; i++) {
		snprintf(out->e[i].name, sizeof(out->e[i].name), "%s",
		         sc->members[i].name != NULL ? sc->members[i].name : "");
		out->e[i].config_index = i;
		out->n++;
	}
}

/* ---- parsing ------------------------------------------------------------------------------ */

struct perr {
	const char *name;
	unsigned long line;
	char *err;
	size_t errlen;
};

static bool bad(struct perr *pe, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool bad(struct perr *pe, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (pe->err != NULL && pe->errlen > 0) {
		if (pe->line > 0)
			snprintf(pe->err, pe->errlen, "%s:%lu: %s", pe->name, pe->line, msg);
		else
			snprintf(pe->err, pe->errlen, "%s: %s", pe->name, msg);
	}
	return false;
}

/* %-decodes s[0..len) into a new string; NULL on a bad escape, a NUL or ENOMEM (*oom). */
static char *decode(const char *s, size_t len, bool *oom)
{
	char *out = p11p_malloc(len + 1);
	size_t o = 0;

	*oom = out == NULL;
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			out[o++] = s[i];
			continue;
		}
		if (i + 2 >= len) {
			p11p_free(out);
			return NULL;
		}
		int hi = p11p_hexval(s[i + 1]), lo = p11p_hexval(s[i + 2]);

		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
			p11p_free(out);
			return NULL;
		}
		out[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	out[o] = '\0';
	return out;
}

static bool name_ok(const char *s, size_t len)
{
	if (len == 0 || len > P11P_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (!p11p_overlay_name_byte(ch) && ch != '.')
			return false;
	}
	return true;
}

static bool env_ok(const char *s)
{
	if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; s[i] != '\0'; i++) {
		if (i >= 255 || !((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		                  (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	}
	return true;
}

/* Decimal, or hex with 0x; the config's slot_id syntax. */
static bool slot_id_ok(const char *s, CK_SLOT_ID *out)
{
	unsigned base = 10;
	CK_SLOT_ID v = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		int d = p11p_hexval(*s);

		if (d < 0 || (unsigned)d >= base || v > ((CK_SLOT_ID)-1 - (unsigned)d) / base)
			return false;
		v = v * base + (unsigned)d;
	}
	*out = v;
	return true;
}

static bool uri_ok(const char *s)
{
	P11KitUri *uri = p11_kit_uri_new();
	int rv;

	if (uri == NULL)
		return false;
	rv = p11_kit_uri_parse(s, P11_KIT_URI_FOR_TOKEN, uri);
	p11_kit_uri_free(uri);
	return rv == P11_KIT_URI_OK;
}

/* One "key=value" of a spec line into m. */
static bool spec_field(struct perr *pe, const struct p11p_config *cfg, const char *tok, size_t len,
                       struct p11p_member_cfg *m, bool *have_backend, int *sel)
{
	const char *eq = memchr(tok, '=', len);
	size_t klen;
	char *v;
	bool oom, ok = true;

	if (eq == NULL)
		return bad(pe, "expected key=value, got '%.*s'", (int)(len > 40 ? 40 : len), tok);
	klen = (size_t)(eq - tok);
	v = decode(eq + 1, len - klen - 1, &oom);
	if (v == NULL)
		return bad(pe, oom ? "out of memory" : "bad %%-escape in the value of '%.*s'",
		           (int)(klen > 20 ? 20 : klen), tok);
	if (klen == 7 && memcmp(tok, "backend", 7) == 0) {
		size_t i;

		if (*have_backend) {
			ok = bad(pe, "'backend' given twice");
			goto out;
		}
		for (i = 0; i < cfg->n_backends; i++)
			if (strcmp(cfg->backends[i].name, v) == 0)
				break;
		if (i == cfg->n_backends) {
			ok = bad(pe, "unknown backend '%.64s'", v);
			goto out;
		}
		m->backend = i;
		*have_backend = true;
		goto out;
	}
	if (klen == 3 && memcmp(tok, "pin", 3) == 0) {
		if (m->pin_source != NULL) {
			ok = bad(pe, "'pin' given twice");
			goto out;
		}
		if (!((strncmp(v, "env:", 4) == 0 && env_ok(v + 4)) ||
		      (strncmp(v, "file:", 5) == 0 && v[5] == '/'))) {
			ok = bad(pe, "PIN source must be 'env:NAME' or 'file:/absolute/path'");
			goto out;
		}
		m->pin_source = v;
		return true;
	}
	for (int k = 0; k < SEL_KEYS; k++) {
		if (klen != strlen(sel_keys[k]) || memcmp(tok, sel_keys[k], klen) != 0)
			continue;
		if (*sel >= 0) {
			ok = bad(pe, "more than one token selector ('%s' and '%s')", sel_keys[*sel],
			         sel_keys[k]);
			goto out;
		}
		*sel = k;
		switch (k) {
		case 0:
			m->sel = P11P_SEL_SLOT_ID;
			if (!slot_id_ok(v, &m->slot_id))
				ok = bad(pe, "slot_id '%.32s' is not an unsigned integer", v);
			goto out;
		case 1:
		case 2: {
			size_t max = k == 1 ? P11P_LABEL_MAX : P11P_SERIAL_MAX;

			if (v[0] == '\0' || strlen(v) > max) {
				ok = bad(pe, "%s must be 1 to %zu bytes", sel_keys[k], max);
				goto out;
			}
			m->sel = k == 1 ? P11P_SEL_TOKEN_LABEL : P11P_SEL_TOKEN_SERIAL;
			if (k == 1)
				m->token_label = v;
			else
				m->token_serial = v;
			return true;
		}
		default:
			if (!uri_ok(v)) {
				ok = bad(pe, "invalid PKCS#11 URI");
				goto out;
			}
			m->sel = P11P_SEL_URI;
			m->uri = v;
			return true;
		}
	}
	ok = bad(pe, "unknown key '%.*s' (backend, slot_id, token_label, token_serial, uri, pin)",
	         (int)(klen > 20 ? 20 : klen), tok);
out:
	p11p_free(v);
	return ok;
}

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

/* One member line (no newline, trimmed, not empty) into e. */
static bool parse_line(struct perr *pe, const struct p11p_config *cfg, size_t slot, const char *s,
                       size_t len, struct p11p_order_entry *e)
{
	const struct p11p_slot_cfg *sc = &cfg->slots[slot];
	struct p11p_member_cfg *m;
	size_t i = 0, nlen;
	bool have_backend = false;
	int sel = -1;

	while (i < len && !blank(s[i]))
		i++;
	nlen = i;
	if (!name_ok(s, nlen))
		return bad(pe, "member name '%.*s' must be 1 to %d letters, digits, '.', '_', '-'",
		           (int)(nlen > 64 ? 64 : nlen), s, P11P_NAME_MAX);
	memcpy(e->name, s, nlen);
	e->name[nlen] = '\0';
	e->line = pe->line;
	e->config_index = P11P_ORDER_NONE;
	for (size_t k = 0; k < sc->n_members; k++)
		if (sc->members[k].name != NULL && strcmp(sc->members[k].name, e->name) == 0)
			e->config_index = k;
	while (i < len && blank(s[i]))
		i++;
	if (i == len) {
		if (e->config_index == P11P_ORDER_NONE)
			return bad(pe,
			           "no member '%s' in slot '%.32s' of the configuration (an added "
			           "member needs backend= and a token selector)",
			           e->name, sc->label != NULL ? sc->label : "");
		return true;
	}
	m = p11p_calloc(1, sizeof(*m));
	if (m == NULL)
		return bad(pe, "out of memory");
	m->name = p11p_strdup(e->name);
	if (m->name == NULL) {
		p11p_member_cfg_free(m);
		return bad(pe, "out of memory");
	}
	while (i < len) {
		size_t start = i;

		while (i < len && !blank(s[i]))
			i++;
		if (!spec_field(pe, cfg, s + start, i - start, m, &have_backend, &sel)) {
			p11p_member_cfg_free(m);
			return false;
		}
		while (i < len && blank(s[i]))
			i++;
	}
	if (!have_backend || sel < 0) {
		p11p_member_cfg_free(m);
		return bad(pe, "member '%s' needs %s", e->name,
		           !have_backend ? "backend=" : "a token selector");
	}
	if (e->config_index != P11P_ORDER_NONE) {
		/* The config member itself, written out in full: fine; anything else is not. */
		bool same = p11p_member_cfg_same(m, &sc->members[e->config_index]);

		p11p_member_cfg_free(m);
		if (!same)
			return bad(pe,
			           "member name '%s' belongs to a configured member with another "
			           "spec",
			           e->name);
		return true;
	}
	e->spec = m;
	return true;
}

bool p11p_order_parse(const struct p11p_config *cfg, size_t slot, const char *name,
                      const char *data, size_t len, struct p11p_order *out, char *err,
                      size_t errlen)
{
	struct perr pe = {name, 0, err, errlen};
	size_t pos = 0;

	memset(out, 0, sizeof(*out));
	if (slot >= cfg->n_slots)
		return bad(&pe, "no such slot");
	if (len > P11P_ORDER_MAX_BYTES)
		return bad(&pe, "larger than %d bytes", P11P_ORDER_MAX_BYTES);
	if (memchr(data, '\0', len) != NULL)
		return bad(&pe, "contains a NUL byte");
	while (pos < len) {
		const char *line = data + pos, *nl = memchr(line, '\n', len - pos);
		size_t n = nl != NULL ? (size_t)(nl - line) : len - pos;

		pos += n + (nl != NULL);
		pe.line++;
		if (n > P11P_ORDER_LINE_MAX)
			goto fail_long;
		while (n > 0 && (blank(line[n - 1]) || line[n - 1] == '\r'))
			n--;
		while (n > 0 && blank(line[0])) {
			line++;
			n--;
		}
		if (n == 0 || line[0] == '#')
			continue;
		for (size_t i = 0; i < n; i++) {
			if ((unsigned char)line[i] < 0x20 && line[i] != '\t') {
				bad(&pe, "control character in the line");
				goto fail;
			}
		}
		if (out->n == P11P_MAX_MEMBERS) {
			bad(&pe, "more than %d members", P11P_MAX_MEMBERS);
			goto fail;
		}
		if (!parse_line(&pe, cfg, slot, line, n, &out->e[out->n]))
			goto fail;
		for (size_t k = 0; k < out->n; k++) {
			if (strcmp(out->e[k].name, out->e[out->n].name) == 0) {
				bad(&pe, "member '%s' listed twice (first on line %lu)",
				    out->e[k].name, out->e[k].line);
				p11p_member_cfg_free(out->e[out->n].spec);
				out->e[out->n].spec = NULL;
				goto fail;
			}
		}
		out->n++;
	}
	if (out->n == 0) {
		pe.line = 0;
		bad(&pe, "no members (delete the file to use the configured order)");
		goto fail;
	}
	out->from_file = true;
	return true;
fail_long:
	bad(&pe, "line longer than %d bytes", P11P_ORDER_LINE_MAX);
fail:
	p11p_order_clear(out);
	return false;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* The slot's key in the store's overlays: its label, or "@ID" for a slot without one. */
static void store_slot(const struct p11p_config *cfg, size_t slot, char *buf, size_t len)
{
	if (cfg->slots[slot].label != NULL && cfg->slots[slot].label[0] != '\0')
		snprintf(buf, len, "%s", cfg->slots[slot].label);
	else
		snprintf(buf, len, "@%zu", slot);
}

/* The overlay's name in messages when it is in the store: "store:<slot>.members". */
static void store_name(const struct p11p_config *cfg, size_t slot, char *buf, size_t len)
{
	char key[P11P_INDEX_SLOT_MAX + 1];

	store_slot(cfg, slot, key, sizeof(key));
	snprintf(buf, len, "store:%s.members", key);
}

static int read_order(const struct p11p_config *cfg, struct p11p_index *idx, size_t slot,
                      struct p11p_order *out, struct p11p_overlay_stamp *stamp, uint64_t *version,
                      char *err, size_t errlen)
{
	char path[PATH_MAX];
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (stamp != NULL) {
		memset(stamp, 0, sizeof(*stamp));
		stamp->err = ENOENT;
	}
	if (version != NULL)
		*version = 0;
	if (slot >= cfg->n_slots)
		return -1;
	if (idx != NULL) {
		char key[P11P_INDEX_SLOT_MAX + 1], *text = NULL;
		CK_RV rv;

		store_slot(cfg, slot, key, sizeof(key));
		store_name(cfg, slot, path, sizeof(path));
		rv = p11p_index_overlay_get(idx, key, P11P_OVERLAY_ORDER, &text, &len, version);
		if (rv != CKR_OK) {
			snprintf(err, errlen, "%s: %s", path,
			         rv == CKR_HOST_MEMORY ? "out of memory" : "cannot read");
			rc = -1;
		} else if (text == NULL) {
			rc = 0;
		} else if (len > P11P_ORDER_MAX_BYTES) {
			snprintf(err, errlen, "%s: larger than %d bytes", path,
			         P11P_ORDER_MAX_BYTES);
			rc = -1;
		} else {
			rc = 1;
		}
		buf = (unsigned char *)text;
	} else {
		if (p11p_order_path(cfg, slot, path, sizeof(path)) != 0) {
			p11p_order_from_config(cfg, slot, out);
			return 0;
		}
		rc = p11p_overlay_read(path, P11P_ORDER_MAX_BYTES, stamp, &buf, &len, err, errlen);
	}
	if (rc == 0)
		p11p_order_from_config(cfg, slot, out);
	else if (rc == 1 &&
	         !p11p_order_parse(cfg, slot, path, (const char *)buf, len, out, err, errlen))
		rc = -1;
	p11p_free(buf);
	return rc;
}

int p11p_order_read(const struct p11p_config *cfg, struct p11p_index *idx, size_t slot,
                    struct p11p_order *out, struct p11p_overlay_stamp *stamp, char *err,
                    size_t errlen)
{
	return read_order(cfg, idx, slot, out, stamp, NULL, err, errlen);
}

/* ---- writing ------------------------------------------------------------------------------ */

/* Appends s %-encoded to buf (room checked by the caller: 3 bytes per input byte). */
static size_t encode(char *buf, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= 0x20 || *p >= 0x7f || *p == '%' || *p == '#') {
			buf[o++] = '%';
			buf[o++] = hex[*p >> 4];
			buf[o++] = hex[*p & 15];
		} else {
			buf[o++] = (char)*p;
		}
	}
	return o;
}

char *p11p_order_format(const struct p11p_config *cfg, size_t slot, const struct p11p_order *o)
{
	static const char head[] = "# Member order, highest priority first. Written by "
	                           "'p11proxy members'; see proxy.yaml(5).\n";
	size_t cap = sizeof(head) + (size_t)P11P_MAX_MEMBERS * (P11P_ORDER_LINE_MAX + 1) + 1;
	/* Raw values are bounded below, so that even all-escaped ones fit here. */
	char *out = p11p_malloc(cap), line[P11P_ORDER_LINE_MAX * 3 + 512];
	size_t len;

	if (out == NULL || slot >= cfg->n_slots) {
		p11p_free(out);
		return NULL;
	}
	memcpy(out, head, sizeof(head));
	len = sizeof(head) - 1;
	for (size_t i = 0; i < o->n; i++) {
		const struct p11p_member_cfg *m = o->e[i].spec;
		const char *key = NULL, *val = NULL;
		char idbuf[32];
		size_t n;

		n = (size_t)snprintf(line, sizeof(line), "%s", o->e[i].name);
		if (m != NULL) {
			switch (m->sel) {
			case P11P_SEL_SLOT_ID:
				snprintf(idbuf, sizeof(idbuf), "%lu", (unsigned long)m->slot_id);
				key = "slot_id";
				val = idbuf;
				break;
			case P11P_SEL_TOKEN_LABEL:
				key = "token_label";
				val = m->token_label;
				break;
			case P11P_SEL_TOKEN_SERIAL:
				key = "token_serial";
				val = m->token_serial;
				break;
			case P11P_SEL_URI:
				key = "uri";
				val = m->uri;
				break;
			}
			if (val == NULL || m->backend >= cfg->n_backends ||
			    strlen(val) + (m->pin_source != NULL ? strlen(m->pin_source) : 0) >
			        P11P_ORDER_LINE_MAX)
				goto fail;
			memcpy(line + n, " backend=", 9);
			n += 9;
			n += encode(line + n, cfg->backends[m->backend].name);
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=", key);
			n += encode(line + n, val);
			if (m->pin_source != NULL) {
				memcpy(line + n, " pin=", 5);
				n += 5;
				n += encode(line + n, m->pin_source);
			}
		}
		if (n > P11P_ORDER_LINE_MAX)
			goto fail;
		memcpy(out + len, line, n);
		len += n;
		out[len++] = '\n';
	}
	out[len] = '\0';
	return out;
fail:
	p11p_free(out);
	return NULL;
}

/* mkdir that accepts an existing directory. */
static int make_dir(const char *path, char *err, size_t errlen)
{
	struct stat sb;

	if (mkdir(path, 0700) == 0 || errno == EEXIST) {
		if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
			return 0;
		snprintf(err, errlen, "%s: not a directory", path);
		return -1;
	}
	snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
	return -1;
}

int p11p_order_lock(const struct p11p_config *cfg, char *err, size_t errlen)
{
	char dir[PATH_MAX], lock[PATH_MAX + 8];
	int fd;

	if (slots_dir(cfg, dir, sizeof(dir)) != 0) {
		snprintf(err, errlen, "no usable state_dir in the configuration");
		return -1;
	}
	if (make_dir(cfg->state_dir, err, errlen) != 0 || make_dir(dir, err, errlen) != 0)
		return -1;
	snprintf(lock, sizeof(lock), "%s/.lock", dir);
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", lock, strerror(errno));
		return -1;
	}
	while (flock(fd, LOCK_EX) != 0) {
		if (errno == EINTR)
			continue;
		snprintf(err, errlen, "cannot lock %s: %s", lock, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

void p11p_order_unlock(int fd)
{
	if (fd >= 0) {
		flock(fd, LOCK_UN);
		close(fd);
	}
}

/* The audit trail's words for an order: its member names, ", "-separated (cut to fit). */
static void audit_words(const struct p11p_config *cfg, size_t slot, const struct p11p_order *o,
                        char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < o->n; i++) {
		const struct p11p_order_entry *e = &o->e[i];
		const char *name = e->spec != NULL ? e->spec->name
		                   : e->config_index < cfg->slots[slot].n_members
		                       ? cfg->slots[slot].members[e->config_index].name
		                       : NULL;
		int w = snprintf(buf + used, len - used, "%s%s", i > 0 ? "," : "",
		                 name != NULL ? name : "?");

		if (w < 0 || (size_t)w >= len - used) {
			buf[used] = '\0';
			break;
		}
		used += (size_t)w;
	}
}

int p11p_order_write(const struct p11p_config *cfg, struct p11p_index *idx, size_t slot,
                     const struct p11p_order *o, char *err, size_t errlen)
{
	char path[PATH_MAX];
	char *text = NULL;
	int rc;

	if (slot >= cfg->n_slots ||
	    (idx == NULL && p11p_order_path(cfg, slot, path, sizeof(path)) != 0)) {
		snprintf(err, errlen, "no usable state_dir in the configuration");
		return -1;
	}
	if (o->n > 0 && (text = p11p_order_format(cfg, slot, o)) == NULL) {
		snprintf(err, errlen, "cannot format the member list (a value is too long)");
		return -1;
	}
	if (idx != NULL) {
		char key[P11P_INDEX_SLOT_MAX + 1], from[64], to[64], e2[256];
		struct p11p_order cur, *conf = p11p_calloc(1, sizeof(*conf));
		int had;
		CK_RV rv;

		if (conf == NULL) {
			p11p_free(text);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		store_slot(cfg, slot, key, sizeof(key));
		had = read_order(cfg, idx, slot, &cur, NULL, NULL, e2, sizeof(e2));
		if (had < 0)
			snprintf(from, sizeof(from), "damaged");
		else
			audit_words(cfg, slot, &cur, from, sizeof(from));
		p11p_order_clear(&cur);
		if (o->n > 0) {
			audit_words(cfg, slot, o, to, sizeof(to));
		} else {
			p11p_order_from_config(cfg, slot, conf);
			audit_words(cfg, slot, conf, to, sizeof(to));
			snprintf(to + strlen(to), sizeof(to) - strlen(to), "%s",
			         strlen(to) + 9 < sizeof(to) ? " (config)" : "");
		}
		p11p_order_clear(conf);
		p11p_free(conf);
		rv = p11p_index_overlay_put(idx, key, P11P_OVERLAY_ORDER, text, from, to);
		p11p_free(text);
		if (rv != CKR_OK) {
			p11p_index_last_error(idx, err, errlen);
			if (err[0] == '\0')
				snprintf(err, errlen, "store: cannot write the member order of %s",
				         key);
			return -1;
		}
		return 0;
	}
	rc = p11p_overlay_write(path, text, err, errlen); /* o->n == 0: removed */
	p11p_free(text);
	return rc;
}

/* ---- in the module ------------------------------------------------------------------------ */

/*
 * A member back in service. Deleted members are not probed: one that was not
 * UP is probed now. One that was UP stays UP (its sessions kept using it, and
 * a failure there marks it down as usual); its login and object handles are
 * still those of the same token, so they are kept.
 */
static void member_back_locked(struct p11p_member *m, unsigned long long now)
{
	if (atomic_load(&m->health) != P11P_UP && m->next_probe_ms > now)
		m->next_probe_ms = now;
}

static const char *member_name(const struct p11p_member *m)
{
	return m->cfg->name != NULL ? m->cfg->name : "?";
}

/*
 * Makes `o` the slot's order. Only the thread holding st->ha->order_busy (or the
 * initializing one) calls this: members[] does not change under it. No lock held.
 */
static void order_apply(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_order *o,
                        bool initial)
{
	size_t idx[P11P_MAX_MEMBERS], n = 0, n_cfg = p11p_vhead(vs)->cfg->n_members;
	struct p11p_member_cfg *fresh[P11P_MAX_MEMBERS] = {NULL};
	char list[P11P_MAX_MEMBERS * (P11P_NAME_MAX + 2) + 1], err[512];
	bool changed;
	size_t old_n, used;
	unsigned long long now;

	/* Entries first, without the lock: PIN sources may be files. */
	for (size_t i = 0; i < o->n; i++) {
		struct p11p_order_entry *e = &o->e[i];
		size_t j;

		if (e->spec == NULL) {
			if (e->config_index < n_cfg)
				idx[n++] = e->config_index;
			continue;
		}
		for (j = n_cfg; j < p11p_vhead(vs)->n_members; j++)
			if (p11p_vhead(vs)->ha->added[j] != NULL &&
			    p11p_member_cfg_same(p11p_vhead(vs)->ha->added[j], e->spec))
				break;
		if (j < p11p_vhead(vs)->n_members) {
			idx[n++] = j;
			continue;
		}
		if (p11p_state_backend(st, e->spec->backend) == NULL)
			continue;
		if (e->spec->pin_source != NULL) {
			err[0] = '\0';
			e->spec->pin =
			    p11p_pin_from_source(e->spec->pin_source, e->name, err, sizeof(err));
			if (e->spec->pin == NULL) {
				p11p_message("slot '%s': added member %s", p11p_vhead(vs)->label,
				             err);
				continue;
			}
		}
		fresh[n] = e->spec;
		idx[n++] = P11P_ORDER_NONE;
	}

	p11p_lock();
	now = p11p_now_ms();
	old_n = p11p_vhead(vs)->n_members;
	used = 0;
	for (size_t i = 0; i < n; i++) {
		struct p11p_member *m;
		size_t k = p11p_vhead(vs)->n_members;

		if (idx[i] != P11P_ORDER_NONE) {
			idx[used++] = idx[i];
			continue;
		}
		if (k >= P11P_MAX_MEMBERS) {
			p11p_message("slot '%s': no room for member %s (%d members since "
			             "C_Initialize); restart the application to use it",
			             p11p_vhead(vs)->label, fresh[i]->name, P11P_MAX_MEMBERS);
			continue;
		}
		/* Ownership moves to the slot: take it out of the parsed order. */
		for (size_t e = 0; e < o->n; e++)
			if (o->e[e].spec == fresh[i])
				o->e[e].spec = NULL;
		m = &p11p_vhead(vs)->members[k];
		memset(m, 0, sizeof(*m));
		m->cfg = fresh[i];
		m->be = p11p_state_backend(st, fresh[i]->backend);
		m->index = k;
		p11p_member_ctx_init(m);
		/* DOWN until the probes have seen it answer; the first one now. */
		atomic_init(&m->health, P11P_DOWN);
		m->backoff_ms = p11p_vhead(vs)->cfg->ha.probe_interval_ms;
		m->next_probe_ms = now;
		p11p_vhead(vs)->ha->added[k] = fresh[i];
		/* Readers that look at n_members without the lock see a whole entry. */
		__atomic_store_n(&p11p_vhead(vs)->n_members, k + 1, __ATOMIC_RELEASE);
		idx[used++] = k;
	}
	if (used == 0) {
		/* Nothing usable: the config's order. */
		for (size_t i = 0; i < n_cfg; i++)
			idx[used++] = i;
		if (o->n > 0)
			p11p_message("slot '%s': no usable member in %s; using the configured "
			             "order",
			             p11p_vhead(vs)->label, p11p_vhead(vs)->ha->order_path);
	}
	changed = p11p_slot_order_set_locked(vs, idx, used);
	for (size_t j = 0; j < p11p_vhead(vs)->n_members; j++) {
		struct p11p_member *m = &p11p_vhead(vs)->members[j];
		bool in = false;

		for (size_t i = 0; i < used; i++)
			in |= idx[i] == j;
		if (!in) {
			m->removed = true;
		} else if (m->removed) {
			m->removed = false;
			member_back_locked(m, now);
		}
	}
	list[0] = '\0';
	for (size_t i = 0, o_len = 0; i < used; i++) {
		int w = snprintf(list + o_len, sizeof(list) - o_len, "%s%s", i > 0 ? ", " : "",
		                 member_name(&p11p_vhead(vs)->members[idx[i]]));

		if (w > 0 && (size_t)w < sizeof(list) - o_len)
			o_len += (size_t)w;
	}
	if (p11p_vhead(vs)->n_members != old_n || changed) {
		p11p_probe_wake_locked(st);
		p11p_broadcast_locked();
	}
	p11p_unlock();
	/* A change while running is news for the operator; the order at start is not. */
	if (changed && !initial)
		p11p_message("slot '%s': member order now %s", p11p_vhead(vs)->label, list);
	else if (changed)
		p11p_debug(P11P_DBG_BACKEND, "slot '%s': member order %s (from %s)",
		           p11p_vhead(vs)->label, list, p11p_vhead(vs)->ha->order_path);
}

/* Reads the overlay (or its absence) and applies it. No lock held. */
static void order_reload(struct p11p_state *st, struct p11p_vslot *vs, bool initial)
{
	struct p11p_order o;
	char err[768];
	int rc;

	err[0] = '\0';
	rc = read_order(p11p_sthead(st)->cfg, p11p_vkey_index(st), p11p_vhead(vs)->id, &o,
	                &p11p_vhead(vs)->ha->order_stamp, &p11p_vhead(vs)->ha->order_version, err,
	                sizeof(err));
	if (rc < 0) {
		p11p_message("slot '%s': ignoring the member order overlay: %s; using the "
		             "configured order",
		             p11p_vhead(vs)->label, err);
		p11p_order_from_config(p11p_sthead(st)->cfg, p11p_vhead(vs)->id, &o);
	}
	order_apply(st, vs, &o, initial);
	p11p_order_clear(&o);
}

void p11p_order_init(struct p11p_state *st, struct p11p_vslot *vs)
{
	char path[PATH_MAX];

	/* The core set the config's order (the state is not shared yet). */
	memset(&p11p_vhead(vs)->ha->order_stamp, 0, sizeof(p11p_vhead(vs)->ha->order_stamp));
	p11p_vhead(vs)->ha->order_stamp.err = ENOENT;
	p11p_vhead(vs)->ha->order_version = 0;
	if (p11p_vkey_index(st) != NULL) {
		/* The overlay is in the store (its copy, loaded at open). */
		store_name(p11p_sthead(st)->cfg, p11p_vhead(vs)->id, path, sizeof(path));
		p11p_vhead(vs)->ha->order_path = p11p_strdup(path);
		if (p11p_vhead(vs)->ha->order_path != NULL)
			order_reload(st, vs, true);
		return;
	}
	if (p11p_order_path(p11p_sthead(st)->cfg, p11p_vhead(vs)->id, path, sizeof(path)) != 0)
		return;
	p11p_vhead(vs)->ha->order_path = p11p_strdup(path);
	if (p11p_vhead(vs)->ha->order_path == NULL)
		return; /* no overlay: the config's order */
	if (access(path, F_OK) == 0 || errno != ENOENT)
		order_reload(st, vs, true);
}

/* Has the overlay changed since it was read? Updates nothing. No lock held. */
static bool order_changed(struct p11p_state *st, struct p11p_vslot *vs)
{
	struct p11p_index *idx = p11p_vkey_index(st);
	struct p11p_overlay_stamp now;

	if (p11p_vhead(vs)->ha->order_path == NULL)
		return false;
	if (idx != NULL) {
		char key[P11P_INDEX_SLOT_MAX + 1], *text = NULL;
		uint64_t version = 0;
		size_t len;

		store_slot(p11p_sthead(st)->cfg, p11p_vhead(vs)->id, key, sizeof(key));
		if (p11p_index_overlay_get(idx, key, P11P_OVERLAY_ORDER, &text, &len, &version) !=
		    CKR_OK)
			return false; /* out of memory: next time */
		p11p_free(text);
		return version != p11p_vhead(vs)->ha->order_version;
	}
	p11p_overlay_stamp_of(p11p_vhead(vs)->ha->order_path, &now);
	return !p11p_overlay_stamp_same(&now, &p11p_vhead(vs)->ha->order_stamp);
}

unsigned long long p11p_order_poll(struct p11p_state *st)
{
	unsigned long long now = p11p_now_ms(), next;

	p11p_lock();
	if (p11p_sthead(st)->ha->order_busy || now < p11p_sthead(st)->ha->order_next_ms) {
		next = p11p_sthead(st)->ha->order_next_ms > now ? p11p_sthead(st)->ha->order_next_ms
		                                                : now + P11P_ORDER_CHECK_MS;
		p11p_unlock();
		return next;
	}
	p11p_sthead(st)->ha->order_busy = true;
	next = p11p_sthead(st)->ha->order_next_ms = now + P11P_ORDER_CHECK_MS;
	p11p_unlock();
	/* The store's change notice (the same refresh as the key records'). */
	if (p11p_vkey_index(st) != NULL)
		(void)p11p_index_refresh(p11p_vkey_index(st));
	for (size_t i = 0; i < p11p_sthead(st)->n_slots; i++) {
		if (order_changed(st, p11p_state_slot(st, i)))
			order_reload(st, p11p_state_slot(st, i), false);
	}
	p11p_lock();
	p11p_sthead(st)->ha->order_busy = false;
	p11p_unlock();
	return next;
}

void p11p_order_free(struct p11p_vslot *vs)
{
	if (p11p_vhead(vs)->ha == NULL)
		return;
	for (size_t i = 0; i < P11P_MAX_MEMBERS; i++) {
		p11p_member_cfg_free(p11p_vhead(vs)->ha->added[i]);
		p11p_vhead(vs)->ha->added[i] = NULL;
	}
	p11p_free(p11p_vhead(vs)->ha->order_path);
	p11p_vhead(vs)->ha->order_path = NULL;
}

CK_RV p11p_ha_state_init(struct p11p_state *st)
{
	struct p11p_vslot *vs;

	p11p_sthead(st)->ha = p11p_calloc(1, sizeof(*p11p_sthead(st)->ha));
	if (p11p_sthead(st)->ha == NULL)
		return CKR_HOST_MEMORY;
	for (size_t i = 0; (vs = p11p_state_slot(st, i)) != NULL; i++) {
		p11p_vhead(vs)->ha = p11p_calloc(1, sizeof(*p11p_vhead(vs)->ha));
		if (p11p_vhead(vs)->ha == NULL)
			return CKR_HOST_MEMORY; /* the state is freed: p11p_ha_state_free() */
	}
	return CKR_OK;
}

void p11p_ha_state_free(struct p11p_state *st)
{
	struct p11p_vslot *vs;

	for (size_t i = 0; (vs = p11p_state_slot(st, i)) != NULL; i++) {
		p11p_order_free(vs);
		p11p_free(p11p_vhead(vs)->ha);
		p11p_vhead(vs)->ha = NULL;
	}
	if (p11p_sthead(st)->ha != NULL)
		p11p_map_clear(&p11p_sthead(st)->ha->repl_unlocked);
	p11p_free(p11p_sthead(st)->ha);
	p11p_sthead(st)->ha = NULL;
}
