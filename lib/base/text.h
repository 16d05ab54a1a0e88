/* Small text helpers: hex digits, and a growing buffer for formatted text. */
#ifndef P11P_TEXT_H
#define P11P_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* The value of a hexadecimal digit, or -1. */
int p11p_hexval(int c);
/* Exactly 2 * outlen hex digits into out[outlen]; false otherwise. */
bool p11p_hex_decode(const char *s, size_t len, unsigned char *out, size_t outlen);
/*
 * Strict base64 (OpenSSL's codec): s[0..len) into out (at most max bytes,
 * *out_len set), accepting only the canonical encoding (encoding the result
 * again gives s back). The bytes pass through a wiped scratch buffer: they
 * may be secrets. p11p_b64_encode(): out holds 4 * ((len + 2) / 3) + 1 bytes.
 */
bool p11p_b64_decode(const char *s, size_t len, unsigned char *out, size_t max, size_t *out_len);
void p11p_b64_encode(const unsigned char *in, size_t len, char *out);

/*
 * Text built with printf formats, grown as needed (p11p_realloc). After an
 * allocation failure every later append does nothing and oom stays set; the
 * caller p11p_free()s p.
 */
struct p11p_strbuf {
	char *p;
	size_t len, cap;
	bool oom;
};
void p11p_strbuf_printf(struct p11p_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
