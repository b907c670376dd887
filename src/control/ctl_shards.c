/* ctl_shards.c -- shard management on the scaling API (the CA-DMS paths),
 * aggregated from the service's ready instances:
 *
 *   GET  /api/v1/scaling/shards/statistics      rows, bytes, queries, latency
 *                                               per shard, pools and lag per node
 *   GET  /api/v1/scaling/shards/health          per shard and node, with the reason
 *   GET  /api/v1/scaling/shards/rebalance-check which shard is over / under its
 *                                               weight's share, and the move that fixes it
 *   GET  /api/v1/scaling/shards/reshard         the running / last move
 *   POST /api/v1/scaling/shards/reshard         start one (admin; body as the app's
 *                                               POST /admin/reshard)
 *   POST /api/v1/scaling/shards/reshard/rollback | /resume   (admin)
 *
 * Rows and bytes are properties of the databases, so one instance counts
 * them (/stats/shards?full=true); queries, errors and pools are per
 * instance and summed; latency quantiles are the worst instance's (they
 * do not add), the mean is weighted by queries; a node's health is the
 * instances' consensus, and any instance that cannot reach a primary makes
 * the shard "down" (that instance's writes fail). The coordinator of a move
 * runs in the app instance the POST is forwarded to (it holds the drivers
 * and every shard's url); this plane forwards, then a watcher thread polls
 * the instance and copies each new event (progress, pause, moved rows)
 * into the scaling history. */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control/ctl_instances.h"
#include "core/log.h"
#include "http/client.h"

#define SH_MAX_INST 64

static bool sh_read(http_ctx *c, const ctl_api *a)
{
    return ctl_api_authorized(c, a->c, HTTP_ROLE_READ);
}

/* Addresses of running instances (ready first; a starting one answers
 * /stats/shards too, and one whose shard is down never becomes ready,
 * which is just when its view matters); returns how many. */
static size_t ready_addrs(const ctl_api *a, char (*out)[64], size_t max)
{
    static ctl_instance_info inst[SH_MAX_INST];
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    size_t n = ctl_instances_list(a->mgr, inst, SH_MAX_INST), k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n && i < SH_MAX_INST && k < max; i++)
            if (inst[i].state == (pass ? CTL_INST_STARTING : CTL_INST_READY) && inst[i].address[0])
                snprintf(out[k++], 64, "%s", inst[i].address);
    pthread_mutex_unlock(&mu);
    return k;
}

static json_t *fetch_json(const ctl_api *a, const char *method, const char *addr,
                          const char *path, const char *body, size_t len, int *status,
                          char *err, size_t errlen)
{
    char url[256], hdr[400] = "";
    snprintf(url, sizeof url, "http://%s%s", addr, path);
    if (a->c->app_admin_token && *a->c->app_admin_token && !strncmp(path, "/admin/", 7))
        snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", a->c->app_admin_token);
    if (body)
        strncat(hdr, "Content-Type: application/json\r\n", sizeof hdr - strlen(hdr) - 1);
    http_result r;
    http_result_init(&r);
    json_t *j = NULL;
    *status = 0;
    if (http_fetch(method, url, hdr[0] ? hdr : NULL, body, len, 10000, &r, err, errlen) == 0) {
        *status = r.status;
        json_error_t je;
        j = json_loadb(buf_head(&r.body), r.body.len, 0, &je);
        if (!j)
            snprintf(err, errlen, "%.200s: %d, not JSON", url, r.status);
    }
    http_result_free(&r);
    return j;
}

/* Every ready instance's /stats/shards; the first array is one
 * instance's full=true answer (rows and sizes) when one could count them
 * (a shard that is down makes counting fail: the rest still reports).
 * Returns an array of arrays; NULL with a reply sent when none answered. */
static json_t *gather(http_ctx *c, const ctl_api *a, size_t *ninst)
{
    char addrs[SH_MAX_INST][64];
    size_t n = ready_addrs(a, addrs, SH_MAX_INST);
    json_t *all = json_array();
    char err[256] = "no ready instance";
    bool full_done = false;
    for (size_t i = 0; i < n; i++) {
        int st;
        json_t *j = NULL, *arr = NULL;
        if (!full_done) {
            j = fetch_json(a, "GET", addrs[i], "/stats/shards?full=true", NULL, 0, &st, err,
                           sizeof err);
            arr = st == 200 ? json_object_get(j, "shards") : NULL;
            full_done = json_is_array(arr);
            if (!full_done) {
                json_decref(j);
                j = NULL;
            }
        }
        if (!j) {
            j = fetch_json(a, "GET", addrs[i], "/stats/shards", NULL, 0, &st, err, sizeof err);
            arr = st == 200 ? json_object_get(j, "shards") : NULL;
        }
        if (json_is_array(arr)) {
            if (full_done && json_array_size(all) && json_object_get(json_array_get(arr, 0), "rows"))
                json_array_insert(all, 0, arr);     /* the counted one first */
            else
                json_array_append(all, arr);
        }
        json_decref(j);
    }
    *ninst = json_array_size(all);
    if (!*ninst) {
        json_decref(all);
        http_ctx_add_header(c, "Retry-After", "2");
        http_reply_error(c, 503, NULL, "no instance answered /stats/shards: %s", err);
        return NULL;
    }
    return all;
}

static double num(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

/* The shard named `name` in an instance's array. */
static json_t *shard_in(json_t *arr, const char *name)
{
    size_t i;
    json_t *s;
    json_array_foreach(arr, i, s) {
        const char *n = json_string_value(json_object_get(s, "name"));
        if (n && !strcmp(n, name))
            return s;
    }
    return NULL;
}

static int64_t rows_total(json_t *shard)
{
    json_t *rows = json_object_get(shard, "rows");
    const char *k;
    json_t *v;
    int64_t t = 0;
    json_object_foreach(rows, k, v) {
        if (json_integer_value(v) > 0)
            t += json_integer_value(v);
    }
    return t;
}

/* One shard aggregated over the instances (full: the first array). */
static json_t *agg_shard(json_t *all, json_t *base)
{
    const char *name = json_string_value(json_object_get(base, "name"));
    double queries = 0, errors = 0, wmean = 0, p50 = 0, p99 = 0, vmax = 0;
    size_t i;
    json_t *arr;
    json_t *nodes = json_array();
    json_array_foreach(all, i, arr) {
        json_t *s = shard_in(arr, name);
        if (!s)
            continue;
        double q = num(s, "queries");
        json_t *lat = json_object_get(s, "latency_seconds");
        queries += q;
        errors += num(s, "errors");
        wmean += q * num(lat, "mean");
        p50 = fmax(p50, num(lat, "p50"));
        p99 = fmax(p99, num(lat, "p99"));
        vmax = fmax(vmax, num(s, "map_version"));
        size_t k;
        json_t *n;
        json_array_foreach(json_object_get(s, "nodes"), k, n) {
            json_t *agg = json_array_get(nodes, k);
            json_t *pool = json_object_get(n, "pool");
            if (!agg) {
                agg = json_pack("{s:O, s:O, s:i, s:i, s:n, s:{s:i, s:i, s:i, s:i, s:i}}",
                                "role", json_object_get(n, "role"), "url",
                                json_object_get(n, "url"), "instances", 0, "healthy_on", 0,
                                "lag_seconds", "pool", "busy", 0, "idle", 0, "total", 0,
                                "waiting", 0, "timeouts", 0);
                json_array_append_new(nodes, agg);
            }
            json_object_set_new(agg, "instances",
                                json_integer(json_integer_value(json_object_get(agg, "instances")) + 1));
            if (json_is_true(json_object_get(n, "healthy")))
                json_object_set_new(agg, "healthy_on", json_integer(
                    json_integer_value(json_object_get(agg, "healthy_on")) + 1));
            json_t *lag = json_object_get(n, "lag_seconds");
            json_t *alag = json_object_get(agg, "lag_seconds");
            if (json_is_number(lag) && (!json_is_number(alag) ||
                                        json_number_value(lag) > json_number_value(alag)))
                json_object_set(agg, "lag_seconds", lag);
            json_t *ap = json_object_get(agg, "pool");
            static const char *const keys[] = { "busy", "idle", "total", "waiting", "timeouts" };
            for (size_t q2 = 0; q2 < 5; q2++)
                json_object_set_new(ap, keys[q2], json_integer(
                    json_integer_value(json_object_get(ap, keys[q2])) +
                    json_integer_value(json_object_get(pool, keys[q2]))));
        }
    }
    json_t *out = json_pack("{s:s, s:O, s:f, s:I, s:I, s:{s:f, s:f, s:f}, s:o}",
                            "name", name, "weight", json_object_get(base, "weight"),
                            "max_replica_lag_seconds", num(base, "max_replica_lag_seconds"),
                            "queries", (json_int_t)queries, "errors", (json_int_t)errors,
                            "latency_seconds", "p50", p50, "p99", p99, "mean",
                            queries > 0 ? wmean / queries : 0.0, "nodes", nodes);
    json_t *rows = json_object_get(base, "rows");
    if (rows) {
        json_object_set(out, "rows", rows);
        json_object_set_new(out, "rows_total", json_integer(rows_total(base)));
        json_object_set(out, "size_bytes", json_object_get(base, "size_bytes"));
    }
    json_object_set_new(out, "map_version", json_integer((json_int_t)vmax));
    return out;
}

static void reply_json(http_ctx *c, int status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(j);
    if (!text) {
        http_reply_error(c, 500, NULL, "out of memory");
        return;
    }
    http_reply_json(c, status, text, strlen(text));
    free(text);
}

/* {"instances":N,"strategy":..,"map_version":..,"shards":[aggregated]} */
static json_t *statistics(http_ctx *c, const ctl_api *a)
{
    size_t n;
    json_t *all = gather(c, a, &n);
    if (!all)
        return NULL;
    json_t *base = json_array_get(all, 0), *shards = json_array(), *s;
    size_t i;
    json_array_foreach(base, i, s) {
        json_array_append_new(shards, agg_shard(all, s));
    }
    json_t *first = json_array_get(base, 0);
    json_t *out = json_pack("{s:i, s:O, s:O, s:o}", "instances", (int)n, "strategy",
                            json_object_get(first, "strategy"), "map_version",
                            json_object_get(first, "map_version"), "shards", shards);
    json_decref(all);
    return out;
}

/* The shard statistics for a caller with the read role; NULL when it was
 * refused or the statistics could not be gathered (answered either way). */
static json_t *read_statistics(http_ctx *c, const ctl_api *a)
{
    return sh_read(c, a) ? statistics(c, a) : NULL;
}

static void h_statistics(http_ctx *c, void *arg)
{
    json_t *j = read_statistics(c, arg);
    if (j)
        reply_json(c, 200, j);
}

static void h_health(http_ctx *c, void *arg)
{
    const ctl_api *a = arg;
    json_t *st = read_statistics(c, a);
    if (!st)
        return;
    int ninst = (int)json_integer_value(json_object_get(st, "instances"));
    json_t *out = json_array(), *s;
    size_t i;
    int worst = 0;     /* 0 healthy, 1 degraded, 2 down */
    static const char *const words[] = { "healthy", "degraded", "down" };
    json_array_foreach(json_object_get(st, "shards"), i, s) {
        int sw = 0;
        char reason[256] = "";
        json_t *nodes = json_array(), *n;
        size_t k;
        double maxlag = num(s, "max_replica_lag_seconds");
        json_array_foreach(json_object_get(s, "nodes"), k, n) {
            const char *role = json_string_value(json_object_get(n, "role"));
            const char *url = json_string_value(json_object_get(n, "url"));
            int on = (int)json_integer_value(json_object_get(n, "healthy_on"));
            int of = (int)json_integer_value(json_object_get(n, "instances"));
            json_t *lag = json_object_get(n, "lag_seconds");
            const char *nst = "up";
            char why[200] = "";
            bool primary = role && !strcmp(role, "primary");
            if (on < of) {
                nst = "down";
                snprintf(why, sizeof why, "%s %s unreachable from %d of %d instances",
                         role, url, of - on, of);
                if (sw < (primary ? 2 : 1))
                    sw = primary ? 2 : 1;
            } else if (!primary && json_is_number(lag) && json_number_value(lag) > maxlag) {
                nst = "lagging";
                snprintf(why, sizeof why, "replica %s lags %.1f s (max_replica_lag %.1f s):"
                         " its reads go to the primary", url, json_number_value(lag), maxlag);
                if (sw < 1)
                    sw = 1;
            }
            if (why[0] && !reason[0])
                snprintf(reason, sizeof reason, "%s", why);
            json_array_append_new(nodes, json_pack("{s:s?, s:s?, s:s, s:s?, s:O}", "role", role,
                                                   "url", url, "status", nst,
                                                   "reason", why[0] ? why : NULL, "lag_seconds",
                                                   lag ? lag : json_null()));
        }
        if (sw > worst)
            worst = sw;
        json_array_append_new(out, json_pack("{s:O, s:s, s:s?, s:O, s:o}", "name",
                              json_object_get(s, "name"), "status", words[sw], "reason",
                              reason[0] ? reason : NULL, "errors", json_object_get(s, "errors"),
                              "nodes", nodes));
    }
    json_t *j = json_pack("{s:s, s:i, s:O, s:o}", "status", words[worst], "instances", ninst,
                          "map_version", json_object_get(st, "map_version"), "shards", out);
    json_decref(st);
    reply_json(c, 200, j);
}

static void h_rebalance(http_ctx *c, void *arg)
{
    const ctl_api *a = arg;
    json_t *st = read_statistics(c, a);
    if (!st)
        return;
    double thr = a->c->shard_rebalance_threshold;
    json_t *shards = json_object_get(st, "shards"), *s;
    size_t i, n = json_array_size(shards);
    double wsum = 0, total = 0;
    json_array_foreach(shards, i, s) {
        wsum += num(s, "weight");
        total += (double)json_integer_value(json_object_get(s, "rows_total"));
    }
    json_t *rows = json_array();
    int over = -1, under = -1;
    double over_by = 0, under_by = 0;
    json_t *weights = json_object();
    json_array_foreach(shards, i, s) {
        double w = num(s, "weight"), r = (double)json_integer_value(json_object_get(s, "rows_total"));
        double expect = wsum > 0 ? total * w / wsum : 0;
        double dev = expect > 0 ? r / expect - 1 : 0;
        const char *verdict = dev > thr ? "over" : dev < -thr ? "under" : "ok";
        if (r - expect > over_by) {
            over_by = r - expect;
            over = (int)i;
        }
        if (expect - r > under_by) {
            under_by = expect - r;
            under = (int)i;
        }
        /* the weight that would have given it its rows' worth of users */
        double nw = r > 0 && expect > 0 ? w * expect / r : w;
        json_object_set_new(weights, json_string_value(json_object_get(s, "name")),
                            json_real(round(fmin(100, fmax(0.01, nw)) * 100) / 100));
        json_array_append_new(rows, json_pack("{s:O, s:f, s:I, s:I, s:f, s:f, s:f, s:s}", "name",
                              json_object_get(s, "name"), "weight", w, "rows", (json_int_t)r,
                              "expected_rows", (json_int_t)llround(expect), "share",
                              total > 0 ? r / total : 0.0, "expected_share",
                              wsum > 0 ? w / wsum : 0.0, "deviation", dev, "status", verdict));
    }
    bool balanced = true;
    json_array_foreach(rows, i, s) {
        if (strcmp(json_string_value(json_object_get(s, "status")), "ok"))
            balanced = false;
    }
    json_t *sugg = json_array();
    const char *strategy = json_string_value(json_object_get(st, "strategy"));
    if (!strategy)
        strategy = "hash";
    if (!balanced && over >= 0 && under >= 0 && n > 1) {
        const char *from = json_string_value(json_object_get(json_array_get(shards, (size_t)over), "name"));
        const char *to = json_string_value(json_object_get(json_array_get(shards, (size_t)under), "name"));
        json_int_t move = (json_int_t)llround(fmin(over_by, under_by));
        char why[256];
        if (!strcmp(strategy, "directory")) {
            snprintf(why, sizeof why, "move users holding about %lld rows from %s to %s"
                     " (POST /api/v1/scaling/shards/reshard {\"op\":\"move\",\"user_id\":N,"
                     "\"shard\":\"%s\"} per user)", (long long)move, from, to, to);
            json_array_append_new(sugg, json_pack("{s:s, s:s, s:s, s:I, s:s}", "action", "move",
                                  "from", from, "to", to, "rows", move, "why", why));
        } else {
            snprintf(why, sizeof why, "%s holds about %lld rows more than its weight's share"
                     " and %s about %lld fewer: set these weights (a move of about %lld rows"
                     " from %s to %s)", from, (long long)llround(over_by), to,
                     (long long)llround(under_by), (long long)move, from, to);
            json_array_append_new(sugg, json_pack("{s:s, s:O, s:s, s:s, s:I, s:s}", "action",
                                  "set_weights", "weights", weights, "from", from, "to", to,
                                  "rows", move, "why", why));
        }
    }
    json_decref(weights);
    json_t *j = json_pack("{s:b, s:f, s:I, s:s, s:o, s:o}", "balanced", balanced, "threshold",
                          thr, "total_rows", (json_int_t)total, "strategy", strategy, "shards",
                          rows, "suggestions", sugg);
    json_decref(st);
    reply_json(c, 200, j);
}

/* ---- resharding: forward to an instance, watch it into the history ------- */

typedef struct sh_watch {
    const ctl_api *a;
    char           addr[64];
} sh_watch;

static pthread_mutex_t sh_mu = PTHREAD_MUTEX_INITIALIZER;
static char sh_coord[64];          /* the instance coordinating (under sh_mu) */
static bool sh_watching;

static void record(const ctl_api *a, json_t *ev)
{
    json_t *e = json_pack("{s:s, s:O, s:O, s:s}", "kind", "reshard", "time",
                          json_object_get(ev, "time"), "what", json_object_get(ev, "what"),
                          "role", "reshard");
    const char *k;
    json_t *v;
    json_object_foreach(ev, k, v) {
        if (strcmp(k, "time") && strcmp(k, "what"))
            json_object_set(e, k, v);
    }
    char *text = json_dumps(e, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(e);
    if (text && a->hooks && a->hooks->audit)
        a->hooks->audit(a->hooks->arg, text, strlen(text));
    free(text);
}

static void *watch_main(void *arg)
{
    sh_watch *w = arg;
    size_t seen = 0;
    for (int fails = 0; fails < 50; ) {
        int st;
        char err[256];
        json_t *j = fetch_json(w->a, "GET", w->addr, "/admin/reshard", NULL, 0, &st, err,
                               sizeof err);
        if (!j || st != 200) {
            json_decref(j);
            fails++;
            usleep(200000);
            continue;
        }
        json_t *evs = json_object_get(j, "events");
        for (; seen < json_array_size(evs); seen++)
            record(w->a, json_array_get(evs, seen));
        const char *state = json_string_value(json_object_get(j, "state"));
        if (!state)
            state = "";
        bool end = !strcmp(state, "done") || !strcmp(state, "rolled_back") ||
                   !strcmp(state, "failed") || !strcmp(state, "idle");
        json_decref(j);
        if (end)
            break;
        usleep(200000);
    }
    pthread_mutex_lock(&sh_mu);
    sh_watching = false;
    pthread_mutex_unlock(&sh_mu);
    free(w);
    return NULL;
}

static void forward(http_ctx *c, const ctl_api *a, const char *method, const char *path,
                    bool start)
{
    char addr[64] = "";
    pthread_mutex_lock(&sh_mu);
    snprintf(addr, sizeof addr, "%s", sh_coord);
    pthread_mutex_unlock(&sh_mu);
    if (start || !addr[0]) {
        char addrs[1][64];
        if (ready_addrs(a, addrs, 1) == 0) {
            http_ctx_add_header(c, "Retry-After", "2");
            http_reply_error(c, 503, NULL, "no ready instance to coordinate the resharding");
            return;
        }
        snprintf(addr, sizeof addr, "%s", addrs[0]);
    }
    size_t len = 0;
    const char *body = strcmp(method, "GET") ? http_ctx_body(c, &len) : NULL;
    if (body && !len)
        body = "{}", len = 2;
    int st;
    char err[256];
    json_t *j = fetch_json(a, method, addr, path, body, len, &st, err, sizeof err);
    if (!j) {
        http_reply_error(c, 502, NULL, "instance %s: %s", addr, err);
        return;
    }
    if (start && st == 202) {
        char what[160];
        snprintf(what, sizeof what, "shards: resharding started on instance %s", addr);
        ctl_api_audit(c, a->hooks, what);
        pthread_mutex_lock(&sh_mu);
        snprintf(sh_coord, sizeof sh_coord, "%s", addr);
        bool spawn = !sh_watching;
        sh_watching = true;
        pthread_mutex_unlock(&sh_mu);
        sh_watch *w = spawn ? calloc(1, sizeof *w) : NULL;
        pthread_t th;
        if (w) {
            w->a = a;
            snprintf(w->addr, sizeof w->addr, "%s", addr);
            if (pthread_create(&th, NULL, watch_main, w) == 0) {
                pthread_detach(th);
            } else {
                free(w);
                pthread_mutex_lock(&sh_mu);
                sh_watching = false;
                pthread_mutex_unlock(&sh_mu);
            }
        }
    }
    if (json_is_object(j))
        json_object_set_new(j, "coordinator", json_string(addr));
    reply_json(c, st ? st : 502, j);
}

static void h_reshard_get(http_ctx *c, void *arg)
{
    const ctl_api *a = arg;
    if (sh_read(c, a))
        forward(c, a, "GET", "/admin/reshard", false);
}

static void h_reshard_post(http_ctx *c, void *arg)
{
    const ctl_api *a = arg;
    if (ctl_api_authorized(c, a->c, HTTP_ROLE_ADMIN))
        forward(c, a, "POST", "/admin/reshard", true);
}

static void h_reshard_rollback(http_ctx *c, void *arg)
{
    const ctl_api *a = arg;
    if (ctl_api_authorized(c, a->c, HTTP_ROLE_ADMIN))
        forward(c, a, "POST", "/admin/reshard/rollback", false);
}

static void h_reshard_resume(http_ctx *c, void *arg)
{
    const ctl_api *a = arg;
    if (ctl_api_authorized(c, a->c, HTTP_ROLE_ADMIN))
        forward(c, a, "POST", "/admin/reshard/resume", false);
}

int ctl_shards_routes(http_router *r, ctl_api *a)
{
    if (http_route(r, "GET", "/api/v1/scaling/shards/statistics", h_statistics, a) < 0
        || http_route(r, "GET", "/api/v1/scaling/shards/health", h_health, a) < 0
        || http_route(r, "GET", "/api/v1/scaling/shards/rebalance-check", h_rebalance, a) < 0
        || http_route(r, "GET", "/api/v1/scaling/shards/reshard", h_reshard_get, a) < 0
        || http_route(r, "POST", "/api/v1/scaling/shards/reshard", h_reshard_post, a) < 0
        || http_route(r, "POST", "/api/v1/scaling/shards/reshard/rollback", h_reshard_rollback, a) < 0
        || http_route(r, "POST", "/api/v1/scaling/shards/reshard/resume", h_reshard_resume, a) < 0)
        return -1;
    return 0;
}
