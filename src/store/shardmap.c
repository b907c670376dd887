/* shardmap.c -- the versioned shard map: which shards exist (names, urls,
 * weights) under which strategy, kept in the meta shard (shard 0) table
 * hscale_shard_map, one row per version.
 *
 * Invariants: versions only grow; a shard keeps its index forever (maps
 * only append shards), so shard 0 stays the meta shard and an index held
 * by a worker stays valid; a store adopts a map only when it is newer than
 * its own, under map_mu, by setting up the new shards first, then raising
 * nshards, then swapping the router, then publishing the version, so a
 * worker that sees the new version routes with the new router. Old routers
 * are retired, not freed, until close (a worker may still be reading one).
 * The map_version a store holds is what its writes carry to the fences. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "store/replicas_int.h"

static const char *const map_strategies[] = { "hash", "range", "directory" };

void st_map_current(st_store *s, st_map *out)
{
    memset(out, 0, sizeof *out);
    out->version = s->map_version;
    out->strategy = s->strategy;
    int n = s->nshards;
    for (int i = 0; i < n; i++) {
        st_mapshard *m = &out->shards[i];
        const st_shard *sh = &s->shards[i];
        snprintf(m->name, sizeof m->name, "%s", sh->name);
        snprintf(m->primary, sizeof m->primary, "%s", st_pool_url(sh->primary.pool));
        st_node *reps[ST_MAX_REPLICAS];    /* the set may change meanwhile */
        size_t nr = st_replicas_get((st_shard *)sh, reps);
        for (size_t r = 0; r < nr; r++) {
            if (m->nreplicas < 8)
                snprintf(m->replicas[m->nreplicas++], sizeof m->replicas[0], "%s",
                         st_pool_url(reps[r]->pool));
            st_replica_put((st_shard *)sh, reps[r]);
        }
        m->weight = s->weights[i];
    }
    out->n = (size_t)n;
}

int st_map_to_json(const st_map *m, buf *out)
{
    json_t *shards = json_array();
    for (size_t i = 0; i < m->n; i++) {
        json_t *reps = json_array();
        for (size_t r = 0; r < m->shards[i].nreplicas; r++)
            json_array_append_new(reps, json_string(m->shards[i].replicas[r]));
        json_array_append_new(shards, json_pack("{s:s, s:s, s:o, s:f}", "name",
                              m->shards[i].name, "primary", m->shards[i].primary,
                              "replicas", reps, "weight", m->shards[i].weight));
    }
    json_t *j = json_pack("{s:I, s:s, s:o}", "version", (json_int_t)m->version, "strategy",
                          map_strategies[m->strategy], "shards", shards);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return -1;
    int rc = buf_append_str(out, text);
    free(text);
    return rc;
}

int st_map_parse(const char *text, st_map *out, st_err *err)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        return st_fail(err, ST_EINVAL, "shard map: bad JSON: %s", je.text);
    json_t *shards = json_object_get(j, "shards");
    const char *strat = json_string_value(json_object_get(j, "strategy"));
    out->version = json_integer_value(json_object_get(j, "version"));
    out->strategy = -1;
    for (int k = 0; k < 3; k++)
        if (strat && !strcmp(strat, map_strategies[k]))
            out->strategy = k;
    if (out->version < 1 || out->strategy < 0 || !json_is_array(shards) ||
        json_array_size(shards) == 0 || json_array_size(shards) > ST_SHARDS_CAP) {
        json_decref(j);
        return st_fail(err, ST_EINVAL, "shard map: expected version >= 1, a strategy and"
                       " 1..%d shards", ST_SHARDS_CAP);
    }
    for (size_t i = 0; i < json_array_size(shards); i++) {
        json_t *e = json_array_get(shards, i);
        st_mapshard *m = &out->shards[i];
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *primary = json_string_value(json_object_get(e, "primary"));
        if (!name || !*name || !primary || strlen(name) >= sizeof m->name ||
            strlen(primary) >= sizeof m->primary) {
            json_decref(j);
            return st_fail(err, ST_EINVAL, "shard map: shards[%zu]: name (< 64 bytes) and"
                           " primary (< 512) expected", i);
        }
        snprintf(m->name, sizeof m->name, "%s", name);
        snprintf(m->primary, sizeof m->primary, "%s", primary);
        json_t *reps = json_object_get(e, "replicas");
        for (size_t r = 0; r < json_array_size(reps) && r < 8; r++) {
            const char *u = json_string_value(json_array_get(reps, r));
            if (u && strlen(u) < sizeof m->replicas[0])
                snprintf(m->replicas[m->nreplicas++], sizeof m->replicas[0], "%s", u);
        }
        m->weight = json_number_value(json_object_get(e, "weight"));
        if (m->weight <= 0)
            m->weight = 1;
        out->n++;
    }
    json_decref(j);
    return 0;
}

st_router *st_map_router(st_store *s, const st_map *m, st_err *err)
{
    if (m->strategy == ST_ROUTE_HASH) {
        st_router *r = st_router_new(ST_ROUTE_HASH);
        if (!r) {
            st_fail(err, ST_ENOMEM, "out of memory");
            return NULL;
        }
        for (size_t i = 0; i < m->n; i++) {
            if (st_router_add_shard(r, m->shards[i].name, m->shards[i].weight, err) < 0) {
                st_router_free(r);
                return NULL;
            }
        }
        st_router_set_default(r, 0);
        return r;
    }
    if (m->strategy == ST_ROUTE_DIRECTORY) {
        /* Directory entries live in the router: grow the current one (its
         * ring is unused, so adding shards is safe under readers). */
        st_router *r = s->router;
        while (st_router_nshards(r) < (int)m->n)
            if (st_router_add_shard(r, m->shards[st_router_nshards(r)].name, 1, err) < 0)
                return NULL;
        return r;
    }
    st_fail(err, ST_EINVAL, "strategy range cannot change shards at run time;"
            " use hash or directory");
    return NULL;
}

static int map_compatible(st_store *s, const st_map *m, st_err *err)
{
    if (m->strategy != s->strategy)
        return st_fail(err, ST_EINVAL, "stored shard map v%lld uses strategy %s, the config %s",
                       (long long)m->version, map_strategies[m->strategy],
                       map_strategies[s->strategy]);
    int n = s->nshards;
    if ((int)m->n < n)
        return st_fail(err, ST_EINVAL, "stored shard map v%lld has %zu shards, the store %d",
                       (long long)m->version, m->n, n);
    for (int i = 0; i < n; i++)
        if (strcmp(m->shards[i].name, s->shards[i].name))
            return st_fail(err, ST_EINVAL, "stored shard map v%lld: shard %d is '%s', the"
                           " config's '%s'", (long long)m->version, i, m->shards[i].name,
                           s->shards[i].name);
    return 0;
}

int st_map_adopt(st_store *s, const st_map *m, st_err *err)
{
    if (m->version <= s->map_version)
        return 0;
    if (map_compatible(s, m, err) < 0)
        return -1;
    int n = s->nshards;
    for (size_t i = (size_t)n; i < m->n; i++) {
        const st_mapshard *ms = &m->shards[i];
        char *reps[8];
        for (size_t r = 0; r < ms->nreplicas; r++)
            reps[r] = (char *)ms->replicas[r];
        if (st_shard_setup(s, (int)i, ms->name, ms->primary, reps, ms->nreplicas, err) < 0) {
            st_shard_teardown(&s->shards[i]);
            return -1;
        }
        s->weights[i] = ms->weight;
        s->nshards = (int)i + 1;
        log_info("store: shard %s (%s) joins with map v%lld", ms->name,
                 s->shards[i].primary.url_safe, (long long)m->version);
    }
    for (size_t i = 0; i < m->n; i++)
        s->weights[i] = m->shards[i].weight;
    st_router *old = s->router;
    st_router *r = st_map_router(s, m, err);
    if (!r)
        return -1;
    if (r != old) {
        st_router **ret = realloc(s->retired, (s->nretired + 1) * sizeof *ret);
        if (!ret) {
            st_router_free(r);
            return st_fail(err, ST_ENOMEM, "out of memory");
        }
        s->retired = ret;
        s->retired[s->nretired++] = old;
        s->router = r;
    }
    if (m->strategy == ST_ROUTE_DIRECTORY)
        st_store_load_directory(s);
    if (s->map_version > 0)      /* a change at run time, not the map found at open */
        s->map_changed_us = st_now_us();
    s->map_version = m->version;
    log_info("store: shard map v%lld adopted (%zu shards)", (long long)m->version, m->n);
    return 0;
}

/* The newest stored map, or version 0 in *out when there is none. */
static int map_load(st_store *s, st_map *out, st_err *err)
{
    st_res *r = NULL;
    out->version = 0;
    if (st_query_shard(s, 0, ST_WRITE, "SELECT body FROM hscale_shard_map ORDER BY version DESC"
                       " LIMIT 1", NULL, 0, &r, err) < 0)
        return -1;
    int rc = 0;
    if (st_res_rows(r))
        rc = st_map_parse(st_res_text(r, 0, 0, NULL), out, err);
    st_res_free(r);
    return rc;
}

int64_t st_map_stored_version(st_store *s, st_err *err)
{
    st_res *r = NULL;
    if (st_query_shard(s, 0, ST_WRITE, "SELECT COALESCE(MAX(version), 0) FROM hscale_shard_map",
                       NULL, 0, &r, err) < 0)
        return -1;
    int64_t v = st_res_int(r, 0, 0);
    st_res_free(r);
    return v;
}

void st_map_open(st_store *s)
{
    static st_map m;     /* ~40 KiB: not on the stack */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    st_err err;
    pthread_mutex_lock(&mu);
    if (map_load(s, &m, &err) < 0) {
        log_warn("store: shard map not loaded (shard %s): %s; using the config",
                 s->shards[0].name, err.msg);
    } else if (m.version == 0) {
        st_map_current(s, &m);
        m.version = 1;
        buf b;
        buf_init(&b);
        char now[32];
        time_t t = time(NULL);
        struct tm tm;
        strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        st_map_to_json(&m, &b);
        st_val p[3] = { st_int(1), st_textn(buf_head(&b), b.len), st_text(now) };
        if (st_query_shard(s, 0, ST_WRITE, "INSERT INTO hscale_shard_map (version, body,"
                           " created_at) VALUES (?, ?, ?) ON CONFLICT (version) DO NOTHING",
                           p, 3, NULL, &err) < 0)
            log_warn("store: shard map v1 not stored: %s", err.msg);
        buf_free(&b);
        s->map_version = 1;
        pthread_mutex_unlock(&mu);
        st_store_map_refresh(s, NULL);   /* another instance may have won */
        return;
    } else {
        pthread_mutex_lock(&s->map_mu);
        if (st_map_adopt(s, &m, &err) < 0)
            log_error("store: %s; routing by the config", err.msg);
        pthread_mutex_unlock(&s->map_mu);
    }
    pthread_mutex_unlock(&mu);
}

int st_store_map_refresh(st_store *s, st_err *err)
{
    st_map *m = malloc(sizeof *m);
    if (!m)
        return st_fail(err, ST_ENOMEM, "out of memory");
    int rc = map_load(s, m, err);
    if (rc == 0 && m->version > s->map_version) {
        pthread_mutex_lock(&s->map_mu);
        rc = m->version > s->map_version ? st_map_adopt(s, m, err) : 0;
        pthread_mutex_unlock(&s->map_mu);
        if (rc == 0)
            rc = 1;
    }
    free(m);
    return rc;
}

int64_t st_store_map_version(const st_store *s) { return s->map_version; }

double st_store_shard_weight(const st_store *s, int shard)
{
    return shard >= 0 && shard < s->nshards ? s->weights[shard] : 0;
}

void st_store_map_json(st_store *s, buf *out)
{
    st_map *m = malloc(sizeof *m);
    if (!m) {
        buf_append_str(out, "null");
        return;
    }
    st_map_current(s, m);
    /* urls may hold passwords: show them redacted */
    for (size_t i = 0; i < m->n; i++) {
        char safe[128];
        st_url_redact(m->shards[i].primary, safe, sizeof safe);
        snprintf(m->shards[i].primary, sizeof m->shards[i].primary, "%s", safe);
        for (size_t r = 0; r < m->shards[i].nreplicas; r++) {
            st_url_redact(m->shards[i].replicas[r], safe, sizeof safe);
            snprintf(m->shards[i].replicas[r], sizeof m->shards[i].replicas[r], "%s", safe);
        }
    }
    st_map_to_json(m, out);
    free(m);
}
