/* test_gw_cache_policy.c -- RFC 9111 rules of the gateway cache
 * (gw_cache_policy.c): Cache-Control parsing, HTTP dates, lifetime and
 * age, storability, the use of a stored response, client conditionals. */
#include <criterion/criterion.h>
#include <string.h>

#include "gateway/gw_cache.h"

static gw_cc cc_of(const char *v)
{
    gw_cc cc;
    gw_cc_init(&cc);
    gw_cc_parse(&cc, v, strlen(v));
    return cc;
}

Test(gw_cache_cc, directives_and_values)
{
    gw_cc cc = cc_of("public, max-age=60, s-maxage=\"30\", stale-while-revalidate=5, "
                     "stale-if-error=600, MUST-REVALIDATE, immutable");
    cr_assert(cc.f & GW_CC_PUBLIC);
    cr_assert(cc.f & GW_CC_MUST_REVALIDATE);
    cr_assert(cc.f & GW_CC_IMMUTABLE);
    cr_assert_eq(cc.max_age, 60);
    cr_assert_eq(cc.s_maxage, 30);
    cr_assert_eq(cc.swr, 5);
    cr_assert_eq(cc.sie, 600);
    cr_assert_not(cc.f & GW_CC_BAD_AGE);
    gw_cc q = cc_of("no-store,no-cache=\"Set-Cookie, X\",private,proxy-revalidate,must-understand,"
                    "no-transform,only-if-cached,max-stale,min-fresh=3");
    cr_assert_eq(q.f & (GW_CC_NO_STORE | GW_CC_NO_CACHE | GW_CC_PRIVATE | GW_CC_PROXY_REVALIDATE
                        | GW_CC_MUST_UNDERSTAND | GW_CC_NO_TRANSFORM | GW_CC_ONLY_IF_CACHED),
                 GW_CC_NO_STORE | GW_CC_NO_CACHE | GW_CC_PRIVATE | GW_CC_PROXY_REVALIDATE
                 | GW_CC_MUST_UNDERSTAND | GW_CC_NO_TRANSFORM | GW_CC_ONLY_IF_CACHED);
    cr_assert_eq(q.max_stale, GW_DELTA_MAX);
    cr_assert_eq(q.min_fresh, 3);
    cr_assert_eq(q.max_age, GW_CC_ABSENT);
}

Test(gw_cache_cc, malformed_and_conflicting_ages_are_stale)
{
    gw_cc a = cc_of("max-age=abc");
    cr_assert(a.f & GW_CC_BAD_AGE);
    cr_assert_eq(gw_cache_lifetime(&a, -1, GW_CC_ABSENT, 100, -1), 0);
    gw_cc b = cc_of("max-age=10, max-age=20");
    cr_assert(b.f & GW_CC_BAD_AGE);
    gw_cc c = cc_of("max-age=10");
    gw_cc_parse(&c, "max-age=10", 10);           /* a second field line, same value */
    cr_assert_not(c.f & GW_CC_BAD_AGE);
    cr_assert_eq(c.max_age, 10);
    gw_cc d = cc_of("max-age=99999999999999999999");
    cr_assert_eq(d.max_age, GW_DELTA_MAX);
    gw_cc e = cc_of(",,, =, ;;, max-age");
    cr_assert(e.f & GW_CC_BAD_AGE);
}

Test(gw_cache_date, three_formats_and_garbage)
{
    int64_t t = 784111777;   /* Sun, 06 Nov 1994 08:49:37 GMT */
    const char *a = "Sun, 06 Nov 1994 08:49:37 GMT";
    const char *b = "Sunday, 06-Nov-94 08:49:37 GMT";
    const char *c = "Sun Nov  6 08:49:37 1994";
    cr_assert_eq(gw_http_date(a, strlen(a)), t);
    cr_assert_eq(gw_http_date(b, strlen(b)), t);
    cr_assert_eq(gw_http_date(c, strlen(c)), t);
    cr_assert_eq(gw_http_date("0", 1), -1);
    cr_assert_eq(gw_http_date("Sun, 06 Nov 1994 08:49:37 UTC", 29), -1);
    cr_assert_eq(gw_http_date("Sun, 36 Nov 1994 08:49:37 GMT", 29), -1);
    char out[32];
    size_t n = gw_http_date_fmt(t, out);
    cr_assert_eq(n, 29);
    cr_assert(memcmp(out, a, 29) == 0);
}

Test(gw_cache_fresh, lifetime_order_and_age)
{
    gw_cc cc = cc_of("max-age=60, s-maxage=30");
    cr_assert_eq(gw_cache_lifetime(&cc, 1000, 5000, 1000, -1), 30);
    cc = cc_of("max-age=60");
    cr_assert_eq(gw_cache_lifetime(&cc, 1000, 5000, 1000, -1), 60);
    cc = cc_of("public");
    cr_assert_eq(gw_cache_lifetime(&cc, 1000, 1100, 1000, -1), 100);
    cr_assert_eq(gw_cache_lifetime(&cc, GW_CC_ABSENT, 1100, 1050, -1), 50);
    cr_assert_eq(gw_cache_lifetime(&cc, 1000, 0, 1000, -1), 0);        /* invalid Expires: the caller passes 0 */
    cr_assert_eq(gw_cache_lifetime(&cc, 1000, GW_CC_ABSENT, 1000, -1), GW_CC_ABSENT);
    cr_assert_eq(gw_cache_lifetime(&cc, 1000, GW_CC_ABSENT, 1000, 3600), 3600);   /* route TTL */
    /* age: the larger of apparent age and Age + response delay */
    cr_assert_eq(gw_cache_initial_age(GW_CC_ABSENT, 990, 999, 1000), 10);
    cr_assert_eq(gw_cache_initial_age(30, 1000, 998, 1000), 32);
    cr_assert_eq(gw_cache_initial_age(GW_CC_ABSENT, 2000, 1000, 1000), 0);   /* Date in the future */
}

static const char *unstorable(int status, const char *resp, const char *req, bool auth, bool cookie)
{
    gw_cc rc = cc_of(resp), qc = cc_of(req);
    gw_store_check in = { .status = status, .method = HTTP_GET, .resp_cc = &rc, .req_cc = &qc,
                          .req_auth = auth, .set_cookie = cookie,
                          .lifetime = gw_cache_lifetime(&rc, -1, GW_CC_ABSENT, 0, -1) };
    return gw_cache_unstorable(&in);
}

Test(gw_cache_store_rules, each_reason)
{
    cr_assert_null(unstorable(200, "max-age=60", "", false, false));
    cr_assert_str_eq(unstorable(200, "no-store, max-age=60", "", false, false), "no-store");
    cr_assert_str_eq(unstorable(200, "max-age=60", "no-store", false, false), "request no-store");
    cr_assert_str_eq(unstorable(200, "private, max-age=60", "", false, false), "private");
    cr_assert_str_eq(unstorable(200, "max-age=60", "", true, false), "authorization");
    cr_assert_null(unstorable(200, "public, max-age=60", "", true, false));
    cr_assert_null(unstorable(200, "s-maxage=60", "", true, false));
    cr_assert_null(unstorable(200, "must-revalidate, max-age=60", "", true, false));
    cr_assert_str_eq(unstorable(200, "max-age=60", "", false, true), "set-cookie");
    cr_assert_str_eq(unstorable(200, "public", "", false, false), "no freshness");
    cr_assert_null(unstorable(200, "no-cache", "", false, false));
    cr_assert_str_eq(unstorable(206, "max-age=60", "", false, false), "status");
    cr_assert_str_eq(unstorable(299, "max-age=60, must-understand, no-store", "", false, false),
                     "must-understand");
    /* must-understand with a known status overrides no-store */
    cr_assert_null(unstorable(200, "max-age=60, must-understand, no-store", "", false, false));
    gw_cc rc = cc_of("max-age=60");
    gw_store_check post = { .status = 200, .method = HTTP_POST, .resp_cc = &rc, .lifetime = 60 };
    cr_assert_str_eq(gw_cache_unstorable(&post), "method");
}

static gw_cache_use use(const char *resp, const char *req, int64_t life, int64_t age,
                        int64_t rswr)
{
    gw_cc rc = cc_of(resp), qc = cc_of(req);
    gw_use_in in = { .lifetime = life, .age = age, .resp_cc = &rc, .req_cc = &qc,
                     .route_swr = rswr, .route_sie = 0 };
    return gw_cache_decide(&in);
}

Test(gw_cache_use, fresh_stale_swr_and_requests)
{
    cr_assert_eq(use("max-age=60", "", 60, 10, 0), GW_USE_FRESH);
    cr_assert_eq(use("max-age=60", "", 60, 60, 0), GW_USE_REVALIDATE);
    cr_assert_eq(use("max-age=60, stale-while-revalidate=30", "", 60, 70, 0), GW_USE_SWR);
    cr_assert_eq(use("max-age=60, stale-while-revalidate=30", "", 60, 95, 0), GW_USE_REVALIDATE);
    cr_assert_eq(use("max-age=60", "", 60, 70, 30), GW_USE_SWR);                  /* route option */
    cr_assert_eq(use("max-age=60, must-revalidate, stale-while-revalidate=30", "", 60, 70, 0),
                 GW_USE_REVALIDATE);
    cr_assert_eq(use("s-maxage=60, stale-while-revalidate=30", "", 60, 70, 0), GW_USE_REVALIDATE);
    cr_assert_eq(use("no-cache, max-age=60", "", 60, 1, 0), GW_USE_REVALIDATE);
    cr_assert_eq(use("max-age=60", "no-cache", 60, 1, 0), GW_USE_REVALIDATE);
    cr_assert_eq(use("max-age=60, immutable", "no-cache", 60, 1, 0), GW_USE_FRESH);
    cr_assert_eq(use("max-age=60", "max-age=5", 60, 10, 0), GW_USE_REVALIDATE);
    cr_assert_eq(use("max-age=60", "min-fresh=55", 60, 10, 0), GW_USE_REVALIDATE);
    cr_assert_eq(use("max-age=60", "max-stale=20", 60, 70, 0), GW_USE_STALE_OK);
    cr_assert_eq(use("max-age=60", "max-stale", 60, 7000, 0), GW_USE_STALE_OK);
    cr_assert_eq(use("max-age=60, proxy-revalidate", "max-stale", 60, 70, 0), GW_USE_REVALIDATE);
    cr_assert_str_eq(gw_cache_use_str(GW_USE_SWR), "stale-while-revalidate");
}

Test(gw_cache_use, stale_if_error_window)
{
    gw_cc rc = cc_of("max-age=10, stale-if-error=60"), qc = cc_of("");
    gw_use_in in = { .lifetime = 10, .age = 50, .resp_cc = &rc, .req_cc = &qc };
    cr_assert(gw_cache_sie_ok(&in));
    in.age = 80;
    cr_assert_not(gw_cache_sie_ok(&in));
    rc = cc_of("max-age=10");
    in.age = 50;
    cr_assert_not(gw_cache_sie_ok(&in));
    in.route_sie = 100;
    cr_assert(gw_cache_sie_ok(&in));
    rc = cc_of("max-age=10, must-revalidate, stale-if-error=600");
    cr_assert_not(gw_cache_sie_ok(&in));
}

Test(gw_cache_cond, etags_and_dates)
{
    const char *et = "\"v1\"";
    cr_assert(gw_cache_not_modified("\"v1\"", 4, true, et, 4, -1, -1));
    cr_assert(gw_cache_not_modified("\"x\", W/\"v1\"", 11, true, et, 4, -1, -1));
    cr_assert(gw_cache_not_modified("*", 1, true, et, 4, -1, -1));
    cr_assert_not(gw_cache_not_modified("\"v2\"", 4, true, et, 4, -1, -1));
    cr_assert_not(gw_cache_not_modified("\"v1\"", 4, true, "", 0, 100, 50));   /* INM wins over IMS */
    cr_assert(gw_cache_not_modified(NULL, 0, false, et, 4, 100, 50));
    cr_assert(gw_cache_not_modified(NULL, 0, false, et, 4, 100, 100));
    cr_assert_not(gw_cache_not_modified(NULL, 0, false, et, 4, 100, 101));
    cr_assert_not(gw_cache_not_modified(NULL, 0, false, et, 4, 100, -1));
}
