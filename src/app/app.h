/* app.h -- `hscale app`: the reference case-management API served on the
 * data layer (src/store). One http_server, one worker loop per core; every
 * handler is synchronous and blocks only its own worker on a query.
 *
 * Invariant: a response that reports success means the write committed;
 * a store that cannot answer gives 503 with Retry-After, never a partial
 * write (multi-statement writes go through st_tx). */
#ifndef HSCALE_APP_APP_H
#define HSCALE_APP_APP_H

#include <stddef.h>
#include <stdint.h>
#include "store/store.h"

/* The `app:` configuration section (app_config.c). */
typedef struct app_config {
    char       *listen;
    int         workers;
    char       *instance_id;
    uint64_t    max_body;        /* bytes */
    uint64_t    drain_timeout;   /* us */
    char       *admin_token;     /* bearer token of the admin paths; NULL: loopback listener only */
    st_config   store;
} app_config;

extern const cfg_schema app_config_schema;

/* defaults < file (its `app:` section; path may be NULL) < environment <
 * sets (pairs of key path and value, e.g. "app.listen", ADDR; a NULL value
 * is skipped; the list ends with a NULL key), then validation. -1 with
 * "file:line:col: key: what was expected" in err. */
int  app_config_load(const char *path, const char *const *sets, app_config *out, char *err,
                     size_t errlen);
void app_config_free(app_config *c);
void app_config_json(const app_config *c, buf *out);

typedef struct app_opts {
    const char *listen;        /* "127.0.0.1:8001" */
    const char *db;            /* store URL; NULL: SQLite under ./hscale-data */
    unsigned    workers;       /* 0: number of cores */
    const char *instance_id;   /* NULL: hostname-pid */
    const char *version;       /* NULL: the build's version */
    /* When set, the rest of the settings (store shards, pools, cache,
     * max_body); the fields above override it when set. NULL: defaults
     * and environment (app_config_load with no file). */
    const app_config *config;
    /* The file `config` came from: SIGHUP re-reads it and applies each
     * shard's replicas (app_admin.c). NULL: the environment only. */
    const char *config_path;
} app_opts;

/* Serves until SIGTERM or SIGINT, then turns /health/ready to 503, lets
 * in-flight requests finish and returns 0. SIGHUP reloads the replica sets.
 * -1 with err on a start failure. */
int app_run(const app_opts *o, char *err, size_t errlen);

/* Fills the store with `users` users (ids 1..users), a few facilities and
 * surgeons each, and `cases` cases spread over them. Deterministic for a
 * given seed. */
int app_seed(const char *db, int64_t users, int64_t cases, uint64_t seed,
             char *err, size_t errlen);
/* The same for a configured store (every shard gets its users). */
int app_seed_store(const st_config *cfg, int64_t users, int64_t cases, uint64_t seed,
                   char *err, size_t errlen);

#endif
