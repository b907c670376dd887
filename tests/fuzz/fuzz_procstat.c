/* fuzz_procstat.c -- libFuzzer target for the /proc and cgroup v2 text
 * parsers of ctl_procstat.c (stat, smaps_rollup, statm, cgroup, cpu.stat
 * and memory.stat, memory.current, mountinfo, cgroup.procs) and the tree
 * built over what they accept.
 *
 * Beyond "no crash, no read past the input": an accepted stat line has a
 * positive pid and non-negative ppid/pgrp; strings written out are
 * NUL-terminated within their buffer (a cgroup path starts with '/',
 * mountinfo paths too); pids counted past max are not stored; every
 * stat line of the input (one per line) goes into a table whose trees
 * hold their root first, only pids of the table, and no pid twice. */
#include <stdlib.h>
#include <string.h>

#include "control/ctl_procstat_int.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static void tree_checks(const char *text, size_t size)
{
    ctl_ptable t = { 0 };
    const char *p = text, *end = text + size;
    while (p < end && t.n < 64) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        ctl_ps_proc pr;
        if (ctl_ps_parse_stat(p, (size_t)(e - p), &pr) == 0)
            CHECK(ctl_ptable_add(&t, &pr) == 0);
        p = nl ? nl + 1 : end;
    }
    for (size_t i = 1; i < t.n; i++)
        CHECK(t.p[i - 1].pid < t.p[i].pid);
    for (size_t r = 0; r < t.n; r++) {
        size_t idx[64];
        size_t n = ctl_ps_tree(&t, t.p[r].pid, idx, 64);
        CHECK(n >= 1 && n <= t.n);
        CHECK(idx[0] == r);
        for (size_t i = 0; i < n; i++) {
            CHECK(idx[i] < t.n);
            for (size_t j = 0; j < i; j++)
                CHECK(idx[j] != idx[i]);
        }
    }
    CHECK(ctl_ps_tree(&t, 0, NULL, 0) == 0);
    ctl_ptable_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact copy: the parsers must not read past it */
    char *text = malloc(size ? size : 1);
    CHECK(text);
    memcpy(text, data, size);

    ctl_ps_proc pr;
    if (ctl_ps_parse_stat(text, size, &pr) == 0)
        CHECK(pr.pid > 0 && pr.ppid >= 0 && pr.pgrp >= 0);
    uint64_t v;
    (void)ctl_ps_parse_pss(text, size, &v);
    (void)ctl_ps_parse_statm(text, size, 4096, &v);
    (void)ctl_ps_parse_keyed(text, size, "usage_usec", &v);
    (void)ctl_ps_parse_keyed(text, size, "inactive_file", &v);
    (void)ctl_ps_parse_u64(text, size, &v);

    char path[64];
    if (ctl_ps_parse_cgroup(text, size, path, sizeof path) == 0)
        CHECK(path[0] == '/' && strlen(path) < sizeof path);
    char mnt[48], root[48];
    if (ctl_ps_parse_mountinfo(text, size, mnt, sizeof mnt, root, sizeof root) == 0)
        CHECK(mnt[0] == '/' && root[0] == '/' && strlen(mnt) < sizeof mnt
              && strlen(root) < sizeof root);

    pid_t pids[5];
    pids[4] = -7;                       /* a guard: never written */
    long n = ctl_ps_parse_pids(text, size, pids, 4);
    CHECK(n >= -1 && pids[4] == -7);
    for (long i = 0; i < n && i < 4; i++)
        CHECK(pids[i] > 0);

    tree_checks(text, size);
    free(text);
    return 0;
}
