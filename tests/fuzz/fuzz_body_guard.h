/* fuzz_body_guard.h -- what every API body target shares: the server
 * guard in front of the admin listeners (src/http/server_guard.c) scans
 * the body's nesting before any handler parses it. guard_passes() applies
 * that cap (32, the listeners' default) and checks the scan against
 * jansson: on every body jansson reads, both see the same depth. Header
 * only, included by one target each. */
#ifndef HSCALE_FUZZ_BODY_GUARD_H
#define HSCALE_FUZZ_BODY_GUARD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>

#include "http/server.h"

#ifndef CHECK
#define CHECK(x) do { if (!(x)) abort(); } while (0)
#endif

static unsigned tree_depth(const json_t *j)
{
    unsigned d = 0;
    const json_t *v;
    size_t i;
    const char *k;
    if (json_is_array(j))
        json_array_foreach(j, i, v) {
            unsigned x = tree_depth(v);
            d = x > d ? x : d;
        }
    else if (json_is_object(j))
        json_object_foreach((json_t *)j, k, v) {
            unsigned x = tree_depth(v);
            d = x > d ? x : d;
        }
    else
        return 0;
    return d + 1;
}

/* The guard in front of the admin listener (default cap 32). */
static bool guard_passes(const char *body, size_t len)
{
    unsigned d = http_json_depth(body, len, 2048);
    /* duplicate keys: jansson keeps the last value, the scan saw all */
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (j)
        CHECK(tree_depth(j) == d);
    json_decref(j);
    return http_json_depth(body, len, 32) <= 32;
}

#endif
