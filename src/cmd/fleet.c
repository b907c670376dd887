/* fleet.c -- what `hscale control` and `hscale up` share: turning a loaded
 * config file into the services of one control plane, each with its own
 * autoscaler.
 *
 * The single-service form (`control:` + `autoscaling:`, no `services:`) is
 * one service named "default" whose config is `control:` itself, so every
 * existing file and flag keeps its meaning. With `services:`, `control:`
 * holds the keys the services share (listener, token, gateway, state
 * directory, discovery file) and each entry the rest. */
#include "cmd.h"

#include <stdio.h>
#include <string.h>

size_t cmd_fleet_fields(cfg_field *out, size_t base)
{
    const cfg_field f[] = {
        { .key = "control", .type = CFG_OBJECT, .offset = base + offsetof(cmd_fleet_cfg, control),
          .sub = &ctl_config_schema, .help = "the control plane" },
        { .key = "autoscaling", .type = CFG_OBJECT,
          .offset = base + offsetof(cmd_fleet_cfg, autoscaling), .sub = &ctl_autoscale_schema,
          .help = "the autoscaler" },
        { .key = "services", .type = CFG_LIST, .offset = base + offsetof(cmd_fleet_cfg, services),
          .elem_size = sizeof(ctl_service_cfg), .sub = ctl_service_schema(),
          .count_offset = base + offsetof(cmd_fleet_cfg, nservices),
          .help = "several services (each as control: + autoscaling:)" },
    };
    memcpy(out, f, sizeof f);
    return sizeof f / sizeof f[0];
}

int cmd_fleet_check(const cmd_fleet_cfg *f, cfg_error *err)
{
    return ctl_services_check(f->services, f->nservices, err);
}

int cmd_fleet_build(cmd_fleet *fl, cmd_fleet_cfg *f, char *err, size_t errlen)
{
    ctl_config *control = &f->control;
    const ctl_autoscale_cfg *autoscaling = &f->autoscaling;
    ctl_service_cfg *svcs = f->services;
    size_t nsvcs = f->nservices;
    memset(fl, 0, sizeof *fl);
    if (nsvcs > CTL_MAX_SERVICES) {
        snprintf(err, errlen, "services: expected at most %d, got %zu", CTL_MAX_SERVICES, nsvcs);
        return -1;
    }
    if (nsvcs && ctl_services_resolve(svcs, nsvcs, control) < 0) {
        snprintf(err, errlen, "services: out of memory");
        return -1;
    }
    fl->n = nsvcs ? nsvcs : 1;
    for (size_t i = 0; i < fl->n; i++) {
        const ctl_config *c = nsvcs ? &svcs[i].control : control;
        const ctl_autoscale_cfg *a = nsvcs ? &svcs[i].autoscaling : autoscaling;
        const char *name = nsvcs ? svcs[i].name : ctl_default_service;
        char e[512];
        fl->as[i] = ctl_autoscaler_new(c, a, e, sizeof e);
        if (!fl->as[i]) {
            snprintf(err, errlen, "%s%s%sautoscaling: %s", nsvcs ? "service " : "",
                     nsvcs ? name : "", nsvcs ? ": " : "", e);
            cmd_fleet_free(fl);
            return -1;
        }
        ctl_autoscaler_hooks(fl->as[i], &fl->hooks[i]);
        fl->defs[i] = (ctl_service_def){ name, c, &fl->hooks[i] };
    }
    return 0;
}

void cmd_fleet_free(cmd_fleet *fl)
{
    for (size_t i = 0; i < CTL_MAX_SERVICES; i++)
        ctl_autoscaler_free(fl->as[i]);
    memset(fl, 0, sizeof *fl);
}
