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
    bool        tls;               /* --tls: HTTPS with a self-signed certificate */
} up_flags;

const cfg_schema *up_file_schema(void);
/* defaults < up's own defaults < file < environment < flags, then the
 * gateway pools and route the services need, then validation. */
int  up_config_load(up_file *u, const up_flags *f, cfg_error *err);
/* Writes the gateway section as the gateway's config file (JSON). */
int  up_gateway_write(const up_file *u, const char *path, char *err, size_t errlen);
void up_config_free(up_file *u);
/* --tls: makes (once) a self-signed certificate for localhost in the data
 * directory and points the gateway's only listener at it (tls_listen on
 * the listen address, tls_only). */
int  up_tls_setup(up_file *u, const char *data, char *err, size_t errlen);

/* Pid files of the stack in its data directory (up_pidfile.c): up.pid
 * (the running `hscale up`, for `hscale down` and against a second up on
 * the same data) and gateway.pid (its gateway, adopted by the next up
 * after a crash). The text is "PID START\n", START the pid's start time
 * (/proc/PID/stat field 22), so a pid the kernel reused never matches. */
#define UP_PIDFILE_UP      "up.pid"
#define UP_PIDFILE_GATEWAY "gateway.pid"

/* Strict: two decimal numbers, a space between, an optional newline. */
int  up_pidfile_parse(const char *text, size_t len, pid_t *pid, uint64_t *start);
/* Writes pid with its start time atomically: 0, or -1 with err. */
int  up_pidfile_write(const char *path, pid_t pid, char *err, size_t errlen);
/* True when path names a process that still runs (same start time). */
bool up_pidfile_alive(const char *path, pid_t *pid, uint64_t *start);

#endif
