/* test_ctl_collect.c -- collector: two real scrapes of `hscale app`
 * (tests/unit/data/ctl/app_[12].txt, 40 /casefilter + 40 404s between
 * them) give the expected CPU %, memory %, requests/s and p95; probes and
 * scrapes are not load; histogram_quantile matches Prometheus; counter
 * resets, failed and first scrapes; the gateway's view per backend; pool
 * aggregates with warming and missing instances. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_autoscale.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s (run from the repo root)", path);
    static char data[2][65536];
    static int which;
    char *d = data[which++ & 1];
    *len = fread(d, 1, sizeof data[0], f);
    fclose(f);
    return d;
}

static void scrape(ctl_scrape *s, const char *text, uint64_t at)
{
    char err[256];
    cr_assert_eq(ctl_scrape_parse(s, text, strlen(text), at, err, sizeof err), 0, "%s", err);
}

Test(collect, real_app_scrapes)
{
    size_t l1, l2;
    char *t1 = slurp("tests/unit/data/ctl/app_1.txt", &l1);
    char *t2 = slurp("tests/unit/data/ctl/app_2.txt", &l2);
    ctl_scrape a, b;
    char err[256];
    cr_assert_eq(ctl_scrape_parse(&a, t1, l1, 1000000, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ctl_scrape_parse(&b, t2, l2, 3000000, err, sizeof err), 0, "%s", err);
    /* the family exists before its first series: no requests is 0, not unknown */
    cr_assert_eq(a.requests, 0);
    cr_assert_eq(b.requests, 80);              /* /metrics left out */
    cr_assert_eq(b.errors, 0);                 /* 404s are not errors */
    cr_assert_eq(b.connections, 1);

    ctl_collect_opts o = { .cpu_cores = 1, .mem_limit_bytes = 100u << 20 };
    ctl_inst_metrics m;
    memset(&m, 0, sizeof m);
    ctl_collect_instance(&m, &a, &b, &o);
    cr_assert(!m.missing);
    cr_assert_float_eq(m.v[CTL_M_CPU], 1.0, 1e-9);          /* 0.02 s over 2 s */
    cr_assert_float_eq(m.v[CTL_M_MEMORY], 23990272.0 / (100 << 20) * 100, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_RPS], 40.0, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_ERROR_RATE], 0.0, 1e-9);
    /* merged buckets 40, 78, 79, 80 at 0.1, 0.25, 0.5, 1 ms: rank 76 in the
     * second bucket, 36 of its 38 -> 0.1 + 0.15 * 36/38 ms */
    cr_assert_float_eq(m.v[CTL_M_P95], 0.1 + 0.15 * 36.0 / 38.0, 1e-9);
    cr_assert(isnan(m.v[CTL_M_IN_FLIGHT]));                 /* only the gateway knows */
    cr_assert_float_eq(m.requests, 80, 1e-9);

    o.cpu_cores = 0.5;
    ctl_collect_instance(&m, &a, &b, &o);
    cr_assert_float_eq(m.v[CTL_M_CPU], 2.0, 1e-9);
    o.mem_limit_bytes = 0;
    ctl_collect_instance(&m, &a, &b, &o);
    cr_assert(isnan(m.v[CTL_M_MEMORY]));
}

static const char *app_text(double cpu, double req, double err5, double le1, double inf)
{
    static char t[2048];
    snprintf(t, sizeof t,
             "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %g\n"
             "process_resident_memory_bytes 1048576\n"
             "# TYPE hscale_http_requests_total counter\n"
             "hscale_http_requests_total{route=\"/x\",code=\"200\"} %g\n"
             "hscale_http_requests_total{route=\"/x\",code=\"503\"} %g\n"
             "hscale_http_requests_total{route=\"/health/ready\",code=\"503\"} 1000\n"
             "# TYPE hscale_http_request_duration_seconds histogram\n"
             "hscale_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.1\"} %g\n"
             "hscale_http_request_duration_seconds_bucket{route=\"/x\",le=\"+Inf\"} %g\n"
             "hscale_http_request_duration_seconds_sum{route=\"/x\"} 1\n"
             "hscale_http_request_duration_seconds_count{route=\"/x\"} %g\n"
             "hscale_http_request_duration_seconds_bucket{route=\"/metrics\",le=\"0.1\"} 0\n"
             "hscale_http_request_duration_seconds_bucket{route=\"/metrics\",le=\"+Inf\"} 500\n"
             "hscale_http_request_duration_seconds_sum{route=\"/metrics\"} 1\n"
             "hscale_http_request_duration_seconds_count{route=\"/metrics\"} 500\n",
             cpu, req - err5, err5, le1, inf, inf);
    return t;
}

Test(collect, errors_resets_and_missing)
{
    ctl_scrape a, b, c;
    scrape(&a, app_text(10, 100, 0, 100, 100), 0);
    scrape(&b, app_text(11, 300, 20, 280, 300), 4000000);
    ctl_collect_opts o = { .cpu_cores = 1, .mem_limit_bytes = 2u << 20 };
    ctl_inst_metrics m;
    memset(&m, 0, sizeof m);
    ctl_collect_instance(&m, &a, &b, &o);
    cr_assert_float_eq(m.v[CTL_M_RPS], 50, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_ERROR_RATE], 10, 1e-9);      /* 20 of 200 */
    cr_assert_float_eq(m.v[CTL_M_CPU], 25, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_MEMORY], 50, 1e-9);
    /* 180 of 200 under 0.1 s, rank 190 falls in +Inf: the highest finite bound */
    cr_assert_float_eq(m.v[CTL_M_P95], 100, 1e-9);

    /* restart: every counter went backwards, the new values are the delta */
    scrape(&c, app_text(0.5, 40, 4, 40, 40), 6000000);
    ctl_collect_instance(&m, &b, &c, &o);
    cr_assert_float_eq(m.v[CTL_M_RPS], 20, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_ERROR_RATE], 10, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_CPU], 25, 1e-9);
    cr_assert(m.v[CTL_M_P95] > 0 && m.v[CTL_M_P95] <= 100);

    /* first scrape: gauges only */
    ctl_collect_instance(&m, NULL, &a, &o);
    cr_assert(!m.missing);
    cr_assert(isnan(m.v[CTL_M_CPU]) && isnan(m.v[CTL_M_RPS]) && isnan(m.v[CTL_M_P95]));
    cr_assert_float_eq(m.v[CTL_M_MEMORY], 50, 1e-9);

    /* unscrapable: missing, and nothing reads as zero */
    ctl_scrape f;
    ctl_scrape_fail(&f, 8000000);
    ctl_collect_instance(&m, &c, &f, &o);
    cr_assert(m.missing);
    for (int k = 0; k < CTL_M__COUNT; k++)
        cr_assert(isnan(m.v[k]), "metric %d", k);
    ctl_collect_instance(&m, &f, &c, &o);     /* back, but no previous: gauges only */
    cr_assert(!m.missing && isnan(m.v[CTL_M_RPS]));

    char err[256];
    cr_assert_eq(ctl_scrape_parse(&f, "x 1", 3, 1, err, sizeof err), -1);
    cr_assert(!f.ok);
    cr_assert(strstr(err, "line 1"), "%s", err);
}

Test(collect, quantile_like_prometheus)
{
    ctl_lat l = { .n = 3, .le = { 0.1, 0.2, INFINITY }, .cum = { 10, 20, 20 }, .count = 20 };
    cr_assert_float_eq(ctl_lat_quantile(&l, 0.95), 0.19, 1e-12);
    cr_assert_float_eq(ctl_lat_quantile(&l, 0.5), 0.1, 1e-12);
    cr_assert_float_eq(ctl_lat_quantile(&l, 0.25), 0.05, 1e-12);  /* first bucket from 0 */
    cr_assert(isinf(ctl_lat_quantile(&l, 1.5)));
    l.cum[2] = 100;                                               /* rank in +Inf */
    cr_assert_float_eq(ctl_lat_quantile(&l, 0.95), 0.2, 1e-12);
    ctl_lat empty = { .n = 3, .le = { 0.1, 0.2, INFINITY } };
    cr_assert(isnan(ctl_lat_quantile(&empty, 0.95)));
    ctl_lat noinf = { .n = 2, .le = { 0.1, 0.2 }, .cum = { 1, 2 } };
    cr_assert(isnan(ctl_lat_quantile(&noinf, 0.95)));

    /* merging histograms with different bounds never understates */
    ctl_lat a = { .n = 3, .le = { 0.1, 1, INFINITY }, .cum = { 5, 10, 10 }, .count = 10 };
    ctl_lat b = { .n = 3, .le = { 0.05, 0.5, INFINITY }, .cum = { 2, 4, 6 }, .count = 6 };
    ctl_lat_add(&a, &b);
    cr_assert_eq(a.n, 3);
    cr_assert_float_eq(a.cum[0], 7, 1e-12);
    cr_assert_float_eq(a.cum[1], 14, 1e-12);
    cr_assert_float_eq(a.cum[2], 16, 1e-12);
    cr_assert_float_eq(a.count, 16, 1e-12);
    ctl_lat d;
    ctl_lat_delta(&d, &a, &a);
    cr_assert_eq(d.cum[2], 0);
}

static const char *gw_text(double reqs, double err5, double inflight, double fast, double all)
{
    static char t[4096];
    snprintf(t, sizeof t,
             "# TYPE hscale_gateway_backend_requests_total counter\n"
             "hscale_gateway_backend_requests_total{pool=\"app\",backend=\"127.0.0.1:9001\",code=\"2xx\"} %g\n"
             "hscale_gateway_backend_requests_total{pool=\"app\",backend=\"127.0.0.1:9001\",code=\"5xx\"} %g\n"
             "hscale_gateway_backend_requests_total{pool=\"other\",backend=\"127.0.0.1:9001\",code=\"2xx\"} 999999\n"
             "# TYPE hscale_gateway_backend_in_flight gauge\n"
             "hscale_gateway_backend_in_flight{pool=\"app\",backend=\"127.0.0.1:9001\"} %g\n"
             "hscale_gateway_backend_in_flight{pool=\"app\",backend=\"127.0.0.1:9002\"} 3\n"
             "# TYPE hscale_gateway_backend_up gauge\n"
             "hscale_gateway_backend_up{pool=\"app\",backend=\"127.0.0.1:9001\"} 1\n"
             "# TYPE hscale_gateway_upstream_duration_seconds histogram\n"
             "hscale_gateway_upstream_duration_seconds_bucket{pool=\"app\",backend=\"127.0.0.1:9001\",le=\"0.01\"} %g\n"
             "hscale_gateway_upstream_duration_seconds_bucket{pool=\"app\",backend=\"127.0.0.1:9001\",le=\"0.02\"} %g\n"
             "hscale_gateway_upstream_duration_seconds_bucket{pool=\"app\",backend=\"127.0.0.1:9001\",le=\"+Inf\"} %g\n"
             "hscale_gateway_upstream_duration_seconds_sum{pool=\"app\",backend=\"127.0.0.1:9001\"} 1\n"
             "hscale_gateway_upstream_duration_seconds_count{pool=\"app\",backend=\"127.0.0.1:9001\"} %g\n"
             "hscale_gateway_client_connections 4\n",
             reqs - err5, err5, inflight, fast, all, all, all);
    return t;
}

Test(collect, gateway_view)
{
    static ctl_gwm_scrape g1, g2;
    char err[256];
    const char *t = gw_text(1000, 10, 2, 1000, 1000);
    cr_assert_eq(ctl_gwm_parse(&g1, t, strlen(t), 0, err, sizeof err), 0, "%s", err);
    t = gw_text(3000, 30, 7, 1000, 3000);
    cr_assert_eq(ctl_gwm_parse(&g2, t, strlen(t), 2000000, err, sizeof err), 0, "%s", err);
    cr_assert_eq(g2.n, 3);
    const ctl_gwm_backend *b = ctl_gwm_find(&g2, "app", "127.0.0.1:9001");
    cr_assert(b);
    cr_assert_eq(b->up, 1);
    cr_assert_eq(b->requests, 3000);

    /* an instance the app could not be scraped for: the gateway still knows */
    ctl_inst_metrics m;
    memset(&m, 0, sizeof m);
    snprintf(m.address, sizeof m.address, "127.0.0.1:9001");
    ctl_scrape f;
    ctl_scrape_fail(&f, 2000000);
    ctl_collect_instance(&m, NULL, &f, NULL);
    cr_assert(m.missing);
    ctl_collect_gateway(&m, "app", &g1, &g2);
    cr_assert(!m.missing);
    cr_assert_float_eq(m.v[CTL_M_IN_FLIGHT], 7, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_RPS], 1000, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_ERROR_RATE], 1, 1e-9);
    /* all 2000 new requests took 10..20 ms: rank 1900 -> 10 + 10 * 0.95 ms */
    cr_assert_float_eq(m.v[CTL_M_P95], 19.5, 1e-9);
    cr_assert(isnan(m.v[CTL_M_CPU]));

    /* a backend the gateway knows but sent nothing to: 0 req/s, not unknown */
    memset(&m, 0, sizeof m);
    snprintf(m.address, sizeof m.address, "127.0.0.1:9002");
    ctl_collect_instance(&m, NULL, &f, NULL);
    ctl_collect_gateway(&m, "app", &g1, &g2);
    cr_assert_float_eq(m.v[CTL_M_IN_FLIGHT], 3, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_RPS], 0, 1e-9);
    /* only one gateway scrape: in-flight, no rates */
    ctl_collect_instance(&m, NULL, &f, NULL);
    ctl_collect_gateway(&m, "app", NULL, &g2);
    cr_assert_float_eq(m.v[CTL_M_IN_FLIGHT], 3, 1e-9);
    cr_assert(isnan(m.v[CTL_M_RPS]));
    /* unknown backend: untouched */
    snprintf(m.address, sizeof m.address, "127.0.0.1:1");
    ctl_collect_instance(&m, NULL, &f, NULL);
    ctl_collect_gateway(&m, "app", &g1, &g2);
    cr_assert(m.missing);
}

Test(collect, gateway_backend_table_is_bounded)
{
    static char t[65536];
    static ctl_gwm_scrape g;
    size_t n = 0;
    n += (size_t)snprintf(t + n, sizeof t - n, "# TYPE hscale_gateway_backend_in_flight gauge\n");
    for (int i = 0; i < CTL_GWM_MAX_BACKENDS + 5; i++)
        n += (size_t)snprintf(t + n, sizeof t - n,
                              "hscale_gateway_backend_in_flight{pool=\"p\",backend=\"10.0.0.1:%d\"} 1\n", i);
    char err[256];
    cr_assert_eq(ctl_gwm_parse(&g, t, n, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(g.n, CTL_GWM_MAX_BACKENDS);
    cr_assert(g.truncated);
}

static ctl_inst_metrics inst(const char *id, uint64_t ready_at, double cpu, double rps)
{
    ctl_inst_metrics m;
    memset(&m, 0, sizeof m);
    snprintf(m.id, sizeof m.id, "%s", id);
    m.ready_at_us = ready_at;
    for (int k = 0; k < CTL_M__COUNT; k++)
        m.v[k] = NAN;
    m.v[CTL_M_CPU] = cpu;
    m.v[CTL_M_RPS] = rps;
    return m;
}

Test(collect, pool_aggregate)
{
    ctl_inst_metrics m[4];
    m[0] = inst("a", 1, 80, 100);
    m[1] = inst("b", 1, 40, 300);
    m[2] = inst("c", 100000000, 0, 0);             /* ready at 100 s: warming at 110 s */
    m[3] = inst("d", 1, NAN, NAN);
    m[3].missing = true;
    ctl_lat l = { .n = 2, .le = { 0.1, INFINITY }, .cum = { 90, 100 }, .count = 100 };
    m[0].lat = l;
    m[0].requests = 100;
    m[0].errors = 5;
    m[1].lat = l;
    m[1].requests = 300;
    m[1].errors = 3;
    ctl_pool_metrics p;
    ctl_collect_pool(&p, m, 4, 110000000, 30000000);
    cr_assert_eq(p.instances, 4);
    cr_assert_eq(p.warming, 1);
    cr_assert_eq(p.ready, 3);
    cr_assert_eq(p.missing, 1);
    cr_assert_float_eq(p.avg[CTL_M_CPU], 60, 1e-9);
    cr_assert_float_eq(p.total_rps, 400, 1e-9);
    cr_assert(isnan(p.avg[CTL_M_MEMORY]));
    cr_assert_float_eq(p.error_rate, 2, 1e-9);         /* 8 of 400 */
    cr_assert_float_eq(p.p95_ms, 100, 1e-9);            /* rank 190 of 200 is in +Inf */
    cr_assert(ctl_inst_warming(&m[2], 110000000, 30000000));
    cr_assert(!ctl_inst_warming(&m[2], 130000000, 30000000));
    m[0].ready_at_us = 0;
    cr_assert(ctl_inst_warming(&m[0], 130000000, 0));

    ctl_collect_pool(&p, m, 0, 0, 0);
    cr_assert(isnan(p.avg[CTL_M_CPU]) && isnan(p.p95_ms) && isnan(p.error_rate));
}

Test(collect, metric_names_and_memtotal)
{
    ctl_metric m;
    cr_assert_eq(ctl_metric_parse("p95", &m), 0);
    cr_assert_eq(m, CTL_M_P95);
    cr_assert_str_eq(ctl_metric_name(CTL_M_IN_FLIGHT), "in_flight");
    cr_assert_eq(ctl_metric_parse("latency", &m), -1);
    cr_assert_gt(ctl_machine_memtotal(), 1u << 20);
}
