/* fuzz_sentinel.c -- libFuzzer target for what the cache's Sentinel
 * follower reads from the network: +switch-master message payloads
 * (st_sentinel_parse_switch, parsed by hand) and the RESP replies to
 * SENTINEL get-master-addr-by-name and ROLE (built by hiredis's reader,
 * then st_sentinel_parse_addr and st_redis_parse_role).
 *
 * Beyond "no crash": an accepted switch or address gives a non-empty host
 * of printable ASCII with no quote or backslash (it goes into logs and the
 * /health JSON) that fits its buffer, and a port in 1..65535; a message
 * for our master is recognised whatever the name of another master. */
#include <hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static void check_host(const char *h, int port, size_t cap)
{
    size_t n = strlen(h);
    CHECK(n > 0 && n < cap);
    for (size_t i = 0; i < n; i++)
        CHECK(h[i] > 0x20 && h[i] < 0x7f && h[i] != '"' && h[i] != '\\');
    CHECK(port >= 1 && port <= 65535);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char host[16];
    int port = 0;
    int rc = st_sentinel_parse_switch((const char *)data, size, "mymaster", host, sizeof host,
                                      &port);
    CHECK(rc >= -1 && rc <= 1);
    if (rc == 1) {
        check_host(host, port, sizeof host);
        CHECK(size >= 9 && memmem(data, size, "mymaster", 8) != NULL);
    }

    redisReader *rd = redisReaderCreate();
    if (!rd)
        return 0;
    if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
        void *rep = NULL;
        for (int i = 0; i < 4 && redisReaderGetReply(rd, &rep) == REDIS_OK && rep; i++) {
            char h[64];
            int p = 0;
            if (st_sentinel_parse_addr(rep, h, sizeof h, &p) == 0)
                check_host(h, p, sizeof h);
            int role = st_redis_parse_role(rep);
            CHECK(role >= -1 && role <= 1);
            freeReplyObject(rep);
            rep = NULL;
        }
    }
    redisReaderFree(rd);
    return 0;
}
