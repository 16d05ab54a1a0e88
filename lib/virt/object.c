/*
 * Proxy object handles. Each maps to the backend handle of the same object on
 * each member (one member until HA re-resolves it elsewhere); a backend
 * object gets one proxy handle, the same each time it is found. Session
 * objects are forgotten with the session that created them.
 */
#include "virt/virt.h"
#include "virt/core.h"
#include "base/attrs.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/names.h"
#include "keymodel/model.h"

#include <string.h>

/*
 * Backend find results are fetched in chunks of this many. Not smaller:
 * SoftHSM2's C_FindObjects costs in proportion to what is left per call, so
 * small chunks made a 10,000-object find 10% slower than asked for directly.
 */
#define FIND_CHUNK 1024

atomic_ulong p11p_g_objects_gen; /* virt.h p11p_objects_gen() */

void p11p_objects_changed_locked(void)
{
	atomic_fetch_add_explicit(&p11p_g_objects_gen, 1, memory_order_release);
}

static uint64_t rev_key(const struct p11p_vslot *vs, size_t member)
{
	return ((uint64_t)vs->head.id << 8) | member;
}

static uint64_t ident_hash(const struct p11p_identity *o)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ o->cls;
	const CK_BYTE *parts[2] = {o->id, o->label};
	CK_ULONG lens[2] = {o->id_len, o->label_len};

	for (int p = 0; p < 2; p++) {
		h = (h ^ lens[p]) * 0x100000001b3ULL;
		for (CK_ULONG i = 0; i < lens[p]; i++)
			h = (h ^ parts[p][i]) * 0x100000001b3ULL;
	}
	return h;
}

static bool same_identity(const struct p11p_identity *a, const struct p11p_identity *b)
{
	return a->cls == b->cls && a->id_len == b->id_len && a->label_len == b->label_len &&
	       memcmp(a->id, b->id, a->id_len) == 0 &&
	       memcmp(a->label, b->label, a->label_len) == 0;
}

/*
 * Reads what identifies a backend object across members into *id and
 * whether it is a token object. Only objects whose CKA_CLASS, CKA_ID and
 * CKA_LABEL all fit get an identity (true); others stay on their member. A
 * data object has no CKA_ID: its class and CKA_LABEL are its identity.
 */
static bool read_identity(struct p11p_call *c, CK_OBJECT_HANDLE bh, struct p11p_identity *id,
                          bool *token, CK_RV *rvp)
{
	CK_BBOOL tok = CK_FALSE;
	CK_ATTRIBUTE a[] = {
	    {CKA_CLASS, &id->cls, sizeof(id->cls)},
	    {CKA_TOKEN, &tok, sizeof(tok)},
	    {CKA_ID, id->id, sizeof(id->id)},
	    {CKA_LABEL, id->label, sizeof(id->label)},
	};
	CK_RV rv;
	bool ok, data;

	id->cls = CKO_VENDOR_DEFINED;
	rv = p11p_be_C_GetAttributeValue(&c->bc, c->bs, bh, a, 4);
	/* A data object has no CKA_ID (CKR_ATTRIBUTE_TYPE_INVALID): class and label name it. */
	data = a[0].ulValueLen == sizeof(id->cls) && id->cls == CKO_DATA;
	ok = (rv == CKR_OK || (data && rv == CKR_ATTRIBUTE_TYPE_INVALID)) &&
	     (data || a[2].ulValueLen <= sizeof(id->id)) && a[3].ulValueLen <= sizeof(id->label);
	*token = tok != CK_FALSE;
	*rvp = rv;
	id->id_len = ok && !data ? a[2].ulValueLen : 0;
	id->label_len = ok ? a[3].ulValueLen : 0;
	return ok;
}

/* Finds the object on the session's current member by its identity: exactly one match. */
static CK_RV refind(struct p11p_call *c, struct p11p_identity *ident, CK_OBJECT_HANDLE *out)
{
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &ident->cls, sizeof(ident->cls)},
	    {CKA_ID, ident->id, ident->id_len},
	    {CKA_LABEL, ident->label, ident->label_len},
	};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = 0;
	bool again = true;
	CK_RV rv;

	if (ident->cls == CKO_DATA)
		t[1] = t[2]; /* a data object: class and label */
find:
	rv = p11p_be_C_FindObjectsInit(&c->bc, c->bs, t, ident->cls == CKO_DATA ? 2 : 3);
	if (rv != CKR_OK)
		return rv;
	rv = p11p_be_C_FindObjects(&c->bc, c->bs, found, 2, &n);
	p11p_be_C_FindObjectsFinal(&c->bc, c->bs);
	/* Not there: a rename the member missed may be owed (ha/replicate.c). Once. */
	if (rv == CKR_OK && n == 0 && again) {
		again = false;
		if (p11p_hook_repl_settle_attrs(c))
			goto find;
	}
	if (rv == CKR_OK && n != 1)
		rv = CKR_OBJECT_HANDLE_INVALID;
	if (rv == CKR_OK)
		*out = found[0];
	return rv;
}

/*
 * Is obj's handle on member i still good: learnt since the member last lost
 * its handles (handle_gen)? Global lock held.
 */
static bool known_locked(const struct p11p_object *obj, size_t i)
{
	return obj->be[i] != 0 &&
	       obj->gen[i] == atomic_load_explicit(&obj->slot->head.members[i].handle_gen,
	                                           memory_order_relaxed);
}

/* Records bh as obj's handle on member i (its reverse entry is the caller's). */
static void learn_locked(struct p11p_object *obj, size_t i, CK_OBJECT_HANDLE bh)
{
	obj->be[i] = bh;
	obj->gen[i] = atomic_load(&obj->slot->head.members[i].handle_gen);
}

/* p11p_object_to_backend() (virt.h) from the tables, under the global lock. */
CK_RV p11p_object_to_backend_locking(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_RV invalid,
                                     CK_OBJECT_HANDLE *out)
{
	struct p11p_session *s = c->s;
	struct p11p_object *obj;
	struct p11p_identity ident;
	size_t member = s->head.member;
	bool refindable = false;
	CK_OBJECT_HANDLE bh;
	CK_RV rv = invalid;

	p11p_lock();
	obj = p11p_map_get(&c->st->objects, 0, h);
	if (obj != NULL && obj->slot == c->s->head.slot) {
		/* A handle from before the member lost its handles is found again when it can be.
		 */
		if (obj->be[member] != 0 && !known_locked(obj, member) && obj->ident != NULL &&
		    obj->token) {
			if (p11p_map_get(&c->st->objects_rev, rev_key(obj->slot, member),
			                 obj->be[member]) == obj)
				p11p_map_remove(&c->st->objects_rev, rev_key(obj->slot, member),
				                obj->be[member]);
			obj->be[member] = 0;
			p11p_objects_changed_locked();
		}
		if (obj->be[member] != 0) {
			*out = obj->be[member];
			c->mapped = h;
			c->mapped_bh = *out;
			rv = CKR_OK;
			/* Cached when current (a stale one is checked again each time, as here). */
			if (known_locked(obj, member)) {
				p11p_ocache_for(s, h, p11p_objects_gen());
				s->head.oc_bh = *out;
				s->head.oc_member = member;
				s->head.oc_hgen = obj->gen[member];
			}
		} else if (obj->ident != NULL && obj->token) {
			ident = *obj->ident;
			refindable = true;
		}
	}
	p11p_unlock();
	if (!refindable)
		return rv;

	/* A token object first used on this member (after a failover): find it here. */
	rv = refind(c, &ident, &bh);
	if (rv != CKR_OK)
		return p11p_rv_needs_failover(c->m, rv) ? rv : invalid;
	p11p_lock();
	obj = p11p_map_get(&c->st->objects, 0, h);
	if (obj != NULL && obj->be[member] == 0 &&
	    p11p_map_put(&c->st->objects_rev, rev_key(obj->slot, member), bh, obj) == 0)
		learn_locked(obj, member, bh);
	rv = obj != NULL && obj->be[member] != 0 ? CKR_OK : invalid;
	if (rv == CKR_OK) {
		*out = obj->be[member];
		c->mapped = h;
		c->mapped_bh = *out;
	}
	p11p_unlock();
	return rv;
}

bool p11p_object_forget_handle(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_OBJECT_HANDLE bh)
{
	size_t member = c->s->head.member;
	struct p11p_object *obj;
	bool forgot = false;

	p11p_lock();
	obj = p11p_map_get(&c->st->objects, 0, h);
	if (obj != NULL && obj->slot == c->s->head.slot && obj->ident != NULL && obj->token &&
	    obj->be[member] == bh) {
		if (p11p_map_get(&c->st->objects_rev, rev_key(obj->slot, member), bh) == obj)
			p11p_map_remove(&c->st->objects_rev, rev_key(obj->slot, member), bh);
		obj->be[member] = 0;
		p11p_objects_changed_locked();
		forgot = true;
	}
	p11p_unlock();
	if (forgot)
		p11p_debug(P11P_DBG_OBJECT,
		           "object 0x%lx: member '%s' dropped its handle: found again",
		           (unsigned long)h, c->s->head.slot->head.members[member].cfg->name);
	return forgot;
}

static void forget_member_cb(void *value, void *arg)
{
	struct p11p_object *obj = value;
	const struct p11p_object *key = arg; /* slot and member, in a template object */
	size_t member = (size_t)key->owner;

	if (obj->slot == key->slot)
		obj->be[member] = 0;
}

void p11p_objects_forget_member_locked(struct p11p_state *st, struct p11p_vslot *vs, size_t member)
{
	struct p11p_object key = {.slot = vs, .owner = member};
	struct p11p_map kept = {0};

	p11p_objects_changed_locked();
	p11p_map_each(&st->objects, forget_member_cb, &key);
	/* The reverse entries of that member go; the others are kept as they are. */
	for (size_t i = 0; i < st->objects_rev.cap; i++) {
		struct p11p_map_slot *e = &st->objects_rev.slots[i];

		if (e->value != NULL && e->a != rev_key(vs, member) &&
		    p11p_map_put(&kept, e->a, e->b, e->value) < 0) {
			/* No memory to rebuild: keep the old table; stale entries are harmless. */
			p11p_map_clear(&kept);
			return;
		}
	}
	p11p_map_clear(&st->objects_rev);
	st->objects_rev = kept;
}

/*
 * Marks obj as a key made copyable for replication, or not: in the HA room's
 * set (hook repl_unlocked_set), counted in st->n_repl_unlocked. Global lock
 * held. CKR_HOST_MEMORY: it could not be marked.
 */
static CK_RV set_repl_unlocked_locked(struct p11p_state *st, struct p11p_object *obj, bool on)
{
	bool changed = false;
	CK_RV rv;

	if (!on && atomic_load_explicit(&st->n_repl_unlocked, memory_order_relaxed) == 0)
		return CKR_OK;
	rv = p11p_hook_repl_unlocked_set_locked(st, obj->handle, on, &changed);
	if (changed)
		atomic_fetch_add_explicit(&st->n_repl_unlocked, on ? 1 : (unsigned long)-1,
		                          memory_order_relaxed);
	return rv;
}

static void object_drop_locked(struct p11p_state *st, struct p11p_object *obj)
{
	(void)set_repl_unlocked_locked(st, obj, false);
	p11p_objects_changed_locked();
	p11p_map_remove(&st->objects, 0, obj->handle);
	if (obj->ident != NULL &&
	    p11p_map_get(&st->objects_ident, obj->slot->head.id, ident_hash(obj->ident)) == obj)
		p11p_map_remove(&st->objects_ident, obj->slot->head.id, ident_hash(obj->ident));
	p11p_free(obj->ident);
	p11p_hook_vkey_object_free(&obj->vk);
	for (size_t i = 0; i < obj->slot->head.n_members; i++) {
		if (obj->be[i] != 0 &&
		    p11p_map_get(&st->objects_rev, rev_key(obj->slot, i), obj->be[i]) == obj)
			p11p_map_remove(&st->objects_rev, rev_key(obj->slot, i), obj->be[i]);
	}
	p11p_free(obj);
}

static int own_locked(struct p11p_session *s, CK_OBJECT_HANDLE h)
{
	if (s->n_owned == s->cap_owned) {
		size_t cap = s->cap_owned ? s->cap_owned * 2 : 8;
		CK_OBJECT_HANDLE *owned = p11p_reallocarray(s->owned, cap, sizeof(*owned));

		if (owned == NULL)
			return -1;
		s->owned = owned;
		s->cap_owned = cap;
	}
	s->owned[s->n_owned++] = h;
	return 0;
}

/* An existing proxy object for the same token object, not yet known on `member`. */
static struct p11p_object *match_identity_locked(struct p11p_state *st, struct p11p_vslot *vs,
                                                 const struct p11p_identity *id, size_t member)
{
	struct p11p_object *e = p11p_map_get(&st->objects_ident, vs->head.id, ident_hash(id));

	return e != NULL && !known_locked(e, member) && e->token && same_identity(e->ident, id)
	           ? e
	           : NULL;
}

/* A new proxy object for a member's object. Global lock held. */
static struct p11p_object *object_new_locked(struct p11p_state *st, struct p11p_vslot *vs,
                                             size_t member, CK_OBJECT_HANDLE bh,
                                             const struct p11p_identity *id, bool token)
{
	struct p11p_object *obj = p11p_calloc(1, sizeof(*obj));

	if (obj == NULL)
		return NULL;
	obj->slot = vs;
	obj->token = token;
	learn_locked(obj, member, bh);
	obj->handle = p11p_next_handle_locked(&st->next_object, P11P_OBJECT_BASE, &st->objects);
	if (id != NULL && (obj->ident = p11p_malloc(sizeof(*id))) == NULL) {
		p11p_free(obj);
		return NULL;
	}
	if (id != NULL)
		*obj->ident = *id;
	if (p11p_map_put(&st->objects, 0, obj->handle, obj) < 0) {
		p11p_free(obj->ident);
		p11p_free(obj);
		return NULL;
	}
	if (p11p_map_put(&st->objects_rev, rev_key(vs, member), bh, obj) < 0 ||
	    (id != NULL && token &&
	     p11p_map_get(&st->objects_ident, vs->head.id, ident_hash(id)) == NULL &&
	     p11p_map_put(&st->objects_ident, vs->head.id, ident_hash(id), obj) < 0)) {
		object_drop_locked(st, obj);
		return NULL;
	}
	return obj;
}

/*
 * p11p_object_from_backend() and p11p_object_found(). `found`: an identity the
 * member could not tell because it failed is that failure, and no object is made.
 */
static CK_RV object_map(struct p11p_call *c, CK_OBJECT_HANDLE bh, bool session_object, bool found,
                        CK_OBJECT_HANDLE *out)
{
	struct p11p_state *st = c->st;
	struct p11p_vslot *vs = c->s->head.slot;
	size_t member = c->s->head.member;
	struct p11p_identity id;
	struct p11p_object *obj;
	bool has_id = false, token = false, known;
	CK_RV rv = CKR_OK, read = CKR_OK;

	if (bh == CK_INVALID_HANDLE)
		return CKR_GENERAL_ERROR; /* a backend must not hand that out */
	p11p_lock();
	obj = p11p_map_get(&st->objects_rev, rev_key(vs, member), bh);
	if (obj != NULL && !session_object && known_locked(obj, member)) {
		/* Known already (every find after the first): one lookup, one lock. */
		*out = obj->handle;
		p11p_unlock();
		return CKR_OK;
	}
	known = obj != NULL && known_locked(obj, member);
	p11p_unlock();
	/* First sight, on a slot with several members: learn how to find it elsewhere. */
	if (!known && vs->head.n_members > 1)
		has_id = read_identity(c, bh, &id, &token, &read);
	/*
	 * A member failing between a find and this read: the object would be
	 * made without an identity, as a second object nothing finds again.
	 */
	if (found && !has_id && p11p_rv_needs_failover(c->m, read))
		return read;

	p11p_lock();
	obj = p11p_map_get(&st->objects_rev, rev_key(vs, member), bh);
	/*
	 * An entry from before the member lost its handles may name another
	 * object now: kept only when the object is the same one (its identity,
	 * when it has one to compare; objects of one-member slots have none).
	 */
	if (obj != NULL && !known_locked(obj, member)) {
		if (obj->be[member] == bh &&
		    (obj->ident == NULL ||
		     (has_id && obj->token && same_identity(obj->ident, &id)))) {
			learn_locked(obj, member, bh);
		} else {
			p11p_map_remove(&st->objects_rev, rev_key(vs, member), bh);
			if (obj->be[member] == bh) {
				obj->be[member] = 0;
				p11p_objects_changed_locked();
			}
			obj = NULL;
		}
	}
	if (obj == NULL && has_id)
		obj = match_identity_locked(st, vs, &id, member);
	if (obj != NULL && !known_locked(obj, member)) {
		/* The same token object, met again on this member after a failover. */
		if (obj->be[member] != 0 &&
		    p11p_map_get(&st->objects_rev, rev_key(vs, member), obj->be[member]) == obj)
			p11p_map_remove(&st->objects_rev, rev_key(vs, member), obj->be[member]);
		if (p11p_map_put(&st->objects_rev, rev_key(vs, member), bh, obj) < 0) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		learn_locked(obj, member, bh);
	}
	if (obj == NULL) {
		obj = object_new_locked(st, vs, member, bh, has_id ? &id : NULL, token);
		if (obj == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
	}
	/* A handle the backend reused for our new session object: ours now. */
	if (session_object && obj->owner != c->s->head.handle) {
		obj->owner = c->s->head.handle;
		if (own_locked(c->s, obj->handle) < 0) {
			object_drop_locked(st, obj);
			rv = CKR_HOST_MEMORY;
			goto out;
		}
	}
	*out = obj->handle;
out:
	p11p_unlock();
	return rv;
}

CK_RV p11p_object_from_backend(struct p11p_call *c, CK_OBJECT_HANDLE bh, bool session_object,
                               CK_OBJECT_HANDLE *out)
{
	return object_map(c, bh, session_object, false, out);
}

CK_RV p11p_object_found(struct p11p_call *c, CK_OBJECT_HANDLE bh, CK_OBJECT_HANDLE *out)
{
	return object_map(c, bh, false, true, out);
}

void p11p_objects_drop_owned_locked(struct p11p_state *st, struct p11p_session *s)
{
	for (size_t i = 0; i < s->n_owned; i++) {
		struct p11p_object *obj = p11p_map_get(&st->objects, 0, s->owned[i]);

		if (obj != NULL && obj->owner == s->head.handle)
			object_drop_locked(st, obj);
	}
	s->n_owned = 0;
	p11p_hook_local_drop_owned_locked(st, s); /* keys the session derived (local.c) */
}

static void object_forget(struct p11p_call *c, CK_OBJECT_HANDLE h)
{
	struct p11p_object *obj;

	p11p_lock();
	obj = p11p_map_get(&c->st->objects, 0, h);
	if (obj != NULL)
		object_drop_locked(c->st, obj);
	p11p_unlock();
}

/*
 * Maps a new backend object and hands its proxy handle out; if that fails
 * (no memory) the backend object is destroyed, so nothing is left behind
 * that the application cannot name.
 */
static CK_RV adopt_new(struct p11p_call *c, CK_OBJECT_HANDLE bh, bool session_object, size_t k,
                       CK_OBJECT_HANDLE *out)
{
	CK_RV rv = p11p_object_from_backend(c, bh, session_object, out);
	struct p11p_object *obj;

	if (rv != CKR_OK) {
		p11p_be_C_DestroyObject(&c->bc, c->bs, bh);
		return rv;
	}
	/* Its creator may still name it (CKA_ID, CKA_LABEL: vkey.c). */
	p11p_lock();
	obj = p11p_map_get(&c->st->objects, 0, *out);
	if (obj != NULL) {
		obj->created = true;
		/* Template k's key, made copyable for replication (failover.c). */
		rv = set_repl_unlocked_locked(
		    c->st, obj, session_object && k < 8 && (c->repl_lock & (1u << k)) != 0);
		if (rv != CKR_OK) {
			/* Not marked, it would show as extractable: not handed out. */
			object_drop_locked(c->st, obj);
			*out = CK_INVALID_HANDLE;
		}
	}
	p11p_unlock();
	if (rv != CKR_OK)
		p11p_be_C_DestroyObject(&c->bc, c->bs, bh);
	return rv;
}

/* Whether h is a session key made copyable for replication (repl_unlocked). */
static bool repl_unlocked(struct p11p_call *c, CK_OBJECT_HANDLE h)
{
	struct p11p_object *obj;
	bool yes;

	/*
	 * None (the usual case): no lock. Relaxed is enough: the application
	 * learnt h after the call that counted it returned.
	 */
	if (atomic_load_explicit(&c->st->n_repl_unlocked, memory_order_relaxed) == 0)
		return false;
	p11p_lock();
	obj = p11p_map_get(&c->st->objects, 0, h);
	yes = obj != NULL && p11p_hook_repl_unlocked_locked(c->st, h);
	p11p_unlock();
	return yes;
}

struct p11p_vkbind **p11p_object_vk_locked(struct p11p_state *st, CK_OBJECT_HANDLE h,
                                           const struct p11p_vslot *vs)
{
	struct p11p_object *obj = p11p_map_get(&st->objects, 0, h);

	return obj != NULL && (vs == NULL || obj->slot == vs) ? &obj->vk : NULL;
}

bool p11p_object_created_here(struct p11p_state *st, CK_OBJECT_HANDLE h)
{
	struct p11p_object *obj;
	bool yes;

	p11p_lock();
	obj = p11p_map_get(&st->objects, 0, h);
	yes = obj != NULL && obj->created;
	p11p_unlock();
	return yes;
}

static bool is_session_object(const CK_ATTRIBUTE *templ, CK_ULONG count)
{
	return !p11p_attr_bool(templ, count, CKA_TOKEN, false);
}

/*
 * New backend objects, replicated already: recorded as virtual keys. If that
 * fails they are destroyed (with their copies), so nothing is half-made.
 */
static CK_RV record_new(struct p11p_call *c, const CK_OBJECT_HANDLE *bh, size_t n)
{
	CK_RV rv = p11p_hook_vkey_created(c, bh, n);

	if (rv != CKR_OK)
		for (size_t i = 0; i < n; i++)
			p11p_be_C_DestroyObject(&c->bc, c->bs, bh[i]);
	return rv;
}

/* The permission operation k needs (the key model's: sign-recover needs sign...); 0: none. */
static unsigned op_perm(enum p11p_op_kind k)
{
	static const CK_FLAGS op_flag[P11P_OP_KINDS] = {
	    [P11P_OP_ENCRYPT] = CKF_ENCRYPT,
	    [P11P_OP_DECRYPT] = CKF_DECRYPT,
	    [P11P_OP_SIGN] = CKF_SIGN,
	    [P11P_OP_VERIFY] = CKF_VERIFY,
	    [P11P_OP_SIGN_RECOVER] = CKF_SIGN_RECOVER,
	    [P11P_OP_VERIFY_RECOVER] = CKF_VERIFY_RECOVER,
	};

	return (unsigned)k < P11P_OP_KINDS ? p11p_vk_op_perm(op_flag[k]) : 0;
}

/*
 * The virtual key's verdict on using key for perm. Reading a key's identity
 * the first time asks the member: when that fails over, it is asked again on
 * the member the session moved to (never skipped: the check must happen).
 */
static CK_RV vkey_check(struct p11p_call *c, CK_OBJECT_HANDLE key, unsigned perm)
{
	CK_RV rv = p11p_hook_vkey_use(c, key, perm);

	while (rv != CKR_OK && p11p_hook_call_retry(c, &rv, true))
		rv = p11p_hook_vkey_use(c, key, perm);
	return rv;
}

bool p11p_key_gate(struct p11p_call *c, enum p11p_op_kind k, CK_MECHANISM_PTR m,
                   CK_OBJECT_HANDLE key, CK_RV *rv)
{
	if (key == CK_INVALID_HANDLE)
		return false;
	if (c->s->head.local != NULL && p11p_hook_local_active(c->s, k)) {
		*rv = CKR_OPERATION_ACTIVE;
		return true;
	}
	if (p11p_local_handle(key)) {
		*rv = p11p_hook_local_init(c, k, m, key);
		return true;
	}
	/* Without virtual keys there is nothing to check (p11p_hook_vkey_use() answers CKR_OK). */
	*rv =
	    c->st->head.vkeys != NULL && op_perm(k) != 0 ? vkey_check(c, key, op_perm(k)) : CKR_OK;
	return *rv != CKR_OK;
}

CK_RV p11p_get_attribute_value(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR templ,
                               CK_ULONG count)
{
	CK_OBJECT_HANDLE bobj;
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (templ == NULL && count > 0)
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	if (p11p_local_handle(obj))
		return p11p_call_end(&c, p11p_hook_local_get_attrs(&c, obj, templ, count));
	do {
		rv = p11p_object_to_backend(&c, obj, CKR_OBJECT_HANDLE_INVALID, &bobj);
		if (rv == CKR_OK)
			rv = p11p_be_C_GetAttributeValue(&c.bc, c.bs, bobj, templ, count);
	} while (rv != CKR_OK && p11p_hook_call_retry(&c, &rv, true));
	/* A session key made copyable for replication shows as it was asked. */
	if (repl_unlocked(&c, obj))
		for (CK_ULONG i = 0; i < count; i++)
			if (templ[i].type == CKA_EXTRACTABLE && templ[i].pValue != NULL &&
			    templ[i].ulValueLen == sizeof(CK_BBOOL))
				*(CK_BBOOL *)templ[i].pValue = CK_FALSE;
	if (c.st->head.vkeys != NULL)
		p11p_hook_vkey_attrs_out(&c, obj, templ, count, &rv);
	return p11p_call_end(&c, rv);
}

bool p11p_object_identity(struct p11p_call *c, CK_OBJECT_HANDLE h, struct p11p_identity *out)
{
	struct p11p_object *o;
	bool ok = false;

	p11p_lock();
	o = p11p_map_get(&c->st->objects, 0, h);
	if (o != NULL && o->slot == c->s->head.slot && o->ident != NULL && o->token &&
	    c->s->head.slot->head.n_members > 1) {
		*out = *o->ident;
		ok = true;
	}
	p11p_unlock();
	return ok;
}

void p11p_object_changed(struct p11p_call *c, CK_OBJECT_HANDLE h, const struct p11p_identity *old,
                         CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	const CK_ATTRIBUTE *id = p11p_attr_find(templ, count, CKA_ID);
	const CK_ATTRIBUTE *label = p11p_attr_find(templ, count, CKA_LABEL);
	struct p11p_object *o;

	p11p_hook_repl_changed(c, old, templ, count);
	if (id == NULL && label == NULL)
		return;
	p11p_lock();
	o = p11p_map_get(&c->st->objects, 0, h);
	if (o != NULL && o->ident != NULL) {
		struct p11p_identity *ident = o->ident;

		if (p11p_map_get(&c->st->objects_ident, o->slot->head.id, ident_hash(ident)) == o)
			p11p_map_remove(&c->st->objects_ident, o->slot->head.id, ident_hash(ident));
		if ((id != NULL && (id->pValue == NULL || id->ulValueLen > sizeof(ident->id))) ||
		    (label != NULL &&
		     (label->pValue == NULL || label->ulValueLen > sizeof(ident->label)))) {
			/* Too long to find it by: it stays on the member it is known on. */
			p11p_free(ident);
			o->ident = NULL;
		} else {
			if (id != NULL) {
				memcpy(ident->id, id->pValue, id->ulValueLen);
				ident->id_len = id->ulValueLen;
			}
			if (label != NULL) {
				memcpy(ident->label, label->pValue, label->ulValueLen);
				ident->label_len = label->ulValueLen;
			}
			if (p11p_map_get(&c->st->objects_ident, o->slot->head.id,
			                 ident_hash(ident)) == NULL)
				(void)p11p_map_put(&c->st->objects_ident, o->slot->head.id,
				                   ident_hash(ident), o);
		}
	}
	p11p_unlock();
}

CK_RV p11p_set_attribute_value(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR templ,
                               CK_ULONG count)
{
	struct p11p_identity old;
	bool copied;
	CK_OBJECT_HANDLE bobj;
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (templ == NULL && count > 0)
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	if (p11p_local_handle(obj))
		return p11p_call_end(&c, p11p_hook_local_set_attrs(&c, obj, templ, count));
	if (p11p_hook_vkey_set(&c, obj, templ, count, &rv))
		return p11p_call_end(&c, rv);
	/*
	 * Setting the same values again is harmless: after a failover the change
	 * is made on the member the session moved to (the failed member's copy
	 * may or may not have it: p11proxy(7)).
	 */
	copied = p11p_object_identity(&c, obj, &old);
	do {
		rv = p11p_object_to_backend(&c, obj, CKR_OBJECT_HANDLE_INVALID, &bobj);
		if (rv == CKR_OK)
			rv = p11p_be_C_SetAttributeValue(&c.bc, c.bs, bobj, templ, count);
	} while (p11p_hook_call_retry(&c, &rv, true));
	if (rv == CKR_OK && copied)
		p11p_object_changed(&c, obj, &old, templ, count);
	return p11p_call_end(&c, rv);
}

/*
 * A find naming CKA_EXTRACTABLE on a slot that replicates, while the process
 * has a session key made copyable for replication (repl_unlocked: extractable
 * on the member, shown false): the member's find goes without it and the
 * proxy matches what C_GetAttributeValue shows (find_extr). *btempl: the
 * template the member gets (a copy when changed: freed by the caller when
 * it is not orig).
 */
static CK_RV extr_find_init(struct p11p_call *c, CK_ATTRIBUTE *orig, CK_ATTRIBUTE **btempl,
                            CK_ULONG *bcount)
{
	const struct p11p_vslot *vs = c->s->head.slot;
	CK_ATTRIBUTE *t = *btempl, *out;
	CK_ULONG at = *bcount, j = 0;

	c->s->find_extr = 0;
	/* None in the process now: the member's find answers as the proxy would. */
	if (vs->head.n_members < 2 || vs->head.cfg->ha.replication != P11P_REPL_WRAP ||
	    atomic_load_explicit(&c->st->n_repl_unlocked, memory_order_relaxed) == 0)
		return CKR_OK;
	for (CK_ULONG i = 0; i < *bcount; i++)
		if (t[i].type == CKA_EXTRACTABLE && t[i].pValue != NULL &&
		    t[i].ulValueLen == sizeof(CK_BBOOL))
			at = i;
	if (at == *bcount)
		return CKR_OK;
	out = p11p_reallocarray(NULL, *bcount, sizeof(*out));
	if (out == NULL)
		return CKR_HOST_MEMORY;
	for (CK_ULONG i = 0; i < *bcount; i++)
		if (t[i].type != CKA_EXTRACTABLE)
			out[j++] = t[i];
	c->s->find_extr = *(const CK_BBOOL *)t[at].pValue != CK_FALSE ? 2 : 1;
	if (t != orig)
		p11p_free(t);
	*btempl = out;
	*bcount = j;
	return CKR_OK;
}

/* Does found object ph (backend bh) show the CKA_EXTRACTABLE the running find wants? */
static bool extr_matches(struct p11p_call *c, CK_OBJECT_HANDLE ph, CK_OBJECT_HANDLE bh)
{
	CK_BBOOL v = 9;
	CK_ATTRIBUTE a = {CKA_EXTRACTABLE, &v, sizeof(v)};

	if (c->s->find_extr == 0)
		return true;
	if (repl_unlocked(c, ph))
		v = CK_FALSE;
	else if (p11p_be_C_GetAttributeValue(&c->bc, c->bs, bh, &a, 1) != CKR_OK ||
	         a.ulValueLen != sizeof(v))
		return false; /* no such attribute: the member's find would not match it */
	return (v != CK_FALSE) == (c->s->find_extr == 2);
}

CK_RV p11p_find_objects_init(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	CK_ATTRIBUTE *btempl = templ;
	CK_ULONG bcount = count;
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (templ == NULL && count > 0)
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	/*
	 * Virtual permissions in the template are matched here, not by the
	 * member (whose keys carry the HSM's): the member's find goes without them.
	 */
	rv = p11p_hook_vkey_find_init(&c, templ, count, &btempl, &bcount);
	if (rv != CKR_OK)
		return p11p_call_end(&c, rv);
	rv = extr_find_init(&c, templ, &btempl, &bcount);
	if (rv != CKR_OK)
		return p11p_call_end(&c, rv);
	do {
		rv = p11p_be_C_FindObjectsInit(&c.bc, c.bs, btempl, bcount);
	} while (p11p_hook_call_retry(&c, &rv, true));
	if (rv == CKR_OK)
		rv = p11p_hook_local_find_init(&c, templ, count);
	if (rv == CKR_OK)
		p11p_op_begin_find(&c, btempl, bcount); /* a replay repeats the member's find */
	else if (rv != CKR_OPERATION_ACTIVE)
		p11p_be_C_FindObjectsFinal(&c.bc, c.bs);
	if (btempl != templ)
		p11p_free(btempl);
	return p11p_call_end(&c, rv);
}

CK_RV p11p_find_objects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max,
                        CK_ULONG_PTR count)
{
	CK_OBJECT_HANDLE buf[FIND_CHUNK], phs[FIND_CHUNK];
	CK_ULONG total = 0;
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (out == NULL || count == NULL)
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	if (p11p_op_lost(&c, P11P_OP_FIND))
		return p11p_call_end(&c, CKR_DEVICE_ERROR);
	/* Objects the proxy holds itself come first. */
	total = p11p_hook_local_find_next(&c, out, max);
	/* Fill up to max through a bounded buffer: the backend never writes to `out`. */
	while (total < max) {
		CK_ULONG want = max - total < FIND_CHUNK ? max - total : FIND_CHUNK;
		CK_ULONG got = 0;

		rv = p11p_be_C_FindObjects(&c.bc, c.bs, buf, want, &got);
		if (p11p_hook_call_retry(&c, &rv, true))
			continue; /* the find was started again on another member */
		if (rv == CKR_OK && got > want)
			rv = CKR_GENERAL_ERROR;
		for (CK_ULONG i = 0; rv == CKR_OK && i < got; i++)
			rv = p11p_object_found(&c, buf[i], &phs[i]);
		/* Keys met for the first time are bound to (or imported into) the index. */
		if (rv == CKR_OK)
			rv = p11p_hook_vkey_find_chunk(&c, phs, got);
		/* The member failed while its objects were read: on the next one. */
		if (rv != CKR_OK && p11p_hook_call_retry(&c, &rv, true))
			continue;
		for (CK_ULONG i = 0; rv == CKR_OK && i < got; i++) {
			CK_OBJECT_HANDLE ph = phs[i];

			/* After a failover the find runs again: skip what was handed out. */
			if (!p11p_op_was_found(&c, ph) && !p11p_hook_vkey_hidden(&c, ph) &&
			    extr_matches(&c, ph, buf[i])) {
				out[total++] = ph;
				p11p_op_found(&c, ph);
			}
		}
		if (rv != CKR_OK || got < want)
			break;
	}
	*count = rv == CKR_OK ? total : 0;
	return p11p_call_end(&c, rv);
}

CK_RV p11p_create_object(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                         CK_OBJECT_HANDLE_PTR out)
{
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (out == NULL || (templ == NULL && count > 0))
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	if (p11p_hook_local_software(&c, NULL, templ, count)) /* a software key (soft/) */
		return p11p_call_end(&c, p11p_hook_local_create(&c, NULL, templ, count, out));
	return p11p_call_end(&c, p11p_object_create_in(&c, templ, count, out));
}

CK_RV p11p_object_create_in(struct p11p_call *c, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                            CK_OBJECT_HANDLE_PTR out)
{
	static const CK_OBJECT_CLASS data = CKO_DATA;
	CK_OBJECT_HANDLE bh = CK_INVALID_HANDLE;
	struct p11p_creation cr;
	CK_RV rv;

	p11p_hook_creation_begin(c, &cr, 1, &data, &templ, &count);
	do
		rv = p11p_be_C_CreateObject(&c->bc, c->bs, templ, count, &bh);
	while (p11p_hook_creation_retry(c, &cr, &rv, &bh));
	if (rv == CKR_OK)
		rv = p11p_hook_repl_new_keys(c, &bh, 1); /* a token key: onto the other members */
	if (rv == CKR_OK)
		rv = record_new(c, &bh, 1);
	if (rv == CKR_OK)
		rv = adopt_new(c, bh, is_session_object(templ, count), 0, out);
	return rv;
}

/* CKA_EXTRACTABLE false on session key h (backend bh), copied to the token (p11p_copy_object). */
static void lock_original(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_OBJECT_HANDLE bh)
{
	static const CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE a = {CKA_EXTRACTABLE, (void *)(uintptr_t)&no, sizeof(no)};
	CK_RV rv = p11p_be_C_SetAttributeValue(&c->bc, c->bs, bh, &a, 1);
	struct p11p_object *obj;

	if (rv != CKR_OK) {
		p11p_message("slot '%s': a session key copied to the token could not be made "
		             "non-extractable: %s",
		             c->s->head.slot->head.label, p11p_rv_str(rv));
		return;
	}
	p11p_lock();
	obj = p11p_map_get(&c->st->objects, 0, h);
	if (obj != NULL)
		(void)set_repl_unlocked_locked(c->st, obj, false);
	p11p_unlock();
}

CK_RV p11p_copy_object(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR templ,
                       CK_ULONG count, CK_OBJECT_HANDLE_PTR out)
{
	CK_OBJECT_HANDLE bobj, bh = CK_INVALID_HANDLE;
	CK_BBOOL token = CK_FALSE;
	CK_ATTRIBUTE query = {CKA_TOKEN, &token, sizeof(token)};
	CK_ATTRIBUTE rt[P11P_CREATION_MAX_ATTRS];
	CK_ULONG n_rt = 0;
	struct p11p_call c;
	bool unlocked;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (out == NULL || (templ == NULL && count > 0))
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	if (p11p_local_handle(obj)) /* a key the proxy holds stays one key */
		return p11p_call_end(&c, CKR_ACTION_PROHIBITED);
	/*
	 * A session key made copyable for replication (adopt_new): the copy is
	 * as copyable (its asked CKA_EXTRACTABLE false dropped), replicated and
	 * locked like a new token key (c.repl_lock); it cannot become extractable.
	 */
	unlocked = repl_unlocked(&c, obj);
	if (unlocked) {
		if (p11p_attr_bool(templ, count, CKA_EXTRACTABLE, false))
			return p11p_call_end(&c, CKR_ATTRIBUTE_READ_ONLY);
		if (count > P11P_CREATION_MAX_ATTRS)
			return p11p_call_end(&c, CKR_TEMPLATE_INCONSISTENT);
		for (CK_ULONG i = 0; i < count; i++)
			if (templ[i].type != CKA_EXTRACTABLE &&
			    templ[i].type != CKA_WRAP_WITH_TRUSTED)
				rt[n_rt++] = templ[i];
		templ = rt;
		count = n_rt;
	}
	/* A copy would be a new key: not of a deleted or deactivated virtual key. */
	rv = vkey_check(&c, obj, 0);
	if (rv == CKR_KEY_HANDLE_INVALID)
		rv = CKR_OBJECT_HANDLE_INVALID;
	if (rv == CKR_OK)
		rv = p11p_object_to_backend(&c, obj, CKR_OBJECT_HANDLE_INVALID, &bobj);
	if (rv == CKR_OK)
		rv = p11p_be_C_CopyObject(&c.bc, c.bs, bobj, templ, count, &bh);
	p11p_hook_call_retry(&c, &rv, false);
	if (rv == CKR_OK) {
		/* The copy is a token object if the template or the original says so. */
		if (p11p_be_C_GetAttributeValue(&c.bc, c.bs, bh, &query, 1) != CKR_OK)
			token = CK_TRUE; /* unknown: keep the handle for the whole run */
		c.repl_lock = unlocked ? 1 : 0;
		rv = p11p_hook_repl_new_keys(&c, &bh, 1);
		if (rv == CKR_OK) {
			rv = p11p_hook_vkey_copied(&c, obj, bh);
			if (rv != CKR_OK)
				p11p_be_C_DestroyObject(&c.bc, c.bs, bh);
		}
		if (rv == CKR_OK)
			rv = adopt_new(&c, bh, token == CK_FALSE, 0, out);
		/* On the token now: the session original is locked too. */
		if (rv == CKR_OK && unlocked && token != CK_FALSE)
			lock_original(&c, obj, bobj);
	}
	return p11p_call_end(&c, rv);
}

CK_RV p11p_destroy_object(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj)
{
	CK_OBJECT_HANDLE bobj;
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	struct p11p_identity ident;
	struct p11p_object *o;
	bool replicated = false;
	uint64_t vid = 0;

	if (p11p_local_handle(obj))
		return p11p_call_end(&c, p11p_hook_local_destroy(&c, obj));
	if (p11p_hook_vkey_destroy(&c, obj, &rv, &vid))
		return p11p_call_end(&c, rv);
	p11p_lock();
	o = p11p_map_get(&c.st->objects, 0, obj);
	if (o != NULL && o->slot == c.s->head.slot && o->ident != NULL && o->token) {
		ident = *o->ident;
		replicated = c.s->head.slot->head.n_members > 1;
	}
	p11p_unlock();
	rv = p11p_object_to_backend(&c, obj, CKR_OBJECT_HANDLE_INVALID, &bobj);
	if (rv == CKR_OK)
		rv = p11p_be_C_DestroyObject(&c.bc, c.bs, bobj);
	/*
	 * The member failed: whether it destroyed the object is unknown, but the
	 * application wants it gone everywhere, so it goes on the member the
	 * session moved to too; not there (a session object of the failed
	 * member, or never copied): nothing is left to destroy.
	 */
	while (p11p_hook_call_retry(&c, &rv, true)) {
		rv = p11p_object_to_backend(&c, obj, CKR_OBJECT_HANDLE_INVALID, &bobj);
		if (rv == CKR_OK)
			rv = p11p_be_C_DestroyObject(&c.bc, c.bs, bobj);
		else if (rv == CKR_OBJECT_HANDLE_INVALID)
			rv = CKR_OK;
	}
	if (rv == CKR_OK) {
		object_forget(&c, obj);
		/* Its copies go too, or a failover would bring the key back. */
		if (replicated)
			p11p_hook_repl_destroyed(&c, &ident);
		/* write_back: the HSM key is gone, and its virtual key with it. */
		p11p_hook_vkey_destroyed(&c, vid);
	}
	return p11p_call_end(&c, rv);
}

CK_RV p11p_generate_key(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR templ,
                        CK_ULONG count, CK_OBJECT_HANDLE_PTR out)
{
	static const CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
	struct p11p_creation cr;
	CK_OBJECT_HANDLE bh = CK_INVALID_HANDLE;
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (mech == NULL || out == NULL || (templ == NULL && count > 0))
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	if (p11p_hook_local_mechanism(mech->mechanism))
		return p11p_call_end(&c, p11p_hook_local_generate_key(&c, mech, templ, count, out));
	if (p11p_hook_local_software(&c, mech, templ, count)) /* a software key (soft/) */
		return p11p_call_end(&c, p11p_hook_local_create(&c, mech, templ, count, out));
	p11p_hook_creation_begin(&c, &cr, 1, &secret, &templ, &count);
	do
		rv = p11p_be_C_GenerateKey(&c.bc, c.bs, mech, templ, count, &bh);
	while (p11p_hook_creation_retry(&c, &cr, &rv, &bh));
	if (rv == CKR_OK)
		rv = p11p_hook_repl_new_keys(&c, &bh, 1);
	if (rv == CKR_OK)
		rv = record_new(&c, &bh, 1);
	if (rv == CKR_OK)
		rv = adopt_new(&c, bh, is_session_object(templ, count), 0, out);
	return p11p_call_end(&c, rv);
}

CK_RV p11p_generate_key_pair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub,
                             CK_ULONG pub_count, CK_ATTRIBUTE_PTR priv, CK_ULONG priv_count,
                             CK_OBJECT_HANDLE_PTR pub_out, CK_OBJECT_HANDLE_PTR priv_out)
{
	static const CK_OBJECT_CLASS classes[2] = {CKO_PUBLIC_KEY, CKO_PRIVATE_KEY};
	CK_ATTRIBUTE_PTR templs[2] = {pub, priv};
	CK_ULONG counts[2] = {pub_count, priv_count};
	CK_OBJECT_HANDLE bpub = CK_INVALID_HANDLE, bpriv = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE pair[2] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE};
	struct p11p_creation cr;
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (mech == NULL || pub_out == NULL || priv_out == NULL || (pub == NULL && pub_count > 0) ||
	    (priv == NULL && priv_count > 0))
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	if (p11p_hook_local_software(&c, mech, priv, priv_count)) /* a software key pair (soft/) */
		return p11p_call_end(&c,
		                     p11p_hook_local_create_pair(&c, mech, pub, pub_count, priv,
		                                                 priv_count, pub_out, priv_out));
	p11p_hook_creation_begin(&c, &cr, 2, classes, templs, counts);
	do
		/* The templates as the HA room may have rewritten them (replication). */
		rv = p11p_be_C_GenerateKeyPair(&c.bc, c.bs, mech, templs[0], counts[0], templs[1],
		                               counts[1], &pair[0], &pair[1]);
	while (p11p_hook_creation_retry(&c, &cr, &rv, pair));
	bpub = pair[0];
	bpriv = pair[1];
	if (rv == CKR_OK) {
		rv = p11p_hook_repl_new_keys(&c, pair, 2); /* refused: both are destroyed */
		if (rv == CKR_OK)
			rv = record_new(&c, pair, 2);
	}
	if (rv != CKR_OK)
		return p11p_call_end(&c, rv);
	rv = adopt_new(&c, bpub, is_session_object(pub, pub_count), 0, pub_out);
	if (rv != CKR_OK) {
		p11p_be_C_DestroyObject(&c.bc, c.bs, bpriv);
		return p11p_call_end(&c, rv);
	}
	rv = adopt_new(&c, bpriv, is_session_object(priv, priv_count), 1, priv_out);
	if (rv != CKR_OK) {
		p11p_be_C_DestroyObject(&c.bc, c.bs, bpub);
		object_forget(&c, *pub_out);
	}
	return p11p_call_end(&c, rv);
}

CK_RV p11p_wrap_key(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wrapping,
                    CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	CK_OBJECT_HANDLE bwrapping, bkey;
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (mech == NULL || out_len == NULL)
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	/* Keys the proxy holds never leave it wrapped, nor wrap HSM keys. */
	if (p11p_local_handle(wrapping))
		return p11p_call_end(&c, CKR_WRAPPING_KEY_TYPE_INCONSISTENT);
	if (p11p_local_handle(key))
		return p11p_call_end(&c, CKR_KEY_NOT_WRAPPABLE);
	/* Copyable for replication only (under the trusted replication key): as asked. */
	if (repl_unlocked(&c, key))
		return p11p_call_end(&c, CKR_KEY_UNEXTRACTABLE);
	rv = vkey_check(&c, wrapping, P11P_VK_WRAP);
	if (rv == CKR_KEY_HANDLE_INVALID)
		rv = CKR_WRAPPING_KEY_HANDLE_INVALID;
	if (rv == CKR_OK)
		rv = vkey_check(&c, key, 0); /* the wrapped key leaves: not a deleted one */
	if (rv != CKR_OK)
		return p11p_call_end(&c, rv);
	do {
		rv = p11p_object_to_backend(&c, wrapping, CKR_WRAPPING_KEY_HANDLE_INVALID,
		                            &bwrapping);
		if (rv == CKR_OK)
			rv = p11p_object_to_backend(&c, key, CKR_KEY_HANDLE_INVALID, &bkey);
		if (rv == CKR_OK)
			rv = p11p_be_C_WrapKey(&c.bc, c.bs, mech, bwrapping, bkey, out, out_len);
	} while (p11p_hook_call_retry(&c, &rv, true));
	return p11p_call_end(&c, rv);
}

CK_RV p11p_unwrap_key(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE unwrapping,
                      CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR templ,
                      CK_ULONG count, CK_OBJECT_HANDLE_PTR out)
{
	static const CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
	CK_OBJECT_HANDLE bunwrapping, bh = CK_INVALID_HANDLE;
	struct p11p_creation cr;
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (mech == NULL || out == NULL || (wrapped == NULL && wrapped_len > 0) ||
	    (templ == NULL && count > 0))
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	if (p11p_local_handle(unwrapping))
		return p11p_call_end(&c, CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT);
	rv = vkey_check(&c, unwrapping, P11P_VK_UNWRAP);
	if (rv == CKR_KEY_HANDLE_INVALID)
		rv = CKR_UNWRAPPING_KEY_HANDLE_INVALID;
	if (rv != CKR_OK)
		return p11p_call_end(&c, rv);
	if (p11p_hook_local_software(&c, NULL, templ, count)) /* a software key (soft/) */
		return p11p_call_end(&c, p11p_hook_local_unwrap(&c, mech, unwrapping, wrapped,
		                                                wrapped_len, templ, count, out));
	p11p_hook_creation_begin(&c, &cr, 1, &secret, &templ, &count);
	do {
		/* Mapped on each try: after a failover the unwrapping key is the new member's. */
		rv = p11p_object_to_backend(&c, unwrapping, CKR_UNWRAPPING_KEY_HANDLE_INVALID,
		                            &bunwrapping);
		if (rv == CKR_OK)
			rv = p11p_be_C_UnwrapKey(&c.bc, c.bs, mech, bunwrapping, wrapped,
			                         wrapped_len, templ, count, &bh);
	} while (p11p_hook_creation_retry(&c, &cr, &rv, &bh));
	if (rv == CKR_OK)
		rv = p11p_hook_repl_new_keys(&c, &bh, 1);
	if (rv == CKR_OK)
		rv = record_new(&c, &bh, 1);
	if (rv == CKR_OK)
		rv = adopt_new(&c, bh, is_session_object(templ, count), 0, out);
	return p11p_call_end(&c, rv);
}

/*
 * TLS key-material mechanisms return backend object handles inside their
 * parameters; p11proxy does not virtualize those, so it refuses them rather
 * than let a backend handle reach the application.
 */
static bool returns_key_material(CK_MECHANISM_TYPE type)
{
	return type == CKM_SSL3_KEY_AND_MAC_DERIVE || type == CKM_TLS_KEY_AND_MAC_DERIVE ||
	       type == CKM_TLS12_KEY_AND_MAC_DERIVE || type == CKM_WTLS_CLIENT_KEY_AND_MAC_DERIVE ||
	       type == CKM_WTLS_SERVER_KEY_AND_MAC_DERIVE;
}

CK_RV p11p_derive_key(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base,
                      CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR out)
{
	static const CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
	CK_OBJECT_HANDLE bbase, bother, bh = CK_INVALID_HANDLE;
	struct p11p_creation cr;
	CK_MECHANISM m;
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (mech == NULL || out == NULL || (templ == NULL && count > 0))
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	if (returns_key_material(mech->mechanism))
		return p11p_call_end(&c, CKR_MECHANISM_INVALID);
	rv = vkey_check(&c, base, P11P_VK_DERIVE);
	if (rv != CKR_OK)
		return p11p_call_end(&c, rv);
	if (p11p_hook_local_mechanism(mech->mechanism) || p11p_local_handle(base))
		return p11p_call_end(&c, p11p_hook_local_derive(&c, mech, base, templ, count, out));
	m = *mech;
	/* CKM_CONCATENATE_BASE_AND_KEY: the parameter is the other key's handle: the member's. */
	if (mech->mechanism == CKM_CONCATENATE_BASE_AND_KEY) {
		if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(CK_OBJECT_HANDLE))
			return p11p_call_end(&c, CKR_MECHANISM_PARAM_INVALID);
		/* Its material goes into the new key as much as the base key's. */
		rv = vkey_check(&c, *(CK_OBJECT_HANDLE *)mech->pParameter, P11P_VK_DERIVE);
		if (rv != CKR_OK)
			return p11p_call_end(&c, rv);
	}
	p11p_hook_creation_begin(&c, &cr, 1, &secret, &templ, &count);
	do {
		/* Mapped on each try: after a failover the keys are the new member's. */
		rv = p11p_object_to_backend(&c, base, CKR_KEY_HANDLE_INVALID, &bbase);
		if (rv == CKR_OK && mech->mechanism == CKM_CONCATENATE_BASE_AND_KEY) {
			rv = p11p_object_to_backend(&c, *(CK_OBJECT_HANDLE *)mech->pParameter,
			                            CKR_KEY_HANDLE_INVALID, &bother);
			m.pParameter = &bother;
		}
		if (rv == CKR_OK)
			rv = p11p_be_C_DeriveKey(&c.bc, c.bs, &m, bbase, templ, count, &bh);
	} while (p11p_hook_creation_retry(&c, &cr, &rv, &bh));
	if (rv == CKR_OK)
		rv = p11p_hook_repl_new_keys(&c, &bh, 1);
	if (rv == CKR_OK)
		rv = record_new(&c, &bh, 1);
	if (rv == CKR_OK)
		rv = adopt_new(&c, bh, is_session_object(templ, count), 0, out);
	return p11p_call_end(&c, rv);
}

CK_RV p11p_set_operation_state(CK_SESSION_HANDLE h, CK_BYTE_PTR state, CK_ULONG len,
                               CK_OBJECT_HANDLE enc_key, CK_OBJECT_HANDLE auth_key)
{
	CK_OBJECT_HANDLE benc = CK_INVALID_HANDLE, bauth = CK_INVALID_HANDLE;
	struct p11p_call c;
	CK_RV rv = p11p_call_begin(h, &c);

	if (rv != CKR_OK)
		return rv;
	if (state == NULL)
		return p11p_call_end(&c, CKR_ARGUMENTS_BAD);
	if (enc_key != CK_INVALID_HANDLE)
		rv = p11p_object_to_backend(&c, enc_key, CKR_KEY_HANDLE_INVALID, &benc);
	if (rv == CKR_OK && auth_key != CK_INVALID_HANDLE)
		rv = p11p_object_to_backend(&c, auth_key, CKR_KEY_HANDLE_INVALID, &bauth);
	if (rv == CKR_OK)
		rv = p11p_be_C_SetOperationState(&c.bc, c.bs, state, len, benc, bauth);
	c.s->be_dirty = true; /* operations the proxy does not know of: never pooled (session.c) */
	/* A saved state belongs to the member that saved it: not repeated elsewhere. */
	p11p_hook_call_retry(&c, &rv, false);
	return p11p_call_end(&c, rv);
}
