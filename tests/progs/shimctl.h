/*
 * Shared by the test programs that drive the fault-injecting shim
 * (hatest.c, repltest.c, hafaults.c): result lines, time, the shim's control file and
 * call log, sessions through the proxy. Header-only, included once per program.
 */
#ifndef P11P_SHIMCTL_H
#define P11P_SHIMCTL_H

#include "testmod.h"

#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#define PIN "1234"

static struct testmod mod;
static CK_FUNCTION_LIST *f;
static const char *control_path, *log_path;
static int failures;

static void expect(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void expect(int cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("%s ", cond ? "ok" : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
	if (!cond)
		failures++;
}

__attribute__((unused)) static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((unused)) static void msleep(unsigned ms)
{
	usleep(ms * 1000);
}

/* Rewrites the shim's control file in one go (temp file + rename). */
static void control(const char *rules)
{
	char tmp[4096];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.tmp", control_path);
	fp = fopen(tmp, "w");
	if (fp == NULL || fputs(rules, fp) < 0 || fclose(fp) != 0 ||
	    rename(tmp, control_path) != 0) {
		perror("control");
		exit(2);
	}
}

/* Lines of the call log containing all of a, b (b may be NULL), from line `from` on. */
static long log_count(long from, const char *a, const char *b)
{
	FILE *fp = fopen(log_path, "r");
	char line[512];
	long n = 0, i = 0;

	if (fp == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (i++ >= from && strstr(line, a) != NULL &&
		    (b == NULL || strstr(line, b) != NULL))
			n++;
	fclose(fp);
	return n;
}

static long log_lines(void)
{
	return log_count(0, "", NULL);
}

__attribute__((unused)) static CK_SESSION_HANDLE open_on(const char *label, int login)
{
	CK_SESSION_HANDLE s = 0;

	if (!testmod_session(&mod, label, login ? PIN : NULL, &s)) {
		expect(0, "open a session on %s", label);
		exit(1);
	}
	return s;
}

#endif
