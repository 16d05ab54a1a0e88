/*
 * A slot's key-management policy overlay, the file (lib/vkeys/policy.c):
 * "<state_dir>/slots/<LABEL>.policy", which `p11proxy policy set` writes over
 * the config's `policy:` and the module follows. A public room header: the
 * CLI includes it, never virt/virt.h. What the policy decides is the key
 * model's (vkeys/model.h); the module's cached view of it is in virt/virt.h.
 */
#ifndef P11P_VIRT_POLICY_H
#define P11P_VIRT_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "index/index.h"

#define P11P_POLICY_MAX_BYTES 4096 /* an overlay file */

/*
 * The overlay's path into buf ("<state_dir>/slots/<LABEL>.policy", LABEL
 * encoded as for the member-order overlay); -1 when it does not fit or the
 * config has no usable state_dir.
 */
int p11p_policy_path(const struct p11p_config *cfg, size_t slot, char *buf, size_t len);
/*
 * Parses overlay text (name: for messages): lines "write_back = true|false"
 * and "scan = all|owned", blank lines and '#' comments. A key not given keeps
 * its value in `base` (the config's policy). false with "NAME:LINE: message"
 * in err on any problem.
 */
bool p11p_policy_parse(const char *name, const char *data, size_t len,
                       const struct p11p_policy_cfg *base, struct p11p_policy_cfg *out, char *err,
                       size_t errlen);
/* The overlay text for a policy (NUL-terminated, in buf of at least 256 bytes). */
void p11p_policy_format(const struct p11p_policy_cfg *p, char *buf, size_t len);
/*
 * idx: the store holding the overlay (NULL: the file). In the store, the
 * overlay is read from the handle's copy and named "store:<LABEL>.policy".
 * 1: the overlay, read into out; 0: none (out: the config's); -1: unreadable
 * or damaged (err: "PATH[:LINE]: message"; out: the config's). The module
 * reads only a regular file that belongs to root or to its user and is not
 * writable by group or others.
 */
int p11p_policy_read(const struct p11p_config *cfg, struct p11p_index *idx, size_t slot,
                     struct p11p_policy_cfg *out, char *err, size_t errlen);
/*
 * With idx: writes (p == NULL: removes) the overlay in the store, one
 * transaction with its audit row. Without: writes the file atomically (the CLI): under the
 * exclusive lock p11p_order_lock() (ha/order.h) takes, temp file 0600 in the same directory, fsync,
 * rename, fsync of the directory (directories made 0700); p == NULL removes
 * it (back to the config's). 0, or -1 with err set.
 */
int p11p_policy_write(const struct p11p_config *cfg, struct p11p_index *idx, size_t slot,
                      const struct p11p_policy_cfg *p, char *err, size_t errlen);

#endif
