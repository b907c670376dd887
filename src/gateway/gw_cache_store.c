/* gw_cache_store.c -- the cache's memory: objects by key (a chained hash
 * table), each with its Vary variants, one LRU list over every variant,
 * a byte budget, purges by key, prefix and tag, and fills (one request per
 * key goes to the origin while the others are parked on the object).
 *
 * Invariants:
 *  - Everything here is under s->lock except a variant's contents, which
 *    never change once inserted (a refresh inserts a new variant), and its
 *    reference count (atomic). A removed variant is unlinked at once and
 *    freed by its last reference, so a worker may keep serving it.
 *  - s->bytes is the sum of linked variants' `bytes`; after an insert it is
 *    at most the budget (the LRU tail goes first, the new variant last).
 *  - An object lives while it has variants or a fill; the fill's waiters
 *    are detached under the lock and their wake functions called after it
 *    is released, so a wake-up never runs with the lock held.
 *  - obj->purges counts purges of the object; a fill's ticket is the count
 *    when it began, and the fill stores only if no purge came in between. */
#include "gateway/gw_cache.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct gw_cobj {
    struct gw_cobj *hnext;
    uint64_t        hash;
    char           *key;
    size_t          klen;
    gw_cvar        *vars;
    bool            filling;
    gw_cwait       *waiters;
    uint64_t        purges;       /* starts at 1: a ticket of 0 means "no fill" */
} gw_cobj;

struct gw_cstore {
    pthread_mutex_t lock;
    gw_cobj       **tab;
    size_t          nbuckets;     /* power of two */
    size_t          nobjs;
    size_t          nvars;
    uint64_t        bytes, budget, max_object;
    gw_cvar        *lru_head, *lru_tail;   /* head: most recently used */
    gw_cache_stats  st;
};

#define VAR_OVERHEAD 256u   /* struct, allocator slack: counted against the budget */

static uint64_t hash_key(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull;          /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 1099511628211ull;
    }
    return h;
}

gw_cstore *gw_cstore_new(uint64_t budget_bytes, uint64_t max_object)
{
    gw_cstore *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->nbuckets = 1024;
    s->tab = calloc(s->nbuckets, sizeof *s->tab);
    if (!s->tab) {
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->budget = budget_bytes;
    s->max_object = max_object;
    return s;
}

static void var_free(gw_cvar *v)
{
    for (int i = 0; i < 3; i++)
        free(atomic_load_explicit(&v->rend[i], memory_order_relaxed));
    free(v->vary);
    free(v->tags);
    free(v->head);
    free(v->body);
    free(v);
}

void gw_cvar_ref(gw_cvar *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void gw_cvar_unref(gw_cvar *v)
{
    if (v && atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1)
        var_free(v);
}

static void lru_unlink(gw_cstore *s, gw_cvar *v)
{
    if (v->lru_prev)
        v->lru_prev->lru_next = v->lru_next;
    else
        s->lru_head = v->lru_next;
    if (v->lru_next)
        v->lru_next->lru_prev = v->lru_prev;
    else
        s->lru_tail = v->lru_prev;
    v->lru_prev = v->lru_next = NULL;
}

static void lru_front(gw_cstore *s, gw_cvar *v)
{
    v->lru_prev = NULL;
    v->lru_next = s->lru_head;
    if (s->lru_head)
        s->lru_head->lru_prev = v;
    s->lru_head = v;
    if (!s->lru_tail)
        s->lru_tail = v;
}

static gw_cobj **obj_slot(gw_cstore *s, const char *key, size_t klen, uint64_t h)
{
    gw_cobj **pp = &s->tab[h & (s->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->hnext)
        if ((*pp)->hash == h && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0)
            return pp;
    return pp;
}

static void grow(gw_cstore *s)
{
    size_t nb = s->nbuckets * 2;
    gw_cobj **t = calloc(nb, sizeof *t);
    if (!t)
        return;                      /* longer chains, still correct */
    for (size_t i = 0; i < s->nbuckets; i++)
        for (gw_cobj *o = s->tab[i], *next; o; o = next) {
            next = o->hnext;
            o->hnext = t[o->hash & (nb - 1)];
            t[o->hash & (nb - 1)] = o;
        }
    free(s->tab);
    s->tab = t;
    s->nbuckets = nb;
}

static gw_cobj *obj_get(gw_cstore *s, const char *key, size_t klen, bool create)
{
    uint64_t h = hash_key(key, klen);
    gw_cobj **pp = obj_slot(s, key, klen, h);
    if (*pp || !create)
        return *pp;
    gw_cobj *o = calloc(1, sizeof *o);
    if (!o || !(o->key = malloc(klen + 1))) {
        free(o);
        return NULL;
    }
    memcpy(o->key, key, klen);
    o->key[klen] = '\0';
    o->klen = klen;
    o->hash = h;
    o->purges = 1;
    *pp = o;
    if (++s->nobjs > s->nbuckets)
        grow(s);
    return o;
}

/* Frees o when nothing keeps it (no variant, no fill). */
static void obj_maybe_free(gw_cstore *s, gw_cobj *o)
{
    if (o->vars || o->filling)
        return;
    gw_cobj **pp = obj_slot(s, o->key, o->klen, o->hash);
    if (*pp == o)
        *pp = o->hnext;
    s->nobjs--;
    free(o->key);
    free(o);
}

/* Unlinks v from its object and the LRU, drops the store's reference. */
static void var_remove(gw_cstore *s, gw_cvar *v)
{
    gw_cobj *o = v->obj;
    for (gw_cvar **pp = &o->vars; *pp; pp = &(*pp)->next)
        if (*pp == v) {
            *pp = v->next;
            break;
        }
    lru_unlink(s, v);
    v->obj = NULL;
    v->next = NULL;
    s->bytes -= v->bytes;
    s->nvars--;
    gw_cvar_unref(v);
}

void gw_cstore_free(gw_cstore *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nbuckets; i++)
        for (gw_cobj *o = s->tab[i], *next; o; o = next) {
            next = o->hnext;
            while (o->vars)
                var_remove(s, o->vars);
            free(o->key);
            free(o);
        }
    free(s->tab);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

gw_cache_stats *gw_cstore_stats(gw_cstore *s) { return &s->st; }
uint64_t gw_cstore_max_object(const gw_cstore *s) { return s->max_object; }

void gw_cstore_usage(gw_cstore *s, uint64_t *bytes, uint64_t *objects)
{
    pthread_mutex_lock(&s->lock);
    *bytes = s->bytes;
    *objects = s->nvars;
    pthread_mutex_unlock(&s->lock);
}

/* --- Vary --------------------------------------------------------------- */

long gw_cvary_build(const char *vary, size_t vary_len, gw_vary_get_fn *get, void *arg,
                    char *out, size_t cap)
{
    size_t o = 0, i = 0;
    while (i < vary_len) {
        while (i < vary_len && (vary[i] == ' ' || vary[i] == '\t' || vary[i] == ','))
            i++;
        size_t s = i;
        while (i < vary_len && vary[i] != ',' && vary[i] != ' ' && vary[i] != '\t')
            i++;
        size_t nl = i - s;
        if (nl == 0)
            continue;
        if (nl == 1 && vary[s] == '*')
            return -1;
        size_t vl = 0;
        const char *val = get(arg, vary + s, nl, &vl);
        if (o + nl + vl + 3 > cap)
            return -1;
        for (size_t k = 0; k < nl; k++) {
            char ch = vary[s + k];
            out[o++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        out[o++] = '\0';
        out[o++] = val ? '1' : '0';
        if (val) {
            memcpy(out + o, val, vl);
            o += vl;
        }
        out[o++] = '\0';
    }
    return (long)o;
}

/* The request matches v's stored selector: same value for every name. */
static bool vary_match(const gw_cvar *v, gw_vary_get_fn *get, void *arg)
{
    const char *p = v->vary, *end = v->vary + v->vary_len;
    while (p < end) {
        size_t nl = strlen(p);
        const char *sv = p + nl + 1;
        size_t svl = strlen(sv);
        size_t vl = 0;
        const char *val = get(arg, p, nl, &vl);
        if (sv[0] == '0' ? val != NULL : (!val || vl != svl - 1 || memcmp(val, sv + 1, vl) != 0))
            return false;
        p = sv + svl + 1;
    }
    return true;
}

gw_cvar *gw_cstore_lookup(gw_cstore *s, const char *key, size_t klen,
                          gw_vary_get_fn *get, void *arg, bool *had_key)
{
    pthread_mutex_lock(&s->lock);
    gw_cobj *o = obj_get(s, key, klen, false);
    gw_cvar *hit = NULL;
    *had_key = o && o->vars;
    for (gw_cvar *v = o ? o->vars : NULL; v; v = v->next)
        if (!v->vary_len || vary_match(v, get, arg)) {
            hit = v;
            break;
        }
    if (hit) {
        gw_cvar_ref(hit);
        if (s->lru_head != hit) {
            lru_unlink(s, hit);
            lru_front(s, hit);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return hit;
}

/* --- insert ------------------------------------------------------------- */

static char *dup_bytes(const char *p, size_t n)
{
    char *d = malloc(n ? n : 1);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

gw_cvar *gw_cvar_new(const char *head, size_t head_len, const char *body, size_t body_len,
                     const char *vary, size_t vary_len, const char *tags, size_t tags_len)
{
    gw_cvar *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    atomic_init(&v->refs, 1);
    v->head = dup_bytes(head, head_len);
    v->head_len = head_len;
    v->body = dup_bytes(body, body_len);
    v->body_len = body_len;
    if (vary_len) {
        v->vary = dup_bytes(vary, vary_len);
        v->vary_len = vary_len;
    }
    if (tags_len)
        v->tags = dup_bytes(tags, tags_len);
    http_limits lim;
    http_limits_default(&lim);
    lim.max_head = (uint32_t)(head_len + 1);
    if (!v->head || !v->body || (vary_len && !v->vary) || (tags_len && !v->tags)
        || http_parse_response(v->head, head_len, &v->resp, HTTP_GET, &lim) != (int)head_len) {
        var_free(v);
        return NULL;
    }
    gw_cc_init(&v->cc);
    v->last_modified = -1;
    v->bytes = head_len + body_len + vary_len + tags_len + VAR_OVERHEAD;
    return v;
}

static bool same_vary(const gw_cvar *a, const gw_cvar *b)
{
    return a->vary_len == b->vary_len && (a->vary_len == 0 || memcmp(a->vary, b->vary, a->vary_len) == 0);
}

int gw_cstore_insert(gw_cstore *s, const char *key, size_t klen, gw_cvar *v, uint64_t ticket)
{
    if (v->bytes > s->max_object + VAR_OVERHEAD || v->bytes > s->budget) {
        atomic_fetch_add_explicit(&s->st.too_big, 1, memory_order_relaxed);
        gw_cvar_unref(v);
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    gw_cobj *o = obj_get(s, key, klen, true);
    if (!o || (ticket && o->purges != ticket)) {
        if (o)
            obj_maybe_free(s, o);
        pthread_mutex_unlock(&s->lock);
        gw_cvar_unref(v);
        return -1;
    }
    for (gw_cvar *x = o->vars; x; x = x->next)
        if (same_vary(x, v)) {
            var_remove(s, x);
            break;
        }
    /* Make room first: the new variant is the one that must stay. */
    while (s->lru_tail && s->bytes + v->bytes > s->budget) {
        gw_cvar *t = s->lru_tail;
        gw_cobj *to = t->obj;
        var_remove(s, t);
        if (to != o)
            obj_maybe_free(s, to);
        atomic_fetch_add_explicit(&s->st.evictions, 1, memory_order_relaxed);
    }
    v->obj = o;
    v->next = o->vars;
    o->vars = v;
    lru_front(s, v);
    s->bytes += v->bytes;
    s->nvars++;
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add_explicit(&s->st.stores, 1, memory_order_relaxed);
    return 0;
}

void gw_cstore_attach(gw_cstore *s, gw_cvar *v, uint8_t coding, const char *z, size_t n)
{
    if (coding < 1 || coding > 2 || atomic_load_explicit(&v->rend[coding], memory_order_acquire))
        return;
    gw_crend *r = malloc(sizeof *r + n);
    if (!r)
        return;
    r->len = n;
    memcpy(r->data, z, n);
    pthread_mutex_lock(&s->lock);
    if (!v->obj || atomic_load_explicit(&v->rend[coding], memory_order_relaxed)) {
        pthread_mutex_unlock(&s->lock);
        free(r);
        return;
    }
    atomic_store_explicit(&v->rend[coding], r, memory_order_release);
    v->bytes += n;
    s->bytes += n;
    while (s->bytes > s->budget && s->lru_tail && s->lru_tail != v) {
        gw_cvar *t = s->lru_tail;
        gw_cobj *to = t->obj;
        var_remove(s, t);
        if (to != v->obj)
            obj_maybe_free(s, to);
        atomic_fetch_add_explicit(&s->st.evictions, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add_explicit(&s->st.renditions, 1, memory_order_relaxed);
}

/* --- purge -------------------------------------------------------------- */

static size_t purge_obj(gw_cstore *s, gw_cobj *o)
{
    size_t n = 0;
    o->purges++;
    while (o->vars) {
        var_remove(s, o->vars);
        n++;
    }
    obj_maybe_free(s, o);
    return n;
}

static size_t purge_where(gw_cstore *s, bool (*pred)(const gw_cobj *, const gw_cvar *, const void *),
                          const void *arg)
{
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->nbuckets; i++)
        for (gw_cobj *o = s->tab[i], *next; o; o = next) {
            next = o->hnext;
            bool touched = false;
            for (gw_cvar *v = o->vars, *vn; v; v = vn) {
                vn = v->next;
                if (pred(o, v, arg)) {
                    var_remove(s, v);
                    touched = true;
                    n++;
                }
            }
            if (touched) {
                o->purges++;
                obj_maybe_free(s, o);
            }
        }
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add_explicit(&s->st.purged, n, memory_order_relaxed);
    return n;
}

size_t gw_cstore_purge(gw_cstore *s, const char *key, size_t klen)
{
    pthread_mutex_lock(&s->lock);
    gw_cobj *o = obj_get(s, key, klen, false);
    size_t n = o ? purge_obj(s, o) : 0;
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add_explicit(&s->st.purged, n, memory_order_relaxed);
    return n;
}

typedef struct { const char *p; size_t n; } span;

static bool has_prefix(const gw_cobj *o, const gw_cvar *v, const void *arg)
{
    const span *sp = arg;
    (void)v;
    return o->klen >= sp->n && memcmp(o->key, sp->p, sp->n) == 0;
}

static bool has_tag(const gw_cobj *o, const gw_cvar *v, const void *arg)
{
    const span *sp = arg;
    (void)o;
    for (const char *t = v->tags; t && *t; t += strlen(t) + 1)
        if (strlen(t) == sp->n && memcmp(t, sp->p, sp->n) == 0)
            return true;
    return false;
}

size_t gw_cstore_purge_prefix(gw_cstore *s, const char *prefix, size_t plen)
{
    span sp = { prefix, plen };
    return purge_where(s, has_prefix, &sp);
}

size_t gw_cstore_purge_tag(gw_cstore *s, const char *tag, size_t tlen)
{
    span sp = { tag, tlen };
    return tlen ? purge_where(s, has_tag, &sp) : 0;
}

/* --- fills -------------------------------------------------------------- */

bool gw_cstore_fill_begin(gw_cstore *s, const char *key, size_t klen, gw_cwait *w,
                          uint64_t *ticket)
{
    pthread_mutex_lock(&s->lock);
    gw_cobj *o = obj_get(s, key, klen, true);
    if (!o) {
        pthread_mutex_unlock(&s->lock);
        *ticket = 0;
        return true;                 /* out of memory: fetch, but nobody waits */
    }
    if (!o->filling) {
        o->filling = true;
        *ticket = o->purges;
        pthread_mutex_unlock(&s->lock);
        return true;
    }
    if (w) {
        w->woken = false;
        w->next = o->waiters;
        o->waiters = w;
        atomic_fetch_add_explicit(&s->st.coalesced, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->lock);
    *ticket = 0;
    return false;
}

void gw_cstore_fill_end(gw_cstore *s, const char *key, size_t klen)
{
    pthread_mutex_lock(&s->lock);
    gw_cobj *o = obj_get(s, key, klen, false);
    gw_cwait *list = NULL;
    if (o && o->filling) {
        list = o->waiters;
        o->waiters = NULL;
        o->filling = false;
        for (gw_cwait *w = list; w; w = w->next)
            w->woken = true;
        obj_maybe_free(s, o);
    }
    pthread_mutex_unlock(&s->lock);
    /* After the lock: fn may post to a loop (which takes that loop's lock). */
    while (list) {
        gw_cwait *next = list->next;
        list->fn(list);
        list = next;
    }
}

bool gw_cstore_fill_leave(gw_cstore *s, const char *key, size_t klen, gw_cwait *w)
{
    pthread_mutex_lock(&s->lock);
    bool parked = false;
    if (!w->woken) {
        gw_cobj *o = obj_get(s, key, klen, false);
        for (gw_cwait **pp = o ? &o->waiters : NULL; pp && *pp; pp = &(*pp)->next)
            if (*pp == w) {
                *pp = w->next;
                parked = true;
                break;
            }
    }
    pthread_mutex_unlock(&s->lock);
    return parked;
}
