/* ctl_procstat_int.h -- CPU and memory of an instance measured by the
 * operating system, without the instance's cooperation (ctl_procstat.c).
 * Internal to src/control; the autoscaler's collect step is the caller.
 *
 * What "the instance" is: the process tree under the pid the process
 * driver spawned (a uvicorn or gunicorn master and its workers, a node
 * cluster, a celery master and its pool). Members are
 *   - every descendant of the root by the ppid chain, and
 *   - every process in the root's process group when the root leads one
 *     (core/proc puts each child in its own group: pgrp == root pid).
 * The ppid chain follows what a fork tree does even when a child makes its
 * own group (npm starting node detached, a worker that calls setsid); the
 * group adds what the chain loses when a double-forked helper is
 * reparented to init or a subreaper but still belongs to the instance (it
 * is also what proc_stop signals). The session is not used: core/proc does
 * not start a new one, so the session is hscale's own and holds everything
 * hscale started.
 *
 * CPU = sum over live members (zombies included: they keep their times
 * until reaped) of utime+stime+cutime+cstime. When a worker exits and its
 * parent reaps it, the kernel adds the worker's whole time to the parent's
 * cutime/cstime, so the sum carries on without a step. Time of a member
 * reaped by something outside the tree (an orphan reaped by init) leaves
 * the sum: the collector treats a smaller sum as "no CPU this interval",
 * never as a restart.
 *
 * Memory = sum of PSS (/proc/PID/smaps_rollup) where readable, so pages a
 * pre-forked master shares with its workers count once; RSS
 * (/proc/PID/statm) for a member whose PSS cannot be read.
 *
 * cgroup v2: when the root's cgroup (from /proc/PID/cgroup, under the
 * cgroup2 mount found in /proc/self/mountinfo) is not the hierarchy's root
 * and holds exactly the tree -- every pid in its cgroup.procs and those of
 * its descendants is a member, and every member but a zombie is in it --
 * its cpu.stat usage_usec and memory.current minus memory.stat's
 * inactive_file (the "working set" Kubernetes reports) are taken too.
 * They count what exited members used as well, whoever reaped them, so
 * the collector prefers them whenever both ends of an interval have them.
 *
 * Layers: pure parsers of one file's text (ctl_ps_parse_*, fuzzed by
 * tests/fuzz/fuzz_procstat.c), a process table read once per check
 * (ctl_ptable_read), the tree over a table (ctl_ps_tree, pure), and the
 * sample of one instance (ctl_procstat_take) that reads only that tree's
 * files. The proc root is a parameter so tests can hand in recorded /proc
 * text laid out in a directory. */
#ifndef HSCALE_CONTROL_CTL_PROCSTAT_INT_H
#define HSCALE_CONTROL_CTL_PROCSTAT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- parsers: text in, values out, no I/O -------------------------------- */

/* One process as /proc/PID/stat tells it. */
typedef struct ctl_ps_proc {
    pid_t    pid, ppid, pgrp;
    char     state;          /* 'R', 'S', 'Z', ... */
    uint64_t ticks;          /* utime + stime + cutime + cstime, clock ticks */
    uint64_t start;          /* starttime, ticks after boot: tells a reused pid */
} ctl_ps_proc;

/* /proc/PID/stat: comm may hold spaces and parentheses, so fields are
 * counted after the last ')'. 0, or -1 when the text is not a stat line. */
int    ctl_ps_parse_stat(const char *text, size_t len, ctl_ps_proc *out);
/* smaps_rollup: the "Pss:" line in bytes. 0, or -1 when there is none. */
int    ctl_ps_parse_pss(const char *text, size_t len, uint64_t *bytes);
/* statm: resident pages (2nd field) * page. 0 or -1. */
int    ctl_ps_parse_statm(const char *text, size_t len, uint64_t page, uint64_t *bytes);
/* /proc/PID/cgroup: the cgroup v2 path (the "0::" line) into path.
 * 0, or -1 when there is no v2 line or it does not fit. */
int    ctl_ps_parse_cgroup(const char *text, size_t len, char *path, size_t pathlen);
/* "key value" lines (cpu.stat, memory.stat): the value of key. 0 or -1. */
int    ctl_ps_parse_keyed(const char *text, size_t len, const char *key, uint64_t *out);
/* One unsigned number and an optional newline (memory.current). 0 or -1
 * ("max" and anything else is -1). */
int    ctl_ps_parse_u64(const char *text, size_t len, uint64_t *out);
/* mountinfo: the first cgroup2 mount's mount point and its root inside the
 * hierarchy, octal escapes (\040) decoded. 0, or -1 when there is none. */
int    ctl_ps_parse_mountinfo(const char *text, size_t len, char *mnt, size_t mntlen,
                              char *root, size_t rootlen);
/* cgroup.procs: one pid a line into out[0..max). Returns how many lines
 * held a pid (may exceed max: the rest were not stored), -1 on a line that
 * is not a pid. */
long   ctl_ps_parse_pids(const char *text, size_t len, pid_t *out, size_t max);

/* ---- the process table ---------------------------------------------------- */

typedef struct ctl_ptable {
    ctl_ps_proc *p;          /* sorted by pid */
    size_t       n, cap;
} ctl_ptable;

/* Adds one process (keeps the order; a pid already there is replaced).
 * 0, or -1 out of memory. */
int    ctl_ptable_add(ctl_ptable *t, const ctl_ps_proc *p);
const ctl_ps_proc *ctl_ptable_find(const ctl_ptable *t, pid_t pid);
/* Replaces t's content with every process under proc_root ("/proc").
 * A process that vanishes while it is read is left out. 0, or -1 when
 * proc_root cannot be listed. */
int    ctl_ptable_read(ctl_ptable *t, const char *proc_root);
void   ctl_ptable_free(ctl_ptable *t);

/* Members of root's tree (see the top of this file), root first, as
 * indexes into t->p, into idx[0..max). Returns the member count (which may
 * exceed max), 0 when root is not in t. */
size_t ctl_ps_tree(const ctl_ptable *t, pid_t root, size_t *idx, size_t max);

/* ---- one instance's sample ------------------------------------------------ */

/* Where the system is: proc root, tick and page sizes, the cgroup2 mount. */
typedef struct ctl_ps_env {
    char     proc_root[256];
    double   clk_tck;
    uint64_t page;
    char     cg_mount[256];  /* "" when there is no cgroup2 mount */
    char     cg_root[256];
} ctl_ps_env;

/* Fills e for proc_root ("/proc", or a test's directory), reading
 * <proc_root>/self/mountinfo. */
void   ctl_ps_env_init(ctl_ps_env *e, const char *proc_root);

#define CTL_PS_MAX_TREE 512       /* members looked at; a larger tree is cut */

typedef struct ctl_procstat {
    uint64_t at_us;          /* monotonic (ev_monotonic_us) */
    pid_t    root;
    uint64_t root_start;     /* the root's starttime: same pid, same process? */
    bool     ok;             /* the root exists; values below may still be NAN */
    int      nprocs;         /* tree members */
    double   cpu_s;          /* tree CPU seconds (ticks / clk_tck) */
    double   mem_bytes;      /* tree PSS (RSS where PSS is unreadable); NAN */
    int      mem_rss;        /* members counted by RSS */
    double   cg_cpu_s;       /* the cgroup's usage_usec / 1e6; NAN: no such cgroup */
    double   cg_mem_bytes;   /* memory.current - inactive_file; NAN */
    char     cgroup[192];    /* the cgroup path used, "" when none */
} ctl_procstat;

/* Samples root's tree from the table t (read this check) and the tree's
 * own files. out->ok is false when root is not in t. */
void   ctl_procstat_take(ctl_procstat *out, const ctl_ps_env *e, const ctl_ptable *t,
                         pid_t root, uint64_t at_us);

#endif
