/* router.c -- method + path routing, path parameters, query strings and
 * the request-side accessors of http_ctx.
 *
 * Patterns are split into segments once, at registration: a literal, a
 * {param} or a final "*" that takes the rest. A path matches a pattern
 * segment by segment on the raw (still encoded) bytes; among the patterns
 * that match, the most specific wins, comparing segment by segment with
 * literal > param > rest, so "/cases/new" beats "/cases/{id}" whatever the
 * registration order. Methods are checked after the path: a path that
 * matches only under other methods gives 405 and the Allow list.
 *
 * Parameters and query pairs are decoded into the context's arena, so a
 * lookup allocates nothing once the arena has warmed up. */
#include "server_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { SEG_LIT = 2, SEG_PARAM = 1, SEG_REST = 0 };

typedef struct seg { unsigned char kind; const char *text; size_t len; } seg;

#define MAX_SEGS 32

struct http_route_ent {
    char           *method;    /* NULL: any */
    http_method     m;
    char           *pattern;   /* owned; segments point into it */
    seg             segs[MAX_SEGS];
    unsigned        nseg;
    http_handler_fn *fn;
    void           *arg;
    unsigned        index;
};

struct http_router {
    http_route_ent **routes;
    unsigned n, cap;
};

http_router *http_router_new(void)
{
    return calloc(1, sizeof(http_router));
}

void http_router_free(http_router *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->n; i++) {
        free(r->routes[i]->method);
        free(r->routes[i]->pattern);
        free(r->routes[i]);
    }
    free(r->routes);
    free(r);
}

unsigned http_router_count(const http_router *r) { return r->n; }
unsigned http_route_index(const http_route_ent *e) { return e->index; }
http_handler_fn *http_route_fn(const http_route_ent *e, void **arg)
{
    *arg = e->arg;
    return e->fn;
}

static int parse_pattern(http_route_ent *e)
{
    char *p = e->pattern;
    if (p[0] != '/')
        return -1;
    p++;
    e->nseg = 0;
    if (*p == '\0')
        return 0;   /* "/" */
    for (;;) {
        if (e->nseg == MAX_SEGS)
            return -1;
        char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        seg *s = &e->segs[e->nseg++];
        if (len == 1 && p[0] == '*') {
            if (end)
                return -1;     /* "*" only at the end */
            s->kind = SEG_REST;
            s->text = "*";
            s->len = 1;
            return 0;
        }
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            if (len == 2 || memchr(p + 1, '{', len - 2) || memchr(p + 1, '}', len - 2))
                return -1;
            s->kind = SEG_PARAM;
            s->text = p + 1;
            s->len = len - 2;
        } else {
            if (memchr(p, '{', len) || memchr(p, '}', len))
                return -1;
            s->kind = SEG_LIT;
            s->text = p;
            s->len = len;
        }
        if (!end)
            return 0;
        p = end + 1;
    }
}

int http_route(http_router *r, const char *method, const char *pattern,
               http_handler_fn *fn, void *arg)
{
    if (!r || !pattern || !fn)
        return -1;
    http_route_ent *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    e->pattern = strdup(pattern);
    e->method = method ? strdup(method) : NULL;
    if (!e->pattern || (method && !e->method) || parse_pattern(e) < 0)
        goto fail;
    e->m = method ? http_method_from(method, strlen(method)) : HTTP_OTHER;
    e->fn = fn;
    e->arg = arg;
    if (r->n == r->cap) {
        unsigned ncap = r->cap ? r->cap * 2 : 16;
        http_route_ent **nr = realloc(r->routes, ncap * sizeof *nr);
        if (!nr)
            goto fail;
        r->routes = nr;
        r->cap = ncap;
    }
    e->index = r->n;
    r->routes[r->n++] = e;
    return 0;
fail:
    free(e->pattern);
    free(e->method);
    free(e);
    return -1;
}

/* Splits the path into segment spans; returns the count or -1 when too deep. */
static int split_path(const char *path, size_t plen, seg *out)
{
    if (plen == 0 || path[0] != '/')
        return -1;
    if (plen == 1)
        return 0;
    int n = 0;
    size_t i = 1;
    for (;;) {
        if (n == MAX_SEGS)
            return -1;
        size_t start = i;
        while (i < plen && path[i] != '/')
            i++;
        out[n].text = path + start;
        out[n].len = i - start;
        n++;
        if (i >= plen)
            return n;
        i++;
    }
}

static bool route_matches(const http_route_ent *e, const seg *ps, int np)
{
    for (unsigned i = 0; i < e->nseg; i++) {
        const seg *s = &e->segs[i];
        if (s->kind == SEG_REST)
            return true;
        if ((int)i >= np)
            return false;
        if (s->kind == SEG_LIT) {
            if (s->len != ps[i].len || memcmp(s->text, ps[i].text, s->len) != 0)
                return false;
        } else if (ps[i].len == 0) {
            return false;   /* a param never matches an empty segment */
        }
    }
    return (int)e->nseg == np;
}

/* > 0 when a is more specific than b. */
static int specificity_cmp(const http_route_ent *a, const http_route_ent *b)
{
    unsigned n = a->nseg < b->nseg ? a->nseg : b->nseg;
    for (unsigned i = 0; i < n; i++)
        if (a->segs[i].kind != b->segs[i].kind)
            return (int)a->segs[i].kind - (int)b->segs[i].kind;
    /* Same prefix: the one that ends later without a rest is more exact. */
    return (int)a->nseg - (int)b->nseg;
}

static bool method_accepts(const http_route_ent *e, http_method m, const char *mname)
{
    if (!e->method)
        return true;
    if (e->m != HTTP_OTHER)
        return e->m == m || (m == HTTP_HEAD && e->m == HTTP_GET);
    return mname && strcmp(e->method, mname) == 0;
}

static void allow_add(char *allow, size_t allowlen, const char *m)
{
    size_t ml = strlen(m), al = strlen(allow);
    /* dedup: look for m as a whole item */
    for (const char *p = allow; (p = strstr(p, m)) != NULL; p += ml)
        if ((p == allow || p[-1] == ' ') && (p[ml] == ',' || p[ml] == '\0'))
            return;
    if (al + ml + 3 > allowlen)
        return;
    if (al) {
        memcpy(allow + al, ", ", 2);
        al += 2;
    }
    memcpy(allow + al, m, ml + 1);
}

int http_router_match(http_router *r, http_ctx *c, const char *path, size_t plen,
                      http_method m, const char *mname, char *allow, size_t allowlen)
{
    seg ps[MAX_SEGS];
    int np = split_path(path, plen, ps);
    if (np < 0)
        return 404;
    const http_route_ent *best = NULL;
    bool path_hit = false;
    for (unsigned i = 0; i < r->n; i++) {
        const http_route_ent *e = r->routes[i];
        if (!route_matches(e, ps, np))
            continue;
        path_hit = true;
        if (!method_accepts(e, m, mname))
            continue;
        /* Equal specificity: an explicit method beats "any", then the
         * first registered wins. */
        if (!best) {
            best = e;
            continue;
        }
        int cmp = specificity_cmp(e, best);
        if (cmp > 0 || (cmp == 0 && !best->method && e->method))
            best = e;
    }
    if (!best) {
        if (!path_hit)
            return 404;
        if (allowlen)
            allow[0] = '\0';
        for (unsigned i = 0; i < r->n; i++) {
            const http_route_ent *e = r->routes[i];
            if (!e->method || !route_matches(e, ps, np))
                continue;
            allow_add(allow, allowlen, e->method);
            if (e->m == HTTP_GET)
                allow_add(allow, allowlen, "HEAD");
        }
        return 405;
    }
    c->route = best;
    c->route_pattern = best->pattern;
    c->nparams = 0;
    for (unsigned i = 0; i < best->nseg && c->nparams < HTTP_CTX_MAX_PARAMS; i++) {
        const seg *s = &best->segs[i];
        if (s->kind == SEG_LIT)
            continue;
        const char *vs;
        size_t vl;
        if (s->kind == SEG_REST) {
            if ((int)i < np) {
                vs = ps[i].text;
                vl = (size_t)(path + plen - vs);
            } else {
                vs = "";
                vl = 0;
            }
        } else {
            vs = ps[i].text;
            vl = ps[i].len;
        }
        char *v = http_ctx_alloc(c, vl + 1);
        if (!v)
            break;
        http_pct_decode(v, vs, vl, false);
        c->params[c->nparams].k = s->text;   /* not NUL-terminated: see param lookup */
        c->params[c->nparams].v = v;
        c->nparams++;
    }
    return 0;
}

void http_router_run(http_router *r, http_ctx *c, const char *path, size_t plen)
{
    char allow[128] = "";
    http_method m = c->req ? c->req->method : HTTP_OTHER;
    int rc = http_router_match(r, c, path, plen, m, c->method_name, allow, sizeof allow);
    if (rc == 0) {
        void *arg;
        http_handler_fn *fn = http_route_fn(c->route, &arg);
        fn(c, arg);
        if (!c->replied)
            http_reply_error(c, 500, NULL, "handler for %s sent no response", c->route_pattern);
    } else if (rc == 405) {
        http_ctx_add_header(c, "Allow", allow);
        http_reply_error(c, 405, NULL, "method %s is not allowed here (allowed: %s)",
                         c->method_name, allow);
    } else {
        http_reply_error(c, 404, NULL, "no route for %s %s", c->method_name, c->path);
    }
}

void http_router_dispatch(http_router *r, http_ctx *c, const char *path)
{
    const http_route_ent *outer = c->route;
    const char *outer_pattern = c->route_pattern;
    http_router_run(r, c, path, strlen(path));
    c->route = outer;
    c->route_pattern = outer_pattern;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

size_t http_pct_decode(char *out, const char *s, size_t n, bool plus_space)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%' && i + 2 < n) {
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out[o++] = (char)(hi << 4 | lo);
                i += 2;
                continue;
            }
        }
        out[o++] = (plus_space && ch == '+') ? ' ' : ch;
    }
    out[o] = '\0';
    return o;
}

/* ---- request accessors over the context ---- */

void *http_ctx_alloc(http_ctx *c, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n <= sizeof c->arena - c->arena_used) {
        void *p = c->arena + c->arena_used;
        c->arena_used += n;
        return p;
    }
    /* Rare: spill into a block freed at the next reset. */
    http_arena_blk *b = malloc(sizeof(http_arena_blk) + 16 + n);
    if (!b)
        return NULL;
    b->next = c->spill;
    c->spill = b;
    return (char *)b + 16;
}

char *http_ctx_strndup(http_ctx *c, const char *s, size_t n)
{
    char *p = http_ctx_alloc(c, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void http_ctx_reset(http_ctx *c)
{
    while (c->spill) {
        http_arena_blk *b = c->spill;
        c->spill = b->next;
        free(b);
    }
    c->arena_used = 0;
    c->nparams = 0;
    c->nquery = 0;
    c->query_parsed = false;
    c->route = NULL;
    c->route_pattern = NULL;
    c->replied = false;
    c->status = 0;
    c->body = NULL;
    c->body_len = 0;
    c->role = HTTP_ROLE_NONE;
    c->request_id = NULL;
    buf_reset(&c->extra);
}

void http_ctx_release(http_ctx *c)
{
    http_ctx_reset(c);
    buf_free(&c->extra);
}

http_method http_ctx_method(const http_ctx *c) { return c->req->method; }
const char *http_ctx_method_name(const http_ctx *c) { return c->method_name; }
const char *http_ctx_path(const http_ctx *c) { return c->path; }
const char *http_ctx_route(const http_ctx *c) { return c->route_pattern; }
const sock_addr *http_ctx_peer(const http_ctx *c) { return c->peer; }
unsigned http_ctx_worker(const http_ctx *c) { return c->worker; }

const char *http_ctx_body(const http_ctx *c, size_t *len)
{
    if (len)
        *len = c->body_len;
    return c->body ? c->body : "";
}

const char *http_ctx_param(http_ctx *c, const char *name)
{
    size_t nl = strlen(name);
    for (unsigned i = 0; i < c->nparams; i++) {
        const char *k = c->params[i].k;
        /* k points into the pattern: "{id}/..." minus the brace, or "*" */
        if (strncmp(k, name, nl) == 0 && (k[nl] == '}' || (nl == 1 && k[0] == '*' && k[1] == '\0')))
            return c->params[i].v;
    }
    return NULL;
}

static void parse_query(http_ctx *c)
{
    c->query_parsed = true;
    const http_request *r = c->req;
    if (!r || r->query.len == 0)
        return;
    const char *q = c->base + r->query.off, *end = q + r->query.len;
    while (q < end && c->nquery < HTTP_CTX_MAX_QUERY) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        if (pe > q) {
            const char *eq = memchr(q, '=', (size_t)(pe - q));
            const char *ke = eq ? eq : pe;
            char *k = http_ctx_alloc(c, (size_t)(ke - q) + 1);
            const char *vs = eq ? eq + 1 : pe;
            char *v = http_ctx_alloc(c, (size_t)(pe - vs) + 1);
            if (!k || !v)
                return;
            http_pct_decode(k, q, (size_t)(ke - q), true);
            http_pct_decode(v, vs, (size_t)(pe - vs), true);
            c->query[c->nquery].k = k;
            c->query[c->nquery].v = v;
            c->nquery++;
        }
        q = pe + 1;
    }
}

const char *http_ctx_query(http_ctx *c, const char *name)
{
    if (!c->query_parsed)
        parse_query(c);
    for (unsigned i = 0; i < c->nquery; i++)
        if (strcmp(c->query[i].k, name) == 0)
            return c->query[i].v;
    return NULL;
}

void http_ctx_query_each(http_ctx *c, void (*fn)(void *arg, const char *k, const char *v), void *arg)
{
    if (!c->query_parsed)
        parse_query(c);
    for (unsigned i = 0; i < c->nquery; i++)
        fn(arg, c->query[i].k, c->query[i].v);
}

const char *http_ctx_header(http_ctx *c, const char *name)
{
    const http_header *h = http_find_header(c->base, &c->req->h, name);
    if (!h)
        return NULL;
    return http_ctx_strndup(c, c->base + h->value.off, h->value.len);
}
