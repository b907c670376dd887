/* test_gw_cache_store.c -- the gateway cache's memory (gw_cache_store.c):
 * Vary variants never mixed, LRU eviction within the byte budget, the
 * object limit, purges by key, prefix and tag, and fills with parked
 * waiters woken once (and a purge during a fill voiding its store). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "gateway/gw_cache.h"

static const char HEAD[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";

/* Request headers for Vary: "name: value" pairs in a NULL-ended list. */
static const char *get_hdr(void *arg, const char *name, size_t nl, size_t *len)
{
    for (const char **p = arg; p && *p; p += 2)
        if (strlen(p[0]) == nl && strncasecmp(p[0], name, nl) == 0) {
            *len = strlen(p[1]);
            return p[1];
        }
    return NULL;
}

static gw_cvar *mk(const char *body, const char *vary_hdr, const char **req, const char *tags,
                   size_t tags_len)
{
    char sel[256];
    long sl = vary_hdr ? gw_cvary_build(vary_hdr, strlen(vary_hdr), get_hdr, req, sel, sizeof sel) : 0;
    cr_assert_geq(sl, 0);
    gw_cvar *v = gw_cvar_new(HEAD, sizeof HEAD - 1, body, strlen(body), sel, (size_t)sl, tags, tags_len);
    cr_assert_not_null(v);
    return v;
}

static bool body_is(gw_cvar *v, const char *b)
{
    bool ok = v && v->body_len == strlen(b) && memcmp(v->body, b, v->body_len) == 0;
    gw_cvar_unref(v);
    return ok;
}

static gw_cvar *get(gw_cstore *s, const char *key, const char **req)
{
    bool had;
    return gw_cstore_lookup(s, key, strlen(key), get_hdr, req, &had);
}

Test(gw_cache_store, vary_variants_never_mixed)
{
    gw_cstore *s = gw_cstore_new(1 << 20, 1 << 20);
    const char *fr[] = { "Accept-Language", "fr", NULL };
    const char *en[] = { "accept-language", "en", NULL };
    const char *none[] = { NULL };
    cr_assert_eq(gw_cstore_insert(s, "k", 1, mk("bonjr", "Accept-Language", fr, NULL, 0), 0), 0);
    cr_assert_null(get(s, "k", en));
    cr_assert_null(get(s, "k", none));
    cr_assert_eq(gw_cstore_insert(s, "k", 1, mk("hello", "accept-language", en, NULL, 0), 0), 0);
    cr_assert(body_is(get(s, "k", fr), "bonjr"));
    cr_assert(body_is(get(s, "k", en), "hello"));
    cr_assert_null(get(s, "k", none));
    /* the same selector replaces its variant */
    cr_assert_eq(gw_cstore_insert(s, "k", 1, mk("salut", "Accept-Language", fr, NULL, 0), 0), 0);
    cr_assert(body_is(get(s, "k", fr), "salut"));
    uint64_t bytes, objs;
    gw_cstore_usage(s, &bytes, &objs);
    cr_assert_eq(objs, 2);
    char sel[8];
    cr_assert_eq(gw_cvary_build("*", 1, get_hdr, fr, sel, sizeof sel), -1);
    gw_cstore_free(s);
}

Test(gw_cache_store, lru_eviction_within_budget)
{
    gw_cvar *probe = mk("12345", NULL, NULL, NULL, 0);
    size_t one = probe->bytes;
    gw_cvar_unref(probe);
    gw_cstore *s = gw_cstore_new(one * 3, 1 << 20);
    cr_assert_eq(gw_cstore_insert(s, "a", 1, mk("aaaaa", NULL, NULL, NULL, 0), 0), 0);
    cr_assert_eq(gw_cstore_insert(s, "b", 1, mk("bbbbb", NULL, NULL, NULL, 0), 0), 0);
    cr_assert_eq(gw_cstore_insert(s, "c", 1, mk("ccccc", NULL, NULL, NULL, 0), 0), 0);
    cr_assert(body_is(get(s, "a", NULL), "aaaaa"));          /* a is now the most recent */
    cr_assert_eq(gw_cstore_insert(s, "d", 1, mk("ddddd", NULL, NULL, NULL, 0), 0), 0);
    cr_assert_null(get(s, "b", NULL));                       /* least recently used went */
    cr_assert(body_is(get(s, "a", NULL), "aaaaa"));
    cr_assert(body_is(get(s, "c", NULL), "ccccc"));
    uint64_t bytes, objs;
    gw_cstore_usage(s, &bytes, &objs);
    cr_assert_leq(bytes, one * 3);
    cr_assert_eq(objs, 3);
    cr_assert_eq(atomic_load(&gw_cstore_stats(s)->evictions), 1);
    /* a held variant outlives its eviction */
    gw_cvar *held = get(s, "c", NULL);
    for (int i = 0; i < 50; i++) {
        char k[16];
        snprintf(k, sizeof k, "x%d", i);
        gw_cstore_insert(s, k, strlen(k), mk("xxxxx", NULL, NULL, NULL, 0), 0);
    }
    cr_assert_null(get(s, "c", NULL));
    cr_assert(body_is(held, "ccccc"));
    gw_cstore_usage(s, &bytes, &objs);
    cr_assert_leq(bytes, one * 3);
    gw_cstore_free(s);
}

Test(gw_cache_store, object_limit)
{
    gw_cstore *s = gw_cstore_new(1 << 20, 4);
    char big[1000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_eq(gw_cstore_insert(s, "big", 3, mk(big, NULL, NULL, NULL, 0), 0), -1);
    cr_assert_null(get(s, "big", NULL));
    cr_assert_eq(atomic_load(&gw_cstore_stats(s)->too_big), 1);
    gw_cstore_free(s);
}

Test(gw_cache_store, purge_by_key_prefix_and_tag)
{
    gw_cstore *s = gw_cstore_new(1 << 20, 1 << 20);
    static const char t1[] = "prod\0blue\0";
    static const char t2[] = "green\0";
    gw_cstore_insert(s, "http://h/a/1", 12, mk("11111", NULL, NULL, t1, sizeof t1), 0);
    gw_cstore_insert(s, "http://h/a/2", 12, mk("22222", NULL, NULL, t2, sizeof t2), 0);
    gw_cstore_insert(s, "http://h/b/1", 12, mk("33333", NULL, NULL, t1, sizeof t1), 0);
    gw_cstore_insert(s, "http://h/c", 10, mk("44444", NULL, NULL, NULL, 0), 0);
    cr_assert_eq(gw_cstore_purge_tag(s, "blue", 4), 2);
    cr_assert_eq(gw_cstore_purge_tag(s, "blu", 3), 0);
    cr_assert_null(get(s, "http://h/a/1", NULL));
    cr_assert_null(get(s, "http://h/b/1", NULL));
    cr_assert(body_is(get(s, "http://h/a/2", NULL), "22222"));
    cr_assert_eq(gw_cstore_purge_prefix(s, "http://h/a/", 11), 1);
    cr_assert_null(get(s, "http://h/a/2", NULL));
    cr_assert_eq(gw_cstore_purge(s, "http://h/c", 10), 1);
    cr_assert_eq(gw_cstore_purge(s, "http://h/c", 10), 0);
    uint64_t bytes, objs;
    gw_cstore_usage(s, &bytes, &objs);
    cr_assert_eq(objs, 0);
    cr_assert_eq(bytes, 0);
    gw_cstore_free(s);
}

static int woke;
static void on_wake(gw_cwait *w) { woke++; (void)w; }

Test(gw_cache_store, fill_coalesces_and_wakes_each_waiter_once)
{
    gw_cstore *s = gw_cstore_new(1 << 20, 1 << 20);
    uint64_t t1, t2;
    gw_cwait w[3] = { { .fn = on_wake }, { .fn = on_wake }, { .fn = on_wake } };
    cr_assert(gw_cstore_fill_begin(s, "k", 1, NULL, &t1));
    cr_assert_neq(t1, 0);
    for (int i = 0; i < 3; i++)
        cr_assert_not(gw_cstore_fill_begin(s, "k", 1, &w[i], &t2));
    cr_assert(gw_cstore_fill_leave(s, "k", 1, &w[1]));      /* it left before the wake-up */
    woke = 0;
    cr_assert_eq(gw_cstore_insert(s, "k", 1, mk("vvvvv", NULL, NULL, NULL, 0), t1), 0);
    gw_cstore_fill_end(s, "k", 1);
    cr_assert_eq(woke, 2);
    cr_assert(w[0].woken && w[2].woken);
    cr_assert_not(gw_cstore_fill_leave(s, "k", 1, &w[0]));  /* too late: the wake-up is coming */
    cr_assert_eq(atomic_load(&gw_cstore_stats(s)->coalesced), 3);
    /* the next miss starts a new fill */
    cr_assert(gw_cstore_fill_begin(s, "k", 1, NULL, &t1));
    gw_cstore_fill_end(s, "k", 1);
    gw_cstore_free(s);
}

Test(gw_cache_store, purge_during_fill_voids_its_store)
{
    gw_cstore *s = gw_cstore_new(1 << 20, 1 << 20);
    uint64_t t;
    cr_assert(gw_cstore_fill_begin(s, "k", 1, NULL, &t));
    gw_cstore_purge(s, "k", 1);
    cr_assert_eq(gw_cstore_insert(s, "k", 1, mk("old!!", NULL, NULL, NULL, 0), t), -1);
    gw_cstore_fill_end(s, "k", 1);
    cr_assert_null(get(s, "k", NULL));
    gw_cstore_free(s);
}

Test(gw_cache_store, renditions_count_in_the_budget_and_go_with_their_variant)
{
    gw_cstore *s = gw_cstore_new(1 << 20, 1 << 20);
    cr_assert_eq(gw_cstore_insert(s, "k", 1, mk("plain", NULL, NULL, NULL, 0), 0), 0);
    uint64_t before, after, objs;
    gw_cstore_usage(s, &before, &objs);
    gw_cvar *v = get(s, "k", NULL);
    gw_cstore_attach(s, v, 1, "zz", 2);
    gw_cstore_attach(s, v, 1, "yyyy", 4);                  /* one per coding: the first stays */
    gw_cstore_usage(s, &after, &objs);
    cr_assert_eq(after, before + 2);
    cr_assert_eq(atomic_load(&v->rend[1])->len, 2);
    cr_assert_eq(atomic_load(&gw_cstore_stats(s)->renditions), 1);
    cr_assert_eq(gw_cstore_purge(s, "k", 1), 1);
    gw_cstore_attach(s, v, 2, "xx", 2);                    /* removed meanwhile: not kept */
    cr_assert_null(atomic_load(&v->rend[2]));
    gw_cstore_usage(s, &after, &objs);
    cr_assert_eq(after, 0);
    gw_cvar_unref(v);                                      /* frees it with its rendition */
    gw_cstore_free(s);
}
