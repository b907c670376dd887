/* gateway.c -- `hscale gateway`. Not built yet: this file says so plainly until
 * its issue lands, so the command table is complete from day one. */
#include <stdio.h>
#include "cmd.h"

static const char usage[] =
    "usage: hscale gateway [options]\n\nThis command is not built yet.\n";

int cmd_gateway(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    fprintf(stderr, "hscale gateway: not built yet in this version\n");
    return 1;
}
