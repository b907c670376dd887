/* ctl_autoscale.h -- the autoscaler's maths, internal to src/control.
 *
 * Everything here is pure code driven by recorded inputs: no sockets, no
 * threads, no clocks read behind the caller's back. The control loop owns
 * the I/O and calls, every check interval:
 *
 *   scrape text --ctl_scrape_parse / ctl_gwm_parse--> ctl_scrape
 *   two scrapes --ctl_collect_instance / ctl_collect_gateway--> ctl_inst_metrics
 *   instances   --ctl_scaler_step--> ctl_decision (new count + event)
 *   event       --ctl_event_to_json + ctl_history_append--> state dir
 *
 * Layers, one file each: ctl_promtext.c (Prometheus text 0.0.4 parser),
 * ctl_collect.c (scrape deltas -> per instance and per pool metrics),
 * ctl_policy.c (target tracking and threshold rules -> recommendations),
 * ctl_scaler.c (bounds, cooldowns, stabilization, warm-up, growth cap),
 * ctl_history.c (JSON lines event log), ctl_autoscale_config.c (schema).
 *
 * Units everywhere: CPU, memory and error rate in percent (0..100), latency
 * in milliseconds, rates per second, times in microseconds. An unknown value
 * is NAN, never 0: an instance that cannot be measured must not look idle. */
#ifndef HSCALE_CONTROL_CTL_AUTOSCALE_H
#define HSCALE_CONTROL_CTL_AUTOSCALE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control/ctl_procstat_int.h"
#include "core/buf.h"
#include "core/config.h"

/* ---- Prometheus text format (ctl_promtext.c) ---------------------------- */

typedef enum {
    CTL_PT_UNTYPED, CTL_PT_COUNTER, CTL_PT_GAUGE, CTL_PT_HISTOGRAM, CTL_PT_SUMMARY,
} ctl_pt_type;

typedef enum {
    CTL_PT_PLAIN,      /* the family's own name */
    CTL_PT_BUCKET,     /* histogram name_bucket{le=...} */
    CTL_PT_SUM,        /* histogram or summary name_sum */
    CTL_PT_COUNT,      /* histogram or summary name_count */
} ctl_pt_suffix;

/* A slice of the caller's text; nothing is copied. */
typedef struct ctl_pt_str {
    const char *p;
    size_t      len;
} ctl_pt_str;

typedef struct ctl_pt_label {
    ctl_pt_str name;
    ctl_pt_str value;     /* raw, between the quotes: escapes not decoded */
    bool       escaped;   /* value holds a backslash escape */
} ctl_pt_label;

#define CTL_PT_MAX_LABELS 16

typedef struct ctl_pt_sample {
    ctl_pt_str    family;     /* TYPE'd family name, or the sample name */
    ctl_pt_str    name;       /* the sample's own name */
    ctl_pt_type   type;
    ctl_pt_suffix suffix;
    int           nlabels;
    ctl_pt_label  labels[CTL_PT_MAX_LABELS];
    double        value;
    double        le;         /* CTL_PT_BUCKET: the parsed le bound (+Inf: INFINITY) */
    bool          has_timestamp;
    int64_t       timestamp_ms;
    int           line;       /* 1-based */
} ctl_pt_sample;

/* Return non-zero to stop parsing (ctl_promtext_parse then returns 1). */
typedef int (*ctl_pt_fn)(const ctl_pt_sample *s, void *ud);

/* Parses text, calling fn for every sample in order. Returns 0 on success,
 * 1 when fn stopped it, -1 on a syntax error with "line N: what" in err.
 * Allocates nothing. Checks: names and label names, label escapes (\\ \"
 * \n), duplicate labels, values and timestamps, HELP/TYPE placement,
 * histogram buckets (le present and increasing, counts non-decreasing,
 * +Inf equal to _count), and the final newline. */
int  ctl_promtext_parse(const char *text, size_t len, ctl_pt_fn fn, void *ud,
                        char *err, size_t errlen);
/* The label called name, or NULL. */
const ctl_pt_label *ctl_pt_label_find(const ctl_pt_sample *s, const char *name);
/* Does the label's decoded value equal str? */
bool ctl_pt_label_eq(const ctl_pt_label *l, const char *str);
/* Decodes the label's value into out (NUL-terminated, truncated to outlen-1);
 * returns the decoded length (which may exceed outlen-1). */
size_t ctl_pt_label_decode(const ctl_pt_label *l, char *out, size_t outlen);

/* ---- Collector (ctl_collect.c) ------------------------------------------ */

/* Latency buckets as scraped: cumulative counts per upper bound, summed over
 * every series that was kept. The bounds follow the first series seen. */
#define CTL_LE_MAX 32
typedef struct ctl_lat {
    int    n;                 /* bounds, +Inf last */
    double le[CTL_LE_MAX];    /* seconds */
    double cum[CTL_LE_MAX];
    double count, sum;
} ctl_lat;

/* What one scrape of an instance's /metrics holds, reduced to what the
 * autoscaler uses. Requests and latency leave out the service's own
 * /health* and /metrics routes so probes and scrapes do not read as load. */
typedef struct ctl_scrape {
    uint64_t at_us;           /* when it was taken */
    bool     ok;              /* false: scrape failed, nothing below is valid */
    double   cpu_seconds;     /* process_cpu_seconds_total, NAN if absent */
    double   rss_bytes;       /* process_resident_memory_bytes, NAN if absent */
    double   requests;        /* hscale_http_requests_total, NAN if absent */
    double   errors;          /* of which code 5xx */
    double   connections;     /* hscale_http_connections, NAN if absent */
    ctl_lat  lat;             /* hscale_http_request_duration_seconds */
} ctl_scrape;

/* Parses an instance's /metrics. Returns 0, or -1 with the parse error
 * (out->ok is then false). */
int  ctl_scrape_parse(ctl_scrape *out, const char *text, size_t len, uint64_t at_us,
                      char *err, size_t errlen);
void ctl_scrape_fail(ctl_scrape *out, uint64_t at_us);

/* The gateway's view of each backend, from its /metrics. */
#define CTL_GWM_MAX_BACKENDS 128
typedef struct ctl_gwm_backend {
    char    pool[64];
    char    backend[64];      /* "host:port": the instance address */
    double  in_flight;        /* NAN if absent */
    double  requests, errors;
    double  up;               /* hscale_gateway_backend_up, NAN if absent */
    ctl_lat lat;              /* hscale_gateway_upstream_duration_seconds */
} ctl_gwm_backend;

typedef struct ctl_gwm_scrape {
    uint64_t       at_us;
    bool           ok;
    size_t         n;
    bool           truncated;  /* more than CTL_GWM_MAX_BACKENDS backends */
    ctl_gwm_backend b[CTL_GWM_MAX_BACKENDS];
} ctl_gwm_scrape;

int  ctl_gwm_parse(ctl_gwm_scrape *out, const char *text, size_t len, uint64_t at_us,
                         char *err, size_t errlen);
const ctl_gwm_backend *ctl_gwm_find(const ctl_gwm_scrape *g, const char *pool, const char *backend);

/* Metric identifiers shared by collector, policies and config. */
typedef enum {
    CTL_M_CPU,          /* percent of cpu_cores */
    CTL_M_MEMORY,       /* percent of the memory limit */
    CTL_M_RPS,          /* requests per second */
    CTL_M_IN_FLIGHT,    /* requests in flight (gateway view) */
    CTL_M_P95,          /* milliseconds */
    CTL_M_ERROR_RATE,   /* percent of requests answered 5xx */
    CTL_M_CONNECTIONS,  /* open connections to the service */
    CTL_M__COUNT
} ctl_metric;

const char *ctl_metric_name(ctl_metric m);          /* "cpu", "memory", ... */
int         ctl_metric_parse(const char *s, ctl_metric *out);
/* NULL-terminated names in enum order (for config enums). */
extern const char *const ctl_metric_names[];

typedef struct ctl_collect_opts {
    double   cpu_cores;         /* CPU one instance is sized for; 100 % = all of it */
    uint64_t mem_limit_bytes;   /* 100 % memory; 0: memory % unknown */
} ctl_collect_opts;

/* Where an instance's CPU or memory figure came from. */
typedef enum {
    CTL_SRC_NONE,       /* unknown: the value is NAN */
    CTL_SRC_METRICS,    /* the instance's /metrics (process_* client metrics) */
    CTL_SRC_OS,         /* /proc: its process tree (ctl_procstat.c) */
    CTL_SRC_CGROUP,     /* cgroup v2 counters of a cgroup holding just that tree */
} ctl_source;

/* "metrics", "os", "cgroup"; NULL for CTL_SRC_NONE (JSON null). */
const char *ctl_source_str(ctl_source s);

/* One instance's measurements over one interval. The caller fills id,
 * address and ready_at_us; the collector fills the rest. */
typedef struct ctl_inst_metrics {
    char     id[64];
    char     address[64];
    uint64_t ready_at_us;      /* when it passed readiness; 0: not ready */
    bool     missing;          /* no usable scrape (and no gateway or OS view) */
    double   v[CTL_M__COUNT];  /* NAN: unknown */
    ctl_source cpu_src, mem_src;
    ctl_lat  lat;              /* latency bucket deltas over the interval */
    double   requests;         /* requests over the interval (for weighting) */
    double   errors;
} ctl_inst_metrics;

/* From two consecutive scrapes (prev may be NULL or failed: then only the
 * gauges are known). CPU % = delta cpu_seconds / delta wall / cpu_cores *
 * 100; counters that went backwards (a restart) count from zero. */
void ctl_collect_instance(ctl_inst_metrics *m, const ctl_scrape *prev, const ctl_scrape *cur,
                          const ctl_collect_opts *o);
/* Overlays the gateway's view of m->address in `pool` (NULL: any pool):
 * in-flight from cur; requests/s, error rate and p95 from prev -> cur,
 * replacing the instance's own (the gateway sees what clients see and
 * works for services without hscale metrics). Clears m->missing when the
 * gateway supplied a value; CPU and memory stay the instance's. */
void ctl_collect_gateway(ctl_inst_metrics *m, const char *pool, const ctl_gwm_scrape *prev,
                         const ctl_gwm_scrape *cur);

/* Overlays what the operating system measured of the instance's process
 * tree (two samples of the same root, ctl_procstat.c): CPU % over prev ->
 * cur and memory % at cur replace the /metrics figures, since they cover
 * the whole tree where a process's own client metrics cover one process.
 * The cgroup's counters win when both samples have them (same cgroup);
 * a tree CPU sum that went down (a member's time left with it) is no CPU
 * for that interval, never a restart. Clears m->missing when it supplied
 * a value; leaves the rest untouched when cur is NULL or its root is gone. */
void ctl_collect_os(ctl_inst_metrics *m, const ctl_procstat *prev, const ctl_procstat *cur,
                    const ctl_collect_opts *o);

/* Prometheus' histogram_quantile over cumulative buckets (linear
 * interpolation within the bucket; the highest finite bound when the rank
 * falls in +Inf). Seconds; NAN when empty. */
double ctl_lat_quantile(const ctl_lat *l, double q);
/* d = a - b per bucket (a restart, count going backwards, gives d = a). */
void   ctl_lat_delta(ctl_lat *d, const ctl_lat *a, const ctl_lat *b);
/* dst += src; bounds that do not match are merged at the nearest bound
 * at or above. */
void   ctl_lat_add(ctl_lat *dst, const ctl_lat *src);

/* Machine memory (MemTotal) in bytes, 0 if unknown. */
uint64_t ctl_machine_memtotal(void);

/* Pool aggregate over a set of instances. */
typedef struct ctl_pool_metrics {
    int    instances;        /* all given */
    int    ready;            /* counted in averages */
    int    warming;          /* not ready, or inside warm-up */
    int    missing;          /* ready but without metrics */
    double avg[CTL_M__COUNT];   /* over ready instances with a value; NAN if none */
    double total_rps;
    double total_in_flight;
    double p95_ms;           /* from merged bucket deltas; NAN if no requests */
    double error_rate;       /* percent over all requests; NAN if no requests */
} ctl_pool_metrics;

/* Is instance i warming at now (not ready, or ready for less than warmup)? */
bool ctl_inst_warming(const ctl_inst_metrics *m, uint64_t now_us, uint64_t warmup_us);
void ctl_collect_pool(ctl_pool_metrics *p, const ctl_inst_metrics *m, size_t n,
                      uint64_t now_us, uint64_t warmup_us);

/* ---- Queue depth (ctl_queue_parse.c, ctl_queue.c, ctl_queue_policy.c) --- */

/* Where the depth comes from: exactly one of redis, prometheus.url, url. */
typedef struct ctl_queue_prom_cfg {
    char *url;                 /* Prometheus base URL, e.g. http://127.0.0.1:9090 */
    char *query;               /* PromQL giving one number */
} ctl_queue_prom_cfg;

typedef struct ctl_queue_cfg {
    char    *redis;            /* redis://[[user]:password@]host[:port][/db] */
    char    *list;             /* the list tasks are pushed to (Celery: the queue name) */
    char    *unacked;          /* kombu's hash of reserved, unacknowledged messages ("": none) */
    ctl_queue_prom_cfg prometheus;
    char    *url;              /* a JSON document holding the depth */
    char    *json;             /* where in it: JSON pointer "/a/0/b" or dotted path "a.0.b" */
    double   per_instance;     /* depth one instance is sized for */
    uint64_t poll_interval;    /* us */
    uint64_t idle_to_zero;     /* us: empty this long before going to zero */
    uint64_t timeout;          /* us: one poll */
} ctl_queue_cfg;

typedef enum { CTL_QSRC_NONE, CTL_QSRC_REDIS, CTL_QSRC_PROMETHEUS, CTL_QSRC_JSON } ctl_qsrc;

ctl_qsrc ctl_queue_source(const ctl_queue_cfg *q);

/* One poll. For Celery's Redis broker (kombu): waiting = LLEN of the list
 * and of its priority lists (list + "\x06\x16" + 1..9), reserved = HLEN of
 * the unacked hash (prefetched by a worker, or running with acks_late);
 * without reserved a busy fleet would look idle. */
typedef struct ctl_queue_reading {
    bool   on;                 /* a queue policy is configured */
    double depth;              /* waiting + reserved; NAN: unknown (see error) */
    double waiting;            /* NAN when unknown */
    double reserved;           /* NAN when unknown or not Redis */
    char   error[160];         /* why depth is unknown */
} ctl_queue_reading;

/* Parsers of outside input (pure; fuzzed by fuzz_queue). 0, or -1 with a
 * message. A depth is a finite number >= 0. */
typedef struct ctl_redis_url {
    char host[256];
    int  port;                 /* 6379 unless given */
    int  db;                   /* 0 unless given */
    char user[128];            /* "" : AUTH with the password alone */
    char password[256];        /* "" : no AUTH */
} ctl_redis_url;

int  ctl_redis_url_parse(const char *url, ctl_redis_url *out, char *err, size_t errlen);
/* An instant query's answer (/api/v1/query): the value of its single
 * series or scalar; no series at all reads as 0 (a queue metric that is
 * absent while nothing waits, as KEDA's ignoreNullValues). */
int  ctl_prom_value_parse(const char *body, size_t len, double *out, char *err, size_t errlen);
/* The number (or numeric string) at path in a JSON document: a JSON
 * pointer when path starts with '/', else a dotted path whose numeric
 * segments index arrays. */
int  ctl_json_number_at(const char *body, size_t len, const char *path, double *out,
                        char *err, size_t errlen);
/* base + "/api/v1/query?query=" + the query percent-encoded. */
void ctl_prom_query_url(const char *base, const char *query, buf *out);

/* The poller (ctl_queue.c): blocking, bounded by q->timeout; keeps one
 * Redis connection between polls. Loop thread only. */
typedef struct ctl_queue_src ctl_queue_src;
ctl_queue_src *ctl_queue_src_new(void);
void           ctl_queue_src_free(ctl_queue_src *s);
void           ctl_queue_poll(ctl_queue_src *s, const ctl_queue_cfg *q, ctl_queue_reading *out);

/* ---- Configuration (ctl_autoscale_config.c) ----------------------------- */

typedef enum { CTL_OP_ABOVE, CTL_OP_BELOW } ctl_op;

typedef struct ctl_rule_cfg {
    int      metric;           /* ctl_metric */
    int      op;               /* ctl_op */
    double   value;            /* in the metric's unit */
    uint64_t for_us;           /* must hold continuously this long */
    int      step;             /* instances added (above) or removed (below) */
} ctl_rule_cfg;

typedef struct ctl_targets_cfg {
    double   cpu, memory;      /* percent; 0: off */
    uint64_t p95;              /* microseconds; 0: off */
    double   rps, in_flight, error_rate, connections;   /* 0: off */
} ctl_targets_cfg;

typedef struct ctl_autoscale_cfg {
    bool     enabled;
    uint64_t check_interval;
    int      min_instances, max_instances;
    uint64_t scale_out_cooldown, scale_in_cooldown;
    uint64_t scale_cooldown;            /* CA-DMS: both at once when set */
    uint64_t scale_in_stabilization, scale_out_stabilization;
    uint64_t warmup;
    double   tolerance;
    double   max_growth_factor;         /* per step: max(current * f, current + add) */
    int      max_growth_add;
    int      max_shrink_step;           /* 0: unlimited */
    double   cpu_cores;
    uint64_t memory_limit;              /* bytes; 0: MemTotal */
    ctl_targets_cfg target;
    ctl_queue_cfg   queue;              /* queue-depth policy (off unless a source is set) */
    /* CA-DMS threshold set (0: off) */
    double   cpu_scale_up, cpu_scale_down, memory_scale_up, memory_scale_down;
    double   response_time_scale_up;    /* ms */
    double   connections_scale_up, connections_scale_down;
    uint64_t threshold_up_for, threshold_down_for;
    int      threshold_step;
    ctl_rule_cfg *rules;
    size_t   nrules;
    int      history_limit;
} ctl_autoscale_cfg;

extern const cfg_schema ctl_autoscale_schema;
extern const cfg_schema ctl_queue_schema;

/* ---- Policies (ctl_policy.c) -------------------------------------------- */

#define CTL_MAX_RULES 32
#define CTL_NO_REC    (-1)

typedef struct ctl_rule {
    ctl_metric metric;
    ctl_op     op;
    double     value;
    uint64_t   for_us;
    int        step;
    char       origin[24];     /* "rules[2]", "cpu_scale_up", ... */
} ctl_rule;

/* One policy's say in a step. */
typedef struct ctl_rec {
    char       policy[40];     /* "target:cpu", "rule:cpu_scale_up" */
    int        replicas;       /* recommendation, or CTL_NO_REC */
    double     value;          /* the metric value it looked at (NAN: none) */
    double     target;         /* target or threshold */
    char       note[96];
} ctl_rec;

#define CTL_MAX_RECS (CTL_M__COUNT + CTL_MAX_RULES + 1)   /* + the queue */

/* The queue policy's memory (ctl_queue_policy.c). */
typedef struct ctl_queue_state {
    bool     on;
    double   per_instance;
    uint64_t idle_to_zero;
    bool     idle;             /* depth 0 at every poll since idle_since */
    uint64_t idle_since;
    bool     zero;             /* the last verdict: the service may be at zero */
} ctl_queue_state;

void ctl_queue_state_init(ctl_queue_state *st, const ctl_queue_cfg *q);
/* The queue's recommendation: ceil(depth / per_instance); an unknown
 * depth holds `current` (never zero on an error); an empty queue keeps 1
 * until it has stayed empty for idle_to_zero (then 0, and st->zero). */
void ctl_queue_rec(ctl_queue_state *st, const ctl_queue_reading *q, int current, uint64_t now_us,
                   ctl_rec *out);

typedef struct ctl_policy {
    double   target[CTL_M__COUNT];   /* 0: no target tracking on it */
    double   tolerance;
    size_t   nrules;
    ctl_rule rules[CTL_MAX_RULES];
    bool     holding[CTL_MAX_RULES];  /* condition true at the last check */
    uint64_t since_us[CTL_MAX_RULES]; /* ... continuously since */
    ctl_queue_state queue;
} ctl_policy;

/* Builds policies from config: targets, CA-DMS thresholds, then rules.
 * -1 with a message naming the key when there are too many rules. */
int  ctl_policy_init(ctl_policy *p, const ctl_autoscale_cfg *c, char *err, size_t errlen);

/* HPA replica formula for one metric over instances m[0..n): missing
 * values count 0 % of target when scaling up and 100 % when scaling down;
 * warming instances count 0 % when scaling up and (unlike HPA) 100 % when
 * scaling down; |ratio - 1| <= tolerance keeps current. Returns the
 * recommendation (unclamped) or CTL_NO_REC (no ready instance has a
 * value). usage_out gets the average over ready instances (NAN if none). */
int  ctl_target_replicas(const ctl_inst_metrics *m, size_t n, ctl_metric metric, double target,
                         double tolerance, int current, uint64_t now_us, uint64_t warmup_us,
                         double *usage_out);

/* Evaluates every policy; fills recs (up to CTL_MAX_RECS) and returns how
 * many. Threshold rules advance their duration timers here, so call once
 * per check. The winner is the largest replicas among recs. */
size_t ctl_policy_eval(ctl_policy *p, const ctl_inst_metrics *m, size_t n,
                       const ctl_pool_metrics *pool, int current, uint64_t now_us,
                       uint64_t warmup_us, ctl_rec *recs);

/* Capacity advice from measured throughput (GET /api/v1/scaling/
 * recommendations): what one instance serves now, what it would serve at
 * the CPU target if throughput grows linearly with CPU, and so how many
 * instances a given load needs. NAN / -1 where the pool gives no basis
 * (no ready instance with both requests and CPU). */
typedef struct ctl_capacity {
    double rps_per_instance;            /* measured, over ready instances */
    double rps_per_instance_at_target;  /* scaled to target_cpu */
    double headroom_rps;                /* load the ready instances could add */
    int    needed_now;                  /* instances for the current load */
} ctl_capacity;

void ctl_capacity_estimate(const ctl_pool_metrics *p, double target_cpu, ctl_capacity *out);
/* Instances for `rps` at the target, with `headroom` (0.2: 20 % spare);
 * -1 when unknown. */
int  ctl_capacity_for(const ctl_capacity *c, double rps, double headroom);

/* ---- Scaler (ctl_scaler.c) ---------------------------------------------- */

typedef struct ctl_observation {
    const ctl_inst_metrics *inst;
    size_t                  n;
    const ctl_queue_reading *queue;   /* NULL: no queue policy */
} ctl_observation;

typedef enum {
    CTL_EV_NONE,        /* nothing to say */
    CTL_EV_SCALE_OUT,
    CTL_EV_SCALE_IN,
    CTL_EV_HOLD,        /* a change was wanted but held back (reason says why) */
    CTL_EV_MANUAL,      /* desired set by the API */
} ctl_event_kind;

const char *ctl_event_kind_name(ctl_event_kind k);

/* Everything that went into one decision. */
typedef struct ctl_event {
    uint64_t         time_us;
    ctl_event_kind   kind;
    int              old_count, new_count;
    int              recommended;      /* largest policy recommendation */
    int              stabilized;       /* after stabilization windows */
    char             policy[40];       /* the winning policy */
    char             reason[160];
    ctl_pool_metrics metrics;
    size_t           nrecs;
    ctl_rec          recs[CTL_MAX_RECS];
    ctl_queue_reading queue;           /* on: the queue reading it saw */
} ctl_event;

typedef struct ctl_decision {
    int       desired;       /* instance count to converge to */
    bool      changed;
    bool      record;        /* worth a history entry (changes, new holds) */
    ctl_event event;
} ctl_decision;

typedef struct ctl_scaler ctl_scaler;

/* initial: starting count (clamped to min/max). NULL + err on a bad config. */
ctl_scaler *ctl_scaler_new(const ctl_autoscale_cfg *c, int initial, char *err, size_t errlen);
void        ctl_scaler_free(ctl_scaler *s);
/* Swaps the config (c->enabled included), keeping the count, cooldown
 * timers, rule timers of unchanged rules and the recommendation history.
 * The scaler keeps no pointer into c. */
int         ctl_scaler_set_config(ctl_scaler *s, const ctl_autoscale_cfg *c, char *err, size_t errlen);
void        ctl_scaler_set_enabled(ctl_scaler *s, bool on);
bool        ctl_scaler_enabled(const ctl_scaler *s);
int         ctl_scaler_desired(const ctl_scaler *s);
/* Adopts n as the current count without an event or cooldown (the count
 * moved while the autoscaler was stopped) and forgets past recommendations. */
void        ctl_scaler_sync(ctl_scaler *s, int n);
/* Time left on the scale-out and scale-in cooldowns at now (0: none). */
void        ctl_scaler_cooldowns(const ctl_scaler *s, uint64_t now_us, uint64_t *out_left,
                                 uint64_t *in_left);
/* One check. now_us is wall-clock time (CLOCK_REALTIME): cooldowns and
 * windows are measured on it and it stamps the event. Allocates nothing. */
void        ctl_scaler_step(ctl_scaler *s, const ctl_observation *obs, uint64_t now_us,
                            ctl_decision *out);
/* Manual count (POST /api/v1/scaling/desired): -1 with a message when out
 * of [min, max]. Starts both cooldowns so the autoscaler leaves it a while,
 * and forgets past recommendations. */
int         ctl_scaler_set_desired(ctl_scaler *s, int n, uint64_t now_us, ctl_decision *out,
                                   char *err, size_t errlen);

/* The event as one JSON object (no newline). */
void        ctl_event_to_json(const ctl_event *e, buf *out);

/* ---- History (ctl_history.c) -------------------------------------------- */

/* An append-only log of JSON objects, one per line, in
 * <dir>/<name>.jsonl, with the newest `limit` kept in memory. When the file
 * reaches `limit` lines it is renamed to <name>.jsonl.1 (replacing the
 * previous one) and a new file begun, so disk use stays under 2 * limit. */
typedef struct ctl_history ctl_history;

ctl_history *ctl_history_open(const char *dir, const char *name, size_t limit,
                              char *err, size_t errlen);
void         ctl_history_close(ctl_history *h);
/* Appends one JSON object (must parse, must not hold a newline), then
 * fdatasync. 0, or -1 with a message. */
int          ctl_history_append(ctl_history *h, const char *json, size_t len,
                                char *err, size_t errlen);
size_t       ctl_history_count(const ctl_history *h);
/* i = 0 is the newest; NULL past the end. */
const char  *ctl_history_get(const ctl_history *h, size_t i);
/* Appends a JSON array of the newest `limit` entries (0: all), newest first. */
void         ctl_history_query(const ctl_history *h, size_t limit, buf *out);
/* Lines skipped at open (torn or not JSON). */
size_t       ctl_history_skipped(const ctl_history *h);

#endif
