/* test_store_reshard.c -- the versioned shard map and the fence, on two
 * stores over the same SQLite files (two instances): a move started on one
 * adds a shard and moves about a third of the users, rows end up once on
 * their owner; the other store, which does not poll the map, is refused
 * by the old owner and retries on the new one; a fenced write that never
 * sees a newer map fails with ST_EFENCED after fence_wait; the map JSON
 * round-trips and bad maps are refused. */
#include <criterion/criterion.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ut_wait.h"
#include "store/store.h"
#include "store/store_priv.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/st_reshard_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(store_reshard, .init = setup, .fini = teardown);

static st_store *open_store(st_shard_cfg *sh, uint64_t probe_us, uint64_t fence_wait)
{
    static char *names[2] = { "a", "b" };
    memset(sh, 0, 2 * sizeof *sh);
    for (int i = 0; i < 2; i++) {
        sh[i].name = names[i];
        sh[i].weight = 1;
    }
    st_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.data_dir = dir;
    cfg.shards = sh;
    cfg.nshards = 2;
    cfg.migrate = true;
    cfg.replica_check = probe_us;
    cfg.fence_wait = fence_wait;
    cfg.reshard_batch = 7;
    cfg.reshard_cleanup_delay = 10000;
    st_store *s;
    st_err err;
    cr_assert_eq(st_store_open(&cfg, &s, &err), 0, "%s", err.msg);
    return s;
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

static int64_t count(const char *file, const char *sql, int64_t arg)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (access(path, F_OK) != 0)
        return 0;
    sqlite3 *db;
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);    /* the coordinator may hold the write lock */
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    if (sqlite3_bind_parameter_count(st))
        sqlite3_bind_int64(st, 1, arg);
    sqlite3_step(st);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* The coordinator's state now, in `state` (static: the last one read). */
static const char *state_of(st_store *s)
{
    static char state[32];
    buf b;
    buf_init(&b);
    st_reshard_status_json(s, &b);
    buf_append(&b, "", 1);
    const char *p = strstr(buf_head(&b), "\"state\":\"");
    snprintf(state, sizeof state, "%.*s", p ? (int)strcspn(p + 9, "\"") : 0, p ? p + 9 : "");
    buf_free(&b);
    return state;
}

/* Waits up to 8 s for `want`, or an end (failed, rolled_back) it did not
 * want; returns the state last read. */
static const char *wait_state(st_store *s, const char *want)
{
    const char *st = "";
    UT_WAIT_UNTIL((st = state_of(s), !strcmp(st, want) || !strcmp(st, "failed")
                   || !strcmp(st, "rolled_back")), 8000);
    return st;
}

Test(store_reshard, add_shard_moves_a_third_and_fences_the_stale_store)
{
    st_shard_cfg sa[2], sb[2];
    st_store *a = open_store(sa, 50000, 0);
    st_store *b = open_store(sb, 3600000000ull, 0);   /* never polls the map */
    st_err err;
    for (int64_t u = 1; u <= 90; u++)
        cr_assert_eq(add_user(a, u, &err), 0, "%s", err.msg);
    cr_expect_eq(st_store_map_version(a), 1);
    st_reshard_req q;
    memset(&q, 0, sizeof q);
    snprintf(q.op, sizeof q.op, "add_shard");
    snprintf(q.name, sizeof q.name, "c");
    cr_assert_eq(st_reshard_start(a, &q, &err), 0, "%s", err.msg);
    cr_expect_eq(st_reshard_start(a, &q, &err), -1, "one move at a time");
    cr_expect_str_eq(wait_state(a, "done"), "done");
    cr_expect_eq(st_store_map_version(a), 2);
    cr_expect_eq(st_store_nshards(a), 3);
    int64_t on_c = count("c.db", "SELECT COUNT(*) FROM users", 0);
    cr_expect(on_c >= 18 && on_c <= 42, "about a third moved: %lld", (long long)on_c);
    int64_t total = count("a.db", "SELECT COUNT(*) FROM users", 0) +
                    count("b.db", "SELECT COUNT(*) FROM users", 0) + on_c;
    cr_expect_eq(total, 90, "each user exactly once");

    /* b still routes with map v1; a moved user's write is refused by its
     * old shard (min_version 2), b adopts v2 and writes on c */
    cr_expect_eq(st_store_map_version(b), 1);
    int64_t moved = 0;
    for (int64_t u = 1; u <= 90 && !moved; u++)
        if (st_shard_of(a, u) == 2)
            moved = u;
    cr_assert(moved);
    st_val v[2] = { st_text("Zed"), st_int(moved) };
    st_res *r = NULL;
    cr_assert_eq(st_query(b, moved, ST_WRITE, "UPDATE users SET first_name = ? WHERE user_id = ?",
                          v, 2, &r, &err), 0, "%s", err.msg);
    cr_expect_eq(st_res_changes(r), 1);
    st_res_free(r);
    cr_expect_eq(st_store_map_version(b), 2);
    cr_expect_eq(count("c.db", "SELECT COUNT(*) FROM users WHERE first_name = 'Zed' AND"
                       " user_id = ?", moved), 1);
    st_store_close(b);
    st_store_close(a);
}

Test(store_reshard, fenced_write_without_a_newer_map_fails_after_fence_wait)
{
    st_shard_cfg sa[2];
    st_store *a = open_store(sa, 3600000000ull, 100000);
    st_err err;
    cr_assert_eq(add_user(a, 1, &err), 0, "%s", err.msg);
    const char *file = st_shard_of(a, 2) ? "b.db" : "a.db";
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "UPDATE hscale_fence SET min_version = 7", NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    cr_expect_eq(add_user(a, 2, &err), -1);
    cr_expect_eq(err.code, ST_EFENCED, "%s", err.msg);
    cr_expect_str_eq(st_code_name(err.code), "fenced");
    cr_expect_eq(count(file, "SELECT COUNT(*) FROM users WHERE user_id = ?", 2), 0);
    st_store_close(a);
}

Test(store_reshard, rollback_keeps_the_old_layout)
{
    st_shard_cfg sa[2];
    st_store *a = open_store(sa, 50000, 0);
    st_err err;
    for (int64_t u = 1; u <= 60; u++)
        cr_assert_eq(add_user(a, u, &err), 0, "%s", err.msg);
    st_reshard_req q;
    memset(&q, 0, sizeof q);
    snprintf(q.op, sizeof q.op, "add_shard");
    snprintf(q.name, sizeof q.name, "c");
    q.hold_before_cutover = true;
    cr_assert_eq(st_reshard_start(a, &q, &err), 0, "%s", err.msg);
    cr_expect_str_eq(wait_state(a, "held"), "held");
    cr_expect(count("c.db", "SELECT COUNT(*) FROM users", 0) > 0, "copied before the cutover");
    cr_assert_eq(st_reshard_rollback(a, &err), 0, "%s", err.msg);
    cr_expect_str_eq(wait_state(a, "rolled_back"), "rolled_back");
    cr_expect_eq(count("c.db", "SELECT COUNT(*) FROM users", 0), 0);
    cr_expect_eq(count("a.db", "SELECT COUNT(*) FROM users", 0) +
                 count("b.db", "SELECT COUNT(*) FROM users", 0), 60);
    cr_expect_eq(st_store_map_version(a), 1);
    cr_expect_eq(st_reshard_rollback(a, &err), -1, "nothing left to roll back");
    st_store_close(a);
}

Test(store_reshard, map_json_round_trips_and_bad_maps_are_refused)
{
    static st_map m, back;
    memset(&m, 0, sizeof m);
    m.version = 3;
    m.strategy = ST_ROUTE_HASH;
    m.n = 2;
    snprintf(m.shards[0].name, sizeof m.shards[0].name, "s0");
    snprintf(m.shards[0].primary, sizeof m.shards[0].primary, "sqlite:/x/s0.db");
    m.shards[0].weight = 1.5;
    snprintf(m.shards[1].name, sizeof m.shards[1].name, "s1");
    snprintf(m.shards[1].primary, sizeof m.shards[1].primary, "postgresql://h/db");
    snprintf(m.shards[1].replicas[0], sizeof m.shards[1].replicas[0], "postgresql://r/db");
    m.shards[1].nreplicas = 1;
    m.shards[1].weight = 2;
    buf b;
    buf_init(&b);
    cr_assert_eq(st_map_to_json(&m, &b), 0);
    buf_append(&b, "", 1);
    st_err err;
    cr_assert_eq(st_map_parse(buf_head(&b), &back, &err), 0, "%s", err.msg);
    buf_free(&b);
    cr_expect_eq(back.version, 3);
    cr_expect_eq(back.n, 2);
    cr_expect_str_eq(back.shards[1].replicas[0], "postgresql://r/db");
    cr_expect_float_eq(back.shards[0].weight, 1.5, 1e-9);
    const char *bad[] = { "", "[]", "{\"version\":0,\"strategy\":\"hash\",\"shards\":[{}]}",
                          "{\"version\":1,\"strategy\":\"ring\",\"shards\":[]}",
                          "{\"version\":1,\"strategy\":\"hash\",\"shards\":[{\"name\":\"a\"}]}" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(st_map_parse(bad[i], &back, &err), -1, "refused: %s", bad[i]);
}
