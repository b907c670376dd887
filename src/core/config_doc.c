/* config_doc.c -- a config as JSON and a schema as Markdown.
 *
 * JSON output uses the value syntax of config.h (durations "30s", sizes
 * "64KiB", enums by name), so feeding it back to cfg_load_text yields an
 * equal config: that round trip is the contract tested in test_config.c. */
#include "core/config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void json_str(buf *out, const char *s)
{
    buf_append_str(out, "\"");
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') buf_printf(out, "\\%c", *p);
        else if (*p == '\n') buf_append_str(out, "\\n");
        else if (*p == '\t') buf_append_str(out, "\\t");
        else if (*p < 0x20) buf_printf(out, "\\u%04x", *p);
        else buf_append(out, p, 1);
    }
    buf_append_str(out, "\"");
}

/* "scheme://user:password@host..." with the password as "***". */
static void json_str_hide_password(buf *out, const char *s)
{
    const char *sep = s ? strstr(s, "://") : NULL;
    const char *at = sep ? strchr(sep + 3, '@') : NULL;
    const char *slash = sep ? strchr(sep + 3, '/') : NULL;
    const char *colon = sep ? memchr(sep + 3, ':', at ? (size_t)(at - sep - 3) : 0) : NULL;
    if (!at || !colon || (slash && slash < at)) {
        json_str(out, s);
        return;
    }
    char *copy = NULL;
    size_t pre = (size_t)(colon + 1 - s);
    if (!(copy = malloc(pre + 3 + strlen(at) + 1))) {
        json_str(out, "(redacted)");
        return;
    }
    memcpy(copy, s, pre);
    memcpy(copy + pre, "***", 3);
    strcpy(copy + pre + 3, at);
    json_str(out, copy);
    free(copy);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool is_credential(const cfg_field *f)
{
    return ends_with(f->key, "token") || ends_with(f->key, "password") || ends_with(f->key, "secret");
}

static void obj_json(const cfg_schema *s, const void *obj, buf *out, bool redact)
{
    char v[128];
    buf_append_str(out, "{");
    for (size_t i = 0; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        if (i) buf_append_str(out, ",");
        json_str(out, f->key);
        buf_append_str(out, ":");
        switch (f->type) {
        case CFG_BOOL: case CFG_INT: case CFG_DOUBLE: case CFG_PERCENT:
            cfg__format_scalar(f, obj, v, sizeof v);
            buf_append_str(out, v);
            break;
        case CFG_STRING: case CFG_ADDR: {
            const char *str = *CFG_CAT(obj, f->offset, char *);
            if (redact && is_credential(f) && str && *str)
                json_str(out, "(redacted)");
            else if (redact)
                json_str_hide_password(out, str);
            else
                json_str(out, str);
            break;
        }
        case CFG_DURATION: case CFG_SIZE: case CFG_ENUM:
            cfg__format_scalar(f, obj, v, sizeof v);
            json_str(out, v);
            break;
        case CFG_STRLIST: {
            char *const *l = *(char **const *)(const void *)((const char *)obj + f->offset);
            size_t n = *CFG_CAT(obj, f->count_offset, size_t);
            buf_append_str(out, "[");
            for (size_t j = 0; j < n; j++) {
                if (j) buf_append_str(out, ",");
                json_str(out, l[j]);
            }
            buf_append_str(out, "]");
            break;
        }
        case CFG_OBJECT:
            obj_json(f->sub, CFG_CAT(obj, f->offset, char), out, redact);
            break;
        case CFG_LIST: {
            const char *l = *CFG_CAT(obj, f->offset, char *);
            size_t n = *CFG_CAT(obj, f->count_offset, size_t);
            buf_append_str(out, "[");
            for (size_t j = 0; j < n; j++) {
                if (j) buf_append_str(out, ",");
                obj_json(f->sub, l + j * f->elem_size, out, redact);
            }
            buf_append_str(out, "]");
            break;
        }
        }
    }
    buf_append_str(out, "}");
}

void cfg_to_json(const cfg_schema *s, const void *obj, buf *out)
{
    obj_json(s, obj, out, false);
}

void cfg_to_json_redacted(const cfg_schema *s, const void *obj, buf *out)
{
    obj_json(s, obj, out, true);
}

/* "int, 1..64", "enum: a, b, c", "duration, 1ms..1m" */
static void type_desc(const cfg_field *f, char *out, size_t outlen)
{
    size_t o = (size_t)snprintf(out, outlen, "%s", cfg__type_name(f->type));
    if (f->type == CFG_ENUM) {
        for (int i = 0; f->choices && f->choices[i] && o < outlen; i++)
            o += (size_t)snprintf(out + o, outlen - o, "%s`%s`", i ? ", " : ": ", f->choices[i]);
        return;
    }
    if (o >= outlen || (f->min == 0 && f->max == 0)) return;
    char a[48], b[48];
    if (f->type == CFG_DURATION) {
        cfg_format_duration((uint64_t)(f->min * 1e6), a, sizeof a);
        cfg_format_duration((uint64_t)(f->max * 1e6), b, sizeof b);
    } else if (f->type == CFG_SIZE) {
        cfg__format_size((uint64_t)f->min, a, sizeof a);
        cfg__format_size((uint64_t)f->max, b, sizeof b);
    } else {
        snprintf(a, sizeof a, "%g", f->min);
        snprintf(b, sizeof b, "%g", f->max);
    }
    if (f->max > f->min) snprintf(out + o, outlen - o, ", %s..%s", a, b);
    else snprintf(out + o, outlen - o, ", at least %s", a);
}

/* Pipes would end the table cell. */
static void md_cell(buf *out, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|') buf_append_str(out, "\\|");
        else if (*s == '\n') buf_append_str(out, " ");
        else buf_append(out, s, 1);
    }
}

void cfg_doc_markdown(const cfg_schema *s, const char *prefix, buf *out)
{
    char key[200], ty[200];
    const char *pre = prefix ? prefix : "";
    buf_printf(out, "### `%s`%s%s\n\n", *pre ? pre : (s->name ? s->name : "(top level)"),
               s->name && *pre ? " — " : "", s->name && *pre ? s->name : "");
    buf_append_str(out, "| Key | Type | Default | Env | Description |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        snprintf(key, sizeof key, "%s%s%s%s", pre, *pre ? "." : "", f->key, f->type == CFG_LIST ? "[]" : "");
        type_desc(f, ty, sizeof ty);
        buf_printf(out, "| `%s` | ", key);
        md_cell(out, ty);
        buf_append_str(out, " | ");
        if (f->def && *f->def) { buf_append_str(out, "`"); md_cell(out, f->def); buf_append_str(out, "`"); }
        else buf_append_str(out, "—");
        buf_append_str(out, " | ");
        if (f->env) buf_printf(out, "`%s`", f->env);
        else buf_append_str(out, "—");
        buf_append_str(out, " | ");
        md_cell(out, f->help ? f->help : "");
        if (f->type == CFG_OBJECT || f->type == CFG_LIST) buf_append_str(out, " (see below)");
        buf_append_str(out, " |\n");
    }
    buf_append_str(out, "\n");
    for (size_t i = 0; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        if (f->type != CFG_OBJECT && f->type != CFG_LIST) continue;
        snprintf(key, sizeof key, "%s%s%s%s", pre, *pre ? "." : "", f->key, f->type == CFG_LIST ? "[]" : "");
        cfg_doc_markdown(f->sub, key, out);
    }
}
