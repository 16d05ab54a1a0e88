/*
 * Memory: thin wrappers over malloc so that a test build can make the Nth
 * allocation fail (SQLite's countdown idea) and every CKR_HOST_MEMORY path
 * runs at least once.
 */
#ifndef P11P_MEM_H
#define P11P_MEM_H

#include <stddef.h>

void *p11p_malloc(size_t n);
void *p11p_calloc(size_t count, size_t size);
void *p11p_realloc(void *p, size_t n);
/* reallocarray-style: fails (NULL, p untouched) when count * size overflows. */
void *p11p_reallocarray(void *p, size_t count, size_t size);
char *p11p_strdup(const char *s);
char *p11p_strndup(const char *s, size_t n);
void p11p_free(void *p);
/*
 * Memory for secrets: whole pages of their own, locked in RAM with mlock(2)
 * where the RLIMIT_MEMLOCK allows it (best effort: *locked says whether it
 * worked) and left out of core dumps (MADV_DONTFORK is not used: a forked
 * child frees its copy like any other). Freed with p11p_locked_free(), which
 * does not wipe: the caller does. NULL on failure (the test countdown too).
 */
void *p11p_locked_alloc(size_t n, size_t *map_len, int *locked);
void p11p_locked_free(void *p, size_t map_len, int locked);
/* Secret allocations whose mlock failed so far (process-wide). */
unsigned long p11p_locked_failures(void);

/*
 * Test hook: after `n` more successful allocations, every allocation fails
 * until p11p_mem_fail_reset(). n < 0 disables the countdown (the default).
 */
void p11p_mem_fail_after(long n);
void p11p_mem_fail_reset(void);
/* Allocations refused by the countdown since the last reset. */
unsigned long p11p_mem_failures(void);

#endif
