/* gw_health_check.c -- active health checks: one thread that requests
 * each pool's check path on every member at the pool's interval and
 * feeds the rise/fall state machine (gw_health_observe), publishing the
 * verdict into the member's `healthy` flag that the balancer reads.
 *
 * The thread keeps its own table of members it tracks, each pinned with a
 * reference, refreshed from the current snapshot under the edit lock every
 * tick; checks themselves run outside the lock with the blocking client
 * (bounded by the pool's timeout), so a slow backend delays the next
 * check, never a request. A member that recovers restarts its slow start.
 * An https pool (tls: true) is checked over TLS with the pool's CA file,
 * server name and verification, so a member whose certificate would be
 * refused on requests is marked down by its checks too; the reason of the
 * last failed check goes into the log line that takes a member out. */
#include "gateway/gw_proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

typedef struct hc_entry {
    gw_member   *m;              /* pinned */
    char         pool[GW_NAME_MAX];
    gw_health_sm sm;
    uint64_t     next_us;
    bool         seen;           /* still in the snapshot this tick */
    /* check parameters, copied from the pool's config each tick */
    char         path[256];
    uint64_t     interval_us, timeout_us;
    int          status_min, status_max;
    bool         tls, tls_verify;
    char         tls_ca_file[1024];      /* "" : the system store */
    char         tls_server_name[256];   /* "" : the member's host */
    char         last_err[256];          /* why the last check failed */
} hc_entry;

typedef struct hc_table { hc_entry *e; size_t n, cap; } hc_table;

static hc_entry *table_find(hc_table *t, const gw_member *m, const char *pool)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->e[i].m == m && strcmp(t->e[i].pool, pool) == 0)
            return &t->e[i];
    return NULL;
}

/* Brings the table in line with the current snapshot. */
static void refresh(gw_rt *rt, hc_table *t, uint64_t now)
{
    for (size_t i = 0; i < t->n; i++)
        t->e[i].seen = false;
    pthread_mutex_lock(&rt->edit_lock);
    const gw_snap *s = gw_rcu_read(&rt->rcu);
    for (size_t p = 0; p < s->npools; p++) {
        const gw_health_cfg *hc = &s->pool_cfg[p].health;
        if (!hc->enabled)
            continue;
        for (uint32_t k = 0; k < s->pools[p].n; k++) {
            gw_member *m = s->pools[p].members[k];
            hc_entry *e = table_find(t, m, s->pools[p].name);
            if (!e) {
                if (t->n == t->cap) {
                    size_t nc = t->cap ? t->cap * 2 : 16;
                    hc_entry *ne = realloc(t->e, nc * sizeof *ne);
                    if (!ne)
                        continue;
                    t->e = ne;
                    t->cap = nc;
                }
                e = &t->e[t->n++];
                memset(e, 0, sizeof *e);
                e->m = m;
                gw_member_ref(m);
                snprintf(e->pool, sizeof e->pool, "%s", s->pools[p].name);
                gw_health_init(&e->sm, (uint16_t)hc->rise, (uint16_t)hc->fall,
                               atomic_load(&m->healthy));
                e->next_us = now;      /* check a new member at once */
            }
            e->seen = true;
            e->sm.rise = (uint16_t)(hc->rise ? hc->rise : 1);
            e->sm.fall = (uint16_t)(hc->fall ? hc->fall : 1);
            snprintf(e->path, sizeof e->path, "%s", hc->path ? hc->path : "/health/ready");
            e->interval_us = hc->interval_us;
            e->timeout_us = hc->timeout_us;
            e->status_min = hc->status_min;
            e->status_max = hc->status_max;
            const gw_pool_cfg *pc = &s->pool_cfg[p];
            e->tls = pc->tls;
            e->tls_verify = pc->tls_verify;
            snprintf(e->tls_ca_file, sizeof e->tls_ca_file, "%s", pc->tls_ca_file ? pc->tls_ca_file : "");
            snprintf(e->tls_server_name, sizeof e->tls_server_name, "%s",
                     pc->tls_server_name ? pc->tls_server_name : "");
        }
    }
    pthread_mutex_unlock(&rt->edit_lock);
    size_t keep = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->e[i].seen)
            t->e[keep++] = t->e[i];
        else
            gw_member_unref(t->e[i].m);
    }
    t->n = keep;
}

static bool check_once(hc_entry *e)
{
    char url[512], err[256] = "";
    snprintf(url, sizeof url, "%s://%s%s", e->tls ? "https" : "http", e->m->name, e->path);
    http_tls_client tls = {
        .ca_file = e->tls_ca_file[0] ? e->tls_ca_file : NULL,
        .server_name = e->tls_server_name[0] ? e->tls_server_name : NULL,
        .verify = e->tls_verify,
    };
    http_result r;
    http_result_init(&r);
    int timeout_ms = (int)(e->timeout_us / 1000);
    int rc = http_fetch_tls("GET", url, "User-Agent: hscale-gateway-health\r\n", NULL, 0,
                            timeout_ms > 0 ? timeout_ms : 1, e->tls ? &tls : NULL, &r, err,
                            sizeof err);
    bool ok = rc == 0 && r.status >= e->status_min && r.status <= e->status_max;
    if (rc == 0 && !ok)
        snprintf(err, sizeof err, "status %d", r.status);
    if (!ok)
        snprintf(e->last_err, sizeof e->last_err, "%s", err);
    http_result_free(&r);
    return ok;
}

static void *health_main(void *arg)
{
    gw_rt *rt = arg;
    hc_table t = { 0 };
    while (!atomic_load(&rt->health_stop)) {
        uint64_t now = ev_monotonic_us();
        refresh(rt, &t, now);
        for (size_t i = 0; i < t.n && !atomic_load(&rt->health_stop); i++) {
            hc_entry *e = &t.e[i];
            if (now < e->next_us)
                continue;
            bool ok = check_once(e);
            now = ev_monotonic_us();
            e->next_us = now + e->interval_us;
            int tr = gw_health_observe(&e->sm, ok);
            if (tr > 0) {
                atomic_store(&e->m->up_since_us, now);
                atomic_store(&e->m->healthy, true);
                log_info("%s in pool %s is healthy again", e->m->name, e->pool);
            } else if (tr < 0) {
                atomic_store(&e->m->healthy, false);
                log_warn("%s in pool %s failed %u health checks: out of rotation (last: %s)",
                         e->m->name, e->pool, e->sm.fall, e->last_err);
            }
        }
        struct timespec ts = { 0, 20 * 1000000 };
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; i < t.n; i++)
        gw_member_unref(t.e[i].m);
    free(t.e);
    http_fetch_pool_clear();
    return NULL;
}

int gw_health_start(gw_rt *rt)
{
    atomic_store(&rt->health_stop, false);
    if (pthread_create(&rt->health_th, NULL, health_main, rt) != 0)
        return -1;
    rt->health_started = true;
    return 0;
}

void gw_health_stop(gw_rt *rt)
{
    if (!rt->health_started)
        return;
    atomic_store(&rt->health_stop, true);
    pthread_join(rt->health_th, NULL);
    rt->health_started = false;
}
