/* gw_latency.c -- what the gateway learns from its backends' response
 * times, and the three uses it makes of it:
 *
 *  - a peak EWMA of each member's latency (Finagle's PeakEwma): a sample
 *    above the estimate replaces it at once, so a member that slows down is
 *    avoided from its first slow answer; below, the estimate follows with a
 *    weight that depends on the time since the last sample, not on the
 *    number of samples, and it decays towards 0 while nobody looks, so a
 *    member that had one bad moment is tried again (the least-request
 *    algorithm, gw_lb.c, multiplies it by in-flight requests + 1);
 *  - a per-worker recent p99 of the pool (gw_lat_win), from which the
 *    per-try timeout of idempotent requests and the slow-member threshold
 *    are derived (factor x p99, with a floor, capped by try_timeout);
 *  - slow-member ejection: a member that holds requests (two or more) and
 *    has answered nothing for that threshold while another member answers
 *    stops getting new requests until it answers again; one request a
 *    second still goes to it (a probe), and its answer readmits it.
 *
 * Everything here is lock-free and allocation-free: the window is owned by
 * one worker, the member fields are relaxed atomics where a lost update
 * only blurs an estimate, and the one transition that must happen once
 * (into `slow`) is a CAS. */
#include "gateway/gw_lb.h"

#include <math.h>

/* 4 buckets per octave: index of a value in microseconds. */
static unsigned lat_index(uint64_t us)
{
    if (us < 4)
        return (unsigned)us;
    if (us >= (1ull << 27))
        us = (1ull << 27) - 1;
    unsigned k = 63u - (unsigned)__builtin_clzll(us);        /* 2..26 */
    return 4u + (k - 2u) * 4u + (unsigned)((us >> (k - 2u)) & 3u);
}

/* The largest value of bucket i: a p99 reported high makes timeouts err
 * on the long side. */
static uint64_t lat_high(unsigned i)
{
    if (i < 4)
        return i;
    unsigned k = (i - 4u) / 4u + 2u, sub = (i - 4u) % 4u;
    return ((uint64_t)(5u + sub) << (k - 2u)) - 1u;
}

static uint64_t lat_compute_p99(const gw_lat_win *w)
{
    if (w->n < GW_LAT_MIN_SAMPLES)
        return 0;
    uint64_t want = (uint64_t)w->n - (uint64_t)w->n / 100u, seen = 0;
    for (unsigned i = 0; i < GW_LAT_BUCKETS; i++) {
        seen += w->cnt[i];
        if (seen >= want)
            return lat_high(i) ? lat_high(i) : 1;
    }
    return lat_high(GW_LAT_BUCKETS - 1);
}

void gw_lat_record(gw_lat_win *w, uint64_t us, uint64_t now_us)
{
    if (now_us >= w->next_us) {
        if (w->next_us) {
            w->p99_us = lat_compute_p99(w);
            /* A quarter off per elapsed period (a long quiet spell empties it). */
            uint64_t periods = (now_us - w->next_us) / GW_LAT_PERIOD_US + 1;
            w->n = 0;
            for (unsigned i = 0; i < GW_LAT_BUCKETS; i++) {
                uint32_t c = w->cnt[i];
                for (uint64_t k = 0; k < periods && c; k++)
                    c -= (c + 3u) / 4u;
                w->cnt[i] = c;
                w->n += c;
            }
        }
        w->next_us = now_us + GW_LAT_PERIOD_US;
    }
    unsigned i = lat_index(us);
    if (w->cnt[i] < UINT32_MAX / 2) {
        w->cnt[i]++;
        w->n++;
    }
}

uint64_t gw_lat_p99(const gw_lat_win *w)
{
    return w->p99_us;
}

void gw_member_observe(gw_member *m, uint64_t latency_us, uint64_t now_us)
{
    uint64_t s = latency_us * 1000u + 1u;     /* never 0: 0 means "no sample yet" */
    uint64_t old = atomic_load_explicit(&m->ewma_ns, memory_order_relaxed);
    uint64_t at = atomic_load_explicit(&m->ewma_at_us, memory_order_relaxed);
    uint64_t nv = s;
    if (old && s < old) {
        double dt = now_us > at ? (double)(now_us - at) : 0.0;
        double w = exp(-dt / (double)GW_EWMA_DECAY_US);
        nv = (uint64_t)((double)old * w + (double)s * (1.0 - w)) + 1u;
    }
    atomic_store_explicit(&m->ewma_ns, nv, memory_order_relaxed);
    atomic_store_explicit(&m->ewma_at_us, now_us, memory_order_relaxed);
}

bool gw_member_answered(gw_member *m, uint64_t now_us)
{
    atomic_store_explicit(&m->progress_us, now_us, memory_order_relaxed);
    bool was = true;
    return atomic_load_explicit(&m->slow, memory_order_relaxed)
        && atomic_compare_exchange_strong(&m->slow, &was, false);
}

uint64_t gw_lat_threshold(const gw_pool *p, const gw_lat_win *w, uint32_t factor)
{
    uint64_t p99 = w ? w->p99_us : 0;
    if (!factor || !p99)
        return 0;
    uint64_t t = p99 * factor;
    if (t < p->try_min_us)
        t = p->try_min_us;
    if (p->try_max_us && t > p->try_max_us)
        t = p->try_max_us;
    return t;
}

/* Answers, or has nothing to answer: a member that shows the pool works. */
static bool answering(const gw_member *o, uint64_t thr_us, uint64_t now_us)
{
    if (atomic_load_explicit(&o->state, memory_order_relaxed) != GW_ST_READY
        || !atomic_load_explicit(&o->healthy, memory_order_relaxed)
        || atomic_load_explicit(&o->slow, memory_order_relaxed))
        return false;
    return atomic_load_explicit(&o->inflight, memory_order_relaxed) == 0
        || now_us < atomic_load_explicit(&o->progress_us, memory_order_relaxed) + thr_us;
}

bool gw_member_stuck(const gw_member *m, uint64_t since_us, uint64_t window_us, uint64_t now_us)
{
    if (atomic_load_explicit(&m->slow, memory_order_relaxed))
        return true;
    uint64_t progress = atomic_load_explicit(&m->progress_us, memory_order_relaxed);
    bool answering = progress > since_us && now_us < progress + window_us;
    return !answering && atomic_load_explicit(&m->inflight, memory_order_relaxed) >= 2;
}

bool gw_slow_check(const gw_pool *p, gw_member *m, uint64_t thr_us, uint64_t now_us)
{
    /* Two requests at least: one slow request alone (a report, an export)
     * looks the same as a hung member, and is not one. */
    if (!thr_us || atomic_load_explicit(&m->slow, memory_order_relaxed)
        || atomic_load_explicit(&m->inflight, memory_order_relaxed) < 2
        || now_us < atomic_load_explicit(&m->progress_us, memory_order_relaxed) + thr_us)
        return false;
    /* Everyone stalled (a shared database, the network) is not one slow
     * member: ejecting them all would only turn slowness into 503s. */
    bool others = false;
    for (uint32_t i = 0; i < p->n && !others; i++)
        others = p->members[i] != m && answering(p->members[i], thr_us, now_us);
    if (!others)
        return false;
    bool was = false;
    if (!atomic_compare_exchange_strong(&m->slow, &was, true))
        return false;
    atomic_store_explicit(&m->slow_probe_us, now_us + GW_SLOW_PROBE_US, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->slow_ejections, 1, memory_order_relaxed);
    return true;
}

bool gw_slow_probe(gw_member *m, uint64_t now_us)
{
    uint64_t at = atomic_load_explicit(&m->slow_probe_us, memory_order_relaxed);
    return now_us >= at
        && atomic_compare_exchange_strong(&m->slow_probe_us, &at, now_us + GW_SLOW_PROBE_US);
}
