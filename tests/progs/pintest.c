/*
 * pintest: the virtual PIN state of a slot whose member PIN is configured
 * (the proxy checks the application's PIN itself), as an application sees it
 * through C_Login and C_GetTokenInfo (suite 67-pinstate).
 *
 *   pintest flags MODULE LABEL              print the token's user-PIN flags
 *   pintest login MODULE LABEL PIN          print C_Login's result, then the flags
 *   pintest initpin MODULE LABEL SO NEW     C_InitPIN(NEW) as the SO: its result, the flags
 *   pintest sequence MODULE LABEL PIN MAX   wrong PINs up to MAX (MAX >= 3): the
 *                                           flags at each step, a good login
 *                                           clearing them, CKR_PIN_LOCKED at MAX
 *                                           for the right PIN too; exit 0 when all hold
 *   pintest watch MODULE LABEL COMMAND      flags; COMMAND (another process); flags;
 *                                           2.5 s; flags twice; COMMAND; flags:
 *                                           one line each (what this process sees of
 *                                           what the other does, its cache included)
 *
 * Flags print as "count-low,final-try,locked" (those set) or "none".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testmod.h"

static struct testmod M;
static CK_SLOT_ID slot;
static int bad;

static const char *flag_names(CK_FLAGS f, char *buf, size_t len)
{
	buf[0] = '\0';
	if (f & CKF_USER_PIN_COUNT_LOW)
		snprintf(buf + strlen(buf), len - strlen(buf), "%scount-low", buf[0] ? "," : "");
	if (f & CKF_USER_PIN_FINAL_TRY)
		snprintf(buf + strlen(buf), len - strlen(buf), "%sfinal-try", buf[0] ? "," : "");
	if (f & CKF_USER_PIN_LOCKED)
		snprintf(buf + strlen(buf), len - strlen(buf), "%slocked", buf[0] ? "," : "");
	if (buf[0] == '\0')
		snprintf(buf, len, "none");
	return buf;
}

/* The token's CKF_USER_PIN_{COUNT_LOW,FINAL_TRY,LOCKED}; exits on failure. */
static CK_FLAGS pin_flags(void)
{
	CK_TOKEN_INFO ti;
	CK_RV rv = M.f->C_GetTokenInfo(slot, &ti);

	if (rv != CKR_OK) {
		fprintf(stderr, "C_GetTokenInfo: %s\n", testmod_ckr(rv));
		exit(1);
	}
	return ti.flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED);
}

/* One C_Login on a new session (logged out and closed after). */
static CK_RV login(const char *pin)
{
	CK_SESSION_HANDLE h;
	CK_UTF8CHAR buf[256];
	size_t len = strlen(pin);
	CK_RV rv;

	if (len > sizeof(buf))
		len = sizeof(buf);
	memcpy(buf, pin, len);
	rv = M.f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK) {
		fprintf(stderr, "C_OpenSession: %s\n", testmod_ckr(rv));
		exit(1);
	}
	rv = M.f->C_Login(h, CKU_USER, buf, len);
	if (rv == CKR_OK)
		M.f->C_Logout(h);
	M.f->C_CloseSession(h);
	return rv;
}

static void expect_rv(const char *step, CK_RV got, CK_RV want)
{
	if (got != want) {
		fprintf(stderr, "%s: C_Login %s, expected %s\n", step, testmod_ckr(got),
		        testmod_ckr(want));
		bad = 1;
	}
}

static void expect_flags(const char *step, CK_FLAGS want)
{
	char g[64], w[64];
	CK_FLAGS got = pin_flags();

	if (got != want) {
		fprintf(stderr, "%s: flags %s, expected %s\n", step, flag_names(got, g, sizeof(g)),
		        flag_names(want, w, sizeof(w)));
		bad = 1;
	}
}

static int sequence(const char *pin, unsigned long max)
{
	char step[64];

	if (max < 3) {
		fprintf(stderr, "sequence needs MAX >= 3\n");
		return 2;
	}
	expect_flags("start", 0);
	expect_rv("wrong PIN 1", login("wrong-pin"), CKR_PIN_INCORRECT);
	expect_flags("after 1 wrong PIN", CKF_USER_PIN_COUNT_LOW);
	expect_rv("good PIN", login(pin), CKR_OK);
	expect_flags("after a good login", 0);
	for (unsigned long i = 1; i < max; i++) {
		snprintf(step, sizeof(step), "wrong PIN %lu", i);
		expect_rv(step, login("wrong-pin"), CKR_PIN_INCORRECT);
		snprintf(step, sizeof(step), "after %lu wrong PINs", i);
		expect_flags(step, i + 1 == max ? CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY
		                                : CKF_USER_PIN_COUNT_LOW);
	}
	expect_rv("wrong PIN at the limit", login("wrong-pin"), CKR_PIN_INCORRECT);
	expect_flags("at the limit", CKF_USER_PIN_LOCKED);
	expect_rv("good PIN when locked", login(pin), CKR_PIN_LOCKED);
	expect_rv("wrong PIN when locked", login("wrong-pin"), CKR_PIN_LOCKED);
	expect_flags("still locked", CKF_USER_PIN_LOCKED);
	return bad;
}

/* C_InitPIN as the SO (logged in, then out) on a new read-write session. */
static CK_RV init_pin(const char *so_pin, const char *new_pin)
{
	CK_SESSION_HANDLE h;
	CK_UTF8CHAR so[256], pin[256];
	size_t so_len = strlen(so_pin), pin_len = strlen(new_pin);
	CK_RV rv;

	if (so_len > sizeof(so) || pin_len > sizeof(pin))
		return CKR_PIN_LEN_RANGE;
	memcpy(so, so_pin, so_len);
	memcpy(pin, new_pin, pin_len);
	rv = M.f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK)
		return rv;
	rv = M.f->C_Login(h, CKU_SO, so, so_len);
	if (rv == CKR_OK) {
		rv = M.f->C_InitPIN(h, pin, pin_len);
		M.f->C_Logout(h);
	}
	M.f->C_CloseSession(h);
	return rv;
}

static void print_flags(void)
{
	char b[64];

	printf("%s\n", flag_names(pin_flags(), b, sizeof(b)));
	fflush(stdout);
}

static int watch(const char *cmd)
{
	struct timespec pause = {2, 500 * 1000 * 1000};

	print_flags();
	if (system(cmd) != 0)
		return 1;
	print_flags();
	nanosleep(&pause, NULL);
	print_flags();
	print_flags(); /* from the cache now: the file is older than the stamp's granularity */
	if (system(cmd) != 0)
		return 1;
	print_flags();
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";
	char b[64];
	int rc = 2;

	if (argc < 4 || !testmod_load(&M, argv[2])) {
		fprintf(stderr, "usage: pintest flags|login|initpin|sequence|watch MODULE LABEL ...\n");
		return 2;
	}
	if (!testmod_find_token(&M, argv[3], &slot))
		return 1;
	if (strcmp(cmd, "flags") == 0 && argc == 4) {
		printf("%s\n", flag_names(pin_flags(), b, sizeof(b)));
		rc = 0;
	} else if (strcmp(cmd, "login") == 0 && argc == 5) {
		CK_RV rv = login(argv[4]);

		printf("%s %s\n", testmod_ckr(rv), flag_names(pin_flags(), b, sizeof(b)));
		rc = 0;
	} else if (strcmp(cmd, "initpin") == 0 && argc == 6) {
		CK_RV rv = init_pin(argv[4], argv[5]);

		printf("%s %s\n", testmod_ckr(rv), flag_names(pin_flags(), b, sizeof(b)));
		rc = 0;
	} else if (strcmp(cmd, "sequence") == 0 && argc == 6) {
		rc = sequence(argv[4], strtoul(argv[5], NULL, 10));
	} else if (strcmp(cmd, "watch") == 0 && argc == 5) {
		rc = watch(argv[4]);
	} else {
		fprintf(stderr, "pintest: bad arguments\n");
	}
	testmod_unload(&M);
	return rc;
}
