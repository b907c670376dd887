/* store_stats.c -- per-shard statistics: query counts and latency, pool
 * usage, replica health and lag, rows per table and database size.
 *
 * The latency histogram is one flat hist per shard under a mutex held for
 * one hist_record (no allocation); readers copy it. Row counts and sizes
 * cost queries, so they are only gathered on request (st_store_stats), for
 * the control plane's shard API, never per scrape. */
#include <stdio.h>
#include <string.h>

#include "store/replicas_int.h"

const char *const st_table_names[ST_MAX_TABLES] = { "users", "facilities", "surgeons", "cases" };

void st_stats_record(st_store *s, st_shard *sh, uint64_t us, bool ok)
{
    if (s->observe && sh->m_latency)
        s->observe(sh->m_latency, us);
    pthread_mutex_lock(&sh->stat_mu);
    hist_record(sh->latency, us);
    sh->queries++;
    if (!ok)
        sh->errors++;
    pthread_mutex_unlock(&sh->stat_mu);
}

static void node_stats(const st_node *n, st_node_stats *out)
{
    snprintf(out->url, sizeof out->url, "%s", n->url_safe);
    out->healthy = n->healthy;
    out->lag_s = n->lag_us < 0 ? -1 : (double)n->lag_us / 1e6;
    st_pool_stats_get(n->pool, &out->pool);
}

void st_store_stats_fast(st_store *s, int shard, st_shard_stats *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < ST_MAX_TABLES; i++)
        out->rows[i] = -1;
    out->size_bytes = -1;
    if (shard < 0 || shard >= s->nshards)
        return;
    st_shard *sh = &s->shards[shard];
    snprintf(out->name, sizeof out->name, "%s", sh->name);
    node_stats(&sh->primary, &out->primary);
    st_node *reps[ST_MAX_REPLICAS];
    size_t nr = st_replicas_get(sh, reps);
    for (size_t r = 0; r < nr; r++) {
        if (r < sizeof out->replicas / sizeof out->replicas[0]) {
            node_stats(reps[r], &out->replicas[r]);
            out->nreplicas++;
        }
        st_replica_put(sh, reps[r]);
    }
    pthread_mutex_lock(&sh->stat_mu);
    out->latency = *sh->latency;
    out->queries = sh->queries;
    out->errors = sh->errors;
    pthread_mutex_unlock(&sh->stat_mu);
}

int st_store_stats(st_store *s, int shard, st_shard_stats *out, st_err *err)
{
    st_store_stats_fast(s, shard, out);
    if (shard < 0 || shard >= s->nshards)
        return st_fail(err, ST_EINVAL, "no shard %d (have %d)", shard, s->nshards);
    st_res *r = NULL;
    for (size_t i = 0; i < ST_MAX_TABLES; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", st_table_names[i]);
        if (st_query_shard(s, shard, ST_WRITE, sql, NULL, 0, &r, err) < 0)
            return -1;
        out->rows[i] = st_res_int(r, 0, 0);
        st_res_free(r);
    }
    const char *size_sql = s->shards[shard].primary.drv == &st_driver_pg
        ? "SELECT pg_database_size(current_database())"
        : "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()";
    if (st_query_shard(s, shard, ST_WRITE, size_sql, NULL, 0, &r, err) < 0)
        return -1;
    out->size_bytes = st_res_int(r, 0, 0);
    st_res_free(r);
    return 0;
}

static void json_node(buf *out, const st_node_stats *n, const char *role)
{
    buf_printf(out, "{\"role\":\"%s\",\"url\":\"", role);
    for (const char *p = n->url; *p; p++) {   /* urls are ASCII; escape the JSON specials */
        if (*p == '"' || *p == '\\')
            buf_append(out, "\\", 1);
        if ((unsigned char)*p >= 0x20)
            buf_append(out, p, 1);
    }
    buf_printf(out, "\",\"healthy\":%s,", n->healthy ? "true" : "false");
    if (n->lag_s < 0)
        buf_append_str(out, "\"lag_seconds\":null,");
    else
        buf_printf(out, "\"lag_seconds\":%.3f,", n->lag_s);
    buf_printf(out, "\"pool\":{\"idle\":%d,\"busy\":%d,\"total\":%d,\"waiting\":%d,\"max\":%d,"
               "\"timeouts\":%llu,\"opened\":%llu,\"ping_failures\":%llu}}",
               n->pool.idle, n->pool.busy, n->pool.total, n->pool.waiting, n->pool.max,
               (unsigned long long)n->pool.timeouts, (unsigned long long)n->pool.opened,
               (unsigned long long)n->pool.ping_failures);
}

int st_store_stats_json(st_store *s, bool full, buf *out, st_err *err)
{
    static st_shard_stats st;    /* ~11 KiB: keep it off worker stacks */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    int rc = 0;
    buf_append_str(out, "[");
    int ns = s->nshards;
    for (int i = 0; i < ns && rc == 0; i++) {
        if (full)
            rc = st_store_stats(s, i, &st, err);
        else
            st_store_stats_fast(s, i, &st);
        if (rc < 0)
            break;
        static const char *const strategies[] = { "hash", "range", "directory" };
        buf_printf(out, "%s{\"name\":\"%s\",\"weight\":%g,\"strategy\":\"%s\","
                   "\"map_version\":%lld,\"max_replica_lag_seconds\":%.3f,"
                   "\"queries\":%llu,\"errors\":%llu,"
                   "\"latency_seconds\":{\"p50\":%.6f,\"p99\":%.6f,\"mean\":%.6f},",
                   i ? "," : "", st.name, s->weights[i], strategies[s->strategy % 3],
                   (long long)s->map_version, (double)s->max_lag / 1e6,
                   (unsigned long long)st.queries,
                   (unsigned long long)st.errors, hist_quantile(&st.latency, 0.5) / 1e6,
                   hist_quantile(&st.latency, 0.99) / 1e6, hist_mean(&st.latency) / 1e6);
        if (full) {
            buf_append_str(out, "\"rows\":{");
            for (size_t t = 0; t < ST_MAX_TABLES; t++)
                buf_printf(out, "%s\"%s\":%lld", t ? "," : "", st_table_names[t],
                           (long long)st.rows[t]);
            buf_printf(out, "},\"size_bytes\":%lld,", (long long)st.size_bytes);
        }
        buf_append_str(out, "\"nodes\":[");
        json_node(out, &st.primary, "primary");
        for (size_t r = 0; r < st.nreplicas; r++) {
            buf_append_str(out, ",");
            json_node(out, &st.replicas[r], "replica");
        }
        buf_append_str(out, "]}");
    }
    buf_append_str(out, "]");
    pthread_mutex_unlock(&mu);
    return rc;
}
