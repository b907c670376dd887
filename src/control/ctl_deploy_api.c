/* ctl_deploy_api.c -- the deploy API on the control listener:
 *
 *   POST /api/v1/deploys                        start one (202 + state)
 *   GET  /api/v1/deploys/current                the running or last one
 *   GET  /api/v1/deploys[?limit=N]              events, newest first
 *   POST /api/v1/deploys/current/{action}       promote|pause|resume|rollback
 *
 * Handlers only parse, post and copy: the deploy thread does the work, so
 * an answer never waits on an instance or on the gateway. */
#include "control/ctl_deploy.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* The deployer of each control plane in this process, found by its
 * manager: ctl_api.c builds the router, ctl_run.c stops the manager, and
 * neither holds a deploy field (one line each wires them in). */
#define DEP_MAX 64   /* services of every control plane in the process */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct { ctl_mgr *m; ctl_deployer *d; } reg[DEP_MAX];

static bool ready(http_ctx *c, ctl_deployer *d, http_role need)
{
    if (!d) {
        http_reply_error(c, 503, NULL, "deploys are not available on this control plane");
        return false;
    }
    return ctl_api_authorized(c, ctl_deploy_config(d), need);
}

static void reply_current(http_ctx *c, int status, ctl_deployer *d)
{
    buf b;
    buf_init(&b);
    ctl_deploy_current_json(d, &b);
    http_reply_buf_json(c, status, &b);
    buf_free(&b);
}

static void h_create(http_ctx *c, void *arg)
{
    ctl_deployer *d = arg;
    if (!ready(c, d, HTTP_ROLE_ADMIN))
        return;
    size_t len;
    const char *body = http_ctx_body(c, &len);
    ctl_dep_spec s;
    char field[64], err[512];
    if (ctl_dep_spec_parse(&s, body, len, field, sizeof field, err, sizeof err) < 0) {
        http_reply_error(c, 400, field, "%s", err);
        return;
    }
    snprintf(s.by_role, sizeof s.by_role, "%s", http_role_str(http_ctx_role(c)));
    sock_addr_format(http_ctx_peer(c), s.by_peer, sizeof s.by_peer);
    snprintf(s.by_request_id, sizeof s.by_request_id, "%s", http_ctx_request_id(c));
    char what[160];
    snprintf(what, sizeof what, "deploy: version %.64s started%s%s", s.version,
             s.command ? ", new command" : "", s.env ? ", new environment" : "");
    int status;
    if (ctl_deploy_begin(d, &s, &status, err, sizeof err) < 0) {
        const char *f = strncmp(err, "strategy:", 9) == 0 ? "strategy"
                      : strncmp(err, "target_pool:", 12) == 0 ? "target_pool" : NULL;
        http_reply_error(c, status, f, "%s", err);
        return;
    }
    http_audit(c, NULL, "%s", what);
    reply_current(c, 202, d);
}

static void h_current(http_ctx *c, void *arg)
{
    ctl_deployer *d = arg;
    if (ready(c, d, HTTP_ROLE_READ))
        reply_current(c, 200, d);
}

static void h_list(http_ctx *c, void *arg)
{
    ctl_deployer *d = arg;
    if (!ready(c, d, HTTP_ROLE_READ))
        return;
    const char *l = http_ctx_query(c, "limit");
    long limit = l ? strtol(l, NULL, 10) : 100;
    if (limit <= 0 || limit > 1000) {
        http_reply_error(c, 400, "limit", "expected 1..1000, got '%s'", l);
        return;
    }
    buf b;
    buf_init(&b);
    ctl_deploy_history_json(d, (size_t)limit, &b);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

static void h_action(http_ctx *c, void *arg)
{
    ctl_deployer *d = arg;
    if (!ready(c, d, HTTP_ROLE_ADMIN))
        return;
    const char *act = http_ctx_param(c, "action");
    static const char *const names[] = { "pause", "resume", "promote", "rollback" };
    int cmd = -1;
    for (int i = 0; i < 4 && act; i++)
        if (strcmp(act, names[i]) == 0)
            cmd = i;
    if (cmd < 0) {
        http_reply_error(c, 404, "action", "expected promote, pause, resume or rollback, got '%s'",
                         act ? act : "");
        return;
    }
    char err[256];
    if (ctl_deploy_command(d, (ctl_dep_cmd)cmd, err, sizeof err) < 0) {
        http_reply_error(c, 409, NULL, "%s", err);
        return;
    }
    http_audit(c, NULL, "deploy: %s requested", names[cmd]);
    reply_current(c, 202, d);
}

int ctl_deploy_routes(http_router *r, ctl_mgr *m, const ctl_config *c)
{
    char err[512];
    ctl_deployer *d = NULL;
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < DEP_MAX && !d; i++)
        if (reg[i].m == m)
            d = reg[i].d;
    for (size_t i = 0; i < DEP_MAX && !d; i++)
        if (!reg[i].m) {
            d = ctl_deploy_new(m, c, err, sizeof err);
            if (!d)
                log_warn("deploys disabled: %s", err);
            else
                reg[i].m = m, reg[i].d = d;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
    if (http_route(r, "POST", "/api/v1/deploys", h_create, d) < 0
        || http_route(r, "GET", "/api/v1/deploys", h_list, d) < 0
        || http_route(r, "GET", "/api/v1/deploys/current", h_current, d) < 0
        || http_route(r, "POST", "/api/v1/deploys/current/{action}", h_action, d) < 0)
        return -1;
    return 0;
}

bool ctl_deploy_active(const ctl_config *c)
{
    bool busy = false;
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < DEP_MAX && !busy; i++)
        busy = reg[i].d && ctl_deploy_busy(reg[i].d, c);
    pthread_mutex_unlock(&reg_mu);
    return busy;
}

void ctl_deploy_release(ctl_mgr *m)
{
    ctl_deployer *d = NULL;
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < DEP_MAX; i++)
        if (reg[i].m == m) {
            d = reg[i].d;
            reg[i].m = NULL;
            reg[i].d = NULL;
        }
    pthread_mutex_unlock(&reg_mu);
    ctl_deploy_free(d);
}
