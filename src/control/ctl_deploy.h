/* ctl_deploy.h -- deploys, internal to src/control: rolling, blue-green and
 * canary releases of a new instance template, driven through the instance
 * manager and the gateway's runtime API.
 *
 * One deploy runs at a time, on its own thread, as a state machine whose
 * every step is an event in <state_dir>/deploys.jsonl. Other threads (API
 * handlers, the autoscaler) only read a copy of its state or post a
 * command (pause, resume, promote, rollback) that the thread acts on at its
 * next check, at most 100 ms later.
 *
 * The second gateway pool (blue-green's green, canary's canary) must be
 * declared in the gateway's config: the runtime API cannot create pools.
 * Between deploys it is empty and every route points at the control
 * pool; the routes move between the two by PUT /api/v1/routes only.
 *
 * Layers: ctl_deploy.c (the deployer, its thread, events, commands),
 * ctl_deploy_spec.c (request -> spec, pure), ctl_deploy_judge.c (gateway
 * metrics -> verdicts, pure), ctl_deploy_rolling.c, ctl_deploy_switch.c
 * (blue-green and canary), ctl_deploy_api.c (the HTTP API). */
#ifndef HSCALE_CONTROL_CTL_DEPLOY_H
#define HSCALE_CONTROL_CTL_DEPLOY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control/ctl_autoscale.h"
#include "control/ctl_instances.h"

/* ---- What to deploy (ctl_deploy_spec.c) --------------------------------- */

typedef enum { CTL_DEP_ROLLING, CTL_DEP_BLUEGREEN, CTL_DEP_CANARY } ctl_dep_strategy;

#define CTL_DEP_MAX_STEPS 16
#define CTL_DEP_MAX_SMOKE 16

typedef struct ctl_dep_smoke {
    char path[256];
    int  expect;
} ctl_dep_smoke;

/* A count, or a percentage of the current instance count. */
typedef struct ctl_dep_amount {
    int  value;
    bool percent;
} ctl_dep_amount;

typedef struct ctl_dep_spec {
    int              strategy;        /* ctl_dep_strategy */
    char             version[64];
    char            *command;         /* NULL: the current template's */
    char           **env;             /* NULL: the current template's */
    size_t           nenv;
    char             ready_path[256]; /* "": the current template's */
    ctl_dep_amount   max_surge;       /* rolling, default 1 */
    ctl_dep_amount   max_unavailable; /* rolling, default 0 */
    int              instances;       /* green/canary count; 0: the current count */
    char             target_pool[64]; /* "": <pool>-next */
    uint64_t         ready_timeout_us;   /* per new instance, default 60 s */
    uint64_t         observe_us;         /* rolling: watch each batch, default 2 s */
    uint64_t         pause_us;           /* canary: per step, default 10 s */
    uint64_t         rollback_window_us; /* blue-green, default 30 s */
    uint64_t         max_hold_us;        /* canary: inconclusive that long fails, default 5 min */
    int              steps[CTL_DEP_MAX_STEPS];   /* canary weights in percent */
    int              nsteps;
    ctl_dep_smoke    smoke[CTL_DEP_MAX_SMOKE];
    int              nsmoke;
    double           max_error_rate;     /* percent, default 1 */
    double           max_p95_ms;         /* absolute, default 500 */
    double           max_p95_ratio;      /* against the stable pool, default 2 */
    double           max_error_delta;    /* points above the stable pool, default 1 */
    double           min_requests;       /* fewer: inconclusive, default 50 */
    bool             auto_promote;       /* canary/blue-green advance alone, default true */
    /* who asked (the API fills these; the "started" event shows them) */
    char             by_role[16];
    char             by_peer[64];
    char             by_request_id[80];
} ctl_dep_spec;

/* Fills s from a JSON object (the POST body). 0, or -1 with err naming
 * the field and what was expected ("steps[2]: expected 1..100, got 0"). */
int  ctl_dep_spec_parse(ctl_dep_spec *s, const char *json, size_t len, char *field,
                        size_t fieldlen, char *err, size_t errlen);
void ctl_dep_spec_free(ctl_dep_spec *s);
const char *ctl_dep_strategy_name(int s);
/* An amount against n instances: percentages round up for surge (so 25 %
 * of 2 is 1) and down for unavailable (never more gone than allowed). */
int  ctl_dep_amount_of(ctl_dep_amount a, int n, bool round_up);

/* ---- Judging from gateway metrics (ctl_deploy_judge.c) ------------------ */

typedef struct ctl_dep_stats {
    double requests, errors;    /* deltas over the window */
    double error_rate;          /* percent; NAN without requests */
    double p95_ms;              /* NAN without requests */
} ctl_dep_stats;

/* Sums the backends of pool (every backend when addrs is NULL, else those
 * listed) between two gateway scrapes. */
void ctl_dep_stats_of(ctl_dep_stats *out, const ctl_gwm_scrape *prev, const ctl_gwm_scrape *cur,
                      const char *pool, const char *const *addrs, size_t naddrs);

/* The client-facing latency of pool: hscale_gateway_request_duration_seconds
 * buckets summed over routes. 0, or -1 with the parse error. */
int  ctl_dep_pool_lat(const char *text, size_t len, const char *pool, ctl_lat *out,
                      char *err, size_t errlen);
/* Sets st->p95_ms from the bucket deltas prev -> cur (NAN when empty). */
void ctl_dep_stats_lat(ctl_dep_stats *st, const ctl_lat *prev, const ctl_lat *cur);

typedef enum { CTL_VERDICT_PASS, CTL_VERDICT_FAIL, CTL_VERDICT_INCONCLUSIVE } ctl_verdict;

/* The new version against thresholds and (when base has requests) the
 * stable one. why says which number decided it. */
ctl_verdict ctl_dep_judge(const ctl_dep_spec *s, const ctl_dep_stats *cand,
                          const ctl_dep_stats *base, char *why, size_t whylen);
const char *ctl_verdict_name(ctl_verdict v);

/* Rewrites a GET /api/v1/routes body so every route serving `stable` or
 * `next` splits stable_w:next_w between them (next_w 0: plain `pool:
 * stable`; stable_w 0: plain `pool: next`... kept as a split so the
 * switch back is one PUT). Returns the PUT body (malloc'd) and how many
 * routes it touched, or NULL with err. */
char *ctl_dep_routes_rewrite(const char *routes_json, size_t len, const char *stable,
                             const char *next, int stable_w, int next_w, int *touched,
                             char *err, size_t errlen);

/* ---- The deployer (ctl_deploy.c) ---------------------------------------- */

typedef struct ctl_deployer ctl_deployer;

ctl_deployer *ctl_deploy_new(ctl_mgr *m, const ctl_config *c, char *err, size_t errlen);
/* Stops a running deploy where it stands (no rollback: the control plane
 * is going down) and joins its thread. */
void          ctl_deploy_free(ctl_deployer *d);
/* Starts spec (taken over, even on failure). 0, or -1 with err (409-ish:
 * one is running; 400-ish: the spec does not fit this control plane). */
int           ctl_deploy_begin(ctl_deployer *d, ctl_dep_spec *spec, int *http_status,
                               char *err, size_t errlen);
typedef enum { CTL_DEP_CMD_PAUSE, CTL_DEP_CMD_RESUME, CTL_DEP_CMD_PROMOTE,
               CTL_DEP_CMD_ROLLBACK } ctl_dep_cmd;
int           ctl_deploy_command(ctl_deployer *d, ctl_dep_cmd cmd, char *err, size_t errlen);
/* {"id":..,"strategy":..,"state":..,...} of the current or last deploy, or
 * {"state":"none"}. */
void          ctl_deploy_current_json(ctl_deployer *d, buf *out);
/* {"events":[...newest first]} */
void          ctl_deploy_history_json(ctl_deployer *d, size_t limit, buf *out);
/* The bearer token its API requires (NULL: open). */
const ctl_config *ctl_deploy_config(ctl_deployer *d);
/* True while a deploy of this deployer runs. */
bool          ctl_deploy_running(ctl_deployer *d);

/* For the autoscaler: true while a deploy of the service configured by c
 * runs (each service deploys on its own). A deploy changes the template
 * first, so instances the autoscaler adds meanwhile start at the target
 * version; the autoscaler should hold scale-in (a rolling deploy retires
 * the old instances itself) and record that it held. */
bool          ctl_deploy_active(const ctl_config *c);
/* True while d, a deployer of c, runs one (ctl_deploy_active's test). */
bool          ctl_deploy_busy(ctl_deployer *d, const ctl_config *c);

/* ---- API (ctl_deploy_api.c) --------------------------------------------- */

/* POST /api/v1/deploys, GET /api/v1/deploys, GET /api/v1/deploys/current,
 * POST /api/v1/deploys/current/{promote|pause|resume|rollback}, served by
 * the deployer of m (created here on first use, c->token guarding it).
 * When it cannot be created the routes answer 503. */
int  ctl_deploy_routes(http_router *r, ctl_mgr *m, const ctl_config *c);
/* Stops and frees m's deployer, if any; before the manager stops. */
void ctl_deploy_release(ctl_mgr *m);

/* ---- Strategies (ctl_deploy_rolling.c, ctl_deploy_switch.c) ------------- */

/* What the strategies see of their deployer. */
typedef struct ctl_dep_run ctl_dep_run;
int ctl_dep_rolling(ctl_dep_run *r);
int ctl_dep_bluegreen(ctl_dep_run *r);
int ctl_dep_canary(ctl_dep_run *r);

#endif
