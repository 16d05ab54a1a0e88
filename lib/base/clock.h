/* Time for deadlines: the monotonic clock, and absolute timeouts for condition waits. */
#ifndef P11P_CLOCK_H
#define P11P_CLOCK_H

#include <time.h>

/* Milliseconds on the monotonic clock. */
unsigned long long p11p_now_ms(void);
/* *ts = now on `clock` + ms (for pthread_cond_timedwait on a condition of that clock). */
void p11p_deadline(struct timespec *ts, clockid_t clock, unsigned long long ms);

#endif
