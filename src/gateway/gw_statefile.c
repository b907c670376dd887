/* gw_statefile.c -- the runtime state file (see gw_statefile.h).
 *
 * Why a file and not the control plane alone: a restarted gateway that
 * starts with an empty pool answers 503 until the control plane notices
 * and registers every instance again (a check interval or more). With the
 * file it serves at once from the members it had; its own health checks
 * then confirm or eject them, and the control plane removes, on its next
 * sync, members it no longer knows (those carry `restored` in the API).
 *
 * What is kept is what an operator or the control plane decided (members,
 * weights, admin states, drains, split weights); what the gateway observed
 * (health, ejections, latency) is not: it is stale by the time anyone
 * reads the file, and the checks relearn it in seconds.
 *
 * Loading is all-or-nothing: a file that does not parse or holds a bad
 * value is refused whole with the entry and field named, and the gateway
 * starts from its configuration alone. Writing happens under the edit lock
 * at API speed, never on the request path. */
#include "gateway/gw_statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "gateway/gw_api.h"

static int bad(char *err, size_t errlen, const char *where, const char *what)
{
    snprintf(err, errlen, "%s: %s", where, what);
    return -1;
}

static int get_str(json_t *o, const char *key, bool required, char *out, size_t cap,
                   const char *where, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    char w[160];
    snprintf(w, sizeof w, "%s.%s", where, key);
    if (!v || json_is_null(v)) {
        if (required)
            return bad(err, errlen, w, "expected a string, got nothing");
        out[0] = '\0';
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) >= cap)
        return bad(err, errlen, w, "expected a string no longer than the field allows");
    snprintf(out, cap, "%s", json_string_value(v));
    return 0;
}

static int get_int(json_t *o, const char *key, int def, int min, int max, int *out,
                   const char *where, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    char w[160], m[64];
    snprintf(w, sizeof w, "%s.%s", where, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(m, sizeof m, "expected an integer %d..%d", min, max);
        return bad(err, errlen, w, m);
    }
    *out = (int)json_integer_value(v);
    return 0;
}

static int parse_member(json_t *j, const char *pool, const char *where, gw_saved_member *m,
                        char *err, size_t errlen)
{
    char st[16], w[160], e[128];
    sock_addr a;
    if (!json_is_object(j))
        return bad(err, errlen, where, "expected an object");
    memset(m, 0, sizeof *m);
    snprintf(m->pool, sizeof m->pool, "%s", pool);
    if (get_str(j, "address", true, m->address, sizeof m->address, where, err, errlen) < 0
        || get_int(j, "weight", 1, 1, 1000, &m->weight, where, err, errlen) < 0
        || get_str(j, "state", false, st, sizeof st, where, err, errlen) < 0)
        return -1;
    snprintf(w, sizeof w, "%s.address", where);
    if (sock_addr_parse(m->address, &a, e, sizeof e) < 0)
        return bad(err, errlen, w, e);
    json_t *b = json_object_get(j, "backup");
    if (b && !json_is_boolean(b)) {
        snprintf(w, sizeof w, "%s.backup", where);
        return bad(err, errlen, w, "expected true or false");
    }
    m->backup = b && json_is_true(b);
    m->state = st[0] ? gw_state_parse(st) : GW_ST_READY;
    if (m->state < 0) {
        snprintf(w, sizeof w, "%s.state", where);
        return bad(err, errlen, w, "expected ready, draining, maint or down");
    }
    json_t *d = json_object_get(j, "drain_until");
    if (d && (!json_is_number(d) || json_number_value(d) < 0)) {
        snprintf(w, sizeof w, "%s.drain_until", where);
        return bad(err, errlen, w, "expected a time in unix seconds");
    }
    m->drain_until = d ? json_number_value(d) : 0;
    return 0;
}

static int parse_pools(json_t *pools, gw_statefile *out, char *err, size_t errlen)
{
    size_t total = 0, i, k;
    json_t *p, *mm;
    if (!json_is_array(pools))
        return bad(err, errlen, "pools", "expected an array");
    json_array_foreach(pools, i, p) {
        json_t *ms = json_is_object(p) ? json_object_get(p, "members") : NULL;
        total += json_is_array(ms) ? json_array_size(ms) : 0;
    }
    out->members = calloc(total ? total : 1, sizeof *out->members);
    if (!out->members)
        return bad(err, errlen, "pools", "out of memory");
    json_array_foreach(pools, i, p) {
        char where[96], name[GW_NAME_MAX];
        snprintf(where, sizeof where, "pools[%zu]", i);
        if (!json_is_object(p))
            return bad(err, errlen, where, "expected an object");
        if (get_str(p, "name", true, name, sizeof name, where, err, errlen) < 0)
            return -1;
        json_t *ms = json_object_get(p, "members");
        if (!json_is_array(ms)) {
            snprintf(where + strlen(where), sizeof where - strlen(where), ".members");
            return bad(err, errlen, where, "expected an array");
        }
        json_array_foreach(ms, k, mm) {
            char mw[128];
            snprintf(mw, sizeof mw, "pools[%zu].members[%zu]", i, k);
            if (parse_member(mm, name, mw, &out->members[out->nmembers], err, errlen) < 0)
                return -1;
            out->nmembers++;
        }
    }
    return 0;
}

static int parse_routes(json_t *routes, gw_statefile *out, char *err, size_t errlen)
{
    size_t total = 0, i, k;
    json_t *r, *sp;
    if (!routes)
        return 0;
    if (!json_is_array(routes))
        return bad(err, errlen, "routes", "expected an array");
    json_array_foreach(routes, i, r) {
        json_t *s = json_is_object(r) ? json_object_get(r, "split") : NULL;
        total += json_is_array(s) ? json_array_size(s) : 0;
    }
    out->splits = calloc(total ? total : 1, sizeof *out->splits);
    if (!out->splits)
        return bad(err, errlen, "routes", "out of memory");
    json_array_foreach(routes, i, r) {
        char where[96], prefix[256], host[256];
        snprintf(where, sizeof where, "routes[%zu]", i);
        if (!json_is_object(r))
            return bad(err, errlen, where, "expected an object");
        if (get_str(r, "prefix", true, prefix, sizeof prefix, where, err, errlen) < 0
            || get_str(r, "host", false, host, sizeof host, where, err, errlen) < 0)
            return -1;
        json_t *s = json_object_get(r, "split");
        if (s && !json_is_array(s)) {
            snprintf(where + strlen(where), sizeof where - strlen(where), ".split");
            return bad(err, errlen, where, "expected an array");
        }
        json_array_foreach(s, k, sp) {
            char sw[128];
            gw_saved_split *o = &out->splits[out->nsplits];
            snprintf(sw, sizeof sw, "routes[%zu].split[%zu]", i, k);
            if (!json_is_object(sp))
                return bad(err, errlen, sw, "expected an object");
            snprintf(o->prefix, sizeof o->prefix, "%s", prefix);
            snprintf(o->host, sizeof o->host, "%s", host);
            if (get_str(sp, "pool", true, o->pool, sizeof o->pool, sw, err, errlen) < 0
                || get_int(sp, "weight", 1, 0, 10000, &o->weight, sw, err, errlen) < 0)
                return -1;
            out->nsplits++;
        }
    }
    return 0;
}

int gw_statefile_parse(const char *text, size_t len, gw_statefile *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    if (!j) {
        snprintf(err, errlen, "line %d column %d: %s", je.line, je.column, je.text);
        return -1;
    }
    int version = 0, rc = -1;
    if (!json_is_object(j))
        bad(err, errlen, "file", "expected a JSON object");
    else if (get_int(j, "version", 0, 1, 1, &version, "file", err, errlen) == 0 && version != 1)
        bad(err, errlen, "file.version", "expected 1");
    else if (version == 1 && parse_pools(json_object_get(j, "pools"), out, err, errlen) == 0
             && parse_routes(json_object_get(j, "routes"), out, err, errlen) == 0)
        rc = 0;
    json_decref(j);
    if (rc < 0)
        gw_statefile_free(out);
    return rc;
}

void gw_statefile_free(gw_statefile *sf)
{
    free(sf->members);
    free(sf->splits);
    memset(sf, 0, sizeof *sf);
}

int gw_statefile_read(const char *path, gw_statefile *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            if (cap >= (64u << 20)) {
                fclose(f);
                free(text);
                snprintf(err, errlen, "%s: larger than 64 MiB", path);
                return -1;
            }
            char *n = realloc(text, cap = cap ? cap * 2 : 65536);
            if (!n) {
                fclose(f);
                free(text);
                snprintf(err, errlen, "%s: out of memory", path);
                return -1;
            }
            text = n;
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    char e[400];
    int rc = gw_statefile_parse(text ? text : "", len, out, e, sizeof e);
    free(text);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, e);
        return -1;
    }
    return 1;
}

static bool drain_over(const gw_saved_member *m, double now_unix)
{
    return m->state == GW_ST_DRAINING && m->drain_until > 0 && m->drain_until <= now_unix;
}

size_t gw_statefile_merge(const gw_statefile *sf, gw_config *cfg, double now_unix, bool *restored)
{
    size_t taken = 0;
    for (size_t i = 0; i < sf->nmembers; i++) {
        const gw_saved_member *m = &sf->members[i];
        restored[i] = false;
        int pi = gw_config_find_pool(cfg, m->pool);
        if (pi < 0)
            continue;
        gw_pool_cfg *p = &cfg->pools[pi];
        int bi = gw_api_find_backend(p, m->address);
        if (drain_over(m, now_unix)) {
            /* It was leaving and its time is up: it goes, as it would have. */
            if (bi >= 0) {
                free(p->backends[bi].address);
                memmove(&p->backends[bi], &p->backends[bi + 1],
                        (p->nbackends - (size_t)bi - 1) * sizeof *p->backends);
                p->nbackends--;
            }
            continue;
        }
        if (bi < 0) {
            if (p->nbackends >= GW_MAX_MEMBERS)
                continue;
            gw_backend_cfg *nb = realloc(p->backends, (p->nbackends + 1) * sizeof *nb);
            char *a = strdup(m->address);
            if (!nb || !a) {
                free(a);
                if (nb)
                    p->backends = nb;
                continue;
            }
            p->backends = nb;
            bi = (int)p->nbackends++;
            nb[bi].address = a;
            nb[bi].backup = m->backup;
            restored[i] = true;
        }
        p->backends[bi].weight = m->weight;
        taken++;
    }
    for (size_t i = 0; i < sf->nsplits; i++) {
        const gw_saved_split *s = &sf->splits[i];
        for (size_t r = 0; r < cfg->nroutes; r++) {
            gw_route_cfg *rc = &cfg->routes[r];
            const char *host = rc->host ? rc->host : "";
            if (!rc->prefix || strcmp(rc->prefix, s->prefix) != 0 || strcmp(host, s->host) != 0)
                continue;
            for (size_t k = 0; k < rc->nsplit; k++)
                if (rc->split[k].pool && strcmp(rc->split[k].pool, s->pool) == 0)
                    rc->split[k].weight = s->weight;
        }
    }
    return taken;
}

void gw_statefile_apply(const gw_statefile *sf, const bool *restored, gw_rt *rt, double now_unix)
{
    const gw_snap *s = gw_rcu_read(&rt->rcu);
    uint64_t mono = ev_monotonic_us();
    for (size_t i = 0; i < sf->nmembers; i++) {
        const gw_saved_member *sm = &sf->members[i];
        gw_member *m = gw_snap_find_member(s, sm->pool, sm->address);
        if (!m || drain_over(sm, now_unix))
            continue;
        atomic_store(&m->restored, restored[i]);
        if (restored[i])
            atomic_store(&m->dynamic, true);
        if (sm->state != GW_ST_DRAINING) {
            atomic_store(&m->state, sm->state);
            continue;
        }
        gw_drain *d = calloc(1, sizeof *d);
        if (!d)
            continue;
        snprintf(d->pool, sizeof d->pool, "%s", sm->pool);
        snprintf(d->id, sizeof d->id, "%s", m->name);
        d->m = m;
        gw_member_ref(m);
        d->deadline_us = mono + (sm->drain_until > now_unix
                                 ? (uint64_t)((sm->drain_until - now_unix) * 1e6) : 0);
        d->next = rt->drains;
        rt->drains = d;
        atomic_store(&m->state, GW_ST_DRAINING);
    }
}

size_t gw_statefile_keep_dynamic(const gw_snap *cur, gw_config *next)
{
    size_t n = 0, k = 0;
    for (size_t i = 0; i < cur->npools; i++)
        for (uint32_t j = 0; j < cur->pools[i].n; j++)
            n += atomic_load(&cur->pools[i].members[j]->dynamic);
    if (!n)
        return 0;
    gw_statefile sf = { .members = calloc(n, sizeof *sf.members) };
    bool *added = calloc(n, sizeof *added);
    for (size_t i = 0; sf.members && added && i < cur->npools; i++)
        for (uint32_t j = 0; j < cur->pools[i].n; j++) {
            const gw_member *m = cur->pools[i].members[j];
            int pi = gw_config_find_pool(next, cur->pools[i].name);
            /* in the new file too: the file's weight wins */
            if (!atomic_load(&m->dynamic)
                || (pi >= 0 && gw_api_find_backend(&next->pools[pi], m->name) >= 0))
                continue;
            gw_saved_member *sm = &sf.members[k++];
            snprintf(sm->pool, sizeof sm->pool, "%s", cur->pools[i].name);
            snprintf(sm->address, sizeof sm->address, "%s", m->name);
            sm->weight = (int)atomic_load(&m->weight);
            sm->backup = m->backup;
            sm->state = atomic_load(&m->state);
        }
    sf.nmembers = k;
    size_t kept = gw_statefile_merge(&sf, next, 0, added);
    free(added);
    gw_statefile_free(&sf);
    return kept;
}

static double drain_until(const gw_rt *rt, const gw_member *m, double now_unix, uint64_t mono)
{
    for (const gw_drain *d = rt->drains; d; d = d->next)
        if (d->m == m)
            return now_unix + (d->deadline_us > mono ? (double)(d->deadline_us - mono) / 1e6 : 0);
    return 0;
}

static json_t *state_json(const gw_rt *rt)
{
    const gw_snap *s = gw_rcu_read((gw_rcu *)&rt->rcu);
    double now = (double)ev_wall_us() / 1e6;
    uint64_t mono = ev_monotonic_us();
    json_t *pools = json_array(), *routes = json_array();
    for (size_t i = 0; i < s->npools; i++) {
        json_t *ms = json_array();
        for (uint32_t k = 0; k < s->pools[i].n; k++) {
            const gw_member *m = s->pools[i].members[k];
            int st = atomic_load(&m->state);
            json_array_append_new(ms, json_pack("{s:s, s:i, s:b, s:s, s:f}", "address", m->name,
                "weight", (int)atomic_load(&m->weight), "backup", m->backup,
                "state", gw_state_name((gw_state)st),
                "drain_until", st == GW_ST_DRAINING ? drain_until(rt, m, now, mono) : 0.0));
        }
        json_array_append_new(pools, json_pack("{s:s, s:o}", "name", s->pools[i].name, "members", ms));
    }
    for (size_t r = 0; r < rt->cfg.nroutes; r++) {
        const gw_route_cfg *rc = &rt->cfg.routes[r];
        if (!rc->nsplit)
            continue;
        json_t *sp = json_array();
        for (size_t k = 0; k < rc->nsplit; k++)
            json_array_append_new(sp, json_pack("{s:s, s:i}", "pool", rc->split[k].pool ? rc->split[k].pool : "",
                                                "weight", rc->split[k].weight));
        json_array_append_new(routes, json_pack("{s:s, s:s, s:o}", "prefix", rc->prefix ? rc->prefix : "/",
                                                "host", rc->host ? rc->host : "", "split", sp));
    }
    return json_pack("{s:i, s:f, s:o, s:o}", "version", 1, "written", now, "pools", pools,
                     "routes", routes);
}

void gw_statefile_save(gw_rt *rt)
{
    const char *path = rt->cfg.state_file;
    if (!path || !path[0])
        return;
    json_t *j = state_json(rt);
    char *text = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
    json_decref(j);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = text ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    bool ok = fd >= 0;
    size_t len = text ? strlen(text) : 0, off = 0;
    while (ok && off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        off += n > 0 ? (size_t)n : 0;
    }
    /* fsync before the rename: after a power cut the name must not point
     * at a file whose blocks never reached the disk. */
    ok = ok && fsync(fd) == 0;
    if (fd >= 0 && close(fd) < 0)
        ok = false;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        log_warn("state_file %s: cannot write it: %s (the running gateway is not affected)",
                 path, text ? strerror(errno) : "out of memory");
        if (fd >= 0)
            unlink(tmp);
    }
    free(text);
}
