/* test_tls_ctx.c -- the shared server TLS contexts (http/tls_ctx.c): the
 * self-signed certificate of `hscale up --tls` (made once, key 0600,
 * localhost names, kept when it loads), the refusal reasons a reload
 * reports (not PEM, key of another certificate, bad version or cipher
 * list), and the secure defaults (TLS 1.2 at least, only ECDHE with AEAD
 * ciphers for 1.2). */
#include <criterion/criterion.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/tls_ctx.h"

static char dir[] = "/tmp/hscale-tlsctx-XXXXXX";
static char cert[256], key[256], cert2[256], key2[256];

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(cert2, sizeof cert2, "%s/sub/cert.pem", dir);
    snprintf(key2, sizeof key2, "%s/sub/key.pem", dir);
    char sub[300];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    cr_assert_eq(mkdir(sub, 0700), 0);
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(tls_ctx, .init = setup, .fini = teardown);

Test(tls_ctx, selfsigned_made_once_for_localhost)
{
    char err[512] = "";
    cr_assert_eq(http_tls_selfsigned(cert, key, 30, err, sizeof err), 1, "%s", err);
    struct stat st;
    cr_assert_eq(stat(key, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    /* it loads, and names localhost and 127.0.0.1 */
    http_tls_params p = { .cert = cert, .key = key };
    SSL_CTX *ctx = http_tls_server_ctx(&p, err, sizeof err);
    cr_assert_not_null(ctx, "%s", err);
    X509 *x = SSL_CTX_get0_certificate(ctx);
    cr_assert_eq(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    cr_assert_eq(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
    cr_assert_eq(EVP_PKEY_get_base_id(X509_get0_pubkey(x)), EVP_PKEY_EC);
    SSL_CTX_free(ctx);
    /* a second call keeps the pair that loads */
    struct stat before;
    cr_assert_eq(stat(cert, &before), 0);
    cr_assert_eq(http_tls_selfsigned(cert, key, 30, err, sizeof err), 0, "%s", err);
    struct stat after;
    cr_assert_eq(stat(cert, &after), 0);
    cr_assert_eq(before.st_ino, after.st_ino);
}

Test(tls_ctx, refusals_name_the_file_and_the_reason)
{
    char err[512] = "";
    cr_assert_eq(http_tls_selfsigned(cert, key, 30, err, sizeof err), 1, "%s", err);
    cr_assert_eq(http_tls_selfsigned(cert2, key2, 30, err, sizeof err), 1, "%s", err);
    /* a key of another certificate */
    http_tls_params p = { .cert = cert, .key = key2 };
    cr_assert_null(http_tls_server_ctx(&p, err, sizeof err));
    cr_assert(strstr(err, "does not match") && strstr(err, key2), "%s", err);
    /* not PEM */
    FILE *f = fopen(cert2, "w");
    cr_assert_not_null(f);
    fputs("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    p = (http_tls_params){ .cert = cert2, .key = key2 };
    cr_assert_null(http_tls_server_ctx(&p, err, sizeof err));
    cr_assert(strstr(err, "certificate") && strstr(err, cert2), "%s", err);
    /* a missing file */
    p = (http_tls_params){ .cert = "/nonexistent/c.pem", .key = key };
    cr_assert_null(http_tls_server_ctx(&p, err, sizeof err));
    cr_assert(strstr(err, "/nonexistent/c.pem"), "%s", err);
    /* versions and cipher lists */
    p = (http_tls_params){ .cert = cert, .key = key, .min_version = "1.1" };
    cr_assert_null(http_tls_server_ctx(&p, err, sizeof err));
    cr_assert(strstr(err, "minimum version"), "%s", err);
    p = (http_tls_params){ .cert = cert, .key = key, .min_version = "1.3", .max_version = "1.2" };
    cr_assert_null(http_tls_server_ctx(&p, err, sizeof err));
    cr_assert(strstr(err, "maximum version"), "%s", err);
    p = (http_tls_params){ .cert = cert, .key = key, .ciphers = "NO-SUCH-CIPHER" };
    cr_assert_null(http_tls_server_ctx(&p, err, sizeof err));
    cr_assert(strstr(err, "cipher list"), "%s", err);
}

Test(tls_ctx, defaults_are_tls12_plus_ecdhe_aead)
{
    char err[512] = "";
    cr_assert_eq(http_tls_selfsigned(cert, key, 30, err, sizeof err), 1, "%s", err);
    http_tls_params p = { .cert = cert, .key = key };
    SSL_CTX *ctx = http_tls_server_ctx(&p, err, sizeof err);
    cr_assert_not_null(ctx, "%s", err);
    cr_assert_eq(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    cr_assert(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
    SSL *ssl = SSL_new(ctx);
    STACK_OF(SSL_CIPHER) *cs = SSL_get1_supported_ciphers(ssl);
    cr_assert_not_null(cs);
    int n12 = 0;
    for (int i = 0; i < sk_SSL_CIPHER_num(cs); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(cs, i);
        const char *name = SSL_CIPHER_get_name(c);
        cr_assert(SSL_CIPHER_is_aead(c), "%s is not AEAD", name);
        if (strncmp(name, "TLS_", 4) != 0) {        /* not a TLS 1.3 suite */
            cr_assert(strncmp(name, "ECDHE-", 6) == 0, "%s is not ECDHE", name);
            n12++;
        }
    }
    cr_assert_geq(n12, 2);    /* ECDSA ones at least (the certificate is ECDSA) */
    sk_SSL_CIPHER_free(cs);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}
