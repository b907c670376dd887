/* gw_api.h -- the admin API's model layer: JSON views of a snapshot and
 * validated edits that yield a new configuration. Kept apart from the HTTP
 * listener so every answer and every refusal can be tested without one.
 * Internal to src/gateway.
 *
 * Edits never touch the live configuration: they copy it, change the copy
 * and validate the whole, so a refused request leaves nothing half-applied
 * (the caller builds a snapshot from `out` and publishes it). */
#ifndef HSCALE_GATEWAY_GW_API_H
#define HSCALE_GATEWAY_GW_API_H

#include <jansson.h>

#include "core/ev.h"
#include "gateway/gw_state.h"

const char *gw_state_name(gw_state st);
/* -1 for an unknown name. */
int         gw_state_parse(const char *name);

/* Index of the backend of p whose address is `id` ("host:port", compared
 * as addresses), or -1. */
int gw_api_find_backend(const gw_pool_cfg *p, const char *id);

/* {"name":..,"algorithm":..,"members":[{"id","address","weight","backup",
 *  "state","healthy","ejected","in_flight","total"}]} */
json_t *gw_api_pool_json(const gw_snap *s, int pool, uint64_t now_us);
/* {"pools":[...]} */
json_t *gw_api_pools_json(const gw_snap *s, uint64_t now_us);

/* The outcome of an edit: HTTP status and, on failure, a message naming
 * the field ("weight: expected an integer 1..1000, got \"x\""). */
typedef struct gw_api_result {
    int  status;
    char msg[512];
} gw_api_result;

/* POST /api/v1/pools/{pool}/backends with {"address":..,"weight":..,"backup":..}.
 * On success (201) *out holds the new configuration (caller cfg_frees). */
int gw_api_add_backend(const gw_config *cur, const char *pool, const char *body, size_t len,
                       gw_config *out, gw_api_result *res);
/* PATCH .../backends/{id} with {"weight":..} and/or {"state":..}. A weight
 * change yields a new configuration in *out (*changed_cfg true); a state
 * change is stored into the live member, which snapshots share. */
int gw_api_patch_backend(const gw_config *cur, const gw_snap *s, const char *pool,
                         const char *id, const char *body, size_t len,
                         gw_config *out, bool *changed_cfg, gw_api_result *res);
/* Removes backend id from pool (the last step of a drain). */
int gw_api_remove_backend(const gw_config *cur, const char *pool, const char *id,
                          gw_config *out, gw_api_result *res);

/* GET /api/v1/routes: {"routes":[...]} in config-file form. */
json_t *gw_api_routes_json(const gw_config *cur);
/* PUT /api/v1/routes with {"routes":[...]}: replaces every route (and with
 * them the split weights between pools) at once. 200 with *out filled. */
int gw_api_put_routes(const gw_config *cur, const char *body, size_t len,
                      gw_config *out, gw_api_result *res);

#endif
