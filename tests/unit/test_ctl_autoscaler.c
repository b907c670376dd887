/* test_ctl_autoscaler.c -- the autoscaler glue (ctl_autoscaler.c,
 * ctl_as_api.c) against a fake instance on loopback whose /metrics counts
 * requests at a rate the test sets, driven through the ctl_hooks seam
 * exactly as the control loop drives it.
 *
 * Covers: a scrape turned into a scale-out by target tracking, an instance
 * that cannot be scraped counted as missing (never idle), the event in the
 * history file and reloaded by a new autoscaler, the status fragment,
 * stop/start with the manual count adopted, PUT config all-or-nothing (400
 * naming the field), the metrics series one sample per check, history
 * limits, and the token on every route. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control/ctl_as_int.h"
#include "control/ctl_instances.h"
#include "core/metrics.h"
#include "http/client.h"
#include "http/server.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

/* ---- a fake instance: /metrics with requests at `rate` per second ------- */

static double rate;            /* requests/s the fake reports */
static double t0;
static http_router *inst_router;
static http_server *inst_srv;
static int inst_port;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void h_inst_metrics(http_ctx *c, void *arg)
{
    (void)arg;
    char body[1024];
    int n = snprintf(body, sizeof body,
        "# TYPE hscale_http_requests_total counter\n"
        "hscale_http_requests_total{server=\"app\",route=\"/cases\",method=\"GET\",code=\"200\"} %.0f\n"
        "hscale_http_requests_total{server=\"app\",route=\"/health/ready\",method=\"GET\",code=\"200\"} 999999\n"
        "# TYPE process_cpu_seconds_total counter\n"
        "process_cpu_seconds_total 1\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        "process_resident_memory_bytes 1000000\n",
        rate * (now_s() - t0));
    http_reply(c, 200, "text/plain; version=0.0.4", body, (size_t)n);
}

/* ---- the autoscaler under test, and its API on a real listener ------------ */

static char dir[256];
static ctl_config cc;
static ctl_autoscale_cfg ac;
static ctl_autoscaler *as;
static ctl_hooks hooks;
static http_router *api_router;
static http_server *api_srv;
static int api_port;

static void start_server(http_router *r, http_server **srv, int *port)
{
    char err[256];
    http_server_opts o = { .name = "t", .workers = 1, .router = r };
    cr_assert_eq(sock_addr_parse("127.0.0.1:0", &o.listen, err, sizeof err), 0);
    *srv = http_server_new(&o, err, sizeof err);
    cr_assert(*srv, "%s", err);
    cr_assert_eq(http_server_start(*srv, err, sizeof err), 0, "%s", err);
    *port = http_server_port(*srv);
}

static void aset(const char *path, const char *v)
{
    cfg_error e;
    memset(&e, 0, sizeof e);
    cr_assert_eq(cfg_set(&ctl_autoscale_schema, &ac, path, v, &e), 0, "%s: %s", path, e.msg);
}

static void open_autoscaler(void)
{
    char err[256];
    as = ctl_autoscaler_new(&cc, &ac, err, sizeof err);
    cr_assert(as, "%s", err);
    ctl_autoscaler_hooks(as, &hooks);
    api_router = http_router_new();
    cr_assert_eq(hooks.routes(hooks.arg, api_router), 0);
    start_server(api_router, &api_srv, &api_port);
}

static void close_autoscaler(void)
{
    http_server_stop(api_srv, 1000);
    http_server_free(api_srv);
    http_router_free(api_router);
    ctl_autoscaler_free(as);
    as = NULL;
}

static void setup(void)
{
    cfg_error e;
    snprintf(dir, sizeof dir, "/tmp/hscale-test-as-%d/state", (int)getpid());
    memset(&cc, 0, sizeof cc);
    cr_assert_eq(cfg_defaults(&ctl_config_schema, &cc, &e), 0);
    free(cc.state_dir);
    cc.state_dir = strdup(dir);
    cc.instances = 1;
    memset(&ac, 0, sizeof ac);
    cr_assert_eq(cfg_defaults(&ctl_autoscale_schema, &ac, &e), 0);
    aset("min_instances", "1");
    aset("max_instances", "5");
    aset("warmup", "0s");
    aset("check_interval", "100ms");
    aset("target.cpu", "0");
    aset("target.memory", "0");
    aset("target.rps", "10");
    inst_router = http_router_new();
    cr_assert_eq(http_route(inst_router, "GET", "/metrics", h_inst_metrics, NULL), 0);
    start_server(inst_router, &inst_srv, &inst_port);
    t0 = now_s();
    rate = 40;
    open_autoscaler();
}

static void teardown(void)
{
    if (as)
        close_autoscaler();
    http_server_stop(inst_srv, 1000);
    http_server_free(inst_srv);
    http_router_free(inst_router);
    cfg_free(&ctl_config_schema, &cc);
    cfg_free(&ctl_autoscale_schema, &ac);
    char cmd[320];
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/hscale-test-as-%d", (int)getpid());
    cr_assert_eq(system(cmd), 0);
}

TestSuite(ctl_autoscaler, .init = setup, .fini = teardown, .timeout = 30);

static ctl_instance_info ready_inst(const char *id, int port)
{
    ctl_instance_info i;
    memset(&i, 0, sizeof i);
    snprintf(i.id, sizeof i.id, "%s", id);
    snprintf(i.address, sizeof i.address, "127.0.0.1:%d", port);
    snprintf(i.version, sizeof i.version, "v1");
    i.state = CTL_INST_READY;
    i.managed = i.healthy = true;
    i.ready_at_us = ctl_as_now_us() - 60000000u;
    return i;
}

static int decide(const ctl_instance_info *in, size_t n, int desired)
{
    return hooks.decide(hooks.arg, in, n, desired, ctl_as_now_us());
}

static json_t *api(const char *method, const char *path, const char *body, int *status,
                   const char *auth)
{
    char url[256], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", api_port, path);
    http_result r;
    http_result_init(&r);
    cr_assert_eq(http_fetch(method, url, auth, body, body ? strlen(body) : 0, 3000, &r, err,
                            sizeof err), 0, "%s", err);
    *status = r.status;
    json_t *j = json_loadb(buf_head(&r.body), r.body.len, 0, NULL);
    cr_assert(j, "%s %s: not JSON: %.*s", method, path, (int)r.body.len, buf_head(&r.body));
    http_result_free(&r);
    return j;
}

/* The status fragment (",\"autoscaling\":{...}") as an object. */
static json_t *status_obj(void)
{
    buf b;
    buf_init(&b);
    buf_append_str(&b, "{\"x\":0");
    hooks.status_json(hooks.arg, &b);
    buf_append_str(&b, "}");
    json_t *j = json_loadb(buf_head(&b), b.len, 0, NULL);
    cr_assert(j, "%.*s", (int)b.len, buf_head(&b));
    buf_free(&b);
    json_t *a = json_incref(json_object_get(j, "autoscaling"));
    json_decref(j);
    return a;
}

Test(ctl_autoscaler, scrape_drives_a_scale_out_recorded_in_history)
{
    ctl_instance_info in = ready_inst("i-1", inst_port);
    /* 35 req/s, not 40, over 1 s: the rate is measured between two
     * scrapes whose delays after `now` differ (tens of ms on a loaded
     * machine), and 40.4 against 10 would round up to 5 */
    rate = 35;
    /* first check: no previous scrape, so no rate yet: nothing moves */
    cr_assert_eq(decide(&in, 1, 1), 1);
    usleep(1000000);
    /* 35 req/s on one instance against 10 each: 4 (the /health route is
     * not load) */
    cr_assert_eq(decide(&in, 1, 1), 4);
    int st;
    json_t *h = api("GET", "/api/v1/scaling/history", NULL, &st, NULL);
    cr_assert_eq(st, 200);
    json_t *ev = json_array_get(json_object_get(h, "events"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "kind")), "scale_out");
    cr_assert_eq(json_integer_value(json_object_get(ev, "old")), 1);
    cr_assert_eq(json_integer_value(json_object_get(ev, "new")), 4);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "policy")), "target:rps");
    double rps = json_number_value(json_object_get(json_object_get(ev, "metrics"), "rps"));
    cr_assert(rps > 30 && rps < 50, "rps %g", rps);
    json_int_t t = json_integer_value(json_object_get(ev, "time"));
    cr_assert(llabs((long long)(t - (json_int_t)time(NULL))) < 5, "time %lld", (long long)t);
    json_decref(h);

    json_t *a = status_obj();
    cr_assert(json_is_true(json_object_get(a, "enabled")));
    cr_assert_eq(json_integer_value(json_object_get(a, "desired")), 4);
    double cool = json_number_value(json_object_get(json_object_get(a, "cooldown_remaining_s"),
                                                    "scale_out"));
    cr_assert(cool > 50 && cool <= 60, "scale-out cooldown left %g", cool);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(a, "last_decision"), "kind")),
                     "scale_out");
    json_decref(a);

    /* the file outlives the autoscaler: a new one answers the same history */
    close_autoscaler();
    open_autoscaler();
    h = api("GET", "/api/v1/scaling/history?limit=1", NULL, &st, NULL);
    cr_assert_eq(json_array_size(json_object_get(h, "events")), 1);
    ev = json_array_get(json_object_get(h, "events"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "kind")), "scale_out");
    json_decref(h);
}

Test(ctl_autoscaler, unscrapable_instance_is_missing_not_idle)
{
    /* one live at 8 req/s (below target: would shrink) and one dead */
    rate = 8;
    ctl_instance_info in[2] = { ready_inst("i-1", inst_port), ready_inst("i-2", 1) };
    cr_assert_eq(decide(in, 2, 2), 2);
    usleep(300000);
    cr_assert_eq(decide(in, 2, 2), 2, "a dead instance must not read as idle capacity");
    int st;
    json_t *m = api("GET", "/api/v1/scaling/metrics", NULL, &st, NULL);
    cr_assert_eq(st, 200);
    cr_assert_eq(json_array_size(json_object_get(m, "series")), 2, "one sample per check");
    json_t *insts = json_object_get(m, "instances");
    cr_assert_eq(json_array_size(insts), 2);
    json_t *live = json_array_get(insts, 0), *dead = json_array_get(insts, 1);
    cr_assert_str_eq(json_string_value(json_object_get(live, "id")), "i-1");
    double r = json_number_value(json_object_get(live, "rps"));
    cr_assert(r > 5 && r < 11, "rps %g", r);
    cr_assert(json_is_null(json_object_get(dead, "rps")));
    cr_assert(json_is_number(json_object_get(m, "interval_s")));
    json_decref(m);
}

/* The gauges of the control plane's /metrics for instance id, or NAN
 * when there is no series; *found says which. */
static double gauge(const char *family, const char *id, bool *found)
{
    buf b;
    buf_init(&b);
    metrics_render(metrics_default(), &b, false);
    char pat[256];
    snprintf(pat, sizeof pat, "%s{pool=\"%s\",instance=\"%s\"} ", family, cc.pool, id);
    const char *p = strstr(buf_head(&b), pat);
    *found = p != NULL;
    double v = p ? strtod(p + strlen(pat), NULL) : NAN;
    buf_free(&b);
    return v;
}

Test(ctl_autoscaler, os_sample_wins_for_a_pid_and_gauges_follow_the_view)
{
    /* i-1 is this very process (a pid: measured by the OS); i-2 has no
     * pid and is measured from its /metrics, whose CPU counter stands
     * still (0 %) */
    ctl_instance_info in[2] = { ready_inst("i-1", inst_port), ready_inst("i-2", inst_port) };
    in[0].pid = getpid();
    rate = 10;                       /* at the rps target: the count stays */
    decide(in, 2, 2);
    /* burn 300 ms of CPU in i-1's tree */
    for (clock_t c0 = clock(); clock() - c0 < CLOCKS_PER_SEC * 3 / 10;)
        ;
    decide(in, 2, 2);
    int st;
    json_t *m = api("GET", "/api/v1/scaling/metrics", NULL, &st, NULL);
    json_t *a = json_array_get(json_object_get(m, "instances"), 0);
    json_t *b = json_array_get(json_object_get(m, "instances"), 1);
    cr_assert_str_eq(json_string_value(json_object_get(a, "cpu_source")), "os");
    cr_assert_str_eq(json_string_value(json_object_get(a, "memory_source")), "os");
    cr_assert_str_eq(json_string_value(json_object_get(b, "cpu_source")), "metrics");
    cr_assert_str_eq(json_string_value(json_object_get(b, "memory_source")), "metrics");
    double cpu = json_number_value(json_object_get(a, "cpu_percent"));
    cr_assert(cpu > 5, "the burn (300 ms of CPU) shows: %g", cpu);
    cr_assert_float_eq(json_number_value(json_object_get(b, "cpu_percent")), 0, 1e-9);
    /* the gauges carry the API's numbers (which the API prints with six
     * significant digits: up to 5e-6 apart relatively) */
    bool found;
    cr_assert_float_eq(gauge("hscale_control_instance_cpu_percent", "i-1", &found), cpu,
                       1e-5 * cpu);
    cr_assert(found);
    double mem = json_number_value(json_object_get(b, "memory_percent"));
    cr_assert_float_eq(gauge("hscale_control_instance_memory_percent", "i-2", &found), mem,
                       1e-5 * mem);
    json_decref(m);
    /* i-2 leaves: its series go */
    decide(in, 1, 1);
    gauge("hscale_control_instance_cpu_percent", "i-2", &found);
    cr_assert(!found);
    gauge("hscale_control_instance_memory_percent", "i-2", &found);
    cr_assert(!found);
    gauge("hscale_control_instance_cpu_percent", "i-1", &found);
    cr_assert(found);
}

Test(ctl_autoscaler, stop_start_and_manual_counts)
{
    ctl_instance_info in = ready_inst("i-1", inst_port);
    char err[256];
    /* enabled: bounds apply */
    cr_assert_eq(hooks.set_desired(hooks.arg, 9, err, sizeof err), -1);
    cr_assert(strstr(err, "max_instances 5"), "%s", err);
    int st;
    json_t *j = api("POST", "/api/v1/scaling/stop", "", &st, NULL);
    cr_assert_eq(st, 200);
    cr_assert(json_is_false(json_object_get(j, "enabled")));
    json_decref(j);
    /* stopped: the count is the operator's and decide moves nothing */
    cr_assert_eq(hooks.set_desired(hooks.arg, 9, err, sizeof err), 0, "%s", err);
    decide(&in, 1, 9);
    usleep(200000);
    cr_assert_eq(decide(&in, 1, 9), -1);
    json_t *a = status_obj();
    cr_assert(json_is_false(json_object_get(a, "enabled")));
    cr_assert_eq(json_integer_value(json_object_get(a, "desired")), 9);
    json_decref(a);
    /* started again: the scaler adopts 9, then bounds bring it inside */
    json_decref(api("POST", "/api/v1/scaling/start", "", &st, NULL));
    int n = decide(&in, 1, 9);
    cr_assert(n >= 1 && n <= 5, "%d", n);
    j = api("GET", "/api/v1/scaling/history?limit=8", NULL, &st, NULL);
    json_t *ev = json_object_get(j, "events"), *e;
    /* newest first: the scaler's events, and one audit event per API change */
    json_t *scaler[2] = { NULL, NULL };
    int nscaler = 0, audits = 0;
    size_t i;
    json_array_foreach(ev, i, e) {
        const char *kind = json_string_value(json_object_get(e, "kind"));
        if (kind && strcmp(kind, "audit") == 0)
            audits++;
        else if (nscaler < 2)
            scaler[nscaler++] = e;
    }
    cr_assert_eq(audits, 2, "stop and start through the API");
    cr_assert_eq(nscaler, 2);
    cr_assert_str_eq(json_string_value(json_object_get(scaler[0], "policy")), "bounds");
    cr_assert_str_eq(json_string_value(json_object_get(scaler[1], "kind")), "manual");
    json_decref(j);
}

Test(ctl_autoscaler, put_config_is_all_or_nothing)
{
    int st;
    json_t *before = api("GET", "/api/v1/scaling/config", NULL, &st, NULL);
    cr_assert_eq(st, 200);
    static const struct { const char *body, *field; } bad[] = {
        { "{\"min_instances\":7}", "max_instances" },
        { "{\"scale_in_cooldown\":\"soon\"}", "scale_in_cooldown" },
        { "{\"target\":{\"rps\":-3}}", "target.rps" },
        { "{\"cpu_scale_up\":50,\"cpu_scale_down\":60}", "cpu_scale_down" },
        { "{\"warmup\":\"1s\",\"bogus\":true}", "bogus" },
        { "not json", "body" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *e = api("PUT", "/api/v1/scaling/config", bad[i].body, &st, NULL);
        cr_assert_eq(st, 400, "%s", bad[i].body);
        cr_assert_str_eq(json_string_value(json_object_get(e, "field")), bad[i].field,
                         "%s -> %s", bad[i].body, json_string_value(json_object_get(e, "error")));
        json_decref(e);
    }
    json_t *after = api("GET", "/api/v1/scaling/config", NULL, &st, NULL);
    cr_assert(json_equal(before, after), "a refused PUT changed nothing");
    json_t *ok = api("PUT", "/api/v1/scaling/config", "{\"max_instances\":8,\"check_interval\":\"1s\"}",
                     &st, NULL);
    cr_assert_eq(st, 200);
    cr_assert_eq(json_integer_value(json_object_get(ok, "max_instances")), 8);
    cr_assert_str_eq(json_string_value(json_object_get(ok, "warmup")), "0s", "other keys kept");
    cr_assert_eq(hooks.interval_us(hooks.arg), 1000000u);
    json_decref(ok);
    json_decref(before);
    json_decref(after);
    json_t *e = api("GET", "/api/v1/scaling/history?limit=0", NULL, &st, NULL);
    cr_assert_eq(st, 400);
    cr_assert_str_eq(json_string_value(json_object_get(e, "field")), "limit");
    json_decref(e);
}

Test(ctl_autoscaler, token_guards_every_route)
{
    close_autoscaler();
    cc.token = strdup("t0k");
    open_autoscaler();
    static const char *const get[] = { "/api/v1/scaling/metrics", "/api/v1/scaling/history",
                                       "/api/v1/scaling/config", "/api/v1/scaling/recommendations" };
    int st;
    for (size_t i = 0; i < sizeof get / sizeof get[0]; i++) {
        json_decref(api("GET", get[i], NULL, &st, NULL));
        cr_assert_eq(st, 401, "%s", get[i]);
        json_decref(api("GET", get[i], NULL, &st, "Authorization: Bearer t0k\r\n"));
        cr_assert_eq(st, 200, "%s", get[i]);
    }
    json_decref(api("POST", "/api/v1/scaling/stop", "", &st, NULL));
    cr_assert_eq(st, 401);
    json_decref(api("PUT", "/api/v1/scaling/config", "{}", &st, "Authorization: Bearer nope\r\n"));
    cr_assert_eq(st, 401);
}
