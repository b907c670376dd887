/* fuzz_deploy_spec.c -- libFuzzer target for ctl_dep_spec_parse, the
 * POST /api/v1/deploys body.
 *
 * Beyond "no crash": a refusal names a field and its message starts with
 * that field ("steps[2]: expected ..."; only an unknown key that is itself
 * "" is named ""), and leaves nothing allocated in the spec; an accepted
 * spec keeps every documented bound: a known strategy, a non-empty version, canary steps strictly increasing and
 * ending at 100, smoke paths starting with '/' and statuses 100..599,
 * env entries KEY=value, thresholds inside their ranges, and not both
 * max_surge and max_unavailable at 0; every string is terminated inside
 * its array. Parsing the same bytes twice gives the same spec. Bodies
 * pass the listener's guard first (fuzz_body_guard.h). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_deploy.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

#include "fuzz_body_guard.h"

static bool terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static void check_spec(const ctl_dep_spec *s)
{
    CHECK(s->strategy == CTL_DEP_ROLLING || s->strategy == CTL_DEP_BLUEGREEN
          || s->strategy == CTL_DEP_CANARY);
    CHECK(strcmp(ctl_dep_strategy_name(s->strategy), "unknown") != 0);
    CHECK(terminated(s->version, sizeof s->version) && s->version[0]);
    CHECK(terminated(s->ready_path, sizeof s->ready_path));
    CHECK(terminated(s->target_pool, sizeof s->target_pool));
    CHECK(!s->command || s->command[0]);
    CHECK((s->env == NULL) == (s->nenv == 0) || (s->env && s->nenv == 0));
    for (size_t i = 0; i < s->nenv; i++) {
        CHECK(s->env[i] && s->env[i][0] != '=' && strchr(s->env[i], '='));
    }
    CHECK(s->nsteps >= 1 && s->nsteps <= CTL_DEP_MAX_STEPS);
    for (int i = 0; i < s->nsteps; i++) {
        CHECK(s->steps[i] >= 1 && s->steps[i] <= 100);
        if (i)
            CHECK(s->steps[i] > s->steps[i - 1]);
    }
    CHECK(s->steps[s->nsteps - 1] == 100);
    CHECK(s->nsmoke >= 0 && s->nsmoke <= CTL_DEP_MAX_SMOKE);
    for (int i = 0; i < s->nsmoke; i++) {
        CHECK(terminated(s->smoke[i].path, sizeof s->smoke[i].path));
        CHECK(s->smoke[i].path[0] == '/');
        CHECK(s->smoke[i].expect >= 100 && s->smoke[i].expect <= 599);
    }
    CHECK(s->max_surge.value >= 0 && s->max_unavailable.value >= 0);
    CHECK(s->max_surge.value > 0 || s->max_unavailable.value > 0);
    CHECK(!s->max_surge.percent || s->max_surge.value <= 100);
    CHECK(!s->max_unavailable.percent || s->max_unavailable.value <= 100);
    CHECK(s->max_surge.value <= 1000 && s->max_unavailable.value <= 1000);
    /* the amounts stay sane against any fleet size */
    for (int n = 0; n <= 256; n += 64) {
        CHECK(ctl_dep_amount_of(s->max_surge, n, true) >= 0);
        CHECK(ctl_dep_amount_of(s->max_unavailable, n, false) >= 0);
    }
    CHECK(s->instances >= 0 && s->instances <= 256);
    CHECK(s->max_error_rate >= 0 && s->max_error_rate <= 100);
    CHECK(s->max_p95_ms >= 0 && s->max_p95_ms <= 3.6e6);
    CHECK(s->max_p95_ratio >= 1 && s->max_p95_ratio <= 1000);
    CHECK(s->max_error_delta >= 0 && s->max_error_delta <= 100);
    CHECK(s->min_requests >= 0 && s->min_requests <= 1e9);
}

static bool same_spec(const ctl_dep_spec *a, const ctl_dep_spec *b)
{
    if (a->strategy != b->strategy || strcmp(a->version, b->version)
        || strcmp(a->ready_path, b->ready_path) || strcmp(a->target_pool, b->target_pool)
        || (!a->command != !b->command) || (a->command && strcmp(a->command, b->command))
        || a->nenv != b->nenv || a->nsteps != b->nsteps || a->nsmoke != b->nsmoke
        || memcmp(&a->max_surge, &b->max_surge, sizeof a->max_surge)
        || memcmp(&a->max_unavailable, &b->max_unavailable, sizeof a->max_unavailable)
        || a->instances != b->instances || a->ready_timeout_us != b->ready_timeout_us
        || a->observe_us != b->observe_us || a->pause_us != b->pause_us
        || a->rollback_window_us != b->rollback_window_us || a->max_hold_us != b->max_hold_us
        || memcmp(a->steps, b->steps, sizeof a->steps) || a->max_error_rate != b->max_error_rate
        || a->max_p95_ms != b->max_p95_ms || a->max_p95_ratio != b->max_p95_ratio
        || a->max_error_delta != b->max_error_delta || a->min_requests != b->min_requests
        || a->auto_promote != b->auto_promote)
        return false;
    for (size_t i = 0; i < a->nenv; i++)
        if (strcmp(a->env[i], b->env[i]))
            return false;
    for (int i = 0; i < a->nsmoke; i++)
        if (strcmp(a->smoke[i].path, b->smoke[i].path) || a->smoke[i].expect != b->smoke[i].expect)
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ctl_dep_spec a, b;
    char *text = malloc(size ? size : 1);   /* exact copy: no terminator */
    CHECK(text);
    memcpy(text, data, size);
    if (!guard_passes(text, size)) {
        free(text);
        return 0;
    }
    char field[64], err[512];
    field[0] = err[0] = '\0';
    int rc = ctl_dep_spec_parse(&a, text, size, field, sizeof field, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc < 0) {
        CHECK(terminated(field, sizeof field) && terminated(err, sizeof err));
        size_t fl = strlen(field);
        /* "field: msg" (the field may have been cut to fit its buffer) */
        CHECK(strncmp(err, field, fl) == 0 || fl == sizeof field - 1);
        CHECK(fl == sizeof field - 1 || !strncmp(err + fl, ": ", 2));
        if (!fl) {
            /* only an unknown key that is itself empty is named "" */
            json_t *j = json_loadb(text, size, 0, NULL);
            CHECK(json_is_object(j) && json_object_get(j, ""));
            json_decref(j);
        }
        CHECK(a.command == NULL && a.env == NULL && a.nenv == 0);
        free(text);
        return 0;
    }
    check_spec(&a);
    char f2[64], e2[512];
    CHECK(ctl_dep_spec_parse(&b, text, size, f2, sizeof f2, e2, sizeof e2) == 0);
    CHECK(same_spec(&a, &b));
    ctl_dep_spec_free(&b);
    ctl_dep_spec_free(&a);
    CHECK(a.command == NULL && a.env == NULL && a.nenv == 0);
    free(text);
    return 0;
}
