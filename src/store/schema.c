/* schema.c -- the SurgiCase schema and its versioned migrations.
 *
 * One SQL text serves SQLite and PostgreSQL: types are the common subset
 * (TEXT, INTEGER, BIGINT), timestamps are ISO-8601 text, and the one
 * dialect difference, the 64-bit key that should alias SQLite's rowid, is
 * the @ID@ token the driver fills in. Ids are assigned by the application
 * (st_id_next), never by the database, because a user's id must be known
 * before its shard is. Each migration runs in a transaction together with
 * its schema_version row, so a crash leaves a version fully applied or not
 * at all; every statement is IF NOT EXISTS so two instances starting at
 * once both succeed. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store/store_int.h"

typedef struct st_migration {
    int                version;
    const char *const *stmts;
} st_migration;

static const char *const v1[] = {
    "CREATE TABLE IF NOT EXISTS users ("
    " user_id @ID@ PRIMARY KEY,"
    " npi_number TEXT NOT NULL UNIQUE,"
    " first_name TEXT NOT NULL,"
    " last_name TEXT NOT NULL,"
    " email TEXT NOT NULL,"
    " created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS facilities ("
    " facility_id @ID@ PRIMARY KEY,"
    " user_id BIGINT NOT NULL REFERENCES users(user_id),"
    " facility_name TEXT NOT NULL,"
    " created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS surgeons ("
    " surgeon_id @ID@ PRIMARY KEY,"
    " user_id BIGINT NOT NULL REFERENCES users(user_id),"
    " first_name TEXT NOT NULL,"
    " last_name TEXT NOT NULL,"
    " specialty TEXT,"
    " created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cases ("
    " case_id @ID@ PRIMARY KEY,"
    " user_id BIGINT NOT NULL REFERENCES users(user_id),"
    " facility_id BIGINT REFERENCES facilities(facility_id),"
    " surgeon_id BIGINT REFERENCES surgeons(surgeon_id),"
    " patient_first TEXT NOT NULL,"
    " patient_last TEXT NOT NULL,"
    " patient_dob TEXT,"
    " case_date TEXT NOT NULL,"
    " case_status INTEGER NOT NULL DEFAULT 0,"
    " created_date TEXT NOT NULL,"
    " updated_at TEXT NOT NULL)",
    /* The SurgiCase indexes. case_id ends the casefilter index so keyset
     * pagination (case_id > cursor) is an index range scan on both. */
    "CREATE INDEX IF NOT EXISTS idx_cases_user_status ON cases(user_id, case_status, case_id)",
    "CREATE INDEX IF NOT EXISTS idx_cases_created_date ON cases(created_date)",
    "CREATE INDEX IF NOT EXISTS idx_user_profile_npi ON users(npi_number)",
    "CREATE INDEX IF NOT EXISTS idx_facilities_user ON facilities(user_id)",
    "CREATE INDEX IF NOT EXISTS idx_surgeons_user ON surgeons(user_id)",
    /* Directory routing: user -> shard name. Shard 0's copy is the one
     * read (st_store_dir_assign writes there). */
    "CREATE TABLE IF NOT EXISTS shard_directory ("
    " user_id BIGINT PRIMARY KEY,"
    " shard TEXT NOT NULL)",
    NULL,
};

static const char *const v2[] = { NULL };   /* st_fence_migrate (fence.c) */

static const st_migration migrations[] = {
    { 1, v1 },
    { 2, v2 },
};

static int run_stmt(st_conn *c, const char *tmpl, st_err *err)
{
    char sql[1024];
    const char *id = c->drv->id_type;
    size_t o = 0;
    for (const char *p = tmpl; *p && o + 16 < sizeof sql; ) {
        if (!strncmp(p, "@ID@", 4)) {
            o += (size_t)snprintf(sql + o, sizeof sql - o, "%s", id);
            p += 4;
        } else {
            sql[o++] = *p++;
        }
    }
    sql[o] = 0;
    return st_conn_exec(c, sql, NULL, 0, NULL, err);
}

static int current_version(st_conn *c, int *v, st_err *err)
{
    st_res *r = NULL;
    if (st_conn_exec(c, "CREATE TABLE IF NOT EXISTS schema_version ("
                        " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
                     NULL, 0, NULL, err) < 0 ||
        st_conn_exec(c, "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                     NULL, 0, &r, err) < 0)
        return -1;
    *v = (int)st_res_int(r, 0, 0);
    st_res_free(r);
    return 0;
}

int st_schema_migrate(st_conn *c, st_err *err)
{
    int have;
    if (current_version(c, &have, err) < 0)
        return -1;
    for (size_t m = 0; m < sizeof migrations / sizeof migrations[0]; m++) {
        const st_migration *mg = &migrations[m];
        if (mg->version <= have)
            continue;
        if (st_conn_exec(c, "BEGIN", NULL, 0, NULL, err) < 0)
            return -1;
        for (const char *const *s = mg->stmts; *s; s++) {
            if (run_stmt(c, *s, err) < 0)
                goto rollback;
        }
        if (mg->version == 2 && st_fence_migrate(c, err) < 0)
            goto rollback;
        char now[32];
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
        st_val p[2] = { st_int(mg->version), st_text(now) };
        if (st_conn_exec(c, "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                         p, 2, NULL, err) < 0) {
            if (err && err->code == ST_ECONFLICT) {   /* another instance won */
                st_conn_exec(c, "ROLLBACK", NULL, 0, NULL, NULL);
                continue;
            }
            goto rollback;
        }
        if (st_conn_exec(c, "COMMIT", NULL, 0, NULL, err) < 0)
            goto rollback;
        have = mg->version;
    }
    return 0;
rollback:;
    st_err keep = err ? *err : (st_err){ 0 };
    st_conn_exec(c, "ROLLBACK", NULL, 0, NULL, NULL);
    if (err)
        *err = keep;
    return -1;
}
