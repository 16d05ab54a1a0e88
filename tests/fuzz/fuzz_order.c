/*
 * Fuzz target for the member-order overlay parser (p11p_order_parse): the
 * overlay is a file under state_dir that every process with the module loaded
 * reads, so it is untrusted input. Built like fuzz_config.c (libFuzzer with
 * `make fuzz`, the standalone driver in every `make check` build).
 *
 * Oracle, beyond no crash, leak or hang:
 *  - a refusal comes with a one-line error naming the file;
 *  - an accepted order has 1..P11P_MAX_MEMBERS entries with unique names, each
 *    a config member (by index) or an added spec;
 *  - formatting an accepted order and parsing the text again gives the same order.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "ha/order.h"

#define NAME "fuzz.members"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond, ...)                                                                         \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_order: %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* The slot the overlays apply to: two configured members, m1 and m2. */
static const char config_text[] = "backends:\n"
				  "  - name: hsm\n"
				  "    module: /bin/sh\n"
				  "slots:\n"
				  "  - label: s\n"
				  "    members:\n"
				  "      - backend: hsm\n"
				  "        token_label: m1\n"
				  "      - backend: hsm\n"
				  "        token_label: m2\n";

static struct p11p_config *cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];

	(void)argc;
	(void)argv;
	cfg = p11p_config_parse("fuzz.yaml", config_text, sizeof(config_text) - 1, err,
				sizeof(err));
	REQUIRE(cfg != NULL, "%s", err);
	return 0;
}

static void check_order(const struct p11p_order *o)
{
	REQUIRE(o->n >= 1 && o->n <= P11P_MAX_MEMBERS, "%zu entries", o->n);
	for (size_t i = 0; i < o->n; i++) {
		const struct p11p_order_entry *e = &o->e[i];

		REQUIRE(e->name[0] != '\0', "entry %zu has no name", i);
		REQUIRE((e->config_index == P11P_ORDER_NONE) == (e->spec != NULL),
			"entry %zu: config index and spec disagree", i);
		REQUIRE(e->config_index == P11P_ORDER_NONE || e->config_index < cfg->slots[0].n_members,
			"entry %zu: config index %zu", i, e->config_index);
		for (size_t j = 0; j < i; j++)
			REQUIRE(strcmp(o->e[j].name, e->name) != 0, "name %s twice", e->name);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct p11p_order o, again;
	char err[512], err2[512];
	char *text;

	if (cfg == NULL)
		LLVMFuzzerInitialize(NULL, NULL);
	memset(&o, 0, sizeof(o));
	memset(&again, 0, sizeof(again));
	err[0] = '\0';
	if (!p11p_order_parse(cfg, 0, NAME, (const char *)data, size, &o, err, sizeof(err))) {
		REQUIRE(strncmp(err, NAME, strlen(NAME)) == 0 && strchr(err, '\n') == NULL,
			"error '%s'", err);
		REQUIRE(o.n == 0, "a refused overlay left %zu entries", o.n);
		return 0;
	}
	check_order(&o);
	text = p11p_order_format(cfg, 0, &o);
	if (text != NULL) {
		REQUIRE(p11p_order_parse(cfg, 0, NAME, text, strlen(text), &again, err2,
					 sizeof(err2)),
			"its own output refused: %s\n%s", err2, text);
		REQUIRE(again.n == o.n, "%zu entries, then %zu", o.n, again.n);
		for (size_t i = 0; i < o.n; i++) {
			REQUIRE(strcmp(again.e[i].name, o.e[i].name) == 0, "entry %zu renamed", i);
			REQUIRE(again.e[i].config_index == o.e[i].config_index, "entry %zu moved", i);
			REQUIRE((o.e[i].spec == NULL) ||
					p11p_member_cfg_same(o.e[i].spec, again.e[i].spec),
				"entry %zu: spec changed", i);
		}
		p11p_order_clear(&again);
		p11p_free(text);
	}
	p11p_order_clear(&o);
	return 0;
}
