#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "base/file.h"
#include "base/names.h"

/* --- PIN input --------------------------------------------------------------------------- */

static volatile sig_atomic_t pin_signal;

static void pin_on_signal(int sig)
{
	pin_signal = sig;
}

/* Signals that must not leave the terminal with echo off. */
static const int pin_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU};
#define N_PIN_SIGNALS (sizeof(pin_signals) / sizeof(pin_signals[0]))

/*
 * Reads a line into buf from fd. Returns the length, -2 when the line did not
 * fit, -1 on a read error or a signal. Stops at '\n' or end of file.
 */
static long read_line_fd(int fd, char *buf, size_t buflen, bool *eof_first)
{
	size_t len = 0;
	bool too_long = false;
	unsigned char c = 0;

	*eof_first = true;
	for (;;) {
		ssize_t r = read(fd, &c, 1);

		if (r < 0) {
			if (errno == EINTR && pin_signal == 0)
				continue;
			p11p_wipe(&c, sizeof(c));
			return -1;
		}
		if (r == 0)
			break;
		*eof_first = false;
		if (c == '\n')
			break;
		if (len + 1 < buflen)
			buf[len++] = (char)c;
		else
			too_long = true;
	}
	p11p_wipe(&c, sizeof(c));
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	if (too_long) {
		p11p_wipe(buf, buflen);
		return -2;
	}
	return (long)len;
}

long cli_read_pin_tty(const char *prompt, char *buf, size_t buflen)
{
	struct sigaction sa, saved[N_PIN_SIGNALS];
	struct termios old, noecho;
	bool eof_first;
	long len;
	int fd;

	fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		cli_error("cannot open the terminal: %s", strerror(errno));
		return -1;
	}
	if (tcgetattr(fd, &old) != 0) {
		cli_error("cannot read the terminal settings: %s", strerror(errno));
		close(fd);
		return -1;
	}
	/* No SA_RESTART: a signal must interrupt the read so the terminal is restored. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = pin_on_signal;
	sigemptyset(&sa.sa_mask);
	pin_signal = 0;
	for (size_t i = 0; i < N_PIN_SIGNALS; i++)
		sigaction(pin_signals[i], &sa, &saved[i]);

	noecho = old;
	noecho.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
	if (write(fd, prompt, strlen(prompt)) < 0) {
		/* The prompt is cosmetic; the read below reports real trouble. */
	}
	if (tcsetattr(fd, TCSAFLUSH, &noecho) != 0) {
		len = -1;
		cli_error("cannot turn off echo: %s", strerror(errno));
		goto out;
	}
	len = read_line_fd(fd, buf, buflen, &eof_first);
	tcsetattr(fd, TCSAFLUSH, &old);
	if (write(fd, "\n", 1) < 0) {
		/* cosmetic, as above */
	}
	if (len == -2)
		cli_error("PIN too long (at most %zu bytes)", buflen - 1);
	else if (len < 0 && pin_signal == 0)
		cli_error("cannot read the PIN: %s", strerror(errno));
out:
	for (size_t i = 0; i < N_PIN_SIGNALS; i++)
		sigaction(pin_signals[i], &saved[i], NULL);
	close(fd);
	if (pin_signal != 0) {
		/* Echo is back on: deliver the signal as if we had not caught it. */
		p11p_wipe(buf, buflen);
		raise(pin_signal);
		return -1;
	}
	return len < 0 ? -1 : len;
}

long cli_read_pin_fd(int fd, const char *what, char *buf, size_t buflen)
{
	bool eof_first;
	long len;

	pin_signal = 0;
	len = read_line_fd(fd, buf, buflen, &eof_first);
	if (len == -2) {
		cli_error("%s: PIN too long (at most %zu bytes)", what, buflen - 1);
		return -1;
	}
	if (len < 0) {
		cli_error("%s: %s", what, strerror(errno));
		return -1;
	}
	if (len == 0) {
		cli_error("%s: %s", what, eof_first ? "no PIN given" : "empty PIN");
		return -1;
	}
	return len;
}

struct p11p_secret *cli_pin_from_source(const char *source, char *err, size_t errlen)
{
	struct p11p_secret *pin = NULL;
	char buf[CLI_PIN_MAX + 1];
	struct stat st;
	bool eof_first;
	long len;
	int fd;

	if (strncmp(source, "env:", 4) == 0) {
		const char *value = getenv(source + 4);

		if (source[4] == '\0') {
			snprintf(err, errlen, "%s: missing variable name", source);
			return NULL;
		}
		if (value == NULL || *value == '\0') {
			snprintf(err, errlen, "%s: variable %s is not set or empty", source,
			         source + 4);
			return NULL;
		}
		if (strlen(value) > CLI_PIN_MAX) {
			snprintf(err, errlen, "%s: PIN too long (at most %d bytes)", source,
			         CLI_PIN_MAX);
			return NULL;
		}
		pin = p11p_secret_new(value, strlen(value));
		if (pin == NULL)
			snprintf(err, errlen, "%s: out of memory", source);
		return pin;
	}
	if (strncmp(source, "file:", 5) != 0 || source[5] == '\0') {
		snprintf(err, errlen, "%s: a PIN source is env:NAME or file:PATH", source);
		return NULL;
	}
	fd = open(source + 5, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", source + 5, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: %s", source + 5, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", source + 5);
		goto out;
	}
	if (!p11p_file_is_private(&st)) {
		snprintf(err, errlen, "%s: mode %04o is too open (use chmod 600)",
		         source + 5, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s: owned by uid %lu, not by this user (uid %lu): chown it",
		         source + 5, (unsigned long)st.st_uid, (unsigned long)geteuid());
		goto out;
	}
	pin_signal = 0;
	len = read_line_fd(fd, buf, sizeof(buf), &eof_first);
	if (len == -2)
		snprintf(err, errlen, "%s: PIN too long (at most %d bytes)", source + 5,
		         CLI_PIN_MAX);
	else if (len < 0)
		snprintf(err, errlen, "%s: %s", source + 5, strerror(errno));
	else if (len == 0)
		snprintf(err, errlen, "%s: empty PIN", source + 5);
	else if ((pin = p11p_secret_new(buf, (size_t)len)) == NULL)
		snprintf(err, errlen, "%s: out of memory", source + 5);
	p11p_wipe(buf, sizeof(buf));
out:
	close(fd);
	return pin;
}

/* --- names --------------------------------------------------------------------------------- */

static const struct {
	CK_FLAGS bit;
	const char *name;
} token_flags[] = {
    {CKF_RNG, "rng"},
    {CKF_WRITE_PROTECTED, "write-protected"},
    {CKF_LOGIN_REQUIRED, "login-required"},
    {CKF_USER_PIN_INITIALIZED, "user-pin-initialized"},
    {CKF_RESTORE_KEY_NOT_NEEDED, "restore-key-not-needed"},
    {CKF_CLOCK_ON_TOKEN, "clock-on-token"},
    {CKF_PROTECTED_AUTHENTICATION_PATH, "protected-authentication-path"},
    {CKF_DUAL_CRYPTO_OPERATIONS, "dual-crypto-operations"},
    {CKF_TOKEN_INITIALIZED, "token-initialized"},
    {CKF_SECONDARY_AUTHENTICATION, "secondary-authentication"},
    {CKF_USER_PIN_COUNT_LOW, "user-pin-count-low"},
    {CKF_USER_PIN_FINAL_TRY, "user-pin-final-try"},
    {CKF_USER_PIN_LOCKED, "user-pin-locked"},
    {CKF_USER_PIN_TO_BE_CHANGED, "user-pin-to-be-changed"},
    {CKF_SO_PIN_COUNT_LOW, "so-pin-count-low"},
    {CKF_SO_PIN_FINAL_TRY, "so-pin-final-try"},
    {CKF_SO_PIN_LOCKED, "so-pin-locked"},
    {CKF_SO_PIN_TO_BE_CHANGED, "so-pin-to-be-changed"},
};
#define N_TOKEN_FLAGS (sizeof(token_flags) / sizeof(token_flags[0]))

const char *cli_token_flags(CK_FLAGS flags, char *buf, size_t buflen)
{
	size_t used = 0;

	if (buflen == 0)
		return "";
	buf[0] = '\0';
	for (size_t i = 0; i < N_TOKEN_FLAGS; i++) {
		int n;

		if ((flags & token_flags[i].bit) == 0)
			continue;
		n = snprintf(buf + used, buflen - used, "%s%s", used > 0 ? "," : "",
		             token_flags[i].name);
		if (n < 0 || (size_t)n >= buflen - used)
			break;
		used += (size_t)n;
	}
	if (used == 0)
		snprintf(buf, buflen, "none");
	return buf;
}


json_t *cli_json_token_flags(CK_FLAGS flags)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < N_TOKEN_FLAGS; i++) {
		if ((flags & token_flags[i].bit) != 0)
			json_array_append_new(a, json_string(token_flags[i].name));
	}
	return a;
}
