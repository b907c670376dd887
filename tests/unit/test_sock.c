/* test_sock.c -- address parsing (good and bad, with messages), listen +
 * connect + accept on loopback, SO_REUSEPORT, connect timeouts. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/sock.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static const struct { const char *in, *formatted; } good[] = {
    { "127.0.0.1:8080",  "127.0.0.1:8080" },
    { ":8080",           "0.0.0.0:8080" },
    { "*:81",            "0.0.0.0:81" },
    { "0.0.0.0:0",       "0.0.0.0:0" },
    { "localhost:8080",  "127.0.0.1:8080" },
    { "[::1]:80",        "[::1]:80" },
    { "[::]:65535",      "[::]:65535" },
    { "10.1.2.3:1",      "10.1.2.3:1" },
};

static const struct { const char *in, *msg; } bad[] = {
    { "127.0.0.1",          "missing port in '127.0.0.1'" },
    { "localhost",          "missing port in 'localhost'" },
    { "127.0.0.1:",         "missing port in '127.0.0.1:'" },
    { "127.0.0.1:65536",    "port out of range in '127.0.0.1:65536'" },
    { "127.0.0.1:99999999999", "port out of range" },
    { "127.0.0.1:8o",       "invalid port '8o' in '127.0.0.1:8o'" },
    { "127.0.0.1:-1",       "invalid port '-1'" },
    { "[::1]",              "missing port in '[::1]'" },
    { "[::1:80",            "missing ']' in '[::1:80'" },
    { "[zz]:80",            "bad IPv6 address 'zz'" },
    { "::1:80",             "IPv6 address needs brackets" },
    { "",                   "empty address" },
    { "no-such-host.invalid:80", "cannot resolve host 'no-such-host.invalid'" },
};

Test(sock, parse_good)
{
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        sock_addr a;
        char err[256] = "", out[128];
        cr_assert_eq(sock_addr_parse(good[i].in, &a, err, sizeof err), 0, "%s: %s", good[i].in, err);
        cr_assert_str_eq(sock_addr_format(&a, out, sizeof out), good[i].formatted);
        /* Round trip. */
        sock_addr b;
        cr_assert_eq(sock_addr_parse(out, &b, err, sizeof err), 0, "%s: %s", out, err);
        cr_assert(sock_addr_equal(&a, &b), "%s", out);
    }
    sock_addr a, b;
    char err[128];
    sock_addr_parse("127.0.0.1:80", &a, err, sizeof err);
    sock_addr_parse("127.0.0.1:81", &b, err, sizeof err);
    cr_assert_not(sock_addr_equal(&a, &b));
    cr_assert_eq(sock_addr_port(&b), 81);
}

Test(sock, parse_bad_with_messages)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sock_addr a;
        char err[256] = "";
        cr_assert_eq(sock_addr_parse(bad[i].in, &a, err, sizeof err), -1, "accepted '%s'", bad[i].in);
        cr_assert(strstr(err, bad[i].msg), "'%s': got \"%s\", want \"%s\"", bad[i].in, err, bad[i].msg);
    }
}

static int is_nonblock_cloexec(int fd)
{
    return (fcntl(fd, F_GETFL) & O_NONBLOCK) && (fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

Test(sock, listen_connect_accept_loopback)
{
    sock_addr a, bound, peer;
    char err[256];
    cr_assert_eq(sock_addr_parse("127.0.0.1:0", &a, err, sizeof err), 0);
    int lfd = sock_listen(&a, NULL, err, sizeof err);
    cr_assert_geq(lfd, 0, "%s", err);
    cr_assert(is_nonblock_cloexec(lfd));
    cr_assert_eq(sock_local_addr(lfd, &bound), 0);
    cr_assert_gt(sock_addr_port(&bound), 0);

    cr_assert_eq(sock_accept(lfd, &peer), -1);
    cr_assert_eq(errno, EAGAIN);

    int cfd = sock_connect(&bound);
    cr_assert_geq(cfd, 0);
    cr_assert(is_nonblock_cloexec(cfd));
    struct pollfd p = { .fd = cfd, .events = POLLOUT };
    cr_assert_eq(poll(&p, 1, 1000), 1);
    cr_assert_eq(sock_connect_result(cfd), 0);

    struct pollfd lp = { .fd = lfd, .events = POLLIN };
    cr_assert_eq(poll(&lp, 1, 1000), 1);
    int sfd = sock_accept(lfd, &peer);
    cr_assert_geq(sfd, 0);
    cr_assert(is_nonblock_cloexec(sfd));
    int nd = 0;
    socklen_t l = sizeof nd;
    getsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &nd, &l);
    cr_assert(nd);
    char s[64];
    cr_assert_eq(strncmp(sock_addr_format(&peer, s, sizeof s), "127.0.0.1:", 10), 0);

    cr_assert_eq(write(cfd, "hi", 2), 2);
    char b[4];
    struct pollfd sp = { .fd = sfd, .events = POLLIN };
    poll(&sp, 1, 1000);
    cr_assert_eq(read(sfd, b, sizeof b), 2);

    /* A second bind to the same port without reuseport fails clearly. */
    int l2 = sock_listen(&bound, NULL, err, sizeof err);
    cr_assert_eq(l2, -1);
    cr_assert(strstr(err, "bind 127.0.0.1:"), "%s", err);
    cr_assert(strstr(err, "in use"), "%s", err);
    close(sfd); close(cfd); close(lfd);
}

/* Listeners carry TCP_NODELAY, so a hot accept loop need not set it on
 * each connection (Linux copies it); sock_listener_info reads both that
 * and TCP_DEFER_ACCEPT back, which decides whether a TLS handshake may
 * start at accept. */
Test(sock, accepted_sockets_inherit_nodelay_and_defer_is_reported)
{
    sock_addr a, bound, peer;
    char err[256];
    cr_assert_eq(sock_addr_parse("127.0.0.1:0", &a, err, sizeof err), 0);
    sock_listen_opts deferred = { .defer_accept = true };
    int plain = sock_listen(&a, NULL, err, sizeof err);
    int lazy = sock_listen(&a, &deferred, err, sizeof err);
    cr_assert(plain >= 0 && lazy >= 0, "%s", err);
    bool nd, df;
    sock_listener_info(plain, &nd, &df);
    cr_assert(nd && !df);
    sock_listener_info(lazy, &nd, &df);
    cr_assert(nd && df);

    cr_assert_eq(sock_local_addr(plain, &bound), 0);
    int cfd = sock_connect_blocking(&bound, 1000);
    cr_assert_geq(cfd, 0);
    struct pollfd lp = { .fd = plain, .events = POLLIN };
    cr_assert_eq(poll(&lp, 1, 1000), 1);
    int sfd = sock_accept_ex(plain, &peer, false);
    cr_assert_geq(sfd, 0);
    int v = 0;
    socklen_t l = sizeof v;
    cr_assert_eq(getsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &v, &l), 0);
    cr_assert(v, "the accepted socket did not inherit TCP_NODELAY");

    /* Deferred: no connection to accept until the client's first bytes. */
    cr_assert_eq(sock_local_addr(lazy, &bound), 0);
    int c2 = sock_connect_blocking(&bound, 1000);
    cr_assert_geq(c2, 0);
    struct pollfd dp = { .fd = lazy, .events = POLLIN };
    cr_assert_eq(poll(&dp, 1, 200), 0, "accepted before any byte came");
    cr_assert_eq(write(c2, "x", 1), 1);
    cr_assert_eq(poll(&dp, 1, 1000), 1);
    int s2 = sock_accept_ex(lazy, &peer, false);
    cr_assert_geq(s2, 0);
    char b;
    cr_assert_eq(read(s2, &b, 1), 1, "the first byte is there at accept");
    close(s2); close(c2); close(sfd); close(cfd); close(lazy); close(plain);
}

Test(sock, reuseport_two_listeners_same_port)
{
    int port = sock_free_port();
    cr_assert_gt(port, 0);
    char text[64], err[256];
    snprintf(text, sizeof text, "127.0.0.1:%d", port);
    sock_addr a;
    cr_assert_eq(sock_addr_parse(text, &a, err, sizeof err), 0);
    sock_listen_opts o = { .reuseport = true, .backlog = 256 };
    int l1 = sock_listen(&a, &o, err, sizeof err);
    cr_assert_geq(l1, 0, "%s", err);
    int l2 = sock_listen(&a, &o, err, sizeof err);
    cr_assert_geq(l2, 0, "%s", err);
    /* Connections get spread over both; 64 connects should hit each. */
    int hit1 = 0, hit2 = 0, cfds[64];
    for (int i = 0; i < 64; i++) {
        cfds[i] = sock_connect_blocking(&a, 1000);
        cr_assert_geq(cfds[i], 0, "connect %d: %s", i, strerror(errno));
        cr_assert_eq(fcntl(cfds[i], F_GETFL) & O_NONBLOCK, 0, "blocking fd expected");
    }
    int fd;
    while ((fd = sock_accept(l1, NULL)) >= 0) { hit1++; close(fd); }
    while ((fd = sock_accept(l2, NULL)) >= 0) { hit2++; close(fd); }
    cr_assert_eq(hit1 + hit2, 64);
    cr_assert_gt(hit1, 0);
    cr_assert_gt(hit2, 0);
    for (int i = 0; i < 64; i++)
        close(cfds[i]);
    close(l1); close(l2);
}

Test(sock, connect_refused_and_ipv6)
{
    int port = sock_free_port();
    char text[64], err[256];
    snprintf(text, sizeof text, "127.0.0.1:%d", port);
    sock_addr a;
    sock_addr_parse(text, &a, err, sizeof err);
    errno = 0;
    cr_assert_eq(sock_connect_blocking(&a, 1000), -1);
    cr_assert_eq(errno, ECONNREFUSED);

    sock_addr v6, bound;
    cr_assert_eq(sock_addr_parse("[::1]:0", &v6, err, sizeof err), 0);
    int lfd = sock_listen(&v6, NULL, err, sizeof err);
    if (lfd < 0)
        cr_skip_test("no IPv6 loopback: %s", err);
    sock_local_addr(lfd, &bound);
    int cfd = sock_connect_blocking(&bound, 1000);
    cr_assert_geq(cfd, 0);
    close(cfd);
    close(lfd);
}

Test(sock, connect_timeout)
{
    /* Linux drops SYNs once a listener's accept queue is full, so with a
     * backlog of 1 and nobody accepting, a later connect must time out. */
    sock_addr a, bound;
    char err[128];
    sock_addr_parse("127.0.0.1:0", &a, err, sizeof err);
    sock_listen_opts o = { .backlog = 1 };
    int lfd = sock_listen(&a, &o, err, sizeof err);
    cr_assert_geq(lfd, 0, "%s", err);
    sock_local_addr(lfd, &bound);
    int fds[16], n = 0, timed_out = 0;
    for (; n < 16; n++) {
        fds[n] = sock_connect_blocking(&bound, 100);
        if (fds[n] < 0) {
            cr_assert_eq(errno, ETIMEDOUT, "errno %d", errno);
            timed_out = 1;
            break;
        }
    }
    cr_assert(timed_out, "no connect timed out");
    for (int i = 0; i < n; i++)
        close(fds[i]);
    close(lfd);
}
