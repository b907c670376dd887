/* test_ev.c -- event loop: timer ordering and FIFO ties, stop/restart,
 * edge-triggered io on socketpairs, delete-inside-callback with fd reuse,
 * cross-thread ev_post ordering and ev_stop. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/ev.h"

/* Criterion's runner leaks one small block at exit; not ours. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

/* ---- timers ----------------------------------------------------------- */

#define NT 5000

typedef struct {
    ev_timer t;
    uint64_t due;
    int      id;
} tt;

static uint64_t last_due;
static int      last_id_same_due;
static int      fired;
static int      order_bad;
static tt      *all;

static void on_tt(ev_loop *loop, ev_timer *t)
{
    tt *x = t->arg;
    if (x->due < last_due)
        order_bad++;
    /* Ties: ids were armed in increasing order. */
    if (x->due == last_due && x->id < last_id_same_due)
        order_bad++;
    last_due = x->due;
    last_id_same_due = x->id;
    fired++;
    (void)loop;
}

Test(ev, timers_fire_in_deadline_order_fifo_ties)
{
    ev_loop *loop = ev_loop_new();
    cr_assert_not_null(loop);
    all = calloc(NT, sizeof *all);
    srand(42);
    uint64_t base = ev_now_us(loop);
    for (int i = 0; i < NT; i++) {
        ev_timer_init(&all[i].t, on_tt, &all[i]);
        /* Coarse deadlines (multiples of 1ms, 0..30ms) so ties are common. */
        uint64_t after = (uint64_t)(rand() % 31) * 1000;
        all[i].id = i;
        ev_timer_start(loop, &all[i].t, after);
        all[i].due = all[i].t.due_us;
        cr_assert_eq(all[i].due, base + after);
    }
    /* Stop every 7th timer: they must not fire. */
    int stopped = 0;
    for (int i = 0; i < NT; i += 7) {
        ev_timer_stop(loop, &all[i].t);
        cr_assert(!ev_timer_armed(&all[i].t));
        stopped++;
    }
    fired = 0; order_bad = 0; last_due = 0; last_id_same_due = -1;
    uint64_t deadline = ev_monotonic_us() + 2000000;
    while (fired < NT - stopped && ev_monotonic_us() < deadline)
        ev_run_once(loop, 100);
    cr_assert_eq(fired, NT - stopped);
    cr_assert_eq(order_bad, 0);
    /* Every timer fired no earlier than its deadline. */
    cr_assert_geq(ev_now_us(loop), base + 30000);
    for (int i = 0; i < NT; i++)
        cr_assert(!ev_timer_armed(&all[i].t));
    free(all);
    ev_loop_free(loop);
}

static void on_due_only(ev_loop *loop, ev_timer *t)
{
    tt *x = t->arg;
    if (x->due < last_due || ev_now_us(loop) < x->due)
        order_bad++;
    last_due = x->due;
    fired++;
}

Test(ev, rearm_in_place_earlier_and_later_keeps_order)
{
    ev_loop *loop = ev_loop_new();
    all = calloc(NT, sizeof *all);
    srand(7);
    for (int i = 0; i < NT; i++) {
        ev_timer_init(&all[i].t, on_due_only, &all[i]);
        ev_timer_start(loop, &all[i].t, (uint64_t)(rand() % 31) * 1000);
    }
    /* Move two of every three: some earlier, some later, some to the same
     * deadline; none may fire twice, out of order or early. */
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < NT; i++)
            if (i % 3 != 0)
                ev_timer_start(loop, &all[i].t, (uint64_t)(rand() % 31) * 1000);
    for (int i = 0; i < NT; i++)
        all[i].due = all[i].t.due_us;
    fired = 0; order_bad = 0; last_due = 0;
    uint64_t deadline = ev_monotonic_us() + 2000000;
    while (fired < NT && ev_monotonic_us() < deadline)
        ev_run_once(loop, 100);
    ev_run_once(loop, 0);
    cr_assert_eq(fired, NT);
    cr_assert_eq(order_bad, 0);
    free(all);
    ev_loop_free(loop);
}

static int restart_count;
static void on_restart(ev_loop *loop, ev_timer *t)
{
    if (++restart_count < 5)
        ev_timer_start(loop, t, 0);   /* must not loop within one pass */
}

Test(ev, timer_restart_from_callback_and_rearm)
{
    ev_loop *loop = ev_loop_new();
    ev_timer t;
    ev_timer_init(&t, on_restart, NULL);
    ev_timer_start(loop, &t, 1000);
    /* Re-arming moves the deadline instead of adding a second entry. */
    ev_timer_start(loop, &t, 5000);
    cr_assert_eq(t.due_us, ev_now_us(loop) + 5000);
    uint64_t t0 = ev_monotonic_us();
    int passes = 0;
    while (restart_count < 5 && passes < 100) {
        ev_run_once(loop, 1000);
        passes++;
    }
    cr_assert_eq(restart_count, 5);
    cr_assert_geq(ev_monotonic_us() - t0, 5000);
    cr_assert_geq(passes, 5, "a zero re-arm fired within the same pass");
    cr_assert(!ev_timer_armed(&t));
    ev_loop_free(loop);
}

Test(ev, wait_honours_timer_without_spinning)
{
    ev_loop *loop = ev_loop_new();
    ev_timer t;
    restart_count = 100;   /* on_restart will not re-arm */
    ev_timer_init(&t, on_restart, NULL);
    ev_timer_start(loop, &t, 20000);
    uint64_t t0 = ev_monotonic_us();
    int iters = 0;
    while (ev_timer_armed(&t) && iters < 1000) {
        ev_run_once(loop, -1);
        iters++;
    }
    uint64_t dt = ev_monotonic_us() - t0;
    cr_assert(!ev_timer_armed(&t));
    cr_assert_geq(dt, 20000);
    cr_assert_lt(dt, 500000);
    cr_assert_leq(iters, 2, "busy-spun %d iterations", iters);
    ev_loop_free(loop);
}

/* ---- io --------------------------------------------------------------- */

typedef struct {
    int      reads, writes, errors;
    size_t   got;
    unsigned last;
} io_rec;

static void on_io(ev_loop *loop, int fd, unsigned ev, void *arg)
{
    io_rec *r = arg;
    r->last = ev;
    if (ev & EV_READ) {
        r->reads++;
        char b[64];
        ssize_t n;
        while ((n = read(fd, b, sizeof b)) > 0)
            r->got += (size_t)n;
    }
    if (ev & EV_WRITE) r->writes++;
    if (ev & EV_ERROR) r->errors++;
    (void)loop;
}

Test(ev, io_edge_triggered_socketpair)
{
    ev_loop *loop = ev_loop_new();
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    io_rec r = {0};
    cr_assert_eq(ev_io_add(loop, sv[0], EV_READ | EV_WRITE, on_io, &r), 0);
    cr_assert_eq(ev_io_add(loop, sv[0], EV_READ, on_io, &r), -1);
    cr_assert_eq(errno, EEXIST);
    ev_run_once(loop, 100);
    cr_assert_eq(r.writes, 1, "initially writable once");
    cr_assert_eq(r.reads, 0);
    /* Edge-triggered: nothing new, no event. */
    cr_assert_eq(ev_run_once(loop, 10), 0);
    cr_assert_eq(write(sv[1], "hello", 5), 5);
    ev_run_once(loop, 100);
    cr_assert_eq(r.reads, 1);
    cr_assert_eq(r.got, 5);
    /* Interest change to read-only keeps working. */
    cr_assert_eq(ev_io_mod(loop, sv[0], EV_READ, on_io, &r), 0);
    cr_assert_eq(write(sv[1], "abc", 3), 3);
    ev_run_once(loop, 100);
    cr_assert_eq(r.got, 8);
    /* Peer close: readable (EOF). */
    close(sv[1]);
    ev_run_once(loop, 100);
    cr_assert(r.last & EV_READ);
    ev_io_del(loop, sv[0]);
    close(sv[0]);
    ev_loop_free(loop);
}

/* The batch hook sees every readable fd of a batch, with its callback and
 * arg, before any callback of the batch runs; then `done` once. A writable
 * fd with nothing to read is not offered. */
static int hook_each, hook_done, hook_before_cb, cb_calls, hook_bad_arg;
static void hook_cb(ev_loop *loop, int fd, unsigned ev, void *arg)
{
    cb_calls++;
    char b[16];
    while (read(fd, b, sizeof b) > 0) {
    }
}
static void on_each(ev_loop *loop, int fd, ev_io_fn *fn, void *arg, void *hook_arg)
{
    hook_each++;
    if (cb_calls == 0)
        hook_before_cb++;
    if (fn != hook_cb || *(int *)arg != fd || *(int *)hook_arg != 42)
        hook_bad_arg++;
}
static void on_done(ev_loop *loop, void *hook_arg)
{
    hook_done++;
}

Test(ev, batch_hook_sees_readable_fds_before_callbacks)
{
    ev_loop *loop = ev_loop_new();
    int a[2], b[2], c[2], tag = 42;
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, c), 0);
    ev_set_batch_hook(loop, on_each, on_done, &tag);
    cr_assert_eq(ev_io_add(loop, a[0], EV_READ, hook_cb, &a[0]), 0);
    cr_assert_eq(ev_io_add(loop, b[0], EV_READ, hook_cb, &b[0]), 0);
    cr_assert_eq(ev_io_add(loop, c[0], EV_WRITE, hook_cb, &c[0]), 0);
    cr_assert_eq(write(a[1], "x", 1), 1);
    cr_assert_eq(write(b[1], "y", 1), 1);
    ev_run_once(loop, 100);
    cr_assert_eq(cb_calls, 3, "a, b readable and c writable: three callbacks");
    cr_assert_eq(hook_each, 2, "only the readable fds are offered");
    cr_assert_eq(hook_before_cb, 2, "offered before any callback ran");
    cr_assert_eq(hook_done, 1);
    cr_assert_eq(hook_bad_arg, 0);
    /* Nothing ready: no batch, no hook. */
    cr_assert_eq(ev_run_once(loop, 10), 0);
    cr_assert_eq(hook_done, 1);
    ev_set_batch_hook(loop, NULL, NULL, NULL);
    cr_assert_eq(write(a[1], "z", 1), 1);
    ev_run_once(loop, 100);
    cr_assert_eq(hook_each, 2, "hook removed");
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
        close(c[i]);
    }
    ev_loop_free(loop);
}

/* Callback on A deletes and closes B, then makes a new socketpair whose
 * first fd reuses B's number and registers it; the stale event for B in
 * the same batch must not reach the new owner. */
static int a_fd, b_fd, b_calls, newb_calls, new_peer, new_other;
static void on_b(ev_loop *loop, int fd, unsigned ev, void *arg) { b_calls++; }
static void on_newb(ev_loop *loop, int fd, unsigned ev, void *arg) { newb_calls++; }
static void on_a(ev_loop *loop, int fd, unsigned ev, void *arg)
{
    ev_io_del(loop, b_fd);
    close(b_fd);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    /* The lowest free number is b_fd's. */
    cr_assert_eq(sv[0], b_fd);
    new_peer = sv[1];
    new_other = sv[0];
    ev_io_add(loop, sv[0], EV_READ, on_newb, NULL);
    ev_io_del(loop, fd);   /* deleting itself is fine too */
}

Test(ev, del_inside_callback_drops_stale_events_on_reused_fd)
{
    ev_loop *loop = ev_loop_new();
    int pa[2], pb[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pa), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pb), 0);
    a_fd = pa[0];
    b_fd = pb[0];
    cr_assert_eq(write(pa[1], "x", 1), 1);
    cr_assert_eq(write(pb[1], "y", 1), 1);
    cr_assert_eq(ev_io_add(loop, a_fd, EV_READ, on_a, NULL), 0);
    cr_assert_eq(ev_io_add(loop, b_fd, EV_READ, on_b, NULL), 0);
    /* Both are ready; epoll reports them in one batch, A first (A was
     * registered first and became ready first). */
    ev_run_once(loop, 100);
    cr_assert_eq(b_calls, 0, "deleted fd got its stale event");
    cr_assert_eq(newb_calls, 0, "reused fd got the old owner's event");
    /* The new registration works. */
    cr_assert_eq(write(new_peer, "z", 1), 1);
    ev_run_once(loop, 100);
    cr_assert_eq(newb_calls, 1);
    ev_io_del(loop, new_other);
    close(new_other); close(new_peer);
    close(pa[0]); close(pa[1]); close(pb[1]);
    ev_loop_free(loop);
}

static int closing_calls;
static void on_closing(ev_loop *loop, int fd, unsigned ev, void *arg)
{
    (void)loop; (void)fd; (void)ev; (void)arg;
    closing_calls++;
}

/* ev_io_del_closing skips EPOLL_CTL_DEL: the close that follows takes the
 * fd out of epoll, the number can be registered again at once, and a
 * duplicate left open (which keeps the old registration alive in epoll)
 * only delivers events of an old generation, which are dropped. */
Test(ev, del_closing_frees_the_number_and_drops_a_duplicate_s_events)
{
    ev_loop *loop = ev_loop_new();
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p), 0);
    int dup_fd = dup(p[0]);                 /* keeps the open file alive */
    cr_assert_eq(ev_io_add(loop, p[0], EV_READ, on_closing, NULL), 0);
    int num = p[0];
    ev_io_del_closing(loop, num);
    close(num);
    int q[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, q), 0);
    int again = q[0] == num ? q[0] : dup2(q[0], num);
    cr_assert_eq(again, num);
    if (q[0] != num)
        close(q[0]);
    cr_assert_eq(ev_io_add(loop, num, EV_READ, on_closing, NULL), 0, "the number is free again");
    closing_calls = 0;
    cr_assert_eq(write(p[1], "x", 1), 1);   /* the old file (via dup_fd) becomes readable */
    ev_run_once(loop, 50);
    cr_assert_eq(closing_calls, 0, "the closed registration's event reached the new owner");
    cr_assert_eq(write(q[1], "y", 1), 1);
    ev_run_once(loop, 100);
    cr_assert_eq(closing_calls, 1);
    ev_io_del(loop, num);
    close(num); close(q[1]); close(dup_fd); close(p[1]);
    ev_loop_free(loop);
}

/* ---- cross-thread ----------------------------------------------------- */

#define NTHREADS 4
#define NPOSTS   5000

typedef struct { ev_loop *loop; int tid; } poster;
static int next_expected[NTHREADS];
static int post_bad, post_total;

static void on_task(ev_loop *loop, void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    int tid = (int)(v >> 20), seq = (int)(v & 0xfffff);
    if (seq != next_expected[tid])
        post_bad++;
    next_expected[tid] = seq + 1;
    if (++post_total == NTHREADS * NPOSTS)
        ev_stop(loop);
}

static void *post_thread(void *arg)
{
    poster *p = arg;
    for (int i = 0; i < NPOSTS; i++)
        while (ev_post(p->loop, on_task, (void *)(((uintptr_t)p->tid << 20) | (uintptr_t)i)) < 0)
            ;
    return NULL;
}

Test(ev, post_from_threads_runs_all_in_order, .timeout = 10)
{
    ev_loop *loop = ev_loop_new();
    pthread_t th[NTHREADS];
    poster ps[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        ps[i] = (poster){ loop, i };
        pthread_create(&th[i], NULL, post_thread, &ps[i]);
    }
    cr_assert_eq(ev_run(loop), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(post_total, NTHREADS * NPOSTS);
    cr_assert_eq(post_bad, 0);
    ev_loop_free(loop);
}

static void *stopper(void *arg)
{
    usleep(30000);
    ev_stop(arg);
    return NULL;
}

Test(ev, stop_from_other_thread_wakes_idle_loop, .timeout = 5)
{
    ev_loop *loop = ev_loop_new();
    pthread_t th;
    uint64_t t0 = ev_monotonic_us();
    pthread_create(&th, NULL, stopper, loop);
    cr_assert_eq(ev_run(loop), 0);   /* no fds, no timers: only the wakeup */
    pthread_join(th, NULL);
    uint64_t dt = ev_monotonic_us() - t0;
    cr_assert_geq(dt, 25000);
    cr_assert_lt(dt, 2000000);
    /* The loop can run again after a stop; a stop before run is honoured. */
    ev_stop(loop);
    cr_assert_eq(ev_run(loop), 0);
    ev_loop_free(loop);
}

Test(ev, clocks)
{
    uint64_t a = ev_monotonic_us(), b = ev_monotonic_us();
    cr_assert_geq(b, a);
    cr_assert_gt(ev_wall_us(), 1600000000ull * 1000000ull);
    ev_loop *loop = ev_loop_new();
    uint64_t n0 = ev_now_us(loop);
    usleep(2000);
    cr_assert_eq(ev_now_us(loop), n0, "now is cached");
    cr_assert_geq(ev_now_update(loop), n0 + 2000);
    ev_loop_free(loop);
}
