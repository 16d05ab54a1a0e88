/*
 * The virtual core's own structs, for lib/virt alone (tests/layers.sh fails
 * an include of this header from any other room): the rooms above see them
 * as incomplete types and use the accessors of virt/virt.h.
 */
#ifndef P11P_VIRT_CORE_H
#define P11P_VIRT_CORE_H

#include "virt/virt.h"

struct p11p_object {
	CK_OBJECT_HANDLE handle;
	struct p11p_vslot *slot;
	CK_SESSION_HANDLE owner; /* creating session for session objects, else 0 */
	bool created;            /* made through the proxy in this process (adopt_new), not found */
	/*
	 * A session key asked non-extractable but made extractable under trusted
	 * keys only (c->repl_lock) so that a token copy can be replicated: shown
	 * with CKA_EXTRACTABLE false; locked when copied to the token.
	 */
	bool repl_unlocked;
	bool token;                            /* a token object (known when ident is) */
	struct p11p_identity *ident;           /* NULL: stays on the member it was found on */
	CK_OBJECT_HANDLE be[P11P_MAX_MEMBERS]; /* backend handle per member; 0 = unknown */
	unsigned long gen[P11P_MAX_MEMBERS];   /* the member's handle_gen when be[] was learnt */
	/*
	 * The virtual keys' data (vkeys/vkey.c: the token key's binding to its
	 * record; NULL: not looked at yet), guarded by the global lock; freed
	 * through p11p_hook_vkey_object_free().
	 */
	struct p11p_vkbind *vk;
};

#endif
