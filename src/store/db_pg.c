/* db_pg.c -- the PostgreSQL driver over libpq: ? placeholders rewritten to
 * $n, named prepared statements cached per connection, typed results.
 *
 * Integers (int2/int4/int8) come back as ST_INT, everything else as text.
 * The SQLSTATE class decides the error code: 23 (integrity) is a conflict;
 * 08 (connection), 57P (shutdown), 53 (resources) and 25006 (a write on a
 * read-only standby) mean "this node cannot serve you now", ST_EUNAVAIL,
 * which also marks the connection broken. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

#define PG_STMTS 128         /* power of two */
#define PG_MAX_PARAMS 64

typedef struct pg_stmt {
    char    *sql;
    uint64_t hash;
    int      id;
} pg_stmt;

typedef struct pg_conn {
    PGconn *pg;
    size_t  nstmts;
    int     next_id;
    pg_stmt stmts[PG_STMTS];
} pg_conn;

static uint64_t pg_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void pg_forget_stmts(pg_conn *c)
{
    for (size_t i = 0; i < PG_STMTS; i++) {
        free(c->stmts[i].sql);
        c->stmts[i] = (pg_stmt){ 0 };
    }
    c->nstmts = 0;
}

static void pg_close(void *h)
{
    pg_conn *c = h;
    if (!c)
        return;
    pg_forget_stmts(c);
    PQfinish(c->pg);
    free(c);
}

static void pg_chomp(char *dst, size_t n, const char *msg)
{
    snprintf(dst, n, "%s", msg ? msg : "");
    size_t l = strlen(dst);
    while (l && (dst[l - 1] == '\n' || dst[l - 1] == ' '))
        dst[--l] = 0;
    for (char *p = dst; *p; p++)      /* one log line per error */
        if (*p == '\n' || *p == '\t')
            *p = ' ';
}

static void pg_quiet(void *arg, const char *msg) { (void)arg; (void)msg; }

static int pg_open(const char *url, void **out, st_err *err)
{
    const char *keys[] = { "dbname", "connect_timeout", "keepalives_idle",
                           "application_name", NULL };
    const char *vals[] = { url, "3", "10", "hscale", NULL };
    pg_conn *c = calloc(1, sizeof *c);
    if (!c)
        return st_fail(err, ST_ENOMEM, "out of memory");
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        char msg[200], safe[128];
        pg_chomp(msg, sizeof msg, c->pg ? PQerrorMessage(c->pg) : "out of memory");
        st_url_redact(url, safe, sizeof safe);
        st_fail(err, ST_EUNAVAIL, "postgresql '%s': %s", safe, msg);
        pg_close(c);
        return -1;
    }
    /* Server notices ("relation already exists, skipping") are not errors;
     * libpq would print them to stderr. */
    PQsetNoticeProcessor(c->pg, pg_quiet, NULL);
    *out = c;
    return 0;
}

/* "? ... ?" -> "$1 ... $2", leaving quoted strings and identifiers alone. */
static int pg_rewrite(const char *sql, buf *out)
{
    char quote = 0;
    int n = 0;
    for (const char *p = sql; *p; p++) {
        if (quote) {
            if (*p == quote)
                quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '?') {
            if (buf_printf(out, "$%d", ++n) < 0)
                return -1;
            continue;
        }
        if (buf_append(out, p, 1) < 0)
            return -1;
    }
    return buf_append(out, "", 1) < 0 ? -1 : n;
}

static st_code pg_code(PGconn *pg, const PGresult *res)
{
    if (!res || PQstatus(pg) != CONNECTION_OK)
        return ST_EUNAVAIL;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (!state)
        return ST_EUNAVAIL;
    if (!strcmp(state, "HSF01"))      /* a fence trigger: stale shard map */
        return ST_EFENCED;
    if (!strncmp(state, "23", 2))
        return ST_ECONFLICT;
    if (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3) || !strncmp(state, "53", 2) ||
        !strcmp(state, "25006"))
        return ST_EUNAVAIL;
    if (!strncmp(state, "22", 2))
        return ST_EINVAL;
    return ST_EQUERY;
}

static int pg_fail(pg_conn *c, PGresult *res, const char *what, st_err *err)
{
    char msg[200];
    pg_chomp(msg, sizeof msg, res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg));
    if (!*msg)
        pg_chomp(msg, sizeof msg, PQerrorMessage(c->pg));
    st_code code = pg_code(c->pg, res);
    PQclear(res);
    return st_fail(err, code, "postgresql %s: %s", what, msg);
}

/* The name of sql's prepared statement, preparing it on first use. */
static int pg_prepare(pg_conn *c, const char *sql, size_t n, char name[16], st_err *err)
{
    uint64_t h = pg_hash(sql);
    size_t i = h & (PG_STMTS - 1);
    for (size_t probes = 0; probes < PG_STMTS; probes++, i = (i + 1) & (PG_STMTS - 1)) {
        const pg_stmt *s = &c->stmts[i];
        if (!s->sql)
            break;
        if (s->hash == h && !strcmp(s->sql, sql)) {
            snprintf(name, 16, "hs%d", s->id);
            return 0;
        }
    }
    buf text;
    buf_init(&text);
    int nparams = pg_rewrite(sql, &text);
    if (nparams < 0) {
        buf_free(&text);
        return st_fail(err, ST_ENOMEM, "out of memory");
    }
    if ((size_t)nparams != n) {
        buf_free(&text);
        return st_fail(err, ST_EINVAL, "statement wants %d parameters, got %zu (in: %.80s)",
                       nparams, n, sql);
    }
    if (c->nstmts >= PG_STMTS * 3 / 4) {
        PQclear(PQexec(c->pg, "DEALLOCATE ALL"));
        pg_forget_stmts(c);
    }
    int id = c->next_id++;
    snprintf(name, 16, "hs%d", id);
    PGresult *res = PQprepare(c->pg, name, buf_head(&text), 0, NULL);
    buf_free(&text);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
        return pg_fail(c, res, "prepare", err);
    PQclear(res);
    i = h & (PG_STMTS - 1);
    while (c->stmts[i].sql)
        i = (i + 1) & (PG_STMTS - 1);
    c->stmts[i] = (pg_stmt){ strdup(sql), h, id };
    if (c->stmts[i].sql)
        c->nstmts++;
    return 0;
}

static int pg_exec(void *h, const char *sql, const st_val *p, size_t n, st_res **out, st_err *err)
{
    pg_conn *c = h;
    if (n > PG_MAX_PARAMS)
        return st_fail(err, ST_EINVAL, "too many parameters (%zu > %d)", n, PG_MAX_PARAMS);
    char name[16];
    if (pg_prepare(c, sql, n, name, err) < 0)
        return -1;
    const char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS];
    char nums[PG_MAX_PARAMS][24];
    buf texts;      /* text params need a NUL; copy them once into one arena */
    buf_init(&texts);
    size_t offs[PG_MAX_PARAMS];
    for (size_t i = 0; i < n; i++) {
        if (p[i].type == ST_TEXT) {
            offs[i] = texts.len;
            if (buf_append(&texts, p[i].s, p[i].len) < 0 || buf_append(&texts, "", 1) < 0) {
                buf_free(&texts);
                return st_fail(err, ST_ENOMEM, "out of memory");
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        lengths[i] = 0;
        if (p[i].type == ST_INT) {
            snprintf(nums[i], sizeof nums[i], "%lld", (long long)p[i].i);
            values[i] = nums[i];
        } else if (p[i].type == ST_TEXT) {
            values[i] = buf_head(&texts) + offs[i];
        } else {
            values[i] = NULL;
        }
    }
    PGresult *res = PQexecPrepared(c->pg, name, (int)n, values, lengths, NULL, 0);
    buf_free(&texts);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        return pg_fail(c, res, "query", err);
    if (!out) {
        PQclear(res);
        return 0;
    }
    int rows = PQntuples(res), cols = PQnfields(res);
    st_res *r = st_res_new((size_t)cols);
    if (!r) {
        PQclear(res);
        return st_fail(err, ST_ENOMEM, "out of memory");
    }
    for (int i = 0; i < cols; i++)
        st_res_set_name(r, (size_t)i, PQfname(res, i));
    for (int row = 0; row < rows; row++) {
        if (st_res_add_row(r) < 0)
            goto nomem;
        for (int i = 0; i < cols; i++) {
            Oid t = PQftype(res, i);
            int bad;
            if (PQgetisnull(res, row, i))
                bad = st_res_put(r, (size_t)i, ST_NULL, 0, NULL, 0);
            else if (t == 20 || t == 21 || t == 23)   /* int8, int2, int4 */
                bad = st_res_put(r, (size_t)i, ST_INT, strtoll(PQgetvalue(res, row, i), NULL, 10),
                                 NULL, 0);
            else
                bad = st_res_put(r, (size_t)i, ST_TEXT, 0, PQgetvalue(res, row, i),
                                 (size_t)PQgetlength(res, row, i));
            if (bad)
                goto nomem;
        }
    }
    const char *changed = PQcmdTuples(res);
    st_res_set_changes(r, changed && *changed && !cols ? strtoll(changed, NULL, 10) : 0);
    PQclear(res);
    *out = r;
    return 0;
nomem:
    PQclear(res);
    st_res_free(r);
    return st_fail(err, ST_ENOMEM, "out of memory");
}

static int pg_lag(void *h, double *lag_s, st_err *err)
{
    st_res *r = NULL;
    int rc = pg_exec(h,
        "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0"
        " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
        " ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)"
        " END::text", NULL, 0, &r, err);
    if (rc < 0)
        return -1;
    *lag_s = st_res_rows(r) ? strtod(st_res_text(r, 0, 0, NULL), NULL) : 0;
    st_res_free(r);
    return 0;
}

/* Session setting read by the fence trigger function (schema v2). */
static int pg_set_version(void *h, int64_t v, st_err *err)
{
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)v);
    st_val p = st_text(num);
    return pg_exec(h, "SELECT set_config('hscale.map_version', ?, false)", &p, 1, NULL, err);
}

const st_driver st_driver_pg = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .lag = pg_lag,
    .set_version = pg_set_version,
    .id_type = "BIGINT",
};
