/* config_apply.c -- the layers applied after a document: environment
 * variables, command-line flags (cfg_set) and the validate hooks, plus
 * cfg_load which runs them in order and cfg_error_format.
 *
 * Every setter goes through cfg__set_text, so env, flags and documents
 * accept exactly the same value syntax and fail with the same messages. */
#include "core/config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int env_at(const cfg_schema *s, void *obj, const char *path, cfg_error *err)
{
    char key[160], msg[256];
    for (size_t i = 0; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        cfg__join_key(key, sizeof key, path, f->key);
        if (f->type == CFG_OBJECT) {
            if (env_at(f->sub, CFG_AT(obj, f->offset, char), key, err) < 0) return -1;
            continue;
        }
        const char *v = f->env && f->type != CFG_LIST ? getenv(f->env) : NULL;
        if (v && cfg__set_text(f, obj, v, msg, sizeof msg) < 0) {
            cfg__set_err(err, "<env>", 0, 0, key, "%s: %s", f->env, msg);
            return -1;
        }
    }
    return 0;
}

int cfg_apply_env(const cfg_schema *s, void *obj, cfg_error *err)
{
    return env_at(s, obj, "", err);
}

int cfg_set(const cfg_schema *s, void *obj, const char *path, const char *value, cfg_error *err)
{
    char done[160] = "", msg[256];
    const char *p = path ? path : "";
    for (;;) {
        size_t len = strcspn(p, ".[");
        const cfg_field *f = cfg__find_field(s, p, len);
        char keys[200];
        snprintf(done + strlen(done), sizeof done - strlen(done), "%s%.*s", *done ? "." : "", (int)len, p);
        if (!f) {
            cfg__list_keys(s, keys, sizeof keys);
            cfg__set_err(err, "<flag>", 0, 0, path, "unknown key '%.*s' (expected one of: %s)", (int)len, p, keys);
            return -1;
        }
        p += len;
        if (*p == '[') {
            char *end;
            unsigned long idx = strtoul(p + 1, &end, 10);
            size_t cnt = f->type == CFG_LIST ? *CFG_AT(obj, f->count_offset, size_t) : 0;
            if (f->type != CFG_LIST || *end != ']' || end == p + 1) {
                cfg__set_err(err, "<flag>", 0, 0, path, "'%s' is not a list of objects", done);
                return -1;
            }
            if (idx >= cnt) {
                cfg__set_err(err, "<flag>", 0, 0, path, "index %lu out of range: '%s' has %zu elements", idx, done, cnt);
                return -1;
            }
            snprintf(done + strlen(done), sizeof done - strlen(done), "[%lu]", idx);
            obj = *CFG_AT(obj, f->offset, char *) + idx * f->elem_size;
            s = f->sub;
            p = end + 1;
            if (*p != '.') {
                cfg__set_err(err, "<flag>", 0, 0, path, "expected '.key' after '%s'", done);
                return -1;
            }
            p++;
            continue;
        }
        if (*p == '.') {
            if (f->type != CFG_OBJECT) {
                cfg__set_err(err, "<flag>", 0, 0, path, "'%s' is a %s, it has no keys", done, cfg__type_name(f->type));
                return -1;
            }
            obj = CFG_AT(obj, f->offset, char);
            s = f->sub;
            p++;
            continue;
        }
        if (cfg__set_text(f, obj, value, msg, sizeof msg) < 0) {
            cfg__set_err(err, "<flag>", 0, 0, path, "%s", msg);
            return -1;
        }
        return 0;
    }
}

static int validate_at(const cfg_schema *s, void *obj, const char *path, cfg_error *err)
{
    char key[160];
    for (size_t i = 0; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        cfg__join_key(key, sizeof key, path, f->key);
        if (f->type == CFG_OBJECT) {
            if (validate_at(f->sub, CFG_AT(obj, f->offset, char), key, err) < 0) return -1;
        } else if (f->type == CFG_LIST) {
            char *v = *CFG_AT(obj, f->offset, char *);
            size_t n = *CFG_AT(obj, f->count_offset, size_t);
            for (size_t j = 0; j < n; j++) {
                char ik[184];
                snprintf(ik, sizeof ik, "%s[%zu]", key, j);
                if (validate_at(f->sub, v + j * f->elem_size, ik, err) < 0) return -1;
            }
        }
    }
    if (!s->validate) return 0;
    cfg_error local;
    memset(&local, 0, sizeof local);
    if (s->validate(obj, &local) == 0) return 0;
    /* The hook names keys relative to its own object. */
    char full[160];
    if (local.key[0]) cfg__join_key(full, sizeof full, path, local.key);
    else snprintf(full, sizeof full, "%s", path);
    cfg__set_err(err, "", 0, 0, full, "%s", local.msg[0] ? local.msg : "invalid");
    return -1;
}

int cfg_validate(const cfg_schema *s, void *obj, cfg_error *err)
{
    return validate_at(s, obj, "", err);
}

int cfg_load(const cfg_schema *s, void *obj, const char *path, cfg_error *err)
{
    if (cfg_defaults(s, obj, err) < 0) return -1;
    if (path && cfg_load_file(s, obj, path, err) < 0) return -1;
    if (cfg_apply_env(s, obj, err) < 0) return -1;
    return cfg_validate(s, obj, err);
}

void cfg_error_format(const cfg_error *e, char *out, size_t outlen)
{
    char where[300] = "";
    if (e->file[0] && e->line > 0)
        snprintf(where, sizeof where, "%s:%d:%d: ", e->file, e->line, e->column);
    else if (e->file[0])
        snprintf(where, sizeof where, "%s: ", e->file);
    snprintf(out, outlen, "%s%s%s%s", where, e->key, e->key[0] ? ": " : "", e->msg);
}
