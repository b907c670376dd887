/* gw_admin.c -- the gateway's runtime API: an HTTP listener (src/http
 * server, one thread) over the model in gw_api.c, plus publication of new
 * configurations and the drain bookkeeping.
 *
 * Every edit takes rt->edit_lock, computes a whole new configuration from
 * the current one (gw_api.c), builds a snapshot from it and publishes it;
 * any refusal leaves the running state untouched. Every change that
 * succeeds is written to the state file (gw_statefile.c). Reads of the snapshot
 * from this thread also hold the lock, because retired snapshots are only
 * reclaimed under it and this thread is not one of the workers whose
 * quiescent stamps protect them.
 *
 * Authentication: tokens guard /api/ whenever one is configured: the read
 * token the views (pools, routes, audit), the admin token every change;
 * gw_admin_start refuses to listen beyond loopback without an admin token.
 * /health and /metrics stay open for probes and Prometheus. The shared
 * guard (src/http) refuses cross-site and rebinding requests, and every
 * accepted change leaves one audit event (log + GET /api/v1/audit). */
#include "gateway/gw_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "gateway/gw_api.h"
#include "gateway/gw_cache.h"
#include "gateway/gw_statefile.h"
#include "gateway/gw_tls.h"
#include "http/server.h"

int gw_rt_publish(gw_rt *rt, gw_config *cfg, char *err, size_t errlen)
{
    gw_snap *cur = gw_rcu_read(&rt->rcu);
    gw_snap *s = gw_snap_build(cfg, cur, err, errlen);
    if (!s)
        return -1;
    while (gw_rcu_publish(&rt->rcu, s) < 0) {
        /* Workers have not moved past the retired snapshots yet. */
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    gw_rcu_reclaim(&rt->rcu);
    cfg_free(&gw_config_schema, &rt->cfg);
    rt->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    gw_statefile_save(rt);
    return 0;
}

static bool authorized_as(http_ctx *c, gw_rt *rt, http_role need)
{
    http_tokens t = { rt->cfg.admin_read_token, rt->cfg.admin_token };
    return http_ctx_authorize(c, &t, need);
}

static bool authorized(http_ctx *c, gw_rt *rt) { return authorized_as(c, rt, HTTP_ROLE_READ); }
static bool admin_ok(http_ctx *c, gw_rt *rt) { return authorized_as(c, rt, HTTP_ROLE_ADMIN); }

static void reply_json(http_ctx *c, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) {
        http_reply_error(c, 500, NULL, "out of memory");
        return;
    }
    http_reply_json(c, status, s, strlen(s));
    free(s);
}

static void reply_result(http_ctx *c, const gw_api_result *res)
{
    const char *field = NULL;
    char fbuf[64];
    const char *colon = strchr(res->msg, ':');
    if (colon && (size_t)(colon - res->msg) < sizeof fbuf) {
        memcpy(fbuf, res->msg, (size_t)(colon - res->msg));
        fbuf[colon - res->msg] = '\0';
        if (!strchr(fbuf, ' '))
            field = fbuf;
    }
    http_reply_error(c, res->status, field, "%s", res->msg);
}

/* Publishes `next` (moved) and answers; on a publish failure 500. */
static bool publish_or_fail(http_ctx *c, gw_rt *rt, gw_config *next)
{
    char err[400];
    if (gw_rt_publish(rt, next, err, sizeof err) < 0) {
        cfg_free(&gw_config_schema, next);
        http_reply_error(c, 400, NULL, "%s", err);
        return false;
    }
    return true;
}

static void h_health(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    char body[640];
    int n = snprintf(body, sizeof body,
                     "{\"status\":\"%s\",\"component\":\"gateway\",\"workers\":%u,"
                     "\"client_connections\":%u,\"uptime_s\":%.1f,\"connections_by_phase\":{",
                     atomic_load(&rt->stopping) ? "stopping" : "ok", rt->nworkers,
                     atomic_load(&rt->clients), (double)(ev_monotonic_us() - rt->started_us) / 1e6);
    for (int p = 0; p < GC_NPHASES; p++)
        n += snprintf(body + n, sizeof body - (size_t)n, "%s\"%s\":%u", p ? "," : "",
                      gw_conn_phase_str(p), gw_rt_phase_count(rt, p));
    n += snprintf(body + n, sizeof body - (size_t)n, "},\"exchanges_by_phase\":{");
    for (int p = 0; p < GX_NPHASES; p++)
        n += snprintf(body + n, sizeof body - (size_t)n, "%s\"%s\":%u", p ? "," : "",
                      gw_ex_phase_str(p), gw_rt_ex_phase_count(rt, p));
    n += snprintf(body + n, sizeof body - (size_t)n, "}}");
    http_reply_json(c, 200, body, (size_t)n);
}

static void h_metrics(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    buf b;
    buf_init(&b);
    gw_metrics_render(rt, &b);
    http_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", buf_head(&b), b.len);
    buf_free(&b);
}

static void h_pools(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    if (!authorized(c, rt))
        return;
    pthread_mutex_lock(&rt->edit_lock);
    json_t *j = gw_api_pools_json(gw_rcu_read(&rt->rcu), ev_monotonic_us());
    pthread_mutex_unlock(&rt->edit_lock);
    reply_json(c, 200, j);
}

static void h_pool(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    if (!authorized(c, rt))
        return;
    const char *name = http_ctx_param(c, "pool");
    pthread_mutex_lock(&rt->edit_lock);
    const gw_snap *s = gw_rcu_read(&rt->rcu);
    int pi = gw_snap_find_pool(s, name);
    json_t *j = pi >= 0 ? gw_api_pool_json(s, pi, ev_monotonic_us()) : NULL;
    pthread_mutex_unlock(&rt->edit_lock);
    if (!j) {
        http_reply_error(c, 404, "pool", "no pool named '%s'", name);
        return;
    }
    reply_json(c, 200, j);
}

static json_t *member_json(gw_rt *rt, const char *pool, const char *id)
{
    const gw_snap *s = gw_rcu_read(&rt->rcu);
    int pi = gw_snap_find_pool(s, pool);
    if (pi < 0)
        return NULL;
    json_t *pj = gw_api_pool_json(s, pi, ev_monotonic_us());
    json_t *members = json_object_get(pj, "members"), *v, *found = NULL;
    size_t i;
    sock_addr want, have;
    char e[128];
    if (sock_addr_parse(id, &want, e, sizeof e) == 0)
        json_array_foreach(members, i, v) {
            const char *mid = json_string_value(json_object_get(v, "id"));
            if (mid && sock_addr_parse(mid, &have, e, sizeof e) == 0 && sock_addr_equal(&want, &have))
                found = json_incref(v);
        }
    json_decref(pj);
    return found;
}

static void h_add_backend(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    if (!admin_ok(c, rt))
        return;
    const char *pool = http_ctx_param(c, "pool");
    size_t len;
    const char *body = http_ctx_body(c, &len);
    gw_config next;
    gw_api_result res;
    pthread_mutex_lock(&rt->edit_lock);
    if (gw_api_add_backend(&rt->cfg, pool, body, len, &next, &res) < 0) {
        pthread_mutex_unlock(&rt->edit_lock);
        reply_result(c, &res);
        return;
    }
    /* The address as the config has it: the API id is the member name. */
    const gw_pool_cfg *pc = &next.pools[gw_config_find_pool(&next, pool)];
    char id[GW_NAME_MAX];
    snprintf(id, sizeof id, "%s", pc->backends[pc->nbackends - 1].address);
    if (!publish_or_fail(c, rt, &next)) {
        pthread_mutex_unlock(&rt->edit_lock);
        return;
    }
    gw_member *added = gw_snap_find_member(gw_rcu_read(&rt->rcu), pool, id);
    if (added)
        atomic_store(&added->dynamic, true);
    json_t *j = member_json(rt, pool, id);
    pthread_mutex_unlock(&rt->edit_lock);
    http_audit(c, NULL, "backend %s added to pool %s", id, pool);
    reply_json(c, 201, j ? j : json_pack("{s:s}", "id", id));
}

static void h_patch_backend(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    if (!admin_ok(c, rt))
        return;
    const char *pool = http_ctx_param(c, "pool"), *id = http_ctx_param(c, "id");
    size_t len;
    const char *body = http_ctx_body(c, &len);
    gw_config next;
    gw_api_result res;
    bool changed = false;
    pthread_mutex_lock(&rt->edit_lock);
    if (gw_api_patch_backend(&rt->cfg, gw_rcu_read(&rt->rcu), pool, id, body, len,
                             &next, &changed, &res) < 0) {
        pthread_mutex_unlock(&rt->edit_lock);
        reply_result(c, &res);
        return;
    }
    if (changed && !publish_or_fail(c, rt, &next)) {
        pthread_mutex_unlock(&rt->edit_lock);
        return;
    }
    if (!changed)
        gw_statefile_save(rt);          /* a state change does not publish */
    json_t *j = member_json(rt, pool, id);
    pthread_mutex_unlock(&rt->edit_lock);
    http_audit(c, NULL, "backend %s in pool %s changed (weight or state)", id, pool);
    reply_json(c, 200, j ? j : json_pack("{s:s}", "id", id));
}

/* Removes a backend now (caller holds the lock). */
static int remove_now(gw_rt *rt, const char *pool, const char *id, gw_api_result *res)
{
    gw_config next;
    if (gw_api_remove_backend(&rt->cfg, pool, id, &next, res) < 0)
        return -1;
    char err[400];
    if (gw_rt_publish(rt, &next, err, sizeof err) < 0) {
        cfg_free(&gw_config_schema, &next);
        res->status = 500;
        snprintf(res->msg, sizeof res->msg, "%s", err);
        return -1;
    }
    return 0;
}

static void h_delete_backend(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    if (!admin_ok(c, rt))
        return;
    const char *pool = http_ctx_param(c, "pool"), *id = http_ctx_param(c, "id");
    const char *drain = http_ctx_query(c, "drain");
    uint64_t drain_us = 0;
    char err[128];
    if (drain && cfg_parse_duration(drain, &drain_us, err, sizeof err) < 0) {
        http_reply_error(c, 400, "drain", "expected a duration such as 30s: %s", err);
        return;
    }
    gw_api_result res;
    pthread_mutex_lock(&rt->edit_lock);
    gw_member *m = gw_snap_find_member(gw_rcu_read(&rt->rcu), pool, id);
    if (!m) {
        pthread_mutex_unlock(&rt->edit_lock);
        http_reply_error(c, 404, gw_config_find_pool(&rt->cfg, pool) < 0 ? "pool" : "backend",
                         "no backend '%s' in pool '%s'", id, pool);
        return;
    }
    if (drain_us == 0 || (atomic_load(&m->inflight) == 0 && atomic_load(&m->tunnels) == 0)) {
        int rc = remove_now(rt, pool, id, &res);
        pthread_mutex_unlock(&rt->edit_lock);
        if (rc < 0) {
            reply_result(c, &res);
            return;
        }
        http_audit(c, NULL, "backend %s removed from pool %s", id, pool);
        char body[200];
        int n = snprintf(body, sizeof body, "{\"id\":\"%s\",\"state\":\"removed\"}", id);
        http_reply_json(c, 200, body, (size_t)n);
        return;
    }
    /* Drain: no new requests from now on; removal when idle or late. */
    for (gw_drain *d = rt->drains; d; d = d->next)
        if (d->m == m) {
            pthread_mutex_unlock(&rt->edit_lock);
            http_reply_error(c, 409, "backend", "'%s' is already draining", id);
            return;
        }
    gw_drain *d = calloc(1, sizeof *d);
    if (!d) {
        pthread_mutex_unlock(&rt->edit_lock);
        http_reply_error(c, 500, NULL, "out of memory");
        return;
    }
    snprintf(d->pool, sizeof d->pool, "%s", pool);
    snprintf(d->id, sizeof d->id, "%s", id);
    d->m = m;
    gw_member_ref(m);
    d->deadline_us = ev_monotonic_us() + drain_us;
    d->next = rt->drains;
    rt->drains = d;
    atomic_store(&m->state, GW_ST_DRAINING);
    uint32_t inflight = atomic_load(&m->inflight);
    gw_statefile_save(rt);
    pthread_mutex_unlock(&rt->edit_lock);
    http_audit(c, NULL, "backend %s draining from pool %s (%u in flight, up to %s)",
               id, pool, inflight, drain);
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"id\":\"%s\",\"state\":\"draining\",\"in_flight\":%u,\"drain_s\":%.3f}",
                     id, inflight, (double)drain_us / 1e6);
    http_reply_json(c, 202, body, (size_t)n);
}

void gw_admin_tick(gw_rt *rt)
{
    pthread_mutex_lock(&rt->edit_lock);
    uint64_t now = ev_monotonic_us();
    gw_drain **pp = &rt->drains;
    while (*pp) {
        gw_drain *d = *pp;
        /* Open tunnels hold a drain too, up to its time. */
        bool idle = atomic_load(&d->m->inflight) == 0 && atomic_load(&d->m->tunnels) == 0;
        if (!idle && now < d->deadline_us) {
            pp = &d->next;
            continue;
        }
        gw_api_result res;
        /* Still configured (not removed by another call meanwhile)? */
        if (gw_snap_find_member(gw_rcu_read(&rt->rcu), d->pool, d->id) == d->m) {
            if (remove_now(rt, d->pool, d->id, &res) < 0)
                log_warn("drain of %s: %s", d->id, res.msg);
            else
                log_info("drained %s from pool %s (%s)", d->id, d->pool,
                         idle ? "idle" : "drain time over");
        }
        *pp = d->next;
        gw_member_unref(d->m);
        free(d);
    }
    gw_rcu_reclaim(&rt->rcu);
    pthread_mutex_unlock(&rt->edit_lock);
}

static void h_routes(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    if (!authorized(c, rt))
        return;
    pthread_mutex_lock(&rt->edit_lock);
    json_t *j = gw_api_routes_json(&rt->cfg);
    pthread_mutex_unlock(&rt->edit_lock);
    reply_json(c, 200, j);
}

static void h_put_routes(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    if (!admin_ok(c, rt))
        return;
    size_t len;
    const char *body = http_ctx_body(c, &len);
    gw_config next;
    gw_api_result res;
    pthread_mutex_lock(&rt->edit_lock);
    if (gw_api_put_routes(&rt->cfg, body, len, &next, &res) < 0) {
        pthread_mutex_unlock(&rt->edit_lock);
        reply_result(c, &res);
        return;
    }
    if (!publish_or_fail(c, rt, &next)) {
        pthread_mutex_unlock(&rt->edit_lock);
        return;
    }
    json_t *j = gw_api_routes_json(&rt->cfg);
    pthread_mutex_unlock(&rt->edit_lock);
    http_audit(c, NULL, "routes replaced (%zu routes)", rt->cfg.nroutes);
    reply_json(c, 200, j);
}

static void h_audit(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    if (authorized(c, rt))
        http_reply_audit(c);
}

/* --- the cache: usage and purges (gw_cache_store.c) ------------------- */

static void h_cache(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    if (!authorized(c, rt))
        return;
    gw_cache_stats *st = gw_cstore_stats(rt->cache);
    uint64_t bytes, objects;
    gw_cstore_usage(rt->cache, &bytes, &objects);
    reply_json(c, 200, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                                 "bytes", (json_int_t)bytes, "objects", (json_int_t)objects,
                                 "size", (json_int_t)rt->cfg.cache_size,
                                 "hits", (json_int_t)atomic_load(&st->hits),
                                 "misses", (json_int_t)atomic_load(&st->misses),
                                 "stale", (json_int_t)atomic_load(&st->stale),
                                 "revalidations", (json_int_t)atomic_load(&st->revalidations),
                                 "coalesced", (json_int_t)atomic_load(&st->coalesced),
                                 "stores", (json_int_t)atomic_load(&st->stores),
                                 "evictions", (json_int_t)atomic_load(&st->evictions),
                                 "purged", (json_int_t)atomic_load(&st->purged),
                                 "too_big", (json_int_t)atomic_load(&st->too_big),
                                 "uncacheable", (json_int_t)atomic_load(&st->uncacheable),
                                 "renditions", (json_int_t)atomic_load(&st->renditions)));
}

/* {"url": "http://host/path?q"} (every variant of that key), {"prefix":
 * "http://host/static/"} or {"tag": "t"} (Cache-Tag / Surrogate-Key). A
 * key is scheme, Host as the client sent it (lower-cased) and the target;
 * a purge by url or prefix takes the http and the https copies alike (one
 * resource served on both listeners: an operator purges it, not a scheme). */
static size_t cache_purge_both(gw_cstore *st, const char *val, size_t n, bool prefix)
{
    size_t (*purge)(gw_cstore *, const char *, size_t) = prefix ? gw_cstore_purge_prefix
                                                                : gw_cstore_purge;
    size_t rest = strncasecmp(val, "https://", 8) == 0 ? 8
                  : strncasecmp(val, "http://", 7) == 0 ? 7 : 0;
    if (!rest)
        return purge(st, val, n);
    size_t total = 0;
    static const char *const schemes[] = { "http://", "https://" };
    for (int i = 0; i < 2; i++) {
        size_t sl = strlen(schemes[i]), m = sl + n - rest;
        char *k = malloc(m + 1);
        if (!k)
            continue;
        memcpy(k, schemes[i], sl);
        memcpy(k + sl, val + rest, n - rest);
        k[m] = '\0';
        total += purge(st, k, m);
        free(k);
    }
    return total;
}

static void h_cache_purge(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    if (!admin_ok(c, rt))
        return;
    size_t len;
    const char *body = http_ctx_body(c, &len);
    json_error_t je;
    json_t *j = json_loadb(body ? body : "", len, 0, &je);
    static const char *const kinds[] = { "url", "prefix", "tag" };
    const char *kind = NULL, *val = NULL;
    for (size_t i = 0; j && json_is_object(j) && i < 3; i++) {
        json_t *v = json_object_get(j, kinds[i]);
        if (v && !kind) {
            kind = kinds[i];
            val = json_string_value(v);
        }
    }
    if (!kind || !val || !*val || json_object_size(j) != 1) {
        json_decref(j);
        http_reply_error(c, 400, kind ? kind : "url", "expected one of url, prefix or tag, a non-empty string");
        return;
    }
    size_t n = strlen(val), purged;
    if (kind[0] == 'u' || kind[0] == 'p')
        purged = cache_purge_both(rt->cache, val, n, kind[0] == 'p');
    else
        purged = gw_cstore_purge_tag(rt->cache, val, n);
    http_audit(c, NULL, "cache purge by %s %s: %zu responses", kind, val, purged);
    json_t *out = json_pack("{s:s,s:s,s:I}", "by", kind, "value", val, "purged", (json_int_t)purged);
    json_decref(j);                  /* val lives in j */
    reply_json(c, 200, out);
}

/* The TLS listener's certificates: read again from their files. A file
 * that does not load is refused with the reason (422) and the running
 * certificates stay; open connections keep theirs either way. The admin
 * listener's own certificate (admin_tls_cert) is reloaded too. */
static void h_tls_reload(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    if (!admin_ok(c, rt))
        return;
    char err[700], desc[400];
    pthread_mutex_lock(&rt->edit_lock);
    int rc = gw_tls_reload(rt, &rt->cfg, err, sizeof err);
    pthread_mutex_unlock(&rt->edit_lock);
    if (rc < 0) {
        log_error("TLS reload refused, keeping the old certificates: %s", err);
        http_reply_error(c, rt->tls ? 422 : 409, "tls_cert", "%s", err);
        return;
    }
    if (rt->admin && http_server_tls(rt->admin) && http_server_tls_reload(rt->admin, err, sizeof err) < 0)
        log_error("admin TLS reload refused, keeping the old certificate: %s", err);
    gw_tls_describe(rt, desc, sizeof desc);
    http_audit(c, NULL, "TLS certificates reloaded: %s", desc);
    log_info("TLS certificates reloaded through the API: %s", desc);
    json_t *j = json_pack("{s:b,s:s}", "reloaded", 1, "certificate", desc);
    reply_json(c, 200, j);
}

static void h_tls(http_ctx *c, void *arg)
{
    gw_rt *rt = arg;
    if (!authorized(c, rt))
        return;
    char desc[400];
    gw_tls_describe(rt, desc, sizeof desc);
    json_t *j = json_pack("{s:b,s:s,s:s}", "enabled", rt->tls != NULL, "certificate", desc,
                          "listen", rt->cfg.tls_listen ? rt->cfg.tls_listen : "");
    reply_json(c, 200, j);
}

static const char *const open_paths[] = { "/health", "/metrics", NULL };

static http_router *admin_router;

int gw_admin_start(gw_rt *rt, char *err, size_t errlen)
{
    if (!rt->cfg.admin)
        return 0;
    http_server_opts o;
    memset(&o, 0, sizeof o);
    if (sock_addr_parse(rt->cfg.admin, &o.listen, err, errlen) < 0)
        return -1;
    if (http_listen_check(&o.listen, rt->cfg.admin_token && *rt->cfg.admin_token, "gateway.admin",
                          "admin_token (HSCALE_GATEWAY_ADMIN_TOKEN)", err, errlen) < 0)
        return -1;
    http_router *r = http_router_new();
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    http_route(r, "GET", "/health", h_health, rt);
    http_route(r, "GET", "/metrics", h_metrics, rt);
    http_route(r, "GET", "/api/v1/pools", h_pools, rt);
    http_route(r, "GET", "/api/v1/pools/{pool}", h_pool, rt);
    http_route(r, "POST", "/api/v1/pools/{pool}/backends", h_add_backend, rt);
    http_route(r, "PATCH", "/api/v1/pools/{pool}/backends/{id}", h_patch_backend, rt);
    http_route(r, "DELETE", "/api/v1/pools/{pool}/backends/{id}", h_delete_backend, rt);
    http_route(r, "GET", "/api/v1/routes", h_routes, rt);
    http_route(r, "PUT", "/api/v1/routes", h_put_routes, rt);
    http_route(r, "GET", "/api/v1/audit", h_audit, rt);
    http_route(r, "GET", "/api/v1/cache", h_cache, rt);
    http_route(r, "POST", "/api/v1/cache/purge", h_cache_purge, rt);
    http_route(r, "GET", "/api/v1/tls", h_tls, rt);
    http_route(r, "POST", "/api/v1/tls/reload", h_tls_reload, rt);
    o.name = "gateway-admin";
    o.workers = 1;
    o.router = r;
    o.limits.max_body = 1 << 20;
    o.limits.max_headers = 32;
    o.limits.max_head = 16384;
    o.guard = (http_guard_opts){ .enabled = true, .allowed_hosts = rt->cfg.admin_allowed_hosts,
                                 .nallowed_hosts = rt->cfg.nadmin_allowed_hosts,
                                 .open_paths = open_paths,
                                 .hosts_setting = "gateway.admin_allowed_hosts" };
    o.tls_cert = rt->cfg.admin_tls_cert;
    o.tls_key = rt->cfg.admin_tls_key;
    rt->admin = http_server_new(&o, err, errlen);
    if (!rt->admin || http_server_start(rt->admin, err, errlen) < 0) {
        http_router_free(r);
        return -1;
    }
    admin_router = r;
    return 0;
}

void gw_admin_stop(gw_rt *rt)
{
    if (rt->admin) {
        http_server_stop(rt->admin, 1000);
        http_server_free(rt->admin);
        rt->admin = NULL;
    }
    http_router_free(admin_router);
    admin_router = NULL;
    pthread_mutex_lock(&rt->edit_lock);
    while (rt->drains) {
        gw_drain *d = rt->drains;
        rt->drains = d->next;
        gw_member_unref(d->m);
        free(d);
    }
    pthread_mutex_unlock(&rt->edit_lock);
}
