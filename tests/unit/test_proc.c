/* test_proc.c -- spawn/exit status, exec failure reporting, env merge,
 * cwd and output redirection, graceful stop and SIGKILL fallback, argv
 * splitting, /proc usage numbers. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/proc.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static int wait_exit(pid_t pid, int timeout_ms)
{
    int st;
    for (int i = 0; i < timeout_ms / 5; i++) {
        if (proc_reap(pid, &st) == 1)
            return st;
        usleep(5000);
    }
    return -1;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static char *slurp(const char *path)
{
    static char b[4096];
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "%s", path);
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    b[n > 0 ? n : 0] = '\0';
    return b;
}

Test(proc, exit_status_and_group)
{
    char *argv[] = { "/bin/sh", "-c", "exit 3", NULL };
    proc_spec s = { .argv = argv };
    char err[256] = "";
    pid_t pid = proc_spawn(&s, err, sizeof err);
    cr_assert_gt(pid, 0, "%s", err);
    cr_assert_eq(getpgid(pid) == pid || getpgid(pid) < 0, 1, "child is its own group leader");
    int st = wait_exit(pid, 3000);
    cr_assert(WIFEXITED(st));
    cr_assert_eq(WEXITSTATUS(st), 3);
    cr_assert_eq(proc_reap(pid, &st), -1, "already reaped");
}

Test(proc, exec_failure_reported)
{
    char *argv[] = { "hscale-no-such-binary", "x", NULL };
    proc_spec s = { .argv = argv };
    char err[256] = "";
    cr_assert_eq(proc_spawn(&s, err, sizeof err), -1);
    cr_assert_str_eq(err, "spawn 'hscale-no-such-binary': exec: No such file or directory");

    char *ok[] = { "true", NULL };
    proc_spec c = { .argv = ok, .cwd = "/nonexistent-dir" };
    cr_assert_eq(proc_spawn(&c, err, sizeof err), -1);
    cr_assert(strstr(err, "chdir '/nonexistent-dir'"), "%s", err);

    proc_spec o = { .argv = ok, .stdout_path = "/nonexistent-dir/log" };
    cr_assert_eq(proc_spawn(&o, err, sizeof err), -1);
    cr_assert(strstr(err, "open log '/nonexistent-dir/log'"), "%s", err);
    /* No zombies left: every failed child was reaped. */
    cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1);
    cr_assert_eq(errno, ECHILD);
}

Test(proc, env_cwd_and_output_append)
{
    char dir[] = "/tmp/core-proc-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char log[128];
    snprintf(log, sizeof log, "%s/out.log", dir);
    int fd = open(log, O_WRONLY | O_CREAT, 0644);
    cr_assert_eq(write(fd, "old\n", 4), 4);
    close(fd);

    setenv("HSCALE_TEST_KEEP", "kept", 1);
    setenv("HSCALE_TEST_OVER", "parent", 1);
    char *argv[] = { "sh", "-c",
        "echo \"$HSCALE_TEST_KEEP $HSCALE_TEST_OVER $HSCALE_TEST_NEW $(pwd)\"; echo err >&2", NULL };
    char *extra[] = { "HSCALE_TEST_OVER=child", "HSCALE_TEST_NEW=new", NULL };
    proc_spec s = { .argv = argv, .env_extra = extra, .cwd = dir, .stdout_path = log };
    char err[256];
    pid_t pid = proc_spawn(&s, err, sizeof err);
    cr_assert_gt(pid, 0, "%s", err);
    int st = wait_exit(pid, 3000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char want[256];
    snprintf(want, sizeof want, "old\nkept child new %s\nerr\n", dir);
    cr_assert_str_eq(slurp(log), want);
    unlink(log);
    rmdir(dir);
    unsetenv("HSCALE_TEST_KEEP");
    unsetenv("HSCALE_TEST_OVER");
}

Test(proc, stop_graceful_and_forced, .timeout = 10)
{
    char *polite[] = { "sleep", "30", NULL };
    proc_spec s = { .argv = polite };
    char err[256];
    pid_t pid = proc_spawn(&s, err, sizeof err);
    cr_assert_gt(pid, 0, "%s", err);
    uint64_t t0 = mono_ms();
    int st = proc_stop(pid, 2000);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %d", st);
    cr_assert_lt(mono_ms() - t0, 1000, "graceful stop waited for the grace period");

    /* Ignores SIGTERM (and reports it is ready first, so the trap is set
     * before we signal). A grandchild in the group must die too. */
    char dir[] = "/tmp/core-proc-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char ready[128];
    snprintf(ready, sizeof ready, "%s/ready", dir);
    char script[512];
    snprintf(script, sizeof script,
             "trap '' TERM; sleep 30 & echo $! > %s.tmp; mv %s.tmp %s; wait; sleep 30",
             ready, ready, ready);
    char *stubborn[] = { "sh", "-c", script, NULL };
    proc_spec s2 = { .argv = stubborn };
    pid = proc_spawn(&s2, err, sizeof err);
    cr_assert_gt(pid, 0, "%s", err);
    for (int i = 0; i < 400 && access(ready, F_OK) != 0; i++)
        usleep(5000);
    int grandchild = atoi(slurp(ready));
    cr_assert_gt(grandchild, 0);
    t0 = mono_ms();
    st = proc_stop(pid, 200);
    uint64_t dt = mono_ms() - t0;
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %d", st);
    cr_assert_geq(dt, 190);
    cr_assert_lt(dt, 2000);
    /* The grandchild (reparented away from us) is gone or a zombie. */
    int alive = 0;
    for (int i = 0; i < 100; i++) {
        char path[64], b[512];
        snprintf(path, sizeof path, "/proc/%d/stat", grandchild);
        FILE *f = fopen(path, "r");
        if (!f) { alive = 0; break; }
        size_t n = fread(b, 1, sizeof b - 1, f);
        fclose(f);
        b[n] = '\0';
        const char *p = strrchr(b, ')');
        alive = !(p && (p[2] == 'Z' || p[2] == 'X'));
        if (!alive) break;
        usleep(10000);
    }
    cr_assert_not(alive, "grandchild survived the group kill");
    unlink(ready);
    rmdir(dir);
}

Test(proc, argv_split)
{
    char err[256];
    char **a = proc_argv_split("  python3 -m http.server  'a b' \"c \\\"d\\\"\" e\\ f x''y  ", err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    const char *want[] = { "python3", "-m", "http.server", "a b", "c \"d\"", "e f", "xy", NULL };
    for (int i = 0; want[i]; i++)
        cr_assert_str_eq(a[i], want[i], "word %d", i);
    cr_assert_null(a[7]);
    proc_argv_free(a);

    a = proc_argv_split("'' x", err, sizeof err);
    cr_assert_not_null(a);
    cr_assert_str_eq(a[0], "");
    cr_assert_str_eq(a[1], "x");
    proc_argv_free(a);

    cr_assert_null(proc_argv_split("echo 'oops", err, sizeof err));
    cr_assert_str_eq(err, "unterminated single quote at column 6 in 'echo 'oops'");
    cr_assert_null(proc_argv_split("echo \"oops", err, sizeof err));
    cr_assert(strstr(err, "unterminated double quote at column 6"), "%s", err);
    cr_assert_null(proc_argv_split("   ", err, sizeof err));
    cr_assert_str_eq(err, "empty command");
}

Test(proc, usage_numbers_sane)
{
    /* Burn a little CPU and hold a few fds so the numbers have something
     * to show. */
    volatile double x = 0;
    uint64_t t0 = mono_ms();
    while (mono_ms() - t0 < 60)
        x += 1.0;
    proc_usage u;
    int fds[3];
    proc_usage before;
    cr_assert_eq(proc_usage_read(0, &before), 0);
    for (int i = 0; i < 3; i++)
        fds[i] = open("/dev/null", O_RDONLY);
    cr_assert_eq(proc_usage_read(0, &u), 0);
    cr_assert_geq(u.cpu_seconds, 0.03, "cpu %f", u.cpu_seconds);
    cr_assert_lt(u.cpu_seconds, 1000);
    cr_assert_gt(u.rss_bytes, 1u << 20);
    cr_assert_eq(u.open_fds, before.open_fds + 3);
    cr_assert_geq(u.open_fds, 6);
    cr_assert_geq(u.max_fds, u.open_fds);
    double now = (double)time(NULL);
    cr_assert_leq(u.start_time, now + 1);
    cr_assert_gt(u.start_time, now - 3600, "start %f now %f", u.start_time, now);
    for (int i = 0; i < 3; i++)
        close(fds[i]);

    /* Another process by pid. */
    char *argv[] = { "sleep", "5", NULL };
    proc_spec s = { .argv = argv };
    char err[256];
    pid_t pid = proc_spawn(&s, err, sizeof err);
    cr_assert_gt(pid, 0);
    usleep(20000);
    proc_usage c;
    cr_assert_eq(proc_usage_read(pid, &c), 0);
    cr_assert_gt(c.rss_bytes, 0);
    cr_assert_geq(c.open_fds, 3);
    proc_stop(pid, 1000);
    cr_assert_eq(proc_usage_read(pid, &c), -1, "reaped process still readable");
}
