/*
 * Customer fragments (Akeyless-style customer_fragments.json).
 *
 * The file is a secret (it holds the fragment values) and untrusted input:
 * read whole (at most P11P_FRAGMENT_FILE_MAX bytes) only when it is a
 * regular file that group and others cannot access (the PIN file rule),
 * parsed with libyaml (JSON is YAML) with bounded depth, node count and
 * lengths, and every error reported as one line "FILE:LINE:COLUMN: message".
 * Fragment values go into secrets; libyaml's own copies of the text are
 * wiped before its buffers are freed.
 *
 * Format (what p11p_fragments_write() produces):
 *   {
 *     "customer_fragments": [
 *       {
 *         "name": "HSM_CF",                 1..64 of [A-Za-z0-9._-], unique
 *         "type": "hsm_wrapped",            or "hsm_secured"
 *         "hsm_key_label": "akeyless_hsm",  1..255 bytes, the HSM HMAC key's CKA_LABEL
 *         "value": "<base64 or hex>",       exactly 32 bytes once decoded
 *         "check_value": "1a2b3c4d",        optional: hex of the first 4 bytes
 *                                           of SHA-256(value); must match
 *         "id": "...", "description": "..." optional, kept as given (Akeyless
 *                                           files carry them)
 *       }
 *     ]
 *   }
 * hsm_wrapped: derive once when loaded and keep the result (in a secret);
 * hsm_secured: derive on every use and keep nothing. (The derivation itself,
 * HKDF with the HSM doing the HMAC, is crypto/hkdf.h; the caller wires them.)
 */
#ifndef P11P_FRAGMENT_H
#define P11P_FRAGMENT_H

#include <stddef.h>

#include "base/pkcs11.h"
#include "base/secret.h"

#define P11P_FRAGMENT_LEN       32
#define P11P_FRAGMENT_CHECK_LEN 4 /* bytes of SHA-256(value) in check_value */
#define P11P_FRAGMENTS_MAX      64
#define P11P_FRAGMENT_FILE_MAX  (64 * 1024)
#define P11P_FRAGMENT_NAME_MAX  64
#define P11P_FRAGMENT_LABEL_MAX 255
#define P11P_FRAGMENT_TEXT_MAX  1024 /* id, description */
#define P11P_FRAGMENT_MAX_DEPTH 8
#define P11P_FRAGMENT_MAX_NODES 2048

enum p11p_fragment_type {
	P11P_FRAGMENT_HSM_WRAPPED = 1,
	P11P_FRAGMENT_HSM_SECURED,
};

struct p11p_fragment {
	char *name;
	enum p11p_fragment_type type;
	char *hsm_key_label;
	struct p11p_secret *value;  /* P11P_FRAGMENT_LEN bytes */
	char *id;                   /* optional: NULL when absent */
	char *description;          /* optional: NULL when absent */
	unsigned long line, column; /* of the entry in the file; 0 when added in memory */
};

struct p11p_fragments {
	char *path; /* as given to load/parse; NULL for a new set */
	size_t n;
	struct p11p_fragment *items;
};

/* The file at path. NULL on error, with the message in err. */
struct p11p_fragments *p11p_fragments_load(const char *path, char *err, size_t errlen);
/* The same from a buffer (no file-mode check); name is used in messages. */
struct p11p_fragments *p11p_fragments_parse(const char *name, const void *data, size_t len,
                                            char *err, size_t errlen);
/* An empty set (gen-fragment with no file yet). NULL on ENOMEM. */
struct p11p_fragments *p11p_fragments_new(void);
void p11p_fragments_free(struct p11p_fragments *set);

const struct p11p_fragment *p11p_fragments_find(const struct p11p_fragments *set, const char *name);

/*
 * Appends a fragment (gen-fragment). value is P11P_FRAGMENT_LEN bytes;
 * description may be NULL. CKR_ARGUMENTS_BAD with a message in err for a
 * bad or duplicate name, a bad label or description, a full set;
 * CKR_HOST_MEMORY.
 */
CK_RV p11p_fragments_add(struct p11p_fragments *set, const char *name, enum p11p_fragment_type type,
                         const char *hsm_key_label, const unsigned char *value, size_t value_len,
                         const char *description, char *err, size_t errlen);

/* The set as JSON text (in a secret: it holds the values). */
CK_RV p11p_fragments_to_json(const struct p11p_fragments *set, struct p11p_secret **json);

/*
 * Writes the set to path atomically with mode 0600: a temporary file in the
 * same directory, fsync, rename, fsync of the directory. CKR_OK, or
 * CKR_FUNCTION_FAILED / CKR_HOST_MEMORY with a message in err.
 */
CK_RV p11p_fragments_write(const struct p11p_fragments *set, const char *path, char *err,
                           size_t errlen);

/* The check value of a 32-byte fragment value (P11P_FRAGMENT_CHECK_LEN bytes). */
CK_RV p11p_fragment_check_value(const unsigned char *value, size_t len,
                                unsigned char out[P11P_FRAGMENT_CHECK_LEN]);

const char *p11p_fragment_type_name(enum p11p_fragment_type type);
/* 0 when s names no type. */
enum p11p_fragment_type p11p_fragment_type_parse(const char *s);

#endif
