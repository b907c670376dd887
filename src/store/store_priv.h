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

#define RYW_SETS_N  16384   /* x RYW_WAYS_N entries of 16 bytes: 1 MiB */
#define RYW_WAYS_N  4
#define RYW_LOCKS_N 64

typedef struct st_ryw { int64_t user; uint64_t at; } st_ryw;

struct st_store {
    st_shard        *shards;
    int              nshards;
    st_router       *router;
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

#endif
