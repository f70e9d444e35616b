/*
 * connmap.c - writers' side of the lock-free connection map (see connmap.h).
 */
#include "connmap.h"

#include <stdlib.h>

#define CONNMAP_MIN 64

static struct connmap_table *table_new(size_t capacity)
{
	struct connmap_table *t = calloc(1, sizeof *t + capacity * sizeof t->slots[0]);
	if (t)
		t->mask = capacity - 1;
	return t;
}

/* Writes into a table not yet published: plain stores are enough. */
static void table_insert_fresh(struct connmap_table *t, const void *key, void *value)
{
	size_t i = connmap_hash(key) & t->mask;
	while (t->slots[i].key)
		i = (i + 1) & t->mask;
	t->slots[i].key = key;
	t->slots[i].value = value;
	t->used++;
}

static int grow(struct connmap *m)
{
	struct connmap_table *old = m->table;
	size_t live = 0;
	if (old)
		for (size_t i = 0; i <= old->mask; i++)
			live += old->slots[i].value != NULL;
	size_t cap = CONNMAP_MIN;
	while (cap < 4 * (live + 1))
		cap *= 2;
	struct connmap_table *t = table_new(cap);
	if (!t)
		return -1;
	if (old)
		for (size_t i = 0; i <= old->mask; i++)
			if (old->slots[i].value)
				table_insert_fresh(t, old->slots[i].key, old->slots[i].value);
	t->older = old;
	__atomic_store_n(&m->table, t, __ATOMIC_RELEASE);
	return 0;
}

int connmap_put(struct connmap *m, const void *key, void *value)
{
	struct connmap_table *t = m->table;
	if (!t || 4 * (t->used + 1) > 3 * (t->mask + 1)) {
		if (grow(m) != 0)
			return -1;
		t = m->table;
	}
	size_t i = connmap_hash(key) & t->mask, reuse = (size_t)-1;
	for (;; i = (i + 1) & t->mask) {
		const void *k = t->slots[i].key;
		if (k == key) {
			__atomic_store_n(&t->slots[i].value, value, __ATOMIC_RELEASE);
			return 0;
		}
		if (!k)
			break;
		if (!t->slots[i].value && reuse == (size_t)-1)
			reuse = i;
	}
	if (reuse != (size_t)-1) {
		/* A reader probing for the tombstone's old key may now meet this
		 * key instead and go on probing: the old key is gone anyway. */
		i = reuse;
	} else {
		t->used++;
	}
	__atomic_store_n(&t->slots[i].value, NULL, __ATOMIC_RELAXED);
	__atomic_store_n(&t->slots[i].key, key, __ATOMIC_RELEASE);
	__atomic_store_n(&t->slots[i].value, value, __ATOMIC_RELEASE);
	return 0;
}

void *connmap_del(struct connmap *m, const void *key)
{
	struct connmap_table *t = m->table;
	if (!t)
		return NULL;
	for (size_t i = connmap_hash(key) & t->mask;; i = (i + 1) & t->mask) {
		const void *k = t->slots[i].key;
		if (k == key) {
			void *v = t->slots[i].value;
			__atomic_store_n(&t->slots[i].value, NULL, __ATOMIC_RELEASE);
			return v;
		}
		if (!k)
			return NULL;
	}
}

void connmap_each(struct connmap *m, void (*fn)(void *value, void *arg), void *arg)
{
	struct connmap_table *t = m->table;
	if (!t)
		return;
	for (size_t i = 0; i <= t->mask; i++)
		if (t->slots[i].value)
			fn(t->slots[i].value, arg);
}

void connmap_destroy(struct connmap *m)
{
	struct connmap_table *t = m->table;
	while (t) {
		struct connmap_table *older = t->older;
		free(t);
		t = older;
	}
	m->table = NULL;
}
