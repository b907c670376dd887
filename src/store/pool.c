/* pool.c -- a bounded connection pool per database (the SurgiCase knobs:
 * size, overflow, acquire timeout, recycle age, pre-ping).
 *
 * Every connection has a maximum lifetime: `recycle`, less a random part
 * of up to a fifth of it drawn when it opens, so connections opened in
 * one burst do not all expire in the same second. An expired connection
 * is closed when returned or reopened when taken, so long-lived pools keep
 * spreading over the servers behind a name (a reader endpoint, a DNS
 * change) and over replicas added at run time. A retired pool (its replica
 * was removed) closes its idle connections at once and every busy one
 * when it comes back: in-flight queries finish, nothing new starts.
 *
 * Invariant, under mu: idle + busy <= size + overflow, so the database
 * never sees more connections than configured; connections beyond `size`
 * are closed when returned, so a burst does not leave them open.
 * Connections are opened and pinged outside the lock (a slow server must
 * not stall other threads' releases); the slot is reserved first, counted
 * as busy, so the bound holds meanwhile. Waiters sleep on a condvar with a
 * deadline: exhaustion is an ST_ETIMEOUT after acquire_timeout, never an
 * endless block. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_int.h"

struct st_pool {
    const st_driver *drv;
    char            *url;
    st_pool_cfg      cfg;
    pthread_mutex_t  mu;
    pthread_cond_t   cv;
    st_conn         *idle;       /* LIFO: the warmest connection first */
    int              nidle, nbusy, nwaiting;
    int              fail_pings; /* test hook */
    bool             retired;    /* closing: every returned connection is closed */
    st_pool_stats    st;
};

st_pool *st_pool_new(const st_driver *d, const char *url, const st_pool_cfg *cfg, st_err *err)
{
    if (!d || !url) {
        st_fail(err, ST_EINVAL, "pool: no driver for url '%s'", url ? url : "(null)");
        return NULL;
    }
    st_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->url = strdup(url))) {
        free(p);
        st_fail(err, ST_ENOMEM, "out of memory");
        return NULL;
    }
    p->drv = d;
    if (cfg)
        p->cfg = *cfg;
    if (p->cfg.size <= 0)
        p->cfg.size = 10;
    if (p->cfg.overflow < 0)
        p->cfg.overflow = 0;
    if (!p->cfg.acquire_timeout)
        p->cfg.acquire_timeout = 30000000u;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    p->st.max = p->cfg.size + p->cfg.overflow;
    return p;
}

static void conn_close(st_conn *c)
{
    c->drv->close(c->h);
    free(c);
}

void st_pool_free(st_pool *p)
{
    if (!p)
        return;
    /* Busy connections are the callers' to return first; free the idle. */
    while (p->idle) {
        st_conn *c = p->idle;
        p->idle = c->next;
        conn_close(c);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->url);
    free(p);
}

const char *st_pool_url(const st_pool *p) { return p->url; }
const st_pool_cfg *st_pool_cfg_of(const st_pool *p) { return &p->cfg; }

void st_pool_fail_next_pings(st_pool *p, int n)
{
    pthread_mutex_lock(&p->mu);
    p->fail_pings = n;
    pthread_mutex_unlock(&p->mu);
}

static st_conn *conn_open(st_pool *p, st_err *err)
{
    st_conn *c = calloc(1, sizeof *c);
    if (!c) {
        st_fail(err, ST_ENOMEM, "out of memory");
        return NULL;
    }
    if (p->drv->open(p->url, &c->h, err) < 0) {
        free(c);
        return NULL;
    }
    c->drv = p->drv;
    c->pool = p;
    c->created_us = c->last_used_us = st_now_us();
    c->expires_us = 0;
    if (p->cfg.recycle) {
        /* Up to 20 % early: a jitter, so that a burst's connections do not
         * all expire at once. */
        uint64_t jitter = p->cfg.recycle / 5;
        c->expires_us = c->created_us + p->cfg.recycle -
                        (jitter ? (uint64_t)random() % jitter : 0);
    }
    return c;
}

static bool conn_ping(st_pool *p, st_conn *c)
{
    pthread_mutex_lock(&p->mu);
    bool fake_fail = p->fail_pings > 0;
    if (fake_fail)
        p->fail_pings--;
    pthread_mutex_unlock(&p->mu);
    if (fake_fail)
        return false;
    return st_conn_exec(c, "SELECT 1", NULL, 0, NULL, NULL) == 0;
}

/* Gives up a reserved busy slot (after a failed open) and wakes a waiter,
 * who may now open in its place. */
static void slot_drop(st_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->nbusy--;
    p->st.closed++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* A connection taken from the idle list: recycled when too old, pinged
 * when idle for long, replaced when the ping fails. */
static st_conn *conn_vet(st_pool *p, st_conn *c, st_err *err)
{
    uint64_t now = st_now_us();
    bool replace = false;
    if (c->expires_us && now >= c->expires_us) {
        replace = true;
        pthread_mutex_lock(&p->mu);
        p->st.recycled++;
        pthread_mutex_unlock(&p->mu);
    } else if (p->cfg.pre_ping && now - c->last_used_us >= p->cfg.pre_ping_idle &&
               !conn_ping(p, c)) {
        replace = true;
        pthread_mutex_lock(&p->mu);
        p->st.ping_failures++;
        pthread_mutex_unlock(&p->mu);
    }
    if (!replace)
        return c;
    conn_close(c);
    pthread_mutex_lock(&p->mu);
    p->st.closed++;
    pthread_mutex_unlock(&p->mu);
    st_conn *fresh = conn_open(p, err);
    if (!fresh) {
        slot_drop(p);
        return NULL;
    }
    pthread_mutex_lock(&p->mu);
    p->st.opened++;
    pthread_mutex_unlock(&p->mu);
    return fresh;
}

st_conn *st_pool_acquire(st_pool *p, st_err *err)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(p->cfg.acquire_timeout / 1000000u);
    deadline.tv_nsec += (long)(p->cfg.acquire_timeout % 1000000u) * 1000;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    p->st.acquires++;
    for (;;) {
        if (p->idle) {
            st_conn *c = p->idle;
            p->idle = c->next;
            c->next = NULL;
            p->nidle--;
            p->nbusy++;
            pthread_mutex_unlock(&p->mu);
            return conn_vet(p, c, err);
        }
        if (p->nidle + p->nbusy < p->cfg.size + p->cfg.overflow) {
            p->nbusy++;
            pthread_mutex_unlock(&p->mu);
            st_conn *c = conn_open(p, err);
            if (!c) {
                slot_drop(p);
                return NULL;
            }
            pthread_mutex_lock(&p->mu);
            p->st.opened++;
            pthread_mutex_unlock(&p->mu);
            return c;
        }
        p->nwaiting++;
        int rc = pthread_cond_timedwait(&p->cv, &p->mu, &deadline);
        p->nwaiting--;
        if (rc != 0 && !p->idle &&
            p->nidle + p->nbusy >= p->cfg.size + p->cfg.overflow) {
            p->st.timeouts++;
            int busy = p->nbusy;
            pthread_mutex_unlock(&p->mu);
            return st_fail(err, ST_ETIMEOUT, "pool exhausted: %d connections busy for %llu ms",
                           busy, (unsigned long long)(p->cfg.acquire_timeout / 1000)), NULL;
        }
    }
}

void st_pool_release(st_pool *p, st_conn *c, bool discard)
{
    if (!c)
        return;
    pthread_mutex_lock(&p->mu);
    p->nbusy--;
    bool expired = c->expires_us && st_now_us() >= c->expires_us;
    bool close = discard || c->broken || p->retired || expired ||
                 p->nidle + p->nbusy >= p->cfg.size;
    if (close) {
        p->st.closed++;
        if (expired && !discard && !c->broken)
            p->st.recycled++;
    } else {
        c->last_used_us = st_now_us();
        c->next = p->idle;
        p->idle = c;
        p->nidle++;
    }
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (close)
        conn_close(c);
}

void st_pool_drop_idle(st_pool *p)
{
    pthread_mutex_lock(&p->mu);
    st_conn *list = p->idle;
    p->st.closed += (uint64_t)p->nidle;
    p->idle = NULL;
    p->nidle = 0;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    while (list) {
        st_conn *c = list;
        list = c->next;
        conn_close(c);
    }
}

void st_pool_retire(st_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->retired = true;
    pthread_mutex_unlock(&p->mu);
    st_pool_drop_idle(p);
}

void st_pool_stats_get(st_pool *p, st_pool_stats *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->st;
    out->idle = p->nidle;
    out->busy = p->nbusy;
    out->total = p->nidle + p->nbusy;
    out->waiting = p->nwaiting;
    pthread_mutex_unlock(&p->mu);
}
