/*
 * The room of keys the proxy holds itself: fragment-derived keys, the vendor
 * mechanisms, entropy mixing. It plugs into the core through hooks
 * (virt/virt.h).
 */
#ifndef P11P_SOFT_H
#define P11P_SOFT_H

#include "virt/virt.h"

/* Sets the soft hooks of the core (at C_Initialize). */
void p11p_soft_register(void);

/* --- local.c: keys the proxy holds itself and the vendor mechanisms (issue 5) --- */
/* C_Initialize (after the slots are set up): fragments, entropy. */
CK_RV p11p_local_state_init(struct p11p_state *st);
void p11p_local_state_free(struct p11p_state *st);
/* A session goes: its local operations. Session lock held or unshared. */
void p11p_local_session_free(struct p11p_session *s);
/* Is a local operation of kind k active on s? Session lock held. */
bool p11p_local_active(struct p11p_session *s, enum p11p_op_kind k);
/* A session closes: the local objects it owns are destroyed (wiped). Global lock held. */
void p11p_local_drop_owned_locked(struct p11p_state *st, struct p11p_session *s);
/* Is type one of p11proxy's vendor-defined mechanisms (p11proxy.h)? */
bool p11p_local_mechanism(CK_MECHANISM_TYPE type);
CK_RV p11p_local_init(struct p11p_call *c, enum p11p_op_kind k, CK_MECHANISM_PTR m,
                      CK_OBJECT_HANDLE key);
/* The operations' other calls while a local operation of their kind is active. */
#define P11P_LOCAL_CRYPTO(X)                                                                       \
	X(C_Encrypt, (CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len))     \
	X(C_EncryptUpdate,                                                                         \
	  (CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len))                \
	X(C_EncryptFinal, (CK_BYTE_PTR out, CK_ULONG_PTR out_len))                                 \
	X(C_Decrypt, (CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len))     \
	X(C_DecryptUpdate,                                                                         \
	  (CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len))                \
	X(C_DecryptFinal, (CK_BYTE_PTR out, CK_ULONG_PTR out_len))                                 \
	X(C_Sign, (CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len))        \
	X(C_SignUpdate, (CK_BYTE_PTR in, CK_ULONG in_len))                                         \
	X(C_SignFinal, (CK_BYTE_PTR sig, CK_ULONG_PTR sig_len))                                    \
	X(C_Verify, (CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR sig, CK_ULONG sig_len))          \
	X(C_VerifyUpdate, (CK_BYTE_PTR in, CK_ULONG in_len))                                       \
	X(C_VerifyFinal, (CK_BYTE_PTR sig, CK_ULONG sig_len))
#define P11P_LOCAL_DECL(name, params)                                                              \
	CK_RV p11p_local_##name(struct p11p_call *c, P11P_UNPAREN params);
#define P11P_UNPAREN(...) __VA_ARGS__
P11P_LOCAL_CRYPTO(P11P_LOCAL_DECL)
#undef P11P_LOCAL_DECL
/* Object calls on a local handle. */
CK_RV p11p_local_get_attrs(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ,
                           CK_ULONG count);
CK_RV p11p_local_set_attrs(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR templ,
                           CK_ULONG count);
CK_RV p11p_local_object_size(struct p11p_call *c, CK_OBJECT_HANDLE h, CK_ULONG_PTR size);
CK_RV p11p_local_destroy(struct p11p_call *c, CK_OBJECT_HANDLE h);
/* A find starts: remembers the local objects matching templ; next hands them out first. */
CK_RV p11p_local_find_init(struct p11p_call *c, const CK_ATTRIBUTE *templ, CK_ULONG count);
CK_ULONG p11p_local_find_next(struct p11p_call *c, CK_OBJECT_HANDLE *out, CK_ULONG max);
/*
 * C_DeriveKey with a vendor mechanism, or on a local base key; C_GenerateKey
 * with a vendor mechanism; C_WrapKey / C_UnwrapKey / C_CopyObject naming a
 * local key (refused with the code PKCS#11 has for it).
 */
CK_RV p11p_local_derive(struct p11p_call *c, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base,
                        CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR out);
CK_RV p11p_local_generate_key(struct p11p_call *c, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR templ,
                              CK_ULONG count, CK_OBJECT_HANDLE_PTR out);
/*
 * Software keys (issue 12): does this C_GenerateKey (mech) or C_CreateObject
 * (mech NULL) make a software key (CKA_P11PROXY_SOFTWARE true, or the slot's
 * software_keys new_keys for a token secret key the engine serves)? Then
 * local_create makes it: the value generated from the slot's entropy source
 * or taken from CKA_VALUE, sealed by the HSM and stored in the index.
 */
bool p11p_local_software(struct p11p_call *c, CK_MECHANISM_PTR mech, const CK_ATTRIBUTE *templ,
                         CK_ULONG count);
CK_RV p11p_local_create(struct p11p_call *c, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR templ,
                        CK_ULONG count, CK_OBJECT_HANDLE_PTR out);
/*
 * C_UnwrapKey of a software secret key: the HSM unwraps it (with an HSM
 * unwrapping key) into an extractable session object that is read and
 * destroyed at once; the value becomes a software key.
 */
CK_RV p11p_local_unwrap(struct p11p_call *c, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE unwrapping,
                        CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR templ,
                        CK_ULONG count, CK_OBJECT_HANDLE_PTR out);
/* C_GenerateKeyPair of a software key pair (EC P-256/P-384, Ed25519, RSA): both halves. */
CK_RV p11p_local_create_pair(struct p11p_call *c, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub,
                             CK_ULONG pub_count, CK_ATTRIBUTE_PTR priv, CK_ULONG priv_count,
                             CK_OBJECT_HANDLE_PTR pub_out, CK_OBJECT_HANDLE_PTR priv_out);
/*
 * The probe thread's periodic task (lib/ha/health.c, through
 * p11p_hook_local_poll): evicts and wipes the software keys past cache_ttl /
 * cache_idle without waiting for a call; returns when it is next due
 * (p11p_now_ms() time; ~0: no software key is held in the clear).
 */
unsigned long long p11p_local_poll(struct p11p_state *st);
/* C_GenerateRandom / C_SeedRandom (random.c): the slot's entropy policy, or the member's. */
CK_RV p11p_generate_random(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len);
CK_RV p11p_seed_random(CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG len);

#endif
