/* ctl_jobs.c -- driver calls that may outlast a supervisor tick.
 *
 * An exec driver's launch can boot a VM for a minute; run inline it would
 * stall every probe, drain and restart behind it. For drivers marked slow
 * the call runs on a detached helper thread that fills the record's job and
 * wakes the supervisor; the supervisor leaves the record alone until then
 * and never frees it while a job is set. Quick drivers (the process driver,
 * whose detached spawn takes milliseconds) run the same call inline.
 *
 * Helpers are bounded by the exec timeout; at shutdown the supervisor waits
 * for them, so a VM that was being launched is terminated, not orphaned. */
#include "control/ctl_mgr_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct job_arg {
    ctl_mgr      *m;
    ctl_rec_inst *r;
} job_arg;

static void job_call(ctl_mgr *m, ctl_job *j)
{
    char addr[sizeof j->address] = "";
    pid_t pid = 0;
    if (j->kind == CTL_JOB_LAUNCH) {
        j->rc = m->drv->launch(m->drv, &j->tmpl, j->id, j->version, addr, sizeof addr, &pid,
                               j->err, sizeof j->err);
    } else {
        j->rc = m->drv->terminate(m->drv, j->id, j->address, j->pid, j->how, j->err, sizeof j->err);
    }
    if (j->kind == CTL_JOB_LAUNCH && j->rc == 0) {
        memcpy(j->address, addr, sizeof addr);
        j->pid = pid;
    }
}

/* The ready_command's verdict: rc 0 when it exited 0. The record's argv
 * stays valid: a record is never freed while its job is set. */
static void probe_call(const ctl_rec_inst *r, ctl_job *j)
{
    buf out, eb;
    buf_init(&out);
    buf_init(&eb);
    char e[400];
    int st = ctl_exec_run_in(r->ready_cwd, r->ready_argv, r->ready_env, r->ready_timeout_ms,
                             &out, &eb, e, sizeof e);
    j->rc = st == 0 ? 0 : -1;
    if (st < 0) {
        snprintf(j->err, sizeof j->err, "ready_command: %s", e);
    } else if (st > 0) {
        /* the last line it wrote says why, usually */
        const char *p = buf_head(&eb), *end = p + eb.len;
        while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
            end--;
        const char *ls = end;
        while (ls > p && ls[-1] != '\n')
            ls--;
        snprintf(j->err, sizeof j->err, "ready_command exited with status %d%s%.*s", st,
                 end > ls ? ": " : "", (int)(end - ls > 200 ? 200 : end - ls), ls);
    }
    buf_free(&out);
    buf_free(&eb);
}

static void *job_main(void *arg)
{
    job_arg a = *(job_arg *)arg;
    free(arg);
    /* Only this thread touches the job's inputs and results until done. */
    if (a.r->job.kind == CTL_JOB_PROBE)
        probe_call(a.r, &a.r->job);
    else
        job_call(a.m, &a.r->job);
    pthread_mutex_lock(&a.m->mu);
    a.r->job.done = true;
    a.m->wake = true;
    ctl_mgr_changed_locked(a.m);
    pthread_mutex_unlock(&a.m->mu);
    return NULL;
}

void ctl_job_start(ctl_mgr *m, ctl_rec_inst *r, int kind)
{
    ctl_job *j = &r->job;
    pthread_mutex_lock(&m->mu);
    memset(j, 0, sizeof *j);
    j->kind = kind;
    memcpy(j->id, r->info.id, sizeof j->id);
    memcpy(j->version, r->info.version, sizeof j->version);
    memcpy(j->address, r->info.address, sizeof j->address);
    j->pid = r->info.pid;
    j->how = r->stop_how;
    int crc = kind == CTL_JOB_LAUNCH
            ? cfg_copy(&ctl_template_schema, &j->tmpl, r->tmpl ? r->tmpl : &m->tmpl) : 0;
    pthread_mutex_unlock(&m->mu);
    if (crc < 0) {
        j->rc = -1;
        snprintf(j->err, sizeof j->err, "out of memory");
        j->done = true;
        return;
    }
    if (m->drv->slow || kind == CTL_JOB_PROBE) {
        job_arg *a = malloc(sizeof *a);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        bool started = false;
        if (a) {
            *a = (job_arg){ m, r };
            started = pthread_create(&t, &at, job_main, a) == 0;
            if (!started)
                free(a);
        }
        pthread_attr_destroy(&at);
        if (started)
            return;
    }
    if (kind == CTL_JOB_PROBE)   /* no thread to spare: inline */
        probe_call(r, j);
    else
        job_call(m, j);   /* quick driver, or no thread to spare: inline */
    j->done = true;
}

bool ctl_job_finished(ctl_mgr *m, ctl_rec_inst *r)
{
    pthread_mutex_lock(&m->mu);
    bool done = r->job.kind && r->job.done;
    pthread_mutex_unlock(&m->mu);
    return done;
}
