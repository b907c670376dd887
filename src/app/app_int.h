/* app_int.h -- what the app's source files share; not a public API. */
#ifndef HSCALE_APP_APP_INT_H
#define HSCALE_APP_APP_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include "app/app.h"
#include "http/server.h"

typedef struct app {
    st_store   *store;
    char        instance_id[128];
    const char *version;
    time_t      started;
    const char *config_path;   /* re-read on SIGHUP (app_replicas.c); NULL: environment only */
    atomic_bool ready;      /* false while starting or draining */
    /* Some shard has replicas: a cache fill just after a write (on any
     * instance) must read the primary, or a lagging replica's old rows
     * would be cached for a whole TTL. fresh_window = max_replica_lag. */
    bool        replicas;
    uint64_t    fresh_window;
    /* The admin paths: a Bearer token, or (none set) only on a loopback listener. */
    const char *admin_token;
    bool        admin_loopback;
} app;

/* The columns of a case, in response order (case_id first: the cursor). */
#define APP_CASE_COLS                                                                  \
    "case_id, user_id, facility_id, surgeon_id, patient_first, patient_last,"          \
    " patient_dob, case_date, case_status, created_date, updated_at"
extern const char app_case_cols[];

/* Store error -> 503 + Retry-After / 409 / 400 / 500. */
void app_reply_store_error(http_ctx *c, const st_err *e);
/* Strict integer parameter in [lo, hi]: 0 (absent: *present false) or -1
 * after replying 400 naming it. */
int  app_int_param(http_ctx *c, const char *name, const char *v, int64_t lo,
                   int64_t hi, int64_t *out, bool *present);
/* One field of a request body (app_body.c). */
typedef enum { APP_F_INT, APP_F_TEXT } app_ftype;
typedef struct app_field {
    const char *name;
    app_ftype   type;
    bool        required;   /* must be present (unless partial) and never null */
    size_t      max_len;    /* text; 0 -> 200 bytes */
} app_field;

/* Validates the request body against fs: a JSON object with known keys
 * only, right types, required fields present. Fills vals in field order
 * (absent or null -> ST_NULL) and present[i] when given. partial (PUT):
 * required fields may be absent but not null. Returns the JSON root (the
 * text values point into it; json_decref when done) or NULL after replying
 * 400 naming the field. */
struct json_t;
struct json_t *app_parse_body(http_ctx *c, const app_field *fs, size_t nf, bool partial,
                              st_val *vals, bool *present);

/* user_id from the query: 0, or -1 after replying 400 (absent or bad). */
int  app_user_param(http_ctx *c, int64_t *uid);
/* "2026-11-23T00:50:00Z" into out[32]. */
void app_now(char *out);
/* Drops what a write to the user touched: every cached page, case, list
 * and profile of that user, by one generation bump (see app_cached). */
void app_invalidate(app *a, int64_t uid);
/* A user's write failed on a constraint: names the missing user (404) or
 * facility_id / surgeon_id (400, from vals = case fields from user_id on,
 * or NULL), else answers like app_reply_store_error. */
void app_reply_write_conflict(http_ctx *c, app *a, int64_t uid, const st_val *vals,
                              const st_err *e);
/* Cached read of a user's data: the key gets the user's generation so any
 * write of that user retires it. ttl 0 or no cache: load directly. */
int  app_cached(app *a, int64_t uid, const char *kind, const char *rest, uint64_t ttl,
                st_cache_loader *load, void *arg, buf *out, st_err *e);

/* A read of a user's rows for a loader: on the replica as usual, but on
 * the primary while app_cached is filling the cache within fresh_window
 * of a write of that user (by any instance sharing the cache). */
int  app_read(app *a, int64_t uid, const char *sql, const st_val *pv, size_t n, st_res **out,
              st_err *e);

/* /admin/replicas and the SIGHUP reload of replica sets (app_replicas.c). */
void app_routes_replicas(http_router *r, app *a);
/* Re-reads the config (a->config_path and the environment) and applies
 * each shard's replicas; -1 when the file does not load or a set was
 * refused (logged; the rest is applied). */
int  app_reload(app *a, const app_config *running);

/* Registers the list and write routes (app_write.c, app_users.c). */
void app_routes_write(http_router *r, app *a);
void app_routes_users(http_router *r, app *a);
/* /admin/shardmap and /admin/reshard... (app_admin.c). */
void app_routes_admin(http_router *r, app *a);

#endif
