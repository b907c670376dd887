/* app_users.c -- users, and each user's facilities and surgeons.
 *
 * GET /users is the one query without a shard key: it runs on every shard
 * in parallel (st_query_all) and the pages are merged by user_id here.
 * Each shard returns at most limit+1 rows after the cursor, so the merged
 * page is exact and next_cursor is null only when nothing follows. Per
 * user reads (facilities, surgeons) are cached under the user's
 * generation, which every write of that user bumps.
 *
 * npi_number is unique per shard (a database constraint cannot span
 * shards); ids that the app generates (st_id_next) are unique everywhere. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "app/app_int.h"

#define USER_COLS "user_id, npi_number, first_name, last_name, email, created_at"

typedef struct list_args {
    app        *a;
    int64_t     uid;
    const char *sql;
} list_args;

static int load_list(void *arg, buf *out, st_err *e)
{
    const list_args *la = arg;
    st_val pv[1] = { st_int(la->uid) };
    st_res *r = NULL;
    if (app_read(la->a, la->uid, la->sql, pv, 1, &r, e) != 0)
        return -1;
    st_res_json(r, out);
    st_res_free(r);
    return 0;
}

static void list_for_user(http_ctx *c, app *a, const char *kind, const char *sql)
{
    int64_t uid = 0;
    if (app_user_param(c, &uid))
        return;
    list_args la = { a, uid, sql };
    buf b;
    buf_init(&b);
    st_err e;
    uint64_t ttl = st_store_cache(a->store) ? st_store_cache_cfg(a->store)->ttl_list : 0;
    if (app_cached(a, uid, kind, "", ttl, load_list, &la, &b, &e) != 0)
        app_reply_store_error(c, &e);
    else
        http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

static void h_facilities(http_ctx *c, void *arg)
{
    list_for_user(c, arg, "fac", "SELECT facility_id, user_id, facility_name, created_at"
                                 " FROM facilities WHERE user_id = ? ORDER BY facility_id");
}

static void h_surgeons(http_ctx *c, void *arg)
{
    list_for_user(c, arg, "sur", "SELECT surgeon_id, user_id, first_name, last_name, specialty,"
                                 " created_at FROM surgeons WHERE user_id = ? ORDER BY surgeon_id");
}

/* Inserts one row of a user (id and created_at added by the app): the
 * statement's last two parameters are created_at and the generated id is
 * first. Replies 201 with the row. */
static void insert_for_user(http_ctx *c, app *a, int64_t uid, const char *sql, st_val *pv,
                            size_t np)
{
    st_res *r = NULL;
    st_err e;
    if (st_query(a->store, uid, ST_WRITE, sql, pv, np, &r, &e) != 0) {
        if (e.code == ST_ECONFLICT)
            app_reply_write_conflict(c, a, uid, NULL, &e);
        else
            app_reply_store_error(c, &e);
        return;
    }
    app_invalidate(a, uid);
    buf b;
    buf_init(&b);
    if (st_res_rows(r) > 0)
        st_res_json_row(r, 0, &b);
    else
        buf_append_str(&b, "{}");
    st_res_free(r);
    http_reply_buf_json(c, 201, &b);
    buf_free(&b);
}

static const app_field facility_fields[] = {
    { "facility_name", APP_F_TEXT, true, 0 },
};

static void h_facility_post(http_ctx *c, void *arg)
{
    app *a = arg;
    int64_t uid = 0;
    if (app_user_param(c, &uid))
        return;
    st_val v[1];
    json_t *root = app_parse_body(c, facility_fields, 1, false, v, NULL);
    if (!root)
        return;
    char now[32];
    app_now(now);
    st_val pv[] = { st_int(st_id_next(a->store)), st_int(uid), v[0], st_text(now) };
    insert_for_user(c, a, uid, "INSERT INTO facilities (facility_id, user_id, facility_name,"
                    " created_at) VALUES (?, ?, ?, ?) RETURNING facility_id, user_id,"
                    " facility_name, created_at", pv, 4);
    json_decref(root);
}

static const app_field surgeon_fields[] = {
    { "first_name", APP_F_TEXT, true, 0 },
    { "last_name", APP_F_TEXT, true, 0 },
    { "specialty", APP_F_TEXT, false, 0 },
};

static void h_surgeon_post(http_ctx *c, void *arg)
{
    app *a = arg;
    int64_t uid = 0;
    if (app_user_param(c, &uid))
        return;
    st_val v[3];
    json_t *root = app_parse_body(c, surgeon_fields, 3, false, v, NULL);
    if (!root)
        return;
    char now[32];
    app_now(now);
    st_val pv[] = { st_int(st_id_next(a->store)), st_int(uid), v[0], v[1], v[2], st_text(now) };
    insert_for_user(c, a, uid, "INSERT INTO surgeons (surgeon_id, user_id, first_name, last_name,"
                    " specialty, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING surgeon_id,"
                    " user_id, first_name, last_name, specialty, created_at", pv, 6);
    json_decref(root);
}

static const app_field user_fields[] = {
    { "user_id", APP_F_INT, false, 0 },       { "npi_number", APP_F_TEXT, true, 10 },
    { "first_name", APP_F_TEXT, true, 0 },    { "last_name", APP_F_TEXT, true, 0 },
    { "email", APP_F_TEXT, true, 0 },
};

/* POST /users: user_id is optional (generated when absent); it places the
 * user on its shard, so it cannot be reassigned later. */
static void h_user_post(http_ctx *c, void *arg)
{
    app *a = arg;
    st_val v[5];
    json_t *root = app_parse_body(c, user_fields, 5, false, v, NULL);
    if (!root)
        return;
    const char *npi = v[1].s;
    bool npi_ok = v[1].len == 10;
    for (size_t i = 0; npi_ok && i < 10; i++)
        npi_ok = npi[i] >= '0' && npi[i] <= '9';
    if (!npi_ok || (v[0].type == ST_INT && v[0].i == 0) || !memchr(v[4].s, '@', v[4].len)) {
        json_decref(root);
        if (!npi_ok)
            http_reply_error(c, 400, "npi_number", "npi_number must be 10 digits");
        else if (v[0].type == ST_INT)
            http_reply_error(c, 400, "user_id", "user_id must be at least 1");
        else
            http_reply_error(c, 400, "email", "email must contain '@'");
        return;
    }
    int64_t uid = v[0].type == ST_INT ? v[0].i : st_id_next(a->store);
    char now[32];
    app_now(now);
    st_val pv[] = { st_int(uid), v[1], v[2], v[3], v[4], st_text(now) };
    st_res *r = NULL;
    st_err e;
    int rc = st_query(a->store, uid, ST_WRITE, "INSERT INTO users (" USER_COLS ") VALUES"
                      " (?, ?, ?, ?, ?, ?) RETURNING " USER_COLS, pv, 6, &r, &e);
    json_decref(root);
    if (rc != 0) {
        if (e.code == ST_ECONFLICT)
            http_reply_error(c, 409, NULL, "user %" PRId64 " or its npi_number already exists",
                             uid);
        else
            app_reply_store_error(c, &e);
        return;
    }
    app_invalidate(a, uid);
    buf b;
    buf_init(&b);
    st_res_json_row(r, 0, &b);
    st_res_free(r);
    http_reply_buf_json(c, 201, &b);
    buf_free(&b);
}

typedef struct row_key {
    int64_t id;
    size_t  row;
} row_key;

static int cmp_row_key(const void *x, const void *y)
{
    const row_key *p = x, *q = y;
    return p->id < q->id ? -1 : p->id > q->id;
}

/* GET /users?limit=&cursor=: every shard's next page, merged by user_id. */
static void h_users(http_ctx *c, void *arg)
{
    app *a = arg;
    int64_t limit = 50, cursor = 0;
    bool p;
    if (app_int_param(c, "limit", http_ctx_query(c, "limit"), 1, 500, &limit, &p) ||
        app_int_param(c, "cursor", http_ctx_query(c, "cursor"), 0, INT64_MAX, &cursor, &p))
        return;
    st_val pv[2] = { st_int(cursor), st_int(limit + 1) };
    st_res *r = NULL;
    st_err e;
    if (st_query_all(a->store, ST_READ, "SELECT " USER_COLS " FROM users WHERE user_id > ?"
                     " ORDER BY user_id LIMIT ?", pv, 2, &r, &e) != 0) {
        app_reply_store_error(c, &e);
        return;
    }
    size_t n = st_res_rows(r);
    row_key *keys = n ? malloc(n * sizeof *keys) : NULL;
    if (n && !keys) {
        st_res_free(r);
        http_reply_error(c, 500, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        keys[i] = (row_key){ st_res_int(r, i, 0), i };
    if (n > 1)
        qsort(keys, n, sizeof *keys, cmp_row_key);
    size_t take = n > (size_t)limit ? (size_t)limit : n;
    buf b;
    buf_init(&b);
    buf_append_str(&b, "{\"users\":[");
    for (size_t i = 0; i < take; i++) {
        if (i)
            buf_append_str(&b, ",");
        st_res_json_row(r, keys[i].row, &b);
    }
    if (n > take)
        buf_printf(&b, "],\"count\":%zu,\"next_cursor\":\"%" PRId64 "\"}", take,
                   keys[take - 1].id);
    else
        buf_printf(&b, "],\"count\":%zu,\"next_cursor\":null}", take);
    free(keys);
    st_res_free(r);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

void app_routes_users(http_router *r, app *a)
{
    http_route(r, "GET", "/users", h_users, a);
    http_route(r, "POST", "/users", h_user_post, a);
    http_route(r, "GET", "/facilities", h_facilities, a);
    http_route(r, "POST", "/facilities", h_facility_post, a);
    http_route(r, "GET", "/surgeons", h_surgeons, a);
    http_route(r, "POST", "/surgeons", h_surgeon_post, a);
}
