/* bench_plan.c -- capacity planning: how many instances a load needs, and
 * the database connections they open.
 *
 * Two ways in, as the seeds do it: a figure someone measured by hand
 * (SurgiCase's "~100 concurrent users per instance", or req/s per instance),
 * or a `hscale bench --json` report of one instance. A report is only a
 * capacity if it was taken within the SLO: when its p95 (or p99) is over,
 * the instance was past its knee, so the good req/s are scaled down by
 * SLO/measured -- a deliberately pessimistic estimate, flagged as such, that
 * says "re-run the bench with fewer connections" rather than guessing a
 * curve from one point.
 *
 * Counts are whole instances rounded up, with a small tolerance so that an
 * exact quotient such as 500 / 100 stays 5 despite binary fractions (1 - 0.3
 * is not 0.7 in a double). Everything else here is formatting. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"

/* The MedEase capacity table's rows. */
static const double table_users[BENCH_CAP_ROWS] = { 10000, 50000, 100000, 500000 };

void bench_cap_defaults(bench_cap_in *in)
{
    memset(in, 0, sizeof *in);
    in->users = -1;
    in->rps = -1;
    in->rps_per_user = 0.05;       /* MedEase: 500 req/s per 10k users */
    in->headroom_pct = 30;
    in->min_instances = 2;         /* SurgiCase's ASG minimum */
    in->pool_size = 10;            /* store.pool.size */
    in->pool_overflow = 20;        /* store.pool.overflow */
    in->db_max_connections = 100;  /* PostgreSQL's default max_connections */
}

uint64_t bench_cap_instances(double load, double per_instance, double headroom_pct,
                             uint32_t min_instances)
{
    if (!(per_instance > 0) || !(headroom_pct < 100) || !isfinite(load))
        return UINT64_MAX;
    double q = load > 0 ? load * 100.0 / (per_instance * (100.0 - headroom_pct)) : 0;
    if (q > 1e15)
        return UINT64_MAX;
    uint64_t n = (uint64_t)ceil(q * (1.0 - 1e-12));
    return n < min_instances ? min_instances : n;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* ---- reading a bench report ---- */

static int report_num(json_t *obj, const char *path, const char *key, const char *field,
                      double *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v)) {
        snprintf(err, errlen, "%s: %s: expected a number (is this a `hscale bench --json` report?)",
                 path, field);
        return -1;
    }
    *out = json_number_value(v);
    if (!isfinite(*out) || *out < 0) {
        snprintf(err, errlen, "%s: %s: expected a number >= 0, got %g", path, field, *out);
        return -1;
    }
    return 0;
}

int bench_cap_read_report(const char *path, double slo_p95_ms, double slo_p99_ms,
                          bench_cap_report *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->slo_p95_ms = slo_p95_ms;
    out->slo_p99_ms = slo_p99_ms;
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        snprintf(err, errlen, "%s: line %d: %s", path, je.line, je.text);
        return -1;
    }
    int rc = -1;
    json_t *tool = json_object_get(root, "tool");
    json_t *total = json_object_get(root, "total");
    json_t *lat = json_object_get(total, "latency_ms");
    double count = 0;
    if (!json_is_object(root) || (tool && !(json_is_string(tool) &&
                                            !strcmp(json_string_value(tool), "hscale bench")))) {
        snprintf(err, errlen, "%s: tool: expected \"hscale bench\" (not a `hscale bench --json` report)",
                 path);
    } else if (!json_is_object(total)) {
        snprintf(err, errlen, "%s: total: expected an object (is this a `hscale bench --json` report?)",
                 path);
    } else if (!json_is_object(lat)) {
        snprintf(err, errlen, "%s: total.latency_ms: expected an object", path);
    } else if (report_num(total, path, "rps", "total.rps", &out->rps, err, errlen) ||
               report_num(total, path, "error_rate", "total.error_rate", &out->error_rate, err,
                          errlen) ||
               report_num(total, path, "count", "total.count", &count, err, errlen) ||
               report_num(lat, path, "p95", "total.latency_ms.p95", &out->p95_ms, err, errlen) ||
               report_num(lat, path, "p99", "total.latency_ms.p99", &out->p99_ms, err, errlen)) {
        /* err filled */
    } else if (out->error_rate > 1) {
        snprintf(err, errlen, "%s: total.error_rate: expected a fraction in [0, 1], got %g", path,
                 out->error_rate);
    } else {
        out->count = (uint64_t)count;
        double good = out->rps * (1 - out->error_rate);
        if (out->count == 0 || !(good > 0)) {
            snprintf(err, errlen, "%s: total: no request succeeded (count %llu, error_rate %g): "
                     "nothing to plan from", path, (unsigned long long)out->count,
                     out->error_rate);
        } else {
            double f = 1;
            if (slo_p95_ms > 0 && out->p95_ms > slo_p95_ms)
                f = fmin(f, slo_p95_ms / out->p95_ms);
            if (slo_p99_ms > 0 && out->p99_ms > slo_p99_ms)
                f = fmin(f, slo_p99_ms / out->p99_ms);
            out->met_slo = f >= 1;
            out->capacity_rps = good * f;
            rc = 0;
        }
    }
    json_decref(root);
    return rc;
}

/* ---- planning ---- */

static bench_cap_row plan_row(const bench_cap_in *in, const bench_cap_out *o, double users,
                              double rps)
{
    bench_cap_row r = { .users = users, .rps = rps };
    /* Stay in the unit the capacity was given in, so SurgiCase's figures
     * give exactly ceil(users / users_per_instance). */
    if (in->users_per_instance > 0 && users >= 0)
        r.instances = bench_cap_instances(users, in->users_per_instance, in->headroom_pct,
                                          in->min_instances);
    else
        r.instances = bench_cap_instances(rps, o->per_instance_rps, in->headroom_pct,
                                          in->min_instances);
    r.conns_steady = sat_mul(r.instances, in->pool_size);
    r.conns_peak = sat_mul(r.instances, (uint64_t)in->pool_size + in->pool_overflow);
    return r;
}

int bench_cap_plan(const bench_cap_in *in, bench_cap_out *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    bool by_users = in->users_per_instance > 0, by_rps = in->rps_per_instance > 0;
    if (by_users && by_rps) {
        snprintf(err, errlen, "--users-per-instance cannot be combined with %s: give one capacity",
                 in->report ? "--from-report" : "--rps-per-instance");
        return -1;
    }
    if (!by_users && !by_rps) {
        snprintf(err, errlen, "one instance's capacity is needed: --users-per-instance K, "
                 "--rps-per-instance X or --from-report FILE");
        return -1;
    }
    if (!isfinite(in->users_per_instance) || !isfinite(in->rps_per_instance)) {
        snprintf(err, errlen, "%s must be a finite number",
                 by_users ? "--users-per-instance" : "--rps-per-instance");
        return -1;
    }
    if (in->users >= 0 && in->rps >= 0) {
        snprintf(err, errlen, "--users and --rps cannot be combined: give one target load");
        return -1;
    }
    if (!(in->headroom_pct >= 0 && in->headroom_pct <= 95)) {
        snprintf(err, errlen, "--headroom must be between 0 and 95 (percent), got %g",
                 in->headroom_pct);
        return -1;
    }
    if (!(in->rps_per_user > 0) || !isfinite(in->rps_per_user)) {
        snprintf(err, errlen, "--rps-per-user must be a number > 0, got %g", in->rps_per_user);
        return -1;
    }
    if (in->min_instances < 1) {
        snprintf(err, errlen, "--min must be at least 1");
        return -1;
    }
    if (in->pool_size < 1) {
        snprintf(err, errlen, "--pool-size must be at least 1");
        return -1;
    }
    out->per_instance_rps = by_users ? in->users_per_instance * in->rps_per_user
                                     : in->rps_per_instance;
    out->per_instance_users = by_users ? in->users_per_instance
                                       : in->rps_per_instance / in->rps_per_user;
    out->usable_rps = out->per_instance_rps * (100 - in->headroom_pct) / 100;
    for (size_t i = 0; i < BENCH_CAP_ROWS; i++)
        out->table[i] = plan_row(in, out, table_users[i], table_users[i] * in->rps_per_user);
    if (in->users < 0 && in->rps < 0)
        return 0;
    double users = in->users >= 0 ? in->users : in->rps / in->rps_per_user;
    double rps = in->rps >= 0 ? in->rps : in->users * in->rps_per_user;
    if (!isfinite(users) || !isfinite(rps)) {
        snprintf(err, errlen, "%s must be a finite number", in->users >= 0 ? "--users" : "--rps");
        return -1;
    }
    out->has_target = true;
    /* Rows computed from the target's own unit: --rps with a users
     * capacity goes through req/s, --users through users. */
    out->target = plan_row(in, out, in->users, rps);
    out->target.users = users;
    if ((double)out->target.instances > BENCH_CAP_MAX_INSTANCES) {
        snprintf(err, errlen, "%s %g needs more than %.0f instances: check the capacity figure",
                 in->users >= 0 ? "--users" : "--rps", in->users >= 0 ? in->users : in->rps,
                 BENCH_CAP_MAX_INSTANCES);
        return -1;
    }
    bench_cap_in raw = *in;
    raw.min_instances = 0;
    out->raw_instances = plan_row(&raw, out, in->users, rps).instances;
    out->conns_over_limit = in->db_max_connections > 0 &&
                            out->target.conns_peak > in->db_max_connections;
    return 0;
}

/* ---- output ---- */

static const char *cap_source(const bench_cap_in *in)
{
    return in->report ? "report" : in->users_per_instance > 0 ? "users_per_instance"
                                                              : "rps_per_instance";
}

static void print_count(FILE *f, uint64_t n)
{
    if (n == UINT64_MAX)
        fputs("too many", f);
    else
        fprintf(f, "%llu", (unsigned long long)n);
}

void bench_cap_print_text(FILE *f, const bench_cap_in *in, const bench_cap_out *o)
{
    const bench_cap_report *r = in->report;
    if (r) {
        fprintf(f, "bench report: %.1f req/s, %.2f %% errors, p95 %.1f ms, p99 %.1f ms over "
                "%llu requests\n", r->rps, r->error_rate * 100, r->p95_ms, r->p99_ms,
                (unsigned long long)r->count);
        if (r->met_slo)
            fprintf(f, "  within the SLO (p95 <= %g ms", r->slo_p95_ms);
        else
            fprintf(f, "  OVER the SLO (p95 <= %g ms", r->slo_p95_ms);
        if (r->slo_p99_ms > 0)
            fprintf(f, ", p99 <= %g ms", r->slo_p99_ms);
        fputs(r->met_slo ? "): capacity is the good req/s measured, a lower bound\n"
                         : "): capacity scaled down by SLO/measured, an estimate;\n"
                           "  re-run `hscale bench` with fewer connections to measure it\n", f);
        if (r->error_rate > 0.01)
            fprintf(f, "  warning: %.1f %% of the requests failed; fix those before planning\n",
                    r->error_rate * 100);
    }
    fprintf(f, "one instance:      %.1f req/s = %.0f users at %g req/s per user (%s)\n",
            o->per_instance_rps, o->per_instance_users, in->rps_per_user,
            r ? "measured" : "given");
    fprintf(f, "headroom:          %g %% (each instance runs at <= %g %% of capacity: %.1f req/s)\n",
            in->headroom_pct, 100 - in->headroom_pct, o->usable_rps);
    if (o->has_target) {
        const bench_cap_row *t = &o->target;
        fprintf(f, "target:            %.0f users = %.1f req/s\n", t->users, t->rps);
        fputs("instances needed:  ", f);
        print_count(f, t->instances);
        fputs(" (load / usable capacity = ", f);
        print_count(f, o->raw_instances);
        fprintf(f, ", minimum %u)\n", in->min_instances);
        fputs("db connections:    ", f);
        print_count(f, t->conns_steady);
        fputs(" steady, ", f);
        print_count(f, t->conns_peak);
        fprintf(f, " peak per database node (pool %u + overflow %u per instance)\n",
                in->pool_size, in->pool_overflow);
        if (o->conns_over_limit)
            fprintf(f, "  warning: peak exceeds the database's max_connections %u: lower "
                    "--pool-overflow, add a connection pooler, or shard\n", in->db_max_connections);
    }
    fprintf(f, "\n%10s %10s %10s %18s\n", "users", "req/s", "instances", "db conns (steady/peak)");
    for (size_t i = 0; i < BENCH_CAP_ROWS; i++) {
        const bench_cap_row *t = &o->table[i];
        char a[24], b[24], c[24];
        snprintf(a, sizeof a, "%llu", (unsigned long long)t->instances);
        snprintf(b, sizeof b, "%llu", (unsigned long long)t->conns_steady);
        snprintf(c, sizeof c, "%llu", (unsigned long long)t->conns_peak);
        fprintf(f, "%9.0fk %10.0f %10s %10s/%s\n", t->users / 1000, t->rps,
                t->instances == UINT64_MAX ? "too many" : a, b, c);
    }
}

static json_t *row_json(const bench_cap_row *r)
{
    return json_pack("{s:f, s:f, s:I, s:I, s:I}", "users", r->users, "rps", r->rps,
                     "instances", (json_int_t)(r->instances > INT64_MAX ? INT64_MAX : r->instances),
                     "db_connections_steady",
                     (json_int_t)(r->conns_steady > INT64_MAX ? INT64_MAX : r->conns_steady),
                     "db_connections_peak",
                     (json_int_t)(r->conns_peak > INT64_MAX ? INT64_MAX : r->conns_peak));
}

int bench_cap_print_json(FILE *f, const bench_cap_in *in, const bench_cap_out *o)
{
    const bench_cap_report *r = in->report;
    json_t *rep = r ? json_pack("{s:f, s:f, s:f, s:f, s:I, s:f, s:f, s:b, s:f}", "rps", r->rps,
                                "error_rate", r->error_rate, "p95_ms", r->p95_ms, "p99_ms",
                                r->p99_ms, "count", (json_int_t)r->count, "slo_p95_ms",
                                r->slo_p95_ms, "slo_p99_ms", r->slo_p99_ms, "met_slo", r->met_slo,
                                "capacity_rps", r->capacity_rps)
                    : json_null();
    json_t *table = json_array();
    for (size_t i = 0; i < BENCH_CAP_ROWS; i++)
        json_array_append_new(table, row_json(&o->table[i]));
    json_t *target = json_null();
    if (o->has_target) {
        target = row_json(&o->target);
        json_object_set_new(target, "raw_instances", json_integer((json_int_t)o->raw_instances));
        json_object_set_new(target, "db_connections_over_limit",
                            json_boolean(o->conns_over_limit));
    }
    json_t *root = json_pack(
        "{s:s, s:{s:s, s:f, s:f, s:f, s:o}, s:f, s:i, s:f, s:{s:i, s:i, s:i}, s:o, s:o}",
        "tool", "hscale plan",
        "capacity", "source", cap_source(in), "per_instance_rps", o->per_instance_rps,
        "per_instance_users", o->per_instance_users, "usable_rps", o->usable_rps, "report", rep,
        "headroom_pct", in->headroom_pct, "min_instances", (int)in->min_instances,
        "rps_per_user", in->rps_per_user,
        "pool", "size", (int)in->pool_size, "overflow", (int)in->pool_overflow,
        "db_max_connections", (int)in->db_max_connections,
        "target", target, "table", table);
    if (!root)
        return -1;
    int rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    fputc('\n', f);
    json_decref(root);
    return rc;
}
