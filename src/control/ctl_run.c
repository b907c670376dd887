/* ctl_run.c -- the control process: instance manager, scaling API and the
 * loop that asks the autoscaler (the ctl_hooks seam) for a count.
 *
 * Order matters at both ends. At start the API listens before any instance
 * is launched, so a port in use fails without side effects. At stop the
 * decision loop ends first (nothing may scale up behind the drain), then
 * the manager drains and stops every instance while the API still answers
 * (an operator can watch the drain), then the listener closes. */
#include "control/ctl_instances.h"
#include "control/ctl_deploy.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/sock.h"

#ifndef HSCALE_VERSION
#define HSCALE_VERSION "dev"
#endif

struct ctl_control {
    const ctl_config *c;
    ctl_hooks         hooks;
    bool              has_hooks;
    ctl_mgr          *mgr;
    ctl_api           api;
    http_router      *router;
    http_server      *srv;
    pthread_t         loop;
    bool              loop_on;
    buf               sd_last;    /* last text written to sd_file */
    pthread_mutex_t   mu;
    pthread_cond_t    cv;
    bool              quit;
};

static int mkdir_p(const char *path, char *err, size_t errlen)
{
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "state_dir: path too long");
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            goto fail;
        *p = '/';
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "state_dir: cannot create %s: %s", tmp, strerror(errno));
    return -1;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The autoscaler's seam: every check interval, the hook sees the instances
 * and may move the desired count (clamped to [0, max_instances]). */
static void decide(ctl_control *cc, ctl_instance_info **inst, size_t *cap)
{
    size_t n = ctl_instances_list(cc->mgr, *inst, *cap);
    if (n > *cap) {
        ctl_instance_info *ni = realloc(*inst, n * sizeof *ni);
        if (ni) {
            *inst = ni;
            *cap = n;
            n = ctl_instances_list(cc->mgr, *inst, *cap);
        }
        if (n > *cap)
            n = *cap;
    }
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t now = (uint64_t)wall.tv_sec * 1000000u + (uint64_t)wall.tv_nsec / 1000u;
    int desired = ctl_instances_desired(cc->mgr);
    int want = cc->hooks.decide(cc->hooks.arg, *inst, n, desired, now);
    if (want >= 0) {
        if (want > cc->c->max_instances)
            want = cc->c->max_instances;
        if (want != desired)
            ctl_instances_scale_to(cc->mgr, want);
    }
}

/* Rewrites the file_sd targets when they changed (the manager's generation
 * moved and the text differs), so Prometheus sees a scale-out in seconds. */
static void write_sd(ctl_control *cc, const char *control_addr)
{
    const char *path = cc->c->sd_file;
    if (!path || !path[0])
        return;
    buf b;
    buf_init(&b);
    ctl_sd_json(cc->mgr, cc->c, control_addr, &b);
    if (b.len != cc->sd_last.len || memcmp(buf_head(&b), buf_head(&cc->sd_last), b.len) != 0) {
        char err[512];
        if (ctl_sd_write(path, &b, err, sizeof err) < 0)
            log_warn("%s", err);
        buf_reset(&cc->sd_last);
        buf_append(&cc->sd_last, buf_head(&b), b.len);
    }
    buf_free(&b);
}

/* The control loop: the autoscaler's decision every check interval, and
 * the discovery file whenever the instances change. */
static void *loop_main(void *arg)
{
    ctl_control *cc = arg;
    size_t cap = 64;
    ctl_instance_info *inst = malloc(cap * sizeof *inst);
    uint64_t next_decide = mono_us(), gen = UINT64_MAX;
    pthread_mutex_lock(&cc->mu);
    while (!cc->quit && inst) {
        pthread_mutex_unlock(&cc->mu);
        if (cc->hooks.decide && mono_us() >= next_decide) {
            decide(cc, &inst, &cap);
            uint64_t iv = cc->hooks.interval_us ? cc->hooks.interval_us(cc->hooks.arg) : 0;
            next_decide = mono_us() + (iv ? iv : cc->c->check_interval_us);
        }
        uint64_t g = ctl_instances_generation(cc->mgr);
        if (g != gen) {
            write_sd(cc, cc->api.control_addr);
            gen = g;
        }
        pthread_mutex_lock(&cc->mu);
        uint64_t until = mono_us() + 100000u;
        struct timespec ts = { (time_t)(until / 1000000u), (long)(until % 1000000u) * 1000 };
        while (!cc->quit && pthread_cond_timedwait(&cc->cv, &cc->mu, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&cc->mu);
    free(inst);
    return NULL;
}

/* host:port Prometheus can scrape: the listen host (loopback for a
 * wildcard) with the port actually bound. */
static void control_target(const char *listen, int port, char *out, size_t outlen)
{
    const char *colon = strrchr(listen, ':');
    size_t hl = colon ? (size_t)(colon - listen) : 0;
    if (hl == 0 || (hl == 7 && strncmp(listen, "0.0.0.0", 7) == 0) || (hl == 1 && listen[0] == '*'))
        snprintf(out, outlen, "127.0.0.1:%d", port);
    else
        snprintf(out, outlen, "%.*s:%d", (int)hl, listen, port);
}

ctl_control *ctl_start(const ctl_config *c, const ctl_hooks *hooks, char *err, size_t errlen)
{
    ctl_control *cc = calloc(1, sizeof *cc);
    if (!cc) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cc->c = c;
    buf_init(&cc->sd_last);
    if (hooks) {
        cc->hooks = *hooks;
        cc->has_hooks = true;
    }
    pthread_mutex_init(&cc->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cc->cv, &ca);
    pthread_condattr_destroy(&ca);

    sock_addr listen;
    char e[512];
    if (sock_addr_parse(c->listen, &listen, e, sizeof e) < 0) {
        snprintf(err, errlen, "listen: %s", e);
        goto fail;
    }
    if (c->state_dir && c->state_dir[0] && mkdir_p(c->state_dir, err, errlen) < 0)
        goto fail;
    ctl_driver *drv = c->driver == CTL_DRIVER_EXEC
                    ? ctl_driver_exec_new(&c->exec, c->state_dir, err, errlen)
                    : ctl_driver_process_new(c->state_dir, err, errlen);
    if (!drv)
        goto fail;
    cc->mgr = ctl_mgr_new(c, drv, err, errlen);
    if (!cc->mgr)
        goto fail;

    metrics_build_info(metrics_default(), HSCALE_VERSION, "control");
    cc->api = (ctl_api){ cc->mgr, c, cc->has_hooks ? &cc->hooks : NULL, "" };
    control_target(c->listen, sock_addr_port(&listen), cc->api.control_addr,
                   sizeof cc->api.control_addr);
    cc->router = ctl_api_router(&cc->api);
    if (!cc->router) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    http_server_opts o = { .name = "control", .listen = listen, .workers = 2,
                           .router = cc->router };
    cc->srv = http_server_new(&o, e, sizeof e);
    if (!cc->srv || http_server_start(cc->srv, e, sizeof e) < 0) {
        snprintf(err, errlen, "%s", e);
        goto fail;
    }
    /* Instances start once the API listens: a port in use fails before
     * anything was launched. */
    if (ctl_mgr_start(cc->mgr, err, errlen) < 0)
        goto fail;
    if (sock_addr_port(&listen) == 0)   /* port 0 (tests): known only now */
        control_target(c->listen, http_server_port(cc->srv), cc->api.control_addr,
                       sizeof cc->api.control_addr);
    if (pthread_create(&cc->loop, NULL, loop_main, cc) != 0) {
        snprintf(err, errlen, "cannot start the control loop thread");
        goto fail;
    }
    cc->loop_on = true;
    log_info("API on %s, %s driver, %d instance(s)%s%s", c->listen,
             c->driver == CTL_DRIVER_EXEC ? "exec" : "process", c->instances,
             c->gateway ? ", gateway " : ", no gateway", c->gateway ? c->gateway : "");
    return cc;
fail:
    ctl_stop(cc);
    return NULL;
}

int ctl_api_port(const ctl_control *cc)
{
    return cc->srv ? http_server_port(cc->srv) : -1;
}

void ctl_stop(ctl_control *cc)
{
    if (!cc)
        return;
    if (cc->loop_on) {
        pthread_mutex_lock(&cc->mu);
        cc->quit = true;
        pthread_cond_broadcast(&cc->cv);
        pthread_mutex_unlock(&cc->mu);
        pthread_join(cc->loop, NULL);
    }
    if (cc->mgr) {
        ctl_deploy_release(cc->mgr);   /* a deploy stops before its instances */
        ctl_mgr_stop(cc->mgr);   /* drains and stops every instance */
        if (cc->loop_on)
            write_sd(cc, NULL);  /* none left: no InstanceDown for a clean stop */
        ctl_mgr_free(cc->mgr);
    }
    if (cc->srv) {
        http_server_stop(cc->srv, 2000);
        http_server_free(cc->srv);
    }
    http_router_free(cc->router);
    buf_free(&cc->sd_last);
    pthread_mutex_destroy(&cc->mu);
    pthread_cond_destroy(&cc->cv);
    free(cc);
}

int ctl_run(const ctl_config *c, const ctl_hooks *hooks)
{
    /* Every thread inherits this mask, so the signal waits for sigwait
     * below; children get an empty mask from core/proc. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    char err[512];
    ctl_control *cc = ctl_start(c, hooks, err, sizeof err);
    if (!cc) {
        log_error("%s", err);
        return 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    log_info("%s: draining and stopping every instance", sig == SIGINT ? "SIGINT" : "SIGTERM");
    ctl_stop(cc);
    log_info("stopped");
    return 0;
}
