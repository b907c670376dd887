/* ctl_as_int.h -- the autoscaler's shared state, internal to
 * ctl_autoscaler.c (the loop: scrape, decide, record) and ctl_as_api.c (the
 * scaling API that reads and steers it).
 *
 * One mutex guards everything a handler may see: config, scaler, history,
 * the sample ring and the last decision. The scrape state (previous
 * scrapes, the gateway's last view) belongs to the loop thread alone, so
 * the slow part of a check (HTTP fetches) runs without the lock. */
#ifndef HSCALE_CONTROL_CTL_AS_INT_H
#define HSCALE_CONTROL_CTL_AS_INT_H

#include <pthread.h>

#include "control/control.h"
#include "control/ctl_autoscale.h"

/* One point of GET /api/v1/scaling/metrics' series. */
typedef struct as_sample {
    int64_t t;                 /* unix seconds */
    int     instances, ready;
    double  rps, p95_ms, error_rate, cpu, mem;
} as_sample;

/* One instance as the last check saw it. */
typedef struct as_inst {
    ctl_instance_info info;
    double rps, p95_ms, cpu, mem, in_flight;
    ctl_source cpu_src, mem_src;
} as_inst;

/* Previous scrape and OS sample of one instance, by id (loop thread only). */
typedef struct as_prev {
    char         id[32];
    ctl_scrape   s;
    ctl_procstat ps;          /* ps.ok false: no pid, or its root is gone */
} as_prev;

struct ctl_autoscaler {
    const ctl_config *c;
    pthread_mutex_t   mu;
    /* -- under mu -- */
    ctl_autoscale_cfg cfg;        /* owned copy (cfg_free) */
    ctl_scaler       *sc;
    ctl_history      *hist;
    int               mgr_desired;   /* the manager's count at the last look */
    bool              resync;        /* enabled again: adopt mgr_desired first */
    bool              deploy_hold_noted;  /* this deploy's held scale-in is in the history */
    as_sample        *ring;
    size_t            ring_cap, ring_head, ring_len;
    as_inst          *view;
    size_t            nview, view_cap;
    struct metric_family *g_cpu, *g_mem;   /* hscale_control_instance_*_percent */
    char            (*g_ids)[32];   /* instances those gauges have series for */
    size_t            ng_ids, g_ids_cap;
    bool              have_last;
    ctl_decision      last;          /* the last check's decision */
    ctl_pool_metrics  pool;          /* the last check's aggregate */
    ctl_queue_reading qlast;         /* the queue policy's last poll (on: configured) */
    uint64_t          checks;
    /* -- loop thread only -- */
    uint64_t          mem_total;     /* MemTotal, read once */
    ctl_ps_env        ps_env;        /* /proc, clock ticks, the cgroup2 mount */
    ctl_ptable        ptable;        /* every process, read once per check */
    as_prev          *prev, *cur;
    size_t            nprev, prev_cap, cur_cap;
    ctl_gwm_scrape   *gw_prev, *gw_cur;
    ctl_inst_metrics *m;
    size_t            m_cap;
    ctl_decision      dec;           /* scratch for the step */
    ctl_queue_src    *qsrc;          /* the queue policy's poller */
    ctl_queue_reading qread;         /* its last reading */
    int               qstate;        /* 0 not polled, 1 ok, -1 failing: logged on changes */
};

uint64_t ctl_as_now_us(void);
/* Appends an event to the history (under mu); logs a failure. */
void     ctl_as_record(ctl_autoscaler *as, const ctl_event *e);
/* The routes of the scaling API beyond the manager's (ctl_as_api.c). */
int      ctl_as_routes(void *arg, struct http_router *r);
void     ctl_as_status_json(void *arg, buf *out);
int      ctl_as_set_desired(void *arg, int count, char *err, size_t errlen);
/* Keeps an audit event (one JSON object) in the scaling history. */
void     ctl_as_audit(void *arg, const char *json, size_t len);

#endif
