/* app.c -- the HTTP side of `hscale app`: routes, the read handlers, the
 * cache-aside helpers and the lifecycle.
 *
 * Handlers read query parameters strictly (a non-integer user_id is a 400
 * naming it), run one routed store query and render rows with
 * st_res_json, so a response never allocates beyond its result. Cached
 * reads hold the rendered bytes under a key that carries the user's
 * generation: one bump per write retires every read of that user on every
 * instance sharing the cache, with no key listing. The draining flag flips
 * before the server stops so that load balancers see /health/ready fail
 * while in-flight requests still complete. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "app/app_int.h"
#include "core/metrics.h"
#include "http/server.h"

#ifndef HSCALE_VERSION
#define HSCALE_VERSION "0.0.0"
#endif

const char app_case_cols[] = APP_CASE_COLS;

/* Maps a store error to its HTTP answer: unavailable or exhausted -> 503
 * with Retry-After so clients back off instead of retrying at once. */
void app_reply_store_error(http_ctx *c, const st_err *e)
{
    switch (e->code) {
    case ST_EUNAVAIL:
    case ST_ETIMEOUT:
    case ST_EFENCED:     /* the shard map did not settle within fence_wait */
        http_ctx_add_header(c, "Retry-After", "1");
        http_reply_error(c, 503, NULL, "database unavailable: %s", e->msg);
        break;
    case ST_ECONFLICT:
        http_reply_error(c, 409, NULL, "conflict: %s", e->msg);
        break;
    case ST_EINVAL:
        http_reply_error(c, 400, NULL, "%s", e->msg);
        break;
    default:
        http_reply_error(c, 500, NULL, "database error: %s", st_code_name(e->code));
    }
}

/* Strict integer parse of a query or path parameter. Returns 0 when the
 * parameter is absent (and *present is false), -1 after replying 400. */
int app_int_param(http_ctx *c, const char *name, const char *v, int64_t lo,
                     int64_t hi, int64_t *out, bool *present)
{
    *present = v != NULL;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno || n < lo || n > hi) {
        http_reply_error(c, 400, name, "%s must be an integer in [%" PRId64 ", %" PRId64 "]",
                         name, lo, hi);
        return -1;
    }
    *out = n;
    return 0;
}

int app_user_param(http_ctx *c, int64_t *uid)
{
    bool has;
    if (app_int_param(c, "user_id", http_ctx_query(c, "user_id"), 1, INT64_MAX, uid, &has))
        return -1;
    if (!has) {
        http_reply_error(c, 400, "user_id", "user_id is required");
        return -1;
    }
    return 0;
}

void app_now(char *out)
{
    time_t t = time(NULL);
    struct tm tm;
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

/* Set while a cache fill runs on this thread and the user was written
 * within fresh_window: app_read then goes to the primary. */
static _Thread_local bool fill_from_primary;

int app_read(app *a, int64_t uid, const char *sql, const st_val *pv, size_t n, st_res **out,
             st_err *e)
{
    if (fill_from_primary)
        return st_query_shard(a->store, st_shard_of(a->store, uid), ST_WRITE, sql, pv, n, out, e);
    return st_query(a->store, uid, ST_READ, sql, pv, n, out, e);
}

void app_invalidate(app *a, int64_t uid)
{
    st_cache *ca = st_store_cache(a->store);
    if (!ca)
        return;
    char ns[32];
    snprintf(ns, sizeof ns, "u:%" PRId64, uid);
    st_cache_bump(ca, ns);
    if (a->replicas) {
        snprintf(ns, sizeof ns, "w:%" PRId64, uid);
        st_cache_set(ca, ns, "1", 1, a->fresh_window);
    }
}

typedef struct fill_args {
    app             *a;
    int64_t          uid;
    st_cache_loader *load;
    void            *arg;
} fill_args;

/* Runs only on a miss, so the marker lookup costs nothing on a hit. */
static int fill(void *arg, buf *out, st_err *e)
{
    const fill_args *f = arg;
    char key[32];
    snprintf(key, sizeof key, "w:%" PRId64, f->uid);
    buf tmp;
    buf_init(&tmp);
    fill_from_primary = st_cache_get(st_store_cache(f->a->store), key, &tmp) == 1;
    buf_free(&tmp);
    int rc = f->load(f->arg, out, e);
    fill_from_primary = false;
    return rc;
}

/* The generation comes first so that a bump retires every key of the
 * user at once; a cache that cannot answer (Redis down or no master:
 * generation 0) sends the read to the database instead of failing it,
 * coalesced per key so an outage does not turn every hot key's readers
 * into as many queries (nothing is cached meanwhile). */
int app_cached(app *a, int64_t uid, const char *kind, const char *rest, uint64_t ttl,
               st_cache_loader *load, void *arg, buf *out, st_err *e)
{
    st_cache *ca = st_store_cache(a->store);
    char key[160];
    snprintf(key, sizeof key, "u:%" PRId64, uid);
    if (!ca || !ttl)
        return load(arg, out, e);
    uint64_t gen = st_cache_gen(ca, key);
    if (!gen) {
        snprintf(key, sizeof key, "%s:%" PRId64 ":-:%s", kind, uid, rest);
        return st_cache_single_flight(ca, key, 0, load, arg, out, NULL, e);
    }
    snprintf(key, sizeof key, "%s:%" PRId64 ":%" PRIu64 ":%s", kind, uid, gen, rest);
    if (!a->replicas)
        return st_cache_fetch(ca, key, ttl, 0, load, arg, out, NULL, e);
    fill_args f = { a, uid, load, arg };
    return st_cache_fetch(ca, key, ttl, 0, fill, &f, out, NULL, e);
}

static void h_health(http_ctx *c, void *arg)
{
    app *a = arg;
    st_err e;
    bool db_ok = st_store_ping(a->store, &e) == 0;
    const char *cache = "disabled";
    st_cache *ca = st_store_cache(a->store);
    st_cache_stats cs = { 0 };
    if (ca) {
        st_cache_stats_get(ca, &cs);
        cache = st_store_cache_cfg(a->store)->kind == ST_CACHE_REDIS && !cs.redis_up
                    ? "degraded" : "connected";
    }
    char master[320] = "";
    if (cs.redis_master_state)   /* Redis: where the cache's master is and how it got there */
        snprintf(master, sizeof master,
                 ",\"cache_master\":\"%s\",\"cache_master_state\":\"%s\","
                 "\"cache_master_switches\":%llu,\"cache_epochs\":%llu",
                 cs.redis_master, cs.redis_master_state,
                 (unsigned long long)cs.redis_switches, (unsigned long long)cs.redis_epochs);
    char body[768];
    int n = snprintf(body, sizeof body,
                     "{\"status\":\"%s\",\"database\":\"%s\",\"cache\":\"%s\"%s,"
                     "\"version\":\"%s\",\"instance_id\":\"%s\",\"uptime_seconds\":%lld}",
                     db_ok ? "healthy" : "degraded", db_ok ? "connected" : "disconnected",
                     cache, master, a->version, a->instance_id,
                     (long long)(time(NULL) - a->started));
    http_reply_json(c, 200, body, (size_t)n);
}

static void h_ready(http_ctx *c, void *arg)
{
    app *a = arg;
    st_err e;
    if (!atomic_load(&a->ready)) {
        http_reply_error(c, 503, NULL, "not ready: starting or draining");
        return;
    }
    if (st_store_ping(a->store, &e) != 0) {
        http_ctx_add_header(c, "Retry-After", "1");
        http_reply_error(c, 503, NULL, "not ready: %s", e.msg);
        return;
    }
    static const char ok[] = "{\"status\":\"ready\"}";
    http_reply_json(c, 200, ok, sizeof ok - 1);
}

static void h_metrics(http_ctx *c, void *arg)
{
    (void)arg;
    buf b;
    buf_init(&b);
    metrics_render(metrics_default(), &b, true);
    http_reply(c, 200, "text/plain; version=0.0.4", buf_head(&b), b.len);
    buf_free(&b);
}

/* Shard statistics for the control plane and operators: pool usage and
 * query latency per shard, plus row counts and sizes with ?full=true
 * (those query every shard, so they are not the default). */
static void h_shard_stats(http_ctx *c, void *arg)
{
    app *a = arg;
    const char *full = http_ctx_query(c, "full");
    if (full && strcmp(full, "true") != 0 && strcmp(full, "false") != 0) {
        http_reply_error(c, 400, "full", "expected true or false, got '%s'", full);
        return;
    }
    buf b;
    buf_init(&b);
    st_err e;
    buf_append_str(&b, "{\"shards\":");
    if (st_store_stats_json(a->store, full && strcmp(full, "true") == 0, &b, &e) < 0) {
        buf_free(&b);
        app_reply_store_error(c, &e);
        return;
    }
    buf_append_str(&b, "}");
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

typedef struct page_args {
    app    *a;
    int64_t uid, status;
    bool    has_status;
    int64_t limit, cursor;
} page_args;

/* Renders one casefilter page; the cache stores exactly these bytes. */
static int load_page(void *arg, buf *out, st_err *e)
{
    const page_args *pa = arg;
    char sql[512];
    st_val pv[4];
    size_t np = 0;
    pv[np++] = st_int(pa->uid);
    if (pa->has_status)
        pv[np++] = st_int(pa->status);
    pv[np++] = st_int(pa->cursor);
    pv[np++] = st_int(pa->limit);
    snprintf(sql, sizeof sql,
             "SELECT %s FROM cases WHERE user_id = ?%s AND case_id > ? ORDER BY case_id LIMIT ?",
             app_case_cols, pa->has_status ? " AND case_status = ?" : "");
    st_res *r = NULL;
    if (app_read(pa->a, pa->uid, sql, pv, np, &r, e) != 0)
        return -1;
    size_t rows = st_res_rows(r);
    buf_append_str(out, "{\"cases\":");
    st_res_json(r, out);
    if (rows == (size_t)pa->limit)
        buf_printf(out, ",\"count\":%zu,\"next_cursor\":\"%" PRId64 "\"}", rows,
                   st_res_int(r, rows - 1, 0));
    else
        buf_printf(out, ",\"count\":%zu,\"next_cursor\":null}", rows);
    st_res_free(r);
    return 0;
}

/* GET /casefilter?user_id=&status=&limit=&cursor=: keyset pagination on
 * case_id (the index is (user_id, case_status, case_id)), so a page costs
 * the same at any depth. next_cursor is null on the last page. */
static void h_casefilter(http_ctx *c, void *arg)
{
    app *a = arg;
    int64_t uid = 0, status = 0, limit = 50, cursor = 0;
    bool has_uid, has_status, p;
    if (app_int_param(c, "user_id", http_ctx_query(c, "user_id"), 1, INT64_MAX, &uid, &has_uid) ||
        app_int_param(c, "status", http_ctx_query(c, "status"), INT32_MIN, INT32_MAX, &status, &has_status) ||
        app_int_param(c, "limit", http_ctx_query(c, "limit"), 1, 500, &limit, &p) ||
        app_int_param(c, "cursor", http_ctx_query(c, "cursor"), 0, INT64_MAX, &cursor, &p))
        return;
    if (!has_uid) {
        http_reply_error(c, 400, "user_id", "user_id is required");
        return;
    }
    page_args pa = { a, uid, status, has_status, limit, cursor };
    char rest[96];
    snprintf(rest, sizeof rest, "%d:%" PRId64 ":%" PRId64 ":%" PRId64, has_status, status,
             limit, cursor);
    uint64_t ttl = st_store_cache(a->store) ? st_store_cache_cfg(a->store)->ttl_case_list : 0;
    buf b;
    buf_init(&b);
    st_err e;
    if (app_cached(a, uid, "cf", rest, ttl, load_page, &pa, &b, &e) != 0)
        app_reply_store_error(c, &e);
    else
        http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

typedef struct one_args {
    app        *a;
    int64_t     uid, id;
    const char *sql;
} one_args;

/* One row as a JSON object, or "null" when there is none: a miss is
 * cached too (the user's next write retires it). */
static int load_one(void *arg, buf *out, st_err *e)
{
    const one_args *oa = arg;
    st_val pv[2] = { st_int(oa->id), st_int(oa->uid) };
    st_res *r = NULL;
    if (app_read(oa->a, oa->uid, oa->sql, pv, 2, &r, e) != 0)
        return -1;
    if (st_res_rows(r) == 0)
        buf_append_str(out, "null");
    else
        st_res_json_row(r, 0, out);
    st_res_free(r);
    return 0;
}

/* One row by id for a user's shard: GET /cases/{id}?user_id=, /users/{id}. */
static void get_one(http_ctx *c, app *a, int64_t uid, const char *sql, int64_t id,
                    const char *what, uint64_t ttl)
{
    one_args oa = { a, uid, id, sql };
    char rest[32];
    snprintf(rest, sizeof rest, "%" PRId64, id);
    buf b;
    buf_init(&b);
    st_err e;
    if (app_cached(a, uid, what, rest, ttl, load_one, &oa, &b, &e) != 0)
        app_reply_store_error(c, &e);
    else if (b.len == 4 && memcmp(buf_head(&b), "null", 4) == 0)
        http_reply_error(c, 404, NULL, "%s %" PRId64 " not found", what, id);
    else
        http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

static uint64_t ttl_of(app *a, bool user)
{
    if (!st_store_cache(a->store))
        return 0;
    const st_cache_cfg *cc = st_store_cache_cfg(a->store);
    return user ? cc->ttl_user : cc->ttl_case;
}

static void h_case_get(http_ctx *c, void *arg)
{
    int64_t id = 0, uid = 0;
    bool p;
    if (app_int_param(c, "id", http_ctx_param(c, "id"), 1, INT64_MAX, &id, &p) ||
        app_user_param(c, &uid))
        return;
    get_one(c, arg, uid, "SELECT " APP_CASE_COLS " FROM cases WHERE case_id = ? AND user_id = ?",
            id, "case", ttl_of(arg, false));
}

static void h_user_get(http_ctx *c, void *arg)
{
    int64_t id = 0;
    bool p;
    if (app_int_param(c, "id", http_ctx_param(c, "id"), 1, INT64_MAX, &id, &p))
        return;
    get_one(c, arg, id,
            "SELECT user_id, npi_number, first_name, last_name, email, created_at"
            " FROM users WHERE user_id = ? AND user_id = ?", id, "user", ttl_of(arg, true));
}

/* The settings app_run serves with: the caller's config or defaults plus
 * environment, then the flags of app_opts on top. */
/* The settings app_run serves with: the caller's config (borrowed) or
 * defaults plus environment (owned), with the app_opts flags on top. */
static int effective_config(const app_opts *o, app_config *cfg, bool *owned, char *err,
                            size_t errlen)
{
    *owned = false;
    if (o->config) {
        *cfg = *o->config;
        if (o->listen)
            cfg->listen = (char *)o->listen;
        if (o->instance_id)
            cfg->instance_id = (char *)o->instance_id;
        if (o->db)
            cfg->store.url = (char *)o->db;
    } else {
        const char *sets[] = { "app.store.url", o->db, "app.listen", o->listen,
                               "app.instance_id", o->instance_id, NULL, NULL };
        if (app_config_load(NULL, sets, cfg, err, errlen) != 0)
            return -1;
        *owned = true;
    }
    if (o->workers)
        cfg->workers = (int)o->workers;
    return 0;
}

int app_run(const app_opts *o, char *err, size_t errlen)
{
    static app a;    /* static: handlers may still run until stop returns */
    memset(&a, 0, sizeof a);
    a.version = o->version ? o->version : HSCALE_VERSION;
    a.started = time(NULL);
    app_config cfg;
    bool owned;
    if (effective_config(o, &cfg, &owned, err, errlen) != 0)
        return -1;
    if (cfg.instance_id && *cfg.instance_id) {
        snprintf(a.instance_id, sizeof a.instance_id, "%s", cfg.instance_id);
    } else {
        char host[64] = "host";
        gethostname(host, sizeof host - 1);
        snprintf(a.instance_id, sizeof a.instance_id, "%s-%d", host, (int)getpid());
    }
    int rc = -1;
    http_router *r = NULL;
    http_server *s = NULL;
    http_server_opts so;
    memset(&so, 0, sizeof so);
    if (sock_addr_parse(cfg.listen, &so.listen, err, errlen) != 0)
        goto out;

    /* Block the stop signals before any thread starts so that only
     * sigwait below sees them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    a.config_path = o->config_path;

    st_err e;
    if (st_store_open(&cfg.store, &a.store, &e) != 0) {
        snprintf(err, errlen, "store: %s", e.msg);
        goto out;
    }
    st_store_metrics_register(a.store);
    for (size_t i = 0; i < cfg.store.nshards; i++)
        a.replicas |= cfg.store.shards[i].nreplicas > 0;
    a.fresh_window = cfg.store.max_replica_lag ? cfg.store.max_replica_lag : 5000000u;
    metrics_build_info(metrics_default(), a.version, "app");

    r = http_router_new();
    http_route(r, "GET", "/health", h_health, &a);
    http_route(r, "GET", "/health/ready", h_ready, &a);
    http_route(r, "GET", "/metrics", h_metrics, &a);
    http_route(r, "GET", "/stats/shards", h_shard_stats, &a);
    /* The admin paths change the data tier: a token, or a loopback listener. */
    a.admin_token = cfg.admin_token && *cfg.admin_token ? cfg.admin_token : NULL;
    a.admin_loopback = http_addr_is_loopback(&so.listen);
    app_routes_replicas(r, &a);
    http_route(r, "GET", "/casefilter", h_casefilter, &a);
    http_route(r, "GET", "/cases", h_casefilter, &a);
    http_route(r, "GET", "/cases/{id}", h_case_get, &a);
    http_route(r, "GET", "/users/{id}", h_user_get, &a);
    app_routes_write(r, &a);
    app_routes_admin(r, &a);

    so.name = "app";
    so.workers = (unsigned)cfg.workers;
    so.router = r;
    so.limits.max_body = cfg.max_body;
    s = http_server_new(&so, err, errlen);
    if (!s || http_server_start(s, err, errlen) != 0)
        goto out;
    atomic_store(&a.ready, true);
    fprintf(stderr, "hscale app: listening on %s (instance %s, %s, %d shard%s)\n", cfg.listen,
            a.instance_id, st_store_driver_name(a.store), st_store_nshards(a.store),
            st_store_nshards(a.store) == 1 ? "" : "s");
    int sig;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP)
        app_reload(&a, &cfg);
    atomic_store(&a.ready, false);
    http_server_stop(s, (int)(cfg.drain_timeout / 1000));
    rc = 0;
out:
    if (s)
        http_server_free(s);
    if (r)
        http_router_free(r);
    if (a.store)
        st_store_close(a.store);
    if (owned)
        app_config_free(&cfg);
    return rc;
}
