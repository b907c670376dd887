/* bench_scenario.c -- the scenario: weighted requests, loaded from YAML or
 * built from the command line, and rendered into wire bytes.
 *
 *   think: 10ms-50ms          # per virtual user, closed model (or 20ms)
 *   headers: {Accept: application/json}   # added to every request
 *   requests:
 *     - name: health
 *       weight: 3
 *       path: /health
 *     - name: get_cases
 *       weight: 2
 *       method: GET
 *       path: /casefilter?user_id={rand:1:100}&status=10
 *       headers: {X-Trace: "{seq}"}
 *       body: '{{"n": {rand:1:9}}}'
 *
 * A request with no placeholder anywhere is rendered once, at prepare time,
 * and sent from that copy; the others render into the connection's buffer,
 * whose size is the request's max_len. Errors name the file and the YAML
 * path of the offending field ("/requests/1/weight"). */
#include <errno.h>
#include <libfyaml.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "bench/bench.h"

static void req_free(bench_req *rq)
{
    free(rq->name);
    free(rq->method);
    bench_tmpl_free(&rq->path);
    for (size_t i = 0; i < rq->nheaders; i++) {
        free(rq->headers[i].name);
        bench_tmpl_free(&rq->headers[i].value);
    }
    free(rq->headers);
    bench_tmpl_free(&rq->body);
    free(rq->static_bytes);
    memset(rq, 0, sizeof *rq);
}

void bench_scenario_free(bench_scenario *sc)
{
    for (size_t i = 0; i < sc->nreqs; i++)
        req_free(&sc->reqs[i]);
    free(sc->reqs);
    memset(sc, 0, sizeof *sc);
}

static bool token_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s <= ' ' || *s >= 127 || strchr("()<>@,;:\\\"/[]?={}", *s))
            return false;
    }
    return true;
}

/* Adds one header; `where` prefixes errors. */
static int req_add_header(bench_req *rq, const char *name, const char *value,
                          const char *where, char *err, size_t errlen)
{
    if (!token_ok(name)) {
        snprintf(err, errlen, "%s: bad header name '%s'", where, name);
        return -1;
    }
    if (!strcasecmp(name, "Content-Length") || !strcasecmp(name, "Transfer-Encoding")) {
        snprintf(err, errlen, "%s: %s is set by bench from the body", where, name);
        return -1;
    }
    if (strpbrk(value, "\r\n")) {
        snprintf(err, errlen, "%s: header '%s' value holds a line break", where, name);
        return -1;
    }
    bench_header *nh = realloc(rq->headers, (rq->nheaders + 1) * sizeof *nh);
    if (!nh) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rq->headers = nh;
    bench_header *h = &nh[rq->nheaders];
    memset(h, 0, sizeof *h);
    char terr[BENCH_ERRLEN];
    if (bench_tmpl_parse(&h->value, value, terr, sizeof terr) < 0) {
        snprintf(err, errlen, "%s: header '%s': %s", where, name, terr);
        return -1;
    }
    h->name = strdup(name);
    rq->nheaders++;
    return h->name ? 0 : -1;
}

static int req_init(bench_req *rq, const char *name, const char *method, const char *target,
                    const char *body, uint32_t weight, const char *where, char *err, size_t errlen)
{
    memset(rq, 0, sizeof *rq);
    char terr[BENCH_ERRLEN];
    if (!token_ok(method)) {
        snprintf(err, errlen, "%s: bad method '%s'", where, method);
        return -1;
    }
    if (target[0] != '/' || strpbrk(target, " \r\n\t")) {
        snprintf(err, errlen, "%s: bad path '%s' (expected /path?query without spaces)", where, target);
        return -1;
    }
    if (bench_tmpl_parse(&rq->path, target, terr, sizeof terr) < 0) {
        snprintf(err, errlen, "%s: path: %s", where, terr);
        return -1;
    }
    if (bench_tmpl_parse(&rq->body, body ? body : "", terr, sizeof terr) < 0) {
        snprintf(err, errlen, "%s: body: %s", where, terr);
        return -1;
    }
    rq->has_body = body != NULL;
    rq->name = strdup(name);
    rq->method = strdup(method);
    rq->weight = weight;
    if (!rq->name || !rq->method) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int bench_scenario_single(bench_scenario *sc, const char *method, const char *target,
                          char *const *headers, size_t nheaders, const char *body,
                          char *err, size_t errlen)
{
    memset(sc, 0, sizeof *sc);
    sc->reqs = calloc(1, sizeof *sc->reqs);
    if (!sc->reqs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    sc->nreqs = 1;
    char name[128];
    snprintf(name, sizeof name, "%.30s %.90s", method, target);
    if (req_init(&sc->reqs[0], name, method, target, body, 1, "request", err, errlen) < 0)
        goto fail;
    for (size_t i = 0; i < nheaders; i++) {
        char tmp[1024];
        const char *colon = strchr(headers[i], ':');
        size_t nl = colon ? (size_t)(colon - headers[i]) : 0;
        if (!colon || nl == 0 || nl >= sizeof tmp) {
            snprintf(err, errlen, "-H '%s': expected 'Name: value'", headers[i]);
            goto fail;
        }
        memcpy(tmp, headers[i], nl);
        tmp[nl] = 0;
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (req_add_header(&sc->reqs[0], tmp, v, "-H", err, errlen) < 0)
            goto fail;
    }
    return 0;
fail:
    bench_scenario_free(sc);
    return -1;
}

/* ---- YAML ---- */

typedef struct yctx {
    const char *file;
    char *err;
    size_t errlen;
} yctx;

static int yerr(yctx *y, struct fy_node *n, const char *what)
{
    char *path = n ? fy_node_get_path(n) : NULL;
    snprintf(y->err, y->errlen, "%s: %s: %s", y->file, path ? path : "/", what);
    free(path);
    return -1;
}

/* The scalar as a NUL-terminated copy in buf, or NULL when not a scalar. */
static const char *yscalar(struct fy_node *n, char *buf, size_t cap)
{
    size_t len;
    const char *s = n && fy_node_get_type(n) == FYNT_SCALAR ? fy_node_get_scalar(n, &len) : NULL;
    if (!s || len >= cap)
        return NULL;
    memcpy(buf, s, len);
    buf[len] = 0;
    return buf;
}

static int yheaders(yctx *y, struct fy_node *n, bench_req *rq)
{
    if (fy_node_get_type(n) != FYNT_MAPPING)
        return yerr(y, n, "expected a mapping of header names to values");
    void *it = NULL;
    struct fy_node_pair *pr;
    char name[256], value[4096], *where = fy_node_get_path(n);
    int rc = 0;
    while (rc == 0 && (pr = fy_node_mapping_iterate(n, &it)) != NULL) {
        if (!yscalar(fy_node_pair_key(pr), name, sizeof name) ||
            !yscalar(fy_node_pair_value(pr), value, sizeof value)) {
            rc = yerr(y, n, "header names and values must be strings (value < 4 KiB)");
            break;
        }
        char w[512];
        snprintf(w, sizeof w, "%s: %s", y->file, where ? where : "headers");
        rc = req_add_header(rq, name, value, w, y->err, y->errlen);
    }
    free(where);
    return rc;
}

static int ythink(yctx *y, struct fy_node *n, bench_scenario *sc)
{
    char a[64], b[64];
    if (fy_node_get_type(n) == FYNT_MAPPING) {
        struct fy_node *lo = fy_node_mapping_lookup_by_string(n, "min", FY_NT);
        struct fy_node *hi = fy_node_mapping_lookup_by_string(n, "max", FY_NT);
        if (!yscalar(lo, a, sizeof a) || !yscalar(hi, b, sizeof b) ||
            bench_parse_duration(a, &sc->think_min_us) < 0 ||
            bench_parse_duration(b, &sc->think_max_us) < 0)
            return yerr(y, n, "expected {min: DURATION, max: DURATION}");
    } else {
        if (!yscalar(n, a, sizeof a))
            return yerr(y, n, "expected a duration (20ms) or a range (10ms-50ms)");
        char *dash = strchr(a, '-');
        if (dash)
            *dash = 0;
        if (bench_parse_duration(a, &sc->think_min_us) < 0 ||
            bench_parse_duration(dash ? dash + 1 : a, &sc->think_max_us) < 0)
            return yerr(y, n, "expected a duration (20ms) or a range (10ms-50ms)");
    }
    if (sc->think_min_us > sc->think_max_us)
        return yerr(y, n, "think time minimum is above its maximum");
    return 0;
}

static int yrequest(yctx *y, struct fy_node *n, bench_req *rq, size_t idx)
{
    if (fy_node_get_type(n) != FYNT_MAPPING)
        return yerr(y, n, "expected a mapping with path (and name, weight, method, headers, body)");
    static const char *const known[] = {"name", "weight", "method", "path", "headers", "body", NULL};
    void *it = NULL;
    struct fy_node_pair *pr;
    char key[64];
    while ((pr = fy_node_mapping_iterate(n, &it)) != NULL) {
        if (!yscalar(fy_node_pair_key(pr), key, sizeof key))
            return yerr(y, n, "keys must be strings");
        size_t k = 0;
        while (known[k] && strcmp(known[k], key))
            k++;
        if (!known[k]) {
            char msg[160];
            snprintf(msg, sizeof msg, "unknown key '%s' (expected name, weight, method, path, headers, body)", key);
            return yerr(y, n, msg);
        }
    }
    char name[128], method[32], path[8192], wbuf[32];
    char *body = NULL;
    struct fy_node *f;
    if (!(f = fy_node_mapping_lookup_by_string(n, "path", FY_NT)) || !yscalar(f, path, sizeof path))
        return yerr(y, n, "missing 'path' (a string like /health)");
    if ((f = fy_node_mapping_lookup_by_string(n, "method", FY_NT)) != NULL) {
        if (!yscalar(f, method, sizeof method))
            return yerr(y, f, "expected a method name");
    } else {
        strcpy(method, "GET");
    }
    if ((f = fy_node_mapping_lookup_by_string(n, "name", FY_NT)) != NULL) {
        if (!yscalar(f, name, sizeof name) || !name[0] || strchr(name, ':'))
            return yerr(y, f, "expected a non-empty name without ':'");
    } else {
        snprintf(name, sizeof name, "%s %.*s", method, 90, path);
    }
    unsigned long weight = 1;
    if ((f = fy_node_mapping_lookup_by_string(n, "weight", FY_NT)) != NULL) {
        char *end;
        errno = 0;
        if (!yscalar(f, wbuf, sizeof wbuf) ||
            ((weight = strtoul(wbuf, &end, 10)), errno || *end || end == wbuf) ||
            weight == 0 || weight > 1000000)
            return yerr(y, f, "expected a whole number from 1 to 1000000");
    }
    if ((f = fy_node_mapping_lookup_by_string(n, "body", FY_NT)) != NULL) {
        size_t len;
        const char *s = fy_node_get_type(f) == FYNT_SCALAR ? fy_node_get_scalar(f, &len) : NULL;
        if (!s || len > (1u << 20))
            return yerr(y, f, "expected a string of at most 1 MiB");
        body = strndup(s, len);
        if (!body)
            return yerr(y, f, "out of memory");
    }
    char where[256];
    char *p = fy_node_get_path(n);
    snprintf(where, sizeof where, "%s: %s", y->file, p ? p : "request");
    free(p);
    (void)idx;
    int rc = req_init(rq, name, method, path, body, (uint32_t)weight, where, y->err, y->errlen);
    free(body);
    if (rc == 0 && (f = fy_node_mapping_lookup_by_string(n, "headers", FY_NT)) != NULL)
        rc = yheaders(y, f, rq);
    return rc;
}

int bench_scenario_load(bench_scenario *sc, const char *path, char *err, size_t errlen)
{
    memset(sc, 0, sizeof *sc);
    yctx y = { path, err, errlen };
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    fclose(f);
    struct fy_parse_cfg cfg = { .flags = FYPCF_QUIET };
    struct fy_document *doc = fy_document_build_from_file(&cfg, path);
    if (!doc) {
        snprintf(err, errlen, "%s: not valid YAML", path);
        return -1;
    }
    int rc = -1;
    struct fy_node *root = fy_document_root(doc), *n;
    if (!root || fy_node_get_type(root) != FYNT_MAPPING) {
        yerr(&y, root, "expected a mapping with 'requests'");
        goto out;
    }
    void *it = NULL;
    struct fy_node_pair *pr;
    char key[64];
    while ((pr = fy_node_mapping_iterate(root, &it)) != NULL) {
        if (!yscalar(fy_node_pair_key(pr), key, sizeof key) ||
            (strcmp(key, "requests") && strcmp(key, "think") && strcmp(key, "headers"))) {
            yerr(&y, root, "unknown top-level key (expected requests, think, headers)");
            goto out;
        }
    }
    if ((n = fy_node_mapping_lookup_by_string(root, "think", FY_NT)) != NULL && ythink(&y, n, sc) < 0)
        goto out;
    n = fy_node_mapping_lookup_by_string(root, "requests", FY_NT);
    if (!n || fy_node_get_type(n) != FYNT_SEQUENCE || fy_node_sequence_item_count(n) == 0) {
        yerr(&y, n ? n : root, "'requests' must be a non-empty list");
        goto out;
    }
    size_t cnt = (size_t)fy_node_sequence_item_count(n);
    sc->reqs = calloc(cnt, sizeof *sc->reqs);
    if (!sc->reqs) {
        yerr(&y, n, "out of memory");
        goto out;
    }
    it = NULL;
    struct fy_node *item;
    while ((item = fy_node_sequence_iterate(n, &it)) != NULL) {
        if (yrequest(&y, item, &sc->reqs[sc->nreqs], sc->nreqs) < 0) {
            req_free(&sc->reqs[sc->nreqs]);
            goto out;
        }
        sc->nreqs++;
        for (size_t j = 0; j + 1 < sc->nreqs; j++) {
            if (!strcmp(sc->reqs[j].name, sc->reqs[sc->nreqs - 1].name)) {
                yerr(&y, item, "duplicate request name (names key the report and thresholds)");
                goto out;
            }
        }
    }
    /* Common headers go to every request that does not set its own. */
    struct fy_node *common = fy_node_mapping_lookup_by_string(root, "headers", FY_NT);
    if (common) {
        bench_req tmp;
        memset(&tmp, 0, sizeof tmp);
        if (yheaders(&y, common, &tmp) < 0) {
            req_free(&tmp);
            goto out;
        }
        for (size_t i = 0; i < sc->nreqs; i++) {
            for (size_t h = 0; h < tmp.nheaders; h++) {
                bool has = false;
                for (size_t k = 0; k < sc->reqs[i].nheaders; k++)
                    has |= !strcasecmp(sc->reqs[i].headers[k].name, tmp.headers[h].name);
                if (!has && req_add_header(&sc->reqs[i], tmp.headers[h].name,
                                           tmp.headers[h].value.text, path, err, errlen) < 0) {
                    req_free(&tmp);
                    goto out;
                }
            }
        }
        req_free(&tmp);
    }
    rc = 0;
out:
    fy_document_destroy(doc);
    if (rc < 0)
        bench_scenario_free(sc);
    return rc;
}

/* ---- rendering ---- */

static bool has_header(const bench_req *rq, const char *name)
{
    for (size_t i = 0; i < rq->nheaders; i++)
        if (!strcasecmp(rq->headers[i].name, name))
            return true;
    return false;
}

static bool has_host(const bench_req *rq)
{
    return has_header(rq, "Host");
}

int bench_scenario_prepare(bench_scenario *sc, const char *host_header, char *err, size_t errlen)
{
    sc->total_weight = 0;
    for (size_t i = 0; i < sc->nreqs; i++) {
        bench_req *rq = &sc->reqs[i];
        sc->total_weight += rq->weight;
        size_t max = strlen(rq->method) + 1 + rq->path.max_len + sizeof " HTTP/1.1\r\n";
        if (!has_host(rq))
            max += sizeof "Host: \r\n" + strlen(host_header);
        rq->add_close = sc->close_each && !has_header(rq, "Connection");
        if (rq->add_close)
            max += sizeof "Connection: close\r\n";
        for (size_t h = 0; h < rq->nheaders; h++)
            max += strlen(rq->headers[h].name) + 4 + rq->headers[h].value.max_len;
        max += sizeof "Content-Length: 18446744073709551615\r\n\r\n" + rq->body.max_len;
        rq->max_len = max;
        bool dyn = rq->path.dynamic || rq->body.dynamic;
        for (size_t h = 0; h < rq->nheaders; h++)
            dyn |= rq->headers[h].value.dynamic;
        free(rq->static_bytes);
        rq->static_bytes = NULL;
        if (!dyn) {
            rq->static_bytes = malloc(max);
            if (!rq->static_bytes) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            bench_rng r;
            bench_rng_seed(&r, 1, 0, 1);
            rq->static_len = bench_req_render(rq, host_header, &r, rq->static_bytes);
        }
    }
    return 0;
}

size_t bench_scenario_pick(const bench_scenario *sc, bench_rng *r)
{
    if (sc->nreqs == 1)
        return 0;
    uint64_t x = bench_rng_below(r, sc->total_weight);
    for (size_t i = 0; i < sc->nreqs; i++) {
        if (x < sc->reqs[i].weight)
            return i;
        x -= sc->reqs[i].weight;
    }
    return sc->nreqs - 1;
}

static size_t put(char *out, const char *s)
{
    size_t n = strlen(s);
    memcpy(out, s, n);
    return n;
}

size_t bench_req_render(const bench_req *rq, const char *host_header, bench_rng *r, char *out)
{
    /* The body is rendered first, at the end of the buffer, because its
     * length goes into the head; then it moves down behind the head. */
    size_t body_at = rq->max_len - rq->body.max_len, blen = 0;
    if (rq->has_body)
        blen = bench_tmpl_render(&rq->body, r, out + body_at);
    size_t w = put(out, rq->method);
    out[w++] = ' ';
    w += bench_tmpl_render(&rq->path, r, out + w);
    w += put(out + w, " HTTP/1.1\r\n");
    if (!has_host(rq)) {
        w += put(out + w, "Host: ");
        w += put(out + w, host_header);
        w += put(out + w, "\r\n");
    }
    if (rq->add_close)
        w += put(out + w, "Connection: close\r\n");
    for (size_t h = 0; h < rq->nheaders; h++) {
        w += put(out + w, rq->headers[h].name);
        w += put(out + w, ": ");
        w += bench_tmpl_render(&rq->headers[h].value, r, out + w);
        w += put(out + w, "\r\n");
    }
    if (rq->has_body)
        w += (size_t)sprintf(out + w, "Content-Length: %zu\r\n", blen);
    w += put(out + w, "\r\n");
    if (blen)
        memmove(out + w, out + body_at, blen);
    r->seq += r->seq_stride;
    return w + blen;
}
