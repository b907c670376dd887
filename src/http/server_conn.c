/* server_conn.c -- one HTTP/1.1 server connection as a state machine,
 * the response functions handlers call, and the per-request metrics.
 *
 * http_conn_run() drives everything: read until EAGAIN, parse and answer
 * every complete request in the input in order (pipelining falls out of
 * that), write until EAGAIN. Handlers run synchronously on the worker, so
 * one request is dispatched at a time per worker and the request context
 * lives in the worker rather than in every connection.
 *
 * Invariants:
 *  - the request slices in conn.req are offsets from buf_head(&conn.in) and
 *    stay valid because input is consumed only after the request is answered;
 *  - exactly one timer per connection, its meaning in conn.tmode: header
 *    (from the first byte of a head, slowloris), idle (between requests),
 *    io (body or response in progress: re-armed on progress) or linger
 *    (write side shut, waiting for the peer's EOF before close);
 *  - a connection closes only after its queued output has been written;
 *  - metric series handles are cached per worker, so the hot path takes
 *    the registry lock only the first time a (route, method, code) is seen. */
#include "server_conn.h"
#include "writer.h"
#include "../core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- metrics ---- */

static metric_series *dur_series(worker *w, const http_ctx *x)
{
    unsigned i = x->route ? http_route_index(x->route) : w->ndur - 1;
    if (i < w->ndur && w->dur[i])
        return w->dur[i];
    const char *lv[] = { w->s->name, x->route_pattern ? x->route_pattern : "unmatched", NULL };
    metric_series *s = metrics_series(w->s->f_dur, lv);
    if (i < w->ndur)
        w->dur[i] = s;
    return s;
}

static metric_series *cnt_series(worker *w, const http_ctx *x, http_method m, int code)
{
    unsigned ri = x->route ? http_route_index(x->route) + 1 : 0;
    uint32_t key = (ri & 0xffff) << 16 | ((uint32_t)m & 0xf) << 10 | ((uint32_t)code & 0x3ff);
    uint32_t h = (key * 2654435761u) >> 23;   /* 9 bits */
    for (unsigned probe = 0; probe < 8; probe++) {
        cnt_slot *sl = &w->cnt[(h + probe) & (CNT_CACHE - 1)];
        if (sl->s && sl->key == key)
            return sl->s;
        if (!sl->s) {
            char codes[8];
            snprintf(codes, sizeof codes, "%d", code);
            const char *lv[] = { w->s->name, x->route_pattern ? x->route_pattern : "unmatched",
                                 m == HTTP_OTHER ? "OTHER" : http_method_name(m), codes, NULL };
            sl->s = metrics_series(w->s->f_req, lv);
            sl->key = key;
            return sl->s;
        }
    }
    char codes[8];
    snprintf(codes, sizeof codes, "%d", code);
    const char *lv[] = { w->s->name, x->route_pattern ? x->route_pattern : "unmatched",
                         m == HTTP_OTHER ? "OTHER" : http_method_name(m), codes, NULL };
    return metrics_series(w->s->f_req, lv);
}

/* ---- responses ---- */

/* Decided when the reply is written, not when the request arrived, so a
 * slow handler overtaken by http_server_stop still says "close". */
static void settle_keep_alive(http_ctx *c)
{
    if (c->stopping && atomic_load(c->stopping))
        c->keep_alive = false;
    /* HTTP/1.0 closes by default: a persistent 1.0 connection must say so. */
    if (c->keep_alive && c->req && c->req->h.version_minor == 0)
        http_ctx_add_header(c, "Connection", "keep-alive");
}

static const char *extra_headers(http_ctx *c)
{
    return c->extra.len ? buf_head(&c->extra) : NULL;
}

void http_ctx_add_header(http_ctx *c, const char *name, const char *value)
{
    if (http_write_header(&c->extra, name, value) < 0 || buf_reserve(&c->extra, 1) < 0)
        return;
    *buf_tail(&c->extra) = '\0';   /* kept NUL-terminated for the writer */
}

void http_reply(http_ctx *c, int status, const char *content_type, const void *body, size_t len)
{
    if (c->replied)
        return;
    c->replied = true;
    c->status = status;
    settle_keep_alive(c);
    http_write_response(c->out, status, content_type, body, len, c->keep_alive,
                        extra_headers(c), c->head_only);
}

void http_reply_json(http_ctx *c, int status, const char *json, size_t len)
{
    http_reply(c, status, "application/json", json, len);
}

void http_reply_buf_json(http_ctx *c, int status, const buf *b)
{
    http_reply(c, status, "application/json", buf_head(b), b->len);
}

void http_reply_error(http_ctx *c, int status, const char *field, const char *fmt, ...)
{
    if (c->replied)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->replied = true;
    c->status = status;
    settle_keep_alive(c);
    if (c->head_only) {
        /* HEAD: same headers as the GET would get, no body. */
        buf tmp;
        buf_init(&tmp);
        if (http_write_error(&tmp, status, field, msg, c->keep_alive, extra_headers(c)) == 0) {
            const char *end = memmem(buf_head(&tmp), tmp.len, "\r\n\r\n", 4);
            size_t n = end ? (size_t)(end - buf_head(&tmp)) + 4 : tmp.len;
            buf_append(c->out, buf_head(&tmp), n);
        }
        buf_free(&tmp);
        return;
    }
    http_write_error(c->out, status, field, msg, c->keep_alive, extra_headers(c));
}

/* ---- connections ---- */

static void conn_timer_fire(ev_loop *loop, ev_timer *t);
static void conn_io(ev_loop *loop, int fd, unsigned events, void *arg);

static void set_timer(conn *c, uint8_t mode, bool restart)
{
    const http_server_opts *o = &c->w->s->o;
    if (c->tmode == mode && !restart && ev_timer_armed(&c->timer))
        return;
    c->tmode = mode;
    uint64_t us = mode == T_HEADER ? o->header_timeout_us
                : mode == T_LINGER ? LINGER_US : o->idle_timeout_us;
    ev_timer_start(c->w->loop, &c->timer, us);
}

void http_conn_new(worker *w, int fd, const sock_addr *peer)
{
    conn *c = w->free_conns;
    if (c) {
        w->free_conns = c->next;
        w->nfree--;
    } else {
        c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
        buf_init(&c->in);
        buf_init(&c->out);
        buf_init(&c->body);
    }
    c->fd = fd;
    c->w = w;
    c->peer = *peer;
    c->head_len = 0;
    c->req.scanned = 0;
    c->continue_sent = c->closing = c->draining = c->peer_eof = c->backlog = false;
    c->ssl = NULL;
    c->tls_ready = false;
    if (w->s->tls_on && http_conn_tls_new(c) < 0) {
        close(fd);
        c->next = w->free_conns;
        w->free_conns = c;
        w->nfree++;
        return;
    }
    ev_timer_init(&c->timer, conn_timer_fire, c);
    if (ev_io_add(w->loop, fd, EV_READ | EV_WRITE, conn_io, c) < 0) {
        http_conn_tls_close(c);
        close(fd);
        c->next = w->free_conns;
        w->free_conns = c;
        w->nfree++;
        return;
    }
    c->prev = NULL;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    atomic_fetch_add(&w->s->nconns, 1);
    metrics_add(w->s->s_conns, 1);
    set_timer(c, T_HEADER, true);
}

void http_conn_close(conn *c)
{
    worker *w = c->w;
    ev_timer_stop(w->loop, &c->timer);
    ev_io_del(w->loop, c->fd);
    http_conn_tls_close(c);
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    atomic_fetch_sub(&w->s->nconns, 1);
    metrics_add(w->s->s_conns, -1);
    /* Keep a few structures (and their buffers, unless big) for reuse so
     * connection churn does not churn the allocator. */
    if (w->nfree < FREE_CONNS) {
        buf *bs[3] = { &c->in, &c->out, &c->body };
        for (int i = 0; i < 3; i++) {
            if (bs[i]->cap > 65536)
                buf_free(bs[i]);
            else
                buf_reset(bs[i]);
        }
        c->next = w->free_conns;
        w->free_conns = c;
        w->nfree++;
    } else {
        buf_free(&c->in);
        buf_free(&c->out);
        buf_free(&c->body);
        free(c);
    }
    if (w->stopping && w->nconns == 0)
        ev_stop(w->loop);
}

/* Reads until EAGAIN (or until output backs up). Returns -1 when closed. */
static int conn_read(conn *c)
{
    while (!c->peer_eof) {
        if (c->out.len > OUT_HIGH) {
            c->backlog = true;
            return 0;
        }
        ssize_t n = c->ssl ? http_conn_tls_read(c) : buf_read_fd(&c->in, c->fd, READ_CHUNK);
        if (n > 0)
            continue;
        if (n == 0) {
            c->peer_eof = true;
            break;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        if (errno == EINTR)
            continue;
        http_conn_close(c);
        return -1;
    }
    return 0;
}

/* Writes until EAGAIN; closes (or starts the lingering close) once a
 * closing connection has nothing left. Returns -1 when closed. */
static int conn_flush(conn *c)
{
    while (c->out.len) {
        ssize_t n = c->ssl ? http_conn_tls_write(c) : buf_write_fd(&c->out, c->fd);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        http_conn_close(c);
        return -1;
    }
    if (c->closing) {
        if (c->peer_eof || c->w->stopping) {
            http_conn_close(c);
            return -1;
        }
        /* Half-close and wait for the peer's EOF: closing with unread input
         * would send a RST that can destroy the response in flight. */
        if (!c->draining) {
            http_conn_tls_close(c);   /* close_notify, then plain bytes only */
            shutdown(c->fd, SHUT_WR);
            c->draining = true;
            set_timer(c, T_LINGER, true);
        }
    }
    return 0;
}

static void error_and_close(conn *c, int status, const char *msg)
{
    http_write_error(&c->out, status, NULL, msg ? msg : http_status_reason(status), false, NULL);
    c->closing = true;
    buf_reset(&c->in);
    /* Count it like any request so errors show up in the metrics. */
    http_ctx *x = &c->w->ctx;
    http_ctx_reset(x);
    metrics_inc(cnt_series(c->w, x, HTTP_OTHER, status));
}

static void on_chunk_data(void *arg, const char *data, size_t len)
{
    conn *c = arg;
    if (buf_append(&c->body, data, len) < 0)
        c->body_oom = true;
}

static void maybe_continue(conn *c)
{
    if (c->req.expect_continue && !c->continue_sent && c->req.h.version_minor >= 1) {
        buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        c->continue_sent = true;
    }
}

static void dispatch(conn *c, const char *body, size_t blen)
{
    worker *w = c->w;
    http_server *s = w->s;
    http_ctx *x = &w->ctx;
    const http_request *r = &c->req;
    const char *base = buf_head(&c->in);
    uint64_t t0 = ev_monotonic_us();

    http_ctx_reset(x);
    x->req = r;
    x->base = base;
    x->peer = &c->peer;
    x->worker = w->idx;
    x->srv = s;
    x->out = &c->out;
    x->stopping = &s->stopping;
    x->keep_alive = r->h.keep_alive && !w->stopping && !c->peer_eof;
    x->head_only = r->method == HTTP_HEAD;
    x->body = body;
    x->body_len = blen;
    x->method_name = r->method != HTTP_OTHER ? http_method_name(r->method)
                   : http_ctx_strndup(x, base + r->method_text.off, r->method_text.len);
    x->path = http_ctx_strndup(x, base + r->path.off, r->path.len);
    if (!x->method_name || !x->path) {
        error_and_close(c, 500, "out of memory");
        return;
    }
    /* The guard (admin APIs) answers a refused request itself: no handler runs. */
    if (http_guard_check(x, &s->o.guard, s->tls_on) == 0)
        http_router_run(s->o.router, x, base + r->path.off, r->path.len);
    if (!x->keep_alive)
        c->closing = true;
    uint64_t us = ev_monotonic_us() - t0;
    metrics_inc(cnt_series(w, x, r->method, x->status));
    metrics_observe_us(dur_series(w, x), us);
}

/* Answers every complete request in the input. Returns -1 when closed. */
static int conn_process(conn *c)
{
    http_server *s = c->w->s;
    while (!c->closing) {
        if (c->out.len > OUT_HIGH) {
            c->backlog = true;
            break;
        }
        if (c->head_len == 0) {
            if (c->in.len == 0)
                break;
            int n = http_parse_request(buf_head(&c->in), c->in.len, &c->req, &s->o.limits);
            if (n == HTTP_INCOMPLETE) {
                if (c->peer_eof)
                    c->closing = true;    /* a head that will never finish */
                break;
            }
            if (n < 0) {
                error_and_close(c, c->req.h.error_status ? c->req.h.error_status : 400,
                                c->req.h.error);
                break;
            }
            c->head_len = (size_t)n;
            if (c->req.h.body == HTTP_BODY_CHUNKED) {
                http_chunked_init(&c->ch, s->o.limits.max_body);
                c->chunk_pos = c->head_len;
                buf_reset(&c->body);
                c->body_oom = false;
            }
            if (c->req.h.upgrade && c->req.h.body == HTTP_BODY_NONE) {
                /* No protocol switching here: answer and close, since the
                 * peer may already be sending the other protocol. */
                c->req.h.keep_alive = false;
            }
        }
        const char *body = NULL;
        size_t blen = 0, total = c->head_len;
        if (c->req.h.body == HTTP_BODY_LENGTH) {
            uint64_t need = c->head_len + c->req.h.content_length;
            if (c->in.len < need) {
                maybe_continue(c);
                if (c->peer_eof)
                    c->closing = true;
                break;
            }
            body = buf_head(&c->in) + c->head_len;
            blen = (size_t)c->req.h.content_length;
            total = (size_t)need;
        } else if (c->req.h.body == HTTP_BODY_CHUNKED) {
            if (!http_chunked_done(&c->ch)) {
                long k = http_chunked_feed(&c->ch, buf_head(&c->in) + c->chunk_pos,
                                           c->in.len - c->chunk_pos, on_chunk_data, c);
                if (k < 0) {
                    error_and_close(c, c->ch.error_status ? c->ch.error_status : 400, c->ch.error);
                    break;
                }
                c->chunk_pos += (size_t)k;
                if (!http_chunked_done(&c->ch)) {
                    maybe_continue(c);
                    if (c->peer_eof)
                        c->closing = true;
                    break;
                }
            }
            if (c->body_oom) {
                error_and_close(c, 500, "out of memory collecting the body");
                break;
            }
            body = buf_head(&c->body);
            blen = c->body.len;
            total = c->chunk_pos;
        }
        dispatch(c, body, blen);
        buf_consume(&c->in, total);
        c->head_len = 0;
        c->req.scanned = 0;
        c->continue_sent = false;
        c->tmode = T_IO;   /* the next head starts its own header timer */
    }
    /* The peer is done sending and every complete request is answered:
     * nothing more can arrive (and, edge-triggered, nothing would wake us). */
    if (c->peer_eof && !c->backlog)
        c->closing = true;
    return 0;
}

static void conn_arm(conn *c)
{
    if (c->draining)
        return;
    if (c->ssl && !c->tls_ready)
        set_timer(c, T_HEADER, false);            /* the handshake counts as the head */
    else if (c->head_len)
        set_timer(c, T_IO, true);                 /* body: progress re-arms */
    else if (c->in.len)
        set_timer(c, T_HEADER, false);            /* a head from its first byte */
    else if (c->out.len)
        set_timer(c, T_IO, true);
    else
        set_timer(c, T_IDLE, false);
}

void http_conn_run(conn *c)
{
    for (int rounds = 0; rounds < 64; rounds++) {
        c->backlog = false;
        if (conn_read(c) < 0 || conn_process(c) < 0 || conn_flush(c) < 0)
            return;
        if (!(c->backlog && c->out.len == 0))
            break;
    }
    conn_arm(c);
}

static void conn_io(ev_loop *loop, int fd, unsigned events, void *arg)
{
    conn *c = arg;
    if (events & EV_ERROR) {
        http_conn_close(c);
        return;
    }
    if (c->draining) {
        char sink[4096];
        for (;;) {
            ssize_t n = read(fd, sink, sizeof sink);
            if (n > 0)
                continue;
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            http_conn_close(c);   /* EOF or error: done */
            return;
        }
    }
    http_conn_run(c);
}

static void conn_timer_fire(ev_loop *loop, ev_timer *t)
{
    conn *c = t->arg;
    if (c->tmode == T_HEADER && !c->draining && !c->closing && !c->w->stopping) {
        /* Slowloris or a silent connection: say why, then close. */
        error_and_close(c, 408, "request head not received in time");
        c->head_len = 0;
        if (conn_flush(c) == 0 && !c->draining)
            set_timer(c, T_IO, true);   /* output still queued: give it time */
        return;
    }
    http_conn_close(c);
}

