/* ctl_deploy.c -- the deployer: one deploy at a time on its own thread,
 * its state for the API, the commands an operator posts to it, and the
 * event log (<state_dir>/deploys.jsonl).
 *
 * Locking: d->mu guards everything the API reads or posts (state, the
 * command flags). The deploy thread holds it only to copy or publish;
 * every wait, instance start and gateway call happens outside it, so an
 * API answer never waits on a deploy. Commands are flags the thread polls
 * at least every 100 ms through ctl_dep_wait / ctl_dep_check. */
#include "control/ctl_deploy_int.h"
#include "control/ctl_mgr_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

struct ctl_deployer {
    ctl_mgr          *m;
    const ctl_config *c;
    atomic_int        active;     /* the autoscaler's view: started, not yet ended */
    ctl_history      *hist;       /* NULL without a state dir */
    pthread_mutex_t   mu;
    pthread_cond_t    cv;
    pthread_t         th;
    bool              thread_on, running, quit;
    bool              paused, want_rollback, want_promote;
    unsigned          seq;
    char              id[32];
    char              phase[32];
    char              result[16];   /* running | succeeded | failed | rolled_back | aborted */
    char              last[320];
    char              reason[320];  /* why it rolled back, for the final event */
    char              from_version[64];
    int               done, total, weight;
    uint64_t          started_us, ended_us;
    ctl_dep_spec      spec;
    ctl_dep_run       run;
};

ctl_deployer *ctl_deploy_new(ctl_mgr *m, const ctl_config *c, char *err, size_t errlen)
{
    ctl_deployer *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->m = m;
    d->c = c;
    if (c->state_dir && c->state_dir[0]) {
        d->hist = ctl_history_open(c->state_dir, "deploys", 1000, err, errlen);
        if (!d->hist) {
            free(d);
            return NULL;
        }
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(d->result, sizeof d->result, "none");
    return d;
}

static void run_free(ctl_deployer *d)
{
    cfg_free(&ctl_template_schema, &d->run.tmpl);
    cfg_free(&ctl_template_schema, &d->run.old_tmpl);
    ctl_dep_spec_free(&d->spec);
    memset(&d->run, 0, sizeof d->run);
}

static void join_thread(ctl_deployer *d)
{
    if (!d->thread_on)
        return;
    pthread_join(d->th, NULL);
    d->thread_on = false;
}

void ctl_deploy_free(ctl_deployer *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    d->quit = true;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    join_thread(d);
    run_free(d);
    ctl_history_close(d->hist);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d);
}

const ctl_config *ctl_deploy_config(ctl_deployer *d)
{
    return d->c;
}

bool ctl_deploy_busy(ctl_deployer *d, const ctl_config *c)
{
    return d->c == c && atomic_load(&d->active) > 0;
}

bool ctl_deploy_running(ctl_deployer *d)
{
    pthread_mutex_lock(&d->mu);
    bool r = d->running;
    pthread_mutex_unlock(&d->mu);
    return r;
}

/* ---- Waits and commands -------------------------------------------------- */

static ctl_dep_wake pending_locked(ctl_deployer *d)
{
    if (d->quit)
        return CTL_W_ABORT;
    if (d->want_rollback)
        return CTL_W_ROLLBACK;
    return CTL_W_OK;
}

ctl_dep_wake ctl_dep_wait(ctl_dep_run *r, uint64_t us)
{
    ctl_deployer *d = r->d;
    uint64_t left = us;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        ctl_dep_wake w = pending_locked(d);
        if (w != CTL_W_OK)
            break;
        if (d->want_promote) {
            d->want_promote = false;
            pthread_mutex_unlock(&d->mu);
            return CTL_W_PROMOTE;
        }
        if (!d->paused && left == 0)
            break;
        uint64_t slice = d->paused || left > 100000u ? 100000u : left;
        uint64_t t0 = ctl_mono_us(), until = t0 + slice;
        struct timespec ts = { (time_t)(until / 1000000u), (long)(until % 1000000u) * 1000 };
        bool was_paused = d->paused;
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
        if (!was_paused) {
            uint64_t el = ctl_mono_us() - t0;
            left = el >= left ? 0 : left - el;
        }
    }
    ctl_dep_wake w = pending_locked(d);
    pthread_mutex_unlock(&d->mu);
    return w;
}

ctl_dep_wake ctl_dep_check(ctl_dep_run *r)
{
    ctl_dep_wake w = ctl_dep_wait(r, 0);
    if (w == CTL_W_PROMOTE) {   /* not consumed here: put it back */
        pthread_mutex_lock(&r->d->mu);
        r->d->want_promote = true;
        pthread_mutex_unlock(&r->d->mu);
        return CTL_W_OK;
    }
    return w;
}

int ctl_deploy_command(ctl_deployer *d, ctl_dep_cmd cmd, char *err, size_t errlen)
{
    static const char *const names[] = { "pause", "resume", "promote", "rollback" };
    pthread_mutex_lock(&d->mu);
    int rc = 0;
    if (!d->running) {
        snprintf(err, errlen, "no deploy is running");
        rc = -1;
    } else {
        switch (cmd) {
        case CTL_DEP_CMD_PAUSE:    d->paused = true; break;
        case CTL_DEP_CMD_RESUME:   d->paused = false; break;
        case CTL_DEP_CMD_PROMOTE:  d->want_promote = true; d->paused = false; break;
        case CTL_DEP_CMD_ROLLBACK: d->want_rollback = true; break;
        }
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    if (rc == 0) {
        json_t *x = json_pack("{s:s}", "command", names[cmd]);
        ctl_dep_event(&d->run, "command", x, "%s requested through the API", names[cmd]);
    }
    return rc;
}

/* ---- Events and state ---------------------------------------------------- */

void ctl_dep_event(ctl_dep_run *r, const char *kind, json_t *extra, const char *fmt, ...)
{
    ctl_deployer *d = r->d;
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&d->mu);
    char kbuf[48];
    snprintf(kbuf, sizeof kbuf, "deploy_%s", kind);
    json_t *j = json_pack("{s:f, s:s, s:s, s:s, s:s, s:s, s:s}",
                          "time", (double)ctl_wall_us() / 1e6, "kind", kbuf, "deploy", d->id,
                          "strategy", ctl_dep_strategy_name(d->spec.strategy),
                          "version", d->spec.version, "from_version", d->from_version,
                          "message", msg);
    if (j && extra)
        json_object_update(j, extra);
    /* "time", "kind" and "reason" are what the scaling events carry too,
     * so one timeline (the dashboard) can show both. */
    const char *why = json_string_value(json_object_get(extra, "reason"));
    if (why)
        snprintf(d->reason, sizeof d->reason, "%s", why);
    else if (j)
        json_object_set_new(j, "reason", json_string(msg));
    snprintf(d->last, sizeof d->last, "%s", msg);
    pthread_mutex_unlock(&d->mu);
    json_decref(extra);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    log_info("deploy %s: %s", kbuf, msg);
    if (text && d->hist) {
        char err[256];
        if (ctl_history_append(d->hist, text, strlen(text), err, sizeof err) < 0)
            log_warn("deploy history: %s", err);
    }
    free(text);
}

void ctl_dep_phase(ctl_dep_run *r, const char *phase)
{
    pthread_mutex_lock(&r->d->mu);
    snprintf(r->d->phase, sizeof r->d->phase, "%s", phase);
    pthread_mutex_unlock(&r->d->mu);
}

void ctl_dep_progress(ctl_dep_run *r, int done, int total, int weight)
{
    pthread_mutex_lock(&r->d->mu);
    r->d->done = done;
    r->d->total = total;
    r->d->weight = weight;
    pthread_mutex_unlock(&r->d->mu);
}

void ctl_deploy_current_json(ctl_deployer *d, buf *out)
{
    pthread_mutex_lock(&d->mu);
    json_t *j;
    if (d->seq == 0) {
        j = json_pack("{s:s}", "state", "none");
    } else {
        const ctl_dep_spec *s = &d->spec;
        j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:s, s:i, s:i, s:i, s:f, s:o}",
                      "id", d->id, "strategy", ctl_dep_strategy_name(s->strategy),
                      "version", s->version, "from_version", d->from_version,
                      "state", d->result, "phase", d->phase, "running", d->running,
                      "paused", d->paused, "message", d->last, "done", d->done,
                      "total", d->total, "weight", d->weight,
                      "started_at", (double)d->started_us / 1e6,
                      "ended_at", d->ended_us ? json_real((double)d->ended_us / 1e6) : json_null());
        if (j && d->reason[0])
            json_object_set_new(j, "reason", json_string(d->reason));
        if (j && s->strategy == CTL_DEP_CANARY) {
            json_t *steps = json_array();
            for (int i = 0; i < s->nsteps; i++)
                json_array_append_new(steps, json_integer(s->steps[i]));
            json_object_set_new(j, "steps", steps);
        }
        if (j && s->strategy != CTL_DEP_ROLLING)
            json_object_set_new(j, "target_pool", json_string(d->run.next_pool));
    }
    pthread_mutex_unlock(&d->mu);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    buf_append_str(out, text ? text : "{\"state\":\"unknown\"}");
    free(text);
}

void ctl_deploy_history_json(ctl_deployer *d, size_t limit, buf *out)
{
    buf_append_str(out, "{\"events\":");
    if (d->hist)
        ctl_history_query(d->hist, limit, out);
    else
        buf_append_str(out, "[]");
    buf_append_str(out, "}");
}

/* ---- The deploy thread ----------------------------------------------------- */

static void *deploy_main(void *arg)
{
    ctl_deployer *d = arg;
    ctl_dep_run *r = &d->run;
    ctl_dep_event(r, "started", json_pack("{s:s?, s:{s:s, s:s, s:s}}", "target_pool",
                  d->spec.strategy == CTL_DEP_ROLLING ? NULL : r->next_pool,
                  "requested_by", "role", d->spec.by_role, "peer", d->spec.by_peer,
                  "request_id", d->spec.by_request_id),
                  "%s deploy of version %s started", ctl_dep_strategy_name(d->spec.strategy),
                  d->spec.version);
    int rc;
    switch (d->spec.strategy) {
    case CTL_DEP_BLUEGREEN: rc = ctl_dep_bluegreen(r); break;
    case CTL_DEP_CANARY:    rc = ctl_dep_canary(r); break;
    default:                rc = ctl_dep_rolling(r); break;
    }
    /* 0 succeeded, 1 rolled back on request, 2 failed and rolled back,
     * -1 aborted (shutdown) or failed without a way back. */
    const char *res = rc == 0 ? "succeeded" : rc == 1 ? "rolled_back" : rc == 2 ? "failed" : "aborted";
    /* The last event is written before the deploy reads as ended, so a
     * client that saw it end finds the whole story in the history. */
    pthread_mutex_lock(&d->mu);
    char last[320];
    snprintf(last, sizeof last, "%s", d->reason[0] ? d->reason : d->last);
    pthread_mutex_unlock(&d->mu);
    ctl_dep_event(r, res, NULL, "deploy %s: %s", res, last);
    atomic_fetch_sub(&d->active, 1);
    pthread_mutex_lock(&d->mu);
    snprintf(d->result, sizeof d->result, "%s", res);
    snprintf(d->phase, sizeof d->phase, "done");
    snprintf(d->last, sizeof d->last, "%s", last);
    d->running = false;
    d->paused = d->want_promote = d->want_rollback = false;
    d->ended_us = ctl_wall_us();
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* The target template: the current one with the spec's overrides. */
static int build_templates(ctl_deployer *d, ctl_dep_spec *s, char *err, size_t errlen)
{
    ctl_dep_run *r = &d->run;
    pthread_mutex_lock(&d->m->mu);
    int rc = cfg_copy(&ctl_template_schema, &r->old_tmpl, &d->m->tmpl);
    pthread_mutex_unlock(&d->m->mu);
    if (rc < 0 || cfg_copy(&ctl_template_schema, &r->tmpl, &r->old_tmpl) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ctl_template_cfg *t = &r->tmpl;
    free(t->version);
    t->version = strdup(s->version);
    if (s->command) {
        free(t->command);
        t->command = strdup(s->command);
    }
    if (s->env) {
        for (size_t i = 0; i < t->nenv; i++)
            free(t->env[i]);
        free(t->env);
        t->env = calloc(s->nenv + 1, sizeof *t->env);
        for (size_t i = 0; t->env && i < s->nenv; i++)
            t->env[i] = strdup(s->env[i]);
        t->nenv = t->env ? s->nenv : 0;
    }
    if (s->ready_path[0]) {
        free(t->ready_path);
        t->ready_path = strdup(s->ready_path);
    }
    snprintf(d->from_version, sizeof d->from_version, "%s",
             r->old_tmpl.version ? r->old_tmpl.version : "");
    return 0;
}

int ctl_deploy_begin(ctl_deployer *d, ctl_dep_spec *spec, int *http_status,
                     char *err, size_t errlen)
{
    *http_status = 400;
    if (spec->strategy != CTL_DEP_ROLLING && !(d->c->gateway && d->c->gateway[0])) {
        snprintf(err, errlen, "strategy: %s needs the control plane's gateway (--gateway URL)",
                 ctl_dep_strategy_name(spec->strategy));
        ctl_dep_spec_free(spec);
        return -1;
    }
    const char *pool = d->c->pool ? d->c->pool : "default";
    if (spec->strategy != CTL_DEP_ROLLING && strcmp(spec->target_pool, pool) == 0) {
        snprintf(err, errlen, "target_pool: expected a pool other than the control pool '%s'", pool);
        ctl_dep_spec_free(spec);
        return -1;
    }
    pthread_mutex_lock(&d->mu);
    if (d->running || d->quit) {
        pthread_mutex_unlock(&d->mu);
        *http_status = 409;
        snprintf(err, errlen, d->quit ? "the control plane is stopping"
                 : "deploy %s is running; roll it back or wait for it", d->id);
        ctl_dep_spec_free(spec);
        return -1;
    }
    d->running = true;   /* claims the slot; the old thread is done */
    pthread_mutex_unlock(&d->mu);
    join_thread(d);

    /* The last deploy's spec and templates go now, not when it ended:
     * GET /api/v1/deploys/current shows it until then. */
    ctl_dep_run *r = &d->run;
    pthread_mutex_lock(&d->mu);
    run_free(d);
    d->spec = *spec;
    memset(spec, 0, sizeof *spec);
    *r = (ctl_dep_run){ .d = d, .m = d->m, .c = d->c, .s = &d->spec };
    if (d->spec.target_pool[0])
        snprintf(r->next_pool, sizeof r->next_pool, "%s", d->spec.target_pool);
    else
        snprintf(r->next_pool, sizeof r->next_pool, "%s-next", pool);
    pthread_mutex_unlock(&d->mu);
    if (d->c->gateway && d->c->gateway[0]) {
        if (ctl_gw_init(&r->gw, d->c->gateway, d->c->gateway_token, err, errlen) < 0)
            goto fail;
        r->has_gw = true;
    }
    if (build_templates(d, &d->spec, err, errlen) < 0)
        goto fail;

    pthread_mutex_lock(&d->mu);
    d->seq++;
    snprintf(d->id, sizeof d->id, "d-%llu-%u",
             (unsigned long long)(ctl_wall_us() / 1000000u), d->seq);
    snprintf(d->phase, sizeof d->phase, "starting");
    snprintf(d->result, sizeof d->result, "running");
    d->last[0] = d->reason[0] = '\0';
    d->done = d->total = d->weight = 0;
    d->paused = d->want_promote = d->want_rollback = false;
    d->started_us = ctl_wall_us();
    d->ended_us = 0;
    pthread_mutex_unlock(&d->mu);
    atomic_fetch_add(&d->active, 1);
    if (pthread_create(&d->th, NULL, deploy_main, d) != 0) {
        atomic_fetch_sub(&d->active, 1);
        snprintf(err, errlen, "cannot start the deploy thread");
        *http_status = 500;
        goto fail;
    }
    d->thread_on = true;
    *http_status = 202;
    return 0;
fail:
    pthread_mutex_lock(&d->mu);
    run_free(d);
    d->running = false;
    pthread_mutex_unlock(&d->mu);
    return -1;
}
