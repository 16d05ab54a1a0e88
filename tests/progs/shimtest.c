/*
 * shimtest SHIM_MODULE PIN DIR
 *
 * Checks the fault-injecting test module tests/shim (libshim.so) over a
 * SoftHSM2 with two tokens labelled m1 and m2 (user PIN `PIN`). Sets
 * P11SHIM_CONTROL=DIR/control and P11SHIM_LOG=DIR/calls.log before loading
 * the shim (P11SHIM_MODULE, when set, names the real module). Each step writes
 * the control file in place (as a shell `echo >` does) and checks that m1
 * suffers and m2 does not: fail, after, count, fail-fn, `*`, hex codes,
 * ignored lines and the rule bound, drop, absent, hang ended by `ok`, hang
 * expiring, slow, the call log, NULL arguments, threads while the file
 * changes, and a forked child that initializes again.
 * Prints "ok WHAT" / "FAIL WHAT: ..." per check; exits 0 when all held.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testmod.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct token {
	const char *label;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE priv, pub;
};

static struct testmod tm;
static CK_FUNCTION_LIST *f;
static const char *pin;
static char ctl_path[4096], log_path[4096];
static struct token m1 = {.label = "m1"}, m2 = {.label = "m2"};
static int failures;

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static int check(const char *what, int cond)
{
	if (cond) {
		printf("ok %s\n", what);
		return 1;
	}
	printf("FAIL %s\n", what);
	failures++;
	return 0;
}

static int expect(const char *what, CK_RV got, CK_RV want)
{
	if (got == want) {
		printf("ok %s\n", what);
		return 1;
	}
	printf("FAIL %s: got %s, expected %s\n", what, testmod_ckr(got), testmod_ckr(want));
	failures++;
	return 0;
}

/* Rewrites a file in place (truncate + write), like `echo ... >FILE`. */
static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	size_t len = strlen(text);

	if (fd < 0 || write(fd, text, len) != (ssize_t)len) {
		printf("FAIL cannot write %s\n", path);
		failures++;
	}
	if (fd >= 0)
		close(fd);
}

static void ctl(const char *text)
{
	write_file(ctl_path, text);
}

static CK_RV rnd(struct token *t)
{
	unsigned char buf[16];

	return f->C_GenerateRandom(t->s, buf, sizeof(buf));
}

/* ECDSA over a fixed 32-byte "hash", then verify. */
static CK_RV sign_verify(struct token *t)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	unsigned char hash[32], sig[128];
	CK_ULONG siglen = sizeof(sig);
	CK_RV rv;

	memset(hash, 0x3c, sizeof(hash));
	rv = f->C_SignInit(t->s, &m, t->priv);
	if (rv == CKR_OK)
		rv = f->C_Sign(t->s, hash, sizeof(hash), sig, &siglen);
	if (rv == CKR_OK)
		rv = f->C_VerifyInit(t->s, &m, t->pub);
	if (rv == CKR_OK)
		rv = f->C_Verify(t->s, hash, sizeof(hash), sig, siglen);
	return rv;
}

/* A logged-in session and an EC P-256 session key pair on the token. */
static int token_up(struct token *t)
{
	CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pubt[] = {
	    {CKA_TOKEN, &no, sizeof(no)},
	    {CKA_EC_PARAMS, p256, sizeof(p256)},
	    {CKA_VERIFY, &yes, sizeof(yes)},
	};
	CK_ATTRIBUTE privt[] = {
	    {CKA_TOKEN, &no, sizeof(no)},
	    {CKA_PRIVATE, &yes, sizeof(yes)},
	    {CKA_SIGN, &yes, sizeof(yes)},
	};
	char what[64];

	if (!testmod_find_token(&tm, t->label, &t->slot) ||
	    !testmod_session(&tm, t->label, pin, &t->s)) {
		printf("FAIL %s: session + login\n", t->label);
		failures++;
		return 0;
	}
	snprintf(what, sizeof(what), "%s: generate key pair", t->label);
	return expect(what,
	              f->C_GenerateKeyPair(t->s, &m, pubt, COUNT(pubt), privt, COUNT(privt),
	                                   &t->pub, &t->priv),
	              CKR_OK);
}

/* 1 when the slot is in the list C_GetSlotList(present) gives. */
static int listed(CK_BBOOL present, CK_SLOT_ID slot)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 0;

	if (f->C_GetSlotList(present, NULL, &n) != CKR_OK || n > COUNT(slots))
		return -1;
	if (f->C_GetSlotList(present, slots, &n) != CKR_OK)
		return -1;
	for (CK_ULONG i = 0; i < n; i++) {
		if (slots[i] == slot)
			return 1;
	}
	return 0;
}

/* Lines of the call log equal to `line`. */
static int log_count(const char *line)
{
	FILE *fp = fopen(log_path, "r");
	char buf[256];
	int n = 0;

	if (fp == NULL)
		return -1;
	while (fgets(buf, sizeof(buf), fp) != NULL) {
		buf[strcspn(buf, "\n")] = '\0';
		n += strcmp(buf, line) == 0;
	}
	fclose(fp);
	return n;
}

/* ---- Steps ---- */

static void t_healthy(void)
{
	ctl("");
	expect("healthy: m1 sign + verify", sign_verify(&m1), CKR_OK);
	expect("healthy: m2 sign + verify", sign_verify(&m2), CKR_OK);
	check("healthy: m1 and m2 listed",
	      listed(CK_TRUE, m1.slot) == 1 && listed(CK_TRUE, m2.slot) == 1);
}

static void t_fail(void)
{
	CK_TOKEN_INFO ti;
	CK_INFO info;
	CK_SESSION_HANDLE s;

	ctl("m1 fail CKR_DEVICE_ERROR\n");
	expect("fail: m1 C_GenerateRandom", rnd(&m1), CKR_DEVICE_ERROR);
	expect("fail: m1 C_SignInit", sign_verify(&m1), CKR_DEVICE_ERROR);
	expect("fail: m1 C_GetTokenInfo", f->C_GetTokenInfo(m1.slot, &ti), CKR_DEVICE_ERROR);
	expect("fail: m1 C_OpenSession",
	       f->C_OpenSession(m1.slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_DEVICE_ERROR);
	expect("fail: m2 sign + verify", sign_verify(&m2), CKR_OK);
	expect("fail: m2 C_GetTokenInfo", f->C_GetTokenInfo(m2.slot, &ti), CKR_OK);
	check("fail: C_GetSlotList (no token) still works", listed(CK_TRUE, m1.slot) == 1);
	expect("fail: C_GetInfo never failed", f->C_GetInfo(&info), CKR_OK);
	ctl("m1 ok\n");
	expect("fail: `ok` heals m1", sign_verify(&m1), CKR_OK);
}

static void t_after_count(void)
{
	CK_RV r[6];

	ctl("m1 fail CKR_DEVICE_ERROR after 3\n");
	r[0] = rnd(&m1);
	r[1] = rnd(&m1);
	expect("after: m2 calls do not count", rnd(&m2), CKR_OK);
	r[2] = rnd(&m1);
	r[3] = rnd(&m1);
	r[4] = rnd(&m1);
	check("after 3: OK OK OK then CKR_DEVICE_ERROR twice",
	      r[0] == CKR_OK && r[1] == CKR_OK && r[2] == CKR_OK && r[3] == CKR_DEVICE_ERROR &&
	          r[4] == CKR_DEVICE_ERROR);

	ctl("m1 fail CKR_DEVICE_MEMORY count 2\n");
	for (int i = 0; i < 4; i++)
		r[i] = rnd(&m1);
	check("count 2: CKR_DEVICE_MEMORY twice, then OK", r[0] == CKR_DEVICE_MEMORY &&
	                                                       r[1] == CKR_DEVICE_MEMORY &&
	                                                       r[2] == CKR_OK && r[3] == CKR_OK);

	ctl("m1 fail 0x80000123 after 1 count 1\n");
	for (int i = 0; i < 3; i++)
		r[i] = rnd(&m1);
	check("after 1 count 1 with a hex code: OK, 0x80000123, OK",
	      r[0] == CKR_OK && r[1] == 0x80000123UL && r[2] == CKR_OK);

	/* Rewriting the same text (a later mtime) reloads: counters start again. */
	ctl("m1 fail CKR_DEVICE_ERROR count 1\n");
	r[0] = rnd(&m1);
	r[1] = rnd(&m1);
	nap_ms(30);
	ctl("m1 fail CKR_DEVICE_ERROR count 1\n");
	r[2] = rnd(&m1);
	check("rewriting the file resets the counters",
	      r[0] == CKR_DEVICE_ERROR && r[1] == CKR_OK && r[2] == CKR_DEVICE_ERROR);

	/* Same size, no pause: only the content differs. */
	ctl("m1 fail CKR_DEVICE_ERROR\n");
	r[0] = rnd(&m1);
	ctl("m2 fail CKR_DEVICE_ERROR\n");
	r[1] = rnd(&m1);
	r[2] = rnd(&m2);
	check("a same-size rewrite at once is seen",
	      r[0] == CKR_DEVICE_ERROR && r[1] == CKR_OK && r[2] == CKR_DEVICE_ERROR);
	ctl("");
}

static void t_fail_fn(void)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	unsigned char hash[32] = {1}, sig[128];
	CK_ULONG siglen = sizeof(sig);

	ctl("m1 fail-fn C_Sign CKR_DEVICE_ERROR\n");
	expect("fail-fn: m1 C_SignInit passes", f->C_SignInit(m1.s, &m, m1.priv), CKR_OK);
	expect("fail-fn: m1 C_Sign fails", f->C_Sign(m1.s, hash, sizeof(hash), sig, &siglen),
	       CKR_DEVICE_ERROR);
	expect("fail-fn: m1 C_GenerateRandom passes", rnd(&m1), CKR_OK);
	expect("fail-fn: m2 sign + verify", sign_verify(&m2), CKR_OK);
	/* The real operation is still active (documented limitation): finish it. */
	ctl("");
	siglen = sizeof(sig);
	expect("fail-fn: the real C_Sign then completes",
	       f->C_Sign(m1.s, hash, sizeof(hash), sig, &siglen), CKR_OK);

	ctl("m1 fail CKR_PIN_INCORRECT fn C_GenerateRandom count 1\n");
	expect("fn option: m1 C_GenerateRandom", rnd(&m1), CKR_PIN_INCORRECT);
	expect("fn option: once only", rnd(&m1), CKR_OK);
	ctl("");
}

static void t_star(void)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = COUNT(slots);
	CK_RV r[4];

	ctl("* fail CKR_GENERAL_ERROR count 3\n");
	r[0] = rnd(&m1);
	r[1] = rnd(&m2);
	r[2] = f->C_GetSlotList(CK_TRUE, slots, &n);
	r[3] = rnd(&m2);
	check("`*`: every call, no-token ones too, counted together",
	      r[0] == CKR_GENERAL_ERROR && r[1] == CKR_GENERAL_ERROR && r[2] == CKR_GENERAL_ERROR &&
	          r[3] == CKR_OK);
	ctl("");
}

static void t_bad_lines(void)
{
	char big[16384], line[400];
	size_t off = 0;

	ctl("garbage\n"
	    "m1 frobnicate\n"
	    "m1 fail CKR_NOT_A_THING\n"
	    "m1 fail CKR_OK\n"
	    "m1 fail-fn C_Initialize CKR_DEVICE_ERROR\n"
	    "m1 hang\n"
	    "m1 fail CKR_DEVICE_ERROR after\n"
	    "m1 absent now\n"
	    "# m1 fail CKR_DEVICE_ERROR\n"
	    "\n"
	    "m1 fail CKR_DEVICE_ERROR count 1 # the only good rule\n");
	expect("bad lines ignored: the good rule acts", rnd(&m1), CKR_DEVICE_ERROR);
	expect("bad lines ignored: and only it", rnd(&m1), CKR_OK);

	memset(line, 'x', sizeof(line));
	memcpy(line, "m1 fail CKR_DEVICE_ERROR #", 26);
	line[300] = '\n';
	line[301] = '\0';
	ctl(line);
	expect("a line over 255 bytes is ignored", rnd(&m1), CKR_OK);

	for (int i = 0; i < 64; i++)
		off += (size_t)snprintf(big + off, sizeof(big) - off, "m2 slow 0\n");
	snprintf(big + off, sizeof(big) - off, "m1 fail CKR_DEVICE_ERROR\n");
	ctl(big);
	expect("a 65th rule is ignored", rnd(&m1), CKR_OK);
	ctl("");
}

static void t_drop(void)
{
	expect("drop: m1 works before", rnd(&m1), CKR_OK);
	ctl("m1 drop\n");
	expect("drop: m1 session gone", rnd(&m1), CKR_SESSION_HANDLE_INVALID);
	expect("drop: m2 session kept", sign_verify(&m2), CKR_OK);
	expect("drop: once only (m1 still gone, not dropped again)", rnd(&m1),
	       CKR_SESSION_HANDLE_INVALID);
	if (token_up(&m1))
		expect("drop: a new m1 session works", sign_verify(&m1), CKR_OK);
	ctl("");
}

static void t_absent(void)
{
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE s;
	CK_SLOT_ID one;
	CK_ULONG n = 0;

	ctl("m1 absent\n");
	check("absent: m1 not in C_GetSlotList(TRUE)", listed(CK_TRUE, m1.slot) == 0);
	check("absent: m2 in C_GetSlotList(TRUE)", listed(CK_TRUE, m2.slot) == 1);
	check("absent: m1 in C_GetSlotList(FALSE)", listed(CK_FALSE, m1.slot) == 1);
	expect("absent: short buffer", f->C_GetSlotList(CK_TRUE, &one, &n), CKR_BUFFER_TOO_SMALL);
	check("absent: short buffer gives the count", n >= 1);
	expect("absent: m1 C_GetSlotInfo", f->C_GetSlotInfo(m1.slot, &si), CKR_OK);
	check("absent: m1 CKF_TOKEN_PRESENT cleared", (si.flags & CKF_TOKEN_PRESENT) == 0);
	expect("absent: m2 C_GetSlotInfo", f->C_GetSlotInfo(m2.slot, &si), CKR_OK);
	check("absent: m2 CKF_TOKEN_PRESENT set", (si.flags & CKF_TOKEN_PRESENT) != 0);
	expect("absent: m1 C_GetTokenInfo", f->C_GetTokenInfo(m1.slot, &ti), CKR_TOKEN_NOT_PRESENT);
	expect("absent: m1 C_OpenSession",
	       f->C_OpenSession(m1.slot, CKF_SERIAL_SESSION, NULL, NULL, &s),
	       CKR_TOKEN_NOT_PRESENT);
	expect("absent: m1 session call", rnd(&m1), CKR_DEVICE_REMOVED);
	expect("absent: m2 sign + verify", sign_verify(&m2), CKR_OK);
	ctl("");
	check("absent: back when the rule goes", listed(CK_TRUE, m1.slot) == 1);
	expect("absent: m1 session works again", rnd(&m1), CKR_OK);
}

struct hang_helper {
	CK_RV m2_rv;
	long long m2_ms;
};

static void *hang_helper(void *arg)
{
	struct hang_helper *h = arg;
	long long t0;

	nap_ms(80);
	t0 = now_ms();
	h->m2_rv = rnd(&m2);
	h->m2_ms = now_ms() - t0;
	nap_ms(120);
	ctl("m1 ok\n");
	return NULL;
}

static void t_hang(void)
{
	struct hang_helper h = {CKR_GENERAL_ERROR, -1};
	pthread_t tid;
	long long t0, ms;
	CK_RV rv;
	char what[128];

	ctl("m1 hang 30\n");
	if (pthread_create(&tid, NULL, hang_helper, &h) != 0) {
		check("hang: thread", 0);
		return;
	}
	t0 = now_ms();
	rv = rnd(&m1);
	ms = now_ms() - t0;
	pthread_join(tid, NULL);
	expect("hang 30: CKR_DEVICE_ERROR", rv, CKR_DEVICE_ERROR);
	snprintf(what, sizeof(what), "hang 30: ended by `ok` after %lld ms (150..10000)", ms);
	check(what, ms >= 150 && ms < 10000);
	expect("hang: m2 works during m1's hang", h.m2_rv, CKR_OK);
	snprintf(what, sizeof(what), "hang: m2 call took %lld ms (< 2000)", h.m2_ms);
	check(what, h.m2_ms >= 0 && h.m2_ms < 2000);

	ctl("m1 hang 1 count 1\n");
	t0 = now_ms();
	rv = rnd(&m1);
	ms = now_ms() - t0;
	expect("hang 1: CKR_DEVICE_ERROR", rv, CKR_DEVICE_ERROR);
	snprintf(what, sizeof(what), "hang 1: took %lld ms (>= 1000)", ms);
	check(what, ms >= 1000 && ms < 10000);
	expect("hang 1 count 1: next call passes", rnd(&m1), CKR_OK);
	ctl("");
}

static void t_slow(void)
{
	long long t0, ms;
	CK_RV rv;
	char what[128];

	ctl("m1 slow 100\n");
	t0 = now_ms();
	rv = rnd(&m1);
	ms = now_ms() - t0;
	expect("slow 100: call succeeds", rv, CKR_OK);
	snprintf(what, sizeof(what), "slow 100: took %lld ms (>= 100)", ms);
	check(what, ms >= 100);
	ctl("m1 slow 100\nm1 fail-fn C_GenerateRandom CKR_DEVICE_ERROR\n");
	t0 = now_ms();
	rv = rnd(&m1);
	ms = now_ms() - t0;
	expect("slow then fail: CKR_DEVICE_ERROR", rv, CKR_DEVICE_ERROR);
	check("slow then fail: delayed too", ms >= 100);
	ctl("");
}

static void t_log(void)
{
	write_file(log_path, "");
	ctl("m1 fail-fn C_GenerateRandom CKR_DEVICE_ERROR count 1\n");
	for (int i = 0; i < 3; i++)
		sign_verify(&m1);
	for (int i = 0; i < 2; i++)
		sign_verify(&m2);
	rnd(&m1);
	rnd(&m1);
	ctl("");
	check("log: 3 x C_Sign m1 CKR_OK", log_count("C_Sign m1 CKR_OK") == 3);
	check("log: 2 x C_Sign m2 CKR_OK", log_count("C_Sign m2 CKR_OK") == 2);
	check("log: C_GenerateRandom m1 CKR_DEVICE_ERROR once",
	      log_count("C_GenerateRandom m1 CKR_DEVICE_ERROR") == 1);
	check("log: C_GenerateRandom m1 CKR_OK once", log_count("C_GenerateRandom m1 CKR_OK") == 1);
}

static void t_null_args(void)
{
	CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(tm.dl, "C_GetFunctionList");
	CK_SLOT_ID slots[4];
	unsigned char buf[4];
	const unsigned char *p = (const unsigned char *)&f->C_Initialize;
	size_t nfn = (sizeof(*f) - offsetof(CK_FUNCTION_LIST, C_Initialize)) / sizeof(get);
	int missing = 0;

	for (size_t i = 0; i < nfn; i++) {
		void (*fp)(void);

		memcpy(&fp, p + i * sizeof(fp), sizeof(fp));
		missing += fp == NULL;
	}
	check("function list: 68 entries, none NULL", nfn == 68 && missing == 0);
	expect("C_GetFunctionList(NULL)", get(NULL), CKR_ARGUMENTS_BAD);
	ctl("m1 absent\n");
	check("NULL: C_GetSlotList(TRUE, NULL, NULL) answered",
	      f->C_GetSlotList(CK_TRUE, NULL, NULL) != CKR_OK);
	check("NULL: C_GetSlotList(TRUE, list, NULL) answered",
	      f->C_GetSlotList(CK_TRUE, slots, NULL) != CKR_OK);
	check("NULL: C_GetSlotInfo(m1, NULL) answered", f->C_GetSlotInfo(m1.slot, NULL) != CKR_OK);
	ctl("");
	check("NULL: C_GetSlotInfo(m2, NULL) answered", f->C_GetSlotInfo(m2.slot, NULL) != CKR_OK);
	check("NULL: C_GetTokenInfo(m2, NULL) answered",
	      f->C_GetTokenInfo(m2.slot, NULL) != CKR_OK);
	check("NULL: C_OpenSession(m2, .., NULL) answered",
	      f->C_OpenSession(m2.slot, CKF_SERIAL_SESSION, NULL, NULL, NULL) != CKR_OK);
	check("NULL: C_GenerateRandom(m2, NULL) answered",
	      f->C_GenerateRandom(m2.s, NULL, 16) != CKR_OK);
	check("NULL: C_SignInit(m2, NULL) answered", f->C_SignInit(m2.s, NULL, m2.priv) != CKR_OK);
	check("NULL: C_FindObjects(m2, NULL..) answered",
	      f->C_FindObjects(m2.s, NULL, 1, NULL) != CKR_OK);
	expect("NULL: unknown session handle", f->C_GenerateRandom(0x7ffffff0, buf, 4),
	       CKR_SESSION_HANDLE_INVALID);
}

struct worker {
	pthread_t tid;
	struct token *t;
	int iters;
	int calls, failed, bad;
};

/* Opens a session, draws random bytes, closes it, over and over. */
static void *work(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < w->iters; i++) {
		CK_SESSION_HANDLE s;
		unsigned char buf[8];
		CK_RV rv = f->C_OpenSession(w->t->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);

		w->calls++;
		if (rv == CKR_OK) {
			CK_RV close_rv;

			rv = f->C_GenerateRandom(s, buf, sizeof(buf));
			close_rv = f->C_CloseSession(s); /* an injected failure leaves it open */
			if (rv == CKR_OK)
				rv = close_rv;
		}
		if (rv == CKR_DEVICE_ERROR)
			w->failed++;
		else if (rv != CKR_OK)
			w->bad++;
	}
	return NULL;
}

static void t_threads(int iters)
{
	struct worker w[4];
	int started = 0, m1_failed = 0, m2_failed = 0, bad = 0;

	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){.t = i % 2 ? &m2 : &m1, .iters = iters};
		if (pthread_create(&w[i].tid, NULL, work, &w[i]) != 0)
			break;
		started++;
	}
	for (int i = 0; i < 20; i++) {
		ctl(i % 2 ? "m1 ok\n" : "m1 fail CKR_DEVICE_ERROR\n");
		nap_ms(5);
	}
	ctl("");
	for (int i = 0; i < started; i++) {
		pthread_join(w[i].tid, NULL);
		bad += w[i].bad;
		if (w[i].t == &m1)
			m1_failed += w[i].failed;
		else
			m2_failed += w[i].failed;
	}
	printf("threads: m1 saw %d injected failures\n", m1_failed);
	check("threads: 4 started", started == 4);
	check("threads: m2 never failed, no unexpected results", m2_failed == 0 && bad == 0);
}

static void t_fork(void)
{
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	int status = 0;
	pid_t pid;

	ctl("m1 fail CKR_DEVICE_ERROR\n");
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		CK_SESSION_HANDLE s;
		CK_RV rv = f->C_Initialize(&args);
		struct token c2 = {.label = "m2"};
		int ok = 1;

		if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			/* SoftHSM2 has no fork detection: start it afresh. */
			f->C_Finalize(NULL);
			rv = f->C_Initialize(&args);
		}
		ok &= expect("child: C_Initialize again", rv, CKR_OK);
		ok &= expect("child: m1 C_OpenSession fails",
		             f->C_OpenSession(m1.slot, CKF_SERIAL_SESSION, NULL, NULL, &s),
		             CKR_DEVICE_ERROR);
		ok &= token_up(&c2);
		ok &= expect("child: m2 sign + verify", sign_verify(&c2), CKR_OK);
		f->C_Finalize(NULL);
		fflush(stdout);
		_exit(ok ? 0 : 1);
	}
	check("fork: child ran", pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	                             WEXITSTATUS(status) == 0);
	expect("fork: parent m1 still failed", rnd(&m1), CKR_DEVICE_ERROR);
	expect("fork: parent m2 works", sign_verify(&m2), CKR_OK);
	ctl("");
	expect("fork: parent m1 works again", sign_verify(&m1), CKR_OK);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: shimtest SHIM_MODULE PIN DIR\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	pin = argv[2];
	snprintf(ctl_path, sizeof(ctl_path), "%s/control", argv[3]);
	snprintf(log_path, sizeof(log_path), "%s/calls.log", argv[3]);
	ctl("");
	write_file(log_path, "");
	setenv("P11SHIM_CONTROL", ctl_path, 1);
	setenv("P11SHIM_LOG", log_path, 1);
	if (!testmod_load(&tm, argv[1]))
		return 1;
	f = tm.f;
	if (!token_up(&m1) || !token_up(&m2)) {
		testmod_unload(&tm);
		return 1;
	}
	t_healthy();
	t_fail();
	t_after_count();
	t_fail_fn();
	t_star();
	t_bad_lines();
	t_drop();
	t_absent();
	t_hang();
	t_slow();
	t_log();
	t_null_args();
	t_threads(getenv("SHIMTEST_ITERS") != NULL ? atoi(getenv("SHIMTEST_ITERS")) : 100);
	t_fork();

	f->C_CloseSession(m1.s);
	f->C_CloseSession(m2.s);
	testmod_unload(&tm);
	printf("%s: %d failure(s)\n", failures ? "FAIL" : "ok", failures);
	return failures ? 1 : 0;
}
