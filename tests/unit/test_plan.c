/* test_plan.c -- capacity planning (bench_cap_*): the seeds' formulas give
 * the seeds' numbers, headroom and the minimum apply, reports are judged
 * against the SLO, and bad input is refused naming the flag or field. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"

static char errbuf[512];

/* ---- the formula ---- */

Test(plan, surgicase_ceil_users_over_users_per_instance)
{
    /* "500 concurrent users: ceil(500/100) = 5 instances" */
    cr_assert_eq(bench_cap_instances(500, 100, 0, 1), 5);
    cr_assert_eq(bench_cap_instances(501, 100, 0, 1), 6);
    cr_assert_eq(bench_cap_instances(499, 100, 0, 1), 5);
    cr_assert_eq(bench_cap_instances(100, 100, 0, 1), 1);
}

Test(plan, headroom_keeps_capacity_spare_and_exact_quotients_stay_exact)
{
    /* 30 % headroom: instances run at 70 %; 700 / 70 is exactly 10. */
    cr_assert_eq(bench_cap_instances(700, 100, 30, 1), 10);
    cr_assert_eq(bench_cap_instances(701, 100, 30, 1), 11);
    cr_assert_eq(bench_cap_instances(1000, 100, 50, 1), 20);
    cr_assert_eq(bench_cap_instances(3, 0.1, 70, 1), 100);
}

Test(plan, minimum_and_degenerate_inputs)
{
    cr_assert_eq(bench_cap_instances(10, 100, 30, 2), 2);
    cr_assert_eq(bench_cap_instances(0, 100, 30, 2), 2);
    cr_assert_eq(bench_cap_instances(10, 0, 30, 2), UINT64_MAX);
    cr_assert_eq(bench_cap_instances(10, 100, 100, 2), UINT64_MAX);
    cr_assert_eq(bench_cap_instances(1e30, 1, 0, 2), UINT64_MAX);
}

/* ---- planning ---- */

Test(plan, medease_per_10k_users_table)
{
    /* MedEase: 500 req/s per 10k users served by 5 tasks = 100 req/s each. */
    bench_cap_in in;
    bench_cap_defaults(&in);
    in.rps_per_instance = 100;
    in.headroom_pct = 0;
    bench_cap_out o;
    cr_assert_eq(bench_cap_plan(&in, &o, errbuf, sizeof errbuf), 0, "%s", errbuf);
    cr_assert_not(o.has_target);
    const double users[] = { 10000, 50000, 100000, 500000 };
    const uint64_t inst[] = { 5, 25, 50, 250 };
    for (int i = 0; i < BENCH_CAP_ROWS; i++) {
        cr_assert_float_eq(o.table[i].users, users[i], 1e-9);
        cr_assert_float_eq(o.table[i].rps, users[i] * 0.05, 1e-9);
        cr_assert_eq(o.table[i].instances, inst[i], "row %d: %llu", i,
                     (unsigned long long)o.table[i].instances);
        cr_assert_eq(o.table[i].conns_steady, inst[i] * 10);
        cr_assert_eq(o.table[i].conns_peak, inst[i] * 30);
    }
    cr_assert_float_eq(o.per_instance_users, 2000, 1e-9);
}

Test(plan, users_target_with_users_capacity_and_db_connections)
{
    bench_cap_in in;
    bench_cap_defaults(&in);
    in.users_per_instance = 100;
    in.users = 500;
    in.headroom_pct = 0;
    in.pool_size = 5;
    in.pool_overflow = 10;
    in.db_max_connections = 70;
    bench_cap_out o;
    cr_assert_eq(bench_cap_plan(&in, &o, errbuf, sizeof errbuf), 0, "%s", errbuf);
    cr_assert(o.has_target);
    cr_assert_eq(o.target.instances, 5);
    cr_assert_eq(o.raw_instances, 5);
    cr_assert_eq(o.target.conns_steady, 25);
    cr_assert_eq(o.target.conns_peak, 75);
    cr_assert(o.conns_over_limit);          /* 75 > 70 */
    cr_assert_float_eq(o.target.rps, 25, 1e-9);

    in.db_max_connections = 0;              /* 0: no limit to check */
    cr_assert_eq(bench_cap_plan(&in, &o, errbuf, sizeof errbuf), 0);
    cr_assert_not(o.conns_over_limit);
}

Test(plan, rps_target_goes_through_rps_and_minimum_applies)
{
    bench_cap_in in;
    bench_cap_defaults(&in);
    in.rps_per_instance = 1000;
    in.rps = 300;                           /* 300 / 700 -> 1, raised to min 2 */
    bench_cap_out o;
    cr_assert_eq(bench_cap_plan(&in, &o, errbuf, sizeof errbuf), 0, "%s", errbuf);
    cr_assert_eq(o.raw_instances, 1);
    cr_assert_eq(o.target.instances, 2);
    cr_assert_float_eq(o.target.users, 6000, 1e-9);
    cr_assert_float_eq(o.usable_rps, 700, 1e-9);

    in.users_per_instance = 20000;          /* = 1000 req/s at 0.05 per user */
    in.rps_per_instance = 0;
    in.rps = 7000;
    cr_assert_eq(bench_cap_plan(&in, &o, errbuf, sizeof errbuf), 0, "%s", errbuf);
    cr_assert_eq(o.target.instances, 10);
}

static void expect_plan_error(const bench_cap_in *in, const char *needle)
{
    bench_cap_out o;
    errbuf[0] = '\0';
    cr_assert_neq(bench_cap_plan(in, &o, errbuf, sizeof errbuf), 0, "expected an error with %s",
                  needle);
    cr_assert(strstr(errbuf, needle), "error '%s' does not name %s", errbuf, needle);
}

Test(plan, bad_input_names_the_flag)
{
    bench_cap_in in;
    bench_cap_defaults(&in);
    expect_plan_error(&in, "--users-per-instance");          /* no capacity */
    in.rps_per_instance = 100;
    in.users_per_instance = 10;
    expect_plan_error(&in, "--rps-per-instance");            /* two capacities */
    in.users_per_instance = 0;
    in.users = 10;
    in.rps = 10;
    expect_plan_error(&in, "--rps");                         /* two targets */
    in.rps = -1;
    in.headroom_pct = 96;
    expect_plan_error(&in, "--headroom");
    in.headroom_pct = 30;
    in.rps_per_user = 0;
    expect_plan_error(&in, "--rps-per-user");
    in.rps_per_user = 0.05;
    in.min_instances = 0;
    expect_plan_error(&in, "--min");
    in.min_instances = 2;
    in.pool_size = 0;
    expect_plan_error(&in, "--pool-size");
    in.pool_size = 10;
    in.rps_per_instance = 1e-6;
    in.users = 1e12;
    expect_plan_error(&in, "--users");                       /* absurd count */
}

/* ---- reports ---- */

static char *write_report(const char *json)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/test_plan_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    return path;
}

static const char *report_fmt =
    "{\"tool\": \"hscale bench\", \"total\": {\"name\": \"TOTAL\", \"count\": %d, "
    "\"rps\": %g, \"error_rate\": %g, \"latency_ms\": {\"p50\": 1, \"p95\": %g, \"p99\": %g}}}";

static int read_report(int count, double rps, double er, double p95, double p99, double slo95,
                       double slo99, bench_cap_report *r)
{
    char json[512];
    snprintf(json, sizeof json, report_fmt, count, rps, er, p95, p99);
    char *path = write_report(json);
    int rc = bench_cap_read_report(path, slo95, slo99, r, errbuf, sizeof errbuf);
    unlink(path);
    return rc;
}

Test(plan, report_within_slo_is_its_good_throughput)
{
    bench_cap_report r;
    cr_assert_eq(read_report(10000, 1000, 0.01, 120, 300, 500, 0, &r), 0, "%s", errbuf);
    cr_assert(r.met_slo);
    cr_assert_float_eq(r.capacity_rps, 990, 1e-9);
    cr_assert_eq(r.count, 10000);
    cr_assert_float_eq(r.p99_ms, 300, 1e-9);
}

Test(plan, report_over_slo_is_scaled_down)
{
    bench_cap_report r;
    cr_assert_eq(read_report(10000, 1000, 0, 1000, 1200, 500, 0, &r), 0, "%s", errbuf);
    cr_assert_not(r.met_slo);
    cr_assert_float_eq(r.capacity_rps, 500, 1e-9);
    /* p99 within its own SLO but p95 over: p95 decides. */
    cr_assert_eq(read_report(10000, 1000, 0, 1000, 1200, 500, 2000, &r), 0);
    cr_assert_float_eq(r.capacity_rps, 500, 1e-9);
    /* p95 fine, p99 over a given p99 SLO: scaled by 600 / 1200. */
    cr_assert_eq(read_report(10000, 1000, 0, 100, 1200, 500, 600, &r), 0);
    cr_assert_not(r.met_slo);
    cr_assert_float_eq(r.capacity_rps, 500, 1e-9);
    /* Without a p99 SLO the same report is within. */
    cr_assert_eq(read_report(10000, 1000, 0, 100, 1200, 500, 0, &r), 0);
    cr_assert(r.met_slo);
}

Test(plan, bad_reports_name_the_file_and_field)
{
    bench_cap_report r;
    cr_assert_neq(read_report(0, 0, 0, 0, 0, 500, 0, &r), 0);
    cr_assert(strstr(errbuf, "no request succeeded"), "%s", errbuf);
    cr_assert_neq(read_report(10, 100, 1, 5, 5, 500, 0, &r), 0);   /* all failed */
    cr_assert(strstr(errbuf, "no request succeeded"), "%s", errbuf);

    char *p = write_report("{\"tool\": \"hscale bench\", \"total\": {\"count\": 5, \"rps\": 10, "
                           "\"error_rate\": 0, \"latency_ms\": {\"p95\": \"fast\", \"p99\": 1}}}");
    cr_assert_neq(bench_cap_read_report(p, 500, 0, &r, errbuf, sizeof errbuf), 0);
    cr_assert(strstr(errbuf, "total.latency_ms.p95") && strstr(errbuf, p), "%s", errbuf);
    unlink(p);

    p = write_report("{\"tool\": \"wrk\", \"total\": {}}");
    cr_assert_neq(bench_cap_read_report(p, 500, 0, &r, errbuf, sizeof errbuf), 0);
    cr_assert(strstr(errbuf, "tool"), "%s", errbuf);
    unlink(p);

    p = write_report("{\"total\": {\"count\": 5,\n \"rps\": }");
    cr_assert_neq(bench_cap_read_report(p, 500, 0, &r, errbuf, sizeof errbuf), 0);
    cr_assert(strstr(errbuf, "line 2"), "%s", errbuf);
    unlink(p);

    cr_assert_neq(bench_cap_read_report("/nonexistent/r.json", 500, 0, &r, errbuf, sizeof errbuf), 0);
    cr_assert(strstr(errbuf, "/nonexistent/r.json"), "%s", errbuf);
}

/* ---- output ---- */

static char *render(bool json, const bench_cap_in *in, const bench_cap_out *o)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert(f);
    if (json)
        cr_assert_eq(bench_cap_print_json(f, in, o), 0);
    else
        bench_cap_print_text(f, in, o);
    fclose(f);
    return text;
}

Test(plan, json_and_text_carry_the_numbers)
{
    bench_cap_report r;
    cr_assert_eq(read_report(5000, 400, 0, 50, 80, 200, 0, &r), 0, "%s", errbuf);
    bench_cap_in in;
    bench_cap_defaults(&in);
    in.report = &r;
    in.rps_per_instance = r.capacity_rps;
    in.users = 100000;                    /* 5000 req/s / (400 x 0.7) = 17.9 -> 18 */
    bench_cap_out o;
    cr_assert_eq(bench_cap_plan(&in, &o, errbuf, sizeof errbuf), 0, "%s", errbuf);
    cr_assert_eq(o.target.instances, 18);

    char *js = render(true, &in, &o);
    json_error_t je;
    json_t *root = json_loads(js, 0, &je);
    cr_assert(root, "bad JSON: %s\n%s", je.text, js);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(root, "capacity"), "source")),
                     "report");
    json_t *t = json_object_get(root, "target");
    cr_assert_eq(json_integer_value(json_object_get(t, "instances")), 18);
    cr_assert_eq(json_integer_value(json_object_get(t, "db_connections_peak")), 18 * 30);
    cr_assert(json_is_true(json_object_get(t, "db_connections_over_limit")));
    cr_assert_eq(json_array_size(json_object_get(root, "table")), BENCH_CAP_ROWS);
    json_t *rep = json_object_get(json_object_get(root, "capacity"), "report");
    cr_assert(json_is_true(json_object_get(rep, "met_slo")));
    json_decref(root);
    free(js);

    char *txt = render(false, &in, &o);
    cr_assert(strstr(txt, "instances needed:  18"), "%s", txt);
    cr_assert(strstr(txt, "within the SLO"), "%s", txt);
    cr_assert(strstr(txt, "exceeds the database's max_connections 100"), "%s", txt);
    cr_assert(strstr(txt, "500k"), "%s", txt);
    free(txt);
}
