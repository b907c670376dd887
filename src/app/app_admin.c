/* app_admin.c -- the instance's shard administration, for the control
 * plane (which calls it over HTTP) and operators:
 *
 *   GET  /admin/shardmap          this instance's shard map and version
 *   GET  /admin/reshard           the last move coordinated here
 *   POST /admin/reshard           start one: {"op":"add_shard","name","primary","weight"}
 *                                 | {"op":"set_weights","weights":{"s0":1,...}}
 *                                 | {"op":"move","user_id":N,"shard":"s1"}; "hold": true
 *                                 stops before the cutover until /resume
 *   POST /admin/reshard/rollback  undo the running move (until the map is published)
 *   POST /admin/reshard/resume    let a held move cut over
 *
 * The coordinator runs in the instance that accepted the POST (it has the
 * store's drivers and every shard's url); the meta shard's job row keeps a
 * second one from starting anywhere. These paths change the data tier, so
 * they follow the admin-listener rules on a listener that also serves the
 * public API: with app.admin_token set, a Bearer token is required; without
 * one they answer only when app.listen is loopback. The cross-site guard
 * (JSON content type, Host an IP or localhost, Origin our own) applies too. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include "app/app_int.h"

static bool admin_ok(http_ctx *c, app *a)
{
    static const http_guard_opts guard = { .enabled = true };
    if (http_guard_check(c, &guard, false) != 0)
        return false;
    if (a->admin_token && *a->admin_token)
        return http_ctx_bearer_ok(c, a->admin_token);
    if (!a->admin_loopback) {
        http_reply_error(c, 403, NULL, "shard administration is off: app.listen is not loopback"
                         " and app.admin_token (HSCALE_APP_ADMIN_TOKEN) is not set");
        return false;
    }
    return true;
}

static void h_shardmap(http_ctx *c, void *arg)
{
    app *a = arg;
    if (!admin_ok(c, a))
        return;
    buf b;
    buf_init(&b);
    buf_printf(&b, "{\"instance_id\":\"%s\",\"version\":%lld,\"map\":", a->instance_id,
               (long long)st_store_map_version(a->store));
    st_store_map_json(a->store, &b);
    buf_append_str(&b, "}");
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

static void h_status(http_ctx *c, void *arg)
{
    app *a = arg;
    if (!admin_ok(c, a))
        return;
    buf b;
    buf_init(&b);
    st_reshard_status_json(a->store, &b);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

/* The body into a request, or a 400 naming the field. */
static int parse_req(http_ctx *c, st_reshard_req *q)
{
    size_t len;
    const char *body = http_ctx_body(c, &len);
    json_error_t je;
    json_t *j = json_loadb(body ? body : "", len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        http_reply_error(c, 400, "body", "expected a JSON object");
        return -1;
    }
    memset(q, 0, sizeof q[0]);
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        const char *bad = NULL;
        if (!strcmp(key, "op") || !strcmp(key, "name") || !strcmp(key, "primary") ||
            !strcmp(key, "shard")) {
            const char *sv = json_string_value(v);
            char *dst = !strcmp(key, "op") ? q->op : !strcmp(key, "primary") ? q->primary : q->name;
            size_t cap = !strcmp(key, "op") ? sizeof q->op : !strcmp(key, "primary")
                         ? sizeof q->primary : sizeof q->name;
            if (!sv || strlen(sv) >= cap)
                bad = "a string";
            else
                snprintf(dst, cap, "%s", sv);
        } else if (!strcmp(key, "weight")) {
            if (!json_is_number(v))
                bad = "a number";
            else
                q->weight = json_number_value(v);
        } else if (!strcmp(key, "user_id")) {
            if (!json_is_integer(v))
                bad = "an integer";
            else
                q->user = json_integer_value(v);
        } else if (!strcmp(key, "hold")) {
            if (!json_is_boolean(v))
                bad = "true or false";
            else
                q->hold_before_cutover = json_is_true(v);
        } else if (!strcmp(key, "weights")) {
            const char *name = NULL;
            json_t *w = NULL;
            if (!json_is_object(v) || json_object_size(v) > 16)
                bad = "an object of shard name -> weight (at most 16)";
            else
                json_object_foreach(v, name, w) {
                    if (!json_is_number(w) || strlen(name) >= sizeof q->names[0]) {
                        bad = "an object of shard name -> weight (at most 16)";
                        break;
                    }
                    snprintf(q->names[q->nweights], sizeof q->names[0], "%s", name);
                    q->weights[q->nweights++] = json_number_value(w);
                }
        } else {
            http_reply_error(c, 400, key, "unknown field '%s'", key);
            json_decref(j);
            return -1;
        }
        if (bad) {
            http_reply_error(c, 400, key, "%s: expected %s", key, bad);
            json_decref(j);
            return -1;
        }
    }
    json_decref(j);
    if (!q->op[0]) {
        http_reply_error(c, 400, "op", "op is required: add_shard, set_weights or move");
        return -1;
    }
    return 0;
}

static void reply_err(http_ctx *c, const st_err *e)
{
    int status = e->code == ST_ECONFLICT ? 409 : e->code == ST_EINVAL ? 400 : 503;
    http_reply_error(c, status, NULL, "%s", e->msg);
}

static void h_start(http_ctx *c, void *arg)
{
    app *a = arg;
    if (!admin_ok(c, a))
        return;
    st_reshard_req q;
    if (parse_req(c, &q) < 0)
        return;
    st_err e;
    if (st_reshard_start(a->store, &q, &e) < 0) {
        reply_err(c, &e);
        return;
    }
    http_audit(c, NULL, "reshard: %s started", q.op);
    buf b;
    buf_init(&b);
    st_reshard_status_json(a->store, &b);
    http_reply_buf_json(c, 202, &b);
    buf_free(&b);
}

static void h_rollback(http_ctx *c, void *arg)
{
    app *a = arg;
    st_err e;
    if (!admin_ok(c, a))
        return;
    if (st_reshard_rollback(a->store, &e) < 0) {
        reply_err(c, &e);
        return;
    }
    http_audit(c, NULL, "reshard: rollback asked");
    h_status(c, arg);
}

static void h_resume(http_ctx *c, void *arg)
{
    app *a = arg;
    st_err e;
    if (!admin_ok(c, a))
        return;
    if (st_reshard_resume(a->store, &e) < 0) {
        reply_err(c, &e);
        return;
    }
    h_status(c, arg);
}

void app_routes_admin(http_router *r, app *a)
{
    http_route(r, "GET", "/admin/shardmap", h_shardmap, a);
    http_route(r, "GET", "/admin/reshard", h_status, a);
    http_route(r, "POST", "/admin/reshard", h_start, a);
    http_route(r, "POST", "/admin/reshard/rollback", h_rollback, a);
    http_route(r, "POST", "/admin/reshard/resume", h_resume, a);
}
