/* gw_conn.c -- the client side of the proxy: accepting, reading and
 * parsing request heads, local answers (errors, 429, 503), writing
 * responses back, pipelining, keep-alive and the slowloris guards.
 *
 * One request per connection is in flight at a time; pipelined requests
 * wait in c->in and are parsed only once the previous response has been
 * queued, which keeps responses in request order by construction.
 *
 * Reads stop on a short read: with edge-triggered epoll a read that did
 * not fill the buffer has emptied the socket, and any later byte raises a
 * new edge, so the extra read() that would only return EAGAIN is skipped
 * (it would be a third of this path's syscalls).
 *
 * Timers: while a request head is incomplete, the header timer runs from
 * its first byte (client_header_timeout: a client sending a byte a second
 * is cut off at the deadline however many bytes it sends); between
 * requests the idle timer runs (client_idle_timeout). While a request is
 * with a backend the exchange's own timers apply. */
#include "gateway/gw_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "gateway/gw_tls.h"

const char *gw_conn_phase_str(gw_conn_phase p)
{
    switch (p) {
    case GC_WAIT:    return "wait";
    case GC_PROXY:   return "proxy";
    case GC_TUNNEL:  return "tunnel";
    case GC_CLOSING: return "closing";
    default:         return "unknown";
    }
}

void gw_conn_set_phase(gw_conn *c, gw_conn_phase p)
{
    if (c->state == p)
        return;
    /* Per-worker counters, written by this worker only: no contention. */
    atomic_fetch_sub_explicit(&c->w->nphase[c->state], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->w->nphase[p], 1, memory_order_relaxed);
    c->state = (uint8_t)p;
}

const char *gw_listener_kind_str(gw_listener_kind k)
{
    switch (k) {
    case GW_LST_PLAIN:    return "plain";
    case GW_LST_TLS:      return "tls";
    case GW_LST_REDIRECT: return "redirect";
    default:              return "unknown";
    }
}

uint32_t gw_rt_phase_count(gw_rt *rt, gw_conn_phase p)
{
    uint32_t n = 0;
    for (unsigned i = 0; i < rt->nworkers; i++)
        n += atomic_load_explicit(&rt->workers[i].nphase[p], memory_order_relaxed);
    return n;
}

const char *gw_ex_phase_str(gw_ex_phase p)
{
    switch (p) {
    case GX_HEAD:       return "head";
    case GX_ROUTE:      return "route";
    case GX_QUEUED:     return "queued";
    case GX_CACHE_WAIT: return "cache_wait";
    case GX_CONNECTING: return "connecting";
    case GX_REQUEST:    return "request";
    case GX_RESPONSE:   return "response";
    case GX_TUNNEL:     return "tunnel";
    default:            return "unknown";
    }
}

void gw_ex_set_phase(gw_exchange *ex, gw_ex_phase p)
{
    if (ex->phase == p)
        return;
    gw_worker *w = ex->c->w;
    atomic_fetch_sub_explicit(&w->nxphase[ex->phase], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->nxphase[p], 1, memory_order_relaxed);
    ex->phase = (uint8_t)p;
}

uint32_t gw_rt_ex_phase_count(gw_rt *rt, gw_ex_phase p)
{
    uint32_t n = 0;
    for (unsigned i = 0; i < rt->nworkers; i++)
        n += atomic_load_explicit(&rt->workers[i].nxphase[p], memory_order_relaxed);
    return n;
}

static void conn_timeout(ev_loop *loop, ev_timer *t)
{
    gw_conn *c = t->arg;
    (void)loop;
    if (c->state == GC_WAIT && c->in.len > 0 && c->in_header) {
        /* Slowloris: the head did not arrive in time. */
        c->close_after = true;
        gw_conn_reply(c, 408, NULL, "{\"error\":\"request header timeout\",\"status\":408}");
        gw_conn_set_phase(c, GC_CLOSING);
        gw_conn_process(c);
        return;
    }
    if (c->state == GC_PROXY || c->state == GC_TUNNEL) {
        gw_conn_process(c);       /* a deferred read (see gw_conn_process) */
        return;
    }
    if (c->ssl && c->tls == GW_TLS_HANDSHAKE)
        gw_tls_timed_out(c);      /* counted as a handshake failure */
    if (c->state == GC_WAIT || c->state == GC_CLOSING)
        gw_conn_close(c);
}

static void peer_text(gw_conn *c, const sock_addr *peer)
{
    const struct sockaddr *sa = (const struct sockaddr *)&peer->ss;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(c->ip_raw, &in->sin_addr, 4);
        c->ip_raw_len = 4;
        inet_ntop(AF_INET, &in->sin_addr, c->ip, sizeof c->ip);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(c->ip_raw, &in6->sin6_addr, 16);
        c->ip_raw_len = 16;
        inet_ntop(AF_INET6, &in6->sin6_addr, c->ip, sizeof c->ip);
    } else {
        strcpy(c->ip, "unknown");
        c->ip_raw_len = 0;
    }
    c->ip_len = (uint8_t)strlen(c->ip);
}

void gw_conn_accepted(gw_worker *w, int fd, const sock_addr *peer, gw_listener_kind kind)
{
    gw_conn *c = gw_conn_alloc(w);
    if (!c) {
        close(fd);
        return;
    }
    c->w = w;
    c->fd = fd;
    c->lst = (uint8_t)kind;
    if (kind == GW_LST_TLS && gw_tls_conn_new(c) < 0) {
        close(fd);
        gw_conn_free(w, c);
        return;
    }
    c->state = GC_WAIT;
    atomic_fetch_add_explicit(&w->nphase[GC_WAIT], 1, memory_order_relaxed);
    peer_text(c, peer);
    ev_timer_init(&c->timer, conn_timeout, c);
    if (ev_io_add(w->loop, fd, EV_READ | EV_WRITE, gw_conn_io, c) < 0) {
        gw_tls_conn_free(c);
        close(fd);
        atomic_fetch_sub_explicit(&w->nphase[GC_WAIT], 1, memory_order_relaxed);
        gw_conn_free(w, c);
        return;
    }
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    atomic_fetch_add_explicit(&w->rt->clients, 1, memory_order_relaxed);
    metrics_add(w->rt->m_clients, 1);
    c->in_header = false;
    /* A TLS handshake is bounded like a request head (slowloris). */
    ev_timer_start(w->loop, &c->timer, c->ssl ? w->rt->cfg.client_header_timeout_us
                                              : w->rt->cfg.client_idle_timeout_us);
    /* A deferred accept comes with the ClientHello: answer it now, not
     * after a trip through epoll_wait (c may be closed on return). */
    if (c->ssl && w->lst_deferred[kind])
        gw_conn_io(w->loop, fd, EV_READ, c);
}

static void ghost_start(ev_loop *loop, void *arg)
{
    (void)loop;
    gw_conn_process(arg);
}

gw_conn *gw_conn_ghost(gw_worker *w, const char *head, size_t len, const gw_conn *like,
                       struct gw_cghost *g)
{
    gw_conn *c = gw_conn_alloc(w);
    if (!c)
        return NULL;
    c->w = w;
    c->fd = -1;
    c->state = GC_WAIT;
    c->close_after = true;           /* one request */
    c->ghost = g;
    c->lst = like->lst == GW_LST_TLS ? GW_LST_TLS : GW_LST_PLAIN;   /* X-Forwarded-Proto as the client's; no TLS state */
    memcpy(c->ip, like->ip, sizeof c->ip);
    c->ip_len = like->ip_len;
    memcpy(c->ip_raw, like->ip_raw, sizeof c->ip_raw);
    c->ip_raw_len = like->ip_raw_len;
    ev_timer_init(&c->timer, conn_timeout, c);
    gw_buf_acquire(w, &c->in);
    if (buf_append(&c->in, head, len) < 0 || ev_post(w->loop, ghost_start, c) < 0) {
        c->ghost = NULL;
        gw_buf_release(w, &c->in);
        gw_conn_free(w, c);
        return NULL;
    }
    atomic_fetch_add_explicit(&w->nphase[GC_WAIT], 1, memory_order_relaxed);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    atomic_fetch_add_explicit(&w->rt->clients, 1, memory_order_relaxed);
    metrics_add(w->rt->m_clients, 1);
    return c;
}

static void exchange_free(gw_worker *w, gw_exchange *ex)
{
    gw_exchange_abort(ex);
    gw_cache_exchange_free(ex);
    atomic_fetch_sub_explicit(&w->nxphase[ex->phase], 1, memory_order_relaxed);
    gw_xform_free(w, ex);
    gw_buf_release(w, &ex->uout);
    gw_buf_release(w, &ex->uin);
    if (w->nfree_ex >= GW_FREE_EXCHANGES) {
        free(ex);           /* past a burst: give the memory back */
        w->gc_freed = true;
        return;
    }
    ex->next_free = w->free_ex;
    w->free_ex = ex;
    w->nfree_ex++;
}

void gw_conn_close(gw_conn *c)
{
    gw_worker *w = c->w;
    if (c->ex) {
        exchange_free(w, c->ex);
        c->ex = NULL;
    }
    if (c->pend_idx)
        w->pend[c->pend_idx - 1] = NULL;
    ev_timer_stop(w->loop, &c->timer);
    if (c->fd >= 0) {
        ev_io_del_closing(w->loop, c->fd);
        gw_tls_conn_free(c);      /* close_notify goes before the socket closes */
        close(c->fd);
    }
    if (c->ghost)
        gw_cache_ghost_free(c);
    gw_buf_release(w, &c->in);
    gw_buf_release(w, &c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    atomic_fetch_sub_explicit(&w->nphase[c->state], 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&w->rt->clients, 1, memory_order_relaxed);
    metrics_add(w->rt->m_clients, -1);
    gw_conn_free(w, c);
}

void gw_conn_reply(gw_conn *c, int status, const char *extra_headers, const char *json)
{
    gw_buf_acquire(c->w, &c->out);
    size_t blen = strlen(json);
    char num[24];
    buf_append_str(&c->out, "HTTP/1.1 ");
    buf_append(&c->out, num, fmt_u64(num, (uint64_t)status));
    buf_append_str(&c->out, " ");
    buf_append_str(&c->out, http_status_reason(status));
    buf_append_str(&c->out, "\r\nContent-Type: application/json\r\nContent-Length: ");
    buf_append(&c->out, num, fmt_u64(num, blen + 1));
    buf_append_str(&c->out, "\r\n");
    if (extra_headers)
        buf_append_str(&c->out, extra_headers);
    if (c->close_after)
        buf_append_str(&c->out, "Connection: close\r\n");
    buf_append_str(&c->out, "\r\n");
    buf_append(&c->out, json, blen);
    buf_append_str(&c->out, "\n");
}

/* Why writes wait for the end of the batch: a write on loopback (or to a
 * NIC queue) wakes the peer at once. Writing each response as it is made
 * wakes a load generator or a backend once per request, and each wake-up
 * finds one request to serve and goes back to sleep; writing all of a
 * batch's output together lets the peer find them all on one wake-up. For
 * a delay of at most one batch of events here, the benchmark's nginx
 * backend went from 4.7 to 4.1 µs of CPU per request. */
bool gw_conn_defer(gw_conn *c)
{
    gw_worker *w = c->w;
    if (!w->defer || c->fd < 0)
        return false;
    if (c->pend_idx)
        return true;
    if (w->npend == w->cappend) {
        unsigned cap = w->cappend ? w->cappend * 2 : 256;
        gw_conn **p = realloc(w->pend, cap * sizeof *p);
        if (!p)
            return false;          /* write now rather than lose the wake-up */
        w->pend = p;
        w->cappend = cap;
    }
    w->pend[w->npend++] = c;
    c->pend_idx = w->npend;
    return true;
}

void gw_worker_flush(gw_worker *w)
{
    w->defer = false;
    gw_io_write_pending(w);        /* one call for every socket's bytes ... */
    /* ... then the ordinary path: the rest, and each connection's state.
     * Requests first: the backends start on them while responses go out. */
    for (unsigned i = 0; i < w->npend; i++) {
        gw_conn *c = w->pend[i];
        if (c && !c->dead && c->ex)
            gw_exchange_flush(c->ex);
    }
    for (unsigned i = 0; i < w->npend; i++) {
        gw_conn *c = w->pend[i];
        if (!c)
            continue;
        w->pend[i] = NULL;
        c->pend_idx = 0;
        gw_conn_process(c);        /* writes c->out, then closes or idles as due */
    }
    w->npend = 0;
    w->defer = true;
}

int gw_conn_tls_seal(gw_conn *c)
{
    while (c->out.len) {
        ssize_t n = gw_tls_write(c, buf_head(&c->out), c->out.len);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        c->dead = true;
        return -1;
    }
    if (c->state == GC_CLOSING)
        gw_tls_close_notify(c);
    return 0;
}

/* Writes until done or EAGAIN. Returns -1 when the connection closed. */
int gw_conn_flush(gw_conn *c)
{
    if (c->fd < 0) {
        buf_reset(&c->out);       /* a ghost (background refresh): nobody reads */
        return 0;
    }
    if (c->out.len && gw_conn_defer(c))
        return 0;
    if (c->ssl) {
        /* The records (and close_notify) leave in one write. */
        if (gw_conn_tls_seal(c) < 0)
            return -1;
        if (gw_tls_push(c) < 0) {
            c->dead = true;
            return -1;
        }
        return 0;
    }
    while (c->out.len) {
        ssize_t n = write(c->fd, buf_head(&c->out), c->out.len);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        c->dead = true;
        return -1;
    }
    return 0;
}

static size_t read_cap(const gw_conn *c)
{
    /* A whole head plus a whole retryable body, so a retry can resend it. */
    return (size_t)c->w->rt->limits.max_head + GW_BODY_RETRY_MAX + GW_BUF_SIZE;
}

/* Readies c->in for a read of at least 2 KB; false when memory ran out. */
static bool conn_make_room(gw_conn *c)
{
    gw_buf_acquire(c->w, &c->in);
    if (buf_room(&c->in) < 2048) {
        buf_compact(&c->in);
        if (buf_room(&c->in) < 2048 && buf_reserve(&c->in, GW_BUF_SIZE) < 0)
            return false;
    }
    return true;
}

/* Reads what the socket has. Returns -1 when the connection closed. */
static int conn_read(gw_conn *c)
{
    while (!c->peer_eof) {
        if (c->in.len >= read_cap(c)) {
            /* Enough unparsed bytes: stop until the request drains them.
             * The socket may still hold data, so no new edge will come:
             * gw_conn_process reads again once there is room. */
            c->read_blocked = true;
            return 0;
        }
        if (!conn_make_room(c))
            return 0;
        if (c->rx_seq == c->w->io_seq) {
            /* gw_io read this socket ahead in this batch; its bytes are in. */
            c->rx_seq = 0;
            if (c->rx_more || c->state == GC_TUNNEL)
                continue;
            return 0;
        }
        size_t room = buf_room(&c->in);
        ssize_t n = c->ssl ? gw_tls_read(c, buf_tail(&c->in), room)
                           : read(c->fd, buf_tail(&c->in), room);
        if (n > 0) {
            buf_commit(&c->in, (size_t)n);
            /* A short read emptied the socket; under TLS, one record is
             * returned at a time, so the socket read below it says. */
            bool drained = c->ssl ? gw_tls_drained(c) : (size_t)n < room;
            if (drained && c->state != GC_TUNNEL)
                return 0;      /* (a tunnel reads on to EAGAIN: see gw_response_read) */
            continue;
        }
        if (n == 0) {
            c->peer_eof = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        c->dead = true;
        return -1;
    }
    return 0;
}

char *gw_conn_rx_room(gw_conn *c, size_t *room)
{
    /* Only where gw_conn_io would read: never a closing or capped
     * connection, and never under TLS (records must go through SSL_read). */
    if (c->ssl || c->dead || c->peer_eof || c->state == GC_CLOSING || c->in.len >= read_cap(c)
        || !conn_make_room(c))
        return NULL;
    *room = buf_room(&c->in);
    return buf_tail(&c->in);
}

void gw_conn_rx_done(gw_conn *c, int res, size_t room)
{
    if (res > 0) {
        buf_commit(&c->in, (size_t)res);
        c->rx_more = (size_t)res == room;
    } else if (res == -EAGAIN || res == -EWOULDBLOCK) {
        c->rx_more = false;
    } else {
        return;              /* EOF or an error: conn_read's own read meets it */
    }
    c->rx_seq = c->w->io_seq;
}

static gw_exchange *exchange_new(gw_worker *w, gw_conn *c)
{
    gw_exchange *ex = w->free_ex;
    if (ex) {
        w->free_ex = ex->next_free;
        if (--w->nfree_ex < w->low_free_ex)
            w->low_free_ex = w->nfree_ex;
    } else {
        w->low_free_ex = 0;
        w->gc_busy = true;
        if (!(ex = malloc(sizeof *ex)))
            return NULL;
    }
    /* Everything but the parsed heads, which their parsers reset. */
    memset(ex, 0, offsetof(gw_exchange, req));    /* phase GX_HEAD */
    ex->req.scanned = 0;
    ex->resp.scanned = 0;
    ex->c = c;
    ex->ufd = -1;
    atomic_fetch_add_explicit(&w->nxphase[GX_HEAD], 1, memory_order_relaxed);
    return ex;
}

/* Parses the next request head in c->in, if any. */
static void conn_next_request(gw_conn *c)
{
    gw_worker *w = c->w;
    if (c->in.len == 0) {
        if (c->peer_eof || c->close_after) {
            gw_conn_set_phase(c, GC_CLOSING);
            return;
        }
        if (c->in_header || !ev_timer_armed(&c->timer)) {
            c->in_header = false;
            ev_timer_start(w->loop, &c->timer, w->rt->cfg.client_idle_timeout_us);
        }
        return;
    }
    if (!c->ex && !(c->ex = exchange_new(w, c))) {
        c->close_after = true;
        gw_conn_reply(c, 503, NULL, "{\"error\":\"out of memory\",\"status\":503}");
        gw_conn_set_phase(c, GC_CLOSING);
        return;
    }
    gw_exchange *ex = c->ex;
    int r = http_parse_request(buf_head(&c->in), c->in.len, &ex->req, &w->rt->limits);
    if (r == HTTP_INCOMPLETE) {
        if (c->peer_eof) {
            gw_conn_set_phase(c, GC_CLOSING);
            return;
        }
        if (!c->in_header) {
            c->in_header = true;
            ev_timer_start(w->loop, &c->timer, w->rt->cfg.client_header_timeout_us);
        }
        return;
    }
    ev_timer_stop(w->loop, &c->timer);
    c->in_header = false;
    if (r == HTTP_ERROR) {
        c->close_after = true;
        char msg[160];
        snprintf(msg, sizeof msg, "{\"error\":\"%s\",\"status\":%d}",
                 ex->req.h.error ? ex->req.h.error : "bad request", ex->req.h.error_status);
        gw_conn_reply(c, ex->req.h.error_status ? ex->req.h.error_status : 400, NULL, msg);
        gw_conn_set_phase(c, GC_CLOSING);
        return;
    }
    ex->head_len = (uint32_t)r;
    ex->t_start_us = ev_now_us(w->loop);
    if (!ex->req.h.keep_alive)
        c->close_after = true;
    gw_conn_set_phase(c, GC_PROXY);
    if (c->lst == GW_LST_REDIRECT)
        gw_redirect_reply(ex);          /* answers and ends the request */
    else
        gw_exchange_start(c);
}

void gw_conn_process(gw_conn *c)
{
    for (int guard = 0; guard < 64 && !c->dead; guard++) {
        uint8_t before = c->state;
        bool more = false;
        if (c->read_blocked && c->in.len < read_cap(c)) {
            size_t had = c->in.len;
            c->read_blocked = false;
            conn_read(c);
            more = c->in.len > had;
        }
        if (c->state == GC_WAIT)
            conn_next_request(c);
        else if ((c->state == GC_PROXY || c->state == GC_TUNNEL) && c->ex)
            gw_exchange_pump_body(c->ex);
        if (!c->dead && c->out.len)
            gw_conn_flush(c);
        if (!c->dead && c->backlog && c->ex && c->out.len < GW_OUT_HIGH / 2) {
            /* The client caught up: take more of the response. */
            c->backlog = false;
            gw_exchange_resume(c->ex);
            continue;
        }
        if (c->read_blocked && c->in.len < read_cap(c))
            continue;         /* the request drained c->in: read on */
        if (c->state == before && !more)
            break;
    }
    if (!c->dead && c->read_blocked && c->in.len < read_cap(c)
        && (c->state == GC_PROXY || c->state == GC_TUNNEL))
        ev_timer_start(c->w->loop, &c->timer, 0);   /* out of turns: go on next iteration */
    if (!c->dead && c->state == GC_WAIT && !c->ex && c->in.len == 0 && c->out.len == 0) {
        /* Idle between requests: an idle keep-alive client holds no buffers. */
        gw_buf_release(c->w, &c->in);
        gw_buf_release(c->w, &c->out);
        if (c->ssl)
            gw_tls_idle(c);
    }
    if (c->dead || (c->state == GC_CLOSING && c->out.len == 0 && !c->tls_out_blocked))
        gw_conn_close(c);
}

void gw_conn_request_done(gw_conn *c, int status_class)
{
    gw_worker *w = c->w;
    gw_exchange *ex = c->ex;
    uint64_t now = ev_now_update(w->loop);
    if (ex->rs) {
        metrics_inc(ex->rs->req[status_class >= 0 && status_class <= 5 ? status_class : 0]);
        metrics_observe_us(ex->rs->dur, now - ex->t_start_us);
    }
    /* The request's bytes leave the input: head plus whatever body is left
     * there (a chunked or sized body forwarded as it came was consumed on
     * the way). */
    size_t used = ex->head_len + (size_t)ex->req_body_fwd;
    if (used > c->in.len)
        used = c->in.len;
    buf_consume(&c->in, used);
    if (!ex->req_body_done)
        c->close_after = true;     /* unread body: the stream has no boundary left */
    exchange_free(w, ex);
    c->ex = NULL;
    ev_timer_stop(w->loop, &c->timer);   /* WAIT arms the idle timer afresh */
    gw_conn_set_phase(c, c->close_after ? GC_CLOSING : GC_WAIT);
}

void gw_conn_io(ev_loop *loop, int fd, unsigned events, void *arg)
{
    gw_conn *c = arg;
    (void)loop;
    (void)fd;
    /* A TLS read that had to write first waits for writability, not input. */
    bool readable = (events & EV_READ) || ((events & EV_WRITE) && c->tls_read_wants_write);
    if (events & EV_ERROR)
        c->dead = true;
    if (events & EV_READ)
        c->tls_drained = false;   /* a read edge: the socket under SSL has bytes again */
    if (!c->dead && c->ssl && c->tls == GW_TLS_HANDSHAKE) {
        /* Either readiness may be the one the handshake waits for. */
        int hs = gw_tls_handshake(c);
        if (hs < 0)
            c->dead = true;
        else if (hs == 0)
            return;
        else {
            /* The request may have come with the client's Finished and
             * sit in OpenSSL's buffer already: read whatever the event. */
            readable = true;
            ev_timer_start(c->w->loop, &c->timer, c->w->rt->cfg.client_idle_timeout_us);
        }
    }
    if (!c->dead && (events & EV_WRITE) && (c->out.len || c->tls_out_blocked))
        gw_conn_flush(c);
    if (!c->dead && readable) {
        if (c->state == GC_CLOSING) {
            /* Discard what a closing client still sends. */
            char sink[4096];
            while (read(c->fd, sink, sizeof sink) > 0) {
            }
        } else {
            conn_read(c);
        }
    }
    gw_conn_process(c);
    /* gw_conn_process may have closed c; it never returns into c after. */
}
