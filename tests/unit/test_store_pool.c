/* test_store_pool.c -- the connection pool over SQLite: bounded size and
 * overflow, acquire timeout (an error, never a hang), a waiter woken by a
 * release, recycling by age, pre-ping replacing a dead connection, and an
 * unreachable database not leaking slots. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store/store_int.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static char url[256], dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/st_pool_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(url, sizeof url, "sqlite:%s/p.db", dir);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

Test(store_pool, exhaustion_times_out_with_an_error, .init = setup, .fini = teardown)
{
    st_pool_cfg cfg = { .size = 2, .overflow = 1, .acquire_timeout = 100000 };
    st_pool *p = st_pool_new(&st_driver_sqlite, url, &cfg, NULL);
    st_conn *c[3];
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(c[i] = st_pool_acquire(p, NULL));
    st_err err;
    uint64_t t0 = now_ms();
    cr_assert_null(st_pool_acquire(p, &err));
    uint64_t waited = now_ms() - t0;
    cr_expect_eq(err.code, ST_ETIMEOUT);
    cr_expect(waited >= 95 && waited < 1000, "waited %llu ms", (unsigned long long)waited);
    st_pool_stats st;
    st_pool_stats_get(p, &st);
    cr_expect_eq(st.busy, 3);
    cr_expect_eq(st.max, 3);
    cr_expect_eq(st.timeouts, 1);
    /* The overflow connection is closed on release; the pool keeps size. */
    for (int i = 0; i < 3; i++)
        st_pool_release(p, c[i], false);
    st_pool_stats_get(p, &st);
    cr_expect_eq(st.idle, 2);
    cr_expect_eq(st.total, 2);
    cr_expect_eq(st.closed, 1);
    st_pool_free(p);
}

typedef struct hold { st_pool *p; st_conn *c; } hold;

static void *release_later(void *arg)
{
    hold *h = arg;
    usleep(50000);
    st_pool_release(h->p, h->c, false);
    return NULL;
}

Test(store_pool, a_release_wakes_a_waiter, .init = setup, .fini = teardown)
{
    st_pool_cfg cfg = { .size = 1, .acquire_timeout = 2000000 };
    st_pool *p = st_pool_new(&st_driver_sqlite, url, &cfg, NULL);
    hold h = { p, st_pool_acquire(p, NULL) };
    cr_assert_not_null(h.c);
    pthread_t th;
    pthread_create(&th, NULL, release_later, &h);
    uint64_t t0 = now_ms();
    st_conn *c = st_pool_acquire(p, NULL);
    uint64_t waited = now_ms() - t0;
    cr_assert_not_null(c);
    cr_expect_eq(c, h.c, "the released connection is reused");
    cr_expect(waited >= 40 && waited < 1500, "waited %llu ms", (unsigned long long)waited);
    pthread_join(th, NULL);
    st_pool_release(p, c, false);
    st_pool_free(p);
}

Test(store_pool, old_connections_are_recycled, .init = setup, .fini = teardown)
{
    st_pool_cfg cfg = { .size = 2, .recycle = 50000 };
    st_pool *p = st_pool_new(&st_driver_sqlite, url, &cfg, NULL);
    st_conn *c = st_pool_acquire(p, NULL);
    st_pool_release(p, c, false);
    c = st_pool_acquire(p, NULL);       /* young: reused */
    st_pool_release(p, c, false);
    st_pool_stats st;
    st_pool_stats_get(p, &st);
    cr_expect_eq(st.opened, 1);
    usleep(80000);
    c = st_pool_acquire(p, NULL);
    cr_assert_not_null(c);
    cr_expect_eq(st_conn_exec(c, "SELECT 1", NULL, 0, NULL, NULL), 0);
    st_pool_release(p, c, false);
    st_pool_stats_get(p, &st);
    cr_expect_eq(st.recycled, 1);
    cr_expect_eq(st.opened, 2);
    cr_expect_eq(st.total, 1);
    st_pool_free(p);
}

Test(store_pool, pre_ping_replaces_a_killed_connection, .init = setup, .fini = teardown)
{
    st_pool_cfg cfg = { .size = 2, .pre_ping = true, .pre_ping_idle = 0 };
    st_pool *p = st_pool_new(&st_driver_sqlite, url, &cfg, NULL);
    st_conn *c = st_pool_acquire(p, NULL);
    st_pool_release(p, c, false);
    st_pool_fail_next_pings(p, 1);     /* the server dropped it meanwhile */
    c = st_pool_acquire(p, NULL);
    cr_assert_not_null(c);
    cr_expect_eq(st_conn_exec(c, "SELECT 1", NULL, 0, NULL, NULL), 0);
    st_pool_release(p, c, false);
    st_pool_stats st;
    st_pool_stats_get(p, &st);
    cr_expect_eq(st.ping_failures, 1);
    cr_expect_eq(st.opened, 2);
    cr_expect_eq(st.total, 1, "the dead connection is gone, not leaked");
    /* Not idle long enough: no ping at all. */
    cfg.pre_ping_idle = 10000000;
    st_pool *q = st_pool_new(&st_driver_sqlite, url, &cfg, NULL);
    c = st_pool_acquire(q, NULL);
    st_pool_release(q, c, false);
    st_pool_fail_next_pings(q, 1);
    c = st_pool_acquire(q, NULL);
    st_pool_release(q, c, false);
    st_pool_stats_get(q, &st);
    cr_expect_eq(st.ping_failures, 0);
    st_pool_free(q);
    st_pool_free(p);
}

Test(store_pool, broken_connections_are_discarded)
{
    st_pool_cfg cfg = { .size = 2 };
    st_pool *p = st_pool_new(&st_driver_sqlite, "sqlite::memory:", &cfg, NULL);
    st_conn *c = st_pool_acquire(p, NULL);
    st_pool_release(p, c, true);
    st_pool_stats st;
    st_pool_stats_get(p, &st);
    cr_expect_eq(st.total, 0);
    cr_expect_eq(st.closed, 1);
    st_pool_free(p);
}

Test(store_pool, an_unreachable_database_fails_fast_and_leaks_no_slot)
{
    st_pool_cfg cfg = { .size = 1, .acquire_timeout = 5000000 };
    st_pool *p = st_pool_new(&st_driver_sqlite, "sqlite:/proc/hscale-no/such.db", &cfg, NULL);
    st_err err;
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = now_ms();
        cr_assert_null(st_pool_acquire(p, &err));
        cr_expect_eq(err.code, ST_EUNAVAIL, "%s", err.msg);
        cr_expect_lt(now_ms() - t0, 1000, "must not wait for the timeout");
    }
    st_pool_stats st;
    st_pool_stats_get(p, &st);
    cr_expect_eq(st.total, 0);
    st_pool_free(p);
}

Test(store_pool, lifetimes_are_jittered_and_an_expired_connection_closes_when_returned,
     .init = setup, .fini = teardown)
{
    st_pool_cfg cfg = { .size = 16, .recycle = 1000000 };
    st_pool *p = st_pool_new(&st_driver_sqlite, url, &cfg, NULL);
    st_conn *cs[16];
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < 16; i++) {
        cs[i] = st_pool_acquire(p, NULL);
        cr_assert_not_null(cs[i]);
        uint64_t life = cs[i]->expires_us - cs[i]->created_us;
        cr_expect(life > 800000 && life <= 1000000, "lifetime %llu us",
                  (unsigned long long)life);
        lo = life < lo ? life : lo;
        hi = life > hi ? life : hi;
    }
    /* 16 draws over 200 ms: all equal would mean no jitter at all. */
    cr_expect_gt(hi - lo, 10000u, "lifetimes spread over %llu us only",
                 (unsigned long long)(hi - lo));
    for (int i = 0; i < 16; i++) {
        if (i == 0)
            cs[i]->expires_us = st_now_us();   /* this one has lived its life */
        st_pool_release(p, cs[i], false);
    }
    st_pool_stats st;
    st_pool_stats_get(p, &st);
    cr_expect_eq(st.idle, 15, "the expired one was closed, not kept");
    cr_expect_eq(st.recycled, 1);
    st_pool_free(p);
}
