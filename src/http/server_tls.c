/* server_tls.c -- TLS for the server framework (OpenSSL), used by the
 * admin listeners when a certificate and key are configured.
 *
 * The connection state machine stays the same: conn_read and conn_flush
 * call http_conn_tls_read/write instead of read(2)/write(2), and the
 * handshake is driven from whichever of the two runs first. OpenSSL may
 * need to write while reading (and the reverse); the socket is registered
 * edge-triggered for both directions, so either readiness re-runs the
 * connection and the pending operation is retried. A reload builds a new
 * context and swaps it under tls_mu: open connections keep a reference to
 * the context they started with (SSL_new takes one). */
#include "server_conn.h"
#include "../core/log.h"
#include "http/tls_ctx.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

/* The shared loader (tls_ctx.c): the same secure defaults and refusal
 * reasons as the gateway's client listeners. */
static SSL_CTX *tls_load(const char *cert, const char *key, char *err, size_t errlen)
{
    http_tls_params p = { .cert = cert, .key = key };
    return http_tls_server_ctx(&p, err, errlen);
}

int http_tls_init(http_server *s, char *err, size_t errlen)
{
    bool c = s->o.tls_cert && *s->o.tls_cert, k = s->o.tls_key && *s->o.tls_key;
    if (!c && !k)
        return 0;
    if (c != k) {
        snprintf(err, errlen, "http server %s: TLS needs both a certificate and a key file "
                 "(only the %s is set)", s->name, c ? "certificate" : "key");
        return -1;
    }
    s->tls_ctx = tls_load(s->o.tls_cert, s->o.tls_key, err, errlen);
    return s->tls_ctx ? 0 : -1;
}

void http_tls_free(http_server *s)
{
    SSL_CTX_free(s->tls_ctx);
    s->tls_ctx = NULL;
}

bool http_server_tls(const http_server *s) { return s->tls_on; }

int http_server_tls_reload(http_server *s, char *err, size_t errlen)
{
    if (!s->tls_on) {
        snprintf(err, errlen, "http server %s: no TLS configured", s->name);
        return -1;
    }
    SSL_CTX *n = tls_load(s->o.tls_cert, s->o.tls_key, err, errlen);
    if (!n)
        return -1;
    pthread_mutex_lock(&s->tls_mu);
    SSL_CTX *old = s->tls_ctx;
    s->tls_ctx = n;
    pthread_mutex_unlock(&s->tls_mu);
    SSL_CTX_free(old);
    return 0;
}

int http_conn_tls_new(conn *c)
{
    http_server *s = c->w->s;
    c->tls_ready = false;
    pthread_mutex_lock(&s->tls_mu);
    c->ssl = SSL_new(s->tls_ctx);
    pthread_mutex_unlock(&s->tls_mu);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        SSL_free(c->ssl);
        c->ssl = NULL;
        return -1;
    }
    SSL_set_accept_state(c->ssl);
    return 0;
}

/* Maps an OpenSSL failure to the errno contract of read(2)/write(2). */
static ssize_t tls_fail(conn *c, int rc, bool reading)
{
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (reading && (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)))
        return 0;
    if (e == SSL_ERROR_SSL && !c->tls_ready) {
        char es[200];
        ERR_error_string_n(ERR_peek_last_error(), es, sizeof es);
        log_debug("%s: TLS handshake failed: %s", c->w->s->name, es);
    }
    ERR_clear_error();
    if (e != SSL_ERROR_SYSCALL || errno == 0 || errno == EAGAIN)
        errno = EPROTO;
    return -1;
}

static int handshake(conn *c)
{
    if (c->tls_ready)
        return 0;
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        c->tls_ready = true;
        return 0;
    }
    tls_fail(c, rc, false);
    return -1;
}

ssize_t http_conn_tls_read(conn *c)
{
    if (handshake(c) < 0)
        return -1;
    if (buf_reserve(&c->in, READ_CHUNK) < 0) {
        errno = ENOMEM;
        return -1;
    }
    size_t room = buf_room(&c->in);
    int n = SSL_read(c->ssl, buf_tail(&c->in), room > (size_t)READ_CHUNK ? READ_CHUNK : (int)room);
    if (n > 0) {
        buf_commit(&c->in, (size_t)n);
        return n;
    }
    return tls_fail(c, n, true);
}

ssize_t http_conn_tls_write(conn *c)
{
    if (handshake(c) < 0)
        return -1;
    size_t len = c->out.len > (1u << 30) ? (1u << 30) : c->out.len;
    int n = SSL_write(c->ssl, buf_head(&c->out), (int)len);
    if (n > 0) {
        buf_consume(&c->out, (size_t)n);
        return n;
    }
    return tls_fail(c, n, false);
}

void http_conn_tls_close(conn *c)
{
    if (!c->ssl)
        return;
    if (c->tls_ready)
        SSL_shutdown(c->ssl);   /* one try at close_notify; the socket is non-blocking */
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->tls_ready = false;
}
