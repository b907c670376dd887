/* gw_lb.h -- the gateway's decision logic, kept apart from sockets so every
 * rule can be tested alone: backend selection (latency-aware least-request,
 * smooth weighted round-robin, weighted least-connections, power of two
 * choices, consistent hashing with bounded loads, sticky cookies, backups,
 * slow start), the pool's observed latency (peak EWMA per member, a recent
 * p99 per worker) with the per-try timeout and slow-member ejection derived
 * from it, active health rise/fall, passive outlier ejection, the retry
 * budget and the shared rate limiter.
 *
 * Internal to src/gateway (the public API is gateway.h).
 *
 * Threading model: a gw_pool and its members are shared by every worker.
 * Identity fields (address, backup flag) are immutable once the pool is
 * published; runtime fields (weight, state, health, in-flight, ejection) are
 * atomics so workers and the health thread update them without locks.
 * Per-worker mutable selection state (SWRR current weights, RNG) lives in
 * gw_lb_cursor, owned by one worker, so the hot path never contends.
 * Nothing on a pick path allocates: candidate lists live on the stack,
 * bounded by GW_MAX_MEMBERS. */
#ifndef HSCALE_GATEWAY_GW_LB_H
#define HSCALE_GATEWAY_GW_LB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include "core/sock.h"

#define GW_MAX_MEMBERS 256
#define GW_NAME_MAX    64

/* GW_ALGO_LEASTREQ: power of two choices over in-flight requests weighted
 * by each member's peak-EWMA latency (Finagle, Linkerd); the default. */
typedef enum { GW_ALGO_SWRR, GW_ALGO_LEASTCONN, GW_ALGO_P2C, GW_ALGO_HASH, GW_ALGO_LEASTREQ } gw_algo;

/* Administrative state, set through the API. Health is separate: a `ready`
 * member may still be unhealthy or ejected. */
typedef enum { GW_ST_READY, GW_ST_DRAINING, GW_ST_MAINT, GW_ST_DOWN } gw_state;

typedef struct gw_member {
    /* immutable once published */
    sock_addr addr;
    char      name[GW_NAME_MAX];     /* "host:port", also the API id */
    bool      backup;
    uint64_t  id_hash;               /* stable hash of name: ring points, cookie */
    /* runtime */
    _Atomic uint32_t weight;         /* 1..1000; the API may change it in place */
    _Atomic uint32_t refs;           /* snapshots and requests holding it */
    _Atomic int      state;          /* gw_state */
    _Atomic bool     healthy;        /* active checks; true until proven otherwise */
    _Atomic uint64_t up_since_us;    /* start of slow start (0: no ramp) */
    _Atomic uint64_t ejected_until_us;
    _Atomic uint32_t ejections;      /* times ejected, grows the ejection time */
    _Atomic uint32_t consec_fail;
    _Atomic uint32_t inflight;
    _Atomic uint32_t tunnels;        /* open WebSocket/Upgrade tunnels (not in inflight) */
    /* observed latency (gw_latency.c), next to inflight: the same line is
     * written on every request anyway */
    _Atomic uint64_t ewma_ns;        /* peak EWMA of response-head latency; 0: none yet */
    _Atomic uint64_t ewma_at_us;     /* time of its last update */
    _Atomic uint64_t progress_us;    /* last answer, or when it last became busy */
    _Atomic bool     slow;           /* slow-ejected: holds requests, answers none */
    _Atomic uint64_t slow_probe_us;  /* while slow: when one request may go to it */
    _Atomic uint32_t slow_ejections;
    _Atomic bool     restored;       /* came from the state file, not the config or the API */
    _Atomic bool     dynamic;        /* added at run time (API, state file): kept by a reload */
    _Atomic uint64_t total;
    _Atomic uint64_t by_class[6];    /* responses: [0] failed tries, [1..5] 1xx..5xx */
    /* https pools (gw_upstream_tls.c): TLS sessions the member gave any
     * worker, newest last, each offered to one new connection (TLS 1.3
     * tickets are single-use: servers refuse a ticket offered twice), so
     * handshakes resume; under tls_lock (a spin lock held for a few pointer
     * moves). Freed with the member. */
#define GW_UTLS_SESSIONS 32
    atomic_flag      tls_lock;
    void            *tls_sess[GW_UTLS_SESSIONS];   /* SSL_SESSION */
    uint8_t          tls_nsess;
    const void      *tls_sess_ctx;   /* the SSL_CTX they came from: offered only there */
    _Atomic uint64_t tls_log_us;     /* last TLS failure logged: one line a second */
} gw_member;

typedef struct gw_ring_point { uint64_t h; uint32_t member; } gw_ring_point;

typedef struct gw_pool {
    char        name[GW_NAME_MAX];
    gw_algo     algo;
    gw_member  *members[GW_MAX_MEMBERS];
    uint32_t    n;
    uint64_t    slow_start_us;       /* 0: none */
    double      hash_epsilon;        /* bounded-load slack, e.g. 0.25 */
    gw_ring_point *ring;             /* GW_ALGO_HASH only; built by gw_pool_build_ring */
    uint32_t    nring;
    /* outlier detection */
    uint32_t    outlier_consec;      /* failures in a row that eject (0: off) */
    uint64_t    outlier_base_us;     /* first ejection time; doubles each repeat */
    uint64_t    outlier_max_us;      /* cap on one ejection */
    uint32_t    outlier_max_pct;     /* at most this share of the pool ejected */
    /* stuck requests (gateway-wide keys, copied here for the pick) */
    uint32_t    try_factor;          /* adaptive try timeout = factor x p99 (0: off) */
    uint32_t    slow_factor;         /* slow ejection after factor x p99 (0: off) */
    uint64_t    try_min_us;          /* floor of both */
    uint64_t    try_max_us;          /* cap of both: the configured try_timeout */
    struct gw_utls *tls;             /* https pool: its client context; NULL: plain */
} gw_pool;

/* The pool's recent response-head latency as one worker sees it: a small
 * log-linear histogram (4 buckets per octave, 1 us .. 67 s) whose counts
 * decay by a quarter every GW_LAT_PERIOD_US, so it describes roughly the
 * last second. The p99 is recomputed at each decay and is 0 (unknown)
 * until the window holds GW_LAT_MIN_SAMPLES: with too few samples there is
 * no p99 to trust and the configured timeouts apply unchanged. */
#define GW_LAT_BUCKETS     108
#define GW_LAT_PERIOD_US   250000u
#define GW_LAT_MIN_SAMPLES 32u
typedef struct gw_lat_win {
    uint32_t cnt[GW_LAT_BUCKETS];
    uint32_t n;
    uint64_t p99_us;                 /* 0: unknown */
    uint64_t next_us;                /* next decay and recompute */
} gw_lat_win;

/* One worker's private selection state for one pool. */
typedef struct gw_lb_cursor {
    int64_t  cw[GW_MAX_MEMBERS];     /* SWRR current weights */
    uint32_t rr;                     /* tie-break rotation */
    uint64_t rng;                    /* xorshift state, never 0 */
    gw_lat_win lat;                  /* survives a new snapshot (by pool name) */
    uint64_t next_scan_us;           /* next slow-member check (gw_pick.c) */
    char     pool[GW_NAME_MAX];
} gw_lb_cursor;

void gw_lb_cursor_init(gw_lb_cursor *c, uint64_t seed);

/* Pool setup (off the hot path). gw_member_init fills the immutable part
 * and resets runtime state; weight 0 is refused (returns -1). */
int  gw_member_init(gw_member *m, const char *addr, uint32_t weight, bool backup,
                    char *err, size_t errlen);
void gw_pool_init(gw_pool *p, const char *name, gw_algo algo);
int  gw_pool_add(gw_pool *p, gw_member *m);      /* -1 when full */
/* Builds the consistent-hash ring: 64 points per unit of weight share.
 * Returns -1 on allocation failure. */
int  gw_pool_build_ring(gw_pool *p);
void gw_pool_free_ring(gw_pool *p);

/* Whether a member may take a new request now (a slow-ejected member is
 * not; see gw_slow_probe for the one request that tests it). */
bool gw_member_eligible(const gw_member *m, uint64_t now_us);
/* Weight in effect now (slow start ramps it from 1 to weight). */
uint32_t gw_member_eff_weight(const gw_pool *p, const gw_member *m, uint64_t now_us);

/* Picks a member index, or -1 when none is available. Primaries first;
 * backups only when no primary is eligible. `key`/`klen` feed GW_ALGO_HASH
 * (a NULL key falls back to least request). `exclude` (index or -1) is skipped, for
 * retries on a different backend. */
int gw_lb_pick(const gw_pool *p, gw_lb_cursor *c, const void *key, size_t klen,
               int exclude, uint64_t now_us);

/* Sticky sessions: the cookie value naming a member, and the reverse. */
void gw_sticky_value(const gw_member *m, char out[17]);
int  gw_sticky_find(const gw_pool *p, const char *val, size_t len, uint64_t now_us);

uint64_t gw_hash64(const void *data, size_t len);

/* --- observed latency, stuck requests, slow members (gw_latency.c) ------ */

/* Records one response-head latency into a worker's window. */
void     gw_lat_record(gw_lat_win *w, uint64_t us, uint64_t now_us);
/* The window's p99 in microseconds, 0 while unknown. */
uint64_t gw_lat_p99(const gw_lat_win *w);
/* Updates a member's peak EWMA with one latency sample: a sample above the
 * estimate replaces it at once, one below pulls it down with weight
 * 1 - exp(-dt / GW_EWMA_DECAY_US), dt being the time since the last
 * update. Racing workers may lose an update; it is an estimate. */
#define GW_EWMA_DECAY_US 10000000u
void     gw_member_observe(gw_member *m, uint64_t latency_us, uint64_t now_us);
/* The member answered (a response head): progress, and no longer slow.
 * True when it was slow until now. */
bool     gw_member_answered(gw_member *m, uint64_t now_us);
/* clamp(factor x p99, try_min_us, try_max_us), or 0 when factor is 0 or
 * the p99 is unknown (then the configured try_timeout applies). */
uint64_t gw_lat_threshold(const gw_pool *p, const gw_lat_win *w, uint32_t factor);
/* Whether an attempt sent to m at since_us, whose latency-derived timeout
 * ran out, is stuck rather than slow: m is ejected as slow, or it holds
 * other requests too and has answered none of them during the last
 * window_us. A member that answers others is alive (this request is merely
 * slow); one that holds this request alone gives no evidence either way.
 * In both cases the attempt keeps waiting, up to try_timeout. */
bool     gw_member_stuck(const gw_member *m, uint64_t since_us, uint64_t window_us, uint64_t now_us);
/* Slow-member ejection: m holds two requests or more and has answered
 * nothing for thr_us while another member of the pool answers (or is
 * idle): it stops getting new requests until it answers. Returns true when
 * this call ejected it. */
bool     gw_slow_check(const gw_pool *p, gw_member *m, uint64_t thr_us, uint64_t now_us);
/* A slow member gets one request every GW_SLOW_PROBE_US to find out
 * whether it answers again: true (and the turn taken) when one may go now. */
#define GW_SLOW_PROBE_US 1000000u
bool     gw_slow_probe(gw_member *m, uint64_t now_us);

/* --- health ------------------------------------------------------------- */

/* Active check rise/fall: `rise` passes in a row mark a member healthy,
 * `fall` failures in a row unhealthy. Owned by the health thread. */
typedef struct gw_health_sm { uint16_t rise, fall, oks, fails; bool up; } gw_health_sm;
void gw_health_init(gw_health_sm *h, uint16_t rise, uint16_t fall, bool start_up);
/* Feeds one check result; returns +1 on a down->up transition, -1 on
 * up->down, 0 otherwise. */
int  gw_health_observe(gw_health_sm *h, bool ok);

/* Passive outlier detection: report each upstream outcome (ok false for a
 * connect failure, reset, timeout or 5xx). Returns true when this report
 * ejected the member. The ejection lasts base * 2^(ejections-1), capped;
 * it is refused when it would eject more than outlier_max_pct of the pool
 * (at least one member may always be ejected, as Envoy does). */
bool gw_outlier_report(gw_pool *p, gw_member *m, bool ok, uint64_t now_us);

/* --- retry budget ------------------------------------------------------- */

/* Retries are allowed while retries in flight stay within `ratio` of
 * requests in flight (with a floor of `min_retries`), or when they can be
 * paid from a bank every request pays `ratio` of a token into (Finagle's
 * retry budget), capped at GW_RETRY_BANK retries. The first rule lets a
 * quiet gateway retry; the bank absorbs a burst (a hung backend times out
 * every request it holds at once) while still bounding retries, over
 * time, to `ratio` of traffic -- so a failing fleet never sees a storm.
 * Shared by workers. */
#define GW_RETRY_BANK 100
typedef struct gw_retry_budget {
    _Atomic uint32_t active;     /* requests in flight, retries included */
    _Atomic uint32_t retries;    /* retries in flight */
    _Atomic int64_t  bank;       /* thousandths of a retry */
    double   ratio;
    uint32_t min_retries;
} gw_retry_budget;
void gw_retry_budget_init(gw_retry_budget *b, double ratio, uint32_t min_retries);
void gw_retry_request_begin(gw_retry_budget *b);
void gw_retry_request_end(gw_retry_budget *b);
/* True and counted when a retry fits; pair with gw_retry_end. */
bool gw_retry_try_begin(gw_retry_budget *b);
void gw_retry_end(gw_retry_budget *b);

/* --- rate limiter ------------------------------------------------------- */

/* A token-bucket class: `limit` requests per `period_us`, burst `limit`. */
typedef struct gw_rl_class { uint32_t limit; uint64_t period_us; } gw_rl_class;

typedef struct gw_rl_result {
    bool     allowed;
    uint32_t limit;
    uint32_t remaining;
    uint32_t retry_after_s;      /* when refused: seconds until one token */
} gw_rl_result;

typedef struct gw_rl gw_rl;
/* A table of `capacity` buckets (rounded up to a power of two), split into
 * locked shards. Memory is fixed at creation: when a key is new and its
 * probe window is full, the least recently used bucket there is reused, so
 * idle clients expire and a flood of addresses cannot grow the table. */
gw_rl *gw_rl_new(uint32_t capacity);
void   gw_rl_free(gw_rl *rl);
/* Takes one token for (class_id, key). Thread-safe, no allocation. */
void   gw_rl_take(gw_rl *rl, uint32_t class_id, const gw_rl_class *cls,
                  const void *key, size_t klen, uint64_t now_us, gw_rl_result *out);

#endif
