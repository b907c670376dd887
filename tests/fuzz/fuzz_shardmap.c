/* fuzz_shardmap.c -- libFuzzer target for the stored shard map
 * (st_map_parse), which every instance reads from the meta shard's
 * hscale_shard_map table and adopts as its routing truth.
 *
 * Beyond "no crash": a refusal says "shard map"; an accepted map has a
 * version >= 1, a known strategy, 1..ST_SHARDS_CAP shards each with a
 * non-empty name, a NUL-terminated primary and a weight > 0, at most 8
 * replicas; rendering it and parsing that again gives the same map. */
#include <stdlib.h>
#include <string.h>

#include "store/store_priv.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static st_map m, back;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    st_err err;
    if (st_map_parse(text, &m, &err) < 0) {
        CHECK(strstr(err.msg, "shard map") != NULL);
        free(text);
        return 0;
    }
    free(text);
    CHECK(m.version >= 1 && m.strategy >= 0 && m.strategy <= 2);
    CHECK(m.n >= 1 && m.n <= ST_SHARDS_CAP);
    for (size_t i = 0; i < m.n; i++) {
        CHECK(m.shards[i].name[0] && m.shards[i].weight > 0 && m.shards[i].nreplicas <= 8);
        CHECK(memchr(m.shards[i].primary, 0, sizeof m.shards[i].primary) != NULL);
    }
    buf b;
    buf_init(&b);
    CHECK(st_map_to_json(&m, &b) == 0);
    buf_append(&b, "", 1);
    CHECK(st_map_parse(buf_head(&b), &back, &err) == 0);
    buf_free(&b);
    CHECK(back.version == m.version && back.strategy == m.strategy && back.n == m.n);
    for (size_t i = 0; i < m.n; i++) {
        CHECK(!strcmp(back.shards[i].name, m.shards[i].name));
        CHECK(!strcmp(back.shards[i].primary, m.shards[i].primary));
        CHECK(back.shards[i].nreplicas == m.shards[i].nreplicas);
    }
    return 0;
}
