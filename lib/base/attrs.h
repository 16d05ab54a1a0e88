/* Attribute-template helpers. Templates come from the application: bounded by their count. */
#ifndef P11P_ATTRS_H
#define P11P_ATTRS_H

#include <stdbool.h>

#include "base/pkcs11.h"

/* The attribute of that type in the template, or NULL. Template may be NULL when count is 0. */
const CK_ATTRIBUTE *p11p_attr_find(const CK_ATTRIBUTE *tmpl, CK_ULONG count,
                                   CK_ATTRIBUTE_TYPE type);
/* A CK_BBOOL attribute's value, or `dflt` when it is absent or malformed. */
bool p11p_attr_bool(const CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_ATTRIBUTE_TYPE type, bool dflt);
/* A CK_ULONG attribute's value, or `dflt` when it is absent or malformed. */
CK_ULONG p11p_attr_ulong(const CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_ATTRIBUTE_TYPE type,
                         CK_ULONG dflt);

#endif
