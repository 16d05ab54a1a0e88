#include "base/map.h"
#include "base/mem.h"

#include <string.h>

static size_t hash(uint64_t a, uint64_t b)
{
	/* splitmix64 finalizer over both words: handles are often sequential. */
	uint64_t x = a * 0x9e3779b97f4a7c15ULL ^ b;

	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return (size_t)x;
}

static size_t find(const struct p11p_map *m, uint64_t a, uint64_t b)
{
	size_t mask = m->cap - 1;
	size_t i = hash(a, b) & mask;

	while (m->slots[i].value != NULL && (m->slots[i].a != a || m->slots[i].b != b))
		i = (i + 1) & mask;
	return i;
}

void *p11p_map_get(const struct p11p_map *m, uint64_t a, uint64_t b)
{
	if (m->cap == 0)
		return NULL;
	return m->slots[find(m, a, b)].value;
}

static int grow(struct p11p_map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	struct p11p_map old = *m;
	struct p11p_map_slot *slots = p11p_calloc(cap, sizeof(*slots));

	if (slots == NULL)
		return -1;
	m->slots = slots;
	m->cap = cap;
	for (size_t i = 0; i < old.cap; i++) {
		if (old.slots[i].value != NULL)
			m->slots[find(m, old.slots[i].a, old.slots[i].b)] = old.slots[i];
	}
	p11p_free(old.slots);
	return 0;
}

int p11p_map_put(struct p11p_map *m, uint64_t a, uint64_t b, void *value)
{
	size_t i;

	/* Keep the load factor under 1/2 so probes stay short. */
	if ((m->count + 1) * 2 > m->cap && grow(m) < 0)
		return -1;
	i = find(m, a, b);
	if (m->slots[i].value == NULL)
		m->count++;
	m->slots[i].a = a;
	m->slots[i].b = b;
	m->slots[i].value = value;
	return 0;
}

int p11p_map_exchange(struct p11p_map *m, uint64_t a, uint64_t b, void *value, void **old)
{
	size_t i;

	*old = NULL;
	if ((m->count + 1) * 2 > m->cap && grow(m) < 0)
		return -1;
	i = find(m, a, b);
	if (m->slots[i].value == NULL)
		m->count++;
	*old = m->slots[i].value;
	m->slots[i].a = a;
	m->slots[i].b = b;
	m->slots[i].value = value;
	return 0;
}

void p11p_map_prefetch(const struct p11p_map *m, uint64_t a, uint64_t b)
{
	if (m->cap != 0)
		__builtin_prefetch(&m->slots[hash(a, b) & (m->cap - 1)], 1);
}

void *p11p_map_remove(struct p11p_map *m, uint64_t a, uint64_t b)
{
	size_t mask, i, j;
	void *value;

	if (m->cap == 0)
		return NULL;
	mask = m->cap - 1;
	i = find(m, a, b);
	value = m->slots[i].value;
	if (value == NULL)
		return NULL;
	m->slots[i].value = NULL;
	m->count--;
	/* Backward-shift deletion: re-place the rest of the probe run. */
	for (j = (i + 1) & mask; m->slots[j].value != NULL; j = (j + 1) & mask) {
		struct p11p_map_slot s = m->slots[j];

		m->slots[j].value = NULL;
		m->slots[find(m, s.a, s.b)] = s;
	}
	return value;
}

void p11p_map_each(const struct p11p_map *m, void (*fn)(void *value, void *arg), void *arg)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].value != NULL)
			fn(m->slots[i].value, arg);
}

void p11p_map_clear(struct p11p_map *m)
{
	p11p_free(m->slots);
	memset(m, 0, sizeof(*m));
}

/*
 * The map grows when (count + 1) * 2 > cap, so cap >= 2 * (count + extra + 1)
 * suffices: rehashed through p11p_map_put into a map of that capacity, which
 * never grows either.
 */
int p11p_map_reserve(struct p11p_map *m, size_t extra)
{
	size_t need = (m->count + extra + 1) * 2;
	size_t cap = m->cap ? m->cap : 64;
	struct p11p_map nm;

	if (need <= m->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	nm.slots = p11p_calloc(cap, sizeof(*nm.slots));
	if (nm.slots == NULL)
		return -1;
	nm.cap = cap;
	nm.count = 0;
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i].value != NULL)
			(void)p11p_map_put(&nm, m->slots[i].a, m->slots[i].b, m->slots[i].value);
	}
	p11p_map_clear(m);
	*m = nm;
	return 0;
}
