/* ctl_queue_policy.c -- the queue-depth policy: instances =
 * ceil(depth / per_instance), the scaler clamping it to [min, max].
 *
 * Its memory is how long the queue has been empty. An empty queue keeps one
 * instance until it has stayed empty (nothing waiting, nothing reserved) at
 * every poll for idle_to_zero; then it recommends 0 and sets `zero`, which
 * lets the scaler take a service with min_instances 0 down to nothing
 * (KEDA's cooldownPeriod). An unknown depth (the broker unreachable, a bad
 * answer) recommends the current count: held, never scaled to zero on an
 * error; it also breaks the idle streak, since nobody saw the queue empty
 * meanwhile.
 *
 * Going from zero to one (activation) is the scaler's business: a
 * recommendation above 0 while at 0 is applied at once, past cooldowns and
 * stabilization (ctl_scaler.c). */
#include "control/ctl_autoscale.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void ctl_queue_state_init(ctl_queue_state *st, const ctl_queue_cfg *q)
{
    memset(st, 0, sizeof *st);
    st->on = ctl_queue_source(q) != CTL_QSRC_NONE;
    st->per_instance = q->per_instance > 0 ? q->per_instance : 1;
    st->idle_to_zero = q->idle_to_zero;
}

static int replicas_for(double depth, double per)
{
    double x = ceil(depth / per);
    return !(x < 1e6) ? 1000000 : x > 0 ? (int)x : 0;
}

void ctl_queue_rec(ctl_queue_state *st, const ctl_queue_reading *q, int current, uint64_t now_us,
                   ctl_rec *out)
{
    snprintf(out->policy, sizeof out->policy, "queue");
    out->target = st->per_instance;
    out->value = q ? q->depth : NAN;
    if (!q || isnan(q->depth)) {
        st->idle = st->zero = false;
        out->replicas = current;
        snprintf(out->note, sizeof out->note, "depth unknown (%.50s): holding %d",
                 q && q->error[0] ? q->error : "not polled", current);
        return;
    }
    if (q->depth > 0) {
        st->idle = st->zero = false;
        out->replicas = replicas_for(q->depth, st->per_instance);
        if (isnan(q->reserved))
            snprintf(out->note, sizeof out->note, "depth %.6g / %.4g per instance", q->depth,
                     st->per_instance);
        else
            snprintf(out->note, sizeof out->note, "depth %.6g (%.6g waiting + %.6g unacked) / %.4g "
                     "per instance", q->depth, q->waiting, q->reserved, st->per_instance);
        return;
    }
    if (!st->idle) {
        st->idle = true;
        st->idle_since = now_us;
    }
    uint64_t idle = now_us > st->idle_since ? now_us - st->idle_since : 0;
    if (current == 0 || idle >= st->idle_to_zero) {
        st->zero = true;
        out->replicas = 0;
        snprintf(out->note, sizeof out->note, "empty for %.0fs (idle_to_zero %.0fs)",
                 (double)idle / 1e6, (double)st->idle_to_zero / 1e6);
    } else {
        st->zero = false;
        out->replicas = 1;
        snprintf(out->note, sizeof out->note, "empty for %.0fs of idle_to_zero %.0fs: keeping 1",
                 (double)idle / 1e6, (double)st->idle_to_zero / 1e6);
    }
}
