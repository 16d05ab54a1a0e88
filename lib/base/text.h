/* Small text helpers: hex digits, and a growing buffer for formatted text. */
#ifndef P11P_TEXT_H
#define P11P_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* The value of a hexadecimal digit, or -1. */
int p11p_hexval(int c);

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
