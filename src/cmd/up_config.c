/* up_config.c -- `hscale up -c hscale.yaml`: one file for the whole stack.
 *
 * Precedence: built-in defaults < up's own defaults (paths under the data
 * directory, the reference app as the default service, 1 s checks) < the
 * file < environment < flags. Then what the user left out is derived, so
 * that one service definition is the one truth: each service that listens
 * gets a gateway pool named by its `pool` (kept if the file defines it),
 * whose active check asks the service's ready_path with its health
 * interval, timeout and thresholds; with no route in the file, "/" goes
 * to the first such service. The gateway's config file is then written
 * from the result, so nothing up writes is out of the user's reach. */
#include "cmd/up_int.h"
#include "core/log.h"
#include "http/tls_ctx.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int up_file_validate(void *obj, cfg_error *err)
{
    return cmd_fleet_check(&((up_file *)obj)->fl, err);
}

/* gateway, then the fleet's three (cmd_fleet_fields, filled at first use) */
static cfg_field up_fields[4] = {
    { .key = "gateway", .type = CFG_OBJECT, .offset = offsetof(up_file, gateway),
      .sub = &gw_config_schema, .help = "the gateway (pools and routes for the services are added)" },
};
static cfg_schema up_schema = { "hscale", up_fields, 0, up_file_validate };

const cfg_schema *up_file_schema(void)
{
    if (!up_schema.nfields)
        up_schema.nfields = 1 + cmd_fleet_fields(up_fields + 1, offsetof(up_file, fl));
    return &up_schema;
}

/* The element schema of one of gw_config's lists ("pools", "routes"). */
static const cfg_field *up_gw_list(const char *key)
{
    for (size_t i = 0; i < gw_config_schema.nfields; i++)
        if (strcmp(gw_config_schema.fields[i].key, key) == 0)
            return &gw_config_schema.fields[i];
    return NULL;
}

static int up_set_str(char **dst, const char *v)
{
    char *d = v ? strdup(v) : NULL;
    if (v && !d)
        return -1;
    free(*dst);
    *dst = d;
    return 0;
}

/* Appends one element with its schema's defaults to a gw_config list. */
static void *up_gw_append(gw_config *g, const char *key, cfg_error *err)
{
    const cfg_field *f = up_gw_list(key);
    if (!f)
        return NULL;
    void **arr = (void **)((char *)g + f->offset);
    size_t *n = (size_t *)((char *)g + f->count_offset);
    char *na = realloc(*arr, (*n + 1) * f->elem_size);
    if (!na) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return NULL;
    }
    *arr = na;
    void *e = na + *n * f->elem_size;
    memset(e, 0, f->elem_size);
    (*n)++;
    if (cfg_defaults(f->sub, e, err) < 0)
        return NULL;
    return e;
}

/* The pool of one service: found by name or added, its check made the
 * service's. */
static int up_pool_for(gw_config *g, const ctl_config *c, cfg_error *err)
{
    gw_pool_cfg *p = NULL;
    for (size_t i = 0; i < g->npools && !p; i++)
        if (g->pools[i].name && strcmp(g->pools[i].name, c->pool) == 0)
            p = &g->pools[i];
    if (!p && (!(p = up_gw_append(g, "pools", err)) || up_set_str(&p->name, c->pool) < 0))
        return -1;
    if (up_set_str(&p->health.path, c->tmpl.ready_path) < 0)
        return -1;
    p->health.enabled = true;
    p->health.interval_us = c->health.interval_us;
    p->health.timeout_us = c->health.timeout_us;
    p->health.rise = c->health.healthy_threshold;
    p->health.fall = c->health.unhealthy_threshold;
    return 0;
}

static int up_derive_gateway(up_file *u, cfg_error *err)
{
    size_t n = u->fl.nservices ? u->fl.nservices : 1;
    const char *first = NULL;
    for (size_t i = 0; i < n; i++) {
        const ctl_config *c = u->fl.nservices ? &u->fl.services[i].control : &u->fl.control;
        if (!ctl_service_listens(c))
            continue;
        if (up_pool_for(&u->gateway, c, err) < 0)
            goto fail;
        if (!first)
            first = c->pool;
    }
    if (u->gateway.nroutes == 0 && first) {
        gw_route_cfg *r = up_gw_append(&u->gateway, "routes", err);
        if (!r || up_set_str(&r->prefix, "/") < 0 || up_set_str(&r->pool, first) < 0)
            goto fail;
    }
    return 0;
fail:
    snprintf(err->key, sizeof err->key, "gateway.pools");
    if (!err->msg[0])
        snprintf(err->msg, sizeof err->msg, "out of memory");
    return -1;
}

int up_config_load(up_file *u, const up_flags *f, cfg_error *err)
{
    const cfg_schema *s = up_file_schema();
    char v[PATH_MAX + 256];
    if (cfg_defaults(s, u, err) < 0)
        return -1;
    snprintf(v, sizeof v, "%s/control", f->data);
    if (cfg_set(s, u, "control.state_dir", v, err) < 0)
        return -1;
    snprintf(v, sizeof v, "%s/prometheus/targets.json", f->data);
    if (cfg_set(s, u, "control.sd_file", v, err) < 0)
        return -1;
    /* a restarted gateway serves the members it had at once */
    snprintf(v, sizeof v, "%s/gateway.state", f->data);
    if (cfg_set(s, u, "gateway.state_file", v, err) < 0)
        return -1;
    /* one worker each: instances are the unit of scale, and 2-10 of them
     * share the machine */
    snprintf(v, sizeof v, "{exe} app --listen {host}:{port} --instance-id {id} --version {version} "
             "--workers 1 --db sqlite:%s/s0.db", f->data);
    if (cfg_set(s, u, "control.template.command", v, err) < 0
        /* instances share one SQLite file but not a process: a local
         * cache in each would serve another instance's stale rows, so up
         * runs them without one (a Redis cache is shared; see docs/app.md) */
        || cfg_set(s, u, "control.template.env", "HSCALE_CACHE=none", err) < 0
        || cfg_set(s, u, "control.instances", "3", err) < 0
        /* the built-in app is ready when /health/ready says so: no JIT or
         * cache to warm, so new instances count after 2 s, not 30 */
        || cfg_set(s, u, "autoscaling.warmup", "2s", err) < 0
        /* one machine: the gateway notices a dead instance within 1.5 s */
        || cfg_set(s, u, "control.health.interval", "1s", err) < 0
        || cfg_set(s, u, "control.health.timeout", "500ms", err) < 0
        || cfg_set(s, u, "gateway.listen", "127.0.0.1:8080", err) < 0
        || cfg_set(s, u, "gateway.admin", "127.0.0.1:8082", err) < 0)
        return -1;
    if (f->config && cfg_load_file(s, u, f->config, err) < 0)
        return -1;
    if (cfg_apply_env(s, u, err) < 0)
        return -1;
    const struct { const char *path, *val; } sets[] = {
        { "gateway.listen", f->listen },       { "gateway.admin", f->admin },
        { "control.listen", f->control },      { "control.instances", f->instances },
        { "autoscaling.min_instances", f->min }, { "autoscaling.max_instances", f->max },
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        if (sets[i].val && cfg_set(s, u, sets[i].path, sets[i].val, err) < 0)
            return -1;
    if (!u->gateway.admin) {
        snprintf(err->file, sizeof err->file, "%s", f->config ? f->config : "<flag>");
        snprintf(err->key, sizeof err->key, "gateway.admin");
        snprintf(err->msg, sizeof err->msg,
                 "hscale up registers instances through the admin API: give it an address");
        return -1;
    }
    snprintf(v, sizeof v, "http://%s", u->gateway.admin);
    if (cfg_set(s, u, "control.gateway", v, err) < 0
        || (u->gateway.admin_token && cfg_set(s, u, "control.gateway_token", u->gateway.admin_token, err) < 0))
        return -1;
    /* the manual ceiling follows the autoscaler's */
    if (u->fl.control.max_instances < u->fl.autoscaling.max_instances)
        u->fl.control.max_instances = u->fl.autoscaling.max_instances;
    if (u->fl.control.instances > u->fl.control.max_instances)
        u->fl.control.max_instances = u->fl.control.instances;
    /* the services' own checks first: derived pools need valid ones */
    if (cfg_validate(s, u, err) < 0 || up_derive_gateway(u, err) < 0)
        return -1;
    return cfg_validate(s, u, err);
}

int up_gateway_write(const up_file *u, const char *path, char *err, size_t errlen)
{
    buf b;
    buf_init(&b);
    buf_append_str(&b, "{\"gateway\":");
    cfg_to_json(&gw_config_schema, &u->gateway, &b);
    buf_append_str(&b, "}\n");
    /* 0600: it holds the admin token when there is one */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *fp = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (fd >= 0 && !fp)
        close(fd);
    if (fp)
        fchmod(fd, 0600);   /* an older file may have been readable by others */
    bool ok = fp && fwrite(buf_head(&b), 1, b.len, fp) == b.len;
    if (fp)
        ok = fclose(fp) == 0 && ok;
    if (!ok)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    buf_free(&b);
    return ok ? 0 : -1;
}

int up_tls_setup(up_file *u, const char *data, char *err, size_t errlen)
{
    char dir[PATH_MAX], cert[PATH_MAX + 16], key[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/tls", data);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    int made = http_tls_selfsigned(cert, key, 365, err, errlen);
    if (made < 0)
        return -1;
    if (made)
        log_info("made a self-signed certificate for localhost: %s (key %s)", cert, key);
    cfg_error ce;
    memset(&ce, 0, sizeof ce);
    const cfg_schema *s = up_file_schema();
    if (cfg_set(s, u, "gateway.tls_listen", u->gateway.listen, &ce) < 0
        || cfg_set(s, u, "gateway.tls_only", "true", &ce) < 0
        || cfg_set(s, u, "gateway.tls_cert", cert, &ce) < 0
        || cfg_set(s, u, "gateway.tls_key", key, &ce) < 0) {
        cfg_error_format(&ce, err, errlen);
        return -1;
    }
    return 0;
}

void up_config_free(up_file *u)
{
    cfg_free(up_file_schema(), u);
}
