/*
 * The key model (issue 9, item 5): what a virtual key may be used for, how a
 * record is made from a token key's attributes, the words records are shown
 * and parsed with, and what a slot's key-management policy decides. One
 * place, used by the module (lib/virt: vkey.c, object.c, policy.c) and by the
 * CLI (tools/) alike. Pure functions: no backend call, no module state, no
 * I/O. This room includes only lib/base, lib/config and lib/index (and the
 * public include/p11proxy.h for its return code).
 *
 * Permissions by key class. A virtual key has up to seven permissions, the
 * P11P_VK_* bits of index/index.h, one per usage attribute:
 *
 *   permission  attribute     letter  secret  private  public
 *   encrypt     CKA_ENCRYPT     e       x                x
 *   decrypt     CKA_DECRYPT     d       x       x
 *   sign        CKA_SIGN        s       x       x
 *   verify      CKA_VERIFY      v       x                x
 *   wrap        CKA_WRAP        w       x                x
 *   unwrap      CKA_UNWRAP      u       x       x
 *   derive      CKA_DERIVE      k       x       x       (o)
 *
 * x: the permission applies to keys of that class (p11p_vk_class_perms()):
 * a secret key can do everything, a private key decrypts, signs, unwraps
 * and derives, a public key encrypts, verifies and wraps. Sign-recover and
 * verify-recover are not permissions of their own: C_SignRecoverInit needs
 * sign and C_VerifyRecoverInit verify (p11p_vk_op_perm()); CKA_SIGN_RECOVER
 * and CKA_VERIFY_RECOVER stay the HSM key's.
 *
 * (o): PKCS#11 lists CKA_DERIVE among the attributes common to every key
 * (3.0, 4.7), so a public key carries it (p11p_vk_class_attrs()), but no
 * mechanism derives from a public key: ECDH and DH derive from the private
 * key and take the peer's public value as a parameter. A public virtual key
 * therefore never has the derive permission: its CKA_DERIVE reads CK_FALSE
 * and matches CK_FALSE in a find, setting it to CK_TRUE is
 * CKR_ATTRIBUTE_VALUE_INVALID, an import or sync drops it, and `p11proxy
 * keys allow` refuses it. Objects of other classes (certificates, data...)
 * are not keys: no permission, no usage attribute, never a virtual key.
 *
 * Before this model the module and the CLI each had a table: both gave a
 * public key derive, and the CLI gave every permission to a record of any
 * other class; a sync recorded the HSM key's usage flags unmasked, and a
 * rotated key pair's new public key got other permissions in the record
 * than on the HSM.
 */
#ifndef P11P_VKEYS_MODEL_H
#define P11P_VKEYS_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pkcs11.h"
#include "config/config.h"
#include "index/index.h"

/* ---- permissions and classes -------------------------------------------------------------- */

#define P11P_VK_NPERMS 7 /* permission i is the bit 1u << i (P11P_VK_ENCRYPT ...) */

/* Permission i's usage attribute (CKA_ENCRYPT ... CKA_DERIVE) and name ("encrypt" ...); i < 7. */
CK_ATTRIBUTE_TYPE p11p_vk_perm_attr(unsigned i);
const char *p11p_vk_perm_name(unsigned i);
/* The permission bit of a usage attribute; 0 for any other attribute. */
uint32_t p11p_vk_attr_perm(CK_ATTRIBUTE_TYPE type);
/*
 * Can type be a usage attribute at all (CKA_ENCRYPT 0x104 .. CKA_DERIVE
 * 0x10c)? A test for hot paths to skip the others without a call; false
 * means p11p_vk_attr_perm(type) is 0.
 */
static inline bool p11p_vk_maybe_usage(CK_ATTRIBUTE_TYPE type)
{
	return type >= CKA_ENCRYPT && type <= CKA_DERIVE;
}

/* Is cls a key class (secret, private, public)? Only keys are virtual keys. */
bool p11p_vk_is_key_class(CK_OBJECT_CLASS cls);
/* The permissions that apply to keys of class cls (the table above); 0: not a key. */
uint32_t p11p_vk_class_perms(CK_OBJECT_CLASS cls);
/* The usage attributes class cls carries (PKCS#11 3.0, 4.7 to 4.10); 0: not a key. */
uint32_t p11p_vk_class_attrs(CK_OBJECT_CLASS cls);
/*
 * The permission an operation needs, by its mechanism flag: CKF_ENCRYPT,
 * CKF_DECRYPT, CKF_SIGN and CKF_SIGN_RECOVER (sign), CKF_VERIFY and
 * CKF_VERIFY_RECOVER (verify), CKF_WRAP, CKF_UNWRAP, CKF_DERIVE; 0 for others.
 */
uint32_t p11p_vk_op_perm(CK_FLAGS op);

/* ---- the usage attributes on a token key ------------------------------------------------- */

/*
 * The usage attributes of the permissions in `bits`, in permission order,
 * into t[] with their CK_BBOOL values in v[] (CK_TRUE where `values` has the
 * bit): a template to read them (values 0) or to set them. Returns how many
 * (at most P11P_VK_NPERMS).
 */
CK_ULONG p11p_vk_usage_template(uint32_t bits, uint32_t values, CK_ATTRIBUTE *t, CK_BBOOL *v);
/*
 * The permission bits among t[0..n) that a token answered true (a CK_BBOOL,
 * not CK_FALSE); attributes it did not give, and other attributes, count
 * as not set.
 */
uint32_t p11p_vk_usage_read(const CK_ATTRIBUTE *t, CK_ULONG n);

/* ---- records ------------------------------------------------------------------------------ */

/* A token key as its attributes describe it: what a record is made from. */
struct p11p_vk_key {
	CK_OBJECT_CLASS cls;
	CK_KEY_TYPE key_type;
	const unsigned char *id, *label;
	size_t id_len, label_len;
	uint32_t usage; /* its usage attributes that are true (p11p_vk_usage_read) */
};

/*
 * Can a key with a CKA_ID and a CKA_LABEL of these lengths be recorded? The
 * index keeps P11P_INDEX_ID_MAX and P11P_INDEX_LABEL_MAX bytes; a length a
 * token could not give (CK_UNAVAILABLE_INFORMATION) does not fit either.
 * A key that does not fit is never a virtual key: the module hides it, a
 * sync skips it.
 */
bool p11p_vk_identity_fits(CK_ULONG id_len, CK_ULONG label_len);
/*
 * A new record for key k of virtual slot `slot`: its class, key type,
 * CKA_ID and CKA_LABEL; as permissions the usage flags that are true and
 * apply to its class, within `limit` (P11P_VK_ALL, or a copy's original's
 * permissions); state active; `origin` (created through the proxy, or
 * scanned: imported by a find or a sync); presence: the members holding it
 * (bits past the index's 16 dropped). vid, rev and times are left 0 for the
 * index to fill. false (r zeroed) when k is not a key or does not fit.
 */
bool p11p_vk_record_new(struct p11p_vkey *r, const char *slot, const struct p11p_vk_key *k,
                        uint32_t limit, enum p11p_vk_origin origin, uint32_t presence);
/*
 * Of two records with one identity, is a the one to bind to? Not deleted,
 * then created through the proxy, then the lower virtual id: every process
 * picks the same one.
 */
bool p11p_vk_record_better(const struct p11p_vkey *a, const struct p11p_vkey *b);

/* ---- using a key, finds, attributes ------------------------------------------------------- */

/*
 * The permissions record r grants: its bits that apply to its class (a bit
 * that does not, from an index written before this model, grants nothing).
 */
uint32_t p11p_vk_perms_of(const struct p11p_vkey *r);

/*
 * May the virtual key of record r be used for perm (a P11P_VK_* bit; 0: any
 * use of its material, such as the key C_WrapKey wraps)? CKR_OK;
 * CKR_KEY_HANDLE_INVALID (deleted); P11PROXY_CKR_KEY_DEACTIVATED;
 * CKR_KEY_FUNCTION_NOT_PERMITTED. A missing record (a sync found the key on
 * no member) does not stop a key the module has in hand.
 */
CK_RV p11p_vk_use_check(const struct p11p_vkey *r, uint32_t perm);
/*
 * A find template's usage attribute the proxy matches itself, against the
 * virtual permissions: its bit, or 0 (not a usage attribute, or malformed:
 * the member's find answers for it).
 */
uint32_t p11p_vk_find_attr(const CK_ATTRIBUTE *a);
/*
 * Does record r match a find's usage filter (mask: the bits the template
 * names, want: their values)? A deleted record never does; an attribute the
 * class does not carry matches no value (as on a token); one it carries
 * matches the virtual value.
 */
bool p11p_vk_find_match(const struct p11p_vkey *r, uint32_t mask, uint32_t want);
/*
 * What record r's virtual key reports for attribute `type`: 1 or 0 for a
 * usage attribute its class carries; -1 for any other attribute (the token's
 * answer stands).
 */
int p11p_vk_attr_value(const struct p11p_vkey *r, CK_ATTRIBUTE_TYPE type);
/*
 * C_SetAttributeValue of usage attribute a (p11p_vk_attr_perm(a->type) != 0)
 * on a key of class cls: CKR_OK with its bit added to *mask and its value to
 * *vals; CKR_ATTRIBUTE_TYPE_INVALID when the class does not carry it;
 * CKR_ATTRIBUTE_VALUE_INVALID when it is not a CK_BBOOL, or grants a
 * permission that does not apply to the class.
 */
CK_RV p11p_vk_set_usage(CK_OBJECT_CLASS cls, const CK_ATTRIBUTE *a, uint32_t *mask, uint32_t *vals);

/* ---- changing a record -------------------------------------------------------------------- */

enum p11p_vk_edit {
	P11P_VK_EDIT_CHANGED, /* r changed: write it */
	P11P_VK_EDIT_SAME,    /* nothing to change (*why says what it is already) */
	P11P_VK_EDIT_REFUSED, /* not allowed (*why says why) */
};
/*
 * A state change: P11P_VK_DEACTIVATED (`keys deactivate`), P11P_VK_ACTIVE
 * (`keys activate`: a deactivated key becomes active, or missing when no
 * member holds it) or P11P_VK_DELETED (a virtual delete: the tombstone). A
 * deleted record cannot be (de)activated. why (may be NULL) gets a static
 * message for SAME and REFUSED.
 */
enum p11p_vk_edit p11p_vk_set_state(struct p11p_vkey *r, enum p11p_vk_state to, const char **why);
/*
 * A permission change: the bits of `mask` that apply to the key's class take
 * their values from `vals` (`keys allow` sets them, `keys deny` clears them,
 * C_SetAttributeValue gives both); bits that do not apply are dropped. A
 * deleted record's permissions do not change.
 */
enum p11p_vk_edit p11p_vk_set_perms(struct p11p_vkey *r, uint32_t mask, uint32_t vals,
                                    const char **why);
/* What a key keeps once rotated (`keys rotate`): decrypt and verify, to read what it made. */
uint32_t p11p_vk_rotated_perms(uint32_t perms);
/*
 * The permissions of a private key's public half (a new key pair's public
 * key, when there is no old one to copy): sign gives verify, decrypt gives
 * encrypt, unwrap gives wrap.
 */
uint32_t p11p_vk_public_half(uint32_t private_perms);

/* ---- what a sync does to a record --------------------------------------------------------- */

enum p11p_vk_sync {
	P11P_VK_SYNC_UNCHANGED,
	P11P_VK_SYNC_UPDATED, /* presence or key type changed */
	P11P_VK_SYNC_FOUND,   /* a missing key is held again: active */
	P11P_VK_SYNC_MISSING, /* no member holds it any more (an active key becomes missing) */
	P11P_VK_SYNC_DELETED, /* deleted virtually: left alone, never imported again */
};
/*
 * A sync saw record r's key on the members `holders`; `listed` are the
 * members listed completely (logged in), whose silence counts. r is updated
 * in place: presence, key type, missing -> active. Permissions, state (but
 * missing), origin and rotation links are never touched, so a change made on
 * the HSM does not undo a virtual one.
 */
enum p11p_vk_sync p11p_vk_sync_seen(struct p11p_vkey *r, uint32_t holders, uint32_t listed,
                                    CK_KEY_TYPE key_type);
/* A sync saw record r's key on none of the members in `listed`. */
enum p11p_vk_sync p11p_vk_sync_unseen(struct p11p_vkey *r, uint32_t listed);

/* ---- the key-management policy (`policy: {write_back, scan}`) ------------------------------ */

/*
 * A token key that has no record, met by the module (a find or a handle) or
 * by a sync: imported (origin scanned) under `scan: all`, hidden under
 * `scan: owned` (the module's finds skip it and its handle is invalid; a
 * sync reports it not imported). A key that cannot be recorded
 * (!recordable) is hidden whatever the policy. Keys created through the
 * proxy are recorded under both.
 */
enum p11p_vk_unrecorded {
	P11P_VK_HIDE,
	P11P_VK_IMPORT,
};
enum p11p_vk_unrecorded p11p_vk_on_unrecorded(const struct p11p_policy_cfg *pol, bool recordable);

/*
 * Where a change of a virtual key goes, by `write_back`:
 *
 *   change                                    write_back false   write_back true
 *   permissions (C_SetAttributeValue, allow)  record only        HSM first
 *   other attributes (CKA_ID, CKA_LABEL...)   refused            HSM first
 *   delete (C_DestroyObject, keys delete)     record only        HSM first
 *   state (keys deactivate | activate)        record only        record only
 *
 * record only: the HSM key stays as it is (a delete leaves a tombstone,
 * state deleted). HSM first: the HSM key changes first, on every member
 * holding it; its refusal stands and the record is untouched; then the
 * record follows (a delete removes it). Refused: CKR_ATTRIBUTE_READ_ONLY,
 * so that the virtual key's identity stays the HSM key's.
 */
enum p11p_vk_change {
	P11P_VK_CHANGE_PERMS,
	P11P_VK_CHANGE_ATTRS,
	P11P_VK_CHANGE_DELETE,
	P11P_VK_CHANGE_STATE,
};
enum p11p_vk_route {
	P11P_VK_REFUSE,
	P11P_VK_RECORD_ONLY,
	P11P_VK_HSM_FIRST,
};
enum p11p_vk_route p11p_vk_route(const struct p11p_policy_cfg *pol, enum p11p_vk_change ch);

/* ---- words -------------------------------------------------------------------------------- */

#define P11P_VK_PERMS_STR 8 /* bytes of p11p_vk_perms_str()'s buffer */

/* "edsvwuk" with '-' for a permission not granted: the index's and the CLI's form. */
const char *p11p_vk_perms_str(uint32_t perms, char buf[P11P_VK_PERMS_STR]);
/* That form back: false unless s is exactly seven letters or '-' in their places. */
bool p11p_vk_perms_parse(const char *s, uint32_t *out);
/* One operation name ("encrypt" ... "derive", or "all"): its bits; 0 when unknown. */
uint32_t p11p_vk_perm_parse(const char *name);
/*
 * A list of operation names (argv-style): their bits, or 0 with *bad (may be
 * NULL) at the first unknown one. An empty list is 0 with *bad NULL.
 */
uint32_t p11p_vk_perm_list_parse(int n, char *const *names, const char **bad);
/* The names of the permissions in perms, joined by `sep` ("" for none; cut to fit len). */
const char *p11p_vk_perm_list_str(uint32_t perms, const char *sep, char *buf, size_t len);

/* "active" "deactivated" "missing" "deleted"; "?" for another value. */
const char *p11p_vk_state_name(enum p11p_vk_state s);
bool p11p_vk_state_parse(const char *name, enum p11p_vk_state *out);
/* "created" "scanned". */
const char *p11p_vk_origin_name(enum p11p_vk_origin o);
/* "secret" "private" "public", or "other" for a class that is not a key. */
const char *p11p_vk_class_name(CK_OBJECT_CLASS cls);
/* "all" "owned". */
const char *p11p_vk_scan_name(enum p11p_scan_scope s);

#endif
