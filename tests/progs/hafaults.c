/*
 * HA faults that applications must not see (issue 9), through libproxy.so over
 * the fault-injecting shim (tests/shim/shim.c).
 *   hafaults MODULE CONTROL LOG CASE [ARGS]
 * The config (tests/suites/64-hafaults.sh) has slots "ha" (failover: m1, m2),
 * "hang" (m1, m2 with call_timeout 300ms), "v-m1" and "v-m2" (one member each:
 * the same keys are imported on both tokens through them). With
 * HAFAULTS_DIRECT=1 the keys are imported on the tokens "m1" and "m2" of
 * MODULE itself (SoftHSM2 or the shim without the proxy): the control runs.
 * CONTROL is the shim's control file, LOG its call log. HAFAULTS_SLOW=1 (valgrind)
 * gives m2 3 times as long to come back in `hungprobe`, and holds the signs of
 * `finflight` twice as long.
 *
 * Cases
 *   restart [SIGNS]       4 threads sign on "ha" (each at least SIGNS, default
 *                         1000) while m1 three times loses all its sessions
 *                         (`drop`) and then fails for 300 ms (CKR_DEVICE_ERROR).
 *                         Each thread opens a new session every 50 signs, so
 *                         that m1 carries load again once it is back.
 *                         `restart-nofault [SIGNS]`: the same load, no fault.
 *   alternate [SECONDS]   4 threads sign on "ha" while m1 and m2 fail by turns,
 *                         300 ms each (900 ms with HAFAULTS_SLOW), never both (default 5 s).
 *                         `alternate-nofault`: the same, no fault.
 *   hungprobe HOW [finalize]
 *                         m1 is down and its probe hangs (HOW: `all`, every
 *                         call of m1 hangs; `open`, its C_OpenSession hangs;
 *                         `fail`, no hang, the control) while m2 goes down and
 *                         comes back on slot "hang": m2 must serve again within
 *                         5 s. With `finalize`, C_Finalize must then return
 *                         within 10 s (a thread ends the process at 12 s).
 *   finflight             3 threads each have a C_Sign on "v-m1" held in the
 *                         HSM (the shim's `slow`) when C_Finalize is called:
 *                         it returns only after all three, which succeed.
 *   bufsize SLOT          C_Sign (ECDSA) and C_Encrypt (AES-GCM) with a short
 *                         output buffer, a zero length, a size query.
 *   rehandle [SIGNS]      one session signs SIGNS times (default 3000) on "ha";
 *                         m1's object handles go stale (`rehandle`) 3 times.
 *   unseenrestart         m1 restarts under a held logged-in session of the
 *                         one-member slot "v-m1"; a session opened then is
 *                         logged in (finds and signs with its private key).
 *   findfault [READS]     m1 answers a find on "ha", then fails the first or
 *                         a later of READS reads of what it found (default 2):
 *                         the key is found (on m2) and signs, also once m1 is
 *                         down.
 *   badhandle SLOT        invalid handles from the application stay invalid,
 *                         before and after m1's handles go stale.
 *   shimrehandle          the shim's `rehandle` rule itself (run on the shim
 *                         directly, HAFAULTS_DIRECT=1).
 *   revive                both members of slot "slowprobe" down; the call's
 *                         revival probes m1 before it is back and m2 after
 *                         it went: the call tries another round and signs.
 *   replaylost            m1 loses a session, then the new one the proxy
 *                         replays the application's C_SignInit on: the sign
 *                         goes on on m2.
 * Prints "ok ..." / "FAIL ..."; exit 1 on failure.
 */
#include "../tests/progs/testmod.h"

#include <dirent.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#include "shimctl.h"

#define THREADS 4
/* Failures of ours, told apart from the module's codes in the counts. */
#define HF_NOT_FOUND (CKR_VENDOR_DEFINED | 0x4846UL) /* a find gave no key, or two */
#define HF_SIG_LEN   (CKR_VENDOR_DEFINED | 0x4847UL) /* a signature not 64 bytes long */

static const char *rv_str(CK_RV rv)
{
	if (rv == HF_NOT_FOUND)
		return "key not found";
	return rv == HF_SIG_LEN ? "bad signature length" : testmod_ckr(rv);
}

/* --- slots, looked up once (later C_GetTokenInfo calls could reach a hung member) --- */

static struct {
	char label[33];
	CK_SLOT_ID id;
} slots[32];
static size_t n_slots;
static int direct;

static void slots_load(void)
{
	CK_SLOT_ID ids[32];
	CK_ULONG n = 32;
	CK_TOKEN_INFO ti;

	if (f->C_GetSlotList(CK_TRUE, ids, &n) != CKR_OK) {
		expect(0, "C_GetSlotList");
		exit(1);
	}
	for (CK_ULONG i = 0; i < n && n_slots < 32; i++) {
		size_t len = 32;

		if (f->C_GetTokenInfo(ids[i], &ti) != CKR_OK)
			continue;
		while (len > 0 && ti.label[len - 1] == ' ')
			len--;
		memcpy(slots[n_slots].label, ti.label, len);
		slots[n_slots].label[len] = '\0';
		slots[n_slots++].id = ids[i];
	}
}

static CK_SLOT_ID slot_of(const char *label)
{
	for (size_t i = 0; i < n_slots; i++) {
		if (strcmp(slots[i].label, label) == 0)
			return slots[i].id;
	}
	fprintf(stderr, "no token labelled '%s'\n", label);
	exit(2);
}

/* A R/W session on the slot, logged in as user when login != 0. */
static CK_RV sess_open(const char *label, int login, CK_SESSION_HANDLE *s)
{
	CK_RV rv =
	    f->C_OpenSession(slot_of(label), CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, s);

	if (rv == CKR_OK && login) {
		rv = f->C_Login(*s, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN));
		if (rv == CKR_USER_ALREADY_LOGGED_IN)
			rv = CKR_OK;
	}
	return rv;
}

static CK_SESSION_HANDLE sess_must(const char *label, int login)
{
	CK_SESSION_HANDLE s = 0;
	CK_RV rv = sess_open(label, login, &s);

	if (rv != CKR_OK) {
		expect(0, "open a session on %s: %s", label, rv_str(rv));
		exit(1);
	}
	return s;
}

/* --- keys: the same material on both tokens --- */

static EVP_PKEY *ec_key;
static unsigned char aes_key[32];
static const unsigned char ec_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                          0xce, 0x3d, 0x03, 0x01, 0x07};

/* The one object of that class and label: 0 when none or on error (*rv says which). */
static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label,
                                 CK_RV *rvp)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                    {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h[2] = {0, 0};
	CK_ULONG n = 0;
	CK_RV rv = f->C_FindObjectsInit(s, t, 2), rv2;

	if (rv == CKR_OK) {
		rv = f->C_FindObjects(s, h, 2, &n);
		rv2 = f->C_FindObjectsFinal(s);
		if (rv == CKR_OK)
			rv = rv2;
	}
	if (rv == CKR_OK && n != 1)
		rv = HF_NOT_FOUND;
	if (rvp != NULL)
		*rvp = rv;
	return rv == CKR_OK ? h[0] : 0;
}

static void import_ec(CK_SESSION_HANDLE s)
{
	if (!shim_import_ec(f, s, ec_key, ec_params, sizeof(ec_params), "hf-ec")) {
		expect(0, "import the EC key");
		exit(1);
	}
}

static void import_aes(CK_SESSION_HANDLE s)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_BBOOL yes = CK_TRUE;
	CK_BYTE id = 0xc1;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_LABEL, "hf-aes", 6},
	    {CKA_ID, &id, 1},
	    {CKA_VALUE, aes_key, sizeof(aes_key)},
	    {CKA_ENCRYPT, &yes, sizeof(yes)},
	    {CKA_DECRYPT, &yes, sizeof(yes)},
	};
	CK_OBJECT_HANDLE h;

	if (f->C_CreateObject(s, t, 8, &h) != CKR_OK) {
		expect(0, "import the AES key");
		exit(1);
	}
}

static void setup_keys(void)
{
	const char *tokens[] = {"v-m1", "v-m2"}, *raw[] = {"m1", "m2"};

	ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	RAND_bytes(aes_key, sizeof(aes_key));
	for (int i = 0; i < 2; i++) {
		CK_SESSION_HANDLE s = sess_must(direct ? raw[i] : tokens[i], 1);

		import_ec(s);
		import_aes(s);
		f->C_CloseSession(s);
	}
}

/* --- signing --- */

/* Raw ECDSA over a fresh 32-byte hash, verified with OpenSSL against the imported key. */
static int verify_ec(const unsigned char *hash, const unsigned char *sig)
{
	unsigned char der[80], *p = der;
	ECDSA_SIG *es = ECDSA_SIG_new();
	EVP_PKEY_CTX *ctx;
	int der_len, ok;

	ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
	der_len = i2d_ECDSA_SIG(es, &p);
	ECDSA_SIG_free(es);
	ctx = EVP_PKEY_CTX_new(ec_key, NULL);
	ok = ctx != NULL && der_len > 0 && EVP_PKEY_verify_init(ctx) == 1 &&
	     EVP_PKEY_verify(ctx, der, (size_t)der_len, hash, 32) == 1;
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

static CK_RV sign_ec(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, int *verified)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	unsigned char hash[32], sig[64];
	CK_ULONG sig_len = sizeof(sig);
	CK_RV rv;

	*verified = 0;
	RAND_bytes(hash, sizeof(hash));
	rv = f->C_SignInit(s, &m, key);
	if (rv == CKR_OK)
		rv = f->C_Sign(s, hash, sizeof(hash), sig, &sig_len);
	if (rv != CKR_OK)
		return rv;
	if (sig_len != 64)
		return HF_SIG_LEN;
	*verified = verify_ec(hash, sig);
	return rv;
}

/* --- result codes counted by value --- */

struct codes {
	CK_RV rv[8];
	long n[8];
	size_t used;
	long other;
};

static void codes_add(struct codes *c, CK_RV rv, long n)
{
	size_t i;

	for (i = 0; i < c->used && c->rv[i] != rv; i++)
		;
	if (i == c->used) {
		if (c->used == 8) {
			c->other += n;
			return;
		}
		c->rv[c->used] = rv;
		c->n[c->used++] = 0;
	}
	c->n[i] += n;
}

/* "CKR_X x N, CKR_Y x M" */
static const char *codes_str(const struct codes *c)
{
	static char buf[512];
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < c->used && off < sizeof(buf); i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s x %ld", i ? ", " : "",
		                        rv_str(c->rv[i]), c->n[i]);
	if (c->other > 0 && off < sizeof(buf))
		snprintf(buf + off, sizeof(buf) - off, ", others x %ld", c->other);
	return c->used ? buf : "none";
}

/* --- sign load --- */

struct worker {
	pthread_t t;
	const char *slot;
	long min_signs;   /* go on until stop and at least this many */
	int reopen_every; /* a new session (and a new find) every N signs; 0: one session */
	long signs, errors, bad;
	struct codes codes;
	double first_error_at;
};

static int load_stop;
static double load_start;

static void worker_error(struct worker *w, CK_RV rv)
{
	if (w->errors++ == 0)
		w->first_error_at = now_s() - load_start;
	codes_add(&w->codes, rv, 1);
}

/* Opens a session and finds the key: 0 on failure (counted). */
static int worker_session(struct worker *w, CK_SESSION_HANDLE *s, CK_OBJECT_HANDLE *key)
{
	CK_RV rv = sess_open(w->slot, 0, s);

	if (rv != CKR_OK) {
		*s = 0;
		worker_error(w, rv);
		return 0;
	}
	*key = find_key(*s, CKO_PRIVATE_KEY, "hf-ec", &rv);
	if (*key == 0) {
		worker_error(w, rv);
		return 0;
	}
	return 1;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	CK_SESSION_HANDLE s = 0;
	CK_OBJECT_HANDLE key = 0;
	int have = 0;

	for (long i = 0; !__atomic_load_n(&load_stop, __ATOMIC_SEQ_CST) || w->signs < w->min_signs;
	     i++) {
		int ok;
		CK_RV rv;

		if (have && w->reopen_every > 0 && i % w->reopen_every == 0) {
			f->C_CloseSession(s);
			have = 0;
		}
		if (!have) {
			if (s != 0)
				f->C_CloseSession(s);
			have = worker_session(w, &s, &key);
			if (!have) {
				msleep(2); /* counted; do not spin */
				continue;
			}
		}
		rv = sign_ec(s, key, &ok);
		w->signs++;
		if (rv != CKR_OK)
			worker_error(w, rv);
		else if (!ok)
			w->bad++;
	}
	if (s != 0)
		f->C_CloseSession(s);
	return NULL;
}

static void load_begin(struct worker *w, const char *slot, long min_signs, int reopen_every)
{
	load_stop = 0;
	load_start = now_s();
	for (int i = 0; i < THREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].slot = slot;
		w[i].min_signs = min_signs;
		w[i].reopen_every = reopen_every;
		pthread_create(&w[i].t, NULL, worker_main, &w[i]);
	}
}

/* Joins the workers; the totals go to *sum (codes merged). */
static void load_end(struct worker *w, struct worker *sum)
{
	__atomic_store_n(&load_stop, 1, __ATOMIC_SEQ_CST);
	memset(sum, 0, sizeof(*sum));
	sum->first_error_at = -1;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(w[i].t, NULL);
		sum->signs += w[i].signs;
		sum->errors += w[i].errors;
		sum->bad += w[i].bad;
		for (size_t k = 0; k < w[i].codes.used; k++)
			codes_add(&sum->codes, w[i].codes.rv[k], w[i].codes.n[k]);
		sum->codes.other += w[i].codes.other;
		if (w[i].errors > 0 &&
		    (sum->first_error_at < 0 || w[i].first_error_at < sum->first_error_at))
			sum->first_error_at = w[i].first_error_at;
	}
}

/* "; the first after T s" when there were errors. */
static const char *first_str(const struct worker *sum)
{
	static char buf[64];

	buf[0] = '\0';
	if (sum->errors > 0)
		snprintf(buf, sizeof(buf), "; the first %.2f s into the run", sum->first_error_at);
	return buf;
}

/* Waits up to `secs` until the log has `want` lines with a and b from line `from` on. */
static int wait_log(long from, const char *a, const char *b, long want, double secs)
{
	double t = now_s();

	while (log_count(from, a, b) < want) {
		if (now_s() - t > secs)
			return 0;
		msleep(20);
	}
	return 1;
}

/*
 * 1. HSM restart under load: m1 loses every session (as when it restarts and
 * forgets them: new sessions get new object handles in SoftHSM2), then is down
 * for 300 ms and comes back; three times. The application must see nothing.
 */
static void case_restart(long min_signs, int faults)
{
	struct worker w[THREADS], sum;
	CK_SESSION_HANDLE login = sess_must("ha", 1);
	long start = log_lines(), injected, signs_m1, signs_m2;
	int drops_hit = 0, cycles = 0;

	/* New sessions every 50 signs, so that m1 carries load again once it is back. */
	load_begin(w, "ha", min_signs, 50);
	for (int cycle = 0; faults && cycle < 3; cycle++) {
		long mark = log_lines();

		/* m1 serves (again): signs there since the mark. */
		if (!wait_log(mark, "C_Sign m1 CKR_OK", NULL, 8, 20)) {
			expect(0, "cycle %d: m1 serves signs before the fault", cycle + 1);
			break;
		}
		mark = log_lines();
		control("m1 drop\n");
		msleep(300);
		/* The drop closed sessions that were in use: their next call met it. */
		drops_hit += log_count(mark, " m1 CKR_SESSION_HANDLE_INVALID", NULL) > 0;
		control("m1 fail CKR_DEVICE_ERROR\n");
		msleep(300);
		mark = log_lines();
		control("");
		/* Two good probes bring it back; then sessions opened later go to it. */
		wait_log(mark, "C_GetSessionInfo m1 CKR_OK", NULL, 2, 20);
		cycles++;
	}
	if (!faults)
		msleep(1000);
	load_end(w, &sum);
	injected = log_count(start, "m1 CKR_DEVICE_ERROR", NULL);
	signs_m1 = log_count(start, "C_Sign m1 CKR_OK", NULL);
	signs_m2 = log_count(start, "C_Sign m2 CKR_OK", NULL);
	expect(sum.errors == 0,
	       "restart: %ld sign attempts by %d threads, %d drop+down cycles of m1: %ld errors "
	       "reached the application (%s%s)",
	       sum.signs, THREADS, cycles, sum.errors, codes_str(&sum.codes), first_str(&sum));
	expect(sum.bad == 0, "restart: every signature verifies (%ld bad)", sum.bad);
	if (faults)
		expect(cycles == 3 && drops_hit == 3 && injected > 0 && signs_m1 > 0 &&
		           signs_m2 > 0,
		       "restart: harness: %d cycles, the drop hit live m1 sessions %d times, %ld "
		       "injected device errors; signs on m1: %ld, on m2: %ld",
		       cycles, drops_hit, injected, signs_m1, signs_m2);
	f->C_CloseSession(login);
}

/*
 * 2. Members failing in turn, never both at once: m1 300 ms, m2 300 ms, ...
 * One member is healthy at every moment: the application must see nothing.
 * A call may fail over ha.retries times, so the turns must outlast a
 * failover: under valgrind (HAFAULTS_SLOW) one failover's calls, four threads
 * taking turns on the CPU, take a large part of 300 ms, so a call can meet
 * two flips and run out of attempts (CI: 1 error in 224 signatures, in two of
 * five runs; not reproduced alone in 23), so there the turns are 900 ms, the
 * factor of the other bounds.
 */
static unsigned turn_ms = 300;

static void case_alternate(double secs, int faults)
{
	struct worker w[THREADS], sum;
	CK_SESSION_HANDLE login = sess_must("ha", 1);
	long start = log_lines(), inj1, inj2, signs_m1, signs_m2;
	unsigned flips = 0;
	double t0;

	load_begin(w, "ha", 0, 0);
	msleep(200); /* the workers have their sessions (on m1) */
	for (t0 = now_s(); now_s() - t0 < secs; flips++) {
		if (faults)
			control(flips % 2 ? "m2 fail CKR_DEVICE_ERROR\n"
			                  : "m1 fail CKR_DEVICE_ERROR\n");
		msleep(turn_ms);
	}
	control("");
	load_end(w, &sum);
	inj1 = log_count(start, "m1 CKR_DEVICE_ERROR", NULL);
	inj2 = log_count(start, "m2 CKR_DEVICE_ERROR", NULL);
	signs_m1 = log_count(start, "C_Sign m1 CKR_OK", NULL);
	signs_m2 = log_count(start, "C_Sign m2 CKR_OK", NULL);
	expect(sum.errors == 0,
	       "alternate: %ld sign attempts by %d threads in %.1f s, members failing by turns (%u "
	       "turns of %u ms): %ld errors reached the application (%s%s)",
	       sum.signs, THREADS, secs, faults ? flips : 0, turn_ms, sum.errors,
	       codes_str(&sum.codes), first_str(&sum));
	expect(sum.bad == 0, "alternate: every signature verifies (%ld bad)", sum.bad);
	if (faults)
		expect(flips >= 8 && inj1 > 0 && inj2 > 0 && signs_m1 > 0 && signs_m2 > 0,
		       "alternate: harness: %u turns; injected device errors on m1: %ld, on m2: "
		       "%ld; signs on m1: %ld, on m2: %ld",
		       flips, inj1, inj2, signs_m1, signs_m2);
	f->C_CloseSession(login);
}

/* --- 3. a hung probe --- */

/* C_Finalize's bound; m2's recovery bound (HAFAULTS_SLOW=1, under valgrind: 3 times). */
static double fin_bound = 10.0, fin_kill = 12.0, back_bound = 5.0;

/* Set once C_Finalize returned: the watchdog then lets the process end as slowly as it likes
 * (LeakSanitizer's scan at exit on a loaded machine). */
static int fin_returned;

static void *fin_watchdog(void *arg)
{
	double t0 = *(double *)arg;

	while (now_s() - t0 < fin_kill)
		msleep(100);
	if (__atomic_load_n(&fin_returned, __ATOMIC_SEQ_CST))
		return NULL;
	printf("FAIL hungprobe: C_Finalize has not returned after %.0f s (bound %.0f s) while "
	       "a member call hangs: process ended here\n",
	       fin_kill, fin_bound);
	fflush(stdout);
	_exit(1);
	return NULL;
}

/* A new session on the slot signs: the slot serves. */
static CK_RV serves(const char *slot)
{
	CK_SESSION_HANDLE s = 0;
	CK_OBJECT_HANDLE key;
	CK_RV rv = sess_open(slot, 0, &s);
	int ok = 0;

	if (rv == CKR_OK && (key = find_key(s, CKO_PRIVATE_KEY, "hf-ec", &rv)) != 0)
		rv = sign_ec(s, key, &ok);
	if (rv == CKR_OK && !ok)
		rv = HF_SIG_LEN;
	if (s != 0)
		f->C_CloseSession(s);
	return rv;
}

/*
 * m1 is down and its probe hangs inside the HSM (HOW: every call of m1, or
 * only its C_OpenSession; `fail`: it fails at once, the control). Meanwhile m2
 * goes down and comes back: it must be probed back up within 5 s. Then, with
 * `finalize`, C_Finalize must return within fin_bound while m1's call hangs.
 */
static int case_hungprobe(const char *how, int finalize)
{
	char hang_rule[96], both[160];
	const char *what;
	CK_SESSION_HANDLE s = sess_must("hang", 1);
	CK_OBJECT_HANDLE key = find_key(s, CKO_PRIVATE_KEY, "hf-ec", NULL);
	pthread_t wd;
	double t, took, fin_t0;
	long mark;
	int ok;
	CK_RV rv;

	if (strcmp(how, "all") == 0) {
		snprintf(hang_rule, sizeof(hang_rule), "m1 hang 60\n");
		what = "every call of m1 hangs (its probe too)";
	} else if (strcmp(how, "open") == 0) {
		snprintf(hang_rule, sizeof(hang_rule), "m1 hang 60 fn C_OpenSession\n");
		what = "m1's probe hangs in its C_OpenSession";
	} else {
		snprintf(hang_rule, sizeof(hang_rule), "m1 fail CKR_DEVICE_ERROR\n");
		what = "m1 fails at once (no hang)";
	}
	snprintf(both, sizeof(both), "%sm2 fail CKR_DEVICE_ERROR\n", hang_rule);

	expect(sign_ec(s, key, &ok) == CKR_OK && ok, "hungprobe %s: sign on m1", how);
	mark = log_lines();
	control("m1 fail CKR_DEVICE_ERROR\n");
	rv = sign_ec(s, key, &ok);
	expect(rv == CKR_OK && ok && log_count(mark, "C_Sign m2 CKR_OK", NULL) == 1,
	       "hungprobe %s: m1 fails: the session moved to m2 (%s)", how, rv_str(rv));
	/* m1's first probe is due 100 ms after it went down: it now hangs in the HSM. */
	control(hang_rule);
	msleep(600);
	control(both);
	rv = sign_ec(s, key, &ok);
	expect(rv != CKR_OK, "hungprobe %s: m2 fails too: the slot is down (%s)", how, rv_str(rv));
	/* m2 is back: its probes (due 100 ms, 200 ms, ... after) must bring it up. */
	control(hang_rule);
	t = now_s();
	while ((rv = serves("hang")) != CKR_OK && now_s() - t < back_bound)
		msleep(50);
	took = now_s() - t;
	expect(rv == CKR_OK,
	       "hungprobe %s: m2 came back and serves within %.0f s while %s "
	       "(%s after %.2f s)",
	       how, back_bound, what, rv_str(rv), took);
	f->C_CloseSession(s);
	if (!finalize)
		return 0;

	/* C_Finalize with m1's call still hung in the HSM. */
	fin_t0 = now_s();
	pthread_create(&wd, NULL, fin_watchdog, &fin_t0);
	pthread_detach(wd);
	rv = f->C_Finalize(NULL);
	__atomic_store_n(&fin_returned, 1, __ATOMIC_SEQ_CST);
	took = now_s() - fin_t0;
	expect(rv == CKR_OK && took < fin_bound,
	       "hungprobe %s: C_Finalize returned within %.0f s while %s (%s "
	       "after %.2f s)",
	       how, fin_bound, what, rv_str(rv), took);
	mod.f = NULL;
	return 1;
}

/* This process's threads named `name` (/proc/self/task/TID/comm). */
static int threads_named(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	char path[300], comm[64];
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		FILE *fp;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		fp = fopen(path, "r");
		if (fp == NULL)
			continue;
		if (fgets(comm, sizeof(comm), fp) != NULL) {
			comm[strcspn(comm, "\n")] = '\0';
			n += strcmp(comm, name) == 0;
		}
		fclose(fp);
	}
	closedir(d);
	return n;
}

/*
 * Calls on a call_timeout slot run on the module's workers ("p11proxy-call"),
 * which stay a while idle for the next call (a wrong clock on their wait once
 * ended each at once: a thread per call). After C_Finalize none of the
 * module's threads is left: an ending worker raced LeakSanitizer's exit-time
 * check, and an application that finalizes must not keep our threads.
 */
static int case_workersgone(void)
{
	CK_SESSION_HANDLE s = sess_must("hang", 1);
	CK_OBJECT_HANDLE key = find_key(s, CKO_PRIVATE_KEY, "hf-ec", NULL);
	int ok, signed_ok = 1, workers, probes;
	CK_RV rv;

	for (int i = 0; i < 20; i++)
		if (sign_ec(s, key, &ok) != CKR_OK || !ok)
			signed_ok = 0;
	expect(signed_ok, "workersgone: 20 signs on the call_timeout slot");
	msleep(200);
	workers = threads_named("p11proxy-call");
	probes = threads_named("p11proxy-probe");
	expect(workers >= 1 && probes == 1,
	       "workersgone: a worker waits for the next call, beside the probe thread "
	       "(%d workers, %d probe threads)",
	       workers, probes);
	f->C_CloseSession(s);
	rv = f->C_Finalize(NULL);
	workers = threads_named("p11proxy-call");
	probes = threads_named("p11proxy-probe");
	expect(rv == CKR_OK && workers == 0 && probes == 0,
	       "workersgone: after C_Finalize no thread of the module is left (%s; %d workers, "
	       "%d probe threads)",
	       rv_str(rv), workers, probes);
	mod.f = NULL;
	return 1;
}

/*
 * C_Finalize with application calls in flight on other threads: FF_THREADS
 * threads, whose first calls come after the main thread's (so that they count
 * their calls in other shards of the proxy's count of calls inside than the
 * main thread's, virt.h p11p_enter()), each begin a sign on "v-m1" whose C_Sign
 * the shim holds for ff_hold_ms; meanwhile the main thread calls C_Finalize. It
 * must wait for every one of those calls: each returns CKR_OK and a signature
 * that verifies, before C_Finalize returns.
 */
#define FF_THREADS 3
static unsigned ff_hold_ms = 1500;
static int ff_begun, ff_ended;

struct ff_thread {
	pthread_t tid;
	CK_RV rv;
	int verified;
};

static void *ff_main(void *arg)
{
	struct ff_thread *t = arg;
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	unsigned char hash[32], sig[64];
	CK_ULONG sig_len = sizeof(sig);
	CK_SESSION_HANDLE s = sess_must("v-m1", 0);
	CK_OBJECT_HANDLE key = find_key(s, CKO_PRIVATE_KEY, "hf-ec", NULL);

	RAND_bytes(hash, sizeof(hash));
	t->rv = f->C_SignInit(s, &m, key);
	__atomic_add_fetch(&ff_begun, 1, __ATOMIC_SEQ_CST);
	if (t->rv == CKR_OK)
		t->rv = f->C_Sign(s, hash, sizeof(hash), sig, &sig_len);
	t->verified = t->rv == CKR_OK && sig_len == 64 && verify_ec(hash, sig);
	__atomic_add_fetch(&ff_ended, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static int case_finflight(void)
{
	struct ff_thread t[FF_THREADS];
	char rule[64];
	double t0, took;
	int ended, good = 0, n = 0;
	CK_RV rv;

	/* The main thread's session logs the token in for the threads' sessions. */
	(void)sess_must("v-m1", 1);
	snprintf(rule, sizeof(rule), "m1 slow %u fn C_Sign\n", ff_hold_ms);
	control(rule);
	memset(t, 0, sizeof(t));
	for (; n < FF_THREADS; n++)
		if (pthread_create(&t[n].tid, NULL, ff_main, &t[n]) != 0)
			break;
	t0 = now_s();
	while (__atomic_load_n(&ff_begun, __ATOMIC_SEQ_CST) < n && now_s() - t0 < 30)
		msleep(10);
	/* Every thread is now inside C_Sign (or about to enter it), held by the shim. */
	msleep(ff_hold_ms / 2);
	t0 = now_s();
	rv = f->C_Finalize(NULL);
	took = now_s() - t0;
	ended = __atomic_load_n(&ff_ended, __ATOMIC_SEQ_CST);
	for (int i = 0; i < n; i++) {
		pthread_join(t[i].tid, NULL);
		good += t[i].rv == CKR_OK && t[i].verified;
	}
	expect(n == FF_THREADS && rv == CKR_OK && ended == n,
	       "finflight: C_Finalize waited for the %d signs in flight on other threads (%s "
	       "after %.2f s; %d of %d signs had returned)",
	       FF_THREADS, rv_str(rv), took, ended, n);
	expect(good == n && n == FF_THREADS,
	       "finflight: the signs in flight returned CKR_OK and verify (%d of %d; first: %s)",
	       good, n, rv_str(t[0].rv));
	control("");
	mod.f = NULL;
	return 1;
}

/* --- 4. output buffers --- */

/* A heap block of exactly n bytes (at least 1), so that memory checkers see overruns. */
static unsigned char *block(size_t n)
{
	unsigned char *p = malloc(n > 0 ? n : 1);

	if (p == NULL)
		abort();
	return p;
}

static CK_RV ec_init(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};

	return f->C_SignInit(s, &m, key);
}

static unsigned char iv12[12] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2};
static unsigned char aad[20] = "additional data.....";
static unsigned char gcm_pt[45] = "forty-five bytes of plaintext for AES-GCM....";

static CK_RV gcm_init(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
	static CK_GCM_PARAMS gp = {iv12, sizeof(iv12), 96, aad, sizeof(aad), 128};
	CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};

	return f->C_EncryptInit(s, &m, key);
}

/* OpenSSL's AES-256-GCM of gcm_pt, tag appended (61 bytes). */
static void gcm_ref(unsigned char *out)
{
	EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
	int l1 = 0, l2 = 0;

	EVP_EncryptInit_ex(cx, EVP_aes_256_gcm(), NULL, NULL, NULL);
	EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_IVLEN, sizeof(iv12), NULL);
	EVP_EncryptInit_ex(cx, NULL, NULL, aes_key, iv12);
	EVP_EncryptUpdate(cx, NULL, &l1, aad, sizeof(aad));
	EVP_EncryptUpdate(cx, out, &l1, gcm_pt, sizeof(gcm_pt));
	EVP_EncryptFinal_ex(cx, out + l1, &l2);
	EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_GET_TAG, 16, out + sizeof(gcm_pt));
	EVP_CIPHER_CTX_free(cx);
}

/*
 * One output-length case of an operation, in a session of its own (an
 * operation a wrong answer left active in the token cannot spoil the next
 * case): `op` is C_Sign of a random hash (ECDSA, 64 bytes) or C_Encrypt of
 * gcm_pt (AES-GCM, 45 + 16 bytes).
 */
enum buf_case { BUF_SHORT, BUF_ZERO, BUF_QUERY };

static const char *const buf_case_name[] = {"into a 10-byte buffer", "with *len = 0",
                                            "size query (NULL)"};

static void buf_check(const char *slot, int sign, enum buf_case bc)
{
	const char *op = sign ? "C_Sign (ECDSA)" : "C_Encrypt (AES-GCM)";
	const CK_ULONG need = sign ? 64 : 61;
	CK_SESSION_HANDLE s = sess_must(slot, 1);
	CK_OBJECT_HANDLE key =
	    find_key(s, sign ? CKO_PRIVATE_KEY : CKO_SECRET_KEY, sign ? "hf-ec" : "hf-aes", NULL);
	unsigned char hash[32], ref[61], *buf = NULL, *out;
	CK_ULONG len = bc == BUF_SHORT ? 10 : bc == BUF_ZERO ? 0 : 12345, untouched = 1;
	CK_RV rv;

	RAND_bytes(hash, sizeof(hash));
	gcm_ref(ref);
	/* A heap block of exactly the length given, so that memory checkers see overruns. */
	if (bc != BUF_QUERY) {
		buf = block(bc == BUF_SHORT ? 10 : need);
		memset(buf, 0xa5, bc == BUF_SHORT ? 10 : need);
	}
	rv = sign ? ec_init(s, key) : gcm_init(s, key);
	if (rv == CKR_OK)
		rv = sign ? f->C_Sign(s, hash, sizeof(hash), buf, &len)
		          : f->C_Encrypt(s, gcm_pt, sizeof(gcm_pt), buf, &len);
	if (bc == BUF_ZERO) {
		for (CK_ULONG i = 0; i < need; i++)
			untouched &= buf[i] == 0xa5;
	}
	if (bc == BUF_QUERY)
		expect(rv == CKR_OK && len == need, "bufsize %s: %s %s: CKR_OK, %lu (%s, %lu)",
		       slot, op, buf_case_name[bc], need, rv_str(rv), len);
	else
		expect(rv == CKR_BUFFER_TOO_SMALL && len == need,
		       "bufsize %s: %s %s: CKR_BUFFER_TOO_SMALL, %lu needed (%s, %lu%s)", slot, op,
		       buf_case_name[bc], need, rv_str(rv), len,
		       bc == BUF_ZERO && rv == CKR_OK
		           ? (untouched ? ", nothing written" : ", written")
		           : "");
	free(buf);
	if (rv != (bc == BUF_QUERY ? CKR_OK : CKR_BUFFER_TOO_SMALL)) {
		f->C_CloseSession(s);
		return;
	}
	/* The operation is still active: the call with room finishes it. */
	out = block(need);
	len = need;
	rv = sign ? f->C_Sign(s, hash, sizeof(hash), out, &len)
	          : f->C_Encrypt(s, gcm_pt, sizeof(gcm_pt), out, &len);
	expect(rv == CKR_OK && len == need &&
	           (sign ? verify_ec(hash, out) : memcmp(out, ref, need) == 0),
	       "bufsize %s: %s, then with room: %s (%s, %lu)", slot, op,
	       sign ? "a valid signature" : "OpenSSL's ciphertext and tag", rv_str(rv), len);
	free(out);
	f->C_CloseSession(s);
}

/*
 * C_Sign (ECDSA) and C_Encrypt (AES-GCM) with a short buffer
 * (CKR_BUFFER_TOO_SMALL, the length needed, nothing written past it, the
 * operation still active), a zero length with a buffer (the same), a size
 * query with NULL (CKR_OK, the length); each time then the call with room.
 */
static void case_bufsize(const char *slot)
{
	for (int sign = 1; sign >= 0; sign--) {
		for (int bc = BUF_SHORT; bc <= BUF_QUERY; bc++)
			buf_check(slot, sign, (enum buf_case)bc);
	}
}

/* --- 5. stale object handles --- */

/*
 * One long-lived session signs `n` times on "ha"; three times on the way,
 * every handle m1 has handed out goes stale (an HSM that restarted between
 * two calls). The application's handle must keep working.
 */
static void case_rehandle(long n)
{
	CK_SESSION_HANDLE s = sess_must("ha", 1);
	CK_RV rv = CKR_OK;
	CK_OBJECT_HANDLE key = find_key(s, CKO_PRIVATE_KEY, "hf-ec", &rv);
	struct codes codes = {0};
	long start = log_lines(), errors = 0, bad = 0, signs_m1, stale;
	long at[3] = {n / 6, n / 2, 5 * n / 6};
	int applied = 0;

	expect(key != 0, "rehandle: key found (%s)", rv_str(rv));
	for (long i = 0; i < n; i++) {
		int ok;

		if (applied < 3 && i == at[applied]) {
			control("m1 rehandle\n");
			applied++;
		} else if (applied > 0 && i == at[applied - 1] + 1) {
			control(""); /* the next `rehandle` is a new load */
		}
		rv = sign_ec(s, key, &ok);
		if (rv != CKR_OK) {
			errors++;
			codes_add(&codes, rv, 1);
		} else if (!ok) {
			bad++;
		}
	}
	signs_m1 = log_count(start, "C_Sign m1 CKR_OK", NULL);
	stale = log_count(start, " m1 CKR_KEY_HANDLE_INVALID", NULL) +
	        log_count(start, " m1 CKR_OBJECT_HANDLE_INVALID", NULL);
	expect(errors == 0,
	       "rehandle: %ld signs in one session, m1's handles made stale 3 times: %ld errors "
	       "reached the application (%s)",
	       n, errors, codes_str(&codes));
	expect(bad == 0, "rehandle: every signature verifies (%ld bad)", bad);
	expect(applied == 3 && stale >= 3 && signs_m1 > 0,
	       "rehandle: harness: m1 answered a stale handle %ld times (>= 3); signs on m1: %ld",
	       stale, signs_m1);
	f->C_CloseSession(s);
}

/*
 * A fresh module (C_Finalize, C_Initialize) with every token healthy: objects
 * are met for the first time, every member is up. False (reported) if not.
 */
static int module_again(const char *who)
{
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	CK_RV rv;

	control("");
	rv = f->C_Finalize(NULL);
	if (rv == CKR_OK)
		rv = f->C_Initialize(&args);
	if (rv != CKR_OK)
		expect(0, "%s: the module again: %s", who, rv_str(rv));
	return rv == CKR_OK;
}

/*
 * 6. A member that fails between a find and the reads of what it found: on a
 * fresh module (objects met for the first time: their identity and their
 * virtual key are read), m1 answers C_FindObjects, then fails its
 * C_GetAttributeValue (the first, or the second: after `after`) and its
 * C_GetTokenInfo (so the proxy sees it dead); `reads`: the number of reads a
 * find makes there (2 with virtual keys: the identity, then the key; 1
 * without). The find must go on on m2 and
 * find the key once, and the key must sign. (It was once made without an
 * identity, and hidden as a key whose record could not be read: "key not
 * found", seen in the restart case under valgrind; without virtual keys, the
 * handle found then failed once m1 was down.)
 */
static void case_findfault(int reads)
{
	for (int after = 0; after < reads; after++) {
		CK_SESSION_HANDLE s;
		CK_OBJECT_HANDLE key;
		char rules[160];
		long mark;
		CK_RV rv;
		int ok = 0;

		/* A fresh module: the key was never met through "ha" by this one. */
		if (!module_again("findfault"))
			return;
		s = sess_must("ha", 1);
		mark = log_lines();
		snprintf(rules, sizeof(rules),
		         "m1 fail CKR_DEVICE_ERROR fn C_GetAttributeValue after %d\n"
		         "m1 fail CKR_DEVICE_ERROR fn C_GetTokenInfo\n",
		         after);
		control(rules);
		key = find_key(s, CKO_PRIVATE_KEY, "hf-ec", &rv);
		expect(key != 0,
		       "findfault: m1 fails after %d attribute read(s) of a find: the key "
		       "is found once (%s)",
		       after, rv_str(rv));
		if (key != 0) {
			rv = sign_ec(s, key, &ok);
			expect(rv == CKR_OK && ok, "findfault (after %d): the key found signs (%s)",
			       after, rv_str(rv));
			/* m1 all down now: the handle found is found again on m2. */
			control("m1 fail CKR_DEVICE_ERROR\n");
			rv = sign_ec(s, key, &ok);
			expect(rv == CKR_OK && ok,
			       "findfault (after %d): with m1 down, the key found still signs (%s)",
			       after, rv_str(rv));
		}
		expect(log_count(mark, "C_FindObjects m1 CKR_OK", NULL) > 0 &&
		           log_count(mark, "C_GetAttributeValue m1 CKR_DEVICE_ERROR", NULL) > 0,
		       "findfault (after %d): harness: m1 answered the find, then failed a read",
		       after);
		control("");
		f->C_CloseSession(s);
	}
}

/*
 * 7. An HSM restart the proxy has not seen, on a one-member slot: the
 * application holds a logged-in session, m1 restarts (`drop`: every session
 * closed, the token logged out), and the application opens a new session
 * before any call has met the loss. The new session is logged in, as the
 * application's others are: its private key is found and signs.
 */
static void case_unseenrestart(void)
{
	CK_SESSION_HANDLE held = sess_must("v-m1", 1), s;
	CK_SESSION_INFO si;
	CK_OBJECT_HANDLE key;
	CK_RV rv;
	int ok = 0;

	control("m1 drop\n");
	s = sess_must("v-m1", 0); /* no C_Login: the application is logged in */
	rv = f->C_GetSessionInfo(s, &si);
	expect(rv == CKR_OK && si.state == CKS_RW_USER_FUNCTIONS,
	       "unseenrestart: the session opened after m1's restart is logged in (%s, state %lu)",
	       rv_str(rv), rv == CKR_OK ? (unsigned long)si.state : 0UL);
	key = find_key(s, CKO_PRIVATE_KEY, "hf-ec", &rv);
	expect(key != 0, "unseenrestart: its private key is found (%s)", rv_str(rv));
	if (key != 0) {
		rv = sign_ec(s, key, &ok);
		expect(rv == CKR_OK && ok, "unseenrestart: and signs (%s)", rv_str(rv));
	}
	control("");
	f->C_CloseSession(s);
	f->C_CloseSession(held);
}

/*
 * 8. A member that loses the session the proxy just opened there to replay an
 * operation: the application's C_SignInit ran on m1; m1 loses the session
 * (its C_Sign: CKR_SESSION_HANDLE_INVALID), answers its probe, takes a new
 * session and loses that one too under the replayed C_SignInit (CODE: an HSM
 * restarting again). The operation must go on on m2 and sign. (It was once
 * dropped as "not replayed": the application got
 * CKR_OPERATION_NOT_INITIALIZED, seen in the restart case under valgrind.)
 * CKR_DEVICE_ERROR is the control: that one always moved on.
 */
static void case_replaylost(void)
{
	/*
	 * How m1 fails the application's C_Sign (a lost session; or a device
	 * error, after which the proxy makes the call again on a new session
	 * there), then the replayed C_SignInit.
	 */
	static const struct {
		const char *sign, *replay;
	} v[] = {
	    {"CKR_SESSION_HANDLE_INVALID", "CKR_SESSION_HANDLE_INVALID"},
	    {"CKR_SESSION_HANDLE_INVALID", "CKR_SESSION_CLOSED"},
	    {"CKR_SESSION_HANDLE_INVALID", "CKR_DEVICE_ERROR"},
	    {"CKR_DEVICE_ERROR", "CKR_SESSION_HANDLE_INVALID"},
	    {"CKR_DEVICE_ERROR", "CKR_SESSION_CLOSED"},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		unsigned char hash[32], sig[64];
		CK_ULONG sig_len = sizeof(sig);
		CK_SESSION_HANDLE s;
		CK_OBJECT_HANDLE key;
		char rules[160], replayed[80];
		long mark;
		CK_RV rv;

		/* A fresh module: m1 up, and the session on it. */
		if (!module_again("replaylost"))
			return;
		s = sess_must("ha", 1);
		key = find_key(s, CKO_PRIVATE_KEY, "hf-ec", &rv);
		mark = log_lines();
		RAND_bytes(hash, sizeof(hash));
		rv = key != 0 ? ec_init(s, key) : rv;
		expect(rv == CKR_OK && log_count(mark, "C_SignInit m1 CKR_OK", NULL) == 1,
		       "replaylost (%s, %s): harness: C_SignInit on m1 (%s)", v[i].sign,
		       v[i].replay, rv_str(rv));
		snprintf(rules, sizeof(rules),
		         "m1 fail-fn C_Sign %s count 1\n"
		         "m1 fail-fn C_SignInit %s count 1\n",
		         v[i].sign, v[i].replay);
		control(rules);
		rv = f->C_Sign(s, hash, sizeof(hash), sig, &sig_len);
		expect(rv == CKR_OK && sig_len == 64 && verify_ec(hash, sig),
		       "replaylost: m1 fails a sign (%s), then the session the operation was "
		       "replayed on (%s): the sign goes on on m2 and verifies (%s)",
		       v[i].sign, v[i].replay, rv_str(rv));
		snprintf(replayed, sizeof(replayed), "C_SignInit m1 %s", v[i].replay);
		expect(log_count(mark, replayed, NULL) == 1 &&
		           log_count(mark, "C_Sign m2 CKR_OK", NULL) == 1,
		       "replaylost (%s, %s): harness: the replay on m1 met it, m2 signed",
		       v[i].sign, v[i].replay);
		control("");
		f->C_CloseSession(s);
	}
}

/*
 * Members failing by turns, met inside one revival (slot "slowprobe": no
 * background probe for an hour, so only the call's own revival probes).
 * m1 fails the session's C_SignInit, then m2 fails its new session: both are
 * down for the proxy. The call's revival probes m1 while it still fails, then
 * m2, whose probe (C_GetSlotInfo, as the revival finds the token) the shim
 * holds 1 s before failing it; m1 comes back meanwhile (at 0.5 s). The call must try another round
 * while it has attempts left (ha.retries, 3) and sign on m1, not give up after one.
 */
static void *revive_switch(void *arg)
{
	(void)arg;
	msleep(500);
	control("m2 slow 1000 fn C_GetSlotInfo\nm2 fail CKR_DEVICE_ERROR\n");
	return NULL;
}

static void case_revive(void)
{
	CK_SESSION_HANDLE s = sess_must("slowprobe", 1);
	CK_OBJECT_HANDLE key;
	pthread_t t;
	long mark, m1_probes, m2_probes, signs_m1;
	int ok = 0;
	CK_RV rv;

	key = find_key(s, CKO_PRIVATE_KEY, "hf-ec", &rv);
	expect(key != 0 && sign_ec(s, key, &ok) == CKR_OK && ok,
	       "revive: the key signs on slot slowprobe before the faults (%s)", rv_str(rv));
	mark = log_lines();
	control("m2 slow 1000 fn C_GetSlotInfo\nm2 fail CKR_DEVICE_ERROR\n"
	        "m1 fail CKR_DEVICE_ERROR\n");
	pthread_create(&t, NULL, revive_switch, NULL);
	ok = 0;
	rv = sign_ec(s, key, &ok);
	pthread_join(t, NULL);
	m1_probes = log_count(mark, "C_GetSlotInfo m1 CKR_DEVICE_ERROR", NULL);
	m2_probes = log_count(mark, "C_GetSlotInfo m2 CKR_DEVICE_ERROR", NULL);
	signs_m1 = log_count(mark, "C_Sign m1 CKR_OK", NULL);
	expect(rv == CKR_OK && ok,
	       "revive: both members down, m1 back during the revival's probe of m2: the call "
	       "signs (%s)",
	       rv_str(rv));
	expect(m1_probes >= 1 && m2_probes >= 1 && signs_m1 >= 1,
	       "revive: harness: m1's token failed %ld probes, m2's %ld; signs on m1: %ld",
	       m1_probes, m2_probes, signs_m1);
	control("");
	f->C_CloseSession(s);
}

/* CKR_KEY_HANDLE_INVALID, or CKR_OBJECT_HANDLE_INVALID (SoftHSM2's answer), for a key. */
static int key_invalid(CK_RV rv)
{
	return rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID;
}

static void bad_handles(CK_SESSION_HANDLE s, const char *slot, const char *when)
{
	CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0}, kg = {CKM_AES_KEY_GEN, NULL, 0};
	CK_OBJECT_HANDLE bogus[] = {0x7ead1234UL, 0x5a5a5a5aUL, (CK_OBJECT_HANDLE)-2};
	CK_ULONG vlen = 32;
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE gt[] = {{CKA_VALUE_LEN, &vlen, sizeof(vlen)}, {CKA_TOKEN, &no, sizeof(no)}};
	CK_OBJECT_HANDLE gone = 0;
	unsigned char buf[64];
	CK_ATTRIBUTE get = {CKA_LABEL, buf, sizeof(buf)};
	CK_RV rv;

	for (size_t i = 0; i < sizeof(bogus) / sizeof(bogus[0]); i++) {
		rv = f->C_SignInit(s, &ecdsa, bogus[i]);
		expect(key_invalid(rv), "badhandle %s, %s: C_SignInit, key 0x%lx: %s", slot, when,
		       bogus[i], rv_str(rv));
		get.ulValueLen = sizeof(buf);
		rv = f->C_GetAttributeValue(s, bogus[i], &get, 1);
		expect(rv == CKR_OBJECT_HANDLE_INVALID,
		       "badhandle %s, %s: C_GetAttributeValue, object 0x%lx: %s", slot, when,
		       bogus[i], rv_str(rv));
	}
	/* A handle that was valid: a session key, destroyed. */
	rv = f->C_GenerateKey(s, &kg, gt, 2, &gone);
	if (rv == CKR_OK)
		rv = f->C_DestroyObject(s, gone);
	expect(rv == CKR_OK, "badhandle %s, %s: a session key made and destroyed (%s)", slot, when,
	       rv_str(rv));
	{
		unsigned char iv[16] = {0};
		CK_MECHANISM cbc = {CKM_AES_CBC_PAD, iv, sizeof(iv)};

		rv = f->C_EncryptInit(s, &cbc, gone);
		expect(key_invalid(rv), "badhandle %s, %s: C_EncryptInit, destroyed key: %s", slot,
		       when, rv_str(rv));
	}
	get.ulValueLen = sizeof(buf);
	rv = f->C_GetAttributeValue(s, gone, &get, 1);
	expect(rv == CKR_OBJECT_HANDLE_INVALID,
	       "badhandle %s, %s: C_GetAttributeValue, destroyed key: %s", slot, when, rv_str(rv));
}

/* Invalid handles from the application stay invalid (before and after m1's go stale). */
static void case_badhandle(const char *slot)
{
	CK_SESSION_HANDLE s = sess_must(slot, 1);

	bad_handles(s, slot, "healthy");
	control("m1 rehandle\n");
	bad_handles(s, slot, "after m1's handles went stale");
	control("");
	f->C_CloseSession(s);
}

/* The shim's `rehandle` rule, on the shim directly (HAFAULTS_DIRECT=1). */
static void case_shimrehandle(void)
{
	CK_SESSION_HANDLE s1 = sess_must("m1", 1), s2 = sess_must("m2", 1);
	CK_OBJECT_HANDLE h0 = find_key(s1, CKO_PRIVATE_KEY, "hf-ec", NULL), h1, h2, k2;
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	unsigned char buf[64];
	CK_ATTRIBUTE get = {CKA_LABEL, buf, sizeof(buf)};
	CK_RV rv;
	int ok;

	k2 = find_key(s2, CKO_PRIVATE_KEY, "hf-ec", NULL);
	expect(h0 != 0 && sign_ec(s1, h0, &ok) == CKR_OK && ok, "shim: sign on m1");
	control("m1 rehandle\n");
	rv = f->C_SignInit(s1, &m, h0);
	expect(rv == CKR_KEY_HANDLE_INVALID, "shim: after m1 rehandle, the old key: %s",
	       rv_str(rv));
	get.ulValueLen = sizeof(buf);
	rv = f->C_GetAttributeValue(s1, h0, &get, 1);
	expect(rv == CKR_OBJECT_HANDLE_INVALID, "shim: the old handle in C_GetAttributeValue: %s",
	       rv_str(rv));
	h1 = find_key(s1, CKO_PRIVATE_KEY, "hf-ec", NULL);
	expect(h1 != 0 && h1 != h0 && sign_ec(s1, h1, &ok) == CKR_OK && ok,
	       "shim: found again: a new value (0x%lx, was 0x%lx) that signs", h1, h0);
	get.ulValueLen = sizeof(buf);
	expect(f->C_GetAttributeValue(s1, h1, &get, 1) == CKR_OK && get.ulValueLen == 5 &&
	           memcmp(buf, "hf-ec", 5) == 0,
	       "shim: the new value reads the object");
	expect(sign_ec(s2, k2, &ok) == CKR_OK && ok, "shim: m2's handles are untouched");
	control("");
	expect(sign_ec(s1, h1, &ok) == CKR_OK && ok, "shim: a reload without rehandle keeps them");
	control("m1 rehandle\n");
	expect(key_invalid(f->C_SignInit(s1, &m, h1)), "shim: a second rehandle: stale again");
	h2 = find_key(s1, CKO_PRIVATE_KEY, "hf-ec", NULL);
	expect(h2 != 0 && h2 != h1 && h2 != h0 && sign_ec(s1, h2, &ok) == CKR_OK && ok,
	       "shim: found again: 0x%lx", h2);
	control("");
	f->C_CloseSession(s2);
	f->C_CloseSession(s1);
}

int main(int argc, char **argv)
{
	const char *c, *e = getenv("HAFAULTS_DIRECT");
	const char *arg = argc > 5 ? argv[5] : NULL;
	int finalized = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 5) {
		fprintf(stderr, "usage: hafaults MODULE CONTROL LOG CASE [ARGS]\n");
		return 2;
	}
	direct = e != NULL && strcmp(e, "1") == 0;
	e = getenv("HAFAULTS_SLOW");
	if (e != NULL && strcmp(e, "1") == 0) {
		back_bound *= 3;
		ff_hold_ms *= 2;
		turn_ms *= 3;
	}
	control_path = argv[2];
	log_path = argv[3];
	c = argv[4];
	control("");
	if (!testmod_load(&mod, argv[1]))
		return 1;
	f = mod.f;
	slots_load();
	setup_keys();
	if (strcmp(c, "restart") == 0 || strcmp(c, "restart-nofault") == 0)
		case_restart(arg ? atol(arg) : 1000, strcmp(c, "restart") == 0);
	else if (strcmp(c, "alternate") == 0 || strcmp(c, "alternate-nofault") == 0)
		case_alternate(arg ? atof(arg) : 5.0, strcmp(c, "alternate") == 0);
	else if (strcmp(c, "hungprobe") == 0)
		finalized =
		    case_hungprobe(arg ? arg : "all", argc > 6 && strcmp(argv[6], "finalize") == 0);
	else if (strcmp(c, "bufsize") == 0)
		case_bufsize(arg ? arg : "hang");
	else if (strcmp(c, "workersgone") == 0)
		finalized = case_workersgone();
	else if (strcmp(c, "finflight") == 0)
		finalized = case_finflight();
	else if (strcmp(c, "rehandle") == 0)
		case_rehandle(arg ? atol(arg) : 3000);
	else if (strcmp(c, "unseenrestart") == 0)
		case_unseenrestart();
	else if (strcmp(c, "findfault") == 0)
		case_findfault(arg ? atoi(arg) : 2);
	else if (strcmp(c, "badhandle") == 0)
		case_badhandle(arg ? arg : "ha");
	else if (strcmp(c, "shimrehandle") == 0)
		case_shimrehandle();
	else if (strcmp(c, "revive") == 0)
		case_revive();
	else if (strcmp(c, "replaylost") == 0)
		case_replaylost();
	else {
		fprintf(stderr, "unknown case %s\n", c);
		return 2;
	}
	control("");
	if (!finalized)
		testmod_unload(&mod);
	EVP_PKEY_free(ec_key);
	return checks_verdict();
}
