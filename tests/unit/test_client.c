/* test_client.c -- http_url_parse errors; http_fetch against the server
 * framework (keep-alive reuse seen as one peer port, POST bodies, error
 * statuses) and against canned raw servers (chunked and close-delimited
 * bodies, a stale pooled connection, a silent listener, a closed port);
 * hc_pool get/put, cap, idle timeout and peer-close detection. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/client.h"
#include "http/server.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- URL parsing ---- */

Test(client, url_parse)
{
    http_url u;
    char err[256];
    cr_assert_eq(http_url_parse("http://127.0.0.1:8080/metrics?x=1", &u, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(u.host, "127.0.0.1");
    cr_assert_eq(u.port, 8080);
    cr_assert_str_eq(u.path, "/metrics?x=1");
    cr_assert_eq(sock_addr_port(&u.addr), 8080);
    cr_assert_eq(http_url_parse("http://127.0.0.1", &u, err, sizeof err), 0, "%s", err);
    cr_assert_eq(u.port, 80);
    cr_assert_str_eq(u.path, "/");
    cr_assert_eq(http_url_parse("http://127.0.0.1:81?q", &u, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(u.path, "/?q");
    cr_assert_eq(http_url_parse("http://[::1]:9000/a", &u, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(u.host, "::1");

    cr_assert_eq(http_url_parse("https://127.0.0.1/", &u, err, sizeof err), 0, "%s", err);
    cr_assert(u.tls);
    cr_assert_eq(u.port, 443);
    cr_assert_eq(http_url_parse("https://127.0.0.1:8443/x", &u, err, sizeof err), 0, "%s", err);
    cr_assert_eq(u.port, 8443);
    cr_assert_eq(http_url_parse("http://127.0.0.1/", &u, err, sizeof err), 0, "%s", err);
    cr_assert_not(u.tls);
    cr_assert_eq(http_url_parse("ftp://x/", &u, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "expected http[s]://"), "%s", err);
    cr_assert_eq(http_url_parse("http://:80/", &u, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "missing host"), "%s", err);
    cr_assert_eq(http_url_parse("http://h:99999/", &u, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "port"), "%s", err);
    cr_assert_eq(http_url_parse("http://h:8x/", &u, err, sizeof err), -1);
    cr_assert_eq(http_url_parse("http://127.0.0.1/a b", &u, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "whitespace"), "%s", err);
}

/* ---- against the server framework ---- */

static void h_peer(http_ctx *c, void *arg)
{
    char b[64];
    int n = snprintf(b, sizeof b, "%d", sock_addr_port(http_ctx_peer(c)));
    http_reply(c, 200, "text/plain", b, (size_t)n);
}

static void h_echo(http_ctx *c, void *arg)
{
    size_t n;
    const char *b = http_ctx_body(c, &n);
    const char *t = http_ctx_header(c, "x-token");
    http_ctx_add_header(c, "X-Token-Seen", t ? t : "none");
    http_reply(c, 201, "application/octet-stream", b, n);
}

static http_router *router;
static http_server *srv;
static char base[64];

static void start_server(void)
{
    router = http_router_new();
    http_route(router, "GET", "/peer", h_peer, NULL);
    http_route(router, "POST", "/echo", h_echo, NULL);
    http_server_opts o;
    memset(&o, 0, sizeof o);
    o.name = "clienttest";
    char err[256];
    sock_addr_parse("127.0.0.1:0", &o.listen, err, sizeof err);
    o.workers = 1;
    o.router = router;
    srv = http_server_new(&o, err, sizeof err);
    cr_assert_not_null(srv, "%s", err);
    cr_assert_eq(http_server_start(srv, err, sizeof err), 0, "%s", err);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", http_server_port(srv));
}

static void stop_server(void)
{
    http_fetch_pool_clear();
    if (srv)
        http_server_free(srv);
    srv = NULL;
    if (router)
        http_router_free(router);
    router = NULL;
}

TestSuite(fetch, .init = start_server, .fini = stop_server, .timeout = 20);

Test(fetch, keepalive_reuse)
{
    char url[128], err[256], first[32] = "";
    snprintf(url, sizeof url, "%s/peer", base);
    http_result r;
    http_result_init(&r);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(http_fetch("GET", url, NULL, NULL, 0, 2000, &r, err, sizeof err), 0, "%s", err);
        cr_assert_eq(r.status, 200);
        buf_append(&r.body, "", 1);
        if (i == 0)
            snprintf(first, sizeof first, "%s", buf_head(&r.body));
        else
            cr_assert_str_eq(buf_head(&r.body), first, "request %d used a new connection", i);
    }
    char ct[64];
    cr_assert(http_result_header(&r, "content-type", ct, sizeof ct));
    cr_assert_str_eq(ct, "text/plain");
    cr_assert_not(http_result_header(&r, "x-missing", ct, sizeof ct));
    http_fetch_pool_clear();
    cr_assert_eq(http_fetch("GET", url, NULL, NULL, 0, 2000, &r, err, sizeof err), 0, "%s", err);
    buf_append(&r.body, "", 1);
    cr_assert_str_neq(buf_head(&r.body), first, "pool clear forces a new connection");
    http_result_free(&r);
}

Test(fetch, post_body_and_headers)
{
    char url[128], err[256], v[64];
    snprintf(url, sizeof url, "%s/echo", base);
    http_result r;
    http_result_init(&r);
    cr_assert_eq(http_fetch("POST", url, "X-Token: abc\r\n", "{\"a\":1}", 7, 2000, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.status, 201);
    cr_assert_eq(r.body.len, 7);
    cr_assert(memcmp(buf_head(&r.body), "{\"a\":1}", 7) == 0);
    cr_assert(http_result_header(&r, "X-Token-Seen", v, sizeof v));
    cr_assert_str_eq(v, "abc");
    snprintf(url, sizeof url, "%s/nothing", base);
    cr_assert_eq(http_fetch("GET", url, NULL, NULL, 0, 2000, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.status, 404);
    http_result_free(&r);
}

/* ---- canned raw servers ---- */

typedef struct canned {
    int         lfd;
    int         port;
    const char *resp[4];   /* per request, in order; NULL: close without answering */
    int         nresp;
    bool        close_after_each;
    int         accepted;
    pthread_t   th;
} canned;

static int read_request(int fd)
{
    char b[4096];
    size_t n = 0;
    while (!memmem(b, n, "\r\n\r\n", 4)) {
        ssize_t r = recv(fd, b + n, sizeof b - n, 0);
        if (r <= 0)
            return -1;
        n += (size_t)r;
    }
    return 0;
}

static void *canned_main(void *arg)
{
    canned *cs = arg;
    int i = 0;
    while (i < cs->nresp) {
        int fd = accept(cs->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        cs->accepted++;
        while (i < cs->nresp && read_request(fd) == 0) {
            const char *r = cs->resp[i++];
            if (!r)
                break;
            send(fd, r, strlen(r), MSG_NOSIGNAL);
            if (cs->close_after_each)
                break;
        }
        close(fd);
    }
    return NULL;
}

static void canned_start(canned *cs, bool run)
{
    cs->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(cs->lfd, (struct sockaddr *)&a, sizeof a), 0);
    listen(cs->lfd, 16);
    socklen_t l = sizeof a;
    getsockname(cs->lfd, (struct sockaddr *)&a, &l);
    cs->port = ntohs(a.sin_port);
    if (run)
        pthread_create(&cs->th, NULL, canned_main, cs);
}

TestSuite(raw, .fini = http_fetch_pool_clear, .timeout = 20);

Test(raw, chunked_and_close_delimited)
{
    canned cs = { .nresp = 2, .close_after_each = true };
    cs.resp[0] = "HTTP/1.1 100 Continue\r\n\r\n"
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
                 "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    cs.resp[1] = "HTTP/1.0 200 OK\r\n\r\nuntil the end";
    canned_start(&cs, true);
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", cs.port);
    http_result r;
    http_result_init(&r);
    cr_assert_eq(http_fetch("GET", url, NULL, NULL, 0, 2000, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body.len, 11);
    cr_assert(memcmp(buf_head(&r.body), "hello world", 11) == 0);
    cr_assert_eq(http_fetch("GET", url, NULL, NULL, 0, 2000, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.body.len, 13);
    cr_assert(memcmp(buf_head(&r.body), "until the end", 13) == 0);
    pthread_join(cs.th, NULL);
    cr_assert_eq(cs.accepted, 2);
    close(cs.lfd);
    http_result_free(&r);
}

Test(raw, stale_pooled_connection_is_retried)
{
    /* Connection 1 answers once, then dies on the second request without a
     * byte; the client must resend on a fresh connection. */
    canned cs = { .nresp = 3 };
    cs.resp[0] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
    cs.resp[1] = NULL;
    cs.resp[2] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb";
    canned_start(&cs, true);
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", cs.port);
    http_result r;
    http_result_init(&r);
    cr_assert_eq(http_fetch("GET", url, NULL, NULL, 0, 2000, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(http_fetch("GET", url, NULL, NULL, 0, 2000, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.body.len, 1);
    cr_assert_eq(buf_head(&r.body)[0], 'b');
    pthread_join(cs.th, NULL);
    cr_assert_eq(cs.accepted, 2);
    close(cs.lfd);
    http_result_free(&r);
}

Test(raw, timeout_against_silent_listener)
{
    canned cs = { 0 };
    canned_start(&cs, false);   /* listens, never accepts or answers */
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", cs.port);
    http_result r;
    http_result_init(&r);
    double t0 = now_s();
    cr_assert_eq(http_fetch("GET", url, NULL, NULL, 0, 300, &r, err, sizeof err), -1);
    double el = now_s() - t0;
    cr_assert_not_null(strstr(err, "timed out"), "%s", err);
    cr_assert(el >= 0.25 && el < 1.5, "took %.2f s", el);
    close(cs.lfd);
    http_result_free(&r);
}

Test(raw, connect_refused_and_malformed)
{
    int port = sock_free_port();
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", port);
    http_result r;
    http_result_init(&r);
    cr_assert_eq(http_fetch("GET", url, NULL, NULL, 0, 1000, &r, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "refused"), "%s", err);
    cr_assert_not_null(strstr(err, "127.0.0.1"), "%s", err);

    canned cs = { .nresp = 1, .close_after_each = true };
    cs.resp[0] = "HTTX/1.1 200 OK\r\n\r\n";
    canned_start(&cs, true);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", cs.port);
    cr_assert_eq(http_fetch("GET", url, NULL, NULL, 0, 1000, &r, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "malformed response"), "%s", err);
    pthread_join(cs.th, NULL);
    close(cs.lfd);
    http_result_free(&r);
}

/* ---- hc_pool ---- */

static bool fd_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

Test(hc_pool, get_put_cap_drop)
{
    ev_loop *loop = ev_loop_new();
    hc_pool *p = hc_pool_new(loop, 2, 0);
    int k1, k2, sp[3][2];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp[i]), 0);
    cr_assert_eq(hc_pool_get(p, &k1), -1);
    hc_pool_put(p, &k1, sp[0][0]);
    hc_pool_put(p, &k1, sp[1][0]);
    hc_pool_put(p, &k1, sp[2][0]);               /* over the cap: closed */
    cr_assert_eq(hc_pool_idle_count(p, &k1), 2);
    cr_assert_not(fd_open(sp[2][0]));
    cr_assert_eq(hc_pool_idle_count(p, &k2), 0);
    cr_assert_eq(hc_pool_get(p, &k2), -1);
    cr_assert_eq(hc_pool_get(p, &k1), sp[1][0], "LIFO: the warmest first");
    cr_assert_eq(hc_pool_idle_count(p, &k1), 1);
    hc_pool_put(p, &k2, sp[1][0]);
    hc_pool_drop_key(p, &k1);
    cr_assert_eq(hc_pool_idle_count(p, &k1), 0);
    cr_assert_not(fd_open(sp[0][0]));
    cr_assert_eq(hc_pool_idle_count(p, &k2), 1);
    hc_pool_free(p);                              /* closes k2's socket */
    cr_assert_not(fd_open(sp[1][0]));
    for (int i = 0; i < 3; i++)
        close(sp[i][1]);
    ev_loop_free(loop);
}

static int closed_fd = -1;
static void *closed_data;
static void record_close(int fd, void *data)
{
    closed_fd = fd;
    closed_data = data;
    close(fd);
}

Test(hc_pool, data_travels_with_the_fd_and_the_closer_closes_it)
{
    ev_loop *loop = ev_loop_new();
    hc_pool *p = hc_pool_new(loop, 1, 0);
    hc_pool_set_closer(p, record_close);
    int k, tag1, tag2, sp[2][2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp[i]), 0);
    hc_pool_put_data(p, &k, sp[0][0], &tag1);
    void *d = NULL;
    cr_assert_eq(hc_pool_get_data(p, &k, &d), sp[0][0]);
    cr_assert_eq(d, &tag1);
    hc_pool_put_data(p, &k, sp[0][0], &tag1);
    hc_pool_put_data(p, &k, sp[1][0], &tag2);     /* over the cap of 1: the closer's */
    cr_assert_eq(closed_fd, sp[1][0]);
    cr_assert_eq(closed_data, &tag2);
    cr_assert_eq(hc_pool_get(p, &k), -1, "a plain caller never gets a connection with state");
    cr_assert_eq(closed_fd, sp[0][0]);
    cr_assert_eq(closed_data, &tag1);
    cr_assert_eq(hc_pool_idle_count(p, &k), 0);
    hc_pool_put(p, &k, sp[1][1]);                 /* plain: closed with close(2) at free */
    closed_fd = -1;
    hc_pool_free(p);
    cr_assert_eq(closed_fd, -1);
    cr_assert_not(fd_open(sp[1][1]));
    close(sp[0][1]);
    ev_loop_free(loop);
}

Test(hc_pool, many_keys_rehash)
{
    ev_loop *loop = ev_loop_new();
    hc_pool *p = hc_pool_new(loop, 4, 0);
    static char keys[100];
    int fds[100][2];
    for (int i = 0; i < 100; i++) {
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds[i]);
        hc_pool_put(p, &keys[i], fds[i][0]);
    }
    for (int i = 0; i < 100; i++)
        cr_assert_eq(hc_pool_get(p, &keys[i]), fds[i][0]);
    for (int i = 0; i < 100; i++) {
        close(fds[i][0]);
        close(fds[i][1]);
    }
    hc_pool_free(p);
    ev_loop_free(loop);
}

Test(hc_pool, idle_timeout_and_peer_close)
{
    ev_loop *loop = ev_loop_new();
    hc_pool *p = hc_pool_new(loop, 8, 100 * 1000);
    int key, a[2], b[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a);
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b);
    hc_pool_put(p, &key, a[0]);
    hc_pool_put(p, &key, b[0]);
    close(b[1]);                                  /* the peer hangs up */
    ev_run_once(loop, 50);
    cr_assert_eq(hc_pool_idle_count(p, &key), 1, "peer close noticed");
    cr_assert_not(fd_open(b[0]));
    double t0 = now_s();
    while (hc_pool_idle_count(p, &key) && now_s() - t0 < 2)
        ev_run_once(loop, 50);
    cr_assert_eq(hc_pool_idle_count(p, &key), 0, "idle timeout closed it");
    cr_assert(now_s() - t0 >= 0.03);
    cr_assert_not(fd_open(a[0]));
    close(a[1]);
    hc_pool_free(p);
    ev_loop_free(loop);
}
