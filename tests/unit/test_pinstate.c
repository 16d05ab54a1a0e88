/*
 * Virtual PIN state (lib/virt/pinstate.c), the file layer the module and the
 * CLI share: the flags a count shows, reading and updating the state file,
 * and what is refused (damaged, unsafe, a symlink).
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virt/pinstate.h"

static char dir[PATH_MAX], path[PATH_MAX + 32];

static void setup(void)
{
	char tmpl[] = "/tmp/p11p-pinstate.XXXXXX";

	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	snprintf(dir, sizeof(dir), "%s", tmpl);
	/* The module makes slots/ in an existing state_dir. */
	snprintf(path, sizeof(path), "%s/slots/v.pin", dir);
}

static void teardown(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static void write_file(const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(chmod(path, mode), 0);
}

START_TEST(test_flags)
{
	ck_assert_uint_eq(p11p_pinstate_flags(0, 10), 0);
	ck_assert_uint_eq(p11p_pinstate_flags(1, 10), CKF_USER_PIN_COUNT_LOW);
	ck_assert_uint_eq(p11p_pinstate_flags(8, 10), CKF_USER_PIN_COUNT_LOW);
	ck_assert_uint_eq(p11p_pinstate_flags(9, 10),
	                  CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY);
	ck_assert_uint_eq(p11p_pinstate_flags(10, 10), CKF_USER_PIN_LOCKED);
	ck_assert_uint_eq(p11p_pinstate_flags(ULONG_MAX, 10), CKF_USER_PIN_LOCKED);
	/* One try in all: the first is the final one. */
	ck_assert_uint_eq(p11p_pinstate_flags(0, 1), CKF_USER_PIN_FINAL_TRY);
	ck_assert_uint_eq(p11p_pinstate_flags(1, 1), CKF_USER_PIN_LOCKED);
	/* 0: the default limit. */
	ck_assert_uint_eq(p11p_pinstate_flags(P11P_PIN_MAX_TRIES_DEFAULT - 1, 0),
	                  CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY);
}
END_TEST

START_TEST(test_count_and_clear)
{
	struct p11p_overlay_stamp a, b;
	char err[512];
	unsigned long n = 99;
	struct stat sb;

	/* No directory, no file: 0, and a clear creates nothing. */
	ck_assert_int_eq(p11p_pinstate_read(path, &n, &a, err, sizeof(err)), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(p11p_pinstate_update(path, false, &n, err, sizeof(err)), 0);
	ck_assert_int_ne(access(path, F_OK), 0);

	ck_assert_int_eq(p11p_pinstate_update(path, true, &n, err, sizeof(err)), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0600);
	ck_assert_int_eq(p11p_pinstate_update(path, true, &n, err, sizeof(err)), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(p11p_pinstate_read(path, &n, &a, err, sizeof(err)), 1);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(a.err, 0);

	/*
	 * No change, the same stamp; a change, a new one (here of another size: one
	 * of the same size within the clock's granularity may keep the stamp, which
	 * is why the module reads a recently changed file again, pinstate.c).
	 */
	ck_assert_int_eq(p11p_pinstate_read(path, &n, &b, err, sizeof(err)), 1);
	ck_assert(p11p_overlay_stamp_same(&a, &b));
	for (unsigned long i = 3; i <= 10; i++) {
		ck_assert_int_eq(p11p_pinstate_update(path, true, &n, err, sizeof(err)), 0);
		ck_assert_uint_eq(n, i);
	}
	ck_assert_int_eq(p11p_pinstate_read(path, &n, &b, err, sizeof(err)), 1);
	ck_assert_uint_eq(n, 10);
	ck_assert(!p11p_overlay_stamp_same(&a, &b));
	ck_assert_int_eq(p11p_pinstate_update(path, false, &n, err, sizeof(err)), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(p11p_pinstate_read(path, &n, NULL, err, sizeof(err)), 1);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(test_refused)
{
	char err[512], link[PATH_MAX + 32];
	unsigned long n;

	ck_assert_int_eq(p11p_pinstate_update(path, true, &n, err, sizeof(err)), 0);

	write_file("user_failures 3\n", 0600);
	ck_assert_int_eq(p11p_pinstate_read(path, &n, NULL, err, sizeof(err)), 1);
	ck_assert_uint_eq(n, 3);

	static const char *const bad[] = {"garbage\n",
	                                  "user_failures\n",
	                                  "user_failures 3",
	                                  "user_failures 3\nmore\n",
	                                  "user_failures -1\n",
	                                  "user_failures 3x\n",
	                                  "user_failures 99999999999999999999999\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(bad[i], 0600);
		err[0] = '\0';
		ck_assert_int_eq(p11p_pinstate_read(path, &n, NULL, err, sizeof(err)),
		                 P11P_PINSTATE_DAMAGED);
		ck_assert_ptr_nonnull(strstr(err, "damaged"));
	}
	/* A reset rewrites a damaged file; a wrong PIN counts from 1 again. */
	ck_assert_int_eq(p11p_pinstate_update(path, false, &n, err, sizeof(err)), 0);
	ck_assert_int_eq(p11p_pinstate_read(path, &n, NULL, err, sizeof(err)), 1);
	ck_assert_uint_eq(n, 0);

	/* Writable by others: refused for reading and writing. */
	write_file("user_failures 0\n", 0666);
	ck_assert_int_eq(p11p_pinstate_read(path, &n, NULL, err, sizeof(err)),
	                 P11P_PINSTATE_DAMAGED);
	ck_assert_ptr_nonnull(strstr(err, "unsafe"));
	ck_assert_int_eq(p11p_pinstate_update(path, true, &n, err, sizeof(err)), -1);

	/* A symbolic link is not followed. */
	ck_assert_int_eq(unlink(path), 0);
	snprintf(link, sizeof(link), "%s/target", dir);
	write_file("user_failures 0\n", 0600);
	ck_assert_int_eq(rename(path, link), 0);
	ck_assert_int_eq(symlink(link, path), 0);
	ck_assert_int_lt(p11p_pinstate_read(path, &n, NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(p11p_pinstate_update(path, true, &n, err, sizeof(err)), -1);
}
END_TEST

static Suite *pinstate_suite(void)
{
	Suite *s = suite_create("pinstate");
	TCase *tc = tcase_create("file");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_flags);
	tcase_add_test(tc, test_count_and_clear);
	tcase_add_test(tc, test_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pinstate_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
