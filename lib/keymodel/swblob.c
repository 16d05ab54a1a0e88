/* The stored form of a software key: see swblob.h. */
#include "keymodel/swblob.h"

#include <string.h>

static const char aad_magic[] = "p11proxy software key v1"; /* with its NUL */

CK_RV p11p_swb_parse(const unsigned char *blob, size_t len, struct p11p_swb *out)
{
	if (blob == NULL || len < P11P_SWB_HDR_LEN + P11P_SWB_TAG_LEN + 1 ||
	    len > P11P_INDEX_BLOB_MAX || blob[0] != P11P_SWB_VERSION)
		return CKR_DATA_INVALID;
	out->flags = (uint32_t)blob[1] << 24 | (uint32_t)blob[2] << 16 | (uint32_t)blob[3] << 8 |
	             (uint32_t)blob[4];
	if (out->flags & ~(uint32_t)P11P_SWB_F_ALL)
		return CKR_DATA_INVALID;
	out->hdr = blob;
	out->iv = blob + 5;
	out->ct = blob + P11P_SWB_HDR_LEN;
	out->ct_len = len - P11P_SWB_HDR_LEN;
	return CKR_OK;
}

void p11p_swb_header(unsigned char out[P11P_SWB_HDR_LEN], uint32_t flags,
                     const unsigned char iv[P11P_SWB_IV_LEN])
{
	out[0] = P11P_SWB_VERSION;
	out[1] = (unsigned char)(flags >> 24);
	out[2] = (unsigned char)(flags >> 16);
	out[3] = (unsigned char)(flags >> 8);
	out[4] = (unsigned char)flags;
	memcpy(out + 5, iv, P11P_SWB_IV_LEN);
}

static unsigned char *put_be(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		*p++ = (unsigned char)(v >> (8 * i));
	return p;
}

size_t p11p_swb_aad(const struct p11p_vkey *rec, const unsigned char *hdr, unsigned char *out)
{
	size_t sl = strnlen(rec->slot, sizeof(rec->slot));
	unsigned char *p = out;

	if (sl == 0 || sl > P11P_INDEX_SLOT_MAX || rec->ck_id_len > P11P_INDEX_ID_MAX)
		return 0;
	memcpy(p, aad_magic, sizeof(aad_magic));
	p += sizeof(aad_magic);
	memcpy(p, hdr, 5);
	p += 5;
	*p++ = (unsigned char)sl;
	memcpy(p, rec->slot, sl);
	p += sl;
	p = put_be(p, rec->vid, 8);
	p = put_be(p, rec->cls, 8);
	p = put_be(p, rec->key_type, 8);
	p = put_be(p, rec->ck_id_len, 2);
	memcpy(p, rec->ck_id, rec->ck_id_len);
	p += rec->ck_id_len;
	return (size_t)(p - out);
}

void p11p_swb_mech(CK_MECHANISM *m, CK_GCM_PARAMS *p, const unsigned char *iv, unsigned char *aad,
                   size_t aad_len)
{
	memset(p, 0, sizeof(*p));
	p->pIv = (CK_BYTE_PTR)(uintptr_t)iv;
	p->ulIvLen = P11P_SWB_IV_LEN;
	p->ulIvBits = P11P_SWB_IV_LEN * 8;
	p->pAAD = aad;
	p->ulAADLen = aad_len;
	p->ulTagBits = P11P_SWB_TAG_LEN * 8;
	m->mechanism = CKM_AES_GCM;
	m->pParameter = p;
	m->ulParameterLen = sizeof(*p);
}
