/* test_store_redis.c -- the Redis cache against a real redis-server on a
 * free loopback port: get/set/TTL, invalidation seen by a second instance,
 * coalescing, and an outage: misses without errors, the breaker making a
 * dead Redis cost nothing, recovery once it is back. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis.h>

#include "store/store.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static pid_t redis_pid;
static int redis_port;
static char addr[32];

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static void redis_start(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", redis_port);
    redis_pid = fork();
    cr_assert_neq(redis_pid, -1);
    if (redis_pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200 && !port_open(redis_port); i++)
        usleep(10000);
    cr_assert(port_open(redis_port), "redis-server did not start");
}

static void redis_stop(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = 0;
    }
}

static void setup(void)
{
    redis_port = free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", redis_port);
    redis_start();
}

TestSuite(store_redis, .init = setup, .fini = redis_stop, .timeout = 30);

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static bool has(st_cache *c, const char *key, const char *want)
{
    buf b;
    buf_init(&b);
    bool ok = st_cache_get(c, key, &b) == 1 && b.len == strlen(want) &&
              !memcmp(buf_head(&b), want, b.len);
    buf_free(&b);
    return ok;
}

Test(store_redis, shared_values_ttl_and_invalidation_across_instances)
{
    st_err err;
    st_cache *a = st_cache_new_redis(addr, 200000, &err);
    st_cache *b = st_cache_new_redis(addr, 200000, &err);
    cr_assert_not_null(a, "%s", err.msg);
    cr_assert_not_null(b);
    st_cache_set(a, "case:1", "{\"id\":1}\0x", 10, 10000000);
    buf v;
    buf_init(&v);
    cr_assert_eq(st_cache_get(b, "case:1", &v), 1, "instance b sees a's value");
    cr_expect_eq(v.len, 10, "binary-safe");
    buf_free(&v);
    st_cache_del(b, "case:1");                    /* a write on instance b */
    cr_expect(!has(a, "case:1", "{\"id\":1}"), "invalidated for instance a too");
    st_cache_set(a, "short", "x", 1, 100000);     /* 100 ms */
    cr_expect(has(b, "short", "x"));
    usleep(250000);
    cr_expect(!has(b, "short", "x"), "TTL applied in Redis");
    st_cache_stats st;
    st_cache_stats_get(a, &st);
    cr_expect(st.redis_up);
    cr_expect_eq(st.redis_errors, 0);
    st_cache_free(a);
    st_cache_free(b);
}

static int loads;
static int loader(void *arg, buf *out, st_err *err)
{
    loads++;
    return buf_append_str(out, "loaded");
}

Test(store_redis, an_outage_degrades_to_misses_and_recovers)
{
    st_err err;
    st_cache *c = st_cache_new_redis(addr, 50000, &err);
    cr_assert_not_null(c);
    st_cache_set(c, "k", "v", 1, 60000000);
    cr_assert(has(c, "k", "v"));
    redis_stop();
    /* Every call still answers; the first few fail, then the breaker opens. */
    buf out;
    buf_init(&out);
    bool hit;
    loads = 0;
    cr_assert_eq(st_cache_fetch(c, "k", 60000000, 0, loader, NULL, &out, &hit, &err), 0);
    cr_expect(!hit);
    cr_expect_eq(loads, 1, "a dead Redis falls back to the loader (the database)");
    for (int i = 0; i < 5; i++)
        st_cache_get(c, "k", &out);
    st_cache_stats st;
    st_cache_stats_get(c, &st);
    cr_expect(!st.redis_up, "breaker open after repeated failures");
    uint64_t t0 = now_us();
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(st_cache_get(c, "k", &out), 0);
    uint64_t spent = now_us() - t0;
    cr_expect_lt(spent, 200000, "10000 lookups with Redis down took %llu us",
                 (unsigned long long)spent);
    st_cache_stats_get(c, &st);
    uint64_t errors = st.redis_errors;
    cr_expect_leq(errors, 6, "the open breaker makes no attempts (%llu errors)",
                  (unsigned long long)errors);
    /* Redis comes back; after the pause one probe closes the breaker. */
    redis_start();
    usleep(2100000);
    st_cache_set(c, "k2", "v2", 2, 60000000);
    cr_expect(has(c, "k2", "v2"), "working again after recovery");
    st_cache_stats_get(c, &st);
    cr_expect(st.redis_up);
    buf_free(&out);
    st_cache_free(c);
}

Test(store_redis, a_bad_address_is_a_config_error)
{
    st_err err;
    cr_assert_null(st_cache_new_redis("localhost", 0, &err));
    cr_expect_eq(err.code, ST_EINVAL);
    cr_expect(strstr(err.msg, "host:port") != NULL, "%s", err.msg);
}

Test(store_redis, generations_are_shared_between_instances)
{
    st_err err;
    st_cache *a = st_cache_new_redis(addr, 200000, &err);
    st_cache *b = st_cache_new_redis(addr, 200000, &err);
    uint64_t g = st_cache_gen(a, "u:7");
    cr_assert_gt(g, 1700000000000000ull);
    cr_expect_eq(st_cache_gen(b, "u:7"), g, "both instances agree");
    st_cache_bump(b, "u:7");
    cr_expect_eq(st_cache_gen(a, "u:7"), g + 1, "a write on b is seen by a");
    redis_stop();
    cr_expect_eq(st_cache_gen(a, "u:7"), 0, "Redis down: no generation, bypass the cache");
    st_cache_free(a);
    st_cache_free(b);
}

/* A command on the test's own connection (not through the cache). */
static void admin(const char *fmt, const char *arg)
{
    redisContext *c = redisConnect("127.0.0.1", redis_port);
    cr_assert(c && !c->err);
    redisReply *r = redisCommand(c, fmt, arg);
    cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s: %s", fmt, r ? r->str : "no reply");
    freeReplyObject(r);
    redisFree(c);
}

Test(store_redis, auth_with_the_password_and_misses_without_it)
{
    admin("CONFIG SET requirepass %s", "s3cret pass");
    st_cache_cfg cc = { .kind = ST_CACHE_REDIS, .redis = addr, .redis_timeout = 200000 };
    st_err err;
    st_cache *with = st_cache_new_redis_cfg(&cc, "s3cret pass", &err);
    st_cache *without = st_cache_new_redis_cfg(&cc, NULL, &err);
    cr_assert_not_null(with, "%s", err.msg);
    cr_assert_not_null(without, "%s", err.msg);
    cr_expect_neq(st_cache_gen(with, "u:1"), 0, "AUTH then the generation script");
    st_cache_set(with, "k", "v", 1, 10000000);
    cr_expect(has(with, "k", "v"));
    cr_expect_eq(st_cache_gen(without, "u:1"), 0, "NOAUTH: the cache is bypassed");
    cr_expect(!has(without, "k", "v"));
    st_cache_free(with);
    st_cache_free(without);
}

Test(store_redis, a_lost_invalidation_moves_the_epoch_on)
{
    st_err err;
    st_cache *c = st_cache_new_redis(addr, 100000, &err);
    cr_assert_not_null(c, "%s", err.msg);
    uint64_t g1 = st_cache_gen(c, "u:7");
    cr_assert_neq(g1, 0);
    char key[64];
    snprintf(key, sizeof key, "cf:7:%llu:page", (unsigned long long)g1);
    st_cache_set(c, key, "old page", 8, 10000000);
    /* Writes stall longer than the cache's timeout: the bump of a write to
     * user 7 cannot land, and the old page would still be reachable. */
    admin("CLIENT PAUSE %s WRITE", "400");
    st_cache_bump(c, "u:7");
    usleep(500000);
    cr_expect(has(c, key, "old page"), "the entry itself is still in Redis");
    uint64_t g2 = st_cache_gen(c, "u:7");
    cr_expect_neq(g2, 0);
    cr_expect_neq(g2, g1, "a new epoch: the generation starts again, the old page is unreachable");
    st_cache_stats st;
    st_cache_stats_get(c, &st);
    cr_expect_eq(st.redis_epochs, 1);
    /* Nothing lost since: the epoch stays. */
    cr_expect_eq(st_cache_gen(c, "u:7"), g2);
    st_cache_bump(c, "u:7");
    cr_expect_eq(st_cache_gen(c, "u:7"), g2 + 1);
    st_cache_stats_get(c, &st);
    cr_expect_eq(st.redis_epochs, 1);
    st_cache_free(c);
}
