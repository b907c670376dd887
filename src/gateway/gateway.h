/* gateway.h -- hscale's data plane load balancer: its configuration (the
 * `gateway:` section of hscale.yaml) and its entry points.
 *
 * The configuration is plain data described by gw_config_schema (config.h),
 * so the top-level hscale config embeds it as a CFG_OBJECT and every key
 * gets YAML, JSON, environment and flag handling for free. gw_config_validate
 * (the schema's hook) checks what the loader cannot: pool names unique,
 * every route naming a pool that exists, backend addresses that parse,
 * split weights that add up to something. */
#ifndef HSCALE_GATEWAY_GATEWAY_H
#define HSCALE_GATEWAY_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

typedef struct gw_backend_cfg {
    char *address;            /* "host:port" */
    int   weight;             /* 1..1000 */
    bool  backup;             /* only when every primary is down */
} gw_backend_cfg;

typedef struct gw_health_cfg {
    bool     enabled;
    char    *path;            /* default /health/ready */
    uint64_t interval_us;     /* SurgiCase seed: 30 s */
    uint64_t timeout_us;      /* 5 s */
    int      rise;            /* 2 */
    int      fall;            /* 3 */
    int      status_min, status_max;   /* healthy status range, 200..399 */
} gw_health_cfg;

typedef struct gw_outlier_cfg {
    int      consecutive;     /* failures in a row that eject; 0 disables */
    uint64_t base_ejection_us;
    uint64_t max_ejection_us;
    double   max_ejection_percent;
} gw_outlier_cfg;

/* Index order matches the gw_algo enum in gw_lb.h. */
enum { GW_CFG_ALGO_ROUND_ROBIN, GW_CFG_ALGO_LEAST_CONN, GW_CFG_ALGO_P2C, GW_CFG_ALGO_HASH,
       GW_CFG_ALGO_LEAST_REQUEST };
enum { GW_CFG_KEY_NONE, GW_CFG_KEY_HEADER, GW_CFG_KEY_COOKIE, GW_CFG_KEY_QUERY, GW_CFG_KEY_IP };

typedef struct gw_pool_cfg {
    char           *name;
    int             algo;           /* least_request | round_robin | least_conn | p2c | hash */
    int             hash_on;        /* none | header | cookie | query | ip */
    char           *hash_key;       /* header/cookie/query name, e.g. user_id */
    double          hash_epsilon;   /* bounded-load slack (0.25: 1.25x share) */
    gw_backend_cfg *backends;
    size_t          nbackends;
    gw_health_cfg   health;
    gw_outlier_cfg  outlier;
    uint64_t        slow_start_us;
    char           *sticky_cookie;  /* inserted cookie name; NULL: off */
    uint64_t        sticky_max_age_us;   /* seeds: 86400 s */
    int             max_conn;       /* per backend, 0: unlimited */
    int             queue_size;     /* waiting requests per pool past max_conn */
    uint64_t        queue_timeout_us;    /* then 503 */
    int             max_idle;       /* idle upstream connections per backend per worker */
    uint64_t        idle_timeout_us;
    /* https backends (gw_upstream_tls.c) */
    bool            tls;            /* speak TLS to every member of the pool */
    bool            tls_verify;     /* chain and name; default on */
    char           *tls_ca_file;    /* PEM CA bundle; NULL: the system store */
    char           *tls_server_name;   /* SNI and the name verified; NULL: the member's host */
} gw_pool_cfg;

typedef struct gw_split_cfg {
    char *pool;
    int   weight;                   /* share of the route's traffic */
} gw_split_cfg;

/* A route's TTL for responses that carry no freshness information: the
 * seeds' TTL tables (static assets a week, *.js a day, API 30 s). */
typedef struct gw_cache_ttl_cfg {
    char    *match;                 /* path prefix, or a pattern with * (fnmatch) */
    uint64_t ttl_us;
} gw_cache_ttl_cfg;

/* The shared HTTP cache on a route (gw_cache.c); off unless enabled. */
typedef struct gw_route_cache_cfg {
    bool              enabled;
    gw_cache_ttl_cfg *ttl;          /* first match wins */
    size_t            nttl;
    uint64_t          swr_us;       /* stale-while-revalidate when the response names none */
    uint64_t          sie_us;       /* stale-if-error when the response names none */
    uint64_t          lock_timeout_us;   /* a coalesced request waits this long, then goes itself */
} gw_route_cache_cfg;

typedef struct gw_route_cfg {
    char         *prefix;           /* path prefix, "/" matches all */
    char        **methods;          /* empty: any method */
    size_t        nmethods;
    char         *host;             /* NULL: any Host */
    char         *pool;             /* default pool */
    char         *read_pool;        /* GET/HEAD/OPTIONS, when set */
    char         *write_pool;       /* everything else, when set */
    gw_split_cfg *split;            /* weighted pools (canary, blue-green) */
    size_t        nsplit;
    char         *rate_limit;       /* name of a rate_limits entry */
    bool          security_headers; /* HSTS, nosniff, frame DENY, referrer */
    bool          retry_unsafe;     /* also retry PUT/DELETE */
    gw_route_cache_cfg cache;
    uint64_t      hsts_max_age_us;  /* Strict-Transport-Security on TLS (0: none) */
    bool          hsts_subdomains;  /* ... with includeSubDomains */
} gw_route_cfg;

/* One more certificate for the TLS listener, picked by SNI among the DNS
 * names (and IP addresses) it is issued for. */
typedef struct gw_tls_cert_cfg {
    char *cert;                     /* PEM chain file */
    char *key;                      /* PEM key file */
} gw_tls_cert_cfg;

/* Index order of the tls_min_version choices. */
enum { GW_CFG_TLS_12, GW_CFG_TLS_13 };

typedef struct gw_ratelimit_cfg {
    char    *name;
    int      limit;                 /* requests per period per client IP */
    uint64_t period_us;
} gw_ratelimit_cfg;

typedef struct gw_config {
    char    *listen;
    int      workers;               /* 0: one per core */
    bool     io_uring;              /* batch socket I/O through io_uring when the kernel allows */
    bool     yield_after_batch;     /* give the CPU to runnable peers after a busy iteration */
    char    *admin;                 /* admin API address, NULL: off */
    char    *admin_token;           /* required when admin is not loopback */
    char    *admin_read_token;      /* read-only role on the admin API */
    char   **admin_allowed_hosts;   /* Host names accepted besides IPs and localhost */
    size_t   nadmin_allowed_hosts;
    char    *admin_tls_cert;        /* both set: the admin API speaks https */
    char    *admin_tls_key;
    /* TLS termination (gw_tls*.c) */
    char    *tls_listen;            /* TLS client listener, NULL: none */
    bool     tls_only;              /* with tls_listen: no plain listener on `listen` */
    char    *tls_cert;              /* default certificate (no or unknown SNI) */
    char    *tls_key;
    gw_tls_cert_cfg *tls_certs;     /* more certificates chosen by SNI */
    size_t   ntls_certs;
    int      tls_min_version;       /* GW_CFG_TLS_12 | GW_CFG_TLS_13 */
    int      tls_max_version;       /* GW_CFG_TLS_12 | GW_CFG_TLS_13 */
    char    *tls_ciphers;           /* TLS 1.2 cipher list */
    char    *tls_ciphersuites;      /* TLS 1.3 suites */
    bool     tls_tickets;           /* stateless session resumption */
    uint64_t tls_ticket_rotate_us;  /* a new ticket key this often */
    bool     tls_ktls;              /* kernel TLS when the kernel and cipher allow */
    char    *redirect_listen;       /* plain listener answering 301/308 to https */
    int      redirect_status;       /* 301 or 308 */
    /* timeouts */
    uint64_t client_header_timeout_us;
    uint64_t client_idle_timeout_us;
    uint64_t connect_timeout_us;
    uint64_t response_timeout_us;
    uint64_t try_timeout_us;
    int      try_timeout_factor;    /* idempotent tries: factor x pool p99 (0: off) */
    uint64_t try_timeout_min_us;    /* floor of the adaptive try timeout and slow threshold */
    int      slow_eject_factor;     /* slow member: silent for factor x p99 (0: off) */
    uint64_t grace_us;              /* SIGTERM drain limit */
    uint64_t tunnel_idle_timeout_us; /* a tunnel with no byte either way closes */
    int      max_tunnels;           /* open tunnels, all workers (0: Upgrade refused) */
    /* response compression (gw_compress.c) */
    bool     compression;
    uint64_t compression_min_size;  /* a known length below this is sent as is */
    int      compression_level;     /* gzip 1-9, brotli quality (capped at 11) */
    char   **compression_types;     /* media types; a trailing star matches a prefix */
    size_t   ncompression_types;
    /* the shared HTTP cache (gw_cache.c), enabled per route */
    uint64_t cache_size;            /* byte budget of every route's entries together */
    uint64_t cache_max_object;      /* a larger response is relayed, not stored */
    char    *state_file;            /* runtime state kept across restarts; NULL: none */
    /* limits */
    int      max_clients;           /* global client connections */
    uint64_t max_body;
    /* retries */
    int      retries;               /* extra attempts per request */
    double   retry_budget_percent;  /* of in-flight requests */
    int      rate_limit_entries;    /* bounded memory of the limiter */
    gw_pool_cfg      *pools;
    size_t            npools;
    gw_route_cfg     *routes;
    size_t            nroutes;
    gw_ratelimit_cfg *rate_limits;
    size_t            nrate_limits;
} gw_config;

extern const cfg_schema gw_config_schema;

/* Index of the pool named `name`, or -1. */
int gw_config_find_pool(const gw_config *c, const char *name);

/* Fills a config from flags alone: one pool "default" with these backends
 * (round robin) and one route "/" to it. Backends are "host:port". Fields
 * already set (listen, workers...) are kept. Returns -1 with err filled on
 * a bad address. */
int gw_config_from_backends(gw_config *c, char **backends, size_t n, cfg_error *err);

/* Re-reads the configuration for SIGHUP into *out (zeroed by the caller).
 * Returns -1 with err filled when it is invalid: the running one stays. */
typedef int gw_reload_fn(gw_config *out, void *arg, char *err, size_t errlen);

/* Runs the gateway until SIGTERM or SIGINT: binds the client listener on
 * every worker, the admin API when configured, health checks; reloads on
 * SIGHUP through `reload` (NULL: SIGHUP is logged and ignored). Prints
 * "gateway: listening on ADDR" to stdout once serving. Returns the exit
 * code (0 after a clean drain, 1 when it could not start). */
int gw_run(const gw_config *cfg, gw_reload_fn *reload, void *arg);

#endif
