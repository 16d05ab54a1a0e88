/*
 * The one backend-call layer (call.h), generated from base/p11fns.h: one
 * wrapper per PKCS#11 function. The BUF column of the table says what the
 * vendor writes back; the macros below check it before the caller sees it.
 */
#include "backend/call.h"
#include "backend/offload.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/names.h"

#include <stdatomic.h>

/*
 * A vendor answered with more than it was given room for, or with a handle
 * no token may hand out: refused, never passed on.
 */
static CK_RV refuse(const struct p11p_bctx *x, const char *fn, const char *what)
{
	struct p11p_member *m = p11p_bctx_member(x);

	atomic_fetch_add_explicit(&x->be->n_refused, 1, memory_order_relaxed);
	if (m != NULL)
		atomic_fetch_add_explicit(&m->n_refused, 1, memory_order_relaxed);
	p11p_message("backend '%s': %s answered %s: refused (CKR_DEVICE_ERROR)",
	             x->be->cfg != NULL ? x->be->cfg->name : "?", fn, what);
	if (x->refused != NULL)
		x->refused(x->arg);
	return CKR_DEVICE_ERROR;
}
#define TOO_LONG "a length larger than it was given"
#define TOO_MANY "a count larger than it was given"
#define HANDLE_0 "handle 0 (CK_INVALID_HANDLE)"

/*
 * Counts a result (on the backend, and on the member when x is a member's)
 * and traces it (never the arguments). Inlined: once per vendor call.
 */
static inline __attribute__((always_inline)) CK_RV done(const struct p11p_bctx *x, const char *fn,
                                                        CK_RV rv)
{
	struct p11p_backend *be = x->be;
	struct p11p_member *m = p11p_bctx_member(x);

	atomic_fetch_add_explicit(&be->n_calls, 1, memory_order_relaxed);
	if (m != NULL)
		atomic_fetch_add_explicit(&m->n_calls, 1, memory_order_relaxed);
	if (rv != CKR_OK) {
		bool server = p11p_rv_is_server_error(be, rv);

		atomic_fetch_add_explicit(server ? &be->n_server_errors : &be->n_client_errors, 1,
		                          memory_order_relaxed);
		if (m != NULL)
			atomic_fetch_add_explicit(server ? &m->n_server_errors
			                                 : &m->n_client_errors,
			                          1, memory_order_relaxed);
	}
	if (p11p_debug_on(P11P_DBG_BACKEND))
		p11p_debug(P11P_DBG_BACKEND, "%s: %s %s", be->cfg != NULL ? be->cfg->name : "?", fn,
		           p11p_rv_str(rv));
	return rv;
}

/*
 * C_GetAttributeValue: each value the vendor reports must fit the buffer the
 * caller gave it. The lengths given are kept here (on the stack for short
 * templates) because the vendor overwrites them.
 */
#define ATTRS_ON_STACK 16
struct attr_lens {
	CK_ULONG stack[ATTRS_ON_STACK];
	CK_ULONG *given;
};

static CK_RV attrs_save(struct attr_lens *a, const CK_ATTRIBUTE *t, CK_ULONG n)
{
	a->given = a->stack;
	if (t == NULL || n == 0)
		return CKR_OK;
	if (n > ATTRS_ON_STACK) {
		if (n > P11P_MAX_TEMPLATE)
			return CKR_ARGUMENTS_BAD;
		a->given = p11p_malloc(n * sizeof(CK_ULONG));
		if (a->given == NULL)
			return CKR_HOST_MEMORY;
	}
	for (CK_ULONG i = 0; i < n; i++)
		a->given[i] = t[i].ulValueLen;
	return CKR_OK;
}

static CK_RV attrs_check(const struct p11p_bctx *x, struct attr_lens *a, CK_ATTRIBUTE *t,
                         CK_ULONG n, CK_RV rv)
{
	/*
	 * With CKR_BUFFER_TOO_SMALL some vendors report the length needed rather
	 * than CK_UNAVAILABLE_INFORMATION: the caller asks again, nothing was
	 * claimed written.
	 */
	if (t != NULL &&
	    (rv == CKR_OK || rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID))
		for (CK_ULONG i = 0; i < n; i++)
			/* Longer than given first: the one test a value that fits needs. */
			if (t[i].ulValueLen > a->given[i] && t[i].pValue != NULL &&
			    t[i].ulValueLen != CK_UNAVAILABLE_INFORMATION) {
				rv = refuse(x, "C_GetAttributeValue",
				            "a value length larger than it was given");
				/* The lengths given go back: a retry must not use the vendor's. */
				for (CK_ULONG j = 0; j < n; j++)
					t[j].ulValueLen = a->given[j];
				break;
			}
	if (a->given != a->stack)
		p11p_free(a->given);
	return rv;
}

/*
 * BUF rules: what runs before (PRE) and after (POST) the vendor call. A
 * refused length or count is never left where the caller reads it: what the
 * caller gave goes back (a caller that retries on another member, or on a new
 * session, must not hand the vendor's length on with its own buffer).
 */
#define PRE_NONE
#define POST_NONE
#define OFF_NONE 1
#define PRE_RAND
#define POST_RAND
#define OFF_RAND          0
#define PRE_OUT(buf, len) CK_ULONG given_ = (len) != NULL ? *(len) : 0;
#define POST_OUT(buf, len)                                                                         \
	if (rv == CKR_OK && (buf) != NULL && (len) != NULL && *(len) > given_) {                   \
		*(len) = given_;                                                                   \
		rv = refuse(x, fn_, TOO_LONG);                                                     \
	}
#define OFF_OUT(buf, len)  1
#define PRE_LIST(buf, len) PRE_OUT(buf, len)
#define POST_LIST(buf, len)                                                                        \
	if ((rv == CKR_OK && (buf) != NULL && (len) != NULL && *(len) > given_) ||                 \
	    (rv == CKR_OK && (len) != NULL && *(len) > P11P_MAX_LIST)) {                           \
		*(len) = given_;                                                                   \
		rv = refuse(x, fn_, TOO_MANY);                                                     \
	}
#define OFF_LIST(buf, len) 0
#define PRE_FOUND(objs, max, count)
/* Handle 0 is CK_INVALID_HANDLE: no token hands it out for an object it found. */
#define POST_FOUND(objs, max, count)                                                               \
	if (rv == CKR_OK && (count) != NULL && *(count) > (max)) {                                 \
		*(count) = 0;                                                                      \
		rv = refuse(x, fn_, TOO_MANY);                                                     \
	}                                                                                          \
	for (CK_ULONG i_ = 0; rv == CKR_OK && (objs) != NULL && (count) != NULL && i_ < *(count);  \
	     i_++)                                                                                 \
		if ((objs)[i_] == CK_INVALID_HANDLE) {                                             \
			*(count) = 0;                                                              \
			rv = refuse(x, fn_, "object " HANDLE_0);                                   \
		}
#define OFF_FOUND(objs, max, count) 0
#define PRE_ATTRS(t, n)                                                                            \
	struct attr_lens lens_;                                                                    \
	rv = attrs_save(&lens_, t, n);                                                             \
	if (rv != CKR_OK)                                                                          \
		return done(x, fn_, rv);
#define POST_ATTRS(t, n) rv = attrs_check(x, &lens_, t, n, rv);
#define OFF_ATTRS(t, n)  0

/*
 * Session counting (struct p11p_bctx's count and gone): one session less, or
 * (all) none left. A close the count did not know of (a session opened
 * through another context) leaves it at zero and still tells gone(): the
 * token may have no session left.
 */
static void sessions_less(const struct p11p_bctx *x, bool all)
{
	long before;

	if (x->count == NULL)
		return;
	before = all ? atomic_exchange(x->count, 0) : atomic_fetch_sub(x->count, 1);
	if (!all && before <= 0)
		atomic_fetch_add(x->count, 1);
	if ((all || before <= 1) && x->gone != NULL)
		x->gone(x->gone_arg);
}
/*
 * A session handle 0 (CK_INVALID_HANDLE) is refused: the proxy could not tell
 * it from no session. The vendor's session, if it has one, cannot be named:
 * it is left open.
 */
#define PRE_OPEN(out)
#define POST_OPEN(out)                                                                             \
	if (rv == CKR_OK && (out) != NULL && *(out) == CK_INVALID_HANDLE)                          \
		rv = refuse(x, fn_, "session " HANDLE_0);                                          \
	if (rv == CKR_OK && x->count != NULL)                                                      \
		atomic_fetch_add(x->count, 1);
#define OFF_OPEN(out) 1
#define PRE_CLOSE
#define POST_CLOSE                                                                                 \
	if (rv == CKR_OK || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED)          \
		sessions_less(x, false);
#define OFF_CLOSE 1
#define PRE_CLOSEALL
#define POST_CLOSEALL                                                                              \
	if (rv == CKR_OK)                                                                          \
		sessions_less(x, true);
#define OFF_CLOSEALL 1

#define WRAP(kind, name, params, names, args, op, buf)                                             \
	CK_RV p11p_be_##name(const struct p11p_bctx *x, P11P_UNPAREN params)                       \
	{                                                                                          \
		static const char fn_[] = #name;                                                   \
		CK_RV rv;                                                                          \
		PRE_##buf;                                                                         \
		if (x->timeout_ms != 0 && OFF_##buf && P11P_OFF_CAN(x->be->fl.name))               \
			rv = P11P_OFF_FN(x->be->fl.name)(x, x->be->fl.name, P11P_UNPAREN names);   \
		else                                                                               \
			rv = x->be->fl.name names;                                                 \
		POST_##buf;                                                                        \
		return done(x, fn_, rv);                                                           \
	}
P11P_FUNCTIONS(WRAP)
#undef WRAP
