/*
 * Configuration layer: proxy.yaml, the quick-start environment, PIN sources
 * and PIN hashes. The catalogue in tests/data/config/ is copied into a temp
 * directory ("@TMPDIR@" replaced by its path) because PIN files need mode
 * 0600, which git does not keep.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/secret.h"
#include "config/config.h"
#include "base/ossl.h"

#ifndef P11P_TEST_SRCDIR
#define P11P_TEST_SRCDIR "tests"
#endif
#define DATA           P11P_TEST_SRCDIR "/data/config/"
#define EXAMPLE        P11P_TEST_SRCDIR "/../proxy-conf/proxy.yaml"
#define TEST_HASH_ITER 1000

static char tmpdir[256];

/* ---- helpers ----------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

/* s with every `from` replaced by `to` (malloc'd). */
static char *replace(const char *s, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to), n = 0;
	const char *p;
	char *out, *o;

	for (p = s; (p = strstr(p, from)) != NULL; p += fl)
		n++;
	out = malloc(strlen(s) + n * tl + 1);
	ck_assert_ptr_nonnull(out);
	for (o = out, p = s;;) {
		const char *q = strstr(p, from);

		if (q == NULL) {
			strcpy(o, p);
			break;
		}
		memcpy(o, p, (size_t)(q - p));
		o += q - p;
		memcpy(o, to, tl);
		o += tl;
		p = q + fl;
	}
	return out;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

/* Copies tests/data/config/NAME into the temp dir with @TMPDIR@ replaced. */
static void stage(const char *name, char *out, size_t outlen)
{
	char src[512];
	char *text, *sub;

	snprintf(src, sizeof(src), DATA "%s", name);
	text = slurp(src, NULL);
	sub = replace(text, "@TMPDIR@", tmpdir);
	snprintf(out, outlen, "%s/%s", tmpdir, name);
	write_file(out, sub, strlen(sub), 0644);
	free(text);
	free(sub);
}

static struct p11p_config *load_staged(const char *name, char *err, size_t errlen)
{
	char path[512];

	stage(name, path, sizeof(path));
	return p11p_config_load(path, err, errlen);
}

static void clear_env(void)
{
	static const char *const vars[] = {"P11PROXY_CONF",   "PKCS11_LIB_PATH",  "HSM_SLOT",
	                                   "HSM_TOKEN_LABEL", "HSM_TOKEN_SERIAL", "HSM_PIN",
	                                   "HSM_USE_RAND"};

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	setenv("P11P_TEST_PIN", "1234", 1);
	setenv("P11P_TEST_EMPTY", "", 1);
	unsetenv("P11P_TEST_UNSET");
}

static void setup(void)
{
	char p[512];
	char longpin[300];

	clear_env();
	snprintf(tmpdir, sizeof(tmpdir), "%s/p11p-config.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(p, sizeof(p), "%s/fake-module.so", tmpdir);
	write_file(p, "", 0, 0644);
	snprintf(p, sizeof(p), "%s/member.pin", tmpdir);
	write_file(p, "5678\r\n", 6, 0600);
	snprintf(p, sizeof(p), "%s/open.pin", tmpdir);
	write_file(p, "5678\n", 5, 0640);
	snprintf(p, sizeof(p), "%s/empty.pin", tmpdir);
	write_file(p, "\n", 1, 0600);
	memset(longpin, 'a', sizeof(longpin));
	snprintf(p, sizeof(p), "%s/long.pin", tmpdir);
	write_file(p, longpin, sizeof(longpin), 0600);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void teardown(void)
{
	p11p_mem_fail_reset();
	if (tmpdir[0] != '\0')
		nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
	p11p_ossl_ctx_free();
}

/* ---- valid files ------------------------------------------------------------ */

START_TEST(test_good_single)
{
	char err[512];
	struct p11p_config *cfg = load_staged("good-single.yaml", err, sizeof(err));

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(err, "");
	ck_assert_uint_eq(cfg->n_backends, 1);
	ck_assert_str_eq(cfg->backends[0].name, "hsm");
	ck_assert_str_eq(cfg->backends[0].module, "/bin/sh");
	ck_assert_uint_eq(cfg->backends[0].pos.line, 3);
	ck_assert_uint_eq(cfg->backends[0].pos.column, 5);
	ck_assert_uint_eq(cfg->n_slots, 1);
	ck_assert_str_eq(cfg->slots[0].label, "payments");
	ck_assert_ptr_null(cfg->slots[0].user_pin_hash);
	ck_assert_uint_eq(cfg->slots[0].n_members, 1);
	ck_assert_uint_eq(cfg->slots[0].members[0].backend, 0);
	ck_assert_int_eq(cfg->slots[0].members[0].sel, P11P_SEL_TOKEN_LABEL);
	ck_assert_str_eq(cfg->slots[0].members[0].token_label, "m1");
	ck_assert_ptr_null(cfg->slots[0].members[0].pin);
	ck_assert_ptr_null(cfg->slots[0].members[0].pin_source);
	ck_assert_uint_eq(cfg->slots[0].members[0].pos.line, 8);
	ck_assert_uint_eq(cfg->slots[0].members[0].pos.column, 9);
	ck_assert(strstr(cfg->path, "good-single.yaml") != NULL);
	p11p_config_free(cfg);
}
END_TEST

START_TEST(test_good_ha)
{
	char err[512];
	struct p11p_config *cfg = load_staged("good-ha.yaml", err, sizeof(err));
	const struct p11p_ha_cfg *ha;
	const struct p11p_backend_cfg *be;

	ck_assert_msg(cfg != NULL, "%s", err);
	ha = &cfg->slots[0].ha;
	ck_assert_int_eq(ha->mode, P11P_HA_BALANCE);
	ck_assert_uint_eq(ha->probe_interval_ms, 250);
	ck_assert_uint_eq(ha->call_timeout_ms, 2000);
	ck_assert_uint_eq(ha->retries, 2);
	ck_assert_uint_eq(ha->replay_buffer, 1024);
	be = &cfg->backends[0];
	ck_assert_uint_eq(be->n_server_errors, 2);
	ck_assert_uint_eq(be->server_errors[0], CKR_FUNCTION_FAILED);
	ck_assert_uint_eq(be->server_errors[1], 0x80000001UL);
	ck_assert_uint_eq(be->n_client_errors, 1);
	ck_assert_uint_eq(be->client_errors[0], CKR_GENERAL_ERROR);
	ck_assert_uint_eq(ha->key_quorum, 2);
	ck_assert_str_eq(ha->replication_key, "repl");
	ck_assert(ha->single_member_keys);
	ck_assert_int_eq(ha->replication, P11P_REPL_VENDOR);
	ck_assert_uint_eq(ha->replication_wait_ms, 2000);
	ck_assert_str_eq(cfg->state_dir, "/run/p11proxy-test");
	ck_assert_str_eq(cfg->slots[0].members[0].name, "t1");
	ck_assert_str_eq(cfg->slots[0].members[1].name, "second");
	ck_assert_str_eq(cfg->slots[0].members[2].name, "slot-7");
	p11p_config_free(cfg);
	/* Defaults when `ha:` is absent. */
	cfg = load_staged("good-single.yaml", err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ha = &cfg->slots[0].ha;
	ck_assert_int_eq(ha->mode, P11P_HA_FAILOVER);
	ck_assert_uint_eq(ha->probe_interval_ms, P11P_HA_DEFAULT_PROBE_MS);
	ck_assert_uint_eq(ha->call_timeout_ms, 0);
	ck_assert_uint_eq(ha->retries, P11P_HA_DEFAULT_RETRIES);
	ck_assert_uint_eq(ha->replay_buffer, P11P_HA_DEFAULT_REPLAY);
	ck_assert_uint_eq(ha->key_quorum, 0);
	ck_assert_ptr_null(ha->replication_key);
	ck_assert(!ha->single_member_keys);
	ck_assert_int_eq(ha->replication, P11P_REPL_WRAP);
	ck_assert_uint_eq(ha->replication_wait_ms, P11P_HA_DEFAULT_REPL_WAIT_MS);
	ck_assert_str_eq(cfg->state_dir, P11P_DEFAULT_STATE_DIR);

	p11p_config_free(cfg);
}
END_TEST

START_TEST(test_good_multi)
{
	char err[512];
	struct p11p_config *cfg = load_staged("good-multi.yaml", err, sizeof(err));
	const struct p11p_slot_cfg *s;
	const struct p11p_member_cfg *m;

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_uint_eq(cfg->n_backends, 3);
	ck_assert_str_eq(cfg->backends[1].name, "luna");
	ck_assert(strstr(cfg->backends[1].module, "/fake-module.so") != NULL);
	ck_assert_str_eq(cfg->backends[2].name, "cloud.hsm_2");
	ck_assert_uint_eq(cfg->n_slots, 3);

	s = &cfg->slots[0];
	ck_assert_str_eq(s->label, "payments");
	ck_assert_ptr_nonnull(s->user_pin_hash);
	ck_assert(p11p_pin_hash_verify(s->user_pin_hash, "1234", 4));
	ck_assert(!p11p_pin_hash_verify(s->user_pin_hash, "1235", 4));
	ck_assert_uint_eq(s->n_members, 3);
	m = &s->members[0];
	ck_assert_uint_eq(m->backend, 1);
	ck_assert_int_eq(m->sel, P11P_SEL_TOKEN_SERIAL);
	ck_assert_str_eq(m->token_serial, "0123456789abcdef");
	ck_assert(strncmp(m->pin_source, "file:/", 6) == 0);
	/* "\r\n" stripped */
	ck_assert(p11p_secret_equals(m->pin, "5678", 4));
	m = &s->members[1];
	ck_assert_uint_eq(m->backend, 0);
	ck_assert_int_eq(m->sel, P11P_SEL_TOKEN_LABEL);
	ck_assert_str_eq(m->token_label, "m1");
	ck_assert_str_eq(m->pin_source, "env:P11P_TEST_PIN");
	ck_assert(p11p_secret_equals(m->pin, "1234", 4));
	m = &s->members[2];
	ck_assert_uint_eq(m->backend, 2);
	ck_assert_int_eq(m->sel, P11P_SEL_SLOT_ID);
	ck_assert_uint_eq(m->slot_id, 16);
	ck_assert_ptr_null(m->pin);

	s = &cfg->slots[1];
	ck_assert_str_eq(s->label, "signing keys with 32 bytes max.");
	ck_assert_uint_eq(strlen(s->label), 31);
	ck_assert_int_eq(s->members[0].sel, P11P_SEL_URI);
	ck_assert_str_eq(s->members[0].uri, "pkcs11:token=m2;manufacturer=SoftHSM%20project");
	ck_assert_int_eq(s->members[1].sel, P11P_SEL_SLOT_ID);
	ck_assert_uint_eq(s->members[1].slot_id, 7);

	s = &cfg->slots[2];
	ck_assert_str_eq(s->label, "x");
	ck_assert_uint_eq(s->members[0].slot_id, 0);
	ck_assert_uint_eq(s->members[0].pos.line, 30);
	ck_assert_uint_eq(s->members[0].pos.column, 9);
	p11p_config_free(cfg);
}
END_TEST

START_TEST(test_good_anchors)
{
	char err[512];
	struct p11p_config *cfg = load_staged("good-anchors.yaml", err, sizeof(err));

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->backends[1].module, "/bin/sh");
	ck_assert_str_eq(cfg->slots[1].members[0].token_label, "shared");
	ck_assert_str_eq(cfg->slots[1].members[1].token_label, "mine");
	ck_assert_uint_eq(cfg->slots[1].members[1].backend, 1);
	p11p_config_free(cfg);
}
END_TEST

/* The documented example parses, once its paths point at files that exist here. */
START_TEST(test_example_file)
{
	char err[512], path[512], pin[512];
	char *text = slurp(EXAMPLE, NULL), *a, *b, *c;
	struct p11p_config *cfg;

	a = replace(text, "/usr/safenet/lunaclient/lib/libCryptoki2_64.so", "/bin/sh");
	b = replace(a, "/usr/lib/softhsm/libsofthsm2.so", "/bin/sh");
	snprintf(pin, sizeof(pin), "%s/", tmpdir);
	c = replace(b, "/etc/p11proxy/", pin);
	snprintf(path, sizeof(path), "%s/proxy.yaml", tmpdir);
	write_file(path, c, strlen(c), 0644);
	snprintf(pin, sizeof(pin), "%s/luna-payments.pin", tmpdir);
	write_file(pin, "9999\n", 5, 0600);
	setenv("P11PROXY_SOFTHSM_PIN", "4321", 1);

	cfg = p11p_config_load(path, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_uint_eq(cfg->n_backends, 2);
	ck_assert_uint_eq(cfg->n_slots, 2);
	ck_assert_str_eq(cfg->slots[0].label, "payments");
	ck_assert_uint_eq(cfg->slots[0].n_members, 2);
	ck_assert(p11p_secret_equals(cfg->slots[0].members[0].pin, "9999", 4));
	ck_assert(p11p_secret_equals(cfg->slots[0].members[1].pin, "4321", 4));
	/* The documented hash is the hash of "1234" with the default cost. */
	ck_assert(strncmp(cfg->slots[0].user_pin_hash, "pbkdf2-sha256$200000$", 21) == 0);
	ck_assert(p11p_pin_hash_verify(cfg->slots[0].user_pin_hash, "1234", 4));
	ck_assert_int_eq(cfg->slots[1].members[0].sel, P11P_SEL_URI);
	ck_assert_int_eq(cfg->slots[1].members[1].sel, P11P_SEL_SLOT_ID);
	ck_assert_uint_eq(cfg->slots[1].members[1].slot_id, 2);
	p11p_config_free(cfg);

	/* As shipped: the only complaint may be a vendor library missing here. */
	cfg = p11p_config_load(EXAMPLE, err, sizeof(err));
	if (cfg == NULL)
		ck_assert_msg(strstr(err, ": module '/") != NULL &&
		                  strstr(err, "No such file or directory") != NULL,
		              "%s", err);
	p11p_config_free(cfg);
	free(text);
	free(a);
	free(b);
	free(c);
}
END_TEST

/* ---- the invalid catalogue ------------------------------------------------------ */

static const struct bad_case {
	const char *file;
	const char *msg; /* after "PATH:"; @TMPDIR@ is replaced */
} bad_cases[] = {
    /* YAML level */
    {"bad-syntax.yaml",
     "7:7: syntax error: did not find expected node content while parsing a flow node"},
    {"bad-syntax-colon.yaml", "2:14: syntax error: mapping values are not allowed in this "
                              "context"},
    {"bad-utf8.yaml", "5:13: invalid input: invalid leading UTF-8 octet"},
    {"bad-empty.yaml", "1:1: empty configuration"},
    {"bad-two-docs.yaml", "9:1: more than one YAML document"},
    {"bad-nesting.yaml", "1:26: nesting deeper than 16 levels"},
    {"bad-toplevel-list.yaml", "1:1: top level must be a mapping"},
    {"bad-toplevel-scalar.yaml", "1:1: top level must be a mapping"},
    {"bad-key-not-scalar.yaml", "1:3: mapping key at top level must be a string"},
    {"bad-alias-cycle.yaml", "2:11: each backend must be a mapping"},
    /* HA settings and error classes */
    {"bad-ha-mode.yaml", "6:17: 'mode' must be failover or balance, not 'roundrobin'"},
    {"bad-ha-duration.yaml", "6:27: 'probe_interval' must be a duration such as 500ms or 5s, "
                             "not '5m'"},
    {"bad-ha-range.yaml", "6:20: 'retries' must be between 0 and 16"},
    {"bad-ha-key.yaml", "6:11: unknown key 'retry' in ha"},
    {"bad-ha-not-map.yaml", "6:9: 'ha' must be a mapping"},
    {"bad-server-errors-name.yaml", "4:21: unknown result code 'CKR_DEVICE_EXPLODED'"},
    {"bad-server-errors-not-list.yaml", "4:20: 'client_errors' must be a list"},
    {"bad-member-name-dup.yaml",
     "9:9: duplicate member name 't1' in slot (give one a 'name')"},
    {"bad-state-dir.yaml", "1:12: state_dir 'var/lib/p11proxy' is not an absolute path"},
    {"bad-ha-bool.yaml", "6:31: 'single_member_keys' must be true or false"},
    {"bad-ha-replication.yaml", "6:24: 'replication' must be wrap, vendor or none, not 'copy'"},
    /* keys */
    {"bad-unknown-top.yaml", "4:1: unknown key 'slot' at top level"},
    {"bad-unknown-backend-key.yaml", "3:5: unknown key 'modul' in backend"},
    {"bad-unknown-slot-key.yaml", "6:5: unknown key 'lable' in slot"},
    {"bad-unknown-member-key.yaml", "8:9: unknown key 'tokn_label' in member"},
    {"bad-dup-key.yaml", "9:9: duplicate key 'backend' in member"},
    {"bad-dup-top-key.yaml", "9:1: duplicate key 'backends' at top level"},
    {"bad-missing-backends.yaml", "1:1: missing key 'backends' at top level"},
    {"bad-missing-slots.yaml", "1:1: missing key 'slots' at top level"},
    {"bad-missing-name.yaml", "2:5: missing key 'name' in backend"},
    {"bad-missing-module.yaml", "2:5: missing key 'module' in backend"},
    {"bad-missing-label.yaml", "5:5: missing key 'label' in slot"},
    {"bad-missing-members.yaml", "5:5: missing key 'members' in slot"},
    {"bad-missing-member-backend.yaml", "7:9: missing key 'backend' in member"},
    /* node types */
    {"bad-backends-not-list.yaml", "2:3: 'backends' must be a list"},
    {"bad-slots-not-list.yaml", "4:8: 'slots' must be a list"},
    {"bad-members-not-list.yaml", "7:7: 'members' must be a list"},
    {"bad-members-null.yaml", "6:13: 'members' must be a list"},
    {"bad-backend-not-map.yaml", "2:5: each backend must be a mapping"},
    {"bad-slot-not-map.yaml", "5:5: each slot must be a mapping"},
    {"bad-member-not-map.yaml", "7:9: each member must be a mapping"},
    {"bad-name-type.yaml", "2:11: 'name' must be a string"},
    {"bad-label-type.yaml", "5:12: 'label' must be a string"},
    {"bad-nul.yaml", "5:12: 'label' contains a NUL byte"},
    /* counts */
    {"bad-backends-empty.yaml", "1:11: 'backends' must not be empty"},
    {"bad-slots-empty.yaml", "4:8: 'slots' must not be empty"},
    {"bad-members-empty.yaml", "6:14: 'members' must not be empty"},
    {"bad-too-many-backends.yaml", "66:5: too many backends (at most 32)"},
    {"bad-too-many-slots.yaml", "261:5: too many slots (at most 64)"},
    {"bad-too-many-members.yaml", "39:9: too many members (at most 16)"},
    /* backends */
    {"bad-dup-backend.yaml", "4:11: duplicate backend name 'hsm' (first at line 2)"},
    {"bad-backend-name-chars.yaml",
     "2:11: backend name 'my hsm' may only contain letters, digits, '.', '_', '-'"},
    {"bad-module-missing.yaml",
     "3:13: module '/nonexistent/libvendor.so': No such file or directory"},
    {"bad-module-relative.yaml", "3:13: module 'libvendor.so' is not an absolute path"},
    {"bad-module-dir.yaml", "3:13: module '/' is not a regular file"},
    /* slots */
    {"bad-dup-slot.yaml", "9:12: duplicate slot label 'payments' (first at line 5)"},
    {"bad-label-long.yaml", "5:12: label is longer than 32 bytes"},
    {"bad-label-empty.yaml", "5:12: label is empty"},
    {"bad-pin-hash.yaml",
     "6:20: malformed user_pin_hash (expected the output of 'p11proxy hash-pin')"},
    /* members */
    {"bad-unknown-backend.yaml", "7:18: unknown backend 'luna'"},
    {"bad-two-selectors.yaml",
     "9:9: more than one token selector in member ('token_label' and 'slot_id')"},
    {"bad-no-selector.yaml", "7:9: no token selector in member (set one of slot_id, "
                             "token_label, token_serial, uri)"},
    {"bad-slot-id.yaml", "8:18: slot_id 'abc' is not an unsigned integer"},
    {"bad-slot-id-negative.yaml", "8:18: slot_id '-1' is not an unsigned integer"},
    {"bad-slot-id-range.yaml", "8:18: slot_id '99999999999999999999999' is out of range"},
    {"bad-token-label-long.yaml", "8:22: token_label is longer than 32 bytes"},
    {"bad-serial-long.yaml", "8:23: token_serial is longer than 16 bytes"},
    {"bad-serial-empty.yaml", "8:23: token_serial is empty"},
    {"bad-uri-scheme.yaml", "8:14: invalid PKCS#11 URI: URI scheme must be 'pkcs11:'"},
    {"bad-uri-encoding.yaml", "8:14: invalid PKCS#11 URI: URI encoding invalid or corrupted"},
    /* PIN sources */
    {"bad-pin-source.yaml", "9:14: PIN source '1234' must be 'env:NAME' or 'file:/absolute/path'"},
    {"bad-pin-relative.yaml",
     "9:14: PIN source 'file:member.pin' must be 'env:NAME' or 'file:/absolute/path'"},
    {"bad-pin-env-name.yaml",
     "9:14: PIN source 'env:1BAD' must be 'env:NAME' or 'file:/absolute/path'"},
    {"bad-pin-env-unset.yaml", "9:14: environment variable 'P11P_TEST_UNSET' is not set"},
    {"bad-pin-env-empty.yaml", "9:14: environment variable 'P11P_TEST_EMPTY' is empty"},
    {"bad-pin-file-missing.yaml",
     "9:14: PIN file '@TMPDIR@/missing.pin': cannot read: No such file or directory"},
    {"bad-pin-file-mode.yaml", "9:14: PIN file '@TMPDIR@/open.pin' is accessible by group or "
                               "others (mode 0640; use chmod 600)"},
    {"bad-pin-file-dir.yaml", "9:14: PIN file '@TMPDIR@' is not a regular file"},
    {"bad-pin-file-empty.yaml", "9:14: PIN file '@TMPDIR@/empty.pin' is empty"},
    {"bad-pin-file-long.yaml", "9:14: PIN file '@TMPDIR@/long.pin' is longer than 256 bytes"},
};

START_TEST(test_bad_catalogue)
{
	const struct bad_case *bc = &bad_cases[_i];
	char err[1024], path[512], *want, *msg;
	struct p11p_config *cfg;

	stage(bc->file, path, sizeof(path));
	memset(err, 'x', sizeof(err));
	cfg = p11p_config_load(path, err, sizeof(err));
	ck_assert_msg(cfg == NULL, "%s: loaded", bc->file);
	msg = replace(bc->msg, "@TMPDIR@", tmpdir);
	want = malloc(strlen(path) + strlen(msg) + 2);
	ck_assert_ptr_nonnull(want);
	sprintf(want, "%s:%s", path, msg);
	ck_assert_str_eq(err, want);
	ck_assert(strchr(err, '\n') == NULL);
	free(msg);
	free(want);
}
END_TEST

/* Every file in the catalogue is in the table, so none goes untested. */
START_TEST(test_catalogue_complete)
{
	static const char *const good[] = {"good-single.yaml", "good-multi.yaml",
	                                   "good-anchors.yaml", "good-ha.yaml"};
	DIR *dir = opendir(DATA);
	struct dirent *de;
	size_t seen = 0;

	ck_assert_ptr_nonnull(dir);
	while ((de = readdir(dir)) != NULL) {
		bool found = false;

		if (de->d_name[0] == '.')
			continue;
		for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
			found = found || strcmp(bad_cases[i].file, de->d_name) == 0;
		for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
			found = found || strcmp(good[i], de->d_name) == 0;
		ck_assert_msg(found, "%s is not in the test table", de->d_name);
		seen++;
	}
	closedir(dir);
	ck_assert_uint_eq(seen, sizeof(bad_cases) / sizeof(bad_cases[0]) + 4);
}
END_TEST

START_TEST(test_file_errors)
{
	char err[512], path[512], want[600];
	struct p11p_config *cfg;
	char *big;

	snprintf(path, sizeof(path), "%s/absent.yaml", tmpdir);
	cfg = p11p_config_load(path, err, sizeof(err));
	ck_assert_ptr_null(cfg);
	snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
	ck_assert_str_eq(err, want);

	cfg = p11p_config_load(tmpdir, err, sizeof(err));
	ck_assert_ptr_null(cfg);
	snprintf(want, sizeof(want), "%s: cannot read: not a regular file", tmpdir);
	ck_assert_str_eq(err, want);

	/* One byte over the cap: a comment, so only the size can be wrong. */
	big = malloc(P11P_CONF_MAX_BYTES + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, ' ', P11P_CONF_MAX_BYTES + 1);
	big[0] = '#';
	snprintf(path, sizeof(path), "%s/big.yaml", tmpdir);
	write_file(path, big, P11P_CONF_MAX_BYTES + 1, 0644);
	cfg = p11p_config_load(path, err, sizeof(err));
	ck_assert_ptr_null(cfg);
	snprintf(want, sizeof(want), "%s: larger than 1048576 bytes", path);
	ck_assert_str_eq(err, want);
	/* Exactly at the cap is read (and is empty YAML). */
	write_file(path, big, P11P_CONF_MAX_BYTES, 0644);
	cfg = p11p_config_load(path, err, sizeof(err));
	ck_assert_ptr_null(cfg);
	snprintf(want, sizeof(want), "%s:1:1: empty configuration", path);
	ck_assert_str_eq(err, want);
	free(big);

	/* Small or absent error buffers are fine. */
	cfg = p11p_config_load(tmpdir, err, 8);
	ck_assert_ptr_null(cfg);
	ck_assert_uint_eq(strlen(err), 7);
	ck_assert_ptr_null(p11p_config_load(tmpdir, NULL, 0));
	p11p_config_free(NULL);
}
END_TEST

START_TEST(test_parse_buffer)
{
	static const char yaml[] = "backends: [{name: a, module: /bin/sh}]\n"
	                           "slots: [{label: s, members: [{backend: a, slot_id: 1}]}]\n";
	char err[256];
	struct p11p_config *cfg =
	    p11p_config_parse("mem", yaml, sizeof(yaml) - 1, err, sizeof(err));

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->path, "mem");
	ck_assert_uint_eq(cfg->slots[0].members[0].slot_id, 1);
	p11p_config_free(cfg);
	cfg = p11p_config_parse("mem", yaml, 10, err, sizeof(err));
	ck_assert_ptr_null(cfg);
	ck_assert(strncmp(err, "mem:", 4) == 0);
	ck_assert_ptr_null(p11p_config_parse(NULL, NULL, 0, err, sizeof(err)));
	ck_assert_str_eq(err, "<config>:1:1: empty configuration");
}
END_TEST

/* ---- log: and log_facility: ---------------------------------------------------------- */

START_TEST(test_log_setting)
{
	static const char base[] = "backends: [{name: a, module: /bin/sh}]\n"
	                           "slots: [{label: s, members: [{backend: a, slot_id: 1}]}]\n";
	static const struct {
		const char *extra, *err; /* err NULL: valid */
		enum p11p_log_target log;
		int facility;
	} cases[] = {
	    {"", NULL, P11P_LOG_STDERR, P11P_LOG_FACILITY_USER},
	    {"log: stderr\n", NULL, P11P_LOG_STDERR, P11P_LOG_FACILITY_USER},
	    {"log: syslog\n", NULL, P11P_LOG_SYSLOG, P11P_LOG_FACILITY_USER},
	    {"log: syslog\nlog_facility: daemon\n", NULL, P11P_LOG_SYSLOG,
	     P11P_LOG_FACILITY_DAEMON},
	    {"log: syslog\nlog_facility: local0\n", NULL, P11P_LOG_SYSLOG,
	     P11P_LOG_FACILITY_LOCAL0},
	    {"log: syslog\nlog_facility: local7\n", NULL, P11P_LOG_SYSLOG, 23 << 3},
	    {"log: journal\n", "mem:3:6: 'log' must be stderr or syslog, not 'journal'", 0, 0},
	    {"log: [syslog]\n", "mem:3:6: 'log' must be a string", 0, 0},
	    {"log_facility: local8\n",
	     "mem:3:15: 'log_facility' must be user, daemon or local0 to local7, not 'local8'", 0,
	     0},
	    {"log_facility: LOCAL0\n",
	     "mem:3:15: 'log_facility' must be user, daemon or local0 to local7, not 'LOCAL0'", 0,
	     0},
	    {"log: syslog\nlog: stderr\n", "mem:4:1: duplicate key 'log' at top level", 0, 0},
	    {"logging: syslog\n", "mem:3:1: unknown key 'logging' at top level", 0, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char yaml[512], err[256];
		int n = snprintf(yaml, sizeof(yaml), "%s%s", base, cases[i].extra);
		struct p11p_config *cfg;

		ck_assert(n > 0 && (size_t)n < sizeof(yaml));
		err[0] = '\0';
		cfg = p11p_config_parse("mem", yaml, (size_t)n, err, sizeof(err));
		if (cases[i].err == NULL) {
			ck_assert_msg(cfg != NULL, "%s: %s", cases[i].extra, err);
			ck_assert_int_eq(cfg->log, cases[i].log);
			ck_assert_int_eq(cfg->log_facility, cases[i].facility);
		} else {
			ck_assert_msg(cfg == NULL, "%s: accepted", cases[i].extra);
			ck_assert_str_eq(err, cases[i].err);
		}
		p11p_config_free(cfg);
	}
}
END_TEST

/* ---- entropy: and fragments: (issue 5) ---------------------------------------------- */

static struct p11p_config *parse_slot_extra(const char *extra, char *err, size_t errlen)
{
	char yaml[1024];
	int n = snprintf(yaml, sizeof(yaml),
	                 "backends: [{name: a, module: /bin/sh}]\n"
	                 "slots:\n  - label: s\n    members: [{backend: a, slot_id: 1}]\n%s",
	                 extra);

	ck_assert(n > 0 && (size_t)n < sizeof(yaml));
	return p11p_config_parse("mem", yaml, (size_t)n, err, errlen);
}

START_TEST(test_entropy_fragments)
{
	char err[512];
	struct p11p_config *cfg = parse_slot_extra("", err, sizeof(err));

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->slots[0].entropy.source, P11P_ENTROPY_PASSTHROUGH);
	ck_assert_ptr_null(cfg->slots[0].fragments);
	p11p_config_free(cfg);

	cfg = parse_slot_extra("    entropy: {source: hsm, reseed_bytes: 4096, reseed_seconds: 60,"
	                       " on_hsm_failure: os_only}\n    fragments: /etc/p11proxy/cf.json\n",
	                       err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->slots[0].entropy.source, P11P_ENTROPY_HSM);
	ck_assert_int_eq(cfg->slots[0].entropy.on_hsm_failure, P11P_ENTROPY_OS_ONLY);
	ck_assert_uint_eq(cfg->slots[0].entropy.reseed_bytes, 4096);
	ck_assert_uint_eq(cfg->slots[0].entropy.reseed_seconds, 60);
	ck_assert_str_eq(cfg->slots[0].fragments, "/etc/p11proxy/cf.json");
	p11p_config_free(cfg);

	/* An empty mapping: mix, fail closed, the generator's reseed defaults. */
	cfg = parse_slot_extra("    entropy: {}\n", err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->slots[0].entropy.source, P11P_ENTROPY_MIX);
	ck_assert_int_eq(cfg->slots[0].entropy.on_hsm_failure, P11P_ENTROPY_FAIL);
	ck_assert_uint_eq(cfg->slots[0].entropy.reseed_bytes, 0);
	p11p_config_free(cfg);
}
END_TEST

START_TEST(test_entropy_fragments_bad)
{
	static const struct {
		const char *extra, *msg;
	} bad[] = {
	    {"    entropy: {source: tpm}\n", "'source' must be os, hsm or mix, not 'tpm'"},
	    {"    entropy: {on_hsm_failure: retry}\n",
	     "'on_hsm_failure' must be fail or os_only, not 'retry'"},
	    {"    entropy: mix\n", "'entropy' must be a mapping"},
	    {"    entropy: {reseed_bytes: 0}\n", "reseed_bytes"},
	    {"    entropy: {reseed_seconds: 99999999999}\n", "reseed_seconds"},
	    {"    entropy: {sorce: os}\n", "sorce"},
	    {"    fragments: relative/cf.json\n", "fragments"},
	};
	char err[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct p11p_config *cfg = parse_slot_extra(bad[i].extra, err, sizeof(err));

		ck_assert_msg(cfg == NULL, "accepted: %s", bad[i].extra);
		ck_assert_msg(strncmp(err, "mem:5:", 6) == 0, "%s: %s", bad[i].extra, err);
		ck_assert_msg(strstr(err, bad[i].msg) != NULL, "%s: %s", bad[i].extra, err);
	}
	/* The exact message for the first one. */
	ck_assert_ptr_null(parse_slot_extra(bad[0].extra, err, sizeof(err)));
	ck_assert_str_eq(err, "mem:5:23: 'source' must be os, hsm or mix, not 'tpm'");
}
END_TEST

/* ---- software_keys: (issue 12) ------------------------------------------------------- */

START_TEST(test_software_keys)
{
	char err[512];
	struct p11p_config *cfg = parse_slot_extra("", err, sizeof(err));

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_ptr_null(cfg->slots[0].swkeys.wrapping_key);
	p11p_config_free(cfg);
	cfg = parse_slot_extra("    software_keys: {wrapping_key: kms-wrap}\n", err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->slots[0].swkeys.wrapping_key, "kms-wrap");
	ck_assert(!cfg->slots[0].swkeys.new_keys);
	ck_assert_uint_eq(cfg->slots[0].swkeys.cache_ttl_ms, 3600000);
	ck_assert_uint_eq(cfg->slots[0].swkeys.cache_idle_ms, 300000);
	p11p_config_free(cfg);
	cfg = parse_slot_extra("    software_keys: {wrapping_key: w, new_keys: true, cache_ttl: 90s,"
	                       " cache_idle: 250ms}\n",
	                       err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert(cfg->slots[0].swkeys.new_keys);
	ck_assert_uint_eq(cfg->slots[0].swkeys.cache_ttl_ms, 90000);
	ck_assert_uint_eq(cfg->slots[0].swkeys.cache_idle_ms, 250);
	p11p_config_free(cfg);
}
END_TEST

START_TEST(test_software_keys_bad)
{
	static const struct {
		const char *extra, *msg;
	} bad[] = {
	    {"    software_keys: {new_keys: true}\n", "missing key 'wrapping_key' in software_keys"},
	    {"    software_keys: kms-wrap\n", "'software_keys' must be a mapping"},
	    {"    software_keys: {wrapping_key: ''}\n", "wrapping_key is empty"},
	    {"    software_keys: {wrapping_key: w, new_keys: maybe}\n", "new_keys"},
	    {"    software_keys: {wrapping_key: w, cache_ttl: 5m}\n",
	     "'cache_ttl' must be a duration such as 500ms or 5s, not '5m'"},
	    {"    software_keys: {wrapping_key: w, cache_idle: 0ms}\n",
	     "'cache_idle' must be between 1ms and 604800000ms"},
	    {"    software_keys: {wrapping_key: w, cache_ttl: 999999s}\n", "cache_ttl"},
	    {"    software_keys: {wraping_key: w}\n", "wraping_key"},
	};
	char err[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct p11p_config *cfg = parse_slot_extra(bad[i].extra, err, sizeof(err));

		ck_assert_msg(cfg == NULL, "accepted: %s", bad[i].extra);
		ck_assert_msg(strncmp(err, "mem:5:", 6) == 0, "%s: %s", bad[i].extra, err);
		ck_assert_msg(strstr(err, bad[i].msg) != NULL, "%s: %s", bad[i].extra, err);
	}
}
END_TEST

START_TEST(test_env_use_rand)
{
	char err[512];
	struct p11p_config *cfg;

	setenv("PKCS11_LIB_PATH", "/bin/sh", 1);
	setenv("HSM_TOKEN_LABEL", "payments", 1);
	unsetenv("HSM_USE_RAND");
	cfg = p11p_config_from_env(err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->slots[0].entropy.source, P11P_ENTROPY_PASSTHROUGH);
	p11p_config_free(cfg);
	setenv("HSM_USE_RAND", "true", 1);
	cfg = p11p_config_from_env(err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->slots[0].entropy.source, P11P_ENTROPY_MIX);
	p11p_config_free(cfg);
}
END_TEST

/* ---- quick start ---------------------------------------------------------------- */

START_TEST(test_env_quick_start)
{
	char err[512];
	struct p11p_config *cfg;

	setenv("PKCS11_LIB_PATH", "/bin/sh", 1);
	setenv("HSM_TOKEN_LABEL", "payments", 1);
	setenv("HSM_PIN", "1234", 1);
	setenv("HSM_USE_RAND", "true", 1); /* read elsewhere; must not be an error */
	cfg = p11p_config_from_env(err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->path, "environment");
	ck_assert_uint_eq(cfg->n_backends, 1);
	ck_assert_str_eq(cfg->backends[0].name, "default");
	ck_assert_str_eq(cfg->backends[0].module, "/bin/sh");
	ck_assert_uint_eq(cfg->backends[0].pos.line, 0);
	ck_assert_uint_eq(cfg->n_slots, 1);
	ck_assert_str_eq(cfg->slots[0].label, "payments");
	ck_assert_uint_eq(cfg->slots[0].n_members, 1);
	ck_assert_int_eq(cfg->slots[0].members[0].sel, P11P_SEL_TOKEN_LABEL);
	ck_assert_str_eq(cfg->slots[0].members[0].token_label, "payments");
	ck_assert(p11p_secret_equals(cfg->slots[0].members[0].pin, "1234", 4));
	ck_assert_str_eq(cfg->slots[0].members[0].pin_source, "env:HSM_PIN");
	p11p_config_free(cfg);

	/* p11p_config_load(NULL) takes the quick start when PKCS11_LIB_PATH is set */
	cfg = p11p_config_load(NULL, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->path, "environment");
	p11p_config_free(cfg);

	unsetenv("HSM_TOKEN_LABEL");
	unsetenv("HSM_PIN");
	setenv("HSM_SLOT", "0x2a", 1);
	cfg = p11p_config_from_env(err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->slots[0].label, "");
	ck_assert_int_eq(cfg->slots[0].members[0].sel, P11P_SEL_SLOT_ID);
	ck_assert_uint_eq(cfg->slots[0].members[0].slot_id, 42);
	ck_assert_ptr_null(cfg->slots[0].members[0].pin);
	p11p_config_free(cfg);

	unsetenv("HSM_SLOT");
	setenv("HSM_TOKEN_SERIAL", "abc123", 1);
	cfg = p11p_config_from_env(err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->slots[0].label, "");
	ck_assert_int_eq(cfg->slots[0].members[0].sel, P11P_SEL_TOKEN_SERIAL);
	ck_assert_str_eq(cfg->slots[0].members[0].token_serial, "abc123");
	p11p_config_free(cfg);
}
END_TEST

static void env_error(const char *want)
{
	char err[512];
	struct p11p_config *cfg = p11p_config_from_env(err, sizeof(err));

	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(err, want);
}

START_TEST(test_env_errors)
{
	env_error("environment: PKCS11_LIB_PATH is not set");
	setenv("PKCS11_LIB_PATH", "/bin/sh", 1);
	env_error("environment: set exactly one of HSM_SLOT, HSM_TOKEN_LABEL, HSM_TOKEN_SERIAL");
	setenv("HSM_SLOT", "1", 1);
	setenv("HSM_TOKEN_LABEL", "a", 1);
	env_error("environment: set exactly one of HSM_SLOT, HSM_TOKEN_LABEL, HSM_TOKEN_SERIAL");
	unsetenv("HSM_TOKEN_LABEL");
	setenv("HSM_SLOT", "one", 1);
	env_error("environment: HSM_SLOT 'one' is not an unsigned integer");
	setenv("HSM_SLOT", "", 1);
	env_error("environment: HSM_SLOT '' is not an unsigned integer");
	unsetenv("HSM_SLOT");
	setenv("HSM_TOKEN_LABEL", "abcdefghijklmnopqrstuvwxyz0123456", 1);
	env_error("environment: HSM_TOKEN_LABEL is longer than 32 bytes");
	setenv("HSM_TOKEN_LABEL", "", 1);
	env_error("environment: HSM_TOKEN_LABEL is empty");
	unsetenv("HSM_TOKEN_LABEL");
	setenv("HSM_TOKEN_SERIAL", "01234567890abcdef", 1);
	env_error("environment: HSM_TOKEN_SERIAL is longer than 16 bytes");
	setenv("HSM_TOKEN_SERIAL", "1", 1);
	setenv("HSM_PIN", "", 1);
	env_error("environment: HSM_PIN is empty");
	unsetenv("HSM_PIN");
	setenv("PKCS11_LIB_PATH", "/nonexistent/lib.so", 1);
	env_error("environment: PKCS11_LIB_PATH '/nonexistent/lib.so': No such file or directory");
	setenv("PKCS11_LIB_PATH", "lib.so", 1);
	env_error("environment: PKCS11_LIB_PATH 'lib.so' is not an absolute path");
	setenv("PKCS11_LIB_PATH", "/", 1);
	env_error("environment: PKCS11_LIB_PATH '/' is not a regular file");
}
END_TEST

START_TEST(test_load_precedence)
{
	char err[512], path[512];
	struct p11p_config *cfg;

	/* P11PROXY_CONF wins over the quick start */
	stage("good-single.yaml", path, sizeof(path));
	setenv("P11PROXY_CONF", path, 1);
	setenv("PKCS11_LIB_PATH", "/bin/sh", 1);
	setenv("HSM_SLOT", "1", 1);
	cfg = p11p_config_load(NULL, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->path, path);
	p11p_config_free(cfg);

	/* an explicit path wins over everything */
	setenv("P11PROXY_CONF", "/nonexistent.yaml", 1);
	cfg = p11p_config_load(path, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	p11p_config_free(cfg);
	cfg = p11p_config_load(NULL, err, sizeof(err));
	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(err, "/nonexistent.yaml: cannot read: No such file or directory");

	/* neither: the default path */
	unsetenv("P11PROXY_CONF");
	unsetenv("PKCS11_LIB_PATH");
	cfg = p11p_config_load(NULL, err, sizeof(err));
	if (cfg == NULL)
		ck_assert_msg(strncmp(err, P11P_DEFAULT_CONF ":", strlen(P11P_DEFAULT_CONF) + 1) ==
		                  0,
		              "%s", err);
	else
		ck_assert_str_eq(cfg->path, P11P_DEFAULT_CONF);
	p11p_config_free(cfg);
}
END_TEST

/* ---- PIN hashes ------------------------------------------------------------------ */

START_TEST(test_pin_hash_round_trip)
{
	char *h = p11p_pin_hash_make_iter("1234", 4, TEST_HASH_ITER);
	char *h2;

	ck_assert_ptr_nonnull(h);
	ck_assert(strncmp(h, "pbkdf2-sha256$1000$", 19) == 0);
	ck_assert_uint_eq(strlen(h), 19 + 24 + 1 + 44);
	ck_assert(p11p_pin_hash_valid(h));
	ck_assert(p11p_pin_hash_verify(h, "1234", 4));
	ck_assert(!p11p_pin_hash_verify(h, "1235", 4));
	ck_assert(!p11p_pin_hash_verify(h, "123", 3));
	ck_assert(!p11p_pin_hash_verify(h, "12345", 5));
	ck_assert(!p11p_pin_hash_verify(h, "", 0));
	ck_assert(!p11p_pin_hash_verify(h, NULL, 4));
	/* random salt: two hashes of one PIN differ */
	h2 = p11p_pin_hash_make_iter("1234", 4, TEST_HASH_ITER);
	ck_assert_ptr_nonnull(h2);
	ck_assert_str_ne(h, h2);
	ck_assert(p11p_pin_hash_verify(h2, "1234", 4));
	p11p_free(h);
	p11p_free(h2);

	/* binary PIN, empty PIN */
	h = p11p_pin_hash_make_iter("a\0b", 3, TEST_HASH_ITER);
	ck_assert(p11p_pin_hash_verify(h, "a\0b", 3));
	ck_assert(!p11p_pin_hash_verify(h, "a", 1));
	p11p_free(h);
	h = p11p_pin_hash_make_iter("", 0, TEST_HASH_ITER);
	ck_assert(p11p_pin_hash_verify(h, "", 0));
	ck_assert(p11p_pin_hash_verify(h, NULL, 0));
	p11p_free(h);

	ck_assert_ptr_null(p11p_pin_hash_make_iter("1234", 4, 999));
	ck_assert_ptr_null(p11p_pin_hash_make_iter("1234", 4, 10000001));
	ck_assert_ptr_null(p11p_pin_hash_make_iter(NULL, 4, TEST_HASH_ITER));

	/* the default cost */
	h = p11p_pin_hash_make("0000", 4);
	ck_assert_ptr_nonnull(h);
	ck_assert(strncmp(h, "pbkdf2-sha256$200000$", 21) == 0);
	p11p_free(h);
}
END_TEST

START_TEST(test_pin_hash_malformed)
{
	static const char good[] = "pbkdf2-sha256$1000$rWsLP08dmu4EcHsogzgfwg==$"
	                           "/mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=";
	static const char *const bad[] = {
	    "",
	    "pbkdf2-sha256",
	    "pbkdf2-sha256$",
	    "pbkdf2-sha1$1000$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    /* iterations */
	    "pbkdf2-sha256$999$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    "pbkdf2-sha256$01000$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    "pbkdf2-sha256$-1000$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    "pbkdf2-sha256$10000001$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2"
	    "w=",
	    "pbkdf2-sha256$99999999999999999999999$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQ"
	    "JNpeYPMhSdYOjV2w=",
	    "pbkdf2-sha256$$rWsLP08dmu4EcHsogzgfwg==$/mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    "pbkdf2-sha256$1000 "
	    "$rWsLP08dmu4EcHsogzgfwg==$/mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    /* salt */
	    "pbkdf2-sha256$1000$$/mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    "pbkdf2-sha256$1000$rWsLP08dmu4EcHsogzgfwg=$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    "pbkdf2-sha256$1000$rWsLP08dmu4EcHsogzgfwg$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    "pbkdf2-sha256$1000$rWsLP08dmu4EcHsogzgfwh==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    "pbkdf2-sha256$1000$rWsL=08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    "pbkdf2-sha256$1000$rWsL "
	    "P08dmu4EcHsogzgfw==$/mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    "pbkdf2-sha256$1000$c2hvcnQ=$/mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	    /* derived key */
	    "pbkdf2-sha256$1000$rWsLP08dmu4EcHsogzgfwg==$",
	    "pbkdf2-sha256$1000$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w",
	    "pbkdf2-sha256$1000$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w==",
	    "pbkdf2-sha256$1000$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2x=",
	    "pbkdf2-sha256$1000$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w="
	    "$",
	    "pbkdf2-sha256$1000$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjVw=",
	    "pbkdf2-sha256$1000$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=\n",
	    " pbkdf2-sha256$1000$rWsLP08dmu4EcHsogzgfwg==$/"
	    "mw5DiFhI1WYyCPBVARNimKHspQJNpeYPMhSdYOjV2w=",
	};

	ck_assert(p11p_pin_hash_valid(good));
	ck_assert(p11p_pin_hash_verify(good, "1234", 4));
	ck_assert(!p11p_pin_hash_valid(NULL));
	ck_assert(!p11p_pin_hash_verify(NULL, "1234", 4));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(!p11p_pin_hash_valid(bad[i]), "accepted: %s", bad[i]);
		ck_assert_msg(!p11p_pin_hash_verify(bad[i], "1234", 4), "verified: %s", bad[i]);
	}
}
END_TEST

/* ---- robustness --------------------------------------------------------------- */

/* Every allocation that can fail does fail once; each failure is clean. */
START_TEST(test_alloc_failures)
{
	char err[512], path[512];
	struct p11p_config *cfg = NULL;
	long n;

	stage("good-multi.yaml", path, sizeof(path));
	for (n = 0; n < 10000; n++) {
		p11p_mem_fail_after(n);
		memset(err, 0, sizeof(err));
		cfg = p11p_config_load(path, err, sizeof(err));
		p11p_mem_fail_reset();
		if (cfg != NULL)
			break;
		ck_assert_msg(err[0] != '\0', "n=%ld: no message", n);
	}
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_gt(n, 10);
	ck_assert_uint_eq(cfg->n_slots, 3);
	p11p_config_free(cfg);

	setenv("PKCS11_LIB_PATH", "/bin/sh", 1);
	setenv("HSM_TOKEN_LABEL", "t", 1);
	setenv("HSM_PIN", "1234", 1);
	for (n = 0; n < 1000; n++) {
		p11p_mem_fail_after(n);
		memset(err, 0, sizeof(err));
		cfg = p11p_config_from_env(err, sizeof(err));
		p11p_mem_fail_reset();
		if (cfg != NULL)
			break;
		ck_assert_msg(err[0] != '\0', "env n=%ld: no message", n);
	}
	ck_assert_ptr_nonnull(cfg);
	p11p_config_free(cfg);

	for (n = 0; n < 10; n++) {
		char *h;

		p11p_mem_fail_after(n);
		h = p11p_pin_hash_make_iter("1234", 4, TEST_HASH_ITER);
		p11p_mem_fail_reset();
		if (h != NULL) {
			ck_assert(p11p_pin_hash_verify(h, "1234", 4));
			p11p_free(h);
			break;
		}
	}
	ck_assert_int_lt(n, 10);
}
END_TEST

/* Damaged files (every truncation, seeded byte flips) fail cleanly or load. */
START_TEST(test_damaged_files)
{
	char path[512], err[512];
	size_t len;
	char *text, *copy;
	struct p11p_config *cfg;
	unsigned int seed = 12345;
	static const char junk[] = "\0\n\r\t :-[]{}&*!|>'\"%@`#?,\xff\xc3";

	stage("good-multi.yaml", path, sizeof(path));
	text = slurp(path, &len);
	copy = malloc(len + 1);
	ck_assert_ptr_nonnull(copy);
	for (size_t cut = 0; cut < len; cut++) {
		cfg = p11p_config_parse("cut", text, cut, err, sizeof(err));
		if (cfg == NULL)
			ck_assert_msg(strncmp(err, "cut:", 4) == 0, "%s", err);
		p11p_config_free(cfg);
	}
	for (int round = 0; round < 2000; round++) {
		memcpy(copy, text, len);
		for (int k = 0; k < 1 + round % 4; k++) {
			seed = seed * 1103515245u + 12345u;
			copy[(seed >> 8) % len] = junk[(seed >> 20) % (sizeof(junk) - 1)];
		}
		cfg = p11p_config_parse("flip", copy, len, err, sizeof(err));
		if (cfg == NULL)
			ck_assert_msg(strncmp(err, "flip:", 5) == 0 && strchr(err, '\n') == NULL,
			              "%s", err);
		p11p_config_free(cfg);
	}
	free(copy);
	free(text);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_good_single);
	tcase_add_test(tc, test_good_multi);
	tcase_add_test(tc, test_good_ha);
	tcase_add_test(tc, test_good_anchors);
	tcase_add_test(tc, test_example_file);
	tcase_add_loop_test(tc, test_bad_catalogue, 0, sizeof(bad_cases) / sizeof(bad_cases[0]));
	tcase_add_test(tc, test_catalogue_complete);
	tcase_add_test(tc, test_file_errors);
	tcase_add_test(tc, test_parse_buffer);
	tcase_add_test(tc, test_log_setting);
	tcase_add_test(tc, test_entropy_fragments);
	tcase_add_test(tc, test_entropy_fragments_bad);
	tcase_add_test(tc, test_software_keys);
	tcase_add_test(tc, test_software_keys_bad);
	tcase_add_test(tc, test_env_use_rand);
	tcase_add_test(tc, test_env_quick_start);
	tcase_add_test(tc, test_env_errors);
	tcase_add_test(tc, test_load_precedence);
	tcase_add_test(tc, test_pin_hash_round_trip);
	tcase_add_test(tc, test_pin_hash_malformed);
	tcase_add_test(tc, test_alloc_failures);
	tcase_add_test(tc, test_damaged_files);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
