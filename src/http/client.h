/* client.h -- HTTP/1.1 clients.
 *
 * http_fetch() is the blocking client of the control plane, the CLI and the
 * tests' helpers: one request at a time, with a per-thread keep-alive pool
 * so a collector that scrapes the same instances every two seconds reuses
 * its connections.
 *
 * hc_pool is the non-blocking side: a per-thread (per-ev_loop) set of idle
 * upstream connections keyed by an opaque pointer (a backend), with a cap
 * per key and an idle timeout. An idle connection stays registered in the
 * loop so a close by the peer is noticed and the fd dropped before anyone
 * tries to reuse it. The gateway and the load generator build on it. */
#ifndef HSCALE_HTTP_CLIENT_H
#define HSCALE_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../core/buf.h"
#include "../core/ev.h"
#include "../core/sock.h"

typedef struct http_url {
    char      host[256];
    int       port;
    char      path[2048];   /* path + query, "/" at least */
    sock_addr addr;
    bool      tls;          /* https:// */
} http_url;

/* Parses "http[s]://host:port/path?query" (port defaults: 80, 443). */
int http_url_parse(const char *url, http_url *out, char *err, size_t errlen);

typedef struct http_result {
    int      status;
    buf      headers;   /* raw header lines "Name: value\r\n..." */
    buf      body;      /* whole body, chunked decoded */
} http_result;

void http_result_init(http_result *r);
void http_result_free(http_result *r);
/* Header value from a result, copied into out; returns false when absent. */
bool http_result_header(const http_result *r, const char *name, char *out, size_t outlen);

/* Sends one request and reads the whole response. extra_headers is raw
 * "Name: value\r\n" lines or NULL. Returns 0, or -1 with err filled
 * (connect refused, timeout, malformed response). timeout_ms bounds the
 * whole exchange (connect included); <= 0 means 10 s. A pooled connection
 * the peer closed meanwhile is retried once on a fresh one. */
int http_fetch(const char *method, const char *url, const char *extra_headers,
               const void *body, size_t len, int timeout_ms,
               http_result *out, char *err, size_t errlen);
/* https settings of one caller (an https backend pool's health checks):
 * the CA bundle (NULL: the system store), the name sent as SNI and
 * verified (NULL: the URL's host), and whether to verify at all. */
typedef struct http_tls_client {
    const char *ca_file;
    const char *server_name;
    bool        verify;
} http_tls_client;

/* http_fetch with the caller's https settings instead of the process-wide
 * ones (tls NULL: http_fetch). */
int http_fetch_tls(const char *method, const char *url, const char *extra_headers,
                   const void *body, size_t len, int timeout_ms, const http_tls_client *tls,
                   http_result *out, char *err, size_t errlen);
/* The CA bundle (PEM) https peers must chain to; NULL or "": the
 * system's store. Until called, HSCALE_CA_FILE is used when set. The peer
 * is always verified, its name or IP address included. */
void http_client_set_ca_file(const char *path);
/* Closes this thread's idle fetch connections. */
void http_fetch_pool_clear(void);

typedef struct hc_pool hc_pool;
/* max_idle_per_key 0 keeps nothing idle; idle_timeout_us 0 means 60 s. */
hc_pool *hc_pool_new(ev_loop *loop, unsigned max_idle_per_key, uint64_t idle_timeout_us);
void     hc_pool_free(hc_pool *p);
/* An idle connection for key, or -1 when there is none. The fd leaves the
 * pool but stays registered in the loop for EV_READ|EV_WRITE: the caller
 * takes it over with ev_io_mod (no syscall), or ev_io_del's it. */
int      hc_pool_get(hc_pool *p, const void *key);
/* Returns a healthy idle connection (response fully read). The pool takes
 * over its loop registration (or registers it) to notice a close. Closes
 * it when the key's idle set is full. */
void     hc_pool_put(hc_pool *p, const void *key, int fd);
/* Connections with transport state (a TLS session: the gateway's https
 * backends) travel with it: put_data keeps `data` beside the fd, get_data
 * hands both back (data NULL for a plain one), and when the pool itself
 * closes an entry with data (peer close, idle timeout, full, drop_key,
 * free) it calls the closer instead of close(2); the closer must close fd.
 * The closer is set once, before the first put_data. */
typedef void hc_pool_closer(int fd, void *data);
void     hc_pool_set_closer(hc_pool *p, hc_pool_closer *fn);
int      hc_pool_get_data(hc_pool *p, const void *key, void **data);
void     hc_pool_put_data(hc_pool *p, const void *key, int fd, void *data);
/* Closes every idle connection of key (a drained or removed backend). */
void     hc_pool_drop_key(hc_pool *p, const void *key);
unsigned hc_pool_idle_count(const hc_pool *p, const void *key);

#endif
