/*
 * A libFuzzer stand-in: runs LLVMFuzzerTestOneInput over seed files, then over
 * random mutations of them, so the fuzz targets run in every `make check`
 * with the ordinary compiler, under ASan/UBSan and under valgrind.
 *
 *   fuzz_config [-n RUNS] [-t SECONDS] [-s SEED] [-m MAXLEN] [-T TIMEOUT]
 *               [-x DICT] [-w FILE] PATH...
 *
 * PATH: seed files, or directories of them (not recursive). After the seeds,
 * up to RUNS mutants (default 100000) are run, stopping early after SECONDS
 * (default 10; 0: no limit). Mutants are a pure function of SEED (default 1)
 * and the seeds, never of timing, so a failure at mutant #N reproduces with
 * the same arguments and -n N. -w FILE writes each input to FILE before it
 * runs: after a crash or a hang it holds the culprit. A single input running
 * longer than TIMEOUT seconds (default 10) fails the run. -x DICT: tokens in
 * libFuzzer's dictionary format to splice in. Exit 0 when every input ran.
 * There is no coverage feedback: this is a smoke test, `make fuzz` is the fuzzer.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional in a target, as with libFuzzer. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#define SEED_MAX  (1024 * 1024) /* bytes per seed file read */
#define SEEDS_MAX 4096
#define TOKEN_MAX 128

struct buf {
	uint8_t *data;
	size_t len;
};

static struct buf seeds[SEEDS_MAX];
static size_t n_seeds;
static struct buf *tokens;
static size_t n_tokens;
static uint64_t rng_state;
static size_t max_len = 64 * 1024;
static const char *save_path;

/* ---- helpers ------------------------------------------------------------- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory");
	return p;
}

/* xorshift64*: small, fast, and the same sequence everywhere. */
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

/* Uniform enough in [0, n); n > 0. */
static size_t below(size_t n)
{
	return (size_t)(rnd() % n);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_file(const char *path, struct buf *out)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data;
	size_t n;

	if (f == NULL)
		return -1;
	data = xmalloc(SEED_MAX);
	n = fread(data, 1, SEED_MAX, f);
	if (ferror(f)) {
		fclose(f);
		free(data);
		return -1;
	}
	fclose(f);
	out->data = realloc(data, n ? n : 1);
	if (out->data == NULL)
		die("out of memory");
	out->len = n;
	return 0;
}

static void add_seed_file(const char *path)
{
	if (n_seeds == SEEDS_MAX)
		die("more than %d seed files", SEEDS_MAX);
	if (read_file(path, &seeds[n_seeds]) != 0)
		die("cannot read %s", path);
	n_seeds++;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Regular files of a directory, in name order so that runs are reproducible. */
static void add_seed_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (d == NULL)
		die("cannot open %s", dir);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (names == NULL)
				die("out of memory");
		}
		names[n] = xmalloc(strlen(dir) + strlen(e->d_name) + 2);
		sprintf(names[n], "%s/%s", dir, e->d_name);
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		struct stat st;

		if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
			add_seed_file(names[i]);
		free(names[i]);
	}
	free(names);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* libFuzzer dictionary: one `[name=]"token"` per line, \\ \" \xHH escapes, # comments. */
static void load_dict(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	size_t cap = 0;

	if (f == NULL)
		die("cannot read %s", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		char *p = line, *q;
		uint8_t tok[TOKEN_MAX];
		size_t n = 0;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '#' || *p == '\n' || *p == '\0')
			continue;
		p = strchr(p, '"');
		q = strrchr(line, '"');
		if (p == NULL || q == p)
			die("bad dictionary line: %s", line);
		for (p++; p < q && n < TOKEN_MAX; p++) {
			if (*p != '\\') {
				tok[n++] = (uint8_t)*p;
			} else if (p[1] == 'x' && hexval(p[2]) >= 0 && hexval(p[3]) >= 0) {
				tok[n++] = (uint8_t)(hexval(p[2]) * 16 + hexval(p[3]));
				p += 3;
			} else if (p[1] == '\\' || p[1] == '"') {
				tok[n++] = (uint8_t)p[1];
				p++;
			} else {
				die("bad escape in dictionary line: %s", line);
			}
		}
		if (n == 0)
			continue;
		if (n_tokens == cap) {
			cap = cap ? cap * 2 : 64;
			tokens = realloc(tokens, cap * sizeof(*tokens));
			if (tokens == NULL)
				die("out of memory");
		}
		tokens[n_tokens].data = xmalloc(n);
		memcpy(tokens[n_tokens].data, tok, n);
		tokens[n_tokens].len = n;
		n_tokens++;
	}
	fclose(f);
}

/* ---- mutation ------------------------------------------------------------ */

/* Bytes that matter to YAML: structure, quoting, escapes, anchors, line breaks. */
static const char special[] = ":-{}[],&*!|>'\"#%@`?\\\n\r\t 0x19afAF.~=$/";

/* Inserts n bytes at pos (room permitting: the caller keeps len + n <= cap). */
static void insert(uint8_t *b, size_t *len, size_t pos, const uint8_t *src, size_t n)
{
	memmove(b + pos + n, b + pos, *len - pos);
	memcpy(b + pos, src, n);
	*len += n;
}

static void erase(uint8_t *b, size_t *len, size_t pos, size_t n)
{
	memmove(b + pos, b + pos + n, *len - pos - n);
	*len -= n;
}

/* A chunk of 1..64 bytes from a random seed (or none when that seed is empty). */
static struct buf chunk(void)
{
	const struct buf *s = &seeds[below(n_seeds)];
	struct buf c = {NULL, 0};
	size_t pos, n;

	if (s->len == 0)
		return c;
	pos = below(s->len);
	n = 1 + below(64);
	if (n > s->len - pos)
		n = s->len - pos;
	c.data = s->data + pos;
	c.len = n;
	return c;
}

/* The line holding pos: [*start, *end), *end past its '\n' if any. */
static void line_at(const uint8_t *b, size_t len, size_t pos, size_t *start, size_t *end)
{
	size_t i = pos;

	while (i > 0 && b[i - 1] != '\n')
		i--;
	*start = i;
	for (i = pos; i < len && b[i] != '\n'; i++)
		;
	*end = i < len ? i + 1 : len;
}

/*
 * Line-level edits keep most of YAML's indentation intact, so more mutants get
 * past the syntax check into the schema walk.
 */
static void mutate_line(uint8_t *b, size_t *len, size_t cap, uint8_t *scratch)
{
	size_t s0, e0, s1, e1, n;
	const struct buf *src;
	const uint8_t *colon;

	if (*len == 0)
		return;
	line_at(b, *len, below(*len), &s0, &e0);
	n = e0 - s0;
	switch (below(4)) {
	case 0: /* duplicate a line somewhere else: more items, duplicate keys */
		line_at(b, *len, below(*len), &s1, &e1);
		if (*len + n <= cap) {
			memcpy(scratch, b + s0, n);
			insert(b, len, s1, scratch, n);
		}
		break;
	case 1: /* delete a line: missing keys, empty lists */
		erase(b, len, s0, n);
		break;
	case 2: /* a line from another seed */
		src = &seeds[below(n_seeds)];
		if (src->len == 0)
			break;
		line_at(src->data, src->len, below(src->len), &s1, &e1);
		if (*len + (e1 - s1) <= cap)
			insert(b, len, s0, src->data + s1, e1 - s1);
		break;
	default: /* a new value after "key: " from the dictionary or another seed */
		colon = memchr(b + s0, ':', n);
		if (colon == NULL)
			break;
		s1 = (size_t)(colon - b) + 1;
		e1 = e0 > s0 && b[e0 - 1] == '\n' ? e0 - 1 : e0;
		erase(b, len, s1, e1 - s1);
		if (n_tokens && below(2)) {
			const struct buf *t = &tokens[below(n_tokens)];

			if (*len + t->len + 1 <= cap) {
				insert(b, len, s1, t->data, t->len);
				insert(b, len, s1, (const uint8_t *)" ", 1);
			}
		} else {
			struct buf c = chunk();

			if (c.len && *len + c.len <= cap)
				insert(b, len, s1, c.data, c.len);
		}
		break;
	}
}

/* One mutation of b (len bytes, room for cap). */
static void mutate_once(uint8_t *b, size_t *len, size_t cap, uint8_t *scratch)
{
	size_t pos = *len ? below(*len) : 0, n;
	uint8_t ch;
	struct buf c;

	switch (below(20)) {
	case 0: /* flip a bit */
		if (*len)
			b[pos] ^= (uint8_t)(1u << below(8));
		break;
	case 1: /* overwrite a byte with a special or random one */
		if (*len)
			b[pos] = below(4) ? (uint8_t)special[below(sizeof(special) - 1)]
			                  : (uint8_t)rnd();
		break;
	case 2: /* insert a special byte */
		ch = (uint8_t)special[below(sizeof(special) - 1)];
		if (*len < cap)
			insert(b, len, below(*len + 1), &ch, 1);
		break;
	case 3: /* delete a range */
		if (*len) {
			n = 1 + below(*len - pos < 32 ? *len - pos : 32);
			erase(b, len, pos, n);
		}
		break;
	case 4: /* duplicate a range: more list items, longer scalars, deeper nesting */
		if (*len) {
			n = 1 + below(*len - pos < 256 ? *len - pos : 256);
			if (*len + n <= cap) {
				memcpy(scratch, b + pos, n);
				insert(b, len, below(*len + 1), scratch, n);
			}
		}
		break;
	case 5: /* splice in a piece of another seed */
		c = chunk();
		if (c.len && *len + c.len <= cap)
			insert(b, len, below(*len + 1), c.data, c.len);
		break;
	case 6: /* overwrite with a piece of another seed */
		c = chunk();
		if (c.len && *len >= c.len) {
			pos = below(*len - c.len + 1);
			memcpy(b + pos, c.data, c.len);
		}
		break;
	case 7: /* insert a dictionary token */
		if (n_tokens) {
			c = tokens[below(n_tokens)];
			if (*len + c.len <= cap)
				insert(b, len, below(*len + 1), c.data, c.len);
		}
		break;
	case 8: /* truncate */
		if (*len)
			*len = below(*len + 1);
		break;
	case 9: /* a digit: slot ids, counts, lengths */
		if (*len)
			b[pos] = (uint8_t)('0' + below(10));
		break;
	default:
		mutate_line(b, len, cap, scratch);
		break;
	}
}

/* ---- running ------------------------------------------------------------- */

static unsigned long current;

static void on_alarm(int sig)
{
	static const char msg[] = "fuzz: an input ran past the time limit (hang?)\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing left to do */
	}
	_exit(3);
}

/* Rewritten in place, not re-created: this runs once per input. */
static void save(const uint8_t *data, size_t len)
{
	static int fd = -1;

	if (save_path == NULL)
		return;
	if (fd < 0)
		fd = open(save_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || pwrite(fd, data, len, 0) != (ssize_t)len || ftruncate(fd, (off_t)len) != 0)
		die("cannot write %s", save_path);
}

/* Runs one input from an exact-size heap copy, so over-reads are caught. */
static void run(const uint8_t *data, size_t len, unsigned timeout)
{
	uint8_t *copy = xmalloc(len);

	if (len)
		memcpy(copy, data, len);
	save(copy, len);
	alarm(timeout);
	LLVMFuzzerTestOneInput(copy, len);
	alarm(0);
	free(copy);
	current++;
}

static unsigned long number(const char *s, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		die("bad %s", what);
	return v;
}

int main(int argc, char **argv)
{
	unsigned long runs = 100000, seconds = 10, timeout = 10, seed = 1, mutants = 0;
	uint8_t *b, *scratch;
	double start, deadline;
	int opt;

	while ((opt = getopt(argc, argv, "n:t:s:m:T:x:w:")) != -1) {
		switch (opt) {
		case 'n':
			runs = number(optarg, "-n");
			break;
		case 't':
			seconds = number(optarg, "-t");
			break;
		case 's':
			seed = number(optarg, "-s");
			break;
		case 'm':
			max_len = number(optarg, "-m");
			break;
		case 'T':
			timeout = number(optarg, "-T");
			break;
		case 'x':
			load_dict(optarg);
			break;
		case 'w':
			save_path = optarg;
			break;
		default:
			fprintf(stderr,
			        "usage: %s [-n RUNS] [-t SECONDS] [-s SEED] [-m MAXLEN] "
			        "[-T TIMEOUT] [-x DICT] [-w FILE] PATH...\n",
			        argv[0]);
			return 2;
		}
	}
	if (optind >= argc)
		die("no seed files or directories given");
	for (int i = optind; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) != 0)
			die("cannot stat %s", argv[i]);
		if (S_ISDIR(st.st_mode))
			add_seed_dir(argv[i]);
		else
			add_seed_file(argv[i]);
	}
	if (n_seeds == 0)
		die("no seed files found");
	if (max_len == 0 || timeout == 0 || timeout > 100000)
		die("bad -m or -T");
	rng_state = seed * 0x9e3779b97f4a7c15ULL + 1;
	signal(SIGALRM, on_alarm);
	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);

	start = now();
	deadline = start + (double)seconds;
	for (size_t i = 0; i < n_seeds; i++)
		run(seeds[i].data, seeds[i].len, (unsigned)timeout);

	b = xmalloc(max_len);
	scratch = xmalloc(max_len);
	while (mutants < runs && (seconds == 0 || now() < deadline)) {
		const struct buf *s = &seeds[below(n_seeds)];
		size_t len = s->len < max_len ? s->len : max_len;
		size_t stack = 1;

		/* Mostly one or two edits: each one more is half as likely. */
		while (stack < 16 && below(2))
			stack++;

		memcpy(b, s->data, len);
		for (size_t i = 0; i < stack; i++)
			mutate_once(b, &len, max_len, scratch);
		run(b, len, (unsigned)timeout);
		mutants++;
	}
	fprintf(stderr, "fuzz: %lu inputs (%zu seeds, %lu mutants, seed %lu) in %.1f s\n", current,
	        n_seeds, mutants, seed, now() - start);

	free(b);
	free(scratch);
	for (size_t i = 0; i < n_seeds; i++)
		free(seeds[i].data);
	for (size_t i = 0; i < n_tokens; i++)
		free(tokens[i].data);
	free(tokens);
	return 0;
}
