/*
 * A small open-addressing hash map from a two-word key to a non-NULL pointer.
 * Used for the handle tables: (0, proxy handle) -> entry, and
 * (slot/member, backend handle) -> entry. Not thread-safe: callers hold the
 * lock that guards the table.
 */
#ifndef P11P_MAP_H
#define P11P_MAP_H

#include <stddef.h>
#include <stdint.h>

struct p11p_map_slot {
	uint64_t a, b;
	void *value; /* NULL: empty */
};

struct p11p_map {
	struct p11p_map_slot *slots;
	size_t cap; /* power of two, or 0 */
	size_t count;
};

/* The value stored under (a, b), or NULL. */
void *p11p_map_get(const struct p11p_map *m, uint64_t a, uint64_t b);
/* Stores value (non-NULL) under (a, b), replacing any. -1 on ENOMEM, else 0. */
int p11p_map_put(struct p11p_map *m, uint64_t a, uint64_t b, void *value);
/*
 * Stores value (non-NULL) under (a, b) and sets *old to the value it replaced
 * (NULL: none): a get and a put in one probe. -1 on ENOMEM (map unchanged,
 * *old NULL), else 0.
 */
int p11p_map_exchange(struct p11p_map *m, uint64_t a, uint64_t b, void *value, void **old);
/*
 * A hint: the slot of (a, b) is about to be used. Loops over many keys of a
 * map too big for the cache call it a few keys ahead of their get/put.
 */
void p11p_map_prefetch(const struct p11p_map *m, uint64_t a, uint64_t b);
/* Removes (a, b); returns the value it held, or NULL. */
void *p11p_map_remove(struct p11p_map *m, uint64_t a, uint64_t b);
/* Calls fn for every value (order unspecified); fn must not change the map. */
void p11p_map_each(const struct p11p_map *m, void (*fn)(void *value, void *arg), void *arg);
/* Frees the table (not the values). */
void p11p_map_clear(struct p11p_map *m);
/*
 * Makes room so that the next `extra` p11p_map_put() calls cannot allocate
 * (so that a batch applied after it cannot fail half-way). 0, or -1 when out
 * of memory (the map unchanged).
 */
int p11p_map_reserve(struct p11p_map *m, size_t extra);

#endif
