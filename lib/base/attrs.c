#include "base/attrs.h"

const CK_ATTRIBUTE *p11p_attr_find(const CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_ATTRIBUTE_TYPE type)
{
	if (tmpl == NULL)
		return NULL;
	for (CK_ULONG i = 0; i < count; i++)
		if (tmpl[i].type == type)
			return &tmpl[i];
	return NULL;
}

bool p11p_attr_bool(const CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_ATTRIBUTE_TYPE type, bool dflt)
{
	const CK_ATTRIBUTE *a = p11p_attr_find(tmpl, count, type);

	if (a == NULL || a->pValue == NULL || a->ulValueLen != sizeof(CK_BBOOL))
		return dflt;
	return *(const CK_BBOOL *)a->pValue != CK_FALSE;
}

CK_ULONG p11p_attr_ulong(const CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_ATTRIBUTE_TYPE type,
                         CK_ULONG dflt)
{
	const CK_ATTRIBUTE *a = p11p_attr_find(tmpl, count, type);

	if (a == NULL || a->pValue == NULL || a->ulValueLen != sizeof(CK_ULONG))
		return dflt;
	return *(const CK_ULONG *)a->pValue;
}
