/* ctl_deploy_ops.c -- the deploy strategies' hands: start a batch of new
 * instances, smoke-test them, move routes, drain the second pool, fold
 * new instances into the control pool, scrape the gateway.
 *
 * Instances of the second pool are started unregistered and uncounted, so
 * the manager neither routes to them nor converges them; the deploy
 * registers them in the second pool itself and, when it succeeds, hands
 * them to the manager (ctl_dep_fold) so that between deploys the control
 * pool again holds every counted instance. */
#include "control/ctl_deploy_int.h"
#include "control/ctl_mgr_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "http/client.h"

int ctl_dep_scrape(ctl_dep_run *r, ctl_gwm_scrape *out, ctl_lat *stable, ctl_lat *next,
                   char *err, size_t errlen)
{
    char url[320];
    snprintf(url, sizeof url, "%s/metrics", r->gw.base);
    http_result res;
    http_result_init(&res);
    int rc = http_fetch("GET", url, r->gw.auth, NULL, 0, 5000, &res, err, errlen);
    if (rc == 0 && res.status != 200) {
        snprintf(err, errlen, "gateway /metrics: status %d", res.status);
        rc = -1;
    }
    if (rc == 0)
        rc = ctl_gwm_parse(out, buf_head(&res.body), res.body.len, ctl_wall_us(), err, errlen);
    if (rc == 0 && stable)
        rc = ctl_dep_pool_lat(buf_head(&res.body), res.body.len, r->c->pool, stable, err, errlen);
    if (rc == 0 && next)
        rc = ctl_dep_pool_lat(buf_head(&res.body), res.body.len, r->next_pool, next, err, errlen);
    http_result_free(&res);
    return rc;
}

int ctl_dep_route(ctl_dep_run *r, int stable_w, int next_w, char *err, size_t errlen)
{
    char url[320];
    snprintf(url, sizeof url, "%s/api/v1/routes", r->gw.base);
    http_result res;
    http_result_init(&res);
    char e[256];
    int rc = http_fetch("GET", url, r->gw.auth, NULL, 0, 5000, &res, e, sizeof e);
    if (rc < 0 || res.status != 200) {
        snprintf(err, errlen, "routes: GET failed: %s", rc < 0 ? e : "non-200 status");
        http_result_free(&res);
        return -1;
    }
    int touched = 0;
    char *body = ctl_dep_routes_rewrite(buf_head(&res.body), res.body.len, r->c->pool,
                                        r->next_pool, stable_w, next_w, &touched, err, errlen);
    http_result_free(&res);
    if (!body)
        return -1;
    if (touched == 0) {
        free(body);
        snprintf(err, errlen, "routes: no gateway route serves pool '%s'", r->c->pool);
        return -1;
    }
    char hdr[400];
    snprintf(hdr, sizeof hdr, "%sContent-Type: application/json\r\n", r->gw.auth);
    http_result_init(&res);
    rc = http_fetch("PUT", url, hdr, body, strlen(body), 5000, &res, e, sizeof e);
    free(body);
    if (rc < 0 || res.status != 200) {
        snprintf(err, errlen, "routes: PUT refused: %s%.*s", rc < 0 ? e : "",
                 rc < 0 ? 0 : (int)(res.body.len > 200 ? 200 : res.body.len),
                 rc < 0 ? "" : buf_head(&res.body));
        http_result_free(&res);
        return -1;
    }
    http_result_free(&res);
    return 0;
}

size_t ctl_dep_managed(ctl_dep_run *r, ctl_dep_inst *out, size_t max)
{
    ctl_mgr *m = r->m;
    size_t n = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->nrecs; i++) {
        const ctl_rec_inst *x = m->recs[i];
        if (!x->info.managed || x->retire || x->info.state == CTL_INST_STOPPED)
            continue;
        if (n < max) {
            snprintf(out[n].id, sizeof out[n].id, "%s", x->info.id);
            snprintf(out[n].address, sizeof out[n].address, "%s", x->info.address);
            snprintf(out[n].version, sizeof out[n].version, "%s", x->info.version);
        }
        n++;
    }
    pthread_mutex_unlock(&m->mu);
    return n < max ? n : max;
}

static void address_of(ctl_mgr *m, ctl_dep_inst *in)
{
    pthread_mutex_lock(&m->mu);
    const ctl_rec_inst *x = ctl_mgr_find_locked(m, in->id);
    if (x)
        snprintf(in->address, sizeof in->address, "%s", x->info.address);
    pthread_mutex_unlock(&m->mu);
}

int ctl_dep_start_batch(ctl_dep_run *r, const ctl_template_cfg *t, const char *version,
                        int n, ctl_dep_inst *out, char *err, size_t errlen)
{
    int started = 0;
    for (; started < n; started++) {
        ctl_dep_inst *in = &out[started];
        memset(in, 0, sizeof *in);
        if (ctl_instances_start(r->m, t, version, 0, in->id, sizeof in->id, err, errlen) < 0)
            goto fail;
        snprintf(in->version, sizeof in->version, "%s", version);
    }
    /* They boot in parallel; one deadline bounds the whole batch. */
    uint64_t deadline = ctl_mono_us() + r->s->ready_timeout_us;
    for (int i = 0; i < n; i++) {
        uint64_t now = ctl_mono_us();
        char e[256];
        if (ctl_instances_wait_ready(r->m, out[i].id, deadline > now ? deadline - now : 1,
                                     e, sizeof e) < 0) {
            snprintf(err, errlen, "readiness: %s (ready_timeout %.1f s)", e,
                     (double)r->s->ready_timeout_us / 1e6);
            goto fail;
        }
        address_of(r->m, &out[i]);
        if (ctl_dep_check(r) == CTL_W_ABORT) {
            snprintf(err, errlen, "the control plane is stopping");
            goto fail;
        }
    }
    return 0;
fail:
    for (int i = 0; i < started; i++) {
        char e[160];
        ctl_instances_retire(r->m, out[i].id, e, sizeof e);
    }
    return -1;
}

void ctl_dep_drain_next(ctl_dep_run *r, const ctl_dep_inst *in, size_t n, bool retire)
{
    uint64_t drain = r->c->drain_timeout_us;
    char err[512];
    for (size_t i = 0; i < n; i++)
        if (in[i].address[0] && ctl_gw_drain(&r->gw, r->next_pool, in[i].address, drain,
                                             err, sizeof err) < 0)
            log_warn("deploy: %s", err);
    /* The gateway removes each member once idle (or at the drain time):
     * wait for that before stopping, so no request is cut. */
    uint64_t deadline = ctl_mono_us() + drain + 500000u;
    static ctl_gw_member mem[256];   /* the deploy thread is the only user */
    while (ctl_mono_us() < deadline) {
        size_t nm = 0;
        if (ctl_gw_members(&r->gw, r->next_pool, mem, 256, &nm, err, sizeof err) < 0)
            break;
        bool left = false;
        for (size_t i = 0; i < n && !left; i++)
            for (size_t k = 0; k < nm && k < 256 && !left; k++)
                left = strcmp(mem[k].address, in[i].address) == 0;
        if (!left)
            break;
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; retire && i < n; i++)
        ctl_instances_retire(r->m, in[i].id, err, sizeof err);
}

int ctl_dep_smoke_run(ctl_dep_run *r, const ctl_dep_inst *in, size_t n, char *err, size_t errlen)
{
    const ctl_dep_spec *s = r->s;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < s->nsmoke; k++) {
            char url[400];
            snprintf(url, sizeof url, "http://%s%s", in[i].address, s->smoke[k].path);
            http_result res;
            http_result_init(&res);
            char e[256];
            int rc = http_fetch("GET", url, NULL, NULL, 0, 5000, &res, e, sizeof e);
            int st = res.status;
            http_result_free(&res);
            if (rc < 0 || st != s->smoke[k].expect) {
                snprintf(err, errlen, "smoke GET %s on %s: %s%d, expected %d", s->smoke[k].path,
                         in[i].address, rc < 0 ? e : "status ", rc < 0 ? 0 : st, s->smoke[k].expect);
                return -1;
            }
        }
    }
    return 0;
}

int ctl_dep_fold(ctl_dep_run *r, const ctl_dep_inst *nw, size_t nn, const ctl_dep_inst *old,
                 size_t no, char *err, size_t errlen)
{
    for (size_t i = 0; i < nn || i < no; i++) {
        int rc = 0;
        if (i < nn && i < no)
            rc = ctl_instances_replace(r->m, nw[i].id, old[i].id, err, errlen);
        else if (i < nn)
            rc = ctl_instances_register(r->m, nw[i].id, true, err, errlen);
        else
            rc = ctl_instances_retire(r->m, old[i].id, err, errlen);
        if (rc < 0)
            return -1;
    }
    if (!r->m->has_gw)
        return 0;
    uint64_t deadline = ctl_mono_us() + 15000000u;
    for (;;) {
        size_t reg = 0;
        pthread_mutex_lock(&r->m->mu);
        for (size_t i = 0; i < nn; i++) {
            const ctl_rec_inst *x = ctl_mgr_find_locked(r->m, nw[i].id);
            reg += x && x->info.registered;
        }
        pthread_mutex_unlock(&r->m->mu);
        if (reg == nn)
            return 0;
        if (ctl_mono_us() > deadline) {
            snprintf(err, errlen, "fold: %zu of %zu new instances registered in pool %s after 15 s",
                     reg, nn, r->c->pool);
            return -1;
        }
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
    }
}

int ctl_dep_register_next(ctl_dep_run *r, const ctl_dep_inst *in, size_t n, char *err,
                          size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        if (ctl_gw_register(&r->gw, r->next_pool, in[i].address, r->c->weight, false,
                            err, errlen) < 0)
            return -1;
    return 0;
}
