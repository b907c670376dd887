/* test_metrics.c -- metrics registry: family declaration (same name twice,
 * clashes, invalid names), series lookup by labels, removal, gauge
 * callbacks, byte-exact Prometheus text with escaping, exact totals from 4
 * threads x 1e6 increments, per-thread histogram shards merging to the
 * same histogram as one recorder, a reader rendering while writers run,
 * and `promtool check metrics` accepting the output. */
#include <criterion/criterion.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static char *render(metrics_registry *r, bool with_process)
{
    buf b;
    buf_init(&b);
    metrics_render(r, &b, with_process);
    buf_append(&b, "", 1);
    char *s = strdup(buf_head(&b));
    buf_free(&b);
    cr_assert(s);
    return s;
}

/* ---- declaration and lookup ------------------------------------------ */

Test(metrics, family_declared_twice_is_the_same)
{
    log_set_level(LOG_OFF);          /* the clashes below log errors on purpose */
    metrics_registry *r = metrics_registry_new();
    const char *const l[] = { "a", "b", NULL };
    const char *const l2[] = { "a", "c", NULL };
    metric_family *f = metrics_family(r, "x_total", "X.", METRIC_COUNTER, l);
    cr_assert(f);
    cr_assert_eq(metrics_family(r, "x_total", "Other help.", METRIC_COUNTER, l), f);
    cr_assert_null(metrics_family(r, "x_total", "X.", METRIC_GAUGE, l), "type clash");
    cr_assert_null(metrics_family(r, "x_total", "X.", METRIC_COUNTER, l2), "label clash");
    cr_assert_null(metrics_family(r, "x_total", "X.", METRIC_COUNTER, NULL), "label count clash");
    metrics_registry_free(r);
}

Test(metrics, invalid_declarations)
{
    log_set_level(LOG_OFF);
    metrics_registry *r = metrics_registry_new();
    const char *const le[] = { "le", NULL };
    const char *const dunder[] = { "__x", NULL };
    const char *const dup[] = { "a", "a", NULL };
    const char *const bad[] = { "a-b", NULL };
    const char *const many[] = { "a", "b", "c", "d", "e", "f", "g", NULL };
    cr_assert_null(metrics_family(r, "1abc", "h", METRIC_GAUGE, NULL));
    cr_assert_null(metrics_family(r, "a b", "h", METRIC_GAUGE, NULL));
    cr_assert_null(metrics_family(r, "", "h", METRIC_GAUGE, NULL));
    cr_assert_null(metrics_family(r, "h_seconds", "h", METRIC_HISTOGRAM, le));
    cr_assert_null(metrics_family(r, "g", "h", METRIC_GAUGE, dunder));
    cr_assert_null(metrics_family(r, "g", "h", METRIC_GAUGE, dup));
    cr_assert_null(metrics_family(r, "g", "h", METRIC_GAUGE, bad));
    cr_assert_null(metrics_family(r, "g", "h", METRIC_GAUGE, many));
    cr_assert_not_null(metrics_family(r, "ns:g_le", "h", METRIC_GAUGE, le), "le is fine on a gauge");
    /* NULL family / series are no-ops, not crashes. */
    cr_assert_null(metrics_series(NULL, NULL));
    metrics_inc(NULL);
    metrics_add(NULL, 1);
    metrics_set(NULL, 1);
    metrics_observe_us(NULL, 1);
    cr_assert_eq(metrics_get(NULL), 0);
    metrics_registry_free(r);
}

Test(metrics, series_by_labels)
{
    metrics_registry *r = metrics_registry_new();
    const char *const l[] = { "route", "code", NULL };
    metric_family *f = metrics_family(r, "req_total", "R.", METRIC_COUNTER, l);
    const char *a[] = { "/a", "200" }, *a2[] = { "/a", "200" }, *b[] = { "/a", "500" };
    const char *swap[] = { "200", "/a" };
    metric_series *sa = metrics_series(f, a);
    cr_assert(sa);
    cr_assert_eq(metrics_series(f, a2), sa, "same values, same series");
    cr_assert_neq(metrics_series(f, b), sa);
    cr_assert_neq(metrics_series(f, swap), sa);
    /* Enough series to grow the hash table several times. */
    metric_series *h[300];
    for (int i = 0; i < 300; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        const char *lv[] = { "/many", v };
        h[i] = metrics_series(f, lv);
        metrics_add(h[i], i);
    }
    for (int i = 0; i < 300; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        const char *lv[] = { "/many", v };
        cr_assert_eq(metrics_series(f, lv), h[i]);
        cr_assert_eq(metrics_get(h[i]), i);
    }
    metrics_registry_free(r);
}

Test(metrics, counter_and_gauge_values)
{
    metrics_registry *r = metrics_registry_new();
    metric_series *c = metrics_series(metrics_family(r, "c_total", "C.", METRIC_COUNTER, NULL), NULL);
    metric_series *g = metrics_series(metrics_family(r, "g", "G.", METRIC_GAUGE, NULL), NULL);
    metrics_inc(c);
    metrics_add(c, 2);
    metrics_add(c, 0.5);
    metrics_add(c, -10);          /* counters never go down */
    metrics_add(c, NAN);
    cr_assert_float_eq(metrics_get(c), 3.5, 1e-12);
    metrics_set(g, 7);
    metrics_add(g, -2.25);
    metrics_inc(g);
    cr_assert_float_eq(metrics_get(g), 5.75, 1e-12);
    metrics_set(g, -1);
    cr_assert_float_eq(metrics_get(g), -1, 1e-12);
    metrics_registry_free(r);
}

static double forty_two(void *arg)
{
    return 40 + *(int *)arg;
}

Test(metrics, gauge_callback_and_remove)
{
    metrics_registry *r = metrics_registry_new();
    const char *const l[] = { "pool", NULL };
    metric_family *f = metrics_family(r, "pool_size", "Pool size.", METRIC_GAUGE, l);
    const char *a[] = { "a" }, *b[] = { "b" };
    int two = 2;
    metrics_gauge_fn_set(metrics_series(f, a), forty_two, &two);
    metrics_set(metrics_series(f, b), 3);
    cr_assert_float_eq(metrics_get(metrics_series(f, a)), 42, 1e-12);
    char *s = render(r, false);
    cr_assert_str_eq(s, "# HELP pool_size Pool size.\n# TYPE pool_size gauge\n"
                        "pool_size{pool=\"a\"} 42\npool_size{pool=\"b\"} 3\n");
    free(s);
    metrics_series_remove(f, a);
    metrics_series_remove(f, a);      /* already gone: nothing happens */
    s = render(r, false);
    cr_assert_str_eq(s, "# HELP pool_size Pool size.\n# TYPE pool_size gauge\npool_size{pool=\"b\"} 3\n");
    free(s);
    /* Created again: a fresh series, after the others. */
    metric_series *a2 = metrics_series(f, a);
    cr_assert_eq(metrics_get(a2), 0);
    metrics_series_remove(f, b);
    metrics_series_remove(f, a);
    s = render(r, false);
    cr_assert_str_eq(s, "# HELP pool_size Pool size.\n# TYPE pool_size gauge\n");
    free(s);
    metrics_registry_free(r);
}

/* ---- rendering -------------------------------------------------------- */

Test(metrics, render_byte_exact)
{
    metrics_registry *r = metrics_registry_new();
    const char *const rl[] = { "route", "method", NULL };
    const char *const hl[] = { "server", NULL };
    metric_family *req = metrics_family(r, "hscale_requests_total",
                                        "Requests, by route.\nSecond line with a \\ backslash.",
                                        METRIC_COUNTER, rl);
    metric_family *conns = metrics_family(r, "hscale_connections", "Open connections.",
                                          METRIC_GAUGE, NULL);
    metric_family *dur = metrics_family(r, "hscale_duration_seconds", "Latency.",
                                        METRIC_HISTOGRAM, hl);
    metrics_family(r, "hscale_unused_total", "Never used.", METRIC_COUNTER, NULL);
    const char *v1[] = { "/cases/{id}", "GET" };
    const char *v2[] = { "odd \"q\" \\ \n end", "POST" };
    metrics_add(metrics_series(req, v1), 3);
    metrics_inc(metrics_series(req, v2));
    metrics_set(metrics_series(conns, NULL), 0.25);
    const char *sv[] = { "api" };
    metric_series *d = metrics_series(dur, sv);
    metrics_observe_us(d, 50);
    metrics_observe_us(d, 300);
    metrics_observe_us(d, 2000);
    metrics_observe_us(d, 70000000);
    metrics_build_info(r, "1.2.3", "gateway");
    char *s = render(r, false);
    const char *want =
        "# HELP hscale_requests_total Requests, by route.\\nSecond line with a \\\\ backslash.\n"
        "# TYPE hscale_requests_total counter\n"
        "hscale_requests_total{route=\"/cases/{id}\",method=\"GET\"} 3\n"
        "hscale_requests_total{route=\"odd \\\"q\\\" \\\\ \\n end\",method=\"POST\"} 1\n"
        "# HELP hscale_connections Open connections.\n"
        "# TYPE hscale_connections gauge\n"
        "hscale_connections 0.25\n"
        "# HELP hscale_duration_seconds Latency.\n"
        "# TYPE hscale_duration_seconds histogram\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"0.0001\"} 1\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"0.00025\"} 1\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"0.0005\"} 2\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"0.001\"} 2\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"0.0025\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"0.005\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"0.01\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"0.025\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"0.05\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"0.1\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"0.25\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"0.5\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"1\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"2.5\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"5\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"10\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"30\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"60\"} 3\n"
        "hscale_duration_seconds_bucket{server=\"api\",le=\"+Inf\"} 4\n"
        "hscale_duration_seconds_sum{server=\"api\"} 70.00235\n"
        "hscale_duration_seconds_count{server=\"api\"} 4\n"
        "# HELP hscale_unused_total Never used.\n"
        "# TYPE hscale_unused_total counter\n"
        "# HELP hscale_build_info Build of this hscale binary; the value is always 1.\n"
        "# TYPE hscale_build_info gauge\n"
        "hscale_build_info{version=\"1.2.3\",component=\"gateway\"} 1\n";
    cr_assert_str_eq(s, want, "got:\n%s", s);
    free(s);
    metrics_registry_free(r);
}

Test(metrics, le_bounds_are_sorted_and_end_at_60s)
{
    cr_assert_geq(metrics_le_count, 10);
    for (size_t i = 1; i < metrics_le_count; i++)
        cr_assert_lt(metrics_le_seconds[i - 1], metrics_le_seconds[i]);
    cr_assert_float_eq(metrics_le_seconds[metrics_le_count - 1], 60, 1e-12);
}

Test(metrics, process_metrics)
{
    metrics_registry *r = metrics_registry_new();
    char *s = render(r, true);
    static const char *const names[] = {
        "\nprocess_cpu_seconds_total ", "\nprocess_resident_memory_bytes ",
        "\nprocess_virtual_memory_bytes ", "\nprocess_open_fds ", "\nprocess_max_fds ",
        "\nprocess_start_time_seconds ",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *p = strstr(s, names[i]);
        cr_assert(p, "missing %s in\n%s", names[i] + 1, s);
        p = strchr(p, ' ');
        double v = strtod(p + 1, NULL);
        if (i != 0)
            cr_assert_gt(v, 0, "%s is %g", names[i] + 1, v);
    }
    cr_assert(strstr(s, "# TYPE process_cpu_seconds_total counter\n"));
    free(s);
    metrics_registry_free(r);
}

/* ---- threads ---------------------------------------------------------- */

#define NTHREADS 4
#define PER_THREAD 1000000

typedef struct {
    metric_series *c, *g, *h;
    unsigned slot;
    int bind;
} worker_arg;

static void *incrementer(void *p)
{
    worker_arg *a = p;
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_inc(a->c);
        if (i % 10 == 0)
            metrics_add(a->g, 1);   /* the CAS path: 1e5 per thread */
    }
    return NULL;
}

Test(metrics, four_threads_exact_total)
{
    metrics_registry *r = metrics_registry_new();
    worker_arg a = {
        .c = metrics_series(metrics_family(r, "n_total", "N.", METRIC_COUNTER, NULL), NULL),
        .g = metrics_series(metrics_family(r, "g", "G.", METRIC_GAUGE, NULL), NULL),
    };
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, incrementer, &a), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(metrics_get(a.c), (double)NTHREADS * PER_THREAD);
    cr_assert_eq(metrics_get(a.g), (double)NTHREADS * PER_THREAD / 10);
    metrics_registry_free(r);
}

static uint64_t value_of(unsigned slot, int i)
{
    return 1 + ((uint64_t)i * 7919 + slot * 104729) % 3000000;
}

static void *observer(void *p)
{
    worker_arg *a = p;
    if (a->bind)
        metrics_thread_bind(a->slot);
    cr_assert_eq(metrics_thread_slot(), a->bind ? a->slot % METRICS_SHARDS : METRICS_SHARDS - 1);
    for (int i = 0; i < 200000; i++)
        metrics_observe_us(a->h, value_of(a->slot, i));
    return NULL;
}

static void *scraper(void *p)
{
    metrics_registry *r = p;
    for (int i = 0; i < 20; i++) {
        buf b;
        buf_init(&b);
        metrics_render(r, &b, false);
        buf_free(&b);
    }
    return NULL;
}

Test(metrics, histogram_shards_merge)
{
    metrics_registry *r = metrics_registry_new();
    metric_series *h = metrics_series(metrics_family(r, "lat_seconds", "L.", METRIC_HISTOGRAM, NULL), NULL);
    /* Two bound threads on their own slots, two unbound ones sharing the
     * last slot, and a scraper merging shards while they write. */
    worker_arg a[NTHREADS];
    pthread_t t[NTHREADS], sc;
    for (int i = 0; i < NTHREADS; i++) {
        a[i] = (worker_arg){ .h = h, .slot = (unsigned)i, .bind = i < 2 };
        cr_assert_eq(pthread_create(&t[i], NULL, observer, &a[i]), 0);
    }
    cr_assert_eq(pthread_create(&sc, NULL, scraper, r), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    pthread_join(sc, NULL);

    hist *want = malloc(sizeof *want), *got = malloc(sizeof *got);
    cr_assert(want && got);
    hist_init(want);
    for (unsigned s = 0; s < NTHREADS; s++)
        for (int i = 0; i < 200000; i++)
            hist_record(want, value_of(s, i));
    metrics_hist_snapshot(h, got);
    cr_assert_eq(got->count, want->count);
    cr_assert_eq(got->sum_us, want->sum_us);
    cr_assert_eq(got->min_us, want->min_us);
    cr_assert_eq(got->max_us, want->max_us);
    cr_assert(memcmp(got->buckets, want->buckets, sizeof got->buckets) == 0);
    cr_assert_eq(metrics_get(h), (double)want->count);
    free(want);
    free(got);
    metrics_registry_free(r);
}

Test(metrics, default_registry_is_one)
{
    cr_assert_not_null(metrics_default());
    cr_assert_eq(metrics_default(), metrics_default());
}

/* ---- promtool --------------------------------------------------------- */

Test(metrics, promtool_accepts_output)
{
    metrics_registry *r = metrics_registry_new();
    const char *const rl[] = { "route", "code", NULL };
    metric_family *req = metrics_family(r, "hscale_http_requests_total",
                                        "HTTP requests, by \"route\" and code.\nEscaped \\ too.",
                                        METRIC_COUNTER, rl);
    metric_family *dur = metrics_family(r, "hscale_http_request_duration_seconds",
                                        "Request latency.", METRIC_HISTOGRAM, rl);
    metrics_family(r, "hscale_empty_total", "A family with no series.", METRIC_COUNTER, NULL);
    metric_family *g = metrics_family(r, "hscale_ratio", "A ratio.", METRIC_GAUGE, NULL);
    const char *v1[] = { "/a/\"b\"\\\n", "200" }, *v2[] = { "/c", "503" };
    metrics_add(metrics_series(req, v1), 5);
    metrics_add(metrics_series(req, v2), 0.5);
    for (uint64_t us = 1; us < 90000000; us = us * 3 + 7)
        metrics_observe_us(metrics_series(dur, v1), us);
    metrics_series(dur, v2);                   /* an empty histogram series */
    metrics_set(metrics_series(g, NULL), 1e-9);
    metrics_build_info(r, "0.1.0", "test");
    char *s = render(r, true);

    char path[] = "/tmp/test_metrics_promXXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t n = strlen(s);
    cr_assert_eq(write(fd, s, n), (ssize_t)n);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    char out[4096] = "";
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    int st = pclose(p);
    unlink(path);
    /* A missing promtool is exit 127 from the shell: a failure, not a skip. */
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "promtool check metrics failed (status %d): %s\ninput:\n%s", st, out, s);
    cr_assert_eq(got, 0, "promtool complained: %s", out);
    free(s);
    metrics_registry_free(r);
}

/* ---- memory limit gauge ----------------------------------------------- */

/* The gauge a HighMemoryUsage alert divides by: a cgroup limit below the
 * machine's RAM, else MemTotal. Recomputed here from the same files. */
static unsigned long long expected_memory_limit(void)
{
    unsigned long long total = 0, kb, lim = 0;
    char line[512];
    FILE *fp = fopen("/proc/meminfo", "r");
    cr_assert(fp);
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
            total = kb * 1024;
    fclose(fp);
    const char *paths[] = { "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes" };
    char own[700] = "";
    if ((fp = fopen("/proc/self/cgroup", "r"))) {
        while (fgets(line, sizeof line, fp))
            if (strncmp(line, "0::", 3) == 0 && strcmp(line, "0::/\n") != 0) {
                line[strcspn(line, "\n")] = '\0';
                snprintf(own, sizeof own, "/sys/fs/cgroup%s/memory.max", line + 3);
            }
        fclose(fp);
    }
    for (int i = -1; i < 2 && !lim; i++) {
        const char *p = i < 0 ? own : paths[i];
        unsigned long long v;
        if (!p[0] || !(fp = fopen(p, "r")))
            continue;
        if (fscanf(fp, "%llu", &v) == 1 && v < (1ull << 62))
            lim = v;
        fclose(fp);
    }
    return lim && lim < total ? lim : total;
}

Test(metrics, memory_limit_gauge)
{
    metrics_registry *r = metrics_registry_new();
    char *s = render(r, true);
    cr_assert(strstr(s, "# TYPE hscale_instance_memory_limit_bytes gauge\n"), "%s", s);
    const char *p = strstr(s, "\nhscale_instance_memory_limit_bytes ");
    cr_assert(p, "%s", s);
    double v = strtod(strchr(p + 1, ' ') + 1, NULL);
    cr_assert_gt(v, 1e6);
    cr_assert_float_eq(v, (double)expected_memory_limit(), 0.5);
    free(s);
    s = render(r, false);
    cr_assert_null(strstr(s, "hscale_instance_memory_limit_bytes"), "only with the process metrics");
    free(s);
    metrics_registry_free(r);
}
