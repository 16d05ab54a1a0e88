/*
 * Fuzz target for the reader of the old index journal (p11p_journal_read,
 * what `p11proxy index import` reads). Built with libFuzzer or with the plain
 * driver in standalone.c, like fuzz_config.c.
 *
 * Each input is written to a file in a private temp directory and opened
 * twice: as it is, and "repaired" (every line's checksum and every commit's
 * transaction checksum recomputed), so that mutants get past the checksums
 * into the record parser and the transaction rules.
 *
 * Oracle, beyond "no crash, no leak, no hang":
 *  - a refused file comes with CKR_FUNCTION_FAILED and a one-line message
 *    naming the file;
 *  - a loaded journal's records keep every limit index.h promises, with
 *    distinct non-zero vids in ascending order;
 *  - allocation failure at each of the first allocations of the read (then at
 *    sparser points) is a clean CKR_HOST_MEMORY with the same records after.
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
#include "index/journal.h"

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
	(void)tmp;
	unlink(path);
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
	REQUIRE(rv == CKR_FUNCTION_FAILED, "read failed with 0x%lx", (unsigned long)rv);
	REQUIRE(strstr(err, path) == err, "error does not name the file: '%s'", err);
	for (const char *p = err; *p; p++)
		REQUIRE(*p != '\n' && *p != '\r', "error is not one line: '%s'", err);
}

static void check_records(const struct p11p_vkey *v, size_t n)
{
	REQUIRE(n <= P11P_INDEX_MAX_RECORDS, "records %zu", n);
	for (size_t i = 0; i < n; i++) {
		size_t slen = strnlen(v[i].slot, sizeof(v[i].slot));

		REQUIRE(v[i].vid != 0 && v[i].rev != 0, "vid/rev");
		REQUIRE(i == 0 || v[i].vid > v[i - 1].vid, "vids not ascending and distinct");
		REQUIRE(slen >= 1 && slen <= P11P_INDEX_SLOT_MAX, "slot length %zu", slen);
		REQUIRE(v[i].ck_id_len <= P11P_INDEX_ID_MAX &&
		            v[i].label_len <= P11P_INDEX_LABEL_MAX,
		        "lengths");
		REQUIRE((v[i].perms & ~(uint32_t)P11P_VK_ALL) == 0 &&
		            v[i].state <= P11P_VK_DELETED && v[i].origin <= P11P_VK_SCANNED &&
		            v[i].presence <= 0xffff,
		        "enums");
	}
}

static void check_oom(size_t want)
{
	char err[512];

	for (long k = 0;; k = k < 32 ? k + 1 : k + k / 4) {
		struct p11p_vkey *v = NULL;
		unsigned long refused;
		size_t n = 0;
		CK_RV rv;

		p11p_mem_fail_after(k);
		rv = p11p_journal_read(path, &v, &n, err, sizeof(err));
		refused = p11p_mem_failures();
		p11p_mem_fail_reset();
		if (rv == CKR_OK) {
			REQUIRE(refused == 0, "success after %lu refused allocation(s)", refused);
			REQUIRE(n == want, "%zu records after allocation failures, %zu before", n,
			        want);
			p11p_free(v);
			return;
		}
		REQUIRE(rv == CKR_HOST_MEMORY, "k=%ld: 0x%lx %s", k, (unsigned long)rv, err);
		REQUIRE(v == NULL && n == 0, "records on failure");
		REQUIRE(refused > 0, "failed without an allocation failure: '%s'", err);
		REQUIRE(k < LONG_MAX / 2, "allocation count does not converge");
	}
}

static void run_one(const uint8_t *data, size_t size)
{
	struct p11p_vkey *v = NULL;
	char err[512];
	size_t n = 0;
	CK_RV rv;

	write_input(data, size);
	memset(err, 'X', sizeof(err) - 1);
	err[sizeof(err) - 1] = '\0';
	rv = p11p_journal_read(path, &v, &n, err, sizeof(err));
	if (rv != CKR_OK) {
		REQUIRE(v == NULL && n == 0, "records on failure");
		check_error(rv, err);
		n_refused++;
		return;
	}
	REQUIRE(err[0] == '\0', "success with an error message: '%s'", err);
	n_loaded++;
	check_records(v, n);
	p11p_free(v);
	if (n <= 2000)
		check_oom(n);
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
