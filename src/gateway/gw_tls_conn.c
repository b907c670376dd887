/* gw_tls_conn.c -- the TLS transport of one client connection: handshake,
 * record reads and writes with the read(2)/write(2) contract gw_conn.c
 * expects, close_notify, and the metrics of each handshake.
 *
 * The socket stays edge-triggered for both directions (gw_conn_accepted),
 * so when OpenSSL needs the other direction during a handshake (it wants
 * to write while reading, or the reverse), either readiness re-runs
 * gw_conn_io, which drives the handshake again.
 *
 * "Drained": gw_conn.c stops reading a plain socket after a short read
 * (edge-triggered: any later byte raises a new edge). SSL_read returns at
 * most one record however much the socket holds, so the same rule needs
 * to know what the socket read under OpenSSL did: a BIO callback records
 * whether it came back short. With read-ahead on, OpenSSL asks the socket
 * for a whole buffer, so a short socket read means the socket is empty,
 * and only records already in OpenSSL's buffer (SSL_has_pending) are left.
 *
 * kTLS: with SSL_OP_ENABLE_KTLS OpenSSL moves the record layer into the
 * kernel after the handshake when the kernel has the tls module and the
 * cipher allows (AES-GCM; ChaCha20 on newer kernels); SSL_read/SSL_write
 * then call the kernel directly. Which path a connection got is counted,
 * and said in the log once. */
#include "gateway/gw_tls_int.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>

#include "core/log.h"
#include "gateway/gw_proxy.h"
#include "http/tls_ctx.h"

void gw_tls_count_failure(gw_tls *t, int reason)
{
    if (reason >= 0 && reason < GW_TLS_NFAIL)
        metrics_inc(t->m_fail[reason]);
}

/* kTLS path (OpenSSL's socket BIO): a short socket read drained it. */
static long rbio_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret,
                    size_t *processed)
{
    (void)argp;
    (void)argi;
    (void)argl;
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        gw_conn *c = (gw_conn *)BIO_get_callback_arg(b);
        c->tls_drained = !(ret > 0 && processed && *processed == len);
    }
    return ret;
}

/* The socket's BIO: gw_tls_bio.c's, or with kTLS OpenSSL's own. */
static int attach_socket(gw_conn *c, SSL *ssl, const gw_tls *t)
{
    if (t->bio) {
        BIO *b = gw_tls_bio_new(t->bio, c);
        if (!b)
            return -1;
        SSL_set_bio(ssl, b, b);        /* one reference, for both directions */
        return 0;
    }
    if (SSL_set_fd(ssl, c->fd) != 1)
        return -1;
    BIO *rb = SSL_get_rbio(ssl);
    BIO_set_callback_ex(rb, rbio_cb);
    BIO_set_callback_arg(rb, (char *)c);
    return 0;
}

int gw_tls_conn_new(gw_conn *c)
{
    gw_tls *t = c->w->rt->tls;
    SSL *ssl = gw_tls_ssl_new(t);
    if (!ssl || attach_socket(c, ssl, t) < 0) {
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    SSL_set_accept_state(ssl);
    c->ssl = ssl;
    c->tls = GW_TLS_HANDSHAKE;
    c->tls_drained = false;
    c->tls_out_blocked = false;
    atomic_fetch_add_explicit(&t->open, 1, memory_order_relaxed);
    return 0;
}

static int fail_reason(int e)
{
    if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
        return GW_TLS_FAIL_CLOSED;
    if (e != SSL_ERROR_SSL)
        return GW_TLS_FAIL_OTHER;
    int r = ERR_GET_REASON(ERR_peek_last_error());
    switch (r) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
        return GW_TLS_FAIL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
        return GW_TLS_FAIL_CIPHER;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_RECORD_LENGTH_MISMATCH:
        return GW_TLS_FAIL_NOT_TLS;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return GW_TLS_FAIL_CLOSED;
    default:
        /* Alerts received map to reasons past SSL_AD_REASON_OFFSET. */
        if (r >= SSL_AD_REASON_OFFSET && r < SSL_AD_REASON_OFFSET + 256)
            return GW_TLS_FAIL_ALERT;
        return GW_TLS_FAIL_OTHER;
    }
}

static void note_path(gw_conn *c, gw_tls *t)
{
    bool ks = BIO_get_ktls_send(SSL_get_wbio(c->ssl));
    bool kr = BIO_get_ktls_recv(SSL_get_rbio(c->ssl));
    metrics_inc(ks || kr ? t->m_ktls : t->m_user);
    if (!t->ktls_on || atomic_load_explicit(&t->path_logged, memory_order_relaxed)
        || atomic_exchange(&t->path_logged, true))
        return;                 /* without kTLS, gw_tls_init said so once */
    const char *cipher = SSL_get_cipher_name(c->ssl);
    if (ks || kr)
        log_info("TLS records: kernel TLS (kTLS send %s, receive %s; %s %s)", ks ? "on" : "off",
                 kr ? "on" : "off", SSL_get_version(c->ssl), cipher ? cipher : "");
    else
        log_info("TLS records: userspace OpenSSL (%s; %s %s)",
                 t->ktls_wanted ? "kTLS not taken by the kernel for this connection"
                                : "tls_ktls is off",
                 SSL_get_version(c->ssl), cipher ? cipher : "");
}

int gw_tls_handshake(gw_conn *c)
{
    gw_tls *t = c->w->rt->tls;
    if (c->tls != GW_TLS_HANDSHAKE)
        return c->tls == GW_TLS_ESTABLISHED ? 1 : -1;
    ERR_clear_error();
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        /* A TLS 1.2 server ends on its Finished, which the client waits
         * for; TLS 1.3 ends on a session ticket, which can go with the
         * response. */
        if (SSL_version(c->ssl) < TLS1_3_VERSION && gw_tls_bio_push(c) < 0) {
            gw_tls_count_failure(t, GW_TLS_FAIL_CLOSED);
            c->tls = GW_TLS_FAILED;
            return -1;
        }
        c->tls = GW_TLS_ESTABLISHED;
        bool reused = SSL_session_reused(c->ssl);
        metrics_inc(reused ? t->m_resumed : t->m_full);
        note_path(c, t);
        log_debug("TLS handshake on worker %u from %s: %s, %s %s", c->w->id, c->ip,
                  reused ? "resumed" : "full", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
        return 1;
    }
    int e = SSL_get_error(c->ssl, rc);
    /* Waiting for the client: the flight goes out now (and an alert, on
     * failure, is worth one try). */
    int pushed = gw_tls_bio_push(c);
    if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && pushed >= 0)
        return 0;
    int reason = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? GW_TLS_FAIL_CLOSED : fail_reason(e);
    gw_tls_count_failure(t, reason);
    if (log_get_level() <= LOG_DEBUG) {
        char why[256];
        http_tls_last_error(why, sizeof why);
        log_debug("TLS handshake from %s failed (%s): %s", c->ip, gw_tls_fail_names[reason], why);
    }
    ERR_clear_error();
    c->tls = GW_TLS_FAILED;
    return -1;
}

void gw_tls_timed_out(gw_conn *c)
{
    gw_tls_count_failure(c->w->rt->tls, GW_TLS_FAIL_TIMEOUT);
    c->tls = GW_TLS_FAILED;
}

void gw_tls_idle(gw_conn *c)
{
    /* What waited for a response that is not coming (a ticket when the
     * request did not come with the client's Finished) goes now. */
    if (c->tls_out.len && gw_tls_bio_push(c) < 0)
        c->dead = true;
    /* Fails harmlessly (keeps them) while a record is half read or written. */
    if (c->tls == GW_TLS_ESTABLISHED && !SSL_has_pending(c->ssl))
        SSL_free_buffers(c->ssl);
}

/* close_notify, once: it joins the queue (or, with kTLS, goes out). */
void gw_tls_close_notify(gw_conn *c)
{
    if (c->tls != GW_TLS_ESTABLISHED)
        return;
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    ERR_clear_error();
    c->tls = GW_TLS_SHUTDOWN;
}

int gw_tls_push(gw_conn *c)
{
    return gw_tls_bio_push(c);
}

bool gw_tls_queued(const gw_conn *c)
{
    return c->ssl && c->w->rt->tls->bio;   /* our BIO exactly when kTLS is off */
}

bool gw_tls_drained(const gw_conn *c)
{
    return c->tls_drained && !SSL_has_pending(c->ssl);
}

ssize_t gw_tls_read(gw_conn *c, void *p, size_t n)
{
    if (c->tls == GW_TLS_SHUTDOWN)
        return 0;
    if (c->tls != GW_TLS_ESTABLISHED) {
        errno = EPROTO;
        return -1;
    }
    ERR_clear_error();
    int r = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    c->tls_read_wants_write = false;
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->tls_read_wants_write = e == SSL_ERROR_WANT_WRITE;
        if (e == SSL_ERROR_WANT_READ)
            c->tls_drained = true;
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {     /* close_notify (or EOF: IGNORE_UNEXPECTED_EOF) */
        c->tls = GW_TLS_SHUTDOWN;
        return 0;
    }
    ERR_clear_error();
    c->tls = GW_TLS_FAILED;
    errno = EPROTO;
    return -1;
}

ssize_t gw_tls_write(gw_conn *c, const void *p, size_t n)
{
    if (c->tls != GW_TLS_ESTABLISHED) {
        errno = EPIPE;
        return -1;
    }
    ERR_clear_error();
    int r = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    ERR_clear_error();
    c->tls = GW_TLS_FAILED;
    errno = EPIPE;
    return -1;
}

void gw_tls_conn_free(gw_conn *c)
{
    if (!c->ssl)
        return;
    gw_tls *t = c->w->rt->tls;
    /* One try at close_notify: the socket is non-blocking and closes next. */
    gw_tls_close_notify(c);
    if (c->tls_out.len && c->tls != GW_TLS_FAILED)
        gw_tls_bio_push(c);
    gw_buf_release(c->w, &c->tls_out);
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
    atomic_fetch_sub_explicit(&t->open, 1, memory_order_relaxed);
}
