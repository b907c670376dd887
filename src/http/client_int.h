/* client_int.h -- what client.c (http_fetch) and client_tls.c share: one
 * connection's I/O, plain or TLS. Private to src/http. */
#ifndef HSCALE_HTTP_CLIENT_INT_H
#define HSCALE_HTTP_CLIENT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "client.h"

typedef struct fetch_io {
    int            fd;
    struct ssl_st *ssl;    /* NULL: plain TCP */
    short          want;   /* after EAGAIN from TLS: POLLIN or POLLOUT */
} fetch_io;

/* Waits until fd is ready for ev (POLLIN/POLLOUT) or the monotonic
 * deadline (us) passes: 1 ready, 0 timeout, -1 error (client.c). */
int     http_fetch_wait_fd(int fd, short ev, uint64_t deadline);

/* Handshake on the connected non-blocking io->fd, verifying the peer
 * against the CA file and host (a name or an IP literal) before
 * deadline (monotonic us); tls, when not NULL, overrides the CA file, the
 * name and whether to verify. 0, or -1 with err saying why. */
int     http_client_tls_start(fetch_io *io, const char *host, const http_tls_client *tls,
                              uint64_t deadline, char *err, size_t errlen);
/* read(2)/write(2) contract: bytes, 0 at EOF (read), -1 with errno
 * (EAGAIN: wait for io->want). */
ssize_t http_client_tls_read(fetch_io *io, void *p, size_t n);
ssize_t http_client_tls_write(fetch_io *io, const void *p, size_t n);
void    http_client_tls_close(fetch_io *io);
/* What a pooled https connection must match to be reused for host with
 * the settings tls (NULL: the process-wide ones). */
void    http_client_tls_key(const char *host, const http_tls_client *tls, char *out, size_t outlen);

#endif
