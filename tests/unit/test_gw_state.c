/* test_gw_state.c -- snapshots (member reuse across rebuilds), route
 * matching and pool choice, and epoch-based reclamation. */
#include <criterion/criterion.h>
#include <string.h>

#include "gateway/gw_state.h"

static void load(gw_config *c, const char *doc)
{
    cfg_error err;
    memset(c, 0, sizeof *c);
    memset(&err, 0, sizeof err);
    cr_assert_eq(cfg_defaults(&gw_config_schema, c, &err), 0);
    int rc = cfg_load_text(&gw_config_schema, c, doc, strlen(doc), "t", &err);
    if (rc == 0)
        rc = cfg_validate(&gw_config_schema, c, &err);
    char msg[512];
    cfg_error_format(&err, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s", msg);
}

static const char *DOC =
    "rate_limits: [{name: api, limit: 10, period: 1s}]\n"
    "pools:\n"
    "  - {name: rw, backends: [{address: '127.0.0.1:9001'}, {address: '127.0.0.1:9002', weight: 2}]}\n"
    "  - {name: ro, algorithm: hash, hash_on: query, hash_key: user_id, backends: [{address: '127.0.0.1:9003'}]}\n"
    "  - {name: canary, backends: [{address: '127.0.0.1:9004'}]}\n"
    "routes:\n"
    "  - {prefix: /admin, host: admin.example, pool: rw}\n"
    "  - {prefix: /api, read_pool: ro, write_pool: rw, rate_limit: api}\n"
    "  - {prefix: /upload, methods: [POST, put], pool: rw, retry_unsafe: true}\n"
    "  - {prefix: /, split: [{pool: rw, weight: 90}, {pool: canary, weight: 10}]}\n";

Test(gw_state, routes_match_and_choose_pools)
{
    gw_config c;
    load(&c, DOC);
    char err[256] = "";
    gw_snap *s = gw_snap_build(&c, NULL, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cfg_free(&gw_config_schema, &c);       /* the snapshot owns its copy */

    cr_assert_eq(gw_route_match(s, HTTP_GET, "/admin/x", 8, "admin.example:8080", 18), 0);
    cr_assert_eq(gw_route_match(s, HTTP_GET, "/admin/x", 8, "other", 5), 3);
    cr_assert_eq(gw_route_match(s, HTTP_GET, "/api", 4, "h", 1), 1);
    cr_assert_eq(gw_route_match(s, HTTP_GET, "/api/cases", 10, "h", 1), 1);
    cr_assert_eq(gw_route_match(s, HTTP_GET, "/apix", 5, "h", 1), 3);  /* not a path prefix */
    cr_assert_eq(gw_route_match(s, HTTP_GET, "/upload/1", 9, "h", 1), 3);
    cr_assert_eq(gw_route_match(s, HTTP_PUT, "/upload/1", 9, "h", 1), 2);

    const gw_route *api = &s->routes[1];
    cr_assert_eq(gw_route_pool(api, HTTP_GET, 0), 1);
    cr_assert_eq(gw_route_pool(api, HTTP_HEAD, 0), 1);
    cr_assert_eq(gw_route_pool(api, HTTP_POST, 0), 0);
    cr_assert_eq(api->rl_class, 0);
    cr_assert_eq(s->rl[0].limit, 10);

    int canary = 0;
    for (uint64_t x = 0; x < 1000; x++)
        canary += gw_route_pool(&s->routes[3], HTTP_GET, x * 7919) == 2;
    cr_assert_eq(canary, 100);

    cr_assert(gw_method_retryable(api, HTTP_GET));
    cr_assert_not(gw_method_retryable(api, HTTP_PUT));
    cr_assert_not(gw_method_retryable(api, HTTP_POST));
    cr_assert(gw_method_retryable(&s->routes[2], HTTP_PUT));
    cr_assert_not(gw_method_retryable(&s->routes[2], HTTP_POST));

    cr_assert_eq(s->pools[1].algo, GW_ALGO_HASH);
    cr_assert_gt(s->pools[1].nring, 0);
    gw_snap_free(s);
}

Test(gw_state, rebuild_keeps_members_and_counters)
{
    gw_config c;
    load(&c, DOC);
    char err[256] = "";
    gw_snap *a = gw_snap_build(&c, NULL, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    cfg_free(&gw_config_schema, &c);
    gw_member *m2 = a->pools[0].members[1];
    atomic_store(&m2->inflight, 7);

    /* weight change on 9002, 9001 removed, 9005 added */
    load(&c, "pools: [{name: rw, backends: [{address: '127.0.0.1:9002', weight: 5}, "
             "{address: '127.0.0.1:9005'}]}]\nroutes: [{prefix: /, pool: rw}]\n");
    gw_snap *b = gw_snap_build(&c, a, err, sizeof err);
    cr_assert_not_null(b, "%s", err);
    cfg_free(&gw_config_schema, &c);
    cr_assert_eq(b->gen, 2);
    cr_assert_eq(b->pools[0].members[0], m2);
    cr_assert_eq(atomic_load(&m2->inflight), 7);
    cr_assert_eq(atomic_load(&m2->weight), 5);
    cr_assert_eq(atomic_load(&m2->refs), 2);
    gw_snap_free(a);
    cr_assert_eq(atomic_load(&m2->refs), 1);
    gw_snap_free(b);
}

Test(gw_state, build_errors_are_named)
{
    gw_config c;
    load(&c, "pools: [{name: p, backends: [{address: '127.0.0.1:1'}, {address: '127.0.0.1:1'}]}]\n");
    char err[256] = "";
    cr_assert_null(gw_snap_build(&c, NULL, err, sizeof err));
    cr_assert(strstr(err, "pools[0].backends[1].address: duplicate"), "%s", err);
    cfg_free(&gw_config_schema, &c);
    load(&c, "pools: [{name: p}]\nroutes: [{prefix: /, pool: p, methods: [FETCH]}]\n");
    cr_assert_null(gw_snap_build(&c, NULL, err, sizeof err));
    cr_assert(strstr(err, "routes[0].methods[0]"), "%s", err);
    cfg_free(&gw_config_schema, &c);
    /* An https pool's CA file is loaded with the snapshot: a bad one is
     * refused by the reload that names it. */
    load(&c, "pools: [{name: p}, {name: s, tls: true, tls_ca_file: /nonexistent/ca.pem}]\n");
    cr_assert_null(gw_snap_build(&c, NULL, err, sizeof err));
    cr_assert(strstr(err, "pools[1].tls_ca_file: cannot load '/nonexistent/ca.pem'"), "%s", err);
    cfg_free(&gw_config_schema, &c);
}

Test(gw_state, https_pool_has_a_client_context_plain_pool_none)
{
    gw_config c;
    load(&c, "pools: [{name: p}, {name: s, tls: true, tls_verify: false, tls_server_name: api.internal}]\n");
    char err[256] = "";
    gw_snap *s = gw_snap_build(&c, NULL, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cr_assert_null(s->pools[0].tls);
    cr_assert_not_null(s->pools[1].tls);
    gw_snap_free(s);
    cfg_free(&gw_config_schema, &c);
}

Test(gw_state, rcu_reclaims_only_after_every_worker_moves)
{
    gw_config c;
    load(&c, DOC);
    char err[256];
    gw_snap *a = gw_snap_build(&c, NULL, err, sizeof err);
    gw_snap *b = gw_snap_build(&c, a, err, sizeof err);
    cfg_free(&gw_config_schema, &c);
    gw_rcu r;
    gw_rcu_init(&r, 2, a);
    cr_assert_eq(gw_rcu_read(&r), a);
    cr_assert_eq(gw_rcu_publish(&r, b), 0);
    cr_assert_eq(gw_rcu_read(&r), b);
    cr_assert_eq(gw_rcu_reclaim(&r), 1);     /* nobody moved yet */
    gw_rcu_quiescent(&r, 0);
    cr_assert_eq(gw_rcu_reclaim(&r), 1);     /* worker 1 may still hold a */
    gw_rcu_quiescent(&r, 1);
    cr_assert_eq(gw_rcu_reclaim(&r), 0);     /* a freed (ASan checks) */
    gw_rcu_destroy(&r);
}
