/* gw_config.c -- the `gateway:` configuration schema and its cross-field
 * checks.
 *
 * Defaults follow the seeds: health checks every 30 s with a 5 s timeout,
 * 2 passes to rise and 3 failures to fall (SurgiCase's ALB), sticky cookies
 * for 86400 s, /health/ready as the check path. Validation runs after the
 * whole document is read, so a route may name a pool defined below it; it
 * names the offending key and what was expected, and the loader's
 * all-or-nothing contract means a failed reload changes nothing. */
#include "gateway/gateway.h"
#include "http/tls_ctx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sock.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const cfg_field backend_fields[] = {
    { .key = "address", .type = CFG_ADDR, .offset = offsetof(gw_backend_cfg, address),
      .help = "backend host:port" },
    { .key = "weight", .type = CFG_INT, .offset = offsetof(gw_backend_cfg, weight), .def = "1",
      .min = 1, .max = 1000, .help = "relative share of the pool's traffic" },
    { .key = "backup", .type = CFG_BOOL, .offset = offsetof(gw_backend_cfg, backup), .def = "false",
      .help = "takes traffic only when every primary is down" },
};
static int backend_validate(void *obj, cfg_error *err)
{
    const gw_backend_cfg *b = obj;
    if (!b->address) {
        snprintf(err->key, sizeof err->key, "address");
        snprintf(err->msg, sizeof err->msg, "expected host:port, got nothing");
        return -1;
    }
    return 0;
}
static const cfg_schema backend_schema = { "backend", backend_fields, N(backend_fields), backend_validate };

static const cfg_field health_fields[] = {
    { .key = "enabled", .type = CFG_BOOL, .offset = offsetof(gw_health_cfg, enabled), .def = "true",
      .help = "run active health checks" },
    { .key = "path", .type = CFG_STRING, .offset = offsetof(gw_health_cfg, path), .def = "/health/ready",
      .help = "path requested by the check" },
    { .key = "interval", .type = CFG_DURATION, .offset = offsetof(gw_health_cfg, interval_us), .def = "30s",
      .min = 0.01, .max = 3600, .help = "time between checks" },
    { .key = "timeout", .type = CFG_DURATION, .offset = offsetof(gw_health_cfg, timeout_us), .def = "5s",
      .min = 0.001, .max = 600, .help = "a check slower than this fails" },
    { .key = "rise", .type = CFG_INT, .offset = offsetof(gw_health_cfg, rise), .def = "2",
      .min = 1, .max = 100, .help = "passes in a row to mark healthy" },
    { .key = "fall", .type = CFG_INT, .offset = offsetof(gw_health_cfg, fall), .def = "3",
      .min = 1, .max = 100, .help = "failures in a row to mark unhealthy" },
    { .key = "status_min", .type = CFG_INT, .offset = offsetof(gw_health_cfg, status_min), .def = "200",
      .min = 100, .max = 599, .help = "lowest healthy status" },
    { .key = "status_max", .type = CFG_INT, .offset = offsetof(gw_health_cfg, status_max), .def = "399",
      .min = 100, .max = 599, .help = "highest healthy status" },
};
static int health_validate(void *obj, cfg_error *err)
{
    const gw_health_cfg *h = obj;
    if (h->status_min > h->status_max) {
        snprintf(err->key, sizeof err->key, "status_max");
        snprintf(err->msg, sizeof err->msg, "expected >= status_min (%d), got %d",
                 h->status_min, h->status_max);
        return -1;
    }
    if (h->timeout_us > h->interval_us) {
        snprintf(err->key, sizeof err->key, "timeout");
        snprintf(err->msg, sizeof err->msg, "expected no longer than interval");
        return -1;
    }
    return 0;
}
static const cfg_schema health_schema = { "health", health_fields, N(health_fields), health_validate };

static const cfg_field outlier_fields[] = {
    { .key = "consecutive_failures", .type = CFG_INT, .offset = offsetof(gw_outlier_cfg, consecutive),
      .def = "5", .min = 0, .max = 1000, .help = "connect failures, resets, timeouts or 5xx in a row that eject (0: off)" },
    { .key = "base_ejection", .type = CFG_DURATION, .offset = offsetof(gw_outlier_cfg, base_ejection_us),
      .def = "30s", .min = 0.001, .max = 86400, .help = "first ejection time; doubles on each repeat" },
    { .key = "max_ejection", .type = CFG_DURATION, .offset = offsetof(gw_outlier_cfg, max_ejection_us),
      .def = "300s", .min = 0.001, .max = 86400, .help = "cap on one ejection" },
    { .key = "max_ejection_percent", .type = CFG_PERCENT, .offset = offsetof(gw_outlier_cfg, max_ejection_percent),
      .def = "50", .help = "most of a pool that may be ejected at once" },
};
static const cfg_schema outlier_schema = { "outlier", outlier_fields, N(outlier_fields), NULL };

static const char *const algos[] = { "round_robin", "least_conn", "p2c", "hash", "least_request", NULL };
static const char *const hash_ons[] = { "none", "header", "cookie", "query", "ip", NULL };

static const cfg_field pool_fields[] = {
    { .key = "name", .type = CFG_STRING, .offset = offsetof(gw_pool_cfg, name), .help = "pool name, used by routes and the API" },
    { .key = "algorithm", .type = CFG_ENUM, .offset = offsetof(gw_pool_cfg, algo), .def = "least_request",
      .choices = algos, .help = "least_request (power of two choices on in-flight x peak-EWMA latency) | round_robin (smooth weighted) | least_conn | p2c (in-flight only) | hash" },
    { .key = "hash_on", .type = CFG_ENUM, .offset = offsetof(gw_pool_cfg, hash_on), .def = "none",
      .choices = hash_ons, .help = "request key for hash: header | cookie | query | ip" },
    { .key = "hash_key", .type = CFG_STRING, .offset = offsetof(gw_pool_cfg, hash_key),
      .help = "header, cookie or query parameter name (e.g. user_id)" },
    { .key = "hash_epsilon", .type = CFG_DOUBLE, .offset = offsetof(gw_pool_cfg, hash_epsilon), .def = "0.25",
      .min = 0.01, .max = 10, .help = "bounded loads: no backend above (1+e) times its share" },
    { .key = "backends", .type = CFG_LIST, .offset = offsetof(gw_pool_cfg, backends), .sub = &backend_schema,
      .elem_size = sizeof(gw_backend_cfg), .count_offset = offsetof(gw_pool_cfg, nbackends),
      .help = "members of the pool" },
    { .key = "health", .type = CFG_OBJECT, .offset = offsetof(gw_pool_cfg, health), .sub = &health_schema,
      .help = "active health checks" },
    { .key = "outlier", .type = CFG_OBJECT, .offset = offsetof(gw_pool_cfg, outlier), .sub = &outlier_schema,
      .help = "passive outlier detection" },
    { .key = "slow_start", .type = CFG_DURATION, .offset = offsetof(gw_pool_cfg, slow_start_us), .def = "0s",
      .max = 3600, .help = "ramp a new or recovered backend's weight over this time" },
    { .key = "sticky_cookie", .type = CFG_STRING, .offset = offsetof(gw_pool_cfg, sticky_cookie),
      .help = "name of an inserted sticky-session cookie (unset: off)" },
    { .key = "sticky_max_age", .type = CFG_DURATION, .offset = offsetof(gw_pool_cfg, sticky_max_age_us),
      .def = "86400s", .min = 1, .max = 31536000, .help = "Max-Age of the sticky cookie" },
    { .key = "max_conn", .type = CFG_INT, .offset = offsetof(gw_pool_cfg, max_conn), .def = "0",
      .min = 0, .max = 1000000, .help = "in-flight requests per backend (0: unlimited)" },
    { .key = "queue_size", .type = CFG_INT, .offset = offsetof(gw_pool_cfg, queue_size), .def = "1024",
      .min = 0, .max = 1000000, .help = "requests waiting for a backend slot" },
    { .key = "queue_timeout", .type = CFG_DURATION, .offset = offsetof(gw_pool_cfg, queue_timeout_us),
      .def = "5s", .max = 3600, .help = "a queued request is answered 503 after this" },
    { .key = "max_idle", .type = CFG_INT, .offset = offsetof(gw_pool_cfg, max_idle), .def = "1024",
      .min = 0, .max = 100000, .help = "idle upstream connections kept per backend per worker (enough for every client in flight, or connects churn)" },
    { .key = "idle_timeout", .type = CFG_DURATION, .offset = offsetof(gw_pool_cfg, idle_timeout_us),
      .def = "60s", .max = 86400, .help = "idle upstream connections close after this" },
    { .key = "tls", .type = CFG_BOOL, .offset = offsetof(gw_pool_cfg, tls), .def = "false",
      .help = "https backends: TLS 1.2+ to every member, ALPN http/1.1, sessions resumed, idle TLS connections kept; health checks over TLS too" },
    { .key = "tls_verify", .type = CFG_BOOL, .offset = offsetof(gw_pool_cfg, tls_verify), .def = "true",
      .help = "verify each member's certificate chain and name (a refused one: 502, reason in the log)" },
    { .key = "tls_ca_file", .type = CFG_STRING, .offset = offsetof(gw_pool_cfg, tls_ca_file),
      .help = "PEM CA bundle members' certificates must chain to (unset: the system store)" },
    { .key = "tls_server_name", .type = CFG_STRING, .offset = offsetof(gw_pool_cfg, tls_server_name),
      .help = "name sent as SNI and verified in the certificate (unset: each member's host; an IP is checked against the certificate's IP addresses)" },
};
static int pool_validate(void *obj, cfg_error *err)
{
    const gw_pool_cfg *p = obj;
    if (!p->name || !p->name[0]) {
        snprintf(err->key, sizeof err->key, "name");
        snprintf(err->msg, sizeof err->msg, "expected a pool name, got nothing");
        return -1;
    }
    if (p->algo == GW_CFG_ALGO_HASH && p->hash_on != GW_CFG_KEY_IP
        && (p->hash_on == GW_CFG_KEY_NONE || !p->hash_key)) {
        snprintf(err->key, sizeof err->key, "hash_key");
        snprintf(err->msg, sizeof err->msg,
                 "algorithm hash needs hash_on (header|cookie|query|ip) and hash_key");
        return -1;
    }
    if (!p->tls && (p->tls_ca_file || p->tls_server_name)) {
        snprintf(err->key, sizeof err->key, "%s", p->tls_ca_file ? "tls_ca_file" : "tls_server_name");
        snprintf(err->msg, sizeof err->msg, "only applies to https backends: set tls: true");
        return -1;
    }
    if (p->tls_server_name && (!p->tls_server_name[0] || strlen(p->tls_server_name) > 253
                               || strpbrk(p->tls_server_name, " /:@"))) {
        snprintf(err->key, sizeof err->key, "tls_server_name");
        snprintf(err->msg, sizeof err->msg, "expected a host name, got '%s'", p->tls_server_name);
        return -1;
    }
    if (p->nbackends > 256) {
        snprintf(err->key, sizeof err->key, "backends");
        snprintf(err->msg, sizeof err->msg, "expected at most 256, got %zu", p->nbackends);
        return -1;
    }
    return 0;
}
static const cfg_schema pool_schema = { "pool", pool_fields, N(pool_fields), pool_validate };

static const cfg_field split_fields[] = {
    { .key = "pool", .type = CFG_STRING, .offset = offsetof(gw_split_cfg, pool), .help = "pool name" },
    { .key = "weight", .type = CFG_INT, .offset = offsetof(gw_split_cfg, weight), .def = "1",
      .min = 0, .max = 10000, .help = "share of the route's traffic" },
};
static const cfg_schema split_schema = { "split", split_fields, N(split_fields), NULL };

static const cfg_field cache_ttl_fields[] = {
    { .key = "match", .type = CFG_STRING, .offset = offsetof(gw_cache_ttl_cfg, match),
      .help = "path prefix (/static/) or pattern with * (*.js, /api/*/list)" },
    { .key = "ttl", .type = CFG_DURATION, .offset = offsetof(gw_cache_ttl_cfg, ttl_us), .def = "60s",
      .min = 0, .max = 31536000, .help = "freshness lifetime given to a matching response that names none" },
};
static int cache_ttl_validate(void *obj, cfg_error *err)
{
    const gw_cache_ttl_cfg *t = obj;
    if (!t->match || !t->match[0]) {
        snprintf(err->key, sizeof err->key, "match");
        snprintf(err->msg, sizeof err->msg, "expected a path prefix or a pattern such as *.js, got nothing");
        return -1;
    }
    return 0;
}
static const cfg_schema cache_ttl_schema = { "cache_ttl", cache_ttl_fields, N(cache_ttl_fields),
                                             cache_ttl_validate };

static const cfg_field route_cache_fields[] = {
    { .key = "enabled", .type = CFG_BOOL, .offset = offsetof(gw_route_cache_cfg, enabled), .def = "false",
      .help = "serve this route's GET and HEAD responses from the shared cache (RFC 9111)" },
    { .key = "ttl", .type = CFG_LIST, .offset = offsetof(gw_route_cache_cfg, ttl), .sub = &cache_ttl_schema,
      .elem_size = sizeof(gw_cache_ttl_cfg), .count_offset = offsetof(gw_route_cache_cfg, nttl),
      .help = "TTL table for responses without Cache-Control max-age/s-maxage or Expires (otherwise not cached)" },
    { .key = "stale_while_revalidate", .type = CFG_DURATION, .offset = offsetof(gw_route_cache_cfg, swr_us),
      .def = "0s", .max = 86400, .help = "serve a stale response this long past its lifetime while it is refreshed in the background (when the response names none)" },
    { .key = "stale_if_error", .type = CFG_DURATION, .offset = offsetof(gw_route_cache_cfg, sie_us),
      .def = "0s", .max = 604800, .help = "serve a stale response this long past its lifetime when the backend fails or is down (when the response names none)" },
    { .key = "lock_timeout", .type = CFG_DURATION, .offset = offsetof(gw_route_cache_cfg, lock_timeout_us),
      .def = "5s", .min = 0.001, .max = 600, .help = "a request coalesced behind another one's fetch of the same key waits at most this long, then goes to the backend itself" },
};
static const cfg_schema route_cache_schema = { "cache", route_cache_fields, N(route_cache_fields), NULL };

static const cfg_field route_fields[] = {
    { .key = "prefix", .type = CFG_STRING, .offset = offsetof(gw_route_cfg, prefix), .def = "/",
      .help = "path prefix the route matches" },
    { .key = "methods", .type = CFG_STRLIST, .offset = offsetof(gw_route_cfg, methods),
      .count_offset = offsetof(gw_route_cfg, nmethods), .help = "methods matched (empty: all)" },
    { .key = "host", .type = CFG_STRING, .offset = offsetof(gw_route_cfg, host), .help = "Host matched (unset: any)" },
    { .key = "pool", .type = CFG_STRING, .offset = offsetof(gw_route_cfg, pool), .help = "pool for all requests" },
    { .key = "read_pool", .type = CFG_STRING, .offset = offsetof(gw_route_cfg, read_pool),
      .help = "pool for GET/HEAD/OPTIONS" },
    { .key = "write_pool", .type = CFG_STRING, .offset = offsetof(gw_route_cfg, write_pool),
      .help = "pool for other methods" },
    { .key = "split", .type = CFG_LIST, .offset = offsetof(gw_route_cfg, split), .sub = &split_schema,
      .elem_size = sizeof(gw_split_cfg), .count_offset = offsetof(gw_route_cfg, nsplit),
      .help = "weighted pools (canary, blue-green)" },
    { .key = "rate_limit", .type = CFG_STRING, .offset = offsetof(gw_route_cfg, rate_limit),
      .help = "name of a rate_limits class" },
    { .key = "security_headers", .type = CFG_BOOL, .offset = offsetof(gw_route_cfg, security_headers),
      .def = "false", .help = "add HSTS, X-Content-Type-Options, X-Frame-Options, Referrer-Policy" },
    { .key = "retry_unsafe", .type = CFG_BOOL, .offset = offsetof(gw_route_cfg, retry_unsafe),
      .def = "false", .help = "also retry PUT and DELETE" },
    { .key = "cache", .type = CFG_OBJECT, .offset = offsetof(gw_route_cfg, cache), .sub = &route_cache_schema,
      .help = "the shared HTTP cache on this route" },
    { .key = "hsts_max_age", .type = CFG_DURATION, .offset = offsetof(gw_route_cfg, hsts_max_age_us),
      .def = "0s", .max = 315360000,
      .help = "Strict-Transport-Security max-age sent on responses over TLS (0: no HSTS header; 8760h, a year, is usual)" },
    { .key = "hsts_include_subdomains", .type = CFG_BOOL, .offset = offsetof(gw_route_cfg, hsts_subdomains),
      .def = "false", .help = "add includeSubDomains to this route's HSTS header" },
};
static const cfg_schema route_schema = { "route", route_fields, N(route_fields), NULL };

static const cfg_field rl_fields[] = {
    { .key = "name", .type = CFG_STRING, .offset = offsetof(gw_ratelimit_cfg, name), .help = "class name" },
    { .key = "limit", .type = CFG_INT, .offset = offsetof(gw_ratelimit_cfg, limit), .def = "100",
      .min = 1, .max = 100000000, .help = "requests per period per client IP" },
    { .key = "period", .type = CFG_DURATION, .offset = offsetof(gw_ratelimit_cfg, period_us), .def = "60s",
      .min = 0.001, .max = 86400, .help = "refill period" },
};
static const cfg_schema rl_schema = { "rate_limit", rl_fields, N(rl_fields), NULL };

static const cfg_field tls_cert_fields[] = {
    { .key = "cert", .type = CFG_STRING, .offset = offsetof(gw_tls_cert_cfg, cert),
      .help = "PEM certificate chain file (leaf first, then its intermediates: sent as is)" },
    { .key = "key", .type = CFG_STRING, .offset = offsetof(gw_tls_cert_cfg, key),
      .help = "PEM private key file of the certificate" },
};
static const cfg_schema tls_cert_schema = { "tls_cert", tls_cert_fields, N(tls_cert_fields), NULL };

static const char *const tls_versions[] = { "1.2", "1.3", NULL };

static const cfg_field gw_fields[] = {
    { .key = "listen", .type = CFG_ADDR, .offset = offsetof(gw_config, listen), .def = "127.0.0.1:8080",
      .env = "HSCALE_GATEWAY_LISTEN", .help = "client listener" },
    { .key = "workers", .type = CFG_INT, .offset = offsetof(gw_config, workers), .def = "0",
      .env = "HSCALE_GATEWAY_WORKERS", .min = 0, .max = 256, .help = "worker threads (0: one per core)" },
    { .key = "io_uring", .type = CFG_BOOL, .offset = offsetof(gw_config, io_uring), .def = "true",
      .env = "HSCALE_GATEWAY_IO_URING",
      .help = "read and write each event batch's sockets in one io_uring call (falls back to plain calls when the kernel refuses)" },
    { .key = "yield_after_batch", .type = CFG_BOOL, .offset = offsetof(gw_config, yield_after_batch),
      .def = "true", .env = "HSCALE_GATEWAY_YIELD_AFTER_BATCH",
      .help = "after handling a batch of events that wrote to sockets, let other runnable processes on the worker's CPU (backends, clients on the same machine) run before polling again, so their replies arrive as one batch" },
    { .key = "admin", .type = CFG_ADDR, .offset = offsetof(gw_config, admin),
      .env = "HSCALE_GATEWAY_ADMIN", .help = "admin API listener (unset: off)" },
    { .key = "admin_token", .type = CFG_STRING, .offset = offsetof(gw_config, admin_token),
      .env = "HSCALE_GATEWAY_ADMIN_TOKEN",
      .help = "admin bearer token for the admin API: every change (required off loopback)" },
    { .key = "admin_read_token", .type = CFG_STRING, .offset = offsetof(gw_config, admin_read_token),
      .env = "HSCALE_GATEWAY_ADMIN_READ_TOKEN",
      .help = "read-only bearer token for the admin API (pools, routes, audit); needs admin_token" },
    { .key = "admin_allowed_hosts", .type = CFG_STRLIST, .offset = offsetof(gw_config, admin_allowed_hosts),
      .count_offset = offsetof(gw_config, nadmin_allowed_hosts), .env = "HSCALE_GATEWAY_ADMIN_ALLOWED_HOSTS",
      .help = "Host names the admin API answers besides IP addresses and localhost (DNS-rebinding guard)" },
    { .key = "admin_tls_cert", .type = CFG_STRING, .offset = offsetof(gw_config, admin_tls_cert),
      .env = "HSCALE_GATEWAY_ADMIN_TLS_CERT",
      .help = "PEM certificate (chain) file: the admin API speaks https; reloaded on SIGHUP" },
    { .key = "admin_tls_key", .type = CFG_STRING, .offset = offsetof(gw_config, admin_tls_key),
      .env = "HSCALE_GATEWAY_ADMIN_TLS_KEY", .help = "PEM private key file of admin_tls_cert" },
    { .key = "tls_listen", .type = CFG_ADDR, .offset = offsetof(gw_config, tls_listen),
      .env = "HSCALE_GATEWAY_TLS_LISTEN",
      .help = "TLS (https) client listener, served beside `listen` (unset: none)" },
    { .key = "tls_only", .type = CFG_BOOL, .offset = offsetof(gw_config, tls_only), .def = "false",
      .env = "HSCALE_GATEWAY_TLS_ONLY",
      .help = "with tls_listen: no plain listener on `listen` (the --tls-listen flag without --listen sets it)" },
    { .key = "tls_cert", .type = CFG_STRING, .offset = offsetof(gw_config, tls_cert),
      .env = "HSCALE_GATEWAY_TLS_CERT",
      .help = "PEM certificate chain file of tls_listen (leaf first, then its intermediates: sent as is): the default certificate (no SNI, or a name no certificate has); reloaded on SIGHUP and POST /api/v1/tls/reload" },
    { .key = "tls_key", .type = CFG_STRING, .offset = offsetof(gw_config, tls_key),
      .env = "HSCALE_GATEWAY_TLS_KEY", .help = "PEM private key file of tls_cert" },
    { .key = "tls_certs", .type = CFG_LIST, .offset = offsetof(gw_config, tls_certs), .sub = &tls_cert_schema,
      .elem_size = sizeof(gw_tls_cert_cfg), .count_offset = offsetof(gw_config, ntls_certs),
      .help = "more certificates (RSA or ECDSA), each chosen by SNI for the names it is issued for" },
    { .key = "tls_min_version", .type = CFG_ENUM, .offset = offsetof(gw_config, tls_min_version),
      .def = "1.2", .choices = tls_versions, .env = "HSCALE_GATEWAY_TLS_MIN_VERSION",
      .help = "lowest TLS version accepted: 1.2 | 1.3" },
    { .key = "tls_max_version", .type = CFG_ENUM, .offset = offsetof(gw_config, tls_max_version),
      .def = "1.3", .choices = tls_versions, .env = "HSCALE_GATEWAY_TLS_MAX_VERSION",
      .help = "highest TLS version offered: 1.3 | 1.2 (1.2 only for clients or comparisons that need it)" },
    { .key = "tls_ciphers", .type = CFG_STRING, .offset = offsetof(gw_config, tls_ciphers),
      .def = HTTP_TLS_DEFAULT_CIPHERS, .env = "HSCALE_GATEWAY_TLS_CIPHERS",
      .help = "TLS 1.2 cipher list (OpenSSL syntax); the default is ECDHE with AES-GCM or ChaCha20-Poly1305 only" },
    { .key = "tls_ciphersuites", .type = CFG_STRING, .offset = offsetof(gw_config, tls_ciphersuites),
      .def = HTTP_TLS_DEFAULT_SUITES, .env = "HSCALE_GATEWAY_TLS_CIPHERSUITES",
      .help = "TLS 1.3 cipher suites (OpenSSL syntax)" },
    { .key = "tls_tickets", .type = CFG_BOOL, .offset = offsetof(gw_config, tls_tickets), .def = "true",
      .env = "HSCALE_GATEWAY_TLS_TICKETS",
      .help = "session resumption by tickets, with keys shared by every worker (false: every connection does a full handshake)" },
    { .key = "tls_ticket_rotate", .type = CFG_DURATION, .offset = offsetof(gw_config, tls_ticket_rotate_us),
      .def = "1h", .min = 1, .max = 604800, .env = "HSCALE_GATEWAY_TLS_TICKET_ROTATE",
      .help = "a new ticket key this often; tickets of the two keys before it are still accepted (so a ticket lives at most 3 periods)" },
    { .key = "tls_ktls", .type = CFG_BOOL, .offset = offsetof(gw_config, tls_ktls), .def = "true",
      .env = "HSCALE_GATEWAY_TLS_KTLS",
      .help = "hand record encryption to the kernel (kTLS) when the kernel has the tls module and the cipher allows; the log says which path runs" },
    { .key = "redirect_listen", .type = CFG_ADDR, .offset = offsetof(gw_config, redirect_listen),
      .env = "HSCALE_GATEWAY_REDIRECT_LISTEN",
      .help = "plain listener that answers every request with redirect_status to the same URL on tls_listen (unset: none)" },
    { .key = "redirect_status", .type = CFG_INT, .offset = offsetof(gw_config, redirect_status), .def = "301",
      .min = 301, .max = 308, .env = "HSCALE_GATEWAY_REDIRECT_STATUS",
      .help = "status of the redirect listener: 301 (method may become GET) or 308 (method and body kept)" },
    { .key = "client_header_timeout", .type = CFG_DURATION, .offset = offsetof(gw_config, client_header_timeout_us),
      .def = "10s", .min = 0.001, .max = 3600, .help = "whole request head must arrive within this (slowloris)" },
    { .key = "client_idle_timeout", .type = CFG_DURATION, .offset = offsetof(gw_config, client_idle_timeout_us),
      .def = "60s", .min = 0.001, .max = 86400, .help = "idle keep-alive client connections close after this" },
    { .key = "connect_timeout", .type = CFG_DURATION, .offset = offsetof(gw_config, connect_timeout_us),
      .def = "2s", .min = 0.001, .max = 600, .help = "upstream connect" },
    { .key = "response_timeout", .type = CFG_DURATION, .offset = offsetof(gw_config, response_timeout_us),
      .def = "60s", .min = 0.001, .max = 86400, .help = "whole upstream exchange, retries included" },
    { .key = "try_timeout", .type = CFG_DURATION, .offset = offsetof(gw_config, try_timeout_us),
      .def = "15s", .min = 0.001, .max = 86400, .help = "one attempt's wait for the response head" },
    { .key = "try_timeout_factor", .type = CFG_INT, .offset = offsetof(gw_config, try_timeout_factor),
      .def = "4", .env = "HSCALE_GATEWAY_TRY_TIMEOUT_FACTOR", .min = 0, .max = 1000,
      .help = "GET/HEAD/OPTIONS (and retry_unsafe) tries wait this many times the pool's recent p99 for the response head, then go to another member if theirs looks stuck: ejected as slow, or holding other requests and answering none (0: always try_timeout)" },
    { .key = "try_timeout_min", .type = CFG_DURATION, .offset = offsetof(gw_config, try_timeout_min_us),
      .def = "250ms", .env = "HSCALE_GATEWAY_TRY_TIMEOUT_MIN", .min = 0.001, .max = 3600,
      .help = "floor of the latency-derived try timeout and slow-member threshold (try_timeout is their cap)" },
    { .key = "slow_eject_factor", .type = CFG_INT, .offset = offsetof(gw_config, slow_eject_factor),
      .def = "8", .env = "HSCALE_GATEWAY_SLOW_EJECT_FACTOR", .min = 0, .max = 1000,
      .help = "a member holding two or more requests that answered none for this many times the pool's p99 while others answer gets no new requests until it answers (0: off)" },
    { .key = "state_file", .type = CFG_STRING, .offset = offsetof(gw_config, state_file),
      .env = "HSCALE_GATEWAY_STATE_FILE",
      .help = "file the runtime state (members, weights, states, drains, split weights) is written to on every change and restored from at start (unset: none)" },
    { .key = "grace", .type = CFG_DURATION, .offset = offsetof(gw_config, grace_us),
      .def = "30s", .max = 3600, .help = "SIGTERM: time allowed for in-flight requests" },
    { .key = "tunnel_idle_timeout", .type = CFG_DURATION, .offset = offsetof(gw_config, tunnel_idle_timeout_us),
      .def = "1h", .env = "HSCALE_GATEWAY_TUNNEL_IDLE_TIMEOUT", .min = 0.001, .max = 604800,
      .help = "a WebSocket (Upgrade) tunnel with no byte either way for this long is closed (HAProxy's timeout tunnel; WebSocket apps ping every 30-60 s)" },
    { .key = "max_tunnels", .type = CFG_INT, .offset = offsetof(gw_config, max_tunnels), .def = "10000",
      .env = "HSCALE_GATEWAY_MAX_TUNNELS", .min = 0, .max = 10000000,
      .help = "open WebSocket (Upgrade) tunnels, all workers; beyond it an Upgrade request gets 503 (0: Upgrade refused with 501)" },
    { .key = "compression", .type = CFG_BOOL, .offset = offsetof(gw_config, compression), .def = "false",
      .env = "HSCALE_GATEWAY_COMPRESSION",
      .help = "compress responses with gzip or brotli as the request's Accept-Encoding allows" },
    { .key = "compression_min_size", .type = CFG_SIZE, .offset = offsetof(gw_config, compression_min_size),
      .def = "1KiB", .env = "HSCALE_GATEWAY_COMPRESSION_MIN_SIZE",
      .help = "responses with a Content-Length below this are sent as they are" },
    { .key = "compression_level", .type = CFG_INT, .offset = offsetof(gw_config, compression_level), .def = "6",
      .env = "HSCALE_GATEWAY_COMPRESSION_LEVEL", .min = 1, .max = 9,
      .help = "gzip level and brotli quality (1 fastest .. 9 smallest)" },
    { .key = "compression_types", .type = CFG_STRLIST, .offset = offsetof(gw_config, compression_types),
      .count_offset = offsetof(gw_config, ncompression_types),
      .def = "text/*,application/json,application/javascript,application/xml,application/problem+json,image/svg+xml",
      .env = "HSCALE_GATEWAY_COMPRESSION_TYPES",
      .help = "media types compressed (a trailing * matches a prefix)" },
    { .key = "cache_size", .type = CFG_SIZE, .offset = offsetof(gw_config, cache_size), .def = "64MiB",
      .env = "HSCALE_GATEWAY_CACHE_SIZE", .min = 4096, .max = 1099511627776.0,
      .help = "memory for cached responses, all routes together (least recently used go first)" },
    { .key = "cache_max_object", .type = CFG_SIZE, .offset = offsetof(gw_config, cache_max_object),
      .def = "1MiB", .env = "HSCALE_GATEWAY_CACHE_MAX_OBJECT", .min = 1, .max = 1099511627776.0,
      .help = "a response larger than this is relayed but not stored" },
    { .key = "max_clients", .type = CFG_INT, .offset = offsetof(gw_config, max_clients), .def = "20000",
      .min = 1, .max = 10000000, .help = "client connections, all workers" },
    { .key = "max_body", .type = CFG_SIZE, .offset = offsetof(gw_config, max_body), .def = "10MiB",
      .help = "request body limit (413 beyond; 0: none)" },
    { .key = "retries", .type = CFG_INT, .offset = offsetof(gw_config, retries), .def = "2",
      .min = 0, .max = 10, .help = "extra attempts for a failed idempotent request" },
    { .key = "retry_budget", .type = CFG_PERCENT, .offset = offsetof(gw_config, retry_budget_percent),
      .def = "20", .help = "retries as a share of in-flight requests" },
    { .key = "rate_limit_entries", .type = CFG_INT, .offset = offsetof(gw_config, rate_limit_entries),
      .def = "65536", .min = 1024, .max = 16777216, .help = "client buckets kept (bounded memory)" },
    { .key = "pools", .type = CFG_LIST, .offset = offsetof(gw_config, pools), .sub = &pool_schema,
      .elem_size = sizeof(gw_pool_cfg), .count_offset = offsetof(gw_config, npools), .help = "backend pools" },
    { .key = "routes", .type = CFG_LIST, .offset = offsetof(gw_config, routes), .sub = &route_schema,
      .elem_size = sizeof(gw_route_cfg), .count_offset = offsetof(gw_config, nroutes),
      .help = "routes, first match wins" },
    { .key = "rate_limits", .type = CFG_LIST, .offset = offsetof(gw_config, rate_limits), .sub = &rl_schema,
      .elem_size = sizeof(gw_ratelimit_cfg), .count_offset = offsetof(gw_config, nrate_limits),
      .help = "token-bucket classes" },
};

int gw_config_find_pool(const gw_config *c, const char *name)
{
    for (size_t i = 0; name && i < c->npools; i++)
        if (c->pools[i].name && strcmp(c->pools[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int bad(cfg_error *err, const char *key, const char *fmt, const char *arg)
{
    snprintf(err->key, sizeof err->key, "%s", key);
    snprintf(err->msg, sizeof err->msg, fmt, arg);
    return -1;
}

static int need_pool(const gw_config *c, const char *name, size_t ri, const char *field,
                     cfg_error *err)
{
    if (!name || gw_config_find_pool(c, name) >= 0)
        return 0;
    char key[64];
    snprintf(key, sizeof key, "routes[%zu].%s", ri, field);
    return bad(err, key, "no pool named '%s'", name);
}

static int gw_validate(void *obj, cfg_error *err)
{
    const gw_config *c = obj;
    char key[64];
    if (c->admin_read_token && c->admin_read_token[0] && !(c->admin_token && c->admin_token[0]))
        return bad(err, "admin_read_token", "needs admin_token too (otherwise changes %s)",
                   "would be open");
    if (!c->admin_tls_cert != !c->admin_tls_key)
        return bad(err, c->admin_tls_cert ? "admin_tls_key" : "admin_tls_cert",
                   "TLS needs both admin_tls_cert and admin_tls_key, got only %s",
                   c->admin_tls_cert ? "the certificate" : "the key");
    if (c->redirect_status != 301 && c->redirect_status != 308) {
        char got[16];
        snprintf(got, sizeof got, "%d", c->redirect_status);
        return bad(err, "redirect_status", "expected 301 or 308, got %s", got);
    }
    if (c->tls_listen) {
        if (!c->tls_cert || !c->tls_key)
            return bad(err, c->tls_cert ? "tls_key" : "tls_cert",
                       "tls_listen needs tls_cert and tls_key (%s)", "PEM files");
    } else {
        if (c->redirect_listen)
            return bad(err, "redirect_listen", "redirects to https need tls_listen %s", "too");
        if (c->tls_only)
            return bad(err, "tls_only", "needs tls_listen (otherwise nothing would %s)", "listen");
    }
    if (c->tls_max_version < c->tls_min_version)
        return bad(err, "tls_max_version", "expected at least tls_min_version (%s)", "1.3");
    for (size_t i = 0; i < c->ntls_certs; i++)
        if (!c->tls_certs[i].cert || !c->tls_certs[i].key) {
            snprintf(key, sizeof key, "tls_certs[%zu].%s", i, c->tls_certs[i].cert ? "key" : "cert");
            return bad(err, key, "expected a PEM file, got %s", "nothing");
        }
    for (size_t i = 0; i < c->npools; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->pools[i].name, c->pools[j].name) == 0) {
                snprintf(key, sizeof key, "pools[%zu].name", i);
                return bad(err, key, "duplicate pool name '%s'", c->pools[i].name);
            }
    for (size_t i = 0; i < c->nrate_limits; i++)
        if (!c->rate_limits[i].name) {
            snprintf(key, sizeof key, "rate_limits[%zu].name", i);
            return bad(err, key, "expected a class name, got %s", "nothing");
        }
    if (c->cache_max_object > c->cache_size)
        return bad(err, "cache_max_object", "expected at most cache_size, got %s", "more");
    for (size_t i = 0; i < c->nroutes; i++) {
        const gw_route_cfg *r = &c->routes[i];
        if (!r->prefix || r->prefix[0] != '/') {
            snprintf(key, sizeof key, "routes[%zu].prefix", i);
            return bad(err, key, "expected a path starting with '/', got '%s'",
                       r->prefix ? r->prefix : "");
        }
        if (!r->pool && !r->read_pool && !r->write_pool && r->nsplit == 0) {
            snprintf(key, sizeof key, "routes[%zu].pool", i);
            return bad(err, key, "expected pool, read_pool/write_pool or split, got %s", "none");
        }
        if (!r->pool && r->nsplit == 0 && (!r->read_pool || !r->write_pool)) {
            snprintf(key, sizeof key, "routes[%zu].%s", i, r->read_pool ? "write_pool" : "read_pool");
            return bad(err, key, "expected both read_pool and write_pool (or pool), got %s", "one");
        }
        if (need_pool(c, r->pool, i, "pool", err) || need_pool(c, r->read_pool, i, "read_pool", err)
            || need_pool(c, r->write_pool, i, "write_pool", err))
            return -1;
        int wsum = 0;
        for (size_t k = 0; k < r->nsplit; k++) {
            snprintf(key, sizeof key, "split[%zu].pool", k);
            if (need_pool(c, r->split[k].pool, i, key, err))
                return -1;
            if (!r->split[k].pool)
                return need_pool(c, "", i, key, err);
            wsum += r->split[k].weight;
        }
        if (r->nsplit && wsum == 0) {
            snprintf(key, sizeof key, "routes[%zu].split", i);
            return bad(err, key, "expected weights adding up to more than 0, got %s", "0");
        }
        if (r->rate_limit) {
            size_t k = 0;
            while (k < c->nrate_limits && strcmp(c->rate_limits[k].name, r->rate_limit) != 0)
                k++;
            if (k == c->nrate_limits) {
                snprintf(key, sizeof key, "routes[%zu].rate_limit", i);
                return bad(err, key, "no rate_limits class named '%s'", r->rate_limit);
            }
        }
    }
    return 0;
}

const cfg_schema gw_config_schema = { "gateway", gw_fields, N(gw_fields), gw_validate };

int gw_config_from_backends(gw_config *c, char **backends, size_t n, cfg_error *err)
{
    for (size_t i = 0; i < n; i++) {
        sock_addr a;
        if (sock_addr_parse(backends[i], &a, err->msg, sizeof err->msg) < 0) {
            snprintf(err->file, sizeof err->file, "<flag>");
            snprintf(err->key, sizeof err->key, "--backend");
            return -1;
        }
    }
    /* Build the document as YAML and let the loader own every allocation,
     * so flags and files produce identical structures (and cfg_free works). */
    size_t cap = 128;
    for (size_t i = 0; i < n; i++)
        cap += strlen(backends[i]) + 32;
    char *doc = malloc(cap);
    if (!doc)
        return bad(err, "--backend", "%s", "out of memory");
    size_t len = (size_t)snprintf(doc, cap, "pools:\n  - name: default\n    backends:\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(doc + len, cap - len, "      - address: \"%s\"\n", backends[i]);
    len += (size_t)snprintf(doc + len, cap - len, "routes:\n  - prefix: /\n    pool: default\n");
    int rc = cfg_load_text(&gw_config_schema, c, doc, len, "<flag>", err);
    free(doc);
    if (rc == 0)
        rc = cfg_validate(&gw_config_schema, c, err);
    return rc;
}
