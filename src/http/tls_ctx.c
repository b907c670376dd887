/* tls_ctx.c -- server TLS contexts with secure defaults, certificate and
 * key loading with a reason for every refusal, the self-signed
 * certificate of `hscale up --tls`, and non-blocking SSL I/O as read(2) /
 * write(2) (see tls_ctx.h).
 *
 * Loading never touches a context in use: callers build a new one and
 * swap it in, so a bad file leaves the running certificate serving. */
#include "http/tls_ctx.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void http_tls_last_error(char *out, size_t outlen)
{
    unsigned long e = ERR_peek_last_error();
    if (!e) {
        snprintf(out, outlen, "unknown error");
    } else {
        /* "error:0A000086:SSL routines::certificate verify failed" -> the reason */
        char es[256];
        ERR_error_string_n(e, es, sizeof es);
        const char *r = ERR_reason_error_string(e);
        const char *lib = ERR_lib_error_string(e);
        if (r)
            snprintf(out, outlen, "%s%s%s", lib ? lib : "", lib ? ": " : "", r);
        else
            snprintf(out, outlen, "%s", es);
    }
    ERR_clear_error();
}

static void fail(char *err, size_t errlen, const char *what, const char *path)
{
    char why[256];
    http_tls_last_error(why, sizeof why);
    snprintf(err, errlen, "tls: %s %s: %s", what, path ? path : "", why);
}

int http_tls_version(const char *text)
{
    if (!text || !*text || strcmp(text, "1.2") == 0)
        return TLS1_2_VERSION;
    if (strcmp(text, "1.3") == 0)
        return TLS1_3_VERSION;
    return 0;
}

SSL_CTX *http_tls_server_ctx(const http_tls_params *p, char *err, size_t errlen)
{
    int minv = http_tls_version(p->min_version);
    if (!minv) {
        snprintf(err, errlen, "tls: minimum version: expected 1.2 or 1.3, got '%s'", p->min_version);
        return NULL;
    }
    int maxv = p->max_version && *p->max_version ? http_tls_version(p->max_version) : TLS1_3_VERSION;
    if (!maxv || maxv < minv) {
        snprintf(err, errlen, "tls: maximum version: expected 1.2 or 1.3, not below the minimum, got '%s'",
                 p->max_version);
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        fail(err, errlen, "cannot create a context", "");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, minv);
    SSL_CTX_set_max_proto_version(ctx, maxv);
    /* Partial writes: the caller keeps the rest in its own buffer.
     * Released buffers: an idle connection holds no 16 KiB record buffers.
     * No auto chain: the chain sent is the certificate file's, as loaded;
     * without it OpenSSL would try to build one from the context's (empty)
     * store on every full handshake, an X509_verify_cert each time. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                          | SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE
                             | SSL_OP_NO_COMPRESSION);
    const char *ciphers = p->ciphers && *p->ciphers ? p->ciphers : HTTP_TLS_DEFAULT_CIPHERS;
    const char *suites = p->suites && *p->suites ? p->suites : HTTP_TLS_DEFAULT_SUITES;
    if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
        fail(err, errlen, "cipher list", ciphers);
        goto bad;
    }
    if (SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
        fail(err, errlen, "TLS 1.3 cipher suites", suites);
        goto bad;
    }
    if (SSL_CTX_set1_groups_list(ctx, HTTP_TLS_DEFAULT_GROUPS) != 1) {
        fail(err, errlen, "groups", HTTP_TLS_DEFAULT_GROUPS);
        goto bad;
    }
    if (!p->cert || !*p->cert || !p->key || !*p->key) {
        snprintf(err, errlen, "tls: a certificate and a key file are both needed");
        goto bad;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, p->cert) != 1) {
        fail(err, errlen, "certificate", p->cert);
        goto bad;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, p->key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            fail(err, errlen, "key does not match the certificate:", p->key);
        else
            fail(err, errlen, "key", p->key);
        goto bad;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        fail(err, errlen, "key does not match the certificate:", p->key);
        goto bad;
    }
    return ctx;
bad:
    SSL_CTX_free(ctx);
    return NULL;
}

void http_tls_server_sessions(SSL_CTX *ctx, http_tls_ticket_cb tickets)
{
    static const unsigned char sid[] = "hscale-gateway";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* A client that closes without close_notify (most do, after a
     * response) is an ordinary EOF: HTTP framing, not the close, says
     * where a message ends. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Records are read ahead into OpenSSL's buffer: one read(2) per
     * batch of records, not two per record (header, then body). */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (tickets) {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tickets);
        SSL_CTX_set_num_tickets(ctx, 1);   /* TLS 1.3: one ticket per handshake (default 2) */
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
}

int http_tls_select_http11(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                           const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = "\x08http/1.1";
    (void)ssl;
    (void)arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, h11, sizeof h11 - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;     /* no http/1.1 offered: go on without ALPN */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* ---- self-signed certificate ------------------------------------------ */

static bool files_load(const char *cert, const char *key)
{
    char err[512];
    http_tls_params p = { .cert = cert, .key = key };
    if (access(cert, R_OK) != 0 || access(key, R_OK) != 0)
        return false;
    SSL_CTX *ctx = http_tls_server_ctx(&p, err, sizeof err);
    SSL_CTX_free(ctx);
    return ctx != NULL;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ex)
        return -1;
    int rc = X509_add_ext(x, ex, -1) == 1 ? 0 : -1;
    X509_EXTENSION_free(ex);
    return rc;
}

/* Writes through a temporary file renamed into place, so a reader never
 * sees half a PEM; the key's file is created 0600. */
static int write_pem(const char *path, bool secret, X509 *x, EVP_PKEY *k, char *err, size_t errlen)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, secret ? 0600 : 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        snprintf(err, errlen, "tls: cannot write %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int ok = x ? PEM_write_X509(f, x) : PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    if (fclose(f) != 0 || ok != 1 || rename(tmp, path) != 0) {
        snprintf(err, errlen, "tls: cannot write %s", path);
        unlink(tmp);
        return -1;
    }
    return 0;
}

int http_tls_selfsigned(const char *cert_path, const char *key_path, int days,
                        char *err, size_t errlen)
{
    if (files_load(cert_path, key_path))
        return 0;
    int rc = -1;
    X509 *x = NULL;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    unsigned char serial[16];
    if (!k || !(x = X509_new()) || RAND_bytes(serial, sizeof serial) != 1) {
        fail(err, errlen, "self-signed certificate", "");
        goto out;
    }
    serial[0] &= 0x7f;                     /* a positive serial */
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    X509_NAME *name = X509_get_subject_name(x);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) || X509_set_version(x, 2) != 1
        || !X509_gmtime_adj(X509_getm_notBefore(x), -3600)
        || !X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400)
        || X509_set_pubkey(x, k) != 1
        || X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"hscale up", -1, -1, 0) != 1
        || X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0) != 1
        || X509_set_issuer_name(x, name) != 1
        || add_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") < 0
        || add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0
        || add_ext(x, NID_ext_key_usage, "serverAuth") < 0
        || X509_sign(x, k, EVP_sha256()) == 0) {
        BN_free(bn);
        fail(err, errlen, "self-signed certificate", "");
        goto out;
    }
    BN_free(bn);
    if (write_pem(key_path, true, NULL, k, err, errlen) < 0
        || write_pem(cert_path, false, x, NULL, err, errlen) < 0)
        goto out;
    rc = 1;
out:
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

static long tls_io_result(SSL *ssl, int rc)
{
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return 0;
    }
    int sys = errno;
    ERR_clear_error();
    errno = e == SSL_ERROR_SYSCALL && sys && sys != EAGAIN ? sys : EPROTO;
    return -1;
}

long http_tls_read(SSL *ssl, void *buf, size_t n)
{
    errno = 0;
    int rc = SSL_read(ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    return rc > 0 ? rc : tls_io_result(ssl, rc);
}

long http_tls_write(SSL *ssl, const void *buf, size_t n)
{
    errno = 0;
    int rc = SSL_write(ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    if (rc > 0)
        return rc;
    long r = tls_io_result(ssl, rc);
    if (r == 0) {   /* close_notify while writing: the peer is gone */
        errno = EPIPE;
        return -1;
    }
    return r;
}
