/*
 * The CLI's output layer: messages with control characters escaped, JSON
 * through jansson, and the JSON error object of a failed command under
 * --json. Single-threaded use (the CLI's main thread).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "base/names.h"
#include "p11proxy.h"
#include "util.h"

#define RING 32

static bool json_mode;
static bool answered;  /* a JSON document went to stdout */
static json_t *errors; /* the messages, under --json */
static char *ring[RING];
static size_t ring_at;

/* Keeps s (taken) in the ring; returns it. */
static const char *ring_keep(char *s)
{
	if (s == NULL)
		return "(out of memory)";
	free(ring[ring_at]);
	ring[ring_at] = s;
	ring_at = (ring_at + 1) % RING;
	return s;
}

static size_t utf8_seq_len(const unsigned char *s, size_t left);

/* Is the valid UTF-8 sequence at b (n bytes) a C1 control character (U+0080..U+009F)? */
static bool is_c1(const unsigned char *b, size_t n)
{
	return n == 2 && b[0] == 0xc2 && b[1] < 0xa0;
}

const char *cli_escn(const void *p, size_t len)
{
	const unsigned char *b = p;
	char *out = malloc(4 * len + 1);
	size_t o = 0;

	if (out == NULL)
		return ring_keep(NULL);
	/* Printable UTF-8 goes as it is; controls, DEL, C1 controls and bad bytes as \xNN. */
	for (size_t i = 0; i < len;) {
		size_t n = b[i] < 0x20 || b[i] == 0x7f ? 0 : utf8_seq_len(b + i, len - i);

		if (n == 0 || is_c1(b + i, n)) {
			for (size_t k = 0; k < (n == 0 ? 1 : n); k++)
				o += (size_t)snprintf(out + o, 5, "\\x%02x", b[i + k]);
			i += n == 0 ? 1 : n;
			continue;
		}
		memcpy(out + o, b + i, n);
		o += n;
		i += n;
	}
	out[o] = '\0';
	return ring_keep(out);
}

const char *cli_esc(const char *s)
{
	return s == NULL ? "(null)" : cli_escn(s, strlen(s));
}

void cli_set_json(bool on)
{
	json_mode = on;
}

bool cli_json_on(void)
{
	return json_mode;
}

static void keep_message(const char *msg)
{
	if (!json_mode)
		return;
	if (errors == NULL)
		errors = json_array();
	if (errors != NULL)
		json_array_append_new(errors, cli_jstr(msg));
}

void cli_error_plain(const char *msg)
{
	fprintf(stderr, "%s\n", cli_esc(msg));
	keep_message(msg);
}

void cli_error(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "p11proxy: %s\n", cli_esc(buf));
	keep_message(buf);
}

void cli_finish(const char *command, int rc)
{
	json_t *doc;

	if (!json_mode || rc == 0 || answered)
		return;
	doc = json_object();
	if (doc == NULL)
		return;
	cli_jset(doc, "ok", json_false());
	cli_jset(doc, "exit", json_integer(rc));
	cli_jset(doc, "command", cli_jstr(command));
	cli_jset(doc, "error",
	         errors != NULL && json_array_size(errors) > 0
	             ? json_incref(json_array_get(errors, 0))
	             : cli_jstr(rc == 2 ? "bad command line" : "failed"));
	cli_jset(doc, "errors", errors != NULL ? json_incref(errors) : json_array());
	cli_json_print(doc);
}

void cli_out_free(void)
{
	for (size_t i = 0; i < RING; i++) {
		free(ring[i]);
		ring[i] = NULL;
	}
	json_decref(errors);
	errors = NULL;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..left), or 0 when there is none. */
static size_t utf8_seq_len(const unsigned char *s, size_t left)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

json_t *cli_jstrn(const void *p, size_t len)
{
	const unsigned char *b = p;
	unsigned char *clean;
	size_t o = 0;
	json_t *j;

	if (p == NULL)
		return json_null();
	/* Valid UTF-8 (NULs included) goes as it is; else each bad byte becomes U+FFFD. */
	clean = malloc(3 * len + 1);
	if (clean == NULL)
		return NULL;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq_len(b + i, len - i);

		if (n == 0) {
			memcpy(clean + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(clean + o, b + i, n);
		o += n;
		i += n;
	}
	j = json_stringn((const char *)clean, o);
	free(clean);
	return j;
}

json_t *cli_jstr(const char *s)
{
	return s == NULL ? json_null() : cli_jstrn(s, strlen(s));
}

void cli_jset(json_t *obj, const char *key, json_t *v)
{
	if (obj != NULL && v != NULL)
		json_object_set_new(obj, key, v);
	else
		json_decref(v);
}

void cli_json_print(json_t *doc)
{
	if (doc == NULL) {
		cli_error("out of memory");
		return;
	}
	json_dumpf(doc, stdout, JSON_COMPACT);
	fputc('\n', stdout);
	json_decref(doc);
	answered = true;
}

/* ---- formats ------------------------------------------------------------------------------- */

const char *cli_hex(const unsigned char *p, size_t len, char *buf, size_t buflen)
{
	size_t n = 0;

	if (buflen == 0)
		return "";
	buf[0] = '\0';
	if (len == 0 || 2 * len + 1 > buflen)
		return buf;
	if (OPENSSL_buf2hexstr_ex(buf, buflen, &n, p, (long)len, '\0') != 1) {
		buf[0] = '\0';
		return buf;
	}
	for (char *c = buf; *c != '\0'; c++)
		*c = (char)tolower((unsigned char)*c);
	return buf;
}

long cli_unhex(const char *s, unsigned char *out, size_t max)
{
	size_t n, got = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	n = strlen(s);
	if (n == 0 || n % 2 != 0 || n / 2 > max || strspn(s, "0123456789abcdefABCDEF") != n)
		return -1;
	if (OPENSSL_hexstr2buf_ex(out, max, &got, s, '\0') != 1 || got != n / 2)
		return -1;
	return (long)got;
}

const char *cli_time(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "-");
	return buf;
}

json_t *cli_jtime(int64_t t)
{
	char buf[40];

	if (t <= 0)
		return json_null();
	return json_string(cli_time(t, buf, sizeof(buf)));
}

const char *cli_rv(CK_RV rv)
{
	const char *name = p11p_ckr_name(rv);
	char *s = malloc(48);

	if (s == NULL)
		return name != NULL ? name : "CKR_?";
	if (name != NULL)
		snprintf(s, 48, "%s", name);
	else if (rv >= CKR_VENDOR_DEFINED)
		snprintf(s, 48, "CKR_VENDOR_DEFINED+0x%lx", (unsigned long)(rv - CKR_VENDOR_DEFINED));
	else
		snprintf(s, 48, "CKR_0x%08lx", (unsigned long)rv);
	return ring_keep(s);
}
