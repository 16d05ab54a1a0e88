/*
 * p11proxy public header: vendor-defined mechanisms, attributes, parameter
 * structs and return values of the p11proxy PKCS#11 module (libproxy.so).
 * Build against it with `pkg-config --cflags p11proxy`. See p11proxy(7),
 * VENDOR MECHANISMS, for the full description.
 */
#ifndef P11PROXY_H
#define P11PROXY_H

#include <p11-kit/pkcs11.h>

#define P11PROXY_VERSION_MAJOR 0
#define P11PROXY_VERSION_MINOR 1

/*
 * Vendor-defined values live at CKM_VENDOR_DEFINED / CKA_VENDOR_DEFINED /
 * CKR_VENDOR_DEFINED + P11PROXY_VENDOR_BASE + n.
 */
#define P11PROXY_VENDOR_BASE 0x50310000UL /* "P1" */

/*
 * Return values (CKR_VENDOR_DEFINED range).
 * P11PROXY_CKR_KEY_DEACTIVATED: the virtual key is deactivated (`p11proxy
 * keys deactivate`); no operation may use it until it is activated again.
 */
#define P11PROXY_CKR_KEY_DEACTIVATED (CKR_VENDOR_DEFINED + P11PROXY_VENDOR_BASE + 0x01UL)

/*
 * CKM_P11PROXY_FRAGMENT_DERIVE (C_DeriveKey): fragment derivation, HKDF-SHA256
 * (RFC 5869) with the base key as the salt and the fragment as the input
 * keying material:
 *     PRK = HMAC-SHA256(base key, pFragment)   computed inside the HSM
 *                                               (C_Sign, CKM_SHA256_HMAC)
 *     OKM = HKDF-Expand(PRK, pInfo, L)          computed by the proxy
 * The base key is an HSM key of the slot that allows CKM_SHA256_HMAC signing
 * (or a key the proxy holds itself: the extract then runs in software).
 * Parameter: P11PROXY_FRAGMENT_DERIVE_PARAMS. The template sets the new key:
 * CKA_KEY_TYPE CKK_AES (CKA_VALUE_LEN 16, 24 or 32) or CKK_GENERIC_SECRET
 * (CKA_VALUE_LEN 1..1024; L = CKA_VALUE_LEN, required). The result is a
 * session object held by the proxy (never written anywhere): CKA_TOKEN
 * CK_TRUE is refused with CKR_TEMPLATE_INCONSISTENT. Defaults: CKA_SENSITIVE
 * CK_TRUE, CKA_EXTRACTABLE CK_FALSE, CKA_ENCRYPT / CKA_DECRYPT / CKA_SIGN /
 * CKA_VERIFY CK_TRUE, CKA_DERIVE CK_FALSE, CKA_PRIVATE CK_FALSE.
 * Usable with CKM_AES_GCM (AES keys), CKM_SHA256_HMAC and
 * CKM_SHA256_HMAC_GENERAL (both types).
 */
#define CKM_P11PROXY_FRAGMENT_DERIVE (CKM_VENDOR_DEFINED + P11PROXY_VENDOR_BASE + 0x01UL)

/*
 * CKM_P11PROXY_MIXED_KEY_GEN (C_GenerateKey): a secret key created in the
 * HSM whose value comes from the proxy's entropy mixer (HSM and OS random
 * mixed, see `entropy:` in proxy.yaml(5)). No parameter. The template needs
 * CKA_KEY_TYPE (CKK_AES or CKK_GENERIC_SECRET) and CKA_VALUE_LEN; it is passed
 * to the HSM's C_CreateObject as given (plus CKA_CLASS CKO_SECRET_KEY when
 * absent, and CKA_VALUE), so the key has exactly the requested attributes.
 * As an imported key, its CKA_LOCAL is CK_FALSE.
 */
#define CKM_P11PROXY_MIXED_KEY_GEN (CKM_VENDOR_DEFINED + P11PROXY_VENDOR_BASE + 0x02UL)

typedef struct P11PROXY_FRAGMENT_DERIVE_PARAMS {
	CK_BYTE_PTR pFragment; /* input keying material, 1..65536 bytes */
	CK_ULONG ulFragmentLen;
	CK_BYTE_PTR pInfo; /* HKDF info, 0..1024 bytes (may be NULL when ulInfoLen is 0) */
	CK_ULONG ulInfoLen;
} P11PROXY_FRAGMENT_DERIVE_PARAMS;

typedef P11PROXY_FRAGMENT_DERIVE_PARAMS *P11PROXY_FRAGMENT_DERIVE_PARAMS_PTR;

/*
 * CKA_P11PROXY_FRAGMENT_MODE (CK_ULONG, read-only) on keys the proxy holds:
 * how the key came to be.
 */
#define CKA_P11PROXY_FRAGMENT_MODE (CKA_VENDOR_DEFINED + P11PROXY_VENDOR_BASE + 0x01UL)
#define P11PROXY_FRAGMENT_DERIVED  0UL /* C_DeriveKey with CKM_P11PROXY_FRAGMENT_DERIVE */
#define P11PROXY_FRAGMENT_WRAPPED  1UL /* a configured hsm_wrapped fragment: derived once */
#define P11PROXY_FRAGMENT_SECURED  2UL /* a configured hsm_secured fragment: derived per use */

/*
 * CKA_P11PROXY_HSM_CHECK_VALUE (byte array, read-only) on a configured
 * fragment's key: the first 4 bytes of HMAC-SHA256(HSM key, "p11proxy check
 * value v1") as the member holding the HSM key computed it (empty until the
 * key was first reached). Two members whose HSM keys differ give different
 * check values; the proxy refuses the fragment then.
 */
#define CKA_P11PROXY_HSM_CHECK_VALUE (CKA_VENDOR_DEFINED + P11PROXY_VENDOR_BASE + 0x02UL)

/*
 * CKA_P11PROXY_SOFTWARE (CK_BBOOL): a software key. Given CK_TRUE in the
 * template of C_GenerateKey or C_CreateObject for a token key on a slot with
 * `software_keys:` (or implied there by `new_keys: true`), the proxy keeps
 * the key's value itself: stored in the index only encrypted by the HSM
 * (AES-GCM under the slot's wrapping key), decrypted by the HSM at first use,
 * held in locked memory left out of core dumps, and used in software.
 * Read-only after creation; CK_FALSE on every other object of the proxy.
 * On a slot without `software_keys:`, CK_TRUE is CKR_TEMPLATE_INCONSISTENT.
 */
#define CKA_P11PROXY_SOFTWARE (CKA_VENDOR_DEFINED + P11PROXY_VENDOR_BASE + 0x03UL)

#endif
