/*
 * The p11proxy admin CLI: a table of commands (tools/main.c), one file per
 * command group. A command gets its own arguments, argv[0] being its name,
 * and parses them with cli_getopt() (getopt_long with the command's options
 * plus the global ones, which may come before or after the command name).
 * It returns the process exit status.
 */
#ifndef P11P_TOOLS_CLI_H
#define P11P_TOOLS_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/pkcs11.h"

/* Exit status, as documented in p11proxy(8). */
#define CLI_OK    0
#define CLI_FAIL  1 /* the command ran and found a problem */
#define CLI_USAGE 2 /* bad command line */

struct cli_cmd;

struct cli {
	const char *config_path;   /* -c FILE, -cFILE, --config FILE, --config=FILE, or NULL */
	bool json;                 /* --json */
	const struct cli_cmd *cmd; /* the command running */
};

struct cli_cmd {
	const char *name;
	const char *args;    /* synopsis after the name, for usage messages */
	const char *summary; /* one line for `p11proxy help` */
	const char *help;    /* the rest of `p11proxy help COMMAND`: actions, options */
	int (*run)(struct cli *cli, int argc, char **argv);
};

/* Option codes of the global long options without a short form. */
#define CLI_OPT_JSON  0x1001
#define CLI_OPT_FIRST 0x1100 /* commands number their long-only options from here */
/* What cli_getopt() returns after it printed a usage message: return CLI_USAGE. */
#define CLI_OPT_BAD 0x10ff

/*
 * The next option of the command's argv (getopt_long, arguments permuted so
 * options may follow operands): the global options (-c FILE, --config=FILE,
 * --json, -h/--help) are handled here; the command's own (shortopts, longopts
 * ending in a zero entry, may be NULL) are returned. -1 at the end: the
 * operands are argv[optind..argc). CLI_OPT_BAD after a usage message.
 * Start a parse with optind = 0 (cli_getopt_reset()).
 */
int cli_getopt(struct cli *cli, int argc, char **argv, const char *shortopts,
               const struct option *longopts);
void cli_getopt_reset(void);

/*
 * Prints "p11proxy: MESSAGE" and the command's usage line to stderr and
 * returns CLI_USAGE, for `return cli_usage(cmd, "...")`.
 */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the command's help (usage, summary, details) on stdout; CLI_OK. */
int cli_cmd_help(const char *cmd);
/*
 * Which of cmd's actions (a NULL-terminated list) `word` names: its index.
 * "help" prints the command's help; any other word is a usage error naming
 * the actions. Both return -1 with *rc the exit code to return.
 */
int cli_action(const char *cmd, const char *word, const char *const *actions, int *rc);
/*
 * For a command that takes no options, then an optional action word (the
 * action at index def of `actions` when none is given) and then arguments:
 * the action's index, with *rest and *n_rest the words after it; or -1 with
 * *rc the exit code to return (a usage error, or "help" printed).
 */
int cli_action_words(struct cli *cli, const char *cmd, int argc, char **argv,
                     const char *const *actions, int def, char ***rest, int *n_rest, int *rc);

/* tools/cmd_slots.c */
int cmd_slots(struct cli *cli, int argc, char **argv);
int cmd_test_connection(struct cli *cli, int argc, char **argv);

/* tools/cmd_sync.c (--check), tools/cmd_sync_keys.c (the virtual-key index) */
int cmd_sync(struct cli *cli, int argc, char **argv);
int cli_sync_keys(struct cli *cli, const char *slot, bool dry_run);

/* tools/cmd_keys.c: virtual keys; tools/cmd_policy.c: key-management policy */
int cmd_keys(struct cli *cli, int argc, char **argv);
int cmd_policy(struct cli *cli, int argc, char **argv);

/* tools/cmd_pin.c: the virtual PIN state (wrong PINs the proxy checked) */
int cmd_pin(struct cli *cli, int argc, char **argv);
/* tools/cmd_audit.c: the store's audit trail; tools/cmd_index.c: index import */
int cmd_audit(struct cli *cli, int argc, char **argv);
int cmd_index(struct cli *cli, int argc, char **argv);

/* tools/cmd_config.c */
int cmd_check_config(struct cli *cli, int argc, char **argv);
int cmd_hash_pin(struct cli *cli, int argc, char **argv);

/* tools/cmd_fragment.c */
int cmd_gen_fragment(struct cli *cli, int argc, char **argv);

/* tools/cmd_replkey.c */
int cmd_replication_key(struct cli *cli, int argc, char **argv);

/* tools/cmd_store.c: a PostgreSQL store's schema and roles */
int cmd_store(struct cli *cli, int argc, char **argv);

/* tools/cmd_members.c */
int cmd_members(struct cli *cli, int argc, char **argv);

/* tools/cmd_health.c: the health command, and the member probe `members` shares. */
int cmd_health(struct cli *cli, int argc, char **argv);

struct p11p_config;
struct p11p_member_cfg;
struct p11p_order;
struct p11p_order_entry;

/* Loads the configuration (cli->config_path); NULL with the message printed. */
struct p11p_config *cli_config(const struct cli *cli);

/* The config's backends, each loaded (and C_Initialize'd) on first use. */
struct cli_backends;
struct cli_backends *cli_backends_new(const struct p11p_config *cfg);
/* Finalizes and unloads what was loaded; NULL is fine. */
void cli_backends_free(struct cli_backends *bs);
struct p11p_backend;
/* Backend idx, loaded on first use; NULL when it cannot be loaded (why in `why`). */
struct p11p_backend *cli_backend(struct cli_backends *bs, size_t idx, char *why, size_t whylen);
/* A member call that takes longer is abandoned (the member is reported as not answering). */
#define CLI_PROBE_TIMEOUT_MS 5000
/*
 * Probes a member from this process: finds its token, opens a session,
 * C_GetTokenInfo, C_GenerateRandom of 1 byte when the token has CKF_RNG,
 * closes, every call under CLI_PROBE_TIMEOUT_MS. true when all of it worked;
 * else why it did not, in `why`. ti (may be NULL) receives the token info.
 */
bool cli_member_probe(struct cli_backends *bs, const struct p11p_member_cfg *mc, char *why,
                      size_t whylen);
bool cli_member_probe_info(struct cli_backends *bs, const struct p11p_member_cfg *mc,
                           CK_TOKEN_INFO *ti, char *why, size_t whylen);

/*
 * SLOT as the CLI names it everywhere: a label (exact), an id (0-based, as
 * `slots` shows), or a pkcs11: URI matching the virtual slot's token (token=
 * the label, serial= the virtual serial, manufacturer= and model= those of
 * the member serving it). (size_t)-1 when none matches (a message printed
 * when the URI is bad or matches several slots; *usage set when it is the
 * command line's fault).
 */
size_t cli_find_slot(const struct p11p_config *cfg, const char *arg);
/*
 * cli_find_slot, or a usage message ("no virtual slot 'X' in FILE") and
 * (size_t)-1: for `if ((s = cli_slot_arg(...)) == (size_t)-1) return CLI_USAGE`.
 */
size_t cli_slot_arg(const struct p11p_config *cfg, const char *cmd, const char *arg);
/* The slot's name for messages: its label, or "#ID" without one (quick start). */
const char *cli_slot_name(const struct p11p_config *cfg, size_t slot, char *buf, size_t len);
/* The serial number the module gives the virtual slot's token (16 hex digits, buf >= 17). */
const char *cli_slot_serial(const struct p11p_config *cfg, size_t slot, char *buf, size_t len);

/*
 * The slot's effective member order, the module's: the overlay when there is
 * one, else the configuration's. A damaged overlay gives the configuration's
 * order and -1 with why in err (FILE:LINE: message), as the module does.
 * 0 otherwise. Members are numbered by their position in it, from 1,
 * everywhere in the CLI.
 */
int cli_slot_order(const struct p11p_config *cfg, size_t slot, struct p11p_order *o, char *err,
                   size_t errlen);
/* The member an order entry names (an added member's spec, or the configured member). */
const struct p11p_member_cfg *cli_order_member(const struct p11p_config *cfg, size_t slot,
                                               const struct p11p_order_entry *e);
/*
 * The 1-based number of the slot's configured member config_index in the
 * effective order; 0 when the order leaves it out (deleted).
 */
size_t cli_member_number(const struct p11p_order *o, size_t config_index);

#endif
