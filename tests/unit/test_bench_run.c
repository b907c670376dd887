/* test_bench_run.c -- the workers end to end against an in-process loopback
 * server: closed and open model counts, keep-alive vs Connection: close,
 * connection refused, and the open-model schedule holding its rate. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "bench/bench.h"

#define MAXC 32

static int lfd, port;
static volatile int stop_srv;
static pthread_t srv_th;
static const char *reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* Answers every request head it sees; closes after one when `reply` says so. */
static void *server(void *arg)
{
    (void)arg;
    struct pollfd pf[MAXC + 1];
    int n = 1;
    pf[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
    char buf[8192];
    while (!stop_srv) {
        if (poll(pf, (nfds_t)n, 20) <= 0)
            continue;
        if ((pf[0].revents & POLLIN) && n <= MAXC) {
            int c = accept(lfd, NULL, NULL);
            if (c >= 0)
                pf[n++] = (struct pollfd){ .fd = c, .events = POLLIN };
        }
        for (int i = 1; i < n; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = read(pf[i].fd, buf, sizeof buf);
            int heads = 0;
            for (ssize_t k = 3; k < r; k++)
                heads += !memcmp(buf + k - 3, "\r\n\r\n", 4);
            bool closing = strstr(reply, "close") != NULL;
            for (int h = 0; h < heads; h++)
                if (write(pf[i].fd, reply, strlen(reply)) < 0)
                    break;
            if (r <= 0 || closing) {
                close(pf[i].fd);
                pf[i--] = pf[--n];
            }
        }
    }
    for (int i = 0; i < n; i++)
        close(pf[i].fd);
    return NULL;
}

static void start_server(void)
{
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(lfd, 128), 0);
    socklen_t l = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &l);
    port = ntohs(a.sin_port);
    stop_srv = 0;
    pthread_create(&srv_th, NULL, server, NULL);
}

static void stop_server(void)
{
    stop_srv = 1;
    pthread_join(srv_th, NULL);
}

static bench_plan *plan(int p, bool open, double rate_or_conns, uint64_t dur_us, uint32_t conns)
{
    static char err[BENCH_ERRLEN];
    bench_plan *pl = calloc(1, sizeof *pl);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", p);
    cr_assert_eq(sock_addr_parse(addr, &pl->addr, err, sizeof err), 0, "%s", err);
    pl->host_header = strdup(addr);
    cr_assert_eq(bench_scenario_single(&pl->sc, "GET", "/x?n={seq}", NULL, 0, NULL, err, sizeof err), 0);
    cr_assert_eq(bench_scenario_prepare(&pl->sc, pl->host_header, err, sizeof err), 0);
    pl->open_model = open;
    pl->stages[0] = (bench_stage){0, rate_or_conns};
    pl->stages[1] = (bench_stage){dur_us, rate_or_conns};
    pl->nstages = 2;
    pl->conns = conns;
    pl->threads = 2;
    pl->duration_us = dur_us;
    pl->timeout_us = 2000000;
    pl->quiet = true;
    return pl;
}

static void plan_free(bench_plan *pl)
{
    bench_scenario_free(&pl->sc);
    free(pl->host_header);
    free(pl);
}

Test(bench_run, closed_model_keep_alive)
{
    reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    start_server();
    bench_plan *pl = plan(port, false, 4, 300000, 4);
    bench_result res;
    char err[BENCH_ERRLEN];
    cr_assert_eq(bench_run(pl, NULL, &res, err, sizeof err), 0, "%s", err);
    stop_server();
    cr_assert_gt(res.total.count, 100);
    cr_assert_eq(res.total.status[200], res.total.count);
    cr_assert_eq(res.total.failures, 0);
    cr_assert_eq(res.total.lat.count, res.total.count);
    cr_assert_float_eq(res.elapsed_s, 0.3, 0.05);
    cr_assert_eq(res.conn.connects, 4);   /* keep-alive: each connection opened once */
    bench_result_free(&res);
    plan_free(pl);
}

Test(bench_run, connection_close_reconnects)
{
    reply = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
    start_server();
    bench_plan *pl = plan(port, false, 2, 300000, 2);
    bench_result res;
    char err[BENCH_ERRLEN];
    cr_assert_eq(bench_run(pl, NULL, &res, err, sizeof err), 0, "%s", err);
    stop_server();
    cr_assert_gt(res.total.count, 20);
    cr_assert_eq(res.total.failures, 0, "errors: reset %llu", (unsigned long long)res.total.errors[BENCH_ERR_RESET]);
    bench_result_free(&res);
    plan_free(pl);
}

Test(bench_run, new_conn_opens_one_connection_per_request)
{
    reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";   /* the server would keep it */
    start_server();
    bench_plan *pl = plan(port, false, 2, 300000, 2);
    pl->new_conn = true;
    bench_result res;
    char err[BENCH_ERRLEN];
    cr_assert_eq(bench_run(pl, NULL, &res, err, sizeof err), 0, "%s", err);
    stop_server();
    cr_assert_gt(res.total.count, 5);   /* a loaded CI machine connects slowly */
    cr_assert_eq(res.total.failures, 0);
    /* one per request, plus at most one per connection open at the end */
    cr_assert(res.conn.connects >= res.total.count && res.conn.connects <= res.total.count + 2,
              "connects %llu requests %llu", (unsigned long long)res.conn.connects,
              (unsigned long long)res.total.count);
    cr_assert_eq(res.conn.hs_full + res.conn.hs_resumed + res.conn.hs_failed, 0);   /* plain */
    bench_result_free(&res);
    plan_free(pl);
}

Test(bench_run, open_model_holds_the_rate)
{
    reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    start_server();
    bench_plan *pl = plan(port, true, 1000, 500000, 8);
    bench_result res;
    char err[BENCH_ERRLEN];
    cr_assert_eq(bench_run(pl, NULL, &res, err, sizeof err), 0, "%s", err);
    stop_server();
    /* 500 arrivals are due; a few may be in flight at the end. */
    cr_assert(res.total.count + res.behind >= 490 && res.total.count <= 500,
              "count %llu behind %llu", (unsigned long long)res.total.count,
              (unsigned long long)res.behind);
    cr_assert_eq(res.total.failures, 0);
    bench_result_free(&res);
    plan_free(pl);
}

Test(bench_run, refused_connections_are_errors)
{
    start_server();   /* find a port, then close it so nothing listens */
    int p = port;
    stop_server();
    close(lfd);
    bench_plan *pl = plan(p, false, 2, 200000, 2);
    bench_result res;
    char err[BENCH_ERRLEN];
    cr_assert_eq(bench_run(pl, NULL, &res, err, sizeof err), 0, "%s", err);
    cr_assert_gt(res.total.errors[BENCH_ERR_CONNECT], 0);
    cr_assert_eq(res.total.lat.count, 0);
    /* back-off keeps a refused port from spinning: ~10 ms per retry */
    cr_assert_lt(res.total.errors[BENCH_ERR_CONNECT], 200);
    bench_result_free(&res);
    plan_free(pl);
}
