/* tls_ctx.h -- server-side TLS contexts (OpenSSL), shared by the admin
 * listeners (server_tls.c) and the gateway's client listeners (gw_tls.c):
 * one place builds a context with the project's secure defaults, loads a
 * certificate chain and its key, and says in one line why a file was
 * refused. Also makes the self-signed certificate of `hscale up --tls`,
 * and maps SSL_read/SSL_write on a non-blocking socket onto read(2)/write(2)
 * for the non-blocking TLS clients (the load tool, the gateway's https
 * pools), so each handles EAGAIN, EOF and errors as it does in plain text.
 *
 * Secure defaults: TLS 1.2 at least; for TLS 1.2 only ECDHE key exchange
 * with AEAD ciphers (AES-GCM, ChaCha20-Poly1305), the server's order; no
 * renegotiation, no compression. TLS 1.3 suites are all AEAD. */
#ifndef HSCALE_HTTP_TLS_CTX_H
#define HSCALE_HTTP_TLS_CTX_H

#include <stdbool.h>
#include <stddef.h>

struct ssl_ctx_st;

#define HTTP_TLS_DEFAULT_CIPHERS                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"           \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"           \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define HTTP_TLS_DEFAULT_SUITES \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define HTTP_TLS_DEFAULT_GROUPS "X25519:P-256:P-384"

typedef struct http_tls_params {
    const char *cert;          /* PEM chain file (leaf first) */
    const char *key;           /* PEM private key file */
    const char *min_version;   /* "1.2" or "1.3"; NULL: 1.2 */
    const char *max_version;   /* "1.2" or "1.3"; NULL: 1.3 */
    const char *ciphers;       /* TLS 1.2 list; NULL: HTTP_TLS_DEFAULT_CIPHERS */
    const char *suites;        /* TLS 1.3 list; NULL: HTTP_TLS_DEFAULT_SUITES */
} http_tls_params;

/* A server context with the defaults above and the certificate and key
 * loaded and matched. NULL with err set ("tls: certificate FILE: reason"). */
struct ssl_ctx_st *http_tls_server_ctx(const http_tls_params *p, char *err, size_t errlen);

struct ssl_st;
struct evp_cipher_ctx_st;
struct evp_mac_ctx_st;
/* A ticket-key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb's type). */
typedef int (*http_tls_ticket_cb)(struct ssl_st *ssl, unsigned char name[16], unsigned char *iv,
                                  struct evp_cipher_ctx_st *ectx, struct evp_mac_ctx_st *hctx, int enc);

/* The gateway's sessions and records on a server context: no server-side
 * session cache; stateless tickets sealed by `tickets` (NULL: no tickets),
 * one per TLS 1.3 handshake; a close without close_notify is an ordinary
 * EOF; records read ahead. bench/tls_floor.c measures with the same. */
void http_tls_server_sessions(struct ssl_ctx_st *ctx, http_tls_ticket_cb tickets);

/* An ALPN select callback (SSL_CTX_set_alpn_select_cb) for an HTTP/1.1
 * server: http/1.1 when the client offers it, else no ALPN at all (the
 * handshake goes on; a client offering only h2 gets HTTP/1.1 unasked). */
int http_tls_select_http11(struct ssl_st *ssl, const unsigned char **out, unsigned char *outlen,
                           const unsigned char *in, unsigned int inlen, void *arg);

/* "1.2" -> TLS1_2_VERSION, "1.3" -> TLS1_3_VERSION; 0 for anything else. */
int http_tls_version(const char *text);

/* The last OpenSSL error as text (and the queue cleared). */
void http_tls_last_error(char *out, size_t outlen);

/* SSL_read / SSL_write on a non-blocking socket, answered as read(2) and
 * write(2) answer: bytes; 0 at the peer's close_notify (read); -1 with
 * errno EAGAIN (the record wants the socket readable or writable), the
 * socket's own errno, EPIPE (a close_notify met while writing) or EPROTO
 * (a TLS failure). The error queue is left empty. Used by every
 * non-blocking TLS client: the load tool and the gateway's https pools. */
long http_tls_read(struct ssl_st *ssl, void *buf, size_t n);
long http_tls_write(struct ssl_st *ssl, const void *buf, size_t n);

/* Writes a self-signed ECDSA P-256 certificate for localhost, 127.0.0.1
 * and ::1 (valid `days` days) and its key (mode 0600) unless both files
 * already exist and load. 1 made, 0 kept, -1 with err set. */
int http_tls_selfsigned(const char *cert_path, const char *key_path, int days,
                        char *err, size_t errlen);

#endif
