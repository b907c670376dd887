/* shards.c -- `hscale shards status|check`: the control plane's shard
 * management API for people.
 *
 *   status  one line per shard (weight, rows, size, queries, p99, health
 *           with the reason) and one per replica (lag), from
 *           /api/v1/scaling/shards/statistics and /health
 *   check   the rebalance check: each shard's share against its weight's,
 *           and the suggested move; exit 1 when a shard is off its share
 *
 * A thin client like `hscale status`: --json prints what the API said. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "http/client.h"

static const char usage[] =
    "usage: hscale shards status|check [--control URL] [--service NAME] [--json]\n\n"
    "  status            rows, size, queries, p99 latency and health per shard,\n"
    "                    lag per replica (GET /api/v1/scaling/shards/statistics\n"
    "                    and /health)\n"
    "  check             each shard's rows against its weight's share and the move\n"
    "                    that would even them (GET .../shards/rebalance-check);\n"
    "                    exit 1 when a shard is over or under its share\n\n"
    "  --control URL     control plane API (default http://127.0.0.1:8081,\n"
    "                    env HSCALE_CONTROL_URL)\n"
    "  --service NAME    the service whose instances to ask (default: the first)\n"
    "  --json            print the API's JSON\n"
    "  --ca-file FILE    CA bundle for an https URL (env HSCALE_CA_FILE)\n"
    "  -h, --help        this text\n\n"
    "The bearer token, when the API has one, is read from HSCALE_CONTROL_TOKEN.\n"
    "Exit status 1 when the control plane cannot be reached.\n";

static json_t *sh_get(const char *base, const char *path, const char *service,
                      const char *auth)
{
    char url[1024], err[256];
    snprintf(url, sizeof url, "%s%s%s%s", base, path, service ? "?service=" : "",
             service ? service : "");
    http_result r;
    http_result_init(&r);
    json_t *j = NULL;
    if (http_fetch("GET", url, auth[0] ? auth : NULL, NULL, 0, 15000, &r, err, sizeof err) < 0) {
        fprintf(stderr, "hscale shards: %s: %s (is `hscale control` running? --control URL"
                " picks another)\n", url, err);
    } else if (r.status != 200) {
        fprintf(stderr, "hscale shards: GET %s: HTTP %d: %.*s\n", path, r.status,
                (int)(r.body.len > 300 ? 300 : r.body.len), buf_head(&r.body));
    } else {
        json_error_t je;
        if (!(j = json_loadb(buf_head(&r.body), r.body.len, 0, &je)))
            fprintf(stderr, "hscale shards: GET %s: not JSON: %s\n", path, je.text);
    }
    http_result_free(&r);
    return j;
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static double jnum(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

static void human_bytes(double b, char *out, size_t n)
{
    const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(out, n, "%.1f %s", b, u[i]);
}

static int do_status(json_t *st, json_t *he)
{
    printf("map v%lld, strategy %s, %d instance(s); health: %s\n",
           (long long)json_integer_value(json_object_get(st, "map_version")), jstr(st, "strategy"),
           (int)json_integer_value(json_object_get(st, "instances")), jstr(he, "status"));
    printf("%-12s %6s %10s %10s %10s %8s %9s  %s\n", "SHARD", "WEIGHT", "ROWS", "SIZE",
           "QUERIES", "ERRORS", "P99", "HEALTH");
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(st, "shards"), i, s) {
        json_t *h = json_array_get(json_object_get(he, "shards"), i);
        char size[32];
        human_bytes(jnum(s, "size_bytes"), size, sizeof size);
        const char *reason = jstr(h, "reason");
        printf("%-12s %6g %10lld %10s %10lld %8lld %7.1fms  %s%s%s\n", jstr(s, "name"),
               jnum(s, "weight"), (long long)json_integer_value(json_object_get(s, "rows_total")),
               size, (long long)json_integer_value(json_object_get(s, "queries")),
               (long long)json_integer_value(json_object_get(s, "errors")),
               jnum(json_object_get(s, "latency_seconds"), "p99") * 1e3, jstr(h, "status"),
               *reason ? ": " : "", reason);
        size_t k;
        json_t *n;
        json_array_foreach(json_object_get(s, "nodes"), k, n) {
            if (strcmp(jstr(n, "role"), "replica"))
                continue;
            json_t *lag = json_object_get(n, "lag_seconds");
            json_t *hn = json_array_get(json_object_get(h, "nodes"), k);
            printf("  replica %s: %s, lag %s%.3f s\n", jstr(n, "url"), jstr(hn, "status"),
                   json_is_number(lag) ? "" : "unknown ", json_is_number(lag) ? jnum(n, "lag_seconds") : 0.0);
        }
    }
    return strcmp(jstr(he, "status"), "healthy") ? 1 : 0;
}

static int do_check(json_t *rc)
{
    bool balanced = json_is_true(json_object_get(rc, "balanced"));
    printf("%s: %lld rows, strategy %s, threshold %.0f%%\n",
           balanced ? "balanced" : "imbalanced",
           (long long)json_integer_value(json_object_get(rc, "total_rows")), jstr(rc, "strategy"),
           jnum(rc, "threshold") * 100);
    printf("%-12s %6s %10s %10s %8s %8s %9s  %s\n", "SHARD", "WEIGHT", "ROWS", "EXPECTED",
           "SHARE", "TARGET", "DEVIATION", "STATUS");
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(rc, "shards"), i, s) {
        printf("%-12s %6g %10lld %10lld %7.1f%% %7.1f%% %+8.1f%%  %s\n", jstr(s, "name"),
               jnum(s, "weight"), (long long)json_integer_value(json_object_get(s, "rows")),
               (long long)json_integer_value(json_object_get(s, "expected_rows")),
               jnum(s, "share") * 100, jnum(s, "expected_share") * 100,
               jnum(s, "deviation") * 100, jstr(s, "status"));
    }
    json_array_foreach(json_object_get(rc, "suggestions"), i, s) {
        printf("suggestion: %s\n", jstr(s, "why"));
    }
    return balanced ? 0 : 1;
}

int cmd_shards(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    if (cmd_take_ca_file(&argc, argv, "shards") < 0)
        return EXIT_USAGE;
    const char *base = getenv("HSCALE_CONTROL_URL"), *service = NULL, *what = NULL;
    if (!base || !*base)
        base = "http://127.0.0.1:8081";
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            as_json = true;
        } else if (!strcmp(a, "--control") || !strcmp(a, "--service")) {
            if (i + 1 >= argc)
                return cmd_usage_error(usage, "shards", "%s needs a value", a);
            *(a[2] == 'c' ? &base : &service) = argv[++i];
        } else if (!what && (!strcmp(a, "status") || !strcmp(a, "check"))) {
            what = a;
        } else {
            return cmd_usage_error(usage, "shards", "unknown argument '%s'", a);
        }
    }
    if (!what)
        return cmd_usage_error(usage, "shards", "expected status or check");
    char url[512];
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    snprintf(url, sizeof url, "%s%.*s", strstr(base, "://") ? "" : "http://", (int)bl, base);
    const char *tok = getenv("HSCALE_CONTROL_TOKEN");
    char auth[512] = "";
    if (tok && *tok)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", tok);
    int rc = 1;
    if (!strcmp(what, "status")) {
        json_t *st = sh_get(url, "/api/v1/scaling/shards/statistics", service, auth);
        json_t *he = st ? sh_get(url, "/api/v1/scaling/shards/health", service, auth) : NULL;
        if (st && he) {
            if (as_json) {
                json_t *j = json_pack("{s:O, s:O}", "statistics", st, "health", he);
                char *t = json_dumps(j, JSON_INDENT(2));
                puts(t ? t : "null");
                free(t);
                json_decref(j);
                rc = strcmp(jstr(he, "status"), "healthy") ? 1 : 0;
            } else {
                rc = do_status(st, he);
            }
        }
        json_decref(st);
        json_decref(he);
    } else {
        json_t *j = sh_get(url, "/api/v1/scaling/shards/rebalance-check", service, auth);
        if (j && as_json) {
            char *t = json_dumps(j, JSON_INDENT(2));
            puts(t ? t : "null");
            free(t);
            rc = json_is_true(json_object_get(j, "balanced")) ? 0 : 1;
        } else if (j) {
            rc = do_check(j);
        }
        json_decref(j);
    }
    return rc;
}
