/*
 * Keys the proxy holds itself and the vendor mechanisms (issue 5).
 * Skeleton: there are no local objects yet, so no local handle is ever
 * valid; the real thing replaces these bodies.
 */
#include "virt/virt.h"

CK_RV p11p_local_state_init(struct p11p_state *st)
{
	(void)st;
	return CKR_OK;
}

void p11p_local_state_free(struct p11p_state *st)
{
	(void)st;
}

void p11p_local_session_free(struct p11p_session *s)
{
	(void)s;
}

bool p11p_local_mechanism(CK_MECHANISM_TYPE type)
{
	(void)type;
	return false;
}

CK_RV p11p_local_init(struct p11p_call *c, enum p11p_op_kind k, CK_MECHANISM_PTR m,
                      CK_OBJECT_HANDLE key)
{
	(void)c;
	(void)k;
	(void)m;
	(void)key;
	return CKR_KEY_HANDLE_INVALID;
}

#define LOCAL_STUB(name, params)                                                                   \
	CK_RV p11p_local_##name(struct p11p_call *c, P11P_UNPAREN params)                          \
	{                                                                                          \
		(void)c;                                                                           \
		return CKR_OPERATION_NOT_INITIALIZED;                                              \
	}
P11P_LOCAL_CRYPTO(LOCAL_STUB)
#undef LOCAL_STUB

CK_RV p11p_local_get_attrs(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ,
                           CK_ULONG count)
{
	(void)c;
	(void)h;
	(void)templ;
	(void)count;
	return CKR_OBJECT_HANDLE_INVALID;
}

CK_RV p11p_local_set_attrs(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ,
                           CK_ULONG count)
{
	(void)c;
	(void)h;
	(void)templ;
	(void)count;
	return CKR_OBJECT_HANDLE_INVALID;
}

CK_RV p11p_local_object_size(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ULONG_PTR size)
{
	(void)c;
	(void)h;
	(void)size;
	return CKR_OBJECT_HANDLE_INVALID;
}

CK_RV p11p_local_destroy(struct p11p_call *c, CK_OBJECT_HANDLE h)
{
	(void)c;
	(void)h;
	return CKR_OBJECT_HANDLE_INVALID;
}

CK_RV p11p_local_find_init(struct p11p_call *c, const CK_ATTRIBUTE *templ, CK_ULONG count)
{
	(void)c;
	(void)templ;
	(void)count;
	return CKR_OK;
}

CK_ULONG p11p_local_find_next(struct p11p_call *c, CK_OBJECT_HANDLE *out, CK_ULONG max)
{
	(void)c;
	(void)out;
	(void)max;
	return 0;
}

CK_RV p11p_local_derive(struct p11p_call *c, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base,
                        CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR out)
{
	(void)c;
	(void)mech;
	(void)templ;
	(void)count;
	(void)out;
	return p11p_local_handle(base) ? CKR_KEY_HANDLE_INVALID : CKR_MECHANISM_INVALID;
}

CK_RV p11p_local_generate_key(struct p11p_call *c, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR templ,
                              CK_ULONG count, CK_OBJECT_HANDLE_PTR out)
{
	(void)c;
	(void)mech;
	(void)templ;
	(void)count;
	(void)out;
	return CKR_MECHANISM_INVALID;
}
