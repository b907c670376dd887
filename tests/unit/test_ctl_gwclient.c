/* test_ctl_gwclient.c -- the gateway runtime API client against a small
 * fake gateway built on http/server.h (a real HTTP peer on loopback) that
 * speaks the admin contract: register (201, 409, 400 naming the field),
 * PATCH weight/state, DELETE with and without ?drain=, GET pool, bearer
 * fg_token. Checks what went over the wire and that the gateway's own message
 * reaches the caller. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_instances.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

#include "ctl_fakegw.h"

static void setup(void)
{
    fakegw_start();
}

static void teardown(void)
{
    fakegw_stop();
}

TestSuite(ctl_gw, .init = setup, .fini = teardown);

static ctl_gw client(const char *tok)
{
    ctl_gw g;
    char url[64], err[256] = "";
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", fg_port);
    cr_assert_eq(ctl_gw_init(&g, url, tok, err, sizeof err), 0, "%s", err);
    g.timeout_ms = 2000;
    return g;
}

Test(ctl_gw, init_checks_url_and_token)
{
    ctl_gw g;
    char err[256] = "";
    cr_assert_eq(ctl_gw_init(&g, "127.0.0.1:8081", NULL, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(g.base, "http://127.0.0.1:8081");
    cr_assert_str_eq(g.auth, "");
    cr_assert_eq(ctl_gw_init(&g, "", NULL, err, sizeof err), -1);
    cr_assert(strstr(err, "admin URL"), "%s", err);
    cr_assert_eq(ctl_gw_init(&g, "http://127.0.0.1:1", "a\r\nX-Evil: 1", err, sizeof err), -1);
    cr_assert(strstr(err, "gateway_token"), "%s", err);
}

Test(ctl_gw, register_list_and_conflict)
{
    ctl_gw g = client(fg_token);
    char err[512] = "";
    cr_assert_eq(ctl_gw_register(&g, "app", "127.0.0.1:9001", 100, false, err, sizeof err), 0, "%s", err);
    json_t *j = json_loads(fg_last_body, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(j, "address")), "127.0.0.1:9001");
    cr_assert_eq(json_integer_value(json_object_get(j, "weight")), 100);
    cr_assert(json_is_false(json_object_get(j, "backup")));
    json_decref(j);
    cr_assert_eq(ctl_gw_register(&g, "app", "127.0.0.1:9002", 5, false, err, sizeof err), 0, "%s", err);
    /* Already there: not an error, but told apart. */
    cr_assert_eq(ctl_gw_register(&g, "app", "127.0.0.1:9001", 100, false, err, sizeof err), 1);

    ctl_gw_member m[4];
    size_t n = 0;
    cr_assert_eq(ctl_gw_members(&g, "app", m, 4, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(m[0].id, "127.0.0.1:9001");
    cr_assert_str_eq(m[0].state, "ready");
    cr_assert_eq(m[1].weight, 5);
    cr_assert(m[1].healthy);
    cr_assert_eq(m[1].total, 7);
    /* max smaller than the pool: n still tells the size. */
    cr_assert_eq(ctl_gw_members(&g, "app", m, 1, &n, err, sizeof err), 0);
    cr_assert_eq(n, 2);
}

Test(ctl_gw, errors_carry_the_gateways_message)
{
    ctl_gw g = client(fg_token);
    char err[512] = "";
    cr_assert_eq(ctl_gw_register(&g, "app", "127.0.0.1:9001", 0, false, err, sizeof err), -1);
    cr_assert(strstr(err, "register 127.0.0.1:9001 in pool app") && strstr(err, "400")
              && strstr(err, "weight: expected an integer 1..1000"), "%s", err);
    cr_assert_eq(ctl_gw_register(&g, "nopool", "127.0.0.1:9001", 1, false, err, sizeof err), -1);
    cr_assert(strstr(err, "404") && strstr(err, "no pool named 'nopool'"), "%s", err);
    ctl_gw bad = client("wrong");
    cr_assert_eq(ctl_gw_members(&bad, "app", NULL, 0, &(size_t){0}, err, sizeof err), -1);
    cr_assert(strstr(err, "401") && strstr(err, "bearer fg_token"), "%s", err);
}

Test(ctl_gw, unreachable_gateway)
{
    ctl_gw g;
    char err[512] = "";
    int free_port = sock_free_port();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", free_port);
    cr_assert_eq(ctl_gw_init(&g, url, NULL, err, sizeof err), 0);
    g.timeout_ms = 500;
    cr_assert_eq(ctl_gw_register(&g, "app", "127.0.0.1:1", 1, false, err, sizeof err), -1);
    cr_assert(strstr(err, "unreachable") && strstr(err, url), "%s", err);
    /* A drain tells "not reachable" (-2) from "refused" (-1). */
    cr_assert_eq(ctl_gw_drain(&g, "app", "127.0.0.1:1", 1000000, err, sizeof err), -2);
    cr_assert(strstr(err, "unreachable"), "%s", err);
}

Test(ctl_gw, weight_and_state)
{
    ctl_gw g = client(fg_token);
    char err[512] = "";
    cr_assert_eq(ctl_gw_register(&g, "app", "127.0.0.1:9001", 1, false, err, sizeof err), 0);
    cr_assert_eq(ctl_gw_set_weight(&g, "app", "127.0.0.1:9001", 40, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(fg_last_body, "{\"weight\":40}");
    cr_assert_eq(ctl_gw_set_state(&g, "app", "127.0.0.1:9001", "maint", err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(fg_last_body, "{\"state\":\"maint\"}");
    pthread_mutex_lock(&fg_mu);
    cr_assert_eq(fg_members[0].weight, 40);
    cr_assert_str_eq(fg_members[0].state, "maint");
    pthread_mutex_unlock(&fg_mu);
    cr_assert_eq(ctl_gw_set_weight(&g, "app", "127.0.0.1:7777", 1, err, sizeof err), -1);
    cr_assert(strstr(err, "no backend '127.0.0.1:7777'"), "%s", err);
}

Test(ctl_gw, drain_and_remove)
{
    ctl_gw g = client(fg_token);
    char err[512] = "";
    cr_assert_eq(ctl_gw_register(&g, "app", "127.0.0.1:9001", 1, false, err, sizeof err), 0);
    cr_assert_eq(ctl_gw_register(&g, "app", "127.0.0.1:9002", 1, false, err, sizeof err), 0);
    pthread_mutex_lock(&fg_mu);
    fg_members[0].in_flight = 3;
    pthread_mutex_unlock(&fg_mu);
    /* Busy member: 202, draining, the query carries the drain time. */
    cr_assert_eq(ctl_gw_drain(&g, "app", "127.0.0.1:9001", 30000000, err, sizeof err), 1, "%s", err);
    cr_assert_str_eq(fg_last_query, "30000ms");
    ctl_gw_member m[4];
    size_t n;
    cr_assert_eq(ctl_gw_members(&g, "app", m, 4, &n, err, sizeof err), 0);
    cr_assert_str_eq(m[0].state, "draining");
    cr_assert_eq(m[0].in_flight, 3);
    /* Idle member removed at once; without drain the query is absent. */
    cr_assert_eq(ctl_gw_drain(&g, "app", "127.0.0.1:9002", 0, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(fg_last_query, "");
    cr_assert_eq(ctl_gw_members(&g, "app", m, 4, &n, err, sizeof err), 0);
    cr_assert_eq(n, 1);
    /* A member already gone counts as removed; a missing pool does not. */
    cr_assert_eq(ctl_gw_drain(&g, "app", "127.0.0.1:9002", 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ctl_gw_drain(&g, "nopool", "127.0.0.1:9002", 0, err, sizeof err), -1);
    cr_assert(strstr(err, "no pool"), "%s", err);
    pthread_mutex_lock(&fg_mu);
    fg_fail_delete = true;
    pthread_mutex_unlock(&fg_mu);
    cr_assert_eq(ctl_gw_drain(&g, "app", "127.0.0.1:9001", 0, err, sizeof err), -1);
    cr_assert(strstr(err, "503 admin API busy"), "%s", err);
}
