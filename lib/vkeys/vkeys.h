/*
 * The virtual-key room in the module: virtual keys over the index, enforced,
 * and the key-management policy; the rules are the key model's
 * (keymodel/model.h). It plugs into the core through hooks (virt/virt.h).
 */
#ifndef P11P_VKEYS_H
#define P11P_VKEYS_H

#include "virt/virt.h"
#include "keymodel/model.h"
#include "vkeys/policy.h"

/* Sets the virtual-key hooks of the core (at C_Initialize). */
void p11p_vkeys_register(void);

/*
 * --- policy.c in the module: a slot's key-management policy ---
 * The config's `policy:`, unless `p11proxy policy set` wrote an overlay,
 * "<state_dir>/slots/<LABEL>.policy", which wins (the file: vkeys/policy.h;
 * what the policy decides: vkeys/model.h). Running processes follow an
 * overlay within P11P_POLICY_CHECK_MS.
 */
#define P11P_POLICY_CHECK_MS 1000UL
/* In the module: the slot's policy now. No lock held. */
void p11p_policy_get(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_policy_cfg *out);
/*
 * The virtual-key room's data in a slot (p11p_vhead(vs)->vk): the policy as last read,
 * guarded by the global lock. Made for every slot by p11p_vkey_state_init()
 * (virtual keys on or off: the policy is the config's then) and freed by
 * p11p_vkey_state_free(), with the state (in a forked child too).
 */
struct p11p_vk_slot {
	struct p11p_policy_cfg policy;          /* as last read: the overlay's, else the config's */
	bool policy_loaded;                     /* policy has been read once */
	bool policy_busy;                       /* a thread is checking the overlay */
	unsigned long long policy_next_ms;      /* when the overlay is next checked (monotonic) */
	struct p11p_overlay_stamp policy_stamp; /* what identifies the overlay version read */
	uint64_t policy_version;                /* with a store: the overlay's version read */
};

/* --- vkey.c: virtual keys over the index (issue 4) --- */
/*
 * Running processes pick up other processes' index changes (the CLI's
 * `keys deny`, `keys deactivate`...) by refreshing the index (SQLite's
 * `PRAGMA data_version`, or the PostgreSQL notices received, when nothing
 * changed: a few microseconds) this often. Half the 100 ms promised
 * (p11proxy(7)), so that the refresh itself (0.1 to 1 ms for one change,
 * bench_index) and a late wake-up of the probe thread fit in the rest.
 */
#define P11P_VKEY_REFRESH_MS 50ULL
/*
 * Opens the index the config names (C_Initialize): `index:` must open; the
 * default "<state_dir>/keys.db" is used when state_dir is a directory
 * (and must open then); otherwise virtual keys are off (p11p_sthead(st)->vkeys NULL).
 * Messages go to p11p_message; failure: CKR_GENERAL_ERROR.
 */
CK_RV p11p_vkey_state_init(struct p11p_state *st);
/*
 * Picks up other processes' changes to the store when due (every
 * P11P_VKEY_REFRESH_MS), from the probe thread, so that calls need not:
 * when the first poll has run, a call refreshes only if the poller is a
 * period late. Returns when the next poll is due (monotonic ms).
 */
unsigned long long p11p_vkeys_poll(struct p11p_state *st);
void p11p_vkey_state_free(struct p11p_state *st);
/*
 * The store this process opened (thread-safe, index/index.h), or NULL when
 * virtual keys are off: the HA room records replication debts in it, and the
 * overlays live there (without it they are files).
 */
struct p11p_index *p11p_vkey_index(struct p11p_state *st);
/*
 * This room's data in the core's objects and sessions (one pointer each, the
 * core frees them through the hooks below):
 *
 * struct p11p_object.vk, guarded by the global lock: a token key's binding
 * to its virtual-key record, what the index matches it by, cached so that
 * hot paths never read attributes again. NULL: not looked at yet;
 * p11p_vkbind_none: not a virtual key (not a token key, or no index).
 */
struct p11p_vkbind {
	uint64_t vid;      /* the record; 0: none (not imported: hidden) */
	bool unrecordable; /* CKA_ID or CKA_LABEL too long for the index: always hidden */
	CK_OBJECT_CLASS cls;
	size_t id_len, label_len;
	unsigned char id[P11P_INDEX_ID_MAX], label[P11P_INDEX_LABEL_MAX];
};
extern P11P_INTERNAL struct p11p_vkbind p11p_vkbind_none;
/*
 * struct p11p_session.vk, guarded by the session's lock: made on the
 * session's first virtual-key lookup or filtered find, kept while the
 * session is pooled (emptied when it closes), freed with it.
 */
struct p11p_vk_session {
	/*
	 * The running find's filter on virtual permissions (the template's
	 * CKA_ENCRYPT... taken out of the member's find): find_mask the
	 * P11P_VK_* bits named, find_want their values; find_none: the
	 * template contradicts itself (nothing matches).
	 */
	uint32_t find_mask, find_want;
	bool find_none;
	/*
	 * The object this session resolved last, h (0: none) as of
	 * p11p_objects_gen() gen: its binding, kind 0 (not cached), 1 (not a
	 * virtual key) or 2 (record vid; 0: hidden), and that record's class,
	 * permissions and state as of the index's generation igen (0: not
	 * cached; only ever set with kind 2).
	 */
	CK_OBJECT_HANDLE h;
	unsigned long gen;
	int kind;
	uint64_t vid;
	unsigned long igen;
	CK_OBJECT_CLASS cls;
	uint32_t perms;
	int state;
};
/* Frees an object's binding (*vk: its slot, with the object). Global lock held. */
void p11p_vkey_object_free(struct p11p_vkbind **vk);
/* A session closes (back to its slot's pool): its data emptied. Session unshared. */
void p11p_vkey_session_reset(struct p11p_session *s);
/* A session is freed: its data goes. Session unshared. */
void p11p_vkey_session_free(struct p11p_session *s);
/*
 * May the proxy object `key` be used for `perm` (P11P_VK_* of index.h; 0:
 * any use of the key's material, e.g. the key C_WrapKey wraps)? CKR_OK (also
 * for objects that are not virtual keys); P11PROXY_CKR_KEY_DEACTIVATED;
 * CKR_KEY_FUNCTION_NOT_PERMITTED; CKR_KEY_HANDLE_INVALID (deleted virtually,
 * or hidden: not imported under `scan: owned`). No lock held.
 */
CK_RV p11p_vkey_use(struct p11p_call *c, CK_OBJECT_HANDLE key, unsigned perm);
/*
 * p11p_vkey_index(), refreshed first when due: for the software keys of
 * lib/soft, whose records and blobs it holds.
 */
struct p11p_index *p11p_vkey_index_fresh(struct p11p_state *st);
/*
 * After the member answered C_GetAttributeValue (*rv): reports the virtual
 * key's own permissions in the template in place of the HSM key's
 * (CKR_OBJECT_HANDLE_INVALID for a deleted or hidden key).
 */
void p11p_vkey_attrs_out(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ,
                         CK_ULONG count, CK_RV *rv);
/*
 * C_SetAttributeValue on a virtual key: true when settled here (*rv), under
 * the slot's policy; false for objects that are not virtual keys.
 */
bool p11p_vkey_set(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                   CK_RV *rv);
/*
 * C_DestroyObject on a virtual key: true when settled here (*rv): write_back
 * false (the record becomes a tombstone), or a deleted/hidden key. false:
 * go on and destroy the HSM key; *vid (0: not a virtual key) is then the
 * record to remove with p11p_vkey_destroyed() once that worked.
 */
bool p11p_vkey_destroy(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_RV *rv, uint64_t *vid);
void p11p_vkey_destroyed(struct p11p_call *c, uint64_t vid);
/*
 * New backend objects bh[0..n) made through c (create, generate, unwrap,
 * derive): records the token keys among them as virtual keys with origin
 * `created` and binds their proxy handles. On an error the caller destroys
 * them. p11p_vkey_copied(): the same for a C_CopyObject of proxy object src,
 * whose copy gets no permission the original's virtual key lacks.
 */
CK_RV p11p_vkey_created(struct p11p_call *c, const CK_OBJECT_HANDLE *bh, size_t n);
CK_RV p11p_vkey_copied(struct p11p_call *c, CK_OBJECT_HANDLE src, CK_OBJECT_HANDLE bh);
/*
 * A find starts (templ: the application's). Sets the session's virtual
 * permission filter and gives in *btempl the template for the member's find:
 * templ itself, or (when it names permission attributes) a p11p_malloc'ed
 * copy without them, which the caller frees.
 */
CK_RV p11p_vkey_find_init(struct p11p_call *c, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                          CK_ATTRIBUTE **btempl, CK_ULONG *bcount);
/*
 * A find's chunk of proxy handles: binds the new ones (one index write for the
 * imports). CKR_OK, or the error of a member that failed while they were read
 * (the find then goes on on another member: p11p_call_retry()).
 */
CK_RV p11p_vkey_find_chunk(struct p11p_call *c, const CK_OBJECT_HANDLE *ph, size_t n);
/* Is ph kept from this find (deleted, hidden, or not matching the virtual permissions)? */
bool p11p_vkey_hidden(struct p11p_call *c, CK_OBJECT_HANDLE ph);

#endif
