/*
 * Overlay files under <state_dir>/slots/ (member order, order.c; key-management
 * policy, policy.c): small text files the CLI writes and running processes
 * follow. Here what both kinds share: what identifies a version of a file
 * (a stamp), and reading and writing one safely.
 */
#include "base/overlay.h"
#include "base/file.h"
#include "base/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void stamp_from(struct p11p_overlay_stamp *s, const struct stat *sb)
{
	memset(s, 0, sizeof(*s));
	s->dev = (unsigned long long)sb->st_dev;
	s->ino = (unsigned long long)sb->st_ino;
	s->size = (unsigned long long)sb->st_size;
	s->mtime_s = (long long)sb->st_mtim.tv_sec;
	s->mtime_ns = (long long)sb->st_mtim.tv_nsec;
	s->ctime_s = (long long)sb->st_ctim.tv_sec;
	s->ctime_ns = (long long)sb->st_ctim.tv_nsec;
}

void p11p_overlay_stamp_of(const char *path, struct p11p_overlay_stamp *s)
{
	struct stat sb;

	memset(s, 0, sizeof(*s));
	if (path != NULL && lstat(path, &sb) == 0)
		stamp_from(s, &sb);
	else
		s->err = path != NULL ? errno : ENOENT;
}

bool p11p_overlay_stamp_same(const struct p11p_overlay_stamp *a, const struct p11p_overlay_stamp *b)
{
	return a->err == b->err && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_s == b->mtime_s && a->mtime_ns == b->mtime_ns && a->ctime_s == b->ctime_s &&
	       a->ctime_ns == b->ctime_ns;
}

int p11p_overlay_read(const char *path, size_t max, struct p11p_overlay_stamp *stamp,
                      unsigned char **buf, size_t *len, char *err, size_t errlen)
{
	struct stat sb;
	int fd, rc = -1;
	CK_RV rv;

	*buf = NULL;
	*len = 0;
	if (stamp != NULL) {
		memset(stamp, 0, sizeof(*stamp));
		stamp->err = ENOENT;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		/* What the next check will see, so that the same failure is reported once. */
		if (stamp != NULL)
			p11p_overlay_stamp_of(path, stamp);
		return -1;
	}
	if (fstat(fd, &sb) != 0) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		goto out;
	}
	if (stamp != NULL)
		stamp_from(stamp, &sb);
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	/* It decides where PINs go or whether HSM keys change: only its owner may write it. */
	if (!p11p_file_safe_owner(&sb, true)) {
		snprintf(
		    err, errlen,
		    "%s: writable by others than its owner, or owned by another user (uid %lu, "
		    "mode %04o)",
		    path, (unsigned long)sb.st_uid, (unsigned)(sb.st_mode & 07777));
		goto out;
	}
	if ((unsigned long long)sb.st_size > max) {
		snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
		goto out;
	}
	/* Reads one byte past the limit to see a file that grew after fstat. */
	rv = p11p_file_read_fd(fd, max, false, buf, len);
	if (rv == CKR_HOST_MEMORY)
		snprintf(err, errlen, "%s: out of memory", path);
	else if (rv != CKR_OK)
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
	else
		rc = 1;
out:
	if (rc != 1) {
		p11p_free(*buf);
		*buf = NULL;
		*len = 0;
	}
	close(fd);
	return rc;
}

int p11p_overlay_write(const char *path, const char *text, char *err, size_t errlen)
{
	char dir[PATH_MAX], tmp[PATH_MAX + 32];
	char *slash;
	int fd = -1, rc = -1;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL || strlen(path) >= sizeof(dir)) {
		snprintf(err, errlen, "%s: not an absolute path", path);
		return -1;
	}
	*slash = '\0';
	if (text == NULL) {
		if (unlink(path) != 0 && errno != ENOENT) {
			snprintf(err, errlen, "cannot remove %s: %s", path, strerror(errno));
			return -1;
		}
		goto sync_dir;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == EEXIST && unlink(tmp) == 0) /* a stale one of a crashed writer */
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return -1;
	}
	if (p11p_file_write_all(fd, text, strlen(text)) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	if (fsync(fd) != 0) {
		snprintf(err, errlen, "cannot sync %s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	rc = close(fd);
	fd = -1;
	if (rc != 0) {
		rc = -1;
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	if (rename(tmp, path) != 0) {
		rc = -1;
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		goto out_unlink;
	}
sync_dir:
	if (p11p_file_sync_dir(dir) != 0) {
		snprintf(err, errlen, "cannot sync %s: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
out_unlink:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

bool p11p_overlay_name_byte(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '-';
}

int p11p_overlay_path(const char *state_dir, const char *label, size_t slot, const char *ext,
                      char *buf, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o;
	int n;

	if (state_dir == NULL || state_dir[0] != '/')
		return -1;
	n = label == NULL || label[0] == '\0'
	        ? snprintf(buf, len, "%s/slots/@%zu%s", state_dir, slot, ext)
	        : snprintf(buf, len, "%s/slots/", state_dir);
	if (n < 0 || (size_t)n >= len)
		return -1;
	if (label == NULL || label[0] == '\0')
		return 0;
	o = (size_t)n;
	for (const unsigned char *p = (const unsigned char *)label; *p != '\0'; p++) {
		if (o + 4 >= len)
			return -1;
		if (p11p_overlay_name_byte(*p)) {
			buf[o++] = (char)*p;
		} else {
			buf[o++] = '%';
			buf[o++] = hex[*p >> 4];
			buf[o++] = hex[*p & 15];
		}
	}
	n = snprintf(buf + o, len - o, "%s", ext);
	return n < 0 || (size_t)n >= len - o ? -1 : 0;
}
