/* metrics_int.h -- the registry's data structures, shared by metrics.c
 * (declaration, lookup, hot-path updates) and metrics_render.c (the
 * Prometheus text). Not part of the public API.
 *
 * Ownership: the registry owns its families, a family its series, a series
 * its histogram shards. Everything structural (family list, series list,
 * hash chains, gauge callbacks) is read and written under reg->mu; the
 * values in a series are atomics touched without the lock. */
#ifndef HSCALE_CORE_METRICS_INT_H
#define HSCALE_CORE_METRICS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include "core/metrics.h"

/* One thread's (or one group of threads') part of a histogram series. The
 * count is not kept: it is the sum of the buckets, so a snapshot's _count
 * always equals its +Inf bucket even while writers race the reader. */
typedef struct metrics_shard {
    _Atomic uint64_t sum_us;
    _Atomic uint64_t min_us;          /* UINT64_MAX until the first value */
    _Atomic uint64_t max_us;
    _Atomic uint64_t buckets[HIST_BUCKETS];
} metrics_shard;

struct metric_series {
    /* Hot fields first; series are allocated on their own cache lines so
     * two series never share one. Counters keep whole increments in `n`
     * (one lock xadd) and anything fractional in `d`; gauges use only `d`.
     * `d` holds a double's bit pattern, updated by CAS. */
    _Atomic uint64_t n;
    _Atomic uint64_t d;
    metric_type      type;
    _Atomic(metrics_shard *) shards[METRICS_SHARDS];
    metric_family   *fam;
    metrics_gauge_fn *fn;             /* under reg->mu */
    void            *fn_arg;
    metric_series   *next;            /* hash chain */
    uint64_t         hash;
    char            *values[METRICS_MAX_LABELS];
};

struct metric_family {
    metrics_registry *reg;
    char            *name;
    char            *help;
    metric_type      type;
    size_t           nlabels;
    char            *labels[METRICS_MAX_LABELS];
    metric_series  **series;          /* creation order, for rendering */
    size_t           nseries, cap;
    metric_series  **tab;             /* hash table, power-of-two size */
    size_t           tabcap;
};

struct metrics_registry {
    pthread_mutex_t  mu;
    metric_family  **fams;            /* declaration order */
    size_t           nfams, cap;
};

/* Merged copy of a series' shards; the caller holds no lock (shards are
 * only freed with their series). */
void metrics_merge_shards(const metric_series *s, hist *out);
/* Counter/gauge value without calling a gauge callback. */
double metrics_value_raw(const metric_series *s);

#endif
