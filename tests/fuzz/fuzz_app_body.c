/* fuzz_app_body.c -- libFuzzer target for the reference app's request-body
 * validation, app_parse_body (app_body.c), with the real field tables of
 * the case, user, facility and surgeon writes. The tables are static in
 * app_write.c and app_users.c, so this file includes those two sources
 * (the Makefile leaves their objects out of this target). The first byte
 * picks the body: POST /cases, PUT /cases/{id} (partial), POST /users,
 * POST .../facilities, POST .../surgeons.
 *
 * Beyond "no crash": an accepted body has only known keys, every value of
 * its field's type (integers >= 0, texts within max_len, non-empty when
 * required, no NUL inside), every required field present and not null (in
 * a partial update: not null when present), and `present` telling exactly
 * which keys were given. A refused body gets one 400 whose reply is valid
 * JSON ({"error":..,"status":400,...}) and, whenever the body is a JSON
 * object, names the offending field: one of the table's, or the unknown
 * key itself. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "http/server_int.h"

#include "app/app_users.c"
#include "app/app_write.c"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

typedef struct body_kind {
    const app_field *fs;
    size_t           nf;
    bool             partial;
} body_kind;

static const body_kind kinds[] = {
    { case_fields, NCASE_FIELDS, false },
    { case_fields, NCASE_FIELDS, true },
    { user_fields, sizeof user_fields / sizeof user_fields[0], false },
    { facility_fields, sizeof facility_fields / sizeof facility_fields[0], false },
    { surgeon_fields, sizeof surgeon_fields / sizeof surgeon_fields[0], false },
};

#define MAX_FIELDS 16

static void check_accepted(const body_kind *k, json_t *root, const st_val *vals,
                           const bool *present)
{
    CHECK(json_is_object(root));
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        size_t i;
        for (i = 0; i < k->nf && strcmp(k->fs[i].name, key) != 0; i++)
            ;
        CHECK(i < k->nf);
    }
    for (size_t i = 0; i < k->nf; i++) {
        const app_field *f = &k->fs[i];
        json_t *jv = json_object_get(root, f->name);
        CHECK(present[i] == (jv != NULL));
        if (f->required && (!k->partial || jv))
            CHECK(vals[i].type != ST_NULL);
        switch (vals[i].type) {
        case ST_NULL:
            CHECK(!jv || json_is_null(jv));
            break;
        case ST_INT:
            CHECK(f->type == APP_F_INT && vals[i].i >= 0 && json_integer_value(jv) == vals[i].i);
            break;
        case ST_TEXT: {
            size_t max = f->max_len ? f->max_len : 200;
            CHECK(f->type == APP_F_TEXT && vals[i].len <= max && vals[i].s);
            CHECK(vals[i].len > 0 || !f->required);
            CHECK(!memchr(vals[i].s, '\0', vals[i].len));
            CHECK(vals[i].len == json_string_length(jv)
                  && memcmp(vals[i].s, json_string_value(jv), vals[i].len) == 0);
            break;
        }
        default:
            CHECK(0);
        }
    }
}

static void check_refused(const body_kind *k, const http_ctx *c, const char *body, size_t len)
{
    CHECK(c->replied && c->status == 400);
    const char *head = buf_head(c->out);
    CHECK(c->out->len > 12 && memcmp(head, "HTTP/1.1 400", 12) == 0);
    const char *end = memmem(head, c->out->len, "\r\n\r\n", 4);
    CHECK(end);
    size_t hl = (size_t)(end - head) + 4;
    json_error_t je;
    json_t *reply = json_loadb(head + hl, c->out->len - hl, JSON_REJECT_DUPLICATES, &je);
    CHECK(reply && json_is_object(reply));                 /* the reply is valid JSON */
    CHECK(json_is_string(json_object_get(reply, "error")));
    CHECK(json_integer_value(json_object_get(reply, "status")) == 400);
    json_t *field = json_object_get(reply, "field");
    CHECK(!field || json_is_string(field));

    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (json_is_object(doc)) {
        /* an object was refused for one of its fields: it is named */
        CHECK(field);
        const char *name = json_string_value(field);
        bool known = false;
        for (size_t i = 0; i < k->nf && !known; i++)
            known = strcmp(k->fs[i].name, name) == 0;
        CHECK(known || json_object_get(doc, name));
    }
    json_decref(doc);
    json_decref(reply);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const body_kind *k = &kinds[data[0] % (sizeof kinds / sizeof kinds[0])];
    CHECK(k->nf <= MAX_FIELDS);
    size_t len = size - 1;
    char *body = malloc(len ? len : 1);   /* exact copy: no terminator to lean on */
    CHECK(body);
    memcpy(body, data + 1, len);

    /* a request context as the server hands it to a handler */
    http_ctx *c = calloc(1, sizeof *c);
    CHECK(c);
    buf out;
    buf_init(&out);
    c->body = len ? body : NULL;
    c->body_len = len;
    c->out = &out;
    c->method_name = k->partial ? "PUT" : "POST";
    c->path = "/fuzz";

    st_val vals[MAX_FIELDS];
    bool present[MAX_FIELDS];
    json_t *root = app_parse_body(c, k->fs, k->nf, k->partial, vals, present);
    if (root) {
        CHECK(!c->replied && out.len == 0);
        check_accepted(k, root, vals, present);
        json_decref(root);
    } else {
        check_refused(k, c, body, len);
    }
    http_ctx_release(c);
    free(c);
    buf_free(&out);
    free(body);
    return 0;
}
