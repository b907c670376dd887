/* bench_run.c -- the workers: one thread and one ev_loop per thread, each
 * owning its share of the connections, and the main thread's progress loop.
 *
 * The request path allocates nothing: requests are pre-rendered (or rendered
 * into the connection's own buffer), written with one send(), and responses
 * are framed in place in a fixed per-connection read buffer whose bytes are
 * counted and dropped. Timeouts are found by a sweep on the 100 ms tick
 * instead of a timer per request, so a request costs no heap operation.
 *
 * Open model: arrival k of the whole run is due at bench_sched_at(k); thread
 * i takes arrivals i, i+T, i+2T... A due arrival waits for an idle
 * connection, and its latency runs from when it was due, not from when it
 * was sent: a stall shows up as latency for everything scheduled during it
 * (no coordinated omission). Think time applies to the closed model only.
 *
 * A kept-alive connection the server closes just as a request goes out
 * (its idle timeout racing the request) is not a failure of the server:
 * as browsers, Go's net/http and urllib3 do (RFC 9112 9.3.1), a request
 * with an idempotent method that got no byte of answer on a connection
 * that had already served one is sent once more on a new connection, and
 * counted (stale_resends). Anything else that ends a connection with a
 * request out counts against that request.
 *
 * Statistics live per thread and per request name, merged after the threads
 * are joined; the only cross-thread traffic during a run is each worker's
 * progress snapshot, handed over under a mutex on the tick. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "bench/bench.h"
#include "bench/bench_int.h"
#include "core/ev.h"

#define TICK_US       100000
#define BACKOFF_US    10000

static void worker_dispatch(bench_worker *w);
static void conn_next(bench_conn *c);
static void worker_stop(bench_worker *w);
static bool conn_resend_stale(bench_conn *c);

/* ---- connection life cycle ---- */

static void conn_close(bench_conn *c)
{
    bench_tls_close(c);
    if (c->fd >= 0) {
        ev_io_del(c->w->loop, c->fd);
        close(c->fd);
        c->fd = -1;
    }
    bench_resp_reset(&c->resp);
    c->state = BC_DOWN;
}

/* A transport error ends the connection and, when a request was out,
 * counts against that request. */
static void conn_fail(bench_conn *c, bench_err_kind kind)
{
    bench_worker *w = c->w;
    if (c->pending && !w->stopping) {
        bench_stats_error(&w->stats[c->req], kind);
        w->count++;
        w->fails++;
    }
    c->pending = false;
    conn_close(c);
    if (w->stopping)
        return;
    if (kind == BENCH_ERR_CONNECT || kind == BENCH_ERR_TLS) {   /* back off: a refusal answers instantly */
        c->state = BC_WAIT;
        ev_timer_start(w->loop, &c->timer, BACKOFF_US);
        return;
    }
    conn_next(c);
}

static bench_err_kind errno_kind(int e)
{
    if (e == ECONNREFUSED || e == ENETUNREACH || e == EHOSTUNREACH || e == EADDRNOTAVAIL)
        return BENCH_ERR_CONNECT;
    if (e == ETIMEDOUT)
        return BENCH_ERR_TIMEOUT;
    if (e == EPROTO)   /* a TLS record or alert the transport refused */
        return BENCH_ERR_TLS;
    return BENCH_ERR_RESET;
}

/* Returns -1 when the connection failed (and was closed). */
static int conn_write(bench_conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = c->ssl ? bench_tls_write(c, c->wptr + c->woff, c->wlen - c->woff)
                           : send(c->fd, c->wptr + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return 0;
        } else {
            int e = errno;
            if ((e == EPIPE || e == ECONNRESET) && conn_resend_stale(c))
                return -1;
            conn_fail(c, errno_kind(e));
            return -1;
        }
    }
    return 0;
}

static void on_io(ev_loop *loop, int fd, unsigned events, void *arg);
static int conn_connect(bench_conn *c);

/* The pending request met a closed connection: true when it went out again
 * (a reused connection that answered nothing of it; see the top). */
static bool conn_resend_stale(bench_conn *c)
{
    bench_worker *w = c->w;
    if (!c->pending || c->got || c->resent || c->served == 0 || !c->idempotent || w->stopping
        || w->plan->new_conn)
        return false;
    conn_close(c);
    c->resent = true;
    c->woff = 0;
    c->rlen = 0;
    w->cs.stale_resends++;
    conn_connect(c);      /* a failure there counts against the request */
    return true;
}

static int conn_connect(bench_conn *c)
{
    bench_worker *w = c->w;
    c->fd = sock_connect(&w->plan->addr);
    if (c->fd < 0) {   /* always the back-off path: an instant retry could recurse */
        conn_fail(c, BENCH_ERR_CONNECT);
        return -1;
    }
    if (ev_io_add(w->loop, c->fd, EV_READ | EV_WRITE, on_io, c) < 0) {
        close(c->fd);
        c->fd = -1;
        conn_fail(c, BENCH_ERR_CONNECT);
        return -1;
    }
    c->gen++;
    c->served = 0;
    c->state = BC_CONNECTING;
    c->sent_us = ev_monotonic_us();
    return 0;
}

/* Gives the connection a request due at start_us and sends it (connecting
 * first when needed). */
static void conn_assign(bench_conn *c, uint64_t start_us)
{
    bench_worker *w = c->w;
    const bench_scenario *sc = &w->plan->sc;
    c->req = (uint32_t)bench_scenario_pick(sc, &w->rng);
    const bench_req *rq = &sc->reqs[c->req];
    if (rq->static_bytes) {
        c->wptr = rq->static_bytes;
        c->wlen = rq->static_len;
    } else {
        c->wlen = bench_req_render(rq, w->plan->host_header, &w->rng, c->wbuf);
        c->wptr = c->wbuf;
    }
    c->woff = 0;
    c->start_us = start_us;
    c->pending = true;
    c->head_only = rq->method[0] == 'H' && !strcmp(rq->method, "HEAD");
    c->idempotent = !strcmp(rq->method, "GET") || c->head_only || !strcmp(rq->method, "OPTIONS")
                    || !strcmp(rq->method, "PUT") || !strcmp(rq->method, "DELETE")
                    || !strcmp(rq->method, "TRACE");
    c->got = c->resent = false;
    bench_resp_reset(&c->resp);
    if (c->fd < 0) {
        conn_connect(c);
        return;
    }
    c->state = BC_BUSY;
    c->sent_us = ev_monotonic_us();
    conn_write(c);
}

/* The connection is free: decide what it does next. */
static void conn_next(bench_conn *c)
{
    bench_worker *w = c->w;
    c->state = BC_IDLE;
    if (w->stopping)
        return;
    if (w->plan->open_model) {
        w->idle[w->nidle++] = c;
        worker_dispatch(w);
    } else if (c->idx < w->active) {
        conn_assign(c, ev_monotonic_us());
    }
}

static void conn_done(bench_conn *c, uint64_t now)
{
    bench_worker *w = c->w;
    uint64_t lat = now > c->start_us ? now - c->start_us : 1;
    bench_stats *s = &w->stats[c->req];
    bench_stats_response(s, c->resp.status, lat);
    s->bytes_in += c->resp.bytes;
    hist_record(&w->window, lat ? lat : 1);
    w->count++;
    if (c->resp.status >= 400)
        w->fails++;
    c->pending = false;
    c->served++;
    if (c->resp.close_after || w->plan->new_conn)
        conn_close(c);
    const bench_scenario *sc = &w->plan->sc;
    if (!w->plan->open_model && sc->think_max_us > 0) {
        uint64_t span = sc->think_max_us - sc->think_min_us;
        uint64_t think = sc->think_min_us + (span ? bench_rng_below(&w->rng, span + 1) : 0);
        c->state = BC_WAIT;
        ev_timer_start(w->loop, &c->timer, think);
        return;
    }
    conn_next(c);
}

static void conn_read(bench_conn *c)
{
    for (;;) {
        size_t room = sizeof c->rbuf - c->rlen;
        ssize_t n = c->ssl ? bench_tls_read(c, c->rbuf + c->rlen, room)
                           : read(c->fd, c->rbuf + c->rlen, room);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            int e = errno;
            if (c->state == BC_BUSY && e == ECONNRESET && conn_resend_stale(c))
                return;
            if (c->state == BC_BUSY)
                conn_fail(c, errno_kind(e));
            else
                conn_close(c);
            return;
        }
        if (n == 0) {   /* peer closed */
            if (c->state == BC_BUSY && c->pending && bench_resp_eof(&c->resp)) {
                conn_close(c);
                c->state = BC_BUSY;   /* conn_done decides what comes next */
                conn_done(c, ev_monotonic_us());
            } else if (c->state == BC_BUSY && c->pending) {
                if (!conn_resend_stale(c))
                    conn_fail(c, BENCH_ERR_RESET);
            } else {
                conn_close(c);   /* an idle keep-alive connection timed out: not an error */
            }
            return;
        }
        if (c->state != BC_BUSY || !c->pending) {   /* bytes nobody asked for */
            conn_close(c);
            return;
        }
        c->rlen += (size_t)n;
        c->got = true;
        size_t used = 0;
        int rc = bench_resp_feed(&c->resp, c->rbuf, c->rlen, &used, c->head_only);
        if (rc < 0) {
            conn_fail(c, BENCH_ERR_PROTOCOL);
            return;
        }
        /* Keep only an unfinished line; body bytes are counted and dropped. */
        memmove(c->rbuf, c->rbuf + used, c->rlen - used);
        c->rlen -= used;
        if (rc == 1) {
            if (c->rlen) {   /* data past the response: we never pipeline */
                conn_fail(c, BENCH_ERR_PROTOCOL);
                return;
            }
            uint32_t gen = c->gen;
            conn_done(c, ev_monotonic_us());
            if (c->gen != gen || c->fd < 0)
                return;
        } else if (c->rlen == sizeof c->rbuf) {
            conn_fail(c, BENCH_ERR_PROTOCOL);   /* a head line longer than the buffer */
            return;
        }
        /* A short read drained the socket: the next arrival raises a new
         * edge, so the read() that would only say EAGAIN is skipped (as
         * nginx does), saving a syscall per response. Not over TLS: a
         * short SSL_read ends a record, not the socket's data. */
        if ((size_t)n < room && !c->ssl)
            return;
    }
}

/* A handshake failed: counted against the pending request as a TLS error;
 * a refused certificate stops this worker and, through `fatal`, the run. */
static void conn_tls_failed(bench_conn *c, const char *why, bool fatal)
{
    bench_worker *w = c->w;
    if (!w->tls_error[0])
        snprintf(w->tls_error, sizeof w->tls_error, "%s", why);
    conn_fail(c, BENCH_ERR_TLS);
    if (fatal) {
        atomic_store(&w->fatal, 1);
        worker_stop(w);
    }
}

/* BC_CONNECTING: the TCP connect, then (https) the handshake. Returns true
 * when the connection just became usable and has a request to send. */
static bool conn_establish(bench_conn *c, int fd, unsigned events)
{
    if (c->tls == BENCH_TLS_PLAIN || c->tls == BENCH_TLS_DOWN) {
        int e = sock_connect_result(fd);
        if (e) {
            conn_fail(c, e == ETIMEDOUT ? BENCH_ERR_TIMEOUT : BENCH_ERR_CONNECT);
            return false;
        }
        if (!(events & (EV_WRITE | EV_ERROR)))
            return false;
        c->w->cs.connects++;
        if (c->tls == BENCH_TLS_DOWN && bench_tls_begin(c) < 0) {
            conn_tls_failed(c, "TLS: out of memory", false);
            return false;
        }
    }
    if (c->tls == BENCH_TLS_HANDSHAKE) {
        char why[BENCH_ERRLEN];
        bool fatal;
        int rc = bench_tls_handshake(c, why, sizeof why, &fatal);
        if (rc < 0)
            conn_tls_failed(c, why, fatal);
        if (rc <= 0)
            return false;
    }
    if (!c->pending) {
        conn_next(c);
        return false;
    }
    c->state = BC_BUSY;
    c->sent_us = ev_monotonic_us();
    return true;
}

static void on_io(ev_loop *loop, int fd, unsigned events, void *arg)
{
    bench_conn *c = arg;
    (void)loop;
    uint32_t gen = c->gen;
    bool fresh = false;   /* just established: writable, whatever the event */
    if (c->state == BC_CONNECTING) {
        if (!conn_establish(c, fd, events))
            return;
        fresh = true;
    }
    if (c->state == BC_BUSY && c->woff < c->wlen && (fresh || (events & (EV_WRITE | EV_ERROR)))) {
        if (conn_write(c) < 0)
            return;
    }
    /* After a handshake, bytes may wait behind the edge it consumed
     * (TLS 1.3 tickets): read whatever the event. */
    if (c->gen == gen && c->fd == fd && ((events & (EV_READ | EV_ERROR)) || (fresh && c->ssl)))
        conn_read(c);
}

static void on_conn_timer(ev_loop *loop, ev_timer *t)
{
    bench_conn *c = t->arg;
    (void)loop;
    if (c->state == BC_WAIT)
        conn_next(c);
}

/* ---- the worker ---- */

/* Open model: hands every due arrival to an idle connection. */
static void worker_dispatch(bench_worker *w)
{
    const bench_plan *p = w->plan;
    uint64_t now = ev_monotonic_us();
    while (w->nidle > 0 && !w->stopping) {
        double k = (double)w->id + (double)w->next_k * p->threads;
        uint64_t at = bench_sched_at(p->stages, p->nstages, k);
        if (at == UINT64_MAX || at >= p->duration_us)
            return;
        if (w->t0 + at > now) {
            if (!ev_timer_armed(&w->arrive))
                ev_timer_start(w->loop, &w->arrive, w->t0 + at - now);
            return;
        }
        w->next_k++;
        bench_conn *c = w->idle[--w->nidle];
        conn_assign(c, w->t0 + at);
    }
}

static void on_arrive(ev_loop *loop, ev_timer *t)
{
    (void)loop;
    worker_dispatch(t->arg);
}

static void worker_stop(bench_worker *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    if (w->plan->open_model) {   /* arrivals that were due but never sent */
        const bench_plan *p = w->plan;
        uint64_t until = ev_monotonic_us() - w->t0;
        if (until > p->duration_us)
            until = p->duration_us;
        /* The schedule is monotonic: search for the first arrival not yet
         * due instead of stepping through a backlog of any size. */
        uint64_t lo = w->next_k, hi = lo + 1;
        while (bench_sched_at(p->stages, p->nstages, (double)w->id + (double)hi * p->threads) < until)
            hi = lo + (hi - lo) * 2;
        while (lo < hi) {
            uint64_t mid = lo + (hi - lo) / 2;
            if (bench_sched_at(p->stages, p->nstages, (double)w->id + (double)mid * p->threads) < until)
                lo = mid + 1;
            else
                hi = mid;
        }
        w->behind += lo - w->next_k;
        w->next_k = lo;
    }
    ev_stop(w->loop);
}

static void on_end(ev_loop *loop, ev_timer *t)
{
    (void)loop;
    worker_stop(t->arg);
}

static void on_stop_task(ev_loop *loop, void *arg)
{
    (void)loop;
    worker_stop(arg);
}

static void worker_publish(bench_worker *w)
{
    pthread_mutex_lock(&w->lk);
    w->sh_count = w->count;
    w->sh_fails = w->fails;
    hist_merge(&w->sh_window, &w->window);
    pthread_mutex_unlock(&w->lk);
    hist_init(&w->window);
}

static void on_tick(ev_loop *loop, ev_timer *t)
{
    bench_worker *w = t->arg;
    const bench_plan *p = w->plan;
    uint64_t now = ev_monotonic_us();
    worker_publish(w);
    /* Timeouts: a sweep every tick is cheaper than a timer per request. */
    for (uint32_t i = 0; i < w->nconns; i++) {
        bench_conn *c = &w->conns[i];
        if ((c->state == BC_BUSY || c->state == BC_CONNECTING) && now - c->sent_us > p->timeout_us)
            conn_fail(c, c->state == BC_CONNECTING && !c->pending ? BENCH_ERR_CONNECT : BENCH_ERR_TIMEOUT);
    }
    if (!p->open_model) {   /* closed model: follow the stages' connection count */
        double target = bench_stages_target(p->stages, p->nstages, now - w->t0);
        uint32_t total = (uint32_t)llround(target);
        uint32_t mine = total / p->threads + (w->id < total % p->threads ? 1 : 0);
        if (mine > w->nconns)
            mine = w->nconns;
        uint32_t was = w->active;
        w->active = mine;
        for (uint32_t i = was; i < mine; i++) {
            bench_conn *c = &w->conns[i];
            if (c->state == BC_IDLE || c->state == BC_DOWN)
                conn_next(c);
        }
    }
    ev_timer_start(loop, t, TICK_US);
}

static void *worker_main(void *arg)
{
    bench_worker *w = arg;
    const bench_plan *p = w->plan;
    /* Timers count from the loop's clock, last read when the loop was made
     * (before this thread started): refresh it, or the end fires early by
     * the thread's start-up delay and the open model loses the arrivals of
     * that gap (neither sent nor counted behind). */
    uint64_t now = ev_now_update(w->loop);
    ev_timer_start(w->loop, &w->end, w->t0 + p->duration_us > now ? w->t0 + p->duration_us - now : 0);
    ev_timer_start(w->loop, &w->tick, TICK_US);
    if (p->open_model) {
        for (uint32_t i = 0; i < w->nconns; i++)   /* connect ahead of the first arrivals */
            conn_connect(&w->conns[i]);
    } else {
        on_tick(w->loop, &w->tick);
    }
    if (ev_run(w->loop) < 0)
        w->failed = errno;
    for (uint32_t i = 0; i < w->nconns; i++)
        conn_close(&w->conns[i]);
    worker_publish(w);
    return NULL;
}

static void worker_free(bench_worker *w)
{
    for (uint32_t i = 0; w->conns && i < w->nconns; i++)
        bench_tls_conn_free(&w->conns[i]);
    bench_tls_ctx_free(w->ssl_ctx);
    if (w->loop)
        ev_loop_free(w->loop);
    free(w->conns);
    free(w->wbufs);
    free(w->idle);
    free(w->stats);
    pthread_mutex_destroy(&w->lk);
}

static int worker_init(bench_worker *w, const bench_plan *p, uint32_t id, uint64_t t0,
                       char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->lk, NULL);
    w->plan = p;
    w->id = id;
    w->t0 = t0;
    w->nconns = p->conns / p->threads + (id < p->conns % p->threads ? 1 : 0);
    bench_rng_seed(&w->rng, ev_wall_us() ^ ((uint64_t)id << 40), id, p->threads);
    w->loop = ev_loop_new();
    w->conns = calloc(w->nconns ? w->nconns : 1, sizeof *w->conns);
    w->idle = calloc(w->nconns ? w->nconns : 1, sizeof *w->idle);
    w->stats = calloc(p->sc.nreqs, sizeof *w->stats);
    size_t wmax = 0;
    for (size_t i = 0; i < p->sc.nreqs; i++)
        if (!p->sc.reqs[i].static_bytes && p->sc.reqs[i].max_len > wmax)
            wmax = p->sc.reqs[i].max_len;
    if (wmax)
        w->wbufs = malloc(wmax * w->nconns);
    if (!w->loop || !w->conns || !w->idle || !w->stats || (wmax && !w->wbufs)) {
        snprintf(err, errlen, "cannot set up worker %u: out of memory", id);
        return -1;
    }
    bench_conn_stats_init(&w->cs);
    if (p->tls.enabled && !(w->ssl_ctx = bench_tls_ctx_new(&p->tls, err, errlen)))
        return -1;
    for (size_t i = 0; i < p->sc.nreqs; i++)
        bench_stats_init(&w->stats[i]);
    hist_init(&w->window);
    hist_init(&w->sh_window);
    for (uint32_t i = 0; i < w->nconns; i++) {
        bench_conn *c = &w->conns[i];
        c->w = w;
        c->fd = -1;
        c->idx = i;
        c->tls = p->tls.enabled ? BENCH_TLS_DOWN : BENCH_TLS_PLAIN;
        c->wbuf = wmax ? w->wbufs + i * wmax : NULL;
        ev_timer_init(&c->timer, on_conn_timer, c);
    }
    ev_timer_init(&w->arrive, on_arrive, w);
    ev_timer_init(&w->tick, on_tick, w);
    ev_timer_init(&w->end, on_end, w);
    return 0;
}

/* ---- the run ---- */

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

static void progress_line(FILE *out, bool tty, const bench_plan *p, bench_worker *ws,
                          uint64_t t0, uint64_t *last_count, uint64_t *last_us, hist *win)
{
    uint64_t now = ev_monotonic_us(), count = 0, fails = 0;
    for (uint32_t i = 0; i < p->threads; i++) {
        pthread_mutex_lock(&ws[i].lk);
        count += ws[i].sh_count;
        fails += ws[i].sh_fails;
        hist_merge(win, &ws[i].sh_window);
        hist_init(&ws[i].sh_window);
        pthread_mutex_unlock(&ws[i].lk);
    }
    double dt = (double)(now - *last_us) / 1e6, el = (double)(now - t0) / 1e6;
    double rps = dt > 0 ? (double)(count - *last_count) / dt : 0;
    double tgt = bench_stages_target(p->stages, p->nstages, now - t0);
    /* Stage numbers count the user's stages (a constant run's zero-length
     * lead-in stage is not one). */
    size_t shown = 0, nshown = 0;
    uint64_t acc = 0;
    for (size_t i = 0; i < p->nstages; i++) {
        if (p->stages[i].dur_us == 0)
            continue;
        nshown++;
        if (now - t0 >= acc)
            shown = nshown;
        acc += p->stages[i].dur_us;
    }
    fprintf(out, "%s[%6.1fs] %9.0f req/s  p95 %8.2fms  errors %llu (%.2f%%)  %s %.0f%s  stage %zu/%zu%s",
            tty ? "\r" : "", el, rps, (double)hist_quantile(win, 0.95) / 1e3,
            (unsigned long long)fails, count ? 100.0 * (double)fails / (double)count : 0.0,
            p->open_model ? "rate" : "conns", tgt, p->open_model ? "/s" : "",
            shown, nshown, tty ? "   " : "\n");
    fflush(out);
    *last_count = count;
    *last_us = now;
    hist_init(win);
}

int bench_run(const bench_plan *p, FILE *progress, bench_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    bench_worker *ws = calloc(p->threads, sizeof *ws);
    hist *win = malloc(sizeof *win);
    if (!ws || !win) {
        free(ws);
        free(win);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    hist_init(win);
    uint64_t t0 = ev_monotonic_us() + 1000;
    uint32_t started = 0, ninit = 0;
    int rc = 0;
    for (; ninit < p->threads; ninit++) {
        if (worker_init(&ws[ninit], p, ninit, t0, err, errlen) < 0) {
            worker_free(&ws[ninit]);
            rc = -1;
            break;
        }
    }
    struct sigaction sa = {0}, old_int, old_term, old_pipe, ign = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    ign.sa_handler = SIG_IGN;   /* OpenSSL writes with write(2): a reset peer must not kill us */
    sigaction(SIGPIPE, &ign, &old_pipe);
    interrupted = 0;
    for (uint32_t i = 0; rc == 0 && i < p->threads; i++) {
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) {
            snprintf(err, errlen, "cannot start thread %u: %s", i, strerror(errno));
            rc = -1;
            break;
        }
        started++;
    }
    /* Progress: a refreshed line on a terminal, a plain line every 5 s
     * otherwise (logs and CI keep one line per period). */
    bool tty = progress && isatty(fileno(progress));
    uint64_t period = tty ? 250000 : 5000000, next = t0 + period, last_us = t0, last_count = 0;
    uint64_t end = t0 + p->duration_us;
    bool stopped = rc != 0, aborted = false;
    while (!stopped) {
        uint64_t now = ev_monotonic_us();
        for (uint32_t i = 0; i < started; i++)
            aborted |= atomic_load(&ws[i].fatal) != 0;
        if (interrupted || aborted || now >= end + 50000)
            break;
        uint64_t wake = next < end + 50000 ? next : end + 50000;
        uint64_t sleep_us = wake > now ? wake - now : 0;
        if (sleep_us > 50000)
            sleep_us = 50000;
        struct timespec ts = { (time_t)(sleep_us / 1000000), (long)(sleep_us % 1000000) * 1000 };
        nanosleep(&ts, NULL);
        if (ev_monotonic_us() >= next && progress && !p->quiet && ev_monotonic_us() < end) {
            progress_line(progress, tty, p, ws, t0, &last_count, &last_us, win);
            next += period;
        }
    }
    uint64_t stop_at = ev_monotonic_us();
    for (uint32_t i = 0; i < started; i++)
        ev_post(ws[i].loop, on_stop_task, &ws[i]);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(ws[i].th, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    if (tty && progress && !p->quiet)
        fputc('\n', progress);
    if (rc == 0) {
        res->nnames = p->sc.nreqs;
        res->names = calloc(res->nnames, sizeof *res->names);
        res->per = calloc(res->nnames, sizeof *res->per);
        if (!res->names || !res->per) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
    }
    if (rc == 0) {
        bench_stats_init(&res->total);
        for (size_t n = 0; n < res->nnames; n++) {
            res->names[n] = p->sc.reqs[n].name;
            bench_stats_init(&res->per[n]);
            for (uint32_t i = 0; i < p->threads; i++)
                bench_stats_merge(&res->per[n], &ws[i].stats[n]);
            bench_stats_merge(&res->total, &res->per[n]);
        }
        bench_conn_stats_init(&res->conn);
        for (uint32_t i = 0; i < p->threads; i++) {
            res->behind += ws[i].behind;
            bench_conn_stats_merge(&res->conn, &ws[i].cs);
            if (!res->tls_error[0] && ws[i].tls_error[0])
                memcpy(res->tls_error, ws[i].tls_error, sizeof res->tls_error);
        }
        res->aborted = aborted;
        uint64_t el = (stop_at < end ? stop_at : end) - t0;
        res->elapsed_s = (double)el / 1e6;
        res->interrupted = interrupted != 0;
    }
    for (uint32_t i = 0; i < ninit; i++)
        worker_free(&ws[i]);
    free(ws);
    free(win);
    return rc;
}

void bench_result_free(bench_result *res)
{
    free(res->names);
    free(res->per);
    memset(res, 0, sizeof *res);
}
