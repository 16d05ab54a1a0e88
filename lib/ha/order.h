/*
 * Member order overlays, the files (lib/ha/order.c; the format and the
 * design at the top of order.c): "<state_dir>/slots/<LABEL>.members", which
 * `p11proxy members` writes and the module follows. A public room header:
 * the CLI includes it, never virt/virt.h. The module's side (applying an
 * overlay to a live slot) is in virt/virt.h.
 */
#ifndef P11P_VIRT_ORDER_H
#define P11P_VIRT_ORDER_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "base/overlay.h"
#include "index/index.h"

#define P11P_ORDER_CHECK_MS  1000UL       /* the module stats an overlay at most this often */
#define P11P_ORDER_MAX_BYTES (64 * 1024)  /* an overlay file */
#define P11P_ORDER_LINE_MAX  8192         /* one line of it */
#define P11P_ORDER_NONE      ((size_t)-1) /* p11p_order_entry.config_index of an added member */

/* One line of an overlay: a config member by name, or an added member's spec. */
struct p11p_order_entry {
	char name[P11P_NAME_MAX + 1];
	size_t config_index;          /* in the slot's config, or P11P_ORDER_NONE */
	struct p11p_member_cfg *spec; /* an added member (owned; pin not read), else NULL */
	unsigned long line;           /* where it was read (0: not from a file) */
};

/* A slot's member list in priority order. */
struct p11p_order {
	size_t n;
	struct p11p_order_entry e[P11P_MAX_MEMBERS];
	bool from_file; /* an overlay was read (else: the config's order) */
};

/*
 * The slot's overlay file, "<state_dir>/slots/<LABEL>.members" into buf.
 * -1 when it does not fit or the config has no state_dir.
 */
int p11p_order_path(const struct p11p_config *cfg, size_t slot, char *buf, size_t len);
/* The config's own order for the slot. */
void p11p_order_from_config(const struct p11p_config *cfg, size_t slot, struct p11p_order *out);
/*
 * Parses overlay text (name: for messages). false with "NAME:LINE: message"
 * in err on any problem; out is then empty. PINs are not read.
 */
bool p11p_order_parse(const struct p11p_config *cfg, size_t slot, const char *name,
                      const char *data, size_t len, struct p11p_order *out, char *err,
                      size_t errlen);
/*
 * idx: the store holding the overlays (NULL: the file; index/index.h). With a
 * store, stamp is not used and messages name "store:<LABEL>.members";
 * p11p_order_write() then writes it in one store transaction with its audit
 * row (from and to: the member names).
 * Reads the slot's overlay: 1 read into out; 0 there is none (out holds the
 * config's order); -1 unreadable or damaged (err: "PATH[:LINE]: message").
 * stamp (may be NULL) receives what identifies the version read.
 */
int p11p_order_read(const struct p11p_config *cfg, struct p11p_index *idx, size_t slot,
                    struct p11p_order *out, struct p11p_overlay_stamp *stamp, char *err,
                    size_t errlen);
/* The overlay text for an order (p11p_free it), or NULL (ENOMEM, or a line too long). */
char *p11p_order_format(const struct p11p_config *cfg, size_t slot, const struct p11p_order *o);
/*
 * Writers (the CLI): p11p_order_lock() creates the state directories (0700)
 * and takes an exclusive flock on "<state_dir>/slots/.lock": an fd, or -1
 * (err set). Read, change, p11p_order_write() (temp file 0600 in the same
 * directory, fsync, rename, fsync of the directory; o->n == 0 removes the
 * overlay, back to the config's order), then p11p_order_unlock().
 */
int p11p_order_lock(const struct p11p_config *cfg, char *err, size_t errlen);
int p11p_order_write(const struct p11p_config *cfg, struct p11p_index *idx, size_t slot,
                     const struct p11p_order *o, char *err, size_t errlen);
void p11p_order_unlock(int fd);
/* Frees the specs and empties o. */
void p11p_order_clear(struct p11p_order *o);
/* Do two member specs name the same member (name, backend, selector, PIN source)? */
bool p11p_member_cfg_same(const struct p11p_member_cfg *a, const struct p11p_member_cfg *b);
/* Frees a spec p11p_order_parse() made (its PIN wiped); NULL is fine. */
void p11p_member_cfg_free(struct p11p_member_cfg *m);

#endif
