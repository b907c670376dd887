/* test_gw_api.c -- admin API model: pool views and validated edits that
 * either apply whole or refuse with the field named. */
#include <criterion/criterion.h>
#include <string.h>

#include "gateway/gw_api.h"

static gw_config C;
static gw_snap *S;

static void setup(void)
{
    const char *doc = "pools: [{name: web, backends: [{address: '127.0.0.1:9001'}, "
                      "{address: '127.0.0.1:9002', weight: 3}]}]\nroutes: [{prefix: /, pool: web}]\n";
    cfg_error err;
    memset(&C, 0, sizeof C);
    memset(&err, 0, sizeof err);
    cr_assert_eq(cfg_defaults(&gw_config_schema, &C, &err), 0);
    cr_assert_eq(cfg_load_text(&gw_config_schema, &C, doc, strlen(doc), "t", &err), 0, "%s", err.msg);
    char e[256];
    S = gw_snap_build(&C, NULL, e, sizeof e);
    cr_assert_not_null(S, "%s", e);
}

static void teardown(void)
{
    gw_snap_free(S);
    cfg_free(&gw_config_schema, &C);
}

TestSuite(gw_api, .init = setup, .fini = teardown);

Test(gw_api, pool_json)
{
    atomic_store(&S->pools[0].members[1]->inflight, 4);
    json_t *j = gw_api_pools_json(S, 1);
    char *txt = json_dumps(j, JSON_COMPACT);
    cr_assert(strstr(txt, "\"name\":\"web\""), "%s", txt);
    cr_assert(strstr(txt, "\"address\":\"127.0.0.1:9002\""), "%s", txt);
    cr_assert(strstr(txt, "\"weight\":3"), "%s", txt);
    cr_assert(strstr(txt, "\"in_flight\":4"), "%s", txt);
    cr_assert(strstr(txt, "\"state\":\"ready\""), "%s", txt);
    free(txt);
    json_decref(j);
}

static void refused(const char *body, int status, const char *part)
{
    gw_config out;
    gw_api_result r;
    cr_assert_eq(gw_api_add_backend(&C, "web", body, strlen(body), &out, &r), -1, "%s", body);
    cr_assert_eq(r.status, status, "%s -> %d %s", body, r.status, r.msg);
    cr_assert(strstr(r.msg, part), "want '%s' in '%s'", part, r.msg);
}

Test(gw_api, add_backend_refusals)
{
    refused("{", 400, "invalid JSON");
    refused("[1]", 400, "object");
    refused("{\"weight\": 2}", 400, "address");
    refused("{\"address\": \"nohost\"}", 400, "address");
    refused("{\"address\": \"127.0.0.1:9003\", \"weight\": 0}", 400, "weight");
    refused("{\"address\": \"127.0.0.1:9003\", \"weight\": \"2\"}", 400, "weight");
    refused("{\"address\": \"127.0.0.1:9003\", \"backup\": 1}", 400, "backup");
    refused("{\"address\": \"127.0.0.1:9001\"}", 409, "already");
    gw_config out;
    gw_api_result r;
    cr_assert_eq(gw_api_add_backend(&C, "nope", "{}", 2, &out, &r), -1);
    cr_assert_eq(r.status, 404);
    cr_assert_eq(C.pools[0].nbackends, 2);        /* nothing half-applied */
}

Test(gw_api, add_then_snapshot_keeps_members)
{
    gw_config out;
    gw_api_result r;
    const char *b = "{\"address\": \"127.0.0.1:9003\", \"weight\": 5, \"backup\": true}";
    cr_assert_eq(gw_api_add_backend(&C, "web", b, strlen(b), &out, &r), 0, "%s", r.msg);
    cr_assert_eq(r.status, 201);
    cr_assert_eq(out.pools[0].nbackends, 3);
    cr_assert_eq(out.pools[0].backends[2].weight, 5);
    cr_assert(out.pools[0].backends[2].backup);
    char e[256];
    gw_snap *n = gw_snap_build(&out, S, e, sizeof e);
    cr_assert_not_null(n, "%s", e);
    cr_assert_eq(n->pools[0].members[0], S->pools[0].members[0]);
    cr_assert_eq(n->pools[0].n, 3);
    gw_snap_free(n);
    cfg_free(&gw_config_schema, &out);
}

Test(gw_api, patch_weight_and_state)
{
    gw_config out;
    gw_api_result r;
    bool changed;
    const char *b = "{\"state\": \"draining\"}";
    cr_assert_eq(gw_api_patch_backend(&C, S, "web", "127.0.0.1:9001", b, strlen(b), &out, &changed, &r), 0);
    cr_assert_not(changed);
    cr_assert_eq(atomic_load(&S->pools[0].members[0]->state), GW_ST_DRAINING);
    b = "{\"weight\": 7}";
    cr_assert_eq(gw_api_patch_backend(&C, S, "web", "127.0.0.1:9002", b, strlen(b), &out, &changed, &r), 0);
    cr_assert(changed);
    cr_assert_eq(out.pools[0].backends[1].weight, 7);
    cfg_free(&gw_config_schema, &out);
    b = "{\"state\": \"sleeping\", \"weight\": 9}";
    cr_assert_eq(gw_api_patch_backend(&C, S, "web", "127.0.0.1:9002", b, strlen(b), &out, &changed, &r), -1);
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(r.msg, "state"), "%s", r.msg);
    cr_assert_eq(C.pools[0].backends[1].weight, 3);
    cr_assert_eq(gw_api_patch_backend(&C, S, "web", "127.0.0.1:9999", b, strlen(b), &out, &changed, &r), -1);
    cr_assert_eq(r.status, 404);
}

Test(gw_api, remove_backend)
{
    gw_config out;
    gw_api_result r;
    cr_assert_eq(gw_api_remove_backend(&C, "web", "127.0.0.1:9001", &out, &r), 0, "%s", r.msg);
    cr_assert_eq(out.pools[0].nbackends, 1);
    cr_assert_str_eq(out.pools[0].backends[0].address, "127.0.0.1:9002");
    cfg_free(&gw_config_schema, &out);
    cr_assert_eq(gw_api_remove_backend(&C, "web", "127.0.0.1:1", &out, &r), -1);
    cr_assert_eq(r.status, 404);
}

/* PUT /api/v1/routes re-loads the whole configuration through its JSON
 * form; with `admin` unset that form holds "admin":"", which used to be
 * refused, so every routes update failed (found by fuzz_gw_api). */
Test(gw_api, put_routes_without_admin)
{
    gw_config out;
    gw_api_result r;
    cr_assert_null(C.admin);
    const char *b = "{\"routes\": [{\"prefix\": \"/api\", \"methods\": [\"GET\"], \"pool\": \"web\"},"
                    " {\"prefix\": \"/\", \"split\": [{\"pool\": \"web\", \"weight\": 3}]}]}";
    cr_assert_eq(gw_api_put_routes(&C, b, strlen(b), &out, &r), 0, "%d %s", r.status, r.msg);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(out.nroutes, 2);
    cr_assert_str_eq(out.routes[0].prefix, "/api");
    cr_assert_null(out.admin);
    cfg_free(&gw_config_schema, &out);
    b = "{\"routes\": [{\"prefix\": \"/\", \"pool\": \"missing\"}]}";
    cr_assert_eq(gw_api_put_routes(&C, b, strlen(b), &out, &r), -1);
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(r.msg, "pool"), "%s", r.msg);
    cr_assert_eq(C.nroutes, 1);   /* nothing half-applied */
}
