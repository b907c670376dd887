/* test_dashboard.c -- the embedded dashboard page and its routes, over a
 * real loopback server: both paths serve the exact embedded bytes with the
 * headers that keep it self-contained, other methods and paths are not
 * taken over, and the page itself refers to nothing remote and polls the
 * API paths the control plane serves. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "control/ctl_dashboard.h"
#include "http/client.h"
#include "http/server.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static http_router *router;
static http_server *srv;
static char base[64];

static void start(void)
{
    router = http_router_new();
    cr_assert_not_null(router);
    cr_assert_eq(ctl_dashboard_routes(router), 0);
    http_server_opts o;
    memset(&o, 0, sizeof o);
    o.name = "dash";
    char err[256];
    cr_assert_eq(sock_addr_parse("127.0.0.1:0", &o.listen, err, sizeof err), 0, "%s", err);
    o.workers = 1;
    o.router = router;
    srv = http_server_new(&o, err, sizeof err);
    cr_assert_not_null(srv, "%s", err);
    cr_assert_eq(http_server_start(srv, err, sizeof err), 0, "%s", err);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", http_server_port(srv));
}

static void stop(void)
{
    http_fetch_pool_clear();
    if (srv)
        http_server_free(srv);
    srv = NULL;
    http_router_free(router);
    router = NULL;
}

static int fetch(const char *method, const char *path, http_result *r)
{
    char url[160], err[256];
    snprintf(url, sizeof url, "%s%s", base, path);
    http_result_init(r);
    cr_assert_eq(http_fetch(method, url, NULL, NULL, 0, 5000, r, err, sizeof err), 0, "%s", err);
    return r->status;
}

TestSuite(dashboard, .init = start, .fini = stop, .timeout = 30);

Test(dashboard, serves_the_embedded_page_at_both_paths)
{
    static const char *const paths[] = { "/", "/dashboard" };
    for (size_t i = 0; i < 2; i++) {
        http_result r;
        cr_assert_eq(fetch("GET", paths[i], &r), 200, "%s", paths[i]);
        cr_assert_eq(r.body.len, ctl_dashboard_html_len);
        cr_assert(memcmp(buf_head(&r.body), ctl_dashboard_html, r.body.len) == 0);
        char v[512];
        cr_assert(http_result_header(&r, "Content-Type", v, sizeof v));
        cr_assert_str_eq(v, "text/html; charset=utf-8");
        cr_assert(http_result_header(&r, "Content-Security-Policy", v, sizeof v));
        cr_assert_not_null(strstr(v, "default-src 'none'"), "%s", v);
        cr_assert_not_null(strstr(v, "connect-src 'self'"), "%s", v);
        cr_assert(http_result_header(&r, "Cache-Control", v, sizeof v));
        cr_assert_str_eq(v, "no-store");
        http_result_free(&r);
    }
}

Test(dashboard, takes_over_nothing_else)
{
    http_result r;
    cr_assert_eq(fetch("GET", "/dashboard/x", &r), 404);
    http_result_free(&r);
    cr_assert_eq(fetch("POST", "/", &r), 405);
    http_result_free(&r);
    cr_assert_eq(fetch("HEAD", "/", &r), 200);
    cr_assert_eq(r.body.len, 0);
    http_result_free(&r);
}

Test(dashboard, page_is_self_contained_and_polls_the_api)
{
    const char *p = ctl_dashboard_html;
    cr_assert_eq(strlen(p), ctl_dashboard_html_len, "a NUL inside the page");
    cr_assert(strncmp(p, "<!DOCTYPE html>", 15) == 0);
    cr_assert_not_null(strstr(p, "</html>\n"), "the page was cut short");
    /* Nothing remote: the only absolute URL is the SVG namespace name. */
    for (const char *s = p; (s = strstr(s, "http")) != NULL; s++) {
        if (strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0)
            cr_assert(strncmp(s, "http://www.w3.org/2000/svg", 26) == 0, "remote URL: %.60s", s);
    }
    cr_assert_null(strstr(p, "<script src"));
    cr_assert_null(strstr(p, "<link"));
    cr_assert_null(strstr(p, "@import"));
    /* The endpoints it reads, and the 2 s poll. */
    cr_assert_not_null(strstr(p, "api(\"scaling/status\")"));
    cr_assert_not_null(strstr(p, "api(\"scaling/metrics\")"));
    cr_assert_not_null(strstr(p, "\"/api/v1/services\""));
    /* ("?" also proves the generator's escaping kept it: no trigraph ate it.) */
    cr_assert_not_null(strstr(p, "api(\"scaling/history?limit="));
    cr_assert_not_null(strstr(p, "POLL_MS = 2000"));
}
