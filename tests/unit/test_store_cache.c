/* test_store_cache.c -- the in-process cache: TTL expiry, invalidation,
 * the LRU byte bound, and single-flight coalescing of concurrent misses
 * (one loader for N threads; a failed load reaches every waiter). */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static bool get_eq(st_cache *c, const char *key, const char *want)
{
    buf b;
    buf_init(&b);
    bool ok = st_cache_get(c, key, &b) == 1 && b.len == strlen(want) &&
              !memcmp(buf_head(&b), want, b.len);
    buf_free(&b);
    return ok;
}

static bool missing(st_cache *c, const char *key)
{
    buf b;
    buf_init(&b);
    bool miss = st_cache_get(c, key, &b) == 0 && b.len == 0;
    buf_free(&b);
    return miss;
}

Test(store_cache, ttl_expires_entries)
{
    st_cache *c = st_cache_new_local(1 << 20);
    st_cache_set(c, "case:1", "one", 3, 50000);       /* 50 ms */
    st_cache_set(c, "case:2", "two", 3, 10000000);    /* 10 s */
    st_cache_set(c, "nocache", "x", 1, 0);            /* TTL 0: not cached */
    cr_assert(get_eq(c, "case:1", "one"));
    cr_assert(missing(c, "nocache"));
    usleep(80000);
    cr_expect(missing(c, "case:1"), "expired entry must miss");
    cr_expect(get_eq(c, "case:2", "two"));
    st_cache_stats st;
    st_cache_stats_get(c, &st);
    cr_expect_eq(st.entries, 1);
    cr_expect_eq(st.hits, 2);
    cr_expect_eq(st.misses, 2);
    st_cache_free(c);
}

Test(store_cache, writes_invalidate_and_replace)
{
    st_cache *c = st_cache_new_local(1 << 20);
    st_cache_set(c, "user:7:cases", "[1,2]", 5, 10000000);
    st_cache_set(c, "user:7:cases", "[1,2,3]", 7, 10000000);
    cr_expect(get_eq(c, "user:7:cases", "[1,2,3]"), "set replaces");
    st_cache_del(c, "user:7:cases");
    cr_expect(missing(c, "user:7:cases"), "deleted key must miss");
    st_cache_del(c, "never-there");
    st_cache_stats st;
    st_cache_stats_get(c, &st);
    cr_expect_eq(st.entries, 0);
    cr_expect_eq(st.bytes, 0);
    cr_expect_eq(st.invalidations, 2);
    st_cache_free(c);
}

Test(store_cache, size_bound_evicts_least_recently_used)
{
    /* 16 shards x 4 KiB: ~100-byte entries, a few dozen per shard. */
    st_cache *c = st_cache_new_local(64 * 1024);
    char key[32], val[100];
    memset(val, 'v', sizeof val);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        st_cache_set(c, key, val, sizeof val, 60000000);
        buf b;
        buf_init(&b);
        st_cache_get(c, "k0", &b);      /* k0 stays most recently used */
        buf_free(&b);
    }
    st_cache_stats st;
    st_cache_stats_get(c, &st);
    cr_expect_leq(st.bytes, 64 * 1024, "bytes %zu over the bound", st.bytes);
    cr_expect_gt(st.evictions, 4000);
    cr_expect(!missing(c, "k0"), "a hot key survives eviction");
    cr_expect(missing(c, "k1"), "a cold old key is evicted");
    cr_expect(!missing(c, "k4999"), "the newest key is present");
    st_cache_free(c);
}

static atomic_int loads;

static int slow_loader(void *arg, buf *out, st_err *err)
{
    atomic_fetch_add(&loads, 1);
    usleep(100000);
    return buf_append_str(out, (const char *)arg);
}

static int failing_loader(void *arg, buf *out, st_err *err)
{
    atomic_fetch_add(&loads, 1);
    usleep(100000);
    return st_fail(err, ST_EUNAVAIL, "database down");
}

typedef struct fetch_arg {
    st_cache       *c;
    st_cache_loader *load;
    int             rc;
    bool            hit;
    char            got[32];
    st_err          err;
} fetch_arg;

static void *fetcher(void *p)
{
    fetch_arg *a = p;
    buf b;
    buf_init(&b);
    a->rc = st_cache_fetch(a->c, "case:42", 60000000, 2000000, a->load, "payload", &b,
                           &a->hit, &a->err);
    snprintf(a->got, sizeof a->got, "%.*s", (int)b.len, b.len ? buf_head(&b) : "");
    buf_free(&b);
    return NULL;
}

static void run_fetchers(st_cache *c, st_cache_loader *load, fetch_arg *args, int n)
{
    pthread_t th[16];
    for (int i = 0; i < n; i++) {
        args[i] = (fetch_arg){ .c = c, .load = load };
        pthread_create(&th[i], NULL, fetcher, &args[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

Test(store_cache, concurrent_misses_are_coalesced)
{
    st_cache *c = st_cache_new_local(1 << 20);
    fetch_arg args[16];
    atomic_store(&loads, 0);
    run_fetchers(c, slow_loader, args, 16);
    cr_expect_eq(atomic_load(&loads), 1, "16 concurrent misses ran %d loaders", loads);
    int loaders = 0;
    for (int i = 0; i < 16; i++) {
        cr_expect_eq(args[i].rc, 0);
        cr_expect_str_eq(args[i].got, "payload");
        loaders += !args[i].hit;
    }
    cr_expect_eq(loaders, 1);
    st_cache_stats st;
    st_cache_stats_get(c, &st);
    cr_expect_geq(st.coalesced, 1);
    /* Now cached: no more loads. */
    run_fetchers(c, slow_loader, args, 4);
    cr_expect_eq(atomic_load(&loads), 1);
    st_cache_free(c);
}

Test(store_cache, a_failed_load_reaches_every_waiter_and_caches_nothing)
{
    st_cache *c = st_cache_new_local(1 << 20);
    fetch_arg args[8];
    atomic_store(&loads, 0);
    run_fetchers(c, failing_loader, args, 8);
    cr_expect_eq(atomic_load(&loads), 1, "waiters must not stampede after a failure");
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(args[i].rc, -1);
        cr_expect_eq(args[i].err.code, ST_EUNAVAIL);
    }
    cr_expect(missing(c, "case:42"));
    st_cache_free(c);
}

static st_cache *race_cache;

static void *invalidate_midway(void *arg)
{
    usleep(30000);
    st_cache_del(race_cache, "case:42");     /* a write lands during the load */
    return NULL;
}

Test(store_cache, an_invalidation_during_a_load_is_not_undone)
{
    race_cache = st_cache_new_local(1 << 20);
    pthread_t th;
    pthread_create(&th, NULL, invalidate_midway, NULL);
    buf b;
    buf_init(&b);
    bool hit;
    cr_assert_eq(st_cache_fetch(race_cache, "case:42", 60000000, 0, slow_loader, "old row", &b,
                                &hit, NULL), 0);
    pthread_join(th, NULL);
    cr_expect(!hit);
    cr_expect(missing(race_cache, "case:42"), "the pre-write value must not be cached");
    buf_reset(&b);
    cr_assert_eq(st_cache_fetch(race_cache, "case:42", 60000000, 0, slow_loader, "new row", &b,
                                &hit, NULL), 0);
    cr_expect(!missing(race_cache, "case:42"), "the next load caches");
    buf_free(&b);
    st_cache_free(race_cache);
}

Test(store_cache, generations_invalidate_a_family_of_keys)
{
    st_cache *c = st_cache_new_local(1 << 20);
    uint64_t g = st_cache_gen(c, "u:7");
    cr_assert_gt(g, 1700000000000000ull, "starts from the wall clock");
    cr_expect_eq(st_cache_gen(c, "u:7"), g, "stable until bumped");
    st_cache_bump(c, "u:7");
    cr_expect_eq(st_cache_gen(c, "u:7"), g + 1);
    cr_expect_neq(st_cache_gen(c, "u:8"), 0);
    st_cache_bump(c, "u:9");                 /* bump of a missing one starts it */
    cr_expect_gt(st_cache_gen(c, "u:9"), g);
    st_cache_free(c);
}
