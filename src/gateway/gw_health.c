/* gw_health.c -- the rules that take backends out of rotation and limit
 * how hard the gateway leans on the ones left.
 *
 * Active checks (rise/fall) run on one thread, so gw_health_sm is plain
 * data. Passive outlier detection and the retry budget are fed by every
 * worker at once, so they live in atomics; their invariants hold under
 * races by construction:
 *  - an ejection is claimed by a CAS on ejected_until_us, so two workers
 *    seeing the fifth failure at once eject once, not twice;
 *  - the max-ejected share is checked before the claim; a race can at worst
 *    let one extra member through, which is the same slack Envoy accepts;
 *  - the retry budget counts retries in flight against requests in flight,
 *    read once each; an overshoot by one retry per racing worker is fine,
 *    a retry storm (the thing the budget exists to stop) is not possible. */
#include "gateway/gw_lb.h"

void gw_health_init(gw_health_sm *h, uint16_t rise, uint16_t fall, bool start_up)
{
    h->rise = rise ? rise : 1;
    h->fall = fall ? fall : 1;
    h->oks = h->fails = 0;
    h->up = start_up;
}

int gw_health_observe(gw_health_sm *h, bool ok)
{
    if (ok) {
        h->fails = 0;
        if (h->oks < UINT16_MAX)
            h->oks++;
        if (!h->up && h->oks >= h->rise) {
            h->up = true;
            return 1;
        }
    } else {
        h->oks = 0;
        if (h->fails < UINT16_MAX)
            h->fails++;
        if (h->up && h->fails >= h->fall) {
            h->up = false;
            return -1;
        }
    }
    return 0;
}

static uint32_t ejected_count(const gw_pool *p, uint64_t now_us)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->n; i++)
        if (atomic_load_explicit(&p->members[i]->ejected_until_us,
                                 memory_order_relaxed) > now_us)
            n++;
    return n;
}

bool gw_outlier_report(gw_pool *p, gw_member *m, bool ok, uint64_t now_us)
{
    if (ok) {
        if (atomic_load_explicit(&m->consec_fail, memory_order_relaxed))
            atomic_store_explicit(&m->consec_fail, 0, memory_order_relaxed);
        return false;
    }
    uint32_t f = atomic_fetch_add_explicit(&m->consec_fail, 1, memory_order_relaxed) + 1;
    if (p->outlier_consec == 0 || f < p->outlier_consec)
        return false;
    uint64_t until = atomic_load_explicit(&m->ejected_until_us, memory_order_relaxed);
    if (until > now_us)
        return false;                       /* already out */
    uint32_t out = ejected_count(p, now_us);
    /* Share cap, but one member may always go: a pool of two with one
     * dead backend must be able to eject it. */
    if (out > 0 && (uint64_t)(out + 1) * 100 > (uint64_t)p->outlier_max_pct * p->n)
        return false;
    uint32_t nej = atomic_load_explicit(&m->ejections, memory_order_relaxed);
    uint64_t dur = p->outlier_base_us;
    for (uint32_t i = 0; i < nej && dur < p->outlier_max_us; i++)
        dur *= 2;
    if (p->outlier_max_us && dur > p->outlier_max_us)
        dur = p->outlier_max_us;
    if (!atomic_compare_exchange_strong(&m->ejected_until_us, &until, now_us + dur))
        return false;                       /* another worker ejected it */
    atomic_fetch_add_explicit(&m->ejections, 1, memory_order_relaxed);
    atomic_store_explicit(&m->consec_fail, 0, memory_order_relaxed);
    /* Back in rotation through slow start, not with a full share at once. */
    atomic_store_explicit(&m->up_since_us, now_us + dur, memory_order_relaxed);
    return true;
}

void gw_retry_budget_init(gw_retry_budget *b, double ratio, uint32_t min_retries)
{
    atomic_init(&b->active, 0);
    atomic_init(&b->retries, 0);
    atomic_init(&b->bank, 0);
    b->ratio = ratio;
    b->min_retries = min_retries;
}

void gw_retry_request_begin(gw_retry_budget *b)
{
    atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);
    int64_t dep = (int64_t)(b->ratio * 1000.0);
    /* Racy cap check: overshooting by a deposit per worker is harmless. */
    if (atomic_load_explicit(&b->bank, memory_order_relaxed) < GW_RETRY_BANK * 1000)
        atomic_fetch_add_explicit(&b->bank, dep, memory_order_relaxed);
}

/* Takes one retry from the bank; false when it holds less than one. */
static bool bank_withdraw(gw_retry_budget *b)
{
    int64_t v = atomic_load_explicit(&b->bank, memory_order_relaxed);
    while (v >= 1000)
        if (atomic_compare_exchange_weak_explicit(&b->bank, &v, v - 1000, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    return false;
}

void gw_retry_request_end(gw_retry_budget *b)
{
    atomic_fetch_sub_explicit(&b->active, 1, memory_order_relaxed);
}

bool gw_retry_try_begin(gw_retry_budget *b)
{
    uint32_t active = atomic_load_explicit(&b->active, memory_order_relaxed);
    uint32_t cap = (uint32_t)(b->ratio * active);
    if (cap < b->min_retries)
        cap = b->min_retries;
    uint32_t r = atomic_fetch_add_explicit(&b->retries, 1, memory_order_relaxed);
    if (r + 1 > cap && !bank_withdraw(b)) {
        atomic_fetch_sub_explicit(&b->retries, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

void gw_retry_end(gw_retry_budget *b)
{
    atomic_fetch_sub_explicit(&b->retries, 1, memory_order_relaxed);
}
