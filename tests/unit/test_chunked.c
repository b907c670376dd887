/* test_chunked.c -- the chunked decoder: valid bodies with the payload they
 * carry, malformed framing with the status it earns, every split point
 * giving the same result as a whole feed, stopping at the end of the
 * message, the body limit and the trailer cap. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

typedef struct { char data[256]; size_t len; } sink;

static void collect(void *arg, const char *p, size_t n)
{
    sink *s = arg;
    cr_assert_leq(s->len + n, sizeof s->data);
    memcpy(s->data + s->len, p, n);
    s->len += n;
}

/* Feeds [0,cut) then [cut,len). Returns consumed total or -1; *done set. */
static long feed2(const char *in, size_t len, size_t cut, uint64_t max, sink *out,
                  http_chunked *c)
{
    http_chunked_init(c, max);
    out->len = 0;
    long a = http_chunked_feed(c, in, cut, collect, out);
    if (a < 0)
        return -1;
    if (http_chunked_done(c))
        return a;
    cr_assert_eq((size_t)a, cut, "a partial feed consumes everything it is given");
    long b = http_chunked_feed(c, in + cut, len - cut, collect, out);
    return b < 0 ? -1 : a + b;
}

typedef struct {
    const char *in;
    const char *payload;   /* NULL: must fail */
    int status;
    int consumed;          /* 0: whole input */
} ch_case;

static const ch_case cases[] = {
    { "0\r\n\r\n", "", 0, 0 },
    { "5\r\nhello\r\n0\r\n\r\n", "hello", 0, 0 },
    { "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", 0, 0 },
    { "A\r\n0123456789\r\n0\r\n\r\n", "0123456789", 0, 0 },
    { "a\r\n0123456789\r\n0\r\n\r\n", "0123456789", 0, 0 },
    { "000005\r\nhello\r\n0\r\n\r\n", "hello", 0, 0 },
    { "5;ext\r\nhello\r\n0\r\n\r\n", "hello", 0, 0 },
    { "5;a=b;c=\"d e\\\"f\"\r\nhello\r\n0\r\n\r\n", "hello", 0, 0 },
    { "5 ; a = b ;c\r\nhello\r\n0;last\r\n\r\n", "hello", 0, 0 },
    { "5\r\nhello\r\n0\r\nX-Sum: 1\r\nY:\r\n\r\n", "hello", 0, 0 },
    { "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "hello", 0, 15 },
    /* errors */
    { "\r\n", NULL, 400, 0 },
    { " 5\r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "5 \r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "+5\r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "-5\r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "0x5\r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "g\r\n", NULL, 400, 0 },
    { "5\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "5\rhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "5\r\nhelloX\r\n0\r\n\r\n", NULL, 400, 0 },
    { "5\r\nhello\n0\r\n\r\n", NULL, 400, 0 },
    { "5\r\nhello\r\n0\r\n\n", NULL, 400, 0 },
    { "5\r\nhello\r\n0\n\r\n", NULL, 400, 0 },
    { "5\r\nhello\r\n0\r\n\r\r", NULL, 400, 0 },
    { "10000000000000000\r\n", NULL, 400, 0 },          /* 17 digits */
    { "8000000000000000\r\n", NULL, 400, 0 },           /* 2^63 */
    { "FFFFFFFFFFFFFFFF\r\n", NULL, 400, 0 },
    { "5;\r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "5;a=\r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "5;a b\r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "5;a=\"b\r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "5;a=b \r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "5;a=\x01\r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "5;a(b)\r\nhello\r\n0\r\n\r\n", NULL, 400, 0 },
    { "5\r\nhello\r\n0\r\n X: 1\r\n\r\n", NULL, 400, 0 },
    { "5\r\nhello\r\n0\r\nX : 1\r\n\r\n", NULL, 400, 0 },
    { "5\r\nhello\r\n0\r\n: 1\r\n\r\n", NULL, 400, 0 },
    { "5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n", NULL, 400, 0 },
    { "5\r\nhello\r\n0\r\nX: a\nb\r\n\r\n", NULL, 400, 0 },
    { "5\r\nhello\r\n0\r\nX\r\n\r\n", NULL, 400, 0 },
};

Test(chunked, table_every_split)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ch_case *k = &cases[i];
        size_t len = strlen(k->in);
        for (size_t cut = 0; cut <= len; cut++) {
            http_chunked c;
            sink out;
            long n = feed2(k->in, len, cut, 0, &out, &c);
            if (!k->payload) {
                cr_assert_eq(n, -1, "case %zu cut %zu accepted", i, cut);
                cr_assert_eq(c.error_status, k->status, "case %zu cut %zu", i, cut);
                cr_assert_not_null(c.error);
                continue;
            }
            long want = k->consumed ? k->consumed : (long)len;
            cr_assert_eq(n, want, "case %zu cut %zu: %ld (%s)", i, cut, n, c.error ? c.error : "");
            cr_assert(http_chunked_done(&c), "case %zu cut %zu not done", i, cut);
            cr_assert_eq(out.len, strlen(k->payload), "case %zu cut %zu", i, cut);
            cr_assert(memcmp(out.data, k->payload, out.len) == 0, "case %zu cut %zu", i, cut);
            cr_assert_eq(c.total, out.len);
        }
    }
}

Test(chunked, byte_at_a_time)
{
    const char *s = "3;x=\"1\"\r\nabc\r\n1\r\nd\r\n0\r\nT: v\r\n\r\n";
    http_chunked c;
    http_chunked_init(&c, 0);
    sink out = { .len = 0 };
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i++) {
        cr_assert_not(http_chunked_done(&c), "done early at %zu", i);
        cr_assert_eq(http_chunked_feed(&c, s + i, 1, collect, &out), 1, "at %zu", i);
    }
    cr_expect(http_chunked_done(&c));
    cr_expect_eq(out.len, 4);
    cr_expect(memcmp(out.data, "abcd", 4) == 0);
    /* done: consumes nothing more */
    cr_expect_eq(http_chunked_feed(&c, "x", 1, collect, &out), 0);
}

Test(chunked, max_body)
{
    http_chunked c;
    sink out;
    const char *s = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    cr_expect_eq(feed2(s, strlen(s), 0, 11, &out, &c), (long)strlen(s));
    cr_expect_eq(feed2(s, strlen(s), 0, 10, &out, &c), -1);
    cr_expect_eq(c.error_status, 413);
    cr_expect_eq(out.len, 5, "the first chunk was within the limit");
    cr_expect_eq(feed2("7FFFFFFFFFFFFFFF\r\n", 18, 0, 100, &out, &c), -1);
    cr_expect_eq(c.error_status, 413);
    /* sticky error */
    cr_expect_eq(http_chunked_feed(&c, "0\r\n\r\n", 5, collect, &out), -1);
    /* the largest legal size parses (and then waits for data) */
    http_chunked_init(&c, 0);
    cr_expect_eq(http_chunked_feed(&c, "7FFFFFFFFFFFFFFF\r\n", 18, NULL, NULL), 18);
    cr_expect_eq(c.remaining, UINT64_C(0x7FFFFFFFFFFFFFFF));
}

Test(chunked, trailer_and_line_caps)
{
    static char s[20000];
    size_t n = (size_t)sprintf(s, "0\r\n");
    for (int i = 0; i < 400; i++)
        n += (size_t)sprintf(s + n, "X-Trailer-%03d: %s\r\n", i, "value");
    strcpy(s + n, "\r\n");
    http_chunked c;
    http_chunked_init(&c, 0);
    cr_expect_eq(http_chunked_feed(&c, s, strlen(s), NULL, NULL), -1);
    cr_expect_eq(c.error_status, 431);

    n = (size_t)sprintf(s, "1");
    for (int i = 0; i < 1000; i++)
        n += (size_t)sprintf(s + n, ";e%03d=v", i);
    strcpy(s + n, "\r\nx\r\n0\r\n\r\n");
    http_chunked_init(&c, 0);
    cr_expect_eq(http_chunked_feed(&c, s, strlen(s), NULL, NULL), -1);
    cr_expect_eq(c.error_status, 400);
}

Test(chunked, embedded_nul)
{
    static const char a[] = "5\r\nhe\0lo\r\n0\r\n\r\n";     /* NUL in data is payload */
    static const char b[] = "5;a\0\r\nhello\r\n0\r\n\r\n";  /* NUL in an extension */
    static const char d[] = "5\r\nhello\r\n0\r\nX: \0\r\n\r\n";
    http_chunked c;
    sink out;
    cr_expect_eq(feed2(a, sizeof a - 1, 4, 0, &out, &c), (long)(sizeof a - 1));
    cr_expect_eq(out.len, 5);
    cr_expect_eq(feed2(b, sizeof b - 1, 2, 0, &out, &c), -1);
    cr_expect_eq(feed2(d, sizeof d - 1, 7, 0, &out, &c), -1);
}
