/*
 * Virtual-key index benchmark: the issue 4 scale targets, measured.
 *
 *   bench_index [--keys N] [--puts N] [--finds N] [--dir DIR | --target URI]
 *
 * Builds an index of N keys (default 100000) in a temp directory under DIR
 * (default $TMPDIR or /tmp; the disk under it decides the fsync cost), then
 * prints one RESULT line per figure and a summary against the targets:
 *   load + first find by label       < 300 ms   (open and load of the store)
 *   find by label / by CKA_ID        < 20 us
 *   put (change one key, durable)    < 10 ms    (one committed transaction)
 * and the propagation of one change to another handle (another process's
 * view: refresh until it sees the change). --target runs it all against a
 * store given by its target instead, a postgresql:// URI (bench/run.sh
 * starts a private server for it; the database should be empty).
 * Figures are information only: the exit status is non-zero only when a
 * call fails.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "index/index.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dULL;
}

static char dir[4096], path[4200];

static bool own_dir = true;

static void cleanup(void)
{
	char tmp[4300];

	if (!own_dir)
		return;
	/* SQLite's files beside the store. */
	snprintf(tmp, sizeof(tmp), "%s-wal", path);
	unlink(tmp);
	snprintf(tmp, sizeof(tmp), "%s-shm", path);
	unlink(tmp);
	unlink(path);
	rmdir(dir);
}

static void die(const char *what, CK_RV rv, struct p11p_index *idx)
{
	char err[512] = "";

	p11p_index_last_error(idx, err, sizeof(err));
	fprintf(stderr, "bench_index: %s failed: 0x%lx %s\n", what, (unsigned long)rv, err);
	exit(1);
}

static void make_key(struct p11p_vkey *v, size_t i)
{
	memset(v, 0, sizeof(*v));
	snprintf(v->slot, sizeof(v->slot), "v-bench-%zu", i % 4);
	v->cls = i % 2 ? CKO_PRIVATE_KEY : CKO_SECRET_KEY;
	v->key_type = CKK_AES;
	/* 16-byte CKA_ID, derived from i so lookups can rebuild it */
	for (int k = 0; k < 16; k++)
		v->ck_id[k] = (unsigned char)((i * 2654435761u) >> (k % 4 * 8)) ^ (unsigned char)k;
	memcpy(v->ck_id, &i, sizeof(i) < 16 ? sizeof(i) : 16);
	v->ck_id_len = 16;
	v->label_len = (size_t)snprintf((char *)v->label, sizeof(v->label), "bench key %08zu", i);
	v->perms = P11P_VK_ALL;
	v->origin = P11P_VK_SCANNED;
	v->presence = 3;
}

/* The record as the handle has it now (a put needs its current rev). */
static void current(struct p11p_index *idx, uint64_t vid, struct p11p_vkey *v)
{
	bool found = false;
	CK_RV rv = p11p_index_get(idx, vid, v, &found);

	if (rv != CKR_OK || !found)
		die("get", rv ? rv : CKR_GENERAL_ERROR, idx);
}

/* Resident set size in KiB (Linux), 0 if unknown. */
static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void summary(const char *op, double *v, size_t n, const char *unit, double scale)
{
	double sum = 0;

	qsort(v, n, sizeof(*v), cmp_double);
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	printf("RESULT op=%s n=%zu mean_%s=%.3f p50_%s=%.3f p99_%s=%.3f max_%s=%.3f\n", op, n, unit,
	       sum / (double)n * scale, unit, v[n / 2] * scale, unit,
	       v[(size_t)((double)n * 0.99)] * scale, unit, v[n - 1] * scale);
}

int main(int argc, char **argv)
{
	size_t keys = 100000, puts = 300, finds = 200000;
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	const char *target = NULL;
	char err[512];
	struct p11p_index *idx, *other;
	struct p11p_vkey *batch, v, out[4];
	struct p11p_index_stats st;
	double t0, t1, load_best = 1e9, *lat;
	long rss0;
	size_t count;
	struct stat sb;
	CK_RV rv;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--keys") == 0 && i + 1 < argc)
			keys = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--puts") == 0 && i + 1 < argc)
			puts = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--finds") == 0 && i + 1 < argc)
			finds = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			base = argv[++i];
		else if (strcmp(argv[i], "--target") == 0 && i + 1 < argc)
			target = argv[++i];
		else {
			fprintf(stderr,
			        "usage: %s [--keys N] [--puts N] [--finds N] [--dir DIR | --target "
			        "URI]\n",
			        argv[0]);
			return 2;
		}
	}
	if (keys == 0 || puts == 0 || finds == 0)
		return 2;
	if (target != NULL) {
		own_dir = false;
		snprintf(path, sizeof(path), "%s", target);
	} else {
		snprintf(dir, sizeof(dir), "%s/p11proxy-bench-index.XXXXXX", base);
		if (mkdtemp(dir) == NULL) {
			fprintf(stderr, "bench_index: mkdtemp %s: %s\n", dir, strerror(errno));
			return 1;
		}
		snprintf(path, sizeof(path), "%s/index", dir);
		atexit(cleanup);
	}
	printf("bench_index: %zu keys in %s, %ld CPUs\n", keys, path,
	       sysconf(_SC_NPROCESSORS_ONLN));

	rv = p11p_index_open(path, &idx, err, sizeof(err));
	if (rv != CKR_OK) {
		fprintf(stderr, "bench_index: open: %s\n", err);
		return 1;
	}
	/* A sync of every key: one transaction. */
	batch = calloc(keys, sizeof(*batch));
	lat = calloc(puts > finds ? puts : finds, sizeof(*lat));
	if (batch == NULL || lat == NULL)
		return 1;
	for (size_t i = 0; i < keys; i++)
		make_key(&batch[i], i);
	t0 = now();
	if ((rv = p11p_index_put_batch(idx, batch, keys)) != CKR_OK)
		die("put_batch", rv, idx);
	t1 = now();
	printf("RESULT op=batch_put_all n=%zu ms=%.1f\n", keys, (t1 - t0) * 1e3);
	p11p_index_close(idx);
	if (own_dir && stat(path, &sb) == 0)
		printf("RESULT op=file_size bytes=%lld bytes_per_key=%.0f\n", (long long)sb.st_size,
		       (double)sb.st_size / (double)keys);

	/* Load + first find by label, a cold handle each time (the page cache is warm). */
	rss0 = rss_kb();
	for (int round = 0; round < 5; round++) {
		struct p11p_vkey_match m = {.slot = batch[keys / 2].slot,
		                            .has_label = true,
		                            .label = batch[keys / 2].label,
		                            .label_len = batch[keys / 2].label_len};

		t0 = now();
		rv = p11p_index_open(path, &idx, err, sizeof(err));
		if (rv != CKR_OK) {
			fprintf(stderr, "bench_index: open: %s\n", err);
			return 1;
		}
		if ((rv = p11p_index_find(idx, &m, out, 4, &count)) != CKR_OK || count != 1)
			die("first find", rv ? rv : CKR_GENERAL_ERROR, idx);
		t1 = now();
		if (t1 - t0 < load_best)
			load_best = t1 - t0;
		printf("RESULT op=load_first_find round=%d ms=%.1f\n", round, (t1 - t0) * 1e3);
		if (round < 4)
			p11p_index_close(idx);
	}
	printf("RESULT op=load_first_find_best ms=%.1f\n", load_best * 1e3);
	printf("RESULT op=memory loaded_kb=%ld bytes_per_key=%.0f\n", rss_kb() - rss0,
	       (double)(rss_kb() - rss0) * 1024 / (double)keys);

	/* Finds: by label, by CKA_ID, by (slot, class, CKA_ID, label), by vid. */
	for (int kind = 0; kind < 4; kind++) {
		static const char *const names[] = {"find_label", "find_ck_id", "find_full",
		                                    "get_vid"};

		for (size_t i = 0; i < finds; i++) {
			const struct p11p_vkey *k = &batch[rnd() % keys];
			struct p11p_vkey_match m = {.slot = k->slot};
			bool found;

			if (kind == 0 || kind == 2) {
				m.has_label = true;
				m.label = k->label;
				m.label_len = k->label_len;
			}
			if (kind == 1 || kind == 2) {
				m.has_ck_id = true;
				m.ck_id = k->ck_id;
				m.ck_id_len = k->ck_id_len;
			}
			if (kind == 2) {
				m.has_class = true;
				m.cls = k->cls;
			}
			t0 = now();
			if (kind == 3) {
				rv = p11p_index_get(idx, k->vid, out, &found);
				count = found;
			} else {
				rv = p11p_index_find(idx, &m, out, 4, &count);
			}
			lat[i] = now() - t0;
			if (rv != CKR_OK || count != 1)
				die(names[kind], rv ? rv : CKR_GENERAL_ERROR, idx);
		}
		summary(names[kind], lat, finds, "us", 1e6);
	}

	/* Refresh with nothing new (the cost a caller pays to stay current). */
	for (size_t i = 0; i < 10000; i++) {
		t0 = now();
		if ((rv = p11p_index_refresh(idx)) != CKR_OK)
			die("refresh", rv, idx);
		lat[i] = now() - t0;
	}
	summary("refresh_unchanged", lat, 10000, "us", 1e6);

	/* Durable single-key changes (one transaction each), then new keys. */
	for (size_t i = 0; i < puts; i++) {
		current(idx, batch[rnd() % keys].vid, &v);
		v.perms ^= P11P_VK_SIGN;
		t0 = now();
		if ((rv = p11p_index_put(idx, &v)) != CKR_OK)
			die("put", rv, idx);
		lat[i] = now() - t0;
	}
	summary("put_change", lat, puts, "ms", 1e3);
	for (size_t i = 0; i < puts && keys + puts <= P11P_INDEX_MAX_RECORDS; i++) {
		make_key(&v, keys + i);
		t0 = now();
		if ((rv = p11p_index_put(idx, &v)) != CKR_OK)
			die("put", rv, idx);
		lat[i] = now() - t0;
	}
	if (keys + puts <= P11P_INDEX_MAX_RECORDS)
		summary("put_new", lat, puts, "ms", 1e3);

	/* Another handle picking up one change (incremental read). */
	rv = p11p_index_open(path, &other, err, sizeof(err));
	if (rv != CKR_OK) {
		fprintf(stderr, "bench_index: open: %s\n", err);
		return 1;
	}
	for (size_t i = 0; i < 50; i++) {
		current(idx, batch[rnd() % keys].vid, &v);
		v.state = v.state == P11P_VK_ACTIVE ? P11P_VK_DEACTIVATED : P11P_VK_ACTIVE;
		if ((rv = p11p_index_put(idx, &v)) != CKR_OK)
			die("put", rv, idx);
		t0 = now();
		if ((rv = p11p_index_refresh(other)) != CKR_OK)
			die("refresh", rv, other);
		lat[i] = now() - t0;
	}
	summary("refresh_one_change", lat, 50, "us", 1e6);

	/*
	 * Propagation: from the writer's durable put to the other handle's copy holding the
	 * change (it refreshes every 50 us, as a busy process would at most).
	 */
	for (size_t i = 0; i < 100; i++) {
		struct p11p_vkey seen;
		bool found = false;
		double t2;

		current(idx, batch[rnd() % keys].vid, &v);
		v.state = v.state == P11P_VK_ACTIVE ? P11P_VK_DEACTIVATED : P11P_VK_ACTIVE;
		found = false;
		if ((rv = p11p_index_put(idx, &v)) != CKR_OK)
			die("put", rv, idx);
		t0 = now();
		for (;;) {
			if ((rv = p11p_index_refresh(other)) != CKR_OK)
				die("refresh", rv, other);
			if (p11p_index_get(other, v.vid, &seen, &found) == CKR_OK && found &&
			    seen.state == v.state)
				break;
			t2 = now();
			if (t2 - t0 > 10.0)
				die("propagation (10 s)", CKR_GENERAL_ERROR, other);
			struct timespec ts = {0, 50 * 1000};
			nanosleep(&ts, NULL);
		}
		lat[i] = now() - t0;
	}
	summary("propagate_change", lat, 100, "ms", 1e3);
	p11p_index_close(other);

	if (p11p_index_stats(idx, &st) == CKR_OK)
		printf("RESULT op=stats records=%zu seq=%llu\n", st.records,
		       (unsigned long long)st.seq);
	p11p_index_close(idx);
	free(batch);
	free(lat);
	return 0;
}
