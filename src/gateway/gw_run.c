/* gw_run.c -- the gateway process: sets up the shared runtime, starts the
 * workers, the admin listener and the health thread, then turns the main
 * thread into the signal handler and housekeeper.
 *
 * Signals are blocked in every thread (the mask is set before any thread
 * starts, and threads inherit it) and taken synchronously here with
 * sigtimedwait, so no handler ever runs in the middle of a worker's
 * request. Between signals the main thread finishes drains and reclaims
 * retired snapshots every 100 ms.
 *
 * At start the state file (state_file) is merged in before the first
 * snapshot, so members registered through the API before a crash serve at
 * once.
 *
 * SIGHUP keeps the listeners and the worker count (changing those needs a
 * restart, which is said in the log); pools and routes are rebuilt, and
 * members with the same address carry their health and in-flight counts
 * over, so a reload drops no request. */
#include "gateway/gateway.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "gateway/gw_proxy.h"
#include "gateway/gw_cache.h"
#include "gateway/gw_statefile.h"
#include "gateway/gw_tls.h"
#include "http/server.h"

static unsigned core_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static void reload(gw_rt *rt, gw_reload_fn *fn, void *arg)
{
    char terr[512];
    /* The certificate first: it may be renewed with no config file. */
    if (rt->admin && http_server_tls(rt->admin)) {
        if (http_server_tls_reload(rt->admin, terr, sizeof terr) < 0)
            log_error("admin TLS reload refused, keeping the old certificate: %s", terr);
        else
            log_info("admin TLS certificate reloaded");
    }
    if (!fn) {
        /* Flags only: the certificate files are read again all the same. */
        if (rt->tls) {
            pthread_mutex_lock(&rt->edit_lock);      /* rt->cfg: the API may publish */
            int trc = gw_tls_reload(rt, &rt->cfg, terr, sizeof terr);
            pthread_mutex_unlock(&rt->edit_lock);
            if (trc < 0)
                log_error("TLS reload refused, keeping the old certificates: %s", terr);
            else
                log_info("TLS certificates reloaded from their files");
        }
        log_warn("SIGHUP: running from flags, no config file to reload");
        return;
    }
    gw_config next;
    char err[512];
    memset(&next, 0, sizeof next);
    if (fn(&next, arg, err, sizeof err) < 0) {
        log_error("reload refused, configuration unchanged: %s", err);
        return;
    }
    /* Certificates: the new configuration's files (paths may have
     * changed). A refusal keeps the old ones and the rest of the reload. */
    if (rt->tls) {
        if (gw_tls_reload(rt, &next, terr, sizeof terr) < 0)
            log_error("TLS reload refused, keeping the old certificates: %s", terr);
        else
            log_info("TLS certificates reloaded from their files");
    }
    pthread_mutex_lock(&rt->edit_lock);
    if (next.listen && rt->cfg.listen && strcmp(next.listen, rt->cfg.listen) != 0)
        log_warn("reload: listen address changes need a restart; keeping %s", rt->cfg.listen);
    if (!next.tls_listen != !rt->cfg.tls_listen
        || (next.tls_listen && strcmp(next.tls_listen, rt->cfg.tls_listen) != 0))
        log_warn("reload: tls_listen changes need a restart; keeping %s",
                 rt->cfg.tls_listen ? rt->cfg.tls_listen : "none");
    size_t kept = gw_statefile_keep_dynamic(gw_rcu_read(&rt->rcu), &next);
    int rc = gw_rt_publish(rt, &next, err, sizeof err);
    pthread_mutex_unlock(&rt->edit_lock);
    if (rc < 0) {
        cfg_free(&gw_config_schema, &next);
        log_error("reload refused, configuration unchanged: %s", err);
        return;
    }
    log_info("configuration reloaded (%zu pools, %zu routes; %zu members added at run time kept)",
             rt->cfg.npools, rt->cfg.nroutes, kept);

}

/* The state file, merged into rt->cfg before the first snapshot. A file
 * that cannot be used is set aside (renamed .bad) with the reason logged:
 * the gateway starts from its configuration and the next change writes a
 * good one. */
static bool load_state(gw_rt *rt, gw_statefile *sf, bool **restored)
{
    const char *path = rt->cfg.state_file;
    char err[600];
    if (!path || !path[0])
        return false;
    int rc = gw_statefile_read(path, sf, err, sizeof err);
    if (rc < 0) {
        char bad[4096];
        snprintf(bad, sizeof bad, "%s.bad", path);
        log_error("state_file %s; starting from the configuration alone (the file is kept as %s)",
                  err, bad);
        if (rename(path, bad) < 0)
            log_warn("state_file: cannot rename %s: %s", path, strerror(errno));
        return false;
    }
    if (rc == 0)
        return false;
    *restored = calloc(sf->nmembers ? sf->nmembers : 1, sizeof **restored);
    if (!*restored) {
        gw_statefile_free(sf);
        return false;
    }
    size_t n = gw_statefile_merge(sf, &rt->cfg, (double)ev_wall_us() / 1e6, *restored), added = 0;
    for (size_t i = 0; i < sf->nmembers; i++)
        added += (*restored)[i];
    log_info("state_file %s: %zu members restored (%zu not in the configuration), "
             "%zu split weights", path, n, added, sf->nsplits);
    return true;
}

int gw_run(const gw_config *cfg, gw_reload_fn *reload_fn, void *arg)
{
    gw_rt *rt = calloc(1, sizeof *rt);
    char err[512];
    int rc = 1;
    if (!rt || cfg_copy(&gw_config_schema, &rt->cfg, cfg) < 0) {
        fprintf(stderr, "hscale gateway: out of memory\n");
        free(rt);
        return 1;
    }
    pthread_mutex_init(&rt->edit_lock, NULL);
    /* Fixed malloc thresholds: with glibc's defaults, every burst of
     * freed response buffers (20 KB cache hits, 50 at a time) shrank a
     * worker's arena with madvise and the next batch faulted the pages
     * back in: 10x the CPU per request (cache hits: 5.6k -> 45k req/s at
     * 50 connections). The heap now keeps what a steady load uses; the
     * workers' gc (gc_tick) still returns it with malloc_trim once an
     * interval passes without allocations. */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    rt->started_us = ev_monotonic_us();
    http_limits_default(&rt->limits);
    rt->limits.max_body = rt->cfg.max_body;
    rt->reg = metrics_default();
    metrics_build_info(rt->reg, HSCALE_VERSION, "gateway");
    gw_metrics_init(rt);
    gw_retry_budget_init(&rt->budget, rt->cfg.retry_budget_percent / 100.0, 3);
    rt->rl = gw_rl_new((uint32_t)rt->cfg.rate_limit_entries);
    /* Always there (a route may enable caching through the API later); its
     * size is fixed at start. */
    rt->cache = gw_cstore_new(rt->cfg.cache_size, rt->cfg.cache_max_object);
    unsigned nworkers = rt->cfg.workers > 0 ? (unsigned)rt->cfg.workers : core_count();
    if (nworkers > GW_MAX_WORKERS)
        nworkers = GW_MAX_WORKERS;
    gw_statefile saved = { 0 };
    bool *restored = NULL;
    bool have_saved = load_state(rt, &saved, &restored);
    gw_snap *first = gw_snap_build(&rt->cfg, NULL, err, sizeof err);
    if (!rt->rl || !rt->cache || !first) {
        fprintf(stderr, "hscale gateway: %s\n", first ? "out of memory" : err);
        gw_statefile_free(&saved);
        free(restored);
        goto out_free;
    }
    gw_rcu_init(&rt->rcu, nworkers, first);
    if (have_saved)
        gw_statefile_apply(&saved, restored, rt, (double)ev_wall_us() / 1e6);
    gw_statefile_free(&saved);
    free(restored);
    gw_statefile_save(rt);
    if (sock_addr_parse(rt->cfg.listen, &rt->listen, err, sizeof err) < 0) {
        fprintf(stderr, "hscale gateway: listen: %s\n", err);
        goto out_rcu;
    }
    rt->plain_on = !(rt->cfg.tls_listen && rt->cfg.tls_only);
    if (rt->cfg.tls_listen) {
        if (sock_addr_parse(rt->cfg.tls_listen, &rt->tls_listen, err, sizeof err) < 0) {
            fprintf(stderr, "hscale gateway: tls_listen: %s\n", err);
            goto out_rcu;
        }
        if (gw_tls_init(rt, &rt->cfg, err, sizeof err) < 0) {
            fprintf(stderr, "hscale gateway: %s\n", err);
            goto out_rcu;
        }
    }
    if (rt->cfg.redirect_listen) {
        if (sock_addr_parse(rt->cfg.redirect_listen, &rt->redir_listen, err, sizeof err) < 0) {
            fprintf(stderr, "hscale gateway: redirect_listen: %s\n", err);
            goto out_rcu;
        }
        rt->redir_on = true;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (gw_workers_start(rt, nworkers, err, sizeof err) < 0) {
        fprintf(stderr, "hscale gateway: listen %s: %s\n", rt->cfg.listen, err);
        goto out_workers;
    }
    if (gw_admin_start(rt, err, sizeof err) < 0) {
        fprintf(stderr, "hscale gateway: %s\n", err);
        gw_workers_drain(rt, 0);
        goto out_workers;
    }
    if (gw_health_start(rt) < 0) {
        fprintf(stderr, "hscale gateway: cannot start the health check thread\n");
        gw_workers_drain(rt, 0);
        goto out_admin;
    }
    char addr[80], taddr[80], raddr[80];
    if (rt->plain_on)
        sock_addr_format(&rt->listen, addr, sizeof addr);
    else
        snprintf(addr, sizeof addr, "-");
    if (rt->tls)
        sock_addr_format(&rt->tls_listen, taddr, sizeof taddr);
    if (rt->redir_on)
        sock_addr_format(&rt->redir_listen, raddr, sizeof raddr);
    printf("gateway: listening on %s (%u workers)%s%s%s%s%s%s\n", addr, nworkers,
           rt->tls ? ", https on " : "", rt->tls ? taddr : "",
           rt->redir_on ? ", redirecting http on " : "", rt->redir_on ? raddr : "",
           rt->cfg.admin ? ", admin API on " : "", rt->cfg.admin ? rt->cfg.admin : "");
    fflush(stdout);
    log_info("listening on %s%s%s%s%s with %u workers, %zu pools, %zu routes", addr,
             rt->tls ? ", https on " : "", rt->tls ? taddr : "",
             rt->redir_on ? ", redirect on " : "", rt->redir_on ? raddr : "", nworkers,
             rt->cfg.npools, rt->cfg.nroutes);

    for (;;) {
        struct timespec tick = { 0, 100 * 1000000 };
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGHUP) {
            reload(rt, reload_fn, arg);
        } else if (sig == SIGTERM || sig == SIGINT) {
            log_info("%s: draining (grace %.1fs, %u client connections)",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT", (double)rt->cfg.grace_us / 1e6,
                     atomic_load(&rt->clients));
            break;
        }
        gw_admin_tick(rt);
        gw_tls_tick(rt);
    }
    gw_workers_drain(rt, rt->cfg.grace_us);
    rc = 0;
    gw_health_stop(rt);
out_admin:
    gw_admin_stop(rt);
out_workers:
    if (rt->workers) {
        if (!atomic_load(&rt->stopping))
            gw_workers_drain(rt, 0);
        gw_workers_join(rt);
    }
out_rcu:
    gw_tls_free(rt);
    gw_rcu_destroy(&rt->rcu);
out_free:
    gw_rl_free(rt->rl);
    gw_cstore_free(rt->cache);
    cfg_free(&gw_config_schema, &rt->cfg);
    pthread_mutex_destroy(&rt->edit_lock);
    free(rt);
    if (rc == 0)
        log_info("stopped");
    return rc;
}
