/* fuzz_instfile.c -- libFuzzer target for the instance state file
 * (ctl_instfile_parse) and `hscale up`'s pid files (up_pidfile_parse),
 * both read back from disk by the next control plane or `hscale down`,
 * which then decide which pids to signal.
 *
 * Beyond "no crash": a refusal keeps nothing and names where it failed
 * ("instances[2].pid", "version", "file" or the JSON line); an accepted
 * file holds only entries with a pid in 1..4194304, a non-zero start time,
 * a known stop mode, an address exactly when it is not a worker, a
 * readiness path starting with "/", distinct ids and pids; rendering it
 * and parsing that again gives the same entries. An accepted pid file has
 * a pid and a start time above zero. */
#include <stdlib.h>
#include <string.h>

#include "control/ctl_instances.h"
#include "control/ctl_instfile.h"
/* src/cmd is not in the fuzz library: the pid file's few functions come in
 * with their source. */
#include "cmd/up_pidfile.c"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pid_t pid;
    uint64_t start;
    if (up_pidfile_parse((const char *)data, size, &pid, &start) == 0)
        CHECK(pid > 0 && pid <= 4194304 && start > 0);

    ctl_instfile f;
    char err[400] = "";
    if (ctl_instfile_parse((const char *)data, size, &f, err, sizeof err) < 0) {
        CHECK(f.insts == NULL && f.n == 0);
        CHECK(strstr(err, "instances") || strstr(err, "version") || strstr(err, "file")
              || strstr(err, "line") || strstr(err, "owner_") || strstr(err, "pool")
              || strstr(err, "gateway"));
        return 0;
    }
    for (size_t i = 0; i < f.n; i++) {
        const ctl_saved_inst *s = &f.insts[i];
        CHECK(s->pid > 0 && s->pid <= 4194304 && s->start > 0);
        CHECK(s->stop_how == CTL_TERM_GROUP || s->stop_how == CTL_TERM_MAIN);
        CHECK(s->noport == (s->address[0] == '\0'));
        CHECK(s->id[0]);
        CHECK(!s->ready_path[0] || s->ready_path[0] == '/');
        for (size_t k = 0; k < i; k++)
            CHECK(strcmp(f.insts[k].id, s->id) != 0 && f.insts[k].pid != s->pid);
    }
    buf b;
    buf_init(&b);
    ctl_instfile_render(&f, 1e9, &b);
    ctl_instfile g;
    CHECK(ctl_instfile_parse(buf_head(&b), b.len, &g, err, sizeof err) == 0);
    CHECK(g.n == f.n && g.owner_pid == f.owner_pid && g.owner_start == f.owner_start);
    for (size_t i = 0; i < f.n; i++) {
        CHECK(strcmp(g.insts[i].id, f.insts[i].id) == 0);
        CHECK(strcmp(g.insts[i].address, f.insts[i].address) == 0);
        CHECK(g.insts[i].pid == f.insts[i].pid && g.insts[i].start == f.insts[i].start);
        CHECK(g.insts[i].registered == f.insts[i].registered);
    }
    ctl_instfile_free(&g);
    buf_free(&b);
    ctl_instfile_free(&f);
    return 0;
}
