/* ctl_fakegw.h -- a small fake gateway admin API for the control plane's
 * unit tests, on http/server.h (a real HTTP peer on loopback). It keeps
 * one pool, "app", and speaks the admin contract: POST backends (201, 409,
 * 400 naming the field), PATCH weight/state, DELETE with ?drain= (202 while
 * the member has requests in flight, which the test sets), GET pool, and a
 * bearer fg_token. Included by one test file each: everything is static. */
#ifndef HSCALE_TESTS_CTL_FAKEGW_H
#define HSCALE_TESTS_CTL_FAKEGW_H

#include <criterion/criterion.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sock.h"
#include "http/client.h"
#include "http/server.h"

typedef struct fake_member {
    char addr[64];
    int  weight;
    char state[16];
    int  in_flight;
} fake_member;

static pthread_mutex_t fg_mu = PTHREAD_MUTEX_INITIALIZER;
static fake_member fg_members[16];
static int fg_n;
static char fg_last_query[256];
static char fg_last_body[512];
static const char *fg_token = "s3cret";
static bool fg_fail_delete;   /* DELETE answers 503 while set */

static http_router *fg_router;
static http_server *fg_srv;
static int fg_port;

static bool auth_ok(http_ctx *c)
{
    const char *h = http_ctx_header(c, "Authorization");
    char want[64];
    snprintf(want, sizeof want, "Bearer %s", fg_token);
    if (h && strcmp(h, want) == 0)
        return true;
    http_reply_error(c, 401, "Authorization", "a bearer fg_token is required");
    return false;
}

static int find(const char *addr)
{
    for (int i = 0; i < fg_n; i++)
        if (strcmp(fg_members[i].addr, addr) == 0)
            return i;
    return -1;
}

static bool pool_ok(http_ctx *c)
{
    if (strcmp(http_ctx_param(c, "pool"), "app") == 0)
        return true;
    http_reply_error(c, 404, "pool", "no pool named '%s'", http_ctx_param(c, "pool"));
    return false;
}

static void save_body(http_ctx *c)
{
    size_t len;
    const char *b = http_ctx_body(c, &len);
    snprintf(fg_last_body, sizeof fg_last_body, "%.*s", (int)len, b ? b : "");
}

static void h_pool(http_ctx *c, void *arg)
{
    if (!auth_ok(c) || !pool_ok(c))
        return;
    pthread_mutex_lock(&fg_mu);
    json_t *arr = json_array();
    for (int i = 0; i < fg_n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:i, s:b, s:s, s:b, s:i, s:i}",
            "id", fg_members[i].addr, "address", fg_members[i].addr, "weight", fg_members[i].weight,
            "backup", 0, "state", fg_members[i].state, "healthy", 1,
            "in_flight", fg_members[i].in_flight, "total", 7));
    pthread_mutex_unlock(&fg_mu);
    json_t *j = json_pack("{s:s, s:s, s:o}", "name", "app", "algorithm", "round_robin",
                          "members", arr);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    http_reply_json(c, 200, s, strlen(s));
    free(s);
}

static void h_add(http_ctx *c, void *arg)
{
    if (!auth_ok(c) || !pool_ok(c))
        return;
    save_body(c);
    size_t len;
    const char *b = http_ctx_body(c, &len);
    json_t *j = json_loadb(b, len, 0, NULL);
    const char *addr = json_string_value(json_object_get(j, "address"));
    json_t *w = json_object_get(j, "weight");
    if (!addr || !json_is_integer(w) || json_integer_value(w) < 1) {
        json_decref(j);
        http_reply_error(c, 400, "weight", "expected an integer 1..1000");
        return;
    }
    pthread_mutex_lock(&fg_mu);
    int status = 201;
    if (find(addr) >= 0)
        status = 409;
    else {
        fake_member *m = &fg_members[fg_n++];
        snprintf(m->addr, sizeof m->addr, "%s", addr);
        m->weight = (int)json_integer_value(w);
        snprintf(m->state, sizeof m->state, "ready");
    }
    pthread_mutex_unlock(&fg_mu);
    char copy[64];
    snprintf(copy, sizeof copy, "%s", addr);
    json_decref(j);
    if (status == 409)
        http_reply_error(c, 409, "address", "'%s' is already in pool app", copy);
    else
        http_reply_json(c, 201, "{}", 2);
}

static void h_patch(http_ctx *c, void *arg)
{
    if (!auth_ok(c) || !pool_ok(c))
        return;
    save_body(c);
    size_t len;
    const char *b = http_ctx_body(c, &len);
    json_t *j = json_loadb(b, len, 0, NULL);
    pthread_mutex_lock(&fg_mu);
    int i = find(http_ctx_param(c, "id"));
    const char *st = json_string_value(json_object_get(j, "state"));
    if (i >= 0 && json_is_integer(json_object_get(j, "weight")))
        fg_members[i].weight = (int)json_integer_value(json_object_get(j, "weight"));
    if (i >= 0 && st)
        snprintf(fg_members[i].state, sizeof fg_members[i].state, "%s", st);
    pthread_mutex_unlock(&fg_mu);
    json_decref(j);
    if (i < 0)
        http_reply_error(c, 404, "backend", "no backend '%s'", http_ctx_param(c, "id"));
    else
        http_reply_json(c, 200, "{}", 2);
}

static void h_delete(http_ctx *c, void *arg)
{
    if (!auth_ok(c) || !pool_ok(c))
        return;
    pthread_mutex_lock(&fg_mu);
    bool refuse = fg_fail_delete;
    pthread_mutex_unlock(&fg_mu);
    if (refuse) {
        http_reply_error(c, 503, NULL, "admin API busy");
        return;
    }
    const char *drain = http_ctx_query(c, "drain");
    snprintf(fg_last_query, sizeof fg_last_query, "%s", drain ? drain : "");
    pthread_mutex_lock(&fg_mu);
    int i = find(http_ctx_param(c, "id"));
    int status = 404;
    if (i >= 0 && drain && fg_members[i].in_flight > 0) {
        snprintf(fg_members[i].state, sizeof fg_members[i].state, "draining");
        status = 202;
    } else if (i >= 0) {
        fg_members[i] = fg_members[--fg_n];
        status = 200;
    }
    pthread_mutex_unlock(&fg_mu);
    if (status == 404)
        http_reply_error(c, 404, "backend", "no backend '%s' in pool app", http_ctx_param(c, "id"));
    else
        http_reply_json(c, status, "{\"state\":\"draining\"}", 20);
}

static void fakegw_start(void)
{
    fg_fail_delete = false;
    fg_n = 0;
    fg_router = http_router_new();
    http_route(fg_router, "GET", "/api/v1/pools/{pool}", h_pool, NULL);
    http_route(fg_router, "POST", "/api/v1/pools/{pool}/backends", h_add, NULL);
    http_route(fg_router, "PATCH", "/api/v1/pools/{pool}/backends/{id}", h_patch, NULL);
    http_route(fg_router, "DELETE", "/api/v1/pools/{pool}/backends/{id}", h_delete, NULL);
    http_server_opts o;
    memset(&o, 0, sizeof o);
    o.name = "fakegw";
    char err[256];
    cr_assert_eq(sock_addr_parse("127.0.0.1:0", &o.listen, err, sizeof err), 0);
    o.workers = 1;
    o.router = fg_router;
    fg_srv = http_server_new(&o, err, sizeof err);
    cr_assert_not_null(fg_srv, "%s", err);
    cr_assert_eq(http_server_start(fg_srv, err, sizeof err), 0, "%s", err);
    fg_port = http_server_port(fg_srv);
}

static void fakegw_stop(void)
{
    http_fetch_pool_clear();
    http_server_stop(fg_srv, 1000);
    http_server_free(fg_srv);
    http_router_free(fg_router);
}

#endif
