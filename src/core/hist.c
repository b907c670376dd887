/* hist.c -- log-linear latency histogram (see hist.h for the bucket layout
 * and its error bound).
 *
 * Invariants: count == sum of buckets; min_us/max_us are 0 when count is 0
 * and the true extremes otherwise (merge and record keep them exact, delta
 * approximates them). Recording touches four words and one bucket and has
 * no loop; everything that walks the buckets is a reader's job. */
#include "core/hist.h"

#include <math.h>
#include <string.h>

void hist_init(hist *h)
{
    memset(h, 0, sizeof *h);
}

size_t hist_bucket_of(uint64_t us)
{
    return hist_index(us);
}

uint64_t hist_bucket_low(size_t idx)
{
    if (idx >= HIST_BUCKETS)
        idx = HIST_BUCKETS - 1;
    if (idx < HIST_SUB)
        return idx;
    unsigned shift = (unsigned)(idx / (HIST_SUB / 2)) - 1;
    uint64_t sub = idx % (HIST_SUB / 2) + HIST_SUB / 2;
    return sub << shift;
}

uint64_t hist_bucket_high(size_t idx)
{
    if (idx >= HIST_BUCKETS)
        idx = HIST_BUCKETS - 1;
    if (idx < HIST_SUB)
        return idx;
    unsigned shift = (unsigned)(idx / (HIST_SUB / 2)) - 1;
    return hist_bucket_low(idx) + (1ull << shift) - 1;
}

/* The representative value of a bucket: its midpoint, so the error is at
 * most half a bucket width (< 1/128 of the value). */
static uint64_t bucket_mid(size_t idx)
{
    uint64_t lo = hist_bucket_low(idx);
    return lo + (hist_bucket_high(idx) - lo) / 2;
}

void hist_record_n(hist *h, uint64_t us, uint64_t n)
{
    if (n == 0)
        return;
    /* The comparisons compile to cmovs; an empty histogram's min of 0 must
     * not win, hence the count test. */
    uint64_t mn = h->count ? h->min_us : UINT64_MAX;
    h->min_us = us < mn ? us : mn;
    h->max_us = us > h->max_us ? us : h->max_us;
    h->count += n;
    h->sum_us += us * n;
    h->buckets[hist_index(us)] += n;
}

void hist_record(hist *h, uint64_t us)
{
    uint64_t mn = h->count ? h->min_us : UINT64_MAX;
    h->min_us = us < mn ? us : mn;
    h->max_us = us > h->max_us ? us : h->max_us;
    h->count++;
    h->sum_us += us;
    h->buckets[hist_index(us)]++;
}

void hist_merge(hist *dst, const hist *src)
{
    if (src->count == 0)
        return;
    if (dst->count == 0 || src->min_us < dst->min_us)
        dst->min_us = src->min_us;
    if (src->max_us > dst->max_us)
        dst->max_us = src->max_us;
    dst->count += src->count;
    dst->sum_us += src->sum_us;
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
}

void hist_delta(hist *dst, const hist *a, const hist *b)
{
    /* Read a's extremes before dst (which may alias a) is overwritten. */
    uint64_t amin = a->min_us, amax = a->max_us;
    uint64_t count = 0;
    size_t first = HIST_BUCKETS, last = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        uint64_t x = a->buckets[i], y = b->buckets[i];
        uint64_t d = x > y ? x - y : 0;
        dst->buckets[i] = d;
        if (d) {
            if (first == HIST_BUCKETS)
                first = i;
            last = i;
            count += d;
        }
    }
    dst->sum_us = a->sum_us > b->sum_us ? a->sum_us - b->sum_us : 0;
    dst->count = count;
    if (count == 0) {
        dst->min_us = dst->max_us = 0;
        dst->sum_us = 0;
        return;
    }
    uint64_t lo = hist_bucket_low(first), hi = hist_bucket_high(last);
    if (last == HIST_BUCKETS - 1 || hi > amax)
        hi = amax;   /* the top bucket also holds clamped values */
    dst->min_us = lo < amin ? amin : lo;
    dst->max_us = hi;
}

uint64_t hist_quantile(const hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (!(q > 0))            /* also NaN */
        return h->min_us;
    if (q >= 1)
        return h->max_us;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    size_t i = 0;
    for (; i < HIST_BUCKETS - 1; i++) {
        seen += h->buckets[i];
        if (seen >= rank)
            break;
    }
    uint64_t v = bucket_mid(i);
    if (v < h->min_us)
        v = h->min_us;
    if (v > h->max_us)
        v = h->max_us;
    return v;
}

double hist_mean(const hist *h)
{
    return h->count ? (double)h->sum_us / (double)h->count : 0.0;
}

uint64_t hist_count_le(const hist *h, uint64_t us)
{
    if (us >= h->max_us)
        return h->count;
    size_t top = hist_index(us);
    uint64_t n = 0;
    for (size_t i = 0; i <= top; i++)
        n += h->buckets[i];
    return n;
}
