/* gw_state.h -- the gateway's runtime model: an immutable snapshot of pools
 * and routes that workers read without locks, rebuilt and swapped whole on
 * every change (API call, SIGHUP), and reclaimed once every worker has
 * passed a quiescent point. Internal to src/gateway.
 *
 * Members outlive snapshots: a rebuild reuses the gw_member of the same
 * pool and address, so in-flight counts, health and ejections carry over a
 * reload and a weight change is a store into the live member. A member is
 * freed when its last holder (snapshot or request) lets go. */
#ifndef HSCALE_GATEWAY_GW_STATE_H
#define HSCALE_GATEWAY_GW_STATE_H

#include "gateway/gateway.h"
#include "gateway/gw_lb.h"
#include "http/parser.h"

#define GW_MAX_WORKERS 256
#define GW_MAX_SPLIT   8

typedef struct gw_route {
    char     *prefix;
    size_t    plen;
    uint32_t  methods;            /* bit per http_method; 0: any */
    char     *host;               /* NULL: any */
    int       pool, read_pool, write_pool;   /* indexes, -1 unset */
    int       split_pool[GW_MAX_SPLIT];
    uint32_t  split_w[GW_MAX_SPLIT];
    uint32_t  nsplit, split_total;
    int       rl_class;           /* index into snap->rl, -1: none */
    bool      security_headers;
    bool      retry_unsafe;
    const gw_route_cache_cfg *cache;   /* into the snapshot's cfg; NULL: not cached */
    bool      hsts_sub;           /* includeSubDomains */
    uint32_t  hsts_max_age;       /* seconds; 0: no HSTS header (TLS only) */
} gw_route;

typedef struct gw_snap {
    uint64_t     gen;
    gw_pool     *pools;
    size_t       npools;
    gw_pool_cfg *pool_cfg;        /* parallel to pools: health, limits, cookies */
    gw_route    *routes;
    size_t       nroutes;
    gw_rl_class *rl;
    size_t       nrl;
    gw_config    cfg;             /* owned deep copy the snapshot was built from */
} gw_snap;

/* Builds a snapshot from cfg (deep-copied). Members of `prev` with the same
 * pool name and address (and backup flag) are reused, with the new weight
 * stored into them. Returns NULL with err filled. */
gw_snap *gw_snap_build(const gw_config *cfg, const gw_snap *prev, char *err, size_t errlen);
/* Drops the snapshot's member references and frees it. */
void     gw_snap_free(gw_snap *s);

int  gw_snap_find_pool(const gw_snap *s, const char *name);
/* The member of pool `pool` whose address is `id` ("host:port"), or NULL. */
gw_member *gw_snap_find_member(const gw_snap *s, const char *pool, const char *id);
/* First route matching method, path and Host, or -1. */
int  gw_route_match(const gw_snap *s, http_method m, const char *path, size_t plen,
                    const char *host, size_t hlen);
/* The pool a request on route r goes to. `rnd` is a per-worker random
 * number, used for weighted splits. */
int  gw_route_pool(const gw_route *r, http_method m, uint64_t rnd);
/* GET, HEAD, OPTIONS (and PUT/DELETE when the route allows) are retried. */
bool gw_method_retryable(const gw_route *r, http_method m);

void gw_member_ref(gw_member *m);
void gw_member_unref(gw_member *m);

/* Publication. Readers call gw_rcu_quiescent(worker) once per loop
 * iteration, when they hold no snapshot pointer across it; writers
 * publish and later reclaim what every worker has moved past. Writers are
 * serialised by the caller (one admin thread). */
typedef struct gw_rcu {
    _Atomic(gw_snap *) cur;
    _Atomic uint64_t   epoch;
    _Atomic uint64_t   seen[GW_MAX_WORKERS];
    unsigned           nworkers;
    struct { gw_snap *s; uint64_t epoch; } retired[64];
    unsigned           nretired;
} gw_rcu;

void     gw_rcu_init(gw_rcu *r, unsigned nworkers, gw_snap *first);
static inline gw_snap *gw_rcu_read(gw_rcu *r)
{
    return atomic_load_explicit(&r->cur, memory_order_acquire);
}
static inline void gw_rcu_quiescent(gw_rcu *r, unsigned worker)
{
    atomic_store_explicit(&r->seen[worker],
                          atomic_load_explicit(&r->epoch, memory_order_acquire),
                          memory_order_release);
}
/* Swaps in s and retires the old snapshot. Returns -1 when the retire list
 * is full (workers stalled): the caller should reclaim and try again. */
int      gw_rcu_publish(gw_rcu *r, gw_snap *s);
/* Frees retired snapshots every worker has moved past; returns how many
 * are still waiting. */
unsigned gw_rcu_reclaim(gw_rcu *r);
/* Frees everything (workers stopped). */
void     gw_rcu_destroy(gw_rcu *r);

#endif
