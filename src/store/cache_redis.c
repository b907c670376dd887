/* cache_redis.c -- the shared cache backend: hiredis with short timeouts
 * and a circuit breaker.
 *
 * Connections are kept in a small free list (one per concurrently calling
 * thread, created on demand). Any error closes that connection and counts a
 * failure; RD_TRIP failures in a row open the breaker for RD_OPEN_US, during
 * which every call returns -1 at once without touching the network, so a
 * dead Redis costs a branch per request, not a timeout. After the pause one
 * call probes; success closes the breaker, failure reopens it. */
#include <hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

#define RD_TRIP 3
#define RD_OPEN_US 2000000u
#define RD_KEEP 16

struct st_redis {
    char            host[128];
    int             port;
    struct timeval  tv;
    pthread_mutex_t mu;
    redisContext   *free_ctx[RD_KEEP];
    int             nfree;
    _Atomic int      fails;
    _Atomic uint64_t open_until;
    _Atomic uint64_t errors;
};

st_redis *st_redis_new(const char *addr, uint64_t timeout_us, st_err *err)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || colon == addr || !colon[1]) {
        st_fail(err, ST_EINVAL, "cache.redis: expected host:port, got '%s'", addr ? addr : "");
        return NULL;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535) {
        st_fail(err, ST_EINVAL, "cache.redis: bad port in '%s'", addr);
        return NULL;
    }
    st_redis *r = calloc(1, sizeof *r);
    if (!r) {
        st_fail(err, ST_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(r->host, sizeof r->host, "%.*s", (int)(colon - addr), addr);
    r->port = (int)port;
    if (!timeout_us)
        timeout_us = 50000;
    r->tv.tv_sec = (time_t)(timeout_us / 1000000u);
    r->tv.tv_usec = (suseconds_t)(timeout_us % 1000000u);
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

void st_redis_free(st_redis *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nfree; i++)
        redisFree(r->free_ctx[i]);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

bool st_redis_up(st_redis *r) { return r->open_until <= st_now_us(); }
uint64_t st_redis_errors(st_redis *r) { return r->errors; }

static redisContext *ctx_get(st_redis *r)
{
    if (r->open_until > st_now_us())
        return NULL;
    redisContext *ctx = NULL;
    pthread_mutex_lock(&r->mu);
    if (r->nfree)
        ctx = r->free_ctx[--r->nfree];
    pthread_mutex_unlock(&r->mu);
    if (ctx)
        return ctx;
    ctx = redisConnectWithTimeout(r->host, r->port, r->tv);
    if (!ctx || ctx->err || redisSetTimeout(ctx, r->tv) != REDIS_OK) {
        if (ctx)
            redisFree(ctx);
        r->errors++;
        if (++r->fails >= RD_TRIP)
            r->open_until = st_now_us() + RD_OPEN_US;
        return NULL;
    }
    return ctx;
}

/* Returns ctx to the free list, or drops it after an error. */
static void ctx_put(st_redis *r, redisContext *ctx, bool ok)
{
    if (ok) {
        r->fails = 0;
        pthread_mutex_lock(&r->mu);
        if (r->nfree < RD_KEEP) {
            r->free_ctx[r->nfree++] = ctx;
            ctx = NULL;
        }
        pthread_mutex_unlock(&r->mu);
    } else {
        r->errors++;
        if (++r->fails >= RD_TRIP)
            r->open_until = st_now_us() + RD_OPEN_US;
    }
    if (ctx)
        redisFree(ctx);
}

int st_redis_get(st_redis *r, const char *key, buf *out)
{
    redisContext *ctx = ctx_get(r);
    if (!ctx)
        return -1;
    redisReply *rep = redisCommand(ctx, "GET %s", key);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    int rc = -1;
    if (ok) {
        rc = 0;
        if (rep->type == REDIS_REPLY_STRING && buf_append(out, rep->str, rep->len) == 0)
            rc = 1;
    }
    if (rep)
        freeReplyObject(rep);
    ctx_put(r, ctx, ok);
    return rc;
}

int st_redis_set(st_redis *r, const char *key, const void *val, size_t len, uint64_t ttl_us)
{
    redisContext *ctx = ctx_get(r);
    if (!ctx)
        return -1;
    unsigned long long ms = ttl_us / 1000 ? ttl_us / 1000 : 1;
    redisReply *rep = redisCommand(ctx, "SET %s %b PX %llu", key, val, len, ms);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (rep)
        freeReplyObject(rep);
    ctx_put(r, ctx, ok);
    return ok ? 0 : -1;
}

int st_redis_del(st_redis *r, const char *key)
{
    redisContext *ctx = ctx_get(r);
    if (!ctx)
        return -1;
    redisReply *rep = redisCommand(ctx, "DEL %s", key);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (rep)
        freeReplyObject(rep);
    ctx_put(r, ctx, ok);
    return ok ? 0 : -1;
}

#define RD_GEN_TTL_MS 86400000ull

static uint64_t reply_u64(const redisReply *rep)
{
    if (rep->type == REDIS_REPLY_INTEGER)
        return (uint64_t)rep->integer;
    if (rep->type == REDIS_REPLY_STRING)
        return strtoull(rep->str, NULL, 10);
    return 0;
}

uint64_t st_redis_gen(st_redis *r, const char *key, uint64_t init)
{
    redisContext *ctx = ctx_get(r);
    if (!ctx)
        return 0;
    uint64_t gen = 0;
    redisReply *rep = redisCommand(ctx, "GET %s", key);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (ok && rep->type == REDIS_REPLY_STRING)
        gen = reply_u64(rep);
    if (rep)
        freeReplyObject(rep);
    if (ok && !gen) {
        /* Missing: start it (NX: another instance may be doing the same). */
        rep = redisCommand(ctx, "SET %s %llu NX PX %llu", key, (unsigned long long)init,
                           RD_GEN_TTL_MS);
        ok = rep && rep->type != REDIS_REPLY_ERROR;
        if (rep)
            freeReplyObject(rep);
        rep = ok ? redisCommand(ctx, "GET %s", key) : NULL;
        ok = rep && rep->type != REDIS_REPLY_ERROR;
        if (ok)
            gen = reply_u64(rep);
        if (rep)
            freeReplyObject(rep);
    }
    ctx_put(r, ctx, ok);
    return ok ? gen : 0;
}

int st_redis_bump(st_redis *r, const char *key, uint64_t init)
{
    redisContext *ctx = ctx_get(r);
    if (!ctx)
        return -1;
    redisReply *rep = redisCommand(ctx, "SET %s %llu NX PX %llu", key, (unsigned long long)init,
                                   RD_GEN_TTL_MS);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (rep)
        freeReplyObject(rep);
    rep = ok ? redisCommand(ctx, "INCR %s", key) : NULL;
    ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (rep)
        freeReplyObject(rep);
    if (ok) {
        rep = redisCommand(ctx, "PEXPIRE %s %llu", key, RD_GEN_TTL_MS);
        ok = rep && rep->type != REDIS_REPLY_ERROR;
        if (rep)
            freeReplyObject(rep);
    }
    ctx_put(r, ctx, ok);
    return ok ? 0 : -1;
}
