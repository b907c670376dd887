/* test_gw_tls_bio.c -- the TLS client socket's BIO (gw_tls_bio.c) over a
 * non-blocking socketpair: writes queue until a push, a record that does
 * not fit leaves with the queue in one writev and in order, back-pressure
 * reaches the caller as a retry, a socket known empty is not read, and EOF
 * is reported; what the write batch (gw_io.c) sent is taken off the queue
 * (gw_tls_sent). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/gw_proxy.h"
#include "gateway/gw_tls_int.h"

static gw_worker   w;
static gw_conn     c;
static int         peer;
static BIO_METHOD *meth;
static BIO        *b;

static void setup(void)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    memset(&w, 0, sizeof w);
    memset(&c, 0, sizeof c);
    w.free_bufs = calloc(256, sizeof *w.free_bufs);
    c.w = &w;
    c.fd = sv[0];
    peer = sv[1];
    meth = gw_tls_bio_method_new();
    b = gw_tls_bio_new(meth, &c);
    cr_assert(b);
}

static void teardown(void)
{
    BIO_free(b);
    BIO_meth_free(meth);
    gw_buf_release(&w, &c.tls_out);
    for (unsigned i = 0; i < w.nfree_bufs; i++)
        free(w.free_bufs[i]);
    free(w.free_bufs);
    close(c.fd);
    close(peer);
}

/* Everything the peer can read now. */
static size_t drain(char *out, size_t cap)
{
    size_t got = 0;
    ssize_t n;
    while (got < cap && (n = read(peer, out + got, cap - got)) > 0)
        got += (size_t)n;
    return got;
}

TestSuite(gw_tls_bio, .init = setup, .fini = teardown);

Test(gw_tls_bio, small_writes_wait_for_one_push_and_keep_their_order)
{
    char out[64];
    cr_assert_eq(BIO_write(b, "ticket|", 7), 7);
    cr_assert_eq(BIO_write(b, "response|", 9), 9);
    cr_assert_eq(BIO_flush(b), 1);                 /* OpenSSL's flush sends nothing */
    cr_assert_eq(BIO_wpending(b), 16);
    cr_assert_eq(read(peer, out, sizeof out), -1);
    cr_assert_eq(errno, EAGAIN);
    cr_assert_eq(BIO_write(b, "notify", 6), 6);
    cr_assert_eq(gw_tls_bio_push(&c), 0);
    cr_assert_eq(read(peer, out, sizeof out), 22); /* one write: all of it */
    cr_assert_arr_eq(out, "ticket|response|notify", 22);
    cr_assert_null(c.tls_out.data, "an empty queue holds no buffer");
    cr_assert_not(c.tls_out_blocked);
}

Test(gw_tls_bio, a_record_too_big_for_the_queue_leaves_with_it_in_order)
{
    size_t big = GW_BUF_SIZE + 100;
    char *rec = malloc(big), *out = malloc(big + 16);
    memset(rec, 'r', big);
    cr_assert_eq(BIO_write(b, "head", 4), 4);
    cr_assert_eq(BIO_write(b, rec, (int)big), (int)big);
    cr_assert_eq(BIO_wpending(b), 0);
    cr_assert_eq(drain(out, big + 16), big + 4);
    cr_assert_arr_eq(out, "head", 4);
    cr_assert_eq(out[4], 'r');
    cr_assert_eq(out[big + 3], 'r');
    free(rec);
    free(out);
}

Test(gw_tls_bio, a_full_socket_is_a_retry_and_the_queue_waits_for_writability)
{
    size_t n = GW_BUF_SIZE + 1;
    char *rec = malloc(n), *sink = malloc(1 << 20);
    memset(rec, 'x', n);
    /* Fill the socket until it refuses. */
    int wrote;
    while ((wrote = BIO_write(b, rec, (int)n)) > 0) {
    }
    cr_assert(BIO_should_retry(b) && BIO_should_write(b));
    cr_assert(c.tls_out_blocked);
    cr_assert_eq(BIO_write(b, "tail", 4), 4, "small records still queue");
    cr_assert_eq(gw_tls_bio_push(&c), 1, "the socket is still full");
    while (drain(sink, 1 << 20) > 0) {
    }
    cr_assert_eq(gw_tls_bio_push(&c), 0);
    cr_assert_not(c.tls_out_blocked);
    char out[8];
    cr_assert_eq(read(peer, out, sizeof out), 4);
    cr_assert_arr_eq(out, "tail", 4);
    free(rec);
    free(sink);
}

Test(gw_tls_bio, a_socket_known_empty_is_not_read_until_its_next_edge)
{
    char in[64];
    cr_assert_eq(BIO_read(b, in, sizeof in), -1);  /* EAGAIN: now known empty */
    cr_assert(BIO_should_retry(b) && BIO_should_read(b));
    cr_assert(c.tls_drained);
    cr_assert_eq(write(peer, "hello", 5), 5);
    cr_assert_eq(BIO_read(b, in, sizeof in), -1, "no read before the edge");
    cr_assert(BIO_should_retry(b));
    c.tls_drained = false;                         /* gw_conn_io on EV_READ */
    cr_assert_eq(BIO_read(b, in, sizeof in), 5);
    cr_assert_arr_eq(in, "hello", 5);
    cr_assert(c.tls_drained, "a short read emptied it");
    cr_assert_eq(write(peer, "0123456789", 10), 10);
    c.tls_drained = false;
    cr_assert_eq(BIO_read(b, in, 4), 4);
    cr_assert_not(c.tls_drained, "a full read may have left bytes");
    cr_assert_eq(BIO_read(b, in, sizeof in), 6);
}

Test(gw_tls_bio, eof_is_reported_to_openssl)
{
    char in[8];
    shutdown(peer, SHUT_WR);
    cr_assert_eq(BIO_read(b, in, sizeof in), 0);
    cr_assert_not(BIO_should_retry(b));
    cr_assert(BIO_eof(b));
}

/* gw_io.c's write batch sent the queue: what its send returned decides. */
Test(gw_tls_bio, a_batch_send_short_of_the_queue_leaves_the_rest_queued_and_waits)
{
    char out[64];
    cr_assert_eq(BIO_write(b, "ticket|response|notify", 22), 22);
    cr_assert_eq(write(c.fd, "ticket|", 7), 7);    /* as the batch's send of 7 bytes */
    gw_tls_sent(&c, 7);
    cr_assert_eq(c.tls_out.len, 15);
    cr_assert(c.tls_out_blocked, "the socket took less: EV_WRITE pushes the rest");
    cr_assert_not(c.dead);
    cr_assert_eq(gw_tls_bio_push(&c), 0);           /* EV_WRITE */
    cr_assert_eq(drain(out, sizeof out), 22);
    cr_assert_arr_eq(out, "ticket|response|notify", 22);
    cr_assert_not(c.tls_out_blocked);
}

Test(gw_tls_bio, a_batch_send_that_took_it_all_releases_the_queue)
{
    char out[64];
    cr_assert_eq(BIO_write(b, "response", 8), 8);
    cr_assert_eq(write(c.fd, buf_head(&c.tls_out), 8), 8);
    gw_tls_sent(&c, 8);
    cr_assert_null(c.tls_out.data);
    cr_assert_not(c.tls_out_blocked);
    cr_assert_eq(drain(out, sizeof out), 8);
}

Test(gw_tls_bio, a_batch_send_met_a_full_socket_or_a_gone_client_or_a_failed_ring)
{
    char out[64];
    cr_assert_eq(BIO_write(b, "response", 8), 8);
    gw_tls_sent(&c, -EAGAIN);                      /* full: nothing went */
    cr_assert_eq(c.tls_out.len, 8);
    cr_assert(c.tls_out_blocked);
    cr_assert_not(c.dead);
    c.tls_out_blocked = false;
    gw_tls_sent(&c, 0);                            /* the ring failed: a plain write now */
    cr_assert_null(c.tls_out.data);
    cr_assert_eq(drain(out, sizeof out), 8);
    cr_assert_arr_eq(out, "response", 8);
    cr_assert_eq(BIO_write(b, "more", 4), 4);
    gw_tls_sent(&c, -ECONNRESET);
    cr_assert(c.dead, "the client is gone");
}
