/* gw_rewrite.c -- the heads the gateway writes: the request it sends
 * upstream and the response it sends back.
 *
 * Bodies are forwarded verbatim (their framing was validated by the
 * parser), so Content-Length and Transfer-Encoding pass through untouched;
 * what changes is the hop-by-hop layer: Connection, Keep-Alive,
 * Proxy-Connection, TE, Trailer, Upgrade and every header the Connection
 * header names are dropped (RFC 9110 section 7.6.1), the forwarding
 * headers are set, and the response's connection handling is the
 * gateway's own. Each kept header is copied as one span from its name to
 * the end of its value, so the common case is one memcpy per header. */
#include "gateway/gw_proxy.h"

#include <string.h>
#include <strings.h>

#define MAX_CONN_TOKENS 8

typedef struct conn_tokens { http_slice t[MAX_CONN_TOKENS]; int n; } conn_tokens;

static bool name_is(const char *head, http_slice s, const char *lit, size_t litlen)
{
    return s.len == litlen && strncasecmp(head + s.off, lit, litlen) == 0;
}
#define NAME_IS(head, s, lit) name_is(head, s, lit, sizeof(lit) - 1)

/* Always hop-by-hop, whatever Connection says. */
static bool hop_by_hop(const char *head, http_slice n)
{
    switch (n.len) {
    case 2:  return NAME_IS(head, n, "te");
    case 7:  return NAME_IS(head, n, "upgrade") || NAME_IS(head, n, "trailer");
    case 10: return NAME_IS(head, n, "connection") || NAME_IS(head, n, "keep-alive");
    case 16: return NAME_IS(head, n, "proxy-connection");
    default: return false;
    }
}

/* The field names listed in Connection headers ("close" and "keep-alive"
 * are options, but dropping a header of that name is harmless). */
static void collect_conn_tokens(const char *head, const http_head_common *h, conn_tokens *ct)
{
    ct->n = 0;
    for (unsigned i = 0; i < h->nheaders; i++) {
        if (!NAME_IS(head, h->headers[i].name, "connection"))
            continue;
        http_slice v = h->headers[i].value;
        uint32_t p = v.off, end = v.off + v.len;
        while (p < end && ct->n < MAX_CONN_TOKENS) {
            while (p < end && (head[p] == ' ' || head[p] == '\t' || head[p] == ','))
                p++;
            uint32_t s = p;
            while (p < end && head[p] != ',' && head[p] != ' ' && head[p] != '\t')
                p++;
            if (p > s)
                ct->t[ct->n++] = (http_slice){ s, p - s };
        }
    }
}

static bool named_by_connection(const char *head, http_slice n, const conn_tokens *ct)
{
    for (int i = 0; i < ct->n; i++)
        if (n.len == ct->t[i].len && strncasecmp(head + n.off, head + ct->t[i].off, n.len) == 0)
            return true;
    return false;
}

static void append_header_span(buf *out, const char *head, const http_header *h)
{
    buf_append(out, head + h->name.off, h->value.off + h->value.len - h->name.off);
    buf_append(out, "\r\n", 2);
}

static void append_slice(buf *out, const char *head, http_slice s)
{
    buf_append(out, head + s.off, s.len);
}

int gw_rewrite_request(gw_exchange *ex, const char *head, buf *out)
{
    const http_request *r = &ex->req;
    gw_conn *c = ex->c;
    if (buf_reserve(out, ex->head_len + 256) < 0)
        return -1;
    append_slice(out, head, r->method_text);
    buf_append(out, " ", 1);
    append_slice(out, head, r->target);
    buf_append(out, " HTTP/1.1\r\n", 11);
    conn_tokens ct;
    collect_conn_tokens(head, &r->h, &ct);
    bool has_rid = false;
    int nxff = 0;
    const http_header *xff[4];
    for (unsigned i = 0; i < r->h.nheaders; i++) {
        const http_header *h = &r->h.headers[i];
        http_slice n = h->name;
        if (hop_by_hop(head, n) || (ct.n && named_by_connection(head, n, &ct)))
            continue;
        if (n.len == 15 && NAME_IS(head, n, "x-forwarded-for")) {
            if (nxff < 4)
                xff[nxff++] = h;
            continue;
        }
        if ((n.len == 17 && NAME_IS(head, n, "x-forwarded-proto"))
            || (n.len == 16 && NAME_IS(head, n, "x-forwarded-host")))
            continue;
        if (n.len == 12 && NAME_IS(head, n, "x-request-id"))
            has_rid = true;
        if (ex->cx && gw_cache_skip_request_header(ex, head, h))
            continue;
        append_header_span(out, head, h);
    }
    if (ex->upgrade) {
        /* The one hop-by-hop pair passed on: the switch the client asked for. */
        const http_header *up = http_find_header(head, &r->h, "upgrade");
        if (up) {
            buf_append_str(out, "Connection: Upgrade\r\nUpgrade: ");
            append_slice(out, head, up->value);
            buf_append(out, "\r\n", 2);
        }
    }
    buf_append(out, "X-Forwarded-For: ", 17);
    for (int i = 0; i < nxff; i++) {
        append_slice(out, head, xff[i]->value);
        buf_append(out, ", ", 2);
    }
    buf_append(out, c->ip, c->ip_len);
    if (c->lst == GW_LST_TLS)      /* (a cache refresh ghost keeps its client's) */
        buf_append(out, "\r\nX-Forwarded-Proto: https\r\n", 28);
    else
        buf_append(out, "\r\nX-Forwarded-Proto: http\r\n", 27);
    if (r->host.len) {
        buf_append(out, "X-Forwarded-Host: ", 18);
        append_slice(out, head, r->host);
        buf_append(out, "\r\n", 2);
    }
    if (!has_rid) {
        /* Unique per process: worker id and a per-worker counter, mixed
         * with the worker's random seed so restarts do not repeat ids. */
        static const char hex[] = "0123456789abcdef";
        gw_worker *w = c->w;
        uint64_t v = (w->rng ^ ((uint64_t)w->id << 56)) + ++w->reqid * 0x9E3779B97F4A7C15ull;
        char id[16];
        for (int i = 15; i >= 0; i--, v >>= 4)
            id[i] = hex[v & 15];
        buf_append(out, "X-Request-Id: ", 14);
        buf_append(out, id, 16);
        buf_append(out, "\r\n", 2);
    }
    if (ex->cx)
        gw_cache_request_headers(ex, out);
    return buf_append(out, "\r\n", 2);
}

/* security_headers: its HSTS line, then the rest (a route's own
 * hsts_max_age replaces the line on TLS connections). */
static const char security_sts[] =
    "Strict-Transport-Security: max-age=31536000; includeSubDomains\r\n";
static const char security_block[] =
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: strict-origin-when-cross-origin\r\n";

int gw_rewrite_response(gw_exchange *ex, const char *head, buf *out,
                        const char *sticky_cookie, uint64_t sticky_max_age_us)
{
    const http_response *r = &ex->resp;
    gw_conn *c = ex->c;
    if (buf_reserve(out, r->h.nheaders * 48u + 512) < 0)
        return -1;
    char num[24];
    buf_append(out, "HTTP/1.1 ", 9);
    buf_append(out, num, fmt_u64(num, r->status));
    buf_append(out, " ", 1);
    if (r->reason.len)
        append_slice(out, head, r->reason);
    else
        buf_append_str(out, http_status_reason(r->status));
    buf_append(out, "\r\n", 2);
    conn_tokens ct;
    collect_conn_tokens(head, &r->h, &ct);
    for (unsigned i = 0; i < r->h.nheaders; i++) {
        const http_header *h = &r->h.headers[i];
        if (hop_by_hop(head, h->name) || (ct.n && named_by_connection(head, h->name, &ct)))
            continue;
        if (ex->xf) {
            /* Compressed: new framing, and the ETag of other bytes is weak. */
            if (NAME_IS(head, h->name, "content-length") || NAME_IS(head, h->name, "transfer-encoding"))
                continue;
            if (NAME_IS(head, h->name, "etag") && h->value.len && head[h->value.off] == '"') {
                buf_append(out, "ETag: W/", 8);
                append_slice(out, head, h->value);
                buf_append(out, "\r\n", 2);
                continue;
            }
        }
        append_header_span(out, head, h);
    }
    if (ex->xf) {
        buf_append_str(out, "Content-Encoding: ");
        buf_append_str(out, gw_xform_coding_str(ex));
        buf_append(out, "\r\n", 2);
        if (!gw_xform_whole(ex))
            buf_append_str(out, "Transfer-Encoding: chunked\r\n");
    }
    if (ex->vary)
        buf_append_str(out, "Vary: Accept-Encoding\r\n");
    if (ex->set_sticky && sticky_cookie && ex->m) {
        char val[17];
        gw_sticky_value(ex->m, val);
        buf_append_str(out, "Set-Cookie: ");
        buf_append_str(out, sticky_cookie);
        buf_append(out, "=", 1);
        buf_append(out, val, 16);
        buf_append_str(out, "; Max-Age=");
        buf_append(out, num, fmt_u64(num, sticky_max_age_us / 1000000u));
        buf_append_str(out, "; Path=/; HttpOnly\r\n");
    }
    if (ex->hsts_max_age && c->lst == GW_LST_TLS) {
        /* HSTS only means something over TLS (RFC 6797 7.2: ignored on http). */
        buf_append_str(out, "Strict-Transport-Security: max-age=");
        buf_append(out, num, fmt_u64(num, ex->hsts_max_age));
        if (ex->hsts_sub)
            buf_append_str(out, "; includeSubDomains");
        buf_append(out, "\r\n", 2);
    } else if (ex->security_headers) {
        buf_append(out, security_sts, sizeof security_sts - 1);
    }
    if (ex->security_headers)
        buf_append(out, security_block, sizeof security_block - 1);
    if (ex->cx)
        gw_cache_response_headers(ex, out);
    const http_header *up;
    if (r->status == 101 && ex->upgrade && (up = http_find_header(head, &r->h, "upgrade"))) {
        buf_append_str(out, "Connection: Upgrade\r\nUpgrade: ");
        append_slice(out, head, up->value);
        buf_append(out, "\r\n", 2);
    } else if (c->close_after)
        buf_append(out, "Connection: close\r\n", 19);
    else if (ex->req.h.version_minor == 0)
        buf_append(out, "Connection: keep-alive\r\n", 24);
    if (gw_xform_whole(ex))
        return 0;                /* gw_xform_end adds Content-Length and the blank line */
    return buf_append(out, "\r\n", 2);
}
