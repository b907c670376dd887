/* ctl_deploy_switch.c -- the deploys that move traffic between two pools:
 * blue-green (all at once, after smoke checks, with a rollback window) and
 * canary (weight steps, each judged from the gateway's per-pool metrics).
 *
 * Both start the new instances in the second pool (the "next" pool, which
 * no route weights while idle), move traffic with PUT /api/v1/routes only,
 * and end the same way: the new instances are folded into the control pool
 * while the routes still point at the next pool, the routes go back to
 * the control pool in one PUT, and the next pool is emptied. Every move is
 * atomic at the gateway, so no request sees a pool without members. A
 * rollback is one PUT back to the control pool while the old instances
 * still run, then the new ones are drained and stopped. */
#include "control/ctl_deploy_int.h"
#include "control/ctl_mgr_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INST 256

static json_t *stats_json(const ctl_dep_stats *s)
{
    return json_pack("{s:f, s:f, s:o, s:o}", "requests", s->requests, "errors", s->errors,
                     "error_rate", isnan(s->error_rate) ? json_null() : json_real(s->error_rate),
                     "p95_ms", isnan(s->p95_ms) ? json_null() : json_real(s->p95_ms));
}

/* Routes back to the control pool, then the new instances out. */
static int roll_back(ctl_dep_run *r, const ctl_dep_inst *nw, size_t n, int rc, const char *why)
{
    char err[512];
    ctl_dep_phase(r, "rolling_back");
    if (ctl_dep_route(r, 100, 0, err, sizeof err) < 0) {
        ctl_dep_event(r, "rollback_failed", NULL, "%s", err);
        return -1;
    }
    ctl_dep_progress(r, 0, (int)n, 0);
    ctl_dep_event(r, "rollback", json_pack("{s:s}", "reason", why),
                  "traffic back on pool %s: %s", r->c->pool, why);
    ctl_dep_drain_next(r, nw, n, true);
    ctl_dep_event(r, "rolled_back", NULL, "%zu new instance(s) drained and stopped", n);
    return rc;
}

/* Hands the new instances to the manager and the routes back to the
 * control pool, which now holds them. */
static int finish(ctl_dep_run *r, const ctl_dep_inst *nw, size_t nn, const ctl_dep_inst *old,
                  size_t no)
{
    char err[512];
    ctl_dep_phase(r, "finishing");
    if (ctl_instances_set_template(r->m, &r->tmpl, err, sizeof err) < 0
        || ctl_dep_fold(r, nw, nn, old, no, err, sizeof err) < 0
        || ctl_dep_route(r, 100, 0, err, sizeof err) < 0) {
        ctl_dep_event(r, "error", NULL, "finishing: %s", err);
        return -1;
    }
    ctl_dep_drain_next(r, nw, nn, false);
    ctl_dep_progress(r, (int)nn, (int)nn, 100);
    ctl_dep_event(r, "complete", json_pack("{s:i, s:i}", "instances", (int)nn, "retired", (int)no),
                  "%zu instance(s) of version %s serve pool %s; %zu old retired", nn,
                  r->s->version, r->c->pool, no);
    return 0;
}

/* The new instances: started, ready, in the next pool (no traffic yet). */
static int start_new(ctl_dep_run *r, ctl_dep_inst *olds, size_t *nold, ctl_dep_inst *nw,
                     size_t *nn)
{
    char err[512];
    *nold = ctl_dep_managed(r, olds, MAX_INST);
    int count = r->s->instances > 0 ? r->s->instances : (int)(*nold > 0 ? *nold : 1);
    if (count > MAX_INST)
        count = MAX_INST;
    ctl_dep_phase(r, "starting");
    ctl_dep_progress(r, 0, count, 0);
    if (ctl_dep_route(r, 100, 0, err, sizeof err) < 0) {   /* the idle shape, and a check */
        ctl_dep_event(r, "error", NULL, "%s", err);
        return -1;
    }
    if (ctl_dep_start_batch(r, &r->tmpl, r->s->version, count, nw, err, sizeof err) < 0) {
        ctl_dep_event(r, "error", NULL, "%s", err);
        return 2;
    }
    *nn = (size_t)count;
    if (ctl_dep_register_next(r, nw, *nn, err, sizeof err) < 0) {
        ctl_dep_event(r, "error", NULL, "%s", err);
        ctl_dep_drain_next(r, nw, *nn, true);
        return 2;
    }
    ctl_dep_event(r, "ready", json_pack("{s:i, s:s}", "instances", count, "pool", r->next_pool),
                  "%d instance(s) of %s ready in pool %s, no traffic yet", count,
                  r->s->version, r->next_pool);
    return 0;
}

/* Holds until promote (or rollback / shutdown). */
static ctl_dep_wake await_promote(ctl_dep_run *r, const char *what)
{
    ctl_dep_phase(r, "awaiting_promote");
    ctl_dep_event(r, "hold", NULL, "%s: waiting for promote", what);
    for (;;) {
        ctl_dep_wake w = ctl_dep_wait(r, 1000000u);
        if (w != CTL_W_OK)
            return w;
    }
}

int ctl_dep_bluegreen(ctl_dep_run *r)
{
    static ctl_dep_inst olds[MAX_INST], nw[MAX_INST];   /* the deploy thread's */
    size_t nold = 0, nn = 0;
    int rc = start_new(r, olds, &nold, nw, &nn);
    if (rc != 0)
        return rc;
    char err[512];
    ctl_dep_phase(r, "smoke");
    ctl_dep_spec *s = r->s;
    if (s->nsmoke == 0) {   /* at least what readiness already proved, over HTTP */
        snprintf(s->smoke[0].path, sizeof s->smoke[0].path, "%s",
                 r->tmpl.ready_path ? r->tmpl.ready_path : "/health/ready");
        s->smoke[0].expect = 200;
        s->nsmoke = 1;
    }
    if (ctl_dep_smoke_run(r, nw, nn, err, sizeof err) < 0) {
        ctl_dep_event(r, "smoke", json_pack("{s:b}", "passed", 0), "%s", err);
        ctl_dep_drain_next(r, nw, nn, true);
        return 2;
    }
    ctl_dep_event(r, "smoke", json_pack("{s:b, s:i}", "passed", 1, "checks", s->nsmoke * (int)nn),
                  "%d smoke check(s) passed on %zu instance(s)", s->nsmoke, nn);
    ctl_dep_wake w = CTL_W_OK;
    if (!s->auto_promote)
        w = await_promote(r, "green is ready");
    if (w == CTL_W_ROLLBACK)
        return roll_back(r, nw, nn, 1, "rollback requested before the switch");
    if (w == CTL_W_ABORT)
        return -1;
    if (ctl_dep_route(r, 0, 100, err, sizeof err) < 0) {
        ctl_dep_event(r, "error", NULL, "switch: %s", err);
        ctl_dep_drain_next(r, nw, nn, true);
        return 2;
    }
    ctl_dep_progress(r, (int)nn, (int)nn, 100);
    ctl_dep_phase(r, "rollback_window");
    ctl_dep_event(r, "switched", json_pack("{s:s, s:s, s:f}", "from_pool", r->c->pool, "to_pool",
                                           r->next_pool, "rollback_window_s",
                                           (double)s->rollback_window_us / 1e6),
                  "traffic switched to pool %s; blue kept for %.0f s", r->next_pool,
                  (double)s->rollback_window_us / 1e6);
    w = ctl_dep_wait(r, s->rollback_window_us);
    if (w == CTL_W_ROLLBACK)
        return roll_back(r, nw, nn, 1, "rollback requested in the rollback window");
    if (w == CTL_W_ABORT) {   /* blue is about to stop: give it the traffic back now */
        ctl_dep_route(r, 100, 0, err, sizeof err);
        return -1;
    }
    return finish(r, nw, nn, olds, nold) == 0 ? 0 : -1;
}

/* One analysis window at the current weight. */
static ctl_verdict analyse(ctl_dep_run *r, int weight, ctl_dep_wake *w, char *why, size_t whylen)
{
    ctl_gwm_scrape *a = calloc(2, sizeof *a);
    ctl_lat *lat = calloc(4, sizeof *lat);   /* stable, next; before, after */
    char err[256];
    ctl_verdict v = CTL_VERDICT_INCONCLUSIVE;
    *w = CTL_W_OK;
    if (!a || !lat || ctl_dep_scrape(r, &a[0], &lat[0], &lat[1], err, sizeof err) < 0) {
        snprintf(why, whylen, "no metrics: %.160s", a && lat ? err : "out of memory");
        *w = ctl_dep_wait(r, r->s->pause_us);
        free(a);
        free(lat);
        return v;
    }
    *w = ctl_dep_wait(r, r->s->pause_us);
    if (*w != CTL_W_OK) {
        free(a);
        free(lat);
        snprintf(why, whylen, "cut short");
        return v;
    }
    if (ctl_dep_scrape(r, &a[1], &lat[2], &lat[3], err, sizeof err) < 0) {
        snprintf(why, whylen, "no metrics: %.160s", err);
        free(a);
        free(lat);
        return v;
    }
    ctl_dep_stats cand, base;
    ctl_dep_stats_of(&cand, &a[0], &a[1], r->next_pool, NULL, 0);
    ctl_dep_stats_of(&base, &a[0], &a[1], r->c->pool, NULL, 0);
    ctl_dep_stats_lat(&base, &lat[0], &lat[2]);
    ctl_dep_stats_lat(&cand, &lat[1], &lat[3]);
    free(a);
    free(lat);
    v = ctl_dep_judge(r->s, &cand, &base, why, whylen);
    ctl_dep_event(r, "analysis", json_pack("{s:i, s:s, s:o, s:o}", "weight", weight, "verdict",
                                           ctl_verdict_name(v), "canary", stats_json(&cand),
                                           "stable", stats_json(&base)),
                  "at %d%%: %s, %s", weight, ctl_verdict_name(v), why);
    return v;
}

int ctl_dep_canary(ctl_dep_run *r)
{
    static ctl_dep_inst olds[MAX_INST], nw[MAX_INST];   /* the deploy thread's */
    size_t nold = 0, nn = 0;
    int rc = start_new(r, olds, &nold, nw, &nn);
    if (rc != 0)
        return rc;
    const ctl_dep_spec *s = r->s;
    char err[512], why[256];
    for (int i = 0; i < s->nsteps; i++) {
        int wgt = s->steps[i];
        if (ctl_dep_route(r, 100 - wgt, wgt, err, sizeof err) < 0) {
            ctl_dep_event(r, "error", NULL, "%s", err);
            return roll_back(r, nw, nn, 2, err);
        }
        ctl_dep_phase(r, "analysing");
        ctl_dep_progress(r, i, s->nsteps, wgt);
        ctl_dep_event(r, "step", json_pack("{s:i, s:i, s:i}", "step", i + 1, "steps", s->nsteps,
                                           "weight", wgt),
                      "step %d/%d: %d%% of traffic on %s", i + 1, s->nsteps, wgt, r->s->version);
        uint64_t held_since = ctl_mono_us();
        for (;;) {
            ctl_dep_wake w;
            ctl_verdict v = analyse(r, wgt, &w, why, sizeof why);
            if (w == CTL_W_ROLLBACK)
                return roll_back(r, nw, nn, 1, "rollback requested");
            if (w == CTL_W_ABORT) {
                ctl_dep_route(r, 100, 0, err, sizeof err);
                return -1;
            }
            if (w == CTL_W_PROMOTE) {
                ctl_dep_event(r, "promoted", json_pack("{s:i}", "weight", wgt),
                              "promoted by the operator at %d%%", wgt);
                ctl_dep_route(r, 0, 100, err, sizeof err);
                return finish(r, nw, nn, olds, nold) == 0 ? 0 : -1;
            }
            if (v == CTL_VERDICT_FAIL)
                return roll_back(r, nw, nn, 2, why);
            if (v == CTL_VERDICT_PASS)
                break;
            if (ctl_mono_us() - held_since > s->max_hold_us) {
                snprintf(err, sizeof err, "inconclusive for %.0f s at %d%%: %s",
                         (double)s->max_hold_us / 1e6, wgt, why);
                return roll_back(r, nw, nn, 2, err);
            }
            ctl_dep_phase(r, "holding");
        }
        if (!s->auto_promote && wgt < 100) {
            ctl_dep_wake w = await_promote(r, why);
            if (w == CTL_W_ROLLBACK)
                return roll_back(r, nw, nn, 1, "rollback requested");
            if (w == CTL_W_ABORT) {
                ctl_dep_route(r, 100, 0, err, sizeof err);
                return -1;
            }
        }
    }
    return finish(r, nw, nn, olds, nold) == 0 ? 0 : -1;
}
