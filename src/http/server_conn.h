/* server_conn.h -- what server.c (workers, lifecycle) and server_conn.c
 * (the per-connection state machine, responses, request metrics) share.
 * Private to the server framework. */
#ifndef HSCALE_HTTP_SERVER_CONN_H
#define HSCALE_HTTP_SERVER_CONN_H

#include <pthread.h>
#include <stdatomic.h>

#include "server_int.h"
#include "../core/ev.h"
#include "../core/metrics.h"

#define OUT_HIGH      (256u * 1024)  /* stop reading while this much output waits */
#define READ_CHUNK    16384
#define LINGER_US     2000000ull
#define CNT_CACHE     512            /* per-worker (route, method, code) handles */
#define FREE_CONNS    64

enum { T_HEADER, T_IDLE, T_IO, T_LINGER };

typedef struct worker worker;

typedef struct conn {
    int          fd;
    worker      *w;
    struct conn *prev, *next;
    sock_addr    peer;
    buf          in, out, body;
    http_request req;
    size_t       head_len;       /* > 0 once the current head is parsed */
    http_chunked ch;
    size_t       chunk_pos;      /* input offset the chunked decoder reached */
    ev_timer     timer;
    uint8_t      tmode;
    bool         continue_sent;
    bool         closing;        /* close once output is flushed */
    bool         draining;       /* write side shut, waiting for EOF */
    bool         peer_eof;
    bool         backlog;        /* stopped early: more to do after a flush */
    bool         body_oom;
} conn;

typedef struct cnt_slot { uint32_t key; metric_series *s; } cnt_slot;

struct worker {
    http_server *s;
    unsigned     idx;
    ev_loop     *loop;
    int          lfd;
    pthread_t    th;
    bool         running;
    conn        *conns;
    unsigned     nconns;
    conn        *free_conns;
    unsigned     nfree;
    bool         stopping;
    ev_timer     grace;
    int          grace_ms;
    metric_series **dur;         /* per route index, + 1 for unmatched */
    unsigned     ndur;
    cnt_slot     cnt[CNT_CACHE];
    http_ctx     ctx;
};

struct http_server {
    http_server_opts o;
    char         name[64];
    worker      *w;
    unsigned     nw;
    int          port;
    atomic_uint  nconns;
    _Atomic bool stopping;
    metric_family *f_req, *f_dur;
    metric_series *s_conns;
    bool         started;
};

/* A freshly accepted connection: registered, header timer armed. */
void http_conn_new(worker *w, int fd, const sock_addr *peer);
/* Closes fd and recycles the structure; stops the loop when the worker is
 * stopping and this was its last connection. */
void http_conn_close(conn *c);
/* Reads, answers and writes as far as the socket allows. */
void http_conn_run(conn *c);

#endif
