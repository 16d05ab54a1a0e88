/*
 * The HA room: member probes, failover and replay, the watchdog, member order
 * and replication. It plugs into the core through hooks (virt/virt.h).
 */
#ifndef P11P_HA_H
#define P11P_HA_H

#include "virt/virt.h"
#include "ha/order.h"
#include "ha/replicate.h"
#include "ha/stats.h"

/* Sets the HA hooks of the core (at C_Initialize). */
void p11p_ha_register(void);

/*
 * The HA room's data in a slot (p11p_vhead(vs)->ha) and in the state
 * (p11p_sthead(st)->ha), made by p11p_ha_state_init() before the slots are
 * set up (C_Initialize) and freed by p11p_ha_state_free() with the state (in
 * a forked child too: the parent's state is freed there, no thread of ours
 * uses it). The member order itself, read by the core to pick a member, is
 * the core's (written here through p11p_slot_order_set_locked()).
 */
struct p11p_ha_slot {
	/* Added members' specs (order.c), owned, by member index; global lock. */
	struct p11p_member_cfg *added[P11P_MAX_MEMBERS];
	/* Used only by the thread checking the overlay (p11p_ha_state.order_busy): */
	char *order_path; /* the overlay file, or NULL */
	struct p11p_overlay_stamp order_stamp;
	uint64_t order_version; /* with a store: the overlay's version read */
	/* Key replication (replicate.c), guarded by the global lock: */
	CK_OBJECT_HANDLE repl_key[P11P_MAX_MEMBERS]; /* ha.replication_key per member; 0: unknown */
	unsigned long repl_key_gen[P11P_MAX_MEMBERS]; /* the member's `failures` + 1 when cached */
	unsigned repl_pending; /* members waiting for a catch-up (bit per member index) */
	bool repl_busy;        /* a replication or catch-up runs on this slot (serializes them) */
};
struct p11p_ha_state {
	/* Member order overlays (order.c), guarded by the global lock: */
	bool order_busy;                  /* a thread is checking them */
	unsigned long long order_next_ms; /* when they are next checked (monotonic) */
	/*
	 * Session keys asked non-extractable but made extractable under trusted
	 * keys only (c->repl_lock, failover.c) so that a token copy can be
	 * replicated: shown with CKA_EXTRACTABLE false, locked when copied to the
	 * token. (0, proxy handle) -> the set's marker; guarded by the global
	 * lock; its size is the core's (struct p11p_state's n_repl_unlocked).
	 */
	struct p11p_map repl_unlocked;
	/*
	 * The probe thread (health.c; p11p_state_probe_thread() says it runs):
	 * its handle, set by p11p_health_start() before the state is shared and
	 * joined by p11p_health_stop(); probe_stop asks it to end (global lock).
	 */
	pthread_t probe_thread;
	bool probe_stop;
};
CK_RV p11p_ha_state_init(struct p11p_state *st);
void p11p_ha_state_free(struct p11p_state *st);
/*
 * The set of keys made copyable for replication (failover.c), for the core's
 * object table: p11p_repl_unlocked_set_locked marks proxy handle h (on) or
 * not, *changed when that changed the set (CKR_HOST_MEMORY: not marked);
 * p11p_repl_unlocked_locked: is h marked? Global lock held.
 */
CK_RV p11p_repl_unlocked_set_locked(struct p11p_state *st, CK_OBJECT_HANDLE h, bool on,
                                    bool *changed);
bool p11p_repl_unlocked_locked(struct p11p_state *st, CK_OBJECT_HANDLE h);

/*
 * Every member of vs is down: tries them once in priority order with an
 * inline probe (skipping members with a hung call) and brings the first that
 * answers straight back up. The member, or NULL. No lock held.
 */
struct p11p_member *p11p_member_revive(struct p11p_state *st, struct p11p_vslot *vs);
/* Probes one member now (no lock held); CKR_OK when it answered. */

CK_RV p11p_member_probe(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m);
/* Starts / stops the probe thread (stop: not in a forked child). */
void p11p_health_start(struct p11p_state *st, bool threads_allowed);
void p11p_health_stop(struct p11p_state *st);
/* Without a probe thread: probes members that are due, inline. No lock held. */
void p11p_health_poll(struct p11p_state *st);
/*
 * Watchdog (watchdog.c): marks down the members of calls running past their
 * slot's call_timeout; returns the milliseconds until the next scan is due.
 * Global lock held.
 */
unsigned long long p11p_watchdog_scan_locked(struct p11p_state *st);
/*
 * --- order.c in the module (the overlay files: ha/order.h) ---
 * p11p_order_init(): at C_Initialize, after the slot's
 * config members are set up (with the config's order, by the core) and
 * before the state is shared: the overlay if there is one. p11p_order_poll():
 * checks every slot's overlay when due (at most once per P11P_ORDER_CHECK_MS)
 * and applies a changed one; returns when the next check is due (monotonic
 * ms). No lock held. p11p_order_free(): the slot's added specs and overlay
 * path (state teardown, from p11p_ha_state_free()).
 */
void p11p_order_init(struct p11p_state *st, struct p11p_vslot *vs);
unsigned long long p11p_order_poll(struct p11p_state *st);
void p11p_order_free(struct p11p_vslot *vs);

/*
 * --- stats.c in the module (the files: ha/stats.h) ---
 * p11p_stats_start(): at C_Initialize (p11p_health_start), before any poll.
 * p11p_stats_poll(): writes this process's statistics file when due (at most
 * once per P11P_STATS_INTERVAL_MS) and something changed; returns when the
 * next write is due (monotonic ms). Called by the probe thread, or by the
 * inline probes without one; no lock held (it takes the global lock to copy
 * the counts, never across file I/O). p11p_stats_stop(): removes the file
 * (C_Finalize, after the probe thread has stopped).
 */
void p11p_stats_start(struct p11p_state *st);
unsigned long long p11p_stats_poll(struct p11p_state *st);
void p11p_stats_stop(struct p11p_state *st);

/* --- failover.c --- */
/*
 * After a backend call in c answered *rv: when that was a failure of the
 * member (confirmed) or a lost session, moves the session to another member
 * (or a new session on the same one), logs in again, replays the active
 * operations and returns true so the caller repeats the call there.
 * `repeatable` false (the call changes the token): the session still moves,
 * but the call is not repeated and *rv is returned as it was.
 */
bool p11p_call_retry(struct p11p_call *c, CK_RV *rv, bool repeatable);
/*
 * Logs a new backend session of member m in as the application is logged in
 * on the slot, unless the session shows the token logged in already (one
 * C_GetSessionInfo when the proxy believes it is). No lock held.
 */
CK_RV p11p_replay_login(struct p11p_vslot *vs, struct p11p_member *m, CK_SESSION_HANDLE bs);

/*
 * Before a call: when the session's member is down, moves the session to a
 * healthy member (replaying login and operations) rather than wait on it.
 */
void p11p_call_leave_down_member(struct p11p_call *c);
/*
 * Creations whose outcome a failover makes unknown (C_CreateObject,
 * C_GenerateKey(Pair), C_UnwrapKey, C_DeriveKey, C_CopyObject). Before the
 * call, p11p_creation_begin() notes how many objects with each new object's
 * CKA_CLASS + CKA_ID (+ CKA_LABEL) the member holds (token objects named by
 * CKA_ID, on slots with several members). p11p_creation_retry() then takes
 * the place of p11p_call_retry(): a session object is made again on the
 * new member (it died with the old session); a token object is looked for
 * on the member the session moved to: there once and not before (the
 * member answered that find before the call), it is adopted (*rv CKR_OK, bh[] set: the HSMs had
 * copied it); there in none of the n templates, CKR_DEVICE_ERROR with "not created on the
 * survivors: safe to repeat" logged; otherwise (no CKA_ID, partial, ambiguous) CKR_DEVICE_ERROR
 * with "outcome unknown". Returns true to repeat the call.
 * On a slot that replicates by wrapping (ha.replication: wrap, several
 * members), p11p_creation_begin() also rewrites the template of a secret or
 * private key, token or session, that asks not to be extractable (CKA_EXTRACTABLE false
 * or left to the token) into cr's own copy, with CKA_EXTRACTABLE and
 * CKA_WRAP_WITH_TRUSTED true, and sets bit k of c->repl_lock: the key can
 * then be wrapped only under a trusted key (the replication key), and
 * p11p_repl_new_keys() sets CKA_EXTRACTABLE false once every member holds it
 * (a session key: its token copy, made by C_CopyObject, object.c).
 */
void p11p_creation_begin(struct p11p_call *c, struct p11p_creation *cr, size_t n,
                         const CK_OBJECT_CLASS *default_cls, CK_ATTRIBUTE_PTR *templ,
                         CK_ULONG *count);
bool p11p_creation_retry(struct p11p_call *c, struct p11p_creation *cr, CK_RV *rv,
                         CK_OBJECT_HANDLE *bh);

/* --- replicate.c: key replication over a slot's members --- */
/*
 * A creation in c made the backend objects bh[0..n) on the session's member
 * (a key, a pair's public and private key, a certificate or data object).
 * When the slot has more than one member and some of them are token objects,
 * by ha.replication: `wrap` copies those to the other healthy members (secret
 * and private keys wrapped under ha.replication_key and unwrapped there, the
 * rest created by value) until ha.key_quorum members hold them (0: every
 * healthy member), unwraps keys made copyable (c->repl_lock) locked and locks
 * the original once every member holds it; `vendor` waits up to
 * ha.replication_wait for the members' own copies and warns; `none` does
 * nothing. CKR_OK: replicated, or kept on fewer members (a warning is logged;
 * what each member lacks is a replication debt in the index). Otherwise the
 * new objects and every copy are destroyed (what cannot be is a DESTROY debt)
 * and CKR_FUNCTION_FAILED is returned, with a message saying why and what
 * fixes it (the table in p11proxy(7)).
 * Called with c's session lock held, never with the global lock.
 */
CK_RV p11p_repl_new_keys(struct p11p_call *c, const CK_OBJECT_HANDLE *bh, size_t n);
/*
 * A token object with that identity was destroyed through c: destroys its
 * copies on the other members that are up; a member down, or a destroy that
 * fails, is a DESTROY debt (settled when it is back). No lock held.
 */
void p11p_repl_destroyed(struct p11p_call *c, const struct p11p_identity *ident);
/*
 * A token object with that identity was changed through c (templ, CKR_OK on
 * the session's member): the same change on its copies on the other members
 * that are up, so that they stay one object. No lock held.
 */
void p11p_repl_changed(struct p11p_call *c, const struct p11p_identity *ident,
                       CK_ATTRIBUTE_PTR templ, CK_ULONG count);
/*
 * An object the proxy knows is not on the call's member under the identity
 * it has now: a change that member missed (a rename while it was down) may
 * still be owed. Settles the member's attribute-change debts there (oldest
 * first, on sessions of our own); true when one was settled (find it
 * again). No lock held.
 */
bool p11p_repl_settle_attrs(struct p11p_call *c);

/*
 * Member m of vs is up again (after being down): settles the slot's
 * replication debts (index/index.h: removals first), then copies to it the
 * token objects that the slot's other up members hold and it lacks (by
 * CKA_CLASS + CKA_ID + CKA_LABEL). Needs the application's user login on the slot; without it the
 * catch-up waits for the slot's next key creation. No lock held (the probe
 * thread, or an inline probe).
 */
void p11p_repl_catch_up(struct p11p_state *st, struct p11p_vslot *vs, struct p11p_member *m);
/*
 * The probe thread's periodic task (at most every 5 s): on each slot that
 * replicates by wrapping and where the application is logged in, settles the
 * replication debts recorded in the index (by any process) whose member is up.
 * No lock held.
 */
void p11p_repl_poll(struct p11p_state *st);

#endif
