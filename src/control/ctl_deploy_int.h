/* ctl_deploy_int.h -- what the deploy strategies share with the deployer
 * (ctl_deploy.c): the run context, events, waits that honour commands, and
 * the gateway calls for the second pool. Internal to the ctl_deploy*
 * files; the strategies run on the deploy thread only. */
#ifndef HSCALE_CONTROL_CTL_DEPLOY_INT_H
#define HSCALE_CONTROL_CTL_DEPLOY_INT_H

#include <jansson.h>

#include "control/ctl_deploy.h"

struct ctl_dep_run {
    ctl_deployer     *d;
    ctl_mgr          *m;
    const ctl_config *c;
    ctl_dep_spec     *s;
    ctl_template_cfg  tmpl;       /* the target version's template */
    ctl_template_cfg  old_tmpl;   /* the template before the deploy */
    ctl_gw            gw;
    bool              has_gw;
    char              next_pool[64];
};

/* What a wait ended on. */
typedef enum { CTL_W_OK, CTL_W_ROLLBACK, CTL_W_PROMOTE, CTL_W_ABORT } ctl_dep_wake;

/* Waits us (paused time does not count; a pause holds until resume).
 * Ends early on rollback, promote (consumed) or shutdown. */
ctl_dep_wake ctl_dep_wait(ctl_dep_run *r, uint64_t us);
/* A pending rollback or shutdown, without waiting (pauses hold here). */
ctl_dep_wake ctl_dep_check(ctl_dep_run *r);

/* Appends a deploy_<kind> event: the deploy's id, strategy and version,
 * extra's members (taken over, may be NULL) and the formatted message.
 * Also the current state's "last" message. */
void ctl_dep_event(ctl_dep_run *r, const char *kind, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The state shown by GET /api/v1/deploys/current. */
void ctl_dep_phase(ctl_dep_run *r, const char *phase);
void ctl_dep_progress(ctl_dep_run *r, int done, int total, int weight);

/* Scrapes the gateway's /metrics: per backend, and (when not NULL) the
 * control and next pools' latency. 0, or -1 with err. */
int  ctl_dep_scrape(ctl_dep_run *r, ctl_gwm_scrape *out, ctl_lat *stable, ctl_lat *next,
                    char *err, size_t errlen);
/* Splits every route of the control pool between it and the next pool. */
int  ctl_dep_route(ctl_dep_run *r, int stable_w, int next_w, char *err, size_t errlen);

/* Managed instances that are not being retired: ids and addresses. */
typedef struct ctl_dep_inst {
    char id[32];
    char address[64];
    char version[64];
} ctl_dep_inst;
size_t ctl_dep_managed(ctl_dep_run *r, ctl_dep_inst *out, size_t max);
/* Starts n unregistered, uncounted instances of the target template and
 * waits until all are ready. Fills out (n entries). On failure the ones
 * started are retired and -1 returned with err. */
int  ctl_dep_start_batch(ctl_dep_run *r, const ctl_template_cfg *t, const char *version,
                         int n, ctl_dep_inst *out, char *err, size_t errlen);
/* Removes them from the next pool, waiting up to the drain timeout for
 * their in-flight requests, then (retire) stops the instances. */
void ctl_dep_drain_next(ctl_dep_run *r, const ctl_dep_inst *in, size_t n, bool retire);
/* Registers them in the next pool. */
int  ctl_dep_register_next(ctl_dep_run *r, const ctl_dep_inst *in, size_t n, char *err,
                           size_t errlen);
/* GETs path from every instance; 0 when all answer as expected. */
int  ctl_dep_smoke_run(ctl_dep_run *r, const ctl_dep_inst *in, size_t n, char *err, size_t errlen);
/* Folds the next pool's instances into the control pool (counted,
 * registered there) and retires olds, pairwise, then waits until every
 * new one is registered. */
int  ctl_dep_fold(ctl_dep_run *r, const ctl_dep_inst *nw, size_t nn, const ctl_dep_inst *old,
                  size_t no, char *err, size_t errlen);

#endif
