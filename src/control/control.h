/* control.h -- the control plane's public face: the `control:` configuration
 * section, the view of one instance, the seam where the autoscaler plugs in,
 * and the entry points that run the whole thing.
 *
 * The control plane keeps a pool of instances of one template at a desired
 * count (process driver: children on loopback ports; exec driver: user
 * scripts), registers the ready ones with the gateway's runtime API and
 * drains them through it before they stop, so scaling never drops a
 * request. It answers the scaling API on its own listener. Without a
 * gateway URL it only manages instances. */
#ifndef HSCALE_CONTROL_CONTROL_H
#define HSCALE_CONTROL_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/config.h"

/* An instance's listener: a free loopback port, or none at all (a worker
 * that takes its work from a queue: no address, never behind the gateway,
 * never probed or scraped over HTTP). */
typedef enum { CTL_PORT_AUTO, CTL_PORT_NONE } ctl_port_mode;

/* Who gets the polite SIGTERM of a stop (the SIGKILL after stop_grace
 * always goes to the whole process group). group: every process of the
 * instance; mixed: the main process only, which stops its own children
 * (systemd's KillMode=mixed; what Celery's prefork pool needs, as its
 * pool children die at once on a SIGTERM of their own); auto: mixed for
 * port none, group otherwise. */
typedef enum { CTL_KILL_AUTO, CTL_KILL_GROUP, CTL_KILL_MIXED } ctl_kill_mode;

/* How to start one instance. Placeholders in command, env values, workdir
 * and ready_command: {port} {host} {id} {version} {exe} (this binary)
 * {state_dir}; {port} is an error with port: none. */
typedef struct ctl_template_cfg {
    char    *command;          /* NULL: this binary's `app` on {host}:{port} */
    char   **env;              /* "KEY=value" */
    size_t   nenv;
    char    *workdir;          /* NULL: inherit */
    char    *ready_path;       /* readiness probe path */
    char    *metrics_path;     /* Prometheus text; "" or NULL: the service has none */
    char    *version;
    char    *host;             /* the address instances listen on */
    uint64_t start_timeout_us; /* not ready by then: killed and restarted */
    int      port;             /* ctl_port_mode */
    char    *ready_command;    /* port none: ready (and healthy) when it exits 0; NULL: when up */
    uint64_t ready_timeout_us; /* longest run of one ready_command */
    int      kill_mode;        /* ctl_kill_mode */
} ctl_template_cfg;

/* Does the template stop with SIGTERM to the main process only? */
bool ctl_tmpl_stop_mixed(const ctl_template_cfg *t);

extern const cfg_schema ctl_template_schema;

typedef struct ctl_exec_cfg {
    char    *launch;           /* prints the new instance's host:port */
    char    *terminate;        /* called as: terminate ID ADDR */
    char    *list;             /* prints "ID ADDR" lines */
    uint64_t timeout_us;       /* per script run */
} ctl_exec_cfg;

/* The gateway's active check of the service's pool (ALB target group
 * semantics): the path is the template's ready_path, so what makes the
 * control plane call an instance ready is what keeps it in rotation. */
typedef struct ctl_health_cfg {
    uint64_t interval_us;
    uint64_t timeout_us;
    int      healthy_threshold;    /* passes in a row that bring a member back */
    int      unhealthy_threshold;  /* failures in a row that take it out */
} ctl_health_cfg;

typedef enum { CTL_DRIVER_PROCESS, CTL_DRIVER_EXEC } ctl_driver_kind;

typedef struct ctl_config {
    char    *listen;           /* scaling API listener */
    char    *token;            /* admin bearer token for the API (NULL: open) */
    char    *read_token;       /* read-only bearer token (status, history) */
    char    *app_admin_token;  /* bearer token of the instances' /admin paths */
    double   shard_rebalance_threshold;  /* rebalance-check: share deviation flagged */
    char    *token_file;       /* files the tokens are read from (validate) */
    char    *read_token_file;
    char    *gateway_token_file;
    char   **allowed_hosts;    /* Host names answered besides IPs and localhost */
    size_t   nallowed_hosts;
    char    *tls_cert;         /* both set: the API speaks https */
    char    *tls_key;
    char    *state_dir;        /* logs of children, history */
    char    *sd_file;          /* Prometheus file_sd targets; NULL: none */
    char    *gateway;          /* admin API URL; NULL: no registration */
    char    *gateway_token;
    char    *gateway_ca_file;  /* CA bundle to verify an https gateway */
    char    *pool;             /* gateway pool the instances join */
    int      weight;           /* weight given to registered instances */
    int      driver;           /* ctl_driver_kind */
    int      instances;        /* initial desired count */
    int      max_instances;    /* hard ceiling for a manual count */
    uint64_t check_interval_us;    /* health probe period of ready instances */
    int      unhealthy_checks;     /* failed probes in a row that replace one */
    uint64_t drain_timeout_us;     /* longest wait for in-flight to reach 0 */
    uint64_t stop_grace_us;        /* SIGTERM to SIGKILL */
    uint64_t restart_backoff_us;   /* first restart delay; doubles per crash */
    uint64_t restart_backoff_max_us;
    ctl_health_cfg   health;       /* the gateway pool's checks */
    ctl_template_cfg tmpl;
    ctl_exec_cfg     exec;
} ctl_config;

extern const cfg_schema ctl_config_schema;

typedef enum {
    CTL_INST_STARTING, CTL_INST_READY, CTL_INST_DRAINING, CTL_INST_STOPPING,
    CTL_INST_STOPPED, CTL_INST_FAILED,
} ctl_inst_state;

const char *ctl_inst_state_name(ctl_inst_state s);

/* A copy of one instance record, safe to keep. Times are wall clock
 * (CLOCK_REALTIME) microseconds, 0 when not reached yet. */
typedef struct ctl_instance_info {
    char           id[32];
    char           address[64];    /* host:port, "" until launched */
    char           version[64];
    ctl_inst_state state;
    pid_t          pid;            /* process driver; 0 otherwise */
    uint64_t       started_at_us;
    uint64_t       ready_at_us;
    int            restarts;
    bool           managed;        /* counted toward the desired count */
    bool           registered;     /* member of the gateway pool */
    bool           healthy;        /* last readiness probe passed */
    char           last_error[160];
} ctl_instance_info;

struct http_router;

/* The seam where the autoscaler's decision plugs in. Every hook is
 * optional; NULL hooks leave the count to the API (manual scaling). */
typedef struct ctl_hooks {
    void *arg;
    /* Called from the control loop every check interval with the current
     * instances and desired count; returns the new desired count, or -1 to
     * keep it. May block briefly (scrapes). */
    int  (*decide)(void *arg, const ctl_instance_info *inst, size_t n, int desired,
                   uint64_t now_us);
    /* POST /api/v1/scaling/desired: vets a manual count (bounds, cooldown
     * bookkeeping). -1 with a message refuses it with 400. */
    int  (*set_desired)(void *arg, int count, char *err, size_t errlen);
    /* Adds members to the status object (a JSON fragment starting with ','
     * such as ,"autoscaling":{...}). */
    void (*status_json)(void *arg, buf *out);
    /* How often decide runs; NULL or 0: the control check_interval. */
    uint64_t (*interval_us)(void *arg);
    /* Adds routes to the control listener (the scaling API beyond the
     * manager's own); -1 fails ctl_start. */
    int  (*routes)(void *arg, struct http_router *r);
    /* An accepted change through the API, as one JSON object (an audit
     * event), to keep with the scaling history. */
    void (*audit)(void *arg, const char *json, size_t len);
} ctl_hooks;

typedef struct ctl_control ctl_control;

/* The autoscaler (ctl_autoscaler.c): scrapes every ready instance and the
 * gateway each check interval, decides through the policies of the
 * `autoscaling:` section (struct ctl_autoscale_cfg, control/ctl_autoscale.h)
 * and keeps the history in <state_dir>/scaling.jsonl. Plug it in with
 * ctl_autoscaler_hooks; c and a must outlive it (a is copied). */
struct ctl_autoscale_cfg;
typedef struct ctl_autoscaler ctl_autoscaler;
ctl_autoscaler *ctl_autoscaler_new(const ctl_config *c, const struct ctl_autoscale_cfg *a,
                                   char *err, size_t errlen);
void            ctl_autoscaler_hooks(ctl_autoscaler *as, ctl_hooks *out);
void            ctl_autoscaler_free(ctl_autoscaler *as);

/* One service of a control plane: its name (API paths, CLI --service), its
 * whole config (shared keys equal across services; the first service's
 * listen, token, gateway and sd_file are the ones used) and its autoscaler
 * seam (may be NULL). */
typedef struct ctl_service_def {
    const char       *name;
    const ctl_config *c;
    const ctl_hooks  *hooks;
} ctl_service_def;

#define CTL_MAX_SERVICES 32

/* Starts every service's instance manager behind one API listener. The
 * first service answers the paths that name none. */
ctl_control *ctl_start_services(const ctl_service_def *defs, size_t n, char *err, size_t errlen);
/* The single-service form: one service named "default". hooks may be NULL. */
ctl_control *ctl_start(const ctl_config *c, const ctl_hooks *hooks, char *err, size_t errlen);
/* SIGHUP: re-reads the API's TLS certificate and key (logs the outcome). */
int          ctl_tls_reload(ctl_control *cc);
/* The bound API port (useful with port 0). */
int          ctl_api_port(const ctl_control *cc);
/* Drains and stops every instance, then the listener. */
void         ctl_stop(ctl_control *cc);
/* ctl_start_services, then waits for SIGINT or SIGTERM, then ctl_stop.
 * Exit code. */
int          ctl_run_services(const ctl_service_def *defs, size_t n);
int          ctl_run(const ctl_config *c, const ctl_hooks *hooks);

/* `hscale down` for one instance state file (ctl_down.c): when the control
 * plane that wrote it still runs, SIGTERM to it and a wait of up to
 * wait_ms for it to drain and stop its instances; when it crashed, the
 * instances still alive (same pid and start time) are drained through
 * the gateway the file names (token: HSCALE_CONTROL_GATEWAY_TOKEN) and
 * stopped (SIGTERM, SIGKILL after grace_ms), and the file is emptied.
 * *stopped gets how many instances it stopped itself. 0 when nothing it
 * named is left, -1 with err. */
int          ctl_down_statefile(const char *path, int wait_ms, int grace_ms, int *stopped,
                                char *err, size_t errlen);

#endif
