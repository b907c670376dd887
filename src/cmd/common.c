/* common.c -- helpers shared by the subcommands: usage errors and --help
 * detection. */
#include <stdarg.h>
#include <string.h>
#include "cmd.h"

int cmd_usage_error(const char *usage, const char *cmdname, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "hscale %s: ", cmdname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n%s", usage);
    return EXIT_USAGE;
}

int cmd_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return 0;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    }
    return 0;
}
