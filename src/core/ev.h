/* ev.h -- the event loop: fd readiness on epoll, intrusive timers on a
 * binary heap, and a cross-thread task queue.
 *
 * One loop per thread. Nothing here is thread-safe except ev_stop() and
 * ev_post(), which may be called from any thread to wake a loop.
 *
 * Readiness is edge-triggered: a file descriptor is registered once for both
 * directions (EV_READ|EV_WRITE) and callbacks must read or write until EAGAIN.
 * That costs the handlers a loop but removes every epoll_ctl() from the
 * request path: a proxy that flips write interest on and off per response
 * would otherwise make two syscalls per request for nothing.
 *
 * Timers are embedded in their owner (a connection, a health check), so
 * arming and disarming allocate nothing; the heap keeps each timer's index
 * so ev_timer_stop() is O(log n). */
#ifndef HSCALE_CORE_EV_H
#define HSCALE_CORE_EV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ev_loop ev_loop;

enum {
    EV_READ  = 1u << 0,  /* readable, or peer closed its side (EOF to read) */
    EV_WRITE = 1u << 1,  /* writable */
    EV_ERROR = 1u << 2,  /* EPOLLERR/EPOLLHUP: the socket is dead */
};

/* Called with the events that fired (a mask of EV_*). */
typedef void ev_io_fn(ev_loop *loop, int fd, unsigned events, void *arg);

typedef struct ev_timer ev_timer;
typedef void ev_timer_fn(ev_loop *loop, ev_timer *timer);

/* A timer lives inside its owner; recover the owner with container_of-style
 * arithmetic or through `arg`. Zero-initialise before first use (or call
 * ev_timer_init). */
struct ev_timer {
    uint64_t     due_us;    /* monotonic deadline */
    uint64_t     seq;       /* insertion order: ties fire first-in first-out */
    size_t       heap_idx;  /* position in the heap + 1; 0 when not armed */
    ev_timer_fn *fn;
    void        *arg;
};

ev_loop *ev_loop_new(void);
void     ev_loop_free(ev_loop *loop);

/* Runs until ev_stop(). Returns 0, or -1 with errno on an epoll failure. */
int  ev_run(ev_loop *loop);
/* Thread-safe: asks the loop to return from ev_run() after this iteration. */
void ev_stop(ev_loop *loop);
/* Runs one iteration, waiting at most timeout_ms (-1: until something
 * happens). Returns the number of events and timers handled, or -1. */
int  ev_run_once(ev_loop *loop, int timeout_ms);

/* Registers fd (edge-triggered) for the directions in `events`. -1 with
 * EEXIST when fd is already registered: call ev_io_del() before close(),
 * or the next socket to get that number cannot be added.
 * On EPOLLERR/EPOLLHUP the callback sees EV_ERROR plus every registered
 * direction, so a handler that only reads or writes meets the error on its
 * next syscall. */
int  ev_io_add(ev_loop *loop, int fd, unsigned events, ev_io_fn *fn, void *arg);
/* Changes the directions or the callback of a registered fd (no syscall
 * when the directions are unchanged). -1 with ENOENT when not registered. */
int  ev_io_mod(ev_loop *loop, int fd, unsigned events, ev_io_fn *fn, void *arg);
/* Removes fd. Safe to call from inside its own callback; pending events for
 * it in the current batch are dropped. Does not close fd. */
void ev_io_del(ev_loop *loop, int fd);
/* ev_io_del for an fd the caller closes right after and never duplicated
 * (an accepted client socket): close() takes it out of the epoll set, so
 * the EPOLL_CTL_DEL system call is skipped. Were a duplicate open after
 * all, its late events would carry the old generation and be dropped. */
void ev_io_del_closing(ev_loop *loop, int fd);

/* Batch hook: after each wait and before any callback runs, `each` is
 * called for every ready fd that is readable (with its callback and arg),
 * then `done` once. A proxy uses it to read every ready socket of the
 * batch in one system call; `each` must not add or remove fds. */
typedef void ev_batch_each_fn(ev_loop *loop, int fd, ev_io_fn *fn, void *arg, void *hook_arg);
typedef void ev_batch_done_fn(ev_loop *loop, void *hook_arg);
void ev_set_batch_hook(ev_loop *loop, ev_batch_each_fn *each, ev_batch_done_fn *done,
                       void *hook_arg);

void ev_timer_init(ev_timer *t, ev_timer_fn *fn, void *arg);
/* Arms (or re-arms) t to fire once, `after_us` from the loop's now. */
void ev_timer_start(ev_loop *loop, ev_timer *t, uint64_t after_us);
void ev_timer_stop(ev_loop *loop, ev_timer *t);
static inline bool ev_timer_armed(const ev_timer *t) { return t->heap_idx != 0; }

/* The loop's clock, sampled once per iteration (monotonic, microseconds).
 * ev_now_update() refreshes it when a handler needs a fresher reading. */
uint64_t ev_now_us(const ev_loop *loop);
uint64_t ev_now_update(ev_loop *loop);

/* Thread-safe: runs fn(arg) on the loop's own thread at its next iteration,
 * in the order posted. Returns -1 (ENOMEM) when the task cannot be queued. */
typedef void ev_task_fn(ev_loop *loop, void *arg);
int ev_post(ev_loop *loop, ev_task_fn *fn, void *arg);

/* Monotonic and wall clocks, outside any loop. */
uint64_t ev_monotonic_us(void);
uint64_t ev_wall_us(void);

#endif
