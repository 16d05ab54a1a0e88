/*
 * Fuzz target for the key-management policy overlay parser
 * (p11p_policy_parse): the overlay is a file under state_dir that every
 * process with the module loaded reads, so it is untrusted input. Built like
 * fuzz_order.c (libFuzzer with `make fuzz`, the standalone driver in every
 * `make check` build).
 *
 * Oracle, beyond no crash, leak or hang:
 *  - a refusal comes with a one-line error naming the file, and leaves the
 *    output untouched;
 *  - an accepted policy has known values, and formatting it and parsing the
 *    text again (over the opposite base) gives the same policy.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkeys/policy.h"

#define NAME "fuzz.policy"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond, ...)                                                                         \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_policy: %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct p11p_policy_cfg base = {false, P11P_SCAN_ALL};
	struct p11p_policy_cfg out = {true, P11P_SCAN_OWNED}, again, opposite;
	char err[512], err2[512], text[512];

	err[0] = '\0';
	if (!p11p_policy_parse(NAME, (const char *)data, size, &base, &out, err, sizeof(err))) {
		REQUIRE(strncmp(err, NAME, strlen(NAME)) == 0 && strchr(err, '\n') == NULL,
			"error '%s'", err);
		REQUIRE(out.write_back && out.scan == P11P_SCAN_OWNED, "a refusal changed out");
		return 0;
	}
	REQUIRE(out.scan == P11P_SCAN_ALL || out.scan == P11P_SCAN_OWNED, "scan %d", (int)out.scan);
	p11p_policy_format(&out, text, sizeof(text));
	opposite.write_back = !out.write_back;
	opposite.scan = out.scan == P11P_SCAN_ALL ? P11P_SCAN_OWNED : P11P_SCAN_ALL;
	REQUIRE(p11p_policy_parse(NAME, text, strlen(text), &opposite, &again, err2, sizeof(err2)),
		"its own output refused: %s\n%s", err2, text);
	REQUIRE(again.write_back == out.write_back && again.scan == out.scan,
		"round trip changed the policy:\n%s", text);
	return 0;
}
