/* ctl_api.c -- the scaling API on the control listener (the CA-DMS paths):
 *
 *   GET  /health                     liveness, no token
 *   GET  /metrics                    Prometheus text, no token
 *   GET  /api/v1/services            every service with its counts
 *   GET  /api/v1/sd                  Prometheus HTTP SD target groups
 *   GET  /api/v1/audit               accepted changes on this listener
 *   and for each service, under /api/v1/services/{name}/... or with
 *   ?service=NAME (neither: the first service, "default" in the
 *   single-service form):
 *   GET  /api/v1/scaling/status      desired and actual counts, instances
 *   GET  /api/v1/instances           {"instances":[...]}
 *   POST /api/v1/scaling/desired     {"count":N}: a manual count (admin)
 *   and the autoscaler's and deploys' paths (ctl_as_api.c, ctl_deploy_api.c).
 *
 * Each service has its own router holding its paths as if it were alone;
 * the listener's router picks the service and dispatches into it, so a
 * handler never needs to know how many services there are. Handlers only
 * read copies and queue requests on the manager, so an answer never waits
 * on an instance or on the gateway. A refused body is a 400 naming the
 * field and what was expected. */
#include "control/ctl_instances.h"
#include "control/ctl_dashboard.h"
#include "control/ctl_deploy.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "core/proc.h"

static bool authorized(http_ctx *c, const ctl_api *a)
{
    return ctl_api_authorized(c, a->c, HTTP_ROLE_READ);
}

bool ctl_api_authorized(http_ctx *c, const ctl_config *cfg, http_role need)
{
    http_tokens t = { cfg->read_token, cfg->token };
    return http_ctx_authorize(c, &t, need);
}

void ctl_api_audit(http_ctx *c, const ctl_hooks *hooks, const char *what)
{
    buf ev;
    buf_init(&ev);
    http_audit(c, &ev, "%s", what);
    if (hooks && hooks->audit && ev.len)
        hooks->audit(hooks->arg, buf_head(&ev), ev.len);
    buf_free(&ev);
}

/* The listener's audit ring: every service's accepted changes. */
static void h_audit(http_ctx *c, void *arg)
{
    const ctl_api_set *set = arg;
    if (authorized(c, &set->svcs[0]))
        http_reply_audit(c);
}

static void h_health(http_ctx *c, void *arg)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    http_reply_json(c, 200, ok, sizeof ok - 1);
}

static void h_metrics(http_ctx *c, void *arg)
{
    const ctl_api_set *set = arg;
    buf b;
    buf_init(&b);
    buf_append_str(&b,
        "# HELP hscale_control_instances Instances by service and state.\n"
        "# TYPE hscale_control_instances gauge\n");
    static const char *const states[] = { "starting", "ready", "leaving", "failed" };
    for (size_t i = 0; i < set->n; i++) {
        int v[4];
        ctl_instances_counts(set->svcs[i].mgr, &v[0], &v[1], &v[2], &v[3]);
        for (int k = 0; k < 4; k++)
            buf_printf(&b, "hscale_control_instances{service=\"%s\",state=\"%s\"} %d\n",
                       set->svcs[i].service, states[k], v[k]);
    }
    buf_append_str(&b,
        "# HELP hscale_control_desired_instances The instance count being converged to.\n"
        "# TYPE hscale_control_desired_instances gauge\n");
    for (size_t i = 0; i < set->n; i++)
        buf_printf(&b, "hscale_control_desired_instances{service=\"%s\"} %d\n",
                   set->svcs[i].service, ctl_instances_desired(set->svcs[i].mgr));
    buf_append_str(&b,
        "# HELP hscale_control_instance_restarts_total Crashed or unready instances restarted.\n"
        "# TYPE hscale_control_instance_restarts_total counter\n");
    for (size_t i = 0; i < set->n; i++)
        buf_printf(&b, "hscale_control_instance_restarts_total{service=\"%s\"} %llu\n",
                   set->svcs[i].service,
                   (unsigned long long)ctl_instances_restarts_total(set->svcs[i].mgr));
    metrics_render(metrics_default(), &b, true);
    http_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", buf_head(&b), b.len);
    buf_free(&b);
}

static void h_status(http_ctx *c, void *arg)
{
    ctl_api *a = arg;
    if (!authorized(c, a))
        return;
    int starting, ready, leaving, failed;
    ctl_instances_counts(a->mgr, &starting, &ready, &leaving, &failed);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s?, s:i, s:i, s:i, s:i, s:i, s:i, s:I}",
                          "service", a->service, "pool", a->c->pool, "driver", a->c->driver == CTL_DRIVER_EXEC ? "exec" : "process",
                          "gateway", a->c->gateway,
                          "desired", ctl_instances_desired(a->mgr),
                          "current", starting + ready, "ready", ready, "starting", starting,
                          "leaving", leaving, "failed", failed,
                          "restarts", (json_int_t)ctl_instances_restarts_total(a->mgr));
    char *head = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!head) {
        http_reply_error(c, 500, NULL, "out of memory");
        return;
    }
    buf b;
    buf_init(&b);
    buf_append(&b, head, strlen(head) - 1);   /* reopen the object */
    free(head);
    if (a->hooks && a->hooks->status_json)
        a->hooks->status_json(a->hooks->arg, &b);
    else
        buf_append_str(&b, ",\"autoscaling\":{\"enabled\":false}");
    buf_append_str(&b, ",");
    buf inst;
    buf_init(&inst);
    ctl_instances_json(a->mgr, &inst);
    buf_append(&b, buf_head(&inst) + 1, inst.len - 1);   /* "instances":[...]} */
    buf_free(&inst);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

static void h_instances(http_ctx *c, void *arg)
{
    ctl_api *a = arg;
    if (!authorized(c, a))
        return;
    buf b;
    buf_init(&b);
    ctl_instances_json(a->mgr, &b);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

/* Prometheus HTTP SD: the same groups as the file_sd file. */
static void h_sd(http_ctx *c, void *arg)
{
    const ctl_api_set *set = arg;
    if (!authorized(c, &set->svcs[0]))
        return;
    buf b;
    buf_init(&b);
    ctl_sd_json(set->svcs, set->n, set->svcs[0].control_addr, &b);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

static void h_desired(http_ctx *c, void *arg)
{
    ctl_api *a = arg;
    if (!ctl_api_authorized(c, a->c, HTTP_ROLE_ADMIN))
        return;
    size_t len;
    const char *body = http_ctx_body(c, &len);
    json_error_t je;
    json_t *j = json_loadb(body ? body : "", len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        http_reply_error(c, 400, "body", "expected a JSON object such as {\"count\":3}%s%s",
                         j ? "" : ": ", j ? "" : je.text);
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        if (strcmp(key, "count") != 0) {
            http_reply_error(c, 400, key, "unknown field '%s' (expected only count)", key);
            json_decref(j);
            return;
        }
    }
    v = json_object_get(j, "count");
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
    bool is_int = json_is_integer(v);
    json_decref(j);
    if (!is_int || n < 0 || n > a->c->max_instances) {
        http_reply_error(c, 400, "count", "expected an integer 0..%d", a->c->max_instances);
        return;
    }
    char err[256];
    if (a->hooks && a->hooks->set_desired
        && a->hooks->set_desired(a->hooks->arg, (int)n, err, sizeof err) < 0) {
        http_reply_error(c, 400, "count", "%s", err);
        return;
    }
    int prev = ctl_instances_desired(a->mgr);
    if (ctl_instances_scale_to(a->mgr, (int)n) < 0) {
        http_reply_error(c, 503, NULL, "the control plane is stopping");
        return;
    }
    char what[96];
    snprintf(what, sizeof what, "scaling: desired count set to %d (was %d)", (int)n, prev);
    ctl_api_audit(c, a->hooks, what);
    char out[96];
    int k = snprintf(out, sizeof out, "{\"desired\":%d,\"previous\":%d}", (int)n, prev);
    http_reply_json(c, 200, out, (size_t)k);
}

int ctl_api_service_router(ctl_api *a)
{
    http_router *r = http_router_new();
    if (!r)
        return -1;
    if (http_route(r, "GET", "/api/v1/scaling/status", h_status, a) < 0
        || http_route(r, "GET", "/api/v1/instances", h_instances, a) < 0
        || http_route(r, "POST", "/api/v1/scaling/desired", h_desired, a) < 0
        || ctl_deploy_routes(r, a->mgr, a->c) < 0
        || ctl_shards_routes(r, a) < 0
        || (a->hooks && a->hooks->routes && a->hooks->routes(a->hooks->arg, r) < 0)) {
        http_router_free(r);
        return -1;
    }
    a->router = r;
    return 0;
}

static ctl_api *ctl_api_find(const ctl_api_set *set, const char *name)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->svcs[i].service, name) == 0)
            return &set->svcs[i];
    return NULL;
}

static void ctl_api_no_service(http_ctx *c, const ctl_api_set *set, const char *name)
{
    char names[512] = "";
    size_t len = 0;
    for (size_t i = 0; i < set->n && len < sizeof names - 64; i++)
        len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                                set->svcs[i].service);
    http_reply_error(c, 404, "service", "no service '%.64s' (services: %s)", name, names);
}

/* /api/v1/services/{service}/REST -> /api/v1/REST of that service. */
static void h_service_path(http_ctx *c, void *arg)
{
    const ctl_api_set *set = arg;
    const char *name = http_ctx_param(c, "service");
    const char *rest = http_ctx_param(c, "*");
    ctl_api *a = name ? ctl_api_find(set, name) : NULL;
    if (!a) {
        ctl_api_no_service(c, set, name ? name : "");
        return;
    }
    size_t len = strlen(rest ? rest : "") + 16;
    char *path = http_ctx_alloc(c, len);
    if (!path) {
        http_reply_error(c, 500, NULL, "out of memory");
        return;
    }
    /* the service's own URL reads as its status */
    snprintf(path, len, "/api/v1/%s", rest && rest[0] ? rest : "scaling/status");
    http_router_dispatch(a->router, c, path);
}

/* Any other /api/v1/ path: the service of ?service=, or the first. */
static void h_default_path(http_ctx *c, void *arg)
{
    const ctl_api_set *set = arg;
    const char *name = http_ctx_query(c, "service");
    ctl_api *a = name ? ctl_api_find(set, name) : &set->svcs[0];
    if (!a) {
        ctl_api_no_service(c, set, name);
        return;
    }
    http_router_dispatch(a->router, c, http_ctx_path(c));
}

static void h_services(http_ctx *c, void *arg)
{
    const ctl_api_set *set = arg;
    if (!authorized(c, &set->svcs[0]))
        return;
    json_t *arr = json_array();
    for (size_t i = 0; i < set->n; i++) {
        const ctl_api *a = &set->svcs[i];
        int starting, ready, leaving, failed;
        ctl_instances_counts(a->mgr, &starting, &ready, &leaving, &failed);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:b, s:s?, s:i, s:i, s:i, s:i, s:i, s:i}",
            "name", a->service, "pool", a->c->pool, "default", i == 0,
            "command", a->c->tmpl.command, "desired", ctl_instances_desired(a->mgr),
            "current", starting + ready, "ready", ready, "starting", starting,
            "leaving", leaving, "failed", failed));
    }
    json_t *j = json_pack("{s:o}", "services", arr);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        http_reply_error(c, 500, NULL, "out of memory");
        return;
    }
    http_reply_json(c, 200, text, strlen(text));
    free(text);
}

http_router *ctl_api_router(ctl_api_set *set)
{
    http_router *r = http_router_new();
    if (!r)
        return NULL;
    if (http_route(r, "GET", "/health", h_health, set) < 0
        || http_route(r, "GET", "/metrics", h_metrics, set) < 0
        || http_route(r, "GET", "/api/v1/sd", h_sd, set) < 0
        || http_route(r, "GET", "/api/v1/services", h_services, set) < 0
        || http_route(r, "GET", "/api/v1/audit", h_audit, set) < 0
        || http_route(r, NULL, "/api/v1/services/{service}/*", h_service_path, set) < 0
        || http_route(r, NULL, "/api/v1/*", h_default_path, set) < 0
        || ctl_dashboard_routes(r) < 0) {
        http_router_free(r);
        return NULL;
    }
    return r;
}
