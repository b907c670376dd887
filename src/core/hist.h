/* hist.h -- latency histogram with log-linear buckets (HDR-style).
 *
 * Values are microseconds from 1 us to 60 s (larger values are clamped
 * into the top bucket and counted in `max`). Each power of two is split into
 * HIST_SUB linear sub-buckets, so any recorded value is reported within
 * ~1/HIST_SUB (< 1 %) of itself. Recording is one increment with no
 * branches on the value's magnitude beyond a clz; a histogram is a flat
 * array, so merging is an addition per bucket.
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
    uint64_t min_us;
    uint64_t max_us;
    uint64_t buckets[HIST_BUCKETS];
} hist;

void     hist_init(hist *h);
void     hist_record(hist *h, uint64_t us);
void     hist_record_n(hist *h, uint64_t us, uint64_t n);
/* dst += src */
void     hist_merge(hist *dst, const hist *src);
/* dst = a - b (per bucket; for deltas between two scrapes of a counter-like
 * histogram). min/max of the delta are approximated from its buckets. */
void     hist_delta(hist *dst, const hist *a, const hist *b);
/* The value at quantile q in [0,1] (0.95 for p95); 0 when empty. */
uint64_t hist_quantile(const hist *h, double q);
double   hist_mean(const hist *h);
/* Number of recorded values <= us (for Prometheus cumulative buckets). */
uint64_t hist_count_le(const hist *h, uint64_t us);

/* Bucket arithmetic, exposed for tests and for exporters. */
size_t   hist_bucket_of(uint64_t us);
uint64_t hist_bucket_low(size_t idx);   /* smallest value in the bucket */
uint64_t hist_bucket_high(size_t idx);  /* largest value in the bucket */

#endif
