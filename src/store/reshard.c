/* reshard.c -- online resharding, the coordinator: one move (add a shard,
 * change weights, move a directory entry) while instances keep serving.
 *
 *   start     validate; open a session per shard (new shards migrated);
 *             take the meta shard's job row; capture on at every source
 *   copy      list the users whose owner changes (hscale_moving at their
 *             source), copy their rows (reshard_copy.c)
 *   catch-up  apply the change log until a pass finds little
 *   [held]    tests: wait for resume or rollback, still catching up
 *   cutover   freeze_version = V+1 at every source (the fence now refuses
 *             writes of moving users and new users from map V: the pause),
 *             drain the log until a pass applies nothing, publish map V+1
 *             (and the directory entry), min_version = V+1 everywhere (a
 *             stale instance is refused by every shard until it refreshes),
 *             adopt it here. The pause ends at publication: instances that
 *             were refused retry and find V+1.
 *   cleanup   after cleanup_delay (instances poll the map every
 *             replica_check), remove the moved rows from their old shards
 *
 * Rollback is possible until publication: capture and freeze off, the log
 * and the moving list emptied, the copied rows removed from the targets;
 * the map never changed, so nothing routed to them. On PostgreSQL the
 * freeze and the capture switch take a SHARE ROW EXCLUSIVE lock on the
 * four tables for the length of their transaction: it waits for writes in
 * flight (which may have passed the fence or skipped capture under the old
 * setting) and holds new ones back until the setting is visible. SQLite
 * has one writer at a time, which gives the same for free. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "store/reshard_int.h"

#define RS_CATCHUP_PASSES 50
#define RS_CATCHUP_SMALL  200    /* changes in a pass that make the cutover short */

const char *st_rs_phase_str(st_rs_phase p)
{
    static const char *const names[] = { "idle", "copy", "catch_up", "held", "cutover",
                                         "cleanup", "done", "rolling_back", "rolled_back",
                                         "failed" };
    return (unsigned)p < sizeof names / sizeof names[0] ? names[p] : "unknown";
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void iso_now(char *out)
{
    time_t t = time(NULL);
    struct tm tm;
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

static void json_str(buf *out, const char *s)
{
    buf_append_str(out, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            buf_append(out, "\\", 1);
        if ((unsigned char)*s >= 0x20)
            buf_append(out, s, 1);
    }
    buf_append_str(out, "\"");
}

void rs_event(st_reshard *rs, const char *fmt, ...)
{
    char what[300], now[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    iso_now(now);
    log_info("store: reshard: %s", what);
    pthread_mutex_lock(&rs->mu);
    buf_printf(&rs->events, "%s{\"time\":\"%s\",\"phase\":\"%s\",\"what\":",
               rs->events.len ? "," : "", now, st_rs_phase_str(rs->phase));
    json_str(&rs->events, what);
    buf_printf(&rs->events, ",\"rows_copied\":%lld,\"changes_applied\":%lld,"
               "\"users_moving\":%lld,\"pause_ms\":%.1f,\"rows_moved\":%lld}",
               (long long)rs->rows_copied, (long long)rs->changes_applied,
               (long long)rs->users_moving, (double)rs->pause_us / 1e3,
               (long long)rs->rows_moved);
    pthread_mutex_unlock(&rs->mu);
}

static void set_phase(st_reshard *rs, st_rs_phase p)
{
    pthread_mutex_lock(&rs->mu);
    rs->phase = p;
    pthread_mutex_unlock(&rs->mu);
}

int rs_exec(st_reshard *rs, int i, const char *sql, const st_val *p, size_t n, st_res **out,
            st_err *err)
{
    if (out)
        *out = NULL;
    int rc = st_conn_exec(&rs->conn[i], sql, p, n, out, err);
    if (rc < 0) {
        char what[80];
        snprintf(what, sizeof what, "shard %s", rs->newmap->shards[i].name);
        st_err_prefix(err, what);
    }
    return rc;
}

/* ---- the moving set: an open-addressed map user -> (src, dst) ---------- */

static size_t mv_slot(const rs_mv *t, size_t cap, int64_t user)
{
    uint64_t x = (uint64_t)user * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(x >> 17) & (cap - 1);
    while (t[i].used && t[i].user != user)
        i = (i + 1) & (cap - 1);
    return i;
}

rs_mv *rs_find(st_reshard *rs, int64_t user)
{
    if (!rs->mv_cap)
        return NULL;
    rs_mv *m = &rs->mv[mv_slot(rs->mv, rs->mv_cap, user)];
    return m->used ? m : NULL;
}

int rs_add(st_reshard *rs, int64_t user, int src, int dst, st_err *err)
{
    if ((rs->mv_len + 1) * 2 > rs->mv_cap) {
        size_t cap = rs->mv_cap ? rs->mv_cap * 2 : 1024;
        rs_mv *t = calloc(cap, sizeof *t);
        if (!t)
            return st_fail(err, ST_ENOMEM, "out of memory");
        for (size_t i = 0; i < rs->mv_cap; i++)
            if (rs->mv[i].used)
                t[mv_slot(t, cap, rs->mv[i].user)] = rs->mv[i];
        free(rs->mv);
        rs->mv = t;
        rs->mv_cap = cap;
    }
    st_val u = st_int(user);
    if (rs_exec(rs, src, "INSERT INTO hscale_moving (user_id) VALUES (?) ON CONFLICT (user_id)"
                " DO NOTHING", &u, 1, NULL, err) < 0)
        return -1;
    rs->mv[mv_slot(rs->mv, rs->mv_cap, user)] = (rs_mv){ user, (int16_t)src, (int16_t)dst, true };
    rs->mv_len++;
    rs->users_moving = (int64_t)rs->mv_len;
    return 0;
}

int rs_owner(st_reshard *rs, int64_t user)
{
    if (rs->move_dst >= 0)     /* op move: one user changes shard */
        return user == rs->req.user ? rs->move_dst : st_shard_of(rs->s, user);
    if (!rs->newrouter)        /* directory add_shard: nobody moves yet */
        return st_shard_of(rs->s, user);
    return st_router_shard(rs->newrouter, user);
}

/* ---- sessions, locks and the job row ------------------------------------ */

static int rs_session(st_reshard *rs, int i, st_err *err)
{
    st_conn *c = &rs->conn[i];
    const char *url = rs->newmap->shards[i].primary;
    c->drv = st_driver_for_url(url);
    if (!c->drv)
        return st_fail(err, ST_EINVAL, "shard %s: unknown database url", rs->newmap->shards[i].name);
    if (c->drv->open(url, &c->h, err) < 0) {
        c->h = NULL;
        return -1;
    }
    if (st_schema_migrate(c, err) < 0)
        return -1;
    if (c->drv == &st_driver_sqlite)
        return c->drv->set_version(c->h, ST_COORD_VERSION, err) < 0 ? -1 :
               st_conn_exec(c, "PRAGMA foreign_keys=OFF", NULL, 0, NULL, err);
    /* No triggers (fence, capture) and no foreign keys for the copy: needs
     * a superuser or SET privilege on session_replication_role. */
    return st_conn_exec(c, "SET session_replication_role = replica", NULL, 0, NULL, err);
}

static void rs_sessions_close(st_reshard *rs)
{
    for (int i = 0; i < ST_SHARDS_CAP; i++) {
        if (rs->conn[i].h)
            rs->conn[i].drv->close(rs->conn[i].h);
        rs->conn[i].h = NULL;
    }
}

/* sql in a transaction that, on PostgreSQL, first waits for the writes in
 * flight on the four tables and holds new ones until it commits. */
static int rs_locked(st_reshard *rs, int i, const char *sql, st_err *err)
{
    bool pg = rs->conn[i].drv == &st_driver_pg;
    if (rs_exec(rs, i, pg ? "BEGIN" : "BEGIN IMMEDIATE", NULL, 0, NULL, err) < 0)
        return -1;
    if ((pg && rs_exec(rs, i, "LOCK TABLE users, facilities, surgeons, cases IN SHARE ROW"
                       " EXCLUSIVE MODE", NULL, 0, NULL, err) < 0) ||
        rs_exec(rs, i, sql, NULL, 0, NULL, err) < 0 ||
        rs_exec(rs, i, "COMMIT", NULL, 0, NULL, err) < 0) {
        rs_exec(rs, i, "ROLLBACK", NULL, 0, NULL, NULL);
        return -1;
    }
    return 0;
}

static int rs_job(st_reshard *rs, const char *state, bool take, st_err *err)
{
    char now[32], owner[96];
    iso_now(now);
    snprintf(owner, sizeof owner, "pid %d", (int)getpid());
    st_val p[3] = { st_text(state), st_text(owner), st_text(now) };
    if (!take)
        return rs_exec(rs, 0, "UPDATE hscale_reshard_job SET state = ? WHERE id = 1", p, 1,
                       NULL, err);
    st_res *r = NULL;
    if (rs_exec(rs, 0, "INSERT INTO hscale_reshard_job (id, state, owner, started_at) VALUES"
                " (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
                " owner = excluded.owner, started_at = excluded.started_at"
                " WHERE hscale_reshard_job.state <> 'running'", p, 3, &r, err) < 0)
        return -1;
    int64_t n = st_res_changes(r);
    st_res_free(r);
    if (n != 1)
        return st_fail(err, ST_ECONFLICT, "a resharding is already running (meta shard %s:"
                       " hscale_reshard_job)", rs->newmap->shards[0].name);
    return 0;
}

/* ---- the phases ----------------------------------------------------------- */

static int rs_undo(st_reshard *rs, st_err *err)
{
    int rc = 0;
    for (int i = 0; i < rs->nold; i++)
        if (rs_locked(rs, i, "UPDATE hscale_fence SET capture = 0, freeze_version = 0"
                      " WHERE id = 1", err) < 0 ||
            rs_exec(rs, i, "DELETE FROM hscale_moving", NULL, 0, NULL, err) < 0 ||
            rs_exec(rs, i, "DELETE FROM hscale_changelog", NULL, 0, NULL, err) < 0)
            rc = -1;
    int64_t removed = 0;
    for (size_t i = 0; i < rs->newmap->n; i++) {
        int64_t n = rs_delete_users(rs, (int)i, true, err);
        if (n < 0)
            rc = -1;
        else
            removed += n;
    }
    if (rc == 0)
        rs_event(rs, "rolled back: %lld copied rows removed from their would-be owners,"
                 " map stays v%lld", (long long)removed, (long long)rs->newmap->version - 1);
    return rc;
}

static int rs_catchup(st_reshard *rs, st_err *err)
{
    for (int pass = 0; pass < RS_CATCHUP_PASSES && !rs->rollback_req; pass++) {
        bool full;
        int64_t n = rs_drain(rs, &full, err);
        if (n < 0)
            return -1;
        if (!full && n < RS_CATCHUP_SMALL)
            break;
    }
    return 0;
}

/* Waits (PostgreSQL) for writes in flight at the sources to commit, so the
 * change log holds every write that passed the fence. */
static int rs_barrier(st_reshard *rs, st_err *err)
{
    for (int i = 0; i < rs->nold; i++)
        if (rs->conn[i].drv == &st_driver_pg && rs_locked(rs, i, "SELECT 1", err) < 0)
            return -1;
    return 0;
}

static int rs_cutover(st_reshard *rs, st_err *err)
{
    int64_t v = rs->newmap->version;
    char sql[160];
    uint64_t t0 = st_now_us();
    rs->cut_from = wall_now();
    snprintf(sql, sizeof sql, "UPDATE hscale_fence SET freeze_version = %lld WHERE id = 1",
             (long long)v);
    for (int i = 0; i < rs->nold; i++)
        if (rs_locked(rs, i, sql, err) < 0)
            return -1;
    /* Frozen: no moving user's row changes any more. Drain until a whole
     * pass applies nothing; a user found to move is fenced by rs_add, and
     * the barrier lets writes that beat its fence reach the log. */
    for (int pass = 0; ; pass++) {
        size_t before = rs->mv_len;
        bool full;
        int64_t n = rs_drain(rs, &full, err);
        if (n < 0)
            return -1;
        bool grew = rs->mv_len != before;
        if (grew && rs_barrier(rs, err) < 0)
            return -1;
        if (n == 0 && !full && !grew)
            break;
        if (pass > 1000)
            return st_fail(err, ST_ETIMEOUT, "cutover: the change log does not run dry");
    }
    if (rs->rollback_req)
        return 0;
    /* Publish: from here on the move is done (no rollback). */
    buf body;
    buf_init(&body);
    st_map_to_json(rs->newmap, &body);
    char now[32];
    iso_now(now);
    st_val p[3] = { st_int(v), st_textn(buf_head(&body), body.len), st_text(now) };
    int rc = rs_exec(rs, 0, "BEGIN", NULL, 0, NULL, err);
    if (rc == 0)
        rc = rs_exec(rs, 0, "INSERT INTO hscale_shard_map (version, body, created_at) VALUES"
                     " (?, ?, ?)", p, 3, NULL, err);
    if (rc == 0 && rs->move_dst >= 0) {
        st_val d[2] = { st_int(rs->req.user), st_text(rs->newmap->shards[rs->move_dst].name) };
        rc = rs_exec(rs, 0, "INSERT INTO shard_directory (user_id, shard) VALUES (?, ?)"
                     " ON CONFLICT (user_id) DO UPDATE SET shard = excluded.shard", d, 2, NULL, err);
    }
    if (rc == 0)
        rc = rs_exec(rs, 0, "COMMIT", NULL, 0, NULL, err);
    buf_free(&body);
    if (rc < 0) {
        rs_exec(rs, 0, "ROLLBACK", NULL, 0, NULL, NULL);
        return -1;
    }
    rs->published = true;
    rs->pause_us = st_now_us() - t0;
    rs->cut_to = wall_now();
    snprintf(sql, sizeof sql, "UPDATE hscale_fence SET min_version = %lld, capture = 0"
             " WHERE id = 1", (long long)v);
    for (size_t i = 0; i < rs->newmap->n; i++)
        if (rs_exec(rs, (int)i, sql, NULL, 0, NULL, err) < 0)
            return -1;
    st_err e2;
    if (st_store_map_refresh(rs->s, &e2) < 0)
        log_warn("store: reshard: adopting map v%lld here: %s", (long long)v, e2.msg);
    rs_event(rs, "cutover: map v%lld published; writes of moving users paused %.1f ms",
             (long long)v, (double)rs->pause_us / 1e3);
    return 0;
}

static int rs_cleanup(st_reshard *rs, st_err *err)
{
    for (uint64_t waited = 0; waited < rs->s->rs_cleanup_delay; waited += 50000)
        usleep(50000);
    for (int i = 0; i < rs->nold; i++) {
        int64_t n = rs_delete_users(rs, i, false, err);
        if (n < 0 ||
            rs_exec(rs, i, "DELETE FROM hscale_moving", NULL, 0, NULL, err) < 0 ||
            rs_exec(rs, i, "UPDATE hscale_fence SET freeze_version = 0 WHERE id = 1", NULL, 0,
                    NULL, err) < 0 ||
            rs_exec(rs, i, "DELETE FROM hscale_changelog", NULL, 0, NULL, err) < 0)
            return -1;
        rs->rows_moved += n;
    }
    rs_event(rs, "cleanup: %lld moved rows removed from their old shards",
             (long long)rs->rows_moved);
    return 0;
}

static void rs_count_rows(st_reshard *rs)
{
    int64_t total = 0;
    for (int i = 0; i < rs->nold; i++)
        for (size_t t = 0; t < RS_NTABLES; t++) {
            char sql[64];
            snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", rs_tables[t].name);
            st_res *r = NULL;
            if (rs_exec(rs, i, sql, NULL, 0, &r, NULL) == 0)
                total += st_res_int(r, 0, 0);
            st_res_free(r);
        }
    rs->rows_total = total;
}

static void *rs_main(void *arg)
{
    st_reshard *rs = arg;
    st_err err = { 0 };
    rs_count_rows(rs);
    rs_event(rs, "%s: map v%lld -> v%lld, %lld rows on %d source shards", rs->req.op,
             (long long)rs->newmap->version - 1, (long long)rs->newmap->version,
             (long long)rs->rows_total, rs->nold);
    if (rs_list_moving(rs, &err) < 0)
        goto fail;
    rs_event(rs, "copy: %lld users change shard", (long long)rs->users_moving);
    rs->t_copy0 = st_now_us();
    if (rs_copy(rs, &err) < 0)
        goto fail;
    rs->t_copy1 = st_now_us();
    if (rs->rollback_req)
        goto rollback;
    double secs = (double)(rs->t_copy1 - rs->t_copy0) / 1e6;
    rs_event(rs, "copy: %lld rows copied in %.2f s (%.0f rows/s)", (long long)rs->rows_copied,
             secs, secs > 0 ? (double)rs->rows_copied / secs : 0);
    set_phase(rs, RS_CATCHUP);
    if (rs_catchup(rs, &err) < 0)
        goto fail;
    rs_event(rs, "catch-up: %lld changes applied", (long long)rs->changes_applied);
    if (rs->req.hold_before_cutover && !rs->rollback_req) {
        set_phase(rs, RS_HELD);
        rs_event(rs, "held before cutover");
        while (!rs->resume_req && !rs->rollback_req) {
            bool full;
            if (rs_drain(rs, &full, &err) < 0)
                goto fail;
            usleep(50000);
        }
    }
    if (rs->rollback_req)
        goto rollback;
    set_phase(rs, RS_CUTOVER);
    if (rs_cutover(rs, &err) < 0)
        goto fail;
    if (!rs->published)
        goto rollback;
    set_phase(rs, RS_CLEANUP);
    if (rs_cleanup(rs, &err) < 0)
        goto fail;
    rs_job(rs, "done", false, NULL);
    set_phase(rs, RS_DONE);
    rs->t_end = st_now_us();
    rs_event(rs, "done: %lld users, %lld rows moved in %.2f s, longest write pause %.1f ms",
             (long long)rs->users_moving, (long long)rs->rows_moved,
             (double)(rs->t_end - rs->t_start) / 1e6, (double)rs->pause_us / 1e3);
    rs_sessions_close(rs);
    return NULL;
rollback:
    set_phase(rs, RS_ROLLING_BACK);
    if (rs_undo(rs, &err) < 0)
        goto fail;
    rs_job(rs, "rolled_back", false, NULL);
    set_phase(rs, RS_ROLLED_BACK);
    rs->t_end = st_now_us();
    rs_sessions_close(rs);
    return NULL;
fail:
    log_error("store: reshard failed: %s", err.msg);
    pthread_mutex_lock(&rs->mu);
    snprintf(rs->error, sizeof rs->error, "%s", err.msg);
    pthread_mutex_unlock(&rs->mu);
    if (!rs->published) {
        st_err e2;
        if (rs_undo(rs, &e2) < 0)
            log_error("store: reshard: undo after failure: %s", e2.msg);
    }
    rs_job(rs, "failed", false, NULL);
    set_phase(rs, RS_FAILED);
    rs->t_end = st_now_us();
    rs_event(rs, "failed%s: %s", rs->published ? " after publishing the map" : ", rolled back",
             err.msg);
    rs_sessions_close(rs);
    return NULL;
}

/* ---- the API ------------------------------------------------------------- */

static bool rs_running(const st_reshard *rs)
{
    return rs && rs->phase != RS_IDLE && rs->phase != RS_DONE && rs->phase != RS_ROLLED_BACK &&
           rs->phase != RS_FAILED;
}

static void rs_free(st_reshard *rs)
{
    if (!rs)
        return;
    if (rs->started) {
        rs->rollback_req = true;
        pthread_join(rs->th, NULL);
    }
    rs_sessions_close(rs);
    if (rs->newrouter && rs->newrouter != rs->s->router) {
        bool adopted = false;
        for (size_t i = 0; i < rs->s->nretired; i++)
            adopted |= rs->s->retired[i] == rs->newrouter;
        if (!adopted)
            st_router_free(rs->newrouter);
    }
    free(rs->newmap);
    free(rs->mv);
    buf_free(&rs->events);
    pthread_mutex_destroy(&rs->mu);
    free(rs);
}

void st_reshard_free(st_store *s)
{
    rs_free(s->rs);
    s->rs = NULL;
}

static int shard_named(const st_map *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->shards[i].name, name))
            return (int)i;
    return -1;
}

/* The map after the move, or -1 naming what is wrong with the request. */
static int rs_plan(st_reshard *rs, const st_reshard_req *q, st_err *err)
{
    st_store *s = rs->s;
    st_map *m = rs->newmap;
    st_map_current(s, m);
    m->version++;
    rs->nold = (int)m->n;
    rs->move_dst = -1;
    if (s->strategy == ST_ROUTE_RANGE)
        return st_fail(err, ST_EINVAL, "strategy range cannot be resharded online;"
                       " use hash or directory");
    if (!strcmp(q->op, "add_shard")) {
        if (!q->name[0] || strspn(q->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789_-") != strlen(q->name))
            return st_fail(err, ST_EINVAL, "name: expected a shard name of letters, digits,"
                           " '_' and '-'");
        if (shard_named(m, q->name) >= 0)
            return st_fail(err, ST_EINVAL, "name: shard '%s' exists already", q->name);
        if (m->n >= ST_SHARDS_CAP)
            return st_fail(err, ST_EINVAL, "name: at most %d shards", ST_SHARDS_CAP);
        if (q->weight < 0 || q->weight > 100)
            return st_fail(err, ST_EINVAL, "weight: expected a number in (0, 100]");
        st_mapshard *ns = &m->shards[m->n];
        memset(ns, 0, sizeof *ns);
        snprintf(ns->name, sizeof ns->name, "%s", q->name);
        if (q->primary[0])
            snprintf(ns->primary, sizeof ns->primary, "%s", q->primary);
        else if (strlen(s->data_dir) + strlen(q->name) + 12 > sizeof ns->primary)
            return st_fail(err, ST_EINVAL, "primary: data_dir too long; give a url");
        else
            snprintf(ns->primary, sizeof ns->primary, "sqlite:%.400s/%.64s.db", s->data_dir,
                     q->name);
        if (!st_driver_for_url(ns->primary))
            return st_fail(err, ST_EINVAL, "primary: expected sqlite:PATH or postgresql://...");
        ns->weight = q->weight > 0 ? q->weight : 1;
        m->n++;
    } else if (!strcmp(q->op, "set_weights")) {
        if (s->strategy != ST_ROUTE_HASH)
            return st_fail(err, ST_EINVAL, "op: set_weights needs strategy hash");
        if (!q->nweights)
            return st_fail(err, ST_EINVAL, "weights: expected {\"shard\": weight, ...}");
        for (size_t k = 0; k < q->nweights; k++) {
            int i = shard_named(m, q->names[k]);
            if (i < 0)
                return st_fail(err, ST_EINVAL, "weights: no shard named '%s'", q->names[k]);
            if (q->weights[k] <= 0 || q->weights[k] > 100)
                return st_fail(err, ST_EINVAL, "weights.%s: expected a number in (0, 100]",
                               q->names[k]);
            m->shards[i].weight = q->weights[k];
        }
    } else if (!strcmp(q->op, "move")) {
        if (s->strategy != ST_ROUTE_DIRECTORY)
            return st_fail(err, ST_EINVAL, "op: move needs strategy directory");
        if (q->user <= 0)
            return st_fail(err, ST_EINVAL, "user_id: expected a positive integer");
        if ((rs->move_dst = shard_named(m, q->name)) < 0)
            return st_fail(err, ST_EINVAL, "shard: no shard named '%s'", q->name);
        if (st_shard_of(s, q->user) == rs->move_dst)
            return st_fail(err, ST_EINVAL, "shard: user %lld is on shard '%s' already",
                           (long long)q->user, q->name);
    } else {
        return st_fail(err, ST_EINVAL, "op: expected add_shard, set_weights or move");
    }
    if (s->strategy == ST_ROUTE_HASH && rs->move_dst < 0) {
        if (!(rs->newrouter = st_map_router(s, m, err)))
            return -1;
    }
    return 0;
}

int st_reshard_start(st_store *s, const st_reshard_req *req, st_err *err)
{
    pthread_mutex_lock(&s->rs_mu);
    if (rs_running(s->rs)) {
        pthread_mutex_unlock(&s->rs_mu);
        return st_fail(err, ST_ECONFLICT, "a resharding is running here (%s)",
                       st_rs_phase_str(s->rs->phase));
    }
    st_reshard_free(s);
    st_reshard *rs = calloc(1, sizeof *rs);
    if (!rs || !(rs->newmap = malloc(sizeof *rs->newmap))) {
        free(rs);
        pthread_mutex_unlock(&s->rs_mu);
        return st_fail(err, ST_ENOMEM, "out of memory");
    }
    rs->s = s;
    rs->req = *req;
    pthread_mutex_init(&rs->mu, NULL);
    buf_init(&rs->events);
    s->rs = rs;
    if (st_store_map_refresh(s, err) < 0)
        goto fail;
    if (rs_plan(rs, req, err) < 0)
        goto fail;
    for (size_t i = 0; i < rs->newmap->n; i++)
        if (rs_session(rs, (int)i, err) < 0) {
            char what[80];
            snprintf(what, sizeof what, "shard %s", rs->newmap->shards[i].name);
            st_err_prefix(err, what);
            goto fail;
        }
    if (st_map_stored_version(s, err) != rs->newmap->version - 1) {
        st_fail(err, ST_ECONFLICT, "the shard map changed meanwhile; retry");
        goto fail;
    }
    if (rs_job(rs, "running", true, err) < 0)
        goto fail;
    /* Clean slate at the sources, then capture on: every change from here
     * on is in the log, including those racing the copy. */
    for (int i = 0; i < rs->nold; i++)
        if (rs_exec(rs, i, "DELETE FROM hscale_moving", NULL, 0, NULL, err) < 0 ||
            rs_exec(rs, i, "DELETE FROM hscale_changelog", NULL, 0, NULL, err) < 0 ||
            rs_locked(rs, i, "UPDATE hscale_fence SET capture = 1, freeze_version = 0"
                      " WHERE id = 1", err) < 0) {
            rs_job(rs, "failed", false, NULL);
            goto fail;
        }
    rs->t_start = st_now_us();
    rs->phase = RS_COPY;
    if (pthread_create(&rs->th, NULL, rs_main, rs) != 0) {
        st_fail(err, ST_ENOMEM, "cannot start the resharding thread");
        rs_undo(rs, NULL);
        rs_job(rs, "failed", false, NULL);
        rs->phase = RS_FAILED;
        goto fail_keep;
    }
    rs->started = true;
    pthread_mutex_unlock(&s->rs_mu);
    return 0;
fail:
    rs->phase = RS_FAILED;
fail_keep:
    snprintf(rs->error, sizeof rs->error, "%s", err ? err->msg : "");
    rs_sessions_close(rs);
    pthread_mutex_unlock(&s->rs_mu);
    return -1;
}

int st_reshard_rollback(st_store *s, st_err *err)
{
    pthread_mutex_lock(&s->rs_mu);
    st_reshard *rs = s->rs;
    int rc = 0;
    if (!rs_running(rs))
        rc = st_fail(err, ST_EINVAL, "no resharding is running here");
    else if (rs->published || rs->phase == RS_CLEANUP)
        rc = st_fail(err, ST_ECONFLICT, "the new shard map is published: too late to roll back");
    else
        rs->rollback_req = true;
    pthread_mutex_unlock(&s->rs_mu);
    return rc;
}

int st_reshard_resume(st_store *s, st_err *err)
{
    pthread_mutex_lock(&s->rs_mu);
    int rc = 0;
    if (!rs_running(s->rs))
        rc = st_fail(err, ST_EINVAL, "no resharding is running here");
    else
        s->rs->resume_req = true;
    pthread_mutex_unlock(&s->rs_mu);
    return rc;
}

void st_reshard_status_json(st_store *s, buf *out)
{
    pthread_mutex_lock(&s->rs_mu);
    st_reshard *rs = s->rs;
    if (!rs) {
        buf_printf(out, "{\"state\":\"idle\",\"map_version\":%lld,\"events\":[]}",
                   (long long)s->map_version);
        pthread_mutex_unlock(&s->rs_mu);
        return;
    }
    pthread_mutex_lock(&rs->mu);
    uint64_t now = st_now_us();
    uint64_t c0 = rs->t_copy0, c1 = rs->t_copy1 ? rs->t_copy1 : now;
    double copy_s = c0 ? (double)(c1 - c0) / 1e6 : 0;
    uint64_t end = rs->t_end ? rs->t_end : now;
    buf_printf(out, "{\"state\":\"%s\",\"op\":", st_rs_phase_str(rs->phase));
    json_str(out, rs->req.op);
    buf_printf(out, ",\"map_version\":%lld,\"from_version\":%lld,\"to_version\":%lld,"
               "\"published\":%s,\"users_moving\":%lld,\"rows_total\":%lld,"
               "\"rows_scanned\":%lld,\"rows_copied\":%lld,\"copy_seconds\":%.3f,"
               "\"copy_rows_per_second\":%.0f,\"changes_applied\":%lld,\"pause_ms\":%.1f,"
               "\"rows_moved\":%lld,\"elapsed_seconds\":%.3f,"
               "\"cutover_window\":[%.6f,%.6f],\"error\":",
               (long long)s->map_version, (long long)rs->newmap->version - 1,
               (long long)rs->newmap->version, rs->published ? "true" : "false",
               (long long)rs->users_moving, (long long)rs->rows_total,
               (long long)rs->rows_scanned, (long long)rs->rows_copied, copy_s,
               copy_s > 0 ? (double)rs->rows_copied / copy_s : 0,
               (long long)rs->changes_applied, (double)rs->pause_us / 1e3,
               (long long)rs->rows_moved,
               rs->t_start ? (double)(end - rs->t_start) / 1e6 : 0, rs->cut_from, rs->cut_to);
    if (rs->error[0])
        json_str(out, rs->error);
    else
        buf_append_str(out, "null");
    buf_append_str(out, ",\"events\":[");
    buf_append(out, buf_head(&rs->events), rs->events.len);
    buf_append_str(out, "]}");
    pthread_mutex_unlock(&rs->mu);
    pthread_mutex_unlock(&s->rs_mu);
}
