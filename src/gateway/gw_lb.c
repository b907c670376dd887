/* gw_lb.c -- backend selection.
 *
 * Each pick first gathers the eligible members (admin state ready, healthy,
 * not ejected, not slow -- but for a slow member's probe turn) into a stack
 * array with their effective weights; backups are considered only when that
 * set is empty, so they take traffic exactly when every primary is down.
 * The algorithms then work on that set:
 *
 *  - least request (the default): power of two choices where a member's
 *    cost is its peak-EWMA latency times (in-flight + 1), per unit of
 *    weight (Finagle's and Linkerd's balancer). In-flight alone cannot tell
 *    a member answering in 1 ms from one answering in 100 ms until the slow
 *    one has piled up requests; latency alone herds every worker onto the
 *    same fastest member. A member with no sample yet costs nothing while
 *    idle and a large penalty once it holds a request, so a new member gets
 *    one request, then its real cost. A service that answers in bursts (a
 *    thread pool under one interpreter lock: FastAPI `def` endpoints) gets
 *    a lower tail from round robin: any load-aware pick refills the member
 *    that just answered, turning its bursts of answers into bursts of
 *    arrivals (docs/gateway.md, "When to choose round_robin").
 *  - smooth weighted round-robin (nginx's): every pick adds each candidate's
 *    weight to its current weight and takes the largest, which then pays back
 *    the total. Spreads a 5:1:1 pool as a,a,b,a,c,a,a rather than in bursts.
 *  - weighted least-connections: smallest in-flight/weight, compared by
 *    cross-multiplication so no division; ties rotate so equal members share.
 *  - power of two choices: two random distinct candidates, keep the one with
 *    fewer in-flight per weight. Near least-conn quality without a full scan
 *    and without herding when workers see the same counters at once.
 *  - consistent hashing with bounded loads (Mirrokni et al.): walk the ring
 *    clockwise from the key's hash and take the first member whose in-flight
 *    count is under ceil((1+eps) * (total+1) * w/W), so a hot key spills to
 *    the next member instead of overloading its home.
 *
 * Slow start ramps a member's weight linearly from 1 to its weight over
 * slow_start_us after it became ready or recovered (up_since_us). */
#include "gateway/gw_lb.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t gw_hash64(const void *data, size_t len)
{
    /* FNV-1a, then a murmur finaliser: FNV alone clusters on short keys
     * like "user_id=1..9", which would skew the ring. */
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

void gw_lb_cursor_init(gw_lb_cursor *c, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

int gw_member_init(gw_member *m, const char *addr, uint32_t weight, bool backup,
                   char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (weight == 0 || weight > 1000) {
        snprintf(err, errlen, "weight: expected 1..1000, got %u", weight);
        return -1;
    }
    char e[128];
    if (sock_addr_parse(addr, &m->addr, e, sizeof e) < 0) {
        snprintf(err, errlen, "address: %s", e);
        return -1;
    }
    sock_addr_format(&m->addr, m->name, sizeof m->name);
    atomic_init(&m->weight, weight);
    m->backup = backup;
    m->id_hash = gw_hash64(m->name, strlen(m->name));
    atomic_init(&m->state, GW_ST_READY);
    atomic_init(&m->healthy, true);
    return 0;
}

void gw_pool_init(gw_pool *p, const char *name, gw_algo algo)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->algo = algo;
    p->hash_epsilon = 0.25;
    p->outlier_consec = 5;
    p->outlier_base_us = 30ULL * 1000000;
    p->outlier_max_us = 300ULL * 1000000;
    p->outlier_max_pct = 50;
}

int gw_pool_add(gw_pool *p, gw_member *m)
{
    if (p->n >= GW_MAX_MEMBERS)
        return -1;
    p->members[p->n++] = m;
    return 0;
}

static int ring_cmp(const void *a, const void *b)
{
    uint64_t x = ((const gw_ring_point *)a)->h, y = ((const gw_ring_point *)b)->h;
    return x < y ? -1 : x > y;
}

int gw_pool_build_ring(gw_pool *p)
{
    gw_pool_free_ring(p);
    uint32_t maxw = 1;
    for (uint32_t i = 0; i < p->n; i++)
        if (p->members[i]->weight > maxw)
            maxw = p->members[i]->weight;
    /* 160 points for the heaviest member keeps the ring's share error
     * around 10% while bounding it at 40k points for a full pool. */
    uint32_t total = 0, pts[GW_MAX_MEMBERS];
    for (uint32_t i = 0; i < p->n; i++) {
        pts[i] = (uint32_t)(160ULL * p->members[i]->weight / maxw);
        if (pts[i] < 16)
            pts[i] = 16;
        total += pts[i];
    }
    if (total == 0)
        return 0;
    p->ring = malloc(sizeof *p->ring * total);
    if (!p->ring)
        return -1;
    uint32_t k = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        for (uint32_t j = 0; j < pts[i]; j++) {
            uint64_t seed[2] = { p->members[i]->id_hash, j };
            p->ring[k].h = gw_hash64(seed, sizeof seed);
            p->ring[k].member = i;
            k++;
        }
    }
    qsort(p->ring, total, sizeof *p->ring, ring_cmp);
    p->nring = total;
    return 0;
}

void gw_pool_free_ring(gw_pool *p)
{
    free(p->ring);
    p->ring = NULL;
    p->nring = 0;
}

/* Ready, healthy and not ejected by outlier detection; slowness aside. */
static bool member_up(const gw_member *m, uint64_t now_us)
{
    return atomic_load_explicit(&m->state, memory_order_relaxed) == GW_ST_READY
        && atomic_load_explicit(&m->healthy, memory_order_relaxed)
        && atomic_load_explicit(&m->ejected_until_us, memory_order_relaxed) <= now_us;
}

bool gw_member_eligible(const gw_member *m, uint64_t now_us)
{
    return member_up(m, now_us) && !atomic_load_explicit(&m->slow, memory_order_relaxed);
}

uint32_t gw_member_eff_weight(const gw_pool *p, const gw_member *m, uint64_t now_us)
{
    uint32_t full = atomic_load_explicit(&m->weight, memory_order_relaxed);
    uint64_t since = atomic_load_explicit(&m->up_since_us, memory_order_relaxed);
    if (p->slow_start_us == 0 || since == 0 || now_us >= since + p->slow_start_us)
        return full;
    if (now_us <= since)
        return 1;
    uint64_t w = (uint64_t)full * (now_us - since) / p->slow_start_us;
    return w ? (uint32_t)w : 1;
}

typedef struct cands {
    uint32_t n;
    uint32_t idx[GW_MAX_MEMBERS];
    uint32_t w[GW_MAX_MEMBERS];
    bool     in[GW_MAX_MEMBERS];     /* by member index, for the ring walk */
} cands;

static void gather(const gw_pool *p, int exclude, uint64_t now_us, cands *c)
{
    c->n = 0;
    memset(c->in, 0, sizeof(bool) * p->n);
    for (int backup = 0; backup <= 1 && c->n == 0; backup++) {
        for (uint32_t i = 0; i < p->n; i++) {
            const gw_member *m = p->members[i];
            if (m->backup != (backup == 1) || (int)i == exclude || !member_up(m, now_us))
                continue;
            if (atomic_load_explicit(&m->slow, memory_order_relaxed)
                && !gw_slow_probe(p->members[i], now_us))
                continue;
            c->idx[c->n] = i;
            c->w[c->n] = gw_member_eff_weight(p, m, now_us);
            c->in[i] = true;
            c->n++;
        }
    }
}

static uint32_t inflight(const gw_pool *p, uint32_t i)
{
    return atomic_load_explicit(&p->members[i]->inflight, memory_order_relaxed);
}

/* a has less load per weight than b: ia/wa < ib/wb without division. */
static bool lighter(uint32_t ia, uint32_t wa, uint32_t ib, uint32_t wb)
{
    return (uint64_t)ia * wb < (uint64_t)ib * wa;
}

static int pick_swrr(const gw_pool *p, gw_lb_cursor *cur, const cands *c)
{
    int64_t total = 0;
    uint32_t best = c->idx[0];      /* c->n >= 1: gw_lb_pick checked */
    for (uint32_t k = 0; k < c->n; k++) {
        uint32_t i = c->idx[k];
        cur->cw[i] += c->w[k];
        total += c->w[k];
        if (cur->cw[i] > cur->cw[best])
            best = i;
    }
    cur->cw[best] -= total;
    (void)p;
    return (int)best;
}

static int pick_leastconn(const gw_pool *p, gw_lb_cursor *cur, const cands *c)
{
    uint32_t start = cur->rr++ % c->n;
    uint32_t bk = start;
    for (uint32_t s = 1; s < c->n; s++) {
        uint32_t k = (start + s) % c->n;
        if (lighter(inflight(p, c->idx[k]), c->w[k], inflight(p, c->idx[bk]), c->w[bk]))
            bk = k;
    }
    return (int)c->idx[bk];
}

/* Least request's cost of member i (nanoseconds x requests): its peak
 * EWMA, decayed for the time since the last sample (Finagle reads it
 * through observe(0)), times in-flight + 1. */
#define LEASTREQ_PENALTY 1e12
static double leastreq_cost(const gw_pool *p, uint32_t i, uint64_t now_us)
{
    const gw_member *m = p->members[i];
    uint32_t in = inflight(p, i);
    double e = (double)atomic_load_explicit(&m->ewma_ns, memory_order_relaxed);
    if (e == 0.0)
        return in ? LEASTREQ_PENALTY * in : 0.0;
    uint64_t at = atomic_load_explicit(&m->ewma_at_us, memory_order_relaxed);
    if (now_us > at)
        e *= exp(-(double)(now_us - at) / (double)GW_EWMA_DECAY_US);
    return e * (double)(in + 1);
}

/* Power of two choices: two random distinct candidates, the lighter wins.
 * `ewma` weighs in-flight by latency (least request), else in-flight alone. */
static int pick_p2c(const gw_pool *p, gw_lb_cursor *cur, const cands *c, bool ewma,
                    uint64_t now_us)
{
    if (c->n == 1)
        return (int)c->idx[0];
    uint32_t a = (uint32_t)(rng_next(&cur->rng) % c->n);
    uint32_t b = (uint32_t)(rng_next(&cur->rng) % (c->n - 1));
    if (b >= a)
        b++;
    bool b_wins;
    if (ewma)
        b_wins = leastreq_cost(p, c->idx[b], now_us) * c->w[a]
                 < leastreq_cost(p, c->idx[a], now_us) * c->w[b];
    else
        b_wins = lighter(inflight(p, c->idx[b]), c->w[b], inflight(p, c->idx[a]), c->w[a]);
    return (int)c->idx[b_wins ? b : a];
}

static int pick_hash(const gw_pool *p, gw_lb_cursor *cur, const cands *c,
                     const void *key, size_t klen, uint64_t now_us)
{
    if (!key || p->nring == 0)
        return pick_p2c(p, cur, c, true, now_us);
    uint64_t tot_in = 0, tot_w = 0;
    uint32_t wof[GW_MAX_MEMBERS];
    for (uint32_t k = 0; k < c->n; k++) {
        tot_in += inflight(p, c->idx[k]);
        tot_w += c->w[k];
        wof[c->idx[k]] = c->w[k];
    }
    uint64_t h = gw_hash64(key, klen);
    /* lower bound on the sorted ring */
    uint32_t lo = 0, hi = p->nring;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (p->ring[mid].h < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    int first = -1;
    for (uint32_t s = 0; s < p->nring; s++) {
        const gw_ring_point *pt = &p->ring[(lo + s) % p->nring];
        if (!c->in[pt->member])
            continue;
        if (first < 0)
            first = (int)pt->member;
        double cap = ceil((1.0 + p->hash_epsilon) * (double)(tot_in + 1)
                          * wof[pt->member] / (double)tot_w);
        if ((double)inflight(p, pt->member) + 1 <= cap)
            return (int)pt->member;
    }
    /* Unreachable in theory (some member is always under its share), but
     * a racing counter could make every check fail: stay on the home. */
    return first >= 0 ? first : pick_p2c(p, cur, c, true, now_us);
}

int gw_lb_pick(const gw_pool *p, gw_lb_cursor *cur, const void *key, size_t klen,
               int exclude, uint64_t now_us)
{
    cands c;
    gather(p, exclude, now_us, &c);
    if (c.n == 0)
        return -1;
    switch (p->algo) {
    case GW_ALGO_SWRR:      return pick_swrr(p, cur, &c);
    case GW_ALGO_LEASTCONN: return pick_leastconn(p, cur, &c);
    case GW_ALGO_P2C:       return pick_p2c(p, cur, &c, false, now_us);
    case GW_ALGO_LEASTREQ:  return pick_p2c(p, cur, &c, true, now_us);
    case GW_ALGO_HASH:      return pick_hash(p, cur, &c, key, klen, now_us);
    }
    return -1;
}

void gw_sticky_value(const gw_member *m, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++)
        out[i] = hex[(m->id_hash >> (60 - 4 * i)) & 15];
    out[16] = '\0';
}

int gw_sticky_find(const gw_pool *p, const char *val, size_t len, uint64_t now_us)
{
    if (len != 16)
        return -1;
    uint64_t h = 0;
    for (size_t i = 0; i < 16; i++) {
        char ch = val[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else
            return -1;
        h = (h << 4) | d;
    }
    for (uint32_t i = 0; i < p->n; i++)
        if (p->members[i]->id_hash == h)
            return gw_member_eligible(p->members[i], now_us) ? (int)i : -1;
    return -1;
}
