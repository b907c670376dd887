/* fuzz_gw_api.c -- libFuzzer target for the gateway runtime API's body
 * parsers: gw_api_add_backend, gw_api_patch_backend and gw_api_put_routes,
 * against a fixed configuration built with gw_config_from_backends (pool
 * "default" with two backends, route "/"). The first byte picks the call,
 * the second the pool and backend id; the rest is the body.
 *
 * Beyond "no crash": the live configuration is never touched (its JSON is
 * the same after every call, accepted or refused); the return code and the
 * HTTP status agree; a refusal carries a message that names a field
 * ("weight: ...", "body: ..."); an accepted edit yields a configuration
 * that validates, survives the JSON round trip and builds the snapshot the
 * admin listener publishes next (or is refused there naming the route
 * key); and the edit did what it says: one more backend, the weight sent,
 * or exactly the routes sent. Bodies go through the listener's guard
 * first: one nested deeper than its cap never reaches the parsers, and the
 * guard's depth scan agrees with jansson on every body jansson reads. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gw_api.h"

#include "fuzz_body_guard.h"
#include "fuzz_resolver.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static gw_config C;
static gw_snap  *S;
static buf       before;

static void init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    char *backends[] = { "127.0.0.1:9001", "127.0.0.1:9002" };
    cfg_error e;
    memset(&e, 0, sizeof e);
    CHECK(cfg_defaults(&gw_config_schema, &C, &e) == 0);
    CHECK(gw_config_from_backends(&C, backends, 2, &e) == 0);
    char err[256];
    S = gw_snap_build(&C, NULL, err, sizeof err);
    CHECK(S);
    buf_init(&before);
    cfg_to_json(&gw_config_schema, &C, &before);
}

static bool same_json(const buf *a, const gw_config *c)
{
    buf b;
    buf_init(&b);
    cfg_to_json(&gw_config_schema, c, &b);
    bool eq = a->len == b.len && memcmp(buf_head(a), buf_head(&b), a->len) == 0;
    buf_free(&b);
    return eq;
}

/* An accepted configuration: valid, round-trips through JSON, and either
 * builds a snapshot or is refused by the build with the key named (a
 * method name or a split past GW_MAX_SPLIT is only checked there; the
 * admin listener answers that refusal with a 400). */
static void accepted(gw_config *out)
{
    cfg_error e;
    memset(&e, 0, sizeof e);
    CHECK(cfg_validate(&gw_config_schema, out, &e) == 0);
    char err[256];
    err[0] = '\0';
    gw_snap *s = gw_snap_build(out, S, err, sizeof err);
    if (s)
        gw_snap_free(s);
    else
        CHECK(!strncmp(err, "routes[", 7) && strstr(err, "]: "));
    buf j;
    buf_init(&j);
    cfg_to_json(&gw_config_schema, out, &j);
    gw_config back;
    memset(&back, 0, sizeof back);
    CHECK(cfg_defaults(&gw_config_schema, &back, &e) == 0);
    CHECK(cfg_load_text(&gw_config_schema, &back, buf_head(&j), j.len, "json", &e) == 0);
    CHECK(cfg_validate(&gw_config_schema, &back, &e) == 0);
    CHECK(same_json(&j, &back));
    cfg_free(&gw_config_schema, &back);
    buf_free(&j);
}

static void refused(const gw_api_result *r)
{
    CHECK(r->status == 400 || r->status == 404 || r->status == 409 || r->status == 500);
    CHECK(memchr(r->msg, '\0', sizeof r->msg));
    const char *colon = strchr(r->msg, ':');
    CHECK(colon && colon > r->msg);   /* "field: what was expected" */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size < 2)
        return 0;
    static const char *const pools[] = { "default", "nope" };
    static const char *const ids[] = { "127.0.0.1:9001", "127.0.0.1:9002", "localhost:9002",
                                       "127.0.0.1:9999", "bad" };
    const char *pool = pools[(data[1] >> 7) & 1];
    const char *id = ids[(data[1] & 0x7f) % 5];
    size_t len = size - 2;
    char *body = malloc(len ? len : 1);   /* exact copy: no terminator to lean on */
    CHECK(body);
    memcpy(body, data + 2, len);
    if (!guard_passes(body, len)) {
        free(body);
        return 0;
    }

    gw_config out;
    memset(&out, 0, sizeof out);
    gw_api_result r;
    memset(&r, 0, sizeof r);
    int rc;
    switch (data[0] % 3) {
    case 0:
        rc = gw_api_add_backend(&C, pool, body, len, &out, &r);
        CHECK(rc == 0 || rc == -1);
        if (rc == 0) {
            CHECK(r.status == 201);
            CHECK(out.npools == C.npools && out.pools[0].nbackends == C.pools[0].nbackends + 1);
            accepted(&out);
            cfg_free(&gw_config_schema, &out);
        } else {
            refused(&r);
        }
        break;
    case 1: {
        bool changed = true;
        rc = gw_api_patch_backend(&C, S, pool, id, body, len, &out, &changed, &r);
        CHECK(rc == 0 || rc == -1);
        if (rc == 0) {
            CHECK(r.status == 200);
            if (changed) {
                /* the weight sent, on the backend named (9001 first, 9002 second) */
                json_t *j = json_loadb(body, len, 0, NULL);
                size_t bi = strstr(id, "9001") ? 0 : 1;
                CHECK(j && out.pools[0].backends[bi].weight
                               == json_integer_value(json_object_get(j, "weight")));
                json_decref(j);
                accepted(&out);
                cfg_free(&gw_config_schema, &out);
            }
        } else {
            CHECK(!changed);
            refused(&r);
        }
        break;
    }
    default:
        rc = gw_api_put_routes(&C, body, len, &out, &r);
        CHECK(rc == 0 || rc == -1);
        if (rc == 0) {
            CHECK(r.status == 200);
            json_t *j = json_loadb(body, len, 0, NULL);
            CHECK(j);
            CHECK(out.nroutes == json_array_size(json_object_get(j, "routes")));
            json_decref(j);
            CHECK(out.npools == C.npools);
            accepted(&out);
            cfg_free(&gw_config_schema, &out);
        } else {
            refused(&r);
        }
        break;
    }
    CHECK(same_json(&before, &C));   /* the live configuration is untouched */
    free(body);
    return 0;
}
