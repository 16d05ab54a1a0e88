/*
 * sessstress MODULE TOKEN_LABEL PIN NTHREADS SECONDS [ENTRIES]
 *
 * Sessions opened, used and closed by many threads at once, their handles
 * shared between the threads (PKCS#11 lets threads share a session; the
 * proxy must keep each call whole and never answer for another session).
 * A shared array of ENTRIES entries (48, or fewer from the command line:
 * with 2, every thread crowds onto two sessions, so calls queue on each
 * session's lock and sleep on it while closes come and go) holds open
 * sessions' handles and whether each is R/W. For SECONDS, each thread at random:
 *   - opens a session (R/O or R/W) into an entry, closing the one it takes
 *     out (CKR_OK: whoever takes a handle out of an entry closes it, once);
 *   - takes an entry's session out and closes it (CKR_OK);
 *   - calls C_GetSessionInfo and C_GetAttributeValue (CKA_CLASS of a token
 *     data object) on an entry's session, which must answer CKR_OK with that
 *     session's slot and R/W flag and the object's class, or
 *     CKR_SESSION_HANDLE_INVALID / CKR_SESSION_CLOSED (closed meanwhile);
 *   - calls C_GetSessionInfo on a session it closed earlier, which must
 *     answer CKR_SESSION_HANDLE_INVALID;
 *   - now and then, opens BURST sessions, uses each once and closes them
 *     (the proxy's session table grows and shrinks under the others).
 * Any other answer is a failure. The checks rely on handles not being
 * reused soon after a close, which the proxy guarantees (SoftHSM2 reuses
 * them at once: no direct baseline). Exits 0 when every answer was right.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "testmod.h"

#define ENTRIES 48
#define BURST   150
#define RW_BIT  (1ULL << 63)

static CK_FUNCTION_LIST *f;
static CK_SLOT_ID slot;
static CK_OBJECT_HANDLE obj;
static _Atomic uint64_t entries[ENTRIES];
static atomic_int stop;
static int n_entries = ENTRIES; /* the entries in use */

#define CLOSED 64 /* handles a thread remembers having closed */

struct worker {
	pthread_t tid;
	unsigned seed;
	unsigned long opens, closes, uses, stale, bursts, failures;
	CK_SESSION_HANDLE closed[CLOSED];
	unsigned n_closed;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void failure(struct worker *w, const char *what, CK_RV rv)
{
	if (w->failures++ < 5)
		fprintf(stderr, "FAIL %s: %s\n", what, testmod_ckr(rv));
}

static int open_one(struct worker *w, int rw, CK_SESSION_HANDLE *out)
{
	CK_FLAGS fl = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
	CK_RV rv = f->C_OpenSession(slot, fl, NULL, NULL, out);

	if (rv != CKR_OK) {
		failure(w, "C_OpenSession", rv);
		return 0;
	}
	w->opens++;
	return 1;
}

static void close_one(struct worker *w, CK_SESSION_HANDLE h)
{
	CK_RV rv = f->C_CloseSession(h);

	if (rv != CKR_OK)
		failure(w, "C_CloseSession of a session only this thread holds", rv);
	w->closes++;
	w->closed[w->n_closed++ % CLOSED] = h;
}

/* Uses session h (R/W when rw); `mine`: no other thread can close it. */
static void use_one(struct worker *w, CK_SESSION_HANDLE h, int rw, int mine)
{
	CK_SESSION_INFO si;
	CK_OBJECT_CLASS cls = 0;
	CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
	CK_RV rv = f->C_GetSessionInfo(h, &si);

	if (rv == CKR_OK) {
		if (si.slotID != slot || !(si.flags & CKF_SERIAL_SESSION) ||
		    !!(si.flags & CKF_RW_SESSION) != rw)
			failure(w, "C_GetSessionInfo answered for another session", rv);
		rv = f->C_GetAttributeValue(h, obj, &a, 1);
		if (rv == CKR_OK && (cls != CKO_DATA || a.ulValueLen != sizeof(cls)))
			failure(w, "C_GetAttributeValue answered another object", rv);
	}
	if (rv == CKR_OK) {
		w->uses++;
	} else if (!mine && (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED)) {
		w->stale++;
	} else {
		failure(w, "C_GetSessionInfo / C_GetAttributeValue", rv);
	}
}

static void burst(struct worker *w)
{
	static CK_SESSION_HANDLE hs[BURST];
	static pthread_mutex_t one = PTHREAD_MUTEX_INITIALIZER;
	size_t n = 0;

	/* One burst at a time: the table grows past what the entries need, then shrinks. */
	if (pthread_mutex_trylock(&one) != 0)
		return;
	while (n < BURST && open_one(w, (int)(n & 1), &hs[n]))
		n++;
	for (size_t i = 0; i < n; i++)
		use_one(w, hs[i], (int)(i & 1), 1);
	for (size_t i = 0; i < n; i++)
		close_one(w, hs[i]);
	w->bursts++;
	pthread_mutex_unlock(&one);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	while (!atomic_load(&stop)) {
		unsigned r = (unsigned)rand_r(&w->seed);
		size_t i = r % (unsigned)n_entries;
		unsigned what = (r / (unsigned)n_entries) % 100;
		uint64_t v;

		if (what < 20) {
			CK_SESSION_HANDLE h;
			int rw = (int)(r >> 20) & 1;

			if (!open_one(w, rw, &h))
				continue;
			v = atomic_exchange(&entries[i], (uint64_t)h | (rw ? RW_BIT : 0));
			if (v != 0)
				close_one(w, (CK_SESSION_HANDLE)(v & ~RW_BIT));
		} else if (what < 30) {
			v = atomic_exchange(&entries[i], 0);
			if (v != 0)
				close_one(w, (CK_SESSION_HANDLE)(v & ~RW_BIT));
		} else if (what < 40) {
			unsigned known = w->n_closed < CLOSED ? w->n_closed : CLOSED;
			CK_SESSION_INFO si;
			CK_RV rv;

			if (known == 0)
				continue;
			rv = f->C_GetSessionInfo(w->closed[r % known], &si);
			if (rv != CKR_SESSION_HANDLE_INVALID)
				failure(w, "C_GetSessionInfo on a closed session", rv);
		} else if (what < 99) {
			v = atomic_load(&entries[i]);
			if (v != 0)
				use_one(w, (CK_SESSION_HANDLE)(v & ~RW_BIT), (v & RW_BIT) != 0, 0);
		} else {
			burst(w);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct testmod m;
	CK_SESSION_HANDLE login;
	CK_OBJECT_CLASS data = CKO_DATA;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	char label[64];
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &data, sizeof(data)},
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_PRIVATE, &no, sizeof(no)},
	    {CKA_LABEL, label, 0},
	};
	struct worker *w;
	unsigned long tot[6] = {0};
	int n, secs;
	double t0;
	CK_RV rv;

	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: %s MODULE TOKEN_LABEL PIN NTHREADS SECONDS [ENTRIES]\n",
		        argv[0]);
		return 2;
	}
	n = atoi(argv[4]);
	secs = atoi(argv[5]);
	if (argc == 7)
		n_entries = atoi(argv[6]);
	if (n < 1 || n > 64 || secs < 1 || n_entries < 1 || n_entries > ENTRIES)
		return 2;
	if (!testmod_load(&m, argv[1]) || !testmod_session(&m, argv[2], argv[3], &login))
		return 1;
	f = m.f;
	if (!testmod_find_token(&m, argv[2], &slot))
		return 1;
	snprintf(label, sizeof(label), "sessstress-%ld", (long)getpid());
	t[3].ulValueLen = strlen(label);
	rv = f->C_CreateObject(login, t, 4, &obj);
	if (rv != CKR_OK) {
		fprintf(stderr, "C_CreateObject: %s\n", testmod_ckr(rv));
		return 1;
	}
	w = calloc((size_t)n, sizeof(*w));
	if (w == NULL)
		return 1;
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		w[i].seed = (unsigned)(i * 7919 + 17);
		pthread_create(&w[i].tid, NULL, worker_main, &w[i]);
	}
	while (now_s() - t0 < secs) {
		struct timespec d = {0, 50000000};

		nanosleep(&d, NULL);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < n; i++) {
		pthread_join(w[i].tid, NULL);
		tot[0] += w[i].opens;
		tot[1] += w[i].closes;
		tot[2] += w[i].uses;
		tot[3] += w[i].stale;
		tot[4] += w[i].bursts;
		tot[5] += w[i].failures;
	}
	for (int i = 0; i < ENTRIES; i++) {
		uint64_t v = atomic_exchange(&entries[i], 0);

		if (v != 0 && f->C_CloseSession((CK_SESSION_HANDLE)(v & ~RW_BIT)) != CKR_OK)
			tot[5]++;
	}
	rv = f->C_DestroyObject(login, obj);
	if (rv != CKR_OK)
		fprintf(stderr, "C_DestroyObject: %s\n", testmod_ckr(rv));
	f->C_CloseSession(login);
	printf("%d threads, %d s: %lu opens, %lu closes, %lu uses, %lu on sessions closed "
	       "meanwhile, %lu bursts of %d, %lu failures\n",
	       n, secs, tot[0], tot[1], tot[2], tot[3], tot[4], BURST, tot[5]);
	testmod_unload(&m);
	free(w);
	return tot[5] == 0 && tot[2] > 0 ? 0 : 1;
}
