/* Configuration commands: check-config, hash-pin. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/secret.h"
#include "cli.h"
#include "config/config.h"
#include "util.h"

int cmd_check_config(const struct cli *cli, int argc, char **argv)
{
	const char *path = cli->config_path;
	struct p11p_config *cfg;
	char err[1024];

	for (int i = 0; i < argc; i++) {
		if (argv[i][0] == '-')
			return cli_usage("check-config", "unknown option '%s'", argv[i]);
		if (i > 0)
			return cli_usage("check-config", "too many arguments");
		if (cli->config_path != NULL && strcmp(cli->config_path, argv[i]) != 0)
			return cli_usage("check-config",
			                 "give the file once: --config FILE or FILE");
		path = argv[i];
	}

	err[0] = '\0';
	cfg = p11p_config_load(path, err, sizeof(err));
	if (cfg == NULL) {
		if (err[0] == '\0')
			snprintf(err, sizeof(err), "%s: cannot load the configuration",
			         path != NULL ? path : "(default)");
		fprintf(stderr, "%s\n", err);
		if (cli->json) {
			fputs("{\"file\":", stdout);
			cli_json_str(stdout, path);
			fputs(",\"ok\":false,\"error\":", stdout);
			cli_json_str(stdout, err);
			fputs("}\n", stdout);
		}
		return CLI_FAIL;
	}
	if (cli->json) {
		fputs("{\"file\":", stdout);
		cli_json_str(stdout, cfg->path);
		printf(",\"ok\":true,\"backends\":%zu,\"slots\":%zu}\n", cfg->n_backends,
		       cfg->n_slots);
	} else {
		printf("%s: OK (%zu backend%s, %zu slot%s)\n", cfg->path, cfg->n_backends,
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

int cmd_hash_pin(const struct cli *cli, int argc, char **argv)
{
	const char *source = NULL;
	struct p11p_secret *pin;
	char *hash;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--pin-source") == 0) {
			if (i + 1 >= argc)
				return cli_usage("hash-pin",
				                 "--pin-source needs env:NAME or file:PATH");
			source = argv[++i];
		} else if (strncmp(argv[i], "--pin-source=", 13) == 0) {
			source = argv[i] + 13;
		} else if (argv[i][0] == '-') {
			return cli_usage("hash-pin", "unknown option '%s'", argv[i]);
		} else {
			/* Do not echo it back: it may well be a PIN typed on argv. */
			return cli_usage("hash-pin", "unexpected argument (PINs are never accepted "
			                             "on the command line)");
		}
	}
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
		fputs("{\"user_pin_hash\":", stdout);
		cli_json_str(stdout, hash);
		fputs("}\n", stdout);
	} else {
		printf("%s\n", hash);
	}
	p11p_free(hash);
	return CLI_OK;
}
