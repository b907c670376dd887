/* app_seed.c -- `hscale app seed`: deterministic realistic data.
 *
 * Users get ids 1..N so that benchmarks can name a user (user_id=7); each
 * user's rows are written in one transaction on that user's shard, so an
 * interrupted seed never leaves a user half-filled. A xorshift generator
 * seeded by the caller makes two runs produce the same rows. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "app/app.h"

static const char *const firsts[] = { "Ava", "Liam", "Noah", "Emma", "Mia", "Lucas",
                                      "Zoe", "Omar", "Ines", "Kai", "Nora", "Ravi" };
static const char *const lasts[] = { "Smith", "Garcia", "Chen", "Patel", "Okafor",
                                     "Novak", "Silva", "Kim", "Dubois", "Rossi" };
static const char *const specialties[] = { "orthopedics", "cardiology", "neurosurgery",
                                            "general", "urology" };
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int seed_user(st_store *s, int64_t uid, int64_t ncases, int64_t *next_case,
                     uint64_t *rs, st_err *e)
{
    st_tx *tx;
    if (st_tx_begin(s, uid, &tx, e) != 0)
        return -1;
    char npi[24], email[64], name[64], date[32];
    const char *now = "2026-01-01T00:00:00Z";
    snprintf(npi, sizeof npi, "%010" PRId64, 1000000000 + uid);
    const char *fn = firsts[rnd(rs) % NELEM(firsts)], *ln = lasts[rnd(rs) % NELEM(lasts)];
    snprintf(email, sizeof email, "user%" PRId64 "@example.org", uid);
    st_val u[] = { st_int(uid), st_text(npi), st_text(fn), st_text(ln), st_text(email), st_text(now) };
    if (st_tx_exec(tx, "INSERT INTO users (user_id, npi_number, first_name, last_name, email,"
                       " created_at) VALUES (?, ?, ?, ?, ?, ?)", u, 6, NULL, e) != 0)
        goto fail;
    /* Facility and surgeon ids derive from the user id: unique across
     * shards without coordination. */
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "%s Medical Center %d", lasts[rnd(rs) % NELEM(lasts)], k + 1);
        st_val f[] = { st_int(uid * 10 + k), st_int(uid), st_text(name), st_text(now) };
        if (st_tx_exec(tx, "INSERT INTO facilities (facility_id, user_id, facility_name, created_at)"
                           " VALUES (?, ?, ?, ?)", f, 4, NULL, e) != 0)
            goto fail;
        st_val g[] = { st_int(uid * 10 + k), st_int(uid), st_text(firsts[rnd(rs) % NELEM(firsts)]),
                       st_text(lasts[rnd(rs) % NELEM(lasts)]),
                       st_text(specialties[rnd(rs) % NELEM(specialties)]), st_text(now) };
        if (st_tx_exec(tx, "INSERT INTO surgeons (surgeon_id, user_id, first_name, last_name,"
                           " specialty, created_at) VALUES (?, ?, ?, ?, ?, ?)", g, 6, NULL, e) != 0)
            goto fail;
    }
    for (int64_t i = 0; i < ncases; i++) {
        uint64_t r = rnd(rs);
        snprintf(date, sizeof date, "2026-%02d-%02d", (int)(r % 12) + 1, (int)(r / 12 % 28) + 1);
        st_val cv[] = { st_int((*next_case)++), st_int(uid), st_int(uid * 10 + (int64_t)(r % 3)),
                        st_int(uid * 10 + (int64_t)(r / 3 % 3)),
                        st_text(firsts[r / 9 % NELEM(firsts)]), st_text(lasts[r / 7 % NELEM(lasts)]),
                        st_text("1970-01-01"), st_text(date), st_int((int64_t)(r / 5 % 20)),
                        st_text(now), st_text(now) };
        if (st_tx_exec(tx, "INSERT INTO cases (case_id, user_id, facility_id, surgeon_id,"
                           " patient_first, patient_last, patient_dob, case_date, case_status,"
                           " created_date, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       cv, 11, NULL, e) != 0)
            goto fail;
    }
    if (st_tx_commit(tx, e) != 0)
        return -1;
    st_note_write(s, uid);
    return 0;
fail:
    st_tx_rollback(tx);
    return -1;
}

int app_seed_store(const st_config *cfg, int64_t users, int64_t cases, uint64_t seed,
                   char *err, size_t errlen)
{
    st_store *s;
    st_err e;
    if (st_store_open(cfg, &s, &e) != 0) {
        snprintf(err, errlen, "store: %s", e.msg);
        return -1;
    }
    uint64_t rs = seed ? seed : 0x9E3779B97F4A7C15ull;
    int64_t next_case = 1;
    for (int64_t uid = 1; uid <= users; uid++) {
        int64_t n = cases / users + (uid <= cases % users ? 1 : 0);
        if (seed_user(s, uid, n, &next_case, &rs, &e) != 0) {
            snprintf(err, errlen, "seeding user %" PRId64 ": %s", uid, e.msg);
            st_store_close(s);
            return -1;
        }
    }
    st_store_close(s);
    return 0;
}

int app_seed(const char *db, int64_t users, int64_t cases, uint64_t seed,
             char *err, size_t errlen)
{
    st_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.url = (char *)db;
    cfg.migrate = true;
    return app_seed_store(&cfg, users, cases, seed, err, errlen);
}
