/* ctl_dashboard.c -- serves the embedded dashboard page at / and
 * /dashboard. The page is static: everything live comes from its own
 * fetches of the scaling API, so serving it costs one write of a constant
 * buffer and never touches the manager. The Content-Security-Policy pins
 * every fetch to this listener and forbids remote scripts, which keeps the
 * "works offline, no CDN" promise enforced rather than merely kept. */
#include "control/ctl_dashboard.h"

static void h_page(http_ctx *c, void *arg)
{
    (void)arg;
    http_ctx_add_header(c, "Cache-Control", "no-store");
    http_ctx_add_header(c, "X-Content-Type-Options", "nosniff");
    http_ctx_add_header(c, "Content-Security-Policy",
                        "default-src 'none'; connect-src 'self'; img-src 'self' data:; "
                        "script-src 'unsafe-inline'; style-src 'unsafe-inline'");
    http_reply(c, 200, "text/html; charset=utf-8", ctl_dashboard_html, ctl_dashboard_html_len);
}

int ctl_dashboard_routes(http_router *r)
{
    if (http_route(r, "GET", "/", h_page, NULL) < 0
        || http_route(r, "GET", "/dashboard", h_page, NULL) < 0)
        return -1;
    return 0;
}
