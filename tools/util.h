/*
 * Helpers shared by the CLI's commands: output (text escaping, JSON through
 * jansson, errors that --json turns into a JSON object), PIN input, names.
 * Tool code only: never linked into libproxy.so.
 */
#ifndef P11P_TOOLS_UTIL_H
#define P11P_TOOLS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "base/pkcs11.h"
#include "base/secret.h"
#include "config/config.h"

/* Longest PIN the CLI reads: the config's limit, so what we hash can be configured. */
#define CLI_PIN_MAX P11P_MAX_PIN_LEN

/* ---- messages and errors (tools/out.c) ---------------------------------------------------- */

/*
 * Prints "p11proxy: MESSAGE\n" to stderr, control characters escaped (\xNN).
 * Under --json the message is also kept for the JSON error object main()
 * prints on stdout when the command fails without a JSON document of its own.
 */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same without the "p11proxy: " prefix (messages that name their FILE:LINE). */
void cli_error_plain(const char *msg);
/* --json is on (main sets it once the command line is read). */
void cli_set_json(bool on);
bool cli_json_on(void);
/*
 * After the command ran: under --json, a failed command (rc != 0) that
 * printed no JSON document prints {"ok":false,"exit":rc,"error":...,
 * "errors":[...]} on stdout.
 */
void cli_finish(const char *command, int rc);
/* Frees what the output layer keeps (the escaped strings, the messages). */
void cli_out_free(void);

/*
 * s for a terminal: control characters (bytes < 0x20 and 0x7f) as \xNN.
 * The result stays valid until 32 more calls (a ring of buffers), so several
 * can appear in one printf. NULL gives "(null)".
 */
const char *cli_esc(const char *s);
/* The same for len bytes that may hold NULs (labels, ids). */
const char *cli_escn(const void *p, size_t len);

/* ---- JSON (jansson) ------------------------------------------------------------------------ */

/*
 * A JSON string of s (bytes that are not UTF-8 become U+FFFD, so whatever a
 * backend puts in a token field, the output is valid JSON); NULL gives null.
 */
json_t *cli_jstr(const char *s);
json_t *cli_jstrn(const void *p, size_t len);
/* Prints doc on stdout (one line) and releases it; marks the command as having answered. */
void cli_json_print(json_t *doc);
/* Sets key in obj to v (released with obj); v NULL (out of memory) is ignored. */
void cli_jset(json_t *obj, const char *key, json_t *v);

/* ---- formats ------------------------------------------------------------------------------- */

/* Lowercase hex of bytes through OpenSSL (buf: 2 * len + 1; "" for none). */
const char *cli_hex(const unsigned char *p, size_t len, char *buf, size_t buflen);
/*
 * Hex text (an even number of digits, optional "0x", no separators) into at
 * most max bytes through OpenSSL; the byte count, or -1 when it is not that.
 */
long cli_unhex(const char *s, unsigned char *out, size_t max);
/* A time as ISO 8601 UTC, "2026-12-06T08:00:00Z" (buf: 21 bytes at least); 0: "-". */
const char *cli_time(int64_t t, char *buf, size_t len);
/* The same as JSON: the string, or null for 0. */
json_t *cli_jtime(int64_t t);

/*
 * Names a CK_RV: "CKR_PIN_INCORRECT", the project's own
 * ("P11PROXY_CKR_KEY_DEACTIVATED", include/p11proxy.h), else
 * "CKR_VENDOR_DEFINED+0x..." or "CKR_0x...". A ring of buffers, as cli_esc.
 */
const char *cli_rv(CK_RV rv);

/* ---- PIN input (tools/util.c) -------------------------------------------------------------- */

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
 * (the first line of the file; a file readable by group or others, or owned
 * by another user, is refused, as it would be a PIN for others on the host).
 * NULL with err set on error.
 */
struct p11p_secret *cli_pin_from_source(const char *source, char *err, size_t errlen);

/* "rng,login-required,..." for CK_TOKEN_INFO.flags, into buf ("none" when 0). */
const char *cli_token_flags(CK_FLAGS flags, char *buf, size_t buflen);
/* The same flags as a JSON array of strings. */
json_t *cli_json_token_flags(CK_FLAGS flags);

#endif
