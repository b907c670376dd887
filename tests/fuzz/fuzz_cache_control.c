/* fuzz_cache_control.c -- libFuzzer target for the gateway cache's header
 * readers (gw_cache_policy.c): Cache-Control (gw_cc_parse), HTTP dates
 * (gw_http_date) and client conditionals (gw_cache_not_modified).
 *
 * Beyond "no crash": every delta is absent or within 0..2^31; the same
 * bytes always give the same directives; parsing is additive (a later
 * ", no-store" or ", max-age=x" line adds no-store or a bad age to
 * whatever came before, and removes nothing); a lifetime is never
 * negative unless absent; a date that parses is not negative and
 * formats back to itself; "*" as If-None-Match always matches. */
#include <stdlib.h>
#include <string.h>

#include "gateway/gw_cache.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static void check_delta(int64_t d)
{
    CHECK(d == GW_CC_ABSENT || (d >= 0 && d <= GW_DELTA_MAX));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    const char *v = (const char *)data;
    gw_cc a, b;
    gw_cc_init(&a);
    gw_cc_parse(&a, v, size);
    gw_cc_init(&b);
    gw_cc_parse(&b, v, size);
    CHECK(a.f == b.f && a.max_age == b.max_age && a.s_maxage == b.s_maxage && a.swr == b.swr
          && a.sie == b.sie && a.max_stale == b.max_stale && a.min_fresh == b.min_fresh);
    check_delta(a.max_age);
    check_delta(a.s_maxage);
    check_delta(a.swr);
    check_delta(a.sie);
    check_delta(a.max_stale);
    check_delta(a.min_fresh);
    int64_t life = gw_cache_lifetime(&a, 0, GW_CC_ABSENT, 0, -1);
    CHECK(life == GW_CC_ABSENT || life >= 0);

    gw_cc_parse(&b, ", no-store", 10);
    CHECK((b.f & a.f) == a.f && (b.f & GW_CC_NO_STORE));
    gw_cc_parse(&b, ", max-age=x", 11);
    CHECK(b.f & GW_CC_BAD_AGE);
    CHECK(gw_cache_lifetime(&b, 0, GW_CC_ABSENT, 0, -1) == 0);

    int64_t t = gw_http_date(v, size);
    CHECK(t >= -1);
    if (t >= 0) {
        char out[32];
        size_t n = gw_http_date_fmt(t, out);
        CHECK(n == 29 && gw_http_date(out, n) == t);
    }
    CHECK(gw_cache_not_modified("*", 1, true, v, size, -1, -1));
    (void)gw_cache_not_modified(v, size, true, "\"a\"", 3, -1, -1);
    return 0;
}
