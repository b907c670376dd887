/* ctl_api.c -- the scaling API on the control listener (the CA-DMS paths):
 *
 *   GET  /health                     liveness, no token
 *   GET  /metrics                    Prometheus text, no token
 *   GET  /api/v1/scaling/status      desired and actual counts, instances
 *   GET  /api/v1/instances           {"instances":[...]}
 *   GET  /api/v1/sd                  Prometheus HTTP SD target groups
 *   POST /api/v1/scaling/desired     {"count":N}: a manual count
 *
 * Handlers only read copies and queue requests on the manager, so an
 * answer never waits on an instance or on the gateway. A refused body is a
 * 400 naming the field and what was expected. */
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
    return ctl_api_authorized(c, a->c->token);
}

bool ctl_api_authorized(http_ctx *c, const char *tok)
{
    return http_ctx_bearer_ok(c, tok);
}

static void h_health(http_ctx *c, void *arg)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    http_reply_json(c, 200, ok, sizeof ok - 1);
}

static void h_metrics(http_ctx *c, void *arg)
{
    ctl_api *a = arg;
    int starting, ready, leaving, failed;
    ctl_instances_counts(a->mgr, &starting, &ready, &leaving, &failed);
    buf b;
    buf_init(&b);
    buf_printf(&b,
        "# HELP hscale_control_instances Instances by state.\n"
        "# TYPE hscale_control_instances gauge\n"
        "hscale_control_instances{state=\"starting\"} %d\n"
        "hscale_control_instances{state=\"ready\"} %d\n"
        "hscale_control_instances{state=\"leaving\"} %d\n"
        "hscale_control_instances{state=\"failed\"} %d\n"
        "# HELP hscale_control_desired_instances The instance count being converged to.\n"
        "# TYPE hscale_control_desired_instances gauge\n"
        "hscale_control_desired_instances %d\n"
        "# HELP hscale_control_instance_restarts_total Crashed or unready instances restarted.\n"
        "# TYPE hscale_control_instance_restarts_total counter\n"
        "hscale_control_instance_restarts_total %llu\n",
        starting, ready, leaving, failed, ctl_instances_desired(a->mgr),
        (unsigned long long)ctl_instances_restarts_total(a->mgr));
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
    json_t *j = json_pack("{s:s, s:s, s:s?, s:i, s:i, s:i, s:i, s:i, s:i, s:I}",
                          "pool", a->c->pool, "driver", a->c->driver == CTL_DRIVER_EXEC ? "exec" : "process",
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
    ctl_api *a = arg;
    if (!authorized(c, a))
        return;
    buf b;
    buf_init(&b);
    ctl_sd_json(a->mgr, a->c, a->control_addr, &b);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

static void h_desired(http_ctx *c, void *arg)
{
    ctl_api *a = arg;
    if (!authorized(c, a))
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
    char out[96];
    int k = snprintf(out, sizeof out, "{\"desired\":%d,\"previous\":%d}", (int)n, prev);
    http_reply_json(c, 200, out, (size_t)k);
}

http_router *ctl_api_router(ctl_api *a)
{
    http_router *r = http_router_new();
    if (!r)
        return NULL;
    if (http_route(r, "GET", "/health", h_health, a) < 0
        || http_route(r, "GET", "/metrics", h_metrics, a) < 0
        || http_route(r, "GET", "/api/v1/scaling/status", h_status, a) < 0
        || http_route(r, "GET", "/api/v1/instances", h_instances, a) < 0
        || http_route(r, "GET", "/api/v1/sd", h_sd, a) < 0
        || http_route(r, "POST", "/api/v1/scaling/desired", h_desired, a) < 0
        || ctl_dashboard_routes(r) < 0
        || ctl_deploy_routes(r, a->mgr, a->c) < 0
        || (a->hooks && a->hooks->routes && a->hooks->routes(a->hooks->arg, r) < 0)) {
        http_router_free(r);
        return NULL;
    }
    return r;
}
