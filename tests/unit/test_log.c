/*
 * Unit tests for base/log.c: where messages go (standard error, the debug
 * file, a syslog socket named by P11PROXY_SYSLOG_SOCKET), the RFC 3164 line,
 * escaping, the fallback when no syslog daemon listens, and rate limiting.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"

static char tmpdir[256];
static char sock_path[300], file_path[300];
static int sock = -1;

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/p11p-log.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(sock_path, sizeof(sock_path), "%s/log.sock", tmpdir);
	snprintf(file_path, sizeof(file_path), "%s/messages", tmpdir);
	setenv("P11PROXY_DEBUG_FILE", file_path, 1);
	unsetenv("P11PROXY_DEBUG");
	p11p_log_init();
}

static void teardown(void)
{
	p11p_log_set_target(P11P_LOG_STDERR, P11P_LOG_FACILITY_USER);
	if (sock >= 0)
		close(sock);
	sock = -1;
	unlink(sock_path);
	unlink(file_path);
	rmdir(tmpdir);
	unsetenv("P11PROXY_DEBUG_FILE");
	unsetenv("P11PROXY_SYSLOG_SOCKET");
}

/* A syslog daemon's socket at sock_path, and the module pointed at it. */
static void listen_syslog(int facility)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	sock = socket(AF_UNIX, SOCK_DGRAM, 0);
	ck_assert_int_ge(sock, 0);
	ck_assert_uint_lt(strlen(sock_path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	ck_assert_int_eq(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("P11PROXY_SYSLOG_SOCKET", sock_path, 1);
	p11p_log_set_target(P11P_LOG_SYSLOG, facility);
}

/* The next datagram (waiting up to 2 s), or "" when none came. */
static const char *next_datagram(int wait_ms)
{
	static char buf[8192];
	struct pollfd p = {.fd = sock, .events = POLLIN};
	ssize_t n;

	buf[0] = '\0';
	if (poll(&p, 1, wait_ms) != 1)
		return buf;
	n = recv(sock, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* The whole debug/stderr file ("" when absent). */
static const char *file_text(void)
{
	static char buf[65536];
	FILE *fp = fopen(file_path, "r");
	size_t n = 0;

	buf[0] = '\0';
	if (fp == NULL)
		return buf;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

static size_t count_lines(const char *s, const char *needle)
{
	size_t n = 0;

	for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

START_TEST(test_stderr_default)
{
	p11p_log_set_target(P11P_LOG_STDERR, P11P_LOG_FACILITY_USER);
	ck_assert_int_eq(p11p_log_get_target(), P11P_LOG_STDERR);
	p11p_message("member %d is down", 2);
	p11p_notice("member %d is up", 2);
	ck_assert_str_eq(file_text(), "p11proxy: member 2 is down\np11proxy: member 2 is up\n");
}
END_TEST

START_TEST(test_syslog_line)
{
	char want[128];
	const char *d;

	listen_syslog(P11P_LOG_FACILITY_DAEMON);
	ck_assert_int_eq(p11p_log_get_target(), P11P_LOG_SYSLOG);
	p11p_message("slot '%s': member %d is down", "ha", 1);
	d = next_datagram(2000);
	/* <PRI> = daemon (3 << 3) | warning (4); "Mmm dd hh:mm:ss"; the tag with our pid. */
	ck_assert_msg(strncmp(d, "<28>", 4) == 0, "%s", d);
	ck_assert_msg(d[7] == ' ' && d[10] == ' ' && d[13] == ':' && d[16] == ':' && d[19] == ' ',
	              "%s", d);
	snprintf(want, sizeof(want), " p11proxy[%ld]: slot 'ha': member 1 is down", (long)getpid());
	ck_assert_msg(strcmp(d + 19, want) == 0, "%s", d);
	p11p_notice("member %d is up again", 1);
	d = next_datagram(2000);
	ck_assert_msg(strncmp(d, "<29>", 4) == 0, "%s", d); /* notice */
	/* Nothing of it on standard error. */
	ck_assert_str_eq(file_text(), "");
	p11p_log_set_target(P11P_LOG_SYSLOG, P11P_LOG_FACILITY_LOCAL0 + (5 << 3));
	p11p_message("x");
	d = next_datagram(2000);
	ck_assert_msg(strncmp(d, "<172>", 5) == 0, "%s", d); /* local5 (21 << 3) | 4 */
}
END_TEST

START_TEST(test_escaped)
{
	const char *d;

	listen_syslog(P11P_LOG_FACILITY_USER);
	p11p_message("label '%s'", "a\nb\tc\x7f\x1b[31m");
	d = next_datagram(2000);
	ck_assert_msg(strstr(d, ": label 'a\\x0ab\\x09c\\x7f\\x1b[31m'") != NULL, "%s", d);
	ck_assert_ptr_null(strchr(d, '\n'));
	p11p_log_set_target(P11P_LOG_STDERR, P11P_LOG_FACILITY_USER);
	p11p_message("label '%s'", "a\nb");
	ck_assert_str_eq(file_text(), "p11proxy: label 'a\\x0ab'\n");
}
END_TEST

START_TEST(test_long_message)
{
	char big[3000];
	const char *d;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	listen_syslog(P11P_LOG_FACILITY_USER);
	p11p_message("%s", big);
	d = next_datagram(2000);
	ck_assert_uint_lt(strlen(d), 1100);
	ck_assert_msg(strcmp(d + strlen(d) - 4, "x...") == 0, "%s", d + strlen(d) - 10);
}
END_TEST

START_TEST(test_debug_not_to_syslog)
{
	setenv("P11PROXY_DEBUG", "backend", 1);
	p11p_log_init();
	listen_syslog(P11P_LOG_FACILITY_USER);
	p11p_debug(P11P_DBG_BACKEND, "resolved %d", 7);
	p11p_debug(P11P_DBG_CALL, "not on");
	ck_assert_str_eq(next_datagram(200), "");
	ck_assert_str_eq(file_text(), "p11proxy: debug: resolved 7\n");
	unsetenv("P11PROXY_DEBUG");
	p11p_log_init();
}
END_TEST

START_TEST(test_no_daemon)
{
	const char *t;

	/* Nobody listens at the path: every message goes to stderr; the reason is said once. */
	setenv("P11PROXY_SYSLOG_SOCKET", sock_path, 1);
	p11p_log_set_target(P11P_LOG_SYSLOG, P11P_LOG_FACILITY_USER);
	p11p_message("first");
	p11p_message("second");
	t = file_text();
	ck_assert_uint_eq(count_lines(t, "messages go to standard error"), 1);
	ck_assert_msg(strstr(t, "No such file or directory") != NULL, "%s", t);
	ck_assert_msg(strstr(t, "p11proxy: first\n") != NULL, "%s", t);
	ck_assert_msg(strstr(t, "p11proxy: second\n") != NULL, "%s", t);
	/* The daemon starts: the same socket connects again at the next message. */
	unlink(file_path);
	listen_syslog(P11P_LOG_FACILITY_USER);
	p11p_message("third");
	ck_assert_msg(strstr(next_datagram(2000), ": third") != NULL, "no datagram");
	ck_assert_str_eq(file_text(), "");
}
END_TEST

START_TEST(test_rate_limit)
{
	static struct p11p_ratelimit rl;
	const char *t;

	p11p_log_set_target(P11P_LOG_STDERR, P11P_LOG_FACILITY_USER);
	for (int i = 0; i < 25; i++)
		p11p_message_limited(&rl, "key %d refused", i);
	t = file_text();
	ck_assert_uint_eq(count_lines(t, " refused\n"), P11P_RATELIMIT_BURST);
	ck_assert_ptr_null(strstr(t, "suppressed"));
	/* The window is over: the next line says how many were left out. */
	atomic_store(&rl.window_ms, 1);
	ck_assert(p11p_message_limited(&rl, "key %d refused", 25));
	t = file_text();
	ck_assert_msg(strstr(t, "p11proxy: key 25 refused (15 similar messages suppressed)\n") !=
	                  NULL,
	              "%s", t);
}
END_TEST

static Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_stderr_default);
	tcase_add_test(tc, test_syslog_line);
	tcase_add_test(tc, test_escaped);
	tcase_add_test(tc, test_long_message);
	tcase_add_test(tc, test_debug_not_to_syslog);
	tcase_add_test(tc, test_no_daemon);
	tcase_add_test(tc, test_rate_limit);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(log_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
