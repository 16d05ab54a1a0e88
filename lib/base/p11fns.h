/*
 * The one table of the PKCS#11 2.40 functions (all 68). It drives the
 * module's entry points (lib/entry) and the backend stubs (lib/backend).
 *
 *   X(KIND, NAME, PARAMS, BACKEND_ARGS, OP)
 *
 * KIND says how the entry point is made:
 *   CUSTOM  hand-written (lib/entry/entry.c and lib/virt);
 *   SESSION forwarded: the proxy session handle becomes the member's (c.bs);
 *   CRYPTO  as SESSION, unless the session runs a local operation of that
 *           kind (on a key the proxy holds: lib/virt/local.c);
 *   KEY     as SESSION, and the parameter `key` becomes the member's (bkey);
 *   OBJECT  as SESSION, and the parameter `object` becomes the member's (bobj).
 * BACKEND_ARGS is the argument list of the forwarded call (unused for CUSTOM).
 *
 * OP is the call's part in a cryptographic operation, which the proxy records
 * so that it can replay the operation on another member (lib/virt/op.c):
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
 */
#ifndef P11P_FNS_H
#define P11P_FNS_H

#define P11P_FUNCTIONS(X)                                                                          \
	X(CUSTOM, C_Initialize, (CK_VOID_PTR init_args), (), NONE)                                 \
	X(CUSTOM, C_Finalize, (CK_VOID_PTR reserved), (), NONE)                                    \
	X(CUSTOM, C_GetInfo, (CK_INFO_PTR info), (), NONE)                                         \
	X(CUSTOM, C_GetFunctionList, (CK_FUNCTION_LIST_PTR_PTR list), (), NONE)                    \
	X(CUSTOM, C_GetSlotList,                                                                   \
	  (CK_BBOOL token_present, CK_SLOT_ID_PTR slot_list, CK_ULONG_PTR count), (), NONE)        \
	X(CUSTOM, C_GetSlotInfo, (CK_SLOT_ID slot_id, CK_SLOT_INFO_PTR info), (), NONE)            \
	X(CUSTOM, C_GetTokenInfo, (CK_SLOT_ID slot_id, CK_TOKEN_INFO_PTR info), (), NONE)          \
	X(CUSTOM, C_WaitForSlotEvent, (CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved), \
	  (), NONE)                                                                                \
	X(CUSTOM, C_GetMechanismList,                                                              \
	  (CK_SLOT_ID slot_id, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count), (), NONE)          \
	X(CUSTOM, C_GetMechanismInfo,                                                              \
	  (CK_SLOT_ID slot_id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info), (), NONE)      \
	X(CUSTOM, C_InitToken,                                                                     \
	  (CK_SLOT_ID slot_id, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len, CK_UTF8CHAR_PTR label), (),  \
	  NONE)                                                                                    \
	X(SESSION, C_InitPIN, (CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len),  \
	  (c.bs, pin, pin_len), UNSAFE)                                                            \
	X(CUSTOM, C_SetPIN,                                                                        \
	  (CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,                   \
	   CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len),                                             \
	  (), NONE)                                                                                \
	X(CUSTOM, C_OpenSession,                                                                   \
	  (CK_SLOT_ID slot_id, CK_FLAGS flags, CK_VOID_PTR application, CK_NOTIFY notify,          \
	   CK_SESSION_HANDLE_PTR session),                                                         \
	  (), NONE)                                                                                \
	X(CUSTOM, C_CloseSession, (CK_SESSION_HANDLE session), (), NONE)                           \
	X(CUSTOM, C_CloseAllSessions, (CK_SLOT_ID slot_id), (), NONE)                              \
	X(CUSTOM, C_GetSessionInfo, (CK_SESSION_HANDLE session, CK_SESSION_INFO_PTR info), (),     \
	  NONE)                                                                                    \
	X(SESSION, C_GetOperationState,                                                            \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR state, CK_ULONG_PTR state_len),                  \
	  (c.bs, state, state_len), NONE)                                                          \
	X(CUSTOM, C_SetOperationState,                                                             \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR state, CK_ULONG state_len,                       \
	   CK_OBJECT_HANDLE encryption_key, CK_OBJECT_HANDLE authentication_key),                  \
	  (), NONE)                                                                                \
	X(CUSTOM, C_Login,                                                                         \
	  (CK_SESSION_HANDLE session, CK_USER_TYPE user_type, CK_UTF8CHAR_PTR pin,                 \
	   CK_ULONG pin_len),                                                                      \
	  (), NONE)                                                                                \
	X(CUSTOM, C_Logout, (CK_SESSION_HANDLE session), (), NONE)                                 \
	X(CUSTOM, C_CreateObject,                                                                  \
	  (CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count,                      \
	   CK_OBJECT_HANDLE_PTR object),                                                           \
	  (), NONE)                                                                                \
	X(CUSTOM, C_CopyObject,                                                                    \
	  (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,             \
	   CK_ULONG count, CK_OBJECT_HANDLE_PTR new_object),                                       \
	  (), NONE)                                                                                \
	X(CUSTOM, C_DestroyObject, (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object), (), NONE) \
	X(OBJECT, C_GetObjectSize,                                                                 \
	  (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ULONG_PTR size),                 \
	  (c.bs, bobj, size), NONE)                                                                \
	X(CUSTOM, C_GetAttributeValue,                                                             \
	  (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,             \
	   CK_ULONG count),                                                                        \
	  (c.bs, bobj, templ, count), NONE)                                                        \
	X(CUSTOM, C_SetAttributeValue,                                                             \
	  (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,             \
	   CK_ULONG count),                                                                        \
	  (c.bs, bobj, templ, count), UNSAFE)                                                      \
	X(CUSTOM, C_FindObjectsInit,                                                               \
	  (CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count),                     \
	  (c.bs, templ, count), FINDINIT(templ, count))                                            \
	X(CUSTOM, C_FindObjects,                                                                   \
	  (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR objects, CK_ULONG max_count,            \
	   CK_ULONG_PTR count),                                                                    \
	  (), NONE)                                                                                \
	X(SESSION, C_FindObjectsFinal, (CK_SESSION_HANDLE session), (c.bs), END(P11P_OP_FIND))     \
	X(KEY, C_EncryptInit,                                                                      \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),           \
	  (c.bs, mechanism, bkey), INIT(P11P_OP_ENCRYPT, mechanism, key))                          \
	X(CRYPTO, C_Encrypt,                                                                       \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (c.bs, data, data_len, out, out_len), FINAL(P11P_OP_ENCRYPT, out))                       \
	X(CRYPTO, C_EncryptUpdate,                                                                 \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (c.bs, part, part_len, out, out_len), UPDATE(P11P_OP_ENCRYPT, part, part_len, out))      \
	X(CRYPTO, C_EncryptFinal,                                                                  \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG_PTR out_len),                      \
	  (c.bs, out, out_len), FINAL(P11P_OP_ENCRYPT, out))                                       \
	X(KEY, C_DecryptInit,                                                                      \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),           \
	  (c.bs, mechanism, bkey), INIT(P11P_OP_DECRYPT, mechanism, key))                          \
	X(CRYPTO, C_Decrypt,                                                                       \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (c.bs, data, data_len, out, out_len), FINAL(P11P_OP_DECRYPT, out))                       \
	X(CRYPTO, C_DecryptUpdate,                                                                 \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (c.bs, part, part_len, out, out_len), UPDATE(P11P_OP_DECRYPT, part, part_len, out))      \
	X(CRYPTO, C_DecryptFinal,                                                                  \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG_PTR out_len),                      \
	  (c.bs, out, out_len), FINAL(P11P_OP_DECRYPT, out))                                       \
	X(SESSION, C_DigestInit, (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism),          \
	  (c.bs, mechanism), INIT(P11P_OP_DIGEST, mechanism, CK_INVALID_HANDLE))                   \
	X(SESSION, C_Digest,                                                                       \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (c.bs, data, data_len, out, out_len), FINAL(P11P_OP_DIGEST, out))                        \
	X(SESSION, C_DigestUpdate,                                                                 \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len),                        \
	  (c.bs, part, part_len), UPDATE(P11P_OP_DIGEST, part, part_len, P11P_NO_OUTPUT))          \
	X(KEY, C_DigestKey, (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key), (c.bs, bkey),       \
	  DIGESTKEY(key))                                                                          \
	X(SESSION, C_DigestFinal,                                                                  \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG_PTR out_len),                      \
	  (c.bs, out, out_len), FINAL(P11P_OP_DIGEST, out))                                        \
	X(KEY, C_SignInit,                                                                         \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),           \
	  (c.bs, mechanism, bkey), INIT(P11P_OP_SIGN, mechanism, key))                             \
	X(CRYPTO, C_Sign,                                                                          \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,        \
	   CK_ULONG_PTR sig_len),                                                                  \
	  (c.bs, data, data_len, sig, sig_len), FINAL(P11P_OP_SIGN, sig))                          \
	X(CRYPTO, C_SignUpdate, (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len),  \
	  (c.bs, part, part_len), UPDATE(P11P_OP_SIGN, part, part_len, P11P_NO_OUTPUT))            \
	X(CRYPTO, C_SignFinal, (CK_SESSION_HANDLE session, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len), \
	  (c.bs, sig, sig_len), FINAL(P11P_OP_SIGN, sig))                                          \
	X(KEY, C_SignRecoverInit,                                                                  \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),           \
	  (c.bs, mechanism, bkey), INIT(P11P_OP_SIGN_RECOVER, mechanism, key))                     \
	X(SESSION, C_SignRecover,                                                                  \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,        \
	   CK_ULONG_PTR sig_len),                                                                  \
	  (c.bs, data, data_len, sig, sig_len), FINAL(P11P_OP_SIGN_RECOVER, sig))                  \
	X(KEY, C_VerifyInit,                                                                       \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),           \
	  (c.bs, mechanism, bkey), INIT(P11P_OP_VERIFY, mechanism, key))                           \
	X(CRYPTO, C_Verify,                                                                        \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,        \
	   CK_ULONG sig_len),                                                                      \
	  (c.bs, data, data_len, sig, sig_len), END(P11P_OP_VERIFY))                               \
	X(CRYPTO, C_VerifyUpdate,                                                                  \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len),                        \
	  (c.bs, part, part_len), UPDATE(P11P_OP_VERIFY, part, part_len, P11P_NO_OUTPUT))          \
	X(CRYPTO, C_VerifyFinal, (CK_SESSION_HANDLE session, CK_BYTE_PTR sig, CK_ULONG sig_len),   \
	  (c.bs, sig, sig_len), END(P11P_OP_VERIFY))                                               \
	X(KEY, C_VerifyRecoverInit,                                                                \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),           \
	  (c.bs, mechanism, bkey), INIT(P11P_OP_VERIFY_RECOVER, mechanism, key))                   \
	X(SESSION, C_VerifyRecover,                                                                \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR sig, CK_ULONG sig_len, CK_BYTE_PTR data,         \
	   CK_ULONG_PTR data_len),                                                                 \
	  (c.bs, sig, sig_len, data, data_len), FINAL(P11P_OP_VERIFY_RECOVER, data))               \
	X(SESSION, C_DigestEncryptUpdate,                                                          \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (c.bs, part, part_len, out, out_len), DUAL)                                              \
	X(SESSION, C_DecryptDigestUpdate,                                                          \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (c.bs, part, part_len, out, out_len), DUAL)                                              \
	X(SESSION, C_SignEncryptUpdate,                                                            \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (c.bs, part, part_len, out, out_len), DUAL)                                              \
	X(SESSION, C_DecryptVerifyUpdate,                                                          \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len, CK_BYTE_PTR out,        \
	   CK_ULONG_PTR out_len),                                                                  \
	  (c.bs, part, part_len, out, out_len), DUAL)                                              \
	X(CUSTOM, C_GenerateKey,                                                                   \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_ATTRIBUTE_PTR templ,          \
	   CK_ULONG count, CK_OBJECT_HANDLE_PTR key),                                              \
	  (), NONE)                                                                                \
	X(CUSTOM, C_GenerateKeyPair,                                                               \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_ATTRIBUTE_PTR pub_templ,      \
	   CK_ULONG pub_count, CK_ATTRIBUTE_PTR priv_templ, CK_ULONG priv_count,                   \
	   CK_OBJECT_HANDLE_PTR pub_key, CK_OBJECT_HANDLE_PTR priv_key),                           \
	  (), NONE)                                                                                \
	X(CUSTOM, C_WrapKey,                                                                       \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE wrapping_key,   \
	   CK_OBJECT_HANDLE key, CK_BYTE_PTR wrapped, CK_ULONG_PTR wrapped_len),                   \
	  (), NONE)                                                                                \
	X(CUSTOM, C_UnwrapKey,                                                                     \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE unwrapping_key, \
	   CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR templ, CK_ULONG count,      \
	   CK_OBJECT_HANDLE_PTR key),                                                              \
	  (), NONE)                                                                                \
	X(CUSTOM, C_DeriveKey,                                                                     \
	  (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE base_key,       \
	   CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR key),                      \
	  (), NONE)                                                                                \
	X(CUSTOM, C_SeedRandom, (CK_SESSION_HANDLE session, CK_BYTE_PTR seed, CK_ULONG seed_len),  \
	  (c.bs, seed, seed_len), NONE)                                                            \
	X(CUSTOM, C_GenerateRandom,                                                                \
	  (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG out_len), (c.bs, out, out_len),    \
	  NONE)                                                                                    \
	X(SESSION, C_GetFunctionStatus, (CK_SESSION_HANDLE session), (c.bs), NONE)                 \
	X(SESSION, C_CancelFunction, (CK_SESSION_HANDLE session), (c.bs), NONE)

#endif
