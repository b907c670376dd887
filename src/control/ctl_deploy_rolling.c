/* ctl_deploy_rolling.c -- the rolling deploy: replace the counted
 * instances batch by batch, never below the current capacity unless
 * max_unavailable allows it.
 *
 * Per batch: start max_surge new instances beside the old ones (uncounted,
 * unregistered), wait until they are ready, register them and wait until
 * the gateway lists them, and only then swap them for old ones in the
 * manager (ctl_instances_replace: the new become counted, the old are
 * drained through the gateway and stopped). max_unavailable old ones are
 * retired at the batch start instead, their counted replacements started
 * at once. After each batch the new instances' error rate as the gateway
 * saw it over `observe` decides whether to go on.
 *
 * Rollback is the same walk backwards: the instances already replaced are
 * replaced again by the old template, surge first, so a rollback drops no
 * request either. */
#include "control/ctl_deploy_int.h"
#include "control/ctl_mgr_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define MAX_INST 256

/* Waits until every id in in[] is registered with the gateway (or there
 * is no gateway). */
static int wait_registered(ctl_dep_run *r, const ctl_dep_inst *in, int n, char *err, size_t errlen)
{
    if (!r->m->has_gw)
        return 0;
    uint64_t deadline = ctl_mono_us() + 15000000u;
    for (;;) {
        int reg = 0;
        pthread_mutex_lock(&r->m->mu);
        for (int i = 0; i < n; i++) {
            const ctl_rec_inst *x = ctl_mgr_find_locked(r->m, in[i].id);
            reg += x && x->info.registered;
        }
        pthread_mutex_unlock(&r->m->mu);
        if (reg == n)
            return 0;
        if (ctl_mono_us() > deadline) {
            snprintf(err, errlen, "%d of %d new instances registered after 15 s", reg, n);
            return -1;
        }
        if (ctl_dep_wait(r, 50000u) == CTL_W_ABORT) {
            snprintf(err, errlen, "the control plane is stopping");
            return -1;
        }
    }
}

/* The new instances' errors over `observe` as the gateway counts them. */
static ctl_verdict observe(ctl_dep_run *r, const ctl_dep_inst *in, int n, json_t **metrics,
                           char *why, size_t whylen)
{
    *metrics = NULL;
    if (!r->has_gw || r->s->observe_us == 0) {
        snprintf(why, whylen, "not observed");
        return CTL_VERDICT_PASS;
    }
    ctl_gwm_scrape *a = calloc(2, sizeof *a);
    if (!a) {
        snprintf(why, whylen, "out of memory");
        return CTL_VERDICT_PASS;
    }
    char err[256];
    ctl_verdict v = CTL_VERDICT_PASS;
    if (ctl_dep_scrape(r, &a[0], NULL, NULL, err, sizeof err) < 0) {
        snprintf(why, whylen, "not observed: %.160s", err);
        goto out;
    }
    if (ctl_dep_wait(r, r->s->observe_us) != CTL_W_OK) {
        snprintf(why, whylen, "observation cut short");
        goto out;
    }
    if (ctl_dep_scrape(r, &a[1], NULL, NULL, err, sizeof err) < 0) {
        snprintf(why, whylen, "not observed: %.160s", err);
        goto out;
    }
    const char *addrs[MAX_INST];
    for (int i = 0; i < n; i++)
        addrs[i] = in[i].address;
    ctl_dep_stats st;
    ctl_dep_stats_of(&st, &a[0], &a[1], r->c->pool, addrs, (size_t)n);
    /* Rolling judges the absolute error rate only: there is no stable
     * pool to compare with, and too little traffic is not a reason to
     * hold a rollout the operator asked for. */
    ctl_dep_spec loose = *r->s;
    loose.max_p95_ms = INFINITY;
    v = ctl_dep_judge(&loose, &st, NULL, why, whylen);
    if (v == CTL_VERDICT_INCONCLUSIVE)
        v = CTL_VERDICT_PASS;
    *metrics = json_pack("{s:f, s:f, s:o}", "requests", st.requests, "errors", st.errors,
                         "error_rate", isnan(st.error_rate) ? json_null() : json_real(st.error_rate));
out:
    free(a);
    return v;
}

typedef struct pair {
    ctl_dep_inst nw, old;
} pair;

/* Replaces every instance in olds with one of template t. Appends each
 * swap to done (when not NULL). Returns 0, or -1 with err; *wake says
 * whether a command or shutdown stopped it. */
static int walk(ctl_dep_run *r, const ctl_dep_inst *olds, int nold, const ctl_template_cfg *t,
                const char *version, bool judge, pair *done, int *ndone, ctl_dep_wake *wake,
                char *err, size_t errlen)
{
    int surge = ctl_dep_amount_of(r->s->max_surge, nold, true);
    int unavail = ctl_dep_amount_of(r->s->max_unavailable, nold, false);
    if (surge <= 0 && unavail <= 0)
        surge = 1;
    *wake = CTL_W_OK;
    int i = 0;
    ctl_dep_inst batch[MAX_INST];
    while (i < nold) {
        if (judge && (*wake = ctl_dep_check(r)) != CTL_W_OK) {
            snprintf(err, errlen, "%s requested", *wake == CTL_W_ROLLBACK ? "rollback" : "stop");
            return -1;
        }
        if (!judge && ctl_dep_check(r) == CTL_W_ABORT) {
            *wake = CTL_W_ABORT;
            snprintf(err, errlen, "the control plane is stopping");
            return -1;
        }
        int ks = surge < nold - i ? surge : nold - i;
        int ku = unavail < nold - i - ks ? unavail : nold - i - ks;
        int nb = 0;
        /* Unavailable first: counted replacements start at once. */
        for (int k = 0; k < ku; k++) {
            const ctl_dep_inst *o = &olds[i + ks + k];
            ctl_dep_inst *in = &batch[nb];
            memset(in, 0, sizeof *in);
            if (ctl_instances_start(r->m, t, version, CTL_START_MANAGED | CTL_START_REGISTER,
                                    in->id, sizeof in->id, err, errlen) < 0)
                return -1;
            ctl_instances_retire(r->m, o->id, err, errlen);
            snprintf(in->version, sizeof in->version, "%s", version);
            done[*ndone] = (pair){ *in, *o };
            ++*ndone;
            nb++;
        }
        if (ks > 0 && ctl_dep_start_batch(r, t, version, ks, &batch[nb], err, errlen) < 0)
            return -1;
        for (int k = 0; k < ku; k++) {
            uint64_t left = r->s->ready_timeout_us;
            char e[256];
            if (ctl_instances_wait_ready(r->m, batch[k].id, left, e, sizeof e) < 0) {
                snprintf(err, errlen, "readiness: %s", e);
                return -1;
            }
        }
        for (int k = 0; k < ks; k++)
            ctl_instances_register(r->m, batch[nb + k].id, false, err, errlen);
        if (wait_registered(r, batch, nb + ks, err, errlen) < 0) {
            for (int k = 0; k < ks; k++)
                ctl_instances_retire(r->m, batch[nb + k].id, err, errlen);
            return -1;
        }
        for (int k = 0; k < ks; k++) {
            const ctl_dep_inst *o = &olds[i + k];
            if (ctl_instances_replace(r->m, batch[nb + k].id, o->id, err, errlen) < 0)
                return -1;
            done[*ndone] = (pair){ batch[nb + k], *o };
            ++*ndone;
        }
        nb += ks;
        char ids[256] = "";
        size_t il = 0;
        for (int k = 0; k < nb && il + sizeof batch[k].id + 2 < sizeof ids; k++) {
            if (k)
                ids[il++] = ',';
            size_t l = strlen(batch[k].id);
            memcpy(ids + il, batch[k].id, l + 1);
            il += l;
        }
        i += ks + ku;
        ctl_dep_progress(r, i, nold, 0);
        if (judge) {
            char why[256];
            json_t *mx;
            ctl_verdict v = observe(r, batch, nb, &mx, why, sizeof why);
            json_t *x = json_pack("{s:i, s:i, s:s, s:s, s:o?}", "done", i, "total", nold,
                                  "instances", ids, "verdict", ctl_verdict_name(v), "metrics", mx);
            ctl_dep_event(r, "batch", x, "%d/%d replaced (%s): %s", i, nold, ids, why);
            if (v == CTL_VERDICT_FAIL) {
                snprintf(err, errlen, "batch %s: %s", ids, why);
                return -1;
            }
        }
        /* Old ones leave before the next batch starts: at most max_surge
         * instances above the count at any time. */
        for (int k = 0; k < ks + ku; k++)
            ctl_instances_wait_gone(r->m, olds[i - ks - ku + k].id,
                                    r->c->drain_timeout_us + r->c->stop_grace_us + 2000000u);
    }
    return 0;
}

int ctl_dep_rolling(ctl_dep_run *r)
{
    static ctl_dep_inst olds[MAX_INST];   /* the deploy thread is the only user */
    static pair done[MAX_INST];
    int nold = (int)ctl_dep_managed(r, olds, MAX_INST);
    char err[512];
    if (ctl_instances_set_template(r->m, &r->tmpl, err, sizeof err) < 0) {
        ctl_dep_event(r, "error", NULL, "%s", err);
        return -1;
    }
    ctl_dep_phase(r, "rolling");
    ctl_dep_progress(r, 0, nold, 0);
    int surge = ctl_dep_amount_of(r->s->max_surge, nold, true);
    int unavail = ctl_dep_amount_of(r->s->max_unavailable, nold, false);
    ctl_dep_event(r, "plan", json_pack("{s:i, s:i, s:i}", "instances", nold, "max_surge", surge,
                                       "max_unavailable", unavail),
                  "replacing %d instance(s), %d above and %d below the count at a time",
                  nold, surge, unavail);
    int ndone = 0;
    ctl_dep_wake wake;
    if (walk(r, olds, nold, &r->tmpl, r->s->version, true, done, &ndone, &wake, err,
             sizeof err) == 0) {
        ctl_dep_phase(r, "done");
        ctl_dep_event(r, "complete", json_pack("{s:i}", "replaced", ndone),
                      "all %d instance(s) run version %s", ndone, r->s->version);
        return 0;
    }
    if (wake == CTL_W_ABORT)
        return -1;
    ctl_dep_event(r, "rollback", json_pack("{s:i, s:s}", "replaced", ndone, "reason", err),
                  "rolling back %d replaced instance(s): %s", ndone, err);
    ctl_dep_phase(r, "rolling_back");
    char e2[512];
    ctl_instances_set_template(r->m, &r->old_tmpl, e2, sizeof e2);
    static ctl_dep_inst back[MAX_INST];
    int nback = 0;
    for (int k = ndone - 1; k >= 0; k--)
        back[nback++] = done[k].nw;
    static pair undone[MAX_INST];
    int nundone = 0;
    const char *oldv = r->old_tmpl.version ? r->old_tmpl.version : "";
    ctl_dep_wake asked = wake;
    if (walk(r, back, nback, &r->old_tmpl, oldv, false, undone, &nundone, &wake, e2,
             sizeof e2) < 0) {
        ctl_dep_event(r, "rollback_failed", NULL, "rollback stopped: %s", e2);
        return -1;
    }
    ctl_dep_event(r, "rolled_back", json_pack("{s:i}", "restored", nundone),
                  "%d instance(s) back on version %s", nundone, oldv);
    return asked == CTL_W_ROLLBACK ? 1 : 2;
}
