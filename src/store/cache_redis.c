/* cache_redis.c -- the shared cache backend: hiredis with short timeouts,
 * a circuit breaker, a master that may move (Sentinel), and an epoch that
 * retires what Redis may have missed.
 *
 * Connections are kept in a small free list (one per concurrently calling
 * thread, created on demand), each tagged with the master generation it
 * was opened for: when the master moves the generation moves on and older
 * connections are closed instead of reused. Any error closes that
 * connection and counts a failure; RD_TRIP failures in a row open the
 * breaker for RD_OPEN_US, during which every call returns -1 at once
 * without touching the network, so a dead Redis costs a branch per
 * request, not a timeout. After the pause one call probes; success closes
 * the breaker, failure reopens it.
 *
 * With sentinels (redis_sentinel.c) the master is whatever the follower
 * last verified; while it has none (ST_REDIS_LOST) every call is a miss
 * with no network at all, so the cache fails open: reads go to the
 * database (coalesced per key by the caller, st_cache_single_flight),
 * nothing is written. Errors that say the master moved (-READONLY,
 * -MASTERDOWN, a timeout, a refused connection) ask the follower to re-ask
 * the sentinels at once.
 *
 * What Redis may have missed: a generation bump or a delete that failed
 * (Redis down, breaker open, no master) is an invalidation that never
 * happened, and a new master after a failover may lack the last writes of
 * the old one (replication is asynchronous). Either way entries that are
 * stale now could be served under generations that did not move. The
 * choice here is versioning, not flushing: every generation key lives
 * under a cache epoch (the key hscale:epoch, read in the same script as
 * the generation, so all instances see a new epoch at their next read).
 * When this client missed an invalidation, or its master changed, its next
 * successful connection moves the epoch on before anything else; every
 * generation then restarts from the wall clock under the new epoch, so
 * every key cached before is unreachable and expires by its TTL. Why not
 * flush: a SCAN of the keyspace is O(keys), serves stale entries until it
 * ends, and deletes what other applications keep in the same Redis; an
 * epoch is one write and takes effect at once for everybody. */
#include <hiredis.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "store/store_int.h"

#define RD_TRIP 3
#define RD_OPEN_US 2000000u
#define RD_KEEP 16
#define RD_EPOCH_KEY "hscale:epoch"
#define RD_GEN_TTL_MS 86400000ull

/* KEYS[1] epoch; ARGV: generation key, initial value (wall clock us), TTL
 * ms, "1" to bump. The epoch starts at the wall clock too when missing
 * (evicted, a fresh Redis): a new epoch, never one used before. */
static const char rd_gen_lua[] =
    "local e = redis.call('GET', KEYS[1])\n"
    "if not e then e = ARGV[2]; redis.call('SET', KEYS[1], e) end\n"
    "local k = ARGV[1] .. '@' .. e\n"
    "if ARGV[4] == '1' then\n"
    "  redis.call('SET', k, ARGV[2], 'NX', 'PX', ARGV[3])\n"
    "  local g = redis.call('INCR', k)\n"
    "  redis.call('PEXPIRE', k, ARGV[3])\n"
    "  return g\n"
    "end\n"
    "local g = redis.call('GET', k)\n"
    "if g then return g end\n"
    "redis.call('SET', k, ARGV[2], 'PX', ARGV[3])\n"
    "return ARGV[2]\n";

/* KEYS[1] epoch; ARGV[1] wall clock us: the epoch becomes the larger of
 * that and epoch + 1. */
static const char rd_epoch_lua[] =
    "local e = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "local n = tonumber(ARGV[1])\n"
    "if n <= e then n = e + 1 end\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', n))\n"
    "return n\n";

typedef struct rd_ctx { redisContext *c; uint64_t gen; } rd_ctx;

struct st_redis {
    pthread_mutex_t  mu;
    char             host[128];    /* the master, under mu */
    int              port;
    uint64_t         master_gen;   /* under mu; moves with the master */
    _Atomic int      state;        /* st_redis_master */
    char            *password;
    uint64_t         timeout_us;
    rd_ctx           free_ctx[RD_KEEP];
    int              nfree;
    st_sentinel     *sn;           /* NULL: a fixed address */
    char             gen_sha[41], epoch_sha[41];
    _Atomic int      fails;
    _Atomic uint64_t open_until;
    _Atomic uint64_t errors, switches, epochs;
    _Atomic bool     dirty;        /* an invalidation did not reach Redis */
};

const char *st_redis_master_str(st_redis_master m)
{
    switch (m) {
    case ST_REDIS_RESOLVING: return "resolving";
    case ST_REDIS_UP: return "up";
    case ST_REDIS_LOST: return "lost";
    }
    return "?";
}

int st_redis_split_addr(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || colon == addr || !colon[1] || (size_t)(colon - addr) >= hostlen)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535)
        return -1;
    snprintf(host, hostlen, "%.*s", (int)(colon - addr), addr);
    *port = (int)p;
    return 0;
}

redisContext *st_redis_connect(const char *host, int port, uint64_t timeout_us,
                               const char *password, st_err *err)
{
    struct timeval tv = { (time_t)(timeout_us / 1000000u), (suseconds_t)(timeout_us % 1000000u) };
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        st_fail(err, ST_EUNAVAIL, "redis %s:%d: %s", host, port, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    if (password && *password) {
        redisReply *rep = redisCommand(c, "AUTH %s", password);
        bool ok = rep && rep->type != REDIS_REPLY_ERROR;
        if (!ok)
            st_fail(err, ST_EUNAVAIL, "redis %s:%d: AUTH refused", host, port);
        if (rep)
            freeReplyObject(rep);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

static void sha1_hex(const char *text, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(text, strlen(text), md, &n, EVP_sha1(), NULL);
    for (unsigned int i = 0; i < n && i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[40] = '\0';
}

/* The follower's report (its thread). A new address is a new master
 * generation: pooled connections to the old one are dropped as met, and
 * the epoch moves on at the next connection (the new master may lack the
 * old one's last invalidations). */
static void rd_on_master(void *arg, bool up, const char *host, int port)
{
    st_redis *r = arg;
    if (!up) {
        r->state = ST_REDIS_LOST;
        return;
    }
    pthread_mutex_lock(&r->mu);
    bool moved = strcmp(r->host, host) != 0 || r->port != port;
    if (moved) {
        bool first = r->state == ST_REDIS_RESOLVING && !r->host[0];
        snprintf(r->host, sizeof r->host, "%s", host);
        r->port = port;
        r->master_gen++;
        if (!first) {
            r->switches++;
            r->dirty = true;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (moved || r->state != ST_REDIS_UP) {
        r->fails = 0;            /* a verified master: let traffic through now */
        r->open_until = 0;
    }
    r->state = ST_REDIS_UP;
}

static st_redis *rd_alloc(const st_redis_opts *o, st_err *err)
{
    st_redis *r = calloc(1, sizeof *r);
    if (!r || (o->password && *o->password && !(r->password = strdup(o->password)))) {
        free(r);
        st_fail(err, ST_ENOMEM, "out of memory");
        return NULL;
    }
    r->timeout_us = o->timeout_us ? o->timeout_us : 50000;
    pthread_mutex_init(&r->mu, NULL);
    sha1_hex(rd_gen_lua, r->gen_sha);
    sha1_hex(rd_epoch_lua, r->epoch_sha);
    return r;
}

st_redis *st_redis_open(const st_redis_opts *o, st_err *err)
{
    if (o->nsentinels) {
        st_redis *r = rd_alloc(o, err);
        if (!r)
            return NULL;
        r->state = ST_REDIS_RESOLVING;
        if (!(r->sn = st_sentinel_start(o, rd_on_master, r, err))) {
            st_redis_free(r);
            return NULL;
        }
        return r;
    }
    char host[128];
    int port;
    if (st_redis_split_addr(o->addr, host, sizeof host, &port) < 0) {
        st_fail(err, ST_EINVAL, "cache.redis: expected host:port, got '%s'",
                o->addr ? o->addr : "");
        return NULL;
    }
    st_redis *r = rd_alloc(o, err);
    if (!r)
        return NULL;
    snprintf(r->host, sizeof r->host, "%s", host);
    r->port = port;
    r->state = ST_REDIS_UP;
    return r;
}

st_redis *st_redis_new(const char *addr, uint64_t timeout_us, st_err *err)
{
    st_redis_opts o = { .addr = addr, .timeout_us = timeout_us };
    return st_redis_open(&o, err);
}

void st_redis_free(st_redis *r)
{
    if (!r)
        return;
    st_sentinel_stop(r->sn);     /* first: its callback touches r */
    for (int i = 0; i < r->nfree; i++)
        redisFree(r->free_ctx[i].c);
    pthread_mutex_destroy(&r->mu);
    free(r->password);
    free(r);
}

bool st_redis_up(st_redis *r)
{
    return r->state == ST_REDIS_UP && r->open_until <= st_now_us();
}

uint64_t st_redis_errors(st_redis *r) { return r->errors; }

st_redis_master st_redis_master_get(st_redis *r, char *addr, size_t addrlen,
                                    uint64_t *switches, uint64_t *epochs)
{
    st_redis_master m = (st_redis_master)r->state;
    pthread_mutex_lock(&r->mu);
    if (addr)
        snprintf(addr, addrlen, "%s", m == ST_REDIS_UP && r->host[0] ? r->host : "");
    if (addr && m == ST_REDIS_UP && r->host[0])
        snprintf(addr + strlen(addr), addrlen - strlen(addr), ":%d", r->port);
    pthread_mutex_unlock(&r->mu);
    if (switches)
        *switches = r->switches;
    if (epochs)
        *epochs = r->epochs;
    return m;
}

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void rd_failed(st_redis *r)
{
    r->errors++;
    if (++r->fails >= RD_TRIP)
        r->open_until = st_now_us() + RD_OPEN_US;
    st_sentinel_reask(r->sn);   /* the master may have moved: ask now */
}

/* EVALSHA, or EVAL when the server does not know the script yet (a fresh
 * master after a failover, a restart). */
static redisReply *rd_script(redisContext *ctx, const char *sha, const char *lua, int argc,
                             const char **argv)
{
    const char *av[10];
    size_t al[10];
    av[0] = "EVALSHA";
    av[1] = sha;
    av[2] = "1";
    av[3] = RD_EPOCH_KEY;
    for (int i = 0; i < argc && i < 6; i++)
        av[4 + i] = argv[i];
    int n = 4 + argc;
    for (int i = 0; i < n; i++)
        al[i] = strlen(av[i]);
    redisReply *rep = redisCommandArgv(ctx, n, av, al);
    if (rep && rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "NOSCRIPT", 8)) {
        freeReplyObject(rep);
        av[0] = "EVAL";
        av[1] = lua;
        al[0] = 4;
        al[1] = strlen(lua);
        rep = redisCommandArgv(ctx, n, av, al);
    }
    return rep;
}

/* Moves the epoch on (see the top). true when done. */
static bool rd_epoch_bump(st_redis *r, redisContext *ctx)
{
    char now[32];
    snprintf(now, sizeof now, "%llu", (unsigned long long)wall_us());
    const char *argv[1] = { now };
    redisReply *rep = rd_script(ctx, r->epoch_sha, rd_epoch_lua, 1, argv);
    bool ok = rep && rep->type == REDIS_REPLY_INTEGER;
    if (ok) {
        r->epochs++;
        log_info("cache: redis cache epoch moved on to %lld: entries cached before an "
                 "invalidation was lost (outage or new master) are retired",
                 (long long)rep->integer);
    }
    if (rep)
        freeReplyObject(rep);
    return ok;
}

/* A connection to the current master, with the generation it belongs to;
 * NULL (a miss) when there is none or the breaker is open. */
static redisContext *ctx_get(st_redis *r, uint64_t *genp)
{
    if (r->state != ST_REDIS_UP || r->open_until > st_now_us())
        return NULL;
    redisContext *ctx = NULL, *stale[RD_KEEP];
    int nstale = 0;
    char host[128];
    int port;
    pthread_mutex_lock(&r->mu);
    uint64_t gen = r->master_gen;
    while (r->nfree && !ctx) {
        rd_ctx x = r->free_ctx[--r->nfree];
        if (x.gen == gen)
            ctx = x.c;
        else
            stale[nstale++] = x.c;
    }
    snprintf(host, sizeof host, "%s", r->host);
    port = r->port;
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < nstale; i++)
        redisFree(stale[i]);
    if (!ctx && !(ctx = st_redis_connect(host, port, r->timeout_us, r->password, NULL))) {
        rd_failed(r);
        return NULL;
    }
    *genp = gen;
    if (atomic_exchange(&r->dirty, false) && !rd_epoch_bump(r, ctx)) {
        r->dirty = true;
        redisFree(ctx);
        rd_failed(r);
        return NULL;
    }
    return ctx;
}

/* Returns ctx to the free list, or drops it after an error. */
static void ctx_put(st_redis *r, redisContext *ctx, uint64_t gen, bool ok)
{
    if (ok) {
        r->fails = 0;
        pthread_mutex_lock(&r->mu);
        if (r->nfree < RD_KEEP && gen == r->master_gen) {
            r->free_ctx[r->nfree++] = (rd_ctx){ ctx, gen };
            ctx = NULL;
        }
        pthread_mutex_unlock(&r->mu);
    } else {
        rd_failed(r);
    }
    if (ctx)
        redisFree(ctx);
}

/* An answer that is an error: -READONLY (we talk to a demoted master)
 * and -MASTERDOWN, -LOADING say the same as a lost connection. */
static bool rd_ok(const redisReply *rep)
{
    return rep && rep->type != REDIS_REPLY_ERROR;
}

int st_redis_get(st_redis *r, const char *key, buf *out)
{
    uint64_t cg = 0;
    redisContext *ctx = ctx_get(r, &cg);
    if (!ctx)
        return -1;
    redisReply *rep = redisCommand(ctx, "GET %s", key);
    bool ok = rd_ok(rep);
    int rc = -1;
    if (ok) {
        rc = 0;
        if (rep->type == REDIS_REPLY_STRING && buf_append(out, rep->str, rep->len) == 0)
            rc = 1;
    }
    if (rep)
        freeReplyObject(rep);
    ctx_put(r, ctx, cg, ok);
    return rc;
}

int st_redis_set(st_redis *r, const char *key, const void *val, size_t len, uint64_t ttl_us)
{
    uint64_t cg = 0;
    redisContext *ctx = ctx_get(r, &cg);
    if (!ctx)
        return -1;
    unsigned long long ms = ttl_us / 1000 ? ttl_us / 1000 : 1;
    redisReply *rep = redisCommand(ctx, "SET %s %b PX %llu", key, val, len, ms);
    bool ok = rd_ok(rep);
    if (rep)
        freeReplyObject(rep);
    ctx_put(r, ctx, cg, ok);
    return ok ? 0 : -1;
}

int st_redis_del(st_redis *r, const char *key)
{
    uint64_t cg = 0;
    redisContext *ctx = ctx_get(r, &cg);
    redisReply *rep = ctx ? redisCommand(ctx, "DEL %s", key) : NULL;
    bool ok = rd_ok(rep);
    if (rep)
        freeReplyObject(rep);
    if (ctx)
        ctx_put(r, ctx, cg, ok);
    if (!ok)
        r->dirty = true;     /* a lost invalidation */
    return ok ? 0 : -1;
}

static uint64_t reply_u64(const redisReply *rep)
{
    if (!rep)
        return 0;
    if (rep->type == REDIS_REPLY_INTEGER)
        return (uint64_t)rep->integer;
    if (rep->type == REDIS_REPLY_STRING)
        return strtoull(rep->str, NULL, 10);
    return 0;
}

static uint64_t rd_gen(st_redis *r, const char *key, uint64_t init, bool bump)
{
    uint64_t cg = 0;
    redisContext *ctx = ctx_get(r, &cg);
    if (!ctx)
        return 0;
    char s_init[32], s_ttl[32];
    snprintf(s_init, sizeof s_init, "%llu", (unsigned long long)init);
    snprintf(s_ttl, sizeof s_ttl, "%llu", RD_GEN_TTL_MS);
    const char *argv[4] = { key, s_init, s_ttl, bump ? "1" : "0" };
    redisReply *rep = rd_script(ctx, r->gen_sha, rd_gen_lua, 4, argv);
    bool ok = rd_ok(rep);
    uint64_t gen = ok ? reply_u64(rep) : 0;
    if (rep)
        freeReplyObject(rep);
    ctx_put(r, ctx, cg, ok);
    return ok ? gen : 0;
}

uint64_t st_redis_gen(st_redis *r, const char *key, uint64_t init)
{
    return rd_gen(r, key, init, false);
}

int st_redis_bump(st_redis *r, const char *key, uint64_t init)
{
    if (rd_gen(r, key, init, true))
        return 0;
    r->dirty = true;         /* a lost invalidation: retire everything at the next chance */
    return -1;
}
