/*
 * The p11proxy admin CLI: a table of commands (tools/main.c), one file per
 * command group. A command gets its own arguments (global options removed)
 * and returns the process exit status.
 */
#ifndef P11P_TOOLS_CLI_H
#define P11P_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>

/* Exit status, as documented in p11proxy(8). */
#define CLI_OK    0
#define CLI_FAIL  1 /* the command ran and found a problem */
#define CLI_USAGE 2 /* bad command line */

struct cli {
	const char *config_path; /* --config FILE, or NULL: p11p_config_load's default */
	bool json;               /* --json */
};

struct cli_cmd {
	const char *name;
	const char *args;    /* synopsis after the name, for usage messages */
	const char *summary; /* one line for `p11proxy help` */
	int (*run)(const struct cli *cli, int argc, char **argv);
};

/*
 * Prints "p11proxy: MESSAGE" and the command's usage line to stderr and
 * returns CLI_USAGE, for `return cli_usage(cmd, "...")`.
 */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* tools/cmd_slots.c */
int cmd_slots(const struct cli *cli, int argc, char **argv);
int cmd_test_connection(const struct cli *cli, int argc, char **argv);

/* tools/cmd_sync.c (--check), tools/cmd_sync_keys.c (the virtual-key index) */
int cmd_sync(const struct cli *cli, int argc, char **argv);
int cli_sync_keys(const struct cli *cli, int argc, char **argv);

/* tools/cmd_keys.c: virtual keys; tools/cmd_policy.c: key-management policy */
int cmd_keys(const struct cli *cli, int argc, char **argv);
int cmd_policy(const struct cli *cli, int argc, char **argv);

/* tools/cmd_config.c */
int cmd_check_config(const struct cli *cli, int argc, char **argv);
int cmd_hash_pin(const struct cli *cli, int argc, char **argv);

/* tools/cmd_fragment.c */
int cmd_gen_fragment(const struct cli *cli, int argc, char **argv);

/* tools/cmd_members.c */
int cmd_members(const struct cli *cli, int argc, char **argv);

/* tools/cmd_health.c: the health command, and the member probe `members` shares. */
int cmd_health(const struct cli *cli, int argc, char **argv);

struct p11p_config;
struct p11p_member_cfg;
/* The config's backends, each loaded (and C_Initialize'd) on first use. */
struct cli_backends;
struct cli_backends *cli_backends_new(const struct p11p_config *cfg);
/* Finalizes and unloads what was loaded; NULL is fine. */
void cli_backends_free(struct cli_backends *bs);
struct p11p_backend;
/* Backend idx, loaded on first use; NULL when it cannot be loaded (why in `why`). */
struct p11p_backend *cli_backend(struct cli_backends *bs, size_t idx, char *why, size_t whylen);
/*
 * Probes a member from this process: finds its token, opens a session,
 * C_GetTokenInfo, C_GenerateRandom of 1 byte when the token has CKF_RNG,
 * closes. true when all of it worked; else why it did not, in `why`.
 */
bool cli_member_probe(struct cli_backends *bs, const struct p11p_member_cfg *mc, char *why,
                      size_t whylen);
/* SLOT as a label (exact) or a 0-based id; (size_t)-1 when neither matches. */
size_t cli_find_slot(const struct p11p_config *cfg, const char *arg);
/* The slot's name for messages: its label, or "#ID" without one (quick start). */
const char *cli_slot_name(const struct p11p_config *cfg, size_t slot, char *buf, size_t len);

#endif
