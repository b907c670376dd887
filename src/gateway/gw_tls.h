/* gw_tls.h -- TLS termination on the gateway's client connections
 * (internal to src/gateway).
 *
 * TLS is a transport under the HTTP codec: gw_conn.c reads and writes a
 * TLS connection through gw_tls_read / gw_tls_write instead of read(2) /
 * write(2), with the same return contract, and nothing above conn_read and
 * gw_conn_flush knows. A connection's transport state is a gw_tls_state in
 * c->tls (with c->ssl); a plain connection has c->ssl NULL.
 *
 * Process-wide state (one per gateway, shared by every worker thread):
 *  - the certificate set: one SSL_CTX per certificate, [0] the default,
 *    and the names each is issued for (SNI picks among them). A reload
 *    builds a whole new set and swaps it under a write lock; a connection
 *    keeps a reference to the context it started with (SSL_new and
 *    SSL_set_SSL_CTX take one), so an open connection finishes on the old
 *    certificate while new ones get the new one.
 *  - the ticket keys (stateless resumption): one key set for every worker
 *    and every context, rotated by the main thread on a schedule, so a
 *    ticket issued by any worker resumes on any other, across reloads.
 *  - the metrics (handshakes full/resumed, failures by reason, open TLS
 *    connections). */
#ifndef HSCALE_GATEWAY_GW_TLS_H
#define HSCALE_GATEWAY_GW_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "gateway/gateway.h"

typedef struct gw_rt   gw_rt;
typedef struct gw_conn gw_conn;
typedef struct gw_tls  gw_tls;

/* A TLS client connection's transport state (c->tls). */
typedef enum gw_tls_state {
    GW_TLS_HANDSHAKE,      /* ClientHello to Finished: no application bytes yet */
    GW_TLS_ESTABLISHED,    /* records flow; conn_read / gw_conn_flush go through SSL */
    GW_TLS_SHUTDOWN,       /* close_notify sent (or received): no more application bytes */
    GW_TLS_FAILED,         /* handshake or record error: the connection is dead */
} gw_tls_state;

const char *gw_tls_state_str(gw_tls_state s);

/* Builds the certificate set, ticket keys and metrics from cfg. rt->tls
 * stays NULL when cfg has no tls_listen. -1 with err (file and reason). */
int  gw_tls_init(gw_rt *rt, const gw_config *cfg, char *err, size_t errlen);
void gw_tls_free(gw_rt *rt);
/* Loads cfg's certificates afresh and swaps them in; on any error the
 * running set stays and err says which file and why. Safe from any
 * thread (the main thread's SIGHUP, the admin thread's API). */
int  gw_tls_reload(gw_rt *rt, const gw_config *cfg, char *err, size_t errlen);
/* Housekeeping from the main thread: rotates the ticket key when due. */
void gw_tls_tick(gw_rt *rt);
/* The default certificate's subject and expiry, for the API and logs. */
void gw_tls_describe(gw_rt *rt, char *out, size_t outlen);

/* Per connection (the worker thread that owns c). */
int     gw_tls_conn_new(gw_conn *c);
/* Drives the handshake: 1 done (c->tls ESTABLISHED), 0 waiting for the
 * socket, -1 failed (counted by reason; c->tls FAILED). */
int     gw_tls_handshake(gw_conn *c);
/* read(2)/write(2) contract: bytes, 0 at EOF (read), -1 with errno
 * (EAGAIN when the socket must become ready first). */
ssize_t gw_tls_read(gw_conn *c, void *p, size_t n);
ssize_t gw_tls_write(gw_conn *c, const void *p, size_t n);
/* After a read that returned bytes: true when nothing more can be read
 * without waiting (the socket read came back short and OpenSSL holds no
 * record), the TLS form of "a short read drained the socket". */
bool    gw_tls_drained(const gw_conn *c);
/* The connection closes once its records are out: close_notify joins
 * them (once; the state becomes SHUTDOWN). */
void    gw_tls_close_notify(gw_conn *c);
/* The queued records (c->tls_out) go to the socket in one write. 0 all
 * written, 1 the rest waits for writability (c->tls_out_blocked), -1 the
 * connection failed. */
int     gw_tls_push(gw_conn *c);
/* True when c's records queue in c->tls_out (gw_tls_bio.c), so gw_io.c's
 * write batch may send them; false with kTLS, whose SSL_write goes to the
 * kernel itself (OpenSSL's socket BIO), and for a plain connection. */
bool    gw_tls_queued(const gw_conn *c);
/* gw_io.c's batch sent c->tls_out; res is what the send returned: bytes
 * (what is left waits for writability: the socket took less, so it is
 * full), -EAGAIN (full: waits for writability), 0 (not sent, the ring
 * failed: pushed now with write(2)), any other error (the client is gone:
 * c->dead). */
void    gw_tls_sent(gw_conn *c, int res);
/* The handshake did not finish within client_header_timeout: counted. */
void    gw_tls_timed_out(gw_conn *c);
/* Between requests: what is queued goes out (a ticket, when no request
 * came with the client's Finished), and OpenSSL's record buffers go back
 * (an idle TLS connection holds only its SSL state). */
void    gw_tls_idle(gw_conn *c);
/* Sends close_notify (unless gw_tls_close_notify did) and what is queued, one
 * non-blocking try, and frees the SSL. */
void    gw_tls_conn_free(gw_conn *c);

#endif
