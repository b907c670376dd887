/* test_server.c -- the server framework over real loopback sockets:
 * keep-alive, pipelining, CL and chunked bodies, Expect: 100-continue,
 * 413/400/404/405/408 handling, query and param decoding, HEAD, and a
 * graceful stop that lets a slow in-flight handler finish. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/metrics.h"
#include "http/server.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

/* ---- handlers ---- */

static void h_hello(http_ctx *c, void *arg)
{
    char b[256];
    int n = snprintf(b, sizeof b, "hello %s", http_ctx_path(c));
    http_reply(c, 200, "text/plain", b, (size_t)n);
}

static void h_echo(http_ctx *c, void *arg)
{
    size_t n;
    const char *b = http_ctx_body(c, &n);
    http_reply(c, 200, "application/octet-stream", b, n);
}

static void h_case(http_ctx *c, void *arg)
{
    char b[512];
    const char *q = http_ctx_query(c, "q");
    const char *x = http_ctx_header(c, "x-test");
    int n = snprintf(b, sizeof b, "id=%s q=%s x=%s", http_ctx_param(c, "id"),
                     q ? q : "-", x ? x : "-");
    http_ctx_add_header(c, "X-Route", http_ctx_route(c));
    http_reply(c, 200, "text/plain", b, (size_t)n);
}

static void h_slow(http_ctx *c, void *arg)
{
    usleep(400 * 1000);
    http_reply(c, 200, "text/plain", "slow", 4);
}

static void h_bad(http_ctx *c, void *arg)
{
    http_reply_error(c, 422, "name", "name must be %d chars", 3);
}

/* ---- fixtures ---- */

static http_router *router;
static http_server *srv;
static int port;

static void start(uint64_t max_body, uint64_t header_timeout_us)
{
    router = http_router_new();
    http_route(router, "GET", "/hello/*", h_hello, NULL);
    http_route(router, "GET", "/", h_hello, NULL);
    http_route(router, "POST", "/echo", h_echo, NULL);
    http_route(router, "GET", "/cases/{id}", h_case, NULL);
    http_route(router, "DELETE", "/cases/{id}", h_case, NULL);
    http_route(router, "GET", "/slow", h_slow, NULL);
    http_route(router, "POST", "/bad", h_bad, NULL);
    http_server_opts o;
    memset(&o, 0, sizeof o);
    o.name = "test";
    char err[256];
    cr_assert_eq(sock_addr_parse("127.0.0.1:0", &o.listen, err, sizeof err), 0, "%s", err);
    o.workers = 2;
    o.router = router;
    http_limits_default(&o.limits);
    o.limits.max_body = max_body;
    o.header_timeout_us = header_timeout_us;
    srv = http_server_new(&o, err, sizeof err);
    cr_assert_not_null(srv, "%s", err);
    cr_assert_eq(http_server_start(srv, err, sizeof err), 0, "%s", err);
    port = http_server_port(srv);
    cr_assert_gt(port, 0);
}

static void teardown(void)
{
    if (srv)
        http_server_free(srv);
    srv = NULL;
    http_router_free(router);
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    struct timeval tv = { .tv_sec = 3 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    cr_assert_eq(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads one response (head + Content-Length body) into out; returns its
 * length, or 0 on EOF before any byte. Leftover bytes stay in the static
 * carry buffer for the next call on the same fd. */
static char carry[65536];
static size_t carry_len;

static size_t read_response(int fd, char *out, size_t cap)
{
    for (;;) {
        char *end = memmem(carry, carry_len, "\r\n\r\n", 4);
        if (end) {
            size_t head = (size_t)(end - carry) + 4;
            size_t cl = 0;
            char *p = memmem(carry, head, "Content-Length: ", 16);
            if (p)
                cl = strtoul(p + 16, NULL, 10);
            if (carry_len >= head + cl) {
                size_t n = head + cl;
                cr_assert_lt(n, cap);
                memcpy(out, carry, n);
                out[n] = '\0';
                memmove(carry, carry + n, carry_len - n);
                carry_len -= n;
                return n;
            }
        }
        ssize_t r = recv(fd, carry + carry_len, sizeof carry - carry_len, 0);
        if (r <= 0) {
            cr_assert_eq(carry_len, 0, "connection ended mid-response: %.*s", (int)carry_len, carry);
            return 0;
        }
        carry_len += (size_t)r;
    }
}

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    return p ? p + 4 : "";
}

static bool peer_closed(int fd)
{
    char b[64];
    ssize_t r = recv(fd, b, sizeof b, 0);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

TestSuite(server, .fini = teardown, .timeout = 20);

Test(server, keepalive_several_requests)
{
    start(1024 * 1024, 0);
    int fd = dial();
    char r[4096];
    carry_len = 0;
    for (int i = 0; i < 5; i++) {
        char req[128];
        snprintf(req, sizeof req, "GET /hello/%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
        send_str(fd, req);
        cr_assert_gt(read_response(fd, r, sizeof r), 0);
        cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
        cr_assert_null(strstr(r, "Connection: close"));
        char want[64];
        snprintf(want, sizeof want, "hello /hello/%d", i);
        cr_assert_str_eq(body_of(r), want);
    }
    close(fd);
}

Test(server, pipelined_in_order)
{
    start(1024 * 1024, 0);
    int fd = dial();
    carry_len = 0;
    send_str(fd, "GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nbbb"
                 "GET /hello/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    char r[4096];
    read_response(fd, r, sizeof r);
    cr_assert_str_eq(body_of(r), "hello /hello/a");
    read_response(fd, r, sizeof r);
    cr_assert_str_eq(body_of(r), "bbb");
    read_response(fd, r, sizeof r);
    cr_assert_str_eq(body_of(r), "hello /hello/c");
    cr_assert_not_null(strstr(r, "Connection: close\r\n"));
    cr_assert(peer_closed(fd));
    close(fd);
}

Test(server, post_content_length_split_and_chunked)
{
    start(1024 * 1024, 0);
    int fd = dial();
    carry_len = 0;
    char r[4096];
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello");
    usleep(50 * 1000);
    send_str(fd, " world");
    read_response(fd, r, sizeof r);
    cr_assert_str_eq(body_of(r), "hello world");

    send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n1;ext=1\r\n \r\n");
    usleep(50 * 1000);
    send_str(fd, "5\r\nworld\r\n0\r\n\r\n");
    read_response(fd, r, sizeof r);
    cr_assert_str_eq(body_of(r), "hello world");
    close(fd);
}

Test(server, expect_continue)
{
    start(1024 * 1024, 0);
    int fd = dial();
    carry_len = 0;
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    char b[256];
    ssize_t n = recv(fd, b, sizeof b - 1, 0);
    cr_assert_gt(n, 0);
    b[n] = '\0';
    cr_assert_str_eq(b, "HTTP/1.1 100 Continue\r\n\r\n");
    send_str(fd, "data");
    char r[4096];
    read_response(fd, r, sizeof r);
    cr_assert(strncmp(r, "HTTP/1.1 200", 12) == 0);
    cr_assert_str_eq(body_of(r), "data");
    close(fd);
}

Test(server, oversize_body_413)
{
    start(16, 0);
    int fd = dial();
    carry_len = 0;
    char r[4096];
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
    read_response(fd, r, sizeof r);
    cr_assert(strncmp(r, "HTTP/1.1 413 ", 13) == 0, "%s", r);
    cr_assert_not_null(strstr(r, "\"status\":413"));
    cr_assert(peer_closed(fd));
    close(fd);

    fd = dial();
    carry_len = 0;
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n");
    read_response(fd, r, sizeof r);
    cr_assert(strncmp(r, "HTTP/1.1 413 ", 13) == 0, "%s", r);
    close(fd);
}

Test(server, malformed_400_and_close)
{
    start(1024 * 1024, 0);
    int fd = dial();
    carry_len = 0;
    send_str(fd, "GET / HTTP/1.1\r\nHost: x\r\nBad Header : y\r\n\r\n");
    char r[4096];
    read_response(fd, r, sizeof r);
    cr_assert(strncmp(r, "HTTP/1.1 400 ", 13) == 0, "%s", r);
    cr_assert_not_null(strstr(r, "Content-Type: application/json\r\n"));
    cr_assert_not_null(strstr(r, "Connection: close\r\n"));
    cr_assert_not_null(strstr(body_of(r), "\"status\":400"));
    cr_assert(peer_closed(fd));
    close(fd);
}

Test(server, header_timeout_closes_silent_conn)
{
    start(1024, 300 * 1000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int fd = dial();
    carry_len = 0;
    send_str(fd, "GET / HTTP/1.1\r\nHost");   /* slowloris: never finishes */
    char r[4096];
    read_response(fd, r, sizeof r);
    cr_assert(strncmp(r, "HTTP/1.1 408 ", 13) == 0, "%s", r);
    cr_assert(peer_closed(fd));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert(el >= 0.25 && el < 2.5, "closed after %.2f s", el);
    close(fd);

    fd = dial();                                /* totally silent */
    carry_len = 0;
    read_response(fd, r, sizeof r);
    cr_assert(strncmp(r, "HTTP/1.1 408 ", 13) == 0, "%s", r);
    close(fd);
}

Test(server, params_query_headers)
{
    start(1024 * 1024, 0);
    int fd = dial();
    carry_len = 0;
    send_str(fd, "GET /cases/a%20b?q=x+y%21&z=1 HTTP/1.1\r\nHost: x\r\nX-Test: val\r\n\r\n");
    char r[4096];
    read_response(fd, r, sizeof r);
    cr_assert_str_eq(body_of(r), "id=a b q=x y! x=val");
    cr_assert_not_null(strstr(r, "X-Route: /cases/{id}\r\n"));
    close(fd);
}

Test(server, not_found_and_method_not_allowed)
{
    start(1024 * 1024, 0);
    int fd = dial();
    carry_len = 0;
    char r[4096];
    send_str(fd, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(fd, r, sizeof r);
    cr_assert(strncmp(r, "HTTP/1.1 404 ", 13) == 0, "%s", r);
    cr_assert_not_null(strstr(r, "application/json"));
    cr_assert_not_null(strstr(body_of(r), "\"status\":404"));
    send_str(fd, "PUT /cases/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    read_response(fd, r, sizeof r);
    cr_assert(strncmp(r, "HTTP/1.1 405 ", 13) == 0, "%s", r);
    cr_assert_not_null(strstr(r, "Allow: GET, HEAD, DELETE\r\n"), "%s", r);
    send_str(fd, "POST /bad HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    read_response(fd, r, sizeof r);
    cr_assert(strncmp(r, "HTTP/1.1 422 ", 13) == 0, "%s", r);
    cr_assert_str_eq(body_of(r), "{\"error\":\"name must be 3 chars\",\"status\":422,\"field\":\"name\"}");
    /* the connection survived all three */
    send_str(fd, "HEAD /hello/h HTTP/1.1\r\nHost: x\r\n\r\n");
    ssize_t n = recv(fd, r, sizeof r - 1, 0);
    cr_assert_gt(n, 0);
    r[n] = '\0';
    cr_assert_not_null(strstr(r, "Content-Length: 14\r\n"), "%s", r);
    cr_assert(strstr(r, "\r\n\r\n")[4] == '\0', "HEAD has no body: %s", r);
    close(fd);
}

static void *slow_client(void *arg)
{
    char *out = arg;
    int fd = dial();
    send_str(fd, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, out + n, 4095 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    out[n] = '\0';
    close(fd);
    return NULL;
}

Test(server, graceful_stop_lets_inflight_finish)
{
    start(1024 * 1024, 0);
    static char resp[4096];
    pthread_t th;
    int idle = dial();                           /* an idle keep-alive conn */
    pthread_create(&th, NULL, slow_client, resp);
    usleep(150 * 1000);                          /* the handler is sleeping */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    http_server_stop(srv, 3000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_join(th, NULL);
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0, "got: %s", resp);
    cr_assert_not_null(strstr(resp, "Connection: close\r\n"), "%s", resp);
    cr_assert_str_eq(body_of(resp), "slow");
    cr_assert(el < 2.0, "stop took %.2f s", el);
    cr_assert(peer_closed(idle));
    close(idle);
    /* the listener is gone */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_neq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    close(fd);
}

Test(server, half_close_answers_then_closes)
{
    start(1024 * 1024, 0);
    int fd = dial();
    carry_len = 0;
    send_str(fd, "GET /hello/x HTTP/1.1\r\nHost: x\r\n\r\n");
    shutdown(fd, SHUT_WR);
    char r[4096];
    read_response(fd, r, sizeof r);
    cr_assert_str_eq(body_of(r), "hello /hello/x");
    cr_assert(peer_closed(fd), "server closes after the peer's EOF");
    close(fd);
}

Test(server, port_in_use_is_an_error)
{
    start(1024 * 1024, 0);
    http_server_opts o;
    memset(&o, 0, sizeof o);
    char err[256], addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    sock_addr_parse(addr, &o.listen, err, sizeof err);
    o.workers = 1;
    o.router = router;
    http_server *s2 = http_server_new(&o, err, sizeof err);
    cr_assert_not_null(s2);
    cr_assert_eq(http_server_start(s2, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "already in use"), "%s", err);
    http_server_free(s2);
}

static double metric_value(const char *text, const char *series)
{
    const char *p = strstr(text, series);
    return p ? strtod(p + strlen(series), NULL) : -1;
}

Test(server, metrics_by_route_method_code)
{
    start(1024 * 1024, 0);
    int fd = dial();
    carry_len = 0;
    char r[4096];
    for (int i = 0; i < 3; i++) {
        send_str(fd, "GET /cases/7 HTTP/1.1\r\nHost: x\r\n\r\n");
        read_response(fd, r, sizeof r);
    }
    send_str(fd, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(fd, r, sizeof r);
    buf m;
    buf_init(&m);
    metrics_render(metrics_default(), &m, false);
    buf_append(&m, "", 1);
    const char *t = buf_head(&m);
    cr_assert_eq(metric_value(t, "hscale_http_requests_total{server=\"test\",route=\"/cases/{id}\",method=\"GET\",code=\"200\"} "), 3, "%s", t);
    cr_assert_eq(metric_value(t, "hscale_http_requests_total{server=\"test\",route=\"unmatched\",method=\"GET\",code=\"404\"} "), 1, "%s", t);
    cr_assert_eq(metric_value(t, "hscale_http_request_duration_seconds_count{server=\"test\",route=\"/cases/{id}\"} "), 3, "%s", t);
    cr_assert_eq(metric_value(t, "hscale_http_connections{server=\"test\"} "), 1, "%s", t);
    buf_free(&m);
    close(fd);
}

Test(server, http10_keepalive_is_announced)
{
    start(1024 * 1024, 0);
    int fd = dial();
    carry_len = 0;
    char r[4096];
    send_str(fd, "GET /hello/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    read_response(fd, r, sizeof r);
    cr_assert_not_null(strstr(r, "Connection: keep-alive\r\n"), "%s", r);
    send_str(fd, "GET /hello/b HTTP/1.0\r\n\r\n");
    read_response(fd, r, sizeof r);
    cr_assert_not_null(strstr(r, "Connection: close\r\n"), "%s", r);
    cr_assert(peer_closed(fd));
    close(fd);
}

typedef struct { int fd; int n; } sender_arg;

static void *pipeline_sender(void *arg)
{
    sender_arg *a = arg;
    static const char req[] = "GET /hello/p HTTP/1.1\r\nHost: x\r\n\r\n";
    char batch[sizeof req * 100];
    for (int i = 0; i < 100; i++)
        memcpy(batch + i * (sizeof req - 1), req, sizeof req - 1);
    for (int i = 0; i < a->n / 100; i++)
        send(a->fd, batch, (sizeof req - 1) * 100, MSG_NOSIGNAL);
    return NULL;
}

Test(server, deep_pipeline_with_backpressure)
{
    /* 8000 pipelined requests make ~1 MB of responses: more than the
     * server buffers before it stops reading, so this exercises the
     * resume-after-flush path. */
    start(1024 * 1024, 0);
    int fd = dial();
    carry_len = 0;
    sender_arg a = { fd, 8000 };
    pthread_t th;
    pthread_create(&th, NULL, pipeline_sender, &a);
    usleep(200 * 1000);            /* let the server back up first */
    char r[4096];
    int got = 0;
    while (got < a.n && read_response(fd, r, sizeof r) > 0) {
        cr_assert_str_eq(body_of(r), "hello /hello/p");
        got++;
    }
    pthread_join(th, NULL);
    cr_assert_eq(got, a.n);
    close(fd);
}
