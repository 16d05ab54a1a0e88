/*
 * Store durability and concurrency helper for tests/suites/55-index.sh
 * (PATH: the store, an `index:` value: a SQLite file or a postgresql:// URI).
 *
 *   indexkill writer PATH PREFIX COUNT MAXBATCH
 *       Commits COUNT transactions (0: until killed). Transaction i puts
 *       1..MAXBATCH keys (a random count b) labelled "PREFIX-i-j" (j < b) in
 *       slot "kill", each carrying b in its presence field, and after
 *       p11p_index_put_batch returns CKR_OK writes "i\n" to stdout with one
 *       write(2): a number on stdout is a promise that it is durable.
 *   indexkill check PATH PREFIX N
 *       Opens the index (which must load) and checks that transactions
 *       0..N-1 of PREFIX are there in whole, and that any later ones present
 *       (committed but not yet reported when the writer died) are whole too.
 *       Prints "PREFIX: N required, M present" on stdout; exit 0 when all hold.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/index.h"

#define SLOT "kill"

static void set_label(struct p11p_vkey *v, const char *prefix, unsigned long i, unsigned long j)
{
	v->label_len =
	    (size_t)snprintf((char *)v->label, sizeof(v->label), "%s-%lu-%lu", prefix, i, j);
}

static int writer(const char *path, const char *prefix, unsigned long count, unsigned long maxb)
{
	struct p11p_index *idx;
	struct p11p_vkey *batch;
	char err[512];
	CK_RV rv;

	if (maxb == 0 || maxb > 1000)
		return 2;
	rv = p11p_index_open(path, &idx, err, sizeof(err));
	if (rv != CKR_OK) {
		fprintf(stderr, "indexkill: open: %s\n", err);
		return 1;
	}
	batch = calloc(maxb, sizeof(*batch));
	if (batch == NULL)
		return 1;
	srand((unsigned)getpid());
	for (unsigned long i = 0; count == 0 || i < count; i++) {
		unsigned long b = 1 + (unsigned long)rand() % maxb;
		char line[32];
		int n;

		for (unsigned long j = 0; j < b; j++) {
			struct p11p_vkey *v = &batch[j];

			memset(v, 0, sizeof(*v));
			strcpy(v->slot, SLOT);
			v->cls = CKO_SECRET_KEY;
			v->key_type = CKK_AES;
			v->ck_id_len =
			    (size_t)snprintf((char *)v->ck_id, sizeof(v->ck_id), "%lu/%lu", i, j);
			set_label(v, prefix, i, j);
			v->perms = P11P_VK_ENCRYPT | P11P_VK_DECRYPT;
			v->origin = P11P_VK_SCANNED;
			v->presence = (uint32_t)b;
		}
		rv = p11p_index_put_batch(idx, batch, b);
		if (rv != CKR_OK) {
			p11p_index_last_error(idx, err, sizeof(err));
			fprintf(stderr, "indexkill: put %lu: 0x%lx %s\n", i, (unsigned long)rv,
			        err);
			return 1;
		}
		n = snprintf(line, sizeof(line), "%lu\n", i);
		if (write(1, line, (size_t)n) != n) {
			fprintf(stderr, "indexkill: write: %s\n", strerror(errno));
			return 1;
		}
	}
	free(batch);
	p11p_index_close(idx);
	return 0;
}

/* 1: transaction i present in whole; 0: absent; -1: partly there. */
static int txn_state(struct p11p_index *idx, const char *prefix, unsigned long i)
{
	struct p11p_vkey v, out[2];
	struct p11p_vkey_match m = {.slot = SLOT, .has_label = true};
	unsigned long b;
	size_t n;

	memset(&v, 0, sizeof(v));
	set_label(&v, prefix, i, 0);
	m.label = v.label;
	m.label_len = v.label_len;
	if (p11p_index_find(idx, &m, out, 2, &n) != CKR_OK || n > 1)
		return -1;
	if (n == 0) {
		/* None of the others may be there either. */
		for (unsigned long j = 1; j < 1000; j++) {
			set_label(&v, prefix, i, j);
			m.label_len = v.label_len;
			if (p11p_index_find(idx, &m, out, 2, &n) != CKR_OK || n != 0)
				return -1;
			if (j > 60)
				break; /* writers here use batches up to 50 */
		}
		return 0;
	}
	b = out[0].presence;
	for (unsigned long j = 1; j < b; j++) {
		set_label(&v, prefix, i, j);
		m.label_len = v.label_len;
		if (p11p_index_find(idx, &m, out, 2, &n) != CKR_OK || n != 1 ||
		    out[0].presence != b)
			return -1;
	}
	return 1;
}

static int check(const char *path, const char *prefix, unsigned long required)
{
	struct p11p_index *idx;
	char err[512];
	unsigned long present = 0, i;
	int rc = 0, st;
	CK_RV rv;

	rv = p11p_index_open(path, &idx, err, sizeof(err));
	if (rv != CKR_OK) {
		fprintf(stderr, "indexkill: the index does not load: 0x%lx %s\n", (unsigned long)rv,
		        err);
		return 1;
	}
	for (i = 0; i < required; i++) {
		st = txn_state(idx, prefix, i);
		if (st != 1) {
			fprintf(stderr, "indexkill: %s: committed transaction %lu is %s\n", prefix,
			        i, st == 0 ? "missing" : "partly there");
			rc = 1;
		} else {
			present++;
		}
	}
	/* Committed after the last report, or not: whole or absent, and then nothing more. */
	for (;; i++) {
		st = txn_state(idx, prefix, i);
		if (st < 0) {
			fprintf(stderr, "indexkill: %s: transaction %lu is partly there\n", prefix,
			        i);
			rc = 1;
		}
		if (st != 1)
			break;
		present++;
	}
	printf("%s: %lu required, %lu present\n", prefix, required, present);
	p11p_index_close(idx);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "writer") == 0)
		return writer(argv[2], argv[3], strtoul(argv[4], NULL, 10),
		              strtoul(argv[5], NULL, 10));
	if (argc == 5 && strcmp(argv[1], "check") == 0)
		return check(argv[2], argv[3], strtoul(argv[4], NULL, 10));
	fprintf(stderr, "usage: indexkill writer PATH PREFIX COUNT MAXBATCH\n"
	                "       indexkill check PATH PREFIX N\n");
	return 2;
}
