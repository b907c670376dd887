/* fence.c -- schema v2: the tables and triggers online resharding rests on.
 *
 * Per shard:
 *   hscale_fence      one row: min_version (writes from an older shard map
 *                     are refused), freeze_version (during a cutover, writes
 *                     of moving users and new users from an older map are
 *                     refused), capture (1: log every change)
 *   hscale_moving     users leaving this shard in the running move
 *   hscale_changelog  (seq, tbl, pk, user_id) of every change while capture
 *                     is on, consumed by the coordinator's catch-up
 * and on shard 0 only by use (created everywhere, harmless):
 *   hscale_shard_map  versioned shard maps (JSON bodies)
 *   hscale_reshard_job  which instance runs a move (one at a time)
 *
 * The fence is a BEFORE trigger on users, facilities, surgeons and cases
 * comparing the writing connection's map version (SQLite: the
 * hscale_map_version() function the driver registers on every connection;
 * PostgreSQL: the hscale.map_version session setting) with the row of
 * hscale_fence, so no path into the database can bypass it, a stale
 * instance included. The refusal is "hscale_fenced" (SQLite, a RAISE) or
 * SQLSTATE HSF01 (PostgreSQL), which the drivers turn into ST_EFENCED.
 * Capture is an AFTER trigger. The coordinator's own connections skip
 * both: on SQLite its version is ST_COORD_VERSION (above any map), on
 * PostgreSQL session_replication_role = replica (which also lifts the
 * foreign keys while rows arrive in any order). */
#include <stdio.h>
#include <string.h>

#include "store/store_int.h"

static const char *const fence_tables[4][2] = {
    { "users", "user_id" }, { "facilities", "facility_id" },
    { "surgeons", "surgeon_id" }, { "cases", "case_id" },
};

static const char *const common_sql[] = {
    "CREATE TABLE IF NOT EXISTS hscale_fence ("
    " id INTEGER PRIMARY KEY, min_version BIGINT NOT NULL DEFAULT 0,"
    " freeze_version BIGINT NOT NULL DEFAULT 0, capture INTEGER NOT NULL DEFAULT 0)",
    "INSERT INTO hscale_fence (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS hscale_moving (user_id BIGINT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS hscale_shard_map ("
    " version BIGINT PRIMARY KEY, body TEXT NOT NULL, created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS hscale_reshard_job ("
    " id INTEGER PRIMARY KEY, state TEXT NOT NULL, owner TEXT, started_at TEXT)",
    NULL,
};

static const char pg_fence_fn[] =
    "CREATE OR REPLACE FUNCTION hscale_fence_check() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "DECLARE v bigint; f record; uid bigint;\n"
    "BEGIN\n"
    "  v := COALESCE(NULLIF(current_setting('hscale.map_version', true), ''), '0')::bigint;\n"
    "  SELECT min_version, freeze_version INTO f FROM hscale_fence WHERE id = 1;\n"
    "  IF FOUND THEN\n"
    "    IF TG_OP = 'DELETE' THEN uid := OLD.user_id; ELSE uid := NEW.user_id; END IF;\n"
    "    IF v < f.min_version OR (v < f.freeze_version AND ((TG_TABLE_NAME = 'users' AND"
    " TG_OP = 'INSERT') OR EXISTS (SELECT 1 FROM hscale_moving m WHERE m.user_id = uid))) THEN\n"
    "      RAISE EXCEPTION 'hscale_fenced: shard map version % is stale on this shard', v"
    " USING ERRCODE = 'HSF01';\n"
    "    END IF;\n"
    "  END IF;\n"
    "  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;\n"
    "  RETURN NEW;\n"
    "END $$";

static const char pg_capture_fn[] =
    "CREATE OR REPLACE FUNCTION hscale_capture() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "DECLARE r jsonb;\n"
    "BEGIN\n"
    "  IF (SELECT capture FROM hscale_fence WHERE id = 1) = 1 THEN\n"
    "    IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;\n"
    "    INSERT INTO hscale_changelog (tbl, pk, user_id) VALUES (TG_TABLE_NAME,"
    " (r ->> TG_ARGV[0])::bigint, (r ->> 'user_id')::bigint);\n"
    "  END IF;\n"
    "  RETURN NULL;\n"
    "END $$";

static int run(st_conn *c, const char *sql, st_err *err)
{
    return st_conn_exec(c, sql, NULL, 0, NULL, err);
}

static int fence_pg(st_conn *c, st_err *err)
{
    char sql[512];
    if (run(c, "CREATE TABLE IF NOT EXISTS hscale_changelog (seq BIGSERIAL PRIMARY KEY,"
               " tbl TEXT NOT NULL, pk BIGINT NOT NULL, user_id BIGINT NOT NULL)", err) < 0 ||
        run(c, pg_fence_fn, err) < 0 || run(c, pg_capture_fn, err) < 0)
        return -1;
    for (size_t t = 0; t < 4; t++) {
        snprintf(sql, sizeof sql, "CREATE OR REPLACE TRIGGER hscale_fence_%s BEFORE INSERT OR"
                 " UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION hscale_fence_check()",
                 fence_tables[t][0], fence_tables[t][0]);
        if (run(c, sql, err) < 0)
            return -1;
        snprintf(sql, sizeof sql, "CREATE OR REPLACE TRIGGER hscale_capture_%s AFTER INSERT OR"
                 " UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION hscale_capture('%s')",
                 fence_tables[t][0], fence_tables[t][0], fence_tables[t][1]);
        if (run(c, sql, err) < 0)
            return -1;
    }
    return 0;
}

static int fence_sqlite(st_conn *c, st_err *err)
{
    static const char *const ops[3][2] = { { "INSERT", "NEW" }, { "UPDATE", "NEW" },
                                           { "DELETE", "OLD" } };
    char sql[1024];
    if (run(c, "CREATE TABLE IF NOT EXISTS hscale_changelog (seq INTEGER PRIMARY KEY"
               " AUTOINCREMENT, tbl TEXT NOT NULL, pk BIGINT NOT NULL, user_id BIGINT NOT NULL)",
            err) < 0)
        return -1;
    for (size_t t = 0; t < 4; t++) {
        const char *tbl = fence_tables[t][0], *pk = fence_tables[t][1];
        for (size_t o = 0; o < 3; o++) {
            bool new_user = t == 0 && o == 0;
            snprintf(sql, sizeof sql,
                     "CREATE TRIGGER IF NOT EXISTS hscale_fence_%s_%c BEFORE %s ON %s WHEN"
                     " hscale_map_version() < (SELECT min_version FROM hscale_fence WHERE id = 1)"
                     " OR (hscale_map_version() < (SELECT freeze_version FROM hscale_fence WHERE"
                     " id = 1) AND (%s EXISTS (SELECT 1 FROM hscale_moving WHERE user_id ="
                     " %s.user_id)))"
                     " BEGIN SELECT RAISE(ABORT, 'hscale_fenced: shard map is stale on this"
                     " shard'); END",
                     tbl, ops[o][0][0], ops[o][0], tbl, new_user ? "1 OR" : "", ops[o][1]);
            if (run(c, sql, err) < 0)
                return -1;
            snprintf(sql, sizeof sql,
                     "CREATE TRIGGER IF NOT EXISTS hscale_capture_%s_%c AFTER %s ON %s WHEN"
                     " (SELECT capture FROM hscale_fence WHERE id = 1) = 1 AND"
                     " hscale_map_version() < %lld"
                     " BEGIN INSERT INTO hscale_changelog (tbl, pk, user_id) VALUES ('%s',"
                     " %s.%s, %s.user_id); END",
                     tbl, ops[o][0][0], ops[o][0], tbl, (long long)ST_COORD_VERSION, tbl,
                     ops[o][1], pk, ops[o][1]);
            if (run(c, sql, err) < 0)
                return -1;
        }
    }
    return 0;
}

int st_fence_migrate(st_conn *c, st_err *err)
{
    for (const char *const *s = common_sql; *s; s++)
        if (run(c, *s, err) < 0)
            return -1;
    return c->drv == &st_driver_pg ? fence_pg(c, err) : fence_sqlite(c, err);
}
