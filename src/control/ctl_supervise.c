/* ctl_supervise.c -- the supervisor thread: the only code that launches,
 * probes, registers, drains and stops instances.
 *
 * Every tick (100 ms; 20 ms while one starts or stops; at once when woken)
 * it converges the managed count to the desired one, then walks each record
 * through its life:
 *
 *   pending --launch--> starting --probe ok--> ready --retire--> draining
 *      ^                   |  (start timeout: kill)      (gateway drain,
 *      |                   v                              in_flight 0 or
 *   backoff <---------- crashed                           timeout)
 *                                                            |
 *   stopped <--exit-- stopping (SIGTERM, SIGKILL after grace) <
 *
 * A worker (template port: none) has no address: it is ready once its
 * process is up, or once its ready_command exits 0 (run on a helper thread,
 * and again every check interval as its health check); it is never
 * registered, drained through the gateway or probed over HTTP, and its
 * stop's SIGTERM goes to the main process alone unless kill_mode says
 * otherwise, so a Celery worker finishes its running task.
 *
 * Scale-in picks the victim that costs least: one not running at all, then
 * one not ready yet, then the ready one with the fewest requests in flight
 * at the gateway, newest first. Nothing is stopped while the gateway still
 * routes to it: the drain ends when the gateway stops listing the member,
 * reports zero in flight, or the drain timeout passes.
 *
 * I/O (driver calls, probes, the gateway) happens without the lock held, so
 * the API never waits on a slow instance. */
#include "control/ctl_mgr_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "core/log.h"
#include "http/client.h"

#define TICK_US         100000u
/* While an instance starts or stops: probing a port nobody listens on yet costs
 * one refused connect, and every tick shaved here is time to serve. */
#define FAST_TICK_US    20000u
#define START_PROBE_MS  500
/* A ready_command is a process of its own: retried this often while starting. */
#define READY_CMD_US    250000u
#define NEVER           UINT64_MAX

/* For log lines: a worker has no address. */
static const char *where(const ctl_rec_inst *r)
{
    return r->info.address[0] ? r->info.address : "(no port)";
}

static uint64_t backoff(const ctl_mgr *m, int streak)
{
    uint64_t d = m->c->restart_backoff_us ? m->c->restart_backoff_us : 1000000u;
    for (int i = 0; i < streak && d < m->c->restart_backoff_max_us; i++)
        d *= 2;
    return d < m->c->restart_backoff_max_us ? d : m->c->restart_backoff_max_us;
}

/* Sets the record's last error (under the lock) and logs it. */
static void rec_error(ctl_mgr *m, ctl_rec_inst *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rec_error(ctl_mgr *m, ctl_rec_inst *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&m->mu);
    vsnprintf(r->info.last_error, sizeof r->info.last_error, fmt, ap);
    pthread_mutex_unlock(&m->mu);
    va_end(ap);
    log_warn("%s: %s", r->info.id, r->info.last_error);
}

static void set_state(ctl_mgr *m, ctl_rec_inst *r, ctl_inst_state st)
{
    pthread_mutex_lock(&m->mu);
    r->info.state = st;
    ctl_mgr_changed_locked(m);
    pthread_mutex_unlock(&m->mu);
}

static void job_clear(ctl_rec_inst *r)
{
    cfg_free(&ctl_template_schema, &r->job.tmpl);
    memset(&r->job, 0, sizeof r->job);
}

/* What a worker's template says about readiness and stopping, kept with
 * the record (a deploy may replace the manager's template meanwhile). */
void ctl_rec_take_template(ctl_mgr *m, ctl_rec_inst *r, const ctl_template_cfg *t)
{
    r->noport = t->port == CTL_PORT_NONE;
    r->stop_how = ctl_tmpl_stop_mixed(t) ? CTL_TERM_MAIN : CTL_TERM_GROUP;
    ctl_argv_free(r->ready_argv);
    ctl_argv_free(r->ready_env);
    free(r->ready_cwd);
    r->ready_argv = r->ready_env = NULL;
    r->ready_cwd = NULL;
    r->ready_timeout_ms = (int)(t->ready_timeout_us / 1000u);
    if (!r->noport || !t->ready_command || !t->ready_command[0])
        return;
    ctl_tmpl_vars v = { .id = r->info.id, .version = r->info.version,
                        .host = t->host && t->host[0] ? t->host : "127.0.0.1",
                        .state_dir = m->c->state_dir && m->c->state_dir[0] ? m->c->state_dir : ".",
                        .noport = true };
    char e[256];
    r->ready_argv = ctl_tmpl_ready_argv(t, &v, e, sizeof e);
    r->ready_env = r->ready_argv ? ctl_tmpl_env(t, &v, e, sizeof e) : NULL;
    if (r->ready_env && t->workdir && t->workdir[0])
        r->ready_cwd = ctl_tmpl_expand(t->workdir, &v, e, sizeof e);
    if (!r->ready_argv || !r->ready_env || (t->workdir && t->workdir[0] && !r->ready_cwd)) {
        /* checked at load: only a failed allocation gets here */
        snprintf(r->info.last_error, sizeof r->info.last_error, "ready_command: %.140s", e);
        ctl_argv_free(r->ready_argv);
        ctl_argv_free(r->ready_env);
        r->ready_argv = r->ready_env = NULL;
    }
}

/* The launch job finished: starting, or failed with a backoff. */
static void apply_launch(ctl_mgr *m, ctl_rec_inst *r, uint64_t now)
{
    const ctl_job *j = &r->job;
    pthread_mutex_lock(&m->mu);
    if (j->rc == 0) {
        ctl_rec_take_template(m, r, &j->tmpl);
        if (r->noport)
            r->want_register = false;
        snprintf(r->info.address, sizeof r->info.address, "%s", j->address);
        snprintf(r->ready_path, sizeof r->ready_path, "%s",
                 j->tmpl.ready_path && j->tmpl.ready_path[0] ? j->tmpl.ready_path : "/health/ready");
        r->info.pid = j->pid;
        /* Our unreaped child: its pid cannot name another process yet. */
        if (j->pid <= 0 || proc_ident_read(j->pid, &r->ident) < 0)
            memset(&r->ident, 0, sizeof r->ident);
        r->info.state = CTL_INST_STARTING;
        r->info.started_at_us = ctl_wall_us();
        r->info.ready_at_us = 0;
        r->info.healthy = r->info.registered = false;
        r->launched = true;
        r->drain_sent = r->term_sent = r->kill_sent = false;
        r->kill_reason[0] = '\0';
        r->fails = 0;
        r->deadline = now + (j->tmpl.start_timeout_us ? j->tmpl.start_timeout_us : 60000000u);
        r->next_probe = now;
    } else {
        snprintf(r->info.last_error, sizeof r->info.last_error, "launch: %.150s", j->err);
        r->info.state = CTL_INST_FAILED;
        r->next_start = r->restartable ? now + backoff(m, r->crash_streak++) : NEVER;
    }
    ctl_mgr_changed_locked(m);
    pthread_mutex_unlock(&m->mu);
    if (j->rc == 0)
        log_info("%s started at %s (pid %d, version %s)", j->id,
                 j->address[0] ? j->address : "(no port)", (int)j->pid, j->version);
    else
        log_warn("%s: launch failed: %s", j->id, j->err);
    job_clear(r);
}

static void do_launch(ctl_mgr *m, ctl_rec_inst *r, uint64_t now)
{
    ctl_job_start(m, r, CTL_JOB_LAUNCH);
    if (ctl_job_finished(m, r))
        apply_launch(m, r, now);
}

static void deregister(ctl_mgr *m, ctl_rec_inst *r)
{
    if (!r->info.registered || !m->has_gw)
        return;
    char err[512];
    if (ctl_gw_drain(&m->gw, m->c->pool, r->info.address, 0, err, sizeof err) < 0)
        log_warn("%s: %s", r->info.id, err);
    pthread_mutex_lock(&m->mu);
    r->info.registered = false;
    pthread_mutex_unlock(&m->mu);
}

/* The instance is gone: a stop we asked for, or a crash to restart. */
static void on_exit_status(ctl_mgr *m, ctl_rec_inst *r, int status, uint64_t now)
{
    char why[160];
    if (r->kill_reason[0])
        snprintf(why, sizeof why, "%s", r->kill_reason);
    else if (status == -1)
        snprintf(why, sizeof why, "exited");
    else if (WIFSIGNALED(status))
        snprintf(why, sizeof why, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(status));
    bool asked = r->retire || r->info.state == CTL_INST_DRAINING
              || r->info.state == CTL_INST_STOPPING;
    deregister(m, r);
    pthread_mutex_lock(&m->mu);
    r->info.pid = 0;
    r->info.healthy = false;
    r->launched = false;
    if (asked) {
        r->info.state = CTL_INST_STOPPED;
    } else {
        snprintf(r->info.last_error, sizeof r->info.last_error, "%s", why);
        r->info.state = CTL_INST_FAILED;
        if (r->restartable) {
            r->info.restarts++;
            m->restarts_total++;
            r->next_start = now + backoff(m, r->crash_streak++);
        } else
            r->next_start = NEVER;
    }
    ctl_mgr_changed_locked(m);
    pthread_mutex_unlock(&m->mu);
    if (!asked)
        log_warn("%s at %s %s%s", r->info.id, where(r), why,
                 r->restartable ? "; restarting after backoff" : "");
    else
        log_info("%s at %s stopped", r->info.id, where(r));
}

static int probe(const char *addr, const char *path, int timeout_ms, char *err, size_t errlen)
{
    char url[400];
    snprintf(url, sizeof url, "http://%s%s", addr, path);
    http_result res;
    http_result_init(&res);
    int rc = http_fetch("GET", url, NULL, NULL, 0, timeout_ms, &res, err, errlen);
    if (rc == 0 && (res.status < 200 || res.status > 399)) {
        snprintf(err, errlen, "%s answered %d", path, res.status);
        rc = -1;
    }
    http_result_free(&res);
    return rc;
}

static void try_register(ctl_mgr *m, ctl_rec_inst *r)
{
    char err[512];
    int rc = ctl_gw_register(&m->gw, m->c->pool, r->info.address, m->c->weight, false,
                             err, sizeof err);
    if (rc < 0) {
        rec_error(m, r, "%s", err);
        return;
    }
    pthread_mutex_lock(&m->mu);
    r->info.registered = true;
    ctl_mgr_changed_locked(m);
    pthread_mutex_unlock(&m->mu);
    log_info("%s registered at %s in pool %s", r->info.id, r->info.address, m->c->pool);
}

/* The polite terminate returned: gone at once (the exec driver's script),
 * or asked (SIGTERM) with the exit noticed by the poll. */
static void apply_stop(ctl_mgr *m, ctl_rec_inst *r, uint64_t now)
{
    int rc = r->job.rc;
    if (rc < 0)
        rec_error(m, r, "terminate: %s", r->job.err);
    job_clear(r);
    r->term_sent = true;
    r->deadline = now + m->c->stop_grace_us;
    if (rc == 1) {
        deregister(m, r);
        pthread_mutex_lock(&m->mu);
        r->info.pid = 0;
        r->launched = false;
        pthread_mutex_unlock(&m->mu);
        set_state(m, r, CTL_INST_STOPPED);
        log_info("%s at %s terminated", r->info.id, where(r));
    }
}

static void begin_stop(ctl_mgr *m, ctl_rec_inst *r, uint64_t now)
{
    set_state(m, r, CTL_INST_STOPPING);
    if (r->noport)
        log_info("%s stopping: SIGTERM to %s, up to %.1f s to finish its work", r->info.id,
                 r->stop_how == CTL_TERM_MAIN ? "its main process" : "its process group",
                 (double)m->c->stop_grace_us / 1e6);
    ctl_job_start(m, r, CTL_JOB_TERMINATE);
    if (ctl_job_finished(m, r))
        apply_stop(m, r, now);
}

/* Asks the gateway to drain r. A gateway that cannot be reached routes
 * nothing to it, so it stops at once; one that answers with an error may
 * still route to it, so the request is retried until the drain timeout
 * rather than stopping an instance that may be serving. */
static void send_drain(ctl_mgr *m, ctl_rec_inst *r, uint64_t now)
{
    char err[512];
    int rc = ctl_gw_drain(&m->gw, m->c->pool, r->info.address, m->c->drain_timeout_us,
                          err, sizeof err);
    if (rc == -1) {
        rec_error(m, r, "drain: %s (retrying until the drain timeout)", err);
        return;
    }
    if (rc == -2)
        rec_error(m, r, "drain: %s (stopping: nothing routes through it)", err);
    else
        log_info("%s at %s draining (up to %.1f s)", r->info.id, r->info.address,
                 (double)m->c->drain_timeout_us / 1e6);
    r->drain_sent = true;
    if (rc != 1) {   /* removed at once, or no gateway to wait for */
        pthread_mutex_lock(&m->mu);
        r->info.registered = false;
        pthread_mutex_unlock(&m->mu);
        begin_stop(m, r, now);
    }
}

static void begin_drain(ctl_mgr *m, ctl_rec_inst *r, uint64_t now)
{
    if (!r->info.registered || !m->has_gw) {
        begin_stop(m, r, now);
        return;
    }
    /* A little over the gateway's own drain time: it removes the member
     * then, and check_drain sees it gone. */
    r->deadline = now + m->c->drain_timeout_us + 500000u;
    r->drain_sent = false;
    set_state(m, r, CTL_INST_DRAINING);
    send_drain(m, r, now);
}

static void check_drain(ctl_mgr *m, ctl_rec_inst *r, uint64_t now)
{
    bool done = now >= r->deadline;
    if (!done && !r->drain_sent) {
        send_drain(m, r, now);
        return;
    }
    if (!done) {
        ctl_gw_member mem[256];
        size_t n = 0;
        char err[512];
        if (ctl_gw_members(&m->gw, m->c->pool, mem, 256, &n, err, sizeof err) < 0) {
            log_warn("%s: %s", r->info.id, err);
            return;   /* keep waiting: the deadline still bounds it */
        }
        done = true;
        for (size_t i = 0; i < n && i < 256; i++)
            if (strcmp(mem[i].address, r->info.address) == 0 || strcmp(mem[i].id, r->info.address) == 0)
                done = mem[i].in_flight == 0;
    }
    if (!done)
        return;
    pthread_mutex_lock(&m->mu);
    r->info.registered = false;   /* the gateway drops it when idle or at the deadline */
    pthread_mutex_unlock(&m->mu);
    begin_stop(m, r, now);
}

static void check_stop(ctl_mgr *m, ctl_rec_inst *r, uint64_t now)
{
    if (now < r->deadline)
        return;
    char err[512];
    if (!r->kill_sent) {
        log_warn("%s did not stop within the grace time: killing it", r->info.id);
        int rc = m->drv->terminate(m->drv, r->info.id, r->info.address, r->info.pid, true,
                                   err, sizeof err);
        r->kill_sent = true;
        r->deadline = now + 5000000u;
        if (rc == 1)
            on_exit_status(m, r, -1, now);
        else if (rc < 0)
            rec_error(m, r, "kill: %s", err);
        return;
    }
    rec_error(m, r, "still running 5 s after the kill: giving up on it");
    pthread_mutex_lock(&m->mu);
    r->launched = false;
    r->info.pid = 0;
    pthread_mutex_unlock(&m->mu);
    set_state(m, r, CTL_INST_STOPPED);
}

/* The supervisor killed it (start timeout): restart as after a crash. */
static void kill_for(ctl_mgr *m, ctl_rec_inst *r, uint64_t now, const char *why)
{
    char err[512];
    snprintf(r->kill_reason, sizeof r->kill_reason, "%s", why);
    rec_error(m, r, "%s", why);
    int rc = m->drv->terminate(m->drv, r->info.id, r->info.address, r->info.pid, true,
                               err, sizeof err);
    r->kill_sent = true;
    if (rc == 1)
        on_exit_status(m, r, -1, now);
}

static void mark_ready(ctl_mgr *m, ctl_rec_inst *r, uint64_t now, bool want_reg)
{
    pthread_mutex_lock(&m->mu);
    r->info.state = CTL_INST_READY;
    r->info.ready_at_us = ctl_wall_us();
    r->info.healthy = true;
    r->ready_mono = now;
    r->fails = 0;
    r->next_probe = now + m->c->check_interval_us;
    ctl_mgr_changed_locked(m);
    pthread_mutex_unlock(&m->mu);
    log_info("%s at %s ready in %.2f s", r->info.id, where(r),
             (double)(r->info.ready_at_us - r->info.started_at_us) / 1e6);
    if (want_reg && !r->info.registered)
        try_register(m, r);
}

static void start_failed(ctl_mgr *m, ctl_rec_inst *r, uint64_t now, const char *err)
{
    if (now < r->deadline)
        return;
    char why[160];
    snprintf(why, sizeof why, "not ready within the start timeout (%.100s)", err);
    kill_for(m, r, now, why);
}

static void step_starting(ctl_mgr *m, ctl_rec_inst *r, uint64_t now, bool want_reg)
{
    if (now < r->next_probe || r->kill_sent)
        return;
    if (r->noport) {
        if (!r->ready_argv) {
            mark_ready(m, r, now, false);   /* its process is up: that is all we ask */
        } else {
            r->next_probe = now + READY_CMD_US;
            ctl_job_start(m, r, CTL_JOB_PROBE);   /* the verdict: apply_probe */
        }
        return;
    }
    r->next_probe = now + FAST_TICK_US;
    char err[256];
    if (probe(r->info.address, r->ready_path, START_PROBE_MS, err, sizeof err) == 0)
        mark_ready(m, r, now, want_reg);
    else
        start_failed(m, r, now, err);
}

static void probe_passed(ctl_mgr *m, ctl_rec_inst *r, uint64_t now)
{
    pthread_mutex_lock(&m->mu);
    r->fails = 0;
    r->info.healthy = true;
    if (r->crash_streak && now - r->ready_mono > m->c->restart_backoff_max_us)
        r->crash_streak = 0;
    pthread_mutex_unlock(&m->mu);
}

static void probe_failed(ctl_mgr *m, ctl_rec_inst *r, bool managed, const char *err)
{
    pthread_mutex_lock(&m->mu);
    r->fails++;
    r->info.healthy = false;
    bool replace = managed && r->fails >= m->c->unhealthy_checks;
    if (replace) {
        /* Out of the count first, so the replacement starts while this one
         * drains: capacity comes back before it leaves. */
        r->info.managed = false;
        r->retire = true;
        m->wake = true;
    }
    pthread_mutex_unlock(&m->mu);
    rec_error(m, r, "readiness probe failed (%d in a row): %s%s", r->fails, err,
              replace ? "; replacing it" : "");
}

static void step_ready(ctl_mgr *m, ctl_rec_inst *r, uint64_t now, bool want_reg, bool managed)
{
    if (now < r->next_probe)
        return;
    r->next_probe = now + m->c->check_interval_us;
    if (r->noport) {
        if (r->ready_argv)
            ctl_job_start(m, r, CTL_JOB_PROBE);
        else
            probe_passed(m, r, now);   /* running is healthy; crashes are seen by poll */
        return;
    }
    if (want_reg && !r->info.registered)
        try_register(m, r);
    int timeout_ms = (int)(m->c->check_interval_us / 1000);
    if (timeout_ms > 2000)
        timeout_ms = 2000;
    char err[256];
    if (probe(r->info.address, r->ready_path, timeout_ms, err, sizeof err) == 0)
        probe_passed(m, r, now);
    else
        probe_failed(m, r, managed, err);
}

/* A ready_command finished: the same verdicts as an HTTP probe. */
static void apply_probe(ctl_mgr *m, ctl_rec_inst *r, uint64_t now, bool managed)
{
    int rc = r->job.rc;
    char err[512];
    snprintf(err, sizeof err, "%s", r->job.err);
    job_clear(r);
    if (r->info.state == CTL_INST_STARTING) {
        if (rc == 0)
            mark_ready(m, r, now, false);
        else
            start_failed(m, r, now, err);
    } else if (r->info.state == CTL_INST_READY) {
        if (rc == 0)
            probe_passed(m, r, now);
        else
            probe_failed(m, r, managed, err);
    }
}

static void step(ctl_mgr *m, ctl_rec_inst *r, uint64_t now)
{
    pthread_mutex_lock(&m->mu);
    bool retire = r->retire, want_reg = r->want_register, managed = r->info.managed;
    bool stopping = m->stopping;
    pthread_mutex_unlock(&m->mu);

    if (r->job.kind) {
        if (!ctl_job_finished(m, r))
            return;   /* a helper is still at it */
        if (r->job.kind == CTL_JOB_LAUNCH)
            apply_launch(m, r, now);
        else if (r->job.kind == CTL_JOB_PROBE)
            apply_probe(m, r, now, managed);
        else
            apply_stop(m, r, now);
        return;
    }
    if (!r->launched) {
        if (retire || stopping)
            set_state(m, r, CTL_INST_STOPPED);
        else if (now >= r->next_start)
            do_launch(m, r, now);
        return;
    }
    int status = 0;
    if (m->drv->poll(m->drv, r->info.id, r->info.pid, &status) == 1) {
        on_exit_status(m, r, status, now);
        return;
    }
    switch (r->info.state) {
    case CTL_INST_STARTING:
        if (retire)
            begin_stop(m, r, now);
        else
            step_starting(m, r, now, want_reg);
        break;
    case CTL_INST_READY:
        if (retire)
            begin_drain(m, r, now);
        else
            step_ready(m, r, now, want_reg, managed);
        break;
    case CTL_INST_DRAINING:
        check_drain(m, r, now);
        break;
    case CTL_INST_STOPPING:
        check_stop(m, r, now);
        break;
    default:
        break;
    }
}

/* Lower is a cheaper victim. */
static int victim_class(const ctl_rec_inst *r)
{
    if (!r->launched)
        return 0;
    return r->info.state == CTL_INST_STARTING ? 1 : 2;
}

static long gw_in_flight(const ctl_gw_member *mem, size_t n, const char *addr)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(mem[i].address, addr) == 0 || strcmp(mem[i].id, addr) == 0)
            return mem[i].in_flight;
    return 0;
}

static void converge(ctl_mgr *m)
{
    pthread_mutex_lock(&m->mu);
    int active = 0;
    for (size_t i = 0; i < m->nrecs; i++)
        active += m->recs[i]->info.managed && !m->recs[i]->retire;
    int want = m->stopping ? 0 : m->desired;
    for (; active < want; active++) {
        ctl_rec_inst *r = ctl_mgr_add_locked(m, NULL, NULL);
        if (!r)
            break;
        r->info.managed = r->restartable = true;
        r->want_register = m->has_gw;
    }
    pthread_mutex_unlock(&m->mu);
    if (active <= want)
        return;

    static ctl_gw_member mem[256];   /* the supervisor thread is the only user */
    size_t nmem = 0;
    char err[512];
    if (m->has_gw && ctl_gw_members(&m->gw, m->c->pool, mem, 256, &nmem, err, sizeof err) < 0)
        log_warn("scale-in without the gateway's in-flight counts: %s", err);
    if (nmem > 256)
        nmem = 256;

    pthread_mutex_lock(&m->mu);
    for (int k = active - want; k > 0; k--) {
        ctl_rec_inst *best = NULL;
        long best_if = 0;
        for (size_t i = 0; i < m->nrecs; i++) {
            ctl_rec_inst *r = m->recs[i];
            if (!r->info.managed || r->retire)
                continue;
            long inf = gw_in_flight(mem, nmem, r->info.address);
            int c = victim_class(r);
            /* Later records are newer: ">=" on started_at prefers them. */
            if (!best || c < victim_class(best)
                || (c == victim_class(best)
                    && (inf < best_if
                        || (inf == best_if && r->info.started_at_us >= best->info.started_at_us)))) {
                best = r;
                best_if = inf;
            }
        }
        if (!best)
            break;
        best->retire = true;
        log_info("scale-in: retiring %s at %s (%ld in flight)", best->info.id,
                 best->launched ? where(best) : "(not started)", best_if);
    }
    pthread_mutex_unlock(&m->mu);
}

/* A gateway that restarted has forgotten members added through its API
 * (unless its state file brought them back): every check interval, a ready
 * instance we think registered but the gateway does not list is registered
 * again on its next probe. A member the gateway restored from its state
 * file that no instance of ours has (it stopped while the gateway was
 * down) is removed. */
static void reconcile(ctl_mgr *m, uint64_t now)
{
    static ctl_gw_member mem[256];   /* the supervisor thread is the only user */
    size_t n = 0;
    char err[512];
    if (ctl_gw_members(&m->gw, m->c->pool, mem, 256, &n, err, sizeof err) < 0) {
        log_debug("reconcile: %s", err);
        return;
    }
    if (n > 256)
        return;   /* a partial view proves nothing missing */
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->nrecs; i++) {
        ctl_rec_inst *r = m->recs[i];
        if (r->info.state != CTL_INST_READY || !r->info.registered || r->retire)
            continue;
        bool found = false;
        for (size_t k = 0; k < n && !found; k++)
            found = strcmp(mem[k].address, r->info.address) == 0;
        if (!found) {
            log_warn("%s at %s is missing from gateway pool %s: registering it again",
                     r->info.id, r->info.address, m->c->pool);
            r->info.registered = false;
            r->next_probe = now;
            ctl_mgr_changed_locked(m);
        }
    }
    bool *stale = calloc(n ? n : 1, sizeof *stale);
    for (size_t k = 0; stale && k < n; k++) {
        stale[k] = mem[k].restored;
        for (size_t i = 0; i < m->nrecs && stale[k]; i++)
            stale[k] = !m->recs[i]->launched
                       || strcmp(mem[k].address, m->recs[i]->info.address) != 0;
    }
    pthread_mutex_unlock(&m->mu);
    for (size_t k = 0; stale && k < n; k++)
        if (stale[k]) {
            int rc = ctl_gw_drain(&m->gw, m->c->pool, mem[k].address, 0, err, sizeof err);
            if (rc < 0)
                log_warn("reconcile: removing stale %s: %s", mem[k].address, err);
            else
                log_info("%s was restored by the gateway but is no instance of ours: removed "
                         "from pool %s", mem[k].address, m->c->pool);
        }
    free(stale);
}

/* Past the stop deadline: kill what is left and wait for it briefly. */
static void force_stop_all(ctl_mgr *m)
{
    char err[256];
    for (size_t i = 0; i < m->nrecs; i++) {
        ctl_rec_inst *r = m->recs[i];
        if (r->launched && !r->job.kind
            && m->drv->terminate(m->drv, r->info.id, r->info.address, r->info.pid, true,
                                 err, sizeof err) < 0)
            log_warn("%s: %s", r->info.id, err);
    }
    uint64_t until = ctl_mono_us() + 1000000u;
    for (size_t i = 0; i < m->nrecs; i++) {
        ctl_rec_inst *r = m->recs[i];
        int st;
        if (r->job.kind)
            continue;   /* bounded by the driver's timeout; applied when done */
        while (r->launched && m->drv->poll(m->drv, r->info.id, r->info.pid, &st) == 0
               && ctl_mono_us() < until && r->info.pid > 0) {
            struct timespec ts = { 0, 10000000 };
            nanosleep(&ts, NULL);
        }
        r->info.state = CTL_INST_STOPPED;
        r->launched = false;
    }
}

void *ctl_supervise_main(void *arg)
{
    ctl_mgr *m = arg;
    ctl_rec_inst **snap = NULL;
    size_t capsnap = 0;
    uint64_t next_reconcile = ctl_mono_us() + m->c->check_interval_us;
    for (;;) {
        converge(m);
        if (m->has_gw && ctl_mono_us() >= next_reconcile) {
            reconcile(m, ctl_mono_us());
            next_reconcile = ctl_mono_us() + m->c->check_interval_us;
        }
        pthread_mutex_lock(&m->mu);
        size_t n = m->nrecs;
        if (n > capsnap) {
            ctl_rec_inst **ns = realloc(snap, n * sizeof *ns);
            if (ns) {
                snap = ns;
                capsnap = n;
            }
        }
        if (n > capsnap)
            n = capsnap;
        if (n)
            memcpy(snap, m->recs, n * sizeof *snap);
        pthread_mutex_unlock(&m->mu);

        uint64_t now = ctl_mono_us();
        for (size_t i = 0; i < n; i++)
            step(m, snap[i], now);
        ctl_adopt_save(m);   /* before a crash can lose what was just launched */

        pthread_mutex_lock(&m->mu);
        if (m->stopping && ctl_mono_us() >= m->stop_deadline)
            force_stop_all(m);
        size_t w = 0;
        for (size_t i = 0; i < m->nrecs; i++) {
            ctl_rec_inst *r = m->recs[i];
            if (r->info.state == CTL_INST_STOPPED && !r->job.kind)
                ctl_mgr_rec_free(r);
            else
                m->recs[w++] = r;
        }
        bool removed = w != m->nrecs;
        bool busy = false;
        for (size_t i = 0; i < w && !busy; i++)
            busy = m->recs[i]->info.state == CTL_INST_STARTING
                || m->recs[i]->info.state == CTL_INST_STOPPING;
        m->nrecs = w;
        if (removed)
            ctl_mgr_changed_locked(m);
        if (m->stopping && m->nrecs == 0) {
            pthread_mutex_unlock(&m->mu);
            ctl_adopt_save(m);   /* an explicit stop leaves nothing to adopt */
            break;
        }
        if (!m->wake) {
            uint64_t until = ctl_mono_us() + (busy ? FAST_TICK_US : TICK_US);
            struct timespec ts = { (time_t)(until / 1000000u), (long)(until % 1000000u) * 1000 };
            pthread_cond_timedwait(&m->cv, &m->mu, &ts);
        }
        m->wake = false;
        pthread_mutex_unlock(&m->mu);
    }
    free(snap);
    http_fetch_pool_clear();
    return NULL;
}
