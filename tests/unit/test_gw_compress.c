/* test_gw_compress.c -- the Accept-Encoding choice (gw_compress_accepts):
 * q-values, refusals, wildcards and ties, and malformed values. */
#include <criterion/criterion.h>
#include <string.h>

#include "gateway/gw_proxy.h"

static uint8_t pick(const char *v) { return gw_compress_accepts(v, strlen(v)); }

Test(gw_compress, plain_lists_prefer_br_on_a_tie)
{
    cr_assert_eq(pick("gzip"), GW_CODING_GZIP);
    cr_assert_eq(pick("br"), GW_CODING_BR);
    cr_assert_eq(pick("gzip, deflate, br"), GW_CODING_BR);
    cr_assert_eq(pick("GZIP"), GW_CODING_GZIP);
    cr_assert_eq(pick("x-gzip"), GW_CODING_GZIP);
    cr_assert_eq(pick("deflate"), GW_CODING_NONE);
    cr_assert_eq(pick(""), GW_CODING_NONE);
    cr_assert_eq(pick("identity"), GW_CODING_NONE);
}

Test(gw_compress, q_values_rank_and_refuse)
{
    cr_assert_eq(pick("br;q=0.5, gzip;q=0.9"), GW_CODING_GZIP);
    cr_assert_eq(pick("br;q=0.9, gzip;q=0.5"), GW_CODING_BR);
    cr_assert_eq(pick("gzip;q=0"), GW_CODING_NONE);
    cr_assert_eq(pick("gzip;q=0.000, br;q=0.001"), GW_CODING_BR);
    cr_assert_eq(pick("gzip ; q=1.0"), GW_CODING_GZIP);
    cr_assert_eq(pick("br;level=3;q=0.2, gzip;q=0.1"), GW_CODING_BR);
}

Test(gw_compress, wildcard_covers_codings_not_named)
{
    cr_assert_eq(pick("*"), GW_CODING_BR);
    cr_assert_eq(pick("br;q=0, *"), GW_CODING_GZIP);
    cr_assert_eq(pick("*;q=0"), GW_CODING_NONE);
    cr_assert_eq(pick("gzip, *;q=0"), GW_CODING_GZIP);
}

Test(gw_compress, malformed_q_refuses_that_coding_only)
{
    cr_assert_eq(pick("gzip;q=abc"), GW_CODING_NONE);
    cr_assert_eq(pick("br;q=2, gzip"), GW_CODING_GZIP);
    cr_assert_eq(pick(",,, ;;; q="), GW_CODING_NONE);
}
