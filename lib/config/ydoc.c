/*
 * Bounded YAML documents: see ydoc.h. Split out of config.c and
 * crypto/fragment.c, which had each their own copy.
 */
#include "config/ydoc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/secret.h"

/* ---- messages ---------------------------------------------------------- */

bool p11p_ydoc_report(struct p11p_ydoc *y, const yaml_mark_t *m, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	y->failed = true;
	if (y->err == NULL || y->errlen == 0)
		return false;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (m != NULL)
		snprintf(y->err, y->errlen, "%s:%lu:%lu: %s", y->name, (unsigned long)m->line + 1,
		         (unsigned long)m->column + 1, msg);
	else
		snprintf(y->err, y->errlen, "%s: %s", y->name, msg);
	p11p_debug(P11P_DBG_CONFIG, "%s%s", y->debug_tag != NULL ? y->debug_tag : "", y->err);
	return false;
}

bool p11p_ydoc_oom(struct p11p_ydoc *y)
{
	return p11p_ydoc_report(y, NULL, "out of memory");
}

const char *p11p_ydoc_show(const char *s, size_t len, char *buf)
{
	size_t i, n = len > P11P_YDOC_SHOW_MAX ? P11P_YDOC_SHOW_MAX : len;

	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		buf[i] = (ch >= 0x20 && ch != 0x7f) ? (char)ch : '?';
	}
	if (n < len)
		memcpy(buf + i, "...", 4);
	else
		buf[i] = '\0';
	return buf;
}

/* ---- node helpers ------------------------------------------------------ */

yaml_node_t *p11p_ydoc_node(struct p11p_ydoc *y, int id)
{
	return yaml_document_get_node(&y->doc, id);
}

bool p11p_ydoc_scalar_is(const yaml_node_t *n, const char *s)
{
	size_t len = strlen(s);

	return n->type == YAML_SCALAR_NODE && n->data.scalar.length == len &&
	       memcmp(n->data.scalar.value, s, len) == 0;
}

bool p11p_ydoc_string(struct p11p_ydoc *y, const yaml_node_t *n, const char *what, size_t max,
                      const char **out, size_t *len)
{
	if (n->type != YAML_SCALAR_NODE)
		return p11p_ydoc_report(y, &n->start_mark, "'%s' must be a string", what);
	if (n->data.scalar.length > max)
		return p11p_ydoc_report(y, &n->start_mark, "'%s' is longer than %zu bytes", what,
		                        max);
	if (memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL)
		return p11p_ydoc_report(y, &n->start_mark, "'%s' contains a NUL byte", what);
	*out = (const char *)n->data.scalar.value;
	if (len != NULL)
		*len = n->data.scalar.length;
	return true;
}

bool p11p_ydoc_walk_map(struct p11p_ydoc *y, const yaml_node_t *map, const char *where,
                        const char *const *keys, size_t n, yaml_node_t **vals, yaml_node_t **knodes)
{
	char buf[P11P_YDOC_SHOW_BUF];

	for (size_t i = 0; i < n; i++) {
		vals[i] = NULL;
		if (knodes != NULL)
			knodes[i] = NULL;
	}
	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = p11p_ydoc_node(y, pair->key), *v = p11p_ydoc_node(y, pair->value);
		size_t i;

		if (k == NULL || v == NULL)
			return p11p_ydoc_report(y, &map->start_mark, "malformed mapping");
		if (k->type != YAML_SCALAR_NODE)
			return p11p_ydoc_report(y, &k->start_mark,
			                        "mapping key %s must be a string", where);
		for (i = 0; i < n; i++)
			if (p11p_ydoc_scalar_is(k, keys[i]))
				break;
		if (i == n)
			return p11p_ydoc_report(y, &k->start_mark, "unknown key '%s' %s",
			                        p11p_ydoc_show((const char *)k->data.scalar.value,
			                                       k->data.scalar.length, buf),
			                        where);
		if (vals[i] != NULL)
			return p11p_ydoc_report(y, &k->start_mark, "duplicate key '%s' %s", keys[i],
			                        where);
		vals[i] = v;
		if (knodes != NULL)
			knodes[i] = k;
	}
	return true;
}

/* ---- loading ----------------------------------------------------------- */

static bool yaml_error(struct p11p_ydoc *y, const yaml_parser_t *p, const unsigned char *data,
                       size_t len)
{
	yaml_mark_t m = p->problem_mark;
	const char *problem = p->problem ? p->problem : "unknown error";

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return p11p_ydoc_oom(y);
	case YAML_READER_ERROR:
		/* The reader gives a byte offset, not a mark: count lines up to it. */
		m.line = m.column = 0;
		for (size_t i = 0; i < p->problem_offset && i < len; i++) {
			if (data[i] == '\n') {
				m.line++;
				m.column = 0;
			} else {
				m.column++;
			}
		}
		return p11p_ydoc_report(y, &m, "invalid input: %s", problem);
	default:
		if (p->context != NULL)
			return p11p_ydoc_report(y, &m, "syntax error: %s %s", problem, p->context);
		return p11p_ydoc_report(y, &m, "syntax error: %s", problem);
	}
}

/* The parser's decoded copies of the input. */
static void wipe_parser(yaml_parser_t *p)
{
	if (p->buffer.start != NULL)
		p11p_wipe(p->buffer.start, (size_t)(p->buffer.end - p->buffer.start));
	if (p->raw_buffer.start != NULL)
		p11p_wipe(p->raw_buffer.start, (size_t)(p->raw_buffer.end - p->raw_buffer.start));
}

static void wipe_event(yaml_event_t *ev)
{
	if (ev->type == YAML_SCALAR_EVENT && ev->data.scalar.value != NULL)
		p11p_wipe(ev->data.scalar.value, ev->data.scalar.length);
}

static void wipe_document(yaml_document_t *doc)
{
	for (yaml_node_t *n = doc->nodes.start; n < doc->nodes.top; n++)
		if (n->type == YAML_SCALAR_NODE && n->data.scalar.value != NULL)
			p11p_wipe(n->data.scalar.value, n->data.scalar.length);
}

static void delete_parser(struct p11p_ydoc *y, yaml_parser_t *p)
{
	if (y->secret)
		wipe_parser(p);
	yaml_parser_delete(p);
}

static void delete_event(struct p11p_ydoc *y, yaml_event_t *ev)
{
	if (y->secret)
		wipe_event(ev);
	yaml_event_delete(ev);
}

/*
 * First pass with the event parser: syntax, one document, bounded depth and
 * node count, so that yaml_parser_load never builds a huge tree.
 */
static bool prescan(struct p11p_ydoc *y, const unsigned char *data, size_t len,
                    const struct p11p_ydoc_limits *lim)
{
	yaml_parser_t p;
	yaml_event_t ev;
	unsigned depth = 0, docs = 0;
	unsigned long nodes = 0;
	bool ok = false, done = false;

	if (!yaml_parser_initialize(&p))
		return p11p_ydoc_oom(y);
	yaml_parser_set_input_string(&p, data, len);
	while (!done) {
		if (!yaml_parser_parse(&p, &ev)) {
			yaml_error(y, &p, data, len);
			goto out;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1) {
				p11p_ydoc_report(y, &ev.start_mark, "more than one YAML document");
				goto fail_event;
			}
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (++depth > lim->max_depth) {
				p11p_ydoc_report(y, &ev.start_mark, "nesting deeper than %u levels",
				                 lim->max_depth);
				goto fail_event;
			}
			/* fall through */
		case YAML_SCALAR_EVENT:
		case YAML_ALIAS_EVENT:
			if (++nodes > lim->max_nodes) {
				p11p_ydoc_report(y, &ev.start_mark, "more than %lu YAML nodes",
				                 lim->max_nodes);
				goto fail_event;
			}
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			depth--;
			break;
		default:
			break;
		}
		delete_event(y, &ev);
	}
	ok = true;
	goto out;
fail_event:
	delete_event(y, &ev);
out:
	delete_parser(y, &p);
	return ok;
}

bool p11p_ydoc_load(struct p11p_ydoc *y, const unsigned char *data, size_t len,
                    const struct p11p_ydoc_limits *lim)
{
	yaml_parser_t p;
	bool ok = false;

	if (len > lim->max_bytes)
		return p11p_ydoc_report(y, NULL, "larger than %zu bytes", lim->max_bytes);
	if (!prescan(y, data, len, lim))
		return false;
	if (!yaml_parser_initialize(&p))
		return p11p_ydoc_oom(y);
	yaml_parser_set_input_string(&p, data, len);
	if (!yaml_parser_load(&p, &y->doc))
		yaml_error(y, &p, data, len);
	else
		ok = y->loaded = true;
	delete_parser(y, &p);
	return ok;
}

void p11p_ydoc_free(struct p11p_ydoc *y)
{
	if (!y->loaded)
		return;
	if (y->secret)
		wipe_document(&y->doc);
	yaml_document_delete(&y->doc);
	y->loaded = false;
}

/* ---- files ------------------------------------------------------------- */

bool p11p_ydoc_read_file(struct p11p_ydoc *y, size_t max, bool must_be_private, unsigned char **buf,
                         size_t *len)
{
	struct stat st;
	bool ok = false;
	CK_RV rv;
	int fd;

	*buf = NULL;
	*len = 0;
	/* O_NONBLOCK: a FIFO in place of the file must not hang the load. */
	fd = open(y->name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return p11p_ydoc_report(y, NULL, "cannot read: %s", strerror(errno));
	if (fstat(fd, &st) != 0) {
		p11p_ydoc_report(y, NULL, "cannot read: %s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		p11p_ydoc_report(y, NULL, "cannot read: not a regular file");
		goto out;
	}
	if (must_be_private && !p11p_file_is_private(&st)) {
		p11p_ydoc_report(y, NULL,
		                 "is accessible by group or others (mode %04o; use chmod 600)",
		                 (unsigned)(st.st_mode & 07777));
		goto out;
	}
	/* max + 1 bytes: the caller tells "exactly at the cap" from "over". */
	rv = p11p_file_read_fd(fd, max, y->secret, buf, len);
	if (rv == CKR_HOST_MEMORY)
		p11p_ydoc_oom(y);
	else if (rv != CKR_OK)
		p11p_ydoc_report(y, NULL, "cannot read: %s", strerror(errno));
	ok = rv == CKR_OK;
out:
	close(fd);
	return ok;
}
