/*
 * replication-key create: the slot's replication key (ha.replication_key),
 * one AES-256 value on every member (issue 10, item 4).
 *
 *   p11proxy replication-key create SLOT [--label L]
 *                                        [--so-pin-source env:VAR|file:PATH] [--json]
 *
 * Every member of the slot (in the effective order) is opened and logged in
 * first (its configured PIN, else one user PIN read from the terminal or
 * stdin); a member that cannot be, or that holds a secret key with the label
 * already, stops the command before anything is made. There is no --replace:
 * an existing key is refused (destroy it with the token's tools first).
 *
 * The value: 32 bytes from the entropy mixer (as gen-fragment draws them)
 * over the first member's C_GenerateRandom and the OS's getrandom(); the
 * stack copy is wiped at once and the value is held in a p11p_secret until
 * the last member has its key, then wiped. It is never printed. CKA_ID: 16
 * more random bytes, the same on every member.
 *
 * On each member: C_CreateObject in the user session with CKA_TRUSTED true.
 * A token that keeps CKA_TRUSTED for the security officer (SoftHSM2 answers
 * CKR_ATTRIBUTE_READ_ONLY) gets the key from an SO session instead: the user
 * is logged out, the SO PIN read once (--so-pin-source, else the terminal,
 * without echo), and the key created by the SO with CKA_TRUSTED true, with
 * CKA_PRIVATE true or, when the token keeps private objects from the SO (as
 * SoftHSM2 does), CKA_PRIVATE false; the user is logged in again.
 *
 * All or nothing: when a member fails, the keys made on the others are
 * destroyed. Then the check: on each member a session AES key of 32 zero bytes
 * is wrapped under the new key (CKM_AES_KEY_WRAP, else CKM_AES_KEY_WRAP_PAD);
 * the wrapped bytes must be the same on every member, and the first member's
 * must unwrap on every other. The first 3 bytes are printed as the check
 * value (the usual KCV length: 24 bits of a one-way function of the key).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend/call.h"
#include "base/mem.h"
#include "base/secret.h"
#include "cli.h"
#include "config/config.h"
#include "ha/order.h"
#include "soft/entropy.h"
#include "util.h"

#define RK_VALUE_LEN 32
#define RK_ID_LEN    16
#define RK_WRAP_MAX  64
#define RK_KCV_LEN   3
#define RK_ERR       512

enum rk_trust {
	RK_NONE = 0,
	RK_USER,      /* CKA_TRUSTED set in the user session */
	RK_SO,        /* created by the SO, CKA_PRIVATE true */
	RK_SO_PUBLIC, /* created by the SO, CKA_PRIVATE false */
};

static const char *const trust_names[] = {"none", "user", "so", "so-public"};

struct rk_member {
	const struct p11p_member_cfg *mc;
	size_t number; /* 1-based, in the effective order */
	struct p11p_member m;
	struct p11p_bctx ctx;
	CK_SESSION_HANDLE h;
	bool open, logged_in;
	CK_OBJECT_HANDLE key; /* 0: none made */
	enum rk_trust trust;
	unsigned char wrapped[RK_WRAP_MAX];
	CK_ULONG wlen;
	char err[RK_ERR];
};

struct rk {
	struct cli_backends *bes;
	struct p11p_secret *user_pin; /* read once, for members without a configured PIN */
	bool user_pin_tried;
	struct p11p_secret *so_pin;
	const char *so_source;
	struct rk_member *mem;
	size_t n;
};

static const struct p11p_secret *rk_user_pin(struct rk *r)
{
	char buf[CLI_PIN_MAX + 1];
	long len;

	if (r->user_pin_tried)
		return r->user_pin;
	r->user_pin_tried = true;
	if (isatty(STDIN_FILENO))
		len = cli_read_pin_tty("User PIN (members without a configured PIN): ", buf,
		                       sizeof(buf));
	else
		len = cli_read_pin_fd(STDIN_FILENO, "stdin", buf, sizeof(buf));
	if (len > 0 && (r->user_pin = p11p_secret_new(buf, (size_t)len)) == NULL)
		cli_error("out of memory");
	else if (len == 0)
		cli_error("empty PIN");
	p11p_wipe(buf, sizeof(buf));
	return r->user_pin;
}

static const struct p11p_secret *rk_so_pin(struct rk *r, char *err, size_t errlen)
{
	char buf[CLI_PIN_MAX + 1];
	long len;

	if (r->so_pin != NULL)
		return r->so_pin;
	if (r->so_source != NULL) {
		r->so_pin = cli_pin_from_source(r->so_source, err, errlen);
		return r->so_pin;
	}
	len = cli_read_pin_tty("Security officer (SO) PIN: ", buf, sizeof(buf));
	if (len > 0 && (r->so_pin = p11p_secret_new(buf, (size_t)len)) == NULL)
		snprintf(err, errlen, "out of memory");
	else if (len <= 0)
		snprintf(err, errlen, "no SO PIN (no terminal to ask on: use --so-pin-source)");
	p11p_wipe(buf, sizeof(buf));
	return r->so_pin;
}

static CK_RV rk_login(struct rk_member *x, CK_USER_TYPE who, const struct p11p_secret *pin)
{
	CK_UTF8CHAR buf[P11P_MAX_PIN_LEN];
	size_t len = p11p_secret_len(pin);
	CK_RV rv;

	if (len > sizeof(buf))
		return CKR_PIN_LEN_RANGE;
	memcpy(buf, p11p_secret_data(pin), len);
	rv = p11p_be_C_Login(&x->ctx, x->h, who, buf, (CK_ULONG)len);
	p11p_wipe(buf, sizeof(buf));
	return rv;
}

static CK_RV rk_hsm_random(void *ctx, unsigned char *buf, size_t len)
{
	struct rk_member *x = ctx;

	return p11p_be_C_GenerateRandom(&x->ctx, x->h, buf, len);
}

/* Opens the member's session and logs the user in. false with why in x->err. */
static bool rk_open(struct rk *r, struct rk_member *x)
{
	struct p11p_secret *own = NULL;
	const struct p11p_secret *pin;
	char err[RK_ERR / 2];
	CK_RV rv;

	x->m.cfg = x->mc;
	atomic_init(&x->m.health, P11P_UP);
	x->m.be = cli_backend(r->bes, x->mc->backend, x->err, sizeof(x->err));
	if (x->m.be == NULL)
		return false;
	x->ctx = (struct p11p_bctx){.be = x->m.be, .timeout_ms = CLI_PROBE_TIMEOUT_MS};
	rv = p11p_member_resolve(&x->m, &x->ctx, x->err, sizeof(x->err));
	if (rv != CKR_OK) {
		if (x->err[0] == '\0')
			snprintf(x->err, sizeof(x->err), "%s", cli_rv(rv));
		return false;
	}
	rv = p11p_be_C_OpenSession(&x->ctx, x->m.be_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
	                           NULL, &x->h);
	if (rv != CKR_OK) {
		snprintf(x->err, sizeof(x->err), "C_OpenSession: %s", cli_rv(rv));
		return false;
	}
	x->open = true;
	if (x->mc->pin == NULL && x->mc->pin_source != NULL) {
		own = cli_pin_from_source(x->mc->pin_source, err, sizeof(err));
		if (own == NULL) {
			snprintf(x->err, sizeof(x->err), "PIN: %s", err);
			return false;
		}
	}
	pin = own != NULL ? own : x->mc->pin != NULL ? x->mc->pin : rk_user_pin(r);
	if (pin == NULL) {
		snprintf(x->err, sizeof(x->err), "no user PIN to log in with");
		return false;
	}
	rv = rk_login(x, CKU_USER, pin);
	p11p_secret_free(own);
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		snprintf(x->err, sizeof(x->err), "C_Login: %s", cli_rv(rv));
		return false;
	}
	x->logged_in = true;
	return true;
}

/* The user again after an SO session (the member's configured PIN or the shared one). */
static CK_RV rk_relogin(struct rk *r, struct rk_member *x)
{
	struct p11p_secret *own = NULL;
	const struct p11p_secret *pin;
	char err[RK_ERR / 2];
	CK_RV rv;

	if (x->mc->pin == NULL && x->mc->pin_source != NULL)
		own = cli_pin_from_source(x->mc->pin_source, err, sizeof(err));
	pin = own != NULL ? own : x->mc->pin != NULL ? x->mc->pin : rk_user_pin(r);
	if (pin == NULL)
		return CKR_USER_NOT_LOGGED_IN;
	rv = rk_login(x, CKU_USER, pin);
	p11p_secret_free(own);
	return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

/* Secret keys labelled label on the member: their number (0, 1, 2 = more), or -1. */
static int rk_count(struct rk_member *x, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                    {CKA_LABEL, (void *)(uintptr_t)label, strlen(label)}};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = 0;
	CK_RV rv = p11p_be_C_FindObjectsInit(&x->ctx, x->h, t, 2);

	if (rv == CKR_OK) {
		rv = p11p_be_C_FindObjects(&x->ctx, x->h, found, 2, &n);
		p11p_be_C_FindObjectsFinal(&x->ctx, x->h);
	}
	if (rv != CKR_OK) {
		snprintf(x->err, sizeof(x->err), "cannot search for '%s': %s", label, cli_rv(rv));
		return -1;
	}
	return (int)n;
}

/* Refusals that mean "CKA_TRUSTED is the security officer's to set". */
static bool trust_refused(CK_RV rv)
{
	return rv == CKR_ATTRIBUTE_READ_ONLY || rv == CKR_TEMPLATE_INCONSISTENT ||
	       rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_ATTRIBUTE_VALUE_INVALID ||
	       rv == CKR_USER_TYPE_INVALID;
}

static CK_RV rk_create(struct rk_member *x, const struct p11p_secret *value, const char *label,
                       const unsigned char *id, bool priv)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE, pv = priv ? CK_TRUE : CK_FALSE;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_PRIVATE, &pv, sizeof(pv)},
	    {CKA_SENSITIVE, &yes, sizeof(yes)},
	    {CKA_EXTRACTABLE, &no, sizeof(no)},
	    {CKA_WRAP, &yes, sizeof(yes)},
	    {CKA_UNWRAP, &yes, sizeof(yes)},
	    {CKA_ENCRYPT, &no, sizeof(no)},
	    {CKA_DECRYPT, &no, sizeof(no)},
	    {CKA_LABEL, (void *)(uintptr_t)label, strlen(label)},
	    {CKA_ID, (void *)(uintptr_t)id, RK_ID_LEN},
	    {CKA_VALUE, (void *)(uintptr_t)p11p_secret_data(value), p11p_secret_len(value)},
	    {CKA_TRUSTED, &yes, sizeof(yes)},
	};

	return p11p_be_C_CreateObject(&x->ctx, x->h, t, sizeof(t) / sizeof(t[0]), &x->key);
}

#define RK_SNAP 256

/* The secret keys without a label on the member (at most RK_SNAP): their count, or -1. */
static long rk_unlabelled(struct rk_member *x, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, NULL, 0}};
	CK_ULONG n = 0;
	CK_RV rv = p11p_be_C_FindObjectsInit(&x->ctx, x->h, t, 2);

	if (rv == CKR_OK) {
		rv = p11p_be_C_FindObjects(&x->ctx, x->h, out, RK_SNAP, &n);
		p11p_be_C_FindObjectsFinal(&x->ctx, x->h);
	}
	return rv == CKR_OK ? (long)n : -1;
}

/*
 * A refused C_CreateObject must leave nothing, but SoftHSM2 2.6 leaves an
 * object without attributes behind when it refuses CKA_TRUSTED: the
 * unlabelled secret keys that were not there before are destroyed.
 */
static void rk_orphans(struct rk_member *x, const CK_OBJECT_HANDLE *before, long nb)
{
	CK_OBJECT_HANDLE after[RK_SNAP];
	long na = rk_unlabelled(x, after);

	for (long i = 0; i < na && nb >= 0; i++) {
		bool old = false;

		for (long j = 0; j < nb && !old; j++)
			old = after[i] == before[j];
		if (!old)
			p11p_be_C_DestroyObject(&x->ctx, x->h, after[i]);
	}
}

/*
 * The key on one member: in the user session, else by the SO. false with why
 * in x->err (x->key 0: nothing left on the member).
 */
static bool rk_make(struct rk *r, struct rk_member *x, const struct p11p_secret *value,
                    const char *label, const unsigned char *id)
{
	const struct p11p_secret *so;
	CK_OBJECT_HANDLE before[RK_SNAP];
	long nb;
	char err[RK_ERR / 2];
	CK_RV rv, rv2;

	x->key = 0;
	nb = rk_unlabelled(x, before);
	rv = rk_create(x, value, label, id, true);
	if (rv == CKR_OK) {
		x->trust = RK_USER;
		return true;
	}
	x->key = 0;
	rk_orphans(x, before, nb);
	if (!trust_refused(rv)) {
		snprintf(x->err, sizeof(x->err), "C_CreateObject: %s", cli_rv(rv));
		return false;
	}
	/* CKA_TRUSTED is the security officer's here. */
	err[0] = '\0';
	so = rk_so_pin(r, err, sizeof(err));
	if (so == NULL) {
		snprintf(x->err, sizeof(x->err),
		         "the token sets CKA_TRUSTED only for the security officer (%s), and %s",
		         cli_rv(rv), err[0] != '\0' ? err : "no SO PIN");
		return false;
	}
	p11p_be_C_Logout(&x->ctx, x->h);
	x->logged_in = false;
	rv = rk_login(x, CKU_SO, so);
	if (rv != CKR_OK) {
		snprintf(x->err, sizeof(x->err), "C_Login as the security officer: %s", cli_rv(rv));
		goto relogin;
	}
	rv = rk_create(x, value, label, id, true);
	if (rv == CKR_OK) {
		x->trust = RK_SO;
	} else {
		x->key = 0;
		/* The token keeps private objects from the SO (SoftHSM2): a public key object. */
		rv2 = rk_create(x, value, label, id, false);
		if (rv2 == CKR_OK) {
			x->trust = RK_SO_PUBLIC;
			rv = CKR_OK;
		} else {
			x->key = 0;
			snprintf(
			    x->err, sizeof(x->err),
			    "C_CreateObject by the security officer: %s (CKA_PRIVATE false: %s)",
			    cli_rv(rv), cli_rv(rv2));
		}
	}
	p11p_be_C_Logout(&x->ctx, x->h);
relogin:
	rv2 = rk_relogin(r, x);
	if (rv2 == CKR_OK)
		x->logged_in = true;
	else if (rv == CKR_OK)
		snprintf(x->err, sizeof(x->err), "C_Login again as the user: %s", cli_rv(rv2));
	return rv == CKR_OK && rv2 == CKR_OK;
}

/* Wraps a session key of zero bytes under the new key: into x->wrapped. */
static CK_RV rk_wrap_zero(struct rk_member *x, CK_MECHANISM_TYPE *mech)
{
	static const CK_MECHANISM_TYPE mechs[] = {CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD};
	unsigned char zero[RK_VALUE_LEN] = {0};
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},   {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_TOKEN, &no, sizeof(no)},     {CKA_EXTRACTABLE, &yes, sizeof(yes)},
	    {CKA_SENSITIVE, &no, sizeof(no)}, {CKA_VALUE, zero, sizeof(zero)},
	};
	CK_OBJECT_HANDLE zk = 0;
	CK_RV rv = p11p_be_C_CreateObject(&x->ctx, x->h, t, sizeof(t) / sizeof(t[0]), &zk);

	if (rv != CKR_OK)
		return rv;
	for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
		CK_MECHANISM m = {*mech != 0 ? *mech : mechs[i], NULL, 0};

		x->wlen = sizeof(x->wrapped);
		rv = p11p_be_C_WrapKey(&x->ctx, x->h, &m, x->key, zk, x->wrapped, &x->wlen);
		if (rv == CKR_OK) {
			*mech = m.mechanism;
			break;
		}
		if (*mech != 0)
			break;
	}
	p11p_be_C_DestroyObject(&x->ctx, x->h, zk);
	return rv;
}

static CK_RV rk_unwrap(struct rk_member *x, CK_MECHANISM_TYPE mech, unsigned char *w, CK_ULONG wlen)
{
	CK_MECHANISM m = {mech, NULL, 0};
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	                    {CKA_TOKEN, &no, sizeof(no)}};
	CK_OBJECT_HANDLE k = 0;
	CK_RV rv = p11p_be_C_UnwrapKey(&x->ctx, x->h, &m, x->key, w, wlen, t, 3, &k);

	if (rv == CKR_OK)
		p11p_be_C_DestroyObject(&x->ctx, x->h, k);
	return rv;
}

/* Destroys what was made (all or nothing). */
static void rk_rollback(struct rk *r, char *names, size_t nlen)
{
	names[0] = '\0';
	for (size_t i = 0; i < r->n; i++) {
		struct rk_member *x = &r->mem[i];
		CK_RV rv;

		if (x->key == 0)
			continue;
		rv = p11p_be_C_DestroyObject(&x->ctx, x->h, x->key);
		if (rv != CKR_OK) {
			size_t l = strlen(names);

			snprintf(names + l, nlen - l, "%s'%s' (%s)", l > 0 ? ", " : "", x->mc->name,
			         cli_rv(rv));
		}
		x->key = 0;
	}
}

static json_t *rk_json_members(struct rk *r)
{
	json_t *a = json_array();

	for (size_t i = 0; i < r->n; i++) {
		json_t *o = json_object();

		cli_jset(o, "number", json_integer((json_int_t)r->mem[i].number));
		cli_jset(o, "name", cli_jstr(r->mem[i].mc->name));
		cli_jset(o, "trusted", cli_jstr(trust_names[r->mem[i].trust]));
		cli_jset(o, "private", json_boolean(r->mem[i].trust != RK_SO_PUBLIC));
		json_array_append_new(a, o);
	}
	return a;
}

static int rk_create_cmd(struct cli *cli, const char *slot_arg, const char *label_arg,
                         const char *so_source)
{
	struct p11p_config *cfg = cli_config(cli);
	struct p11p_entropy_cfg ecfg = {.source = P11P_ENTROPY_PASSTHROUGH};
	struct p11p_rng *rng = NULL;
	struct p11p_secret *value = NULL;
	struct rk r = {.so_source = so_source};
	struct p11p_order o = {0};
	unsigned char buf[RK_VALUE_LEN], id[RK_ID_LEN];
	char err[RK_ERR], sname[64], hex[2 * RK_WRAP_MAX + 1];
	const char *label, *slot_name;
	CK_MECHANISM_TYPE mech = 0;
	size_t slot, made = 0;
	int rc = CLI_FAIL;
	CK_RV rv;

	if (cfg == NULL)
		return CLI_FAIL;
	slot = cli_slot_arg(cfg, "replication-key", slot_arg);
	if (slot == (size_t)-1) {
		p11p_config_free(cfg);
		return CLI_USAGE;
	}
	slot_name = cli_slot_name(cfg, slot, sname, sizeof(sname));
	label = label_arg != NULL ? label_arg : cfg->slots[slot].ha.replication_key;
	if (label == NULL || label[0] == '\0') {
		cli_error("slot '%s' has no ha.replication_key: set it in %s, or name the key with "
		          "--label",
		          slot_name, cfg->path);
		goto done;
	}
	if (cli_slot_order(cfg, slot, &o, err, sizeof(err)) < 0)
		cli_error("warning: %s (the configured member order is used)", err);
	r.bes = cli_backends_new(cfg);
	r.mem = p11p_calloc(o.n > 0 ? o.n : 1, sizeof(*r.mem));
	if (r.bes == NULL || r.mem == NULL) {
		cli_error("out of memory");
		goto done;
	}
	r.n = o.n;
	/* Every member reachable, logged in, and without the key: else nothing is made. */
	for (size_t i = 0; i < r.n; i++) {
		struct rk_member *x = &r.mem[i];
		int n;

		x->mc = cli_order_member(cfg, slot, &o.e[i]);
		x->number = i + 1;
		if (!rk_open(&r, x)) {
			cli_error(
			    "slot '%s': member %zu '%s': %s; nothing was created (bring the "
			    "member back, or take it out with `p11proxy members %s delete %zu`, "
			    "and run the command again)",
			    slot_name, x->number, x->mc->name, x->err, slot_name, x->number);
			goto done;
		}
		n = rk_count(x, label);
		if (n < 0) {
			cli_error("slot '%s': member %zu '%s': %s; nothing was created", slot_name,
			          x->number, x->mc->name, x->err);
			goto done;
		}
		if (n > 0) {
			cli_error(
			    "slot '%s': member %zu '%s' has a secret key labelled '%s' already; "
			    "nothing was created (keep it, or destroy the old key on every "
			    "member with the token's tools, or choose another --label and set "
			    "ha.replication_key to it)",
			    slot_name, x->number, x->mc->name, label);
			goto done;
		}
	}
	/* The value: mixed entropy (the first member's RNG and the OS), held in wiped memory. */
	rv = p11p_entropy_rng_new(&ecfg, rk_hsm_random, &r.mem[0], &rng);
	if (rv == CKR_OK)
		rv = p11p_entropy_generate(rng, buf, sizeof(buf));
	if (rv == CKR_OK)
		rv = p11p_entropy_generate(rng, id, sizeof(id));
	if (rv == CKR_OK && (value = p11p_secret_new(buf, sizeof(buf))) == NULL)
		rv = CKR_HOST_MEMORY;
	p11p_wipe(buf, sizeof(buf));
	if (rv != CKR_OK) {
		cli_error("cannot draw the key value: %s; nothing was created", cli_rv(rv));
		goto done;
	}
	for (size_t i = 0; i < r.n; i++) {
		struct rk_member *x = &r.mem[i];

		if (!rk_make(&r, x, value, label, id)) {
			char left[RK_ERR];

			rk_rollback(&r, left, sizeof(left));
			if (left[0] != '\0')
				cli_error(
				    "slot '%s': member %zu '%s': %s; the keys made on the other "
				    "members could not all be destroyed: %s (destroy those keys "
				    "labelled '%s' with the token's tools)",
				    slot_name, x->number, x->mc->name, x->err, left, label);
			else
				cli_error(
				    "slot '%s': member %zu '%s': %s; the keys made on the other "
				    "members were destroyed, nothing is left (fix the member and "
				    "run "
				    "the command again)",
				    slot_name, x->number, x->mc->name, x->err);
			goto done;
		}
		made++;
		if (!cli->json)
			printf("member %zu '%s': key '%s' created (%s)\n", x->number,
			       cli_esc(x->mc->name), cli_esc(label),
			       x->trust == RK_USER ? "CKA_TRUSTED set in the user session"
			       : x->trust == RK_SO ? "by the security officer, CKA_TRUSTED set"
			                           : "by the security officer, CKA_TRUSTED set, "
			                             "CKA_PRIVATE false: the token keeps private "
			                             "objects from the SO");
	}
	p11p_secret_free(value);
	value = NULL;
	/* The check: the same wrapped zero key everywhere, and the first one unwraps on all. */
	for (size_t i = 0; i < r.n; i++) {
		struct rk_member *x = &r.mem[i];

		rv = rk_wrap_zero(x, &mech);
		if (rv == CKR_OK && (x->wlen != r.mem[0].wlen ||
		                     memcmp(x->wrapped, r.mem[0].wrapped, x->wlen) != 0))
			rv = CKR_KEY_HANDLE_INVALID;
		if (rv == CKR_OK && i > 0)
			rv = rk_unwrap(x, mech, r.mem[0].wrapped, r.mem[0].wlen);
		if (rv != CKR_OK) {
			char left[RK_ERR];

			rk_rollback(&r, left, sizeof(left));
			cli_error("slot '%s': member %zu '%s': the new key does not check: %s; %s",
			          slot_name, x->number, x->mc->name,
			          rv == CKR_KEY_HANDLE_INVALID
			              ? "its value is not the first member's"
			              : cli_rv(rv),
			          left[0] == '\0' ? "the keys were destroyed, nothing is left"
			                          : "some keys could not be destroyed");
			if (left[0] != '\0')
				cli_error(
				    "destroy the keys labelled '%s' with the token's tools: %s",
				    label, left);
			goto done;
		}
	}
	cli_hex(r.mem[0].wrapped, RK_KCV_LEN, hex, sizeof(hex));
	if (cli->json) {
		json_t *doc = json_object();
		char idhex[2 * RK_ID_LEN + 1];

		cli_jset(doc, "ok", json_true());
		cli_jset(doc, "slot", cli_jstr(slot_name));
		cli_jset(doc, "label", cli_jstr(label));
		cli_jset(doc, "id", cli_jstr(cli_hex(id, sizeof(id), idhex, sizeof(idhex))));
		cli_jset(doc, "check_value", cli_jstr(hex));
		cli_jset(doc, "check_mechanism",
		         cli_jstr(mech == CKM_AES_KEY_WRAP ? "CKM_AES_KEY_WRAP"
		                                           : "CKM_AES_KEY_WRAP_PAD"));
		cli_jset(doc, "members", rk_json_members(&r));
		cli_json_print(doc);
	} else {
		printf("slot '%s': replication key '%s' on %zu member%s, the same value everywhere "
		       "(check value %s)\n",
		       cli_esc(slot_name), cli_esc(label), made, made == 1 ? "" : "s", hex);
	}
	rc = CLI_OK;
done:
	p11p_entropy_free(rng);
	p11p_secret_free(value);
	p11p_wipe(buf, sizeof(buf));
	for (size_t i = 0; i < r.n; i++) {
		if (r.mem[i].open)
			p11p_be_C_CloseSession(&r.mem[i].ctx, r.mem[i].h);
	}
	p11p_free(r.mem);
	p11p_secret_free(r.user_pin);
	p11p_secret_free(r.so_pin);
	cli_backends_free(r.bes);
	p11p_order_clear(&o);
	p11p_config_free(cfg);
	return rc;
}

int cmd_replication_key(struct cli *cli, int argc, char **argv)
{
	enum { O_LABEL = CLI_OPT_FIRST, O_SO };
	static const struct option opts[] = {
	    {"label", required_argument, NULL, O_LABEL},
	    {"so-pin-source", required_argument, NULL, O_SO},
	    {NULL, 0, NULL, 0},
	};
	static const char *const actions[] = {"create", NULL};
	const char *label = NULL, *so = NULL;
	int o, rc;

	cli_getopt_reset();
	while ((o = cli_getopt(cli, argc, argv, "", opts)) != -1) {
		if (o == O_LABEL)
			label = optarg;
		else if (o == O_SO)
			so = optarg;
		else
			return CLI_USAGE;
	}
	if (argc - optind < 1)
		return cli_usage("replication-key", "no action given");
	if (cli_action("replication-key", argv[optind], actions, &rc) < 0)
		return rc;
	if (argc - optind != 2)
		return cli_usage("replication-key", argc - optind < 2
		                                        ? "create: no SLOT given"
		                                        : "create: too many arguments");
	if (so != NULL && strncmp(so, "env:", 4) != 0 && strncmp(so, "file:", 5) != 0)
		return cli_usage("replication-key", "an SO PIN source is env:NAME or file:PATH");
	if (label != NULL && label[0] == '\0')
		return cli_usage("replication-key", "--label must not be empty");
	return rk_create_cmd(cli, argv[optind + 1], label, so);
}
