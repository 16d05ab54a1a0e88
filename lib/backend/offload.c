/*
 * Calls that can be abandoned past a deadline (offload.h says what for).
 *
 * Workers are threads shared by the process, started on demand (at most
 * P11P_OFFLOAD_MAX_WORKERS) and ended after a while idle. A worker that ends
 * is joined (by the next submit, or by p11p_be_quiesce at C_Finalize, which
 * also ends the idle ones): no worker of ours is still tearing itself down
 * when the application exits, a race LeakSanitizer's exit-time check lost
 * ("Tracer caught signal 11") in a test that ended as a worker did. They use
 * nothing of the module's state: a job holds the vendor function pointer,
 * copies of the arguments and, once abandoned, what the caller's hung()
 * hook asked to be handed to released() when the vendor call returns.
 *
 * Buffers (PKCS#11 5.2): an input is copied; an output buffer is allocated
 * with the caller's length (at least one byte, so that a zero-length buffer
 * stays a buffer and the vendor answers CKR_BUFFER_TOO_SMALL, not a size
 * query) and its bytes go back only when they fit. Every copy is wiped and
 * freed by the size the layer allocated (`cap`), never by the length the
 * vendor wrote back.
 */
#include "backend/offload.h"
#include "backend/call.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/mech.h"
#include "base/mem.h"
#include "base/secret.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#define P11P_OFFLOAD_MAX_WORKERS 64
#define P11P_OFFLOAD_IDLE_MS     5000
#define P11P_OFFLOAD_MAX_BUF     (64UL * 1024 * 1024) /* larger buffers run inline */

enum shape {
	S_IO,
	S_OUT,
	S_IN,
	S_IN2,
	S_INIT,
	S_MECH,
	S_SESSION,
	S_KEY,
	S_SIZE,
	S_TOKENINFO,
	S_SLOTINFO,
	S_SESSINFO,
	S_OPEN,
	S_LOGIN,
};

struct job {
	struct job *next;
	enum shape shape;
	void (*fn)(void);                  /* the vendor function, of the type its shape says */
	CK_RV (*close)(CK_SESSION_HANDLE); /* S_OPEN: closes a session opened too late */
	CK_ULONG bs;                       /* session handle, or slot id */
	CK_ULONG arg;                      /* flags, user type */
	CK_BYTE *in, *in2, *out;
	CK_ULONG in_len, in2_len;
	CK_ULONG out_len; /* in: the caller's length; out: the vendor's answer */
	size_t out_cap;   /* bytes allocated at out */
	bool out_null;    /* a size query: the vendor gets NULL */
	CK_MECHANISM mech;
	void *param_mem;
	CK_OBJECT_HANDLE obj;
	union {
		CK_TOKEN_INFO token;
		CK_SLOT_INFO slot;
		CK_SESSION_INFO session;
	} info;
	CK_SESSION_HANDLE opened;
	CK_RV rv;
	pthread_cond_t done_cond;
	bool done, abandoned;
	/* When abandoned: what hung() asked to be handed to released(). */
	void (*released)(void *arg, unsigned long token);
	void *rel_arg;
	unsigned long rel_token;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_work; /* pool_work_init() */
static pthread_cond_t pool_quiet = PTHREAD_COND_INITIALIZER;
static struct job *queue_head, *queue_tail;
static unsigned n_threads, n_idle, n_queued, in_flight;
static bool pool_stopping; /* p11p_be_quiesce: idle workers end now */
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* A worker's thread, from its start until it has been joined. */
static struct worker {
	pthread_t thread;
	bool used;  /* started, not yet joined */
	bool ended; /* its function has returned: it can be joined */
} workers[P11P_OFFLOAD_MAX_WORKERS];

#define P11P_OFFLOAD_JOIN_MS 1000

/*
 * pool_work is waited on with CLOCK_MONOTONIC deadlines: its clock must be
 * that one. (With the default clock a worker's idle deadline was long past
 * at once, and every offloaded call started a thread of its own.)
 */
static void pool_work_init(void)
{
	pthread_condattr_t ca;

	if (pthread_condattr_init(&ca) == 0) {
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&pool_work, &ca);
		pthread_condattr_destroy(&ca);
	}
}

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
	pool_work_init();
	pthread_cond_init(&pool_quiet, NULL);
	queue_head = queue_tail = NULL;
	n_threads = n_idle = n_queued = in_flight = 0;
	pool_stopping = false;
	memset(workers, 0, sizeof(workers));
}

static void pool_setup(void)
{
	pool_work_init();
	pthread_atfork(pool_atfork_prepare, pool_atfork_parent, pool_atfork_child);
}

static void job_free(struct job *j)
{
	if (j == NULL)
		return;
	/* Inputs may be PINs (C_Login, C_InitPIN) or plaintext, outputs plaintext: wiped. */
	if (j->in != NULL)
		p11p_wipe(j->in, j->in_len);
	if (j->in2 != NULL)
		p11p_wipe(j->in2, j->in2_len);
	if (j->out != NULL)
		p11p_wipe(j->out, j->out_cap);
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
		j->rv = ((p11p_fn_io)j->fn)(j->bs, j->in, j->in_len, out, &j->out_len);
		break;
	case S_OUT:
		j->rv = ((p11p_fn_out)j->fn)(j->bs, out, &j->out_len);
		break;
	case S_IN:
		j->rv = ((p11p_fn_in)j->fn)(j->bs, j->in, j->in_len);
		break;
	case S_IN2:
		j->rv = ((p11p_fn_in2)j->fn)(j->bs, j->in, j->in_len, j->in2, j->in2_len);
		break;
	case S_INIT:
		j->rv = ((p11p_fn_init)j->fn)(j->bs, &j->mech, j->obj);
		break;
	case S_MECH:
		j->rv = ((p11p_fn_mech)j->fn)(j->bs, &j->mech);
		break;
	case S_SESSION:
		j->rv = ((p11p_fn_session)j->fn)(j->bs);
		break;
	case S_KEY:
		j->rv = ((p11p_fn_key)j->fn)(j->bs, j->obj);
		break;
	case S_SIZE:
		j->rv = ((p11p_fn_size)j->fn)(j->bs, j->obj, &j->out_len);
		break;
	case S_TOKENINFO:
		j->rv = ((p11p_fn_tokeninfo)j->fn)(j->bs, &j->info.token);
		break;
	case S_SLOTINFO:
		j->rv = ((p11p_fn_slotinfo)j->fn)(j->bs, &j->info.slot);
		break;
	case S_SESSINFO:
		j->rv = ((p11p_fn_sessinfo)j->fn)(j->bs, &j->info.session);
		break;
	case S_OPEN:
		j->rv = ((p11p_fn_open)j->fn)(j->bs, j->arg, NULL, NULL, &j->opened);
		break;
	case S_LOGIN:
		j->rv = ((p11p_fn_login)j->fn)(j->bs, j->arg, j->in, j->in_len);
		break;
	}
}

/* An abandoned job's vendor call returned at last (in its worker). */
static void job_abandoned_end(struct job *j)
{
	/* Nobody will use a session opened after its caller gave up on it. */
	if (j->shape == S_OPEN && j->rv == CKR_OK && j->close != NULL)
		j->close(j->opened);
	if (j->released != NULL)
		j->released(j->rel_arg, j->rel_token);
}

static void *worker_main(void *arg)
{
	struct worker *self = arg;
	struct job *j;
	struct timespec ts;

	pthread_setname_np(pthread_self(), "p11proxy-call"); /* top -H, gdb */
	pthread_mutex_lock(&pool_lock);
	for (;;) {
		if (queue_head == NULL) {
			n_idle++;
			p11p_deadline(&ts, CLOCK_MONOTONIC, P11P_OFFLOAD_IDLE_MS);
			while (queue_head == NULL && !pool_stopping &&
			       pthread_cond_timedwait(&pool_work, &pool_lock, &ts) != ETIMEDOUT)
				;
			n_idle--;
			if (queue_head == NULL)
				break; /* idle long enough, or the pool is stopping */
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
			job_abandoned_end(j);
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
	self->ended = true;
	pthread_cond_broadcast(&pool_quiet);
	pthread_mutex_unlock(&pool_lock);
	return NULL;
}

/*
 * Joins the workers that have ended (pool_lock held: an ended worker needs it
 * no more). One whose thread is somehow not gone within the deadline stays
 * for the next call.
 */
static void reap_locked(void)
{
	struct timespec ts;

	p11p_deadline(&ts, CLOCK_REALTIME, P11P_OFFLOAD_JOIN_MS);
	for (size_t i = 0; i < P11P_OFFLOAD_MAX_WORKERS; i++)
		if (workers[i].used && workers[i].ended &&
		    pthread_timedjoin_np(workers[i].thread, NULL, &ts) == 0)
			workers[i] = (struct worker){0};
}

/* Starts a worker (pool_lock held): false when no slot or thread can be had. */
static bool start_locked(void)
{
	struct worker *w = NULL;

	reap_locked();
	for (size_t i = 0; i < P11P_OFFLOAD_MAX_WORKERS && w == NULL; i++)
		if (!workers[i].used)
			w = &workers[i];
	if (w == NULL || pthread_create(&w->thread, NULL, worker_main, w) != 0)
		return false;
	w->used = true;
	w->ended = false;
	n_threads++;
	return true;
}

/* Hands j to a worker: false when none can be had (the caller runs the call inline). */
static bool submit(struct job *j)
{
	bool ok = true;

	pthread_once(&pool_once, pool_setup);
	pthread_mutex_lock(&pool_lock);
	if (n_idle <= n_queued)
		ok = n_threads < P11P_OFFLOAD_MAX_WORKERS && start_locked();
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
 * Waits for j up to x's deadline: its result (j is then the caller's to read
 * and free), or P11P_ABANDONED (j belongs to its worker from then on, and
 * x->hung has been told).
 */
#define P11P_ABANDONED ((CK_RV)-1)
static CK_RV wait_job(const struct p11p_bctx *x, struct job *j)
{
	struct timespec ts;

	p11p_deadline(&ts, CLOCK_MONOTONIC, x->timeout_ms);
	pthread_mutex_lock(&pool_lock);
	while (!j->done)
		if (pthread_cond_timedwait(&j->done_cond, &pool_lock, &ts) == ETIMEDOUT && !j->done)
			break;
	if (j->done) {
		pthread_mutex_unlock(&pool_lock);
		return j->rv;
	}
	/* What hung() sets is read by the worker only after it took pool_lock again. */
	if (x->hung != NULL)
		x->hung(x->arg, &j->rel_arg, &j->rel_token);
	j->released = x->released;
	j->abandoned = true;
	pthread_mutex_unlock(&pool_lock);
	return P11P_ABANDONED;
}

static struct job *job_new(const struct p11p_bctx *x, enum shape shape, void (*fn)(void),
                           CK_ULONG bs)
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
	j->close = x->be->fl.C_CloseSession;
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
	if (out == NULL)
		return true;
	if (*len > P11P_OFFLOAD_MAX_BUF)
		return false;
	j->out_cap = *len > 0 ? *len : 1;
	j->out = p11p_malloc(j->out_cap);
	return j->out != NULL;
}

/*
 * Runs j on a worker. false when j could not be handed over (j is freed;
 * the caller runs the call inline). true: *rv is the call's result, or
 * P11P_ABANDONED (j is its worker's now); otherwise the caller reads j's
 * outputs and frees it (finish()).
 */
static bool offload(const struct p11p_bctx *x, struct job *j, CK_RV *rv)
{
	if (!submit(j)) {
		job_free(j);
		return false;
	}
	*rv = wait_job(x, j);
	return true;
}

/*
 * The output of a finished job back into the caller's buffer (PKCS#11 5.2):
 * the bytes only when they fit both the caller's buffer and the copy; the
 * length as the vendor answered it (the layer refuses one too large).
 */
static void give_out(struct job *j, CK_BYTE_PTR out, CK_ULONG_PTR len)
{
	if (j->rv == CKR_OK && out != NULL && j->out_len <= *len && j->out_len <= j->out_cap)
		memcpy(out, j->out, j->out_len);
	if (j->rv == CKR_OK || j->rv == CKR_BUFFER_TOO_SMALL)
		*len = j->out_len;
}

/* The result of an offloaded call: an abandoned call answers CKR_DEVICE_ERROR. */
static CK_RV finish(struct job *j, CK_RV rv)
{
	if (rv == P11P_ABANDONED)
		return CKR_DEVICE_ERROR;
	job_free(j);
	return rv;
}

#define JOB(shape, fn, bs) job_new(x, shape, (void (*)(void))(fn), bs)

CK_RV p11p_off_io(const struct p11p_bctx *x, p11p_fn_io fn, CK_SESSION_HANDLE bs, CK_BYTE_PTR in,
                  CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	struct job *j = JOB(S_IO, fn, bs);
	CK_RV rv;

	if (j == NULL || !copy_in(&j->in, in, in_len) || !prepare_out(j, out, out_len)) {
		job_free(j);
		return fn(bs, in, in_len, out, out_len);
	}
	j->in_len = in_len;
	if (!offload(x, j, &rv))
		return fn(bs, in, in_len, out, out_len);
	if (rv != P11P_ABANDONED)
		give_out(j, out, out_len);
	return finish(j, rv);
}

CK_RV p11p_off_out(const struct p11p_bctx *x, p11p_fn_out fn, CK_SESSION_HANDLE bs, CK_BYTE_PTR out,
                   CK_ULONG_PTR out_len)
{
	struct job *j = JOB(S_OUT, fn, bs);
	CK_RV rv;

	if (j == NULL || !prepare_out(j, out, out_len)) {
		job_free(j);
		return fn(bs, out, out_len);
	}
	if (!offload(x, j, &rv))
		return fn(bs, out, out_len);
	if (rv != P11P_ABANDONED)
		give_out(j, out, out_len);
	return finish(j, rv);
}

CK_RV p11p_off_in(const struct p11p_bctx *x, p11p_fn_in fn, CK_SESSION_HANDLE bs, CK_BYTE_PTR in,
                  CK_ULONG in_len)
{
	struct job *j = JOB(S_IN, fn, bs);
	CK_RV rv;

	if (j == NULL || !copy_in(&j->in, in, in_len)) {
		job_free(j);
		return fn(bs, in, in_len);
	}
	j->in_len = in_len;
	if (!offload(x, j, &rv))
		return fn(bs, in, in_len);
	return finish(j, rv);
}

CK_RV p11p_off_in2(const struct p11p_bctx *x, p11p_fn_in2 fn, CK_SESSION_HANDLE bs, CK_BYTE_PTR in,
                   CK_ULONG in_len, CK_BYTE_PTR in2, CK_ULONG in2_len)
{
	struct job *j = JOB(S_IN2, fn, bs);
	CK_RV rv;

	if (j == NULL || !copy_in(&j->in, in, in_len) || !copy_in(&j->in2, in2, in2_len)) {
		job_free(j);
		return fn(bs, in, in_len, in2, in2_len);
	}
	j->in_len = in_len;
	j->in2_len = in2_len;
	if (!offload(x, j, &rv))
		return fn(bs, in, in_len, in2, in2_len);
	return finish(j, rv);
}

CK_RV p11p_off_init(const struct p11p_bctx *x, p11p_fn_init fn, CK_SESSION_HANDLE bs,
                    CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
	struct job *j = mech != NULL ? JOB(S_INIT, fn, bs) : NULL;
	CK_RV rv;

	if (j == NULL || !p11p_mech_copy(mech, &j->mech, &j->param_mem)) {
		job_free(j);
		return fn(bs, mech, key);
	}
	j->obj = key;
	if (!offload(x, j, &rv))
		return fn(bs, mech, key);
	return finish(j, rv);
}

CK_RV p11p_off_mech(const struct p11p_bctx *x, p11p_fn_mech fn, CK_SESSION_HANDLE bs,
                    CK_MECHANISM_PTR mech)
{
	struct job *j = mech != NULL ? JOB(S_MECH, fn, bs) : NULL;
	CK_RV rv;

	if (j == NULL || !p11p_mech_copy(mech, &j->mech, &j->param_mem)) {
		job_free(j);
		return fn(bs, mech);
	}
	if (!offload(x, j, &rv))
		return fn(bs, mech);
	return finish(j, rv);
}

CK_RV p11p_off_session(const struct p11p_bctx *x, p11p_fn_session fn, CK_SESSION_HANDLE bs)
{
	struct job *j = JOB(S_SESSION, fn, bs);
	CK_RV rv;

	if (j == NULL || !offload(x, j, &rv))
		return fn(bs);
	return finish(j, rv);
}

CK_RV p11p_off_key(const struct p11p_bctx *x, p11p_fn_key fn, CK_SESSION_HANDLE bs,
                   CK_OBJECT_HANDLE key)
{
	struct job *j = JOB(S_KEY, fn, bs);
	CK_RV rv;

	if (j == NULL)
		return fn(bs, key);
	j->obj = key;
	if (!offload(x, j, &rv))
		return fn(bs, key);
	return finish(j, rv);
}

CK_RV p11p_off_size(const struct p11p_bctx *x, p11p_fn_size fn, CK_SESSION_HANDLE bs,
                    CK_OBJECT_HANDLE obj, CK_ULONG_PTR size)
{
	struct job *j = size != NULL ? JOB(S_SIZE, fn, bs) : NULL;
	CK_RV rv;

	if (j == NULL)
		return fn(bs, obj, size);
	j->obj = obj;
	if (!offload(x, j, &rv))
		return fn(bs, obj, size);
	if (rv == CKR_OK)
		*size = j->out_len;
	return finish(j, rv);
}

CK_RV p11p_off_tokeninfo(const struct p11p_bctx *x, p11p_fn_tokeninfo fn, CK_SLOT_ID slot,
                         CK_TOKEN_INFO_PTR info)
{
	struct job *j = info != NULL ? JOB(S_TOKENINFO, fn, slot) : NULL;
	CK_RV rv;

	if (j == NULL || !offload(x, j, &rv))
		return fn(slot, info);
	if (rv == CKR_OK)
		*info = j->info.token;
	return finish(j, rv);
}

CK_RV p11p_off_slotinfo(const struct p11p_bctx *x, p11p_fn_slotinfo fn, CK_SLOT_ID slot,
                        CK_SLOT_INFO_PTR info)
{
	struct job *j = info != NULL ? JOB(S_SLOTINFO, fn, slot) : NULL;
	CK_RV rv;

	if (j == NULL || !offload(x, j, &rv))
		return fn(slot, info);
	if (rv == CKR_OK)
		*info = j->info.slot;
	return finish(j, rv);
}

CK_RV p11p_off_sessinfo(const struct p11p_bctx *x, p11p_fn_sessinfo fn, CK_SESSION_HANDLE bs,
                        CK_SESSION_INFO_PTR info)
{
	struct job *j = info != NULL ? JOB(S_SESSINFO, fn, bs) : NULL;
	CK_RV rv;

	if (j == NULL || !offload(x, j, &rv))
		return fn(bs, info);
	if (rv == CKR_OK)
		*info = j->info.session;
	return finish(j, rv);
}

/* The application's callback (notify) cannot run on a worker: such calls run inline. */
CK_RV p11p_off_open(const struct p11p_bctx *x, p11p_fn_open fn, CK_SLOT_ID slot, CK_FLAGS flags,
                    CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR out)
{
	struct job *j = out != NULL && notify == NULL ? JOB(S_OPEN, fn, slot) : NULL;
	CK_RV rv;

	if (j == NULL)
		return fn(slot, flags, app, notify, out);
	j->arg = flags;
	if (!offload(x, j, &rv))
		return fn(slot, flags, app, notify, out);
	if (rv == CKR_OK)
		*out = j->opened;
	return finish(j, rv);
}

CK_RV p11p_off_login(const struct p11p_bctx *x, p11p_fn_login fn, CK_SESSION_HANDLE bs,
                     CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
	struct job *j = JOB(S_LOGIN, fn, bs);
	CK_RV rv;

	if (j == NULL || !copy_in(&j->in, pin, pin_len)) {
		job_free(j);
		return fn(bs, user, pin, pin_len);
	}
	j->in_len = pin_len;
	j->arg = user;
	if (!offload(x, j, &rv))
		return fn(bs, user, pin, pin_len);
	return finish(j, rv);
}

CK_RV p11p_off_never(const struct p11p_bctx *x, ...)
{
	(void)x;
	return CKR_GENERAL_ERROR;
}

bool p11p_be_quiesce(unsigned long ms)
{
	struct timespec ts;
	bool quiet;

	pthread_once(&pool_once, pool_setup);
	p11p_deadline(&ts, CLOCK_REALTIME, ms);
	pthread_mutex_lock(&pool_lock);
	while (in_flight > 0 && pthread_cond_timedwait(&pool_quiet, &pool_lock, &ts) != ETIMEDOUT)
		;
	quiet = in_flight == 0;
	if (quiet) {
		/* The idle workers end and are joined; a new call starts new ones. */
		pool_stopping = true;
		pthread_cond_broadcast(&pool_work);
		while (n_threads > 0 &&
		       pthread_cond_timedwait(&pool_quiet, &pool_lock, &ts) != ETIMEDOUT)
			;
		pool_stopping = false;
		reap_locked();
	}
	pthread_mutex_unlock(&pool_lock);
	return quiet;
}
