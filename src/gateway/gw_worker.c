/* gw_worker.c -- one data-plane thread: its own ev_loop, its own
 * SO_REUSEPORT listener (the kernel spreads new connections across
 * workers, so nothing is handed between threads), its own idle upstream
 * pool, balancer cursors and free lists.
 *
 * The loop is driven here rather than by ev_run so that every iteration
 * starts with a quiescent stamp (gw_state.h): between two stamps a worker
 * may read the current snapshot, and nothing read then survives the next
 * stamp except what a request pinned or copied.
 *
 * After a busy iteration the worker may step aside (after_batch) before
 * polling again; see there why.
 *
 * A snapshot generation change resets what is indexed by pool or route
 * (cursors, cached metric handles) and closes idle upstream connections of
 * members that left the configuration or stopped taking traffic, so a
 * drained backend sees its keep-alive connections go promptly. */
#include "gateway/gw_proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

gw_lb_cursor *gw_worker_cursor(gw_worker *w, const gw_snap *s, int pi)
{
    (void)s;
    return (size_t)pi < w->ncursors ? &w->cursors[pi] : NULL;
}

uint64_t gw_worker_rand(gw_worker *w)
{
    uint64_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return w->rng = x;
}

gw_route_series *gw_worker_route_series(gw_worker *w, const gw_snap *s, int route, int pool)
{
    if (route < 0 || pool < 0 || (size_t)route >= w->nroutes_c || (size_t)pool >= w->npools_c)
        return NULL;
    gw_route_series **slot = &w->rs_cache[(size_t)route * w->npools_c + (size_t)pool];
    if (!*slot)
        *slot = gw_metrics_route(w->rt, s->routes[route].prefix, s->pools[pool].name);
    return *slot;
}

gw_pool_series *gw_worker_pool_series(gw_worker *w, const gw_snap *s, int pool)
{
    if (pool < 0 || (size_t)pool >= w->npools_c)
        return NULL;
    if (!w->ps_cache[pool])
        w->ps_cache[pool] = gw_metrics_pool(w->rt, s->pools[pool].name);
    return w->ps_cache[pool];
}

void gw_buf_acquire(gw_worker *w, buf *b)
{
    if (b->data)
        return;
    if (w->nfree_bufs) {
        b->data = w->free_bufs[--w->nfree_bufs];
        if (w->nfree_bufs < w->low_free_bufs)
            w->low_free_bufs = w->nfree_bufs;
        b->cap = GW_BUF_SIZE;
        b->off = b->len = 0;
        return;
    }
    w->low_free_bufs = 0;
    w->gc_busy = true;
    buf_reserve(b, GW_BUF_SIZE);
}

/* Past this many, released buffers go straight back to malloc; below it,
 * gc_tick returns what a burst left unused. */
#define GW_FREE_BUFS 256

void gw_buf_release(gw_worker *w, buf *b)
{
    if (!b->data)
        return;
    if (b->cap == GW_BUF_SIZE && w->nfree_bufs < GW_FREE_BUFS) {
        w->free_bufs[w->nfree_bufs++] = b->data;
    } else {
        free(b->data);
        w->gc_freed = true;
    }
    b->data = NULL;
    b->cap = b->off = b->len = 0;
}

/* Client connections come from slabs of their own rather than from malloc:
 * a connection may live for hours while buffers and exchanges come and go
 * around it, and in one heap every live connection would pin the page of
 * freed buffer memory it sits in, so a burst's memory could never go back.
 * Slabs stay until the worker exits. Under AddressSanitizer a free slot is
 * poisoned, so a use after close is still caught. */
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#define SLOT_POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define SLOT_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define SLOT_POISON(p, n)   ((void)(p), (void)(n))
#define SLOT_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

typedef struct gw_slab {
    struct gw_slab *next;
} gw_slab;

#define GW_SLAB_BYTES (64u * 1024u)
#define GW_SLAB_HDR   ((sizeof(gw_slab) + 63u) & ~(size_t)63u)

void gw_conn_free(gw_worker *w, gw_conn *c)
{
    c->next = w->free_conns;
    w->free_conns = c;
    SLOT_POISON(c, sizeof *c);
}

gw_conn *gw_conn_alloc(gw_worker *w)
{
    if (!w->free_conns) {
        void *p = mmap(NULL, GW_SLAB_BYTES, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        gw_slab *slab = p;
        slab->next = w->slabs;
        w->slabs = slab;
        char *base = (char *)p + GW_SLAB_HDR;
        size_t n = (GW_SLAB_BYTES - GW_SLAB_HDR) / sizeof(gw_conn);
        for (size_t i = n; i-- > 0;)
            gw_conn_free(w, (gw_conn *)(void *)(base + i * sizeof(gw_conn)));
    }
    gw_conn *c = w->free_conns;
    SLOT_UNPOISON(c, sizeof *c);
    w->free_conns = c->next;
    memset(c, 0, sizeof *c);
    return c;
}

static void slabs_free(gw_worker *w)
{
    while (w->slabs) {
        gw_slab *s = w->slabs;
        w->slabs = s->next;
        SLOT_UNPOISON(s, GW_SLAB_BYTES);
        munmap(s, GW_SLAB_BYTES);
    }
    w->free_conns = NULL;
}

/* Gives memory back after a burst. What sat unused in the caches through
 * a whole interval is freed (a steady load keeps its working set, since its
 * low-water mark stays near zero), and once an interval passes with no
 * allocation on the request path, malloc_trim returns the free pages of the
 * heap to the system: 10,000 clients that connected in a rush and went
 * idle then cost what idle connections cost, not what the rush did. */
#define GW_GC_US (1000u * 1000u)

static void gc_tick(ev_loop *loop, ev_timer *t)
{
    gw_worker *w = t->arg;
    for (unsigned n = w->low_free_bufs; n > 0 && w->nfree_bufs > 0; n--) {
        free(w->free_bufs[--w->nfree_bufs]);
        w->gc_freed = true;
    }
    for (unsigned n = w->low_free_ex; n > 0 && w->free_ex; n--) {
        gw_exchange *ex = w->free_ex;
        w->free_ex = ex->next_free;
        w->nfree_ex--;
        free(ex);
        w->gc_freed = true;
    }
    gw_xform_gc(w);
    if (w->gc_freed && !w->gc_busy) {
        malloc_trim(0);
        w->gc_freed = false;
    }
    w->gc_busy = false;
    w->low_free_bufs = w->nfree_bufs;
    w->low_free_ex = w->nfree_ex;
    ev_timer_start(loop, t, GW_GC_US);
}

void gw_worker_hold(gw_worker *w, gw_member *m)
{
    for (size_t i = 0; i < w->nheld; i++)
        if (w->held[i] == m)
            return;
    if (w->nheld == w->capheld) {
        size_t ncap = w->capheld ? w->capheld * 2 : 16;
        gw_member **n = realloc(w->held, ncap * sizeof *n);
        if (!n)
            return;
        w->held = n;
        w->capheld = ncap;
    }
    gw_member_ref(m);
    w->held[w->nheld++] = m;
}

static bool snap_has_member(const gw_snap *s, const gw_member *m)
{
    for (size_t p = 0; p < s->npools; p++)
        for (uint32_t i = 0; i < s->pools[p].n; i++)
            if (s->pools[p].members[i] == m)
                return true;
    return false;
}

/* A new generation: reset pool-indexed state and let go of idle sockets
 * to members that are gone or not taking traffic. */
static void on_new_gen(gw_worker *w, const gw_snap *s)
{
    /* Selection state starts afresh; what the worker learnt of a pool's
     * latency carries over by pool name, or every API call (a member
     * registered, a weight changed) would forget the p99. */
    gw_lb_cursor *n = malloc((s->npools ? s->npools : 1) * sizeof *n);
    if (!n)
        return;
    for (size_t i = 0; i < s->npools; i++) {
        gw_lb_cursor_init(&n[i], gw_worker_rand(w) | 1);
        snprintf(n[i].pool, sizeof n[i].pool, "%s", s->pools[i].name);
        for (size_t k = 0; k < w->ncursors; k++)
            if (strcmp(w->cursors[k].pool, n[i].pool) == 0) {
                n[i].lat = w->cursors[k].lat;
                break;
            }
    }
    free(w->cursors);
    w->cursors = n;
    w->ncursors = s->npools;
    free(w->rs_cache);
    free(w->ps_cache);
    w->npools_c = s->npools;
    w->nroutes_c = s->nroutes;
    w->rs_cache = calloc(s->npools * s->nroutes + 1, sizeof *w->rs_cache);
    w->ps_cache = calloc(s->npools + 1, sizeof *w->ps_cache);
    if (!w->rs_cache || !w->ps_cache)
        w->npools_c = w->nroutes_c = 0;
    size_t keep = 0;
    for (size_t i = 0; i < w->nheld; i++) {
        gw_member *m = w->held[i];
        if (snap_has_member(s, m) && atomic_load(&m->state) == GW_ST_READY) {
            w->held[keep++] = m;
            continue;
        }
        hc_pool_drop_key(w->idle, m);
        gw_member_unref(m);
    }
    w->nheld = keep;
    /* Tunnels to a member that left the configuration (a drain's time ran
     * out, or it was removed) close now; a reload that keeps the member
     * keeps them. */
    for (gw_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == GC_TUNNEL && c->ex && c->ex->m && !snap_has_member(s, c->ex->m)) {
            log_info("tunnel from %s to %s closed: the backend left the configuration",
                     c->ip, c->ex->m->name);
            gw_conn_close(c);
        }
    }
    w->yield_cpu = s->cfg.yield_after_batch;
    w->gen = s->gen;
}

static void accept_io(ev_loop *loop, int fd, unsigned events, void *arg);

static void accept_resume(ev_loop *loop, ev_timer *t)
{
    gw_worker *w = t->arg;
    if (w->lfd >= 0)
        accept_io(loop, w->lfd, EV_READ, w);
    if (w->tls_lfd >= 0)
        accept_io(loop, w->tls_lfd, EV_READ, w);
    if (w->redir_lfd >= 0)
        accept_io(loop, w->redir_lfd, EV_READ, w);
}

/* Accepts up to a burst, so a flood of connects cannot starve the
 * requests of connections already open. The listener is edge-triggered:
 * connections left in the queue raise no new edge, so a full burst
 * schedules the rest for the next loop iteration. */
static void accept_io(ev_loop *loop, int fd, unsigned events, void *arg)
{
    gw_worker *w = arg;
    gw_listener_kind kind = fd == w->tls_lfd ? GW_LST_TLS
                            : fd == w->redir_lfd ? GW_LST_REDIRECT : GW_LST_PLAIN;
    for (int burst = 0;; burst++) {
        if (burst == 256) {
            ev_timer_start(loop, &w->accept_more, 0);
            return;
        }
        sock_addr peer;
        int cfd = sock_accept_ex(fd, &peer, !w->lst_nodelay[kind]);
        if (cfd < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        uint32_t max = (uint32_t)w->rt->cfg.max_clients;
        if (max && atomic_load_explicit(&w->rt->clients, memory_order_relaxed) >= max) {
            if (kind == GW_LST_TLS) {
                close(cfd);       /* no plain-text answer inside a TLS handshake */
                continue;
            }
            /* Over the global limit: refuse at once rather than queue. */
            static const char busy[] =
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                "Retry-After: 1\r\nConnection: close\r\nContent-Length: 60\r\n\r\n"
                "{\"error\":\"too many client connections\",\"status\":503}\n     ";
            ssize_t wr = write(cfd, busy, sizeof busy - 1);
            (void)wr;
            close(cfd);
            continue;
        }
        gw_conn_accepted(w, cfd, &peer, kind);
    }
}

static void queue_tick(ev_loop *loop, ev_timer *t)
{
    (void)loop;
    gw_queue_dispatch(t->arg);
}

static void close_fd_listener(gw_worker *w, int *fd)
{
    if (*fd >= 0) {
        if (w->loop)
            ev_io_del(w->loop, *fd);
        close(*fd);
        *fd = -1;
    }
}

static void close_listener(gw_worker *w)
{
    if (w->loop)
        ev_timer_stop(w->loop, &w->accept_more);
    close_fd_listener(w, &w->lfd);
    close_fd_listener(w, &w->tls_lfd);
    close_fd_listener(w, &w->redir_lfd);
}

/* Opens one more SO_REUSEPORT listener of this worker on *addr (the first
 * worker binds port 0 to a real port, which the others then share). */
static int open_extra(gw_worker *w, sock_addr *addr, int *fd, const char *what,
                      bool defer, char *err, size_t errlen)
{
    sock_listen_opts lo = { .backlog = 4096, .reuseport = true, .defer_accept = defer };
    char why[256];
    *fd = sock_listen(addr, &lo, why, sizeof why);
    if (*fd < 0) {
        snprintf(err, errlen, "%s: %s", what, why);
        return -1;
    }
    if (w->id == 0 && sock_addr_port(addr) == 0)
        sock_local_addr(*fd, addr);
    if (ev_io_add(w->loop, *fd, EV_READ, accept_io, w) < 0) {
        snprintf(err, errlen, "%s: cannot register the listener", what);
        return -1;
    }
    return 0;
}

/* Called once the writes of an iteration that ran `ran` callbacks have
 * gone out. Those writes woke the processes they were for; when they share
 * the machine (`hscale up`, or a gateway on an application host) they are
 * runnable now, possibly on this CPU. Yielding lets them run first, so
 * their replies come back together and are handled in one batch, instead
 * of each one waking this worker: a wake-up costs both sides a context
 * switch and the waker an IPI, more than the proxying itself on a VM
 * (bench/gateway_vs_peers.sh: proxy CPU per request about halves at 50
 * connections). With nothing else runnable here sched_yield returns at
 * once, so a worker with a CPU to itself only pays one system call. */
static void after_batch(gw_worker *w, int ran, bool woke)
{
    gw_rt *rt = w->rt;
    metrics_inc(rt->m_batches);
    metrics_add(rt->m_callbacks, ran);
    /* Only a batch that wrote (woke a backend or a client) has anyone to
     * wait for: a batch of TLS handshake steps or accepts alone would give
     * its CPU away for nothing, which costs a whole time slice per step
     * on a busy machine. */
    if (w->yield_cpu && woke) {
        sched_yield();
        metrics_inc(rt->m_yields);
    }
}

static void *worker_main(void *arg)
{
    gw_worker *w = arg;
    gw_rt *rt = w->rt;
    metrics_thread_bind(w->id % METRICS_SHARDS);
    w->defer = true;
    gw_io_init(w, rt->cfg.io_uring);   /* here: the ring belongs to this thread */
    ev_timer_start(w->loop, &w->gc, GW_GC_US);
    while (1) {
        gw_rcu_quiescent(&rt->rcu, w->id);
        const gw_snap *s = gw_rcu_read(&rt->rcu);
        if (s->gen != w->gen)
            on_new_gen(w, s);
        if (atomic_load_explicit(&rt->stopping, memory_order_acquire) && !w->draining) {
            w->draining = true;
            close_listener(w);
            /* Idle clients go now; busy ones after their current response,
             * tunnels when the grace period ends. */
            char busy[256];
            size_t bl = 0;
            for (int p = GC_PROXY; p < GC_NPHASES; p++)
                bl += (size_t)snprintf(busy + bl, sizeof busy - bl, " %s %u", gw_conn_phase_str(p),
                                       atomic_load_explicit(&w->nphase[p], memory_order_relaxed));
            bl += (size_t)snprintf(busy + bl, sizeof busy - bl, "; requests:");
            for (int p = GX_ROUTE; p < GX_NPHASES; p++)
                bl += (size_t)snprintf(busy + bl, sizeof busy - bl, " %s %u", gw_ex_phase_str(p),
                                       atomic_load_explicit(&w->nxphase[p], memory_order_relaxed));
            log_info("worker %u draining:%s", w->id, busy);
            for (gw_conn *c = w->conns, *next; c; c = next) {
                next = c->next;
                if (c->state == GC_WAIT && c->in.len == 0)
                    gw_conn_close(c);
                else
                    c->close_after = true;
            }
        }
        if (w->draining && (w->nconns == 0 || ev_now_us(w->loop) >= w->drain_deadline_us))
            break;
        int ran = ev_run_once(w->loop, w->draining ? 20 : 100);
        if (ran < 0 && errno != EINTR) {
            log_error("worker %u: event loop: %s", w->id, strerror(errno));
            break;
        }
        bool woke = w->npend > 0;       /* output held back: the flush wakes its peers */
        gw_worker_flush(w);
        if (ran > 0)
            after_batch(w, ran, woke);
    }
    while (w->conns)
        gw_conn_close(w->conns);
    gw_xform_worker_free(w);
    gw_cache_worker_free(w);
    gw_io_free(w);
    gw_rcu_quiescent(&rt->rcu, w->id);
    return NULL;
}

/* A listening socket handed down by the parent (`hscale up` keeps one open
 * across gateway restarts, so connections wait in its backlog while a
 * crashed gateway comes back). Every worker accepts on it (a dup each) and
 * the gateway opens no listener of its own: a listener of its own would
 * die with it, and Linux resets the connections queued on a closing
 * SO_REUSEPORT socket rather than move them to a sibling. Workers then
 * share one accept queue instead of one each; accepts are rare next to
 * keep-alive requests. Used only when it is a listening TCP socket on
 * exactly the configured address; anything else is ignored (and the
 * variable is consumed either way, so nothing below inherits it). */
static int inherited_listener(const sock_addr *want)
{
    const char *v = getenv("HSCALE_GATEWAY_LISTEN_FD");
    if (!v || !*v)
        return -1;
    char val[24], *end;
    snprintf(val, sizeof val, "%s", v);
    unsetenv("HSCALE_GATEWAY_LISTEN_FD");
    long fd = strtol(val, &end, 10);
    int acc = 0;
    socklen_t len = sizeof acc;
    sock_addr have;
    if (*end || fd < 3 || fd > 65535
        || getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 || !acc
        || sock_local_addr((int)fd, &have) < 0 || !sock_addr_equal(&have, want)) {
        log_warn("HSCALE_GATEWAY_LISTEN_FD=%s is not a listener on the configured address: ignored", val);
        return -1;
    }
    int fl = fcntl((int)fd, F_GETFL);
    if (fl < 0 || fcntl((int)fd, F_SETFL, fl | O_NONBLOCK) < 0
        || fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0)
        return -1;
    log_info("accepting on the listener handed down by the parent (fd %ld)", fd);
    return (int)fd;
}

int gw_workers_start(gw_rt *rt, unsigned n, char *err, size_t errlen)
{
    rt->workers = calloc(n, sizeof *rt->workers);
    if (!rt->workers) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rt->nworkers = n;
    int rc = 0;
    sock_listen_opts lo = { .backlog = 4096, .reuseport = true };
    /* The inherited socket is the plain listener's, or with tls_only the
     * TLS listener's (`hscale up --tls`). */
    int inherited = rt->plain_on ? inherited_listener(&rt->listen)
                    : rt->tls ? inherited_listener(&rt->tls_listen) : -1;
    for (unsigned i = 0; i < n; i++)      /* an early failure closes only what opened */
        rt->workers[i].lfd = rt->workers[i].tls_lfd = rt->workers[i].redir_lfd = -1;
    for (unsigned i = 0; i < n; i++) {
        gw_worker *w = &rt->workers[i];
        w->rt = rt;
        w->id = i;
        w->lfd = w->tls_lfd = w->redir_lfd = -1;
        w->rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)(i + 1) * 0xBF58476D1CE4E5B9ull) ^ ev_wall_us();
        w->free_bufs = calloc(GW_FREE_BUFS, sizeof *w->free_bufs);
        ev_timer_init(&w->qtimer, queue_tick, w);
        ev_timer_init(&w->accept_more, accept_resume, w);
        ev_timer_init(&w->gc, gc_tick, w);
        w->loop = ev_loop_new();
        if (!w->loop || !w->free_bufs) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        if (!rt->plain_on)
            w->lfd = -1;
        else if (inherited >= 0)
            w->lfd = i == 0 ? inherited : fcntl(inherited, F_DUPFD_CLOEXEC, 3);
        else
            w->lfd = sock_listen(&rt->listen, &lo, err, errlen);
        if (rt->plain_on && w->lfd < 0) {
            if (inherited >= 0)
                snprintf(err, errlen, "dup of the inherited listener: %s", strerror(errno));
            rc = -1;
            break;
        }
        if (w->lfd >= 0 && i == 0 && sock_addr_port(&rt->listen) == 0)
            sock_local_addr(w->lfd, &rt->listen);   /* the others share the port */
        const gw_pool_cfg *p0 = rt->cfg.npools ? &rt->cfg.pools[0] : NULL;
        w->idle = hc_pool_new(w->loop, p0 ? (unsigned)p0->max_idle : 64,
                              p0 ? p0->idle_timeout_us : 0);
        if (w->idle)
            hc_pool_set_closer(w->idle, gw_utls_idle_close);   /* idle https connections */
        if (!w->idle || (w->lfd >= 0 && ev_io_add(w->loop, w->lfd, EV_READ, accept_io, w) < 0)) {
            snprintf(err, errlen, "cannot register the listener");
            rc = -1;
            break;
        }
        if (rt->tls && !rt->plain_on && inherited >= 0) {
            w->tls_lfd = i == 0 ? inherited : fcntl(inherited, F_DUPFD_CLOEXEC, 3);
            if (w->tls_lfd < 0 || ev_io_add(w->loop, w->tls_lfd, EV_READ, accept_io, w) < 0) {
                snprintf(err, errlen, "dup of the inherited listener: %s", strerror(errno));
                rc = -1;
                break;
            }
        } else if ((rt->tls
                    && open_extra(w, &rt->tls_listen, &w->tls_lfd, "tls_listen", true, err, errlen) < 0)
                   || (rt->redir_on && open_extra(w, &rt->redir_listen, &w->redir_lfd,
                                                  "redirect_listen", false, err, errlen) < 0)) {
            rc = -1;
            break;
        }
        const int lfds[GW_NLISTENERS] = { [GW_LST_PLAIN] = w->lfd, [GW_LST_TLS] = w->tls_lfd,
                                          [GW_LST_REDIRECT] = w->redir_lfd };
        for (int k = 0; k < GW_NLISTENERS; k++)
            if (lfds[k] >= 0)
                sock_listener_info(lfds[k], &w->lst_nodelay[k], &w->lst_deferred[k]);
    }
    if (rc < 0) {
        /* Nothing started yet: undo what was set up. */
        for (unsigned i = 0; i < n; i++) {
            gw_worker *w = &rt->workers[i];
            close_listener(w);
            hc_pool_free(w->idle);
            free(w->free_bufs);
            if (w->loop)
                ev_loop_free(w->loop);
        }
        free(rt->workers);
        rt->workers = NULL;
        rt->nworkers = 0;
        return -1;
    }
    for (unsigned i = 0; i < n; i++)
        if (pthread_create(&rt->workers[i].th, NULL, worker_main, &rt->workers[i]) != 0) {
            /* Threads already running share state with this one: there is
             * no safe partial start, and this only happens out of memory. */
            log_error("cannot start worker thread %u", i);
            abort();
        }
    return 0;
}

static void drain_task(ev_loop *loop, void *arg)
{
    gw_worker *w = arg;
    (void)loop;
    (void)w;    /* the loop top sees rt->stopping; this only wakes it */
}

void gw_workers_drain(gw_rt *rt, uint64_t grace_us)
{
    for (unsigned i = 0; i < rt->nworkers; i++)
        rt->workers[i].drain_deadline_us = ev_monotonic_us() + grace_us;
    atomic_store_explicit(&rt->stopping, true, memory_order_release);
    for (unsigned i = 0; i < rt->nworkers; i++)
        ev_post(rt->workers[i].loop, drain_task, &rt->workers[i]);
}

void gw_workers_join(gw_rt *rt)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        gw_worker *w = &rt->workers[i];
        pthread_join(w->th, NULL);
        close_listener(w);
        hc_pool_free(w->idle);
        for (size_t k = 0; k < w->nheld; k++)
            gw_member_unref(w->held[k]);
        free(w->held);
        free(w->pend);
        slabs_free(w);
        while (w->free_ex) {
            gw_exchange *e = w->free_ex;
            w->free_ex = e->next_free;
            free(e);
        }
        for (unsigned k = 0; k < w->nfree_bufs; k++)
            free(w->free_bufs[k]);
        free(w->free_bufs);
        free(w->cursors);
        free(w->rs_cache);
        free(w->ps_cache);
        ev_loop_free(w->loop);
    }
    free(rt->workers);
    rt->workers = NULL;
    rt->nworkers = 0;
}
