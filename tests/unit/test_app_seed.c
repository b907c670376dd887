/* test_app_seed.c -- `hscale app seed`: counts, user placement, determinism
 * for a given seed, and that a failed reseed leaves no half-written user. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "app/app.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_app_seed.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static st_store *open_db(const char *url)
{
    st_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.url = (char *)url;
    cfg.migrate = true;
    st_store *s = NULL;
    st_err e;
    cr_assert_eq(st_store_open(&cfg, &s, &e), 0, "%s", e.msg);
    return s;
}

static int64_t scalar(st_store *s, const char *sql)
{
    st_res *r = NULL;
    st_err e;
    cr_assert_eq(st_query_all(s, ST_READ, sql, NULL, 0, &r, &e), 0, "%s: %s", sql, e.msg);
    cr_assert_eq(st_res_rows(r), 1);
    int64_t v = st_res_int(r, 0, 0);
    st_res_free(r);
    return v;
}

TestSuite(app_seed, .init = setup, .fini = teardown);

Test(app_seed, fills_counts_and_statuses)
{
    char url[128], err[256];
    snprintf(url, sizeof url, "sqlite:%s/a.db", dir);
    cr_assert_eq(app_seed(url, 10, 1003, 1, err, sizeof err), 0, "%s", err);
    st_store *s = open_db(url);
    cr_expect_eq(scalar(s, "SELECT COUNT(*) FROM users"), 10);
    cr_expect_eq(scalar(s, "SELECT COUNT(*) FROM cases"), 1003);
    cr_expect_eq(scalar(s, "SELECT COUNT(*) FROM facilities"), 30);
    cr_expect_eq(scalar(s, "SELECT COUNT(*) FROM surgeons"), 30);
    /* Cases are spread evenly: user 1 takes the remainder. */
    cr_expect_eq(scalar(s, "SELECT COUNT(*) FROM cases WHERE user_id = 1"), 101);
    cr_expect_eq(scalar(s, "SELECT COUNT(*) FROM cases WHERE user_id = 10"), 100);
    /* Statuses span 0..19 so /casefilter?status=10 has rows. */
    cr_expect_eq(scalar(s, "SELECT MIN(case_status) FROM cases"), 0);
    cr_expect_eq(scalar(s, "SELECT MAX(case_status) FROM cases"), 19);
    /* Every case points at its own user's facility. */
    cr_expect_eq(scalar(s, "SELECT COUNT(*) FROM cases c JOIN facilities f"
                           " ON f.facility_id = c.facility_id WHERE f.user_id <> c.user_id"), 0);
    st_store_close(s);
}

static int64_t fingerprint(const char *url)
{
    st_store *s = open_db(url);
    int64_t v = scalar(s, "SELECT SUM(case_id * (case_status + 1) + LENGTH(patient_first)"
                          " + LENGTH(patient_last) * 7 + LENGTH(case_date) * 13) FROM cases");
    st_store_close(s);
    return v;
}

Test(app_seed, deterministic_per_seed)
{
    char a[128], b[128], c[128], err[256];
    snprintf(a, sizeof a, "sqlite:%s/a.db", dir);
    snprintf(b, sizeof b, "sqlite:%s/b.db", dir);
    snprintf(c, sizeof c, "sqlite:%s/c.db", dir);
    cr_assert_eq(app_seed(a, 5, 500, 7, err, sizeof err), 0, "%s", err);
    cr_assert_eq(app_seed(b, 5, 500, 7, err, sizeof err), 0, "%s", err);
    cr_assert_eq(app_seed(c, 5, 500, 8, err, sizeof err), 0, "%s", err);
    cr_expect_eq(fingerprint(a), fingerprint(b));
    cr_expect_neq(fingerprint(a), fingerprint(c));
}

Test(app_seed, reseed_fails_cleanly)
{
    char url[128], err[256];
    snprintf(url, sizeof url, "sqlite:%s/a.db", dir);
    cr_assert_eq(app_seed(url, 3, 30, 1, err, sizeof err), 0, "%s", err);
    cr_assert_neq(app_seed(url, 3, 30, 1, err, sizeof err), 0);
    cr_expect_not_null(strstr(err, "user 1"), "error names the user: %s", err);
    st_store *s = open_db(url);
    cr_expect_eq(scalar(s, "SELECT COUNT(*) FROM cases"), 30);   /* nothing half-written */
    st_store_close(s);
}
