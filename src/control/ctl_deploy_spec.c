/* ctl_deploy_spec.c -- a deploy request (the POST /api/v1/deploys body)
 * into a ctl_dep_spec, with the defaults in one place. Pure: no I/O.
 *
 * Every refusal names the field and what was expected, so the CLI can
 * print it as is. Unknown fields are refused too: a misspelt option that
 * silently took its default would deploy something nobody asked for. */
#include "control/ctl_deploy.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ctl_dep_strategy_name(int s)
{
    switch (s) {
    case CTL_DEP_ROLLING:   return "rolling";
    case CTL_DEP_BLUEGREEN: return "bluegreen";
    case CTL_DEP_CANARY:    return "canary";
    default:                return "unknown";
    }
}

int ctl_dep_amount_of(ctl_dep_amount a, int n, bool round_up)
{
    if (!a.percent)
        return a.value;
    long v = (long)a.value * n;
    return (int)(round_up ? (v + 99) / 100 : v / 100);
}

void ctl_dep_spec_free(ctl_dep_spec *s)
{
    free(s->command);
    for (size_t i = 0; i < s->nenv; i++)
        free(s->env[i]);
    free(s->env);
    s->command = NULL;
    s->env = NULL;
    s->nenv = 0;
}

typedef struct perr {
    char  *field, *err;
    size_t fieldlen, errlen;
} perr;

static int bad(perr *p, const char *field, const char *fmt, const char *got)
{
    snprintf(p->field, p->fieldlen, "%s", field);
    char msg[256];
    snprintf(msg, sizeof msg, fmt, got);
    snprintf(p->err, p->errlen, "%s: %s", field, msg);
    return -1;
}

static int get_duration(json_t *v, const char *key, uint64_t *out, perr *p)
{
    if (!v)
        return 0;
    if (json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) < 1e7) {
        *out = (uint64_t)(json_number_value(v) * 1e6);
        return 0;
    }
    char e[128];
    if (!json_is_string(v) || cfg_parse_duration(json_string_value(v), out, e, sizeof e) < 0)
        return bad(p, key, "expected a duration such as \"10s\" or \"500ms\", got %s",
                   json_is_string(v) ? json_string_value(v) : "another type");
    return 0;
}

static int get_double(json_t *v, const char *key, double lo, double hi, double *out, perr *p)
{
    if (!v)
        return 0;
    char got[64];
    snprintf(got, sizeof got, "%g", json_is_number(v) ? json_number_value(v) : NAN);
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        char fmt[96];
        snprintf(fmt, sizeof fmt, "expected a number %g..%g, got %%s", lo, hi);
        return bad(p, key, fmt, json_is_number(v) ? got : "another type");
    }
    *out = json_number_value(v);
    return 0;
}

/* 2 or "25%". */
static int get_amount(json_t *v, const char *key, ctl_dep_amount *out, perr *p)
{
    if (!v)
        return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 1000) {
        *out = (ctl_dep_amount){ (int)json_integer_value(v), false };
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        long n = strtol(s, &end, 10);
        if (end != s && n >= 0 && n <= 100 && strcmp(end, "%") == 0) {
            *out = (ctl_dep_amount){ (int)n, true };
            return 0;
        }
        if (end != s && *end == '\0' && n >= 0 && n <= 1000) {
            *out = (ctl_dep_amount){ (int)n, false };
            return 0;
        }
    }
    return bad(p, key, "expected a count or a percentage such as \"25%%\", got %s",
               json_is_string(v) ? json_string_value(v) : "another type");
}

static int get_str(json_t *v, const char *key, char *out, size_t outlen, perr *p)
{
    if (!v)
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= outlen)
        return bad(p, key, "expected a non-empty string, got %s",
                   json_is_string(v) ? "one too long or empty" : "another type");
    snprintf(out, outlen, "%s", json_string_value(v));
    return 0;
}

static int get_steps(json_t *v, ctl_dep_spec *s, perr *p)
{
    if (!v)
        return 0;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > CTL_DEP_MAX_STEPS)
        return bad(p, "steps", "expected a list of 1..16 weights in percent such as [5,25,50,100], got %s",
                   json_is_array(v) ? "a list of another length" : "another type");
    s->nsteps = 0;
    size_t i;
    json_t *e;
    int prev = 0;
    json_array_foreach(v, i, e) {
        char key[32];
        snprintf(key, sizeof key, "steps[%zu]", i);
        if (!json_is_integer(e) || json_integer_value(e) <= prev || json_integer_value(e) > 100)
            return bad(p, key, "expected increasing percentages in 1..100, got %s",
                       json_is_integer(e) ? "a value out of order or range" : "another type");
        prev = (int)json_integer_value(e);
        s->steps[s->nsteps++] = prev;
    }
    if (prev != 100)
        s->steps[s->nsteps < CTL_DEP_MAX_STEPS ? s->nsteps++ : s->nsteps - 1] = 100;
    return 0;
}

static int get_smoke(json_t *v, ctl_dep_spec *s, perr *p)
{
    if (!v)
        return 0;
    if (!json_is_array(v) || json_array_size(v) > CTL_DEP_MAX_SMOKE)
        return bad(p, "smoke", "expected a list of up to 16 {\"path\",\"expect\"}, got %s",
                   json_is_array(v) ? "a longer list" : "another type");
    s->nsmoke = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        char key[48];
        json_t *path = json_object_get(e, "path"), *ex = json_object_get(e, "expect");
        snprintf(key, sizeof key, "smoke[%zu].path", i);
        if (!json_is_string(path) || json_string_value(path)[0] != '/'
            || json_string_length(path) >= sizeof s->smoke[0].path)
            return bad(p, key, "expected a path starting with '/', got %s",
                       json_is_string(path) ? json_string_value(path) : "nothing");
        snprintf(key, sizeof key, "smoke[%zu].expect", i);
        if (ex && (!json_is_integer(ex) || json_integer_value(ex) < 100 || json_integer_value(ex) > 599))
            return bad(p, key, "expected an HTTP status 100..599, got %s", "another value");
        snprintf(s->smoke[s->nsmoke].path, sizeof s->smoke[0].path, "%s", json_string_value(path));
        s->smoke[s->nsmoke++].expect = ex ? (int)json_integer_value(ex) : 200;
    }
    return 0;
}

static int get_env(json_t *v, ctl_dep_spec *s, perr *p)
{
    if (!v)
        return 0;
    if (!json_is_array(v))
        return bad(p, "env", "expected a list of \"KEY=value\", got %s", "another type");
    s->env = calloc(json_array_size(v) + 1, sizeof *s->env);
    if (!s->env)
        return bad(p, "env", "%s", "out of memory");
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        char key[32];
        snprintf(key, sizeof key, "env[%zu]", i);
        if (!json_is_string(e) || !strchr(json_string_value(e), '=') || json_string_value(e)[0] == '=')
            return bad(p, key, "expected \"KEY=value\", got %s",
                       json_is_string(e) ? json_string_value(e) : "another type");
        s->env[s->nenv++] = strdup(json_string_value(e));
    }
    return 0;
}

static const char *const known[] = {
    "strategy", "version", "command", "env", "ready_path", "max_surge", "max_unavailable",
    "instances", "target_pool", "ready_timeout", "observe", "pause", "rollback_window",
    "max_hold", "steps", "smoke", "max_error_rate", "max_p95_ms", "max_p95_ratio",
    "max_error_delta", "min_requests", "auto_promote", NULL,
};

static void defaults(ctl_dep_spec *s)
{
    memset(s, 0, sizeof *s);
    s->max_surge = (ctl_dep_amount){ 1, false };
    s->ready_timeout_us = 60000000u;
    s->observe_us = 2000000u;
    s->pause_us = 10000000u;
    s->rollback_window_us = 30000000u;
    s->max_hold_us = 300000000u;
    static const int steps[] = { 5, 25, 50, 100 };
    memcpy(s->steps, steps, sizeof steps);
    s->nsteps = 4;
    s->max_error_rate = 1;
    s->max_p95_ms = 500;
    s->max_p95_ratio = 2;
    s->max_error_delta = 1;
    s->min_requests = 50;
    s->auto_promote = true;
}

static int parse_obj(ctl_dep_spec *s, json_t *j, perr *p)
{
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        bool ok = false;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok)
            return bad(p, key, "unknown field (expected strategy, version, command, env, "
                       "max_surge, max_unavailable, steps, pause, smoke, ...)%s", "");
    }
    v = json_object_get(j, "strategy");
    const char *st = json_is_string(v) ? json_string_value(v) : "";
    if (strcmp(st, "rolling") == 0)
        s->strategy = CTL_DEP_ROLLING;
    else if (strcmp(st, "bluegreen") == 0 || strcmp(st, "blue-green") == 0)
        s->strategy = CTL_DEP_BLUEGREEN;
    else if (strcmp(st, "canary") == 0)
        s->strategy = CTL_DEP_CANARY;
    else
        return bad(p, "strategy", "expected rolling, bluegreen or canary, got %s",
                   json_is_string(v) ? st : "nothing");
    if (!json_object_get(j, "version"))
        return bad(p, "version", "expected the new version's label, got %s", "nothing");
    if (get_str(json_object_get(j, "version"), "version", s->version, sizeof s->version, p) < 0
        || get_str(json_object_get(j, "ready_path"), "ready_path", s->ready_path,
                   sizeof s->ready_path, p) < 0
        || get_str(json_object_get(j, "target_pool"), "target_pool", s->target_pool,
                   sizeof s->target_pool, p) < 0
        || get_amount(json_object_get(j, "max_surge"), "max_surge", &s->max_surge, p) < 0
        || get_amount(json_object_get(j, "max_unavailable"), "max_unavailable",
                      &s->max_unavailable, p) < 0
        || get_duration(json_object_get(j, "ready_timeout"), "ready_timeout", &s->ready_timeout_us, p) < 0
        || get_duration(json_object_get(j, "observe"), "observe", &s->observe_us, p) < 0
        || get_duration(json_object_get(j, "pause"), "pause", &s->pause_us, p) < 0
        || get_duration(json_object_get(j, "rollback_window"), "rollback_window",
                        &s->rollback_window_us, p) < 0
        || get_duration(json_object_get(j, "max_hold"), "max_hold", &s->max_hold_us, p) < 0
        || get_steps(json_object_get(j, "steps"), s, p) < 0
        || get_smoke(json_object_get(j, "smoke"), s, p) < 0
        || get_env(json_object_get(j, "env"), s, p) < 0
        || get_double(json_object_get(j, "max_error_rate"), "max_error_rate", 0, 100, &s->max_error_rate, p) < 0
        || get_double(json_object_get(j, "max_p95_ms"), "max_p95_ms", 0, 3.6e6, &s->max_p95_ms, p) < 0
        || get_double(json_object_get(j, "max_p95_ratio"), "max_p95_ratio", 1, 1000, &s->max_p95_ratio, p) < 0
        || get_double(json_object_get(j, "max_error_delta"), "max_error_delta", 0, 100, &s->max_error_delta, p) < 0
        || get_double(json_object_get(j, "min_requests"), "min_requests", 0, 1e9, &s->min_requests, p) < 0)
        return -1;
    v = json_object_get(j, "command");
    if (v) {
        if (!json_is_string(v) || json_string_length(v) == 0)
            return bad(p, "command", "expected the instance command, got %s", "nothing");
        s->command = strdup(json_string_value(v));
    }
    v = json_object_get(j, "instances");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 256)
            return bad(p, "instances", "expected 1..256, got %s", "another value");
        s->instances = (int)json_integer_value(v);
    }
    v = json_object_get(j, "auto_promote");
    if (v) {
        if (!json_is_boolean(v))
            return bad(p, "auto_promote", "expected true or false, got %s", "another type");
        s->auto_promote = json_is_true(v);
    }
    if (s->max_surge.value == 0 && s->max_unavailable.value == 0)
        return bad(p, "max_surge", "expected max_surge or max_unavailable above 0, got %s", "both 0");
    return 0;
}

int ctl_dep_spec_parse(ctl_dep_spec *s, const char *text, size_t len, char *field,
                       size_t fieldlen, char *err, size_t errlen)
{
    defaults(s);
    perr p = { field, err, fieldlen, errlen };
    json_error_t je;
    json_t *j = json_loadb(text ? text : "", len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return bad(&p, "body", "expected a JSON object such as {\"strategy\":\"rolling\","
                   "\"version\":\"v2\"}%s", "");
    }
    int rc = parse_obj(s, j, &p);
    json_decref(j);
    if (rc < 0)
        ctl_dep_spec_free(s);
    return rc;
}
