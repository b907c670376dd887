/* test_parser.c -- request and response heads: a table of valid requests
 * with the fields they must yield, a table of smuggling and malformed
 * vectors with the status each must earn, every split point of incremental
 * feeding, the limits, responses and their body framing, and the helpers. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static int parse(const char *s, http_request *r)
{
    memset(r, 0xa5, sizeof *r);   /* the parser must not rely on a zeroed struct */
    r->scanned = 0;
    return http_parse_request(s, strlen(s), r, NULL);
}

static bool sl(const char *buf, http_slice s, const char *want)
{
    return http_slice_eq(buf, s, want);
}

/* ---- valid requests ---------------------------------------------------- */

typedef struct {
    const char *in;
    http_method method;
    const char *target, *path, *query, *host;
    http_body_kind body;
    uint64_t cl;
    bool keep_alive;
    int minor;
    int nheaders;
    int head_len;   /* 0: whole input */
} ok_case;

static const ok_case ok_cases[] = {
    { "GET / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_GET, "/", "/", "", "a", HTTP_BODY_NONE, 0, true, 1, 1, 0 },
    { "GET /cases/7?user_id=3 HTTP/1.1\r\nHost: api.example:8080\r\nAccept: */*\r\n\r\n",
      HTTP_GET, "/cases/7?user_id=3", "/cases/7", "user_id=3", "api.example:8080", HTTP_BODY_NONE, 0, true, 1, 2, 0 },
    { "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
      HTTP_POST, "/x", "/x", "", "h", HTTP_BODY_LENGTH, 5, true, 1, 2, 48 },
    { "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
      HTTP_POST, "/x", "/x", "", "h", HTTP_BODY_NONE, 0, true, 1, 2, 0 },
    { "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
      HTTP_POST, "/x", "/x", "", "h", HTTP_BODY_CHUNKED, 0, true, 1, 2, 0 },
    { "PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
      HTTP_PUT, "/x", "/x", "", "h", HTTP_BODY_CHUNKED, 0, true, 1, 2, 0 },
    { "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
      HTTP_GET, "/a", "/a", "", "h", HTTP_BODY_NONE, 0, true, 1, 1, 28 },
    { "GET http://example.com:81/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n",
      HTTP_GET, "http://example.com:81/p?q=1", "/p", "q=1", "example.com:81", HTTP_BODY_NONE, 0, true, 1, 1, 0 },
    { "GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
      HTTP_GET, "HTTPS://example.com", "", "", "example.com", HTTP_BODY_NONE, 0, true, 1, 1, 0 },
    { "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_OPTIONS, "*", "*", "", "h", HTTP_BODY_NONE, 0, true, 1, 1, 0 },
    { "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n",
      HTTP_CONNECT, "db.internal:5432", "", "", "db.internal:5432", HTTP_BODY_NONE, 0, true, 1, 1, 0 },
    { "GET / HTTP/1.0\r\n\r\n", HTTP_GET, "/", "/", "", "", HTTP_BODY_NONE, 0, false, 0, 0, 0 },
    { "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", HTTP_GET, "/", "/", "", "", HTTP_BODY_NONE, 0, true, 0, 1, 0 },
    { "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", HTTP_GET, "/", "/", "", "h", HTTP_BODY_NONE, 0, false, 1, 2, 0 },
    { "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n", HTTP_GET, "/", "/", "", "h", HTTP_BODY_NONE, 0, false, 1, 2, 0 },
    { "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, keep-alive\r\n\r\n", HTTP_GET, "/", "/", "", "h", HTTP_BODY_NONE, 0, true, 1, 2, 0 },
    { "GET / HTTP/1.2\r\nHost: h\r\n\r\n", HTTP_GET, "/", "/", "", "h", HTTP_BODY_NONE, 0, true, 1, 1, 0 },
    { "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_GET, "/", "/", "", "h", HTTP_BODY_NONE, 0, true, 1, 1, 0 },
    { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
      HTTP_POST, "/", "/", "", "h", HTTP_BODY_LENGTH, 5, true, 1, 3, 0 },
    { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0007\r\n\r\n",
      HTTP_POST, "/", "/", "", "h", HTTP_BODY_LENGTH, 7, true, 1, 2, 0 },
    { "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Tab:\tv \t\r\nX-Utf8: caf\xc3\xa9\r\n\r\n",
      HTTP_GET, "/", "/", "", "h", HTTP_BODY_NONE, 0, true, 1, 4, 0 },
    { "BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_OTHER, "/pot", "/pot", "", "h", HTTP_BODY_NONE, 0, true, 1, 1, 0 },
    { "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", HTTP_GET, "/", "/", "", "[::1]:8080", HTTP_BODY_NONE, 0, true, 1, 1, 0 },
    { "GET /?a?b HTTP/1.1\r\nHost:\r\n\r\n", HTTP_GET, "/?a?b", "/", "a?b", "", HTTP_BODY_NONE, 0, true, 1, 1, 0 },
};

Test(request, valid_table)
{
    for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) {
        const ok_case *c = &ok_cases[i];
        http_request r;
        int n = parse(c->in, &r);
        int want = c->head_len ? c->head_len : (int)strlen(c->in);
        cr_assert_eq(n, want, "case %zu: got %d (%s) want %d", i, n, r.h.error ? r.h.error : "", want);
        cr_expect_eq(r.method, c->method, "case %zu method", i);
        cr_expect(sl(c->in, r.target, c->target), "case %zu target", i);
        cr_expect(sl(c->in, r.path, c->path), "case %zu path", i);
        cr_expect(sl(c->in, r.query, c->query), "case %zu query", i);
        cr_expect(sl(c->in, r.host, c->host), "case %zu host", i);
        cr_expect_eq(r.h.body, c->body, "case %zu body", i);
        cr_expect_eq(r.h.content_length, c->cl, "case %zu cl", i);
        cr_expect_eq(r.h.keep_alive, c->keep_alive, "case %zu keep_alive", i);
        cr_expect_eq(r.h.version_minor, c->minor, "case %zu minor", i);
        cr_expect_eq(r.h.nheaders, c->nheaders, "case %zu nheaders", i);
        cr_expect_eq(r.h.error, NULL, "case %zu error", i);
    }
}

Test(request, headers_and_flags)
{
    const char *s = "POST /u HTTP/1.1\r\nHost: h\r\nUser-Agent:  curl/8 \r\nExpect: 100-Continue\r\n"
                    "Upgrade: websocket\r\nContent-Length: 3\r\n\r\n";
    http_request r;
    cr_assert_gt(parse(s, &r), 0);
    cr_expect(r.expect_continue);
    cr_expect(r.h.upgrade);
    cr_expect_not(r.h.conn_close);
    const http_header *ua = http_find_header(s, &r.h, "user-agent");
    cr_assert_not_null(ua);
    cr_expect(sl(s, ua->value, "curl/8"), "value is trimmed of OWS");
    cr_expect(http_slice_ieq(s, ua->name, "USER-AGENT"));
    cr_expect_null(http_find_header(s, &r.h, "cookie"));
    cr_expect(sl(s, r.method_text, "POST"));

    /* Expect in HTTP/1.0 is ignored (RFC 9110 10.1.1) */
    const char *s10 = "POST /u HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    cr_assert_gt(parse(s10, &r), 0);
    cr_expect_not(r.expect_continue);
}

Test(request, many_headers)
{
    char s[8192];
    size_t n = (size_t)sprintf(s, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 63; i++)
        n += (size_t)sprintf(s + n, "X-H%d: v%d\r\n", i, i);
    strcpy(s + n, "\r\n");
    http_request r;
    cr_assert_eq(parse(s, &r), (int)strlen(s), "%s", r.h.error ? r.h.error : "");
    cr_expect_eq(r.h.nheaders, 64);
    const http_header *h = http_find_header(s, &r.h, "x-h62");
    cr_assert_not_null(h);
    cr_expect(sl(s, h->value, "v62"));
    /* one more is over the default of 64 */
    n = strlen(s) - 2;
    strcpy(s + n, "X-Last: 1\r\n\r\n");
    cr_expect_eq(parse(s, &r), HTTP_ERROR);
    cr_expect_eq(r.h.error_status, 431);
}

/* ---- rejected requests ------------------------------------------------- */

typedef struct { const char *in; int status; } bad_case;

#define H "GET / HTTP/1.1\r\nHost: h\r\n"
#define P "POST / HTTP/1.1\r\nHost: h\r\n"
static const bad_case bad_cases[] = {
    /* framing */
    { P "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
    { P "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400 },
    { P "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400 },
    { P "Content-Length: 5, 6\r\n\r\n", 400 },
    { P "Content-Length: 5,\r\n\r\n", 400 },
    { P "Content-Length: +5\r\n\r\n", 400 },
    { P "Content-Length: -5\r\n\r\n", 400 },
    { P "Content-Length: 5 5\r\n\r\n", 400 },
    { P "Content-Length: 0x5\r\n\r\n", 400 },
    { P "Content-Length: 5a\r\n\r\n", 400 },
    { P "Content-Length:\r\n\r\n", 400 },
    { P "Content-Length: 1.0\r\n\r\n", 400 },
    { P "Content-Length: 9223372036854775808\r\n\r\n", 400 },
    { P "Content-Length: 99999999999999999999999\r\n\r\n", 400 },
    { P "Transfer-Encoding: chunked, gzip\r\n\r\n", 400 },
    { P "Transfer-Encoding: gzip, chunked\r\n\r\n", 501 },
    { P "Transfer-Encoding: identity, chunked\r\n\r\n", 501 },
    { P "Transfer-Encoding: identity\r\n\r\n", 400 },
    { P "Transfer-Encoding: gzip\r\n\r\n", 400 },
    { P "Transfer-Encoding: chunked, chunked\r\n\r\n", 400 },
    { P "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
    { P "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400 },
    { P "Transfer-Encoding: xchunked\r\n\r\n", 400 },
    { P "Transfer-Encoding: chunked;q=1\r\n\r\n", 400 },
    { P "Transfer-Encoding: \"chunked\"\r\n\r\n", 400 },
    { P "Transfer-Encoding:\r\n\r\n", 400 },
    { P "Transfer-Encoding: chunk ed\r\n\r\n", 400 },
    { P "Transfer-Encoding: chunked\r\n\r\n", 0 },   /* sanity: accepted */
    { "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
    { P " Transfer-Encoding: chunked\r\n\r\n", 400 },
    { P "X: y\r\n Transfer-Encoding: chunked\r\n\r\n", 400 },
    { P "X: y\r\n\tcontinued\r\n\r\n", 400 },
    { P "Transfer-Encoding : chunked\r\n\r\n", 400 },
    { P "Transfer-Encoding\t: chunked\r\n\r\n", 400 },
    { P "Content-Length : 5\r\n\r\n", 400 },
    /* field syntax */
    { H ": empty\r\n\r\n", 400 },
    { H "X: a\x01b\r\n\r\n", 400 },
    { H "X: a\x7f\r\n\r\n", 400 },
    { H "X: a\rb\r\n\r\n", 400 },
    { H "X: a\nb\r\n\r\n", 400 },
    { H "X: a\n\r\n", 400 },
    { H "X: a\r\n\n", 400 },
    { "GET / HTTP/1.1\nHost: h\r\n\r\n", 400 },
    { "GET / HTTP/1.1\r\nHost: h\n\n", 400 },
    { "GET / HTTP/1.1\rHost: h\r\n\r\n", 400 },
    { H "X\r\n\r\n", 400 },
    { H "X-\xc3\xa9: 1\r\n\r\n", 400 },
    { H "X(y): 1\r\n\r\n", 400 },
    { H "X y: 1\r\n\r\n", 400 },
    /* Host */
    { "GET / HTTP/1.1\r\n\r\n", 400 },
    { "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400 },
    { "GET http://a/ HTTP/1.1\r\n\r\n", 400 },
    { H "Host: h\r\n\r\n", 400 },
    { H "host: other\r\n\r\n", 400 },
    { "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400 },
    { "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400 },
    { "GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400 },
    { "GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", 400 },
    /* request line */
    { "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400 },
    { " GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET /#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET /\r\nHost: h\r\n\r\n", 400 },
    { "GET / \r\nHost: h\r\n\r\n", 400 },
    { "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505 },
    { "GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505 },
    { "GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505 },
    { "GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400 },
    { "GET / HTTP/1\r\nHost: h\r\n\r\n", 400 },
    { "GET / http/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400 },
    { "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "OPTIONS ** HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET example.com:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET foo HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET http:/x HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "CONNECT http://h:1 HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400 },

};
#undef H
#undef P

Test(request, rejects_table)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        size_t len = strlen(c->in);
        http_request r;
        memset(&r, 0, sizeof r);
        int n = http_parse_request(c->in, len, &r, NULL);
        if (c->status == 0) {
            cr_expect_geq(n, 0, "case %zu should not fail: %s", i, r.h.error ? r.h.error : "");
            continue;
        }
        cr_expect_eq(n, HTTP_ERROR, "case %zu (%s) accepted: %d", i, c->in, n);
        cr_expect_eq(r.h.error_status, c->status, "case %zu (%s): status %d (%s) want %d", i,
                     c->in, r.h.error_status, r.h.error ? r.h.error : "", c->status);
        cr_expect_not_null(r.h.error, "case %zu has no message", i);
    }
}

/* Vectors with an embedded NUL need an explicit length. */
Test(request, nul_bytes)
{
    static const char a[] = "GET / HTTP/1.1\r\nHost: h\r\nX\0Y: 1\r\n\r\n";
    static const char b[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
    static const char c[] = "G\0T / HTTP/1.1\r\nHost: h\r\n\r\n";
    static const char d[] = "GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n";
    static const char e[] = "GET / HTTP/1.1\r\nHost: h\0\r\n\r\n";
    const char *v[] = { a, b, c, d, e };
    size_t l[] = { sizeof a - 1, sizeof b - 1, sizeof c - 1, sizeof d - 1, sizeof e - 1 };
    for (int i = 0; i < 5; i++) {
        http_request r;
        memset(&r, 0, sizeof r);
        cr_expect_eq(http_parse_request(v[i], l[i], &r, NULL), HTTP_ERROR, "nul case %d", i);
        cr_expect_eq(r.h.error_status, 400);
    }
}

/* ---- incremental ------------------------------------------------------- */

/* Every prefix is incomplete (or the same error), then the whole gives the
 * same answer as a one-shot parse, with `scanned` carried between calls. */
static void every_split(const char *s, size_t len)
{
    http_request whole;
    memset(&whole, 0, sizeof whole);
    int want = http_parse_request(s, len, &whole, NULL);
    for (size_t cut = 0; cut <= len; cut++) {
        http_request r;
        memset(&r, 0, sizeof r);
        int n = HTTP_INCOMPLETE;
        size_t have = 0;
        /* feed in steps of 1 up to cut, then the rest at once */
        while (have < len) {
            have = have < cut ? have + 1 : len;
            n = http_parse_request(s, have, &r, NULL);
            if (n != HTTP_INCOMPLETE)
                break;
        }
        cr_assert_eq(n, want, "cut %zu: %d vs %d (%s)", cut, n, want, r.h.error ? r.h.error : "");
        if (n > 0) {
            cr_assert_eq(r.method, whole.method);
            cr_assert_eq(r.target.off, whole.target.off);
            cr_assert_eq(r.target.len, whole.target.len);
            cr_assert_eq(r.h.nheaders, whole.h.nheaders);
            cr_assert_eq(r.h.body, whole.h.body);
            cr_assert_eq(r.h.content_length, whole.h.content_length);
            cr_assert_eq(r.host.off, whole.host.off);
        } else {
            cr_assert_eq(r.h.error_status, whole.h.error_status, "cut %zu", cut);
        }
    }
}

Test(request, incremental_every_split)
{
    const char *v[] = {
        "GET /cases/7?user_id=3 HTTP/1.1\r\nHost: api\r\nAccept: */*\r\nCookie: a=b; c=d\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
        "\r\nPOST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\nb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n Folded: x\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        every_split(v[i], strlen(v[i]));
}

Test(request, incomplete)
{
    const char *v[] = { "", "G", "GET / HTTP/1.1", "GET / HTTP/1.1\r", "GET / HTTP/1.1\r\n",
                        "GET / HTTP/1.1\r\nHost: h\r\n", "GET / HTTP/1.1\r\nHost: h\r\n\r",
                        "\r", "\r\n", "\r\n\r\n" };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        http_request r;
        memset(&r, 0, sizeof r);
        cr_expect_eq(http_parse_request(v[i], strlen(v[i]), &r, NULL), HTTP_INCOMPLETE, "case %zu", i);
    }
}

/* ---- limits ------------------------------------------------------------ */

Test(request, limits)
{
    http_limits lim;
    http_limits_default(&lim);
    lim.max_request_line = 32;
    lim.max_head = 128;
    lim.max_headers = 2;
    lim.max_body = 100;
    http_request r;
    char s[512];

    /* request line over the limit: 414, both complete and still arriving */
    snprintf(s, sizeof s, "GET /%040d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    memset(&r, 0, sizeof r);
    cr_expect_eq(http_parse_request(s, strlen(s), &r, &lim), HTTP_ERROR);
    cr_expect_eq(r.h.error_status, 414);
    memset(&r, 0, sizeof r);
    cr_expect_eq(http_parse_request(s, 40, &r, &lim), HTTP_ERROR);
    cr_expect_eq(r.h.error_status, 414);
    /* exactly at the limit is fine */
    snprintf(s, sizeof s, "GET /%018d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    cr_assert_eq(strchr(s, '\r') - s, 32);
    memset(&r, 0, sizeof r);
    cr_expect_gt(http_parse_request(s, strlen(s), &r, &lim), 0, "%s", r.h.error ? r.h.error : "");

    /* head over the limit: 431 whether or not it has ended */
    snprintf(s, sizeof s, "GET / HTTP/1.1\r\nHost: h\r\nX: %0120d\r\n\r\n", 0);
    memset(&r, 0, sizeof r);
    cr_expect_eq(http_parse_request(s, strlen(s), &r, &lim), HTTP_ERROR);
    cr_expect_eq(r.h.error_status, 431);
    memset(&r, 0, sizeof r);
    cr_expect_eq(http_parse_request(s, 140, &r, &lim), HTTP_ERROR);
    cr_expect_eq(r.h.error_status, 431);

    /* header count */
    strcpy(s, "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n");
    memset(&r, 0, sizeof r);
    cr_expect_eq(http_parse_request(s, strlen(s), &r, &lim), HTTP_ERROR);
    cr_expect_eq(r.h.error_status, 431);

    /* body */
    strcpy(s, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n");
    memset(&r, 0, sizeof r);
    cr_expect_eq(http_parse_request(s, strlen(s), &r, &lim), HTTP_ERROR);
    cr_expect_eq(r.h.error_status, 413);
    strcpy(s, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n");
    memset(&r, 0, sizeof r);
    cr_expect_gt(http_parse_request(s, strlen(s), &r, &lim), 0);
    cr_expect_eq(r.h.content_length, 100);
    lim.max_body = 0;
    strcpy(s, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n");
    memset(&r, 0, sizeof r);
    cr_expect_gt(http_parse_request(s, strlen(s), &r, &lim), 0);
    cr_expect_eq(r.h.content_length, UINT64_C(9223372036854775807));
}

/* ---- responses --------------------------------------------------------- */

typedef struct {
    const char *in;
    http_method req;
    int ret;             /* 1: whole input is the head, -1: error, else head length */
    int status;
    http_body_kind body;
    uint64_t cl;
    bool keep_alive;
    const char *reason;
} resp_case;

static const resp_case resp_cases[] = {
    { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", HTTP_GET, 1, 200, HTTP_BODY_LENGTH, 5, true, "OK" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", HTTP_GET, 1, 200, HTTP_BODY_NONE, 0, true, "OK" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", HTTP_HEAD, 1, 200, HTTP_BODY_NONE, 0, true, "OK" },
    { "HTTP/1.1 204 No Content\r\n\r\n", HTTP_GET, 1, 204, HTTP_BODY_NONE, 0, true, "No Content" },
    { "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", HTTP_GET, 1, 304, HTTP_BODY_NONE, 0, true, "Not Modified" },
    { "HTTP/1.1 100 Continue\r\n\r\n", HTTP_POST, 1, 100, HTTP_BODY_NONE, 0, true, "Continue" },
    { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", HTTP_GET, 1, 101, HTTP_BODY_NONE, 0, true, "Switching Protocols" },
    { "HTTP/1.1 200 Connection established\r\n\r\n", HTTP_CONNECT, 1, 200, HTTP_BODY_NONE, 0, true, "Connection established" },
    { "HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n", HTTP_CONNECT, 1, 407, HTTP_BODY_LENGTH, 2, true, "Auth" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_GET, 1, 200, HTTP_BODY_CHUNKED, 0, true, "OK" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HTTP_GET, 1, 200, HTTP_BODY_CHUNKED, 0, true, "OK" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", HTTP_GET, 1, 200, HTTP_BODY_CLOSE, 0, false, "OK" },
    { "HTTP/1.1 200 OK\r\n\r\n", HTTP_GET, 1, 200, HTTP_BODY_CLOSE, 0, false, "OK" },
    { "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", HTTP_GET, 1, 200, HTTP_BODY_LENGTH, 1, false, "OK" },
    { "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", HTTP_GET, 1, 200, HTTP_BODY_LENGTH, 1, false, "OK" },
    { "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", HTTP_GET, 1, 200, HTTP_BODY_LENGTH, 1, true, "OK" },
    { "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", HTTP_GET, 1, 200, HTTP_BODY_LENGTH, 1, true, "" },
    { "HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\n", HTTP_GET, 1, 200, HTTP_BODY_LENGTH, 1, true, "" },
    { "HTTP/1.1 404 Not\tFound \xe2\x9c\x97\r\nContent-Length: 1\r\n\r\n", HTTP_GET, 1, 404, HTTP_BODY_LENGTH, 1, true, "Not\tFound \xe2\x9c\x97" },
    { "HTTP/1.1 599 X\r\nContent-Length: 1\r\n\r\n", HTTP_GET, 1, 599, HTTP_BODY_LENGTH, 1, true, "X" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1", HTTP_GET, 38, 200, HTTP_BODY_LENGTH, 2, true, "OK" },
    /* errors */
    { "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1 099 X\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1 600 X\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1 20 X\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1 2000 X\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/2 200 X\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/2.0 200 X\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1  200 X\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1 200 X\x01\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1 200 OK\r\n X: a\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "HTTP/1.1 200 OK\r\nX : a\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
    { "\r\nHTTP/1.1 200 OK\r\n\r\n", HTTP_GET, -1, 0, 0, 0, false, NULL },
};

Test(response, table)
{
    for (size_t i = 0; i < sizeof resp_cases / sizeof resp_cases[0]; i++) {
        const resp_case *c = &resp_cases[i];
        http_response r;
        memset(&r, 0x5a, sizeof r);
        r.scanned = 0;
        int n = http_parse_response(c->in, strlen(c->in), &r, c->req, NULL);
        if (c->ret == -1) {
            cr_expect_eq(n, HTTP_ERROR, "case %zu accepted", i);
            cr_expect_eq(r.h.error_status, 502, "case %zu", i);
            cr_expect_not_null(r.h.error);
            continue;
        }
        int want = c->ret == 1 ? (int)strlen(c->in) : c->ret;
        cr_assert_eq(n, want, "case %zu: %d (%s)", i, n, r.h.error ? r.h.error : "");
        cr_expect_eq(r.status, c->status, "case %zu", i);
        cr_expect_eq(r.h.body, c->body, "case %zu body %d", i, r.h.body);
        cr_expect_eq(r.h.content_length, c->cl, "case %zu", i);
        cr_expect_eq(r.h.keep_alive, c->keep_alive, "case %zu keep_alive", i);
        cr_expect(sl(c->in, r.reason, c->reason), "case %zu reason", i);
    }
}

Test(response, incremental)
{
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n";
    size_t len = strlen(s);
    http_response r;
    memset(&r, 0, sizeof r);
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(http_parse_response(s, i, &r, HTTP_GET, NULL), HTTP_INCOMPLETE, "at %zu", i);
    cr_assert_eq(http_parse_response(s, len, &r, HTTP_GET, NULL), (int)len);
    cr_expect_eq(r.h.content_length, 17);
}

/* ---- helpers ----------------------------------------------------------- */

Test(helpers, methods_and_reasons)
{
    cr_expect_eq(http_method_from("GET", 3), HTTP_GET);
    cr_expect_eq(http_method_from("DELETE", 6), HTTP_DELETE);
    cr_expect_eq(http_method_from("PATCH", 5), HTTP_PATCH);
    cr_expect_eq(http_method_from("get", 3), HTTP_OTHER, "methods are case-sensitive");
    cr_expect_eq(http_method_from("GETS", 4), HTTP_OTHER);
    cr_expect_eq(http_method_from("", 0), HTTP_OTHER);
    for (int m = HTTP_GET; m <= HTTP_TRACE; m++) {
        const char *n = http_method_name((http_method)m);
        cr_assert_not_null(n);
        cr_expect_eq(http_method_from(n, strlen(n)), m);
    }
    cr_expect_null(http_method_name(HTTP_OTHER));
    cr_expect_str_eq(http_status_reason(200), "OK");
    cr_expect_str_eq(http_status_reason(404), "Not Found");
    cr_expect_str_eq(http_status_reason(431), "Request Header Fields Too Large");
    cr_expect_str_eq(http_status_reason(505), "HTTP Version Not Supported");
    cr_expect_str_eq(http_status_reason(599), "Server Error");
    cr_expect_not_null(http_status_reason(0));
    const char *b = "Content-Type";
    http_slice s = { 0, 12 };
    cr_expect(http_slice_eq(b, s, "Content-Type"));
    cr_expect_not(http_slice_eq(b, s, "content-type"));
    cr_expect(http_slice_ieq(b, s, "content-type"));
    cr_expect_not(http_slice_ieq(b, s, "content-typ"));
}
