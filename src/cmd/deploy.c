/* deploy.c -- `hscale deploy`: starts a rolling, blue-green or canary
 * deploy on the control plane and follows it, or reads and steers the
 * current one (status, promote, pause, resume, rollback).
 *
 * A thin client of /api/v1/deploys: the control plane validates the
 * options (its 400 names the field) and runs the deploy, so the CLI can
 * be interrupted without stopping anything. Following prints one line per
 * event and exits 0 when the deploy succeeded, 1 when it failed or was
 * rolled back. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "http/client.h"

static const char usage[] =
    "usage: hscale deploy rolling|bluegreen|canary --version V [options]\n"
    "       hscale deploy status [--json] | promote | pause | resume | rollback\n\n"
    "Deploys a new version of the control plane's instance template with no\n"
    "dropped request, and follows it until it ends.\n\n"
    "  --version V            label of the new version (required)\n"
    "  --command CMD          instance command of the new version ({port} {host}\n"
    "                         {id} {version} {exe} {state_dir}); default: unchanged\n"
    "  --env K=V              environment of the new version (repeatable)\n"
    "  --ready-path PATH      readiness probe of the new version\n"
    "  --control URL          control plane API (default http://127.0.0.1:8081,\n"
    "                         env HSCALE_CONTROL_URL; token: HSCALE_CONTROL_TOKEN)\n"
    "  --service NAME         the service to deploy (default: the first one)\n"
    "  --ready-timeout D      a new instance not ready by then fails the deploy (60s)\n"
    "  --detach               start it and exit without following\n"
    "rolling:\n"
    "  --max-surge N|P%       new instances above the count at a time (default 1)\n"
    "  --max-unavailable N|P% old instances stopped before their replacement (0)\n"
    "  --observe D            watch each batch's error rate this long (2s)\n"
    "blue-green and canary (the gateway needs a second pool, default <pool>-next):\n"
    "  --target-pool NAME     the second pool\n"
    "  --instances N          new instances (default: the current count)\n"
    "  --smoke PATH[=STATUS]  blue-green check against every new instance (repeatable)\n"
    "  --rollback-window D    blue-green: keep blue this long after the switch (30s)\n"
    "  --steps 5,25,50,100    canary weights in percent\n"
    "  --pause D              canary: analysis window per step (10s)\n"
    "  --max-error-rate PCT   fail above this error rate (default 1)\n"
    "  --max-p95 MS           fail above this p95 (default 500)\n"
    "  --min-requests N       fewer requests than this is inconclusive: hold (50)\n"
    "  --manual               wait for `hscale deploy promote` at each step\n"
    "  --ca-file FILE         CA bundle for an https control URL (env HSCALE_CA_FILE)\n"
    "  -h, --help             this text\n\n"
    "Exit status: 0 deployed, 1 failed or rolled back (or unreachable), 2 bad usage.\n";

typedef struct client {
    char base[512];
    char auth[400];
    char prefix[128];   /* "/api/v1/services/NAME" with --service, else "" */
} client;

/* One request; the parsed JSON body (or NULL) and the status. */
static json_t *call(const client *cl, const char *method, const char *path, const char *body,
                    int *status, char *err, size_t errlen)
{
    char url[1024], hdr[512];
    if (cl->prefix[0] && strncmp(path, "/api/v1/", 8) == 0)
        snprintf(url, sizeof url, "%s%s/%s", cl->base, cl->prefix, path + 8);
    else
        snprintf(url, sizeof url, "%s%s", cl->base, path);
    /* Every change says JSON, even without a body: the API refuses others. */
    bool change = body || strcmp(method, "GET") != 0;
    snprintf(hdr, sizeof hdr, "%s%s", cl->auth, change ? "Content-Type: application/json\r\n" : "");
    http_result r;
    http_result_init(&r);
    *status = 0;
    if (http_fetch(method, url, hdr[0] ? hdr : NULL, body, body ? strlen(body) : 0, 5000, &r,
                   err, errlen) < 0) {
        http_result_free(&r);
        return NULL;
    }
    *status = r.status;
    json_t *j = json_loadb(buf_head(&r.body), r.body.len, 0, NULL);
    if (r.status >= 300) {
        const char *e = json_string_value(json_object_get(j, "error"));
        snprintf(err, errlen, "%s %s: HTTP %d: %s", method, path, r.status,
                 e ? e : "(no message)");
    }
    http_result_free(&r);
    return j;
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void print_status(const json_t *j)
{
    if (strcmp(jstr(j, "state"), "none") == 0) {
        printf("no deploy yet\n");
        return;
    }
    printf("deploy %s: %s %s -> %s  state %s  phase %s%s  %lld/%lld  weight %lld%%\n  %s\n",
           jstr(j, "id"), jstr(j, "strategy"), jstr(j, "from_version"), jstr(j, "version"),
           jstr(j, "state"), jstr(j, "phase"), json_is_true(json_object_get(j, "paused")) ? " (paused)" : "",
           json_integer_value(json_object_get(j, "done")),
           json_integer_value(json_object_get(j, "total")),
           json_integer_value(json_object_get(j, "weight")), jstr(j, "message"));
}

/* Prints every event of deploy id not printed yet (oldest first). */
static void print_events(const client *cl, const char *id, double *last_ts)
{
    int st;
    char err[512];
    json_t *j = call(cl, "GET", "/api/v1/deploys?limit=50", NULL, &st, err, sizeof err);
    json_t *ev = json_object_get(j, "events");
    for (size_t i = json_array_size(ev); i-- > 0;) {
        json_t *e = json_array_get(ev, i);
        double ts = json_number_value(json_object_get(e, "time"));
        if (strcmp(jstr(e, "deploy"), id) != 0 || ts <= *last_ts)
            continue;
        *last_ts = ts;
        time_t t = (time_t)ts;
        struct tm tm;
        localtime_r(&t, &tm);
        printf("%02d:%02d:%02d  %-22s %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec, jstr(e, "kind"),
               jstr(e, "message"));
        fflush(stdout);
    }
    json_decref(j);
}

static int follow(const client *cl, const char *id)
{
    double last_ts = 0;
    for (;;) {
        int st;
        char err[512];
        print_events(cl, id, &last_ts);
        json_t *j = call(cl, "GET", "/api/v1/deploys/current", NULL, &st, err, sizeof err);
        if (!j || st != 200) {
            fprintf(stderr, "hscale deploy: %s\n", err);
            json_decref(j);
            return 1;
        }
        bool running = json_is_true(json_object_get(j, "running"));
        char state[32];
        snprintf(state, sizeof state, "%s", jstr(j, "state"));
        json_decref(j);
        if (!running) {
            print_events(cl, id, &last_ts);
            printf("deploy %s %s\n", id, state);
            return strcmp(state, "succeeded") == 0 ? 0 : 1;
        }
        usleep(300000);
    }
}

static int num_arg(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || d < lo || d > hi)
        return cmd_usage_error(usage, "deploy", "%s: expected a number %g..%g, got '%s'", opt,
                               lo, hi, v);
    *out = d;
    return 0;
}

static int start(const client *cl, const char *strategy, int argc, char **argv)
{
    json_t *b = json_pack("{s:s}", "strategy", strategy);
    json_t *env = NULL, *smoke = NULL;
    bool detach = false;
    int rc = EXIT_USAGE;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--detach") == 0) {
            detach = true;
            continue;
        }
        if (strcmp(o, "--manual") == 0) {
            json_object_set_new(b, "auto_promote", json_false());
            continue;
        }
        bool caller_flag = strcmp(o, "--control") == 0 || strcmp(o, "--service") == 0;
        if (caller_flag || o[0] != '-') {
            i += caller_flag;   /* handled by the caller */
            if (o[0] != '-') {
                cmd_usage_error(usage, "deploy", "unexpected argument '%s'", o);
                goto out;
            }
            continue;
        }
        if (i + 1 >= argc) {
            cmd_usage_error(usage, "deploy", "%s needs a value", o);
            goto out;
        }
        const char *v = argv[++i];
        static const struct { const char *opt, *key; } strs[] = {
            { "--version", "version" }, { "--command", "command" }, { "--ready-path", "ready_path" },
            { "--max-surge", "max_surge" }, { "--max-unavailable", "max_unavailable" },
            { "--target-pool", "target_pool" }, { "--ready-timeout", "ready_timeout" },
            { "--observe", "observe" }, { "--rollback-window", "rollback_window" },
            { "--pause", "pause" }, { "--max-hold", "max_hold" },
        };
        bool done = false;
        for (size_t k = 0; k < sizeof strs / sizeof strs[0] && !done; k++)
            if (strcmp(o, strs[k].opt) == 0) {
                json_object_set_new(b, strs[k].key, json_string(v));
                done = true;
            }
        if (done)
            continue;
        double d;
        if (strcmp(o, "--env") == 0) {
            if (!strchr(v, '=')) {
                cmd_usage_error(usage, "deploy", "--env: expected K=V, got '%s'", v);
                goto out;
            }
            if (!env)
                env = json_array();
            json_array_append_new(env, json_string(v));
        } else if (strcmp(o, "--smoke") == 0) {
            char path[256];
            snprintf(path, sizeof path, "%s", v);
            char *eq = strrchr(path, '=');
            int expect = 200;
            if (eq) {
                *eq = '\0';
                expect = atoi(eq + 1);
            }
            if (!smoke)
                smoke = json_array();
            json_array_append_new(smoke, json_pack("{s:s, s:i}", "path", path, "expect", expect));
        } else if (strcmp(o, "--steps") == 0) {
            json_t *steps = json_array();
            char tmp[256];
            snprintf(tmp, sizeof tmp, "%s", v);
            char *save = NULL;
            for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                char *end;
                long n = strtol(t, &end, 10);
                if (end == t || (*end && strcmp(end, "%") != 0)) {
                    json_decref(steps);
                    cmd_usage_error(usage, "deploy", "--steps: expected percentages such as 5,25,50,100, got '%s'", v);
                    goto out;
                }
                json_array_append_new(steps, json_integer(n));
            }
            json_object_set_new(b, "steps", steps);
        } else if (strcmp(o, "--instances") == 0) {
            if (num_arg(o, v, 1, 256, &d))
                goto out;
            json_object_set_new(b, "instances", json_integer((json_int_t)d));
        } else if (strcmp(o, "--max-error-rate") == 0) {
            if (num_arg(o, v, 0, 100, &d))
                goto out;
            json_object_set_new(b, "max_error_rate", json_real(d));
        } else if (strcmp(o, "--max-p95") == 0) {
            if (num_arg(o, v, 0, 3.6e6, &d))
                goto out;
            json_object_set_new(b, "max_p95_ms", json_real(d));
        } else if (strcmp(o, "--min-requests") == 0) {
            if (num_arg(o, v, 0, 1e9, &d))
                goto out;
            json_object_set_new(b, "min_requests", json_real(d));
        } else {
            cmd_usage_error(usage, "deploy", "unknown option '%s'", o);
            goto out;
        }
    }
    if (!json_object_get(b, "version")) {
        cmd_usage_error(usage, "deploy", "--version is required");
        goto out;
    }
    if (env)
        json_object_set(b, "env", env);
    if (smoke)
        json_object_set(b, "smoke", smoke);
    char *body = json_dumps(b, JSON_COMPACT);
    int st;
    char err[512];
    json_t *j = call(cl, "POST", "/api/v1/deploys", body, &st, err, sizeof err);
    free(body);
    if (st != 202) {
        fprintf(stderr, "hscale deploy: %s\n", err);
        json_decref(j);
        rc = 1;
        goto out;
    }
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(j, "id"));
    printf("deploy %s started: %s to version %s\n", id, strategy, jstr(j, "version"));
    fflush(stdout);
    json_decref(j);
    rc = detach ? 0 : follow(cl, id);
out:
    json_decref(env);
    json_decref(smoke);
    json_decref(b);
    return rc;
}

int cmd_deploy(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    if (cmd_take_ca_file(&argc, argv, "deploy") < 0)
        return 2;
    if (argc < 2)
        return cmd_usage_error(usage, "deploy", "expected rolling, bluegreen, canary, status, "
                               "promote, pause, resume or rollback");
    client cl;
    cl.prefix[0] = '\0';
    const char *url = getenv("HSCALE_CONTROL_URL");
    bool json_out = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--control") == 0) {
            if (i + 1 >= argc)
                return cmd_usage_error(usage, "deploy", "--control needs a value");
            url = argv[++i];
        } else if (strcmp(argv[i], "--service") == 0) {
            if (i + 1 >= argc)
                return cmd_usage_error(usage, "deploy", "--service needs a name");
            const char *sv = argv[++i];
            if (!sv[0] || strlen(sv) > 48 || strspn(sv, "abcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(sv))
                return cmd_usage_error(usage, "deploy", "--service expects a service name "
                                       "(a-z 0-9 - _), got '%s'", sv);
            snprintf(cl.prefix, sizeof cl.prefix, "/api/v1/services/%s", sv);
        } else if (strcmp(argv[i], "--json") == 0) {
            json_out = true;
        }
    }
    snprintf(cl.base, sizeof cl.base, "%s%s", url && strstr(url, "://") ? "" : "http://",
             url && url[0] ? url : "127.0.0.1:8081");
    size_t bl = strlen(cl.base);
    while (bl > 0 && cl.base[bl - 1] == '/')
        cl.base[--bl] = '\0';
    const char *tok = getenv("HSCALE_CONTROL_TOKEN");
    if (tok && tok[0])
        snprintf(cl.auth, sizeof cl.auth, "Authorization: Bearer %s\r\n", tok);
    else
        cl.auth[0] = '\0';

    const char *sub = argv[1];
    if (strcmp(sub, "rolling") == 0 || strcmp(sub, "bluegreen") == 0
        || strcmp(sub, "blue-green") == 0 || strcmp(sub, "canary") == 0)
        return start(&cl, strcmp(sub, "blue-green") == 0 ? "bluegreen" : sub, argc, argv);
    bool is_status = strcmp(sub, "status") == 0;
    bool is_action = strcmp(sub, "promote") == 0 || strcmp(sub, "pause") == 0
                  || strcmp(sub, "resume") == 0 || strcmp(sub, "rollback") == 0;
    if (!is_status && !is_action)
        return cmd_usage_error(usage, "deploy", "unknown subcommand '%s'", sub);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--control") == 0 || strcmp(argv[i], "--service") == 0)
            i++;
        else if (!(is_status && strcmp(argv[i], "--json") == 0))
            return cmd_usage_error(usage, "deploy", "unknown option '%s'", argv[i]);
    }
    int st;
    char err[512], path[128];
    if (is_status)
        snprintf(path, sizeof path, "/api/v1/deploys/current");
    else
        snprintf(path, sizeof path, "/api/v1/deploys/current/%s", sub);
    json_t *j = call(&cl, is_status ? "GET" : "POST", path, is_status ? NULL : "{}", &st, err,
                     sizeof err);
    if (!j || st >= 300) {
        fprintf(stderr, "hscale deploy: %s\n", err);
        json_decref(j);
        return 1;
    }
    if (json_out) {
        char *s = json_dumps(j, JSON_COMPACT);
        puts(s ? s : "{}");
        free(s);
    } else {
        if (is_action)
            printf("%s requested\n", sub);
        print_status(j);
    }
    json_decref(j);
    return 0;
}
