/* gw_cache.c -- the shared HTTP cache on the request path: a route with
 * `cache.enabled` answers GET and HEAD from the store (gw_cache_store.c)
 * by the rules of gw_cache_policy.c, and fills it from the backend.
 *
 * Where it sits: between routing and the backend on the way in
 * (gw_cache_request, from gw_exchange_start), and between the backend and
 * the transform chain on the way out (gw_cache_on_head / _on_body /
 * _on_end, from gw_response.c: gw_cache_fill.c). This file is the request
 * side: lookup, answers from the store, waiters, background refresh.
 *
 * What is stored is the backend's response (end-to-end headers,
 * identity-framed body, its own Content-Encoding and Vary kept); a hit
 * goes through the same transform chain as a relayed response, so a client
 * that needs compression gets it and the variants the backend's Vary names
 * are kept apart.
 *
 * Each cached request has a gw_cx with a named phase (gw_cx_phase):
 *
 *   lookup: fresh hit -------------------------------------> SERVED
 *           stale, swr ---> SERVED (+ a background refresh, a ghost exchange)
 *           miss / must revalidate:
 *             first for the key --> FILL (owns the key's fill; others park)
 *             a fill is running --> WAIT --woken--> SERVED (hit) | FORWARD (miss)
 *                                        \--lock_timeout--> FORWARD
 *           HEAD miss, GET with a body, client no-store... --> BYPASS
 *   unsafe method (POST, PUT, PATCH, DELETE) --> INVALIDATE
 *
 * Coalescing without polling: a waiter is parked on the key's object in the
 * store (gw_cwait); the fill's end (stored, not storable, failed, or the
 * filler's client gone) wakes every waiter at once through its own
 * worker's loop (ev_post), whatever thread ends the fill. A woken waiter
 * looks up again and goes to the backend itself on a miss, never parking
 * twice: an uncacheable response releases the whole herd in one round
 * (no serialisation behind one request at a time). */
#include "gateway/gw_cache_int.h"

#include <fnmatch.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

static const char *cx_phase_str(gw_cx_phase p)
{
    switch (p) {
    case CX_BYPASS:     return "bypass";
    case CX_WAIT:       return "wait";
    case CX_FILL:       return "fill";
    case CX_FORWARD:    return "forward";
    case CX_INVALIDATE: return "invalidate";
    case CX_SERVED:     return "served";
    default:            return "unknown";
    }
}

/* --- small helpers -------------------------------------------------------- */



static const http_header *req_header(const gw_exchange *ex, const char *name)
{
    return http_find_header(buf_head(&ex->c->in), &ex->req.h, name);
}

void gw_cx_set_status(gw_cx *cx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(cx->status, sizeof cx->status, "hscale; ");
    vsnprintf(cx->status + n, sizeof cx->status - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Vary values of this exchange's request. Accept-Encoding is reduced to
 * the coding the gateway would choose, so the many spellings of "gzip,
 * deflate, br" share one variant. */
const char *gw_cx_vary_get(void *arg, const char *name, size_t nl, size_t *len)
{
    gw_exchange *ex = arg;
    char nm[64];
    if (nl >= sizeof nm)
        return NULL;
    memcpy(nm, name, nl);
    nm[nl] = '\0';
    const char *head = buf_head(&ex->c->in);
    const http_header *h = http_find_header(head, &ex->req.h, nm);
    if (!h)
        return NULL;
    if (strcasecmp(nm, "accept-encoding") == 0) {
        static const char *const codings[] = { "identity", "gzip", "br" };
        const char *v = codings[gw_compress_accepts(head + h->value.off, h->value.len)];
        *len = strlen(v);
        return v;
    }
    *len = h->value.len;
    return head + h->value.off;
}

/* scheme://host/target, host lower-cased; the scheme is the listener's
 * (RFC 9111 2: the key is the target URI, and an https page is not an http
 * one). */
static bool build_key(gw_cx *cx, const gw_exchange *ex, const char *host, size_t hlen,
                      const char *target, size_t tlen)
{
    const char *scheme = ex->c->lst == GW_LST_TLS ? "https://" : "http://";
    size_t sl = strlen(scheme);
    size_t n = sl + hlen + tlen;
    if (n > CX_KEY_MAX)
        return false;
    cx->key = n < CX_KEYBUF ? cx->keybuf : malloc(n + 1);
    if (!cx->key)
        return false;
    memcpy(cx->key, scheme, sl);
    for (size_t i = 0; i < hlen; i++)
        cx->key[sl + i] = (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] + 32 : host[i]);
    memcpy(cx->key + sl + hlen, target, tlen);
    cx->key[n] = '\0';
    cx->klen = n;
    return true;
}

static int64_t route_ttl(const gw_route_cache_cfg *rc, const char *path, size_t plen)
{
    char p[2048];
    if (plen >= sizeof p)
        return -1;
    memcpy(p, path, plen);
    p[plen] = '\0';
    for (size_t i = 0; i < rc->nttl; i++) {
        const char *m = rc->ttl[i].match;
        bool hit = strchr(m, '*') ? fnmatch(m, p, 0) == 0 : strncmp(p, m, strlen(m)) == 0;
        if (hit)
            return (int64_t)(rc->ttl[i].ttl_us / 1000000u);
    }
    return -1;
}

/* --- the exchange's cache state ------------------------------------------ */

static gw_cx *cx_new(gw_exchange *ex, gw_cx_phase phase)
{
    gw_worker *w = ex->c->w;
    gw_cx *cx = w->free_cx;
    if (cx) {
        w->free_cx = cx->next_free;
        w->nfree_cx--;
        memset(cx, 0, offsetof(gw_cx, keybuf));
    } else if (!(cx = calloc(1, sizeof *cx))) {
        return NULL;
    }
    cx->phase = (uint8_t)phase;
    cx->ex = ex;
    cx->age_out = -1;
    gw_cc_init(&cx->req_cc);
    ex->cx = cx;
    return cx;
}

void gw_cx_capture_drop(gw_cx *cx)
{
    cx->capture = false;
    buf_free(&cx->head);
    buf_free(&cx->body);
}

/* The fill this exchange owns ends: every parked waiter is woken. */
void gw_cx_fill_end(gw_cx *cx)
{
    if (cx->phase != CX_FILL)
        return;
    cx->phase = CX_FORWARD;
    gw_cstore_fill_end(gw_cx_store_of(cx->ex), cx->key, cx->klen);
}

void gw_cache_exchange_free(gw_exchange *ex)
{
    gw_cx *cx = ex->cx;
    if (!cx)
        return;
    ex->cx = NULL;
    gw_worker *w = ex->c->w;
    ev_timer_stop(w->loop, &cx->timer);
    if (cx->phase == CX_WAIT && cx->wait) {
        if (gw_cstore_fill_leave(w->rt->cache, cx->key, cx->klen, cx->wait))
            free(cx->wait);
        else
            cx->wait->arg = NULL;      /* the wake-up task frees it */
    }
    gw_cx_fill_end(cx);
    gw_cvar_unref(cx->stale);
    gw_cx_capture_drop(cx);
    if (cx->key != cx->keybuf)
        free(cx->key);
    if (w->nfree_cx >= CX_FREE) {
        free(cx);
        return;
    }
    cx->next_free = w->free_cx;
    w->free_cx = cx;
    w->nfree_cx++;
}

void gw_cache_worker_free(gw_worker *w)
{
    while (w->free_cx) {
        gw_cx *cx = w->free_cx;
        w->free_cx = cx->next_free;
        free(cx);
    }
    w->nfree_cx = 0;
}

/* --- answering from the store -------------------------------------------- */

/* The stored response for this request, or NULL; *pass: a live
 * hit-for-miss marker stands for the key (go to the backend, no waiting). */
gw_cvar *gw_cx_lookup(gw_exchange *ex, bool *pass)
{
    gw_cx *cx = ex->cx;
    bool had;
    gw_cvar *v = gw_cstore_lookup(gw_cx_store_of(ex), cx->key, cx->klen, gw_cx_vary_get, ex, &had);
    cx->had_key = had;
    *pass = false;
    if (v && v->pass) {
        *pass = gw_cx_var_age(v, gw_cx_wall_us()) < v->lifetime;
        gw_cvar_unref(v);
        v = NULL;
    }
    return v;
}

static const char *const not_modified_fields[] = {
    "cache-control", "content-location", "date", "etag", "expires", "last-modified", "vary", NULL };

/* A 304 to a client whose conditional matched the stored response. */
static void write_304(gw_exchange *ex, const gw_cvar *v)
{
    gw_conn *c = ex->c;
    buf *out = &c->out;
    buf_append_str(out, "HTTP/1.1 304 Not Modified\r\n");
    for (const char *const *f = not_modified_fields; *f; f++)
        for (unsigned i = 0; i < v->resp.h.nheaders; i++) {
            const http_header *h = &v->resp.h.headers[i];
            if (h->name.len == strlen(*f) && strncasecmp(v->head + h->name.off, *f, h->name.len) == 0) {
                buf_append(out, v->head + h->name.off, h->value.off + h->value.len - h->name.off);
                buf_append(out, "\r\n", 2);
            }
        }
    gw_cache_response_headers(ex, out);
    if (c->close_after)
        buf_append_str(out, "Connection: close\r\n");
    else if (ex->req.h.version_minor == 0)
        buf_append_str(out, "Connection: keep-alive\r\n");
    buf_append(out, "\r\n", 2);
}

static bool client_not_modified(const gw_exchange *ex, const gw_cvar *v)
{
    if (v->resp.status != 200)
        return false;
    const http_header *inm = req_header(ex, "if-none-match");
    const http_header *ims = req_header(ex, "if-modified-since");
    if (!inm && !ims)
        return false;
    const char *head = buf_head(&ex->c->in);
    const http_header *et = http_find_header(v->head, &v->resp.h, "etag");
    int64_t t_ims = ims ? gw_http_date(head + ims->value.off, ims->value.len) : -1;
    return gw_cache_not_modified(inm ? head + inm->value.off : NULL, inm ? inm->value.len : 0, inm != NULL,
                                 et ? v->head + et->value.off : "", et ? et->value.len : 0,
                                 t_ims, v->last_modified);
}

/* Queues v as the whole answer and ends the request. */
void gw_cx_serve(gw_exchange *ex, gw_cvar *v)
{
    gw_conn *c = ex->c;
    gw_worker *w = c->w;
    gw_cx *cx = ex->cx;
    cx->phase = CX_SERVED;
    cx->age_out = gw_cx_var_age(v, gw_cx_wall_us());
    gw_buf_acquire(w, &c->out);
    if (!ex->req_body_done)
        c->close_after = true;
    if (client_not_modified(ex, v)) {
        write_304(ex, v);
        gw_conn_request_done(c, 3);
        return;
    }
    memcpy(&ex->resp, &v->resp, sizeof ex->resp);
    ex->status = v->resp.status;
    ex->resp_body = (uint8_t)v->resp.h.body;
    /* The transform chain runs on a hit as on a relayed response. */
    gw_xform_begin(ex, v->head);
    gw_rewrite_response(ex, v->head, gw_xform_whole(ex) ? gw_xform_head_buf(ex) : &c->out, NULL, 0);
    ex->sent_to_client = true;
    uint8_t coding = gw_xform_coding(ex);
    gw_crend *rend = coding && gw_xform_whole(ex)
                     ? atomic_load_explicit(&v->rend[coding], memory_order_acquire) : NULL;
    if (rend) {
        /* Compressed once before: the kept rendition, no compressing. */
        if (gw_xform_end_given(ex, rend->data, rend->len) < 0)
            c->dead = true;
    } else {
        if (ex->req.method != HTTP_HEAD && v->body_len) {
            if (ex->xf) {
                if (gw_xform_body(ex, v->body, v->body_len) < 0)
                    c->dead = true;
            } else {
                buf_append(&c->out, v->body, v->body_len);
            }
        }
        if (ex->xf && !c->dead && gw_xform_end(ex) < 0)
            c->dead = true;
        size_t zn;
        const char *z = coding && !c->dead ? gw_xform_output(ex, &zn) : NULL;
        if (z)
            gw_cstore_attach(gw_cx_store_of(ex), v, coding, z, zn);
    }
    gw_conn_request_done(c, v->resp.status / 100);
}

void gw_cache_response_headers(gw_exchange *ex, buf *out)
{
    gw_cx *cx = ex->cx;
    if (!cx || cx->phase == CX_INVALIDATE)
        return;
    char num[24];
    if (cx->age_out >= 0) {
        buf_append_str(out, "Age: ");
        buf_append(out, num, fmt_u64(num, (uint64_t)cx->age_out));
        buf_append(out, "\r\n", 2);
    }
    if (cx->status[0]) {
        buf_append_str(out, "Cache-Status: ");
        buf_append_str(out, cx->status);
        buf_append(out, "\r\n", 2);
    }
}

bool gw_cache_skip_request_header(const gw_exchange *ex, const char *head, const http_header *h)
{
    const gw_cx *cx = ex->cx;
    if (!cx || (cx->phase != CX_FILL && cx->phase != CX_FORWARD))
        return false;
    /* A fill asks for the whole response (it answers the client's
     * conditionals itself), with its own validators when revalidating. */
    return (h->name.len == 13 && strncasecmp(head + h->name.off, "if-none-match", 13) == 0)
           || (h->name.len == 17 && strncasecmp(head + h->name.off, "if-modified-since", 17) == 0);
}

void gw_cache_request_headers(gw_exchange *ex, buf *out)
{
    gw_cx *cx = ex->cx;
    if (!cx || !cx->stale || (cx->phase != CX_FILL && cx->phase != CX_FORWARD))
        return;
    const gw_cvar *v = cx->stale;
    const http_header *et = http_find_header(v->head, &v->resp.h, "etag");
    const http_header *lm = http_find_header(v->head, &v->resp.h, "last-modified");
    if (et) {
        buf_append_str(out, "If-None-Match: ");
        buf_append(out, v->head + et->value.off, et->value.len);
        buf_append(out, "\r\n", 2);
    }
    if (lm) {
        buf_append_str(out, "If-Modified-Since: ");
        buf_append(out, v->head + lm->value.off, lm->value.len);
        buf_append(out, "\r\n", 2);
    }
    atomic_fetch_add_explicit(&gw_cstore_stats(gw_cx_store_of(ex))->revalidations, 1, memory_order_relaxed);
}

/* --- background refresh (stale-while-revalidate) ------------------------- */

/* What a ghost connection carries into its request: the fill it owns. */
typedef struct gw_cghost {
    uint64_t ticket;
    gw_cvar *stale;
    char    *key;
    size_t   klen;
} gw_cghost;

void gw_cache_ghost_free(gw_conn *c)
{
    gw_cghost *g = c->ghost;
    c->ghost = NULL;
    if (!g)
        return;
    gw_cstore_fill_end(c->w->rt->cache, g->key, g->klen);    /* never started: release it */
    gw_cvar_unref(g->stale);
    free(g->key);
    free(g);
}

void gw_cache_refresh(gw_exchange *ex, gw_cvar *v)
{
    gw_conn *c = ex->c;
    gw_cx *cx = ex->cx;
    uint64_t ticket;
    if (c->ghost || c->fd < 0)
        return;
    /* One refresh per key: when a fetch runs already, it is the refresh. */
    if (!gw_cstore_fill_begin(c->w->rt->cache, cx->key, cx->klen, NULL, &ticket) || !ticket)
        return;
    gw_cghost *g = calloc(1, sizeof *g);
    if (g && (g->key = malloc(cx->klen))) {
        memcpy(g->key, cx->key, cx->klen);
        g->klen = cx->klen;
        g->ticket = ticket;
        g->stale = v;
        gw_cvar_ref(v);
        if (gw_conn_ghost(c->w, buf_head(&c->in), ex->head_len, c, g))
            return;
        gw_cvar_unref(v);
        free(g->key);
    }
    free(g);
    gw_cstore_fill_end(c->w->rt->cache, cx->key, cx->klen);
}

/* --- waiting for another request's fill ----------------------------------- */

static gw_cache_use use_of(const gw_cx *cx, const gw_cvar *v, int64_t age)
{
    gw_use_in in = { .lifetime = v->lifetime, .age = age, .resp_cc = &v->cc, .req_cc = &cx->req_cc,
                     .req_pragma_no_cache = cx->pragma_no_cache, .route_swr = cx->swr,
                     .route_sie = cx->sie };
    return gw_cache_decide(&in);
}

bool gw_cx_sie_ok(const gw_cx *cx, const gw_cvar *v)
{
    gw_use_in in = { .lifetime = v->lifetime, .age = gw_cx_var_age(v, gw_cx_wall_us()), .resp_cc = &v->cc,
                     .req_cc = &cx->req_cc, .route_swr = cx->swr, .route_sie = cx->sie };
    return gw_cache_sie_ok(&in);
}

static void go_upstream(gw_exchange *ex, const char *why)
{
    gw_cx *cx = ex->cx;
    cx->phase = CX_FORWARD;
    gw_cx_set_status(cx, "fwd=%s%s%s", cx->stale ? "stale" : cx->had_key ? "vary-miss" : "uri-miss",
               why ? "; detail=" : "", why ? why : "");
    gw_ex_set_phase(ex, GX_ROUTE);
    gw_exchange_forward(ex);
}

/* A parked request resumes: the fill it waited for is over (or its wait
 * is). A hit is served; anything else goes to the backend, never parking
 * again. */
static void resume(gw_exchange *ex, const char *why)
{
    gw_cx *cx = ex->cx;
    gw_cstore *s = gw_cx_store_of(ex);
    bool pass;
    gw_cvar *v = gw_cx_lookup(ex, &pass);
    if (v) {
        int64_t age = gw_cx_var_age(v, gw_cx_wall_us());
        if (use_of(cx, v, age) != GW_USE_REVALIDATE) {
            atomic_fetch_add_explicit(&gw_cstore_stats(s)->hits, 1, memory_order_relaxed);
            gw_cx_set_status(cx, "hit; ttl=%lld; collapsed", (long long)(v->lifetime - age));
            gw_cx_serve(ex, v);
            gw_cvar_unref(v);
            return;
        }
        gw_cvar_unref(cx->stale);
        cx->stale = v;
    }
    atomic_fetch_add_explicit(&gw_cstore_stats(s)->misses, 1, memory_order_relaxed);
    go_upstream(ex, why);
}

static void wake_task(ev_loop *loop, void *arg)
{
    gw_cwait *cw = arg;
    gw_exchange *ex = cw->arg;
    free(cw);
    if (!ex)
        return;                        /* its request went away meanwhile */
    gw_cx *cx = ex->cx;
    cx->wait = NULL;
    ev_timer_stop(loop, &cx->timer);
    gw_conn *c = ex->c;
    resume(ex, NULL);
    gw_conn_process(c);
}

/* Runs on the thread that ends the fill: only posts to the waiter's loop. */
static void wake(gw_cwait *cw)
{
    gw_worker *w = cw->ctx;
    if (ev_post(w->loop, wake_task, cw) < 0)
        log_warn("cache: a coalesced request could not be woken (out of memory); its lock_timeout will");
}

static void lock_timeout(ev_loop *loop, ev_timer *t)
{
    gw_exchange *ex = t->arg;
    gw_cx *cx = ex->cx;
    gw_conn *c = ex->c;
    (void)loop;
    if (!cx->wait)
        return;
    if (gw_cstore_fill_leave(gw_cx_store_of(ex), cx->key, cx->klen, cx->wait))
        free(cx->wait);
    else
        cx->wait->arg = NULL;          /* woken, but the task is late (or was lost): it frees this */
    cx->wait = NULL;
    resume(ex, "lock-timeout");
    gw_conn_process(c);
}

/* --- the request ---------------------------------------------------------- */

static bool is_unsafe(http_method m)
{
    return m == HTTP_POST || m == HTTP_PUT || m == HTTP_PATCH || m == HTTP_DELETE;
}

static void read_request(gw_cx *cx, const gw_exchange *ex, const gw_route_cache_cfg *rc)
{
    const char *head = buf_head(&ex->c->in);
    const http_request *req = &ex->req;
    for (unsigned i = 0; i < req->h.nheaders; i++) {
        const http_header *h = &req->h.headers[i];
        if (http_slice_ieq(head, h->name, "cache-control"))
            gw_cc_parse(&cx->req_cc, head + h->value.off, h->value.len);
        else if (http_slice_ieq(head, h->name, "pragma") && h->value.len >= 8
                 && strncasecmp(head + h->value.off, "no-cache", 8) == 0)
            cx->pragma_no_cache = true;
        else if (http_slice_ieq(head, h->name, "authorization"))
            cx->req_auth = true;
    }
    /* Pragma only counts without Cache-Control (RFC 9111 5.4). */
    if (req_header(ex, "cache-control"))
        cx->pragma_no_cache = false;
    cx->req_no_store = (cx->req_cc.f & GW_CC_NO_STORE) != 0;
    cx->override_ttl = route_ttl(rc, head + req->path.off, req->path.len);
    cx->swr = (int64_t)(rc->swr_us / 1000000u);
    cx->sie = (int64_t)(rc->sie_us / 1000000u);
    cx->lock_timeout_us = rc->lock_timeout_us;
    cx->req_us = gw_cx_wall_us();
    cx->max_object = gw_cstore_max_object(gw_cx_store_of(ex));
}

gw_cache_step gw_cache_request(gw_exchange *ex, const gw_route_cache_cfg *rc)
{
    gw_conn *c = ex->c;
    gw_worker *w = c->w;
    gw_cstore *s = w->rt->cache;
    const http_request *req = &ex->req;
    const char *head = buf_head(&c->in);
    if (!rc || !rc->enabled || !s || ex->upgrade)
        return GW_CACHE_FORWARD;
    bool unsafe = is_unsafe(req->method);
    if (!unsafe && req->method != HTTP_GET && req->method != HTTP_HEAD)
        return GW_CACHE_FORWARD;
    gw_cx *cx = cx_new(ex, unsafe ? CX_INVALIDATE : CX_BYPASS);
    if (!cx)
        return GW_CACHE_FORWARD;
    if (!build_key(cx, ex, head + req->host.off, req->host.len, head + req->target.off, req->target.len)) {
        gw_cache_exchange_free(ex);    /* too long a key (or no memory): plainly relayed */
        return GW_CACHE_FORWARD;
    }
    if (unsafe)
        return GW_CACHE_FORWARD;
    read_request(cx, ex, rc);
    if (c->ghost) {
        /* A background refresh: it owns the key's fill already. */
        gw_cghost *g = c->ghost;
        c->ghost = NULL;
        cx->phase = CX_FILL;
        cx->ticket = g->ticket;
        cx->stale = g->stale;
        cx->bg = true;
        gw_cx_set_status(cx, "fwd=stale; detail=background");
        free(g->key);
        free(g);
        return GW_CACHE_FORWARD;
    }
    if (req->h.body != HTTP_BODY_NONE) {
        gw_cx_set_status(cx, "fwd=bypass; detail=request-body");
        return GW_CACHE_FORWARD;
    }
    gw_cache_stats *st = gw_cstore_stats(s);
    bool pass;
    gw_cvar *v = gw_cx_lookup(ex, &pass);
    bool had = cx->had_key;
    if (pass && !(cx->req_cc.f & GW_CC_ONLY_IF_CACHED)) {
        /* Its last fetch was not storable: no waiting behind each other. */
        atomic_fetch_add_explicit(&st->misses, 1, memory_order_relaxed);
        cx->phase = CX_FORWARD;
        gw_cx_set_status(cx, "fwd=uri-miss; detail=uncacheable");
        return GW_CACHE_FORWARD;
    }
    if (v) {
        int64_t age = gw_cx_var_age(v, gw_cx_wall_us());
        gw_cache_use use = use_of(cx, v, age);
        if (use != GW_USE_REVALIDATE) {
            atomic_fetch_add_explicit(&st->hits, 1, memory_order_relaxed);
            if (use == GW_USE_FRESH) {
                gw_cx_set_status(cx, "hit; ttl=%lld", (long long)(v->lifetime - age));
            } else {
                atomic_fetch_add_explicit(&st->stale, 1, memory_order_relaxed);
                gw_cx_set_status(cx, "hit; ttl=%lld; detail=%s", (long long)(v->lifetime - age),
                           gw_cache_use_str(use));
                if (use == GW_USE_SWR)
                    gw_cache_refresh(ex, v);
            }
            gw_cx_serve(ex, v);
            gw_cvar_unref(v);
            return GW_CACHE_DONE;
        }
        cx->stale = v;                 /* revalidate it (and keep it for stale-if-error) */
    }
    if (cx->req_cc.f & GW_CC_ONLY_IF_CACHED) {
        gw_conn_reply(c, 504, "Cache-Status: hscale; fwd=miss; detail=only-if-cached\r\n",
                      "{\"error\":\"not in the cache (only-if-cached)\",\"status\":504}");
        gw_conn_request_done(c, 5);
        return GW_CACHE_DONE;
    }
    bool req_nocache = cx->pragma_no_cache || (cx->req_cc.f & GW_CC_NO_CACHE);
    if (req->method == HTTP_HEAD || (req_nocache && !cx->stale))
        atomic_fetch_add_explicit(&st->misses, 1, memory_order_relaxed);   /* (parked ones count when woken) */
    if (req->method == HTTP_HEAD) {
        gw_cx_set_status(cx, "fwd=%s", v ? "stale" : had ? "vary-miss" : "uri-miss");
        cx->phase = CX_BYPASS;
        return GW_CACHE_FORWARD;
    }
    if (req_nocache && !cx->stale) {
        /* The client insists on the origin: no waiting behind others. */
        cx->phase = CX_FORWARD;
        gw_cx_set_status(cx, "fwd=request");
        return GW_CACHE_FORWARD;
    }
    gw_cwait *cw = calloc(1, sizeof *cw);
    if (!cw) {
        atomic_fetch_add_explicit(&st->misses, 1, memory_order_relaxed);
        cx->phase = CX_FORWARD;
        return GW_CACHE_FORWARD;
    }
    cw->fn = wake;
    cw->ctx = w;
    cw->arg = ex;
    if (gw_cstore_fill_begin(s, cx->key, cx->klen, cw, &cx->ticket)) {
        free(cw);
        atomic_fetch_add_explicit(&st->misses, 1, memory_order_relaxed);
        cx->phase = cx->ticket ? CX_FILL : CX_FORWARD;
        gw_cx_set_status(cx, "fwd=%s", v ? "stale" : had ? "vary-miss" : "uri-miss");
        return GW_CACHE_FORWARD;
    }
    /* Parked: woken by the fill's end, or by lock_timeout (then counted as
     * a hit or a miss). */
    cx->phase = CX_WAIT;
    cx->wait = cw;
    ev_timer_init(&cx->timer, lock_timeout, ex);
    ev_timer_start(w->loop, &cx->timer, cx->lock_timeout_us);
    gw_ex_set_phase(ex, GX_CACHE_WAIT);
    return GW_CACHE_PARKED;
}

const char *gw_cache_phase_str(const gw_exchange *ex)
{
    return ex->cx ? cx_phase_str((gw_cx_phase)ex->cx->phase) : "none";
}
