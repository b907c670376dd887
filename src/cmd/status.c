/* status.c -- `hscale status`: what the control plane is running, read
 * from its scaling API (status, per-instance metrics, the last events).
 *
 * A thin client: everything it prints comes from three GETs, so a script
 * gets the same with --json and the dashboard with the same endpoints. An
 * unreachable control plane is exit 1 with the URL tried, never an empty
 * table that reads like "no instances". */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "http/client.h"

static const char usage[] =
    "usage: hscale status [--control URL] [--service NAME] [--json] [--watch [SECONDS]]\n\n"
    "Shows the instances of each service of the control plane (id, address,\n"
    "version, state, health, req/s, p95, CPU), its autoscaler and its last\n"
    "scaling events.\n\n"
    "  --control URL     control plane API (default http://127.0.0.1:8081,\n"
    "                    env HSCALE_CONTROL_URL)\n"
    "  --service NAME    only this service (default: every one)\n"
    "  --json            one JSON object {status, metrics, events} for scripts\n"
    "                    ({\"services\":[...]} of those when there are several)\n"
    "  --watch [S]       redraw every S seconds (default 2) until interrupted\n"
    "  -h, --help        this text\n\n"
    "  --ca-file FILE    CA bundle for an https URL (env HSCALE_CA_FILE)\n\n"
    "The bearer token, when the API has one, is read from HSCALE_CONTROL_TOKEN.\n"
    "Exit status 1 when the control plane cannot be reached.\n";

/* GET base+path as JSON; NULL with a message in err. */
static json_t *get_json(const char *base, const char *path, const char *auth, char *err,
                        size_t errlen)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", base, path);
    http_result r;
    http_result_init(&r);
    json_t *j = NULL;
    if (http_fetch("GET", url, auth[0] ? auth : NULL, NULL, 0, 3000, &r, err, errlen) < 0) {
        http_result_free(&r);
        return NULL;
    }
    json_error_t je;
    if (r.status != 200)
        snprintf(err, errlen, "GET %s: HTTP %d: %.*s", path, r.status,
                 (int)(r.body.len > 200 ? 200 : r.body.len), buf_head(&r.body));
    else if (!(j = json_loadb(buf_head(&r.body), r.body.len, 0, &je)))
        snprintf(err, errlen, "GET %s: not JSON: %s", path, je.text);
    http_result_free(&r);
    return j;
}

static double jnum(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *jstr(const json_t *o, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : dflt;
}

static void cell(double v, const char *fmt)
{
    if (isfinite(v))
        printf(fmt, v);
    else
        printf("%8s", "-");
}

static void print_table(const json_t *st, const json_t *mx, const json_t *ev)
{
    const json_t *as = json_object_get(st, "autoscaling");
    printf("pool %s  desired %lld  ready %lld  starting %lld  leaving %lld  restarts %lld\n",
           jstr(st, "pool", "?"), json_integer_value(json_object_get(st, "desired")),
           json_integer_value(json_object_get(st, "ready")),
           json_integer_value(json_object_get(st, "starting")),
           json_integer_value(json_object_get(st, "leaving")),
           json_integer_value(json_object_get(st, "restarts")));
    if (json_is_true(json_object_get(as, "enabled"))) {
        const json_t *cd = json_object_get(as, "cooldown_remaining_s");
        printf("autoscaling on  [%lld..%lld]  check every %.2gs  cooldown out %.0fs in %.0fs\n",
               json_integer_value(json_object_get(as, "min")),
               json_integer_value(json_object_get(as, "max")), jnum(as, "check_interval_s"),
               jnum(cd, "scale_out"), jnum(cd, "scale_in"));
    } else {
        printf("autoscaling off\n");
    }
    printf("\n%-8s %-21s %-8s %-9s %-7s %8s %8s %8s %8s\n", "ID", "ADDRESS", "VERSION", "STATE",
           "HEALTH", "REQ/S", "P95 MS", "CPU %", "MEM %");
    const json_t *insts = json_object_get(st, "instances"), *mi = json_object_get(mx, "instances");
    size_t i;
    const json_t *in;
    json_array_foreach(insts, i, in) {
        const char *id = jstr(in, "id", "?");
        const json_t *m = NULL, *x;
        size_t k;
        json_array_foreach(mi, k, x)
            if (strcmp(jstr(x, "id", ""), id) == 0)
                m = x;
        printf("%-8s %-21s %-8s %-9s %-7s ", id, jstr(in, "address", ""), jstr(in, "version", ""),
               jstr(in, "state", "?"), json_is_true(json_object_get(in, "healthy")) ? "ok" : "-");
        cell(jnum(m, "rps"), "%8.1f");
        printf(" ");
        cell(jnum(m, "p95_ms"), "%8.1f");
        printf(" ");
        cell(jnum(m, "cpu_percent"), "%8.1f");
        printf(" ");
        cell(jnum(m, "memory_percent"), "%8.1f");
        printf("\n");
    }
    const json_t *events = ev;   /* the array of events */
    if (json_array_size(events) == 0)
        return;
    printf("\nlast scaling events:\n");
    json_array_foreach(events, i, in) {
        time_t t = (time_t)jnum(in, "time");
        struct tm tm;
        char when[32] = "?";
        if (localtime_r(&t, &tm))
            strftime(when, sizeof when, "%H:%M:%S", &tm);
        if (strcmp(jstr(in, "kind", "?"), "audit") == 0) {   /* a change through the API */
            printf("  %s  %-9s %s\n", when, "audit", jstr(in, "reason", ""));
            continue;
        }
        printf("  %s  %-9s %lld -> %lld  %s\n", when, jstr(in, "kind", "?"),
               json_integer_value(json_object_get(in, "old")),
               json_integer_value(json_object_get(in, "new")), jstr(in, "reason", ""));
    }
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

/* status, metrics and events of one service, whose paths start with
 * prefix ("/api/v1" or "/api/v1/services/NAME"), as {status,metrics,events};
 * NULL with err when the status cannot be had. */
static json_t *fetch_service(const char *base, const char *prefix, const char *auth, char *err,
                             size_t errlen)
{
    char path[384];
    snprintf(path, sizeof path, "%s/scaling/status", prefix);
    json_t *st = get_json(base, path, auth, err, errlen);
    if (!st)
        return NULL;
    /* older control planes lack these: show what there is */
    char e2[512];
    snprintf(path, sizeof path, "%s/scaling/metrics", prefix);
    json_t *mx = get_json(base, path, auth, e2, sizeof e2);
    snprintf(path, sizeof path, "%s/scaling/history?limit=5", prefix);
    json_t *ev = get_json(base, path, auth, e2, sizeof e2);
    json_t *o = json_pack("{s:o,s:o,s:o}", "status", st, "metrics", mx ? mx : json_null(),
                          "events", ev ? json_incref(json_object_get(ev, "events")) : json_array());
    json_decref(ev);
    return o;
}

/* The services to show: the one asked for, or every one the control plane
 * lists (an older one, without /api/v1/services, has just its own). */
static json_t *fetch_all(const char *base, const char *service, const char *auth, char *err,
                         size_t errlen)
{
    json_t *names = json_array();
    if (service) {
        json_array_append_new(names, json_string(service));
    } else {
        char e2[512];
        json_t *sv = get_json(base, "/api/v1/services", auth, e2, sizeof e2);
        const json_t *list = json_object_get(sv, "services");
        for (size_t i = 0; i < json_array_size(list); i++)
            json_array_append_new(names, json_string(jstr(json_array_get(list, i), "name", "?")));
        json_decref(sv);
    }
    json_t *out = json_array();
    size_t n = json_array_size(names);
    for (size_t i = 0; i < (n ? n : 1); i++) {
        char prefix[256] = "/api/v1";
        const char *name = n ? json_string_value(json_array_get(names, i)) : NULL;
        if (name && (service || n > 1))
            snprintf(prefix, sizeof prefix, "/api/v1/services/%s", name);
        json_t *o = fetch_service(base, prefix, auth, err, errlen);
        if (!o) {
            json_decref(out);
            out = NULL;
            break;
        }
        json_object_set_new(o, "service", name ? json_string(name) : json_null());
        json_array_append_new(out, o);
    }
    json_decref(names);
    return out;
}

/* One round: 0 printed, 1 unreachable (message on stderr). */
static int show(const char *base, const char *service, const char *auth, bool as_json, bool clear)
{
    char err[512];
    json_t *all = fetch_all(base, service, auth, err, sizeof err);
    if (!all) {
        fprintf(stderr, "hscale status: cannot reach the control plane at %s: %s\n"
                "(is `hscale up` or `hscale control` running? --control URL picks another)\n",
                base, err);
        return 1;
    }
    size_t n = json_array_size(all);
    if (as_json) {
        /* one service: {status, metrics, events} as ever; several: a list */
        json_t *o = n == 1 ? json_incref(json_array_get(all, 0)) : json_pack("{s:O}", "services", all);
        if (n == 1)
            json_object_del(o, "service");
        json_dumpf(o, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(o);
    } else {
        if (clear)
            fputs("\033[H\033[2J", stdout);
        for (size_t i = 0; i < n; i++) {
            const json_t *o = json_array_get(all, i);
            if (n > 1)
                printf("%s== service %s\n", i ? "\n" : "", jstr(o, "service", "?"));
            print_table(json_object_get(o, "status"), json_object_get(o, "metrics"),
                        json_object_get(o, "events"));
        }
    }
    fflush(stdout);
    json_decref(all);
    return 0;
}

int cmd_status(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    if (cmd_take_ca_file(&argc, argv, "status") < 0)
        return 2;
    const char *base = getenv("HSCALE_CONTROL_URL");
    if (!base || !*base)
        base = "http://127.0.0.1:8081";
    bool as_json = false;
    const char *service = NULL;
    double watch = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            as_json = true;
        } else if (strcmp(a, "--control") == 0 || strncmp(a, "--control=", 10) == 0) {
            if (a[9] == '=')
                base = a + 10;
            else if (i + 1 < argc)
                base = argv[++i];
            else
                return cmd_usage_error(usage, "status", "--control needs a URL");
        } else if (strcmp(a, "--service") == 0 || strncmp(a, "--service=", 10) == 0) {
            if (a[9] == '=')
                service = a + 10;
            else if (i + 1 < argc)
                service = argv[++i];
            else
                return cmd_usage_error(usage, "status", "--service needs a name");
        } else if (strcmp(a, "--watch") == 0) {
            watch = 2;
            if (i + 1 < argc && argv[i + 1][0] != '-') {
                char *end;
                watch = strtod(argv[i + 1], &end);
                if (*end || !(watch >= 0.1 && watch <= 3600))
                    return cmd_usage_error(usage, "status",
                                           "--watch expects seconds 0.1..3600, got '%s'", argv[i + 1]);
                i++;
            }
        } else {
            return cmd_usage_error(usage, "status", "unknown option '%s'", a);
        }
    }
    char url[512];
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    snprintf(url, sizeof url, "%s%.*s", strstr(base, "://") ? "" : "http://", (int)bl, base);
    const char *tok = getenv("HSCALE_CONTROL_TOKEN");
    char auth[512] = "";
    if (tok && *tok)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", tok);
    if (watch <= 0)
        return show(url, service, auth, as_json, false);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = 0;
    while (!stop) {
        rc = show(url, service, auth, as_json, !as_json && isatty(STDOUT_FILENO));
        struct timespec ts = { (time_t)watch, (long)((watch - (double)(time_t)watch) * 1e9) };
        while (!stop && nanosleep(&ts, &ts) != 0)
            ;
    }
    return rc;
}
