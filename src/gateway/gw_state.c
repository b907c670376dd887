/* gw_state.c -- snapshots of pools and routes, and their publication.
 *
 * Why snapshots: a worker resolves route -> pool -> member on every request
 * and must never see a half-applied change (a route naming a pool that is
 * gone, a split whose weights no longer add up). Building a new immutable
 * snapshot off to the side and swapping one pointer makes every change
 * atomic for readers at the cost of a rebuild per change, which happens at
 * API speed, not request speed.
 *
 * Why epochs rather than reference counts on the snapshot: a count would
 * put one contended atomic on every request. Instead each worker stamps the
 * global epoch once per loop iteration (a store to its own cache line);
 * a retired snapshot is freed when every stamp has passed its retirement
 * epoch, which proves no worker still holds the old pointer. Requests that
 * live across iterations pin their member with gw_member_ref, never the
 * snapshot. */
#include "gateway/gw_state.h"
#include "gateway/gw_proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void gw_member_ref(gw_member *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void gw_member_unref(gw_member *m)
{
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        gw_utls_member_free(m);
        free(m);
    }
}

/* The parser owns http_method_from; config names are few and fixed, so a
 * table here keeps this file independent of it. */
static int method_bit(const char *name)
{
    static const struct { const char *n; http_method m; } t[] = {
        { "GET", HTTP_GET }, { "HEAD", HTTP_HEAD }, { "POST", HTTP_POST },
        { "PUT", HTTP_PUT }, { "DELETE", HTTP_DELETE }, { "PATCH", HTTP_PATCH },
        { "OPTIONS", HTTP_OPTIONS },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcasecmp(name, t[i].n) == 0)
            return (int)t[i].m;
    return -1;
}

static gw_member *find_prev(const gw_snap *prev, const char *pool, const char *name, bool backup)
{
    if (!prev)
        return NULL;
    int pi = gw_snap_find_pool(prev, pool);
    if (pi < 0)
        return NULL;
    const gw_pool *p = &prev->pools[pi];
    for (uint32_t i = 0; i < p->n; i++)
        if (strcmp(p->members[i]->name, name) == 0 && p->members[i]->backup == backup)
            return p->members[i];
    return NULL;
}

static int build_pool(gw_snap *s, size_t pi, const gw_snap *prev, char *err, size_t errlen)
{
    const gw_pool_cfg *pc = &s->cfg.pools[pi];
    gw_pool *p = &s->pools[pi];
    static const gw_algo algo[] = { GW_ALGO_SWRR, GW_ALGO_LEASTCONN, GW_ALGO_P2C, GW_ALGO_HASH,
                                    GW_ALGO_LEASTREQ };
    gw_pool_init(p, pc->name, algo[pc->algo]);
    p->try_factor = (uint32_t)s->cfg.try_timeout_factor;
    p->slow_factor = (uint32_t)s->cfg.slow_eject_factor;
    p->try_min_us = s->cfg.try_timeout_min_us;
    p->try_max_us = s->cfg.try_timeout_us;
    p->slow_start_us = pc->slow_start_us;
    p->hash_epsilon = pc->hash_epsilon;
    p->outlier_consec = (uint32_t)pc->outlier.consecutive;
    p->outlier_base_us = pc->outlier.base_ejection_us;
    p->outlier_max_us = pc->outlier.max_ejection_us;
    p->outlier_max_pct = (uint32_t)pc->outlier.max_ejection_percent;
    if (pc->tls && !(p->tls = gw_utls_new(pc, pi, err, errlen)))
        return -1;
    for (size_t b = 0; b < pc->nbackends; b++) {
        const gw_backend_cfg *bc = &pc->backends[b];
        gw_member tmp;
        char e[160];
        if (gw_member_init(&tmp, bc->address, (uint32_t)bc->weight, bc->backup, e, sizeof e) < 0) {
            snprintf(err, errlen, "pools[%zu].backends[%zu].%s", pi, b, e);
            return -1;
        }
        gw_member *m = find_prev(prev, pc->name, tmp.name, bc->backup);
        for (uint32_t k = 0; k < p->n; k++)
            if (p->members[k] == m || strcmp(p->members[k]->name, tmp.name) == 0) {
                snprintf(err, errlen, "pools[%zu].backends[%zu].address: duplicate '%s'",
                         pi, b, tmp.name);
                return -1;
            }
        if (m) {
            gw_member_ref(m);
            atomic_store(&m->weight, (uint32_t)bc->weight);
        } else {
            m = malloc(sizeof *m);
            if (!m) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            memcpy(m, &tmp, sizeof *m);
            atomic_store(&m->refs, 1);
        }
        if (gw_pool_add(p, m) < 0) {
            gw_member_unref(m);
            snprintf(err, errlen, "pools[%zu].backends: more than %d", pi, GW_MAX_MEMBERS);
            return -1;
        }
    }
    if (p->algo == GW_ALGO_HASH && gw_pool_build_ring(p) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int build_route(gw_snap *s, size_t ri, char *err, size_t errlen)
{
    const gw_route_cfg *rc = &s->cfg.routes[ri];
    gw_route *r = &s->routes[ri];
    r->prefix = rc->prefix;
    r->plen = strlen(rc->prefix);
    r->host = rc->host && rc->host[0] ? rc->host : NULL;
    r->pool = rc->pool && rc->pool[0] ? gw_snap_find_pool(s, rc->pool) : -1;
    r->read_pool = rc->read_pool && rc->read_pool[0] ? gw_snap_find_pool(s, rc->read_pool) : -1;
    r->write_pool = rc->write_pool && rc->write_pool[0] ? gw_snap_find_pool(s, rc->write_pool) : -1;
    r->security_headers = rc->security_headers;
    r->cache = rc->cache.enabled ? &rc->cache : NULL;
    r->hsts_max_age = (uint32_t)(rc->hsts_max_age_us / 1000000u);
    r->hsts_sub = rc->hsts_subdomains;
    r->retry_unsafe = rc->retry_unsafe;
    for (size_t k = 0; k < rc->nmethods; k++) {
        int b = method_bit(rc->methods[k]);
        if (b < 0) {
            snprintf(err, errlen, "routes[%zu].methods[%zu]: unknown method '%s'", ri, k, rc->methods[k]);
            return -1;
        }
        r->methods |= 1u << b;
    }
    if (rc->nsplit > GW_MAX_SPLIT) {
        snprintf(err, errlen, "routes[%zu].split: at most %d pools", ri, GW_MAX_SPLIT);
        return -1;
    }
    for (size_t k = 0; k < rc->nsplit; k++) {
        r->split_pool[k] = gw_snap_find_pool(s, rc->split[k].pool);
        r->split_w[k] = (uint32_t)rc->split[k].weight;
        r->split_total += r->split_w[k];
    }
    r->nsplit = (uint32_t)rc->nsplit;
    r->rl_class = -1;
    for (size_t k = 0; rc->rate_limit && k < s->cfg.nrate_limits; k++)
        if (strcmp(s->cfg.rate_limits[k].name, rc->rate_limit) == 0)
            r->rl_class = (int)k;
    return 0;
}

gw_snap *gw_snap_build(const gw_config *cfg, const gw_snap *prev, char *err, size_t errlen)
{
    gw_snap *s = calloc(1, sizeof *s);
    if (!s || cfg_copy(&gw_config_schema, &s->cfg, cfg) < 0) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cfg_error ce;
    memset(&ce, 0, sizeof ce);
    if (cfg_validate(&gw_config_schema, &s->cfg, &ce) < 0) {
        cfg_error_format(&ce, err, errlen);
        gw_snap_free(s);
        return NULL;
    }
    s->gen = prev ? prev->gen + 1 : 1;
    s->npools = s->cfg.npools;
    s->nroutes = s->cfg.nroutes;
    s->nrl = s->cfg.nrate_limits;
    s->pool_cfg = s->cfg.pools;
    s->pools = calloc(s->npools ? s->npools : 1, sizeof *s->pools);
    s->routes = calloc(s->nroutes ? s->nroutes : 1, sizeof *s->routes);
    s->rl = calloc(s->nrl ? s->nrl : 1, sizeof *s->rl);
    if (!s->pools || !s->routes || !s->rl) {
        snprintf(err, errlen, "out of memory");
        gw_snap_free(s);
        return NULL;
    }
    for (size_t i = 0; i < s->npools; i++)
        if (build_pool(s, i, prev, err, errlen) < 0) {
            gw_snap_free(s);
            return NULL;
        }
    for (size_t i = 0; i < s->nrl; i++) {
        s->rl[i].limit = (uint32_t)s->cfg.rate_limits[i].limit;
        s->rl[i].period_us = s->cfg.rate_limits[i].period_us;
    }
    for (size_t i = 0; i < s->nroutes; i++)
        if (build_route(s, i, err, errlen) < 0) {
            gw_snap_free(s);
            return NULL;
        }
    return s;
}

void gw_snap_free(gw_snap *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->pools && i < s->npools; i++) {
        for (uint32_t k = 0; k < s->pools[i].n; k++)
            gw_member_unref(s->pools[i].members[k]);
        gw_pool_free_ring(&s->pools[i]);
        gw_utls_free(s->pools[i].tls);
    }
    free(s->pools);
    free(s->routes);
    free(s->rl);
    cfg_free(&gw_config_schema, &s->cfg);
    free(s);
}

int gw_snap_find_pool(const gw_snap *s, const char *name)
{
    for (size_t i = 0; name && i < s->npools; i++)
        if (strcmp(s->pools[i].name, name) == 0)
            return (int)i;
    return -1;
}

gw_member *gw_snap_find_member(const gw_snap *s, const char *pool, const char *id)
{
    int pi = gw_snap_find_pool(s, pool);
    sock_addr want;
    char e[128];
    if (pi < 0 || sock_addr_parse(id, &want, e, sizeof e) < 0)
        return NULL;
    for (uint32_t i = 0; i < s->pools[pi].n; i++)
        if (sock_addr_equal(&s->pools[pi].members[i]->addr, &want))
            return s->pools[pi].members[i];
    return NULL;
}

int gw_route_match(const gw_snap *s, http_method m, const char *path, size_t plen,
                   const char *host, size_t hlen)
{
    for (size_t i = 0; i < s->nroutes; i++) {
        const gw_route *r = &s->routes[i];
        if (r->methods && !(r->methods & (1u << m)))
            continue;
        if (plen < r->plen || memcmp(path, r->prefix, r->plen) != 0)
            continue;
        /* "/api" matches "/api" and "/api/x", not "/apix" */
        if (r->plen > 1 && r->prefix[r->plen - 1] != '/' && plen > r->plen && path[r->plen] != '/'
            && path[r->plen] != '?')
            continue;
        if (r->host) {
            size_t n = hlen;
            const char *colon = memchr(host, ':', hlen);
            if (colon && host[0] != '[')
                n = (size_t)(colon - host);       /* Host may carry a port */
            if (strlen(r->host) != n || strncasecmp(r->host, host, n) != 0)
                continue;
        }
        return (int)i;
    }
    return -1;
}

int gw_route_pool(const gw_route *r, http_method m, uint64_t rnd)
{
    if (r->nsplit && r->split_total) {
        uint64_t x = rnd % r->split_total;
        for (uint32_t k = 0; k < r->nsplit; k++) {
            if (x < r->split_w[k])
                return r->split_pool[k];
            x -= r->split_w[k];
        }
    }
    if (r->read_pool >= 0 && r->write_pool >= 0) {
        bool read = m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS;
        return read ? r->read_pool : r->write_pool;
    }
    return r->pool;
}

bool gw_method_retryable(const gw_route *r, http_method m)
{
    if (m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS)
        return true;
    return r->retry_unsafe && (m == HTTP_PUT || m == HTTP_DELETE);
}

void gw_rcu_init(gw_rcu *r, unsigned nworkers, gw_snap *first)
{
    memset(r, 0, sizeof *r);
    r->nworkers = nworkers > GW_MAX_WORKERS ? GW_MAX_WORKERS : nworkers;
    atomic_store(&r->cur, first);
    atomic_store(&r->epoch, 1);
    for (unsigned i = 0; i < r->nworkers; i++)
        atomic_store(&r->seen[i], 1);
}

int gw_rcu_publish(gw_rcu *r, gw_snap *s)
{
    if (r->nretired == sizeof r->retired / sizeof r->retired[0]
        && gw_rcu_reclaim(r) == sizeof r->retired / sizeof r->retired[0])
        return -1;
    gw_snap *old = atomic_exchange_explicit(&r->cur, s, memory_order_acq_rel);
    /* Readers that saw `old` stamped an epoch <= e before the bump; once
     * every stamp reaches e+1 they have all let go of it. */
    uint64_t e = atomic_fetch_add_explicit(&r->epoch, 1, memory_order_acq_rel) + 1;
    if (old) {
        r->retired[r->nretired].s = old;
        r->retired[r->nretired].epoch = e;
        r->nretired++;
    }
    return 0;
}

unsigned gw_rcu_reclaim(gw_rcu *r)
{
    uint64_t min = UINT64_MAX;
    for (unsigned i = 0; i < r->nworkers; i++) {
        uint64_t v = atomic_load_explicit(&r->seen[i], memory_order_acquire);
        if (v < min)
            min = v;
    }
    unsigned keep = 0;
    for (unsigned i = 0; i < r->nretired; i++) {
        if (r->retired[i].epoch <= min)
            gw_snap_free(r->retired[i].s);
        else
            r->retired[keep++] = r->retired[i];
    }
    r->nretired = keep;
    return keep;
}

void gw_rcu_destroy(gw_rcu *r)
{
    for (unsigned i = 0; i < r->nretired; i++)
        gw_snap_free(r->retired[i].s);
    r->nretired = 0;
    gw_snap_free(atomic_exchange(&r->cur, NULL));
}
