/* app.c -- `hscale app`: argument parsing for the reference API and its
 * seeder; the service itself lives in src/app. Flags win over the
 * environment, which wins over the file (-c), which wins over defaults. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "app/app.h"
#include "cmd.h"

static const char usage[] =
    "usage: hscale app [-c hscale.yaml] [--listen ADDR] [--db URL] [--workers N]\n"
    "                  [--instance-id ID] [--version V] [--check]\n"
    "       hscale app seed [-c hscale.yaml] [--db URL] --users N --cases N [--seed S]\n\n"
    "Serves the reference case-management API (GET /health, /health/ready,\n"
    "/metrics, /casefilter; GET/POST /cases, GET/PUT/DELETE /cases/{id};\n"
    "GET/POST /users, GET /users/{id}; GET/POST /facilities and /surgeons) on\n"
    "the data layer. -c reads the `app:` section of a YAML file (shards,\n"
    "replicas, pools, cache: see 'hscale help config'); --db takes sqlite:PATH\n"
    "or a postgres:// URL for a one-shard store (default: SQLite under\n"
    "./hscale-data). --check prints the resolved configuration and exits.\n"
    "SIGTERM drains: /health/ready turns 503 at once, in-flight requests end.\n"
    "SIGHUP re-reads the file and applies each shard's replicas (added ones take\n"
    "reads, removed ones drain); so does PUT /admin/replicas/{shard}.\n";

static int num(const char *flag, const char *v, long long lo, long long *out)
{
    char *end;
    errno = 0;
    long long n = v ? strtoll(v, &end, 10) : 0;
    if (!v || *v == '\0' || *end != '\0' || errno || n < lo)
        return cmd_usage_error(usage, "app", "%s needs an integer >= %lld", flag, lo);
    *out = n;
    return 0;
}

int cmd_app(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    bool seed = argc > 1 && strcmp(argv[1], "seed") == 0, check = false;
    const char *listen = NULL, *db = NULL, *id = NULL, *version = NULL, *config = NULL,
               *workers_s = NULL;
    long long users = -1, cases = -1, rseed = 0, workers = 0;
    for (int i = seed ? 2 : 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!seed && strcmp(f, "--check") == 0) { check = true; continue; }
        if (!seed && strcmp(f, "--listen") == 0 && v) listen = v;
        else if (strcmp(f, "--db") == 0 && v) db = v;
        else if ((strcmp(f, "-c") == 0 || strcmp(f, "--config") == 0) && v) config = v;
        else if (!seed && strcmp(f, "--instance-id") == 0 && v) id = v;
        else if (!seed && strcmp(f, "--version") == 0 && v) version = v;
        else if (!seed && strcmp(f, "--workers") == 0) { if (num(f, v, 0, &workers)) return EXIT_USAGE; workers_s = v; }
        else if (seed && strcmp(f, "--users") == 0) { if (num(f, v, 1, &users)) return EXIT_USAGE; }
        else if (seed && strcmp(f, "--cases") == 0) { if (num(f, v, 0, &cases)) return EXIT_USAGE; }
        else if (seed && strcmp(f, "--seed") == 0) { if (num(f, v, 0, &rseed)) return EXIT_USAGE; }
        else return cmd_usage_error(usage, "app", "unknown or incomplete option '%s'", f);
        i++;
    }
    if (seed && (users < 1 || cases < 0))
        return cmd_usage_error(usage, "app", "seed needs --users N and --cases N");
    char err[1024];
    app_config cfg;
    const char *sets[] = { "app.listen", listen, "app.store.url", db, "app.workers", workers_s,
                           "app.instance_id", id, NULL, NULL };
    if (app_config_load(config, sets, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "hscale app: %s\n", err);
        return EXIT_USAGE;
    }
    int rc = 0;
    if (seed) {
        if (app_seed_store(&cfg.store, users, cases, (uint64_t)rseed, err, sizeof err) != 0) {
            fprintf(stderr, "hscale app seed: %s\n", err);
            rc = 1;
        }
    } else if (check) {
        /* Credentials print as (redacted): app_config_json. */
        buf b;
        buf_init(&b);
        app_config_json(&cfg, &b);
        fwrite(buf_head(&b), 1, b.len, stdout);
        fputc('\n', stdout);
        buf_free(&b);
    } else {
        app_opts o = { .version = version, .config = &cfg, .config_path = config };
        if (app_run(&o, err, sizeof err) != 0) {
            fprintf(stderr, "hscale app: %s\n", err);
            rc = 1;
        }
    }
    app_config_free(&cfg);
    return rc;
}
