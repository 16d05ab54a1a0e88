/*
 * Member order changes followed by a running process (tests/suites/68-members.sh).
 *   ordertest MODULE LOG
 * Keeps MODULE (libproxy.so over the fault-injecting shim) loaded and obeys
 * one command per line of stdin, answering one line on stdout each, so the
 * suite can change the order with `p11proxy members` in between:
 *   open              new session on slot "ha"; a digest through it shows,
 *                     in the shim's call LOG, which token served it:
 *                     "open N m1" (N: 1-based session number) or "open N error CKR_..."
 *   use N             a digest on session N: "use N m2" or "use N error CKR_..."
 *   wait-member M S   opens (and closes) sessions until one is served by M,
 *                     for up to S seconds: "wait-member M ok" or "wait-member M timeout"
 *   quit              closes everything: "bye"
 * The digest (C_DigestInit + C_Digest) is what names the member: the
 * module's own health probes never digest.
 */
#include "../tests/progs/testmod.h"

#include <time.h>
#include <unistd.h>

#define MAX_SESSIONS 64

static struct testmod mod;
static const char *log_path;
static CK_SESSION_HANDLE sessions[MAX_SESSIONS];
static int n_sessions;
static CK_SLOT_ID ha;

static long log_lines(void)
{
	FILE *fp = fopen(log_path, "r");
	char line[512];
	long n = 0;

	if (fp == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
		n++;
	fclose(fp);
	return n;
}

/* The token of the first "C_Digest LABEL CKR_OK" line after line `from`, into out. */
static int digest_member(long from, char *out, size_t len)
{
	FILE *fp = fopen(log_path, "r");
	char line[512], label[64];
	long i = 0;
	int found = 0;

	if (fp == NULL)
		return 0;
	while (!found && fgets(line, sizeof(line), fp) != NULL) {
		if (i++ < from)
			continue;
		char rv[64];

		/* "C_Digest LABEL CKR_OK" exactly (not C_DigestInit, not a failed call). */
		if (strncmp(line, "C_Digest ", 9) == 0 &&
		    sscanf(line + 9, "%63s %63s", label, rv) == 2 && strcmp(rv, "CKR_OK") == 0) {
			snprintf(out, len, "%s", label);
			found = 1;
		}
	}
	fclose(fp);
	return found;
}

/* A digest on s; the member that served it, or the error, into out. */
static void digest(CK_SESSION_HANDLE s, char *out, size_t len)
{
	CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
	CK_BYTE data[] = "order", hash[32];
	CK_ULONG hlen = sizeof(hash);
	long mark = log_lines();
	CK_RV rv;

	rv = mod.f->C_DigestInit(s, &sha);
	if (rv == CKR_OK)
		rv = mod.f->C_Digest(s, data, sizeof(data) - 1, hash, &hlen);
	if (rv != CKR_OK)
		snprintf(out, len, "error %s", testmod_ckr(rv));
	else if (!digest_member(mark, out, len))
		snprintf(out, len, "unknown");
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cmd_open(void)
{
	CK_SESSION_HANDLE s = 0;
	char who[80];
	CK_RV rv;

	if (n_sessions == MAX_SESSIONS) {
		printf("open 0 error too-many\n");
		return;
	}
	rv = mod.f->C_OpenSession(ha, CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK) {
		printf("open 0 error %s\n", testmod_ckr(rv));
		return;
	}
	sessions[n_sessions++] = s;
	digest(s, who, sizeof(who));
	printf("open %d %s\n", n_sessions, who);
}

static void cmd_use(int n)
{
	char who[80];

	if (n < 1 || n > n_sessions) {
		printf("use %d error no-such-session\n", n);
		return;
	}
	digest(sessions[n - 1], who, sizeof(who));
	printf("use %d %s\n", n, who);
}

static void cmd_wait_member(const char *want, double seconds)
{
	double end = now_s() + seconds;
	char who[80] = "";

	do {
		CK_SESSION_HANDLE s = 0;

		if (mod.f->C_OpenSession(ha, CKF_SERIAL_SESSION, NULL, NULL, &s) == CKR_OK) {
			digest(s, who, sizeof(who));
			mod.f->C_CloseSession(s);
			if (strcmp(who, want) == 0) {
				printf("wait-member %s ok\n", want);
				return;
			}
		}
		usleep(100 * 1000);
	} while (now_s() < end);
	printf("wait-member %s timeout (last: %s)\n", want, who);
}

int main(int argc, char **argv)
{
	char line[256], arg[64];
	double secs;
	int n;

	if (argc != 3) {
		fprintf(stderr, "usage: ordertest MODULE LOG\n");
		return 2;
	}
	log_path = argv[2];
	if (!testmod_load(&mod, argv[1]))
		return 1;
	if (!testmod_find_token(&mod, "ha", &ha))
		return 1;
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin) != NULL) {
		if (strncmp(line, "open", 4) == 0) {
			cmd_open();
		} else if (sscanf(line, "use %d", &n) == 1) {
			cmd_use(n);
		} else if (sscanf(line, "wait-member %63s %lf", arg, &secs) == 2) {
			cmd_wait_member(arg, secs);
		} else if (strncmp(line, "quit", 4) == 0) {
			break;
		} else {
			printf("unknown command\n");
		}
		fflush(stdout);
	}
	for (int i = 0; i < n_sessions; i++)
		mod.f->C_CloseSession(sessions[i]);
	testmod_unload(&mod);
	printf("bye\n");
	fflush(stdout);
	return 0;
}
