/* ctl_adopt.c -- instances outlive the control plane: the manager keeps
 * <state_dir>/instances.state (ctl_instfile.h) true after every change of
 * its records, and a control plane that starts takes over the instances a
 * crashed one left running instead of starting them twice.
 *
 * Adoption is by identity, never by pid alone: an entry is taken only
 * while its pid has the saved start time, process group and session
 * (ctl_adopt_decide), so a pid the kernel has given to another program is
 * left alone. An adopted instance is a record like a fresh start (starting,
 * launched, its address and readiness path), so the supervisor probes it
 * as usual, counts it toward the desired count, keeps its gateway
 * registration (re-registering it only if the gateway lost it) and
 * replaces it if it dies. What died while no control plane ran is simply
 * gone (its log stays in <state_dir>/logs/).
 *
 * Only the process driver adopts (drv->adopt); the exec driver has its
 * `list` script instead. */
#include "control/ctl_mgr_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/ctl_instfile.h"
#include "core/log.h"

/* A saved entry becomes a launched record, probed before it counts as ready. */
static void adopt_one(ctl_mgr *m, const ctl_saved_inst *s, uint64_t now)
{
    ctl_rec_inst *r = ctl_mgr_add_locked(m, s->id, s->version[0] ? s->version : NULL);
    if (!r)
        return;
    snprintf(r->info.address, sizeof r->info.address, "%s", s->address);
    if (s->ready_path[0])
        snprintf(r->ready_path, sizeof r->ready_path, "%s", s->ready_path);
    r->info.pid = s->pid;
    r->ident = (proc_ident){ s->start, s->pgid, s->sid };
    r->info.state = CTL_INST_STARTING;
    r->info.started_at_us = ctl_wall_us();
    r->info.managed = r->restartable = r->launched = true;
    if (s->noport && m->tmpl.port == CTL_PORT_NONE)
        ctl_rec_take_template(m, r, &m->tmpl);   /* its ready_command, as for a fresh start */
    r->noport = s->noport;
    r->stop_how = s->stop_how;
    r->want_register = m->has_gw && !s->noport;
    r->info.registered = r->want_register && s->registered;
    r->deadline = now + (m->tmpl.start_timeout_us ? m->tmpl.start_timeout_us : 60000000u);
    r->next_probe = now;
}

int ctl_adopt_saved(ctl_mgr *m, char *err, size_t errlen)
{
    const char *dir = m->c->state_dir;
    if (!m->drv->adopt || !dir || !dir[0])
        return 0;
    if (snprintf(m->statefile, sizeof m->statefile, "%s/%s", dir, CTL_INSTFILE_NAME)
        >= (int)sizeof m->statefile) {
        snprintf(err, errlen, "state_dir: path too long");
        m->statefile[0] = '\0';
        return -1;
    }
    ctl_instfile f;
    char e[512];
    if (ctl_instfile_load(m->statefile, &f, e, sizeof e) < 0) {
        /* Set aside, not deleted: whoever looks finds what it named. */
        char aside[1200];
        snprintf(aside, sizeof aside, "%s.bad", m->statefile);
        int moved = rename(m->statefile, aside);
        log_warn("instance state file %s; adopting nothing (the file is %s)", e,
                 moved == 0 ? "kept as " CTL_INSTFILE_NAME ".bad" : strerror(errno));
        return 0;
    }
    /* Two control planes on one state_dir would take each other's
     * instances (and stop them if one then failed to start). */
    if (f.owner_pid > 0 && f.owner_pid != getpid() && proc_same(f.owner_pid, f.owner_start)) {
        snprintf(err, errlen, "state_dir %s is in use by a running control plane (pid %d); "
                 "stop it first (SIGTERM, or `hscale down --data %s`)", dir, (int)f.owner_pid, dir);
        ctl_instfile_free(&f);
        m->statefile[0] = '\0';
        return -1;
    }
    uint64_t now = ctl_mono_us();
    int adopted = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < f.n; i++) {
        const ctl_saved_inst *s = &f.insts[i];
        /* New ids continue past every saved one, adopted or not: an id
         * (and its log) names one instance over the state_dir's life. */
        unsigned num;
        if (sscanf(s->id, "i-%u", &num) == 1 && num >= m->next_id && num < UINT32_MAX)
            m->next_id = num + 1;
        ctl_adopt_verdict v = ctl_adopt_check(s);
        if (v == CTL_ADOPT_YES && ctl_mgr_find_locked(m, s->id))
            v = CTL_ADOPT_FOREIGN;   /* the exec list already has one by that id */
        if (v == CTL_ADOPT_YES && m->drv->adopt(m->drv, s->id, s->pid, s->start) < 0) {
            log_warn("%s (pid %d): cannot adopt it: out of memory", s->id, (int)s->pid);
            continue;
        }
        if (v != CTL_ADOPT_YES) {
            log_info("%s (pid %d) of the previous control plane not adopted: %s", s->id,
                     (int)s->pid, ctl_adopt_verdict_str(v));
            continue;
        }
        adopt_one(m, s, now);
        adopted++;
        log_info("%s at %s adopted (pid %d, version %s)", s->id,
                 s->address[0] ? s->address : "(no port)", (int)s->pid, s->version);
    }
    if (adopted > m->desired)
        m->desired = adopted;
    pthread_mutex_unlock(&m->mu);
    if (f.n)
        log_info("adopted %d of the %zu instance(s) the previous control plane left", adopted, f.n);
    ctl_instfile_free(&f);
    return 0;
}

void ctl_adopt_save(ctl_mgr *m)
{
    if (!m->statefile[0])
        return;
    static proc_ident owner;   /* this process: the same for every manager */
    if (!owner.start)
        proc_ident_read(getpid(), &owner);
    ctl_instfile f;
    memset(&f, 0, sizeof f);
    pthread_mutex_lock(&m->mu);
    if (m->saved_once && m->generation == m->saved_generation) {
        pthread_mutex_unlock(&m->mu);
        return;
    }
    uint64_t gen = m->generation;
    f.insts = calloc(m->nrecs ? m->nrecs : 1, sizeof *f.insts);
    for (size_t i = 0; f.insts && i < m->nrecs; i++) {
        const ctl_rec_inst *r = m->recs[i];
        if (!r->launched || r->info.pid <= 0 || !r->ident.start)
            continue;
        ctl_saved_inst *s = &f.insts[f.n++];
        snprintf(s->id, sizeof s->id, "%s", r->info.id);
        s->pid = r->info.pid;
        s->start = r->ident.start;
        s->pgid = r->ident.pgid;
        s->sid = r->ident.sid;
        snprintf(s->address, sizeof s->address, "%s", r->info.address);
        snprintf(s->version, sizeof s->version, "%s", r->info.version);
        snprintf(s->ready_path, sizeof s->ready_path, "%s", r->ready_path);
        s->noport = r->noport;
        s->stop_how = r->stop_how;
        s->managed = r->info.managed;
        s->registered = r->info.registered;
    }
    pthread_mutex_unlock(&m->mu);
    if (!f.insts) {
        log_warn("instance state file %s: out of memory", m->statefile);
        return;
    }
    f.owner_pid = getpid();
    f.owner_start = owner.start;
    snprintf(f.pool, sizeof f.pool, "%s", m->c->pool ? m->c->pool : "");
    snprintf(f.gateway, sizeof f.gateway, "%s", m->has_gw ? m->gw.base : "");
    char err[512];
    if (ctl_instfile_write(m->statefile, &f, err, sizeof err) < 0)
        log_warn("instance state file: %s (instances still run; a restart would not adopt them)",
                 err);
    /* A failed write is retried on the next change, not every tick. */
    m->saved_generation = gen;
    m->saved_once = true;
    ctl_instfile_free(&f);
}
