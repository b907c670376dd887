/* test_ctl_scaler.c -- the decision loop on simulated fleets: a CPU demand
 * shared by the ready instances, instances that boot for a while after
 * the scaler asks for them. Steady and noisy loads keep a steady count (no
 * flapping), a 4x step is answered at the next check and capped per step,
 * warm-up keeps booting capacity from being bought twice, spikes are
 * ignored inside a scale-out window, cooldowns and the scale-in
 * stabilization window hold, bounds win at once, missing metrics never
 * shrink the pool, manual counts, and the event JSON. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_autoscale.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

#define S 1000000ull
#define MAXI 64

typedef struct sim {
    ctl_scaler      *s;
    ctl_autoscale_cfg cfg;
    int              n;                 /* instances running (ready or booting) */
    uint64_t         ready_at[MAXI];
    ctl_inst_metrics m[MAXI];
    uint64_t         boot_us;
    uint64_t         now;
    double           demand;            /* total CPU %, shared by ready instances */
    bool             blind;             /* scrapes fail */
    int              changes, records, max_seen;
    uint64_t         first_out_us, last_change_us;
    ctl_decision     d;
    uint32_t         rng;
    double           noise;             /* +/- fraction per instance and check */
} sim;

static void cfg_base(ctl_autoscale_cfg *c)
{
    cfg_error e;
    memset(c, 0, sizeof *c);
    cr_assert_eq(cfg_defaults(&ctl_autoscale_schema, c, &e), 0);
    c->target.memory = 0;               /* CPU target 70 % only */
}

static void sim_init(sim *x, int initial)
{
    char err[128];
    x->s = ctl_scaler_new(&x->cfg, initial, err, sizeof err);
    cr_assert(x->s, "%s", err);
    x->n = ctl_scaler_desired(x->s);
    x->now = 1000 * S;
    for (int i = 0; i < x->n; i++)
        x->ready_at[i] = 1;             /* long ready */
    x->rng = 12345;
    x->max_seen = x->n;
}

static double rnd(sim *x)
{
    x->rng = x->rng * 1664525u + 1013904223u;
    return (double)(x->rng >> 8) / 16777216.0 * 2 - 1;
}

/* One check: measure, decide, converge (new ones boot for boot_us). */
static void sim_step(sim *x)
{
    int ready = 0;
    for (int i = 0; i < x->n; i++)
        ready += x->ready_at[i] <= x->now;
    for (int i = 0; i < x->n; i++) {
        ctl_inst_metrics *m = &x->m[i];
        memset(m, 0, sizeof *m);
        snprintf(m->id, sizeof m->id, "i%d", i);
        for (int k = 0; k < CTL_M__COUNT; k++)
            m->v[k] = NAN;
        bool up = x->ready_at[i] <= x->now;
        m->ready_at_us = up ? x->ready_at[i] : 0;
        m->missing = !up || x->blind;
        if (!m->missing)
            m->v[CTL_M_CPU] = x->demand / ready * (1 + x->noise * rnd(x));
    }
    ctl_observation obs = { x->m, (size_t)x->n, NULL };
    ctl_scaler_step(x->s, &obs, x->now, &x->d);
    if (x->d.record)
        x->records++;
    if (x->d.changed) {
        x->changes++;
        x->last_change_us = x->now;
        if (x->d.event.kind == CTL_EV_SCALE_OUT && !x->first_out_us)
            x->first_out_us = x->now;
    }
    int want = x->d.desired;
    while (x->n < want)
        x->ready_at[x->n++] = x->now + x->boot_us;
    if (want < x->n)
        x->n = want;                      /* the newest go first */
    if (x->n > x->max_seen)
        x->max_seen = x->n;
    x->now += x->cfg.check_interval;
}

static void sim_run(sim *x, uint64_t secs)
{
    uint64_t end = x->now + secs * S;
    while (x->now < end)
        sim_step(x);
}

Test(scaler, steady_load_keeps_a_steady_count)
{
    sim x = { 0 };
    cfg_base(&x.cfg);
    sim_init(&x, 3);
    x.demand = 3 * 70;
    x.noise = 0.08;                        /* inside the 10 % tolerance */
    sim_run(&x, 3600);
    cr_assert_eq(x.changes, 0);
    cr_assert_eq(x.n, 3);
    ctl_scaler_free(x.s);
}

Test(scaler, load_between_two_counts_does_not_flap)
{
    /* 3 at 80.5 % wants 4; 4 at 60 % is outside the tolerance but ceil()
     * keeps 4: the count settles instead of bouncing 3-4-3 */
    sim x = { 0 };
    cfg_base(&x.cfg);
    x.cfg.scale_in_cooldown = x.cfg.scale_in_stabilization = 10 * S;
    x.boot_us = 2 * S;
    sim_init(&x, 3);
    x.demand = 3 * 80.5;
    x.noise = 0.03;
    sim_run(&x, 3600);
    cr_assert_eq(x.changes, 1, "changes %d", x.changes);
    cr_assert_eq(x.n, 4);
    ctl_scaler_free(x.s);
}

Test(scaler, quadrupled_load_out_then_back_in)
{
    sim x = { 0 };
    cfg_base(&x.cfg);
    x.boot_us = 2 * S;
    sim_init(&x, 3);
    x.demand = 3 * 50;
    sim_run(&x, 60);
    cr_assert_eq(x.changes, 0);
    uint64_t step_at = x.now;
    x.demand = 600;                          /* 4x */
    sim_run(&x, 540);
    /* answered at the very next check */
    cr_assert_eq(x.first_out_us, step_at, "first scale-out %llu s after the step",
                 (unsigned long long)((x.first_out_us - step_at) / S));
    /* first step capped at max(2x, +4) = 7 of the 9 wanted; then 9 */
    cr_assert_eq(x.n, 9);
    cr_assert_leq(x.max_seen, 9);
    cr_assert_eq(x.changes, 2);
    uint64_t drop_at = x.now;
    x.demand = 3 * 50;
    sim_run(&x, 299);
    cr_assert_eq(x.n, 9, "no scale-in inside the 300 s stabilization window");
    sim_run(&x, 600);
    cr_assert_eq(x.n, 3);
    cr_assert_geq(x.last_change_us, drop_at + 300 * S);
    cr_assert_eq(x.changes, 3);
    ctl_scaler_free(x.s);
}

Test(scaler, warmup_keeps_booting_capacity_from_being_bought_twice)
{
    sim x = { 0 };
    cfg_base(&x.cfg);
    x.cfg.scale_out_cooldown = 0;            /* only warm-up stands in the way */
    x.boot_us = 20 * S;
    sim_init(&x, 2);
    x.demand = 400;                          /* needs ceil(400 / 70) = 6 */
    sim_run(&x, 300);
    cr_assert_eq(x.n, 6);
    cr_assert_eq(x.max_seen, 6);
    cr_assert_eq(x.changes, 1);
    ctl_scaler_free(x.s);
}

Test(scaler, spike_inside_scale_out_window_is_ignored)
{
    for (int win = 0; win <= 1; win++) {
        sim x = { 0 };
        cfg_base(&x.cfg);
        x.cfg.scale_out_stabilization = win ? 10 * S : 0;
        sim_init(&x, 3);
        x.demand = 3 * 60;
        sim_run(&x, 60);
        x.demand = 3 * 300;
        sim_step(&x);                        /* one 2 s sample */
        x.demand = 3 * 60;
        sim_run(&x, 60);
        if (win)
            cr_assert_eq(x.changes, 0, "a 2 s spike inside a 10 s window");
        else
            cr_assert_eq(x.changes, 1, "no window: react at once");
        ctl_scaler_free(x.s);
    }
}

Test(scaler, cooldowns)
{
    sim x = { 0 };
    cfg_base(&x.cfg);
    x.cfg.scale_in_stabilization = 0;
    sim_init(&x, 2);
    x.demand = 2 * 100;                      /* 2 -> 3 */
    sim_step(&x);
    cr_assert_eq(x.d.event.kind, CTL_EV_SCALE_OUT);
    cr_assert_eq(x.n, 3);
    uint64_t t_out = x.now - 2 * S;
    x.demand = 3 * 140;                      /* wants 6, but cooldown */
    int records_before = x.records;
    sim_run(&x, 56);
    cr_assert_eq(x.n, 3);
    cr_assert_eq(x.d.event.kind, CTL_EV_HOLD);
    cr_assert(strstr(x.d.event.reason, "scale-out cooldown"), "%s", x.d.event.reason);
    cr_assert_eq(x.records - records_before, 1, "one history entry for the whole hold");
    sim_run(&x, 4);
    cr_assert_eq(x.n, 6);
    cr_assert_eq(x.last_change_us, t_out + 60 * S);
    /* scale-in waits 300 s after the last scaling, even with no window */
    uint64_t t_out2 = x.last_change_us;
    x.demand = 50;
    sim_run(&x, 296);
    cr_assert_eq(x.n, 6);
    cr_assert(strstr(x.d.event.reason, "scale-in cooldown"), "%s", x.d.event.reason);
    sim_run(&x, 4);
    cr_assert_eq(x.n, 2);
    cr_assert_eq(x.last_change_us, t_out2 + 300 * S);
    ctl_scaler_free(x.s);
}

Test(scaler, bounds_and_growth_cap)
{
    sim x = { 0 };
    cfg_base(&x.cfg);
    sim_init(&x, 1);
    cr_assert_eq(x.n, 2, "initial count is clamped to min");
    x.demand = 2 * 70 * 50;                  /* wants 100 */
    sim_step(&x);
    cr_assert_eq(x.n, 6, "max(2 * 2, 2 + 4)");
    x.cfg.scale_out_cooldown = 0;
    char err[128];
    cr_assert_eq(ctl_scaler_set_config(x.s, &x.cfg, err, sizeof err), 0);
    sim_run(&x, 120);
    cr_assert_eq(x.n, 10, "never above max");
    /* max lowered: applied at once, cooldown or not */
    x.cfg.max_instances = 4;
    x.cfg.scale_in_cooldown = 3600 * S;
    cr_assert_eq(ctl_scaler_set_config(x.s, &x.cfg, err, sizeof err), 0);
    sim_step(&x);
    cr_assert_eq(x.n, 4);
    cr_assert_str_eq(x.d.event.policy, "bounds");
    x.cfg.min_instances = 5;
    cr_assert_eq(ctl_scaler_set_config(x.s, &x.cfg, err, sizeof err), -1);
    cr_assert(strstr(err, "max_instances"), "%s", err);
    ctl_scaler_free(x.s);

    cfg_base(&x.cfg);
    x.cfg.min_instances = 11;
    cr_assert_null(ctl_scaler_new(&x.cfg, 3, err, sizeof err));
}

Test(scaler, shrink_step_cap)
{
    sim x = { 0 };
    cfg_base(&x.cfg);
    x.cfg.scale_in_cooldown = x.cfg.scale_in_stabilization = 0;
    x.cfg.max_shrink_step = 1;
    sim_init(&x, 8);
    x.demand = 10;
    sim_step(&x);
    cr_assert_eq(x.n, 7);
    cr_assert(strstr(x.d.event.reason, "step limited"), "%s", x.d.event.reason);
    sim_run(&x, 20);
    cr_assert_eq(x.n, 2);
    ctl_scaler_free(x.s);
}

Test(scaler, missing_metrics_never_shrink)
{
    sim x = { 0 };
    cfg_base(&x.cfg);
    sim_init(&x, 6);
    x.demand = 6 * 70;
    x.blind = true;
    sim_run(&x, 1800);
    cr_assert_eq(x.n, 6);
    cr_assert_eq(x.changes, 0);
    cr_assert(strstr(x.d.event.reason, "no policy"), "%s", x.d.event.reason);
    cr_assert_eq(x.d.event.metrics.missing, 6);
    ctl_scaler_free(x.s);
}

Test(scaler, disabled_and_manual)
{
    sim x = { 0 };
    cfg_base(&x.cfg);
    x.cfg.enabled = false;
    sim_init(&x, 3);
    cr_assert(!ctl_scaler_enabled(x.s));
    x.demand = 3 * 200;
    sim_run(&x, 60);
    cr_assert_eq(x.n, 3);
    cr_assert_eq(x.records, 1);
    cr_assert(strstr(x.d.event.reason, "stopped"), "%s", x.d.event.reason);
    cr_assert_eq(x.d.event.recommended, 9);

    ctl_decision d;
    char err[128];
    cr_assert_eq(ctl_scaler_set_desired(x.s, 11, x.now, &d, err, sizeof err), -1);
    cr_assert(strstr(err, "desired"), "%s", err);
    cr_assert_eq(ctl_scaler_set_desired(x.s, 5, x.now, &d, err, sizeof err), 0);
    cr_assert(d.changed && d.record);
    cr_assert_eq(d.event.kind, CTL_EV_MANUAL);
    cr_assert_eq(d.event.old_count, 3);
    cr_assert_eq(ctl_scaler_desired(x.s), 5);

    /* started again: the manual count holds through the cooldown, then the
     * policies take over */
    ctl_scaler_set_enabled(x.s, true);
    x.n = 5;
    for (int i = 0; i < 5; i++)
        x.ready_at[i] = 1;
    x.demand = 5 * 150;
    sim_run(&x, 58);
    cr_assert_eq(x.n, 5);
    sim_run(&x, 4);
    cr_assert_eq(x.n, 10);
    ctl_scaler_free(x.s);
}

Test(scaler, event_json)
{
    sim x = { 0 };
    cfg_base(&x.cfg);
    sim_init(&x, 2);
    x.demand = 2 * 140;
    sim_step(&x);
    buf b;
    buf_init(&b);
    ctl_event_to_json(&x.d.event, &b);
    json_error_t je;
    json_t *j = json_loadb(buf_head(&b), b.len, 0, &je);
    cr_assert(j, "%s: %.*s", je.text, (int)b.len, buf_head(&b));
    cr_assert_str_eq(json_string_value(json_object_get(j, "kind")), "scale_out");
    cr_assert_eq(json_integer_value(json_object_get(j, "old")), 2);
    cr_assert_eq(json_integer_value(json_object_get(j, "new")), 4);
    cr_assert_str_eq(json_string_value(json_object_get(j, "policy")), "target:cpu");
    json_t *m = json_object_get(j, "metrics");
    cr_assert_float_eq(json_real_value(json_object_get(m, "cpu")), 140, 1e-6);
    cr_assert(json_is_null(json_object_get(m, "memory")));
    cr_assert_eq(json_integer_value(json_object_get(m, "ready")), 2);
    json_t *recs = json_object_get(j, "recommendations");
    cr_assert_eq(json_array_size(recs), 1);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(recs, 0), "replicas")), 4);
    cr_assert(memchr(buf_head(&b), '\n', b.len) == NULL);
    json_decref(j);
    buf_free(&b);
    ctl_scaler_free(x.s);
}

Test(scaler, ca_dms_thresholds_with_one_cooldown)
{
    /* the seed's JSON: thresholds, min 2, max 10, scale_cooldown 300 */
    sim x = { 0 };
    cfg_base(&x.cfg);
    x.cfg.target.cpu = 0;
    x.cfg.cpu_scale_up = 80;
    x.cfg.cpu_scale_down = 30;
    x.cfg.scale_cooldown = 300 * S;
    x.cfg.scale_in_stabilization = 0;
    x.boot_us = 2 * S;
    sim_init(&x, 2);
    x.demand = 2 * 90;                       /* 90 % each: above cpu_scale_up */
    sim_step(&x);
    cr_assert_eq(x.n, 3);
    cr_assert_str_eq(x.d.event.policy, "rule:cpu_scale_up");
    /* 3 at 60 %: between the thresholds, nothing to do, ever */
    sim_run(&x, 1200);
    cr_assert_eq(x.n, 3);
    cr_assert_eq(x.changes, 1);
    /* load up again: a step at once, then one per 300 s cooldown */
    uint64_t t0 = x.now;
    x.demand = 3 * 95 * 3;
    sim_run(&x, 610);
    cr_assert_eq(x.n, 6);
    cr_assert_eq(x.last_change_us, t0 + 600 * S);
    /* load gone: below cpu_scale_down, a step down 300 s after the last
     * scaling, then one per cooldown */
    x.demand = 10;
    sim_run(&x, 290);
    cr_assert_eq(x.n, 6);
    sim_run(&x, 2);
    cr_assert_eq(x.n, 5);
    sim_run(&x, 1500);
    cr_assert_eq(x.n, 2, "never below min_instances");
    ctl_scaler_free(x.s);
}
