/*
 * Fuzz target for the virtual-key index loader (p11p_index_open). Built with
 * libFuzzer or with the plain driver in standalone.c, like fuzz_config.c.
 *
 * Each input is written to a file in a private temp directory and opened
 * twice: as it is, and "repaired" (every line's checksum and every commit's
 * transaction checksum recomputed), so that mutants get past the checksums
 * into the record parser and the transaction rules.
 *
 * Oracle, beyond "no crash, no leak, no hang":
 *  - a refused file comes with CKR_FUNCTION_FAILED and a one-line message
 *    naming the file;
 *  - a loaded index keeps every limit index.h promises, and each record is
 *    found by its vid, its label and its CKA_ID;
 *  - a loaded index takes a put, and the file then loads with one more record;
 *  - allocation failure at each of the first allocations of the open (then at
 *    sparser points) is a clean CKR_HOST_MEMORY, until the open succeeds.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/mem.h"
#include "index/index.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond, ...)                                                                         \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_index: %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static char dir[256];
static char path[300];
static unsigned long n_loaded, n_refused;

static void cleanup(void)
{
	char tmp[320];

	fprintf(stderr, "fuzz_index: %lu files loaded, %lu refused\n", n_loaded, n_refused);
	unlink(path);
	snprintf(tmp, sizeof(tmp), "%s.compact", path);
	unlink(tmp);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *t = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/p11p-fuzz-index.XXXXXX", t ? t : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("fuzz_index: mkdtemp");
		abort();
	}
	snprintf(path, sizeof(path), "%s/index", dir);
	atexit(cleanup);
	return 0;
}

static uint32_t crc32_ref(uint32_t crc, const void *p, size_t n)
{
	const unsigned char *b = p;
	uint32_t c = ~crc;

	for (size_t i = 0; i < n; i++) {
		c ^= b[i];
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
	}
	return ~c;
}

static void put_hex32(uint8_t *o, uint32_t v)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 7; i >= 0; i--)
		*o++ = (uint8_t)hex[(v >> (i * 4)) & 0xf];
}

/* Recomputes line checksums and commit body checksums in place (see above). */
static void repair(uint8_t *b, size_t len)
{
	uint32_t body = 0;
	size_t start = 0;

	while (start < len) {
		uint8_t *nl = memchr(b + start, '\n', len - start);
		size_t n;

		if (nl == NULL)
			break;
		n = (size_t)(nl - (b + start));
		if (n >= 10 && b[start + n - 9] == '\t') {
			uint8_t *p = b + start;

			if ((p[0] == 'C' || p[0] == 'S') && n >= 19 && p[n - 18] == '\t') {
				put_hex32(p + n - 17, body);
				body = 0;
				put_hex32(p + n - 8, crc32_ref(0, p, n - 9));
			} else {
				put_hex32(p + n - 8, crc32_ref(0, p, n - 9));
				body = crc32_ref(body, p, n + 1);
			}
		}
		start += n + 1;
	}
}

static void write_input(const uint8_t *data, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	REQUIRE(fd >= 0, "cannot create %s", path);
	REQUIRE(size == 0 || write(fd, data, size) == (ssize_t)size, "cannot write %s", path);
	close(fd);
	chmod(path, 0600);
}

static void check_error(CK_RV rv, const char *err)
{
	REQUIRE(rv == CKR_FUNCTION_FAILED, "open failed with 0x%lx", (unsigned long)rv);
	REQUIRE(strstr(err, path) == err, "error does not name the file: '%s'", err);
	for (const char *p = err; *p; p++)
		REQUIRE(*p != '\n' && *p != '\r', "error is not one line: '%s'", err);
}

static size_t check_index(struct p11p_index *idx)
{
	struct p11p_index_stats st;
	uint64_t *ids = NULL;
	size_t n = 0;

	REQUIRE(p11p_index_stats(idx, &st) == CKR_OK, "stats");
	REQUIRE(st.records <= P11P_INDEX_MAX_RECORDS, "records %zu", st.records);
	REQUIRE(p11p_index_list(idx, NULL, &ids, &n) == CKR_OK, "list");
	REQUIRE(n == st.records, "list %zu != records %zu", n, st.records);
	for (size_t i = 0; i < n; i++) {
		struct p11p_vkey v, out[1];
		struct p11p_vkey_match m;
		bool found = false;
		size_t count = 0, slen;

		REQUIRE(p11p_index_get(idx, ids[i], &v, &found) == CKR_OK && found, "get");
		REQUIRE(v.vid == ids[i] && v.vid != 0 && v.rev != 0, "vid/rev");
		slen = strnlen(v.slot, sizeof(v.slot));
		REQUIRE(slen >= 1 && slen <= P11P_INDEX_SLOT_MAX, "slot length %zu", slen);
		REQUIRE(v.ck_id_len <= P11P_INDEX_ID_MAX && v.label_len <= P11P_INDEX_LABEL_MAX,
		        "lengths");
		REQUIRE((v.perms & ~(uint32_t)P11P_VK_ALL) == 0 && v.state <= P11P_VK_MISSING &&
		            v.origin <= P11P_VK_SCANNED && v.presence <= 0xffff,
		        "enums");
		memset(&m, 0, sizeof(m));
		m.slot = v.slot;
		m.has_label = true;
		m.label = v.label;
		m.label_len = v.label_len;
		m.has_ck_id = true;
		m.ck_id = v.ck_id;
		m.ck_id_len = v.ck_id_len;
		m.has_class = true;
		m.cls = v.cls;
		REQUIRE(p11p_index_find(idx, &m, out, 1, &count) == CKR_OK && count >= 1, "find");
		m.has_label = false;
		REQUIRE(p11p_index_find(idx, &m, out, 1, &count) == CKR_OK && count >= 1,
		        "find by CKA_ID");
	}
	p11p_free(ids);
	return n;
}

static void check_oom(void)
{
	char err[512];

	for (long k = 0;; k = k < 32 ? k + 1 : k + k / 4) {
		struct p11p_index *idx = NULL;
		unsigned long refused;
		CK_RV rv;

		p11p_mem_fail_after(k);
		rv = p11p_index_open(path, &idx, err, sizeof(err));
		refused = p11p_mem_failures();
		p11p_mem_fail_reset();
		if (rv == CKR_OK) {
			REQUIRE(refused == 0, "success after %lu refused allocation(s)", refused);
			p11p_index_close(idx);
			return;
		}
		REQUIRE(rv == CKR_HOST_MEMORY, "k=%ld: 0x%lx %s", k, (unsigned long)rv, err);
		REQUIRE(idx == NULL, "handle on failure");
		REQUIRE(refused > 0, "failed without an allocation failure: '%s'", err);
		REQUIRE(k < LONG_MAX / 2, "allocation count does not converge");
	}
}

static void run_one(const uint8_t *data, size_t size)
{
	struct p11p_index *idx = NULL;
	struct p11p_vkey v;
	char err[512];
	size_t before;
	CK_RV rv;

	write_input(data, size);
	memset(err, 'X', sizeof(err) - 1);
	err[sizeof(err) - 1] = '\0';
	rv = p11p_index_open(path, &idx, err, sizeof(err));
	if (rv != CKR_OK) {
		REQUIRE(idx == NULL, "handle on failure");
		check_error(rv, err);
		n_refused++;
		return;
	}
	REQUIRE(err[0] == '\0', "success with an error message: '%s'", err);
	n_loaded++;
	before = check_index(idx);
	if (before > 2000) {
		p11p_index_close(idx);
		return;
	}
	check_oom();

	/* Whatever loads takes a write (cutting off a torn tail first). */
	memset(&v, 0, sizeof(v));
	strcpy(v.slot, "fuzz");
	v.label_len = 4;
	memcpy(v.label, "fuzz", 4);
	rv = p11p_index_put(idx, &v);
	if (rv == CKR_DEVICE_MEMORY) {
		struct p11p_index_stats st;

		/* Only when transaction numbers ran out (index.c stops them at 2^62). */
		REQUIRE(p11p_index_stats(idx, &st) == CKR_OK && st.seq >= (UINT64_C(1) << 62),
		        "put refused for space at seq %llu", (unsigned long long)st.seq);
		p11p_index_close(idx);
		return;
	}
	REQUIRE(rv == CKR_OK, "put on a loaded index: 0x%lx", (unsigned long)rv);
	p11p_index_close(idx);
	rv = p11p_index_open(path, &idx, err, sizeof(err));
	REQUIRE(rv == CKR_OK, "reopen after a put: %s", err);
	REQUIRE(check_index(idx) == before + 1, "the put is not there");
	p11p_index_close(idx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	if (dir[0] == '\0')
		LLVMFuzzerInitialize(NULL, NULL);
	run_one(data, size);
	copy = malloc(size ? size : 1);
	REQUIRE(copy != NULL, "out of memory");
	memcpy(copy, data, size);
	repair(copy, size);
	if (memcmp(copy, data, size) != 0)
		run_one(copy, size);
	free(copy);
	return 0;
}
