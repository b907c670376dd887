/* test_router.c -- the route table: params, rest, precedence of literals
 * over params whatever the order, 404 vs 405 with Allow, malformed
 * patterns, percent-decoding of params and query strings. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "http/server_int.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static void h_any(http_ctx *c, void *arg) { (void)c; (void)arg; }

static http_router *r;
static http_ctx *ctx;
static http_request req;
static char allow[128];
static int tags[16];

static void setup(void)
{
    r = http_router_new();
    ctx = calloc(1, sizeof *ctx);
    memset(&req, 0, sizeof req);
    for (int i = 0; i < 16; i++)
        tags[i] = i;
}
static void teardown(void)
{
    http_ctx_release(ctx);
    free(ctx);
    http_router_free(r);
}

/* Matches path and returns the tag of the matched route (or -status). */
static int match(const char *method, const char *path)
{
    http_ctx_reset(ctx);
    ctx->req = &req;
    allow[0] = '\0';
    int rc = http_router_match(r, ctx, path, strlen(path), http_method_from(method, strlen(method)),
                               method, allow, sizeof allow);
    if (rc)
        return -rc;
    void *arg;
    http_route_fn(ctx->route, &arg);
    return *(int *)arg;
}

TestSuite(router, .init = setup, .fini = teardown);

Test(router, params_and_precedence)
{
    cr_assert_eq(http_route(r, "GET", "/cases/{id}", h_any, &tags[1]), 0);
    cr_assert_eq(http_route(r, "GET", "/cases/new", h_any, &tags[2]), 0);
    cr_assert_eq(http_route(r, "GET", "/api/v1/pools/{pool}/backends/{id}", h_any, &tags[3]), 0);
    cr_assert_eq(http_route(r, "GET", "/api/v1/pools/{pool}/backends/all", h_any, &tags[4]), 0);
    cr_assert_eq(http_route(r, "GET", "/", h_any, &tags[5]), 0);
    cr_assert_eq(http_route(r, "GET", "/cases", h_any, &tags[6]), 0);

    cr_assert_eq(match("GET", "/cases/7"), 1);
    cr_assert_str_eq(http_ctx_param(ctx, "id"), "7");
    cr_assert_null(http_ctx_param(ctx, "i"));
    cr_assert_str_eq(http_ctx_route(ctx), "/cases/{id}");
    cr_assert_eq(match("GET", "/cases/new"), 2);
    cr_assert_eq(match("GET", "/api/v1/pools/web/backends/b%201"), 3);
    cr_assert_str_eq(http_ctx_param(ctx, "pool"), "web");
    cr_assert_str_eq(http_ctx_param(ctx, "id"), "b 1");
    cr_assert_eq(match("GET", "/api/v1/pools/web/backends/all"), 4);
    cr_assert_eq(match("GET", "/"), 5);
    cr_assert_eq(match("GET", "/cases"), 6);
    cr_assert_eq(match("HEAD", "/cases"), 6, "HEAD is served by GET routes");
    cr_assert_eq(match("GET", "/cases/"), -404, "a param never matches an empty segment");
    cr_assert_eq(match("GET", "/cases/7/x"), -404);
    cr_assert_eq(match("GET", "/nope"), -404);
}

Test(router, method_405_with_allow)
{
    http_route(r, "GET", "/cases/{id}", h_any, &tags[1]);
    http_route(r, "PUT", "/cases/{id}", h_any, &tags[2]);
    http_route(r, "DELETE", "/cases/{id}", h_any, &tags[3]);
    http_route(r, "POST", "/cases", h_any, &tags[4]);
    cr_assert_eq(match("PUT", "/cases/3"), 2);
    cr_assert_eq(match("DELETE", "/cases/3"), 3);
    cr_assert_eq(match("POST", "/cases/3"), -405);
    cr_assert_str_eq(allow, "GET, HEAD, PUT, DELETE");
    cr_assert_eq(match("GET", "/cases"), -405);
    cr_assert_str_eq(allow, "POST");
}

Test(router, literal_beats_param_in_any_order_and_rest)
{
    http_route(r, NULL, "/static/*", h_any, &tags[1]);
    http_route(r, "GET", "/static/{file}", h_any, &tags[2]);
    http_route(r, "GET", "/static/index.html", h_any, &tags[3]);
    http_route(r, "GET", "/{a}/{b}", h_any, &tags[4]);
    cr_assert_eq(match("GET", "/static/index.html"), 3);
    cr_assert_eq(match("GET", "/static/app.js"), 2);
    cr_assert_str_eq(http_ctx_param(ctx, "file"), "app.js");
    cr_assert_eq(match("GET", "/static/js/app.js"), 1);
    cr_assert_str_eq(http_ctx_param(ctx, "*"), "js/app.js");
    cr_assert_eq(match("POST", "/static/x"), 1, "NULL method takes any");
    cr_assert_eq(match("GET", "/static"), 1);
    cr_assert_str_eq(http_ctx_param(ctx, "*"), "");
    cr_assert_eq(match("GET", "/x/y"), 4);
    cr_assert_str_eq(http_ctx_param(ctx, "a"), "x");
    cr_assert_str_eq(http_ctx_param(ctx, "b"), "y");
}

Test(router, explicit_method_beats_any)
{
    http_route(r, NULL, "/m", h_any, &tags[1]);
    http_route(r, "POST", "/m", h_any, &tags[2]);
    cr_assert_eq(match("POST", "/m"), 2);
    cr_assert_eq(match("GET", "/m"), 1);
}

Test(router, malformed_patterns)
{
    cr_assert_eq(http_route(r, "GET", "cases", h_any, NULL), -1);
    cr_assert_eq(http_route(r, "GET", "/a/{}", h_any, NULL), -1);
    cr_assert_eq(http_route(r, "GET", "/a/{x", h_any, NULL), -1);
    cr_assert_eq(http_route(r, "GET", "/a/x}", h_any, NULL), -1);
    cr_assert_eq(http_route(r, "GET", "/*/a", h_any, NULL), -1);
    cr_assert_eq(http_route(r, "GET", "/a/{x}{y}", h_any, NULL), -1);
    cr_assert_eq(http_router_count(r), 0);
}

Test(router, percent_decoding)
{
    char out[64];
    cr_assert_eq(http_pct_decode(out, "a%20b+c%2Fd%zz%4", 16, false), 12);
    cr_assert_str_eq(out, "a b+c/d%zz%4");
    http_pct_decode(out, "a+b%2bc", 7, true);
    cr_assert_str_eq(out, "a b+c");
    http_pct_decode(out, "%C3%A9", 6, true);
    cr_assert_str_eq(out, "\xc3\xa9");
}

static void collect(void *arg, const char *k, const char *v)
{
    buf *b = arg;
    buf_printf(b, "[%s=%s]", k, v);
}

Test(router, query_parsing)
{
    const char *target = "/cases?user_id=3&q=hello+world%21&&flag&empty=&a%3Db=c%26d";
    ctx->base = target;
    req.query.off = 7;
    req.query.len = (uint32_t)strlen(target) - 7;
    http_route(r, "GET", "/cases", h_any, &tags[1]);
    cr_assert_eq(match("GET", "/cases"), 1);
    ctx->base = target;
    cr_assert_str_eq(http_ctx_query(ctx, "user_id"), "3");
    cr_assert_str_eq(http_ctx_query(ctx, "q"), "hello world!");
    cr_assert_str_eq(http_ctx_query(ctx, "flag"), "");
    cr_assert_str_eq(http_ctx_query(ctx, "empty"), "");
    cr_assert_str_eq(http_ctx_query(ctx, "a=b"), "c&d");
    cr_assert_null(http_ctx_query(ctx, "missing"));
    buf b;
    buf_init(&b);
    http_ctx_query_each(ctx, collect, &b);
    buf_append(&b, "", 1);
    cr_assert_str_eq(buf_head(&b), "[user_id=3][q=hello world!][flag=][empty=][a=b=c&d]");
    buf_free(&b);
}

Test(router, arena_spills_and_resets)
{
    void *a = http_ctx_alloc(ctx, 100);
    void *b = http_ctx_alloc(ctx, HTTP_CTX_ARENA);   /* spills to malloc */
    cr_assert(a && b);
    memset(b, 1, HTTP_CTX_ARENA);
    cr_assert_not_null(ctx->spill);
    http_ctx_reset(ctx);
    cr_assert_null(ctx->spill);
    cr_assert_eq(http_ctx_alloc(ctx, 8), a, "arena restarts at its base");
}
