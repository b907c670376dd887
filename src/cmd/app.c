/* app.c -- `hscale app`: argument parsing for the reference API and its
 * seeder; the service itself lives in src/app. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "app/app.h"
#include "cmd.h"

static const char usage[] =
    "usage: hscale app --listen ADDR [--db URL] [--workers N]\n"
    "                  [--instance-id ID] [--version V]\n"
    "       hscale app seed --users N --cases N [--db URL] [--seed S]\n\n"
    "Serves the reference case-management API (GET /health, /health/ready,\n"
    "/metrics, /casefilter, /cases/{id}, /users/{id}) on the data layer.\n"
    "--db takes sqlite:PATH or a postgres:// URL (default: SQLite under\n"
    "./hscale-data). SIGTERM drains: /health/ready turns 503 at once.\n";

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
    bool seed = argc > 1 && strcmp(argv[1], "seed") == 0;
    app_opts o;
    memset(&o, 0, sizeof o);
    long long users = -1, cases = -1, rseed = 0, workers = 0;
    for (int i = seed ? 2 : 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!seed && strcmp(f, "--listen") == 0 && v) o.listen = v;
        else if (strcmp(f, "--db") == 0 && v) o.db = v;
        else if (!seed && strcmp(f, "--instance-id") == 0 && v) o.instance_id = v;
        else if (!seed && strcmp(f, "--version") == 0 && v) o.version = v;
        else if (!seed && strcmp(f, "--workers") == 0) { if (num(f, v, 0, &workers)) return EXIT_USAGE; }
        else if (seed && strcmp(f, "--users") == 0) { if (num(f, v, 1, &users)) return EXIT_USAGE; }
        else if (seed && strcmp(f, "--cases") == 0) { if (num(f, v, 0, &cases)) return EXIT_USAGE; }
        else if (seed && strcmp(f, "--seed") == 0) { if (num(f, v, 0, &rseed)) return EXIT_USAGE; }
        else if (strcmp(f, "-c") == 0 || strcmp(f, "--config") == 0) {
            fprintf(stderr, "hscale app: -c is not supported yet; use --db\n");
            return 1;
        }
        else return cmd_usage_error(usage, "app", "unknown or incomplete option '%s'", f);
        i++;
    }
    char err[512];
    if (seed) {
        if (users < 1 || cases < 0)
            return cmd_usage_error(usage, "app", "seed needs --users N and --cases N");
        if (app_seed(o.db, users, cases, (uint64_t)rseed, err, sizeof err) != 0) {
            fprintf(stderr, "hscale app seed: %s\n", err);
            return 1;
        }
        return 0;
    }
    if (!o.listen)
        return cmd_usage_error(usage, "app", "--listen ADDR is required");
    o.workers = (unsigned)workers;
    if (app_run(&o, err, sizeof err) != 0) {
        fprintf(stderr, "hscale app: %s\n", err);
        return 1;
    }
    return 0;
}
