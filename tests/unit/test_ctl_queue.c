/* test_ctl_queue.c -- the queue-depth policy on recorded inputs: depth to
 * instance count, activation from zero past cooldowns and windows (one at
 * once, the rest at the next check), the idle_to_zero wait and what
 * breaks it, an unknown depth holding the count (never zero on an
 * error), the floor of 1 without a queue policy, the event JSON; the
 * parsers of outside input (Redis URL, Prometheus answers, a number in
 * any JSON document); the schema's checks of the queue and of worker
 * templates (port: none). */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control.h"
#include "control/ctl_autoscale.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

#define S 1000000ull

/* ---- depth -> count ------------------------------------------------------ */

static ctl_queue_reading reading(double waiting, double unacked)
{
    ctl_queue_reading q;
    memset(&q, 0, sizeof q);
    q.on = true;
    q.waiting = waiting;
    q.reserved = unacked;
    q.depth = isnan(unacked) ? waiting : waiting + unacked;
    if (isnan(waiting))
        snprintf(q.error, sizeof q.error, "redis 127.0.0.1:1: Connection refused");
    return q;
}

static ctl_queue_state state(double per, uint64_t idle_to_zero)
{
    ctl_queue_cfg c;
    memset(&c, 0, sizeof c);
    c.redis = "redis://127.0.0.1/0";
    c.per_instance = per;
    c.idle_to_zero = idle_to_zero;
    ctl_queue_state st;
    ctl_queue_state_init(&st, &c);
    cr_assert(st.on);
    return st;
}

Test(queue, depth_to_count_is_the_ceiling_of_depth_per_instance)
{
    ctl_queue_state st = state(4, 300 * S);
    const struct { double waiting, unacked; int want; } cases[] = {
        { 1, 0, 1 }, { 4, 0, 1 }, { 5, 0, 2 }, { 3, 2, 2 }, { 0, 8, 2 }, { 500, 0, 125 },
        { 0.5, NAN, 1 }, { 1e300, 0, 1000000 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ctl_queue_reading q = reading(cases[i].waiting, cases[i].unacked);
        ctl_rec r;
        ctl_queue_rec(&st, &q, 3, 1000 * S, &r);
        cr_assert_eq(r.replicas, cases[i].want, "depth %g+%g: %d, expected %d", cases[i].waiting,
                     cases[i].unacked, r.replicas, cases[i].want);
        cr_assert_str_eq(r.policy, "queue");
        cr_assert_eq(r.target, 4);
        cr_assert(!st.zero);
    }
    /* the reserved (unacked) part is in the note: a busy fleet's input */
    ctl_queue_reading q = reading(2, 6);
    ctl_rec r;
    ctl_queue_rec(&st, &q, 3, 1000 * S, &r);
    cr_assert(strstr(r.note, "8 (2 waiting + 6 unacked)"), "%s", r.note);
}

Test(queue, unknown_depth_holds_the_count_and_breaks_the_idle_streak)
{
    ctl_queue_state st = state(4, 300 * S);
    ctl_queue_reading empty = reading(0, 0), down = reading(NAN, NAN);
    ctl_rec r;
    ctl_queue_rec(&st, &empty, 3, 1000 * S, &r);
    cr_assert_eq(r.replicas, 1, "empty, not for long: keep one");
    ctl_queue_rec(&st, &down, 3, 1200 * S, &r);
    cr_assert_eq(r.replicas, 3, "unknown: hold the count");
    cr_assert(isnan(r.value));
    cr_assert(strstr(r.note, "Connection refused"), "%s", r.note);
    ctl_queue_rec(&st, &empty, 3, 1250 * S, &r);
    cr_assert_eq(r.replicas, 1);
    ctl_queue_rec(&st, &empty, 3, 1549 * S, &r);
    cr_assert_eq(r.replicas, 1, "the streak began again at 1250 s, after the error");
    cr_assert(!st.zero);
    ctl_queue_rec(&st, &empty, 3, 1550 * S, &r);
    cr_assert_eq(r.replicas, 0);
    cr_assert(st.zero);
    /* at zero, unknown holds zero: no start on an error either */
    ctl_queue_rec(&st, &down, 0, 1600 * S, &r);
    cr_assert_eq(r.replicas, 0);
    ctl_queue_rec(&st, NULL, 2, 1600 * S, &r);
    cr_assert_eq(r.replicas, 2, "not polled reads as unknown");
}

/* ---- the scaler with a queue --------------------------------------------- */

typedef struct qsim {
    ctl_scaler       *s;
    ctl_autoscale_cfg cfg;
    uint64_t          now;
    int               n;
    ctl_decision      d;
    int               changes;
} qsim;

static void qsim_init(qsim *x, int initial)
{
    cfg_error e;
    memset(&x->cfg, 0, sizeof x->cfg);
    cr_assert_eq(cfg_defaults(&ctl_autoscale_schema, &x->cfg, &e), 0);
    x->cfg.min_instances = 0;
    x->cfg.max_instances = 8;
    x->cfg.target.cpu = x->cfg.target.memory = 0;   /* the queue alone */
    x->cfg.queue.redis = "redis://127.0.0.1:6379/0";
    x->cfg.queue.per_instance = 4;
    /* defaults otherwise: 60 s out / 300 s in cooldowns, 300 s scale-in
     * window, idle_to_zero 300 s, 1 s polls */
    char err[128];
    x->s = ctl_scaler_new(&x->cfg, initial, err, sizeof err);
    cr_assert(x->s, "%s", err);
    x->n = initial;
    x->now = 10000 * S;
}

/* x->cfg changed: the scaler takes it (keeping its count and timers). */
static void qsim_apply(qsim *x)
{
    char err[128];
    cr_assert_eq(ctl_scaler_set_config(x->s, &x->cfg, err, sizeof err), 0, "%s", err);
}

/* One poll of the recorded depth (NAN: the broker did not answer). */
static void qstep(qsim *x, double depth)
{
    ctl_queue_reading q = reading(depth, isnan(depth) ? NAN : 0);
    ctl_observation obs = { NULL, 0, &q };
    ctl_scaler_step(x->s, &obs, x->now, &x->d);
    if (x->d.changed)
        x->changes++;
    x->n = x->d.desired;
    x->now += x->cfg.queue.poll_interval;
}

static void qrun(qsim *x, double depth, uint64_t secs)
{
    uint64_t end = x->now + secs * S;
    while (x->now < end)
        qstep(x, depth);
}

Test(queue, first_task_at_zero_starts_one_at_the_next_poll_then_the_rest)
{
    qsim x;
    qsim_init(&x, 0);
    qrun(&x, 0, 600);
    cr_assert_eq(x.n, 0);
    cr_assert_eq(x.changes, 0, "an empty queue at zero does nothing");
    qstep(&x, 1);
    cr_assert_eq(x.n, 1, "the first poll that sees a task activates");
    cr_assert_eq(x.d.event.kind, CTL_EV_SCALE_OUT);
    cr_assert(x.d.record);
    cr_assert(strstr(x.d.event.reason, "from zero"), "%s", x.d.event.reason);
    cr_assert_str_eq(x.d.event.policy, "queue");

    /* 500 tasks: activation starts no cooldown, so the next poll sizes the
     * fleet (within the growth cap, then the 60 s cooldown holds) */
    qsim y;
    qsim_init(&y, 0);
    qstep(&y, 500);
    cr_assert_eq(y.n, 1);
    qstep(&y, 500);
    cr_assert_eq(y.n, 5, "1 -> max(2x, +4)");
    qrun(&y, 500, 58);
    cr_assert_eq(y.n, 5, "then the scale-out cooldown");
    qrun(&y, 500, 3);
    cr_assert_eq(y.n, 8, "max_instances");
    ctl_scaler_free(x.s);
    ctl_scaler_free(y.s);
}

Test(queue, activation_ignores_cooldown_and_scale_out_window)
{
    qsim x;
    qsim_init(&x, 0);
    x.cfg.scale_out_stabilization = 120 * S;
    x.cfg.queue.idle_to_zero = 0;
    qsim_apply(&x);
    qstep(&x, 1);
    qstep(&x, 30);
    cr_assert_eq(x.n, 1, "1 -> more waits for the 120 s scale-out window");
    qrun(&x, 0, 2);
    cr_assert_eq(x.n, 0, "idle_to_zero 0: straight back to zero");
    /* a scale-out cooldown would hold anything but activation */
    qstep(&x, 3);
    cr_assert_eq(x.n, 1, "activation at once again");
    ctl_scaler_free(x.s);
}

Test(queue, back_to_zero_only_after_idle_to_zero_of_continuous_emptiness)
{
    qsim x;
    qsim_init(&x, 0);
    qrun(&x, 40, 120);
    cr_assert_eq(x.n, 8);
    uint64_t empty_at = x.now;
    qrun(&x, 0, 200);
    cr_assert_eq(x.n, 8, "scale-in window: still 8");
    qstep(&x, NAN);                            /* the broker blinks */
    uint64_t back_at = x.now;
    qrun(&x, 0, 299);
    /* 8: the unknown reading recommended the count, and the scale-in
     * window remembers it; zero waits for a full idle_to_zero after it */
    cr_assert_eq(x.n, 8, "an error restarted the idle wait");
    qrun(&x, 0, 2);
    cr_assert_eq(x.n, 0);
    cr_assert_eq(x.d.event.kind, CTL_EV_SCALE_IN);
    cr_assert(strstr(x.d.event.reason, "to zero"), "%s", x.d.event.reason);
    cr_assert_geq(x.now - back_at, 300 * S);
    cr_assert_gt(x.now - empty_at, 300 * S);
    ctl_scaler_free(x.s);
}

Test(queue, to_zero_passes_the_scale_in_window_cooldown_and_step_cap)
{
    qsim x;
    qsim_init(&x, 0);
    x.cfg.max_shrink_step = 1;
    x.cfg.scale_in_stabilization = 3600 * S;
    x.cfg.queue.idle_to_zero = 30 * S;
    qsim_apply(&x);
    qrun(&x, 40, 70);
    cr_assert_eq(x.n, 8);
    qrun(&x, 0, 29);
    cr_assert_eq(x.n, 8);
    qrun(&x, 0, 2);
    cr_assert_eq(x.n, 0, "idle_to_zero is the wait for the last step");
    ctl_scaler_free(x.s);
}

Test(queue, an_unreachable_broker_never_scales_to_zero)
{
    qsim x;
    qsim_init(&x, 0);
    qrun(&x, 12, 5);
    cr_assert_eq(x.n, 3);
    qrun(&x, NAN, 3600);
    cr_assert_eq(x.n, 3, "held for an hour of errors");
    cr_assert_str_eq(x.d.event.recs[x.d.event.nrecs - 1].policy, "queue");
    cr_assert(strstr(x.d.event.recs[x.d.event.nrecs - 1].note, "unknown"), "%s",
              x.d.event.recs[x.d.event.nrecs - 1].note);
    ctl_scaler_free(x.s);
}

Test(queue, min_above_zero_is_kept)
{
    qsim x;
    qsim_init(&x, 2);
    x.cfg.min_instances = 2;
    x.cfg.queue.idle_to_zero = 0;
    qsim_apply(&x);
    qrun(&x, 0, 3600);
    cr_assert_eq(x.n, 2);
    ctl_scaler_free(x.s);
}

Test(queue, without_a_queue_policy_the_autoscaler_stops_at_one)
{
    cfg_error e;
    ctl_autoscale_cfg c;
    memset(&c, 0, sizeof c);
    cr_assert_eq(cfg_defaults(&ctl_autoscale_schema, &c, &e), 0);
    c.min_instances = 0;
    c.target.memory = 0;
    c.scale_in_cooldown = c.scale_in_stabilization = 0;
    char err[128];
    ctl_scaler *s = ctl_scaler_new(&c, 3, err, sizeof err);
    cr_assert(s, "%s", err);
    ctl_inst_metrics m[3];
    memset(m, 0, sizeof m);
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < CTL_M__COUNT; k++)
            m[i].v[k] = NAN;
        m[i].v[CTL_M_CPU] = 0;              /* idle: the formula says 0 */
        m[i].ready_at_us = 1;
        snprintf(m[i].id, sizeof m[i].id, "i%d", i);
    }
    ctl_observation obs = { m, 3, NULL };
    ctl_decision d;
    ctl_scaler_step(s, &obs, 1000 * S, &d);
    cr_assert_eq(d.desired, 1);
    cr_assert(strstr(d.event.reason, "never to zero"), "%s", d.event.reason);
    ctl_scaler_free(s);
}

Test(queue, event_json_carries_the_queue_reading)
{
    qsim x;
    qsim_init(&x, 0);
    ctl_queue_reading q = reading(6, 2);
    ctl_observation obs = { NULL, 0, &q };
    ctl_scaler_step(x.s, &obs, x.now, &x.d);
    buf b;
    buf_init(&b);
    ctl_event_to_json(&x.d.event, &b);
    json_error_t je;
    json_t *o = json_loadb(buf_head(&b), b.len, 0, &je);
    cr_assert(o, "%s: %.*s", je.text, (int)b.len, buf_head(&b));
    json_t *jq = json_object_get(o, "queue");
    cr_assert(jq);
    cr_assert_eq(json_number_value(json_object_get(jq, "depth")), 8);
    cr_assert_eq(json_number_value(json_object_get(jq, "waiting")), 6);
    cr_assert_eq(json_number_value(json_object_get(jq, "unacked")), 2);
    cr_assert(json_is_null(json_object_get(jq, "error")));
    json_t *recs = json_object_get(o, "recommendations");
    json_t *last = json_array_get(recs, json_array_size(recs) - 1);
    cr_assert_str_eq(json_string_value(json_object_get(last, "policy")), "queue");
    cr_assert_eq(json_integer_value(json_object_get(last, "replicas")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(o, "kind")), "scale_out");
    json_decref(o);
    buf_free(&b);
    ctl_scaler_free(x.s);
}

/* ---- parsers ------------------------------------------------------------- */

static int prom(const char *body, double *v, char *err)
{
    *v = -1;
    return ctl_prom_value_parse(body, strlen(body), v, err, 200);
}

Test(queue_parse, prometheus_answers)
{
    char err[200] = "";
    double v;
    cr_assert_eq(prom("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":"
                      "[{\"metric\":{\"queue\":\"celery\"},\"value\":[1700000000.1,\"42\"]}]}}",
                      &v, err), 0, "%s", err);
    cr_assert_eq(v, 42);
    cr_assert_eq(prom("{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":"
                      "[1700000000,\"7.5\"]}}", &v, err), 0, "%s", err);
    cr_assert_eq(v, 7.5);
    cr_assert_eq(prom("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[]}}",
                      &v, err), 0, "%s", err);
    cr_assert_eq(v, 0, "no series: nothing waits");
    const struct { const char *body, *says; } bad[] = {
        { "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"value\":[1,\"1\"]},"
          "{\"value\":[1,\"2\"]}]}}", "2 series" },
        { "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"parse error at char 3\"}",
          "parse error at char 3" },
        { "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"value\":[1,\"NaN\"]}]}}",
          "0 or more" },
        { "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"value\":[1,\"-3\"]}]}}",
          "0 or more" },
        { "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"value\":[1,\"x\"]}]}}",
          "expected a number" },
        { "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[]}}", "instant" },
        { "<html>", "not JSON" },
        { "{\"status\":\"success\"}", "data.resultType" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_eq(prom(bad[i].body, &v, err), -1, "%s", bad[i].body);
        cr_assert(strstr(err, bad[i].says), "'%s' for %s", err, bad[i].body);
    }
}

Test(queue_parse, number_in_a_json_document)
{
    const char *doc = "{\"queues\":[{\"name\":\"a\",\"depth\":3},{\"name\":\"b\",\"depth\":\"12\"}],"
                      "\"a/b\":{\"~x\":5},\"n\":null,\"neg\":-1,\"flag\":true}";
    const struct { const char *path; double want; } ok[] = {
        { "/queues/0/depth", 3 }, { "queues.1.depth", 12 }, { "/a~1b/~0x", 5 }, { "queues.0.depth", 3 },
    };
    char err[200];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        double v = -1;
        err[0] = '\0';
        cr_assert_eq(ctl_json_number_at(doc, strlen(doc), ok[i].path, &v, err, sizeof err), 0,
                     "%s: %s", ok[i].path, err);
        cr_assert_eq(v, ok[i].want, "%s", ok[i].path);
    }
    double v;
    cr_assert_eq(ctl_json_number_at("17", 2, "", &v, err, sizeof err), 0, "%s", err);
    cr_assert_eq(v, 17, "the whole document");
    const struct { const char *path, *says; } bad[] = {
        { "/queues/2/depth", "nothing at '2'" }, { "queues.0.size", "nothing at 'size'" },
        { "n", "got null" }, { "neg", "0 or more" }, { "flag", "a boolean" },
        { "queues", "an array" }, { "queues.0.name", "the string 'a'" }, { "queues.", "ends with" },
        { "/a~2b", "bad segment" }, { "queues.01.depth", "nothing at '01'" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_eq(ctl_json_number_at(doc, strlen(doc), bad[i].path, &v, err, sizeof err), -1,
                     "%s", bad[i].path);
        cr_assert(strstr(err, bad[i].says), "'%s' for %s", err, bad[i].path);
    }
    cr_assert_eq(ctl_json_number_at("{", 1, "a", &v, err, sizeof err), -1);
    cr_assert(strstr(err, "not JSON"), "%s", err);
}

Test(queue_parse, redis_urls)
{
    ctl_redis_url u;
    char err[200] = "";
    cr_assert_eq(ctl_redis_url_parse("redis://127.0.0.1", &u, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(u.host, "127.0.0.1");
    cr_assert_eq(u.port, 6379);
    cr_assert_eq(u.db, 0);
    cr_assert_str_eq(u.password, "");
    cr_assert_eq(ctl_redis_url_parse("redis://:s%40cret@broker:6380/3", &u, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(u.host, "broker");
    cr_assert_eq(u.port, 6380);
    cr_assert_eq(u.db, 3);
    cr_assert_str_eq(u.user, "");
    cr_assert_str_eq(u.password, "s@cret");
    cr_assert_eq(ctl_redis_url_parse("redis://app:pw@[::1]:7000/", &u, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(u.host, "::1");
    cr_assert_eq(u.port, 7000);
    cr_assert_str_eq(u.user, "app");
    const struct { const char *url, *says; } bad[] = {
        { "http://x", "expected redis://" }, { "rediss://x", "expected redis://" },
        { "redis://", "expected a host" }, { "redis://h:0", "1..65535" }, { "redis://h:x", "1..65535" },
        { "redis://h/x", "database number" }, { "redis://pw@h", "need a ':'" },
        { "redis://:%zz@h", "bad user or password" }, { "redis://h?db=1", "after the host" },
        { "redis://[::1", "unterminated" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_eq(ctl_redis_url_parse(bad[i].url, &u, err, sizeof err), -1, "%s", bad[i].url);
        cr_assert(strstr(err, bad[i].says), "'%s' for %s", err, bad[i].url);
    }
}

Test(queue_parse, prometheus_query_url_is_encoded)
{
    buf b;
    buf_init(&b);
    ctl_prom_query_url("http://127.0.0.1:9090/", "sum(celery_queue_length{queue=\"a b\"})", &b);
    buf_append(&b, "", 1);
    cr_assert_str_eq(buf_head(&b), "http://127.0.0.1:9090/api/v1/query?query="
                     "sum%28celery_queue_length%7Bqueue%3D%22a%20b%22%7D%29");
    buf_free(&b);
}

/* ---- configuration ------------------------------------------------------- */

/* Loads yaml over obj's defaults and validates; obj is freed again. */
static int load(const cfg_schema *sc, void *obj, const char *yaml, cfg_error *e)
{
    memset(e, 0, sizeof *e);
    int rc = cfg_defaults(sc, obj, e);
    if (rc == 0)
        rc = cfg_load_text(sc, obj, yaml, strlen(yaml), "t.yaml", e);
    if (rc == 0)
        rc = cfg_validate(sc, obj, e);
    cfg_free(sc, obj);
    return rc;
}

typedef struct bad_case {
    const char *yaml, *key, *says;
} bad_case;

/* Every case is refused, naming the key, with the expected words. */
static void expect_refusals(const cfg_schema *sc, void *obj, size_t objsize, const bad_case *bad,
                            size_t n)
{
    cfg_error e;
    for (size_t i = 0; i < n; i++) {
        memset(obj, 0, objsize);
        cr_assert_eq(load(sc, obj, bad[i].yaml, &e), -1, "%s", bad[i].yaml);
        cr_assert(strstr(e.key, bad[i].key), "key '%s' for %s", e.key, bad[i].yaml);
        cr_assert(strstr(e.msg, bad[i].says), "'%s' for %s", e.msg, bad[i].yaml);
    }
}

Test(queue_config, sources_and_their_checks)
{
    cfg_error e;
    ctl_autoscale_cfg c;
    const char *good[] = {
        "min_instances: 0\nqueue: {redis: \"redis://127.0.0.1:6379/0\", list: celery, per_instance: 4}\n",
        "queue: {prometheus: {url: \"http://127.0.0.1:9090\", query: \"sum(q)\"}}\n",
        "queue: {url: \"http://127.0.0.1:9/stats\", json: \"/depth\"}\n",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        memset(&c, 0, sizeof c);
        cr_assert_eq(load(&ctl_autoscale_schema, &c, good[i], &e), 0, "%s: %s: %s", good[i], e.key,
                     e.msg);
    }
    const bad_case bad[] = {
        { "queue: {redis: \"redis://a\", url: \"http://b/\", json: x}\n", "queue.url", "one depth source" },
        { "queue: {redis: \"tcp://a\"}\n", "queue.redis", "expected redis://" },
        { "queue: {redis: \"redis://a\", list: \"\"}\n", "queue.list", "list" },
        { "queue: {url: \"http://b/\"}\n", "queue.json", "JSON pointer" },
        { "queue: {json: \"/a\"}\n", "queue.url", "URL" },
        { "queue: {prometheus: {url: \"http://p:9090\"}}\n", "queue.prometheus.query", "PromQL" },
        { "queue: {prometheus: {query: \"q\"}}\n", "queue.prometheus.url", "Prometheus URL" },
        { "queue: {url: \"ftp://b/\", json: a}\n", "queue.url", "" },
        { "queue: {redis: \"redis://a\", per_instance: 0}\n", "queue.per_instance", "" },
        { "min_instances: -1\n", "min_instances", "" },
    };
    expect_refusals(&ctl_autoscale_schema, &c, sizeof c, bad, sizeof bad / sizeof bad[0]);
}

Test(queue_config, worker_templates)
{
    cfg_error e;
    ctl_config c;
    memset(&c, 0, sizeof c);
    cr_assert_eq(load(&ctl_config_schema, &c, "template: {command: \"celery -A tasks worker -n {id}@%h\", "
                      "port: none, ready_command: \"celery -A tasks inspect ping -d {id}@%h\"}\n", &e),
                 0, "%s: %s", e.key, e.msg);
    const bad_case bad[] = {
        { "template: {command: \"w --port {port}\", port: none}\n", "template.command",
          "{port} is not available" },
        { "template: {command: \"w\", port: none, env: [\"P={port}\"]}\n", "template.env[0]",
          "{port}" },
        { "template: {port: none}\n", "template.command", "needs a command" },
        { "template: {command: \"w\", ready_command: \"true\"}\n", "template.ready_command",
          "only for port: none" },
        { "template: {command: \"w\", port: none, ready_command: \"ping {prot}\"}\n",
          "template.ready_command", "{prot}" },
        { "template: {command: \"w {prot}\"}\n", "template.command", "unknown placeholder" },
        { "template: {command: \"w\", port: 8000}\n", "template.port", "" },
        { "driver: exec\nexec: {launch: a, terminate: b}\ntemplate: {command: w, port: none}\n",
          "template.port", "process driver" },
    };
    expect_refusals(&ctl_config_schema, &c, sizeof c, bad, sizeof bad / sizeof bad[0]);
    /* kill_mode: auto is mixed (main process only) for workers */
    ctl_template_cfg t;
    memset(&t, 0, sizeof t);
    t.port = CTL_PORT_NONE;
    cr_assert(ctl_tmpl_stop_mixed(&t));
    t.port = CTL_PORT_AUTO;
    cr_assert(!ctl_tmpl_stop_mixed(&t));
    t.kill_mode = CTL_KILL_MIXED;
    cr_assert(ctl_tmpl_stop_mixed(&t));
    t.port = CTL_PORT_NONE;
    t.kill_mode = CTL_KILL_GROUP;
    cr_assert(!ctl_tmpl_stop_mixed(&t));
}
