/* ctl_service.c -- the schema of one `services:` entry and the checks and
 * resolution of the whole list.
 *
 * The entry's table is built once, at first use, from the single-service
 * tables (flattened template keys, the per-service `control:` keys, a
 * nested `autoscaling:`), so the two forms can never drift apart. Keys
 * that belong to the listener or the gateway connection are in the table
 * (so cfg_free and cfg_copy own them) but refused in an entry: they are
 * filled from `control:` by ctl_services_resolve. */
#include "control/ctl_service.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char ctl_default_service[] = "default";

/* control: keys every service shares; set them in control:. */
static const char *const ctl_svc_shared[] = {
    "listen", "token", "sd_file", "gateway", "gateway_token",
    "read_token", "token_file", "read_token_file", "tls_cert", "tls_key",
    "gateway_token_file", "gateway_ca_file", NULL,
};

#define CTL_SVC_MAX_FIELDS 96

static cfg_field       ctl_svc_fields[CTL_SVC_MAX_FIELDS];
static cfg_schema      ctl_svc_schema_v;
static pthread_once_t  ctl_svc_once = PTHREAD_ONCE_INIT;

static bool ctl_svc_is_shared(const char *key)
{
    for (size_t i = 0; ctl_svc_shared[i]; i++)
        if (strcmp(ctl_svc_shared[i], key) == 0)
            return true;
    return false;
}

static int ctl_svc_dup(char **dst, const char *src)
{
    free(*dst);
    *dst = NULL;
    return src && !(*dst = strdup(src)) ? -1 : 0;
}

static int ctl_svc_validate(void *obj, cfg_error *err)
{
    ctl_service_cfg *s = obj;
    if (!s->name || !s->name[0]) {
        snprintf(err->key, sizeof err->key, "name");
        snprintf(err->msg, sizeof err->msg, "expected a service name, got nothing");
        return -1;
    }
    for (const char *p = s->name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')
            || p - s->name >= 48) {
            snprintf(err->key, sizeof err->key, "name");
            snprintf(err->msg, sizeof err->msg,
                     "expected up to 48 of a-z 0-9 - _ (it names URLs and files), got '%.60s'", s->name);
            return -1;
        }
    for (size_t i = 0; ctl_svc_shared[i]; i++) {
        const cfg_field *f = NULL;
        for (size_t k = 0; k < ctl_svc_schema_v.nfields && !f; k++)
            if (strcmp(ctl_svc_fields[k].key, ctl_svc_shared[i]) == 0)
                f = &ctl_svc_fields[k];
        const char *v = f ? *(char **)((char *)s + f->offset) : NULL;
        if (v && v[0]) {   /* "" is unset (it is how cfg_to_json writes NULL) */
            snprintf(err->key, sizeof err->key, "%s", f->key);
            snprintf(err->msg, sizeof err->msg, "shared by every service: set control.%s instead",
                     f->key);
            return -1;
        }
    }
    /* the pool defaults to the service's name */
    if ((!s->control.pool || !s->control.pool[0]) && ctl_svc_dup(&s->control.pool, s->name) < 0) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -1;
    }
    /* the flattened template's own checks, then the control section's */
    if (ctl_template_schema.validate && ctl_template_schema.validate(&s->control.tmpl, err) < 0)
        return -1;
    return ctl_config_schema.validate ? ctl_config_schema.validate(&s->control, err) : 0;
}

static void ctl_svc_add(size_t *n, const cfg_field *f, size_t base)
{
    if (*n >= CTL_SVC_MAX_FIELDS)
        abort();   /* a schema bug, caught by the first test that loads one */
    cfg_field *o = &ctl_svc_fields[(*n)++];
    *o = *f;
    o->offset += base;
    o->env = NULL;   /* lists of objects take no environment variables */
    if (o->type == CFG_STRLIST || o->type == CFG_LIST)
        o->count_offset += base;
}

static void ctl_svc_build(void)
{
    size_t n = 0;
    static const cfg_field name = {
        .key = "name", .type = CFG_STRING, .offset = offsetof(ctl_service_cfg, name),
        .help = "service name: a-z 0-9 - _ (API paths /api/v1/services/NAME/..., `--service NAME`)" };
    ctl_svc_add(&n, &name, 0);
    size_t tbase = offsetof(ctl_service_cfg, control) + offsetof(ctl_config, tmpl);
    for (size_t i = 0; i < ctl_template_schema.nfields; i++)
        ctl_svc_add(&n, &ctl_template_schema.fields[i], tbase);
    for (size_t i = 0; i < ctl_config_schema.nfields; i++) {
        const cfg_field *f = &ctl_config_schema.fields[i];
        if (strcmp(f->key, "template") == 0)
            continue;   /* flattened above */
        ctl_svc_add(&n, f, offsetof(ctl_service_cfg, control));
        cfg_field *o = &ctl_svc_fields[n - 1];
        if (ctl_svc_is_shared(f->key)) {
            o->def = NULL;
            o->help = "shared by every service: set it in control:";
        } else if (strcmp(f->key, "pool") == 0) {
            o->def = NULL;
            o->help = "gateway pool the instances join (default: the service name)";
        } else if (strcmp(f->key, "state_dir") == 0) {
            o->def = NULL;
            o->help = "logs and history of this service (default: control.state_dir/NAME)";
        }
    }
    static const cfg_field as = {
        .key = "autoscaling", .type = CFG_OBJECT, .offset = offsetof(ctl_service_cfg, autoscaling),
        .sub = &ctl_autoscale_schema, .help = "this service's autoscaler (keys as autoscaling:)" };
    ctl_svc_add(&n, &as, 0);
    ctl_svc_schema_v = (cfg_schema){ "service", ctl_svc_fields, n, ctl_svc_validate };
}

const cfg_schema *ctl_service_schema(void)
{
    pthread_once(&ctl_svc_once, ctl_svc_build);
    return &ctl_svc_schema_v;
}

bool ctl_service_listens(const ctl_config *c)
{
    return c->tmpl.port != CTL_PORT_NONE;
}

int ctl_services_check(const ctl_service_cfg *s, size_t n, cfg_error *err)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++) {
            if (strcmp(s[i].name, s[j].name) == 0) {
                snprintf(err->key, sizeof err->key, "services[%zu].name", i);
                snprintf(err->msg, sizeof err->msg, "service '%s' is defined twice", s[i].name);
                return -1;
            }
            if (ctl_service_listens(&s[i].control) && ctl_service_listens(&s[j].control)
                && strcmp(s[i].control.pool, s[j].control.pool) == 0) {
                snprintf(err->key, sizeof err->key, "services[%zu].pool", i);
                snprintf(err->msg, sizeof err->msg,
                         "pool '%s' is already service '%s''s: one pool per service",
                         s[i].control.pool, s[j].name);
                return -1;
            }
        }
    return 0;
}

int ctl_services_resolve(ctl_service_cfg *s, size_t n, const ctl_config *shared)
{
    for (size_t i = 0; i < n; i++) {
        ctl_config *c = &s[i].control;
        if (ctl_svc_dup(&c->listen, shared->listen) < 0 || ctl_svc_dup(&c->token, shared->token) < 0
            || ctl_svc_dup(&c->sd_file, shared->sd_file) < 0
            || ctl_svc_dup(&c->gateway, shared->gateway) < 0
            || ctl_svc_dup(&c->gateway_token, shared->gateway_token) < 0
            || ctl_svc_dup(&c->read_token, shared->read_token) < 0)
            return -1;
        if ((!c->state_dir || !c->state_dir[0]) && shared->state_dir && shared->state_dir[0]) {
            free(c->state_dir);
            size_t len = strlen(shared->state_dir) + strlen(s[i].name) + 2;
            if (!(c->state_dir = malloc(len)))
                return -1;
            snprintf(c->state_dir, len, "%s/%s", shared->state_dir, s[i].name);
        }
        /* the manual ceiling follows the autoscaler's */
        if (c->max_instances < s[i].autoscaling.max_instances)
            c->max_instances = s[i].autoscaling.max_instances;
        if (c->instances > c->max_instances)
            c->max_instances = c->instances;
    }
    return 0;
}
