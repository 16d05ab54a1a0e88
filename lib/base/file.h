/*
 * Small file helpers shared by the modules that read bounded files and
 * replace files atomically (config, fragments, member order, index).
 * No messages here beyond p11p_file_replace(): callers word their own.
 */
#ifndef P11P_FILE_H
#define P11P_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "base/pkcs11.h"

/*
 * Writes all of data[0..len) to fd, retrying on EINTR. 0, or -1 with errno
 * set (EIO when write() makes no progress).
 */
int p11p_file_write_all(int fd, const void *data, size_t len);

/* Opens the directory and fsyncs it. 0, or -1 with errno set. */
int p11p_file_sync_dir(const char *dir);

/*
 * Reads fd to its end into a new buffer (p11p_malloc, max + 1 bytes): at most
 * max + 1 bytes, so that a caller can tell "exactly max" from "over". CKR_OK
 * with *buf and *len set; CKR_HOST_MEMORY; or CKR_FUNCTION_FAILED with errno
 * set (nothing allocated). When `secret`, a failed read wipes what it read.
 */
CK_RV p11p_file_read_fd(int fd, size_t max, bool secret, unsigned char **buf, size_t *len);

/* Is the file accessible by its owner only (mode & 077 == 0, the PIN file rule)? */
bool p11p_file_is_private(const struct stat *st);

/*
 * Is the file owned by the effective user (or by root, when root_ok) and not
 * writable by group or others? (Who may decide what the file says.)
 */
bool p11p_file_safe_owner(const struct stat *st, bool root_ok);

/*
 * Replaces path atomically with data[0..len) and the given mode: a temp file
 * "PATH.tmp.XXXXXX" in the same directory (mkostemp), write all, fsync,
 * rename over path, fsync of the directory (best effort: some file systems
 * refuse it). The temp file is removed on any failure. CKR_OK;
 * CKR_HOST_MEMORY with "out of memory"; or CKR_FUNCTION_FAILED with
 * "TMP: cannot create: ...", "TMP: cannot write: ..." or
 * "TMP: cannot rename to PATH: ..." in err.
 */
CK_RV p11p_file_replace(const char *path, const void *data, size_t len, mode_t mode, char *err,
                        size_t errlen);

#endif
