#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

atomic_int p11p_debug_mask;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct {
	const char *name;
	int bit;
} categories[] = {
    {"config", P11P_DBG_CONFIG}, {"backend", P11P_DBG_BACKEND}, {"session", P11P_DBG_SESSION},
    {"object", P11P_DBG_OBJECT}, {"call", P11P_DBG_CALL},       {"lib", P11P_DBG_LIB},
    {"all", P11P_DBG_ALL},
};

void p11p_log_init(void)
{
	const char *env = getenv("P11PROXY_DEBUG");
	int mask = 0;

	while (env != NULL && *env != '\0') {
		size_t len = strcspn(env, ", ");

		for (size_t i = 0; i < sizeof(categories) / sizeof(categories[0]); i++) {
			if (strlen(categories[i].name) == len &&
			    strncmp(env, categories[i].name, len) == 0)
				mask |= categories[i].bit;
		}
		/* "1" or "yes" switch everything on, as users try that first. */
		if ((len == 1 && env[0] == '1') || (len == 3 && strncmp(env, "yes", 3) == 0))
			mask = P11P_DBG_ALL;
		env += len;
		env += strspn(env, ", ");
	}
	atomic_store(&p11p_debug_mask, mask);
}

int(p11p_debug_on)(enum p11p_debug_cat cat)
{
	return p11p_debug_on(cat);
}

static void vlog(const char *prefix, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void vlog(const char *prefix, const char *fmt, va_list ap)
{

	FILE *out = stderr;
	const char *path = getenv("P11PROXY_DEBUG_FILE");
	FILE *f = NULL;

	pthread_mutex_lock(&log_lock);
	if (path != NULL && *path != '\0') {
		f = fopen(path, "ae");
		if (f != NULL)
			out = f;
	}
	fprintf(out, "p11proxy: %s", prefix);
	vfprintf(out, fmt, ap);
	fputc('\n', out);
	if (f != NULL)
		fclose(f);
	else
		fflush(out);
	pthread_mutex_unlock(&log_lock);
}

void(p11p_debug)(enum p11p_debug_cat cat, const char *fmt, ...)
{
	va_list ap;

	if (!p11p_debug_on(cat))
		return;
	va_start(ap, fmt);
	vlog("debug: ", fmt, ap);
	va_end(ap);
}

void p11p_message(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("", fmt, ap);
	va_end(ap);
}
