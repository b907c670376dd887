/* parser_bench.c -- how close the request parser runs to the memory scan it
 * cannot beat: parses a ~500-byte Chrome-like request N times and scans the
 * same bytes for '\n' with memchr N times, then prints ns/request, GB/s and
 * the ratio. Usage: parser_bench [seconds-per-side, default 1]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/parser.h"

static const char REQ[] =
    "GET /cases/1234/notes?user_id=42&limit=20 HTTP/1.1\r\n"
    "Host: api.surgicase.example:8080\r\n"
    "Connection: keep-alive\r\n"
    "sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n"
    "sec-ch-ua-mobile: ?0\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36\r\n"
    "sec-ch-ua-platform: \"Linux\"\r\n"
    "Accept: application/json, text/plain, */*\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Sec-Fetch-Mode: cors\r\n"
    "Sec-Fetch-Dest: empty\r\n"
    "Referer: https://api.surgicase.example/cases/1234\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Cookie: session=4f2a9c; theme=dark\r\n"
    "\r\n";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static volatile size_t sink;

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    size_t len = sizeof REQ - 1;
    static char buf[sizeof REQ];
    memcpy(buf, REQ, sizeof REQ);
    http_limits lim;
    http_limits_default(&lim);
    http_request r;

    memset(&r, 0, sizeof r);
    if (http_parse_request(buf, len, &r, &lim) != (int)len) {
        fprintf(stderr, "parser_bench: the sample request does not parse: %s\n",
                r.h.error ? r.h.error : "incomplete");
        return 1;
    }
    /* calibrate N to about `secs` of parsing */
    long n = 1000;
    for (;;) {
        double t0 = now();
        for (long i = 0; i < n; i++) {
            r.scanned = 0;
            sink += (size_t)http_parse_request(buf, len, &r, &lim);
        }
        if (now() - t0 > secs / 10 || n > (1L << 40))
            break;
        n *= 2;
    }
    n *= 10;

    double t0 = now();
    for (long i = 0; i < n; i++) {
        r.scanned = 0;
        sink += (size_t)http_parse_request(buf, len, &r, &lim);
        __asm__ volatile("" ::: "memory");
    }
    double tp = now() - t0;

    t0 = now();
    for (long i = 0; i < n; i++) {
        const char *p = buf, *end = buf + len;
        size_t lines = 0;
        while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            lines++;
            p++;
        }
        sink += lines;
        __asm__ volatile("" ::: "memory");
    }
    double tm = now() - t0;

    double bytes = (double)len * (double)n;
    printf("request: %zu bytes, %d headers, N=%ld\n", len, r.h.nheaders, n);
    printf("parser : %7.1f ns/request  %6.2f GB/s\n", tp / (double)n * 1e9, bytes / tp / 1e9);
    printf("memchr : %7.1f ns/request  %6.2f GB/s\n", tm / (double)n * 1e9, bytes / tm / 1e9);
    printf("ratio parser/memchr: %.2f\n", tp / tm);
    return 0;
}
