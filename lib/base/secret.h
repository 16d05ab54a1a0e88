/*
 * Secrets (PINs, fragments, derived keys, software keys): one type, kept in
 * pages of their own that are locked in RAM where RLIMIT_MEMLOCK allows and
 * left out of core dumps, always wiped on free.
 */
#ifndef P11P_SECRET_H
#define P11P_SECRET_H

#include <stdbool.h>
#include <stddef.h>

struct p11p_secret;

/* Copies len bytes of data (data may be NULL when len is 0). NULL on ENOMEM. */
struct p11p_secret *p11p_secret_new(const void *data, size_t len);
/* A copy of s, or NULL (s NULL or ENOMEM). */
struct p11p_secret *p11p_secret_dup(const struct p11p_secret *s);
const unsigned char *p11p_secret_data(const struct p11p_secret *s);
size_t p11p_secret_len(const struct p11p_secret *s);
/* Constant-time comparison with a buffer of the given length. */
bool p11p_secret_equals(const struct p11p_secret *s, const void *data, size_t len);
/* Was s's memory locked in RAM (mlock)? */
bool p11p_secret_locked(const struct p11p_secret *s);
/* Wipes and frees; NULL is fine. */
void p11p_secret_free(struct p11p_secret *s);

/* Wipe any buffer in a way the compiler cannot elide. */
void p11p_wipe(void *p, size_t n);

#endif
