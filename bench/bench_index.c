/*
 * Virtual-key store benchmark (issues 4 and 11), for either engine.
 *
 *   bench_index [--keys N] [--puts N] [--finds N] [--dir DIR | --target T] [--fill-only]
 *
 * Builds a store of N keys (default 100000): a SQLite file in a temp
 * directory under DIR (default $TMPDIR or /tmp; the disk under it decides the
 * fsync cost), or the store T names (an `index:` value: a file path or a
 * postgresql:// URI; keys are added to what is there). Prints one RESULT
 * line per figure:
 *   load + first find by label       (a new handle loading the whole store)
 *   find by label / by CKA_ID / vid  (from the in-memory copy)
 *   refresh with nothing new         (the change notice)
 *   put (change one key, durable)    p50, p99
 *   propagation to another process   p50, p99: a change committed here until
 *                                    a process polling refresh() sees it
 * --fill-only: only adds the N keys (one batch; slots v-bench-0 to v-bench-3)
 * to the store T and exits: a store with many keys under another benchmark
 * (bench/run.sh part storesign).
 * Figures are information only: the exit status is non-zero only when a
 * call fails.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
static bool own_dir;

static void cleanup(void)
{
	char tmp[4300];

	if (!own_dir)
		return;
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

/*
 * A change committed here until another process that polls refresh() every
 * 200 us sees it (the store's part of the propagation; the module refreshes
 * at most every P11P_VKEY_REFRESH_MS on top). The other process has loaded
 * the store before the first change is timed.
 */
static void propagation(struct p11p_index *idx, struct p11p_vkey *batch, size_t keys)
{
	enum { N = 100 };
	int p2c[2], c2p[2];
	double lat[N];
	pid_t pid;
	CK_RV rv;

	if (pipe(p2c) != 0 || pipe(c2p) != 0)
		return;
	pid = fork();
	if (pid < 0)
		return;
	if (pid == 0) {
		struct p11p_index *mine = NULL;
		char err[512];
		uint64_t msg[2];

		close(p2c[1]);
		close(c2p[0]);
		double ready;

		if (p11p_index_open(path, &mine, err, sizeof(err)) != CKR_OK)
			_exit(1);
		/* Loaded: the changes timed from here on meet a running process. */
		ready = now();
		if (write(c2p[1], &ready, sizeof(ready)) != (ssize_t)sizeof(ready))
			_exit(1);
		while (read(p2c[0], msg, sizeof(msg)) == (ssize_t)sizeof(msg)) {
			struct p11p_vkey got;
			bool found = false;
			double t;

			for (;;) {
				if (p11p_index_refresh(mine) != CKR_OK)
					_exit(1);
				if (p11p_index_get(mine, msg[0], &got, &found) == CKR_OK && found &&
				    got.rev >= msg[1])
					break;
				usleep(200);
			}
			t = now();
			if (write(c2p[1], &t, sizeof(t)) != (ssize_t)sizeof(t))
				_exit(1);
		}
		p11p_index_close(mine);
		_exit(0);
	}
	close(p2c[0]);
	close(c2p[1]);
	{
		double ready;

		/* Not timed: the other process's own load of the store. */
		if (read(c2p[0], &ready, sizeof(ready)) != (ssize_t)sizeof(ready)) {
			fprintf(stderr, "bench_index: the other process did not start\n");
			close(p2c[1]);
			close(c2p[0]);
			waitpid(pid, NULL, 0);
			return;
		}
	}
	for (size_t i = 0; i < N; i++) {
		struct p11p_vkey v = batch[rnd() % keys];
		v.rev = 0;
		uint64_t msg[2];
		double t0, t1;

		v.perms ^= P11P_VK_ENCRYPT;
		v.rev = 0;
		if ((rv = p11p_index_put(idx, &v)) != CKR_OK)
			die("put", rv, idx);
		t0 = now();
		msg[0] = v.vid;
		msg[1] = v.rev;
		if (write(p2c[1], msg, sizeof(msg)) != (ssize_t)sizeof(msg) ||
		    read(c2p[0], &t1, sizeof(t1)) != (ssize_t)sizeof(t1)) {
			fprintf(stderr, "bench_index: the other process stopped\n");
			break;
		}
		lat[i] = t1 - t0;
		if (i == N - 1)
			summary("propagation_other_process", lat, N, "ms", 1e3);
	}
	close(p2c[1]);
	close(c2p[0]);
	waitpid(pid, NULL, 0);
}

int main(int argc, char **argv)
{
	size_t keys = 100000, puts = 300, finds = 200000;
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", *target = NULL;
	char err[512];
	struct p11p_index *idx, *other;
	struct p11p_vkey *batch, v, out[4];
	struct p11p_index_stats st;
	double t0, t1, load_best = 1e9, *lat;
	long rss0;
	size_t count;
	struct stat sb;
	bool fill_only = false;
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
		else if (strcmp(argv[i], "--fill-only") == 0)
			fill_only = true;
		else {
			fprintf(stderr,
			        "usage: %s [--keys N] [--puts N] [--finds N] [--dir DIR | --target "
			        "T] [--fill-only]\n",
			        argv[0]);
			return 2;
		}
	}
	if (keys == 0 || puts == 0 || finds == 0 || (fill_only && target == NULL))
		return 2;
	if (target != NULL) {
		snprintf(path, sizeof(path), "%s", target);
	} else {
		snprintf(dir, sizeof(dir), "%s/p11proxy-bench-index.XXXXXX", base);
		if (mkdtemp(dir) == NULL) {
			fprintf(stderr, "bench_index: mkdtemp %s: %s\n", dir, strerror(errno));
			return 1;
		}
		snprintf(path, sizeof(path), "%s/keys.db", dir);
		own_dir = true;
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
	/* the longest loop below: puts, finds or the 10,000 refreshes */
	lat = calloc(puts > finds ? (puts > 10000 ? puts : 10000) : (finds > 10000 ? finds : 10000),
	             sizeof(*lat));
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
	if (fill_only) {
		free(batch);
		free(lat);
		return 0;
	}
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

	/* Durable single-key changes (append + fdatasync), then new keys. */
	for (size_t i = 0; i < puts; i++) {
		v = batch[rnd() % keys];
		v.rev = 0;
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
		v = batch[rnd() % keys];
		v.rev = 0;
		v.state = v.state == P11P_VK_ACTIVE ? P11P_VK_DEACTIVATED : P11P_VK_ACTIVE;
		if ((rv = p11p_index_put(idx, &v)) != CKR_OK)
			die("put", rv, idx);
		t0 = now();
		if ((rv = p11p_index_refresh(other)) != CKR_OK)
			die("refresh", rv, other);
		lat[i] = now() - t0;
	}
	summary("refresh_one_change", lat, 50, "us", 1e6);
	p11p_index_close(other);

	propagation(idx, batch, keys);
	if (p11p_index_stats(idx, &st) == CKR_OK)
		printf("RESULT op=stats records=%zu seq=%llu\n", st.records,
		       (unsigned long long)st.seq);
	p11p_index_close(idx);
	free(batch);
	free(lat);
	return 0;
}
