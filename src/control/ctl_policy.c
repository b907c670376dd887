/* ctl_policy.c -- scaling policies: each turns measurements into a
 * recommended instance count, and the scaler takes the largest.
 *
 * Target tracking is the Kubernetes HPA replica formula
 * (replica_calculator.go): desired = ceil(ready * avg / target), no change
 * while |avg / target - 1| <= tolerance. Instances still warming are set
 * aside; instances without a value are "missing" and are filled in on the
 * conservative side of the move: 0 % of target when the first estimate
 * scales up, 100 % when it scales down; if filling them in flips the
 * direction or lands inside the tolerance, nothing changes (warming ones
 * also count 100 % when scaling down; see ctl_target_replicas). That is what
 * keeps a dead or unscrapable instance from reading as idle capacity.
 *
 * Threshold rules (the CareCompanion tables and the CA-DMS names) fire when
 * the pool's value has been beyond the threshold continuously for `for`,
 * recommending current +/- step for as long as the condition holds (the
 * scaler's cooldowns space the steps, like an AWS alarm that stays in
 * ALARM). Rules read the pool
 * average over ready instances; an "above" rule counts missing instances
 * as 0, a "below" rule never fires while one is missing or warming. A scale-in rule is
 * also vetoed while any scale-out condition holds, even one still waiting
 * for its duration: a pool that is hot on memory is not shrunk for being
 * cool on CPU.
 *
 * The capacity advice at the end (ctl_capacity_*) answers the scaling
 * API's /recommendations from the same pool figures. */
#include "control/ctl_autoscale.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int add_rule(ctl_policy *p, ctl_metric m, ctl_op op, double v, uint64_t for_us, int step,
                    const char *origin, char *err, size_t errlen)
{
    if (p->nrules >= CTL_MAX_RULES) {
        snprintf(err, errlen, "%s: more than %d threshold rules", origin, CTL_MAX_RULES);
        return -1;
    }
    ctl_rule *r = &p->rules[p->nrules++];
    r->metric = m;
    r->op = op;
    r->value = v;
    r->for_us = for_us;
    r->step = step > 0 ? step : 1;
    snprintf(r->origin, sizeof r->origin, "%s", origin);
    return 0;
}

int ctl_policy_init(ctl_policy *p, const ctl_autoscale_cfg *c, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->tolerance = c->tolerance;
    p->target[CTL_M_CPU] = c->target.cpu;
    p->target[CTL_M_MEMORY] = c->target.memory;
    p->target[CTL_M_P95] = (double)c->target.p95 / 1000.0;
    p->target[CTL_M_RPS] = c->target.rps;
    p->target[CTL_M_IN_FLIGHT] = c->target.in_flight;
    p->target[CTL_M_ERROR_RATE] = c->target.error_rate;
    p->target[CTL_M_CONNECTIONS] = c->target.connections;
    ctl_queue_state_init(&p->queue, &c->queue);

    const struct { double v; ctl_metric m; ctl_op op; const char *name; } ca[] = {
        { c->cpu_scale_up, CTL_M_CPU, CTL_OP_ABOVE, "cpu_scale_up" },
        { c->cpu_scale_down, CTL_M_CPU, CTL_OP_BELOW, "cpu_scale_down" },
        { c->memory_scale_up, CTL_M_MEMORY, CTL_OP_ABOVE, "memory_scale_up" },
        { c->memory_scale_down, CTL_M_MEMORY, CTL_OP_BELOW, "memory_scale_down" },
        { c->response_time_scale_up, CTL_M_P95, CTL_OP_ABOVE, "response_time_scale_up" },
        { c->connections_scale_up, CTL_M_CONNECTIONS, CTL_OP_ABOVE, "connections_scale_up" },
        { c->connections_scale_down, CTL_M_CONNECTIONS, CTL_OP_BELOW, "connections_scale_down" },
    };
    for (size_t i = 0; i < sizeof ca / sizeof ca[0]; i++) {
        if (ca[i].v <= 0)
            continue;
        uint64_t dur = ca[i].op == CTL_OP_ABOVE ? c->threshold_up_for : c->threshold_down_for;
        if (add_rule(p, ca[i].m, ca[i].op, ca[i].v, dur, c->threshold_step, ca[i].name, err, errlen) < 0)
            return -1;
    }
    for (size_t i = 0; i < c->nrules; i++) {
        const ctl_rule_cfg *r = &c->rules[i];
        char origin[24];
        snprintf(origin, sizeof origin, "rules[%u]", (unsigned)(i % 100000));
        if (r->metric < 0 || r->metric >= CTL_M__COUNT) {
            snprintf(err, errlen, "%s.metric: unknown metric", origin);
            return -1;
        }
        if (add_rule(p, (ctl_metric)r->metric, r->op == CTL_OP_BELOW ? CTL_OP_BELOW : CTL_OP_ABOVE,
                     r->value, r->for_us, r->step, origin, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* ceil(), kept inside int: a scrape can hold any number, +Inf included. */
static int replicas_of(double x)
{
    if (!(x < 1e6))
        return 1000000;
    return x > 0 ? (int)ceil(x) : 0;
}

int ctl_target_replicas(const ctl_inst_metrics *m, size_t n, ctl_metric metric, double target,
                        double tolerance, int current, uint64_t now_us, uint64_t warmup_us,
                        double *usage_out)
{
    double sum = 0;
    int ready = 0, unready = 0, missing = 0;
    for (size_t i = 0; i < n; i++) {
        if (ctl_inst_warming(&m[i], now_us, warmup_us))
            unready++;
        else if (m[i].missing || isnan(m[i].v[metric]))
            missing++;
        else {
            sum += m[i].v[metric];
            ready++;
        }
    }
    if (usage_out)
        *usage_out = ready ? sum / ready : NAN;
    if (!ready || !(target > 0))
        return CTL_NO_REC;
    double ratio = sum / ready / target;
    bool up_with_unready = unready > 0 && ratio > 1.0;
    /* Unlike HPA, warming instances are not simply dropped when scaling
     * down: they already take a share of the load, so the ready ones look
     * idler than the pool is, and dropping them would shrink the pool right
     * after growing it (HPA hides this behind its 5 min window). They count
     * at 100 % of target, like missing ones. */
    if (!up_with_unready && !missing && !(unready && ratio < 1.0)) {
        if (fabs(1.0 - ratio) <= tolerance)
            return current;
        return replicas_of(ratio * ready);
    }
    /* fill in the unknowns on the conservative side and look again */
    double nsum = sum;
    int count = ready;
    if (missing) {
        if (ratio < 1.0)
            nsum += target * missing;
        count += missing;                        /* scaling up: they add 0 */
    }
    if (up_with_unready)
        count += unready;                        /* at 0 */
    else if (unready && ratio < 1.0) {
        nsum += target * unready;                /* see below */
        count += unready;
    }
    double nratio = nsum / count / target;
    if (fabs(1.0 - nratio) <= tolerance || (ratio < 1.0 && nratio > 1.0) ||
        (ratio > 1.0 && nratio < 1.0))
        return current;
    int want = replicas_of(nratio * count);
    if ((nratio < 1.0 && want > current) || (nratio > 1.0 && want < current))
        return current;
    return want;
}

/* The value a rule compares: NAN when it cannot be judged. */
static double rule_value(const ctl_rule *r, const ctl_inst_metrics *m, size_t n,
                         const ctl_pool_metrics *pool, uint64_t now_us, uint64_t warmup_us)
{
    if (r->metric == CTL_M_P95)
        return pool->missing && r->op == CTL_OP_BELOW ? NAN : pool->p95_ms;
    if (r->metric == CTL_M_ERROR_RATE)
        return pool->missing && r->op == CTL_OP_BELOW ? NAN : pool->error_rate;
    double sum = 0;
    int cnt = 0, missing = 0, warming = 0;
    for (size_t i = 0; i < n; i++) {
        if (ctl_inst_warming(&m[i], now_us, warmup_us)) {
            warming++;
            continue;
        }
        if (m[i].missing || isnan(m[i].v[r->metric]))
            missing++;
        else {
            sum += m[i].v[r->metric];
            cnt++;
        }
    }
    if (!cnt || ((missing || warming) && r->op == CTL_OP_BELOW))
        return NAN;
    return sum / (cnt + missing);                /* missing count as 0 */
}

static bool beyond(const ctl_rule *r, double v)
{
    if (isnan(v))
        return false;
    return r->op == CTL_OP_ABOVE ? v > r->value : v < r->value;
}

size_t ctl_policy_eval(ctl_policy *p, const ctl_inst_metrics *m, size_t n,
                       const ctl_pool_metrics *pool, int current, uint64_t now_us,
                       uint64_t warmup_us, ctl_rec *recs)
{
    size_t nr = 0;
    for (int k = 0; k < CTL_M__COUNT; k++) {
        if (!(p->target[k] > 0))
            continue;
        ctl_rec *r = &recs[nr++];
        double usage;
        r->replicas = ctl_target_replicas(m, n, (ctl_metric)k, p->target[k], p->tolerance, current,
                                          now_us, warmup_us, &usage);
        r->value = usage;
        r->target = p->target[k];
        snprintf(r->policy, sizeof r->policy, "target:%s", ctl_metric_name((ctl_metric)k));
        if (r->replicas == CTL_NO_REC)
            snprintf(r->note, sizeof r->note, "no ready instance reports %s",
                     ctl_metric_name((ctl_metric)k));
        else
            snprintf(r->note, sizeof r->note, "average %.4g against target %.4g", usage, p->target[k]);
    }

    double val[CTL_MAX_RULES];
    bool up_holds = false;
    for (size_t i = 0; i < p->nrules; i++) {
        const ctl_rule *rule = &p->rules[i];
        val[i] = rule_value(rule, m, n, pool, now_us, warmup_us);
        bool now_beyond = beyond(rule, val[i]);
        if (now_beyond && !p->holding[i])
            p->since_us[i] = now_us;
        p->holding[i] = now_beyond;
        if (now_beyond && rule->op == CTL_OP_ABOVE)
            up_holds = true;
    }
    for (size_t i = 0; i < p->nrules; i++) {
        const ctl_rule *rule = &p->rules[i];
        ctl_rec *r = &recs[nr++];
        snprintf(r->policy, sizeof r->policy, "rule:%s", rule->origin);
        r->value = val[i];
        r->target = rule->value;
        r->replicas = CTL_NO_REC;
        const char *what = ctl_metric_name(rule->metric);
        const char *cmp = rule->op == CTL_OP_ABOVE ? ">" : "<";
        if (!p->holding[i]) {
            snprintf(r->note, sizeof r->note, "%s %.4g, not %s %.4g", what, val[i], cmp, rule->value);
            continue;
        }
        uint64_t held = now_us - p->since_us[i];
        if (held < rule->for_us) {
            snprintf(r->note, sizeof r->note, "%s %s %.4g for %.0fs of %.0fs", what, cmp, rule->value,
                     (double)held / 1e6, (double)rule->for_us / 1e6);
            continue;
        }
        if (rule->op == CTL_OP_BELOW && up_holds) {
            snprintf(r->note, sizeof r->note, "%s %s %.4g, but a scale-out condition holds",
                     what, cmp, rule->value);
            continue;
        }
        r->replicas = rule->op == CTL_OP_ABOVE ? current + rule->step : current - rule->step;
        if (r->replicas < 0)
            r->replicas = 0;
        snprintf(r->note, sizeof r->note, "%s %s %.4g for %.0fs", what, cmp, rule->value,
                 (double)held / 1e6);
    }
    return nr;
}

/* Linear in CPU is the planning assumption of the seeds' capacity tables
 * (users per instance); it overestimates near saturation, which the
 * target's own margin (70 %, not 100 %) absorbs. */
void ctl_capacity_estimate(const ctl_pool_metrics *p, double target_cpu, ctl_capacity *out)
{
    out->rps_per_instance = out->rps_per_instance_at_target = out->headroom_rps = NAN;
    out->needed_now = -1;
    int n = p->ready - p->missing;
    if (n <= 0 || isnan(p->total_rps))
        return;
    out->rps_per_instance = p->total_rps / n;
    double cpu = p->avg[CTL_M_CPU];
    if (!(cpu > 0) || !(target_cpu > 0) || !(out->rps_per_instance > 0))
        return;
    out->rps_per_instance_at_target = out->rps_per_instance * target_cpu / cpu;
    out->headroom_rps = out->rps_per_instance_at_target * n - p->total_rps;
    out->needed_now = ctl_capacity_for(out, p->total_rps, 0);
}

int ctl_capacity_for(const ctl_capacity *c, double rps, double headroom)
{
    if (!(c->rps_per_instance_at_target > 0) || isnan(rps) || rps < 0)
        return -1;
    int n = replicas_of(rps * (1 + (headroom > 0 ? headroom : 0)) / c->rps_per_instance_at_target);
    return n ? n : 1;
}
