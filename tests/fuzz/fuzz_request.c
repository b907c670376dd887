/* fuzz_request.c -- libFuzzer target for http_parse_request.
 *
 * Beyond "no crash": every slice of an accepted head lies inside it, the
 * answer does not depend on how the bytes arrived (whole, or in two calls
 * with `scanned` carried over), and the accepted head re-parses to the same
 * fields when copied on its own into a fresh buffer. */
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static void in_head(http_slice s, int n)
{
    CHECK((uint64_t)s.off + s.len <= (uint64_t)n);
}

static int parse(const char *b, size_t n, http_request *r)
{
    memset(r, 0, sizeof *r);
    return http_parse_request(b, n, r, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static http_request a, b;
    const char *buf = (const char *)data;
    int n = parse(buf, size, &a);
    CHECK(n >= HTTP_ERROR && (size_t)(n > 0 ? n : 0) <= size);
    if (n == HTTP_ERROR) {
        CHECK(a.h.error && a.h.error_status >= 400 && a.h.error_status <= 505);
    }

    /* two calls: the first with a prefix, the second with all of it */
    if (size > 1) {
        size_t cut = data[0] % size;
        memset(&b, 0, sizeof b);
        int m = http_parse_request(buf, cut, &b, NULL);
        if (m == HTTP_INCOMPLETE)
            m = http_parse_request(buf, size, &b, NULL);
        if (m != HTTP_ERROR || n != HTTP_ERROR)
            CHECK(m == n);
    }
    if (n <= 0)
        return 0;

    in_head(a.method_text, n);
    in_head(a.target, n);
    in_head(a.path, n);
    in_head(a.query, n);
    in_head(a.host, n);
    CHECK(a.h.nheaders <= HTTP_MAX_HEADERS);
    for (int i = 0; i < a.h.nheaders; i++) {
        in_head(a.h.headers[i].name, n);
        in_head(a.h.headers[i].value, n);
        CHECK(a.h.headers[i].name.len > 0);
    }
    CHECK(!(a.h.body == HTTP_BODY_LENGTH && a.h.content_length == 0));
    CHECK(a.h.body != HTTP_BODY_CLOSE);
    CHECK(a.h.version_minor <= 1);

    /* the head alone, in its own allocation (ASan catches reads past it) */
    char *copy = malloc((size_t)n);
    CHECK(copy);
    memcpy(copy, buf, (size_t)n);
    int k = parse(copy, (size_t)n, &b);
    CHECK(k == n);
    CHECK(b.method == a.method && b.h.body == a.h.body && b.h.content_length == a.h.content_length);
    CHECK(b.h.nheaders == a.h.nheaders && b.h.keep_alive == a.h.keep_alive);
    CHECK(memcmp(&b.target, &a.target, sizeof a.target) == 0);
    CHECK(memcmp(&b.host, &a.host, sizeof a.host) == 0);
    free(copy);
    return 0;
}
