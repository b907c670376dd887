/* common.c -- helpers shared by the subcommands: usage errors and --help
 * detection. */
#include <stdarg.h>
#include <string.h>
#include "cmd.h"
#include "http/client.h"

#include <stdio.h>

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

int cmd_take_ca_file(int *argc, char **argv, const char *cmdname)
{
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "--ca-file") == 0) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "hscale %s: --ca-file needs a file\n", cmdname);
                return -1;
            }
            v = argv[++i];
        } else if (strncmp(a, "--ca-file=", 10) == 0) {
            v = a + 10;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        http_client_set_ca_file(v);
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}
