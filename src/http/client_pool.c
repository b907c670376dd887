/* client_pool.c -- hc_pool: idle upstream connections of one ev_loop,
 * grouped by an opaque key (a backend).
 *
 * Each idle socket stays registered (EV_READ|EV_WRITE, the interest every
 * user of the pool keeps): an idle HTTP/1.1 connection has nothing to say,
 * so read readiness means the peer closed it or sent junk, and either way
 * it is closed at once instead of failing the next request that would have
 * picked it. Handing a socket out or taking it back only swaps the
 * callback (ev_io_mod, no syscall), so reuse costs no epoll_ctl at all.
 * Each also carries its own idle timer. Reuse is LIFO (the most recently used socket is the warmest and
 * the least likely to have been timed out by the peer).
 *
 * An entry may carry the connection's transport state (`data`: a TLS
 * session), closed with it by the pool's closer.
 *
 * Invariants: an fd is either in the pool (registered, timer armed) or the
 * caller's; entries and key slots are recycled, so put/get allocate only
 * while the pool grows to its high-water mark. Key slots are never removed
 * (an empty slot costs a few bytes), which keeps probing simple. */
#include "client.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct hc_idle hc_idle;
typedef struct hc_key  hc_key;

struct hc_idle {
    int       fd;
    void     *data;   /* transport state, closed by p->closer; NULL: plain */
    hc_pool  *p;
    hc_key   *k;      /* slot index is stable only until a rehash: see key_of */
    const void *key;
    ev_timer  timer;
    hc_idle  *prev, *next;
};

struct hc_key {
    const void *key;
    hc_idle    *head;
    unsigned    n;
};

struct hc_pool {
    ev_loop  *loop;
    unsigned  max_idle;
    uint64_t  idle_us;
    hc_key   *keys;
    size_t    kcap, kused;
    hc_idle  *free;
    hc_pool_closer *closer;
};

void hc_pool_set_closer(hc_pool *p, hc_pool_closer *fn)
{
    p->closer = fn;
}

/* Closes a connection the pool gave up on (already unregistered). */
static void conn_close(hc_pool *p, int fd, void *data)
{
    if (data && p->closer)
        p->closer(fd, data);
    else
        close(fd);
}

hc_pool *hc_pool_new(ev_loop *loop, unsigned max_idle_per_key, uint64_t idle_timeout_us)
{
    hc_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->loop = loop;
    p->max_idle = max_idle_per_key;
    p->idle_us = idle_timeout_us ? idle_timeout_us : 60000000ull;
    p->kcap = 16;
    p->keys = calloc(p->kcap, sizeof *p->keys);
    if (!p->keys) {
        free(p);
        return NULL;
    }
    return p;
}

static size_t key_hash(const void *key, size_t cap)
{
    uintptr_t v = (uintptr_t)key;
    v ^= v >> 17;
    v *= 0x9E3779B97F4A7C15ull;
    return (size_t)(v >> 20) & (cap - 1);
}

static hc_key *key_find(const hc_pool *p, const void *key)
{
    if (!key)
        return NULL;    /* NULL marks an empty slot */
    for (size_t i = key_hash(key, p->kcap);; i = (i + 1) & (p->kcap - 1)) {
        hc_key *k = &p->keys[i];
        if (k->key == key)
            return k;
        if (!k->key)
            return NULL;
    }
}

static int key_grow(hc_pool *p)
{
    size_t ncap = p->kcap * 2;
    hc_key *nk = calloc(ncap, sizeof *nk);
    if (!nk)
        return -1;
    for (size_t i = 0; i < p->kcap; i++) {
        hc_key *o = &p->keys[i];
        if (!o->key)
            continue;
        size_t j = key_hash(o->key, ncap);
        while (nk[j].key)
            j = (j + 1) & (ncap - 1);
        nk[j] = *o;
        for (hc_idle *e = nk[j].head; e; e = e->next)
            e->k = &nk[j];
    }
    free(p->keys);
    p->keys = nk;
    p->kcap = ncap;
    return 0;
}

static hc_key *key_get(hc_pool *p, const void *key)
{
    hc_key *k = key_find(p, key);
    if (k)
        return k;
    if ((p->kused + 1) * 2 > p->kcap && key_grow(p) < 0)
        return NULL;
    size_t i = key_hash(key, p->kcap);
    while (p->keys[i].key)
        i = (i + 1) & (p->kcap - 1);
    p->keys[i].key = key;
    p->kused++;
    return &p->keys[i];
}

/* Unlinks e and returns it to the free list; the fd is left to the caller. */
static void idle_remove(hc_pool *p, hc_idle *e)
{
    hc_key *k = e->k;
    if (e->prev)
        e->prev->next = e->next;
    else
        k->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    k->n--;
    ev_timer_stop(p->loop, &e->timer);
    e->next = p->free;
    p->free = e;
}

static void idle_io(ev_loop *loop, int fd, unsigned events, void *arg)
{
    hc_idle *e = arg;
    /* Writability is expected; anything to read is EOF, an error or junk. */
    if (!(events & (EV_READ | EV_ERROR)))
        return;
    void *data = e->data;
    idle_remove(e->p, e);
    ev_io_del(loop, fd);
    conn_close(e->p, fd, data);
}

static void idle_timeout(ev_loop *loop, ev_timer *t)
{
    hc_idle *e = t->arg;
    int fd = e->fd;
    void *data = e->data;
    hc_pool *p = e->p;
    idle_remove(p, e);
    ev_io_del(loop, fd);
    conn_close(p, fd, data);
}

int hc_pool_get_data(hc_pool *p, const void *key, void **data)
{
    *data = NULL;
    hc_key *k = key_find(p, key);
    if (!k || !k->head)
        return -1;
    hc_idle *e = k->head;
    int fd = e->fd;
    *data = e->data;
    idle_remove(p, e);
    return fd;
}

int hc_pool_get(hc_pool *p, const void *key)
{
    void *data;
    int fd = hc_pool_get_data(p, key, &data);
    if (fd >= 0 && data) {   /* a caller of the plain API cannot use it */
        ev_io_del(p->loop, fd);
        conn_close(p, fd, data);
        return -1;
    }
    return fd;
}

void hc_pool_put(hc_pool *p, const void *key, int fd)
{
    hc_pool_put_data(p, key, fd, NULL);
}

void hc_pool_put_data(hc_pool *p, const void *key, int fd, void *data)
{
    if (fd < 0)
        return;
    hc_key *k = key ? key_get(p, key) : NULL;
    if (!k || k->n >= p->max_idle) {
        ev_io_del(p->loop, fd);
        conn_close(p, fd, data);
        return;
    }
    hc_idle *e = p->free;
    if (e) {
        p->free = e->next;
    } else if (!(e = calloc(1, sizeof *e))) {
        ev_io_del(p->loop, fd);
        conn_close(p, fd, data);
        return;
    }
    e->fd = fd;
    e->data = data;
    e->p = p;
    e->k = k;
    e->key = key;
    /* Take over the caller's registration, or register it if there is none. */
    if (ev_io_mod(p->loop, fd, EV_READ | EV_WRITE, idle_io, e) < 0
        && ev_io_add(p->loop, fd, EV_READ | EV_WRITE, idle_io, e) < 0) {
        conn_close(p, fd, data);
        e->next = p->free;
        p->free = e;
        return;
    }
    ev_timer_init(&e->timer, idle_timeout, e);
    ev_timer_start(p->loop, &e->timer, p->idle_us);
    e->prev = NULL;
    e->next = k->head;
    if (k->head)
        k->head->prev = e;
    k->head = e;
    k->n++;
}

void hc_pool_drop_key(hc_pool *p, const void *key)
{
    hc_key *k = key_find(p, key);
    while (k && k->head) {
        hc_idle *e = k->head;
        int fd = e->fd;
        void *data = e->data;
        idle_remove(p, e);
        ev_io_del(p->loop, fd);
        conn_close(p, fd, data);
    }
}

unsigned hc_pool_idle_count(const hc_pool *p, const void *key)
{
    const hc_key *k = key_find(p, key);
    return k ? k->n : 0;
}

void hc_pool_free(hc_pool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->kcap; i++)
        while (p->keys[i].head) {
            hc_idle *e = p->keys[i].head;
            int fd = e->fd;
            void *data = e->data;
            idle_remove(p, e);
            ev_io_del(p->loop, fd);
            conn_close(p, fd, data);
        }
    while (p->free) {
        hc_idle *e = p->free;
        p->free = e->next;
        free(e);
    }
    free(p->keys);
    free(p);
}
