/* ctl_deploy_judge.c -- the pure half of deploy decisions: per-pool or
 * per-backend numbers from two gateway scrapes, the verdict on a new
 * version, and the routes document that moves traffic between pools.
 *
 * A verdict is never "pass" on too little evidence: below min_requests
 * the new version is inconclusive and the caller holds. Comparisons with
 * the stable pool need the stable pool to have traffic too; without it
 * only the absolute thresholds apply. */
#include "control/ctl_deploy.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ctl_verdict_name(ctl_verdict v)
{
    return v == CTL_VERDICT_PASS ? "pass" : v == CTL_VERDICT_FAIL ? "fail" : "inconclusive";
}

static bool listed(const char *addr, const char *const *addrs, size_t n)
{
    if (!addrs)
        return true;
    for (size_t i = 0; i < n; i++)
        if (strcmp(addrs[i], addr) == 0)
            return true;
    return false;
}

void ctl_dep_stats_of(ctl_dep_stats *out, const ctl_gwm_scrape *prev, const ctl_gwm_scrape *cur,
                      const char *pool, const char *const *addrs, size_t naddrs)
{
    memset(out, 0, sizeof *out);
    ctl_lat sum;
    memset(&sum, 0, sizeof sum);
    for (size_t i = 0; cur && i < cur->n; i++) {
        const ctl_gwm_backend *b = &cur->b[i];
        if ((pool && strcmp(b->pool, pool) != 0) || !listed(b->backend, addrs, naddrs))
            continue;
        const ctl_gwm_backend *a = prev ? ctl_gwm_find(prev, b->pool, b->backend) : NULL;
        double req = b->requests - (a ? a->requests : 0);
        double err = b->errors - (a ? a->errors : 0);
        if (req < 0 || err < 0) {   /* a counter reset: count from zero */
            req = b->requests;
            err = b->errors;
        }
        out->requests += req;
        out->errors += err;
        ctl_lat d;
        if (a)
            ctl_lat_delta(&d, &b->lat, &a->lat);
        else
            d = b->lat;
        if (d.n > 0)
            ctl_lat_add(&sum, &d);
    }
    out->error_rate = out->requests > 0 ? out->errors * 100.0 / out->requests : NAN;
    double q = sum.n > 0 && sum.count > 0 ? ctl_lat_quantile(&sum, 0.95) : NAN;
    out->p95_ms = isnan(q) ? NAN : q * 1000.0;
}

ctl_verdict ctl_dep_judge(const ctl_dep_spec *s, const ctl_dep_stats *c, const ctl_dep_stats *b,
                          char *why, size_t whylen)
{
    /* Errors first, even on little traffic: 5 failures of 10 requests is
     * already enough to know, and waiting only fails more users. */
    if (c->requests > 0 && c->errors > 0 && c->error_rate > s->max_error_rate
        && (c->requests >= s->min_requests || c->errors >= s->min_requests * s->max_error_rate / 100.0 + 3)) {
        snprintf(why, whylen, "error rate %.2f%% above %.2f%% (%.0f of %.0f requests)",
                 c->error_rate, s->max_error_rate, c->errors, c->requests);
        return CTL_VERDICT_FAIL;
    }
    if (c->requests < s->min_requests) {
        snprintf(why, whylen, "%.0f requests, fewer than the %.0f needed to judge",
                 c->requests, s->min_requests);
        return CTL_VERDICT_INCONCLUSIVE;
    }
    bool base_ok = b && b->requests >= s->min_requests;
    if (base_ok && !isnan(b->error_rate) && c->error_rate > b->error_rate + s->max_error_delta) {
        snprintf(why, whylen, "error rate %.2f%% against %.2f%% on the stable pool (more than %.2f points)",
                 c->error_rate, b->error_rate, s->max_error_delta);
        return CTL_VERDICT_FAIL;
    }
    if (!isnan(c->p95_ms) && c->p95_ms > s->max_p95_ms) {
        snprintf(why, whylen, "p95 %.1f ms above %.1f ms", c->p95_ms, s->max_p95_ms);
        return CTL_VERDICT_FAIL;
    }
    /* Below a few milliseconds a ratio measures scheduler noise, not the
     * version: compare only when the new one is slower than 10 ms. */
    if (base_ok && !isnan(c->p95_ms) && !isnan(b->p95_ms) && c->p95_ms > 10.0
        && c->p95_ms > b->p95_ms * s->max_p95_ratio) {
        snprintf(why, whylen, "p95 %.1f ms, more than %.1fx the stable pool's %.1f ms",
                 c->p95_ms, s->max_p95_ratio, b->p95_ms);
        return CTL_VERDICT_FAIL;
    }
    if (isnan(c->p95_ms))
        snprintf(why, whylen, "error rate %.2f%% over %.0f requests", c->error_rate, c->requests);
    else
        snprintf(why, whylen, "error rate %.2f%%, p95 %.1f ms over %.0f requests", c->error_rate,
                 c->p95_ms, c->requests);
    return CTL_VERDICT_PASS;
}

static bool names_pool(json_t *route, const char *stable, const char *next)
{
    const char *p = json_string_value(json_object_get(route, "pool"));
    if (p && (strcmp(p, stable) == 0 || strcmp(p, next) == 0))
        return true;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(route, "split"), i, e) {
        const char *sp = json_string_value(json_object_get(e, "pool"));
        if (sp && (strcmp(sp, stable) == 0 || strcmp(sp, next) == 0))
            return true;
    }
    return false;
}

char *ctl_dep_routes_rewrite(const char *routes_json, size_t len, const char *stable,
                             const char *next, int stable_w, int next_w, int *touched,
                             char *err, size_t errlen)
{
    *touched = 0;
    json_error_t je;
    json_t *doc = json_loadb(routes_json, len, 0, &je);
    json_t *routes = json_object_get(doc, "routes");
    if (!json_is_array(routes)) {
        json_decref(doc);
        snprintf(err, errlen, "routes: expected {\"routes\":[...]} from the gateway");
        return NULL;
    }
    size_t i;
    json_t *r;
    json_array_foreach(routes, i, r) {
        if (!json_is_object(r) || !names_pool(r, stable, next))
            continue;
        ++*touched;
        /* The idle shape is a plain pool; any traffic on next is a split
         * with `pool` kept as the fallback the gateway validates. */
        json_object_set_new(r, "pool", json_string(next_w > 0 && stable_w == 0 ? next : stable));
        if (next_w == 0) {
            json_object_set_new(r, "split", json_array());
        } else {
            json_t *sp = json_pack("[{s:s,s:i},{s:s,s:i}]", "pool", stable, "weight", stable_w,
                                   "pool", next, "weight", next_w);
            json_object_set_new(r, "split", sp);
        }
    }
    char *out = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!out)
        snprintf(err, errlen, "out of memory");
    return out;
}

/* ---- per-pool latency ------------------------------------------------------ */

typedef struct pool_lat_ud {
    const char *pool;
    ctl_lat    *out;
} pool_lat_ud;

/* Cumulative count at bound le, summed over routes, bounds kept sorted. */
static void lat_put(ctl_lat *l, double le, double cum)
{
    int i = 0;
    while (i < l->n && l->le[i] < le)
        i++;
    if (i < l->n && l->le[i] == le) {
        l->cum[i] += cum;
        return;
    }
    if (l->n >= CTL_LE_MAX)
        return;
    memmove(&l->le[i + 1], &l->le[i], (size_t)(l->n - i) * sizeof l->le[0]);
    memmove(&l->cum[i + 1], &l->cum[i], (size_t)(l->n - i) * sizeof l->cum[0]);
    l->le[i] = le;
    l->cum[i] = cum;
    l->n++;
}

static int pool_lat_sample(const ctl_pt_sample *s, void *arg)
{
    pool_lat_ud *u = arg;
    static const char fam[] = "hscale_gateway_request_duration_seconds";
    if (s->type != CTL_PT_HISTOGRAM || s->family.len != sizeof fam - 1
        || memcmp(s->family.p, fam, sizeof fam - 1) != 0)
        return 0;
    const ctl_pt_label *pl = ctl_pt_label_find(s, "pool");
    if (!pl || !ctl_pt_label_eq(pl, u->pool))
        return 0;
    if (s->suffix == CTL_PT_BUCKET)
        lat_put(u->out, s->le, s->value);
    else if (s->suffix == CTL_PT_COUNT)
        u->out->count += s->value;
    else if (s->suffix == CTL_PT_SUM)
        u->out->sum += s->value;
    return 0;
}

int ctl_dep_pool_lat(const char *text, size_t len, const char *pool, ctl_lat *out,
                     char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    pool_lat_ud u = { pool, out };
    return ctl_promtext_parse(text, len, pool_lat_sample, &u, err, errlen) < 0 ? -1 : 0;
}

void ctl_dep_stats_lat(ctl_dep_stats *st, const ctl_lat *prev, const ctl_lat *cur)
{
    ctl_lat d;
    if (prev && prev->n > 0)
        ctl_lat_delta(&d, cur, prev);
    else
        d = *cur;
    double q = d.n > 0 && d.count > 0 ? ctl_lat_quantile(&d, 0.95) : NAN;
    st->p95_ms = isnan(q) ? NAN : q * 1000.0;
}
