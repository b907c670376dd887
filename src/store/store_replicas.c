/* store_replicas.c -- nodes, and replica sets that change while the store
 * serves (config reload, the app's admin API).
 *
 * A shard's replicas are an array of node pointers under a rwlock held
 * only to copy or swap pointers (never across a query or a probe). Each
 * replica node is reference-counted: the array holds one reference, and a
 * query (st_replica_pick .. st_replica_put) or a probe holds another
 * while it uses the node. Removing a replica swaps it out of the array,
 * retires its pool (idle connections close now, busy ones when their
 * query returns them: in-flight queries finish, nothing new starts) and
 * drops the array's reference; whoever drops the last one closes the node
 * (its probe connection and pool) and logs that it drained. A replica kept
 * across a change (same URL) keeps its node, pool and health; an added one
 * is probed before it is published, so it takes reads at once when it is
 * healthy and within max_replica_lag. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "store/replicas_int.h"

st_node *st_replica_new(const char *url, const st_pool_cfg *pc, st_err *err)
{
    st_node *n = calloc(1, sizeof *n);
    if (!n) {
        st_fail(err, ST_ENOMEM, "out of memory");
        return NULL;
    }
    if (st_node_init(n, url, pc, true, err) < 0) {
        st_node_close(n);
        free(n);
        return NULL;
    }
    n->refs = 1;
    return n;
}

void st_replica_put(st_shard *sh, st_node *n)
{
    if (!n || atomic_fetch_sub(&n->refs, 1) != 1)
        return;
    if (n->retired) {
        st_pool_stats ps;
        st_pool_stats_get(n->pool, &ps);
        log_info("store: shard %s replica %s drained: its last query ended, %llu connection%s "
                 "closed", sh->name, n->url_safe, (unsigned long long)ps.closed,
                 ps.closed == 1 ? "" : "s");
    }
    st_node_close(n);
    free(n);
}

void st_replicas_init(st_shard *sh)
{
    /* Writers first: a change waits for readers of the moment, never for a
     * stream of them (readers hold the lock for a few pointer copies). */
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&sh->rep_lk, &a);
    pthread_rwlockattr_destroy(&a);
    pthread_mutex_init(&sh->rep_mu, NULL);
}

void st_replicas_free(st_shard *sh)
{
    for (size_t r = 0; r < sh->nreplicas; r++)
        st_replica_put(sh, sh->replicas[r]);
    sh->nreplicas = 0;
    pthread_rwlock_destroy(&sh->rep_lk);
    pthread_mutex_destroy(&sh->rep_mu);
}

size_t st_replicas_get(st_shard *sh, st_node **out)
{
    pthread_rwlock_rdlock(&sh->rep_lk);
    size_t n = sh->nreplicas;
    for (size_t i = 0; i < n; i++) {
        out[i] = sh->replicas[i];
        out[i]->refs++;
    }
    pthread_rwlock_unlock(&sh->rep_lk);
    return n;
}

st_node *st_replica_pick(st_store *s, st_shard *sh)
{
    if (!sh->nreplicas)      /* racy read: a hint; the locked pass decides */
        return NULL;
    unsigned start = atomic_fetch_add(&sh->rr, 1);
    st_node *best = NULL;
    pthread_rwlock_rdlock(&sh->rep_lk);
    size_t nr = sh->nreplicas;
    for (size_t k = 0; k < nr; k++) {
        st_node *n = sh->replicas[(start + k) % nr];
        if (!n->healthy || n->lag_us < 0 || (uint64_t)n->lag_us > s->max_lag)
            continue;
        if (!best || n->inflight < best->inflight)
            best = n;
    }
    if (best)
        best->refs++;
    pthread_rwlock_unlock(&sh->rep_lk);
    return best;
}

static int shard_by_name(st_store *s, const char *name, st_err *err)
{
    for (int i = 0; i < s->nshards; i++)
        if (name && !strcmp(s->shards[i].name, name))
            return i;
    return st_fail(err, ST_EINVAL, "no shard named '%s'", name ? name : "");
}

int st_store_set_replicas(st_store *s, const char *shard, const char *const *urls, size_t n,
                          st_err *err)
{
    int si = shard_by_name(s, shard, err);
    if (si < 0)
        return -1;
    if (n > ST_MAX_REPLICAS)
        return st_fail(err, ST_EINVAL, "shard %s: at most %d replicas, got %zu", shard,
                       ST_MAX_REPLICAS, n);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(urls[i], urls[j]))
                return st_fail(err, ST_EINVAL, "shard %s: replica '%s' is listed twice", shard,
                               urls[j]);
    st_shard *sh = &s->shards[si];
    pthread_mutex_lock(&sh->rep_mu);
    /* New replicas get the pool settings of the shard's primary. */
    const st_pool_cfg *pc = st_pool_cfg_of(sh->primary.pool);
    st_node *old[ST_MAX_REPLICAS] = { NULL }, *next[ST_MAX_REPLICAS] = { NULL };
    bool kept[ST_MAX_REPLICAS] = { false }, fresh[ST_MAX_REPLICAS] = { false };
    size_t nold = sh->nreplicas;     /* only changed under rep_mu, which we hold */
    memcpy(old, sh->replicas, nold * sizeof *old);
    int rc = 0;
    size_t made = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = NULL;
        for (size_t j = 0; j < nold && !next[i]; j++) {
            if (!kept[j] && !strcmp(st_pool_url(old[j]->pool), urls[i])) {
                next[i] = old[j];
                kept[j] = true;
            }
        }
        if (!next[i]) {
            if (!(next[i] = st_replica_new(urls[i], pc, err))) {
                char what[96];
                snprintf(what, sizeof what, "shard %s replica %zu", shard, i);
                st_err_prefix(err, what);
                rc = -1;
                break;
            }
            fresh[i] = true;
            made++;
        }
    }
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            if (fresh[i] && next[i])
                st_replica_put(sh, next[i]);
        pthread_mutex_unlock(&sh->rep_mu);
        return -1;
    }
    /* Probed before publishing: a healthy new replica takes reads at once. */
    for (size_t i = 0; i < n; i++)
        if (fresh[i])
            st_probe_node(s, sh, next[i]);
    pthread_rwlock_wrlock(&sh->rep_lk);
    memcpy(sh->replicas, next, n * sizeof *next);
    sh->nreplicas = n;
    pthread_rwlock_unlock(&sh->rep_lk);
    /* Series for the new set before the removed nodes can be freed: the
     * old gauges point at them. */
    if (s->metrics && s->metrics_free) {
        s->metrics_free(s);
        st_store_metrics_register(s);
    }
    size_t removed = 0;
    for (size_t j = 0; j < nold; j++) {
        if (kept[j])
            continue;
        removed++;
        old[j]->retired = true;
        st_pool_stats ps;
        st_pool_stats_get(old[j]->pool, &ps);
        log_info("store: shard %s replica %s removed: no new reads; %d in-flight quer%s finish, "
                 "then its connections close", shard, old[j]->url_safe, ps.busy,
                 ps.busy == 1 ? "y" : "ies");
        st_pool_retire(old[j]->pool);
        st_replica_put(sh, old[j]);
    }
    for (size_t i = 0; i < n; i++)
        if (fresh[i])
            log_info("store: shard %s replica %s added (%s)", shard, next[i]->url_safe,
                     next[i]->healthy ? "healthy" : "not answering yet: reads wait for a probe");
    pthread_mutex_unlock(&sh->rep_mu);
    if (made || removed)
        log_info("store: shard %s now has %zu replica%s (%zu added, %zu removed)", shard, n,
                 n == 1 ? "" : "s", made, removed);
    return 0;
}

int st_store_replicas_json(st_store *s, buf *out)
{
    buf_append_str(out, "{\"shards\":[");
    for (int i = 0; i < s->nshards; i++) {
        st_shard *sh = &s->shards[i];
        st_node *nodes[ST_MAX_REPLICAS];
        size_t n = st_replicas_get(sh, nodes);
        buf_printf(out, "%s{\"name\":\"%s\",\"replicas\":[", i ? "," : "", sh->name);
        for (size_t r = 0; r < n; r++) {
            st_pool_stats ps;
            st_pool_stats_get(nodes[r]->pool, &ps);
            buf_printf(out, "%s{\"url\":\"%s\",\"healthy\":%s,\"lag_seconds\":%.3f,"
                       "\"connections\":%d,\"busy\":%d}", r ? "," : "", nodes[r]->url_safe,
                       nodes[r]->healthy ? "true" : "false",
                       nodes[r]->lag_us < 0 ? -1.0 : (double)nodes[r]->lag_us / 1e6,
                       ps.total, ps.busy);
            st_replica_put(sh, nodes[r]);
        }
        buf_append_str(out, "]}");
    }
    return buf_append_str(out, "]}");
}
