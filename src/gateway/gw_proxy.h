/* gw_proxy.h -- the data plane's runtime: the process-wide gateway state
 * (gw_rt), one worker per thread (gw_worker), client connections (gw_conn)
 * and the exchange of one request with a backend (gw_exchange).
 * Internal to src/gateway.
 *
 * Ownership and lifetimes:
 *  - gw_rt lives for the whole run; workers, the admin listener, the health
 *    thread and the main thread share it. Configuration changes go through
 *    gw_rt_publish (one writer at a time, under rt->edit_lock).
 *  - A worker reads the current snapshot at most once per event and never
 *    keeps the pointer across loop iterations (see gw_state.h); what a
 *    request needs later (its member, its metric series, flags) is copied
 *    or pinned into the exchange.
 *  - An idle client connection holds no buffers and no exchange: both are
 *    taken from the worker's free lists when bytes arrive and returned when
 *    the connection goes quiet, so 10,000 idle keep-alive clients cost a
 *    few hundred bytes each. */
#ifndef HSCALE_GATEWAY_GW_PROXY_H
#define HSCALE_GATEWAY_GW_PROXY_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/buf.h"
#include "core/ev.h"
#include "core/metrics.h"
#include "gateway/gw_state.h"
#include "http/client.h"
#include "http/parser.h"

typedef struct gw_rt     gw_rt;
typedef struct gw_worker gw_worker;
typedef struct gw_conn   gw_conn;

/* Metric series of one (route, pool) pair, created when a snapshot is
 * built and kept by the registry for the life of the process. */
typedef struct gw_route_series {
    metric_series *req[6];      /* by status class: [0] failed, [1..5] 1xx..5xx */
    metric_series *dur;         /* whole request, seconds */
} gw_route_series;

typedef struct gw_pool_series {
    metric_series *upstream;    /* upstream response head latency */
    metric_series *retries;
    metric_series *ejections;
    metric_series *queued;      /* requests refused because the pool was full */
    metric_series *tls_hs[3];   /* https pools: handshakes full, resumed, failed */
} gw_pool_series;

/* A backend being drained through the API: removed from the configuration
 * once nothing is in flight to it or the deadline passes. */
typedef struct gw_drain {
    char      pool[GW_NAME_MAX];
    char      id[GW_NAME_MAX];
    gw_member *m;                     /* pinned */
    uint64_t  deadline_us;
    struct gw_drain *next;
} gw_drain;

typedef struct http_server http_server;
typedef struct gw_cstore gw_cstore;

typedef struct gw_rt {
    gw_rcu            rcu;
    pthread_mutex_t   edit_lock;      /* serialises publishers */
    gw_config         cfg;            /* the configuration of the current snapshot */
    char             *config_path;    /* for SIGHUP; NULL when flags only */
    gw_rl            *rl;
    gw_retry_budget   budget;
    http_limits       limits;
    metrics_registry *reg;
    metric_family    *f_req, *f_dur, *f_up, *f_retry, *f_eject, *f_queued, *f_rl, *f_utls;
    metric_series    *m_clients, *m_rl_total, *m_queued;
    metric_series    *m_batches, *m_callbacks, *m_yields;   /* worker loop (gw_worker.c) */
    metric_series    *m_tunnels, *m_tun_up, *m_tun_down, *m_tun_dur;   /* gw_tunnel.c */
    _Atomic uint32_t  tunnels;        /* tunnel slots taken (max_tunnels), all workers */
    _Atomic uint32_t  clients;        /* open client connections, all workers */
    _Atomic bool      stopping;
    gw_worker        *workers;
    unsigned          nworkers;
    sock_addr         listen;
    bool              plain_on;       /* a plain listener on `listen` (not tls_only) */
    struct gw_tls    *tls;            /* TLS termination (gw_tls.c); NULL: no tls_listen */
    sock_addr         tls_listen;
    sock_addr         redir_listen;   /* redirect_listen; port 0 until bound when unset */
    bool              redir_on;
    gw_drain         *drains;         /* under edit_lock */
    http_server      *admin;
    gw_cstore        *cache;          /* the shared HTTP cache (gw_cache.c); NULL: no route caches */
    pthread_t         health_th;
    _Atomic bool      health_stop;
    bool              health_started;
    uint64_t          started_us;
} gw_rt;

/* Content codings the gateway makes (gw_compress.c). */
enum { GW_CODING_NONE, GW_CODING_GZIP, GW_CODING_BR };

/* One request's lifecycle in the gateway, from the first byte of its head
 * to the end of its response. The phase says what the exchange holds and
 * which timer runs; changed only through gw_ex_set_phase, which keeps the
 * worker's per-phase counts (admin /health "exchanges_by_phase",
 * hscale_gateway_exchanges_by_phase). Facts about the byte streams
 * (up_eof, up_close, req_body_done, sent_to_client) stay flags: any phase
 * can meet them.
 *
 *   HEAD --parsed--> ROUTE --member--> CONNECTING --connected--> REQUEST
 *                      |  \--all at max_conn--> QUEUED --slot--> ROUTE
 *                      |         (idle connection reused: straight to REQUEST)
 *   REQUEST --head relayed--> RESPONSE --body done--> freed (next request)
 *      |  \--101 relayed--> TUNNEL --either EOF, idle, drain--> freed
 *      \--failure, retry allowed--> ROUTE
 *   A local answer (404, 429, 502, 503, 504) frees it from any phase. */
typedef enum gw_ex_phase {
    /* Bytes of a request head, not yet whole, in c->in. Nothing routed: no
     * member, no upstream; the connection's header timer runs. */
    GX_HEAD,
    /* Head parsed (head_len set): route, rate limit, pool and member being
     * chosen. No member pinned, no upstream, no timer. Transient: it lasts
     * one call (gw_exchange_start, or a retry after a failed attempt). */
    GX_ROUTE,
    /* Every member of the pool is at max_conn: linked in the worker's
     * queue (qprev/qnext); ex->timer is the queue deadline. No member, no
     * upstream. */
    GX_QUEUED,
    /* Parked on another request's fetch of the same cache key (gw_cache.c):
     * ex->cx->wait is linked on the key's object in the store and
     * ex->cx->timer is the lock_timeout. No member, no upstream. Woken
     * through this worker's loop when the fetch ends: served from the cache
     * or routed (ROUTE). */
    GX_CACHE_WAIT,
    /* ex->m pinned and counted in m->inflight; ex->ufd is connecting (and,
     * for an https pool, then handshaking: ex->utls); uout holds the
     * rewritten head; ex->timer is the connect timeout. */
    GX_CONNECTING,
    /* ex->ufd connected (fresh or from the idle pool): the request goes up
     * (uout, then the body as it comes), the response head is not whole yet
     * (interim 1xx heads are passed on); ex->timer is the per-try timeout
     * (adaptive: keep_waiting). A failure here may be retried. */
    GX_REQUEST,
    /* The response head went to the client (sent_to_client): its body
     * flows uin -> transform chain -> c->out, bounded by GW_OUT_HIGH;
     * ex->timer guards a stalled body. Never retried. */
    GX_RESPONSE,
    /* A 101 was relayed: ex->ufd and c->fd are two ends of one byte
     * stream; ex->m counts it in m->tunnels, not inflight; ex->timer is
     * the tunnel idle timer. Ends only with the connection. */
    GX_TUNNEL,
    GX_NPHASES
} gw_ex_phase;

const char *gw_ex_phase_str(gw_ex_phase p);

/* The TLS transport under an exchange's upstream socket (https pools,
 * gw_upstream_tls.c). Orthogonal to the phase: a connection taken from the
 * idle pool is OPEN at once; a fresh one goes CONNECT -> HANDSHAKE -> OPEN
 * while the exchange is GX_CONNECTING. */
typedef enum gw_utls_state {
    GW_UTLS_NONE,       /* plain TCP, or no upstream socket: ex->ussl is NULL */
    GW_UTLS_CONNECT,    /* ex->ussl made, the TCP connect still under way */
    GW_UTLS_HANDSHAKE,  /* TCP up, SSL_connect under way */
    GW_UTLS_OPEN,       /* every upstream byte goes through SSL_read/SSL_write */
} gw_utls_state;

const char *gw_utls_state_str(gw_utls_state s);

/* Taken from the worker's free list per request (gw_conn.c). */
typedef struct gw_exchange {
    gw_conn     *c;
    uint8_t      phase;          /* gw_ex_phase; set by gw_ex_set_phase */
    uint32_t     head_len;       /* request head bytes at the front of c->in */
    uint64_t     t_start_us;
    /* routing results, valid across iterations */
    gw_member   *m;              /* pinned (gw_member_ref) while set */
    uint64_t     gen;            /* snapshot the pool index belongs to */
    int          pool;
    char         pool_name[GW_NAME_MAX];
    gw_route_series *rs;         /* registry-owned */
    gw_pool_series  *ps;
    bool         security_headers;
    bool         retryable;      /* method and body allow another attempt */
    bool         set_sticky;     /* add the sticky cookie to the response */
    bool         counted;        /* retry budget request_begin done */
    bool         in_retry;       /* holds a retry budget slot */
    bool         upgrade;        /* a protocol switch was asked for (gw_tunnel_wanted) */
    bool         tunnel_slot;    /* holds one of rt->tunnels (max_tunnels) */
    bool         tun_shut;       /* client EOF passed on: upstream write side shut */
    uint64_t     tun_start_us;   /* 101 relayed */
    uint64_t     tun_last_us;    /* last byte either way (idle timeout) */
    /* response transforms (gw_compress.c) */
    uint8_t      ae;             /* best coding the request accepts (GW_CODING_*) */
    bool         vary;           /* the response varies by Accept-Encoding */
    struct gw_xf *xf;            /* compressing this response; NULL: relayed as is */
    struct gw_cx *cx;            /* the cache's state of this request (gw_cache.c); NULL: none */
    uint8_t      attempts;
    uint8_t      last_fail;      /* 1 + gw_fail_kind of the last failed attempt; 0: none */
    bool         hsts_sub;       /* route's hsts_include_subdomains */
    uint32_t     hsts_max_age;   /* route's hsts_max_age in seconds (0: none) */
    gw_member   *tried[4];       /* not pinned: compared by address only */
    /* request body, client -> upstream */
    uint64_t     req_body_left;  /* Content-Length bytes not yet forwarded */
    http_chunked req_chunk;
    bool         req_chunked;
    bool         req_body_done;
    uint64_t     req_body_fwd;   /* body bytes forwarded from c->in */
    /* upstream connection of this attempt */
    int          ufd;
    struct ssl_st *ussl;         /* https pool: the TLS connection over ufd, else NULL */
    uint8_t      utls;           /* gw_utls_state */
    bool         reused;         /* came from the idle pool */
    bool         resp_started;   /* any response byte received this attempt */
    bool         sent_to_client; /* any response byte queued to the client */
    bool         up_close;       /* upstream connection cannot be reused */
    bool         up_eof;
    bool         rx_got;         /* the batch read (rx_seq) brought bytes into uin */
    bool         rx_more;        /* ... and filled the room: the socket may hold more */
    uint32_t     rx_seq;         /* w->io_seq of the batch that read this socket ahead */
    uint8_t      resp_body;      /* http_body_kind of the response */
    uint16_t     status;
    uint64_t     t_try_us;       /* attempt start */
    uint64_t     try_us;         /* this attempt's wait for the head (gw_try_timeout) */
    bool         try_adaptive;   /* try_us came from the pool's p99 */
    uint64_t     resp_body_left;
    http_chunked resp_chunk;
    buf          uout;           /* request bytes to the upstream */
    buf          uin;            /* response bytes from the upstream */
    ev_timer     timer;          /* by phase: queue deadline / connect / per-try / stall / idle */
    uint64_t     queue_until_us; /* set when first queued; re-queuing keeps it */
    struct gw_exchange *qprev, *qnext;
    struct gw_exchange *next_free;
    /* the parsed heads, last: they are large and reset by their parsers */
    http_request  req;
    http_response resp;
} gw_exchange;

/* The client connection's lifecycle (the model is HAProxy's mux_h1
 * connection states). One exchange at a time; the phase says who owns the
 * bytes of c->in and c->out and which timer runs. Changed only through
 * gw_conn_set_phase, which keeps the worker's per-phase counts (admin
 * /health, hscale_gateway_client_connections_by_phase).
 *
 *   WAIT --head parsed--> PROXY --response queued--> WAIT (keep-alive)
 *                           |  \--101 relayed--> TUNNEL --either EOF,
 *                           |                             idle, drain--> CLOSING
 *                           \--close_after / error--> CLOSING --out written--> freed */
typedef enum gw_conn_phase {
    /* Between requests or reading a head. c->ex is NULL or holds no
     * upstream; c->in holds at most the start of the next head; c->timer
     * is the idle timer (c->in empty) or the header timer (in_header). */
    GC_WAIT,
    /* A parsed head is with c->ex: routing, queued, on a backend, or its
     * response streaming. c->in past ex->head_len is this request's body
     * (then pipelined requests, untouched until the response is queued);
     * c->timer is off, ex->timer runs. */
    GC_PROXY,
    /* After a relayed 101: c->fd and ex->ufd are the two ends of one byte
     * stream, no HTTP framing either way. c->in goes to ex->uout, ex->uin
     * to c->out, each bounded (a full side stops the other being read);
     * ex->m is counted in m->tunnels (not inflight); ex->timer is the
     * tunnel idle timer; close_after is set, so it ends in CLOSING. */
    GC_TUNNEL,
    /* The last bytes are queued in c->out; nothing more is parsed or
     * forwarded; freed once c->out is written (or the peer is gone). */
    GC_CLOSING,
    GC_NPHASES
} gw_conn_phase;

const char *gw_conn_phase_str(gw_conn_phase p);

/* Which listener accepted a client connection. */
typedef enum gw_listener_kind {
    GW_LST_PLAIN,        /* HTTP on `listen` */
    GW_LST_TLS,          /* HTTPS on tls_listen: c->ssl set, c->tls its transport state */
    GW_LST_REDIRECT,     /* HTTP on redirect_listen: every request answered 301/308 */
    GW_NLISTENERS
} gw_listener_kind;

const char *gw_listener_kind_str(gw_listener_kind k);

struct gw_conn {
    gw_worker   *w;
    int          fd;
    uint8_t      state;          /* gw_conn_phase; set by gw_conn_set_phase */
    bool         peer_eof;
    bool         close_after;    /* answer the current request, then close */
    bool         in_header;      /* header timer (not idle timer) armed */
    bool         backlog;        /* stopped reading upstream: client output full */
    bool         dead;           /* socket failed: close at the top of the stack */
    bool         read_blocked;   /* stopped reading with bytes maybe left in the socket */
    bool         rx_more;        /* the batch read (rx_seq) filled the room */
    uint32_t     rx_seq;         /* w->io_seq of the batch that read this socket ahead */
    uint8_t      ip_len;
    char         ip[46];         /* peer address text, for X-Forwarded-For */
    unsigned char ip_raw[16];    /* peer address bytes, for rate limits and hashing */
    uint8_t      ip_raw_len;
    uint8_t      lst;            /* gw_listener_kind */
    uint8_t      tls;            /* gw_tls_state while ssl is set */
    /* The socket under SSL was found empty (a short read or EAGAIN);
     * cleared by the next read edge. Until then gw_tls_bio.c answers a
     * read with "retry" and no system call. */
    bool         tls_drained;
    bool         tls_read_wants_write;   /* SSL_read needs the socket writable (a TLS 1.3 KeyUpdate answer) */
    bool         tls_out_blocked;        /* tls_out met EAGAIN: EV_WRITE pushes it, close waits */
    struct ssl_st *ssl;          /* TLS transport (gw_tls_conn.c); NULL: plain */
    buf          tls_out;        /* sealed records not yet on the socket (gw_tls_bio.c) */
    buf          in;             /* client bytes */
    buf          out;            /* bytes to the client */
    ev_timer     timer;          /* header / idle */
    gw_exchange *ex;
    unsigned     pend_idx;       /* 1 + slot in w->pend while output waits; 0 if none */
    gw_conn     *prev, *next;    /* worker's connection list */
    /* A background refresh of the cache (gw_cache_refresh): no socket
     * (fd -1), output discarded, one request then closed. */
    struct gw_cghost *ghost;
};

struct gw_worker {
    gw_rt        *rt;
    unsigned      id;
    pthread_t     th;
    ev_loop      *loop;
    int           lfd;           /* plain listener, -1: none */
    int           tls_lfd;       /* tls_listen, -1: none */
    int           redir_lfd;     /* redirect_listen, -1: none */
    /* Per listener kind, read once (sock_listener_info): accepted sockets
     * inherit TCP_NODELAY (no setsockopt per connection), and arrive with
     * their first bytes (TCP_DEFER_ACCEPT: a TLS handshake starts at once). */
    bool          lst_nodelay[GW_NLISTENERS];
    bool          lst_deferred[GW_NLISTENERS];
    hc_pool      *idle;
    uint64_t      gen;           /* snapshot generation the cursors belong to */
    gw_lb_cursor *cursors;       /* one per pool of that generation */
    size_t        ncursors;
    gw_route_series **rs_cache;  /* [route * npools + pool] of that generation */
    gw_pool_series  **ps_cache;  /* [pool] */
    size_t        nroutes_c, npools_c;
    uint64_t      rng;
    uint64_t      reqid;         /* X-Request-Id counter */
    gw_conn      *conns;
    unsigned      nconns;
    gw_exchange  *free_ex;
    unsigned      nfree_ex;
    gw_conn      *free_conns;    /* slab-allocated (gw_conn_alloc) */
    struct gw_slab *slabs;
    ev_timer      gc;            /* returns unused cached memory (gc_tick) */
    unsigned      low_free_bufs, low_free_ex;   /* cache low-water marks this interval */
    bool          gc_busy;       /* the request path allocated this interval */
    bool          gc_freed;      /* memory went back to malloc since the last trim */
    char        **free_bufs;     /* recycled buffer memory (GW_BUF_SIZE each) */
    unsigned      nfree_bufs;
    gw_exchange  *qhead, *qtail; /* requests waiting for a backend slot (FIFO) */
    unsigned      nqueued;
    ev_timer      qtimer;        /* re-tries the queue: slots free up on any worker */
    ev_timer      accept_more;   /* accepting resumes next iteration after a full burst */
    gw_member   **held;          /* members whose idle connections sit in `idle` */
    size_t        nheld, capheld;
    struct gw_io *io;            /* batched socket I/O (gw_io.c); NULL: plain calls */
    uint32_t      io_seq;        /* current batch; a read-ahead result is valid for it */
    /* Writes wait for the end of the loop iteration (see gw_conn_defer). */
    bool          defer;
    gw_conn     **pend;          /* connections with output waiting; NULL = closed since */
    unsigned      npend, cappend;
    bool          yield_cpu;     /* yield_after_batch of the current snapshot */
    bool          draining;      /* SIGTERM: listener closed */
    _Atomic uint32_t nphase[GC_NPHASES];   /* open connections by phase (read by the admin thread) */
    _Atomic uint32_t nxphase[GX_NPHASES];  /* live exchanges by phase (likewise) */
    struct gw_cx *free_cx;       /* cache request states for reuse (gw_cache.c) */
    unsigned      nfree_cx;
    struct gw_xf *free_xf;       /* compressor states for reuse (gw_compress.c) */
    unsigned      nfree_xf, low_free_xf;   /* low_free_xf: low-water mark this gc interval */
    bool          stopping_xf;
    struct libdeflate_compressor *ldc;   /* whole-body gzip, at ldc_level */
    int           ldc_level;
    uint64_t      drain_deadline_us;
};

#define GW_BUF_SIZE   16384u
#define GW_FREE_EXCHANGES 256u          /* exchanges a worker keeps for reuse */
#define GW_OUT_HIGH   (256u * 1024u)   /* stop reading the upstream past this */
#define GW_BODY_RETRY_MAX (64u * 1024u) /* larger request bodies stream and are not retried */

/* gw_worker.c */
int   gw_workers_start(gw_rt *rt, unsigned n, char *err, size_t errlen);
/* SIGTERM: stop accepting, finish what is in flight, exit by the deadline. */
void  gw_workers_drain(gw_rt *rt, uint64_t grace_us);
void  gw_workers_join(gw_rt *rt);
/* The cursor for pool `pi` of the current snapshot (resets on a new gen). */
gw_lb_cursor *gw_worker_cursor(gw_worker *w, const gw_snap *s, int pi);
gw_route_series *gw_worker_route_series(gw_worker *w, const gw_snap *s, int route, int pool);
gw_pool_series  *gw_worker_pool_series(gw_worker *w, const gw_snap *s, int pool);
uint64_t gw_worker_rand(gw_worker *w);
/* Client connection memory from the worker's slabs. */
gw_conn *gw_conn_alloc(gw_worker *w);
void  gw_conn_free(gw_worker *w, gw_conn *c);
/* Buffer memory from the worker's cache; gw_buf_release gives it back. */
void  gw_buf_acquire(gw_worker *w, buf *b);
void  gw_buf_release(gw_worker *w, buf *b);
/* The idle pool key for a member; pins the member while idle sockets of it
 * may exist in this worker. */
void  gw_worker_hold(gw_worker *w, gw_member *m);

/* gw_conn.c */
void  gw_conn_set_phase(gw_conn *c, gw_conn_phase p);
void  gw_ex_set_phase(gw_exchange *ex, gw_ex_phase p);
/* Live exchanges in phase p, all workers (any thread). */
uint32_t gw_rt_ex_phase_count(gw_rt *rt, gw_ex_phase p);
/* Open client connections in phase p, all workers (any thread). */
uint32_t gw_rt_phase_count(gw_rt *rt, gw_conn_phase p);
void  gw_conn_accepted(gw_worker *w, int fd, const sock_addr *peer, gw_listener_kind kind);
/* A connection without a socket that runs `head` (a GET) once and discards
 * the answer (gw_cache_refresh); processed at the loop's next iteration. */
gw_conn *gw_conn_ghost(gw_worker *w, const char *head, size_t len, const gw_conn *like,
                       struct gw_cghost *g);
/* Frees the connection. Only the top of an event (conn or upstream
 * callback, timer) closes: everything below sets c->dead or GC_CLOSING and
 * returns, so no frame ever holds a freed connection. */
void  gw_conn_close(gw_conn *c);
/* Queues a whole local answer (error or API-free reply) on the client. */
void  gw_conn_reply(gw_conn *c, int status, const char *extra_headers, const char *json);
/* Runs the connection's state machine after any change; may free c, so
 * it is the last thing an event handler does with it. */
void  gw_conn_process(gw_conn *c);
/* Writes queued output. -1 (and c->dead) when the client is gone. */
int   gw_conn_flush(gw_conn *c);
/* TLS: c->out through SSL_write into the record queue c->tls_out
 * (gw_tls_bio.c), then close_notify when the connection closes after it;
 * nothing is pushed (gw_conn_flush or gw_io.c's batch does). -1 (and
 * c->dead) when the connection failed; c->out keeps what did not fit. */
int   gw_conn_tls_seal(gw_conn *c);
/* While the worker dispatches a batch of events, a write is held back and
 * c is listed instead: true when it was. */
bool  gw_conn_defer(gw_conn *c);
/* After the batch: writes everything held back (upstream requests first,
 * then client responses) and runs each connection's state machine. */
void  gw_worker_flush(gw_worker *w);
/* The exchange finished (response fully queued, or failed after bytes
 * went out): account it and move to the next request. */
void  gw_conn_request_done(gw_conn *c, int status_class);
/* The client socket's event callback (gw_io.c tells sockets apart by it). */
void  gw_conn_io(ev_loop *loop, int fd, unsigned events, void *arg);
/* Read-ahead for gw_io.c: where the next read of c would land (NULL when
 * conn_read would not read now), then what it brought (bytes, or -errno). */
char *gw_conn_rx_room(gw_conn *c, size_t *room);
void  gw_conn_rx_done(gw_conn *c, int res, size_t room);

/* gw_upstream.c */
/* Routes, picks and starts the first attempt for c->ex. Answers locally
 * (404, 429, 503) when it cannot. */
void  gw_exchange_start(gw_conn *c);
/* Past routing and the cache: takes the retry budget and starts the first
 * attempt (also for a request the cache parked, once it resumes). */
void  gw_exchange_forward(gw_exchange *ex);
/* More request body bytes may be in c->in. */
void  gw_exchange_pump_body(gw_exchange *ex);
/* Writes the request bytes waiting for the upstream. */
void  gw_exchange_flush(gw_exchange *ex);
/* Client output drained below the mark: resume reading the upstream. */
void  gw_exchange_resume(gw_exchange *ex);
/* Offers queued requests a backend again (worker queue timer). */
void  gw_queue_dispatch(gw_worker *w);
/* Drops the upstream side and everything the exchange holds (member,
 * retry budget, queue place); idempotent. */
void  gw_exchange_abort(gw_exchange *ex);
/* The upstream socket's event callback. */
void  gw_exchange_io(ev_loop *loop, int fd, unsigned events, void *arg);
/* Shared with gw_response.c: how an attempt failed, and what ends it. */
enum gw_fail_kind { GW_FAIL_CONNECT, GW_FAIL_RESET, GW_FAIL_TIMEOUT, GW_FAIL_BAD_RESPONSE,
                    GW_FAIL_TLS };
/* Retries on another member when allowed, else answers 502/504. */
void  gw_attempt_failed(gw_exchange *ex, enum gw_fail_kind kind);
/* The passive health signal for the attempt's member. */
void  gw_report_outcome(gw_exchange *ex, bool ok);
void  gw_close_upstream(gw_exchange *ex);
void  gw_release_member(gw_exchange *ex);
/* The exchange's pool in the current snapshot (NULL when it is gone). */
gw_pool *gw_exchange_pool(gw_exchange *ex, const gw_snap *s, const gw_pool_cfg **pc);
/* (Re)arms the attempt's timer, bounded by the request's overall deadline. */
void  gw_arm_try_timer(gw_exchange *ex, uint64_t after_us);

/* gw_response.c */
/* Parses and relays what ex->uin holds; ends the exchange when complete. */
void  gw_response_process(gw_exchange *ex);
/* Reads what the upstream has (unless the client is backed up) and relays it. */
void  gw_response_read(gw_exchange *ex);
/* Read-ahead for gw_io.c, as for the client side: where a read of the
 * upstream would land, then what it brought (bytes, or -errno). */
char *gw_exchange_rx_room(gw_exchange *ex, size_t *room);
void  gw_exchange_rx_done(gw_exchange *ex, int res, size_t room);
/* Write-ahead for gw_io.c: what is waiting to be sent to the upstream,
 * and how much of it went. */
const char *gw_exchange_tx_pending(gw_exchange *ex, size_t *len);
void  gw_exchange_tx_done(gw_exchange *ex, size_t sent);

/* gw_io.c: each event batch's socket reads, and each flush's writes, in one
 * io_uring call instead of one system call per socket. */
/* Sets w->io when enabled and the kernel allows it; w->io stays NULL (plain
 * read and write) otherwise. */
void  gw_io_init(gw_worker *w, bool enabled);
void  gw_io_free(gw_worker *w);
/* Sends everything held back for the listed connections in one call; what
 * a socket did not take is left for the ordinary write path. */
void  gw_io_write_pending(gw_worker *w);

/* gw_pick.c */
/* The index of the member of p for ex's next attempt; -1 when none can
 * take it, -2 when the candidates are at max_conn (queue the request). */
int   gw_pick_member(gw_exchange *ex, gw_pool *p, const gw_pool_cfg *pc, uint64_t now);
/* How long ex's attempt may wait for the response head: for a retryable
 * request, try_timeout_factor x this worker's p99 of the pool (floor
 * try_timeout_min), sets ex->try_adaptive; else, or while the p99 is
 * unknown, try_timeout. */
uint64_t gw_try_timeout(gw_exchange *ex, const gw_pool *p);

/* gw_redirect.c: the redirect listener's answer (redirect_status to the
 * same target on tls_listen); ends the request like a local reply. */
void  gw_redirect_reply(gw_exchange *ex);

/* gw_tunnel.c: Upgrade (WebSocket) requests and the tunnel after a 101. */
/* The request asks for a protocol switch the gateway relays: GET, no body,
 * HTTP/1.1, Upgrade present and named in Connection. */
bool  gw_tunnel_wanted(const gw_exchange *ex, const char *head);
/* Takes a tunnel slot (max_tunnels); false when they are all taken. */
bool  gw_tunnel_reserve(gw_exchange *ex);
/* The backend answered 101 and its head is queued: c becomes a tunnel. */
void  gw_tunnel_begin(gw_exchange *ex);
/* Client bytes to the upstream (bounded); passes the client's EOF on. */
void  gw_tunnel_pump(gw_exchange *ex);
/* Upstream bytes were relayed to the client: count them. */
void  gw_tunnel_down(gw_exchange *ex, size_t n);
/* The tunnel timer fired: close when idle for tunnel_idle_timeout. */
void  gw_tunnel_timeout(gw_exchange *ex);
/* Gives back the slot, the member's count and the gauges; idempotent. */
void  gw_tunnel_end(gw_exchange *ex);

/* gw_compress.c: the response transform chain (compression). */
/* The best coding an Accept-Encoding value allows (q-values; ties: br). */
uint8_t gw_compress_accepts(const char *v, size_t n);
/* At the response head: decides whether ex's body is compressed (sets
 * ex->xf, true) and whether it varies by Accept-Encoding (ex->vary). */
bool  gw_xform_begin(gw_exchange *ex, const char *head);
/* Whole mode: the head goes to gw_xform_head_buf, without Content-Length
 * and its final CRLF; gw_xform_end writes head, length and body. */
bool  gw_xform_whole(const gw_exchange *ex);
buf  *gw_xform_head_buf(gw_exchange *ex);
const char *gw_xform_coding_str(const gw_exchange *ex);
/* Body bytes in order, then the end; -1 on an encoder failure. */
int   gw_xform_body(gw_exchange *ex, const char *p, size_t n);
int   gw_xform_end(gw_exchange *ex);
/* The coding of the active transform (GW_CODING_NONE: none). */
uint8_t gw_xform_coding(const gw_exchange *ex);
/* Whole mode, right after gw_xform_end: the compressed body it wrote (the
 * tail of c->out), for the cache to keep; NULL otherwise. */
const char *gw_xform_output(const gw_exchange *ex, size_t *n);
/* Whole mode: ends with a body compressed before (a cached rendition)
 * instead of what gw_xform_body gathered. */
int   gw_xform_end_given(gw_exchange *ex, const char *z, size_t n);
void  gw_xform_free(gw_worker *w, gw_exchange *ex);
void  gw_xform_worker_free(gw_worker *w);
/* gc_tick: gives back a compressor state unused for a whole interval. */
void  gw_xform_gc(gw_worker *w);

/* gw_cache.c: the shared HTTP cache (RFC 9111) on the request path. */
typedef enum { GW_CACHE_FORWARD, GW_CACHE_DONE, GW_CACHE_PARKED } gw_cache_step;
/* After routing: answers from the cache (DONE, the request is ended),
 * parks the request behind another one's fetch (PARKED, GX_CACHE_WAIT), or
 * lets it go to the backend (FORWARD), set up to fill or revalidate. */
gw_cache_step gw_cache_request(gw_exchange *ex, const gw_route_cache_cfg *rc);
/* Request head rewriting for a fill: drops the client's If-None-Match and
 * If-Modified-Since, adds the stored response's validators. */
bool  gw_cache_skip_request_header(const gw_exchange *ex, const char *head, const http_header *h);
void  gw_cache_request_headers(gw_exchange *ex, buf *out);
/* Response head: Age and Cache-Status (RFC 9211). */
void  gw_cache_response_headers(gw_exchange *ex, buf *out);
/* The response head came (before it is relayed). TAKEN: the cache answers
 * instead (a 304 that refreshed the stored response, or stale-if-error on
 * a 5xx): the caller drops the backend's response and calls
 * gw_cache_answer. */
typedef enum { GW_CH_RELAY, GW_CH_TAKEN } gw_cache_head;
gw_cache_head gw_cache_on_head(gw_exchange *ex, const char *head, size_t head_len);
bool  gw_cache_answer(gw_exchange *ex);
/* Body bytes (identity, dechunked) and the end: stores a captured response. */
void  gw_cache_on_body(gw_exchange *ex, const char *p, size_t n);
void  gw_cache_on_end(gw_exchange *ex, bool complete);
/* The attempt failed with nothing sent: answers stale-if-error when it may. */
bool  gw_cache_on_fail(gw_exchange *ex);
/* stale-while-revalidate: refreshes v's key in the background (a ghost
 * connection on this worker), unless a fetch of the key is running. */
struct gw_cvar;
void  gw_cache_refresh(gw_exchange *ex, struct gw_cvar *v);
void  gw_cache_exchange_free(gw_exchange *ex);
void  gw_cache_ghost_free(gw_conn *c);
void  gw_cache_worker_free(gw_worker *w);
const char *gw_cache_phase_str(const gw_exchange *ex);

/* gw_rewrite.c */
/* Appends the upstream request head for ex (hop-by-hop removed, forwarding
 * headers set). */
int   gw_rewrite_request(gw_exchange *ex, const char *head, buf *out);
/* Appends the client response head for ex->resp. */
int   gw_rewrite_response(gw_exchange *ex, const char *head, buf *out,
                          const char *sticky_cookie, uint64_t sticky_max_age_us);

/* gw_metrics.c */
void  gw_metrics_init(gw_rt *rt);
gw_route_series *gw_metrics_route(gw_rt *rt, const char *route, const char *pool);
gw_pool_series  *gw_metrics_pool(gw_rt *rt, const char *pool);
/* Renders everything: registry families plus per-backend state. */
void  gw_metrics_render(gw_rt *rt, buf *out);

/* gw_admin.c */
/* Builds and publishes a snapshot of cfg; on success rt->cfg takes over
 * cfg (the caller's copy is moved, not copied). Caller holds
 * rt->edit_lock. */
int   gw_rt_publish(gw_rt *rt, gw_config *cfg, char *err, size_t errlen);
int   gw_admin_start(gw_rt *rt, char *err, size_t errlen);
void  gw_admin_stop(gw_rt *rt);
/* Finishes drains whose backend is idle or out of time (main thread). */
void  gw_admin_tick(gw_rt *rt);

/* gw_upstream_tls.c: https backends. */
/* The pool's client context (CA file, verification, ALPN, session cache);
 * NULL with err naming the key ("pools[i].tls_ca_file: ...") on failure. */
struct gw_utls *gw_utls_new(const gw_pool_cfg *pc, size_t pi, char *err, size_t errlen);
void  gw_utls_free(struct gw_utls *t);
/* A connect to ex->m started on ex->ufd: makes ex->ussl (SNI, name to
 * verify, the member's last session) -> GW_UTLS_CONNECT. -1: no memory. */
int   gw_utls_begin(gw_exchange *ex, const struct gw_utls *t);
/* Drives the handshake: 1 done (OPEN), 0 waiting, -1 failed (counted,
 * the reason logged at most once a second per member). */
int   gw_utls_handshake(gw_exchange *ex);
/* The connect timeout ran out mid-handshake: counted and logged as a
 * failed handshake (the caller fails the attempt). */
void  gw_utls_timed_out(gw_exchange *ex);
/* read(2)/write(2) contracts over ex->ussl (EAGAIN: wait for an edge). */
ssize_t gw_utls_read(gw_exchange *ex, void *p, size_t n);
ssize_t gw_utls_write(gw_exchange *ex, const void *p, size_t n);
/* Ends TLS on the exchange's socket (close_notify when established, never
 * waiting); the fd stays open. -> GW_UTLS_NONE. */
void  gw_utls_close(gw_exchange *ex);
/* A tunnel's client finished sending: close_notify to the backend (TLS's
 * half close), reading on. */
void  gw_utls_shutdown_write(gw_exchange *ex);
/* An idle connection taken from the pool: true when it fits the pool as it
 * is now (TLS iff the pool is https, from the same context). */
bool  gw_utls_idle_fits(const struct gw_utls *t, void *data);
/* hc_pool's closer for idle TLS connections. */
void  gw_utls_idle_close(int fd, void *data);
/* Frees the member's kept session (its last reference went). */
void  gw_utls_member_free(gw_member *m);

/* gw_health_check.c */
int   gw_health_start(gw_rt *rt);
void  gw_health_stop(gw_rt *rt);

#endif
