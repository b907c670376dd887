/* server.c -- the server framework's workers and lifecycle: listeners,
 * threads, accept, graceful stop (connections live in server_conn.c).
 *
 * Each worker owns an ev_loop, an SO_REUSEPORT listener and the connections
 * it accepted; nothing is shared between workers but the router (read-only
 * once started), the connection count, the stopping flag and metric
 * families. With port 0 the first listener picks the port and the others
 * join it. Stopping is posted to each loop: close the listener, close idle
 * connections, let the others finish their response, and give up on the
 * rest after the grace period; then the threads are joined. */
#include "server_conn.h"
#include "../core/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- workers ---- */

static void on_accept(ev_loop *loop, int lfd, unsigned events, void *arg)
{
    worker *w = arg;
    http_server *s = w->s;
    for (;;) {
        sock_addr peer;
        int fd = sock_accept(lfd, &peer);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("%s: accept failed: %s", s->name, strerror(errno));
            return;
        }
        if (w->stopping || atomic_load(&s->nconns) >= s->o.max_conns) {
            close(fd);
            continue;
        }
        http_conn_new(w, fd, &peer);
        /* The new connection may have data already (TCP fast path). */
        if (w->conns && w->conns->fd == fd)
            http_conn_run(w->conns);
    }
}

static void grace_fire(ev_loop *loop, ev_timer *t)
{
    worker *w = t->arg;
    while (w->conns)
        http_conn_close(w->conns);
    ev_stop(loop);
}

static void worker_stop_task(ev_loop *loop, void *arg)
{
    worker *w = arg;
    w->stopping = true;
    if (w->lfd >= 0) {
        ev_io_del(loop, w->lfd);
        close(w->lfd);
        w->lfd = -1;
    }
    conn *next;
    for (conn *c = w->conns; c; c = next) {
        next = c->next;
        if (c->head_len == 0 && c->out.len == 0)
            http_conn_close(c);           /* idle or a head not yet complete */
        else
            c->closing = true;       /* finish this response, then close */
    }
    if (w->nconns == 0) {
        ev_stop(loop);
        return;
    }
    ev_timer_init(&w->grace, grace_fire, w);
    ev_timer_start(loop, &w->grace, (uint64_t)w->grace_ms * 1000);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    metrics_thread_bind(w->idx % METRICS_SHARDS);
    if (w->s->o.on_worker_start)
        w->s->o.on_worker_start(w->idx, w->s->o.arg);
    if (ev_run(w->loop) < 0)
        log_error("%s: worker %u event loop failed: %s", w->s->name, w->idx, strerror(errno));
    while (w->conns)
        http_conn_close(w->conns);
    return NULL;
}

static void server_opts_free(http_server *s)
{
    free((char *)s->o.tls_cert);
    free((char *)s->o.tls_key);
    for (size_t i = 0; i < s->o.guard.nallowed_hosts; i++)
        free(s->o.guard.allowed_hosts[i]);
    free((char **)s->o.guard.allowed_hosts);
}

http_server *http_server_new(const http_server_opts *o, char *err, size_t errlen)
{
    if (!o || !o->router) {
        snprintf(err, errlen, "http server: a router is required");
        return NULL;
    }
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "http server: out of memory");
        return NULL;
    }
    s->o = *o;
    snprintf(s->name, sizeof s->name, "%s", o->name && o->name[0] ? o->name : "http");
    s->o.name = s->name;
    if (!s->o.workers) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        s->o.workers = n > 0 ? (unsigned)n : 1;
    }
    if (!s->o.header_timeout_us) s->o.header_timeout_us = 10000000ull;
    if (!s->o.idle_timeout_us)   s->o.idle_timeout_us = 60000000ull;
    if (!s->o.max_conns)         s->o.max_conns = 10000;
    /* Zero fields take the parser's defaults; max_body keeps an explicit 0
     * ("no limit") unless the whole struct was left zero. */
    http_limits d, *l = &s->o.limits;
    http_limits_default(&d);
    bool all_zero = !l->max_request_line && !l->max_head && !l->max_headers && !l->max_body;
    if (!l->max_request_line) l->max_request_line = d.max_request_line;
    if (!l->max_head)         l->max_head = d.max_head;
    if (!l->max_headers)      l->max_headers = d.max_headers;
    if (all_zero)             l->max_body = d.max_body;
    atomic_init(&s->nconns, 0);
    atomic_init(&s->stopping, false);
    atomic_init(&s->req_seq, 0);
    if (!s->o.audit_ring)
        s->o.audit_ring = 256;
    pthread_mutex_init(&s->af_mu, NULL);
    pthread_mutex_init(&s->audit_mu, NULL);
    pthread_mutex_init(&s->tls_mu, NULL);
    /* Copies: a caller's configuration may be replaced (SIGHUP) while the
     * server runs, and a TLS reload reads the paths again. */
    s->o.tls_cert = o->tls_cert ? strdup(o->tls_cert) : NULL;
    s->o.tls_key = o->tls_key ? strdup(o->tls_key) : NULL;
    s->o.guard.allowed_hosts = NULL;
    s->o.guard.nallowed_hosts = 0;
    if (o->guard.nallowed_hosts) {
        char **h = calloc(o->guard.nallowed_hosts, sizeof *h);
        for (size_t i = 0; h && i < o->guard.nallowed_hosts; i++)
            h[i] = strdup(o->guard.allowed_hosts[i] ? o->guard.allowed_hosts[i] : "");
        s->o.guard.allowed_hosts = h;
        s->o.guard.nallowed_hosts = h ? o->guard.nallowed_hosts : 0;
    }
    if (http_tls_init(s, err, errlen) < 0) {
        server_opts_free(s);
        free(s);
        return NULL;
    }
    s->tls_on = s->tls_ctx != NULL;
    metrics_registry *reg = metrics_default();
    static const char *const req_l[] = { "server", "route", "method", "code", NULL };
    static const char *const dur_l[] = { "server", "route", NULL };
    static const char *const conn_l[] = { "server", NULL };
    s->f_req = metrics_family(reg, "hscale_http_requests_total",
                              "HTTP requests answered, by route pattern, method and status code.",
                              METRIC_COUNTER, req_l);
    s->f_dur = metrics_family(reg, "hscale_http_request_duration_seconds",
                              "Time spent answering HTTP requests (handler and serialisation).",
                              METRIC_HISTOGRAM, dur_l);
    metric_family *f_conn = metrics_family(reg, "hscale_http_connections",
                                           "Open HTTP server connections.", METRIC_GAUGE, conn_l);
    if (!s->f_req || !s->f_dur || !f_conn) {
        snprintf(err, errlen, "http server %s: metric families clash with existing ones", s->name);
        http_tls_free(s);
        server_opts_free(s);
        free(s);
        return NULL;
    }
    const char *cv[] = { s->name, NULL };
    s->s_conns = metrics_series(f_conn, cv);
    return s;
}

static void set_port(sock_addr *a, int port)
{
    if (a->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)&a->ss)->sin_port = htons((uint16_t)port);
}

/* True when something already listens on a (bound without SO_REUSEPORT,
 * so a reuseport group on that port makes our probe bind fail). */
static bool port_taken(const sock_addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);   /* ignore TIME_WAIT */
    bool taken = bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno == EADDRINUSE;
    close(fd);
    return taken;
}

int http_server_start(http_server *s, char *err, size_t errlen)
{
    if (s->started) {
        snprintf(err, errlen, "http server %s: already started", s->name);
        return -1;
    }
    s->nw = s->o.workers;
    s->w = calloc(s->nw, sizeof *s->w);
    if (!s->w) {
        snprintf(err, errlen, "http server %s: out of memory", s->name);
        return -1;
    }
    sock_addr addr = s->o.listen;
    if (sock_addr_port(&addr) != 0 && port_taken(&addr)) {
        /* SO_REUSEPORT would let us silently share the port with another
         * server of the same user; refuse like a plain bind would. */
        char a[128];
        snprintf(err, errlen, "http server %s: listen %s: address already in use",
                 s->name, sock_addr_format(&addr, a, sizeof a));
        return -1;
    }
    sock_listen_opts lo = { .backlog = 0, .reuseport = true, .defer_accept = false };
    unsigned nroutes = http_router_count(s->o.router);
    for (unsigned i = 0; i < s->nw; i++) {
        worker *w = &s->w[i];
        w->s = s;
        w->idx = i;
        w->lfd = -1;
        char lerr[256];
        w->lfd = sock_listen(&addr, &lo, lerr, sizeof lerr);
        if (w->lfd < 0) {
            snprintf(err, errlen, "http server %s: listen: %s", s->name, lerr);
            goto fail;
        }
        if (i == 0) {
            /* Port 0: the other workers must join the port the first got. */
            sock_addr bound;
            if (sock_local_addr(w->lfd, &bound) < 0) {
                snprintf(err, errlen, "http server %s: getsockname: %s", s->name, strerror(errno));
                goto fail;
            }
            s->port = sock_addr_port(&bound);
            set_port(&addr, s->port);
        }
        w->loop = ev_loop_new();
        w->ndur = nroutes + 1;
        w->dur = calloc(w->ndur, sizeof *w->dur);
        if (!w->loop || !w->dur || ev_io_add(w->loop, w->lfd, EV_READ, on_accept, w) < 0) {
            snprintf(err, errlen, "http server %s: worker %u setup failed: %s", s->name, i, strerror(errno));
            goto fail;
        }
    }
    for (unsigned i = 0; i < s->nw; i++) {
        worker *w = &s->w[i];
        int rc = pthread_create(&w->th, NULL, worker_main, w);
        if (rc != 0) {
            snprintf(err, errlen, "http server %s: starting worker %u: %s", s->name, i, strerror(rc));
            s->started = true;
            http_server_stop(s, 0);
            return -1;
        }
        w->running = true;
    }
    s->started = true;
    return 0;
fail:
    for (unsigned i = 0; i < s->nw; i++) {
        worker *w = &s->w[i];
        if (w->lfd >= 0)
            close(w->lfd);
        if (w->loop)
            ev_loop_free(w->loop);
        free(w->dur);
    }
    free(s->w);
    s->w = NULL;
    s->nw = 0;
    return -1;
}

int http_server_port(const http_server *s) { return s->port; }

void http_server_stop(http_server *s, int grace_ms)
{
    if (!s || !s->started)
        return;
    atomic_store(&s->stopping, true);
    for (unsigned i = 0; i < s->nw; i++) {
        worker *w = &s->w[i];
        if (!w->running)
            continue;
        w->grace_ms = grace_ms < 0 ? 0 : grace_ms;
        if (ev_post(w->loop, worker_stop_task, w) < 0)
            ev_stop(w->loop);
    }
    for (unsigned i = 0; i < s->nw; i++) {
        worker *w = &s->w[i];
        if (w->running)
            pthread_join(w->th, NULL);
        w->running = false;
        if (w->lfd >= 0) {
            close(w->lfd);
            w->lfd = -1;
        }
    }
    s->started = false;
}

void http_server_free(http_server *s)
{
    if (!s)
        return;
    http_server_stop(s, 0);
    for (unsigned i = 0; i < s->nw; i++) {
        worker *w = &s->w[i];
        while (w->free_conns) {
            conn *c = w->free_conns;
            w->free_conns = c->next;
            buf_free(&c->in);
            buf_free(&c->out);
            buf_free(&c->body);
            free(c);
        }
        http_ctx_release(&w->ctx);
        if (w->loop)
            ev_loop_free(w->loop);
        free(w->dur);
    }
    free(s->w);
    http_tls_free(s);
    http_audit_free(s);
    server_opts_free(s);
    pthread_mutex_destroy(&s->af_mu);
    pthread_mutex_destroy(&s->audit_mu);
    pthread_mutex_destroy(&s->tls_mu);
    free(s);
}
