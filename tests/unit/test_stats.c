/*
 * The statistics files (lib/ha/stats.c): the text the module writes and the
 * listener parses, its errors (FILE:LINE: what), its bounds, file names,
 * and telling a running writer from one that is gone.
 */
#include <check.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/mem.h"
#include "ha/stats.h"

static const char good[] =
    "p11proxy-stats 1\n"
    "pid 4242 start 463283\n"
    "backend shim calls 67 server_errors 4 client_errors 1 refused 2\n"
    "member ha m1 state down down 1 failovers 3 hung 1 sessions 0 calls 56 server_errors 4 "
    "client_errors 1 refused 2\n"
    "member my%20slot %00 state recovering down 0 failovers 0 hung 0 sessions 2 calls 6 "
    "server_errors 0 client_errors 0 refused 0\n"
    "end\n";

static struct p11p_stats *st;

static void setup(void)
{
	st = p11p_calloc(1, sizeof(*st));
	ck_assert_ptr_nonnull(st);
}

static void teardown(void)
{
	p11p_free(st);
}

/* Parses text; on failure, err must start with "f:LINE: " and contain want. */
static void refused(const char *text, unsigned line, const char *want)
{
	char err[512], prefix[32];

	ck_assert_msg(!p11p_stats_parse("f", text, strlen(text), st, err, sizeof(err)),
	              "accepted: %s", text);
	snprintf(prefix, sizeof(prefix), "f:%u: ", line);
	ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0 && strstr(err, want) != NULL,
	              "'%s' for: %s (want %s%s)", err, text, prefix, want);
}

START_TEST(test_parse_good)
{
	char err[256];

	ck_assert(p11p_stats_parse("f", good, sizeof(good) - 1, st, err, sizeof(err)));
	ck_assert_int_eq(st->pid, 4242);
	ck_assert_uint_eq(st->start, 463283);
	ck_assert_uint_eq(st->n_backends, 1);
	ck_assert_str_eq(st->backends[0].name, "shim");
	ck_assert_uint_eq(st->backends[0].calls, 67);
	ck_assert_uint_eq(st->backends[0].refused, 2);
	ck_assert_uint_eq(st->n_members, 2);
	ck_assert_str_eq(st->members[0].slot, "ha");
	ck_assert_int_eq(st->members[0].state, P11P_STATS_DOWN);
	ck_assert_uint_eq(st->members[0].failovers, 3);
	ck_assert_uint_eq(st->members[0].hung, 1);
	ck_assert_uint_eq(st->members[0].server_errors, 4);
	ck_assert_str_eq(st->members[1].slot, "my slot");
	ck_assert_str_eq(st->members[1].name, "");
	ck_assert_int_eq(st->members[1].state, P11P_STATS_RECOVERING);
	ck_assert_uint_eq(st->members[1].sessions, 2);
}
END_TEST

START_TEST(test_format_round_trip)
{
	struct p11p_stats *again = p11p_calloc(1, sizeof(*again));
	char err[256], *text;
	size_t len;

	ck_assert(p11p_stats_parse("f", good, sizeof(good) - 1, st, err, sizeof(err)));
	/* Names with every awkward byte come back as they were. */
	snprintf(st->members[0].name, sizeof(st->members[0].name), "a b%%c\x01\x7f\xc3\xa9");
	text = p11p_stats_format(st, &len);
	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_null(memchr(text, '\x01', len));
	ck_assert(p11p_stats_parse("f", text, len, again, err, sizeof(err)));
	ck_assert_str_eq(again->members[0].name, st->members[0].name);
	ck_assert_str_eq(again->members[1].name, "");
	ck_assert_uint_eq(again->members[0].calls, st->members[0].calls);
	ck_assert_str_eq(text + len - 4, "end\n");
	p11p_free(text);
	p11p_free(again);
}
END_TEST

START_TEST(test_parse_errors_name_line)
{
	refused("", 1, "no 'end' line");
	refused("garbage\n", 1, "not a p11proxy statistics file");
	refused("p11proxy-stats 2\n", 1, "version '2' is not supported");
	refused("p11proxy-stats 1\npid 0 start 1\nend\n", 2, "pid: out of range");
	refused("p11proxy-stats 1\npid 1 begin 1\nend\n", 2, "'begin' where 'start' belongs");
	refused("p11proxy-stats 1\npid 1 start 1\nbackend b calls x server_errors 0 "
	        "client_errors 0 refused 0\nend\n",
	        3, "calls: not a number");
	refused("p11proxy-stats 1\npid 1 start 1\nbackend b calls 18446744073709551616 "
	        "server_errors 0 client_errors 0 refused 0\nend\n",
	        3, "calls: out of range");
	refused("p11proxy-stats 1\npid 1 start 1\nmember s m state sleeping down 0 failovers 0 "
	        "hung 0 sessions 0 calls 0 server_errors 0 client_errors 0 refused 0\nend\n",
	        3, "state: 'sleeping'");
	refused("p11proxy-stats 1\npid 1 start 1\nmember s%4 m state up down 0 failovers 0 "
	        "hung 0 sessions 0 calls 0 server_errors 0 client_errors 0 refused 0\nend\n",
	        3, "slot: a % not followed by two hex digits");
	refused("p11proxy-stats 1\npid 1 start 1\nmember s a%00b state up down 0 failovers 0 "
	        "hung 0 sessions 0 calls 0 server_errors 0 client_errors 0 refused 0\nend\n",
	        3, "member name: a NUL byte");
	refused("p11proxy-stats 1\npid 1 start 1\nmember s m state up\nend\n", 3,
	        "'member' line with 5 fields, not 21");
	refused("p11proxy-stats 1\npid 1 start 1\nsomething else\nend\n", 3, "unknown line");
	refused("p11proxy-stats 1\npid 1 start  1\nend\n", 2, "separated by one space");
	refused("p11proxy-stats 1\npid 1 start 1\nend\nend\n", 4, "a line after 'end'");
	refused("p11proxy-stats 1\npid 1 start 1\nend", 3, "no newline");
	refused("p11proxy-stats 1\npid 1 start 1\n", 3, "no 'end' line");
}
END_TEST

START_TEST(test_parse_limits)
{
	size_t cap = P11P_STATS_MAX_BYTES + 64, len;
	char *text = p11p_malloc(cap), err[256];
	char line[P11P_STATS_LINE_MAX + 16];

	ck_assert_ptr_nonnull(text);
	/* A line longer than P11P_STATS_LINE_MAX. */
	memset(line, 'x', sizeof(line));
	line[sizeof(line) - 1] = '\0';
	len = (size_t)snprintf(text, cap, "p11proxy-stats 1\npid 1 start 1\nbackend %s\nend\n", line);
	ck_assert(!p11p_stats_parse("f", text, len, st, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "f:3: line longer than"));
	/* A name longer than a backend name may be. */
	memset(line, 'n', P11P_NAME_MAX + 1);
	line[P11P_NAME_MAX + 1] = '\0';
	len = (size_t)snprintf(text, cap,
	                       "p11proxy-stats 1\npid 1 start 1\nbackend %s calls 0 server_errors 0 "
	                       "client_errors 0 refused 0\nend\n",
	                       line);
	ck_assert(!p11p_stats_parse("f", text, len, st, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "backend name: longer than 64 bytes"));
	/* More backends than a configuration can have. */
	len = (size_t)snprintf(text, cap, "p11proxy-stats 1\npid 1 start 1\n");
	for (int i = 0; i <= P11P_MAX_BACKENDS; i++)
		len += (size_t)snprintf(text + len, cap - len,
		                        "backend b%d calls 0 server_errors 0 client_errors 0 "
		                        "refused 0\n",
		                        i);
	len += (size_t)snprintf(text + len, cap - len, "end\n");
	ck_assert(!p11p_stats_parse("f", text, len, st, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "more than 32 backends"));
	/* A file larger than P11P_STATS_MAX_BYTES, whatever it holds. */
	memset(text, '\n', cap);
	ck_assert(!p11p_stats_parse("f", text, P11P_STATS_MAX_BYTES + 1, st, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "larger than"));
	/* A NUL inside a line. */
	ck_assert(!p11p_stats_parse("f", "p11proxy-stats 1\npid 1\0 start 1\nend\n", 35, st, err,
	                            sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "f:2: a NUL byte"));
	p11p_free(text);
}
END_TEST

START_TEST(test_names)
{
	char buf[64];
	bool tmp;

	ck_assert_int_eq(p11p_stats_path("/var/lib/p11proxy", 123, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/var/lib/p11proxy/stats/123.stats");
	ck_assert_int_eq(p11p_stats_dir("/s", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/s/stats");
	ck_assert_int_eq(p11p_stats_path("relative", 1, buf, sizeof(buf)), -1);
	ck_assert_int_eq(p11p_stats_path("/s", 1, buf, 8), -1);
	ck_assert_int_eq(p11p_stats_name_pid("123.stats", &tmp), 123);
	ck_assert(!tmp);
	ck_assert_int_eq(p11p_stats_name_pid(".123.tmp", &tmp), 123);
	ck_assert(tmp);
	ck_assert_int_eq(p11p_stats_name_pid("0123.stats", &tmp), 0);
	ck_assert_int_eq(p11p_stats_name_pid("12a.stats", &tmp), 0);
	ck_assert_int_eq(p11p_stats_name_pid(".stats", &tmp), 0);
	ck_assert_int_eq(p11p_stats_name_pid("99999999999.stats", &tmp), 0);
	ck_assert_int_eq(p11p_stats_name_pid("123.stats.tmp", &tmp), 0);
	ck_assert_str_eq(p11p_stats_state_name(P11P_STATS_UP), "up");
	ck_assert_str_eq(p11p_stats_state_name(P11P_STATS_DOWN), "down");
}
END_TEST

START_TEST(test_alive)
{
	unsigned long long me = p11p_stats_proc_start(getpid());
	pid_t child = fork();
	int status;

	if (child == 0)
		_exit(0);
	ck_assert_int_gt(child, 0);
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert_uint_ne(me, 0);
	ck_assert(p11p_stats_alive(getpid(), me));
	ck_assert(p11p_stats_alive(getpid(), 0));
	/* The same pid, started at another time: another process. */
	ck_assert(!p11p_stats_alive(getpid(), me + 1));
	ck_assert(!p11p_stats_alive(child, 0));
	ck_assert(!p11p_stats_alive(0, 0));
	ck_assert(!p11p_stats_alive((long)INT_MAX + 1, 0));
	ck_assert_uint_eq(p11p_stats_proc_start(child), 0);
}
END_TEST

static Suite *stats_suite(void)
{
	Suite *s = suite_create("stats");
	TCase *tc = tcase_create("file");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_parse_good);
	tcase_add_test(tc, test_format_round_trip);
	tcase_add_test(tc, test_parse_errors_name_line);
	tcase_add_test(tc, test_parse_limits);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_alive);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(stats_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
