#include "base/mem.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

/*
 * Small blocks by malloc and memset: glibc's calloc goes past its per-thread
 * cache (tcache) to the arena every time (about 500 instructions for the software
 * engine's per-operation object against 100), and only large blocks gain
 * from calloc's fresh, already zeroed pages.
 */
#define CALLOC_SMALL 1024

void *p11p_calloc(size_t count, size_t size)
{
	void *p;

	if (should_fail())
		return NULL;
	count = count ? count : 1;
	size = size ? size : 1;
	/* Refused here: calloc under a sanitizer aborts on an overflowing count. */
	if (count > SIZE_MAX / size)
		return NULL;
	if (count > CALLOC_SMALL / size)
		return calloc(count, size);
	p = malloc(count * size);
	/* An empty asm between them: otherwise GCC makes the pair a calloc again. */
	__asm__ volatile("" : : "r"(p) : "memory");
	if (p != NULL)
		memset(p, 0, count * size);
	return p;
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

static atomic_ulong lock_failures;

void *p11p_locked_alloc(size_t n, size_t *map_len, int *locked)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t ps = page > 0 ? (size_t)page : 4096, len;
	void *p;

	*map_len = 0;
	*locked = 0;
	if (should_fail() || n > SIZE_MAX - ps)
		return NULL;
	len = (n + ps - 1) / ps * ps;
	if (len == 0)
		len = ps;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	*map_len = len;
	*locked = mlock(p, len) == 0;
	if (!*locked)
		atomic_fetch_add(&lock_failures, 1);
#ifdef MADV_DONTDUMP
	madvise(p, len, MADV_DONTDUMP);
#endif
	return p;
}

void p11p_locked_free(void *p, size_t map_len, int locked)
{
	if (p == NULL)
		return;
	if (locked)
		munlock(p, map_len);
	munmap(p, map_len);
}

unsigned long p11p_locked_failures(void)
{
	return atomic_load(&lock_failures);
}
