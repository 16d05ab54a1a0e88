/*
 * Virtual PIN state (pinstate.h): the count of wrong user PINs the proxy
 * checked itself, per slot, in a small file every process of the host
 * shares, and what the module makes of it (token flags, CKR_PIN_LOCKED).
 *
 * The module keeps the count as last read in the slot (global lock) with
 * the file's stamp (base/overlay.h): C_GetTokenInfo costs an lstat(2), and
 * a read only when the file changed. A file changed within the stamp's
 * granularity of the moment it was read may change again with the same
 * stamp (a coarse clock, the same size), so such a read is not trusted
 * until it is P11P_PIN_RACY_MS old: it is read again (git's "racily clean"
 * index entries).
 */
#include "virt/pinstate.h"
#include "base/file.h"
#include "base/log.h"
#include "base/mem.h"
#include "virt/virt.h"
#include "virt/core.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PIN_FILE_MAX     64   /* "user_failures N\n" */
#define PIN_LOCK_WAIT_MS 2000 /* bound on waiting for another process's flock */
#define P11P_PIN_RACY_MS 2000 /* a read this close to the file's mtime is read again */

int p11p_pinstate_path(const struct p11p_config *cfg, size_t slot, char *buf, size_t len)
{
	if (cfg == NULL || slot >= cfg->n_slots)
		return -1;
	return p11p_overlay_path(cfg->state_dir, cfg->slots[slot].label, slot, P11P_PINSTATE_EXT,
	                         buf, len);
}

unsigned long p11p_pinstate_max(const struct p11p_slot_cfg *sc)
{
	if (sc == NULL || sc->pin_max_tries == 0)
		return P11P_PIN_MAX_TRIES_DEFAULT;
	return sc->pin_max_tries;
}

CK_FLAGS p11p_pinstate_flags(unsigned long fails, unsigned long max)
{
	CK_FLAGS f = 0;

	if (max == 0)
		max = P11P_PIN_MAX_TRIES_DEFAULT;
	if (fails >= max)
		return CKF_USER_PIN_LOCKED;
	if (fails > 0)
		f |= CKF_USER_PIN_COUNT_LOW;
	if (max - fails == 1)
		f |= CKF_USER_PIN_FINAL_TRY;
	return f;
}

/* flock with a deadline: another process holds it for a read or a write at most. */
static int lock_file(int fd, int how)
{
	unsigned long long until = p11p_now_ms() + PIN_LOCK_WAIT_MS;
	struct timespec pause = {0, 2 * 1000 * 1000};

	for (;;) {
		if (flock(fd, how | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		if (p11p_now_ms() >= until) {
			errno = ETIMEDOUT;
			return -1;
		}
		nanosleep(&pause, NULL);
	}
}

/* "user_failures N\n", nothing else. */
static bool parse(const unsigned char *buf, size_t len, unsigned long *fails)
{
	static const char key[] = "user_failures ";
	unsigned long v = 0;
	size_t i = sizeof(key) - 1;

	if (len < i + 2 || memcmp(buf, key, i) != 0)
		return false;
	if (buf[i] < '0' || buf[i] > '9')
		return false;
	for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
		if (v > (ULONG_MAX - 9) / 10)
			return false;
		v = v * 10 + (unsigned long)(buf[i] - '0');
	}
	if (i + 1 != len || buf[i] != '\n')
		return false;
	*fails = v;
	return true;
}

static bool safe(int fd, const char *path, struct stat *sb, char *err, size_t errlen)
{
	if (fstat(fd, sb) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return false;
	}
	if (!S_ISREG(sb->st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		return false;
	}
	if (!p11p_file_safe_owner(sb, true)) {
		snprintf(err, errlen, "%s: unsafe (owned by another user, or writable by others)",
		         path);
		return false;
	}
	return true;
}

/* Reads the locked fd from the start: 0 (an empty file counts 0) or -1 with err. */
static int read_locked(int fd, const char *path, unsigned long *fails, char *err, size_t errlen)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc = -1;

	if (lseek(fd, 0, SEEK_SET) != 0 ||
	    p11p_file_read_fd(fd, PIN_FILE_MAX, false, &buf, &len) != CKR_OK) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	if (len == 0) {
		*fails = 0;
		rc = 0;
	} else if (len <= PIN_FILE_MAX && parse(buf, len, fails)) {
		rc = 0;
	} else {
		snprintf(err, errlen, "%s: damaged (expected one line \"user_failures N\")", path);
	}
	p11p_free(buf);
	return rc;
}

int p11p_pinstate_read(const char *path, unsigned long *fails, struct p11p_overlay_stamp *stamp,
                       char *err, size_t errlen)
{
	struct stat sb;
	int fd, rc = -1;

	*fails = 0;
	if (stamp != NULL) {
		memset(stamp, 0, sizeof(*stamp));
		stamp->err = ENOENT;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
		return 0;
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		if (stamp != NULL)
			p11p_overlay_stamp_of(path, stamp);
		return P11P_PINSTATE_NO_ACCESS;
	}
	if (!safe(fd, path, &sb, err, errlen))
		goto out;
	if (lock_file(fd, LOCK_SH) != 0) {
		snprintf(err, errlen, "%s: cannot lock: %s", path, strerror(errno));
		rc = P11P_PINSTATE_BUSY;
		goto out;
	}
	/* The version read: its stamp under the lock, no writer in between (never replaced). */
	if (stamp != NULL)
		p11p_overlay_stamp_of(path, stamp);
	rc = read_locked(fd, path, fails, err, errlen) == 0 ? 1 : -1;
	flock(fd, LOCK_UN);
out:
	if (rc < 0 && stamp != NULL)
		p11p_overlay_stamp_of(path, stamp);
	close(fd);
	return rc;
}

/* The directory of path, created (0700) when its own parent (state_dir) exists. */
static void make_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	if (strlen(path) >= sizeof(dir))
		return;
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return;
	*slash = '\0';
	(void)mkdir(dir, 0700);
}

int p11p_pinstate_update(const char *path, bool fail, unsigned long *fails, char *err,
                         size_t errlen)
{
	char text[PIN_FILE_MAX];
	unsigned long n = 0;
	struct stat sb;
	bool damaged;
	int fd, len, rc = -1;

	if (fails != NULL)
		*fails = 0;
	if (fail) {
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
		if (fd < 0 && errno == ENOENT) {
			make_parent(path);
			fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
		}
	} else {
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
		if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
			return 0;
	}
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot open for writing: %s", path, strerror(errno));
		return -1;
	}
	if (!safe(fd, path, &sb, err, errlen))
		goto out;
	if (lock_file(fd, LOCK_EX) != 0) {
		snprintf(err, errlen, "%s: cannot lock: %s", path, strerror(errno));
		goto out;
	}
	/* A damaged file is rewritten: a reset repairs it, a wrong PIN counts from 1. */
	damaged = read_locked(fd, path, &n, err, errlen) != 0;
	if (damaged)
		n = 0;
	if (!fail && !damaged && n == 0 && sb.st_size > 0) {
		rc = 0;
		goto unlock;
	}
	if (fail && n < ULONG_MAX)
		n++;
	else if (!fail)
		n = 0;
	len = snprintf(text, sizeof(text), "user_failures %lu\n", n);
	if (len < 0 || (size_t)len >= sizeof(text) || lseek(fd, 0, SEEK_SET) != 0 ||
	    p11p_file_write_all(fd, text, (size_t)len) != 0 || ftruncate(fd, len) != 0 ||
	    fsync(fd) != 0) {
		snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
		goto unlock;
	}
	if (fails != NULL)
		*fails = n;
	rc = 0;
unlock:
	flock(fd, LOCK_UN);
out:
	close(fd);
	return rc;
}

/* ---- the module's view ------------------------------------------------------------------- */

static unsigned long long realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (unsigned long long)ts.tv_sec * 1000ULL +
	       (unsigned long long)ts.tv_nsec / 1000000ULL;
}

static bool racy(const struct p11p_overlay_stamp *s, unsigned long long read_ms)
{
	unsigned long long m;

	if (s->err != 0 || s->mtime_s < 0)
		return false;
	m = (unsigned long long)s->mtime_s * 1000ULL + (unsigned long long)s->mtime_ns / 1000000ULL;
	return m + P11P_PIN_RACY_MS >= read_ms;
}

/* The slot as `p11proxy pin reset` takes it: its label, or its id without one (quick start). */
static const char *slot_name(const struct p11p_vslot *vs, char *buf, size_t len)
{
	if (vs->head.cfg->label != NULL && vs->head.cfg->label[0] != '\0')
		return vs->head.cfg->label;
	snprintf(buf, len, "%lu", (unsigned long)vs->head.id);
	return buf;
}

static bool slot_path(const struct p11p_state *st, const struct p11p_vslot *vs, char *buf,
                      size_t len)
{
	return p11p_pinstate_path(st->head.cfg, (size_t)vs->head.id, buf, len) == 0;
}

/*
 * The slot's count now: true with *fails, or false when the state file is
 * damaged or unsafe (it then counts as locked: the message names the fix).
 * A file this process may not open (another user's) leaves the count to
 * this process, as when there is no usable state_dir.
 */
static bool current(struct p11p_state *st, struct p11p_vslot *vs, unsigned long *fails)
{
	static struct p11p_ratelimit rl;
	char nb[24];
	struct p11p_overlay_stamp now, got;
	char path[PATH_MAX], err[PATH_MAX + 128];
	unsigned long long read_ms;
	unsigned long n;
	bool loaded, local, damaged;
	int rc;

	p11p_lock();
	loaded = vs->pin_loaded;
	local = vs->pin_local;
	damaged = vs->pin_damaged;
	*fails = vs->pin_fails;
	got = vs->pin_stamp;
	read_ms = vs->pin_read_ms;
	p11p_unlock();
	if (local || !slot_path(st, vs, path, sizeof(path)))
		return true;
	p11p_overlay_stamp_of(path, &now);
	if (loaded && p11p_overlay_stamp_same(&now, &got) && !racy(&got, read_ms))
		return !damaged;
	read_ms = realtime_ms();
	err[0] = '\0';
	rc = p11p_pinstate_read(path, &n, &got, err, sizeof(err));
	if (rc == P11P_PINSTATE_BUSY)
		return !damaged; /* held too long by another process: the count last read */
	if (rc == P11P_PINSTATE_NO_ACCESS) {
		/* Not ours to read (another user's state_dir): counted in this process. */
		p11p_lock();
		local = !vs->pin_local;
		vs->pin_local = true;
		vs->pin_loaded = true;
		vs->pin_damaged = false;
		*fails = vs->pin_fails;
		p11p_unlock();
		if (local)
			p11p_message("slot %s: wrong PINs are counted in this process only (%s)",
			             slot_name(vs, nb, sizeof(nb)), err);
		return true;
	}
	p11p_lock();
	if (!vs->pin_local) {
		vs->pin_loaded = true;
		vs->pin_damaged = rc < 0;
		vs->pin_fails = rc < 0 ? 0 : n;
		vs->pin_stamp = got;
		vs->pin_read_ms = read_ms;
	}
	p11p_unlock();
	if (rc < 0) {
		p11p_message_limited(&rl,
		                     "slot %s: the PIN state is damaged (%s): every PIN is "
		                     "refused until `p11proxy pin reset %s`",
		                     slot_name(vs, nb, sizeof(nb)), err,
		                     slot_name(vs, nb, sizeof(nb)));
		return false;
	}
	*fails = n;
	return true;
}

/* Does the proxy check this member's user PIN itself? */
static bool checked_here(const struct p11p_member *m)
{
	return m != NULL && m->cfg != NULL && m->cfg->pin != NULL;
}

void p11p_pin_token_flags(struct p11p_state *st, struct p11p_vslot *vs, const struct p11p_member *m,
                          CK_FLAGS *flags)
{
	unsigned long n;
	CK_FLAGS mine;

	if (!checked_here(m))
		return;
	mine = current(st, vs, &n) ? p11p_pinstate_flags(n, p11p_pinstate_max(vs->head.cfg))
	                           : CKF_USER_PIN_LOCKED;
	*flags = (*flags & ~(CK_FLAGS)(CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY |
	                               CKF_USER_PIN_LOCKED | CKF_USER_PIN_TO_BE_CHANGED)) |
	         mine;
}

CK_RV p11p_pin_check_locked(struct p11p_state *st, struct p11p_vslot *vs)
{
	static struct p11p_ratelimit rl;
	char nb[24];
	unsigned long n, max = p11p_pinstate_max(vs->head.cfg);

	if (!current(st, vs, &n))
		return CKR_PIN_LOCKED;
	if (n < max)
		return CKR_OK;
	p11p_message_limited(&rl,
	                     "slot %s: the user PIN is locked after %lu wrong PINs "
	                     "(pin_max_tries %lu): `p11proxy pin reset %s` unlocks it",
	                     slot_name(vs, nb, sizeof(nb)), n, max, slot_name(vs, nb, sizeof(nb)));
	return CKR_PIN_LOCKED;
}

/* Records n in the slot's view (in-process only: local). */
static void remember(struct p11p_vslot *vs, unsigned long n, bool local)
{
	p11p_lock();
	vs->pin_fails = n;
	vs->pin_damaged = false;
	if (local) {
		vs->pin_local = true;
		vs->pin_loaded = true;
	} else {
		/* Read again next time: the stamp of our own write is not known here. */
		vs->pin_loaded = false;
	}
	p11p_unlock();
}

void p11p_pin_wrong(struct p11p_state *st, struct p11p_vslot *vs)
{
	static struct p11p_ratelimit rl;
	char nb[24];
	char path[PATH_MAX], err[PATH_MAX + 128];
	unsigned long n = 0, max = p11p_pinstate_max(vs->head.cfg);
	bool local;

	p11p_lock();
	local = vs->pin_local;
	n = vs->pin_fails;
	p11p_unlock();
	err[0] = '\0';
	if (!local && slot_path(st, vs, path, sizeof(path)) &&
	    p11p_pinstate_update(path, true, &n, err, sizeof(err)) == 0) {
		remember(vs, n, false);
	} else {
		/* No shared file: the count is this process's alone, still enforced. */
		if (!local)
			p11p_message("slot %s: wrong PINs are counted in this process only (%s): "
			             "state_dir must exist and be writable for this user",
			             slot_name(vs, nb, sizeof(nb)),
			             err[0] != '\0' ? err : "no usable state_dir");
		if (n < ULONG_MAX)
			n++;
		remember(vs, n, true);
	}
	if (n >= max)
		p11p_message_limited(&rl,
		                     "slot %s: the user PIN is now locked after %lu wrong PINs: "
		                     "`p11proxy pin reset %s` unlocks it",
		                     slot_name(vs, nb, sizeof(nb)), n,
		                     slot_name(vs, nb, sizeof(nb)));
}

void p11p_pin_good(struct p11p_state *st, struct p11p_vslot *vs)
{
	static struct p11p_ratelimit rl;
	char nb[24];
	char path[PATH_MAX], err[PATH_MAX + 128];
	unsigned long n;
	bool local;

	/* Nothing to write when no wrong PIN was counted (the common case: a read at most). */
	if (current(st, vs, &n) && n == 0)
		return;
	p11p_lock();
	local = vs->pin_local;
	p11p_unlock();
	err[0] = '\0';
	if (!local && slot_path(st, vs, path, sizeof(path)) &&
	    p11p_pinstate_update(path, false, NULL, err, sizeof(err)) != 0)
		p11p_message_limited(&rl, "slot %s: the PIN state cannot be cleared: %s",
		                     slot_name(vs, nb, sizeof(nb)), err);
	remember(vs, 0, local);
}

void p11p_pin_reset(struct p11p_state *st, struct p11p_vslot *vs)
{
	char nb[24];
	char path[PATH_MAX], err[PATH_MAX + 128];
	bool local, any = false;

	/* Only a slot whose PIN the proxy checks has a virtual PIN state. */
	for (size_t i = 0; i < vs->head.n_members; i++)
		any = any || checked_here(&vs->head.members[i]);
	if (!any)
		return;
	p11p_lock();
	local = vs->pin_local;
	p11p_unlock();
	err[0] = '\0';
	/* Written whatever was there (a damaged file too), as `p11proxy pin reset`. */
	if (!local && slot_path(st, vs, path, sizeof(path)) &&
	    p11p_pinstate_update(path, false, NULL, err, sizeof(err)) != 0)
		p11p_message("slot %s: the PIN state cannot be reset: %s (`p11proxy pin reset %s`)",
		             slot_name(vs, nb, sizeof(nb)), err, slot_name(vs, nb, sizeof(nb)));
	remember(vs, 0, local);
}
