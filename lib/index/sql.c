/* The driver interface (sql.h): dispatch by target, argument checks, the error message. */
#include "index/sql.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"

static void put_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

bool p11p_sql_is_pg(const char *target)
{
	return target != NULL && (strncmp(target, "postgresql://", 13) == 0 ||
	                          strncmp(target, "postgres://", 11) == 0);
}

enum p11p_sql_rc p11p_sql_open(const char *target, bool readonly, unsigned timeout_ms,
                               struct p11p_sql **out, char *err, size_t errlen)
{
	const struct p11p_sql_driver *drv;
	enum p11p_sql_rc rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL)
		return P11P_SQL_FAILED;
	*out = NULL;
	if (target == NULL || *target == '\0') {
		put_err(err, errlen, "store: no target (index: is empty)");
		return P11P_SQL_FAILED;
	}
	if (p11p_sql_is_pg(target))
		drv = &p11p_sql_pg_driver;
	else {
		drv = &p11p_sql_sqlite_driver;
	}
	rc = drv->open(target, readonly, timeout_ms, out, err, errlen);
	if (rc != P11P_SQL_OK) {
		*out = NULL;
		if (err != NULL && errlen > 0 && err[0] == '\0')
			put_err(err, errlen, "%s: cannot open the store",
			        drv->engine == P11P_SQL_PG ? "postgresql" : target);
		return rc;
	}
	(*out)->drv = drv;
	return P11P_SQL_OK;
}

void p11p_sql_close(struct p11p_sql *c)
{
	if (c != NULL)
		c->drv->close(c);
}

void p11p_sql_abandon(struct p11p_sql *c)
{
	if (c != NULL)
		c->drv->abandon(c);
}

enum p11p_sql_engine p11p_sql_engine_of(const struct p11p_sql *c)
{
	return c != NULL ? c->drv->engine : P11P_SQL_SQLITE;
}

enum p11p_sql_rc p11p_sql_exec(struct p11p_sql *c, const char *sql,
                               const struct p11p_sql_val *params, size_t nparams,
                               p11p_sql_row_fn row, void *arg)
{
	p11p_return_val_if_fail(c != NULL && sql != NULL && (params != NULL || nparams == 0),
	                        P11P_SQL_FAILED);
	for (size_t i = 0; i < nparams; i++) {
		const struct p11p_sql_val *v = &params[i];

		p11p_return_val_if_fail(v->type >= P11P_SQL_NULL && v->type <= P11P_SQL_BLOB,
		                        P11P_SQL_FAILED);
		p11p_return_val_if_fail(v->type < P11P_SQL_TEXT || v->p != NULL || v->len == 0,
		                        P11P_SQL_FAILED);
	}
	c->err[0] = '\0';
	return c->drv->exec(c, sql, params, nparams, row, arg);
}

enum p11p_sql_rc p11p_sql_read(struct p11p_sql *c, const char *sql,
                               const struct p11p_sql_val *params, size_t nparams,
                               const enum p11p_sql_type *types, size_t ncols, p11p_sql_row_fn row,
                               void *arg)
{
	p11p_return_val_if_fail(c != NULL && sql != NULL && (params != NULL || nparams == 0) &&
	                            types != NULL && ncols > 0 && ncols <= 32 && row != NULL,
	                        P11P_SQL_FAILED);
	for (size_t i = 0; i < nparams; i++)
		p11p_return_val_if_fail(params[i].type == P11P_SQL_INT, P11P_SQL_FAILED);
	for (size_t i = 0; i < ncols; i++)
		p11p_return_val_if_fail(types[i] == P11P_SQL_INT || types[i] == P11P_SQL_TEXT ||
		                            types[i] == P11P_SQL_BLOB,
		                        P11P_SQL_FAILED);
	c->err[0] = '\0';
	if (c->drv->read == NULL)
		return c->drv->exec(c, sql, params, nparams, row, arg);
	return c->drv->read(c, sql, params, nparams, types, ncols, row, arg);
}

enum p11p_sql_rc p11p_sql_begin(struct p11p_sql *c)
{
	p11p_return_val_if_fail(c != NULL, P11P_SQL_FAILED);
	c->err[0] = '\0';
	return c->drv->begin(c);
}

enum p11p_sql_rc p11p_sql_commit(struct p11p_sql *c)
{
	p11p_return_val_if_fail(c != NULL, P11P_SQL_FAILED);
	c->err[0] = '\0';
	return c->drv->commit(c);
}

void p11p_sql_rollback(struct p11p_sql *c)
{
	if (c != NULL)
		c->drv->rollback(c);
}

enum p11p_sql_rc p11p_sql_changed(struct p11p_sql *c, bool *changed)
{
	p11p_return_val_if_fail(c != NULL && changed != NULL, P11P_SQL_FAILED);
	*changed = false;
	return c->drv->changed(c, changed);
}

int p11p_sql_notify_fd(struct p11p_sql *c)
{
	return c != NULL ? c->drv->notify_fd(c) : -1;
}

const char *p11p_sql_error(const struct p11p_sql *c)
{
	return c != NULL ? c->err : "";
}
