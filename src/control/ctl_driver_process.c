/* ctl_driver_process.c -- the process driver: instances are processes
 * started by this one on free loopback ports.
 *
 * A port is found by binding to 0 and closing; another program could take
 * it before the child binds, which then shows up as a child that never gets
 * ready (or exits) and is restarted on a new port by the manager. Children
 * are detached (core/proc.c: a session of their own, no parent-death
 * signal), so they keep serving when the control plane dies; the next one
 * adopts them (ctl_adopt.c) and this driver then watches them by pid and
 * start time, as they are no longer its children. Each writes stdout and
 * stderr to <state_dir>/logs/<id>.log so a crash loop leaves its reason on
 * disk.
 *
 * A worker (template port: none) gets no port and has no address. Its
 * stop's SIGTERM may go to the main process only (kill_mode mixed): the
 * main process then stops its own children, as Celery's warm shutdown
 * needs. */
#include "control/ctl_instances.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/proc.h"
#include "core/sock.h"

/* A process a previous control plane started. */
typedef struct proc_adopted {
    pid_t    pid;
    uint64_t start;
} proc_adopted;

typedef struct process_driver {
    ctl_driver    base;
    char          logdir[1024];   /* "" when children inherit stdout */
    char          state_dir[1024];
    /* Supervisor thread only (adopt runs before it starts). */
    proc_adopted *adopted;
    size_t        nadopted, capadopted;
} process_driver;

static proc_adopted *adopted_find(process_driver *d, pid_t pid)
{
    for (size_t i = 0; i < d->nadopted; i++)
        if (d->adopted[i].pid == pid)
            return &d->adopted[i];
    return NULL;
}

static int proc_adopt(ctl_driver *base, const char *id, pid_t pid, uint64_t start)
{
    process_driver *d = (process_driver *)base;
    (void)id;
    if (adopted_find(d, pid))
        return 0;
    if (d->nadopted == d->capadopted) {
        size_t cap = d->capadopted ? d->capadopted * 2 : 16;
        proc_adopted *n = realloc(d->adopted, cap * sizeof *n);
        if (!n)
            return -1;
        d->adopted = n;
        d->capadopted = cap;
    }
    d->adopted[d->nadopted++] = (proc_adopted){ pid, start };
    return 0;
}

static int proc_launch(ctl_driver *base, const ctl_template_cfg *t, const char *id,
                       const char *version, char *address, size_t addrlen, pid_t *pid,
                       char *err, size_t errlen)
{
    process_driver *d = (process_driver *)base;
    *pid = 0;
    bool noport = t->port == CTL_PORT_NONE;
    int port = noport ? 0 : sock_free_port();
    if (!noport && port <= 0) {
        snprintf(err, errlen, "no free loopback port: %s", strerror(errno));
        return -1;
    }
    const char *host = t->host && t->host[0] ? t->host : "127.0.0.1";
    ctl_tmpl_vars v = { .id = id, .version = version ? version : t->version, .host = host,
                        .state_dir = d->state_dir[0] ? d->state_dir : ".", .port = port,
                        .noport = noport };
    char e[512];
    char **argv = ctl_tmpl_argv(t, &v, e, sizeof e);
    char **env = argv ? ctl_tmpl_env(t, &v, e, sizeof e) : NULL;
    char *cwd = NULL;
    if (env && t->workdir && t->workdir[0])
        cwd = ctl_tmpl_expand(t->workdir, &v, e, sizeof e);
    if (!argv || !env || (t->workdir && t->workdir[0] && !cwd)) {
        snprintf(err, errlen, "template: %s", e);
        ctl_argv_free(argv);
        ctl_argv_free(env);
        free(cwd);
        return -1;
    }
    char logpath[1200];
    if (d->logdir[0])
        snprintf(logpath, sizeof logpath, "%s/%s.log", d->logdir, id);
    proc_spec spec = { .argv = argv, .env_extra = env, .cwd = cwd,
                       .stdout_path = d->logdir[0] ? logpath : NULL, .detach = true };
    pid_t p = proc_spawn(&spec, e, sizeof e);
    ctl_argv_free(argv);
    ctl_argv_free(env);
    free(cwd);
    if (p < 0) {
        snprintf(err, errlen, "%s", e);
        return -1;
    }
    *pid = p;
    if (noport)
        address[0] = '\0';   /* a worker: nothing to reach it at */
    else
        snprintf(address, addrlen, "%s:%d", host, port);
    return 0;
}

/* An instance is its process group: when the main process has exited,
 * whatever it left in the group (a worker's pool child after a mixed
 * stop, a crashed server's helpers) is killed before the main process is
 * reaped, while its zombie still holds the group's id, so the signal can
 * reach no one else. */
static int proc_poll(ctl_driver *d, const char *id, pid_t pid, int *status)
{
    if (pid <= 0)
        return 0;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
        kill(-pid, SIGKILL);
    int st = 0;
    int r = proc_reap(pid, &st);
    if (r == 0)
        return 0;
    process_driver *pd = (process_driver *)d;
    proc_adopted *a = r < 0 ? adopted_find(pd, pid) : NULL;
    if (a) {
        /* Not our child: it runs while its pid has its start time. */
        if (proc_same(pid, a->start))
            return 0;
        *a = pd->adopted[--pd->nadopted];
    }
    *status = r == 1 ? st : -1;   /* -1: reaped elsewhere, gone all the same */
    return 1;
}

/* CTL_TERM_MAIN signals the main process alone: it stops its own
 * children (Celery's warm shutdown lets them finish their tasks, where a
 * SIGTERM of their own kills them at once). A kill is always for the
 * whole group, so nothing the instance started outlives it. */
static int proc_terminate(ctl_driver *d, const char *id, const char *address, pid_t pid,
                          int how, char *err, size_t errlen)
{
    if (pid <= 0)
        return 1;
    const proc_adopted *a = adopted_find((process_driver *)d, pid);
    if (a && !proc_same(pid, a->start))
        return 1;   /* gone, and its pid may be another program's now */
    int sig = how == CTL_TERM_KILL ? SIGKILL : SIGTERM;
    int rc = how == CTL_TERM_MAIN ? kill(pid, sig) : proc_signal(pid, sig);
    if (rc < 0) {
        if (errno == ESRCH)
            return 1;
        snprintf(err, errlen, "signal %d to %d: %s", sig, (int)pid, strerror(errno));
        return -1;
    }
    return 0;
}

static void proc_free(ctl_driver *d)
{
    free(((process_driver *)d)->adopted);
    free(d);
}

static int mkdir_p(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

ctl_driver *ctl_driver_process_new(const char *state_dir, char *err, size_t errlen)
{
    process_driver *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->base = (ctl_driver){ "process", false, proc_launch, proc_poll, proc_terminate, NULL,
                            proc_free, proc_adopt };
    if (state_dir && state_dir[0]) {
        if (strlen(state_dir) > 900) {
            snprintf(err, errlen, "state_dir: path too long");
            free(d);
            return NULL;
        }
        snprintf(d->state_dir, sizeof d->state_dir, "%s", state_dir);
        snprintf(d->logdir, sizeof d->logdir, "%s/logs", state_dir);
        if (mkdir_p(d->logdir) < 0) {
            snprintf(err, errlen, "state_dir: cannot create %s: %s", d->logdir, strerror(errno));
            free(d);
            return NULL;
        }
    }
    return &d->base;
}
