/* test_ctl_exec.c -- the exec driver against real little shell scripts
 * written into a temp dir: output capture, exit statuses, timeouts that
 * kill the whole process group, the launch/terminate/list contract and the
 * errors an operator sees when a script misbehaves. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "control/ctl_instances.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static char dir[256];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/hscale-test-exec-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Writes an executable script; returns its path (static buffer per slot). */
static const char *script(int slot, const char *body)
{
    static char paths[4][300];
    snprintf(paths[slot], sizeof paths[slot], "%s/s%d.sh", dir, slot);
    FILE *f = fopen(paths[slot], "w");
    cr_assert_not_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    chmod(paths[slot], 0755);
    return paths[slot];
}

static char *slurp(const char *name)
{
    static char b[4096];
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    b[n > 0 ? n : 0] = '\0';
    return b;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

TestSuite(ctl_exec, .init = setup, .fini = teardown);

Test(ctl_exec, run_captures_output_and_status)
{
    char *argv[] = { (char *)script(0, "echo out-$FOO; echo err >&2; exit 4"), NULL };
    char *env[] = { "FOO=bar", NULL };
    buf out, eb;
    buf_init(&out);
    buf_init(&eb);
    char err[256] = "";
    int st = ctl_exec_run(argv, env, 5000, &out, &eb, err, sizeof err);
    cr_assert_eq(st, 4, "%s", err);
    cr_assert_eq(out.len, 8);
    cr_assert(memcmp(buf_head(&out), "out-bar\n", 8) == 0);
    cr_assert(eb.len == 4 && memcmp(buf_head(&eb), "err\n", 4) == 0);
    buf_free(&out);
    buf_free(&eb);
}

Test(ctl_exec, run_missing_program)
{
    char *argv[] = { "/nonexistent/launch.sh", NULL };
    buf out, eb;
    buf_init(&out);
    buf_init(&eb);
    char err[256] = "";
    cr_assert_eq(ctl_exec_run(argv, NULL, 1000, &out, &eb, err, sizeof err), -1);
    cr_assert(strstr(err, "/nonexistent/launch.sh") && strstr(err, "cannot run"), "%s", err);
    buf_free(&out);
    buf_free(&eb);
}

Test(ctl_exec, timeout_kills_the_group)
{
    char body[600];
    snprintf(body, sizeof body, "sleep 30 & echo $! > %s/child.pid; echo started >&2; wait", dir);
    char *argv[] = { (char *)script(0, body), NULL };
    buf out, eb;
    buf_init(&out);
    buf_init(&eb);
    char err[256] = "";
    uint64_t t0 = mono_ms();
    cr_assert_eq(ctl_exec_run(argv, NULL, 300, &out, &eb, err, sizeof err), -1);
    uint64_t took = mono_ms() - t0;
    cr_assert_lt(took, 3000, "bounded by the timeout, took %llu ms", (unsigned long long)took);
    cr_assert(strstr(err, "timed out after 300 ms") && strstr(err, "started"), "%s", err);
    char *pidtxt = slurp("child.pid");
    cr_assert_not_null(pidtxt);
    pid_t child = (pid_t)atoi(pidtxt);
    /* The grandchild was killed with the group (it may linger as a zombie
     * of init for a moment; poll). */
    int alive = 1;
    for (int i = 0; i < 200 && alive; i++) {
        char p[64], st[512] = "";
        snprintf(p, sizeof p, "/proc/%d/stat", (int)child);
        FILE *f = fopen(p, "r");
        if (!f)
            alive = 0;
        else {
            if (fgets(st, sizeof st, f) && strstr(st, ") Z "))
                alive = 0;
            fclose(f);
        }
        if (alive)
            usleep(10000);
    }
    cr_assert_eq(alive, 0, "grandchild %d still running", (int)child);
    buf_free(&out);
    buf_free(&eb);
}

Test(ctl_exec, stdout_closed_but_lingering_is_bounded)
{
    char *argv[] = { (char *)script(0, "exec >/dev/null 2>&1; sleep 30"), NULL };
    buf out, eb;
    buf_init(&out);
    buf_init(&eb);
    char err[256] = "";
    uint64_t t0 = mono_ms();
    cr_assert_eq(ctl_exec_run(argv, NULL, 300, &out, &eb, err, sizeof err), -1);
    cr_assert_lt(mono_ms() - t0, 3000);
    cr_assert(strstr(err, "timed out"), "%s", err);
    buf_free(&out);
    buf_free(&eb);
}

static ctl_driver *driver(const char *launch, const char *terminate, const char *list)
{
    ctl_exec_cfg c = { .launch = (char *)launch, .terminate = (char *)terminate,
                       .list = (char *)list, .timeout_us = 2000000 };
    char err[256] = "";
    /* The driver borrows the strings: they are static script paths. */
    ctl_driver *d = ctl_driver_exec_new(&c, dir, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    return d;
}

Test(ctl_exec, launch_prints_address_and_sees_env)
{
    char body[600];
    snprintf(body, sizeof body,
             "echo \"$HSCALE_INSTANCE_ID $HSCALE_VERSION $HSCALE_COMMAND\" > %s/env.txt\n"
             "echo 'provisioning...'\necho\necho '  127.0.0.1:9555  '\n", dir);
    const char *launch = script(0, body);
    ctl_driver *d = driver(launch, script(1, "exit 0"), NULL);
    ctl_template_cfg t = { .command = "uvicorn main:app --port {port}" };
    char addr[64] = "", err[256] = "";
    pid_t pid = -1;
    cr_assert_eq(d->launch(d, &t, "i-9", "v2", addr, sizeof addr, &pid, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(addr, "127.0.0.1:9555");
    cr_assert_eq(pid, 0);
    cr_assert_str_eq(slurp("env.txt"), "i-9 v2 uvicorn main:app --port {port}\n");
    int st;
    cr_assert_eq(d->poll(d, "i-9", 0, &st), 0);
    d->free(d);
}

Test(ctl_exec, launch_failure_quotes_stderr)
{
    ctl_driver *d = driver(script(0, "echo 'quota exceeded: no capacity' >&2; exit 3"),
                           script(1, "exit 0"), NULL);
    char addr[64], err[512] = "";
    pid_t pid;
    cr_assert_eq(d->launch(d, NULL, "i-1", "v1", addr, sizeof addr, &pid, err, sizeof err), -1);
    cr_assert(strstr(err, "exec.launch") && strstr(err, "status 3")
              && strstr(err, "no capacity"), "%s", err);
    d->free(d);
}

Test(ctl_exec, launch_bad_output_is_named)
{
    ctl_driver *d = driver(script(0, "echo 'done, instance up'"), script(1, "exit 0"), NULL);
    char addr[64], err[512] = "";
    pid_t pid;
    cr_assert_eq(d->launch(d, NULL, "i-1", "v1", addr, sizeof addr, &pid, err, sizeof err), -1);
    cr_assert(strstr(err, "host:port") && strstr(err, "done, instance up"), "%s", err);
    d->free(d);
    d = driver(script(2, "true"), script(1, "exit 0"), NULL);
    cr_assert_eq(d->launch(d, NULL, "i-1", "v1", addr, sizeof addr, &pid, err, sizeof err), -1);
    cr_assert(strstr(err, "got nothing"), "%s", err);
    d->free(d);
}

Test(ctl_exec, launch_timeout_surfaces)
{
    ctl_exec_cfg c = { .launch = (char *)script(0, "sleep 20"), .terminate = "true",
                       .timeout_us = 200000 };
    char err[512] = "", addr[64];
    ctl_driver *d = ctl_driver_exec_new(&c, dir, err, sizeof err);
    cr_assert_not_null(d);
    pid_t pid;
    uint64_t t0 = mono_ms();
    cr_assert_eq(d->launch(d, NULL, "i-1", "v1", addr, sizeof addr, &pid, err, sizeof err), -1);
    cr_assert_lt(mono_ms() - t0, 3000);
    cr_assert(strstr(err, "exec.launch") && strstr(err, "timed out"), "%s", err);
    d->free(d);
}

Test(ctl_exec, terminate_gets_id_and_address)
{
    char body[300];
    snprintf(body, sizeof body, "echo \"$1 $2\" >> %s/terminated.txt", dir);
    ctl_driver *d = driver(script(0, "echo 127.0.0.1:1"), script(1, body), NULL);
    char err[256] = "";
    cr_assert_eq(d->terminate(d, "i-3", "10.0.0.5:8000", 0, false, err, sizeof err), 1, "%s", err);
    cr_assert_str_eq(slurp("terminated.txt"), "i-3 10.0.0.5:8000\n");
    d->free(d);
    d = driver(script(0, "echo 127.0.0.1:1"), script(2, "echo 'not found' >&2; exit 1"), NULL);
    cr_assert_eq(d->terminate(d, "i-3", "10.0.0.5:8000", 0, false, err, sizeof err), -1);
    cr_assert(strstr(err, "exec.terminate") && strstr(err, "not found"), "%s", err);
    d->free(d);
}

Test(ctl_exec, list_parses_lines)
{
    ctl_driver *d = driver(script(0, "echo 127.0.0.1:1"), script(1, "exit 0"),
                           script(2, "echo 'i-1 127.0.0.1:9001'; echo; echo '  i-4   10.0.0.2:80 '"));
    ctl_found f[4];
    char err[256] = "";
    int n = d->list(d, f, 4, err, sizeof err);
    cr_assert_eq(n, 2, "%s", err);
    cr_assert_str_eq(f[0].id, "i-1");
    cr_assert_str_eq(f[0].address, "127.0.0.1:9001");
    cr_assert_str_eq(f[1].id, "i-4");
    cr_assert_str_eq(f[1].address, "10.0.0.2:80");
    d->free(d);
}

Test(ctl_exec, list_bad_line_named)
{
    ctl_driver *d = driver(script(0, "echo 127.0.0.1:1"), script(1, "exit 0"),
                           script(2, "echo 'i-1 127.0.0.1:9001'; echo 'i-2'"));
    ctl_found f[4];
    char err[256] = "";
    cr_assert_eq(d->list(d, f, 4, err, sizeof err), -1);
    cr_assert(strstr(err, "line 2") && strstr(err, "'i-2'"), "%s", err);
    d->free(d);
}

Test(ctl_exec, driver_needs_scripts)
{
    ctl_exec_cfg c = { .launch = "/bin/true" };
    char err[256] = "";
    cr_assert_null(ctl_driver_exec_new(&c, dir, err, sizeof err));
    cr_assert(strstr(err, "exec.terminate"), "%s", err);
}
