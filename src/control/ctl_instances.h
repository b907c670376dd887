/* ctl_instances.h -- the instance manager and what it is made of, internal
 * to src/control: template expansion, the gateway runtime API client, the
 * drivers and the manager itself.
 *
 * Threads: one supervisor thread owns every driver action (quick ones such
 * as the process driver's detached spawns happen there) and every state
 * change of a record. Other threads (API handlers, deploys) only ask:
 * they set the desired count, queue a start, or flag a record for retire,
 * and wait on the manager's condition variable if they need the outcome. */
#ifndef HSCALE_CONTROL_CTL_INSTANCES_H
#define HSCALE_CONTROL_CTL_INSTANCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "control/control.h"
#include "http/server.h"

/* ---- Templates (ctl_template.c) ----------------------------------------- */

typedef struct ctl_tmpl_vars {
    const char *id, *version, *host, *state_dir;
    int         port;
    bool        noport;    /* port: none; {port} is then an error */
} ctl_tmpl_vars;

/* Replaces {port} {host} {id} {version} {exe} {state_dir} in s; an unknown
 * {name} is an error naming it, "{{" and "}}" are literal braces. Returns a
 * malloc'd string or NULL with err filled. */
char  *ctl_tmpl_expand(const char *s, const ctl_tmpl_vars *v, char *err, size_t errlen);
/* Splits the command into words (quotes honoured, no shell) and expands
 * each word afterwards, so a value can never add or split words. NULL
 * command means the built-in default (this binary's `app`). Returns a
 * NULL-terminated argv to free with ctl_argv_free, or NULL with err. */
char **ctl_tmpl_argv(const ctl_template_cfg *t, const ctl_tmpl_vars *v, char *err, size_t errlen);
/* The expanded "K=V" environment (NULL-terminated), or NULL with err. */
char **ctl_tmpl_env(const ctl_template_cfg *t, const ctl_tmpl_vars *v, char *err, size_t errlen);
void   ctl_argv_free(char **argv);
/* Expands every field that holds placeholders (command, env, workdir,
 * ready_command) with sample values, so a bad one fails at load. 0, or -1
 * with the field in key ("command", "env[2]", ...) and the error. */
int    ctl_tmpl_check(const ctl_template_cfg *t, char *key, size_t keylen, char *err, size_t errlen);
/* ready_command split and expanded like the command; NULL with err. */
char **ctl_tmpl_ready_argv(const ctl_template_cfg *t, const ctl_tmpl_vars *v, char *err,
                           size_t errlen);
/* The command the default template runs. */
extern const char ctl_tmpl_default_command[];

/* ---- Gateway runtime API client (ctl_gwclient.c) ------------------------ */

typedef struct ctl_gw {
    char base[256];      /* "http://host:port" without a trailing slash */
    char auth[320];      /* "Authorization: Bearer T\r\n" or "" */
    int  timeout_ms;
} ctl_gw;

typedef struct ctl_gw_member {
    char     id[64];
    char     address[64];
    int      weight;
    bool     backup;
    char     state[16];   /* ready | draining | maint | down */
    bool     healthy;
    long     in_flight;
    uint64_t total;
    bool     restored;    /* from the gateway's state file, not registered since */
} ctl_gw_member;

/* url: "http://host:port" (or "host:port"); token may be NULL. */
int  ctl_gw_init(ctl_gw *g, const char *url, const char *token, char *err, size_t errlen);
/* Adds addr to pool. 0 when created, 1 when it was already a member (409),
 * -1 with the gateway's message otherwise. */
int  ctl_gw_register(const ctl_gw *g, const char *pool, const char *addr, int weight,
                     bool backup, char *err, size_t errlen);
int  ctl_gw_set_weight(const ctl_gw *g, const char *pool, const char *id, int weight,
                       char *err, size_t errlen);
/* state: "ready" | "maint" (| "draining" where the gateway takes it). */
int  ctl_gw_set_state(const ctl_gw *g, const char *pool, const char *id, const char *state,
                      char *err, size_t errlen);
/* DELETE with ?drain=: 0 when removed at once, 1 when draining (the
 * gateway removes it later), -1 with the gateway's message when it refused,
 * -2 when it could not be reached. drain_us 0 removes now. A member that
 * is not there (404 naming the backend) counts as removed. */
int  ctl_gw_drain(const ctl_gw *g, const char *pool, const char *id, uint64_t drain_us,
                  char *err, size_t errlen);
/* Fills up to max members; *n gets how many there are. 0 or -1. */
int  ctl_gw_members(const ctl_gw *g, const char *pool, ctl_gw_member *out, size_t max,
                    size_t *n, char *err, size_t errlen);

/* ---- Drivers (ctl_driver_process.c, ctl_driver_exec.c) ------------------ */

typedef struct ctl_driver ctl_driver;

/* A driver's terminate: false and true still read as ask and kill. */
enum { CTL_TERM_GROUP = 0, CTL_TERM_KILL = 1, CTL_TERM_MAIN = 2 };

/* What a driver returns from `list`: instances that exist already. */
typedef struct ctl_found {
    char id[32];
    char address[64];
} ctl_found;

struct ctl_driver {
    const char *name;
    /* launch and terminate may take long (seconds to minutes): run them on
     * a helper thread. They must then be safe to call concurrently. */
    bool        slow;
    /* Starts instance id of template t. Fills address (host:port) and *pid
     * (0 when the driver has none). Blocking, bounded by the driver. */
    int  (*launch)(ctl_driver *d, const ctl_template_cfg *t, const char *id,
                   const char *version, char *address, size_t addrlen, pid_t *pid,
                   char *err, size_t errlen);
    /* Has it exited? 1 with *status, 0 still running or unknown. */
    int  (*poll)(ctl_driver *d, const char *id, pid_t pid, int *status);
    /* how: CTL_TERM_GROUP or CTL_TERM_MAIN ask it to stop (SIGTERM to the
     * process group or to the main process only; the terminate script);
     * CTL_TERM_KILL kills the group now. 1 when it is already gone, 0
     * when asked, -1. */
    int  (*terminate)(ctl_driver *d, const char *id, const char *address, pid_t pid,
                      int how, char *err, size_t errlen);
    /* Instances that exist already (exec driver), or NULL. Returns how
     * many were filled, -1 with a message. */
    int  (*list)(ctl_driver *d, ctl_found *out, size_t max, char *err, size_t errlen);
    void (*free)(ctl_driver *d);
    /* Takes over a process a previous control plane started (it is not our
     * child: poll watches its pid and start time instead of reaping it).
     * NULL for drivers whose instances are not processes of this machine;
     * then the instance state file is not kept. 0, or -1. */
    int  (*adopt)(ctl_driver *d, const char *id, pid_t pid, uint64_t start);
};

/* state_dir receives logs/<id>.log (NULL: children inherit stdout). */
ctl_driver *ctl_driver_process_new(const char *state_dir, char *err, size_t errlen);
ctl_driver *ctl_driver_exec_new(const ctl_exec_cfg *c, const char *state_dir,
                                char *err, size_t errlen);

/* Runs argv (no shell) with extra "K=V" env, capturing stdout and stderr,
 * killed (with its process group) after timeout_ms. Returns the exit status
 * (0..255), or -1 with err (spawn failure, timeout, killed by a signal:
 * then err quotes the end of stderr). */
int ctl_exec_run(char *const *argv, char *const *env_extra, int timeout_ms,
                 buf *out, buf *errout, char *err, size_t errlen);
/* The same in directory cwd (NULL: inherit). */
int ctl_exec_run_in(const char *cwd, char *const *argv, char *const *env_extra, int timeout_ms,
                    buf *out, buf *errout, char *err, size_t errlen);

/* ---- Manager (ctl_instances.c) ------------------------------------------ */

typedef struct ctl_mgr ctl_mgr;

/* Takes ownership of drv. c must outlive the manager. */
ctl_mgr *ctl_mgr_new(const ctl_config *c, ctl_driver *drv, char *err, size_t errlen);
/* Adopts what the driver lists, starts the supervisor thread. */
int      ctl_mgr_start(ctl_mgr *m, char *err, size_t errlen);
/* Drains and stops every instance (bounded by drain timeout + grace), then
 * joins the supervisor. */
void     ctl_mgr_stop(ctl_mgr *m);
void     ctl_mgr_free(ctl_mgr *m);

/* Converge the managed instances to n (>= 0). */
int      ctl_instances_scale_to(ctl_mgr *m, int n);
int      ctl_instances_desired(ctl_mgr *m);
/* Copies up to max records (oldest first); returns how many exist. */
size_t   ctl_instances_list(ctl_mgr *m, ctl_instance_info *out, size_t max);
/* {"instances":[...]} */
void     ctl_instances_json(ctl_mgr *m, buf *out);
/* Managed instances by state: starting, ready, draining+stopping, failed. */
void     ctl_instances_counts(ctl_mgr *m, int *starting, int *ready, int *leaving, int *failed);
uint64_t ctl_instances_restarts_total(ctl_mgr *m);
/* Grows whenever any record changes (state, address, registration): a
 * file_sd writer or a dashboard polls it to know when to re-read. */
uint64_t ctl_instances_generation(ctl_mgr *m);

/* For deploys. Flags for ctl_instances_start. */
#define CTL_START_REGISTER 1u   /* register with the gateway once ready */
#define CTL_START_MANAGED  2u   /* count toward the desired count */
/* Queues a start of template t (NULL: the configured one; the manager
 * copies it) at version (NULL: the template's). Writes the new id. */
int      ctl_instances_start(ctl_mgr *m, const ctl_template_cfg *t, const char *version,
                             unsigned flags, char *id, size_t idlen, char *err, size_t errlen);
/* Waits until id is ready (0), failed or gone (-1 with why), or timeout. */
int      ctl_instances_wait_ready(ctl_mgr *m, const char *id, uint64_t timeout_us,
                                  char *err, size_t errlen);
/* Registers a ready instance with the gateway and/or makes it counted. */
int      ctl_instances_register(ctl_mgr *m, const char *id, bool managed, char *err, size_t errlen);
/* One step of a rolling deploy, atomic for the converger: new_id becomes
 * counted (and registered once ready) and old_id is retired, so the count
 * never dips or overshoots between the two. */
int      ctl_instances_replace(ctl_mgr *m, const char *new_id, const char *old_id,
                               char *err, size_t errlen);
/* Drains it through the gateway, then stops it; it stops counting now. */
int      ctl_instances_retire(ctl_mgr *m, const char *id, char *err, size_t errlen);
/* Waits until id is gone (0) or timeout (-1). */
int      ctl_instances_wait_gone(ctl_mgr *m, const char *id, uint64_t timeout_us);
/* Replaces the template new managed instances start from. */
int      ctl_instances_set_template(ctl_mgr *m, const ctl_template_cfg *t, char *err, size_t errlen);

/* ---- Prometheus discovery (ctl_sd.c) ------------------------------------ */

/* The file_sd / HTTP SD target groups: ready and draining instances with
 * an address (role app, with service, instance_id, version, pool) of every
 * service, the gateway's admin listener and control_addr (may be NULL). */
struct ctl_api;
void ctl_sd_json(const struct ctl_api *svcs, size_t n, const char *control_addr, buf *out);
/* Writes b to path atomically (temporary file, fsync, then rename),
 * creating the directory: the sd_file and the instance state file. 0, or
 * -1 with a message. */
int  ctl_sd_write(const char *path, const buf *b, char *err, size_t errlen);

/* ---- Scaling API (ctl_api.c) -------------------------------------------- */

/* One service's API: its manager, config and hooks, and the router of its
 * paths (/api/v1/scaling/..., /api/v1/instances, /api/v1/deploys...). */
typedef struct ctl_api {
    const char       *service;
    ctl_mgr          *mgr;
    const ctl_config *c;
    const ctl_hooks  *hooks;   /* may be NULL */
    char              control_addr[64];   /* host:port the API listens on */
    http_router      *router;
} ctl_api;

/* The listener's view of every service: svcs[0] answers the paths that
 * name no service. */
typedef struct ctl_api_set {
    ctl_api *svcs;
    size_t   n;
} ctl_api_set;

/* Checks the API's bearer tokens for a role: HTTP_ROLE_READ (views: the
 * read or the admin token) or HTTP_ROLE_ADMIN (changes: the admin token).
 * No token configured: open. Otherwise replies 401/403/429 and returns
 * false. For handlers added through ctl_hooks.routes too. */
bool         ctl_api_authorized(http_ctx *c, const ctl_config *cfg, http_role need);
/* One audit event for an accepted change: the log, the control listener's
 * audit ring (GET /api/v1/audit) and, through hooks->audit, the scaling
 * history. */
void         ctl_api_audit(http_ctx *c, const ctl_hooks *hooks, const char *what);
/* The shard management paths /api/v1/scaling/shards/... (ctl_shards.c). */
int          ctl_shards_routes(http_router *r, ctl_api *a);
/* Builds a->router (the service's own paths); -1 when out of memory or a
 * hook's routes fail. */
int          ctl_api_service_router(ctl_api *a);
/* The listener's router: /health, /metrics, the dashboard,
 * GET /api/v1/services, /api/v1/services/{name}/... and every other
 * /api/v1/ path for the service named by ?service= (default: the first).
 * set must outlive the router. */
http_router *ctl_api_router(ctl_api_set *set);

#endif
