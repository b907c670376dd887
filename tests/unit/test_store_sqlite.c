/* test_store_sqlite.c -- the SQLite driver (typed rows, parameters, error
 * codes, statement cache), the schema migration, and a two-shard store:
 * rows land on their user's shard file, fan-out merges, transactions,
 * ids, statistics, and the `store:` config section. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "store/store.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/st_sqlite_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

static st_conn *one_conn(st_pool **p)
{
    char url[128];
    snprintf(url, sizeof url, "sqlite:%s/sub/dir/t.db", dir);
    *p = st_pool_new(st_driver_for_url(url), url, NULL, NULL);
    cr_assert_not_null(*p);
    st_err err;
    st_conn *c = st_pool_acquire(*p, &err);
    cr_assert_not_null(c, "%s", err.msg);
    return c;
}

TestSuite(store_sqlite, .init = setup, .fini = teardown);

Test(store_sqlite, typed_rows_and_parameters)
{
    st_pool *p;
    st_conn *c = one_conn(&p);
    st_err err;
    st_res *r = NULL;
    cr_assert_eq(st_conn_exec(c, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)",
                              NULL, 0, NULL, &err), 0, "%s", err.msg);
    st_val a[3] = { st_int(1), st_text("ab\"c"), st_int(-5) };
    cr_assert_eq(st_conn_exec(c, "INSERT INTO t VALUES (?, ?, ?)", a, 3, &r, &err), 0, "%s", err.msg);
    cr_expect_eq(st_res_changes(r), 1);
    st_res_free(r);
    st_val b[3] = { st_int(2), st_null(), st_textn("12xyz", 2) };
    cr_assert_eq(st_conn_exec(c, "INSERT INTO t VALUES (?, ?, ?)", b, 3, NULL, &err), 0);
    cr_assert_eq(st_conn_exec(c, "SELECT id, name, n FROM t ORDER BY id", NULL, 0, &r, &err), 0);
    cr_assert_eq(st_res_rows(r), 2);
    cr_assert_eq(st_res_cols(r), 3);
    cr_expect_str_eq(st_res_name(r, 1), "name");
    cr_expect_eq(st_res_type(r, 0, 0), ST_INT);
    cr_expect_eq(st_res_int(r, 0, 2), -5);
    cr_expect_str_eq(st_res_text(r, 0, 2, NULL), "-5");
    size_t len;
    cr_expect_str_eq(st_res_text(r, 0, 1, &len), "ab\"c");
    cr_expect_eq(len, 4);
    cr_expect(st_res_is_null(r, 1, 1));
    cr_expect_str_eq(st_res_text(r, 1, 1, NULL), "");
    cr_expect_eq(st_res_int(r, 1, 2), 12, "text '12' bound as given, read as int");
    cr_expect(st_res_is_null(r, 5, 5), "out of range reads as NULL");
    st_res_free(r);
    st_val ext[3] = { st_int(INT64_MIN), st_int(INT64_MAX), st_int(0) };
    cr_assert_eq(st_conn_exec(c, "SELECT ?, ?, ?", ext, 3, &r, &err), 0);
    cr_expect_str_eq(st_res_text(r, 0, 0, NULL), "-9223372036854775808");
    cr_expect_str_eq(st_res_text(r, 0, 1, NULL), "9223372036854775807");
    cr_expect_str_eq(st_res_text(r, 0, 2, NULL), "0");
    cr_expect_eq(st_res_int(r, 0, 0), INT64_MIN);
    st_res_free(r);
    /* UPDATE reports changes; RETURNING gives rows. */
    st_val u[1] = { st_int(1) };
    cr_assert_eq(st_conn_exec(c, "UPDATE t SET n = n + 1 WHERE id >= ?", u, 1, &r, &err), 0);
    cr_expect_eq(st_res_changes(r), 2);
    st_res_free(r);
    cr_assert_eq(st_conn_exec(c, "DELETE FROM t WHERE id = ? RETURNING name", u, 1, &r, &err), 0);
    cr_expect_eq(st_res_rows(r), 1);
    cr_expect_str_eq(st_res_text(r, 0, 0, NULL), "ab\"c");
    st_res_free(r);
    st_pool_release(p, c, false);
    st_pool_free(p);
}

Test(store_sqlite, errors_carry_codes)
{
    st_pool *p;
    st_conn *c = one_conn(&p);
    st_err err;
    st_conn_exec(c, "CREATE TABLE u (id INTEGER PRIMARY KEY, e TEXT UNIQUE)", NULL, 0, NULL, NULL);
    st_val v[2] = { st_int(1), st_text("x") };
    cr_assert_eq(st_conn_exec(c, "INSERT INTO u VALUES (?, ?)", v, 2, NULL, &err), 0);
    v[0] = st_int(2);
    cr_assert_eq(st_conn_exec(c, "INSERT INTO u VALUES (?, ?)", v, 2, NULL, &err), -1);
    cr_expect_eq(err.code, ST_ECONFLICT, "%s", err.msg);
    cr_assert_eq(st_conn_exec(c, "SELEC nonsense", NULL, 0, NULL, &err), -1);
    cr_expect_eq(err.code, ST_EQUERY);
    cr_expect(strstr(err.msg, "syntax") != NULL, "%s", err.msg);
    cr_assert_eq(st_conn_exec(c, "SELECT ?", NULL, 0, NULL, &err), -1);
    cr_expect_eq(err.code, ST_EINVAL);
    cr_expect(strstr(err.msg, "parameters") != NULL, "%s", err.msg);
    /* The statement cache survives more statements than it holds. */
    for (int i = 0; i < 200; i++) {
        char sql[64];
        st_res *r;
        snprintf(sql, sizeof sql, "SELECT %d + ?", i);
        st_val one = st_int(1);
        cr_assert_eq(st_conn_exec(c, sql, &one, 1, &r, &err), 0, "%s", err.msg);
        cr_assert_eq(st_res_int(r, 0, 0), i + 1);
        st_res_free(r);
    }
    st_pool_release(p, c, false);
    st_pool_free(p);
}

Test(store_sqlite, migration_is_versioned_and_idempotent)
{
    st_pool *p;
    st_conn *c = one_conn(&p);
    st_err err;
    cr_assert_eq(st_schema_migrate(c, &err), 0, "%s", err.msg);
    cr_assert_eq(st_schema_migrate(c, &err), 0, "second run is a no-op");
    st_res *r;
    cr_assert_eq(st_conn_exec(c, "SELECT version FROM schema_version ORDER BY version", NULL, 0,
                              &r, &err), 0);
    cr_expect_eq(st_res_rows(r), ST_SCHEMA_VERSION, "one row per migration");
    cr_expect_eq(st_res_int(r, st_res_rows(r) - 1, 0), ST_SCHEMA_VERSION);
    st_res_free(r);
    cr_assert_eq(st_conn_exec(c, "SELECT name FROM sqlite_master WHERE type = 'index'"
                              " AND name LIKE 'idx_%' ORDER BY name", NULL, 0, &r, &err), 0);
    cr_expect_eq(st_res_rows(r), 5);
    cr_expect_str_eq(st_res_text(r, 0, 0, NULL), "idx_cases_created_date");
    cr_expect_str_eq(st_res_text(r, 1, 0, NULL), "idx_cases_user_status");
    st_res_free(r);
    st_pool_release(p, c, false);
    st_pool_free(p);
}

static st_store *two_shards(st_shard_cfg sh[2])
{
    static char p0[128], p1[128];
    snprintf(p0, sizeof p0, "sqlite:%s/a.db", dir);
    snprintf(p1, sizeof p1, "sqlite:%s/b.db", dir);
    sh[0] = (st_shard_cfg){ .name = "a", .primary = p0, .weight = 1 };
    sh[1] = (st_shard_cfg){ .name = "b", .primary = p1, .weight = 1 };
    st_config cfg = { .shards = sh, .nshards = 2, .migrate = true,
                      .read_your_writes = 1000000, .cache = { .kind = ST_CACHE_LOCAL } };
    st_store *s;
    st_err err;
    cr_assert_eq(st_store_open(&cfg, &s, &err), 0, "%s", err.msg);
    return s;
}

static int64_t count_in_file(const char *file, int64_t user)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    sqlite3 *db;
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM users WHERE user_id = ?", -1,
                                    &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_step(st);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int add_user(st_store *s, int64_t id, st_err *err)
{
    char npi[24], email[48];
    snprintf(npi, sizeof npi, "%010lld", (long long)id);
    snprintf(email, sizeof email, "u%lld@example.org", (long long)id);
    st_val v[6] = { st_int(id), st_text(npi), st_text("Ann"), st_text("Lee"), st_text(email),
                    st_text("2026-01-01T00:00:00Z") };
    return st_query(s, id, ST_WRITE, "INSERT INTO users (user_id, npi_number, first_name,"
                    " last_name, email, created_at) VALUES (?, ?, ?, ?, ?, ?)", v, 6, NULL, err);
}

Test(store_sqlite, users_land_on_their_shard_and_fan_out_merges)
{
    st_shard_cfg sh[2];
    st_store *s = two_shards(sh);
    st_err err;
    cr_expect_eq(st_store_nshards(s), 2);
    cr_expect_str_eq(st_store_driver_name(s), "sqlite");
    cr_assert_eq(st_store_ping(s, &err), 0, "%s", err.msg);
    int on[2] = { 0 };
    for (int64_t u = 1; u <= 40; u++) {
        cr_assert_eq(add_user(s, u, &err), 0, "%s", err.msg);
        int shard = st_shard_of(s, u);
        on[shard]++;
        cr_expect_eq(count_in_file(shard ? "b.db" : "a.db", u), 1, "user %lld on its shard",
                     (long long)u);
        cr_expect_eq(count_in_file(shard ? "a.db" : "b.db", u), 0, "and only there");
    }
    cr_expect(on[0] > 5 && on[1] > 5, "both shards used: %d/%d", on[0], on[1]);
    st_res *r;
    cr_assert_eq(st_query_all(s, ST_READ, "SELECT user_id FROM users", NULL, 0, &r, &err), 0);
    cr_expect_eq(st_res_rows(r), 40, "fan-out sees every shard");
    st_res_free(r);
    cr_assert_eq(st_query_all(s, ST_READ, "SELECT COUNT(*) FROM users", NULL, 0, &r, &err), 0);
    cr_expect_eq(st_res_rows(r), 2, "one count per shard");
    cr_expect_eq(st_res_int(r, 0, 0) + st_res_int(r, 1, 0), 40);
    st_res_free(r);
    cr_assert_eq(add_user(s, 1, &err), -1);
    cr_expect_eq(err.code, ST_ECONFLICT);
    st_val one = st_int(3);
    cr_assert_eq(st_query(s, 3, ST_READ, "SELECT first_name FROM users WHERE user_id = ?",
                          &one, 1, &r, &err), 0);
    cr_expect_str_eq(st_res_text(r, 0, 0, NULL), "Ann");
    st_res_free(r);
    cr_assert_eq(st_query_all(s, ST_READ, "SELECT nope FROM users", NULL, 0, &r, &err), -1);
    cr_expect(strstr(err.msg, "shard a") != NULL, "error names the shard: %s", err.msg);

    st_shard_stats st;
    cr_assert_eq(st_store_stats(s, 0, &st, &err), 0, "%s", err.msg);
    cr_expect_str_eq(st.name, "a");
    cr_expect_eq(st.rows[0], on[0]);
    cr_expect_gt(st.size_bytes, 0);
    cr_expect_gt(st.queries, 0);
    buf j;
    buf_init(&j);
    cr_assert_eq(st_store_stats_json(s, true, &j, &err), 0);
    buf_append(&j, "", 1);
    cr_expect(strstr(buf_head(&j), "\"name\":\"b\"") != NULL, "%s", buf_head(&j));
    cr_expect(strstr(buf_head(&j), "\"users\":") != NULL);
    buf_free(&j);
    st_store_close(s);
}

Test(store_sqlite, transactions_commit_or_leave_nothing)
{
    st_shard_cfg sh[2];
    st_store *s = two_shards(sh);
    st_err err;
    cr_assert_eq(add_user(s, 9, &err), 0);
    st_tx *tx;
    cr_assert_eq(st_tx_begin(s, 9, &tx, &err), 0, "%s", err.msg);
    st_val f[4] = { st_int(st_id_next(s)), st_int(9), st_text("General"), st_text("2026") };
    cr_assert_eq(st_tx_exec(tx, "INSERT INTO facilities VALUES (?, ?, ?, ?)", f, 4, NULL, &err), 0,
                 "%s", err.msg);
    st_tx_rollback(tx);
    st_res *r;
    st_val u = st_int(9);
    cr_assert_eq(st_query(s, 9, ST_READ, "SELECT COUNT(*) FROM facilities WHERE user_id = ?",
                          &u, 1, &r, &err), 0);
    cr_expect_eq(st_res_int(r, 0, 0), 0, "rolled back");
    st_res_free(r);

    cr_assert_eq(st_tx_begin(s, 9, &tx, &err), 0);
    cr_assert_eq(st_tx_exec(tx, "INSERT INTO facilities VALUES (?, ?, ?, ?)", f, 4, NULL, &err), 0);
    st_val bad[4] = { st_int(st_id_next(s)), st_int(12345), st_text("X"), st_text("2026") };
    cr_assert_eq(st_tx_exec(tx, "INSERT INTO facilities VALUES (?, ?, ?, ?)", bad, 4, NULL, &err),
                 -1, "foreign key to a missing user");
    cr_expect_eq(err.code, ST_ECONFLICT);
    cr_assert_eq(st_tx_commit(tx, &err), -1, "a failed statement forbids commit");
    cr_assert_eq(st_query(s, 9, ST_READ, "SELECT COUNT(*) FROM facilities", NULL, 0, &r, &err), 0);
    cr_expect_eq(st_res_int(r, 0, 0), 0, "no half-done write");
    st_res_free(r);

    cr_assert_eq(st_tx_begin(s, 9, &tx, &err), 0);
    cr_assert_eq(st_tx_exec(tx, "INSERT INTO facilities VALUES (?, ?, ?, ?)", f, 4, NULL, &err), 0);
    cr_assert_eq(st_tx_commit(tx, &err), 0, "%s", err.msg);
    cr_assert_eq(st_query(s, 9, ST_READ, "SELECT COUNT(*) FROM facilities", NULL, 0, &r, &err), 0);
    cr_expect_eq(st_res_int(r, 0, 0), 1);
    st_res_free(r);
    st_store_close(s);
}

Test(store_sqlite, ids_are_unique_monotonic_and_json_safe)
{
    st_store *s;
    st_config cfg = { .data_dir = dir };
    cr_assert_eq(st_store_open(&cfg, &s, NULL), 0);
    int64_t last = 0;
    for (int i = 0; i < 50000; i++) {     /* > 8192 per second: borrows ahead */
        int64_t id = st_id_next(s);
        cr_assert_gt(id, last);
        cr_assert_lt(id, (int64_t)1 << 53);
        last = id;
    }
    st_store_close(s);
}

Test(store_sqlite, config_section_defaults_and_errors)
{
    st_config cfg = { 0 };   /* cfg_defaults frees what the struct holds */
    cfg_error ce;
    cr_assert_eq(cfg_defaults(&st_config_schema, &cfg, &ce), 0);
    cr_expect_str_eq(cfg.data_dir, "./hscale-data");
    cr_expect_eq(cfg.pool.size, 10);
    cr_expect_eq(cfg.pool.overflow, 20);
    cr_expect_eq(cfg.pool.acquire_timeout, 30000000u);
    cr_expect_eq(cfg.pool.recycle, 300000000u);
    cr_expect(cfg.pool.pre_ping);
    cr_expect_eq(cfg.cache.kind, ST_CACHE_LOCAL);
    cr_expect_eq(cfg.cache.ttl_case_list, 30000000u);
    cr_expect(cfg.migrate);
    const char *yaml =
        "strategy: range\n"
        "shards:\n"
        "  - {name: low, primary: \"sqlite:/tmp/x/low.db\"}\n"
        "  - {name: high, primary: \"postgresql://u:pw@127.0.0.1:5/db\", replicas: [\"postgresql://127.0.0.1:6/db\"], weight: 2}\n"
        "ranges:\n"
        "  - {from: 0, to: 999, shard: low}\n"
        "  - {from: 1000, shard: high}\n"
        "pool: {size: 4, acquire_timeout: 250ms}\n"
        "cache: {kind: redis, redis: \"127.0.0.1:6379\", ttl_case: 1m}\n";
    cr_assert_eq(cfg_load_text(&st_config_schema, &cfg, yaml, strlen(yaml), "t.yaml", &ce), 0,
                 "%s: %s", ce.key, ce.msg);
    cr_assert_eq(cfg_validate(&st_config_schema, &cfg, &ce), 0, "%s: %s", ce.key, ce.msg);
    cr_expect_eq(cfg.nshards, 2);
    cr_expect_eq(cfg.shards[1].nreplicas, 1);
    cr_expect_eq(cfg.shards[1].weight, 2);
    cr_expect_eq(cfg.shards[0].weight, 1);
    cr_expect_str_eq(cfg.ranges[1].from, "1000");
    cr_expect_eq(cfg.pool.size, 4);
    cr_expect_eq(cfg.pool.acquire_timeout, 250000u);
    cr_expect_eq(cfg.cache.ttl_case, 60000000u);
    cfg_free(&st_config_schema, &cfg);
    memset(&cfg, 0, sizeof cfg);

    cr_assert_eq(cfg_defaults(&st_config_schema, &cfg, &ce), 0);
    const char *bad = "ranges:\n  - {from: 0, to: 9, shard: nowhere}\n";
    cr_assert_eq(cfg_load_text(&st_config_schema, &cfg, bad, strlen(bad), "t.yaml", &ce), 0);
    cr_assert_eq(cfg_validate(&st_config_schema, &cfg, &ce), -1);
    cr_expect_str_eq(ce.key, "ranges[0].shard");
    cr_expect(strstr(ce.msg, "nowhere") != NULL, "%s", ce.msg);
    cfg_free(&st_config_schema, &cfg);

    /* Embedded as `store:` in a top-level config, keys get the prefix. */
    typedef struct top { st_config store; } top;
    static const cfg_field top_fields[] = {
        { "store", CFG_OBJECT, offsetof(top, store), NULL, NULL, 0, 0, NULL, &st_config_schema,
          0, 0, "data layer" },
    };
    static const cfg_schema top_schema = { "top", top_fields, 1, NULL };
    top t = { 0 };
    const char *doc = "store:\n  cache: {kind: redis}\n";
    cr_assert_eq(cfg_defaults(&top_schema, &t, &ce), 0);
    cr_assert_eq(cfg_load_text(&top_schema, &t, doc, strlen(doc), "h.yaml", &ce), 0);
    cr_assert_eq(cfg_validate(&top_schema, &t, &ce), -1);
    cr_expect_str_eq(ce.key, "store.cache.redis");
    cfg_free(&top_schema, &t);
    memset(&cfg, 0, sizeof cfg);

    /* The default config opens: one SQLite shard under data_dir. */
    cr_assert_eq(cfg_defaults(&st_config_schema, &cfg, &ce), 0);
    free(cfg.data_dir);
    cfg.data_dir = strdup(dir);
    st_store *s;
    st_err err;
    cr_assert_eq(st_store_open(&cfg, &s, &err), 0, "%s", err.msg);
    cr_expect_eq(st_store_nshards(s), 1);
    cr_expect_str_eq(st_store_shard_name(s, 0), "s0");
    char path[128];
    snprintf(path, sizeof path, "%s/s0.db", dir);
    cr_expect_eq(access(path, F_OK), 0, "SQLite file per shard under data_dir");
    st_store_close(s);
    cfg_free(&st_config_schema, &cfg);
}

Test(store_sqlite, directory_routing_from_config_and_table)
{
    static char p0[128], p1[128];
    snprintf(p0, sizeof p0, "sqlite:%s/a.db", dir);
    snprintf(p1, sizeof p1, "sqlite:%s/b.db", dir);
    st_shard_cfg sh[2] = { { .name = "a", .primary = p0 }, { .name = "b", .primary = p1 } };
    st_dir_cfg d[1] = { { .user = "5", .shard = "b" } };
    st_config cfg = { .shards = sh, .nshards = 2, .migrate = true,
                      .strategy = ST_ROUTE_DIRECTORY, .directory = d, .ndirectory = 1 };
    st_store *s;
    st_err err;
    cr_assert_eq(st_store_open(&cfg, &s, &err), 0, "%s", err.msg);
    cr_expect_eq(st_shard_of(s, 5), 1, "config entry");
    cr_expect_eq(st_shard_of(s, 6), 0, "default: first shard");
    cr_assert_eq(st_store_dir_assign(s, 6, "b", &err), 0, "%s", err.msg);
    cr_expect_eq(st_shard_of(s, 6), 1);
    cr_assert_eq(st_store_dir_assign(s, 7, "nope", &err), -1);
    cr_expect(strstr(err.msg, "nope") != NULL, "%s", err.msg);
    cr_assert_eq(add_user(s, 6, &err), 0, "%s", err.msg);
    cr_expect_eq(count_in_file("b.db", 6), 1);
    st_store_close(s);
    cfg.ndirectory = 0;
    cr_assert_eq(st_store_open(&cfg, &s, &err), 0, "%s", err.msg);
    cr_expect_eq(st_shard_of(s, 6), 1, "assignment persisted in the directory table");
    cr_expect_eq(st_shard_of(s, 5), 0, "config entry gone");
    st_store_close(s);
}

Test(store_sqlite, results_render_as_valid_json)
{
    st_pool *p;
    st_conn *c = one_conn(&p);
    st_res *r;
    st_err err;
    st_val v[3] = { st_textn("a\"b\\c\n\x01\xff\xe2\x82\xac", 11), st_null(), st_int(-12) };
    cr_assert_eq(st_conn_exec(c, "SELECT ? AS t, ? AS n, ? AS i", v, 3, &r, &err), 0, "%s", err.msg);
    buf j;
    buf_init(&j);
    cr_assert_eq(st_res_json(r, &j), 0);
    buf_append(&j, "", 1);
    cr_expect_str_eq(buf_head(&j),
                     "[{\"t\":\"a\\\"b\\\\c\\n\\u0001\\ufffd\xe2\x82\xac\",\"n\":null,\"i\":-12}]");
    buf_free(&j);
    st_res_free(r);
    st_pool_release(p, c, false);
    st_pool_free(p);
}

typedef struct writer_arg { st_store *s; int base; int fails; st_err err; } writer_arg;

static void *writer(void *p)
{
    writer_arg *a = p;
    for (int i = 0; i < 100; i++) {
        int64_t user = 1;
        st_tx *tx;
        if (st_tx_begin(a->s, user, &tx, &a->err) < 0) {
            a->fails++;
            continue;
        }
        st_res *r = NULL;
        int rc = st_tx_exec(tx, "SELECT COUNT(*) FROM facilities", NULL, 0, &r, &a->err);
        st_res_free(r);
        st_val f[4] = { st_int(st_id_next(a->s)), st_int(user), st_text("F"), st_text("2026") };
        if (rc == 0)
            rc = st_tx_exec(tx, "INSERT INTO facilities VALUES (?, ?, ?, ?)", f, 4, NULL, &a->err);
        if (rc < 0) {
            st_tx_rollback(tx);
            a->fails++;
        } else if (st_tx_commit(tx, &a->err) < 0) {
            a->fails++;
        }
    }
    return NULL;
}

Test(store_sqlite, concurrent_read_then_write_transactions_do_not_fail)
{
    st_config cfg = { .data_dir = dir, .migrate = true, .pool = { .size = 4 } };
    st_store *s;
    st_err err;
    cr_assert_eq(st_store_open(&cfg, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(add_user(s, 1, &err), 0, "%s", err.msg);
    pthread_t th[4];
    writer_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (writer_arg){ .s = s, .base = i };
        pthread_create(&th[i], NULL, writer, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(a[i].fails, 0, "writer %d: %d failures, last: %s", i, a[i].fails, a[i].err.msg);
    }
    st_res *r;
    cr_assert_eq(st_query(s, 1, ST_READ, "SELECT COUNT(*) FROM facilities", NULL, 0, &r, &err), 0);
    cr_expect_eq(st_res_int(r, 0, 0), 400);
    st_res_free(r);
    st_store_close(s);
}

Test(store_sqlite, config_errors_fail_the_open_naming_the_key)
{
    char *reps[1] = { "sqlite:/tmp/nope.db" };
    st_shard_cfg sh[1] = { { .name = "a", .replicas = reps, .nreplicas = 1 } };
    st_config cfg = { .data_dir = dir, .shards = sh, .nshards = 1 };
    st_store *s;
    st_err err;
    cr_assert_eq(st_store_open(&cfg, &s, &err), -1);
    cr_expect_eq(err.code, ST_EINVAL);
    cr_expect(strstr(err.msg, "shards[0].replicas[0]") && strstr(err.msg, "replication"),
              "%s", err.msg);
    sh[0].nreplicas = 0;
    st_range_cfg rg[2] = { { "0", "10", "a" }, { "5", "", "a" } };
    cfg.strategy = ST_ROUTE_RANGE;
    cfg.ranges = rg;
    cfg.nranges = 2;
    cr_assert_eq(st_store_open(&cfg, &s, &err), -1);
    cr_expect(strstr(err.msg, "ranges[1]") && strstr(err.msg, "overlaps"), "%s", err.msg);
    rg[1].from = "x";
    cr_assert_eq(st_store_open(&cfg, &s, &err), -1);
    cr_expect(strstr(err.msg, "expected an integer") != NULL, "%s", err.msg);
    sh[0].primary = "mysql://nope";
    cfg.nranges = 0;
    cfg.strategy = ST_ROUTE_HASH;
    cr_assert_eq(st_store_open(&cfg, &s, &err), -1);
    cr_expect(strstr(err.msg, "unknown database url") != NULL, "%s", err.msg);
}

Test(store_sqlite, directory_assignments_reach_other_instances)
{
    static char p0[128], p1[128];
    snprintf(p0, sizeof p0, "sqlite:%s/a.db", dir);
    snprintf(p1, sizeof p1, "sqlite:%s/b.db", dir);
    st_shard_cfg sh[2] = { { .name = "a", .primary = p0 }, { .name = "b", .primary = p1 } };
    st_config cfg = { .shards = sh, .nshards = 2, .migrate = true,
                      .strategy = ST_ROUTE_DIRECTORY, .replica_check = 20000 };
    st_store *one, *two;
    st_err err;
    cr_assert_eq(st_store_open(&cfg, &one, &err), 0, "%s", err.msg);
    cr_assert_eq(st_store_open(&cfg, &two, &err), 0, "%s", err.msg);
    cr_assert_eq(st_store_dir_assign(one, 77, "b", &err), 0, "%s", err.msg);
    cr_expect_eq(st_shard_of(one, 77), 1);
    for (int i = 0; i < 100 && st_shard_of(two, 77) != 1; i++)
        usleep(10000);
    cr_expect_eq(st_shard_of(two, 77), 1, "instance two learns the assignment");
    st_store_close(one);
    st_store_close(two);
}
