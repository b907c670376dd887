/* bench_int.h -- internals shared by the bench files only: response framing,
 * connections and workers. Not part of the module's public API (bench.h). */
#ifndef HSCALE_BENCH_BENCH_INT_H
#define HSCALE_BENCH_BENCH_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "bench/bench.h"
#include "core/ev.h"

/* Response framing, in place over the connection's read buffer. Only what a
 * client needs to find the end of a response: the status, Content-Length,
 * chunked coding, and whether the connection closes after it. */
typedef struct bench_resp {
    uint8_t  state;
    bool     close_after;
    int      status;
    uint32_t scan;        /* where the search for the end of the head resumes */
    uint64_t left;        /* body (or chunk) bytes still to come */
    uint64_t bytes;       /* bytes of the response so far */
} bench_resp;

void bench_resp_reset(bench_resp *r);
/* Frames bytes buf[0, len). *used is how many the caller may drop (the head
 * once complete, body bytes, whole chunk lines). Returns 1 when the response
 * is complete, 0 when more bytes are needed, -1 on a malformed response. */
int  bench_resp_feed(bench_resp *r, const char *buf, size_t len, size_t *used, bool head_only);
/* True when the body runs to connection close, so EOF completes it. */
bool bench_resp_eof(const bench_resp *r);

enum { BC_DOWN, BC_CONNECTING, BC_IDLE, BC_BUSY, BC_WAIT };

/* The TLS transport under one connection (bench_tls.c). The connection's
 * own state (BC_*) says what it is doing with requests; this says what is
 * under its bytes. A connection stays BC_CONNECTING through the TCP connect
 * and the handshake, and becomes usable when the handshake is done. */
typedef enum bench_tls_state {
    BENCH_TLS_PLAIN,      /* http://: bytes go straight to the socket */
    BENCH_TLS_DOWN,       /* https://, no TLS on the socket yet (none, or TCP connecting) */
    BENCH_TLS_HANDSHAKE,  /* SSL_connect under way */
    BENCH_TLS_OPEN,       /* handshake done: every byte goes through SSL_read/SSL_write */
} bench_tls_state;

const char *bench_tls_state_str(bench_tls_state s);

#define BENCH_RBUF 16384

typedef struct bench_worker bench_worker;

struct ssl_st;
struct ssl_session_st;
struct ssl_ctx_st;

typedef struct bench_conn {
    bench_worker *w;
    int         fd;
    uint32_t    idx;
    uint32_t    gen;         /* bumped by every connect: a new fd may reuse the old number */
    uint8_t     state;
    uint8_t     tls;         /* bench_tls_state */
    struct ssl_st         *ssl;    /* TLS_HANDSHAKE / TLS_OPEN only */
    struct ssl_session_st *sess;   /* --tls-resume: the last session the server gave */
    uint64_t    hs_start_us;
    bool        pending;     /* a request is assigned and not yet answered */
    bool        head_only;   /* the request was HEAD: no body follows */
    bool        idempotent;  /* the request's method may be sent twice (RFC 9110 9.2.2) */
    bool        got;         /* a byte of the pending request's response arrived */
    bool        resent;      /* the pending request went out again on a new connection */
    uint32_t    served;      /* responses completed on this connection (since its connect) */
    uint32_t    req;         /* scenario index of the request */
    const char *wptr;
    size_t      wlen, woff;
    uint64_t    start_us;    /* latency origin: send time, or the scheduled time */
    uint64_t    sent_us;     /* actual send (or connect) time, for the timeout */
    bench_resp  resp;
    ev_timer    timer;       /* think time and reconnect back-off */
    char       *wbuf;        /* render buffer for templated requests */
    size_t      rlen;
    char        rbuf[BENCH_RBUF];
} bench_conn;

struct bench_worker {
    const bench_plan *plan;
    ev_loop     *loop;
    pthread_t    th;
    uint32_t     id;
    uint64_t     t0;
    bench_conn  *conns;
    uint32_t     nconns;
    uint32_t     active;     /* closed model: connections in use now */
    char        *wbufs;
    bench_conn **idle;       /* open model: connections free to send */
    uint32_t     nidle;
    uint64_t     next_k;     /* open model: next arrival of this thread */
    uint64_t     behind;
    bool         stopping;
    int          failed;
    bench_rng    rng;
    bench_stats *stats;      /* one per scenario request */
    uint64_t     count, fails;
    hist         window;     /* latencies since the last publish */
    struct ssl_ctx_st *ssl_ctx;   /* https: this thread's client context */
    bench_conn_stats cs;
    char         tls_error[BENCH_ERRLEN];   /* the first TLS failure, "" when none */
    atomic_int   fatal;      /* 1: the run cannot succeed (tls_error says why) */
    ev_timer     arrive, tick, end;
    /* Handed to the progress loop under lk. */
    pthread_mutex_t lk;
    uint64_t     sh_count, sh_fails;
    hist         sh_window;
};

/* ---- TLS transport (bench_tls.c) ---- */

/* This thread's client context for the plan's options; NULL with err. */
struct ssl_ctx_st *bench_tls_ctx_new(const bench_tls_opts *o, char *err, size_t errlen);
void bench_tls_ctx_free(struct ssl_ctx_st *ctx);
/* Starts the handshake on c's connected socket (TLS_DOWN -> TLS_HANDSHAKE),
 * offering c's last session with --tls-resume. -1: out of memory. */
int  bench_tls_begin(bench_conn *c);
/* Drives the handshake: 1 done (TLS_OPEN, c->w->cs counted), 0 waiting for
 * the socket, -1 failed (err says why; *fatal when the server's certificate
 * was refused, which no retry can fix; the caller closes c). */
int  bench_tls_handshake(bench_conn *c, char *err, size_t errlen, bool *fatal);
/* read(2)/send(2) contracts over TLS: bytes, 0 at EOF (read), -1 with
 * errno (EAGAIN: wait for the next edge; EPROTO: a TLS error). */
ssize_t bench_tls_read(bench_conn *c, void *buf, size_t n);
ssize_t bench_tls_write(bench_conn *c, const void *buf, size_t n);
/* Ends TLS on c (close_notify when established, never waiting for the
 * peer's): TLS_HANDSHAKE/TLS_OPEN -> TLS_DOWN. The socket stays open. A
 * handshake ended before it completed counts as failed (unless the run is
 * stopping). */
void bench_tls_close(bench_conn *c);
/* Frees c's kept session (at the end of the run). */
void bench_tls_conn_free(bench_conn *c);

#endif
