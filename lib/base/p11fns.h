/*
 * The one table of the PKCS#11 2.40 functions (all 68). It drives the
 * module's entry points (lib/entry), the one backend-call layer
 * (lib/backend/call.h: p11p_be_C_xxx for every function) and the stubs for
 * entries a vendor leaves NULL.
 *
 *   X(KIND, NAME, PARAMS, NAMES, BACKEND_ARGS, OP, BUF)
 *
 * KIND says how the entry point is made:
 *   CUSTOM  hand-written in lib/entry/entry.c;
 *   IMPL(f) the call goes to f, with the same arguments (the function with
 *           logic of its own, in the core or a room above it), and is traced;
 *   SESSION forwarded: the proxy session handle becomes the member's (c.bs);
 *   CRYPTO  as SESSION, unless the session runs a local operation of that
 *           kind (on a key the proxy holds: lib/soft);
 *   KEY     as SESSION, and the parameter `key` becomes the member's (bkey);
 *   OBJECT  as SESSION, and the parameter `object` becomes the member's (bobj).
 * NAMES is PARAMS without the types (the backend layer forwards them).
 * BACKEND_ARGS is the argument list of the forwarded call (unused for CUSTOM).
 *
 * OP is the call's part in a cryptographic operation, which the proxy records
 * so that it can replay the operation on another member (lib/ha/op.c):
 *   NONE            no part; safe to repeat on another member;
 *   UNSAFE          changes the token: not repeated after a failover, whose
 *                   outcome on the failed member is unknown;
 *   INIT(k, m, key) starts operation k with mechanism m and key;
 *   FINDINIT(t, n)  starts a find with template t of n attributes;
 *   UPDATE(k, in, len, out)  feeds input (out: the output buffer, or P11P_NO_OUTPUT);
 *   DIGESTKEY(key)  feeds a key into a digest;
 *   FINAL(k, out)   ends k, unless it was a size query (out NULL) or the
 *                   buffer was too small;
 *   END(k)          ends k whatever the result;
 *   DUAL            a dual-function update: operations are no longer replayable.
 *
 * BUF is what the vendor writes back, which the backend layer checks before
 * anything reaches the caller (a backend is untrusted input):
 *   NONE                    nothing with a length;
 *   OUT(buf, len)           PKCS#11 5.2 output: *len in, bytes written out;
 *   LIST(list, count)       the same for a list of count entries;
 *   FOUND(objs, max, count) at most max handles, none of them 0;
 *   ATTRS(templ, count)     each value no longer than the buffer given;
 *   RAND                    a fixed-size output with no length (never offloaded);
 *   OPEN / CLOSE / CLOSEALL sessions, which the layer counts (call.h); an
 *                           opened session's handle is not 0.
 */
#ifndef P11P_FNS_H
#define P11P_FNS_H

#define P11P_FUNCTIONS(X)                                                                          \
	X(CUSTOM, C_Initialize, (CK_VOID_PTR init_args), (init_args), (), NONE, NONE)              \
	X(IMPL(p11p_finalize), C_Finalize, (CK_VOID_PTR reserved), (reserved), (), NONE, NONE)     \
	X(CUSTOM, C_GetInfo, (CK_INFO_PTR info), (info), (), NONE, NONE)                           \
	X(CUSTOM, C_GetFunctionList, (CK_FUNCTION_LIST_PTR_PTR list), (list), (), NONE, NONE)      \
	X(IMPL(p11p_get_slot_list), C_GetSlotList,                                                 \
	  (CK_BBOOL token_present, CK_SLOT_ID_PTR slot_list, CK_ULONG_PTR count),                  \
	  (token_present, slot_list, count), (), NONE, LIST(slot_list, count))                     \
	X(IMPL(p11p_get_slot_info), C_GetSlotInfo, (CK_SLOT_ID slot_id, CK_SLOT_INFO_PTR info),    \
	  (slot_id, info), (), NONE, NONE)                                                         \
	X(IMPL(p11p_get_token_info), C_GetTokenInfo, (CK_SLOT_ID slot_id, CK_TOKEN_INFO_PTR info), \
	  (slot_id, info), (), NONE, NONE)                                                         \
	X(IMPL(p11p_wait_for_slot_event), C_WaitForSlotEvent,                                      \
	  (CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved), (flags, slot, reserved),    \
	  (), NONE, NONE)                                                                          \
	X(IMPL(p11p_get_mechanism_list), C_GetMechanismList,                                       \
	  (CK_SLOT_ID slot_id, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count),                    \
	  (slot_id, list, count), (), NONE, LIST(list, count))                                     \
	X(IMPL(p11p_get_mechanism_info), C_GetMechanismInfo,                                       \
	  (CK_SLOT_ID slot_id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info),                \
	  (slot_id, type, info), (), NONE, NONE)                                                   \
	X(IMPL(p11p_init_token), C_InitToken,                                                      \
	  (CK_SLOT_ID slot_id, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len, CK_UTF8CHAR_PTR label),      \
	  (slot_id, pin, pin_len, label), (), NONE, NONE)                                          \
	X(IMPL(p11p_init_pin), C_InitPIN,                                                          \
	  (CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len),                      \
	  (session, pin, pin_len), (), NONE, NONE)                                                 \
	X(IMPL(p11p_set_pin), C_SetPIN,                                                            \
	  (CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,                   \
	   CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len),                                             \
	  (session, old_pin, old_len, new_pin, new_len), (), NONE, NONE)                           \
	X(IMPL(p11p_open_session), C_OpenSession,                                                  \
	  (CK_SLOT_ID slot_id, CK_FLAGS flags, CK_VOID_PTR application, CK_NOTIFY notify,          \
	   CK_SESSION_HANDLE_PTR session),                                                         \
	  (slot_id, flags, application, notify, session), (), NONE, OPEN(session))                 \
	X(IMPL(p11p_close_session), C_CloseSession, (CK_SESSION_HANDLE session), (session), (),    \
	  NONE, CLOSE)                                                                             \
	X(IMPL(p11p_close_all_sessions), C_CloseAllSessions, (CK_SLOT_ID slot_id), (slot_id), (),  \
	  NONE, CLOSEALL)                                                                          \
	X(IMPL(p11p_get_session_info), C_GetSessionInfo,                                           \
	  (CK_SESSION_HANDLE session, CK_SESSION_INFO_PTR info), (session, info), (), NONE, NONE)  \
	X(SESSION, C_GetOperationState,                                                            \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR state, CK_ULONG_PTR state_len),                  \
	  (session, state, state_len), (c.bs, state, state_len), NONE, OUT(state, state_len))      \
	X(IMPL(p11p_set_operation_state), C_SetOperationState,                                     \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR state, CK_ULONG state_len,                       \
	   CK_OBJECT_HANDLE encryption_key, CK_OBJECT_HANDLE authentication_key),                  \
	  (session, state, state_len, encryption_key, authentication_key), (), NONE, NONE)         \
	X(IMPL(p11p_login), C_Login,                                                               \
	  (CK_SESSION_HANDLE session, CK_USER_TYPE user_type, CK_UTF8CHAR_PTR pin,                 \
	   CK_ULONG pin_len),                                                                      \
	  (session, user_type, pin, pin_len), (), NONE, NONE)                                      \
	X(IMPL(p11p_logout), C_Logout, (CK_SESSION_HANDLE session), (session), (), NONE, NONE)     \
	X(IMPL(p11p_create_object), C_CreateObject,                                                \
	  (CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count,                      \
	   CK_OBJECT_HANDLE_PTR object),                                                           \
	  (session, templ, count, object), (), NONE, NONE)                                         \
	X(IMPL(p11p_copy_object), C_CopyObject,                                                    \
	  (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,             \
	   CK_ULONG count, CK_OBJECT_HANDLE_PTR new_object),                                       \
	  (session, object, templ, count, new_object), (), NONE, NONE)                             \
	X(IMPL(p11p_destroy_object), C_DestroyObject,                                              \
	  (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object), (session, object), (), NONE, NONE) \
	X(OBJECT, C_GetObjectSize,                                                                 \
	  (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ULONG_PTR size),                 \
	  (session, object, size), (c.bs, bobj, size), NONE, NONE)                                 \
	X(IMPL(p11p_get_attribute_value), C_GetAttributeValue,                                     \
	  (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,             \
	   CK_ULONG count),                                                                        \
	  (session, object, templ, count), (c.bs, bobj, templ, count), NONE, ATTRS(templ, count))  \
	X(IMPL(p11p_set_attribute_value), C_SetAttributeValue,                                     \
	  (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,             \
	   CK_ULONG count),                                                                        \
	  (session, object, templ, count), (c.bs, bobj, templ, count), UNSAFE, NONE)               \
	X(IMPL(p11p_find_objects_init), C_FindObjectsInit,                                         \
	  (CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count),                     \
	  (session, templ, count), (c.bs, templ, count), FINDINIT(templ, count), NONE)             \
	X(IMPL(p11p_find_objects), C_FindObjects,                                                  \
	  (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR objects, CK_ULONG max_count,            \
	   CK_ULONG_PTR count),                                                                    \
	  (session, objects, max_count, count), (), NONE, FOUND(objects, max_count, count))        \
	X(SESSION, C_FindObjectsFinal, (CK_SESSION_HANDLE session), (session), (c.bs),             \
	  END(P11P_OP_FIND), NONE)                                                                 \
	X(KEY, C_EncryptInit,                                                                      \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),           \
	  (session, mechanism, key), (c.bs, mechanism, bkey),                                      \
	  INIT(P11P_OP_ENCRYPT, mechanism, key), NONE)                                             \
	X(CRYPTO, C_Encrypt,                                                                       \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (session, data, data_len, out, out_len), (c.bs, data, data_len, out, out_len),           \
	  FINAL(P11P_OP_ENCRYPT, out), OUT(out, out_len))                                          \
	X(CRYPTO, C_EncryptUpdate,                                                                 \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (session, part, part_len, out, out_len), (c.bs, part, part_len, out, out_len),           \
	  UPDATE(P11P_OP_ENCRYPT, part, part_len, out), OUT(out, out_len))                         \
	X(CRYPTO, C_EncryptFinal,                                                                  \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG_PTR out_len),                      \
	  (session, out, out_len), (c.bs, out, out_len), FINAL(P11P_OP_ENCRYPT, out),              \
	  OUT(out, out_len))                                                                       \
	X(KEY, C_DecryptInit,                                                                      \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),           \
	  (session, mechanism, key), (c.bs, mechanism, bkey),                                      \
	  INIT(P11P_OP_DECRYPT, mechanism, key), NONE)                                             \
	X(CRYPTO, C_Decrypt,                                                                       \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (session, data, data_len, out, out_len), (c.bs, data, data_len, out, out_len),           \
	  FINAL(P11P_OP_DECRYPT, out), OUT(out, out_len))                                          \
	X(CRYPTO, C_DecryptUpdate,                                                                 \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (session, part, part_len, out, out_len), (c.bs, part, part_len, out, out_len),           \
	  UPDATE(P11P_OP_DECRYPT, part, part_len, out), OUT(out, out_len))                         \
	X(CRYPTO, C_DecryptFinal,                                                                  \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG_PTR out_len),                      \
	  (session, out, out_len), (c.bs, out, out_len), FINAL(P11P_OP_DECRYPT, out),              \
	  OUT(out, out_len))                                                                       \
	X(SESSION, C_DigestInit, (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism),          \
	  (session, mechanism), (c.bs, mechanism),                                                 \
	  INIT(P11P_OP_DIGEST, mechanism, CK_INVALID_HANDLE), NONE)                                \
	X(SESSION, C_Digest,                                                                       \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (session, data, data_len, out, out_len), (c.bs, data, data_len, out, out_len),           \
	  FINAL(P11P_OP_DIGEST, out), OUT(out, out_len))                                           \
	X(SESSION, C_DigestUpdate,                                                                 \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len),                        \
	  (session, part, part_len), (c.bs, part, part_len),                                       \
	  UPDATE(P11P_OP_DIGEST, part, part_len, P11P_NO_OUTPUT), NONE)                            \
	X(KEY, C_DigestKey, (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key), (session, key),     \
	  (c.bs, bkey), DIGESTKEY(key), NONE)                                                      \
	X(SESSION, C_DigestFinal,                                                                  \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG_PTR out_len),                      \
	  (session, out, out_len), (c.bs, out, out_len), FINAL(P11P_OP_DIGEST, out),               \
	  OUT(out, out_len))                                                                       \
	X(KEY, C_SignInit,                                                                         \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),           \
	  (session, mechanism, key), (c.bs, mechanism, bkey), INIT(P11P_OP_SIGN, mechanism, key),  \
	  NONE)                                                                                    \
	X(CRYPTO, C_Sign,                                                                          \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,        \
	   CK_ULONG_PTR sig_len),                                                                  \
	  (session, data, data_len, sig, sig_len), (c.bs, data, data_len, sig, sig_len),           \
	  FINAL(P11P_OP_SIGN, sig), OUT(sig, sig_len))                                             \
	X(CRYPTO, C_SignUpdate, (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len),  \
	  (session, part, part_len), (c.bs, part, part_len),                                       \
	  UPDATE(P11P_OP_SIGN, part, part_len, P11P_NO_OUTPUT), NONE)                              \
	X(CRYPTO, C_SignFinal, (CK_SESSION_HANDLE session, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len), \
	  (session, sig, sig_len), (c.bs, sig, sig_len), FINAL(P11P_OP_SIGN, sig),                 \
	  OUT(sig, sig_len))                                                                       \
	X(KEY, C_SignRecoverInit,                                                                  \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),           \
	  (session, mechanism, key), (c.bs, mechanism, bkey),                                      \
	  INIT(P11P_OP_SIGN_RECOVER, mechanism, key), NONE)                                        \
	X(SESSION, C_SignRecover,                                                                  \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,        \
	   CK_ULONG_PTR sig_len),                                                                  \
	  (session, data, data_len, sig, sig_len), (c.bs, data, data_len, sig, sig_len),           \
	  FINAL(P11P_OP_SIGN_RECOVER, sig), OUT(sig, sig_len))                                     \
	X(KEY, C_VerifyInit,                                                                       \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),           \
	  (session, mechanism, key), (c.bs, mechanism, bkey),                                      \
	  INIT(P11P_OP_VERIFY, mechanism, key), NONE)                                              \
	X(CRYPTO, C_Verify,                                                                        \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,        \
	   CK_ULONG sig_len),                                                                      \
	  (session, data, data_len, sig, sig_len), (c.bs, data, data_len, sig, sig_len),           \
	  END(P11P_OP_VERIFY), NONE)                                                               \
	X(CRYPTO, C_VerifyUpdate,                                                                  \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len),                        \
	  (session, part, part_len), (c.bs, part, part_len),                                       \
	  UPDATE(P11P_OP_VERIFY, part, part_len, P11P_NO_OUTPUT), NONE)                            \
	X(CRYPTO, C_VerifyFinal, (CK_SESSION_HANDLE session, CK_BYTE_PTR sig, CK_ULONG sig_len),   \
	  (session, sig, sig_len), (c.bs, sig, sig_len), END(P11P_OP_VERIFY), NONE)                \
	X(KEY, C_VerifyRecoverInit,                                                                \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),           \
	  (session, mechanism, key), (c.bs, mechanism, bkey),                                      \
	  INIT(P11P_OP_VERIFY_RECOVER, mechanism, key), NONE)                                      \
	X(SESSION, C_VerifyRecover,                                                                \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR sig, CK_ULONG sig_len, CK_BYTE_PTR data,         \
	   CK_ULONG_PTR data_len),                                                                 \
	  (session, sig, sig_len, data, data_len), (c.bs, sig, sig_len, data, data_len),           \
	  FINAL(P11P_OP_VERIFY_RECOVER, data), OUT(data, data_len))                                \
	X(SESSION, C_DigestEncryptUpdate,                                                          \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (session, part, part_len, out, out_len), (c.bs, part, part_len, out, out_len), DUAL,     \
	  OUT(out, out_len))                                                                       \
	X(SESSION, C_DecryptDigestUpdate,                                                          \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (session, part, part_len, out, out_len), (c.bs, part, part_len, out, out_len), DUAL,     \
	  OUT(out, out_len))                                                                       \
	X(SESSION, C_SignEncryptUpdate,                                                            \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (session, part, part_len, out, out_len), (c.bs, part, part_len, out, out_len), DUAL,     \
	  OUT(out, out_len))                                                                       \
	X(SESSION, C_DecryptVerifyUpdate,                                                          \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (session, part, part_len, out, out_len), (c.bs, part, part_len, out, out_len), DUAL,     \
	  OUT(out, out_len))                                                                       \
	X(IMPL(p11p_generate_key), C_GenerateKey,                                                  \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_ATTRIBUTE_PTR templ,          \
	   CK_ULONG count, CK_OBJECT_HANDLE_PTR key),                                              \
	  (session, mechanism, templ, count, key), (), NONE, NONE)                                 \
	X(IMPL(p11p_generate_key_pair), C_GenerateKeyPair,                                         \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_ATTRIBUTE_PTR pub_templ,      \
	   CK_ULONG pub_count, CK_ATTRIBUTE_PTR priv_templ, CK_ULONG priv_count,                   \
	   CK_OBJECT_HANDLE_PTR pub_key, CK_OBJECT_HANDLE_PTR priv_key),                           \
	  (session, mechanism, pub_templ, pub_count, priv_templ, priv_count, pub_key, priv_key),   \
	  (), NONE, NONE)                                                                          \
	X(IMPL(p11p_wrap_key), C_WrapKey,                                                          \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE wrapping_key,   \
	   CK_OBJECT_HANDLE key, CK_BYTE_PTR wrapped, CK_ULONG_PTR wrapped_len),                   \
	  (session, mechanism, wrapping_key, key, wrapped, wrapped_len), (), NONE,                 \
	  OUT(wrapped, wrapped_len))                                                               \
	X(IMPL(p11p_unwrap_key), C_UnwrapKey,                                                      \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE unwrapping_key, \
	   CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR templ, CK_ULONG count,      \
	   CK_OBJECT_HANDLE_PTR key),                                                              \
	  (session, mechanism, unwrapping_key, wrapped, wrapped_len, templ, count, key), (), NONE, \
	  NONE)                                                                                    \
	X(IMPL(p11p_derive_key), C_DeriveKey,                                                      \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE base_key,       \
	   CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR key),                      \
	  (session, mechanism, base_key, templ, count, key), (), NONE, NONE)                       \
	X(IMPL(p11p_seed_random), C_SeedRandom,                                                    \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR seed, CK_ULONG seed_len),                        \
	  (session, seed, seed_len), (c.bs, seed, seed_len), NONE, NONE)                           \
	X(IMPL(p11p_generate_random), C_GenerateRandom,                                            \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG out_len), (session, out, out_len), \
	  (c.bs, out, out_len), NONE, RAND)                                                        \
	X(SESSION, C_GetFunctionStatus, (CK_SESSION_HANDLE session), (session), (c.bs), NONE,      \
	  NONE)                                                                                    \
	X(SESSION, C_CancelFunction, (CK_SESSION_HANDLE session), (session), (c.bs), NONE, NONE)

#endif
