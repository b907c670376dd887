/* store_open.c -- building a store from its config, the probe thread, and
 * tearing it down.
 *
 * Open never fails because a database is down: pools connect lazily, a
 * primary that cannot be migrated now is migrated by the probe thread when
 * it answers, and until then its queries fail with ST_EUNAVAIL (503). Open
 * does fail on a config error (unknown shard name, bad range), naming it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "http/server.h"
#include "store/replicas_int.h"

#define ST_DEFAULT_DIR "./hscale-data"
#define ST_DIR_RELOAD_PROBES 10   /* reread the directory table every 10 probes (10 s) */

typedef struct shard_need { bool migrate, migrated; } shard_need;

static int node_init(st_node *n, const char *url, const st_pool_cfg *pc, bool replica,
                     st_err *err)
{
    n->drv = st_driver_for_url(url);
    if (!n->drv)
        return st_fail(err, ST_EINVAL, "unknown database url '%s' (expected sqlite:PATH "
                       "or postgresql://...)", url);
    if (replica && n->drv == &st_driver_sqlite)
        return st_fail(err, ST_EINVAL, "replica '%s': SQLite has no replication; replicas "
                       "must be postgresql:// standbys", url);
    st_url_redact(url, n->url_safe, sizeof n->url_safe);
    n->pool = st_pool_new(n->drv, url, pc, err);
    if (!n->pool)
        return -1;
    n->is_replica = replica;
    n->healthy = !replica;      /* replicas earn traffic by passing a probe */
    n->lag_us = replica ? -1 : 0;
    return 0;
}

static void node_free(st_node *n)
{
    if (n->probe) {
        n->probe->drv->close(n->probe->h);
        free(n->probe);
        n->probe = NULL;
    }
    st_pool_free(n->pool);
    n->pool = NULL;
}

static int shard_index(const st_store *s, const char *name, const char *what, st_err *err)
{
    for (int i = 0; i < s->nshards; i++)
        if (name && !strcmp(s->shards[i].name, name))
            return i;
    return st_fail(err, ST_EINVAL, "%s: no shard named '%s'", what, name ? name : "");
}

static int parse_i64(const char *text, int64_t *out, const char *what, st_err *err)
{
    char *end;
    if (!text || !*text)
        return st_fail(err, ST_EINVAL, "%s: expected an integer user_id, got nothing", what);
    long long v = strtoll(text, &end, 10);
    if (*end)
        return st_fail(err, ST_EINVAL, "%s: expected an integer user_id, got '%s'", what, text);
    *out = v;
    return 0;
}

/* Rows of shard 0's shard_directory into the router. A shard 0 that is
 * down leaves the config entries and the default shard in charge. */
void st_store_load_directory(st_store *s)
{
    st_res *r = NULL;
    st_err err;
    if (st_query_shard(s, 0, ST_WRITE, "SELECT user_id, shard FROM shard_directory",
                       NULL, 0, &r, &err) < 0) {
        log_warn("store: directory table not loaded: %s", err.msg);
        return;
    }
    size_t bad = 0;
    for (size_t i = 0; i < st_res_rows(r); i++) {
        int sh = shard_index(s, st_res_text(r, i, 1, NULL), "directory", NULL);
        if (sh < 0 || st_router_dir_set(s->router, st_res_int(r, i, 0), sh, NULL) < 0)
            bad++;
    }
    if (bad)
        log_warn("store: %zu directory rows name unknown shards; their users go to the "
                 "default shard", bad);
    st_res_free(r);
}

int st_store_dir_assign(st_store *s, int64_t user_id, const char *shard, st_err *err)
{
    int sh = shard_index(s, shard, "directory", err);
    if (sh < 0)
        return -1;
    st_val p[2] = { st_int(user_id), st_text(shard) };
    if (st_query_shard(s, 0, ST_WRITE, "INSERT INTO shard_directory (user_id, shard) VALUES (?, ?)"
                       " ON CONFLICT (user_id) DO UPDATE SET shard = excluded.shard",
                       p, 2, NULL, err) < 0)
        return -1;
    return st_router_dir_set(s->router, user_id, sh, err);
}

static int build_router(st_store *s, const st_config *cfg, st_err *err)
{
    s->router = st_router_new((st_route_kind)cfg->strategy);
    if (!s->router)
        return st_fail(err, ST_ENOMEM, "out of memory");
    for (int i = 0; i < s->nshards; i++) {
        double w = i < (int)cfg->nshards ? cfg->shards[i].weight : 1;
        if (st_router_add_shard(s->router, s->shards[i].name, w, err) < 0)
            return -1;
    }
    int def = 0;
    if (cfg->default_shard && *cfg->default_shard &&
        (def = shard_index(s, cfg->default_shard, "store.default_shard", err)) < 0)
        return -1;
    st_router_set_default(s->router, cfg->strategy == ST_ROUTE_RANGE &&
                          !(cfg->default_shard && *cfg->default_shard) ? -1 : def);
    for (size_t i = 0; i < cfg->nranges; i++) {
        const st_range_cfg *rc = &cfg->ranges[i];
        char what[48];
        snprintf(what, sizeof what, "store.ranges[%zu]", i);
        int64_t lo, hi = INT64_MAX;
        int sh = shard_index(s, rc->shard, what, err);
        if (sh < 0 || parse_i64(rc->from, &lo, what, err) < 0 ||
            (rc->to && *rc->to && parse_i64(rc->to, &hi, what, err) < 0))
            return -1;
        if (st_router_add_range(s->router, lo, hi, sh, err) < 0) {
            st_err_prefix(err, what);
            return -1;
        }
    }
    for (size_t i = 0; i < cfg->ndirectory; i++) {
        char what[48];
        snprintf(what, sizeof what, "store.directory[%zu]", i);
        int64_t user;
        int sh = shard_index(s, cfg->directory[i].shard, what, err);
        if (sh < 0 || parse_i64(cfg->directory[i].user, &user, what, err) < 0 ||
            st_router_dir_set(s->router, user, sh, err) < 0)
            return -1;
    }
    return 0;
}

static int migrate_on(st_conn *c, const char *shard, st_err *err)
{
    if (st_schema_migrate(c, err) < 0) {
        log_warn("store: shard %s: migration failed: %s", shard, err->msg);
        return -1;
    }
    return 0;
}

/* One probe of one node over its private connection. */
static void probe_node(st_store *s, st_shard *sh, st_node *n)
{
    st_err err = { 0 };
    if (!n->probe) {
        st_conn *c = calloc(1, sizeof *c);
        if (!c)
            return;
        if (n->drv->open(st_pool_url(n->pool), &c->h, &err) < 0) {
            free(c);
            if (n->healthy)
                log_warn("store: shard %s %s %s is down: %s", sh->name,
                         n->is_replica ? "replica" : "primary", n->url_safe, err.msg);
            n->healthy = false;
            st_pool_drop_idle(n->pool);
            return;
        }
        c->drv = n->drv;
        n->probe = c;
    }
    double lag = 0;
    int rc = n->is_replica && n->drv->lag ? n->drv->lag(n->probe->h, &lag, &err)
                                          : st_conn_exec(n->probe, "SELECT 1", NULL, 0, NULL, &err);
    if (rc < 0) {
        n->probe->drv->close(n->probe->h);
        free(n->probe);
        n->probe = NULL;
        if (n->healthy)
            log_warn("store: shard %s %s %s failed its probe: %s", sh->name,
                     n->is_replica ? "replica" : "primary", n->url_safe, err.msg);
        n->healthy = false;
        st_pool_drop_idle(n->pool);
        return;
    }
    n->lag_us = (int64_t)(lag * 1e6);
    if (!n->healthy)
        log_info("store: shard %s %s %s is up", sh->name,
                 n->is_replica ? "replica" : "primary", n->url_safe);
    n->healthy = true;
}

static void probe_all(st_store *s, shard_need *need)
{
    for (int i = 0; i < s->nshards; i++) {
        st_shard *sh = &s->shards[i];
        probe_node(s, sh, &sh->primary);
        if (need[i].migrate && !need[i].migrated && sh->primary.probe) {
            st_err err;
            need[i].migrated = migrate_on(sh->primary.probe, sh->name, &err) == 0;
        }
        st_node *reps[ST_MAX_REPLICAS];     /* the set may change meanwhile */
        size_t nr = st_replicas_get(sh, reps);
        for (size_t r = 0; r < nr; r++) {
            probe_node(s, sh, reps[r]);
            st_replica_put(sh, reps[r]);
        }
    }
}

typedef struct probe_arg { st_store *s; shard_need *need; } probe_arg;

static void *probe_main(void *arg)
{
    probe_arg *pa = arg;
    st_store *s = pa->s;
    uint64_t dir_loaded = st_now_us();
    pthread_mutex_lock(&s->probe_mu);
    while (!s->stopping) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += (time_t)(s->probe_every / 1000000u);
        dl.tv_nsec += (long)(s->probe_every % 1000000u) * 1000;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->probe_cv, &s->probe_mu, &dl);
        if (s->stopping)
            break;
        pthread_mutex_unlock(&s->probe_mu);
        probe_all(s, pa->need);
        if (st_map_stored_version(s, NULL) > s->map_version)
            st_store_map_refresh(s, NULL);
        if (s->dir_reload && st_now_us() - dir_loaded >= ST_DIR_RELOAD_PROBES * s->probe_every) {
            st_store_load_directory(s);
            dir_loaded = st_now_us();
        }
        pthread_mutex_lock(&s->probe_mu);
    }
    pthread_mutex_unlock(&s->probe_mu);
    free(pa->need);
    free(pa);
    return NULL;
}

/* Pools and stats of shard i (a free slot of s->shards); the caller
 * publishes it by raising nshards. */
int st_shard_setup(st_store *s, int i, const char *name, const char *primary,
                   char *const *replicas, size_t nreplicas, st_err *err)
{
    st_shard *sh = &s->shards[i];
    pthread_mutex_init(&sh->stat_mu, NULL);
    st_replicas_init(sh);
    if (!(sh->latency = malloc(sizeof *sh->latency)))
        return st_fail(err, ST_ENOMEM, "out of memory");
    hist_init(sh->latency);
    snprintf(sh->name, sizeof sh->name, "%s", name);
    for (int j = 0; j < i; j++)
        if (!strcmp(s->shards[j].name, sh->name))
            return st_fail(err, ST_EINVAL, "store.shards[%d]: duplicate shard name '%s'",
                           i, sh->name);
    char url[1024];
    if (!primary || !*primary) {
        snprintf(url, sizeof url, "sqlite:%s/%s.db", s->data_dir, sh->name);
        primary = url;
    }
    char what[64];
    snprintf(what, sizeof what, "store.shards[%d].primary", i);
    if (node_init(&sh->primary, primary, &s->pool_cfg, false, err) < 0) {
        st_err_prefix(err, what);
        return -1;
    }
    if (!nreplicas)
        return 0;
    if (nreplicas > ST_MAX_REPLICAS)
        return st_fail(err, ST_EINVAL, "store.shards[%d].replicas: at most %d, got %zu", i,
                       ST_MAX_REPLICAS, nreplicas);
    for (size_t r = 0; r < nreplicas; r++) {
        if (!(sh->replicas[r] = st_replica_new(replicas[r], &s->pool_cfg, err))) {
            snprintf(what, sizeof what, "store.shards[%d].replicas[%zu]", i, r);
            st_err_prefix(err, what);
            return -1;
        }
        sh->nreplicas++;
    }
    return 0;
}

void st_shard_teardown(st_shard *sh)
{
    bool inited = sh->latency != NULL;
    if (sh->primary.pool)
        node_free(&sh->primary);
    if (inited) {
        st_replicas_free(sh);
        pthread_mutex_destroy(&sh->stat_mu);
    }
    free(sh->latency);
    memset(sh, 0, sizeof *sh);
}

int st_shard_migrate(st_store *s, int i, st_err *err)
{
    st_shard *sh = &s->shards[i];
    st_conn c = { 0 };
    c.drv = sh->primary.drv;
    if (c.drv->open(st_pool_url(sh->primary.pool), &c.h, err) < 0)
        return -1;
    int rc = migrate_on(&c, sh->name, err);
    c.drv->close(c.h);
    return rc;
}

static int shards_init(st_store *s, const st_config *cfg, st_err *err)
{
    int n = cfg->nshards ? (int)cfg->nshards : 1;
    if (n > ST_SHARDS_CAP)
        return st_fail(err, ST_EINVAL, "store.shards: at most %d shards", ST_SHARDS_CAP);
    s->shards = calloc(ST_SHARDS_CAP, sizeof *s->shards);
    if (!s->shards)
        return st_fail(err, ST_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const st_shard_cfg *sc = cfg->nshards ? &cfg->shards[i] : NULL;
        char name[64];
        if (sc && sc->name && *sc->name)
            snprintf(name, sizeof name, "%s", sc->name);
        else
            snprintf(name, sizeof name, "s%d", i);
        s->nshards = i + 1;     /* so close tears down what was set up */
        if (st_shard_setup(s, i, name, sc ? sc->primary : cfg->url,
                           sc ? sc->replicas : NULL, sc ? sc->nreplicas : 0, err) < 0)
            return -1;
        s->weights[i] = sc && sc->weight > 0 ? sc->weight : 1;
    }
    return 0;
}

int st_store_open(const st_config *cfg, st_store **out, st_err *err)
{
    *out = NULL;
    st_config empty;
    if (!cfg) {
        memset(&empty, 0, sizeof empty);
        cfg = &empty;
    }
    st_store *s = calloc(1, sizeof *s);
    if (!s)
        return st_fail(err, ST_ENOMEM, "out of memory");
    pthread_mutex_init(&s->probe_mu, NULL);
    pthread_cond_init(&s->probe_cv, NULL);
    for (int i = 0; i < RYW_LOCKS_N; i++)
        pthread_mutex_init(&s->ryw_locks[i], NULL);
    s->max_lag = cfg->max_replica_lag ? cfg->max_replica_lag : 5000000u;
    s->ryw_window = cfg->read_your_writes;
    s->probe_every = cfg->replica_check ? cfg->replica_check : 1000000u;
    s->cache_cfg = cfg->cache;
    s->cache_cfg.redis = NULL;     /* not owned: only the numbers are kept */
    s->cache_cfg.sentinels = NULL;
    s->cache_cfg.nsentinels = 0;
    s->cache_cfg.sentinel_master = NULL;
    s->cache_cfg.redis_password = NULL;
    s->cache_cfg.redis_password_file = NULL;
    pthread_mutex_init(&s->map_mu, NULL);
    pthread_mutex_init(&s->rs_mu, NULL);
    s->strategy = cfg->strategy;
    s->pool_cfg = cfg->pool;
    s->migrate = cfg->migrate;
    s->fence_wait = cfg->fence_wait ? cfg->fence_wait : 5000000u;
    s->rs_batch = cfg->reshard_batch > 0 ? cfg->reshard_batch : 500;
    s->rs_cleanup_delay = cfg->reshard_cleanup_delay ? cfg->reshard_cleanup_delay : 3000000u;
    {
        const char *dir = cfg->data_dir && *cfg->data_dir ? cfg->data_dir : ST_DEFAULT_DIR;
        char *abs = realpath(dir, NULL);    /* shards added later are opened by others too */
        snprintf(s->data_dir, sizeof s->data_dir, "%s", abs ? abs : dir);
        free(abs);
    }
    uint8_t tag = 0;
    if (getrandom(&tag, 1, 0) != 1)
        tag = (uint8_t)(getpid() ^ time(NULL));
    s->id_tag = tag;
    if (s->ryw_window && !(s->ryw = calloc(RYW_SETS_N * RYW_WAYS_N, sizeof *s->ryw)))
        goto nomem;
    if (shards_init(s, cfg, err) < 0 || build_router(s, cfg, err) < 0)
        goto fail;
    if (cfg->cache.kind == ST_CACHE_LOCAL) {
        if (!(s->cache = st_cache_new_local(cfg->cache.max_bytes)))
            goto nomem;
    } else if (cfg->cache.kind == ST_CACHE_REDIS) {
        char *pw = NULL;
        if (cfg->cache.redis_password_file && *cfg->cache.redis_password_file) {
            char perr[300];
            if (!(pw = http_token_read_file(cfg->cache.redis_password_file, perr, sizeof perr))) {
                st_fail(err, ST_EINVAL, "store.cache.redis_password_file: %s", perr);
                goto fail;
            }
        }
        s->cache = st_cache_new_redis_cfg(&cfg->cache, pw ? pw : cfg->cache.redis_password, err);
        free(pw);
        if (!s->cache)
            goto fail;
    }
    shard_need *need = calloc(ST_SHARDS_CAP, sizeof *need);
    probe_arg *pa = malloc(sizeof *pa);
    if (!need || !pa) {
        free(need);
        free(pa);
        goto nomem;
    }
    for (int i = 0; i < ST_SHARDS_CAP; i++)
        need[i].migrate = cfg->migrate;
    probe_all(s, need);     /* first probe and migration before serving */
    st_map_open(s);         /* the stored shard map wins over the config */
    if (cfg->strategy == ST_ROUTE_DIRECTORY) {
        s->dir_reload = !cfg->ndirectory;   /* config entries must not be overridden */
        st_store_load_directory(s);
        for (size_t i = 0; i < cfg->ndirectory; i++) {   /* config wins */
            int64_t user;
            int sh = shard_index(s, cfg->directory[i].shard, "directory", NULL);
            if (sh >= 0 && parse_i64(cfg->directory[i].user, &user, "directory", NULL) == 0)
                st_router_dir_set(s->router, user, sh, NULL);
        }
    }
    *pa = (probe_arg){ s, need };
    if (pthread_create(&s->probe_thread, NULL, probe_main, pa) != 0) {
        free(need);
        free(pa);
        st_fail(err, ST_ENOMEM, "cannot start the replica probe thread");
        goto fail;
    }
    s->probe_running = true;
    *out = s;
    return 0;
nomem:
    st_fail(err, ST_ENOMEM, "out of memory");
fail:
    st_store_close(s);
    return -1;
}

void st_store_close(st_store *s)
{
    if (!s)
        return;
    if (s->metrics_free)
        s->metrics_free(s);
    if (s->probe_running) {
        pthread_mutex_lock(&s->probe_mu);
        s->stopping = true;
        pthread_cond_signal(&s->probe_cv);
        pthread_mutex_unlock(&s->probe_mu);
        pthread_join(s->probe_thread, NULL);
    }
    st_reshard_free(s);
    for (int i = 0; s->shards && i < s->nshards; i++)
        st_shard_teardown(&s->shards[i]);
    free(s->shards);
    st_router_free(s->router);
    for (size_t i = 0; i < s->nretired; i++)
        st_router_free(s->retired[i]);
    free(s->retired);
    pthread_mutex_destroy(&s->map_mu);
    pthread_mutex_destroy(&s->rs_mu);
    st_cache_free(s->cache);
    free(s->ryw);
    for (int i = 0; i < RYW_LOCKS_N; i++)
        pthread_mutex_destroy(&s->ryw_locks[i]);
    pthread_cond_destroy(&s->probe_cv);
    pthread_mutex_destroy(&s->probe_mu);
    free(s);
}

/* For store_replicas.c: replicas added at run time are set up, probed and
 * closed like those made at open. */
int st_node_init(st_node *n, const char *url, const st_pool_cfg *pc, bool replica, st_err *err)
{
    return node_init(n, url, pc, replica, err);
}

void st_node_close(st_node *n) { node_free(n); }

void st_probe_node(st_store *s, st_shard *sh, st_node *n) { probe_node(s, sh, n); }
