/* ctl_collect.c -- from two consecutive scrapes to per-instance and
 * per-pool load figures.
 *
 * A scrape is first reduced to a small fixed struct (ctl_scrape for an
 * instance, ctl_gwm_scrape for the gateway), so the control loop keeps two
 * of each per instance and no text. Rates come from the difference of two
 * scrapes over the wall time between them; a counter that went backwards
 * means the process restarted, and its new value is the whole delta (as
 * Prometheus' rate() assumes).
 *
 * Definitions (docs/autoscaling wording):
 *   CPU %     = d(process_cpu_seconds_total) / d(wall) / cpu_cores * 100,
 *               cpu_cores being what one instance is sized for (a
 *               Kubernetes CPU request); 2 busy threads on cpu_cores 1 read
 *               200 %, like `top`.
 *   memory %  = process_resident_memory_bytes / memory limit * 100.
 * For instances with a pid, ctl_collect_os replaces both with what the
 * operating system measured of the whole process tree (same formulas,
 * tree CPU seconds and PSS bytes), and each value says where it came from
 * (ctl_source: "os", "cgroup", "metrics").
 *   p95       = histogram_quantile(0.95) of the bucket deltas, in ms.
 *   errors %  = 5xx share of the requests over the interval.
 * Requests and latency leave out /health* and /metrics: the gateway's
 * probes and the collector's own scrapes are not load. Whatever cannot be
 * known is NAN, never 0, so an unscrapable instance never reads as idle. */
#include "control/ctl_autoscale.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *const ctl_metric_names[] = {
    "cpu", "memory", "rps", "in_flight", "p95", "error_rate", "connections", NULL,
};

const char *ctl_metric_name(ctl_metric m)
{
    return (unsigned)m < CTL_M__COUNT ? ctl_metric_names[m] : "?";
}

const char *ctl_source_str(ctl_source s)
{
    switch (s) {
    case CTL_SRC_METRICS: return "metrics";
    case CTL_SRC_OS:      return "os";
    case CTL_SRC_CGROUP:  return "cgroup";
    case CTL_SRC_NONE:    break;
    }
    return NULL;
}

int ctl_metric_parse(const char *s, ctl_metric *out)
{
    for (int i = 0; i < CTL_M__COUNT; i++)
        if (!strcmp(s, ctl_metric_names[i])) {
            *out = (ctl_metric)i;
            return 0;
        }
    return -1;
}

/* ---- latency buckets ---------------------------------------------------- */

/* Adds a cumulative count at bound le, keeping bounds sorted. */
static void lat_put(ctl_lat *l, double le, double cum)
{
    int i = 0;
    while (i < l->n && l->le[i] < le)
        i++;
    if (i < l->n && l->le[i] == le) {
        l->cum[i] += cum;
        return;
    }
    if (l->n >= CTL_LE_MAX)
        return;                       /* more bounds than hscale exports */
    memmove(&l->le[i + 1], &l->le[i], (size_t)(l->n - i) * sizeof l->le[0]);
    memmove(&l->cum[i + 1], &l->cum[i], (size_t)(l->n - i) * sizeof l->cum[0]);
    l->le[i] = le;
    l->cum[i] = cum;
    l->n++;
}

static bool lat_same_bounds(const ctl_lat *a, const ctl_lat *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (a->le[i] != b->le[i])
            return false;
    return true;
}

void ctl_lat_delta(ctl_lat *d, const ctl_lat *a, const ctl_lat *b)
{
    ctl_lat r = *a;
    if (b && b->n && lat_same_bounds(a, b) && a->count >= b->count) {
        for (int i = 0; i < r.n; i++)
            r.cum[i] = a->cum[i] >= b->cum[i] ? a->cum[i] - b->cum[i] : 0;
        r.count = a->count - b->count;
        r.sum = a->sum >= b->sum ? a->sum - b->sum : 0;
        /* keep the deltas cumulative even if a scrape was not a clean cut */
        for (int i = 1; i < r.n; i++)
            if (r.cum[i] < r.cum[i - 1])
                r.cum[i] = r.cum[i - 1];
    }
    *d = r;
}

void ctl_lat_add(ctl_lat *dst, const ctl_lat *src)
{
    if (!src->n)
        return;
    if (!dst->n) {
        *dst = *src;
        return;
    }
    if (lat_same_bounds(dst, src)) {
        for (int i = 0; i < dst->n; i++)
            dst->cum[i] += src->cum[i];
        dst->count += src->count;
        dst->sum += src->sum;
        return;
    }
    /* Different bounds: move each of src's buckets to dst's nearest bound
     * at or above, which overstates latency a little, never understates. */
    double per[CTL_LE_MAX] = { 0 };
    for (int i = 0; i < dst->n; i++)
        per[i] = dst->cum[i] - (i ? dst->cum[i - 1] : 0);
    for (int i = 0; i < src->n; i++) {
        double c = src->cum[i] - (i ? src->cum[i - 1] : 0);
        int j = 0;
        while (j < dst->n - 1 && dst->le[j] < src->le[i])
            j++;
        per[j] += c;
    }
    double run = 0;
    for (int i = 0; i < dst->n; i++) {
        run += per[i];
        dst->cum[i] = run;
    }
    dst->count += src->count;
    dst->sum += src->sum;
}

double ctl_lat_quantile(const ctl_lat *l, double q)
{
    if (q < 0)
        return -INFINITY;
    if (q > 1)
        return INFINITY;
    if (l->n < 2 || !isinf(l->le[l->n - 1]))
        return NAN;
    /* series merged from different bounds can dip: read the running
     * maximum, as Prometheus' ensureMonotonic does */
    double cum[CTL_LE_MAX];
    cum[0] = l->cum[0];
    for (int i = 1; i < l->n; i++)
        cum[i] = cum[i - 1] > l->cum[i] ? cum[i - 1] : l->cum[i];
    double total = cum[l->n - 1];
    if (!(total > 0))
        return NAN;
    double rank = q * total;
    int b = 0;
    while (b < l->n - 1 && cum[b] < rank)
        b++;
    if (b == l->n - 1)
        return l->le[l->n - 2];
    if (b == 0 && l->le[0] <= 0)
        return l->le[0];
    double start = 0, end = l->le[b], count = cum[b];
    if (b > 0) {
        start = l->le[b - 1];
        count -= cum[b - 1];
        rank -= cum[b - 1];
    }
    if (!(count > 0))
        return end;
    return start + (end - start) * (rank / count);
}

/* ---- instance scrape ---------------------------------------------------- */

static bool internal_route(const ctl_pt_sample *s)
{
    const ctl_pt_label *r = ctl_pt_label_find(s, "route");
    if (!r)
        return false;
    char v[32];
    ctl_pt_label_decode(r, v, sizeof v);
    return !strncmp(v, "/health", 7) || !strcmp(v, "/metrics");
}

static bool code_5xx(const ctl_pt_sample *s)
{
    const ctl_pt_label *c = ctl_pt_label_find(s, "code");
    return c && c->value.len >= 1 && c->value.p[0] == '5';
}

static bool name_is(const ctl_pt_str *n, const char *lit)
{
    size_t l = strlen(lit);
    return n->len == l && !memcmp(n->p, lit, l);
}

static double add_nan(double acc, double v)
{
    return isnan(acc) ? v : acc + v;
}

static void lat_sample(ctl_lat *l, const ctl_pt_sample *s)
{
    if (s->suffix == CTL_PT_BUCKET)
        lat_put(l, s->le, s->value);
    else if (s->suffix == CTL_PT_COUNT)
        l->count += s->value;
    else if (s->suffix == CTL_PT_SUM)
        l->sum += s->value;
}

static int scrape_sample(const ctl_pt_sample *s, void *ud)
{
    ctl_scrape *o = ud;
    const ctl_pt_str *f = &s->family;
    if (name_is(f, "process_cpu_seconds_total"))
        o->cpu_seconds = s->value;
    else if (name_is(f, "process_resident_memory_bytes"))
        o->rss_bytes = s->value;
    else if (name_is(f, "hscale_http_connections"))
        o->connections = add_nan(o->connections, s->value);
    else if (name_is(f, "hscale_http_requests_total")) {
        if (internal_route(s))
            return 0;
        o->requests = add_nan(o->requests, s->value);
        if (isnan(o->errors))
            o->errors = 0;
        if (code_5xx(s))
            o->errors += s->value;
    } else if (name_is(f, "hscale_http_request_duration_seconds") && s->type == CTL_PT_HISTOGRAM) {
        if (!internal_route(s))
            lat_sample(&o->lat, s);
    }
    return 0;
}

static bool has_family(const char *text, size_t len, const char *name)
{
    char pat[96];
    int n = snprintf(pat, sizeof pat, "# TYPE %s ", name);
    if (n <= 0 || (size_t)n >= sizeof pat)
        return false;
    const char *p = memmem(text, len, pat, (size_t)n);
    return p && (p == text || p[-1] == '\n');
}

void ctl_scrape_fail(ctl_scrape *out, uint64_t at_us)
{
    memset(out, 0, sizeof *out);
    out->at_us = at_us;
    out->ok = false;
    out->cpu_seconds = out->rss_bytes = out->requests = out->errors = out->connections = NAN;
}

int ctl_scrape_parse(ctl_scrape *out, const char *text, size_t len, uint64_t at_us,
                     char *err, size_t errlen)
{
    ctl_scrape_fail(out, at_us);
    if (ctl_promtext_parse(text, len, scrape_sample, out, err, errlen) < 0) {
        ctl_scrape_fail(out, at_us);
        return -1;
    }
    /* families are exported before their first series: present but empty
     * means no requests yet, which is 0 and not unknown */
    if (isnan(out->requests) && has_family(text, len, "hscale_http_requests_total")) {
        out->requests = 0;
        out->errors = 0;
    }
    out->ok = true;
    return 0;
}

/* ---- gateway scrape ----------------------------------------------------- */

static ctl_gwm_backend *gw_backend(ctl_gwm_scrape *g, const ctl_pt_sample *s)
{
    const ctl_pt_label *pl = ctl_pt_label_find(s, "pool");
    const ctl_pt_label *bl = ctl_pt_label_find(s, "backend");
    if (!pl || !bl)
        return NULL;
    char pool[64], backend[64];
    if (ctl_pt_label_decode(pl, pool, sizeof pool) >= sizeof pool ||
        ctl_pt_label_decode(bl, backend, sizeof backend) >= sizeof backend)
        return NULL;
    for (size_t i = 0; i < g->n; i++)
        if (!strcmp(g->b[i].pool, pool) && !strcmp(g->b[i].backend, backend))
            return &g->b[i];
    if (g->n >= CTL_GWM_MAX_BACKENDS) {
        g->truncated = true;
        return NULL;
    }
    ctl_gwm_backend *b = &g->b[g->n++];
    memset(b, 0, sizeof *b);
    memcpy(b->pool, pool, sizeof pool);
    memcpy(b->backend, backend, sizeof backend);
    b->in_flight = NAN;
    b->up = NAN;
    return b;
}

static int gw_sample(const ctl_pt_sample *s, void *ud)
{
    ctl_gwm_scrape *g = ud;
    const ctl_pt_str *f = &s->family;
    bool inflight = name_is(f, "hscale_gateway_backend_in_flight");
    bool reqs = name_is(f, "hscale_gateway_backend_requests_total");
    bool up = name_is(f, "hscale_gateway_backend_up");
    bool lat = name_is(f, "hscale_gateway_upstream_duration_seconds") && s->type == CTL_PT_HISTOGRAM;
    if (!inflight && !reqs && !up && !lat)
        return 0;
    ctl_gwm_backend *b = gw_backend(g, s);
    if (!b)
        return 0;
    if (inflight)
        b->in_flight = s->value;
    else if (up)
        b->up = s->value;
    else if (reqs) {
        b->requests += s->value;
        if (code_5xx(s))
            b->errors += s->value;
    } else {
        lat_sample(&b->lat, s);
    }
    return 0;
}

int ctl_gwm_parse(ctl_gwm_scrape *out, const char *text, size_t len, uint64_t at_us,
                        char *err, size_t errlen)
{
    out->at_us = at_us;
    out->ok = false;
    out->n = 0;
    out->truncated = false;
    if (ctl_promtext_parse(text, len, gw_sample, out, err, errlen) < 0) {
        out->n = 0;
        return -1;
    }
    out->ok = true;
    return 0;
}

const ctl_gwm_backend *ctl_gwm_find(const ctl_gwm_scrape *g, const char *pool, const char *backend)
{
    if (!g || !g->ok)
        return NULL;
    for (size_t i = 0; i < g->n; i++)
        if ((!pool || !strcmp(g->b[i].pool, pool)) && !strcmp(g->b[i].backend, backend))
            return &g->b[i];
    return NULL;
}

/* ---- per instance ------------------------------------------------------- */

static double counter_delta(double prev, double cur)
{
    if (isnan(prev) || isnan(cur))
        return NAN;
    return cur >= prev ? cur - prev : cur;     /* backwards: restarted */
}

/* Fills rps, error rate and p95 from request and bucket deltas. */
static void rates(ctl_inst_metrics *m, double dreq, double derr, const ctl_lat *lcur,
                  const ctl_lat *lprev, double dt)
{
    if (isnan(dreq))
        return;
    if (isnan(derr))
        derr = 0;
    m->requests = dreq;
    m->errors = derr;
    m->v[CTL_M_RPS] = dreq / dt;
    m->v[CTL_M_ERROR_RATE] = dreq > 0 ? derr / dreq * 100.0 : 0;
    ctl_lat_delta(&m->lat, lcur, lprev);
    m->v[CTL_M_P95] = ctl_lat_quantile(&m->lat, 0.95) * 1000.0;
}

void ctl_collect_instance(ctl_inst_metrics *m, const ctl_scrape *prev, const ctl_scrape *cur,
                          const ctl_collect_opts *o)
{
    for (int i = 0; i < CTL_M__COUNT; i++)
        m->v[i] = NAN;
    memset(&m->lat, 0, sizeof m->lat);
    m->requests = m->errors = 0;
    m->cpu_src = m->mem_src = CTL_SRC_NONE;
    m->missing = !cur || !cur->ok;
    if (m->missing)
        return;
    if (!isnan(cur->rss_bytes) && o && o->mem_limit_bytes) {
        m->v[CTL_M_MEMORY] = cur->rss_bytes / (double)o->mem_limit_bytes * 100.0;
        m->mem_src = CTL_SRC_METRICS;
    }
    m->v[CTL_M_CONNECTIONS] = cur->connections;
    if (!prev || !prev->ok || cur->at_us <= prev->at_us)
        return;
    double dt = (double)(cur->at_us - prev->at_us) / 1e6;
    double dcpu = counter_delta(prev->cpu_seconds, cur->cpu_seconds);
    double cores = o && o->cpu_cores > 0 ? o->cpu_cores : 1.0;
    if (!isnan(dcpu)) {
        m->v[CTL_M_CPU] = dcpu / dt / cores * 100.0;
        m->cpu_src = CTL_SRC_METRICS;
    }
    double dreq = counter_delta(prev->requests, cur->requests);
    if (!isnan(dreq) && cur->requests < prev->requests)
        rates(m, dreq, cur->errors, &cur->lat, NULL, dt);
    else
        rates(m, dreq, counter_delta(prev->errors, cur->errors), &cur->lat, &prev->lat, dt);
}

void ctl_collect_gateway(ctl_inst_metrics *m, const char *pool, const ctl_gwm_scrape *prev,
                         const ctl_gwm_scrape *cur)
{
    const ctl_gwm_backend *b = ctl_gwm_find(cur, pool, m->address);
    if (!b)
        return;
    if (!isnan(b->in_flight)) {
        m->v[CTL_M_IN_FLIGHT] = b->in_flight;
        m->missing = false;
    }
    const ctl_gwm_backend *a = ctl_gwm_find(prev, pool, m->address);
    if (!a || cur->at_us <= prev->at_us)
        return;
    double dt = (double)(cur->at_us - prev->at_us) / 1e6;
    /* a gateway without per-backend latency buckets leaves the instance's
     * own p95 (better than none) */
    ctl_lat own = m->lat;
    double own_p95 = m->v[CTL_M_P95];
    memset(&m->lat, 0, sizeof m->lat);
    if (b->requests < a->requests)
        rates(m, b->requests, b->errors, &b->lat, NULL, dt);
    else
        rates(m, b->requests - a->requests, counter_delta(a->errors, b->errors), &b->lat, &a->lat, dt);
    if (b->lat.n == 0) {
        m->lat = own;
        m->v[CTL_M_P95] = own_p95;
    }
    m->missing = false;
}

void ctl_collect_os(ctl_inst_metrics *m, const ctl_procstat *prev, const ctl_procstat *cur,
                    const ctl_collect_opts *o)
{
    if (!cur || !cur->ok)
        return;
    uint64_t lim = o ? o->mem_limit_bytes : 0;
    bool cg_mem = !isnan(cur->cg_mem_bytes);
    double bytes = cg_mem ? cur->cg_mem_bytes : cur->mem_bytes;
    if (!isnan(bytes) && lim) {
        m->v[CTL_M_MEMORY] = bytes / (double)lim * 100.0;
        m->mem_src = cg_mem ? CTL_SRC_CGROUP : CTL_SRC_OS;
        m->missing = false;
    }
    /* an interval is measured only on one process: same root pid, same
     * start time (a restarted instance is a new tree) */
    if (!prev || !prev->ok || prev->root != cur->root || prev->root_start != cur->root_start
        || cur->at_us <= prev->at_us)
        return;
    double dt = (double)(cur->at_us - prev->at_us) / 1e6;
    double cores = o && o->cpu_cores > 0 ? o->cpu_cores : 1.0;
    double d;
    ctl_source src;
    if (!isnan(prev->cg_cpu_s) && !isnan(cur->cg_cpu_s) && !strcmp(prev->cgroup, cur->cgroup)
        && cur->cg_cpu_s >= prev->cg_cpu_s) {
        d = cur->cg_cpu_s - prev->cg_cpu_s;
        src = CTL_SRC_CGROUP;
    } else if (!isnan(prev->cpu_s) && !isnan(cur->cpu_s)) {
        /* less than before: a member's time left the tree (an orphan
         * reaped by init, or a read that raced a reap); the next interval
         * starts from the new base */
        d = cur->cpu_s >= prev->cpu_s ? cur->cpu_s - prev->cpu_s : 0;
        src = CTL_SRC_OS;
    } else {
        return;
    }
    m->v[CTL_M_CPU] = d / dt / cores * 100.0;
    m->cpu_src = src;
    m->missing = false;
}

/* ---- per pool ----------------------------------------------------------- */

bool ctl_inst_warming(const ctl_inst_metrics *m, uint64_t now_us, uint64_t warmup_us)
{
    return !m->ready_at_us || now_us < m->ready_at_us + warmup_us;
}

void ctl_collect_pool(ctl_pool_metrics *p, const ctl_inst_metrics *m, size_t n,
                      uint64_t now_us, uint64_t warmup_us)
{
    memset(p, 0, sizeof *p);
    double sum[CTL_M__COUNT] = { 0 };
    int cnt[CTL_M__COUNT] = { 0 };
    ctl_lat lat;
    memset(&lat, 0, sizeof lat);
    double reqs = 0, errs = 0;
    p->instances = (int)n;
    for (size_t i = 0; i < n; i++) {
        if (ctl_inst_warming(&m[i], now_us, warmup_us)) {
            p->warming++;
            continue;
        }
        p->ready++;
        if (m[i].missing) {
            p->missing++;
            continue;
        }
        for (int k = 0; k < CTL_M__COUNT; k++)
            if (!isnan(m[i].v[k])) {
                sum[k] += m[i].v[k];
                cnt[k]++;
            }
        ctl_lat_add(&lat, &m[i].lat);
        reqs += m[i].requests;
        errs += m[i].errors;
    }
    for (int k = 0; k < CTL_M__COUNT; k++)
        p->avg[k] = cnt[k] ? sum[k] / cnt[k] : NAN;
    p->total_rps = cnt[CTL_M_RPS] ? sum[CTL_M_RPS] : NAN;
    p->total_in_flight = cnt[CTL_M_IN_FLIGHT] ? sum[CTL_M_IN_FLIGHT] : NAN;
    p->p95_ms = reqs > 0 ? ctl_lat_quantile(&lat, 0.95) * 1000.0 : NAN;
    p->error_rate = reqs > 0 ? errs / reqs * 100.0 : NAN;
}

uint64_t ctl_machine_memtotal(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[128];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return (uint64_t)kb * 1024;
}
