/*
 * Virtual keys (issue 4): the module's side of the index. Skeleton: every
 * object passes (no index yet); the real thing replaces these bodies.
 */
#include "virt/virt.h"

CK_RV p11p_vkey_state_init(struct p11p_state *st)
{
	(void)st;
	return CKR_OK;
}

void p11p_vkey_state_free(struct p11p_state *st)
{
	(void)st;
}

CK_RV p11p_vkey_use(struct p11p_call *c, CK_OBJECT_HANDLE key, unsigned perm)
{
	(void)c;
	(void)key;
	(void)perm;
	return CKR_OK;
}

void p11p_vkey_attrs_out(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ,
                         CK_ULONG count, CK_RV *rv)
{
	(void)c;
	(void)h;
	(void)templ;
	(void)count;
	(void)rv;
}

bool p11p_vkey_set(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                   CK_RV *rv)
{
	(void)c;
	(void)h;
	(void)templ;
	(void)count;
	(void)rv;
	return false;
}

bool p11p_vkey_destroy(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_RV *rv)
{
	(void)c;
	(void)h;
	(void)rv;
	return false;
}

CK_RV p11p_vkey_created(struct p11p_call *c, const CK_OBJECT_HANDLE *bh, size_t n)
{
	(void)c;
	(void)bh;
	(void)n;
	return CKR_OK;
}

CK_RV p11p_vkey_find_init(struct p11p_call *c, const CK_ATTRIBUTE *templ, CK_ULONG count)
{
	(void)c;
	(void)templ;
	(void)count;
	return CKR_OK;
}

bool p11p_vkey_hidden(struct p11p_call *c, CK_OBJECT_HANDLE ph)
{
	(void)c;
	(void)ph;
	return false;
}
