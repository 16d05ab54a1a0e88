/*
 * Which mechanisms pass through a PKCS#11 module, listed and working:
 *   rpcmechs MODULE TOKEN          (the user PIN in $RPCMECHS_PIN, never on the command line)
 * Run against SoftHSM2 directly, against libproxy.so, and against p11-kit-client.so talking to
 * `p11-kit server` (tests/suites/74-trust.sh, docs/SECURITY.md), it shows what p11-kit's RPC
 * lets through.
 *
 * For every mechanism SoftHSM2 2.6 implements (the table below) one line:
 *   NAME listed=yes|no op=OK|CKR_...|-
 * listed: C_GetMechanismList of the token names it. op: one operation with it, in a
 * session of the token with session keys made through the same module: a digest, a MAC, an
 * encryption, a signature, a key or key pair generation, a wrap or a derivation, with the
 * parameters PKCS#11 asks for (an IV, GCM or CTR parameters, PSS or OAEP parameters, the peer's
 * public value...). When the key it needs could not be made (its generator's line says why) the
 * operation is tried with handle 0 and the result marked "(no-key)". The proxy's vendor
 * mechanisms are looked up only ("op=-"). Mechanisms the module lists and the table lacks are
 * printed as "0xTYPE listed=yes op=-".
 * Exit 0 when it ran (whatever the results), 1 when the module or token could not be used.
 */
#include "../tests/progs/testmod.h"

#include <stdbool.h>

#include "p11proxy.h"

/* Keys the operations need, made once per run (session objects). */
enum key {
	K_NONE,
	K_AES,  /* AES-256, encrypt/decrypt/sign/wrap/derive, extractable */
	K_AES2, /* AES-128, extractable: what the AES key wraps are tried on */
	K_DES,
	K_DES2,
	K_DES3,
	K_HMAC, /* generic secret, 64 bytes */
	K_RSA,  /* RSA-2048 pair: private for sign/decrypt, public for encrypt */
	K_EC,   /* P-256 pair */
	K_ED,   /* Ed25519 pair */
	K_DSA,  /* DSA-1024 pair (domain parameters from DSA-PARAMETER-GEN) */
	K_DH,   /* DH-512 pair (parameters from DH-PKCS-PARAMETER-GEN) */
	K_N
};

enum op {
	OP_DIGEST,
	OP_SIGN,    /* private / secret key of `key` */
	OP_ENCRYPT, /* public / secret key of `key` */
	OP_GENKEY,
	OP_GENPAIR,
	OP_WRAP, /* K_AES2 wrapped under `key` */
	OP_DERIVE,
	OP_NONE, /* listed only: the proxy's vendor mechanisms need a configured slot */
};

enum param {
	P_NONE,
	P_IV8,
	P_IV16,
	P_CTR,
	P_GCM,
	P_PSS_SHA1,
	P_PSS_SHA224,
	P_PSS_SHA256,
	P_PSS_SHA384,
	P_PSS_SHA512,
	P_OAEP,
	P_STRING, /* CK_KEY_DERIVATION_STRING_DATA, 16 bytes */
	P_DES_CBC_DATA,
	P_AES_CBC_DATA,
	P_ECDH, /* CK_ECDH1_DERIVE_PARAMS with our own EC public point */
	P_DH,   /* our own DH public value */
};

struct mech {
	CK_MECHANISM_TYPE type;
	const char *name;
	enum op op;
	enum key key;
	enum param param;
	size_t data_len; /* input of sign/encrypt: 0 means 32 */
};

#define M(t, o, k, p)                                                                              \
	{                                                                                          \
		t, #t, o, k, p, 0                                                                  \
	}
#define ML(t, o, k, p, l)                                                                          \
	{                                                                                          \
		t, #t, o, k, p, l                                                                  \
	}
static const struct mech mechs[] = {
    M(CKM_MD5, OP_DIGEST, K_NONE, P_NONE),
    M(CKM_SHA_1, OP_DIGEST, K_NONE, P_NONE),
    M(CKM_SHA224, OP_DIGEST, K_NONE, P_NONE),
    M(CKM_SHA256, OP_DIGEST, K_NONE, P_NONE),
    M(CKM_SHA384, OP_DIGEST, K_NONE, P_NONE),
    M(CKM_SHA512, OP_DIGEST, K_NONE, P_NONE),
    M(CKM_MD5_HMAC, OP_SIGN, K_HMAC, P_NONE),
    M(CKM_SHA_1_HMAC, OP_SIGN, K_HMAC, P_NONE),
    M(CKM_SHA224_HMAC, OP_SIGN, K_HMAC, P_NONE),
    M(CKM_SHA256_HMAC, OP_SIGN, K_HMAC, P_NONE),
    M(CKM_SHA384_HMAC, OP_SIGN, K_HMAC, P_NONE),
    M(CKM_SHA512_HMAC, OP_SIGN, K_HMAC, P_NONE),
    M(CKM_AES_CMAC, OP_SIGN, K_AES, P_NONE),
    M(CKM_DES3_CMAC, OP_SIGN, K_DES3, P_NONE),
    M(CKM_AES_ECB, OP_ENCRYPT, K_AES, P_NONE),
    M(CKM_AES_CBC, OP_ENCRYPT, K_AES, P_IV16),
    M(CKM_AES_CBC_PAD, OP_ENCRYPT, K_AES, P_IV16),
    M(CKM_AES_CTR, OP_ENCRYPT, K_AES, P_CTR),
    M(CKM_AES_GCM, OP_ENCRYPT, K_AES, P_GCM),
    M(CKM_DES_ECB, OP_ENCRYPT, K_DES, P_NONE),
    M(CKM_DES_CBC, OP_ENCRYPT, K_DES, P_IV8),
    M(CKM_DES_CBC_PAD, OP_ENCRYPT, K_DES, P_IV8),
    M(CKM_DES3_ECB, OP_ENCRYPT, K_DES3, P_NONE),
    M(CKM_DES3_CBC, OP_ENCRYPT, K_DES3, P_IV8),
    M(CKM_DES3_CBC_PAD, OP_ENCRYPT, K_DES3, P_IV8),
    M(CKM_AES_KEY_WRAP, OP_WRAP, K_AES, P_NONE),
    M(CKM_AES_KEY_WRAP_PAD, OP_WRAP, K_AES, P_NONE),
    M(CKM_AES_KEY_GEN, OP_GENKEY, K_AES, P_NONE),
    M(CKM_DES_KEY_GEN, OP_GENKEY, K_DES, P_NONE),
    M(CKM_DES2_KEY_GEN, OP_GENKEY, K_DES2, P_NONE),
    M(CKM_DES3_KEY_GEN, OP_GENKEY, K_DES3, P_NONE),
    M(CKM_GENERIC_SECRET_KEY_GEN, OP_GENKEY, K_HMAC, P_NONE),
    M(CKM_RSA_PKCS_KEY_PAIR_GEN, OP_GENPAIR, K_RSA, P_NONE),
    M(CKM_EC_KEY_PAIR_GEN, OP_GENPAIR, K_EC, P_NONE),
    M(CKM_EC_EDWARDS_KEY_PAIR_GEN, OP_GENPAIR, K_ED, P_NONE),
    M(CKM_DSA_PARAMETER_GEN, OP_GENKEY, K_DSA, P_NONE),
    M(CKM_DSA_KEY_PAIR_GEN, OP_GENPAIR, K_DSA, P_NONE),
    M(CKM_DH_PKCS_PARAMETER_GEN, OP_GENKEY, K_DH, P_NONE),
    M(CKM_DH_PKCS_KEY_PAIR_GEN, OP_GENPAIR, K_DH, P_NONE),
    ML(CKM_RSA_PKCS, OP_SIGN, K_RSA, P_NONE, 32),
    ML(CKM_RSA_X_509, OP_SIGN, K_RSA, P_NONE, 256),
    M(CKM_MD5_RSA_PKCS, OP_SIGN, K_RSA, P_NONE),
    M(CKM_SHA1_RSA_PKCS, OP_SIGN, K_RSA, P_NONE),
    M(CKM_SHA224_RSA_PKCS, OP_SIGN, K_RSA, P_NONE),
    M(CKM_SHA256_RSA_PKCS, OP_SIGN, K_RSA, P_NONE),
    M(CKM_SHA384_RSA_PKCS, OP_SIGN, K_RSA, P_NONE),
    M(CKM_SHA512_RSA_PKCS, OP_SIGN, K_RSA, P_NONE),
    M(CKM_RSA_PKCS_PSS, OP_SIGN, K_RSA, P_PSS_SHA256),
    M(CKM_SHA1_RSA_PKCS_PSS, OP_SIGN, K_RSA, P_PSS_SHA1),
    M(CKM_SHA224_RSA_PKCS_PSS, OP_SIGN, K_RSA, P_PSS_SHA224),
    M(CKM_SHA256_RSA_PKCS_PSS, OP_SIGN, K_RSA, P_PSS_SHA256),
    M(CKM_SHA384_RSA_PKCS_PSS, OP_SIGN, K_RSA, P_PSS_SHA384),
    M(CKM_SHA512_RSA_PKCS_PSS, OP_SIGN, K_RSA, P_PSS_SHA512),
    M(CKM_RSA_PKCS_OAEP, OP_ENCRYPT, K_RSA, P_OAEP),
    M(CKM_ECDSA, OP_SIGN, K_EC, P_NONE),
    M(CKM_EDDSA, OP_SIGN, K_ED, P_NONE),
    ML(CKM_DSA, OP_SIGN, K_DSA, P_NONE, 20),
    M(CKM_DSA_SHA1, OP_SIGN, K_DSA, P_NONE),
    M(CKM_DSA_SHA224, OP_SIGN, K_DSA, P_NONE),
    M(CKM_DSA_SHA256, OP_SIGN, K_DSA, P_NONE),
    M(CKM_DSA_SHA384, OP_SIGN, K_DSA, P_NONE),
    M(CKM_DSA_SHA512, OP_SIGN, K_DSA, P_NONE),
    M(CKM_ECDH1_DERIVE, OP_DERIVE, K_EC, P_ECDH),
    M(CKM_DH_PKCS_DERIVE, OP_DERIVE, K_DH, P_DH),
    M(CKM_AES_ECB_ENCRYPT_DATA, OP_DERIVE, K_AES, P_STRING),
    M(CKM_AES_CBC_ENCRYPT_DATA, OP_DERIVE, K_AES, P_AES_CBC_DATA),
    M(CKM_DES_ECB_ENCRYPT_DATA, OP_DERIVE, K_DES, P_STRING),
    M(CKM_DES_CBC_ENCRYPT_DATA, OP_DERIVE, K_DES, P_DES_CBC_DATA),
    M(CKM_DES3_ECB_ENCRYPT_DATA, OP_DERIVE, K_DES3, P_STRING),
    M(CKM_DES3_CBC_ENCRYPT_DATA, OP_DERIVE, K_DES3, P_DES_CBC_DATA),
    M(CKM_P11PROXY_FRAGMENT_DERIVE, OP_NONE, K_NONE, P_NONE),
    M(CKM_P11PROXY_MIXED_KEY_GEN, OP_NONE, K_NONE, P_NONE),
};
#define N_MECHS (sizeof(mechs) / sizeof(mechs[0]))

static CK_FUNCTION_LIST *f;
static CK_SESSION_HANDLE s;
/* Per key: the private or secret key, the public key, and why it could not be made. */
static CK_OBJECT_HANDLE priv[K_N], pub[K_N];
static CK_RV made[K_N], param_rv[K_N]; /* param_rv: DSA and DH parameter generation */
static CK_BYTE ec_point[128], dh_pub[256];
static CK_ULONG ec_point_len, dh_pub_len;

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

/* The usage attributes every key gets (what its class does not take is left out). */
#define SECRET_ATTRS                                                                               \
	{CKA_TOKEN, &no, sizeof(no)}, {CKA_ENCRYPT, &yes, sizeof(yes)},                            \
	    {CKA_DECRYPT, &yes, sizeof(yes)}, {CKA_SIGN, &yes, sizeof(yes)},                       \
	    {CKA_VERIFY, &yes, sizeof(yes)}, {CKA_WRAP, &yes, sizeof(yes)},                        \
	    {CKA_UNWRAP, &yes, sizeof(yes)}, {CKA_DERIVE, &yes, sizeof(yes)},                      \
	    {CKA_EXTRACTABLE, &yes, sizeof(yes)},                                                  \
	{                                                                                          \
		CKA_SENSITIVE, &no, sizeof(no)                                                     \
	}

static CK_RV gen_secret(enum key k, CK_MECHANISM_TYPE mt, CK_ULONG len)
{
	CK_MECHANISM m = {mt, NULL, 0};
	CK_ATTRIBUTE t[] = {SECRET_ATTRS, {CKA_VALUE_LEN, &len, sizeof(len)}};

	return f->C_GenerateKey(s, &m, t, len ? 11 : 10, &priv[k]);
}

static CK_RV gen_pair(enum key k, CK_MECHANISM_TYPE mt, CK_ATTRIBUTE *pt, CK_ULONG np,
                      CK_ATTRIBUTE *st, CK_ULONG ns)
{
	CK_MECHANISM m = {mt, NULL, 0};

	return f->C_GenerateKeyPair(s, &m, pt, np, st, ns, &pub[k], &priv[k]);
}

/* Reads one attribute of h into buf (len in/out). */
static CK_RV get_attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, void *buf, CK_ULONG *len)
{
	CK_ATTRIBUTE a = {type, buf, *len};
	CK_RV rv = f->C_GetAttributeValue(s, h, &a, 1);

	*len = a.ulValueLen;
	return rv;
}

#define TOK                                                                                        \
	{                                                                                          \
		CKA_TOKEN, &no, sizeof(no)                                                         \
	}
#define PRIV                                                                                       \
	{CKA_PRIVATE, &yes, sizeof(yes)},                                                          \
	{                                                                                          \
		CKA_SENSITIVE, &yes, sizeof(yes)                                                   \
	}
#define USE(a)                                                                                     \
	{                                                                                          \
		a, &yes, sizeof(yes)                                                               \
	}

static void make_keys(void)
{
	/* P-256 and Ed25519 by OID. */
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	static CK_BYTE ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
	CK_ULONG bits = 2048, pbits;
	CK_BYTE e[] = {1, 0, 1};
	CK_BYTE p[256], q[64], g[256];
	CK_ULONG pl = sizeof(p), ql = sizeof(q), gl = sizeof(g);
	CK_OBJECT_CLASS dp = CKO_DOMAIN_PARAMETERS;
	CK_KEY_TYPE kt;
	CK_OBJECT_HANDLE params;
	CK_RV rv;

	made[K_NONE] = CKR_OK;
	made[K_AES] = gen_secret(K_AES, CKM_AES_KEY_GEN, 32);
	made[K_AES2] = gen_secret(K_AES2, CKM_AES_KEY_GEN, 16);
	made[K_DES] = gen_secret(K_DES, CKM_DES_KEY_GEN, 0);
	made[K_DES2] = gen_secret(K_DES2, CKM_DES2_KEY_GEN, 0);
	made[K_DES3] = gen_secret(K_DES3, CKM_DES3_KEY_GEN, 0);
	made[K_HMAC] = gen_secret(K_HMAC, CKM_GENERIC_SECRET_KEY_GEN, 64);
	{
		CK_ATTRIBUTE pt[] = {TOK,
		                     USE(CKA_VERIFY),
		                     USE(CKA_ENCRYPT),
		                     USE(CKA_WRAP),
		                     {CKA_MODULUS_BITS, &bits, sizeof(bits)},
		                     {CKA_PUBLIC_EXPONENT, e, sizeof(e)}};
		CK_ATTRIBUTE st[] = {TOK, PRIV, USE(CKA_SIGN), USE(CKA_DECRYPT), USE(CKA_UNWRAP)};

		made[K_RSA] = gen_pair(K_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, pt, 6, st, 6);
	}
	{
		CK_ATTRIBUTE pt[] = {TOK, USE(CKA_VERIFY), {CKA_EC_PARAMS, p256, sizeof(p256)}};
		CK_ATTRIBUTE st[] = {TOK, PRIV, USE(CKA_SIGN), USE(CKA_DERIVE)};

		made[K_EC] = gen_pair(K_EC, CKM_EC_KEY_PAIR_GEN, pt, 3, st, 5);
		if (made[K_EC] == CKR_OK) {
			/* The peer's point for ECDH: our own, as CKA_EC_POINT has it. */
			ec_point_len = sizeof(ec_point);
			made[K_EC] = get_attr(pub[K_EC], CKA_EC_POINT, ec_point, &ec_point_len);
		}
	}
	{
		CK_ATTRIBUTE pt[] = {
		    TOK, USE(CKA_VERIFY), {CKA_EC_PARAMS, ed25519, sizeof(ed25519)}};
		CK_ATTRIBUTE st[] = {TOK, PRIV, USE(CKA_SIGN)};

		made[K_ED] = gen_pair(K_ED, CKM_EC_EDWARDS_KEY_PAIR_GEN, pt, 3, st, 4);
	}
	/* DSA: domain parameters first, then a pair with them. */
	{
		CK_MECHANISM m = {CKM_DSA_PARAMETER_GEN, NULL, 0};
		CK_ATTRIBUTE t[] = {{CKA_CLASS, &dp, sizeof(dp)},
		                    {CKA_KEY_TYPE, &kt, sizeof(kt)},
		                    TOK,
		                    {CKA_PRIME_BITS, &pbits, sizeof(pbits)}};

		kt = CKK_DSA;
		pbits = 1024;
		rv = param_rv[K_DSA] = f->C_GenerateKey(s, &m, t, 4, &params);
		if (rv == CKR_OK)
			rv = get_attr(params, CKA_PRIME, p, &pl);
		if (rv == CKR_OK)
			rv = get_attr(params, CKA_SUBPRIME, q, &ql);
		if (rv == CKR_OK)
			rv = get_attr(params, CKA_BASE, g, &gl);
		if (rv == CKR_OK) {
			CK_ATTRIBUTE pt[] = {TOK,
			                     USE(CKA_VERIFY),
			                     {CKA_PRIME, p, pl},
			                     {CKA_SUBPRIME, q, ql},
			                     {CKA_BASE, g, gl}};
			CK_ATTRIBUTE st[] = {TOK, PRIV, USE(CKA_SIGN)};

			rv = gen_pair(K_DSA, CKM_DSA_KEY_PAIR_GEN, pt, 5, st, 4);
		}
		made[K_DSA] = rv;
	}
	/* DH: the same, and our own public value as the peer's. */
	{
		CK_MECHANISM m = {CKM_DH_PKCS_PARAMETER_GEN, NULL, 0};
		CK_ATTRIBUTE t[] = {{CKA_CLASS, &dp, sizeof(dp)},
		                    {CKA_KEY_TYPE, &kt, sizeof(kt)},
		                    TOK,
		                    {CKA_PRIME_BITS, &pbits, sizeof(pbits)}};

		kt = CKK_DH;
		pbits = 512;
		pl = sizeof(p);
		gl = sizeof(g);
		rv = param_rv[K_DH] = f->C_GenerateKey(s, &m, t, 4, &params);
		if (rv == CKR_OK)
			rv = get_attr(params, CKA_PRIME, p, &pl);
		if (rv == CKR_OK)
			rv = get_attr(params, CKA_BASE, g, &gl);
		if (rv == CKR_OK) {
			CK_ATTRIBUTE pt[] = {TOK, {CKA_PRIME, p, pl}, {CKA_BASE, g, gl}};
			CK_ATTRIBUTE st[] = {TOK, PRIV, USE(CKA_DERIVE)};

			rv = gen_pair(K_DH, CKM_DH_PKCS_KEY_PAIR_GEN, pt, 3, st, 4);
		}
		if (rv == CKR_OK) {
			dh_pub_len = sizeof(dh_pub);
			rv = get_attr(pub[K_DH], CKA_VALUE, dh_pub, &dh_pub_len);
		}
		made[K_DH] = rv;
	}
}

/* One operation with mechanism m. */
static CK_RV try_op(const struct mech *m)
{
	CK_BYTE iv[16] = {0}, data[512], out[1024];
	CK_ULONG out_len = sizeof(out), len = m->data_len ? m->data_len : 32;
	CK_GCM_PARAMS gcm = {iv, 12, 96, NULL, 0, 128};
	CK_AES_CTR_PARAMS ctr = {128, {0}};
	CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
	CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};
	CK_KEY_DERIVATION_STRING_DATA str = {data, 16};
	CK_DES_CBC_ENCRYPT_DATA_PARAMS des_data = {{0}, data, 16};
	CK_AES_CBC_ENCRYPT_DATA_PARAMS aes_data = {{0}, data, 16};
	CK_ECDH1_DERIVE_PARAMS ecdh = {CKD_NULL, 0, NULL, ec_point_len, ec_point};
	CK_MECHANISM mech = {m->type, NULL, 0};
	CK_OBJECT_HANDLE h;
	CK_RV rv;

	memset(data, 0x42, sizeof(data));
	if (m->key == K_RSA && m->type == CKM_RSA_X_509)
		data[0] = 0; /* below the modulus */
	switch (m->param) {
	case P_NONE:
		break;
	case P_IV8:
		mech.pParameter = iv;
		mech.ulParameterLen = 8;
		break;
	case P_IV16:
		mech.pParameter = iv;
		mech.ulParameterLen = 16;
		break;
	case P_CTR:
		mech.pParameter = &ctr;
		mech.ulParameterLen = sizeof(ctr);
		break;
	case P_GCM:
		mech.pParameter = &gcm;
		mech.ulParameterLen = sizeof(gcm);
		break;
	case P_PSS_SHA1:
	case P_PSS_SHA224:
	case P_PSS_SHA256:
	case P_PSS_SHA384:
	case P_PSS_SHA512: {
		static const struct {
			CK_MECHANISM_TYPE hash;
			CK_RSA_PKCS_MGF_TYPE mgf;
			CK_ULONG len;
		} h2[] = {{CKM_SHA_1, CKG_MGF1_SHA1, 20},
		          {CKM_SHA224, CKG_MGF1_SHA224, 28},
		          {CKM_SHA256, CKG_MGF1_SHA256, 32},
		          {CKM_SHA384, CKG_MGF1_SHA384, 48},
		          {CKM_SHA512, CKG_MGF1_SHA512, 64}};
		int i = m->param - P_PSS_SHA1;

		pss.hashAlg = h2[i].hash;
		pss.mgf = h2[i].mgf;
		pss.sLen = h2[i].len;
		if (m->type == CKM_RSA_PKCS_PSS) /* the digest itself is the input */
			len = h2[i].len;
		mech.pParameter = &pss;
		mech.ulParameterLen = sizeof(pss);
		break;
	}
	case P_OAEP:
		mech.pParameter = &oaep;
		mech.ulParameterLen = sizeof(oaep);
		break;
	case P_STRING:
		mech.pParameter = &str;
		mech.ulParameterLen = sizeof(str);
		break;
	case P_DES_CBC_DATA:
		mech.pParameter = &des_data;
		mech.ulParameterLen = sizeof(des_data);
		break;
	case P_AES_CBC_DATA:
		mech.pParameter = &aes_data;
		mech.ulParameterLen = sizeof(aes_data);
		break;
	case P_ECDH:
		mech.pParameter = &ecdh;
		mech.ulParameterLen = sizeof(ecdh);
		break;
	case P_DH:
		mech.pParameter = dh_pub;
		mech.ulParameterLen = dh_pub_len;
		break;
	}

	switch (m->op) {
	case OP_DIGEST:
		rv = f->C_DigestInit(s, &mech);
		return rv != CKR_OK ? rv : f->C_Digest(s, data, len, out, &out_len);
	case OP_SIGN:
		rv = f->C_SignInit(s, &mech, priv[m->key]);
		return rv != CKR_OK ? rv : f->C_Sign(s, data, len, out, &out_len);
	case OP_ENCRYPT:
		rv = f->C_EncryptInit(s, &mech, pub[m->key] ? pub[m->key] : priv[m->key]);
		return rv != CKR_OK ? rv : f->C_Encrypt(s, data, len, out, &out_len);
	case OP_WRAP:
		return f->C_WrapKey(s, &mech, priv[m->key], priv[K_AES2], out, &out_len);
	case OP_GENKEY:
		if (m->type == CKM_DSA_PARAMETER_GEN || m->type == CKM_DH_PKCS_PARAMETER_GEN)
			return param_rv[m->key];
		return made[m->key]; /* made by make_keys() with this mechanism */
	case OP_GENPAIR:
		return made[m->key];
	case OP_NONE:
		break;
	case OP_DERIVE: {
		CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
		CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
		CK_ULONG vlen = 16;
		CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
		                    {CKA_KEY_TYPE, &kt, sizeof(kt)},
		                    {CKA_TOKEN, &no, sizeof(no)},
		                    {CKA_VALUE_LEN, &vlen, sizeof(vlen)}};

		return f->C_DeriveKey(s, &mech, priv[m->key], t, 4, &h);
	}
	}
	return CKR_GENERAL_ERROR;
}

int main(int argc, char **argv)
{
	struct testmod mod;
	CK_SLOT_ID slot;
	CK_MECHANISM_TYPE list[512];
	CK_ULONG n = 512;
	const char *pin = getenv("RPCMECHS_PIN");

	if (argc != 3 || pin == NULL) {
		fprintf(stderr, "usage: RPCMECHS_PIN=... rpcmechs MODULE TOKEN\n");
		return 2;
	}
	if (!testmod_load(&mod, argv[1]) || !testmod_find_token(&mod, argv[2], &slot) ||
	    !testmod_session(&mod, argv[2], pin, &s))
		return 1;
	f = mod.f;
	if (f->C_GetMechanismList(slot, list, &n) != CKR_OK)
		n = 0;
	make_keys();
	for (size_t i = 0; i < N_MECHS; i++) {
		const struct mech *m = &mechs[i];
		bool listed = false;
		CK_RV rv;

		for (CK_ULONG j = 0; j < n; j++)
			listed |= list[j] == m->type;
		if (m->op == OP_NONE) {
			printf("%s listed=%s op=-\n", m->name, listed ? "yes" : "no");
			continue;
		}
		/*
		 * Without its key the operation is still tried (with handle 0): a client that
		 * refuses the mechanism itself says so before it looks at the key.
		 */
		rv = try_op(m);
		printf("%s listed=%s op=%s%s\n", m->name, listed ? "yes" : "no",
		       rv == CKR_OK ? "OK" : testmod_ckr(rv),
		       m->op != OP_GENKEY && m->op != OP_GENPAIR && made[m->key] != CKR_OK
		           ? "(no-key)"
		           : "");
	}
	for (CK_ULONG j = 0; j < n; j++) {
		bool known = false;

		for (size_t i = 0; i < N_MECHS; i++)
			known |= mechs[i].type == list[j];
		if (!known)
			printf("0x%lx listed=yes op=-\n", (unsigned long)list[j]);
	}
	f->C_CloseSession(s);
	testmod_unload(&mod);
	return 0;
}
