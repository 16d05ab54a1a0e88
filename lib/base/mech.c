#include "base/mech.h"
#include "base/mem.h"
#include "base/secret.h"

#include <string.h>

/* Mechanisms whose parameter is a flat block of bytes (IVs, counters, PSS, MAC lengths). */
static bool param_is_flat(CK_MECHANISM_TYPE t)
{
	switch (t) {
	case CKM_AES_CBC:
	case CKM_AES_CBC_PAD:
	case CKM_AES_CTR:
	case CKM_AES_OFB:
	case CKM_AES_CFB8:
	case CKM_AES_CFB64:
	case CKM_AES_CFB128:
	case CKM_AES_CTS:
	case CKM_AES_MAC_GENERAL:
	case CKM_AES_CMAC_GENERAL:
	case CKM_DES3_CBC:
	case CKM_DES3_CBC_PAD:
	case CKM_DES_CBC:
	case CKM_DES_CBC_PAD:
	case CKM_RSA_PKCS_PSS:
	case CKM_SHA1_RSA_PKCS_PSS:
	case CKM_SHA224_RSA_PKCS_PSS:
	case CKM_SHA256_RSA_PKCS_PSS:
	case CKM_SHA384_RSA_PKCS_PSS:
	case CKM_SHA512_RSA_PKCS_PSS:
	case CKM_SHA_1_HMAC_GENERAL:
	case CKM_SHA224_HMAC_GENERAL:
	case CKM_SHA256_HMAC_GENERAL:
	case CKM_SHA384_HMAC_GENERAL:
	case CKM_SHA512_HMAC_GENERAL:
		return true;
	default:
		return false;
	}
}

/* One allocation holding the struct and the buffers it points to. */
static void *copy_gcm(const CK_GCM_PARAMS *p, CK_ULONG *len)
{
	CK_GCM_PARAMS *g;
	unsigned char *tail;

	if ((p->ulIvLen > 0 && p->pIv == NULL) || (p->ulAADLen > 0 && p->pAAD == NULL) ||
	    p->ulIvLen > 4096 || p->ulAADLen > 1024 * 1024)
		return NULL;
	*len = sizeof(*g) + p->ulIvLen + p->ulAADLen;
	g = p11p_malloc(*len);
	if (g == NULL)
		return NULL;
	*g = *p;
	tail = (unsigned char *)(g + 1);
	if (p->ulIvLen > 0)
		memcpy(tail, p->pIv, p->ulIvLen);
	g->pIv = p->ulIvLen > 0 ? tail : NULL;
	if (p->ulAADLen > 0)
		memcpy(tail + p->ulIvLen, p->pAAD, p->ulAADLen);
	g->pAAD = p->ulAADLen > 0 ? tail + p->ulIvLen : NULL;
	*len = sizeof(*g); /* what the backend is told; the rest rides along */
	return g;
}

static void *copy_oaep(const CK_RSA_PKCS_OAEP_PARAMS *p, CK_ULONG *len)
{
	CK_RSA_PKCS_OAEP_PARAMS *o;

	if ((p->ulSourceDataLen > 0 && p->pSourceData == NULL) || p->ulSourceDataLen > 65536)
		return NULL;
	o = p11p_malloc(sizeof(*o) + p->ulSourceDataLen);
	if (o == NULL)
		return NULL;
	*o = *p;
	if (p->ulSourceDataLen > 0) {
		memcpy(o + 1, p->pSourceData, p->ulSourceDataLen);
		o->pSourceData = o + 1;
	}
	*len = sizeof(*o);
	return o;
}

bool p11p_mech_copy(const CK_MECHANISM *m, CK_MECHANISM *out, void **mem)
{
	CK_ULONG len = m->ulParameterLen;

	*out = *m;
	out->pParameter = NULL;
	*mem = NULL;
	if (m->pParameter == NULL || len == 0) {
		out->ulParameterLen = 0;
		return m->pParameter == NULL || len == 0;
	}
	if (m->mechanism == CKM_AES_GCM && len == sizeof(CK_GCM_PARAMS))
		*mem = copy_gcm(m->pParameter, &len);
	else if (m->mechanism == CKM_RSA_PKCS_OAEP && len == sizeof(CK_RSA_PKCS_OAEP_PARAMS))
		*mem = copy_oaep(m->pParameter, &len);
	else if (param_is_flat(m->mechanism) && len <= 4096 && (*mem = p11p_malloc(len)) != NULL)
		memcpy(*mem, m->pParameter, len);
	if (*mem == NULL)
		return false;
	out->pParameter = *mem;
	out->ulParameterLen = len;
	return true;
}

void p11p_mech_free(CK_MECHANISM *m, void *mem)
{
	if (mem != NULL) {
		p11p_wipe(mem, m->ulParameterLen);
		p11p_free(mem);
	}
	m->pParameter = NULL;
	m->ulParameterLen = 0;
}
