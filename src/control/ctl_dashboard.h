/* ctl_dashboard.h -- the live dashboard of the control listener: one
 * self-contained page (inline CSS and JS, charts drawn as inline SVG, no
 * CDN) that polls the scaling API every two seconds. The page is
 * src/control/dashboard.html, embedded by scripts/gen_dashboard.sh as
 * ctl_dashboard_html.c so the binary serves it with no file on disk. */
#ifndef HSCALE_CONTROL_CTL_DASHBOARD_H
#define HSCALE_CONTROL_CTL_DASHBOARD_H

#include <stddef.h>

#include "http/server.h"

/* The page, NUL-terminated; len excludes the NUL. */
extern const char   ctl_dashboard_html[];
extern const size_t ctl_dashboard_html_len;

/* Registers GET / and GET /dashboard. The page itself needs no token (it
 * holds no data); its API calls send the one the user gives it. */
int ctl_dashboard_routes(http_router *r);

#endif
