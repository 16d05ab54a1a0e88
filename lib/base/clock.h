/* Time for deadlines: the monotonic clock, and absolute timeouts for condition waits. */
#ifndef P11P_CLOCK_H
#define P11P_CLOCK_H

#include <stdatomic.h>
#include <time.h>

/* Milliseconds on the monotonic clock. */
unsigned long long p11p_now_ms(void);
/* *ts = now on `clock` + ms (for pthread_cond_timedwait on a condition of that clock). */
void p11p_deadline(struct timespec *ts, clockid_t clock, unsigned long long ms);

/*
 * Milliseconds on CLOCK_MONOTONIC_COARSE: the same clock as p11p_now_ms()'s,
 * read to the kernel's last tick (a few ns, no system call), behind it by at
 * most p11p_coarse_tick_ms(). For idle and lifetime checks on hot paths; a
 * time from one clock is never compared with a time from the other.
 */
unsigned long long p11p_coarse_ms(void);
/* The coarse clock's resolution in milliseconds, rounded up (at least 1). */
unsigned long long p11p_coarse_tick_ms(void);

/*
 * Fork generation: a number that moves on in every child made by fork()
 * (a pthread_atfork child handler), so that "is this still the process that
 * made X" is one relaxed load instead of a getpid() system call (glibc does
 * not cache the pid). p11p_fork_watch() installs the handler (once per
 * process; idempotent) and returns the current generation: call it when
 * making the object whose owner is checked, then compare p11p_fork_gen()
 * with what it returned. A child made without fork() (a raw clone(2)
 * system call) is not seen; vfork() and posix_spawn() children only exec.
 */
extern __attribute__((visibility("hidden"))) atomic_ulong p11p_g_fork_gen;
unsigned long p11p_fork_watch(void);
static inline unsigned long p11p_fork_gen(void)
{
	return atomic_load_explicit(&p11p_g_fork_gen, memory_order_relaxed);
}

#endif
