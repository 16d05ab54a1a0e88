/*
 * What the virtual-key commands (sync, keys, policy) share: the index, the
 * record's text and JSON forms, KEY resolution, and sessions on a slot's
 * members logged in with the member's configured PIN. Tool code only. The
 * rules and the words (permissions by class, records from attributes,
 * states, what the policy decides) are the key model's, vkeys/model.h,
 * which the module uses too.
 */
#ifndef P11P_TOOLS_KEYS_H
#define P11P_TOOLS_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "backend/call.h"
#include "base/pkcs11.h"
#include "util.h"
#include "config/config.h"
#include "index/index.h"
#include "keymodel/model.h"

#define KEYS_ERR_LEN 768
#define KEYS_RETRIES 20 /* read-modify-write attempts on P11P_INDEX_CONFLICT */

struct cli_backends;

/*
 * Opens the config's index. `create`: a missing index (and the directory
 * holding it, 0700) is created; else a missing index gives *out == NULL and
 * 0 (nothing recorded yet). -1 with a message printed on error.
 */
int keys_index_open(const struct p11p_config *cfg, bool create, struct p11p_index **out);
/*
 * The store holding the slots' overlays (member order, policy), as the module
 * decides it (vkeys/vkeys.h: `index:` given, or state_dir a directory).
 * 1: *out opened (NULL when create is false and the file store is not there
 * yet: no overlays); 0: no store, the overlays are files; -1: error reported.
 */
int keys_overlay_store(const struct p11p_config *cfg, bool create, struct p11p_index **out);

/* "AES", "RSA", "EC" ... (CKK_ name without its prefix), or "0x..." (buf). */
const char *keys_type_name(CK_KEY_TYPE kt, char *buf, size_t len);
/* The permissions a record grants as shown: "edsvwuk" with '-' (p11p_vk_perms_of). */
const char *keys_perms_shown(const struct p11p_vkey *v, char buf[P11P_VK_PERMS_STR]);
/* A record's label for a terminal (control bytes escaped; valid until cli_esc's ring turns). */
const char *keys_label(const struct p11p_vkey *v);
/* A record's CKA_ID in hex, or `none` when it has none. */
const char *keys_id(const struct p11p_vkey *v, char *buf, size_t len, const char *none);
/* A record as one JSON object (times ISO 8601; members numbered as `members` numbers them). */
json_t *keys_json_record(const struct p11p_config *cfg, const struct p11p_vkey *v);
/*
 * The members holding the key (presence bits, by configured member) as the
 * CLI numbers members: their 1-based position in the slot's effective order,
 * "1,2" ("-" when none); with names: "1 ka, 2 kb". A member the order leaves
 * out is shown by name, "(deleted)".
 */
const char *keys_presence_str(const struct p11p_config *cfg, const struct p11p_vkey *v,
                              bool names, char *buf, size_t len);
/*
 * "member 2 kb": configured member i of slot s as the CLI numbers members (its
 * position in the effective order), for messages (valid as cli_esc's result).
 */
const char *keys_member_name(const struct p11p_config *cfg, size_t s, size_t i);
/* Frees the member orders the functions above read (once per slot). */
void keys_orders_free(void);

/*
 * KEY, in this order: a virtual id (16 hex digits), a pkcs11: URI (object=,
 * id=, type=, token= naming the virtual slot), a label, a CKA_ID in hex.
 * `slot` (may be NULL) restricts the search to one virtual slot label;
 * `with_deleted`: deleted records match too (a virtual id always does).
 * 1 with *out set; 0 no match; -1 error (ambiguous: every match is listed
 * in the message; other errors). Messages go to stderr.
 */
int keys_resolve(struct p11p_index *idx, const struct p11p_config *cfg, const char *key,
                 const char *slot, bool with_deleted, struct p11p_vkey *out);

/* The config slot whose label is `label`; (size_t)-1 when none. */
size_t keys_slot_by_label(const struct p11p_config *cfg, const char *label);

/* A session on one member of a slot. */
struct keys_member {
	struct p11p_member m;
	const struct p11p_bctx *bc;
	CK_SESSION_HANDLE h;
	bool open, logged_in;
	char err[KEYS_ERR_LEN];
};

/*
 * Finds the member's token and opens a session (read-write when `rw`), logged
 * in as the user with the member's configured PIN when it has one. `need_login`:
 * a member without a PIN is an error. false with km->err set on failure.
 */
bool keys_member_open(struct cli_backends *bes, const struct p11p_member_cfg *mc, size_t idx,
                      bool rw, bool need_login, struct keys_member *km);
void keys_member_close(struct keys_member *km);

/*
 * The token objects of class cls with that CKA_ID and CKA_LABEL on the
 * member: up to max handles into out, *n how many there are (may exceed max).
 */
CK_RV keys_member_find(struct keys_member *km, CK_OBJECT_CLASS cls, const unsigned char *id,
                       size_t id_len, const unsigned char *label, size_t label_len,
                       CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *n);

#endif
