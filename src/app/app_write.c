/* app_write.c -- per-user lists and the case writes.
 *
 * Request bodies are validated completely before any statement runs (type,
 * presence, unknown keys, UTF-8 via jansson's decoder), so a 400 never
 * follows a partial write. Each write is one statement on the user's
 * primary, then the cache entries it touches are dropped: the case key and
 * the user's generation, which retires every cached casefilter page. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "app/app_int.h"

static void list_for_user(http_ctx *c, app *a, const char *sql)
{
    int64_t uid = 0;
    bool has;
    if (app_int_param(c, "user_id", http_ctx_query(c, "user_id"), 1, INT64_MAX, &uid, &has))
        return;
    if (!has) {
        http_reply_error(c, 400, "user_id", "user_id is required");
        return;
    }
    st_val pv[1] = { st_int(uid) };
    st_res *r = NULL;
    st_err e;
    if (st_query(a->store, uid, ST_READ, sql, pv, 1, &r, &e) != 0) {
        app_reply_store_error(c, &e);
        return;
    }
    buf b;
    buf_init(&b);
    st_res_json(r, &b);
    st_res_free(r);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

static void h_facilities(http_ctx *c, void *arg)
{
    list_for_user(c, arg, "SELECT facility_id, user_id, facility_name, created_at"
                          " FROM facilities WHERE user_id = ? ORDER BY facility_id");
}

static void h_surgeons(http_ctx *c, void *arg)
{
    list_for_user(c, arg, "SELECT surgeon_id, user_id, first_name, last_name, specialty,"
                          " created_at FROM surgeons WHERE user_id = ? ORDER BY surgeon_id");
}

typedef enum { F_INT, F_TEXT } ftype;
typedef struct field {
    const char *name;
    ftype       type;
    bool        required;
} field;

static const field case_fields[] = {
    { "user_id", F_INT, true },        { "facility_id", F_INT, false },
    { "surgeon_id", F_INT, false },    { "patient_first", F_TEXT, true },
    { "patient_last", F_TEXT, true },  { "patient_dob", F_TEXT, false },
    { "case_date", F_TEXT, true },     { "case_status", F_INT, false },
};
#define NCASE_FIELDS (sizeof case_fields / sizeof case_fields[0])

/* Parses and checks the body against `fs`; fills vals in field order
 * (absent optional fields are NULL). Returns the root (caller frees; the
 * text values point into it) or NULL after replying 400. */
static json_t *parse_body(http_ctx *c, const field *fs, size_t nf, st_val *vals)
{
    size_t len;
    const char *body = http_ctx_body(c, &len);
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        http_reply_error(c, 400, NULL, "invalid JSON at line %d column %d: %s", je.line,
                         je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        http_reply_error(c, 400, NULL, "body must be a JSON object");
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        size_t i;
        for (i = 0; i < nf && strcmp(fs[i].name, k) != 0; i++)
            ;
        if (i == nf) {
            http_reply_error(c, 400, k, "unknown field '%s'", k);
            json_decref(root);
            return NULL;
        }
    }
    for (size_t i = 0; i < nf; i++) {
        v = json_object_get(root, fs[i].name);
        vals[i] = st_null();
        if (!v || json_is_null(v)) {
            if (fs[i].required) {
                http_reply_error(c, 400, fs[i].name, "%s is required", fs[i].name);
                json_decref(root);
                return NULL;
            }
            continue;
        }
        if (fs[i].type == F_INT && json_is_integer(v)) {
            vals[i] = st_int(json_integer_value(v));
        } else if (fs[i].type == F_TEXT && json_is_string(v) && json_string_length(v) <= 200) {
            vals[i] = st_textn(json_string_value(v), json_string_length(v));
        } else {
            http_reply_error(c, 400, fs[i].name, "%s must be %s", fs[i].name,
                             fs[i].type == F_INT ? "an integer" : "a string of at most 200 bytes");
            json_decref(root);
            return NULL;
        }
    }
    return root;
}

static void invalidate(app *a, int64_t uid, int64_t case_id)
{
    st_cache *ca = st_store_cache(a->store);
    if (!ca)
        return;
    char key[64];
    snprintf(key, sizeof key, "case:%" PRId64, case_id);
    st_cache_del(ca, key);
    snprintf(key, sizeof key, "u:%" PRId64, uid);
    st_cache_bump(ca, key);
}

static void h_case_post(http_ctx *c, void *arg)
{
    app *a = arg;
    st_val v[NCASE_FIELDS + 3];
    json_t *root = parse_body(c, case_fields, NCASE_FIELDS, v + 1);
    if (!root)
        return;
    int64_t uid = v[1].i;
    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
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
    int rc = st_query(a->store, uid, ST_WRITE, sql, v, NCASE_FIELDS + 3, &r, &e);
    json_decref(root);
    if (rc != 0) {
        app_reply_store_error(c, &e);
        return;
    }
    invalidate(a, uid, id);
    buf b;
    buf_init(&b);
    if (st_res_rows(r) > 0)
        st_res_json_row(r, 0, &b);
    else
        buf_printf(&b, "{\"case_id\":%" PRId64 "}", id);
    st_res_free(r);
    http_reply_buf_json(c, 201, &b);
    buf_free(&b);
}

static void h_case_delete(http_ctx *c, void *arg)
{
    app *a = arg;
    int64_t id = 0, uid = 0;
    bool p, has_uid;
    if (app_int_param(c, "id", http_ctx_param(c, "id"), 1, INT64_MAX, &id, &p) ||
        app_int_param(c, "user_id", http_ctx_query(c, "user_id"), 1, INT64_MAX, &uid, &has_uid))
        return;
    if (!has_uid) {
        http_reply_error(c, 400, "user_id", "user_id is required");
        return;
    }
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
    invalidate(a, uid, id);
    http_reply(c, 204, NULL, NULL, 0);
}

void app_routes_write(http_router *r, app *a)
{
    http_route(r, "GET", "/facilities", h_facilities, a);
    http_route(r, "GET", "/surgeons", h_surgeons, a);
    http_route(r, "POST", "/cases", h_case_post, a);
    http_route(r, "DELETE", "/cases/{id}", h_case_delete, a);
}
