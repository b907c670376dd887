/* gw_tls_bio.c -- the socket under a TLS client connection: an OpenSSL
 * BIO whose reads skip a socket known to be empty and whose writes are
 * queued, then pushed to the socket in one write at the connection's own
 * flush points (gw_tls_push), or sent with the worker's other sockets in
 * one io_uring call (gw_io.c, gw_tls_sent).
 *
 * Why ours and not OpenSSL's socket BIO: on a connection that makes one
 * request, system calls are most of the cost (each is several µs here,
 * and every segment sent also wakes the client), and OpenSSL's socket BIO
 * makes one write per flight and per record and one read that can only
 * fail with EAGAIN:
 *  - TLS 1.3 sends its NewSessionTicket when the handshake ends. Queued,
 *    it leaves with the response and close_notify: one write where there
 *    were three (TLS 1.2: response and close_notify, two to one).
 *  - After sending its flight the handshake reads on for the client's
 *    answer, which cannot be there yet. The socket is edge-triggered, so a
 *    short read means it is empty until the next read edge (gw_conn_io
 *    clears c->tls_drained on EV_READ); until then a read returns "retry"
 *    without asking the kernel.
 *
 * Invariants:
 *  - Order: a record is queued only behind the queue, or written (writev)
 *    together with it; nothing overtakes queued bytes.
 *  - The queue is bounded (one worker buffer, GW_BUF_SIZE): a record that
 *    does not fit goes to the socket with the queue in one writev, so a
 *    large response is not copied and the socket's back-pressure reaches
 *    SSL_write as before (WANT_WRITE, retried on EV_WRITE).
 *  - OpenSSL's BIO_flush is a no-op here: the handshake's flights are
 *    pushed by gw_tls_handshake when it waits for the client (and at its
 *    end under TLS 1.2, whose client waits for the server's Finished),
 *    application records by gw_conn_flush or gw_io.c's write batch
 *    (gw_conn_tls_seal, then gw_tls_push or gw_tls_sent), and what is
 *    left when the connection goes idle (gw_tls_idle) or closes. So a TLS
 *    1.3 ticket leaves with the response when the request is read with
 *    the client's Finished (as wrk's is), and alone, at once, when the
 *    connection goes idle first (s_client, a preconnect).
 *  - c->tls_out_blocked: the socket refused bytes (EAGAIN, or the write
 *    batch's send came back short); the next EV_WRITE pushes, and a
 *    closing connection waits for the queue.
 *  - Memory: the queue's buffer goes back to the worker once empty, so an
 *    idle connection holds none.
 *
 * Used only without kTLS: OpenSSL moves records into the kernel only on
 * its own socket BIO (gw_tls_conn_new picks). */
#include "gateway/gw_tls_int.h"

#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gateway/gw_proxy.h"

static int tls_bio_read(BIO *b, char *p, int n)
{
    gw_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (c->tls_drained) {
        BIO_set_retry_read(b);     /* empty until the next read edge */
        return -1;
    }
    ssize_t r;
    do
        r = read(c->fd, p, (size_t)n);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->tls_drained = true;
            BIO_set_retry_read(b);
        }
        return -1;
    }
    if (r == 0)
        BIO_set_flags(b, BIO_FLAGS_IN_EOF);     /* BIO_eof: the peer closed */
    else
        c->tls_drained = r < n;
    return (int)r;
}

/* Queue, then this record: one writev. Returns what write(2) would for
 * the record alone; the queue's part is consumed either way. */
static int tls_bio_writev(BIO *b, gw_conn *c, const char *p, int n)
{
    buf *q = &c->tls_out;
    struct iovec iov[2] = {
        { buf_head(q), q->len },
        { (void *)p, (size_t)n },
    };
    int first = q->len ? 0 : 1;
    ssize_t r;
    do
        r = writev(c->fd, iov + first, 2 - first);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->tls_out_blocked = true;
            BIO_set_retry_write(b);
        }
        return -1;
    }
    size_t qpart = (size_t)r < q->len ? (size_t)r : q->len;
    buf_consume(q, qpart);
    r -= (ssize_t)qpart;
    if (q->len == 0)
        gw_buf_release(c->w, q);
    if (r == 0) {                  /* the socket filled before the record */
        c->tls_out_blocked = true;
        BIO_set_retry_write(b);
        return -1;
    }
    c->tls_out_blocked = false;
    return (int)r;
}

static int tls_bio_write(BIO *b, const char *p, int n)
{
    gw_conn *c = BIO_get_data(b);
    buf *q = &c->tls_out;
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    if (q->len + (size_t)n <= GW_BUF_SIZE) {
        gw_buf_acquire(c->w, q);          /* none yet: a worker buffer */
        if (buf_append(q, p, (size_t)n) == 0)
            return n;
    }
    return tls_bio_writev(b, c, p, n);
}

static long tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    gw_conn *c = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;                  /* pushed at the connection's flush points */
    case BIO_CTRL_WPENDING:
        return c ? (long)c->tls_out.len : 0;
    case BIO_CTRL_PENDING:
        return 0;
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    default:
        return 0;
    }
}

static int tls_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

BIO_METHOD *gw_tls_bio_method_new(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "hscale client socket");
    if (!m)
        return NULL;
    if (BIO_meth_set_read(m, tls_bio_read) != 1 || BIO_meth_set_write(m, tls_bio_write) != 1
        || BIO_meth_set_ctrl(m, tls_bio_ctrl) != 1 || BIO_meth_set_create(m, tls_bio_create) != 1) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

BIO *gw_tls_bio_new(const BIO_METHOD *m, gw_conn *c)
{
    BIO *b = BIO_new(m);
    if (b)
        BIO_set_data(b, c);
    return b;
}

void gw_tls_sent(gw_conn *c, int res)
{
    buf *q = &c->tls_out;
    if (res == 0) {
        /* Not sent (the ring failed): the plain write now, so a closing
         * connection does not wait for a writability edge that is not
         * coming. */
        if (gw_tls_bio_push(c) < 0)
            c->dead = true;
        return;
    }
    if (res < 0 && res != -EAGAIN && res != -EWOULDBLOCK) {
        c->dead = true;                /* reset, broken pipe: the client is gone */
        return;
    }
    if (res > 0)
        buf_consume(q, (size_t)res < q->len ? (size_t)res : q->len);
    if (q->len == 0) {
        gw_buf_release(c->w, q);
        c->tls_out_blocked = false;
    } else {
        c->tls_out_blocked = true;     /* the socket took less, or none: it is full */
    }
}

int gw_tls_bio_push(gw_conn *c)
{
    buf *q = &c->tls_out;
    while (q->len) {
        ssize_t r = write(c->fd, buf_head(q), q->len);
        if (r > 0) {
            buf_consume(q, (size_t)r);
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->tls_out_blocked = true;
            return 1;
        }
        return -1;
    }
    gw_buf_release(c->w, q);
    c->tls_out_blocked = false;
    return 0;
}
