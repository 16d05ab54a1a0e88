/* The one place the PKCS#11 header is included from: p11-kit's (2.40). */
#ifndef P11P_PKCS11_H
#define P11P_PKCS11_H

#include <p11-kit/pkcs11.h>

#endif
