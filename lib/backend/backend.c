#include "backend/backend.h"
#include "backend/call.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/names.h"
#include "base/p11fns.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

/* More slots than this from one backend is treated as a broken backend. */
#define MAX_BACKEND_SLOTS 1024

/*
 * Stand-ins for entries a backend leaves NULL: calling through the copied
 * table is then always safe and answers CKR_FUNCTION_NOT_SUPPORTED.
 */
#define STUB(kind, name, params, ...)                                                              \
	static CK_RV stub_##name params                                                            \
	{                                                                                          \
		return CKR_FUNCTION_NOT_SUPPORTED;                                                 \
	}
P11P_FUNCTIONS(STUB)
#undef STUB

/*
 * p11-kit's loader trusts C_GetFunctionList: a module that answers CKR_OK
 * with no list (or a list of another major version) crashes it. The
 * library is opened on its own and asked first; *hp (when not NULL) keeps
 * it loaded until p11-kit has opened it too.
 */
static bool function_list_sane(const struct p11p_backend_cfg *cfg, void **hp, char *err,
                               size_t errlen)
{
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	CK_FUNCTION_LIST_PTR list = NULL;
	void *h = dlopen(cfg->module, RTLD_NOW | RTLD_LOCAL);
	bool ok;
	CK_RV rv;

	*hp = h;
	if (h == NULL)
		return true; /* p11-kit says why it cannot load it */
	*(void **)&get = dlsym(h, "C_GetFunctionList");
	if (get == NULL) {
		snprintf(err, errlen, "backend '%s': %s has no C_GetFunctionList", cfg->name,
		         cfg->module);
		return false;
	}
	rv = get(&list);
	ok = rv == CKR_OK && list != NULL && list->version.major == 2;
	if (!ok)
		snprintf(err, errlen,
		         "backend '%s': C_GetFunctionList of %s answered %s with %s: not a "
		         "PKCS#11 2.x module",
		         cfg->name, cfg->module, p11p_rv_str(rv),
		         list == NULL ? "no function list" : "a list of another version");
	return ok;
}

static void fill_table(CK_FUNCTION_LIST *fl, const CK_FUNCTION_LIST *module)
{
	memset(fl, 0, sizeof(*fl));
	fl->version = module->version;
#define COPY(kind, name, ...) fl->name = module->name ? module->name : stub_##name;
	P11P_FUNCTIONS(COPY)
#undef COPY
}

CK_RV p11p_backend_open(struct p11p_backend *be, const struct p11p_backend_cfg *cfg, char *err,
                        size_t errlen)
{
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	void *h;
	bool sane;
	CK_RV rv;

	memset(be, 0, sizeof(*be));
	be->cfg = cfg;
	be->ctx.be = be;
	sane = function_list_sane(cfg, &h, err, errlen);
	if (sane)
		be->module = p11_kit_module_load(cfg->module, P11_KIT_MODULE_UNMANAGED);
	if (h != NULL)
		dlclose(h);
	if (!sane)
		return CKR_GENERAL_ERROR;
	if (be->module == NULL) {
		const char *why = p11_kit_message();

		snprintf(err, errlen, "backend '%s': cannot load %s: %s", cfg->name, cfg->module,
		         why ? why : "unknown error");
		return CKR_GENERAL_ERROR;
	}
	if (be->module->version.major != 2) {
		snprintf(err, errlen, "backend '%s': %s implements PKCS#11 %u.%u, not 2.x",
		         cfg->name, cfg->module, be->module->version.major,
		         be->module->version.minor);
		p11_kit_module_release(be->module);
		be->module = NULL;
		return CKR_GENERAL_ERROR;
	}
	fill_table(&be->fl, be->module);
	rv = p11p_be_C_Initialize(&be->ctx, &args);
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		/* The application uses this library directly too: share it, never finalize it. */
		p11p_debug(P11P_DBG_BACKEND, "backend '%s' was already initialized", cfg->name);
		return CKR_OK;
	}
	if (rv != CKR_OK) {
		const char *name = p11p_ckr_name(rv);

		snprintf(err, errlen, "backend '%s': C_Initialize of %s failed: %s (0x%lx)",
		         cfg->name, cfg->module, name ? name : "vendor error", (unsigned long)rv);
		p11_kit_module_release(be->module);
		be->module = NULL;
		return rv;
	}
	be->initialized = true;
	p11p_debug(P11P_DBG_BACKEND, "backend '%s' loaded from %s", cfg->name, cfg->module);
	return CKR_OK;
}

void p11p_backend_close(struct p11p_backend *be, bool finalize)
{
	if (be->module == NULL)
		return;
	if (finalize && be->initialized)
		p11p_be_C_Finalize(&be->ctx, NULL);
	p11_kit_module_release(be->module);
	be->module = NULL;
	be->initialized = false;
}

void p11p_pad(CK_UTF8CHAR *field, size_t len, const char *s)
{
	size_t n = s ? strnlen(s, len) : 0;

	memset(field, ' ', len);
	if (n > 0)
		memcpy(field, s, n);
}

void p11p_unpad(char *out, const CK_UTF8CHAR *field, size_t len)
{
	while (len > 0 && (field[len - 1] == ' ' || field[len - 1] == '\0'))
		len--;
	memcpy(out, field, len);
	out[len] = '\0';
}

/* The backend's slots (with tokens when `present`); bounded. */
static CK_RV slot_list(struct p11p_backend *be, CK_BBOOL present, CK_SLOT_ID **out, CK_ULONG *n)
{
	CK_SLOT_ID *ids = NULL;
	CK_ULONG count = 0, cap;
	CK_RV rv;

	*out = NULL;
	*n = 0;
	for (int tries = 0; tries < 4; tries++) {
		rv = p11p_be_C_GetSlotList(&be->ctx, present, NULL, &count);
		if (rv != CKR_OK)
			return rv;
		if (count == 0)
			return CKR_OK;
		if (count > MAX_BACKEND_SLOTS)
			return CKR_GENERAL_ERROR;
		cap = count;
		ids = p11p_calloc(cap, sizeof(*ids));
		if (ids == NULL)
			return CKR_HOST_MEMORY;
		rv = p11p_be_C_GetSlotList(&be->ctx, present, ids, &count);
		if (rv == CKR_OK && count <= cap) {
			*out = ids;
			*n = count;
			return CKR_OK;
		}
		p11p_free(ids);
		ids = NULL;
		if (rv != CKR_BUFFER_TOO_SMALL && rv != CKR_OK)
			return rv;
		/* The list grew between the two calls: ask again. */
	}
	return CKR_GENERAL_ERROR;
}

static bool token_matches(const struct p11p_member_cfg *cfg, const CK_TOKEN_INFO *ti,
                          const CK_SLOT_INFO *si, P11KitUri *uri)
{
	char s[33];

	switch (cfg->sel) {
	case P11P_SEL_TOKEN_LABEL:
		p11p_unpad(s, ti->label, sizeof(ti->label));
		return strcmp(s, cfg->token_label) == 0;
	case P11P_SEL_TOKEN_SERIAL:
		p11p_unpad(s, ti->serialNumber, sizeof(ti->serialNumber));
		return strcmp(s, cfg->token_serial) == 0;
	case P11P_SEL_URI:
		return p11_kit_uri_match_token_info(uri, ti) == 1 &&
		       p11_kit_uri_match_slot_info(uri, si) == 1;
	case P11P_SEL_SLOT_ID:
		break;
	}
	return false;
}

CK_RV p11p_member_resolve(struct p11p_member *m, const struct p11p_bctx *x, char *err,
                          size_t errlen)
{
	const struct p11p_member_cfg *cfg = m->cfg;
	struct p11p_backend *be = m->be;
	CK_SLOT_ID *ids = NULL, found = 0;
	CK_ULONG n = 0, matches = 0;
	P11KitUri *uri = NULL;
	CK_RV rv;

	/*
	 * Where the token was last seen is asked first: a probe of one member
	 * then never waits on another member's token (which may hang).
	 */
	if (m->resolved && cfg->sel != P11P_SEL_URI && be != NULL && be->module != NULL) {
		CK_TOKEN_INFO ti;
		CK_SLOT_INFO si;

		rv = p11p_be_C_GetSlotInfo(x, m->be_slot, &si);
		if (rv == CKR_OK && (si.flags & CKF_TOKEN_PRESENT) && cfg->sel != P11P_SEL_SLOT_ID)
			rv = p11p_be_C_GetTokenInfo(x, m->be_slot, &ti);
		if (rv == CKR_OK && (si.flags & CKF_TOKEN_PRESENT) &&
		    (cfg->sel == P11P_SEL_SLOT_ID || token_matches(cfg, &ti, &si, NULL)))
			return CKR_OK;
		/* The token's slot fails: so does the member (the others are not asked). */
		if (p11p_rv_is_server_error(be, rv) && rv != CKR_TOKEN_NOT_PRESENT) {
			snprintf(err, errlen, "slot %lu: %s", (unsigned long)m->be_slot,
			         p11p_rv_str(rv));
			return rv;
		}
	}
	m->resolved = false;
	if (be == NULL || be->module == NULL) {
		snprintf(err, errlen, "backend not loaded");
		return CKR_DEVICE_ERROR;
	}
	if (cfg->sel == P11P_SEL_URI) {
		uri = p11_kit_uri_new();
		if (uri == NULL)
			return CKR_HOST_MEMORY;
		if (p11_kit_uri_parse(cfg->uri, P11_KIT_URI_FOR_ANY, uri) != P11_KIT_URI_OK) {
			snprintf(err, errlen, "cannot parse URI %s", cfg->uri);
			rv = CKR_ARGUMENTS_BAD;
			goto out;
		}
	}
	rv = slot_list(be, cfg->sel != P11P_SEL_SLOT_ID, &ids, &n);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_GetSlotList failed: %s", p11p_rv_str(rv));
		goto out;
	}
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		CK_SLOT_INFO si;

		if (cfg->sel == P11P_SEL_SLOT_ID) {
			if (ids[i] != cfg->slot_id)
				continue;
			if (p11p_be_C_GetSlotInfo(x, ids[i], &si) != CKR_OK ||
			    !(si.flags & CKF_TOKEN_PRESENT)) {
				snprintf(err, errlen, "no token in slot %lu",
				         (unsigned long)ids[i]);
				rv = CKR_TOKEN_NOT_PRESENT;
				goto out;
			}
			found = ids[i];
			matches = 1;
			break;
		}
		if (p11p_be_C_GetTokenInfo(x, ids[i], &ti) != CKR_OK ||
		    p11p_be_C_GetSlotInfo(x, ids[i], &si) != CKR_OK)
			continue; /* removed meanwhile, or broken: not ours */
		if (token_matches(cfg, &ti, &si, uri)) {
			if (matches++ == 0)
				found = ids[i];
		}
	}
	if (matches == 0) {
		if (cfg->sel == P11P_SEL_SLOT_ID)
			snprintf(err, errlen, "no slot %lu", (unsigned long)cfg->slot_id);
		else
			snprintf(err, errlen, "no token matches %s",
			         cfg->sel == P11P_SEL_TOKEN_LABEL    ? cfg->token_label
			         : cfg->sel == P11P_SEL_TOKEN_SERIAL ? cfg->token_serial
			                                             : cfg->uri);
		rv = CKR_TOKEN_NOT_PRESENT;
		goto out;
	}
	if (matches > 1) {
		snprintf(err, errlen, "%lu tokens match; the selector must name exactly one",
		         (unsigned long)matches);
		rv = CKR_FUNCTION_FAILED;
		goto out;
	}
	m->be_slot = found;
	m->resolved = true;
	rv = CKR_OK;
out:
	if (uri != NULL)
		p11_kit_uri_free(uri);
	p11p_free(ids);
	return rv;
}

bool p11p_rv_is_server_error(const struct p11p_backend *be, CK_RV rv)
{
	const struct p11p_backend_cfg *cfg = be ? be->cfg : NULL;

	for (size_t i = 0; cfg != NULL && i < cfg->n_client_errors; i++)
		if (cfg->client_errors[i] == rv)
			return false;
	for (size_t i = 0; cfg != NULL && i < cfg->n_server_errors; i++)
		if (cfg->server_errors[i] == rv)
			return true;
	switch (rv) {
	case CKR_DEVICE_ERROR:
	case CKR_DEVICE_REMOVED:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_DEVICE_MEMORY:
	case CKR_GENERAL_ERROR:
		return true;
	default:
		return false;
	}
}
