/* bench.h -- `hscale bench`: the load generator's pieces, each usable alone.
 *
 * A run is described by a bench_plan (target, model, stages, scenario,
 * thresholds), fully parsed and validated before any load is sent; the
 * workers (one ev_loop per thread) fill one bench_stats per request name and
 * per thread, merged once at the end into a bench_result that the report and
 * the thresholds read.
 *
 * Invariants: rendering a request and recording a response allocate nothing;
 * a template's rendered size is bounded by bench_tmpl_max_len(), computed at
 * parse time, so per-connection buffers are sized once.
 *
 * Two load models. Closed: each connection sends its next request when the
 * last one returns (plus think time). Open: arrivals follow a fixed schedule
 * (bench_sched_at) and latency is measured from the scheduled time, so a
 * stalled server shows as latency rather than as fewer requests. */
#ifndef HSCALE_BENCH_BENCH_H
#define HSCALE_BENCH_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "core/hist.h"
#include "core/sock.h"

#define BENCH_ERRLEN 256

/* ---- templates: "/cases?user_id={rand:1:100}&s={pick:a|b}&n={seq}" ---- */

typedef enum { BENCH_SEG_LIT, BENCH_SEG_RAND, BENCH_SEG_SEQ, BENCH_SEG_PICK } bench_seg_kind;

typedef struct bench_seg {
    bench_seg_kind kind;
    uint32_t off, len;       /* LIT: span of text; PICK: span of "a|b|c" */
    int64_t  lo, hi;         /* RAND: inclusive range */
    uint32_t npick;          /* PICK: number of choices */
} bench_seg;

typedef struct bench_tmpl {
    char      *text;         /* owned copy, with "{{" / "}}" kept verbatim */
    bench_seg *segs;
    size_t     nsegs;
    size_t     max_len;      /* upper bound of any rendering */
    bool       dynamic;      /* false: renders to the same bytes every time */
} bench_tmpl;

/* Per-thread state for rendering: the PRNG and the sequence counter.
 * {seq} yields base, base+stride, ... so threads never repeat a value. */
typedef struct bench_rng {
    uint64_t s;
    uint64_t seq;
    uint64_t seq_stride;
} bench_rng;

void     bench_rng_seed(bench_rng *r, uint64_t seed, uint64_t seq_base, uint64_t seq_stride);
uint64_t bench_rng_next(bench_rng *r);
/* Uniform in [0, n) (n > 0). */
uint64_t bench_rng_below(bench_rng *r, uint64_t n);

/* Parses a template. Errors name the column and what was expected. */
int    bench_tmpl_parse(bench_tmpl *t, const char *text, char *err, size_t errlen);
void   bench_tmpl_free(bench_tmpl *t);
/* Renders into out (room >= t->max_len); returns the length written. */
size_t bench_tmpl_render(const bench_tmpl *t, bench_rng *r, char *out);
size_t bench_tmpl_max_len(const bench_tmpl *t);

/* ---- durations, stages, schedule ---- */

/* "500ms", "10s", "2m", "1h", "250us"; a bare number is seconds. */
int bench_parse_duration(const char *s, uint64_t *out_us);

typedef struct bench_stage {
    uint64_t dur_us;
    double   target;         /* req/s (open model) or connections (closed) */
} bench_stage;

#define BENCH_MAX_STAGES 64

/* "30s:100,2m:1000,30s:0". Targets ramp linearly from the previous one
 * (0 before the first), as k6's stages do. */
int    bench_parse_stages(const char *s, bench_stage *out, size_t *n, char *err, size_t errlen);
uint64_t bench_stages_total_us(const bench_stage *st, size_t n);
/* The target at t_us from the start (the last target after the end). */
double bench_stages_target(const bench_stage *st, size_t n, uint64_t t_us);
/* Open model: the time (us from start) of arrival number k (from 0), i.e.
 * the t where the integral of the rate from 0 reaches k. UINT64_MAX when
 * that is past the end of the stages. */
uint64_t bench_sched_at(const bench_stage *st, size_t n, double k);

/* ---- scenario ---- */

typedef struct bench_header {
    char      *name;
    bench_tmpl value;
} bench_header;

typedef struct bench_req {
    char         *name;
    char         *method;
    bench_tmpl    path;       /* request target, templated */
    bench_header *headers;
    size_t        nheaders;
    bench_tmpl    body;       /* empty text when none */
    bool          has_body;
    uint32_t      weight;
    /* Filled by bench_scenario_prepare(): */
    char         *static_bytes;   /* whole request pre-rendered, or NULL */
    size_t        static_len;
    size_t        max_len;        /* bound on a rendered request */
    bool          add_close;      /* scenario's close_each, and no Connection header */
} bench_req;

typedef struct bench_scenario {
    bench_req *reqs;
    size_t     nreqs;
    uint64_t   think_min_us, think_max_us;   /* per virtual user, closed model */
    uint64_t   total_weight;
    /* --new-conn: every request says "Connection: close" (unless it sets its
     * own Connection header), as wrk -H 'Connection: close' and hey
     * -disable-keepalive do, so the server closes first. Set before
     * bench_scenario_prepare(). */
    bool       close_each;
} bench_scenario;

/* Loads a YAML scenario; errors name the file, the line and the field. */
int  bench_scenario_load(bench_scenario *sc, const char *path, char *err, size_t errlen);
/* A one-request scenario from the command line (method, target, headers as
 * "Name: value", body may be NULL). */
int  bench_scenario_single(bench_scenario *sc, const char *method, const char *target,
                           char *const *headers, size_t nheaders, const char *body,
                           char *err, size_t errlen);
/* Adds Host and common headers, pre-renders static requests. */
int  bench_scenario_prepare(bench_scenario *sc, const char *host_header, char *err, size_t errlen);
void bench_scenario_free(bench_scenario *sc);
/* Picks a request index by weight. */
size_t bench_scenario_pick(const bench_scenario *sc, bench_rng *r);
/* Renders request i into out (room >= reqs[i].max_len); returns its length.
 * Static requests are not rendered: use static_bytes. */
size_t bench_req_render(const bench_req *rq, const char *host_header, bench_rng *r, char *out);

/* ---- statistics ---- */

typedef enum {
    BENCH_ERR_CONNECT,    /* connect refused or failed */
    BENCH_ERR_RESET,      /* reset or closed mid-request */
    BENCH_ERR_TIMEOUT,    /* no complete response within --timeout */
    BENCH_ERR_PROTOCOL,   /* unparseable response */
    BENCH_ERR_TLS,        /* TLS handshake failed, or a TLS record error */
    BENCH_ERR_HTTP4XX,
    BENCH_ERR_HTTP5XX,
    BENCH_ERR_N
} bench_err_kind;

const char *bench_err_name(bench_err_kind k);

typedef struct bench_stats {
    uint64_t count;           /* completed requests, failed or not */
    uint64_t failures;        /* errors of any kind, incl. HTTP >= 400 */
    uint64_t errors[BENCH_ERR_N];
    uint64_t status[600];     /* response counts by status code */
    uint64_t bytes_in;
    hist     lat;             /* latency of completed responses, us */
} bench_stats;

void bench_stats_init(bench_stats *s);
void bench_stats_merge(bench_stats *dst, const bench_stats *src);
/* Records one response (status >= 400 counts as a failure). */
void bench_stats_response(bench_stats *s, int status, uint64_t latency_us);
/* Records a transport error (no latency: the request never completed). */
void bench_stats_error(bench_stats *s, bench_err_kind k);

/* Connections and TLS handshakes of a run, over every thread. A handshake
 * is full or resumed (the server accepted the session offered); `failed`
 * counts handshakes that did not complete (refused certificate, alert,
 * reset, timeout). */
typedef struct bench_conn_stats {
    uint64_t connects;        /* TCP connections established */
    uint64_t stale_resends;   /* requests sent again: a reused connection closed unanswered */
    uint64_t hs_full, hs_resumed, hs_failed;
    hist     hs_lat;          /* handshake time (TCP connected to TLS done), us */
    char     tls_version[16]; /* of the first completed handshake, "" when none */
    char     tls_cipher[64];
    char     tls_alpn[16];
} bench_conn_stats;

void bench_conn_stats_init(bench_conn_stats *s);
void bench_conn_stats_merge(bench_conn_stats *dst, const bench_conn_stats *src);

typedef struct bench_result {
    size_t       nnames;
    char       **names;       /* borrowed from the scenario */
    bench_stats *per;         /* nnames entries */
    bench_stats  total;
    double       elapsed_s;
    uint64_t     behind;      /* open model: scheduled but never sent */
    bool         interrupted; /* stopped early by SIGINT/SIGTERM */
    bench_conn_stats conn;
    /* The first TLS failure of the run ("" when none): what happened and,
     * for a refused certificate, what to do. */
    char         tls_error[BENCH_ERRLEN];
    /* Stopped early because no retry can succeed (the server's certificate
     * was refused): tls_error says why. */
    bool         aborted;
} bench_result;

/* Summary numbers of one stats block, in the report's units. */
typedef struct bench_summary {
    uint64_t count, failures;
    double   rps, err_rate;                    /* err_rate in [0,1] */
    double   min_ms, mean_ms, p50_ms, p90_ms, p95_ms, p99_ms, p999_ms, max_ms;
} bench_summary;

void bench_summarize(const bench_stats *s, double elapsed_s, bench_summary *out);

/* ---- thresholds: "p95<200ms", "errors<1%", "rps>=1000", "login:p99<1s" ---- */

typedef enum {
    BENCH_M_P50, BENCH_M_P90, BENCH_M_P95, BENCH_M_P99, BENCH_M_P999,
    BENCH_M_MIN, BENCH_M_MEAN, BENCH_M_MAX, BENCH_M_ERRORS, BENCH_M_RPS,
} bench_metric;

typedef enum { BENCH_OP_LT, BENCH_OP_LE, BENCH_OP_GT, BENCH_OP_GE } bench_op;

typedef struct bench_threshold {
    char        *expr;        /* as given, for the report */
    char        *name;        /* request name, or NULL for the total */
    bench_metric metric;
    bench_op     op;
    double       limit;       /* ms for latencies, fraction for errors, req/s */
} bench_threshold;

int  bench_threshold_parse(bench_threshold *t, const char *expr, char *err, size_t errlen);
void bench_threshold_free(bench_threshold *t);
/* The metric's value in the threshold's units. */
double bench_threshold_value(const bench_threshold *t, const bench_summary *s);
bool   bench_threshold_ok(const bench_threshold *t, double value);

/* ---- TLS (https:// targets) ---- */

/* Client side of `hscale bench https://...`. Verification is on unless
 * `insecure`: the chain against `cacert` (or the system store), and the
 * name: `sni` when set, else the URL's host (a DNS name, or an IP literal
 * checked against the certificate's IP addresses and sent without SNI). */
typedef struct bench_tls_opts {
    bool  enabled;        /* the URL is https:// */
    char *host;           /* the URL's host, without port or brackets */
    char *sni;            /* --sni: server name sent and verified, or NULL */
    char *cacert;         /* --cacert: PEM bundle, or NULL for the system store */
    bool  insecure;       /* --insecure: no verification (self-signed test certs) */
    bool  resume;         /* --tls-resume: offer each connection's last session */
} bench_tls_opts;

/* Checks that the options can make a client context (the CA file loads),
 * so a bad --cacert is a usage error before any load. */
int bench_tls_check(const bench_tls_opts *o, char *err, size_t errlen);

/* ---- a run ---- */

typedef struct bench_plan {
    sock_addr      addr;
    char          *host_header;   /* "host:port" as sent in Host */
    bench_scenario sc;
    bool           open_model;    /* --rate or rate stages */
    double         rate;          /* open model, req/s */
    bench_stage    stages[BENCH_MAX_STAGES];
    size_t         nstages;       /* >= 1: a constant run is one stage */
    uint32_t       conns, threads;
    uint64_t       duration_us;
    uint64_t       timeout_us;
    bool           quiet;         /* no progress output */
    bool           new_conn;      /* --new-conn: one connection per request */
    bench_tls_opts tls;
} bench_plan;

/* Runs the plan; fills res (free with bench_result_free). Progress lines go
 * to `progress` (NULL: none). Returns 0, or -1 with err on a setup failure. */
int  bench_run(const bench_plan *p, FILE *progress, bench_result *res, char *err, size_t errlen);
void bench_result_free(bench_result *res);

/* ---- report ---- */

/* Index of a request name in res, or -1. */
int  bench_result_find(const bench_result *res, const char *name);
void bench_report_text(FILE *out, const bench_plan *p, const bench_result *res,
                       const bench_threshold *th, size_t nth, const bool *th_ok,
                       const double *th_val);
int  bench_report_json(const char *path, const bench_plan *p, const bench_result *res,
                       const bench_threshold *th, size_t nth, const bool *th_ok,
                       const double *th_val, char *err, size_t errlen);
int  bench_report_csv(const char *prefix, const bench_result *res, char *err, size_t errlen);

/* ---- capacity planning (`hscale plan`) ----
 *
 * One instance's capacity, in users (SurgiCase's users_per_instance) or in
 * req/s (given, or measured by `hscale bench --json` at the SLO), turned into
 * the instances a target load needs: ceil(load / (capacity x (1 - headroom))),
 * never below a minimum. Headroom is capacity kept spare, so 30 % means each
 * instance runs at 70 % at most (MedEase's target-tracking CPU target). Users
 * and req/s convert through rps_per_user (MedEase: 500 req/s per 10k users).
 * Each instance opens up to pool_size + pool_overflow connections to every
 * database node, which is the count a database's max_connections must hold. */

#define BENCH_CAP_ROWS 4           /* the per-users table: 10k 50k 100k 500k */
#define BENCH_CAP_MAX_INSTANCES 1000000.0

typedef struct bench_cap_report {
    double   rps, error_rate, p95_ms, p99_ms;   /* the report's TOTAL */
    uint64_t count;
    double   slo_p95_ms, slo_p99_ms;            /* slo_p99_ms 0: not checked */
    bool     met_slo;          /* measured p95 (and p99) within the SLO */
    double   capacity_rps;     /* good req/s, scaled down by SLO/pXX if missed */
} bench_cap_report;

typedef struct bench_cap_in {
    double   users_per_instance;    /* exactly one of these two > 0 */
    double   rps_per_instance;
    const bench_cap_report *report; /* where rps_per_instance came from, or NULL */
    double   users, rps;            /* target load; at most one >= 0, -1: none */
    double   rps_per_user;
    double   headroom_pct;          /* [0, 95] */
    uint32_t min_instances;         /* >= 1 */
    uint32_t pool_size, pool_overflow, db_max_connections;
} bench_cap_in;

typedef struct bench_cap_row {
    double   users, rps;
    uint64_t instances, conns_steady, conns_peak;
} bench_cap_row;

typedef struct bench_cap_out {
    double   per_instance_rps, per_instance_users;  /* one instance, both units */
    double   usable_rps;           /* per instance, after headroom */
    bool     has_target;
    bench_cap_row target;          /* valid when has_target */
    uint64_t raw_instances;        /* ceil(load / usable) before the minimum */
    bool     conns_over_limit;     /* target's peak > db_max_connections */
    bench_cap_row table[BENCH_CAP_ROWS];
} bench_cap_out;

/* The defaults of `hscale plan`: headroom 30, min 2, the store's pool (10 +
 * 20 overflow), PostgreSQL's max_connections 100, 0.05 req/s per user. */
void bench_cap_defaults(bench_cap_in *in);
/* max(min, ceil(load / (per_instance x (1 - headroom/100)))), exact for
 * whole quotients (ceil(500/100) is 5, not 6). */
uint64_t bench_cap_instances(double load, double per_instance, double headroom_pct,
                             uint32_t min_instances);
/* Reads a `hscale bench --json` report and judges it against the SLO.
 * Errors name the file and the field. */
int  bench_cap_read_report(const char *path, double slo_p95_ms, double slo_p99_ms,
                           bench_cap_report *out, char *err, size_t errlen);
/* Validates in (errors name the flag: --headroom, --users, ...) and plans. */
int  bench_cap_plan(const bench_cap_in *in, bench_cap_out *out, char *err, size_t errlen);
void bench_cap_print_text(FILE *f, const bench_cap_in *in, const bench_cap_out *out);
/* The plan as one JSON object on f, newline-terminated. */
int  bench_cap_print_json(FILE *f, const bench_cap_in *in, const bench_cap_out *out);

#endif
