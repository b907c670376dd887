/* ctl_autoscaler.c -- the control loop's autoscaler: every check interval
 * scrape each ready instance's /metrics and the gateway's, sample each
 * instance's process tree from /proc (process driver: it has a pid),
 * reduce them to observations, step the scaler, record the event, and
 * hand the count to the instance manager through the ctl_hooks seam.
 *
 * Invariants:
 *  - An instance that cannot be scraped is passed on as missing, never as
 *    idle (the policies treat it conservatively in each direction).
 *  - Starting instances are passed on as not ready, so capacity that is on
 *    its way is not asked for twice (warm-up).
 *  - Stopped (autoscaling disabled), the count belongs to the API: decide
 *    still measures, for the dashboard, but moves nothing. When it is
 *    started again the scaler first adopts the manager's count.
 *  - Every recorded event is in <state_dir>/scaling.jsonl before the count
 *    it announces is applied, so a restart keeps the history.
 *  - With a queue policy the check runs every queue.poll_interval when that
 *    is shorter than check_interval, so a task arriving at an empty
 *    service starts a worker within one poll. A failing poll is logged when
 *    it starts failing and when it recovers, not at every poll. */
#include "control/ctl_as_int.h"
#include "control/ctl_deploy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/ev.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/client.h"

#define RING_MIN     512
#define RING_MAX     20000
#define RING_SPAN_S  900          /* the series covers at least 15 minutes */

uint64_t ctl_as_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void ctl_as_record(ctl_autoscaler *as, const ctl_event *e)
{
    if (!as->hist)
        return;
    buf b;
    buf_init(&b);
    ctl_event_to_json(e, &b);
    char err[256];
    if (ctl_history_append(as->hist, buf_head(&b), b.len, err, sizeof err) < 0)
        log_warn("scaling history: %s", err);
    buf_free(&b);
}

static int scrape_timeout_ms(uint64_t interval_us)
{
    uint64_t ms = interval_us / 2000u;
    return ms < 200 ? 200 : ms > 1000 ? 1000 : (int)ms;
}

/* The previous scrape and sample of id, or NULL (a new instance). */
static const as_prev *prev_of(const ctl_autoscaler *as, const char *id)
{
    for (size_t i = 0; i < as->nprev; i++)
        if (strcmp(as->prev[i].id, id) == 0)
            return &as->prev[i];
    return NULL;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* When a scrape's counters were read: the middle of its fetch. Rates
 * divide counter deltas by the time between two of these; stamping every
 * scrape with the check's start instead would count a slow first scrape
 * (a cold connection, a loaded host, the instances scraped before it)
 * against the interval and skew the rate by the difference. */
static uint64_t scrape_at(uint64_t started)
{
    uint64_t done = ctl_as_now_us();
    return done > started ? started + (done - started) / 2 : started;
}

static void scrape_instance(ctl_autoscaler *as, const ctl_instance_info *in, ctl_scrape *out,
                            uint64_t now, int timeout_ms)
{
    const char *path = as->c->tmpl.metrics_path;
    if (!path || !path[0]) {   /* the service has no metrics: no scrape */
        ctl_scrape_fail(out, now);
        return;
    }
    char url[384], err[256];
    snprintf(url, sizeof url, "http://%s%.256s", in->address, path);
    http_result r;
    http_result_init(&r);
    uint64_t started = ctl_as_now_us();
    if (http_fetch("GET", url, NULL, NULL, 0, timeout_ms, &r, err, sizeof err) < 0
        || r.status != 200
        || ctl_scrape_parse(out, buf_head(&r.body), r.body.len, scrape_at(started), err,
                            sizeof err) < 0)
        ctl_scrape_fail(out, now);
    http_result_free(&r);
}

/* The gateway's view into as->gw_cur; false when there is none. */
static bool scrape_gateway(ctl_autoscaler *as, uint64_t now, int timeout_ms)
{
    const char *gw = as->c->gateway;
    if (!gw || !gw[0])
        return false;
    char url[512], hdr[320] = "", err[256];
    size_t gl = strlen(gw);
    while (gl > 0 && gw[gl - 1] == '/')
        gl--;
    snprintf(url, sizeof url, "%s%.*s/metrics", strstr(gw, "://") ? "" : "http://", (int)gl, gw);
    if (as->c->gateway_token && as->c->gateway_token[0])
        snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", as->c->gateway_token);
    http_result r;
    http_result_init(&r);
    uint64_t started = ctl_as_now_us();
    bool ok = http_fetch("GET", url, hdr[0] ? hdr : NULL, NULL, 0, timeout_ms, &r, err, sizeof err) == 0
              && r.status == 200
              && ctl_gwm_parse(as->gw_cur, buf_head(&r.body), r.body.len, scrape_at(started), err,
                               sizeof err) == 0;
    if (!ok)
        as->gw_cur->ok = false;
    http_result_free(&r);
    return ok;
}

static void ring_push(ctl_autoscaler *as, const as_sample *s)
{
    if (as->ring_len == as->ring_cap) {
        const as_sample *old = &as->ring[as->ring_head];
        /* full but younger than the span (a short interval): grow */
        if (s->t - old->t < RING_SPAN_S && as->ring_cap < RING_MAX) {
            size_t ncap = as->ring_cap * 2 > RING_MAX ? RING_MAX : as->ring_cap * 2;
            as_sample *n = malloc(ncap * sizeof *n);
            if (n) {
                for (size_t k = 0; k < as->ring_len; k++)
                    n[k] = as->ring[(as->ring_head + k) % as->ring_cap];
                free(as->ring);
                as->ring = n;
                as->ring_cap = ncap;
                as->ring_head = 0;
            }
        }
        if (as->ring_len == as->ring_cap) {
            as->ring_head = (as->ring_head + 1) % as->ring_cap;
            as->ring_len--;
        }
    }
    as->ring[(as->ring_head + as->ring_len) % as->ring_cap] = *s;
    as->ring_len++;
}

/* The per-instance CPU and memory gauges of the control plane's /metrics
 * carry the view's numbers (NaN where the API says null); series of
 * instances that left the view are removed. Under mu. */
static void publish_gauges(ctl_autoscaler *as)
{
    if (!as->g_cpu || !as->g_mem)
        return;
    const char *pool = as->c->pool ? as->c->pool : "";
    for (size_t i = 0; i < as->ng_ids; i++) {
        bool still = false;
        for (size_t k = 0; k < as->nview && !still; k++)
            still = strcmp(as->view[k].info.id, as->g_ids[i]) == 0;
        if (!still) {
            const char *lv[] = { pool, as->g_ids[i], NULL };
            metrics_series_remove(as->g_cpu, lv);
            metrics_series_remove(as->g_mem, lv);
        }
    }
    as->ng_ids = 0;
    if (grow((void **)&as->g_ids, &as->g_ids_cap, as->nview, sizeof *as->g_ids) < 0)
        return;
    for (size_t k = 0; k < as->nview; k++) {
        const as_inst *v = &as->view[k];
        const char *lv[] = { pool, v->info.id, NULL };
        metrics_set(metrics_series(as->g_cpu, lv), v->cpu);
        metrics_set(metrics_series(as->g_mem, lv), v->mem);
        snprintf(as->g_ids[as->ng_ids++], sizeof as->g_ids[0], "%s", v->info.id);
    }
}

/* Publishes what this check saw (under mu). */
static void publish(ctl_autoscaler *as, const ctl_instance_info *inst, size_t n,
                    const ctl_pool_metrics *p, uint64_t now)
{
    as->pool = *p;
    int ready = 0;   /* ready as the manager says, warm or not */
    for (size_t i = 0; i < n; i++)
        ready += inst[i].managed && inst[i].state == CTL_INST_READY;
    as_sample s = { (int64_t)(now / 1000000u), p->instances, ready, p->total_rps, p->p95_ms,
                    p->error_rate, p->avg[CTL_M_CPU], p->avg[CTL_M_MEMORY] };
    ring_push(as, &s);
    if (grow((void **)&as->view, &as->view_cap, n, sizeof *as->view) < 0)
        n = as->view_cap;
    for (size_t i = 0; i < n; i++) {
        as_inst *v = &as->view[i];
        v->info = inst[i];
        v->rps = v->p95_ms = v->cpu = v->mem = v->in_flight = NAN;
        v->cpu_src = v->mem_src = CTL_SRC_NONE;
        for (size_t k = 0; k < as->nprev; k++) {     /* as->m is parallel to prev */
            if (strcmp(as->m[k].id, inst[i].id) != 0)
                continue;
            v->rps = as->m[k].v[CTL_M_RPS];
            v->p95_ms = as->m[k].v[CTL_M_P95];
            v->cpu = as->m[k].v[CTL_M_CPU];
            v->mem = as->m[k].v[CTL_M_MEMORY];
            v->in_flight = as->m[k].v[CTL_M_IN_FLIGHT];
            v->cpu_src = as->m[k].cpu_src;
            v->mem_src = as->m[k].mem_src;
            break;
        }
    }
    as->nview = n;
    publish_gauges(as);
    as->checks++;
}

/* A deploy and the autoscaler must not fight: while one runs, scale-in
 * waits (it could retire an instance the deploy is about to replace, or
 * the last one of the old version during a rollback); scale-out goes on
 * -- the deploy switched the template first, so new instances start at
 * the target version -- and says so in its event. */
static void hold_for_deploy(ctl_autoscaler *as, int desired)
{
    ctl_event *ev = &as->dec.event;
    if (as->dec.desired < desired) {
        /* Once per deploy in the history, not once per check. */
        if (as->dec.changed && !as->deploy_hold_noted) {
            as->deploy_hold_noted = true;
            ev->kind = CTL_EV_HOLD;
            snprintf(ev->reason, sizeof ev->reason,
                     "scale-in to %d held: a deploy is running", as->dec.desired);
            ev->new_count = desired;
            as->dec.record = true;
        } else {
            as->dec.record = false;
        }
        as->dec.desired = desired;
        as->dec.changed = false;
        ctl_scaler_sync(as->sc, desired);
    } else if (as->dec.changed) {
        size_t n = strlen(ev->reason);
        snprintf(ev->reason + n, sizeof ev->reason - n, " (during a deploy: at the target version)");
    }
}

/* Polls the queue (without the lock: a copy of its config) into as->qread;
 * NULL when there is no queue policy. */
static const ctl_queue_reading *poll_queue(ctl_autoscaler *as)
{
    ctl_queue_cfg q;
    memset(&q, 0, sizeof q);
    pthread_mutex_lock(&as->mu);
    bool on = ctl_queue_source(&as->cfg.queue) != CTL_QSRC_NONE;
    int crc = on ? cfg_copy(&ctl_queue_schema, &q, &as->cfg.queue) : 0;
    pthread_mutex_unlock(&as->mu);
    if (!on)
        return NULL;
    if (crc < 0 || (!as->qsrc && !(as->qsrc = ctl_queue_src_new()))) {
        memset(&as->qread, 0, sizeof as->qread);
        as->qread.on = true;
        as->qread.depth = as->qread.waiting = as->qread.reserved = NAN;
        snprintf(as->qread.error, sizeof as->qread.error, "out of memory");
    } else {
        ctl_queue_poll(as->qsrc, &q, &as->qread);
    }
    cfg_free(&ctl_queue_schema, &q);
    int st = isnan(as->qread.depth) ? -1 : 1;
    if (st != as->qstate) {
        if (st < 0)
            log_warn("autoscaler: queue depth unknown, holding the count: %s", as->qread.error);
        else if (as->qstate < 0)
            log_info("autoscaler: queue depth readable again (%.6g)", as->qread.depth);
        as->qstate = st;
    }
    return &as->qread;
}

static int as_decide(void *arg, const ctl_instance_info *inst, size_t n, int desired,
                     uint64_t now)
{
    ctl_autoscaler *as = arg;
    pthread_mutex_lock(&as->mu);
    ctl_collect_opts o = { as->cfg.cpu_cores,
                           as->cfg.memory_limit ? as->cfg.memory_limit : as->mem_total };
    uint64_t interval = as->cfg.check_interval, warmup = as->cfg.warmup;
    pthread_mutex_unlock(&as->mu);
    int timeout_ms = scrape_timeout_ms(interval);

    /* 1. scrape: managed instances that are starting or ready */
    if (grow((void **)&as->cur, &as->cur_cap, n, sizeof *as->cur) < 0
        || grow((void **)&as->m, &as->m_cap, n, sizeof *as->m) < 0)
        return -1;
    /* one read of the process table serves every instance with a pid */
    bool table = false;
    for (size_t i = 0; i < n && !table; i++)
        table = inst[i].managed && inst[i].pid > 0;
    if (table && ctl_ptable_read(&as->ptable, as->ps_env.proc_root) < 0) {
        log_warn("autoscaler: cannot list %s: CPU and memory from /metrics only",
                 as->ps_env.proc_root);
        table = false;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const ctl_instance_info *in = &inst[i];
        if (!in->managed || (in->state != CTL_INST_READY && in->state != CTL_INST_STARTING))
            continue;
        ctl_inst_metrics *m = &as->m[k];
        as_prev *c = &as->cur[k];
        snprintf(c->id, sizeof c->id, "%s", in->id);
        if (in->state == CTL_INST_READY && in->address[0])
            scrape_instance(as, in, &c->s, now, timeout_ms);
        else
            ctl_scrape_fail(&c->s, now);
        /* starting ones too: the first ready check then has an interval */
        if (table && in->pid > 0)
            ctl_procstat_take(&c->ps, &as->ps_env, &as->ptable, in->pid, ev_monotonic_us());
        else
            memset(&c->ps, 0, sizeof c->ps);
        const as_prev *pv = prev_of(as, in->id);
        ctl_collect_instance(m, pv ? &pv->s : NULL, &c->s, &o);
        ctl_collect_os(m, pv ? &pv->ps : NULL, &c->ps, &o);
        snprintf(m->id, sizeof m->id, "%s", in->id);
        snprintf(m->address, sizeof m->address, "%s", in->address);
        m->ready_at_us = in->state == CTL_INST_READY ? (in->ready_at_us ? in->ready_at_us : 1) : 0;
        k++;
    }
    /* the gateway sees what clients see: in-flight, rps, p95, errors */
    if (scrape_gateway(as, now, timeout_ms)) {
        for (size_t i = 0; i < k; i++)
            if (as->m[i].ready_at_us)
                ctl_collect_gateway(&as->m[i], as->c->pool, as->gw_prev, as->gw_cur);
        ctl_gwm_scrape *t = as->gw_prev;
        as->gw_prev = as->gw_cur;
        as->gw_cur = t;
    }
    as_prev *t = as->prev;
    size_t tc = as->prev_cap;
    as->prev = as->cur;
    as->prev_cap = as->cur_cap;
    as->nprev = k;
    as->cur = t;
    as->cur_cap = tc;

    const ctl_queue_reading *q = poll_queue(as);

    /* 2. decide (under mu: the API reads and steers the same state) */
    pthread_mutex_lock(&as->mu);
    int want = -1;
    ctl_observation obs = { as->m, k, q };
    if (q)
        as->qlast = *q;
    else
        as->qlast.on = false;
    /* started again, or the count moved behind our back (a deploy, a
     * clamp by the manager): the manager's count is the truth */
    if (as->resync || desired != as->mgr_desired) {
        ctl_scaler_sync(as->sc, desired);
        as->resync = false;
    }
    as->mgr_desired = desired;
    if (ctl_scaler_enabled(as->sc)) {
        ctl_scaler_step(as->sc, &obs, now, &as->dec);
        if (ctl_deploy_active(as->c))
            hold_for_deploy(as, desired);
        else
            as->deploy_hold_noted = false;
        as->last = as->dec;
        as->have_last = true;
        if (as->dec.record)
            ctl_as_record(as, &as->dec.event);
        if (as->dec.changed)
            log_info("autoscaler: %s %d -> %d (%s)", ctl_event_kind_name(as->dec.event.kind),
                     as->dec.event.old_count, as->dec.event.new_count, as->dec.event.reason);
        want = as->dec.desired;
        if (want > as->c->max_instances)   /* as ctl_run will */
            want = as->c->max_instances;
        as->mgr_desired = want;
        publish(as, inst, n, &as->dec.event.metrics, now);
    } else {
        ctl_pool_metrics p;
        ctl_collect_pool(&p, as->m, k, now, warmup);
        publish(as, inst, n, &p, now);
    }
    pthread_mutex_unlock(&as->mu);
    return want;
}

static uint64_t as_interval(void *arg)
{
    ctl_autoscaler *as = arg;
    pthread_mutex_lock(&as->mu);
    uint64_t v = as->cfg.check_interval;
    if (ctl_queue_source(&as->cfg.queue) != CTL_QSRC_NONE && as->cfg.queue.poll_interval
        && as->cfg.queue.poll_interval < v)
        v = as->cfg.queue.poll_interval;
    pthread_mutex_unlock(&as->mu);
    return v;
}

ctl_autoscaler *ctl_autoscaler_new(const ctl_config *c, const struct ctl_autoscale_cfg *a,
                                   char *err, size_t errlen)
{
    ctl_autoscaler *as = calloc(1, sizeof *as);
    if (!as) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    as->c = c;
    pthread_mutex_init(&as->mu, NULL);
    as->ring_cap = RING_MIN;
    as->ring = malloc(as->ring_cap * sizeof *as->ring);
    as->gw_prev = calloc(1, sizeof *as->gw_prev);
    as->gw_cur = calloc(1, sizeof *as->gw_cur);
    if (!as->ring || !as->gw_prev || !as->gw_cur || cfg_copy(&ctl_autoscale_schema, &as->cfg, a) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    as->mem_total = ctl_machine_memtotal();
    ctl_ps_env_init(&as->ps_env, "/proc");
    static const char *const glabels[] = { "pool", "instance", NULL };
    as->g_cpu = metrics_family(metrics_default(), "hscale_control_instance_cpu_percent",
                               "CPU of an instance in percent of autoscaling.cpu_cores, as the "
                               "autoscaler last measured it.", METRIC_GAUGE, glabels);
    as->g_mem = metrics_family(metrics_default(), "hscale_control_instance_memory_percent",
                               "Memory of an instance in percent of autoscaling.memory_limit, as "
                               "the autoscaler last measured it.", METRIC_GAUGE, glabels);
    as->mgr_desired = c->instances;
    as->sc = ctl_scaler_new(&as->cfg, c->instances, err, errlen);
    if (!as->sc)
        goto fail;
    if (c->state_dir && c->state_dir[0]) {
        char e[256], dir[1024];
        /* the parents of state_dir (ctl_start makes them too, but later) */
        snprintf(dir, sizeof dir, "%s", c->state_dir);
        for (char *q = dir + 1; *q; q++)
            if (*q == '/') {
                *q = '\0';
                (void)mkdir(dir, 0755);
                *q = '/';
            }
        as->hist = ctl_history_open(c->state_dir, "scaling", (size_t)as->cfg.history_limit,
                                    e, sizeof e);
        if (!as->hist) {
            snprintf(err, errlen, "state_dir: %s", e);
            goto fail;
        }
    }
    return as;
fail:
    ctl_autoscaler_free(as);
    return NULL;
}

void ctl_autoscaler_hooks(ctl_autoscaler *as, ctl_hooks *out)
{
    *out = (ctl_hooks){ .arg = as, .decide = as_decide, .set_desired = ctl_as_set_desired,
                        .status_json = ctl_as_status_json, .interval_us = as_interval,
                        .routes = ctl_as_routes, .audit = ctl_as_audit };
}

void ctl_autoscaler_free(ctl_autoscaler *as)
{
    if (!as)
        return;
    ctl_scaler_free(as->sc);
    ctl_queue_src_free(as->qsrc);
    ctl_history_close(as->hist);
    cfg_free(&ctl_autoscale_schema, &as->cfg);
    free(as->ring);
    free(as->view);
    if (as->g_cpu && as->g_mem)
        for (size_t i = 0; i < as->ng_ids; i++) {
            const char *lv[] = { as->c->pool ? as->c->pool : "", as->g_ids[i], NULL };
            metrics_series_remove(as->g_cpu, lv);
            metrics_series_remove(as->g_mem, lv);
        }
    free(as->g_ids);
    ctl_ptable_free(&as->ptable);
    free(as->prev);
    free(as->cur);
    free(as->m);
    free(as->gw_prev);
    free(as->gw_cur);
    pthread_mutex_destroy(&as->mu);
    free(as);
}
