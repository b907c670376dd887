/* test_ctl_deploy.c -- deploys: the request parser (defaults, every
 * refusal naming its field), amounts, the verdicts on a new version,
 * per-pool numbers from gateway scrapes, the routes rewrite that moves
 * traffic, and the deployer itself driving the instance manager with real
 * children (a rolling deploy that succeeds, one whose new version never
 * gets ready and is rolled back, a strategy refused without a gateway). */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control/ctl_deploy.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static int parse(ctl_dep_spec *s, const char *json, char *field, char *err)
{
    return ctl_dep_spec_parse(s, json, strlen(json), field, 64, err, 512);
}

Test(dep_spec, defaults)
{
    ctl_dep_spec s;
    char f[64], e[512];
    cr_assert_eq(parse(&s, "{\"strategy\":\"rolling\",\"version\":\"v2\"}", f, e), 0, "%s", e);
    cr_assert_eq(s.strategy, CTL_DEP_ROLLING);
    cr_assert_str_eq(s.version, "v2");
    cr_assert_eq(s.max_surge.value, 1);
    cr_assert_eq(s.max_unavailable.value, 0);
    cr_assert_eq(s.nsteps, 4);
    cr_assert_eq(s.steps[0], 5);
    cr_assert_eq(s.steps[3], 100);
    cr_assert_null(s.command);
    cr_assert(s.auto_promote);
    ctl_dep_spec_free(&s);
}

Test(dep_spec, options)
{
    ctl_dep_spec s;
    char f[64], e[512];
    cr_assert_eq(parse(&s, "{\"strategy\":\"canary\",\"version\":\"v3\",\"command\":\"run {port}\","
                       "\"env\":[\"A=1\"],\"steps\":[10,40],\"pause\":\"3s\",\"max_surge\":\"25%\","
                       "\"smoke\":[{\"path\":\"/x\",\"expect\":204},{\"path\":\"/y\"}],"
                       "\"rollback_window\":2.5,\"auto_promote\":false,\"min_requests\":7}",
                       f, e), 0, "%s", e);
    cr_assert_eq(s.strategy, CTL_DEP_CANARY);
    cr_assert_str_eq(s.command, "run {port}");
    cr_assert_eq(s.nenv, 1);
    cr_assert_str_eq(s.env[0], "A=1");
    /* 100 % is always the last step. */
    cr_assert_eq(s.nsteps, 3);
    cr_assert_eq(s.steps[2], 100);
    cr_assert_eq(s.pause_us, 3000000u);
    cr_assert_eq(s.rollback_window_us, 2500000u);
    cr_assert(s.max_surge.percent && s.max_surge.value == 25);
    cr_assert_eq(s.nsmoke, 2);
    cr_assert_eq(s.smoke[0].expect, 204);
    cr_assert_eq(s.smoke[1].expect, 200);
    cr_assert_not(s.auto_promote);
    cr_assert_float_eq(s.min_requests, 7, 1e-9);
    ctl_dep_spec_free(&s);
}

Test(dep_spec, refusals_name_the_field)
{
    static const struct { const char *json, *field, *says; } cases[] = {
        { "[1]", "body", "JSON object" },
        { "{\"strategy\":\"sideways\",\"version\":\"v\"}", "strategy", "rolling, bluegreen or canary" },
        { "{\"strategy\":\"rolling\"}", "version", "version" },
        { "{\"strategy\":\"rolling\",\"version\":\"\"}", "version", "non-empty" },
        { "{\"strategy\":\"rolling\",\"version\":\"v\",\"colour\":1}", "colour", "unknown field" },
        { "{\"strategy\":\"rolling\",\"version\":\"v\",\"max_surge\":\"x\"}", "max_surge", "percentage" },
        { "{\"strategy\":\"rolling\",\"version\":\"v\",\"max_surge\":0}", "max_surge", "above 0" },
        { "{\"strategy\":\"canary\",\"version\":\"v\",\"steps\":[50,10]}", "steps[1]", "increasing" },
        { "{\"strategy\":\"canary\",\"version\":\"v\",\"steps\":[]}", "steps", "1..16" },
        { "{\"strategy\":\"canary\",\"version\":\"v\",\"pause\":\"soon\"}", "pause", "duration" },
        { "{\"strategy\":\"canary\",\"version\":\"v\",\"max_error_rate\":101}", "max_error_rate", "0..100" },
        { "{\"strategy\":\"bluegreen\",\"version\":\"v\",\"smoke\":[{\"path\":\"x\"}]}", "smoke[0].path", "'/'" },
        { "{\"strategy\":\"bluegreen\",\"version\":\"v\",\"smoke\":[{\"path\":\"/\",\"expect\":9}]}",
          "smoke[0].expect", "100..599" },
        { "{\"strategy\":\"rolling\",\"version\":\"v\",\"env\":[\"NOEQUALS\"]}", "env[0]", "KEY=value" },
        { "{\"strategy\":\"rolling\",\"version\":\"v\",\"instances\":0}", "instances", "1..256" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ctl_dep_spec s;
        char f[64] = "", e[512] = "";
        cr_assert_eq(parse(&s, cases[i].json, f, e), -1, "%s", cases[i].json);
        cr_assert_str_eq(f, cases[i].field, "%s: field %s (%s)", cases[i].json, f, e);
        cr_assert(strstr(e, cases[i].says), "%s: %s", cases[i].json, e);
        cr_assert_null(s.env);
    }
}

Test(dep_spec, amounts)
{
    cr_assert_eq(ctl_dep_amount_of((ctl_dep_amount){ 2, false }, 10, true), 2);
    cr_assert_eq(ctl_dep_amount_of((ctl_dep_amount){ 25, true }, 2, true), 1);
    cr_assert_eq(ctl_dep_amount_of((ctl_dep_amount){ 25, true }, 2, false), 0);
    cr_assert_eq(ctl_dep_amount_of((ctl_dep_amount){ 50, true }, 4, false), 2);
    cr_assert_eq(ctl_dep_amount_of((ctl_dep_amount){ 100, true }, 3, true), 3);
}

static ctl_dep_spec judge_spec(void)
{
    ctl_dep_spec s;
    char f[64], e[512];
    cr_assert_eq(parse(&s, "{\"strategy\":\"canary\",\"version\":\"v\",\"min_requests\":50}", f, e), 0);
    return s;
}

static ctl_dep_stats st(double req, double err, double p95)
{
    return (ctl_dep_stats){ req, err, req > 0 ? err * 100 / req : NAN, p95 };
}

Test(dep_judge, verdicts)
{
    ctl_dep_spec s = judge_spec();
    char why[256];
    ctl_dep_stats base = st(1000, 0, 5);
    ctl_dep_stats c = st(100, 0, 6);
    cr_assert_eq(ctl_dep_judge(&s, &c, &base, why, sizeof why), CTL_VERDICT_PASS, "%s", why);
    /* Too little traffic holds, never passes. */
    c = st(20, 0, 5);
    cr_assert_eq(ctl_dep_judge(&s, &c, &base, why, sizeof why), CTL_VERDICT_INCONCLUSIVE);
    cr_assert(strstr(why, "fewer than"), "%s", why);
    /* ...but enough errors fail at once. */
    c = st(20, 6, 5);
    cr_assert_eq(ctl_dep_judge(&s, &c, &base, why, sizeof why), CTL_VERDICT_FAIL, "%s", why);
    cr_assert(strstr(why, "error rate"), "%s", why);
    /* One error in twenty is not yet enough to know. */
    c = st(20, 1, 5);
    cr_assert_eq(ctl_dep_judge(&s, &c, &base, why, sizeof why), CTL_VERDICT_INCONCLUSIVE, "%s", why);
    /* Absolute p95. */
    c = st(100, 0, 800);
    cr_assert_eq(ctl_dep_judge(&s, &c, &base, why, sizeof why), CTL_VERDICT_FAIL);
    cr_assert(strstr(why, "p95 800.0 ms above 500.0"), "%s", why);
    /* Against the stable pool: 3x slower (and above the noise floor). */
    c = st(100, 0, 60);
    base = st(1000, 0, 20);
    cr_assert_eq(ctl_dep_judge(&s, &c, &base, why, sizeof why), CTL_VERDICT_FAIL);
    cr_assert(strstr(why, "stable"), "%s", why);
    /* Under the noise floor a ratio does not count. */
    c = st(100, 0, 6);
    base = st(1000, 0, 1);
    cr_assert_eq(ctl_dep_judge(&s, &c, &base, why, sizeof why), CTL_VERDICT_PASS, "%s", why);
    /* Error rate relative to a stable pool that errs too. */
    s.max_error_rate = 50;
    c = st(100, 10, 5);
    base = st(1000, 20, 5);
    cr_assert_eq(ctl_dep_judge(&s, &c, &base, why, sizeof why), CTL_VERDICT_FAIL, "%s", why);
    c = st(100, 2, 5);
    cr_assert_eq(ctl_dep_judge(&s, &c, &base, why, sizeof why), CTL_VERDICT_PASS, "%s", why);
    /* Without a stable pool to compare, absolute thresholds only. */
    c = st(100, 10, 5);
    cr_assert_eq(ctl_dep_judge(&s, &c, NULL, why, sizeof why), CTL_VERDICT_PASS, "%s", why);
    cr_assert_str_eq(ctl_verdict_name(CTL_VERDICT_INCONCLUSIVE), "inconclusive");
    ctl_dep_spec_free(&s);
}

static const char scrape_a[] =
    "# TYPE hscale_gateway_backend_requests_total counter\n"
    "hscale_gateway_backend_requests_total{pool=\"app\",backend=\"127.0.0.1:1\",code=\"2xx\"} 100\n"
    "hscale_gateway_backend_requests_total{pool=\"app-next\",backend=\"127.0.0.1:2\",code=\"2xx\"} 10\n"
    "hscale_gateway_backend_requests_total{pool=\"app-next\",backend=\"127.0.0.1:2\",code=\"5xx\"} 1\n"
    "# TYPE hscale_gateway_request_duration_seconds histogram\n"
    "hscale_gateway_request_duration_seconds_bucket{route=\"/\",pool=\"app-next\",le=\"0.01\"} 5\n"
    "hscale_gateway_request_duration_seconds_bucket{route=\"/\",pool=\"app-next\",le=\"0.1\"} 10\n"
    "hscale_gateway_request_duration_seconds_bucket{route=\"/\",pool=\"app-next\",le=\"+Inf\"} 11\n"
    "hscale_gateway_request_duration_seconds_sum{route=\"/\",pool=\"app-next\"} 0.5\n"
    "hscale_gateway_request_duration_seconds_count{route=\"/\",pool=\"app-next\"} 11\n";

static const char scrape_b[] =
    "# TYPE hscale_gateway_backend_requests_total counter\n"
    "hscale_gateway_backend_requests_total{pool=\"app\",backend=\"127.0.0.1:1\",code=\"2xx\"} 300\n"
    "hscale_gateway_backend_requests_total{pool=\"app-next\",backend=\"127.0.0.1:2\",code=\"2xx\"} 100\n"
    "hscale_gateway_backend_requests_total{pool=\"app-next\",backend=\"127.0.0.1:2\",code=\"5xx\"} 11\n"
    "hscale_gateway_backend_requests_total{pool=\"app-next\",backend=\"127.0.0.1:3\",code=\"2xx\"} 50\n"
    "# TYPE hscale_gateway_request_duration_seconds histogram\n"
    "hscale_gateway_request_duration_seconds_bucket{route=\"/\",pool=\"app-next\",le=\"0.01\"} 5\n"
    "hscale_gateway_request_duration_seconds_bucket{route=\"/\",pool=\"app-next\",le=\"0.1\"} 10\n"
    "hscale_gateway_request_duration_seconds_bucket{route=\"/\",pool=\"app-next\",le=\"+Inf\"} 11\n"
    "hscale_gateway_request_duration_seconds_sum{route=\"/\",pool=\"app-next\"} 0.5\n"
    "hscale_gateway_request_duration_seconds_count{route=\"/\",pool=\"app-next\"} 11\n"
    "hscale_gateway_request_duration_seconds_bucket{route=\"/a\",pool=\"app-next\",le=\"0.01\"} 0\n"
    "hscale_gateway_request_duration_seconds_bucket{route=\"/a\",pool=\"app-next\",le=\"0.1\"} 100\n"
    "hscale_gateway_request_duration_seconds_bucket{route=\"/a\",pool=\"app-next\",le=\"+Inf\"} 100\n"
    "hscale_gateway_request_duration_seconds_sum{route=\"/a\",pool=\"app-next\"} 5\n"
    "hscale_gateway_request_duration_seconds_count{route=\"/a\",pool=\"app-next\"} 100\n";

Test(dep_judge, stats_from_scrapes)
{
    static ctl_gwm_scrape a, b;
    char err[256];
    cr_assert_eq(ctl_gwm_parse(&a, scrape_a, sizeof scrape_a - 1, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ctl_gwm_parse(&b, scrape_b, sizeof scrape_b - 1, 2, err, sizeof err), 0, "%s", err);
    ctl_dep_stats s;
    ctl_dep_stats_of(&s, &a, &b, "app-next", NULL, 0);
    /* 90 + 10 more on :2, 50 new on :3. */
    cr_assert_float_eq(s.requests, 150, 1e-9);
    cr_assert_float_eq(s.errors, 10, 1e-9);
    cr_assert_float_eq(s.error_rate, 100.0 * 10 / 150, 1e-9);
    ctl_dep_stats_of(&s, &a, &b, "app", NULL, 0);
    cr_assert_float_eq(s.requests, 200, 1e-9);
    cr_assert_float_eq(s.errors, 0, 1e-9);
    const char *only[] = { "127.0.0.1:3" };
    ctl_dep_stats_of(&s, &a, &b, "app-next", only, 1);
    cr_assert_float_eq(s.requests, 50, 1e-9);
    ctl_dep_stats_of(&s, &a, &b, "nope", NULL, 0);
    cr_assert(isnan(s.error_rate));

    ctl_lat la, lb;
    cr_assert_eq(ctl_dep_pool_lat(scrape_a, sizeof scrape_a - 1, "app-next", &la, err, sizeof err), 0);
    cr_assert_eq(ctl_dep_pool_lat(scrape_b, sizeof scrape_b - 1, "app-next", &lb, err, sizeof err), 0);
    cr_assert_float_eq(lb.count, 111, 1e-9);
    ctl_dep_stats_lat(&s, &la, &lb);
    /* The delta is route /a only: all 100 between 10 and 100 ms. */
    cr_assert(s.p95_ms > 10 && s.p95_ms <= 100, "%f", s.p95_ms);
    ctl_dep_stats_lat(&s, &lb, &lb);
    cr_assert(isnan(s.p95_ms));
}

Test(dep_routes, rewrite_moves_only_the_control_pool)
{
    static const char in[] =
        "{\"routes\":[{\"prefix\":\"/api\",\"pool\":\"app\",\"split\":[]},"
        "{\"prefix\":\"/static\",\"pool\":\"cdn\",\"split\":[]}]}";
    char err[256];
    int touched;
    char *out = ctl_dep_routes_rewrite(in, sizeof in - 1, "app", "app-next", 90, 10, &touched,
                                       err, sizeof err);
    cr_assert_not_null(out, "%s", err);
    cr_assert_eq(touched, 1);
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    json_t *r0 = json_array_get(json_object_get(j, "routes"), 0);
    json_t *r1 = json_array_get(json_object_get(j, "routes"), 1);
    cr_assert_str_eq(json_string_value(json_object_get(r0, "pool")), "app");
    json_t *sp = json_object_get(r0, "split");
    cr_assert_eq(json_array_size(sp), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(sp, 1), "pool")), "app-next");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(sp, 1), "weight")), 10);
    cr_assert_eq(json_array_size(json_object_get(r1, "split")), 0);
    cr_assert_str_eq(json_string_value(json_object_get(r1, "pool")), "cdn");
    char *again = json_dumps(j, JSON_COMPACT);
    json_decref(j);

    /* All on next, then back to the idle shape. */
    out = ctl_dep_routes_rewrite(again, strlen(again), "app", "app-next", 0, 100, &touched,
                                 err, sizeof err);
    free(again);
    cr_assert_not_null(out);
    j = json_loads(out, 0, NULL);
    free(out);
    r0 = json_array_get(json_object_get(j, "routes"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(r0, "pool")), "app-next");
    again = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    out = ctl_dep_routes_rewrite(again, strlen(again), "app", "app-next", 100, 0, &touched,
                                 err, sizeof err);
    free(again);
    cr_assert_eq(touched, 1);
    j = json_loads(out, 0, NULL);
    free(out);
    r0 = json_array_get(json_object_get(j, "routes"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(r0, "pool")), "app");
    cr_assert_eq(json_array_size(json_object_get(r0, "split")), 0);
    json_decref(j);

    cr_assert_null(ctl_dep_routes_rewrite("{}", 2, "app", "n", 1, 1, &touched, err, sizeof err));
    cr_assert(strstr(err, "routes"), "%s", err);
}

/* ---- the deployer with the instance manager and real children ----------- */

static char dir[256];
static ctl_config cfg;
static ctl_mgr *mgr;

static const char server_py[] =
    "import http.server, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Length', '2')\n"
    "        self.end_headers()\n"
    "        self.wfile.write(b'ok')\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n";

static void set(const char *path, const char *value)
{
    cfg_error e;
    memset(&e, 0, sizeof e);
    cr_assert_eq(cfg_set(&ctl_config_schema, &cfg, path, value, &e), 0, "%s: %s", path, e.msg);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/hscale-test-deploy-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char path[400];
    snprintf(path, sizeof path, "%s/srv.py", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(server_py, f);
    fclose(f);
    memset(&cfg, 0, sizeof cfg);
    cfg_error e;
    cr_assert_eq(cfg_defaults(&ctl_config_schema, &cfg, &e), 0, "%s", e.msg);
    set("state_dir", dir);
    set("template.command", "python3 {state_dir}/srv.py {port}");
    set("template.version", "v1");
    set("check_interval", "100ms");
    set("stop_grace", "2s");
    set("drain_timeout", "2s");
    set("template.start_timeout", "10s");
    set("instances", "2");
    char err[512] = "";
    ctl_driver *d = ctl_driver_process_new(dir, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    mgr = ctl_mgr_new(&cfg, d, err, sizeof err);
    cr_assert_not_null(mgr, "%s", err);
    cr_assert_eq(ctl_mgr_start(mgr, err, sizeof err), 0, "%s", err);
}

static void teardown(void)
{
    ctl_mgr_free(mgr);
    cfg_free(&ctl_config_schema, &cfg);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(dep_run, .init = setup, .fini = teardown, .timeout = 60);

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int ready_at(const char *version)
{
    ctl_instance_info list[16];
    size_t n = ctl_instances_list(mgr, list, 16);
    int k = 0;
    for (size_t i = 0; i < n && i < 16; i++)
        k += list[i].managed && list[i].state == CTL_INST_READY && strcmp(list[i].version, version) == 0;
    return k;
}

static void wait_ready(const char *version, int n)
{
    for (int i = 0; i < 200 && ready_at(version) != n; i++)
        sleep_ms(50);
    cr_assert_eq(ready_at(version), n, "%s", version);
}

static json_t *current(ctl_deployer *d)
{
    buf b;
    buf_init(&b);
    ctl_deploy_current_json(d, &b);
    json_t *j = json_loadb(buf_head(&b), b.len, 0, NULL);
    buf_free(&b);
    cr_assert_not_null(j);
    return j;
}

static json_t *run_to_end(ctl_deployer *d, const char *body)
{
    ctl_dep_spec s;
    char f[64], e[512];
    cr_assert_eq(parse(&s, body, f, e), 0, "%s", e);
    int status;
    cr_assert_eq(ctl_deploy_begin(d, &s, &status, e, sizeof e), 0, "%s", e);
    cr_assert_eq(status, 202);
    cr_assert(ctl_deploy_busy(d, &cfg));
    /* One at a time. */
    cr_assert_eq(parse(&s, body, f, e), 0);
    cr_assert_eq(ctl_deploy_begin(d, &s, &status, e, sizeof e), -1);
    cr_assert_eq(status, 409);
    for (int i = 0; i < 600 && ctl_deploy_running(d); i++)
        sleep_ms(50);
    cr_assert_not(ctl_deploy_running(d));
    cr_assert_not(ctl_deploy_busy(d, &cfg));
    return current(d);
}

Test(dep_run, rolling_replaces_every_instance)
{
    wait_ready("v1", 2);
    char err[512];
    ctl_deployer *d = ctl_deploy_new(mgr, &cfg, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    json_t *c = run_to_end(d, "{\"strategy\":\"rolling\",\"version\":\"v2\",\"observe\":0}");
    cr_assert_str_eq(json_string_value(json_object_get(c, "state")), "succeeded");
    cr_assert_str_eq(json_string_value(json_object_get(c, "from_version")), "v1");
    cr_assert_eq(json_integer_value(json_object_get(c, "done")), 2);
    json_decref(c);
    cr_assert_eq(ready_at("v2"), 2);
    cr_assert_eq(ready_at("v1"), 0);
    cr_assert_eq(ctl_instances_desired(mgr), 2);

    buf b;
    buf_init(&b);
    ctl_deploy_history_json(d, 0, &b);
    json_t *h = json_loadb(buf_head(&b), b.len, 0, NULL);
    buf_free(&b);
    json_t *ev = json_object_get(h, "events");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ev, 0), "kind")),
                     "deploy_succeeded");
    int batches = 0;
    for (size_t i = 0; i < json_array_size(ev); i++)
        batches += strcmp(json_string_value(json_object_get(json_array_get(ev, i), "kind")),
                          "deploy_batch") == 0;
    cr_assert_eq(batches, 2);
    json_decref(h);
    /* Commands need a running deploy. */
    cr_assert_eq(ctl_deploy_command(d, CTL_DEP_CMD_ROLLBACK, err, sizeof err), -1);
    cr_assert(strstr(err, "no deploy"), "%s", err);
    ctl_deploy_free(d);
}

Test(dep_run, new_version_never_ready_is_rolled_back)
{
    wait_ready("v1", 2);
    char err[512];
    ctl_deployer *d = ctl_deploy_new(mgr, &cfg, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    json_t *c = run_to_end(d, "{\"strategy\":\"rolling\",\"version\":\"v2\",\"ready_timeout\":\"1s\","
                              "\"command\":\"python3 -c 'import time; time.sleep(30)'\"}");
    cr_assert_str_eq(json_string_value(json_object_get(c, "state")), "failed");
    cr_assert(strstr(json_string_value(json_object_get(c, "reason")), "readiness"), "%s",
              json_string_value(json_object_get(c, "reason")));
    json_decref(c);
    cr_assert_eq(ready_at("v1"), 2);
    cr_assert_eq(ready_at("v2"), 0);
    /* The template is the old one again: a restart starts v1. */
    ctl_deploy_free(d);
}

Test(dep_run, switch_strategies_need_a_gateway)
{
    char err[512], f[64];
    ctl_deployer *d = ctl_deploy_new(mgr, &cfg, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    ctl_dep_spec s;
    cr_assert_eq(parse(&s, "{\"strategy\":\"canary\",\"version\":\"v2\"}", f, err), 0);
    int status;
    cr_assert_eq(ctl_deploy_begin(d, &s, &status, err, sizeof err), -1);
    cr_assert_eq(status, 400);
    cr_assert(strstr(err, "gateway"), "%s", err);
    json_t *c = current(d);
    cr_assert_str_eq(json_string_value(json_object_get(c, "state")), "none");
    json_decref(c);
    ctl_deploy_free(d);
}

Test(dep_run, pause_holds_and_rollback_restores)
{
    wait_ready("v1", 2);
    char err[512], f[64];
    ctl_deployer *d = ctl_deploy_new(mgr, &cfg, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    ctl_dep_spec s;
    cr_assert_eq(parse(&s, "{\"strategy\":\"rolling\",\"version\":\"v2\",\"observe\":0}", f, err), 0);
    int status;
    cr_assert_eq(ctl_deploy_begin(d, &s, &status, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ctl_deploy_command(d, CTL_DEP_CMD_PAUSE, err, sizeof err), 0, "%s", err);
    sleep_ms(1500);
    /* Held at the next batch boundary: at most the batch in flight done. */
    json_t *c = current(d);
    cr_assert(json_is_true(json_object_get(c, "paused")));
    cr_assert(json_is_true(json_object_get(c, "running")));
    cr_assert_leq(json_integer_value(json_object_get(c, "done")), 1);
    json_decref(c);
    cr_assert(ctl_deploy_running(d));
    /* Rollback goes through a pause. */
    cr_assert_eq(ctl_deploy_command(d, CTL_DEP_CMD_ROLLBACK, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 600 && ctl_deploy_running(d); i++)
        sleep_ms(50);
    c = current(d);
    cr_assert_str_eq(json_string_value(json_object_get(c, "state")), "rolled_back");
    json_decref(c);
    wait_ready("v1", 2);
    cr_assert_eq(ready_at("v2"), 0);

    /* The next deploy, resumed after a pause, goes through. */
    cr_assert_eq(parse(&s, "{\"strategy\":\"rolling\",\"version\":\"v3\",\"observe\":0}", f, err), 0);
    cr_assert_eq(ctl_deploy_begin(d, &s, &status, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ctl_deploy_command(d, CTL_DEP_CMD_PAUSE, err, sizeof err), 0);
    sleep_ms(300);
    cr_assert_eq(ctl_deploy_command(d, CTL_DEP_CMD_RESUME, err, sizeof err), 0);
    for (int i = 0; i < 600 && ctl_deploy_running(d); i++)
        sleep_ms(50);
    c = current(d);
    cr_assert_str_eq(json_string_value(json_object_get(c, "state")), "succeeded");
    cr_assert_str_eq(json_string_value(json_object_get(c, "from_version")), "v1");
    json_decref(c);
    cr_assert_eq(ready_at("v3"), 2);
    ctl_deploy_free(d);
}
