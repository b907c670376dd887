/* ctl_gwclient.c -- the control plane's client of the gateway runtime API.
 *
 * Blocking calls over http_fetch (one keep-alive connection per calling
 * thread). Every failure comes back as a message that names the call and
 * carries the gateway's own words ("register 127.0.0.1:9001 in pool app:
 * 400 weight: expected an integer 1..1000"), so an operator reading the
 * control plane's log or API sees why the gateway refused. */
#include "control/ctl_instances.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/client.h"

int ctl_gw_init(ctl_gw *g, const char *url, const char *token, char *err, size_t errlen)
{
    memset(g, 0, sizeof *g);
    g->timeout_ms = 5000;
    if (!url || !url[0]) {
        snprintf(err, errlen, "gateway: expected an admin URL such as http://127.0.0.1:8082");
        return -1;
    }
    const char *scheme = strstr(url, "://") ? "" : "http://";
    int n = snprintf(g->base, sizeof g->base, "%s%s", scheme, url);
    if (n < 0 || (size_t)n >= sizeof g->base) {
        snprintf(err, errlen, "gateway: URL too long");
        return -1;
    }
    while (n > 0 && g->base[n - 1] == '/')
        g->base[--n] = '\0';
    http_url u;
    char e[256];
    if (http_url_parse(g->base, &u, e, sizeof e) < 0) {
        snprintf(err, errlen, "gateway: %s", e);
        return -1;
    }
    if (token && token[0]) {
        if (strpbrk(token, "\r\n")) {
            snprintf(err, errlen, "gateway_token: must not hold a line break");
            return -1;
        }
        n = snprintf(g->auth, sizeof g->auth, "Authorization: Bearer %s\r\n", token);
        if (n < 0 || (size_t)n >= sizeof g->auth) {
            snprintf(err, errlen, "gateway_token: too long");
            return -1;
        }
    }
    return 0;
}

/* Path segments hold pool names and "host:port" ids: keep unreserved bytes
 * and ':' as they are, percent-encode the rest. */
static void seg_encode(buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
            || *p == '-' || *p == '_' || *p == '.' || *p == '~' || *p == ':') {
            buf_append(b, p, 1);
        } else {
            char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
            buf_append(b, e, 3);
        }
    }
}

static void member_url(buf *b, const ctl_gw *g, const char *pool, const char *id)
{
    buf_printf(b, "%s/api/v1/pools/", g->base);
    seg_encode(b, pool);
    if (id) {
        buf_append_str(b, "/backends/");
        seg_encode(b, id);
    }
}

/* The gateway's error body is {"error": msg, "field": f}; fall back to the
 * raw start of the body for anything else. */
static void gw_message(const http_result *r, char *out, size_t outlen)
{
    json_t *j = json_loadb(buf_head(&r->body), r->body.len, 0, NULL);
    const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
    const char *field = j ? json_string_value(json_object_get(j, "field")) : NULL;
    if (msg && field)
        snprintf(out, outlen, "%d %s: %s", r->status, field, msg);
    else if (msg)
        snprintf(out, outlen, "%d %s", r->status, msg);
    else
        snprintf(out, outlen, "%d %.*s", r->status, (int)(r->body.len > 200 ? 200 : r->body.len),
                 buf_head(&r->body));
    json_decref(j);
}

/* One call: fills r, returns the status or -1 with err (transport). */
static int call(const ctl_gw *g, const char *method, const char *url, const char *body,
                http_result *r, const char *what, char *err, size_t errlen)
{
    char hdr[400], e[256];
    /* The admin API takes changes only as JSON, body or not. */
    bool change = body || (strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0);
    snprintf(hdr, sizeof hdr, "%s%s", g->auth, change ? "Content-Type: application/json\r\n" : "");
    if (http_fetch(method, url, hdr, body, body ? strlen(body) : 0, g->timeout_ms, r,
                   e, sizeof e) < 0) {
        snprintf(err, errlen, "%s: gateway %s unreachable: %s", what, g->base, e);
        return -1;
    }
    return r->status;
}

static int fail(const http_result *r, const char *what, char *err, size_t errlen)
{
    char m[300];
    gw_message(r, m, sizeof m);
    snprintf(err, errlen, "%s: gateway answered %s", what, m);
    return -1;
}

int ctl_gw_register(const ctl_gw *g, const char *pool, const char *addr, int weight,
                    bool backup, char *err, size_t errlen)
{
    char what[160];
    snprintf(what, sizeof what, "register %s in pool %s", addr, pool);
    buf url;
    buf_init(&url);
    member_url(&url, g, pool, NULL);
    buf_append_str(&url, "/backends");
    buf_append(&url, "", 1);
    json_t *j = json_pack("{s:s, s:i, s:b}", "address", addr, "weight", weight, "backup", backup);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    http_result r;
    http_result_init(&r);
    int rc = -1;
    if (!body)
        snprintf(err, errlen, "%s: out of memory", what);
    else {
        int st = call(g, "POST", buf_head(&url), body, &r, what, err, errlen);
        if (st == 200 || st == 201)
            rc = 0;
        else if (st == 409)
            rc = 1;
        else if (st > 0)
            rc = fail(&r, what, err, errlen);
    }
    free(body);
    http_result_free(&r);
    buf_free(&url);
    return rc;
}

static int patch(const ctl_gw *g, const char *pool, const char *id, const char *body,
                 const char *what, char *err, size_t errlen)
{
    buf url;
    buf_init(&url);
    member_url(&url, g, pool, id);
    buf_append(&url, "", 1);
    http_result r;
    http_result_init(&r);
    int st = call(g, "PATCH", buf_head(&url), body, &r, what, err, errlen);
    int rc = st == 200 || st == 204 ? 0 : st < 0 ? -1 : fail(&r, what, err, errlen);
    http_result_free(&r);
    buf_free(&url);
    return rc;
}

int ctl_gw_set_weight(const ctl_gw *g, const char *pool, const char *id, int weight,
                      char *err, size_t errlen)
{
    char body[64], what[160];
    snprintf(body, sizeof body, "{\"weight\":%d}", weight);
    snprintf(what, sizeof what, "set weight of %s in pool %s", id, pool);
    return patch(g, pool, id, body, what, err, errlen);
}

int ctl_gw_set_state(const ctl_gw *g, const char *pool, const char *id, const char *state,
                     char *err, size_t errlen)
{
    char what[160];
    snprintf(what, sizeof what, "set state of %s in pool %s", id, pool);
    json_t *j = json_pack("{s:s}", "state", state);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!body) {
        snprintf(err, errlen, "%s: out of memory", what);
        return -1;
    }
    int rc = patch(g, pool, id, body, what, err, errlen);
    free(body);
    return rc;
}

int ctl_gw_drain(const ctl_gw *g, const char *pool, const char *id, uint64_t drain_us,
                 char *err, size_t errlen)
{
    char what[160];
    snprintf(what, sizeof what, "remove %s from pool %s", id, pool);
    buf url;
    buf_init(&url);
    member_url(&url, g, pool, id);
    /* Whole milliseconds: the gateway parses any duration. */
    if (drain_us)
        buf_printf(&url, "?drain=%llums", (unsigned long long)((drain_us + 999) / 1000));
    buf_append(&url, "", 1);
    http_result r;
    http_result_init(&r);
    int st = call(g, "DELETE", buf_head(&url), NULL, &r, what, err, errlen);
    int rc;
    if (st < 0)
        rc = -2;
    else if (st == 200 || st == 204)
        rc = 0;
    else if (st == 202)
        rc = 1;
    else if (st == 409)
        rc = 1;   /* already draining: the gateway will finish it */
    else if (st == 404) {
        json_t *j = json_loadb(buf_head(&r.body), r.body.len, 0, NULL);
        const char *field = j ? json_string_value(json_object_get(j, "field")) : NULL;
        /* Only a missing member counts as done; a missing pool is an error. */
        rc = field && strcmp(field, "pool") == 0 ? fail(&r, what, err, errlen) : 0;
        json_decref(j);
    } else
        rc = fail(&r, what, err, errlen);
    http_result_free(&r);
    buf_free(&url);
    return rc;
}

static void copy_str(char *out, size_t outlen, json_t *v)
{
    const char *s = json_string_value(v);
    snprintf(out, outlen, "%s", s ? s : "");
}

int ctl_gw_members(const ctl_gw *g, const char *pool, ctl_gw_member *out, size_t max,
                   size_t *n, char *err, size_t errlen)
{
    char what[160];
    snprintf(what, sizeof what, "list pool %s", pool);
    *n = 0;
    buf url;
    buf_init(&url);
    member_url(&url, g, pool, NULL);
    buf_append(&url, "", 1);
    http_result r;
    http_result_init(&r);
    int rc = -1;
    int st = call(g, "GET", buf_head(&url), NULL, &r, what, err, errlen);
    if (st == 200) {
        json_error_t je;
        json_t *j = json_loadb(buf_head(&r.body), r.body.len, 0, &je);
        json_t *members = j ? json_object_get(j, "members") : NULL;
        if (!json_is_array(members)) {
            snprintf(err, errlen, "%s: expected {\"members\":[...]}, got %s", what,
                     j ? "another shape" : je.text);
        } else {
            size_t i;
            json_t *m;
            json_array_foreach(members, i, m) {
                if (i < max) {
                    ctl_gw_member *o = &out[i];
                    memset(o, 0, sizeof *o);
                    copy_str(o->id, sizeof o->id, json_object_get(m, "id"));
                    copy_str(o->address, sizeof o->address, json_object_get(m, "address"));
                    copy_str(o->state, sizeof o->state, json_object_get(m, "state"));
                    o->weight = (int)json_integer_value(json_object_get(m, "weight"));
                    o->backup = json_is_true(json_object_get(m, "backup"));
                    o->healthy = json_is_true(json_object_get(m, "healthy"));
                    o->in_flight = (long)json_integer_value(json_object_get(m, "in_flight"));
                    o->total = (uint64_t)json_integer_value(json_object_get(m, "total"));
                    o->restored = json_is_true(json_object_get(m, "restored"));
                }
            }
            *n = json_array_size(members);
            rc = 0;
        }
        json_decref(j);
    } else if (st > 0)
        rc = fail(&r, what, err, errlen);
    http_result_free(&r);
    buf_free(&url);
    return rc;
}
