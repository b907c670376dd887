/* server_conn.h -- what server.c (workers, lifecycle) and server_conn.c
 * (the per-connection state machine, responses, request metrics) share.
 * Private to the server framework. */
#ifndef HSCALE_HTTP_SERVER_CONN_H
#define HSCALE_HTTP_SERVER_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

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
    struct ssl_st *ssl;          /* TLS session when the server has TLS */
    bool         tls_ready;      /* handshake done */
} conn;

/* Per-address authentication failures (server_auth.c): a small open
 * hash keyed by the peer's IP without the port; old entries are reused. */
#define AUTHFAIL_SLOTS 512
typedef struct authfail_ent {
    uint8_t  ip[16];
    uint8_t  used;
    uint32_t fails;          /* since the last success or expiry */
    uint64_t last_us;        /* last failure */
} authfail_ent;

typedef struct audit_ent {
    char *json;              /* one event as a JSON object */
} audit_ent;

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
    /* authentication failures by address (server_auth.c) */
    pthread_mutex_t af_mu;
    authfail_ent af[AUTHFAIL_SLOTS];
    /* audit ring (server_audit.c) */
    pthread_mutex_t audit_mu;
    audit_ent   *audit;
    unsigned     naudit, audit_next;
    atomic_ulong req_seq;        /* made-up request ids */
    /* TLS (server_tls.c): swapped under tls_mu by a reload */
    pthread_mutex_t tls_mu;
    struct ssl_ctx_st *tls_ctx;
    bool         tls_on;         /* set once at start, read without the lock */
};

/* server_tls.c: load the context at start; per connection set up, read,
 * write and close. conn_tls_read/write return bytes moved, 0 at EOF (read),
 * or -1 with errno EAGAIN (wait for the socket) or another errno. */
int  http_tls_init(http_server *s, char *err, size_t errlen);
void http_tls_free(http_server *s);
int  http_conn_tls_new(conn *c);
ssize_t http_conn_tls_read(conn *c);
ssize_t http_conn_tls_write(conn *c);
void http_conn_tls_close(conn *c);
void http_audit_free(http_server *s);

/* A freshly accepted connection: registered, header timer armed. */
void http_conn_new(worker *w, int fd, const sock_addr *peer);
/* Closes fd and recycles the structure; stops the loop when the worker is
 * stopping and this was its last connection. */
void http_conn_close(conn *c);
/* Reads, answers and writes as far as the socket allows. */
void http_conn_run(conn *c);

#endif
