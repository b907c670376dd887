/* fuzz_response.c -- libFuzzer target for http_parse_response: the first
 * byte picks the request method; an accepted head keeps its slices inside
 * itself, has a consistent framing and re-parses identically alone. */
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static http_response a, b;
    if (size < 1)
        return 0;
    http_method m = (http_method)(data[0] % (HTTP_TRACE + 1));
    const char *buf = (const char *)data + 1;
    size--;
    memset(&a, 0, sizeof a);
    int n = http_parse_response(buf, size, &a, m, NULL);
    CHECK(n >= HTTP_ERROR && (size_t)(n > 0 ? n : 0) <= size);
    if (n == HTTP_ERROR)
        CHECK(a.h.error && a.h.error_status == 502);
    if (n <= 0)
        return 0;
    CHECK(a.status >= 100 && a.status <= 599);
    CHECK((uint64_t)a.reason.off + a.reason.len <= (uint64_t)n);
    for (int i = 0; i < a.h.nheaders; i++) {
        CHECK((uint64_t)a.h.headers[i].name.off + a.h.headers[i].name.len <= (uint64_t)n);
        CHECK((uint64_t)a.h.headers[i].value.off + a.h.headers[i].value.len <= (uint64_t)n);
    }
    if (m == HTTP_HEAD || a.status < 200 || a.status == 204 || a.status == 304)
        CHECK(a.h.body == HTTP_BODY_NONE);
    if (a.h.body == HTTP_BODY_CLOSE)
        CHECK(!a.h.keep_alive);

    char *copy = malloc((size_t)n);
    CHECK(copy);
    memcpy(copy, buf, (size_t)n);
    memset(&b, 0, sizeof b);
    CHECK(http_parse_response(copy, (size_t)n, &b, m, NULL) == n);
    CHECK(b.status == a.status && b.h.body == a.h.body && b.h.content_length == a.h.content_length);
    CHECK(b.h.keep_alive == a.h.keep_alive && b.h.nheaders == a.h.nheaders);
    free(copy);
    return 0;
}
