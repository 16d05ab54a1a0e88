/*
 * battery MODULE TOKEN_LABEL PIN
 *
 * A PKCS#11 conformance battery. It loads MODULE like an application
 * (dlopen + C_GetFunctionList), works on the token labelled TOKEN_LABEL and
 * prints a normalized transcript on stdout: one line per step, with the CKR
 * name of the result and only deterministic output (lengths, booleans,
 * attribute values of keys created by value, ciphertexts under fixed keys and
 * IVs...). Slot ids, handles, labels and serials of the token, CK_INFO, times
 * and random bytes are never printed, so the transcript of SoftHSM2 directly
 * and of libproxy.so over the same SoftHSM2 token can be compared with diff.
 *
 * Results are compared, not judged, except the "must hold" steps (a signature
 * made must verify, a round trip must give the plaintext back, outputs under
 * known keys must match OpenSSL's): those print "yes"/"NO", and any NO makes
 * the exit status 1. Every object the battery creates is destroyed at the end
 * (and leftovers of an interrupted run at the start), so runs repeat on one
 * token.
 */
#include <stdarg.h>
#include <stdint.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>

#include "testmod.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define ATTR(t, p, l)                                                                              \
	{                                                                                          \
		(t), (p), (l)                                                                      \
	}
#define BATTR(t, b)                                                                                \
	{                                                                                          \
		(t), &(b), sizeof(CK_BBOOL)                                                        \
	}
#define UATTR(t, u)                                                                                \
	{                                                                                          \
		(t), &(u), sizeof(CK_ULONG)                                                        \
	}
#define SATTR(t, s)                                                                                \
	{                                                                                          \
		(t), (s), sizeof(s) - 1                                                            \
	}

/* p11proxy's own vendor mechanisms (include/p11proxy.h): the proxy may add
 * them to mechanism lists, which is the value it adds; not compared. */
#define P11PROXY_MECH_BASE (CKM_VENDOR_DEFINED | 0x50310000UL)
/* A vendor mechanism no module here implements. */
#define BOGUS_MECH (CKM_VENDOR_DEFINED | 0x7ead0001UL)

static CK_FUNCTION_LIST *F;
static int must_failed;

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS cls_data = CKO_DATA, cls_secret = CKO_SECRET_KEY, cls_pub = CKO_PUBLIC_KEY;
static CK_KEY_TYPE kt_aes = CKK_AES, kt_generic = CKK_GENERIC_SECRET;

/* Labels of everything the battery creates on the token. */
static char L_DATA[] = "battery-data";
static char L_DATA2[] = "battery-data-renamed";
static char L_COPY[] = "battery-data-copy";
static char L_PRIV[] = "battery-private";
static char L_SESS[] = "battery-session";
static char L_AESV[] = "battery-aes-value";
static char L_AESG[] = "battery-aes-gen";
static char L_AESNX[] = "battery-aes-nonextractable";
static char L_AES128[] = "battery-aes128";
static char L_HMAC[] = "battery-hmac";
static char L_RSA[] = "battery-rsa";
static char L_ECA[] = "battery-ec-a";
static char L_ECB[] = "battery-ec-b";
static char L_UNWRAP[] = "battery-unwrapped";
static char L_DERIVED[] = "battery-derived";
static char *const all_labels[] = {L_DATA, L_DATA2, L_COPY,  L_PRIV,   L_SESS,
                                   L_AESV, L_AESG,  L_AESNX, L_AES128, L_HMAC,
                                   L_RSA,  L_ECA,   L_ECB,   L_UNWRAP, L_DERIVED};

static char app_name[] = "battery";
static unsigned char data_value[] = "hello data object";
static unsigned char id_aesv[] = {0xb1, 0x01};
static unsigned char id_rsa[] = {0xb2, 0x02};
static unsigned char id_eca[] = {0xb3, 0x03};
static unsigned char id_ecb[] = {0xb4, 0x04};
/* DER OID of prime256v1 (P-256). */
static unsigned char p256_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static unsigned char rsa_e[] = {0x01, 0x00, 0x01};

static unsigned char aes_key[32], aes128_key[16], hmac_key[32], iv16[16], iv12[12], aad[20];
static unsigned char msg[] = "The quick brown fox jumps over the lazy dog!!";
#define MSG_LEN (sizeof(msg) - 1)

/* Objects created and not yet destroyed; destroyed at the end. */
static CK_OBJECT_HANDLE created[64];
static size_t n_created;

static void track(CK_RV rv, CK_OBJECT_HANDLE h)
{
	if (rv == CKR_OK && n_created < COUNT(created))
		created[n_created++] = h;
}

static void untrack(CK_OBJECT_HANDLE h)
{
	for (size_t i = 0; i < n_created; i++) {
		if (created[i] == h) {
			created[i] = created[--n_created];
			return;
		}
	}
}

__attribute__((format(printf, 3, 4))) static void step(const char *name, CK_RV rv, const char *fmt,
                                                       ...)
{
	va_list ap;

	printf("%s: %s", name, testmod_ckr(rv));
	if (fmt != NULL && fmt[0] != '\0') {
		putchar(' ');
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
}

/* A check that holds on any correct module. */
static void must(const char *what, int ok)
{
	printf("%s: %s\n", what, ok ? "yes" : "NO");
	if (!ok) {
		must_failed++;
		fprintf(stderr, "battery: must-hold check failed: %s\n", what);
	}
}

static void print_hex_line(const char *name, const unsigned char *buf, size_t len)
{
	char *hex = malloc(2 * len + 1);

	if (hex == NULL)
		abort();
	testmod_hex(buf, len, hex);
	printf("%s: %s\n", name, hex);
	free(hex);
}

/* ---- attributes ---- */

enum show { SHOW_HEX, SHOW_LEN, SHOW_BOOL, SHOW_ULONG };

/*
 * One attribute through the two-call idiom: size query (NULL pValue), then
 * the value. Prints "NAME.ATTR: CKR len=N [value]".
 */
static void show_attr(const char *obj, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                      CK_ATTRIBUTE_TYPE type, const char *tname, enum show how)
{
	CK_ATTRIBUTE a = {type, NULL, 0};
	unsigned char buf[1024];
	char name[128];
	CK_RV rv;

	snprintf(name, sizeof(name), "attr %s.%s", obj, tname);
	rv = F->C_GetAttributeValue(s, h, &a, 1);
	if (rv != CKR_OK || a.ulValueLen > sizeof(buf)) {
		step(name, rv, "len=%ld", (long)a.ulValueLen);
		return;
	}
	memset(buf, 0, sizeof(buf));
	a.pValue = buf;
	rv = F->C_GetAttributeValue(s, h, &a, 1);
	if (rv != CKR_OK) {
		step(name, rv, "len=%ld (second call)", (long)a.ulValueLen);
		return;
	}
	switch (how) {
	case SHOW_LEN:
		step(name, rv, "len=%lu", (unsigned long)a.ulValueLen);
		break;
	case SHOW_BOOL:
		step(name, rv, "len=%lu %s", (unsigned long)a.ulValueLen,
		     a.ulValueLen == 1 ? (buf[0] ? "true" : "false") : "?");
		break;
	case SHOW_ULONG: {
		CK_ULONG u = 0;

		if (a.ulValueLen == sizeof(u))
			memcpy(&u, buf, sizeof(u));
		step(name, rv, "len=%lu 0x%lx", (unsigned long)a.ulValueLen, (unsigned long)u);
		break;
	}
	case SHOW_HEX: {
		char hex[2 * sizeof(buf) + 1];

		testmod_hex(buf, a.ulValueLen, hex);
		step(name, rv, "len=%lu %s", (unsigned long)a.ulValueLen, hex);
		break;
	}
	}
}

#define SHOW(obj, s, h, t, how) show_attr((obj), (s), (h), (t), #t, (how))

/* Reads one attribute's value into buf; returns its length or 0. */
static CK_ULONG get_attr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                         unsigned char *buf, CK_ULONG size)
{
	CK_ATTRIBUTE a = {type, buf, size};

	if (F->C_GetAttributeValue(s, h, &a, 1) != CKR_OK)
		return 0;
	return a.ulValueLen;
}

/* ---- finding ---- */

/* Runs a whole search, ulMaxObjectCount = max per call; counts calls too. */
static CK_RV find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_ULONG max,
                  CK_OBJECT_HANDLE *first, CK_ULONG *count, CK_ULONG *calls)
{
	CK_OBJECT_HANDLE h[16];
	CK_ULONG got, ncalls = 0;
	CK_RV rv;

	*count = 0;
	if (first != NULL)
		*first = CK_INVALID_HANDLE;
	rv = F->C_FindObjectsInit(s, tmpl, n);
	if (rv != CKR_OK)
		return rv;
	for (;;) {
		got = 0;
		rv = F->C_FindObjects(s, h, max, &got);
		ncalls++;
		if (rv != CKR_OK || got == 0)
			break;
		if (*count == 0 && first != NULL)
			*first = h[0];
		*count += got;
		if (ncalls > 1000)
			break;
	}
	if (calls != NULL)
		*calls = ncalls;
	if (rv == CKR_OK)
		rv = F->C_FindObjectsFinal(s);
	else
		F->C_FindObjectsFinal(s);
	return rv;
}

/*
 * Silent: ends whatever operation a step may have left active, so that one
 * module's extra leniency does not cascade into the following steps.
 */
static void drain(CK_SESSION_HANDLE s)
{
	unsigned char out[1024];
	CK_ULONG len;

	len = sizeof(out);
	F->C_SignFinal(s, out, &len);
	memset(out, 0, sizeof(out));
	F->C_VerifyFinal(s, out, 256);
	len = sizeof(out);
	F->C_EncryptFinal(s, out, &len);
	len = sizeof(out);
	F->C_DecryptFinal(s, out, &len);
	len = sizeof(out);
	F->C_DigestFinal(s, out, &len);
	F->C_FindObjectsFinal(s);
}

static CK_ULONG find_label(const char *what, CK_SESSION_HANDLE s, char *label,
                           CK_OBJECT_HANDLE *first)
{
	CK_ATTRIBUTE t[] = {ATTR(CKA_LABEL, label, strlen(label))};
	CK_ULONG count;
	CK_RV rv = find(s, t, 1, 16, first, &count, NULL);

	step(what, rv, "count=%lu", (unsigned long)count);
	return count;
}

/* Silent: destroys every object carrying one of the battery's labels. */
static void destroy_leftovers(CK_SESSION_HANDLE s)
{
	for (size_t i = 0; i < COUNT(all_labels); i++) {
		CK_ATTRIBUTE t[] = {ATTR(CKA_LABEL, all_labels[i], strlen(all_labels[i]))};
		CK_OBJECT_HANDLE h;
		CK_ULONG count;

		for (int guard = 0; guard < 64; guard++) {
			if (find(s, t, 1, 1, &h, &count, NULL) != CKR_OK || count == 0)
				break;
			if (F->C_DestroyObject(s, h) != CKR_OK)
				break;
			fprintf(stderr, "battery: removed a leftover '%s'\n", all_labels[i]);
		}
	}
}

/* ---- crypto helpers ---- */

static CK_RV encrypt_ecb(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, unsigned char out[16])
{
	CK_MECHANISM m = {CKM_AES_ECB, NULL, 0};
	unsigned char block[16];
	CK_ULONG len = 16;
	CK_RV rv;

	memset(block, 0x5a, sizeof(block));
	memset(out, 0, 16);
	rv = F->C_EncryptInit(s, &m, key);
	if (rv == CKR_OK)
		rv = F->C_Encrypt(s, block, sizeof(block), out, &len);
	drain(s);
	return rv;
}

/*
 * Single-part encrypt or decrypt with the size query, a 1-byte buffer
 * (CKR_BUFFER_TOO_SMALL, operation stays active) and the real call.
 * *outlen: capacity of out in, output length out (0 on failure).
 */
static CK_RV crypt_single(const char *name, CK_SESSION_HANDLE s, CK_MECHANISM *m,
                          CK_OBJECT_HANDLE key, int enc, const unsigned char *in, CK_ULONG inlen,
                          unsigned char *out, CK_ULONG *outlen, int print_out)
{
	unsigned char small[1];
	unsigned char inbuf[512];
	CK_ULONG cap = *outlen, len;
	char sn[128];
	CK_RV rv;

	*outlen = 0;
	if (inlen > sizeof(inbuf))
		abort();
	memcpy(inbuf, in, inlen);
	snprintf(sn, sizeof(sn), "%s init", name);
	rv = enc ? F->C_EncryptInit(s, m, key) : F->C_DecryptInit(s, m, key);
	step(sn, rv, NULL);
	if (rv != CKR_OK)
		goto out;
	len = 0;
	rv = enc ? F->C_Encrypt(s, inbuf, inlen, NULL, &len)
	         : F->C_Decrypt(s, inbuf, inlen, NULL, &len);
	snprintf(sn, sizeof(sn), "%s size query", name);
	step(sn, rv, "len=%lu", (unsigned long)len);
	if (rv != CKR_OK)
		goto out;
	len = sizeof(small);
	rv = enc ? F->C_Encrypt(s, inbuf, inlen, small, &len)
	         : F->C_Decrypt(s, inbuf, inlen, small, &len);
	snprintf(sn, sizeof(sn), "%s short buffer", name);
	step(sn, rv, "len=%lu", (unsigned long)len);
	if (rv != CKR_BUFFER_TOO_SMALL)
		goto out;
	len = cap;
	rv = enc ? F->C_Encrypt(s, inbuf, inlen, out, &len)
	         : F->C_Decrypt(s, inbuf, inlen, out, &len);
	if (print_out && rv == CKR_OK) {
		char hex[1025];

		testmod_hex(out, len < 512 ? len : 512, hex);
		step(name, rv, "len=%lu %s", (unsigned long)len, hex);
	} else {
		step(name, rv, "len=%lu", (unsigned long)len);
	}
	if (rv == CKR_OK)
		*outlen = len;
out:
	drain(s);
	return rv == CKR_BUFFER_TOO_SMALL ? CKR_GENERAL_ERROR : rv;
}

/*
 * Multi-part encrypt or decrypt over `chunks` (then the rest), with Update
 * and Final size queries. *outlen as for crypt_single.
 */
static CK_RV crypt_multi(const char *name, CK_SESSION_HANDLE s, CK_MECHANISM *m,
                         CK_OBJECT_HANDLE key, int enc, const unsigned char *in, CK_ULONG inlen,
                         const CK_ULONG *chunks, size_t nchunks, unsigned char *out,
                         CK_ULONG *outlen, int print_out)
{
	unsigned char inbuf[512];
	CK_ULONG cap = *outlen, done = 0, pos = 0, len;
	char sn[128];
	CK_RV rv;

	*outlen = 0;
	if (inlen > sizeof(inbuf))
		abort();
	memcpy(inbuf, in, inlen);
	snprintf(sn, sizeof(sn), "%s init", name);
	rv = enc ? F->C_EncryptInit(s, m, key) : F->C_DecryptInit(s, m, key);
	step(sn, rv, NULL);
	if (rv != CKR_OK)
		goto out;
	for (size_t i = 0; i <= nchunks; i++) {
		CK_ULONG c = i < nchunks ? chunks[i] : inlen - pos;

		if (pos + c > inlen)
			c = inlen - pos;
		len = 0;
		rv = enc ? F->C_EncryptUpdate(s, inbuf + pos, c, NULL, &len)
		         : F->C_DecryptUpdate(s, inbuf + pos, c, NULL, &len);
		snprintf(sn, sizeof(sn), "%s update %zu (%lu bytes) size query", name, i,
		         (unsigned long)c);
		step(sn, rv, "len=%lu", (unsigned long)len);
		if (rv != CKR_OK)
			goto out;
		len = cap - done;
		rv = enc ? F->C_EncryptUpdate(s, inbuf + pos, c, out + done, &len)
		         : F->C_DecryptUpdate(s, inbuf + pos, c, out + done, &len);
		snprintf(sn, sizeof(sn), "%s update %zu", name, i);
		step(sn, rv, "len=%lu", (unsigned long)len);
		if (rv != CKR_OK || len > cap - done)
			goto out;
		done += len;
		pos += c;
	}
	len = 0;
	rv = enc ? F->C_EncryptFinal(s, NULL, &len) : F->C_DecryptFinal(s, NULL, &len);
	snprintf(sn, sizeof(sn), "%s final size query", name);
	step(sn, rv, "len=%lu", (unsigned long)len);
	if (rv != CKR_OK)
		goto out;
	len = cap - done;
	rv = enc ? F->C_EncryptFinal(s, out + done, &len) : F->C_DecryptFinal(s, out + done, &len);
	snprintf(sn, sizeof(sn), "%s final", name);
	step(sn, rv, "len=%lu", (unsigned long)len);
	if (rv != CKR_OK || len > cap - done)
		goto out;
	done += len;
	*outlen = done;
	if (print_out) {
		char hex[1025];

		testmod_hex(out, done < 512 ? done : 512, hex);
		printf("%s output: len=%lu %s\n", name, (unsigned long)done, hex);
	}
out:
	drain(s);
	return rv;
}

static int ossl_cipher(const EVP_CIPHER *c, const unsigned char *key, const unsigned char *iv,
                       int ivlen, const unsigned char *a, int alen, const unsigned char *in,
                       int inlen, unsigned char *out, int *outlen)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int ok = 0, l1 = 0, l2 = 0, tmp;

	if (ctx == NULL)
		return 0;
	if (EVP_EncryptInit_ex(ctx, c, NULL, NULL, NULL) != 1)
		goto out;
	if (a != NULL && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, ivlen, NULL) != 1)
		goto out;
	if (EVP_EncryptInit_ex(ctx, NULL, NULL, key, iv) != 1)
		goto out;
	if (a != NULL && EVP_EncryptUpdate(ctx, NULL, &tmp, a, alen) != 1)
		goto out;
	if (EVP_EncryptUpdate(ctx, out, &l1, in, inlen) != 1 ||
	    EVP_EncryptFinal_ex(ctx, out + l1, &l2) != 1)
		goto out;
	if (a != NULL) {
		if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + l1 + l2) != 1)
			goto out;
		l2 += 16;
	}
	*outlen = l1 + l2;
	ok = 1;
out:
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

/* Verifies an RSA PKCS#1 v1.5 SHA-256 signature with OpenSSL from (n, e). */
static int ossl_rsa_verify(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen,
                           const unsigned char *m, size_t mlen, const unsigned char *sig,
                           size_t siglen)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
	int ok = 0;

	if (bld == NULL || bn == NULL || be == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
		goto out;
	params = OSSL_PARAM_BLD_to_param(bld);
	pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (params == NULL || pctx == NULL || EVP_PKEY_fromdata_init(pctx) != 1 ||
	    EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1)
		goto out;
	ok = EVP_DigestVerify(md, sig, siglen, m, mlen) == 1;
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	return ok;
}

/* ---- sections ---- */

static int cmp_ulong(const void *a, const void *b)
{
	CK_ULONG x = *(const CK_ULONG *)a, y = *(const CK_ULONG *)b;

	return x < y ? -1 : x > y;
}

static void slot_list_has(const char *name, CK_BBOOL present, CK_SLOT_ID slot)
{
	CK_SLOT_ID *list;
	CK_ULONG n = 0;
	int found = 0;
	CK_RV rv = F->C_GetSlotList(present, NULL, &n);

	step(name, rv, "(count query)");
	if (rv != CKR_OK)
		return;
	list = calloc(n + 1, sizeof(*list));
	if (list == NULL)
		abort();
	rv = F->C_GetSlotList(present, list, &n);
	for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++)
		found |= list[i] == slot;
	step(name, rv, "our token listed: %s", found ? "yes" : "no");
	free(list);
}

static void section_info(CK_SLOT_ID slot)
{
	CK_INFO info;
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_RV rv;
	const CK_FLAGS pin_count_bits = CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY |
	                                CKF_SO_PIN_COUNT_LOW | CKF_SO_PIN_FINAL_TRY;

	memset(&info, 0, sizeof(info));
	step("C_GetInfo", F->C_GetInfo(&info), NULL);
	slot_list_has("C_GetSlotList(tokenPresent=FALSE)", CK_FALSE, slot);
	slot_list_has("C_GetSlotList(tokenPresent=TRUE)", CK_TRUE, slot);
	memset(&si, 0, sizeof(si));
	rv = F->C_GetSlotInfo(slot, &si);
	step("C_GetSlotInfo", rv, "CKF_TOKEN_PRESENT=%d", !!(si.flags & CKF_TOKEN_PRESENT));
	memset(&ti, 0, sizeof(ti));
	rv = F->C_GetTokenInfo(slot, &ti);
	step("C_GetTokenInfo", rv, "flags=0x%lx maxPinLen=%lu minPinLen=%lu",
	     (unsigned long)(ti.flags & ~pin_count_bits), (unsigned long)ti.ulMaxPinLen,
	     (unsigned long)ti.ulMinPinLen);
}

static void section_mechanisms(CK_SLOT_ID slot)
{
	CK_MECHANISM_TYPE *list;
	CK_MECHANISM_INFO mi;
	CK_ULONG n = 0, hidden = 0;
	CK_RV rv = F->C_GetMechanismList(slot, NULL, &n);

	step("C_GetMechanismList count query", rv, NULL);
	if (rv != CKR_OK)
		return;
	list = calloc(n + 1, sizeof(*list));
	if (list == NULL)
		abort();
	rv = F->C_GetMechanismList(slot, list, &n);
	/* Order carries no meaning in PKCS#11: sorted for the comparison. */
	qsort(list, n, sizeof(*list), cmp_ulong);
	for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++)
		hidden += (list[i] & ~0xffffUL) == P11PROXY_MECH_BASE;
	step("C_GetMechanismList", rv, "count=%lu", (unsigned long)(n - hidden));
	for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
		char name[64];
		CK_RV r;

		if ((list[i] & ~0xffffUL) == P11PROXY_MECH_BASE)
			continue;
		memset(&mi, 0, sizeof(mi));
		r = F->C_GetMechanismInfo(slot, list[i], &mi);
		snprintf(name, sizeof(name), "C_GetMechanismInfo 0x%lx", (unsigned long)list[i]);
		step(name, r, "min=%lu max=%lu flags=0x%lx", (unsigned long)mi.ulMinKeySize,
		     (unsigned long)mi.ulMaxKeySize, (unsigned long)mi.flags);
	}
	if (hidden != 0)
		fprintf(stderr, "battery: %lu p11proxy vendor mechanisms not compared\n",
		        (unsigned long)hidden);
	memset(&mi, 0, sizeof(mi));
	step("C_GetMechanismInfo(bogus vendor mechanism)",
	     F->C_GetMechanismInfo(slot, BOGUS_MECH, &mi), NULL);
	free(list);
}

static void show_session(const char *name, CK_SESSION_HANDLE s)
{
	CK_SESSION_INFO si;
	CK_RV rv;

	memset(&si, 0, sizeof(si));
	rv = F->C_GetSessionInfo(s, &si);
	if (rv == CKR_OK)
		step(name, rv, "state=%lu flags=0x%lx", (unsigned long)si.state,
		     (unsigned long)si.flags);
	else
		step(name, rv, NULL);
}

static void section_sessions(CK_SLOT_ID slot)
{
	CK_SESSION_HANDLE ro = CK_INVALID_HANDLE, rw = CK_INVALID_HANDLE;
	CK_RV rv;

	rv = F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro);
	step("C_OpenSession(RO)", rv, NULL);
	show_session("C_GetSessionInfo(RO)", ro);
	rv = F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw);
	step("C_OpenSession(RW)", rv, NULL);
	must("RW and RO session handles differ", rw != ro);
	show_session("C_GetSessionInfo(RW)", rw);
	step("C_CloseSession(RO)", F->C_CloseSession(ro), NULL);
	show_session("C_GetSessionInfo(closed RO)", ro);
	step("C_CloseSession(closed RO)", F->C_CloseSession(ro), NULL);
	show_session("C_GetSessionInfo(RW after closing RO)", rw);
	step("C_CloseAllSessions", F->C_CloseAllSessions(slot), NULL);
	show_session("C_GetSessionInfo(RW after C_CloseAllSessions)", rw);
}

/* Leaves the user logged in with `main` open (RW). */
static void section_login(CK_SLOT_ID slot, const char *pin, CK_SESSION_HANDLE *main_s)
{
	CK_SESSION_HANDLE ro = CK_INVALID_HANDLE, rw = CK_INVALID_HANDLE;
	CK_UTF8CHAR pinbuf[64], bad[] = "wrong-pin-0";
	CK_TOKEN_INFO ti;
	size_t pinlen = strlen(pin);

	if (pinlen > sizeof(pinbuf))
		pinlen = sizeof(pinbuf);
	memcpy(pinbuf, pin, pinlen);
	step("login: C_OpenSession(RO)",
	     F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro), NULL);
	step("login: C_OpenSession(RW)",
	     F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw), NULL);
	show_session("login: RO state before login", ro);
	show_session("login: RW state before login", rw);
	step("C_Logout(not logged in)", F->C_Logout(rw), NULL);
	step("C_Login(USER, wrong PIN)", F->C_Login(rw, CKU_USER, bad, sizeof(bad) - 1), NULL);
	step("C_Login(bad user type 7)", F->C_Login(rw, 7, pinbuf, pinlen), NULL);
	step("C_Login(CONTEXT_SPECIFIC, no operation)",
	     F->C_Login(rw, CKU_CONTEXT_SPECIFIC, pinbuf, pinlen), NULL);
	step("C_Login(SO, RO session open)", F->C_Login(rw, CKU_SO, pinbuf, pinlen), NULL);
	step("C_Login(USER, right PIN)", F->C_Login(ro, CKU_USER, pinbuf, pinlen), NULL);
	show_session("login: RO state after login", ro);
	show_session("login: RW state after login", rw);
	step("C_Login(USER, again)", F->C_Login(rw, CKU_USER, pinbuf, pinlen), NULL);
	step("C_Login(SO, user logged in, RO session open)", F->C_Login(rw, CKU_SO, pinbuf, pinlen),
	     NULL);
	memset(&ti, 0, sizeof(ti));
	step("C_GetTokenInfo(logged in)", F->C_GetTokenInfo(slot, &ti), "flags&LOCKED=0x%lx",
	     (unsigned long)(ti.flags & (CKF_USER_PIN_LOCKED | CKF_SO_PIN_LOCKED)));
	step("C_Logout", F->C_Logout(ro), NULL);
	show_session("login: RW state after logout", rw);
	step("C_Logout(again)", F->C_Logout(rw), NULL);
	step("C_Login(USER, RW session)", F->C_Login(rw, CKU_USER, pinbuf, pinlen), NULL);
	step("login: C_CloseSession(RO)", F->C_CloseSession(ro), NULL);
	show_session("login: RW state after closing RO", rw);
	step("C_Login(SO, user logged in, no RO session)", F->C_Login(rw, CKU_SO, pinbuf, pinlen),
	     NULL);
	*main_s = rw;
}

static void section_objects(CK_SESSION_HANDLE s, CK_SLOT_ID slot, const char *pin,
                            CK_OBJECT_HANDLE *aes_out)
{
	CK_OBJECT_HANDLE data = 0, priv = 0, aesv = 0, copy = 0, copy2 = 0, sess = 0, h = 0;
	CK_SESSION_HANDLE s2 = CK_INVALID_HANDLE;
	CK_ATTRIBUTE data_t[] = {
	    UATTR(CKA_CLASS, cls_data),       BATTR(CKA_TOKEN, yes),
	    BATTR(CKA_PRIVATE, no),           SATTR(CKA_LABEL, L_DATA),
	    SATTR(CKA_APPLICATION, app_name), SATTR(CKA_VALUE, data_value),
	};
	CK_ATTRIBUTE priv_t[] = {
	    UATTR(CKA_CLASS, cls_data), BATTR(CKA_TOKEN, yes),        BATTR(CKA_PRIVATE, yes),
	    SATTR(CKA_LABEL, L_PRIV),   SATTR(CKA_VALUE, data_value),
	};
	CK_ATTRIBUTE aesv_t[] = {
	    UATTR(CKA_CLASS, cls_secret), UATTR(CKA_KEY_TYPE, kt_aes),
	    BATTR(CKA_TOKEN, yes),        BATTR(CKA_PRIVATE, yes),
	    SATTR(CKA_LABEL, L_AESV),     ATTR(CKA_ID, id_aesv, sizeof(id_aesv)),
	    ATTR(CKA_VALUE, aes_key, 32), BATTR(CKA_ENCRYPT, yes),
	    BATTR(CKA_DECRYPT, yes),      BATTR(CKA_WRAP, yes),
	    BATTR(CKA_UNWRAP, yes),       BATTR(CKA_SENSITIVE, no),
	    BATTR(CKA_EXTRACTABLE, yes),
	};
	CK_ATTRIBUTE sess_t[] = {
	    UATTR(CKA_CLASS, cls_data),
	    BATTR(CKA_TOKEN, no),
	    SATTR(CKA_LABEL, L_SESS),
	    SATTR(CKA_VALUE, data_value),
	};
	CK_ATTRIBUTE ro_token_t[] = {
	    UATTR(CKA_CLASS, cls_data),
	    BATTR(CKA_TOKEN, yes),
	    SATTR(CKA_LABEL, L_SESS),
	};
	CK_ULONG count, calls, dlen = strlen(pin);
	CK_UTF8CHAR pinbuf[64];
	unsigned char buf[64];
	CK_RV rv;

	if (dlen > sizeof(pinbuf))
		dlen = sizeof(pinbuf);
	memcpy(pinbuf, pin, dlen);

	rv = F->C_CreateObject(s, data_t, COUNT(data_t), &data);
	track(rv, data);
	step("C_CreateObject(data, token)", rv, NULL);
	rv = F->C_CreateObject(s, priv_t, COUNT(priv_t), &priv);
	track(rv, priv);
	step("C_CreateObject(data, token, private)", rv, NULL);
	rv = F->C_CreateObject(s, aesv_t, COUNT(aesv_t), &aesv);
	track(rv, aesv);
	step("C_CreateObject(AES-256 by value)", rv, NULL);
	must("distinct object handles", data != priv && priv != aesv && data != aesv);

	/* Finding. */
	find_label("find label=battery-data", s, L_DATA, &h);
	must("find by label gives the created object", h == data);
	{
		CK_ATTRIBUTE t[] = {ATTR(CKA_ID, id_aesv, sizeof(id_aesv))};

		rv = find(s, t, 1, 16, &h, &count, NULL);
		step("find id=b101", rv, "count=%lu", (unsigned long)count);
		must("find by id gives the created key", h == aesv);
	}
	{
		CK_ATTRIBUTE t[] = {UATTR(CKA_CLASS, cls_data)};

		rv = find(s, t, 1, 16, NULL, &count, NULL);
		step("find class=CKO_DATA", rv, "count=%lu", (unsigned long)count);
		rv = find(s, t, 1, 1, NULL, &count, &calls);
		step("find class=CKO_DATA one per call", rv, "count=%lu calls=%lu",
		     (unsigned long)count, (unsigned long)calls);
	}
	{
		CK_ATTRIBUTE t[] = {UATTR(CKA_CLASS, cls_secret), SATTR(CKA_LABEL, L_AESV)};

		rv = find(s, t, 2, 16, NULL, &count, NULL);
		step("find class=CKO_SECRET_KEY label=battery-aes-value", rv, "count=%lu",
		     (unsigned long)count);
	}
	{
		CK_ATTRIBUTE t[] = {UATTR(CKA_CLASS, cls_pub), SATTR(CKA_LABEL, L_AESV)};

		rv = find(s, t, 2, 16, NULL, &count, NULL);
		step("find class=CKO_PUBLIC_KEY label=battery-aes-value", rv, "count=%lu",
		     (unsigned long)count);
	}
	rv = find(s, NULL, 0, 16, NULL, &count, NULL);
	step("find all (empty template)", rv, "count=%lu", (unsigned long)count);
	{
		CK_ATTRIBUTE t[] = {SATTR(CKA_LABEL, L_DATA)};
		CK_OBJECT_HANDLE hh[4];
		CK_ULONG got = 0;

		step("C_FindObjectsInit", F->C_FindObjectsInit(s, t, 1), NULL);
		step("C_FindObjectsInit(active)", F->C_FindObjectsInit(s, t, 1), NULL);
		rv = F->C_FindObjects(s, hh, 4, &got);
		step("C_FindObjects", rv, "got=%lu", (unsigned long)got);
		got = 99;
		rv = F->C_FindObjects(s, hh, 4, &got);
		step("C_FindObjects(exhausted)", rv, "got=%lu", (unsigned long)got);
		step("C_FindObjectsFinal", F->C_FindObjectsFinal(s), NULL);
		step("C_FindObjectsFinal(again)", F->C_FindObjectsFinal(s), NULL);
		got = 99;
		step("C_FindObjects(after final)", F->C_FindObjects(s, hh, 4, &got), NULL);
	}

	/* Attributes. */
	SHOW("data", s, data, CKA_CLASS, SHOW_ULONG);
	SHOW("data", s, data, CKA_TOKEN, SHOW_BOOL);
	SHOW("data", s, data, CKA_PRIVATE, SHOW_BOOL);
	SHOW("data", s, data, CKA_MODIFIABLE, SHOW_BOOL);
	SHOW("data", s, data, CKA_LABEL, SHOW_HEX);
	SHOW("data", s, data, CKA_APPLICATION, SHOW_HEX);
	SHOW("data", s, data, CKA_VALUE, SHOW_HEX);
	SHOW("data", s, data, CKA_OBJECT_ID, SHOW_HEX);
	SHOW("data", s, data, CKA_MODULUS, SHOW_HEX);
	SHOW("aes-value", s, aesv, CKA_CLASS, SHOW_ULONG);
	SHOW("aes-value", s, aesv, CKA_KEY_TYPE, SHOW_ULONG);
	SHOW("aes-value", s, aesv, CKA_ID, SHOW_HEX);
	SHOW("aes-value", s, aesv, CKA_VALUE, SHOW_HEX);
	SHOW("aes-value", s, aesv, CKA_VALUE_LEN, SHOW_ULONG);
	SHOW("aes-value", s, aesv, CKA_CHECK_VALUE, SHOW_HEX);
	SHOW("aes-value", s, aesv, CKA_LOCAL, SHOW_BOOL);
	SHOW("aes-value", s, aesv, CKA_SENSITIVE, SHOW_BOOL);
	SHOW("aes-value", s, aesv, CKA_EXTRACTABLE, SHOW_BOOL);
	SHOW("aes-value", s, aesv, CKA_ALWAYS_SENSITIVE, SHOW_BOOL);
	SHOW("aes-value", s, aesv, CKA_NEVER_EXTRACTABLE, SHOW_BOOL);
	SHOW("aes-value", s, aesv, CKA_ENCRYPT, SHOW_BOOL);
	SHOW("aes-value", s, aesv, CKA_SIGN, SHOW_BOOL);
	SHOW("aes-value", s, aesv, CKA_KEY_GEN_MECHANISM, SHOW_ULONG);
	{
		/* Short buffer: CKR_BUFFER_TOO_SMALL, length unavailable (2.40 5.7). */
		CK_ATTRIBUTE a = {CKA_VALUE, buf, 3};

		memset(buf, 0, sizeof(buf));
		rv = F->C_GetAttributeValue(s, data, &a, 1);
		step("C_GetAttributeValue(value, 3-byte buffer)", rv, "len=%ld",
		     (long)a.ulValueLen);
	}
	{
		/* Mixed template: the good attribute is still returned. */
		unsigned char lbl[64];
		CK_ATTRIBUTE a[] = {
		    {CKA_LABEL, lbl, sizeof(lbl)},
		    {CKA_MODULUS, buf, sizeof(buf)},
		    {CKA_CLASS, NULL, 0},
		};

		memset(lbl, 0, sizeof(lbl));
		rv = F->C_GetAttributeValue(s, data, a, 3);
		step("C_GetAttributeValue(label+modulus+class size)", rv,
		     "label=%.*s lens=%ld,%ld,%ld",
		     (int)(a[0].ulValueLen < 64 ? a[0].ulValueLen : 0), (const char *)lbl,
		     (long)a[0].ulValueLen, (long)a[1].ulValueLen, (long)a[2].ulValueLen);
	}

	/* Private objects are invisible when logged out. */
	find_label("find label=battery-private (logged in)", s, L_PRIV, NULL);
	step("objects: C_Logout", F->C_Logout(s), NULL);
	find_label("find label=battery-private (logged out)", s, L_PRIV, NULL);
	SHOW("private data (logged out)", s, priv, CKA_VALUE, SHOW_HEX);
	find_label("find label=battery-data (logged out)", s, L_DATA, NULL);
	step("objects: C_Login", F->C_Login(s, CKU_USER, pinbuf, dlen), NULL);
	/*
	 * Handles of private objects need not survive a logout (2.40 2.4:
	 * only while the object stays accessible; SoftHSM2 drops them): found
	 * again, and the old handles are not compared.
	 */
	untrack(priv);
	untrack(aesv);
	find_label("find label=battery-private (logged in again)", s, L_PRIV, &priv);
	find_label("find label=battery-aes-value (logged in again)", s, L_AESV, &aesv);
	track(CKR_OK, priv);
	track(CKR_OK, aesv);

	/* Set. */
	{
		CK_ATTRIBUTE t[] = {SATTR(CKA_LABEL, L_DATA2)};

		step("C_SetAttributeValue(data label)", F->C_SetAttributeValue(s, data, t, 1),
		     NULL);
		SHOW("data", s, data, CKA_LABEL, SHOW_HEX);
		find_label("find old label", s, L_DATA, NULL);
		find_label("find new label", s, L_DATA2, NULL);
	}
	{
		unsigned char v[] = {1, 2, 3, 4};
		CK_ATTRIBUTE t[] = {ATTR(CKA_VALUE, v, sizeof(v))};

		step("C_SetAttributeValue(data value)", F->C_SetAttributeValue(s, data, t, 1),
		     NULL);
		SHOW("data", s, data, CKA_VALUE, SHOW_HEX);
	}
	{
		CK_ATTRIBUTE t[] = {UATTR(CKA_CLASS, cls_secret)};

		step("C_SetAttributeValue(class)", F->C_SetAttributeValue(s, data, t, 1), NULL);
	}
	{
		CK_ATTRIBUTE t[] = {BATTR(CKA_SENSITIVE, yes)};

		step("C_SetAttributeValue(aes sensitive=true)",
		     F->C_SetAttributeValue(s, aesv, t, 1), NULL);
		SHOW("aes-value", s, aesv, CKA_VALUE, SHOW_HEX);
	}
	{
		CK_ATTRIBUTE t[] = {BATTR(CKA_SENSITIVE, no)};

		step("C_SetAttributeValue(aes sensitive=false again)",
		     F->C_SetAttributeValue(s, aesv, t, 1), NULL);
	}
	{
		CK_ATTRIBUTE t[] = {BATTR(CKA_EXTRACTABLE, no), BATTR(CKA_SENSITIVE, yes)};
		CK_OBJECT_HANDLE c = 0;
		CK_ATTRIBUTE ct[] = {SATTR(CKA_LABEL, L_AESNX), BATTR(CKA_TOKEN, no)};

		/* On a session copy, so that the by-value key stays readable. */
		rv = F->C_CopyObject(s, aesv, ct, COUNT(ct), &c);
		track(rv, c);
		step("C_CopyObject(aes-value, session copy)", rv, NULL);
		step("C_SetAttributeValue(copy extractable=false sensitive=true)",
		     F->C_SetAttributeValue(s, c, t, 2), NULL);
		SHOW("aes-copy", s, c, CKA_VALUE, SHOW_HEX);
		SHOW("aes-copy", s, c, CKA_ALWAYS_SENSITIVE, SHOW_BOOL);
		SHOW("aes-copy", s, c, CKA_NEVER_EXTRACTABLE, SHOW_BOOL);
		step("C_DestroyObject(aes copy)", F->C_DestroyObject(s, c), NULL);
		untrack(c);
	}

	/* Copy. */
	{
		CK_ATTRIBUTE t[] = {SATTR(CKA_LABEL, L_COPY)};
		CK_ATTRIBUTE t2[] = {SATTR(CKA_LABEL, L_COPY), BATTR(CKA_TOKEN, no)};

		rv = F->C_CopyObject(s, data, t, 1, &copy);
		track(rv, copy);
		step("C_CopyObject(data, new label)", rv, NULL);
		must("copy has a new handle", copy != data);
		SHOW("copy", s, copy, CKA_VALUE, SHOW_HEX);
		SHOW("copy", s, copy, CKA_TOKEN, SHOW_BOOL);
		rv = F->C_CopyObject(s, data, t2, 2, &copy2);
		track(rv, copy2);
		step("C_CopyObject(data, to session object)", rv, NULL);
		SHOW("copy2", s, copy2, CKA_TOKEN, SHOW_BOOL);
		find_label("find label=battery-data-copy", s, L_COPY, NULL);
	}
	{
		CK_ULONG size = 0;

		step("C_GetObjectSize(data)", F->C_GetObjectSize(s, data, &size), NULL);
	}

	/* Session objects: visible to every session of the application, gone with theirs. */
	rv = F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s2);
	step("objects: C_OpenSession(second RW)", rv, NULL);
	rv = F->C_CreateObject(s2, sess_t, COUNT(sess_t), &sess);
	step("C_CreateObject(session data, second session)", rv, NULL);
	find_label("find session object from first session", s, L_SESS, &h);
	must("session object found by its handle", h == sess);
	SHOW("session data (from first session)", s, sess, CKA_VALUE, SHOW_HEX);
	step("objects: C_CloseSession(second)", F->C_CloseSession(s2), NULL);
	find_label("find session object after its session closed", s, L_SESS, NULL);
	SHOW("session data (closed session)", s, sess, CKA_VALUE, SHOW_HEX);

	/* Read-only session cannot create token objects. */
	rv = F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s2);
	step("objects: C_OpenSession(RO)", rv, NULL);
	h = 0;
	rv = F->C_CreateObject(s2, ro_token_t, COUNT(ro_token_t), &h);
	track(rv, h);
	step("C_CreateObject(token object, RO session)", rv, NULL);
	h = 0;
	rv = F->C_CreateObject(s2, sess_t, COUNT(sess_t), &h);
	track(rv, h);
	step("C_CreateObject(session object, RO session)", rv, NULL);
	step("C_DestroyObject(token object, RO session)", F->C_DestroyObject(s2, copy), NULL);
	step("objects: C_CloseSession(RO)", F->C_CloseSession(s2), NULL);
	if (rv == CKR_OK)
		untrack(h); /* a session object: gone with the session */

	/* Destroy. */
	rv = F->C_DestroyObject(s, copy);
	if (rv == CKR_OK)
		untrack(copy);
	step("C_DestroyObject(copy)", rv, NULL);
	rv = F->C_DestroyObject(s, copy2);
	if (rv == CKR_OK)
		untrack(copy2);
	step("C_DestroyObject(session copy)", rv, NULL);
	step("C_DestroyObject(copy again)", F->C_DestroyObject(s, copy), NULL);
	SHOW("destroyed copy", s, copy, CKA_LABEL, SHOW_HEX);
	find_label("find label=battery-data-copy after destroy", s, L_COPY, NULL);
	rv = F->C_DestroyObject(s, data);
	if (rv == CKR_OK)
		untrack(data);
	step("C_DestroyObject(data)", rv, NULL);
	rv = F->C_DestroyObject(s, priv);
	if (rv == CKR_OK)
		untrack(priv);
	step("C_DestroyObject(private data)", rv, NULL);
	find_label("find label=battery-data-renamed after destroy", s, L_DATA2, NULL);
	*aes_out = aesv;
}

struct keys {
	CK_OBJECT_HANDLE aesv, aesg, aes128, hmac;
	CK_OBJECT_HANDLE rsa_pub, rsa_priv, eca_pub, eca_priv, ecb_pub, ecb_priv;
};

static void section_keygen(CK_SESSION_HANDLE s, struct keys *k)
{
	CK_MECHANISM m_rsa = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
	CK_MECHANISM m_ec = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_MECHANISM m_aes = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ULONG bits = 2048, len32 = 32;
	CK_ATTRIBUTE rsa_pub[] = {
	    BATTR(CKA_TOKEN, yes),
	    SATTR(CKA_LABEL, L_RSA),
	    ATTR(CKA_ID, id_rsa, 2),
	    UATTR(CKA_MODULUS_BITS, bits),
	    ATTR(CKA_PUBLIC_EXPONENT, rsa_e, 3),
	    BATTR(CKA_VERIFY, yes),
	    BATTR(CKA_ENCRYPT, yes),
	    BATTR(CKA_WRAP, yes),
	};
	CK_ATTRIBUTE rsa_priv[] = {
	    BATTR(CKA_TOKEN, yes),   BATTR(CKA_PRIVATE, yes),   SATTR(CKA_LABEL, L_RSA),
	    ATTR(CKA_ID, id_rsa, 2), BATTR(CKA_SENSITIVE, yes), BATTR(CKA_SIGN, yes),
	    BATTR(CKA_DECRYPT, yes), BATTR(CKA_UNWRAP, yes),
	};
	CK_ATTRIBUTE eca_pub[] = {
	    BATTR(CKA_TOKEN, no),    SATTR(CKA_LABEL, L_ECA),
	    ATTR(CKA_ID, id_eca, 2), ATTR(CKA_EC_PARAMS, p256_params, sizeof(p256_params)),
	    BATTR(CKA_VERIFY, yes),  BATTR(CKA_DERIVE, yes),
	};
	CK_ATTRIBUTE eca_priv[] = {
	    BATTR(CKA_TOKEN, no),    BATTR(CKA_PRIVATE, yes),   SATTR(CKA_LABEL, L_ECA),
	    ATTR(CKA_ID, id_eca, 2), BATTR(CKA_SENSITIVE, yes), BATTR(CKA_SIGN, yes),
	    BATTR(CKA_DERIVE, yes),
	};
	CK_ATTRIBUTE ecb_pub[] = {
	    BATTR(CKA_TOKEN, no),    SATTR(CKA_LABEL, L_ECB),
	    ATTR(CKA_ID, id_ecb, 2), ATTR(CKA_EC_PARAMS, p256_params, sizeof(p256_params)),
	    BATTR(CKA_DERIVE, yes),
	};
	CK_ATTRIBUTE ecb_priv[] = {
	    BATTR(CKA_TOKEN, no),    BATTR(CKA_PRIVATE, yes),   SATTR(CKA_LABEL, L_ECB),
	    ATTR(CKA_ID, id_ecb, 2), BATTR(CKA_SENSITIVE, yes), BATTR(CKA_DERIVE, yes),
	};
	CK_ATTRIBUTE aesg_t[] = {
	    UATTR(CKA_CLASS, cls_secret), UATTR(CKA_KEY_TYPE, kt_aes), BATTR(CKA_TOKEN, yes),
	    BATTR(CKA_PRIVATE, yes),      SATTR(CKA_LABEL, L_AESG),    UATTR(CKA_VALUE_LEN, len32),
	    BATTR(CKA_SENSITIVE, yes),    BATTR(CKA_EXTRACTABLE, no),  BATTR(CKA_ENCRYPT, yes),
	    BATTR(CKA_DECRYPT, yes),
	};
	CK_ATTRIBUTE aes128_t[] = {
	    UATTR(CKA_CLASS, cls_secret),
	    UATTR(CKA_KEY_TYPE, kt_aes),
	    BATTR(CKA_TOKEN, no),
	    SATTR(CKA_LABEL, L_AES128),
	    ATTR(CKA_VALUE, aes128_key, 16),
	    BATTR(CKA_ENCRYPT, yes),
	    BATTR(CKA_DECRYPT, no),
	    BATTR(CKA_WRAP, no),
	    BATTR(CKA_EXTRACTABLE, yes),
	    BATTR(CKA_SENSITIVE, no),
	};
	CK_ATTRIBUTE hmac_t[] = {
	    UATTR(CKA_CLASS, cls_secret), UATTR(CKA_KEY_TYPE, kt_generic), BATTR(CKA_TOKEN, no),
	    SATTR(CKA_LABEL, L_HMAC),     ATTR(CKA_VALUE, hmac_key, 32),   BATTR(CKA_SIGN, yes),
	    BATTR(CKA_VERIFY, yes),
	};
	unsigned char n1[512], n2[512];
	CK_ULONG l1, l2;
	CK_RV rv;

	rv = F->C_GenerateKeyPair(s, &m_rsa, rsa_pub, COUNT(rsa_pub), rsa_priv, COUNT(rsa_priv),
	                          &k->rsa_pub, &k->rsa_priv);
	track(rv, k->rsa_pub);
	track(rv, k->rsa_priv);
	step("C_GenerateKeyPair(RSA-2048, token)", rv, NULL);
	SHOW("rsa pub", s, k->rsa_pub, CKA_CLASS, SHOW_ULONG);
	SHOW("rsa pub", s, k->rsa_pub, CKA_KEY_TYPE, SHOW_ULONG);
	SHOW("rsa pub", s, k->rsa_pub, CKA_MODULUS_BITS, SHOW_ULONG);
	SHOW("rsa pub", s, k->rsa_pub, CKA_MODULUS, SHOW_LEN);
	SHOW("rsa pub", s, k->rsa_pub, CKA_PUBLIC_EXPONENT, SHOW_HEX);
	SHOW("rsa pub", s, k->rsa_pub, CKA_ID, SHOW_HEX);
	SHOW("rsa pub", s, k->rsa_pub, CKA_LOCAL, SHOW_BOOL);
	SHOW("rsa pub", s, k->rsa_pub, CKA_KEY_GEN_MECHANISM, SHOW_ULONG);
	SHOW("rsa pub", s, k->rsa_pub, CKA_PRIVATE, SHOW_BOOL);
	SHOW("rsa pub", s, k->rsa_pub, CKA_WRAP, SHOW_BOOL);
	SHOW("rsa priv", s, k->rsa_priv, CKA_CLASS, SHOW_ULONG);
	SHOW("rsa priv", s, k->rsa_priv, CKA_MODULUS, SHOW_LEN);
	SHOW("rsa priv", s, k->rsa_priv, CKA_PUBLIC_EXPONENT, SHOW_HEX);
	SHOW("rsa priv", s, k->rsa_priv, CKA_PRIVATE_EXPONENT, SHOW_HEX);
	SHOW("rsa priv", s, k->rsa_priv, CKA_PRIME_1, SHOW_HEX);
	SHOW("rsa priv", s, k->rsa_priv, CKA_SENSITIVE, SHOW_BOOL);
	SHOW("rsa priv", s, k->rsa_priv, CKA_ALWAYS_SENSITIVE, SHOW_BOOL);
	SHOW("rsa priv", s, k->rsa_priv, CKA_EXTRACTABLE, SHOW_BOOL);
	SHOW("rsa priv", s, k->rsa_priv, CKA_NEVER_EXTRACTABLE, SHOW_BOOL);
	SHOW("rsa priv", s, k->rsa_priv, CKA_SIGN, SHOW_BOOL);
	SHOW("rsa priv", s, k->rsa_priv, CKA_LOCAL, SHOW_BOOL);
	l1 = get_attr(s, k->rsa_pub, CKA_MODULUS, n1, sizeof(n1));
	l2 = get_attr(s, k->rsa_priv, CKA_MODULUS, n2, sizeof(n2));
	must("rsa pub and priv modulus equal", l1 == 256 && l1 == l2 && memcmp(n1, n2, l1) == 0);

	rv = F->C_GenerateKeyPair(s, &m_ec, eca_pub, COUNT(eca_pub), eca_priv, COUNT(eca_priv),
	                          &k->eca_pub, &k->eca_priv);
	track(rv, k->eca_pub);
	track(rv, k->eca_priv);
	step("C_GenerateKeyPair(EC P-256 A, session)", rv, NULL);
	rv = F->C_GenerateKeyPair(s, &m_ec, ecb_pub, COUNT(ecb_pub), ecb_priv, COUNT(ecb_priv),
	                          &k->ecb_pub, &k->ecb_priv);
	track(rv, k->ecb_pub);
	track(rv, k->ecb_priv);
	step("C_GenerateKeyPair(EC P-256 B, session)", rv, NULL);
	SHOW("ec pub", s, k->eca_pub, CKA_KEY_TYPE, SHOW_ULONG);
	SHOW("ec pub", s, k->eca_pub, CKA_EC_PARAMS, SHOW_HEX);
	SHOW("ec pub", s, k->eca_pub, CKA_EC_POINT, SHOW_LEN);
	SHOW("ec pub", s, k->eca_pub, CKA_TOKEN, SHOW_BOOL);
	SHOW("ec pub", s, k->eca_pub, CKA_KEY_GEN_MECHANISM, SHOW_ULONG);
	SHOW("ec priv", s, k->eca_priv, CKA_EC_PARAMS, SHOW_HEX);
	SHOW("ec priv", s, k->eca_priv, CKA_VALUE, SHOW_HEX);
	SHOW("ec priv", s, k->eca_priv, CKA_DERIVE, SHOW_BOOL);

	rv = F->C_GenerateKey(s, &m_aes, aesg_t, COUNT(aesg_t), &k->aesg);
	track(rv, k->aesg);
	step("C_GenerateKey(AES-256, token, sensitive)", rv, NULL);
	SHOW("aes-gen", s, k->aesg, CKA_VALUE_LEN, SHOW_ULONG);
	SHOW("aes-gen", s, k->aesg, CKA_VALUE, SHOW_HEX);
	SHOW("aes-gen", s, k->aesg, CKA_LOCAL, SHOW_BOOL);
	SHOW("aes-gen", s, k->aesg, CKA_KEY_GEN_MECHANISM, SHOW_ULONG);
	SHOW("aes-gen", s, k->aesg, CKA_ALWAYS_SENSITIVE, SHOW_BOOL);
	SHOW("aes-gen", s, k->aesg, CKA_NEVER_EXTRACTABLE, SHOW_BOOL);
	SHOW("aes-gen", s, k->aesg, CKA_CHECK_VALUE, SHOW_LEN);
	{
		/* Sensitive value beside a readable attribute. */
		unsigned char v[32];
		CK_ULONG vl = 0;
		CK_ATTRIBUTE a[] = {{CKA_VALUE_LEN, &vl, sizeof(vl)}, {CKA_VALUE, v, sizeof(v)}};

		rv = F->C_GetAttributeValue(s, k->aesg, a, 2);
		step("C_GetAttributeValue(aes-gen value_len+value)", rv,
		     "value_len=%lu lens=%ld,%ld", (unsigned long)vl, (long)a[0].ulValueLen,
		     (long)a[1].ulValueLen);
	}
	{
		CK_ATTRIBUTE t[] = {BATTR(CKA_SENSITIVE, no)};

		step("C_SetAttributeValue(aes-gen sensitive=false)",
		     F->C_SetAttributeValue(s, k->aesg, t, 1), NULL);
	}
	{
		CK_ULONG bad = 33;
		CK_ATTRIBUTE t[] = {UATTR(CKA_CLASS, cls_secret), UATTR(CKA_KEY_TYPE, kt_aes),
		                    BATTR(CKA_TOKEN, no), UATTR(CKA_VALUE_LEN, bad)};
		CK_OBJECT_HANDLE h = 0;

		rv = F->C_GenerateKey(s, &m_aes, t, COUNT(t), &h);
		track(rv, h);
		step("C_GenerateKey(AES, 33 bytes)", rv, NULL);
	}
	{
		CK_MECHANISM bogus = {BOGUS_MECH, NULL, 0};
		CK_OBJECT_HANDLE h = 0;

		rv = F->C_GenerateKey(s, &bogus, aesg_t, COUNT(aesg_t), &h);
		track(rv, h);
		step("C_GenerateKey(bogus mechanism)", rv, NULL);
	}
	rv = F->C_CreateObject(s, aes128_t, COUNT(aes128_t), &k->aes128);
	track(rv, k->aes128);
	step("C_CreateObject(AES-128 by value, session)", rv, NULL);
	rv = F->C_CreateObject(s, hmac_t, COUNT(hmac_t), &k->hmac);
	track(rv, k->hmac);
	step("C_CreateObject(generic secret by value, session)", rv, NULL);
	SHOW("aes128", s, k->aes128, CKA_CHECK_VALUE, SHOW_HEX);
}

static void section_sign(CK_SESSION_HANDLE s, struct keys *k)
{
	CK_MECHANISM m_rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
	unsigned char sig[512], sig2[512], bad[512], n[512], e[16];
	CK_ULONG siglen, sig2len = 0, nlen, elen;
	unsigned char part1[] = "The quick brown fox ", part2[] = "jumps over the lazy dog!!";
	CK_RV rv, rv2;

	drain(s);

	/* RSA PKCS#1 v1.5 SHA-256, single part. */
	step("C_SignInit(SHA256_RSA_PKCS)", F->C_SignInit(s, &m_rsa, k->rsa_priv), NULL);
	step("C_SignInit(again: active)", F->C_SignInit(s, &m_rsa, k->rsa_priv), NULL);
	siglen = 0;
	rv = F->C_Sign(s, msg, MSG_LEN, NULL, &siglen);
	step("C_Sign size query", rv, "len=%lu", (unsigned long)siglen);
	siglen = 10;
	rv = F->C_Sign(s, msg, MSG_LEN, sig, &siglen);
	step("C_Sign short buffer", rv, "len=%lu", (unsigned long)siglen);
	siglen = sizeof(sig);
	rv = F->C_Sign(s, msg, MSG_LEN, sig, &siglen);
	step("C_Sign", rv, "len=%lu", (unsigned long)siglen);
	must("RSA sign succeeded", rv == CKR_OK);
	step("C_Sign(after completion)", F->C_Sign(s, msg, MSG_LEN, sig2, &sig2len), NULL);
	step("C_VerifyInit", F->C_VerifyInit(s, &m_rsa, k->rsa_pub), NULL);
	rv = F->C_Verify(s, msg, MSG_LEN, sig, siglen);
	step("C_Verify", rv, NULL);
	must("RSA signature verifies", rv == CKR_OK);
	nlen = get_attr(s, k->rsa_pub, CKA_MODULUS, n, sizeof(n));
	elen = get_attr(s, k->rsa_pub, CKA_PUBLIC_EXPONENT, e, sizeof(e));
	must("RSA signature verifies with OpenSSL",
	     ossl_rsa_verify(n, nlen, e, elen, msg, MSG_LEN, sig, siglen));
	memcpy(bad, sig, siglen);
	bad[siglen / 2] ^= 0x01;
	step("C_VerifyInit", F->C_VerifyInit(s, &m_rsa, k->rsa_pub), NULL);
	rv = F->C_Verify(s, msg, MSG_LEN, bad, siglen);
	step("C_Verify(tampered)", rv, NULL);
	must("tampered RSA signature gives CKR_SIGNATURE_INVALID", rv == CKR_SIGNATURE_INVALID);
	step("C_Verify(after failure: not initialized)", F->C_Verify(s, msg, MSG_LEN, sig, siglen),
	     NULL);
	step("C_VerifyInit", F->C_VerifyInit(s, &m_rsa, k->rsa_pub), NULL);
	step("C_Verify(255-byte signature)", F->C_Verify(s, msg, MSG_LEN, sig, siglen - 1), NULL);

	/* Multi-part. */
	step("C_SignInit(multi)", F->C_SignInit(s, &m_rsa, k->rsa_priv), NULL);
	step("C_SignUpdate 1", F->C_SignUpdate(s, part1, sizeof(part1) - 1), NULL);
	step("C_SignUpdate 2", F->C_SignUpdate(s, part2, sizeof(part2) - 1), NULL);
	sig2len = 0;
	rv = F->C_SignFinal(s, NULL, &sig2len);
	step("C_SignFinal size query", rv, "len=%lu", (unsigned long)sig2len);
	sig2len = 10;
	rv = F->C_SignFinal(s, sig2, &sig2len);
	step("C_SignFinal short buffer", rv, "len=%lu", (unsigned long)sig2len);
	sig2len = sizeof(sig2);
	rv = F->C_SignFinal(s, sig2, &sig2len);
	step("C_SignFinal", rv, "len=%lu", (unsigned long)sig2len);
	must("multi-part signature == single-part signature (PKCS#1 v1.5)",
	     rv == CKR_OK && sig2len == siglen && memcmp(sig, sig2, siglen) == 0);
	step("C_VerifyInit(multi)", F->C_VerifyInit(s, &m_rsa, k->rsa_pub), NULL);
	step("C_VerifyUpdate 1", F->C_VerifyUpdate(s, part1, sizeof(part1) - 1), NULL);
	step("C_VerifyUpdate 2", F->C_VerifyUpdate(s, part2, sizeof(part2) - 1), NULL);
	rv = F->C_VerifyFinal(s, sig2, sig2len);
	step("C_VerifyFinal", rv, NULL);
	must("multi-part RSA signature verifies", rv == CKR_OK);
	step("C_VerifyInit(multi, tampered)", F->C_VerifyInit(s, &m_rsa, k->rsa_pub), NULL);
	step("C_VerifyUpdate", F->C_VerifyUpdate(s, msg, MSG_LEN), NULL);
	rv = F->C_VerifyFinal(s, bad, siglen);
	step("C_VerifyFinal(tampered)", rv, NULL);
	must("tampered multi-part gives CKR_SIGNATURE_INVALID", rv == CKR_SIGNATURE_INVALID);

	step("C_SignInit(then single-part during multi-part)",
	     F->C_SignInit(s, &m_rsa, k->rsa_priv), NULL);
	step("C_SignUpdate", F->C_SignUpdate(s, msg, MSG_LEN), NULL);
	sig2len = sizeof(sig2);
	step("C_Sign(during multi-part)", F->C_Sign(s, msg, MSG_LEN, sig2, &sig2len), NULL);
	drain(s);

	/* RSA-PSS SHA-256 (randomized: lengths and verification only). */
	{
		CK_RSA_PKCS_PSS_PARAMS pp = {CKM_SHA256, CKG_MGF1_SHA256, 32};
		CK_MECHANISM m = {CKM_SHA256_RSA_PKCS_PSS, &pp, sizeof(pp)};

		rv = F->C_SignInit(s, &m, k->rsa_priv);
		step("C_SignInit(SHA256_RSA_PKCS_PSS)", rv, NULL);
		sig2len = sizeof(sig2);
		rv = rv == CKR_OK ? F->C_Sign(s, msg, MSG_LEN, sig2, &sig2len) : rv;
		step("C_Sign(PSS)", rv, "len=%lu", (unsigned long)sig2len);
		if (rv == CKR_OK) {
			step("C_VerifyInit(PSS)", F->C_VerifyInit(s, &m, k->rsa_pub), NULL);
			rv2 = F->C_Verify(s, msg, MSG_LEN, sig2, sig2len);
			step("C_Verify(PSS)", rv2, NULL);
			must("PSS signature verifies", rv2 == CKR_OK);
		}
	}

	/* ECDSA over a SHA-256 hash computed by C_Digest. */
	{
		CK_MECHANISM m_sha = {CKM_SHA256, NULL, 0}, m_ec = {CKM_ECDSA, NULL, 0};
		unsigned char hash[64];
		CK_ULONG hlen = sizeof(hash);

		step("C_DigestInit(SHA256 for ECDSA)", F->C_DigestInit(s, &m_sha), NULL);
		rv = F->C_Digest(s, msg, MSG_LEN, hash, &hlen);
		step("C_Digest", rv, "len=%lu", (unsigned long)hlen);
		step("C_SignInit(ECDSA)", F->C_SignInit(s, &m_ec, k->eca_priv), NULL);
		siglen = 0;
		rv = F->C_Sign(s, hash, hlen, NULL, &siglen);
		step("C_Sign(ECDSA) size query", rv, "len=%lu", (unsigned long)siglen);
		siglen = sizeof(sig);
		rv = F->C_Sign(s, hash, hlen, sig, &siglen);
		step("C_Sign(ECDSA)", rv, "len=%lu", (unsigned long)siglen);
		must("ECDSA sign succeeded", rv == CKR_OK);
		step("C_VerifyInit(ECDSA)", F->C_VerifyInit(s, &m_ec, k->eca_pub), NULL);
		rv = F->C_Verify(s, hash, hlen, sig, siglen);
		step("C_Verify(ECDSA)", rv, NULL);
		must("ECDSA signature verifies", rv == CKR_OK);
		memcpy(bad, sig, siglen);
		bad[5] ^= 0x80;
		step("C_VerifyInit(ECDSA)", F->C_VerifyInit(s, &m_ec, k->eca_pub), NULL);
		rv = F->C_Verify(s, hash, hlen, bad, siglen);
		step("C_Verify(ECDSA tampered)", rv, NULL);
		must("tampered ECDSA signature gives CKR_SIGNATURE_INVALID",
		     rv == CKR_SIGNATURE_INVALID);
		step("C_VerifyInit(ECDSA with B's public key)",
		     F->C_VerifyInit(s, &m_ec, k->ecb_pub), NULL);
		step("C_Verify(ECDSA, wrong key)", F->C_Verify(s, hash, hlen, sig, siglen), NULL);
		step("C_SignInit(ECDSA with public key)", F->C_SignInit(s, &m_ec, k->eca_pub),
		     NULL);
		drain(s);
		rv = F->C_SignInit(s, &m_rsa, k->eca_priv);
		step("C_SignInit(SHA256_RSA_PKCS with EC key)", rv, NULL);
		if (rv == CKR_OK) {
			siglen = sizeof(sig);
			step("C_Sign(SHA256_RSA_PKCS with EC key)",
			     F->C_Sign(s, msg, MSG_LEN, sig, &siglen), NULL);
		}
		drain(s);
	}
	{
		CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};

		rv = F->C_SignInit(s, &m, k->eca_priv);
		step("C_SignInit(ECDSA_SHA256)", rv, NULL);
		siglen = sizeof(sig);
		if (rv == CKR_OK) {
			rv = F->C_Sign(s, msg, MSG_LEN, sig, &siglen);
			step("C_Sign(ECDSA_SHA256)", rv, "len=%lu", (unsigned long)siglen);
			step("C_VerifyInit(ECDSA_SHA256)", F->C_VerifyInit(s, &m, k->eca_pub),
			     NULL);
			rv2 = F->C_Verify(s, msg, MSG_LEN, sig, siglen);
			step("C_Verify(ECDSA_SHA256)", rv2, NULL);
			must("ECDSA_SHA256 signature verifies", rv == CKR_OK && rv2 == CKR_OK);
		}
	}

	/* HMAC-SHA256: deterministic, checked against OpenSSL. */
	{
		CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
		unsigned char ref[EVP_MAX_MD_SIZE];
		unsigned int reflen = 0;

		rv = F->C_SignInit(s, &m, k->hmac);
		step("C_SignInit(SHA256_HMAC)", rv, NULL);
		siglen = sizeof(sig);
		if (rv == CKR_OK) {
			rv = F->C_Sign(s, msg, MSG_LEN, sig, &siglen);
			step("C_Sign(HMAC)", rv, "len=%lu", (unsigned long)siglen);
			if (rv == CKR_OK)
				print_hex_line("HMAC value", sig, siglen);
			HMAC(EVP_sha256(), hmac_key, sizeof(hmac_key), msg, MSG_LEN, ref, &reflen);
			must("HMAC equals OpenSSL's",
			     rv == CKR_OK && siglen == reflen && memcmp(sig, ref, reflen) == 0);
			step("C_VerifyInit(HMAC)", F->C_VerifyInit(s, &m, k->hmac), NULL);
			rv = F->C_Verify(s, msg, MSG_LEN, sig, siglen);
			step("C_Verify(HMAC)", rv, NULL);
			must("HMAC verifies", rv == CKR_OK);
			sig[0] ^= 1;
			step("C_VerifyInit(HMAC)", F->C_VerifyInit(s, &m, k->hmac), NULL);
			rv = F->C_Verify(s, msg, MSG_LEN, sig, siglen);
			step("C_Verify(HMAC tampered)", rv, NULL);
			must("tampered HMAC gives CKR_SIGNATURE_INVALID",
			     rv == CKR_SIGNATURE_INVALID);
		}
	}
}

static void section_cipher(CK_SESSION_HANDLE s, struct keys *k)
{
	CK_MECHANISM m_cbc = {CKM_AES_CBC_PAD, iv16, sizeof(iv16)};
	CK_GCM_PARAMS gp = {iv12, sizeof(iv12), 96, aad, sizeof(aad), 128};
	CK_MECHANISM m_gcm = {CKM_AES_GCM, &gp, sizeof(gp)};
	unsigned char ct[512], ct2[512], pt[512], ref[512];
	CK_ULONG ctlen, ct2len, ptlen;
	const CK_ULONG chunks[] = {10, 20, 1};
	const CK_ULONG dchunks[] = {7, 16, 16};
	int reflen = 0;
	CK_RV rv;

	drain(s);

	/* AES-CBC-PAD under the by-value key: deterministic, checked against OpenSSL. */
	ctlen = sizeof(ct);
	rv =
	    crypt_single("AES-CBC-PAD encrypt", s, &m_cbc, k->aesv, 1, msg, MSG_LEN, ct, &ctlen, 1);
	must("AES-CBC-PAD ciphertext equals OpenSSL's",
	     rv == CKR_OK &&
	         ossl_cipher(EVP_aes_256_cbc(), aes_key, iv16, 16, NULL, 0, msg, MSG_LEN, ref,
	                     &reflen) &&
	         (CK_ULONG)reflen == ctlen && memcmp(ref, ct, ctlen) == 0);
	ptlen = sizeof(pt);
	rv = crypt_single("AES-CBC-PAD decrypt", s, &m_cbc, k->aesv, 0, ct, ctlen, pt, &ptlen, 1);
	must("AES-CBC-PAD round trip",
	     rv == CKR_OK && ptlen == MSG_LEN && memcmp(pt, msg, MSG_LEN) == 0);
	ct2len = sizeof(ct2);
	rv = crypt_multi("AES-CBC-PAD multi encrypt", s, &m_cbc, k->aesv, 1, msg, MSG_LEN, chunks,
	                 COUNT(chunks), ct2, &ct2len, 1);
	must("AES-CBC-PAD multi-part == single-part",
	     rv == CKR_OK && ct2len == ctlen && memcmp(ct, ct2, ctlen) == 0);
	ptlen = sizeof(pt);
	rv = crypt_multi("AES-CBC-PAD multi decrypt", s, &m_cbc, k->aesv, 0, ct, ctlen, dchunks,
	                 COUNT(dchunks), pt, &ptlen, 0);
	must("AES-CBC-PAD multi-part round trip",
	     rv == CKR_OK && ptlen == MSG_LEN && memcmp(pt, msg, MSG_LEN) == 0);
	{
		unsigned char badct[64];
		CK_ULONG l = sizeof(pt);

		memcpy(badct, ct, 40);
		step("C_DecryptInit(CBC-PAD)", F->C_DecryptInit(s, &m_cbc, k->aesv), NULL);
		step("C_Decrypt(CBC-PAD, 40 bytes: not a block multiple)",
		     F->C_Decrypt(s, badct, 40, pt, &l), NULL);
		drain(s);
	}
	/* AES-CBC-PAD with the generated (sensitive) key: round trip only. */
	ctlen = sizeof(ct);
	rv = crypt_single("AES-CBC-PAD encrypt (generated key)", s, &m_cbc, k->aesg, 1, msg,
	                  MSG_LEN, ct, &ctlen, 0);
	ptlen = sizeof(pt);
	rv = rv == CKR_OK ? crypt_single("AES-CBC-PAD decrypt (generated key)", s, &m_cbc, k->aesg,
	                                 0, ct, ctlen, pt, &ptlen, 0)
	                  : rv;
	must("AES-CBC-PAD round trip (generated key)",
	     rv == CKR_OK && ptlen == MSG_LEN && memcmp(pt, msg, MSG_LEN) == 0);

	/* AES-GCM: deterministic under a fixed IV, checked against OpenSSL. */
	ctlen = sizeof(ct);
	rv = crypt_single("AES-GCM encrypt", s, &m_gcm, k->aesv, 1, msg, MSG_LEN, ct, &ctlen, 1);
	must("AES-GCM ciphertext+tag equals OpenSSL's",
	     rv == CKR_OK &&
	         ossl_cipher(EVP_aes_256_gcm(), aes_key, iv12, 12, aad, sizeof(aad), msg, MSG_LEN,
	                     ref, &reflen) &&
	         (CK_ULONG)reflen == ctlen && memcmp(ref, ct, ctlen) == 0);
	ptlen = sizeof(pt);
	rv = crypt_single("AES-GCM decrypt", s, &m_gcm, k->aesv, 0, ct, ctlen, pt, &ptlen, 1);
	must("AES-GCM round trip",
	     rv == CKR_OK && ptlen == MSG_LEN && memcmp(pt, msg, MSG_LEN) == 0);
	ct2len = sizeof(ct2);
	rv = crypt_multi("AES-GCM multi encrypt", s, &m_gcm, k->aesv, 1, msg, MSG_LEN, chunks,
	                 COUNT(chunks), ct2, &ct2len, 1);
	if (rv == CKR_OK)
		must("AES-GCM multi-part == single-part",
		     ct2len == ctlen && memcmp(ct, ct2, ctlen) == 0);
	ptlen = sizeof(pt);
	rv = crypt_multi("AES-GCM multi decrypt", s, &m_gcm, k->aesv, 0, ct, ctlen, dchunks,
	                 COUNT(dchunks), pt, &ptlen, 0);
	if (rv == CKR_OK)
		must("AES-GCM multi-part round trip",
		     ptlen == MSG_LEN && memcmp(pt, msg, MSG_LEN) == 0);
	{
		unsigned char badct[128];
		CK_ULONG l = sizeof(pt);

		if (ctlen < 16 || ctlen > sizeof(badct))
			ctlen = 16;
		memcpy(badct, ct, ctlen);
		badct[3] ^= 0x10;
		step("C_DecryptInit(GCM)", F->C_DecryptInit(s, &m_gcm, k->aesv), NULL);
		rv = F->C_Decrypt(s, badct, ctlen, pt, &l);
		step("C_Decrypt(GCM, tampered)", rv, NULL);
		drain(s);
		must("tampered GCM ciphertext is refused", rv != CKR_OK);
	}
	{
		CK_GCM_PARAMS bad = {iv12, sizeof(iv12), 96, aad, sizeof(aad), 129};
		CK_MECHANISM mb = {CKM_AES_GCM, &bad, sizeof(bad)};
		CK_MECHANISM mnull = {CKM_AES_GCM, NULL, 0};

		step("C_EncryptInit(GCM, 129-bit tag)", F->C_EncryptInit(s, &mb, k->aesv), NULL);
		drain(s);
		step("C_EncryptInit(GCM, no parameter)", F->C_EncryptInit(s, &mnull, k->aesv),
		     NULL);
		drain(s);
	}

	/* RSA-OAEP. */
	{
		CK_RSA_PKCS_OAEP_PARAMS p1 = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL,
		                              0};
		CK_RSA_PKCS_OAEP_PARAMS p256 = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED,
		                                NULL, 0};
		CK_RSA_PKCS_OAEP_PARAMS *ps[] = {&p1, &p256};
		const char *names[] = {"RSA-OAEP(SHA-1)", "RSA-OAEP(SHA-256)"};

		for (size_t i = 0; i < 2; i++) {
			CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, ps[i], sizeof(*ps[i])};
			char nm[64];

			snprintf(nm, sizeof(nm), "%s encrypt", names[i]);
			ctlen = sizeof(ct);
			rv = crypt_single(nm, s, &m, k->rsa_pub, 1, msg, MSG_LEN, ct, &ctlen, 0);
			if (rv != CKR_OK)
				continue;
			snprintf(nm, sizeof(nm), "%s decrypt", names[i]);
			ptlen = sizeof(pt);
			rv = crypt_single(nm, s, &m, k->rsa_priv, 0, ct, ctlen, pt, &ptlen, 0);
			snprintf(nm, sizeof(nm), "%s round trip", names[i]);
			must(nm, rv == CKR_OK && ptlen == MSG_LEN && memcmp(pt, msg, MSG_LEN) == 0);
		}
	}

	/* Key / mechanism mismatches. */
	drain(s);
	step("C_EncryptInit(CBC-PAD with HMAC key)", F->C_EncryptInit(s, &m_cbc, k->hmac), NULL);
	drain(s);
	step("C_EncryptInit(CBC-PAD with RSA public key)", F->C_EncryptInit(s, &m_cbc, k->rsa_pub),
	     NULL);
	drain(s);
	step("C_DecryptInit(CBC-PAD with encrypt-only AES-128)",
	     F->C_DecryptInit(s, &m_cbc, k->aes128), NULL);
	drain(s);
	{
		CK_MECHANISM bogus = {BOGUS_MECH, NULL, 0};

		step("C_EncryptInit(bogus mechanism)", F->C_EncryptInit(s, &bogus, k->aesv), NULL);
		drain(s);
	}
	{
		CK_MECHANISM m_ecb = {CKM_AES_ECB, NULL, 0};
		unsigned char odd[17] = {0};
		CK_ULONG l = sizeof(ct);

		step("C_EncryptInit(ECB)", F->C_EncryptInit(s, &m_ecb, k->aesv), NULL);
		step("C_Encrypt(ECB, 17 bytes)", F->C_Encrypt(s, odd, sizeof(odd), ct, &l), NULL);
		step("C_Encrypt(after failure)", F->C_Encrypt(s, odd, 16, ct, &l), NULL);
		drain(s);
	}
}

static void digest_one(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mech, const char *name,
                       const EVP_MD *md)
{
	CK_MECHANISM m = {mech, NULL, 0};
	unsigned char out[64], ref[EVP_MAX_MD_SIZE];
	unsigned int reflen = 0;
	CK_ULONG len = sizeof(out);
	char nm[64];
	CK_RV rv;

	snprintf(nm, sizeof(nm), "C_Digest(%s)", name);
	rv = F->C_DigestInit(s, &m);
	if (rv == CKR_OK)
		rv = F->C_Digest(s, msg, MSG_LEN, out, &len);
	if (rv != CKR_OK) {
		step(nm, rv, NULL);
		return;
	}
	print_hex_line(nm, out, len);
	EVP_Digest(msg, MSG_LEN, ref, &reflen, md, NULL);
	snprintf(nm, sizeof(nm), "%s equals OpenSSL's", name);
	must(nm, len == reflen && memcmp(out, ref, len) == 0);
}

static void section_digest(CK_SESSION_HANDLE s, struct keys *k)
{
	CK_MECHANISM m = {CKM_SHA256, NULL, 0};
	unsigned char out[64], out2[64], ref[64], buf[128];
	CK_ULONG len, len2;
	unsigned int reflen = 0;
	CK_RV rv;

	drain(s);

	step("C_DigestInit(SHA256)", F->C_DigestInit(s, &m), NULL);
	step("C_DigestInit(again: active)", F->C_DigestInit(s, &m), NULL);
	len = 0;
	rv = F->C_Digest(s, msg, MSG_LEN, NULL, &len);
	step("C_Digest size query", rv, "len=%lu", (unsigned long)len);
	len = 4;
	rv = F->C_Digest(s, msg, MSG_LEN, out, &len);
	step("C_Digest short buffer", rv, "len=%lu", (unsigned long)len);
	len = sizeof(out);
	rv = F->C_Digest(s, msg, MSG_LEN, out, &len);
	step("C_Digest", rv, "len=%lu", (unsigned long)len);
	EVP_Digest(msg, MSG_LEN, ref, &reflen, EVP_sha256(), NULL);
	must("SHA-256 equals OpenSSL's", rv == CKR_OK && len == 32 && memcmp(out, ref, 32) == 0);
	step("C_DigestInit(multi)", F->C_DigestInit(s, &m), NULL);
	step("C_DigestUpdate 1", F->C_DigestUpdate(s, msg, 10), NULL);
	step("C_DigestUpdate 2", F->C_DigestUpdate(s, msg + 10, MSG_LEN - 10), NULL);
	len2 = 0;
	rv = F->C_DigestFinal(s, NULL, &len2);
	step("C_DigestFinal size query", rv, "len=%lu", (unsigned long)len2);
	len2 = sizeof(out2);
	rv = F->C_DigestFinal(s, out2, &len2);
	step("C_DigestFinal", rv, "len=%lu", (unsigned long)len2);
	must("multi-part digest == single-part",
	     rv == CKR_OK && len2 == 32 && memcmp(out, out2, 32) == 0);
	/* C_DigestKey: SHA-256(msg || key value) for the by-value key. */
	step("C_DigestInit(key)", F->C_DigestInit(s, &m), NULL);
	step("C_DigestUpdate", F->C_DigestUpdate(s, msg, MSG_LEN), NULL);
	rv = F->C_DigestKey(s, k->aesv);
	step("C_DigestKey(by-value AES key)", rv, NULL);
	len2 = sizeof(out2);
	rv = F->C_DigestFinal(s, out2, &len2);
	step("C_DigestFinal(after DigestKey)", rv, "len=%lu", (unsigned long)len2);
	memcpy(buf, msg, MSG_LEN);
	memcpy(buf + MSG_LEN, aes_key, 32);
	EVP_Digest(buf, MSG_LEN + 32, ref, &reflen, EVP_sha256(), NULL);
	if (rv == CKR_OK)
		must("C_DigestKey digest equals OpenSSL's SHA-256(msg||key)",
		     len2 == 32 && memcmp(out2, ref, 32) == 0);
	step("C_DigestInit(sensitive key)", F->C_DigestInit(s, &m), NULL);
	step("C_DigestKey(sensitive generated key)", F->C_DigestKey(s, k->aesg), NULL);
	len2 = sizeof(out2);
	step("C_DigestFinal(after sensitive DigestKey)", F->C_DigestFinal(s, out2, &len2), NULL);
	step("C_DigestInit", F->C_DigestInit(s, &m), NULL);
	step("C_DigestKey(invalid handle)", F->C_DigestKey(s, 0x7fff1234), NULL);
	len2 = sizeof(out2);
	step("C_DigestFinal(after invalid DigestKey)", F->C_DigestFinal(s, out2, &len2), NULL);

	digest_one(s, CKM_MD5, "MD5", EVP_md5());
	digest_one(s, CKM_SHA_1, "SHA-1", EVP_sha1());
	digest_one(s, CKM_SHA224, "SHA-224", EVP_sha224());
	digest_one(s, CKM_SHA384, "SHA-384", EVP_sha384());
	digest_one(s, CKM_SHA512, "SHA-512", EVP_sha512());
}

static void section_wrap(CK_SESSION_HANDLE s, struct keys *k)
{
	CK_ATTRIBUTE unwrap_t[] = {
	    UATTR(CKA_CLASS, cls_secret), UATTR(CKA_KEY_TYPE, kt_aes), BATTR(CKA_TOKEN, no),
	    SATTR(CKA_LABEL, L_UNWRAP),   BATTR(CKA_ENCRYPT, yes),     BATTR(CKA_DECRYPT, yes),
	};
	unsigned char wrapped[512], e1[16], e2[16];
	CK_ULONG wlen;
	CK_RV rv, r1, r2;
	struct {
		const char *name;
		CK_MECHANISM_TYPE mech;
	} aes_wraps[] = {{"AES_KEY_WRAP_PAD", CKM_AES_KEY_WRAP_PAD},
	                 {"AES_KEY_WRAP", CKM_AES_KEY_WRAP}};

	drain(s);

	for (size_t i = 0; i < COUNT(aes_wraps); i++) {
		CK_MECHANISM m = {aes_wraps[i].mech, NULL, 0};
		CK_OBJECT_HANDLE h = 0;
		char nm[96];

		snprintf(nm, sizeof(nm), "C_WrapKey(%s) size query", aes_wraps[i].name);
		wlen = 0;
		rv = F->C_WrapKey(s, &m, k->aesv, k->aes128, NULL, &wlen);
		step(nm, rv, "len=%lu", (unsigned long)wlen);
		if (rv != CKR_OK)
			continue;
		snprintf(nm, sizeof(nm), "C_WrapKey(%s) short buffer", aes_wraps[i].name);
		wlen = 3;
		rv = F->C_WrapKey(s, &m, k->aesv, k->aes128, wrapped, &wlen);
		step(nm, rv, "len=%lu", (unsigned long)wlen);
		snprintf(nm, sizeof(nm), "C_WrapKey(%s)", aes_wraps[i].name);
		wlen = sizeof(wrapped);
		rv = F->C_WrapKey(s, &m, k->aesv, k->aes128, wrapped, &wlen);
		step(nm, rv, "len=%lu", (unsigned long)wlen);
		if (rv != CKR_OK)
			continue;
		print_hex_line(nm, wrapped, wlen);
		snprintf(nm, sizeof(nm), "C_UnwrapKey(%s)", aes_wraps[i].name);
		rv = F->C_UnwrapKey(s, &m, k->aesv, wrapped, wlen, unwrap_t, COUNT(unwrap_t), &h);
		step(nm, rv, NULL);
		if (rv != CKR_OK)
			continue;
		SHOW("unwrapped", s, h, CKA_VALUE_LEN, SHOW_ULONG);
		SHOW("unwrapped", s, h, CKA_LOCAL, SHOW_BOOL);
		r1 = encrypt_ecb(s, k->aes128, e1);
		r2 = encrypt_ecb(s, h, e2);
		snprintf(nm, sizeof(nm), "%s: unwrapped key encrypts like the original",
		         aes_wraps[i].name);
		must(nm, r1 == CKR_OK && r2 == CKR_OK && memcmp(e1, e2, 16) == 0);
		wrapped[wlen - 1] ^= 1;
		snprintf(nm, sizeof(nm), "C_UnwrapKey(%s, tampered)", aes_wraps[i].name);
		{
			CK_OBJECT_HANDLE h2 = 0;

			rv = F->C_UnwrapKey(s, &m, k->aesv, wrapped, wlen, unwrap_t,
			                    COUNT(unwrap_t), &h2);
			step(nm, rv, NULL);
			if (rv == CKR_OK)
				F->C_DestroyObject(s, h2);
		}
		step("C_DestroyObject(unwrapped)", F->C_DestroyObject(s, h), NULL);
	}
	{
		CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};

		wlen = sizeof(wrapped);
		step("C_WrapKey(non-extractable key)",
		     F->C_WrapKey(s, &m, k->aesv, k->aesg, wrapped, &wlen), NULL);
		wlen = sizeof(wrapped);
		step("C_WrapKey(with key lacking CKA_WRAP)",
		     F->C_WrapKey(s, &m, k->aes128, k->aesv, wrapped, &wlen), NULL);
		wlen = sizeof(wrapped);
		step("C_WrapKey(invalid wrapping key)",
		     F->C_WrapKey(s, &m, 0x7fff1234, k->aes128, wrapped, &wlen), NULL);
		wlen = sizeof(wrapped);
		step("C_WrapKey(invalid key)",
		     F->C_WrapKey(s, &m, k->aesv, 0x7fff1234, wrapped, &wlen), NULL);
	}

	/* RSA-OAEP wrap of an AES key. */
	{
		CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};
		CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
		CK_OBJECT_HANDLE h = 0;

		wlen = 0;
		rv = F->C_WrapKey(s, &m, k->rsa_pub, k->aes128, NULL, &wlen);
		step("C_WrapKey(RSA-OAEP) size query", rv, "len=%lu", (unsigned long)wlen);
		wlen = sizeof(wrapped);
		rv = F->C_WrapKey(s, &m, k->rsa_pub, k->aes128, wrapped, &wlen);
		step("C_WrapKey(RSA-OAEP)", rv, "len=%lu", (unsigned long)wlen);
		if (rv == CKR_OK) {
			rv = F->C_UnwrapKey(s, &m, k->rsa_priv, wrapped, wlen, unwrap_t,
			                    COUNT(unwrap_t), &h);
			step("C_UnwrapKey(RSA-OAEP)", rv, NULL);
			SHOW("rsa-unwrapped", s, h, CKA_VALUE_LEN, SHOW_ULONG);
			r1 = encrypt_ecb(s, k->aes128, e1);
			r2 = encrypt_ecb(s, h, e2);
			must("RSA-OAEP: unwrapped key encrypts like the original",
			     rv == CKR_OK && r1 == CKR_OK && r2 == CKR_OK &&
			         memcmp(e1, e2, 16) == 0);
			if (rv == CKR_OK)
				step("C_DestroyObject(rsa-unwrapped)", F->C_DestroyObject(s, h),
				     NULL);
		}
	}
}

static void section_derive(CK_SESSION_HANDLE s, struct keys *k)
{
	CK_ULONG len32 = 32;
	CK_ATTRIBUTE t[] = {
	    UATTR(CKA_CLASS, cls_secret), UATTR(CKA_KEY_TYPE, kt_aes), BATTR(CKA_TOKEN, no),
	    SATTR(CKA_LABEL, L_DERIVED),  UATTR(CKA_VALUE_LEN, len32), BATTR(CKA_ENCRYPT, yes),
	    BATTR(CKA_SENSITIVE, yes),
	};
	unsigned char pa[256], pb[256], e1[16], e2[16];
	CK_ULONG la = get_attr(s, k->eca_pub, CKA_EC_POINT, pa, sizeof(pa));
	CK_ULONG lb = get_attr(s, k->ecb_pub, CKA_EC_POINT, pb, sizeof(pb));
	CK_OBJECT_HANDLE da = 0, db = 0;
	CK_RV rv, r1, r2;
	/* CKA_EC_POINT is a DER OCTET STRING (04 41 04 x y); pass the raw point. */
	unsigned char *ra = la == 67 && pa[0] == 0x04 && pa[1] == 65 ? pa + 2 : pa;
	unsigned char *rb = lb == 67 && pb[0] == 0x04 && pb[1] == 65 ? pb + 2 : pb;
	CK_ECDH1_DERIVE_PARAMS pab = {CKD_NULL, 0, NULL, rb == pb ? lb : 65, rb};
	CK_ECDH1_DERIVE_PARAMS pba = {CKD_NULL, 0, NULL, ra == pa ? la : 65, ra};
	CK_MECHANISM mab = {CKM_ECDH1_DERIVE, &pab, sizeof(pab)};
	CK_MECHANISM mba = {CKM_ECDH1_DERIVE, &pba, sizeof(pba)};

	drain(s);

	rv = F->C_DeriveKey(s, &mab, k->eca_priv, t, COUNT(t), &da);
	step("C_DeriveKey(ECDH1, A priv + B pub)", rv, NULL);
	rv = F->C_DeriveKey(s, &mba, k->ecb_priv, t, COUNT(t), &db);
	step("C_DeriveKey(ECDH1, B priv + A pub)", rv, NULL);
	SHOW("derived", s, da, CKA_VALUE_LEN, SHOW_ULONG);
	SHOW("derived", s, da, CKA_VALUE, SHOW_HEX);
	SHOW("derived", s, da, CKA_LOCAL, SHOW_BOOL);
	r1 = encrypt_ecb(s, da, e1);
	r2 = encrypt_ecb(s, db, e2);
	step("encrypt with derived A", r1, NULL);
	step("encrypt with derived B", r2, NULL);
	must("ECDH: both sides derive the same AES key",
	     r1 == CKR_OK && r2 == CKR_OK && memcmp(e1, e2, 16) == 0);
	{
		CK_OBJECT_HANDLE h = 0;

		rv = F->C_DeriveKey(s, &mab, k->rsa_priv, t, COUNT(t), &h);
		step("C_DeriveKey(ECDH1 with RSA key)", rv, NULL);
		if (rv == CKR_OK)
			F->C_DestroyObject(s, h);
		pab.ulPublicDataLen = 10;
		rv = F->C_DeriveKey(s, &mab, k->eca_priv, t, COUNT(t), &h);
		step("C_DeriveKey(ECDH1, 10-byte point)", rv, NULL);
		if (rv == CKR_OK)
			F->C_DestroyObject(s, h);
	}
	step("C_DestroyObject(derived A)", F->C_DestroyObject(s, da), NULL);
	step("C_DestroyObject(derived B)", F->C_DestroyObject(s, db), NULL);
}

static void section_random(CK_SESSION_HANDLE s)
{
	unsigned char r1[64], r2[64], seed[16] = {1, 2, 3};
	CK_RV rv1, rv2;

	drain(s);

	memset(r1, 0, sizeof(r1));
	memset(r2, 0, sizeof(r2));
	rv1 = F->C_GenerateRandom(s, r1, sizeof(r1));
	step("C_GenerateRandom(64)", rv1, NULL);
	rv2 = F->C_GenerateRandom(s, r2, sizeof(r2));
	step("C_GenerateRandom(64) again", rv2, NULL);
	if (rv1 == CKR_OK && rv2 == CKR_OK)
		must("two random outputs differ", memcmp(r1, r2, sizeof(r1)) != 0);
	step("C_GenerateRandom(1)", F->C_GenerateRandom(s, r1, 1), NULL);
	step("C_SeedRandom", F->C_SeedRandom(s, seed, sizeof(seed)), NULL);
}

static void section_state(CK_SESSION_HANDLE s, CK_SLOT_ID slot, struct keys *k)
{
	CK_MECHANISM m = {CKM_SHA256, NULL, 0}, m_cbc = {CKM_AES_CBC_PAD, iv16, sizeof(iv16)};
	CK_MECHANISM m_rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
	unsigned char state[4096], out[512], in[32] = {0};
	CK_ULONG len = 0, olen;
	CK_SLOT_ID ev = 0;

	drain(s);

	step("C_GetOperationState(no operation)", F->C_GetOperationState(s, NULL, &len), NULL);
	step("C_DigestInit", F->C_DigestInit(s, &m), NULL);
	step("C_DigestUpdate", F->C_DigestUpdate(s, msg, MSG_LEN), NULL);
	len = 0;
	step("C_GetOperationState(digest) size query", F->C_GetOperationState(s, NULL, &len), NULL);
	len = sizeof(state);
	step("C_GetOperationState(digest)", F->C_GetOperationState(s, state, &len), NULL);
	memset(state, 0, 16);
	step("C_SetOperationState(garbage)", F->C_SetOperationState(s, state, 16, 0, 0), NULL);
	olen = sizeof(out);
	step("C_DigestFinal (clean up)", F->C_DigestFinal(s, out, &olen), NULL);
	step("C_GetFunctionStatus", F->C_GetFunctionStatus(s), NULL);
	step("C_CancelFunction", F->C_CancelFunction(s), NULL);
	step("C_WaitForSlotEvent(DONT_BLOCK)", F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &ev, NULL),
	     NULL);

	/* Not initialized. */
	olen = sizeof(out);
	step("C_Sign(no init)", F->C_Sign(s, in, 32, out, &olen), NULL);
	step("C_SignUpdate(no init)", F->C_SignUpdate(s, in, 32), NULL);
	olen = sizeof(out);
	step("C_SignFinal(no init)", F->C_SignFinal(s, out, &olen), NULL);
	step("C_Verify(no init)", F->C_Verify(s, in, 32, out, 32), NULL);
	step("C_VerifyFinal(no init)", F->C_VerifyFinal(s, out, 32), NULL);
	olen = sizeof(out);
	step("C_Encrypt(no init)", F->C_Encrypt(s, in, 32, out, &olen), NULL);
	olen = sizeof(out);
	step("C_EncryptUpdate(no init)", F->C_EncryptUpdate(s, in, 32, out, &olen), NULL);
	olen = sizeof(out);
	step("C_EncryptFinal(no init)", F->C_EncryptFinal(s, out, &olen), NULL);
	olen = sizeof(out);
	step("C_Decrypt(no init)", F->C_Decrypt(s, in, 32, out, &olen), NULL);
	olen = sizeof(out);
	step("C_DecryptFinal(no init)", F->C_DecryptFinal(s, out, &olen), NULL);
	olen = sizeof(out);
	step("C_Digest(no init)", F->C_Digest(s, in, 32, out, &olen), NULL);
	step("C_DigestUpdate(no init)", F->C_DigestUpdate(s, in, 32), NULL);
	step("C_DigestKey(no init)", F->C_DigestKey(s, k->aesv), NULL);
	olen = sizeof(out);
	step("C_DigestFinal(no init)", F->C_DigestFinal(s, out, &olen), NULL);
	olen = 0;
	step("C_FindObjects(no init)", F->C_FindObjects(s, &ev, 1, &olen), NULL);
	step("C_FindObjectsFinal(no init)", F->C_FindObjectsFinal(s), NULL);

	/* Active. */
	step("C_EncryptInit", F->C_EncryptInit(s, &m_cbc, k->aesv), NULL);
	step("C_EncryptInit(active)", F->C_EncryptInit(s, &m_cbc, k->aesv), NULL);
	step("C_DecryptInit(while encrypting)", F->C_DecryptInit(s, &m_cbc, k->aesv), NULL);
	step("C_SignInit(while encrypting)", F->C_SignInit(s, &m_rsa, k->rsa_priv), NULL);
	step("C_DigestInit(while encrypting)", F->C_DigestInit(s, &m), NULL);
	olen = sizeof(out);
	step("C_Encrypt(finish)", F->C_Encrypt(s, in, 32, out, &olen), NULL);
	step("C_VerifyInit", F->C_VerifyInit(s, &m_rsa, k->rsa_pub), NULL);
	step("C_VerifyInit(active)", F->C_VerifyInit(s, &m_rsa, k->rsa_pub), NULL);
	step("C_VerifyUpdate", F->C_VerifyUpdate(s, in, 32), NULL);
	step("C_Verify(during multi-part)", F->C_Verify(s, in, 32, out, 256), NULL);
	memset(out, 0, 256);
	step("C_VerifyFinal(finish, zero signature)", F->C_VerifyFinal(s, out, 256), NULL);

	/* Dual-function and recover operations. */
	olen = sizeof(out);
	step("C_DigestEncryptUpdate", F->C_DigestEncryptUpdate(s, in, 32, out, &olen), NULL);
	olen = sizeof(out);
	step("C_DecryptDigestUpdate", F->C_DecryptDigestUpdate(s, in, 32, out, &olen), NULL);
	olen = sizeof(out);
	step("C_SignEncryptUpdate", F->C_SignEncryptUpdate(s, in, 32, out, &olen), NULL);
	olen = sizeof(out);
	step("C_DecryptVerifyUpdate", F->C_DecryptVerifyUpdate(s, in, 32, out, &olen), NULL);
	{
		CK_MECHANISM m_raw = {CKM_RSA_PKCS, NULL, 0};

		step("C_SignRecoverInit(RSA_PKCS)", F->C_SignRecoverInit(s, &m_raw, k->rsa_priv),
		     NULL);
		step("C_VerifyRecoverInit(RSA_PKCS)", F->C_VerifyRecoverInit(s, &m_raw, k->rsa_pub),
		     NULL);
	}
	(void)slot;
}

static void section_cleanup(CK_SESSION_HANDLE s, CK_SLOT_ID slot, struct keys *k)
{
	CK_RV rv, worst = CKR_OK;
	CK_ULONG left = 0;

	(void)k;
	for (size_t i = 0; i < n_created; i++) {
		rv = F->C_DestroyObject(s, created[i]);
		if (rv != CKR_OK)
			worst = rv;
	}
	step("cleanup: destroy created objects", worst, NULL);
	n_created = 0;
	for (size_t i = 0; i < COUNT(all_labels); i++) {
		CK_ATTRIBUTE t[] = {ATTR(CKA_LABEL, all_labels[i], strlen(all_labels[i]))};
		CK_ULONG c = 0;

		if (find(s, t, 1, 16, NULL, &c, NULL) == CKR_OK)
			left += c;
	}
	printf("cleanup: battery objects still present: %lu\n", (unsigned long)left);
	step("cleanup: C_Logout", F->C_Logout(s), NULL);
	step("cleanup: C_CloseAllSessions", F->C_CloseAllSessions(slot), NULL);
}

int main(int argc, char **argv)
{
	struct testmod tm;
	struct keys k;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_SLOT_ID slot;

	if (argc != 4) {
		fprintf(stderr, "usage: battery MODULE TOKEN_LABEL PIN\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < 32; i++) {
		aes_key[i] = (unsigned char)i;
		hmac_key[i] = (unsigned char)(0xa0 + i);
	}
	for (size_t i = 0; i < 16; i++) {
		aes128_key[i] = (unsigned char)(0x40 + 3 * i);
		iv16[i] = (unsigned char)(0xf0 - i);
	}
	for (size_t i = 0; i < 12; i++)
		iv12[i] = (unsigned char)(0x11 * i);
	for (size_t i = 0; i < sizeof(aad); i++)
		aad[i] = (unsigned char)(0x80 + i);

	if (!testmod_load(&tm, argv[1]))
		return 1;
	F = tm.f;
	if (!testmod_find_token(&tm, argv[2], &slot))
		goto fail;

	/* Leftovers of an interrupted run (silent: not part of the transcript). */
	if (testmod_session(&tm, argv[2], argv[3], &s)) {
		destroy_leftovers(s);
		F->C_Logout(s);
	}
	F->C_CloseAllSessions(slot);

	memset(&k, 0, sizeof(k));
	section_info(slot);
	section_mechanisms(slot);
	section_sessions(slot);
	section_login(slot, argv[3], &s);
	section_objects(s, slot, argv[3], &k.aesv);
	section_keygen(s, &k);
	section_sign(s, &k);
	section_cipher(s, &k);
	section_digest(s, &k);
	section_wrap(s, &k);
	section_derive(s, &k);
	section_random(s);
	section_state(s, slot, &k);
	section_cleanup(s, slot, &k);

	/* Nothing of ours may remain on the token. */
	if (testmod_session(&tm, argv[2], argv[3], &s)) {
		CK_ULONG left = 0;

		for (size_t i = 0; i < COUNT(all_labels); i++) {
			CK_ATTRIBUTE t[] = {ATTR(CKA_LABEL, all_labels[i], strlen(all_labels[i]))};
			CK_ULONG c = 0;

			if (find(s, t, 1, 16, NULL, &c, NULL) == CKR_OK)
				left += c;
		}
		must("no battery object left on the token", left == 0);
		F->C_Logout(s);
		F->C_CloseAllSessions(slot);
	}
	testmod_unload(&tm);
	printf("end of battery\n");
	if (must_failed != 0)
		fprintf(stderr, "battery: %d must-hold checks failed\n", must_failed);
	return must_failed != 0;
fail:
	testmod_unload(&tm);
	return 1;
}
