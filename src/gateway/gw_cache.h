/* gw_cache.h -- the gateway's shared HTTP cache (RFC 9111): the pure
 * policy (Cache-Control, dates, freshness, storability; gw_cache_policy.c)
 * and the in-memory store (hash, LRU, byte budget, Vary variants, tags,
 * fills with parked waiters; gw_cache_store.c). Internal to src/gateway.
 *
 * Neither part knows about connections or event loops: the request path
 * (gw_cache.c) asks the policy what to do and the store what it holds, so
 * both are unit-tested alone. Times are wall-clock seconds (what Date,
 * Expires and Age speak) except where a name says _us.
 *
 * The store is shared by every worker thread behind one mutex; what it
 * hands out (gw_cvar) is immutable and reference-counted, so a worker
 * builds a response from it without holding the lock. */
#ifndef HSCALE_GATEWAY_GW_CACHE_H
#define HSCALE_GATEWAY_GW_CACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/parser.h"

/* --- policy (gw_cache_policy.c) ---------------------------------------- */

enum {
    GW_CC_NO_STORE         = 1u << 0,
    GW_CC_NO_CACHE         = 1u << 1,
    GW_CC_PRIVATE          = 1u << 2,
    GW_CC_PUBLIC           = 1u << 3,
    GW_CC_MUST_REVALIDATE  = 1u << 4,
    GW_CC_PROXY_REVALIDATE = 1u << 5,
    GW_CC_MUST_UNDERSTAND  = 1u << 6,
    GW_CC_IMMUTABLE        = 1u << 7,
    GW_CC_NO_TRANSFORM     = 1u << 8,
    GW_CC_ONLY_IF_CACHED   = 1u << 9,
    /* max-age or s-maxage malformed, or given twice with different values:
     * RFC 9111 section 4.2.1 lets a cache treat the response as stale. */
    GW_CC_BAD_AGE          = 1u << 10,
};

#define GW_CC_ABSENT   (-1)
#define GW_DELTA_MAX   2147483648LL   /* RFC 9111 1.2.2: larger deltas are 2^31 */

typedef struct gw_cc {
    uint32_t f;           /* GW_CC_* */
    int64_t  max_age, s_maxage, swr, sie, max_stale, min_fresh;   /* seconds or GW_CC_ABSENT */
} gw_cc;

void gw_cc_init(gw_cc *cc);
/* Adds the directives of one Cache-Control field value (several field
 * lines accumulate). Unknown directives are ignored; names are
 * case-insensitive; values may be tokens or quoted strings. A bare
 * max-stale means "any staleness" (GW_DELTA_MAX). */
void gw_cc_parse(gw_cc *cc, const char *v, size_t n);

/* An HTTP-date (IMF-fixdate, RFC 850 or asctime) as Unix seconds; -1
 * when malformed (a cache treats an invalid Expires as already past). */
int64_t gw_http_date(const char *p, size_t n);
/* Writes an IMF-fixdate (29 bytes, no NUL). */
size_t gw_http_date_fmt(int64_t t, char out[32]);
/* A non-negative delta-seconds (Age); -1 when malformed. */
int64_t gw_delta_seconds(const char *p, size_t n);

/* Freshness lifetime (RFC 9111 4.2.1) for a shared cache: s-maxage, then
 * max-age, then Expires - Date (an invalid Expires is passed as 0: the
 * past), then the
 * route's override; GW_CC_ABSENT when nothing gives one. date and expires
 * GW_CC_ABSENT when the header is missing; date falls back to
 * response_time. */
int64_t gw_cache_lifetime(const gw_cc *cc, int64_t date, int64_t expires,
                          int64_t response_time, int64_t override_ttl);
/* Corrected initial age (RFC 9111 4.2.3). age_hdr GW_CC_ABSENT: none. */
int64_t gw_cache_initial_age(int64_t age_hdr, int64_t date, int64_t request_time,
                             int64_t response_time);

/* Why a response may not be stored, or NULL when it may (RFC 9111 3). */
typedef struct gw_store_check {
    int          status;
    http_method  method;          /* of the request */
    const gw_cc *resp_cc;
    const gw_cc *req_cc;
    bool         req_auth;        /* the request carried Authorization */
    bool         set_cookie;      /* the response sets a cookie */
    bool         vary_star;       /* Vary: * */
    int64_t      lifetime;        /* gw_cache_lifetime */
} gw_store_check;
const char *gw_cache_unstorable(const gw_store_check *in);
/* Statuses this cache understands and may store. */
bool gw_cache_status_ok(int status);

/* What to do with a stored response for a request. */
typedef enum gw_cache_use {
    GW_USE_FRESH,        /* serve it */
    GW_USE_STALE_OK,     /* stale, but the client allows it (max-stale): serve */
    GW_USE_SWR,          /* serve stale, refresh in the background */
    GW_USE_REVALIDATE,   /* forward with validators; may serve stale on error (sie) */
} gw_cache_use;
const char *gw_cache_use_str(gw_cache_use u);

typedef struct gw_use_in {
    int64_t      lifetime;        /* stored (after any override) */
    int64_t      age;             /* current age */
    const gw_cc *resp_cc;
    const gw_cc *req_cc;
    bool         req_pragma_no_cache;
    int64_t      route_swr, route_sie;   /* seconds; used when the response names none */
} gw_use_in;
gw_cache_use gw_cache_decide(const gw_use_in *in);
/* May a stale response be served because the origin failed? */
bool gw_cache_sie_ok(const gw_use_in *in);

/* Client conditionals against a stored response: true when the answer is
 * 304. If-None-Match (weak comparison, "*" matches) takes precedence over
 * If-Modified-Since (last_modified -1: unknown, no match). */
bool gw_cache_not_modified(const char *inm, size_t inm_len, bool has_inm,
                           const char *etag, size_t etag_len,
                           int64_t ims, int64_t last_modified);

/* --- store (gw_cache_store.c) ------------------------------------------ */

/* One stored response: a normalised head (status line, end-to-end
 * headers, Content-Length) and the identity-framed body, immutable once
 * inserted. `resp` is parsed over `head`. */
typedef struct gw_cvar {
    _Atomic uint32_t refs;
    struct gw_cobj  *obj;         /* owner while linked; NULL once removed */
    struct gw_cvar  *next;        /* obj's variants, newest first */
    struct gw_cvar  *lru_prev, *lru_next;
    char            *vary;        /* "name\0value\0name\0value\0\0" of the request, NULL: no Vary */
    size_t           vary_len;
    char            *tags;        /* Cache-Tag / Surrogate-Key tokens, "\0"-separated, "\0\0"-ended */
    char            *head;
    size_t           head_len;
    char            *body;
    size_t           body_len;
    http_response    resp;
    gw_cc            cc;
    int64_t          lifetime;    /* seconds, after any override */
    int64_t          age0;        /* corrected initial age */
    int64_t          resp_us;     /* wall clock (microseconds) when the response arrived */
    int64_t          last_modified;   /* -1 unknown */
    size_t           bytes;       /* what the budget counts */
    /* A hit-for-miss marker, not a response: the key's last fetch was not
     * storable, so until it expires misses go to the backend at once
     * instead of queueing behind each other's fetches (gw_cache.c). */
    bool             pass;
    /* Compressed renditions of the body, by GW_CODING_* (gzip 1, br 2),
     * made by the first hit that needed one and kept with the variant
     * (gw_cstore_attach): a hit pays for compression once. */
    struct gw_crend *_Atomic rend[3];
} gw_cvar;

typedef struct gw_crend {
    size_t len;
    char   data[];
} gw_crend;

/* A waiter parked on a fill: woken (through its own worker's loop) when
 * the fill ends, whatever the outcome. `fn` runs on the thread that ends
 * the fill, outside the store lock; it must only post work. */
typedef struct gw_cwait {
    struct gw_cwait *next;
    void (*fn)(struct gw_cwait *w);
    void *ctx;                    /* for fn (any thread): set before parking, never changed */
    void *arg;                    /* the owner's (its own thread only) */
    bool  woken;                  /* set under the lock when detached */
} gw_cwait;

typedef struct gw_cache_stats {
    _Atomic uint64_t hits, misses, stale, revalidations, coalesced, stores, evictions,
                     purged, too_big, uncacheable, renditions;
} gw_cache_stats;

typedef struct gw_cstore gw_cstore;

gw_cstore *gw_cstore_new(uint64_t budget_bytes, uint64_t max_object);
void       gw_cstore_free(gw_cstore *s);
gw_cache_stats *gw_cstore_stats(gw_cstore *s);
void       gw_cstore_usage(gw_cstore *s, uint64_t *bytes, uint64_t *objects);
uint64_t   gw_cstore_max_object(const gw_cstore *s);

/* Request header values a variant is selected by: called with a header
 * name, gives the request's value (normalised by the caller; NULL when
 * absent). */
typedef const char *gw_vary_get_fn(void *arg, const char *name, size_t name_len, size_t *len);

/* The newest variant of key whose Vary'd request headers match, with a
 * reference taken (gw_cvar_unref), and moved to the LRU front; NULL when
 * none. *had_key: the key has some variant (Cache-Status uri-miss vs
 * vary-miss). */
gw_cvar   *gw_cstore_lookup(gw_cstore *s, const char *key, size_t klen,
                            gw_vary_get_fn *get, void *arg, bool *had_key);
void       gw_cvar_ref(gw_cvar *v);
void       gw_cvar_unref(gw_cvar *v);

/* A variant from a normalised head (parsed here: NULL when it does not
 * parse), a body, the request's Vary values (gw_cvary_build) and tags. */
gw_cvar   *gw_cvar_new(const char *head, size_t head_len, const char *body, size_t body_len,
                       const char *vary, size_t vary_len, const char *tags, size_t tags_len);
/* Inserts v (takes the caller's reference) under key, replacing a variant
 * with the same Vary values, evicting from the LRU tail to stay within the
 * budget. ticket: from gw_cstore_fill_begin (0: unconditional); a fill
 * whose key was purged since it began does not store (the purge would be
 * undone by a response fetched before it). -1 when not stored (too large,
 * or purged since): v is released. */
int        gw_cstore_insert(gw_cstore *s, const char *key, size_t klen, gw_cvar *v,
                            uint64_t ticket);
/* The Vary selector of a request: for each field name in the response's
 * Vary values (comma-separated, several lines joined by ','), the
 * request's value through get. Writes "name\0Pvalue\0..." (P: '1' present,
 * '0' absent; names lower-cased) to out; returns its length, 0 when there
 * is no Vary, -1 when it does not fit or names "*". */
long       gw_cvary_build(const char *vary, size_t vary_len, gw_vary_get_fn *get, void *arg,
                          char *out, size_t cap);

/* Invalidation. By exact key (every variant), by key prefix, by tag.
 * Returns the number of variants removed. */
/* Keeps a compressed rendition (coding 1 or 2) of a linked variant,
 * counted in the budget; a no-op when one is there or v was removed. */
void       gw_cstore_attach(gw_cstore *s, gw_cvar *v, uint8_t coding, const char *z, size_t n);
size_t     gw_cstore_purge(gw_cstore *s, const char *key, size_t klen);
size_t     gw_cstore_purge_prefix(gw_cstore *s, const char *prefix, size_t plen);
size_t     gw_cstore_purge_tag(gw_cstore *s, const char *tag, size_t tlen);

/* Fills (request coalescing). gw_cstore_fill_begin: true when the caller
 * becomes the key's filler; false when a fill is running, and then, with
 * w non-NULL, w is parked on it (woken by gw_cstore_fill_end). */
bool       gw_cstore_fill_begin(gw_cstore *s, const char *key, size_t klen, gw_cwait *w,
                                uint64_t *ticket);
/* The filler is done (stored or not): every parked waiter is woken. */
void       gw_cstore_fill_end(gw_cstore *s, const char *key, size_t klen);
/* A parked waiter leaves (its request went away or timed out): true when
 * it was still parked (so no wake-up will come), false when the wake-up is
 * already on its way. */
bool       gw_cstore_fill_leave(gw_cstore *s, const char *key, size_t klen, gw_cwait *w);

#endif
