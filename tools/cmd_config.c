/* Configuration commands: check-config, hash-pin. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/secret.h"
#include "cli.h"
#include "config/config.h"
#include "util.h"

int cmd_check_config(struct cli *cli, int argc, char **argv)
{
	struct p11p_config *cfg;
	const char *path;
	char err[1024];
	json_t *doc;
	int o;

	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "", NULL)) != -1)
		return CLI_USAGE;
	if (argc - optind > 1)
		return cli_usage("check-config", "too many arguments");
	path = cli->config_path;
	if (argc - optind == 1) {
		if (strcmp(argv[optind], "help") == 0)
			return cli_cmd_help("check-config");
		if (cli->config_path != NULL && strcmp(cli->config_path, argv[optind]) != 0)
			return cli_usage("check-config", "give the file once: -c FILE or FILE");
		path = argv[optind];
	}

	err[0] = '\0';
	cfg = p11p_config_load(path, err, sizeof(err));
	if (cfg == NULL) {
		if (err[0] == '\0')
			snprintf(err, sizeof(err), "%s: cannot load the configuration",
			         path != NULL ? path : "(default)");
		cli_error_plain(err);
		if (cli->json) {
			doc = json_object();
			cli_jset(doc, "file", cli_jstr(path));
			cli_jset(doc, "ok", json_false());
			cli_jset(doc, "exit", json_integer(CLI_FAIL));
			cli_jset(doc, "error", cli_jstr(err));
			cli_json_print(doc);
		}
		return CLI_FAIL;
	}
	if (cli->json) {
		doc = json_object();
		cli_jset(doc, "file", cli_jstr(cfg->path));
		cli_jset(doc, "ok", json_true());
		cli_jset(doc, "backends", json_integer((json_int_t)cfg->n_backends));
		cli_jset(doc, "slots", json_integer((json_int_t)cfg->n_slots));
		cli_json_print(doc);
	} else {
		printf("%s: OK (%zu backend%s, %zu slot%s)\n", cli_esc(cfg->path), cfg->n_backends,
		       cfg->n_backends == 1 ? "" : "s", cfg->n_slots, cfg->n_slots == 1 ? "" : "s");
	}
	p11p_config_free(cfg);
	return CLI_OK;
}

/*
 * The PIN for hash-pin: from a source, from the terminal (asked twice), or
 * one line of stdin when stdin is not a terminal (scripts, pipes).
 */
static struct p11p_secret *hash_pin_read(const char *source)
{
	char a[CLI_PIN_MAX + 1], b[CLI_PIN_MAX + 1];
	struct p11p_secret *pin = NULL;
	char err[512];
	long la, lb;

	if (source != NULL) {
		pin = cli_pin_from_source(source, err, sizeof(err));
		if (pin == NULL)
			cli_error("%s", err);
		return pin;
	}
	if (!isatty(STDIN_FILENO)) {
		la = cli_read_pin_fd(STDIN_FILENO, "stdin", a, sizeof(a));
		if (la > 0 && (pin = p11p_secret_new(a, (size_t)la)) == NULL)
			cli_error("out of memory");
		p11p_wipe(a, sizeof(a));
		return pin;
	}
	la = cli_read_pin_tty("PIN: ", a, sizeof(a));
	if (la < 0)
		goto out;
	if (la == 0) {
		cli_error("empty PIN");
		goto out;
	}
	lb = cli_read_pin_tty("Repeat PIN: ", b, sizeof(b));
	if (lb < 0)
		goto out;
	if (la != lb || memcmp(a, b, (size_t)la) != 0) {
		cli_error("the PINs do not match");
		goto out;
	}
	pin = p11p_secret_new(a, (size_t)la);
	if (pin == NULL)
		cli_error("out of memory");
out:
	p11p_wipe(a, sizeof(a));
	p11p_wipe(b, sizeof(b));
	return pin;
}

int cmd_hash_pin(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"pin-source", required_argument, NULL, 's'},
	    {NULL, 0, NULL, 0},
	};
	const char *source = NULL;
	struct p11p_secret *pin;
	char *hash;
	int o;

	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "", opts)) != -1) {
		if (o == 's')
			source = optarg;
		else
			return CLI_USAGE;
	}
	if (argc - optind == 1 && strcmp(argv[optind], "help") == 0)
		return cli_cmd_help("hash-pin");
	/* Do not echo it back: it may well be a PIN typed on argv. */
	if (argc - optind > 0)
		return cli_usage("hash-pin", "unexpected argument (PINs are never accepted "
		                             "on the command line)");
	if (source != NULL && strncmp(source, "env:", 4) != 0 && strncmp(source, "file:", 5) != 0)
		return cli_usage("hash-pin", "a PIN source is env:NAME or file:PATH");

	pin = hash_pin_read(source);
	if (pin == NULL)
		return CLI_FAIL;
	hash = p11p_pin_hash_make(p11p_secret_data(pin), p11p_secret_len(pin));
	p11p_secret_free(pin);
	if (hash == NULL) {
		cli_error("cannot compute the PIN hash");
		return CLI_FAIL;
	}
	if (cli->json) {
		json_t *doc = json_object();

		cli_jset(doc, "user_pin_hash", cli_jstr(hash));
		cli_json_print(doc);
	} else {
		printf("%s\n", hash);
	}
	p11p_free(hash);
	return CLI_OK;
}
