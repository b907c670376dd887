/* sock.c -- address parsing, listeners, accept and non-blocking connect.
 *
 * Every fd made here is born SOCK_NONBLOCK|SOCK_CLOEXEC (no window where a
 * forked child inherits it), and every TCP stream gets TCP_NODELAY: hscale
 * writes whole requests/responses, so Nagle only ever adds latency.
 * Name resolution happens in sock_addr_parse() only, at configuration time;
 * nothing on a request path blocks on DNS. */
#include "core/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a, b);
    return -1;
}

static int parse_port(const char *s, int *out)
{
    if (!*s)
        return -1;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > 65535)
            return -2;
    }
    *out = (int)v;
    return 0;
}

int sock_addr_parse(const char *text, sock_addr *out, char *err, size_t errlen)
{
    if (!text || !*text)
        return fail(err, errlen, "empty address%s%s, expected host:port", "", "");
    char host[256];
    const char *port_s;
    memset(out, 0, sizeof *out);

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close)
            return fail(err, errlen, "missing ']' in '%s'%s", text, "");
        if (close[1] != ':')
            return fail(err, errlen, "missing port in '%s'%s", text, "");
        size_t hl = (size_t)(close - text - 1);
        if (hl == 0 || hl >= sizeof host)
            return fail(err, errlen, "bad IPv6 address in '%s'%s", text, "");
        memcpy(host, text + 1, hl);
        host[hl] = '\0';
        port_s = close + 2;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return fail(err, errlen, "bad IPv6 address '%s' in '%s'", host, text);
        s6->sin6_family = AF_INET6;
        out->len = sizeof *s6;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon)
            return fail(err, errlen, "missing port in '%s'%s", text, "");
        if (memchr(text, ':', (size_t)(colon - text)))
            return fail(err, errlen, "IPv6 address needs brackets in '%s' (e.g. [::1]:80)%s", text, "");
        size_t hl = (size_t)(colon - text);
        if (hl >= sizeof host)
            return fail(err, errlen, "host name too long in '%s'%s", text, "");
        memcpy(host, text, hl);
        host[hl] = '\0';
        port_s = colon + 1;
        struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
        if (hl == 0 || strcmp(host, "*") == 0) {
            s4->sin_family = AF_INET;
            s4->sin_addr.s_addr = htonl(INADDR_ANY);
            out->len = sizeof *s4;
        } else if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            out->len = sizeof *s4;
        } else {
            struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
            struct addrinfo *res = NULL;
            int rc = getaddrinfo(host, NULL, &hints, &res);
            if (rc != 0 || !res)
                return fail(err, errlen, "cannot resolve host '%s': %s", host,
                            rc ? gai_strerror(rc) : "no address");
            /* Prefer IPv4: "localhost" should mean 127.0.0.1, which is
             * what services listening on ":port" accept. */
            const struct addrinfo *pick = res;
            for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
                if (ai->ai_family == AF_INET) { pick = ai; break; }
            memcpy(&out->ss, pick->ai_addr, pick->ai_addrlen);
            out->len = pick->ai_addrlen;
            freeaddrinfo(res);
        }
    }

    int port;
    int pr = parse_port(port_s, &port);
    if (pr == -2)
        return fail(err, errlen, "port out of range in '%s' (0-65535)%s", text, "");
    if (pr < 0)
        return fail(err, errlen, *port_s ? "invalid port '%s' in '%s'" : "missing port%s in '%s'",
                    port_s, text);
    if (out->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)&out->ss)->sin_port = htons((uint16_t)port);
    return 0;
}

int sock_addr_port(const sock_addr *a)
{
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return -1;
}

char *sock_addr_format(const sock_addr *a, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (a->ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, host, sizeof host);
        snprintf(out, outlen, "[%s]:%d", host, sock_addr_port(a));
    } else if (a->ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, host, sizeof host);
        snprintf(out, outlen, "%s:%d", host, sock_addr_port(a));
    } else {
        snprintf(out, outlen, "(unknown family %d)", (int)a->ss.ss_family);
    }
    return out;
}

bool sock_addr_equal(const sock_addr *a, const sock_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family || sock_addr_port(a) != sock_addr_port(b))
        return false;
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)&b->ss)->sin_addr.s_addr;
    if (a->ss.ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                      &((const struct sockaddr_in6 *)&b->ss)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

int sock_set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    int want = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    return want == fl ? 0 : fcntl(fd, F_SETFL, want);
}

int sock_set_nodelay(int fd)
{
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int sock_listen(const sock_addr *a, const sock_listen_opts *o, char *err, size_t errlen)
{
    char name[INET6_ADDRSTRLEN + 16];
    sock_addr_format(a, name, sizeof name);
    int backlog = o && o->backlog > 0 ? o->backlog : 4096;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(err, errlen, "socket for %s: %s", name, strerror(errno));
    int one = 1;
    const char *what = NULL;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        what = "SO_REUSEADDR";
    else if (o && o->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        what = "SO_REUSEPORT";
    else if (o && o->defer_accept &&
             setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof one) < 0)
        what = "TCP_DEFER_ACCEPT";
    else if ((a->ss.ss_family == AF_INET || a->ss.ss_family == AF_INET6) && sock_set_nodelay(fd) < 0)
        what = "TCP_NODELAY";
    else if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        what = "bind";
    else if (listen(fd, backlog) < 0)
        what = "listen";
    if (what) {
        int e = errno;
        close(fd);
        errno = e;
        if (err && errlen)
            snprintf(err, errlen, "%s %s: %s", what, name, strerror(e));
        return -1;
    }
    return fd;
}

int sock_local_addr(int fd, sock_addr *out)
{
    memset(out, 0, sizeof *out);
    out->len = sizeof out->ss;
    return getsockname(fd, (struct sockaddr *)&out->ss, &out->len);
}

int sock_accept(int lfd, sock_addr *peer)
{
    return sock_accept_ex(lfd, peer, true);
}

void sock_listener_info(int lfd, bool *nodelay, bool *defer_accept)
{
    int v = 0;
    socklen_t l = sizeof v;
    *nodelay = getsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &v, &l) == 0 && v != 0;
    v = 0;
    l = sizeof v;
    *defer_accept = getsockopt(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &v, &l) == 0 && v != 0;
}

int sock_accept_ex(int lfd, sock_addr *peer, bool set_nodelay)
{
    sock_addr tmp = { .len = 0 };
    sock_addr *p = peer ? peer : &tmp;
    p->len = sizeof p->ss;
    int fd;
    do
        fd = accept4(lfd, (struct sockaddr *)&p->ss, &p->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -1;
    if (set_nodelay && (p->ss.ss_family == AF_INET || p->ss.ss_family == AF_INET6))
        (void)sock_set_nodelay(fd);
    return fd;
}

int sock_connect(const sock_addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    (void)sock_set_nodelay(fd);
    int rc;
    do
        rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int sock_connect_result(int fd)
{
    int e = 0;
    socklen_t l = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
        return errno;
    return e;
}

int sock_connect_blocking(const sock_addr *a, int timeout_ms)
{
    int fd = sock_connect(a);
    if (fd < 0)
        return -1;
    struct pollfd pfd = { .fd = fd, .events = POLLOUT };
    int rc;
    do
        rc = poll(&pfd, 1, timeout_ms);
    while (rc < 0 && errno == EINTR);
    int e = rc == 0 ? ETIMEDOUT : rc < 0 ? errno : sock_connect_result(fd);
    if (e == 0 && sock_set_nonblock(fd, false) < 0)
        e = errno;
    if (e != 0) {
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int sock_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = 0 };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof sin;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
        getsockname(fd, (struct sockaddr *)&sin, &l) == 0)
        port = ntohs(sin.sin_port);
    close(fd);
    return port;
}
