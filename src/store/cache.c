/* cache.c -- cache-aside with per-key TTLs, a bounded in-process LRU, and
 * single-flight loading.
 *
 * The local map is split into CA_SHARDS independent shards (key hash picks
 * one), each with its own mutex, chained hash table and LRU list, so worker
 * threads rarely contend. Each shard holds at most max_bytes / CA_SHARDS;
 * inserting past that evicts from the LRU tail. Expired entries are dropped
 * when met. With Redis configured the values live in Redis only (all
 * instances see one copy and one invalidation); the shards then just hold
 * the in-flight table.
 *
 * Single-flight: the first miss for a key registers a flight in its shard
 * and loads; later misses for that key find the flight and wait on its
 * condvar (bounded), then take its value or its error. A flight leaves the
 * table when it completes, so callers arriving later read the cache. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_int.h"

#define CA_SHARDS 16

typedef struct ca_entry {
    struct ca_entry *hnext, *prev, *next;
    uint64_t hash, expires_us;
    size_t   klen, vlen;
    char    *key;        /* key and value share one allocation */
    char    *val;
} ca_entry;

typedef struct ca_flight {
    struct ca_flight *next;
    char            *key;
    uint64_t         hash;
    int              refs;
    bool             done, ok;
    bool             stale;     /* invalidated while loading: do not cache */
    buf              val;
    st_err           err;
    pthread_cond_t   cv;
} ca_flight;

typedef struct ca_shard {
    pthread_mutex_t mu;
    ca_entry      **tab;
    size_t          nbuckets, count, bytes, max_bytes;
    ca_entry       *head, *tail;     /* LRU: head most recent */
    ca_flight      *flights;
} ca_shard;

struct st_cache {
    st_cache_kind kind;
    st_redis     *redis;
    ca_shard      shards[CA_SHARDS];
    _Atomic uint64_t hits, misses, sets, invalidations, coalesced, evictions;
};

static uint64_t ca_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

static st_cache *cache_new(st_cache_kind kind, size_t max_bytes)
{
    st_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->kind = kind;
    if (!max_bytes)
        max_bytes = 64u << 20;
    for (int i = 0; i < CA_SHARDS; i++) {
        pthread_mutex_init(&c->shards[i].mu, NULL);
        c->shards[i].max_bytes = max_bytes / CA_SHARDS;
    }
    return c;
}

st_cache *st_cache_new_local(size_t max_bytes) { return cache_new(ST_CACHE_LOCAL, max_bytes); }

static st_cache *cache_new_redis(const st_redis_opts *o, st_err *err)
{
    st_redis *r = st_redis_open(o, err);
    if (!r)
        return NULL;
    st_cache *c = cache_new(ST_CACHE_REDIS, 0);
    if (!c) {
        st_redis_free(r);
        st_fail(err, ST_ENOMEM, "out of memory");
        return NULL;
    }
    c->redis = r;
    return c;
}

st_cache *st_cache_new_redis(const char *addr, uint64_t timeout_us, st_err *err)
{
    st_redis_opts o = { .addr = addr, .timeout_us = timeout_us };
    return cache_new_redis(&o, err);
}

st_cache *st_cache_new_redis_cfg(const st_cache_cfg *cc, const char *password, st_err *err)
{
    st_redis_opts o = { .addr = cc->redis, .sentinels = (const char *const *)cc->sentinels,
                        .nsentinels = cc->nsentinels, .master = cc->sentinel_master,
                        .password = password, .timeout_us = cc->redis_timeout };
    return cache_new_redis(&o, err);
}

static void lru_unlink(ca_shard *s, ca_entry *e)
{
    if (e->prev) e->prev->next = e->next; else s->head = e->next;
    if (e->next) e->next->prev = e->prev; else s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(ca_shard *s, ca_entry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head) s->head->prev = e; else s->tail = e;
    s->head = e;
}

static size_t entry_cost(const ca_entry *e) { return sizeof *e + e->klen + e->vlen + 1; }

static ca_entry **bucket_find(ca_shard *s, const char *key, uint64_t h)
{
    if (!s->nbuckets)
        return NULL;
    ca_entry **pp = &s->tab[h & (s->nbuckets - 1)];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key)))
        pp = &(*pp)->hnext;
    return pp;
}

static void entry_remove(ca_shard *s, ca_entry **pp)
{
    ca_entry *e = *pp;
    *pp = e->hnext;
    lru_unlink(s, e);
    s->count--;
    s->bytes -= entry_cost(e);
    free(e);
}

static void entry_remove_ptr(ca_shard *s, ca_entry *e)
{
    ca_entry **pp = bucket_find(s, e->key, e->hash);
    if (pp && *pp)
        entry_remove(s, pp);
}

void st_cache_free(st_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < CA_SHARDS; i++) {
        ca_shard *s = &c->shards[i];
        for (ca_entry *e = s->head, *n; e; e = n) {
            n = e->next;
            free(e);
        }
        free(s->tab);
        pthread_mutex_destroy(&s->mu);
    }
    st_redis_free(c->redis);
    free(c);
}

static int local_get(st_cache *c, const char *key, uint64_t h, buf *out)
{
    ca_shard *s = &c->shards[h % CA_SHARDS];
    int hit = 0;
    pthread_mutex_lock(&s->mu);
    ca_entry **pp = bucket_find(s, key, h);
    if (pp && *pp) {
        ca_entry *e = *pp;
        if (e->expires_us <= st_now_us()) {
            entry_remove(s, pp);
        } else if (buf_append(out, e->val, e->vlen) == 0) {
            lru_unlink(s, e);
            lru_push(s, e);
            hit = 1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return hit;
}

static ca_entry *entry_new(const char *key, uint64_t h, const void *val, size_t len,
                           uint64_t ttl_us)
{
    size_t klen = strlen(key);
    ca_entry *e = malloc(sizeof *e + klen + 1 + len);
    if (!e)
        return NULL;
    *e = (ca_entry){ .hash = h, .klen = klen, .vlen = len, .expires_us = st_now_us() + ttl_us };
    e->key = (char *)(e + 1);
    e->val = e->key + klen + 1;
    memcpy(e->key, key, klen + 1);
    memcpy(e->val, val, len);
    return e;
}

/* Inserts e (replacing its key), evicting from the LRU tail to make room.
 * Takes ownership of e. Called with s->mu held. */
static void entry_insert_locked(st_cache *c, ca_shard *s, ca_entry *e)
{
    if (entry_cost(e) > s->max_bytes) {
        free(e);
        return;
    }
    ca_entry **pp = bucket_find(s, e->key, e->hash);
    if (pp && *pp)
        entry_remove(s, pp);
    while (s->bytes + entry_cost(e) > s->max_bytes && s->tail) {
        entry_remove_ptr(s, s->tail);
        c->evictions++;
    }
    if (s->count + 1 > s->nbuckets) {
        size_t nb = s->nbuckets ? s->nbuckets * 2 : 64;
        ca_entry **tab = calloc(nb, sizeof *tab);
        if (!tab) {
            free(e);
            return;
        }
        for (size_t i = 0; i < s->nbuckets; i++) {
            for (ca_entry *x = s->tab[i], *n; x; x = n) {
                n = x->hnext;
                x->hnext = tab[x->hash & (nb - 1)];
                tab[x->hash & (nb - 1)] = x;
            }
        }
        free(s->tab);
        s->tab = tab;
        s->nbuckets = nb;
    }
    ca_entry **b = &s->tab[e->hash & (s->nbuckets - 1)];
    e->hnext = *b;
    *b = e;
    lru_push(s, e);
    s->count++;
    s->bytes += entry_cost(e);
}

static void local_set(st_cache *c, const char *key, uint64_t h, const void *val, size_t len,
                      uint64_t ttl_us)
{
    ca_shard *s = &c->shards[h % CA_SHARDS];
    ca_entry *e = entry_new(key, h, val, len, ttl_us);
    if (!e)
        return;
    pthread_mutex_lock(&s->mu);
    entry_insert_locked(c, s, e);
    pthread_mutex_unlock(&s->mu);
}

int st_cache_get(st_cache *c, const char *key, buf *out)
{
    int hit = 0;
    if (c->kind == ST_CACHE_LOCAL)
        hit = local_get(c, key, ca_hash(key), out);
    else if (c->kind == ST_CACHE_REDIS)
        hit = st_redis_get(c->redis, key, out) == 1;
    if (hit)
        c->hits++;
    else
        c->misses++;
    return hit;
}

void st_cache_set(st_cache *c, const char *key, const void *val, size_t len, uint64_t ttl_us)
{
    if (!ttl_us)
        return;      /* TTL 0: this kind is not cached */
    c->sets++;
    if (c->kind == ST_CACHE_LOCAL)
        local_set(c, key, ca_hash(key), val, len, ttl_us);
    else if (c->kind == ST_CACHE_REDIS)
        st_redis_set(c->redis, key, val, len, ttl_us);
}

void st_cache_del(st_cache *c, const char *key)
{
    c->invalidations++;
    uint64_t h = ca_hash(key);
    ca_shard *s = &c->shards[h % CA_SHARDS];
    pthread_mutex_lock(&s->mu);
    /* A load running now may have read the old row: it must not cache it. */
    for (ca_flight *f = s->flights; f; f = f->next)
        if (f->hash == h && !strcmp(f->key, key))
            f->stale = true;
    if (c->kind == ST_CACHE_LOCAL) {
        ca_entry **pp = bucket_find(s, key, h);
        if (pp && *pp)
            entry_remove(s, pp);
    }
    pthread_mutex_unlock(&s->mu);
    if (c->kind == ST_CACHE_REDIS)
        st_redis_del(c->redis, key);
}

static void flight_unref(ca_flight *f)
{
    if (--f->refs)
        return;
    pthread_cond_destroy(&f->cv);
    buf_free(&f->val);
    free(f->key);
    free(f);
}

/* st_cache_fetch, and with lookup false st_cache_single_flight: no read
 * and (ttl 0) no write, only the coalescing. */
static int fetch(st_cache *c, const char *key, uint64_t ttl_us, uint64_t wait_us, bool lookup,
                 st_cache_loader *load, void *arg, buf *out, bool *hit, st_err *err)
{
    if (hit)
        *hit = true;
    if (lookup && st_cache_get(c, key, out))
        return 0;
    uint64_t h = ca_hash(key);
    ca_shard *s = &c->shards[h % CA_SHARDS];
    pthread_mutex_lock(&s->mu);
    ca_flight *f = s->flights;
    while (f && (f->hash != h || strcmp(f->key, key)))
        f = f->next;
    if (f) {
        /* Someone is loading this key: wait for their answer. */
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        uint64_t w = wait_us ? wait_us : 5000000u;
        dl.tv_sec += (time_t)(w / 1000000u);
        dl.tv_nsec += (long)(w % 1000000u) * 1000;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        f->refs++;
        while (!f->done && pthread_cond_timedwait(&f->cv, &s->mu, &dl) == 0)
            ;
        int rc = 1;   /* 1: timed out, load ourselves */
        if (f->done) {
            c->coalesced++;
            if (f->ok) {
                rc = buf_append(out, buf_head(&f->val), f->val.len) < 0 ? 1 : 0;
            } else {
                if (err)
                    *err = f->err;
                rc = -1;
            }
        }
        flight_unref(f);
        pthread_mutex_unlock(&s->mu);
        if (rc <= 0)
            return rc;
        if (hit)
            *hit = false;
        return load(arg, out, err);
    }
    f = calloc(1, sizeof *f);
    if (!f || !(f->key = strdup(key))) {
        free(f);
        pthread_mutex_unlock(&s->mu);
        if (hit)
            *hit = false;
        return load(arg, out, err);
    }
    f->hash = h;
    f->refs = 1;
    buf_init(&f->val);
    pthread_cond_init(&f->cv, NULL);
    f->next = s->flights;
    s->flights = f;
    pthread_mutex_unlock(&s->mu);

    if (hit)
        *hit = false;
    size_t start = out->len;
    st_err lerr = { 0 };
    int rc = load(arg, out, &lerr);
    if (rc < 0 && err)
        *err = lerr;
    const char *val = buf_head(out) + start;
    size_t vlen = out->len - start;
    ca_entry *e = rc == 0 && ttl_us && c->kind == ST_CACHE_LOCAL
                  ? entry_new(key, h, val, vlen, ttl_us) : NULL;

    pthread_mutex_lock(&s->mu);
    /* Caching under the shard lock orders it against st_cache_del: an
     * invalidation either marked this flight stale or comes after. */
    bool cache_it = rc == 0 && !f->stale && ttl_us;
    if (cache_it)
        c->sets++;
    if (e && cache_it)
        entry_insert_locked(c, s, e);
    else
        free(e);
    for (ca_flight **pp = &s->flights; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    f->done = true;
    f->ok = rc == 0;
    f->err = lerr;
    if (f->ok && f->refs > 1 && buf_append(&f->val, buf_head(out) + start, out->len - start) < 0)
        f->ok = false;
    pthread_cond_broadcast(&f->cv);
    flight_unref(f);
    pthread_mutex_unlock(&s->mu);
    if (cache_it && c->kind == ST_CACHE_REDIS)
        st_redis_set(c->redis, key, val, vlen, ttl_us);
    return rc;
}

int st_cache_fetch(st_cache *c, const char *key, uint64_t ttl_us, uint64_t wait_us,
                   st_cache_loader *load, void *arg, buf *out, bool *hit, st_err *err)
{
    return fetch(c, key, ttl_us, wait_us, true, load, arg, out, hit, err);
}

int st_cache_single_flight(st_cache *c, const char *key, uint64_t wait_us,
                           st_cache_loader *load, void *arg, buf *out, bool *shared,
                           st_err *err)
{
    bool hit = false;
    int rc = fetch(c, key, 0, wait_us, false, load, arg, out, &hit, err);
    if (shared)
        *shared = hit;
    return rc;
}

void st_cache_stats_get(st_cache *c, st_cache_stats *out)
{
    memset(out, 0, sizeof *out);
    out->hits = c->hits;
    out->misses = c->misses;
    out->sets = c->sets;
    out->invalidations = c->invalidations;
    out->coalesced = c->coalesced;
    out->evictions = c->evictions;
    for (int i = 0; i < CA_SHARDS; i++) {
        pthread_mutex_lock(&c->shards[i].mu);
        out->entries += c->shards[i].count;
        out->bytes += c->shards[i].bytes;
        pthread_mutex_unlock(&c->shards[i].mu);
    }
    if (c->redis) {
        out->redis_up = st_redis_up(c->redis);
        out->redis_errors = st_redis_errors(c->redis);
        out->redis_master_state = st_redis_master_str(
            st_redis_master_get(c->redis, out->redis_master, sizeof out->redis_master,
                                &out->redis_switches, &out->redis_epochs));
    }
}

#define CA_GEN_TTL_US 86400000000ull

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Local generations are ordinary entries holding a uint64_t, updated in
 * place under the shard lock. `bump` adds one; a missing entry starts at
 * the wall clock. */
static uint64_t local_gen(st_cache *c, const char *key, bool bump)
{
    uint64_t h = ca_hash(key), gen = 0;
    ca_shard *s = &c->shards[h % CA_SHARDS];
    pthread_mutex_lock(&s->mu);
    ca_entry **pp = bucket_find(s, key, h);
    if (pp && *pp && (*pp)->expires_us > st_now_us() && (*pp)->vlen == sizeof gen) {
        memcpy(&gen, (*pp)->val, sizeof gen);
        if (bump) {
            gen++;
            memcpy((*pp)->val, &gen, sizeof gen);
        }
    } else {
        gen = wall_us();
        ca_entry *e = entry_new(key, h, &gen, sizeof gen, CA_GEN_TTL_US);
        if (e)
            entry_insert_locked(c, s, e);
    }
    pthread_mutex_unlock(&s->mu);
    return gen;
}

uint64_t st_cache_gen(st_cache *c, const char *ns)
{
    char key[160];
    snprintf(key, sizeof key, "gen:%s", ns);
    if (c->kind == ST_CACHE_LOCAL)
        return local_gen(c, key, false);
    if (c->kind == ST_CACHE_REDIS)
        return st_redis_gen(c->redis, key, wall_us());
    return 0;
}

void st_cache_bump(st_cache *c, const char *ns)
{
    char key[160];
    snprintf(key, sizeof key, "gen:%s", ns);
    c->invalidations++;
    if (c->kind == ST_CACHE_LOCAL)
        local_gen(c, key, true);
    else if (c->kind == ST_CACHE_REDIS)
        st_redis_bump(c->redis, key, wall_us());
}
