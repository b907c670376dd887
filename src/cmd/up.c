/* up.c -- `hscale up`: everything on one machine with no config.
 *
 * The control plane and the gateway's proxy are not built yet (issues 3
 * and 5), so today `up` starts what exists: the reference app on
 * 127.0.0.1:8080 over the embedded SQLite store in ./hscale-data, seeded
 * (100 users, 10,000 cases) on first start. It says so when it starts, and
 * grows into gateway + control + N instances as those land. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "app/app.h"
#include "cmd.h"

static const char usage[] =
    "usage: hscale up [--listen ADDR] [--data DIR]\n\n"
    "Runs the stack on one machine with no config. Today that is the\n"
    "reference app (the gateway proxy and the control plane are not built\n"
    "yet), over SQLite in DIR (default ./hscale-data), seeded on first start.\n\n"
    "  --listen ADDR  where to serve (default 127.0.0.1:8080)\n"
    "  --data DIR     data directory (default ./hscale-data)\n";

int cmd_up(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    const char *listen = "127.0.0.1:8080", *dir = "hscale-data";
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"data", required_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch == 'l')
            listen = optarg;
        else if (ch == 'd')
            dir = optarg;
        else
            return cmd_usage_error(usage, "up", "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    if (optind < argc)
        return cmd_usage_error(usage, "up", "unexpected argument '%s'", argv[optind]);

    char db[512], err[512];
    snprintf(db, sizeof db, "sqlite:%s/s0.db", dir);
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (mkdir(dir, 0755) != 0) {
            fprintf(stderr, "hscale up: cannot create %s\n", dir);
            return 1;
        }
        printf("hscale up: seeding %s (100 users, 10000 cases)\n", dir);
        if (app_seed(db, 100, 10000, 1, err, sizeof err) != 0) {
            fprintf(stderr, "hscale up: seed: %s\n", err);
            return 1;
        }
    }
    printf("hscale up: app on http://%s (store %s)\n"
           "           gateway proxy and control plane: not built in this version\n",
           listen, db);
    fflush(stdout);
    app_opts o = {.listen = listen, .db = db};
    if (app_run(&o, err, sizeof err) != 0) {
        fprintf(stderr, "hscale up: %s\n", err);
        return 1;
    }
    return 0;
}
