/*
 * p11proxy: the admin CLI. Global options (-c FILE, -cFILE, --config FILE,
 * --config=FILE, --json, -h/--help, -V/--version) may come before or after
 * the command name; every command parses its arguments with getopt_long
 * (cli_getopt). PINs are never read from argv (see hash-pin and the config's
 * PIN sources).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11proxy.h"

#include "base/log.h"
#include "cli.h"
#include "config/config.h"
#include "util.h"

static int cmd_help(struct cli *cli, int argc, char **argv);

#define SLOT_HELP                                                                                  \
	"  SLOT is a virtual slot's label, its id (0, 1, ... as `slots` shows) or a pkcs11: URI\n" \
	"  of its token (token=LABEL, serial=, manufacturer=, model=).\n"

static const struct cli_cmd commands[] = {
    {"slots", "[--json]", "list the virtual slots, their members and tokens",
     "  Every virtual slot with its members in the effective order (the member order\n"
     "  overlay of `members`, else the configuration's), numbered from 1, each member's\n"
     "  backend, selector, backend slot and token.\n",
     cmd_slots},
    {"test-connection", "[SLOT] [--json]",
     "open a session (and log in) on every member of SLOT, or of all slots",
     "  Members in the effective order (an added member included), numbered from 1;\n"
     "  exit 1 when one cannot be reached or logged in.\n" SLOT_HELP,
     cmd_test_connection},
    {"members",
     "SLOT [top|up|down|bottom|delete MEMBER | add --name N --backend B "
     "(--slot-id X | --token-label L | --token-serial S | --uri U) "
     "[--pin-source env:VAR|file:PATH] | reset | help] [--json]",
     "list a slot's members in priority order (with health), or change the order",
     "  members SLOT                       the members, numbered from 1 in priority order\n"
     "  members SLOT top|up|down|bottom MEMBER\n"
     "                                     move a member (MEMBER: its name or number)\n"
     "  members SLOT delete MEMBER         no new work for it (the last one stays)\n"
     "  members SLOT add --name N --backend B SELECTOR [--pin-source SOURCE]\n"
     "                                     add a member at the bottom, once its token was\n"
     "                                     found and answered, its PIN source is readable and\n"
     "                                     private, and no member has that name or token\n"
     "      SELECTOR: --slot-id X | --token-label L | --token-serial S | --uri U\n"
     "      SOURCE:   env:VAR | file:PATH (a file of mode 0600 owned by you)\n"
     "  members SLOT reset                 back to the configured order\n" SLOT_HELP,
     cmd_members},
    {"health", "[SLOT] [--json] [--listen ADDRESS:PORT]",
     "probe every member; exit 0 only when all are healthy (--listen: GET /health, /metrics)",
     "  Members in the effective order, as the module uses them.\n"
     "  --listen ADDRESS:PORT  serve GET /health over HTTP (204 healthy, 500 with JSON) and\n"
     "                         GET /metrics (Prometheus text format; p11proxy(7) "
     "METRICS)\n" SLOT_HELP,
     cmd_health},
    {"sync", "[SLOT] [--dry-run] [--json] | --check [SLOT] [--json] | --repair [SLOT] [--json]",
     "record the members' token keys as virtual keys: added / updated / missing / unchanged "
     "(--check: compare the members' objects; --repair: copy what a member lacks)",
     "  -n, --dry-run  say what would change, write nothing\n"
     "  --check        compare the members' token objects (members numbered from 1)\n"
     "  --repair       copy every object a member lacks from one that holds it\n" SLOT_HELP,
     cmd_sync},
    {"keys",
     "list [--slot S] [--all] [--json] | show KEY [--json] | deactivate|activate|delete KEY | "
     "rotate KEY [--id HEX] | allow|deny KEY OPERATION... [--slot S] | rewrap SLOT --to LABEL | "
     "help",
     "virtual keys: list, show, deactivate, activate, delete, rotate, change permissions, "
     "rewrap software keys",
     "  keys list [--slot SLOT] [--all]    the virtual keys (--all: deleted ones too)\n"
     "  keys show KEY                      one key (times in ISO 8601, UTC)\n"
     "  keys deactivate|activate KEY       refuse / allow its use (virtual only)\n"
     "  keys delete KEY                    virtually, or on the HSM too with write_back\n"
     "  keys rotate KEY [--id HEX]         a new HSM key; its CKA_ID is 16 random bytes\n"
     "                                     (or the old id's length when longer), or HEX\n"
     "  keys allow|deny KEY OPERATION...   encrypt decrypt sign verify wrap unwrap derive all\n"
     "  keys rewrap SLOT --to LABEL        software keys re-encrypted under a new wrapping key\n"
     "  KEY: a virtual id (16 hex digits), a pkcs11: URI, a label or a CKA_ID in hex;\n"
     "  --slot SLOT narrows the search.\n" SLOT_HELP,
     cmd_keys},
    {"policy",
     "show [SLOT] [--json] | set SLOT [write_back=true|false] [scan=all|owned] | "
     "reset SLOT | help",
     "a slot's key-management policy (write_back, scan) and where it comes from",
     "  policy show [SLOT]                 the effective policy and its source\n"
     "  policy set SLOT write_back=BOOL scan=all|owned\n"
     "                                     write the slot's policy overlay\n"
     "  policy reset SLOT                  remove it (the configuration's again)\n" SLOT_HELP,
     cmd_policy},
    {"pin", "status [SLOT] [--json] | reset SLOT [--json] | help",
     "wrong user PINs the proxy checked itself (members with a configured PIN), and reset",
     "  pin status [SLOT]                  wrong PINs counted, pin_max_tries, and the token\n"
     "                                     flags the module shows (user-pin-count-low,\n"
     "                                     user-pin-final-try, user-pin-locked)\n"
     "  pin reset SLOT                     unlock: the count back to 0, for every "
     "process\n" SLOT_HELP,
     cmd_pin},
    {"audit", "[--slot S] [--since T] [--json] | --verify [--json]",
     "the store's audit trail of key-management changes; --verify checks its hash chain",
     "  --slot SLOT      only that slot's rows\n"
     "  --since T        rows at or after T: Unix seconds or YYYY-MM-DD[THH:MM:SS[Z]] (UTC)\n"
     "  --verify         check every row's hash and that none is missing; exit 1 naming\n"
     "                   the first row deleted or altered\n",
     cmd_audit},
    {"index", "import FILE [--json] | help",
     "bring an old index journal's records into the store (once: present ones are skipped)",
     "  index import FILE  the records of FILE (a keys.index journal) whose virtual id the\n"
     "                     store does not have, in one transaction; prints the counts\n",
     cmd_index},
    {"check-config", "[FILE] [--json]", "load and validate the configuration",
     "  FILE, or the file of -c/--config, or the default.\n", cmd_check_config},
    {"hash-pin", "[--pin-source env:NAME|file:PATH] [--json]",
     "read a PIN (terminal, stdin or source) and print its user_pin_hash",
     "  The PIN comes from the terminal (asked twice), one line of stdin, or the source;\n"
     "  never from the command line.\n",
     cmd_hash_pin},
    {"gen-fragment",
     "--name NAME --type hsm_wrapped|hsm_secured --hsm-key-label LABEL [--slot SLOT] "
     "[--out FILE] [--description TEXT]",
     "generate a customer fragment (mixed entropy) and print or save its JSON",
     "  The HSM key must sign with CKM_SHA256_HMAC on every member that holds it, with the\n"
     "  same check value. --out FILE appends to FILE (mode 0600).\n" SLOT_HELP,
     cmd_gen_fragment},
    {"replication-key",
     "create SLOT [--label L] [--so-pin-source env:VAR|file:PATH] [--json] | help",
     "make the slot's AES-256 replication key, one value on every member",
     "  replication-key create SLOT        an AES-256 key labelled as ha.replication_key\n"
     "                                     (or --label L) on every member, all or nothing:\n"
     "                                     value from the mixed entropy source, never shown;\n"
     "                                     non-extractable, CKA_WRAP/CKA_UNWRAP, CKA_TRUSTED;\n"
     "                                     refused when a member has the label already\n"
     "  --so-pin-source env:VAR|file:PATH  the SO PIN, for tokens where only the security\n"
     "                                     officer sets CKA_TRUSTED (else asked on the\n"
     "                                     terminal, without echo)\n"
     "  Members log in with their configured PIN, else one user PIN read from the\n"
     "  terminal or stdin. The check value is the first 3 bytes of a zero key wrapped\n"
     "  under the new key: the same on every member.\n" SLOT_HELP,
     cmd_replication_key},
    {"store",
     "init URI --admin-password-file FILE --app-password-file FILE [--admin-role NAME] "
     "[--app-role NAME] | help",
     "create a PostgreSQL store: its schema, an administrator role and an application role",
     "  store init URI   URI: postgresql://, a superuser of the store's database (password\n"
     "                   from a passfile, never in the URI). Creates the schema owned by the\n"
     "                   administrator role (default p11proxy_admin) and grants the\n"
     "                   application role (default p11proxy_app) what the module needs:\n"
     "                   reading, recording the keys it creates; never permissions, state,\n"
     "                   policy or member order. Safe to run again.\n"
     "  --admin-password-file FILE, --app-password-file FILE\n"
     "                   each role's password: read from FILE (mode 0600) when it exists,\n"
     "                   else generated and written to FILE (mode 0600); never printed.\n",
     cmd_store},
    {"help", "[COMMAND]", "show this list, or one command's usage", NULL, cmd_help},
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
	fprintf(
	    f, "usage: p11proxy [-c FILE] [--json] COMMAND [ARGS]\n"
	       "       p11proxy COMMAND --help | help COMMAND\n"
	       "       p11proxy --help | --version\n\n"
	       "Global options (before or after the command):\n"
	       "  -c, --config FILE  configuration file (default: $P11PROXY_CONF, the quick-start\n"
	       "                     environment, or " P11P_DEFAULT_CONF ")\n"
	       "  --json             machine-readable output, errors included\n"
	       "  -h, --help         this text, or the command's\n"
	       "  -V, --version      print the version\n\n"
	       "Commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nSee p11proxy(8).\n");
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	const struct cli_cmd *c = cmd != NULL ? find_command(cmd) : NULL;
	char msg[2048];
	va_list ap;

	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		cli_error("%s", msg);
	}
	if (c != NULL)
		fprintf(stderr, "usage: p11proxy [-c FILE] %s %s\nTry 'p11proxy %s --help'.\n",
		        c->name, c->args, c->name);
	else
		fprintf(stderr, "usage: p11proxy [-c FILE] [--json] COMMAND [ARGS]\n"
		                "Try 'p11proxy help'.\n");
	return CLI_USAGE;
}

int cli_action(const char *cmd, const char *word, const char *const *actions, int *rc)
{
	char list[512] = "";
	size_t used = 0;

	for (int i = 0; actions[i] != NULL; i++)
		if (strcmp(word, actions[i]) == 0)
			return i;
	if (strcmp(word, "help") == 0) {
		*rc = cli_cmd_help(cmd);
		return -1;
	}
	for (int i = 0; actions[i] != NULL && used < sizeof(list); i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s, ", actions[i]);
	*rc = cli_usage(cmd, "unknown action '%s' (%shelp)", cli_esc(word), list);
	return -1;
}

int cli_action_words(struct cli *cli, const char *cmd, int argc, char **argv,
                     const char *const *actions, int def, char ***rest, int *n_rest, int *rc)
{
	cli_getopt_reset();
	if (cli_getopt(cli, argc, argv, "", NULL) != -1) {
		*rc = CLI_USAGE;
		return -1;
	}
	*rest = argv + optind;
	*n_rest = argc - optind;
	if (*n_rest == 0)
		return def;
	(*rest)++;
	(*n_rest)--;
	return cli_action(cmd, (*rest)[-1], actions, rc);
}

int cli_cmd_help(const char *cmd)
{
	const struct cli_cmd *c = find_command(cmd);

	if (c == NULL || c->help == NULL) {
		print_help(stdout);
		return CLI_OK;
	}
	printf("usage: p11proxy [-c FILE] [--json] %s %s\n\n  %s\n\n%s", c->name, c->args,
	       c->summary, c->help);
	return CLI_OK;
}

/* ---- getopt_long with the global options -------------------------------------------------- */

static const struct option global_longopts[] = {
    {"config", required_argument, NULL, 'c'},
    {"json", no_argument, NULL, CLI_OPT_JSON},
    {"help", no_argument, NULL, 'h'},
};
#define N_GLOBAL (sizeof(global_longopts) / sizeof(global_longopts[0]))
#define MAX_OPTS 32

void cli_getopt_reset(void)
{
	optind = 0;
}

int cli_getopt(struct cli *cli, int argc, char **argv, const char *shortopts,
               const struct option *longopts)
{
	struct option all[MAX_OPTS + N_GLOBAL + 1];
	char shorts[64];
	size_t n = 0;
	int o;

	for (; longopts != NULL && longopts[n].name != NULL && n < MAX_OPTS; n++)
		all[n] = longopts[n];
	memcpy(all + n, global_longopts, sizeof(global_longopts));
	memset(&all[n + N_GLOBAL], 0, sizeof(all[0]));
	/* ':' first: a missing value is ':', not '?'; no messages from getopt itself. */
	snprintf(shorts, sizeof(shorts), ":c:h%s", shortopts != NULL ? shortopts : "");
	opterr = 0;
	o = getopt_long(argc, argv, shorts, all, NULL);
	switch (o) {
	case 'c':
		cli->config_path = optarg;
		return cli_getopt(cli, argc, argv, shortopts, longopts);
	case CLI_OPT_JSON:
		cli->json = true;
		cli_set_json(true);
		return cli_getopt(cli, argc, argv, shortopts, longopts);
	case 'h':
		/* main() answered --help before the command ran. */
		return cli_getopt(cli, argc, argv, shortopts, longopts);
	case ':':
		cli_usage(argv[0], "option '%s' needs a value", argv[optind - 1]);
		return CLI_OPT_BAD;
	case '?':
		if (optopt != 0 && optopt < CLI_OPT_JSON)
			cli_usage(argv[0], "unknown option '-%c'", optopt);
		else
			cli_usage(argv[0], "unknown option '%s'", argv[optind - 1]);
		return CLI_OPT_BAD;
	default:
		return o;
	}
}

/* ---- help, main -------------------------------------------------------------------------------
 */

static int cmd_help(struct cli *cli, int argc, char **argv)
{
	int o;

	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, NULL, NULL)) != -1)
		return o == CLI_OPT_BAD ? CLI_USAGE : cli_usage("help", "unexpected option");
	if (argc - optind > 1 && find_command(argv[optind]) == NULL)
		return cli_usage("help", "too many arguments");
	if (argc - optind == 0) {
		print_help(stdout);
		return CLI_OK;
	}
	/* `help keys rotate`: the command's help covers its actions. */
	if (find_command(argv[optind]) == NULL)
		return cli_usage("help", "unknown command '%s'", argv[optind]);
	return cli_cmd_help(argv[optind]);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, CLI_OPT_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct cli cli = {0};
	bool want_help = false, want_version = false;
	int rc, o;

	p11p_log_init();
	/* Before anything else: a PIN on argv, --json (errors answer in JSON), --help. */
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (is_pin_option(argv[i]))
			return cli_usage(NULL, "PINs are never accepted on the command line "
			                       "(use the terminal, stdin or --pin-source)");
		if (strcmp(argv[i], "--json") == 0) {
			cli.json = true;
			cli_set_json(true);
		}
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			want_help = true;
	}
	/* '+': stop at the command name; what follows is the command's. */
	opterr = 0;
	while ((o = getopt_long(argc, argv, "+:c:hV", longopts, NULL)) != -1) {
		switch (o) {
		case 'c':
			cli.config_path = optarg;
			break;
		case CLI_OPT_JSON:
			break;
		case 'h':
			want_help = true;
			break;
		case 'V':
			want_version = true;
			break;
		case ':':
			rc = cli_usage(NULL, "option '%s' needs a value", argv[optind - 1]);
			goto out;
		default:
			rc = cli_usage(NULL, "unknown option '%s'", argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		cli.cmd = find_command(argv[optind]);
		if (cli.cmd == NULL) {
			rc = cli_usage(NULL, "unknown command '%s'", argv[optind]);
			goto out;
		}
	}
	if (want_version) {
		printf("p11proxy %d.%d\n", P11PROXY_VERSION_MAJOR, P11PROXY_VERSION_MINOR);
		rc = CLI_OK;
	} else if (want_help) {
		rc = cli_cmd_help(cli.cmd != NULL ? cli.cmd->name : "help");
	} else if (cli.cmd == NULL) {
		rc = cli_usage(NULL, "no command given");
	} else {
		rc = cli.cmd->run(&cli, argc - optind, argv + optind);
	}
out:
	cli_finish(cli.cmd != NULL ? cli.cmd->name : NULL, rc);
	if (fflush(stdout) != 0 && rc == CLI_OK) {
		cli_error("cannot write the output");
		rc = CLI_FAIL;
	}
	cli_out_free();
	return rc;
}
