/* router.c -- which shard holds a user: consistent hashing, user_id ranges
 * or a directory, the three CA-DMS strategies.
 *
 * hash: each shard puts 160 x weight points on a 64-bit ring, at hashes of
 * "<name>#<i>"; a user belongs to the first point at or after hash(user_id).
 * Points depend only on the shard's own name, so adding shard N+1 takes
 * over ~1/(N+1) of the ring and moves only those users. The ring is built
 * at setup and read without a lock afterwards.
 * range: sorted, non-overlapping [lo, hi] intervals, binary searched.
 * directory: an open-addressed map user -> shard behind a rwlock, since
 * entries may be added while workers route. Unplaced users go to the
 * default shard (-1: none). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

#define RT_VNODES 160
#define RT_MAX_SHARDS 1024

typedef struct rt_point { uint64_t h; int shard; } rt_point;
typedef struct rt_range { int64_t lo, hi; int shard; } rt_range;
typedef struct rt_dirent { int64_t user; int shard; bool used; } rt_dirent;

struct st_router {
    st_route_kind    kind;
    int              nshards;
    int              def;
    rt_point        *ring;
    size_t           nring;
    rt_range        *ranges;
    size_t           nranges;
    pthread_rwlock_t dir_lock;
    rt_dirent       *dir;
    size_t           dir_cap, dir_len;   /* cap: power of two */
};

/* splitmix64's finaliser: a full-avalanche mix, so sequential user ids
 * spread evenly over the ring. */
static uint64_t rt_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t rt_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return rt_mix(h);
}

st_router *st_router_new(st_route_kind kind)
{
    st_router *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->kind = kind;
    r->def = -1;
    pthread_rwlock_init(&r->dir_lock, NULL);
    return r;
}

void st_router_free(st_router *r)
{
    if (!r)
        return;
    free(r->ring);
    free(r->ranges);
    free(r->dir);
    pthread_rwlock_destroy(&r->dir_lock);
    free(r);
}

static int point_cmp(const void *a, const void *b)
{
    const rt_point *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return x->shard - y->shard;
}

int st_router_add_shard(st_router *r, const char *name, double weight, st_err *err)
{
    if (r->nshards >= RT_MAX_SHARDS)
        return st_fail(err, ST_EINVAL, "too many shards (max %d)", RT_MAX_SHARDS);
    if (weight <= 0)
        weight = 1;
    if (weight > 100)
        return st_fail(err, ST_EINVAL, "shard '%s': weight must be in (0, 100], got %g",
                       name, weight);
    size_t n = (size_t)(RT_VNODES * weight + 0.5);
    if (!n)
        n = 1;
    rt_point *ring = realloc(r->ring, (r->nring + n) * sizeof *ring);
    if (!ring)
        return st_fail(err, ST_ENOMEM, "out of memory");
    r->ring = ring;
    char key[160];
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%s#%zu", name, i);
        ring[r->nring++] = (rt_point){ rt_hash_str(key), r->nshards };
    }
    qsort(r->ring, r->nring, sizeof *r->ring, point_cmp);
    r->nshards++;
    return 0;
}

int st_router_add_range(st_router *r, int64_t lo, int64_t hi, int shard, st_err *err)
{
    if (lo > hi)
        return st_fail(err, ST_EINVAL, "range %lld..%lld: from is after to",
                       (long long)lo, (long long)hi);
    if (shard < 0 || shard >= r->nshards)
        return st_fail(err, ST_EINVAL, "range %lld..%lld: no shard %d",
                       (long long)lo, (long long)hi, shard);
    size_t at = 0;
    while (at < r->nranges && r->ranges[at].lo < lo)
        at++;
    if ((at > 0 && r->ranges[at - 1].hi >= lo) || (at < r->nranges && r->ranges[at].lo <= hi))
        return st_fail(err, ST_EINVAL, "range %lld..%lld overlaps another range",
                       (long long)lo, (long long)hi);
    rt_range *nr = realloc(r->ranges, (r->nranges + 1) * sizeof *nr);
    if (!nr)
        return st_fail(err, ST_ENOMEM, "out of memory");
    r->ranges = nr;
    memmove(nr + at + 1, nr + at, (r->nranges - at) * sizeof *nr);
    nr[at] = (rt_range){ lo, hi, shard };
    r->nranges++;
    return 0;
}

static size_t dir_slot(const rt_dirent *d, size_t cap, int64_t user)
{
    size_t i = rt_mix((uint64_t)user) & (cap - 1);
    while (d[i].used && d[i].user != user)
        i = (i + 1) & (cap - 1);
    return i;
}

int st_router_dir_set(st_router *r, int64_t user_id, int shard, st_err *err)
{
    if (shard < 0 || shard >= r->nshards)
        return st_fail(err, ST_EINVAL, "directory: user %lld: no shard %d",
                       (long long)user_id, shard);
    pthread_rwlock_wrlock(&r->dir_lock);
    if ((r->dir_len + 1) * 2 > r->dir_cap) {
        size_t cap = r->dir_cap ? r->dir_cap * 2 : 64;
        rt_dirent *d = calloc(cap, sizeof *d);
        if (!d) {
            pthread_rwlock_unlock(&r->dir_lock);
            return st_fail(err, ST_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < r->dir_cap; i++)
            if (r->dir[i].used)
                d[dir_slot(d, cap, r->dir[i].user)] = r->dir[i];
        free(r->dir);
        r->dir = d;
        r->dir_cap = cap;
    }
    size_t i = dir_slot(r->dir, r->dir_cap, user_id);
    if (!r->dir[i].used)
        r->dir_len++;
    r->dir[i] = (rt_dirent){ user_id, shard, true };
    pthread_rwlock_unlock(&r->dir_lock);
    return 0;
}

void st_router_set_default(st_router *r, int shard) { r->def = shard; }
int st_router_nshards(const st_router *r) { return r->nshards; }

int st_router_shard(st_router *r, int64_t user_id)
{
    if (r->nshards == 1 && r->kind == ST_ROUTE_HASH)
        return 0;
    switch (r->kind) {
    case ST_ROUTE_HASH: {
        if (!r->nring)
            return -1;
        uint64_t h = rt_mix((uint64_t)user_id);
        size_t lo = 0, hi = r->nring;      /* first point with point.h >= h */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (r->ring[mid].h < h)
                lo = mid + 1;
            else
                hi = mid;
        }
        return r->ring[lo == r->nring ? 0 : lo].shard;
    }
    case ST_ROUTE_RANGE: {
        size_t lo = 0, hi = r->nranges;    /* last range with range.lo <= user */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (r->ranges[mid].lo <= user_id)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo > 0 && user_id <= r->ranges[lo - 1].hi)
            return r->ranges[lo - 1].shard;
        return r->def;
    }
    case ST_ROUTE_DIRECTORY: {
        int shard = r->def;
        pthread_rwlock_rdlock(&r->dir_lock);
        if (r->dir_cap) {
            size_t i = dir_slot(r->dir, r->dir_cap, user_id);
            if (r->dir[i].used)
                shard = r->dir[i].shard;
        }
        pthread_rwlock_unlock(&r->dir_lock);
        return shard;
    }
    }
    return -1;
}
