/* test_bench_resp.c -- response framing: lengths, chunked, close-delimited,
 * interim responses, split reads, and malformed input. */
#include <criterion/criterion.h>
#include <string.h>
#include "bench/bench_int.h"

/* Feeds `text` in pieces of `step` bytes through a buffer the way the worker
 * does (dropping consumed bytes); returns the final feed result. */
static int feed_all(bench_resp *r, const char *text, size_t step, bool head_only, size_t *left)
{
    char buf[BENCH_RBUF];
    size_t have = 0, off = 0, n = strlen(text);
    int rc = 0;
    bench_resp_reset(r);
    while (off < n) {
        size_t take = n - off < step ? n - off : step;
        memcpy(buf + have, text + off, take);
        have += take;
        off += take;
        size_t used = 0;
        rc = bench_resp_feed(r, buf, have, &used, head_only);
        if (rc < 0)
            return rc;
        memmove(buf, buf + used, have - used);
        have -= used;
        if (rc == 1)
            break;
    }
    *left = have + (n - off);
    return rc;
}

Test(bench_resp, content_length_any_split)
{
    const char *m = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
    for (size_t step = 1; step <= strlen(m); step++) {
        bench_resp r;
        size_t left;
        cr_assert_eq(feed_all(&r, m, step, false, &left), 1, "step %zu", step);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(left, 0);
        cr_assert_not(r.close_after);
        cr_assert_eq(r.bytes, strlen(m));
    }
}

Test(bench_resp, chunked_any_split)
{
    const char *m = "HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
                    "5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n";
    for (size_t step = 1; step <= strlen(m); step++) {
        bench_resp r;
        size_t left;
        cr_assert_eq(feed_all(&r, m, step, false, &left), 1, "step %zu", step);
        cr_assert_eq(r.status, 201);
        cr_assert_eq(left, 0);
    }
}

Test(bench_resp, no_body_cases)
{
    bench_resp r;
    size_t left;
    cr_assert_eq(feed_all(&r, "HTTP/1.1 204 No Content\r\n\r\n", 64, false, &left), 1);
    cr_assert_eq(feed_all(&r, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 64, true, &left), 1);
    cr_assert_eq(feed_all(&r, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 64, false, &left), 1);
    cr_assert_eq(feed_all(&r, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 E\r\nContent-Length: 1\r\n\r\nx",
                          7, false, &left), 1);
    cr_assert_eq(r.status, 500);
}

Test(bench_resp, close_delimited_and_connection_close)
{
    bench_resp r;
    size_t left;
    cr_assert_eq(feed_all(&r, "HTTP/1.1 200 OK\r\n\r\nbody until close", 8, false, &left), 0);
    cr_assert(bench_resp_eof(&r));
    cr_assert(r.close_after);
    cr_assert_eq(feed_all(&r, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
                          64, false, &left), 1);
    cr_assert(r.close_after);
    cr_assert_eq(feed_all(&r, "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 64, false, &left), 1);
    cr_assert(r.close_after);
    cr_assert_eq(feed_all(&r, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
                          64, false, &left), 1);
    cr_assert_not(r.close_after);
}

Test(bench_resp, malformed)
{
    bench_resp r;
    size_t left;
    cr_assert_eq(feed_all(&r, "HTTX/1.1 200 OK\r\n\r\n", 64, false, &left), -1);
    cr_assert_eq(feed_all(&r, "HTTP/1.1 2x0 OK\r\n\r\n", 64, false, &left), -1);
    cr_assert_eq(feed_all(&r, "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", 64, false, &left), -1);
    cr_assert_eq(feed_all(&r, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
                          64, false, &left), -1);
    cr_assert_eq(feed_all(&r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 64, false,
                          &left), -1);
    cr_assert_eq(feed_all(&r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxY\r\n", 64,
                          false, &left), -1);
    cr_assert_eq(feed_all(&r, "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", 64, false, &left), -1);
}
