/* ctl_instfile.h -- the instance state file: what the next control plane
 * needs to adopt the process-driver instances a crashed one left running.
 * Internal to src/control.
 *
 * <state_dir>/instances.state is JSON, rewritten atomically (temporary
 * file, fsync, rename) on every change of the manager's records:
 *   {"version":1,"written":<unix s>,"owner_pid":N,"owner_start":T,
 *    "pool":"app","gateway":"http://127.0.0.1:8082",
 *    "instances":[{"id":"i-1","pid":4242,"start":123456,"pgid":4242,
 *                  "sid":4242,"address":"127.0.0.1:40001","version":"v1",
 *                  "ready_path":"/health/ready","noport":false,
 *                  "stop_how":0,"managed":true,"registered":true}]}
 * start is the pid's start time (/proc/PID/stat field 22): with the pid it
 * names one process forever, so a pid the kernel gave to another program
 * is never adopted (ctl_adopt_decide). owner_* name the control plane
 * that wrote it (for `hscale down`). address is "" for a worker. */
#ifndef HSCALE_CONTROL_CTL_INSTFILE_H
#define HSCALE_CONTROL_CTL_INSTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/proc.h"

#define CTL_INSTFILE_NAME "instances.state"
#define CTL_INSTFILE_MAX  1024   /* entries; more is refused as a corrupt file */

typedef struct ctl_saved_inst {
    char     id[32];
    pid_t    pid;
    uint64_t start;
    pid_t    pgid, sid;
    char     address[64];
    char     version[64];
    char     ready_path[256];
    bool     noport;
    int      stop_how;       /* CTL_TERM_GROUP or CTL_TERM_MAIN */
    bool     managed;
    bool     registered;
} ctl_saved_inst;

typedef struct ctl_instfile {
    pid_t           owner_pid;
    uint64_t        owner_start;
    char            pool[64];
    char            gateway[256];
    ctl_saved_inst *insts;
    size_t          n;
} ctl_instfile;

/* Parses a state file's text. A refusal returns -1 with err naming the
 * entry and field ("instances[2].pid: expected an integer 1..4194304")
 * and keeps nothing. */
int  ctl_instfile_parse(const char *text, size_t len, ctl_instfile *out, char *err, size_t errlen);
void ctl_instfile_render(const ctl_instfile *f, double now_unix, buf *out);
/* Reads path: 0 (a missing file is an empty one), -1 with err. */
int  ctl_instfile_load(const char *path, ctl_instfile *out, char *err, size_t errlen);
/* Renders and writes path atomically: 0, or -1 with err. */
int  ctl_instfile_write(const char *path, const ctl_instfile *f, char *err, size_t errlen);
void ctl_instfile_free(ctl_instfile *f);

/* The adoption decision for one saved entry, from what its pid is now. */
typedef enum {
    CTL_ADOPT_YES,       /* same pid, start time, group and session: ours */
    CTL_ADOPT_GONE,      /* no such process (exited while no one watched) */
    CTL_ADOPT_REUSED,    /* the pid runs another program (other start time) */
    CTL_ADOPT_FOREIGN,   /* same start, yet another group or session: not ours to stop */
    CTL_ADOPT_BAD,       /* the entry names no process (pid or start 0) */
} ctl_adopt_verdict;

const char       *ctl_adopt_verdict_str(ctl_adopt_verdict v);
/* now: the pid's identity read from /proc, NULL when it does not run. */
ctl_adopt_verdict ctl_adopt_decide(const ctl_saved_inst *s, const proc_ident *now);
/* The same, reading /proc. */
ctl_adopt_verdict ctl_adopt_check(const ctl_saved_inst *s);

#endif
