/*
 * test_connmap.c - the lock-free PGconn -> record map.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>

#include "connmap.h"

static void put_get_del(void **state)
{
	(void)state;
	struct connmap m = { 0 };
	int a, b, va, vb;
	assert_null(connmap_get(&m, &a));
	assert_int_equal(connmap_put(&m, &a, &va), 0);
	assert_int_equal(connmap_put(&m, &b, &vb), 0);
	assert_ptr_equal(connmap_get(&m, &a), &va);
	assert_ptr_equal(connmap_get(&m, &b), &vb);
	assert_ptr_equal(connmap_del(&m, &a), &va);
	assert_null(connmap_get(&m, &a));
	assert_ptr_equal(connmap_get(&m, &b), &vb);
	assert_null(connmap_del(&m, &a));
	/* a key freed and handed out again by malloc comes back */
	assert_int_equal(connmap_put(&m, &a, &vb), 0);
	assert_ptr_equal(connmap_get(&m, &a), &vb);
	connmap_destroy(&m);
}

static void count(void *value, void *arg) { (void)value; ++*(int *)arg; }

/* Thousands of keys, churned: every live key stays reachable across
 * growth, tombstones never hide a key, the table does not grow forever. */
static void growth_and_churn(void **state)
{
	(void)state;
	enum { N = 5000 };
	struct connmap m = { 0 };
	char *keys = malloc(N * 16);
	for (int i = 0; i < N; i++)
		assert_int_equal(connmap_put(&m, keys + 16 * i, keys + 16 * i + 1), 0);
	for (int i = 0; i < N; i += 2)
		assert_ptr_equal(connmap_del(&m, keys + 16 * i), keys + 16 * i + 1);
	for (int i = 0; i < N; i++)
		assert_ptr_equal(connmap_get(&m, keys + 16 * i), i % 2 ? keys + 16 * i + 1 : NULL);
	for (int round = 0; round < 50; round++)
		for (int i = 0; i < N; i += 2) {
			assert_int_equal(connmap_put(&m, keys + 16 * i, keys + 16 * i + 2), 0);
			assert_ptr_equal(connmap_del(&m, keys + 16 * i), keys + 16 * i + 2);
		}
	int live = 0;
	connmap_each(&m, count, &live);
	assert_int_equal(live, N / 2);
	assert_true(m.table->mask + 1 <= 4 * 8192);
	connmap_destroy(&m);
	free(keys);
}

struct reader_arg { struct connmap *m; char *keys; int n; volatile int *stop; int misses; };

static void *reader(void *p)
{
	struct reader_arg *r = p;
	while (!*r->stop)
		for (int i = 0; i < r->n; i++)
			if (connmap_get(r->m, r->keys + 16 * i) != r->keys + 16 * i + 1)
				r->misses++;
	return NULL;
}

/* Readers never miss a stable key while a writer inserts, deletes and grows. */
static void readers_during_writes(void **state)
{
	(void)state;
	enum { STABLE = 64, CHURN = 20000 };
	struct connmap m = { 0 };
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	char *stable = malloc(STABLE * 16), *churn = malloc(CHURN * 16);
	for (int i = 0; i < STABLE; i++)
		connmap_put(&m, stable + 16 * i, stable + 16 * i + 1);
	volatile int stop = 0;
	struct reader_arg ra[2] = { { &m, stable, STABLE, &stop, 0 }, { &m, stable, STABLE, &stop, 0 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, reader, &ra[i]);
	for (int i = 0; i < CHURN; i++) {
		pthread_mutex_lock(&lock);
		connmap_put(&m, churn + 16 * i, churn);
		if (i % 3)
			connmap_del(&m, churn + 16 * (i / 2));
		pthread_mutex_unlock(&lock);
	}
	stop = 1;
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(ra[i].misses, 0);
	}
	connmap_destroy(&m);
	free(stable);
	free(churn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(put_get_del),
		cmocka_unit_test(growth_and_churn),
		cmocka_unit_test(readers_during_writes),
	};
	return cmocka_run_group_tests_name("connmap", tests, NULL, NULL);
}
