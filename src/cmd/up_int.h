/* up_int.h -- `hscale up`'s configuration, shared by up.c (the process
 * tree) and up_config.c (loading the file and writing the gateway's).
 *
 * One file configures the whole stack: `gateway:` (routes, algorithm,
 * rate limits, sticky cookie, timeouts: every gateway key), `control:`,
 * `autoscaling:` and `services:`. up fills in only what the user left out:
 * a pool per service that listens, whose health check is the service's
 * ready_path and health thresholds, and a route to the first service. */
#ifndef HSCALE_CMD_UP_INT_H
#define HSCALE_CMD_UP_INT_H

#include "cmd/cmd.h"
#include "core/config.h"
#include "gateway/gateway.h"

typedef struct up_file {
    cmd_fleet_cfg fl;              /* control, autoscaling, services */
    gw_config     gateway;
} up_file;

typedef struct up_flags {
    const char *listen, *admin, *control, *instances, *min, *max, *data, *config;
} up_flags;

const cfg_schema *up_file_schema(void);
/* defaults < up's own defaults < file < environment < flags, then the
 * gateway pools and route the services need, then validation. */
int  up_config_load(up_file *u, const up_flags *f, cfg_error *err);
/* Writes the gateway section as the gateway's config file (JSON). */
int  up_gateway_write(const up_file *u, const char *path, char *err, size_t errlen);
void up_config_free(up_file *u);

#endif
