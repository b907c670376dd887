/* store_metrics.c -- the store's series in the process metrics registry.
 *
 * Pool sizes, replica lag and cache counters are read at render time
 * through gauge callbacks (the pools and cache already count under their
 * own locks, so the hot path pays nothing extra); query latency is a
 * histogram fed by shard_exec through s->observe. Series are removed when
 * the store closes, since their callbacks point into it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/replicas_int.h"

enum { G_IDLE, G_BUSY, G_WAITING, G_MAX, G_LAG, G_HITS, G_MISSES, G_COALESCED, G_REDIS_UP,
       G_SWITCHES, G_EPOCHS };

typedef struct gauge_arg {
    st_store      *s;
    st_node       *node;
    int            what;
    metric_family *fam;
    char           labels[3][64];
} gauge_arg;

typedef struct st_metrics {
    gauge_arg *args;
    size_t     n, cap;
} st_metrics;

static double gauge_read(void *p)
{
    gauge_arg *a = p;
    if (a->what == G_LAG)
        return a->node->lag_us < 0 ? -1 : (double)a->node->lag_us / 1e6;
    if (a->what >= G_HITS) {
        st_cache_stats cs;
        st_cache_stats_get(a->s->cache, &cs);
        switch (a->what) {
        case G_HITS: return (double)cs.hits;
        case G_MISSES: return (double)cs.misses;
        case G_COALESCED: return (double)cs.coalesced;
        case G_REDIS_UP: return cs.redis_up;
        case G_SWITCHES: return (double)cs.redis_switches;
        default: return (double)cs.redis_epochs;
        }
    }
    st_pool_stats ps;
    st_pool_stats_get(a->node->pool, &ps);
    switch (a->what) {
    case G_IDLE: return ps.idle;
    case G_BUSY: return ps.busy;
    case G_WAITING: return ps.waiting;
    default: return ps.max;
    }
}

static int add_gauge(st_metrics *m, st_store *s, metric_family *fam, st_node *node, int what,
                     const char *l0, const char *l1, const char *l2)
{
    if (!fam)
        return -1;
    if (m->n == m->cap) {
        /* Sized before any series is created (see below): args never move
         * once a callback points at them. */
        return -1;
    }
    gauge_arg *a = &m->args[m->n++];
    *a = (gauge_arg){ .s = s, .node = node, .what = what, .fam = fam };
    snprintf(a->labels[0], sizeof a->labels[0], "%s", l0 ? l0 : "");
    snprintf(a->labels[1], sizeof a->labels[1], "%s", l1 ? l1 : "");
    snprintf(a->labels[2], sizeof a->labels[2], "%s", l2 ? l2 : "");
    const char *vals[3] = { a->labels[0], a->labels[1], a->labels[2] };
    metrics_gauge_fn_set(metrics_series(fam, vals), gauge_read, a);
    return 0;
}

static void metrics_teardown(st_store *s)
{
    st_metrics *m = s->metrics;
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        const char *vals[3] = { m->args[i].labels[0], m->args[i].labels[1], m->args[i].labels[2] };
        metrics_series_remove(m->args[i].fam, vals);
    }
    s->observe = NULL;
    free(m->args);
    free(m);
    s->metrics = NULL;
}

void st_store_metrics_register(st_store *s)
{
    if (s->metrics)
        return;
    metrics_registry *r = metrics_default();
    static const char *const pool_labels[] = { "shard", "role", "state", NULL };
    static const char *const lag_labels[] = { "shard", "replica", NULL };
    static const char *const cache_labels[] = { "result", NULL };
    static const char *const lat_labels[] = { "shard", NULL };
    metric_family *pool = metrics_family(r, "hscale_db_pool_connections",
        "Database connections per pool by state (idle, busy, waiting callers, max).",
        METRIC_GAUGE, pool_labels);
    metric_family *lag = metrics_family(r, "hscale_db_replica_lag_seconds",
        "Replication lag of each read replica at the last probe (-1: unknown).",
        METRIC_GAUGE, lag_labels);
    metric_family *lat = metrics_family(r, "hscale_db_query_duration_seconds",
        "Database statement latency per shard, including the pool wait.",
        METRIC_HISTOGRAM, lat_labels);
    metric_family *cache = s->cache ? metrics_family(r, "hscale_cache_requests_total",
        "Cache lookups by result (hit, miss; coalesced: misses served by another loader).",
        METRIC_COUNTER, cache_labels) : NULL;
    bool redis = s->cache && s->cache_cfg.kind == ST_CACHE_REDIS;
    metric_family *rup = redis ? metrics_family(r, "hscale_cache_redis_up",
        "1 while the Redis cache has a verified master and its breaker is closed; 0: misses.",
        METRIC_GAUGE, NULL) : NULL;
    metric_family *rsw = redis ? metrics_family(r, "hscale_cache_redis_master_switches_total",
        "Times the Redis cache followed its master to a new address (Sentinel failovers).",
        METRIC_COUNTER, NULL) : NULL;
    metric_family *rep = redis ? metrics_family(r, "hscale_cache_epochs_total",
        "Cache epochs this instance moved on: entries cached before an invalidation that may "
        "have been lost (outage, new master) were retired.", METRIC_COUNTER, NULL) : NULL;
    st_metrics *m = calloc(1, sizeof *m);
    size_t want = 6;
    for (int i = 0; i < s->nshards; i++)
        want += 4 * (1 + ST_MAX_REPLICAS) + ST_MAX_REPLICAS;
    if (!m || !(m->args = calloc(want, sizeof *m->args))) {
        free(m);
        return;
    }
    m->cap = want;
    s->metrics = m;
    s->metrics_free = metrics_teardown;
    static const char *const states[] = { "idle", "busy", "waiting", "max" };
    for (int i = 0; i < s->nshards; i++) {
        st_shard *sh = &s->shards[i];
        for (int st = 0; st < 4; st++)
            add_gauge(m, s, pool, &sh->primary, st, sh->name, "primary", states[st]);
        /* The gauges point at the nodes: a replica-set change registers
         * them again before a removed node can go (store_replicas.c). */
        pthread_rwlock_rdlock(&sh->rep_lk);
        for (size_t rp = 0; rp < sh->nreplicas; rp++) {
            char role[32];
            snprintf(role, sizeof role, "replica%zu", rp);
            for (int st = 0; st < 4; st++)
                add_gauge(m, s, pool, sh->replicas[rp], st, sh->name, role, states[st]);
            add_gauge(m, s, lag, sh->replicas[rp], G_LAG, sh->name, role, NULL);
        }
        pthread_rwlock_unlock(&sh->rep_lk);
        if (lat) {
            const char *vals[1] = { sh->name };
            sh->m_latency = metrics_series(lat, vals);
        }
    }
    if (cache) {
        add_gauge(m, s, cache, NULL, G_HITS, "hit", NULL, NULL);
        add_gauge(m, s, cache, NULL, G_MISSES, "miss", NULL, NULL);
        add_gauge(m, s, cache, NULL, G_COALESCED, "coalesced", NULL, NULL);
    }
    add_gauge(m, s, rup, NULL, G_REDIS_UP, NULL, NULL, NULL);
    add_gauge(m, s, rsw, NULL, G_SWITCHES, NULL, NULL, NULL);
    add_gauge(m, s, rep, NULL, G_EPOCHS, NULL, NULL, NULL);
    s->observe = metrics_observe_us;
}
