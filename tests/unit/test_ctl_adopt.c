/* test_ctl_adopt.c -- the instance state file and the adoption decision:
 * a round trip through render and parse, refusals that name the field and
 * keep nothing, the atomic write (no temporary left, a missing file reads
 * as empty), the verdict for each way a saved pid can have changed, the
 * identity read from /proc against a real child, and `up`'s pid files. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd/up_int.h"
#include "control/ctl_instances.h"
#include "control/ctl_instfile.h"
#include "core/proc.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static ctl_saved_inst sample(const char *id, pid_t pid)
{
    ctl_saved_inst s;
    memset(&s, 0, sizeof s);
    snprintf(s.id, sizeof s.id, "%s", id);
    s.pid = pid;
    s.start = 987654;
    s.pgid = s.sid = pid;
    snprintf(s.address, sizeof s.address, "127.0.0.1:%d", 40000 + (int)pid % 1000);
    snprintf(s.version, sizeof s.version, "v2");
    snprintf(s.ready_path, sizeof s.ready_path, "/ready");
    s.managed = s.registered = true;
    return s;
}

Test(instfile, round_trip)
{
    ctl_saved_inst in[3] = { sample("i-1", 101), sample("i-7", 202), sample("w-3", 303) };
    in[2].noport = true;
    memset(in[2].address, 0, sizeof in[2].address);
    in[2].stop_how = CTL_TERM_MAIN;
    in[2].registered = false;
    ctl_instfile f = { .owner_pid = 55, .owner_start = 66, .insts = in, .n = 3 };
    snprintf(f.pool, sizeof f.pool, "app");
    snprintf(f.gateway, sizeof f.gateway, "http://127.0.0.1:8082");
    buf b;
    buf_init(&b);
    ctl_instfile_render(&f, 1700000000, &b);
    ctl_instfile g;
    char err[256] = "";
    cr_assert_eq(ctl_instfile_parse(buf_head(&b), b.len, &g, err, sizeof err), 0, "%s", err);
    cr_assert_eq(g.n, 3);
    cr_assert_eq(g.owner_pid, 55);
    cr_assert_eq(g.owner_start, 66);
    cr_assert_str_eq(g.pool, "app");
    cr_assert_str_eq(g.gateway, "http://127.0.0.1:8082");
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(memcmp(&g.insts[i], &in[i], sizeof in[i]), 0, "entry %zu differs", i);
    ctl_instfile_free(&g);
    buf_free(&b);
}

static void refused(const char *text, const char *want)
{
    ctl_instfile f;
    char err[256] = "";
    cr_assert_eq(ctl_instfile_parse(text, strlen(text), &f, err, sizeof err), -1, "accepted %s", text);
    cr_assert(strstr(err, want), "for %s: got '%s', want '%s'", text, err, want);
    cr_assert(f.insts == NULL && f.n == 0, "a refusal keeps nothing");
}

Test(instfile, refusals_name_the_field)
{
    const char *ok = "\"address\":\"127.0.0.1:1\"";
    char t[512];
    refused("", "line 1");
    refused("[]", "file: expected a JSON object");
    refused("{\"instances\":[]}", "version: expected an integer 1..1");
    refused("{\"version\":2,\"instances\":[]}", "version");
    refused("{\"version\":1}", "instances: expected an array");
    refused("{\"version\":1,\"instances\":[7]}", "instances[0]: expected an object");
    refused("{\"version\":1,\"instances\":[{\"pid\":5,\"start\":1}]}", "instances[0].id");
    snprintf(t, sizeof t, "{\"version\":1,\"instances\":[{\"id\":\"a\",\"pid\":0,\"start\":1,%s}]}", ok);
    refused(t, "instances[0].pid: expected an integer 1..4194304");
    snprintf(t, sizeof t, "{\"version\":1,\"instances\":[{\"id\":\"a\",\"pid\":-3,\"start\":1,%s}]}", ok);
    refused(t, "instances[0].pid");
    snprintf(t, sizeof t, "{\"version\":1,\"instances\":[{\"id\":\"a\",\"pid\":3,\"start\":0,%s}]}", ok);
    refused(t, "instances[0].start");
    snprintf(t, sizeof t, "{\"version\":1,\"instances\":[{\"id\":\"a\",\"pid\":3,\"start\":1,%s,"
             "\"stop_how\":1}]}", ok);
    refused(t, "instances[0].stop_how");
    snprintf(t, sizeof t, "{\"version\":1,\"instances\":[{\"id\":\"a\",\"pid\":3,\"start\":1,%s,"
             "\"managed\":\"yes\"}]}", ok);
    refused(t, "instances[0].managed: expected true or false");
    snprintf(t, sizeof t, "{\"version\":1,\"instances\":[{\"id\":\"a\",\"pid\":3,\"start\":1,%s,"
             "\"ready_path\":\"health\"}]}", ok);
    refused(t, "instances[0].ready_path");
    refused("{\"version\":1,\"instances\":[{\"id\":\"a\",\"pid\":3,\"start\":1}]}",
            "instances[0].address: expected host:port");
    refused("{\"version\":1,\"instances\":[{\"id\":\"a\",\"pid\":3,\"start\":1,\"noport\":true,"
            "\"address\":\"x:1\"}]}", "instances[0].address");
    snprintf(t, sizeof t, "{\"version\":1,\"instances\":[{\"id\":\"a\",\"pid\":3,\"start\":1,%s},"
             "{\"id\":\"a\",\"pid\":4,\"start\":1,%s}]}", ok, ok);
    refused(t, "instances[1]: id a or pid 4 already in instances[0]");
    snprintf(t, sizeof t, "{\"version\":1,\"instances\":[{\"id\":\"%040d\",\"pid\":3,\"start\":1,%s}]}",
             0, ok);
    refused(t, "instances[0].id: expected a string of at most 31 bytes");
    refused("{\"version\":1,\"version\":1,\"instances\":[]}", "line 1");
}

Test(instfile, write_is_atomic_and_missing_reads_empty)
{
    char dir[] = "/tmp/hscale-test-instfile-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128], tmp[140], err[256] = "";
    snprintf(path, sizeof path, "%s/sub/instances.state", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ctl_instfile f;
    cr_assert_eq(ctl_instfile_load(path, &f, err, sizeof err), 0, "%s", err);
    cr_assert_eq(f.n, 0, "a missing file is an empty one");
    ctl_saved_inst in[1] = { sample("i-1", 42) };
    ctl_instfile w = { .insts = in, .n = 1 };
    cr_assert_eq(ctl_instfile_write(path, &w, err, sizeof err), 0, "%s", err);
    cr_assert_eq(access(tmp, F_OK), -1, "no temporary file left");
    cr_assert_eq(ctl_instfile_load(path, &f, err, sizeof err), 0, "%s", err);
    cr_assert_eq(f.n, 1);
    cr_assert_str_eq(f.insts[0].id, "i-1");
    ctl_instfile_free(&f);
    FILE *fp = fopen(path, "w");
    fputs("{\"version\":1,\"instances\":[{\"id\":5}]}", fp);
    fclose(fp);
    cr_assert_eq(ctl_instfile_load(path, &f, err, sizeof err), -1);
    cr_assert(strstr(err, path) && strstr(err, "instances[0].id"), "%s", err);
    char rm[200];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    cr_assert_eq(system(rm), 0);
}

Test(adopt, decision)
{
    ctl_saved_inst s = sample("i-1", 100);
    proc_ident same = { s.start, s.pgid, s.sid };
    cr_assert_eq(ctl_adopt_decide(&s, &same), CTL_ADOPT_YES);
    cr_assert_eq(ctl_adopt_decide(&s, NULL), CTL_ADOPT_GONE);
    proc_ident reused = { s.start + 1, s.pgid, s.sid };
    cr_assert_eq(ctl_adopt_decide(&s, &reused), CTL_ADOPT_REUSED);
    proc_ident older = { s.start - 1, 1, 1 };
    cr_assert_eq(ctl_adopt_decide(&s, &older), CTL_ADOPT_REUSED, "start time decides first");
    proc_ident moved = { s.start, s.pgid + 1, s.sid };
    cr_assert_eq(ctl_adopt_decide(&s, &moved), CTL_ADOPT_FOREIGN);
    proc_ident other_sid = { s.start, s.pgid, s.sid + 1 };
    cr_assert_eq(ctl_adopt_decide(&s, &other_sid), CTL_ADOPT_FOREIGN);
    ctl_saved_inst bad = s;
    bad.start = 0;
    cr_assert_eq(ctl_adopt_decide(&bad, &same), CTL_ADOPT_BAD);
    bad = s;
    bad.pid = 0;
    cr_assert_eq(ctl_adopt_decide(&bad, &same), CTL_ADOPT_BAD);
    /* An entry written without group and session (older files) is judged
     * on the start time alone. */
    ctl_saved_inst bare = s;
    bare.pgid = bare.sid = 0;
    cr_assert_eq(ctl_adopt_decide(&bare, &moved), CTL_ADOPT_YES);
    for (int v = CTL_ADOPT_YES; v <= CTL_ADOPT_BAD; v++)
        cr_assert_str_neq(ctl_adopt_verdict_str((ctl_adopt_verdict)v), "unknown");
}

Test(adopt, real_detached_child)
{
    char *argv[] = { "sleep", "30", NULL };
    char err[256] = "";
    proc_spec ps = { .argv = argv, .detach = true };
    pid_t pid = proc_spawn(&ps, err, sizeof err);
    cr_assert_gt(pid, 0, "%s", err);
    proc_ident id;
    cr_assert_eq(proc_ident_read(pid, &id), 0);
    cr_assert_eq(id.pgid, pid, "its own group");
    cr_assert_eq(id.sid, pid, "its own session");
    cr_assert_neq(getsid(0), pid);
    ctl_saved_inst s = sample("i-1", pid);
    s.start = id.start;
    cr_assert_eq(ctl_adopt_check(&s), CTL_ADOPT_YES);
    s.start++;
    cr_assert_eq(ctl_adopt_check(&s), CTL_ADOPT_REUSED);
    cr_assert(proc_same(pid, id.start));
    cr_assert(!proc_same(pid, id.start + 1));
    /* A stop that names the wrong start time signals nothing. */
    cr_assert_eq(proc_stop_adopted(pid, id.start + 1, 100), 0);
    cr_assert(proc_same(pid, id.start), "still running");
    /* Our child: a zombie until reaped, which counts as gone. */
    kill(pid, SIGKILL);
    for (int i = 0; i < 200 && proc_same(pid, id.start); i++)
        usleep(10000);
    cr_assert(!proc_same(pid, id.start));
    s.start = id.start;
    cr_assert_eq(ctl_adopt_check(&s), CTL_ADOPT_GONE);
    waitpid(pid, NULL, 0);
    /* The default keeps the child in our session (and tied to us). */
    proc_spec tied = { .argv = argv };
    pid = proc_spawn(&tied, err, sizeof err);
    cr_assert_gt(pid, 0, "%s", err);
    cr_assert_eq(proc_ident_read(pid, &id), 0);
    cr_assert_eq(id.pgid, pid);
    cr_assert_eq(id.sid, getsid(0));
    cr_assert_eq(proc_stop(pid, 1000) >= 0, 1);
}

Test(pidfile, parse_and_write)
{
    pid_t pid;
    uint64_t start;
    cr_assert_eq(up_pidfile_parse("12 345\n", 7, &pid, &start), 0);
    cr_assert_eq(pid, 12);
    cr_assert_eq(start, 345);
    cr_assert_eq(up_pidfile_parse("12 345", 6, &pid, &start), 0);
    const char *bad[] = { "", "12", "12 ", " 12 3", "12  3", "0 3", "12 0", "12 3\n\n", "12 3x",
                          "-1 3", "99999999 3", "12 99999999999999999999", "1\n2" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(up_pidfile_parse(bad[i], strlen(bad[i]), &pid, &start), -1, "'%s'", bad[i]);

    char dir[] = "/tmp/hscale-test-pidfile-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128], err[256] = "";
    snprintf(path, sizeof path, "%s/up.pid", dir);
    cr_assert(!up_pidfile_alive(path, &pid, &start), "missing");
    cr_assert_eq(up_pidfile_write(path, getpid(), err, sizeof err), 0, "%s", err);
    cr_assert(up_pidfile_alive(path, &pid, &start));
    cr_assert_eq(pid, getpid());
    FILE *f = fopen(path, "w");
    fprintf(f, "%d %llu\n", (int)getpid(), (unsigned long long)start + 1);
    fclose(f);
    cr_assert(!up_pidfile_alive(path, &pid, &start), "another start time is another process");
    unlink(path);
    rmdir(dir);
}
