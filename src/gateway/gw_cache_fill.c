/* gw_cache_fill.c -- the gateway cache's side of the backend's response
 * (the request side is gw_cache.c): at the head, a 304 that refreshes the
 * stored response or a 5xx that stale-if-error answers instead, whether
 * the response may be stored (and a hit-for-miss marker when not), and an
 * unsafe method's invalidation; then the capture of a storable body as it
 * streams to the client, and its store at the end.
 *
 * A stored head is normalised: the status line, the end-to-end fields
 * (hop-by-hop, framing and Age dropped: the cache computes Age) and a
 * Content-Length for the identity body. A 304 merges into the stored head
 * field by field (RFC 9111 3.2). */
#include "gateway/gw_cache_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- the response --------------------------------------------------------- */

/* Freshness facts of a response head. */
typedef struct resp_facts {
    gw_cc   cc;
    int64_t lifetime, age0, last_modified;
    bool    set_cookie, vary_star;
    const http_header *vary[8];
    int     nvary;
} resp_facts;

static void read_response(const gw_cx *cx, const char *head, const http_response *r, int64_t now,   /* gw_cx_wall_us() */
                          resp_facts *f)
{
    memset(f, 0, sizeof *f);
    gw_cc_init(&f->cc);
    int64_t date = GW_CC_ABSENT, expires = GW_CC_ABSENT, age = GW_CC_ABSENT;
    f->last_modified = -1;
    for (unsigned i = 0; i < r->h.nheaders; i++) {
        const http_header *h = &r->h.headers[i];
        const char *v = head + h->value.off;
        size_t vl = h->value.len;
        if (http_slice_ieq(head, h->name, "cache-control"))
            gw_cc_parse(&f->cc, v, vl);
        else if (http_slice_ieq(head, h->name, "date"))
            date = gw_http_date(v, vl);
        else if (http_slice_ieq(head, h->name, "expires")) {
            int64_t e = gw_http_date(v, vl);
            expires = e < 0 ? 0 : e;       /* invalid: in the past */
        } else if (http_slice_ieq(head, h->name, "age"))
            age = gw_delta_seconds(v, vl);
        else if (http_slice_ieq(head, h->name, "last-modified"))
            f->last_modified = gw_http_date(v, vl);
        else if (http_slice_ieq(head, h->name, "set-cookie"))
            f->set_cookie = true;
        else if (http_slice_ieq(head, h->name, "vary")) {
            for (size_t k = 0; k < vl; k++)
                if (v[k] == '*')
                    f->vary_star = true;
            if (f->nvary < 8)
                f->vary[f->nvary++] = h;
            else
                f->vary_star = true;       /* too many to key on: never stored */
        }
    }
    int64_t now_s = now / 1000000, delay_s = now > cx->req_us ? (now - cx->req_us) / 1000000 : 0;
    f->lifetime = gw_cache_lifetime(&f->cc, date, expires, now_s, cx->override_ttl);
    f->age0 = gw_cache_initial_age(age, date, now_s - delay_s, now_s);
}

/* The Vary selector of the request against the response's Vary lines. */
static long vary_selector(gw_exchange *ex, const char *head, const resp_facts *f, char *out, size_t cap)
{
    char names[1024];
    size_t n = 0;
    for (int i = 0; i < f->nvary; i++) {
        const http_header *h = f->vary[i];
        if (n + h->value.len + 1 >= sizeof names)
            return -1;
        memcpy(names + n, head + h->value.off, h->value.len);
        n += h->value.len;
        names[n++] = ',';
    }
    return gw_cvary_build(names, n, gw_cx_vary_get, ex, out, cap);
}

static bool name_in(const char *head, http_slice n, const char *const *list)
{
    for (; *list; list++)
        if (n.len == strlen(*list) && strncasecmp(head + n.off, *list, n.len) == 0)
            return true;
    return false;
}

/* Never stored: framing, hop-by-hop, and the age the cache computes. */
static const char *const unstored[] = { "connection", "keep-alive", "proxy-connection", "te", "trailer",
                                        "transfer-encoding", "upgrade", "content-length", "age", NULL };

static void append_hdr(buf *out, const char *head, const http_header *h)
{
    buf_append(out, head + h->name.off, h->value.off + h->value.len - h->name.off);
    buf_append(out, "\r\n", 2);
}

/* A stored head: status line, the end-to-end fields of `r` (minus those
 * `over` also has, when merging a 304), then `over`'s, then the length. */
static int normal_head(buf *out, const char *head, const http_response *r, const char *ohead,
                       const http_response *over, size_t body_len)
{
    char num[24];
    buf_append_str(out, "HTTP/1.1 ");
    buf_append(out, num, fmt_u64(num, r->status));
    buf_append(out, " ", 1);
    buf_append_str(out, http_status_reason(r->status));
    buf_append(out, "\r\n", 2);
    for (unsigned i = 0; i < r->h.nheaders; i++) {
        const http_header *h = &r->h.headers[i];
        if (name_in(head, h->name, unstored))
            continue;
        bool replaced = false;
        for (unsigned k = 0; over && k < over->h.nheaders && !replaced; k++) {
            http_slice on = over->h.headers[k].name;
            replaced = on.len == h->name.len
                       && strncasecmp(ohead + on.off, head + h->name.off, on.len) == 0;
        }
        if (!replaced)
            append_hdr(out, head, h);
    }
    for (unsigned k = 0; over && k < over->h.nheaders; k++)
        if (!name_in(ohead, over->h.headers[k].name, unstored))
            append_hdr(out, ohead, &over->h.headers[k]);
    buf_append_str(out, "Content-Length: ");
    buf_append(out, num, fmt_u64(num, body_len));
    return buf_append(out, "\r\n\r\n", 4);
}

/* Cache-Tag / Surrogate-Key tokens as "a\0b\0\0". */
static size_t collect_tags(const char *head, const http_response *r, char *out, size_t cap)
{
    size_t n = 0;
    for (unsigned i = 0; i < r->h.nheaders; i++) {
        const http_header *h = &r->h.headers[i];
        if (!http_slice_ieq(head, h->name, "cache-tag") && !http_slice_ieq(head, h->name, "surrogate-key"))
            continue;
        const char *v = head + h->value.off;
        size_t k = 0;
        while (k < h->value.len) {
            while (k < h->value.len && (v[k] == ' ' || v[k] == ',' || v[k] == '\t'))
                k++;
            size_t s = k;
            while (k < h->value.len && v[k] != ' ' && v[k] != ',' && v[k] != '\t')
                k++;
            if (k > s && n + (k - s) + 2 < cap) {
                memcpy(out + n, v + s, k - s);
                n += k - s;
                out[n++] = '\0';
            }
        }
    }
    if (n)
        out[n++] = '\0';
    return n;
}

/* Builds and inserts a variant; 0 when stored. */
/* head: the normalised head to store; fhead/fresp: the head f was read
 * from (its Vary and tag fields). */
static int store(gw_exchange *ex, const char *head, size_t head_len, const char *body, size_t body_len,
                 const resp_facts *f, int64_t now, const char *fhead, const http_response *fresp)
{
    gw_cx *cx = ex->cx;
    char sel[1024], tags[1024];
    long sl = vary_selector(ex, fhead, f, sel, sizeof sel);
    if (sl < 0)
        return -1;
    size_t tl = collect_tags(fhead, fresp, tags, sizeof tags);
    gw_cvar *v = gw_cvar_new(head, head_len, body, body_len, sel, (size_t)sl, tags, tl);
    if (!v)
        return -1;
    v->cc = f->cc;
    v->lifetime = f->lifetime < 0 ? 0 : f->lifetime;
    v->age0 = f->age0;
    v->resp_us = now;
    v->last_modified = f->last_modified;
    return gw_cstore_insert(gw_cx_store_of(ex), cx->key, cx->klen, v, cx->phase == CX_FILL ? cx->ticket : 0);
}

/* A hit-for-miss marker for the key (any Vary: it matches every request). */
static void store_pass(gw_exchange *ex, int64_t now)
{
    static const char head[] = "HTTP/1.1 204 No Content\r\n\r\n";
    gw_cvar *v = gw_cvar_new(head, sizeof head - 1, "", 0, NULL, 0, NULL, 0);
    if (!v)
        return;
    v->pass = true;
    v->lifetime = CX_PASS_S;
    v->resp_us = now;
    gw_cstore_insert(gw_cx_store_of(ex), ex->cx->key, ex->cx->klen, v, ex->cx->ticket);
}

/* Same-origin Location / Content-Location: purge them too (RFC 9111 4.4). */
static void purge_location(gw_exchange *ex, const char *head, const http_header *h)
{
    gw_cx *cx = ex->cx;
    const char *v = head + h->value.off;
    size_t vl = h->value.len;
    char key[CX_KEY_MAX];
    const char *sep = strstr(cx->key, "://");
    size_t from = sep ? (size_t)(sep + 3 - cx->key) : 0;
    const char *slash = memchr(cx->key + from, '/', cx->klen - from);
    size_t hostlen = slash ? (size_t)(slash - cx->key) : cx->klen;    /* "scheme://host" */
    if (vl && v[0] == '/' && (vl < 2 || v[1] != '/') && hostlen + vl < sizeof key) {
        memcpy(key, cx->key, hostlen);
        memcpy(key + hostlen, v, vl);
        gw_cstore_purge(gw_cx_store_of(ex), key, hostlen + vl);
    } else if (vl >= hostlen && strncasecmp(v, cx->key, hostlen) == 0
               && (vl == hostlen || v[hostlen] == '/')) {
        gw_cstore_purge(gw_cx_store_of(ex), v, vl);
    }
}

gw_cache_head gw_cache_on_head(gw_exchange *ex, const char *head, size_t head_len)
{
    gw_cx *cx = ex->cx;
    if (!cx)
        return GW_CH_RELAY;
    const http_response *r = &ex->resp;
    gw_cstore *s = gw_cx_store_of(ex);
    int64_t now = gw_cx_wall_us();
    if (cx->phase == CX_INVALIDATE) {
        if (r->status < 400) {
            gw_cstore_purge(s, cx->key, cx->klen);
            const http_header *loc = http_find_header(head, &r->h, "location");
            const http_header *cl = http_find_header(head, &r->h, "content-location");
            if (loc)
                purge_location(ex, head, loc);
            if (cl)
                purge_location(ex, head, cl);
        }
        return GW_CH_RELAY;
    }
    if (cx->phase != CX_FILL && cx->phase != CX_FORWARD)
        return GW_CH_RELAY;
    if (cx->stale && r->status == 304) {
        /* Revalidated: the stored response with the 304's fields. */
        const gw_cvar *old = cx->stale;
        buf nh;
        buf_init(&nh);
        normal_head(&nh, old->head, &old->resp, head, r, old->body_len);
        http_response merged;
        http_limits lim;
        http_limits_default(&lim);
        lim.max_head = (uint32_t)nh.len + 1;
        int rc = http_parse_response(buf_head(&nh), nh.len, &merged, HTTP_GET, &lim);
        resp_facts f;
        if (rc > 0) {
            read_response(cx, buf_head(&nh), &merged, now, &f);
            rc = store(ex, buf_head(&nh), nh.len, old->body, old->body_len, &f, now, buf_head(&nh), &merged);
        }
        buf_free(&nh);
        gw_cx_fill_end(cx);
        bool pass;
        gw_cvar *v = rc == 0 ? gw_cx_lookup(ex, &pass) : NULL;
        gw_cx_set_status(cx, "fwd=stale; fwd-status=304%s", v ? "; stored" : "");
        if (v) {
            gw_cvar_unref(cx->stale);
            cx->stale = v;           /* answered by gw_cache_answer */
        }
        return GW_CH_TAKEN;
    }
    if (cx->stale && r->status >= 500 && r->status <= 504 && r->status != 501 && gw_cx_sie_ok(cx, cx->stale)) {
        atomic_fetch_add_explicit(&gw_cstore_stats(s)->stale, 1, memory_order_relaxed);
        gw_cx_set_status(cx, "fwd=stale; fwd-status=%u; detail=stale-if-error", r->status);
        gw_cx_fill_end(cx);
        return GW_CH_TAKEN;
    }
    resp_facts f;
    read_response(cx, head, r, now, &f);
    gw_store_check chk = { .status = r->status, .method = ex->req.method, .resp_cc = &f.cc,
                           .req_cc = &cx->req_cc, .req_auth = cx->req_auth,
                           .set_cookie = f.set_cookie, .vary_star = f.vary_star,
                           .lifetime = f.lifetime };
    const char *why = gw_cache_unstorable(&chk);
    if (!why && r->h.body == HTTP_BODY_LENGTH && r->h.content_length > cx->max_object)
        why = "too big";
    char fwd[64];
    snprintf(fwd, sizeof fwd, "%s", cx->status[0] ? cx->status + 8 : "fwd=uri-miss");
    if (why) {
        /* Waiters are released now, not after a body that will not be kept,
         * and a marker keeps the next misses from waiting at all. */
        atomic_fetch_add_explicit(&gw_cstore_stats(s)->uncacheable, 1, memory_order_relaxed);
        if (cx->phase == CX_FILL && strcmp(why, "request no-store") != 0 && strcmp(why, "authorization") != 0)
            store_pass(ex, now);       /* (not for what only this request made unstorable) */
        gw_cx_fill_end(cx);
        gw_cx_set_status(cx, "%s; fwd-status=%u; detail=%s", fwd, r->status, why);
        for (char *p = cx->status; *p; p++)
            if (*p == ' ' && p > cx->status && p[-1] != ';')
                *p = '-';              /* "no freshness" -> a token */
        return GW_CH_RELAY;
    }
    cx->capture = true;
    buf_init(&cx->head);
    buf_init(&cx->body);
    if (buf_append(&cx->head, head, head_len) < 0)
        gw_cx_capture_drop(cx);
    gw_cx_set_status(cx, "%s; fwd-status=%u; stored; ttl=%lld", fwd, r->status,
               (long long)(f.lifetime - f.age0));
    return GW_CH_RELAY;
}

void gw_cache_on_body(gw_exchange *ex, const char *p, size_t n)
{
    gw_cx *cx = ex->cx;
    if (!cx || !cx->capture || !n)
        return;
    if (cx->body.len + n > cx->max_object || buf_append(&cx->body, p, n) < 0) {
        atomic_fetch_add_explicit(&gw_cstore_stats(gw_cx_store_of(ex))->too_big, 1, memory_order_relaxed);
        gw_cx_capture_drop(cx);
        gw_cx_fill_end(cx);
    }
}

void gw_cache_on_end(gw_exchange *ex, bool complete)
{
    gw_cx *cx = ex->cx;
    if (!cx)
        return;
    if (cx->capture && complete) {
        http_response r;
        http_limits lim;
        http_limits_default(&lim);
        lim.max_head = (uint32_t)cx->head.len + 1;
        if (http_parse_response(buf_head(&cx->head), cx->head.len, &r, HTTP_GET, &lim) > 0) {
            buf nh;
            buf_init(&nh);
            normal_head(&nh, buf_head(&cx->head), &r, NULL, NULL, cx->body.len);
            resp_facts f;
            int64_t now = gw_cx_wall_us();
            read_response(cx, buf_head(&cx->head), &r, now, &f);
            store(ex, buf_head(&nh), nh.len, buf_head(&cx->body), cx->body.len, &f, now,
                  buf_head(&cx->head), &r);
            buf_free(&nh);
        }
    }
    gw_cx_capture_drop(cx);
    gw_cx_fill_end(cx);
}

bool gw_cache_answer(gw_exchange *ex)
{
    gw_cx *cx = ex->cx;
    if (!cx || !cx->stale)
        return false;
    gw_cvar *v = cx->stale;
    gw_cvar_ref(v);
    gw_cx_serve(ex, v);
    gw_cvar_unref(v);
    return true;
}

bool gw_cache_on_fail(gw_exchange *ex)
{
    gw_cx *cx = ex->cx;
    if (!cx || !cx->stale || (cx->phase != CX_FILL && cx->phase != CX_FORWARD) || ex->sent_to_client
        || !gw_cx_sie_ok(cx, cx->stale))
        return false;
    atomic_fetch_add_explicit(&gw_cstore_stats(gw_cx_store_of(ex))->stale, 1, memory_order_relaxed);
    gw_cx_set_status(cx, "fwd=stale; detail=stale-if-error");
    gw_cx_fill_end(cx);
    return gw_cache_answer(ex);
}
