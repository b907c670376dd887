/* ctl_queue_parse.c -- the queue policy's parsers of outside input: a Redis
 * URL, a Prometheus instant query's answer, a number inside any JSON
 * document. Pure and allocation-bounded (jansson's tree of the body);
 * fuzzed by tests/fuzz/fuzz_queue.c.
 *
 * Invariant: a parse that returns 0 gives a finite depth >= 0; anything
 * else (NaN, infinities, negative, not a number, several series) is an
 * error naming what was expected, so the policy holds the count instead of
 * acting on a number nobody meant. */
#include "control/ctl_autoscale.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "%XX" bytes of s[0..n) into out (NUL-terminated); -1 on a bad escape or
 * an overflow. */
static int pct_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            char hex[3] = { s[i + 1], s[i + 2], 0 };
            char *end;
            long v = strtol(hex, &end, 16);
            if (*end || !hex[0] || !hex[1] || v == 0)
                return -1;
            c = (char)v;
            i += 2;
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

int ctl_redis_url_parse(const char *url, ctl_redis_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    const char *p = url;
    if (!p || strncmp(p, "redis://", 8) != 0) {
        snprintf(err, errlen, "expected redis://[[user]:password@]host[:port][/db], got '%.100s'",
                 p ? p : "");
        return -1;
    }
    p += 8;
    const char *end = p + strcspn(p, "/?#");
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            snprintf(err, errlen, "credentials need a ':' (redis://:password@host or "
                     "redis://user:password@host)");
            return -1;
        }
        if (pct_decode(p, (size_t)(colon - p), out->user, sizeof out->user) < 0
            || pct_decode(colon + 1, (size_t)(at - colon - 1), out->password, sizeof out->password) < 0) {
            snprintf(err, errlen, "bad user or password (too long or a bad %%XX escape)");
            return -1;
        }
        p = at + 1;
    }
    const char *hend = end, *colon = NULL;
    if (*p == '[') {                       /* [v6] */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb) {
            snprintf(err, errlen, "unterminated '[' in the host");
            return -1;
        }
        snprintf(out->host, sizeof out->host, "%.*s", (int)(rb - p - 1), p + 1);
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        if (!colon && rb + 1 != end) {
            snprintf(err, errlen, "expected ':port' after the ']'");
            return -1;
        }
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        hend = colon ? colon : end;
        if ((size_t)(hend - p) >= sizeof out->host) {
            snprintf(err, errlen, "host name too long");
            return -1;
        }
        snprintf(out->host, sizeof out->host, "%.*s", (int)(hend - p), p);
    }
    if (!out->host[0]) {
        snprintf(err, errlen, "expected a host after redis://");
        return -1;
    }
    if (colon) {
        char num[16];
        size_t nl = (size_t)(end - colon - 1);
        char *e;
        if (nl == 0 || nl >= sizeof num) {
            snprintf(err, errlen, "expected a port number after ':'");
            return -1;
        }
        memcpy(num, colon + 1, nl);
        num[nl] = '\0';
        long port = strtol(num, &e, 10);
        if (*e || port <= 0 || port > 65535) {
            snprintf(err, errlen, "expected a port 1..65535, got '%s'", num);
            return -1;
        }
        out->port = (int)port;
    }
    if (*end == '/' && end[1]) {
        char *e;
        errno = 0;
        long db = strtol(end + 1, &e, 10);
        if (*e || e == end + 1 || db < 0 || db > 1000000 || errno) {
            snprintf(err, errlen, "expected a database number after the host, got '%.40s'", end + 1);
            return -1;
        }
        out->db = (int)db;
    } else if (*end && !(*end == '/' && !end[1])) {
        snprintf(err, errlen, "unexpected '%.40s' after the host (query options are not read)", end);
        return -1;
    }
    return 0;
}

/* A depth from a JSON value: a number, or a string holding one. */
static int depth_of(const json_t *v, const char *where, double *out, char *err, size_t errlen)
{
    double d;
    if (json_is_number(v)) {
        d = json_number_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *e;
        d = strtod(s, &e);
        if (e == s || *e) {
            snprintf(err, errlen, "%s: expected a number, got the string '%.60s'", where, s);
            return -1;
        }
    } else {
        const char *t = json_is_null(v) ? "null" : json_is_boolean(v) ? "a boolean"
                      : json_is_object(v) ? "an object" : "an array";
        snprintf(err, errlen, "%s: expected a number, got %s", where, t);
        return -1;
    }
    if (!isfinite(d) || d < 0) {
        snprintf(err, errlen, "%s: expected a depth of 0 or more, got %g", where, d);
        return -1;
    }
    *out = d;
    return 0;
}

static json_t *load(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY, &je);
    if (!root)
        snprintf(err, errlen, "not JSON: %s at line %d", je.text, je.line);
    return root;
}

int ctl_prom_value_parse(const char *body, size_t len, double *out, char *err, size_t errlen)
{
    json_t *root = load(body, len, err, errlen);
    if (!root)
        return -1;
    int rc = -1;
    const char *status = json_string_value(json_object_get(root, "status"));
    json_t *data = json_object_get(root, "data");
    const char *type = json_string_value(json_object_get(data, "resultType"));
    json_t *res = json_object_get(data, "result");
    if (!status || strcmp(status, "success") != 0) {
        const char *e = json_string_value(json_object_get(root, "error"));
        snprintf(err, errlen, "Prometheus answered status %s%s%.100s", status ? status : "(none)",
                 e ? ": " : "", e ? e : "");
    } else if (!type || !json_is_array(res)) {
        snprintf(err, errlen, "expected data.resultType and data.result in the answer");
    } else if (strcmp(type, "scalar") == 0) {
        rc = json_array_size(res) == 2 ? depth_of(json_array_get(res, 1), "scalar", out, err, errlen)
                                       : (snprintf(err, errlen, "scalar: expected [time, value]"), -1);
    } else if (strcmp(type, "vector") == 0) {
        size_t n = json_array_size(res);
        if (n == 0) {
            *out = 0;   /* no series: nothing waits (the metric is absent when empty) */
            rc = 0;
        } else if (n > 1) {
            snprintf(err, errlen, "the query gave %zu series, expected one (aggregate it, e.g. "
                     "sum(...))", n);
        } else {
            json_t *v = json_object_get(json_array_get(res, 0), "value");
            rc = json_array_size(v) == 2 ? depth_of(json_array_get(v, 1), "value", out, err, errlen)
                                         : (snprintf(err, errlen, "vector: expected value [time, value]"), -1);
        }
    } else {
        snprintf(err, errlen, "resultType %.20s: expected an instant vector or scalar", type);
    }
    json_decref(root);
    return rc;
}

/* One step down: key in an object, index in an array. */
static json_t *step_into(json_t *cur, const char *seg, size_t n)
{
    if (json_is_object(cur))
        return json_object_getn(cur, seg, n);
    if (!json_is_array(cur) || n == 0 || n > 9 || (n > 1 && seg[0] == '0'))
        return NULL;
    size_t idx = 0;
    for (size_t i = 0; i < n; i++) {
        if (seg[i] < '0' || seg[i] > '9')
            return NULL;
        idx = idx * 10 + (size_t)(seg[i] - '0');
    }
    return json_array_get(cur, idx);
}

int ctl_json_number_at(const char *body, size_t len, const char *path, double *out,
                       char *err, size_t errlen)
{
    json_t *root = load(body, len, err, errlen);
    if (!root)
        return -1;
    json_t *cur = root;
    bool pointer = path[0] == '/';
    const char *p = pointer ? path + 1 : path;
    char seg[256];
    while (path[0]) {   /* "" is the whole document */
        size_t n = strcspn(p, pointer ? "/" : ".");
        size_t o = 0;
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {   /* RFC 6901: ~1 is '/', ~0 is '~' */
            char c = p[i];
            if (pointer && c == '~') {
                c = i + 1 < n && p[i + 1] == '1' ? '/' : i + 1 < n && p[i + 1] == '0' ? '~' : 0;
                ok = c != 0;
                i++;
            }
            if (o + 1 >= sizeof seg)
                ok = false;
            else
                seg[o++] = c;
        }
        if (!ok) {
            snprintf(err, errlen, "json: bad segment '%.*s' in '%.100s'", (int)(n > 60 ? 60 : n), p, path);
            json_decref(root);
            return -1;
        }
        cur = step_into(cur, seg, o);
        if (!cur) {
            snprintf(err, errlen, "json: nothing at '%.*s' of '%.100s'", (int)(o > 60 ? 60 : o), seg, path);
            json_decref(root);
            return -1;
        }
        if (!p[n])
            break;
        p += n + 1;   /* past the separator */
        if (!pointer && !*p) {
            snprintf(err, errlen, "json: '%.100s' ends with '.'", path);
            json_decref(root);
            return -1;
        }
    }
    char where[140];
    snprintf(where, sizeof where, "json %.100s", path[0] ? path : "(the document)");
    int rc = depth_of(cur, where, out, err, errlen);
    json_decref(root);
    return rc;
}

void ctl_prom_query_url(const char *base, const char *query, buf *out)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    buf_append(out, base, bl);
    buf_append_str(out, "/api/v1/query?query=");
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *q = (const unsigned char *)query; *q; q++) {
        if ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9')
            || *q == '-' || *q == '.' || *q == '_' || *q == '~') {
            buf_append(out, q, 1);
        } else {
            char e[3] = { '%', hex[*q >> 4], hex[*q & 15] };
            buf_append(out, e, 3);
        }
    }
}
