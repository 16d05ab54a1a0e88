/*
 * Calls that can be abandoned (slots with ha.call_timeout and more than one
 * member). A forwarded backend call runs on a worker thread over the proxy's
 * own copies of its buffers while the application's thread waits for it, up
 * to call_timeout. Past that the member is marked down and the call answers
 * CKR_DEVICE_ERROR to the forwarder, which fails over and repeats the call on
 * another member (p11p_call_retry), so the application gets its answer from
 * there. The worker stays inside the hung vendor call; when the call
 * returns at last, the worker frees the job: nothing it writes reaches the
 * application, whose buffers may be gone by then.
 *
 * Which copy a call needs follows from the vendor function's type
 * (P11P_OFFLOAD in virt.h picks the function below with _Generic): every
 * generated forwarder has one of these shapes. A mechanism whose parameter
 * the proxy cannot copy (op.c decides) runs inline, as do calls when no
 * worker can be had: they are timed by the watchdog only.
 *
 * Workers are detached threads shared by the process, started on demand (at
 * most P11P_OFFLOAD_MAX_WORKERS) and ended after a while idle. They use
 * nothing of the module's state: a job holds the vendor function pointer,
 * copies of the arguments, and (when abandoned) which member to release
 * through an epoch check under the global lock.
 */
#include "virt/virt.h"
#include "base/log.h"
#include "base/mem.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define P11P_OFFLOAD_MAX_WORKERS 64
#define P11P_OFFLOAD_IDLE_MS     5000
#define P11P_OFFLOAD_MAX_BUF     (64UL * 1024 * 1024) /* larger buffers run inline */

enum shape { S_IO, S_OUT, S_IN, S_IN2, S_INIT, S_MECH, S_SESSION, S_KEY, S_SIZE };

struct job {
	struct job *next;
	enum shape shape;
	void (*fn)(void); /* the vendor function, of the type its shape says */
	CK_SESSION_HANDLE bs;
	CK_BYTE *in, *in2, *out;
	CK_ULONG in_len, in2_len, out_len;
	bool out_null; /* a size query: the backend gets NULL */
	CK_MECHANISM mech;
	void *param_mem;
	CK_OBJECT_HANDLE obj;
	CK_RV rv;
	pthread_cond_t done_cond;
	bool done, abandoned;
	/* When abandoned: the member whose hung_calls it holds, valid while `epoch` is. */
	struct p11p_member *member;
	unsigned long epoch;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t pool_quiet = PTHREAD_COND_INITIALIZER;
static struct job *queue_head, *queue_tail;
static unsigned n_threads, n_idle, n_queued, in_flight;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static unsigned long g_epoch = 1; /* guarded by the global lock */

typedef CK_RV (*fn_io)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
typedef CK_RV (*fn_out)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR);
typedef CK_RV (*fn_in)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG);
typedef CK_RV (*fn_in2)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG);
typedef CK_RV (*fn_init)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
typedef CK_RV (*fn_mech)(CK_SESSION_HANDLE, CK_MECHANISM_PTR);
typedef CK_RV (*fn_session)(CK_SESSION_HANDLE);
typedef CK_RV (*fn_key)(CK_SESSION_HANDLE, CK_OBJECT_HANDLE);
typedef CK_RV (*fn_size)(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ULONG_PTR);

static void pool_atfork_prepare(void)
{
	pthread_mutex_lock(&pool_lock);
}

static void pool_atfork_parent(void)
{
	pthread_mutex_unlock(&pool_lock);
}

/* The child has none of the parent's workers; their jobs are the parent's to free. */
static void pool_atfork_child(void)
{
	pthread_mutex_init(&pool_lock, NULL);
	pthread_cond_init(&pool_work, NULL);
	pthread_cond_init(&pool_quiet, NULL);
	queue_head = queue_tail = NULL;
	n_threads = n_idle = n_queued = in_flight = 0;
}

static void pool_setup(void)
{
	pthread_atfork(pool_atfork_prepare, pool_atfork_parent, pool_atfork_child);
}

static void deadline_in(struct timespec *ts, unsigned long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void job_free(struct job *j)
{
	if (j == NULL)
		return;
	/* Inputs may be PINs (C_InitPIN) or plaintext: wiped. */
	if (j->in != NULL)
		p11p_wipe(j->in, j->in_len);
	if (j->in2 != NULL)
		p11p_wipe(j->in2, j->in2_len);
	if (j->out != NULL)
		p11p_wipe(j->out, j->out_len);
	p11p_free(j->in);
	p11p_free(j->in2);
	p11p_free(j->out);
	p11p_mech_free(&j->mech, j->param_mem);
	pthread_cond_destroy(&j->done_cond);
	p11p_free(j);
}

static void job_run(struct job *j)
{
	CK_BYTE *out = j->out_null ? NULL : j->out;

	switch (j->shape) {
	case S_IO:
		j->rv = ((fn_io)j->fn)(j->bs, j->in, j->in_len, out, &j->out_len);
		break;
	case S_OUT:
		j->rv = ((fn_out)j->fn)(j->bs, out, &j->out_len);
		break;
	case S_IN:
		j->rv = ((fn_in)j->fn)(j->bs, j->in, j->in_len);
		break;
	case S_IN2:
		j->rv = ((fn_in2)j->fn)(j->bs, j->in, j->in_len, j->in2, j->in2_len);
		break;
	case S_INIT:
		j->rv = ((fn_init)j->fn)(j->bs, &j->mech, j->obj);
		break;
	case S_MECH:
		j->rv = ((fn_mech)j->fn)(j->bs, &j->mech);
		break;
	case S_SESSION:
		j->rv = ((fn_session)j->fn)(j->bs);
		break;
	case S_KEY:
		j->rv = ((fn_key)j->fn)(j->bs, j->obj);
		break;
	case S_SIZE:
		j->rv = ((fn_size)j->fn)(j->bs, j->obj, &j->out_len);
		break;
	}
}

/* An abandoned job is over: the member it held may be taken back when probes say so. */
static void job_release_member(struct job *j)
{
	p11p_lock();
	if (j->epoch == g_epoch && j->member->hung_calls > 0)
		j->member->hung_calls--;
	p11p_unlock();
}

static void *worker_main(void *arg)
{
	struct job *j;
	struct timespec ts;

	(void)arg;
	pthread_mutex_lock(&pool_lock);
	for (;;) {
		if (queue_head == NULL) {
			n_idle++;
			deadline_in(&ts, P11P_OFFLOAD_IDLE_MS);
			while (queue_head == NULL &&
			       pthread_cond_timedwait(&pool_work, &pool_lock, &ts) != ETIMEDOUT)
				;
			n_idle--;
			if (queue_head == NULL)
				break; /* idle long enough */
		}
		j = queue_head;
		queue_head = j->next;
		if (queue_head == NULL)
			queue_tail = NULL;
		n_queued--;
		pthread_mutex_unlock(&pool_lock);

		job_run(j);

		pthread_mutex_lock(&pool_lock);
		j->done = true;
		if (j->abandoned) {
			pthread_mutex_unlock(&pool_lock);
			job_release_member(j);
			job_free(j);
			pthread_mutex_lock(&pool_lock);
		} else {
			/* The waiting thread owns j from here on. */
			pthread_cond_signal(&j->done_cond);
		}
		if (--in_flight == 0)
			pthread_cond_broadcast(&pool_quiet);
	}
	n_threads--;
	pthread_mutex_unlock(&pool_lock);
	return NULL;
}

/* Hands j to a worker: false when none can be had (the caller runs the call inline). */
static bool submit(struct job *j)
{
	pthread_attr_t attr;
	pthread_t t;
	bool ok = true;

	pthread_once(&pool_once, pool_setup);
	pthread_mutex_lock(&pool_lock);
	if (n_idle <= n_queued) {
		if (n_threads >= P11P_OFFLOAD_MAX_WORKERS || pthread_attr_init(&attr) != 0) {
			ok = false;
		} else {
			pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
			ok = pthread_create(&t, &attr, worker_main, NULL) == 0;
			pthread_attr_destroy(&attr);
			if (ok)
				n_threads++;
		}
	}
	if (ok) {
		j->next = NULL;
		if (queue_tail != NULL)
			queue_tail->next = j;
		else
			queue_head = j;
		queue_tail = j;
		n_queued++;
		in_flight++;
		pthread_cond_signal(&pool_work);
	}
	pthread_mutex_unlock(&pool_lock);
	return ok;
}

/*
 * Waits for j up to the slot's call_timeout: its result (j is then the
 * caller's to read and free), or P11P_ABANDONED with the member marked down
 * (j belongs to its worker from then on).
 */
#define P11P_ABANDONED ((CK_RV)-1)
static CK_RV wait_job(struct p11p_call *c, struct job *j)
{
	struct p11p_vslot *vs = c->s->slot;
	unsigned long timeout = vs->cfg->ha.call_timeout_ms;
	struct timespec ts;

	deadline_in(&ts, timeout);
	pthread_mutex_lock(&pool_lock);
	while (!j->done)
		if (pthread_cond_timedwait(&j->done_cond, &pool_lock, &ts) == ETIMEDOUT && !j->done)
			break;
	if (j->done) {
		pthread_mutex_unlock(&pool_lock);
		return j->rv;
	}
	j->abandoned = true;
	pthread_mutex_unlock(&pool_lock);

	/* Not taken back while the call lasts (health.c), as for the watchdog's. */
	p11p_lock();
	j->member = c->m;
	j->epoch = g_epoch;
	c->m->hung_calls++;
	if (atomic_load(&c->m->health) != P11P_DOWN) {
		p11p_message("slot '%s': a call on member %zu ran past call_timeout (%lu ms): "
		             "abandoned, answered by another member",
		             vs->label, c->m->index, timeout);
		p11p_member_down_locked(c->st, vs, c->m, CKR_DEVICE_ERROR);
	}
	p11p_unlock();
	/* The call starts again on another member: so does the watchdog's clock. */
	if (atomic_load(&c->s->call_started_ms) != 0)
		atomic_store(&c->s->call_started_ms, p11p_now_ms());
	/*
	 * The member may finish the call later: the session there is not used
	 * again (the forwarder moves to another member).
	 */
	return P11P_ABANDONED;
}

static struct job *job_new(enum shape shape, void (*fn)(void), CK_SESSION_HANDLE bs)
{
	struct job *j = p11p_calloc(1, sizeof(*j));
	pthread_condattr_t ca;

	if (j == NULL)
		return NULL;
	if (pthread_condattr_init(&ca) != 0) {
		p11p_free(j);
		return NULL;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_cond_init(&j->done_cond, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		p11p_free(j);
		return NULL;
	}
	pthread_condattr_destroy(&ca);
	j->shape = shape;
	j->fn = fn;
	j->bs = bs;
	return j;
}

static bool copy_in(CK_BYTE **dst, const CK_BYTE *src, CK_ULONG len)
{
	if (src == NULL || len == 0)
		return true; /* NULL stays NULL: the backend answers as it would */
	if (len > P11P_OFFLOAD_MAX_BUF || (*dst = p11p_malloc(len)) == NULL)
		return false;
	memcpy(*dst, src, len);
	return true;
}

/* An output buffer of *len bytes (out NULL: a size query). */
static bool prepare_out(struct job *j, const CK_BYTE *out, const CK_ULONG *len)
{
	if (len == NULL)
		return false; /* the backend's CKR_ARGUMENTS_BAD, answered inline */
	j->out_len = *len;
	j->out_null = out == NULL;
	if (out == NULL || *len == 0)
		return true;
	if (*len > P11P_OFFLOAD_MAX_BUF)
		return false;
	j->out = p11p_malloc(*len);
	return j->out != NULL;
}

/*
 * Runs j on a worker. false when j could not be handed over (j is freed;
 * the caller runs the call inline). true: *rv is the call's result, or
 * P11P_ABANDONED (j is its worker's now); otherwise the caller reads j's
 * outputs and frees it (finish()).
 */
static bool offload(struct p11p_call *c, struct job *j, CK_RV *rv)
{
	if (!submit(j)) {
		job_free(j);
		return false;
	}
	*rv = wait_job(c, j);
	return true;
}

/* The output of a finished job back into the application's buffers (PKCS#11 5.2). */
static void give_out(struct job *j, CK_BYTE_PTR out, CK_ULONG_PTR len)
{
	if (j->rv == CKR_OK && out != NULL && j->out != NULL && j->out_len <= *len)
		memcpy(out, j->out, j->out_len);
	if (j->rv == CKR_OK || j->rv == CKR_BUFFER_TOO_SMALL)
		*len = j->out_len;
}

/* The result of an offloaded call: abandoned calls answer CKR_DEVICE_ERROR (fail over). */
static CK_RV finish(struct job *j, CK_RV rv)
{
	if (rv == P11P_ABANDONED)
		return CKR_DEVICE_ERROR;
	job_free(j);
	return rv;
}

CK_RV p11p_offload_io(struct p11p_call *c, fn_io fn, CK_SESSION_HANDLE bs, CK_BYTE_PTR in,
                      CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	struct job *j = job_new(S_IO, (void (*)(void))fn, bs);
	CK_RV rv;

	if (j == NULL || !copy_in(&j->in, in, in_len) || !prepare_out(j, out, out_len)) {
		job_free(j);
		return fn(bs, in, in_len, out, out_len);
	}
	j->in_len = in_len;
	if (!offload(c, j, &rv))
		return fn(bs, in, in_len, out, out_len);
	if (rv != P11P_ABANDONED)
		give_out(j, out, out_len);
	return finish(j, rv);
}

CK_RV p11p_offload_out(struct p11p_call *c, fn_out fn, CK_SESSION_HANDLE bs, CK_BYTE_PTR out,
                       CK_ULONG_PTR out_len)
{
	struct job *j = job_new(S_OUT, (void (*)(void))fn, bs);
	CK_RV rv;

	if (j == NULL || !prepare_out(j, out, out_len)) {
		job_free(j);
		return fn(bs, out, out_len);
	}
	if (!offload(c, j, &rv))
		return fn(bs, out, out_len);
	if (rv != P11P_ABANDONED)
		give_out(j, out, out_len);
	return finish(j, rv);
}

CK_RV p11p_offload_in(struct p11p_call *c, fn_in fn, CK_SESSION_HANDLE bs, CK_BYTE_PTR in,
                      CK_ULONG in_len)
{
	struct job *j = job_new(S_IN, (void (*)(void))fn, bs);
	CK_RV rv;

	if (j == NULL || !copy_in(&j->in, in, in_len)) {
		job_free(j);
		return fn(bs, in, in_len);
	}
	j->in_len = in_len;
	if (!offload(c, j, &rv))
		return fn(bs, in, in_len);
	return finish(j, rv);
}

CK_RV p11p_offload_in2(struct p11p_call *c, fn_in2 fn, CK_SESSION_HANDLE bs, CK_BYTE_PTR in,
                       CK_ULONG in_len, CK_BYTE_PTR in2, CK_ULONG in2_len)
{
	struct job *j = job_new(S_IN2, (void (*)(void))fn, bs);
	CK_RV rv;

	if (j == NULL || !copy_in(&j->in, in, in_len) || !copy_in(&j->in2, in2, in2_len)) {
		job_free(j);
		return fn(bs, in, in_len, in2, in2_len);
	}
	j->in_len = in_len;
	j->in2_len = in2_len;
	if (!offload(c, j, &rv))
		return fn(bs, in, in_len, in2, in2_len);
	return finish(j, rv);
}

CK_RV p11p_offload_init(struct p11p_call *c, fn_init fn, CK_SESSION_HANDLE bs,
                        CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
	struct job *j = mech != NULL ? job_new(S_INIT, (void (*)(void))fn, bs) : NULL;
	CK_RV rv;

	if (j == NULL || !p11p_mech_copy(mech, &j->mech, &j->param_mem)) {
		job_free(j);
		return fn(bs, mech, key);
	}
	j->obj = key;
	if (!offload(c, j, &rv))
		return fn(bs, mech, key);
	return finish(j, rv);
}

CK_RV p11p_offload_mech(struct p11p_call *c, fn_mech fn, CK_SESSION_HANDLE bs,
                        CK_MECHANISM_PTR mech)
{
	struct job *j = mech != NULL ? job_new(S_MECH, (void (*)(void))fn, bs) : NULL;
	CK_RV rv;

	if (j == NULL || !p11p_mech_copy(mech, &j->mech, &j->param_mem)) {
		job_free(j);
		return fn(bs, mech);
	}
	if (!offload(c, j, &rv))
		return fn(bs, mech);
	return finish(j, rv);
}

CK_RV p11p_offload_session(struct p11p_call *c, fn_session fn, CK_SESSION_HANDLE bs)
{
	struct job *j = job_new(S_SESSION, (void (*)(void))fn, bs);
	CK_RV rv;

	if (j == NULL || !offload(c, j, &rv))
		return fn(bs);
	return finish(j, rv);
}

CK_RV p11p_offload_key(struct p11p_call *c, fn_key fn, CK_SESSION_HANDLE bs, CK_OBJECT_HANDLE key)
{
	struct job *j = job_new(S_KEY, (void (*)(void))fn, bs);
	CK_RV rv;

	if (j == NULL)
		return fn(bs, key);
	j->obj = key;
	if (!offload(c, j, &rv))
		return fn(bs, key);
	return finish(j, rv);
}

CK_RV p11p_offload_size(struct p11p_call *c, fn_size fn, CK_SESSION_HANDLE bs, CK_OBJECT_HANDLE obj,
                        CK_ULONG_PTR size)
{
	struct job *j = size != NULL ? job_new(S_SIZE, (void (*)(void))fn, bs) : NULL;
	CK_RV rv;

	if (j == NULL)
		return fn(bs, obj, size);
	j->obj = obj;
	if (!offload(c, j, &rv))
		return fn(bs, obj, size);
	if (rv == CKR_OK)
		*size = j->out_len;
	return finish(j, rv);
}

bool p11p_offload_quiesce(unsigned long ms)
{
	struct timespec ts;
	bool quiet;

	pthread_once(&pool_once, pool_setup);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&pool_lock);
	while (in_flight > 0 && pthread_cond_timedwait(&pool_quiet, &pool_lock, &ts) != ETIMEDOUT)
		;
	quiet = in_flight == 0;
	pthread_mutex_unlock(&pool_lock);
	return quiet;
}

void p11p_offload_new_epoch_locked(void)
{
	g_epoch++;
}
