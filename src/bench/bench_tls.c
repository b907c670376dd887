/* bench_tls.c -- the load generator's TLS transport: OpenSSL on the
 * workers' non-blocking, edge-triggered connections.
 *
 * One client context per worker thread (no lock shared between threads on
 * the handshake path). Verification is on unless --insecure: the chain
 * against --cacert or the system store, and the name (--sni, else the URL's
 * host; an IP literal is checked against the certificate's IP addresses and
 * sent without SNI, as RFC 6066 asks). ALPN offers http/1.1 only.
 *
 * Resumption (--tls-resume): each connection keeps the last session the
 * server gave it (the new-session callback fires for a TLS 1.2 session and
 * for every TLS 1.3 ticket, which arrives after the handshake) and offers
 * it on its next connect. Without it no session is ever offered, so every
 * handshake is a full one.
 *
 * Invariants: c->ssl is set exactly in TLS_HANDSHAKE and TLS_OPEN; the
 * OpenSSL error queue is empty when any function here returns; a plain
 * EOF without close_notify reads as EOF (SSL_OP_IGNORE_UNEXPECTED_EOF),
 * since a load tool frames responses itself. */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include "bench/bench.h"
#include "bench/bench_int.h"
#include "http/tls_ctx.h"

const char *bench_tls_state_str(bench_tls_state s)
{
    switch (s) {
    case BENCH_TLS_PLAIN:     return "plain";
    case BENCH_TLS_DOWN:      return "down";
    case BENCH_TLS_HANDSHAKE: return "handshake";
    case BENCH_TLS_OPEN:      return "open";
    }
    return "?";
}

static bool tls_is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

/* Keeps the newest session of the connection; returning 1 keeps the
 * reference OpenSSL handed over. */
static int tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
    bench_conn *c = SSL_get_app_data(ssl);
    if (!c)
        return 0;
    if (c->sess)
        SSL_SESSION_free(c->sess);
    c->sess = sess;
    return 1;
}

SSL_CTX *bench_tls_ctx_new(const bench_tls_opts *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "tls: cannot create a client context");
        ERR_clear_error();
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    static const unsigned char alpn[] = "\x08http/1.1";
    if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1) != 0) {   /* 0 is success here */
        snprintf(err, errlen, "tls: cannot set ALPN");
        goto fail;
    }
    if (o->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = o->cacert ? SSL_CTX_load_verify_locations(ctx, o->cacert, NULL)
                           : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            char why[160];
            http_tls_last_error(why, sizeof why);
            snprintf(err, errlen, "--cacert %s: %s (expected a PEM file of CA certificates)",
                     o->cacert ? o->cacert : "(system store)", why);
            goto fail;
        }
    }
    if (o->resume) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, tls_new_session);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

void bench_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

int bench_tls_check(const bench_tls_opts *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = bench_tls_ctx_new(o, err, errlen);
    if (!ctx)
        return -1;
    SSL_CTX_free(ctx);
    return 0;
}

int bench_tls_begin(bench_conn *c)
{
    const bench_tls_opts *o = &c->w->plan->tls;
    SSL *ssl = SSL_new(c->w->ssl_ctx);
    if (!ssl || SSL_set_fd(ssl, c->fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    SSL_set_app_data(ssl, c);
    const char *name = o->sni ? o->sni : o->host;
    bool ip = tls_is_ip(name);
    if (!ip)
        SSL_set_tlsext_host_name(ssl, name);
    if (!o->insecure) {
        if (ip)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
        else
            SSL_set1_host(ssl, name);
    }
    if (o->resume && c->sess)
        SSL_set_session(ssl, c->sess);
    SSL_set_connect_state(ssl);
    ERR_clear_error();
    c->ssl = ssl;
    c->tls = BENCH_TLS_HANDSHAKE;
    c->hs_start_us = ev_monotonic_us();
    return 0;
}

/* The first handshake of the thread names the protocol, the cipher and
 * ALPN in the report. */
static void tls_note_params(bench_conn_stats *cs, SSL *ssl)
{
    if (cs->tls_version[0])
        return;
    snprintf(cs->tls_version, sizeof cs->tls_version, "%s", SSL_get_version(ssl));
    snprintf(cs->tls_cipher, sizeof cs->tls_cipher, "%s", SSL_get_cipher_name(ssl));
    const unsigned char *a = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(ssl, &a, &alen);
    snprintf(cs->tls_alpn, sizeof cs->tls_alpn, "%.*s", a ? (int)alen : 4, a ? (const char *)a : "none");
}

int bench_tls_handshake(bench_conn *c, char *err, size_t errlen, bool *fatal)
{
    const bench_tls_opts *o = &c->w->plan->tls;
    bench_conn_stats *cs = &c->w->cs;
    *fatal = false;
    errno = 0;
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        uint64_t now = ev_monotonic_us();
        if (SSL_session_reused(c->ssl))
            cs->hs_resumed++;
        else
            cs->hs_full++;
        hist_record(&cs->hs_lat, now > c->hs_start_us ? now - c->hs_start_us : 1);
        tls_note_params(cs, c->ssl);
        c->tls = BENCH_TLS_OPEN;
        return 1;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    int sys = errno;
    const char *name = o->sni ? o->sni : o->host;
    long v = SSL_get_verify_result(c->ssl);
    if (!o->insecure && v != X509_V_OK) {
        bool name_err = v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH;
        snprintf(err, errlen, "TLS: the certificate of %s was refused: %s (%s, or --insecure "
                 "for a test certificate)", name, X509_verify_cert_error_string(v),
                 name_err ? "name the host it was issued for with --sni NAME"
                          : "give its CA with --cacert FILE");
        *fatal = true;
        ERR_clear_error();
    } else if (e == SSL_ERROR_SYSCALL) {
        snprintf(err, errlen, "TLS handshake with %s: %s", name,
                 sys ? strerror(sys) : "the server closed the connection");
        ERR_clear_error();
    } else {
        char why[160];
        http_tls_last_error(why, sizeof why);
        snprintf(err, errlen, "TLS handshake with %s: %s", name, why);
    }
    return -1;
}

ssize_t bench_tls_read(bench_conn *c, void *buf, size_t n)
{
    return http_tls_read(c->ssl, buf, n);
}

ssize_t bench_tls_write(bench_conn *c, const void *buf, size_t n)
{
    return http_tls_write(c->ssl, buf, n);
}

void bench_tls_close(bench_conn *c)
{
    if (!c->ssl)
        return;
    /* close_notify once, without waiting for the peer's (the socket closes
     * next): an established session stays resumable. */
    if (c->tls == BENCH_TLS_OPEN)
        SSL_shutdown(c->ssl);
    else if (!c->w->stopping)   /* closed mid-handshake: refused, reset or timed out */
        c->w->cs.hs_failed++;
    SSL_set_app_data(c->ssl, NULL);
    SSL_free(c->ssl);
    ERR_clear_error();
    c->ssl = NULL;
    c->tls = BENCH_TLS_DOWN;
}

void bench_tls_conn_free(bench_conn *c)
{
    bench_tls_close(c);
    if (c->sess) {
        SSL_SESSION_free(c->sess);
        c->sess = NULL;
    }
}
