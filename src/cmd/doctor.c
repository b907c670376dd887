/* doctor.c -- `hscale doctor`: the seeds' daily fleet check as one command.
 *
 * It asks the control plane which instances exist, asks each of them for
 * /health and /metrics, asks the gateway which backends it routes to, and
 * compares the two views: an instance the control plane calls ready that
 * the gateway does not route to is as much a fault as a gateway backend
 * nobody manages. Prometheus is checked when given. Every finding is one
 * OK, WARN or FAIL line naming the instance; only FAIL changes the exit
 * code (1), so a cron job or CI step can page on it.
 *
 * Every request is bounded by --timeout, so a stopped (SIGSTOP) instance
 * costs one timeout, never a hang. Nothing here retries: the doctor reports
 * what it saw, once. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "control/ctl_autoscale.h"
#include "core/buf.h"
#include "core/config.h"
#include "http/client.h"
#include "http/server.h"

static const char usage[] =
    "usage: hscale doctor [options]\n"
    "\n"
    "Checks the whole fleet once: every instance's /health and database pool,\n"
    "the gateway's backends and their agreement with the control plane, and\n"
    "Prometheus if given. Prints OK/WARN/FAIL lines; exits 1 when any check\n"
    "fails (naming the instance), 0 otherwise.\n"
    "\n"
    "  --control URL         control plane API (default http://127.0.0.1:8081)\n"
    "  --gateway-admin URL   gateway admin API (default: the gateway the control\n"
    "                        plane reports, else http://127.0.0.1:8082)\n"
    "  --prometheus URL      also check Prometheus and its targets\n"
    "  --token-file F        file holding the control API's token (default:\n"
    "                        env HSCALE_CONTROL_TOKEN); also the gateway's\n"
    "                        unless --gateway-token-file or HSCALE_GATEWAY_ADMIN_TOKEN\n"
    "  --gateway-token-file F  file holding the gateway admin API's token\n"
    "  --ca-file F           CA bundle for https URLs (env HSCALE_CA_FILE)\n"
    "  --timeout DUR         per request (default 2s)\n"
    "  --pool-warn PCT       warn when a database pool is this busy (default 80)\n"
    "  --json                print the findings as JSON\n"
    "  -h, --help            this text\n";

typedef enum { DOC_OK, DOC_WARN, DOC_FAIL } doc_level;
static const char *const level_name[] = { "OK", "WARN", "FAIL" };

typedef struct doc_opts {
    const char *control, *gateway, *prometheus, *token, *gw_token;
    int         timeout_ms;
    double      pool_warn;
    bool        json;
} doc_opts;

typedef struct doctor {
    doc_opts o;
    json_t  *checks;       /* array of findings, in the order found */
    int      count[3];
    char     ctl_auth[320], gw_auth[320];
} doctor;

/* Records one finding. subject names the instance or backend (may be "");
 * address may be NULL. */
static void finding(doctor *d, doc_level lv, const char *check, const char *subject,
                    const char *address, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void finding(doctor *d, doc_level lv, const char *check, const char *subject,
                    const char *address, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    d->count[lv]++;
    json_t *f = json_pack("{s:s, s:s, s:s, s:s}", "status", lv == DOC_OK ? "ok"
                          : lv == DOC_WARN ? "warn" : "fail", "check", check,
                          "subject", subject ? subject : "", "message", msg);
    if (f && address)
        json_object_set_new(f, "address", json_string(address));
    if (f)
        json_array_append_new(d->checks, f);
    if (!d->o.json) {
        char who[160];
        snprintf(who, sizeof who, "%s%s%s", subject ? subject : "",
                 address && subject && *subject ? " " : "", address ? address : "");
        printf("%-5s %-11s %s%s%s\n", level_name[lv], check, who, *who ? ": " : "", msg);
    }
}

/* base (with or without "http://", trailing slash ignored) + path. */
static void join_url(char *out, size_t n, const char *base, const char *path)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    snprintf(out, n, "%s%.*s%s", strstr(base, "://") ? "" : "http://",
             (int)bl, base, path);
}

/* GET base+path. Returns the status (0 when no answer, with why in err). */
static int get(const doctor *d, const char *base, const char *path, const char *auth,
               http_result *r, char *err, size_t errlen)
{
    char url[2304];
    join_url(url, sizeof url, base, path);
    http_result_init(r);
    if (http_fetch("GET", url, auth && *auth ? auth : NULL, NULL, 0, d->o.timeout_ms, r,
                   err, errlen) < 0)
        return 0;
    return r->status;
}

/* GET and parse a JSON object; NULL with err on any failure. */
static json_t *get_json(const doctor *d, const char *base, const char *path, const char *auth,
                        int *status, char *err, size_t errlen)
{
    http_result r;
    int st = get(d, base, path, auth, &r, err, errlen);
    *status = st;
    json_t *j = NULL;
    if (st == 200) {
        json_error_t je;
        j = json_loadb(buf_head(&r.body), r.body.len, 0, &je);
        if (!json_is_object(j)) {
            snprintf(err, errlen, "%s answered with something other than a JSON object%s%s",
                     path, j ? "" : ": ", j ? "" : je.text);
            json_decref(j);
            j = NULL;
        }
    } else if (st != 0) {
        snprintf(err, errlen, "%s answered %d: %.*s", path, st,
                 (int)(r.body.len > 160 ? 160 : r.body.len), buf_head(&r.body));
    }
    http_result_free(&r);
    return j;
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* ---- database pools from an instance's /metrics -------------------------- */

#define DOC_POOLS 16
typedef struct doc_pool {
    char   shard[48], role[24];
    double busy, idle, waiting, max;
} doc_pool;
typedef struct doc_pools { doc_pool p[DOC_POOLS]; int n; } doc_pools;

static int on_sample(const ctl_pt_sample *s, void *ud)
{
    static const char fam[] = "hscale_db_pool_connections";
    if (s->name.len != sizeof fam - 1 || memcmp(s->name.p, fam, sizeof fam - 1) != 0)
        return 0;
    const ctl_pt_label *ls = ctl_pt_label_find(s, "shard"), *lr = ctl_pt_label_find(s, "role"),
                       *lst = ctl_pt_label_find(s, "state");
    if (!ls || !lr || !lst)
        return 0;
    doc_pools *ps = ud;
    char shard[48], role[24], state[16];
    ctl_pt_label_decode(ls, shard, sizeof shard);
    ctl_pt_label_decode(lr, role, sizeof role);
    ctl_pt_label_decode(lst, state, sizeof state);
    doc_pool *p = NULL;
    for (int i = 0; i < ps->n && !p; i++)
        if (strcmp(ps->p[i].shard, shard) == 0 && strcmp(ps->p[i].role, role) == 0)
            p = &ps->p[i];
    if (!p) {
        if (ps->n == DOC_POOLS)
            return 0;
        p = &ps->p[ps->n++];
        memset(p, 0, sizeof *p);
        snprintf(p->shard, sizeof p->shard, "%s", shard);
        snprintf(p->role, sizeof p->role, "%s", role);
    }
    if (strcmp(state, "busy") == 0)
        p->busy = s->value;
    else if (strcmp(state, "idle") == 0)
        p->idle = s->value;
    else if (strcmp(state, "waiting") == 0)
        p->waiting = s->value;
    else if (strcmp(state, "max") == 0)
        p->max = s->value;
    return 0;
}

static void check_pools(doctor *d, const char *id, const char *addr)
{
    http_result r;
    char err[256];
    int st = get(d, addr, "/metrics", NULL, &r, err, sizeof err);
    if (st != 200) {
        if (st)
            snprintf(err, sizeof err, "answered %d", st);
        finding(d, DOC_WARN, "db-pool", id, addr, "/metrics unavailable: %s", err);
        http_result_free(&r);
        return;
    }
    doc_pools ps = { .n = 0 };
    if (ctl_promtext_parse(buf_head(&r.body), r.body.len, on_sample, &ps, err, sizeof err) < 0) {
        finding(d, DOC_WARN, "db-pool", id, addr, "/metrics is not valid Prometheus text: %s", err);
        http_result_free(&r);
        return;
    }
    http_result_free(&r);
    if (ps.n == 0) {
        finding(d, DOC_OK, "db-pool", id, addr, "no database pool metrics (not a hscale app)");
        return;
    }
    /* One line per instance: the busiest pool speaks for it. */
    const doc_pool *worst = &ps.p[0];
    double worst_use = -1;
    double open = 0;
    for (int i = 0; i < ps.n; i++) {
        const doc_pool *p = &ps.p[i];
        double use = p->max > 0 ? p->busy / p->max : 0;
        open += p->busy + p->idle;
        if (use > worst_use || p->waiting > worst->waiting) {
            worst = p;
            worst_use = use;
        }
    }
    double pct = worst->max > 0 ? 100.0 * worst->busy / worst->max : 0;
    doc_level lv = worst->waiting > 0 || pct >= d->o.pool_warn ? DOC_WARN : DOC_OK;
    finding(d, lv, "db-pool", id, addr,
            "%g connection(s) open in %d pool(s); busiest %s/%s: %g of %g busy (%.0f%%), "
            "%g waiting", open, ps.n, worst->shard, worst->role, worst->busy, worst->max, pct,
            worst->waiting);
}

/* ---- instances ------------------------------------------------------------ */

static void check_instance(doctor *d, const json_t *inst)
{
    const char *id = jstr(inst, "id"), *addr = jstr(inst, "address"),
               *state = jstr(inst, "state");
    if (strcmp(state, "failed") == 0) {
        finding(d, DOC_FAIL, "instance", id, addr, "failed: %s",
                *jstr(inst, "last_error") ? jstr(inst, "last_error") : "no reason recorded");
        return;
    }
    if (strcmp(state, "ready") != 0) {
        finding(d, strcmp(state, "starting") == 0 ? DOC_WARN : DOC_OK, "instance", id, addr,
                "%s (not checked further)", state);
        return;
    }
    char err[256];
    int st;
    json_t *h = get_json(d, addr, "/health", NULL, &st, err, sizeof err);
    if (!h) {
        if (st == 0)
            finding(d, DOC_FAIL, "instance", id, addr, "/health did not answer within %d ms: %s",
                    d->o.timeout_ms, err);
        else
            finding(d, DOC_FAIL, "instance", id, addr, "%s", err);
        return;
    }
    const char *hs = jstr(h, "status"), *db = jstr(h, "database"), *ver = jstr(h, "version");
    if (!json_is_true(json_object_get(inst, "healthy")))
        finding(d, DOC_FAIL, "instance", id, addr,
                "the control plane's last readiness probe failed (/health says %s)",
                *hs ? hs : "nothing");
    else if (*hs && strcmp(hs, "healthy") != 0 && strcmp(hs, "ok") != 0)
        finding(d, DOC_FAIL, "instance", id, addr, "/health says %s (database %s, cache %s)", hs,
                *db ? db : "-", *jstr(h, "cache") ? jstr(h, "cache") : "-");
    else
        finding(d, DOC_OK, "instance", id, addr, "ready and healthy%s%s", *ver ? ", version " : "",
                ver);
    if (*db) {
        bool ok = strcmp(db, "connected") == 0;
        finding(d, ok ? DOC_OK : DOC_FAIL, "database", id, addr, "%s", ok ? "reachable"
                : "unreachable from this instance (/health says database disconnected)");
        check_pools(d, id, addr);
    }
    json_decref(h);
}

/* ---- gateway and agreement ----------------------------------------------- */

static const json_t *find_by_address(const json_t *arr, const char *addr)
{
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v) {
        if (strcmp(jstr(v, "address"), addr) == 0)
            return v;
    }
    return NULL;
}

/* insts: the control plane's instances. explicit: the gateway URL came from
 * a flag or the control plane (so its absence is a fault, not a guess). */
static void check_gateway(doctor *d, const char *gw, bool explicit_gw, const char *pool,
                          const json_t *insts)
{
    char path[320], err[256];
    snprintf(path, sizeof path, "/api/v1/pools/%s", pool);
    int st;
    json_t *p = get_json(d, gw, path, d->gw_auth, &st, err, sizeof err);
    if (!p) {
        finding(d, explicit_gw ? DOC_FAIL : DOC_WARN, "gateway", pool, gw, "%s%s",
                st ? "" : "admin API unreachable: ", err);
        return;
    }
    const json_t *members = json_object_get(p, "members");
    size_t i, healthy = 0;
    const json_t *m;
    json_array_foreach(members, i, m) {
        healthy += json_is_true(json_object_get(m, "healthy"));
    }
    finding(d, healthy == json_array_size(members) ? DOC_OK : DOC_WARN, "gateway", pool, gw,
            "%zu backend(s), %zu healthy", json_array_size(members), healthy);

    /* Control's ready instances must be routable. */
    const json_t *inst;
    json_array_foreach(insts, i, inst) {
        const char *id = jstr(inst, "id"), *addr = jstr(inst, "address");
        if (strcmp(jstr(inst, "state"), "ready") != 0)
            continue;
        m = find_by_address(members, addr);
        if (!m) {
            finding(d, json_is_true(json_object_get(inst, "registered")) ? DOC_FAIL : DOC_WARN,
                    "agreement", id, addr,
                    "ready in the control plane but not a backend of gateway pool %s", pool);
        } else if (strcmp(jstr(m, "state"), "ready") != 0) {
            finding(d, DOC_FAIL, "agreement", id, addr,
                    "ready in the control plane but the gateway holds it as %s", jstr(m, "state"));
        } else if (!json_is_true(json_object_get(m, "healthy"))) {
            finding(d, DOC_FAIL, "agreement", id, addr,
                    "ready in the control plane but the gateway's health check marks it down");
        } else if (json_is_true(json_object_get(m, "ejected"))) {
            finding(d, DOC_WARN, "agreement", id, addr,
                    "the gateway has ejected it for errors (outlier detection)");
        } else {
            finding(d, DOC_OK, "agreement", id, addr, "routed by the gateway");
        }
    }
    /* And every backend must be an instance someone manages. */
    json_array_foreach(members, i, m) {
        const char *addr = jstr(m, "address");
        if (find_by_address(insts, addr))
            continue;
        bool leaving = strcmp(jstr(m, "state"), "draining") == 0;
        finding(d, leaving ? DOC_WARN : DOC_FAIL, "agreement", "backend", addr,
                "gateway pool %s routes to it (state %s) but the control plane does not know "
                "this instance", pool, jstr(m, "state"));
    }
    json_decref(p);
}

/* ---- Prometheus ----------------------------------------------------------- */

static void check_prometheus(doctor *d, const json_t *insts)
{
    const char *pu = d->o.prometheus;
    http_result r;
    char err[256];
    int st = get(d, pu, "/-/ready", NULL, &r, err, sizeof err);
    http_result_free(&r);
    if (st != 200) {
        if (st)
            snprintf(err, sizeof err, "/-/ready answered %d", st);
        finding(d, DOC_FAIL, "prometheus", "", pu, "not reachable or not ready: %s", err);
        return;
    }
    json_t *q = get_json(d, pu, "/api/v1/query?query=up", NULL, &st, err, sizeof err);
    const json_t *res = json_object_get(json_object_get(q, "data"), "result");
    if (!json_is_array(res)) {
        finding(d, DOC_WARN, "prometheus", "", pu, "ready, but the query 'up' failed: %s",
                q ? "no data.result" : err);
        json_decref(q);
        return;
    }
    size_t i, down = 0;
    const json_t *v;
    json_array_foreach(res, i, v) {
        const json_t *met = json_object_get(v, "metric");
        const char *val = json_string_value(json_array_get(json_object_get(v, "value"), 1));
        if (val && strcmp(val, "1") != 0) {
            down++;
            finding(d, DOC_WARN, "prometheus", jstr(met, "job"), jstr(met, "instance"),
                    "target is down (up = %s)", val);
        }
    }
    finding(d, DOC_OK, "prometheus", "", pu, "ready; %zu target(s), %zu down",
            json_array_size(res), down);
    /* Discovery: every ready instance should be scraped. */
    const json_t *inst;
    json_array_foreach(insts, i, inst) {
        if (strcmp(jstr(inst, "state"), "ready") != 0)
            continue;
        bool found = false;
        size_t k;
        json_array_foreach(res, k, v) {
            found = found || strcmp(jstr(json_object_get(v, "metric"), "instance"),
                                    jstr(inst, "address")) == 0;
        }
        if (!found)
            finding(d, DOC_WARN, "prometheus", jstr(inst, "id"), jstr(inst, "address"),
                    "not a Prometheus target yet (check the file_sd or HTTP SD config)");
    }
    json_decref(q);
}

/* ---- command -------------------------------------------------------------- */

static int parse_args(int argc, char **argv, doc_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        static const char *const with_value[] = { "--control", "--gateway-admin", "--prometheus",
                                                  "--token-file", "--gateway-token-file", "--timeout",
                                                  "--pool-warn" };
        size_t k, nk = sizeof with_value / sizeof with_value[0];
        const char *v = NULL;
        for (k = 0; k < nk; k++) {
            size_t fl = strlen(with_value[k]);
            if (strcmp(a, with_value[k]) == 0) {
                if (i + 1 >= argc)
                    return cmd_usage_error(usage, "doctor", "%s needs a value", a);
                v = argv[++i];
                break;
            }
            if (strncmp(a, with_value[k], fl) == 0 && a[fl] == '=') {
                v = a + fl + 1;
                break;
            }
        }
        if (k == nk && (strcmp(a, "--token") == 0 || strcmp(a, "--gateway-token") == 0))
            return cmd_usage_error(usage, "doctor", "%s is gone: a token on the command line "
                                   "shows in ps; use %s-file FILE or the environment", a, a);
        if (k == nk)
            return cmd_usage_error(usage, "doctor", "unknown option '%s'", a);
        switch (k) {
        case 0: o->control = v; break;
        case 1: o->gateway = v; break;
        case 2: o->prometheus = v; break;
        case 3: case 4: {
            char err[300];
            char *t = http_token_read_file(v, err, sizeof err);
            if (!t)
                return cmd_usage_error(usage, "doctor", "%s: %s", a, err);
            *(k == 3 ? &o->token : &o->gw_token) = t;   /* lives until exit */
            break;
        }
        case 5: {
            uint64_t us;
            char err[160];
            if (cfg_parse_duration(v, &us, err, sizeof err) < 0 || us < 1000 || us > 600000000)
                return cmd_usage_error(usage, "doctor",
                                       "--timeout needs a duration 1ms..10m such as 2s, got '%s'", v);
            o->timeout_ms = (int)(us / 1000);
            break;
        }
        default: {
            char *end;
            double p = strtod(v, &end);
            if (end == v || *end || !isfinite(p) || p <= 0 || p > 100)
                return cmd_usage_error(usage, "doctor",
                                       "--pool-warn needs a percentage in (0, 100], got '%s'", v);
            o->pool_warn = p;
        }
        }
    }
    return 0;
}

static void bearer(char *out, size_t n, const char *tok)
{
    if (tok && *tok)
        snprintf(out, n, "Authorization: Bearer %s\r\n", tok);
    else
        out[0] = '\0';
}

int cmd_doctor(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    doctor d = { .o = { .control = "http://127.0.0.1:8081", .timeout_ms = 2000,
                        .pool_warn = 80 } };
    if (cmd_take_ca_file(&argc, argv, "doctor") < 0)
        return 2;
    d.o.token = getenv("HSCALE_CONTROL_TOKEN");
    d.o.gw_token = getenv("HSCALE_GATEWAY_ADMIN_TOKEN");
    int rc = parse_args(argc, argv, &d.o);
    if (rc)
        return rc;
    bearer(d.ctl_auth, sizeof d.ctl_auth, d.o.token);
    bearer(d.gw_auth, sizeof d.gw_auth, d.o.gw_token ? d.o.gw_token : d.o.token);
    d.checks = json_array();

    char err[256];
    int st;
    json_t *status = get_json(&d, d.o.control, "/api/v1/scaling/status", d.ctl_auth, &st, err,
                              sizeof err);
    const json_t *insts = json_object_get(status, "instances");
    const char *pool = "app";
    char gw[256];
    snprintf(gw, sizeof gw, "%s", d.o.gateway ? d.o.gateway : "http://127.0.0.1:8082");
    bool explicit_gw = d.o.gateway != NULL;
    if (!status || !json_is_array(insts)) {
        finding(&d, DOC_FAIL, "control", "", d.o.control, "%s%s",
                st ? "" : "scaling API unreachable: ", status ? "no instances list" : err);
    } else {
        pool = *jstr(status, "pool") ? jstr(status, "pool") : "app";
        const char *cgw = json_string_value(json_object_get(status, "gateway"));
        if (!d.o.gateway && cgw && *cgw) {
            snprintf(gw, sizeof gw, "%s", cgw);
            explicit_gw = true;
        }
        finding(&d, DOC_OK, "control", "", d.o.control,
                "%zu instance(s): desired %lld, ready %lld", json_array_size(insts),
                (long long)json_integer_value(json_object_get(status, "desired")),
                (long long)json_integer_value(json_object_get(status, "ready")));
        size_t i;
        const json_t *inst;
        json_array_foreach(insts, i, inst) {
            check_instance(&d, inst);
        }
    }
    if (insts)
        check_gateway(&d, gw, explicit_gw, pool, insts);
    if (d.o.prometheus)
        check_prometheus(&d, insts);

    bool healthy = d.count[DOC_FAIL] == 0;
    if (d.o.json) {
        json_t *out = json_pack("{s:b, s:s, s:s, s:s, s:i, s:i, s:i, s:O}", "healthy", healthy,
                                "control", d.o.control, "gateway", gw, "pool", pool,
                                "ok", d.count[DOC_OK], "warn", d.count[DOC_WARN],
                                "fail", d.count[DOC_FAIL], "checks", d.checks);
        char *s = out ? json_dumps(out, JSON_INDENT(2)) : NULL;
        if (s)
            puts(s);
        free(s);
        json_decref(out);
    } else {
        /* The summary names what failed so a cron mail's subject line is enough. */
        printf("\n%s: %d ok, %d warning(s), %d failure(s)", healthy ? "healthy" : "UNHEALTHY",
               d.count[DOC_OK], d.count[DOC_WARN], d.count[DOC_FAIL]);
        size_t i, k;
        const json_t *f, *g;
        const char *sep = " -- ";
        json_array_foreach(d.checks, i, f) {
            if (strcmp(jstr(f, "status"), "fail") != 0)
                continue;
            const char *who = *jstr(f, "subject") ? jstr(f, "subject") : jstr(f, "check");
            bool seen = false;   /* one instance failing two checks is named once */
            json_array_foreach(d.checks, k, g) {
                if (k >= i)
                    break;
                seen = seen || (strcmp(jstr(g, "status"), "fail") == 0
                                && strcmp(jstr(g, "subject"), jstr(f, "subject")) == 0
                                && strcmp(jstr(g, "address"), jstr(f, "address")) == 0);
            }
            if (seen)
                continue;
            printf("%s%s%s%s", sep, who, *jstr(f, "address") ? " " : "", jstr(f, "address"));
            sep = ", ";
        }
        putchar('\n');
    }
    json_decref(status);
    json_decref(d.checks);
    http_fetch_pool_clear();
    return healthy ? 0 : 1;
}
