/*
 * forktest [--expect-fork-reinit] [--stall-stats STATE_DIR] MODULE TOKEN_LABEL PIN
 *
 * Fork behaviour of a PKCS#11 module (2.40 section 6.7.7: a child process
 * must call C_Initialize before using the library). The parent initializes,
 * logs in, creates an EC P-256 token key pair and signs; then forks:
 *   - child 1: with --expect-fork-reinit, calls made before C_Initialize must
 *     return CKR_CRYPTOKI_NOT_INITIALIZED (the proxy guarantees it; SoftHSM2
 *     directly does not, so the flag is given only for the proxy; without it
 *     the values seen are printed, not judged). Then C_Initialize (for a module
 *     that still considers itself initialized: C_Finalize + C_Initialize), a
 *     new session, login, find the parent's token key, sign and verify.
 *   - child 2: exits at once without touching the module.
 * The parent waits for both, checks their status, then signs again with its
 * own session, which must still work. Exit 0 when everything held.
 *
 * --stall-stats STATE_DIR (the proxy's state_dir): child 1 is forked while
 * the module's statistics writer is inside its write (stats.c, busy set):
 * a FIFO at the writer's temporary file makes its open wait for a reader,
 * and the parent forks once a thread of it waits there (its wchan), then
 * opens the FIFO to let the writer go on. Child 1's C_Initialize must then
 * take the parent's buffers over without losing them (a leak checker in the
 * child, valgrind or LeakSanitizer, fails it otherwise).
 */
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "testmod.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static CK_BBOOL yes = CK_TRUE;
static CK_OBJECT_CLASS cls_priv = CKO_PRIVATE_KEY, cls_pub = CKO_PUBLIC_KEY;
static unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static char label[64];

/* Prints "ok WHAT" or "FAIL WHAT: got X expected Y"; returns 1 when ok. */
static int expect(const char *who, const char *what, CK_RV got, CK_RV want)
{
	if (got == want) {
		printf("%s: ok %s\n", who, what);
		return 1;
	}
	printf("%s: FAIL %s: got %s expected %s\n", who, what, testmod_ckr(got), testmod_ckr(want));
	return 0;
}

static CK_OBJECT_HANDLE find_key(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                                 CK_RV *rvp)
{
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_LABEL, label, strlen(label)},
	};
	CK_OBJECT_HANDLE h[2] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE};
	CK_ULONG n = 0;
	CK_RV rv = f->C_FindObjectsInit(s, t, COUNT(t));

	if (rv == CKR_OK) {
		rv = f->C_FindObjects(s, h, 2, &n);
		f->C_FindObjectsFinal(s);
	}
	if (rv == CKR_OK && n != 1)
		rv = CKR_GENERAL_ERROR;
	*rvp = rv;
	return h[0];
}

/* ECDSA over a fixed 32-byte "hash", then verify. */
static CK_RV sign_verify(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv,
                         CK_OBJECT_HANDLE pub)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	unsigned char hash[32], sig[128];
	CK_ULONG siglen = sizeof(sig);
	CK_RV rv;

	memset(hash, 0x3c, sizeof(hash));
	rv = f->C_SignInit(s, &m, priv);
	if (rv == CKR_OK)
		rv = f->C_Sign(s, hash, sizeof(hash), sig, &siglen);
	if (rv == CKR_OK)
		rv = f->C_VerifyInit(s, &m, pub);
	if (rv == CKR_OK)
		rv = f->C_Verify(s, hash, sizeof(hash), sig, siglen);
	return rv;
}

static int child(struct testmod *tm, const char *tok, const char *pin, CK_SESSION_HANDLE parent_s,
                 int expect_reinit)
{
	CK_FUNCTION_LIST *f = tm->f;
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_SESSION_INFO si;
	CK_SLOT_ID slots[16];
	CK_ULONG n = COUNT(slots);
	CK_OBJECT_HANDLE priv, pub;
	int ok = 1;
	CK_RV rv;

	rv = f->C_GetSlotList(CK_TRUE, slots, &n);
	if (expect_reinit)
		ok &= expect("child", "C_GetSlotList before C_Initialize", rv,
		             CKR_CRYPTOKI_NOT_INITIALIZED);
	else
		printf("child: C_GetSlotList before C_Initialize: %s (not judged)\n",
		       testmod_ckr(rv));
	rv = f->C_GetSessionInfo(parent_s, &si);
	if (expect_reinit)
		ok &= expect("child", "parent's session before C_Initialize", rv,
		             CKR_CRYPTOKI_NOT_INITIALIZED);
	else
		printf("child: parent's session before C_Initialize: %s (not judged)\n",
		       testmod_ckr(rv));
	rv = f->C_Initialize(&args);
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED && !expect_reinit) {
		/* A module without fork detection: start it afresh. */
		printf("child: C_Initialize: %s; C_Finalize + C_Initialize\n", testmod_ckr(rv));
		f->C_Finalize(NULL);
		rv = f->C_Initialize(&args);
	}
	ok &= expect("child", "C_Initialize", rv, CKR_OK);
	if (rv != CKR_OK)
		return 0;
	if (!testmod_session(tm, tok, pin, &s)) {
		printf("child: FAIL open session + login\n");
		tm->f->C_Finalize(NULL);
		return 0;
	}
	printf("child: ok open session + login\n");
	rv = f->C_GetSessionInfo(parent_s, &si);
	/* The parent's handle means nothing here, unless it happens to be ours. */
	if (parent_s != s)
		ok &= expect("child", "parent's session after C_Initialize", rv,
		             CKR_SESSION_HANDLE_INVALID);
	priv = find_key(f, s, cls_priv, &rv);
	ok &= expect("child", "find the parent's private key", rv, CKR_OK);
	pub = find_key(f, s, cls_pub, &rv);
	ok &= expect("child", "find the parent's public key", rv, CKR_OK);
	ok &= expect("child", "sign + verify", sign_verify(f, s, priv, pub), CKR_OK);
	ok &= expect("child", "C_Logout", f->C_Logout(s), CKR_OK);
	ok &= expect("child", "C_CloseSession", f->C_CloseSession(s), CKR_OK);
	ok &= expect("child", "C_Finalize", f->C_Finalize(NULL), CKR_OK);
	return ok;
}

static int wait_child(pid_t pid, const char *what)
{
	int status = 0;

	if (waitpid(pid, &status, 0) != pid) {
		printf("parent: FAIL waitpid %s\n", what);
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		printf("parent: ok %s exited 0\n", what);
		return 1;
	}
	if (WIFSIGNALED(status))
		printf("parent: FAIL %s killed by signal %d\n", what, WTERMSIG(status));
	else
		printf("parent: FAIL %s exited %d\n", what, WEXITSTATUS(status));
	return 0;
}

static char fifo[4096];

/* The FIFO at this process's statistics temporary file (stats.c: <dir>/stats/.<pid>.tmp). */
static int stall_make(const char *state_dir)
{
	char dir[2048];

	if ((size_t)snprintf(dir, sizeof(dir), "%s/stats", state_dir) >= sizeof(dir))
		return 0;
	snprintf(fifo, sizeof(fifo), "%s/.%ld.tmp", dir, (long)getpid());
	if ((mkdir(dir, 0700) != 0 && errno != EEXIST) || mkfifo(fifo, 0600) != 0) {
		perror(fifo);
		fifo[0] = '\0';
		return 0;
	}
	return 1;
}

/* True once a thread of this process waits in open(2) for the FIFO's reader (up to 60 s). */
static int stall_reached(void)
{
	for (int i = 0; i < 600; i++) {
		DIR *d = opendir("/proc/self/task");
		struct dirent *e;
		int found = 0;

		while (d != NULL && (e = readdir(d)) != NULL) {
			char path[300], wchan[64] = "";
			FILE *f;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/proc/self/task/%s/wchan", e->d_name);
			if ((f = fopen(path, "r")) != NULL) {
				found |= fgets(wchan, sizeof(wchan), f) != NULL &&
				         strstr(wchan, "wait_for_partner") != NULL;
				fclose(f);
			}
		}
		if (d != NULL)
			closedir(d);
		if (found)
			return 1;
		usleep(100 * 1000);
	}
	return 0;
}

/* Lets the writer go: reads the FIFO until the writer closes it (up to 30 s). */
static void stall_release(void)
{
	char buf[4096];
	int fd;

	if (fifo[0] == '\0')
		return;
	fd = open(fifo, O_RDONLY | O_NONBLOCK);
	fifo[0] = '\0';
	if (fd < 0)
		return;
	for (int i = 0; i < 3000; i++) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n == 0)
			break; /* the writer closed it (and renamed it to its statistics file) */
		if (n < 0 && errno != EAGAIN)
			break;
		if (n < 0)
			usleep(10 * 1000);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	struct testmod tm;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
	CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	int expect_reinit = 0, ok = 1, argi = 1;
	const char *stall_dir = NULL;
	pid_t pid;
	CK_RV rv;

	if (argc > argi && strcmp(argv[argi], "--expect-fork-reinit") == 0) {
		expect_reinit = 1;
		argi++;
	}
	if (argc > argi + 1 && strcmp(argv[argi], "--stall-stats") == 0) {
		stall_dir = argv[argi + 1];
		argi += 2;
	}
	if (argc - argi != 3) {
		fprintf(stderr, "usage: forktest [--expect-fork-reinit] [--stall-stats STATE_DIR] "
		                "MODULE TOKEN_LABEL PIN\n");
		return 2;
	}
	if (stall_dir != NULL && !stall_make(stall_dir))
		return 1;
	setvbuf(stdout, NULL, _IONBF, 0);
	snprintf(label, sizeof(label), "forktest-%ld-%ld", (long)getpid(), (long)time(NULL));
	if (!testmod_load(&tm, argv[argi]))
		return 1;
	if (!testmod_session(&tm, argv[argi + 1], argv[argi + 2], &s)) {
		testmod_unload(&tm);
		return 1;
	}
	{
		CK_ATTRIBUTE pubt[] = {
		    {CKA_TOKEN, &yes, sizeof(yes)},
		    {CKA_LABEL, label, strlen(label)},
		    {CKA_EC_PARAMS, p256, sizeof(p256)},
		    {CKA_VERIFY, &yes, sizeof(yes)},
		};
		CK_ATTRIBUTE privt[] = {
		    {CKA_TOKEN, &yes, sizeof(yes)},
		    {CKA_PRIVATE, &yes, sizeof(yes)},
		    {CKA_LABEL, label, strlen(label)},
		    {CKA_SIGN, &yes, sizeof(yes)},
		};

		rv = tm.f->C_GenerateKeyPair(s, &m, pubt, COUNT(pubt), privt, COUNT(privt), &pub,
		                             &priv);
		ok &= expect("parent", "EC P-256 token key pair", rv, CKR_OK);
		if (rv != CKR_OK)
			goto out;
	}
	ok &=
	    expect("parent", "sign + verify before fork", sign_verify(tm.f, s, priv, pub), CKR_OK);
	if (stall_dir != NULL && !stall_reached()) {
		printf("parent: FAIL the statistics writer never waited at %s\n", fifo);
		ok = 0;
		goto out;
	}

	pid = fork();
	if (pid < 0) {
		perror("fork");
		ok = 0;
		goto out;
	}
	if (pid == 0)
		_exit(child(&tm, argv[argi + 1], argv[argi + 2], s, expect_reinit) ? 0 : 1);
	ok &= wait_child(pid, "child 1 (re-initializes and signs)");
	stall_release();
	ok &= expect("parent", "sign + verify after child 1", sign_verify(tm.f, s, priv, pub),
	             CKR_OK);

	pid = fork();
	if (pid < 0) {
		perror("fork");
		ok = 0;
		goto out;
	}
	if (pid == 0)
		_exit(0);
	ok &= wait_child(pid, "child 2 (exits at once)");
	ok &= expect("parent", "sign + verify after child 2", sign_verify(tm.f, s, priv, pub),
	             CKR_OK);
out:
	stall_release(); /* C_Finalize waits for the writer */
	if (pub != CK_INVALID_HANDLE)
		ok &= expect("parent", "destroy public key", tm.f->C_DestroyObject(s, pub), CKR_OK);
	if (priv != CK_INVALID_HANDLE)
		ok &=
		    expect("parent", "destroy private key", tm.f->C_DestroyObject(s, priv), CKR_OK);
	tm.f->C_Logout(s);
	tm.f->C_CloseSession(s);
	testmod_unload(&tm);
	printf("forktest: %s\n", ok ? "all ok" : "FAILED");
	return ok ? 0 : 1;
}
