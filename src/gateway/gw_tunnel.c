/* gw_tunnel.c -- WebSocket and other Upgrade requests: the handshake is
 * routed, balanced (sticky cookie or hash included) and retried like any
 * GET; when the backend answers 101 the client connection enters
 * GC_TUNNEL and the two sockets become one byte stream.
 *
 * Invariants:
 *  - Backpressure both ways with the buffers the exchange already has:
 *    client bytes go from c->in to ex->uout only while uout is under
 *    GW_TUN_HIGH (then c->in fills and the client is not read: read_cap),
 *    upstream bytes go from ex->uin to c->out until c->out passes
 *    GW_OUT_HIGH (then c->backlog stops the upstream being read). A tunnel
 *    holds at most those buffers, whatever the peers send.
 *  - A tunnel is counted in its member's `tunnels`, not `inflight`: an
 *    hour-long WebSocket is not a request in flight (it would make the
 *    member look stuck to slow-member ejection and skew least_request), but
 *    a drain waits for it (gw_admin.c) up to the drain time, and when the
 *    member leaves the configuration its tunnels close (gw_worker.c).
 *  - A reload keeps tunnels: members survive snapshots by name, and the
 *    tunnel holds its member pinned.
 *  - SIGTERM: a tunnel is never idle, so it runs until `grace` ends, then
 *    the worker closes it with everything else. */
#include "gateway/gw_proxy.h"

#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/log.h"

#define GW_TUN_HIGH (256u * 1024u)   /* client -> upstream bytes held at most */

static bool has_token(const char *p, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < n) {
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
            i++;
        size_t s = i;
        while (i < n && p[i] != ',' && p[i] != ' ' && p[i] != '\t')
            i++;
        if (i - s == tl && strncasecmp(p + s, tok, tl) == 0)
            return true;
    }
    return false;
}

bool gw_tunnel_wanted(const gw_exchange *ex, const char *head)
{
    const http_request *r = &ex->req;
    if (!r->h.upgrade || r->method != HTTP_GET || r->h.version_minor != 1
        || r->h.body != HTTP_BODY_NONE)
        return false;
    for (unsigned i = 0; i < r->h.nheaders; i++) {
        const http_header *h = &r->h.headers[i];
        if (h->name.len == 10 && strncasecmp(head + h->name.off, "connection", 10) == 0
            && has_token(head + h->value.off, h->value.len, "upgrade"))
            return true;
    }
    return false;
}

bool gw_tunnel_reserve(gw_exchange *ex)
{
    gw_rt *rt = ex->c->w->rt;
    uint32_t max = (uint32_t)rt->cfg.max_tunnels;
    if (atomic_fetch_add_explicit(&rt->tunnels, 1, memory_order_relaxed) >= max) {
        atomic_fetch_sub_explicit(&rt->tunnels, 1, memory_order_relaxed);
        return false;
    }
    ex->tunnel_slot = true;
    return true;
}

void gw_tunnel_begin(gw_exchange *ex)
{
    gw_conn *c = ex->c;
    gw_worker *w = c->w;
    gw_rt *rt = w->rt;
    uint64_t now = ev_now_us(w->loop);
    /* The handshake is a request answered: count it now, once. */
    if (ex->rs) {
        metrics_inc(ex->rs->req[1]);
        metrics_observe_us(ex->rs->dur, now - ex->t_start_us);
        ex->rs = NULL;
    }
    /* From here the member holds a tunnel, not a request in flight. */
    if (ex->m) {
        atomic_fetch_add_explicit(&ex->m->tunnels, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&ex->m->inflight, 1, memory_order_relaxed);
    }
    if (ex->counted) {
        gw_retry_request_end(&rt->budget);
        ex->counted = false;
    }
    gw_ex_set_phase(ex, GX_TUNNEL);
    ex->tun_start_us = ex->tun_last_us = now;
    ex->up_close = true;              /* never back to the idle pool */
    ex->resp_body = HTTP_BODY_CLOSE;  /* upstream bytes relayed until EOF */
    ex->req_body_done = false;        /* client bytes relayed until EOF */
    c->close_after = true;
    /* The handshake's bytes leave c->in; anything after them is already
     * the client's first frames. */
    size_t used = ex->head_len + (size_t)ex->req_body_fwd;
    buf_consume(&c->in, used < c->in.len ? used : c->in.len);
    ex->head_len = 0;
    ex->req_body_fwd = 0;
    metrics_add(rt->m_tunnels, 1);
    gw_conn_set_phase(c, GC_TUNNEL);
    /* From here the exchange's timer is the idle timer, not bounded by the
     * request's response_timeout (attempt() initialised it). */
    ev_timer_start(w->loop, &ex->timer, rt->cfg.tunnel_idle_timeout_us);
}

void gw_tunnel_pump(gw_exchange *ex)
{
    gw_conn *c = ex->c;
    if (ex->ufd < 0)
        return;
    size_t n = c->in.len;
    if (n && ex->uout.len < GW_TUN_HIGH) {
        if (n > GW_TUN_HIGH - ex->uout.len)
            n = GW_TUN_HIGH - ex->uout.len;
        gw_buf_acquire(c->w, &ex->uout);
        buf_append(&ex->uout, buf_head(&c->in), n);
        buf_consume(&c->in, n);
        metrics_add(c->w->rt->m_tun_up, (int64_t)n);
        ex->tun_last_us = ev_now_us(c->w->loop);
    }
    if (c->peer_eof && !ex->tun_shut && c->in.len == 0 && ex->uout.len == 0) {
        /* The client finished sending: say so to the backend, keep reading
         * its answer (a WebSocket close handshake ends this way). */
        if (ex->ussl)
            gw_utls_shutdown_write(ex);   /* close_notify: TLS's half close */
        else
            shutdown(ex->ufd, SHUT_WR);
        ex->tun_shut = true;
    }
}

void gw_tunnel_down(gw_exchange *ex, size_t n)
{
    gw_conn *c = ex->c;
    metrics_add(c->w->rt->m_tun_down, (int64_t)n);
    ex->tun_last_us = ev_now_us(c->w->loop);
}

void gw_tunnel_timeout(gw_exchange *ex)
{
    gw_conn *c = ex->c;
    gw_worker *w = c->w;
    uint64_t now = ev_now_us(w->loop);
    uint64_t idle = w->rt->cfg.tunnel_idle_timeout_us;
    if (now - ex->tun_last_us < idle) {
        /* Activity since the timer was set: wait out the rest. The timer is
         * re-armed here, not on every byte, so a busy tunnel costs no heap
         * operation per read. */
        uint64_t left = ex->tun_last_us + idle - now;
        ev_timer_start(w->loop, &ex->timer, left);
        return;
    }
    log_info("tunnel from %s idle for %.0f s: closed", c->ip, (double)idle / 1e6);
    c->dead = true;
}

void gw_tunnel_end(gw_exchange *ex)
{
    gw_rt *rt = ex->c->w->rt;
    if (ex->phase == GX_TUNNEL && ex->tun_start_us) {
        uint64_t now = ev_now_update(ex->c->w->loop);
        metrics_add(rt->m_tunnels, -1);
        metrics_observe_us(rt->m_tun_dur, now - ex->tun_start_us);
        ex->tun_start_us = 0;
        /* ex->m's tunnel count goes with the member (gw_release_member). */
    }
    if (ex->tunnel_slot) {
        atomic_fetch_sub_explicit(&rt->tunnels, 1, memory_order_relaxed);
        ex->tunnel_slot = false;
    }
}
