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
#include "control/ctl_service.h"
#include "http/client.h"

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

/* One service: its config, its autoscaler seam and its manager. The API
 * view (api[i] of the control) points at these. */
typedef struct ctl_svc {
    const ctl_config *c;
    ctl_hooks         hooks;
    bool              has_hooks;
    ctl_mgr          *mgr;
    uint64_t          next_decide;
} ctl_svc;

struct ctl_control {
    const ctl_config *c;          /* the first service's: shared keys */
    ctl_svc          *svcs;
    ctl_api          *api;        /* one per service, for the listener */
    size_t            n;
    ctl_api_set       set;
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
    snprintf(err, errlen, "state_dir: cannot create %.400s: %s", tmp, strerror(errno));
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
static void decide(ctl_svc *sv, ctl_instance_info **inst, size_t *cap)
{
    size_t n = ctl_instances_list(sv->mgr, *inst, *cap);
    if (n > *cap) {
        ctl_instance_info *ni = realloc(*inst, n * sizeof *ni);
        if (ni) {
            *inst = ni;
            *cap = n;
            n = ctl_instances_list(sv->mgr, *inst, *cap);
        }
        if (n > *cap)
            n = *cap;
    }
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t now = (uint64_t)wall.tv_sec * 1000000u + (uint64_t)wall.tv_nsec / 1000u;
    int desired = ctl_instances_desired(sv->mgr);
    int want = sv->hooks.decide(sv->hooks.arg, *inst, n, desired, now);
    if (want >= 0) {
        if (want > sv->c->max_instances)
            want = sv->c->max_instances;
        if (want != desired)
            ctl_instances_scale_to(sv->mgr, want);
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
    ctl_sd_json(cc->api, cc->n, control_addr, &b);
    if (b.len != cc->sd_last.len || memcmp(buf_head(&b), buf_head(&cc->sd_last), b.len) != 0) {
        char err[512];
        if (ctl_sd_write(path, &b, err, sizeof err) < 0)
            log_warn("sd_file: %s", err);
        buf_reset(&cc->sd_last);
        buf_append(&cc->sd_last, buf_head(&b), b.len);
    }
    buf_free(&b);
}

/* Sum of the managers' generations: moves whenever any service changes. */
static uint64_t generation(ctl_control *cc)
{
    uint64_t g = 0;
    for (size_t i = 0; i < cc->n; i++)
        g += ctl_instances_generation(cc->svcs[i].mgr);
    return g;
}

/* The control loop: each service's autoscaler decision every check
 * interval, and the discovery file whenever the instances change. One
 * thread for every service: a decision scrapes with short timeouts, so a
 * slow service delays the others' by at most that. */
static void *loop_main(void *arg)
{
    ctl_control *cc = arg;
    size_t cap = 64;
    ctl_instance_info *inst = malloc(cap * sizeof *inst);
    uint64_t gen = UINT64_MAX;
    for (size_t i = 0; i < cc->n; i++)
        cc->svcs[i].next_decide = mono_us();
    pthread_mutex_lock(&cc->mu);
    while (!cc->quit && inst) {
        pthread_mutex_unlock(&cc->mu);
        for (size_t i = 0; i < cc->n; i++) {
            ctl_svc *sv = &cc->svcs[i];
            if (!sv->hooks.decide || mono_us() < sv->next_decide)
                continue;
            decide(sv, &inst, &cap);
            uint64_t iv = sv->hooks.interval_us ? sv->hooks.interval_us(sv->hooks.arg) : 0;
            sv->next_decide = mono_us() + (iv ? iv : sv->c->check_interval_us);
        }
        uint64_t g = generation(cc);
        if (g != gen) {
            write_sd(cc, cc->api[0].control_addr);
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

/* Starts one service's manager (not yet its instances). */
static int start_service(ctl_control *cc, size_t i, const ctl_service_def *d, char *err,
                         size_t errlen)
{
    ctl_svc *sv = &cc->svcs[i];
    const ctl_config *c = d->c;
    sv->c = c;
    if (d->hooks) {
        sv->hooks = *d->hooks;
        sv->has_hooks = true;
    }
    char e[512];
    if (c->state_dir && c->state_dir[0] && mkdir_p(c->state_dir, e, sizeof e) < 0)
        goto fail;
    ctl_driver *drv = c->driver == CTL_DRIVER_EXEC
                    ? ctl_driver_exec_new(&c->exec, c->state_dir, e, sizeof e)
                    : ctl_driver_process_new(c->state_dir, e, sizeof e);
    if (!drv || !(sv->mgr = ctl_mgr_new(c, drv, e, sizeof e)))
        goto fail;
    cc->api[i] = (ctl_api){ d->name, sv->mgr, c, sv->has_hooks ? &sv->hooks : NULL, "", NULL };
    if (ctl_api_service_router(&cc->api[i]) < 0) {
        snprintf(e, sizeof e, "cannot build its API (out of memory or a hook failed)");
        goto fail;
    }
    return 0;
fail:
    if (cc->n > 1 || strcmp(d->name, ctl_default_service) != 0)
        snprintf(err, errlen, "service %s: %s", d->name, e);
    else
        snprintf(err, errlen, "%s", e);
    return -1;
}

ctl_control *ctl_start_services(const ctl_service_def *defs, size_t n, char *err, size_t errlen)
{
    if (n == 0 || n > CTL_MAX_SERVICES) {
        snprintf(err, errlen, "expected 1 to %d services, got %zu", CTL_MAX_SERVICES, n);
        return NULL;
    }
    ctl_control *cc = calloc(1, sizeof *cc);
    if (cc) {
        cc->svcs = calloc(n, sizeof *cc->svcs);
        cc->api = calloc(n, sizeof *cc->api);
    }
    if (!cc || !cc->svcs || !cc->api) {
        if (cc) {
            free(cc->svcs);
            free(cc->api);
        }
        free(cc);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    const ctl_config *c = defs[0].c;
    cc->c = c;
    buf_init(&cc->sd_last);
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
    if (http_listen_check(&listen, c->token && c->token[0], "control.listen",
                          "token_file or HSCALE_CONTROL_TOKEN (the admin token)", err, errlen) < 0)
        goto fail;
    if (c->gateway_ca_file && c->gateway_ca_file[0])
        http_client_set_ca_file(c->gateway_ca_file);
    for (size_t i = 0; i < n; i++) {
        cc->n = i + 1;   /* ctl_stop frees what a failed start left */
        if (start_service(cc, i, &defs[i], err, errlen) < 0)
            goto fail;
    }

    metrics_build_info(metrics_default(), HSCALE_VERSION, "control");
    char addr[64];
    control_target(c->listen, sock_addr_port(&listen), addr, sizeof addr);
    for (size_t i = 0; i < n; i++)
        snprintf(cc->api[i].control_addr, sizeof cc->api[i].control_addr, "%s", addr);
    cc->set = (ctl_api_set){ cc->api, n };
    cc->router = ctl_api_router(&cc->set);
    if (!cc->router) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    static const char *const open_paths[] = { "/health", "/metrics", NULL };
    http_server_opts o = { .name = "control", .listen = listen, .workers = 2,
                           .router = cc->router,
                           .limits = { .max_body = 1 << 20, .max_headers = 32, .max_head = 16384 },
                           .guard = { .enabled = true, .allowed_hosts = c->allowed_hosts,
                                      .nallowed_hosts = c->nallowed_hosts, .open_paths = open_paths,
                                      .hosts_setting = "control.allowed_hosts" },
                           .tls_cert = c->tls_cert, .tls_key = c->tls_key };
    cc->srv = http_server_new(&o, e, sizeof e);
    if (!cc->srv || http_server_start(cc->srv, e, sizeof e) < 0) {
        snprintf(err, errlen, "%s", e);
        goto fail;
    }
    /* Instances start once the API listens: a port in use fails before
     * anything was launched. */
    for (size_t i = 0; i < n; i++)
        if (ctl_mgr_start(cc->svcs[i].mgr, e, sizeof e) < 0) {
            snprintf(err, errlen, "service %s: %s", defs[i].name, e);
            goto fail;
        }
    if (sock_addr_port(&listen) == 0) {  /* port 0 (tests): known only now */
        control_target(c->listen, http_server_port(cc->srv), addr, sizeof addr);
        for (size_t i = 0; i < n; i++)
            snprintf(cc->api[i].control_addr, sizeof cc->api[i].control_addr, "%s", addr);
    }
    if (pthread_create(&cc->loop, NULL, loop_main, cc) != 0) {
        snprintf(err, errlen, "cannot start the control loop thread");
        goto fail;
    }
    cc->loop_on = true;
    log_info("API on %s, %zu service(s), %s%s", c->listen, n,
             c->gateway ? "gateway " : "no gateway", c->gateway ? c->gateway : "");
    for (size_t i = 0; i < n; i++) {
        const ctl_config *sc = defs[i].c;
        log_info("service %s: %s driver, %d instance(s), pool %s", defs[i].name,
                 sc->driver == CTL_DRIVER_EXEC ? "exec" : "process", sc->instances, sc->pool);
    }
    return cc;
fail:
    ctl_stop(cc);
    return NULL;
}

ctl_control *ctl_start(const ctl_config *c, const ctl_hooks *hooks, char *err, size_t errlen)
{
    ctl_service_def d = { ctl_default_service, c, hooks };
    return ctl_start_services(&d, 1, err, errlen);
}

int ctl_api_port(const ctl_control *cc)
{
    return cc->srv ? http_server_port(cc->srv) : -1;
}

/* Drains and stops one service's instances; a deploy stops first. */
static void *stop_service(void *arg)
{
    ctl_svc *sv = arg;
    ctl_deploy_release(sv->mgr);
    ctl_mgr_stop(sv->mgr);
    return NULL;
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
    /* Services drain side by side: a worker's long stop_grace must not
     * hold up the web service's drain (nor the reverse). */
    pthread_t th[CTL_MAX_SERVICES];
    bool on[CTL_MAX_SERVICES] = { false };
    for (size_t i = 0; i < cc->n; i++)
        on[i] = cc->svcs[i].mgr && pthread_create(&th[i], NULL, stop_service, &cc->svcs[i]) == 0;
    for (size_t i = 0; i < cc->n; i++) {
        if (on[i])
            pthread_join(th[i], NULL);
        else if (cc->svcs[i].mgr)
            stop_service(&cc->svcs[i]);
    }
    if (cc->loop_on)
        write_sd(cc, NULL);  /* none left: no InstanceDown for a clean stop */
    if (cc->srv) {
        http_server_stop(cc->srv, 2000);
        http_server_free(cc->srv);
    }
    http_router_free(cc->router);
    for (size_t i = 0; i < cc->n; i++) {
        http_router_free(cc->api[i].router);
        ctl_mgr_free(cc->svcs[i].mgr);
    }
    buf_free(&cc->sd_last);
    pthread_mutex_destroy(&cc->mu);
    pthread_cond_destroy(&cc->cv);
    free(cc->svcs);
    free(cc->api);
    free(cc);
}

int ctl_tls_reload(ctl_control *cc)
{
    char err[512];
    if (!cc || !cc->srv || !http_server_tls(cc->srv))
        return 0;
    if (http_server_tls_reload(cc->srv, err, sizeof err) < 0) {
        log_error("TLS reload refused, keeping the old certificate: %s", err);
        return -1;
    }
    log_info("TLS certificate reloaded");
    return 0;
}

int ctl_run_services(const ctl_service_def *defs, size_t n)
{
    /* Every thread inherits this mask, so the signal waits for sigwait
     * below; children get an empty mask from core/proc. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    char err[512];
    ctl_control *cc = ctl_start_services(defs, n, err, sizeof err);
    if (!cc) {
        log_error("%s", err);
        return 1;
    }
    int sig = 0;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP)
        ctl_tls_reload(cc);
    log_info("%s: draining and stopping every instance", sig == SIGINT ? "SIGINT" : "SIGTERM");
    ctl_stop(cc);
    log_info("stopped");
    return 0;
}

int ctl_run(const ctl_config *c, const ctl_hooks *hooks)
{
    ctl_service_def d = { ctl_default_service, c, hooks };
    return ctl_run_services(&d, 1);
}
