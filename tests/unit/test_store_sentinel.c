/* test_store_sentinel.c -- what the Sentinel follower reads: +switch-master
 * messages, get-master-addr-by-name and ROLE replies (built by hiredis's
 * own reader from raw RESP, as they come off the wire); the cache's
 * single flight used while Redis cannot answer; and the sentinel keys of
 * the store config. The follower against real sentinels is in
 * tests/e2e/test_app_sentinel.py. */
#include <criterion/criterion.h>

#include <hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "ut_wait.h"
#include "store/store_int.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static int sw(const char *msg, char *host, int *port)
{
    return st_sentinel_parse_switch(msg, strlen(msg), "mymaster", host, 128, port);
}

Test(sentinel, switch_message_for_our_master)
{
    char host[128];
    int port = 0;
    cr_assert_eq(sw("mymaster 127.0.0.1 6379 127.0.0.1 6380", host, &port), 1);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 6380);
    cr_assert_eq(sw("mymaster ::1 6379 2001:db8::7 26379", host, &port), 1);
    cr_assert_str_eq(host, "2001:db8::7");
    cr_assert_eq(port, 26379);
    cr_assert_eq(sw("  mymaster  10.0.0.1 1 redis-b.internal 7000 ", host, &port), 1);
    cr_assert_str_eq(host, "redis-b.internal");
}

Test(sentinel, switch_message_for_another_master_or_malformed)
{
    char host[128] = "untouched";
    int port = 0;
    cr_assert_eq(sw("other 127.0.0.1 6379 127.0.0.1 6380", host, &port), 0);
    cr_assert_eq(sw("mymaster2 127.0.0.1 6379 127.0.0.1 6380", host, &port), 0);
    cr_assert_eq(sw("mymaste 127.0.0.1 6379 127.0.0.1 6380", host, &port), 0);
    cr_assert_str_eq(host, "untouched");
    cr_assert_eq(sw("", host, &port), -1);
    cr_assert_eq(sw("mymaster 127.0.0.1 6379 127.0.0.1", host, &port), -1);
    cr_assert_eq(sw("mymaster 127.0.0.1 6379 127.0.0.1 6380 extra", host, &port), -1);
    cr_assert_eq(sw("mymaster 127.0.0.1 6379 127.0.0.1 0", host, &port), -1);
    cr_assert_eq(sw("mymaster 127.0.0.1 6379 127.0.0.1 65536", host, &port), -1);
    cr_assert_eq(sw("mymaster 127.0.0.1 6379 127.0.0.1 -1", host, &port), -1);
    cr_assert_eq(sw("mymaster 127.0.0.1 x 127.0.0.1 6380", host, &port), -1);
    cr_assert_eq(sw("mymaster 127.0.0.1 6379 a\"b 6380", host, &port), -1);
    cr_assert_eq(sw("mymaster 127.0.0.1 6379 a\tb 6380", host, &port), -1);
    cr_assert_str_eq(host, "untouched");
    /* An embedded NUL ends nothing: the message is malformed. */
    const char nul[] = "mymaster 127.0.0.1 6379 127.0\0.0.1 6380";
    cr_assert_eq(st_sentinel_parse_switch(nul, sizeof nul - 1, "mymaster", host, 128, &port), -1);
    /* A host that does not fit is refused, not truncated. */
    cr_assert_eq(st_sentinel_parse_switch("mymaster a 1 abcdefgh 2", 23, "mymaster", host, 8,
                                          &port), -1);
}

/* A reply as hiredis builds it from raw RESP. */
static redisReply *resp(const char *wire)
{
    redisReader *rd = redisReaderCreate();
    cr_assert_eq(redisReaderFeed(rd, wire, strlen(wire)), REDIS_OK);
    void *rep = NULL;
    cr_assert_eq(redisReaderGetReply(rd, &rep), REDIS_OK);
    cr_assert_not_null(rep, "incomplete RESP in the test: %s", wire);
    redisReaderFree(rd);
    return rep;
}

Test(sentinel, master_addr_reply)
{
    char host[128];
    int port;
    redisReply *r = resp("*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n");
    cr_assert_eq(st_sentinel_parse_addr(r, host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 6380);
    freeReplyObject(r);
    const char *bad[] = {
        "*-1\r\n",                                     /* unknown master name: nil */
        "$-1\r\n",
        "-IDONTKNOW No such master\r\n",
        "*1\r\n$9\r\n127.0.0.1\r\n",
        "*3\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\n2\r\n",
        "*2\r\n$9\r\n127.0.0.1\r\n:6380\r\n",          /* port as an integer: not what sentinels send */
        "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n99999\r\n",
        "*2\r\n$0\r\n\r\n$4\r\n6380\r\n",
        "*2\r\n$3\r\na b\r\n$4\r\n6380\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = resp(bad[i]);
        cr_assert_eq(st_sentinel_parse_addr(r, host, sizeof host, &port), -1, "%s", bad[i]);
        freeReplyObject(r);
    }
}

Test(sentinel, role_reply)
{
    redisReply *r = resp("*3\r\n$6\r\nmaster\r\n:3129659\r\n*0\r\n");
    cr_assert_eq(st_redis_parse_role(r), 1);
    freeReplyObject(r);
    r = resp("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$9\r\nconnected\r\n:3167038\r\n");
    cr_assert_eq(st_redis_parse_role(r), 0);
    freeReplyObject(r);
    r = resp("*2\r\n$8\r\nsentinel\r\n*0\r\n");
    cr_assert_eq(st_redis_parse_role(r), 0);
    freeReplyObject(r);
    r = resp("*1\r\n$7\r\nmasters\r\n");
    cr_assert_eq(st_redis_parse_role(r), 0);
    freeReplyObject(r);
    r = resp("-NOAUTH Authentication required.\r\n");
    cr_assert_eq(st_redis_parse_role(r), -1);
    freeReplyObject(r);
    r = resp("*0\r\n");
    cr_assert_eq(st_redis_parse_role(r), -1);
    freeReplyObject(r);
    cr_assert_eq(st_redis_parse_role(NULL), -1);
}

/* ---- single flight without the cache ------------------------------------- */

static atomic_int loads;

static int slow_load(void *arg, buf *out, st_err *err)
{
    (void)arg;
    (void)err;
    loads++;
    usleep(200000);
    return buf_append_str(out, "row");
}

typedef struct sf_arg { st_cache *c; int rc; bool shared; char got[8]; } sf_arg;

static void *sf_run(void *p)
{
    sf_arg *a = p;
    buf b;
    buf_init(&b);
    st_err e;
    a->rc = st_cache_single_flight(a->c, "cf:7:-:x", 0, slow_load, NULL, &b, &a->shared, &e);
    snprintf(a->got, sizeof a->got, "%.*s", (int)b.len, buf_head(&b));
    buf_free(&b);
    return NULL;
}

Test(sentinel, single_flight_coalesces_and_caches_nothing)
{
    st_cache *c = st_cache_new_local(1 << 20);
    sf_arg a[8];
    pthread_t th[8];
    loads = 0;
    for (int i = 0; i < 8; i++) {
        a[i] = (sf_arg){ .c = c };
        pthread_create(&th[i], NULL, sf_run, &a[i]);
        if (i == 0)     /* the first is loading when the others arrive */
            cr_assert(UT_WAIT_UNTIL(loads > 0, 1000), "the first loader never ran");
    }
    int shared = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(a[i].rc, 0);
        cr_assert_str_eq(a[i].got, "row");
        shared += a[i].shared;
    }
    cr_assert_eq(loads, 1, "8 concurrent callers ran %d loads", (int)loads);
    cr_assert_eq(shared, 7);
    /* Nothing was cached: the next caller loads again. */
    sf_run(&a[0]);
    cr_assert_eq(loads, 2);
    buf b;
    buf_init(&b);
    cr_assert_eq(st_cache_get(c, "cf:7:-:x", &b), 0);
    buf_free(&b);
    st_cache_free(c);
}

/* ---- configuration --------------------------------------------------------- */

static int load_store(const char *yaml, st_config *cfg, cfg_error *e)
{
    memset(cfg, 0, sizeof *cfg);
    memset(e, 0, sizeof *e);
    int rc = cfg_defaults(&st_config_schema, cfg, e);
    if (rc == 0)
        rc = cfg_load_text(&st_config_schema, cfg, yaml, strlen(yaml), "t.yaml", e);
    if (rc == 0)
        rc = cfg_validate(&st_config_schema, cfg, e);
    return rc;
}

Test(sentinel, config_keys)
{
    st_config cfg;
    cfg_error e;
    cr_assert_eq(load_store("cache:\n  kind: redis\n  sentinels: [\"127.0.0.1:26379\", "
                            "\"10.0.0.2:26379\"]\n  sentinel_master: cache1\n", &cfg, &e), 0,
                 "%s: %s", e.key, e.msg);
    cr_assert_eq(cfg.cache.nsentinels, 2);
    cr_assert_str_eq(cfg.cache.sentinels[1], "10.0.0.2:26379");
    cr_assert_str_eq(cfg.cache.sentinel_master, "cache1");
    cfg_free(&st_config_schema, &cfg);

    cr_assert_eq(load_store("cache:\n  kind: redis\n  sentinels: [\"127.0.0.1\"]\n", &cfg, &e),
                 -1);
    cr_assert(strstr(e.key, "cache.sentinels[0]"), "%s", e.key);
    cr_assert(strstr(e.msg, "host:port"), "%s", e.msg);
    cfg_free(&st_config_schema, &cfg);

    cr_assert_eq(load_store("cache:\n  kind: redis\n  sentinels: [\"h:1\"]\n"
                            "  sentinel_master: \"a b\"\n", &cfg, &e), -1);
    cr_assert(strstr(e.key, "cache.sentinel_master"), "%s", e.key);
    cfg_free(&st_config_schema, &cfg);

    cr_assert_eq(load_store("cache:\n  kind: redis\n", &cfg, &e), -1);
    cr_assert(strstr(e.msg, "sentinels"), "%s", e.msg);
    cfg_free(&st_config_schema, &cfg);
}

Test(sentinel, open_with_no_sentinel_up_does_not_fail_and_misses)
{
    st_cache_cfg cc = { .kind = ST_CACHE_REDIS, .redis_timeout = 20000 };
    char *sl[] = { "127.0.0.1:1" };   /* nothing listens on port 1 */
    cc.sentinels = sl;
    cc.nsentinels = 1;
    cc.sentinel_master = "mymaster";
    st_err e;
    st_cache *c = st_cache_new_redis_cfg(&cc, NULL, &e);
    cr_assert_not_null(c, "%s", e.msg);
    cr_assert_eq(st_cache_gen(c, "u:1"), 0);     /* no master: bypass */
    buf b;
    buf_init(&b);
    cr_assert_eq(st_cache_get(c, "k", &b), 0);
    buf_free(&b);
    st_cache_stats cs;
    st_cache_stats_get(c, &cs);
    cr_assert(!cs.redis_up);
    cr_assert_str_eq(cs.redis_master, "");
    cr_assert_str_eq(cs.redis_master_state, "resolving");
    st_cache_free(c);
}
