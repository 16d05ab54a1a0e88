#include "base/text.h"
#include "base/mem.h"

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
