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

typedef struct app_opts {
    const char *listen;        /* "127.0.0.1:8001" */
    const char *db;            /* store URL; NULL: SQLite under ./hscale-data */
    unsigned    workers;       /* 0: number of cores */
    const char *instance_id;   /* NULL: hostname-pid */
    const char *version;       /* NULL: the build's version */
} app_opts;

/* Serves until SIGTERM or SIGINT, then turns /health/ready to 503, lets
 * in-flight requests finish and returns 0. -1 with err on a start failure. */
int app_run(const app_opts *o, char *err, size_t errlen);

/* Fills the store with `users` users (ids 1..users), a few facilities and
 * surgeons each, and `cases` cases spread over them. Deterministic for a
 * given seed. */
int app_seed(const char *db, int64_t users, int64_t cases, uint64_t seed,
             char *err, size_t errlen);

#endif
