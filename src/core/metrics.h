/* metrics.h -- a process-wide registry of counters, gauges and histograms
 * with labels, rendered in the Prometheus text exposition format (0.0.4).
 *
 * Families are declared once (name, help, type, label names); a series is
 * looked up or created by its label values under the registry's mutex and
 * the returned handle is kept by the caller. The hot path touches only the
 * handle: counters and gauges are relaxed atomics, histograms are sharded
 * per thread (a thread picks its shard once, by metrics_thread_slot), so
 * recording takes no lock and shares no cache line between workers.
 *
 * Names follow Prometheus conventions: hscale_ prefix, base units
 * (seconds, bytes), _total for counters. Output passes
 * `promtool check metrics`. */
#ifndef HSCALE_CORE_METRICS_H
#define HSCALE_CORE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "hist.h"

#define METRICS_MAX_LABELS 6
#define METRICS_SHARDS     16   /* histogram shards: one per worker thread */

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type;

typedef struct metrics_registry metrics_registry;
typedef struct metric_family    metric_family;
typedef struct metric_series    metric_series;

/* The registry every module of this process uses. */
metrics_registry *metrics_default(void);
metrics_registry *metrics_registry_new(void);
void              metrics_registry_free(metrics_registry *r);

/* Declares a family; declaring the same name twice returns the first one
 * (types and labels must match, or NULL). label_names is NULL-terminated. */
metric_family *metrics_family(metrics_registry *r, const char *name, const char *help,
                              metric_type type, const char *const *label_names);

/* Finds or creates the series with these label values (as many as the
 * family has label names). Never returns NULL for a valid family. */
metric_series *metrics_series(metric_family *f, const char *const *label_values);
/* Removes a series (a backend that was deleted). Handles to it must no
 * longer be used. */
void           metrics_series_remove(metric_family *f, const char *const *label_values);

/* Hot-path updates. All take NULL (a series that could not be created) as
 * a no-op. Counters keep whole increments in an integer (one atomic add)
 * and fractional ones in a CAS-updated double; negative or NaN adds to a
 * counter are dropped. */
void   metrics_add(metric_series *s, double v);          /* counter or gauge */
void   metrics_inc(metric_series *s);                    /* += 1 */
void   metrics_set(metric_series *s, double v);          /* gauge */
/* Counter/gauge value (a callback gauge calls its callback); a
 * histogram's observation count. Not for the hot path. */
double metrics_get(const metric_series *s);
/* Histogram: records a duration in microseconds, exported in seconds. */
void   metrics_observe_us(metric_series *s, uint64_t us);
/* Merged copy of a histogram series (all shards). */
void   metrics_hist_snapshot(const metric_series *s, hist *out);

/* This thread's shard index, in [0, METRICS_SHARDS). Worker threads call
 * metrics_thread_bind(n) once at start; other threads share the last slot. */
void metrics_thread_bind(unsigned slot);
unsigned metrics_thread_slot(void);

/* A gauge whose value is read at render time (open fds, pool sizes). The
 * callback runs under the registry mutex: it must not call metrics_*. */
typedef double metrics_gauge_fn(void *arg);
void metrics_gauge_fn_set(metric_series *s, metrics_gauge_fn *fn, void *arg);

/* Renders every family, in declaration order, into out (series in
 * creation order). Adds the standard process_* metrics for this process
 * when `with_process` is set. */
void metrics_render(metrics_registry *r, buf *out, bool with_process);

/* Declares hscale_build_info{version=...,component=...} 1. */
void metrics_build_info(metrics_registry *r, const char *version, const char *component);

/* The Prometheus `le` bucket bounds (seconds) used for every histogram. */
extern const double metrics_le_seconds[];
extern const size_t metrics_le_count;

#endif
