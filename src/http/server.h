/* server.h -- a small multi-threaded HTTP/1.1 server framework: a router of
 * method + path patterns with {params}, query parsing, and synchronous
 * handlers that answer from the worker thread they run on.
 *
 * Used by the app, every admin API (gateway runtime API, control plane) and
 * test servers. Each worker thread runs its own ev_loop with its own
 * SO_REUSEPORT listener; a handler may block (a database query) and then
 * stalls only its own worker. The framework does keep-alive, pipelining,
 * Expect: 100-continue, chunked and Content-Length request bodies (collected
 * whole, bounded by max_body), header and idle timeouts, and graceful stop.
 * It records hscale_http_requests_total and
 * hscale_http_request_duration_seconds by route pattern, method and code. */
#ifndef HSCALE_HTTP_SERVER_H
#define HSCALE_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../core/buf.h"
#include "../core/sock.h"
#include "parser.h"

typedef struct http_ctx    http_ctx;
typedef struct http_router http_router;
typedef struct http_server http_server;

typedef void http_handler_fn(http_ctx *c, void *arg);

http_router *http_router_new(void);
void         http_router_free(http_router *r);
/* method: "GET", "POST", ... or NULL for any. pattern: "/cases/{id}";
 * a final "*" segment ("/static/" then "*") matches any rest (param "*").
 * Returns -1 when the pattern is malformed. Register every route before a
 * server using the router starts: the table is read without locks. */
int http_route(http_router *r, const char *method, const char *pattern,
               http_handler_fn *fn, void *arg);

/* Runs the request through another router as if its path were `path`
 * (a handler that mounts a sub-API, such as one service of several):
 * path parameters come from the inner match, 404 and 405 are answered
 * the same way, and the request keeps the outer route for metrics. */
void http_router_dispatch(http_router *r, http_ctx *c, const char *path);

/* Request accessors (valid until the handler returns). */
http_method  http_ctx_method(const http_ctx *c);
const char  *http_ctx_method_name(const http_ctx *c);
const char  *http_ctx_path(const http_ctx *c);      /* NUL-terminated, not decoded */
const char  *http_ctx_route(const http_ctx *c);     /* the matched pattern */
/* Path parameter by name, percent-decoded; NULL when absent. */
const char  *http_ctx_param(http_ctx *c, const char *name);
/* Query parameter by name, percent-decoded ('+' is a space); NULL when absent. */
const char  *http_ctx_query(http_ctx *c, const char *name);
/* Calls fn for every query parameter (to reject unknown ones). */
void         http_ctx_query_each(http_ctx *c, void (*fn)(void *arg, const char *k, const char *v), void *arg);
/* Request header by name (case-insensitive), NUL-terminated copy; NULL when absent. */
const char  *http_ctx_header(http_ctx *c, const char *name);
const char  *http_ctx_body(const http_ctx *c, size_t *len);
const sock_addr *http_ctx_peer(const http_ctx *c);
unsigned     http_ctx_worker(const http_ctx *c);
/* Scratch memory that lives until the response is sent. */
void        *http_ctx_alloc(http_ctx *c, size_t n);

/* Response. Extra headers accumulate until the reply is sent. */
void http_ctx_add_header(http_ctx *c, const char *name, const char *value);
void http_reply(http_ctx *c, int status, const char *content_type, const void *body, size_t len);
void http_reply_json(http_ctx *c, int status, const char *json, size_t len);
void http_reply_buf_json(http_ctx *c, int status, const buf *b);
/* {"error": msg, "status": N, "field": field}; field may be NULL. */
void http_reply_error(http_ctx *c, int status, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* True when `token` is NULL or empty, or the request carries
 * "Authorization: Bearer <token>" (compared in constant time); otherwise
 * answers 401 with WWW-Authenticate and returns false. */
bool http_ctx_bearer_ok(http_ctx *c, const char *token);
typedef struct http_server_opts {
    const char  *name;            /* for logs and the "server" metric label */
    sock_addr    listen;
    unsigned     workers;         /* 0: number of cores */
    http_router *router;          /* owned by the caller; must outlive the server */
    http_limits  limits;          /* zero fields: parser defaults (max_body 0 = no limit,
                                   * unless every field is 0) */
    uint64_t     header_timeout_us; /* 0: 10 s */
    uint64_t     idle_timeout_us;   /* 0: 60 s */
    uint32_t     max_conns;         /* 0: 10000 */
    /* Called on each worker thread before its loop starts (thread-local setup). */
    void       (*on_worker_start)(unsigned worker, void *arg);
    void        *arg;
} http_server_opts;

http_server *http_server_new(const http_server_opts *o, char *err, size_t errlen);
/* Binds every worker's listener and starts the threads. */
int  http_server_start(http_server *s, char *err, size_t errlen);
/* The bound port (useful with port 0). */
int  http_server_port(const http_server *s);
/* Stops accepting, lets in-flight requests finish (up to grace_ms), closes
 * idle connections, joins the workers. */
void http_server_stop(http_server *s, int grace_ms);
void http_server_free(http_server *s);

#endif
