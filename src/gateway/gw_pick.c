/* gw_pick.c -- which member of a pool takes a request: the sticky cookie
 * first (a first attempt only), then the pool's algorithm with the
 * request's balancing key (header, cookie, query parameter or client
 * address) for consistent hashing, never the member the last attempt
 * failed on, and max_conn honoured with one more try elsewhere. Before
 * picking, a worker looks for slow members every GW_SLOW_SCAN_US (not on
 * every request: the scan walks the pool), and after it, it sets how long
 * the attempt may wait for its answer (gw_try_timeout).
 *
 * Reads the request head in place (c->in); once a streamed body has
 * consumed it (head_len 0) the key and the sticky cookie are skipped and
 * the algorithm picks alone. */
#include "gateway/gw_proxy.h"

#include <string.h>

#include "core/log.h"

#define GW_SLOW_SCAN_US 10000u

/* The value of cookie `name` in the request's Cookie headers. */
static bool find_cookie(const gw_exchange *ex, const char *head, const char *name,
                        const char **val, size_t *vlen)
{
    size_t nlen = strlen(name);
    const http_head_common *h = &ex->req.h;
    for (unsigned i = 0; i < h->nheaders; i++) {
        if (!http_slice_ieq(head, h->headers[i].name, "cookie"))
            continue;
        const char *p = head + h->headers[i].value.off;
        const char *end = p + h->headers[i].value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *eq = memchr(p, '=', (size_t)(end - p));
            if (!eq)
                break;
            const char *semi = memchr(eq, ';', (size_t)(end - eq));
            if (!semi)
                semi = end;
            if ((size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0) {
                *val = eq + 1;
                *vlen = (size_t)(semi - eq - 1);
                return true;
            }
            p = semi;
        }
    }
    return false;
}

static bool find_query(const gw_exchange *ex, const char *head, const char *name,
                       const char **val, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *p = head + ex->req.query.off, *end = p + ex->req.query.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        if (!amp)
            amp = end;
        if ((size_t)(amp - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            *val = p + nlen + 1;
            *vlen = (size_t)(amp - p - (ptrdiff_t)nlen - 1);
            return true;
        }
        p = amp + 1;
    }
    return false;
}

/* The consistent-hash key of a request, per the pool's hash_on. */
static bool hash_key(const gw_exchange *ex, const char *head, const gw_pool_cfg *pc,
                     const void **key, size_t *klen)
{
    const char *v = NULL;
    size_t vl = 0;
    bool found = false;
    switch (pc->hash_on) {
    case GW_CFG_KEY_HEADER: {
        const http_header *h = http_find_header(head, &ex->req.h, pc->hash_key);
        if (h) {
            v = head + h->value.off;
            vl = h->value.len;
            found = true;
        }
        break;
    }
    case GW_CFG_KEY_COOKIE:
        found = find_cookie(ex, head, pc->hash_key, &v, &vl);
        break;
    case GW_CFG_KEY_QUERY:
        found = find_query(ex, head, pc->hash_key, &v, &vl);
        break;
    case GW_CFG_KEY_IP:
        v = (const char *)ex->c->ip_raw;
        vl = ex->c->ip_raw_len;
        found = vl > 0;
        break;
    default:
        break;
    }
    *key = v;
    *klen = vl;
    return found;
}

/* Slow-member ejection (gw_latency.c), against this worker's p99. */
static void slow_scan(gw_pool *p, gw_lb_cursor *cur, uint64_t now)
{
    if (now < cur->next_scan_us)
        return;
    cur->next_scan_us = now + GW_SLOW_SCAN_US;
    uint64_t thr = gw_lat_threshold(p, &cur->lat, p->slow_factor);
    for (uint32_t i = 0; thr && i < p->n; i++)
        if (gw_slow_check(p, p->members[i], thr, now))
            log_warn("%s in pool %s holds %u requests and answered none for %.0f ms while "
                     "others answer (p99 %.1f ms): no new requests until it answers",
                     p->members[i]->name, p->name,
                     atomic_load_explicit(&p->members[i]->inflight, memory_order_relaxed),
                     (double)thr / 1e3, (double)gw_lat_p99(&cur->lat) / 1e3);
}

uint64_t gw_try_timeout(gw_exchange *ex, const gw_pool *p)
{
    uint64_t cap = ex->c->w->rt->cfg.try_timeout_us;
    ex->try_adaptive = false;
    if (!ex->retryable || !p)
        return cap;
    gw_lb_cursor *cur = gw_worker_cursor(ex->c->w, NULL, ex->pool);
    uint64_t t = cur ? gw_lat_threshold(p, &cur->lat, p->try_factor) : 0;
    if (!t)
        return cap;
    ex->try_adaptive = true;
    return t;
}

int gw_pick_member(gw_exchange *ex, gw_pool *p, const gw_pool_cfg *pc, uint64_t now)
{
    gw_worker *w = ex->c->w;
    const char *head = buf_head(&ex->c->in);
    bool head_ok = ex->head_len > 0;     /* false once a streamed body consumed it */
    if (ex->attempts == 0 && pc->sticky_cookie && head_ok) {
        const char *v;
        size_t vl;
        if (find_cookie(ex, head, pc->sticky_cookie, &v, &vl)) {
            int i = gw_sticky_find(p, v, vl, now);
            if (i >= 0)
                return i;
        }
        ex->set_sticky = true;
    }
    int exclude = -1;
    if (ex->attempts > 0)
        for (uint32_t i = 0; i < p->n; i++)
            if (p->members[i] == ex->tried[ex->attempts - 1])
                exclude = (int)i;
    const void *key = NULL;
    size_t klen = 0;
    if (p->algo == GW_ALGO_HASH && head_ok)
        hash_key(ex, head, pc, &key, &klen);
    gw_lb_cursor *cur = gw_worker_cursor(w, NULL, ex->pool);
    if (!cur)
        return -1;
    slow_scan(p, cur, now);
    int i = gw_lb_pick(p, cur, key, klen, exclude, now);
    if (i < 0 && exclude >= 0) {
        /* The member that just failed is the only one left to take the
         * retry: it goes back there (as HAProxy's retries do) rather than
         * ending as "no backend available" (a refused or reset connection
         * under a burst is often gone on the next try). Ejected, slow or
         * unhealthy members are still not picked. */
        i = gw_lb_pick(p, cur, key, klen, -1, now);
    }
    if (i >= 0 && pc->max_conn > 0
        && atomic_load_explicit(&p->members[i]->inflight, memory_order_relaxed) >= (uint32_t)pc->max_conn) {
        /* Full: one more try elsewhere, then the pool is busy. */
        int j = gw_lb_pick(p, cur, NULL, 0, i, now);
        if (j < 0 || atomic_load_explicit(&p->members[j]->inflight, memory_order_relaxed)
                         >= (uint32_t)pc->max_conn)
            return -2;
        i = j;
    }
    return i;
}
