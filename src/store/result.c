/* result.c -- typed query results and the error helpers.
 *
 * A result is a flat cell array (row-major) plus one text arena: every
 * cell, integers included, has its text form in the arena, NUL-terminated,
 * so st_res_text never allocates and a result is freed in three calls.
 * Arena offsets (not pointers) are stored because the arena grows. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "store/store_int.h"

typedef struct st_cell {
    st_type  type;
    int64_t  i;
    size_t   off, len;
} st_cell;

struct st_res {
    size_t   cols, rows, cap_rows;
    size_t  *names;      /* offsets into `arena`: one allocation fewer per column */
    st_cell *cells;
    buf      arena;
    int64_t  changes;
};

static const char *const code_names[] = {
    "ok", "invalid", "query", "conflict", "timeout", "unavailable", "nomem", "fenced",
};

const char *st_code_name(st_code c)
{
    return (unsigned)c < sizeof code_names / sizeof code_names[0] ? code_names[c] : "unknown";
}

int st_fail(st_err *err, st_code code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void st_err_prefix(st_err *err, const char *prefix)
{
    if (!err)
        return;
    char tmp[sizeof err->msg];
    size_t pl = strlen(prefix), ml = strlen(err->msg);
    if (pl > sizeof tmp - 3)
        pl = sizeof tmp - 3;
    memcpy(tmp, prefix, pl);
    memcpy(tmp + pl, ": ", 2);
    if (ml > sizeof tmp - pl - 3)
        ml = sizeof tmp - pl - 3;
    memcpy(tmp + pl + 2, err->msg, ml);
    tmp[pl + 2 + ml] = 0;
    memcpy(err->msg, tmp, sizeof tmp);
}

st_val st_text(const char *s)
{
    if (!s)
        return st_null();
    return st_textn(s, strlen(s));
}

uint64_t st_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void st_url_redact(const char *url, char *out, size_t outlen)
{
    if (!outlen)
        return;
    const char *scheme = url ? strstr(url, "://") : NULL;
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *colon = scheme ? strchr(scheme + 3, ':') : NULL;
    if (!url) {
        snprintf(out, outlen, "%s", "");
    } else if (at && colon && colon < at) {
        snprintf(out, outlen, "%.*s:***%s", (int)(colon - url), url, at);
    } else {
        const char *pw = strstr(url, "password=");
        if (pw) {
            const char *end = strchr(pw, ' ');
            snprintf(out, outlen, "%.*spassword=***%s", (int)(pw - url), url, end ? end : "");
        } else {
            snprintf(out, outlen, "%s", url);
        }
    }
}

st_res *st_res_new(size_t cols)
{
    st_res *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->cols = cols;
    buf_init(&r->arena);
    /* Offset 0 holds "", the name of unnamed columns. */
    if ((cols && !(r->names = calloc(cols, sizeof *r->names))) ||
        buf_reserve(&r->arena, 256 + cols * 16) < 0 || buf_append(&r->arena, "", 1) < 0) {
        buf_free(&r->arena);
        free(r->names);
        free(r);
        return NULL;
    }
    return r;
}

int st_res_set_name(st_res *r, size_t col, const char *name)
{
    if (col >= r->cols)
        return -1;
    if (!name || !*name) {
        r->names[col] = 0;
        return 0;
    }
    r->names[col] = r->arena.len;
    return buf_append(&r->arena, name, strlen(name) + 1);
}

int st_res_add_row(st_res *r)
{
    if (r->rows == r->cap_rows) {
        size_t nc = r->cap_rows ? r->cap_rows * 2 : 16;
        st_cell *c = realloc(r->cells, nc * (r->cols ? r->cols : 1) * sizeof *c);
        if (!c)
            return -1;
        r->cells = c;
        r->cap_rows = nc;
    }
    memset(r->cells + r->rows * r->cols, 0, r->cols * sizeof *r->cells);
    r->rows++;
    return 0;
}

int st_res_put(st_res *r, size_t col, st_type t, int64_t i, const char *s, size_t len)
{
    if (!r->rows || col >= r->cols)
        return -1;
    st_cell *c = &r->cells[(r->rows - 1) * r->cols + col];
    char num[24];
    c->type = t;
    c->i = i;
    if (t == ST_INT) {
        len = fmt_i64(num, i);
        s = num;
    } else if (t == ST_NULL) {
        s = "";
        len = 0;
    }
    c->off = r->arena.len;
    c->len = len;
    if (buf_append(&r->arena, s, len) < 0 || buf_append(&r->arena, "", 1) < 0)
        return -1;
    return 0;
}

void st_res_set_changes(st_res *r, int64_t n) { r->changes = n; }

int st_res_append(st_res *dst, const st_res *src)
{
    if (dst->cols != src->cols)
        return -1;
    dst->changes += src->changes;
    for (size_t row = 0; row < src->rows; row++) {
        if (st_res_add_row(dst) < 0)
            return -1;
        for (size_t col = 0; col < src->cols; col++) {
            const st_cell *c = &src->cells[row * src->cols + col];
            if (st_res_put(dst, col, c->type, c->i, src->arena.data + c->off, c->len) < 0)
                return -1;
        }
    }
    return 0;
}

size_t st_res_rows(const st_res *r) { return r ? r->rows : 0; }
size_t st_res_cols(const st_res *r) { return r ? r->cols : 0; }
int64_t st_res_changes(const st_res *r) { return r ? r->changes : 0; }

const char *st_res_name(const st_res *r, size_t col)
{
    return r && col < r->cols ? r->arena.data + r->names[col] : "";
}

static const st_cell *cell(const st_res *r, size_t row, size_t col)
{
    if (!r || row >= r->rows || col >= r->cols)
        return NULL;
    return &r->cells[row * r->cols + col];
}

st_type st_res_type(const st_res *r, size_t row, size_t col)
{
    const st_cell *c = cell(r, row, col);
    return c ? c->type : ST_NULL;
}

bool st_res_is_null(const st_res *r, size_t row, size_t col)
{
    return st_res_type(r, row, col) == ST_NULL;
}

int64_t st_res_int(const st_res *r, size_t row, size_t col)
{
    const st_cell *c = cell(r, row, col);
    if (!c || c->type == ST_NULL)
        return 0;
    if (c->type == ST_INT)
        return c->i;
    return strtoll(r->arena.data + c->off, NULL, 10);
}

const char *st_res_text(const st_res *r, size_t row, size_t col, size_t *len)
{
    const st_cell *c = cell(r, row, col);
    if (!c) {
        if (len)
            *len = 0;
        return "";
    }
    if (len)
        *len = c->len;
    return r->arena.data + c->off;
}

void st_res_free(st_res *r)
{
    if (!r)
        return;
    free(r->names);
    free(r->cells);
    buf_free(&r->arena);
    free(r);
}

const st_driver *st_driver_for_url(const char *url)
{
    if (!url)
        return NULL;
    if (!strncmp(url, "sqlite:", 7))
        return &st_driver_sqlite;
    if (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13) ||
        strstr(url, "dbname=") || strstr(url, "host="))
        return &st_driver_pg;
    size_t n = strlen(url);
    if ((n > 3 && !strcmp(url + n - 3, ".db")) || (n > 7 && !strcmp(url + n - 7, ".sqlite")))
        return &st_driver_sqlite;
    return NULL;
}

const char *st_driver_name(const st_driver *d) { return d ? d->name : ""; }

const st_driver *st_conn_driver(const st_conn *c) { return c->drv; }

int st_conn_exec(st_conn *c, const char *sql, const st_val *params, size_t n,
                 st_res **out, st_err *err)
{
    if (out)
        *out = NULL;
    st_err local;
    if (!err)
        err = &local;
    if (c->broken)
        return st_fail(err, ST_EUNAVAIL, "connection is broken");
    int rc = c->drv->exec(c->h, sql, params, n, out, err);
    if (rc < 0 && err->code == ST_EUNAVAIL)
        c->broken = true;
    return rc;
}
