#include "base/text.h"
#include "base/mem.h"
#include "base/secret.h"

#include <limits.h>
#include <string.h>

#include <openssl/evp.h>

#include <stdarg.h>
#include <stdio.h>

int p11p_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void p11p_strbuf_printf(struct p11p_strbuf *b, const char *fmt, ...)
{
	va_list ap;
	size_t cap;
	char *grown;
	int n;

	if (b->oom)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, b->p != NULL ? b->cap - b->len : 0, fmt,
	              ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if (b->p != NULL && (size_t)n < b->cap - b->len) {
		b->len += (size_t)n;
		return;
	}
	for (cap = b->cap ? b->cap * 2 : 4096; cap - b->len <= (size_t)n; cap *= 2)
		;
	grown = p11p_realloc(b->p, cap);
	if (grown == NULL) {
		b->oom = true;
		return;
	}
	b->p = grown;
	b->cap = cap;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		b->oom = true;
	else
		b->len += (size_t)n;
}

bool p11p_hex_decode(const char *s, size_t len, unsigned char *out, size_t outlen)
{
	if (len != 2 * outlen)
		return false;
	for (size_t i = 0; i < outlen; i++) {
		int hi = p11p_hexval((unsigned char)s[2 * i]),
		    lo = p11p_hexval((unsigned char)s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return true;
}

static bool b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

bool p11p_b64_decode(const char *s, size_t len, unsigned char *out, size_t max, size_t *out_len)
{
	unsigned char *buf = NULL;
	char *again = NULL;
	size_t pad = 0, n;
	bool ok = false;
	int got;

	if (len == 0 || len % 4 != 0 || len > INT_MAX / 2 || len / 4 * 3 > max + 2)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '=') {
			if (i < len - 2 || (i == len - 2 && s[len - 1] != '='))
				return false;
			pad++;
		} else if (!b64_char(s[i])) {
			return false;
		}
	}
	buf = p11p_malloc(len / 4 * 3 + 1);
	again = p11p_malloc(len + 1);
	if (buf == NULL || again == NULL)
		goto out;
	got = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
	if (got < 0 || (size_t)got < pad)
		goto out;
	n = (size_t)got - pad;
	if (n > max)
		goto out;
	EVP_EncodeBlock((unsigned char *)again, buf, (int)n);
	if (strlen(again) != len || memcmp(again, s, len) != 0)
		goto out;
	memcpy(out, buf, n);
	*out_len = n;
	ok = true;
out:
	if (buf != NULL)
		p11p_wipe(buf, len / 4 * 3 + 1);
	if (again != NULL)
		p11p_wipe(again, len + 1);
	p11p_free(buf);
	p11p_free(again);
	return ok;
}

void p11p_b64_encode(const unsigned char *in, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}
