/* test_ctl_policy.c -- policies and the `autoscaling:` schema: the HPA
 * formula with tolerance, missing instances (0 % up, 100 % down, no flip),
 * warming instances set aside; CareCompanion threshold rules with
 * durations, breaks and the scale-in veto; the CA-DMS threshold set as
 * given in its seed (JSON body verbatim), defaults, environment overrides
 * and validation errors naming the key. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_autoscale.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

#define S 1000000ull

static ctl_inst_metrics mk(double cpu)
{
    ctl_inst_metrics m;
    memset(&m, 0, sizeof m);
    m.ready_at_us = 1;
    for (int k = 0; k < CTL_M__COUNT; k++)
        m.v[k] = NAN;
    m.v[CTL_M_CPU] = cpu;
    m.missing = isnan(cpu);
    return m;
}

static int hpa(const double *cpu, size_t n, int current)
{
    ctl_inst_metrics m[16];
    for (size_t i = 0; i < n; i++)
        m[i] = mk(cpu[i]);
    return ctl_target_replicas(m, n, CTL_M_CPU, 70, 0.1, current, 1000 * S, 30 * S, NULL);
}

Test(policy, hpa_formula)
{
    cr_assert_eq(hpa((double[]){ 140, 140, 140 }, 3, 3), 6);
    cr_assert_eq(hpa((double[]){ 75, 70, 80 }, 3, 3), 3);          /* inside the tolerance */
    cr_assert_eq(hpa((double[]){ 77.5, 77.5 }, 2, 2), 3);          /* ratio 1.107: just out */
    cr_assert_eq(hpa((double[]){ 63.5, 63.5 }, 2, 2), 2);          /* ratio 0.907: in */
    cr_assert_eq(hpa((double[]){ 20, 20, 20 }, 3, 3), 1);
    cr_assert_eq(hpa((double[]){ 0, 0 }, 2, 2), 0);                /* the scaler clamps to min */
    cr_assert_eq(hpa((double[]){ NAN, NAN }, 2, 2), CTL_NO_REC);
    cr_assert_eq(hpa((double[]){ INFINITY, 70 }, 2, 2), 1000000);  /* bounded, no UB */
    cr_assert_eq(hpa((double[]){ -50, -50 }, 2, 2), 0);
    double usage;
    ctl_inst_metrics m[1] = { mk(35) };
    cr_assert_eq(ctl_target_replicas(m, 1, CTL_M_CPU, 0, 0.1, 1, S, 0, &usage), CTL_NO_REC);
    cr_assert_float_eq(usage, 35, 1e-9);
}

Test(policy, hpa_missing_instances)
{
    /* scaling up: the missing one counts 0 % -> 280/3 = 93 % -> 4 */
    cr_assert_eq(hpa((double[]){ 140, 140, NAN }, 3, 3), 4);
    /* scaling down: the missing one counts 100 % of target -> 110/3 = 52 % -> 2 */
    cr_assert_eq(hpa((double[]){ 20, 20, NAN }, 3, 3), 2);
    /* filling in flips the direction: no change */
    cr_assert_eq(hpa((double[]){ 80, 80, NAN, NAN }, 4, 4), 4);
    /* filling in lands within the tolerance: no change */
    cr_assert_eq(hpa((double[]){ 77, 77, 77, 77, 77, 77, 77, 77, 77, NAN }, 10, 10), 10);
    /* all but one missing, that one idle: the missing count as at target,
     * (0 + 3 * 70) / 4 = 75 % -> 3, not the 1 that ignoring them would give */
    cr_assert_eq(hpa((double[]){ 0, NAN, NAN, NAN }, 4, 4), 3);
}

Test(policy, hpa_warming_instances)
{
    ctl_inst_metrics m[4] = { mk(140), mk(140), mk(0), mk(0) };
    uint64_t now = 1000 * S;
    m[2].ready_at_us = now - 5 * S;            /* ready, inside the 30 s warm-up */
    m[3].ready_at_us = 0;                      /* not ready */
    m[3].missing = true;
    /* scaling up with warming ones: they count 0 %, 280/4 = 70 %: hold at 4 */
    cr_assert_eq(ctl_target_replicas(m, 4, CTL_M_CPU, 70, 0.1, 4, now, 30 * S, NULL), 4);
    /* without warm-up they are plain instances: 2 idle ready + 1 missing */
    cr_assert_eq(ctl_target_replicas(m, 3, CTL_M_CPU, 70, 0.1, 3, now, 0, NULL), 4);
    /* scaling down: warming ones count 100 % of target (they already take
     * load the ready ones no longer see): (40 + 140) / 4 = 64 % -> 3, not 1 */
    m[0].v[CTL_M_CPU] = m[1].v[CTL_M_CPU] = 20;
    cr_assert_eq(ctl_target_replicas(m, 4, CTL_M_CPU, 70, 0.1, 4, now, 30 * S, NULL), 3);
    /* after the warm-up m[2] is ordinary (at 0 %); m[3] never got ready */
    m[2].v[CTL_M_CPU] = 0;
    cr_assert_eq(ctl_target_replicas(m, 4, CTL_M_CPU, 70, 0.1, 4, now + 60 * S, 30 * S, NULL), 2);
}

static void base_cfg(ctl_autoscale_cfg *c)
{
    cfg_error e;
    memset(c, 0, sizeof *c);
    cr_assert_eq(cfg_defaults(&ctl_autoscale_schema, c, &e), 0, "%s: %s", e.key, e.msg);
    c->target.cpu = 0;
    c->target.memory = 0;
}

/* CareCompanion: up when CPU > 70 % for 5 min, memory > 80 %, p95 > 500 ms;
 * down when CPU < 30 % for 30 min. */
static void carecompanion(ctl_autoscale_cfg *c, ctl_rule_cfg *r)
{
    base_cfg(c);
    r[0] = (ctl_rule_cfg){ CTL_M_CPU, CTL_OP_ABOVE, 70, 300 * S, 1 };
    r[1] = (ctl_rule_cfg){ CTL_M_MEMORY, CTL_OP_ABOVE, 80, 300 * S, 1 };
    r[2] = (ctl_rule_cfg){ CTL_M_P95, CTL_OP_ABOVE, 500, 0, 2 };
    r[3] = (ctl_rule_cfg){ CTL_M_CPU, CTL_OP_BELOW, 30, 1800 * S, 1 };
    c->rules = r;
    c->nrules = 4;
}

/* Times in the tests count from T0, after the instances became ready. */
#define T0 (1000 * S)

static int eval(ctl_policy *p, ctl_inst_metrics *m, size_t n, int cur, uint64_t now, ctl_rec *recs)
{
    now += T0;
    ctl_pool_metrics pool;
    ctl_collect_pool(&pool, m, n, now, 0);
    size_t nr = ctl_policy_eval(p, m, n, &pool, cur, now, 0, recs);
    int best = CTL_NO_REC;
    for (size_t i = 0; i < nr; i++)
        if (recs[i].replicas > best)
            best = recs[i].replicas;
    return best;
}

Test(policy, threshold_rules_with_durations)
{
    ctl_autoscale_cfg c;
    ctl_rule_cfg r[4];
    carecompanion(&c, r);
    ctl_policy p;
    char err[128];
    cr_assert_eq(ctl_policy_init(&p, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.nrules, 4);
    cr_assert_str_eq(p.rules[3].origin, "rules[3]");
    ctl_rec recs[CTL_MAX_RECS];
    ctl_inst_metrics m[2] = { mk(85), mk(75) };
    uint64_t t = 0;
    /* 80 % from t=0: nothing until 5 min have passed */
    for (; t < 300 * S; t += 30 * S)
        cr_assert_eq(eval(&p, m, 2, 2, t, recs), CTL_NO_REC, "t=%llu", (unsigned long long)(t / S));
    cr_assert(strstr(recs[0].note, "for 270s of 300s"), "%s", recs[0].note);
    cr_assert_eq(eval(&p, m, 2, 2, t, recs), 3);
    cr_assert_str_eq(recs[0].policy, "rule:rules[0]");
    /* a break (one sample at 60 %) restarts the clock */
    m[0].v[CTL_M_CPU] = m[1].v[CTL_M_CPU] = 60;
    cr_assert_eq(eval(&p, m, 2, 3, t += 30 * S, recs), CTL_NO_REC);
    m[0].v[CTL_M_CPU] = m[1].v[CTL_M_CPU] = 90;
    cr_assert_eq(eval(&p, m, 2, 3, t += 30 * S, recs), CTL_NO_REC);
    cr_assert_eq(eval(&p, m, 2, 3, t += 299 * S, recs), CTL_NO_REC);
    cr_assert_eq(eval(&p, m, 2, 3, t += 1 * S, recs), 4);

    /* p95 over 500 ms: no duration, step 2, from the pool's merged buckets */
    m[0].v[CTL_M_CPU] = m[1].v[CTL_M_CPU] = 50;
    ctl_lat slow = { .n = 3, .le = { 0.5, 1, INFINITY }, .cum = { 10, 100, 100 }, .count = 100 };
    m[0].lat = slow;
    m[0].requests = 100;
    cr_assert_eq(eval(&p, m, 2, 3, t += S, recs), 5);
    cr_assert_str_eq(recs[2].policy, "rule:rules[2]");
}

Test(policy, scale_in_rule_and_vetoes)
{
    ctl_autoscale_cfg c;
    ctl_rule_cfg r[4];
    carecompanion(&c, r);
    ctl_policy p;
    char err[128];
    cr_assert_eq(ctl_policy_init(&p, &c, err, sizeof err), 0, "%s", err);
    ctl_rec recs[CTL_MAX_RECS];
    ctl_inst_metrics m[3] = { mk(10), mk(20), mk(15) };
    uint64_t t = 0;
    for (; t < 1800 * S; t += 60 * S)
        cr_assert_eq(eval(&p, m, 3, 3, t, recs), CTL_NO_REC);
    cr_assert_eq(eval(&p, m, 3, 3, t, recs), 2);
    /* memory high (even before its 5 min): no scale-in */
    for (int i = 0; i < 3; i++)
        m[i].v[CTL_M_MEMORY] = 90;
    cr_assert_eq(eval(&p, m, 3, 3, t += 60 * S, recs), CTL_NO_REC);
    cr_assert(strstr(recs[3].note, "scale-out condition holds"), "%s", recs[3].note);
    for (int i = 0; i < 3; i++)
        m[i].v[CTL_M_MEMORY] = 50;
    cr_assert_eq(eval(&p, m, 3, 3, t += 60 * S, recs), 2);     /* cpu stayed low throughout */
    /* one instance unscrapable: a scale-in rule cannot judge, and restarts */
    m[2] = mk(NAN);
    cr_assert_eq(eval(&p, m, 3, 3, t += 60 * S, recs), CTL_NO_REC);
    m[2] = mk(15);
    cr_assert_eq(eval(&p, m, 3, 3, t += 60 * S, recs), CTL_NO_REC);
}

Test(policy, missing_counts_zero_for_scale_out_rules)
{
    ctl_autoscale_cfg c;
    ctl_rule_cfg r[1] = { { CTL_M_CPU, CTL_OP_ABOVE, 70, 0, 1 } };
    base_cfg(&c);
    c.rules = r;
    c.nrules = 1;
    ctl_policy p;
    char err[128];
    cr_assert_eq(ctl_policy_init(&p, &c, err, sizeof err), 0);
    ctl_rec recs[CTL_MAX_RECS];
    ctl_inst_metrics m[3] = { mk(100), mk(90), mk(NAN) };
    cr_assert_eq(eval(&p, m, 3, 3, 0, recs), CTL_NO_REC);    /* 190 / 3 = 63 % */
    cr_assert_float_eq(recs[0].value, 190.0 / 3, 1e-9);
    m[0].v[CTL_M_CPU] = 130;
    cr_assert_eq(eval(&p, m, 3, 3, S, recs), 4);             /* 220 / 3 = 73 % */
}

Test(policy, target_tracking_in_eval)
{
    ctl_autoscale_cfg c;
    base_cfg(&c);
    c.target.cpu = 70;
    c.target.p95 = 200000;                       /* 200 ms */
    ctl_policy p;
    char err[128];
    cr_assert_eq(ctl_policy_init(&p, &c, err, sizeof err), 0);
    ctl_inst_metrics m[2] = { mk(35), mk(35) };
    m[0].v[CTL_M_P95] = 600;
    m[1].v[CTL_M_P95] = 600;
    ctl_rec recs[CTL_MAX_RECS];
    cr_assert_eq(eval(&p, m, 2, 2, 0, recs), 6);              /* p95 3x target wins over cpu's 1 */
    cr_assert_str_eq(recs[0].policy, "target:cpu");
    cr_assert_eq(recs[0].replicas, 1);
    cr_assert_str_eq(recs[1].policy, "target:p95");
    cr_assert_float_eq(recs[1].value, 600, 1e-9);
    cr_assert_float_eq(recs[1].target, 200, 1e-9);
}

Test(policy, capacity_advice)
{
    ctl_inst_metrics m[3] = { mk(35), mk(35), mk(NAN) };
    m[0].v[CTL_M_RPS] = 100;
    m[1].v[CTL_M_RPS] = 100;
    ctl_pool_metrics p;
    ctl_collect_pool(&p, m, 3, 10 * S, 0);
    ctl_capacity c;
    ctl_capacity_estimate(&p, 70, &c);
    cr_assert_float_eq(c.rps_per_instance, 100, 1e-9);
    cr_assert_float_eq(c.rps_per_instance_at_target, 200, 1e-9);   /* 35 % -> 70 % */
    cr_assert_float_eq(c.headroom_rps, 200, 1e-9);
    cr_assert_eq(c.needed_now, 1);
    cr_assert_eq(ctl_capacity_for(&c, 1000, 0), 5);
    cr_assert_eq(ctl_capacity_for(&c, 1000, 0.2), 6);
    cr_assert_eq(ctl_capacity_for(&c, 0, 0), 1);
    /* no CPU figures: throughput known, capacity not */
    m[0].v[CTL_M_CPU] = m[1].v[CTL_M_CPU] = NAN;
    ctl_collect_pool(&p, m, 3, 10 * S, 0);
    ctl_capacity_estimate(&p, 70, &c);
    cr_assert_float_eq(c.rps_per_instance, 100, 1e-9);
    cr_assert(isnan(c.rps_per_instance_at_target));
    cr_assert_eq(c.needed_now, -1);
    cr_assert_eq(ctl_capacity_for(&c, 1000, 0), -1);
}

/* ---- configuration ------------------------------------------------------ */

Test(config, defaults_are_the_seeds)
{
    ctl_autoscale_cfg c;
    cfg_error e;
    memset(&c, 0, sizeof c);
    cr_assert_eq(cfg_defaults(&ctl_autoscale_schema, &c, &e), 0);
    cr_assert(c.enabled);
    cr_assert_eq(c.check_interval, 2 * S);
    cr_assert_eq(c.min_instances, 2);
    cr_assert_eq(c.max_instances, 10);
    cr_assert_eq(c.scale_out_cooldown, 60 * S);
    cr_assert_eq(c.scale_in_cooldown, 300 * S);
    cr_assert_eq(c.scale_in_stabilization, 300 * S);
    cr_assert_eq(c.warmup, 30 * S);
    cr_assert_float_eq(c.target.cpu, 70, 1e-9);
    cr_assert_float_eq(c.tolerance, 0.1, 1e-9);
    cr_assert_float_eq(c.max_growth_factor, 2, 1e-9);
    cr_assert_eq(c.max_growth_add, 4);
    cr_assert_eq(cfg_validate(&ctl_autoscale_schema, &c, &e), 0);
    cfg_free(&ctl_autoscale_schema, &c);
}

Test(config, ca_dms_body_verbatim)
{
    const char *body =
        "{\n"
        "  \"cpu_scale_up\": 80.0,\n  \"cpu_scale_down\": 30.0,\n"
        "  \"memory_scale_up\": 85.0,\n  \"memory_scale_down\": 40.0,\n"
        "  \"response_time_scale_up\": 1000.0,\n"
        "  \"connections_scale_up\": 80,\n  \"connections_scale_down\": 20,\n"
        "  \"min_instances\": 2,\n  \"max_instances\": 10,\n  \"scale_cooldown\": 300\n}\n";
    ctl_autoscale_cfg c;
    cfg_error e;
    memset(&c, 0, sizeof c);
    cr_assert_eq(cfg_defaults(&ctl_autoscale_schema, &c, &e), 0);
    cr_assert_eq(cfg_load_text(&ctl_autoscale_schema, &c, body, strlen(body), "<json>", &e), 0,
                 "%s: %s", e.key, e.msg);
    cr_assert_eq(cfg_validate(&ctl_autoscale_schema, &c, &e), 0, "%s: %s", e.key, e.msg);
    cr_assert_eq(c.scale_cooldown, 300 * S);
    ctl_policy p;
    char err[128];
    cr_assert_eq(ctl_policy_init(&p, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.nrules, 7);
    cr_assert_str_eq(p.rules[0].origin, "cpu_scale_up");
    cr_assert_eq(p.rules[1].op, CTL_OP_BELOW);
    cr_assert_str_eq(p.rules[4].origin, "response_time_scale_up");
    cr_assert_eq(p.rules[4].metric, CTL_M_P95);
    cr_assert_float_eq(p.rules[4].value, 1000, 1e-9);
    cr_assert_eq(p.rules[6].metric, CTL_M_CONNECTIONS);
    cfg_free(&ctl_autoscale_schema, &c);
}

Test(config, rules_yaml_env_and_errors)
{
    const char *yaml =
        "min_instances: 3\n"
        "rules:\n"
        "  - { metric: cpu, op: above, value: 70, for: 5m }\n"
        "  - { metric: cpu, op: below, value: 30, for: 30m, step: 2 }\n";
    ctl_autoscale_cfg c;
    cfg_error e;
    memset(&c, 0, sizeof c);
    cr_assert_eq(cfg_defaults(&ctl_autoscale_schema, &c, &e), 0);
    cr_assert_eq(cfg_load_text(&ctl_autoscale_schema, &c, yaml, strlen(yaml), "hscale.yaml", &e), 0,
                 "%s: %s", e.key, e.msg);
    cr_assert_eq(c.nrules, 2);
    cr_assert_eq(c.rules[0].for_us, 300 * S);
    cr_assert_eq(c.rules[0].step, 1);
    cr_assert_eq(c.rules[1].op, CTL_OP_BELOW);
    cr_assert_eq(c.rules[1].step, 2);

    setenv("MIN_INSTANCES", "4", 1);
    setenv("MAX_INSTANCES", "12", 1);
    setenv("SCALING_CHECK_INTERVAL", "30", 1);
    setenv("AUTO_SCALING_ENABLED", "false", 1);
    cr_assert_eq(cfg_apply_env(&ctl_autoscale_schema, &c, &e), 0, "%s", e.msg);
    cr_assert_eq(c.min_instances, 4);
    cr_assert_eq(c.max_instances, 12);
    cr_assert_eq(c.check_interval, 30 * S);
    cr_assert(!c.enabled);
    setenv("MAX_INSTANCES", "x", 1);
    cr_assert_eq(cfg_apply_env(&ctl_autoscale_schema, &c, &e), -1);
    cr_assert(strstr(e.msg, "MAX_INSTANCES"), "%s", e.msg);
    unsetenv("MIN_INSTANCES");
    unsetenv("MAX_INSTANCES");
    unsetenv("SCALING_CHECK_INTERVAL");
    unsetenv("AUTO_SCALING_ENABLED");

    c.max_instances = 2;
    cr_assert_eq(cfg_validate(&ctl_autoscale_schema, &c, &e), -1);
    cr_assert_str_eq(e.key, "max_instances");
    c.max_instances = 10;
    c.cpu_scale_up = 50;
    c.cpu_scale_down = 60;
    cr_assert_eq(cfg_validate(&ctl_autoscale_schema, &c, &e), -1);
    cr_assert_str_eq(e.key, "cpu_scale_down");
    cfg_free(&ctl_autoscale_schema, &c);

    memset(&c, 0, sizeof c);
    cfg_defaults(&ctl_autoscale_schema, &c, &e);
    const char *bad = "rules:\n  - { metric: latency, value: 1 }\n";
    cr_assert_eq(cfg_load_text(&ctl_autoscale_schema, &c, bad, strlen(bad), "hscale.yaml", &e), -1);
    cr_assert(strstr(e.key, "rules[0].metric"), "%s", e.key);
    cfg_free(&ctl_autoscale_schema, &c);
    memset(&c, 0, sizeof c);
    cfg_defaults(&ctl_autoscale_schema, &c, &e);
    const char *bad2 = "rules:\n  - { metric: cpu, op: above, value: 0 }\n";
    int rc = cfg_load_text(&ctl_autoscale_schema, &c, bad2, strlen(bad2), "hscale.yaml", &e);
    if (rc == 0)
        rc = cfg_validate(&ctl_autoscale_schema, &c, &e);
    cr_assert_eq(rc, -1);
    cr_assert(strstr(e.key, "value"), "%s", e.key);
    cfg_free(&ctl_autoscale_schema, &c);
    memset(&c, 0, sizeof c);
    cfg_defaults(&ctl_autoscale_schema, &c, &e);
    const char *bad3 = "tolerance: 2\n";
    cr_assert_eq(cfg_load_text(&ctl_autoscale_schema, &c, bad3, strlen(bad3), "hscale.yaml", &e), -1);
    cr_assert_str_eq(e.key, "tolerance");
    cfg_free(&ctl_autoscale_schema, &c);
}
