/* store.h -- the data layer: drivers, pools, shard routing, replicas, cache.
 *
 * Every row of a user lives on one shard, chosen from user_id by the router
 * (hash ring with virtual nodes, user_id ranges, or a directory table).
 * Each shard has a primary and zero or more read replicas, each behind its
 * own connection pool. Writes go to the primary; reads go to a healthy
 * replica whose lag is under max_replica_lag, else to the primary, and to
 * the primary for a while after that user's last write (read-your-writes).
 *
 * Queries are written once with `?` placeholders; the PostgreSQL driver
 * rewrites them to $1.. and prepares them, the SQLite driver prepares them.
 * Results come back as a small typed table (rows x columns of NULL, integer
 * or text) that callers turn into JSON.
 *
 * Errors are values: every call that can fail fills an st_err whose code
 * tells the caller how to answer (ST_EUNAVAIL / ST_ETIMEOUT -> 503 with
 * Retry-After, ST_ECONFLICT -> 409, ST_EINVAL -> 400, others -> 500) and
 * whose msg says what happened, for the log.
 *
 * Thread-safety: an st_store is shared by all worker threads. Pools, the
 * router's directory and the cache have their own locks; an st_conn or an
 * st_res belongs to one thread at a time.
 *
 * A cached read, as a handler does it (the loader runs only on a miss, once
 * for all concurrent requests of the same key):
 *
 *     st_cache *c = st_store_cache(s);               // NULL: caching off
 *     uint64_t gen = c ? st_cache_gen(c, "u:7") : 0; // 0: bypass the cache
 *     snprintf(key, sizeof key, "cf:7:%llu:%d:%lld", gen, status, cursor);
 *     if (gen) rc = st_cache_fetch(c, key, st_store_cache_cfg(s)->ttl_case_list,
 *                                  0, load_page, &args, &body, &hit, &err);
 *     else     rc = load_page(&args, &body, &err);
 *
 * where load_page runs st_query(s, 7, ST_READ, "SELECT ... WHERE user_id = ?
 * AND case_status = ? AND case_id > ? ORDER BY case_id LIMIT ?", ...) and
 * renders the rows with st_res_json. A write runs st_query(..., ST_WRITE,
 * ...) or an st_tx, then st_cache_del(c, "case:<id>") and
 * st_cache_bump(c, "u:7"). */
#ifndef HSCALE_STORE_STORE_H
#define HSCALE_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/buf.h"
#include "core/config.h"
#include "core/hist.h"

/* ---- errors ---------------------------------------------------------- */

typedef enum {
    ST_OK = 0,
    ST_EINVAL,      /* bad argument or config */
    ST_EQUERY,      /* the database rejected the statement (syntax, type) */
    ST_ECONFLICT,   /* unique / foreign key constraint */
    ST_ETIMEOUT,    /* pool exhausted for acquire_timeout: answer 503 */
    ST_EUNAVAIL,    /* database unreachable or connection lost: answer 503 */
    ST_ENOMEM,
    ST_EFENCED,     /* the shard refused the write: this instance's shard map
                       is older than the shard's fence (resharding); refresh
                       the map and retry on the new owner. st_query does it. */
} st_code;

typedef struct st_err {
    st_code code;
    char    msg[256];
} st_err;

const char *st_code_name(st_code c);   /* "unavailable", "conflict", ... */
/* Sets err (when not NULL) and returns -1, so `return st_fail(...)` works. */
int st_fail(st_err *err, st_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- values and results ---------------------------------------------- */

typedef enum { ST_NULL = 0, ST_INT, ST_TEXT } st_type;

/* A query parameter. Text is borrowed for the duration of the call. */
typedef struct st_val {
    st_type     type;
    int64_t     i;
    const char *s;
    size_t      len;
} st_val;

static inline st_val st_null(void)              { st_val v = { ST_NULL, 0, NULL, 0 }; return v; }
static inline st_val st_int(int64_t i)          { st_val v = { ST_INT, i, NULL, 0 }; return v; }
st_val st_text(const char *s);                  /* NULL s gives ST_NULL */
static inline st_val st_textn(const char *s, size_t n) { st_val v = { ST_TEXT, 0, s, n }; return v; }

typedef struct st_res st_res;

size_t      st_res_rows(const st_res *r);
size_t      st_res_cols(const st_res *r);
const char *st_res_name(const st_res *r, size_t col);
st_type     st_res_type(const st_res *r, size_t row, size_t col);
bool        st_res_is_null(const st_res *r, size_t row, size_t col);
/* Integer value (text cells are parsed; NULL gives 0). */
int64_t     st_res_int(const st_res *r, size_t row, size_t col);
/* Text value, NUL-terminated ("" for NULL; integers are formatted). The
 * pointer lives as long as the result. */
const char *st_res_text(const st_res *r, size_t row, size_t col, size_t *len);
/* Rows changed by an INSERT/UPDATE/DELETE (summed over shards on fan-out). */
int64_t     st_res_changes(const st_res *r);
void        st_res_free(st_res *r);
/* JSON for responses: one row as an object keyed by column name (integers
 * as numbers, NULL as null, text as escaped strings; bytes that are not
 * UTF-8 become U+FFFD), or every row as an array of such objects. */
int         st_res_json_row(const st_res *r, size_t row, buf *out);
int         st_res_json(const st_res *r, buf *out);

/* ---- drivers and connections ----------------------------------------- */

typedef struct st_driver st_driver;
extern const st_driver st_driver_sqlite;
extern const st_driver st_driver_pg;

/* "sqlite:PATH" (or a path ending in .db) -> SQLite; "postgres://",
 * "postgresql://" or "host=... dbname=..." -> PostgreSQL. NULL if unknown. */
const st_driver *st_driver_for_url(const char *url);
const char      *st_driver_name(const st_driver *d);   /* "sqlite" | "postgresql" */

typedef struct st_conn st_conn;

/* Runs one statement. params may be NULL when n == 0. out may be NULL when
 * the rows are not wanted. A lost connection gives ST_EUNAVAIL and marks the
 * connection broken so the pool replaces it. */
int  st_conn_exec(st_conn *c, const char *sql, const st_val *params, size_t n,
                  st_res **out, st_err *err);
const st_driver *st_conn_driver(const st_conn *c);

/* ---- connection pool (one per database) ------------------------------ */

typedef struct st_pool_cfg {
    int      size;              /* connections kept open; 0 -> 10 */
    int      overflow;          /* extra connections under burst; closed on release */
    uint64_t acquire_timeout;   /* us; 0 -> 30 s. Exhaustion -> ST_ETIMEOUT */
    uint64_t recycle;           /* us; maximum lifetime, each connection's 0-20 % shorter
                                   (jitter); then closed or reopened; 0: never */
    uint64_t pre_ping_idle;     /* us; SELECT 1 before handing out a connection idle
                                   longer than this; 0 -> always when pre_ping */
    bool     pre_ping;
} st_pool_cfg;

typedef struct st_pool_stats {
    int      idle, busy, total, waiting, max;
    uint64_t opened, closed, recycled, ping_failures, timeouts, acquires;
} st_pool_stats;

typedef struct st_pool st_pool;

/* Opens no connection yet: connections are created on demand. */
st_pool *st_pool_new(const st_driver *d, const char *url, const st_pool_cfg *cfg, st_err *err);
void     st_pool_free(st_pool *p);
st_conn *st_pool_acquire(st_pool *p, st_err *err);
/* Returns a connection; a broken one (or any when `discard`) is closed. */
void     st_pool_release(st_pool *p, st_conn *c, bool discard);
void     st_pool_stats_get(st_pool *p, st_pool_stats *out);
const char *st_pool_url(const st_pool *p);

/* Test hook: the next `n` pings on this pool's connections fail, as if the
 * server had dropped them (simulates a killed connection on SQLite). */
void     st_pool_fail_next_pings(st_pool *p, int n);

/* ---- shard router ----------------------------------------------------- */

typedef enum { ST_ROUTE_HASH = 0, ST_ROUTE_RANGE, ST_ROUTE_DIRECTORY } st_route_kind;

typedef struct st_router st_router;

st_router *st_router_new(st_route_kind kind);
void       st_router_free(st_router *r);
/* Adds a shard (index = order of addition). `name` seeds its points on the
 * hash ring, so the placement of other shards' users does not depend on
 * this one; weight scales its share (virtual nodes = 160 x weight). */
int        st_router_add_shard(st_router *r, const char *name, double weight, st_err *err);
/* range: user_id in [lo, hi] -> shard. Ranges must not overlap. */
int        st_router_add_range(st_router *r, int64_t lo, int64_t hi, int shard, st_err *err);
/* directory: user -> shard (thread-safe, may be called at run time). */
int        st_router_dir_set(st_router *r, int64_t user_id, int shard, st_err *err);
/* Users with no range / directory entry go here (-1: none, an error). */
void       st_router_set_default(st_router *r, int shard);
/* The shard of a user, or -1 when no rule places it. */
int        st_router_shard(st_router *r, int64_t user_id);
int        st_router_nshards(const st_router *r);

/* ---- cache ------------------------------------------------------------ */

typedef enum { ST_CACHE_NONE = 0, ST_CACHE_LOCAL, ST_CACHE_REDIS } st_cache_kind;

typedef struct st_cache_stats {
    uint64_t hits, misses, sets, invalidations, coalesced, evictions, redis_errors;
    size_t   entries, bytes;
    bool     redis_up;          /* a master is known and the circuit breaker is closed */
    char        redis_master[160];          /* "host:port"; "" when none is known */
    const char *redis_master_state;         /* "up", "lost", "resolving"; NULL: not redis */
    uint64_t    redis_switches;             /* the master changed (failovers followed) */
    uint64_t    redis_epochs;               /* cache epochs this client moved on */
} st_cache_stats;

typedef struct st_cache st_cache;

/* Local: a sharded LRU map bounded by max_bytes. Redis: keys live in Redis
 * (shared by instances) with timeout_us per command; after 3 failures in a
 * row a breaker opens for 2 s and every call is a local no-op (a miss), so a
 * dead Redis costs nothing per request. */
st_cache *st_cache_new_local(size_t max_bytes);
st_cache *st_cache_new_redis(const char *addr, uint64_t timeout_us, st_err *err);
/* Redis as the cache config says: a fixed `redis` address, or the master
 * that `sentinels` name for `sentinel_master` (followed across failovers:
 * see cache_redis.c and redis_sentinel.c). password: AUTH for both; NULL
 * for none. A sentinel that is down does not fail this. */
struct st_cache_cfg;
st_cache *st_cache_new_redis_cfg(const struct st_cache_cfg *cc, const char *password,
                                 st_err *err);
void      st_cache_free(st_cache *c);

/* 1 and the value appended to out on a hit, 0 on a miss. */
int  st_cache_get(st_cache *c, const char *key, buf *out);
void st_cache_set(st_cache *c, const char *key, const void *val, size_t len, uint64_t ttl_us);
void st_cache_del(st_cache *c, const char *key);

/* Fills `out` for a miss. Returns 0, or -1 with err (nothing is cached). */
typedef int st_cache_loader(void *arg, buf *out, st_err *err);

/* Cache-aside with single-flight: on a miss one caller runs the loader and
 * caches its result; concurrent callers for the same key wait (up to
 * wait_us; 0 -> 5 s) and take the loaded value, or load themselves on
 * timeout. *hit (when not NULL) is set when no loader ran for this call. */
int  st_cache_fetch(st_cache *c, const char *key, uint64_t ttl_us, uint64_t wait_us,
                    st_cache_loader *load, void *arg, buf *out, bool *hit, st_err *err);
void st_cache_stats_get(st_cache *c, st_cache_stats *out);
/* Only the single flight of st_cache_fetch: concurrent callers of one key
 * share one load, nothing is read from or written to the cache. For when
 * the cache cannot answer (Redis down: st_cache_gen gave 0): the database
 * then sees one query per key, not one per request. *shared: this call
 * took another caller's load. */
int  st_cache_single_flight(st_cache *c, const char *key, uint64_t wait_us,
                            st_cache_loader *load, void *arg, buf *out, bool *shared,
                            st_err *err);

/* Namespace generations, for invalidating a family of keys at once (every
 * casefilter page of a user): put st_cache_gen(c, "u:7") in those keys and
 * st_cache_bump(c, "u:7") on each write; old keys become unreachable and
 * expire by TTL. A generation that was evicted restarts from the wall
 * clock in microseconds, above any number used before, so an old key is
 * never reachable again. Returns 0 when the backend cannot answer (Redis
 * down): callers then bypass the cache for that request. */
uint64_t st_cache_gen(st_cache *c, const char *ns);
void     st_cache_bump(st_cache *c, const char *ns);

/* ---- configuration (the `store:` section) ----------------------------- */

typedef struct st_shard_cfg {
    char    *name;
    char    *primary;           /* URL */
    char   **replicas;          /* URLs */
    size_t   nreplicas;
    double   weight;
} st_shard_cfg;

typedef struct st_range_cfg {
    char *from, *to;            /* user_id bounds, inclusive ("" to: open) */
    char *shard;
} st_range_cfg;

typedef struct st_dir_cfg {
    char *user;                 /* user_id */
    char *shard;
} st_dir_cfg;

typedef struct st_cache_cfg {
    int      kind;              /* st_cache_kind: none | local | redis */
    char    *redis;             /* host:port */
    char   **sentinels;         /* host:port each; set: find the master through them */
    size_t   nsentinels;
    char    *sentinel_master;   /* the master's name at the sentinels */
    char    *redis_password;    /* AUTH (Redis and sentinels) */
    char    *redis_password_file;
    uint64_t redis_timeout;     /* us */
    uint64_t max_bytes;
    uint64_t ttl_case;          /* one case */
    uint64_t ttl_case_list;     /* a user's case list (casefilter) */
    uint64_t ttl_user;
    uint64_t ttl_list;          /* facilities, surgeons */
} st_cache_cfg;

typedef struct st_config {
    char         *url;          /* one-shard shorthand; NULL -> sqlite under data_dir */
    char         *data_dir;     /* SQLite files: <data_dir>/<shard>.db */
    st_shard_cfg *shards;
    size_t        nshards;
    int           strategy;     /* st_route_kind */
    st_range_cfg *ranges;
    size_t        nranges;
    st_dir_cfg   *directory;
    size_t        ndirectory;
    char         *default_shard;
    st_pool_cfg   pool;
    st_cache_cfg  cache;
    uint64_t      max_replica_lag;    /* us */
    uint64_t      read_your_writes;   /* us; 0: off */
    uint64_t      replica_check;      /* us between replica health/lag probes */
    bool          migrate;            /* create/upgrade the schema at open */
    uint64_t      fence_wait;         /* us a fenced write waits for the new map; 0 -> 5 s */
    int           reshard_batch;      /* rows per copy batch; 0 -> 500 */
    uint64_t      reshard_cleanup_delay; /* us between cutover and removing moved rows; 0 -> 3 s */
} st_config;

/* The `store:` schema; the top-level config embeds it as an object. */
extern const cfg_schema st_config_schema;

/* ---- the store -------------------------------------------------------- */

typedef enum { ST_READ = 0, ST_WRITE } st_intent;

typedef struct st_store st_store;

/* Opens pools for every shard and replica, probes every node once, runs
 * migrations when cfg->migrate, starts the probe thread. A database that is
 * down does not fail the open: its queries fail with ST_EUNAVAIL and the
 * probe migrates it when it answers. A config error (unknown shard name,
 * overlapping ranges, bad url) fails it, naming the key. cfg may be NULL.
 * For a zeroed st_config (callers not using st_config_schema): pool fields
 * take the pool defaults, max_replica_lag 0 -> 5 s, replica_check 0 -> 1 s,
 * read_your_writes 0 is off, cache kind 0 is none, data_dir NULL ->
 * ./hscale-data. */
int  st_store_open(const st_config *cfg, st_store **out, st_err *err);
void st_store_close(st_store *s);

int         st_store_nshards(const st_store *s);
const char *st_store_shard_name(const st_store *s, int shard);
const char *st_store_driver_name(const st_store *s);    /* of shard 0's primary */
int         st_shard_of(st_store *s, int64_t user_id);   /* -1: unplaced */
st_router  *st_store_router(st_store *s);
st_cache   *st_store_cache(st_store *s);                 /* NULL: caching off */
const st_cache_cfg *st_store_cache_cfg(const st_store *s);

/* One statement for one user's shard, routed by intent (see top). A WRITE
 * records the user's write time for read-your-writes. */
int  st_query(st_store *s, int64_t user_id, st_intent intent, const char *sql,
              const st_val *params, size_t n, st_res **out, st_err *err);
/* One statement on a given shard (primary for WRITE, replica-or-primary for
 * READ, no read-your-writes). */
int  st_query_shard(st_store *s, int shard, st_intent intent, const char *sql,
                    const st_val *params, size_t n, st_res **out, st_err *err);
/* Fan-out: the statement runs on every shard in parallel (reads on
 * replicas when usable) and the rows are concatenated in shard order. Any
 * shard failing fails the call (no partial answers). */
int  st_query_all(st_store *s, st_intent intent, const char *sql,
                  const st_val *params, size_t n, st_res **out, st_err *err);

/* Transactions: all statements of one user on its primary; commit or roll
 * back (a failed statement leaves the tx to be rolled back). */
typedef struct st_tx st_tx;
int  st_tx_begin(st_store *s, int64_t user_id, st_tx **out, st_err *err);
int  st_tx_exec(st_tx *tx, const char *sql, const st_val *params, size_t n,
                st_res **out, st_err *err);
int  st_tx_commit(st_tx *tx, st_err *err);    /* frees tx, also on failure */
void st_tx_rollback(st_tx *tx);               /* frees tx */

/* Directory routing kept in the database: records user -> shard in shard
 * 0's shard_directory table and in the router. The table is loaded at open
 * (strategy directory) and, when the config lists no entries, reread every
 * 10 x replica_check (10 s) so other instances' assignments arrive; config entries win over it. */
int  st_store_dir_assign(st_store *s, int64_t user_id, const char *shard, st_err *err);

/* Replica sets that change (config reload, the app's admin API): the
 * shard's replicas become exactly `urls`. A URL already there keeps its
 * connections and health; a new one is probed and takes reads as soon as
 * it is healthy and within max_replica_lag; a removed one gets no new
 * reads, its in-flight queries finish, then its connections close. At most
 * 8 per shard. -1 with err naming the shard or URL (nothing changed). */
int  st_store_set_replicas(st_store *s, const char *shard, const char *const *urls, size_t n,
                           st_err *err);
/* {"shards":[{"name","replicas":[{"url" (password removed),"healthy",
 * "lag_seconds","connections","busy"}]}]} */
int  st_store_replicas_json(st_store *s, buf *out);

/* Read-your-writes bookkeeping (st_query does it for WRITE; call it for
 * writes made through st_tx). */
void st_note_write(st_store *s, int64_t user_id);

/* Unique 53-bit ids (safe as JSON numbers): seconds, a counter and an
 * instance tag; monotonic within a process. */
int64_t st_id_next(st_store *s);

/* ---- readiness and statistics ----------------------------------------- */

/* 0 when every shard's primary answers SELECT 1; else -1 naming the shard. */
int  st_store_ping(st_store *s, st_err *err);

#define ST_MAX_TABLES 4
typedef struct st_node_stats {
    char          url[128];     /* password removed */
    bool          healthy;
    double        lag_s;        /* replicas; -1 unknown */
    st_pool_stats pool;
} st_node_stats;

typedef struct st_shard_stats {
    char          name[64];
    int64_t       rows[ST_MAX_TABLES];   /* per st_table_names[i]; -1 unknown */
    int64_t       size_bytes;            /* -1 unknown */
    st_node_stats primary;
    st_node_stats replicas[8];
    size_t        nreplicas;
    uint64_t      queries, errors;
    hist          latency;               /* query latency, us */
} st_shard_stats;

extern const char *const st_table_names[ST_MAX_TABLES];  /* users, facilities, surgeons, cases */

/* Pool and latency figures only (cheap: no query). */
void st_store_stats_fast(st_store *s, int shard, st_shard_stats *out);
/* Also counts rows per table and the database size (queries the shard). */
int  st_store_stats(st_store *s, int shard, st_shard_stats *out, st_err *err);
/* Shard statistics as JSON (an array, one object per shard), for
 * /api/v1/scaling/shards. `full` includes row counts and sizes. */
int  st_store_stats_json(st_store *s, bool full, buf *out, st_err *err);
/* Registers the store's gauges with the process metrics registry:
 * hscale_db_pool_connections{shard,role,state}, hscale_db_replica_lag_seconds,
 * hscale_db_queries_total, hscale_cache_requests_total{result}. */
void st_store_metrics_register(st_store *s);

/* ---- versioned shard map and online resharding (shardmap.c, reshard*.c) --
 *
 * The shard map (shards, their urls and weights, the strategy) is versioned
 * and kept in shard 0's hscale_shard_map table, the "meta" shard; at open a
 * store adopts the newest stored version (writing version 1 from its
 * config when there is none) and the probe thread polls for newer ones.
 * Every write carries the map version of its instance (a session setting
 * on its connection); each shard's fence triggers refuse a write whose
 * version is below the shard's min_version, or below its freeze_version for
 * a user being moved. The refusal is ST_EFENCED: st_query refreshes the map
 * and retries on the new owner for up to fence_wait. */

int64_t st_store_map_version(const st_store *s);
/* Rereads the newest map from the meta shard and adopts it when newer
 * (new shards get pools; the router is swapped). 1 adopted, 0 unchanged. */
int     st_store_map_refresh(st_store *s, st_err *err);
/* The current map as JSON: {"version":N,"strategy":"hash","shards":[...]}. */
void    st_store_map_json(st_store *s, buf *out);
/* Weight of a shard in the current map. */
double  st_store_shard_weight(const st_store *s, int shard);

/* A resharding request. op "add_shard": name, primary (url; empty: SQLite
 * under data_dir), weight; "set_weights": names[i] -> weights[i]; "move"
 * (strategy directory): user -> shard `name`. */
typedef struct st_reshard_req {
    char     op[16];
    char     name[64];
    char     primary[512];
    double   weight;
    char     names[16][64];
    double   weights[16];
    size_t   nweights;
    int64_t  user;
    bool     hold_before_cutover;   /* tests: stop before cutover until resumed */
} st_reshard_req;

/* Starts the coordinator on a thread of this store: copy, catch-up,
 * cutover (brief freeze of the moving users), cleanup. -1 with err when one
 * runs already (here or, per the meta shard, elsewhere) or the request is
 * bad. */
int  st_reshard_start(st_store *s, const st_reshard_req *req, st_err *err);
/* Asks the running move to undo itself; refused (-1) once the new map is
 * published. */
int  st_reshard_rollback(st_store *s, st_err *err);
/* Lets a move held before cutover go on. */
int  st_reshard_resume(st_store *s, st_err *err);
/* {"state":..., counts, pause, events:[...]} of the last move ("idle"). */
void st_reshard_status_json(st_store *s, buf *out);

/* ---- schema ----------------------------------------------------------- */

#define ST_SCHEMA_VERSION 2
/* Creates / upgrades the SurgiCase schema on one connection, recording the
 * version in schema_version. Idempotent. */
int st_schema_migrate(st_conn *c, st_err *err);

#endif
