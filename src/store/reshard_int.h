/* reshard_int.h -- the resharding coordinator's state, shared by
 * reshard.c (the phases) and reshard_copy.c (moving rows).
 *
 * One move at a time per deployment: the meta shard's hscale_reshard_job
 * row is the lock (state 'running'). The coordinator thread owns every
 * field but the atomics and what mu guards (phase, error, events), which
 * the status handler reads. */
#ifndef HSCALE_STORE_RESHARD_INT_H
#define HSCALE_STORE_RESHARD_INT_H

#include "store/store_priv.h"

typedef enum st_rs_phase {
    RS_IDLE = 0,
    RS_COPY,          /* capture on, moving users listed, rows copied */
    RS_CATCHUP,       /* changes made meanwhile applied to the new owners */
    RS_HELD,          /* caught up, waiting for resume (hold_before_cutover) */
    RS_CUTOVER,       /* moving users frozen, last changes, map published */
    RS_CLEANUP,       /* moved rows removed from their old shards */
    RS_DONE,
    RS_ROLLING_BACK,
    RS_ROLLED_BACK,
    RS_FAILED,
} st_rs_phase;
const char *st_rs_phase_str(st_rs_phase p);

/* A user changing shard. */
typedef struct rs_mv {
    int64_t user;
    int16_t src, dst;
    bool    used;
} rs_mv;

#define RS_NTABLES 4

typedef struct st_reshard {
    st_store        *s;
    pthread_t        th;
    bool             started;
    pthread_mutex_t  mu;
    st_rs_phase      phase;          /* under mu */
    char             error[256];     /* under mu */
    buf              events;         /* JSON objects, comma-separated, under mu */
    st_reshard_req   req;
    st_map          *newmap;
    st_router       *newrouter;      /* hash: owned here until adopted */
    int              nold;           /* shards before: the sources */
    int              move_dst;       /* op move: the user's new shard; else -1 */
    st_conn          conn[ST_SHARDS_CAP];   /* coordinator sessions, one per shard */
    rs_mv           *mv;
    size_t           mv_cap, mv_len;
    _Atomic int64_t  rows_total, rows_scanned, rows_copied, changes_applied, rows_moved;
    _Atomic int64_t  users_moving;
    _Atomic uint64_t t_start, t_copy0, t_copy1, pause_us, t_end;
    _Atomic bool     rollback_req, resume_req;
    bool             published;
    double           cut_from, cut_to;   /* wall clock (s) of the freeze and the publication */
} st_reshard;

/* The tables a user's rows live in, parents first: name, key, columns,
 * how many, and the column index of user_id. */
typedef struct rs_table {
    const char *name, *pk, *cols;
    int         ncols, user_col;
} rs_table;
extern const rs_table rs_tables[RS_NTABLES];

/* Statements on the coordinator's session of shard i. */
int  rs_exec(st_reshard *rs, int i, const char *sql, const st_val *p, size_t n, st_res **out,
             st_err *err);
rs_mv *rs_find(st_reshard *rs, int64_t user);
/* Records user as moving from src to dst (and in src's hscale_moving). */
int  rs_add(st_reshard *rs, int64_t user, int src, int dst, st_err *err);
/* The owner of user under the new map. */
int  rs_owner(st_reshard *rs, int64_t user);

/* reshard_copy.c */
int     rs_list_moving(st_reshard *rs, st_err *err);
int     rs_copy(st_reshard *rs, st_err *err);
/* One pass over every source's change log: applies the moving users'
 * changes to their new owners, lists users found to move. Returns how
 * many changes of moving users it applied (-1 error); *full is set when a
 * source had more than one batch waiting. */
int64_t rs_drain(st_reshard *rs, bool *full, st_err *err);
/* Removes the moving users' rows from shard i (their old or, on
 * rollback, their new shard). Returns rows removed, -1. */
int64_t rs_delete_users(st_reshard *rs, int i, bool as_target, st_err *err);

/* b's bytes as a C string (a NUL kept after them, not counted). */
static inline const char *rs_cstr(buf *b)
{
    if (buf_append(b, "", 1) < 0)
        return "";
    b->len--;
    return buf_head(b);
}

void rs_event(st_reshard *rs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
