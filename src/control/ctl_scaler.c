/* ctl_scaler.c -- the scaling decision, one call per check interval.
 *
 * Order of the steps, each one narrowing the last (as HPA's
 * normalizeDesiredReplicasWithBehaviors does):
 *   1. every policy recommends; the largest wins, clamped to [min, max];
 *   2. stabilization: the recommendation is remembered with its time; a
 *      scale-in goes only as low as the highest recommendation over the
 *      scale-in window, a scale-out only as high as the lowest over the
 *      scale-out window (0 s by default: react at once);
 *   3. growth cap: one step reaches at most max(current * factor,
 *      current + add), and sheds at most max_shrink_step when set;
 *   4. bounds: below min or above max is corrected at once, cooldown or not;
 *   5. cooldowns: no scale-out within scale_out_cooldown of the last
 *      scale-out; no scale-in within scale_in_cooldown of any scaling. A
 *      scale-out is never delayed by an earlier scale-in: under load,
 *      capacity comes first.
 * Zero (min_instances 0) is special at both ends, as in KEDA: from zero,
 * any recommendation above 0 (activation) starts one instance at once,
 * past the scale-out stabilization window and cooldown, since nothing
 * serves at all; it starts no cooldown either, so the next check sizes the
 * pool from the recommendation. One first: instances that start together
 * share the CPU, and the first task waits for the first instance only;
 * down to zero only when the queue policy says the queue stayed empty for
 * its idle_to_zero (deactivation), which then also passes the scale-in
 * window, cooldown and step cap (idle_to_zero is that wait). Any other way
 * down stops at 1: without a queue policy nothing would bring the service
 * back, and the queue's own wait must not be cut short by another policy.
 *
 * Warm-up is applied upstream: instances not yet ready + warmup are out of
 * the policies' averages (ctl_inst_warming), so capacity that is still
 * starting is not counted twice.
 *
 * Flapping is prevented by the tolerance (no move for small deviations),
 * the stabilization window (one low sample cannot shrink the pool) and the
 * cooldowns. Every step fills an event; `record` is set for changes and for
 * the first step of each kind of hold, so the history is not one line per
 * check. The recommendation window is a fixed ring: nothing is allocated
 * per step. */
#include "control/ctl_autoscale.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_RING 4096          /* 300 s at 0.1 s checks still fits */

enum { HOLD_NONE, HOLD_DISABLED, HOLD_STAB_IN, HOLD_STAB_OUT, HOLD_COOL_OUT, HOLD_COOL_IN };

typedef struct rec_entry {
    uint64_t t;
    int      n;
} rec_entry;

struct ctl_scaler {
    ctl_autoscale_cfg cfg;     /* scalars only: rules is NULL (they live in policy) */
    ctl_policy policy;
    bool       enabled;
    int        desired;
    bool       have_out, have_in;
    uint64_t   last_out_us, last_in_us;
    int        last_hold;
    size_t     head, len;      /* ring of past recommendations, oldest at head */
    rec_entry  ring[REC_RING];
};

const char *ctl_event_kind_name(ctl_event_kind k)
{
    switch (k) {
    case CTL_EV_SCALE_OUT: return "scale_out";
    case CTL_EV_SCALE_IN: return "scale_in";
    case CTL_EV_HOLD: return "hold";
    case CTL_EV_MANUAL: return "manual";
    case CTL_EV_NONE: break;
    }
    return "none";
}

static int clamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int apply_config(ctl_scaler *s, const ctl_autoscale_cfg *c, char *err, size_t errlen)
{
    if (c->min_instances > c->max_instances) {
        snprintf(err, errlen, "max_instances: %d is below min_instances (%d)", c->max_instances,
                 c->min_instances);
        return -1;
    }
    ctl_policy p;
    if (ctl_policy_init(&p, c, err, errlen) < 0)
        return -1;
    /* keep the rule timers of rules that did not change */
    for (size_t i = 0; i < p.nrules && i < s->policy.nrules; i++) {
        const ctl_rule *a = &p.rules[i], *b = &s->policy.rules[i];
        if (a->metric == b->metric && a->op == b->op && a->value == b->value) {
            p.holding[i] = s->policy.holding[i];
            p.since_us[i] = s->policy.since_us[i];
        }
    }
    if (p.queue.on && s->policy.queue.on) {   /* the idle streak goes on */
        p.queue.idle = s->policy.queue.idle;
        p.queue.idle_since = s->policy.queue.idle_since;
        p.queue.zero = s->policy.queue.zero;
    }
    s->policy = p;
    s->cfg = *c;
    s->cfg.rules = NULL;
    s->cfg.nrules = 0;
    if (s->cfg.scale_cooldown) {
        s->cfg.scale_out_cooldown = s->cfg.scale_cooldown;
        s->cfg.scale_in_cooldown = s->cfg.scale_cooldown;
    }
    s->enabled = c->enabled;
    return 0;
}

ctl_scaler *ctl_scaler_new(const ctl_autoscale_cfg *c, int initial, char *err, size_t errlen)
{
    ctl_scaler *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (apply_config(s, c, err, errlen) < 0) {
        free(s);
        return NULL;
    }
    s->desired = clamp(initial, c->min_instances, c->max_instances);
    return s;
}

void ctl_scaler_free(ctl_scaler *s)
{
    free(s);
}

int ctl_scaler_set_config(ctl_scaler *s, const ctl_autoscale_cfg *c, char *err, size_t errlen)
{
    return apply_config(s, c, err, errlen);
}

void ctl_scaler_set_enabled(ctl_scaler *s, bool on) { s->enabled = on; }
bool ctl_scaler_enabled(const ctl_scaler *s) { return s->enabled; }
int  ctl_scaler_desired(const ctl_scaler *s) { return s->desired; }
void ctl_scaler_sync(ctl_scaler *s, int n) { s->desired = n; s->len = 0; s->last_hold = HOLD_NONE; }

void ctl_scaler_cooldowns(const ctl_scaler *s, uint64_t now_us, uint64_t *out_left,
                          uint64_t *in_left)
{
    uint64_t last_any = s->last_out_us > s->last_in_us ? s->last_out_us : s->last_in_us;
    *out_left = s->have_out && now_us - s->last_out_us < s->cfg.scale_out_cooldown
              ? s->last_out_us + s->cfg.scale_out_cooldown - now_us : 0;
    *in_left = (s->have_out || s->have_in) && now_us - last_any < s->cfg.scale_in_cooldown
             ? last_any + s->cfg.scale_in_cooldown - now_us : 0;
}

static void ring_push(ctl_scaler *s, uint64_t now, int n, uint64_t keep_us)
{
    while (s->len && (now - s->ring[s->head].t > keep_us || s->len == REC_RING)) {
        s->head = (s->head + 1) % REC_RING;
        s->len--;
    }
    s->ring[(s->head + s->len) % REC_RING] = (rec_entry){ now, n };
    s->len++;
}

/* Lowest and highest recommendation within `win` of now. */
static void ring_range(const ctl_scaler *s, uint64_t now, uint64_t win, int *lo, int *hi)
{
    for (size_t k = 0; k < s->len; k++) {
        const rec_entry *e = &s->ring[(s->head + k) % REC_RING];
        if (now - e->t > win)
            continue;
        if (e->n < *lo) *lo = e->n;
        if (e->n > *hi) *hi = e->n;
    }
}

static void begin_event(ctl_scaler *s, ctl_decision *out, uint64_t now_us)
{
    ctl_event *e = &out->event;
    e->time_us = now_us;
    e->kind = CTL_EV_NONE;
    e->old_count = e->new_count = s->desired;
    e->recommended = e->stabilized = s->desired;
    e->policy[0] = '\0';
    e->reason[0] = '\0';
    e->nrecs = 0;
    memset(&e->queue, 0, sizeof e->queue);
    out->desired = s->desired;
    out->changed = false;
    out->record = false;
}

static void hold(ctl_scaler *s, ctl_decision *out, int code, const char *fmt, double arg)
    __attribute__((format(printf, 4, 0)));
static void hold(ctl_scaler *s, ctl_decision *out, int code, const char *fmt, double arg)
{
    ctl_event *e = &out->event;
    e->kind = CTL_EV_HOLD;
    size_t l = strlen(e->reason);
    if (l < sizeof e->reason)
        snprintf(e->reason + l, sizeof e->reason - l, fmt, arg);
    out->record = code != s->last_hold;
    s->last_hold = code;
}

void ctl_scaler_step(ctl_scaler *s, const ctl_observation *obs, uint64_t now_us, ctl_decision *out)
{
    const ctl_autoscale_cfg *c = &s->cfg;
    ctl_event *e = &out->event;
    begin_event(s, out, now_us);
    const ctl_inst_metrics *inst = obs ? obs->inst : NULL;
    size_t n = obs ? obs->n : 0;
    ctl_collect_pool(&e->metrics, inst, n, now_us, c->warmup);
    int cur = s->desired;

    /* 1. the largest recommendation */
    e->nrecs = ctl_policy_eval(&s->policy, inst, n, &e->metrics, cur, now_us, c->warmup, e->recs);
    const ctl_rec *qrec = NULL;
    if (s->policy.queue.on) {
        const ctl_queue_reading *q = obs ? obs->queue : NULL;
        if (q)
            e->queue = *q;
        e->queue.on = true;
        ctl_queue_rec(&s->policy.queue, q, cur, now_us, &e->recs[e->nrecs]);
        qrec = &e->recs[e->nrecs++];
    }
    const ctl_rec *win = NULL;
    for (size_t i = 0; i < e->nrecs; i++)
        if (e->recs[i].replicas != CTL_NO_REC && (!win || e->recs[i].replicas > win->replicas))
            win = &e->recs[i];
    int rec = win ? win->replicas : cur;
    rec = clamp(rec, c->min_instances, c->max_instances);
    e->recommended = rec;
    if (win) {
        snprintf(e->policy, sizeof e->policy, "%s", win->policy);
        snprintf(e->reason, sizeof e->reason, "%s: %s", win->policy, win->note);
    } else {
        snprintf(e->reason, sizeof e->reason, "no policy has a recommendation");
    }

    /* 2. stabilization */
    uint64_t keep = c->scale_in_stabilization > c->scale_out_stabilization
                        ? c->scale_in_stabilization : c->scale_out_stabilization;
    ring_push(s, now_us, rec, keep);
    int up_lo = rec, up_hi = rec, dn_lo = rec, dn_hi = rec;
    ring_range(s, now_us, c->scale_out_stabilization, &up_lo, &up_hi);
    ring_range(s, now_us, c->scale_in_stabilization, &dn_lo, &dn_hi);
    int want = cur;
    if (want < up_lo) want = up_lo;
    if (want > dn_hi) want = dn_hi;
    /* zero: activation and deactivation skip the windows (see the top) */
    bool activate = cur == 0 && rec > 0;
    bool deactivate = cur > 0 && c->min_instances == 0 && qrec && s->policy.queue.zero;
    if (activate)
        want = 1;
    if (deactivate) {
        want = 0;
        snprintf(e->policy, sizeof e->policy, "queue");
        snprintf(e->reason, sizeof e->reason, "queue: %s; to zero", qrec->note);
    }
    e->stabilized = want;

    /* 3. growth cap; the floor of 1 */
    if (want == 0 && cur > 0 && !deactivate) {
        want = 1;
        size_t l = strlen(e->reason);
        snprintf(e->reason + l, sizeof e->reason - l, "%s", qrec
                 ? "; zero only once the queue stayed empty for idle_to_zero"
                 : "; never to zero without a queue policy");
    }
    if (want > cur) {
        double f = ceil((double)cur * c->max_growth_factor);
        int cap = (int)(f > 1e6 ? 1e6 : f);
        if (cap < cur + c->max_growth_add) cap = cur + c->max_growth_add;
        if (cap < cur + 1) cap = cur + 1;
        if (want > cap) want = cap;
    } else if (want < cur && !deactivate && c->max_shrink_step > 0 && cur - want > c->max_shrink_step) {
        want = cur - c->max_shrink_step;
    }

    /* 4. bounds, which override everything else */
    bool forced = cur < c->min_instances || cur > c->max_instances;
    want = clamp(want, c->min_instances, c->max_instances);
    if (forced) {
        snprintf(e->reason, sizeof e->reason, "%d is outside [min %d, max %d]", cur,
                 c->min_instances, c->max_instances);
        snprintf(e->policy, sizeof e->policy, "bounds");
    }

    /* 5. enabled, cooldowns */
    uint64_t last_any = s->have_out && s->have_in
                            ? (s->last_out_us > s->last_in_us ? s->last_out_us : s->last_in_us)
                            : s->have_out ? s->last_out_us : s->last_in_us;
    bool have_any = s->have_out || s->have_in;
    if (want == cur) {
        if (rec != cur && e->stabilized == cur)
            hold(s, out, rec < cur ? HOLD_STAB_IN : HOLD_STAB_OUT,
                 rec < cur ? "; scale-in held by the %.0fs stabilization window"
                           : "; held by the %.0fs scale-out stabilization window",
                 (double)(rec < cur ? c->scale_in_stabilization : c->scale_out_stabilization) / 1e6);
        else
            s->last_hold = HOLD_NONE;
        return;
    }
    if (!s->enabled && !forced) {
        hold(s, out, HOLD_DISABLED, "; autoscaling is stopped (%.0f wanted)", (double)want);
        return;
    }
    if (!forced && !activate && want > cur && s->have_out
        && now_us - s->last_out_us < c->scale_out_cooldown) {
        hold(s, out, HOLD_COOL_OUT, "; scale-out cooldown, %.0fs left",
             (double)(s->last_out_us + c->scale_out_cooldown - now_us) / 1e6);
        return;
    }
    if (!forced && !deactivate && want < cur && have_any && now_us - last_any < c->scale_in_cooldown) {
        hold(s, out, HOLD_COOL_IN, "; scale-in cooldown, %.0fs left",
             (double)(last_any + c->scale_in_cooldown - now_us) / 1e6);
        return;
    }
    s->last_hold = HOLD_NONE;
    s->desired = want;
    if (want > cur) {
        if (!activate) {
            s->have_out = true;
            s->last_out_us = now_us;
        }
        e->kind = CTL_EV_SCALE_OUT;
    } else {
        s->have_in = true;
        s->last_in_us = now_us;
        e->kind = CTL_EV_SCALE_IN;
    }
    if (want != e->stabilized && !forced && !(e->stabilized == 0 && want == 1)) {
        size_t l = strlen(e->reason);
        snprintf(e->reason + l, sizeof e->reason - l, "; step limited to %d", want);
    }
    if (activate) {
        size_t l = strlen(e->reason);
        snprintf(e->reason + l, sizeof e->reason - l, "; from zero: 1 at once%s",
                 rec > 1 ? ", the rest at the next check" : "");
    }
    e->new_count = want;
    out->desired = want;
    out->changed = true;
    out->record = true;
}

int ctl_scaler_set_desired(ctl_scaler *s, int n, uint64_t now_us, ctl_decision *out,
                           char *err, size_t errlen)
{
    if (n < s->cfg.min_instances || n > s->cfg.max_instances) {
        snprintf(err, errlen, "desired: %d is outside [min_instances %d, max_instances %d]", n,
                 s->cfg.min_instances, s->cfg.max_instances);
        return -1;
    }
    begin_event(s, out, now_us);
    ctl_event *e = &out->event;
    memset(&e->metrics, 0, sizeof e->metrics);
    for (int k = 0; k < CTL_M__COUNT; k++)
        e->metrics.avg[k] = NAN;
    e->metrics.total_rps = e->metrics.total_in_flight = NAN;
    e->metrics.p95_ms = e->metrics.error_rate = NAN;
    e->kind = CTL_EV_MANUAL;
    e->new_count = e->recommended = e->stabilized = n;
    memset(&e->queue, 0, sizeof e->queue);
    snprintf(e->policy, sizeof e->policy, "manual");
    snprintf(e->reason, sizeof e->reason, "desired count set to %d by the API", n);
    s->desired = n;
    s->have_out = s->have_in = true;
    s->last_out_us = s->last_in_us = now_us;
    s->len = 0;
    s->last_hold = HOLD_NONE;
    out->desired = n;
    out->changed = e->old_count != n;
    out->record = true;
    return 0;
}

/* ---- JSON --------------------------------------------------------------- */

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

void ctl_event_to_json(const ctl_event *e, buf *out)
{
    const ctl_pool_metrics *m = &e->metrics;
    json_t *metrics = json_pack("{s:i,s:i,s:i,s:i}", "instances", m->instances, "ready", m->ready,
                                "warming", m->warming, "missing", m->missing);
    for (int k = 0; k < CTL_M__COUNT; k++)
        json_object_set_new(metrics, ctl_metric_name((ctl_metric)k), num(m->avg[k]));
    json_object_set_new(metrics, "total_rps", num(m->total_rps));
    json_object_set_new(metrics, "total_in_flight", num(m->total_in_flight));
    json_object_set_new(metrics, "pool_p95", num(m->p95_ms));
    json_object_set_new(metrics, "pool_error_rate", num(m->error_rate));
    json_t *recs = json_array();
    for (size_t i = 0; i < e->nrecs; i++) {
        const ctl_rec *r = &e->recs[i];
        json_array_append_new(recs, json_pack("{s:s,s:o,s:o,s:o,s:s}", "policy", r->policy,
                              "replicas", r->replicas == CTL_NO_REC ? json_null() : json_integer(r->replicas),
                              "value", num(r->value), "target", num(r->target), "note", r->note));
    }
    /* time is whole unix seconds: a real would print as 1.76e+09 under
     * the 6-digit precision that keeps the metrics readable. */
    json_t *o = json_pack("{s:I,s:s,s:i,s:i,s:i,s:i,s:s,s:s,s:o,s:o}",
                          "time", (json_int_t)(e->time_us / 1000000u), "kind", ctl_event_kind_name(e->kind),
                          "old", e->old_count, "new", e->new_count, "recommended", e->recommended,
                          "stabilized", e->stabilized, "policy", e->policy, "reason", e->reason,
                          "metrics", metrics, "recommendations", recs);
    if (o && e->queue.on)
        json_object_set_new(o, "queue", json_pack("{s:o,s:o,s:o,s:s?}", "depth", num(e->queue.depth),
                            "waiting", num(e->queue.waiting), "unacked", num(e->queue.reserved),
                            "error", e->queue.error[0] ? e->queue.error : NULL));
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    if (s)
        buf_append_str(out, s);
    else
        buf_append_str(out, "{}");
    free(s);
    json_decref(o);
}
