/*
 * Bounded YAML documents with FILE:LINE:COLUMN errors: what the proxy.yaml
 * parser (config.c) and the customer fragments parser (crypto/fragment.c)
 * share.
 *
 * The input is untrusted: it is checked once with libyaml's event parser for
 * size, nesting depth, node count and a single document, then loaded with
 * yaml_parser_load so that every node keeps its position for messages. Every
 * failure writes one line to err, "NAME:LINE:COLUMN: message" (1-based) or
 * "NAME: message" without a position; a later report replaces an earlier one.
 */
#ifndef P11P_YDOC_H
#define P11P_YDOC_H

#include <stdbool.h>
#include <stddef.h>

#include <yaml.h>

/* How much of a value a message quotes, and the buffer p11p_ydoc_show() needs. */
#define P11P_YDOC_SHOW_MAX 120
#define P11P_YDOC_SHOW_BUF (P11P_YDOC_SHOW_MAX + 4)

struct p11p_ydoc_limits {
	size_t max_bytes;        /* input size */
	unsigned max_depth;      /* nesting of collections */
	unsigned long max_nodes; /* nodes in the whole document */
};

struct p11p_ydoc {
	const char *name;      /* the file name in messages */
	const char *debug_tag; /* prefix of the debug line each report writes */
	char *err;
	size_t errlen;
	bool secret; /* the text is secret: libyaml's copies are wiped before they are freed */
	bool failed; /* a report was made */
	bool loaded; /* doc holds a document (p11p_ydoc_free deletes it) */
	yaml_document_t doc;
};

/* Writes the message to y->err (and a debug line); returns false. m may be NULL. */
bool p11p_ydoc_report(struct p11p_ydoc *y, const yaml_mark_t *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* p11p_ydoc_report(y, NULL, "out of memory"). */
bool p11p_ydoc_oom(struct p11p_ydoc *y);

/*
 * A printable, bounded copy of s[0..len) for a message: keeps the message on
 * one line whatever the file contains. buf holds P11P_YDOC_SHOW_BUF bytes.
 */
const char *p11p_ydoc_show(const char *s, size_t len, char *buf);

/*
 * Checks data[0..len) against the limits and loads it into y->doc (reported
 * on failure: "larger than N bytes", libyaml's syntax errors at their
 * position, "more than one YAML document", "nesting deeper than N levels",
 * "more than N YAML nodes", "out of memory"). y->name, err, errlen, secret
 * and debug_tag must be set. Call p11p_ydoc_free() in both cases.
 */
bool p11p_ydoc_load(struct p11p_ydoc *y, const unsigned char *data, size_t len,
                    const struct p11p_ydoc_limits *lim);
/* Deletes the document (wiped first when secret); y stays usable for messages. */
void p11p_ydoc_free(struct p11p_ydoc *y);

/*
 * Reads the file y->name whole: a regular file (opened without following a
 * FIFO's wait), at most max + 1 bytes into a new buffer (p11p_free it; wipe it
 * first when secret). With must_be_private, group and others must have no
 * access. Reports "cannot read: ...", "cannot read: not a regular file",
 * "is accessible by group or others (mode 0NNN; use chmod 600)".
 */
bool p11p_ydoc_read_file(struct p11p_ydoc *y, size_t max, bool must_be_private, unsigned char **buf,
                         size_t *len);

yaml_node_t *p11p_ydoc_node(struct p11p_ydoc *y, int id);
/* Is n the scalar s? */
bool p11p_ydoc_scalar_is(const yaml_node_t *n, const char *s);

/*
 * The value of key `what` as a C string: a scalar of at most max bytes,
 * without NUL bytes. Points into the document. len may be NULL.
 */
bool p11p_ydoc_string(struct p11p_ydoc *y, const yaml_node_t *n, const char *what, size_t max,
                      const char **out, size_t *len);

/*
 * Walks a mapping whose allowed keys are keys[0..n): rejects non-scalar keys,
 * unknown keys and duplicates ("unknown key 'K' WHERE"); vals[i] / knodes[i]
 * get the value and key node of keys[i] (NULL when absent; knodes may be
 * NULL). O(pairs): the first bad key stops the walk.
 */
bool p11p_ydoc_walk_map(struct p11p_ydoc *y, const yaml_node_t *map, const char *where,
                        const char *const *keys, size_t n, yaml_node_t **vals,
                        yaml_node_t **knodes);

#endif
