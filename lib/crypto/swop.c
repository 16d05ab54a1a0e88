/*
 * Software-key operations (crypto/swkey.h): the p11p_swop object, one per
 * PKCS#11 operation, holding the OpenSSL contexts for the length of the
 * operation only (see swkey.c on key hygiene).
 */
/* RSA_*: the engine's own RSA private keys (swkey_int.h); SHA*_: HMAC (hmac_keyed). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "crypto/swkey_int.h"

#include <stdint.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/ossl.h"

__extension__ typedef unsigned __int128 u128;

/* PKCS#11 3.0's CK_EDDSA_PARAMS (p11-kit's 2.40 header has none). */
struct sw_eddsa_params {
	CK_BBOOL phFlag;
	CK_ULONG ulContextDataLen;
	CK_BYTE_PTR pContextData;
};

/* GCM: at most 2^36 - 32 bytes of plaintext under one IV (SP 800-38D). */
#define GCM_MAX_DATA ((((uint64_t)1) << 36) - 32)
/* Large inputs go to OpenSSL in pieces (its update calls took an int through EVP). */
#define UPDATE_CHUNK  (1 << 30)
#define ECDSA_RAW_MAX 64

enum family {
	FAM_GCM,
	FAM_CBC,
	FAM_CBC_PAD,
	FAM_CTR,
	FAM_HMAC,
	FAM_ECDSA,      /* raw: input is a hash */
	FAM_ECDSA_HASH, /* CKM_ECDSA_SHA* */
	FAM_EDDSA,
	FAM_RSA_PKCS, /* raw sign/verify, encrypt/decrypt */
	FAM_RSA_HASH, /* CKM_SHA*_RSA_PKCS */
	FAM_PSS,      /* raw: input is a hash */
	FAM_PSS_HASH,
	FAM_OAEP,
};

struct p11p_swop {
	struct p11p_swkey *key;
	enum p11p_swop_kind kind;
	enum family fam;
	bool active;
	bool updated; /* an Update was made: single-part calls refused */
	bool clean;   /* finished without error: a cached context may go back */
	bool started; /* symmetric: IV set for the multi-part stream */
	bool single_only;
	bool owns_ref; /* a reference on key (p11p_swop_init); one-shot calls borrow */
	/* Symmetric. */
	void *cctx;                       /* the provider's context (crypto/cipher.h) */
	const struct p11p_cipher *cipher; /* the key's, for cctx */
	bool keyed;                       /* cctx has the key schedule */
	int slot;                         /* cache slot of cctx, -1 none */
	unsigned char iv[P11P_SWKEY_GCM_IV_MAX];
	size_t iv_len;
	unsigned char *aad;
	size_t aad_len;
	size_t tag_len;
	uint64_t done;          /* bytes taken so far (GCM, CTR limits) */
	u128 ctr_blocks;        /* CTR: blocks the counter allows from its start */
	size_t pending;         /* CBC: bytes taken but not output yet (< 16) */
	unsigned char tail[16]; /* CBC_PAD decrypt: last ciphertext bytes held back */
	size_t tail_len;
	unsigned char last[16]; /* CBC_PAD decrypt: the last block's plaintext, once decrypted */
	int last_len;           /* -1: not decrypted yet */
	unsigned char *buf;     /* GCM decrypt: the ciphertext so far */
	size_t len, cap;
	/* MAC. */
	const struct sw_hmac_keyed *hk; /* the key's keyed states (key->hmac_keyed) */
	union sw_sha_ctx hw;            /* the working inner state; wiped when op ends */
	int hmac_idx;                   /* the digest: 0 SHA256, 1 SHA384, 2 SHA512 */
	size_t mac_len;
	/* Asymmetric. */
	EVP_MD_CTX *mdctx;  /* hash-and-sign, EdDSA */
	EVP_PKEY_CTX *pctx; /* raw mechanisms (owned); hash ones: owned by mdctx */
	EVP_PKEY *signing;  /* a private EVP_PKEY for this operation only (Ed25519, RSA) */
	bool sign_kept;     /* pctx may go to the key's sign_cache (raw ECDSA signing) */
	/* RSA sign and decrypt on the key's own RSA (key->rsa, swkey_int.h). */
	bool own_rsa;
	EVP_MD *md, *mgf_md;  /* hash (PSS, OAEP, hash-and-sign), MGF1's */
	int salt;             /* PSS */
	unsigned char *label; /* OAEP */
	size_t label_len;
	size_t hash_len; /* PSS raw: the input length */
	size_t sig_len;  /* sign/verify: signature length */
};

static const char *md_name(CK_MECHANISM_TYPE m, size_t *len)
{
	switch (m) {
	case CKM_SHA256:
		*len = 32;
		return "SHA256";
	case CKM_SHA384:
		*len = 48;
		return "SHA384";
	case CKM_SHA512:
		*len = 64;
		return "SHA512";
	default:
		*len = 0;
		return NULL;
	}
}

static const char *mgf_name(CK_RSA_PKCS_MGF_TYPE m)
{
	switch (m) {
	case CKG_MGF1_SHA256:
		return "SHA256";
	case CKG_MGF1_SHA384:
		return "SHA384";
	case CKG_MGF1_SHA512:
		return "SHA512";
	default:
		return NULL;
	}
}

/* ---- the mechanism's family, key type and allowed operations ------------------- */

static CK_RV family_of(CK_MECHANISM_TYPE m, enum p11p_swop_kind kind, enum family *fam,
                       CK_MECHANISM_TYPE *hash)
{
	bool crypt = kind == P11P_SWOP_ENCRYPT || kind == P11P_SWOP_DECRYPT;

	*hash = 0;
	switch (m) {
	case CKM_AES_GCM:
		*fam = FAM_GCM;
		return crypt ? CKR_OK : CKR_MECHANISM_INVALID;
	case CKM_AES_CBC:
		*fam = FAM_CBC;
		return crypt ? CKR_OK : CKR_MECHANISM_INVALID;
	case CKM_AES_CBC_PAD:
		*fam = FAM_CBC_PAD;
		return crypt ? CKR_OK : CKR_MECHANISM_INVALID;
	case CKM_AES_CTR:
		*fam = FAM_CTR;
		return crypt ? CKR_OK : CKR_MECHANISM_INVALID;
	case CKM_RSA_PKCS:
		*fam = FAM_RSA_PKCS;
		return CKR_OK;
	case CKM_RSA_PKCS_OAEP:
		*fam = FAM_OAEP;
		return crypt ? CKR_OK : CKR_MECHANISM_INVALID;
	default:
		break;
	}
	if (crypt)
		return CKR_MECHANISM_INVALID;
	switch (m) {
	case CKM_SHA256_HMAC:
	case CKM_SHA256_HMAC_GENERAL:
		*hash = CKM_SHA256;
		*fam = FAM_HMAC;
		return CKR_OK;
	case CKM_SHA384_HMAC:
	case CKM_SHA384_HMAC_GENERAL:
		*hash = CKM_SHA384;
		*fam = FAM_HMAC;
		return CKR_OK;
	case CKM_SHA512_HMAC:
	case CKM_SHA512_HMAC_GENERAL:
		*hash = CKM_SHA512;
		*fam = FAM_HMAC;
		return CKR_OK;
	case CKM_ECDSA:
		*fam = FAM_ECDSA;
		return CKR_OK;
	case CKM_ECDSA_SHA256:
	case CKM_ECDSA_SHA384:
	case CKM_ECDSA_SHA512:
		*hash = m == CKM_ECDSA_SHA256   ? CKM_SHA256
		        : m == CKM_ECDSA_SHA384 ? CKM_SHA384
		                                : CKM_SHA512;
		*fam = FAM_ECDSA_HASH;
		return CKR_OK;
	case CKM_EDDSA:
		*fam = FAM_EDDSA;
		return CKR_OK;
	case CKM_SHA256_RSA_PKCS:
	case CKM_SHA384_RSA_PKCS:
	case CKM_SHA512_RSA_PKCS:
		*hash = m == CKM_SHA256_RSA_PKCS   ? CKM_SHA256
		        : m == CKM_SHA384_RSA_PKCS ? CKM_SHA384
		                                   : CKM_SHA512;
		*fam = FAM_RSA_HASH;
		return CKR_OK;
	case CKM_RSA_PKCS_PSS:
		*fam = FAM_PSS;
		return CKR_OK;
	case CKM_SHA256_RSA_PKCS_PSS:
	case CKM_SHA384_RSA_PKCS_PSS:
	case CKM_SHA512_RSA_PKCS_PSS:
		*hash = m == CKM_SHA256_RSA_PKCS_PSS   ? CKM_SHA256
		        : m == CKM_SHA384_RSA_PKCS_PSS ? CKM_SHA384
		                                       : CKM_SHA512;
		*fam = FAM_PSS_HASH;
		return CKR_OK;
	default:
		return CKR_MECHANISM_INVALID;
	}
}

static bool type_fits(enum family fam, const struct p11p_swkey *key)
{
	switch (fam) {
	case FAM_GCM:
	case FAM_CBC:
	case FAM_CBC_PAD:
	case FAM_CTR:
		return key->type == CKK_AES;
	case FAM_HMAC:
		return key->cls == CKO_SECRET_KEY;
	case FAM_ECDSA:
	case FAM_ECDSA_HASH:
		return key->type == CKK_EC;
	case FAM_EDDSA:
		return key->type == CKK_EC_EDWARDS;
	default:
		return key->type == CKK_RSA;
	}
}

/* ---- symmetric set-up ------------------------------------------------------------- */

/*
 * Ready contexts kept in n atomic slots: taken and given back by exchange,
 * an empty slot looked at before it is written (its line stays shared).
 */
static void *ready_take(_Atomic(void *) *slots, int n)
{
	for (int i = 0; i < n; i++) {
		void *ctx;

		if (atomic_load_explicit(&slots[i], memory_order_relaxed) == NULL)
			continue;
		if ((ctx = atomic_exchange(&slots[i], NULL)) != NULL)
			return ctx;
	}
	return NULL;
}

/* True when a slot took ctx. */
static bool ready_give(_Atomic(void *) *slots, int n, void *ctx)
{
	for (int i = 0; i < n && ctx != NULL; i++) {
		void *expected = NULL;

		if (atomic_compare_exchange_strong(&slots[i], &expected, ctx))
			return true;
	}
	return false;
}

static void *cache_take(struct p11p_swkey *key, int slot)
{
	if (!(key->flags & P11P_SWKEY_CACHE_CTX))
		return NULL;
	return ready_take(&key->cache[slot], 1);
}

/* True when the cache took ctx. */
static bool cache_give(struct p11p_swkey *key, int slot, void *ctx)
{
	return (key->flags & P11P_SWKEY_CACHE_CTX) && ready_give(&key->cache[slot], 1, ctx);
}

static CK_RV gcm_setup(struct p11p_swop *op, const CK_MECHANISM *mech)
{
	const CK_GCM_PARAMS *p = mech->pParameter;

	if (p == NULL || mech->ulParameterLen != sizeof(CK_GCM_PARAMS))
		return CKR_MECHANISM_PARAM_INVALID;
	if (p->pIv == NULL || p->ulIvLen < 1 || p->ulIvLen > P11P_SWKEY_GCM_IV_MAX)
		return CKR_MECHANISM_PARAM_INVALID;
	if ((p->pAAD == NULL && p->ulAADLen > 0) || p->ulAADLen > 0xffffffffUL)
		return CKR_MECHANISM_PARAM_INVALID;
	switch (p->ulTagBits) {
	case 32:
	case 64:
	case 96:
	case 104:
	case 112:
	case 120:
	case 128:
		break;
	default:
		return CKR_MECHANISM_PARAM_INVALID;
	}
	memcpy(op->iv, p->pIv, p->ulIvLen);
	op->iv_len = p->ulIvLen;
	op->tag_len = p->ulTagBits / 8;
	if (p->ulAADLen > 0) {
		op->aad = p11p_malloc(p->ulAADLen);
		if (op->aad == NULL)
			return CKR_HOST_MEMORY;
		memcpy(op->aad, p->pAAD, p->ulAADLen);
		op->aad_len = p->ulAADLen;
	}
	return CKR_OK;
}

static CK_RV ctr_setup(struct p11p_swop *op, const CK_MECHANISM *mech)
{
	const CK_AES_CTR_PARAMS *p = mech->pParameter;
	u128 ctr = 0, mask;

	if (p == NULL || mech->ulParameterLen != sizeof(CK_AES_CTR_PARAMS))
		return CKR_MECHANISM_PARAM_INVALID;
	if (p->ulCounterBits < 1 || p->ulCounterBits > 128)
		return CKR_MECHANISM_PARAM_INVALID;
	memcpy(op->iv, p->cb, 16);
	op->iv_len = 16;
	for (int i = 0; i < 16; i++)
		ctr = (ctr << 8) | p->cb[i];
	if (p->ulCounterBits == 128) {
		/* 2^128 - ctr blocks; 2^128 - 1 is as good as 2^128 here. */
		op->ctr_blocks = ctr == 0 ? ~(u128)0 : (u128)0 - ctr;
	} else {
		mask = ((u128)1 << p->ulCounterBits) - 1;
		op->ctr_blocks = ((u128)1 << p->ulCounterBits) - (ctr & mask);
	}
	return CKR_OK;
}

/* A keyed cipher context for op's family and direction. */
static CK_RV cipher_ctx(struct p11p_swop *op)
{
	struct p11p_swkey *key = op->key;
	int enc = op->kind == P11P_SWOP_ENCRYPT;

	switch (op->fam) {
	case FAM_GCM:
		op->slot = SW_CACHE_GCM;
		break;
	case FAM_CTR:
		op->slot = SW_CACHE_CTR;
		break;
	default:
		op->slot = enc ? SW_CACHE_CBC_ENC : SW_CACHE_CBC_DEC;
		break;
	}
	op->cipher = p11p_swkey_cipher(key, op->slot);
	op->cctx = cache_take(key, op->slot);
	if (op->cctx != NULL) {
		op->keyed = true;
		return CKR_OK;
	}
	/* Keyed by cipher_start(), with the IV in the same call. */
	op->cctx = p11p_cipher_ctx_new(op->cipher);
	return op->cctx != NULL ? CKR_OK : CKR_HOST_MEMORY;
}

static bool feed(const struct p11p_swop *op, unsigned char *out, const unsigned char *in,
                 uint64_t len, size_t *outl_total)
{
	size_t total = 0;

	while (len > 0) {
		size_t n = len > UPDATE_CHUNK ? UPDATE_CHUNK : (size_t)len, outl = 0;

		if (!p11p_cipher_update(op->cipher, op->cctx, out, &outl, in, n) || outl > n + 16)
			return false;
		in += n;
		if (out != NULL)
			out += outl;
		total += outl;
		len -= (uint64_t)n;
	}
	if (outl_total != NULL)
		*outl_total = total;
	return true;
}

/* (Re)starts the cipher stream: IV, padding, GCM's AAD. */
static bool cipher_start(struct p11p_swop *op)
{
	bool enc = op->kind == P11P_SWOP_ENCRYPT;

	/* Key (a fresh context) and IV in one call; the provider takes GCM's IV of any length. */
	if (!p11p_cipher_init(op->cipher, op->cctx, enc,
	                      op->keyed ? NULL : p11p_secret_data(op->key->value), op->key->len,
	                      op->iv, op->iv_len))
		return false;
	op->keyed = true;
	/* Padding is a CBC setting (a parameter round trip: not for GCM, CTR). */
	if ((op->fam == FAM_CBC || op->fam == FAM_CBC_PAD) &&
	    !p11p_cipher_padding(op->cipher, op->cctx, op->fam == FAM_CBC_PAD && enc))
		return false;
	if (op->fam == FAM_GCM && op->aad_len > 0 && !feed(op, NULL, op->aad, op->aad_len, NULL))
		return false;
	op->done = 0;
	op->pending = 0;
	op->tail_len = 0;
	op->last_len = -1;
	op->len = 0;
	return true;
}

/*
 * HMAC on SHA-2's own functions (RFC 2104). OpenSSL's EVP_MAC context keeps
 * the keyed states in ordinary heap, so it would have to be keyed for each
 * operation and scrubbed after; instead the key's keyed states
 * (swkey_int.h, struct sw_hmac_keyed) are computed once into a p11p_secret
 * and each operation copies the inner one into op->hw (on the stack for
 * single-part calls, in the op for multi-part ones), wiped when the
 * operation ends (op_cleanup). idx: 0 SHA-256, 1 SHA-384, 2 SHA-512.
 */
static const size_t sha_block[3] = {64, 128, 128}, sha_len[3] = {32, 48, 64};

static void sha_init(int idx, union sw_sha_ctx *c)
{
	if (idx == 0)
		SHA256_Init(&c->s256);
	else if (idx == 1)
		SHA384_Init(&c->s512);
	else
		SHA512_Init(&c->s512);
}

static void sha_update(int idx, union sw_sha_ctx *c, const void *p, size_t n)
{
	if (idx == 0)
		SHA256_Update(&c->s256, p, n);
	else
		SHA512_Update(&c->s512, p, n); /* SHA-384 too */
}

static void sha_final(int idx, union sw_sha_ctx *c, unsigned char *md)
{
	if (idx == 0)
		SHA256_Final(md, &c->s256);
	else if (idx == 1)
		SHA384_Final(md, &c->s512);
	else
		SHA512_Final(md, &c->s512);
}

static void sha_copy(int idx, union sw_sha_ctx *to, const union sw_sha_ctx *from)
{
	if (idx == 0)
		to->s256 = from->s256;
	else
		to->s512 = from->s512;
}

/*
 * The states in their secret: a secret's bytes are not aligned for them, so
 * the secret has KEYED_ALIGN - 1 bytes more and the states start at the
 * first aligned address.
 */
#define KEYED_ALIGN _Alignof(struct sw_hmac_keyed)
#define KEYED_SIZE  (sizeof(struct sw_hmac_keyed) + KEYED_ALIGN - 1)

static struct sw_hmac_keyed *keyed_in(const struct p11p_secret *s)
{
	uintptr_t p = (uintptr_t)p11p_secret_data(s);

	/* the secret's own pages are writable: the states are computed there */
	return (struct sw_hmac_keyed *)((p + KEYED_ALIGN - 1) & ~(uintptr_t)(KEYED_ALIGN - 1));
}

/* The keyed states of key for digest idx, computed in place in a new secret. */
static struct p11p_secret *hmac_keyed_new(const struct p11p_swkey *key, int idx)
{
	static const unsigned char zero[KEYED_SIZE];
	const unsigned char *kv = p11p_secret_data(key->value);
	size_t kl = p11p_secret_len(key->value), bs = sha_block[idx];
	unsigned char k[128], pad[128];
	struct p11p_secret *s = p11p_secret_new(zero, sizeof(zero));
	struct sw_hmac_keyed *st;

	if (s == NULL)
		return NULL;
	st = keyed_in(s);
	memset(k, 0, sizeof(k));
	if (kl > bs) {
		sha_init(idx, &st->inner);
		sha_update(idx, &st->inner, kv, kl);
		sha_final(idx, &st->inner, k);
	} else if (kl > 0) {
		memcpy(k, kv, kl);
	}
	for (size_t i = 0; i < bs; i++)
		pad[i] = k[i] ^ 0x36;
	sha_init(idx, &st->inner);
	sha_update(idx, &st->inner, pad, bs);
	for (size_t i = 0; i < bs; i++)
		pad[i] = k[i] ^ 0x5c;
	sha_init(idx, &st->outer);
	sha_update(idx, &st->outer, pad, bs);
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(pad, sizeof(pad));
	return s;
}

/*
 * The keyed states, computed at the first use of the digest: threads racing
 * here each compute them, one publishes (compare-and-swap), the others free
 * theirs. Later operations only load the pointer (no lock).
 */
static const struct sw_hmac_keyed *hmac_keyed(struct p11p_swkey *key, int idx)
{
	struct p11p_secret *s = atomic_load_explicit(&key->hmac_keyed[idx], memory_order_acquire),
	                   *expected = NULL;

	if (s == NULL) {
		s = hmac_keyed_new(key, idx);
		if (s == NULL)
			return NULL;
		if (!atomic_compare_exchange_strong_explicit(&key->hmac_keyed[idx], &expected, s,
		                                             memory_order_acq_rel,
		                                             memory_order_acquire)) {
			p11p_secret_free(s);
			s = expected;
		}
	}
	return keyed_in(s);
}

static CK_RV hmac_setup(struct p11p_swop *op, const CK_MECHANISM *mech, CK_MECHANISM_TYPE hash)
{
	struct p11p_swkey *key = op->key;
	size_t dlen = 0;
	int idx;

	(void)md_name(hash, &dlen);
	idx = hash == CKM_SHA256 ? 0 : hash == CKM_SHA384 ? 1 : 2;
	if (mech->mechanism == CKM_SHA256_HMAC || mech->mechanism == CKM_SHA384_HMAC ||
	    mech->mechanism == CKM_SHA512_HMAC) {
		if (mech->pParameter != NULL || mech->ulParameterLen != 0)
			return CKR_MECHANISM_PARAM_INVALID;
		op->mac_len = dlen;
	} else {
		CK_ULONG n;

		if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(CK_ULONG))
			return CKR_MECHANISM_PARAM_INVALID;
		memcpy(&n, mech->pParameter, sizeof(n));
		if (n < 1 || n > dlen)
			return CKR_MECHANISM_PARAM_INVALID;
		op->mac_len = n;
	}
	op->sig_len = op->mac_len;
	op->hmac_idx = idx;
	op->hk = hmac_keyed(key, idx);
	if (op->hk == NULL)
		return CKR_HOST_MEMORY;
	sha_copy(idx, &op->hw, &op->hk->inner);
	return CKR_OK;
}

/* ---- asymmetric set-up ------------------------------------------------------------ */

static CK_RV pss_params(struct p11p_swop *op, const CK_MECHANISM *mech, CK_MECHANISM_TYPE hash,
                        const char **md, const char **mgf, int *salt)
{
	const CK_RSA_PKCS_PSS_PARAMS *p = mech->pParameter;
	size_t hlen = 0;

	if (p == NULL || mech->ulParameterLen != sizeof(*p))
		return CKR_MECHANISM_PARAM_INVALID;
	*md = md_name(p->hashAlg, &hlen);
	*mgf = mgf_name(p->mgf);
	if (*md == NULL || *mgf == NULL || (hash != 0 && p->hashAlg != hash))
		return CKR_MECHANISM_PARAM_INVALID;
	if (op->key->len < hlen + 2 || p->sLen > op->key->len - hlen - 2)
		return CKR_MECHANISM_PARAM_INVALID;
	op->hash_len = hlen;
	*salt = (int)p->sLen;
	return CKR_OK;
}

static CK_RV pss_apply(EVP_PKEY_CTX *pctx, const char *mgf, int salt)
{
	if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, salt) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, mgf, NULL) <= 0)
		return CKR_GENERAL_ERROR;
	return CKR_OK;
}

static CK_RV oaep_setup(struct p11p_swop *op, const CK_MECHANISM *mech)
{
	const CK_RSA_PKCS_OAEP_PARAMS *p = mech->pParameter;
	const char *md, *mgf;
	size_t hlen = 0;
	unsigned char *label = NULL;

	if (p == NULL || mech->ulParameterLen != sizeof(*p))
		return CKR_MECHANISM_PARAM_INVALID;
	md = md_name(p->hashAlg, &hlen);
	mgf = mgf_name(p->mgf);
	if (md == NULL || mgf == NULL)
		return CKR_MECHANISM_PARAM_INVALID;
	if (p->source != CKZ_DATA_SPECIFIED && !(p->source == 0 && p->ulSourceDataLen == 0))
		return CKR_MECHANISM_PARAM_INVALID;
	if (p->pSourceData == NULL && p->ulSourceDataLen > 0)
		return CKR_MECHANISM_PARAM_INVALID;
	if (op->key->len < 2 * hlen + 2)
		return CKR_MECHANISM_PARAM_INVALID;
	op->hash_len = hlen;
	if (op->own_rsa) {
		op->md = EVP_MD_fetch(p11p_ossl_ctx(), md, NULL);
		op->mgf_md = EVP_MD_fetch(p11p_ossl_ctx(), mgf, NULL);
		if (op->md == NULL || op->mgf_md == NULL)
			return CKR_GENERAL_ERROR;
		if (p->ulSourceDataLen > 0) {
			if (p->ulSourceDataLen > INT32_MAX)
				return CKR_MECHANISM_PARAM_INVALID;
			op->label = OPENSSL_memdup(p->pSourceData, p->ulSourceDataLen);
			if (op->label == NULL)
				return CKR_HOST_MEMORY;
			op->label_len = p->ulSourceDataLen;
		}
		return CKR_OK;
	}
	if (EVP_PKEY_CTX_set_rsa_padding(op->pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md_name(op->pctx, md, NULL) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md_name(op->pctx, mgf, NULL) <= 0)
		return CKR_GENERAL_ERROR;
	if (p->ulSourceDataLen > 0) {
		if (p->ulSourceDataLen > INT32_MAX)
			return CKR_MECHANISM_PARAM_INVALID;
		label = OPENSSL_memdup(p->pSourceData, p->ulSourceDataLen);
		if (label == NULL)
			return CKR_HOST_MEMORY;
		if (EVP_PKEY_CTX_set0_rsa_oaep_label(op->pctx, label, (int)p->ulSourceDataLen) <=
		    0) {
			OPENSSL_free(label);
			return CKR_GENERAL_ERROR;
		}
	}
	return CKR_OK;
}

/* Raw ECDSA signing: a context the key keeps ready, else a new one that may go there at the end. */
static CK_RV ecdsa_sign_ctx(struct p11p_swop *op)
{
	op->sign_kept = true;
	op->pctx = ready_take(op->key->sign_cache, SW_SIGN_CACHE);
	if (op->pctx != NULL)
		return CKR_OK;
	op->pctx = EVP_PKEY_CTX_new_from_pkey(p11p_ossl_ctx(), op->key->pkey, NULL);
	if (op->pctx == NULL)
		return CKR_HOST_MEMORY;
	return EVP_PKEY_sign_init(op->pctx) > 0 ? CKR_OK : CKR_GENERAL_ERROR;
}

static CK_RV asym_setup(struct p11p_swop *op, const CK_MECHANISM *mech, CK_MECHANISM_TYPE hash)
{
	OSSL_LIB_CTX *lib = p11p_ossl_ctx();
	struct p11p_swkey *key = op->key;
	bool sign = op->kind == P11P_SWOP_SIGN;
	const char *md = NULL, *mgf = NULL;
	size_t hlen = 0;
	int salt = 0, ok;
	CK_RV rv;

	if (lib == NULL)
		return CKR_HOST_MEMORY;
	if ((op->kind == P11P_SWOP_SIGN || op->kind == P11P_SWOP_DECRYPT) &&
	    key->cls != CKO_PRIVATE_KEY)
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	op->sig_len = key->type == CKK_EC           ? 2 * key->len
	              : key->type == CKK_EC_EDWARDS ? 64
	                                            : key->len;
	switch (op->fam) {
	case FAM_EDDSA:
		if (mech->pParameter != NULL || mech->ulParameterLen != 0) {
			const struct sw_eddsa_params *e = mech->pParameter;

			if (e == NULL || mech->ulParameterLen != sizeof(*e) || e->phFlag ||
			    e->ulContextDataLen != 0)
				return CKR_MECHANISM_PARAM_INVALID;
		}
		op->single_only = true;
		break;
	case FAM_ECDSA:
	case FAM_RSA_PKCS:
		if (mech->pParameter != NULL || mech->ulParameterLen != 0)
			return CKR_MECHANISM_PARAM_INVALID;
		op->single_only = true;
		break;
	case FAM_OAEP:
		op->single_only = true;
		break;
	case FAM_PSS:
		rv = pss_params(op, mech, 0, &md, &mgf, &salt);
		if (rv != CKR_OK)
			return rv;
		op->single_only = true;
		break;
	case FAM_PSS_HASH:
		rv = pss_params(op, mech, hash, &md, &mgf, &salt);
		if (rv != CKR_OK)
			return rv;
		break;
	default: /* ECDSA_HASH, RSA_HASH */
		if (mech->pParameter != NULL || mech->ulParameterLen != 0)
			return CKR_MECHANISM_PARAM_INVALID;
		md = md_name(hash, &hlen);
		break;
	}
	if (sign && op->fam == FAM_ECDSA)
		return ecdsa_sign_ctx(op);
	/* The key's own RSA (p11p_swkey_rsa_private: a copy per operation, blinded by the key). */
	if (key->type == CKK_RSA && key->rsa != NULL &&
	    (op->kind == P11P_SWOP_SIGN || op->kind == P11P_SWOP_DECRYPT)) {
		op->own_rsa = true;
		if (op->fam == FAM_OAEP)
			return oaep_setup(op, mech);
		if (md != NULL && (op->md = EVP_MD_fetch(lib, md, NULL)) == NULL)
			return CKR_GENERAL_ERROR;
		if (mgf != NULL && (op->mgf_md = EVP_MD_fetch(lib, mgf, NULL)) == NULL)
			return CKR_GENERAL_ERROR;
		op->salt = salt;
		if (op->fam == FAM_RSA_HASH || op->fam == FAM_PSS_HASH) {
			op->mdctx = EVP_MD_CTX_new();
			if (op->mdctx == NULL)
				return CKR_HOST_MEMORY;
			if (!EVP_DigestInit_ex2(op->mdctx, op->md, NULL))
				return CKR_GENERAL_ERROR;
		}
		return CKR_OK;
	}
	/*
	 * The private key for this operation only, where OpenSSL would otherwise
	 * keep key-derived data in ordinary heap: Ed25519 (kept as its seed), RSA
	 * (which caches Montgomery contexts holding p and q in the key: a copy's
	 * caches go, cleansed, with the copy).
	 */
	if (op->fam == FAM_EDDSA && sign) {
		op->signing = p11p_swkey_ed25519_private(key);
		if (op->signing == NULL)
			return CKR_FUNCTION_FAILED;
	} else if (key->type == CKK_RSA &&
	           (op->kind == P11P_SWOP_SIGN || op->kind == P11P_SWOP_DECRYPT)) {
		op->signing = EVP_PKEY_dup(key->pkey);
		if (op->signing == NULL)
			return CKR_HOST_MEMORY;
	}
	if (op->fam == FAM_ECDSA_HASH || op->fam == FAM_RSA_HASH || op->fam == FAM_PSS_HASH ||
	    op->fam == FAM_EDDSA) {
		EVP_PKEY_CTX *pctx = NULL;
		EVP_PKEY *pk = op->signing != NULL ? op->signing : key->pkey;

		op->mdctx = EVP_MD_CTX_new();
		if (op->mdctx == NULL)
			return CKR_HOST_MEMORY;
		ok = sign ? EVP_DigestSignInit_ex(op->mdctx, &pctx, md, lib, NULL, pk, NULL)
		          : EVP_DigestVerifyInit_ex(op->mdctx, &pctx, md, lib, NULL, key->pkey,
		                                    NULL);
		if (ok <= 0)
			return CKR_GENERAL_ERROR;
		if (op->fam == FAM_PSS_HASH)
			return pss_apply(pctx, mgf, salt);
		if (op->fam == FAM_RSA_HASH &&
		    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0)
			return CKR_GENERAL_ERROR;
		return CKR_OK;
	}
	op->pctx =
	    EVP_PKEY_CTX_new_from_pkey(lib, op->signing != NULL ? op->signing : key->pkey, NULL);
	if (op->pctx == NULL)
		return CKR_HOST_MEMORY;
	switch (op->kind) {
	case P11P_SWOP_SIGN:
		ok = EVP_PKEY_sign_init(op->pctx);
		break;
	case P11P_SWOP_VERIFY:
		ok = EVP_PKEY_verify_init(op->pctx);
		break;
	case P11P_SWOP_ENCRYPT:
		ok = EVP_PKEY_encrypt_init(op->pctx);
		break;
	default:
		ok = EVP_PKEY_decrypt_init(op->pctx);
		break;
	}
	if (ok <= 0)
		return CKR_GENERAL_ERROR;
	if (op->fam == FAM_RSA_PKCS)
		return EVP_PKEY_CTX_set_rsa_padding(op->pctx, RSA_PKCS1_PADDING) > 0
		           ? CKR_OK
		           : CKR_GENERAL_ERROR;
	if (op->fam == FAM_OAEP)
		return oaep_setup(op, mech);
	if (op->fam == FAM_PSS) {
		EVP_MD *fetched = EVP_MD_fetch(lib, md, NULL);

		rv = pss_apply(op->pctx, mgf, salt);
		if (rv == CKR_OK &&
		    (fetched == NULL || EVP_PKEY_CTX_set_signature_md(op->pctx, fetched) <= 0))
			rv = CKR_GENERAL_ERROR;
		EVP_MD_free(fetched);
		return rv;
	}
	return CKR_OK; /* raw ECDSA */
}

/* ---- init, free ------------------------------------------------------------------- */

/* Sets up *op (zeroed by the caller); ref: op holds a reference on key. */
static CK_RV op_setup(struct p11p_swop *op, struct p11p_swkey *key, enum p11p_swop_kind kind,
                      const CK_MECHANISM *mech, bool ref)
{
	enum family fam;
	CK_MECHANISM_TYPE hash = 0;
	CK_RV rv;

	rv = family_of(mech->mechanism, kind, &fam, &hash);
	if (rv != CKR_OK)
		return rv;
	if (!type_fits(fam, key))
		return CKR_KEY_TYPE_INCONSISTENT;
	op->key = ref ? p11p_swkey_ref(key) : key;
	op->owns_ref = ref;
	op->kind = kind;
	op->fam = fam;
	op->slot = -1;
	op->last_len = -1;
	switch (fam) {
	case FAM_GCM:
		rv = gcm_setup(op, mech);
		break;
	case FAM_CBC:
	case FAM_CBC_PAD:
		if (mech->pParameter == NULL || mech->ulParameterLen != 16) {
			rv = CKR_MECHANISM_PARAM_INVALID;
			break;
		}
		memcpy(op->iv, mech->pParameter, 16);
		op->iv_len = 16;
		rv = CKR_OK;
		break;
	case FAM_CTR:
		rv = ctr_setup(op, mech);
		break;
	case FAM_HMAC:
		rv = hmac_setup(op, mech, hash);
		break;
	default:
		rv = asym_setup(op, mech, hash);
		break;
	}
	if (rv == CKR_OK && fam <= FAM_CTR)
		rv = cipher_ctx(op);
	if (rv == CKR_OK)
		op->active = true;
	return rv;
}

/* Frees what op holds (not op itself); wipes the plaintext it may hold. */
static void op_cleanup(struct p11p_swop *op)
{
	if (op->key == NULL)
		return;
	/* What each family's set-up makes (gcm_setup, hmac_setup, asym_setup), and nothing else. */
	if (op->fam <= FAM_CTR) {
		if (!(op->clean && op->keyed && cache_give(op->key, op->slot, op->cctx)))
			p11p_cipher_ctx_free(op->cipher, op->cctx);
		p11p_free(op->aad);
		p11p_free(op->buf);
		if (op->fam == FAM_CBC_PAD) {
			p11p_wipe(op->tail, sizeof(op->tail));
			p11p_wipe(op->last, sizeof(op->last));
		}
	} else if (op->fam == FAM_HMAC) {
		OPENSSL_cleanse(&op->hw, sizeof(op->hw));
	} else {
		/* An ECDSA signing context that signed goes back to the key (no key data in it). */
		if (op->sign_kept && op->clean &&
		    ready_give(op->key->sign_cache, SW_SIGN_CACHE, op->pctx))
			op->pctx = NULL;
		EVP_MD_CTX_free(op->mdctx);
		EVP_PKEY_CTX_free(op->pctx);
		EVP_PKEY_free(op->signing); /* cleanses the seed, RSA's Montgomery contexts */
		EVP_MD_free(op->md);
		EVP_MD_free(op->mgf_md);
		OPENSSL_free(op->label);
	}
	if (op->owns_ref)
		p11p_swkey_free(op->key);
	op->key = NULL;
}

static CK_RV swop_new(struct p11p_swkey *key, enum p11p_swop_kind kind, const CK_MECHANISM *mech,
                      struct p11p_swop **out, bool ref)
{
	struct p11p_swop *op;
	CK_RV rv;

	p11p_return_val_if_fail(key != NULL && mech != NULL && out != NULL, CKR_ARGUMENTS_BAD);
	p11p_return_val_if_fail(kind >= P11P_SWOP_ENCRYPT && kind <= P11P_SWOP_VERIFY,
	                        CKR_ARGUMENTS_BAD);
	op = ref ? NULL : *out;
	*out = NULL;
	if (op != NULL) {
		/* An ended operation's object (p11p_swop_end): it holds nothing any more. */
		op_cleanup(op);
		explicit_bzero(op, sizeof(*op));
	} else if ((op = p11p_calloc(1, sizeof(*op))) == NULL) {
		return CKR_HOST_MEMORY;
	}
	rv = op_setup(op, key, kind, mech, ref);
	if (rv != CKR_OK) {
		p11p_swop_free(op);
		return rv;
	}
	*out = op;
	return CKR_OK;
}

CK_RV p11p_swop_init(struct p11p_swkey *key, enum p11p_swop_kind kind, const CK_MECHANISM *mech,
                     struct p11p_swop **out)
{
	return swop_new(key, kind, mech, out, true);
}

CK_RV p11p_swop_init_borrow(struct p11p_swkey *key, enum p11p_swop_kind kind,
                            const CK_MECHANISM *mech, struct p11p_swop **io)
{
	return swop_new(key, kind, mech, io, false);
}

void p11p_swop_end(struct p11p_swop *op)
{
	if (op == NULL)
		return;
	op_cleanup(op);
	op->active = false;
}

void p11p_swop_free(struct p11p_swop *op)
{
	if (op == NULL)
		return;
	op_cleanup(op);
	p11p_free(op);
}

bool p11p_swop_active(const struct p11p_swop *op)
{
	return op != NULL && op->active;
}

/* PKCS#11 5.2: a size query or a short buffer leaves the operation active. */
static CK_RV done(struct p11p_swop *op, CK_RV rv, const void *out)
{
	if (!(rv == CKR_BUFFER_TOO_SMALL || (rv == CKR_OK && out == NULL)))
		op->active = false;
	if (rv == CKR_OK && out != NULL)
		op->clean = true;
	return rv;
}

static CK_RV size_check(CK_ULONG need, const unsigned char *out, CK_ULONG *out_len)
{
	if (out == NULL) {
		*out_len = need;
		return CKR_OK;
	}
	if (*out_len < need) {
		*out_len = need;
		return CKR_BUFFER_TOO_SMALL;
	}
	return CKR_OK;
}

/* ---- symmetric streams ------------------------------------------------------------ */

/* CTR: may n more bytes be processed without the counter wrapping? */
static bool ctr_room(const struct p11p_swop *op, uint64_t n)
{
	u128 bytes = (u128)op->done + n;
	u128 blocks = (bytes + 15) / 16;

	return blocks <= op->ctr_blocks;
}

/* Output length of an update of n bytes. */
static CK_RV update_len(const struct p11p_swop *op, CK_ULONG n, CK_ULONG *need)
{
	bool enc = op->kind == P11P_SWOP_ENCRYPT;
	size_t total;

	switch (op->fam) {
	case FAM_GCM:
		if (!enc) {
			*need = 0;
			return CKR_OK;
		}
		if ((uint64_t)op->done + n > GCM_MAX_DATA)
			return CKR_DATA_LEN_RANGE;
		*need = n;
		return CKR_OK;
	case FAM_CTR:
		if (!ctr_room(op, n))
			return enc ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
		*need = n;
		return CKR_OK;
	case FAM_CBC_PAD:
		if (!enc) {
			total = op->tail_len + n;
			*need = total - (total % 16 ? total % 16 : total ? 16 : 0);
			return CKR_OK;
		}
		/* fall through */
	default:
		*need = (op->pending + n) / 16 * 16;
		return CKR_OK;
	}
}

static CK_RV sym_update(struct p11p_swop *op, const unsigned char *in, CK_ULONG in_len,
                        unsigned char *out, CK_ULONG *out_len)
{
	CK_ULONG need = 0;
	size_t outl = 0;
	CK_RV rv;

	rv = update_len(op, in_len, &need);
	if (rv != CKR_OK)
		return rv;
	rv = size_check(need, out, out_len);
	if (rv != CKR_OK || out == NULL)
		return rv;
	if (!op->started) {
		if (!cipher_start(op))
			return CKR_GENERAL_ERROR;
		op->started = true;
	}
	if (op->fam == FAM_GCM && op->kind == P11P_SWOP_DECRYPT) {
		/* Nothing before the tag is checked: keep the ciphertext. */
		if (in_len > GCM_MAX_DATA + 16 - op->len)
			return CKR_ENCRYPTED_DATA_LEN_RANGE;
		if (op->len + in_len > op->cap) {
			size_t cap = op->cap ? op->cap : 256;
			unsigned char *nb;

			while (cap < op->len + in_len)
				cap *= 2;
			nb = p11p_realloc(op->buf, cap);
			if (nb == NULL)
				return CKR_HOST_MEMORY;
			op->buf = nb;
			op->cap = cap;
		}
		memcpy(op->buf + op->len, in, in_len);
		op->len += in_len;
		*out_len = 0;
		return CKR_OK;
	}
	if (op->fam == FAM_CBC_PAD && op->kind == P11P_SWOP_DECRYPT) {
		/* Hold back the last (possibly partial) block: it carries the padding. */
		size_t total = op->tail_len + in_len, keep = total - need, from_in = need;
		size_t o1 = 0, o2 = 0;

		if (need > 0) {
			from_in = need - op->tail_len;
			if (!feed(op, out, op->tail, op->tail_len, &o1) ||
			    !feed(op, out + o1, in, from_in, &o2) || o1 + o2 != need)
				return CKR_GENERAL_ERROR;
			memcpy(op->tail, in + from_in, keep);
		} else {
			memcpy(op->tail + op->tail_len, in, in_len);
		}
		op->tail_len = keep;
		*out_len = need;
		return CKR_OK;
	}
	if (!feed(op, out, in, in_len, &outl) || outl != need)
		return CKR_GENERAL_ERROR;
	op->done += in_len;
	if (op->fam == FAM_CBC || op->fam == FAM_CBC_PAD)
		op->pending = (op->pending + in_len) % 16;
	*out_len = need;
	return CKR_OK;
}

/* CBC_PAD decrypt: the last block's plaintext (once), the padding checked. */
static CK_RV cbc_pad_last(struct p11p_swop *op)
{
	unsigned char blk[16];
	size_t outl = 0;
	unsigned pad, bad;

	if (op->last_len >= 0)
		return CKR_OK;
	if (op->tail_len != 16)
		return CKR_ENCRYPTED_DATA_LEN_RANGE;
	if (!feed(op, blk, op->tail, 16, &outl) || outl != 16) {
		p11p_wipe(blk, sizeof(blk));
		return CKR_GENERAL_ERROR;
	}
	pad = blk[15];
	bad = (unsigned)(pad == 0) | (unsigned)(pad > 16);
	for (unsigned i = 0; i < 16; i++) {
		/* constant time over the block: only bytes inside the padding count */
		unsigned in_pad = (unsigned)(i >= 16 - (pad > 16 ? 16 : pad));

		bad |= in_pad & (unsigned)(blk[i] != pad);
	}
	if (bad) {
		p11p_wipe(blk, sizeof(blk));
		return CKR_ENCRYPTED_DATA_INVALID;
	}
	memcpy(op->last, blk, 16);
	op->last_len = (int)(16 - pad);
	p11p_wipe(blk, sizeof(blk));
	return CKR_OK;
}

static CK_RV sym_final(struct p11p_swop *op, unsigned char *out, CK_ULONG *out_len)
{
	bool enc = op->kind == P11P_SWOP_ENCRYPT;
	size_t outl = 0;
	CK_ULONG need;
	CK_RV rv;

	if (!op->started) {
		if (!cipher_start(op))
			return CKR_GENERAL_ERROR;
		op->started = true;
	}
	switch (op->fam) {
	case FAM_CBC:
		if (op->pending != 0)
			return enc ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
		rv = size_check(0, out, out_len);
		if (rv != CKR_OK || out == NULL)
			return rv;
		*out_len = 0;
		return CKR_OK;
	case FAM_CTR:
		rv = size_check(0, out, out_len);
		if (rv != CKR_OK || out == NULL)
			return rv;
		*out_len = 0;
		return CKR_OK;
	case FAM_CBC_PAD:
		if (enc) {
			rv = size_check(16, out, out_len);
			if (rv != CKR_OK || out == NULL)
				return rv;
			if (!p11p_cipher_final(op->cipher, op->cctx, out, &outl) || outl != 16)
				return CKR_GENERAL_ERROR;
			*out_len = 16;
			return CKR_OK;
		}
		rv = cbc_pad_last(op);
		if (rv != CKR_OK)
			return rv;
		rv = size_check((CK_ULONG)op->last_len, out, out_len);
		if (rv != CKR_OK || out == NULL)
			return rv;
		memcpy(out, op->last, (size_t)op->last_len);
		*out_len = (CK_ULONG)op->last_len;
		return CKR_OK;
	default: /* GCM */
		break;
	}
	if (enc) {
		rv = size_check(op->tag_len, out, out_len);
		if (rv != CKR_OK || out == NULL)
			return rv;
		if (!p11p_cipher_final(op->cipher, op->cctx, out, &outl) || outl != 0 ||
		    !p11p_cipher_get_tag(op->cipher, op->cctx, out, op->tag_len))
			return CKR_GENERAL_ERROR;
		*out_len = op->tag_len;
		return CKR_OK;
	}
	if (op->len < op->tag_len)
		return CKR_ENCRYPTED_DATA_LEN_RANGE;
	need = op->len - op->tag_len;
	rv = size_check(need, out, out_len);
	if (rv != CKR_OK || out == NULL)
		return rv;
	if (!p11p_cipher_set_tag(op->cipher, op->cctx, op->buf + need, op->tag_len) ||
	    !feed(op, out, op->buf, need, NULL)) {
		p11p_wipe(out, need);
		return CKR_GENERAL_ERROR;
	}
	if (!p11p_cipher_final(op->cipher, op->cctx, out + need, &outl) || outl != 0) {
		/* Nothing of an unauthenticated message reaches the caller. */
		p11p_wipe(out, need);
		return CKR_ENCRYPTED_DATA_INVALID;
	}
	*out_len = need;
	return CKR_OK;
}

/* Single-part symmetric: restarts the stream, so a retry after a short buffer works. */
static CK_RV sym_run(struct p11p_swop *op, const unsigned char *in, CK_ULONG in_len,
                     unsigned char *out, CK_ULONG *out_len)
{
	bool enc = op->kind == P11P_SWOP_ENCRYPT;
	CK_ULONG need, a = 0, b = 0;
	CK_RV rv;

	switch (op->fam) {
	case FAM_GCM:
		if (enc) {
			if ((uint64_t)in_len > GCM_MAX_DATA)
				return CKR_DATA_LEN_RANGE;
			need = in_len + op->tag_len;
		} else {
			if (in_len < op->tag_len || (uint64_t)(in_len - op->tag_len) > GCM_MAX_DATA)
				return CKR_ENCRYPTED_DATA_LEN_RANGE;
			need = in_len - op->tag_len;
		}
		break;
	case FAM_CTR:
		op->done = 0;
		if (!ctr_room(op, in_len))
			return enc ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
		need = in_len;
		break;
	case FAM_CBC:
		if (in_len % 16 != 0)
			return enc ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
		need = in_len;
		break;
	default: /* CBC_PAD */
		if (enc) {
			need = in_len / 16 * 16 + 16;
			break;
		}
		if (in_len == 0 || in_len % 16 != 0)
			return CKR_ENCRYPTED_DATA_LEN_RANGE;
		need = in_len; /* an upper bound: the exact length comes from the padding */
		if (out != NULL && *out_len < in_len) {
			/* Decrypt aside to learn the exact length. */
			size_t map_len = 0;
			int locked = 0;
			unsigned char *tmp = p11p_locked_alloc(in_len, &map_len, &locked);

			if (tmp == NULL)
				return CKR_HOST_MEMORY;
			a = in_len;
			op->started = false;
			rv = sym_update(op, in, in_len, tmp, &a);
			if (rv == CKR_OK) {
				b = in_len - a;
				rv = sym_final(op, tmp + a, &b);
			}
			if (rv == CKR_OK) {
				rv = size_check(a + b, out, out_len);
				if (rv == CKR_OK) {
					memcpy(out, tmp, a + b);
					*out_len = a + b;
				}
			}
			p11p_wipe(tmp, in_len);
			p11p_locked_free(tmp, map_len, locked);
			return rv;
		}
		break;
	}
	rv = size_check(need, out, out_len);
	if (rv != CKR_OK || out == NULL)
		return rv;
	if (!cipher_start(op))
		return CKR_GENERAL_ERROR;
	op->started = true;
	if (op->fam == FAM_GCM && !enc) {
		/* Decrypt straight from the input: no copy. */
		size_t outl = 0;

		{
			/* A copy of the tag: out may overlap in (in-place decryption). */
			unsigned char tag[16];

			memcpy(tag, in + need, op->tag_len);
			if (!p11p_cipher_set_tag(op->cipher, op->cctx, tag, op->tag_len) ||
			    !feed(op, out, in, need, NULL)) {
				p11p_wipe(out, need);
				return CKR_GENERAL_ERROR;
			}
		}
		if (!p11p_cipher_final(op->cipher, op->cctx, out + need, &outl) || outl != 0) {
			p11p_wipe(out, need);
			return CKR_ENCRYPTED_DATA_INVALID;
		}
		*out_len = need;
		return CKR_OK;
	}
	a = *out_len;
	rv = sym_update(op, in, in_len, out, &a);
	if (rv == CKR_OK) {
		b = *out_len - a;
		rv = sym_final(op, out + a, &b);
	}
	if (rv != CKR_OK) {
		p11p_wipe(out, need);
		return rv;
	}
	*out_len = a + b;
	return CKR_OK;
}

/* ---- MAC --------------------------------------------------------------------- */

/* Finishes the HMAC: the inner digest, then the outer state over it (a copy, wiped). */
static CK_RV mac_compute(struct p11p_swop *op, unsigned char mac[64])
{
	int idx = op->hmac_idx;
	unsigned char ih[64];
	union sw_sha_ctx outer;

	sha_final(idx, &op->hw, ih);
	sha_copy(idx, &outer, &op->hk->outer);
	sha_update(idx, &outer, ih, sha_len[idx]);
	sha_final(idx, &outer, mac);
	OPENSSL_cleanse(&outer, sizeof(outer));
	OPENSSL_cleanse(ih, sizeof(ih));
	return CKR_OK;
}

/* ---- signatures --------------------------------------------------------------- */

/* DER ECDSA-Sig-Value -> r || s, each n bytes. */
static bool ecdsa_der_to_raw(const unsigned char *der, size_t der_len, unsigned char *out, size_t n)
{
	const unsigned char *p = der;
	ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	bool ok;

	if (s == NULL)
		return false;
	ok = BN_bn2binpad(ECDSA_SIG_get0_r(s), out, (int)n) == (int)n &&
	     BN_bn2binpad(ECDSA_SIG_get0_s(s), out + n, (int)n) == (int)n;
	ECDSA_SIG_free(s);
	return ok;
}

/* r || s -> DER in *der (OPENSSL_free). -1 on error. */
static int ecdsa_raw_to_der(const unsigned char *sig, size_t n, unsigned char **der)
{
	ECDSA_SIG *s = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, (int)n, NULL), *ss = BN_bin2bn(sig + n, (int)n, NULL);
	int len = -1;

	if (s != NULL && r != NULL && ss != NULL && ECDSA_SIG_set0(s, r, ss)) {
		r = ss = NULL;
		len = i2d_ECDSA_SIG(s, der);
	}
	BN_free(r);
	BN_free(ss);
	ECDSA_SIG_free(s);
	return len;
}

/* Input length rules of the raw mechanisms (CKR_OK or CKR_DATA_LEN_RANGE). */
static CK_RV raw_input_ok(const struct p11p_swop *op, CK_ULONG in_len)
{
	switch (op->fam) {
	case FAM_ECDSA:
		return in_len >= 1 && in_len <= ECDSA_RAW_MAX ? CKR_OK : CKR_DATA_LEN_RANGE;
	case FAM_RSA_PKCS:
		return in_len + 11 <= op->key->len ? CKR_OK : CKR_DATA_LEN_RANGE;
	case FAM_PSS:
		return in_len == op->hash_len ? CKR_OK : CKR_DATA_LEN_RANGE;
	default:
		return CKR_OK;
	}
}

/* The length of each DigestInfo prefix below. */
#define DIGEST_INFO_LEN 19

/*
 * The DigestInfo prefix of a SHA-2 hash (RFC 8017 section 9.2, note 1): the
 * DER of the AlgorithmIdentifier and the OCTET STRING header, the hash after.
 */
static const unsigned char *digest_info(size_t hash_len, size_t *len)
{
	static const unsigned char sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
	                                       0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
	                                       0x01, 0x05, 0x00, 0x04, 0x20};
	static const unsigned char sha384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60,
	                                       0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
	                                       0x02, 0x05, 0x00, 0x04, 0x30};
	static const unsigned char sha512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60,
	                                       0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
	                                       0x03, 0x05, 0x00, 0x04, 0x40};

	_Static_assert(sizeof(sha256) == DIGEST_INFO_LEN && sizeof(sha384) == DIGEST_INFO_LEN &&
	                   sizeof(sha512) == DIGEST_INFO_LEN,
	               "one DigestInfo prefix length");
	*len = DIGEST_INFO_LEN;
	return hash_len == 32 ? sha256 : hash_len == 48 ? sha384 : hash_len == 64 ? sha512 : NULL;
}

/*
 * Signs on the key's own RSA: hash-and-sign hashes here (one-shot: in, then
 * the digest), the encoded message is made here (PKCS#1 v1.5 type 1 padding,
 * or PSS), then the raw private operation (p11p_swkey_rsa_private: blinded,
 * on a copy of the key for this operation).
 */
static CK_RV rsa_own_sign(struct p11p_swop *op, const unsigned char *in, CK_ULONG in_len,
                          bool final, unsigned char *out)
{
	unsigned char h[EVP_MAX_MD_SIZE], em[P11P_SWKEY_RSA_MAX / 8],
	    t[DIGEST_INFO_LEN + EVP_MAX_MD_SIZE];
	RSA *rsa = op->key->rsa;
	size_t k = op->key->len, pre_len = 0;
	const unsigned char *pre;
	unsigned int hl = 0;
	bool ok = false;

	if (k > sizeof(em))
		return CKR_FUNCTION_FAILED;
	if (op->mdctx != NULL) {
		if ((!final && EVP_DigestUpdate(op->mdctx, in, in_len) <= 0) ||
		    EVP_DigestFinal_ex(op->mdctx, h, &hl) <= 0)
			return CKR_FUNCTION_FAILED;
		in = h;
		in_len = hl;
	}
	switch (op->fam) {
	case FAM_RSA_HASH:
		pre = digest_info(in_len, &pre_len);
		if (pre != NULL) {
			memcpy(t, pre, pre_len);
			memcpy(t + pre_len, in, in_len);
			ok = RSA_padding_add_PKCS1_type_1(em, (int)k, t, (int)(pre_len + in_len)) ==
			     1;
		}
		break;
	case FAM_RSA_PKCS:
		ok = in_len <= k && RSA_padding_add_PKCS1_type_1(em, (int)k, in, (int)in_len) == 1;
		break;
	case FAM_PSS:
	case FAM_PSS_HASH:
		ok = in_len == op->hash_len &&
		     RSA_padding_add_PKCS1_PSS_mgf1(rsa, em, in, op->md, op->mgf_md, op->salt) == 1;
		break;
	default:
		break;
	}
	ok = ok && p11p_swkey_rsa_private(op->key, em, out);
	p11p_wipe(h, sizeof(h));
	p11p_wipe(t, sizeof(t));
	p11p_wipe(em, sizeof(em));
	return ok ? CKR_OK : CKR_FUNCTION_FAILED;
}

/* Signs (single-part: in given; multi-part final: in NULL) into out, op->sig_len bytes. */
static CK_RV asym_sign(struct p11p_swop *op, const unsigned char *in, CK_ULONG in_len, bool final,
                       unsigned char *out)
{
	unsigned char der[P11P_SWKEY_SIG_MAX + 16];
	size_t len = sizeof(der);
	int ok;

	if (op->own_rsa)
		return rsa_own_sign(op, in, in_len, final, out);
	if (op->fam == FAM_EDDSA) {
		len = op->sig_len;
		return EVP_DigestSign(op->mdctx, out, &len, in, in_len) > 0 && len == op->sig_len
		           ? CKR_OK
		           : CKR_FUNCTION_FAILED;
	}
	if (op->mdctx != NULL)
		ok = final ? EVP_DigestSignFinal(op->mdctx, der, &len)
		           : EVP_DigestSign(op->mdctx, der, &len, in, in_len);
	else
		ok = EVP_PKEY_sign(op->pctx, der, &len, in, in_len);
	if (ok <= 0) {
		p11p_wipe(der, sizeof(der));
		return CKR_FUNCTION_FAILED;
	}
	if (op->key->type == CKK_EC) {
		if (!ecdsa_der_to_raw(der, len, out, op->key->len))
			return CKR_FUNCTION_FAILED;
	} else {
		if (len != op->sig_len)
			return CKR_FUNCTION_FAILED;
		memcpy(out, der, len);
	}
	return CKR_OK;
}

static CK_RV asym_verify(struct p11p_swop *op, const unsigned char *in, CK_ULONG in_len, bool final,
                         const unsigned char *sig, CK_ULONG sig_len)
{
	unsigned char *der = NULL;
	const unsigned char *s = sig;
	size_t slen = sig_len;
	int ok;

	if (sig_len != op->sig_len)
		return CKR_SIGNATURE_LEN_RANGE;
	if (op->key->type == CKK_EC) {
		int n = ecdsa_raw_to_der(sig, op->key->len, &der);

		if (n <= 0)
			return CKR_HOST_MEMORY;
		s = der;
		slen = (size_t)n;
	}
	if (op->mdctx != NULL)
		ok = final ? EVP_DigestVerifyFinal(op->mdctx, s, slen)
		           : EVP_DigestVerify(op->mdctx, s, slen, in, in_len);
	else
		ok = EVP_PKEY_verify(op->pctx, s, slen, in, in_len);
	OPENSSL_free(der);
	return ok == 1 ? CKR_OK : CKR_SIGNATURE_INVALID;
}

/* RSA encrypt/decrypt (PKCS#1 v1.5, OAEP), single-part. */
static CK_RV rsa_crypt(struct p11p_swop *op, const unsigned char *in, CK_ULONG in_len,
                       unsigned char *out, CK_ULONG *out_len)
{
	size_t k = op->key->len, max, len;
	unsigned char tmp[P11P_SWKEY_RSA_MAX / 8];
	CK_RV rv;

	if (op->kind == P11P_SWOP_ENCRYPT) {
		max = op->fam == FAM_OAEP ? k - 2 * op->hash_len - 2 : k - 11;
		if (in_len > max)
			return CKR_DATA_LEN_RANGE;
		rv = size_check(k, out, out_len);
		if (rv != CKR_OK || out == NULL)
			return rv;
		len = k;
		if (EVP_PKEY_encrypt(op->pctx, out, &len, in, in_len) <= 0 || len != k)
			return CKR_FUNCTION_FAILED;
		*out_len = len;
		return CKR_OK;
	}
	if (in_len != k)
		return CKR_ENCRYPTED_DATA_LEN_RANGE;
	if (out == NULL) {
		*out_len = k; /* an upper bound */
		return CKR_OK;
	}
	len = sizeof(tmp);
	if (op->own_rsa) {
		/* The key's own RSA: the raw private operation, then OpenSSL's padding checks. */
		unsigned char em[P11P_SWKEY_RSA_MAX / 8];
		int n = k <= sizeof(em) && p11p_swkey_rsa_private(op->key, in, em) ? (int)k : -1;

		if (n == (int)k && op->fam == FAM_OAEP)
			n = RSA_padding_check_PKCS1_OAEP_mgf1(tmp, (int)sizeof(tmp), em, (int)k,
			                                      (int)k, op->label, (int)op->label_len,
			                                      op->md, op->mgf_md);
		else if (n == (int)k)
			n = RSA_padding_check_PKCS1_type_2(tmp, (int)sizeof(tmp), em, (int)k,
			                                   (int)k);
		p11p_wipe(em, sizeof(em));
		if (n < 0) {
			p11p_wipe(tmp, sizeof(tmp));
			return CKR_ENCRYPTED_DATA_INVALID;
		}
		len = (size_t)n;
	} else if (EVP_PKEY_decrypt(op->pctx, tmp, &len, in, in_len) <= 0) {
		p11p_wipe(tmp, sizeof(tmp));
		return CKR_ENCRYPTED_DATA_INVALID;
	}
	rv = size_check(len, out, out_len);
	if (rv == CKR_OK) {
		memcpy(out, tmp, len);
		*out_len = len;
	}
	p11p_wipe(tmp, sizeof(tmp));
	return rv;
}

/* ---- the calls ------------------------------------------------------------------- */

static bool is_sym(const struct p11p_swop *op)
{
	return op->fam <= FAM_CTR;
}

CK_RV p11p_swop_run(struct p11p_swop *op, const unsigned char *in, CK_ULONG in_len,
                    unsigned char *out, CK_ULONG *out_len)
{
	unsigned char mac[64];
	CK_RV rv;

	p11p_return_val_if_fail(op != NULL, CKR_ARGUMENTS_BAD);
	if (!op->active || op->kind == P11P_SWOP_VERIFY)
		return CKR_OPERATION_NOT_INITIALIZED;
	if (op->updated)
		return CKR_OPERATION_ACTIVE;
	if ((in == NULL && in_len > 0) || out_len == NULL)
		return done(op, CKR_ARGUMENTS_BAD, out);
	if (in == NULL)
		in = (const unsigned char *)"";
	if (is_sym(op))
		return done(op, sym_run(op, in, in_len, out, out_len), out);
	if (op->fam == FAM_RSA_PKCS && op->kind != P11P_SWOP_SIGN)
		return done(op, rsa_crypt(op, in, in_len, out, out_len), out);
	if (op->fam == FAM_OAEP)
		return done(op, rsa_crypt(op, in, in_len, out, out_len), out);
	if (op->fam == FAM_HMAC) {
		rv = size_check(op->mac_len, out, out_len);
		if (rv != CKR_OK || out == NULL)
			return done(op, rv, out);
		if (in_len > 0)
			sha_update(op->hmac_idx, &op->hw, in, in_len);
		rv = mac_compute(op, mac);
		if (rv == CKR_OK) {
			memcpy(out, mac, op->mac_len);
			*out_len = op->mac_len;
		}
		p11p_wipe(mac, sizeof(mac));
		return done(op, rv, out);
	}
	rv = raw_input_ok(op, in_len);
	if (rv == CKR_OK)
		rv = size_check(op->sig_len, out, out_len);
	if (rv != CKR_OK || out == NULL)
		return done(op, rv, out);
	rv = asym_sign(op, in, in_len, false, out);
	if (rv == CKR_OK)
		*out_len = op->sig_len;
	return done(op, rv, out);
}

CK_RV p11p_swop_verify(struct p11p_swop *op, const unsigned char *in, CK_ULONG in_len,
                       const unsigned char *sig, CK_ULONG sig_len)
{
	unsigned char mac[64];
	CK_RV rv;

	p11p_return_val_if_fail(op != NULL, CKR_ARGUMENTS_BAD);
	if (!op->active || op->kind != P11P_SWOP_VERIFY)
		return CKR_OPERATION_NOT_INITIALIZED;
	if (op->updated)
		return CKR_OPERATION_ACTIVE;
	op->active = false;
	if ((in == NULL && in_len > 0) || (sig == NULL && sig_len > 0))
		return CKR_ARGUMENTS_BAD;
	if (in == NULL)
		in = (const unsigned char *)"";
	if (op->fam == FAM_HMAC) {
		if (sig_len != op->mac_len)
			return CKR_SIGNATURE_LEN_RANGE;
		if (in_len > 0)
			sha_update(op->hmac_idx, &op->hw, in, in_len);
		rv = mac_compute(op, mac);
		if (rv == CKR_OK && CRYPTO_memcmp(mac, sig, op->mac_len) != 0)
			rv = CKR_SIGNATURE_INVALID;
		p11p_wipe(mac, sizeof(mac));
		return rv;
	}
	rv = raw_input_ok(op, in_len);
	if (rv != CKR_OK)
		return rv;
	return asym_verify(op, in, in_len, false, sig, sig_len);
}

CK_RV p11p_swop_update(struct p11p_swop *op, const unsigned char *in, CK_ULONG in_len,
                       unsigned char *out, CK_ULONG *out_len)
{
	bool crypt;
	CK_RV rv;

	p11p_return_val_if_fail(op != NULL, CKR_ARGUMENTS_BAD);
	if (!op->active)
		return CKR_OPERATION_NOT_INITIALIZED;
	crypt = op->kind == P11P_SWOP_ENCRYPT || op->kind == P11P_SWOP_DECRYPT;
	if ((in == NULL && in_len > 0) || (crypt && out_len == NULL)) {
		op->active = false;
		return CKR_ARGUMENTS_BAD;
	}
	if (op->single_only || op->fam == FAM_RSA_PKCS || op->fam == FAM_OAEP) {
		op->active = false;
		return CKR_FUNCTION_NOT_SUPPORTED;
	}
	if (in == NULL)
		in = (const unsigned char *)"";
	if (crypt) {
		rv = sym_update(op, in, in_len, out, out_len);
		if (rv == CKR_OK && out != NULL)
			op->updated = true;
		if (!(rv == CKR_BUFFER_TOO_SMALL || rv == CKR_OK))
			op->active = false;
		return rv;
	}
	op->updated = true;
	if (in_len == 0)
		return CKR_OK;
	if (op->fam == FAM_HMAC) {
		sha_update(op->hmac_idx, &op->hw, in, in_len);
		rv = CKR_OK;
	} else if (op->kind == P11P_SWOP_SIGN)
		rv = (op->own_rsa ? EVP_DigestUpdate(op->mdctx, in, in_len)
		                  : EVP_DigestSignUpdate(op->mdctx, in, in_len)) > 0
		         ? CKR_OK
		         : CKR_GENERAL_ERROR;
	else
		rv = EVP_DigestVerifyUpdate(op->mdctx, in, in_len) > 0 ? CKR_OK : CKR_GENERAL_ERROR;
	if (rv != CKR_OK)
		op->active = false;
	return rv;
}

CK_RV p11p_swop_final(struct p11p_swop *op, unsigned char *out, CK_ULONG *out_len)
{
	unsigned char mac[64];
	CK_RV rv;

	p11p_return_val_if_fail(op != NULL, CKR_ARGUMENTS_BAD);
	if (!op->active || op->kind == P11P_SWOP_VERIFY)
		return CKR_OPERATION_NOT_INITIALIZED;
	if (out_len == NULL)
		return done(op, CKR_ARGUMENTS_BAD, out);
	if (op->single_only || op->fam == FAM_RSA_PKCS || op->fam == FAM_OAEP)
		return done(op, CKR_FUNCTION_NOT_SUPPORTED, out);
	if (is_sym(op))
		return done(op, sym_final(op, out, out_len), out);
	rv = size_check(op->sig_len, out, out_len);
	if (rv != CKR_OK || out == NULL)
		return done(op, rv, out);
	if (op->fam == FAM_HMAC) {
		rv = mac_compute(op, mac);
		if (rv == CKR_OK)
			memcpy(out, mac, op->mac_len);
		p11p_wipe(mac, sizeof(mac));
	} else {
		rv = asym_sign(op, NULL, 0, true, out);
	}
	if (rv == CKR_OK)
		*out_len = op->sig_len;
	return done(op, rv, out);
}

CK_RV p11p_swop_verify_final(struct p11p_swop *op, const unsigned char *sig, CK_ULONG sig_len)
{
	unsigned char mac[64];
	CK_RV rv;

	p11p_return_val_if_fail(op != NULL, CKR_ARGUMENTS_BAD);
	if (!op->active || op->kind != P11P_SWOP_VERIFY)
		return CKR_OPERATION_NOT_INITIALIZED;
	op->active = false;
	if (sig == NULL && sig_len > 0)
		return CKR_ARGUMENTS_BAD;
	if (op->single_only)
		return CKR_FUNCTION_NOT_SUPPORTED;
	if (op->fam == FAM_HMAC) {
		if (sig_len != op->mac_len)
			return CKR_SIGNATURE_LEN_RANGE;
		rv = mac_compute(op, mac);
		if (rv == CKR_OK && CRYPTO_memcmp(mac, sig, op->mac_len) != 0)
			rv = CKR_SIGNATURE_INVALID;
		p11p_wipe(mac, sizeof(mac));
		return rv;
	}
	return asym_verify(op, NULL, 0, true, sig, sig_len);
}

/* ---- one-shot conveniences: the op on the stack, the key borrowed ---------------------- */

static CK_RV one_shot(struct p11p_swkey *key, enum p11p_swop_kind kind, const CK_MECHANISM *mech,
                      const unsigned char *in, CK_ULONG in_len, unsigned char *out,
                      CK_ULONG *out_len)
{
	struct p11p_swop op;
	CK_RV rv;

	p11p_return_val_if_fail(key != NULL && mech != NULL && out_len != NULL, CKR_ARGUMENTS_BAD);
	memset(&op, 0, sizeof(op));
	rv = op_setup(&op, key, kind, mech, false);
	if (rv == CKR_OK)
		rv = p11p_swop_run(&op, in, in_len, out, out_len);
	op.key = op.key != NULL ? op.key : key;
	op_cleanup(&op);
	return rv;
}

CK_RV p11p_swkey_encrypt(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                         CK_ULONG in_len, unsigned char *out, CK_ULONG *out_len)
{
	return one_shot(key, P11P_SWOP_ENCRYPT, mech, in, in_len, out, out_len);
}

CK_RV p11p_swkey_decrypt(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                         CK_ULONG in_len, unsigned char *out, CK_ULONG *out_len)
{
	return one_shot(key, P11P_SWOP_DECRYPT, mech, in, in_len, out, out_len);
}

CK_RV p11p_swkey_sign(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                      CK_ULONG in_len, unsigned char *sig, CK_ULONG *sig_len)
{
	return one_shot(key, P11P_SWOP_SIGN, mech, in, in_len, sig, sig_len);
}

CK_RV p11p_swkey_verify(struct p11p_swkey *key, const CK_MECHANISM *mech, const unsigned char *in,
                        CK_ULONG in_len, const unsigned char *sig, CK_ULONG sig_len)
{
	struct p11p_swop op;
	CK_RV rv;

	p11p_return_val_if_fail(key != NULL && mech != NULL, CKR_ARGUMENTS_BAD);
	memset(&op, 0, sizeof(op));
	rv = op_setup(&op, key, P11P_SWOP_VERIFY, mech, false);
	if (rv == CKR_OK)
		rv = p11p_swop_verify(&op, in, in_len, sig, sig_len);
	op.key = op.key != NULL ? op.key : key;
	op_cleanup(&op);
	return rv;
}
