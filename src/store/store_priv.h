/* store_priv.h -- the st_store internals shared by store.c (routing and
 * queries), store_open.c (setup, probes), store_replicas.c (replica sets
 * that change) and store_stats.c (statistics).
 *
 * Node health and lag are written by the probe thread and read by workers
 * without a lock (atomics). A primary is fixed for the store's life. A
 * shard's replica list changes at run time (st_store_set_replicas): the
 * list is read under rep_lk, held only to copy pointers, and each replica
 * node is reference-counted: the list holds one reference, every query
 * and probe using it another, so a removed replica lives on until its
 * in-flight queries end, then its pool and connections close. */
#ifndef HSCALE_STORE_STORE_PRIV_H
#define HSCALE_STORE_STORE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/metrics.h"
#include "store/store_int.h"

typedef struct st_node {
    const st_driver *drv;
    st_pool         *pool;
    char             url_safe[128];
    bool             is_replica;
    _Atomic bool     healthy;
    _Atomic int64_t  lag_us;       /* -1: unknown */
    _Atomic int      inflight;
    st_conn         *probe;        /* probe thread's own connection */
    _Atomic int      refs;         /* replicas: list + queries + probes using it */
    _Atomic bool     retired;      /* removed from its shard: draining */
} st_node;

#define ST_MAX_REPLICAS 8

typedef struct st_shard {
    char             name[64];
    st_node          primary;
    st_node         *replicas[ST_MAX_REPLICAS];   /* under rep_lk (replicas_int.h) */
    size_t           nreplicas;
    pthread_rwlock_t rep_lk;
    pthread_mutex_t  rep_mu;       /* one replica-set change at a time */
    _Atomic unsigned rr;
    pthread_mutex_t  stat_mu;
    hist            *latency;      /* us, under stat_mu */
    uint64_t         queries, errors;
    metric_series   *m_latency;    /* set by st_store_metrics_register */
} st_shard;

/* Shards are never removed and the array never moves: a store has room
 * for ST_SHARDS_CAP from the start, and nshards only grows (release store
 * after the new shard is set up), so workers index it without a lock. */
#define ST_SHARDS_CAP 64

/* One shard of a shard map (shardmap.c). */
typedef struct st_mapshard {
    char   name[64];
    char   primary[512];
    char   replicas[8][512];
    size_t nreplicas;
    double weight;
} st_mapshard;

typedef struct st_map {
    int64_t     version;
    int         strategy;      /* st_route_kind */
    st_mapshard shards[ST_SHARDS_CAP];
    size_t      n;
} st_map;

#define RYW_SETS_N  16384   /* x RYW_WAYS_N entries of 16 bytes: 1 MiB */
#define RYW_WAYS_N  4
#define RYW_LOCKS_N 64

typedef struct st_ryw { int64_t user; uint64_t at; } st_ryw;

struct st_reshard;

struct st_store {
    st_shard        *shards;       /* ST_SHARDS_CAP slots */
    _Atomic int      nshards;
    _Atomic(st_router *) router;   /* swapped whole on a map change */
    st_router      **retired;      /* old routers, freed at close (readers may hold one) */
    size_t           nretired;
    /* The shard map: version, strategy, weights; map_mu serialises changes. */
    pthread_mutex_t  map_mu;
    _Atomic int64_t  map_version;
    _Atomic uint64_t map_changed_us;   /* reads go to primaries for max_lag after */
    int              strategy;
    double           weights[ST_SHARDS_CAP];
    char             data_dir[512];
    st_pool_cfg      pool_cfg;         /* for shards added at run time */
    bool             migrate;
    uint64_t         fence_wait;
    int              rs_batch;
    uint64_t         rs_cleanup_delay;
    struct st_reshard *rs;             /* the last move coordinated here */
    pthread_mutex_t  rs_mu;
    st_cache        *cache;
    st_cache_cfg     cache_cfg;    /* redis address not kept */
    uint64_t         max_lag, ryw_window, probe_every;
    st_ryw          *ryw;
    pthread_mutex_t  ryw_locks[RYW_LOCKS_N];
    _Atomic uint64_t id_ticks;
    uint64_t         id_tag;
    pthread_t        probe_thread;
    bool             probe_running;
    pthread_mutex_t  probe_mu;
    pthread_cond_t   probe_cv;
    bool             stopping;
    bool             dir_reload;   /* strategy directory: reread the table */
    /* Metrics, when registered: the observe hook keeps store.c free of a
     * link dependency on the registry (tools and tests use the store bare). */
    void           (*observe)(metric_series *m, uint64_t us);
    void            *metrics;      /* store_metrics.c's bookkeeping */
    void           (*metrics_free)(st_store *s);
};

void st_stats_record(st_store *s, st_shard *sh, uint64_t us, bool ok);

/* Shard setup shared by open and run-time additions (store_open.c). */
int  st_shard_setup(st_store *s, int i, const char *name, const char *primary,
                    char *const *replicas, size_t nreplicas, st_err *err);
void st_shard_teardown(st_shard *sh);
/* Runs the migrations on a shard's primary through a private connection. */
int  st_shard_migrate(st_store *s, int i, st_err *err);

/* Shard maps (shardmap.c). */
void st_map_current(st_store *s, st_map *out);
int  st_map_to_json(const st_map *m, buf *out);
int  st_map_parse(const char *json, st_map *out, st_err *err);
/* Builds the router m describes (hash: a new ring; directory: the current
 * router grows). NULL with err for a strategy that cannot. */
st_router *st_map_router(st_store *s, const st_map *m, st_err *err);
/* Adopts m (newer than the current map): adds its new shards, swaps the
 * router, records the version. Under map_mu. */
int  st_map_adopt(st_store *s, const st_map *m, st_err *err);
/* At open: the stored map (version 1 written from the config if none). */
void st_map_open(st_store *s);
/* Newest stored version on the meta shard (0 none, -1 error). */
int64_t st_map_stored_version(st_store *s, st_err *err);

/* Directory table into the router (store_open.c). */
void st_store_load_directory(st_store *s);

/* The resharding coordinator's teardown (reshard.c). */
void st_reshard_free(st_store *s);

#endif
