/* fuzz_config.c -- libFuzzer target for the configuration loader:
 * cfg_load_text (libfyaml, YAML or JSON, then schema apply and the value
 * parsers: durations, sizes, percentages, addresses, enums, lists) followed
 * by cfg_validate, over the real schemas. The first byte picks the schema:
 * the gateway's, the app's (with the store's nested in it), the control
 * plane's, the autoscaler's or one `services:` entry's; the rest is the
 * document.
 *
 * Beyond "no crash": defaults always load; a refusal says what was expected
 * and formats within bounds; whatever a load leaves behind, accepted or
 * not, frees cleanly (LeakSanitizer checks). For an accepted and valid
 * document, the config.h contract holds: cfg_to_json gives strict JSON,
 * which loads back into fresh defaults, validates, and serialises to the
 * same bytes; and cfg_copy serialises to the same bytes too. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "control/control.h"
#include "control/ctl_autoscale.h"
#include "control/ctl_service.h"
#include "core/config.h"
#include "gateway/gateway.h"

#include "fuzz_resolver.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

typedef union any_cfg {
    gw_config         gw;
    app_config        app;
    ctl_config        ctl;
    ctl_autoscale_cfg as;
    ctl_service_cfg   svc;
} any_cfg;

/* the last is built at run time (ctl_service_schema) */
static const cfg_schema *schemas[] = {
    &gw_config_schema, &app_config_schema, &ctl_config_schema, &ctl_autoscale_schema, NULL,
};

static void fresh(const cfg_schema *s, any_cfg *c)
{
    cfg_error e;
    memset(c, 0, sizeof *c);
    memset(&e, 0, sizeof e);
    CHECK(cfg_defaults(s, c, &e) == 0);
}

/* A broken round trip: show both sides before aborting, for triage. */
static void round_trip_failed(const buf *j1, const buf *j2, const cfg_error *e)
{
    char m[1024];
    cfg_error_format(e, m, sizeof m);
    fprintf(stderr, "round trip broken\n  json: %.*s\n  again: %.*s\n  error: %s\n",
            (int)j1->len, buf_head(j1), j2 ? (int)j2->len : 0, j2 ? buf_head(j2) : "", m);
    abort();
}

static void refusal_ok(const cfg_error *e)
{
    CHECK(e->msg[0] != '\0');
    CHECK(e->line >= 0 && e->column >= 0);
    CHECK(memchr(e->msg, '\0', sizeof e->msg) && memchr(e->key, '\0', sizeof e->key)
          && memchr(e->file, '\0', sizeof e->file));
    char out[1024];
    cfg_error_format(e, out, sizeof out);
    CHECK(memchr(out, '\0', sizeof out));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static any_cfg a, b, c;
    if (size < 1)
        return 0;
    schemas[4] = ctl_service_schema();
    const cfg_schema *s = schemas[data[0] % (sizeof schemas / sizeof schemas[0])];
    size_t len = size - 1;
    /* the loader takes a length: give it an exact copy, no terminator */
    char *text = malloc(len ? len : 1);
    CHECK(text);
    memcpy(text, data + 1, len);

    cfg_error e;
    memset(&e, 0, sizeof e);
    fresh(s, &a);
    int rc = cfg_load_text(s, &a, text, len, "fuzz.yaml", &e);
    CHECK(rc == 0 || rc == -1);
    free(text);
    if (rc < 0) {
        refusal_ok(&e);
        cfg_free(s, &a);
        return 0;
    }
    memset(&e, 0, sizeof e);
    rc = cfg_validate(s, &a, &e);
    CHECK(rc == 0 || rc == -1);

    buf j1;
    buf_init(&j1);
    cfg_to_json(s, &a, &j1);
    json_error_t je;
    json_t *root = json_loadb(buf_head(&j1), j1.len, JSON_REJECT_DUPLICATES, &je);
    CHECK(root && json_is_object(root));     /* strict JSON, always */
    json_decref(root);
    if (rc < 0) {
        refusal_ok(&e);
        buf_free(&j1);
        cfg_free(s, &a);
        return 0;
    }

    /* round trip: to_json -> load over defaults -> validate -> to_json */
    fresh(s, &b);
    memset(&e, 0, sizeof e);
    if (cfg_load_text(s, &b, buf_head(&j1), j1.len, "json", &e) < 0 || cfg_validate(s, &b, &e) < 0)
        round_trip_failed(&j1, NULL, &e);
    buf j2;
    buf_init(&j2);
    cfg_to_json(s, &b, &j2);
    if (j2.len != j1.len || memcmp(buf_head(&j1), buf_head(&j2), j1.len) != 0)
        round_trip_failed(&j1, &j2, &e);
    buf_free(&j2);
    cfg_free(s, &b);

    /* a deep copy is the same config */
    memset(&c, 0, sizeof c);
    CHECK(cfg_copy(s, &c, &a) == 0);
    buf j3;
    buf_init(&j3);
    cfg_to_json(s, &c, &j3);
    CHECK(j3.len == j1.len && memcmp(buf_head(&j1), buf_head(&j3), j1.len) == 0);
    buf_free(&j3);
    cfg_free(s, &c);

    buf_free(&j1);
    cfg_free(s, &a);
    return 0;
}
