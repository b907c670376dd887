/* ctl_instances.c -- the instance manager's front: records, the requests
 * other threads make (desired count, starts for deploys, retire), and the
 * copies they read. Nothing here blocks on I/O or touches a driver: every
 * action is the supervisor's (ctl_supervise.c), woken through m->cv.
 *
 * Invariant: the managed count the supervisor converges to is the number
 * of records with info.managed and not retire; scale-in retires records
 * (drain, then stop) instead of deleting them, so a record leaves the list
 * only once its instance is gone. */
#include "control/ctl_mgr_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

uint64_t ctl_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t ctl_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

const char *ctl_inst_state_name(ctl_inst_state s)
{
    static const char *const names[] = { "starting", "ready", "draining", "stopping",
                                         "stopped", "failed" };
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown";
}

ctl_mgr *ctl_mgr_new(const ctl_config *c, ctl_driver *drv, char *err, size_t errlen)
{
    ctl_mgr *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        drv->free(drv);
        return NULL;
    }
    m->c = c;
    m->drv = drv;
    m->desired = c->instances;
    m->next_id = 1;
    if (c->gateway && c->gateway[0]) {
        if (ctl_gw_init(&m->gw, c->gateway, c->gateway_token, err, errlen) < 0)
            goto fail;
        m->has_gw = true;
    }
    if (cfg_copy(&ctl_template_schema, &m->tmpl, &c->tmpl) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    return m;
fail:
    drv->free(drv);
    free(m);
    return NULL;
}

void ctl_mgr_rec_free(ctl_rec_inst *r)
{
    ctl_argv_free(r->ready_argv);
    ctl_argv_free(r->ready_env);
    free(r->ready_cwd);
    cfg_free(&ctl_template_schema, &r->job.tmpl);
    if (r->tmpl) {
        cfg_free(&ctl_template_schema, r->tmpl);
        free(r->tmpl);
    }
    free(r);
}

ctl_rec_inst *ctl_mgr_add_locked(ctl_mgr *m, const char *id, const char *version)
{
    if (m->nrecs == m->caprecs) {
        size_t cap = m->caprecs ? m->caprecs * 2 : 16;
        ctl_rec_inst **n = realloc(m->recs, cap * sizeof *n);
        if (!n)
            return NULL;
        m->recs = n;
        m->caprecs = cap;
    }
    ctl_rec_inst *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (id)
        snprintf(r->info.id, sizeof r->info.id, "%s", id);
    else
        snprintf(r->info.id, sizeof r->info.id, "i-%u", m->next_id++);
    snprintf(r->info.version, sizeof r->info.version, "%s",
             version ? version : m->tmpl.version ? m->tmpl.version : "");
    snprintf(r->ready_path, sizeof r->ready_path, "%s",
             m->tmpl.ready_path && m->tmpl.ready_path[0] ? m->tmpl.ready_path : "/health/ready");
    r->info.state = CTL_INST_STARTING;
    m->recs[m->nrecs++] = r;
    m->wake = true;
    ctl_mgr_changed_locked(m);
    return r;
}

ctl_rec_inst *ctl_mgr_find_locked(ctl_mgr *m, const char *id)
{
    for (size_t i = 0; i < m->nrecs; i++)
        if (strcmp(m->recs[i]->info.id, id) == 0)
            return m->recs[i];
    return NULL;
}

int ctl_mgr_start(ctl_mgr *m, char *err, size_t errlen)
{
    /* Adopt what the driver already runs (exec `list`): they count toward
     * the desired count and are probed like fresh starts. */
    if (m->drv->list) {
        ctl_found found[256];
        int n = m->drv->list(m->drv, found, 256, err, errlen);
        if (n < 0)
            return -1;
        pthread_mutex_lock(&m->mu);
        for (int i = 0; i < n; i++) {
            ctl_rec_inst *r = ctl_mgr_add_locked(m, found[i].id, NULL);
            if (!r)
                break;
            snprintf(r->info.address, sizeof r->info.address, "%s", found[i].address);
            r->info.managed = r->restartable = r->launched = true;
            r->want_register = m->has_gw;
            r->info.started_at_us = ctl_wall_us();
            r->deadline = ctl_mono_us() + m->c->tmpl.start_timeout_us;
            unsigned num;
            if (sscanf(found[i].id, "i-%u", &num) == 1 && num >= m->next_id)
                m->next_id = num + 1;
        }
        if (n > m->desired)
            m->desired = n;
        pthread_mutex_unlock(&m->mu);
        if (n > 0)
            log_info("adopted %d instance(s) listed by the %s driver", n, m->drv->name);
    }
    /* Then what a previous control plane of this state_dir left running. */
    if (ctl_adopt_saved(m, err, errlen) < 0)
        return -1;
    int rc = pthread_create(&m->thread, NULL, ctl_supervise_main, m);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the supervisor thread: %s", strerror(rc));
        return -1;
    }
    m->started = true;
    return 0;
}

void ctl_mgr_stop(ctl_mgr *m)
{
    if (!m->started)
        return;
    pthread_mutex_lock(&m->mu);
    m->stopping = true;
    m->desired = 0;
    /* Drain, grace, and a margin for scripts and probes in between. */
    m->stop_deadline = ctl_mono_us() + m->c->drain_timeout_us + m->c->stop_grace_us + 5000000;
    for (size_t i = 0; i < m->nrecs; i++)
        m->recs[i]->retire = true;
    m->wake = true;
    ctl_mgr_changed_locked(m);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    m->started = false;
}

void ctl_mgr_free(ctl_mgr *m)
{
    if (!m)
        return;
    ctl_mgr_stop(m);
    for (size_t i = 0; i < m->nrecs; i++)
        ctl_mgr_rec_free(m->recs[i]);
    free(m->recs);
    cfg_free(&ctl_template_schema, &m->tmpl);
    m->drv->free(m->drv);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m);
}

int ctl_instances_scale_to(ctl_mgr *m, int n)
{
    if (n < 0)
        return -1;
    pthread_mutex_lock(&m->mu);
    int rc = m->stopping ? -1 : 0;
    if (rc == 0 && m->desired != n) {
        log_info("desired instances %d -> %d", m->desired, n);
        m->desired = n;
        m->wake = true;
        ctl_mgr_changed_locked(m);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int ctl_instances_desired(ctl_mgr *m)
{
    pthread_mutex_lock(&m->mu);
    int d = m->desired;
    pthread_mutex_unlock(&m->mu);
    return d;
}

size_t ctl_instances_list(ctl_mgr *m, ctl_instance_info *out, size_t max)
{
    pthread_mutex_lock(&m->mu);
    size_t n = m->nrecs;
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = m->recs[i]->info;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void ctl_instances_counts(ctl_mgr *m, int *starting, int *ready, int *leaving, int *failed)
{
    *starting = *ready = *leaving = *failed = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->nrecs; i++) {
        const ctl_rec_inst *r = m->recs[i];
        switch (r->info.state) {
        case CTL_INST_STARTING: ++*starting; break;
        case CTL_INST_READY:    ++*ready; break;
        case CTL_INST_FAILED:   ++*failed; break;
        default:                ++*leaving; break;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

uint64_t ctl_instances_generation(ctl_mgr *m)
{
    pthread_mutex_lock(&m->mu);
    uint64_t g = m->generation;
    pthread_mutex_unlock(&m->mu);
    return g;
}

uint64_t ctl_instances_restarts_total(ctl_mgr *m)
{
    pthread_mutex_lock(&m->mu);
    uint64_t n = m->restarts_total;
    pthread_mutex_unlock(&m->mu);
    return n;
}

static void json_str(buf *b, const char *s)
{
    buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            buf_printf(b, "\\u%04x", *p);
        else
            buf_append(b, p, 1);
    }
    buf_append(b, "\"", 1);
}

static void json_time(buf *b, uint64_t us)
{
    if (us)
        buf_printf(b, "%.3f", (double)us / 1e6);
    else
        buf_append_str(b, "null");
}

static void info_json(buf *b, const ctl_instance_info *i)
{
    buf_append_str(b, "{\"id\":");
    json_str(b, i->id);
    buf_append_str(b, ",\"address\":");
    json_str(b, i->address);
    buf_append_str(b, ",\"version\":");
    json_str(b, i->version);
    buf_printf(b, ",\"state\":\"%s\",\"pid\":%d,\"started_at\":", ctl_inst_state_name(i->state),
               (int)i->pid);
    json_time(b, i->started_at_us);
    buf_append_str(b, ",\"ready_at\":");
    json_time(b, i->ready_at_us);
    buf_printf(b, ",\"restarts\":%d,\"managed\":%s,\"registered\":%s,\"healthy\":%s,\"last_error\":",
               i->restarts, i->managed ? "true" : "false", i->registered ? "true" : "false",
               i->healthy ? "true" : "false");
    if (i->last_error[0])
        json_str(b, i->last_error);
    else
        buf_append_str(b, "null");
    buf_append_str(b, "}");
}

void ctl_instances_json(ctl_mgr *m, buf *out)
{
    pthread_mutex_lock(&m->mu);
    buf_append_str(out, "{\"instances\":[");
    for (size_t i = 0; i < m->nrecs; i++) {
        if (i)
            buf_append_str(out, ",");
        info_json(out, &m->recs[i]->info);
    }
    buf_append_str(out, "]}");
    pthread_mutex_unlock(&m->mu);
}

int ctl_instances_start(ctl_mgr *m, const ctl_template_cfg *t, const char *version,
                        unsigned flags, char *id, size_t idlen, char *err, size_t errlen)
{
    ctl_template_cfg *copy = NULL;
    if (t) {
        copy = calloc(1, sizeof *copy);
        if (!copy || cfg_copy(&ctl_template_schema, copy, t) < 0) {
            free(copy);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    pthread_mutex_lock(&m->mu);
    ctl_rec_inst *r = m->stopping ? NULL
                    : ctl_mgr_add_locked(m, NULL, version ? version : t ? t->version : NULL);
    if (r) {
        r->tmpl = copy;
        r->info.managed = r->restartable = (flags & CTL_START_MANAGED) != 0;
        r->want_register = (flags & CTL_START_REGISTER) && m->has_gw;
        snprintf(id, idlen, "%s", r->info.id);
    }
    pthread_mutex_unlock(&m->mu);
    if (!r) {
        if (copy) {
            cfg_free(&ctl_template_schema, copy);
            free(copy);
        }
        snprintf(err, errlen, m->stopping ? "the control plane is stopping" : "out of memory");
        return -1;
    }
    return 0;
}

/* Waits on cv until pred is true for id; 0, or -1 with why. */
static int wait_for(ctl_mgr *m, const char *id, uint64_t timeout_us, bool ready,
                    char *err, size_t errlen)
{
    uint64_t deadline = ctl_mono_us() + timeout_us;
    struct timespec ts = { (time_t)(deadline / 1000000u), (long)(deadline % 1000000u) * 1000 };
    int rc = -1;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        ctl_rec_inst *r = ctl_mgr_find_locked(m, id);
        if (!r) {
            rc = ready ? -1 : 0;
            if (ready)
                snprintf(err, errlen, "instance %s is gone", id);
            break;
        }
        if (ready && r->info.state == CTL_INST_READY) {
            rc = 0;
            break;
        }
        if (ready && (r->info.state == CTL_INST_FAILED || r->retire)) {
            snprintf(err, errlen, "instance %s failed: %s", id,
                     r->info.last_error[0] ? r->info.last_error : "retired");
            break;
        }
        if (pthread_cond_timedwait(&m->cv, &m->mu, &ts) == ETIMEDOUT) {
            snprintf(err, errlen, "instance %s: timed out in state %s", id,
                     ctl_inst_state_name(r->info.state));
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int ctl_instances_wait_ready(ctl_mgr *m, const char *id, uint64_t timeout_us,
                             char *err, size_t errlen)
{
    return wait_for(m, id, timeout_us, true, err, errlen);
}

int ctl_instances_wait_gone(ctl_mgr *m, const char *id, uint64_t timeout_us)
{
    char err[160];
    return wait_for(m, id, timeout_us, false, err, sizeof err);
}

int ctl_instances_register(ctl_mgr *m, const char *id, bool managed, char *err, size_t errlen)
{
    pthread_mutex_lock(&m->mu);
    ctl_rec_inst *r = ctl_mgr_find_locked(m, id);
    int rc = 0;
    if (!r || r->retire) {
        snprintf(err, errlen, "no instance '%s'", id);
        rc = -1;
    } else {
        r->want_register = m->has_gw;
        if (managed)
            r->info.managed = r->restartable = true;
        m->wake = true;
        ctl_mgr_changed_locked(m);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int ctl_instances_replace(ctl_mgr *m, const char *new_id, const char *old_id,
                          char *err, size_t errlen)
{
    pthread_mutex_lock(&m->mu);
    ctl_rec_inst *n = ctl_mgr_find_locked(m, new_id);
    ctl_rec_inst *o = ctl_mgr_find_locked(m, old_id);
    int rc = 0;
    if (!n || n->retire || !o) {
        snprintf(err, errlen, "no instance '%s'", !n || n->retire ? new_id : old_id);
        rc = -1;
    } else {
        n->info.managed = n->restartable = true;
        n->want_register = m->has_gw;
        o->retire = true;
        m->wake = true;
        ctl_mgr_changed_locked(m);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int ctl_instances_retire(ctl_mgr *m, const char *id, char *err, size_t errlen)
{
    pthread_mutex_lock(&m->mu);
    ctl_rec_inst *r = ctl_mgr_find_locked(m, id);
    if (r) {
        r->retire = true;
        m->wake = true;
        ctl_mgr_changed_locked(m);
    } else
        snprintf(err, errlen, "no instance '%s'", id);
    pthread_mutex_unlock(&m->mu);
    return r ? 0 : -1;
}

int ctl_instances_set_template(ctl_mgr *m, const ctl_template_cfg *t, char *err, size_t errlen)
{
    ctl_template_cfg copy;
    memset(&copy, 0, sizeof copy);
    if (cfg_copy(&ctl_template_schema, &copy, t) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&m->mu);
    /* The supervisor reads m->tmpl only under mu (it copies what it needs). */
    ctl_template_cfg old = m->tmpl;
    m->tmpl = copy;
    pthread_mutex_unlock(&m->mu);
    cfg_free(&ctl_template_schema, &old);
    return 0;
}
