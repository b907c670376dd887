/* gateway.c -- `hscale gateway`: reads flags, the `gateway:` section of a
 * config file and HSCALE_GATEWAY_* variables into one gw_config.
 *
 * Precedence is defaults < file < environment < flags, the same order as
 * every other command; --backend flags replace the file's pools and routes
 * with a single "default" pool so flags alone make a working balancer.
 * The configuration is fully validated before anything listens, so a typo
 * exits 2 with the key named rather than half-starting.
 *
 * State of this version: the configuration, balancing, health, outlier,
 * retry-budget and rate-limit logic exist (src/gateway); the proxy loop
 * waits on the HTTP parser. `--check` validates and prints the effective
 * configuration as JSON; running without it says plainly that the data
 * plane is not built yet. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "core/buf.h"
#include "core/config.h"
#include "gateway/gateway.h"

static const char usage[] =
    "usage: hscale gateway [options]\n"
    "\n"
    "HTTP/1.1 load balancer. Flags alone give one pool and one route;\n"
    "a config file (section `gateway:`) describes several.\n"
    "\n"
    "  --listen ADDR      client listener (default 127.0.0.1:8080)\n"
    "  --backend ADDR     backend host:port; repeat for more\n"
    "  --workers N        worker threads (default: one per core)\n"
    "  --admin ADDR       admin API listener (default: off)\n"
    "  -c, --config FILE  hscale.yaml with a gateway: section\n"
    "  --check            validate, print the effective config as JSON, exit\n"
    "  -h, --help         this text\n"
    "\n"
    "Environment: HSCALE_GATEWAY_LISTEN, HSCALE_GATEWAY_WORKERS,\n"
    "HSCALE_GATEWAY_ADMIN, HSCALE_GATEWAY_ADMIN_TOKEN.\n";

typedef struct gw_file { gw_config gateway; } gw_file;

static const cfg_field file_fields[] = {
    { .key = "gateway", .type = CFG_OBJECT, .offset = offsetof(gw_file, gateway),
      .sub = &gw_config_schema, .help = "the load balancer" },
};
static const cfg_schema file_schema = { "hscale", file_fields, 1, NULL };

/* "--name value" or "--name=value". Returns the value or NULL when this
 * argument is not `name`; *i advances past a separate value. */
static const char *flag_value(int argc, char **argv, int *i, const char *name,
                              const char *alias, int *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) == 0 && a[n] == '=')
        return a + n + 1;
    if (strcmp(a, name) != 0 && !(alias && strcmp(a, alias) == 0))
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

static int cfg_fail(const cfg_error *e, int code)
{
    char msg[1024];
    cfg_error_format(e, msg, sizeof msg);
    fprintf(stderr, "hscale gateway: %s\n", msg);
    return code;
}

int cmd_gateway(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    const char *listen = NULL, *workers = NULL, *admin = NULL, *config = NULL;
    char **backends = calloc((size_t)argc, sizeof *backends);
    size_t nback = 0;
    int check = 0;
    if (!backends)
        return 1;
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if ((v = flag_value(argc, argv, &i, "--listen", NULL, &missing)))
            listen = v;
        else if (!missing && (v = flag_value(argc, argv, &i, "--backend", NULL, &missing)))
            backends[nback++] = (char *)v;
        else if (!missing && (v = flag_value(argc, argv, &i, "--workers", NULL, &missing)))
            workers = v;
        else if (!missing && (v = flag_value(argc, argv, &i, "--admin", NULL, &missing)))
            admin = v;
        else if (!missing && (v = flag_value(argc, argv, &i, "--config", "-c", &missing)))
            config = v;
        else if (!missing && strcmp(argv[i], "--check") == 0)
            check = 1;
        else {
            free(backends);
            if (missing)
                return cmd_usage_error(usage, "gateway", "%s needs a value", argv[i]);
            return cmd_usage_error(usage, "gateway", "unknown option '%s'", argv[i]);
        }
    }

    gw_file f;
    cfg_error err;
    memset(&f, 0, sizeof f);
    memset(&err, 0, sizeof err);
    int rc = 0;
    if (cfg_load(&file_schema, &f, config, &err) < 0) {
        rc = cfg_fail(&err, EXIT_USAGE);
        goto out;
    }
    struct { const char *path, *val; } sets[] = {
        { "gateway.listen", listen }, { "gateway.workers", workers }, { "gateway.admin", admin },
    };
    for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++)
        if (sets[k].val && cfg_set(&file_schema, &f, sets[k].path, sets[k].val, &err) < 0) {
            rc = cfg_fail(&err, EXIT_USAGE);
            goto out;
        }
    if (nback && gw_config_from_backends(&f.gateway, backends, nback, &err) < 0) {
        rc = cfg_fail(&err, EXIT_USAGE);
        goto out;
    }
    if (cfg_validate(&file_schema, &f, &err) < 0) {
        rc = cfg_fail(&err, EXIT_USAGE);
        goto out;
    }
    if (f.gateway.npools == 0) {
        rc = cmd_usage_error(usage, "gateway", "no backends: give --backend or a config file with pools");
        goto out;
    }
    if (check) {
        buf b;
        buf_init(&b);
        cfg_to_json(&gw_config_schema, &f.gateway, &b);
        fwrite(buf_head(&b), 1, b.len, stdout);
        fputc('\n', stdout);
        buf_free(&b);
        goto out;
    }
    fprintf(stderr, "hscale gateway: configuration valid (%zu pools, %zu routes); "
            "the proxy data plane is not built in this version\n",
            f.gateway.npools, f.gateway.nroutes);
    rc = 1;
out:
    cfg_free(&file_schema, &f);
    free(backends);
    return rc;
}
