/* control.c -- `hscale control`: reads flags, the `control:` section of a
 * config file and HSCALE_CONTROL_* variables into one ctl_config and runs
 * the control plane until SIGINT or SIGTERM.
 *
 * Precedence is defaults < file < environment < flags, as for every
 * command. The whole configuration is validated before anything starts, so
 * a typo exits 2 naming the key instead of leaving children behind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "control/control.h"
#include "control/ctl_autoscale.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"

static const char usage[] =
    "usage: hscale control [options]\n"
    "\n"
    "Control plane: keeps N instances of a service running (processes on\n"
    "loopback ports, or whatever exec scripts launch), registers them with\n"
    "the gateway, drains them before they stop, restarts crashed ones, and\n"
    "serves the scaling API. Processes outlive a crash of control: the next\n"
    "one on the same state dir adopts them; SIGTERM/SIGINT (or `hscale\n"
    "down --data DIR`) drains and stops them.\n"
    "\n"
    "  --listen ADDR        scaling API listener (default 127.0.0.1:8081)\n"
    "  --gateway URL        gateway admin API, e.g. http://127.0.0.1:8082\n"
    "                       (default: none, instances are not registered)\n"
    "  --gateway-token-file F  file holding the gateway admin API's token\n"
    "  --token-file F       file holding the admin token the API requires\n"
    "                       (tokens never go on the command line: ps shows it)\n"
    "  --pool NAME          gateway pool the instances join (default: default)\n"
    "  --instances N        instances at start (default 3)\n"
    "  --command CMD        instance command; {port} {host} {id} {version}\n"
    "                       {exe} {state_dir} are expanded (default: this\n"
    "                       binary's `app --listen {host}:{port}`)\n"
    "  --version V          version label of the instances (default v1)\n"
    "  --ready-path PATH    readiness probe path (default /health/ready)\n"
    "  --driver NAME        process | exec (default process)\n"
    "  --state-dir DIR      instance logs and state file (default hscale-data/control)\n"
    "  --drain-timeout D    longest drain before a stop (default 30s)\n"
    "  -c, --config FILE    hscale.yaml with a control: section\n"
    "  --check              validate, print the effective config as JSON, exit\n"
    "  -h, --help           this text\n"
    "\n"
    "API: GET /api/v1/scaling/status, GET /api/v1/instances,\n"
    "POST /api/v1/scaling/desired {\"count\":N}, GET /health, GET /metrics;\n"
    "autoscaler: GET /api/v1/scaling/{metrics,history,config,recommendations},\n"
    "PUT /api/v1/scaling/config, POST /api/v1/scaling/{start,stop}. The\n"
    "autoscaler (section autoscaling:) is off unless the file or\n"
    "AUTO_SCALING_ENABLED=true turns it on; `hscale up` runs it on.\n"
    "Environment: HSCALE_CONTROL_LISTEN, HSCALE_CONTROL_GATEWAY,\n"
    "HSCALE_CONTROL_TOKEN, HSCALE_CONTROL_READ_TOKEN, HSCALE_CONTROL_GATEWAY_TOKEN,\n"
    "HSCALE_CONTROL_TLS_CERT, HSCALE_CONTROL_TLS_KEY (see docs/security.md),\n"
    "HSCALE_CONTROL_POOL, HSCALE_CONTROL_INSTANCES,\n"
    "HSCALE_CONTROL_DRIVER, HSCALE_CONTROL_COMMAND, HSCALE_CONTROL_STATE_DIR,\n"
    "HSCALE_CONTROL_SD_FILE (Prometheus targets, default\n"
    "hscale-data/prometheus/targets.json).\n";

typedef struct ctl_file {
    cmd_fleet_cfg fl;
} ctl_file;

static int file_validate(void *obj, cfg_error *err)
{
    return cmd_fleet_check(&((ctl_file *)obj)->fl, err);
}

static cfg_field file_fields[3];   /* cmd_fleet_fields, filled at run time */
static cfg_schema file_schema = { "hscale", file_fields, 0, file_validate };

/* Flag name -> config path. */
static const struct { const char *flag, *path; } flag_paths[] = {
    { "--listen", "control.listen" },           { "--gateway", "control.gateway" },
    { "--gateway-token-file", "control.gateway_token_file" },
    { "--token-file", "control.token_file" },
    { "--pool", "control.pool" },               { "--instances", "control.instances" },
    { "--command", "control.template.command" }, { "--version", "control.template.version" },
    { "--ready-path", "control.template.ready_path" }, { "--driver", "control.driver" },
    { "--state-dir", "control.state_dir" },     { "--drain-timeout", "control.drain_timeout" },
};
#define NFLAGS (sizeof flag_paths / sizeof flag_paths[0])

int cmd_control(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    const char *vals[NFLAGS] = { 0 };
    const char *config = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--check") == 0) {
            check = 1;
            continue;
        }
        const char *v = NULL;
        size_t k = NFLAGS;
        bool is_config = false;
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        if ((nlen == 8 && strncmp(a, "--config", 8) == 0) || strcmp(a, "-c") == 0)
            is_config = true;
        else
            for (k = 0; k < NFLAGS; k++)
                if (strlen(flag_paths[k].flag) == nlen && strncmp(a, flag_paths[k].flag, nlen) == 0)
                    break;
        if (!is_config && k == NFLAGS && ((nlen == 7 && strncmp(a, "--token", 7) == 0)
                                          || (nlen == 15 && strncmp(a, "--gateway-token", 15) == 0)))
            return cmd_usage_error(usage, "control", "%.*s is gone: a token on the command line "
                                   "shows in ps; use %.*s-file FILE or the environment "
                                   "(HSCALE_CONTROL_TOKEN, HSCALE_CONTROL_GATEWAY_TOKEN)",
                                   (int)nlen, a, (int)nlen, a);
        if (!is_config && k == NFLAGS)
            return cmd_usage_error(usage, "control", "unknown option '%s'", a);
        if (eq && a[0] == '-' && a[1] == '-')
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else
            return cmd_usage_error(usage, "control", "%s needs a value", a);
        if (is_config)
            config = v;
        else
            vals[k] = v;
    }

    file_schema.nfields = cmd_fleet_fields(file_fields, offsetof(ctl_file, fl));
    ctl_file f;
    cfg_error err;
    memset(&f, 0, sizeof f);
    memset(&err, 0, sizeof err);
    int rc = 0;
    /* Alone, `hscale control` scales by hand unless the file or
     * AUTO_SCALING_ENABLED turns the autoscaler on (`hscale up` starts it
     * on). So: defaults, then enabled off, then file, environment, flags. */
    if (cfg_defaults(&file_schema, &f, &err) < 0)
        goto bad;
    f.fl.autoscaling.enabled = false;
    if ((config && cfg_load_file(&file_schema, &f, config, &err) < 0)
        || cfg_apply_env(&file_schema, &f, &err) < 0)
        goto bad;
    for (size_t k = 0; k < NFLAGS; k++)
        if (vals[k] && cfg_set(&file_schema, &f, flag_paths[k].path, vals[k], &err) < 0)
            goto bad;
    if (cfg_validate(&file_schema, &f, &err) < 0)
        goto bad;
    if (check) {
        buf b;
        buf_init(&b);
        cfg_to_json_redacted(&ctl_config_schema, &f.fl.control, &b);
        if (b.len && buf_head(&b)[b.len - 1] == '}') {   /* the section joins the object */
            b.len--;
            buf_append_str(&b, ",\"autoscaling\":");
            cfg_to_json_redacted(&ctl_autoscale_schema, &f.fl.autoscaling, &b);
            for (size_t i = 0; i < f.fl.nservices; i++) {
                buf_append_str(&b, i ? "," : ",\"services\":[");
                cfg_to_json_redacted(ctl_service_schema(), &f.fl.services[i], &b);
            }
            buf_append_str(&b, f.fl.nservices ? "]}" : "}");
        }
        fwrite(buf_head(&b), 1, b.len, stdout);
        fputc('\n', stdout);
        buf_free(&b);
        goto out;
    }
    log_init_from_env();
    log_set_component("control");
    {
        char e[512];
        cmd_fleet fl;
        if (cmd_fleet_build(&fl, &f.fl, e, sizeof e) < 0) {
            fprintf(stderr, "hscale control: %s\n", e);
            rc = 1;
            goto out;
        }
        rc = ctl_run_services(fl.defs, fl.n);
        cmd_fleet_free(&fl);
    }
    goto out;
bad: {
        char msg[1024];
        cfg_error_format(&err, msg, sizeof msg);
        fprintf(stderr, "hscale control: %s\n", msg);
        rc = EXIT_USAGE;
    }
out:
    cfg_free(&file_schema, &f);
    return rc;
}
