/* app_body.c -- request body validation for the app's writes.
 *
 * A body is checked completely (JSON syntax, UTF-8, object shape, unknown
 * keys, presence, types, lengths) before any statement runs, so a 400
 * never follows a partial write. Every 400 names the offending field when
 * one can be named: jansson rejects bad UTF-8 with only a byte position,
 * so the key whose value holds that position is recovered from the raw
 * text (the last `"key":` before it). Text values point into the returned
 * JSON root; callers keep it alive until their statement has run
 * (jansson refuses \u0000 unless asked, so no text holds a NUL). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include "app/app_int.h"

/* The last object key before byte `pos` of body, if it is one of fs. */
static const char *key_before(const char *body, size_t pos, const app_field *fs, size_t nf)
{
    for (size_t i = pos; i-- > 0;) {
        if (body[i] != ':')
            continue;
        size_t j = i;
        while (j > 0 && (body[j - 1] == ' ' || body[j - 1] == '\t' || body[j - 1] == '\n' ||
                         body[j - 1] == '\r'))
            j--;
        if (j == 0 || body[j - 1] != '"')
            continue;
        size_t end = j - 1, k = end;
        while (k > 0 && body[k - 1] != '"')
            k--;
        if (k == 0)
            return NULL;
        for (size_t f = 0; f < nf; f++)
            if (strlen(fs[f].name) == end - k && memcmp(fs[f].name, body + k, end - k) == 0)
                return fs[f].name;
        return NULL;
    }
    return NULL;
}

static json_t *fail(http_ctx *c, json_t *root, const char *field, const char *msg)
{
    http_reply_error(c, 400, field, "%s", msg);
    json_decref(root);
    return NULL;
}

json_t *app_parse_body(http_ctx *c, const app_field *fs, size_t nf, bool partial,
                       st_val *vals, bool *present)
{
    size_t len;
    const char *body = http_ctx_body(c, &len);
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_invalid_utf8) {
            const char *k = key_before(body, (size_t)je.position < len ? (size_t)je.position : len,
                                       fs, nf);
            http_reply_error(c, 400, k, "%s is not valid UTF-8 (byte %d)", k ? k : "body",
                             je.position);
        } else {
            http_reply_error(c, 400, NULL, "invalid JSON at line %d column %d: %s", je.line,
                             je.column, je.text);
        }
        return NULL;
    }
    if (!json_is_object(root))
        return fail(c, root, NULL, "body must be a JSON object");
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        size_t i;
        for (i = 0; i < nf && strcmp(fs[i].name, k) != 0; i++)
            ;
        if (i == nf) {
            http_reply_error(c, 400, k, "unknown field '%s'", k);
            json_decref(root);
            return NULL;
        }
    }
    char msg[160];
    for (size_t i = 0; i < nf; i++) {
        v = json_object_get(root, fs[i].name);
        vals[i] = st_null();
        if (present)
            present[i] = v != NULL;
        if (!v || json_is_null(v)) {
            if (fs[i].required && (v || !partial)) {
                snprintf(msg, sizeof msg, "%s is required%s", fs[i].name,
                         v ? " (not null)" : "");
                return fail(c, root, fs[i].name, msg);
            }
            continue;
        }
        size_t max = fs[i].max_len ? fs[i].max_len : 200;
        if (fs[i].type == APP_F_INT && json_is_integer(v) && json_integer_value(v) >= 0) {
            vals[i] = st_int(json_integer_value(v));
        } else if (fs[i].type == APP_F_TEXT && json_is_string(v) && json_string_length(v) <= max &&
                   (json_string_length(v) > 0 || !fs[i].required)) {
            vals[i] = st_textn(json_string_value(v), json_string_length(v));
        } else {
            if (fs[i].type == APP_F_INT)
                snprintf(msg, sizeof msg, "%s must be a non-negative integer", fs[i].name);
            else
                snprintf(msg, sizeof msg, "%s must be a %sstring of at most %zu bytes",
                         fs[i].name, fs[i].required ? "non-empty " : "", max);
            return fail(c, root, fs[i].name, msg);
        }
    }
    return root;
}
