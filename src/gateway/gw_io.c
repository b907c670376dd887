/* gw_io.c -- a worker's socket reads and writes, a batch at a time.
 *
 * Proxying one request costs four socket calls (read the client, write the
 * upstream, read the upstream, write the client); on a virtual machine a
 * system call costs about a microsecond before it does any work, which is
 * a fifth of what the proxy spends per request. The loop already learns
 * about many sockets at once, so the calls are made in batches through
 * io_uring: after each epoll wait every readable client and upstream
 * socket is read in one io_uring_enter (before any callback runs), and at
 * the end of the iteration everything held back for writing
 * (gw_conn_defer) is sent in one more. A TLS connection joins that write
 * batch: its response is sealed into its record queue first
 * (gw_conn_tls_seal, with close_notify when it closes after it), and the
 * queue is what is sent (gw_tls_sent: a short send leaves the rest for
 * EV_WRITE). A connection already waiting for writability is left to its
 * own flush, as are kTLS connections (OpenSSL's socket BIO writes to the
 * kernel itself: nothing is queued). Reads of TLS connections stay with
 * OpenSSL.
 *
 * The batch does not change what the event handlers see. A read lands
 * exactly where conn_read / up_read would have put it, and the handler is
 * told (rx_seq == w->io_seq) that its read already happened and whether it
 * drained the socket; a send consumes what went from the output buffer and
 * the ordinary write path finds the rest (or nothing) as before. Every
 * operation is MSG_DONTWAIT, so each completes inside the call that
 * submitted it and no buffer is ever borrowed by the kernel past it: a
 * socket that has nothing to read or no room to write answers -EAGAIN and
 * is left to epoll. Results the handlers cannot replay (EOF, errors) are
 * not recorded; the handler's own call meets them again.
 *
 * When io_uring is disabled in the config or refused by the kernel (old
 * kernels, io_uring_disabled, container seccomp filters), w->io stays NULL
 * and the worker makes plain calls. */
#include "gateway/gw_proxy.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/log.h"
#include "gateway/gw_tls.h"

#define GW_IO_OPS 256u   /* ring size: one epoll batch (EV_BATCH) of reads */

enum { OP_CONN_RX, OP_EX_RX, OP_CONN_TX, OP_EX_TX, OP_CONN_TLS_TX };

typedef struct gw_io_op {
    void    *obj;        /* gw_conn or gw_exchange */
    uint32_t len;        /* bytes offered */
    uint8_t  kind;
} gw_io_op;

typedef struct gw_io {
    struct io_uring ring;
    bool            broken;    /* the ring failed once: plain calls from then on */
    unsigned        nops;
    gw_io_op        ops[GW_IO_OPS];
    int             res[GW_IO_OPS];
} gw_io;

static void batch_each(ev_loop *loop, int fd, ev_io_fn *fn, void *arg, void *hook_arg);
static void batch_done(ev_loop *loop, void *hook_arg);

void gw_io_init(gw_worker *w, bool enabled)
{
    w->io_seq = 1;
    if (!enabled) {
        if (w->id == 0)
            log_info("socket I/O: plain calls (io_uring off)");
        return;
    }
    gw_io *io = calloc(1, sizeof *io);
    if (!io)
        return;
    /* Only this thread submits; completions need no interrupting it. */
    unsigned flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER;
    int rc = io_uring_queue_init(GW_IO_OPS, &io->ring, flags);
    if (rc == -EINVAL)
        rc = io_uring_queue_init(GW_IO_OPS, &io->ring, 0);
    if (rc < 0) {
        if (w->id == 0)
            log_info("socket I/O: plain calls (io_uring unavailable: %s)", strerror(-rc));
        free(io);
        return;
    }
    w->io = io;
    ev_set_batch_hook(w->loop, batch_each, batch_done, w);
    if (w->id == 0)
        log_info("socket I/O: batched through io_uring");
}

void gw_io_free(gw_worker *w)
{
    if (!w->io)
        return;
    ev_set_batch_hook(w->loop, NULL, NULL, NULL);
    io_uring_queue_exit(&w->io->ring);
    free(w->io);
    w->io = NULL;
}

/* Submits the queued operations and collects every result into io->res
 * (they complete inline: MSG_DONTWAIT). If the ring itself fails, the
 * worker stops using it for good: operations it did not take would
 * otherwise run on a later call, against buffers that moved on. */
static void run_ops(gw_io *io)
{
    unsigned n = io->nops, got = 0;
    for (unsigned i = 0; i < n; i++)
        io->res[i] = -EAGAIN;
    int rc;
    do
        rc = io_uring_submit_and_wait(&io->ring, n);
    while (rc == -EINTR);
    while (rc >= 0 && got < n) {
        struct io_uring_cqe *cqe;
        rc = io_uring_wait_cqe(&io->ring, &cqe);
        if (rc == -EINTR) {
            rc = 0;
            continue;
        }
        if (rc < 0)
            break;
        uint64_t i = io_uring_cqe_get_data64(cqe);
        if (i < n)
            io->res[i] = cqe->res;
        io_uring_cqe_seen(&io->ring, cqe);
        got++;
    }
    if (rc < 0) {
        /* Results already collected stand (a send that went must not be
         * sent again); the rest read as -EAGAIN: nothing done. */
        log_error("socket I/O: io_uring failed (%s): plain calls from now on", strerror(-rc));
        io->broken = true;
    }
}

static void queue_op(gw_io *io, int fd, int kind, void *obj, void *p, size_t len)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
    if (!sqe)
        return;                    /* cannot happen: nops < ring entries */
    if (len > UINT32_MAX)
        len = UINT32_MAX;
    if (kind == OP_CONN_RX || kind == OP_EX_RX)
        io_uring_prep_recv(sqe, fd, p, len, MSG_DONTWAIT);
    else
        io_uring_prep_send(sqe, fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, io->nops);
    io->ops[io->nops++] = (gw_io_op){ .obj = obj, .len = (uint32_t)len, .kind = (uint8_t)kind };
}

/* ---- reads: before the batch's callbacks ------------------------------- */

static void batch_each(ev_loop *loop, int fd, ev_io_fn *fn, void *arg, void *hook_arg)
{
    gw_io *io = ((gw_worker *)hook_arg)->io;
    (void)loop;
    if (io->broken || io->nops == GW_IO_OPS)
        return;
    size_t room = 0;
    char *p;
    if (fn == gw_conn_io && (p = gw_conn_rx_room(arg, &room)))
        queue_op(io, fd, OP_CONN_RX, arg, p, room);
    else if (fn == gw_exchange_io && (p = gw_exchange_rx_room(arg, &room)))
        queue_op(io, fd, OP_EX_RX, arg, p, room);
}

static void batch_done(ev_loop *loop, void *hook_arg)
{
    gw_worker *w = hook_arg;
    gw_io *io = w->io;
    (void)loop;
    if (++w->io_seq == 0)
        w->io_seq = 1;             /* 0 is "no read ahead" */
    if (!io->nops)
        return;
    run_ops(io);
    for (unsigned i = 0; i < io->nops; i++) {
        if (io->ops[i].kind == OP_CONN_RX)
            gw_conn_rx_done(io->ops[i].obj, io->res[i], io->ops[i].len);
        else
            gw_exchange_rx_done(io->ops[i].obj, io->res[i], io->ops[i].len);
    }
    io->nops = 0;
}

/* ---- writes: at the end of the iteration ------------------------------- */

static void apply_writes(gw_io *io)
{
    run_ops(io);
    for (unsigned i = 0; i < io->nops; i++) {
        if (io->ops[i].kind == OP_CONN_TLS_TX) {
            /* After a ring failure -EAGAIN may mean "not run": 0 has the
             * queue pushed with a plain write (which meets a real EAGAIN
             * again, at the cost of one call). */
            gw_tls_sent(io->ops[i].obj, io->broken && io->res[i] == -EAGAIN ? 0 : io->res[i]);
            continue;
        }
        if (io->res[i] <= 0)
            continue;              /* full socket or error: the write path sees it */
        if (io->ops[i].kind == OP_CONN_TX)
            buf_consume(&((gw_conn *)io->ops[i].obj)->out, (size_t)io->res[i]);
        else
            gw_exchange_tx_done(io->ops[i].obj, (size_t)io->res[i]);
    }
    io->nops = 0;
}

void gw_io_write_pending(gw_worker *w)
{
    gw_io *io = w->io;
    if (!io || io->broken)
        return;
    /* Requests first, as gw_worker_flush does: the backends start on them
     * while the responses go out. */
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < w->npend; i++) {
            gw_conn *c = w->pend[i];
            if (!c || c->dead)
                continue;
            if (io->nops == GW_IO_OPS)
                apply_writes(io);
            size_t len;
            const char *p;
            if (pass == 0 && c->ex && (p = gw_exchange_tx_pending(c->ex, &len)))
                queue_op(io, c->ex->ufd, OP_EX_TX, c->ex, (void *)p, len);
            else if (pass == 1 && c->out.len && !c->ssl)
                queue_op(io, c->fd, OP_CONN_TX, c, buf_head(&c->out), c->out.len);
            else if (pass == 1 && c->out.len && !c->tls_out_blocked && gw_tls_queued(c)
                     && gw_conn_tls_seal(c) == 0 && c->tls_out.len && !c->tls_out_blocked)
                queue_op(io, c->fd, OP_CONN_TLS_TX, c, buf_head(&c->tls_out), c->tls_out.len);
        }
    }
    if (io->nops)
        apply_writes(io);
}
