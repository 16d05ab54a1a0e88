#include "base/clock.h"

#include <pthread.h>

atomic_ulong p11p_g_fork_gen;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static pthread_once_t tick_once = PTHREAD_ONCE_INIT;
static unsigned long long tick_ms = 1;

static void fork_child(void)
{
	atomic_fetch_add_explicit(&p11p_g_fork_gen, 1, memory_order_relaxed);
}

static void fork_register(void)
{
	/* Unregistered by the C library when this module is unloaded (dlclose). */
	pthread_atfork(NULL, NULL, fork_child);
}

unsigned long p11p_fork_watch(void)
{
	pthread_once(&fork_once, fork_register);
	return p11p_fork_gen();
}

unsigned long long p11p_coarse_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (unsigned long long)ts.tv_sec * 1000ULL +
	       (unsigned long long)ts.tv_nsec / 1000000ULL;
}

static void tick_init(void)
{
	struct timespec res;

	if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0) {
		unsigned long long ms = (unsigned long long)res.tv_sec * 1000ULL +
		                        ((unsigned long long)res.tv_nsec + 999999ULL) / 1000000ULL;

		tick_ms = ms > 0 ? ms : 1;
	}
}

unsigned long long p11p_coarse_tick_ms(void)
{
	pthread_once(&tick_once, tick_init);
	return tick_ms;
}

unsigned long long p11p_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000ULL +
	       (unsigned long long)ts.tv_nsec / 1000000ULL;
}

void p11p_deadline(struct timespec *ts, clockid_t clock, unsigned long long ms)
{
	clock_gettime(clock, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}
