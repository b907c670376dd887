/* down.c -- `hscale down`: stops the stack of a data directory.
 *
 * A running `hscale up` (up.pid, same start time) gets SIGTERM and is
 * waited for: it drains its instances through the gateway and stops
 * everything itself. With no up running (it crashed, or the directory is
 * a `hscale control` state_dir), down does it: every instance state file
 * under DIR (instances.state, up to three levels down: one per service)
 * is handed to ctl_down_statefile (SIGTERM to its control plane if that
 * still runs; otherwise drain and stop of what is left), then the gateway
 * of gateway.pid is stopped. A pid is only ever signalled while it has
 * the start time written next to it. */
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "cmd/up_int.h"
#include "control/control.h"
#include "core/log.h"
#include "core/proc.h"

static const char usage[] =
    "usage: hscale down [--data DIR] [--timeout SECONDS]\n\n"
    "Stops the stack of DIR: a running `hscale up` gets SIGTERM (it drains\n"
    "its instances through the gateway, then stops the gateway) and is\n"
    "waited for. If none runs (it crashed and left its gateway and instances\n"
    "serving, or DIR is a `hscale control` state_dir), down drains and stops\n"
    "the instances named by DIR's instance state files and the gateway itself.\n\n"
    "  --data DIR        data directory (default ./hscale-data)\n"
    "  --timeout S       longest wait for up or a control plane to stop (default 120)\n"
    "  -h, --help        this text\n";

#define DOWN_GRACE_MS 10000   /* SIGTERM to SIGKILL for instances and the gateway */

static uint64_t down_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Every instance state file under dir, depth first, up to depth levels. */
static int down_statefiles(const char *dir, int depth, int timeout_ms, int *stopped, int *failed)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    const struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path)
            continue;
        struct stat st;
        if (lstat(path, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth > 0) {
            found += down_statefiles(path, depth - 1, timeout_ms, stopped, failed);
        } else if (S_ISREG(st.st_mode) && strcmp(de->d_name, "instances.state") == 0) {
            char err[512];
            int n = 0;
            found++;
            if (ctl_down_statefile(path, timeout_ms, DOWN_GRACE_MS, &n, err, sizeof err) < 0) {
                fprintf(stderr, "hscale down: %s\n", err);
                (*failed)++;
            }
            *stopped += n;
        }
    }
    closedir(d);
    return found;
}

int cmd_down(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"timeout", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    const char *data = "hscale-data";
    int timeout_s = 120;
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'd': data = optarg; break;
        case 't':
            timeout_s = (int)strtol(optarg, &end, 10);
            if (!end || *end || timeout_s <= 0 || timeout_s > 86400)
                return cmd_usage_error(usage, "down", "--timeout: expected seconds 1..86400, got '%s'",
                                       optarg);
            break;
        default:
            return cmd_usage_error(usage, "down", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cmd_usage_error(usage, "down", "unexpected argument '%s'", argv[optind]);
    log_init_from_env();
    log_set_component("down");
    struct stat st;
    if (stat(data, &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "hscale down: %s is not a directory\n", data);
        return 1;
    }

    char path[PATH_MAX];
    pid_t pid;
    uint64_t start;
    snprintf(path, sizeof path, "%s/%s", data, UP_PIDFILE_UP);
    if (up_pidfile_alive(path, &pid, &start)) {
        printf("hscale down: stopping hscale up (pid %d)\n", (int)pid);
        fflush(stdout);
        kill(pid, SIGTERM);
        uint64_t until = down_now_ms() + (uint64_t)timeout_s * 1000u;
        while (proc_same(pid, start) && down_now_ms() < until)
            poll(NULL, 0, 50);
        if (proc_same(pid, start)) {
            fprintf(stderr, "hscale down: hscale up (pid %d) still runs after %d s\n", (int)pid,
                    timeout_s);
            return 1;
        }
        printf("hscale down: stopped\n");
        return 0;
    }

    int stopped = 0, failed = 0;
    down_statefiles(data, 3, timeout_s * 1000, &stopped, &failed);
    snprintf(path, sizeof path, "%s/%s", data, UP_PIDFILE_GATEWAY);
    bool gw = up_pidfile_alive(path, &pid, &start);
    if (gw && proc_stop_adopted(pid, start, DOWN_GRACE_MS) < 0) {
        fprintf(stderr, "hscale down: gateway pid %d still runs after SIGKILL\n", (int)pid);
        failed++;
    }
    if (gw || access(path, F_OK) == 0)
        unlink(path);
    snprintf(path, sizeof path, "%s/%s", data, UP_PIDFILE_UP);
    unlink(path);   /* stale: its up is gone */
    printf("hscale down: %d instance(s) stopped%s%s\n", stopped, gw ? ", gateway stopped" : "",
           stopped || gw ? "" : " (nothing was running)");
    return failed ? 1 : 0;
}
