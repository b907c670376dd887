/* ctl_as_api.c -- the autoscaler's part of the scaling API (the CA-DMS
 * paths) on the control listener:
 *
 *   GET  /api/v1/scaling/metrics          one sample per check (>= 15 min)
 *                                         and the instances as last seen
 *   GET  /api/v1/scaling/history?limit=N  events, newest first
 *   GET  /api/v1/scaling/config           the `autoscaling:` section
 *   PUT  /api/v1/scaling/config           merged over the current one,
 *                                         validated whole, then swapped
 *   GET  /api/v1/scaling/recommendations  capacity advice
 *   POST /api/v1/scaling/start | /stop    autoscaler on / off
 * and the "autoscaling" member of GET /api/v1/scaling/status.
 *
 * A PUT is all or nothing: the body is loaded into a copy, validated, and
 * the scaler accepts it, before the copy replaces the live config; a 400
 * names the field and leaves the old config in force. */
#include "control/ctl_as_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_instances.h"
#include "core/log.h"
#include "http/writer.h"

static void num(buf *b, double v)
{
    if (isfinite(v))
        buf_printf(b, "%.6g", v);
    else
        buf_append_str(b, "null");
}

static void jstr(buf *b, const char *s)
{
    http_write_json_string(b, s, strlen(s));
}

/* "os", "cgroup", "metrics", or null */
static void src(buf *b, ctl_source s)
{
    const char *n = ctl_source_str(s);
    if (n)
        jstr(b, n);
    else
        buf_append_str(b, "null");
}

static void secs(buf *b, uint64_t us)
{
    buf_printf(b, "%.3f", (double)us / 1e6);
}

/* ,"autoscaling":{...} for GET /api/v1/scaling/status */
void ctl_as_status_json(void *arg, buf *out)
{
    ctl_autoscaler *as = arg;
    uint64_t now = ctl_as_now_us(), cool_out, cool_in;
    pthread_mutex_lock(&as->mu);
    ctl_scaler_cooldowns(as->sc, now, &cool_out, &cool_in);
    buf_printf(out, ",\"autoscaling\":{\"enabled\":%s,\"desired\":%d,\"min\":%d,\"max\":%d,"
               "\"check_interval_s\":", ctl_scaler_enabled(as->sc) ? "true" : "false",
               ctl_scaler_enabled(as->sc) ? ctl_scaler_desired(as->sc) : as->mgr_desired,
               as->cfg.min_instances, as->cfg.max_instances);
    secs(out, as->cfg.check_interval);
    buf_append_str(out, ",\"cooldown_remaining_s\":{\"scale_out\":");
    secs(out, cool_out);
    buf_append_str(out, ",\"scale_in\":");
    secs(out, cool_in);
    buf_printf(out, "},\"checks\":%llu,\"last_decision\":", (unsigned long long)as->checks);
    if (as->have_last) {
        const ctl_event *e = &as->last.event;
        buf_printf(out, "{\"time\":%llu,\"kind\":\"%s\",\"old\":%d,\"new\":%d,\"recommended\":%d,"
                   "\"policy\":", (unsigned long long)(e->time_us / 1000000u),
                   ctl_event_kind_name(e->kind), e->old_count, e->new_count, e->recommended);
        jstr(out, e->policy);
        buf_append_str(out, ",\"reason\":");
        jstr(out, e->reason);
        buf_append_str(out, "}");
    } else {
        buf_append_str(out, "null");
    }
    if (as->qlast.on) {   /* the queue policy's last poll */
        const ctl_queue_reading *q = &as->qlast;
        buf_append_str(out, ",\"queue\":{\"depth\":");
        num(out, q->depth);
        buf_append_str(out, ",\"waiting\":");
        num(out, q->waiting);
        buf_append_str(out, ",\"unacked\":");
        num(out, q->reserved);
        buf_append_str(out, ",\"error\":");
        if (q->error[0])
            jstr(out, q->error);
        else
            buf_append_str(out, "null");
        buf_append_str(out, "}");
    }
    buf_append_str(out, "}");
    pthread_mutex_unlock(&as->mu);
}

int ctl_as_set_desired(void *arg, int count, char *err, size_t errlen)
{
    ctl_autoscaler *as = arg;
    ctl_decision d;
    uint64_t now = ctl_as_now_us();
    pthread_mutex_lock(&as->mu);
    int rc = 0;
    if (ctl_scaler_enabled(as->sc)) {
        /* bounds apply, and both cooldowns start so the autoscaler leaves
         * the operator's count alone for a while */
        rc = ctl_scaler_set_desired(as->sc, count, now, &d, err, errlen);
        if (rc == 0)
            ctl_as_record(as, &d.event);
    } else {
        memset(&d, 0, sizeof d);
        ctl_event *e = &d.event;
        e->time_us = now;
        e->kind = CTL_EV_MANUAL;
        e->old_count = as->mgr_desired;
        e->new_count = e->recommended = e->stabilized = count;
        for (int k = 0; k < CTL_M__COUNT; k++)
            e->metrics.avg[k] = NAN;
        e->metrics.total_rps = e->metrics.total_in_flight = NAN;
        e->metrics.p95_ms = e->metrics.error_rate = NAN;
        snprintf(e->policy, sizeof e->policy, "manual");
        snprintf(e->reason, sizeof e->reason, "desired count set to %d by the API "
                 "(autoscaling stopped)", count);
        ctl_scaler_sync(as->sc, count);
        ctl_as_record(as, e);
    }
    if (rc == 0)
        as->mgr_desired = count;
    pthread_mutex_unlock(&as->mu);
    return rc;
}

void ctl_as_audit(void *arg, const char *json, size_t len)
{
    ctl_autoscaler *as = arg;
    char err[256];
    pthread_mutex_lock(&as->mu);
    if (as->hist && ctl_history_append(as->hist, json, len, err, sizeof err) < 0)
        log_warn("autoscaler: audit event not kept in the history: %s", err);
    pthread_mutex_unlock(&as->mu);
}

static void as_audit(http_ctx *c, ctl_autoscaler *as, const char *what)
{
    ctl_hooks h = { .arg = as, .audit = ctl_as_audit };
    ctl_api_audit(c, &h, what);
}

/* Every GET here renders under the lock and replies 200 with the JSON. */
typedef void as_render_fn(ctl_autoscaler *as, buf *b, long param);

static void reply_rendered(http_ctx *c, ctl_autoscaler *as, as_render_fn *render, long param)
{
    buf b;
    buf_init(&b);
    pthread_mutex_lock(&as->mu);
    render(as, &b, param);
    pthread_mutex_unlock(&as->mu);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

static void render_metrics(ctl_autoscaler *as, buf *b, long param)
{
    (void)param;
    buf_append_str(b, "{\"interval_s\":");
    secs(b, as->cfg.check_interval);
    buf_printf(b, ",\"now\":%llu,\"series\":[",
               (unsigned long long)(ctl_as_now_us() / 1000000u));
    for (size_t k = 0; k < as->ring_len; k++) {
        const as_sample *s = &as->ring[(as->ring_head + k) % as->ring_cap];
        buf_printf(b, "%s{\"t\":%lld,\"instances\":%d,\"ready\":%d,\"rps\":", k ? "," : "",
                   (long long)s->t, s->instances, s->ready);
        num(b, s->rps);
        buf_append_str(b, ",\"p95_ms\":");
        num(b, s->p95_ms);
        buf_append_str(b, ",\"error_rate\":");
        num(b, s->error_rate);
        buf_append_str(b, ",\"cpu_percent\":");
        num(b, s->cpu);
        buf_append_str(b, ",\"memory_percent\":");
        num(b, s->mem);
        buf_append_str(b, "}");
    }
    buf_append_str(b, "],\"instances\":[");
    for (size_t i = 0; i < as->nview; i++) {
        const as_inst *v = &as->view[i];
        buf_append_str(b, i ? ",{\"id\":" : "{\"id\":");
        jstr(b, v->info.id);
        buf_append_str(b, ",\"address\":");
        jstr(b, v->info.address);
        buf_append_str(b, ",\"version\":");
        jstr(b, v->info.version);
        buf_printf(b, ",\"state\":\"%s\",\"rps\":", ctl_inst_state_name(v->info.state));
        num(b, v->rps);
        buf_append_str(b, ",\"p95_ms\":");
        num(b, v->p95_ms);
        buf_append_str(b, ",\"cpu_percent\":");
        num(b, v->cpu);
        buf_append_str(b, ",\"memory_percent\":");
        num(b, v->mem);
        buf_append_str(b, ",\"cpu_source\":");
        src(b, v->cpu_src);
        buf_append_str(b, ",\"memory_source\":");
        src(b, v->mem_src);
        buf_append_str(b, ",\"in_flight\":");
        num(b, v->in_flight);
        buf_printf(b, ",\"healthy\":%s}", v->info.healthy ? "true" : "false");
    }
    buf_append_str(b, "]}");
}

static void h_metrics(http_ctx *c, void *arg)
{
    ctl_autoscaler *as = arg;
    if (!ctl_api_authorized(c, as->c, HTTP_ROLE_READ))
        return;
    reply_rendered(c, as, render_metrics, 0);
}

static void render_history(ctl_autoscaler *as, buf *b, long limit)
{
    buf_append_str(b, "{\"events\":");
    if (as->hist)
        ctl_history_query(as->hist, (size_t)limit, b);
    else
        buf_append_str(b, "[]");
    buf_append_str(b, "}");
}

static void h_history(http_ctx *c, void *arg)
{
    ctl_autoscaler *as = arg;
    if (!ctl_api_authorized(c, as->c, HTTP_ROLE_READ))
        return;
    long limit = 100;
    const char *q = http_ctx_query(c, "limit");
    if (q) {
        char *end;
        limit = strtol(q, &end, 10);
        if (end == q || *end || limit < 1 || limit > 1000000) {
            http_reply_error(c, 400, "limit", "expected an integer 1..1000000, got '%s'", q);
            return;
        }
    }
    reply_rendered(c, as, render_history, limit);
}

static void render_config(ctl_autoscaler *as, buf *b, long param)
{
    (void)param;
    cfg_to_json_redacted(&ctl_autoscale_schema, &as->cfg, b);
}

static void h_config_get(http_ctx *c, void *arg)
{
    ctl_autoscaler *as = arg;
    if (!ctl_api_authorized(c, as->c, HTTP_ROLE_READ))
        return;
    reply_rendered(c, as, render_config, 0);
}

static void h_config_put(http_ctx *c, void *arg)
{
    ctl_autoscaler *as = arg;
    if (!ctl_api_authorized(c, as->c, HTTP_ROLE_ADMIN))
        return;
    size_t len;
    const char *body = http_ctx_body(c, &len);
    if (!body || len == 0 || body[strspn(body, " \t\r\n")] != '{') {
        http_reply_error(c, 400, "body", "expected a JSON object of autoscaling keys");
        return;
    }
    ctl_autoscale_cfg next;
    memset(&next, 0, sizeof next);
    cfg_error ce;
    memset(&ce, 0, sizeof ce);
    pthread_mutex_lock(&as->mu);
    bool was = ctl_scaler_enabled(as->sc);
    int rc = cfg_copy(&ctl_autoscale_schema, &next, &as->cfg);
    if (rc < 0) {
        pthread_mutex_unlock(&as->mu);
        http_reply_error(c, 500, NULL, "out of memory");
        return;
    }
    char e[256] = "";
    if (cfg_load_text(&ctl_autoscale_schema, &next, body, len, "body", &ce) < 0
        || cfg_validate(&ctl_autoscale_schema, &next, &ce) < 0) {
        rc = -1;
    } else if (ctl_scaler_set_config(as->sc, &next, e, sizeof e) < 0) {
        /* "field: message" from the scaler */
        const char *colon = strchr(e, ':');
        snprintf(ce.key, sizeof ce.key, "%.*s", colon ? (int)(colon - e) : 0, e);
        snprintf(ce.msg, sizeof ce.msg, "%s", colon ? colon + 2 : e);
        rc = -1;
    }
    if (rc < 0) {
        pthread_mutex_unlock(&as->mu);
        cfg_free(&ctl_autoscale_schema, &next);
        if (ce.key[0])
            http_reply_error(c, 400, ce.key, "%s: %s", ce.key, ce.msg);
        else
            http_reply_error(c, 400, "body", "%s", ce.msg);
        return;
    }
    cfg_free(&ctl_autoscale_schema, &as->cfg);
    as->cfg = next;
    if (!was && next.enabled)
        as->resync = true;
    pthread_mutex_unlock(&as->mu);
    as_audit(c, as, "autoscaling: configuration replaced");
    reply_rendered(c, as, render_config, 0);
}

static void render_recommendations(ctl_autoscaler *as, buf *b, long param)
{
    (void)param;
    double tcpu = as->cfg.target.cpu > 0 ? as->cfg.target.cpu : 70;
    ctl_capacity cap;
    ctl_capacity_estimate(&as->pool, tcpu, &cap);
    int cur = ctl_scaler_enabled(as->sc) ? ctl_scaler_desired(as->sc) : as->mgr_desired;
    buf_printf(b, "{\"current\":%d,\"ready\":%d,\"target_cpu_percent\":", cur, as->pool.ready);
    num(b, tcpu);
    buf_append_str(b, ",\"rps\":");
    num(b, as->pool.total_rps);
    buf_append_str(b, ",\"rps_per_instance\":");
    num(b, cap.rps_per_instance);
    buf_append_str(b, ",\"rps_per_instance_at_target\":");
    num(b, cap.rps_per_instance_at_target);
    buf_append_str(b, ",\"headroom_rps\":");
    num(b, cap.headroom_rps);
    buf_printf(b, ",\"needed_now\":%d,\"for_load\":[", cap.needed_now);
    static const double mult[] = { 1, 2, 5, 10 };
    for (size_t i = 0; i < sizeof mult / sizeof mult[0]; i++) {
        double rps = isfinite(as->pool.total_rps) ? as->pool.total_rps * mult[i] : NAN;
        buf_printf(b, "%s{\"load\":\"%gx\",\"rps\":", i ? "," : "", mult[i]);
        num(b, rps);
        buf_printf(b, ",\"instances\":%d}",
                   isfinite(rps) ? ctl_capacity_for(&cap, rps, 0.2) : -1);
    }
    buf_append_str(b, "],\"policies\":[");
    if (as->have_last)
        for (size_t i = 0; i < as->last.event.nrecs; i++) {
            const ctl_rec *r = &as->last.event.recs[i];
            buf_append_str(b, i ? ",{\"policy\":" : "{\"policy\":");
            jstr(b, r->policy);
            if (r->replicas == CTL_NO_REC)
                buf_append_str(b, ",\"replicas\":null");
            else
                buf_printf(b, ",\"replicas\":%d", r->replicas);
            buf_append_str(b, ",\"value\":");
            num(b, r->value);
            buf_append_str(b, ",\"target\":");
            num(b, r->target);
            buf_append_str(b, ",\"note\":");
            jstr(b, r->note);
            buf_append_str(b, "}");
        }
    buf_append_str(b, "]}");
}

static void h_recommendations(http_ctx *c, void *arg)
{
    ctl_autoscaler *as = arg;
    if (!ctl_api_authorized(c, as->c, HTTP_ROLE_READ))
        return;
    reply_rendered(c, as, render_recommendations, 0);
}

static void onoff(http_ctx *c, ctl_autoscaler *as, bool on)
{
    if (!ctl_api_authorized(c, as->c, HTTP_ROLE_ADMIN))
        return;
    pthread_mutex_lock(&as->mu);
    bool was = ctl_scaler_enabled(as->sc);
    if (on && !was)
        as->resync = true;
    ctl_scaler_set_enabled(as->sc, on);
    as->cfg.enabled = on;
    pthread_mutex_unlock(&as->mu);
    as_audit(c, as, on ? "autoscaling: started" : "autoscaling: stopped");
    char out[64];
    int k = snprintf(out, sizeof out, "{\"enabled\":%s,\"previous\":%s}", on ? "true" : "false",
                     was ? "true" : "false");
    http_reply_json(c, 200, out, (size_t)k);
}

static void h_start(http_ctx *c, void *arg) { onoff(c, arg, true); }
static void h_stop(http_ctx *c, void *arg) { onoff(c, arg, false); }

int ctl_as_routes(void *arg, struct http_router *r)
{
    if (http_route(r, "GET", "/api/v1/scaling/metrics", h_metrics, arg) < 0
        || http_route(r, "GET", "/api/v1/scaling/history", h_history, arg) < 0
        || http_route(r, "GET", "/api/v1/scaling/config", h_config_get, arg) < 0
        || http_route(r, "PUT", "/api/v1/scaling/config", h_config_put, arg) < 0
        || http_route(r, "GET", "/api/v1/scaling/recommendations", h_recommendations, arg) < 0
        || http_route(r, "POST", "/api/v1/scaling/start", h_start, arg) < 0
        || http_route(r, "POST", "/api/v1/scaling/stop", h_stop, arg) < 0)
        return -1;
    return 0;
}
