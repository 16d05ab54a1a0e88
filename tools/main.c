/*
 * p11proxy: the admin CLI. Global options may appear before or after the
 * command name; everything else is handed to the command. PINs are never
 * read from argv (see hash-pin and the config's PIN sources).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11proxy.h"

#include "base/log.h"
#include "base/mem.h"
#include "cli.h"
#include "config/config.h"
#include "util.h"

static int cmd_help(const struct cli *cli, int argc, char **argv);

static const struct cli_cmd commands[] = {
    {"slots", "[--json]", "list the virtual slots, their members and tokens", cmd_slots},
    {"test-connection", "[SLOT] [--json]",
     "open a session (and log in) on every member of SLOT (label or id), or of all slots",
     cmd_test_connection},
    {"members",
     "SLOT [top|up|down|bottom|delete MEMBER | add --name N --backend B "
     "(--slot-id X | --token-label L | --token-serial S | --uri U) "
     "[--pin-source env:VAR|file:PATH] | reset]",
     "list a slot's members in priority order (with health), or change the order", cmd_members},
    {"health", "[SLOT] [--listen ADDRESS:PORT]",
     "probe every member; exit 0 only when all are healthy (--listen: serve GET /health)",
     cmd_health},
    {"sync", "[SLOT] [--dry-run] [--json] | --check [SLOT] [--json]",
     "record the members' token keys as virtual keys: added / updated / missing / unchanged "
     "(--check: compare the members' keys)",
     cmd_sync},
    {"keys",
     "list [--slot S] [--all] [--json] | show KEY [--json] | deactivate|activate|delete|rotate "
     "KEY | allow|deny KEY OPERATION... [--slot S]",
     "virtual keys: list, show, deactivate, activate, delete, rotate, change permissions",
     cmd_keys},
    {"policy",
     "show [SLOT] [--json] | set SLOT [write_back=true|false] [scan=all|owned] | "
     "reset SLOT",
     "a slot's key-management policy (write_back, scan) and where it comes from", cmd_policy},
    {"check-config", "[FILE]", "load and validate the configuration", cmd_check_config},
    {"hash-pin", "[--pin-source env:NAME|file:PATH]",
     "read a PIN (terminal, stdin or source) and print its user_pin_hash", cmd_hash_pin},
    {"gen-fragment",
     "--name NAME --type hsm_wrapped|hsm_secured --hsm-key-label LABEL [--slot SLOT] "
     "[--out FILE] [--description TEXT]",
     "generate a customer fragment (mixed entropy) and print or save its JSON", cmd_gen_fragment},
    {"help", "[COMMAND]", "show this list, or one command's usage", cmd_help},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct cli_cmd *find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

/* Options that would put a PIN on argv (visible in ps and shell history). */
static bool is_pin_option(const char *a)
{
	static const char *const names[] = {"--pin", "--user-pin", "--so-pin", "--new-pin"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = strlen(names[i]);

		if (strncmp(a, names[i], n) == 0 && (a[n] == '\0' || a[n] == '='))
			return true;
	}
	return false;
}

static void print_help(FILE *f)
{
	fprintf(f, "usage: p11proxy [--config FILE] [--json] COMMAND [ARGS]\n"
	           "       p11proxy --help | --version\n\n"
	           "Global options:\n"
	           "  --config FILE  configuration file (default: $P11PROXY_CONF, the quick-start\n"
	           "                 environment, or " P11P_DEFAULT_CONF ")\n"
	           "  --json         machine-readable output\n"
	           "  --help         this text\n"
	           "  --version      print the version\n\n"
	           "Commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nSee p11proxy(8).\n");
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	const struct cli_cmd *c = cmd != NULL ? find_command(cmd) : NULL;
	va_list ap;

	if (fmt != NULL) {
		fputs("p11proxy: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	if (c != NULL)
		fprintf(stderr, "usage: p11proxy [--config FILE] %s %s\n", c->name, c->args);
	else
		fprintf(stderr, "usage: p11proxy [--config FILE] [--json] COMMAND [ARGS]\n"
		                "Try 'p11proxy help'.\n");
	return CLI_USAGE;
}

static int cmd_help(const struct cli *cli, int argc, char **argv)
{
	const struct cli_cmd *c;

	if (argc > 1)
		return cli_usage("help", "too many arguments");
	if (argc == 0) {
		print_help(stdout);
		return CLI_OK;
	}
	c = find_command(argv[0]);
	if (c == NULL)
		return cli_usage("help", "unknown command '%s'", argv[0]);
	printf("usage: p11proxy [--config FILE] %s %s\n  %s\n", c->name, c->args, c->summary);
	return CLI_OK;
}

int main(int argc, char **argv)
{
	struct cli cli = {0};
	const struct cli_cmd *cmd = NULL;
	char **rest;
	int nrest = 0;
	bool want_help = false, want_version = false, after_dashes = false;
	int rc;

	p11p_log_init();
	/* Room for every argument but the program name; freed at exit. */
	rest = p11p_calloc((size_t)argc + 1, sizeof(*rest));
	if (rest == NULL) {
		cli_error("out of memory");
		return CLI_FAIL;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!after_dashes && strcmp(a, "--") == 0) {
			after_dashes = true;
			continue;
		}
		if (!after_dashes && a[0] == '-') {
			if (strcmp(a, "--json") == 0) {
				cli.json = true;
				continue;
			}
			if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
				if (i + 1 >= argc) {
					p11p_free(rest);
					return cli_usage(NULL, "%s needs a FILE", a);
				}
				cli.config_path = argv[++i];
				continue;
			}
			if (strncmp(a, "--config=", 9) == 0) {
				cli.config_path = a + 9;
				continue;
			}
			if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
				want_help = true;
				continue;
			}
			if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
				want_version = true;
				continue;
			}
			if (is_pin_option(a)) {
				p11p_free(rest);
				return cli_usage(cmd != NULL ? cmd->name : NULL,
				                 "PINs are never accepted on the command line "
				                 "(use the terminal, stdin or --pin-source)");
			}
			/* A command option: the command judges it. */
		}
		if (cmd == NULL && (after_dashes || a[0] != '-')) {
			cmd = find_command(a);
			if (cmd == NULL) {
				p11p_free(rest);
				return cli_usage(NULL, "unknown command '%s'", a);
			}
			continue;
		}
		rest[nrest++] = argv[i];
	}

	if (want_version) {
		printf("p11proxy %d.%d\n", P11PROXY_VERSION_MAJOR, P11PROXY_VERSION_MINOR);
		rc = CLI_OK;
	} else if (want_help) {
		if (cmd != NULL && cmd->run != cmd_help) {
			printf("usage: p11proxy [--config FILE] %s %s\n  %s\n", cmd->name,
			       cmd->args, cmd->summary);
		} else {
			print_help(stdout);
		}
		rc = CLI_OK;
	} else if (cmd == NULL) {
		if (nrest > 0)
			rc = cli_usage(NULL, "unknown option '%s'", rest[0]);
		else
			rc = cli_usage(NULL, "no command given");
	} else {
		rc = cmd->run(&cli, nrest, rest);
	}
	p11p_free(rest);
	if (fflush(stdout) != 0 && rc == CLI_OK) {
		cli_error("cannot write the output");
		rc = CLI_FAIL;
	}
	return rc;
}
