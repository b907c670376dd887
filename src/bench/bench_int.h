/* bench_int.h -- internals shared by the bench files only: response framing,
 * connections and workers. Not part of the module's public API (bench.h). */
#ifndef HSCALE_BENCH_BENCH_INT_H
#define HSCALE_BENCH_BENCH_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

#define BENCH_RBUF 16384

typedef struct bench_worker bench_worker;

typedef struct bench_conn {
    bench_worker *w;
    int         fd;
    uint32_t    idx;
    uint8_t     state;
    bool        pending;     /* a request is assigned and not yet answered */
    bool        head_only;   /* the request was HEAD: no body follows */
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
    ev_timer     arrive, tick, end;
    /* Handed to the progress loop under lk. */
    pthread_mutex_t lk;
    uint64_t     sh_count, sh_fails;
    hist         sh_window;
};

#endif
