/* gw_tls.c -- the gateway's TLS contexts: certificates chosen by SNI,
 * reloads that keep open connections on their old certificate, ticket
 * keys shared by every worker and rotated on a schedule, ALPN and the
 * TLS metrics. The per-connection transport is gw_tls_conn.c.
 *
 * Why the ticket keys are ours and not OpenSSL's: OpenSSL makes random
 * ticket keys per SSL_CTX, so a reload (a new context) would make every
 * outstanding ticket useless, and they would never rotate. One key set
 * here, read by the ticket callback of every context, fixes both; the
 * contexts share it through their app data (SSL_CTX_set_app_data).
 *
 * Why no session cache: the server-side cache is a locked table inside
 * OpenSSL shared by all threads (a known handshake bottleneck of HAProxy
 * and nginx on OpenSSL 3); stateless tickets resume TLS 1.2 and 1.3 with
 * no shared mutable state but the key set, which is read-mostly.
 *
 * Locking: `lock` (rwlock) guards the certificate set and the key set.
 * Workers take it for reading at SSL_new, in the SNI callback and in the
 * ticket callback; reloads and rotations take it for writing briefly (the
 * expensive part, loading files, happens before). */
#include "gateway/gw_tls.h"

#include <ctype.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "core/ev.h"
#include "core/log.h"
#include "gateway/gw_proxy.h"
#include "gateway/gw_tls_int.h"
#include "http/tls_ctx.h"

const char *gw_tls_state_str(gw_tls_state s)
{
    switch (s) {
    case GW_TLS_HANDSHAKE:   return "handshake";
    case GW_TLS_ESTABLISHED: return "established";
    case GW_TLS_SHUTDOWN:    return "shutdown";
    case GW_TLS_FAILED:      return "failed";
    default:                 return "unknown";
    }
}

const char *const gw_tls_fail_names[GW_TLS_NFAIL] = {
    "protocol_version", "no_shared_cipher", "not_tls",
    "peer_alert", "closed", "timeout", "other",
};

/* ---- certificate sets -------------------------------------------------- */

static void set_free(gw_tls_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->nctx; i++)
        SSL_CTX_free(set->ctx[i]);
    for (size_t i = 0; i < set->nnames; i++)
        free(set->names[i].name);
    free(set->ctx);
    free(set->names);
    free(set);
}

static int add_name(gw_tls_set *set, const char *name, size_t len, size_t idx)
{
    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i < set->nnames; i++)
        if (strlen(set->names[i].name) == len && strncasecmp(set->names[i].name, name, len) == 0)
            return 0;          /* the first certificate listed with a name wins */
    gw_tls_name *n = realloc(set->names, (set->nnames + 1) * sizeof *n);
    if (!n)
        return -1;
    set->names = n;
    char *s = malloc(len + 1);
    if (!s)
        return -1;
    for (size_t i = 0; i < len; i++)
        s[i] = (char)tolower((unsigned char)name[i]);
    s[len] = '\0';
    set->names[set->nnames++] = (gw_tls_name){ s, idx };
    return 0;
}

/* The DNS names (and IP addresses, as text) a certificate is for: its
 * subjectAltName entries, or its CN when it has none (RFC 6125 6.4.4). */
static int index_names(gw_tls_set *set, SSL_CTX *ctx, size_t idx)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (!x)
        return 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int rc = 0, ndns = 0;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && rc == 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
            rc = add_name(set, (const char *)d, (size_t)ASN1_STRING_length(g->d.dNSName), idx);
            ndns++;
        }
    }
    GENERAL_NAMES_free(gens);
    if (rc == 0 && ndns == 0) {
        char cn[256];
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
        if (n > 0)
            rc = add_name(set, cn, (size_t)n, idx);
    }
    return rc;
}

/* The context for an SNI name: exact match, then a wildcard "*.rest"
 * matching one leading label; NULL when none (the default serves). */
static SSL_CTX *set_lookup(const gw_tls_set *set, const char *host)
{
    size_t hl = strlen(host);
    for (size_t i = 0; i < set->nnames; i++)
        if (strcasecmp(set->names[i].name, host) == 0)
            return set->ctx[set->names[i].idx];
    const char *dot = strchr(host, '.');
    if (!dot || dot == host)
        return NULL;
    size_t rl = hl - (size_t)(dot - host);      /* ".rest" */
    for (size_t i = 0; i < set->nnames; i++) {
        const char *n = set->names[i].name;
        if (n[0] == '*' && strlen(n + 1) == rl && strcasecmp(n + 1, dot) == 0)
            return set->ctx[set->names[i].idx];
    }
    return NULL;
}

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    gw_tls *t = arg;
    (void)alert;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!host || !*host)
        return SSL_TLSEXT_ERR_NOACK;
    pthread_rwlock_rdlock(&t->lock);
    SSL_CTX *ctx = set_lookup(t->set, host);
    if (ctx && ctx != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, ctx);       /* takes its own reference */
    pthread_rwlock_unlock(&t->lock);
    if (!ctx) {
        metrics_inc(t->m_sni_default);   /* served by the default certificate */
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ---- ticket keys --------------------------------------------------------- */

static int new_key(gw_tls_key *k)
{
    return RAND_bytes(k->name, sizeof k->name) == 1 && RAND_bytes(k->aes, sizeof k->aes) == 1
           && RAND_bytes(k->hmac, sizeof k->hmac) == 1 ? 0 : -1;
}

/* OpenSSL's ticket callback: enc=1 seals a new ticket under the current
 * key; enc=0 finds the key a ticket names. Returns 1 (sealed), 2 (use it
 * and issue a fresh ticket), 0 (unknown or retired key: full handshake),
 * -1 (error). */
static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                     EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
    gw_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!t)
        return -1;
    int rc = -1;
    const gw_tls_key *k = NULL;
    pthread_rwlock_rdlock(&t->lock);
    if (enc) {
        k = &t->keys[0];
        if (RAND_bytes(iv, 16) == 1 && EVP_EncryptInit_ex(ectx, t->aes, NULL, k->aes, iv) == 1) {
            memcpy(name, k->name, 16);
            rc = 1;
        }
    } else {
        unsigned i = 0;
        while (i < t->nkeys && memcmp(name, t->keys[i].name, 16) != 0)
            i++;
        if (i == t->nkeys) {
            rc = 0;
        } else {
            k = &t->keys[i];
            /* 2: a fresh ticket. TLS 1.3 clients use a ticket once (RFC
             * 8446 C.4; OpenSSL's client does), so without a new one every
             * other reconnection would be a full handshake; a TLS 1.2
             * client keeps reusing its ticket, which needs renewing only
             * once its key is no longer the current one (as OpenSSL's own
             * keys do): sealing one costs a cipher, a MAC and the bytes. */
            int renew = i > 0 || SSL_version(ssl) >= TLS1_3_VERSION ? 2 : 1;
            rc = EVP_DecryptInit_ex(ectx, t->aes, NULL, k->aes, iv) == 1 ? renew : -1;
        }
    }
    if (rc > 0) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof k->hmac),
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end(),
        };
        if (EVP_MAC_CTX_set_params(hctx, params) != 1)
            rc = -1;
    }
    pthread_rwlock_unlock(&t->lock);
    return rc;
}

/* ---- kTLS ---------------------------------------------------------------- */

/* Can this kernel take TLS records at all? The tls ULP is listed once
 * registered (built in or loaded); a module that is installed but not yet
 * loaded is loaded by the first TCP_ULP "tls" request. Without either,
 * every connection would pay two failing setsockopt calls for nothing. */
static bool ktls_kernel(char *why, size_t whylen)
{
    char ulps[256] = "";
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
    if (f) {
        if (!fgets(ulps, sizeof ulps, f))
            ulps[0] = '\0';
        fclose(f);
    }
    ulps[strcspn(ulps, "\n")] = '\0';
    for (char *p = ulps, *tok; (tok = strtok_r(p, " ", &p));)
        if (strcmp(tok, "tls") == 0)
            return true;
    struct utsname u;
    char mod[512];
    if (uname(&u) == 0) {
        snprintf(mod, sizeof mod, "/lib/modules/%s/kernel/net/tls", u.release);
        if (access(mod, F_OK) == 0)
            return true;
    }
    snprintf(why, whylen, "the kernel has no tls module (tcp_available_ulp: %s)", ulps[0] ? ulps : "none");
    return false;
}

/* ---- building ------------------------------------------------------------ */

static SSL_CTX *ctx_load(gw_tls *t, const gw_config *cfg, const char *cert, const char *key,
                         char *err, size_t errlen)
{
    http_tls_params p = {
        .cert = cert, .key = key,
        .min_version = cfg->tls_min_version == GW_CFG_TLS_13 ? "1.3" : "1.2",
        .max_version = cfg->tls_max_version == GW_CFG_TLS_12 ? "1.2" : "1.3",
        .ciphers = cfg->tls_ciphers, .suites = cfg->tls_ciphersuites,
    };
    SSL_CTX *ctx = http_tls_server_ctx(&p, err, errlen);
    if (!ctx)
        return NULL;
    http_tls_server_sessions(ctx, cfg->tls_tickets ? ticket_cb : NULL);
    if (t->ktls_on)
        SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    SSL_CTX_set_alpn_select_cb(ctx, http_tls_select_http11, NULL);
    SSL_CTX_set_app_data(ctx, t);
    return ctx;
}

static gw_tls_set *set_build(gw_tls *t, const gw_config *cfg, char *err, size_t errlen)
{
    gw_tls_set *set = calloc(1, sizeof *set);
    size_t n = 1 + cfg->ntls_certs;
    if (!set || !(set->ctx = calloc(n, sizeof *set->ctx))) {
        free(set);
        snprintf(err, errlen, "tls: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *cert = i == 0 ? cfg->tls_cert : cfg->tls_certs[i - 1].cert;
        const char *key = i == 0 ? cfg->tls_key : cfg->tls_certs[i - 1].key;
        char why[600];
        SSL_CTX *ctx = ctx_load(t, cfg, cert, key, why, sizeof why);
        if (!ctx) {
            if (i == 0)
                snprintf(err, errlen, "tls_cert: %s", why);
            else
                snprintf(err, errlen, "tls_certs[%zu]: %s", i - 1, why);
            set_free(set);
            return NULL;
        }
        set->ctx[set->nctx++] = ctx;
        if (index_names(set, ctx, i) < 0) {
            snprintf(err, errlen, "tls: out of memory");
            set_free(set);
            return NULL;
        }
    }
    return set;
}

static double open_gauge(void *arg)
{
    const gw_tls *t = arg;
    return (double)atomic_load_explicit(&t->open, memory_order_relaxed);
}

static void metrics_setup(gw_tls *t, metrics_registry *reg)
{
    static const char *const kind[] = { "kind", NULL }, *const reason[] = { "reason", NULL };
    static const char *const none[] = { NULL };
    metric_family *fh = metrics_family(reg, "hscale_gateway_tls_handshakes_total",
        "TLS handshakes completed on the client listener: \"full\" or \"resumed\" (session ticket).",
        METRIC_COUNTER, kind);
    static const char *const full[] = { "full", NULL }, *const resumed[] = { "resumed", NULL };
    t->m_full = metrics_series(fh, full);
    t->m_resumed = metrics_series(fh, resumed);
    metric_family *ff = metrics_family(reg, "hscale_gateway_tls_handshake_failures_total",
        "TLS handshakes that failed, by reason.", METRIC_COUNTER, reason);
    for (int i = 0; i < GW_TLS_NFAIL; i++) {
        const char *lv[] = { gw_tls_fail_names[i], NULL };
        t->m_fail[i] = metrics_series(ff, lv);
    }
    metric_series *open = metrics_series(metrics_family(reg, "hscale_gateway_tls_connections",
        "Open TLS client connections (handshaking or established).", METRIC_GAUGE, none), none);
    metrics_gauge_fn_set(open, open_gauge, t);
    t->m_sni_default = metrics_series(metrics_family(reg, "hscale_gateway_tls_sni_default_total",
        "Handshakes whose SNI name no certificate has (served the default certificate).",
        METRIC_COUNTER, none), none);
    static const char *const path[] = { "path", NULL };
    metric_family *fk = metrics_family(reg, "hscale_gateway_tls_record_path_total",
        "Established TLS connections by where records are encrypted: \"ktls\" (kernel, send and/or "
        "receive) or \"userspace\" (OpenSSL).", METRIC_COUNTER, path);
    static const char *const ktls[] = { "ktls", NULL }, *const user[] = { "userspace", NULL };
    t->m_ktls = metrics_series(fk, ktls);
    t->m_user = metrics_series(fk, user);
    t->m_reloads = metrics_series(metrics_family(reg, "hscale_gateway_tls_reloads_total",
        "Certificate reloads that took effect (SIGHUP or POST /api/v1/tls/reload).",
        METRIC_COUNTER, none), none);
}

int gw_tls_init(gw_rt *rt, const gw_config *cfg, char *err, size_t errlen)
{
    if (!cfg->tls_listen)
        return 0;
    gw_tls *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "tls: out of memory");
        return -1;
    }
    pthread_rwlock_init(&t->lock, NULL);
    /* Fetched once: an implicit fetch per ticket would look the cipher
     * up in the provider store (a lock) on every handshake. */
    t->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    t->rotate_us = cfg->tls_ticket_rotate_us;
    t->ktls_wanted = cfg->tls_ktls;
    char why[320] = "";
    t->ktls_on = cfg->tls_ktls && ktls_kernel(why, sizeof why);
    if (!cfg->tls_ktls)
        log_info("TLS records: userspace OpenSSL (tls_ktls is off)");
    else if (!t->ktls_on)
        log_info("TLS records: userspace OpenSSL: %s", why);
    /* kTLS takes records into the kernel only on OpenSSL's socket BIO. */
    if (!t->ktls_on && !(t->bio = gw_tls_bio_method_new())) {
        snprintf(err, errlen, "tls: out of memory");
        gw_tls_free_obj(t);
        return -1;
    }
    if (!t->aes || new_key(&t->keys[0]) < 0) {
        snprintf(err, errlen, "tls: cannot make a ticket key");
        gw_tls_free_obj(t);
        return -1;
    }
    t->nkeys = 1;
    t->next_rotate_us = ev_monotonic_us() + t->rotate_us;
    if (!(t->set = set_build(t, cfg, err, errlen))) {
        gw_tls_free_obj(t);
        return -1;
    }
    metrics_setup(t, rt->reg);
    rt->tls = t;
    char desc[400];
    gw_tls_describe(rt, desc, sizeof desc);
    log_info("TLS: %zu certificate(s), %zu SNI names; default %s; minimum TLS %s; tickets %s",
             t->set->nctx, t->set->nnames, desc, cfg->tls_min_version == GW_CFG_TLS_13 ? "1.3" : "1.2",
             cfg->tls_tickets ? "on (keys shared by all workers)" : "off");
    return 0;
}

void gw_tls_free_obj(gw_tls *t)
{
    if (!t)
        return;
    set_free(t->set);
    EVP_CIPHER_free(t->aes);
    BIO_meth_free(t->bio);
    OPENSSL_cleanse(t->keys, sizeof t->keys);
    pthread_rwlock_destroy(&t->lock);
    free(t);
}

void gw_tls_free(gw_rt *rt)
{
    gw_tls_free_obj(rt->tls);
    rt->tls = NULL;
}

int gw_tls_reload(gw_rt *rt, const gw_config *cfg, char *err, size_t errlen)
{
    gw_tls *t = rt->tls;
    if (!t) {
        snprintf(err, errlen, "no TLS listener (tls_listen is not set)");
        return -1;
    }
    if (!cfg->tls_listen) {
        snprintf(err, errlen, "tls_listen was removed: listeners change only with a restart");
        return -1;
    }
    gw_tls_set *n = set_build(t, cfg, err, errlen);
    if (!n)
        return -1;
    pthread_rwlock_wrlock(&t->lock);
    gw_tls_set *old = t->set;
    t->set = n;
    pthread_rwlock_unlock(&t->lock);
    /* Connections still on an old context hold their own references. */
    set_free(old);
    metrics_inc(t->m_reloads);
    return 0;
}

void gw_tls_tick(gw_rt *rt)
{
    gw_tls *t = rt->tls;
    if (!t || ev_monotonic_us() < t->next_rotate_us)
        return;
    gw_tls_key k;
    if (new_key(&k) < 0) {
        log_warn("TLS: cannot make a new ticket key; keeping the current one");
        t->next_rotate_us = ev_monotonic_us() + 1000000;
        return;
    }
    pthread_rwlock_wrlock(&t->lock);
    memmove(&t->keys[1], &t->keys[0], (GW_TLS_KEYS - 1) * sizeof t->keys[0]);
    t->keys[0] = k;
    if (t->nkeys < GW_TLS_KEYS)
        t->nkeys++;
    pthread_rwlock_unlock(&t->lock);
    OPENSSL_cleanse(&k, sizeof k);
    t->next_rotate_us = ev_monotonic_us() + t->rotate_us;
    t->rotations++;
    log_debug("TLS: ticket key rotated (%u keys accepted)", t->nkeys);
}

void gw_tls_describe(gw_rt *rt, char *out, size_t outlen)
{
    gw_tls *t = rt->tls;
    snprintf(out, outlen, "none");
    if (!t)
        return;
    pthread_rwlock_rdlock(&t->lock);
    X509 *x = SSL_CTX_get0_certificate(t->set->ctx[0]);
    if (x) {
        char subj[200] = "", until[64] = "";
        X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof subj);
        BIO *b = BIO_new(BIO_s_mem());
        if (b && ASN1_TIME_print(b, X509_get0_notAfter(x)) == 1) {
            int n = BIO_read(b, until, sizeof until - 1);
            until[n > 0 ? n : 0] = '\0';
        }
        BIO_free(b);
        EVP_PKEY *pk = X509_get0_pubkey(x);
        snprintf(out, outlen, "%s (%s, until %s)", subj,
                 pk && EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC ? "ECDSA" : "RSA", until);
    }
    pthread_rwlock_unlock(&t->lock);
}

SSL *gw_tls_ssl_new(gw_tls *t)
{
    pthread_rwlock_rdlock(&t->lock);
    SSL *ssl = SSL_new(t->set->ctx[0]);
    pthread_rwlock_unlock(&t->lock);
    return ssl;
}
