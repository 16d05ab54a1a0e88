/*
 * proxy.yaml parser and the quick-start environment.
 *
 * The file is untrusted input. It is read whole (at most P11P_CONF_MAX_BYTES),
 * checked once with libyaml's event parser for nesting depth, node count and
 * a single document, then loaded with yaml_parser_load so that every node
 * keeps its position for messages (config/ydoc.c, shared with the
 * fragments). The schema walk below has a fixed depth (top level -> slots ->
 * slot -> members -> member), so anchors and aliases, even cyclic ones,
 * cannot make it recurse or loop.
 *
 * Every failure writes exactly one line, "FILE:LINE:COLUMN: message", and the
 * partially built config is freed with p11p_config_free().
 */
#include "config/config.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p11-kit/uri.h>
#include <yaml.h>

#include "base/file.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/names.h"
#include "base/secret.h"
#include "config/ydoc.h"

struct pctx {
	struct p11p_ydoc y; /* name, err, the document */
	struct p11p_config *cfg;
};

#define YDOC_INIT(name_, err_, errlen_)                                                            \
	{                                                                                          \
		.name = (name_), .debug_tag = "config error: ", .err = (err_), .errlen = (errlen_) \
	}

/* Every string in the file has the same bound. */
static bool get_string(struct pctx *c, const yaml_node_t *n, const char *what, const char **out)
{
	return p11p_ydoc_string(&c->y, n, what, P11P_CONF_MAX_STRING, out, NULL);
}

/* Checks a sequence value: a list, not empty, at most max items. */
static bool check_list(struct pctx *c, const yaml_node_t *n, const char *what, size_t max,
                       const char *item_name)
{
	size_t count;

	if (n->type != YAML_SEQUENCE_NODE)
		return p11p_ydoc_report(&c->y, &n->start_mark, "'%s' must be a list", what);
	count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (count == 0)
		return p11p_ydoc_report(&c->y, &n->start_mark, "'%s' must not be empty", what);
	if (count > max) {
		const yaml_node_t *extra = p11p_ydoc_node(&c->y, n->data.sequence.items.start[max]);

		return p11p_ydoc_report(&c->y, extra ? &extra->start_mark : &n->start_mark,
		                        "too many %s (at most %zu)", item_name, max);
	}
	return true;
}

static char *dup_or_oom(struct pctx *c, const char *s)
{
	char *d = p11p_strdup(s);

	if (d == NULL)
		p11p_ydoc_oom(&c->y);
	return d;
}

/* ---- value checks shared by the file and the environment ----------------- */

/* A vendor library: absolute path to an existing regular file. */
static bool check_module(struct pctx *c, const yaml_mark_t *m, const char *what, const char *path)
{
	struct stat st;
	char buf[P11P_YDOC_SHOW_BUF];

	p11p_ydoc_show(path, strlen(path), buf);
	if (path[0] != '/')
		return p11p_ydoc_report(&c->y, m, "%s '%s' is not an absolute path", what, buf);
	if (stat(path, &st) != 0)
		return p11p_ydoc_report(&c->y, m, "%s '%s': %s", what, buf, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return p11p_ydoc_report(&c->y, m, "%s '%s' is not a regular file", what, buf);
	return true;
}

/* A token label or serial: 1..max bytes. */
static bool check_text(struct pctx *c, const yaml_mark_t *m, const char *what, const char *s,
                       size_t max)
{
	if (s[0] == '\0')
		return p11p_ydoc_report(&c->y, m, "%s is empty", what);
	if (strlen(s) > max)
		return p11p_ydoc_report(&c->y, m, "%s is longer than %zu bytes", what, max);
	return true;
}

/* Decimal, or hexadecimal with a 0x prefix; no sign, no spaces. */
static bool parse_slot_id(struct pctx *c, const yaml_mark_t *m, const char *what, const char *s,
                          CK_SLOT_ID *out)
{
	char buf[P11P_YDOC_SHOW_BUF];
	unsigned base = 10;
	const char *p = s;
	CK_SLOT_ID v = 0;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	if (*p == '\0')
		goto bad;
	for (; *p; p++) {
		unsigned d;

		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			goto bad;
		if (v > ((CK_SLOT_ID)-1 - d) / base)
			return p11p_ydoc_report(&c->y, m, "%s '%s' is out of range", what,
			                        p11p_ydoc_show(s, strlen(s), buf));
		v = v * base + d;
	}
	*out = v;
	return true;
bad:
	return p11p_ydoc_report(&c->y, m, "%s '%s' is not an unsigned integer", what,
	                        p11p_ydoc_show(s, strlen(s), buf));
}

static bool check_uri(struct pctx *c, const yaml_mark_t *m, const char *s)
{
	P11KitUri *uri = p11_kit_uri_new();
	int rv;

	if (uri == NULL)
		return p11p_ydoc_oom(&c->y);
	rv = p11_kit_uri_parse(s, P11_KIT_URI_FOR_TOKEN, uri);
	p11_kit_uri_free(uri);
	if (rv == P11_KIT_URI_NO_MEMORY)
		return p11p_ydoc_oom(&c->y);
	if (rv != P11_KIT_URI_OK)
		return p11p_ydoc_report(&c->y, m, "invalid PKCS#11 URI: %s",
		                        p11_kit_uri_message(rv));
	return true;
}

static bool env_name_ok(const char *s)
{
	size_t i;

	if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (i = 1; s[i]; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_') ||
		    i >= 255)
			return false;
	return true;
}

/* A PIN as a secret; "\n" or "\r\n" at the end is not part of it. */
static bool make_pin(struct pctx *c, const yaml_mark_t *m, const char *what, const char *data,
                     size_t len, struct p11p_secret **out)
{
	if (len > 0 && data[len - 1] == '\n') {
		len--;
		if (len > 0 && data[len - 1] == '\r')
			len--;
	}
	if (len == 0)
		return p11p_ydoc_report(&c->y, m, "%s is empty", what);
	if (len > P11P_MAX_PIN_LEN)
		return p11p_ydoc_report(&c->y, m, "%s is longer than %d bytes", what,
		                        P11P_MAX_PIN_LEN);
	*out = p11p_secret_new(data, len);
	if (*out == NULL)
		return p11p_ydoc_oom(&c->y);
	return true;
}

/*
 * A PIN file: a regular file that only its owner may access (mode & 077 == 0,
 * as OpenSSH requires of private keys). Checked on the open descriptor, so a
 * rename between the check and the read cannot swap the file.
 */
static bool read_pin_file(struct pctx *c, const yaml_mark_t *m, const char *path,
                          struct p11p_secret **out)
{
	char buf[P11P_MAX_PIN_LEN + 3]; /* PIN + "\r\n" + 1 byte to see it is too long */
	char shown[P11P_YDOC_SHOW_BUF], what[P11P_YDOC_SHOW_MAX + 32];
	struct stat st;
	size_t len = 0;
	bool ok = false;
	int fd;

	p11p_ydoc_show(path, strlen(path), shown);
	snprintf(what, sizeof(what), "PIN file '%s'", shown);
	/* Never open a device node (opening some has side effects): regular files only. */
	if (stat(path, &st) != 0)
		return p11p_ydoc_report(&c->y, m, "%s: cannot read: %s", what, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return p11p_ydoc_report(&c->y, m, "%s is not a regular file", what);
	/* O_NONBLOCK: a FIFO swapped in after the check must not hang the load. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0)
		return p11p_ydoc_report(&c->y, m, "%s: cannot read: %s", what, strerror(errno));
	if (fstat(fd, &st) != 0) {
		p11p_ydoc_report(&c->y, m, "%s: cannot read: %s", what, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		p11p_ydoc_report(&c->y, m, "%s is not a regular file", what);
		goto out;
	}
	if (!p11p_file_is_private(&st)) {
		p11p_ydoc_report(&c->y, m,
		                 "%s is accessible by group or others (mode %04o; use chmod 600)",
		                 what, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	while (len < sizeof(buf)) {
		ssize_t r = read(fd, buf + len, sizeof(buf) - len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			p11p_ydoc_report(&c->y, m, "%s: cannot read: %s", what, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	ok = make_pin(c, m, what, buf, len, out);
out:
	p11p_wipe(buf, sizeof(buf));
	close(fd);
	return ok;
}

/* "env:NAME" or "file:/absolute/path". */
static bool read_pin_source(struct pctx *c, const yaml_mark_t *m, const char *src,
                            struct p11p_secret **out)
{
	char what[P11P_YDOC_SHOW_MAX + 40], buf[P11P_YDOC_SHOW_BUF];

	if (strncmp(src, "env:", 4) == 0 && env_name_ok(src + 4)) {
		const char *v = getenv(src + 4);

		snprintf(what, sizeof(what), "environment variable '%s'", src + 4);
		if (v == NULL)
			return p11p_ydoc_report(&c->y, m, "%s is not set", what);
		/* make_pin strips a trailing newline: harmless for a variable too. */
		return make_pin(c, m, what, v, strnlen(v, P11P_MAX_PIN_LEN + 3), out);
	}
	if (strncmp(src, "file:", 5) == 0 && src[5] == '/')
		return read_pin_file(c, m, src + 5, out);
	return p11p_ydoc_report(&c->y, m,
	                        "PIN source '%s' must be 'env:NAME' or 'file:/absolute/path'",
	                        p11p_ydoc_show(src, strlen(src), buf));
}

struct p11p_secret *p11p_pin_from_source(const char *src, const char *where, char *err,
                                         size_t errlen)
{
	struct pctx c = {.y = YDOC_INIT(where, err, errlen)};
	struct p11p_secret *pin = NULL;

	return read_pin_source(&c, NULL, src, &pin) ? pin : NULL;
}

/* ---- schema ---------------------------------------------------------------- */

static void set_pos(struct p11p_pos *pos, const yaml_node_t *n)
{
	pos->line = (unsigned long)n->start_mark.line + 1;
	pos->column = (unsigned long)n->start_mark.column + 1;
}

/* ---- HA settings -------------------------------------------------------------- */

/* A whole number in [min, max]; `scale` multiplies it (after the check). */
static bool parse_number(struct pctx *c, const yaml_node_t *n, const char *what, unsigned long min,
                         unsigned long max, unsigned long *out)
{
	const char *s, *p;
	unsigned long v = 0;
	char buf[P11P_YDOC_SHOW_BUF];

	if (!get_string(c, n, what, &s))
		return false;
	for (p = s; *p >= '0' && *p <= '9'; p++) {
		if (v > (ULONG_MAX - (unsigned long)(*p - '0')) / 10)
			return p11p_ydoc_report(&c->y, &n->start_mark, "'%s' is out of range",
			                        what);
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (p == s || *p != '\0')
		return p11p_ydoc_report(&c->y, &n->start_mark,
		                        "'%s' must be a whole number, not '%s'", what,
		                        p11p_ydoc_show(s, strlen(s), buf));
	if (v < min || v > max)
		return p11p_ydoc_report(&c->y, &n->start_mark, "'%s' must be between %lu and %lu",
		                        what, min, max);
	*out = v;
	return true;
}

/* A duration: "250ms", "5s" or a bare number of seconds; in milliseconds. */
static bool parse_duration(struct pctx *c, const yaml_node_t *n, const char *what,
                           unsigned long min_ms, unsigned long max_ms, unsigned long *out)
{
	const char *s, *p;
	unsigned long v = 0, scale = 1000;
	char buf[P11P_YDOC_SHOW_BUF];

	if (!get_string(c, n, what, &s))
		return false;
	for (p = s; *p >= '0' && *p <= '9'; p++) {
		if (v > 100000000UL)
			return p11p_ydoc_report(&c->y, &n->start_mark, "'%s' is out of range",
			                        what);
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (strcmp(p, "ms") == 0)
		scale = 1;
	else if (strcmp(p, "s") != 0 && *p != '\0')
		p = s; /* bad suffix */
	if (p == s)
		return p11p_ydoc_report(&c->y, &n->start_mark,
		                        "'%s' must be a duration such as 500ms or 5s, not '%s'",
		                        what, p11p_ydoc_show(s, strlen(s), buf));
	/* Checked before scaling: a 32-bit unsigned long must not wrap. */
	if (v > max_ms / scale || v * scale < min_ms)
		return p11p_ydoc_report(&c->y, &n->start_mark,
		                        "'%s' must be between %lums and %lums", what, min_ms,
		                        max_ms);
	v *= scale;
	if (v < min_ms || v > max_ms)

		return p11p_ydoc_report(&c->y, &n->start_mark,
		                        "'%s' must be between %lums and %lums", what, min_ms,
		                        max_ms);
	*out = v;
	return true;
}

enum {
	HA_MODE,
	HA_PROBE,
	HA_TIMEOUT,
	HA_RETRIES,
	HA_REPLAY,
	HA_QUORUM,
	HA_REPL_KEY,
	HA_SINGLE,
	HA_REPL,
	HA_REPL_WAIT,
	HA_N
};
static const char *const ha_keys[HA_N] = {
    "mode",       "probe_interval",  "call_timeout",       "retries",     "replay_buffer",
    "key_quorum", "replication_key", "single_member_keys", "replication", "replication_wait"};

static bool parse_bool(struct pctx *c, const yaml_node_t *n, const char *what, bool *out)
{
	const char *s;

	if (!get_string(c, n, what, &s))
		return false;
	if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0)
		*out = true;
	else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0)
		*out = false;
	else
		return p11p_ydoc_report(&c->y, &n->start_mark, "'%s' must be true or false", what);
	return true;
}

static void ha_defaults(struct p11p_ha_cfg *ha)
{
	ha->mode = P11P_HA_FAILOVER;
	ha->probe_interval_ms = P11P_HA_DEFAULT_PROBE_MS;
	ha->call_timeout_ms = 0;
	ha->retries = P11P_HA_DEFAULT_RETRIES;
	ha->replay_buffer = P11P_HA_DEFAULT_REPLAY;
	ha->replication = P11P_REPL_WRAP;
	ha->replication_wait_ms = P11P_HA_DEFAULT_REPL_WAIT_MS;
}

static bool parse_ha(struct pctx *c, const yaml_node_t *n, struct p11p_ha_cfg *ha)
{
	yaml_node_t *v[HA_N], *k[HA_N];
	unsigned long num;
	const char *mode;
	char buf[P11P_YDOC_SHOW_BUF];

	if (n->type != YAML_MAPPING_NODE)
		return p11p_ydoc_report(&c->y, &n->start_mark, "'ha' must be a mapping");
	if (!p11p_ydoc_walk_map(&c->y, n, "in ha", ha_keys, HA_N, v, k))
		return false;
	if (v[HA_MODE] != NULL) {
		if (!get_string(c, v[HA_MODE], "mode", &mode))
			return false;
		if (strcmp(mode, "failover") == 0)
			ha->mode = P11P_HA_FAILOVER;
		else if (strcmp(mode, "balance") == 0)
			ha->mode = P11P_HA_BALANCE;
		else
			return p11p_ydoc_report(&c->y, &v[HA_MODE]->start_mark,
			                        "'mode' must be failover or balance, not '%s'",
			                        p11p_ydoc_show(mode, strlen(mode), buf));
	}
	if (v[HA_PROBE] != NULL &&
	    !parse_duration(c, v[HA_PROBE], "probe_interval", 10, 3600000, &ha->probe_interval_ms))
		return false;
	if (v[HA_TIMEOUT] != NULL &&
	    !parse_duration(c, v[HA_TIMEOUT], "call_timeout", 0, 3600000, &ha->call_timeout_ms))
		return false;
	if (v[HA_RETRIES] != NULL) {
		if (!parse_number(c, v[HA_RETRIES], "retries", 0, P11P_MAX_MEMBERS, &num))
			return false;
		ha->retries = (unsigned)num;
	}
	if (v[HA_REPLAY] != NULL) {
		if (!parse_number(c, v[HA_REPLAY], "replay_buffer", 0, P11P_HA_MAX_REPLAY, &num))
			return false;
		ha->replay_buffer = num;
	}
	if (v[HA_QUORUM] != NULL) {
		if (!parse_number(c, v[HA_QUORUM], "key_quorum", 0, P11P_MAX_MEMBERS, &num))
			return false;
		ha->key_quorum = (unsigned)num;
	}
	if (v[HA_REPL_KEY] != NULL) {
		const char *label;

		if (!get_string(c, v[HA_REPL_KEY], "replication_key", &label) ||
		    !check_text(c, &v[HA_REPL_KEY]->start_mark, "replication_key", label,
		                P11P_LABEL_MAX))
			return false;
		ha->replication_key = dup_or_oom(c, label);
		if (ha->replication_key == NULL)
			return false;
	}
	if (v[HA_SINGLE] != NULL &&
	    !parse_bool(c, v[HA_SINGLE], "single_member_keys", &ha->single_member_keys))
		return false;
	if (v[HA_REPL] != NULL) {
		const char *r;

		if (!get_string(c, v[HA_REPL], "replication", &r))
			return false;
		if (strcmp(r, "wrap") == 0)
			ha->replication = P11P_REPL_WRAP;
		else if (strcmp(r, "vendor") == 0)
			ha->replication = P11P_REPL_VENDOR;
		else if (strcmp(r, "none") == 0)
			ha->replication = P11P_REPL_NONE;
		else
			return p11p_ydoc_report(
			    &c->y, &v[HA_REPL]->start_mark,
			    "'replication' must be wrap, vendor or none, not '%s'",
			    p11p_ydoc_show(r, strlen(r), buf));
	}
	if (v[HA_REPL_WAIT] != NULL && !parse_duration(c, v[HA_REPL_WAIT], "replication_wait", 0,
	                                               600000, &ha->replication_wait_ms))
		return false;
	return true;
}

enum { PO_WRITE_BACK, PO_SCAN, PO_N };
static const char *const policy_keys[PO_N] = {"write_back", "scan"};

static bool parse_policy(struct pctx *c, const yaml_node_t *n, struct p11p_policy_cfg *po)
{
	yaml_node_t *v[PO_N], *k[PO_N];
	const char *scan;
	char buf[P11P_YDOC_SHOW_BUF];

	if (n->type != YAML_MAPPING_NODE)
		return p11p_ydoc_report(&c->y, &n->start_mark, "'policy' must be a mapping");
	if (!p11p_ydoc_walk_map(&c->y, n, "in policy", policy_keys, PO_N, v, k))
		return false;
	if (v[PO_WRITE_BACK] != NULL &&
	    !parse_bool(c, v[PO_WRITE_BACK], "write_back", &po->write_back))
		return false;
	if (v[PO_SCAN] != NULL) {
		if (!get_string(c, v[PO_SCAN], "scan", &scan))
			return false;
		if (strcmp(scan, "all") == 0)
			po->scan = P11P_SCAN_ALL;
		else if (strcmp(scan, "owned") == 0)
			po->scan = P11P_SCAN_OWNED;
		else
			return p11p_ydoc_report(&c->y, &v[PO_SCAN]->start_mark,
			                        "'scan' must be all or owned, not '%s'",
			                        p11p_ydoc_show(scan, strlen(scan), buf));
	}
	return true;
}

enum { EN_SOURCE, EN_RESEED_BYTES, EN_RESEED_SECONDS, EN_ON_FAILURE, EN_N };
static const char *const entropy_keys[EN_N] = {"source", "reseed_bytes", "reseed_seconds",
                                               "on_hsm_failure"};

static bool parse_entropy(struct pctx *c, const yaml_node_t *n, struct p11p_entropy_cfg *en)
{
	yaml_node_t *v[EN_N], *k[EN_N];
	const char *s;
	unsigned long num;
	char buf[P11P_YDOC_SHOW_BUF];

	if (n->type != YAML_MAPPING_NODE)
		return p11p_ydoc_report(&c->y, &n->start_mark, "'entropy' must be a mapping");
	if (!p11p_ydoc_walk_map(&c->y, n, "in entropy", entropy_keys, EN_N, v, k))
		return false;
	en->source = P11P_ENTROPY_MIX;
	if (v[EN_SOURCE] != NULL) {
		if (!get_string(c, v[EN_SOURCE], "source", &s))
			return false;
		if (strcmp(s, "os") == 0)
			en->source = P11P_ENTROPY_OS;
		else if (strcmp(s, "hsm") == 0)
			en->source = P11P_ENTROPY_HSM;
		else if (strcmp(s, "mix") == 0)
			en->source = P11P_ENTROPY_MIX;
		else
			return p11p_ydoc_report(&c->y, &v[EN_SOURCE]->start_mark,
			                        "'source' must be os, hsm or mix, not '%s'",
			                        p11p_ydoc_show(s, strlen(s), buf));
	}
	if (v[EN_RESEED_BYTES] != NULL) {
		if (!parse_number(c, v[EN_RESEED_BYTES], "reseed_bytes", 1,
		                  (unsigned long)(P11P_ENTROPY_MAX_RESEED_BYTES > ULONG_MAX
		                                      ? ULONG_MAX
		                                      : P11P_ENTROPY_MAX_RESEED_BYTES),
		                  &num))
			return false;
		en->reseed_bytes = num;
	}
	if (v[EN_RESEED_SECONDS] != NULL) {
		if (!parse_number(c, v[EN_RESEED_SECONDS], "reseed_seconds", 1,
		                  P11P_ENTROPY_MAX_RESEED_SECONDS, &num))
			return false;
		en->reseed_seconds = num;
	}
	if (v[EN_ON_FAILURE] != NULL) {
		if (!get_string(c, v[EN_ON_FAILURE], "on_hsm_failure", &s))
			return false;
		if (strcmp(s, "fail") == 0)
			en->on_hsm_failure = P11P_ENTROPY_FAIL;
		else if (strcmp(s, "os_only") == 0)
			en->on_hsm_failure = P11P_ENTROPY_OS_ONLY;
		else
			return p11p_ydoc_report(
			    &c->y, &v[EN_ON_FAILURE]->start_mark,
			    "'on_hsm_failure' must be fail or os_only, not '%s'",
			    p11p_ydoc_show(s, strlen(s), buf));
	}
	return true;
}

/* An absolute path (what: the key, for messages) into *out. */
static bool parse_path(struct pctx *c, const yaml_node_t *n, const char *what, char **out)
{
	const char *s;
	char buf[P11P_YDOC_SHOW_BUF];

	if (!get_string(c, n, what, &s))
		return false;
	if (s[0] != '/')
		return p11p_ydoc_report(&c->y, &n->start_mark, "%s '%s' is not an absolute path",
		                        what, p11p_ydoc_show(s, strlen(s), buf));
	*out = dup_or_oom(c, s);
	return *out != NULL;
}

/* A list of CKR names (CKR_DEVICE_ERROR) or numbers (0x80000001 for vendor codes). */
static bool parse_rv_list(struct pctx *c, const yaml_node_t *n, const char *what, CK_RV *out,
                          size_t *count)
{
	char buf[P11P_YDOC_SHOW_BUF];

	if (n->type != YAML_SEQUENCE_NODE)
		return p11p_ydoc_report(&c->y, &n->start_mark, "'%s' must be a list", what);
	*count = 0;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		yaml_node_t *item = p11p_ydoc_node(&c->y, *it);
		const char *s;
		CK_SLOT_ID num;

		if (item == NULL)
			return p11p_ydoc_report(&c->y, &n->start_mark, "malformed list");
		if (*count == P11P_MAX_ERROR_OVERRIDES)
			return p11p_ydoc_report(&c->y, &item->start_mark,
			                        "too many entries in '%s' (at most %d)", what,
			                        P11P_MAX_ERROR_OVERRIDES);
		if (!get_string(c, item, what, &s))
			return false;
		if (strncmp(s, "CKR_", 4) == 0) {
			if (p11p_ckr_value(s, &out[*count]) != CKR_OK)
				return p11p_ydoc_report(&c->y, &item->start_mark,
				                        "unknown result code '%s'",
				                        p11p_ydoc_show(s, strlen(s), buf));
		} else {
			if (!parse_slot_id(c, &item->start_mark, "result code", s, &num))
				return false;
			out[*count] = num;
		}
		(*count)++;
	}
	return true;
}

enum { BK_NAME, BK_MODULE, BK_SERVER_ERRORS, BK_CLIENT_ERRORS, BK_N };
static const char *const backend_keys[BK_N] = {"name", "module", "server_errors", "client_errors"};

static bool backend_name_ok(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return false;
	return true;
}

static bool parse_backend(struct pctx *c, const yaml_node_t *n, size_t idx)
{
	struct p11p_backend_cfg *be = &c->cfg->backends[idx];
	yaml_node_t *v[BK_N], *k[BK_N];
	const char *name, *module;
	char buf[P11P_YDOC_SHOW_BUF];

	if (n->type != YAML_MAPPING_NODE)
		return p11p_ydoc_report(&c->y, &n->start_mark, "each backend must be a mapping");
	if (!p11p_ydoc_walk_map(&c->y, n, "in backend", backend_keys, BK_N, v, k))
		return false;
	for (size_t i = BK_NAME; i <= BK_MODULE; i++)
		if (v[i] == NULL)
			return p11p_ydoc_report(&c->y, &n->start_mark,
			                        "missing key '%s' in backend", backend_keys[i]);
	if (v[BK_SERVER_ERRORS] != NULL && !parse_rv_list(c, v[BK_SERVER_ERRORS], "server_errors",
	                                                  be->server_errors, &be->n_server_errors))
		return false;
	if (v[BK_CLIENT_ERRORS] != NULL && !parse_rv_list(c, v[BK_CLIENT_ERRORS], "client_errors",
	                                                  be->client_errors, &be->n_client_errors))
		return false;
	if (!get_string(c, v[BK_NAME], "name", &name) ||
	    !get_string(c, v[BK_MODULE], "module", &module))
		return false;
	if (!check_text(c, &v[BK_NAME]->start_mark, "backend name", name, P11P_NAME_MAX))
		return false;
	if (!backend_name_ok(name))
		return p11p_ydoc_report(
		    &c->y, &v[BK_NAME]->start_mark,
		    "backend name '%s' may only contain letters, digits, '.', '_', '-'",
		    p11p_ydoc_show(name, strlen(name), buf));
	for (size_t i = 0; i < idx; i++)
		if (strcmp(c->cfg->backends[i].name, name) == 0)
			return p11p_ydoc_report(&c->y, &v[BK_NAME]->start_mark,
			                        "duplicate backend name '%s' (first at line %lu)",
			                        name, c->cfg->backends[i].pos.line);
	if (!check_module(c, &v[BK_MODULE]->start_mark, "module", module))
		return false;
	set_pos(&be->pos, n);
	be->name = dup_or_oom(c, name);
	if (be->name == NULL)
		return false;
	be->module = dup_or_oom(c, module);
	if (be->module == NULL)
		return false;
	c->cfg->n_backends = idx + 1;
	return true;
}

enum { MB_BACKEND, MB_SLOT_ID, MB_TOKEN_LABEL, MB_TOKEN_SERIAL, MB_URI, MB_PIN, MB_NAME, MB_N };
static const char *const member_keys[MB_N] = {"backend", "slot_id", "token_label", "token_serial",
                                              "uri",     "pin",     "name"};

/* A member's default name: what selects its token (a URI gets "member-N"). */
static bool member_name(struct pctx *c, const yaml_node_t *v, struct p11p_member_cfg *mb,
                        size_t index)
{
	char buf[32];
	const char *name;

	if (v != NULL) {
		if (!get_string(c, v, "name", &name))
			return false;
		if (!check_text(c, &v->start_mark, "member name", name, P11P_NAME_MAX) ||
		    !backend_name_ok(name))
			return p11p_ydoc_report(
			    &c->y, &v->start_mark,
			    "member name '%s' must be 1 to %d letters, digits, '.', '_', '-'",
			    p11p_ydoc_show(name, strlen(name), (char[P11P_YDOC_SHOW_BUF]){0}),
			    P11P_NAME_MAX);
	} else if (mb->sel == P11P_SEL_TOKEN_LABEL) {
		name = mb->token_label;
	} else if (mb->sel == P11P_SEL_TOKEN_SERIAL) {
		name = mb->token_serial;
	} else {
		if (mb->sel == P11P_SEL_SLOT_ID)
			snprintf(buf, sizeof(buf), "slot-%lu", (unsigned long)mb->slot_id);
		else
			snprintf(buf, sizeof(buf), "member-%zu", index + 1);
		name = buf;
	}
	mb->name = dup_or_oom(c, name);
	return mb->name != NULL;
}

static bool mark_before(const yaml_mark_t *a, const yaml_mark_t *b)
{
	return a->index < b->index;
}

static bool parse_member(struct pctx *c, const yaml_node_t *n, struct p11p_member_cfg *mb,
                         size_t index)
{
	yaml_node_t *v[MB_N], *k[MB_N];
	const char *backend, *sel_val, *pin_src;
	char buf[P11P_YDOC_SHOW_BUF];
	int first = -1, second = -1;
	size_t i;

	if (n->type != YAML_MAPPING_NODE)
		return p11p_ydoc_report(&c->y, &n->start_mark, "each member must be a mapping");
	if (!p11p_ydoc_walk_map(&c->y, n, "in member", member_keys, MB_N, v, k))
		return false;
	set_pos(&mb->pos, n);
	if (v[MB_BACKEND] == NULL)
		return p11p_ydoc_report(&c->y, &n->start_mark, "missing key 'backend' in member");
	if (!get_string(c, v[MB_BACKEND], "backend", &backend))
		return false;
	for (i = 0; i < c->cfg->n_backends; i++)
		if (strcmp(c->cfg->backends[i].name, backend) == 0)
			break;
	if (i == c->cfg->n_backends)
		return p11p_ydoc_report(&c->y, &v[MB_BACKEND]->start_mark, "unknown backend '%s'",
		                        p11p_ydoc_show(backend, strlen(backend), buf));
	mb->backend = i;

	/* Exactly one selector; on two, name them in file order, point at the later. */
	for (int s = MB_SLOT_ID; s <= MB_URI; s++) {
		if (v[s] == NULL)
			continue;
		if (first < 0) {
			first = s;
		} else if (second < 0) {
			if (mark_before(&k[s]->start_mark, &k[first]->start_mark)) {
				second = first;
				first = s;
			} else {
				second = s;
			}
		} else if (mark_before(&k[s]->start_mark, &k[second]->start_mark)) {
			/* keep the two earliest */
			if (mark_before(&k[s]->start_mark, &k[first]->start_mark)) {
				second = first;
				first = s;
			} else {
				second = s;
			}
		}
	}
	if (first < 0)
		return p11p_ydoc_report(
		    &c->y, &n->start_mark,
		    "no token selector in member (set one of slot_id, token_label, "
		    "token_serial, uri)");
	if (second >= 0)
		return p11p_ydoc_report(&c->y, &k[second]->start_mark,
		                        "more than one token selector in member ('%s' and '%s')",
		                        member_keys[first], member_keys[second]);
	if (!get_string(c, v[first], member_keys[first], &sel_val))
		return false;
	const yaml_mark_t *vm = &v[first]->start_mark;

	switch (first) {
	case MB_SLOT_ID:
		mb->sel = P11P_SEL_SLOT_ID;
		if (!parse_slot_id(c, vm, "slot_id", sel_val, &mb->slot_id))
			return false;
		break;
	case MB_TOKEN_LABEL:
		mb->sel = P11P_SEL_TOKEN_LABEL;
		if (!check_text(c, vm, "token_label", sel_val, P11P_LABEL_MAX))
			return false;
		mb->token_label = dup_or_oom(c, sel_val);
		if (mb->token_label == NULL)
			return false;
		break;
	case MB_TOKEN_SERIAL:
		mb->sel = P11P_SEL_TOKEN_SERIAL;
		if (!check_text(c, vm, "token_serial", sel_val, P11P_SERIAL_MAX))
			return false;
		mb->token_serial = dup_or_oom(c, sel_val);
		if (mb->token_serial == NULL)
			return false;
		break;
	default:
		mb->sel = P11P_SEL_URI;
		if (!check_uri(c, vm, sel_val))
			return false;
		mb->uri = dup_or_oom(c, sel_val);
		if (mb->uri == NULL)
			return false;
		break;
	}

	if (v[MB_PIN] != NULL) {
		if (!get_string(c, v[MB_PIN], "pin", &pin_src))
			return false;
		if (!read_pin_source(c, &v[MB_PIN]->start_mark, pin_src, &mb->pin))
			return false;
		mb->pin_source = dup_or_oom(c, pin_src);
		if (mb->pin_source == NULL)
			return false;
	}
	return member_name(c, v[MB_NAME], mb, index);
}

enum {
	SL_LABEL,
	SL_USER_PIN_HASH,
	SL_PIN_MAX_TRIES,
	SL_MEMBERS,
	SL_HA,
	SL_POLICY,
	SL_ENTROPY,
	SL_FRAGMENTS,
	SL_N
};
static const char *const slot_keys[SL_N] = {"label", "user_pin_hash", "pin_max_tries", "members",
                                            "ha",    "policy",        "entropy",       "fragments"};

static bool parse_slot(struct pctx *c, const yaml_node_t *n, size_t idx)
{
	struct p11p_slot_cfg *sl = &c->cfg->slots[idx];
	yaml_node_t *v[SL_N], *k[SL_N];
	const char *label, *hash;
	char buf[P11P_YDOC_SHOW_BUF];
	unsigned long tries;
	size_t count;

	if (n->type != YAML_MAPPING_NODE)
		return p11p_ydoc_report(&c->y, &n->start_mark, "each slot must be a mapping");
	if (!p11p_ydoc_walk_map(&c->y, n, "in slot", slot_keys, SL_N, v, k))
		return false;
	if (v[SL_LABEL] == NULL)
		return p11p_ydoc_report(&c->y, &n->start_mark, "missing key 'label' in slot");
	if (v[SL_MEMBERS] == NULL)
		return p11p_ydoc_report(&c->y, &n->start_mark, "missing key 'members' in slot");
	if (!get_string(c, v[SL_LABEL], "label", &label))
		return false;
	if (!check_text(c, &v[SL_LABEL]->start_mark, "label", label, P11P_LABEL_MAX))
		return false;
	for (size_t i = 0; i < idx; i++)
		if (strcmp(c->cfg->slots[i].label, label) == 0)
			return p11p_ydoc_report(&c->y, &v[SL_LABEL]->start_mark,
			                        "duplicate slot label '%s' (first at line %lu)",
			                        p11p_ydoc_show(label, strlen(label), buf),
			                        c->cfg->slots[i].pos.line);
	set_pos(&sl->pos, n);
	sl->label = dup_or_oom(c, label);
	if (sl->label == NULL)
		return false;
	/* Counted from here on, so p11p_config_free() sees this slot's members. */
	c->cfg->n_slots = idx + 1;
	ha_defaults(&sl->ha);
	if (v[SL_HA] != NULL && !parse_ha(c, v[SL_HA], &sl->ha))
		return false;
	if (v[SL_POLICY] != NULL && !parse_policy(c, v[SL_POLICY], &sl->policy))
		return false;
	if (v[SL_ENTROPY] != NULL && !parse_entropy(c, v[SL_ENTROPY], &sl->entropy))
		return false;
	if (v[SL_FRAGMENTS] != NULL && !parse_path(c, v[SL_FRAGMENTS], "fragments", &sl->fragments))
		return false;
	if (v[SL_USER_PIN_HASH] != NULL) {
		if (!get_string(c, v[SL_USER_PIN_HASH], "user_pin_hash", &hash))
			return false;
		if (!p11p_pin_hash_valid(hash))
			return p11p_ydoc_report(&c->y, &v[SL_USER_PIN_HASH]->start_mark,
			                        "malformed user_pin_hash (expected the output of "
			                        "'p11proxy hash-pin')");
		sl->user_pin_hash = dup_or_oom(c, hash);
		if (sl->user_pin_hash == NULL)
			return false;
	}
	sl->pin_max_tries = P11P_PIN_MAX_TRIES_DEFAULT;
	if (v[SL_PIN_MAX_TRIES] != NULL) {
		if (!parse_number(c, v[SL_PIN_MAX_TRIES], "pin_max_tries", 1,
		                  P11P_PIN_MAX_TRIES_MAX, &tries))
			return false;
		sl->pin_max_tries = (unsigned)tries;
	}
	if (!check_list(c, v[SL_MEMBERS], "members", P11P_MAX_MEMBERS, "members"))
		return false;
	count = (size_t)(v[SL_MEMBERS]->data.sequence.items.top -
	                 v[SL_MEMBERS]->data.sequence.items.start);
	sl->members = p11p_calloc(count, sizeof(*sl->members));
	if (sl->members == NULL)
		return p11p_ydoc_oom(&c->y);
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *m = p11p_ydoc_node(&c->y, v[SL_MEMBERS]->data.sequence.items.start[i]);

		sl->n_members = i + 1;
		if (m == NULL)
			return p11p_ydoc_report(&c->y, &v[SL_MEMBERS]->start_mark,
			                        "malformed list");
		if (!parse_member(c, m, &sl->members[i], i))
			return false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(sl->members[j].name, sl->members[i].name) == 0)
				return p11p_ydoc_report(
				    &c->y, &m->start_mark,
				    "duplicate member name '%s' in slot (give one a 'name')",
				    p11p_ydoc_show(sl->members[i].name, strlen(sl->members[i].name),
				                   buf));
	}
	return true;
}

enum { TOP_BACKENDS, TOP_SLOTS, TOP_STATE_DIR, TOP_INDEX, TOP_LOG, TOP_LOG_FACILITY, TOP_N };
static const char *const top_keys[TOP_N] = {"backends", "slots", "state_dir",
                                            "index",    "log",   "log_facility"};

/* `log: stderr | syslog` and `log_facility: user | daemon | local0 .. local7`. */
static bool parse_log(struct pctx *c, const yaml_node_t *log, const yaml_node_t *facility)
{
	char buf[P11P_YDOC_SHOW_BUF];
	const char *s;

	c->cfg->log = P11P_LOG_STDERR;
	c->cfg->log_facility = P11P_LOG_FACILITY_USER;
	if (log != NULL) {
		if (!get_string(c, log, "log", &s))
			return false;
		if (strcmp(s, "stderr") == 0)
			c->cfg->log = P11P_LOG_STDERR;
		else if (strcmp(s, "syslog") == 0)
			c->cfg->log = P11P_LOG_SYSLOG;
		else
			return p11p_ydoc_report(&c->y, &log->start_mark,
			                        "'log' must be stderr or syslog, not '%s'",
			                        p11p_ydoc_show(s, strlen(s), buf));
	}
	if (facility != NULL) {
		if (!get_string(c, facility, "log_facility", &s))
			return false;
		if (strcmp(s, "user") == 0)
			c->cfg->log_facility = P11P_LOG_FACILITY_USER;
		else if (strcmp(s, "daemon") == 0)
			c->cfg->log_facility = P11P_LOG_FACILITY_DAEMON;
		else if (strncmp(s, "local", 5) == 0 && s[5] >= '0' && s[5] <= '7' && s[6] == '\0')
			c->cfg->log_facility = P11P_LOG_FACILITY_LOCAL0 + ((s[5] - '0') << 3);
		else
			return p11p_ydoc_report(
			    &c->y, &facility->start_mark,
			    "'log_facility' must be user, daemon or local0 to local7, not '%s'",
			    p11p_ydoc_show(s, strlen(s), buf));
	}
	return true;
}

/* "<state_dir>/keys.index". */
static bool default_index(struct p11p_config *cfg)
{
	size_t len = strlen(cfg->state_dir) + 1 + strlen(P11P_DEFAULT_INDEX_NAME) + 1;

	cfg->index_path = p11p_malloc(len);
	if (cfg->index_path == NULL)
		return false;
	snprintf(cfg->index_path, len, "%s/%s", cfg->state_dir, P11P_DEFAULT_INDEX_NAME);
	return true;
}

static bool parse_root(struct pctx *c)
{
	yaml_node_t *root = yaml_document_get_root_node(&c->y.doc);
	yaml_node_t *v[TOP_N], *k[TOP_N];
	size_t count;
	char buf[P11P_YDOC_SHOW_BUF];
	static const yaml_mark_t start = {0, 0, 0};

	if (root == NULL)
		return p11p_ydoc_report(&c->y, &start, "empty configuration");
	if (root->type != YAML_MAPPING_NODE)
		return p11p_ydoc_report(&c->y, &root->start_mark, "top level must be a mapping");
	if (!p11p_ydoc_walk_map(&c->y, root, "at top level", top_keys, TOP_N, v, k))
		return false;
	if (v[TOP_BACKENDS] == NULL)
		return p11p_ydoc_report(&c->y, &root->start_mark,
		                        "missing key 'backends' at top level");
	if (v[TOP_SLOTS] == NULL)
		return p11p_ydoc_report(&c->y, &root->start_mark,
		                        "missing key 'slots' at top level");
	if (v[TOP_STATE_DIR] != NULL) {
		const char *dir;

		if (!get_string(c, v[TOP_STATE_DIR], "state_dir", &dir))
			return false;
		if (dir[0] != '/')
			return p11p_ydoc_report(&c->y, &v[TOP_STATE_DIR]->start_mark,
			                        "state_dir '%s' is not an absolute path",
			                        p11p_ydoc_show(dir, strlen(dir), buf));
		c->cfg->state_dir = dup_or_oom(c, dir);
	} else {
		c->cfg->state_dir = dup_or_oom(c, P11P_DEFAULT_STATE_DIR);
	}
	if (c->cfg->state_dir == NULL)
		return false;
	if (v[TOP_INDEX] != NULL) {
		if (!parse_path(c, v[TOP_INDEX], "index", &c->cfg->index_path))
			return false;
		c->cfg->index_explicit = true;
	} else if (!default_index(c->cfg)) {
		return p11p_ydoc_oom(&c->y);
	}
	if (!parse_log(c, v[TOP_LOG], v[TOP_LOG_FACILITY]))
		return false;

	if (!check_list(c, v[TOP_BACKENDS], "backends", P11P_MAX_BACKENDS, "backends"))
		return false;
	count = (size_t)(v[TOP_BACKENDS]->data.sequence.items.top -
	                 v[TOP_BACKENDS]->data.sequence.items.start);
	c->cfg->backends = p11p_calloc(count, sizeof(*c->cfg->backends));
	if (c->cfg->backends == NULL)
		return p11p_ydoc_oom(&c->y);
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *b =
		    p11p_ydoc_node(&c->y, v[TOP_BACKENDS]->data.sequence.items.start[i]);

		if (b == NULL)
			return p11p_ydoc_report(&c->y, &v[TOP_BACKENDS]->start_mark,
			                        "malformed list");
		/* n_backends counts fully parsed ones; free the partial one here. */
		if (!parse_backend(c, b, i)) {
			p11p_free(c->cfg->backends[i].name);
			p11p_free(c->cfg->backends[i].module);
			c->cfg->backends[i].name = c->cfg->backends[i].module = NULL;
			return false;
		}
	}

	if (!check_list(c, v[TOP_SLOTS], "slots", P11P_MAX_SLOTS, "slots"))
		return false;
	count = (size_t)(v[TOP_SLOTS]->data.sequence.items.top -
	                 v[TOP_SLOTS]->data.sequence.items.start);
	c->cfg->slots = p11p_calloc(count, sizeof(*c->cfg->slots));
	if (c->cfg->slots == NULL)
		return p11p_ydoc_oom(&c->y);
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *s = p11p_ydoc_node(&c->y, v[TOP_SLOTS]->data.sequence.items.start[i]);

		if (s == NULL)
			return p11p_ydoc_report(&c->y, &v[TOP_SLOTS]->start_mark, "malformed list");
		if (!parse_slot(c, s, i))
			return false;
	}
	return true;
}

/* ---- YAML front end ------------------------------------------------------- */

static const struct p11p_ydoc_limits conf_limits = {
    .max_bytes = P11P_CONF_MAX_BYTES,
    .max_depth = P11P_CONF_MAX_DEPTH,
    .max_nodes = P11P_CONF_MAX_NODES,
};

static struct p11p_config *parse_buffer(const char *name, const unsigned char *data, size_t len,
                                        char *err, size_t errlen)
{
	struct pctx c = {.y = YDOC_INIT(name, err, errlen)};
	bool ok = false;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (!p11p_ydoc_load(&c.y, data, len, &conf_limits))
		goto out;
	c.cfg = p11p_calloc(1, sizeof(*c.cfg));
	if (c.cfg == NULL) {
		p11p_ydoc_oom(&c.y);
		goto out;
	}
	c.cfg->path = p11p_strdup(name);
	if (c.cfg->path == NULL) {
		p11p_ydoc_oom(&c.y);
		goto out;
	}
	ok = parse_root(&c);
out:
	p11p_ydoc_free(&c.y);
	if (!ok) {
		p11p_config_free(c.cfg);
		return NULL;
	}
	p11p_debug(P11P_DBG_CONFIG, "%s: %zu backend(s), %zu slot(s)", name, c.cfg->n_backends,
	           c.cfg->n_slots);
	return c.cfg;
}

struct p11p_config *p11p_config_parse(const char *name, const void *data, size_t len, char *err,
                                      size_t errlen)
{
	if (name == NULL)
		name = "<config>";
	if (data == NULL)
		len = 0;
	return parse_buffer(name, data ? data : "", len, err, errlen);
}

static struct p11p_config *load_file(const char *path, char *err, size_t errlen)
{
	struct p11p_ydoc y = YDOC_INIT(path, err, errlen);
	struct p11p_config *cfg = NULL;
	unsigned char *buf;
	size_t len;

	if (p11p_ydoc_read_file(&y, P11P_CONF_MAX_BYTES, false, &buf, &len)) {
		cfg = parse_buffer(path, buf, len, err, errlen);
		p11p_free(buf);
	}
	return cfg;
}

/* ---- quick start ------------------------------------------------------------ */

struct p11p_config *p11p_config_from_env(char *err, size_t errlen)
{
	struct pctx c = {.y = YDOC_INIT("environment", err, errlen)};
	static const char *const sel_vars[] = {"HSM_SLOT", "HSM_TOKEN_LABEL", "HSM_TOKEN_SERIAL"};
	const char *lib = getenv("PKCS11_LIB_PATH"), *sel = NULL, *pin, *use_rand;
	struct p11p_config *cfg = NULL;
	struct p11p_member_cfg *mb;
	int which = -1, set = 0;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (lib == NULL) {
		p11p_ydoc_report(&c.y, NULL, "PKCS11_LIB_PATH is not set");
		return NULL;
	}
	for (int i = 0; i < 3; i++) {
		const char *v = getenv(sel_vars[i]);

		if (v != NULL) {
			set++;
			which = i;
			sel = v;
		}
	}
	if (set != 1) {
		p11p_ydoc_report(&c.y, NULL,
		                 "set exactly one of HSM_SLOT, HSM_TOKEN_LABEL, HSM_TOKEN_SERIAL");
		return NULL;
	}
	if (strnlen(lib, P11P_CONF_MAX_STRING + 1) > P11P_CONF_MAX_STRING ||
	    strnlen(sel, P11P_CONF_MAX_STRING + 1) > P11P_CONF_MAX_STRING) {
		p11p_ydoc_report(&c.y, NULL, "%s is longer than %d bytes",
		                 strlen(lib) > P11P_CONF_MAX_STRING ? "PKCS11_LIB_PATH"
		                                                    : sel_vars[which],
		                 P11P_CONF_MAX_STRING);
		return NULL;
	}
	if (!check_module(&c, NULL, "PKCS11_LIB_PATH", lib))
		return NULL;

	cfg = p11p_calloc(1, sizeof(*cfg));
	if (cfg == NULL)
		goto oom;
	cfg->path = p11p_strdup("environment");
	cfg->backends = p11p_calloc(1, sizeof(*cfg->backends));
	cfg->slots = p11p_calloc(1, sizeof(*cfg->slots));
	if (cfg->path == NULL || cfg->backends == NULL || cfg->slots == NULL)
		goto oom;
	cfg->n_backends = 1;
	cfg->backends[0].name = p11p_strdup("default");
	cfg->backends[0].module = p11p_strdup(lib);
	if (cfg->backends[0].name == NULL || cfg->backends[0].module == NULL)
		goto oom;
	cfg->n_slots = 1;
	ha_defaults(&cfg->slots[0].ha);
	cfg->slots[0].pin_max_tries = P11P_PIN_MAX_TRIES_DEFAULT;
	cfg->slots[0].members = p11p_calloc(1, sizeof(*cfg->slots[0].members));
	if (cfg->slots[0].members == NULL)
		goto oom;
	cfg->slots[0].n_members = 1;
	mb = &cfg->slots[0].members[0];
	mb->backend = 0;
	switch (which) {
	case 0:
		mb->sel = P11P_SEL_SLOT_ID;
		if (!parse_slot_id(&c, NULL, "HSM_SLOT", sel, &mb->slot_id))
			goto fail;
		cfg->slots[0].label = p11p_strdup("");
		break;
	case 1:
		mb->sel = P11P_SEL_TOKEN_LABEL;
		if (!check_text(&c, NULL, "HSM_TOKEN_LABEL", sel, P11P_LABEL_MAX))
			goto fail;
		mb->token_label = p11p_strdup(sel);
		if (mb->token_label == NULL)
			goto oom;
		cfg->slots[0].label = p11p_strdup(sel);
		break;
	default:
		mb->sel = P11P_SEL_TOKEN_SERIAL;
		if (!check_text(&c, NULL, "HSM_TOKEN_SERIAL", sel, P11P_SERIAL_MAX))
			goto fail;
		mb->token_serial = p11p_strdup(sel);
		if (mb->token_serial == NULL)
			goto oom;
		cfg->slots[0].label = p11p_strdup("");
		break;
	}
	if (cfg->slots[0].label == NULL)
		goto oom;
	c.cfg = cfg;
	cfg->log = P11P_LOG_STDERR;
	cfg->log_facility = P11P_LOG_FACILITY_USER;
	cfg->state_dir = p11p_strdup(P11P_DEFAULT_STATE_DIR);
	if (cfg->state_dir == NULL || !default_index(cfg) || !member_name(&c, NULL, mb, 0))
		goto oom;
	pin = getenv("HSM_PIN");

	if (pin != NULL) {
		size_t len = strnlen(pin, P11P_MAX_PIN_LEN + 1);

		if (len == 0) {
			p11p_ydoc_report(&c.y, NULL, "HSM_PIN is empty");
			goto fail;
		}
		if (len > P11P_MAX_PIN_LEN) {
			p11p_ydoc_report(&c.y, NULL, "HSM_PIN is longer than %d bytes",
			                 P11P_MAX_PIN_LEN);
			goto fail;
		}
		mb->pin = p11p_secret_new(pin, len);
		mb->pin_source = p11p_strdup("env:HSM_PIN");
		if (mb->pin == NULL || mb->pin_source == NULL)
			goto oom;
	}
	/* HSM_USE_RAND=true: HSM randomness mixed with the OS's (entropy: {source: mix}). */
	use_rand = getenv("HSM_USE_RAND");
	if (use_rand != NULL && use_rand[0] != '\0') {
		if (strcmp(use_rand, "true") == 0 || strcmp(use_rand, "1") == 0 ||
		    strcmp(use_rand, "yes") == 0) {
			cfg->slots[0].entropy.source = P11P_ENTROPY_MIX;
		} else if (strcmp(use_rand, "false") != 0 && strcmp(use_rand, "0") != 0 &&
		           strcmp(use_rand, "no") != 0) {
			p11p_ydoc_report(&c.y, NULL, "HSM_USE_RAND must be true or false");
			goto fail;
		}
	}
	p11p_debug(P11P_DBG_CONFIG, "quick start from the environment (%s)", sel_vars[which]);
	return cfg;
oom:
	p11p_ydoc_oom(&c.y);
fail:
	p11p_config_free(cfg);
	return NULL;
}

/* ---- load / free ------------------------------------------------------------ */

struct p11p_config *p11p_config_load(const char *path, char *err, size_t errlen)
{
	const char *env;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (path == NULL) {
		env = getenv("P11PROXY_CONF");
		if (env != NULL && env[0] != '\0')
			path = env;
		else if (getenv("PKCS11_LIB_PATH") != NULL)
			return p11p_config_from_env(err, errlen);
		else
			path = P11P_DEFAULT_CONF;
	}
	p11p_debug(P11P_DBG_CONFIG, "loading %s", path);
	return load_file(path, err, errlen);
}

const char *p11p_selector_name(enum p11p_selector sel)
{
	switch (sel) {
	case P11P_SEL_SLOT_ID:
		return "slot_id";
	case P11P_SEL_TOKEN_LABEL:
		return "token_label";
	case P11P_SEL_TOKEN_SERIAL:
		return "token_serial";
	case P11P_SEL_URI:
		return "uri";
	}
	return "unknown";
}

const char *p11p_selector_value(const struct p11p_member_cfg *mc, char *buf, size_t len)
{
	switch (mc->sel) {
	case P11P_SEL_SLOT_ID:
		snprintf(buf, len, "%lu", (unsigned long)mc->slot_id);
		return buf;
	case P11P_SEL_TOKEN_LABEL:
		return mc->token_label != NULL ? mc->token_label : "";
	case P11P_SEL_TOKEN_SERIAL:
		return mc->token_serial != NULL ? mc->token_serial : "";
	case P11P_SEL_URI:
		return mc->uri != NULL ? mc->uri : "";
	}
	return "";
}

void p11p_config_free(struct p11p_config *cfg)
{
	if (cfg == NULL)
		return;
	if (cfg->backends != NULL) {
		for (size_t i = 0; i < cfg->n_backends; i++) {
			p11p_free(cfg->backends[i].name);
			p11p_free(cfg->backends[i].module);
		}
		p11p_free(cfg->backends);
	}
	if (cfg->slots != NULL) {
		for (size_t i = 0; i < cfg->n_slots; i++) {
			struct p11p_slot_cfg *sl = &cfg->slots[i];

			if (sl->members != NULL) {
				for (size_t j = 0; j < sl->n_members; j++) {
					struct p11p_member_cfg *mb = &sl->members[j];

					p11p_free(mb->name);
					p11p_free(mb->token_label);
					p11p_free(mb->token_serial);
					p11p_free(mb->uri);
					p11p_free(mb->pin_source);
					p11p_secret_free(mb->pin);
				}
				p11p_free(sl->members);
			}
			p11p_free(sl->label);
			p11p_free(sl->user_pin_hash);
			p11p_free(sl->ha.replication_key);
			p11p_free(sl->fragments);
		}
		p11p_free(cfg->slots);
	}
	p11p_free(cfg->path);
	p11p_free(cfg->state_dir);
	p11p_free(cfg->index_path);
	p11p_free(cfg);
}
