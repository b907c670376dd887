/* gw_response.c -- the backend's answer to one exchange: reading it (the
 * batch read-ahead of gw_io.c included), framing it with the request's
 * method, relaying head and body to the client, and deciding whether the
 * upstream connection goes back to the idle pool.
 *
 * Invariants:
 *  - A response is parsed with the request's method, so a HEAD answer or a
 *    204/304 never swallows the next response; an upstream connection goes
 *    back to the idle pool only when the response ended exactly at the end
 *    of the bytes read and the request body was sent whole. Anything else
 *    closes it: a connection whose framing is in doubt is never reused.
 *  - Client output is bounded: past GW_OUT_HIGH the upstream is not read
 *    until the client drains (backpressure instead of buffering a body). */
#include "gateway/gw_proxy.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "core/log.h"

/* The response is complete: hand the connection back or close it. */
static void finish_upstream(gw_exchange *ex)
{
    gw_worker *w = ex->c->w;
    ev_timer_stop(w->loop, &ex->timer);
    gw_member *m = ex->m;
    bool reuse = !ex->up_close && !ex->up_eof && ex->req_body_done && ex->uin.len == 0
                 && ex->uout.len == 0 && m
                 && atomic_load_explicit(&m->state, memory_order_relaxed) == GW_ST_READY
                 && (!ex->ussl || (ex->utls == GW_UTLS_OPEN && SSL_pending(ex->ussl) == 0));
    if (reuse) {
        gw_worker_hold(w, m);
        hc_pool_put_data(w->idle, m, ex->ufd, ex->ussl);   /* the TLS session goes with it */
        ex->ufd = -1;
        ex->ussl = NULL;
        ex->utls = GW_UTLS_NONE;
    } else {
        gw_close_upstream(ex);
    }
    gw_release_member(ex);
}

/* A response head came: the member's latency (its peak EWMA, and this
 * worker's window of the pool for the p99), and the proof it answers. */
static void observe_latency(gw_exchange *ex, uint64_t now)
{
    gw_worker *w = ex->c->w;
    uint64_t lat = now > ex->t_try_us ? now - ex->t_try_us : 0;
    gw_pool *p = gw_exchange_pool(ex, gw_rcu_read(&w->rt->rcu), NULL);
    gw_lb_cursor *cur = p ? gw_worker_cursor(w, NULL, ex->pool) : NULL;
    if (cur)
        gw_lat_record(&cur->lat, lat, now);
    if (!ex->m)
        return;
    gw_member_observe(ex->m, lat, now);
    if (gw_member_answered(ex->m, now))
        log_info("%s in pool %s answers again: back in rotation", ex->m->name, ex->pool_name);
}

/* Body bytes to the client: through the transform chain when one is
 * active, else as they came. */
static void relay(gw_exchange *ex, const char *p, size_t n)
{
    if (ex->cx)
        gw_cache_on_body(ex, p, n);
    if (!ex->xf) {
        buf_append(&ex->c->out, p, n);
        return;
    }
    if (gw_xform_body(ex, p, n) < 0) {
        ex->c->dead = true;        /* encoder failed mid-body: cut it short */
        ex->up_close = true;
    }
}

static void relay_chunk(void *arg, const char *p, size_t n)
{
    gw_exchange *ex = arg;
    if (ex->xf)
        relay(ex, p, n);
    else
        gw_cache_on_body(ex, p, n);     /* the chunks themselves go on verbatim */
}

/* Forwards response body bytes from uin to the client. True when done. */
static bool forward_body_raw(gw_exchange *ex)
{
    gw_conn *c = ex->c;
    switch (ex->resp_body) {
    case HTTP_BODY_NONE:
        return true;
    case HTTP_BODY_LENGTH: {
        size_t n = ex->uin.len < ex->resp_body_left ? ex->uin.len : (size_t)ex->resp_body_left;
        if (n) {
            relay(ex, buf_head(&ex->uin), n);
            buf_consume(&ex->uin, n);
            ex->resp_body_left -= n;
        }
        return ex->resp_body_left == 0;
    }
    case HTTP_BODY_CHUNKED: {
        if (ex->uin.len == 0)
            return false;
        /* Compressing: the payload goes through the chain (which frames
         * its own output); else the chunks go on verbatim. */
        long used = http_chunked_feed(&ex->resp_chunk, buf_head(&ex->uin), ex->uin.len,
                                      ex->xf || ex->cx ? relay_chunk : NULL, ex);
        if (used < 0) {
            c->dead = true;        /* framing broke mid-body */
            ex->up_close = true;
            return true;
        }
        if (!ex->xf)
            buf_append(&c->out, buf_head(&ex->uin), (size_t)used);
        buf_consume(&ex->uin, (size_t)used);
        return http_chunked_done(&ex->resp_chunk);
    }
    default:   /* HTTP_BODY_CLOSE (and a tunnel): everything until EOF */
        if (ex->uin.len) {
            if (ex->phase == GX_TUNNEL)
                gw_tunnel_down(ex, ex->uin.len);
            relay(ex, buf_head(&ex->uin), ex->uin.len);
            buf_reset(&ex->uin);
        }
        return ex->up_eof;
    }
}

static bool forward_body(gw_exchange *ex)
{
    bool done = forward_body_raw(ex);
    if (done && ex->xf && !ex->c->dead && gw_xform_end(ex) < 0)
        ex->c->dead = true;
    return done;
}

/* Parses the head when it is whole, then forwards the body. */
void gw_response_process(gw_exchange *ex)
{
    gw_worker *w = ex->c->w;
    gw_rt *rt = w->rt;
    gw_conn *c = ex->c;
    while (ex->phase < GX_RESPONSE) {
        int r = http_parse_response(buf_head(&ex->uin), ex->uin.len, &ex->resp,
                                    ex->req.method, &rt->limits);
        if (r == HTTP_INCOMPLETE) {
            if (ex->up_eof)
                gw_attempt_failed(ex, ex->uin.len ? GW_FAIL_BAD_RESPONSE : GW_FAIL_RESET);
            return;
        }
        if (r == HTTP_ERROR) {
            ex->up_close = true;
            gw_attempt_failed(ex, GW_FAIL_BAD_RESPONSE);
            return;
        }
        bool switching = ex->resp.status == 101 && ex->upgrade;
        if (ex->resp.status >= 100 && ex->resp.status < 200 && !switching) {
            if (ex->resp.status == 101) {
                /* Switching protocols nobody asked for: the stream is lost. */
                gw_attempt_failed(ex, GW_FAIL_BAD_RESPONSE);
                return;
            }
            /* Interim (100 Continue): pass it on and read the final head. */
            if (ex->req.h.version_minor == 1) {
                gw_buf_acquire(w, &c->out);
                buf_append(&c->out, buf_head(&ex->uin), (size_t)r);
            }
            buf_consume(&ex->uin, (size_t)r);
            ex->resp.scanned = 0;
            continue;
        }
        uint64_t now = ev_now_update(w->loop);
        gw_ex_set_phase(ex, GX_RESPONSE);
        ex->status = ex->resp.status;
        if (ex->ps)
            metrics_observe_us(ex->ps->upstream, now - ex->t_try_us);
        observe_latency(ex, now);
        if (ex->m)
            atomic_fetch_add_explicit(&ex->m->by_class[ex->status / 100 <= 5 ? ex->status / 100 : 5],
                                      1, memory_order_relaxed);
        gw_report_outcome(ex, ex->status < 500);
        ex->resp_body = (uint8_t)ex->resp.h.body;
        ex->resp_body_left = ex->resp.h.content_length;
        if (ex->resp_body == HTTP_BODY_CHUNKED)
            http_chunked_init(&ex->resp_chunk, 0);
        if (!ex->resp.h.keep_alive)
            ex->up_close = true;
        if (ex->resp_body == HTTP_BODY_CLOSE || !ex->req_body_done)
            c->close_after = true;      /* no boundary to keep the client on */
        const char *cookie = NULL;
        uint64_t max_age = 0;
        if (ex->set_sticky) {
            const gw_snap *s = gw_rcu_read(&rt->rcu);
            const gw_pool_cfg *pc;
            if (gw_exchange_pool(ex, s, &pc)) {
                cookie = pc->sticky_cookie;
                max_age = pc->sticky_max_age_us;
            }
        }
        if (ex->cx && gw_cache_on_head(ex, buf_head(&ex->uin), (size_t)r) == GW_CH_TAKEN) {
            /* The cache answers (a refreshing 304, or stale-if-error): the
             * backend's response is dropped, its connection with it unless
             * nothing follows the head. */
            buf_consume(&ex->uin, (size_t)r);
            if (ex->resp_body != HTTP_BODY_NONE || ex->uin.len)
                ex->up_close = true;
            finish_upstream(ex);
            if (!gw_cache_answer(ex)) {
                gw_conn_reply(c, 502, NULL, "{\"error\":\"cache refresh failed\",\"status\":502}");
                gw_conn_request_done(c, 5);
            }
            return;
        }
        gw_buf_acquire(w, &c->out);
        if (switching)
            c->close_after = false;     /* the 101 says Connection: Upgrade */
        /* The transform chain decides before the head is written: it may
         * change the head (coding, length, ETag, Vary) or hold it back. */
        gw_xform_begin(ex, buf_head(&ex->uin));
        gw_rewrite_response(ex, buf_head(&ex->uin),
                            gw_xform_whole(ex) ? gw_xform_head_buf(ex) : &c->out, cookie, max_age);
        buf_consume(&ex->uin, (size_t)r);
        ex->sent_to_client = true;
        if (switching) {
            gw_tunnel_begin(ex);        /* uin's rest is the backend's first frames */
            break;
        }
        /* From here the timer guards a stalled body, one try_timeout per read. */
        gw_arm_try_timer(ex, rt->cfg.try_timeout_us);
    }
    if (forward_body(ex)) {
        if (ex->cx)
            gw_cache_on_end(ex, !c->dead);
        if (ex->uin.len)
            ex->up_close = true;        /* bytes past the response: never reuse */
        finish_upstream(ex);
        gw_conn_request_done(c, ex->status / 100);
        return;
    }
    if (ex->up_eof) {
        /* Cut short by the backend. */
        ex->up_close = true;
        c->dead = true;
        if (ex->m)
            atomic_fetch_add_explicit(&ex->m->by_class[0], 1, memory_order_relaxed);
        return;
    }
    if (c->out.len > GW_OUT_HIGH)
        c->backlog = true;
}

/* The upstream may be read now: the client is not backed up, nothing ended. */
static bool up_readable(const gw_exchange *ex)
{
    return ex->ufd >= 0 && !ex->c->backlog && !ex->c->dead && !ex->up_eof;
}

/* Readies ex->uin for a read of at least 4 KB; false when memory ran out. */
static bool up_make_room(gw_exchange *ex)
{
    gw_buf_acquire(ex->c->w, &ex->uin);
    if (buf_room(&ex->uin) < 4096) {
        buf_compact(&ex->uin);
        if (buf_room(&ex->uin) < 4096 && buf_reserve(&ex->uin, GW_BUF_SIZE) < 0)
            return false;
    }
    return true;
}

/* Reads what the upstream has (unless the client is backed up). */
void gw_response_read(gw_exchange *ex)
{
    gw_worker *w = ex->c->w;
    gw_conn *c = ex->c;
    while (up_readable(ex)) {
        if (!up_make_room(ex))
            return;
        if (ex->rx_seq == w->io_seq) {
            /* gw_io read this socket ahead in this batch; its bytes are in. */
            ex->rx_seq = 0;
            if (!ex->rx_got)
                return;
            ex->resp_started = true;
            gw_response_process(ex);
            if ((!ex->rx_more && ex->phase != GX_TUNNEL) || c->ex != ex)
                return;
            continue;
        }
        size_t room = buf_room(&ex->uin);
        ssize_t n = ex->ussl ? gw_utls_read(ex, buf_tail(&ex->uin), room)
                             : read(ex->ufd, buf_tail(&ex->uin), room);
        if (n > 0) {
            ex->resp_started = true;
            buf_commit(&ex->uin, (size_t)n);
            gw_response_process(ex);
            /* A tunnel reads on to EAGAIN: a FIN that came with the last
             * bytes raises no new edge, and a tunnel has no framing that
             * would end it otherwise. */
            /* Over TLS a short read ends a record, not the socket's bytes. */
            if (((size_t)n < room && ex->phase != GX_TUNNEL && !ex->ussl) || c->ex != ex)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* EOF or reset. */
        ex->up_eof = true;
        if (!ex->resp_started) {
            gw_attempt_failed(ex, GW_FAIL_RESET);
            return;
        }
        gw_response_process(ex);
        return;
    }
}

char *gw_exchange_rx_room(gw_exchange *ex, size_t *room)
{
    /* Only where the upstream callback would read: a connected, current attempt. */
    if (ex->phase == GX_CONNECTING || ex->ussl || ex->c->ex != ex || !up_readable(ex)
        || !up_make_room(ex))
        return NULL;              /* TLS records are OpenSSL's to read: no read-ahead */
    *room = buf_room(&ex->uin);
    return buf_tail(&ex->uin);
}

void gw_exchange_rx_done(gw_exchange *ex, int res, size_t room)
{
    if (res > 0) {
        buf_commit(&ex->uin, (size_t)res);
        ex->rx_got = true;
        ex->rx_more = (size_t)res == room;
    } else if (res == -EAGAIN || res == -EWOULDBLOCK) {
        ex->rx_got = false;
        ex->rx_more = false;
    } else {
        return;              /* EOF or an error: up_read's own read meets it */
    }
    ex->rx_seq = ex->c->w->io_seq;
}
