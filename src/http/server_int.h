/* server_int.h -- what router.c and server.c share and nobody else sees:
 * the request context, its arena, and the router's match entry point.
 *
 * The context lives inside its connection and is reset per request; the
 * arena's inline block is large enough for the params, query pairs and
 * header copies of an ordinary request, so the steady state allocates
 * nothing. A request that needs more spills into malloc'd blocks that are
 * freed at the next reset. */
#ifndef HSCALE_HTTP_SERVER_INT_H
#define HSCALE_HTTP_SERVER_INT_H

#include "server.h"

#include <stdatomic.h>

#define HTTP_CTX_ARENA     8192
#define HTTP_CTX_MAX_PARAMS 16
#define HTTP_CTX_MAX_QUERY  64

typedef struct http_route_ent http_route_ent;

typedef struct http_kv { const char *k, *v; } http_kv;

typedef struct http_arena_blk { struct http_arena_blk *next; } http_arena_blk;

struct http_ctx {
    /* request */
    const http_request *req;
    const char   *base;          /* the bytes req's slices point into */
    const char   *path;          /* NUL-terminated copy */
    const char   *method_name;
    const char   *body;
    size_t        body_len;
    const sock_addr *peer;
    unsigned      worker;
    http_server  *srv;
    http_role     role;          /* granted by http_ctx_authorize */
    const char   *request_id;    /* lazily made by http_ctx_request_id */
    const http_route_ent *route;
    const char   *route_pattern;
    unsigned      nparams;
    http_kv       params[HTTP_CTX_MAX_PARAMS];
    bool          query_parsed;
    unsigned      nquery;
    http_kv       query[HTTP_CTX_MAX_QUERY];
    /* response */
    buf          *out;
    buf           extra;         /* accumulated extra header lines */
    bool          keep_alive;
    const _Atomic bool *stopping; /* server-wide: replies then say close */
    bool          head_only;
    bool          replied;
    int           status;
    /* arena */
    size_t        arena_used;
    http_arena_blk *spill;
    _Alignas(16) char arena[HTTP_CTX_ARENA];
};

void http_ctx_reset(http_ctx *c);
void http_ctx_release(http_ctx *c);   /* frees spill blocks and extra */
char *http_ctx_strndup(http_ctx *c, const char *s, size_t n);

/* Route lookup. On a match fills c->route, c->route_pattern and c->params
 * and returns 0; otherwise returns 404, or 405 with the allowed methods
 * ("GET, HEAD") written into allow. */
int  http_router_match(http_router *r, http_ctx *c, const char *path, size_t plen,
                       http_method m, const char *mname, char *allow, size_t allowlen);
/* Matches and runs the handler, or answers 404 or 405 (with Allow); a
 * handler that sends nothing gets a 500. Leaves c->route at the match. */
void http_router_run(http_router *r, http_ctx *c, const char *path, size_t plen);
unsigned http_router_count(const http_router *r);
/* Index of a matched route in [0, count), for per-route metric caches. */
unsigned http_route_index(const http_route_ent *e);
http_handler_fn *http_route_fn(const http_route_ent *e, void **arg);

/* Percent-decodes [s, s+n) into out (n+1 bytes); plus_space turns '+'
 * into ' '. Returns the decoded length. */
size_t http_pct_decode(char *out, const char *s, size_t n, bool plus_space);

#endif
