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

/* ---- Access control (server_auth.c) ----
 * Two roles: a read token (status, metrics, history, dashboard data) and an
 * admin token (every change). With neither configured the API is open (the
 * listener is then loopback-only, see http_listen_check). */
typedef enum http_role {
    HTTP_ROLE_NONE,    /* not yet authorized (or refused) */
    HTTP_ROLE_LOCAL,   /* no token configured: a local tool on loopback */
    HTTP_ROLE_READ,    /* presented the read token */
    HTTP_ROLE_ADMIN,   /* presented the admin token */
} http_role;
const char *http_role_str(http_role r);

typedef struct http_tokens {
    const char *read;    /* NULL or "": no read-only token */
    const char *admin;   /* NULL or "": no admin token */
} http_tokens;

/* True when the request may do what `need` (READ or ADMIN) allows: no token
 * configured, or "Authorization: Bearer <t>" matches the admin token, or
 * the read token when need is READ (compared in constant time). Otherwise
 * answers 401 (missing or wrong token, WWW-Authenticate: Bearer), 403 (the
 * read token where admin is needed) or 429 (this address failed too often
 * lately, Retry-After) and returns false. Records the role for http_audit.
 * The token is never echoed in an answer or a log. */
bool http_ctx_authorize(http_ctx *c, const http_tokens *t, http_role need);
/* The role the last http_ctx_authorize granted (NONE before). */
http_role http_ctx_role(const http_ctx *c);
/* http_ctx_authorize with token as the admin token and need ADMIN. */
bool http_ctx_bearer_ok(http_ctx *c, const char *token);

/* Refuses (-1, err says which setting to use) a listen address off
 * loopback when no token guards it. what: "control.listen"; how: the
 * setting that sets the token ("token (HSCALE_CONTROL_TOKEN)"). */
int  http_listen_check(const sock_addr *a, bool has_token, const char *what, const char *how,
                       char *err, size_t errlen);
bool http_addr_is_loopback(const sock_addr *a);

/* Reads a token from a file: the first line, surrounding whitespace
 * trimmed. Refuses an empty token or a file others can read. Returns a
 * malloc'd string or NULL with err naming the file. */
char *http_token_read_file(const char *path, char *err, size_t errlen);

/* ---- Audit (server_audit.c) ----
 * One event per accepted change: logged ("audit: ...") and kept in the
 * server's ring. The request id is the client's X-Request-Id when it is a
 * short token of [A-Za-z0-9._-], otherwise one the server made up; it is
 * echoed in the X-Request-Id response header. */
const char *http_ctx_request_id(http_ctx *c);
/* Logs and records `what` with the time, the role, the peer address and
 * the request id; writes the event as one JSON object into json_out when
 * not NULL (for a caller's own history). */
void http_audit(http_ctx *c, buf *json_out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* {"events":[{"time":..,"what":..,"role":..,"peer":..,"request_id":..},...]}
 * oldest first, at most the ring's size. */
void http_server_audit_json(http_server *s, buf *out);
http_server *http_ctx_server(const http_ctx *c);
/* Answers 200 with http_server_audit_json of the request's server. */
void http_reply_audit(http_ctx *c);

/* ---- Cross-site and DNS-rebinding protection (server_guard.c) ----
 * When enabled, before any handler runs:
 *  - Host must be an IP literal, "localhost", or a name in allowed_hosts
 *    (421 otherwise), except GET/HEAD of open_paths (/health for probes);
 *  - an Origin header must equal this listener's own origin, scheme://Host
 *    (403 otherwise; "null" is foreign);
 *  - POST, PUT, PATCH and a DELETE with a body must say
 *    Content-Type: application/json (415 otherwise), which a cross-site
 *    page cannot send without a CORS preflight that this server refuses;
 *  - a JSON body may nest at most max_json_depth levels (400).
 * A refused request reaches no handler, so it changes nothing. */
typedef struct http_guard_opts {
    bool               enabled;
    char *const       *allowed_hosts;   /* extra Host names (no port) */
    size_t             nallowed_hosts;
    const char *const *open_paths;      /* NULL-terminated; exempt from the Host check */
    unsigned           max_json_depth;  /* 0: 32 */
    const char        *hosts_setting;   /* named in the 421; a literal ("gateway.admin_allowed_hosts") */
} http_guard_opts;
/* 0 when the request passes; otherwise replies and returns the status. */
int http_guard_check(http_ctx *c, const http_guard_opts *g, bool tls);
/* Depth of the deepest array/object nesting in a JSON text (strings are
 * skipped); stops counting past limit + 1. */
unsigned http_json_depth(const char *s, size_t len, unsigned limit);

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
    http_guard_opts guard;
    unsigned     audit_ring;        /* audit events kept; 0: 256 */
    /* TLS: both set = every connection speaks TLS (server_tls.c). */
    const char  *tls_cert;          /* PEM certificate chain file */
    const char  *tls_key;           /* PEM private key file */
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
/* Re-reads the certificate and key (SIGHUP); connections accepted from
 * now on use them, open ones keep theirs. -1 with err (the old pair stays)
 * when the files do not load or the server has no TLS. */
int  http_server_tls_reload(http_server *s, char *err, size_t errlen);
bool http_server_tls(const http_server *s);

#endif
