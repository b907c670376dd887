/* ctl_config.c -- the `control:` configuration schema and its cross-field
 * checks.
 *
 * Defaults make `hscale control` useful alone: three instances of this
 * binary's `app` (the SurgiCase seed's starting count) on loopback, the API
 * on 127.0.0.1:8081 (8080 is the gateway, 8082 its admin API), no gateway
 * registration until `gateway` names the admin URL. Drains get 30 s, stops
 * 10 s between SIGTERM and SIGKILL, and a crash loop backs off from 1 s to
 * 30 s. */
#include "control/control.h"

#include <stdio.h>
#include <string.h>

#include "control/ctl_instances.h"
#include "http/client.h"
#include "http/server.h"

#include <stdlib.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const port_modes[] = { "auto", "none", NULL };
static const char *const kill_modes[] = { "auto", "group", "mixed", NULL };

static const cfg_field tmpl_fields[] = {
    { .key = "command", .type = CFG_STRING, .offset = offsetof(ctl_template_cfg, command),
      .env = "HSCALE_CONTROL_COMMAND",
      .help = "instance command; {port} {host} {id} {version} {exe} {state_dir} are expanded "
              "(unset: this binary's app)" },
    { .key = "env", .type = CFG_STRLIST, .offset = offsetof(ctl_template_cfg, env),
      .count_offset = offsetof(ctl_template_cfg, nenv),
      .help = "KEY=value pairs added to the instance's environment (placeholders expanded)" },
    { .key = "workdir", .type = CFG_STRING, .offset = offsetof(ctl_template_cfg, workdir),
      .help = "working directory of the instance (unset: inherit)" },
    { .key = "ready_path", .type = CFG_STRING, .offset = offsetof(ctl_template_cfg, ready_path),
      .def = "/health/ready", .help = "readiness probe path (2xx or 3xx is ready)" },
    { .key = "metrics_path", .type = CFG_STRING, .offset = offsetof(ctl_template_cfg, metrics_path),
      .def = "/metrics",
      .help = "the service's Prometheus metrics, scraped and listed for discovery (\"\": it has none; "
              "CPU and memory then come from the operating system)" },
    { .key = "version", .type = CFG_STRING, .offset = offsetof(ctl_template_cfg, version),
      .def = "v1", .env = "HSCALE_CONTROL_VERSION", .help = "version label of the instances" },
    { .key = "host", .type = CFG_STRING, .offset = offsetof(ctl_template_cfg, host),
      .def = "127.0.0.1", .help = "address the instances listen on ({host})" },
    { .key = "start_timeout", .type = CFG_DURATION, .offset = offsetof(ctl_template_cfg, start_timeout_us),
      .def = "30s", .min = 0.1, .max = 3600, .help = "not ready by then: killed and restarted" },
    { .key = "port", .type = CFG_ENUM, .offset = offsetof(ctl_template_cfg, port), .def = "auto",
      .choices = port_modes,
      .help = "auto: a free loopback port per instance ({port}); none: a worker with no listener "
              "(no address, not behind the gateway, never probed over HTTP)" },
    { .key = "ready_command", .type = CFG_STRING, .offset = offsetof(ctl_template_cfg, ready_command),
      .help = "port none: ready (and healthy, every check_interval) when this exits 0; run without "
              "a shell in workdir with env (unset: ready once its process is up)" },
    { .key = "ready_timeout", .type = CFG_DURATION, .offset = offsetof(ctl_template_cfg, ready_timeout_us),
      .def = "5s", .min = 0.01, .max = 600, .help = "longest run of one ready_command (then it counts as failed)" },
    { .key = "kill_mode", .type = CFG_ENUM, .offset = offsetof(ctl_template_cfg, kill_mode),
      .def = "auto", .choices = kill_modes,
      .help = "who gets the stop's SIGTERM: group (every process) | mixed (the main process only; "
              "SIGKILL to the group after stop_grace) | auto (mixed with port none, else group)" },
};

bool ctl_tmpl_stop_mixed(const ctl_template_cfg *t)
{
    return t->kill_mode == CTL_KILL_MIXED || (t->kill_mode == CTL_KILL_AUTO && t->port == CTL_PORT_NONE);
}

static int tmpl_validate(void *obj, cfg_error *err)
{
    const ctl_template_cfg *t = obj;
    if (t->ready_path && t->ready_path[0] != '/') {
        snprintf(err->key, sizeof err->key, "ready_path");
        snprintf(err->msg, sizeof err->msg, "expected a path starting with '/', got '%s'",
                 t->ready_path);
        return -1;
    }
    if (t->metrics_path && t->metrics_path[0] && t->metrics_path[0] != '/') {
        snprintf(err->key, sizeof err->key, "metrics_path");
        snprintf(err->msg, sizeof err->msg, "expected a path starting with '/' (or \"\" for none), got '%s'",
                 t->metrics_path);
        return -1;
    }
    for (size_t i = 0; i < t->nenv; i++) {
        const char *eq = strchr(t->env[i], '=');
        if (!eq || eq == t->env[i]) {
            snprintf(err->key, sizeof err->key, "env[%zu]", i);
            snprintf(err->msg, sizeof err->msg, "expected KEY=value, got '%s'", t->env[i]);
            return -1;
        }
    }
    if (t->ready_command && t->ready_command[0] && t->port != CTL_PORT_NONE) {
        snprintf(err->key, sizeof err->key, "ready_command");
        snprintf(err->msg, sizeof err->msg, "only for port: none (an instance with a port is "
                 "probed at ready_path)");
        return -1;
    }
    /* Placeholders are checked now, so a typo or a {port} without a port
     * stops the start instead of failing every launch. */
    return ctl_tmpl_check(t, err->key, sizeof err->key, err->msg, sizeof err->msg);
}
const cfg_schema ctl_template_schema = { "template", tmpl_fields, N(tmpl_fields), tmpl_validate };

static const cfg_field exec_fields[] = {
    { .key = "launch", .type = CFG_STRING, .offset = offsetof(ctl_exec_cfg, launch),
      .help = "script that starts one instance and prints its host:port" },
    { .key = "terminate", .type = CFG_STRING, .offset = offsetof(ctl_exec_cfg, terminate),
      .help = "script called as `terminate ID ADDR`; exit 0 when it is gone" },
    { .key = "list", .type = CFG_STRING, .offset = offsetof(ctl_exec_cfg, list),
      .help = "script printing `ID host:port` lines of running instances (adopted at start)" },
    { .key = "timeout", .type = CFG_DURATION, .offset = offsetof(ctl_exec_cfg, timeout_us),
      .def = "60s", .min = 0.1, .max = 3600, .help = "longest run of one script" },
};
static const cfg_schema exec_schema = { "exec", exec_fields, N(exec_fields), NULL };

static const cfg_field health_fields[] = {
    { .key = "interval", .type = CFG_DURATION, .offset = offsetof(ctl_health_cfg, interval_us),
      .def = "30s", .min = 0.05, .max = 3600, .help = "gateway check period of each member" },
    { .key = "timeout", .type = CFG_DURATION, .offset = offsetof(ctl_health_cfg, timeout_us),
      .def = "5s", .min = 0.01, .max = 3600, .help = "a check not answered by then failed" },
    { .key = "healthy_threshold", .type = CFG_INT, .offset = offsetof(ctl_health_cfg, healthy_threshold),
      .def = "2", .min = 1, .max = 100, .help = "passes in a row that bring a member back" },
    { .key = "unhealthy_threshold", .type = CFG_INT,
      .offset = offsetof(ctl_health_cfg, unhealthy_threshold), .def = "3", .min = 1, .max = 100,
      .help = "failures in a row that take a member out of rotation" },
};
static int health_validate(void *obj, cfg_error *err)
{
    const ctl_health_cfg *h = obj;
    if (h->timeout_us > h->interval_us) {
        snprintf(err->key, sizeof err->key, "timeout");
        snprintf(err->msg, sizeof err->msg, "expected at most interval");
        return -1;
    }
    return 0;
}
static const cfg_schema health_schema = { "health", health_fields, N(health_fields), health_validate };

static const char *const drivers[] = { "process", "exec", NULL };

static const cfg_field ctl_fields[] = {
    { .key = "listen", .type = CFG_ADDR, .offset = offsetof(ctl_config, listen),
      .def = "127.0.0.1:8081", .env = "HSCALE_CONTROL_LISTEN", .help = "scaling API listener" },
    { .key = "token", .type = CFG_STRING, .offset = offsetof(ctl_config, token),
      .env = "HSCALE_CONTROL_TOKEN",
      .help = "admin bearer token of the API: every change (unset: open, loopback only)" },
    { .key = "token_file", .type = CFG_STRING, .offset = offsetof(ctl_config, token_file),
      .env = "HSCALE_CONTROL_TOKEN_FILE",
      .help = "file holding the admin token (first line; mode 600), instead of token" },
    { .key = "read_token", .type = CFG_STRING, .offset = offsetof(ctl_config, read_token),
      .env = "HSCALE_CONTROL_READ_TOKEN",
      .help = "read-only bearer token: status, metrics, history, dashboard (needs token)" },
    { .key = "read_token_file", .type = CFG_STRING, .offset = offsetof(ctl_config, read_token_file),
      .env = "HSCALE_CONTROL_READ_TOKEN_FILE", .help = "file holding the read-only token" },
    { .key = "app_admin_token", .type = CFG_STRING, .offset = offsetof(ctl_config, app_admin_token),
      .env = "HSCALE_APP_ADMIN_TOKEN",
      .help = "bearer token the instances' /admin paths want (app.admin_token): shard map, resharding" },
    { .key = "shard_rebalance_threshold", .type = CFG_DOUBLE,
      .offset = offsetof(ctl_config, shard_rebalance_threshold), .def = "0.2", .min = 0.01,
      .max = 10, .help = "rebalance-check flags a shard whose rows are more than this fraction"
      " over or under its weight's share" },
    { .key = "allowed_hosts", .type = CFG_STRLIST, .offset = offsetof(ctl_config, allowed_hosts),
      .count_offset = offsetof(ctl_config, nallowed_hosts), .env = "HSCALE_CONTROL_ALLOWED_HOSTS",
      .help = "Host names the API answers besides IP addresses and localhost (DNS-rebinding guard)" },
    { .key = "tls_cert", .type = CFG_STRING, .offset = offsetof(ctl_config, tls_cert),
      .env = "HSCALE_CONTROL_TLS_CERT",
      .help = "PEM certificate (chain) file: the API speaks https; reloaded on SIGHUP" },
    { .key = "tls_key", .type = CFG_STRING, .offset = offsetof(ctl_config, tls_key),
      .env = "HSCALE_CONTROL_TLS_KEY", .help = "PEM private key file of tls_cert" },
    { .key = "state_dir", .type = CFG_STRING, .offset = offsetof(ctl_config, state_dir),
      .def = "hscale-data/control", .env = "HSCALE_CONTROL_STATE_DIR",
      .help = "instance logs, instance state file (adoption after a crash), scaling history" },
    { .key = "sd_file", .type = CFG_STRING, .offset = offsetof(ctl_config, sd_file),
      .def = "hscale-data/prometheus/targets.json", .env = "HSCALE_CONTROL_SD_FILE",
      .help = "Prometheus file_sd targets, rewritten atomically on every change (empty: off)" },
    { .key = "gateway", .type = CFG_STRING, .offset = offsetof(ctl_config, gateway),
      .env = "HSCALE_CONTROL_GATEWAY",
      .help = "gateway admin API URL, e.g. http://127.0.0.1:8082 (unset: no registration)" },
    { .key = "gateway_token", .type = CFG_STRING, .offset = offsetof(ctl_config, gateway_token),
      .env = "HSCALE_CONTROL_GATEWAY_TOKEN", .help = "admin bearer token for the gateway admin API" },
    { .key = "gateway_token_file", .type = CFG_STRING, .offset = offsetof(ctl_config, gateway_token_file),
      .env = "HSCALE_CONTROL_GATEWAY_TOKEN_FILE", .help = "file holding gateway_token" },
    { .key = "gateway_ca_file", .type = CFG_STRING, .offset = offsetof(ctl_config, gateway_ca_file),
      .env = "HSCALE_CONTROL_GATEWAY_CA_FILE",
      .help = "PEM CA bundle that signs an https gateway's certificate (unset: the system's)" },
    { .key = "pool", .type = CFG_STRING, .offset = offsetof(ctl_config, pool), .def = "default",
      .env = "HSCALE_CONTROL_POOL", .help = "gateway pool the instances join" },
    { .key = "weight", .type = CFG_INT, .offset = offsetof(ctl_config, weight), .def = "1",
      .min = 1, .max = 1000, .help = "weight of each registered instance" },
    { .key = "driver", .type = CFG_ENUM, .offset = offsetof(ctl_config, driver), .def = "process",
      .choices = drivers, .env = "HSCALE_CONTROL_DRIVER",
      .help = "process (children on loopback ports) | exec (user scripts)" },
    { .key = "instances", .type = CFG_INT, .offset = offsetof(ctl_config, instances), .def = "3",
      .env = "HSCALE_CONTROL_INSTANCES", .min = 0, .max = 10000, .help = "instances at start" },
    { .key = "max_instances", .type = CFG_INT, .offset = offsetof(ctl_config, max_instances),
      .def = "100", .min = 1, .max = 10000, .help = "ceiling for any count, manual or automatic" },
    { .key = "check_interval", .type = CFG_DURATION, .offset = offsetof(ctl_config, check_interval_us),
      .def = "2s", .min = 0.05, .max = 3600, .help = "readiness probe period of ready instances" },
    { .key = "unhealthy_checks", .type = CFG_INT, .offset = offsetof(ctl_config, unhealthy_checks),
      .def = "3", .min = 1, .max = 1000, .help = "failed probes in a row that replace an instance" },
    { .key = "drain_timeout", .type = CFG_DURATION, .offset = offsetof(ctl_config, drain_timeout_us),
      .def = "30s", .min = 0, .max = 3600, .help = "longest wait for in-flight requests before a stop" },
    { .key = "stop_grace", .type = CFG_DURATION, .offset = offsetof(ctl_config, stop_grace_us),
      .def = "10s", .min = 0, .max = 3600,
      .help = "a stop's SIGTERM to its SIGKILL: the time to finish in-flight work (a worker's "
              "running task; size it to the longest task, e.g. 60s)" },
    { .key = "restart_backoff", .type = CFG_DURATION, .offset = offsetof(ctl_config, restart_backoff_us),
      .def = "1s", .min = 0.01, .max = 3600, .help = "first restart delay after a crash; doubles per crash" },
    { .key = "restart_backoff_max", .type = CFG_DURATION,
      .offset = offsetof(ctl_config, restart_backoff_max_us), .def = "30s", .min = 0.01, .max = 86400,
      .help = "cap on the restart delay" },
    { .key = "health", .type = CFG_OBJECT, .offset = offsetof(ctl_config, health),
      .sub = &health_schema,
      .help = "the gateway's checks of the pool (path: template.ready_path); written by `hscale up`" },
    { .key = "template", .type = CFG_OBJECT, .offset = offsetof(ctl_config, tmpl),
      .sub = &ctl_template_schema, .help = "how to start one instance" },
    { .key = "exec", .type = CFG_OBJECT, .offset = offsetof(ctl_config, exec), .sub = &exec_schema,
      .help = "scripts of the exec driver" },
};

/* token_file and its kind: the file wins, read here so every command
 * (control, up, --check) sees the same tokens. */
static int read_token_file(char **tok, const char *file, const char *key, cfg_error *err)
{
    if (!file || !file[0])
        return 0;
    char e[300];
    char *t = http_token_read_file(file, e, sizeof e);
    if (!t) {
        snprintf(err->key, sizeof err->key, "%s", key);
        snprintf(err->msg, sizeof err->msg, "%.200s", e);
        return -1;
    }
    free(*tok);
    *tok = t;
    return 0;
}

static int ctl_validate(void *obj, cfg_error *err)
{
    ctl_config *c = obj;
    if (read_token_file(&c->token, c->token_file, "token_file", err) < 0
        || read_token_file(&c->read_token, c->read_token_file, "read_token_file", err) < 0
        || read_token_file(&c->gateway_token, c->gateway_token_file, "gateway_token_file", err) < 0)
        return -1;
    if (c->read_token && c->read_token[0] && !(c->token && c->token[0])) {
        snprintf(err->key, sizeof err->key, "read_token");
        snprintf(err->msg, sizeof err->msg, "needs token (the admin token) too; otherwise "
                 "changes would be open");
        return -1;
    }
    if (!c->tls_cert != !c->tls_key) {
        snprintf(err->key, sizeof err->key, c->tls_cert ? "tls_key" : "tls_cert");
        snprintf(err->msg, sizeof err->msg, "TLS needs both tls_cert and tls_key");
        return -1;
    }
    if (c->instances > c->max_instances) {
        snprintf(err->key, sizeof err->key, "instances");
        snprintf(err->msg, sizeof err->msg, "expected at most max_instances (%d), got %d",
                 c->max_instances, c->instances);
        return -1;
    }
    if (c->restart_backoff_us > c->restart_backoff_max_us) {
        snprintf(err->key, sizeof err->key, "restart_backoff_max");
        snprintf(err->msg, sizeof err->msg, "expected at least restart_backoff");
        return -1;
    }
    if (!c->pool || !c->pool[0]) {
        snprintf(err->key, sizeof err->key, "pool");
        snprintf(err->msg, sizeof err->msg, "expected a pool name, got nothing");
        return -1;
    }
    if (c->gateway && c->gateway[0]) {
        char url[512], e[256];
        http_url u;
        snprintf(url, sizeof url, "%s%s", strstr(c->gateway, "://") ? "" : "http://", c->gateway);
        if (http_url_parse(url, &u, e, sizeof e) < 0) {
            snprintf(err->key, sizeof err->key, "gateway");
            snprintf(err->msg, sizeof err->msg, "expected http(s)://host:port: %.200s", e);
            return -1;
        }
    }
    if (c->driver == CTL_DRIVER_EXEC && c->tmpl.port == CTL_PORT_NONE) {
        snprintf(err->key, sizeof err->key, "template.port");
        snprintf(err->msg, sizeof err->msg, "none needs the process driver (exec scripts report "
                 "an address)");
        return -1;
    }
    if (c->driver == CTL_DRIVER_EXEC) {
        const char *missing = !c->exec.launch || !c->exec.launch[0] ? "exec.launch"
                            : !c->exec.terminate || !c->exec.terminate[0] ? "exec.terminate" : NULL;
        if (missing) {
            snprintf(err->key, sizeof err->key, "%s", missing);
            snprintf(err->msg, sizeof err->msg, "the exec driver needs this script");
            return -1;
        }
    }
    return 0;
}

const cfg_schema ctl_config_schema = { "control", ctl_fields, N(ctl_fields), ctl_validate };
