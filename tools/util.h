/*
 * Helpers shared by the CLI's commands: JSON output, PIN input, messages.
 * Tool code only: never linked into libproxy.so.
 */
#ifndef P11P_TOOLS_UTIL_H
#define P11P_TOOLS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "base/pkcs11.h"
#include "base/secret.h"
#include "config/config.h"

/* Longest PIN the CLI reads: the config's limit, so what we hash can be configured. */
#define CLI_PIN_MAX P11P_MAX_PIN_LEN

/* Prints "p11proxy: MESSAGE\n" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Writes s as a JSON string literal (quotes included): ", \ and control
 * characters are escaped; bytes that are not valid UTF-8 become U+FFFD, so the
 * output is always valid JSON whatever a backend put in a token field.
 * s == NULL writes null.
 */
void cli_json_str(FILE *f, const char *s);

/*
 * Reads a PIN from the controlling terminal (/dev/tty) with echo off; the
 * terminal state is restored even when a signal interrupts the read.
 * Returns the PIN length, or -1 (message printed) on error / no terminal.
 */
long cli_read_pin_tty(const char *prompt, char *buf, size_t buflen);

/*
 * Reads one line (the PIN, without its "\n" or "\r\n") from a file
 * descriptor, a byte at a time so that no stdio buffer keeps a copy.
 * -1 on error, empty input or a line longer than buflen - 1 (message printed,
 * naming the input as `what`).
 */
long cli_read_pin_fd(int fd, const char *what, char *buf, size_t buflen);

/*
 * A PIN from a source as the config writes it: "env:NAME" or "file:PATH"
 * (the first line of the file; a file readable by group or others is refused,
 * as it would be a PIN for everyone on the host). NULL with err set on error.
 */
struct p11p_secret *cli_pin_from_source(const char *source, char *err, size_t errlen);

/* "rng,login-required,..." for CK_TOKEN_INFO.flags, into buf ("none" when 0). */
const char *cli_token_flags(CK_FLAGS flags, char *buf, size_t buflen);
/* The same flags as a JSON array of strings. */
void cli_json_token_flags(FILE *f, CK_FLAGS flags);

/* Names a CK_RV: "CKR_PIN_INCORRECT" or "CKR_0x..." for unknown values (buf). */
const char *cli_rv_name(CK_RV rv, char *buf, size_t buflen);

#endif
