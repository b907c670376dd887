/* config.c -- defaults, free and deep copy of a schema-described struct,
 * and loading it from a YAML/JSON document. Environment, flags and
 * validation are in config_apply.c, values in config_value.c, JSON and
 * Markdown output in config_doc.c.
 *
 * The walk is driven by the schema, not the document: every mapping is
 * matched against a cfg_field table, so an unknown or duplicate key is found
 * where it stands and reported with its line and full dotted path. Each
 * step leaves obj consistent (every owned pointer either NULL or owned), so
 * cfg_free() is always safe after an error; but a failed load may have
 * applied some keys, hence the load-into-a-copy pattern of config.h. */
#include "core/config_int.h"
#include "core/utf8.h"

#include <errno.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct load_ctx {
    const char     *file;
    cfg_error      *err;
    struct fy_node *keynode;   /* key of the value being loaded, for marks */
} load_ctx;

void cfg__set_err(cfg_error *err, const char *file, int line, int col, const char *key,
                  const char *fmt, ...)
{
    va_list ap;
    if (!err) return;
    snprintf(err->file, sizeof err->file, "%s", file ? file : "");
    err->line = line;
    err->column = col;
    snprintf(err->key, sizeof err->key, "%s", key ? key : "");
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

void cfg__join_key(char *out, size_t outlen, const char *path, const char *key)
{
    snprintf(out, outlen, "%s%s%s", path, *path ? "." : "", key);
}

const cfg_field *cfg__find_field(const cfg_schema *s, const char *key, size_t len)
{
    for (size_t i = 0; i < s->nfields; i++)
        if (strlen(s->fields[i].key) == len && memcmp(s->fields[i].key, key, len) == 0)
            return &s->fields[i];
    return NULL;
}

/* "listen, workers, ..." for unknown-key messages. */
void cfg__list_keys(const cfg_schema *s, char *out, size_t outlen)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < s->nfields && o + 1 < outlen; i++) {
        int n = snprintf(out + o, outlen - o, "%s%s", i ? ", " : "", s->fields[i].key);
        if (n < 0) break;
        o += (size_t)n;
    }
    if (o >= outlen && outlen > 4) memcpy(out + outlen - 4, "...", 4);
}

/* ---- defaults, free, copy ---------------------------------------------- */

void cfg__free_field(const cfg_field *f, void *obj)
{
    switch (f->type) {
    case CFG_STRING:
    case CFG_ADDR: {
        char **p = CFG_AT(obj, f->offset, char *);
        free(*p);
        *p = NULL;
        break;
    }
    case CFG_STRLIST: {
        char ***p = CFG_AT(obj, f->offset, char **);
        size_t *n = CFG_AT(obj, f->count_offset, size_t);
        for (size_t i = 0; *p && i < *n; i++) free((*p)[i]);
        free(*p);
        *p = NULL;
        *n = 0;
        break;
    }
    case CFG_OBJECT:
        cfg_free(f->sub, CFG_AT(obj, f->offset, char));
        break;
    case CFG_LIST: {
        char **p = CFG_AT(obj, f->offset, char *);
        size_t *n = CFG_AT(obj, f->count_offset, size_t);
        for (size_t i = 0; *p && i < *n; i++) cfg_free(f->sub, *p + i * f->elem_size);
        free(*p);
        *p = NULL;
        *n = 0;
        break;
    }
    default:
        break;
    }
}

void cfg_free(const cfg_schema *s, void *obj)
{
    if (!s || !obj) return;
    for (size_t i = 0; i < s->nfields; i++) cfg__free_field(&s->fields[i], obj);
}

static int defaults_at(const cfg_schema *s, void *obj, const char *path, cfg_error *err)
{
    char key[160], msg[256];
    for (size_t i = 0; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        cfg__join_key(key, sizeof key, path, f->key);
        cfg__free_field(f, obj);
        switch (f->type) {
        case CFG_OBJECT:
            if (defaults_at(f->sub, CFG_AT(obj, f->offset, char), key, err) < 0) return -1;
            continue;
        case CFG_LIST: case CFG_STRLIST: case CFG_STRING: case CFG_ADDR:
            break;   /* freed above: NULL / empty */
        case CFG_BOOL: *CFG_AT(obj, f->offset, bool) = false; break;
        case CFG_INT: case CFG_ENUM: *CFG_AT(obj, f->offset, int) = 0; break;
        case CFG_DOUBLE: case CFG_PERCENT: *CFG_AT(obj, f->offset, double) = 0; break;
        case CFG_DURATION: case CFG_SIZE: *CFG_AT(obj, f->offset, uint64_t) = 0; break;
        }
        if (f->def && f->type != CFG_LIST && cfg__set_text(f, obj, f->def, msg, sizeof msg) < 0) {
            cfg__set_err(err, "<default>", 0, 0, key, "bad default: %s", msg);
            return -1;
        }
    }
    return 0;
}

int cfg_defaults(const cfg_schema *s, void *obj, cfg_error *err)
{
    return defaults_at(s, obj, "", err);
}

/* Forgets (without freeing) every owned pointer: used when dst holds shallow
 * copies of src's pointers that must not be freed twice. */
static void forget_owned(const cfg_schema *s, void *obj, size_t from)
{
    for (size_t i = from; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        switch (f->type) {
        case CFG_STRING: case CFG_ADDR: *CFG_AT(obj, f->offset, char *) = NULL; break;
        case CFG_STRLIST: case CFG_LIST:
            *CFG_AT(obj, f->offset, void *) = NULL;
            *CFG_AT(obj, f->count_offset, size_t) = 0;
            break;
        case CFG_OBJECT: forget_owned(f->sub, CFG_AT(obj, f->offset, char), 0); break;
        default: break;
        }
    }
}

/* dst holds a shallow copy of a valid config: make every pointer its own.
 * On failure dst is left freeable (copied parts owned, the rest NULL). */
static int deepen(const cfg_schema *s, void *dst)
{
    for (size_t i = 0; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        int ok = 1;
        switch (f->type) {
        case CFG_STRING: case CFG_ADDR: {
            char **p = CFG_AT(dst, f->offset, char *);
            if (*p && !(*p = strdup(*p))) ok = 0;
            break;
        }
        case CFG_STRLIST: {
            char ***p = CFG_AT(dst, f->offset, char **);
            size_t n = *CFG_AT(dst, f->count_offset, size_t);
            char **v = n ? calloc(n, sizeof *v) : NULL;
            if (n && !v) { *p = NULL; *CFG_AT(dst, f->count_offset, size_t) = 0; ok = 0; break; }
            for (size_t j = 0; j < n; j++)
                if (!(v[j] = strdup((*p)[j]))) ok = 0;
            *p = v;   /* NULL holes are fine for free() */
            break;
        }
        case CFG_OBJECT:
            if (deepen(f->sub, CFG_AT(dst, f->offset, char)) < 0) {
                forget_owned(s, dst, i + 1);
                return -1;
            }
            break;
        case CFG_LIST: {
            char **p = CFG_AT(dst, f->offset, char *);
            size_t *n = CFG_AT(dst, f->count_offset, size_t);
            char *v = *n ? malloc(*n * f->elem_size) : NULL;
            if (*n && !v) { *p = NULL; *n = 0; ok = 0; break; }
            if (*n) memcpy(v, *p, *n * f->elem_size);
            *p = v;
            for (size_t j = 0; j < *n; j++)
                if (deepen(f->sub, v + j * f->elem_size) < 0) {
                    for (size_t k = j + 1; k < *n; k++) forget_owned(f->sub, v + k * f->elem_size, 0);
                    ok = 0;
                    break;
                }
            break;
        }
        default:
            break;
        }
        if (!ok) { forget_owned(s, dst, i + 1); return -1; }
    }
    return 0;
}

int cfg_copy(const cfg_schema *s, void *dst, const void *src)
{
    static const size_t sz[] = {
        [CFG_BOOL] = sizeof(bool), [CFG_INT] = sizeof(int), [CFG_DOUBLE] = sizeof(double),
        [CFG_PERCENT] = sizeof(double), [CFG_DURATION] = sizeof(uint64_t),
        [CFG_SIZE] = sizeof(uint64_t), [CFG_STRING] = sizeof(char *), [CFG_ADDR] = sizeof(char *),
        [CFG_ENUM] = sizeof(int), [CFG_STRLIST] = sizeof(char **), [CFG_OBJECT] = 0,
        [CFG_LIST] = sizeof(void *),
    };
    /* Field by field: the schema does not know the struct's size, and
     * fields outside the schema are the caller's business. */
    for (size_t i = 0; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        if (f->type == CFG_OBJECT) {
            if (cfg_copy(f->sub, CFG_AT(dst, f->offset, char), CFG_CAT(src, f->offset, char)) < 0) {
                forget_owned(s, dst, i + 1);
                cfg_free(s, dst);
                return -1;
            }
            continue;
        }
        memcpy((char *)dst + f->offset, (const char *)src + f->offset, sz[f->type]);
        if (f->type == CFG_STRLIST || f->type == CFG_LIST)
            *CFG_AT(dst, f->count_offset, size_t) = *CFG_CAT(src, f->count_offset, size_t);
        /* deepen this one field through a one-field schema */
        cfg_schema one = { s->name, f, 1, NULL };
        if (deepen(&one, dst) < 0) {
            forget_owned(s, dst, i + 1);
            cfg_free(s, dst);
            return -1;
        }
    }
    return 0;
}

/* ---- the document walk ------------------------------------------------- */

/* libfyaml 0.7 has marks on tokens only: a scalar has its own; a
 * collection borrows the first scalar inside it. */
static const struct fy_mark *node_mark(struct fy_node *n)
{
    for (int depth = 0; n && depth < 64; depth++) {
        void *it = NULL;
        if (fy_node_is_scalar(n)) {
            struct fy_token *t = fy_node_get_scalar_token(n);
            return t ? fy_token_start_mark(t) : NULL;
        }
        if (fy_node_is_sequence(n)) {
            n = fy_node_sequence_iterate(n, &it);
        } else {
            struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
            n = p ? fy_node_pair_key(p) : NULL;
        }
    }
    return NULL;
}

static int node_line(struct fy_node *n, int *col)
{
    const struct fy_mark *m = node_mark(n);
    *col = m ? m->column + 1 : 0;
    return m ? m->line + 1 : 0;
}

static void node_err(load_ctx *c, struct fy_node *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void node_err(load_ctx *c, struct fy_node *n, const char *key, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    /* A collection in the wrong place is best pointed at by its key. */
    if (n && !fy_node_is_scalar(n) && c->keynode) n = c->keynode;
    int col, line = node_line(n, &col);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cfg__set_err(c->err, c->file, line, col, key, "%s", msg);
}

static const char *kind(struct fy_node *n)
{
    switch (fy_node_get_type(n)) {
    case FYNT_MAPPING: return "a mapping";
    case FYNT_SEQUENCE: return "a sequence";
    default: return "a scalar";
    }
}

static char *scalar_dup(struct fy_node *n)
{
    size_t len = 0;
    const char *t = fy_node_get_scalar(n, &len);
    return strndup(t ? t : "", t ? len : 0);
}

static int load_map(load_ctx *c, const cfg_schema *s, void *obj, struct fy_node *map, const char *path);

static int load_scalar(load_ctx *c, const cfg_field *f, void *obj, struct fy_node *n, const char *key)
{
    char msg[256];
    if (!fy_node_is_scalar(n)) {
        node_err(c, n, key, "expected %s (%s), got %s",
                 f->type == CFG_STRLIST ? "a list of strings" : "a single value",
                 cfg__type_name(f->type), kind(n));
        return -1;
    }
    char *t = scalar_dup(n);
    if (!t) { node_err(c, n, key, "out of memory"); return -1; }
    int rc = cfg__set_text(f, obj, t, msg, sizeof msg);
    free(t);
    if (rc < 0) node_err(c, n, key, "%s", msg);
    return rc;
}

static int load_strlist(load_ctx *c, const cfg_field *f, void *obj, struct fy_node *n, const char *key)
{
    if (!fy_node_is_sequence(n)) return load_scalar(c, f, obj, n, key);
    int cnt = fy_node_sequence_item_count(n);
    char **v = cnt > 0 ? calloc((size_t)cnt, sizeof *v) : NULL;
    size_t got = 0;
    void *it = NULL;
    struct fy_node *item;
    if (cnt > 0 && !v) { node_err(c, n, key, "out of memory"); return -1; }
    while ((item = fy_node_sequence_iterate(n, &it)) != NULL) {
        char ik[184];
        snprintf(ik, sizeof ik, "%s[%zu]", key, got);
        if (!fy_node_is_scalar(item)) {
            c->keynode = NULL;
            node_err(c, item, ik, "expected a string, got %s", kind(item));
            goto fail;
        }
        if (!(v[got] = scalar_dup(item))) { node_err(c, item, ik, "out of memory"); goto fail; }
        got++;
    }
    cfg__free_field(f, obj);
    *CFG_AT(obj, f->offset, char **) = v;
    *CFG_AT(obj, f->count_offset, size_t) = got;
    return 0;
fail:
    for (size_t i = 0; i < got; i++) free(v[i]);
    free(v);
    return -1;
}

static int load_list(load_ctx *c, const cfg_field *f, void *obj, struct fy_node *n, const char *key)
{
    if (!fy_node_is_sequence(n)) {
        node_err(c, n, key, "expected a sequence of mappings, got %s", kind(n));
        return -1;
    }
    int cnt = fy_node_sequence_item_count(n);
    char *v = cnt > 0 ? calloc((size_t)cnt, f->elem_size) : NULL;
    size_t done = 0;
    void *it = NULL;
    struct fy_node *item;
    if (cnt > 0 && !v) { node_err(c, n, key, "out of memory"); return -1; }
    /* Each element starts from the element schema's defaults, not from
     * whatever list was there before: a list is replaced, never merged. */
    while ((item = fy_node_sequence_iterate(n, &it)) != NULL) {
        char ik[184];
        void *e = v + done * f->elem_size;
        snprintf(ik, sizeof ik, "%s[%zu]", key, done);
        done++;
        c->keynode = NULL;
        if (defaults_at(f->sub, e, ik, c->err) < 0 || load_map(c, f->sub, e, item, ik) < 0) {
            for (size_t i = 0; i < done; i++) cfg_free(f->sub, v + i * f->elem_size);
            free(v);
            return -1;
        }
    }
    cfg__free_field(f, obj);
    *CFG_AT(obj, f->offset, char *) = v;
    *CFG_AT(obj, f->count_offset, size_t) = done;
    return 0;
}

static int load_value(load_ctx *c, const cfg_field *f, void *obj, struct fy_node *n, const char *key)
{
    if (fy_node_is_alias(n)) {
        node_err(c, n, key, "YAML aliases (*name) are not supported in configuration");
        return -1;
    }
    switch (f->type) {
    case CFG_OBJECT: return load_map(c, f->sub, CFG_AT(obj, f->offset, char), n, key);
    case CFG_LIST: return load_list(c, f, obj, n, key);
    case CFG_STRLIST: return load_strlist(c, f, obj, n, key);
    default: return load_scalar(c, f, obj, n, key);
    }
}

static int load_map(load_ctx *c, const cfg_schema *s, void *obj, struct fy_node *map, const char *path)
{
    if (!fy_node_is_mapping(map)) {
        node_err(c, map, path, "expected a mapping, got %s", kind(map));
        return -1;
    }
    /* Where each key was first seen, for duplicate-key errors. */
    int *seen = calloc(s->nfields ? s->nfields : 1, sizeof *seen);
    void *it = NULL;
    struct fy_node_pair *p;
    int rc = 0;
    if (!seen) { node_err(c, map, path, "out of memory"); return -1; }
    while (rc == 0 && (p = fy_node_mapping_iterate(map, &it)) != NULL) {
        struct fy_node *kn = fy_node_pair_key(p), *vn = fy_node_pair_value(p);
        size_t klen = 0;
        const char *k = kn && fy_node_is_scalar(kn) ? fy_node_get_scalar(kn, &klen) : NULL;
        char key[160];
        if (!k) {
            node_err(c, kn ? kn : map, path, "expected a plain key, got %s", kn ? kind(kn) : "nothing");
            rc = -1;
            break;
        }
        snprintf(key, sizeof key, "%s%s%.*s", path, *path ? "." : "", (int)klen, k);
        const cfg_field *f = cfg__find_field(s, k, klen);
        if (!f) {
            char keys[200];
            cfg__list_keys(s, keys, sizeof keys);
            node_err(c, kn, key, "unknown key '%.*s' (expected one of: %s)", (int)klen, k, keys);
            rc = -1;
            break;
        }
        int col, line = node_line(kn, &col);
        size_t idx = (size_t)(f - s->fields);
        if (seen[idx]) {
            node_err(c, kn, key, "duplicate key '%s' (first set on line %d)", f->key, seen[idx]);
            rc = -1;
            break;
        }
        seen[idx] = line ? line : 1;
        if (!vn) {   /* "key:" with nothing: YAML null */
            node_err(c, kn, key, "expected a value (%s), got nothing", cfg__type_name(f->type));
            rc = -1;
            break;
        }
        c->keynode = kn;
        rc = load_value(c, f, obj, vn, key);
    }
    free(seen);
    return rc;
}

/* libfyaml reports syntax errors through a diag object; this one keeps the
 * first error line ("file:line:col: error: msg") instead of printing it. */
typedef struct diag_sink {
    char text[512];
    size_t len;
} diag_sink;

static void diag_out(struct fy_diag *d, void *user, const char *b, size_t len)
{
    diag_sink *ds = user;
    (void)d;
    if (ds->len + 1 >= sizeof ds->text) return;
    size_t n = len < sizeof ds->text - 1 - ds->len ? len : sizeof ds->text - 1 - ds->len;
    memcpy(ds->text + ds->len, b, n);
    ds->len += n;
    ds->text[ds->len] = '\0';
}

/* Turns "<name>:3:5: error: did not find expected key\n..." into parts. */
static void diag_to_err(const diag_sink *ds, const char *name, cfg_error *err)
{
    int line = 0, col = 0;
    const char *msg = ds->text;
    const char *e = strstr(ds->text, ": error: ");
    if (e) {
        /* walk back over ":col" and ":line" */
        const char *p = e;
        const char *c2 = NULL, *c1 = NULL;
        for (const char *q = ds->text; q < p; q++)
            if (*q == ':') { c1 = c2; c2 = q; }
        if (c1 && c2) { line = atoi(c1 + 1); col = atoi(c2 + 1); }
        msg = e + strlen(": error: ");
    }
    size_t mlen = strcspn(msg, "\n");
    if (mlen == 0) { msg = "syntax error"; mlen = strlen(msg); }
    cfg__set_err(err, name, line, col, "", "%.*s", (int)mlen, msg);
}

int cfg_load_text(const cfg_schema *s, void *obj, const char *text, size_t len,
                  const char *name, cfg_error *err)
{
    diag_sink ds = { .len = 0 };
    struct fy_diag_cfg dc;
    const char *p = text;
    if (!name) name = "<text>";
    while (p < text + len && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    if (p == text + len) return 0;   /* an empty document changes nothing */
    /* YAML and JSON are Unicode text without NULs, and libfyaml 0.7
     * mishandles both: it spins forever on a directive like "%\xff" and
     * crashes in its cleanup on "? z:\t\0", so they never reach it. */
    size_t bad = utf8_text_invalid_at(text, len);
    if (bad < len) {
        int line = 1, col = 1;
        for (size_t i = 0; i < bad; i++) {
            if (text[i] == '\n') { line++; col = 1; }
            else col++;
        }
        cfg__set_err(err, name, line, col, "", "%s (byte %zu of the document)",
                     text[bad] ? "invalid UTF-8" : "NUL byte", bad);
        return -1;
    }

    fy_diag_cfg_default(&dc);
    dc.fp = NULL;
    dc.output_fn = diag_out;
    dc.user = &ds;
    dc.level = FYET_ERROR;
    dc.colorize = false;
    dc.show_source = false;
    dc.show_position = true;
    dc.show_type = true;
    dc.show_module = false;
    dc.position_width = 0;
    dc.source_width = 0;
    dc.type_width = 0;
    struct fy_diag *diag = fy_diag_create(&dc);
    if (!diag) { cfg__set_err(err, name, 0, 0, "", "out of memory"); return -1; }
    /* Errors at a token are collected rather than printed: printing them
     * also draws the source line under the message, and libfyaml 0.7
     * crashes doing that for some lines (long runs of tabs in JSON). */
    fy_diag_set_collect_errors(diag, true);
    /* Duplicate keys are allowed through so the walk can report them with
     * their key path (resolving aliases would reject them first, so anchors
     * and aliases are refused in the walk instead); a leading '{' means
     * JSON, parsed strictly. */
    struct fy_parse_cfg pc = {
        .search_path = NULL,
        .flags = FYPCF_QUIET | FYPCF_ALLOW_DUPLICATE_KEYS |
                 (*p == '{' ? FYPCF_JSON_FORCE : 0),
        .userdata = NULL,
        .diag = diag,
    };
    struct fy_document *doc = fy_document_build_from_string(&pc, text, len);
    int rc = 0;
    if (!doc) {
        void *it = NULL;
        struct fy_diag_error *de = fy_diag_errors_iterate(diag, &it);
        const char *m = de && de->msg && de->msg[0] ? de->msg : "syntax error";
        if (de) cfg__set_err(err, name, de->line, de->column, "", "%.*s", (int)strcspn(m, "\n"), m);
        else diag_to_err(&ds, name, err);
        rc = -1;
    } else {
        load_ctx c = { name, err, NULL };
        struct fy_node *root = fy_document_root(doc);
        if (root) rc = load_map(&c, s, obj, root, "");
        fy_document_destroy(doc);
    }
    fy_diag_destroy(diag);
    return rc;
}

int cfg_load_file(const cfg_schema *s, void *obj, const char *path, cfg_error *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        cfg__set_err(err, path, 0, 0, "", "cannot open: %s", strerror(errno));
        return -1;
    }
    buf b;
    buf_init(&b);
    char chunk[8192];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
        if (buf_append(&b, chunk, n) < 0) { rc = -1; break; }
    if (ferror(fp) || rc < 0) {
        cfg__set_err(err, path, 0, 0, "", "cannot read: %s", rc < 0 ? "out of memory" : strerror(errno));
        rc = -1;
    }
    fclose(fp);
    if (rc == 0) rc = cfg_load_text(s, obj, b.len ? buf_head(&b) : "", b.len, path, err);
    buf_free(&b);
    return rc;
}
