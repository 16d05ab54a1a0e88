/*
 * Fuzz target for the proxy.yaml parser (p11p_config_parse). Built two ways:
 * with libFuzzer (`make fuzz`, clang -fsanitize=fuzzer) and with the plain
 * driver in standalone.c (every `make check` / `check-asan` / `valgrind`).
 *
 * Oracle, beyond "no crash, no leak, no hang" (the sanitizers, valgrind and the
 * drivers' time limits catch those):
 *  - a NULL result comes with a non-empty, one-line error that names the file;
 *  - a config that parses satisfies every limit config.h promises;
 *  - for a config that parses, allocation failure is injected at each of the
 *    first allocations (then at sparser points): every failure must be a clean
 *    NULL with an error, and the parse must succeed again once it stops.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "config/config.h"

#define NAME "fuzz.yaml"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Loud and immediate: libFuzzer and the standalone driver both report the abort. */
#define REQUIRE(cond, ...)                                                                         \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_config: %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/*
 * The PIN the seed corpus names with "pin: env:P11P_FUZZ_PIN"; and
 * P11PROXY_DEBUG=config, when set, shows what the parser did with an input.
 */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("P11P_FUZZ_PIN", "1234", 1);
	p11p_log_init();
	return 0;
}

static void check_error(const char *err)
{
	size_t n = strlen(err);

	REQUIRE(n > 0, "NULL result without an error message");
	REQUIRE(strncmp(err, NAME ":", sizeof(NAME)) == 0, "error does not name the file: '%s'",
	        err);
	for (size_t i = 0; i < n; i++)
		REQUIRE(err[i] != '\n' && err[i] != '\r', "error is not one line: '%s'", err);
}

static void check_text(const char *s, size_t min, size_t max, const char *what)
{
	size_t n;

	REQUIRE(s != NULL, "%s is NULL", what);
	n = strlen(s);
	REQUIRE(n >= min && n <= max, "%s has length %zu", what, n);
}

/* The ranges parse_ha() enforces: a probe interval of 0 would spin, a huge replay buffer eat
 * memory. */
static void check_ha(const struct p11p_ha_cfg *ha)
{
	REQUIRE(ha->mode == P11P_HA_FAILOVER || ha->mode == P11P_HA_BALANCE, "ha mode %d",
	        (int)ha->mode);
	REQUIRE(ha->probe_interval_ms >= 10 && ha->probe_interval_ms <= 3600000,
	        "probe_interval %lu ms", ha->probe_interval_ms);
	REQUIRE(ha->call_timeout_ms <= 3600000, "call_timeout %lu ms", ha->call_timeout_ms);
	REQUIRE(ha->retries <= P11P_MAX_MEMBERS, "retries %u", ha->retries);
	REQUIRE(ha->replay_buffer <= P11P_HA_MAX_REPLAY, "replay_buffer %zu", ha->replay_buffer);
}

static void check_config(const struct p11p_config *cfg)
{
	REQUIRE(cfg->path != NULL && strcmp(cfg->path, NAME) == 0, "path");
	REQUIRE(cfg->n_backends >= 1 && cfg->n_backends <= P11P_MAX_BACKENDS, "n_backends %zu",
	        cfg->n_backends);
	REQUIRE(cfg->n_slots >= 1 && cfg->n_slots <= P11P_MAX_SLOTS, "n_slots %zu", cfg->n_slots);
	for (size_t i = 0; i < cfg->n_backends; i++) {
		check_text(cfg->backends[i].name, 1, P11P_NAME_MAX, "backend name");
		check_text(cfg->backends[i].module, 2, P11P_CONF_MAX_STRING, "module");
		REQUIRE(cfg->backends[i].module[0] == '/', "relative module");
		REQUIRE(cfg->backends[i].pos.line >= 1, "backend position");
		REQUIRE(cfg->backends[i].n_server_errors <= P11P_MAX_ERROR_OVERRIDES &&
		            cfg->backends[i].n_client_errors <= P11P_MAX_ERROR_OVERRIDES,
		        "error overrides %zu / %zu", cfg->backends[i].n_server_errors,
		        cfg->backends[i].n_client_errors);
		for (size_t j = 0; j < i; j++)
			REQUIRE(strcmp(cfg->backends[i].name, cfg->backends[j].name) != 0,
			        "duplicate backend names");
	}
	for (size_t i = 0; i < cfg->n_slots; i++) {
		const struct p11p_slot_cfg *sl = &cfg->slots[i];

		check_text(sl->label, 1, P11P_LABEL_MAX, "slot label");
		for (size_t j = 0; j < i; j++)
			REQUIRE(strcmp(sl->label, cfg->slots[j].label) != 0, "duplicate labels");
		REQUIRE(sl->user_pin_hash == NULL || p11p_pin_hash_valid(sl->user_pin_hash),
		        "invalid user_pin_hash accepted");
		check_ha(&sl->ha);
		REQUIRE(sl->n_members >= 1 && sl->n_members <= P11P_MAX_MEMBERS, "n_members %zu",
		        sl->n_members);
		for (size_t j = 0; j < sl->n_members; j++) {
			const struct p11p_member_cfg *mb = &sl->members[j];

			REQUIRE(mb->backend < cfg->n_backends, "member backend %zu", mb->backend);
			REQUIRE((mb->pin == NULL) == (mb->pin_source == NULL), "pin / pin_source");
			if (mb->pin != NULL)
				REQUIRE(p11p_secret_len(mb->pin) >= 1 &&
				            p11p_secret_len(mb->pin) <= P11P_MAX_PIN_LEN,
				        "PIN length %zu", p11p_secret_len(mb->pin));
			switch (mb->sel) {
			case P11P_SEL_SLOT_ID:
				REQUIRE(mb->token_label == NULL && mb->token_serial == NULL &&
				            mb->uri == NULL,
				        "slot_id member with another selector");
				break;
			case P11P_SEL_TOKEN_LABEL:
				check_text(mb->token_label, 1, P11P_LABEL_MAX, "token_label");
				REQUIRE(mb->token_serial == NULL && mb->uri == NULL,
				        "two selectors");
				break;
			case P11P_SEL_TOKEN_SERIAL:
				check_text(mb->token_serial, 1, P11P_SERIAL_MAX, "token_serial");
				REQUIRE(mb->token_label == NULL && mb->uri == NULL,
				        "two selectors");
				break;
			case P11P_SEL_URI:
				check_text(mb->uri, 7, P11P_CONF_MAX_STRING, "uri");
				REQUIRE(mb->token_label == NULL && mb->token_serial == NULL,
				        "two selectors");
				break;
			default:
				REQUIRE(0, "selector %d", (int)mb->sel);
			}
		}
	}
}

/*
 * Allocation failure at allocation k for k = 0, 1, ... 31, then at growing
 * steps: every error path near the start runs, the rest are sampled, and a
 * 64-slot config still costs a bounded number of parses (about 60).
 */
static void check_oom(const uint8_t *data, size_t size)
{
	char err[1024];

	for (long k = 0;; k = k < 32 ? k + 1 : k + k / 4) {
		struct p11p_config *cfg;
		unsigned long refused;

		p11p_mem_fail_after(k);
		cfg = p11p_config_parse(NAME, data, size, err, sizeof(err));
		refused = p11p_mem_failures();
		p11p_mem_fail_reset();
		if (cfg != NULL) {
			/* Nothing refused: the countdown outlived the parse; done. */
			REQUIRE(refused == 0, "success after %lu refused allocation(s)", refused);
			check_config(cfg);
			p11p_config_free(cfg);
			return;
		}
		check_error(err);
		REQUIRE(refused > 0, "failed without an allocation failure: '%s'", err);
		REQUIRE(k < LONG_MAX / 2, "allocation count does not converge");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct p11p_config *cfg;
	char err[1024];
	bool ok;

	/* Stale text in err must not pass for a message (check_error wants the name first). */
	memset(err, 'X', sizeof(err) - 1);
	err[sizeof(err) - 1] = '\0';
	cfg = p11p_config_parse(NAME, data, size, err, sizeof(err));
	ok = cfg != NULL;
	if (ok) {
		REQUIRE(err[0] == '\0', "success with an error message: '%s'", err);
		check_config(cfg);
		p11p_config_free(cfg);
	} else {
		check_error(err);
	}

	/* Without an error buffer, or with a tiny one, the result must be the same. */
	cfg = p11p_config_parse(NAME, data, size, NULL, 0);
	REQUIRE((cfg != NULL) == ok, "result differs without an error buffer");
	p11p_config_free(cfg);
	cfg = p11p_config_parse(NAME, data, size, err, 4);
	REQUIRE((cfg != NULL) == ok, "result differs with a 4-byte error buffer");
	REQUIRE(strlen(err) == (ok ? 0 : 3), "4-byte error buffer holds '%s'", err);
	p11p_config_free(cfg);

	if (ok)
		check_oom(data, size);
	return 0;
}
