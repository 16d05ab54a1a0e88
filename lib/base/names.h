/* Names of PKCS#11 constants, for messages, debug output and the config. */
#ifndef P11P_NAMES_H
#define P11P_NAMES_H

#include "base/pkcs11.h"

/* Each returns the constant's name, or NULL when it is unknown (vendor-defined). */
const char *p11p_ckr_name(CK_RV rv);
const char *p11p_ckm_name(CK_MECHANISM_TYPE m);
const char *p11p_cka_name(CK_ATTRIBUTE_TYPE a);
const char *p11p_cko_name(CK_OBJECT_CLASS c);
const char *p11p_ckk_name(CK_KEY_TYPE k);

/* Like p11p_ckr_name, but never NULL ("vendor-defined error"), for messages. */
const char *p11p_rv_str(CK_RV rv);

/* Name to value ("CKR_DEVICE_ERROR"); CKR_ARGUMENTS_BAD when unknown. */
CK_RV p11p_ckr_value(const char *name, CK_RV *out);
CK_RV p11p_ckm_value(const char *name, CK_MECHANISM_TYPE *out);

#endif
