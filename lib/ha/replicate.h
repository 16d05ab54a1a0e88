/*
 * What the CLI uses of key replication (lib/ha/replicate.c). A public room
 * header: the CLI includes it, never virt/virt.h; the module's replication
 * hooks are in virt/virt.h.
 */
#ifndef P11P_VIRT_REPLICATE_H
#define P11P_VIRT_REPLICATE_H

#include <stddef.h>

#include "backend/backend.h"
#include "base/pkcs11.h"

/*
 * For tools (`p11proxy keys rotate` on an HA slot): copies key bh from a
 * session on one member (src) to a session on another (dst), both logged in,
 * as replication does: a secret or private key wrapped under the key labelled
 * repl_label (on both members) and unwrapped with the same attributes, a
 * public key, certificate or data object created from its attributes (by
 * value). CKR_OK with the copy's
 * handle, or an error with why it failed in `why`.
 */
CK_RV p11p_repl_copy_key(struct p11p_backend *src_be, CK_SESSION_HANDLE src_h, size_t src_index,
                         CK_OBJECT_HANDLE bh, struct p11p_backend *dst_be, CK_SESSION_HANDLE dst_h,
                         size_t dst_index, const char *repl_label, CK_OBJECT_HANDLE *out, char *why,
                         size_t wl);

struct p11p_debt;
/*
 * For `sync --repair`: debt i of debts (n, one slot's, oldest first; id 0:
 * settled already), an attribute change (P11P_DEBT_ATTRS) whose object its
 * member holds neither under the debt's identity nor under the new one:
 * true when it is settled all the same, as the module settles it: a copy of
 * the object is owed there (it carries the current attributes), or the
 * change renames nothing and no older change owed there renames the object
 * to the debt's identity (the member does not hold it: nothing to change).
 */
bool p11p_repl_debt_moot(struct p11p_debt *debts, size_t n, size_t i);

#endif
