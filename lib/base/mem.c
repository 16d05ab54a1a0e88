#include "base/mem.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* < 0: no countdown. Atomic so that threaded tests may use it too. */
static atomic_long fail_countdown = -1;
static atomic_ulong fail_count;

static int should_fail(void)
{
	long n = atomic_load(&fail_countdown);

	if (n < 0)
		return 0;
	if (n == 0) {
		atomic_fetch_add(&fail_count, 1);
		return 1;
	}
	atomic_fetch_sub(&fail_countdown, 1);
	return 0;
}

void p11p_mem_fail_after(long n)
{
	atomic_store(&fail_count, 0);
	atomic_store(&fail_countdown, n);
}

void p11p_mem_fail_reset(void)
{
	atomic_store(&fail_countdown, -1);
}

unsigned long p11p_mem_failures(void)
{
	return atomic_load(&fail_count);
}

void *p11p_malloc(size_t n)
{
	if (should_fail())
		return NULL;
	return malloc(n ? n : 1);
}

void *p11p_calloc(size_t count, size_t size)
{
	if (should_fail())
		return NULL;
	return calloc(count ? count : 1, size ? size : 1);
}

void *p11p_realloc(void *p, size_t n)
{
	if (should_fail())
		return NULL;
	return realloc(p, n ? n : 1);
}

void *p11p_reallocarray(void *p, size_t count, size_t size)
{
	if (size && count > SIZE_MAX / size)
		return NULL;
	return p11p_realloc(p, count * size);
}

char *p11p_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *d = p11p_malloc(len + 1);

	if (d == NULL)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

char *p11p_strdup(const char *s)
{
	return p11p_strndup(s, SIZE_MAX);
}

void p11p_free(void *p)
{
	free(p);
}
