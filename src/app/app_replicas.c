/* app_replicas.c -- changing a running app's replica sets: by config
 * reload (SIGHUP) or by the admin API.
 *
 *   GET /admin/replicas           every shard's replicas with health, lag
 *                                 and connections
 *   PUT /admin/replicas/{shard}   {"replicas": ["postgresql://...", ...]}:
 *                                 the shard's replicas become exactly these
 *
 * The app's listener serves the public API, so these paths carry their
 * own protection, like the other /admin paths: with app.admin_token set a
 * Bearer token is required; without one they answer (403 otherwise) only
 * when app.listen is loopback, the rule every state-changing listener
 * follows; the cross-site guard (Host, Origin, application/json) runs in
 * the handler.
 *
 * A reload re-reads the same file (and environment) and applies what can
 * change at run time: each shard's replicas, matched by shard name. Other
 * changes are reported as needing a restart; a file that does not load
 * changes nothing. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app_int.h"
#include "core/log.h"

/* A URL we will log and put into JSON: printable, no quote or backslash. */
static bool url_ok(const char *u)
{
    if (!*u)
        return false;
    for (; *u; u++)
        if ((unsigned char)*u < 0x21 || (unsigned char)*u > 0x7e || *u == '"' || *u == '\\')
            return false;
    return true;
}

static bool replicas_admin_ok(http_ctx *c, app *a)
{
    static const http_guard_opts guard = { .enabled = true };
    if (http_guard_check(c, &guard, false) != 0)
        return false;
    if (a->admin_token)
        return http_ctx_bearer_ok(c, a->admin_token);
    if (!a->admin_loopback) {
        http_reply_error(c, 403, NULL, "replica administration is off: app.listen is not "
                         "loopback and app.admin_token (HSCALE_APP_ADMIN_TOKEN) is not set");
        return false;
    }
    return true;
}

static void h_replicas_get(http_ctx *c, void *arg)
{
    app *a = arg;
    if (!replicas_admin_ok(c, a))
        return;
    buf b;
    buf_init(&b);
    st_store_replicas_json(a->store, &b);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

static void h_replicas_put(http_ctx *c, void *arg)
{
    app *a = arg;
    if (!replicas_admin_ok(c, a))
        return;
    const char *shard = http_ctx_param(c, "shard");
    size_t len = 0;
    const char *body = http_ctx_body(c, &len);
    json_error_t je;
    json_t *root = body ? json_loadb(body, len, 0, &je) : NULL;
    json_t *list = root ? json_object_get(root, "replicas") : NULL;
    if (!root || !json_is_object(root) || !json_is_array(list) || json_object_size(root) != 1) {
        http_reply_error(c, 400, "replicas", "expected {\"replicas\": [url, ...]}");
        json_decref(root);
        return;
    }
    size_t n = json_array_size(list);
    const char *urls[8];
    if (n > 8) {
        http_reply_error(c, 400, "replicas", "at most 8 replicas per shard, got %zu", n);
        json_decref(root);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *u = json_array_get(list, i);
        urls[i] = json_is_string(u) ? json_string_value(u) : NULL;
        if (!urls[i] || !url_ok(urls[i])) {
            http_reply_error(c, 400, "replicas", "replicas[%zu]: expected a database url", i);
            json_decref(root);
            return;
        }
    }
    st_err e;
    if (st_store_set_replicas(a->store, shard, urls, n, &e) < 0) {
        http_reply_error(c, strstr(e.msg, "no shard named") ? 404 : 400, "replicas", "%s",
                         e.msg);
        json_decref(root);
        return;
    }
    http_audit(c, NULL, "replicas of shard %s set to %zu", shard, n);
    json_decref(root);
    buf b;
    buf_init(&b);
    st_store_replicas_json(a->store, &b);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

void app_routes_replicas(http_router *r, app *a)
{
    http_route(r, "GET", "/admin/replicas", h_replicas_get, a);
    http_route(r, "PUT", "/admin/replicas/{shard}", h_replicas_put, a);
}

int app_reload(app *a, const app_config *running)
{
    app_config next;
    char err[1024];
    if (app_config_load(a->config_path, NULL, &next, err, sizeof err) != 0) {
        log_error("reload refused, nothing changed: %s", err);
        return -1;
    }
    const st_config *now = &running->store, *want = &next.store;
    int rc = 0;
    if (now->nshards != want->nshards) {
        log_warn("reload: the shard list changed (%zu -> %zu shards): that needs a restart "
                 "or a resharding; only replicas are applied", now->nshards, want->nshards);
    }
    for (size_t i = 0; i < want->nshards; i++) {
        char def[32];
        snprintf(def, sizeof def, "s%zu", i);
        const st_shard_cfg *w = &want->shards[i];
        const char *name = w->name && *w->name ? w->name : def;
        st_err e;
        if (st_store_set_replicas(a->store, name, (const char *const *)w->replicas, w->nreplicas,
                                  &e) < 0) {
            log_error("reload: shard %s: replicas not changed: %s", name, e.msg);
            rc = -1;
        }
    }
    if (now->pool.recycle != want->pool.recycle || now->pool.size != want->pool.size ||
        now->cache.kind != want->cache.kind || now->nshards != want->nshards)
        log_warn("reload: pool and cache settings need a restart to change");
    app_config_free(&next);
    log_info("reload: %s", rc == 0 ? "replica sets applied" : "some replica sets refused");
    return rc;
}
