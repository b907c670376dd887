/* plan.c -- `hscale plan`: capacity planning from given figures or from a
 * `hscale bench --json` report of one instance. Only argument parsing lives
 * here; the arithmetic is bench_cap_* in src/bench/bench_plan.c. Every flag
 * is checked before anything is printed, and a bad one exits 2 naming it. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "cmd.h"

static const char usage[] =
    "usage: hscale plan CAPACITY [TARGET] [options]\n"
    "\n"
    "How many instances a load needs, with headroom, and the database\n"
    "connections they open. Prints a per-users table (10k 50k 100k 500k).\n"
    "\n"
    "capacity of one instance (one of):\n"
    "  --users-per-instance K  concurrent users one instance serves (SurgiCase:\n"
    "                          instances = ceil(users / K))\n"
    "  --rps-per-instance X    requests/s one instance serves within the SLO\n"
    "  --from-report FILE      a `hscale bench --json` report of one instance:\n"
    "                          its good req/s, if its p95 (p99) met the SLO;\n"
    "                          otherwise scaled down by SLO/measured\n"
    "  --slo-p95 MS            SLO for --from-report, default 500 (ms)\n"
    "  --slo-p99 MS            also check p99 (default: not checked)\n"
    "\n"
    "target load (optional, one of; 10k, 1.5M accepted):\n"
    "  --users N               concurrent users\n"
    "  --rps R                 requests/s\n"
    "\n"
    "options:\n"
    "  --rps-per-user F        converts users to req/s, default 0.05 (MedEase:\n"
    "                          500 req/s per 10k users)\n"
    "  --headroom P            percent of capacity kept spare, default 30\n"
    "  --min N                 fewest instances, default 2\n"
    "  --pool-size N           db connections per instance, default 10\n"
    "  --pool-overflow N       extra connections under load, default 20\n"
    "  --db-max-connections N  warn when the peak exceeds it, default 100 (0: off)\n"
    "  --json                  print the plan as JSON\n";

/* A number >= lo (> 0 when lo is 0 and positive is set) with an optional
 * k (10^3) or M (10^6) suffix. */
static int num_in(const char *flag, const char *v, double lo, bool positive, bool allow_suffix,
                  double *out)
{
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (v && allow_suffix && end != v && (*end == 'k' || *end == 'K' || *end == 'M') &&
        end[1] == '\0') {
        d *= *end == 'M' ? 1e6 : 1e3;
        end++;
    }
    if (!v || *v == '\0' || end == v || *end != '\0' || errno || !isfinite(d) || d < lo ||
        (positive && d <= 0))
        return cmd_usage_error(usage, "plan", "%s needs a number %s %g%s, got '%s'", flag,
                               positive ? ">" : ">=", lo,
                               allow_suffix ? " (10k and 1.5M accepted)" : "", v ? v : "");
    *out = d;
    return 0;
}

static int num(const char *flag, const char *v, double lo, bool allow_suffix, double *out)
{
    return num_in(flag, v, lo, false, allow_suffix, out);
}

static int pos(const char *flag, const char *v, bool allow_suffix, double *out)
{
    return num_in(flag, v, 0, true, allow_suffix, out);
}

static int count(const char *flag, const char *v, double lo, uint32_t *out)
{
    double d;
    if (num(flag, v, lo, false, &d))
        return EXIT_USAGE;
    if (d != floor(d) || d > 1e6)
        return cmd_usage_error(usage, "plan", "%s needs a whole number <= 1000000, got '%s'",
                               flag, v);
    *out = (uint32_t)d;
    return 0;
}

int cmd_plan(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    bench_cap_in in;
    bench_cap_defaults(&in);
    const char *report = NULL;
    double slo95 = 500, slo99 = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = NULL;
        char name[64];
        /* "--flag=value" and "--flag value" alike. */
        const char *eq = strchr(f, '=');
        if (eq && (size_t)(eq - f) < sizeof name && !strncmp(f, "--", 2)) {
            memcpy(name, f, (size_t)(eq - f));
            name[eq - f] = '\0';
            f = name;
            v = eq + 1;
        }
        if (!strcmp(f, "--json")) {
            if (v)
                return cmd_usage_error(usage, "plan", "--json takes no value");
            json = true;
            continue;
        }
        if (strncmp(f, "--", 2) != 0)
            return cmd_usage_error(usage, "plan", "unexpected argument '%s'", f);
        if (!v) {
            if (i + 1 >= argc)
                return cmd_usage_error(usage, "plan", "%s needs a value", f);
            v = argv[++i];
        }
        int rc = 0;
        if (!strcmp(f, "--users-per-instance")) rc = pos(f, v, true, &in.users_per_instance);
        else if (!strcmp(f, "--rps-per-instance")) rc = pos(f, v, true, &in.rps_per_instance);
        else if (!strcmp(f, "--from-report")) report = v;
        else if (!strcmp(f, "--slo-p95")) rc = pos(f, v, false, &slo95);
        else if (!strcmp(f, "--slo-p99")) rc = pos(f, v, false, &slo99);
        else if (!strcmp(f, "--users")) rc = num(f, v, 0, true, &in.users);
        else if (!strcmp(f, "--rps")) rc = num(f, v, 0, true, &in.rps);
        else if (!strcmp(f, "--rps-per-user")) rc = pos(f, v, false, &in.rps_per_user);
        else if (!strcmp(f, "--headroom")) rc = num(f, v, 0, false, &in.headroom_pct);
        else if (!strcmp(f, "--min")) rc = count(f, v, 1, &in.min_instances);
        else if (!strcmp(f, "--pool-size")) rc = count(f, v, 1, &in.pool_size);
        else if (!strcmp(f, "--pool-overflow")) rc = count(f, v, 0, &in.pool_overflow);
        else if (!strcmp(f, "--db-max-connections")) rc = count(f, v, 0, &in.db_max_connections);
        else return cmd_usage_error(usage, "plan", "unknown option '%s'", f);
        if (rc)
            return EXIT_USAGE;
    }
    if (report && (in.rps_per_instance > 0 || in.users_per_instance > 0))
        return cmd_usage_error(usage, "plan", "--from-report cannot be combined with %s",
                               in.rps_per_instance > 0 ? "--rps-per-instance"
                                                       : "--users-per-instance");
    char err[512];
    bench_cap_report rep;
    if (report) {
        if (bench_cap_read_report(report, slo95, slo99, &rep, err, sizeof err)) {
            fprintf(stderr, "hscale plan: --from-report %s\n", err);
            return EXIT_USAGE;
        }
        in.report = &rep;
        in.rps_per_instance = rep.capacity_rps;
    }
    bench_cap_out out;
    if (bench_cap_plan(&in, &out, err, sizeof err))
        return cmd_usage_error(usage, "plan", "%s", err);
    if (json)
        return bench_cap_print_json(stdout, &in, &out) ? 1 : 0;
    bench_cap_print_text(stdout, &in, &out);
    return 0;
}
