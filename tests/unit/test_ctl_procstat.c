/* test_ctl_procstat.c -- OS-measured CPU and memory (ctl_procstat.c and
 * ctl_collect_os): the parsers on recorded and broken text; the tree and
 * its sums over /proc text recorded from a real pre-forked Python service
 * (tests/unit/data/procstat/, made by record.py there: a root leading its
 * process group, two workers, an orphan of the group reparented to init,
 * snapshots running / one worker a zombie / after the root reaped it),
 * laid out as a proc root in a temporary directory; a member that vanished
 * between the table and its files; a cgroup v2 group used only when it
 * holds exactly the tree; and the collector's precedence and NAN rules. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/ctl_autoscale.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

#define ROOT   17707   /* the recorded service's root (pgrp leader) */
#define W1     17776   /* worker that exits (a zombie in 2-zombie, gone in 3-reaped) */
#define W2     17777
#define ORPHAN 17779   /* group member reparented to init */
#define SHELL  17699   /* the root's parent: not part of the instance */

static char dir[256];

static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "w");
    cr_assert(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/hscale-test-ps-%d", (int)getpid());
    sh("rm -rf %s && mkdir -p %s/cg", dir, dir);
}

static void teardown(void)
{
    sh("rm -rf %s", dir);
}

/* A proc root holding snapshot `snap`; its mountinfo shows a cgroup2
 * mount at <dir>/cg when cg is set. Returns the path. */
static const char *proc_of(const char *snap, bool cg)
{
    static char p[300];
    snprintf(p, sizeof p, "%s/proc-%s", dir, snap);
    sh("rm -rf %s && cp -r tests/unit/data/procstat/%s %s && mkdir -p %s/self", p, snap, p, p);
    char mi[1024];
    if (cg)
        snprintf(mi, sizeof mi,
                 "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
                 "40 30 0:37 / %s/cg rw,relatime shared:9 - cgroup2 cgroup2 rw\n", dir);
    else
        snprintf(mi, sizeof mi, "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
                                "45 22 8:1 / / rw - ext4 /dev/vda rw\n");
    char rel[400];
    snprintf(rel, sizeof rel, "proc-%s/self/mountinfo", snap);
    put(rel, mi);
    return p;
}

static void env_of(ctl_ps_env *e, const char *proc)
{
    ctl_ps_env_init(e, proc);
    e->clk_tck = 100;      /* the recording machine's USER_HZ */
    e->page = 4096;
}

static void take(ctl_procstat *s, const char *proc, pid_t root, uint64_t at)
{
    ctl_ps_env e;
    env_of(&e, proc);
    ctl_ptable t = { 0 };
    cr_assert_eq(ctl_ptable_read(&t, proc), 0);
    ctl_procstat_take(s, &e, &t, root, at);
    ctl_ptable_free(&t);
}

/* ---- parsers -------------------------------------------------------------- */

Test(procstat, parse_stat_recorded_and_odd_names)
{
    ctl_ps_proc p;
    const char *z = "17776 (python3) Z 17707 17707 5108 0 -1 4227148 2292 0 0 0 16 18 0 0 20 0 1 0 "
                    "70606 0 0 18446744073709551615 0 0 0 0 0 0 0 16781312 2 1 0 0 17 0 0 0 0 0 0 "
                    "0 0 0 0 0 0 0 0\n";
    cr_assert_eq(ctl_ps_parse_stat(z, strlen(z), &p), 0);
    cr_assert_eq(p.pid, 17776);
    cr_assert_eq(p.ppid, 17707);
    cr_assert_eq(p.pgrp, 17707);
    cr_assert_eq(p.state, 'Z');
    cr_assert_eq(p.ticks, 34u);
    cr_assert_eq(p.start, 70606u);
    /* a comm with spaces and parentheses: fields count after the last ')' */
    const char *odd = "42 (a) b (c)) S 7 42 42 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 99 0 0\n";
    cr_assert_eq(ctl_ps_parse_stat(odd, strlen(odd), &p), 0);
    cr_assert_eq(p.ppid, 7);
    cr_assert_eq(p.ticks, 10u);
    cr_assert_eq(p.start, 99u);
    /* cut short, no comm, negative times, not a number: refused */
    const char *bad[] = { "42 (a) S 7 42 42 0 -1 0 0 0 0 0 1 2 3", "42 a S 7 42",
                          "42 (a) S 7 42 42 0 -1 0 0 0 0 0 1 -2 3 4 20 0 1 0 99",
                          "x (a) S 7", "", "42 (a)" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(ctl_ps_parse_stat(bad[i], strlen(bad[i]), &p), -1, "%s", bad[i]);
}

Test(procstat, parse_memory_files)
{
    uint64_t v;
    const char *roll = "55ff96043000-7ffefe5cc000 ---p 00000000 00:00 0   [rollup]\n"
                       "Rss:               13724 kB\nPss:                5731 kB\n"
                       "Pss_Anon:           2713 kB\n";
    cr_assert_eq(ctl_ps_parse_pss(roll, strlen(roll), &v), 0);
    cr_assert_eq(v, 5731u * 1024);
    const char *only_anon = "Rss: 1 kB\nPss_Anon: 2 kB\n";
    cr_assert_eq(ctl_ps_parse_pss(only_anon, strlen(only_anon), &v), -1);
    cr_assert_eq(ctl_ps_parse_pss("Pss: 12\n", 8, &v), -1);    /* no unit */
    cr_assert_eq(ctl_ps_parse_statm("4174 2541 773 1 0 2052 0\n", 25, 4096, &v), 0);
    cr_assert_eq(v, 2541u * 4096);
    cr_assert_eq(ctl_ps_parse_statm("4174\n", 5, 4096, &v), -1);
    cr_assert_eq(ctl_ps_parse_u64("123456\n", 7, &v), 0);
    cr_assert_eq(v, 123456u);
    cr_assert_eq(ctl_ps_parse_u64("max\n", 4, &v), -1);
    cr_assert_eq(ctl_ps_parse_u64("12 3\n", 5, &v), -1);
    const char *cs = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n";
    cr_assert_eq(ctl_ps_parse_keyed(cs, strlen(cs), "usage_usec", &v), 0);
    cr_assert_eq(v, 2500000u);
    cr_assert_eq(ctl_ps_parse_keyed(cs, strlen(cs), "system_usec", &v), 0);
    cr_assert_eq(v, 500000u);
    cr_assert_eq(ctl_ps_parse_keyed(cs, strlen(cs), "usage", &v), -1);
}

Test(procstat, parse_cgroup_mountinfo_pids)
{
    char path[64], mnt[64], root[64];
    const char *hybrid = "4:memory:/process_api/967a\n1:cpu:/\n0::/svc/i-1\n";
    cr_assert_eq(ctl_ps_parse_cgroup(hybrid, strlen(hybrid), path, sizeof path), 0);
    cr_assert_str_eq(path, "/svc/i-1");
    const char *v1 = "4:memory:/x\n1:cpu:/\n";
    cr_assert_eq(ctl_ps_parse_cgroup(v1, strlen(v1), path, sizeof path), -1);
    cr_assert_eq(ctl_ps_parse_cgroup("0::/ab\n", 7, path, 3), -1);   /* does not fit */

    const char *mi = "22 1 0:21 / /proc rw - proc proc rw\n"
                     "35 24 0:30 / /sys/fs/cgroup/unified rw shared:9 - cgroup cgroup rw,memory\n"
                     "40 30 0:37 /ns /sys/fs/my\\040cg rw,relatime shared:9 master:2 - cgroup2 cgroup2 rw\n";
    cr_assert_eq(ctl_ps_parse_mountinfo(mi, strlen(mi), mnt, sizeof mnt, root, sizeof root), 0);
    cr_assert_str_eq(mnt, "/sys/fs/my cg");
    cr_assert_str_eq(root, "/ns");
    cr_assert_eq(ctl_ps_parse_mountinfo(mi, 80, mnt, sizeof mnt, root, sizeof root), -1);

    pid_t p[3];
    cr_assert_eq(ctl_ps_parse_pids("17707\n17777\n", 12, p, 3), 2);
    cr_assert_eq(p[0], 17707);
    cr_assert_eq(p[1], 17777);
    cr_assert_eq(ctl_ps_parse_pids("1\n2\n3\n4\n", 8, p, 3), 4);     /* counted past max */
    cr_assert_eq(ctl_ps_parse_pids("1\nx\n", 4, p, 3), -1);
    cr_assert_eq(ctl_ps_parse_pids("", 0, p, 3), 0);
}

/* ---- the tree ------------------------------------------------------------ */

static bool has(const ctl_ptable *t, const size_t *idx, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (t->p[idx[i]].pid == pid)
            return true;
    return false;
}

Test(procstat, tree_follows_ppid_and_the_group, .init = setup, .fini = teardown)
{
    const char *proc = proc_of("1-running", false);
    ctl_ptable t = { 0 };
    cr_assert_eq(ctl_ptable_read(&t, proc), 0);
    cr_assert_eq(t.n, 6);      /* self/ is not a pid */
    size_t idx[16];
    size_t n = ctl_ps_tree(&t, ROOT, idx, 16);
    cr_assert_eq(n, 4);
    cr_assert_eq(t.p[idx[0]].pid, ROOT, "root first");
    cr_assert(has(&t, idx, n, W1) && has(&t, idx, n, W2));
    cr_assert(has(&t, idx, n, ORPHAN), "reparented to init, still in the group");
    cr_assert(!has(&t, idx, n, SHELL) && !has(&t, idx, n, 1));
    /* a worker's own tree: ppid chain only (it leads no group) */
    cr_assert_eq(ctl_ps_tree(&t, W2, idx, 16), 1);
    cr_assert_eq(ctl_ps_tree(&t, 4242, idx, 16), 0);
    /* more members than room: counted, not stored past max */
    cr_assert_eq(ctl_ps_tree(&t, ROOT, idx, 2), 4);

    /* without the group (a root that is not a leader), the orphan is lost */
    ctl_ps_proc r = *ctl_ptable_find(&t, ROOT);
    r.pgrp = SHELL;
    cr_assert_eq(ctl_ptable_add(&t, &r), 0);
    cr_assert_eq(t.n, 6);
    cr_assert_eq(ctl_ps_tree(&t, ROOT, idx, 16), 3);
    /* a ppid loop in bad input ends */
    ctl_ps_proc a = { .pid = 900, .ppid = 901, .pgrp = 900, .state = 'S' };
    ctl_ps_proc b = { .pid = 901, .ppid = 900, .pgrp = 900, .state = 'S' };
    ctl_ptable_add(&t, &a);
    ctl_ptable_add(&t, &b);
    cr_assert_eq(ctl_ps_tree(&t, ROOT, idx, 16), 3);
    ctl_ptable_free(&t);
}

Test(procstat, sums_over_the_tree_pss_and_rss, .init = setup, .fini = teardown)
{
    ctl_procstat s;
    take(&s, proc_of("1-running", false), ROOT, 1000);
    cr_assert(s.ok);
    cr_assert_eq(s.nprocs, 4);
    cr_assert_eq(s.root_start, 70528u);
    /* ticks: root 14+10+14+17, workers 16+17 and 23+26, orphan 3+2 */
    cr_assert_float_eq(s.cpu_s, 1.42, 1e-9);
    /* PSS: 5731 + 11195 + 11193 + 3017 kB */
    cr_assert_float_eq(s.mem_bytes, 31136.0 * 1024, 1e-3);
    cr_assert_eq(s.mem_rss, 0);
    cr_assert(isnan(s.cg_cpu_s) && isnan(s.cg_mem_bytes), "no cgroup2 mount");

    /* PSS unreadable for the orphan: its RSS (statm, 2541 pages) instead */
    char rel[128];
    snprintf(rel, sizeof rel, "proc-1-running/%d/smaps_rollup", ORPHAN);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    cr_assert_eq(unlink(path), 0);
    ctl_ps_env e;
    env_of(&e, strcat(strcpy(path, dir), "/proc-1-running"));
    ctl_ptable t = { 0 };
    cr_assert_eq(ctl_ptable_read(&t, path), 0);
    ctl_procstat_take(&s, &e, &t, ROOT, 1000);
    cr_assert_eq(s.mem_rss, 1);
    cr_assert_float_eq(s.mem_bytes, (5731.0 + 11195 + 11193) * 1024 + 2541.0 * 4096, 1e-3);

    /* W2 vanished after the table was read: its files are gone, its
     * ticks (read with the table) still count, its memory cannot */
    sh("rm -rf %s/%d", path, W2);
    ctl_procstat_take(&s, &e, &t, ROOT, 1000);
    cr_assert(s.ok);
    cr_assert_float_eq(s.cpu_s, 1.42, 1e-9);
    cr_assert_float_eq(s.mem_bytes, (5731.0 + 11195) * 1024 + 2541.0 * 4096, 1e-3);
    /* and gone from the next table entirely */
    cr_assert_eq(ctl_ptable_read(&t, path), 0);
    ctl_procstat_take(&s, &e, &t, ROOT, 1000);
    cr_assert_eq(s.nprocs, 3);
    cr_assert_float_eq(s.cpu_s, 0.93, 1e-9);
    /* the root vanished: no sample */
    ctl_procstat_take(&s, &e, &t, 31337, 1000);
    cr_assert(!s.ok && isnan(s.cpu_s) && isnan(s.mem_bytes));
    ctl_ptable_free(&t);
}

Test(procstat, a_reaped_worker_moves_into_the_parent, .init = setup, .fini = teardown)
{
    ctl_procstat a, b, c;
    take(&a, proc_of("1-running", false), ROOT, 0);
    take(&b, proc_of("2-zombie", false), ROOT, 1000000);
    take(&c, proc_of("3-reaped", false), ROOT, 2000000);
    cr_assert_eq(b.nprocs, 4, "a zombie is still a member");
    cr_assert_eq(c.nprocs, 3);
    /* the zombie's 34 ticks are in the root's cutime+cstime after the
     * reap: the sum does not move */
    cr_assert_float_eq(b.cpu_s, 1.49, 1e-9);
    cr_assert_float_eq(c.cpu_s, 1.49, 1e-9);
    /* a zombie holds no memory */
    cr_assert_float_eq(b.mem_bytes, (6493.0 + 11977 + 3785) * 1024, 1e-3);

    ctl_collect_opts o = { 1, 1u << 30 };
    ctl_inst_metrics m;
    memset(&m, 0, sizeof m);
    ctl_collect_instance(&m, NULL, NULL, &o);     /* no /metrics at all */
    cr_assert(m.missing && isnan(m.v[CTL_M_CPU]));
    ctl_collect_os(&m, &a, &c, &o);
    cr_assert(!m.missing);
    cr_assert_eq(m.cpu_src, CTL_SRC_OS);
    cr_assert_eq(m.mem_src, CTL_SRC_OS);
    /* 7 ticks over 2 s on 1 core */
    cr_assert_float_eq(m.v[CTL_M_CPU], 3.5, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_MEMORY], 22263.0 * 1024 / (1u << 30) * 100, 1e-9);
    ctl_collect_os(&m, &b, &c, &o);
    cr_assert_float_eq(m.v[CTL_M_CPU], 0, 1e-12);
}

/* ---- cgroup v2 ------------------------------------------------------------- */

static void cgroup_dir(const char *proc, const char *procs)
{
    sh("mkdir -p %s/cg/svc/i-1", dir);
    put("cg/svc/i-1/cgroup.procs", procs);
    put("cg/svc/i-1/cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n");
    put("cg/svc/i-1/memory.current", "50000000\n");
    put("cg/svc/i-1/memory.stat", "anon 30000000\nfile 20000000\ninactive_file 8000000\n");
    char p[512];
    snprintf(p, sizeof p, "%s/%d/cgroup", proc, ROOT);
    FILE *f = fopen(p, "w");
    cr_assert(f);
    fputs("1:cpu:/\n0::/svc/i-1\n", f);
    fclose(f);
}

Test(procstat, cgroup_only_when_it_holds_exactly_the_tree, .init = setup, .fini = teardown)
{
    const char *proc = proc_of("2-zombie", true);
    char pr[300];
    snprintf(pr, sizeof pr, "%s", proc);
    /* every live member (the zombie has left cgroup.procs) */
    cgroup_dir(pr, "17707\n17777\n17779\n");
    ctl_procstat s;
    take(&s, pr, ROOT, 1);
    cr_assert_float_eq(s.cg_cpu_s, 2.5, 1e-9);
    cr_assert_float_eq(s.cg_mem_bytes, 42000000.0, 1e-3, "working set: current - inactive_file");
    cr_assert_str_eq(s.cgroup, "/svc/i-1");

    /* one member in a child group: still the tree (descendants count) */
    put("cg/svc/i-1/cgroup.procs", "17707\n17777\n");
    sh("mkdir -p %s/cg/svc/i-1/worker", dir);
    put("cg/svc/i-1/worker/cgroup.procs", "17779\n");
    take(&s, pr, ROOT, 1);
    cr_assert_float_eq(s.cg_cpu_s, 2.5, 1e-9);

    /* someone else in the group (hscale itself, a sibling): not used */
    put("cg/svc/i-1/worker/cgroup.procs", "17779\n17699\n");
    take(&s, pr, ROOT, 1);
    cr_assert(isnan(s.cg_cpu_s) && isnan(s.cg_mem_bytes) && !s.cgroup[0]);
    cr_assert_float_eq(s.cpu_s, 1.49, 1e-9, "the /proc sums stay");

    /* a live member outside the group: not used */
    put("cg/svc/i-1/worker/cgroup.procs", "");
    take(&s, pr, ROOT, 1);
    cr_assert(isnan(s.cg_cpu_s));

    /* no memory controller: CPU from the group, memory from /proc */
    put("cg/svc/i-1/worker/cgroup.procs", "17779\n");
    sh("rm %s/cg/svc/i-1/memory.current", dir);
    take(&s, pr, ROOT, 1);
    cr_assert_float_eq(s.cg_cpu_s, 2.5, 1e-9);
    cr_assert(isnan(s.cg_mem_bytes));

    /* the hierarchy's root holds everything: never used */
    char p[512];
    snprintf(p, sizeof p, "%s/%d/cgroup", pr, ROOT);
    FILE *f = fopen(p, "w");
    fputs("0::/\n", f);
    fclose(f);
    take(&s, pr, ROOT, 1);
    cr_assert(isnan(s.cg_cpu_s));
}

/* ---- the collector's precedence -------------------------------------------- */

static ctl_procstat sample(uint64_t at, double cpu, double mem, double cg_cpu, double cg_mem)
{
    ctl_procstat s;
    memset(&s, 0, sizeof s);
    s.at_us = at;
    s.root = ROOT;
    s.root_start = 70528;
    s.ok = true;
    s.nprocs = 3;
    s.cpu_s = cpu;
    s.mem_bytes = mem;
    s.cg_cpu_s = cg_cpu;
    s.cg_mem_bytes = cg_mem;
    if (!isnan(cg_cpu))
        strcpy(s.cgroup, "/svc/i-1");
    return s;
}

static void scrape(ctl_scrape *s, const char *text, uint64_t at)
{
    char err[256];
    cr_assert_eq(ctl_scrape_parse(s, text, strlen(text), at, err, sizeof err), 0, "%s", err);
}

Test(procstat, collector_precedence_and_nan)
{
    ctl_collect_opts o = { 2, 1000000000 };
    /* the instance's own /metrics says 50 % of 2 cores and 100 MB */
    ctl_scrape a, b;
    scrape(&a, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 10\n"
               "process_resident_memory_bytes 1e8\n", 0);
    scrape(&b, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12\n"
               "process_resident_memory_bytes 1e8\n", 2000000);
    ctl_inst_metrics m;
    memset(&m, 0, sizeof m);
    ctl_collect_instance(&m, &a, &b, &o);
    cr_assert_float_eq(m.v[CTL_M_CPU], 50, 1e-9);
    cr_assert_eq(m.cpu_src, CTL_SRC_METRICS);
    cr_assert_eq(m.mem_src, CTL_SRC_METRICS);
    cr_assert_str_eq(ctl_source_str(m.cpu_src), "metrics");

    /* the tree used 6 s over 2 s: 150 % of 2 cores; 300 MB */
    ctl_procstat p0 = sample(5000000, 100, 3e8, NAN, NAN), p1 = sample(7000000, 106, 3e8, NAN, NAN);
    ctl_collect_os(&m, &p0, &p1, &o);
    cr_assert_float_eq(m.v[CTL_M_CPU], 150, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_MEMORY], 30, 1e-9);
    cr_assert_eq(m.cpu_src, CTL_SRC_OS);
    cr_assert_str_eq(ctl_source_str(m.mem_src), "os");

    /* cgroup counters at both ends win, for both values */
    p0 = sample(5000000, 100, 3e8, 50, 4e8);
    p1 = sample(7000000, 106, 3e8, 52, 4e8);
    ctl_collect_os(&m, &p0, &p1, &o);
    cr_assert_float_eq(m.v[CTL_M_CPU], 50, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_MEMORY], 40, 1e-9);
    cr_assert_eq(m.cpu_src, CTL_SRC_CGROUP);
    cr_assert_str_eq(ctl_source_str(m.mem_src), "cgroup");
    /* ... at one end only: the tree's sums for CPU */
    p0.cg_cpu_s = NAN;
    ctl_collect_os(&m, &p0, &p1, &o);
    cr_assert_eq(m.cpu_src, CTL_SRC_OS);
    cr_assert_float_eq(m.v[CTL_M_CPU], 150, 1e-9);

    /* the tree's sum went down (an orphan reaped by init): 0, not a restart */
    p0 = sample(5000000, 100, 3e8, NAN, NAN);
    p1 = sample(7000000, 90, 3e8, NAN, NAN);
    ctl_collect_os(&m, &p0, &p1, &o);
    cr_assert_float_eq(m.v[CTL_M_CPU], 0, 1e-12);

    /* a restarted root (new start time) is a new process: no interval,
     * the /metrics CPU stays; memory is a gauge and is taken */
    memset(&m, 0, sizeof m);
    ctl_collect_instance(&m, &a, &b, &o);
    p1 = sample(7000000, 1, 2e8, NAN, NAN);
    p1.root_start++;
    ctl_collect_os(&m, &p0, &p1, &o);
    cr_assert_eq(m.cpu_src, CTL_SRC_METRICS);
    cr_assert_float_eq(m.v[CTL_M_CPU], 50, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_MEMORY], 20, 1e-9);
    /* root gone: nothing changes */
    p1.ok = false;
    ctl_collect_os(&m, &p0, &p1, &o);
    cr_assert_eq(m.mem_src, CTL_SRC_OS);
    ctl_collect_os(&m, &p0, NULL, &o);
    cr_assert_float_eq(m.v[CTL_M_MEMORY], 20, 1e-9);
}

Test(procstat, no_process_families_nan_not_zero_and_the_gateway_still_counts)
{
    /* a FastAPI app with its own counter but no process_* families */
    ctl_scrape a, b;
    scrape(&a, "# TYPE http_requests counter\nhttp_requests 5\n", 0);
    scrape(&b, "# TYPE http_requests counter\nhttp_requests 9\n", 1000000);
    ctl_collect_opts o = { 1, 1u << 30 };
    ctl_inst_metrics m;
    memset(&m, 0, sizeof m);
    snprintf(m.address, sizeof m.address, "127.0.0.1:9001");
    ctl_collect_instance(&m, &a, &b, &o);
    cr_assert(!m.missing);
    cr_assert(isnan(m.v[CTL_M_CPU]) && isnan(m.v[CTL_M_MEMORY]));
    cr_assert_eq(m.cpu_src, CTL_SRC_NONE);
    cr_assert_null(ctl_source_str(m.mem_src));

    /* and a failed scrape: missing until the gateway speaks for it */
    ctl_scrape_fail(&b, 1000000);
    ctl_collect_instance(&m, &a, &b, &o);
    cr_assert(m.missing && isnan(m.v[CTL_M_CPU]) && isnan(m.v[CTL_M_MEMORY]));
    static ctl_gwm_scrape g0, g1;
    const char *t0 = "# TYPE hscale_gateway_backend_requests_total counter\n"
                     "hscale_gateway_backend_requests_total{pool=\"p\",backend=\"127.0.0.1:9001\",code=\"200\"} 100\n"
                     "# TYPE hscale_gateway_backend_in_flight gauge\n"
                     "hscale_gateway_backend_in_flight{pool=\"p\",backend=\"127.0.0.1:9001\"} 3\n";
    const char *t1 = "# TYPE hscale_gateway_backend_requests_total counter\n"
                     "hscale_gateway_backend_requests_total{pool=\"p\",backend=\"127.0.0.1:9001\",code=\"200\"} 150\n"
                     "# TYPE hscale_gateway_backend_in_flight gauge\n"
                     "hscale_gateway_backend_in_flight{pool=\"p\",backend=\"127.0.0.1:9001\"} 2\n";
    char err[256];
    cr_assert_eq(ctl_gwm_parse(&g0, t0, strlen(t0), 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ctl_gwm_parse(&g1, t1, strlen(t1), 2000000, err, sizeof err), 0, "%s", err);
    ctl_collect_gateway(&m, "p", &g0, &g1);
    cr_assert(!m.missing);
    cr_assert_float_eq(m.v[CTL_M_RPS], 25, 1e-9);
    cr_assert_float_eq(m.v[CTL_M_IN_FLIGHT], 2, 1e-9);
    cr_assert(isnan(m.v[CTL_M_CPU]) && isnan(m.v[CTL_M_MEMORY]), "never 0");
}
