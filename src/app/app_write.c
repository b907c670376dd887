/* app_write.c -- the case writes: POST /cases, PUT and DELETE /cases/{id}.
 *
 * Each write is one statement on the user's primary (validated first, see
 * app_body.c), so a failure leaves nothing half-written; success then
 * drops what it touched from the cache (app_invalidate). A constraint
 * failure is explained after the fact rather than pre-checked, which keeps
 * the common path at one round trip: the user, facility or surgeon that
 * does not exist is named (404 / 400), anything else is a 409. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include "app/app_int.h"

static const app_field case_fields[] = {
    { "user_id", APP_F_INT, true, 0 },        { "facility_id", APP_F_INT, false, 0 },
    { "surgeon_id", APP_F_INT, false, 0 },    { "patient_first", APP_F_TEXT, true, 0 },
    { "patient_last", APP_F_TEXT, true, 0 },  { "patient_dob", APP_F_TEXT, false, 32 },
    { "case_date", APP_F_TEXT, true, 32 },    { "case_status", APP_F_INT, false, 0 },
};
#define NCASE_FIELDS (sizeof case_fields / sizeof case_fields[0])

/* 1 when `sql` (one id parameter, then user_id) finds a row on the
 * user's primary, 0 when not, -1 when it cannot tell. */
static int exists(app *a, int64_t uid, const char *sql, int64_t id)
{
    st_val pv[2] = { st_int(id), st_int(uid) };
    st_res *r = NULL;
    st_err e;
    if (st_query_shard(a->store, st_shard_of(a->store, uid), ST_WRITE, sql, pv, 2, &r, &e) != 0)
        return -1;
    int n = st_res_rows(r) > 0;
    st_res_free(r);
    return n;
}

/* A write of a user's row failed with a constraint: say which reference
 * is missing. vals: NULL, or the case fields (facility_id, surgeon_id). */
void app_reply_write_conflict(http_ctx *c, app *a, int64_t uid, const st_val *vals,
                              const st_err *e)
{
    if (exists(a, uid, "SELECT 1 FROM users WHERE user_id = ? AND user_id = ?", uid) == 0) {
        http_reply_error(c, 404, "user_id", "user %" PRId64 " not found", uid);
        return;
    }
    if (vals && vals[1].type == ST_INT &&
        exists(a, uid, "SELECT 1 FROM facilities WHERE facility_id = ? AND user_id = ?",
               vals[1].i) == 0) {
        http_reply_error(c, 400, "facility_id", "facility %" PRId64 " does not exist",
                         vals[1].i);
        return;
    }
    if (vals && vals[2].type == ST_INT &&
        exists(a, uid, "SELECT 1 FROM surgeons WHERE surgeon_id = ? AND user_id = ?",
               vals[2].i) == 0) {
        http_reply_error(c, 400, "surgeon_id", "surgeon %" PRId64 " does not exist",
                         vals[2].i);
        return;
    }
    app_reply_store_error(c, e);
}

/* Replies with the first row of r (a RETURNING clause) or a 404. */
static void reply_row(http_ctx *c, int status, st_res *r, int64_t id)
{
    if (st_res_rows(r) == 0) {
        http_reply_error(c, 404, NULL, "case %" PRId64 " not found", id);
        return;
    }
    buf b;
    buf_init(&b);
    st_res_json_row(r, 0, &b);
    http_reply_buf_json(c, status, &b);
    buf_free(&b);
}

static void h_case_post(http_ctx *c, void *arg)
{
    app *a = arg;
    st_val v[NCASE_FIELDS + 3];
    json_t *root = app_parse_body(c, case_fields, NCASE_FIELDS, false, v + 1, NULL);
    if (!root)
        return;
    int64_t uid = v[1].i;
    char now[32];
    app_now(now);
    int64_t id = st_id_next(a->store);
    v[0] = st_int(id);
    if (v[8].type == ST_NULL)
        v[8] = st_int(0);
    v[NCASE_FIELDS + 1] = st_text(now);
    v[NCASE_FIELDS + 2] = st_text(now);
    char sql[512];
    snprintf(sql, sizeof sql, "INSERT INTO cases (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                              " RETURNING %s", app_case_cols, app_case_cols);
    st_res *r = NULL;
    st_err e;
    if (st_query(a->store, uid, ST_WRITE, sql, v, NCASE_FIELDS + 3, &r, &e) != 0) {
        if (e.code == ST_ECONFLICT)
            app_reply_write_conflict(c, a, uid, v + 1, &e);
        else
            app_reply_store_error(c, &e);
        json_decref(root);
        return;
    }
    json_decref(root);
    app_invalidate(a, uid);
    reply_row(c, 201, r, id);
    st_res_free(r);
}

/* PUT /cases/{id}?user_id=: a partial update of the fields given; the
 * case cannot change user (that would move it to another shard). */
static void h_case_put(http_ctx *c, void *arg)
{
    app *a = arg;
    int64_t id = 0, uid = 0;
    bool p;
    if (app_int_param(c, "id", http_ctx_param(c, "id"), 1, INT64_MAX, &id, &p) ||
        app_user_param(c, &uid))
        return;
    st_val v[NCASE_FIELDS + 3];
    bool present[NCASE_FIELDS];
    json_t *root = app_parse_body(c, case_fields, NCASE_FIELDS, true, v, present);
    if (!root)
        return;
    if (present[0] && v[0].i != uid) {
        json_decref(root);
        http_reply_error(c, 400, "user_id", "user_id cannot change (body %" PRId64
                         ", query %" PRId64 ")", v[0].i, uid);
        return;
    }
    buf sql;
    buf_init(&sql);
    buf_append_str(&sql, "UPDATE cases SET ");
    st_val pv[NCASE_FIELDS + 3];
    size_t np = 0;
    for (size_t i = 1; i < NCASE_FIELDS; i++) {
        if (!present[i])
            continue;
        buf_printf(&sql, "%s = ?, ", case_fields[i].name);
        pv[np++] = v[i];
    }
    if (np == 0) {
        buf_free(&sql);
        json_decref(root);
        http_reply_error(c, 400, NULL, "nothing to update: give at least one case field");
        return;
    }
    char now[32];
    app_now(now);
    pv[np++] = st_text(now);
    pv[np++] = st_int(id);
    pv[np++] = st_int(uid);
    buf_printf(&sql, "updated_at = ? WHERE case_id = ? AND user_id = ? RETURNING %s",
               app_case_cols);
    st_res *r = NULL;
    st_err e;
    int rc = st_query(a->store, uid, ST_WRITE, buf_head(&sql), pv, np, &r, &e);
    buf_free(&sql);
    if (rc != 0) {
        if (e.code == ST_ECONFLICT)
            app_reply_write_conflict(c, a, uid, v, &e);
        else
            app_reply_store_error(c, &e);
        json_decref(root);
        return;
    }
    json_decref(root);
    if (st_res_rows(r) > 0)
        app_invalidate(a, uid);
    reply_row(c, 200, r, id);
    st_res_free(r);
}

static void h_case_delete(http_ctx *c, void *arg)
{
    app *a = arg;
    int64_t id = 0, uid = 0;
    bool p;
    if (app_int_param(c, "id", http_ctx_param(c, "id"), 1, INT64_MAX, &id, &p) ||
        app_user_param(c, &uid))
        return;
    st_val pv[2] = { st_int(id), st_int(uid) };
    st_res *r = NULL;
    st_err e;
    if (st_query(a->store, uid, ST_WRITE, "DELETE FROM cases WHERE case_id = ? AND user_id = ?",
                 pv, 2, &r, &e) != 0) {
        app_reply_store_error(c, &e);
        return;
    }
    int64_t n = st_res_changes(r);
    st_res_free(r);
    if (n == 0) {
        http_reply_error(c, 404, NULL, "case %" PRId64 " not found", id);
        return;
    }
    app_invalidate(a, uid);
    http_reply(c, 204, NULL, NULL, 0);
}

void app_routes_write(http_router *r, app *a)
{
    http_route(r, "POST", "/cases", h_case_post, a);
    http_route(r, "PUT", "/cases/{id}", h_case_put, a);
    http_route(r, "DELETE", "/cases/{id}", h_case_delete, a);
    app_routes_users(r, a);
}
