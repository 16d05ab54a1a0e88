/*
 * A slot's key-management policy (`policy: {write_back, scan}` in proxy.yaml),
 * with the operator's overlay `p11proxy policy set` writes over it.
 *
 * Where: in the store (kind P11P_OVERLAY_POLICY, as the member order,
 * order.c), one transaction with its audit row ("write_back=B scan=S" from
 * and to), followed through the store's change notice by version; named
 * "store:<LABEL>.policy" in messages. Without a store, the file:
 * "<state_dir>/slots/<LABEL>.policy", LABEL encoded as for the
 * member-order overlay (order.c). Text, at most P11P_POLICY_MAX_BYTES:
 *
 *   # comment
 *   write_back = false
 *   scan = owned
 *
 * Blank lines and '#' comments are ignored; blanks around '=' are optional;
 * each key at most once; a key the file does not give keeps the config's
 * value. Writers (the CLI) hold the same exclusive lock as the member-order
 * writers ("<state_dir>/slots/.lock", p11p_order_lock()) and replace the file
 * atomically (temp file 0600, fsync, rename, fsync of the directory).
 * Readers do not lock: rename is atomic.
 *
 * In the module, p11p_policy_get() returns the slot's cached policy and, at
 * most once per P11P_POLICY_CHECK_MS, stats the overlay (no lock held) and
 * reads it again when its device, inode, size, mtime or ctime changed. A
 * damaged or unsafe overlay is reported once (p11p_message) and the config's
 * policy applies until it is fixed: the policy never silently becomes
 * write_back because of a broken file.
 */
#include "vkeys/vkeys.h"
#include "base/file.h"
#include "base/log.h"
#include "base/mem.h"
#include "keymodel/model.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int p11p_policy_path(const struct p11p_config *cfg, size_t slot, char *buf, size_t len)
{
	if (slot >= cfg->n_slots)
		return -1;
	return p11p_overlay_path(cfg->state_dir, cfg->slots[slot].label, slot, ".policy", buf, len);
}

/* ---- parsing ------------------------------------------------------------------------------ */

static bool bad(const char *name, unsigned long line, char *err, size_t errlen, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));

static bool bad(const char *name, unsigned long line, char *err, size_t errlen, const char *fmt,
                ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (err != NULL && errlen > 0) {
		if (line > 0)
			snprintf(err, errlen, "%s:%lu: %s", name, line, msg);
		else
			snprintf(err, errlen, "%s: %s", name, msg);
	}
	return false;
}

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static bool word_is(const char *s, size_t len, const char *w)
{
	return len == strlen(w) && memcmp(s, w, len) == 0;
}

/* Shows at most 32 bytes of a value in a message, non-printable bytes as '?'. */
static const char *show(const char *s, size_t len, char *buf, size_t buflen)
{
	size_t n = len < buflen - 1 ? len : buflen - 1;

	if (n > 32)
		n = 32;
	for (size_t i = 0; i < n; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	buf[n] = '\0';
	return buf;
}

bool p11p_policy_parse(const char *name, const char *data, size_t len,
                       const struct p11p_policy_cfg *base, struct p11p_policy_cfg *out, char *err,
                       size_t errlen)
{
	unsigned long line = 0, seen_wb = 0, seen_scan = 0;
	struct p11p_policy_cfg p = *base;
	size_t pos = 0;
	char sb[40];

	if (len > P11P_POLICY_MAX_BYTES)
		return bad(name, 0, err, errlen, "larger than %d bytes", P11P_POLICY_MAX_BYTES);
	if (memchr(data, '\0', len) != NULL)
		return bad(name, 0, err, errlen, "contains a NUL byte");
	while (pos < len) {
		const char *s = data + pos, *nl = memchr(s, '\n', len - pos), *eq;
		size_t n = nl != NULL ? (size_t)(nl - s) : len - pos, klen, vlen;
		const char *v;

		pos += n + (nl != NULL);
		line++;
		while (n > 0 && blank(s[n - 1]))
			n--;
		while (n > 0 && blank(s[0])) {
			s++;
			n--;
		}
		if (n == 0 || s[0] == '#')
			continue;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
				return bad(name, line, err, errlen,
				           "control character in the line");
		eq = memchr(s, '=', n);
		if (eq == NULL)
			return bad(name, line, err, errlen, "expected 'KEY = VALUE', got '%s'",
			           show(s, n, sb, sizeof(sb)));
		klen = (size_t)(eq - s);
		while (klen > 0 && blank(s[klen - 1]))
			klen--;
		v = eq + 1;
		vlen = n - (size_t)(v - s);
		while (vlen > 0 && blank(v[0])) {
			v++;
			vlen--;
		}
		if (word_is(s, klen, "write_back")) {
			if (seen_wb != 0)
				return bad(name, line, err, errlen,
				           "'write_back' given twice (first on line %lu)", seen_wb);
			seen_wb = line;
			if (word_is(v, vlen, "true"))
				p.write_back = true;
			else if (word_is(v, vlen, "false"))
				p.write_back = false;
			else
				return bad(name, line, err, errlen,
				           "'write_back' must be true or false, not '%s'",
				           show(v, vlen, sb, sizeof(sb)));
		} else if (word_is(s, klen, "scan")) {
			if (seen_scan != 0)
				return bad(name, line, err, errlen,
				           "'scan' given twice (first on line %lu)", seen_scan);
			seen_scan = line;
			if (word_is(v, vlen, "all"))
				p.scan = P11P_SCAN_ALL;
			else if (word_is(v, vlen, "owned"))
				p.scan = P11P_SCAN_OWNED;
			else
				return bad(name, line, err, errlen,
				           "'scan' must be all or owned, not '%s'",
				           show(v, vlen, sb, sizeof(sb)));
		} else {
			return bad(name, line, err, errlen, "unknown key '%s' (write_back, scan)",
			           show(s, klen, sb, sizeof(sb)));
		}
	}
	*out = p;
	return true;
}

void p11p_policy_format(const struct p11p_policy_cfg *p, char *buf, size_t len)
{
	snprintf(buf, len,
	         "# Key-management policy of this slot, over the configuration's. Written by\n"
	         "# 'p11proxy policy set'; see proxy.yaml(5).\n"
	         "write_back = %s\n"
	         "scan = %s\n",
	         p->write_back ? "true" : "false", p11p_vk_scan_name(p->scan));
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

/* The overlay from the store's copy (*version: its version there). */
static int read_store(const struct p11p_config *cfg, struct p11p_index *idx, size_t slot,
                      struct p11p_policy_cfg *out, uint64_t *version, char *err, size_t errlen)
{
	char key[P11P_INDEX_SLOT_MAX + 1], name[P11P_INDEX_SLOT_MAX + 16];
	char *text = NULL;
	size_t len = 0;
	CK_RV rv;
	int rc = 1;

	*out = cfg->slots[slot].policy;
	store_slot(cfg, slot, key, sizeof(key));
	snprintf(name, sizeof(name), "store:%s.policy", key);
	rv = p11p_index_overlay_get(idx, key, P11P_OVERLAY_POLICY, &text, &len, version);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "%s: %s", name,
		         rv == CKR_HOST_MEMORY ? "out of memory" : "cannot read");
		return -1;
	}
	if (text == NULL)
		return 0;
	if (len > P11P_POLICY_MAX_BYTES) {
		snprintf(err, errlen, "%s: larger than %d bytes", name, P11P_POLICY_MAX_BYTES);
		rc = -1;
	} else if (!p11p_policy_parse(name, text, len, &cfg->slots[slot].policy, out, err,
	                              errlen)) {
		rc = -1;
	}
	if (rc < 0)
		*out = cfg->slots[slot].policy;
	p11p_free(text);
	return rc;
}

static int read_stamped(const struct p11p_config *cfg, struct p11p_index *idx, size_t slot,
                        struct p11p_policy_cfg *out, struct p11p_overlay_stamp *stamp,
                        uint64_t *version, char *err, size_t errlen)
{
	char path[PATH_MAX];
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc;

	if (stamp != NULL) {
		memset(stamp, 0, sizeof(*stamp));
		stamp->err = ENOENT;
	}
	if (version != NULL)
		*version = 0;
	if (slot >= cfg->n_slots) {
		snprintf(err, errlen, "no slot %zu", slot);
		return -1;
	}
	*out = cfg->slots[slot].policy;
	if (idx != NULL)
		return read_store(cfg, idx, slot, out, version, err, errlen);
	if (p11p_policy_path(cfg, slot, path, sizeof(path)) != 0)
		return 0;
	rc = p11p_overlay_read(path, P11P_POLICY_MAX_BYTES, stamp, &buf, &len, err, errlen);
	if (rc == 1 && !p11p_policy_parse(path, (const char *)buf, len, &cfg->slots[slot].policy,
	                                  out, err, errlen)) {
		*out = cfg->slots[slot].policy;
		rc = -1;
	}
	p11p_free(buf);
	return rc;
}

int p11p_policy_read(const struct p11p_config *cfg, struct p11p_index *idx, size_t slot,
                     struct p11p_policy_cfg *out, char *err, size_t errlen)
{
	return read_stamped(cfg, idx, slot, out, NULL, NULL, err, errlen);
}

/* ---- writing ------------------------------------------------------------------------------ */

/* The audit trail's words for a policy: "write_back=B scan=S". */
static void audit_words(const struct p11p_policy_cfg *p, char *buf, size_t len)
{
	snprintf(buf, len, "write_back=%s scan=%s", p->write_back ? "true" : "false",
	         p11p_vk_scan_name(p->scan));
}

int p11p_policy_write(const struct p11p_config *cfg, struct p11p_index *idx, size_t slot,
                      const struct p11p_policy_cfg *p, char *err, size_t errlen)
{
	char path[PATH_MAX], text[512];

	if (slot >= cfg->n_slots) {
		snprintf(err, errlen, "no slot %zu", slot);
		return -1;
	}
	if (p != NULL)
		p11p_policy_format(p, text, sizeof(text));
	if (idx != NULL) {
		char key[P11P_INDEX_SLOT_MAX + 1], from[64], to[64];
		struct p11p_policy_cfg cur;
		int rc;
		CK_RV rv;

		store_slot(cfg, slot, key, sizeof(key));
		rc = read_store(cfg, idx, slot, &cur, NULL, err, errlen);
		if (rc < 0)
			snprintf(from, sizeof(from), "damaged");
		else
			audit_words(&cur, from, sizeof(from));
		if (rc == 0)
			snprintf(from + strlen(from), sizeof(from) - strlen(from), " (config)");
		audit_words(p != NULL ? p : &cfg->slots[slot].policy, to, sizeof(to));
		if (p == NULL)
			snprintf(to + strlen(to), sizeof(to) - strlen(to), " (config)");
		rv = p11p_index_overlay_put(idx, key, P11P_OVERLAY_POLICY, p != NULL ? text : NULL,
		                            from, to);
		if (rv != CKR_OK) {
			p11p_index_last_error(idx, err, errlen);
			if (err[0] == '\0')
				snprintf(err, errlen, "store: cannot write the policy of %s", key);
			return -1;
		}
		return 0;
	}
	if (p11p_policy_path(cfg, slot, path, sizeof(path)) != 0) {
		snprintf(err, errlen, "no usable state_dir in the configuration");
		return -1;
	}
	return p11p_overlay_write(path, p != NULL ? text : NULL, err, errlen);
}

/* ---- in the module ------------------------------------------------------------------------ */

static void stamp_now(const struct p11p_config *cfg, size_t slot, struct p11p_overlay_stamp *s)
{
	char path[PATH_MAX];

	p11p_overlay_stamp_of(p11p_policy_path(cfg, slot, path, sizeof(path)) == 0 ? path : NULL,
	                      s);
}

void p11p_policy_get(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_policy_cfg *out)
{
	struct p11p_overlay_stamp stamp, seen;
	struct p11p_policy_cfg p;
	struct p11p_vk_slot *vk = p11p_vhead(vs)->vk;
	struct p11p_index *idx = p11p_vkey_index(st);
	unsigned long long now = p11p_now_ms();
	uint64_t version = 0, seen_version;
	bool loaded;
	char err[768];
	int rc;

	if (vk == NULL) {
		/* The room's data was not made (cannot happen once the state is built). */
		*out = p11p_vhead(vs)->cfg->policy;
		return;
	}
	p11p_lock();
	if (vk->policy_busy || (vk->policy_loaded && now < vk->policy_next_ms)) {
		/* Fresh enough, or another thread is reading it now: the last policy read. */
		*out = vk->policy_loaded ? vk->policy : p11p_vhead(vs)->cfg->policy;
		p11p_unlock();
		return;
	}
	vk->policy_busy = true;
	vk->policy_next_ms = now + P11P_POLICY_CHECK_MS;
	loaded = vk->policy_loaded;
	seen = vk->policy_stamp;
	seen_version = vk->policy_version;
	p = vk->policy;
	p11p_unlock();

	/* Only this thread reads the overlay now; no lock held across the I/O. */
	if (idx != NULL) {
		char key[P11P_INDEX_SLOT_MAX + 1], *text = NULL;
		size_t len;

		/* The store's change notice (the same refresh as the key records'). */
		(void)p11p_index_refresh(idx);
		store_slot(p11p_sthead(st)->cfg, p11p_vhead(vs)->id, key, sizeof(key));
		if (p11p_index_overlay_get(idx, key, P11P_OVERLAY_POLICY, &text, &len, &version) !=
		    CKR_OK)
			version = seen_version; /* out of memory: keep what was read */
		p11p_free(text);
		memset(&stamp, 0, sizeof(stamp));
		stamp.err = ENOENT;
	} else {
		stamp_now(p11p_sthead(st)->cfg, p11p_vhead(vs)->id, &stamp);
	}
	if (!loaded ||
	    (idx != NULL ? version != seen_version : !p11p_overlay_stamp_same(&stamp, &seen))) {
		err[0] = '\0';
		rc = read_stamped(p11p_sthead(st)->cfg, idx, p11p_vhead(vs)->id, &p, &stamp,
		                  &version, err, sizeof(err));
		if (rc < 0)
			p11p_message("slot '%s': ignoring the policy overlay: %s; using the "
			             "configured policy",
			             p11p_vhead(vs)->label, err);
		else if (loaded)
			p11p_message(
			    "slot '%s': key-management policy now write_back %s, scan %s%s",
			    p11p_vhead(vs)->label, p.write_back ? "true" : "false",
			    p11p_vk_scan_name(p.scan), rc == 0 ? " (the configured policy)" : "");
	}
	p11p_lock();
	vk->policy = p;
	vk->policy_stamp = stamp;
	vk->policy_version = version;
	vk->policy_loaded = true;
	vk->policy_busy = false;
	*out = p;
	p11p_unlock();
}
