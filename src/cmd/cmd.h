/* cmd.h -- the hscale subcommands, one file each, and what they share:
 * usage printing and the exit codes every command keeps to.
 *
 * Exit codes: 0 success, 1 failure at run time (a threshold failed, a
 * check found a problem, a peer was unreachable), 2 bad usage (unknown
 * command or flag, bad value), as git and curl do. */
#ifndef HSCALE_CMD_CMD_H
#define HSCALE_CMD_CMD_H

#include <stdio.h>

#include "control/control.h"
#include "control/ctl_service.h"
#include "core/config.h"

#define EXIT_USAGE 2

typedef struct cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);   /* argv[0] is the command name */
} cmd;

int cmd_gateway(int argc, char **argv);
int cmd_app(int argc, char **argv);
int cmd_up(int argc, char **argv);
int cmd_down(int argc, char **argv);
int cmd_control(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_shards(int argc, char **argv);
int cmd_deploy(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_version(int argc, char **argv);

/* Prints "hscale <cmd>: <msg>" and the command's usage to stderr; returns
 * EXIT_USAGE so callers can `return cmd_usage_error(...)`. */
int cmd_usage_error(const char *usage, const char *cmdname, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* True when argv holds -h or --help (before any "--"). */
int cmd_wants_help(int argc, char **argv);
/* Takes "--ca-file FILE" (or --ca-file=FILE) out of argv (argc shrinks)
 * and makes https clients trust FILE; HSCALE_CA_FILE otherwise. -1 with a
 * message on stderr when the flag has no value. */
int cmd_take_ca_file(int *argc, char **argv, const char *cmdname);

/* The control plane's part of a config file: the single-service form
 * (control + autoscaling) or the services list (fleet.c). */
typedef struct cmd_fleet_cfg {
    ctl_config        control;
    ctl_autoscale_cfg autoscaling;
    ctl_service_cfg  *services;
    size_t            nservices;
} cmd_fleet_cfg;

/* Writes the top-level fields control, autoscaling and services for a
 * cmd_fleet_cfg at `base` within a file's struct into out (3 slots);
 * returns how many. */
size_t cmd_fleet_fields(cfg_field *out, size_t base);
/* The cross-service checks, for the file schema's validate hook. */
int    cmd_fleet_check(const cmd_fleet_cfg *f, cfg_error *err);

/* The services of one control plane and their autoscalers (fleet.c). */
typedef struct cmd_fleet {
    size_t          n;
    ctl_service_def defs[CTL_MAX_SERVICES];
    ctl_hooks       hooks[CTL_MAX_SERVICES];
    ctl_autoscaler *as[CTL_MAX_SERVICES];
} cmd_fleet;

/* One service per `services:` entry of f (resolved against control's
 * shared keys), or the default service from control and autoscaling when
 * the list is empty. f must outlive the fleet. 0, or -1 with err. */
int  cmd_fleet_build(cmd_fleet *fl, cmd_fleet_cfg *f, char *err, size_t errlen);
void cmd_fleet_free(cmd_fleet *fl);

#endif
