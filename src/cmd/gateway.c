/* gateway.c -- `hscale gateway`: reads flags, the `gateway:` section of a
 * config file and HSCALE_GATEWAY_* variables into one gw_config.
 *
 * Precedence is defaults < file < environment < flags, the same order as
 * every other command; --backend flags replace the file's pools and routes
 * with a single "default" pool so flags alone make a working balancer.
 * The configuration is fully validated before anything listens, so a typo
 * exits 2 with the key named rather than half-starting.
 *
 * `--check` validates and prints the effective configuration as JSON.
 * SIGHUP re-reads the file and environment and re-applies the same flags,
 * so a reload sees exactly what a restart would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
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
    "  --tls-listen ADDR  HTTPS listener; without --listen, the only one\n"
    "  --cert FILE        PEM certificate chain for --tls-listen\n"
    "  --key FILE         PEM private key of --cert\n"
    "  --redirect-from ADDR  plain listener answering 301 to the https URL\n"
    "  -c, --config FILE  hscale.yaml with a gateway: section\n"
    "  --check            validate, print the effective config as JSON, exit\n"
    "  -h, --help         this text\n"
    "\n"
    "Environment: HSCALE_GATEWAY_LISTEN, HSCALE_GATEWAY_WORKERS,\n"
    "HSCALE_GATEWAY_ADMIN, HSCALE_GATEWAY_ADMIN_TOKEN, HSCALE_GATEWAY_TLS_LISTEN,\n"
    "HSCALE_GATEWAY_TLS_CERT, HSCALE_GATEWAY_TLS_KEY. SIGHUP reloads the config file\n"
    "and the certificate files.\n";

typedef struct gw_file { gw_config gateway; } gw_file;

/* What the command line said, kept for SIGHUP. */
typedef struct gw_args {
    const char *listen, *workers, *admin, *config;
    const char *tls_listen, *cert, *key, *redirect;
    char      **backends;
    size_t      nback;
} gw_args;

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

static int cfg_fail(const cfg_error *e, int code);

/* defaults < file < environment < flags, then validation. */
static int load_all(const gw_args *a, gw_file *f, cfg_error *err)
{
    memset(f, 0, sizeof *f);
    if (cfg_load(&file_schema, f, a->config, err) < 0)
        return -1;
    struct { const char *path, *val; } sets[] = {
        { "gateway.listen", a->listen }, { "gateway.workers", a->workers },
        { "gateway.admin", a->admin }, { "gateway.tls_listen", a->tls_listen },
        { "gateway.tls_cert", a->cert }, { "gateway.tls_key", a->key },
        { "gateway.redirect_listen", a->redirect },
        /* --tls-listen without --listen: HTTPS only (the redirect listener,
         * if any, is the plain side). */
        { "gateway.tls_only", a->tls_listen && !a->listen ? "true" : NULL },
    };
    for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++)
        if (sets[k].val && cfg_set(&file_schema, f, sets[k].path, sets[k].val, err) < 0)
            return -1;
    if (a->nback && gw_config_from_backends(&f->gateway, a->backends, a->nback, err) < 0)
        return -1;
    return cfg_validate(&file_schema, f, err);
}

static int reload(gw_config *out, void *arg, char *errbuf, size_t errlen)
{
    gw_file f;
    cfg_error err;
    memset(&err, 0, sizeof err);
    if (load_all(arg, &f, &err) < 0) {
        cfg_error_format(&err, errbuf, errlen);
        cfg_free(&file_schema, &f);
        return -1;
    }
    *out = f.gateway;     /* moved: the wrapper holds nothing else */
    return 0;
}

int cmd_gateway(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    const char *listen = NULL, *workers = NULL, *admin = NULL, *config = NULL;
    const char *tls_listen = NULL, *cert = NULL, *key = NULL, *redirect = NULL;
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
        else if (!missing && (v = flag_value(argc, argv, &i, "--tls-listen", NULL, &missing)))
            tls_listen = v;
        else if (!missing && (v = flag_value(argc, argv, &i, "--cert", NULL, &missing)))
            cert = v;
        else if (!missing && (v = flag_value(argc, argv, &i, "--key", NULL, &missing)))
            key = v;
        else if (!missing && (v = flag_value(argc, argv, &i, "--redirect-from", NULL, &missing)))
            redirect = v;
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
    memset(&err, 0, sizeof err);
    gw_args args = { listen, workers, admin, config, tls_listen, cert, key, redirect, backends, nback };
    int rc = 0;
    if (load_all(&args, &f, &err) < 0) {
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
        cfg_to_json_redacted(&gw_config_schema, &f.gateway, &b);
        fwrite(buf_head(&b), 1, b.len, stdout);
        fputc('\n', stdout);
        buf_free(&b);
        goto out;
    }
    log_init_from_env();
    log_set_component("gateway");
    rc = gw_run(&f.gateway, config ? reload : NULL, &args);
out:
    cfg_free(&file_schema, &f);
    free(backends);
    return rc;
}
