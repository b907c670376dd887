/* proc.h -- child processes: spawn with argv, environment and working
 * directory; signal; reap without blocking; read this process's resource
 * use (for the process_* metrics and the autoscaler's CPU %).
 *
 * Children are put in their own process group so a signal to the group
 * reaches what they spawn too. By default they receive SIGTERM if the
 * parent dies (PR_SET_PDEATHSIG) so a crash of hscale leaves nothing
 * behind; a detached child (spec.detach) gets a session of its own and no
 * such signal instead, so it outlives us: what must keep serving across a
 * crash of its supervisor (instances, up's gateway), which the next
 * supervisor adopts by pid and start time (proc_ident_read). */
#ifndef HSCALE_CORE_PROC_H
#define HSCALE_CORE_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct proc_spec {
    char *const *argv;        /* argv[0] is looked up in PATH */
    char *const *env_extra;   /* "K=V" added to (or replacing in) environ; may be NULL */
    const char  *cwd;         /* may be NULL */
    const char  *stdout_path; /* append stdout+stderr here; NULL inherits */
    bool         detach;      /* own session, no parent-death signal: outlives us */
} proc_spec;

/* Starts the child. Returns its pid, or -1 with a message in err
 * (exec failures are reported, not silently a dead child, and reaped).
 * The child gets stdin from /dev/null, default signal dispositions and an
 * empty signal mask. Call from a long-lived thread: PR_SET_PDEATHSIG fires
 * when the spawning thread exits. */
pid_t proc_spawn(const proc_spec *spec, char *err, size_t errlen);
/* Sends sig to the child's process group. */
int   proc_signal(pid_t pid, int sig);
/* Non-blocking reap: 1 and *status when pid exited, 0 when still running,
 * -1 when pid is not our child. */
int   proc_reap(pid_t pid, int *status);
/* SIGTERM to the group, wait up to grace_ms for the child, then SIGKILL
 * and reap; whatever is left in its group is SIGKILLed too. Returns the
 * wait status, or -1 when pid is not our (unreaped) child. */
int   proc_stop(pid_t pid, int grace_ms);
/* Splits a command line on spaces, honouring single and double quotes.
 * Returns a NULL-terminated argv (free with proc_argv_free), NULL on error. */
char **proc_argv_split(const char *cmdline, char *err, size_t errlen);
void   proc_argv_free(char **argv);

typedef struct proc_usage {
    double   cpu_seconds;     /* user + system */
    uint64_t rss_bytes;
    uint64_t open_fds;
    uint64_t max_fds;
    double   start_time;      /* Unix seconds */
} proc_usage;

/* Reads /proc for pid (0: self). */
int proc_usage_read(pid_t pid, proc_usage *out);

/* Who a pid is now: its start time (/proc/PID/stat field 22, clock ticks
 * since boot: with the pid, a name no other process ever has), process
 * group and session. A zombie counts as gone. */
typedef struct proc_ident {
    uint64_t start;
    pid_t    pgid, sid;
} proc_ident;

/* 0 with *out when pid runs, -1 when there is no such (live) process. */
int  proc_ident_read(pid_t pid, proc_ident *out);
/* Is pid still the process that had start time start? */
bool proc_same(pid_t pid, uint64_t start);
/* proc_stop for a process that is not our child (adopted after a restart):
 * SIGTERM to its group, up to grace_ms for it to go, then SIGKILL to the
 * group. Every signal is sent only while pid still has start time start,
 * so a reused pid is never hit. 0 when it is gone, -1 when it would not go. */
int  proc_stop_adopted(pid_t pid, uint64_t start, int grace_ms);

#endif
