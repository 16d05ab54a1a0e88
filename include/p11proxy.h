/* p11proxy public header: vendor-defined mechanisms, attributes and parameter structs. */
#ifndef P11PROXY_H
#define P11PROXY_H

#include <p11-kit/pkcs11.h>

#define P11PROXY_VERSION_MAJOR 0
#define P11PROXY_VERSION_MINOR 1

/*
 * Vendor-defined values live at CKM_VENDOR_DEFINED / CKA_VENDOR_DEFINED +
 * P11PROXY_VENDOR_BASE + n. Later releases add the fragment-derivation and
 * entropy-mixing mechanisms here.
 */
#define P11PROXY_VENDOR_BASE 0x50310000UL /* "P1" */

/*
 * Return values (CKR_VENDOR_DEFINED range).
 * P11PROXY_CKR_KEY_DEACTIVATED: the virtual key is deactivated (`p11proxy
 * keys deactivate`); no operation may use it until it is activated again.
 */
#define P11PROXY_CKR_KEY_DEACTIVATED (CKR_VENDOR_DEFINED + P11PROXY_VENDOR_BASE + 0x01UL)

#endif
