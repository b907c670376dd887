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
    /* Sets the connection's shard-map version, which the fence triggers
     * compare with the shard's (SQLite: the hscale_map_version() function;
     * PostgreSQL: the hscale.map_version setting). */
    int  (*set_version)(void *h, int64_t v, st_err *err);
    /* Column type of a 64-bit primary key that aliases the row id. */
    const char *id_type;
};

struct st_conn {
    const st_driver *drv;
    void            *h;
    st_pool         *pool;
    uint64_t         created_us;
    uint64_t         last_used_us;
    uint64_t         expires_us;   /* created + jittered recycle; 0: never */
    bool             broken;
    int64_t          map_version;   /* last set with drv->set_version */
    st_conn         *next;      /* idle list */
};

/* The map version of the resharding coordinator's SQLite connections:
 * above any real map, so the fence lets it through and capture skips it. */
#define ST_COORD_VERSION 9000000000000000000ll

/* Schema v2 (fence.c): fence, capture and shard-map tables and triggers,
 * run inside the migration's transaction. */
int st_fence_migrate(st_conn *c, st_err *err);

/* Closes every idle connection of a pool (its server went away: they are
 * all dead, and handing them out would fail one request each). */
void st_pool_drop_idle(st_pool *p);
/* The pool's database was removed: idle connections close now, busy ones
 * when returned (in-flight queries finish); the pool is freed by its
 * owner once nothing is busy. */
void st_pool_retire(st_pool *p);
/* The settings the pool runs with (defaults filled in). */
const st_pool_cfg *st_pool_cfg_of(const st_pool *p);

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
 * -1 when Redis failed, the breaker is open or no master is known (callers
 * treat it as a miss). With sentinels the master is found and followed by
 * redis_sentinel.c; with an address it is fixed. */
typedef struct st_redis st_redis;

typedef struct st_redis_opts {
    const char        *addr;         /* host:port of a fixed master; NULL with sentinels */
    const char *const *sentinels;    /* host:port each */
    size_t             nsentinels;
    const char        *master;       /* the sentinels' name for the master */
    const char        *password;     /* AUTH on Redis and sentinels; NULL: none */
    uint64_t           timeout_us;   /* connect and command; 0 -> 50 ms */
} st_redis_opts;

/* Where the cache's master stands. */
typedef enum {
    ST_REDIS_RESOLVING = 0,   /* sentinels not asked yet */
    ST_REDIS_UP,              /* a master answered ROLE as master */
    ST_REDIS_LOST,            /* no verified master: every call is a miss */
} st_redis_master;
const char *st_redis_master_str(st_redis_master m);

st_redis *st_redis_new(const char *addr, uint64_t timeout_us, st_err *err);
st_redis *st_redis_open(const st_redis_opts *o, st_err *err);
void      st_redis_free(st_redis *r);
int       st_redis_get(st_redis *r, const char *key, buf *out);
int       st_redis_set(st_redis *r, const char *key, const void *val, size_t len, uint64_t ttl_us);
int       st_redis_del(st_redis *r, const char *key);
/* Namespace generations (see st_cache_gen): 0 on failure. The generation
 * lives under the cache epoch, which moves on whenever an invalidation may
 * have been lost (a failed bump or del, a new master): see cache_redis.c. */
uint64_t  st_redis_gen(st_redis *r, const char *key, uint64_t init);
int       st_redis_bump(st_redis *r, const char *key, uint64_t init);
bool      st_redis_up(st_redis *r);
uint64_t  st_redis_errors(st_redis *r);
/* Current master ("host:port", "" when none), its state and how many
 * times it changed. */
st_redis_master st_redis_master_get(st_redis *r, char *addr, size_t addrlen,
                                    uint64_t *switches, uint64_t *epochs);

/* A connection with the client's timeouts, authenticated when password is
 * set; NULL when it failed (err gets why). */
struct redisContext;
struct redisContext *st_redis_connect(const char *host, int port, uint64_t timeout_us,
                                      const char *password, st_err *err);
/* "host:port" -> host, port; -1 when malformed. */
int st_redis_split_addr(const char *addr, char *host, size_t hostlen, int *port);

/* Sentinel follower (redis_sentinel.c): a thread that asks the sentinels
 * for the master, checks it with ROLE, subscribes to +switch-master and
 * re-asks when told (st_sentinel_reask) or every few seconds. It reports
 * through on_master: up with the verified address, or !up (host NULL)
 * when no sentinel names a master that says it is one. */
typedef struct st_sentinel st_sentinel;
typedef void st_sentinel_cb(void *arg, bool up, const char *host, int port);
st_sentinel *st_sentinel_start(const st_redis_opts *o, st_sentinel_cb *cb, void *arg,
                               st_err *err);
void         st_sentinel_stop(st_sentinel *sn);
/* Something went wrong with the master (-READONLY, a timeout): ask again
 * now. Cheap and safe to call from any thread, any number of times. */
void         st_sentinel_reask(st_sentinel *sn);

/* Parsers of what sentinels and Redis answer (unit-tested and fuzzed).
 * A +switch-master message "<name> <old-ip> <old-port> <new-ip> <new-port>":
 * 1 with the new address when it names `master`, 0 for another master,
 * -1 when malformed. */
int st_sentinel_parse_switch(const char *msg, size_t len, const char *master,
                             char *host, size_t hostlen, int *port);
/* SENTINEL get-master-addr-by-name: [ip, port]; 0, or -1 (nil: unknown name). */
struct redisReply;
int st_sentinel_parse_addr(const struct redisReply *r, char *host, size_t hostlen, int *port);
/* ROLE: 1 when the first element is "master", 0 for another role, -1 malformed. */
int st_redis_parse_role(const struct redisReply *r);

#endif
