/* gw_cache_int.h -- what the two halves of the gateway cache's request
 * path share: gw_cache.c (lookup, answers from the store, waiters,
 * background refresh) and gw_cache_fill.c (the backend's response: 304
 * refresh, stale-if-error, capture and store, invalidation). Internal to
 * src/gateway. */
#ifndef HSCALE_GATEWAY_GW_CACHE_INT_H
#define HSCALE_GATEWAY_GW_CACHE_INT_H

#include "gateway/gw_cache.h"
#include "gateway/gw_proxy.h"

#define CX_KEY_MAX 8192
#define CX_FREE    256        /* request states a worker keeps for reuse */
#define CX_KEYBUF  240        /* keys up to this long need no allocation */
#define CX_PASS_S  10         /* life of a hit-for-miss marker, seconds */

typedef enum gw_cx_phase {
    CX_BYPASS,      /* relayed, nothing looked up or stored */
    CX_WAIT,        /* parked on another request's fill: cx->wait, cx->timer */
    CX_FILL,        /* owns the key's fill (cx->ticket): must end it, whatever happens */
    CX_FORWARD,     /* goes to the backend without owning the fill; may store */
    CX_INVALIDATE,  /* unsafe method: a success purges its URIs */
    CX_SERVED,      /* answered from the store */
} gw_cx_phase;

typedef struct gw_cx {
    uint8_t      phase;          /* gw_cx_phase */
    gw_exchange *ex;
    char        *key;
    size_t       klen;
    uint64_t     ticket;         /* CX_FILL: the fill's purge ticket */
    gw_cwait    *wait;           /* CX_WAIT */
    ev_timer     timer;          /* CX_WAIT: lock_timeout */
    gw_cvar     *stale;          /* the stored variant being revalidated (a reference) */
    bool         had_key;        /* the lookup found the key (vary-miss, not uri-miss) */
    bool         bg;             /* a background refresh: nobody reads the answer */
    /* the request */
    gw_cc        req_cc;
    bool         pragma_no_cache, req_auth, req_no_store;
    int64_t      override_ttl, swr, sie;
    uint64_t     lock_timeout_us;
    int64_t      req_us;         /* wall clock when the request came */
    /* the capture of a storable response */
    bool         capture;
    buf          head, body;
    uint64_t     max_object;
    /* what the response to the client says */
    int64_t      age_out;        /* -1: no Age */
    char         status[192];    /* Cache-Status value */
    struct gw_cx *next_free;
    char         keybuf[CX_KEYBUF];
} gw_cx;

static inline gw_cstore *gw_cx_store_of(const gw_exchange *ex) { return ex->c->w->rt->cache; }

/* Wall clock in microseconds: ages are whole seconds (RFC 9111), but a
 * response delay or a residence of 2 ms must not round up to one. */
static inline int64_t gw_cx_wall_us(void) { return (int64_t)ev_wall_us(); }

static inline int64_t gw_cx_var_age(const gw_cvar *v, int64_t now)   /* now: gw_cx_wall_us() */
{
    int64_t a = v->age0 + (now > v->resp_us ? (now - v->resp_us) / 1000000 : 0);
    return a < 0 ? 0 : a;
}

/* gw_cache.c */
void     gw_cx_set_status(gw_cx *cx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The request's value of a Vary'd field (a gw_vary_get_fn over an exchange). */
const char *gw_cx_vary_get(void *arg, const char *name, size_t nl, size_t *len);
/* The stored response for the request, or NULL; *pass: a live
 * hit-for-miss marker stands for the key. */
gw_cvar *gw_cx_lookup(gw_exchange *ex, bool *pass);
/* Queues v as the whole answer and ends the request. */
void     gw_cx_serve(gw_exchange *ex, gw_cvar *v);
/* The fill this exchange owns ends: every parked waiter is woken. */
void     gw_cx_fill_end(gw_cx *cx);
void     gw_cx_capture_drop(gw_cx *cx);
bool     gw_cx_sie_ok(const gw_cx *cx, const gw_cvar *v);

#endif
