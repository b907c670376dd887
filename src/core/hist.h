/* hist.h -- latency histogram with log-linear buckets (HDR-style).
 *
 * Values are microseconds from 1 us to 60 s. Larger values are counted in
 * the top bucket, [66.5 s, 67.1 s], which no value <= HIST_MAX_US reaches,
 * so they stay above a 60 s bound; `sum_us` and `max_us` keep the true
 * value. Values below HIST_SUB have a bucket each; above, every
 * power of two [2^k, 2^(k+1)) is split into HIST_SUB/2 linear sub-buckets
 * of width 2^(k-HIST_SUB_BITS+1), i.e. width/low <= 1/64. Reporting the
 * bucket midpoint therefore keeps the error below half a width: < 1/128
 * (0.78 %) of the value. The top octave is k = HIST_SUB_BITS+HIST_OCTAVES-2
 * = 25, so the buckets end at 2^26 us (67 s) > HIST_MAX_US.
 *
 * Recording is a clz, a shift and an increment, no loop; a histogram is a
 * flat array, so merging is an addition per bucket.
 *
 * Recording is not atomic: each thread records into its own histogram and
 * readers merge copies (see metrics.h for the shared, thread-safe form). */
#ifndef HSCALE_CORE_HIST_H
#define HSCALE_CORE_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 7                       /* 128 sub-buckets per octave */
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_MAX_US   60000000ull             /* 60 s */
#define HIST_OCTAVES  20                      /* 2^(7+20-1) us > 60 s */
#define HIST_BUCKETS  (HIST_SUB + (HIST_OCTAVES - 1) * (HIST_SUB / 2))

typedef struct hist {
    uint64_t count;
    uint64_t sum_us;
    uint64_t min_us;     /* 0 when empty */
    uint64_t max_us;     /* 0 when empty */
    uint64_t buckets[HIST_BUCKETS];
} hist;

void     hist_init(hist *h);
void     hist_record(hist *h, uint64_t us);
void     hist_record_n(hist *h, uint64_t us, uint64_t n);
/* dst += src */
void     hist_merge(hist *dst, const hist *src);
/* dst = a - b (per bucket, saturating at 0; for deltas between two scrapes
 * of a counter-like histogram). dst may alias a or b. min/max of the delta
 * are approximated from its buckets (low edge of the first, high edge of
 * the last non-empty one, bounded by a's min/max). */
void     hist_delta(hist *dst, const hist *a, const hist *b);
/* The value at quantile q in [0,1] (0.95 for p95); 0 when empty. It is the
 * midpoint of the bucket holding the ceil(q*count)-th smallest value,
 * bounded by min/max (so q=0 gives min and q=1 gives max exactly). */
uint64_t hist_quantile(const hist *h, double q);
double   hist_mean(const hist *h);
/* Number of recorded values <= us (for Prometheus cumulative buckets), at
 * bucket resolution: a value equal to `us` is always counted, values in
 * the same bucket above it (< 1.6 % larger) are counted too. */
uint64_t hist_count_le(const hist *h, uint64_t us);

/* Bucket arithmetic, exposed for tests and for exporters. */
size_t   hist_bucket_of(uint64_t us);
uint64_t hist_bucket_low(size_t idx);   /* smallest value in the bucket */
uint64_t hist_bucket_high(size_t idx);  /* largest value in the bucket */

/* hist_bucket_of, inlined for hot paths (metrics.c records through it).
 * OR-ing in HIST_SUB-1 makes values below HIST_SUB behave as octave
 * HIST_SUB_BITS-1 with shift 0, so they index themselves, and keeps clz's
 * argument non-zero. */
static inline size_t hist_index(uint64_t us)
{
    if (us > HIST_MAX_US)
        us = (1ull << (HIST_SUB_BITS + HIST_OCTAVES - 1)) - 1;   /* top bucket */
    unsigned k = 63u - (unsigned)__builtin_clzll(us | (HIST_SUB - 1));
    unsigned shift = k - (HIST_SUB_BITS - 1);
    return (size_t)shift * (HIST_SUB / 2) + (size_t)(us >> shift);
}

#endif
