/* up.c -- `hscale up`: the whole stack on one machine with no config.
 *
 * One process tree: the gateway is a child (`hscale gateway`, restarted
 * with backoff if it dies), the control plane runs embedded with the
 * autoscaler on, and the app instances are the control plane's children,
 * all sharing one SQLite store in the data directory, seeded on first
 * start. The gateway starts first (up waits for its admin listener) and the
 * instances register with it once ready, so the first request served is
 * already behind the proxy.
 *
 * Shutdown order is the point of the design: control stops first, so the
 * instances drain through a gateway that still routes, then the gateway.
 * Only an explicit stop does that (SIGINT, SIGTERM, `hscale down`): the
 * gateway and the instances are detached (a session of their own, no
 * parent-death signal), so a crash or kill -9 of `up` leaves them serving.
 * The next `up` on the same data directory adopts them: the gateway from
 * gateway.pid (pid and start time; it still holds the client listener, so
 * up opens none and supervises it by polling, as it is no longer its
 * child), the instances from the control plane's state file. Settings (up_config.c): built-in defaults < up's own < -c file
 * (every section: gateway, control, autoscaling, services) < environment
 * < flags; the gateway's config is written from the result. With
 * services:, each is run with its own autoscaler behind one control API. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/app.h"
#include "cmd.h"
#include "control/control.h"
#include "control/ctl_autoscale.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/sock.h"
#include "cmd/up_int.h"
#include "http/server.h"

static const char usage[] =
    "usage: hscale up [options]\n\n"
    "Runs the stack on one machine: the gateway, the control plane with its\n"
    "autoscaler, and app instances over one SQLite store in DIR (seeded on\n"
    "first start). Ctrl-C or SIGTERM drains the instances through the\n"
    "gateway, then stops everything; so does `hscale down --data DIR`. A\n"
    "crash of up leaves the gateway and the instances serving: up started\n"
    "again on the same DIR adopts them.\n\n"
    "  --listen ADDR     gateway listener (default 127.0.0.1:8080)\n"
    "  --admin ADDR      gateway admin API (default 127.0.0.1:8082)\n"
    "  --control ADDR    control plane API and dashboard (default 127.0.0.1:8081)\n"
    "  --instances N     app instances at start (default 3)\n"
    "  --min N           autoscaling floor (default 2)\n"
    "  --max N           autoscaling ceiling (default 10)\n"
    "  --data DIR        data directory (default ./hscale-data)\n"
    "  --tls             serve HTTPS on the gateway listener with a self-signed\n"
    "                    certificate for localhost (made once in DIR/tls/)\n"
    "  -c, --config FILE hscale.yaml: gateway:, control:, autoscaling: and\n"
    "                    services: (several services; see docs/control.md)\n"
    "  -h, --help        this text\n\n"
    "See `hscale status` for the instances and the scaling events.\n";

static int parse_flags(int argc, char **argv, up_flags *f)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},   {"admin", required_argument, NULL, 'a'},
        {"control", required_argument, NULL, 'C'},  {"instances", required_argument, NULL, 'n'},
        {"min", required_argument, NULL, 'm'},      {"max", required_argument, NULL, 'M'},
        {"data", required_argument, NULL, 'd'},     {"config", required_argument, NULL, 'c'},
        {"tls", no_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l': f->listen = optarg; break;
        case 'a': f->admin = optarg; break;
        case 'C': f->control = optarg; break;
        case 'n': f->instances = optarg; break;
        case 'm': f->min = optarg; break;
        case 'M': f->max = optarg; break;
        case 'd': f->data = optarg; break;
        case 'c': f->config = optarg; break;
        case 'T': f->tls = true; break;
        default:
            return cmd_usage_error(usage, "up", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cmd_usage_error(usage, "up", "unexpected argument '%s'", argv[optind]);
    return 0;
}

/* Does any service run this binary's reference app (which wants the
 * seeded store)? A stack of the user's own services seeds nothing. */
static bool up_runs_reference_app(const up_file *u)
{
    size_t n = u->fl.nservices ? u->fl.nservices : 1;
    for (size_t i = 0; i < n; i++) {
        const char *command = (u->fl.nservices ? &u->fl.services[i].control : &u->fl.control)->tmpl.command;
        if (!command || strstr(command, "{exe} app"))
            return true;
    }
    return false;
}

/* Creates the data directory; the first time, seeds the reference app's
 * store when a service runs it. */
static int seed_once(const char *dir, bool seed)
{
    struct stat st;
    if (stat(dir, &st) == 0)
        return 0;
    if (mkdir(dir, 0755) != 0) {
        fprintf(stderr, "hscale up: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (!seed)
        return 0;
    char db[PATH_MAX + 16], err[512];
    snprintf(db, sizeof db, "sqlite:%s/s0.db", dir);
    printf("hscale up: seeding %s (100 users, 10000 cases)\n", dir);
    fflush(stdout);
    if (app_seed(db, 100, 10000, 1, err, sizeof err) != 0) {
        fprintf(stderr, "hscale up: seed: %s\n", err);
        return -1;
    }
    return 0;
}

/* The gateway's client listener, opened here once and handed to every
 * gateway this process starts (HSCALE_GATEWAY_LISTEN_FD): while a crashed
 * gateway is restarted, connections wait in its backlog instead of being
 * refused. -1 when it cannot be opened (the gateway then binds its own). */
static int up_listener(const char *listen, bool tls)
{
    sock_addr a;
    char err[256];
    /* TLS clients speak first: the gateway answers a ClientHello on accept. */
    sock_listen_opts lo = { .backlog = 4096, .reuseport = true, .defer_accept = tls };
    int fd = sock_addr_parse(listen, &a, err, sizeof err) < 0 ? -1 : sock_listen(&a, &lo, err, sizeof err);
    if (fd < 0)
        log_warn("gateway listener %s: %s (the gateway binds its own)", listen, err);
    return fd;
}

static pid_t spawn_gateway(const char *cfg, const char *logpath, const char *pidpath, int lfd)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    char *argv[] = { exe, "gateway", "-c", (char *)cfg, NULL };
    char fdenv[48];
    snprintf(fdenv, sizeof fdenv, "HSCALE_GATEWAY_LISTEN_FD=%d", lfd);
    char *env[] = { fdenv, NULL };
    proc_spec ps = { .argv = argv, .env_extra = lfd >= 0 ? env : NULL, .stdout_path = logpath,
                     .detach = true };
    char err[256];
    /* Inheritable for this exec only (an instance spawned meanwhile may
     * inherit it too: it never accepts on it, so that is harmless). */
    if (lfd >= 0)
        fcntl(lfd, F_SETFD, 0);
    pid_t pid = proc_spawn(&ps, err, sizeof err);
    if (lfd >= 0)
        fcntl(lfd, F_SETFD, FD_CLOEXEC);
    if (pid < 0)
        log_error("gateway: %s", err);
    else if (up_pidfile_write(pidpath, pid, err, sizeof err) < 0)
        log_warn("gateway pid file: %s (a restarted up could not adopt it)", err);
    return pid;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits up to timeout_ms for the gateway's admin listener, so the first
 * instances find it when they are ready: an instance that misses it is only
 * registered on its next health check, seconds later. A gateway that does
 * not come up is left to the supervision loop (restart with backoff). */
static void wait_gateway_admin(const char *admin, uint64_t timeout_ms)
{
    sock_addr a;
    char err[128];
    if (sock_addr_parse(admin, &a, err, sizeof err) < 0)
        return;
    uint64_t deadline = mono_ms() + timeout_ms;
    do {
        int fd = sock_connect_blocking(&a, 100);
        if (fd >= 0) {
            close(fd);
            return;
        }
        struct timespec ts = { 0, 20 * 1000000L };
        nanosleep(&ts, NULL);
    } while (mono_ms() < deadline);
    log_warn("gateway admin %s not reachable after %llu ms; instances register once it is",
             admin, (unsigned long long)timeout_ms);
}

int cmd_up(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    up_flags f = { .data = "hscale-data" };
    int rc = parse_flags(argc, argv, &f);
    if (rc)
        return rc;
    up_file u;
    cfg_error ce;
    memset(&u, 0, sizeof u);
    memset(&ce, 0, sizeof ce);
    if (up_config_load(&u, &f, &ce) < 0) {
        char msg[1024];
        cfg_error_format(&ce, msg, sizeof msg);
        fprintf(stderr, "hscale up: %s\n", msg);
        up_config_free(&u);
        return EXIT_USAGE;
    }
    /* Both listeners that take changes are refused off loopback without a
     * token, before anything is seeded or started. */
    char lerr[512];
    sock_addr la;
    if (sock_addr_parse(u.gateway.admin, &la, lerr, sizeof lerr) < 0
        || http_listen_check(&la, u.gateway.admin_token && u.gateway.admin_token[0],
                             "gateway.admin (up --admin)",
                             "gateway.admin_token (HSCALE_GATEWAY_ADMIN_TOKEN)", lerr, sizeof lerr) < 0
        || sock_addr_parse(u.fl.control.listen, &la, lerr, sizeof lerr) < 0
        || http_listen_check(&la, u.fl.control.token && u.fl.control.token[0],
                             "control.listen (up --control)",
                             "control.token_file or HSCALE_CONTROL_TOKEN", lerr, sizeof lerr) < 0) {
        fprintf(stderr, "hscale up: %s\n", lerr);
        up_config_free(&u);
        return EXIT_USAGE;
    }
    log_init_from_env();
    log_set_component("up");
    char uppid[PATH_MAX], gwpid[PATH_MAX];
    snprintf(uppid, sizeof uppid, "%s/%s", f.data, UP_PIDFILE_UP);
    snprintf(gwpid, sizeof gwpid, "%s/%s", f.data, UP_PIDFILE_GATEWAY);
    pid_t other;
    uint64_t other_start;
    if (up_pidfile_alive(uppid, &other, &other_start)) {
        fprintf(stderr, "hscale up: already running on %s (pid %d); `hscale down --data %s` "
                "stops it\n", f.data, (int)other, f.data);
        up_config_free(&u);
        return 1;
    }
    if (seed_once(f.data, up_runs_reference_app(&u)) < 0) {
        up_config_free(&u);
        return 1;
    }
    char terr[600];
    if (f.tls && up_tls_setup(&u, f.data, terr, sizeof terr) < 0) {
        fprintf(stderr, "hscale up: --tls: %s\n", terr);
        up_config_free(&u);
        return 1;
    }
    char perr[512];
    if (up_pidfile_write(uppid, getpid(), perr, sizeof perr) < 0)
        log_warn("pid file: %s (`hscale down` will not find this up)", perr);

    /* Every thread started from here inherits the mask; sigtimedwait below
     * takes the signals. Children get an empty mask from core/proc. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);    /* wakes the supervision loop when the gateway dies */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    char gwcfg[PATH_MAX], gwlog[PATH_MAX], err[512];
    snprintf(gwcfg, sizeof gwcfg, "%s/gateway.yaml", f.data);
    snprintf(gwlog, sizeof gwlog, "%s/gateway.log", f.data);
    cmd_fleet fl;
    memset(&fl, 0, sizeof fl);
    ctl_control *cc = NULL;
    pid_t gw = -1;
    uint64_t gw_start = 0;   /* set: an adopted gateway, not our child */
    int gwfd = -1;
    rc = 1;
    if (up_gateway_write(&u, gwcfg, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    if (up_pidfile_alive(gwpid, &gw, &gw_start)) {
        /* It holds the client listener and serves: opening ours would only
         * split its connections with a socket nobody accepts on. */
        log_info("adopted the running gateway (pid %d)", (int)gw);
    } else {
        gw_start = 0;
        gwfd = up_listener(u.gateway.listen, f.tls);
        if ((gw = spawn_gateway(gwcfg, gwlog, gwpid, gwfd)) < 0)
            goto out;
    }
    wait_gateway_admin(u.gateway.admin, 5000);
    if (cmd_fleet_build(&fl, &u.fl, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    cc = ctl_start_services(fl.defs, fl.n, err, sizeof err);
    if (!cc) {
        log_error("control: %s", err);
        goto out;
    }
    printf("hscale up: gateway   %s://%s  (admin http://%s, config %s, log %s)\n"
           "           control   http://%s  (scaling API, `hscale status --control http://%s`)\n",
           f.tls ? "https" : "http", u.gateway.listen, u.gateway.admin, gwcfg, gwlog,
           u.fl.control.listen, u.fl.control.listen);
    if (f.tls)
        printf("           tls       self-signed certificate %s/tls/cert.pem "
               "(curl --cacert it, or -k)\n", f.data);
    for (size_t i = 0; i < fl.n; i++) {
        const ctl_config *c = fl.defs[i].c;
        const ctl_autoscale_cfg *a = u.fl.nservices ? &u.fl.services[i].autoscaling : &u.fl.autoscaling;
        printf("           %-9s %d instance(s), autoscaling %s [%d..%d], %s%s, logs %s/logs\n",
               fl.defs[i].name, c->instances, a->enabled ? "on" : "off", a->min_instances,
               a->max_instances, ctl_service_listens(c) ? "pool " : "no port",
               ctl_service_listens(c) ? c->pool : "", c->state_dir ? c->state_dir : ".");
    }
    fflush(stdout);

    /* Supervise the gateway until a signal: a crash is restarted after a
     * backoff that doubles up to 10 s and resets after a minute of uptime. */
    uint64_t backoff = 250, started = mono_ms(), restart_at = 0;
    int sig = 0;
    for (;;) {
        struct timespec ts = { 0, 200 * 1000000L };
        uint64_t now_ms = mono_ms();
        if (restart_at && restart_at < now_ms + 200)    /* wake for the restart itself */
            ts.tv_nsec = restart_at > now_ms ? (long)(restart_at - now_ms) * 1000000L : 0;
        sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM)
            break;
        if (sig == SIGHUP) {
            ctl_tls_reload(cc);
            if (gw > 0)
                kill(gw, SIGHUP);
        }
        int st = -1;
        if (gw > 0 && (gw_start ? !proc_same(gw, gw_start) : proc_reap(gw, &st) == 1)) {
            log_warn("gateway (pid %d) exited (status %d); restarting in %llu ms", (int)gw, st,
                     (unsigned long long)backoff);
            gw = -1;
            gw_start = 0;
            if (gwfd < 0)   /* the adopted one took the listener with it */
                gwfd = up_listener(u.gateway.listen, f.tls);
            if (mono_ms() - started > 60000)
                backoff = 250;
            restart_at = mono_ms() + backoff;
            backoff = backoff * 2 > 10000 ? 10000 : backoff * 2;
        }
        if (gw < 0 && restart_at && mono_ms() >= restart_at) {
            gw = spawn_gateway(gwcfg, gwlog, gwpid, gwfd);
            started = mono_ms();
            restart_at = gw < 0 ? mono_ms() + backoff : 0;
            if (gw > 0)
                log_info("gateway restarted (pid %d) with the members of its state file", (int)gw);
        }
    }
    log_info("%s: draining the instances, then stopping the gateway",
             sig == SIGINT ? "SIGINT" : "SIGTERM");
    rc = 0;
out:
    ctl_stop(cc);                /* drains through the gateway, still up */
    if (gw > 0 && gw_start)
        proc_stop_adopted(gw, gw_start, 5000);
    else if (gw > 0)
        proc_stop(gw, 5000);
    if (gw > 0)
        unlink(gwpid);
    if (gwfd >= 0)
        close(gwfd);
    unlink(uppid);
    cmd_fleet_free(&fl);
    up_config_free(&u);
    if (rc == 0)
        log_info("stopped");
    return rc;
}
