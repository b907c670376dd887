/* ctl_down.c -- stopping what a control plane left behind, for `hscale
 * down`: the instances of a state file whose control plane crashed (or
 * the control plane itself, when it still runs: it then drains and stops
 * them as on any SIGTERM).
 *
 * The order is the control plane's own: out of the gateway first (a drain
 * that waits for in-flight requests, bounded), then SIGTERM, then SIGKILL
 * after the grace time. Every signal goes only to a pid that still has
 * the saved start time, so a reused pid is never hit. */
#include "control/ctl_instances.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "control/ctl_instfile.h"
#include "core/log.h"

#define DOWN_DRAIN_US 10000000u   /* longest wait for a member's in-flight requests */

static uint64_t down_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits until pid no longer has start time start; false on timeout. */
static bool down_wait_gone(pid_t pid, uint64_t start, int wait_ms)
{
    uint64_t until = down_mono_ms() + (uint64_t)wait_ms;
    while (proc_same(pid, start)) {
        if (down_mono_ms() >= until)
            return false;
        poll(NULL, 0, 20);
    }
    return true;
}

/* Out of the gateway's pool, waiting (bounded) for its in-flight requests. */
static void down_drain(const ctl_gw *g, const char *pool, const ctl_saved_inst *s)
{
    char err[512];
    int rc = ctl_gw_drain(g, pool, s->address, DOWN_DRAIN_US, err, sizeof err);
    if (rc < 0) {
        log_warn("%s at %s: drain: %s (stopping it all the same)", s->id, s->address, err);
        return;
    }
    uint64_t until = down_mono_ms() + DOWN_DRAIN_US / 1000u + 500u;
    while (rc == 1 && down_mono_ms() < until) {
        ctl_gw_member mem[256];
        size_t n = 0;
        if (ctl_gw_members(g, pool, mem, 256, &n, err, sizeof err) < 0)
            return;
        bool busy = false;
        for (size_t i = 0; i < n && i < 256; i++)
            if (strcmp(mem[i].address, s->address) == 0)
                busy = mem[i].in_flight > 0;
        if (!busy)
            return;
        poll(NULL, 0, 50);
    }
}

static void down_stop(const ctl_saved_inst *s, int grace_ms)
{
    /* A worker with kill_mode mixed: the main process stops its own
     * children; the SIGKILL after the grace is for the whole group. */
    if (s->stop_how == CTL_TERM_MAIN) {
        kill(s->pid, SIGTERM);
        if (down_wait_gone(s->pid, s->start, grace_ms))
            return;
    }
    if (proc_stop_adopted(s->pid, s->start, grace_ms) < 0)
        log_warn("%s (pid %d) still runs after SIGKILL", s->id, (int)s->pid);
}

int ctl_down_statefile(const char *path, int wait_ms, int grace_ms, int *stopped, char *err,
                       size_t errlen)
{
    *stopped = 0;
    ctl_instfile f;
    if (ctl_instfile_load(path, &f, err, errlen) < 0)
        return -1;
    int rc = 0;
    if (f.owner_pid > 0 && proc_same(f.owner_pid, f.owner_start)) {
        /* It drains and stops its instances itself: they count as stopped. */
        for (size_t i = 0; i < f.n; i++)
            *stopped += ctl_adopt_check(&f.insts[i]) == CTL_ADOPT_YES;
        log_info("control plane pid %d of %s still runs: SIGTERM to it", (int)f.owner_pid, path);
        kill(f.owner_pid, SIGTERM);
        if (!down_wait_gone(f.owner_pid, f.owner_start, wait_ms)) {
            snprintf(err, errlen, "control plane pid %d did not stop within %d ms",
                     (int)f.owner_pid, wait_ms);
            rc = -1;
        }
        ctl_instfile_free(&f);
        return rc;
    }
    ctl_gw g;
    char e[512];
    bool has_gw = f.gateway[0] && f.pool[0]
                  && ctl_gw_init(&g, f.gateway, getenv("HSCALE_CONTROL_GATEWAY_TOKEN"), e,
                                 sizeof e) == 0;
    for (size_t i = 0; i < f.n; i++) {
        const ctl_saved_inst *s = &f.insts[i];
        ctl_adopt_verdict v = ctl_adopt_check(s);
        if (v != CTL_ADOPT_YES) {
            log_info("%s (pid %d): %s, nothing to stop", s->id, (int)s->pid,
                     ctl_adopt_verdict_str(v));
            continue;
        }
        if (has_gw && s->registered && s->address[0])
            down_drain(&g, f.pool, s);
        down_stop(s, grace_ms);
        log_info("%s (pid %d) stopped", s->id, (int)s->pid);
        (*stopped)++;
    }
    /* Nothing it names runs now (or it is another program's): empty it,
     * so no later control plane looks for them. */
    ctl_instfile empty;
    memset(&empty, 0, sizeof empty);
    snprintf(empty.pool, sizeof empty.pool, "%s", f.pool);
    snprintf(empty.gateway, sizeof empty.gateway, "%s", f.gateway);
    if (ctl_instfile_write(path, &empty, err, errlen) < 0)
        rc = -1;
    ctl_instfile_free(&f);
    return rc;
}
