/* bench.c -- `hscale bench`: parses and checks everything (URL, scenario,
 * stages, thresholds) before a single request is sent, runs the load, prints
 * the report, and gates on the thresholds: exit 0 when all pass, 1 when one
 * fails (or nothing answered), 2 on bad usage. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "bench/bench.h"
#include "cmd.h"

static const char usage[] =
    "usage: hscale bench URL [options]\n"
    "\n"
    "Generates HTTP/1.1 load against URL (http[s]://host[:port]/path) and reports\n"
    "latency per request name; exits 1 when a --threshold fails.\n"
    "\n"
    "load model:\n"
    "  -c, --connections N   connections (virtual users), default 10\n"
    "  -t, --threads N       threads, default 2\n"
    "  -d, --duration D      run time (500ms, 30s, 2m), default 10s\n"
    "  --rate R              open model: R requests/s on a fixed schedule; latency\n"
    "                        counts from the scheduled time (no coordinated omission)\n"
    "  --stages S            ramp like k6: 30s:100,2m:1000,30s:0; targets are\n"
    "                        connections, or requests/s with --open\n"
    "  --open                stage targets are arrival rates (open model)\n"
    "  --timeout D           per request, default 10s\n"
    "  --new-conn            a new connection for every request, sent with\n"
    "                        'Connection: close' (wrk -H 'Connection: close', hey\n"
    "                        -disable-keepalive); default: keep-alive\n"
    "\n"
    "https (TLS 1.2+, ALPN http/1.1, SNI from the URL's host):\n"
    "  --cacert FILE         PEM CA bundle the server's certificate must chain to\n"
    "                        (default: the system store); the name is checked too\n"
    "  -k, --insecure        do not verify the certificate (a self-signed test\n"
    "                        certificate); a load tool's switch, never a default\n"
    "  --sni NAME            server name to send and verify instead of the URL's host\n"
    "  --tls-resume          offer each connection's last session when it reconnects\n"
    "                        (with --new-conn: resumed handshakes); default: every\n"
    "                        handshake is a full one\n"
    "  the report counts connections and handshakes (full, resumed, failed)\n"
    "\n"
    "requests:\n"
    "  --scenario FILE       YAML: weighted requests, templates, think time (closed\n"
    "                        model only); see bench/loadgen_surgicase.yaml\n"
    "  --method M            default GET\n"
    "  -H, --header 'N: V'   add a header (repeatable)\n"
    "  --body B              request body\n"
    "  templates in paths, headers and bodies: {rand:1:100} {seq} {pick:a|b|c}\n"
    "\n"
    "report and gates:\n"
    "  --threshold EXPR      [NAME:]METRIC<VALUE, repeatable: p95<200ms, p99.9<1s,\n"
    "                        errors<1%, rps>=1000, get_cases:p99<300ms\n"
    "                        metrics: p50 p90 p95 p99 p99.9 min mean max errors rps\n"
    "  --json FILE           write the report as JSON\n"
    "  --csv PREFIX          write PREFIX_stats.csv and PREFIX_status.csv\n"
    "  -q, --quiet           no progress line\n";

#define MAX_LIST 64

typedef struct opts {
    const char *url, *scenario, *method, *body, *json, *csv, *stages;
    const char *dur, *timeout, *rate, *conns, *threads, *cacert, *sni;
    char *headers[MAX_LIST];
    size_t nheaders;
    const char *th[MAX_LIST];
    size_t nth;
    bool open, quiet, new_conn, insecure, tls_resume;
} opts;

static int uerr(const char *fmt, const char *a, const char *b)
{
    return cmd_usage_error(usage, "bench", fmt, a, b);
}

/* Matches "--name value", "--name=value" or "-x value". */
static bool opt_val(int argc, char **argv, int *i, const char *s, const char *l, const char **out,
                    bool *missing)
{
    const char *a = argv[*i];
    size_t ll = l ? strlen(l) : 0;
    if (l && !strncmp(a, l, ll) && a[ll] == '=') {
        *out = a + ll + 1;
        return true;
    }
    if ((s && !strcmp(a, s)) || (l && !strcmp(a, l))) {
        if (*i + 1 >= argc) {
            *missing = true;
            return true;
        }
        *out = argv[++*i];
        return true;
    }
    return false;
}

static int parse_args(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->method = "GET";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        bool miss = false;
        if (opt_val(argc, argv, &i, "-c", "--connections", &o->conns, &miss) ||
            opt_val(argc, argv, &i, "-t", "--threads", &o->threads, &miss) ||
            opt_val(argc, argv, &i, "-d", "--duration", &o->dur, &miss) ||
            opt_val(argc, argv, &i, NULL, "--rate", &o->rate, &miss) ||
            opt_val(argc, argv, &i, NULL, "--stages", &o->stages, &miss) ||
            opt_val(argc, argv, &i, NULL, "--timeout", &o->timeout, &miss) ||
            opt_val(argc, argv, &i, NULL, "--scenario", &o->scenario, &miss) ||
            opt_val(argc, argv, &i, NULL, "--method", &o->method, &miss) ||
            opt_val(argc, argv, &i, NULL, "--body", &o->body, &miss) ||
            opt_val(argc, argv, &i, NULL, "--json", &o->json, &miss) ||
            opt_val(argc, argv, &i, NULL, "--csv", &o->csv, &miss) ||
            opt_val(argc, argv, &i, NULL, "--cacert", &o->cacert, &miss) ||
            opt_val(argc, argv, &i, NULL, "--sni", &o->sni, &miss)) {
            if (miss)
                return uerr("%s needs a value%s", a, "");
        } else if (opt_val(argc, argv, &i, "-H", "--header", &v, &miss)) {
            if (miss)
                return uerr("%s needs a value%s", a, "");
            if (o->nheaders == MAX_LIST)
                return uerr("too many %s options%s", a, "");
            o->headers[o->nheaders++] = (char *)v;
        } else if (opt_val(argc, argv, &i, NULL, "--threshold", &v, &miss)) {
            if (miss)
                return uerr("%s needs a value%s", a, "");
            if (o->nth == MAX_LIST)
                return uerr("too many %s options%s", a, "");
            o->th[o->nth++] = v;
        } else if (!strcmp(a, "--open")) {
            o->open = true;
        } else if (!strcmp(a, "--new-conn")) {
            o->new_conn = true;
        } else if (!strcmp(a, "-k") || !strcmp(a, "--insecure")) {
            o->insecure = true;
        } else if (!strcmp(a, "--tls-resume")) {
            o->tls_resume = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o->quiet = true;
        } else if (a[0] == '-' && a[1]) {
            return uerr("unknown option '%s'%s", a, "");
        } else if (o->url) {
            return uerr("unexpected argument '%s' (the URL is '%s')", a, o->url);
        } else {
            o->url = a;
        }
    }
    if (!o->url)
        return uerr("missing URL (e.g. http://127.0.0.1:8080/)%s%s", "", "");
    return 0;
}

static int parse_count(const char *s, const char *what, long lo, long hi, uint32_t *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        char range[64];
        snprintf(range, sizeof range, "%ld..%ld", lo, hi);
        return cmd_usage_error(usage, "bench", "%s: '%s' is not a whole number in %s", what, s, range);
    }
    *out = (uint32_t)v;
    return 0;
}

/* http[s]://host[:port][/target]: fills the address, the Host header value,
 * the TLS host (https) and the target. */
static int parse_url(const char *url, bench_plan *p, char *target, size_t tcap)
{
    bool tls = !strncmp(url, "https://", 8);
    if (!tls && strncmp(url, "http://", 7))
        return uerr("'%s': expected http[s]://host[:port]/path%s", url, "");
    const char *h = url + (tls ? 8 : 7), *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0 || hl > 255 || memchr(h, '@', hl) || memchr(h, '?', hl) || memchr(h, '#', hl))
        return uerr("'%s': expected http[s]://host[:port]/path%s", url, "");
    char hostport[300];
    memcpy(hostport, h, hl);
    hostport[hl] = 0;
    const char *rb = strrchr(hostport, ']'), *colon = strrchr(hostport, ':');
    bool has_port = colon && (!rb || colon > rb);
    char addr[310];
    snprintf(addr, sizeof addr, has_port ? "%s" : tls ? "%s:443" : "%s:80", hostport);
    if (tls) {   /* the name to verify and send as SNI: no port, no brackets */
        size_t nl = has_port ? (size_t)(colon - hostport) : strlen(hostport);
        const char *n0 = hostport;
        if (nl >= 2 && n0[0] == '[' && n0[nl - 1] == ']') {
            n0++;
            nl -= 2;
        }
        p->tls.enabled = true;
        p->tls.host = strndup(n0, nl);
    }
    char err[BENCH_ERRLEN];
    if (sock_addr_parse(addr, &p->addr, err, sizeof err) < 0)
        return uerr("'%s': %s", url, err);
    p->host_header = strdup(hostport);
    const char *t = slash ? slash : "/";
    if (strlen(t) >= tcap)
        return uerr("'%s': path too long%s", url, "");
    strcpy(target, t);
    char *hash = strchr(target, '#');
    if (hash)
        *hash = 0;
    return 0;
}

/* The https options: only with an https:// URL, and not contradictory. */
static int setup_tls(const opts *o, bench_plan *p)
{
    const char *flag = o->cacert ? "--cacert" : o->insecure ? "--insecure" : o->sni ? "--sni"
                     : o->tls_resume ? "--tls-resume" : NULL;
    if (!p->tls.enabled) {
        if (flag)
            return uerr("%s goes with an https:// URL (got '%s')", flag, o->url);
        return 0;
    }
    if (o->cacert && o->insecure)
        return uerr("--cacert and --insecure contradict each other: verify against a CA, or not%s%s",
                    "", "");
    if (o->sni && (!*o->sni || strlen(o->sni) > 255 || strpbrk(o->sni, " /:@")))
        return uerr("--sni: '%s' is not a host name%s", o->sni, "");
    if (o->cacert && access(o->cacert, R_OK) != 0)
        return uerr("--cacert: cannot read '%s': %s", o->cacert, strerror(errno));
    p->tls.cacert = o->cacert ? strdup(o->cacert) : NULL;
    p->tls.sni = o->sni ? strdup(o->sni) : NULL;
    p->tls.insecure = o->insecure;
    p->tls.resume = o->tls_resume;
    char err[BENCH_ERRLEN];
    if (bench_tls_check(&p->tls, err, sizeof err) < 0)
        return uerr("%s%s", err, "");
    return 0;
}

static int setup(const opts *o, bench_plan *p, bench_threshold *th)
{
    char err[BENCH_ERRLEN], target[8192];
    int rc;
    if ((rc = parse_url(o->url, p, target, sizeof target)) != 0)
        return rc;
    if ((rc = setup_tls(o, p)) != 0)
        return rc;
    p->new_conn = o->new_conn;
    p->conns = 10;
    p->threads = 2;
    if (o->conns && (rc = parse_count(o->conns, "-c", 1, 100000, &p->conns)) != 0)
        return rc;
    if (o->threads && (rc = parse_count(o->threads, "-t", 1, 256, &p->threads)) != 0)
        return rc;
    p->duration_us = 10000000;
    if (o->dur && (bench_parse_duration(o->dur, &p->duration_us) < 0 || p->duration_us == 0))
        return uerr("-d: bad duration '%s' (expected e.g. 500ms, 30s, 2m)%s", o->dur, "");
    p->timeout_us = 10000000;
    if (o->timeout && (bench_parse_duration(o->timeout, &p->timeout_us) < 0 || p->timeout_us == 0))
        return uerr("--timeout: bad duration '%s' (expected e.g. 2s)%s", o->timeout, "");
    if (o->stages && o->dur)
        return uerr("--stages sets the duration; drop -d%s%s", "", "");
    if (o->stages && o->rate)
        return uerr("--rate is a constant rate; to ramp the rate use --stages with --open%s%s", "", "");
    if (o->open && !o->stages)
        return uerr("--open goes with --stages (for a constant rate use --rate)%s%s", "", "");
    if (o->rate) {
        char *end;
        errno = 0;
        double r = strtod(o->rate, &end);
        if (errno || end == o->rate || *end || !(r > 0) || r > 1e8)
            return uerr("--rate: '%s' is not a positive number of requests/s%s", o->rate, "");
        p->open_model = true;
        p->rate = r;
        p->stages[0] = (bench_stage){0, r};   /* start at the rate, not ramping from 0 */
        p->stages[1] = (bench_stage){p->duration_us, r};
        p->nstages = 2;
    } else if (o->stages) {
        size_t n;
        if (bench_parse_stages(o->stages, p->stages, &n, err, sizeof err) < 0)
            return uerr("--stages: %s%s", err, "");
        p->nstages = n;
        p->duration_us = bench_stages_total_us(p->stages, n);
        p->open_model = o->open;
        if (!o->open) {   /* targets are connections: size the pool for the peak */
            double peak = 0;
            for (size_t i = 0; i < n; i++)
                peak = p->stages[i].target > peak ? p->stages[i].target : peak;
            if (peak > 100000)
                return uerr("--stages: %s connections is too many (at most 100000)%s", "peak", "");
            p->conns = peak < 1 ? 1 : (uint32_t)(peak + 0.999);
        }
    } else {
        p->stages[0] = (bench_stage){0, p->conns};
        p->stages[1] = (bench_stage){p->duration_us, p->conns};
        p->nstages = 2;
    }
    if (p->threads > p->conns)
        p->threads = p->conns;
    if (o->scenario) {
        if (o->nheaders || o->body || strcmp(o->method, "GET"))
            return uerr("-H, --method and --body describe a single request; with --scenario put them in the file%s%s", "", "");
        if (bench_scenario_load(&p->sc, o->scenario, err, sizeof err) < 0)
            return uerr("--scenario: %s%s", err, "");
    } else if (bench_scenario_single(&p->sc, o->method, target, o->headers, o->nheaders,
                                     o->body, err, sizeof err) < 0) {
        return uerr("%s%s", err, "");
    }
    p->sc.close_each = o->new_conn;   /* loading a scenario starts from a clean one */
    if (bench_scenario_prepare(&p->sc, p->host_header, err, sizeof err) < 0)
        return uerr("%s%s", err, "");
    for (size_t i = 0; i < o->nth; i++) {
        if (bench_threshold_parse(&th[i], o->th[i], err, sizeof err) < 0)
            return uerr("--threshold: %s%s", err, "");
        bool found = !th[i].name;
        for (size_t k = 0; !found && k < p->sc.nreqs; k++)
            found = !strcmp(p->sc.reqs[k].name, th[i].name);
        if (!found)
            return uerr("--threshold '%s': no request is named '%s'", o->th[i], th[i].name);
    }
    p->quiet = o->quiet;
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    bench_plan *p = calloc(1, sizeof *p);
    bench_threshold th[MAX_LIST];
    memset(th, 0, sizeof th);
    bench_result res;
    memset(&res, 0, sizeof res);
    if (!p) {
        fprintf(stderr, "hscale bench: out of memory\n");
        return 1;
    }
    if ((rc = setup(&o, p, th)) != 0)
        goto out;
    char err[BENCH_ERRLEN];
    if (!o.quiet)
        fprintf(stderr, "hscale bench: %s, %s model, %u connections%s, %u threads, %.1fs\n", o.url,
                p->open_model ? "open" : "closed", p->conns, p->new_conn ? " (new per request)" : "",
                p->threads, (double)p->duration_us / 1e6);
    if (bench_run(p, o.quiet ? NULL : stderr, &res, err, sizeof err) < 0) {
        fprintf(stderr, "hscale bench: %s\n", err);
        rc = 1;
        goto out;
    }
    bool ok[MAX_LIST];
    double val[MAX_LIST];
    for (size_t i = 0; i < o.nth; i++) {
        const bench_stats *s = &res.total;
        if (th[i].name)
            s = &res.per[bench_result_find(&res, th[i].name)];
        bench_summary m;
        bench_summarize(s, res.elapsed_s, &m);
        val[i] = bench_threshold_value(&th[i], &m);
        /* No latency was measured: a latency bound cannot be said to hold. */
        ok[i] = bench_threshold_ok(&th[i], val[i]) &&
                (th[i].metric > BENCH_M_MAX || s->lat.count > 0);
        if (!ok[i])
            rc = 1;
    }
    bench_report_text(stdout, p, &res, th, o.nth, ok, val);
    fflush(stdout);
    if (o.json && bench_report_json(o.json, p, &res, th, o.nth, ok, val, err, sizeof err) < 0) {
        fprintf(stderr, "hscale bench: %s\n", err);
        rc = 1;
    }
    if (o.csv && bench_report_csv(o.csv, &res, err, sizeof err) < 0) {
        fprintf(stderr, "hscale bench: %s\n", err);
        rc = 1;
    }
    if (res.aborted) {
        fprintf(stderr, "hscale bench: stopped: %s\n", res.tls_error);
        rc = 1;
    } else if (res.total.lat.count == 0) {
        fprintf(stderr, "hscale bench: no response was received from %s%s%s\n", o.url,
                res.tls_error[0] ? ": " : "", res.tls_error);
        rc = 1;
    }
out:
    for (size_t i = 0; i < o.nth; i++)
        bench_threshold_free(&th[i]);
    bench_result_free(&res);
    bench_scenario_free(&p->sc);
    free(p->host_header);
    free(p->tls.host);
    free(p->tls.sni);
    free(p->tls.cacert);
    free(p);
    return rc;
}
