/*
 * Unit tests for the key-management policy overlay (lib/vkeys/policy.c): the
 * parser, its messages, the text the writer produces, and the file round trip.
 */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "ha/order.h"
#include "vkeys/policy.h"

static const struct p11p_policy_cfg base_all = {false, P11P_SCAN_ALL};

static bool parse(const char *text, struct p11p_policy_cfg *out, char *err, size_t errlen)
{
	err[0] = '\0';
	return p11p_policy_parse("t.policy", text, strlen(text), &base_all, out, err, errlen);
}

START_TEST(test_parse_both)
{
	struct p11p_policy_cfg p;
	char err[256];

	ck_assert(parse("write_back = true\nscan = owned\n", &p, err, sizeof(err)));
	ck_assert(p.write_back);
	ck_assert_int_eq(p.scan, P11P_SCAN_OWNED);
	ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(test_parse_partial_keeps_base)
{
	struct p11p_policy_cfg p, base = {true, P11P_SCAN_OWNED};
	char err[256];

	ck_assert(p11p_policy_parse("t", "# only scan\n\n  scan=all \r\n", 26, &base, &p, err,
	                            sizeof(err)));
	ck_assert(p.write_back); /* from base */
	ck_assert_int_eq(p.scan, P11P_SCAN_ALL);
	ck_assert(p11p_policy_parse("t", "", 0, &base, &p, err, sizeof(err)));
	ck_assert(p.write_back);
	ck_assert_int_eq(p.scan, P11P_SCAN_OWNED);
}
END_TEST

START_TEST(test_parse_errors_name_line)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
	    {"write_back = maybe\n", "t.policy:1: 'write_back' must be true or false, not 'maybe'"},
	    {"\n\nscan = some\n", "t.policy:3: 'scan' must be all or owned, not 'some'"},
	    {"scan = all\nscan = owned\n", "t.policy:2: 'scan' given twice (first on line 1)"},
	    {"color = blue\n", "t.policy:1: unknown key 'color' (write_back, scan)"},
	    {"write_back\n", "t.policy:1: expected 'KEY = VALUE', got 'write_back'"},
	    {"scan = all\x01\n", "t.policy:1: control character in the line"},
	    {"write_back = TRUE\n", "t.policy:1: 'write_back' must be true or false, not 'TRUE'"},
	};
	struct p11p_policy_cfg p = {true, P11P_SCAN_OWNED};
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_msg(!parse(cases[i].text, &p, err, sizeof(err)), "case %zu accepted", i);
		ck_assert_str_eq(err, cases[i].want);
		/* A refused overlay leaves out untouched. */
		ck_assert(p.write_back);
		ck_assert_int_eq(p.scan, P11P_SCAN_OWNED);
	}
}
END_TEST

START_TEST(test_parse_limits)
{
	struct p11p_policy_cfg p;
	char err[256], *big = p11p_malloc(P11P_POLICY_MAX_BYTES + 2);

	ck_assert_ptr_nonnull(big);
	memset(big, '#', P11P_POLICY_MAX_BYTES + 1);
	ck_assert(!p11p_policy_parse("t", big, P11P_POLICY_MAX_BYTES + 1, &base_all, &p, err,
	                             sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "larger than"));
	ck_assert(
	    p11p_policy_parse("t", big, P11P_POLICY_MAX_BYTES, &base_all, &p, err, sizeof(err)));
	ck_assert(!p11p_policy_parse("t", "scan = all\0", 11, &base_all, &p, err, sizeof(err)));
	ck_assert_str_eq(err, "t: contains a NUL byte");
	p11p_free(big);
}
END_TEST

START_TEST(test_format_round_trip)
{
	for (int wb = 0; wb < 2; wb++) {
		for (int sc = 0; sc < 2; sc++) {
			struct p11p_policy_cfg in = {wb != 0, sc ? P11P_SCAN_OWNED : P11P_SCAN_ALL};
			struct p11p_policy_cfg out,
			    base = {wb == 0, sc ? P11P_SCAN_ALL : P11P_SCAN_OWNED};
			char text[512], err[256];

			p11p_policy_format(&in, text, sizeof(text));
			ck_assert(p11p_policy_parse("t", text, strlen(text), &base, &out, err,
			                            sizeof(err)));
			ck_assert_int_eq(out.write_back, in.write_back);
			ck_assert_int_eq(out.scan, in.scan);
		}
	}
}
END_TEST

/* The file: written, read back, damaged (path:line), removed. */
START_TEST(test_file_round_trip)
{
	char dir[] = "/tmp/p11p-policy.XXXXXX", conf[1024], path[PATH_MAX], err[768];
	struct p11p_config *cfg;
	struct p11p_policy_cfg p, set = {true, P11P_SCAN_OWNED};
	struct stat sb;
	FILE *f;
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(conf, sizeof(conf),
	         "state_dir: %s/state\nbackends:\n  - name: b\n    module: /bin/sh\nslots:\n"
	         "  - label: s 1\n    policy: { write_back: false, scan: all }\n    members:\n"
	         "      - backend: b\n        token_label: t\n",
	         dir);
	cfg = p11p_config_parse("c.yaml", conf, strlen(conf), err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(p11p_policy_path(cfg, 0, path, sizeof(path)), 0);
	ck_assert_ptr_nonnull(strstr(path, "/state/slots/s%201.policy"));
	ck_assert_int_eq(p11p_policy_read(cfg, NULL, 0, &p, err, sizeof(err)), 0);
	ck_assert(!p.write_back);

	fd = p11p_order_lock(cfg, err, sizeof(err));
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(p11p_policy_write(cfg, NULL, 0, &set, err, sizeof(err)), 0);
	p11p_order_unlock(fd);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0600);
	ck_assert_int_eq(p11p_policy_read(cfg, NULL, 0, &p, err, sizeof(err)), 1);
	ck_assert(p.write_back);
	ck_assert_int_eq(p.scan, P11P_SCAN_OWNED);

	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("write_back = true\nscan = never\n", f);
	fclose(f);
	ck_assert_int_eq(p11p_policy_read(cfg, NULL, 0, &p, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, ".policy:2: 'scan' must be all or owned"));
	/* Damaged: the config's policy, never the half-read one. */
	ck_assert(!p.write_back);

	chmod(path, 0666);
	ck_assert_int_eq(p11p_policy_read(cfg, NULL, 0, &p, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "writable by others"));

	ck_assert_int_eq(p11p_policy_write(cfg, NULL, 0, NULL, err, sizeof(err)), 0);
	ck_assert_int_ne(access(path, F_OK), 0);
	ck_assert_int_eq(p11p_policy_read(cfg, NULL, 0, &p, err, sizeof(err)), 0);

	snprintf(conf, sizeof(conf), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(conf), 0);
	p11p_config_free(cfg);
}
END_TEST

static Suite *policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("overlay");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_parse_both);
	tcase_add_test(tc, test_parse_partial_keeps_base);
	tcase_add_test(tc, test_parse_errors_name_line);
	tcase_add_test(tc, test_parse_limits);
	tcase_add_test(tc, test_format_round_trip);
	tcase_add_test(tc, test_file_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(policy_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
