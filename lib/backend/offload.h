/*
 * Inside the backend-call layer (call.c): calls that can be abandoned past a
 * deadline. The call runs on a worker thread over the layer's own copies of
 * its buffers while the caller waits up to x->timeout_ms; past that the
 * caller gets CKR_DEVICE_ERROR and the worker, still inside the vendor call,
 * frees the job when the call returns at last: nothing it writes reaches the
 * caller, whose buffers may be gone by then.
 *
 * Which copy a call needs follows from the vendor function's type:
 * P11P_OFF_CAN(fn) says whether one of the shapes below fits, and
 * P11P_OFF_FN(fn) picks it (C11 _Generic). Calls of other shapes, a
 * mechanism whose parameter cannot be copied (base/mech.h), and calls when no
 * worker can be had, run inline.
 */
#ifndef P11P_BACKEND_OFFLOAD_H
#define P11P_BACKEND_OFFLOAD_H

#include "backend/backend.h"

typedef CK_RV (*p11p_fn_io)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
typedef CK_RV (*p11p_fn_out)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR);
typedef CK_RV (*p11p_fn_in)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG);
typedef CK_RV (*p11p_fn_in2)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG);
typedef CK_RV (*p11p_fn_init)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
typedef CK_RV (*p11p_fn_mech)(CK_SESSION_HANDLE, CK_MECHANISM_PTR);
typedef CK_RV (*p11p_fn_session)(CK_SESSION_HANDLE);
typedef CK_RV (*p11p_fn_key)(CK_SESSION_HANDLE, CK_OBJECT_HANDLE);
typedef CK_RV (*p11p_fn_size)(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ULONG_PTR);
typedef CK_RV (*p11p_fn_tokeninfo)(CK_SLOT_ID, CK_TOKEN_INFO_PTR);
typedef CK_RV (*p11p_fn_slotinfo)(CK_SLOT_ID, CK_SLOT_INFO_PTR);
typedef CK_RV (*p11p_fn_sessinfo)(CK_SESSION_HANDLE, CK_SESSION_INFO_PTR);
typedef CK_RV (*p11p_fn_open)(CK_SLOT_ID, CK_FLAGS, CK_VOID_PTR, CK_NOTIFY, CK_SESSION_HANDLE_PTR);
typedef CK_RV (*p11p_fn_login)(CK_SESSION_HANDLE, CK_USER_TYPE, CK_UTF8CHAR_PTR, CK_ULONG);

CK_RV p11p_off_io(const struct p11p_bctx *x, p11p_fn_io fn, CK_SESSION_HANDLE bs, CK_BYTE_PTR in,
                  CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
CK_RV p11p_off_out(const struct p11p_bctx *x, p11p_fn_out fn, CK_SESSION_HANDLE bs, CK_BYTE_PTR out,
                   CK_ULONG_PTR out_len);
CK_RV p11p_off_in(const struct p11p_bctx *x, p11p_fn_in fn, CK_SESSION_HANDLE bs, CK_BYTE_PTR in,
                  CK_ULONG in_len);
CK_RV p11p_off_in2(const struct p11p_bctx *x, p11p_fn_in2 fn, CK_SESSION_HANDLE bs, CK_BYTE_PTR in,
                   CK_ULONG in_len, CK_BYTE_PTR in2, CK_ULONG in2_len);
CK_RV p11p_off_init(const struct p11p_bctx *x, p11p_fn_init fn, CK_SESSION_HANDLE bs,
                    CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV p11p_off_mech(const struct p11p_bctx *x, p11p_fn_mech fn, CK_SESSION_HANDLE bs,
                    CK_MECHANISM_PTR mech);
CK_RV p11p_off_session(const struct p11p_bctx *x, p11p_fn_session fn, CK_SESSION_HANDLE bs);
CK_RV p11p_off_key(const struct p11p_bctx *x, p11p_fn_key fn, CK_SESSION_HANDLE bs,
                   CK_OBJECT_HANDLE key);
CK_RV p11p_off_size(const struct p11p_bctx *x, p11p_fn_size fn, CK_SESSION_HANDLE bs,
                    CK_OBJECT_HANDLE obj, CK_ULONG_PTR size);
CK_RV p11p_off_tokeninfo(const struct p11p_bctx *x, p11p_fn_tokeninfo fn, CK_SLOT_ID slot,
                         CK_TOKEN_INFO_PTR info);
CK_RV p11p_off_slotinfo(const struct p11p_bctx *x, p11p_fn_slotinfo fn, CK_SLOT_ID slot,
                        CK_SLOT_INFO_PTR info);
CK_RV p11p_off_sessinfo(const struct p11p_bctx *x, p11p_fn_sessinfo fn, CK_SESSION_HANDLE bs,
                        CK_SESSION_INFO_PTR info);
CK_RV p11p_off_open(const struct p11p_bctx *x, p11p_fn_open fn, CK_SLOT_ID slot, CK_FLAGS flags,
                    CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR out);
CK_RV p11p_off_login(const struct p11p_bctx *x, p11p_fn_login fn, CK_SESSION_HANDLE bs,
                     CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len);
/* Never called: the shape of calls P11P_OFF_CAN() refuses. */
CK_RV p11p_off_never(const struct p11p_bctx *x, ...);

#define P11P_OFF_SHAPES(X)                                                                         \
	X(p11p_fn_io, p11p_off_io)                                                                 \
	X(p11p_fn_out, p11p_off_out)                                                               \
	X(p11p_fn_in, p11p_off_in)                                                                 \
	X(p11p_fn_in2, p11p_off_in2)                                                               \
	X(p11p_fn_init, p11p_off_init)                                                             \
	X(p11p_fn_mech, p11p_off_mech)                                                             \
	X(p11p_fn_session, p11p_off_session)                                                       \
	X(p11p_fn_key, p11p_off_key)                                                               \
	X(p11p_fn_size, p11p_off_size)                                                             \
	X(p11p_fn_tokeninfo, p11p_off_tokeninfo)                                                   \
	X(p11p_fn_slotinfo, p11p_off_slotinfo)                                                     \
	X(p11p_fn_sessinfo, p11p_off_sessinfo)                                                     \
	X(p11p_fn_open, p11p_off_open)                                                             \
	X(p11p_fn_login, p11p_off_login)
#define P11P_OFF_CAN_1(type, fn)                                                                   \
	type:                                                                                      \
	1,
#define P11P_OFF_FN_1(type, fn)                                                                    \
	type:                                                                                      \
	fn,
#define P11P_OFF_CAN(f) _Generic((f), P11P_OFF_SHAPES(P11P_OFF_CAN_1) default : 0)
#define P11P_OFF_FN(f)  _Generic((f), P11P_OFF_SHAPES(P11P_OFF_FN_1) default : p11p_off_never)

#endif
