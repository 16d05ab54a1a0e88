#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/secret.h"

int p11p_file_write_all(int fd, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int p11p_file_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc, saved;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

CK_RV p11p_file_read_fd(int fd, size_t max, bool secret, unsigned char **buf, size_t *len)
{
	unsigned char *b;
	size_t n = 0;

	*buf = NULL;
	*len = 0;
	b = p11p_malloc(max + 1);
	if (b == NULL)
		return CKR_HOST_MEMORY;
	while (n < max + 1) {
		ssize_t r = read(fd, b + n, max + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int saved = errno;

			if (secret)
				p11p_wipe(b, n);
			p11p_free(b);
			errno = saved;
			return CKR_FUNCTION_FAILED;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*buf = b;
	*len = n;
	return CKR_OK;
}

bool p11p_file_is_private(const struct stat *st)
{
	return (st->st_mode & 077) == 0;
}

bool p11p_file_safe_owner(const struct stat *st, bool root_ok)
{
	return (st->st_uid == geteuid() || (root_ok && st->st_uid == 0)) &&
	       (st->st_mode & 022) == 0;
}

CK_RV p11p_file_replace(const char *path, const void *data, size_t len, mode_t mode, char *err,
                        size_t errlen)
{
	char *tmp = NULL, *dir = NULL, *slash;
	CK_RV rv = CKR_HOST_MEMORY;
	int fd = -1;

	if (err == NULL)
		errlen = 0; /* snprintf(NULL, 0, ...) writes nothing */
	tmp = p11p_malloc(strlen(path) + sizeof(".tmp.XXXXXX"));
	dir = p11p_strdup(path);
	if (tmp == NULL || dir == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	strcpy(tmp, path);
	strcat(tmp, ".tmp.XXXXXX");
	slash = strrchr(dir, '/');
	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	rv = CKR_FUNCTION_FAILED;
	/* mkstemp creates the file with mode 0600 (before the umask can only remove bits). */
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
		goto out;
	}
	if (fchmod(fd, mode) != 0 || p11p_file_write_all(fd, data, len) != 0 || fsync(fd) != 0) {
		snprintf(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	if (close(fd) != 0) {
		fd = -1;
		snprintf(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
		goto out_unlink;
	}
	/* Best effort: some file systems refuse fsync on a directory. */
	(void)p11p_file_sync_dir(dir);
	rv = CKR_OK;
	goto out;
out_unlink:
	unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	p11p_free(tmp);
	p11p_free(dir);
	return rv;
}
