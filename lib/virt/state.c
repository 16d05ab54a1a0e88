/*
 * The library's lifetime: C_Initialize / C_Finalize, the global table lock,
 * and fork detection (a generation counter bumped in the child, as p11-kit's
 * count_forks: the child sees CKR_CRYPTOKI_NOT_INITIALIZED until it calls
 * C_Initialize, which drops the parent's state and builds a new one).
 */
#include "virt/virt.h"
#include "virt/core.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/ossl.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/*
 * The global lock (virt.h p11p_lock()) is a futex word, p11p_g_lock.word: a pair
 * costs two atomics where a pthread mutex pair cost some 57 instructions,
 * and every session open and close takes it. Condition waits under it go
 * through g_wait (p11p_cond_wait_locked(), p11p_signal_locked()).
 * Its sequence, p11p_g_lock.seq (a seqlock over it, virt.h p11p_read_begin()),
 * is odd while a thread holds the lock and moved on by every p11p_lock() and
 * p11p_unlock() (a condition wait lets the lock go through them), so that a
 * reader that saw the same even value before and after its reads read no
 * half-made change. Written only with the global lock held.
 */
struct p11p_glock p11p_g_lock;
static pthread_mutex_t g_wait = PTHREAD_MUTEX_INITIALIZER;
/* Serializes C_Initialize and C_Finalize; taken before the global lock. */
static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_event = PTHREAD_COND_INITIALIZER;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

struct p11p_hooks p11p_hooks;
static struct p11p_state *g_state; /* guarded by the global lock */
static unsigned long g_fork_gen;   /* bumped in every child */
static unsigned long g_state_gen;  /* g_fork_gen when g_state was built */
static atomic_bool g_live;         /* g_state usable in this process (lock-free hint) */
/*
 * Entering without the global lock: p11p_g_entry is g_state while calls may enter it
 * (NULL before C_Initialize, once C_Finalize began, in a forked child), and
 * p11p_g_busy counts the calls inside, in shards (virt.h p11p_enter()): a thread takes
 * the next shard, round robin, at its first call and counts every call of its own
 * there, so that two threads calling at once do not both write one cache line on every
 * call (a single word moved between the cores twice a call: bench/README.md, swkeys).
 * A call counts itself in its shard before it reads p11p_g_entry; C_Finalize clears
 * p11p_g_entry before it reads the shards (all sequentially consistent), so for each
 * shard either C_Finalize's read sees the call's count or the call sees NULL: it never
 * misses a call that saw the state. A call leaves on its own thread, so by its own
 * shard; were it to leave on another, the sum of the shards (unsigned, wrapping) is
 * still the count of calls inside, as C_Finalize sees every count of a call that saw
 * the state. The counts are global, not the state's: a caller may have read a state
 * that C_Finalize is about to free.
 */
struct p11p_state *_Atomic p11p_g_entry;
struct p11p_busy_shard p11p_g_busy[P11P_BUSY_SHARDS];
_Thread_local unsigned p11p_t_busy __attribute__((tls_model("initial-exec")));
static atomic_uint g_busy_next;

unsigned p11p_busy_pick(void)
{
	unsigned s = atomic_fetch_add_explicit(&g_busy_next, 1, memory_order_relaxed);

	p11p_t_busy = s % P11P_BUSY_SHARDS + 1;
	return p11p_t_busy;
}

/* The calls inside: the sum of the shards, each read sequentially consistent. */
static unsigned long busy_sum(void)
{
	unsigned long sum = 0;

	for (size_t i = 0; i < P11P_BUSY_SHARDS; i++)
		sum += atomic_load(&p11p_g_busy[i].n);
	return sum;
}
/*
 * Both locks, in their order: a thread between them (p11p_cond_wait_locked())
 * would otherwise leave g_wait held for good in the child.
 */
static void atfork_prepare(void)
{
	p11p_lock();
	pthread_mutex_lock(&g_wait);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&g_wait);
	p11p_unlock();
}

static void atfork_child(void)
{
	g_fork_gen++;
	atomic_store(&g_live, false);
	atomic_store(&p11p_g_entry, NULL);
	/* The parent's calls in flight are not in this process. */
	for (size_t i = 0; i < P11P_BUSY_SHARDS; i++)
		atomic_store(&p11p_g_busy[i].n, 0);
	/* This thread, which took both locks, is the only one: no waiter to wake. */
	pthread_mutex_unlock(&g_wait);
	atomic_store(&p11p_g_lock.seq, atomic_load(&p11p_g_lock.seq) + 1);
	atomic_store(&p11p_g_lock.word, 0);
}

static void register_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/*
 * The global lock's slow paths (virt.h p11p_lock(): 0 free, 1 held, 2 held
 * with waiters; U. Drepper, "Futexes Are Tricky", mutex 3). It is never
 * held across a backend call or a wait, and mostly for well under a
 * microsecond (an operation's look-up of its key), so a waiter first spins
 * a little (LOCK_SPINS reads, a pause each) before it sleeps: two threads
 * running operations on software keys otherwise met it asleep a few times
 * per thousand operations (bench/run.sh part swkeys, "vcsw"), each a futex
 * wait and wake of some microseconds.
 */
#define LOCK_SPINS 100

static inline void spin_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

void p11p_lock_wait(unsigned v)
{
	for (int i = 0; i < LOCK_SPINS && v != 0; i++) {
		spin_pause();
		v = atomic_load_explicit(&p11p_g_lock.word, memory_order_relaxed);
		if (v == 0 && atomic_compare_exchange_strong_explicit(&p11p_g_lock.word, &v, 1,
		                                                      memory_order_acquire,
		                                                      memory_order_relaxed))
			return;
	}
	if (v != 2)
		v = atomic_exchange_explicit(&p11p_g_lock.word, 2, memory_order_acquire);
	while (v != 0) {
		syscall(SYS_futex, &p11p_g_lock.word, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
		v = atomic_exchange_explicit(&p11p_g_lock.word, 2, memory_order_acquire);
	}
}

void p11p_lock_wake(void)
{
	syscall(SYS_futex, &p11p_g_lock.word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

CK_ULONG p11p_next_handle_locked(CK_ULONG *counter, CK_ULONG base, const struct p11p_map *used)
{
	CK_ULONG h;

	/* Never 0, never reused while in use; wraps after P11P_HANDLE_SPAN handles. */
	do {
		h = base + *counter;
		*counter = *counter % P11P_HANDLE_SPAN + 1;
	} while (p11p_map_get(used, 0, h) != NULL);
	return h;
}

/*
 * Condition waits under the global lock: a waiter takes g_wait before it
 * lets the global lock go and waits on g_wait; a signaller, holding the
 * global lock, takes g_wait to signal. A signal thus finds the waiter either
 * not yet past its check of the condition (it still holds the global lock)
 * or waiting: none is lost. Lock order: the global lock, then g_wait; a
 * waiter takes the global lock again only after letting g_wait go.
 */
void p11p_signal_locked(pthread_cond_t *cond, bool all)
{
	pthread_mutex_lock(&g_wait);
	if (all)
		pthread_cond_broadcast(cond);
	else
		pthread_cond_signal(cond);
	pthread_mutex_unlock(&g_wait);
}

void p11p_broadcast_locked(void)
{
	p11p_signal_locked(&g_event, true);
}

void p11p_wait_locked(unsigned ms)
{
	p11p_cond_wait_locked(&g_event, ms);
}

void p11p_cond_wait_locked(pthread_cond_t *cond, unsigned long long ms)
{
	struct timespec ts;

	p11p_deadline(&ts, CLOCK_REALTIME, ms);
	pthread_mutex_lock(&g_wait);
	p11p_unlock();
	pthread_cond_timedwait(cond, &g_wait, &ts);
	pthread_mutex_unlock(&g_wait);
	p11p_lock();
}

struct p11p_vslot *p11p_state_slot(struct p11p_state *st, size_t i)
{
	return st != NULL && st->slots != NULL && i < st->head.n_slots ? &st->slots[i] : NULL;
}

struct p11p_backend *p11p_state_backend(struct p11p_state *st, size_t i)
{
	return st != NULL && st->backends != NULL && i < st->n_backends ? &st->backends[i] : NULL;
}

bool p11p_state_finalizing(const struct p11p_state *st)
{
	return st->finalizing;
}

unsigned long p11p_state_watch_ms(const struct p11p_state *st)
{
	return st->watch_ms;
}

bool p11p_state_probe_thread(const struct p11p_state *st)
{
	return st->probe_thread_running;
}

void p11p_state_set_probe_thread(struct p11p_state *st, bool running)
{
	st->probe_thread_running = running;
}

void p11p_probe_wake_locked(struct p11p_state *st)
{
	p11p_signal_locked(&st->probe_cond, false);
}

void p11p_probe_wait_locked(struct p11p_state *st, unsigned long long ms)
{
	p11p_cond_wait_locked(&st->probe_cond, ms);
}

bool p11p_initialized(void)
{
	return atomic_load_explicit(&g_live, memory_order_acquire);
}

static void free_object_cb(void *value, void *arg)
{
	struct p11p_object *obj = value;

	p11p_free(obj->ident);
	p11p_hook_vkey_object_free(&obj->vk);
	p11p_free(obj);
}

/*
 * Frees a state no thread uses any more. `finalize`: call the backends'
 * C_Finalize (false in a forked child, whose backends hold the parent's state).
 */
static void state_free(struct p11p_state *st, bool finalize)
{
	if (st == NULL)
		return;
	/* In a forked child the parent's probe thread does not exist: nothing to stop. */
	if (finalize) {
		p11p_hook_health_stop(st);
		pthread_cond_destroy(&st->probe_cond);
	}
	p11p_sessions_free(st);
	p11p_hook_local_state_free(st);
	p11p_hook_vkey_state_free(st);
	p11p_map_each(&st->objects, free_object_cb, NULL);
	p11p_map_clear(&st->objects);
	p11p_map_clear(&st->objects_rev);
	p11p_map_clear(&st->objects_ident);
	for (size_t i = 0; i < st->head.n_slots; i++)
		p11p_secret_free(st->slots[i].login_pin);
	p11p_hook_ha_state_free(st);
	p11p_free(st->slots);
	p11p_lock();
	p11p_health_new_epoch_locked();
	p11p_unlock();
	/*
	 * A worker may still be inside a hung vendor call (backend/offload.c): its
	 * library is neither finalized nor unloaded under it, then.
	 */
	if (finalize && !p11p_be_quiesce(2000))
		p11p_message("calls abandoned past call_timeout are still running in a vendor "
		             "library: it is left loaded");
	else
		for (size_t i = 0; i < st->n_backends; i++)
			p11p_backend_close(&st->backends[i], finalize);
	p11p_free(st->backends);
	p11p_config_free(st->head.cfg);
	p11p_free(st);
}

/* FNV-1a, for the virtual token serial: stable for a slot's configuration. */
static unsigned long long fnv1a(const char *s)
{
	unsigned long long h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static CK_RV slot_setup(struct p11p_state *st, size_t i)
{
	struct p11p_vslot *vs = &st->slots[i];
	const struct p11p_slot_cfg *cfg = &st->head.cfg->slots[i];
	struct p11p_bctx x;
	char err[256], buf[64];
	CK_RV rv;

	vs->head.id = i;
	vs->head.cfg = cfg;
	vs->login = P11P_NO_USER;
	vs->head.n_members = cfg->n_members;
	/* The config's order, until the HA room reads the operator's (order_init). */
	for (size_t j = 0; j < cfg->n_members && j < P11P_MAX_MEMBERS; j++)
		vs->order[vs->n_order++] = j;
	for (size_t j = 0; j < cfg->n_members; j++) {
		struct p11p_member *m = &vs->head.members[j];

		m->cfg = &cfg->members[j];
		m->be = &st->backends[m->cfg->backend];
		m->index = j;
		p11p_member_ctx_init(m);
		m->backoff_ms = cfg->ha.probe_interval_ms;
		atomic_init(&m->health, P11P_UP);
		p11p_member_probe_ctx(st, vs, m, &x);
		rv = p11p_member_resolve(m, &x, err, sizeof(err));
		if (rv == CKR_HOST_MEMORY)
			return rv;
		if (rv != CKR_OK) {
			/* Not there yet: said once, and probed until it appears ("up again"). */
			p11p_message("slot '%s': member '%s' (backend '%s') not found at "
			             "C_Initialize: %s; probed until it appears",
			             cfg->label, m->cfg->name, m->be->cfg->name, err);
			atomic_store(&m->health, P11P_DOWN);
			m->next_probe_ms = p11p_now_ms() + m->backoff_ms;
		}
	}

	snprintf(vs->head.label, sizeof(vs->head.label), "%s", cfg->label);
	/* Quick start by slot id or serial: the slot takes its member's label. */
	if (vs->head.label[0] == '\0' && vs->head.members[0].resolved) {
		CK_TOKEN_INFO ti;

		if (p11p_be_C_GetTokenInfo(&vs->head.members[0].ctx, vs->head.members[0].be_slot,
		                           &ti) == CKR_OK)
			p11p_unpad(vs->head.label, ti.label, sizeof(ti.label));
	}
	snprintf(vs->serial, sizeof(vs->serial), "%016llx",
	         fnv1a(cfg->label[0] ? cfg->label
	                             : p11p_selector_value(&cfg->members[0], buf, sizeof(buf))));
	/* The operator's member order (`p11proxy members`), when there is one. */
	p11p_hook_order_init(st, vs);
	return CKR_OK;
}

static CK_RV state_new(struct p11p_state **out, bool threads_allowed)
{
	struct p11p_state *st;
	char err[512];
	size_t loaded = 0;
	CK_RV rv;

	*out = NULL;
	st = p11p_calloc(1, sizeof(*st));
	if (st == NULL)
		return CKR_HOST_MEMORY;
	st->next_session = 1;
	st->next_object = 1;
	st->threads_allowed = threads_allowed; /* backend calls may have deadlines (probes) */
	pthread_cond_init(&st->probe_cond, NULL);
	err[0] = '\0';
	st->head.cfg = p11p_config_load(NULL, err, sizeof(err));
	if (st->head.cfg == NULL) {
		p11p_message("%s", err[0] ? err : "cannot load the configuration");
		p11p_free(st);
		return CKR_GENERAL_ERROR;
	}
	/* `log:`: every later message goes where the configuration says. */
	p11p_log_set_target(st->head.cfg->log, st->head.cfg->log_facility);
	st->backends = p11p_calloc(st->head.cfg->n_backends, sizeof(*st->backends));
	st->slots = p11p_calloc(st->head.cfg->n_slots, sizeof(*st->slots));
	if (st->backends == NULL || st->slots == NULL) {
		state_free(st, false);
		return CKR_HOST_MEMORY;
	}
	st->n_backends = st->head.cfg->n_backends;
	st->head.n_slots = st->head.cfg->n_slots;
	for (size_t i = 0; i < st->n_backends; i++) {
		if (p11p_backend_open(&st->backends[i], &st->head.cfg->backends[i], err,
		                      sizeof(err)) == CKR_OK)
			loaded++;
		else
			p11p_message("%s", err);
	}
	if (loaded == 0) {
		state_free(st, true);
		return CKR_GENERAL_ERROR;
	}
	/* The store first: the slots' member-order overlays live there (issue 11). */
	st->threads_allowed = threads_allowed;
	rv = p11p_hook_vkey_state_init(st);
	if (rv != CKR_OK) {
		state_free(st, true);
		return rv;
	}
	rv = p11p_hook_ha_state_init(st);
	if (rv != CKR_OK) {
		state_free(st, true);
		return rv;
	}
	for (size_t i = 0; i < st->head.n_slots; i++) {
		rv = slot_setup(st, i);
		if (rv != CKR_OK) {
			state_free(st, true);
			return rv;
		}
	}
	for (size_t i = 0; i < st->head.n_slots; i++)
		st->slots[i].reported_present = p11p_slot_present(&st->slots[i]) == CKR_OK;
	for (size_t i = 0; i < st->head.n_slots; i++) {
		unsigned long t = st->slots[i].head.cfg->ha.call_timeout_ms / 2;

		if (t > 0 && (st->watch_ms == 0 || t < st->watch_ms))
			st->watch_ms = t < 10 ? 10 : t;
	}

	rv = p11p_hook_local_state_init(st);
	if (rv != CKR_OK) {
		state_free(st, true);
		return rv;
	}
	p11p_hook_health_start(st, threads_allowed);

	*out = st;
	return CKR_OK;
}

static CK_RV check_init_args(const CK_C_INITIALIZE_ARGS *args)
{
	int fns;

	if (args == NULL)
		return CKR_OK;
	if (args->pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	fns = (args->CreateMutex != NULL) + (args->DestroyMutex != NULL) +
	      (args->LockMutex != NULL) + (args->UnlockMutex != NULL);
	if (fns != 0 && fns != 4)
		return CKR_ARGUMENTS_BAD;
	/* We lock with the OS's primitives; we cannot use only the application's. */
	if (fns == 4 && !(args->flags & CKF_OS_LOCKING_OK))
		return CKR_CANT_LOCK;
	return CKR_OK;
}

CK_RV p11p_initialize(CK_VOID_PTR init_args)
{
	struct p11p_state *stale = NULL, *st = NULL;
	CK_RV rv;

	pthread_once(&g_atfork_once, register_atfork);
	rv = check_init_args(init_args);
	if (rv != CKR_OK)
		return rv;
	p11p_log_init();

	pthread_mutex_lock(&g_init_lock);
	p11p_lock();
	if (g_state != NULL && g_state_gen == g_fork_gen) {
		p11p_unlock();
		pthread_mutex_unlock(&g_init_lock);
		return CKR_CRYPTOKI_ALREADY_INITIALIZED;
	}
	/* A parent's state in a forked child: no thread of ours uses it here. */
	stale = g_state;
	g_state = NULL;
	p11p_unlock();
	state_free(stale, false);

	rv = state_new(&st, init_args == NULL || !(((CK_C_INITIALIZE_ARGS *)init_args)->flags &
	                                           CKF_LIBRARY_CANT_CREATE_OS_THREADS));
	if (rv == CKR_OK) {
		p11p_lock();
		g_state = st;
		g_state_gen = g_fork_gen;
		atomic_store_explicit(&g_live, true, memory_order_release);
		atomic_store(&p11p_g_entry, st);
		p11p_unlock();
		p11p_debug(P11P_DBG_LIB, "initialized: %zu backends, %zu slots", st->n_backends,
		           st->head.n_slots);
	}
	pthread_mutex_unlock(&g_init_lock);
	return rv;
}

CK_RV p11p_finalize(CK_VOID_PTR reserved)
{
	struct p11p_state *st;
	struct timespec pause = {0, 1000000}; /* 1 ms */

	if (reserved != NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&g_init_lock);
	p11p_lock();
	st = g_state;
	if (st == NULL || g_state_gen != g_fork_gen) {
		p11p_unlock();
		pthread_mutex_unlock(&g_init_lock);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	/* New calls now fail; C_WaitForSlotEvent callers wake up and leave. */
	st->finalizing = true;
	atomic_store(&g_live, false);
	atomic_store(&p11p_g_entry, NULL);
	p11p_broadcast_locked();
	p11p_unlock();
	while (busy_sum() != 0)
		nanosleep(&pause, NULL);

	p11p_lock();
	g_state = NULL;
	p11p_unlock();
	state_free(st, true);
	p11p_ossl_ctx_free();
	pthread_mutex_unlock(&g_init_lock);
	p11p_debug(P11P_DBG_LIB, "finalized");
	return CKR_OK;
}
