/* store_int.h -- what the files of src/store share and nobody else sees:
 * the driver vtable, the connection struct and the result builder.
 *
 * A driver turns one URL into one connection handle and runs statements on
 * it; everything above (pools, routing, caching) is driver-agnostic. A
 * driver reports a lost server as ST_EUNAVAIL, which marks the connection
 * broken so its pool closes it instead of reusing it. */
#ifndef HSCALE_STORE_STORE_INT_H
#define HSCALE_STORE_STORE_INT_H

#include "store/store.h"

struct st_driver {
    const char *name;
    int  (*open)(const char *url, void **h, st_err *err);
    void (*close)(void *h);
    int  (*exec)(void *h, const char *sql, const st_val *p, size_t n, st_res **out, st_err *err);
    /* Replication lag in seconds of a replica; NULL when the driver has none. */
    int  (*lag)(void *h, double *lag_s, st_err *err);
    /* Column type of a 64-bit primary key that aliases the row id. */
    const char *id_type;
};

struct st_conn {
    const st_driver *drv;
    void            *h;
    st_pool         *pool;
    uint64_t         created_us;
    uint64_t         last_used_us;
    bool             broken;
    st_conn         *next;      /* idle list */
};

/* Closes every idle connection of a pool (its server went away: they are
 * all dead, and handing them out would fail one request each). */
void st_pool_drop_idle(st_pool *p);

/* Result builder, for drivers. */
st_res *st_res_new(size_t cols);
int     st_res_set_name(st_res *r, size_t col, const char *name);
int     st_res_add_row(st_res *r);
/* Sets a cell of the last row. */
int     st_res_put(st_res *r, size_t col, st_type t, int64_t i, const char *s, size_t len);
void    st_res_set_changes(st_res *r, int64_t n);
/* dst gets src's rows (columns must match in count) and changes. */
int     st_res_append(st_res *dst, const st_res *src);

/* Prepends "prefix: " to err->msg (truncating), for context. */
void     st_err_prefix(st_err *err, const char *prefix);
uint64_t st_now_us(void);        /* CLOCK_MONOTONIC */
/* Copies url into out with any password replaced by "***". */
void     st_url_redact(const char *url, char *out, size_t outlen);

/* Redis client with a circuit breaker (cache_redis.c). get: 1 hit, 0 miss,
 * -1 when Redis failed or the breaker is open (callers treat it as a miss). */
typedef struct st_redis st_redis;
st_redis *st_redis_new(const char *addr, uint64_t timeout_us, st_err *err);
void      st_redis_free(st_redis *r);
int       st_redis_get(st_redis *r, const char *key, buf *out);
int       st_redis_set(st_redis *r, const char *key, const void *val, size_t len, uint64_t ttl_us);
int       st_redis_del(st_redis *r, const char *key);
/* Namespace generations (see st_cache_gen): 0 on failure. */
uint64_t  st_redis_gen(st_redis *r, const char *key, uint64_t init);
int       st_redis_bump(st_redis *r, const char *key, uint64_t init);
bool      st_redis_up(st_redis *r);
uint64_t  st_redis_errors(st_redis *r);

#endif
