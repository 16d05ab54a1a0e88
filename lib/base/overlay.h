/*
 * Overlay files under <state_dir>/slots/ (lib/base/overlay.c): small text
 * files the CLI writes and running processes follow (the member order,
 * ha/order.h; the key-management policy, vkeys/policy.h). A public room
 * header: the CLI includes it, never virt/virt.h.
 */
#ifndef P11P_VIRT_OVERLAY_H
#define P11P_VIRT_OVERLAY_H

#include <stdbool.h>
#include <stddef.h>

/* What identifies a version of an overlay file. */
struct p11p_overlay_stamp {
	int err; /* 0: stat worked; else its errno (ENOENT: no overlay) */
	unsigned long long dev, ino, size;
	long long mtime_s, mtime_ns, ctime_s, ctime_ns;
};

/*
 * p11p_overlay_stamp_of(): what identifies the file's version now (lstat; ENOENT: none).
 * p11p_overlay_read(): 1 read (*buf, *len: p11p_free it), 0 there is none, -1 unreadable,
 * unsafe (not a regular file, writable by others) or larger than max (err: "PATH: why").
 * stamp (may be NULL) receives the version read. p11p_overlay_write(): text to path
 * atomically (temp file 0600 "PATH.tmp.PID", fsync, rename, fsync of the directory), or
 * removes it when text is NULL; called under the writer's lock. 0, or -1 with err.
 */
void p11p_overlay_stamp_of(const char *path, struct p11p_overlay_stamp *s);
bool p11p_overlay_stamp_same(const struct p11p_overlay_stamp *a,
                             const struct p11p_overlay_stamp *b);
int p11p_overlay_read(const char *path, size_t max, struct p11p_overlay_stamp *stamp,
                      unsigned char **buf, size_t *len, char *err, size_t errlen);
int p11p_overlay_write(const char *path, const char *text, char *err, size_t errlen);
/*
 * A slot's overlay file: "<state_dir>/slots/<LABEL><ext>" into buf, LABEL
 * with every byte but [A-Za-z0-9_-] written %XX ("@<slot>" for an empty
 * label). -1 when state_dir is not absolute or the path does not fit.
 */
int p11p_overlay_path(const char *state_dir, const char *label, size_t slot, const char *ext,
                      char *buf, size_t len);
/* A byte written as it is in overlay file names. */
bool p11p_overlay_name_byte(unsigned char ch);

#endif
