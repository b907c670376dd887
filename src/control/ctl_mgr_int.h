/* ctl_mgr_int.h -- the instance manager's records, shared by its two
 * halves: ctl_instances.c (requests from other threads, copies out) and
 * ctl_supervise.c (the supervisor thread that acts on them).
 *
 * Locking: m->mu guards the list and every field that both sides touch.
 * Only the supervisor changes info.state, info.address, info.pid and the
 * timers, so it may read those without the lock; others read under it.
 * Records are freed only by the supervisor, once STOPPED. */
#ifndef HSCALE_CONTROL_CTL_MGR_INT_H
#define HSCALE_CONTROL_CTL_MGR_INT_H

#include <pthread.h>

#include "control/ctl_instances.h"
#include "core/proc.h"

/* A driver call in progress for one record. Drivers that may take long
 * (exec scripts booting a VM) run it on a helper thread so the supervisor
 * keeps probing and draining the others; quick ones run it inline. */
enum { CTL_JOB_LAUNCH = 1, CTL_JOB_TERMINATE, CTL_JOB_PROBE };

typedef struct ctl_job {
    int              kind;        /* 0: none */
    bool             done;        /* results below are valid (under mu) */
    ctl_template_cfg tmpl;        /* launch: own copy */
    char             id[32], version[64], address[64];
    pid_t            pid;
    int              how;         /* terminate: CTL_TERM_GROUP or CTL_TERM_MAIN */
    int              rc;
    char             err[512];
} ctl_job;

typedef struct ctl_rec_inst {
    ctl_instance_info info;
    ctl_template_cfg *tmpl;       /* own copy for deploys; NULL: the manager's */
    bool     want_register;       /* register with the gateway once ready */
    bool     restartable;         /* relaunch after a crash (managed starts) */
    bool     retire;              /* drain and stop requested */
    bool     launched;            /* false: launch pending (or restart wait) */
    bool     drain_sent, term_sent, kill_sent;
    int      crash_streak;        /* crashes since it last stayed up */
    int      fails;               /* failed probes in a row while ready */
    uint64_t next_start;          /* monotonic us: earliest (re)launch */
    uint64_t deadline;            /* monotonic us: start, drain or grace end */
    uint64_t next_probe;          /* monotonic us */
    uint64_t ready_mono;
    char     ready_path[256];     /* of the template it was launched from */
    char     kill_reason[160];    /* why the supervisor killed it, if it did */
    proc_ident ident;             /* of info.pid when launched (state file, adoption) */
    /* Of the template it was launched from: */
    bool     noport;              /* port: none (a worker: no address, no HTTP) */
    int      stop_how;            /* CTL_TERM_GROUP or CTL_TERM_MAIN */
    char   **ready_argv;          /* port none's ready_command, expanded; NULL: none */
    char   **ready_env;
    char    *ready_cwd;
    int      ready_timeout_ms;
    ctl_job  job;                 /* never freed while job.kind is set */
} ctl_rec_inst;

struct ctl_mgr {
    const ctl_config *c;
    ctl_driver       *drv;
    ctl_gw            gw;
    bool              has_gw;
    ctl_template_cfg  tmpl;       /* current template (deploys replace it) */
    pthread_mutex_t   mu;
    pthread_cond_t    cv;         /* any change; waiters re-check */
    ctl_rec_inst    **recs;
    size_t            nrecs, caprecs;
    int               desired;
    unsigned          next_id;
    uint64_t          restarts_total;
    uint64_t          generation;  /* bumped on every change under mu */
    bool              stopping, started, wake;
    uint64_t          stop_deadline;
    pthread_t         thread;
    /* The instance state file (ctl_adopt.c); "" when the driver adopts
     * nothing or there is no state_dir. Supervisor thread only. */
    char              statefile[1100];
    uint64_t          saved_generation;
    bool              saved_once;
};

/* Under mu: something changed; wake the supervisor and every waiter. */
static inline void ctl_mgr_changed_locked(ctl_mgr *m)
{
    m->generation++;
    pthread_cond_broadcast(&m->cv);
}

uint64_t ctl_mono_us(void);
uint64_t ctl_wall_us(void);
/* Under mu: a new pending record (NULL when out of memory). */
ctl_rec_inst *ctl_mgr_add_locked(ctl_mgr *m, const char *id, const char *version);
ctl_rec_inst *ctl_mgr_find_locked(ctl_mgr *m, const char *id);
void          ctl_mgr_rec_free(ctl_rec_inst *r);
/* Starts a driver call for r (ctl_jobs.c): launch (template, id, version
 * copied from r) or the polite terminate, inline for quick drivers; or a
 * run of r's ready_command (CTL_JOB_PROBE: always on a helper thread, as
 * it is a program of the user's that may take seconds). */
void ctl_job_start(ctl_mgr *m, ctl_rec_inst *r, int kind);
/* True when r's job has finished: its results are in r->job, and the
 * caller applies them and clears job.kind. */
bool ctl_job_finished(ctl_mgr *m, ctl_rec_inst *r);
/* Under mu: what a worker's template says about readiness (its
 * ready_command, expanded for r) and stopping, kept with the record. */
void ctl_rec_take_template(ctl_mgr *m, ctl_rec_inst *r, const ctl_template_cfg *t);
/* ctl_adopt.c: before the supervisor starts, takes over the instances a
 * previous control plane left running (those of the state file whose pid
 * still has its start time) as records to probe; 0, or -1 with err. */
int  ctl_adopt_saved(ctl_mgr *m, char *err, size_t errlen);
/* Supervisor thread: rewrites the state file when the records changed. */
void ctl_adopt_save(ctl_mgr *m);
/* The supervisor thread's body (ctl_supervise.c). */
void *ctl_supervise_main(void *arg);

#endif
