/* gw_metrics.c -- the gateway's Prometheus metrics.
 *
 * Route and pool series live in the process registry and are found once
 * per (route, pool) and snapshot generation by each worker (gw_worker.c
 * caches the handles), so the request path only does atomic adds.
 *
 * Per-backend figures are not registry series: members come and go with
 * the API, and a series whose gauge callback points at a freed member
 * would be a use-after-free waiting for a scrape. They are read from the
 * members' own atomics at render time, from the current snapshot, so a
 * removed backend simply stops appearing. */
#include "gateway/gw_proxy.h"
#include "gateway/gw_cache.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct series_node {
    char key[2 * GW_NAME_MAX + 260];
    union { gw_route_series r; gw_pool_series p; } u;
    struct series_node *next;
} series_node;

static pthread_mutex_t nodes_lock = PTHREAD_MUTEX_INITIALIZER;
static series_node *nodes;

typedef struct gw_phase_gauge { gw_rt *rt; int phase; } gw_phase_gauge;

static double phase_gauge(void *arg)
{
    const gw_phase_gauge *g = arg;
    return g->rt->workers ? (double)gw_rt_phase_count(g->rt, (gw_conn_phase)g->phase) : 0;
}

static double ex_phase_gauge(void *arg)
{
    const gw_phase_gauge *g = arg;
    return g->rt->workers ? (double)gw_rt_ex_phase_count(g->rt, (gw_ex_phase)g->phase) : 0;
}

void gw_metrics_init(gw_rt *rt)
{
    metrics_registry *reg = rt->reg;
    static const char *const route_pool_code[] = { "route", "pool", "code", NULL };
    static const char *const route_pool[] = { "route", "pool", NULL };
    static const char *const pool[] = { "pool", NULL };
    static const char *const none[] = { NULL };
    rt->f_req = metrics_family(reg, "hscale_gateway_requests_total",
                               "Requests answered, by route, pool and status class "
                               "(\"failed\": no response could be given).",
                               METRIC_COUNTER, route_pool_code);
    rt->f_dur = metrics_family(reg, "hscale_gateway_request_duration_seconds",
                               "Time from request head to the end of the response.",
                               METRIC_HISTOGRAM, route_pool);
    rt->f_up = metrics_family(reg, "hscale_gateway_upstream_duration_seconds",
                              "Time from connecting or sending to the backend's response head.",
                              METRIC_HISTOGRAM, pool);
    rt->f_retry = metrics_family(reg, "hscale_gateway_retries_total",
                                 "Requests sent again to another backend.", METRIC_COUNTER, pool);
    rt->f_eject = metrics_family(reg, "hscale_gateway_ejections_total",
                                 "Backends taken out by passive outlier detection.",
                                 METRIC_COUNTER, pool);
    rt->f_queued = metrics_family(reg, "hscale_gateway_pool_full_total",
                                  "Requests refused because every backend was at max_conn.",
                                  METRIC_COUNTER, pool);
    static const char *const pool_result[] = { "pool", "result", NULL };
    rt->f_utls = metrics_family(reg, "hscale_gateway_upstream_tls_handshakes_total",
                                "TLS handshakes with https backends: full, resumed (the member "
                                "took the session offered), failed (refused certificate, alert, "
                                "reset).", METRIC_COUNTER, pool_result);
    rt->f_rl = metrics_family(reg, "hscale_gateway_rate_limited_total",
                              "Requests refused with 429 by a rate limit.", METRIC_COUNTER, none);
    rt->m_rl_total = metrics_series(rt->f_rl, none);
    metric_family *fc = metrics_family(reg, "hscale_gateway_client_connections",
                                       "Open client connections.", METRIC_GAUGE, none);
    rt->m_clients = metrics_series(fc, none);
    metric_family *fq = metrics_family(reg, "hscale_gateway_queue_depth",
                                       "Requests waiting for a backend under max_conn.",
                                       METRIC_GAUGE, none);
    rt->m_queued = metrics_series(fq, none);
    /* How well the workers batch: callbacks per busy iteration, and how
     * often a worker stepped aside for its peers (yield_after_batch). */
    rt->m_batches = metrics_series(metrics_family(reg, "hscale_gateway_loop_batches_total",
        "Worker loop iterations that ran at least one callback.", METRIC_COUNTER, none), none);
    rt->m_callbacks = metrics_series(metrics_family(reg, "hscale_gateway_loop_callbacks_total",
        "Socket, timer and task callbacks run by the worker loops.", METRIC_COUNTER, none), none);
    rt->m_yields = metrics_series(metrics_family(reg, "hscale_gateway_loop_yields_total",
        "Times a worker gave its CPU to other runnable processes after a batch.",
        METRIC_COUNTER, none), none);
    /* WebSocket / Upgrade tunnels (gw_tunnel.c). */
    rt->m_tunnels = metrics_series(metrics_family(reg, "hscale_gateway_tunnels",
        "Open WebSocket (Upgrade) tunnels.", METRIC_GAUGE, none), none);
    static const char *const dir[] = { "direction", NULL };
    metric_family *fb = metrics_family(reg, "hscale_gateway_tunnel_bytes_total",
        "Bytes relayed through tunnels: \"up\" client to backend, \"down\" backend to client.",
        METRIC_COUNTER, dir);
    static const char *const up[] = { "up", NULL }, *const down[] = { "down", NULL };
    rt->m_tun_up = metrics_series(fb, up);
    rt->m_tun_down = metrics_series(fb, down);
    rt->m_tun_dur = metrics_series(metrics_family(reg, "hscale_gateway_tunnel_duration_seconds",
        "Lifetime of closed tunnels, from the 101 to the close.", METRIC_HISTOGRAM, none), none);
    /* Client connections by lifecycle phase (gw_conn_phase), summed over
     * the workers' own counters when scraped. */
    static const char *const phase[] = { "phase", NULL };
    metric_family *fp = metrics_family(reg, "hscale_gateway_client_connections_by_phase",
        "Open client connections by phase: wait, proxy, tunnel, closing.", METRIC_GAUGE, phase);
    static gw_phase_gauge gauges[GC_NPHASES];
    for (int p = 0; p < GC_NPHASES; p++) {
        const char *lv[] = { gw_conn_phase_str(p), NULL };
        gauges[p] = (gw_phase_gauge){ rt, p };
        metrics_gauge_fn_set(metrics_series(fp, lv), phase_gauge, &gauges[p]);
    }
    /* Requests in the gateway by exchange phase (gw_ex_phase): where they
     * wait (queued, connecting, request = for the head, response). */
    metric_family *fx = metrics_family(reg, "hscale_gateway_exchanges_by_phase",
        "Requests in the gateway by phase: head, route, queued, cache_wait, connecting, request, "
        "response, "
        "tunnel.", METRIC_GAUGE, phase);
    static gw_phase_gauge xgauges[GX_NPHASES];
    for (int p = 0; p < GX_NPHASES; p++) {
        const char *lv[] = { gw_ex_phase_str(p), NULL };
        xgauges[p] = (gw_phase_gauge){ rt, p };
        metrics_gauge_fn_set(metrics_series(fx, lv), ex_phase_gauge, &xgauges[p]);
    }
}

static series_node *node_find(const char *key)
{
    for (series_node *n = nodes; n; n = n->next)
        if (strcmp(n->key, key) == 0)
            return n;
    return NULL;
}

gw_route_series *gw_metrics_route(gw_rt *rt, const char *route, const char *pool)
{
    static const char *const classes[6] = { "failed", "1xx", "2xx", "3xx", "4xx", "5xx" };
    char key[sizeof ((series_node *)0)->key];
    snprintf(key, sizeof key, "r\x1f%s\x1f%s", route, pool);
    pthread_mutex_lock(&nodes_lock);
    series_node *n = node_find(key);
    if (!n && (n = calloc(1, sizeof *n))) {
        snprintf(n->key, sizeof n->key, "%s", key);
        for (int i = 0; i < 6; i++) {
            const char *lv[] = { route, pool, classes[i], NULL };
            n->u.r.req[i] = metrics_series(rt->f_req, lv);
        }
        const char *lv[] = { route, pool, NULL };
        n->u.r.dur = metrics_series(rt->f_dur, lv);
        n->next = nodes;
        nodes = n;
    }
    pthread_mutex_unlock(&nodes_lock);
    return n ? &n->u.r : NULL;
}

gw_pool_series *gw_metrics_pool(gw_rt *rt, const char *pool)
{
    char key[sizeof ((series_node *)0)->key];
    snprintf(key, sizeof key, "p\x1f%s", pool);
    pthread_mutex_lock(&nodes_lock);
    series_node *n = node_find(key);
    if (!n && (n = calloc(1, sizeof *n))) {
        snprintf(n->key, sizeof n->key, "%s", key);
        const char *lv[] = { pool, NULL };
        n->u.p.upstream = metrics_series(rt->f_up, lv);
        n->u.p.retries = metrics_series(rt->f_retry, lv);
        n->u.p.ejections = metrics_series(rt->f_eject, lv);
        n->u.p.queued = metrics_series(rt->f_queued, lv);
        static const char *const res[3] = { "full", "resumed", "failed" };
        for (int k = 0; k < 3; k++) {
            const char *lr[] = { pool, res[k], NULL };
            n->u.p.tls_hs[k] = metrics_series(rt->f_utls, lr);
        }
        n->next = nodes;
        nodes = n;
    }
    pthread_mutex_unlock(&nodes_lock);
    return n ? &n->u.p : NULL;
}

/* Label values here are pool names (validated identifiers) and addresses,
 * neither of which can hold a quote, backslash or newline. */
static void member_line(buf *out, const char *name, const gw_pool *p, const gw_member *m,
                        const char *extra, double v)
{
    buf_printf(out, "%s{pool=\"%s\",backend=\"%s\"%s} %.17g\n", name, p->name, m->name,
               extra ? extra : "", v);
}

/* Per-backend values, read from the members' own atomics. */
static double m_inflight(const gw_member *m, uint64_t now)
{
    (void)now;
    return (double)atomic_load(&m->inflight);
}
static double m_up(const gw_member *m, uint64_t now)
{
    return gw_member_eligible(m, now) ? 1 : 0;
}
static double m_ejections(const gw_member *m, uint64_t now)
{
    (void)now;
    return (double)atomic_load(&m->ejections);
}
static double m_slow_ejections(const gw_member *m, uint64_t now)
{
    (void)now;
    return (double)atomic_load(&m->slow_ejections);
}
static double m_slow(const gw_member *m, uint64_t now)
{
    (void)now;
    return atomic_load(&m->slow) ? 1 : 0;
}

/* The cache's counters live in the store (shared by every worker). */
static void cache_render(gw_rt *rt, buf *out)
{
    if (!rt->cache)
        return;
    gw_cache_stats *st = gw_cstore_stats(rt->cache);
    uint64_t bytes, objects;
    gw_cstore_usage(rt->cache, &bytes, &objects);
    static const struct { const char *name, *help; size_t off; } ctr[] = {
        { "hits", "Requests answered from the cache (fresh, or stale where allowed).",
          offsetof(gw_cache_stats, hits) },
        { "misses", "Cacheable requests that went to the backend (uri or vary miss, or stale to revalidate).",
          offsetof(gw_cache_stats, misses) },
        { "stale", "Stale responses served (stale-while-revalidate, max-stale, stale-if-error).",
          offsetof(gw_cache_stats, stale) },
        { "revalidations", "Conditional requests sent to revalidate a stored response.",
          offsetof(gw_cache_stats, revalidations) },
        { "coalesced", "Requests parked behind another request's fetch of the same key.",
          offsetof(gw_cache_stats, coalesced) },
        { "stores", "Responses stored.", offsetof(gw_cache_stats, stores) },
        { "evictions", "Stored responses evicted to stay within cache_size.", offsetof(gw_cache_stats, evictions) },
        { "purged", "Stored responses removed by a purge or an unsafe method.", offsetof(gw_cache_stats, purged) },
        { "too_big", "Responses not stored for exceeding cache_max_object.", offsetof(gw_cache_stats, too_big) },
        { "uncacheable", "Responses the backend marked, or left, unstorable.", offsetof(gw_cache_stats, uncacheable) },
        { "renditions", "Compressed renditions kept with stored responses (made once, by the first hit that needed one).",
          offsetof(gw_cache_stats, renditions) },
    };
    for (size_t i = 0; i < sizeof ctr / sizeof ctr[0]; i++) {
        const _Atomic uint64_t *v = (const _Atomic uint64_t *)((const char *)st + ctr[i].off);
        buf_printf(out, "# HELP hscale_gateway_cache_%s_total %s\n# TYPE hscale_gateway_cache_%s_total counter\n"
                   "hscale_gateway_cache_%s_total %llu\n", ctr[i].name, ctr[i].help, ctr[i].name,
                   ctr[i].name, (unsigned long long)atomic_load(v));
    }
    buf_printf(out, "# HELP hscale_gateway_cache_bytes Bytes held by stored responses (cache_size bounds it).\n"
               "# TYPE hscale_gateway_cache_bytes gauge\nhscale_gateway_cache_bytes %llu\n"
               "# HELP hscale_gateway_cache_objects Stored responses (variants counted apart).\n"
               "# TYPE hscale_gateway_cache_objects gauge\nhscale_gateway_cache_objects %llu\n",
               (unsigned long long)bytes, (unsigned long long)objects);
}

void gw_metrics_render(gw_rt *rt, buf *out)
{
    metrics_render(rt->reg, out, true);
    cache_render(rt, out);
    /* Readers outside the workers hold the snapshot under the edit lock so
     * no publish retires it while it is being read. */
    pthread_mutex_lock(&rt->edit_lock);
    const gw_snap *s = gw_rcu_read(&rt->rcu);
    uint64_t now = ev_monotonic_us();
    static const char *const classes[6] = { "failed", "1xx", "2xx", "3xx", "4xx", "5xx" };
    buf_append_str(out, "# HELP hscale_gateway_backend_requests_total Responses from each backend "
                        "by status class (\"failed\": connect error, reset or timeout).\n"
                        "# TYPE hscale_gateway_backend_requests_total counter\n");
    for (size_t i = 0; i < s->npools; i++)
        for (uint32_t k = 0; k < s->pools[i].n; k++) {
            const gw_member *m = s->pools[i].members[k];
            for (int c = 0; c < 6; c++) {
                char extra[32];
                snprintf(extra, sizeof extra, ",code=\"%s\"", classes[c]);
                member_line(out, "hscale_gateway_backend_requests_total", &s->pools[i], m, extra,
                            (double)atomic_load(&m->by_class[c]));
            }
        }
    static const struct {
        const char *name, *type, *help;
        double (*value)(const gw_member *m, uint64_t now);
    } fams[] = {
        { "hscale_gateway_backend_in_flight", "gauge", "Requests in flight to each backend.", m_inflight },
        { "hscale_gateway_backend_up", "gauge",
          "1 when the backend takes traffic (ready, healthy, not ejected, not slow).", m_up },
        { "hscale_gateway_backend_ejections_total", "counter",
          "Times each backend was ejected by outlier detection.", m_ejections },
        { "hscale_gateway_backend_slow_ejections_total", "counter",
          "Times each backend held requests without answering while others answered, and was "
          "given no new requests until it answered.", m_slow_ejections },
        { "hscale_gateway_backend_slow", "gauge", "1 while the backend is ejected as slow.", m_slow },
    };
    for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fams[f].name, fams[f].help, fams[f].name,
                   fams[f].type);
        for (size_t i = 0; i < s->npools; i++)
            for (uint32_t k = 0; k < s->pools[i].n; k++)
                member_line(out, fams[f].name, &s->pools[i], s->pools[i].members[k], NULL,
                            fams[f].value(s->pools[i].members[k], now));
    }
    pthread_mutex_unlock(&rt->edit_lock);
}
