/* client.c -- URL parsing and the blocking HTTP/1.1 client, http_fetch().
 *
 * http_fetch() serves the control plane, the CLI and tests: one request at
 * a time on the calling thread, bounded by one overall deadline that every
 * poll() counts down from. Idle connections are kept per thread, keyed by
 * address, so a collector scraping the same instances every few seconds
 * reuses its sockets. A pooled socket may have been closed by the peer
 * since; when it fails before the first response byte the request is sent
 * once more on a fresh connection (the peer never saw it answered).
 *
 * Responses are framed by the shared parser: Content-Length, chunked (via
 * http_chunked_feed) or read-to-close; 1xx interim responses are skipped. */
#include "client_int.h"
#include "parser.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define FETCH_POOL      8
#define FETCH_IDLE_US   30000000ull   /* older idle sockets are not trusted */

/* ---- URLs ---- */

int http_url_parse(const char *url, http_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!url) {
        snprintf(err, errlen, "url: missing");
        return -1;
    }
    bool tls = strncasecmp(url, "https://", 8) == 0;
    if (!tls && strncasecmp(url, "http://", 7) != 0) {
        snprintf(err, errlen, "url %s: expected http[s]://host[:port][/path]", url);
        return -1;
    }
    out->tls = tls;
    const char *p = url + (tls ? 8 : 7), *hs, *he;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he) {
            snprintf(err, errlen, "url %s: unterminated [ in IPv6 host", url);
            return -1;
        }
        p = he + 1;
    } else {
        hs = p;
        p += strcspn(p, ":/?#");
        he = p;
    }
    if (memchr(hs, '@', (size_t)(he - hs))) {
        snprintf(err, errlen, "url %s: user info (user@host) is not supported", url);
        return -1;
    }
    if (he == hs) {
        snprintf(err, errlen, "url %s: missing host", url);
        return -1;
    }
    if ((size_t)(he - hs) >= sizeof out->host) {
        snprintf(err, errlen, "url %s: host longer than %zu bytes", url, sizeof out->host - 1);
        return -1;
    }
    memcpy(out->host, hs, (size_t)(he - hs));
    out->port = tls ? 443 : 80;
    if (*p == ':') {
        p++;
        long port = 0;
        const char *ds = p;
        while (isdigit((unsigned char)*p) && port <= 65535)
            port = port * 10 + (*p++ - '0');
        if (p == ds || port < 1 || port > 65535 || (*p && !strchr("/?#", *p))) {
            snprintf(err, errlen, "url %s: port must be a number in 1..65535", url);
            return -1;
        }
        out->port = (int)port;
    } else if (*p && !strchr("/?#", *p)) {
        snprintf(err, errlen, "url %s: unexpected '%c' after the host", url, *p);
        return -1;
    }
    size_t plen = strcspn(p, "#");
    for (size_t i = 0; i < plen; i++)
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f) {
            snprintf(err, errlen, "url %s: path contains whitespace or control characters", url);
            return -1;
        }
    size_t need = plen + (p[0] == '/' ? 0 : 1);
    if (need >= sizeof out->path) {
        snprintf(err, errlen, "url %s: path longer than %zu bytes", url, sizeof out->path - 1);
        return -1;
    }
    if (p[0] != '/')
        out->path[0] = '/';
    memcpy(out->path + (p[0] == '/' ? 0 : 1), p, plen);
    char hp[300], aerr[200];
    bool v6 = strchr(out->host, ':') != NULL;
    snprintf(hp, sizeof hp, v6 ? "[%s]:%d" : "%s:%d", out->host, out->port);
    if (sock_addr_parse(hp, &out->addr, aerr, sizeof aerr) < 0) {
        snprintf(err, errlen, "url %s: %s", url, aerr);
        return -1;
    }
    return 0;
}

/* ---- results ---- */

void http_result_init(http_result *r)
{
    r->status = 0;
    buf_init(&r->headers);
    buf_init(&r->body);
}

void http_result_free(http_result *r)
{
    buf_free(&r->headers);
    buf_free(&r->body);
}

bool http_result_header(const http_result *r, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = buf_head(&r->headers), *end = p + r->headers.len;
    if (!r->headers.len)
        return false;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (outlen) {
                size_t n = (size_t)(ve - v) < outlen - 1 ? (size_t)(ve - v) : outlen - 1;
                memcpy(out, v, n);
                out[n] = '\0';
            }
            return true;
        }
        p = eol + 2;
    }
    return false;
}

/* ---- per-thread idle connections ---- */

/* An https connection is kept with its TLS state, and only handed back to
 * a fetch with the same TLS settings (tls_key: name verified, CA file,
 * verification, and the process-wide CA's generation), so a connection is
 * never reused past a check it was not made under. */
typedef struct idle_conn {
    sock_addr      addr;
    int            fd;
    uint64_t       at;
    struct ssl_st *ssl;          /* NULL: plain */
    char           tls_key[320];
} idle_conn;

static void idle_close(idle_conn *ic)
{
    if (ic->ssl) {   /* the peer may be gone: no close_notify (no EPIPE) */
        SSL_set_quiet_shutdown(ic->ssl, 1);
        fetch_io io = { .fd = ic->fd, .ssl = ic->ssl, .want = 0 };
        http_client_tls_close(&io);
    }
    close(ic->fd);
}

static _Thread_local idle_conn fetch_pool[FETCH_POOL];
static _Thread_local unsigned  fetch_pool_n;
static pthread_key_t  pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void http_fetch_pool_clear(void)
{
    for (unsigned i = 0; i < fetch_pool_n; i++)
        idle_close(&fetch_pool[i]);
    fetch_pool_n = 0;
}

/* Thread exit: close what the thread left idle. */
static void pool_destructor(void *unused) { (void)unused; http_fetch_pool_clear(); }
static void pool_key_make(void) { pthread_key_create(&pool_key, pool_destructor); }

/* An idle connection to a with the TLS settings tls_key ("" plain), its
 * TLS state in *ssl; -1 when there is none. */
static int pool_take(const sock_addr *a, const char *tls_key, struct ssl_st **ssl)
{
    uint64_t now = mono_us();
    *ssl = NULL;
    for (unsigned i = fetch_pool_n; i-- > 0;) {
        if (!sock_addr_equal(&fetch_pool[i].addr, a) || strcmp(fetch_pool[i].tls_key, tls_key))
            continue;
        idle_conn ic = fetch_pool[i];
        fetch_pool[i] = fetch_pool[--fetch_pool_n];
        /* Readable while idle means EOF, close_notify or junk: not reusable. */
        struct pollfd pf = { .fd = ic.fd, .events = POLLIN };
        if (now - ic.at > FETCH_IDLE_US || poll(&pf, 1, 0) != 0) {
            idle_close(&ic);
            continue;
        }
        *ssl = ic.ssl;
        return ic.fd;
    }
    return -1;
}

static void pool_put(const sock_addr *a, const char *tls_key, int fd, struct ssl_st *ssl)
{
    pthread_once(&pool_once, pool_key_make);
    pthread_setspecific(pool_key, (void *)1);
    if (fetch_pool_n == FETCH_POOL) {
        idle_close(&fetch_pool[0]);
        memmove(fetch_pool, fetch_pool + 1, (FETCH_POOL - 1) * sizeof fetch_pool[0]);
        fetch_pool_n--;
    }
    idle_conn *ic = &fetch_pool[fetch_pool_n++];
    ic->addr = *a;
    ic->fd = fd;
    ic->at = mono_us();
    ic->ssl = ssl;
    snprintf(ic->tls_key, sizeof ic->tls_key, "%s", tls_key);
}

/* ---- one exchange ---- */

enum { XCH_OK = 0, XCH_ERR = -1, XCH_STALE = -2 };

int http_fetch_wait_fd(int fd, short ev, uint64_t deadline)
{
    for (;;) {
        uint64_t now = mono_us();
        if (now >= deadline)
            return 0;
        struct pollfd pf = { .fd = fd, .events = ev };
        int r = poll(&pf, 1, (int)((deadline - now + 999) / 1000));
        if (r < 0 && errno == EINTR)
            continue;
        return r;
    }
}

typedef struct fetch_state {
    buf        *body;
    bool        oom;
} fetch_state;

static void on_body(void *arg, const char *p, size_t n)
{
    fetch_state *st = arg;
    if (buf_append(st->body, p, n) < 0)
        st->oom = true;
}

/* Reads more into in; returns bytes, 0 on EOF, -1 on error or timeout
 * (err filled). */
static ssize_t io_read(fetch_io *io, buf *in)
{
    if (!io->ssl)
        return buf_read_fd(in, io->fd, 16384);
    if (buf_reserve(in, 16384) < 0) {
        errno = ENOMEM;
        return -1;
    }
    ssize_t n = http_client_tls_read(io, buf_tail(in), buf_room(in));
    if (n > 0)
        buf_commit(in, (size_t)n);
    return n;
}

static ssize_t read_some(fetch_io *io, buf *in, uint64_t deadline, const char *what,
                         char *err, size_t errlen)
{
    for (;;) {
        io->want = POLLIN;
        ssize_t n = io_read(io, in);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(err, errlen, "%s: read: %s", what, strerror(errno));
            return -1;
        }
        int w = http_fetch_wait_fd(io->fd, io->want, deadline);
        if (w == 0) {
            snprintf(err, errlen, "%s: timed out waiting for the response", what);
            errno = ETIMEDOUT;
            return -1;
        }
        if (w < 0) {
            snprintf(err, errlen, "%s: poll: %s", what, strerror(errno));
            return -1;
        }
    }
}

static int exchange(fetch_io *io, bool pooled, const buf *req, http_method m, uint64_t deadline,
                    const char *what, http_result *out, bool *reuse, char *err, size_t errlen)
{
    *reuse = false;
    size_t sent = 0;
    int fd = io->fd;
    while (sent < req->len) {
        io->want = POLLOUT;
        ssize_t n = io->ssl ? http_client_tls_write(io, buf_head(req) + sent, req->len - sent)
                            : send(fd, buf_head(req) + sent, req->len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = http_fetch_wait_fd(fd, io->want, deadline);
            if (w > 0)
                continue;
            snprintf(err, errlen, "%s: timed out sending the request", what);
            return XCH_ERR;
        }
        if (pooled)
            return XCH_STALE;
        snprintf(err, errlen, "%s: send: %s", what, strerror(errno));
        return XCH_ERR;
    }

    buf in;
    buf_init(&in);
    http_limits lim;
    http_limits_default(&lim);
    lim.max_body = 0;
    http_response resp;
    int rc = XCH_ERR;
    size_t head;
    for (;;) {
        resp.scanned = 0;
        int h = HTTP_INCOMPLETE;
        for (;;) {
            if (in.len) {
                h = http_parse_response(buf_head(&in), in.len, &resp, m, &lim);
                if (h != HTTP_INCOMPLETE)
                    break;
            }
            size_t before = in.len;
            ssize_t n = read_some(io, &in, deadline, what, err, errlen);
            if (n < 0) {
                if (pooled && before == 0 && errno != ETIMEDOUT)
                    rc = XCH_STALE;
                goto done;
            }
            if (n == 0) {
                if (pooled && before == 0) {
                    rc = XCH_STALE;
                } else {
                    snprintf(err, errlen, "%s: connection closed %s", what,
                             before ? "in the middle of the response head" : "before any response");
                }
                goto done;
            }
        }
        if (h < 0) {
            snprintf(err, errlen, "%s: malformed response: %s", what,
                     resp.h.error ? resp.h.error : "unparseable head");
            goto done;
        }
        head = (size_t)h;
        if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
            buf_consume(&in, head);   /* interim: 100 Continue and friends */
            continue;
        }
        break;
    }
    out->status = resp.status;
    const char *hb = buf_head(&in);
    const char *eol = memmem(hb, head, "\r\n", 2);
    size_t hstart = eol ? (size_t)(eol - hb) + 2 : head;
    if (head >= hstart + 2)
        buf_append(&out->headers, hb + hstart, head - 2 - hstart);
    buf_consume(&in, head);

    fetch_state st = { .body = &out->body, .oom = false };
    switch (resp.h.body) {
    case HTTP_BODY_NONE:
        break;
    case HTTP_BODY_LENGTH:
        while (in.len < resp.h.content_length) {
            ssize_t n = read_some(io, &in, deadline, what, err, errlen);
            if (n <= 0) {
                if (n == 0)
                    snprintf(err, errlen, "%s: connection closed after %zu of %llu body bytes",
                             what, in.len, (unsigned long long)resp.h.content_length);
                goto done;
            }
        }
        buf_append(&out->body, buf_head(&in), (size_t)resp.h.content_length);
        buf_consume(&in, (size_t)resp.h.content_length);
        break;
    case HTTP_BODY_CHUNKED: {
        http_chunked ch;
        http_chunked_init(&ch, 0);
        for (;;) {
            long k = http_chunked_feed(&ch, buf_head(&in), in.len, on_body, &st);
            if (k < 0) {
                snprintf(err, errlen, "%s: malformed chunked body: %s", what,
                         ch.error ? ch.error : "framing error");
                goto done;
            }
            buf_consume(&in, (size_t)k);
            if (http_chunked_done(&ch))
                break;
            ssize_t n = read_some(io, &in, deadline, what, err, errlen);
            if (n <= 0) {
                if (n == 0)
                    snprintf(err, errlen, "%s: connection closed inside the chunked body", what);
                goto done;
            }
        }
        break;
    }
    case HTTP_BODY_CLOSE:
        for (;;) {
            buf_append(&out->body, buf_head(&in), in.len);
            buf_reset(&in);
            ssize_t n = read_some(io, &in, deadline, what, err, errlen);
            if (n < 0)
                goto done;
            if (n == 0)
                break;
        }
        break;
    }
    if (st.oom) {
        snprintf(err, errlen, "%s: out of memory reading the body", what);
        goto done;
    }
    /* Leftover bytes after a complete response are junk: don't reuse. */
    *reuse = resp.h.keep_alive && resp.h.body != HTTP_BODY_CLOSE && in.len == 0;
    rc = XCH_OK;
done:
    buf_free(&in);
    return rc;
}

int http_fetch(const char *method, const char *url, const char *extra_headers,
               const void *body, size_t len, int timeout_ms,
               http_result *out, char *err, size_t errlen)
{
    return http_fetch_tls(method, url, extra_headers, body, len, timeout_ms, NULL, out, err,
                          errlen);
}

int http_fetch_tls(const char *method, const char *url, const char *extra_headers,
                   const void *body, size_t len, int timeout_ms, const http_tls_client *tls,
                   http_result *out, char *err, size_t errlen)
{
    http_url u;
    if (http_url_parse(url, &u, err, errlen) < 0)
        return -1;
    if (!method || !method[0])
        method = "GET";
    http_method m = http_method_from(method, strlen(method));
    uint64_t deadline = mono_us() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 10000) * 1000;

    buf req;
    buf_init(&req);
    bool v6 = strchr(u.host, ':') != NULL;
    int rc = buf_printf(&req, v6 ? "%s %s HTTP/1.1\r\nHost: [%s]" : "%s %s HTTP/1.1\r\nHost: %s",
                        method, u.path, u.host);
    if (rc >= 0 && u.port != (u.tls ? 443 : 80))
        rc = buf_printf(&req, ":%d", u.port);
    if (rc >= 0)
        rc = buf_append_str(&req, "\r\nUser-Agent: hscale\r\n");
    if (rc >= 0 && (len || m == HTTP_POST || m == HTTP_PUT || m == HTTP_PATCH))
        rc = buf_printf(&req, "Content-Length: %zu\r\n", len);
    if (rc >= 0 && extra_headers)
        rc = buf_append_str(&req, extra_headers);
    if (rc >= 0)
        rc = buf_append(&req, "\r\n", 2);
    if (rc >= 0 && len)
        rc = buf_append(&req, body, len);
    if (rc < 0) {
        snprintf(err, errlen, "%s %s: out of memory building the request", method, url);
        buf_free(&req);
        return -1;
    }

    char what[300], tls_key[320] = "";
    snprintf(what, sizeof what, "%s %s", method, url);
    if (u.tls)
        http_client_tls_key(u.host, tls, tls_key, sizeof tls_key);
    int result = -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        out->status = 0;
        buf_reset(&out->headers);
        buf_reset(&out->body);
        bool pooled = false;
        struct ssl_st *pssl = NULL;
        int fd = attempt == 0 ? pool_take(&u.addr, tls_key, &pssl) : -1;
        if (fd >= 0) {
            pooled = true;
        } else {
            uint64_t now = mono_us();
            int left = now < deadline ? (int)((deadline - now + 999) / 1000) : 1;
            fd = sock_connect_blocking(&u.addr, left);
            if (fd < 0) {
                snprintf(err, errlen, "%s: connect to %s:%d: %s", what, u.host, u.port,
                         errno == ETIMEDOUT || errno == EINPROGRESS ? "timed out" : strerror(errno));
                break;
            }
            sock_set_nonblock(fd, true);
        }
        fetch_io io = { .fd = fd, .ssl = pssl, .want = 0 };   /* a pooled https one is set up */
        if (u.tls && !pssl && http_client_tls_start(&io, u.host, tls, deadline, err, errlen) < 0) {
            close(fd);
            break;
        }
        bool reuse;
        int x = exchange(&io, pooled, &req, m, deadline, what, out, &reuse, err, errlen);
        if (x == XCH_OK && reuse && (!io.ssl || SSL_pending(io.ssl) == 0)) {
            pool_put(&u.addr, tls_key, fd, io.ssl);   /* TLS state and all */
            result = 0;
            break;
        }
        if (io.ssl && x == XCH_STALE)
            SSL_set_quiet_shutdown(io.ssl, 1);   /* the peer is gone */
        http_client_tls_close(&io);
        close(fd);
        if (x == XCH_STALE)
            continue;     /* the pooled socket was dead: once more, fresh */
        result = x == XCH_OK ? 0 : -1;
        break;
    }
    buf_free(&req);
    return result;
}
