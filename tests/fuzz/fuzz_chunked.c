/* fuzz_chunked.c -- libFuzzer target for the chunked decoder: the input fed
 * whole, in two pieces and in three pieces (split points taken from the
 * first two bytes) must give the same outcome, consumed count and payload. */
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

typedef struct { uint64_t sum, len; } digest;

static void on_data(void *arg, const char *p, size_t n)
{
    digest *d = arg;
    CHECK(n > 0);
    for (size_t i = 0; i < n; i++)
        d->sum = d->sum * 131 + (uint8_t)p[i];
    d->len += n;
}

/* Feeds p[0,n) in pieces ending at the given cut points. */
static long run(const char *p, size_t n, const size_t *cuts, int ncuts, digest *d, bool *done,
                uint16_t *status)
{
    http_chunked c;
    http_chunked_init(&c, 1u << 20);
    *d = (digest){ 0, 0 };
    size_t at = 0;
    long total = 0;
    for (int i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        if (end < at)
            end = at;
        long k = http_chunked_feed(&c, p + at, end - at, on_data, d);
        if (k < 0) {
            *done = false;
            *status = c.error_status;
            CHECK(c.error);
            return -1;
        }
        CHECK((size_t)k <= end - at);
        total += k;
        if (http_chunked_done(&c))
            break;
        CHECK((size_t)k == end - at);
        at = end;
    }
    *done = http_chunked_done(&c);
    CHECK(d->len == c.total);
    *status = 0;
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t c1 = data[0], c2 = data[1];
    const char *p = (const char *)data + 2;
    size_t n = size - 2;
    c1 = n ? c1 % (n + 1) : 0;
    c2 = n ? c2 % (n + 1) : 0;
    if (c2 < c1) {
        size_t t = c1; c1 = c2; c2 = t;
    }
    digest d0, d1, d2;
    bool done0, done1, done2;
    uint16_t s0, s1, s2;
    size_t none[1] = { n };
    long r0 = run(p, n, none, 0, &d0, &done0, &s0);
    size_t one[1] = { c1 };
    long r1 = run(p, n, one, 1, &d1, &done1, &s1);
    size_t two[2] = { c1, c2 };
    long r2 = run(p, n, two, 2, &d2, &done2, &s2);
    CHECK(r0 == r1 && r0 == r2);
    CHECK(done0 == done1 && done0 == done2);
    CHECK(s0 == s1 && s0 == s2);
    if (r0 >= 0) {
        /* an error can strike after some data went out; compare only on success */
        CHECK(d0.len == d1.len && d0.len == d2.len && d0.sum == d1.sum && d0.sum == d2.sum);
    }
    return 0;
}
