/* db_sqlite.c -- the SQLite driver: one file per shard, WAL, busy_timeout,
 * and a prepared-statement cache per connection.
 *
 * URL: "sqlite:PATH" (parent directories are created). WAL lets readers
 * run beside the one writer; busy_timeout makes a writer wait for the lock
 * instead of failing at once, and a lock still held after it is reported as
 * ST_EUNAVAIL (the app answers 503, the client retries). Statements are
 * keyed by their text, so the same query string reuses its plan. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store_int.h"

#define SQ_STMTS 64          /* power of two */
#define SQ_BUSY_MS 5000

typedef struct sq_stmt {
    char         *sql;
    uint64_t      hash;
    sqlite3_stmt *stmt;
} sq_stmt;

typedef struct sq_conn {
    sqlite3 *db;
    int64_t  map_version;   /* what hscale_map_version() answers (fence triggers) */
    size_t   nstmts;
    sq_stmt  stmts[SQ_STMTS];
} sq_conn;

static uint64_t sq_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static st_code sq_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT: return ST_ECONFLICT;
    case SQLITE_BUSY: case SQLITE_LOCKED: case SQLITE_CANTOPEN: case SQLITE_IOERR:
    case SQLITE_CORRUPT: case SQLITE_NOTADB: case SQLITE_FULL: case SQLITE_READONLY:
        return ST_EUNAVAIL;
    case SQLITE_NOMEM: return ST_ENOMEM;
    default: return ST_EQUERY;
    }
}

/* A fence trigger's RAISE(ABORT, 'hscale_fenced...') arrives as a
 * constraint failure; it is a stale map, not a conflict. */
static st_code sq_code_of(sqlite3 *db, int rc)
{
    if ((rc & 0xff) == SQLITE_CONSTRAINT && !strncmp(sqlite3_errmsg(db), "hscale_fenced", 13))
        return ST_EFENCED;
    return sq_code(rc);
}

/* hscale_map_version(): the shard-map version of this connection's
 * instance, for the fence triggers (schema v2). */
static void sq_fn_map_version(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    const sq_conn *c = sqlite3_user_data(ctx);
    sqlite3_result_int64(ctx, c->map_version);
}

static int sq_set_version(void *h, int64_t v, st_err *err)
{
    (void)err;
    ((sq_conn *)h)->map_version = v;
    return 0;
}

static int sq_mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

static void sq_drop_stmts(sq_conn *c)
{
    for (size_t i = 0; i < SQ_STMTS; i++) {
        if (c->stmts[i].stmt)
            sqlite3_finalize(c->stmts[i].stmt);
        free(c->stmts[i].sql);
        c->stmts[i] = (sq_stmt){ 0 };
    }
    c->nstmts = 0;
}

static void sq_close(void *h)
{
    sq_conn *c = h;
    if (!c)
        return;
    sq_drop_stmts(c);
    sqlite3_close_v2(c->db);
    free(c);
}

/* SQLite's allocation statistics take a process-wide mutex on every
 * malloc; with one connection per worker that lock is the bottleneck, and
 * nobody reads the statistics. Must run before sqlite3_initialize. */
static void sq_global_init(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sqlite3_initialize();
}

static int sq_open(const char *url, void **out, st_err *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sq_global_init);
    const char *path = !strncmp(url, "sqlite:", 7) ? url + 7 : url;
    if (!strncmp(path, "//", 2))
        path += 2;
    if (!*path)
        return st_fail(err, ST_EINVAL, "sqlite url '%s': expected sqlite:PATH", url);
    if (strcmp(path, ":memory:") && sq_mkdirs(path) < 0)
        return st_fail(err, ST_EUNAVAIL, "sqlite '%s': cannot create its directory: %s",
                       path, strerror(errno));
    sq_conn *c = calloc(1, sizeof *c);
    if (!c)
        return st_fail(err, ST_ENOMEM, "out of memory");
    int rc = sqlite3_open_v2(path, &c->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        st_fail(err, ST_EUNAVAIL, "sqlite '%s': %s", path,
                c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sq_close(c);
        return -1;
    }
    sqlite3_busy_timeout(c->db, SQ_BUSY_MS);
    /* INNOCUOUS: usable from triggers even with trusted_schema off. */
    sqlite3_create_function(c->db, "hscale_map_version", 0, SQLITE_UTF8 | SQLITE_INNOCUOUS, c,
                            sq_fn_map_version, NULL, NULL);
    char *msg = NULL;
    rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                             " PRAGMA foreign_keys=ON;", NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        st_fail(err, sq_code(rc), "sqlite '%s': %s", path, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        sq_close(c);
        return -1;
    }
    *out = c;
    return 0;
}

static sqlite3_stmt *sq_prepare(sq_conn *c, const char *sql, st_err *err)
{
    uint64_t h = sq_hash(sql);
    size_t i = h & (SQ_STMTS - 1);
    for (size_t probes = 0; probes < SQ_STMTS; probes++, i = (i + 1) & (SQ_STMTS - 1)) {
        sq_stmt *s = &c->stmts[i];
        if (!s->sql)
            break;
        if (s->hash == h && !strcmp(s->sql, sql))
            return s->stmt;
    }
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK) {
        st_fail(err, sq_code(rc), "sqlite prepare: %s (in: %.80s)", sqlite3_errmsg(c->db), sql);
        return NULL;
    }
    /* Keep the table at most 3/4 full so probes stay short; when it fills,
     * start over: the working set of an app is a few dozen statements. */
    if (c->nstmts >= SQ_STMTS * 3 / 4)
        sq_drop_stmts(c);
    i = h & (SQ_STMTS - 1);
    while (c->stmts[i].sql)
        i = (i + 1) & (SQ_STMTS - 1);
    char *copy = strdup(sql);
    if (!copy) {
        sqlite3_finalize(stmt);
        st_fail(err, ST_ENOMEM, "out of memory");
        return NULL;
    }
    c->stmts[i] = (sq_stmt){ copy, h, stmt };
    c->nstmts++;
    return stmt;
}

static int sq_exec(void *h, const char *sql, const st_val *p, size_t n, st_res **out, st_err *err)
{
    sq_conn *c = h;
    sqlite3_stmt *stmt = sq_prepare(c, sql, err);
    if (!stmt)
        return -1;
    if ((size_t)sqlite3_bind_parameter_count(stmt) != n) {
        return st_fail(err, ST_EINVAL, "statement wants %d parameters, got %zu (in: %.80s)",
                       sqlite3_bind_parameter_count(stmt), n, sql);
    }
    int rc = SQLITE_OK;
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
        int idx = (int)i + 1;
        if (p[i].type == ST_INT)
            rc = sqlite3_bind_int64(stmt, idx, p[i].i);
        else if (p[i].type == ST_TEXT)
            rc = sqlite3_bind_text(stmt, idx, p[i].s, (int)p[i].len, SQLITE_TRANSIENT);
        else
            rc = sqlite3_bind_null(stmt, idx);
    }
    if (rc != SQLITE_OK) {
        st_fail(err, sq_code(rc), "sqlite bind: %s", sqlite3_errmsg(c->db));
        goto fail;
    }
    int cols = sqlite3_column_count(stmt);
    st_res *r = NULL;
    if (out) {
        r = st_res_new((size_t)cols);
        if (!r) {
            st_fail(err, ST_ENOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < cols; i++)
            st_res_set_name(r, (size_t)i, sqlite3_column_name(stmt, i));
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (!r)
            continue;
        if (st_res_add_row(r) < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        for (int i = 0; i < cols; i++) {
            int t = sqlite3_column_type(stmt, i);
            int bad;
            if (t == SQLITE_INTEGER) {
                bad = st_res_put(r, (size_t)i, ST_INT, sqlite3_column_int64(stmt, i), NULL, 0);
            } else if (t == SQLITE_NULL) {
                bad = st_res_put(r, (size_t)i, ST_NULL, 0, NULL, 0);
            } else {
                const char *txt = (const char *)sqlite3_column_text(stmt, i);
                bad = st_res_put(r, (size_t)i, ST_TEXT, 0, txt ? txt : "",
                                 (size_t)sqlite3_column_bytes(stmt, i));
            }
            if (bad) {
                rc = SQLITE_NOMEM;
                break;
            }
        }
        if (rc == SQLITE_NOMEM)
            break;
    }
    if (rc != SQLITE_DONE) {
        st_fail(err, sq_code_of(c->db, rc), "sqlite: %s", sqlite3_errmsg(c->db));
        st_res_free(r);
        goto fail;
    }
    if (r) {
        st_res_set_changes(r, cols ? 0 : sqlite3_changes64(c->db));
        *out = r;
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return 0;
fail:
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return -1;
}

const st_driver st_driver_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .lag = NULL,
    .set_version = sq_set_version,
    .id_type = "INTEGER",
};
