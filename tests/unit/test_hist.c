/* test_hist.c -- latency histogram: bucket layout (contiguous, covering
 * 60 s), < 1 % quantile error against exact sorted data for uniform and
 * lognormal series across 1 us..60 s, quantiles of 1..1000, empty and
 * clamped values, merge == recording into one, scrape deltas, count_le. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/hist.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;       /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 2685821657736338717ull;
}

static double rnd01(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

static hist *hnew(void)
{
    hist *h = malloc(sizeof *h);
    cr_assert(h);
    hist_init(h);
    return h;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- bucket layout ---------------------------------------------------- */

Test(hist, buckets_are_contiguous_and_cover_60s)
{
    cr_assert_eq(hist_bucket_low(0), 0);
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        uint64_t lo = hist_bucket_low(i), hi = hist_bucket_high(i);
        cr_assert_leq(lo, hi, "bucket %zu", i);
        /* Above HIST_MAX_US everything goes to the top bucket. */
        size_t want = lo > HIST_MAX_US ? HIST_BUCKETS - 1 : i;
        cr_assert_eq(hist_bucket_of(lo), want, "low edge of %zu", i);
        want = hi > HIST_MAX_US ? HIST_BUCKETS - 1 : i;
        cr_assert_eq(hist_bucket_of(hi), want, "high edge of %zu", i);
        if (i + 1 < HIST_BUCKETS)
            cr_assert_eq(hist_bucket_low(i + 1), hi + 1, "gap after bucket %zu", i);
        /* width 1 below HIST_SUB, else width / low <= 1/64: the midpoint is
         * within 1/128 of any value in the bucket */
        if (lo < HIST_SUB)
            cr_assert_eq(hi, lo);
        else
            cr_assert_leq((double)(hi - lo + 1) / (double)lo, 1.0 / 64, "bucket %zu too wide", i);
    }
    cr_assert_lt(hist_bucket_of(HIST_MAX_US), HIST_BUCKETS - 1);
    cr_assert_geq(hist_bucket_high(HIST_BUCKETS - 2), HIST_MAX_US);
    cr_assert_eq(hist_bucket_of(HIST_MAX_US + 1), HIST_BUCKETS - 1);
    cr_assert_eq(hist_bucket_of(UINT64_MAX), HIST_BUCKETS - 1);
    for (uint64_t v = 0; v < HIST_SUB; v++)
        cr_assert_eq(hist_bucket_of(v), v, "small values are exact");
}

Test(hist, every_value_reported_within_1pct)
{
    /* Every value's bucket midpoint, stepping ~0.1 % across 1 us..60 s. */
    for (double d = 1; d <= (double)HIST_MAX_US; d = d * 1.001 + 1) {
        uint64_t v = (uint64_t)d;
        hist h;
        hist_init(&h);
        hist_record(&h, v);
        hist_record(&h, 0);
        hist_record(&h, UINT64_MAX / 2);
        uint64_t q = hist_quantile(&h, 0.5);
        cr_assert_lt(fabs((double)q - (double)v) / (double)v, 0.01, "v=%llu got %llu",
                     (unsigned long long)v, (unsigned long long)q);
    }
}

/* ---- quantiles against exact data ------------------------------------ */

static void check_series(uint64_t *v, size_t n, const char *what)
{
    hist *h = hnew();
    for (size_t i = 0; i < n; i++)
        hist_record(h, v[i]);
    qsort(v, n, sizeof *v, cmp_u64);
    static const double qs[] = { 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999 };
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        size_t rank = (size_t)ceil(qs[k] * (double)n);
        uint64_t exact = v[rank - 1];
        uint64_t got = hist_quantile(h, qs[k]);
        double err = fabs((double)got - (double)exact) / (double)exact;
        cr_assert_lt(err, 0.01, "%s q=%g exact=%llu got=%llu err=%.4f", what, qs[k],
                     (unsigned long long)exact, (unsigned long long)got, err);
    }
    cr_assert_eq(hist_quantile(h, 0), v[0]);
    cr_assert_eq(hist_quantile(h, 1), v[n - 1]);
    cr_assert_eq(h->count, n);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    cr_assert_float_eq(hist_mean(h), sum / (double)n, 1e-6 * sum / (double)n);
    free(h);
}

Test(hist, uniform_log_series_error_below_1pct)
{
    /* Log-uniform over 1 us..60 s: every octave equally populated. */
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof *v);
    cr_assert(v);
    for (size_t i = 0; i < n; i++)
        v[i] = (uint64_t)exp(rnd01() * log((double)HIST_MAX_US)) + 1;
    check_series(v, n, "log-uniform");
    for (size_t i = 0; i < n; i++)
        v[i] = 1 + rnd() % HIST_MAX_US;
    check_series(v, n, "uniform");
    free(v);
}

Test(hist, lognormal_series_error_below_1pct)
{
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof *v);
    cr_assert(v);
    for (size_t i = 0; i < n; i++) {
        /* Box-Muller; median 2 ms, sigma 1.5 (tails at us and tens of s). */
        double z = sqrt(-2 * log(1 - rnd01())) * cos(2 * M_PI * rnd01());
        double x = exp(log(2000.0) + 1.5 * z);
        if (x < 1)
            x = 1;
        if (x > (double)HIST_MAX_US)
            x = (double)HIST_MAX_US;
        v[i] = (uint64_t)x;
    }
    check_series(v, n, "lognormal");
    free(v);
}

Test(hist, known_series_1_to_1000)
{
    hist *h = hnew();
    for (uint64_t v = 1; v <= 1000; v++)
        hist_record(h, v);
    cr_assert_eq(h->count, 1000);
    cr_assert_eq(h->sum_us, 500500);
    cr_assert_eq(h->min_us, 1);
    cr_assert_eq(h->max_us, 1000);
    cr_assert_float_eq(hist_mean(h), 500.5, 1e-9);
    cr_assert_eq(hist_quantile(h, 0.0), 1);
    cr_assert_eq(hist_quantile(h, 0.1), 100);      /* exact below 128 */
    cr_assert_eq(hist_quantile(h, 1.0), 1000);
    uint64_t p50 = hist_quantile(h, 0.5), p90 = hist_quantile(h, 0.9), p99 = hist_quantile(h, 0.99);
    cr_assert(p50 >= 495 && p50 <= 505, "p50 %llu", (unsigned long long)p50);
    cr_assert(p90 >= 891 && p90 <= 909, "p90 %llu", (unsigned long long)p90);
    cr_assert(p99 >= 980 && p99 <= 1000, "p99 %llu", (unsigned long long)p99);
    /* Quantiles never decrease with q. */
    uint64_t prev = 0;
    for (double q = 0; q <= 1.0; q += 0.001) {
        uint64_t x = hist_quantile(h, q);
        cr_assert_geq(x, prev);
        prev = x;
    }
    cr_assert_eq(hist_count_le(h, 100), 100);
    cr_assert_eq(hist_count_le(h, 0), 0);
    cr_assert_eq(hist_count_le(h, 1000), 1000);
    cr_assert_eq(hist_count_le(h, 5000), 1000);
    uint64_t le500 = hist_count_le(h, 500);
    cr_assert(le500 >= 500 && le500 <= 505, "le500 %llu", (unsigned long long)le500);
    free(h);
}

Test(hist, empty)
{
    hist h;
    hist_init(&h);
    cr_assert_eq(hist_quantile(&h, 0.5), 0);
    cr_assert_eq(hist_quantile(&h, 0), 0);
    cr_assert_eq(hist_quantile(&h, 1), 0);
    cr_assert_eq(hist_mean(&h), 0);
    cr_assert_eq(hist_count_le(&h, 1000), 0);
    hist_record_n(&h, 77, 0);
    cr_assert_eq(h.count, 0);
    cr_assert_eq(h.min_us, 0);
    cr_assert_eq(h.max_us, 0);
}

Test(hist, values_above_60s_stay_above_the_60s_bound)
{
    hist h;
    hist_init(&h);
    hist_record(&h, 1000);
    hist_record(&h, 100000000);      /* 100 s */
    cr_assert_eq(h.max_us, 100000000);
    cr_assert_eq(h.sum_us, 100001000);
    cr_assert_eq(hist_count_le(&h, HIST_MAX_US), 1);
    cr_assert_eq(hist_count_le(&h, 200000000), 2);
    cr_assert_eq(hist_quantile(&h, 1), 100000000);
    cr_assert_gt(hist_quantile(&h, 0.9), HIST_MAX_US);
}

Test(hist, record_n_equals_n_records)
{
    hist *a = hnew(), *b = hnew();
    hist_record_n(a, 12345, 7);
    hist_record_n(a, 3, 2);
    for (int i = 0; i < 7; i++)
        hist_record(b, 12345);
    hist_record(b, 3);
    hist_record(b, 3);
    cr_assert(memcmp(a, b, sizeof *a) == 0);
    free(a);
    free(b);
}

Test(hist, merge_equals_recording_into_one)
{
    hist *a = hnew(), *b = hnew(), *all = hnew(), *empty = hnew();
    for (int i = 0; i < 50000; i++) {
        uint64_t v = 1 + rnd() % 5000000;
        hist_record(i % 3 ? a : b, v);
        hist_record(all, v);
    }
    hist_merge(a, b);
    cr_assert(memcmp(a, all, sizeof *a) == 0, "merge differs from one histogram");
    hist_merge(a, empty);
    cr_assert(memcmp(a, all, sizeof *a) == 0, "merging an empty one changed it");
    hist_merge(empty, all);
    cr_assert(memcmp(empty, all, sizeof *a) == 0, "merging into an empty one");
    free(a);
    free(b);
    free(all);
    free(empty);
}

Test(hist, delta_between_scrapes)
{
    hist *cur = hnew(), *prev = hnew(), *only = hnew(), *d = hnew();
    for (int i = 0; i < 1000; i++)
        hist_record(cur, 10 + (uint64_t)i);
    memcpy(prev, cur, sizeof *cur);
    for (int i = 0; i < 500; i++) {
        uint64_t v = 20000 + (uint64_t)i * 3;
        hist_record(cur, v);
        hist_record(only, v);
    }
    hist_delta(d, cur, prev);
    cr_assert_eq(d->count, 500);
    cr_assert_eq(d->sum_us, only->sum_us);
    cr_assert(memcmp(d->buckets, only->buckets, sizeof d->buckets) == 0);
    cr_assert_eq(hist_bucket_of(d->min_us), hist_bucket_of(only->min_us));
    cr_assert_eq(d->max_us, only->max_us);   /* bounded by cur's max */
    cr_assert_lt(fabs((double)hist_quantile(d, 0.5) - (double)hist_quantile(only, 0.5)),
                 0.01 * (double)hist_quantile(only, 0.5));
    /* No change: an empty delta. In place (dst aliases a) works too. */
    hist_delta(cur, prev, prev);
    cr_assert_eq(cur->count, 0);
    cr_assert_eq(cur->sum_us, 0);
    cr_assert_eq(cur->min_us, 0);
    cr_assert_eq(hist_quantile(cur, 0.99), 0);
    free(cur);
    free(prev);
    free(only);
    free(d);
}
