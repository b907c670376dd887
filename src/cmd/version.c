/* version.c -- `hscale version`: the version and how this binary was built. */
#include <stdio.h>
#include "cmd.h"

#ifndef HSCALE_VERSION
#define HSCALE_VERSION "0.0.0"
#endif

static const char usage[] =
    "usage: hscale version\n\nPrints the hscale version.\n";

int cmd_version(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc > 1)
        return cmd_usage_error(usage, "version", "unexpected argument '%s'", argv[1]);
    printf("hscale %s\n", HSCALE_VERSION);
    return 0;
}
