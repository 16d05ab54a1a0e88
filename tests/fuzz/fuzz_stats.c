/*
 * Fuzz target for the statistics file parser (p11p_stats_parse, lib/ha/stats.c):
 * the metrics listener reads the files every process using the module writes
 * under state_dir, so they are untrusted input. Built like fuzz_order.c
 * (libFuzzer with `make fuzz`, the standalone driver in every `make check` build).
 *
 * Oracle, beyond no crash, leak or hang:
 *  - a refusal comes with a one-line error naming the file;
 *  - an accepted file has a pid, at most P11P_MAX_BACKENDS backends and
 *    P11P_STATS_MAX_MEMBERS members, known states and NUL-terminated names;
 *  - formatting what was accepted and parsing that text again gives the same counts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "ha/stats.h"

#define NAME "fuzz.stats"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond, ...)                                                                         \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_stats: %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static struct p11p_stats *a, *b;

static void same(const struct p11p_stats *x, const struct p11p_stats *y)
{
	REQUIRE(x->pid == y->pid && x->start == y->start, "writer changed");
	REQUIRE(x->n_backends == y->n_backends && x->n_members == y->n_members, "counts changed");
	for (size_t i = 0; i < x->n_backends; i++) {
		const struct p11p_stats_backend *p = &x->backends[i], *q = &y->backends[i];

		REQUIRE(strcmp(p->name, q->name) == 0 && p->calls == q->calls &&
			    p->server_errors == q->server_errors &&
			    p->client_errors == q->client_errors && p->refused == q->refused,
			"backend %zu changed", i);
	}
	for (size_t i = 0; i < x->n_members; i++) {
		const struct p11p_stats_member *p = &x->members[i], *q = &y->members[i];

		REQUIRE(strcmp(p->slot, q->slot) == 0 && strcmp(p->name, q->name) == 0 &&
			    p->state == q->state && p->down == q->down &&
			    p->failovers == q->failovers && p->hung == q->hung &&
			    p->sessions == q->sessions && p->calls == q->calls &&
			    p->server_errors == q->server_errors &&
			    p->client_errors == q->client_errors && p->refused == q->refused,
			"member %zu changed", i);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512], err2[512];
	char *text;
	size_t len;

	if (a == NULL) {
		a = p11p_calloc(1, sizeof(*a));
		b = p11p_calloc(1, sizeof(*b));
		REQUIRE(a != NULL && b != NULL, "out of memory");
	}
	if (!p11p_stats_parse(NAME, (const char *)data, size, a, err, sizeof(err))) {
		REQUIRE(strncmp(err, NAME ":", strlen(NAME) + 1) == 0 && strchr(err, '\n') == NULL,
			"error '%s'", err);
		return 0;
	}
	REQUIRE(a->pid > 0, "pid %ld", a->pid);
	REQUIRE(a->n_backends <= P11P_MAX_BACKENDS && a->n_members <= P11P_STATS_MAX_MEMBERS,
		"%zu backends, %zu members", a->n_backends, a->n_members);
	for (size_t i = 0; i < a->n_members; i++)
		REQUIRE((unsigned)a->members[i].state < P11P_STATS_STATES &&
			    memchr(a->members[i].slot, '\0', sizeof(a->members[i].slot)) != NULL &&
			    memchr(a->members[i].name, '\0', sizeof(a->members[i].name)) != NULL,
			"member %zu", i);
	text = p11p_stats_format(a, &len);
	if (text != NULL) {
		REQUIRE(p11p_stats_parse(NAME, text, len, b, err2, sizeof(err2)),
			"its own output refused: %s\n%s", err2, text);
		same(a, b);
		p11p_free(text);
	}
	return 0;
}
