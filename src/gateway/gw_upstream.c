/* gw_upstream.c -- one request's trip to a backend: routing, the rate
 * limit, a member (chosen by gw_pick.c), the max_conn queue, connecting
 * (or reusing an idle connection), sending the request and streaming its
 * body up, timeouts, retries and the passive health signal. The answer
 * coming back is gw_response.c's.
 *
 * Invariants:
 *  - A request is retried only while nothing of its response has reached
 *    the client, only when its method allows it (gw_method_retryable), only
 *    when its whole body is still in the client buffer to be sent again,
 *    and only within the retry budget. Retries go to another member.
 *  - A member is pinned (ex->m) from the pick until the attempt ends, and
 *    its in-flight count is held for exactly that long (gw_release_member). */
#include "gateway/gw_proxy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

#define UOUT_HIGH      (256u * 1024u)

static void up_timeout(ev_loop *loop, ev_timer *t);
static void attempt(gw_exchange *ex);

static const char *const fail_msgs[] = {
    [GW_FAIL_CONNECT] = "{\"error\":\"backend connection failed\",\"status\":502}",
    [GW_FAIL_RESET] = "{\"error\":\"backend closed the connection\",\"status\":502}",
    [GW_FAIL_TIMEOUT] = "{\"error\":\"backend timed out\",\"status\":504}",
    [GW_FAIL_BAD_RESPONSE] = "{\"error\":\"backend sent a malformed response\",\"status\":502}",
    [GW_FAIL_TLS] = "{\"error\":\"backend TLS handshake failed (the gateway log says why)\",\"status\":502}",
};

static gw_worker *ex_worker(const gw_exchange *ex) { return ex->c->w; }

/* The exchange's pool in the current snapshot: by index while the
 * generation is unchanged, else by name (NULL when it is gone). */
gw_pool *gw_exchange_pool(gw_exchange *ex, const gw_snap *s, const gw_pool_cfg **pc)
{
    int pi = ex->pool;
    if (s->gen != ex->gen) {
        pi = gw_snap_find_pool(s, ex->pool_name);
        if (pi < 0)
            return NULL;
        ex->pool = pi;
        ex->gen = s->gen;
    }
    if (pc)
        *pc = &s->pool_cfg[pi];
    return &s->pools[pi];
}

static void local_reply(gw_exchange *ex, int status, const char *headers, const char *json)
{
    gw_conn *c = ex->c;
    if (status >= 500 && ex->cx && gw_cache_on_fail(ex))
        return;                  /* stale-if-error: the stored response instead */
    /* An unread request body leaves no trusted boundary: close after. */
    if (!ex->req_body_done)
        c->close_after = true;
    gw_conn_reply(c, status, headers, json);
    gw_conn_request_done(c, status / 100);
}

void gw_close_upstream(gw_exchange *ex)
{
    if (ex->ufd < 0)
        return;
    gw_worker *w = ex_worker(ex);
    ev_io_del(w->loop, ex->ufd);
    gw_utls_close(ex);
    close(ex->ufd);
    ex->ufd = -1;
}

void gw_release_member(gw_exchange *ex)
{
    if (!ex->m)
        return;
    atomic_fetch_sub_explicit(ex->phase == GX_TUNNEL ? &ex->m->tunnels : &ex->m->inflight, 1,
                              memory_order_relaxed);
    gw_member_unref(ex->m);
    ex->m = NULL;
}

/* --- the max_conn queue -------------------------------------------------
 * Per worker and FIFO. A request that finds every backend at max_conn
 * waits here up to the pool's queue_timeout (then 503); the worker's queue
 * timer offers waiting requests a backend again every few milliseconds,
 * since a slot may free up on any worker. */

#define QUEUE_RETRY_US 2000

static void queue_remove(gw_exchange *ex)
{
    gw_worker *w = ex_worker(ex);
    if (ex->phase != GX_QUEUED)
        return;
    if (ex->qprev)
        ex->qprev->qnext = ex->qnext;
    else
        w->qhead = ex->qnext;
    if (ex->qnext)
        ex->qnext->qprev = ex->qprev;
    else
        w->qtail = ex->qprev;
    ex->qprev = ex->qnext = NULL;
    gw_ex_set_phase(ex, GX_ROUTE);
    w->nqueued--;
    metrics_add(w->rt->m_queued, -1);
}

static void queue_add(gw_exchange *ex, uint64_t timeout_us)
{
    gw_worker *w = ex_worker(ex);
    gw_ex_set_phase(ex, GX_QUEUED);
    ex->qnext = NULL;
    ex->qprev = w->qtail;
    if (w->qtail)
        w->qtail->qnext = ex;
    else
        w->qhead = ex;
    w->qtail = ex;
    w->nqueued++;
    metrics_add(w->rt->m_queued, 1);
    if (!ex->timer.fn)
        ev_timer_init(&ex->timer, up_timeout, ex);
    ev_timer_start(w->loop, &ex->timer, timeout_us);
    if (!ev_timer_armed(&w->qtimer))
        ev_timer_start(w->loop, &w->qtimer, QUEUE_RETRY_US);
}

void gw_queue_dispatch(gw_worker *w)
{
    /* Detach the current queue so requests that queue again go to the back
     * of a fresh one and this pass ends. */
    gw_exchange *ex = w->qhead;
    unsigned n = w->nqueued;
    for (unsigned i = 0; i < n && ex; i++) {
        gw_exchange *next = ex->qnext;
        queue_remove(ex);
        ev_timer_stop(w->loop, &ex->timer);
        gw_conn *c = ex->c;
        attempt(ex);
        gw_conn_process(c);
        ex = next;
    }
    if (w->nqueued)
        ev_timer_start(w->loop, &w->qtimer, QUEUE_RETRY_US);
}

void gw_exchange_abort(gw_exchange *ex)
{
    gw_worker *w = ex_worker(ex);
    queue_remove(ex);
    ev_timer_stop(w->loop, &ex->timer);
    gw_close_upstream(ex);
    gw_tunnel_end(ex);
    gw_release_member(ex);
    if (ex->in_retry) {
        gw_retry_end(&w->rt->budget);
        ex->in_retry = false;
    }
    if (ex->counted) {
        gw_retry_request_end(&w->rt->budget);
        ex->counted = false;
    }
}

/* --- request body ------------------------------------------------------ */

/* Body bytes of this request sitting in c->in and not yet forwarded. */
static size_t body_avail(const gw_exchange *ex, const char **p)
{
    const gw_conn *c = ex->c;
    size_t start = ex->head_len + (size_t)ex->req_body_fwd;
    if (start >= c->in.len)
        return 0;
    *p = buf_head(&c->in) + start;
    return c->in.len - start;
}

/* Copies request body bytes into uout (bounded); marks the body done. */
static int pump_into_uout(gw_exchange *ex)
{
    gw_conn *c = ex->c;
    if (ex->phase == GX_TUNNEL) {
        gw_tunnel_pump(ex);
        return 0;
    }
    while (!ex->req_body_done && ex->uout.len < UOUT_HIGH) {
        const char *p;
        size_t n = body_avail(ex, &p);
        if (n == 0)
            break;
        if (ex->req_chunked) {
            long used = http_chunked_feed(&ex->req_chunk, p, n, NULL, NULL);
            if (used < 0)
                return -(int)(ex->req_chunk.error_status ? ex->req_chunk.error_status : 400);
            n = (size_t)used;
            if (http_chunked_done(&ex->req_chunk))
                ex->req_body_done = true;
        } else {
            if (n > ex->req_body_left)
                n = (size_t)ex->req_body_left;
            ex->req_body_left -= n;
            if (ex->req_body_left == 0)
                ex->req_body_done = true;
        }
        gw_buf_acquire(ex_worker(ex), &ex->uout);
        buf_append(&ex->uout, p, n);
        ex->req_body_fwd += n;
        if (n == 0)
            break;
    }
    /* A large body streams through: once it outgrows what a retry could
     * resend, give the forwarded part's memory back. */
    if (ex->req_body_fwd > GW_BODY_RETRY_MAX && ex->head_len + ex->req_body_fwd <= c->in.len) {
        ex->retryable = false;
        size_t drop = ex->head_len + (size_t)ex->req_body_fwd;
        buf_consume(&c->in, drop);
        ex->head_len = 0;
        ex->req_body_fwd = 0;
    }
    return 0;
}

static void up_flush(gw_exchange *ex);

void gw_exchange_pump_body(gw_exchange *ex)
{
    if (ex->ufd < 0 || ex->phase == GX_CONNECTING || ex->req_body_done)
        return;
    int rc = pump_into_uout(ex);
    if (rc < 0) {
        /* Malformed chunked body: the upstream got a partial request. */
        gw_close_upstream(ex);
        ex->c->close_after = true;
        char msg[96];
        snprintf(msg, sizeof msg, "{\"error\":\"%s\",\"status\":%d}",
                 ex->req_chunk.error ? ex->req_chunk.error : "bad chunked body", -rc);
        if (!ex->sent_to_client)
            local_reply(ex, -rc, NULL, msg);
        else
            ex->c->dead = true;
        return;
    }
    up_flush(ex);
}

/* --- connecting ------------------------------------------------------- */

static uint64_t overall_deadline(const gw_exchange *ex)
{
    return ex->t_start_us + ex_worker(ex)->rt->cfg.response_timeout_us;
}

void gw_arm_try_timer(gw_exchange *ex, uint64_t after_us)
{
    gw_worker *w = ex_worker(ex);
    uint64_t now = ev_now_us(w->loop);
    uint64_t dl = overall_deadline(ex);
    if (now + after_us > dl)
        after_us = dl > now ? dl - now : 1;
    if (!ex->timer.fn)
        ev_timer_init(&ex->timer, up_timeout, ex);
    ev_timer_start(w->loop, &ex->timer, after_us);
}

static void attempt(gw_exchange *ex)
{
    gw_worker *w = ex_worker(ex);
    gw_rt *rt = w->rt;
    const gw_snap *s = gw_rcu_read(&rt->rcu);
    const gw_pool_cfg *pc;
    gw_pool *p = gw_exchange_pool(ex, s, &pc);
    uint64_t now = ev_now_us(w->loop);
    if (!p) {
        local_reply(ex, 503, "Retry-After: 1\r\n",
                    "{\"error\":\"pool removed\",\"status\":503}");
        return;
    }
    int i = gw_pick_member(ex, p, pc, now);
    if (i == -2 && pc->queue_size > 0 && w->nqueued < (unsigned)pc->queue_size) {
        /* Every backend is at max_conn: wait for a slot, bounded by the
         * queue timeout counted from the first time this request queued. */
        if (!ex->queue_until_us) {
            uint64_t until = now + pc->queue_timeout_us;
            ex->queue_until_us = until < overall_deadline(ex) ? until : overall_deadline(ex);
        }
        if (now < ex->queue_until_us) {
            queue_add(ex, ex->queue_until_us - now);
            return;
        }
    }
    if (i == -1 && ex->last_fail == GW_FAIL_TLS + 1) {
        /* Every member that could take it refused TLS: say that, not 503. */
        local_reply(ex, 502, NULL, fail_msgs[GW_FAIL_TLS]);
        return;
    }
    if (i < 0) {
        if (i == -2 && ex->ps)
            metrics_inc(ex->ps->queued);
        char msg[160];
        snprintf(msg, sizeof msg, "{\"error\":\"%s\",\"pool\":\"%s\",\"status\":503}",
                 i == -2 ? "every backend is at max_conn" : "no backend available", p->name);
        local_reply(ex, 503, "Retry-After: 1\r\n", msg);
        return;
    }
    gw_member *m = p->members[i];
    gw_member_ref(m);
    ex->m = m;
    /* Busy from now: slow-member ejection counts silence from here. */
    if (atomic_fetch_add_explicit(&m->inflight, 1, memory_order_relaxed) == 0)
        atomic_store_explicit(&m->progress_us, now, memory_order_relaxed);
    ex->try_us = gw_try_timeout(ex, p);
    atomic_fetch_add_explicit(&m->total, 1, memory_order_relaxed);
    if (ex->attempts < sizeof ex->tried / sizeof ex->tried[0])
        ex->tried[ex->attempts] = m;
    ex->attempts++;
    ex->resp_started = false;
    ex->up_eof = false;
    ex->up_close = false;
    ex->resp.scanned = 0;
    ex->t_try_us = now;

    /* The request head goes out first; the body follows as it comes. */
    gw_buf_acquire(w, &ex->uout);
    buf_reset(&ex->uout);
    ex->req_body_fwd = 0;
    ex->req_body_done = ex->req.h.body == HTTP_BODY_NONE
                        || (ex->req.h.body == HTTP_BODY_LENGTH && ex->req.h.content_length == 0);
    ex->req_body_left = ex->req.h.body == HTTP_BODY_LENGTH ? ex->req.h.content_length : 0;
    ex->req_chunked = ex->req.h.body == HTTP_BODY_CHUNKED;
    if (ex->req_chunked)
        http_chunked_init(&ex->req_chunk, rt->cfg.max_body);
    gw_rewrite_request(ex, buf_head(&ex->c->in), &ex->uout);
    gw_buf_acquire(w, &ex->uin);
    buf_reset(&ex->uin);
    ex->rx_seq = 0;                  /* a read ahead of an earlier attempt is void */

    void *tls_idle;
    int fd = hc_pool_get_data(w->idle, m, &tls_idle);
    if (fd >= 0 && !gw_utls_idle_fits(p->tls, tls_idle)) {
        /* The pool turned https (or back, or another CA) since: not this one. */
        ev_io_del(w->loop, fd);
        if (tls_idle)
            gw_utls_idle_close(fd, tls_idle);
        else
            close(fd);
        fd = -1;
    }
    if (fd >= 0) {
        ex->reused = true;
        gw_ex_set_phase(ex, GX_REQUEST);
        ex->ufd = fd;
        if (tls_idle) {
            ex->ussl = tls_idle;
            ex->utls = GW_UTLS_OPEN;
        }
        if (ev_io_mod(w->loop, fd, EV_READ | EV_WRITE, gw_exchange_io, ex) < 0) {
            gw_utls_close(ex);
            close(fd);
            ex->ufd = -1;
            gw_attempt_failed(ex, GW_FAIL_CONNECT);
            return;
        }
        gw_arm_try_timer(ex, ex->try_us);
        pump_into_uout(ex);
        up_flush(ex);
        return;
    }
    ex->reused = false;
    fd = sock_connect(&m->addr);
    if (fd < 0) {
        gw_attempt_failed(ex, GW_FAIL_CONNECT);
        return;
    }
    ex->ufd = fd;
    gw_ex_set_phase(ex, GX_CONNECTING);
    if (ev_io_add(w->loop, fd, EV_READ | EV_WRITE, gw_exchange_io, ex) < 0
        || (p->tls && gw_utls_begin(ex, p->tls) < 0)) {
        gw_attempt_failed(ex, GW_FAIL_CONNECT);
        return;
    }
    gw_arm_try_timer(ex, rt->cfg.connect_timeout_us);
}

void gw_exchange_start(gw_conn *c)
{
    gw_worker *w = c->w;
    gw_rt *rt = w->rt;
    gw_exchange *ex = c->ex;
    const http_request *req = &ex->req;
    const char *head = buf_head(&c->in);
    const gw_snap *s = gw_rcu_read(&rt->rcu);
    gw_ex_set_phase(ex, GX_ROUTE);
    ex->req_body_done = req->h.body == HTTP_BODY_NONE
                        || (req->h.body == HTTP_BODY_LENGTH && req->h.content_length == 0);
    if (req->method == HTTP_CONNECT || (req->h.upgrade && rt->cfg.max_tunnels == 0)) {
        /* CONNECT is a forward proxy's job, not a gateway's. */
        c->close_after = true;
        local_reply(ex, 501, NULL, req->method == HTTP_CONNECT
                    ? "{\"error\":\"CONNECT is not supported\",\"status\":501}"
                    : "{\"error\":\"Upgrade is turned off (max_tunnels: 0)\",\"status\":501}");
        return;
    }
    /* An Upgrade not named in Connection (or not on a bodiless GET) is a
     * hop-by-hop header like any other: dropped, and the request proxied. */
    ex->upgrade = gw_tunnel_wanted(ex, head);
    if (rt->cfg.compression) {
        /* Read now: a streamed request body may consume the head. */
        const http_header *ae = http_find_header(head, &req->h, "accept-encoding");
        ex->ae = ae ? gw_compress_accepts(head + ae->value.off, ae->value.len) : GW_CODING_NONE;
    }
    int ri = gw_route_match(s, req->method, head + req->path.off, req->path.len,
                            req->host.len ? head + req->host.off : NULL, req->host.len);
    if (ri < 0) {
        local_reply(ex, 404, NULL, "{\"error\":\"no route matches this request\",\"status\":404}");
        return;
    }
    const gw_route *r = &s->routes[ri];
    if (r->rl_class >= 0 && (size_t)r->rl_class < s->nrl) {
        gw_rl_result rr;
        gw_rl_take(rt->rl, (uint32_t)r->rl_class, &s->rl[r->rl_class], c->ip_raw,
                   c->ip_raw_len, ev_now_us(w->loop), &rr);
        if (!rr.allowed) {
            char hdr[160];
            snprintf(hdr, sizeof hdr, "Retry-After: %u\r\nRateLimit-Limit: %u\r\n"
                     "RateLimit-Remaining: 0\r\n", rr.retry_after_s ? rr.retry_after_s : 1, rr.limit);
            metrics_inc(rt->m_rl_total);
            ex->rs = gw_worker_route_series(w, s, ri, r->pool >= 0 ? r->pool : 0);
            local_reply(ex, 429, hdr, "{\"error\":\"rate limit exceeded\",\"status\":429}");
            return;
        }
    }
    int pi = gw_route_pool(r, req->method, gw_worker_rand(w));
    if (pi < 0 || (size_t)pi >= s->npools) {
        local_reply(ex, 503, "Retry-After: 1\r\n", "{\"error\":\"route has no pool\",\"status\":503}");
        return;
    }
    ex->pool = pi;
    ex->gen = s->gen;
    snprintf(ex->pool_name, sizeof ex->pool_name, "%s", s->pools[pi].name);
    ex->rs = gw_worker_route_series(w, s, ri, pi);
    ex->ps = gw_worker_pool_series(w, s, pi);
    ex->security_headers = r->security_headers;
    ex->hsts_max_age = r->hsts_max_age;
    ex->hsts_sub = r->hsts_sub;
    if (ex->upgrade && !gw_tunnel_reserve(ex)) {
        c->close_after = true;
        local_reply(ex, 503, "Retry-After: 1\r\n",
                    "{\"error\":\"too many open tunnels (max_tunnels)\",\"status\":503}");
        return;
    }
    ex->retryable = gw_method_retryable(r, req->method)
                    && (req->h.body == HTTP_BODY_NONE
                        || (req->h.body == HTTP_BODY_LENGTH && req->h.content_length <= GW_BODY_RETRY_MAX));
    if (r->cache && gw_cache_request(ex, r->cache) != GW_CACHE_FORWARD)
        return;                      /* answered from the cache, or parked behind a fetch */
    gw_exchange_forward(ex);
}

void gw_exchange_forward(gw_exchange *ex)
{
    gw_retry_request_begin(&ex_worker(ex)->rt->budget);
    ex->counted = true;
    attempt(ex);
}

/* --- failure and retry ------------------------------------------------- */

void gw_report_outcome(gw_exchange *ex, bool ok)
{
    gw_worker *w = ex_worker(ex);
    if (!ex->m)
        return;
    const gw_snap *s = gw_rcu_read(&w->rt->rcu);
    gw_pool *p = gw_exchange_pool(ex, s, NULL);
    if (!p)
        return;
    uint64_t now = ev_now_us(w->loop);
    if (gw_outlier_report(p, ex->m, ok, now)) {
        if (ex->ps)
            metrics_inc(ex->ps->ejections);
        char addr[64];
        log_warn("ejected %s from pool %s after consecutive failures",
                 sock_addr_format(&ex->m->addr, addr, sizeof addr), p->name);
    }
}

/* A failed connect sent nothing, so any method may go elsewhere and it
 * costs no retry budget (the budget exists to stop retry storms against
 * slow or failing backends, not to fail requests a dead port refused). */
static bool can_retry(gw_exchange *ex, enum gw_fail_kind kind)
{
    gw_worker *w = ex_worker(ex);
    gw_rt *rt = w->rt;
    bool nothing_sent = kind == GW_FAIL_CONNECT || kind == GW_FAIL_TLS;
    if (ex->sent_to_client || ex->head_len == 0 || (!ex->retryable && !nothing_sent))
        return false;
    if (ex->attempts > (unsigned)rt->cfg.retries || ex->attempts >= 4)
        return false;
    if (ev_now_us(w->loop) >= overall_deadline(ex))
        return false;
    if (nothing_sent || ex->in_retry)
        return true;     /* already holds a budget slot: reuse it */
    if (!gw_retry_try_begin(&rt->budget))
        return false;
    ex->in_retry = true;
    return true;
}

void gw_attempt_failed(gw_exchange *ex, enum gw_fail_kind kind)
{
    gw_worker *w = ex_worker(ex);
    ev_timer_stop(w->loop, &ex->timer);
    gw_close_upstream(ex);
    if (ex->m)
        atomic_fetch_add_explicit(&ex->m->by_class[0], 1, memory_order_relaxed);
    /* A latency-derived timeout means "answered nothing while others do":
     * slow-member ejection owns that signal and readmits the member on its
     * first answer. Counted as an outlier failure too, it would keep a
     * member that paused for a second out for base_ejection. */
    if (!(kind == GW_FAIL_TIMEOUT && ex->try_adaptive))
        gw_report_outcome(ex, false);
    gw_release_member(ex);
    ex->last_fail = (uint8_t)(kind + 1);
    if (ex->phase < GX_RESPONSE)
        gw_ex_set_phase(ex, GX_ROUTE);       /* no member, no upstream: routed again or answered */
    if (can_retry(ex, kind)) {
        if (ex->ps)
            metrics_inc(ex->ps->retries);
        attempt(ex);
        return;
    }
    if (ex->sent_to_client) {
        ex->c->dead = true;      /* a response was cut short: nothing honest to add */
        return;
    }
    if (gw_cache_on_fail(ex))
        return;                  /* stale-if-error: the stored response instead */
    local_reply(ex, kind == GW_FAIL_TIMEOUT ? 504 : 502, NULL, fail_msgs[kind]);
}

/* An adaptive try timeout fired: go elsewhere only when the member looks
 * stuck (gw_member_stuck); a member that answers others, or holds this
 * request alone, gets more time, up to try_timeout from the attempt's
 * start. (Answered "since the attempt began" would not do as the proof of
 * life: a response already on the wire when the member froze would keep
 * every request on it waiting.) True when the wait goes on. */
static bool keep_waiting(gw_exchange *ex)
{
    gw_worker *w = ex_worker(ex);
    uint64_t now = ev_now_us(w->loop);
    uint64_t end = ex->t_try_us + w->rt->cfg.try_timeout_us;
    if (!ex->try_adaptive || !ex->m || now >= end)
        return false;
    if (gw_member_stuck(ex->m, ex->t_try_us, ex->try_us, now)) {
        /* The same evidence ejects it as slow (when others answer): its
         * last stuck request must not wait alone for the next scan. */
        gw_pool *p = gw_exchange_pool(ex, gw_rcu_read(&w->rt->rcu), NULL);
        if (p && gw_slow_check(p, ex->m, ex->try_us, now))
            log_warn("%s in pool %s holds %u requests and answered none for %.0f ms while "
                     "others answer: no new requests until it answers", ex->m->name, p->name,
                     atomic_load_explicit(&ex->m->inflight, memory_order_relaxed),
                     (double)ex->try_us / 1e3);
        return false;
    }
    gw_arm_try_timer(ex, end - now < ex->try_us ? end - now : ex->try_us);
    return true;
}

static void up_timeout(ev_loop *loop, ev_timer *t)
{
    gw_exchange *ex = t->arg;
    gw_conn *c = ex->c;
    (void)loop;
    switch ((gw_ex_phase)ex->phase) {
    case GX_TUNNEL:
        gw_tunnel_timeout(ex);
        break;
    case GX_QUEUED:
        queue_remove(ex);
        if (ex->ps)
            metrics_inc(ex->ps->queued);
        local_reply(ex, 503, "Retry-After: 1\r\n",
                    "{\"error\":\"timed out waiting for a backend under max_conn\",\"status\":503}");
        break;
    case GX_CONNECTING:
        if (ex->utls == GW_UTLS_HANDSHAKE) {   /* connected, but TLS never finished */
            gw_utls_timed_out(ex);
            gw_attempt_failed(ex, GW_FAIL_TLS);
            break;
        }
        gw_attempt_failed(ex, GW_FAIL_CONNECT);
        break;
    case GX_REQUEST:
        if (keep_waiting(ex))
            return;
        gw_attempt_failed(ex, GW_FAIL_TIMEOUT);
        break;
    case GX_RESPONSE:
        c->dead = true;           /* the body stalled mid-way */
        break;
    default:                      /* HEAD, ROUTE: no timer of the exchange runs */
        log_warn("exchange timer fired in phase %s", gw_ex_phase_str((gw_ex_phase)ex->phase));
        break;
    }
    gw_conn_process(c);
}

const char *gw_exchange_tx_pending(gw_exchange *ex, size_t *len)
{
    /* TLS records are OpenSSL's to write: the ordinary path (up_flush). */
    if (ex->ufd < 0 || ex->phase == GX_CONNECTING || !ex->uout.len || ex->ussl)
        return NULL;
    *len = ex->uout.len;
    return buf_head(&ex->uout);
}

void gw_exchange_tx_done(gw_exchange *ex, size_t sent)
{
    buf_consume(&ex->uout, sent);
    if (ex->uout.len == 0)
        pump_into_uout(ex);          /* room again: take more body */
}

static void up_flush(gw_exchange *ex)
{
    if (ex->ufd >= 0 && ex->phase != GX_CONNECTING && ex->uout.len && gw_conn_defer(ex->c))
        return;
    while (ex->ufd >= 0 && ex->phase != GX_CONNECTING && ex->uout.len) {
        ssize_t n = ex->ussl ? gw_utls_write(ex, buf_head(&ex->uout), ex->uout.len)
                             : write(ex->ufd, buf_head(&ex->uout), ex->uout.len);
        if (n > 0) {
            gw_exchange_tx_done(ex, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* The backend went away while we were sending. */
        if (!ex->resp_started)
            gw_attempt_failed(ex, GW_FAIL_RESET);
        else
            ex->up_close = true;
        return;
    }
}

void gw_exchange_flush(gw_exchange *ex)
{
    up_flush(ex);
}

void gw_exchange_resume(gw_exchange *ex)
{
    if (ex->ufd >= 0 && ex->phase != GX_CONNECTING)
        gw_response_read(ex);
    else if (ex->phase >= GX_RESPONSE)
        gw_response_process(ex);
}

void gw_exchange_io(ev_loop *loop, int fd, unsigned events, void *arg)
{
    gw_exchange *ex = arg;
    gw_conn *c = ex->c;
    (void)loop;
    (void)fd;
    if (ex->phase == GX_CONNECTING) {
        if (ex->utls != GW_UTLS_HANDSHAKE) {   /* the TCP connect */
            if (!(events & (EV_WRITE | EV_ERROR)))
                goto out;
            if (sock_connect_result(ex->ufd) != 0) {
                gw_attempt_failed(ex, GW_FAIL_CONNECT);
                goto out;
            }
        }
        if (ex->ussl) {                        /* https: then the handshake */
            int hs = gw_utls_handshake(ex);
            if (hs < 0) {
                gw_attempt_failed(ex, GW_FAIL_TLS);
                goto out;
            }
            if (hs == 0)
                goto out;
        }
        gw_ex_set_phase(ex, GX_REQUEST);
        gw_arm_try_timer(ex, ex->try_us);
        pump_into_uout(ex);
    }
    if (ex->uout.len)
        up_flush(ex);
    if (c->ex == ex && ex->ufd >= 0 && (events & (EV_READ | EV_ERROR)))
        gw_response_read(ex);
out:
    gw_conn_process(c);
}
