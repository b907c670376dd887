/* tls_floor.c -- what OpenSSL alone costs a TLS server per connection, the
 * floor under every proxy that uses it: no socket, no event loop, no proxy.
 *
 * A server SSL and an OpenSSL client SSL (default settings, as wrk's and
 * `openssl s_time`'s) talk through an in-memory BIO pair. Per connection
 * the server does what a proxy's TLS layer must for one request on a new
 * connection: SSL_new, the handshake, read the request, write a response
 * (and, in TLS 1.3, the session ticket), close_notify, SSL_free. Only the
 * server's calls are timed (thread CPU time; the timer's own cost,
 * calibrated first, is taken off), so the client's half is not counted.
 *
 * The server's context is the gateway's: http_tls_server_ctx() (protocols,
 * ciphers, groups, modes) and http_tls_server_sessions() (stateless tickets
 * through a key callback, one TLS 1.3 ticket, no session cache,
 * read-ahead), and ALPN http/1.1 (http_tls_select_http11), as gw_tls.c.
 *
 * Usage: tls_floor CERT KEY full|resumed 1.2|1.3 [connections, 2000]
 * Prints: "<mode> TLS <v>: <µs> us/conn (server, OpenSSL only), <r>/<n> resumed"
 * A run whose connections did not resume as asked exits 1. */
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/tls_ctx.h"

static unsigned char tf_aes_key[32], tf_hmac_key[32], tf_key_name[16];
static const EVP_CIPHER *tf_aes;
static double tf_spent_us;   /* server CPU so far, timer cost included */
static long tf_timed;        /* how many spans were timed */

/* The gateway's ticket callback, minus its key ring: one key. */
static int tf_ticket_cb(SSL *ssl, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                        EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
    int rc;
    if (enc) {
        if (RAND_bytes(iv, 16) != 1 || EVP_EncryptInit_ex(ectx, tf_aes, NULL, tf_aes_key, iv) != 1)
            return -1;
        memcpy(name, tf_key_name, 16);
        rc = 1;
    } else {
        if (memcmp(name, tf_key_name, 16) != 0)
            return 0;
        if (EVP_DecryptInit_ex(ectx, tf_aes, NULL, tf_aes_key, iv) != 1)
            return -1;
        rc = SSL_version(ssl) >= TLS1_3_VERSION ? 2 : 1;   /* as the gateway: renew in TLS 1.3 */
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, tf_hmac_key, sizeof tf_hmac_key),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params) == 1 ? rc : -1;
}

static double tf_cpu_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* Times one server-side statement. */
#define TF_TIMED(stmt)                         \
    do {                                       \
        double tf_t0_ = tf_cpu_us();           \
        stmt;                                  \
        tf_spent_us += tf_cpu_us() - tf_t0_;   \
        tf_timed++;                            \
    } while (0)

/* What one empty timed span costs (two clock reads), to take off. */
static double tf_timer_cost_us(void)
{
    double t0 = tf_cpu_us();
    for (int i = 0; i < 20000; i++)
        (void)tf_cpu_us();
    return 2 * (tf_cpu_us() - t0) / 20000;
}

static SSL_CTX *tf_server_ctx(const char *cert, const char *key, const char *maxv)
{
    char err[512];
    http_tls_params p = { .cert = cert, .key = key, .min_version = "1.2", .max_version = maxv };
    SSL_CTX *ctx = http_tls_server_ctx(&p, err, sizeof err);
    if (!ctx) {
        fprintf(stderr, "tls_floor: %s\n", err);
        return NULL;
    }
    http_tls_server_sessions(ctx, tf_ticket_cb);
    SSL_CTX_set_alpn_select_cb(ctx, http_tls_select_http11, NULL);
    return ctx;
}

/* One connection; returns 1 resumed, 0 full, -1 failed. */
static int tf_connection(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION **sess)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    char buf[4096];
    BIO *sbio, *cbio;
    if (BIO_new_bio_pair(&sbio, 0, &cbio, 0) != 1)
        return -1;
    SSL *c = SSL_new(cctx), *s;
    TF_TIMED(s = SSL_new(sctx));
    if (!c || !s)
        return -1;
    SSL_set_bio(c, cbio, cbio);
    TF_TIMED(SSL_set_bio(s, sbio, sbio); SSL_set_accept_state(s));
    SSL_set_tlsext_host_name(c, "localhost");
    if (sess && *sess)
        SSL_set_session(c, *sess);
    SSL_set_connect_state(c);
    int cdone = 0, sdone = 0, rc = -1, n;
    for (int round = 0; round < 16 && !(cdone && sdone); round++) {
        if (!cdone)
            cdone = SSL_do_handshake(c) == 1;
        if (!sdone) {
            TF_TIMED(n = SSL_do_handshake(s));
            sdone = n == 1;
        }
    }
    if (cdone && sdone && SSL_write(c, req, sizeof req - 1) > 0) {
        TF_TIMED(n = SSL_read(s, buf, sizeof buf));
        if (n > 0) {
            TF_TIMED(n = SSL_write(s, resp, sizeof resp - 1); SSL_shutdown(s));
            if (n > 0 && SSL_read(c, buf, sizeof buf) > 0)
                rc = SSL_session_reused(c);
        }
    }
    if (rc >= 0 && sess) {
        SSL_SESSION_free(*sess);
        *sess = SSL_get1_session(c);
    }
    SSL_shutdown(c);   /* a session closed without it is not offered again */
    SSL_free(c);
    TF_TIMED(SSL_free(s));
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 5 || (strcmp(argv[3], "full") != 0 && strcmp(argv[3], "resumed") != 0)
        || (strcmp(argv[4], "1.2") != 0 && strcmp(argv[4], "1.3") != 0)) {
        fprintf(stderr, "usage: tls_floor CERT KEY full|resumed 1.2|1.3 [connections]\n");
        return 2;
    }
    int conns = argc > 5 ? atoi(argv[5]) : 2000;
    bool resume = strcmp(argv[3], "resumed") == 0;
    if (conns < 10) {
        fprintf(stderr, "tls_floor: connections: expected at least 10, got '%s'\n", argv[5]);
        return 2;
    }
    tf_aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (!tf_aes || RAND_bytes(tf_aes_key, 32) != 1 || RAND_bytes(tf_hmac_key, 32) != 1
        || RAND_bytes(tf_key_name, 16) != 1)
        return 1;
    SSL_CTX *sctx = tf_server_ctx(argv[1], argv[2], argv[4]);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    if (!sctx || !cctx)
        return 1;
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_set_alpn_protos(cctx, (const unsigned char *)"\x08http/1.1", 9);

    SSL_SESSION *sess = NULL;
    /* A warm-up connection (first-use costs; the session to resume). */
    if (tf_connection(sctx, cctx, resume ? &sess : NULL) < 0) {
        fprintf(stderr, "tls_floor: the first connection failed\n");
        ERR_print_errors_fp(stderr);
        return 1;
    }
    double timer = tf_timer_cost_us();
    tf_spent_us = 0;
    tf_timed = 0;
    int resumed = 0;
    for (int i = 0; i < conns; i++) {
        int r = tf_connection(sctx, cctx, resume ? &sess : NULL);
        if (r < 0) {
            fprintf(stderr, "tls_floor: connection %d failed\n", i);
            ERR_print_errors_fp(stderr);
            return 1;
        }
        resumed += r;
    }
    printf("%s TLS %s: %.1f us/conn (server, OpenSSL only), %d/%d resumed\n", argv[3], argv[4],
           (tf_spent_us - tf_timed * timer) / conns, resumed, conns);
    SSL_SESSION_free(sess);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    return resumed == (resume ? conns : 0) ? 0 : 1;
}
