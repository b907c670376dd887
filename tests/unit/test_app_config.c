/* test_app_config.c -- the `app:` section: defaults, a file with two
 * shards, environment over file, flag sets over environment, and errors
 * that name the file, line and key path; seeding a two-shard store keeps
 * every user's rows on one shard. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "app/app.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_app_config.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    unsetenv("HSCALE_APP_WORKERS");
    unsetenv("HSCALE_APP_LISTEN");
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(app_config, .init = setup, .fini = teardown);

static const char *write_file(const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/hscale.yaml", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

Test(app_config, defaults_without_a_file)
{
    app_config c;
    char err[512];
    cr_assert_eq(app_config_load(NULL, NULL, &c, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(c.listen, "127.0.0.1:8001");
    cr_expect_eq(c.workers, 0);
    cr_expect_eq(c.max_body, 64 * 1024);
    cr_expect_eq(c.store.cache.kind, ST_CACHE_LOCAL);
    cr_expect_eq(c.store.pool.size, 10);
    cr_expect(c.store.migrate);
    app_config_free(&c);
}

Test(app_config, file_env_and_sets_in_order)
{
    char text[512];
    snprintf(text, sizeof text,
             "app:\n  listen: 127.0.0.1:9100\n  workers: 3\n  store:\n"
             "    data_dir: %s/data\n    shards:\n      - name: a\n      - name: b\n"
             "        weight: 2\n", dir);
    const char *path = write_file(text);
    app_config c;
    char err[512];
    cr_assert_eq(app_config_load(path, NULL, &c, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(c.listen, "127.0.0.1:9100");
    cr_expect_eq(c.workers, 3);
    cr_assert_eq(c.store.nshards, 2);
    cr_expect_str_eq(c.store.shards[1].name, "b");
    cr_expect_float_eq(c.store.shards[1].weight, 2.0, 1e-9);
    app_config_free(&c);

    setenv("HSCALE_APP_WORKERS", "5", 1);
    cr_assert_eq(app_config_load(path, NULL, &c, err, sizeof err), 0, "%s", err);
    cr_expect_eq(c.workers, 5, "environment beats the file");
    app_config_free(&c);

    const char *sets[] = { "app.workers", "1", "app.listen", NULL, NULL, NULL };
    cr_assert_eq(app_config_load(path, sets, &c, err, sizeof err), 0, "%s", err);
    cr_expect_eq(c.workers, 1, "flags beat the environment");
    cr_expect_str_eq(c.listen, "127.0.0.1:9100", "a NULL flag value changes nothing");
    app_config_free(&c);
    unsetenv("HSCALE_APP_WORKERS");
}

Test(app_config, errors_name_file_line_and_key)
{
    app_config c;
    char err[512];
    const char *path = write_file("app:\n  listen: 127.0.0.1:1\n  workers: many\n");
    cr_assert_eq(app_config_load(path, NULL, &c, err, sizeof err), -1);
    cr_expect(strstr(err, "hscale.yaml:3") && strstr(err, "app.workers"), "%s", err);

    path = write_file("app:\n  store:\n    strategy: range\n");
    cr_assert_eq(app_config_load(path, NULL, &c, err, sizeof err), -1);
    cr_expect(strstr(err, "app.store.ranges"), "%s", err);

    path = write_file("app:\n  lisen: x\n");
    cr_assert_eq(app_config_load(path, NULL, &c, err, sizeof err), -1);
    cr_expect(strstr(err, "lisen"), "%s", err);

    const char *sets[] = { "app.store.url", "sqlite:/tmp/x.db", NULL, NULL };
    path = write_file("app:\n  store:\n    shards:\n      - name: a\n");
    cr_assert_eq(app_config_load(path, sets, &c, err, sizeof err), -1,
                 "url and shards together are refused");
    cr_expect(strstr(err, "url"), "%s", err);
}

static int64_t count(const char *url, const char *sql)
{
    st_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.url = (char *)url;
    st_store *s;
    st_err e;
    cr_assert_eq(st_store_open(&cfg, &s, &e), 0, "%s", e.msg);
    st_res *r;
    cr_assert_eq(st_query_shard(s, 0, ST_READ, sql, NULL, 0, &r, &e), 0, "%s", e.msg);
    int64_t n = st_res_int(r, 0, 0);
    st_res_free(r);
    st_store_close(s);
    return n;
}

Test(app_config, seed_two_shards_places_each_user_once)
{
    char text[512];
    snprintf(text, sizeof text,
             "app:\n  store:\n    data_dir: %s/data\n    cache:\n      kind: none\n"
             "    shards:\n      - name: a\n      - name: b\n", dir);
    const char *path = write_file(text);
    app_config c;
    char err[512];
    cr_assert_eq(app_config_load(path, NULL, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(app_seed_store(&c.store, 40, 400, 1, err, sizeof err), 0, "%s", err);
    app_config_free(&c);
    char ua[160], ub[160];
    snprintf(ua, sizeof ua, "sqlite:%s/data/a.db", dir);
    snprintf(ub, sizeof ub, "sqlite:%s/data/b.db", dir);
    int64_t na = count(ua, "SELECT count(*) FROM users");
    int64_t nb = count(ub, "SELECT count(*) FROM users");
    cr_expect_eq(na + nb, 40);
    cr_expect(na > 5 && nb > 5, "both shards get users (%lld, %lld)", (long long)na,
              (long long)nb);
    cr_expect_eq(count(ua, "SELECT count(*) FROM cases") + count(ub, "SELECT count(*) FROM cases"),
                 400);
    cr_expect_eq(count(ua, "SELECT count(*) FROM cases WHERE user_id NOT IN"
                           " (SELECT user_id FROM users)"), 0, "cases follow their user");
    cr_expect_eq(count(ub, "SELECT count(*) FROM cases WHERE user_id NOT IN"
                           " (SELECT user_id FROM users)"), 0, "cases follow their user");
}
