/* client_tls.c -- https for http_fetch(): OpenSSL on a connected,
 * non-blocking socket, every wait bounded by the fetch's deadline.
 *
 * One client context per process, built on first use: it trusts the CA
 * file given to http_client_set_ca_file() (or HSCALE_CA_FILE), else the
 * system's store, and always verifies the peer: the chain, and the name
 * or IP address the URL used. A failed verification is an error naming
 * the reason; there is no "insecure" switch for the process-wide context.
 * A caller with its own settings (http_fetch_tls: an https backend pool's
 * health checks) gets a context per (CA file, verify) pair, built once and
 * kept for the life of the process (a handful: one per pool setting). An
 * https connection goes back to http_fetch's per-thread idle pool with its
 * TLS state, so a collector or a health checker polling the same peer
 * makes one handshake, not one per request. */
#include "client_int.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *client_ctx;
static char    *ca_file;
static bool     ca_set;     /* set explicitly: the environment is not read */
static unsigned ca_gen;     /* bumped by every http_client_set_ca_file: pooled
                             * connections of an earlier CA are not reused */

void http_client_set_ca_file(const char *path)
{
    pthread_mutex_lock(&ctx_mu);
    free(ca_file);
    ca_file = path && *path ? strdup(path) : NULL;
    ca_set = true;
    ca_gen++;
    SSL_CTX_free(client_ctx);   /* open connections keep their reference */
    client_ctx = NULL;
    pthread_mutex_unlock(&ctx_mu);
}

/* A referenced context (caller SSL_CTX_frees), or NULL with err. */
static SSL_CTX *ctx_get(char *err, size_t errlen)
{
    pthread_mutex_lock(&ctx_mu);
    if (!client_ctx) {
        const char *ca = ca_set ? ca_file : getenv("HSCALE_CA_FILE");
        SSL_CTX *c = SSL_CTX_new(TLS_client_method());
        if (!c) {
            snprintf(err, errlen, "tls: cannot create a client context");
            goto out;
        }
        SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
        int ok = ca && *ca ? SSL_CTX_load_verify_locations(c, ca, NULL)
                           : SSL_CTX_set_default_verify_paths(c);
        if (ok != 1) {
            char es[200] = "";
            ERR_error_string_n(ERR_get_error(), es, sizeof es);
            ERR_clear_error();
            snprintf(err, errlen, "tls: CA file %s: %s", ca && *ca ? ca : "(system)", es);
            SSL_CTX_free(c);
            goto out;
        }
        client_ctx = c;
    }
    SSL_CTX_up_ref(client_ctx);
    SSL_CTX *r = client_ctx;
    pthread_mutex_unlock(&ctx_mu);
    return r;
out:
    pthread_mutex_unlock(&ctx_mu);
    return NULL;
}

/* Contexts of callers with their own settings, by (CA file, verify). */
typedef struct tls_ctx_entry {
    char    *ca_file;      /* NULL: the system store */
    bool     verify;
    SSL_CTX *ctx;
    struct tls_ctx_entry *next;
} tls_ctx_entry;
static tls_ctx_entry *custom_ctxs;

static SSL_CTX *ctx_get_custom(const http_tls_client *t, char *err, size_t errlen)
{
    pthread_mutex_lock(&ctx_mu);
    tls_ctx_entry *e = custom_ctxs;
    for (; e; e = e->next)
        if (e->verify == t->verify && ((!e->ca_file && !t->ca_file)
                                       || (e->ca_file && t->ca_file && !strcmp(e->ca_file, t->ca_file))))
            break;
    if (!e) {
        SSL_CTX *c = SSL_CTX_new(TLS_client_method());
        e = calloc(1, sizeof *e);
        if (!c || !e || (t->ca_file && !(e->ca_file = strdup(t->ca_file)))) {
            snprintf(err, errlen, "tls: cannot create a client context");
            goto fail;
        }
        SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
        SSL_CTX_set_verify(c, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
        int ok = !t->verify ? 1 : t->ca_file ? SSL_CTX_load_verify_locations(c, t->ca_file, NULL)
                                             : SSL_CTX_set_default_verify_paths(c);
        if (ok != 1) {
            char es[200] = "";
            ERR_error_string_n(ERR_get_error(), es, sizeof es);
            snprintf(err, errlen, "tls: CA file %s: %s", t->ca_file ? t->ca_file : "(system)", es);
            goto fail;
        }
        static const unsigned char alpn[] = "\x08http/1.1";
        SSL_CTX_set_alpn_protos(c, alpn, sizeof alpn - 1);
        e->verify = t->verify;
        e->ctx = c;
        e->next = custom_ctxs;
        custom_ctxs = e;
        goto found;
fail:
        ERR_clear_error();
        SSL_CTX_free(c);
        if (e)
            free(e->ca_file);
        free(e);
        pthread_mutex_unlock(&ctx_mu);
        return NULL;
    }
found:
    SSL_CTX_up_ref(e->ctx);
    SSL_CTX *r = e->ctx;
    pthread_mutex_unlock(&ctx_mu);
    return r;
}

void http_client_tls_key(const char *host, const http_tls_client *tls, char *out, size_t outlen)
{
    if (!tls) {
        pthread_mutex_lock(&ctx_mu);
        unsigned g = ca_gen;
        pthread_mutex_unlock(&ctx_mu);
        snprintf(out, outlen, "g%u|%s", g, host);
        return;
    }
    snprintf(out, outlen, "c%d|%s|%s", tls->verify, tls->server_name ? tls->server_name : host,
             tls->ca_file ? tls->ca_file : "");
}

int http_client_tls_start(fetch_io *io, const char *host, const http_tls_client *tls,
                          uint64_t deadline, char *err, size_t errlen)
{
    SSL_CTX *ctx = tls ? ctx_get_custom(tls, err, errlen) : ctx_get(err, errlen);
    if (!ctx)
        return -1;
    if (tls && tls->server_name)
        host = tls->server_name;
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx);
    if (!ssl || SSL_set_fd(ssl, io->fd) != 1) {
        SSL_free(ssl);
        snprintf(err, errlen, "tls: out of memory");
        return -1;
    }
    /* Verify the address the URL named: an IP literal or a DNS name. */
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1) {
        SSL_set_tlsext_host_name(ssl, host);
        SSL_set1_host(ssl, host);
    }
    if (tls && !tls->verify)
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    for (;;) {
        int rc = SSL_connect(ssl);
        if (rc == 1)
            break;
        int e = SSL_get_error(ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            short ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
            int w = http_fetch_wait_fd(io->fd, ev, deadline);
            if (w > 0)
                continue;
            snprintf(err, errlen, "tls handshake with %s: %s", host,
                     w == 0 ? "timed out" : strerror(errno));
        } else {
            long v = SSL_get_verify_result(ssl);
            char es[200] = "";
            ERR_error_string_n(ERR_peek_last_error(), es, sizeof es);
            if (v != X509_V_OK)
                snprintf(err, errlen, "tls handshake with %s: certificate not trusted: %s "
                         "(%s)", host, X509_verify_cert_error_string(v),
                         tls ? "the pool's tls_ca_file / tls_server_name"
                             : "give the CA with --ca-file or HSCALE_CA_FILE");
            else
                snprintf(err, errlen, "tls handshake with %s: %s", host, es[0] ? es : "failed");
        }
        ERR_clear_error();
        SSL_free(ssl);
        return -1;
    }
    io->ssl = ssl;
    return 0;
}

static ssize_t tls_io(fetch_io *io, int rc)
{
    int e = SSL_get_error(io->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        io->want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)) {
        ERR_clear_error();
        return 0;
    }
    ERR_clear_error();
    if (e != SSL_ERROR_SYSCALL || errno == 0 || errno == EAGAIN)
        errno = EPROTO;
    return -1;
}

ssize_t http_client_tls_read(fetch_io *io, void *p, size_t n)
{
    int rc = SSL_read(io->ssl, p, n > (1u << 30) ? (1 << 30) : (int)n);
    return rc > 0 ? rc : tls_io(io, rc);
}

ssize_t http_client_tls_write(fetch_io *io, const void *p, size_t n)
{
    int rc = SSL_write(io->ssl, p, n > (1u << 30) ? (1 << 30) : (int)n);
    if (rc > 0)
        return rc;
    ssize_t r = tls_io(io, rc);
    return r == 0 ? (errno = EPIPE, -1) : r;
}

void http_client_tls_close(fetch_io *io)
{
    if (!io->ssl)
        return;
    SSL_shutdown(io->ssl);
    ERR_clear_error();
    SSL_free(io->ssl);
    io->ssl = NULL;
}
