/* test_ctl_instances.c -- the instance manager with the process driver
 * against real children (a tiny python server answering /health/ready,
 * 503 while a per-instance flag file exists) and, where registration and
 * drains matter, the fake gateway of ctl_fakegw.h.
 *
 * Covers: scaling up and down (newest leaves first, stopped children are
 * really gone), crash restart with backoff, replacement of an instance that
 * stays unhealthy, the start timeout, launch failures surfaced, scale-in
 * that waits for the gateway's in-flight count to reach zero, victim choice
 * by fewest in flight, the deploy calls (start unmanaged, replace),
 * re-registration with a gateway that forgot its members, the in-process
 * API with the autoscaler hooks, and the exec driver's slow launches running
 * beside the supervisor (and terminated, not orphaned, by a stop);
 * workers with no port (ready by ready_command, never registered, replaced
 * when it fails, restarted after a crash, stopped by a SIGTERM to the main
 * process only with the rest of the group killed once it exits). */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "control/ctl_instances.h"
#include "control/ctl_instfile.h"
#include "core/proc.h"
#include "ctl_fakegw.h"

#include <jansson.h>

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static char dir[256];
static ctl_config cfg;
static ctl_mgr *mgr;
static bool gw_on;

static const char server_py[] =
    "import http.server, os, sys\n"
    "port, flag = int(sys.argv[1]), sys.argv[2]\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        code = 503 if os.path.exists(flag) else 200\n"
    "        self.send_response(code)\n"
    "        self.send_header('Content-Length', '2')\n"
    "        self.end_headers()\n"
    "        self.wfile.write(b'ok')\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "http.server.ThreadingHTTPServer(('127.0.0.1', port), H).serve_forever()\n";

static void set(const char *path, const char *value)
{
    cfg_error e;
    memset(&e, 0, sizeof e);
    cr_assert_eq(cfg_set(&ctl_config_schema, &cfg, path, value, &e), 0, "%s: %s", path, e.msg);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/hscale-test-inst-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char path[400];
    snprintf(path, sizeof path, "%s/srv.py", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(server_py, f);
    fclose(f);
    memset(&cfg, 0, sizeof cfg);
    cfg_error e;
    cr_assert_eq(cfg_defaults(&ctl_config_schema, &cfg, &e), 0, "%s", e.msg);
    set("state_dir", dir);
    set("template.command", "python3 {state_dir}/srv.py {port} {state_dir}/unhealthy-{id}");
    set("check_interval", "100ms");
    set("restart_backoff", "100ms");
    set("restart_backoff_max", "400ms");
    set("stop_grace", "2s");
    set("drain_timeout", "10s");
    set("template.start_timeout", "10s");
    snprintf(path, sizeof path, "%s/prom/targets.json", dir);
    set("sd_file", path);
    mgr = NULL;
    gw_on = false;
}

static void teardown(void)
{
    if (gw_on) {
        /* Let drains at shutdown end at once. */
        pthread_mutex_lock(&fg_mu);
        for (int i = 0; i < fg_n; i++)
            fg_members[i].in_flight = 0;
        pthread_mutex_unlock(&fg_mu);
    }
    ctl_mgr_free(mgr);
    http_fetch_pool_clear();
    if (gw_on)
        fakegw_stop();
    cfg_free(&ctl_config_schema, &cfg);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(ctl_inst, .init = setup, .fini = teardown, .timeout = 60);

static void start_mgr(int n)
{
    char num[16], err[512] = "";
    snprintf(num, sizeof num, "%d", n);
    set("instances", num);
    ctl_driver *d = ctl_driver_process_new(dir, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    mgr = ctl_mgr_new(&cfg, d, err, sizeof err);
    cr_assert_not_null(mgr, "%s", err);
    cr_assert_eq(ctl_mgr_start(mgr, err, sizeof err), 0, "%s", err);
}

static void with_gateway(void)
{
    fakegw_start();
    gw_on = true;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", fg_port);
    set("gateway", url);
    set("gateway_token", fg_token);
    set("pool", "app");
}

static ctl_instance_info list[32];

static size_t snapshot(void)
{
    size_t n = ctl_instances_list(mgr, list, 32);
    return n < 32 ? n : 32;
}

static size_t count(ctl_inst_state st)
{
    size_t n = snapshot(), k = 0;
    for (size_t i = 0; i < n; i++)
        k += list[i].state == st;
    return k;
}

static const ctl_instance_info *find_id(const char *id)
{
    size_t n = snapshot();
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].id, id) == 0)
            return &list[i];
    return NULL;
}

/* Polls cond for up to ms; true when it held. */
#define WAIT_FOR(ms, cond) ({ \
    bool ok_ = false; \
    for (int t_ = 0; t_ < (ms) / 20 && !(ok_ = (cond)); t_++) \
        usleep(20000); \
    ok_ || (cond); })

static bool alive(pid_t pid)
{
    return kill(pid, 0) == 0;
}

Test(ctl_inst, scale_up_then_down_newest_first)
{
    start_mgr(2);
    cr_assert(WAIT_FOR(10000, count(CTL_INST_READY) == 2), "two ready");
    cr_assert_eq(ctl_instances_scale_to(mgr, 3), 0);
    cr_assert(WAIT_FOR(10000, count(CTL_INST_READY) == 3), "three ready");
    size_t n = snapshot();
    pid_t pids[3];
    for (size_t i = 0; i < n; i++) {
        pids[i] = list[i].pid;
        cr_assert(list[i].managed && list[i].healthy && !list[i].registered);
        cr_assert_neq(list[i].ready_at_us, 0);
        cr_assert_geq(list[i].ready_at_us, list[i].started_at_us);
        cr_assert(strncmp(list[i].address, "127.0.0.1:", 10) == 0);
    }
    cr_assert_eq(ctl_instances_scale_to(mgr, 1), 0);
    cr_assert_eq(ctl_instances_desired(mgr), 1);
    cr_assert(WAIT_FOR(5000, snapshot() == 1), "one left");
    cr_assert_str_eq(list[0].id, "i-1", "the oldest stays");
    cr_assert(alive(pids[0]));
    cr_assert(!alive(pids[1]) && !alive(pids[2]), "stopped children are gone");
    cr_assert_eq(ctl_instances_scale_to(mgr, -1), -1);
}

Test(ctl_inst, crash_is_restarted)
{
    start_mgr(1);
    cr_assert(WAIT_FOR(10000, count(CTL_INST_READY) == 1));
    snapshot();
    pid_t first = list[0].pid;
    char addr1[64];
    snprintf(addr1, sizeof addr1, "%s", list[0].address);
    cr_assert_eq(kill(first, SIGKILL), 0);
    cr_assert(WAIT_FOR(10000, (snapshot(), list[0].restarts == 1
                               && list[0].state == CTL_INST_READY)), "restarted and ready");
    cr_assert_neq(list[0].pid, first);
    cr_assert_str_eq(list[0].id, "i-1", "same id");
    cr_assert(strstr(list[0].last_error, "signal 9"), "%s", list[0].last_error);
    cr_assert_eq(ctl_instances_restarts_total(mgr), 1);
}

Test(ctl_inst, unhealthy_is_replaced)
{
    set("unhealthy_checks", "2");
    start_mgr(1);
    cr_assert(WAIT_FOR(10000, count(CTL_INST_READY) == 1));
    snapshot();
    pid_t old = list[0].pid;
    char flag[400];
    snprintf(flag, sizeof flag, "%s/unhealthy-i-1", dir);
    FILE *f = fopen(flag, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert(WAIT_FOR(10000, !find_id("i-1") && find_id("i-2")
                              && find_id("i-2")->state == CTL_INST_READY), "replaced by i-2");
    cr_assert(!alive(old));
    cr_assert_eq(snapshot(), 1);
}

Test(ctl_inst, start_timeout_kills_and_retries)
{
    set("template.command", "sleep 30");
    set("template.start_timeout", "300ms");
    start_mgr(1);
    cr_assert(WAIT_FOR(10000, (snapshot(), list[0].restarts >= 1)), "retried");
    cr_assert(strstr(list[0].last_error, "start timeout"), "%s", list[0].last_error);
}

Test(ctl_inst, launch_failure_is_surfaced)
{
    set("template.command", "/nonexistent/service --port {port}");
    start_mgr(1);
    cr_assert(WAIT_FOR(5000, count(CTL_INST_FAILED) == 1));
    snapshot();
    cr_assert(strstr(list[0].last_error, "launch") && strstr(list[0].last_error, "/nonexistent/service"),
              "%s", list[0].last_error);
}

static int fake_index(const char *addr)
{
    pthread_mutex_lock(&fg_mu);
    int i = find(addr);
    pthread_mutex_unlock(&fg_mu);
    return i;
}

static void set_in_flight(const char *addr, int n)
{
    pthread_mutex_lock(&fg_mu);
    int i = find(addr);
    cr_assert_geq(i, 0, "%s registered", addr);
    fg_members[i].in_flight = n;
    pthread_mutex_unlock(&fg_mu);
}

Test(ctl_inst, scale_in_waits_for_in_flight)
{
    with_gateway();
    start_mgr(1);
    cr_assert(WAIT_FOR(10000, (snapshot() == 1 && list[0].registered)), "registered");
    ctl_instance_info inst = list[0];
    cr_assert_geq(fake_index(inst.address), 0);
    set_in_flight(inst.address, 2);
    cr_assert_eq(ctl_instances_scale_to(mgr, 0), 0);
    cr_assert(WAIT_FOR(3000, count(CTL_INST_DRAINING) == 1));
    cr_assert_str_eq(fg_last_query, "10000ms");
    usleep(500000);
    cr_assert_eq(count(CTL_INST_DRAINING), 1, "still draining while requests are in flight");
    cr_assert(alive(inst.pid));
    set_in_flight(inst.address, 0);
    cr_assert(WAIT_FOR(3000, snapshot() == 0), "stopped once idle");
    cr_assert(!alive(inst.pid));
}

Test(ctl_inst, victim_has_fewest_in_flight)
{
    with_gateway();
    start_mgr(2);
    cr_assert(WAIT_FOR(10000, (snapshot() == 2 && list[0].registered && list[1].registered)));
    const ctl_instance_info *old = find_id("i-1"), *young = find_id("i-2");
    cr_assert(old && young);
    char young_addr[64];
    snprintf(young_addr, sizeof young_addr, "%s", young->address);
    set_in_flight(old->address, 0);
    set_in_flight(young_addr, 5);
    cr_assert_eq(ctl_instances_scale_to(mgr, 1), 0);
    cr_assert(WAIT_FOR(5000, snapshot() == 1));
    cr_assert_str_eq(list[0].id, "i-2", "the busy one stays though it is newer");
    cr_assert_eq(fake_index(young_addr), 0);
}

Test(ctl_inst, deploy_start_then_replace)
{
    with_gateway();
    start_mgr(1);
    cr_assert(WAIT_FOR(10000, (snapshot() == 1 && list[0].registered)));
    char id[32], err[256] = "";
    cr_assert_eq(ctl_instances_start(mgr, NULL, "v2", 0, id, sizeof id, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ctl_instances_wait_ready(mgr, id, 10000000, err, sizeof err), 0, "%s", err);
    const ctl_instance_info *n = find_id(id);
    cr_assert(n && !n->managed && !n->registered);
    cr_assert_str_eq(n->version, "v2");
    usleep(300000);
    cr_assert_eq(snapshot(), 2, "an unmanaged start is not scaled away");
    cr_assert_eq(ctl_instances_replace(mgr, id, "i-1", err, sizeof err), 0, "%s", err);
    cr_assert_eq(ctl_instances_wait_gone(mgr, "i-1", 5000000), 0);
    cr_assert(WAIT_FOR(3000, (snapshot() == 1 && list[0].registered)));
    cr_assert_str_eq(list[0].id, id);
    cr_assert(list[0].managed);
    cr_assert_eq(ctl_instances_replace(mgr, "nope", id, err, sizeof err), -1);
    cr_assert(strstr(err, "nope"), "%s", err);
}

Test(ctl_inst, wait_ready_reports_failure)
{
    start_mgr(0);
    ctl_template_cfg t = { .command = "/nonexistent/v3", .ready_path = "/health/ready",
                           .start_timeout_us = 1000000 };
    char id[32], err[256] = "";
    cr_assert_eq(ctl_instances_start(mgr, &t, "v3", 0, id, sizeof id, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ctl_instances_wait_ready(mgr, id, 5000000, err, sizeof err), -1);
    cr_assert(strstr(err, "failed") && strstr(err, "/nonexistent/v3"), "%s", err);
    cr_assert_eq(ctl_instances_retire(mgr, id, err, sizeof err), 0);
    cr_assert_eq(ctl_instances_wait_gone(mgr, id, 3000000), 0);
}

Test(ctl_inst, stop_leaves_no_child)
{
    start_mgr(3);
    cr_assert(WAIT_FOR(10000, count(CTL_INST_READY) == 3));
    pid_t pids[3];
    for (int i = 0; i < 3; i++)
        pids[i] = list[i].pid;
    ctl_mgr_free(mgr);
    mgr = NULL;
    for (int i = 0; i < 3; i++)
        cr_assert(!alive(pids[i]), "pid %d gone", (int)pids[i]);
}

/* ---- the control process in-process: API and the autoscaler seam ---- */

static int decide_calls;
static size_t decide_seen;

static int decide_once(void *arg, const ctl_instance_info *inst, size_t n, int desired,
                       uint64_t now_us)
{
    decide_seen = n;
    cr_assert_gt(now_us, 1600000000000000ull, "wall clock");
    return decide_calls++ == 0 ? 2 : -1;
}

static int refuse_above_two(void *arg, int count, char *err, size_t errlen)
{
    if (count <= 2)
        return 0;
    snprintf(err, errlen, "expected at most max_instances (2), got %d", count);
    return -1;
}

static void status_extra(void *arg, buf *out)
{
    buf_append_str(out, ",\"autoscaling\":{\"enabled\":true}");
}

static json_t *get_json(int p, const char *method, const char *path, const char *body, int *status)
{
    char url[128], err[256] = "";
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", p, path);
    http_result r;
    http_result_init(&r);
    cr_assert_eq(http_fetch(method, url, body ? "Content-Type: application/json\r\n" : NULL,
                            body, body ? strlen(body) : 0, 5000, &r, err, sizeof err), 0, "%s", err);
    *status = r.status;
    json_t *j = json_loadb(buf_head(&r.body), r.body.len, 0, NULL);
    http_result_free(&r);
    cr_assert_not_null(j, "%s answers JSON", path);
    return j;
}

static int api_ready(int p)
{
    int st;
    json_t *j = get_json(p, "GET", "/api/v1/scaling/status", NULL, &st);
    int n = (int)json_integer_value(json_object_get(j, "ready"));
    json_decref(j);
    return n;
}

Test(ctl_inst, control_api_and_decide_hook)
{
    set("listen", "127.0.0.1:0");
    set("instances", "0");
    ctl_hooks h = { .decide = decide_once, .set_desired = refuse_above_two,
                    .status_json = status_extra };
    decide_calls = 0;
    char err[512] = "";
    ctl_control *cc = ctl_start(&cfg, &h, err, sizeof err);
    cr_assert_not_null(cc, "%s", err);
    int p = ctl_api_port(cc);
    cr_assert_gt(p, 0);
    cr_assert(WAIT_FOR(10000, api_ready(p) == 2), "the hook's count was applied");
    cr_assert_geq(decide_calls, 1);

    int st;
    json_t *j = get_json(p, "GET", "/api/v1/scaling/status", NULL, &st);
    cr_assert_eq(st, 200);
    cr_assert(json_is_true(json_object_get(json_object_get(j, "autoscaling"), "enabled")));
    cr_assert_eq(json_integer_value(json_object_get(j, "desired")), 2);
    cr_assert_eq(json_array_size(json_object_get(j, "instances")), 2);
    cr_assert(json_is_null(json_object_get(j, "gateway")));
    json_decref(j);

    j = get_json(p, "POST", "/api/v1/scaling/desired", "{\"count\":3}", &st);
    cr_assert_eq(st, 400);
    cr_assert_str_eq(json_string_value(json_object_get(j, "field")), "count");
    cr_assert(strstr(json_string_value(json_object_get(j, "error")), "max_instances (2)"));
    json_decref(j);
    j = get_json(p, "POST", "/api/v1/scaling/desired", "{\"count\":1}", &st);
    cr_assert_eq(st, 200);
    cr_assert_eq(json_integer_value(json_object_get(j, "previous")), 2);
    json_decref(j);
    cr_assert(WAIT_FOR(5000, api_ready(p) == 1));
    cr_assert(WAIT_FOR(2000, decide_seen == 1), "the hook sees the instances");

    j = get_json(p, "GET", "/api/v1/instances", NULL, &st);
    cr_assert_eq(st, 200);
    json_t *i0 = json_array_get(json_object_get(j, "instances"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(i0, "state")), "ready");
    cr_assert(json_is_true(json_object_get(i0, "managed")));
    char addr[64];
    snprintf(addr, sizeof addr, "%s", json_string_value(json_object_get(i0, "address")));
    json_decref(j);

    /* Discovery: the app and the control plane, over HTTP and in the file. */
    j = get_json(p, "GET", "/api/v1/sd", NULL, &st);
    cr_assert_eq(st, 200);
    cr_assert_eq(json_array_size(j), 2);
    json_t *g0 = json_array_get(j, 0), *g1 = json_array_get(j, 1);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(g0, "targets"), 0)), addr);
    json_t *l0 = json_object_get(g0, "labels");
    cr_assert_str_eq(json_string_value(json_object_get(l0, "role")), "app");
    cr_assert_str_eq(json_string_value(json_object_get(l0, "instance_id")), "i-1");
    cr_assert_str_eq(json_string_value(json_object_get(l0, "version")), "v1");
    cr_assert_str_eq(json_string_value(json_object_get(l0, "pool")), "default");
    char me[64];
    snprintf(me, sizeof me, "127.0.0.1:%d", p);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(g1, "targets"), 0)), me);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(g1, "labels"), "role")),
                     "control");
    char *http_sd = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    char path[400];
    snprintf(path, sizeof path, "%s/prom/targets.json", dir);
    json_t *file = NULL;
    for (int t = 0; t < 100; t++) {
        json_decref(file);
        file = json_load_file(path, 0, NULL);
        char *fs = file ? json_dumps(file, JSON_COMPACT) : NULL;
        bool same = fs && strcmp(fs, http_sd) == 0;
        free(fs);
        if (same)
            break;
        usleep(20000);
    }
    char *fs = file ? json_dumps(file, JSON_COMPACT) : NULL;
    cr_assert(fs && strcmp(fs, http_sd) == 0, "file %s == http %s", fs ? fs : "(none)", http_sd);
    free(fs);
    json_decref(file);
    free(http_sd);
    http_fetch_pool_clear();
    ctl_stop(cc);
    /* A clean stop leaves no target behind to alert on. */
    file = json_load_file(path, 0, NULL);
    cr_assert_not_null(file);
    cr_assert_eq(json_array_size(file), 0);
    json_decref(file);
}

Test(ctl_inst, forgotten_member_is_registered_again)
{
    with_gateway();
    start_mgr(1);
    cr_assert(WAIT_FOR(10000, (snapshot() == 1 && list[0].registered)), "registered");
    char addr[64];
    snprintf(addr, sizeof addr, "%s", list[0].address);
    /* The gateway restarts and loses its runtime members. */
    pthread_mutex_lock(&fg_mu);
    fg_n = 0;
    pthread_mutex_unlock(&fg_mu);
    cr_assert(WAIT_FOR(5000, fake_index(addr) == 0), "registered again");
    cr_assert(WAIT_FOR(2000, (snapshot(), list[0].registered)));
}

/* An exec driver whose launch of i-1 is slow: i-2 must not wait for it, and
 * a stop during the launch terminates i-1 once it exists. The launch waits
 * for the test to create `release` in the temp dir, at most i1_tenths tenths
 * of a second, so the test decides when it ends instead of racing a fixed
 * sleep on a loaded machine. */
static void exec_setup(int i1_tenths)
{
    char path[400];
    snprintf(path, sizeof path, "%s/drv.sh", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
        "#!/bin/sh\n"
        "d=%s\n"
        "case \"$1\" in\n"
        "launch)\n"
        "  if [ \"$HSCALE_INSTANCE_ID\" = i-1 ]; then\n"
        "    i=0; while [ ! -e $d/release ] && [ $i -lt %d ]; do sleep 0.1; i=$((i+1)); done\n"
        "  fi\n"
        "  port=$(python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])')\n"
        "  setsid python3 $d/srv.py $port $d/unhealthy-$HSCALE_INSTANCE_ID >/dev/null 2>&1 </dev/null &\n"
        "  echo $! > $d/$HSCALE_INSTANCE_ID.pid\n"
        "  echo 127.0.0.1:$port ;;\n"
        "terminate)\n"
        "  kill $(cat $d/$2.pid) && echo \"$2 $3\" >> $d/terminated ;;\n"
        "esac\n", dir, i1_tenths);
    fclose(f);
    chmod(path, 0755);
    char line[500];
    snprintf(line, sizeof line, "%s launch", path);
    set("exec.launch", line);
    snprintf(line, sizeof line, "%s terminate", path);
    set("exec.terminate", line);
    set("exec.timeout", "10s");
}

static ctl_driver *exec_driver(void)
{
    char err[512] = "";
    ctl_driver *d = ctl_driver_exec_new(&cfg.exec, dir, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    return d;
}

Test(ctl_inst, exec_slow_launch_does_not_block_others)
{
    exec_setup(80);
    set("instances", "2");
    char err[512] = "";
    mgr = ctl_mgr_new(&cfg, exec_driver(), err, sizeof err);
    cr_assert_not_null(mgr, "%s", err);
    cr_assert_eq(ctl_mgr_start(mgr, err, sizeof err), 0, "%s", err);
    cr_assert(WAIT_FOR(6000, (find_id("i-2") && find_id("i-2")->state == CTL_INST_READY)),
              "i-2 ready while i-1 is still launching");
    cr_assert_eq(find_id("i-1")->address[0], '\0', "i-1 not launched yet");
    char path[400], t[200] = "";
    snprintf(path, sizeof path, "%s/release", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert(WAIT_FOR(8000, count(CTL_INST_READY) == 2));
    ctl_mgr_free(mgr);
    mgr = NULL;
    snprintf(path, sizeof path, "%s/terminated", dir);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t n = fread(t, 1, sizeof t - 1, f);
    fclose(f);
    t[n] = '\0';
    cr_assert(strstr(t, "i-1 127.0.0.1:") && strstr(t, "i-2 127.0.0.1:"), "%s", t);
}

Test(ctl_inst, exec_stop_during_launch_terminates_it)
{
    exec_setup(15);
    set("instances", "1");
    char err[512] = "";
    mgr = ctl_mgr_new(&cfg, exec_driver(), err, sizeof err);
    cr_assert_not_null(mgr, "%s", err);
    cr_assert_eq(ctl_mgr_start(mgr, err, sizeof err), 0, "%s", err);
    usleep(300000);   /* the launch script is sleeping */
    ctl_mgr_free(mgr);
    mgr = NULL;
    char path[400], line[200] = "";
    snprintf(path, sizeof path, "%s/terminated", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "i-1 was terminated once its launch finished");
    cr_assert_not_null(fgets(line, sizeof line, f));
    fclose(f);
    cr_assert(strncmp(line, "i-1 127.0.0.1:", 14) == 0, "%s", line);
}

Test(ctl_inst, refused_drain_is_retried_not_skipped)
{
    with_gateway();
    start_mgr(1);
    cr_assert(WAIT_FOR(10000, (snapshot() == 1 && list[0].registered)), "registered");
    ctl_instance_info inst = list[0];
    pthread_mutex_lock(&fg_mu);
    fg_fail_delete = true;
    pthread_mutex_unlock(&fg_mu);
    cr_assert_eq(ctl_instances_scale_to(mgr, 0), 0);
    cr_assert(WAIT_FOR(3000, count(CTL_INST_DRAINING) == 1));
    usleep(500000);
    cr_assert_eq(count(CTL_INST_DRAINING), 1, "an instance the gateway may still use keeps running");
    cr_assert(alive(inst.pid));
    cr_assert(strstr(list[0].last_error, "admin API busy"), "%s", list[0].last_error);
    pthread_mutex_lock(&fg_mu);
    fg_fail_delete = false;
    pthread_mutex_unlock(&fg_mu);
    cr_assert(WAIT_FOR(3000, snapshot() == 0), "drained and stopped once the gateway agreed");
    cr_assert(!alive(inst.pid));
    cr_assert_eq(fake_index(inst.address), -1);
}

/* A worker: on SIGTERM the main process notes it, "finishes its task"
 * (0.3 s) and exits; its child notes a SIGTERM of its own, which a stop
 * with kill_mode mixed never sends. */
static const char worker_py[] =
    "import os, signal, subprocess, sys, time\n"
    "d, wid = sys.argv[1], sys.argv[2]\n"
    "child = ('import signal, sys, time\\n'\n"
    "         'def t(*a):\\n'\n"
    "         '    open(sys.argv[1], \"w\").close(); sys.exit(0)\\n'\n"
    "         'signal.signal(signal.SIGTERM, t)\\n'\n"
    "         'open(sys.argv[2], \"w\").close()\\n'\n"
    "         'while True: time.sleep(1)\\n')\n"
    "subprocess.Popen([sys.executable, '-c', child, f'{d}/child-term-{wid}', f'{d}/child-up-{wid}'])\n"
    "def term(*a):\n"
    "    open(f'{d}/main-term-{wid}', 'w').close()\n"
    "    time.sleep(0.3)\n"
    "    open(f'{d}/main-done-{wid}', 'w').close()\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, term)\n"
    "while True: time.sleep(1)\n";

static bool exists(const char *name)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void touch(const char *name)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f, "%s", p);
    fclose(f);
}

static pid_t child_of(pid_t parent)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/task/%d/children", (int)parent, (int)parent);
    FILE *f = fopen(p, "r");
    int c = 0;
    if (f) {
        if (fscanf(f, "%d", &c) != 1)
            c = 0;
        fclose(f);
    }
    return (pid_t)c;
}

Test(ctl_inst, worker_without_port)
{
    with_gateway();
    char path[400];
    snprintf(path, sizeof path, "%s/worker.py", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(worker_py, f);
    fclose(f);
    set("template.command", "python3 {state_dir}/worker.py {state_dir} {id}");
    set("template.port", "none");
    set("template.ready_command", "test -e {state_dir}/ready-{id}");
    set("template.ready_timeout", "2s");
    set("unhealthy_checks", "2");
    set("stop_grace", "5s");
    start_mgr(1);
    cr_assert(WAIT_FOR(5000, exists("child-up-i-1")), "launched");
    snapshot();
    cr_assert_eq(list[0].state, CTL_INST_STARTING, "not ready until ready_command says so");
    cr_assert_str_eq(list[0].address, "", "no port, no address");
    touch("ready-i-1");
    cr_assert(WAIT_FOR(5000, count(CTL_INST_READY) == 1), "ready once it exits 0");
    usleep(300000);   /* several check intervals: a registration would have happened */
    snapshot();
    cr_assert(!list[0].registered && list[0].healthy);
    pthread_mutex_lock(&fg_mu);
    int members = fg_n;
    pthread_mutex_unlock(&fg_mu);
    cr_assert_eq(members, 0, "a worker never joins the gateway");

    /* a crash restarts it (its child is not left behind) */
    pid_t first = list[0].pid, first_child = child_of(first);
    cr_assert_gt(first_child, 0);
    cr_assert_eq(kill(first, SIGKILL), 0);
    cr_assert(WAIT_FOR(10000, (snapshot(), list[0].restarts == 1 && list[0].state == CTL_INST_READY)),
              "restarted and ready");
    cr_assert(WAIT_FOR(2000, !alive(first_child)), "the crashed worker's child was killed");

    /* ready_command failing now: replaced after unhealthy_checks */
    char flag[400];
    snprintf(flag, sizeof flag, "%s/ready-i-1", dir);
    cr_assert_eq(unlink(flag), 0);
    cr_assert(WAIT_FOR(10000, find_id("i-2") != NULL), "replacement started");
    cr_assert(WAIT_FOR(10000, !find_id("i-1")), "the failing one stopped");

    /* stop: SIGTERM to the main process only; it finishes, then exits */
    touch("ready-i-2");
    cr_assert(WAIT_FOR(5000, count(CTL_INST_READY) == 1));
    cr_assert(WAIT_FOR(5000, exists("child-up-i-2")));
    snapshot();
    pid_t main2 = list[0].pid, child2 = child_of(main2);
    cr_assert_gt(child2, 0);
    cr_assert_eq(ctl_instances_scale_to(mgr, 0), 0);
    cr_assert(WAIT_FOR(5000, snapshot() == 0), "stopped");
    cr_assert(exists("main-term-i-2") && exists("main-done-i-2"), "the main process finished");
    cr_assert(!exists("child-term-i-2"), "its child got no SIGTERM of its own");
    cr_assert(!alive(main2));
    cr_assert(WAIT_FOR(2000, !alive(child2)), "and the rest of the group is gone");
}

/* The state file follows every launch, and a second manager on the same
 * state_dir adopts what the first left running: a worker (no address)
 * by pid and start time, counted, not started again, then stopped by an
 * explicit stop. (The first manager cannot crash in-process, so a detached
 * process stands for its leftover; the e2e tests kill -9 real ones.) */
Test(ctl_inst, state_file_and_worker_adoption)
{
    start_mgr(2);
    cr_assert(WAIT_FOR(10000, count(CTL_INST_READY) == 2), "two ready");
    char path[400], err[512] = "";
    snprintf(path, sizeof path, "%s/instances.state", dir);
    ctl_instfile f;
    cr_assert(WAIT_FOR(2000, ctl_instfile_load(path, &f, err, sizeof err) == 0 && f.n == 2
                             && (ctl_instfile_free(&f), true)), "both in the state file");
    cr_assert_eq(ctl_instfile_load(path, &f, err, sizeof err), 0, "%s", err);
    snapshot();
    for (size_t i = 0; i < 2; i++) {
        proc_ident id;
        cr_assert_eq(proc_ident_read(f.insts[i].pid, &id), 0);
        cr_assert_eq(f.insts[i].start, id.start);
        cr_assert_eq(ctl_adopt_check(&f.insts[i]), CTL_ADOPT_YES);
        cr_assert_str_eq(f.insts[i].id, list[i].id);
        cr_assert_str_eq(f.insts[i].address, list[i].address);
        cr_assert(f.insts[i].managed && !f.insts[i].noport);
    }
    ctl_instfile_free(&f);
    ctl_mgr_free(mgr);
    mgr = NULL;
    cr_assert_eq(ctl_instfile_load(path, &f, err, sizeof err), 0, "%s", err);
    cr_assert_eq(f.n, 0, "an explicit stop leaves nothing to adopt");

    char *argv[] = { "sleep", "60", NULL };
    proc_spec ps = { .argv = argv, .detach = true };
    pid_t w = proc_spawn(&ps, err, sizeof err);
    cr_assert_gt(w, 0, "%s", err);
    proc_ident wid;
    cr_assert_eq(proc_ident_read(w, &wid), 0);
    ctl_saved_inst s;
    memset(&s, 0, sizeof s);
    snprintf(s.id, sizeof s.id, "i-7");
    snprintf(s.version, sizeof s.version, "v9");
    s.pid = w;
    s.start = wid.start;
    s.pgid = wid.pgid;
    s.sid = wid.sid;
    s.noport = s.managed = true;
    s.stop_how = CTL_TERM_MAIN;
    ctl_instfile saved = { .insts = &s, .n = 1 };
    cr_assert_eq(ctl_instfile_write(path, &saved, err, sizeof err), 0, "%s", err);

    set("template.command", "sleep 60");
    set("template.port", "none");
    start_mgr(1);
    cr_assert(WAIT_FOR(5000, count(CTL_INST_READY) == 1), "the worker adopted and ready");
    usleep(300000);   /* several ticks: a second start would show by now */
    cr_assert_eq(snapshot(), 1, "none started twice");
    cr_assert_str_eq(list[0].id, "i-7");
    cr_assert_str_eq(list[0].version, "v9");
    cr_assert_eq(list[0].pid, w);
    cr_assert_str_eq(list[0].address, "");
    cr_assert(list[0].managed && !list[0].registered);
    cr_assert_eq(ctl_instances_desired(mgr), 1);
    /* Scaling to 2 starts one new (i-8), next to the adopted one. */
    cr_assert_eq(ctl_instances_scale_to(mgr, 2), 0);
    cr_assert(WAIT_FOR(5000, count(CTL_INST_READY) == 2 && find_id("i-8")));
    ctl_mgr_free(mgr);
    mgr = NULL;
    cr_assert(!proc_same(w, wid.start), "an explicit stop stops the adopted worker too");
    waitpid(w, NULL, WNOHANG);
}
