/* store.c -- the store: shards of primary + replicas, each a pool, routed
 * by user, with read-your-writes and parallel fan-out.
 *
 * Read routing: a user who wrote within read_your_writes reads from the
 * primary; otherwise the least busy healthy replica (round-robin among
 * ties) whose last probed lag is within max_replica_lag; otherwise the
 * primary. A read that fails on a replica because the replica is gone is
 * retried on the primary and the replica is marked down until the probe
 * sees it again, so a dead replica costs one failed attempt, not errors.
 * Writes never retry: after a lost connection the outcome is unknown, and
 * the caller answers 503.
 *
 * The probe thread keeps one private connection per node (not from the
 * pools, so an exhausted pool cannot blind it) and every replica_check
 * measures health and lag. Write times for read-your-writes live in a
 * fixed-size, 4-way set-associative table (bounded memory): a new entry
 * replaces the oldest in its set, which is past its window first. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "store/replicas_int.h"

#define RYW_SETS  RYW_SETS_N
#define RYW_WAYS  RYW_WAYS_N
#define RYW_LOCKS RYW_LOCKS_N

/* ---- read-your-writes ---------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

void st_note_write(st_store *s, int64_t user_id)
{
    if (!s->ryw_window || !s->ryw)
        return;
    size_t set = mix64((uint64_t)user_id) % RYW_SETS;
    st_ryw *e = &s->ryw[set * RYW_WAYS];
    uint64_t now = st_now_us();
    pthread_mutex_lock(&s->ryw_locks[set % RYW_LOCKS]);
    size_t pick = 0;
    for (size_t i = 0; i < RYW_WAYS; i++) {
        if (e[i].at && e[i].user == user_id) {
            pick = i;
            break;
        }
        if (e[i].at < e[pick].at)
            pick = i;
    }
    e[pick].user = user_id;
    e[pick].at = now;
    pthread_mutex_unlock(&s->ryw_locks[set % RYW_LOCKS]);
}

static bool recent_writer(st_store *s, int64_t user_id)
{
    if (!s->ryw_window || !s->ryw)
        return false;
    size_t set = mix64((uint64_t)user_id) % RYW_SETS;
    const st_ryw *e = &s->ryw[set * RYW_WAYS];
    uint64_t now = st_now_us();
    bool recent = false;
    pthread_mutex_lock(&s->ryw_locks[set % RYW_LOCKS]);
    for (size_t i = 0; i < RYW_WAYS; i++)
        if (e[i].at && e[i].user == user_id && now - e[i].at < s->ryw_window)
            recent = true;
    pthread_mutex_unlock(&s->ryw_locks[set % RYW_LOCKS]);
    return recent;
}

/* ---- node selection and execution --------------------------------------- */

/* The replica set may change under us (store_replicas.c): the replica
 * comes with a reference, given back by st_replica_put at the end of
 * shard_exec, so a replica removed meanwhile lives until we are done. */
static st_node *pick_replica(st_store *s, st_shard *sh)
{
    return st_replica_pick(s, sh);
}

/* The connection carries this instance's map version to the fence
 * triggers; it is set again only when the map changed since. */
static int conn_sync_version(st_store *s, st_conn *c, st_err *err)
{
    int64_t v = s->map_version;
    if (c->map_version == v || !c->drv->set_version)
        return 0;
    if (c->drv->set_version(c->h, v, err) < 0) {
        c->broken = err && err->code == ST_EUNAVAIL;
        return -1;
    }
    c->map_version = v;
    return 0;
}

static int node_exec(st_store *s, st_node *n, const char *sql, const st_val *p, size_t np,
                     st_res **out, st_err *err)
{
    st_conn *c = st_pool_acquire(n->pool, err);
    if (!c)
        return -1;
    if (!n->is_replica && conn_sync_version(s, c, err) < 0) {
        st_pool_release(n->pool, c, false);
        return -1;
    }
    n->inflight++;
    int rc = st_conn_exec(c, sql, p, np, out, err);
    n->inflight--;
    st_pool_release(n->pool, c, false);
    return rc;
}

/* The primary, unless the probe found it down: then fail at once rather
 * than make every request wait for a connect timeout. */
static int primary_exec(st_store *s, st_shard *sh, const char *sql, const st_val *p, size_t np,
                        st_res **out, st_err *err)
{
    if (!sh->primary.healthy)
        return st_fail(err, ST_EUNAVAIL, "shard %s: primary %s is down", sh->name,
                       sh->primary.url_safe);
    return node_exec(s, &sh->primary, sql, p, np, out, err);
}

static int shard_exec(st_store *s, st_shard *sh, st_intent intent, bool primary_only,
                      const char *sql, const st_val *p, size_t np, st_res **out, st_err *err)
{
    st_err local;
    if (!err)
        err = &local;
    uint64_t t0 = st_now_us();
    int rc;
    /* A read pinned to the primary (read-your-writes) still prefers a
     * replica to an error when the primary is down. */
    if (intent == ST_READ && primary_only && !sh->primary.healthy)
        primary_only = false;
    st_node *rep = intent == ST_READ && !primary_only ? pick_replica(s, sh) : NULL;
    if (rep) {
        rc = node_exec(s, rep, sql, p, np, out, err);
        if (rc < 0 && (err->code == ST_EUNAVAIL || err->code == ST_ETIMEOUT)) {
            if (err->code == ST_EUNAVAIL) {
                rep->healthy = false;
                st_pool_drop_idle(rep->pool);
            }
            log_warn("store: shard %s replica %s: %s; reading from the primary",
                     sh->name, rep->url_safe, err->msg);
            rc = primary_exec(s, sh, sql, p, np, out, err);
        }
    } else {
        rc = primary_exec(s, sh, sql, p, np, out, err);
        /* A read on a connection the server dropped (restart) is safe to
         * repeat once on a fresh one; a write's outcome is unknown. */
        if (rc < 0 && err->code == ST_EUNAVAIL && sh->primary.healthy) {
            st_pool_drop_idle(sh->primary.pool);
            if (intent == ST_READ)
                rc = primary_exec(s, sh, sql, p, np, out, err);
        }
        /* The primary is gone before the probe noticed: a replica, even a
         * little behind, beats an error for a read. */
        if (rc < 0 && intent == ST_READ && err->code == ST_EUNAVAIL &&
            (rep = pick_replica(s, sh)) != NULL)
            rc = node_exec(s, rep, sql, p, np, out, err);
    }
    st_replica_put(sh, rep);      /* the one replica either branch picked, if any */
    st_stats_record(s, sh, st_now_us() - t0, rc == 0);
    return rc;
}

static st_shard *user_shard(st_store *s, int64_t user_id, st_err *err)
{
    int i = st_router_shard(s->router, user_id);
    if (i < 0 || i >= s->nshards) {
        st_fail(err, ST_EINVAL, "user %lld is not placed on any shard "
                "(no range or directory entry and no default shard)", (long long)user_id);
        return NULL;
    }
    return &s->shards[i];
}

/* A write the shard fenced (this map is older than the shard's): adopt
 * the newest map and try again on the user's owner under it. While a
 * cutover is under way the map is not published yet: wait a little and
 * retry, for at most fence_wait (the pause is meant to last well under a
 * second). A fenced write changed nothing, so repeating it is safe. */
static bool fenced_retry(st_store *s, uint64_t deadline, int attempt)
{
    if (st_now_us() >= deadline)
        return false;
    if (st_store_map_refresh(s, NULL) != 1) {
        struct timespec ts = { 0, (attempt < 5 ? 5 : 20) * 1000000L };
        nanosleep(&ts, NULL);
    }
    return true;
}

/* A write that matched no row fires no row trigger, so the fence cannot
 * refuse it: an UPDATE or DELETE of a user moved away (and cleaned up)
 * would quietly find nothing on its old shard. Such a result is checked
 * against the shard's min_version: if this map is older, it is treated as
 * fenced. Cleanup only runs after min_version is raised, so a stale
 * "nothing there" cannot slip through; redoing a write that changed
 * nothing is harmless. */
static bool empty_write_is_stale(st_store *s, st_shard *sh, const st_res *r)
{
    if (!r || st_res_rows(r) || st_res_changes(r))
        return false;
    st_res *f = NULL;
    if (primary_exec(s, sh, "SELECT min_version FROM hscale_fence WHERE id = 1", NULL, 0, &f,
                     NULL) < 0)
        return false;
    bool stale = st_res_rows(f) && st_res_int(f, 0, 0) > s->map_version;
    st_res_free(f);
    return stale;
}

int st_query(st_store *s, int64_t user_id, st_intent intent, const char *sql,
             const st_val *params, size_t n, st_res **out, st_err *err)
{
    st_err local;
    if (out)
        *out = NULL;
    if (!err)
        err = &local;
    uint64_t deadline = 0;
    for (int attempt = 0; ; attempt++) {
        st_shard *sh = user_shard(s, user_id, err);
        if (!sh)
            return -1;
        /* Just after a map change a moved user's rows may not have reached
         * the new owner's replicas yet: read primaries for max_lag (at
         * most 30 s). */
        uint64_t since = s->map_changed_us;
        bool primary = intent == ST_WRITE || recent_writer(s, user_id) ||
                       (since && st_now_us() - since < (s->max_lag < 30000000u ? s->max_lag
                                                                             : 30000000u));
        int rc = shard_exec(s, sh, intent, primary, sql, params, n, out, err);
        if (intent == ST_WRITE)
            st_note_write(s, user_id);   /* also on failure: the outcome may be unknown */
        if (rc == 0 && intent == ST_WRITE && out && empty_write_is_stale(s, sh, *out)) {
            st_res_free(*out);
            *out = NULL;
            rc = st_fail(err, ST_EFENCED, "shard %s: nothing matched under a stale shard map"
                         " (v%lld)", sh->name, (long long)s->map_version);
        }
        if (rc == 0 || err->code != ST_EFENCED)
            return rc;
        if (!deadline)
            deadline = st_now_us() + s->fence_wait;
        if (!fenced_retry(s, deadline, attempt))
            return rc;
    }
}

int st_query_shard(st_store *s, int shard, st_intent intent, const char *sql,
                   const st_val *params, size_t n, st_res **out, st_err *err)
{
    if (out)
        *out = NULL;
    if (shard < 0 || shard >= s->nshards)
        return st_fail(err, ST_EINVAL, "no shard %d (have %d)", shard, s->nshards);
    return shard_exec(s, &s->shards[shard], intent, false, sql, params, n, out, err);
}

typedef struct fan_job {
    st_store     *s;
    int           shard;
    st_intent     intent;
    const char   *sql;
    const st_val *p;
    size_t        np;
    st_res       *res;
    st_err        err;
    int           rc;
} fan_job;

static void *fan_run(void *arg)
{
    fan_job *j = arg;
    j->rc = shard_exec(j->s, &j->s->shards[j->shard], j->intent, false, j->sql, j->p, j->np,
                       &j->res, &j->err);
    return NULL;
}

int st_query_all(st_store *s, st_intent intent, const char *sql,
                 const st_val *params, size_t n, st_res **out, st_err *err)
{
    if (out)
        *out = NULL;
    int ns = s->nshards;    /* a shard added meanwhile joins the next call */
    if (ns == 1)
        return shard_exec(s, &s->shards[0], intent, false, sql, params, n, out, err);
    fan_job *jobs = calloc((size_t)ns, sizeof *jobs);
    pthread_t *th = calloc((size_t)ns, sizeof *th);
    bool *started = calloc((size_t)ns, sizeof *started);
    if (!jobs || !th || !started) {
        free(jobs);
        free(th);
        free(started);
        return st_fail(err, ST_ENOMEM, "out of memory");
    }
    for (int i = 0; i < ns; i++) {
        jobs[i] = (fan_job){ s, i, intent, sql, params, n, NULL, { 0 }, 0 };
        /* Shard 0 runs on this thread; a failed spawn runs inline too. */
        started[i] = i > 0 && pthread_create(&th[i], NULL, fan_run, &jobs[i]) == 0;
    }
    for (int i = 0; i < ns; i++)
        if (!started[i])
            fan_run(&jobs[i]);
    int rc = 0;
    st_res *merged = NULL;
    for (int i = 0; i < ns; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        if (jobs[i].rc < 0 && rc == 0) {
            rc = -1;
            if (err) {
                char what[80];
                *err = jobs[i].err;
                snprintf(what, sizeof what, "shard %s", s->shards[i].name);
                st_err_prefix(err, what);
            }
        }
        if (rc == 0 && jobs[i].res) {
            if (!merged) {
                merged = jobs[i].res;
                jobs[i].res = NULL;
            } else if (st_res_append(merged, jobs[i].res) < 0) {
                rc = st_fail(err, ST_EQUERY, "shard %s: results do not have the same columns",
                             s->shards[i].name);
            }
        }
        st_res_free(jobs[i].res);
    }
    free(jobs);
    free(th);
    free(started);
    if (rc < 0 || !out)
        st_res_free(merged);
    else
        *out = merged;
    return rc;
}

/* ---- transactions -------------------------------------------------------- */

struct st_tx {
    st_store *s;
    st_shard *sh;
    st_conn  *c;
    int64_t   user;
    bool      failed;
};

int st_tx_begin(st_store *s, int64_t user_id, st_tx **out, st_err *err)
{
    *out = NULL;
    st_shard *sh = user_shard(s, user_id, err);
    if (!sh)
        return -1;
    st_tx *tx = calloc(1, sizeof *tx);
    if (!tx)
        return st_fail(err, ST_ENOMEM, "out of memory");
    tx->s = s;
    tx->sh = sh;
    tx->user = user_id;
    if (!sh->primary.healthy) {
        free(tx);
        return st_fail(err, ST_EUNAVAIL, "shard %s: primary %s is down", sh->name,
                       sh->primary.url_safe);
    }
    tx->c = st_pool_acquire(sh->primary.pool, err);
    if (!tx->c) {
        free(tx);
        return -1;
    }
    /* A connection dropped while idle fails at BEGIN, before anything was
     * written: one retry on a fresh connection is safe. */
    /* SQLite: take the write lock up front. A deferred transaction that
     * reads first and writes later fails with BUSY_SNAPSHOT, without
     * waiting, when another connection committed in between. */
    const char *begin = sh->primary.drv == &st_driver_sqlite ? "BEGIN IMMEDIATE" : "BEGIN";
    for (int attempt = 0; ; attempt++) {
        if (st_conn_exec(tx->c, begin, NULL, 0, NULL, err) == 0)
            break;
        st_pool_release(sh->primary.pool, tx->c, true);
        tx->c = attempt == 0 && err && err->code == ST_EUNAVAIL
                ? st_pool_acquire(sh->primary.pool, err) : NULL;
        if (!tx->c) {
            free(tx);
            return -1;
        }
    }
    if (conn_sync_version(s, tx->c, err) < 0) {
        st_conn_exec(tx->c, "ROLLBACK", NULL, 0, NULL, NULL);
        st_pool_release(sh->primary.pool, tx->c, true);
        free(tx);
        return -1;
    }
    *out = tx;
    return 0;
}

int st_tx_exec(st_tx *tx, const char *sql, const st_val *params, size_t n,
               st_res **out, st_err *err)
{
    if (out)
        *out = NULL;
    if (tx->failed)
        return st_fail(err, ST_EINVAL, "transaction already failed; roll it back");
    uint64_t t0 = st_now_us();
    int rc = st_conn_exec(tx->c, sql, params, n, out, err);
    st_stats_record(tx->s, tx->sh, st_now_us() - t0, rc == 0);
    if (rc < 0)
        tx->failed = true;
    return rc;
}

static void tx_end(st_tx *tx, bool discard)
{
    st_pool_release(tx->sh->primary.pool, tx->c, discard);
    free(tx);
}

int st_tx_commit(st_tx *tx, st_err *err)
{
    st_note_write(tx->s, tx->user);
    if (tx->failed) {
        st_conn_exec(tx->c, "ROLLBACK", NULL, 0, NULL, NULL);
        tx_end(tx, false);
        return st_fail(err, ST_EINVAL, "transaction had a failed statement; rolled back");
    }
    int rc = st_conn_exec(tx->c, "COMMIT", NULL, 0, NULL, err);
    if (rc < 0)
        st_conn_exec(tx->c, "ROLLBACK", NULL, 0, NULL, NULL);
    tx_end(tx, rc < 0);
    return rc;
}

void st_tx_rollback(st_tx *tx)
{
    if (!tx)
        return;
    bool ok = st_conn_exec(tx->c, "ROLLBACK", NULL, 0, NULL, NULL) == 0;
    tx_end(tx, !ok);
}

/* ---- ids ----------------------------------------------------------------- */

/* seconds since 2024 (32 bits) | counter (13 bits) | instance tag (8 bits):
 * 53 bits. The counter is the low part of a monotonic "ticks" value that
 * never goes back and borrows from the next second under bursts. */
int64_t st_id_next(st_store *s)
{
    uint64_t now = ((uint64_t)time(NULL) - 1704067200u) << 13;
    uint64_t last = atomic_load(&s->id_ticks), next;
    do {
        next = last + 1 > now ? last + 1 : now;
    } while (!atomic_compare_exchange_weak(&s->id_ticks, &last, next));
    return (int64_t)(((next & ((1ull << 45) - 1)) << 8) | s->id_tag);
}

/* ---- accessors ------------------------------------------------------------ */

int st_store_nshards(const st_store *s) { return s->nshards; }
const char *st_store_shard_name(const st_store *s, int shard)
{
    return shard >= 0 && shard < s->nshards ? s->shards[shard].name : "";
}
const char *st_store_driver_name(const st_store *s)
{
    return s->nshards ? st_driver_name(s->shards[0].primary.drv) : "";
}
int st_shard_of(st_store *s, int64_t user_id) { return st_router_shard(s->router, user_id); }
st_router *st_store_router(st_store *s) { return s->router; }
st_cache *st_store_cache(st_store *s) { return s->cache; }
const st_cache_cfg *st_store_cache_cfg(const st_store *s) { return &s->cache_cfg; }

int st_store_ping(st_store *s, st_err *err)
{
    for (int i = 0; i < s->nshards; i++) {
        st_shard *sh = &s->shards[i];
        st_conn *c = st_pool_acquire(sh->primary.pool, err);
        int rc = c ? st_conn_exec(c, "SELECT 1", NULL, 0, NULL, err) : -1;
        if (c && rc < 0 && c->broken) {    /* maybe just a stale connection */
            st_pool_release(sh->primary.pool, c, true);
            c = st_pool_acquire(sh->primary.pool, err);
            rc = c ? st_conn_exec(c, "SELECT 1", NULL, 0, NULL, err) : -1;
        }
        if (c)
            st_pool_release(sh->primary.pool, c, false);
        sh->primary.healthy = rc == 0;
        if (rc < 0) {
            char what[80];
            snprintf(what, sizeof what, "shard %s primary", sh->name);
            st_err_prefix(err, what);
            return -1;
        }
    }
    return 0;
}
