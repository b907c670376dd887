/* bench_report.c -- the final report of a run: a table per request name on
 * the terminal, and the same figures as JSON (--json) or CSV (--csv).
 *
 * Latencies are reported in milliseconds everywhere; the error rate counts
 * transport errors and HTTP statuses >= 400 alike (as Locust and k6 do). The
 * JSON is meant for `hscale plan` and CI: its keys are stable.
 *
 * Connections opened are reported for every run; https runs add the
 * handshakes: full, resumed (the server took the session offered), failed,
 * the handshake time, and the protocol, cipher and ALPN the server chose. */
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include "bench/bench.h"

int bench_result_find(const bench_result *res, const char *name)
{
    for (size_t i = 0; i < res->nnames; i++)
        if (!strcmp(res->names[i], name))
            return (int)i;
    return -1;
}

static void row(FILE *out, const char *name, const bench_stats *s, double el)
{
    bench_summary m;
    bench_summarize(s, el, &m);
    fprintf(out, "%-24.24s %9llu %7llu %9.1f %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f\n", name,
            (unsigned long long)m.count, (unsigned long long)m.failures, m.rps, m.min_ms,
            m.p50_ms, m.p90_ms, m.p95_ms, m.p99_ms, m.p999_ms, m.max_ms);
}

void bench_report_text(FILE *out, const bench_plan *p, const bench_result *res,
                       const bench_threshold *th, size_t nth, const bool *th_ok,
                       const double *th_val)
{
    const bench_stats *t = &res->total;
    fprintf(out, "\n%s model, %u connections, %u threads, %.1fs%s\n",
            p->open_model ? "open" : "closed", p->conns, p->threads, res->elapsed_s,
            res->interrupted ? " (interrupted)" : "");
    fprintf(out, "%-24s %9s %7s %9s %8s %8s %8s %8s %8s %8s %8s\n", "name (ms)", "count", "fail",
            "req/s", "min", "p50", "p90", "p95", "p99", "p99.9", "max");
    for (size_t i = 0; i < res->nnames; i++)
        row(out, res->names[i], &res->per[i], res->elapsed_s);
    if (res->nnames > 1)
        row(out, "TOTAL", t, res->elapsed_s);
    fprintf(out, "status:");
    bool any = false;
    for (int c = 0; c < 600; c++) {
        if (t->status[c]) {
            fprintf(out, " %d=%llu", c, (unsigned long long)t->status[c]);
            any = true;
        }
    }
    fprintf(out, "%s\nerrors:", any ? "" : " none");
    for (int k = 0; k < BENCH_ERR_N; k++)
        fprintf(out, " %s=%llu", bench_err_name(k), (unsigned long long)t->errors[k]);
    double rate = t->count ? 100.0 * (double)t->failures / (double)t->count : 0;
    fprintf(out, " (%.2f%% failed)\n", rate);
    const bench_conn_stats *cs = &res->conn;
    fprintf(out, "connections: %llu opened%s", (unsigned long long)cs->connects,
            p->new_conn ? " (a new one per request)" : "");
    if (cs->stale_resends)
        fprintf(out, "; %llu requests sent again after a kept-alive connection closed unanswered",
                (unsigned long long)cs->stale_resends);
    fputc('\n', out);
    if (p->tls.enabled) {
        uint64_t hs = cs->hs_full + cs->hs_resumed;
        fprintf(out, "tls: %s %s, alpn %s%s\n", cs->tls_version[0] ? cs->tls_version : "-",
                cs->tls_cipher[0] ? cs->tls_cipher : "-", cs->tls_alpn[0] ? cs->tls_alpn : "-",
                p->tls.insecure ? ", certificate NOT verified (--insecure)" : ", verified");
        fprintf(out, "handshakes: %llu (%.1f/s): full %llu, resumed %llu (%.1f%%), failed %llu;"
                " time p50 %.2fms p99 %.2fms\n", (unsigned long long)hs,
                res->elapsed_s > 0 ? (double)hs / res->elapsed_s : 0.0,
                (unsigned long long)cs->hs_full, (unsigned long long)cs->hs_resumed,
                hs ? 100.0 * (double)cs->hs_resumed / (double)hs : 0.0,
                (unsigned long long)cs->hs_failed,
                (double)hist_quantile(&cs->hs_lat, 0.5) / 1e3,
                (double)hist_quantile(&cs->hs_lat, 0.99) / 1e3);
    }
    if (res->tls_error[0])
        fprintf(out, "%s: %s\n", res->aborted ? "stopped" : "first tls error", res->tls_error);
    if (p->open_model && res->behind)
        fprintf(out, "behind schedule: %llu requests were due but never sent (raise -c)\n",
                (unsigned long long)res->behind);
    for (size_t i = 0; i < nth; i++) {
        bool lat = th[i].metric <= BENCH_M_MAX;
        fprintf(out, "%s %s  %s  (value %.*f%s)\n", i == 0 ? "thresholds:\n " : " ",
                th_ok[i] ? "ok  " : "FAIL", th[i].expr,
                th[i].metric == BENCH_M_ERRORS ? 3 : 2,
                th[i].metric == BENCH_M_ERRORS ? th_val[i] * 100 : th_val[i],
                lat ? "ms" : th[i].metric == BENCH_M_ERRORS ? "%" : " req/s");
    }
}

static json_t *stats_json(const char *name, const bench_stats *s, double el)
{
    bench_summary m;
    bench_summarize(s, el, &m);
    json_t *status = json_object();
    for (int c = 0; c < 600; c++) {
        if (s->status[c]) {
            char k[16];
            snprintf(k, sizeof k, "%d", c);
            json_object_set_new(status, k, json_integer((json_int_t)s->status[c]));
        }
    }
    json_t *errs = json_object();
    for (int k = 0; k < BENCH_ERR_N; k++)
        json_object_set_new(errs, bench_err_name(k), json_integer((json_int_t)s->errors[k]));
    return json_pack("{s:s, s:I, s:I, s:f, s:f, s:I, s:{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}, s:o, s:o}",
                     "name", name, "count", (json_int_t)m.count, "failures", (json_int_t)m.failures,
                     "rps", m.rps, "error_rate", m.err_rate, "bytes_in", (json_int_t)s->bytes_in,
                     "latency_ms", "min", m.min_ms, "mean", m.mean_ms, "p50", m.p50_ms,
                     "p90", m.p90_ms, "p95", m.p95_ms, "p99", m.p99_ms, "p99.9", m.p999_ms,
                     "max", m.max_ms, "status", status, "errors", errs);
}

int bench_report_json(const char *path, const bench_plan *p, const bench_result *res,
                      const bench_threshold *th, size_t nth, const bool *th_ok,
                      const double *th_val, char *err, size_t errlen)
{
    json_t *reqs = json_array(), *ths = json_array(), *stages = json_array();
    for (size_t i = 0; i < res->nnames; i++)
        json_array_append_new(reqs, stats_json(res->names[i], &res->per[i], res->elapsed_s));
    for (size_t i = 0; i < nth; i++)
        json_array_append_new(ths, json_pack("{s:s, s:f, s:b}", "expr", th[i].expr,
                                             "value", th_val[i], "ok", th_ok[i]));
    for (size_t i = 0; i < p->nstages; i++)
        if (p->stages[i].dur_us)
            json_array_append_new(stages, json_pack("{s:f, s:f}", "seconds",
                                                    (double)p->stages[i].dur_us / 1e6,
                                                    "target", p->stages[i].target));
    const bench_conn_stats *cs = &res->conn;
    json_t *tls = json_null();
    if (p->tls.enabled) {
        uint64_t hs = cs->hs_full + cs->hs_resumed;
        tls = json_pack("{s:s, s:s, s:s, s:b, s:b, s:I, s:f, s:I, s:I, s:I, s:f, s:{s:f,s:f,s:f},"
                        " s:s, s:b}",
                        "version", cs->tls_version, "cipher", cs->tls_cipher, "alpn", cs->tls_alpn,
                        "verified", !p->tls.insecure, "resume", p->tls.resume,
                        "handshakes", (json_int_t)hs,
                        "handshakes_per_s", res->elapsed_s > 0 ? (double)hs / res->elapsed_s : 0.0,
                        "full", (json_int_t)cs->hs_full, "resumed", (json_int_t)cs->hs_resumed,
                        "failed", (json_int_t)cs->hs_failed,
                        "resumed_ratio", hs ? (double)cs->hs_resumed / (double)hs : 0.0,
                        "handshake_ms", "p50", (double)hist_quantile(&cs->hs_lat, 0.5) / 1e3,
                        "p99", (double)hist_quantile(&cs->hs_lat, 0.99) / 1e3,
                        "max", (double)cs->hs_lat.max_us / 1e3,
                        "error", res->tls_error, "aborted", res->aborted);
    }
    json_t *root = json_pack("{s:s, s:s, s:i, s:i, s:f, s:b, s:I, s:o, s:o, s:o, s:o, s:b, s:I, s:I, s:o}",
                             "tool", "hscale bench", "model", p->open_model ? "open" : "closed",
                             "connections", (int)p->conns, "threads", (int)p->threads,
                             "elapsed_s", res->elapsed_s, "interrupted", res->interrupted,
                             "behind_schedule", (json_int_t)res->behind, "stages", stages,
                             "requests", reqs,
                             "total", stats_json("TOTAL", &res->total, res->elapsed_s),
                             "thresholds", ths, "new_conn", p->new_conn,
                             "connections_opened", (json_int_t)cs->connects,
                             "stale_resends", (json_int_t)cs->stale_resends, "tls", tls);
    int rc = 0;
    if (!root || json_dump_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, root ? strerror(errno) : "out of memory");
        rc = -1;
    }
    json_decref(root);
    return rc;
}

int bench_report_csv(const char *prefix, const bench_result *res, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s_stats.csv", prefix);
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "name,count,failures,rps,error_rate,min_ms,mean_ms,p50_ms,p90_ms,p95_ms,p99_ms,p99.9_ms,max_ms");
    for (int k = 0; k < BENCH_ERR_N; k++)
        fprintf(f, ",%s", bench_err_name(k));
    fputc('\n', f);
    for (size_t i = 0; i <= res->nnames; i++) {
        const bench_stats *s = i < res->nnames ? &res->per[i] : &res->total;
        const char *name = i < res->nnames ? res->names[i] : "TOTAL";
        bench_summary m;
        bench_summarize(s, res->elapsed_s, &m);
        fputc('"', f);
        for (const char *c = name; *c; c++) {   /* CSV quoting: double the quotes */
            if (*c == '"')
                fputc('"', f);
            fputc(*c, f);
        }
        fprintf(f, "\",%llu,%llu,%.3f,%.6f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f",
                (unsigned long long)m.count, (unsigned long long)m.failures, m.rps, m.err_rate,
                m.min_ms, m.mean_ms, m.p50_ms, m.p90_ms, m.p95_ms, m.p99_ms, m.p999_ms, m.max_ms);
        for (int k = 0; k < BENCH_ERR_N; k++)
            fprintf(f, ",%llu", (unsigned long long)s->errors[k]);
        fputc('\n', f);
    }
    snprintf(path, sizeof path, "%s_status.csv", prefix);
    FILE *g = fopen(path, "w");
    if (!g) {
        fclose(f);
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(g, "status,count\n");
    for (int c = 0; c < 600; c++)
        if (res->total.status[c])
            fprintf(g, "%d,%llu\n", c, (unsigned long long)res->total.status[c]);
    int bad = ferror(f) | ferror(g);
    bad |= fclose(f) | fclose(g);
    if (bad) {
        snprintf(err, errlen, "cannot write %s_*.csv", prefix);
        return -1;
    }
    return 0;
}
