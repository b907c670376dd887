/* ev.c -- epoll event loop, min-heap timers, cross-thread task queue.
 *
 * Invariants:
 *  - slots[fd] describes a registered fd; each registration gets a fresh
 *    generation, and epoll carries (gen << 32 | fd). An event whose gen no
 *    longer matches its slot belongs to an fd that was deleted (and maybe
 *    re-added, since the kernel reuses numbers at once) earlier in the same
 *    batch, so it is dropped rather than delivered to the wrong owner.
 *  - heap[i]->heap_idx == i + 1 for every armed timer; the heap orders by
 *    (due_us, seq), so equal deadlines fire in arming order.
 *  - A timer armed from inside a timer callback never fires in the same
 *    pass (its seq is past the pass's snapshot), so `after_us == 0` cannot
 *    starve the loop.
 *  - The eventfd is the only thing other threads touch besides the task
 *    list (under `mu`) and the `stop` flag (atomic).
 *
 * Nothing on the dispatch path allocates: the event array is fixed, the
 * slot table only grows when a larger fd is registered, the heap only when
 * more timers are armed than ever before. */
#include "core/ev.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define EV_BATCH 256
#define EV_WAKE_TAG UINT64_MAX   /* epoll data of the eventfd */

typedef struct ev_slot {
    ev_io_fn *fn;
    void     *arg;
    uint32_t  gen;     /* bumped on every add and del */
    unsigned  events;  /* registered EV_READ|EV_WRITE; 0 when free */
    int       active;
} ev_slot;

typedef struct ev_task {
    struct ev_task *next;
    ev_task_fn     *fn;
    void           *arg;
} ev_task;

struct ev_loop {
    int         epfd;
    int         wakefd;
    uint64_t    now_us;
    atomic_bool stop;

    ev_slot    *slots;
    size_t      nslots;

    ev_batch_each_fn *batch_each;
    ev_batch_done_fn *batch_done;
    void             *batch_arg;

    ev_timer  **heap;
    size_t      heap_len, heap_cap;
    uint64_t    timer_seq;

    pthread_mutex_t mu;          /* guards the task list */
    ev_task   *task_head, *task_tail;
    atomic_bool tasks_pending;   /* hint: lets run_once skip the lock */

    struct epoll_event evs[EV_BATCH];
};

/* ---- clocks ----------------------------------------------------------- */

static uint64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t ev_monotonic_us(void) { return clock_us(CLOCK_MONOTONIC); }
uint64_t ev_wall_us(void)      { return clock_us(CLOCK_REALTIME); }
uint64_t ev_now_us(const ev_loop *loop) { return loop->now_us; }

uint64_t ev_now_update(ev_loop *loop)
{
    loop->now_us = ev_monotonic_us();
    return loop->now_us;
}

/* ---- lifecycle -------------------------------------------------------- */

ev_loop *ev_loop_new(void)
{
    ev_loop *loop = calloc(1, sizeof *loop);
    if (!loop)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->epfd < 0 || loop->wakefd < 0)
        goto fail;
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV_WAKE_TAG };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0)
        goto fail;
    if (pthread_mutex_init(&loop->mu, NULL) != 0)
        goto fail;
    atomic_init(&loop->stop, false);
    atomic_init(&loop->tasks_pending, false);
    ev_now_update(loop);
    return loop;
fail: {
        int saved = errno;
        if (loop->epfd >= 0) close(loop->epfd);
        if (loop->wakefd >= 0) close(loop->wakefd);
        free(loop);
        errno = saved;
        return NULL;
    }
}

void ev_loop_free(ev_loop *loop)
{
    if (!loop)
        return;
    for (size_t i = 0; i < loop->heap_len; i++)
        loop->heap[i]->heap_idx = 0;
    free(loop->heap);
    free(loop->slots);
    ev_task *t = loop->task_head;
    while (t) {
        ev_task *next = t->next;
        free(t);
        t = next;
    }
    pthread_mutex_destroy(&loop->mu);
    close(loop->epfd);
    close(loop->wakefd);
    free(loop);
}

static void wake(ev_loop *loop)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the loop will wake. */
    ssize_t r = write(loop->wakefd, &one, sizeof one);
    (void)r;
}

void ev_stop(ev_loop *loop)
{
    atomic_store(&loop->stop, true);
    wake(loop);
}

/* ---- io --------------------------------------------------------------- */

static uint32_t to_epoll(unsigned events)
{
    uint32_t e = EPOLLET;
    if (events & EV_READ)  e |= EPOLLIN | EPOLLRDHUP;
    if (events & EV_WRITE) e |= EPOLLOUT;
    return e;
}

static int slots_grow(ev_loop *loop, int fd)
{
    if ((size_t)fd < loop->nslots)
        return 0;
    size_t n = loop->nslots ? loop->nslots : 64;
    while (n <= (size_t)fd)
        n *= 2;
    ev_slot *s = realloc(loop->slots, n * sizeof *s);
    if (!s) {
        errno = ENOMEM;
        return -1;
    }
    memset(s + loop->nslots, 0, (n - loop->nslots) * sizeof *s);
    loop->slots = s;
    loop->nslots = n;
    return 0;
}

static int io_ctl(ev_loop *loop, int op, int fd, unsigned events, uint32_t gen)
{
    struct epoll_event ev = {
        .events = to_epoll(events),
        .data.u64 = ((uint64_t)gen << 32) | (uint32_t)fd,
    };
    return epoll_ctl(loop->epfd, op, fd, &ev);
}

int ev_io_add(ev_loop *loop, int fd, unsigned events, ev_io_fn *fn, void *arg)
{
    if (fd < 0 || !fn) {
        errno = EINVAL;
        return -1;
    }
    if (slots_grow(loop, fd) < 0)
        return -1;
    ev_slot *s = &loop->slots[fd];
    if (s->active) {
        errno = EEXIST;
        return -1;
    }
    uint32_t gen = s->gen + 1;
    if (io_ctl(loop, EPOLL_CTL_ADD, fd, events, gen) < 0)
        return -1;
    s->gen = gen;
    s->fn = fn;
    s->arg = arg;
    s->events = events & (EV_READ | EV_WRITE);
    s->active = 1;
    return 0;
}

int ev_io_mod(ev_loop *loop, int fd, unsigned events, ev_io_fn *fn, void *arg)
{
    if (fd < 0 || (size_t)fd >= loop->nslots || !loop->slots[fd].active || !fn) {
        errno = ENOENT;
        return -1;
    }
    ev_slot *s = &loop->slots[fd];
    unsigned want = events & (EV_READ | EV_WRITE);
    /* Same interest: only the callback changes, no syscall needed. */
    if (want != s->events && io_ctl(loop, EPOLL_CTL_MOD, fd, want, s->gen) < 0)
        return -1;
    s->fn = fn;
    s->arg = arg;
    s->events = want;
    return 0;
}

static void ev_io_forget(ev_loop *loop, int fd, bool syscall)
{
    if (fd < 0 || (size_t)fd >= loop->nslots || !loop->slots[fd].active)
        return;
    ev_slot *s = &loop->slots[fd];
    /* Fails harmlessly when the owner closed fd first (epoll already
     * forgot it); the slot is what decides delivery. */
    if (syscall)
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    s->gen++;
    s->active = 0;
    s->fn = NULL;
    s->arg = NULL;
    s->events = 0;
}

void ev_io_del(ev_loop *loop, int fd)
{
    ev_io_forget(loop, fd, true);
}

void ev_io_del_closing(ev_loop *loop, int fd)
{
    ev_io_forget(loop, fd, false);
}

/* ---- timers ----------------------------------------------------------- */

static inline int timer_less(const ev_timer *a, const ev_timer *b)
{
    return a->due_us < b->due_us || (a->due_us == b->due_us && a->seq < b->seq);
}

static inline void heap_set(ev_loop *loop, size_t i, ev_timer *t)
{
    loop->heap[i] = t;
    t->heap_idx = i + 1;
}

static void heap_up(ev_loop *loop, size_t i)
{
    ev_timer *t = loop->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!timer_less(t, loop->heap[p]))
            break;
        heap_set(loop, i, loop->heap[p]);
        i = p;
    }
    heap_set(loop, i, t);
}

static void heap_down(ev_loop *loop, size_t i)
{
    ev_timer *t = loop->heap[i];
    size_t n = loop->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && timer_less(loop->heap[c + 1], loop->heap[c]))
            c++;
        if (!timer_less(loop->heap[c], t))
            break;
        heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    heap_set(loop, i, t);
}

static void heap_remove(ev_loop *loop, ev_timer *t)
{
    size_t i = t->heap_idx - 1;
    ev_timer *last = loop->heap[--loop->heap_len];
    t->heap_idx = 0;
    if (i == loop->heap_len)
        return;
    heap_set(loop, i, last);
    if (i > 0 && timer_less(last, loop->heap[(i - 1) / 2]))
        heap_up(loop, i);
    else
        heap_down(loop, i);
}

void ev_timer_init(ev_timer *t, ev_timer_fn *fn, void *arg)
{
    memset(t, 0, sizeof *t);
    t->fn = fn;
    t->arg = arg;
}

void ev_timer_start(ev_loop *loop, ev_timer *t, uint64_t after_us)
{
    uint64_t due = loop->now_us + after_us < loop->now_us ? UINT64_MAX
                                                         : loop->now_us + after_us;
    if (t->heap_idx) {
        /* Re-arming in place: one sift instead of a removal and an insert
         * (a proxy re-arms a timer or two per request). */
        size_t i = t->heap_idx - 1;
        bool later = due >= t->due_us;
        t->due_us = due;
        t->seq = loop->timer_seq++;
        if (later)
            heap_down(loop, i);
        else
            heap_up(loop, i);
        return;
    }
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        ev_timer **h = realloc(loop->heap, cap * sizeof *h);
        /* An embedded timer has nowhere to report failure; running out of
         * memory for a pointer array is not something to limp on after. */
        if (!h)
            abort();
        loop->heap = h;
        loop->heap_cap = cap;
    }
    t->due_us = due;
    t->seq = loop->timer_seq++;
    loop->heap[loop->heap_len] = t;
    loop->heap_len++;
    heap_up(loop, loop->heap_len - 1);
}

void ev_timer_stop(ev_loop *loop, ev_timer *t)
{
    if (t->heap_idx)
        heap_remove(loop, t);
}

static int run_timers(ev_loop *loop)
{
    int n = 0;
    uint64_t limit = loop->timer_seq;
    while (loop->heap_len) {
        ev_timer *t = loop->heap[0];
        if (t->due_us > loop->now_us || t->seq >= limit)
            break;
        heap_remove(loop, t);
        t->fn(loop, t);
        n++;
    }
    return n;
}

/* ---- tasks ------------------------------------------------------------ */

int ev_post(ev_loop *loop, ev_task_fn *fn, void *arg)
{
    ev_task *t = malloc(sizeof *t);
    if (!t) {
        errno = ENOMEM;
        return -1;
    }
    t->next = NULL;
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_lock(&loop->mu);
    if (loop->task_tail)
        loop->task_tail->next = t;
    else
        loop->task_head = t;
    loop->task_tail = t;
    atomic_store(&loop->tasks_pending, true);
    pthread_mutex_unlock(&loop->mu);
    wake(loop);
    return 0;
}

static int run_tasks(ev_loop *loop)
{
    if (!atomic_load(&loop->tasks_pending))
        return 0;
    /* Take the whole list at once so posters never wait on a task body;
     * tasks posted meanwhile run next iteration (the eventfd says so). */
    pthread_mutex_lock(&loop->mu);
    ev_task *t = loop->task_head;
    loop->task_head = loop->task_tail = NULL;
    atomic_store(&loop->tasks_pending, false);
    pthread_mutex_unlock(&loop->mu);
    int n = 0;
    while (t) {
        ev_task *next = t->next;
        t->fn(loop, t->arg);
        free(t);
        t = next;
        n++;
    }
    return n;
}

/* ---- running ---------------------------------------------------------- */

static int next_timeout(ev_loop *loop, int timeout_ms)
{
    if (atomic_load(&loop->tasks_pending))
        return 0;
    if (!loop->heap_len)
        return timeout_ms;
    uint64_t due = loop->heap[0]->due_us;
    uint64_t now = ev_now_update(loop);
    if (due <= now)
        return 0;
    /* Round up: waking a millisecond early would just spin once more. */
    uint64_t ms = (due - now + 999) / 1000;
    if (ms > INT_MAX)
        ms = INT_MAX;
    if (timeout_ms >= 0 && (uint64_t)timeout_ms < ms)
        return timeout_ms;
    return (int)ms;
}

static unsigned from_epoll(uint32_t e, unsigned registered)
{
    unsigned ev = 0;
    if (e & (EPOLLIN | EPOLLRDHUP)) ev |= EV_READ;
    if (e & EPOLLOUT)               ev |= EV_WRITE;
    /* A dead socket is also reported as ready in every registered
     * direction so handlers that only read or write meet the error on
     * their next syscall. */
    if (e & (EPOLLERR | EPOLLHUP))  ev |= EV_ERROR | registered;
    return ev;
}

void ev_set_batch_hook(ev_loop *loop, ev_batch_each_fn *each, ev_batch_done_fn *done,
                       void *hook_arg)
{
    loop->batch_each = each;
    loop->batch_done = done;
    loop->batch_arg = hook_arg;
}

/* The live slot an event of this batch is for, or NULL when the event is
 * the eventfd's or its fd was deleted earlier in the batch. */
static ev_slot *event_slot(ev_loop *loop, uint64_t data)
{
    if (data == EV_WAKE_TAG)
        return NULL;
    int fd = (int)(uint32_t)data;
    if ((size_t)fd >= loop->nslots)
        return NULL;
    ev_slot *s = &loop->slots[fd];
    return s->active && s->gen == (uint32_t)(data >> 32) ? s : NULL;
}

/* Offers the batch's readable fds to the hook before dispatching any. */
static void run_batch_hook(ev_loop *loop, int n)
{
    for (int i = 0; i < n; i++) {
        const ev_slot *s = event_slot(loop, loop->evs[i].data.u64);
        if (s && (from_epoll(loop->evs[i].events, s->events) & (EV_READ | EV_ERROR)))
            loop->batch_each(loop, (int)(uint32_t)loop->evs[i].data.u64, s->fn, s->arg,
                             loop->batch_arg);
    }
    loop->batch_done(loop, loop->batch_arg);
}

int ev_run_once(ev_loop *loop, int timeout_ms)
{
    int timeout = next_timeout(loop, timeout_ms);
    int n = epoll_wait(loop->epfd, loop->evs, EV_BATCH, timeout);
    if (n < 0) {
        if (errno != EINTR)
            return -1;
        n = 0;
    }
    ev_now_update(loop);
    if (loop->batch_each && n > 0)
        run_batch_hook(loop, n);
    int handled = 0;
    for (int i = 0; i < n; i++) {
        uint64_t data = loop->evs[i].data.u64;
        if (data == EV_WAKE_TAG) {
            uint64_t v;
            ssize_t r = read(loop->wakefd, &v, sizeof v);
            (void)r;
            continue;
        }
        ev_slot *s = event_slot(loop, data);
        if (!s)
            continue;
        unsigned mask = from_epoll(loop->evs[i].events, s->events);
        s->fn(loop, (int)(uint32_t)data, mask, s->arg);
        handled++;
    }
    handled += run_timers(loop);
    handled += run_tasks(loop);
    return handled;
}

int ev_run(ev_loop *loop)
{
    /* The flag is cleared on the way out, not on the way in, so an
     * ev_stop() that raced ahead of ev_run() is still honoured. */
    int rc = 0;
    while (!atomic_load(&loop->stop)) {
        if (ev_run_once(loop, -1) < 0) {
            rc = -1;
            break;
        }
    }
    atomic_store(&loop->stop, false);
    return rc;
}
