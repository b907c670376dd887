/* reshard_copy.c -- moving rows for the resharding coordinator: listing
 * the users that change owner, the bulk copy, the change-log catch-up and
 * the removal of moved rows.
 *
 * Every write here is idempotent: a row is copied by upsert (insert, or
 * overwrite on its key) and a change is applied by reading the row's
 * current state on its old shard and upserting it (or deleting it when it
 * is gone) on the new one, so a change seen twice, or a copy that raced a
 * change, converges to the old shard's state. Keys (user_id, case_id...)
 * are unique across shards (st_id_next), so a key names one row anywhere.
 * The coordinator's sessions skip the fence and capture triggers and the
 * foreign keys (see fence.c), so rows may arrive in any order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/reshard_int.h"

const rs_table rs_tables[RS_NTABLES] = {
    { "users", "user_id", "user_id, npi_number, first_name, last_name, email, created_at", 6, 0 },
    { "facilities", "facility_id", "facility_id, user_id, facility_name, created_at", 4, 1 },
    { "surgeons", "surgeon_id", "surgeon_id, user_id, first_name, last_name, specialty,"
      " created_at", 6, 1 },
    { "cases", "case_id", "case_id, user_id, facility_id, surgeon_id, patient_first,"
      " patient_last, patient_dob, case_date, case_status, created_date, updated_at", 11, 1 },
};

static const rs_table *table_named(const char *name)
{
    for (size_t t = 0; t < RS_NTABLES; t++)
        if (!strcmp(rs_tables[t].name, name))
            return &rs_tables[t];
    return NULL;
}

/* INSERT ... VALUES (row), ... (nrows of them) ON CONFLICT (pk) DO UPDATE
 * SET every other column. Several rows per statement save round trips
 * (a page of the copy holds distinct keys, so no row is hit twice). */
static void upsert_sql_n(const rs_table *t, int nrows, buf *out)
{
    buf_printf(out, "INSERT INTO %s (%s) VALUES ", t->name, t->cols);
    for (int r = 0; r < nrows; r++) {
        buf_append_str(out, r ? ", (" : "(");
        for (int i = 0; i < t->ncols; i++)
            buf_append_str(out, i ? ", ?" : "?");
        buf_append_str(out, ")");
    }
    buf_printf(out, " ON CONFLICT (%s) DO UPDATE SET ", t->pk);
    char cols[256];
    snprintf(cols, sizeof cols, "%s", t->cols);
    bool first = true;
    for (char *save = NULL, *c = strtok_r(cols, ", ", &save); c; c = strtok_r(NULL, ", ", &save)) {
        if (!strcmp(c, t->pk))
            continue;
        buf_printf(out, "%s%s = excluded.%s", first ? "" : ", ", c, c);
        first = false;
    }
}

static void upsert_sql(const rs_table *t, buf *out) { upsert_sql_n(t, 1, out); }

/* Parameters per statement stay within what every driver binds. */
#define RS_MAX_PARAMS 64

/* Lazily opened transactions on the destinations of one batch. */
typedef struct rs_txset { bool open[ST_SHARDS_CAP]; } rs_txset;

static int tx_want(st_reshard *rs, rs_txset *tx, int i, st_err *err)
{
    if (tx->open[i])
        return 0;
    if (rs_exec(rs, i, rs->conn[i].drv == &st_driver_sqlite ? "BEGIN IMMEDIATE" : "BEGIN",
                NULL, 0, NULL, err) < 0)
        return -1;
    tx->open[i] = true;
    return 0;
}

static int tx_end(st_reshard *rs, rs_txset *tx, bool commit, st_err *err)
{
    int rc = 0;
    for (int i = 0; i < ST_SHARDS_CAP; i++) {
        if (!tx->open[i])
            continue;
        tx->open[i] = false;
        if (commit && rc == 0) {
            if (rs_exec(rs, i, "COMMIT", NULL, 0, NULL, err) < 0) {
                rs_exec(rs, i, "ROLLBACK", NULL, 0, NULL, NULL);
                rc = -1;
            }
        } else {
            rs_exec(rs, i, "ROLLBACK", NULL, 0, NULL, NULL);
        }
    }
    return rc;
}

static void row_vals(const st_res *r, size_t row, st_val *v, size_t n)
{
    for (size_t c = 0; c < n; c++) {
        if (st_res_is_null(r, row, c)) {
            v[c] = st_null();
        } else if (st_res_type(r, row, c) == ST_INT) {
            v[c] = st_int(st_res_int(r, row, c));
        } else {
            size_t len;
            const char *t = st_res_text(r, row, c, &len);
            v[c] = st_textn(t, len);
        }
    }
}

int rs_list_moving(st_reshard *rs, st_err *err)
{
    for (int i = 0; i < rs->nold; i++) {
        int64_t after = INT64_MIN;
        for (;;) {
            st_res *r = NULL;
            st_val p[2] = { st_int(after), st_int(rs->s->rs_batch * 4) };
            if (rs_exec(rs, i, "SELECT user_id FROM users WHERE user_id > ? ORDER BY user_id"
                        " LIMIT ?", p, 2, &r, err) < 0)
                return -1;
            size_t n = st_res_rows(r);
            rs_txset tx = { { false } };
            int rc = 0;
            for (size_t k = 0; k < n && rc == 0; k++) {
                int64_t u = st_res_int(r, k, 0);
                after = u;
                int dst = rs_owner(rs, u);
                if (dst >= 0 && dst != i && !rs_find(rs, u))
                    rc = tx_want(rs, &tx, i, err) < 0 ? -1 : rs_add(rs, u, i, dst, err);
            }
            st_res_free(r);
            if (tx_end(rs, &tx, rc == 0, err) < 0 || rc < 0)
                return -1;
            if (n < (size_t)rs->s->rs_batch * 4)
                break;
        }
    }
    return 0;
}

/* Sends the rows queued for one destination as multi-row upserts. */
static int flush_rows(st_reshard *rs, int dst, const rs_table *t, const st_val *v, int nrows,
                      st_err *err)
{
    int per = RS_MAX_PARAMS / t->ncols;
    for (int at = 0; at < nrows; at += per) {
        int k = nrows - at < per ? nrows - at : per;
        buf sql;
        buf_init(&sql);
        upsert_sql_n(t, k, &sql);
        int rc = rs_exec(rs, dst, rs_cstr(&sql), v + (size_t)at * (size_t)t->ncols,
                         (size_t)k * (size_t)t->ncols, NULL, err);
        buf_free(&sql);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Copies one table's rows of moving users from source i, keyset-paged;
 * each page goes to its destinations in one transaction each. */
static int copy_table(st_reshard *rs, int i, const rs_table *t, st_err *err)
{
    char sel[512];
    snprintf(sel, sizeof sel, "SELECT %s FROM %s WHERE %s > ? ORDER BY %s LIMIT ?",
             t->cols, t->name, t->pk, t->pk);
    int64_t after = INT64_MIN;
    int rc = 0;
    size_t batch = (size_t)rs->s->rs_batch;
    st_val *v = malloc(batch * (size_t)t->ncols * sizeof *v);
    int *dst_of = malloc(batch * sizeof *dst_of);
    if (!v || !dst_of) {
        free(v);
        free(dst_of);
        return st_fail(err, ST_ENOMEM, "out of memory");
    }
    while (rc == 0 && !rs->rollback_req) {
        st_res *r = NULL;
        st_val p[2] = { st_int(after), st_int(rs->s->rs_batch) };
        if (rs_exec(rs, i, sel, p, 2, &r, err) < 0) {
            rc = -1;
            break;
        }
        size_t n = st_res_rows(r);
        for (size_t k = 0; k < n; k++) {
            after = st_res_int(r, k, 0);
            rs_mv *m = rs_find(rs, st_res_int(r, k, (size_t)t->user_col));
            dst_of[k] = m && m->src == i ? m->dst : -1;
        }
        rs_txset tx = { { false } };
        int64_t copied = 0;
        /* one destination at a time: its rows of the page, in key order */
        for (size_t k = 0; k < n && rc == 0; k++) {
            int d = dst_of[k];
            if (d < 0)
                continue;
            int nrows = 0;
            for (size_t q = k; q < n; q++) {
                if (dst_of[q] != d)
                    continue;
                row_vals(r, q, v + (size_t)nrows * (size_t)t->ncols, (size_t)t->ncols);
                nrows++;
                dst_of[q] = -1;
            }
            if (tx_want(rs, &tx, d, err) < 0 || flush_rows(rs, d, t, v, nrows, err) < 0)
                rc = -1;
            else
                copied += nrows;
        }
        if (tx_end(rs, &tx, rc == 0, err) < 0)
            rc = -1;
        st_res_free(r);
        if (rc == 0) {
            rs->rows_copied += copied;
            rs->rows_scanned += (int64_t)n;
        }
        if (n < batch)
            break;
    }
    free(v);
    free(dst_of);
    return rc;
}

int rs_copy(st_reshard *rs, st_err *err)
{
    for (size_t t = 0; t < RS_NTABLES; t++)
        for (int i = 0; i < rs->nold; i++)
            if (!rs->rollback_req && copy_table(rs, i, &rs_tables[t], err) < 0)
                return -1;
    return 0;
}

/* Makes row (t, pk) on m->dst what it is on m->src now. */
static int sync_row(st_reshard *rs, const rs_mv *m, const rs_table *t, int64_t pk,
                    rs_txset *tx, st_err *err)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE %s = ?", t->cols, t->name, t->pk);
    st_val key = st_int(pk);
    st_res *r = NULL;
    if (rs_exec(rs, m->src, sql, &key, 1, &r, err) < 0)
        return -1;
    int rc = tx_want(rs, tx, m->dst, err);
    if (rc == 0 && st_res_rows(r)) {
        st_val v[16];
        row_vals(r, 0, v, (size_t)t->ncols);
        buf up;
        buf_init(&up);
        upsert_sql(t, &up);
        rc = rs_exec(rs, m->dst, rs_cstr(&up), v, (size_t)t->ncols, NULL, err);
        buf_free(&up);
    } else if (rc == 0) {
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE %s = ?", t->name, t->pk);
        rc = rs_exec(rs, m->dst, sql, &key, 1, NULL, err);
    }
    st_res_free(r);
    return rc;
}

#define RS_DRAIN_BATCH 2000

int64_t rs_drain(st_reshard *rs, bool *full, st_err *err)
{
    int64_t applied = 0;
    *full = false;
    for (int i = 0; i < rs->nold; i++) {
        st_res *r = NULL;
        st_val lim = st_int(RS_DRAIN_BATCH);
        if (rs_exec(rs, i, "SELECT seq, tbl, pk, user_id FROM hscale_changelog ORDER BY seq"
                    " LIMIT ?", &lim, 1, &r, err) < 0)
            return -1;
        size_t n = st_res_rows(r);
        if (n == (size_t)RS_DRAIN_BATCH)
            *full = true;
        /* One transaction per shard for both kinds of write: under
         * set_weights a shard can be a source (its moving list) and a
         * target (rows arriving) in the same pass, on one session. */
        rs_txset tx = { { false } };
        int rc = 0;
        buf del;
        buf_init(&del);
        buf_append_str(&del, "DELETE FROM hscale_changelog WHERE seq IN (");
        for (size_t k = 0; k < n && rc == 0; k++) {
            buf_printf(&del, "%s%lld", k ? "," : "", (long long)st_res_int(r, k, 0));
            const rs_table *t = table_named(st_res_text(r, k, 1, NULL));
            int64_t pk = st_res_int(r, k, 2), user = st_res_int(r, k, 3);
            rs_mv *m = rs_find(rs, user);
            if (!m) {
                /* A user created since the listing: does it move too? */
                int dst = rs_owner(rs, user);
                if (dst < 0 || dst == i)
                    continue;
                if (tx_want(rs, &tx, i, err) < 0 || rs_add(rs, user, i, dst, err) < 0) {
                    rc = -1;
                    break;
                }
                m = rs_find(rs, user);
            }
            if (!t || !m || m->src != i)
                continue;
            if (sync_row(rs, m, t, pk, &tx, err) < 0)
                rc = -1;
            else
                applied++;
        }
        buf_append_str(&del, ")");
        st_res_free(r);
        /* Changes are applied (committed) before they are dropped from
         * the log: a failure in between repeats work, never loses it. */
        if (tx_end(rs, &tx, rc == 0, err) < 0)
            rc = -1;
        if (rc == 0 && n && rs_exec(rs, i, rs_cstr(&del), NULL, 0, NULL, err) < 0)
            rc = -1;
        buf_free(&del);
        if (rc < 0)
            return -1;
    }
    rs->changes_applied += applied;
    return applied;
}

int64_t rs_delete_users(st_reshard *rs, int i, bool as_target, st_err *err)
{
    int64_t removed = 0;
    size_t k = 0;
    while (k < rs->mv_cap) {
        buf ids;
        buf_init(&ids);
        size_t n = 0;
        for (; k < rs->mv_cap && n < 500; k++) {
            const rs_mv *m = &rs->mv[k];
            if (m->used && (as_target ? m->dst : m->src) == i)
                buf_printf(&ids, "%s%lld", n++ ? "," : "", (long long)m->user);
        }
        for (int t = RS_NTABLES - 1; n && t >= 0; t--) {
            char head[96];
            snprintf(head, sizeof head, "DELETE FROM %s WHERE user_id IN (", rs_tables[t].name);
            buf sql;
            buf_init(&sql);
            buf_append_str(&sql, head);
            buf_append(&sql, buf_head(&ids), ids.len);
            buf_append_str(&sql, ")");
            st_res *r = NULL;
            int rc = rs_exec(rs, i, rs_cstr(&sql), NULL, 0, &r, err);
            buf_free(&sql);
            if (rc < 0) {
                buf_free(&ids);
                return -1;
            }
            removed += st_res_changes(r);
            st_res_free(r);
        }
        buf_free(&ids);
    }
    return removed;
}
