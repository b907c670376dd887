/* parser.c -- strict, incremental, zero-copy HTTP/1.1 message heads.
 *
 * A parse is two passes. The first finds the end of the head one line at a
 * time with memchr, checking as it goes that every LF is preceded by CR; it
 * records in `scanned` the start of the first line not yet seen whole, so a
 * call with more bytes resumes there. The second pass runs only once the
 * head is complete and walks it with a class table: the head is known to end
 * in CRLF CRLF, and CR belongs to no class, so every table-driven loop stops
 * inside the buffer without a bounds check.
 *
 * Framing headers (Content-Length, Transfer-Encoding) are judged as they go
 * by and settled after the last one: a message whose body length two
 * parties could read differently is refused, never guessed. The rules with
 * their RFC sections are in docs/http.md. Nothing here allocates. */
#include "http/parser.h"

#include <string.h>

enum { C_TCHAR = 1, C_VALUE = 2, C_HOST = 4, C_TARGET = 8, C_DIGIT = 16 };

/* tchar (RFC 9110 5.6.2), field-value octet (VCHAR/SP/HT/obs-text), Host
 * character (reg-name/IP-literal/port), request-target octet (VCHAR but
 * '#'), DIGIT. */
static const uint8_t cls[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0,  2,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     2, 15, 10,  3, 15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15, 10,
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 14, 14, 10, 14, 10, 10,
    10, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 10, 14, 11, 15,
    11, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 10, 11, 10, 15,  0,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
};

#define IS(c, k) (cls[(uint8_t)(c)] & (k))

/* Eight bytes at a time over the long runs (values, targets): a word with
 * no byte that could end the run is skipped whole, the rest goes through
 * the table. The usual has-less/has-zero bit tricks, so no SIMD needed. */
#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
#define HAS_LESS(x, n) (((x) - ONES * (n)) & ~(x) & HIGHS)
#define HAS_ZERO(x)    (((x) - ONES) & ~(x) & HIGHS)

static inline uint64_t load8(const char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* Skips field-value octets: stops at CTL (but HT) or DEL, at or before end. */
static inline const char *skip_value(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x = load8(p);
        if (HAS_LESS(x, 0x20) | HAS_ZERO(x ^ (ONES * 0x7f)))
            break;
        p += 8;
    }
    while (IS(*p, C_VALUE))
        p++;
    return p;
}

/* Skips request-target octets: VCHAR but '#'. */
static inline const char *skip_target(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x = load8(p);
        if (HAS_LESS(x, 0x21) | (x & HIGHS) | HAS_ZERO(x ^ (ONES * 0x7f)) |
            HAS_ZERO(x ^ (ONES * '#')))
            break;
        p += 8;
    }
    while (IS(*p, C_TARGET))
        p++;
    return p;
}

void http_limits_default(http_limits *l)
{
    l->max_request_line = 8192;
    l->max_head = 32768;
    l->max_headers = HTTP_MAX_HEADERS;
    l->max_body = 1u << 20;
}

static int fail(http_head_common *h, uint16_t status, const char *why)
{
    h->error_status = status;
    h->error = why;
    return HTTP_ERROR;
}

/* Lower-case compare of n bytes against a lower-case literal. Only called
 * on tokens, where (c | 0x20) maps nothing but letters onto letters. */
static bool tok_ieq(const char *p, size_t n, const char *lit, size_t litlen)
{
    if (n != litlen)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((char)(p[i] | 0x20) != lit[i])
            return false;
    return true;
}
#define TOK_IS(p, n, lit) tok_ieq((p), (n), lit, sizeof(lit) - 1)

/* Pass one: finds the end of the head starting at `start`. Returns the
 * offset just past the empty line, 0 when more bytes are needed, or
 * HTTP_ERROR. `line_status` is what an over-long first line earns. */
static long find_end(const char *buf, size_t len, size_t start, uint32_t *scanned,
                     const http_limits *lim, uint16_t line_status, uint16_t head_status,
                     http_head_common *h)
{
    size_t pos = *scanned;
    if (pos < start || pos > len)
        pos = start;
    for (;;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl) {
            if (pos == start && len - start > (size_t)lim->max_request_line + 1)
                return fail(h, line_status, line_status == 414 ? "request line too long"
                                                               : "status line too long");
            if (len - start > lim->max_head)
                return fail(h, head_status, "header section too large");
            *scanned = (uint32_t)pos;
            return 0;
        }
        size_t e = (size_t)(nl - buf);
        if (e == pos || buf[e - 1] != '\r')
            return fail(h, 400, "bare LF in the header section (CRLF required)");
        if (pos == start && e - 1 - start > lim->max_request_line)
            return fail(h, line_status, line_status == 414 ? "request line too long"
                                                           : "status line too long");
        if (e + 1 - start > lim->max_head)
            return fail(h, head_status, "header section too large");
        if (e - 1 == pos) {
            if (pos == start)
                return fail(h, 400, "empty start line");
            *scanned = 0;
            return (long)(e + 1);
        }
        pos = e + 1;
    }
}

/* A Content-Length value: 1#DIGIT-run, every element the same number
 * (RFC 9110 8.6 lets a recipient accept "5, 5"). 0 ok, -1 malformed,
 * -2 elements differ. */
static int parse_cl(const char *v, size_t n, uint64_t *out)
{
    size_t i = 0;
    bool have = false;
    uint64_t first = 0;
    for (;;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t d = i;
        uint64_t x = 0;
        while (i < n && IS(v[i], C_DIGIT)) {
            unsigned dig = (unsigned)(v[i] - '0');
            if (x > (UINT64_C(0x7fffffffffffffff) - dig) / 10)
                return -1;
            x = x * 10 + dig;
            i++;
        }
        if (i == d)
            return -1;
        if (have && x != first)
            return -2;
        first = x;
        have = true;
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i == n)
            break;
        if (v[i] != ',')
            return -1;
        i++;
    }
    *out = first;
    return 0;
}

/* Framing facts gathered over the headers, settled after the last one. */
typedef struct frame {
    bool cl_seen, te_seen, te_bad, host_seen, ka, close;
    uint8_t te_chunked;     /* how many "chunked" codings */
    bool te_last_chunked;
    bool te_other;          /* a coding other than chunked */
    int cl_err;             /* parse_cl result that failed, else 0 */
} frame;

/* Walks a comma list of tokens, calling back per element (trimmed). Empty
 * elements are skipped, as RFC 9110 5.6.1 asks of recipients. Returns
 * false when an element is not a bare token. */
typedef void list_fn(const char *p, size_t n, void *arg);
static bool each_token(const char *v, size_t n, list_fn *fn, void *arg)
{
    size_t i = 0;
    bool ok = true;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && IS(v[i], C_TCHAR))
            i++;
        size_t e = i;
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i < n && v[i] != ',') {
            ok = false;
            while (i < n && v[i] != ',')
                i++;
        }
        if (e > s)
            fn(v + s, e - s, arg);
    }
    return ok;
}

static void te_elem(const char *p, size_t n, void *arg)
{
    frame *f = arg;
    bool ch = TOK_IS(p, n, "chunked");
    if (ch && f->te_chunked < 255)
        f->te_chunked++;
    else if (!ch)
        f->te_other = true;
    f->te_last_chunked = ch;
}

static void conn_elem(const char *p, size_t n, void *arg)
{
    frame *f = arg;
    if (TOK_IS(p, n, "close"))
        f->close = true;
    else if (TOK_IS(p, n, "keep-alive"))
        f->ka = true;
}

/* Pass two over the header lines in [p, hend), hend at the final CRLF. */
static int parse_fields(const char *buf, const char *p, const char *hend, http_head_common *h,
                        frame *f, const http_limits *lim, http_request *req)
{
    uint32_t maxh = lim->max_headers && lim->max_headers < HTTP_MAX_HEADERS
                        ? lim->max_headers : HTTP_MAX_HEADERS;
    while (p < hend) {
        if (*p == ' ' || *p == '\t')
            return fail(h, 400, "obs-fold: header line starts with whitespace");
        const char *n = p;
        while (IS(*p, C_TCHAR))
            p++;
        if (*p != ':') {
            if (*p == ' ' || *p == '\t')
                return fail(h, 400, "whitespace between header name and colon");
            return fail(h, 400, "invalid character in header name");
        }
        if (p == n)
            return fail(h, 400, "empty header name");
        size_t nlen = (size_t)(p - n);
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        const char *v = p;
        p = skip_value(p, hend);
        if (p[0] != '\r' || p[1] != '\n')
            return fail(h, 400, p[0] == '\r' ? "bare CR in header value"
                                             : "control character in header value");
        const char *ve = p;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        p += 2;
        if (h->nheaders >= maxh)
            return fail(h, 431, "too many header fields");
        size_t vlen = (size_t)(ve - v);
        http_header *hd = &h->headers[h->nheaders++];
        hd->name = (http_slice){ (uint32_t)(n - buf), (uint32_t)nlen };
        hd->value = (http_slice){ (uint32_t)(v - buf), (uint32_t)vlen };

        switch (nlen) {
        case 4:
            if (req && TOK_IS(n, 4, "host")) {
                if (f->host_seen)
                    return fail(h, 400, "repeated Host header");
                f->host_seen = true;
                for (size_t i = 0; i < vlen; i++)
                    if (!IS(v[i], C_HOST))
                        return fail(h, 400, "invalid character in Host");
                req->host = hd->value;
            }
            break;
        case 6:
            if (req && TOK_IS(n, 6, "expect") && TOK_IS(v, vlen, "100-continue"))
                req->expect_continue = true;
            break;
        case 7:
            if (TOK_IS(n, 7, "upgrade"))
                h->upgrade = true;
            break;
        case 10:
            if (TOK_IS(n, 10, "connection")) {
                each_token(v, vlen, conn_elem, f);
                h->conn_close = f->close;
            }
            break;
        case 14:
            if (TOK_IS(n, 14, "content-length")) {
                uint64_t x = 0;
                int r = parse_cl(v, vlen, &x);
                if (r == 0 && f->cl_seen && x != h->content_length)
                    r = -2;
                if (r != 0 && !f->cl_err)
                    f->cl_err = r;
                f->cl_seen = true;
                h->content_length = x;
            }
            break;
        case 17:
            if (TOK_IS(n, 17, "transfer-encoding")) {
                f->te_seen = true;
                if (vlen == 0 || !each_token(v, vlen, te_elem, f))
                    f->te_bad = true;
            }
            break;
        default:
            break;
        }
    }
    return 0;
}

/* "HTTP/1.x" in exactly 8 bytes. Returns the minor version (1 for 1.2+),
 * -1 malformed, -2 a major version other than 1. */
static int parse_version(const char *p)
{
    if (memcmp(p, "HTTP/", 5) != 0 || !IS(p[5], C_DIGIT) || p[6] != '.' || !IS(p[7], C_DIGIT))
        return -1;
    if (p[5] != '1')
        return -2;
    return p[7] == '0' ? 0 : 1;
}

static void head_reset(http_head_common *h)
{
    h->version_minor = 0;
    h->nheaders = 0;
    h->body = HTTP_BODY_NONE;
    h->content_length = 0;
    h->keep_alive = false;
    h->conn_close = false;
    h->upgrade = false;
    h->error_status = 0;
    h->error = NULL;
}

/* Splits an origin-form path at '?'. */
static void split_query(http_request *r, const char *buf, uint32_t off, uint32_t len)
{
    const char *q = memchr(buf + off, '?', len);
    if (q) {
        uint32_t plen = (uint32_t)(q - (buf + off));
        r->path = (http_slice){ off, plen };
        r->query = (http_slice){ off + plen + 1, len - plen - 1 };
    } else {
        r->path = (http_slice){ off, len };
    }
}

/* Classifies the request target (RFC 9112 3.2). Returns 0 or HTTP_ERROR.
 * *abs_host receives the authority of an absolute-form target. */
static int parse_target(http_request *r, const char *buf, http_slice *abs_host)
{
    const char *t = buf + r->target.off;
    uint32_t tl = r->target.len;
    if (r->method == HTTP_CONNECT) {
        /* authority-form: host ":" port, nothing else */
        bool colon = false;
        for (uint32_t i = 0; i < tl; i++) {
            if (!IS(t[i], C_HOST))
                return fail(&r->h, 400, "CONNECT target must be authority-form (host:port)");
            colon |= t[i] == ':';
        }
        if (!colon || t[0] == ':' || t[tl - 1] == ':')
            return fail(&r->h, 400, "CONNECT target must be authority-form (host:port)");
        *abs_host = r->target;
        return 0;
    }
    if (t[0] == '/') {
        split_query(r, buf, r->target.off, tl);
        return 0;
    }
    if (tl == 1 && t[0] == '*') {
        if (r->method != HTTP_OPTIONS)
            return fail(&r->h, 400, "asterisk-form target is for OPTIONS only");
        r->path = r->target;
        return 0;
    }
    /* absolute-form: scheme "://" authority [path-abempty] ["?" query] */
    uint32_t i = 0;
    if (!((t[0] | 0x20) >= 'a' && (t[0] | 0x20) <= 'z'))
        return fail(&r->h, 400, "request target is not origin-, absolute- or asterisk-form");
    while (i < tl && (IS(t[i], C_DIGIT) || ((t[i] | 0x20) >= 'a' && (t[i] | 0x20) <= 'z') ||
                      t[i] == '+' || t[i] == '-' || t[i] == '.'))
        i++;
    if (tl - i < 3 || memcmp(t + i, "://", 3) != 0)
        return fail(&r->h, 400, "request target is not origin-, absolute- or asterisk-form");
    i += 3;
    uint32_t a = i;
    while (i < tl && t[i] != '/' && t[i] != '?') {
        if (!IS(t[i], C_HOST))
            return fail(&r->h, 400, "invalid character in the target's authority");
        i++;
    }
    if (i == a)
        return fail(&r->h, 400, "absolute-form target without a host");
    *abs_host = (http_slice){ r->target.off + a, i - a };
    if (i < tl && t[i] == '/')
        split_query(r, buf, r->target.off + i, tl - i);
    else if (i < tl)
        r->query = (http_slice){ r->target.off + i + 1, tl - i - 1 };
    return 0;
}

/* Empty lines a client may send before a request line (after a body, say)
 * are skipped; a peer that keeps sending them is refused. */
#define MAX_LEADING_CRLF 4

int http_parse_request(const char *buf, size_t len, http_request *req, const http_limits *lim)
{
    http_limits dl;
    if (!lim) {
        http_limits_default(&dl);
        lim = &dl;
    }
    http_head_common *h = &req->h;
    head_reset(h);
    req->method = HTTP_OTHER;
    req->method_text = req->target = req->path = req->query = req->host = (http_slice){ 0, 0 };
    req->expect_continue = false;
    if (len > UINT32_MAX)
        len = UINT32_MAX;

    size_t start = 0;
    while (start + 1 < len && buf[start] == '\r' && buf[start + 1] == '\n') {
        start += 2;
        if (start > 2 * MAX_LEADING_CRLF)
            return fail(h, 400, "too many empty lines before the request line");
    }
    long end = find_end(buf, len, start, &req->scanned, lim, 414, 431, h);
    if (end <= 0)
        return (int)end;

    /* request-line = method SP request-target SP HTTP-version CRLF */
    const char *p = buf + start;
    const char *le = memchr(p, '\r', (size_t)end - start);   /* found: the head ends in CRLF */
    const char *m = p;
    while (IS(*p, C_TCHAR))
        p++;
    if (p == m || *p != ' ')
        return fail(h, 400, "request line: invalid method token");
    req->method_text = (http_slice){ (uint32_t)(m - buf), (uint32_t)(p - m) };
    req->method = http_method_from(m, (size_t)(p - m));
    const char *t = ++p;
    p = skip_target(p, le);
    if (p == t)
        return fail(h, 400, "request line: empty request target");
    if (p == le)
        return fail(h, 400, "request line: missing HTTP version");
    if (*p != ' ')
        return fail(h, 400, *p == '#' ? "request line: fragment in request target"
                                      : "request line: invalid character in request target");
    req->target = (http_slice){ (uint32_t)(t - buf), (uint32_t)(p - t) };
    p++;
    if (le - p != 8)
        return fail(h, 400, "request line: malformed HTTP version");
    int v = parse_version(p);
    if (v == -1)
        return fail(h, 400, "request line: malformed HTTP version");
    if (v == -2)
        return fail(h, 505, "HTTP version not supported (only HTTP/1.x)");
    h->version_minor = (uint8_t)v;

    http_slice abs_host = { 0, 0 };
    if (parse_target(req, buf, &abs_host) < 0)
        return HTTP_ERROR;

    frame f = { 0 };
    if (parse_fields(buf, le + 2, buf + end - 2, h, &f, lim, req) < 0)
        return HTTP_ERROR;

    if (f.te_seen && f.cl_seen)
        return fail(h, 400, "both Content-Length and Transfer-Encoding");
    if (f.te_seen) {
        if (h->version_minor == 0)
            return fail(h, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (f.te_bad)
            return fail(h, 400, "Transfer-Encoding: malformed coding list");
        if (f.te_chunked > 1)
            return fail(h, 400, "Transfer-Encoding: chunked applied more than once");
        if (!f.te_last_chunked)
            return fail(h, 400, "Transfer-Encoding: chunked is not the final coding");
        if (f.te_other)
            return fail(h, 501, "Transfer-Encoding: unsupported transfer coding");
        h->body = HTTP_BODY_CHUNKED;
    }
    if (f.cl_err)
        return fail(h, 400, f.cl_err == -2 ? "Content-Length: differing values"
                                           : "Content-Length: not a plain decimal number");
    if (f.cl_seen) {
        if (lim->max_body && h->content_length > lim->max_body)
            return fail(h, 413, "Content-Length exceeds the body limit");
        if (h->content_length)
            h->body = HTTP_BODY_LENGTH;
    }
    if (h->version_minor == 1 && !f.host_seen)
        return fail(h, 400, "missing Host header (required in HTTP/1.1)");
    if (abs_host.len)
        req->host = abs_host;
    if (h->version_minor == 0)
        req->expect_continue = false;
    h->keep_alive = h->version_minor ? !h->conn_close : (f.ka && !h->conn_close);
    return (int)end;
}

int http_parse_response(const char *buf, size_t len, http_response *resp,
                        http_method request_method, const http_limits *lim)
{
    http_limits dl;
    if (!lim) {
        http_limits_default(&dl);
        lim = &dl;
    }
    http_head_common *h = &resp->h;
    head_reset(h);
    resp->status = 0;
    resp->reason = (http_slice){ 0, 0 };
    if (len > UINT32_MAX)
        len = UINT32_MAX;

    long end = find_end(buf, len, 0, &resp->scanned, lim, 502, 502, h);
    if (end <= 0) {
        if (end < 0)
            h->error_status = 502;
        return (int)end;
    }
    /* status-line = HTTP-version SP 3DIGIT SP [reason-phrase] CRLF; the
     * second SP is often missing when the reason is, and that is harmless. */
    const char *le = memchr(buf, '\r', (size_t)end);
    size_t ll = (size_t)(le - buf);
    if (ll < 12 || buf[8] != ' ' || !IS(buf[9], C_DIGIT) || !IS(buf[10], C_DIGIT) ||
        !IS(buf[11], C_DIGIT) || (ll > 12 && buf[12] != ' '))
        return fail(h, 502, "malformed status line");
    int v = parse_version(buf);
    if (v < 0)
        return fail(h, 502, "status line: unsupported HTTP version");
    h->version_minor = (uint8_t)v;
    int st = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (st < 100 || st > 599)
        return fail(h, 502, "status code out of range 100-599");
    resp->status = (uint16_t)st;
    if (ll > 12) {
        const char *r = buf + 13;
        while (IS(*r, C_VALUE))
            r++;
        if (r != le)
            return fail(h, 502, "control character in reason phrase");
        resp->reason = (http_slice){ 13, (uint32_t)(ll - 13) };
    }

    frame f = { 0 };
    if (parse_fields(buf, le + 2, buf + end - 2, h, &f, lim, NULL) < 0) {
        h->error_status = 502;
        return HTTP_ERROR;
    }
    if (f.te_seen && f.cl_seen)
        return fail(h, 502, "response has both Content-Length and Transfer-Encoding");
    if (f.te_seen && h->version_minor == 0)
        return fail(h, 502, "Transfer-Encoding in an HTTP/1.0 response");
    if (f.cl_err)
        return fail(h, 502, f.cl_err == -2 ? "response Content-Length: differing values"
                                            : "response Content-Length: not a plain decimal number");
    if (f.te_seen && (f.te_bad || f.te_chunked > 1))
        return fail(h, 502, "response Transfer-Encoding: malformed coding list");

    if (request_method == HTTP_HEAD || st < 200 || st == 204 || st == 304 ||
        (request_method == HTTP_CONNECT && st < 300)) {
        h->body = HTTP_BODY_NONE;
    } else if (f.te_seen) {
        h->body = f.te_last_chunked ? HTTP_BODY_CHUNKED : HTTP_BODY_CLOSE;
    } else if (f.cl_seen) {
        if (lim->max_body && h->content_length > lim->max_body)
            return fail(h, 502, "response Content-Length exceeds the body limit");
        h->body = h->content_length ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
    } else {
        h->body = HTTP_BODY_CLOSE;
    }
    if (h->body != HTTP_BODY_LENGTH)
        h->content_length = 0;
    h->keep_alive = h->body != HTTP_BODY_CLOSE &&
                    (h->version_minor ? !h->conn_close : (f.ka && !h->conn_close));
    return (int)end;
}
