/*
 * Configuration: proxy.yaml (libyaml) or the quick-start environment, parsed
 * into an immutable struct. Every problem is reported as
 * "FILE:LINE:COLUMN: message" (1-based line and column, as editors count).
 */
#ifndef P11P_CONFIG_H
#define P11P_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "base/log.h"
#include "base/pkcs11.h"
#include "base/secret.h"

#define P11P_DEFAULT_CONF "/etc/p11proxy/proxy.yaml"
/* Hard limits: config is untrusted input. */
#define P11P_MAX_BACKENDS    32
#define P11P_MAX_SLOTS       64
#define P11P_MAX_MEMBERS     16
#define P11P_CONF_MAX_BYTES  (1024 * 1024)
#define P11P_MAX_PIN_LEN     256   /* bytes, for member PINs from env: or file: */
#define P11P_CONF_MAX_DEPTH  16    /* nesting of YAML collections */
#define P11P_CONF_MAX_NODES  50000 /* YAML nodes in the whole file */
#define P11P_CONF_MAX_STRING 4096  /* bytes in any scalar */
#define P11P_LABEL_MAX       32    /* token label, as in CK_TOKEN_INFO */
#define P11P_SERIAL_MAX      16    /* token serial number, as in CK_TOKEN_INFO */
#define P11P_NAME_MAX        64    /* backend name */

/* Where a value was found in the file (for later messages). */
struct p11p_pos {
	unsigned long line, column; /* 1-based; 0 when it came from the environment */
};

/* Most entries one error-class override list may hold. */
#define P11P_MAX_ERROR_OVERRIDES 64

struct p11p_backend_cfg {
	/*
	 * Error classes (HA): the defaults are in p11p_rv_is_server_error();
	 * server_errors adds results that mark a member failed (vendor-defined
	 * codes included), client_errors removes defaults.
	 */
	CK_RV server_errors[P11P_MAX_ERROR_OVERRIDES];
	size_t n_server_errors;
	CK_RV client_errors[P11P_MAX_ERROR_OVERRIDES];
	size_t n_client_errors;
	char *name;
	char *module; /* absolute path of the vendor library; must exist */
	struct p11p_pos pos;
};

enum p11p_selector {
	P11P_SEL_SLOT_ID,
	P11P_SEL_TOKEN_LABEL,
	P11P_SEL_TOKEN_SERIAL,
	P11P_SEL_URI,
};

struct p11p_member_cfg {
	char *name;     /* unique in its slot; default: its token label / serial / slot id */
	size_t backend; /* index into config->backends */
	enum p11p_selector sel;  /* exactly one selector is set */
	CK_SLOT_ID slot_id;      /* P11P_SEL_SLOT_ID */
	char *token_label;       /* P11P_SEL_TOKEN_LABEL; at most 32 bytes */
	char *token_serial;      /* P11P_SEL_TOKEN_SERIAL; at most 16 bytes */
	char *uri;               /* P11P_SEL_URI: a pkcs11: URI that p11-kit parsed */
	char *pin_source;        /* "env:NAME" / "file:/path" as written, or NULL (for messages) */
	struct p11p_secret *pin; /* the member's PIN, read at load, or NULL */
	struct p11p_pos pos;
};

enum p11p_ha_mode {
	P11P_HA_FAILOVER, /* new sessions go to the first healthy member */
	P11P_HA_BALANCE,  /* new sessions are spread over the healthy members */
};

/* How a slot's new token objects reach its other members (ha.replication). */
enum p11p_repl_mode {
	P11P_REPL_WRAP = 0, /* the proxy copies them (keys wrapped under ha.replication_key) */
	P11P_REPL_VENDOR,   /* the members copy them themselves: the proxy waits and checks */
	P11P_REPL_NONE,     /* no copies: a new object stays on the member that made it */
};

/* A slot's `ha:` settings, defaults filled in by the parser. */
struct p11p_ha_cfg {
	enum p11p_ha_mode mode;
	unsigned long probe_interval_ms; /* first probe of a failed member; backoff doubles it */
	unsigned long call_timeout_ms;   /* 0: backend calls are not timed */
	unsigned retries;                /* failovers one call may make */
	size_t replay_buffer;            /* multi-part input kept per operation for replay */
	/* Key replication: a new token key is copied to the other members. */
	unsigned key_quorum;             /* members that must hold it; 0: every healthy member */
	char *replication_key;           /* label of the wrapping key present on every member */
	bool single_member_keys;         /* keys that cannot be copied are allowed (else refused) */
	enum p11p_repl_mode replication; /* ha.replication */
	unsigned long replication_wait_ms; /* vendor: how long to wait for the copies */
};

#define P11P_HA_DEFAULT_PROBE_MS     5000UL
#define P11P_HA_DEFAULT_RETRIES      3U
#define P11P_HA_DEFAULT_REPLAY       (64UL * 1024)
#define P11P_HA_DEFAULT_REPL_WAIT_MS 10000UL
#define P11P_HA_MAX_REPLAY           (16UL * 1024 * 1024)

/* A slot's `policy:` (virtual keys, issue 4): the key-management policy. */
enum p11p_scan_scope {
	P11P_SCAN_ALL,   /* every key of the slot's tokens becomes a virtual key */
	P11P_SCAN_OWNED, /* only keys created through the slot (and earlier imports) */
};

struct p11p_policy_cfg {
	bool write_back;           /* updates and deletes of a virtual key reach the HSM key */
	enum p11p_scan_scope scan; /* what a scan imports */
};

/* A slot's `entropy:` (entropy mixing, issue 5). Absent: C_GenerateRandom passes through. */
enum p11p_entropy_source {
	P11P_ENTROPY_PASSTHROUGH = 0, /* no `entropy:`: the member's own generator */
	P11P_ENTROPY_OS,
	P11P_ENTROPY_HSM,
	P11P_ENTROPY_MIX,
};

enum p11p_entropy_on_failure {
	P11P_ENTROPY_FAIL = 0,
	P11P_ENTROPY_OS_ONLY,
};

struct p11p_entropy_cfg {
	enum p11p_entropy_source source;
	enum p11p_entropy_on_failure on_hsm_failure;
	unsigned long long reseed_bytes; /* 0: the generator's default */
	unsigned long reseed_seconds;    /* 0: the generator's default */
};

#define P11P_ENTROPY_MAX_RESEED_BYTES   (1ULL << 40)
#define P11P_ENTROPY_MAX_RESEED_SECONDS (366UL * 24 * 3600)

struct p11p_slot_cfg {
	struct p11p_ha_cfg ha;
	struct p11p_policy_cfg policy;
	struct p11p_entropy_cfg entropy;
	char *fragments;     /* customer_fragments.json of the slot (absolute path), or NULL */
	char *label;         /* token label applications see; 1..32 bytes */
	char *user_pin_hash; /* p11p_pin_hash_make() output, or NULL */
	/*
	 * `pin_max_tries`: wrong PINs the proxy checks itself (a member with a
	 * configured PIN) before the slot shows CKF_USER_PIN_LOCKED and refuses
	 * every PIN until `p11proxy pin reset` (virt/pinstate.h).
	 */
	unsigned pin_max_tries;
	size_t n_members; /* 1..P11P_MAX_MEMBERS */
	struct p11p_member_cfg *members;
	struct p11p_pos pos;
};

#define P11P_PIN_MAX_TRIES_DEFAULT 10
#define P11P_PIN_MAX_TRIES_MAX     1000

#define P11P_DEFAULT_STATE_DIR  "/var/lib/p11proxy"
#define P11P_DEFAULT_INDEX_NAME "keys.db"

struct p11p_config {
	char *path;      /* the file read, or "environment" for the quick start */
	char *state_dir; /* runtime state shared by processes (member order, index) */
	/*
	 * The virtual-key index file. `index:` in the file (index_explicit: the
	 * module refuses to start without it), else "<state_dir>/keys.index"
	 * (used when state_dir exists).
	 */
	char *index_path;
	bool index_explicit;
	/*
	 * `log:` and `log_facility:`: where the module's messages go (the
	 * module applies them with p11p_log_set_target once it has read the
	 * file). Default: P11P_LOG_STDERR, P11P_LOG_FACILITY_USER.
	 */
	enum p11p_log_target log;
	int log_facility;

	size_t n_backends;
	struct p11p_backend_cfg *backends;
	size_t n_slots;
	struct p11p_slot_cfg *slots;
};

/*
 * Loads the configuration:
 *  - path != NULL: that file;
 *  - path == NULL: $P11PROXY_CONF if set; else, if PKCS11_LIB_PATH is set,
 *    the quick start from the environment; else P11P_DEFAULT_CONF.
 * On failure returns NULL and writes one line (no trailing newline) to err,
 * e.g. "/etc/p11proxy/proxy.yaml:7:11: unknown key 'tokn_label' in member".
 * PINs are read here (env: or file:), kept only in secrets.
 */
struct p11p_config *p11p_config_load(const char *path, char *err, size_t errlen);

/*
 * Parses a configuration held in memory (the fuzz harness and `p11proxy
 * check` use it); `name` is the file name used in messages. Module paths and
 * PIN sources are checked and read exactly as by p11p_config_load().
 */
struct p11p_config *p11p_config_parse(const char *name, const void *data, size_t len, char *err,
                                      size_t errlen);

/* Quick start: PKCS11_LIB_PATH + one of HSM_SLOT/HSM_TOKEN_LABEL/HSM_TOKEN_SERIAL
 * + optional HSM_PIN. One backend "default", one slot whose label is the
 * member's token label (HSM_TOKEN_LABEL) or, for the other selectors, is
 * resolved later: label "" means "use the member's own token label". */
struct p11p_config *p11p_config_from_env(char *err, size_t errlen);

/* A selector's key name ("token_label"...), and a member's selector value as text (buf: slot ids).
 */
const char *p11p_selector_name(enum p11p_selector sel);
const char *p11p_selector_value(const struct p11p_member_cfg *mc, char *buf, size_t len);

/* Wipes PINs and frees; NULL is fine. */
void p11p_config_free(struct p11p_config *cfg);

/*
 * Reads a PIN from a source written as in the config, "env:NAME" or
 * "file:/absolute/path", with the same checks (a file only its owner may
 * access; at most P11P_MAX_PIN_LEN bytes; a trailing newline dropped).
 * NULL on failure, with "WHERE: message" in err (never the PIN).
 */
struct p11p_secret *p11p_pin_from_source(const char *src, const char *where, char *err,
                                         size_t errlen);

/*
 * PIN hashes for `user_pin_hash` (OpenSSL PBKDF2-HMAC-SHA256, random salt):
 * "pbkdf2-sha256$ITERATIONS$SALT_B64$HASH_B64".
 */
#define P11P_PIN_HASH_ITER     200000 /* what p11p_pin_hash_make() uses */
#define P11P_PIN_HASH_ITER_MIN 1000   /* accepted range when parsing */
#define P11P_PIN_HASH_ITER_MAX 10000000
/* New hash string (p11p_free it) or NULL on error. */
char *p11p_pin_hash_make(const void *pin, size_t pin_len);
/* Same with a chosen iteration count (tests use the minimum to stay fast);
 * NULL when iterations is outside [P11P_PIN_HASH_ITER_MIN, _MAX]. */
char *p11p_pin_hash_make_iter(const void *pin, size_t pin_len, unsigned long iterations);
/* Is the string a well-formed hash? (config validation) */
bool p11p_pin_hash_valid(const char *hash);
/* Does pin match? Constant time in the hash comparison. */
bool p11p_pin_hash_verify(const char *hash, const void *pin, size_t pin_len);

#endif
