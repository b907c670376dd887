/* fuzz_gw_statefile.c -- libFuzzer target for the gateway's state file
 * (gw_statefile_parse, then gw_statefile_merge into a fixed configuration:
 * pools "app" and "canary", a route "/" split between them).
 *
 * Beyond "no crash": a refusal keeps nothing and names where it failed (an
 * entry path such as "pools[0].members[1].weight", "file" or the JSON
 * line); an accepted file holds only members with a weight in 1..1000, an
 * address that parses and a known state; merging it never lets a pool
 * exceed GW_MAX_MEMBERS, leaves a configuration that still validates and
 * builds a snapshot (so the gateway starts), and takes no more members
 * than the file holds. */
#include <stdlib.h>
#include <string.h>

#include "gateway/gw_statefile.h"

#include "fuzz_resolver.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static const char *DOC =
    "pools:\n"
    "  - {name: app, backends: [{address: '127.0.0.1:9001'}]}\n"
    "  - {name: canary, backends: [{address: '127.0.0.1:9004'}]}\n"
    "routes:\n"
    "  - {prefix: /, split: [{pool: app, weight: 90}, {pool: canary, weight: 10}]}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_statefile sf;
    char err[400] = "";
    if (gw_statefile_parse((const char *)data, size, &sf, err, sizeof err) < 0) {
        CHECK(sf.members == NULL && sf.splits == NULL && sf.nmembers == 0);
        CHECK(strstr(err, "pools") || strstr(err, "routes") || strstr(err, "file")
              || strstr(err, "line"));
        return 0;
    }
    for (size_t i = 0; i < sf.nmembers; i++) {
        sock_addr a;
        char e[128];
        CHECK(sf.members[i].weight >= 1 && sf.members[i].weight <= 1000);
        CHECK(sf.members[i].state >= GW_ST_READY && sf.members[i].state <= GW_ST_DOWN);
        CHECK(sock_addr_parse(sf.members[i].address, &a, e, sizeof e) == 0);
    }
    gw_config c;
    cfg_error ce;
    memset(&c, 0, sizeof c);
    memset(&ce, 0, sizeof ce);
    CHECK(cfg_defaults(&gw_config_schema, &c, &ce) == 0);
    CHECK(cfg_load_text(&gw_config_schema, &c, DOC, strlen(DOC), "t", &ce) == 0);
    bool *restored = calloc(sf.nmembers ? sf.nmembers : 1, sizeof *restored);
    CHECK(restored);
    size_t n = gw_statefile_merge(&sf, &c, 1e9, restored);
    CHECK(n <= sf.nmembers);
    for (size_t p = 0; p < c.npools; p++)
        CHECK(c.pools[p].nbackends <= GW_MAX_MEMBERS);
    CHECK(cfg_validate(&gw_config_schema, &c, &ce) == 0);
    char e[256];
    gw_snap *s = gw_snap_build(&c, NULL, e, sizeof e);
    CHECK(s);
    gw_snap_free(s);
    free(restored);
    cfg_free(&gw_config_schema, &c);
    gw_statefile_free(&sf);
    return 0;
}
