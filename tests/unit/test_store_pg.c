/* test_store_pg.c -- the PostgreSQL driver and replica routing against a
 * real primary and a streaming replica (pg_basebackup -R) started by the
 * test as the postgres user on free loopback ports: typed rows and ?->$n,
 * error codes, migration, pre-ping on a terminated backend, reads on the
 * replica, writes and read-your-writes on the primary, a stopped replica
 * sending reads to the primary, a stopped primary failing writes with
 * ST_EUNAVAIL while reads continue on the replica. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ut_wait.h"
#include "store/store_int.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

#define PGBIN "/usr/lib/postgresql/15/bin"

static char dir[64];
static int port_p, port_r;
static char url_p[128], url_r[128];

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int pg_start(const char *data, int port)
{
    return sh("runuser -u postgres -- " PGBIN "/pg_ctl -w -t 20 -D %s/%s -l %s/%s.log "
              "-o '-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off' start >/dev/null",
              dir, data, dir, data, port, dir);
}

static void pg_stop(const char *data)
{
    sh("runuser -u postgres -- " PGBIN "/pg_ctl -D %s/%s -m immediate stop >/dev/null 2>&1",
       dir, data);
}

static void setup(void)
{
    if (access(PGBIN "/initdb", X_OK) != 0 || geteuid() != 0)
        cr_skip_test("needs PostgreSQL 15 and root (to run it as the postgres user)");
    snprintf(dir, sizeof dir, "/tmp/st_pg_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(sh("chown postgres %s", dir), 0);
    port_p = free_port();
    port_r = free_port();
    snprintf(url_p, sizeof url_p, "postgresql://postgres@127.0.0.1:%d/postgres", port_p);
    snprintf(url_r, sizeof url_r, "postgresql://postgres@127.0.0.1:%d/postgres", port_r);
    cr_assert_eq(sh("runuser -u postgres -- " PGBIN "/initdb -D %s/p --auth=trust -N >/dev/null",
                    dir), 0);
    cr_assert_eq(pg_start("p", port_p), 0, "primary did not start");
    cr_assert_eq(sh("runuser -u postgres -- " PGBIN "/pg_basebackup -h 127.0.0.1 -p %d -U postgres "
                    "-D %s/r -R -X stream >/dev/null 2>&1", port_p, dir), 0);
    cr_assert_eq(pg_start("r", port_r), 0, "replica did not start");
}

static void teardown(void)
{
    if (!dir[0])
        return;
    pg_stop("r");
    pg_stop("p");
    sh("rm -rf %s", dir);
}

TestSuite(store_pg, .init = setup, .fini = teardown, .timeout = 60);

static st_conn *conn(st_pool **p, const char *url, const st_pool_cfg *cfg)
{
    st_err err;
    *p = st_pool_new(st_driver_for_url(url), url, cfg, &err);
    cr_assert_not_null(*p);
    st_conn *c = st_pool_acquire(*p, &err);
    cr_assert_not_null(c, "%s", err.msg);
    return c;
}

Test(store_pg, driver_rows_errors_migration_and_pre_ping)
{
    st_pool_cfg cfg = { .size = 2, .pre_ping = true, .pre_ping_idle = 0 };
    st_pool *p;
    st_conn *c = conn(&p, url_p, &cfg);
    st_err err;
    st_res *r;
    cr_assert_str_eq(st_driver_name(st_conn_driver(c)), "postgresql");
    cr_assert_eq(st_schema_migrate(c, &err), 0, "%s", err.msg);
    cr_assert_eq(st_schema_migrate(c, &err), 0, "idempotent");
    st_val u[6] = { st_int(7), st_text("1234567890"), st_text("Ann"), st_text("O'Neil"),
                    st_text("a@x.org"), st_text("2026-01-01T00:00:00Z") };
    const char *ins = "INSERT INTO users (user_id, npi_number, first_name, last_name, email,"
                      " created_at) VALUES (?, ?, ?, ?, ?, ?)";
    cr_assert_eq(st_conn_exec(c, ins, u, 6, &r, &err), 0, "%s", err.msg);
    cr_expect_eq(st_res_changes(r), 1);
    st_res_free(r);
    cr_assert_eq(st_conn_exec(c, ins, u, 6, NULL, &err), -1);
    cr_expect_eq(err.code, ST_ECONFLICT, "%s", err.msg);
    st_val id = st_int(7);
    cr_assert_eq(st_conn_exec(c, "SELECT user_id, last_name, '?' AS q, NULL AS z FROM users"
                              " WHERE user_id = ?", &id, 1, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(st_res_rows(r), 1);
    cr_expect_eq(st_res_type(r, 0, 0), ST_INT);
    cr_expect_eq(st_res_int(r, 0, 0), 7);
    cr_expect_str_eq(st_res_text(r, 0, 1, NULL), "O'Neil");
    cr_expect_str_eq(st_res_text(r, 0, 2, NULL), "?", "quoted ? is not a placeholder");
    cr_expect(st_res_is_null(r, 0, 3));
    cr_expect_str_eq(st_res_name(r, 2), "q");
    st_res_free(r);
    cr_assert_eq(st_conn_exec(c, "SELEC 1", NULL, 0, NULL, &err), -1);
    cr_expect_eq(err.code, ST_EQUERY);

    /* Kill the pooled connection's backend: pre-ping must replace it. */
    cr_assert_eq(st_conn_exec(c, "SELECT pg_backend_pid()", NULL, 0, &r, &err), 0);
    int64_t pid = st_res_int(r, 0, 0);
    st_res_free(r);
    st_pool_release(p, c, false);
    st_pool *q;
    st_conn *k = conn(&q, url_p, NULL);
    st_val vp = st_int(pid);
    cr_assert_eq(st_conn_exec(k, "SELECT pg_terminate_backend(?::int)", &vp, 1, NULL, &err), 0,
                 "%s", err.msg);
    usleep(100000);
    c = st_pool_acquire(p, &err);
    cr_assert_not_null(c, "%s", err.msg);
    cr_expect_eq(st_conn_exec(c, "SELECT 1", NULL, 0, NULL, &err), 0, "%s", err.msg);
    st_pool_stats st;
    st_pool_stats_get(p, &st);
    cr_expect_eq(st.ping_failures, 1);
    cr_expect_eq(st.opened, 2);

    /* Without pre-ping the dead connection fails once, as unavailable, and
     * is discarded rather than returned to the pool. */
    cr_assert_eq(st_conn_exec(c, "SELECT pg_backend_pid()", NULL, 0, &r, &err), 0);
    vp = st_int(st_res_int(r, 0, 0));
    st_res_free(r);
    cr_assert_eq(st_conn_exec(k, "SELECT pg_terminate_backend(?::int)", &vp, 1, NULL, &err), 0);
    usleep(100000);
    cr_assert_eq(st_conn_exec(c, "SELECT 1", NULL, 0, NULL, &err), -1);
    cr_expect_eq(err.code, ST_EUNAVAIL, "%s", err.msg);
    st_pool_release(p, c, false);
    st_pool_stats_get(p, &st);
    cr_expect_eq(st.total, 0, "broken connection closed");
    st_pool_release(q, k, false);
    st_pool_free(q);
    st_pool_free(p);
}

static bool read_on_replica(st_store *s, int64_t user)
{
    st_res *r;
    st_err err;
    st_val u = st_int(user);
    cr_assert_eq(st_query(s, user, ST_READ, "SELECT pg_is_in_recovery()::int + 0 * ?", &u, 1,
                          &r, &err), 0, "%s", err.msg);
    bool rep = st_res_int(r, 0, 0) == 1;
    st_res_free(r);
    return rep;
}

Test(store_pg, replicas_read_your_writes_and_failures)
{
    char *replicas[1] = { url_r };
    st_shard_cfg shard = { .name = "s0", .primary = url_p, .replicas = replicas,
                           .nreplicas = 1, .weight = 1 };
    st_config cfg = { .shards = &shard, .nshards = 1, .migrate = true,
                      .read_your_writes = 500000, .replica_check = 100000,
                      .max_replica_lag = 5000000,
                      .pool = { .size = 4, .acquire_timeout = 2000000 } };
    st_store *s;
    st_err err;
    cr_assert_eq(st_store_open(&cfg, &s, &err), 0, "%s", err.msg);
    cr_expect_str_eq(st_store_driver_name(s), "postgresql");
    cr_expect(read_on_replica(s, 1), "reads go to the healthy replica");

    st_val u[6] = { st_int(42), st_text("4242424242"), st_text("B"), st_text("C"),
                    st_text("b@x.org"), st_text("2026-01-01T00:00:00Z") };
    const char *ins = "INSERT INTO users (user_id, npi_number, first_name, last_name, email,"
                      " created_at) VALUES (?, ?, ?, ?, ?, ?)";
    /* The migration ran on the primary; wait for it to reach the replica. */
    usleep(300000);
    cr_assert_eq(st_query(s, 42, ST_WRITE, ins, u, 6, NULL, &err), 0, "%s", err.msg);
    cr_expect(!read_on_replica(s, 42), "the writer reads its own writes from the primary");
    cr_expect(read_on_replica(s, 43), "other users still read from the replica");
    st_res *r;
    st_val id = st_int(42);
    cr_assert_eq(st_query(s, 42, ST_READ, "SELECT email FROM users WHERE user_id = ?", &id, 1,
                          &r, &err), 0);
    cr_expect_eq(st_res_rows(r), 1, "its own write is visible at once");
    st_res_free(r);
    usleep(600000);
    cr_expect(read_on_replica(s, 42), "after the window, back to the replica");
    cr_assert_eq(st_query(s, 42, ST_READ, "SELECT email FROM users WHERE user_id = ?", &id, 1,
                          &r, &err), 0);
    cr_expect_eq(st_res_rows(r), 1, "replicated");
    st_res_free(r);

    st_shard_stats st;
    st_store_stats_fast(s, 0, &st);
    cr_expect_eq(st.nreplicas, 1);
    cr_expect(st.replicas[0].healthy);
    cr_expect(st.replicas[0].lag_s >= 0 && st.replicas[0].lag_s < 5, "lag %f", st.replicas[0].lag_s);
    cr_assert_eq(st_store_stats(s, 0, &st, &err), 0, "%s", err.msg);
    cr_expect_eq(st.rows[0], 1);
    cr_expect_gt(st.size_bytes, 1000000);

    /* A stopped replica: reads move to the primary without an error. */
    pg_stop("r");
    for (int i = 0; i < 5; i++)
        cr_expect(!read_on_replica(s, 100 + i), "read %d answered by the primary", i);
    usleep(300000);
    st_store_stats_fast(s, 0, &st);
    cr_expect(!st.replicas[0].healthy, "probe marks the replica down");

    /* Replica back, primary stopped: writes fail as unavailable, reads work. */
    cr_assert_eq(pg_start("r", port_r), 0);
    usleep(400000);
    cr_expect(read_on_replica(s, 7), "replica back in rotation");
    pg_stop("p");
    u[0] = st_int(43);
    u[1] = st_text("4343434343");
    cr_assert_eq(st_query(s, 43, ST_WRITE, ins, u, 6, NULL, &err), -1);
    cr_expect_eq(err.code, ST_EUNAVAIL, "%s", err.msg);
    cr_expect(read_on_replica(s, 43), "the failed writer's reads are served by the replica");
    usleep(300000);
    st_tx *tx;
    cr_assert_eq(st_tx_begin(s, 43, &tx, &err), -1, "known-down primary fails fast");
    cr_expect_eq(err.code, ST_EUNAVAIL);
    cr_assert_eq(st_query(s, 43, ST_WRITE, ins, u, 6, NULL, &err), -1);
    cr_expect(strstr(err.msg, "is down") != NULL, "%s", err.msg);
    cr_assert_eq(st_query(s, 42, ST_READ, "SELECT email FROM users WHERE user_id = ?", &id, 1,
                          &r, &err), 0, "reads keep working: %s", err.msg);
    cr_expect_eq(st_res_rows(r), 1);
    st_res_free(r);
    cr_assert_eq(st_store_ping(s, &err), -1, "not ready without a primary");
    cr_expect_eq(err.code, ST_EUNAVAIL);
    st_store_close(s);
}

typedef struct slow_read { st_store *s; int rc; int64_t on_replica; st_err err; } slow_read;

static void *slow_read_run(void *p)
{
    slow_read *a = p;
    st_res *r = NULL;
    a->rc = st_query_shard(a->s, 0, ST_READ,
                           "SELECT pg_is_in_recovery()::int FROM pg_sleep(0.6)", NULL, 0, &r,
                           &a->err);
    if (a->rc == 0)
        a->on_replica = st_res_int(r, 0, 0);
    st_res_free(r);
    return NULL;
}

/* Connections the store holds on the replica, seen from the replica. */
/* Queries of the store running on the replica now (pg_sleep: a slow read). */
static int64_t replica_slow_reads(void)
{
    st_pool *p;
    st_conn *c = conn(&p, url_r, NULL);
    st_res *r;
    st_err err;
    cr_assert_eq(st_conn_exec(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name"
                              " = 'hscale' AND state = 'active' AND query LIKE '%pg_sleep%'"
                              " AND pid <> pg_backend_pid()", NULL, 0, &r, &err), 0, "%s", err.msg);
    int64_t n = st_res_int(r, 0, 0);
    st_res_free(r);
    st_pool_release(p, c, true);
    st_pool_free(p);
    return n;
}

static int64_t replica_conns(void)
{
    st_pool *p;
    st_conn *c = conn(&p, url_r, NULL);
    st_res *r;
    st_err err;
    cr_assert_eq(st_conn_exec(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name"
                              " = 'hscale' AND pid <> pg_backend_pid()", NULL, 0, &r, &err), 0,
                 "%s", err.msg);
    int64_t n = st_res_int(r, 0, 0);
    st_res_free(r);
    st_pool_release(p, c, true);
    st_pool_free(p);
    return n;
}

Test(store_pg, replica_removed_mid_query_drains_then_closes_and_can_come_back)
{
    char *replicas[1] = { url_r };
    st_shard_cfg shard = { .name = "s0", .primary = url_p, .replicas = replicas,
                           .nreplicas = 1, .weight = 1 };
    st_config cfg = { .shards = &shard, .nshards = 1, .replica_check = 100000,
                      .max_replica_lag = 5000000,
                      .pool = { .size = 4, .acquire_timeout = 2000000 } };
    st_store *s;
    st_err err;
    cr_assert_eq(st_store_open(&cfg, &s, &err), 0, "%s", err.msg);
    cr_assert(read_on_replica(s, 1));
    cr_expect_gt(replica_conns(), 0);

    slow_read a = { .s = s };
    pthread_t th;
    pthread_create(&th, NULL, slow_read_run, &a);
    cr_assert(UT_WAIT_UNTIL(replica_slow_reads() > 0, 2000), "the slow read runs on the replica");
    uint64_t t0 = st_now_us();
    cr_assert_eq(st_store_set_replicas(s, "s0", NULL, 0, &err), 0, "%s", err.msg);
    cr_expect_lt(st_now_us() - t0, 300000u, "removal does not wait for in-flight queries");
    cr_expect(!read_on_replica(s, 2), "no new reads on the removed replica");
    st_shard_stats st;
    st_store_stats_fast(s, 0, &st);
    cr_expect_eq(st.nreplicas, 0);
    pthread_join(th, NULL);
    cr_expect_eq(a.rc, 0, "the in-flight read finished: %s", a.err.msg);
    cr_expect_eq(a.on_replica, 1, "on the replica it started on");
    cr_expect_eq(replica_conns(), 0, "every connection to the removed replica closed");

    const char *back[1] = { url_r };
    cr_assert_eq(st_store_set_replicas(s, "s0", back, 1, &err), 0, "%s", err.msg);
    cr_expect(read_on_replica(s, 3), "an added replica takes reads at once (probed first)");
    cr_assert_eq(st_store_set_replicas(s, "nope", back, 1, &err), -1);
    cr_expect(strstr(err.msg, "no shard named 'nope'"), "%s", err.msg);
    const char *twice[2] = { url_r, url_r };
    cr_assert_eq(st_store_set_replicas(s, "s0", twice, 2, &err), -1);
    cr_expect(strstr(err.msg, "twice"), "%s", err.msg);
    const char *sqlite[1] = { "sqlite:/tmp/x.db" };
    cr_assert_eq(st_store_set_replicas(s, "s0", sqlite, 1, &err), -1);
    cr_expect(strstr(err.msg, "SQLite has no replication"), "%s", err.msg);
    cr_expect(read_on_replica(s, 4), "a refused change left the set as it was");
    st_store_close(s);
}
