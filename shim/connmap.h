/*
 * connmap.h - from a program's PGconn * to the shim's record of it.
 *
 * Look-ups happen on every libpq call and take no lock: an open-addressing
 * table of (key, value) words read with acquire loads.  Inserts and removals
 * (connect and finish only) are serialised by one mutex.  A removed entry
 * keeps its key with a NULL value (a tombstone) so that probes for other keys
 * walk past it; inserts reuse tombstones.  When the table fills, a table
 * twice as big replaces it and the old one is kept, never freed, so a reader
 * still probing it stays safe; the old tables add up to less than the live one.
 */
#ifndef PQSHIM_CONNMAP_H
#define PQSHIM_CONNMAP_H

#include <stddef.h>

struct connmap_entry {
	const void *key;
	void *value;
};

struct connmap_table {
	size_t mask;                       /* capacity - 1, capacity a power of 2 */
	size_t used;                       /* keys ever written (live + tombstones) */
	struct connmap_table *older;       /* retired tables, kept for readers */
	struct connmap_entry slots[];
};

struct connmap {
	struct connmap_table *table;       /* current table (atomic pointer) */
};

static inline size_t connmap_hash(const void *key)
{
	/* malloc'd addresses: drop the always-zero low bits, then mix. */
	size_t h = (size_t)key >> 4;
	h *= 0x9E3779B97F4A7C15ull;
	return h ^ (h >> 29);
}

/* The value for key, or NULL.  Lock-free; safe against concurrent inserts. */
static inline void *connmap_get(const struct connmap *m, const void *key)
{
	const struct connmap_table *t = __atomic_load_n(&m->table, __ATOMIC_ACQUIRE);
	if (!t)
		return NULL;
	for (size_t i = connmap_hash(key) & t->mask;; i = (i + 1) & t->mask) {
		const void *k = __atomic_load_n(&t->slots[i].key, __ATOMIC_ACQUIRE);
		if (k == key)
			return __atomic_load_n(&t->slots[i].value, __ATOMIC_ACQUIRE);
		if (!k)
			return NULL;
	}
}

/* Writers: the caller holds its own lock around these. 0, or -1 on ENOMEM. */
int connmap_put(struct connmap *m, const void *key, void *value);
/* Remove key; returns the value it had, or NULL. */
void *connmap_del(struct connmap *m, const void *key);
/* Call fn on every live value (caller holds the writers' lock). */
void connmap_each(struct connmap *m, void (*fn)(void *value, void *arg), void *arg);
/* Free every table (tests, and a forked child that starts afresh). */
void connmap_destroy(struct connmap *m);

#endif
