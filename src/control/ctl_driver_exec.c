/* ctl_driver_exec.c -- the exec driver: instances are whatever the user's
 * scripts say they are (cloud VMs, `kubectl scale`, another host).
 *
 *   launch            prints the new instance's host:port (last non-empty
 *                     line of stdout); HSCALE_INSTANCE_ID, HSCALE_VERSION,
 *                     HSCALE_COMMAND and HSCALE_STATE_DIR are in its env
 *   terminate ID ADDR stops it; exit 0 means gone
 *   list              prints "ID ADDR" lines of what exists (adopted at start)
 *
 * Every run is bounded by a timeout that kills the script's whole process
 * group, and a failure reaches the operator with the exit status and the
 * end of the script's stderr. Scripts run without a shell of ours: the
 * configured line is split into words, like the process driver's command. */
#include "control/ctl_instances.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/proc.h"
#include "core/sock.h"

extern char **environ;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* environ with every extra "K=V" added or replacing its key. */
static char **merge_env(char *const *extra)
{
    size_t ne = 0, nx = 0;
    while (environ[ne])
        ne++;
    while (extra && extra[nx])
        nx++;
    char **env = calloc(ne + nx + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < ne; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t kl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool replaced = false;
        for (size_t j = 0; j < nx && !replaced; j++)
            replaced = strncmp(extra[j], environ[i], kl) == 0 && extra[j][kl] == '=';
        if (!replaced)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < nx; j++)
        env[k++] = extra[j];
    return env;
}

/* The last ~200 bytes of stderr, on one line, for error messages. */
static void tail_of(const buf *b, char *out, size_t outlen)
{
    size_t len = b->len, start = len > 200 ? len - 200 : 0;
    const char *p = buf_head(b) + start;
    size_t w = 0;
    for (size_t i = 0; i < len - start && w + 1 < outlen; i++)
        out[w++] = p[i] == '\n' || p[i] == '\r' ? ' ' : p[i];
    while (w > 0 && out[w - 1] == ' ')
        w--;
    out[w] = '\0';
}

int ctl_exec_run(char *const *argv, char *const *env_extra, int timeout_ms,
                 buf *out, buf *errout, char *err, size_t errlen)
{
    return ctl_exec_run_in(NULL, argv, env_extra, timeout_ms, out, errout, err, errlen);
}

int ctl_exec_run_in(const char *cwd, char *const *argv, char *const *env_extra, int timeout_ms,
                    buf *out, buf *errout, char *err, size_t errlen)
{
    int po[2] = { -1, -1 }, pe[2] = { -1, -1 };
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "%s: pipe: %s", argv[0], strerror(errno));
        goto fail_pipes;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    if (cwd && cwd[0])
        posix_spawn_file_actions_addchdir_np(&fa, cwd);
    sigset_t none, dflt;
    sigemptyset(&none);
    sigfillset(&dflt);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dflt);
    /* Its own group, so a timeout kills what the script started too. */
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
                                  | POSIX_SPAWN_SETPGROUP);
    char **env = merge_env(env_extra);
    pid_t pid = -1;
    int rc = env ? posix_spawnp(&pid, argv[0], &fa, &at, argv, env) : ENOMEM;
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot run: %s", argv[0], strerror(rc));
        goto fail_pipes;
    }

    uint64_t deadline = mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 30000);
    struct pollfd pf[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
    buf *dst[2] = { out, errout };
    int open_fds = 2;
    bool timed_out = false;
    while (open_fds > 0) {
        uint64_t now = mono_ms();
        if (now >= deadline) {
            timed_out = true;
            break;
        }
        int n = poll(pf, 2, (int)(deadline - now));
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2 && n > 0; i++) {
            if (pf[i].fd < 0 || !pf[i].revents)
                continue;
            ssize_t r = buf_read_fd(dst[i], pf[i].fd, 4096);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
                close(pf[i].fd);
                pf[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (pf[i].fd >= 0)
            close(pf[i].fd);
    /* Output closed usually means the script is exiting, but one may close
     * its stdout and linger: the deadline still holds. */
    int status = 0;
    while (!timed_out) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR))
            break;
        if (mono_ms() >= deadline)
            timed_out = true;
        else
            usleep(2000);
    }
    if (timed_out) {
        kill(-pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    char tail[256];
    tail_of(errout, tail, sizeof tail);
    if (timed_out) {
        snprintf(err, errlen, "%s: timed out after %d ms%s%s", argv[0], timeout_ms,
                 tail[0] ? ": " : "", tail);
        return -1;
    }
    if (WIFSIGNALED(status)) {
        snprintf(err, errlen, "%s: killed by signal %d%s%s", argv[0], WTERMSIG(status),
                 tail[0] ? ": " : "", tail);
        return -1;
    }
    return WEXITSTATUS(status);

fail_pipes:
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    return -1;
}

typedef struct exec_driver {
    ctl_driver   base;
    ctl_exec_cfg cfg;      /* borrowed from the config */
    const char  *state_dir;
} exec_driver;

/* Splits the configured line and appends extra words. */
static char **script_argv(const char *line, const char *what, const char *a1, const char *a2,
                          char *err, size_t errlen)
{
    if (!line || !line[0]) {
        snprintf(err, errlen, "exec.%s: no script configured", what);
        return NULL;
    }
    char e[256];
    char **words = proc_argv_split(line, e, sizeof e);
    if (!words) {
        snprintf(err, errlen, "exec.%s: %s", what, e);
        return NULL;
    }
    size_t n = 0;
    while (words[n])
        n++;
    char **argv = calloc(n + 3, sizeof *argv);
    bool ok = argv != NULL && n > 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = (argv[i] = strdup(words[i])) != NULL;
    if (ok && a1)
        ok = (argv[n] = strdup(a1)) != NULL;
    if (ok && a2)
        ok = (argv[n + 1] = strdup(a2)) != NULL;
    proc_argv_free(words);
    if (!ok) {
        snprintf(err, errlen, "exec.%s: %s", what, n ? "out of memory" : "empty command");
        ctl_argv_free(argv);
        return NULL;
    }
    return argv;
}

/* Runs one script; 0 with stdout in out, or -1 with a message. Every
 * script sees HSCALE_STATE_DIR, so they can keep their books there. */
static int run_script(exec_driver *d, const char *what, char **argv, char *const *env,
                      buf *out, char *err, size_t errlen)
{
    char e_dir[1100];
    snprintf(e_dir, sizeof e_dir, "HSCALE_STATE_DIR=%s", d->state_dir ? d->state_dir : ".");
    char *dflt[] = { e_dir, NULL };
    if (!env)
        env = dflt;
    buf eb;
    buf_init(&eb);
    char e[512];
    int timeout_ms = (int)(d->cfg.timeout_us / 1000);
    int st = ctl_exec_run(argv, env, timeout_ms, out, &eb, e, sizeof e);
    int rc = 0;
    if (st < 0) {
        snprintf(err, errlen, "exec.%s: %s", what, e);
        rc = -1;
    } else if (st != 0) {
        char tail[256];
        tail_of(&eb, tail, sizeof tail);
        snprintf(err, errlen, "exec.%s: %s exited with status %d%s%s", what, argv[0], st,
                 tail[0] ? ": " : "", tail);
        rc = -1;
    }
    buf_free(&eb);
    return rc;
}

/* The last non-empty line of b, trimmed, into out. */
static void last_line(const buf *b, char *out, size_t outlen)
{
    const char *p = buf_head(b), *end = p + b->len;
    out[0] = '\0';
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *s = p, *e = le;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            e--;
        if (e > s)
            snprintf(out, outlen, "%.*s", (int)(e - s), s);
        p = nl ? nl + 1 : end;
    }
}

static int exec_launch(ctl_driver *base, const ctl_template_cfg *t, const char *id,
                       const char *version, char *address, size_t addrlen, pid_t *pid,
                       char *err, size_t errlen)
{
    exec_driver *d = (exec_driver *)base;
    *pid = 0;
    char **argv = script_argv(d->cfg.launch, "launch", NULL, NULL, err, errlen);
    if (!argv)
        return -1;
    char e_id[96], e_ver[128], e_cmd[1100], e_dir[1100];
    snprintf(e_id, sizeof e_id, "HSCALE_INSTANCE_ID=%s", id);
    snprintf(e_ver, sizeof e_ver, "HSCALE_VERSION=%s", version ? version : "");
    snprintf(e_cmd, sizeof e_cmd, "HSCALE_COMMAND=%s", t && t->command ? t->command : "");
    snprintf(e_dir, sizeof e_dir, "HSCALE_STATE_DIR=%s", d->state_dir ? d->state_dir : ".");
    char *env[] = { e_id, e_ver, e_cmd, e_dir, NULL };
    buf out;
    buf_init(&out);
    int rc = run_script(d, "launch", argv, env, &out, err, errlen);
    if (rc == 0) {
        char line[256], e[256];
        sock_addr sa;
        last_line(&out, line, sizeof line);
        if (!line[0]) {
            snprintf(err, errlen, "exec.launch: expected host:port on stdout, got nothing");
            rc = -1;
        } else if (sock_addr_parse(line, &sa, e, sizeof e) < 0) {
            snprintf(err, errlen, "exec.launch: expected host:port on stdout, got '%s' (%s)",
                     line, e);
            rc = -1;
        } else
            snprintf(address, addrlen, "%s", line);
    }
    buf_free(&out);
    ctl_argv_free(argv);
    return rc;
}

static int exec_poll(ctl_driver *d, const char *id, pid_t pid, int *status)
{
    return 0;   /* the scripts report no exits: health probes find dead ones */
}

static int exec_terminate(ctl_driver *base, const char *id, const char *address, pid_t pid,
                          int how, char *err, size_t errlen)
{
    exec_driver *d = (exec_driver *)base;
    char **argv = script_argv(d->cfg.terminate, "terminate", id, address, err, errlen);
    if (!argv)
        return -1;
    buf out;
    buf_init(&out);
    int rc = run_script(d, "terminate", argv, NULL, &out, err, errlen);
    buf_free(&out);
    ctl_argv_free(argv);
    return rc < 0 ? -1 : 1;   /* synchronous: exit 0 means it is gone */
}

static int exec_list(ctl_driver *base, ctl_found *found, size_t max, char *err, size_t errlen)
{
    exec_driver *d = (exec_driver *)base;
    if (!d->cfg.list || !d->cfg.list[0])
        return 0;
    char **argv = script_argv(d->cfg.list, "list", NULL, NULL, err, errlen);
    if (!argv)
        return -1;
    buf out;
    buf_init(&out);
    int rc = run_script(d, "list", argv, NULL, &out, err, errlen);
    int n = 0, lineno = 0;
    const char *p = buf_head(&out), *end = p + out.len;
    while (rc == 0 && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        char line[256], idb[64], addr[128], extra[8];
        lineno++;
        snprintf(line, sizeof line, "%.*s", (int)(le - p), p);
        p = nl ? nl + 1 : end;
        int k = sscanf(line, "%63s %127s %7s", idb, addr, extra);
        if (k <= 0)
            continue;   /* blank line */
        sock_addr sa;
        char e[256];
        if (k != 2 || strlen(idb) >= sizeof found->id || strlen(addr) >= sizeof found->address
            || sock_addr_parse(addr, &sa, e, sizeof e) < 0) {
            snprintf(err, errlen, "exec.list: line %d: expected 'ID host:port', got '%s'",
                     lineno, line);
            rc = -1;
        } else if ((size_t)n < max) {
            memcpy(found[n].id, idb, strlen(idb) + 1);
            memcpy(found[n].address, addr, strlen(addr) + 1);
            n++;
        }
    }
    buf_free(&out);
    ctl_argv_free(argv);
    return rc < 0 ? -1 : n;
}

static void exec_free(ctl_driver *d)
{
    free(d);
}

ctl_driver *ctl_driver_exec_new(const ctl_exec_cfg *c, const char *state_dir,
                                char *err, size_t errlen)
{
    if (!c->launch || !c->launch[0] || !c->terminate || !c->terminate[0]) {
        snprintf(err, errlen, "exec.%s: the exec driver needs launch and terminate scripts",
                 !c->launch || !c->launch[0] ? "launch" : "terminate");
        return NULL;
    }
    exec_driver *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->base = (ctl_driver){ "exec", true, exec_launch, exec_poll, exec_terminate, exec_list,
                            exec_free, NULL };
    d->cfg = *c;
    if (d->cfg.timeout_us == 0)
        d->cfg.timeout_us = 60000000;
    d->state_dir = state_dir;
    return &d->base;
}
