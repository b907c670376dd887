/* metrics_render.c -- the Prometheus text exposition format (0.0.4) of a
 * registry, plus the standard process_* metrics and the instance's memory
 * limit (the denominator of a memory-usage alert).
 *
 * The whole render holds the registry mutex so series cannot be removed
 * under it; values are read with relaxed loads while writers keep going,
 * so a scrape is not a consistent cut across series, but each histogram's
 * _count always equals its +Inf bucket (both come from the same merged
 * copy). Numbers are printed in the shortest form that reads back to the
 * same double. */
#include "core/metrics_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/proc.h"

const double metrics_le_seconds[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};
const size_t metrics_le_count = sizeof metrics_le_seconds / sizeof metrics_le_seconds[0];

static void put_double(buf *out, double v)
{
    if (isnan(v)) {
        buf_append_str(out, "NaN");
        return;
    }
    if (isinf(v)) {
        buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char s[40];
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(s, sizeof s, "%.0f", v);
    } else {
        snprintf(s, sizeof s, "%.15g", v);
        if (strtod(s, NULL) != v)
            snprintf(s, sizeof s, "%.17g", v);
    }
    buf_append_str(out, s);
}

/* HELP text escapes backslash and newline; label values also the quote. */
static void put_escaped(buf *out, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" :
                          (quote && *s == '"') ? "\\\"" : NULL;
        if (!rep)
            continue;
        buf_append(out, run, (size_t)(s - run));
        buf_append_str(out, rep);
        run = s + 1;
    }
    buf_append(out, run, (size_t)(s - run));
}

static void put_header(buf *out, const char *name, const char *help, const char *type)
{
    buf_append_str(out, "# HELP ");
    buf_append_str(out, name);
    buf_append_str(out, " ");
    put_escaped(out, help, false);
    buf_printf(out, "\n# TYPE %s %s\n", name, type);
}

/* name{l1="v1",...[,le="x"]} -- the braces are left out when empty. */
static void put_series_name(buf *out, const metric_family *f, const metric_series *s,
                            const char *suffix, const char *le)
{
    buf_append_str(out, f->name);
    buf_append_str(out, suffix);
    if (!f->nlabels && !le)
        return;
    buf_append_str(out, "{");
    for (size_t i = 0; i < f->nlabels; i++) {
        buf_printf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
        put_escaped(out, s->values[i], true);
        buf_append_str(out, "\"");
    }
    if (le)
        buf_printf(out, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    buf_append_str(out, "}");
}

static void put_sample(buf *out, const metric_family *f, const metric_series *s,
                       const char *suffix, const char *le, double v)
{
    put_series_name(out, f, s, suffix, le);
    buf_append_str(out, " ");
    put_double(out, v);
    buf_append_str(out, "\n");
}

/* Cumulative buckets in one pass over the histogram: bound b counts every
 * bucket whose low edge is <= b (hist_count_le's rule). */
static void render_hist(buf *out, const metric_family *f, const metric_series *s, hist *h)
{
    metrics_merge_shards(s, h);
    size_t i = 0;
    uint64_t cum = 0;
    for (size_t k = 0; k < metrics_le_count; k++) {
        uint64_t bound = (uint64_t)llround(metrics_le_seconds[k] * 1e6);
        size_t top = hist_bucket_of(bound);
        for (; i <= top && i < HIST_BUCKETS; i++)
            cum += h->buckets[i];
        char le[40];
        snprintf(le, sizeof le, "%.15g", metrics_le_seconds[k]);
        put_sample(out, f, s, "_bucket", le, (double)cum);
    }
    put_sample(out, f, s, "_bucket", "+Inf", (double)h->count);
    put_sample(out, f, s, "_sum", NULL, (double)h->sum_us / 1e6);
    put_sample(out, f, s, "_count", NULL, (double)h->count);
}

static const char *type_str(metric_type t)
{
    return t == METRIC_COUNTER ? "counter" : t == METRIC_GAUGE ? "gauge" : "histogram";
}

/* proc_usage has no virtual size; statm's first field is it, in pages. */
static double virtual_bytes(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    if (!fp)
        return -1;
    unsigned long long pages = 0;
    int n = fscanf(fp, "%llu", &pages);
    fclose(fp);
    return n == 1 ? (double)pages * (double)sysconf(_SC_PAGESIZE) : -1;
}

/* A cgroup memory limit file: bytes, or 0 for "max", absent or unlimited
 * (cgroup v1 writes a number near 2^63 for that). */
static uint64_t cgroup_limit(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    unsigned long long v = 0;
    int n = fscanf(fp, "%llu", &v);   /* "max" does not scan: unlimited */
    fclose(fp);
    return n == 1 && v < (1ull << 62) ? (uint64_t)v : 0;
}

/* What 100 % memory means for this process, for a HighMemoryUsage alert:
 * the cgroup's memory.max (v2, at our own cgroup or the root of the
 * namespace; v1 memory.limit_in_bytes) when one is set and below the
 * machine's RAM, else MemTotal. 0 when nothing can be read. */
static uint64_t memory_limit_bytes(void)
{
    uint64_t total = 0;
    FILE *fp = fopen("/proc/meminfo", "r");
    if (fp) {
        char line[128];
        unsigned long long kb;
        while (fgets(line, sizeof line, fp))
            if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) {
                total = (uint64_t)kb * 1024;
                break;
            }
        fclose(fp);
    }
    uint64_t lim = 0;
    char cg[512] = "", path[640];
    if ((fp = fopen("/proc/self/cgroup", "r"))) {
        char line[512];
        while (fgets(line, sizeof line, fp))
            if (strncmp(line, "0::", 3) == 0) {
                snprintf(cg, sizeof cg, "%s", line + 3);
                cg[strcspn(cg, "\n")] = '\0';
                break;
            }
        fclose(fp);
    }
    if (cg[0] && strcmp(cg, "/") != 0) {
        snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", cg);
        lim = cgroup_limit(path);
    }
    if (!lim)
        lim = cgroup_limit("/sys/fs/cgroup/memory.max");
    if (!lim)
        lim = cgroup_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    return lim && (lim < total || !total) ? lim : total;
}

/* One unlabelled sample with its HELP and TYPE lines. */
static void put_plain(buf *out, const char *name, const char *help, const char *type, double v)
{
    put_header(out, name, help, type);
    buf_append_str(out, name);
    buf_append_str(out, " ");
    put_double(out, v);
    buf_append_str(out, "\n");
}

/* The names and help texts of the Prometheus client libraries, so
 * dashboards built for them work unchanged. */
static void render_process(buf *out)
{
    proc_usage u;
    if (proc_usage_read(0, &u) < 0)
        return;
    put_plain(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
              "counter", u.cpu_seconds);
    put_plain(out, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
              (double)u.rss_bytes);
    double vm = virtual_bytes();
    if (vm >= 0)
        put_plain(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", vm);
    put_plain(out, "process_open_fds", "Number of open file descriptors.", "gauge",
              (double)u.open_fds);
    put_plain(out, "process_max_fds", "Maximum number of open file descriptors.", "gauge",
              (double)u.max_fds);
    put_plain(out, "process_start_time_seconds",
              "Start time of the process since unix epoch in seconds.", "gauge", u.start_time);
    uint64_t lim = memory_limit_bytes();
    if (lim)
        put_plain(out, "hscale_instance_memory_limit_bytes",
                  "Memory this instance may use: the cgroup limit, else the machine's RAM.",
                  "gauge", (double)lim);
}

void metrics_render(metrics_registry *r, buf *out, bool with_process)
{
    if (r) {
        hist *h = NULL;     /* one scratch copy per render, not per series */
        pthread_mutex_lock(&r->mu);
        for (size_t i = 0; i < r->nfams; i++) {
            const metric_family *f = r->fams[i];
            put_header(out, f->name, f->help, type_str(f->type));
            for (size_t j = 0; j < f->nseries; j++) {
                const metric_series *s = f->series[j];
                if (f->type != METRIC_HISTOGRAM) {
                    put_sample(out, f, s, "", NULL, s->fn ? s->fn(s->fn_arg) : metrics_value_raw(s));
                    continue;
                }
                if (!h && !(h = malloc(sizeof *h)))
                    break;
                render_hist(out, f, s, h);
            }
        }
        pthread_mutex_unlock(&r->mu);
        free(h);
    }
    if (with_process)
        render_process(out);
}
