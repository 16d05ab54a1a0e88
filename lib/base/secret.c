#include "base/secret.h"
#include "base/mem.h"

#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>

/* Each secret lives in pages of its own, locked in RAM where allowed (base/mem.h). */
struct p11p_secret {
	size_t len;
	size_t map_len;
	int locked;
	unsigned char data[];
};

void p11p_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		OPENSSL_cleanse(p, n);
}

struct p11p_secret *p11p_secret_new(const void *data, size_t len)
{
	struct p11p_secret *s;
	size_t map_len;
	int locked;

	if (data == NULL && len > 0)
		return NULL;
	if (len > SIZE_MAX - sizeof(*s) - 1)
		return NULL;
	s = p11p_locked_alloc(sizeof(*s) + len + 1, &map_len, &locked);
	if (s == NULL)
		return NULL;
	s->len = len;
	s->map_len = map_len;
	s->locked = locked;
	if (len > 0)
		memcpy(s->data, data, len);
	s->data[len] = '\0'; /* convenient for PINs handed to C APIs */
	return s;
}

struct p11p_secret *p11p_secret_dup(const struct p11p_secret *s)
{
	if (s == NULL)
		return NULL;
	return p11p_secret_new(s->data, s->len);
}

const unsigned char *p11p_secret_data(const struct p11p_secret *s)
{
	return s ? s->data : NULL;
}

size_t p11p_secret_len(const struct p11p_secret *s)
{
	return s ? s->len : 0;
}

bool p11p_secret_equals(const struct p11p_secret *s, const void *data, size_t len)
{
	if (s == NULL || (data == NULL && len > 0) || s->len != len)
		return false;
	return len == 0 || CRYPTO_memcmp(s->data, data, len) == 0;
}

bool p11p_secret_locked(const struct p11p_secret *s)
{
	return s != NULL && s->locked;
}

void p11p_secret_free(struct p11p_secret *s)
{
	if (s == NULL)
		return;
	size_t map_len = s->map_len;
	int locked = s->locked;

	p11p_wipe(s, sizeof(*s) + s->len + 1);
	p11p_locked_free(s, map_len, locked);
}
