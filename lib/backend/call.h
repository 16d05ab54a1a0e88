/*
 * The one backend-call layer. Every call into a vendor library, from the
 * module and from the CLI, is p11p_be_C_xxx(x, args...), generated from the
 * one function table (base/p11fns.h); nothing else calls a vendor function
 * pointer. Each wrapper:
 *   - with a deadline in x (timeout_ms), runs the call on a worker thread over
 *     the proxy's own copies of its buffers and abandons it past the deadline
 *     (CKR_DEVICE_ERROR; x->hung is told, x->released when the call returns
 *     at last); calls whose buffers the layer cannot copy run inline;
 *   - checks what the vendor wrote back (the BUF column): a length or count
 *     larger than the buffer given or the number asked for is refused
 *     (CKR_DEVICE_ERROR, logged), never passed on: the caller's length or
 *     count is put back as it gave it (a found count becomes 0); so is a
 *     session or object handle 0 (CK_INVALID_HANDLE); x->refused is told;
 *   - counts the result per backend by class (server / client: the table in
 *     p11p_rv_is_server_error, with the backend's overrides);
 *   - traces the function's name and result under P11PROXY_DEBUG=backend,
 *     never its arguments.
 * Output buffers follow PKCS#11 5.2: a NULL buffer is a size query, a short
 * one CKR_BUFFER_TOO_SMALL with the length needed; the layer's own copies
 * are sized, and wiped, by what it allocated, never by what the vendor says.
 */
#ifndef P11P_BACKEND_CALL_H
#define P11P_BACKEND_CALL_H

#include <stdbool.h>

#include "backend/backend.h"
#include "base/p11fns.h"

/* The backend's context without a deadline. */
static inline const struct p11p_bctx *p11p_backend_ctx(struct p11p_backend *be)
{
	return &be->ctx;
}

#define P11P_UNPAREN(...) __VA_ARGS__
#define P11P_BE_DECL(kind, name, params, ...)                                                      \
	CK_RV p11p_be_##name(const struct p11p_bctx *x, P11P_UNPAREN params);
P11P_FUNCTIONS(P11P_BE_DECL)
#undef P11P_BE_DECL

/*
 * Waits up to ms for abandoned calls to return: true when none is left in
 * flight (C_Finalize may then finalize and unload the backends). The idle
 * workers are then ended and joined, within the same deadline.
 */
bool p11p_be_quiesce(unsigned long ms);

#endif
