/*
 * The module's entry points: the exported CK_FUNCTION_LIST. Plain forwarders
 * are generated from the one table (base/p11fns.h); functions with logic of
 * their own live in lib/virt and are wired here. C_GetFunctionList is the
 * only exported symbol (lib/module.map).
 */
#include "base/log.h"
#include "base/names.h"
#include "base/p11fns.h"
#include "ha/ha.h"
#include "soft/soft.h"
#include "virt/virt.h"
#include "vkeys/vkeys.h"

#include <p11proxy.h>
#include <string.h>

#define P11P_EXPORT __attribute__((visibility("default")))

/* P11PROXY_DEBUG=call: one line per call, its name and result (never its arguments). */
static inline __attribute__((always_inline)) CK_RV trace(const char *name, CK_RV rv)
{
	if (p11p_debug_on(P11P_DBG_CALL))
		p11p_debug(P11P_DBG_CALL, "%s: %s", name, p11p_rv_str(rv));
	return rv;
}

/* Is a local operation of kind k active on s (soft/local.c)? Inline: no call for most sessions. */
static inline bool local_active(struct p11p_session *s, enum p11p_op_kind k)
{
	return p11p_shead(s)->local != NULL && p11p_local_active(s, k);
}

/*
 * Operation roles (the OP column of base/p11fns.h), expanded around each
 * forwarded call:
 *   OP_LOST_x   before the call: an operation lost in a failover answers
 *               CKR_DEVICE_ERROR once;
 *   OP_AGAIN_x  may the call be repeated on another member after a failover?
 *   OP_AFTER_x  after the call: record what the operation needs for replay.
 */
#define OP_LOST_NONE
#define OP_LOST_UNSAFE
#define OP_LOST_DUAL
#define OP_LOST_INIT(k, m, key)
#define OP_LOST_FINDINIT(t, n)
#define OP_LOST_UPDATE(k, in, len, out) OP_LOST_KIND(k)
#define OP_LOST_DIGESTKEY(key)          OP_LOST_KIND(P11P_OP_DIGEST)
#define OP_LOST_FINAL(k, out)           OP_LOST_KIND(k)
#define OP_LOST_END(k)                  OP_LOST_KIND(k)
#define OP_LOST_KIND(k)                                                                            \
	if ((p11p_shead(c.s)->ops_lost & (1u << (k))) && p11p_op_lost(&c, k))                      \
		return trace(fn, p11p_call_end(&c, CKR_DEVICE_ERROR));

#define OP_AGAIN_NONE                    true
#define OP_AGAIN_UNSAFE                  false
#define OP_AGAIN_DUAL                    false
#define OP_AGAIN_INIT(k, m, key)         true
#define OP_AGAIN_FINDINIT(t, n)          true
#define OP_AGAIN_UPDATE(k, in, len, out) true
#define OP_AGAIN_DIGESTKEY(key)          true
#define OP_AGAIN_FINAL(k, out)           true
#define OP_AGAIN_END(k)                  true

#define OP_AFTER_NONE
#define OP_AFTER_UNSAFE
#define OP_AFTER_DUAL p11p_op_unreplayable(&c);
#define OP_AFTER_INIT(k, m, key)                                                                   \
	if (rv == CKR_OK)                                                                          \
		p11p_op_begin(&c, k, m, key);
#define OP_AFTER_FINDINIT(t, n)                                                                    \
	if (rv == CKR_OK)                                                                          \
		p11p_op_begin_find(&c, t, n);
/* An update with an output buffer of NULL is a size query: nothing was fed. */
#define OP_AFTER_UPDATE(k, in, len, out)                                                           \
	if (rv == CKR_OK && (out) != NULL)                                                         \
		p11p_op_update(&c, k, in, len);                                                    \
	else if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL)                                       \
		p11p_op_end(&c, k);
#define OP_AFTER_DIGESTKEY(key)                                                                    \
	if (rv == CKR_OK)                                                                          \
		p11p_op_digest_key(&c, key);                                                       \
	else                                                                                       \
		p11p_op_end(&c, P11P_OP_DIGEST);
/* PKCS#11 5.2: a size query or a short buffer leaves the operation active. */
#define OP_AFTER_FINAL(k, out)                                                                     \
	if (!(rv == CKR_BUFFER_TOO_SMALL || (rv == CKR_OK && (out) == NULL)))                      \
		p11p_op_end(&c, k);
#define OP_AFTER_END(k) p11p_op_end(&c, k);

/*
 * OP_GATE_x: before a call that starts an operation on a key: a key the
 * proxy holds itself runs locally, a virtual key may refuse (object.c). A
 * gate that met a failing member (reading the key there) fails over and
 * asks again on the next member.
 * OP_KIND_x: the operation kind of a CRYPTO call.
 */
#define OP_GATE_NONE
#define OP_GATE_UNSAFE
#define OP_GATE_DUAL
#define OP_GATE_INIT(k, m, key)                                                                    \
	while (p11p_key_gate(&c, k, m, key, &rv))                                                  \
		if (!p11p_call_retry(&c, &rv, true))                                               \
			return trace(fn, p11p_call_end(&c, rv));
#define OP_GATE_FINDINIT(t, n)
#define OP_GATE_UPDATE(k, in, len, out)
#define OP_GATE_DIGESTKEY(key)                                                                     \
	if (p11p_local_handle(key))                                                                \
		return trace(fn, p11p_call_end(&c, CKR_KEY_INDIGESTIBLE));
#define OP_GATE_FINAL(k, out)
#define OP_GATE_END(k)

#define OP_KIND_UPDATE(k, in, len, out) k
#define OP_KIND_FINAL(k, out)           k
#define OP_KIND_END(k)                  k

#define DROP_FIRST(first, ...) __VA_ARGS__

/*
 * SESSION: map the session, call the member, fail over and repeat when the
 * member fails. KEY / OBJECT: the same, mapping the `key` / `object`
 * parameter to the member's handle each time (it may be a new member).
 * CRYPTO: as SESSION, unless a local operation of its kind is active.
 */
#define FWD_CUSTOM(name, params, args, op)
#define FWD_BODY(name, args, op, map, local)                                                       \
	struct p11p_call c;                                                                        \
	const char *fn = #name;                                                                    \
	CK_RV rv = p11p_call_begin(session, &c);                                                   \
	if (rv != CKR_OK)                                                                          \
		return trace(fn, rv);                                                              \
	local OP_GATE_##op OP_LOST_##op do                                                         \
	{                                                                                          \
		rv = map;                                                                          \
		if (rv == CKR_OK)                                                                  \
			rv = p11p_be_##name(&c.bc, P11P_UNPAREN args);                             \
	}                                                                                          \
	while (rv != CKR_OK && p11p_call_retry(&c, &rv, OP_AGAIN_##op))                            \
		;                                                                                  \
	OP_AFTER_##op return trace(fn, p11p_call_end(&c, rv));
#define FWD_SESSION(name, params, args, op)                                                        \
	static CK_RV proxy_##name params                                                           \
	{                                                                                          \
		FWD_BODY(name, args, op, CKR_OK, )                                                 \
	}
#define FWD_CRYPTO(name, params, args, op)                                                         \
	static CK_RV proxy_##name params                                                           \
	{                                                                                          \
		FWD_BODY(name, args, op, CKR_OK,                                                   \
		         if (local_active(c.s, OP_KIND_##op)) return trace(                        \
		             fn, p11p_call_end(&c, p11p_local_##name(&c, DROP_FIRST args)));)      \
	}
#define FWD_KEY(name, params, args, op)                                                            \
	static CK_RV proxy_##name params                                                           \
	{                                                                                          \
		CK_OBJECT_HANDLE bkey;                                                             \
		FWD_BODY(name, args, op,                                                           \
		         p11p_object_to_backend(&c, key, CKR_KEY_HANDLE_INVALID, &bkey), )         \
	}
/* The only OBJECT function left is C_GetObjectSize; a local object answers itself. */
#define FWD_OBJECT(name, params, args, op)                                                         \
	static CK_RV proxy_##name params                                                           \
	{                                                                                          \
		CK_OBJECT_HANDLE bobj;                                                             \
		FWD_BODY(name, args, op,                                                           \
		         p11p_object_to_backend(&c, object, CKR_OBJECT_HANDLE_INVALID, &bobj),     \
		         if (p11p_local_handle(object)) return trace(                              \
		             fn, p11p_call_end(&c, p11p_local_object_size(&c, object, size)));)    \
	}
/* IMPL(f): the call goes to f with the same arguments, traced. */
#define FWD_K_IMPL(f, name, params, names, args, op)                                               \
	static CK_RV proxy_##name params                                                           \
	{                                                                                          \
		return trace(#name, f names);                                                      \
	}
#define FWD_K_SESSION(f, name, params, names, args, op) FWD_SESSION(name, params, args, op)
#define FWD_K_CRYPTO(f, name, params, names, args, op)  FWD_CRYPTO(name, params, args, op)
#define FWD_K_KEY(f, name, params, names, args, op)     FWD_KEY(name, params, args, op)
#define FWD_K_OBJECT(f, name, params, names, args, op)  FWD_OBJECT(name, params, args, op)
#define FWD_K_CUSTOM(f, name, params, names, args, op)
/* The KIND column as a name and a function: IMPL(f) becomes "IMPL, f". */
#define KIND_IMPL(f)      IMPL, f
#define KIND_SESSION      SESSION, -
#define KIND_CRYPTO       CRYPTO, -
#define KIND_KEY          KEY, -
#define KIND_OBJECT       OBJECT, -
#define KIND_CUSTOM       CUSTOM, -
#define FWD_DISPATCH(...) FWD_DISPATCH_(__VA_ARGS__)
#define FWD_DISPATCH_(k, f, name, params, names, args, op)                                         \
	FWD_K_##k(f, name, params, names, args, op)
#define FWD(kind, name, params, names, args, op, buf)                                              \
	FWD_DISPATCH(KIND_##kind, name, params, names, args, op)
P11P_FUNCTIONS(FWD)
#undef FWD

/* --- hand-written entry points --- */

static CK_FUNCTION_LIST function_list;

static CK_RV proxy_C_Initialize(CK_VOID_PTR init_args)
{
	/* The rooms above the core plug into it (virt/virt.h: hooks). */
	p11p_ha_register();
	p11p_vkeys_register();
	p11p_soft_register();
	return trace("C_Initialize", p11p_initialize(init_args));
}

static CK_RV proxy_C_GetInfo(CK_INFO_PTR info)
{
	if (!p11p_initialized())
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(info, 0, sizeof(*info));
	info->cryptokiVersion.major = CRYPTOKI_VERSION_MAJOR;
	info->cryptokiVersion.minor = CRYPTOKI_VERSION_MINOR;
	p11p_pad(info->manufacturerID, sizeof(info->manufacturerID), "p11proxy");
	p11p_pad(info->libraryDescription, sizeof(info->libraryDescription),
	         "p11proxy PKCS#11 proxy");
	info->libraryVersion.major = P11PROXY_VERSION_MAJOR;
	info->libraryVersion.minor = P11PROXY_VERSION_MINOR;
	return CKR_OK;
}

static CK_RV proxy_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	*list = &function_list;
	return CKR_OK;
}

static CK_FUNCTION_LIST function_list = {
    .version = {CRYPTOKI_VERSION_MAJOR, CRYPTOKI_VERSION_MINOR},
#define ENTRY(kind, name, ...) .name = proxy_##name,
    P11P_FUNCTIONS(ENTRY)
#undef ENTRY
};

P11P_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	return proxy_C_GetFunctionList(list);
}
