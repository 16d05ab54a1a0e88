/*
 * Copies of mechanisms (their parameters) that the proxy keeps or hands to a
 * worker thread. A parameter is only copied when its layout is known to hold
 * no pointers, or is one copied deeply (GCM, OAEP); any other cannot be
 * copied, rather than copy a dangling pointer.
 */
#ifndef P11P_MECH_H
#define P11P_MECH_H

#include <stdbool.h>

#include "base/pkcs11.h"

/*
 * A copy of a mechanism the proxy can make safely (no parameter, a flat
 * block, CKM_AES_GCM, CKM_RSA_PKCS_OAEP): true, with the parameter memory in
 * *mem (freed by p11p_mech_free). false: it cannot be copied.
 */
bool p11p_mech_copy(const CK_MECHANISM *m, CK_MECHANISM *out, void **mem);
void p11p_mech_free(CK_MECHANISM *m, void *mem);

#endif
