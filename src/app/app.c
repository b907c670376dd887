/* app.c -- the HTTP side of `hscale app`: routes, handlers, lifecycle.
 *
 * Handlers read query parameters strictly (a non-integer user_id is a 400
 * naming it), run one routed store query and render rows with
 * st_res_json, so a response never allocates beyond its result. The
 * draining flag flips before the server stops so that load balancers see
 * /health/ready fail while in-flight requests still complete. */
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

const char app_case_cols[] =
    "case_id, user_id, facility_id, surgeon_id, patient_first, patient_last,"
    " patient_dob, case_date, case_status, created_date, updated_at";

/* Maps a store error to its HTTP answer: unavailable or exhausted -> 503
 * with Retry-After so clients back off instead of retrying at once. */
void app_reply_store_error(http_ctx *c, const st_err *e)
{
    switch (e->code) {
    case ST_EUNAVAIL:
    case ST_ETIMEOUT:
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

static void h_health(http_ctx *c, void *arg)
{
    app *a = arg;
    st_err e;
    bool db_ok = st_store_ping(a->store, &e) == 0;
    const char *cache = "disabled";
    st_cache *ca = st_store_cache(a->store);
    if (ca) {
        st_cache_stats cs;
        st_cache_stats_get(ca, &cs);
        cache = st_store_cache_cfg(a->store)->kind == ST_CACHE_REDIS && !cs.redis_up
                    ? "degraded" : "connected";
    }
    char body[512];
    int n = snprintf(body, sizeof body,
                     "{\"status\":\"%s\",\"database\":\"%s\",\"cache\":\"%s\","
                     "\"version\":\"%s\",\"instance_id\":\"%s\",\"uptime_seconds\":%lld}",
                     db_ok ? "healthy" : "degraded", db_ok ? "connected" : "disconnected",
                     cache, a->version, a->instance_id,
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
    if (st_query(pa->a->store, pa->uid, ST_READ, sql, pv, np, &r, e) != 0)
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
    st_cache *ca = st_store_cache(a->store);
    char gk[32];
    snprintf(gk, sizeof gk, "u:%" PRId64, uid);
    uint64_t gen = ca ? st_cache_gen(ca, gk) : 0;   /* 0: bypass the cache */
    buf b;
    buf_init(&b);
    st_err e;
    int rc;
    if (gen) {
        char key[128];
        snprintf(key, sizeof key, "cf:%" PRId64 ":%" PRIu64 ":%d:%" PRId64 ":%" PRId64 ":%" PRId64,
                 uid, gen, has_status, status, limit, cursor);
        rc = st_cache_fetch(ca, key, st_store_cache_cfg(a->store)->ttl_case_list, 0, load_page,
                            &pa, &b, NULL, &e);
    } else {
        rc = load_page(&pa, &b, &e);
    }
    if (rc != 0)
        app_reply_store_error(c, &e);
    else
        http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

/* One row by id for a user's shard: GET /cases/{id}?user_id=, /users/{id}. */
static void get_one(http_ctx *c, app *a, int64_t uid, const char *sql, int64_t id,
                    const char *what)
{
    st_val pv[2] = { st_int(id), st_int(uid) };
    st_res *r = NULL;
    st_err e;
    if (st_query(a->store, uid, ST_READ, sql, pv, 2, &r, &e) != 0) {
        app_reply_store_error(c, &e);
        return;
    }
    if (st_res_rows(r) == 0) {
        st_res_free(r);
        http_reply_error(c, 404, NULL, "%s %" PRId64 " not found", what, id);
        return;
    }
    buf b;
    buf_init(&b);
    st_res_json_row(r, 0, &b);
    st_res_free(r);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

static void h_case_get(http_ctx *c, void *arg)
{
    int64_t id = 0, uid = 0;
    bool p, has_uid;
    if (app_int_param(c, "id", http_ctx_param(c, "id"), 1, INT64_MAX, &id, &p) ||
        app_int_param(c, "user_id", http_ctx_query(c, "user_id"), 1, INT64_MAX, &uid, &has_uid))
        return;
    if (!has_uid) {
        http_reply_error(c, 400, "user_id", "user_id is required");
        return;
    }
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM cases WHERE case_id = ? AND user_id = ?", app_case_cols);
    get_one(c, arg, uid, sql, id, "case");
}

static void h_user_get(http_ctx *c, void *arg)
{
    int64_t id = 0;
    bool p;
    if (app_int_param(c, "id", http_ctx_param(c, "id"), 1, INT64_MAX, &id, &p))
        return;
    get_one(c, arg, id,
            "SELECT user_id, npi_number, first_name, last_name, email, created_at"
            " FROM users WHERE user_id = ? AND user_id = ?", id, "user");
}

static int open_store(const char *db, st_store **out, char *err, size_t errlen)
{
    st_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.url = (char *)db;
    cfg.migrate = true;
    st_err e;
    if (st_store_open(&cfg, out, &e) != 0) {
        snprintf(err, errlen, "store: %s", e.msg);
        return -1;
    }
    return 0;
}

int app_run(const app_opts *o, char *err, size_t errlen)
{
    static app a;    /* static: handlers may still run until stop returns */
    memset(&a, 0, sizeof a);
    a.version = o->version ? o->version : HSCALE_VERSION;
    a.started = time(NULL);
    if (o->instance_id) {
        snprintf(a.instance_id, sizeof a.instance_id, "%s", o->instance_id);
    } else {
        char host[64] = "host";
        gethostname(host, sizeof host - 1);
        snprintf(a.instance_id, sizeof a.instance_id, "%s-%d", host, (int)getpid());
    }
    http_server_opts so;
    memset(&so, 0, sizeof so);
    if (sock_addr_parse(o->listen, &so.listen, err, errlen) != 0)
        return -1;

    /* Block the stop signals before any thread starts so that only
     * sigwait below sees them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    if (open_store(o->db, &a.store, err, errlen) != 0)
        return -1;
    st_store_metrics_register(a.store);

    http_router *r = http_router_new();
    http_route(r, "GET", "/health", h_health, &a);
    http_route(r, "GET", "/health/ready", h_ready, &a);
    http_route(r, "GET", "/metrics", h_metrics, &a);
    http_route(r, "GET", "/casefilter", h_casefilter, &a);
    http_route(r, "GET", "/cases", h_casefilter, &a);
    http_route(r, "GET", "/cases/{id}", h_case_get, &a);
    http_route(r, "GET", "/users/{id}", h_user_get, &a);
    app_routes_write(r, &a);

    so.name = "app";
    so.workers = o->workers;
    so.router = r;
    so.limits.max_body = 1 << 20;
    http_server *s = http_server_new(&so, err, errlen);
    if (!s || http_server_start(s, err, errlen) != 0) {
        if (s)
            http_server_free(s);
        http_router_free(r);
        st_store_close(a.store);
        return -1;
    }
    atomic_store(&a.ready, true);
    fprintf(stderr, "hscale app: listening on %s (instance %s, %s)\n", o->listen,
            a.instance_id, st_store_driver_name(a.store));
    int sig;
    sigwait(&set, &sig);
    atomic_store(&a.ready, false);
    http_server_stop(s, 10000);
    http_server_free(s);
    http_router_free(r);
    st_store_close(a.store);
    return 0;
}
