/* test_store_router.c -- shard placement: consistent hashing (spread,
 * movement when a shard is added, weights), range edges and overlaps,
 * directory entries and the default shard. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

#define USERS 100000

static st_router *hash_router(int n)
{
    st_router *r = st_router_new(ST_ROUTE_HASH);
    char name[32];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "shard%d", i);
        cr_assert_eq(st_router_add_shard(r, name, 1, NULL), 0);
    }
    return r;
}

Test(store_router, hash_spreads_users_evenly)
{
    st_router *r = hash_router(4);
    int count[4] = { 0 };
    for (int64_t u = 1; u <= USERS; u++) {
        int s = st_router_shard(r, u);
        cr_assert(s >= 0 && s < 4);
        cr_assert_eq(st_router_shard(r, u), s, "placement must be stable");
        count[s]++;
    }
    for (int i = 0; i < 4; i++)
        cr_expect(count[i] > USERS / 4 * 0.85 && count[i] < USERS / 4 * 1.15,
                  "shard %d has %d of %d users", i, count[i], USERS);
    st_router_free(r);
}

Test(store_router, adding_a_shard_moves_about_one_in_n_plus_one)
{
    for (int n = 1; n <= 8; n *= 2) {
        st_router *a = hash_router(n), *b = hash_router(n + 1);
        int moved = 0;
        for (int64_t u = 1; u <= USERS; u++) {
            int sa = st_router_shard(a, u), sb = st_router_shard(b, u);
            if (sa != sb) {
                moved++;
                cr_assert_eq(sb, n, "user %lld moved between old shards %d -> %d",
                             (long long)u, sa, sb);
            }
        }
        double frac = (double)moved / USERS, ideal = 1.0 / (n + 1);
        cr_expect(frac > ideal * 0.75 && frac < ideal * 1.25,
                  "%d -> %d shards moved %.3f of users, ideal %.3f", n, n + 1, frac, ideal);
        st_router_free(a);
        st_router_free(b);
    }
}

Test(store_router, weights_are_honoured)
{
    st_router *r = st_router_new(ST_ROUTE_HASH);
    cr_assert_eq(st_router_add_shard(r, "big", 2, NULL), 0);
    cr_assert_eq(st_router_add_shard(r, "a", 1, NULL), 0);
    cr_assert_eq(st_router_add_shard(r, "b", 1, NULL), 0);
    int count[3] = { 0 };
    for (int64_t u = 1; u <= USERS; u++)
        count[st_router_shard(r, u)]++;
    double big = (double)count[0] / USERS;
    cr_expect(big > 0.43 && big < 0.57, "weight 2 of 4 got %.3f", big);
    st_err err;
    cr_assert_eq(st_router_add_shard(r, "huge", 1000, &err), -1);
    cr_assert_eq(err.code, ST_EINVAL);
    st_router_free(r);
}

Test(store_router, range_edges_default_and_overlap)
{
    st_router *r = st_router_new(ST_ROUTE_RANGE);
    st_err err;
    for (int i = 0; i < 3; i++)
        st_router_add_shard(r, i == 0 ? "r0" : i == 1 ? "r1" : "r2", 1, NULL);
    cr_assert_eq(st_router_add_range(r, 100, 199, 1, NULL), 0);
    cr_assert_eq(st_router_add_range(r, 0, 99, 0, NULL), 0);
    cr_assert_eq(st_router_add_range(r, 1000, INT64_MAX, 2, NULL), 0);
    cr_expect_eq(st_router_shard(r, 0), 0);
    cr_expect_eq(st_router_shard(r, 99), 0);
    cr_expect_eq(st_router_shard(r, 100), 1);
    cr_expect_eq(st_router_shard(r, 199), 1);
    cr_expect_eq(st_router_shard(r, 200), -1, "gap without default is unplaced");
    cr_expect_eq(st_router_shard(r, -1), -1);
    cr_expect_eq(st_router_shard(r, 1000), 2);
    cr_expect_eq(st_router_shard(r, INT64_MAX), 2);
    st_router_set_default(r, 2);
    cr_expect_eq(st_router_shard(r, 500), 2);
    cr_assert_eq(st_router_add_range(r, 150, 250, 0, &err), -1, "overlap must be refused");
    cr_expect_eq(err.code, ST_EINVAL);
    cr_expect(strstr(err.msg, "overlaps") != NULL, "%s", err.msg);
    cr_assert_eq(st_router_add_range(r, 199, 199, 0, &err), -1, "edge overlap");
    cr_assert_eq(st_router_add_range(r, 300, 200, 0, &err), -1, "from after to");
    cr_assert_eq(st_router_add_range(r, 200, 300, 7, &err), -1, "unknown shard");
    cr_assert_eq(st_router_add_range(r, 200, 999, 0, NULL), 0, "exact gap fits");
    cr_expect_eq(st_router_shard(r, 200), 0);
    cr_expect_eq(st_router_shard(r, 999), 0);
    st_router_free(r);
}

Test(store_router, directory_entries_and_default)
{
    st_router *r = st_router_new(ST_ROUTE_DIRECTORY);
    st_router_add_shard(r, "d0", 1, NULL);
    st_router_add_shard(r, "d1", 1, NULL);
    st_router_add_shard(r, "d2", 1, NULL);
    cr_expect_eq(st_router_shard(r, 42), -1, "no default, no entry");
    st_router_set_default(r, 1);
    cr_expect_eq(st_router_shard(r, 42), 1);
    cr_assert_eq(st_router_dir_set(r, 42, 2, NULL), 0);
    cr_expect_eq(st_router_shard(r, 42), 2);
    cr_assert_eq(st_router_dir_set(r, 42, 0, NULL), 0, "moving a user");
    cr_expect_eq(st_router_shard(r, 42), 0);
    for (int64_t u = 1000; u < 11000; u++)      /* forces several resizes */
        cr_assert_eq(st_router_dir_set(r, u, (int)(u % 3), NULL), 0);
    for (int64_t u = 1000; u < 11000; u++)
        cr_assert_eq(st_router_shard(r, u), (int)(u % 3));
    cr_expect_eq(st_router_shard(r, 42), 0);
    cr_expect_eq(st_router_shard(r, 999), 1);
    st_err err;
    cr_assert_eq(st_router_dir_set(r, 5, 3, &err), -1);
    cr_expect_eq(err.code, ST_EINVAL);
    st_router_free(r);
}
