/* server_guard.c -- cross-site and DNS-rebinding protection for the admin
 * APIs (see http_guard_opts in server.h for the rules).
 *
 * Why these rules: a page in the user's browser may send "simple" requests
 * to any address, including 127.0.0.1, without asking: a POST whose
 * Content-Type is text/plain or a form encoding, with no preflight. Any
 * other content type needs a CORS preflight (OPTIONS), which this server
 * never approves, so insisting on application/json closes writes. A page
 * on a hostname that its owner re-points at 127.0.0.1 (DNS rebinding) is
 * same-origin with us as far as the browser knows, so it can read answers;
 * its requests carry its own name in Host, which is why Host must be an IP
 * literal, localhost or a name the operator allowed. Origin, when a
 * browser sends it, must be our own. */
#include "server_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define GUARD_DEPTH 32

unsigned http_json_depth(const char *s, size_t len, unsigned limit)
{
    unsigned depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"') {
            in_str = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max && (max = depth) > limit)
                return max;
        } else if ((ch == ']' || ch == '}') && depth) {
            depth--;
        }
    }
    return max;
}

/* Host part of a Host header value ("[::1]:8081" -> "::1"), into out;
 * false when the value is not host[:port] with a numeric port. */
static bool host_name(const char *h, char *out, size_t outlen)
{
    size_t n;
    const char *rest;
    if (h[0] == '[') {
        const char *e = strchr(h, ']');
        if (!e)
            return false;
        h++;
        n = (size_t)(e - h);
        rest = e + 1;
    } else {
        n = strcspn(h, ":");
        rest = h + n;
    }
    if (*rest == ':') {
        size_t d = strspn(rest + 1, "0123456789");
        if (d == 0 || d > 5 || rest[1 + d])
            return false;
    } else if (*rest) {
        return false;
    }
    if (n >= outlen)
        return false;
    memcpy(out, h, n);
    out[n] = '\0';
    if (n && out[n - 1] == '.')   /* "localhost." is localhost */
        out[n - 1] = '\0';
    return true;
}

static bool is_ip_literal(const char *h)
{
    sock_addr a;
    char e[64], hp[300];
    snprintf(hp, sizeof hp, strchr(h, ':') ? "[%s]:1" : "%s:1", h);
    if (!*h || strspn(h, "0123456789.:abcdefABCDEF") != strlen(h))
        return false;   /* names never resolve here: only literals pass */
    return sock_addr_parse(hp, &a, e, sizeof e) == 0;
}

static bool host_allowed(const http_guard_opts *g, const char *host)
{
    char name[256];
    if (!host_name(host, name, sizeof name))
        return false;
    if (strcasecmp(name, "localhost") == 0 || is_ip_literal(name))
        return true;
    for (size_t i = 0; i < g->nallowed_hosts; i++)
        if (g->allowed_hosts[i] && strcasecmp(name, g->allowed_hosts[i]) == 0)
            return true;
    return false;
}

static bool open_path(const http_guard_opts *g, const http_ctx *c)
{
    http_method m = http_ctx_method(c);
    if (!g->open_paths || (m != HTTP_GET && m != HTTP_HEAD))
        return false;
    for (const char *const *p = g->open_paths; *p; p++)
        if (strcmp(*p, c->path) == 0)
            return true;
    return false;
}

static bool is_json_type(const char *ct)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof want - 1) != 0)
        return false;
    ct += sizeof want - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

int http_guard_check(http_ctx *c, const http_guard_opts *g, bool tls)
{
    if (!g || !g->enabled)
        return 0;
    const char *host = http_ctx_header(c, "Host");
    if (host && !open_path(g, c) && !host_allowed(g, host)) {
        http_reply_error(c, 421, "Host",
                         "Host '%.200s' is not this server's address, localhost or an allowed "
                         "name; add the name to %s to use it", host,
                         g->hosts_setting ? g->hosts_setting : "the listener's allowed hosts");
        return 421;
    }
    const char *origin = http_ctx_header(c, "Origin");
    if (origin) {
        const char *scheme = tls ? "https://" : "http://";
        size_t sl = strlen(scheme);
        bool same = host && strncasecmp(origin, scheme, sl) == 0
                    && strcasecmp(origin + sl, host) == 0;
        if (!same) {
            http_reply_error(c, 403, "Origin",
                             "cross-origin request from '%.200s' refused: this API only "
                             "answers pages served by itself", origin);
            return 403;
        }
    }
    http_method m = http_ctx_method(c);
    size_t blen = 0;
    const char *body = http_ctx_body(c, &blen);
    bool needs_body_type = m == HTTP_POST || m == HTTP_PUT || m == HTTP_PATCH
                           || (m == HTTP_DELETE && blen > 0) || (m == HTTP_OTHER && blen > 0);
    if (needs_body_type) {
        const char *ct = http_ctx_header(c, "Content-Type");
        if (!ct || !is_json_type(ct)) {
            http_reply_error(c, 415, "Content-Type",
                             "%s needs Content-Type: application/json (got %.100s)",
                             c->method_name, ct ? ct : "none");
            return 415;
        }
    }
    unsigned limit = g->max_json_depth ? g->max_json_depth : GUARD_DEPTH;
    if (blen && http_json_depth(body, blen, limit) > limit) {
        http_reply_error(c, 400, "body", "JSON nested deeper than %u levels", limit);
        return 400;
    }
    return 0;
}
