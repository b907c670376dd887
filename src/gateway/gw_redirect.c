/* gw_redirect.c -- the redirect listener (redirect_listen): every request
 * on it is answered with redirect_status (301 or 308) to the same target
 * on the TLS listener, the way the seeds' ALBs send http:// to https://.
 *
 * The connection runs the ordinary client path (parsing, timeouts,
 * keep-alive, pipelining); only the answer differs: no route, no backend.
 * The Location host is the request's Host without its port, kept only when
 * it is a plain host name or address (anything else falls back to the TLS
 * listener's address, so a crafted Host cannot write an odd URL); the
 * port is tls_listen's, left out when it is 443. */
#include "gateway/gw_proxy.h"

#include <stdio.h>
#include <string.h>

/* Host header -> host part (no port), when it is safe to echo. */
static size_t host_part(const char *h, size_t len, char *out, size_t outlen)
{
    size_t n = len;
    if (len && h[0] == '[') {                 /* [v6]:port */
        const char *e = memchr(h, ']', len);
        if (!e)
            return 0;
        n = (size_t)(e - h) + 1;
        for (size_t i = 1; i + 1 < n; i++)
            if (!(h[i] == ':' || h[i] == '.' || (h[i] >= '0' && h[i] <= '9')
                  || (h[i] >= 'a' && h[i] <= 'f') || (h[i] >= 'A' && h[i] <= 'F')))
                return 0;
    } else {
        const char *colon = memchr(h, ':', len);
        if (colon)
            n = (size_t)(colon - h);
        for (size_t i = 0; i < n; i++)
            if (!((h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z')
                  || (h[i] >= '0' && h[i] <= '9') || h[i] == '-' || h[i] == '.'))
                return 0;
    }
    if (n == 0 || n >= outlen)
        return 0;
    memcpy(out, h, n);
    out[n] = '\0';
    return n;
}

void gw_redirect_reply(gw_exchange *ex)
{
    gw_conn *c = ex->c;
    gw_rt *rt = c->w->rt;
    const char *head = buf_head(&c->in);
    const http_request *r = &ex->req;
    char host[300];
    if (!host_part(head + r->host.off, r->host.len, host, sizeof host)) {
        char a[80];
        sock_addr_format(&rt->tls_listen, a, sizeof a);
        char *colon = strrchr(a, ':');
        if (colon)
            *colon = '\0';
        snprintf(host, sizeof host, "%s", a);
    }
    int port = sock_addr_port(&rt->tls_listen);
    char portbuf[16] = "";
    if (port != 443)
        snprintf(portbuf, sizeof portbuf, ":%d", port);
    /* The target as sent when it is a path; an absolute-form target
     * (proxy style) keeps only its path. */
    const char *t = head + r->target.off;
    size_t tl = r->target.len;
    if (tl == 0 || t[0] != '/') {
        t = head + r->path.off;
        tl = r->path.len;
        if (tl == 0 || t[0] != '/') {
            t = "/";
            tl = 1;
        }
    }
    int status = rt->cfg.redirect_status == 308 ? 308 : 301;
    char hdr[2400];
    int n = snprintf(hdr, sizeof hdr, "Location: https://%s%s%.*s\r\n", host, portbuf,
                     (int)(tl > 2000 ? 2000 : tl), t);
    if (n < 0 || (size_t)n >= sizeof hdr)
        snprintf(hdr, sizeof hdr, "Location: https://%s%s/\r\n", host, portbuf);
    /* An unread body leaves no trusted boundary: close after. */
    ex->req_body_done = r->h.body == HTTP_BODY_NONE
                        || (r->h.body == HTTP_BODY_LENGTH && r->h.content_length == 0);
    if (!ex->req_body_done)
        c->close_after = true;
    gw_conn_reply(c, status, hdr, status == 308
                  ? "{\"error\":\"this service is served over https\",\"status\":308}"
                  : "{\"error\":\"this service is served over https\",\"status\":301}");
    gw_conn_request_done(c, 3);
}
