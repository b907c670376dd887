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
    atomic_bool ready;      /* false while starting or draining */
} app;

/* The columns of a case, in response order (case_id first: the cursor). */
extern const char app_case_cols[];

/* Store error -> 503 + Retry-After / 409 / 400 / 500. */
void app_reply_store_error(http_ctx *c, const st_err *e);
/* Strict integer parameter in [lo, hi]: 0 (absent: *present false) or -1
 * after replying 400 naming it. */
int  app_int_param(http_ctx *c, const char *name, const char *v, int64_t lo,
                   int64_t hi, int64_t *out, bool *present);
/* Registers the list and write routes (app_write.c). */
void app_routes_write(http_router *r, app *a);

#endif
