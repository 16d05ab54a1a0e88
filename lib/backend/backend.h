/*
 * Backends (vendor PKCS#11 libraries) and members (one backend + one of its
 * tokens). A backend is untrusted: its function list is copied into a zeroed
 * full-size table so a short or NULL entry is a clean CKR_FUNCTION_NOT_SUPPORTED,
 * and every count, length and handle it returns is checked by the caller.
 */
#ifndef P11P_BACKEND_H
#define P11P_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pkcs11.h"
#include "config/config.h"

/* Bounds on what a backend returns (backend/call.c refuses more). */
#define P11P_MAX_LIST     65536 /* slots, mechanisms */
#define P11P_MAX_TEMPLATE 4096  /* attributes in one template */

/*
 * How to call a backend (backend/call.h): the backend, a deadline (0: none)
 * and what to tell when a call is abandoned past it.
 */
struct p11p_bctx {
	struct p11p_backend *be;
	unsigned long timeout_ms;
	/*
	 * A call was abandoned past the deadline: hung(arg, ...) runs in the
	 * caller's thread (under the layer's pool lock: it may take the global
	 * lock, nothing that waits on a backend) and may set *rel and *token;
	 * released(*rel, *token) runs in the worker when the vendor call returns.
	 */
	void (*hung)(void *arg, void **rel, unsigned long *token);
	void (*released)(void *rel, unsigned long token);
	void *arg;
	/*
	 * The layer refused what the vendor answered (backend/call.c: a length,
	 * count or handle it was given no room for): refused(arg) runs in the
	 * caller's thread, no lock of the layer's held.
	 */
	void (*refused)(void *arg);
	/*
	 * Sessions opened through this context on one token: counted by the
	 * layer (C_OpenSession, C_CloseSession, C_CloseAllSessions); when the
	 * count falls to zero, gone(gone_arg) runs (some tokens drop their
	 * object handles with their last session). count NULL: not counted.
	 * count is NULL or a member's n_be_sessions (every context the module
	 * makes for a member): the layer also counts the call and its result on
	 * that member (p11p_bctx_member()).
	 */
	atomic_long *count;
	void (*gone)(void *gone_arg);
	void *gone_arg;
};

struct p11p_backend {
	const struct p11p_backend_cfg *cfg;
	CK_FUNCTION_LIST *module; /* as p11-kit loaded it */
	CK_FUNCTION_LIST fl;      /* full-size copy: only backend/call.c calls through it */
	bool initialized;         /* we called its C_Initialize and it succeeded */
	struct p11p_bctx ctx;     /* calls without a deadline (p11p_backend_ctx) */
	/* Counted by backend/call.c (relaxed atomics; for metrics and `health`). */
	atomic_ulong n_calls, n_server_errors, n_client_errors, n_refused;
};

/*
 * Loads the library (p11-kit, unmanaged) and calls its C_Initialize with
 * CKF_OS_LOCKING_OK. A backend that answers CKR_CRYPTOKI_ALREADY_INITIALIZED
 * (shared with the application) is used but never finalized by us.
 * On failure *be is left closed and err says why.
 */
CK_RV p11p_backend_open(struct p11p_backend *be, const struct p11p_backend_cfg *cfg, char *err,
                        size_t errlen);
/* Finalizes (when `finalize` and we initialized it) and releases the library. */
void p11p_backend_close(struct p11p_backend *be, bool finalize);

/*
 * Member health (virt/member.c, ha/health.c):
 *   UP ----server-side error, confirmed----> DOWN
 *   DOWN --probe answers--> RECOVERING --second good probe--> UP
 *   RECOVERING --probe fails--> DOWN (backoff doubles)
 * New sessions go to UP members (RECOVERING ones only when no member is UP),
 * so a member that flaps is not handed work until it has answered twice.
 */
enum p11p_health {
	P11P_UP = 0,
	P11P_RECOVERING = 1,
	P11P_DOWN = 2,
};

/*
 * A slot's member. Defined here, below the rooms that share it; each field
 * has one owner, the room that writes it (the others only read it):
 *   - the backend layer (backend.c, call.c): cfg, be, be_slot and resolved
 *     (p11p_member_resolve()), ctx, n_be_sessions (counted through the
 *     contexts), n_calls and its error counts, refused (set through the
 *     contexts' refused hook);
 *   - the virtual core (virt/member.c, state.c, session.c, object.c): index,
 *     health (its DOWN edge: p11p_member_down_locked(), which also resets
 *     good_probes and schedules the first probe), n_sessions, failures,
 *     last_error, hung_calls, handle_gen (moved when its sessions are gone);
 *   - the HA room (ha/health.c: probes; ha/order.c; ha/failover.c): health's
 *     DOWN -> RECOVERING -> UP edges, probing, good_probes, next_probe_ms,
 *     backoff_ms, removed (the member order), n_failovers.
 * Not split into per-room structs (yet): the hot paths read health, removed,
 * resolved, n_sessions and handle_gen inline (virt/member.c's pick,
 * p11p_object_to_backend()).
 */
struct p11p_member {
	const struct p11p_member_cfg *cfg;
	struct p11p_backend *be;
	size_t index; /* position in the slot's list */
	/* Guarded by the global lock: */
	bool resolved;      /* be_slot is valid */
	CK_SLOT_ID be_slot; /* the backend's slot id holding our token */
	atomic_int health;  /* enum p11p_health; read lock-free on hot paths */
	bool probing;       /* a probe is in flight */
	unsigned good_probes;
	unsigned long long next_probe_ms; /* monotonic */
	unsigned long backoff_ms;
	unsigned long n_sessions; /* proxy sessions served now (balance mode) */
	unsigned long failures;   /* times it was marked down */
	unsigned hung_calls;      /* calls the watchdog found hung, still in flight */
	/* Sessions moved off it to another member (ha/failover.c; relaxed, for metrics). */
	atomic_ulong n_failovers;
	/* Calls to it and their failures, as its backend's (backend/call.c; relaxed). */
	atomic_ulong n_calls, n_server_errors, n_client_errors, n_refused;

	CK_RV last_error; /* what marked it down */
	/*
	 * The layer refused an answer of the member's since it was last marked
	 * down (the contexts' refused hook): the next p11p_member_confirm() takes
	 * it and marks the member down without asking it again. A member that
	 * lies is failing, whatever a probe says.
	 */
	atomic_bool refused;
	/*
	 * Sessions the proxy has open on the member's token (counted by the
	 * backend layer through ctx and the call contexts). When none is left,
	 * or the member loses its sessions or goes down, handle_gen moves on:
	 * object handles learnt before are not used again without being found
	 * again (some tokens drop them with their last session).
	 */
	atomic_long n_be_sessions;
	atomic_ulong handle_gen;
	struct p11p_bctx ctx; /* calls to the member without a deadline */
	/*
	 * Deleted from the slot's member order (lib/ha/order.c): no new work,
	 * not probed; sessions it serves keep working until they fail or close.
	 */
	bool removed;
};

/* The member whose sessions x counts (see struct p11p_bctx), or NULL. */
static inline struct p11p_member *p11p_bctx_member(const struct p11p_bctx *x)
{
	uintptr_t count = (uintptr_t)x->count;

	return count != 0
	           ? (struct p11p_member *)(count - offsetof(struct p11p_member, n_be_sessions))
	           : NULL;
}

/*
 * Finds the backend slot whose token matches the member's selector (slot id,
 * token label, token serial or pkcs11: URI), calling the backend through x
 * (its deadline bounds the calls about tokens). CKR_TOKEN_NOT_PRESENT when no
 * token matches; CKR_FUNCTION_FAILED when several do (err names them).
 */
CK_RV p11p_member_resolve(struct p11p_member *m, const struct p11p_bctx *x, char *err,
                          size_t errlen);

/*
 * True for the results that say the backend itself failed (server side), as
 * opposed to a problem with the request (client side): the defaults below,
 * adjusted by the backend's server_errors / client_errors.
 */
bool p11p_rv_is_server_error(const struct p11p_backend *be, CK_RV rv);

/*
 * Pads/copies a NUL-terminated string into a blank-padded PKCS#11 field, and
 * the reverse (trailing blanks removed; out has room for len + 1 bytes).
 */
void p11p_pad(CK_UTF8CHAR *field, size_t len, const char *s);
void p11p_unpad(char *out, const CK_UTF8CHAR *field, size_t len);

#endif
