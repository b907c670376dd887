/* main.c -- the hscale command table: `hscale <command> [args]`, in the
 * manner of git's builtins. Each command lives in src/cmd/<name>.c with its
 * own --help; this file only dispatches and prints the overview. */
#include <stdio.h>
#include <string.h>
#include "app/app.h"
#include "cmd/cmd.h"
#include "core/buf.h"
#include "core/config.h"
#include "gateway/gateway.h"
#include "store/store.h"

static int cmd_help(int argc, char **argv);

static const cmd commands[] = {
    {"gateway", "run the load balancer (data plane)",                 cmd_gateway},
    {"app",     "run the reference case-management service",           cmd_app},
    {"up",      "run gateway, control plane and app instances at once", cmd_up},
    {"down",    "stop what `hscale up` (or a crashed one) left running", cmd_down},
    {"control", "run the control plane (autoscaler, deploys, API)",    cmd_control},
    {"bench",   "generate load with SLO thresholds",                   cmd_bench},
    {"status",  "show instances and scaling events",                   cmd_status},
    {"shards",  "shard statistics, health and rebalance check",        cmd_shards},
    {"deploy",  "roll out a new version (rolling, blue-green, canary)", cmd_deploy},
    {"plan",    "capacity planning from figures or a bench report",     cmd_plan},
    {"doctor",  "check the fleet: instances, gateway, database, Prometheus", cmd_doctor},
    {"version", "print the version",                                   cmd_version},
    {"help",    "show this overview, or a command's help",             cmd_help},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void print_overview(FILE *out)
{
    fprintf(out, "usage: hscale <command> [options]\n\n"
                 "Horizontal scaling for any HTTP service.\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'hscale <command> --help' for a command's options,\n"
                 "'hscale help config' for every configuration key.\n");
}

static const cmd *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* `hscale help config`: the reference of every configuration key, made
 * from the same schema tables the loader uses, so docs/configuration.md is
 * generated from it and cannot drift (a test compares the two). */
static int print_config_reference(void)
{
    /* declared here rather than by including the control headers: the
     * schemas are all this function needs of them */
    extern const cfg_schema ctl_config_schema, ctl_autoscale_schema;
    extern const cfg_schema *ctl_service_schema(void);
    buf out;
    buf_init(&out);
    buf_append_str(&out, "## gateway\n\n");
    cfg_doc_markdown(&gw_config_schema, "gateway", &out);
    buf_append_str(&out, "\n## app\n\n");
    cfg_doc_markdown(&app_config_schema, "app", &out);
    buf_append_str(&out, "\n## store\n\n");
    cfg_doc_markdown(&st_config_schema, "store", &out);
    buf_append_str(&out, "\n## control\n\n");
    cfg_doc_markdown(&ctl_config_schema, "control", &out);
    buf_append_str(&out, "\n## autoscaling\n\n");
    cfg_doc_markdown(&ctl_autoscale_schema, "autoscaling", &out);
    buf_append_str(&out, "\n## services\n\n"
                   "Several services in one control plane (`hscale control`, `hscale up`); each\n"
                   "entry takes the template keys at its top level, the per-service `control:`\n"
                   "keys beside them and its own `autoscaling:`. Entries of a list take no\n"
                   "environment variables. See [control.md](control.md#several-services).\n\n");
    cfg_doc_markdown(ctl_service_schema(), "services[]", &out);
    fwrite(buf_head(&out), 1, out.len, stdout);
    buf_free(&out);
    return 0;
}

static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        print_overview(stdout);
        return 0;
    }
    if (strcmp(argv[1], "config") == 0)
        return print_config_reference();
    const cmd *c = find_command(argv[1]);
    if (!c) {
        fprintf(stderr, "hscale help: unknown command '%s'\n\n", argv[1]);
        print_overview(stderr);
        return EXIT_USAGE;
    }
    char *sub[] = {argv[1], "--help", NULL};
    return c->run(2, sub);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_overview(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_overview(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(1, argv + 1);
    const cmd *c = find_command(argv[1]);
    if (!c) {
        fprintf(stderr, "hscale: unknown command '%s'\n\n", argv[1]);
        print_overview(stderr);
        return EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}
