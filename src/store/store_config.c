/* store_config.c -- the `store:` configuration section (schema for
 * core/config.h), its defaults and its cross-field checks.
 *
 * Defaults give a working store with no file at all: one SQLite shard under
 * ./hscale-data, a local cache, the SurgiCase pool knobs (10 + 20 overflow,
 * 30 s acquire timeout, 5 min jittered lifetime, pre-ping) and MedEase-style TTLs. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

#define F(T, m) offsetof(T, m)

static const char *const strategies[] = { "hash", "range", "directory", NULL };
static const char *const cache_kinds[] = { "none", "local", "redis", NULL };

static const cfg_field shard_fields[] = {
    { "name", CFG_STRING, F(st_shard_cfg, name), NULL, NULL, 0, 0, NULL, NULL, 0, 0,
      "shard name (routing and metrics label); s<index> when empty" },
    { "primary", CFG_STRING, F(st_shard_cfg, primary), NULL, NULL, 0, 0, NULL, NULL, 0, 0,
      "primary database url: sqlite:PATH or postgresql://...; empty: sqlite:<data_dir>/<name>.db" },
    { "replicas", CFG_STRLIST, F(st_shard_cfg, replicas), NULL, NULL, 0, 0, NULL, NULL, 0,
      F(st_shard_cfg, nreplicas), "read replica urls (PostgreSQL streaming standbys)" },
    { "weight", CFG_DOUBLE, F(st_shard_cfg, weight), "1", NULL, 0.01, 100, NULL, NULL, 0, 0,
      "share of users under hash routing, relative to other shards" },
};
static const cfg_schema shard_schema = { "shard", shard_fields,
                                         sizeof shard_fields / sizeof shard_fields[0], NULL };

static const cfg_field range_fields[] = {
    { "from", CFG_STRING, F(st_range_cfg, from), NULL, NULL, 0, 0, NULL, NULL, 0, 0,
      "first user_id of the range (inclusive)" },
    { "to", CFG_STRING, F(st_range_cfg, to), NULL, NULL, 0, 0, NULL, NULL, 0, 0,
      "last user_id of the range (inclusive); empty: no upper bound" },
    { "shard", CFG_STRING, F(st_range_cfg, shard), NULL, NULL, 0, 0, NULL, NULL, 0, 0,
      "shard name" },
};
static const cfg_schema range_schema = { "range", range_fields,
                                         sizeof range_fields / sizeof range_fields[0], NULL };

static const cfg_field dir_fields[] = {
    { "user", CFG_STRING, F(st_dir_cfg, user), NULL, NULL, 0, 0, NULL, NULL, 0, 0, "user_id" },
    { "shard", CFG_STRING, F(st_dir_cfg, shard), NULL, NULL, 0, 0, NULL, NULL, 0, 0, "shard name" },
};
static const cfg_schema dir_schema = { "directory", dir_fields,
                                       sizeof dir_fields / sizeof dir_fields[0], NULL };

static const cfg_field pool_fields[] = {
    { "size", CFG_INT, F(st_pool_cfg, size), "10", "HSCALE_DB_POOL_SIZE", 1, 1000, NULL, NULL, 0, 0,
      "connections kept open per database" },
    { "overflow", CFG_INT, F(st_pool_cfg, overflow), "20", NULL, 0, 1000, NULL, NULL, 0, 0,
      "extra connections allowed under burst, closed when returned" },
    { "acquire_timeout", CFG_DURATION, F(st_pool_cfg, acquire_timeout), "30s", NULL, 0.001, 600,
      NULL, NULL, 0, 0, "wait for a free connection at most this long, then 503" },
    { "recycle", CFG_DURATION, F(st_pool_cfg, recycle), "5m", "HSCALE_DB_POOL_RECYCLE", 0, 0, NULL,
      NULL, 0, 0, "maximum lifetime of a connection, less a random 0-20 % per connection so a "
      "burst does not expire at once; then it is closed and reopened, so replicas added at run "
      "time or behind a name get traffic (0: never)" },
    { "pre_ping", CFG_BOOL, F(st_pool_cfg, pre_ping), "true", NULL, 0, 0, NULL, NULL, 0, 0,
      "check a connection with SELECT 1 before reuse after pre_ping_idle" },
    { "pre_ping_idle", CFG_DURATION, F(st_pool_cfg, pre_ping_idle), "5s", NULL, 0, 0, NULL, NULL,
      0, 0, "idle time after which a connection is pinged before reuse (0: every time)" },
};
static const cfg_schema pool_schema = { "pool", pool_fields,
                                        sizeof pool_fields / sizeof pool_fields[0], NULL };

static const cfg_field cache_fields[] = {
    { "kind", CFG_ENUM, F(st_cache_cfg, kind), "local", "HSCALE_CACHE", 0, 0, cache_kinds, NULL,
      0, 0, "none, local (in-process LRU) or redis (shared by instances)" },
    { "redis", CFG_ADDR, F(st_cache_cfg, redis), NULL, "HSCALE_REDIS", 0, 0, NULL, NULL, 0, 0,
      "redis host:port (kind: redis), a fixed master; see sentinels for one that fails over" },
    { "sentinels", CFG_STRLIST, F(st_cache_cfg, sentinels), NULL, "HSCALE_REDIS_SENTINELS", 0, 0,
      NULL, NULL, 0, F(st_cache_cfg, nsentinels),
      "Redis Sentinel addresses (host:port, comma-separated in the env); set: the master is "
      "found, checked with ROLE and followed through them instead of `redis`" },
    { "sentinel_master", CFG_STRING, F(st_cache_cfg, sentinel_master), "mymaster",
      "HSCALE_REDIS_MASTER", 0, 0, NULL, NULL, 0, 0, "the master's name at the sentinels" },
    { "redis_password", CFG_STRING, F(st_cache_cfg, redis_password), NULL, "HSCALE_REDIS_PASSWORD",
      0, 0, NULL, NULL, 0, 0, "AUTH password for Redis and the sentinels (prefer the env or "
      "redis_password_file)" },
    { "redis_password_file", CFG_STRING, F(st_cache_cfg, redis_password_file), NULL, NULL, 0, 0,
      NULL, NULL, 0, 0, "file holding the AUTH password (first line; not readable by others); "
      "wins over redis_password" },
    { "redis_timeout", CFG_DURATION, F(st_cache_cfg, redis_timeout), "50ms", NULL, 0.001, 10,
      NULL, NULL, 0, 0, "connect and command timeout (Redis and sentinels); 3 failures in a row open a 2 s "
      "circuit breaker during which the cache misses without trying" },
    { "max_bytes", CFG_SIZE, F(st_cache_cfg, max_bytes), "64MiB", NULL, 0, 0, NULL, NULL, 0, 0,
      "local cache bound (LRU eviction)" },
    { "ttl_case", CFG_DURATION, F(st_cache_cfg, ttl_case), "5m", NULL, 0, 0, NULL, NULL, 0, 0,
      "TTL of one case (0: not cached)" },
    { "ttl_case_list", CFG_DURATION, F(st_cache_cfg, ttl_case_list), "30s", NULL, 0, 0, NULL,
      NULL, 0, 0, "TTL of a user's case list / casefilter page" },
    { "ttl_user", CFG_DURATION, F(st_cache_cfg, ttl_user), "15m", NULL, 0, 0, NULL, NULL, 0, 0,
      "TTL of a user" },
    { "ttl_list", CFG_DURATION, F(st_cache_cfg, ttl_list), "1h", NULL, 0, 0, NULL, NULL, 0, 0,
      "TTL of a user's facilities and surgeons" },
};
static const cfg_schema cache_schema = { "cache", cache_fields,
                                         sizeof cache_fields / sizeof cache_fields[0], NULL };

static bool has_shard(const st_config *c, const char *name)
{
    if (!name || !*name)
        return false;
    if (!c->nshards)
        return !strcmp(name, "s0");
    for (size_t i = 0; i < c->nshards; i++) {
        char def[32];
        snprintf(def, sizeof def, "s%zu", i);
        const char *n = c->shards[i].name && *c->shards[i].name ? c->shards[i].name : def;
        if (!strcmp(n, name))
            return true;
    }
    return false;
}

static int store_validate(void *obj, cfg_error *err)
{
    const st_config *c = obj;
    if (c->cache.kind == ST_CACHE_REDIS && (!c->cache.redis || !*c->cache.redis) &&
        !c->cache.nsentinels) {
        snprintf(err->key, sizeof err->key, "cache.redis");
        snprintf(err->msg, sizeof err->msg,
                 "cache kind is redis but neither a redis address nor sentinels are set");
        return -1;
    }
    for (size_t i = 0; i < c->cache.nsentinels; i++) {
        const char *a = c->cache.sentinels[i], *colon = a ? strrchr(a, ':') : NULL;
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == a || !colon[1] || *end || port <= 0 || port > 65535) {
            snprintf(err->key, sizeof err->key, "cache.sentinels[%zu]", i);
            snprintf(err->msg, sizeof err->msg, "expected host:port, got '%s'", a ? a : "");
            return -1;
        }
    }
    if (c->cache.nsentinels > 16) {
        snprintf(err->key, sizeof err->key, "cache.sentinels");
        snprintf(err->msg, sizeof err->msg, "at most 16 sentinels, got %zu", c->cache.nsentinels);
        return -1;
    }
    if (c->cache.nsentinels && (!c->cache.sentinel_master || !*c->cache.sentinel_master ||
                                strchr(c->cache.sentinel_master, ' '))) {
        snprintf(err->key, sizeof err->key, "cache.sentinel_master");
        snprintf(err->msg, sizeof err->msg, "expected the master's name (no spaces), got '%s'",
                 c->cache.sentinel_master ? c->cache.sentinel_master : "");
        return -1;
    }
    if (c->strategy == ST_ROUTE_RANGE && !c->nranges) {
        snprintf(err->key, sizeof err->key, "ranges");
        snprintf(err->msg, sizeof err->msg, "strategy is range but no ranges are given");
        return -1;
    }
    if (c->url && *c->url && c->nshards) {
        snprintf(err->key, sizeof err->key, "url");
        snprintf(err->msg, sizeof err->msg, "give either url (one shard) or shards, not both");
        return -1;
    }
    for (size_t i = 0; i < c->nranges; i++) {
        if (!has_shard(c, c->ranges[i].shard)) {
            snprintf(err->key, sizeof err->key, "ranges[%zu].shard", i);
            snprintf(err->msg, sizeof err->msg, "no shard named '%s'",
                     c->ranges[i].shard ? c->ranges[i].shard : "");
            return -1;
        }
    }
    for (size_t i = 0; i < c->ndirectory; i++) {
        if (!has_shard(c, c->directory[i].shard)) {
            snprintf(err->key, sizeof err->key, "directory[%zu].shard", i);
            snprintf(err->msg, sizeof err->msg, "no shard named '%s'",
                     c->directory[i].shard ? c->directory[i].shard : "");
            return -1;
        }
    }
    if (c->default_shard && *c->default_shard && !has_shard(c, c->default_shard)) {
        snprintf(err->key, sizeof err->key, "default_shard");
        snprintf(err->msg, sizeof err->msg, "no shard named '%s'", c->default_shard);
        return -1;
    }
    return 0;
}

static const cfg_field store_fields[] = {
    { "url", CFG_STRING, F(st_config, url), NULL, "HSCALE_DB", 0, 0, NULL, NULL, 0, 0,
      "one-shard database url (sqlite:PATH or postgresql://...); empty: SQLite under data_dir" },
    { "data_dir", CFG_STRING, F(st_config, data_dir), "./hscale-data", "HSCALE_DATA_DIR", 0, 0,
      NULL, NULL, 0, 0, "directory of the SQLite files, one per shard" },
    { "strategy", CFG_ENUM, F(st_config, strategy), "hash", NULL, 0, 0, strategies, NULL, 0, 0,
      "shard routing by user_id: hash (consistent), range or directory" },
    { "shards", CFG_LIST, F(st_config, shards), NULL, NULL, 0, 0, NULL, &shard_schema,
      sizeof(st_shard_cfg), F(st_config, nshards), "shards, each a primary plus replicas" },
    { "ranges", CFG_LIST, F(st_config, ranges), NULL, NULL, 0, 0, NULL, &range_schema,
      sizeof(st_range_cfg), F(st_config, nranges), "strategy range: user_id ranges per shard" },
    { "directory", CFG_LIST, F(st_config, directory), NULL, NULL, 0, 0, NULL, &dir_schema,
      sizeof(st_dir_cfg), F(st_config, ndirectory), "strategy directory: user -> shard entries" },
    { "default_shard", CFG_STRING, F(st_config, default_shard), NULL, NULL, 0, 0, NULL, NULL, 0,
      0, "shard of users no range or directory entry places (directory: first shard)" },
    { "pool", CFG_OBJECT, F(st_config, pool), NULL, NULL, 0, 0, NULL, &pool_schema, 0, 0,
      "connection pool per database" },
    { "cache", CFG_OBJECT, F(st_config, cache), NULL, NULL, 0, 0, NULL, &cache_schema, 0, 0,
      "cache-aside for hot reads" },
    { "max_replica_lag", CFG_DURATION, F(st_config, max_replica_lag), "5s", NULL, 0, 0, NULL,
      NULL, 0, 0, "replicas further behind than this get no reads" },
    { "read_your_writes", CFG_DURATION, F(st_config, read_your_writes), "5s", NULL, 0, 0, NULL,
      NULL, 0, 0, "a user's reads go to the primary this long after its write (0: off)" },
    { "replica_check", CFG_DURATION, F(st_config, replica_check), "1s", NULL, 0.01, 3600, NULL,
      NULL, 0, 0, "interval of replica health and lag probes" },
    { "migrate", CFG_BOOL, F(st_config, migrate), "true", NULL, 0, 0, NULL, NULL, 0, 0,
      "create or upgrade the schema at start" },
    { "fence_wait", CFG_DURATION, F(st_config, fence_wait), "5s", NULL, 0.01, 600, NULL, NULL, 0,
      0, "a write a shard refused for a stale shard map waits this long for the new map"
      " (resharding cutover), then 503" },
    { "reshard_batch", CFG_INT, F(st_config, reshard_batch), "500", NULL, 1, 100000, NULL, NULL,
      0, 0, "rows per read and per transaction while a resharding copies rows" },
    { "reshard_cleanup_delay", CFG_DURATION, F(st_config, reshard_cleanup_delay), "3s", NULL,
      0.01, 3600, NULL, NULL, 0, 0, "after a resharding's cutover, wait this long (instances"
      " poll the map every replica_check) before removing moved rows from their old shards" },
};

const cfg_schema st_config_schema = { "store", store_fields,
                                      sizeof store_fields / sizeof store_fields[0], store_validate };
