/* gw_tls_int.h -- what gw_tls.c (contexts, keys) and gw_tls_conn.c (the
 * per-connection transport) share. See gw_tls.h for the design. */
#ifndef HSCALE_GATEWAY_GW_TLS_INT_H
#define HSCALE_GATEWAY_GW_TLS_INT_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/metrics.h"
#include "gateway/gw_tls.h"

#define GW_TLS_KEYS 3      /* the current ticket key and the two before it */

/* Why a handshake failed (hscale_gateway_tls_handshake_failures_total). */
enum {
    GW_TLS_FAIL_VERSION,     /* client offers only versions below tls_min_version */
    GW_TLS_FAIL_CIPHER,      /* no cipher in common */
    GW_TLS_FAIL_NOT_TLS,     /* plain HTTP or garbage on the TLS port */
    GW_TLS_FAIL_ALERT,       /* the client sent an alert (e.g. it refused our certificate) */
    GW_TLS_FAIL_CLOSED,      /* the client closed or reset mid-handshake */
    GW_TLS_FAIL_TIMEOUT,     /* no handshake within client_header_timeout */
    GW_TLS_FAIL_OTHER,
    GW_TLS_NFAIL
};
extern const char *const gw_tls_fail_names[GW_TLS_NFAIL];

typedef struct gw_tls_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
} gw_tls_key;

typedef struct gw_tls_name {
    char  *name;            /* lower case; "*.example.com" for a wildcard */
    size_t idx;             /* into ctx[] */
} gw_tls_name;

/* One generation of certificates: immutable once built. */
typedef struct gw_tls_set {
    SSL_CTX    **ctx;       /* [0] the default certificate */
    size_t       nctx;
    gw_tls_name *names;
    size_t       nnames;
} gw_tls_set;

struct gw_tls {
    pthread_rwlock_t lock;       /* set, keys, nkeys */
    gw_tls_set      *set;
    gw_tls_key       keys[GW_TLS_KEYS];   /* [0] seals new tickets */
    unsigned         nkeys;
    EVP_CIPHER      *aes;        /* AES-256-CBC, fetched once */
    uint64_t         rotate_us, next_rotate_us;   /* main thread only */
    unsigned         rotations;
    BIO_METHOD      *bio;          /* gw_tls_bio.c's socket BIO (without kTLS) */
    bool             ktls_wanted;  /* tls_ktls */
    bool             ktls_on;      /* ... and the kernel can: SSL_OP_ENABLE_KTLS set */
    _Atomic bool     path_logged;  /* "kTLS" or "userspace" said once */
    _Atomic uint32_t open;         /* TLS client connections */
    metric_series   *m_full, *m_resumed, *m_fail[GW_TLS_NFAIL], *m_sni_default;
    metric_series   *m_ktls, *m_user, *m_reloads;
};

void gw_tls_free_obj(gw_tls *t);
/* A new SSL on the current default context (read lock held briefly). */
SSL *gw_tls_ssl_new(gw_tls *t);
/* Counts a failed handshake under its reason. */
void gw_tls_count_failure(gw_tls *t, int reason);

/* gw_tls_bio.c: the client socket's BIO (reads skip an empty socket,
 * writes queue in c->tls_out). */
BIO_METHOD *gw_tls_bio_method_new(void);
BIO        *gw_tls_bio_new(const BIO_METHOD *m, gw_conn *c);
/* Writes c->tls_out: 0 all written, 1 the rest waits for EV_WRITE
 * (c->tls_out_blocked), -1 the socket failed. */
int         gw_tls_bio_push(gw_conn *c);

#endif
