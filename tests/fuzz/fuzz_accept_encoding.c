/* fuzz_accept_encoding.c -- libFuzzer target for the gateway's
 * Accept-Encoding reader (gw_compress_accepts, gw_compress.c).
 *
 * Beyond "no crash": the answer is one of the three codings; a value that
 * names neither gzip nor br nor "*" (case-insensitively) gets none; the
 * same bytes always give the same answer; and appending ", gzip;q=0,
 * br;q=0" to any value makes it refuse both (the last entry naming a
 * coding wins, and a named coding is not covered by "*"). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/gw_proxy.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static bool names(const char *p, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= n; i++)
        if (strncasecmp(p + i, tok, tl) == 0)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    const char *v = (const char *)data;
    uint8_t a = gw_compress_accepts(v, size);
    CHECK(a == GW_CODING_NONE || a == GW_CODING_GZIP || a == GW_CODING_BR);
    CHECK(gw_compress_accepts(v, size) == a);
    if (!names(v, size, "gzip") && !names(v, size, "br") && !memchr(v, '*', size))
        CHECK(a == GW_CODING_NONE);
    static const char tail[] = ", gzip;q=0, br;q=0";
    char *w = malloc(size + sizeof tail);
    if (!w)
        return 0;
    memcpy(w, v, size);
    memcpy(w + size, tail, sizeof tail - 1);
    CHECK(gw_compress_accepts(w, size + sizeof tail - 1) == GW_CODING_NONE);
    free(w);
    return 0;
}
