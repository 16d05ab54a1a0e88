/*
 * Virtual PIN state (lib/virt/pinstate.c): wrong user PINs the proxy checks
 * itself (a member whose PIN is in proxy.yaml: the application's PIN is
 * checked against user_pin_hash or that PIN, never by the token), counted
 * per slot in "<state_dir>/slots/<LABEL>.pin" so that every process of the
 * host sees the same count, and shown in the slot's token flags as a token
 * shows its own: CKF_USER_PIN_COUNT_LOW, _FINAL_TRY, _LOCKED at the slot's
 * pin_max_tries. The file holds one line, "user_failures N": a count, never
 * a PIN. Writers take an exclusive flock(2) on it and rewrite it in place
 * (it is never replaced, so the lock is always on the file readers open);
 * readers take a shared one. Mode 0600; a file that is not a regular file
 * or that others may write is refused.
 *
 * A public room header: the CLI (`p11proxy pin`) includes it.
 */
#ifndef P11P_VIRT_PINSTATE_H
#define P11P_VIRT_PINSTATE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/overlay.h"
#include "base/pkcs11.h"
#include "config/config.h"

#define P11P_PINSTATE_EXT ".pin"

/* The slot's state file into buf; -1 when state_dir is unusable or the path does not fit. */
int p11p_pinstate_path(const struct p11p_config *cfg, size_t slot, char *buf, size_t len);

/*
 * The count of wrong user PINs in path: 1 read (*fails), 0 there is no file
 * or no directory (*fails = 0); else (err: "PATH: why") P11P_PINSTATE_DAMAGED
 * (not a regular file, unsafe owner or mode, not the one line),
 * P11P_PINSTATE_NO_ACCESS (cannot be opened: permissions) or
 * P11P_PINSTATE_BUSY (another process held its lock for 2 s). stamp (may be
 * NULL) receives the version read.
 */
#define P11P_PINSTATE_DAMAGED   (-1)
#define P11P_PINSTATE_NO_ACCESS (-2)
#define P11P_PINSTATE_BUSY      (-3)
int p11p_pinstate_read(const char *path, unsigned long *fails, struct p11p_overlay_stamp *stamp,
                       char *err, size_t errlen);

/*
 * Under an exclusive flock: fail adds one wrong PIN to the count (creating
 * the file, and <state_dir>/slots when state_dir exists), else the count
 * goes back to 0 (nothing written when it is 0 already or there is no
 * file). *fails (may be NULL) receives the count written. 0, or -1 with
 * err ("PATH: why").
 */
int p11p_pinstate_update(const char *path, bool fail, unsigned long *fails, char *err,
                         size_t errlen);

/* The CKF_USER_PIN_* flags a token with this count and limit shows (max 0: the default). */
CK_FLAGS p11p_pinstate_flags(unsigned long fails, unsigned long max);

/* A slot's limit: its pin_max_tries, or the default when unset. */
unsigned long p11p_pinstate_max(const struct p11p_slot_cfg *sc);

#endif
