/* plan.c -- `hscale plan`. Not built yet: this file says so plainly until
 * its issue lands, so the command table is complete from day one. */
#include <stdio.h>
#include "cmd.h"

static const char usage[] =
    "usage: hscale plan [options]\n\nThis command is not built yet.\n";

int cmd_plan(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    fprintf(stderr, "hscale plan: not built yet in this version\n");
    return 1;
}
