/* proc.c -- spawning, signalling and reaping children; reading /proc.
 *
 * Spawn is fork+exec because the child must do three things posix_spawn
 * cannot all express: become a process-group leader, ask for SIGTERM when
 * the parent dies (PR_SET_PDEATHSIG), and report *why* exec failed. The
 * last goes through a CLOEXEC pipe: a successful exec closes it (the parent
 * reads EOF), a failure writes {stage, errno} first. Between fork and exec
 * the child only makes async-signal-safe calls on memory prepared by the
 * parent (argv, the merged environment).
 *
 * PR_SET_PDEATHSIG fires when the *thread* that forked exits, so spawn
 * from a long-lived thread (the control plane's loop), not a worker that
 * may come and go. A detached child calls setsid() instead (its own
 * session and group) and asks for no signal: the parent must then not
 * setpgid() it, as a group leader can no longer start a session. */
#include "core/proc.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { STAGE_DEATHSIG = 1, STAGE_CHDIR, STAGE_OPEN, STAGE_DUP, STAGE_EXEC, STAGE_SETSID };

typedef struct { int stage, err; } spawn_fail;

/* environ with env_extra merged in: a "K=V" in extra replaces environ's K.
 * Only the pointer array is allocated; the strings are borrowed. */
static char **env_merge(char *const *extra)
{
    size_t ne = 0, nx = 0;
    while (environ && environ[ne]) ne++;
    while (extra && extra[nx]) nx++;
    char **env = malloc((ne + nx + 1) * sizeof *env);
    if (!env)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < ne; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t kl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int replaced = 0;
        for (size_t j = 0; j < nx && !replaced; j++)
            replaced = strncmp(extra[j], environ[i], kl) == 0 && extra[j][kl] == '=';
        if (!replaced)
            env[n++] = environ[i];
    }
    for (size_t j = 0; j < nx; j++)
        env[n++] = extra[j];
    env[n] = NULL;
    return env;
}

static void child_fail(int fd, int stage)
{
    spawn_fail f = { stage, errno };
    ssize_t w = write(fd, &f, sizeof f);
    (void)w;
    _exit(127);
}

/* Runs in the child between fork and exec: async-signal-safe only. */
static void child_exec(const proc_spec *spec, char **env, int errfd, pid_t parent)
{
    if (spec->detach) {
        if (setsid() < 0)
            child_fail(errfd, STAGE_SETSID);
    } else {
        setpgid(0, 0);
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
            child_fail(errfd, STAGE_DEATHSIG);
        /* The parent may have died before prctl took effect. */
        if (getppid() != parent)
            _exit(127);
    }

    /* Dispositions the parent set (SIG_IGN for SIGPIPE, say) and its signal
     * mask survive exec; the child should start clean. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);

    if (spec->cwd && chdir(spec->cwd) < 0)
        child_fail(errfd, STAGE_CHDIR);
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0) {
        dup2(nul, STDIN_FILENO);
        if (nul != STDIN_FILENO)
            close(nul);
    }
    if (spec->stdout_path) {
        int fd = open(spec->stdout_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            child_fail(errfd, STAGE_OPEN);
        if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
            child_fail(errfd, STAGE_DUP);
        close(fd);
    }
    execvpe(spec->argv[0], spec->argv, env);
    child_fail(errfd, STAGE_EXEC);
}

pid_t proc_spawn(const proc_spec *spec, char *err, size_t errlen)
{
    if (!spec || !spec->argv || !spec->argv[0] || !spec->argv[0][0]) {
        snprintf(err, errlen, "spawn: empty argv");
        return -1;
    }
    char **env = env_merge(spec->env_extra);
    if (!env) {
        snprintf(err, errlen, "spawn '%s': out of memory", spec->argv[0]);
        return -1;
    }
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "spawn '%s': pipe: %s", spec->argv[0], strerror(errno));
        free(env);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "spawn '%s': fork: %s", spec->argv[0], strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        free(env);
        return -1;
    }
    if (pid == 0) {
        close(pfd[0]);
        child_exec(spec, env, pfd[1], parent);
    }
    /* Also from the parent, so the group exists before we ever signal it
     * (a detached child has its session, and so its group, before exec,
     * which the parent waits for below). */
    if (!spec->detach)
        setpgid(pid, pid);
    close(pfd[1]);
    free(env);

    spawn_fail f;
    ssize_t n;
    do
        n = read(pfd[0], &f, sizeof f);
    while (n < 0 && errno == EINTR);
    close(pfd[0]);
    if (n == 0)
        return pid;   /* exec succeeded: the pipe closed on exec */

    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof f) {
        snprintf(err, errlen, "spawn '%s': child failed before exec", spec->argv[0]);
        return -1;
    }
    const char *e = strerror(f.err);
    switch (f.stage) {
    case STAGE_CHDIR:
        snprintf(err, errlen, "spawn '%s': chdir '%s': %s", spec->argv[0], spec->cwd, e);
        break;
    case STAGE_OPEN:
        snprintf(err, errlen, "spawn '%s': open log '%s': %s", spec->argv[0], spec->stdout_path, e);
        break;
    case STAGE_EXEC:
        snprintf(err, errlen, "spawn '%s': exec: %s", spec->argv[0], e);
        break;
    default:
        snprintf(err, errlen, "spawn '%s': child setup (stage %d): %s", spec->argv[0], f.stage, e);
        break;
    }
    errno = f.err;
    return -1;
}

int proc_signal(pid_t pid, int sig)
{
    if (pid <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (kill(-pid, sig) == 0)
        return 0;
    /* Not a group leader (e.g. it called setsid): signal it alone. */
    return kill(pid, sig);
}

int proc_reap(pid_t pid, int *status)
{
    int st;
    pid_t r;
    do
        r = waitpid(pid, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -1;
    if (r == 0)
        return 0;
    if (status)
        *status = st;
    return 1;
}

int proc_stop(pid_t pid, int grace_ms)
{
    int st = 0;
    int r = proc_reap(pid, &st);
    if (r != 0)
        return r < 0 ? -1 : st;
    proc_signal(pid, SIGTERM);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        r = proc_reap(pid, &st);
        if (r != 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long el = (now.tv_sec - t0.tv_sec) * 1000L + (now.tv_nsec - t0.tv_nsec) / 1000000L;
        if (el >= grace_ms)
            break;
        /* 5ms polls: a prompt exit is noticed quickly without a SIGCHLD
         * handler that would belong to the whole process. */
        poll(NULL, 0, 5);
    }
    if (r == 0) {
        proc_signal(pid, SIGKILL);
        pid_t w;
        do
            w = waitpid(pid, &st, 0);
        while (w < 0 && errno == EINTR);
        if (w < 0)
            return -1;
    } else if (r < 0) {
        return -1;
    }
    /* The leader is gone; make sure nothing it started lingers. */
    kill(-pid, SIGKILL);
    return st;
}

/* ---- argv split ------------------------------------------------------- */

char **proc_argv_split(const char *cmdline, char *err, size_t errlen)
{
    size_t len = strlen(cmdline);
    /* Words never outgrow the line: one buffer holds them all. */
    char *store = malloc(len + 1);
    size_t cap = len / 2 + 2;
    char **argv = malloc(cap * sizeof *argv);
    if (!store || !argv) {
        free(store);
        free(argv);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t argc = 0, w = 0;
    const char *p = cmdline;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        argv[argc++] = store + w;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (*p == '\'') {
                const char *q = strchr(p + 1, '\'');
                if (!q) {
                    snprintf(err, errlen, "unterminated single quote at column %zu in '%s'",
                             (size_t)(p - cmdline) + 1, cmdline);
                    goto fail;
                }
                memcpy(store + w, p + 1, (size_t)(q - p - 1));
                w += (size_t)(q - p - 1);
                p = q + 1;
            } else if (*p == '"') {
                const char *start = p++;
                while (*p && *p != '"') {
                    if (*p == '\\' && (p[1] == '"' || p[1] == '\\' || p[1] == '$' || p[1] == '`'))
                        p++;
                    store[w++] = *p++;
                }
                if (!*p) {
                    snprintf(err, errlen, "unterminated double quote at column %zu in '%s'",
                             (size_t)(start - cmdline) + 1, cmdline);
                    goto fail;
                }
                p++;
            } else if (*p == '\\' && p[1]) {
                store[w++] = p[1];
                p += 2;
            } else {
                store[w++] = *p++;
            }
        }
        store[w++] = '\0';
    }
    if (argc == 0) {
        snprintf(err, errlen, "empty command");
        goto fail;
    }
    argv[argc] = NULL;
    return argv;
fail:
    free(store);
    free(argv);
    return NULL;
}

void proc_argv_free(char **argv)
{
    if (!argv)
        return;
    free(argv[0]);   /* the shared word store */
    free(argv);
}

/* ---- /proc ------------------------------------------------------------ */

static int read_file(const char *path, char *out, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t r = read(fd, out, n - 1);
    close(fd);
    if (r < 0)
        return -1;
    out[r] = '\0';
    return 0;
}

static double boot_time(void)
{
    char b[8192];
    if (read_file("/proc/stat", b, sizeof b) < 0)
        return 0;
    const char *p = strstr(b, "\nbtime ");
    return p ? strtod(p + 7, NULL) : 0;
}

int proc_usage_read(pid_t pid, proc_usage *out)
{
    memset(out, 0, sizeof *out);
    char path[64], b[4096];
    char self[16];
    if (pid == 0)
        snprintf(self, sizeof self, "self");
    else
        snprintf(self, sizeof self, "%d", (int)pid);

    snprintf(path, sizeof path, "/proc/%s/stat", self);
    if (read_file(path, b, sizeof b) < 0)
        return -1;
    /* comm may hold spaces and parentheses: fields start after the last ')'. */
    const char *p = strrchr(b, ')');
    if (!p) {
        errno = EINVAL;
        return -1;
    }
    p += 2;
    /* p is at field 3 (state); utime is 14, stime 15, starttime 22. */
    unsigned long long f[23] = {0};
    int field = 3;
    while (*p && field <= 22) {
        if (field > 3)
            f[field] = strtoull(p, NULL, 10);
        while (*p && *p != ' ')
            p++;
        while (*p == ' ')
            p++;
        field++;
    }
    double hz = (double)sysconf(_SC_CLK_TCK);
    out->cpu_seconds = (double)(f[14] + f[15]) / hz;
    double bt = boot_time();
    if (bt > 0)
        out->start_time = bt + (double)f[22] / hz;

    snprintf(path, sizeof path, "/proc/%s/statm", self);
    if (read_file(path, b, sizeof b) == 0) {
        unsigned long long size = 0, rss = 0;
        if (sscanf(b, "%llu %llu", &size, &rss) == 2)
            out->rss_bytes = rss * (uint64_t)sysconf(_SC_PAGESIZE);
    }

    snprintf(path, sizeof path, "/proc/%s/fd", self);
    DIR *d = opendir(path);
    if (d) {
        int own = pid == 0 || pid == getpid() ? dirfd(d) : -1;
        const struct dirent *de;
        while ((de = readdir(d))) {
            if (!isdigit((unsigned char)de->d_name[0]))
                continue;
            if (atoi(de->d_name) == own)   /* the directory we are reading */
                continue;
            out->open_fds++;
        }
        closedir(d);
    }

    snprintf(path, sizeof path, "/proc/%s/limits", self);
    if (read_file(path, b, sizeof b) == 0) {
        const char *l = strstr(b, "Max open files");
        if (l) {
            l += strlen("Max open files");
            while (*l == ' ')
                l++;
            out->max_fds = strncmp(l, "unlimited", 9) == 0 ? UINT64_MAX : strtoull(l, NULL, 10);
        }
    }
    return 0;
}

/* ---- identity of a pid, for adoption ----------------------------------- */

int proc_ident_read(pid_t pid, proc_ident *out)
{
    memset(out, 0, sizeof *out);
    if (pid <= 0) {
        errno = ESRCH;
        return -1;
    }
    char path[64], b[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_file(path, b, sizeof b) < 0)
        return -1;
    const char *p = strrchr(b, ')');
    if (!p || p[1] != ' ' || !p[2]) {
        errno = EINVAL;
        return -1;
    }
    p += 2;
    if (*p == 'Z' || *p == 'X') {   /* exited, not yet reaped: gone all the same */
        errno = ESRCH;
        return -1;
    }
    /* p is at field 3 (state): pgrp is 5, session 6, starttime 22. */
    for (int field = 3; *p && field <= 22; field++) {
        if (field == 5)
            out->pgid = (pid_t)strtol(p, NULL, 10);
        else if (field == 6)
            out->sid = (pid_t)strtol(p, NULL, 10);
        else if (field == 22)
            out->start = strtoull(p, NULL, 10);
        while (*p && *p != ' ')
            p++;
        while (*p == ' ')
            p++;
    }
    if (out->start == 0) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

bool proc_same(pid_t pid, uint64_t start)
{
    proc_ident id;
    return start && proc_ident_read(pid, &id) == 0 && id.start == start;
}

int proc_stop_adopted(pid_t pid, uint64_t start, int grace_ms)
{
    if (!proc_same(pid, start))
        return 0;
    proc_signal(pid, SIGTERM);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (!proc_same(pid, start))
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long el = (now.tv_sec - t0.tv_sec) * 1000L + (now.tv_nsec - t0.tv_nsec) / 1000000L;
        if (el >= grace_ms)
            break;
        poll(NULL, 0, 10);
    }
    proc_signal(pid, SIGKILL);
    for (int i = 0; i < 200; i++) {   /* up to 2 s for the kernel to take it down */
        if (!proc_same(pid, start))
            return 0;
        poll(NULL, 0, 10);
    }
    return -1;
}
