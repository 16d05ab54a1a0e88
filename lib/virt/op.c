/*
 * Operations in progress, recorded so that a failover can start them again
 * on another member: the *Init (mechanism with a deep copy of its parameter,
 * key), every input fed since (up to the slot's replay_buffer bytes), and for
 * a find the template and the handles already handed out.
 *
 * A mechanism parameter is only copied when its layout is known to hold no
 * pointers, or is one we copy deeply (GCM, OAEP); any other keeps the
 * operation from being replayed, rather than replay a dangling pointer.
 */
#include "virt/virt.h"
#include "virt/core.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/names.h"

#include <string.h>

enum { STEP_DATA = 1, STEP_KEY = 2 };

/* Step header in the log: type, then a value (length or handle), then bytes. */
struct step {
	unsigned char type;
	CK_ULONG value;
};

static void op_clear(struct p11p_op *op)
{
	/* Not active: cleared already. Single-member slots record nothing: no frees. */
	if (!op->active)
		return;
	if (op->param_mem == NULL && op->templ == NULL && op->log == NULL && op->returned == NULL) {
		*op = (struct p11p_op){0};
		return;
	}
	p11p_wipe(op->param_mem, op->mech.ulParameterLen);
	p11p_free(op->param_mem);
	for (CK_ULONG i = 0; i < op->templ_count; i++)
		p11p_free(op->templ[i].pValue);
	p11p_free(op->templ);
	p11p_wipe(op->log, op->log_len); /* plaintext fed to encrypt or sign */
	p11p_free(op->log);
	p11p_free(op->returned);
	memset(op, 0, sizeof(*op));
}

void p11p_op_free_all(struct p11p_session *s)
{
	if (!s->ops_used)
		return; /* no operation ever began: nothing to look at */
	s->ops_used = false;
	/* An operation that is not active holds nothing (ending one clears it). */
	for (int k = 0; k < P11P_OP_KINDS; k++)
		if (s->ops[k].active)
			op_clear(&s->ops[k]);
}

/* Copies the mechanism; false when it cannot be replayed. */
static bool copy_mechanism(struct p11p_op *op, const CK_MECHANISM *m)
{
	return p11p_mech_copy(m, &op->mech, &op->param_mem);
}

void p11p_op_begin(struct p11p_call *c, enum p11p_op_kind k, const CK_MECHANISM *mech,
                   CK_OBJECT_HANDLE key)
{
	struct p11p_op *op = &c->s->ops[k];

	op_clear(op);
	op->active = true;
	c->s->ops_used = true;
	op->key = key;
	/* Single-member slots have nowhere to replay: record nothing. */
	op->replayable =
	    c->s->head.slot->head.n_members > 1 && mech != NULL && copy_mechanism(op, mech);
}

void p11p_op_begin_find(struct p11p_call *c, const CK_ATTRIBUTE *templ, CK_ULONG count)
{
	struct p11p_op *op = &c->s->ops[P11P_OP_FIND];

	op_clear(op);
	op->active = true;
	c->s->ops_used = true;
	if (c->s->head.slot->head.n_members < 2 || count > 64 || (count > 0 && templ == NULL))
		return;
	op->templ = p11p_calloc(count, sizeof(*op->templ));
	if (op->templ == NULL)
		return;
	for (CK_ULONG i = 0; i < count; i++) {
		op->templ[i].type = templ[i].type;
		op->templ[i].ulValueLen = templ[i].ulValueLen;
		op->templ_count = i + 1;
		if (templ[i].ulValueLen > 4096 || (templ[i].ulValueLen > 0 && !templ[i].pValue))
			return;
		if (templ[i].ulValueLen == 0)
			continue;
		op->templ[i].pValue = p11p_malloc(templ[i].ulValueLen);
		if (op->templ[i].pValue == NULL)
			return;
		memcpy(op->templ[i].pValue, templ[i].pValue, templ[i].ulValueLen);
	}
	op->replayable = true;
}

static void log_append(struct p11p_call *c, struct p11p_op *op, unsigned char type, CK_ULONG value,
                       const void *data, size_t len)
{
	struct step st = {.type = type, .value = value};
	size_t need = op->log_len + sizeof(st) + len;

	if (!op->replayable)
		return;
	if (need > c->s->head.slot->head.cfg->ha.replay_buffer + sizeof(st) * 64) {
		op->replayable = false; /* more input than the slot keeps */
		return;
	}
	if (need > op->log_cap) {
		size_t cap = need * 2;
		unsigned char *log = p11p_malloc(cap);

		if (log == NULL) {
			op->replayable = false;
			return;
		}
		if (op->log_len > 0)
			memcpy(log, op->log, op->log_len);
		p11p_wipe(op->log, op->log_len);
		p11p_free(op->log);
		op->log = log;
		op->log_cap = cap;
	}
	memcpy(op->log + op->log_len, &st, sizeof(st));
	if (len > 0)
		memcpy(op->log + op->log_len + sizeof(st), data, len);
	op->log_len = need;
}

void p11p_op_update(struct p11p_call *c, enum p11p_op_kind k, const void *data, CK_ULONG len)
{
	log_append(c, &c->s->ops[k], STEP_DATA, len, data, data ? len : 0);
}

void p11p_op_digest_key(struct p11p_call *c, CK_OBJECT_HANDLE key)
{
	log_append(c, &c->s->ops[P11P_OP_DIGEST], STEP_KEY, key, NULL, 0);
}

void p11p_op_end(struct p11p_call *c, enum p11p_op_kind k)
{
	op_clear(&c->s->ops[k]);
}

void p11p_op_unreplayable(struct p11p_call *c)
{
	for (int k = 0; k < P11P_OP_KINDS; k++)
		c->s->ops[k].replayable = false;
}

void p11p_op_found(struct p11p_call *c, CK_OBJECT_HANDLE h)
{
	struct p11p_op *op = &c->s->ops[P11P_OP_FIND];

	if (!op->replayable)
		return;
	if (op->n_returned == op->cap_returned) {
		size_t cap = op->cap_returned ? op->cap_returned * 2 : 64;
		CK_OBJECT_HANDLE *r;

		if (cap > 1000000 ||
		    (r = p11p_reallocarray(op->returned, cap, sizeof(*r))) == NULL) {
			op->replayable = false;
			return;
		}
		op->returned = r;
		op->cap_returned = cap;
	}
	op->returned[op->n_returned++] = h;
}

bool p11p_op_was_found(const struct p11p_call *c, CK_OBJECT_HANDLE h)
{
	const struct p11p_op *op = &c->s->ops[P11P_OP_FIND];

	for (size_t i = 0; i < op->n_returned; i++)
		if (op->returned[i] == h)
			return true;
	return false;
}

/* The backend's *Init for an operation kind. */
static CK_RV init_call(struct p11p_call *c, enum p11p_op_kind k, CK_MECHANISM *m,
                       CK_OBJECT_HANDLE bkey)
{
	switch (k) {
	case P11P_OP_ENCRYPT:
		return p11p_be_C_EncryptInit(&c->bc, c->bs, m, bkey);
	case P11P_OP_DECRYPT:
		return p11p_be_C_DecryptInit(&c->bc, c->bs, m, bkey);
	case P11P_OP_DIGEST:
		return p11p_be_C_DigestInit(&c->bc, c->bs, m);
	case P11P_OP_SIGN:
		return p11p_be_C_SignInit(&c->bc, c->bs, m, bkey);
	case P11P_OP_VERIFY:
		return p11p_be_C_VerifyInit(&c->bc, c->bs, m, bkey);
	case P11P_OP_SIGN_RECOVER:
		return p11p_be_C_SignRecoverInit(&c->bc, c->bs, m, bkey);
	case P11P_OP_VERIFY_RECOVER:
		return p11p_be_C_VerifyRecoverInit(&c->bc, c->bs, m, bkey);
	default:
		return CKR_GENERAL_ERROR;
	}
}

/* Feeds recorded input again; output the application already has is discarded. */
static CK_RV update_call(struct p11p_call *c, enum p11p_op_kind k, CK_BYTE_PTR data, CK_ULONG len)
{
	CK_BYTE_PTR out;
	CK_ULONG out_len = 0;
	CK_RV rv;

	switch (k) {
	case P11P_OP_DIGEST:
		return p11p_be_C_DigestUpdate(&c->bc, c->bs, data, len);
	case P11P_OP_SIGN:
		return p11p_be_C_SignUpdate(&c->bc, c->bs, data, len);
	case P11P_OP_VERIFY:
		return p11p_be_C_VerifyUpdate(&c->bc, c->bs, data, len);
	case P11P_OP_ENCRYPT:
	case P11P_OP_DECRYPT:
		break;
	default:
		return CKR_GENERAL_ERROR;
	}
	out_len = len + 256; /* block-cipher updates return at most input + a block */
	out = p11p_malloc(out_len);
	if (out == NULL)
		return CKR_HOST_MEMORY;
	if (k == P11P_OP_ENCRYPT)
		rv = p11p_be_C_EncryptUpdate(&c->bc, c->bs, data, len, out, &out_len);
	else
		rv = p11p_be_C_DecryptUpdate(&c->bc, c->bs, data, len, out, &out_len);
	p11p_wipe(out, len + 256);
	p11p_free(out);
	return rv;
}

static CK_RV replay_one(struct p11p_call *c, enum p11p_op_kind k, struct p11p_op *op)
{
	CK_OBJECT_HANDLE bkey = CK_INVALID_HANDLE;
	size_t off = 0;
	CK_RV rv;

	if (k == P11P_OP_FIND)
		return p11p_be_C_FindObjectsInit(&c->bc, c->bs, op->templ, op->templ_count);
	if (op->key != CK_INVALID_HANDLE) {
		rv = p11p_object_to_backend(c, op->key, CKR_KEY_HANDLE_INVALID, &bkey);
		if (rv != CKR_OK)
			return rv;
	}
	rv = init_call(c, k, &op->mech, bkey);
	/* A handle the member dropped (its sessions went): found again by identity, once. */
	if ((rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID) &&
	    op->key != CK_INVALID_HANDLE && p11p_object_forget_handle(c, op->key, bkey) &&
	    p11p_object_to_backend(c, op->key, CKR_KEY_HANDLE_INVALID, &bkey) == CKR_OK)
		rv = init_call(c, k, &op->mech, bkey);
	while (rv == CKR_OK && off < op->log_len) {
		struct step st;

		memcpy(&st, op->log + off, sizeof(st));
		off += sizeof(st);
		if (st.type == STEP_KEY) {
			rv = p11p_object_to_backend(c, st.value, CKR_KEY_HANDLE_INVALID, &bkey);
			if (rv == CKR_OK)
				rv = p11p_be_C_DigestKey(&c->bc, c->bs, bkey);
		} else {
			rv = update_call(c, k, op->log + off, st.value);
			off += st.value;
		}
	}
	return rv;
}

CK_RV p11p_op_replay(struct p11p_call *c)
{
	for (int k = 0; k < P11P_OP_KINDS; k++) {
		struct p11p_op *op = &c->s->ops[k];
		CK_RV rv = CKR_DEVICE_ERROR;

		if (!op->active || op->lost)
			continue;
		if (op->replayable)
			rv = replay_one(c, (enum p11p_op_kind)k, op);
		if (rv == CKR_OK)
			continue;
		/*
		 * The new member failed too, or lost the new session already (an
		 * HSM restarting again between its C_OpenSession and the replay):
		 * the operation goes on to another member.
		 */
		if (p11p_rv_needs_failover(c->m, rv))
			return rv;
		/* Lost with its member: its next call answers CKR_DEVICE_ERROR. */
		p11p_debug(P11P_DBG_SESSION, "operation %d not replayed (%s)", k, p11p_rv_str(rv));
		op_clear(op);
		op->active = op->lost = true;
		c->s->head.ops_lost |= 1u << k;
	}
	return CKR_OK;
}

bool p11p_session_op_active(const struct p11p_session *s, enum p11p_op_kind k)
{
	return (unsigned)k < P11P_OP_KINDS && s->ops[k].active;
}

bool p11p_op_lost(struct p11p_call *c, enum p11p_op_kind k)
{
	struct p11p_op *op = &c->s->ops[k];

	c->s->head.ops_lost &= ~(1u << k);
	if (!op->lost)
		return false;
	op_clear(op);
	return true;
}
