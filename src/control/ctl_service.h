/* ctl_service.h -- several services in one control plane: the `services:`
 * list of a config file, each entry a whole service (template, counts,
 * health, drain and stop, autoscaling), and the shared keys (listener,
 * token, state directory, gateway) that come from `control:`.
 *
 * One schema for an entry, built from the single-service tables so a key
 * added to `control:`, `control.template:` or `autoscaling:` is a service
 * key too: template keys sit at the entry's top level (`command`,
 * `ready_path`, ...), the per-service `control:` keys beside them, and
 * `autoscaling:` nested. Without a `services:` list, `control:` plus
 * `autoscaling:` is the one service, named "default". */
#ifndef HSCALE_CONTROL_CTL_SERVICE_H
#define HSCALE_CONTROL_CTL_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "control/control.h"
#include "control/ctl_autoscale.h"
#include "core/config.h"

typedef struct ctl_service_cfg {
    char             *name;          /* [a-z0-9_-], unique; the API and CLI key */
    ctl_config        control;       /* this service's keys; shared ones filled by resolve */
    ctl_autoscale_cfg autoscaling;
} ctl_service_cfg;

/* The entry schema (built once from ctl_config_schema, ctl_template_schema
 * and ctl_autoscale_schema). */
const cfg_schema *ctl_service_schema(void);

/* Name of the service a bare `control:` section runs as. */
extern const char ctl_default_service[];

/* True when the service's instances take HTTP (they get a port, join a
 * gateway pool and are probed over HTTP); a worker fleet does not. */
bool ctl_service_listens(const ctl_config *c);

/* Cross-entry checks of a loaded list: names unique, and no two services
 * in one gateway pool. err->key is the file's path ("services[1].name"). */
int ctl_services_check(const ctl_service_cfg *s, size_t n, cfg_error *err);

/* Fills each entry's shared keys from `shared` (listen, token, gateway,
 * gateway_token, sd_file) and gives it its own state directory,
 * <shared.state_dir>/<name>. 0, or -1 when out of memory. */
int ctl_services_resolve(ctl_service_cfg *s, size_t n, const ctl_config *shared);

#endif
