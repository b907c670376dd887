/* gw_upstream_tls.c -- https backends: TLS as the transport of an
 * exchange's upstream socket, below the HTTP framing of gw_upstream.c and
 * gw_response.c, which stays as it is.
 *
 * One client context per https pool, built with the snapshot (so a bad
 * tls_ca_file is refused by the reload that names it, and the running
 * snapshot stays): TLS 1.2 and up, ALPN http/1.1, verification of the
 * chain and of the name (tls_server_name, else the member's host; an IP is
 * checked against the certificate's IP addresses and sent without SNI)
 * unless tls_verify is false. A connection keeps a reference on its
 * context, so a reload never pulls one from under a live connection.
 *
 * Resumption: the new-session callback keeps the member's newest sessions
 * (a TLS 1.2 session, or each TLS 1.3 ticket: servers send two per
 * connection), shared by every worker; a connect to that member takes one
 * and offers it, if it came from the same context (a reload with another
 * CA must verify afresh). A TLS 1.3 ticket is used once (RFC 8446 C.4; a
 * server with single-use tickets refuses it the second time, and 50
 * concurrent connects offering one ticket made a third of them full
 * handshakes), except the last one kept (see utls_pop); a TLS 1.2 session
 * that resumed goes back for the next one. Idle TLS
 * connections go back to the worker's idle pool with their SSL (hc_pool's
 * data), so keep-alive to an https backend costs no handshake at all.
 *
 * A failed handshake is a 502 (retried on another member like a refused
 * connect: nothing was sent), counted in
 * hscale_gateway_upstream_tls_handshakes_total{result="failed"} and logged
 * with its reason, at most once a second per member.
 *
 * Invariants: ex->ussl is set exactly when ex->utls is not GW_UTLS_NONE;
 * the SSL's app data is the member (pinned by the exchange, or by the
 * worker's hold while idle); the OpenSSL error queue is empty on return. */
#include "gateway/gw_proxy.h"
#include "http/tls_ctx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

typedef struct gw_utls {
    SSL_CTX *ctx;
    char    *server_name;    /* tls_server_name, or NULL: each member's host */
    bool     verify;
    char     pool[GW_NAME_MAX];
} gw_utls;

const char *gw_utls_state_str(gw_utls_state s)
{
    switch (s) {
    case GW_UTLS_NONE:      return "none";
    case GW_UTLS_CONNECT:   return "connect";
    case GW_UTLS_HANDSHAKE: return "handshake";
    case GW_UTLS_OPEN:      return "open";
    }
    return "?";
}

static void utls_lock(gw_member *m)
{
    while (atomic_flag_test_and_set_explicit(&m->tls_lock, memory_order_acquire))
        ;
}

static void utls_unlock(gw_member *m)
{
    atomic_flag_clear_explicit(&m->tls_lock, memory_order_release);
}

/* Adds a session (taking the caller's reference) to the member's stack:
 * a full stack drops its oldest, another context empties it. */
static void utls_push(gw_member *m, SSL_SESSION *sess, const SSL_CTX *ctx)
{
    SSL_SESSION *drop[GW_UTLS_SESSIONS + 1];
    unsigned nd = 0;
    utls_lock(m);
    if (m->tls_sess_ctx != ctx) {
        while (m->tls_nsess)
            drop[nd++] = m->tls_sess[--m->tls_nsess];
        m->tls_sess_ctx = ctx;
    }
    if (m->tls_nsess == GW_UTLS_SESSIONS) {
        drop[nd++] = m->tls_sess[0];
        memmove(&m->tls_sess[0], &m->tls_sess[1], (GW_UTLS_SESSIONS - 1) * sizeof m->tls_sess[0]);
        m->tls_nsess--;
    }
    m->tls_sess[m->tls_nsess++] = sess;
    utls_unlock(m);
    for (unsigned i = 0; i < nd; i++)
        SSL_SESSION_free(drop[i]);
}

/* The newest session of ctx (the caller's reference), or NULL. The last
 * one stays for the next connect too: a burst of connects would otherwise
 * find the stack empty and all make full handshakes, and most servers
 * (stateless tickets) accept a ticket twice; one that does not makes that
 * connect a full handshake, as it would have been anyway. */
static SSL_SESSION *utls_pop(gw_member *m, const SSL_CTX *ctx)
{
    SSL_SESSION *s = NULL;
    utls_lock(m);
    if (m->tls_nsess > 1 && m->tls_sess_ctx == ctx) {
        s = m->tls_sess[--m->tls_nsess];
    } else if (m->tls_nsess == 1 && m->tls_sess_ctx == ctx) {
        s = m->tls_sess[0];
        SSL_SESSION_up_ref(s);
    }
    utls_unlock(m);
    return s;
}

/* Keeps a session the member gave; returning 1 keeps OpenSSL's reference. */
static int utls_new_session(SSL *ssl, SSL_SESSION *sess)
{
    gw_member *m = SSL_get_app_data(ssl);
    if (!m)
        return 0;
    utls_push(m, sess, SSL_get_SSL_CTX(ssl));
    return 1;
}

gw_utls *gw_utls_new(const gw_pool_cfg *pc, size_t pi, char *err, size_t errlen)
{
    gw_utls *t = calloc(1, sizeof *t);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!t || !ctx || (pc->tls_server_name && !(t->server_name = strdup(pc->tls_server_name)))) {
        snprintf(err, errlen, "pools[%zu].tls: out of memory", pi);
        goto fail;
    }
    t->ctx = ctx;
    t->verify = pc->tls_verify;
    snprintf(t->pool, sizeof t->pool, "%s", pc->name ? pc->name : "");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                          | SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char alpn[] = "\x08http/1.1";
    if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1) != 0) {
        snprintf(err, errlen, "pools[%zu].tls: cannot set ALPN", pi);
        goto fail;
    }
    if (t->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = pc->tls_ca_file ? SSL_CTX_load_verify_locations(ctx, pc->tls_ca_file, NULL)
                                 : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            unsigned long e = ERR_peek_last_error();
            const char *why = e ? ERR_reason_error_string(e) : NULL;
            snprintf(err, errlen, "pools[%zu].tls_ca_file: cannot load '%s': %s (expected a PEM "
                     "file of CA certificates)", pi, pc->tls_ca_file ? pc->tls_ca_file : "(system)",
                     why ? why : "unreadable");
            goto fail;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, utls_new_session);
    return t;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    if (t)
        free(t->server_name);
    free(t);
    return NULL;
}

void gw_utls_free(gw_utls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t->server_name);
    free(t);
}

void gw_utls_member_free(gw_member *m)
{
    while (m->tls_nsess)
        SSL_SESSION_free(m->tls_sess[--m->tls_nsess]);
}

/* The member's host: its name without the port (and brackets). */
static void member_host(const gw_member *m, char *out, size_t outlen)
{
    const char *n = m->name, *colon = strrchr(n, ':'), *rb = strrchr(n, ']');
    size_t len = colon && (!rb || colon > rb) ? (size_t)(colon - n) : strlen(n);
    if (len >= 2 && n[0] == '[' && n[len - 1] == ']') {
        n++;
        len -= 2;
    }
    snprintf(out, outlen, "%.*s", (int)len, n);
}

static bool is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

int gw_utls_begin(gw_exchange *ex, const gw_utls *t)
{
    gw_member *m = ex->m;
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl || SSL_set_fd(ssl, ex->ufd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    SSL_set_app_data(ssl, m);
    char host[GW_NAME_MAX];
    const char *name = t->server_name;
    if (!name) {
        member_host(m, host, sizeof host);
        name = host;
    }
    bool ip = is_ip(name);
    if (!ip)
        SSL_set_tlsext_host_name(ssl, name);
    if (t->verify) {
        if (ip)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
        else
            SSL_set1_host(ssl, name);
    }
    SSL_SESSION *sess = utls_pop(m, t->ctx);
    if (sess) {
        SSL_set_session(ssl, sess);   /* takes its own reference */
        SSL_SESSION_free(sess);
    }
    SSL_set_connect_state(ssl);
    ERR_clear_error();
    ex->ussl = ssl;
    ex->utls = GW_UTLS_CONNECT;
    return 0;
}

static void hs_count(gw_exchange *ex, int k)
{
    if (ex->ps && ex->ps->tls_hs[k])
        metrics_inc(ex->ps->tls_hs[k]);
}

/* One log line a second per member: a refused certificate fails every
 * request to it, and the log must stay readable. */
static void log_failure(gw_exchange *ex, const char *why)
{
    gw_member *m = ex->m;
    uint64_t now = ev_monotonic_us(), last = atomic_load_explicit(&m->tls_log_us, memory_order_relaxed);
    if (last && now - last < 1000000)
        return;
    if (!atomic_compare_exchange_strong(&m->tls_log_us, &last, now))
        return;
    log_warn("TLS to %s in pool %s failed: %s", m->name, ex->pool_name, why);
}

int gw_utls_handshake(gw_exchange *ex)
{
    SSL *ssl = ex->ussl;
    ex->utls = GW_UTLS_HANDSHAKE;
    errno = 0;
    int rc = SSL_do_handshake(ssl);
    if (rc == 1) {
        ex->utls = GW_UTLS_OPEN;
        bool reused = SSL_session_reused(ssl);
        hs_count(ex, reused ? 1 : 0);
        /* A TLS 1.2 session stays valid for more connections (no new one
         * comes when it resumes); a TLS 1.3 ticket does not. */
        if (reused && SSL_version(ssl) < TLS1_3_VERSION) {
            SSL_SESSION *s = SSL_get1_session(ssl);
            if (s)
                utls_push(ex->m, s, SSL_get_SSL_CTX(ssl));
        }
        return 1;
    }
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    int sys = errno;
    hs_count(ex, 2);
    char why[300];
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
        snprintf(why, sizeof why, "certificate refused: %s (check the pool's tls_ca_file and "
                 "tls_server_name)", X509_verify_cert_error_string(v));
    } else if (e == SSL_ERROR_SYSCALL) {
        snprintf(why, sizeof why, "handshake: %s", sys ? strerror(sys) : "connection closed");
    } else {
        unsigned long le = ERR_peek_last_error();
        const char *r = le ? ERR_reason_error_string(le) : NULL;
        snprintf(why, sizeof why, "handshake: %s", r ? r : "failed");
    }
    ERR_clear_error();
    log_failure(ex, why);
    return -1;
}

void gw_utls_timed_out(gw_exchange *ex)
{
    hs_count(ex, 2);
    log_failure(ex, "handshake: timed out (connect_timeout)");
}

ssize_t gw_utls_read(gw_exchange *ex, void *p, size_t n)
{
    return http_tls_read(ex->ussl, p, n);
}

ssize_t gw_utls_write(gw_exchange *ex, const void *p, size_t n)
{
    return http_tls_write(ex->ussl, p, n);
}

static void utls_free_ssl(SSL *ssl, bool established)
{
    /* close_notify once, never waiting for the peer's: the session stays
     * resumable and the socket closes next. */
    if (established)
        SSL_shutdown(ssl);
    SSL_set_app_data(ssl, NULL);
    SSL_free(ssl);
    ERR_clear_error();
}

void gw_utls_close(gw_exchange *ex)
{
    if (!ex->ussl)
        return;
    utls_free_ssl(ex->ussl, ex->utls == GW_UTLS_OPEN);
    ex->ussl = NULL;
    ex->utls = GW_UTLS_NONE;
}

void gw_utls_shutdown_write(gw_exchange *ex)
{
    if (ex->ussl && ex->utls == GW_UTLS_OPEN)
        SSL_shutdown(ex->ussl);
    ERR_clear_error();
}

bool gw_utls_idle_fits(const gw_utls *t, void *data)
{
    if (!t || !data)
        return !t && !data;
    return SSL_get_SSL_CTX((SSL *)data) == t->ctx;
}

void gw_utls_idle_close(int fd, void *data)
{
    utls_free_ssl(data, true);
    close(fd);
}
