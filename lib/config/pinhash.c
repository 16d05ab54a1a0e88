/*
 * user_pin_hash: "pbkdf2-sha256$ITERATIONS$SALT_B64$HASH_B64", PBKDF2-HMAC-SHA256
 * from OpenSSL's private library context (crypto/ossl.h). Parsing is strict
 * (canonical base64, bounded fields) because the string comes from the config
 * file, which is untrusted input.
 */
#include "config/config.h"
#include "base/text.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "base/mem.h"
#include "base/secret.h"
#include "base/ossl.h"

#define HASH_PREFIX  "pbkdf2-sha256"
#define SALT_LEN     16 /* what we generate */
#define SALT_MIN     16 /* SP 800-132: at least 128 bits */
#define SALT_MAX     64
#define DK_LEN       32
#define B64_LEN(n)   (4 * (((n) + 2) / 3))
#define HASH_STR_MAX (sizeof(HASH_PREFIX) + 9 + B64_LEN(SALT_MAX) + B64_LEN(DK_LEN) + 3)

struct parsed_hash {
	unsigned long iter;
	unsigned char salt[SALT_MAX];
	size_t salt_len;
	unsigned char dk[DK_LEN];
};

static bool derive(const void *pin, size_t pin_len, const unsigned char *salt, size_t salt_len,
                   unsigned long iter, unsigned char out[DK_LEN])
{
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *kctx = NULL;
	OSSL_PARAM params[5];
	char digest[] = "SHA256";
	unsigned int iter_u = (unsigned int)iter;
	bool ok = false;
	OSSL_LIB_CTX *libctx = p11p_ossl_ctx();

	if (libctx == NULL)
		goto out;
	kdf = EVP_KDF_fetch(libctx, "PBKDF2", NULL);
	if (kdf == NULL)
		goto out;
	kctx = EVP_KDF_CTX_new(kdf);
	if (kctx == NULL)
		goto out;
	/* OSSL_PARAM wants non-const pointers but only reads the password and salt. */
	params[0] = OSSL_PARAM_construct_octet_string(
	    OSSL_KDF_PARAM_PASSWORD, (void *)(uintptr_t)(pin_len ? pin : ""), pin_len);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)salt,
	                                              salt_len);
	params[2] = OSSL_PARAM_construct_uint(OSSL_KDF_PARAM_ITER, &iter_u);
	params[3] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
	params[4] = OSSL_PARAM_construct_end();
	ok = EVP_KDF_derive(kctx, out, DK_LEN, params) == 1;
out:
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	if (!ok)
		p11p_wipe(out, DK_LEN);
	return ok;
}

static bool parse_hash(const char *hash, struct parsed_hash *ph)
{
	const char *p, *d1, *d2;
	size_t len, dk_len = 0;
	unsigned long iter = 0;

	if (hash == NULL)
		return false;
	len = strnlen(hash, HASH_STR_MAX + 1);
	if (len > HASH_STR_MAX)
		return false;
	if (strncmp(hash, HASH_PREFIX "$", sizeof(HASH_PREFIX)) != 0)
		return false;
	p = hash + sizeof(HASH_PREFIX);
	/* iterations: decimal, no sign, no leading zero, in range */
	if (*p < '1' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		iter = iter * 10 + (unsigned long)(*p - '0');
		if (iter > P11P_PIN_HASH_ITER_MAX)
			return false;
	}
	if (*p != '$' || iter < P11P_PIN_HASH_ITER_MIN)
		return false;
	d1 = p + 1;
	d2 = strchr(d1, '$');
	if (d2 == NULL || strchr(d2 + 1, '$') != NULL)
		return false;
	if (!p11p_b64_decode(d1, (size_t)(d2 - d1), ph->salt, SALT_MAX, &ph->salt_len) ||
	    ph->salt_len < SALT_MIN)
		return false;
	if (!p11p_b64_decode(d2 + 1, strlen(d2 + 1), ph->dk, DK_LEN, &dk_len) || dk_len != DK_LEN)
		return false;
	ph->iter = iter;
	return true;
}

bool p11p_pin_hash_valid(const char *hash)
{
	struct parsed_hash ph;
	bool ok = parse_hash(hash, &ph);

	p11p_wipe(&ph, sizeof(ph));
	return ok;
}

bool p11p_pin_hash_verify(const char *hash, const void *pin, size_t pin_len)
{
	struct parsed_hash ph;
	unsigned char dk[DK_LEN];
	bool ok = false;

	if (pin == NULL && pin_len > 0)
		return false;
	if (!parse_hash(hash, &ph))
		goto out;
	if (!derive(pin, pin_len, ph.salt, ph.salt_len, ph.iter, dk))
		goto out;
	ok = CRYPTO_memcmp(dk, ph.dk, DK_LEN) == 0;
out:
	p11p_wipe(dk, sizeof(dk));
	p11p_wipe(&ph, sizeof(ph));
	return ok;
}

char *p11p_pin_hash_make_iter(const void *pin, size_t pin_len, unsigned long iterations)
{
	unsigned char salt[SALT_LEN], dk[DK_LEN];
	char salt_b64[B64_LEN(SALT_LEN) + 1], dk_b64[B64_LEN(DK_LEN) + 1];
	char *out = NULL;
	size_t n;
	OSSL_LIB_CTX *libctx = p11p_ossl_ctx();

	if ((pin == NULL && pin_len > 0) || iterations < P11P_PIN_HASH_ITER_MIN ||
	    iterations > P11P_PIN_HASH_ITER_MAX || libctx == NULL)
		return NULL;
	if (RAND_bytes_ex(libctx, salt, sizeof(salt), 0) != 1)
		goto out;
	if (!derive(pin, pin_len, salt, sizeof(salt), iterations, dk))
		goto out;
	EVP_EncodeBlock((unsigned char *)salt_b64, salt, sizeof(salt));
	EVP_EncodeBlock((unsigned char *)dk_b64, dk, sizeof(dk));
	n = sizeof(HASH_PREFIX) + 12 + sizeof(salt_b64) + sizeof(dk_b64);
	out = p11p_malloc(n);
	if (out == NULL)
		goto out;
	snprintf(out, n, HASH_PREFIX "$%lu$%s$%s", iterations, salt_b64, dk_b64);
out:
	p11p_wipe(dk, sizeof(dk));
	p11p_wipe(dk_b64, sizeof(dk_b64));
	return out;
}

char *p11p_pin_hash_make(const void *pin, size_t pin_len)
{
	return p11p_pin_hash_make_iter(pin, pin_len, P11P_PIN_HASH_ITER);
}
