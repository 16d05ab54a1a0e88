/*
 * The p11proxy admin CLI: a table of commands (tools/main.c), one file per
 * command group. A command gets its own arguments (global options removed)
 * and returns the process exit status.
 */
#ifndef P11P_TOOLS_CLI_H
#define P11P_TOOLS_CLI_H

#include <stdbool.h>

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

/* tools/cmd_config.c */
int cmd_check_config(const struct cli *cli, int argc, char **argv);
int cmd_hash_pin(const struct cli *cli, int argc, char **argv);

#endif
