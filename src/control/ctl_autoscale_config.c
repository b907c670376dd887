/* ctl_autoscale_config.c -- the `autoscaling:` configuration section.
 *
 * Defaults are the seeds' numbers: a 2 s check (the seeds use 30 s; hscale
 * reacts in seconds), min 2 / max 10 (SurgiCase), cooldowns 60 s out and
 * 300 s in (MedEase), a 300 s scale-in stabilization window and the HPA
 * growth cap max(2x, +4) per step, CPU target 70 % and memory 80 %.
 *
 * The CA-DMS threshold names (cpu_scale_up, ..., scale_cooldown) sit at the
 * top of the section so the seed's JSON body is accepted as it is by
 * `PUT /api/v1/scaling/config`; each non-zero one becomes a threshold rule
 * (see ctl_policy.c). CareCompanion's tables are written as `rules`. */
#include "control/ctl_autoscale.h"

#include <stddef.h>
#include <stdio.h>

#include "http/client.h"

#define F(m) offsetof(ctl_autoscale_cfg, m)
#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const ops[] = { "above", "below", NULL };

static const cfg_field rule_fields[] = {
    { .key = "metric", .type = CFG_ENUM, .offset = offsetof(ctl_rule_cfg, metric), .def = "cpu",
      .choices = ctl_metric_names,
      .help = "cpu | memory (%) | rps | in_flight | p95 (ms) | error_rate (%) | connections" },
    { .key = "op", .type = CFG_ENUM, .offset = offsetof(ctl_rule_cfg, op), .def = "above",
      .choices = ops, .help = "above: scale out when over value; below: scale in when under it" },
    { .key = "value", .type = CFG_DOUBLE, .offset = offsetof(ctl_rule_cfg, value), .def = "0",
      .min = 0, .max = 1e12, .help = "threshold in the metric's unit" },
    { .key = "for", .type = CFG_DURATION, .offset = offsetof(ctl_rule_cfg, for_us), .def = "0s",
      .max = 86400, .help = "the condition must hold this long without a break" },
    { .key = "step", .type = CFG_INT, .offset = offsetof(ctl_rule_cfg, step), .def = "1",
      .min = 1, .max = 1000, .help = "instances added or removed when it fires" },
};

static int rule_validate(void *obj, cfg_error *err)
{
    const ctl_rule_cfg *r = obj;
    if (!(r->value > 0) && r->op == CTL_OP_ABOVE) {
        snprintf(err->key, sizeof err->key, "value");
        snprintf(err->msg, sizeof err->msg, "an 'above' rule needs a value greater than 0");
        return -1;
    }
    return 0;
}

static const cfg_schema rule_schema = { "rule", rule_fields, N(rule_fields), rule_validate };

static const cfg_field target_fields[] = {
    { .key = "cpu", .type = CFG_PERCENT, .offset = offsetof(ctl_targets_cfg, cpu), .def = "70",
      .min = 0, .max = 10000, .env = "HSCALE_TARGET_CPU",
      .help = "average CPU % of cpu_cores per instance (0: off)" },
    { .key = "memory", .type = CFG_PERCENT, .offset = offsetof(ctl_targets_cfg, memory), .def = "80",
      .help = "average memory % of memory_limit (0: off)" },
    { .key = "p95", .type = CFG_DURATION, .offset = offsetof(ctl_targets_cfg, p95), .def = "0s",
      .max = 600, .help = "average per-instance p95 latency (0: off)" },
    { .key = "rps", .type = CFG_DOUBLE, .offset = offsetof(ctl_targets_cfg, rps), .def = "0",
      .min = 0, .max = 1e9, .help = "requests/s per instance (0: off)" },
    { .key = "in_flight", .type = CFG_DOUBLE, .offset = offsetof(ctl_targets_cfg, in_flight),
      .def = "0", .min = 0, .max = 1e9, .help = "requests in flight per instance (0: off)" },
    { .key = "error_rate", .type = CFG_PERCENT, .offset = offsetof(ctl_targets_cfg, error_rate),
      .def = "0", .help = "5xx % per instance (0: off)" },
    { .key = "connections", .type = CFG_DOUBLE, .offset = offsetof(ctl_targets_cfg, connections),
      .def = "0", .min = 0, .max = 1e9, .help = "open connections per instance (0: off)" },
};

static const cfg_schema target_schema = { "target", target_fields, N(target_fields), NULL };

static const cfg_field prom_fields[] = {
    { .key = "url", .type = CFG_STRING, .offset = offsetof(ctl_queue_prom_cfg, url),
      .help = "Prometheus base URL, e.g. http://127.0.0.1:9090 (instant query at /api/v1/query)" },
    { .key = "query", .type = CFG_STRING, .offset = offsetof(ctl_queue_prom_cfg, query),
      .help = "PromQL with one result, its value the depth (no series: 0)" },
};

static const cfg_schema prom_schema = { "prometheus", prom_fields, N(prom_fields), NULL };

static int set_err(cfg_error *err, const char *key, const char *msg)
{
    snprintf(err->key, sizeof err->key, "%s", key);
    snprintf(err->msg, sizeof err->msg, "%s", msg);
    return -1;
}

static int queue_validate(void *obj, cfg_error *err)
{
    const ctl_queue_cfg *q = obj;
    bool redis = q->redis && q->redis[0], prom = q->prometheus.url && q->prometheus.url[0];
    bool url = q->url && q->url[0];
    if (redis + prom + url > 1)
        return set_err(err, url ? "url" : "prometheus.url",
                       "one depth source only: redis, prometheus.url or url");
    char e[200];
    if (redis) {
        ctl_redis_url u;
        if (ctl_redis_url_parse(q->redis, &u, e, sizeof e) < 0)
            return set_err(err, "redis", e);
        if (!q->list || !q->list[0])
            return set_err(err, "list", "expected the name of the list tasks are pushed to");
    }
    if (prom && !(q->prometheus.query && q->prometheus.query[0]))
        return set_err(err, "prometheus.query", "expected a PromQL query with prometheus.url");
    if (!prom && q->prometheus.query && q->prometheus.query[0])
        return set_err(err, "prometheus.url", "expected the Prometheus URL the query goes to");
    if (url && !(q->json && q->json[0]))
        return set_err(err, "json", "expected where the number is in the document at url "
                       "(JSON pointer /a/0/b or dotted path a.0.b)");
    if (!url && q->json && q->json[0])
        return set_err(err, "url", "expected the URL of the JSON document json points into");
    const char *u = prom ? q->prometheus.url : url ? q->url : NULL;
    if (u) {
        http_url pu;
        if (http_url_parse(u, &pu, e, sizeof e) < 0)
            return set_err(err, prom ? "prometheus.url" : "url", e);
    }
    return 0;
}

static const cfg_field queue_fields[] = {
    { .key = "redis", .type = CFG_STRING, .offset = offsetof(ctl_queue_cfg, redis),
      .env = "HSCALE_QUEUE_REDIS",
      .help = "Redis broker URL redis://[[user]:password@]host[:port][/db]: depth = LLEN list "
              "(+ its kombu priority lists) + HLEN unacked" },
    { .key = "list", .type = CFG_STRING, .offset = offsetof(ctl_queue_cfg, list), .def = "celery",
      .help = "the Redis list tasks are pushed to (Celery: the queue name)" },
    { .key = "unacked", .type = CFG_STRING, .offset = offsetof(ctl_queue_cfg, unacked),
      .def = "unacked",
      .help = "Redis hash of reserved but unacknowledged tasks (kombu's; \"\": not counted)" },
    { .key = "prometheus", .type = CFG_OBJECT, .offset = offsetof(ctl_queue_cfg, prometheus),
      .sub = &prom_schema, .help = "depth from a Prometheus instant query" },
    { .key = "url", .type = CFG_STRING, .offset = offsetof(ctl_queue_cfg, url),
      .help = "depth from a number in the JSON document at this http:// URL" },
    { .key = "json", .type = CFG_STRING, .offset = offsetof(ctl_queue_cfg, json),
      .help = "where the number is in that document: JSON pointer /a/0/b or dotted path a.0.b" },
    { .key = "per_instance", .type = CFG_DOUBLE, .offset = offsetof(ctl_queue_cfg, per_instance),
      .def = "5", .min = 0.001, .max = 1e9,
      .help = "depth one instance is sized for: instances = ceil(depth / this), within min..max" },
    { .key = "poll_interval", .type = CFG_DURATION, .offset = offsetof(ctl_queue_cfg, poll_interval),
      .def = "1s", .min = 0.05, .max = 3600,
      .help = "poll the depth (and decide) this often; from zero the first task starts a worker "
              "at the next poll, cooldowns and stabilization aside" },
    { .key = "idle_to_zero", .type = CFG_DURATION, .offset = offsetof(ctl_queue_cfg, idle_to_zero),
      .def = "300s", .max = 86400,
      .help = "with min_instances 0: go to zero once the queue stayed empty (nothing waiting or "
              "unacked) this long (KEDA's cooldownPeriod)" },
    { .key = "timeout", .type = CFG_DURATION, .offset = offsetof(ctl_queue_cfg, timeout),
      .def = "1s", .min = 0.01, .max = 60,
      .help = "longest poll; a failed one leaves the depth unknown and the count held" },
};

const cfg_schema ctl_queue_schema = { "queue", queue_fields, N(queue_fields), queue_validate };

static int below(cfg_error *err, const char *lo_key, double lo, const char *hi_key, double hi)
{
    if (lo > 0 && hi > 0 && lo >= hi) {
        snprintf(err->key, sizeof err->key, "%s", lo_key);
        snprintf(err->msg, sizeof err->msg, "%g must be below %s (%g), or the pool would flap",
                 lo, hi_key, hi);
        return -1;
    }
    return 0;
}

static int autoscale_validate(void *obj, cfg_error *err)
{
    const ctl_autoscale_cfg *c = obj;
    if (c->min_instances > c->max_instances) {
        snprintf(err->key, sizeof err->key, "max_instances");
        snprintf(err->msg, sizeof err->msg, "%d is below min_instances (%d)",
                 c->max_instances, c->min_instances);
        return -1;
    }
    if (below(err, "cpu_scale_down", c->cpu_scale_down, "cpu_scale_up", c->cpu_scale_up) < 0 ||
        below(err, "memory_scale_down", c->memory_scale_down, "memory_scale_up", c->memory_scale_up) < 0 ||
        below(err, "connections_scale_down", c->connections_scale_down, "connections_scale_up",
              c->connections_scale_up) < 0)
        return -1;
    size_t nca = 0;
    const double ca[] = { c->cpu_scale_up, c->cpu_scale_down, c->memory_scale_up, c->memory_scale_down,
                          c->response_time_scale_up, c->connections_scale_up, c->connections_scale_down };
    for (size_t i = 0; i < N(ca); i++)
        nca += ca[i] > 0;
    if (nca + c->nrules > CTL_MAX_RULES) {
        snprintf(err->key, sizeof err->key, "rules");
        snprintf(err->msg, sizeof err->msg, "at most %d threshold rules in all (%zu given)",
                 CTL_MAX_RULES, nca + c->nrules);
        return -1;
    }
    return 0;
}

static const cfg_field autoscale_fields[] = {
    { .key = "enabled", .type = CFG_BOOL, .offset = F(enabled), .def = "true",
      .env = "AUTO_SCALING_ENABLED", .help = "change the instance count automatically" },
    { .key = "check_interval", .type = CFG_DURATION, .offset = F(check_interval), .def = "2s",
      .env = "SCALING_CHECK_INTERVAL", .min = 0.05, .max = 3600,
      .help = "scrape and decide this often (a bare number is seconds)" },
    { .key = "min_instances", .type = CFG_INT, .offset = F(min_instances), .def = "2",
      .env = "MIN_INSTANCES", .min = 0, .max = 10000,
      .help = "never fewer instances (0: to zero and back on a queue policy; without one only a "
              "manual count goes to 0)" },
    { .key = "max_instances", .type = CFG_INT, .offset = F(max_instances), .def = "10",
      .env = "MAX_INSTANCES", .min = 1, .max = 10000, .help = "never more instances" },
    { .key = "scale_out_cooldown", .type = CFG_DURATION, .offset = F(scale_out_cooldown), .def = "60s",
      .env = "HSCALE_SCALE_OUT_COOLDOWN", .max = 86400,
      .help = "after a scale-out, wait this long before the next one" },
    { .key = "scale_in_cooldown", .type = CFG_DURATION, .offset = F(scale_in_cooldown), .def = "300s",
      .env = "HSCALE_SCALE_IN_COOLDOWN", .max = 86400,
      .help = "after any scaling, wait this long before a scale-in" },
    { .key = "scale_cooldown", .type = CFG_DURATION, .offset = F(scale_cooldown), .def = "0s",
      .max = 86400, .help = "CA-DMS: one cooldown for both directions (0: use the two above)" },
    { .key = "scale_in_stabilization", .type = CFG_DURATION, .offset = F(scale_in_stabilization),
      .def = "300s", .max = 86400,
      .help = "scale in only to the highest recommendation over this window" },
    { .key = "scale_out_stabilization", .type = CFG_DURATION, .offset = F(scale_out_stabilization),
      .def = "0s", .max = 86400,
      .help = "scale out only to the lowest recommendation over this window" },
    { .key = "warmup", .type = CFG_DURATION, .offset = F(warmup), .def = "30s", .max = 3600,
      .help = "a new instance stays out of the averages until ready plus this" },
    { .key = "tolerance", .type = CFG_DOUBLE, .offset = F(tolerance), .def = "0.1", .min = 0, .max = 1,
      .help = "target tracking ignores |value/target - 1| up to this" },
    { .key = "max_growth_factor", .type = CFG_DOUBLE, .offset = F(max_growth_factor), .def = "2",
      .min = 1, .max = 100, .help = "one step grows to at most max(current * this, current + max_growth_add)" },
    { .key = "max_growth_add", .type = CFG_INT, .offset = F(max_growth_add), .def = "4", .min = 0,
      .max = 10000, .help = "see max_growth_factor" },
    { .key = "max_shrink_step", .type = CFG_INT, .offset = F(max_shrink_step), .def = "0", .min = 0,
      .max = 10000, .help = "one step removes at most this many (0: no cap)" },
    { .key = "cpu_cores", .type = CFG_DOUBLE, .offset = F(cpu_cores), .def = "1", .min = 0.01,
      .max = 4096, .help = "CPU one instance is sized for: 100 % CPU means this many cores busy" },
    { .key = "memory_limit", .type = CFG_SIZE, .offset = F(memory_limit), .def = "0",
      .help = "memory one instance may use: 100 % memory (0: the machine's MemTotal)" },
    { .key = "target", .type = CFG_OBJECT, .offset = F(target), .sub = &target_schema,
      .help = "target tracking (HPA formula), the largest recommendation wins" },
    { .key = "queue", .type = CFG_OBJECT, .offset = F(queue), .sub = &ctl_queue_schema,
      .help = "queue-depth policy (off unless redis, prometheus.url or url is set)" },
    { .key = "cpu_scale_up", .type = CFG_PERCENT, .offset = F(cpu_scale_up), .def = "0",
      .help = "CA-DMS: scale out above this CPU % (0: off)" },
    { .key = "cpu_scale_down", .type = CFG_PERCENT, .offset = F(cpu_scale_down), .def = "0",
      .help = "CA-DMS: scale in below this CPU % (0: off)" },
    { .key = "memory_scale_up", .type = CFG_PERCENT, .offset = F(memory_scale_up), .def = "0",
      .help = "CA-DMS: scale out above this memory % (0: off)" },
    { .key = "memory_scale_down", .type = CFG_PERCENT, .offset = F(memory_scale_down), .def = "0",
      .help = "CA-DMS: scale in below this memory % (0: off)" },
    { .key = "response_time_scale_up", .type = CFG_DOUBLE, .offset = F(response_time_scale_up),
      .def = "0", .min = 0, .max = 3.6e6, .help = "CA-DMS: scale out above this p95 in ms (0: off)" },
    { .key = "connections_scale_up", .type = CFG_DOUBLE, .offset = F(connections_scale_up), .def = "0",
      .min = 0, .max = 1e9, .help = "CA-DMS: scale out above this many connections per instance (0: off)" },
    { .key = "connections_scale_down", .type = CFG_DOUBLE, .offset = F(connections_scale_down),
      .def = "0", .min = 0, .max = 1e9,
      .help = "CA-DMS: scale in below this many connections per instance (0: off)" },
    { .key = "threshold_up_for", .type = CFG_DURATION, .offset = F(threshold_up_for), .def = "0s",
      .max = 86400, .help = "CA-DMS scale-out thresholds must hold this long" },
    { .key = "threshold_down_for", .type = CFG_DURATION, .offset = F(threshold_down_for), .def = "0s",
      .max = 86400, .help = "CA-DMS scale-in thresholds must hold this long" },
    { .key = "threshold_step", .type = CFG_INT, .offset = F(threshold_step), .def = "1", .min = 1,
      .max = 1000, .help = "instances per CA-DMS threshold step" },
    { .key = "rules", .type = CFG_LIST, .offset = F(rules), .sub = &rule_schema,
      .elem_size = sizeof(ctl_rule_cfg), .count_offset = F(nrules),
      .help = "threshold rules with durations (e.g. cpu above 70 for 5m, step 1)" },
    { .key = "history_limit", .type = CFG_INT, .offset = F(history_limit), .def = "1000", .min = 10,
      .max = 1000000, .help = "scaling events kept (the log rotates at this many)" },
};

const cfg_schema ctl_autoscale_schema = { "autoscaling", autoscale_fields, N(autoscale_fields),
                                          autoscale_validate };
