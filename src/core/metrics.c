/* metrics.c -- the registry: family declaration, series lookup/creation
 * under the registry mutex, and the lock-free hot-path updates.
 *
 * Memory ordering. Every value is a relaxed atomic: a metric only has to
 * be eventually right and never torn, and no other data is published
 * through it. Updates are atomic read-modify-writes (lock xadd, or a CAS
 * loop for doubles) rather than plain stores by an owning thread because
 * shards are not exclusive: threads that never bound share the last slot,
 * and two servers in one process both bind their worker 0 to slot 0.
 * Uncontended, an RMW on a line the thread already owns costs a few ns.
 * Histogram shards are allocated on a thread's first observation and
 * published with a release CAS (readers load with acquire), so the zeroed
 * shard is visible before any pointer to it; that is the only allocation
 * on the hot path and it happens once per (series, slot). */
#include "core/metrics_int.h"

#include <stdlib.h>
#include <string.h>
#include "core/log.h"

static _Thread_local unsigned tls_slot = METRICS_SHARDS - 1;

void metrics_thread_bind(unsigned slot)
{
    tls_slot = slot % METRICS_SHARDS;
}

unsigned metrics_thread_slot(void)
{
    return tls_slot;
}

/* ---- doubles in atomics ---- */

static inline uint64_t dbits(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static inline double bitsd(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static void atomic_add_double(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, dbits(bitsd(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* ---- hot path ---- */

void metrics_add(metric_series *s, double v)
{
    if (!s)
        return;
    if (s->type == METRIC_COUNTER) {
        /* Whole increments are the common case (requests, bytes): one
         * fetch_add, no CAS retries under contention. Counters never go
         * down, so negative and NaN adds are dropped. */
        if (v >= 0 && v < 9007199254740992.0 && v == (double)(uint64_t)v)
            atomic_fetch_add_explicit(&s->n, (uint64_t)v, memory_order_relaxed);
        else if (v > 0)
            atomic_add_double(&s->d, v);
    } else if (s->type == METRIC_GAUGE) {
        atomic_add_double(&s->d, v);
    }
}

void metrics_inc(metric_series *s)
{
    if (s && s->type == METRIC_COUNTER)
        atomic_fetch_add_explicit(&s->n, 1, memory_order_relaxed);
    else
        metrics_add(s, 1);
}

void metrics_set(metric_series *s, double v)
{
    if (!s || s->type == METRIC_HISTOGRAM)
        return;
    /* On a counter this replaces the value (mirroring a counter kept
     * elsewhere); it is not atomic against a concurrent add. */
    atomic_store_explicit(&s->n, 0, memory_order_relaxed);
    atomic_store_explicit(&s->d, dbits(v), memory_order_relaxed);
}

double metrics_value_raw(const metric_series *s)
{
    return (double)atomic_load_explicit(&s->n, memory_order_relaxed) +
           bitsd(atomic_load_explicit(&s->d, memory_order_relaxed));
}

double metrics_get(const metric_series *s)
{
    if (!s)
        return 0;
    if (s->type == METRIC_HISTOGRAM) {
        hist *h = malloc(sizeof *h);
        if (!h)
            return 0;
        metrics_merge_shards(s, h);
        double c = (double)h->count;
        free(h);
        return c;
    }
    metrics_registry *r = s->fam->reg;
    pthread_mutex_lock(&r->mu);
    metrics_gauge_fn *fn = s->fn;
    void *arg = s->fn_arg;
    pthread_mutex_unlock(&r->mu);
    return fn ? fn(arg) : metrics_value_raw(s);
}

static metrics_shard *shard_create(metric_series *s, unsigned slot)
{
    metrics_shard *sh = calloc(1, sizeof *sh);
    if (!sh)
        return NULL;
    atomic_init(&sh->min_us, UINT64_MAX);
    metrics_shard *expect = NULL;
    if (!atomic_compare_exchange_strong_explicit(&s->shards[slot], &expect, sh,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        free(sh);        /* another thread of this slot won */
        return expect;
    }
    return sh;
}

void metrics_observe_us(metric_series *s, uint64_t us)
{
    if (!s || s->type != METRIC_HISTOGRAM)
        return;
    unsigned slot = tls_slot;
    metrics_shard *sh = atomic_load_explicit(&s->shards[slot], memory_order_acquire);
    if (__builtin_expect(!sh, 0) && !(sh = shard_create(s, slot)))
        return;
    atomic_fetch_add_explicit(&sh->buckets[hist_index(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->sum_us, us, memory_order_relaxed);
    /* The CAS loops run only when the value is a new extreme. */
    uint64_t m = atomic_load_explicit(&sh->max_us, memory_order_relaxed);
    while (us > m && !atomic_compare_exchange_weak_explicit(&sh->max_us, &m, us,
                                                            memory_order_relaxed, memory_order_relaxed))
        ;
    m = atomic_load_explicit(&sh->min_us, memory_order_relaxed);
    while (us < m && !atomic_compare_exchange_weak_explicit(&sh->min_us, &m, us,
                                                            memory_order_relaxed, memory_order_relaxed))
        ;
}

void metrics_merge_shards(const metric_series *s, hist *out)
{
    hist_init(out);
    uint64_t mn = UINT64_MAX, mx = 0;
    for (unsigned k = 0; k < METRICS_SHARDS; k++) {
        metrics_shard *sh = atomic_load_explicit(&s->shards[k], memory_order_acquire);
        if (!sh)
            continue;
        for (size_t i = 0; i < HIST_BUCKETS; i++)
            out->buckets[i] += atomic_load_explicit(&sh->buckets[i], memory_order_relaxed);
        out->sum_us += atomic_load_explicit(&sh->sum_us, memory_order_relaxed);
        uint64_t a = atomic_load_explicit(&sh->min_us, memory_order_relaxed);
        uint64_t b = atomic_load_explicit(&sh->max_us, memory_order_relaxed);
        mn = a < mn ? a : mn;
        mx = b > mx ? b : mx;
    }
    size_t first = HIST_BUCKETS, last = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        if (out->buckets[i]) {
            if (first == HIST_BUCKETS)
                first = i;
            last = i;
            out->count += out->buckets[i];
        }
    }
    if (!out->count)
        return;
    /* A writer racing us may have bumped a bucket but not yet its
     * extremes; fall back to the bucket edges then. */
    uint64_t lo = hist_bucket_low(first), hi = hist_bucket_high(last);
    out->min_us = mn > hist_bucket_high(first) ? lo : mn;
    out->max_us = (mx < hist_bucket_low(last)) ? hi : mx;
}

void metrics_hist_snapshot(const metric_series *s, hist *out)
{
    if (!s || s->type != METRIC_HISTOGRAM) {
        hist_init(out);
        return;
    }
    metrics_merge_shards(s, out);
}

void metrics_gauge_fn_set(metric_series *s, metrics_gauge_fn *fn, void *arg)
{
    if (!s)
        return;
    metrics_registry *r = s->fam->reg;
    pthread_mutex_lock(&r->mu);
    s->fn = fn;
    s->fn_arg = arg;
    pthread_mutex_unlock(&r->mu);
}

/* ---- registry ---- */

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static metrics_registry *default_reg;

static void default_init(void)
{
    default_reg = metrics_registry_new();
}

metrics_registry *metrics_default(void)
{
    pthread_once(&default_once, default_init);
    return default_reg;
}

metrics_registry *metrics_registry_new(void)
{
    metrics_registry *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

static void series_free(metric_series *s)
{
    for (unsigned k = 0; k < METRICS_SHARDS; k++)
        free(atomic_load_explicit(&s->shards[k], memory_order_relaxed));
    for (size_t i = 0; i < METRICS_MAX_LABELS; i++)
        free(s->values[i]);
    free(s);
}

static void family_free(metric_family *f)
{
    for (size_t i = 0; i < f->nseries; i++)
        series_free(f->series[i]);
    free(f->series);
    free(f->tab);
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->name);
    free(f->help);
    free(f);
}

void metrics_registry_free(metrics_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nfams; i++)
        family_free(r->fams[i]);
    free(r->fams);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static bool valid_name(const char *s, bool colon)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static const char *type_name(metric_type t)
{
    return t == METRIC_COUNTER ? "counter" : t == METRIC_GAUGE ? "gauge" : "histogram";
}

/* Checks a declaration; NULL when fine, else what is wrong. */
static const char *check_decl(const char *name, metric_type type, const char *const *ln,
                              size_t *nlabels)
{
    if (!valid_name(name, true))
        return "name must match [a-zA-Z_:][a-zA-Z0-9_:]*";
    if (type != METRIC_COUNTER && type != METRIC_GAUGE && type != METRIC_HISTOGRAM)
        return "unknown metric type";
    size_t n = 0;
    for (; ln && ln[n]; n++) {
        if (n == METRICS_MAX_LABELS)
            return "more than METRICS_MAX_LABELS label names";
        if (!valid_name(ln[n], false) || strncmp(ln[n], "__", 2) == 0)
            return "label names must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __";
        if (type == METRIC_HISTOGRAM && strcmp(ln[n], "le") == 0)
            return "a histogram cannot have an 'le' label";
        for (size_t j = 0; j < n; j++)
            if (strcmp(ln[j], ln[n]) == 0)
                return "duplicate label name";
    }
    *nlabels = n;
    return NULL;
}

static bool same_decl(const metric_family *f, metric_type type, const char *const *ln, size_t n)
{
    if (f->type != type || f->nlabels != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(f->labels[i], ln[i]) != 0)
            return false;
    return true;
}

metric_family *metrics_family(metrics_registry *r, const char *name, const char *help,
                              metric_type type, const char *const *label_names)
{
    if (!r)
        return NULL;
    size_t n = 0;
    const char *why = check_decl(name, type, label_names, &n);
    if (why) {
        log_write(LOG_ERROR, "metrics: family %s: %s", name ? name : "(null)", why);
        return NULL;
    }
    pthread_mutex_lock(&r->mu);
    metric_family *f = NULL;
    for (size_t i = 0; i < r->nfams; i++) {
        if (strcmp(r->fams[i]->name, name) == 0) {
            f = r->fams[i];
            if (!same_decl(f, type, label_names, n)) {
                log_write(LOG_ERROR, "metrics: family %s declared again as a %s with other "
                          "labels or type (first: %s with %zu labels)", name,
                          type_name(type), type_name(f->type), f->nlabels);
                f = NULL;
            }
            pthread_mutex_unlock(&r->mu);
            return f;
        }
    }
    if (r->nfams == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        metric_family **nf = realloc(r->fams, cap * sizeof *nf);
        if (!nf)
            goto oom;
        r->fams = nf;
        r->cap = cap;
    }
    f = calloc(1, sizeof *f);
    if (!f)
        goto oom;
    f->reg = r;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->nlabels = n;
    bool ok = f->name && f->help;
    for (size_t i = 0; i < n; i++)
        ok = (f->labels[i] = strdup(label_names[i])) != NULL && ok;
    if (!ok) {
        family_free(f);
        goto oom;
    }
    r->fams[r->nfams++] = f;
    pthread_mutex_unlock(&r->mu);
    return f;
oom:
    pthread_mutex_unlock(&r->mu);
    log_write(LOG_ERROR, "metrics: family %s: out of memory", name);
    return NULL;
}

/* ---- series lookup ---- */

static const char *lv(const char *const *values, size_t i)
{
    return values && values[i] ? values[i] : "";
}

static uint64_t hash_values(const metric_family *f, const char *const *values)
{
    uint64_t h = 1469598103934665603ull;            /* FNV-1a */
    for (size_t i = 0; i < f->nlabels; i++) {
        for (const unsigned char *p = (const unsigned char *)lv(values, i); *p; p++)
            h = (h ^ *p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;          /* 0xff never occurs in UTF-8 */
    }
    return h;
}

static metric_series **find_slot(metric_family *f, const char *const *values, uint64_t h)
{
    if (!f->tabcap)
        return NULL;
    metric_series **pp = &f->tab[h & (f->tabcap - 1)];
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->hash != h)
            continue;
        size_t i = 0;
        while (i < f->nlabels && strcmp((*pp)->values[i], lv(values, i)) == 0)
            i++;
        if (i == f->nlabels)
            return pp;
    }
    return NULL;
}

static int tab_grow(metric_family *f)
{
    size_t cap = f->tabcap ? f->tabcap * 2 : 16;
    metric_series **t = calloc(cap, sizeof *t);
    if (!t)
        return -1;
    for (size_t i = 0; i < f->nseries; i++) {
        metric_series *s = f->series[i];
        s->next = t[s->hash & (cap - 1)];
        t[s->hash & (cap - 1)] = s;
    }
    free(f->tab);
    f->tab = t;
    f->tabcap = cap;
    return 0;
}

static metric_series *series_new(metric_family *f, const char *const *values, uint64_t h)
{
    /* Own cache lines: hot counters of different series never share one. */
    size_t sz = (sizeof(metric_series) + 63) & ~(size_t)63;
    metric_series *s = aligned_alloc(64, sz);
    if (!s)
        return NULL;
    memset(s, 0, sz);
    s->fam = f;
    s->type = f->type;
    s->hash = h;
    for (size_t i = 0; i < f->nlabels; i++) {
        if (!(s->values[i] = strdup(lv(values, i)))) {
            series_free(s);
            return NULL;
        }
    }
    return s;
}

metric_series *metrics_series(metric_family *f, const char *const *label_values)
{
    if (!f)
        return NULL;
    uint64_t h = hash_values(f, label_values);
    pthread_mutex_lock(&f->reg->mu);
    metric_series **pp = find_slot(f, label_values, h);
    metric_series *s = pp ? *pp : NULL;
    if (s)
        goto out;
    if (f->nseries == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        metric_series **ns = realloc(f->series, cap * sizeof *ns);
        if (!ns)
            goto out;
        f->series = ns;
        f->cap = cap;
    }
    if (f->nseries + 1 > f->tabcap && tab_grow(f) < 0)
        goto out;
    if (!(s = series_new(f, label_values, h)))
        goto out;
    f->series[f->nseries++] = s;
    s->next = f->tab[h & (f->tabcap - 1)];
    f->tab[h & (f->tabcap - 1)] = s;
out:
    pthread_mutex_unlock(&f->reg->mu);
    if (!s)
        log_write(LOG_ERROR, "metrics: series of %s: out of memory", f->name);
    return s;
}

void metrics_series_remove(metric_family *f, const char *const *label_values)
{
    if (!f)
        return;
    uint64_t h = hash_values(f, label_values);
    pthread_mutex_lock(&f->reg->mu);
    metric_series **pp = find_slot(f, label_values, h);
    if (pp) {
        metric_series *s = *pp;
        *pp = s->next;
        for (size_t i = 0; i < f->nseries; i++) {
            if (f->series[i] == s) {
                memmove(&f->series[i], &f->series[i + 1],
                        (f->nseries - i - 1) * sizeof *f->series);
                f->nseries--;
                break;
            }
        }
        series_free(s);
    }
    pthread_mutex_unlock(&f->reg->mu);
}

void metrics_build_info(metrics_registry *r, const char *version, const char *component)
{
    static const char *const names[] = { "version", "component", NULL };
    metric_family *f = metrics_family(r, "hscale_build_info",
                                      "Build of this hscale binary; the value is always 1.",
                                      METRIC_GAUGE, names);
    const char *vals[] = { version ? version : "", component ? component : "", NULL };
    metrics_set(metrics_series(f, vals), 1);
}
