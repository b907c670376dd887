/* test_bench_sched.c -- durations, stages, the open-model schedule, the
 * threshold parser and the report maths against known series. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "bench/bench.h"

static char err[BENCH_ERRLEN];

Test(bench_duration, units)
{
    uint64_t us;
    cr_assert_eq(bench_parse_duration("500ms", &us), 0);
    cr_assert_eq(us, 500000);
    cr_assert_eq(bench_parse_duration("2m", &us), 0);
    cr_assert_eq(us, 120000000);
    cr_assert_eq(bench_parse_duration("1.5s", &us), 0);
    cr_assert_eq(us, 1500000);
    cr_assert_eq(bench_parse_duration("3", &us), 0);
    cr_assert_eq(us, 3000000);
    cr_assert_eq(bench_parse_duration("250us", &us), 0);
    cr_assert_eq(us, 250);
    cr_assert_eq(bench_parse_duration("1h", &us), 0);
    cr_assert_eq(us, 3600000000ull);
    cr_assert_eq(bench_parse_duration("10x", &us), -1);
    cr_assert_eq(bench_parse_duration("-1s", &us), -1);
    cr_assert_eq(bench_parse_duration("", &us), -1);
    cr_assert_eq(bench_parse_duration("s", &us), -1);
}

Test(bench_stages, parse_and_ramp)
{
    bench_stage st[BENCH_MAX_STAGES];
    size_t n;
    cr_assert_eq(bench_parse_stages("30s:100,2m:1000,30s:0", st, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 3);
    cr_assert_eq(bench_stages_total_us(st, n), 180000000ull);
    cr_assert_float_eq(bench_stages_target(st, n, 0), 0, 1e-9);
    cr_assert_float_eq(bench_stages_target(st, n, 15000000), 50, 1e-9);     /* halfway up */
    cr_assert_float_eq(bench_stages_target(st, n, 30000000), 100, 1e-9);
    cr_assert_float_eq(bench_stages_target(st, n, 90000000), 550, 1e-9);    /* 100 -> 1000 */
    cr_assert_float_eq(bench_stages_target(st, n, 165000000), 500, 1e-9);   /* ramp down */
    cr_assert_float_eq(bench_stages_target(st, n, 999000000), 0, 1e-9);
    cr_assert_eq(bench_parse_stages("30s", st, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "DURATION:TARGET"), "%s", err);
    cr_assert_eq(bench_parse_stages("30s:10,,1m:5", st, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "stage 2"), "%s", err);
    cr_assert_eq(bench_parse_stages("30q:10", st, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "bad duration"), "%s", err);
    cr_assert_eq(bench_parse_stages("30s:-1", st, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "bad target"), "%s", err);
}

Test(bench_sched, constant_rate_is_evenly_spaced_and_exact)
{
    bench_stage st[2] = {{0, 1000}, {2000000, 1000}};   /* 1000/s for 2 s */
    for (int k = 0; k < 2000; k++)
        cr_assert_eq(bench_sched_at(st, 2, k), (uint64_t)k * 1000, "arrival %d", k);
    cr_assert_eq(bench_sched_at(st, 2, 2000), UINT64_MAX);
}

Test(bench_sched, linear_ramp_follows_the_integral)
{
    /* 0 -> 100/s over 10 s: N(t) = 5 t^2, so arrival k is at sqrt(k/5). */
    bench_stage st[1] = {{10000000, 100}};
    for (int k = 0; k < 500; k += 7) {
        double want = sqrt(k / 5.0) * 1e6;
        cr_assert(fabs((double)bench_sched_at(st, 1, k) - want) <= 1.0, "k=%d", k);
    }
    cr_assert_eq(bench_sched_at(st, 1, 500), UINT64_MAX);   /* 500 arrivals in all */
    /* Ramp down 100 -> 0 over 10 s after a 1 s hold at 100/s. */
    bench_stage dn[3] = {{0, 100}, {1000000, 100}, {10000000, 0}};
    uint64_t prev = 0;
    int count = 0;
    for (int k = 0;; k++) {
        uint64_t t = bench_sched_at(dn, 3, k);
        if (t == UINT64_MAX)
            break;
        cr_assert_geq(t, prev);
        prev = t;
        count++;
    }
    cr_assert_eq(count, 100 + 500);
    /* Arrival 100 + 375 is where 3/4 of the ramp-down area is used: t = 1 + 5 s. */
    cr_assert(fabs((double)bench_sched_at(dn, 3, 475) - 6e6) < 2, "%llu",
              (unsigned long long)bench_sched_at(dn, 3, 475));
}

Test(bench_sched, threads_interleave_to_the_full_rate)
{
    /* Thread i of T takes arrivals i, i+T, ...: together they are the series. */
    bench_stage st[2] = {{0, 300}, {1000000, 300}};
    int T = 3, total = 0;
    for (int i = 0; i < T; i++)
        for (int j = 0; bench_sched_at(st, 2, i + j * T) != UINT64_MAX; j++)
            total++;
    cr_assert_eq(total, 300);
}

Test(bench_threshold, grammar)
{
    bench_threshold t;
    cr_assert_eq(bench_threshold_parse(&t, "p95<200ms", err, sizeof err), 0, "%s", err);
    cr_assert_eq(t.metric, BENCH_M_P95);
    cr_assert_eq(t.op, BENCH_OP_LT);
    cr_assert_float_eq(t.limit, 200, 1e-9);
    cr_assert_null(t.name);
    bench_threshold_free(&t);
    cr_assert_eq(bench_threshold_parse(&t, "p99.9<=1.5s", err, sizeof err), 0);
    cr_assert_eq(t.metric, BENCH_M_P999);
    cr_assert_eq(t.op, BENCH_OP_LE);
    cr_assert_float_eq(t.limit, 1500, 1e-9);
    bench_threshold_free(&t);
    cr_assert_eq(bench_threshold_parse(&t, "errors<1%", err, sizeof err), 0);
    cr_assert_eq(t.metric, BENCH_M_ERRORS);
    cr_assert_float_eq(t.limit, 0.01, 1e-12);
    bench_threshold_free(&t);
    cr_assert_eq(bench_threshold_parse(&t, "rate<0.01", err, sizeof err), 0);   /* k6 spelling */
    cr_assert_float_eq(t.limit, 0.01, 1e-12);
    bench_threshold_free(&t);
    cr_assert_eq(bench_threshold_parse(&t, "p(95)<200", err, sizeof err), 0);   /* k6: ms */
    cr_assert_eq(t.metric, BENCH_M_P95);
    cr_assert_float_eq(t.limit, 200, 1e-9);
    bench_threshold_free(&t);
    cr_assert_eq(bench_threshold_parse(&t, "rps>=1000", err, sizeof err), 0);
    cr_assert_eq(t.op, BENCH_OP_GE);
    bench_threshold_free(&t);
    cr_assert_eq(bench_threshold_parse(&t, "get_cases:p99<300us", err, sizeof err), 0);
    cr_assert_str_eq(t.name, "get_cases");
    cr_assert_float_eq(t.limit, 0.3, 1e-12);
    bench_threshold_free(&t);
    cr_assert_eq(bench_threshold_parse(&t, "max>2", err, sizeof err), 0);
    cr_assert_eq(t.op, BENCH_OP_GT);
    bench_threshold_free(&t);
}

Test(bench_threshold, bad_syntax_is_explained)
{
    bench_threshold t;
    cr_assert_eq(bench_threshold_parse(&t, "p95", err, sizeof err), -1);
    cr_assert(strstr(err, "expected METRIC<VALUE"), "%s", err);
    cr_assert_eq(bench_threshold_parse(&t, "p96<2ms", err, sizeof err), -1);
    cr_assert(strstr(err, "unknown metric 'p96'"), "%s", err);
    cr_assert_eq(bench_threshold_parse(&t, "p95<fast", err, sizeof err), -1);
    cr_assert(strstr(err, "expected a number"), "%s", err);
    cr_assert_eq(bench_threshold_parse(&t, "p95<2h", err, sizeof err), -1);
    cr_assert(strstr(err, "unknown unit"), "%s", err);
    cr_assert_eq(bench_threshold_parse(&t, "errors<5", err, sizeof err), -1);
    cr_assert(strstr(err, "percentage"), "%s", err);
    cr_assert_eq(bench_threshold_parse(&t, ":p95<2ms", err, sizeof err), -1);
    cr_assert(strstr(err, "empty request name"), "%s", err);
}

Test(bench_threshold, evaluation)
{
    bench_threshold t;
    bench_summary s = {.p95_ms = 199.9, .err_rate = 0.01, .rps = 1000};
    cr_assert_eq(bench_threshold_parse(&t, "p95<200ms", err, sizeof err), 0);
    cr_assert(bench_threshold_ok(&t, bench_threshold_value(&t, &s)));
    s.p95_ms = 200;
    cr_assert_not(bench_threshold_ok(&t, bench_threshold_value(&t, &s)));
    bench_threshold_free(&t);
    cr_assert_eq(bench_threshold_parse(&t, "errors<1%", err, sizeof err), 0);
    cr_assert_not(bench_threshold_ok(&t, bench_threshold_value(&t, &s)));   /* 1% is not < 1% */
    bench_threshold_free(&t);
    cr_assert_eq(bench_threshold_parse(&t, "rps>=1000", err, sizeof err), 0);
    cr_assert(bench_threshold_ok(&t, bench_threshold_value(&t, &s)));
    bench_threshold_free(&t);
}

Test(bench_stats, report_maths_on_a_known_series)
{
    /* 1..1000 ms once each over 10 s, plus 10 failures: quantiles are known
     * exactly and the histogram is within 1 %. */
    bench_stats *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    bench_stats_init(a);
    bench_stats_init(b);
    for (int ms = 1; ms <= 1000; ms++)
        bench_stats_response(ms % 2 ? a : b, 200, (uint64_t)ms * 1000);
    for (int i = 0; i < 5; i++) {
        bench_stats_response(a, 503, 1000);
        bench_stats_error(b, BENCH_ERR_RESET);
    }
    bench_stats_merge(a, b);
    bench_summary s;
    bench_summarize(a, 10.0, &s);
    cr_assert_eq(s.count, 1010);
    cr_assert_eq(s.failures, 10);
    cr_assert_float_eq(s.rps, 101.0, 1e-9);
    cr_assert_float_eq(s.err_rate, 10.0 / 1010, 1e-12);
    cr_assert_eq(a->status[200], 1000);
    cr_assert_eq(a->status[503], 5);
    cr_assert_eq(a->errors[BENCH_ERR_HTTP5XX], 5);
    cr_assert_eq(a->errors[BENCH_ERR_RESET], 5);
    cr_assert_eq(a->lat.count, 1005);   /* transport errors have no latency */
    cr_assert_float_eq(s.min_ms, 1.0, 0.01);
    cr_assert_float_eq(s.max_ms, 1000.0, 10);
    /* rank q*1005: p50 ~ 500 (5 extra 1 ms values shift it by ~2.5 ms) */
    cr_assert(fabs(s.p50_ms - 497.5) < 500 * 0.01 + 1, "p50 %f", s.p50_ms);
    cr_assert(fabs(s.p90_ms - 899.5) < 900 * 0.01 + 1, "p90 %f", s.p90_ms);
    cr_assert(fabs(s.p99_ms - 989.9) < 990 * 0.01 + 1, "p99 %f", s.p99_ms);
    cr_assert(fabs(s.mean_ms - (500500.0 + 5) / 1005) < 0.01, "mean %f", s.mean_ms);
    free(a);
    free(b);
}

Test(bench_stats, empty_stats_summarize_to_zero)
{
    bench_stats *a = malloc(sizeof *a);
    bench_stats_init(a);
    bench_summary s;
    bench_summarize(a, 0, &s);
    cr_assert_eq(s.count, 0);
    cr_assert_float_eq(s.rps, 0, 1e-12);
    cr_assert_float_eq(s.p99_ms, 0, 1e-12);
    free(a);
}
