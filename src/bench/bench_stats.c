/* bench_stats.c -- counting a run and judging it: per-name statistics,
 * their summary in report units, and SLO thresholds.
 *
 * Recording is a few increments and one hist_record: workers call it once
 * per response. A transport error has no latency (the request never
 * completed) and counts as a request and a failure, as Locust and k6 count
 * them; an HTTP status >= 400 is a completed request that failed.
 *
 * Threshold grammar: [NAME:]METRIC OP VALUE[UNIT]
 *   METRIC  p50 p90 p95 p99 p99.9 min mean avg max (also k6's p(95)),
 *           errors (error rate), rps (requests/s)
 *   OP      < <= > >=
 *   UNIT    us ms s for latencies (bare number: ms, as k6);
 *           % for errors (bare number: a fraction, 0.01 == 1%) */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"

static const char *const err_names[BENCH_ERR_N] = {
    "connect", "reset", "timeout", "protocol", "tls", "http_4xx", "http_5xx",
};

const char *bench_err_name(bench_err_kind k)
{
    return (unsigned)k < BENCH_ERR_N ? err_names[k] : "?";
}

void bench_stats_init(bench_stats *s)
{
    memset(s, 0, sizeof *s);
    hist_init(&s->lat);
}

void bench_stats_merge(bench_stats *dst, const bench_stats *src)
{
    dst->count += src->count;
    dst->failures += src->failures;
    dst->bytes_in += src->bytes_in;
    for (int i = 0; i < BENCH_ERR_N; i++)
        dst->errors[i] += src->errors[i];
    for (int i = 0; i < 600; i++)
        dst->status[i] += src->status[i];
    hist_merge(&dst->lat, &src->lat);
}

void bench_conn_stats_init(bench_conn_stats *s)
{
    memset(s, 0, sizeof *s);
    hist_init(&s->hs_lat);
}

void bench_conn_stats_merge(bench_conn_stats *dst, const bench_conn_stats *src)
{
    dst->connects += src->connects;
    dst->stale_resends += src->stale_resends;
    dst->hs_full += src->hs_full;
    dst->hs_resumed += src->hs_resumed;
    dst->hs_failed += src->hs_failed;
    hist_merge(&dst->hs_lat, &src->hs_lat);
    if (!dst->tls_version[0] && src->tls_version[0]) {   /* every thread uses one context */
        memcpy(dst->tls_version, src->tls_version, sizeof dst->tls_version);
        memcpy(dst->tls_cipher, src->tls_cipher, sizeof dst->tls_cipher);
        memcpy(dst->tls_alpn, src->tls_alpn, sizeof dst->tls_alpn);
    }
}

void bench_stats_response(bench_stats *s, int status, uint64_t latency_us)
{
    s->count++;
    if (status >= 0 && status < 600)
        s->status[status]++;
    if (status >= 500) {
        s->failures++;
        s->errors[BENCH_ERR_HTTP5XX]++;
    } else if (status >= 400) {
        s->failures++;
        s->errors[BENCH_ERR_HTTP4XX]++;
    }
    hist_record(&s->lat, latency_us ? latency_us : 1);
}

void bench_stats_error(bench_stats *s, bench_err_kind k)
{
    s->count++;
    s->failures++;
    s->errors[k]++;
}

void bench_summarize(const bench_stats *s, double elapsed_s, bench_summary *o)
{
    memset(o, 0, sizeof *o);
    o->count = s->count;
    o->failures = s->failures;
    o->rps = elapsed_s > 0 ? (double)s->count / elapsed_s : 0;
    o->err_rate = s->count ? (double)s->failures / (double)s->count : 0;
    const hist *h = &s->lat;
    if (h->count == 0)
        return;
    o->min_ms = (double)h->min_us / 1e3;
    o->max_ms = (double)h->max_us / 1e3;
    o->mean_ms = hist_mean(h) / 1e3;
    o->p50_ms = (double)hist_quantile(h, 0.50) / 1e3;
    o->p90_ms = (double)hist_quantile(h, 0.90) / 1e3;
    o->p95_ms = (double)hist_quantile(h, 0.95) / 1e3;
    o->p99_ms = (double)hist_quantile(h, 0.99) / 1e3;
    o->p999_ms = (double)hist_quantile(h, 0.999) / 1e3;
}

/* ---- thresholds ---- */

static const struct { const char *name; bench_metric m; } metrics[] = {
    {"p99.9", BENCH_M_P999}, {"p(99.9)", BENCH_M_P999},
    {"p50", BENCH_M_P50}, {"p(50)", BENCH_M_P50}, {"med", BENCH_M_P50},
    {"p90", BENCH_M_P90}, {"p(90)", BENCH_M_P90},
    {"p95", BENCH_M_P95}, {"p(95)", BENCH_M_P95},
    {"p99", BENCH_M_P99}, {"p(99)", BENCH_M_P99},
    {"min", BENCH_M_MIN}, {"mean", BENCH_M_MEAN}, {"avg", BENCH_M_MEAN},
    {"max", BENCH_M_MAX}, {"errors", BENCH_M_ERRORS}, {"rate", BENCH_M_ERRORS},
    {"rps", BENCH_M_RPS},
};

static bool is_latency(bench_metric m) { return m <= BENCH_M_MAX; }

int bench_threshold_parse(bench_threshold *t, const char *expr, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    const char *ops = strpbrk(expr, "<>");
    if (!ops) {
        snprintf(err, errlen, "threshold '%s': expected METRIC<VALUE, e.g. p95<200ms or errors<1%%", expr);
        return -1;
    }
    /* Split "name:metric" on the last ':' before the operator. */
    const char *lhs = expr, *colon = NULL;
    for (const char *p = expr; p < ops; p++)
        if (*p == ':')
            colon = p;
    const char *mstart = colon ? colon + 1 : lhs;
    size_t mlen = (size_t)(ops - mstart);
    while (mlen && mstart[mlen - 1] == ' ')
        mlen--;
    while (mlen && *mstart == ' ')
        mstart++, mlen--;
    size_t i = 0, nm = sizeof metrics / sizeof metrics[0];
    while (i < nm && (strlen(metrics[i].name) != mlen || memcmp(metrics[i].name, mstart, mlen)))
        i++;
    if (i == nm) {
        snprintf(err, errlen, "threshold '%s': unknown metric '%.*s' (expected p50, p90, p95, p99, "
                 "p99.9, min, mean, max, errors or rps)", expr, (int)mlen, mstart);
        return -1;
    }
    t->metric = metrics[i].m;
    const char *v = ops + 1;
    bool eq = *v == '=';
    if (eq)
        v++;
    t->op = *ops == '<' ? (eq ? BENCH_OP_LE : BENCH_OP_LT) : (eq ? BENCH_OP_GE : BENCH_OP_GT);
    while (*v == ' ')
        v++;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || !(x >= 0) || isinf(x)) {
        snprintf(err, errlen, "threshold '%s': expected a number >= 0 after the operator", expr);
        return -1;
    }
    const char *unit = end;
    if (is_latency(t->metric)) {
        if (!*unit || !strcmp(unit, "ms"))
            ;
        else if (!strcmp(unit, "s"))
            x *= 1e3;
        else if (!strcmp(unit, "us"))
            x /= 1e3;
        else {
            snprintf(err, errlen, "threshold '%s': unknown unit '%s' (expected us, ms or s)", expr, unit);
            return -1;
        }
    } else if (t->metric == BENCH_M_ERRORS) {
        if (!strcmp(unit, "%"))
            x /= 100;
        else if (*unit || x > 1) {
            snprintf(err, errlen, "threshold '%s': error rate is a percentage (1%%) or a fraction (0.01)", expr);
            return -1;
        }
    } else if (*unit && strcmp(unit, "/s")) {
        snprintf(err, errlen, "threshold '%s': rps takes a plain number (requests per second)", expr);
        return -1;
    }
    t->limit = x;
    if (colon) {
        if (colon == lhs) {
            snprintf(err, errlen, "threshold '%s': empty request name before ':'", expr);
            return -1;
        }
        t->name = strndup(lhs, (size_t)(colon - lhs));
    }
    t->expr = strdup(expr);
    if (!t->expr || (colon && !t->name)) {
        bench_threshold_free(t);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

void bench_threshold_free(bench_threshold *t)
{
    free(t->expr);
    free(t->name);
    memset(t, 0, sizeof *t);
}

double bench_threshold_value(const bench_threshold *t, const bench_summary *s)
{
    switch (t->metric) {
    case BENCH_M_P50:    return s->p50_ms;
    case BENCH_M_P90:    return s->p90_ms;
    case BENCH_M_P95:    return s->p95_ms;
    case BENCH_M_P99:    return s->p99_ms;
    case BENCH_M_P999:   return s->p999_ms;
    case BENCH_M_MIN:    return s->min_ms;
    case BENCH_M_MEAN:   return s->mean_ms;
    case BENCH_M_MAX:    return s->max_ms;
    case BENCH_M_ERRORS: return s->err_rate;
    case BENCH_M_RPS:    return s->rps;
    }
    return 0;
}

bool bench_threshold_ok(const bench_threshold *t, double v)
{
    switch (t->op) {
    case BENCH_OP_LT: return v < t->limit;
    case BENCH_OP_LE: return v <= t->limit;
    case BENCH_OP_GT: return v > t->limit;
    case BENCH_OP_GE: return v >= t->limit;
    }
    return false;
}
