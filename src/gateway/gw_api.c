/* gw_api.c -- admin API views and edits (see gw_api.h for the contract).
 *
 * Bodies are parsed with jansson and checked field by field before
 * anything is copied, so the common refusals cost nothing; the edit itself
 * works on a deep copy of the configuration and is validated whole. */
#include "gateway/gw_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = { "ready", "draining", "maint", "down" };
static const char *const algo_names[] = { "round_robin", "least_conn", "p2c", "hash",
                                          "least_request" };

const char *gw_state_name(gw_state st)
{
    return (unsigned)st < 4 ? state_names[st] : "unknown";
}

int gw_state_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, state_names[i]) == 0)
            return i;
    return -1;
}

json_t *gw_api_pool_json(const gw_snap *s, int pi, uint64_t now_us)
{
    const gw_pool *p = &s->pools[pi];
    json_t *members = json_array();
    for (uint32_t i = 0; i < p->n; i++) {
        const gw_member *m = p->members[i];
        uint64_t ej = atomic_load(&m->ejected_until_us);
        json_array_append_new(members, json_pack(
            "{s:s, s:s, s:i, s:b, s:s, s:b, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:f, s:b}",
            "id", m->name, "address", m->name,
            "weight", (int)atomic_load(&m->weight), "backup", m->backup,
            "state", gw_state_name((gw_state)atomic_load(&m->state)),
            "healthy", atomic_load(&m->healthy), "ejected", ej > now_us,
            "slow", atomic_load(&m->slow),
            "in_flight", (json_int_t)atomic_load(&m->inflight),
            "tunnels", (json_int_t)atomic_load(&m->tunnels),
            "total", (json_int_t)atomic_load(&m->total),
            "ejections", (json_int_t)atomic_load(&m->ejections),
            "slow_ejections", (json_int_t)atomic_load(&m->slow_ejections),
            "latency_ms", (double)atomic_load(&m->ewma_ns) / 1e6,
            "restored", atomic_load(&m->restored)));
    }
    return json_pack("{s:s, s:s, s:b, s:o}", "name", p->name, "algorithm",
                     algo_names[p->algo], "tls", p->tls != NULL, "members", members);
}

json_t *gw_api_pools_json(const gw_snap *s, uint64_t now_us)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < s->npools; i++)
        json_array_append_new(arr, gw_api_pool_json(s, (int)i, now_us));
    return json_pack("{s:o}", "pools", arr);
}

static int fail(gw_api_result *res, int status, const char *fmt, const char *arg)
{
    res->status = status;
    snprintf(res->msg, sizeof res->msg, fmt, arg);
    return -1;
}

static json_t *parse_object(const char *body, size_t len, gw_api_result *res)
{
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    if (!j) {
        char m[200];
        snprintf(m, sizeof m, "line %d column %d: %s", je.line, je.column, je.text);
        fail(res, 400, "body: invalid JSON at %s", m);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        fail(res, 400, "body: expected a JSON object%s", "");
        return NULL;
    }
    return j;
}

/* Weight from JSON: absent leaves *w alone. */
static int get_weight(json_t *j, int *w, gw_api_result *res)
{
    json_t *v = json_object_get(j, "weight");
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000)
        return fail(res, 400, "weight: expected an integer 1..1000%s", "");
    *w = (int)json_integer_value(v);
    return 0;
}

int gw_api_find_backend(const gw_pool_cfg *p, const char *id)
{
    sock_addr want, a;
    char e[128];
    if (sock_addr_parse(id, &want, e, sizeof e) < 0)
        return -1;
    for (size_t i = 0; i < p->nbackends; i++)
        if (sock_addr_parse(p->backends[i].address, &a, e, sizeof e) == 0
            && sock_addr_equal(&a, &want))
            return (int)i;
    return -1;
}

static int copy_cfg(const gw_config *cur, gw_config *out, gw_api_result *res)
{
    memset(out, 0, sizeof *out);
    if (cfg_copy(&gw_config_schema, out, cur) < 0)
        return fail(res, 500, "out of memory%s", "");
    return 0;
}

static int validate(gw_config *out, gw_api_result *res, int ok_status)
{
    cfg_error ce;
    memset(&ce, 0, sizeof ce);
    if (cfg_validate(&gw_config_schema, out, &ce) < 0) {
        char m[400];
        cfg_error_format(&ce, m, sizeof m);
        cfg_free(&gw_config_schema, out);
        return fail(res, 400, "%s", m);
    }
    res->status = ok_status;
    res->msg[0] = '\0';
    return 0;
}

int gw_api_add_backend(const gw_config *cur, const char *pool, const char *body, size_t len,
                       gw_config *out, gw_api_result *res)
{
    int pi = gw_config_find_pool(cur, pool);
    if (pi < 0)
        return fail(res, 404, "pool: no pool named '%s'", pool);
    json_t *j = parse_object(body, len, res);
    if (!j)
        return -1;
    json_t *addr = json_object_get(j, "address");
    json_t *backup = json_object_get(j, "backup");
    int weight = 1;
    sock_addr a;
    char e[128];
    if (!json_is_string(addr)) {
        json_decref(j);
        return fail(res, 400, "address: expected a \"host:port\" string%s", "");
    }
    if (sock_addr_parse(json_string_value(addr), &a, e, sizeof e) < 0) {
        json_decref(j);
        return fail(res, 400, "address: %s", e);
    }
    if (backup && !json_is_boolean(backup)) {
        json_decref(j);
        return fail(res, 400, "backup: expected true or false%s", "");
    }
    if (get_weight(j, &weight, res) < 0) {
        json_decref(j);
        return -1;
    }
    if (gw_api_find_backend(&cur->pools[pi], json_string_value(addr)) >= 0) {
        int rc = fail(res, 409, "address: '%s' is already in the pool", json_string_value(addr));
        json_decref(j);
        return rc;
    }
    if (copy_cfg(cur, out, res) < 0) {
        json_decref(j);
        return -1;
    }
    gw_pool_cfg *p = &out->pools[pi];
    gw_backend_cfg *nb = realloc(p->backends, (p->nbackends + 1) * sizeof *nb);
    char *s = strdup(json_string_value(addr));
    if (!nb || !s) {
        free(s);
        if (nb)
            p->backends = nb;
        cfg_free(&gw_config_schema, out);
        json_decref(j);
        return fail(res, 500, "out of memory%s", "");
    }
    p->backends = nb;
    nb[p->nbackends].address = s;
    nb[p->nbackends].weight = weight;
    nb[p->nbackends].backup = backup && json_is_true(backup);
    p->nbackends++;
    json_decref(j);
    return validate(out, res, 201);
}

int gw_api_patch_backend(const gw_config *cur, const gw_snap *s, const char *pool,
                         const char *id, const char *body, size_t len,
                         gw_config *out, bool *changed_cfg, gw_api_result *res)
{
    *changed_cfg = false;
    int pi = gw_config_find_pool(cur, pool);
    int spi = gw_snap_find_pool(s, pool);
    if (pi < 0 || spi < 0)
        return fail(res, 404, "pool: no pool named '%s'", pool);
    int bi = gw_api_find_backend(&cur->pools[pi], id);
    if (bi < 0)
        return fail(res, 404, "backend: no backend '%s' in this pool", id);
    json_t *j = parse_object(body, len, res);
    if (!j)
        return -1;
    int weight = -1, st = -1;
    json_t *jst = json_object_get(j, "state");
    if (jst && (!json_is_string(jst) || (st = gw_state_parse(json_string_value(jst))) < 0)) {
        json_decref(j);
        return fail(res, 400, "state: expected ready, draining, maint or down%s", "");
    }
    if (get_weight(j, &weight, res) < 0) {
        json_decref(j);
        return -1;
    }
    json_decref(j);
    if (weight < 0 && st < 0)
        return fail(res, 400, "body: expected weight and/or state%s", "");
    /* Everything is checked: apply. The state goes into the live member. */
    if (weight >= 0) {
        if (copy_cfg(cur, out, res) < 0)
            return -1;
        out->pools[pi].backends[bi].weight = weight;
        if (validate(out, res, 200) < 0)
            return -1;
        *changed_cfg = true;
    }
    if (st >= 0) {
        const gw_pool *p = &s->pools[spi];
        sock_addr want;
        char e[128];
        sock_addr_parse(id, &want, e, sizeof e);
        for (uint32_t i = 0; i < p->n; i++)
            if (sock_addr_equal(&p->members[i]->addr, &want)) {
                int old = atomic_exchange(&p->members[i]->state, st);
                /* Back to ready: ramp up through slow start. */
                if (st == GW_ST_READY && old != GW_ST_READY)
                    atomic_store(&p->members[i]->up_since_us, ev_monotonic_us());
            }
    }
    res->status = 200;
    res->msg[0] = '\0';
    return 0;
}

int gw_api_remove_backend(const gw_config *cur, const char *pool, const char *id,
                          gw_config *out, gw_api_result *res)
{
    int pi = gw_config_find_pool(cur, pool);
    if (pi < 0)
        return fail(res, 404, "pool: no pool named '%s'", pool);
    int bi = gw_api_find_backend(&cur->pools[pi], id);
    if (bi < 0)
        return fail(res, 404, "backend: no backend '%s' in this pool", id);
    if (copy_cfg(cur, out, res) < 0)
        return -1;
    gw_pool_cfg *p = &out->pools[pi];
    free(p->backends[bi].address);
    memmove(&p->backends[bi], &p->backends[bi + 1],
            (p->nbackends - (size_t)bi - 1) * sizeof *p->backends);
    p->nbackends--;
    return validate(out, res, 200);
}

/* The configuration as a jansson object (through its own JSON form, so
 * the API shows exactly the keys a config file takes). */
static json_t *config_json(const gw_config *cur)
{
    buf b;
    buf_init(&b);
    cfg_to_json(&gw_config_schema, cur, &b);
    json_t *j = json_loadb(buf_head(&b), b.len, 0, NULL);
    buf_free(&b);
    return j;
}

json_t *gw_api_routes_json(const gw_config *cur)
{
    json_t *full = config_json(cur);
    json_t *routes = full ? json_incref(json_object_get(full, "routes")) : NULL;
    json_decref(full);
    return json_pack("{s:o}", "routes", routes ? routes : json_array());
}

int gw_api_put_routes(const gw_config *cur, const char *body, size_t len,
                      gw_config *out, gw_api_result *res)
{
    json_t *j = parse_object(body, len, res);
    if (!j)
        return -1;
    json_t *routes = json_object_get(j, "routes");
    if (!json_is_array(routes) || json_array_size(routes) == 0) {
        json_decref(j);
        return fail(res, 400, "routes: expected a non-empty array of routes%s", "");
    }
    json_t *full = config_json(cur);
    if (!full) {
        json_decref(j);
        return fail(res, 500, "out of memory%s", "");
    }
    json_object_set(full, "routes", routes);
    json_decref(j);
    char *text = json_dumps(full, JSON_COMPACT);
    json_decref(full);
    if (!text)
        return fail(res, 500, "out of memory%s", "");
    /* Loaded whole and validated whole: a route naming a missing pool or a
     * bad split refuses the request and nothing changes. */
    cfg_error ce;
    memset(&ce, 0, sizeof ce);
    memset(out, 0, sizeof *out);
    int rc = cfg_defaults(&gw_config_schema, out, &ce);
    if (rc == 0)
        rc = cfg_load_text(&gw_config_schema, out, text, strlen(text), "body", &ce);
    free(text);
    if (rc < 0) {
        char m[400];
        cfg_error_format(&ce, m, sizeof m);
        cfg_free(&gw_config_schema, out);
        return fail(res, 400, "%s", m);
    }
    return validate(out, res, 200);
}
