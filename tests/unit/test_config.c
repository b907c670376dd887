/* test_config.c -- the schema-driven loader: defaults, YAML and JSON
 * documents, every error kind with its line and key path, environment and
 * flag overrides, validate hooks, copy/free, JSON round trip and docs.
 * Fixture files live in tests/unit/data/config/ (run from the repo root). */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/config.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

typedef struct t_backend { char *address; int weight; } t_backend;
typedef struct t_health { uint64_t interval; char *path; } t_health;
typedef struct t_pool {
    char *name;
    int algo;
    t_backend *backends;
    size_t nbackends;
    t_health health;
} t_pool;
typedef struct t_sub { int level; uint64_t grace; } t_sub;
typedef struct t_conf {
    bool debug;
    int workers;
    double ratio, cpu_target;
    uint64_t timeout, bufsize;
    char *name, *listen;
    int mode;
    char **tags;
    size_t ntags;
    t_sub sub;
    t_pool *pools;
    size_t npools;
} t_conf;

static const char *const modes[] = { "safe", "fast", "paranoid", NULL };
static const char *const algos[] = { "round_robin", "least_conn", NULL };

static const cfg_field backend_fields[] = {
    { .key = "address", .type = CFG_ADDR, .offset = offsetof(t_backend, address), .help = "host:port" },
    { .key = "weight", .type = CFG_INT, .offset = offsetof(t_backend, weight), .def = "1", .min = 1, .max = 100,
      .help = "relative share" },
};
static int backend_validate(void *obj, cfg_error *err)
{
    const t_backend *b = obj;
    if (!b->address) {
        snprintf(err->key, sizeof err->key, "address");
        snprintf(err->msg, sizeof err->msg, "is required");
        return -1;
    }
    return 0;
}
static const cfg_schema backend_schema = { "backend", backend_fields, 2, backend_validate };

static const cfg_field health_fields[] = {
    { .key = "interval", .type = CFG_DURATION, .offset = offsetof(t_health, interval), .def = "2s",
      .min = 0.001, .max = 60, .help = "time between probes" },
    { .key = "path", .type = CFG_STRING, .offset = offsetof(t_health, path), .def = "/health", .help = "probe path" },
};
static const cfg_schema health_schema = { "health", health_fields, 2, NULL };

static const cfg_field pool_fields[] = {
    { .key = "name", .type = CFG_STRING, .offset = offsetof(t_pool, name), .help = "pool name" },
    { .key = "algo", .type = CFG_ENUM, .offset = offsetof(t_pool, algo), .def = "round_robin", .choices = algos,
      .help = "balancing | algorithm" },
    { .key = "backends", .type = CFG_LIST, .offset = offsetof(t_pool, backends), .sub = &backend_schema,
      .elem_size = sizeof(t_backend), .count_offset = offsetof(t_pool, nbackends), .help = "servers" },
    { .key = "health", .type = CFG_OBJECT, .offset = offsetof(t_pool, health), .sub = &health_schema,
      .help = "health checks" },
};
static int pool_validate(void *obj, cfg_error *err)
{
    const t_pool *p = obj;
    if (p->nbackends == 0) {
        snprintf(err->key, sizeof err->key, "backends");
        snprintf(err->msg, sizeof err->msg, "needs at least one backend");
        return -1;
    }
    return 0;
}
static const cfg_schema pool_schema = { "pool", pool_fields, 4, pool_validate };

static const cfg_field sub_fields[] = {
    { .key = "level", .type = CFG_INT, .offset = offsetof(t_sub, level), .def = "1", .env = "TCFG_LEVEL",
      .min = 0, .max = 9, .help = "level" },
    { .key = "grace", .type = CFG_DURATION, .offset = offsetof(t_sub, grace), .def = "100ms", .help = "grace" },
};
static const cfg_schema sub_schema = { "sub", sub_fields, 2, NULL };

static const cfg_field top_fields[] = {
    { .key = "debug", .type = CFG_BOOL, .offset = offsetof(t_conf, debug), .def = "false", .env = "TCFG_DEBUG", .help = "debug" },
    { .key = "workers", .type = CFG_INT, .offset = offsetof(t_conf, workers), .def = "2", .env = "TCFG_WORKERS",
      .min = 1, .max = 64, .help = "worker threads" },
    { .key = "ratio", .type = CFG_DOUBLE, .offset = offsetof(t_conf, ratio), .def = "0.5", .help = "a ratio" },
    { .key = "cpu_target", .type = CFG_PERCENT, .offset = offsetof(t_conf, cpu_target), .def = "60%", .help = "target" },
    { .key = "timeout", .type = CFG_DURATION, .offset = offsetof(t_conf, timeout), .def = "30s", .env = "TCFG_TIMEOUT",
      .help = "timeout" },
    { .key = "bufsize", .type = CFG_SIZE, .offset = offsetof(t_conf, bufsize), .def = "16KiB", .min = 1024,
      .max = 1048576, .help = "buffer" },
    { .key = "name", .type = CFG_STRING, .offset = offsetof(t_conf, name), .help = "name" },
    { .key = "listen", .type = CFG_ADDR, .offset = offsetof(t_conf, listen), .def = "127.0.0.1:8000",
      .env = "TCFG_LISTEN", .help = "listen address" },
    { .key = "mode", .type = CFG_ENUM, .offset = offsetof(t_conf, mode), .def = "safe", .choices = modes,
      .env = "TCFG_MODE", .help = "mode" },
    { .key = "tags", .type = CFG_STRLIST, .offset = offsetof(t_conf, tags), .count_offset = offsetof(t_conf, ntags),
      .def = "x,y", .env = "TCFG_TAGS", .help = "tags" },
    { .key = "sub", .type = CFG_OBJECT, .offset = offsetof(t_conf, sub), .sub = &sub_schema, .help = "nested" },
    { .key = "pools", .type = CFG_LIST, .offset = offsetof(t_conf, pools), .sub = &pool_schema,
      .elem_size = sizeof(t_pool), .count_offset = offsetof(t_conf, npools), .help = "pools" },
};
static const cfg_schema top_schema = { "test", top_fields, sizeof top_fields / sizeof top_fields[0], NULL };

static void load_defaults(t_conf *c)
{
    cfg_error e;
    memset(c, 0, sizeof *c);
    cr_assert_eq(cfg_defaults(&top_schema, c, &e), 0, "%s", e.msg);
}

static void check_good(const t_conf *c)
{
    cr_expect(c->debug);
    cr_expect_eq(c->workers, 8);
    cr_expect_float_eq(c->ratio, 0.25, 1e-12);
    cr_expect_float_eq(c->cpu_target, 70, 1e-12);
    cr_expect_eq(c->timeout, 1500000u);
    cr_expect_eq(c->bufsize, 65536u);
    cr_expect_str_eq(c->name, "edge \"one\"");
    cr_expect_str_eq(c->listen, "127.0.0.1:8080");
    cr_expect_eq(c->mode, 1);
    cr_assert_eq(c->ntags, 3);
    cr_expect_str_eq(c->tags[2], "c");
    cr_expect_eq(c->sub.level, 3);
    cr_expect_eq(c->sub.grace, 250000u);
    cr_assert_eq(c->npools, 2);
    cr_expect_str_eq(c->pools[0].name, "api");
    cr_assert_eq(c->pools[0].nbackends, 2);
    cr_expect_eq(c->pools[0].backends[0].weight, 2);
    cr_expect_eq(c->pools[0].backends[1].weight, 1, "list elements start from defaults");
    cr_expect_str_eq(c->pools[0].backends[1].address, "127.0.0.1:9002");
    cr_expect_eq(c->pools[0].health.interval, 5000000u);
    cr_expect_str_eq(c->pools[0].health.path, "/healthz");
    cr_expect_str_eq(c->pools[1].health.path, "/health");
    cr_expect_eq(c->pools[1].health.interval, 2000000u);
    cr_expect_eq(c->pools[1].algo, 0);
}

Test(config, defaults)
{
    t_conf c;
    load_defaults(&c);
    cr_expect(!c.debug);
    cr_expect_eq(c.workers, 2);
    cr_expect_float_eq(c.cpu_target, 60, 1e-12);
    cr_expect_eq(c.timeout, 30000000u);
    cr_expect_eq(c.bufsize, 16384u);
    cr_expect_null(c.name);
    cr_expect_str_eq(c.listen, "127.0.0.1:8000");
    cr_assert_eq(c.ntags, 2);
    cr_expect_str_eq(c.tags[1], "y");
    cr_expect_eq(c.sub.level, 1);
    cr_expect_eq(c.sub.grace, 100000u);
    cr_expect_eq(c.npools, 0);
    cr_expect_null(c.pools);
    cfg_free(&top_schema, &c);
}

Test(config, yaml_file)
{
    t_conf c;
    cfg_error e;
    load_defaults(&c);
    cr_assert_eq(cfg_load_file(&top_schema, &c, "tests/unit/data/config/good.yaml", &e), 0,
                 "%s:%d: %s: %s", e.file, e.line, e.key, e.msg);
    check_good(&c);
    cr_expect_eq(cfg_validate(&top_schema, &c, &e), 0, "%s", e.msg);
    cfg_free(&top_schema, &c);
}

Test(config, json_file)
{
    t_conf c;
    cfg_error e;
    load_defaults(&c);
    cr_assert_eq(cfg_load_file(&top_schema, &c, "tests/unit/data/config/good.json", &e), 0,
                 "%s:%d: %s: %s", e.file, e.line, e.key, e.msg);
    check_good(&c);
    cfg_free(&top_schema, &c);
}

Test(config, missing_file)
{
    t_conf c;
    cfg_error e;
    load_defaults(&c);
    cr_expect_eq(cfg_load_file(&top_schema, &c, "/nonexistent/x.yaml", &e), -1);
    cr_expect_str_eq(e.file, "/nonexistent/x.yaml");
    cr_expect(strstr(e.msg, "cannot open") != NULL, "%s", e.msg);
    cfg_free(&top_schema, &c);
}

Test(config, partial_document_keeps_other_values)
{
    t_conf c;
    cfg_error e;
    load_defaults(&c);
    const char *y = "sub:\n  grace: 1m\n";
    cr_assert_eq(cfg_load_text(&top_schema, &c, y, strlen(y), "t.yaml", &e), 0, "%s", e.msg);
    cr_expect_eq(c.sub.grace, 60000000u);
    cr_expect_eq(c.sub.level, 1);
    cr_expect_eq(c.workers, 2);
    cr_expect_eq(cfg_load_text(&top_schema, &c, "", 0, "t.yaml", &e), 0);
    cfg_free(&top_schema, &c);
}

typedef struct err_case {
    const char *doc;
    int line, col;        /* col 0: not checked */
    const char *key;
    const char *msg;      /* substring */
} err_case;

static const err_case err_cases[] = {
    { "workers: 4\nlistn: 1\n", 2, 1, "listn", "unknown key 'listn' (expected one of: debug, workers, ratio" },
    { "timeout: abc\n", 1, 10, "timeout", "expected a duration like 30s" },
    { "sub: [1, 2]\n", 1, 1, "sub", "expected a mapping, got a sequence" },
    { "sub: 5\n", 1, 6, "sub", "expected a mapping, got a scalar" },
    { "workers: 100\n", 1, 10, "workers", "must be between 1 and 64, got 100" },
    { "workers: x\n", 1, 10, "workers", "expected an integer, got 'x'" },
    { "mode: slow\n", 1, 7, "mode", "expected one of: safe, fast, paranoid; got 'slow'" },
    { "listen: nohost-port\n", 1, 9, "listen", "expected an address like 127.0.0.1:8080, got 'nohost-port'" },
    { "debug: true\nworkers: 3\ndebug: false\n", 3, 1, "debug", "duplicate key 'debug' (first set on line 1)" },
    { "debug: maybe\n", 1, 8, "debug", "expected true or false, got 'maybe'" },
    { "cpu_target: 170%\n", 1, 13, "cpu_target", "must be between 0 and 100, got 170%" },
    { "bufsize: 10\n", 1, 10, "bufsize", "must be between 1KiB and 1MiB, got 10" },
    { "bufsize: 12 parsecs\n", 1, 10, "bufsize", "expected a size like 64KiB" },
    { "tags: {a: 1}\n", 1, 1, "tags", "expected a list of strings (string list), got a mapping" },
    { "pools:\n  - name: a\n    backends:\n      - address: 127.0.0.1:1\n      - address: 127.0.0.1:2\n"
      "        weight: 0\n", 6, 17, "pools[0].backends[1].weight", "must be between 1 and 100, got 0" },
    { "pools:\n  - name: a\n  - name: b\n    backends:\n      - addres: 127.0.0.1:1\n", 5, 9,
      "pools[1].backends[0].addres", "unknown key 'addres' (expected one of: address, weight)" },
    { "pools:\n  - name: a\n    health:\n      interval: 2m\n", 4, 17, "pools[0].health.interval",
      "must be between 1ms and 1m, got 2m" },
    { "pools: {name: a}\n", 1, 1, "pools", "expected a sequence of mappings, got a mapping" },
    { "pools:\n  - just-a-string\n", 2, 5, "pools[0]", "expected a mapping, got a scalar" },
    /* syntax errors: libfyaml's message, with the position */
    { "workers: 4\nname: [a, b\nmode: fast\n", 4, 0, "", "flow sequence without a closing bracket" },
    { "workers: 4\nname: \"open\n", 2, 8, "", "double-quoted scalar without closing quote" },
    { "workers: &x 4\nsub:\n  level: *x\n", 3, 11, "sub.level", "aliases (*name) are not supported" },
    { "{\n  \"workers\": 4,\n  \"debug\" true\n}\n", 3, 0, "", "" },
    /* a missing comma: libfyaml points at the value before it */
    { "{\n  \"workers\": 4\n  \"debug\": true\n}\n", 2, 0, "", "" },
    /* not UTF-8: refused before libfyaml, which spun forever on "%\xff" (fuzz_config) */
    { "%\xff\n", 1, 2, "", "invalid UTF-8 (byte 1 of the document)" },
    { "workers: 4\nname: \"a\xc3\x28\"\n", 2, 9, "", "invalid UTF-8" },
    { "{\"name\": \"\xed\xa0\x80\"}", 1, 11, "", "invalid UTF-8" },   /* a surrogate */
    /* an address with a default cannot be emptied */
    { "listen: \"\"\n", 1, 10, "listen", "expected an address like 127.0.0.1:8080, got ''" },
};

/* One test over the table, not a parameterized one: Criterion runs each
 * parameter in a fresh process where the table's string pointers differ. */
Test(config, errors)
{
    for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
        const err_case *tc = &err_cases[i];
        t_conf c;
        cfg_error e;
        char line[600];
        load_defaults(&c);
        int rc = cfg_load_text(&top_schema, &c, tc->doc, strlen(tc->doc), "t.yaml", &e);
        cfg_error_format(&e, line, sizeof line);
        cr_expect_eq(rc, -1, "case %zu loaded but should fail: %s", i, tc->doc);
        if (rc == 0) { cfg_free(&top_schema, &c); continue; }
        cr_expect_str_eq(e.file, "t.yaml");
        cr_expect_eq(e.line, tc->line, "case %zu line: %s", i, line);
        if (tc->col) cr_expect_eq(e.column, tc->col, "case %zu column: %s", i, line);
        cr_expect_str_eq(e.key, tc->key, "case %zu key: %s", i, line);
        cr_expect(strstr(e.msg, tc->msg) != NULL, "case %zu msg: %s", i, line);
        cr_expect(e.msg[0] != '\0', "case %zu: empty message", i);
        cr_log_info("case %zu: %s", i, line);
        cfg_free(&top_schema, &c);
    }
}

Test(config, error_format)
{
    cfg_error e = { .file = "h.yaml", .line = 3, .column = 5, .key = "a.b", .msg = "bad" };
    char out[600];
    cfg_error_format(&e, out, sizeof out);
    cr_expect_str_eq(out, "h.yaml:3:5: a.b: bad");
    cfg_error e2 = { .file = "<env>", .key = "workers", .msg = "W: bad" };
    cfg_error_format(&e2, out, sizeof out);
    cr_expect_str_eq(out, "<env>: workers: W: bad");
}

Test(config, env_override_and_error)
{
    t_conf c;
    cfg_error e;
    load_defaults(&c);
    setenv("TCFG_WORKERS", "12", 1);
    setenv("TCFG_TAGS", "p, q ,r", 1);
    setenv("TCFG_LEVEL", "7", 1);
    setenv("TCFG_MODE", "paranoid", 1);
    setenv("TCFG_DEBUG", "on", 1);
    cr_assert_eq(cfg_apply_env(&top_schema, &c, &e), 0, "%s", e.msg);
    cr_expect_eq(c.workers, 12);
    cr_expect_eq(c.sub.level, 7);
    cr_expect_eq(c.mode, 2);
    cr_expect(c.debug);
    cr_assert_eq(c.ntags, 3);
    cr_expect_str_eq(c.tags[1], "q");

    setenv("TCFG_TIMEOUT", "x", 1);
    cr_expect_eq(cfg_apply_env(&top_schema, &c, &e), -1);
    cr_expect_str_eq(e.file, "<env>");
    cr_expect_str_eq(e.key, "timeout");
    cr_expect(strncmp(e.msg, "TCFG_TIMEOUT: expected a duration", 33) == 0, "%s", e.msg);
    setenv("TCFG_TIMEOUT", "10s", 1);
    setenv("TCFG_LEVEL", "x", 1);
    cr_expect_eq(cfg_apply_env(&top_schema, &c, &e), -1);
    cr_expect_str_eq(e.key, "sub.level");
    cr_expect_str_eq(e.msg, "TCFG_LEVEL: expected an integer, got 'x'");
    for (const char *v = "TCFG_WORKERS\0TCFG_TAGS\0TCFG_LEVEL\0TCFG_MODE\0TCFG_DEBUG\0TCFG_TIMEOUT\0"; *v; v += strlen(v) + 1)
        unsetenv(v);
    cfg_free(&top_schema, &c);
}

Test(config, cfg_set_flags)
{
    t_conf c;
    cfg_error e;
    load_defaults(&c);
    cr_assert_eq(cfg_load_file(&top_schema, &c, "tests/unit/data/config/good.yaml", &e), 0, "%s", e.msg);
    cr_expect_eq(cfg_set(&top_schema, &c, "workers", "4", &e), 0);
    cr_expect_eq(c.workers, 4);
    cr_expect_eq(cfg_set(&top_schema, &c, "sub.grace", "2s", &e), 0);
    cr_expect_eq(c.sub.grace, 2000000u);
    cr_expect_eq(cfg_set(&top_schema, &c, "tags", "one,two", &e), 0, "strlist: replaced from a comma list");
    cr_assert_eq(c.ntags, 2);
    cr_expect_str_eq(c.tags[0], "one");
    cr_expect_eq(cfg_set(&top_schema, &c, "pools[0].backends[1].weight", "9", &e), 0, "%s", e.msg);
    cr_expect_eq(c.pools[0].backends[1].weight, 9);
    cr_expect_eq(cfg_set(&top_schema, &c, "pools[1].health.path", "/up", &e), 0, "%s", e.msg);
    cr_expect_str_eq(c.pools[1].health.path, "/up");

    cr_expect_eq(cfg_set(&top_schema, &c, "workers", "0", &e), -1);
    cr_expect_str_eq(e.file, "<flag>");
    cr_expect_str_eq(e.key, "workers");
    cr_expect_str_eq(e.msg, "must be between 1 and 64, got 0");
    cr_expect_eq(c.workers, 4, "failed set leaves the value");
    cr_expect_eq(cfg_set(&top_schema, &c, "sub.nope", "1", &e), -1);
    cr_expect(strstr(e.msg, "unknown key 'nope' (expected one of: level, grace)") != NULL, "%s", e.msg);
    cr_expect_eq(cfg_set(&top_schema, &c, "pools[5].name", "x", &e), -1);
    cr_expect(strstr(e.msg, "out of range") != NULL, "%s", e.msg);
    cr_expect_eq(cfg_set(&top_schema, &c, "sub", "x", &e), -1);
    cr_expect_eq(cfg_set(&top_schema, &c, "workers.x", "1", &e), -1);
    cfg_free(&top_schema, &c);
}

Test(config, validate_hooks_depth_first)
{
    t_conf c;
    cfg_error e;
    load_defaults(&c);
    const char *y = "pools:\n  - name: a\n    backends:\n      - weight: 3\n";
    cr_assert_eq(cfg_load_text(&top_schema, &c, y, strlen(y), "v.yaml", &e), 0, "%s", e.msg);
    cr_expect_eq(cfg_validate(&top_schema, &c, &e), -1);
    cr_expect_str_eq(e.key, "pools[0].backends[0].address", "element hook runs before the pool's");
    cr_expect_str_eq(e.msg, "is required");
    const char *y2 = "pools:\n  - name: a\n    backends: []\n";
    cr_assert_eq(cfg_load_text(&top_schema, &c, y2, strlen(y2), "v.yaml", &e), 0, "%s", e.msg);
    cr_expect_eq(cfg_validate(&top_schema, &c, &e), -1);
    cr_expect_str_eq(e.key, "pools[0].backends");
    cr_expect_str_eq(e.msg, "needs at least one backend");
    cfg_free(&top_schema, &c);
}

Test(config, cfg_load_all_steps)
{
    t_conf c;
    cfg_error e;
    memset(&c, 0, sizeof c);
    setenv("TCFG_WORKERS", "5", 1);
    cr_assert_eq(cfg_load(&top_schema, &c, "tests/unit/data/config/good.yaml", &e), 0, "%s: %s", e.key, e.msg);
    unsetenv("TCFG_WORKERS");
    cr_expect_eq(c.workers, 5, "env wins over the file");
    cr_expect_eq(c.sub.level, 3);
    cfg_free(&top_schema, &c);
}

Test(config, load_into_copy_is_all_or_nothing)
{
    t_conf live, next;
    cfg_error e;
    load_defaults(&live);
    cr_assert_eq(cfg_load_file(&top_schema, &live, "tests/unit/data/config/good.yaml", &e), 0, "%s", e.msg);
    buf before;
    buf_init(&before);
    cfg_to_json(&top_schema, &live, &before);

    /* The caller's reload pattern: copy, load over the copy, swap on success. */
    const char *bad = "workers: 3\ntimeout: 5s\nsub:\n  level: 99\n";
    memset(&next, 0, sizeof next);
    cr_assert_eq(cfg_copy(&top_schema, &next, &live), 0);
    cr_expect_eq(cfg_load_text(&top_schema, &next, bad, strlen(bad), "r.yaml", &e), -1);
    cr_expect_str_eq(e.key, "sub.level");
    cr_expect_eq(next.workers, 3, "the copy was partly applied...");
    cfg_free(&top_schema, &next);
    cr_expect_eq(live.workers, 8, "...the live config was not");
    buf after;
    buf_init(&after);
    cfg_to_json(&top_schema, &live, &after);
    cr_assert_eq(after.len, before.len);
    cr_expect(memcmp(buf_head(&after), buf_head(&before), before.len) == 0);

    /* And a good reload swaps in. */
    const char *good = "workers: 3\n";
    memset(&next, 0, sizeof next);
    cr_assert_eq(cfg_copy(&top_schema, &next, &live), 0);
    cr_assert_eq(cfg_load_text(&top_schema, &next, good, strlen(good), "r.yaml", &e), 0);
    cfg_free(&top_schema, &live);
    live = next;
    cr_expect_eq(live.workers, 3);
    cr_expect_str_eq(live.pools[0].backends[0].address, "127.0.0.1:9001");
    cfg_free(&top_schema, &live);
    buf_free(&before);
    buf_free(&after);
}

Test(config, copy_is_deep)
{
    t_conf a, b;
    cfg_error e;
    load_defaults(&a);
    cr_assert_eq(cfg_load_file(&top_schema, &a, "tests/unit/data/config/good.yaml", &e), 0, "%s", e.msg);
    memset(&b, 0, sizeof b);
    cr_assert_eq(cfg_copy(&top_schema, &b, &a), 0);
    cr_expect_neq(b.name, a.name);
    cr_expect_neq(b.tags, a.tags);
    cr_expect_neq(b.pools, a.pools);
    cr_expect_neq(b.pools[0].backends, a.pools[0].backends);
    cr_expect_neq(b.pools[0].health.path, a.pools[0].health.path);
    cfg_free(&top_schema, &a);
    check_good(&b);   /* still intact after the source is gone (ASan checks) */
    cfg_free(&top_schema, &b);
}

Test(config, json_round_trip)
{
    t_conf a, b;
    cfg_error e;
    load_defaults(&a);
    cr_assert_eq(cfg_load_file(&top_schema, &a, "tests/unit/data/config/good.yaml", &e), 0, "%s", e.msg);
    a.ratio = 0.1 + 0.2;   /* needs 17 digits */
    a.timeout = 1234567;   /* 1.234567s */
    a.bufsize = 1000001;   /* no unit fits */
    buf j1, j2;
    buf_init(&j1);
    buf_init(&j2);
    cfg_to_json(&top_schema, &a, &j1);
    cr_expect(strstr(buf_head(&j1), "\"timeout\":\"1.234567s\"") != NULL, "%.*s", (int)j1.len, buf_head(&j1));
    cr_expect(strstr(buf_head(&j1), "\"mode\":\"fast\"") != NULL);
    cr_expect(strstr(buf_head(&j1), "\"interval\":\"5s\"") != NULL);

    memset(&b, 0, sizeof b);
    cr_assert_eq(cfg_defaults(&top_schema, &b, &e), 0);
    cr_assert_eq(cfg_load_text(&top_schema, &b, buf_head(&j1), j1.len, "<json>", &e), 0,
                 "%d:%d %s: %s\n%.*s", e.line, e.column, e.key, e.msg, (int)j1.len, buf_head(&j1));
    cr_expect(b.ratio == a.ratio);
    cr_expect_eq(b.timeout, a.timeout);
    cr_expect_eq(b.bufsize, a.bufsize);
    cr_expect_str_eq(b.name, a.name);
    cr_expect_eq(b.npools, a.npools);
    cfg_to_json(&top_schema, &b, &j2);
    cr_assert_eq(j1.len, j2.len);
    cr_expect(memcmp(buf_head(&j1), buf_head(&j2), j1.len) == 0);
    cfg_free(&top_schema, &a);
    cfg_free(&top_schema, &b);
    buf_free(&j1);
    buf_free(&j2);
}

/* libfyaml 0.7 crashes (NULL write in its cleanup) on this document with
 * a NUL in it; the loader refuses NULs first (found by fuzz_config). */
Test(config, nul_byte_refused)
{
    t_conf c;
    cfg_error e;
    load_defaults(&c);
    static const char doc[] = "? z:\t\0";
    cr_assert_eq(cfg_load_text(&top_schema, &c, doc, sizeof doc - 1, "t.yaml", &e), -1);
    cr_expect_eq(e.line, 1);
    cr_expect_eq(e.column, 6);
    cr_expect(strstr(e.msg, "NUL byte (byte 5 of the document)") != NULL, "%s", e.msg);
    static const char json[] = "{\"name\": \"a\0b\"}";
    cr_assert_eq(cfg_load_text(&top_schema, &c, json, sizeof json - 1, "t.json", &e), -1);
    cr_expect(strstr(e.msg, "NUL byte") != NULL, "%s", e.msg);
    cfg_free(&top_schema, &c);
}

/* JSON with long runs of tabs: libfyaml 0.7 crashed drawing the source
 * line under its error message (found by fuzz_config; reachable through
 * the control plane's PUT of the autoscaling config). Errors are now
 * collected, not printed, and still carry their position. */
Test(config, syntax_error_in_tab_heavy_json)
{
    t_conf c;
    cfg_error e;
    load_defaults(&c);
    static const char doc[] =
        "{\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t0{\t\t\t\t\t\t\t\t\t\t\t\t\t\t{\t"
        "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t0{\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t"
        "\t\t\t\t\t\t\t\tccccccccccccccccccccccccccccccccccccccccccccccccccccccc\t\t\t\t\t\t"
        "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t1MiBconcn\net_ut:TTTTTTTTT\t\t\t\t\t\t\t\t\t\t\tcc"
        "ccccccccccccccccccccccccccccccccccccccccccccccccccccSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS"
        "SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSc\t\t\t\t\t\t\t"
        "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t1MiBconcn\net_ut:TTTTTTTTTTTTT";
    cr_assert_eq(cfg_load_text(&top_schema, &c, doc, sizeof doc - 1, "t.json", &e), -1);
    cr_expect(e.line >= 1, "%d", e.line);
    cr_expect(e.msg[0] != '\0');
    cfg_free(&top_schema, &c);
}

/* An optional address (no default) left unset is written as "" by
 * cfg_to_json; that must load back as unset (found by fuzz_config: every
 * gateway config without `admin` failed the round trip, and with it
 * `hscale gateway --print-config` output and PUT /api/v1/routes). */
Test(config, unset_optional_address_round_trips)
{
    t_conf a, b;
    cfg_error e;
    load_defaults(&a);
    const char *y = "pools:\n  - name: p\n    backends:\n      - address: \"\"\n";
    cr_assert_eq(cfg_load_text(&top_schema, &a, y, strlen(y), "t.yaml", &e), 0, "%s", e.msg);
    cr_assert_eq(a.npools, 1);
    cr_expect_null(a.pools[0].backends[0].address);
    /* unset, so the validate hook still refuses a backend without one */
    cr_expect_eq(cfg_validate(&top_schema, &a, &e), -1);
    cr_expect_str_eq(e.key, "pools[0].backends[0].address");
    buf j1, j2;
    buf_init(&j1);
    buf_init(&j2);
    cfg_to_json(&top_schema, &a, &j1);
    cr_expect(strstr(buf_head(&j1), "\"address\":\"\"") != NULL);
    load_defaults(&b);
    cr_assert_eq(cfg_load_text(&top_schema, &b, buf_head(&j1), j1.len, "<json>", &e), 0,
                 "%s: %s", e.key, e.msg);
    cr_expect_null(b.pools[0].backends[0].address);
    cfg_to_json(&top_schema, &b, &j2);
    cr_expect(j1.len == j2.len && memcmp(buf_head(&j1), buf_head(&j2), j1.len) == 0);
    cfg_free(&top_schema, &a);
    cfg_free(&top_schema, &b);
    buf_free(&j1);
    buf_free(&j2);
}

Test(config, value_parsers)
{
    uint64_t v;
    char err[128];
    bool b;
    cr_expect_eq(cfg_parse_duration("250ms", &v, err, sizeof err), 0); cr_expect_eq(v, 250000u);
    cr_expect_eq(cfg_parse_duration("30", &v, err, sizeof err), 0); cr_expect_eq(v, 30000000u);
    cr_expect_eq(cfg_parse_duration("5m", &v, err, sizeof err), 0); cr_expect_eq(v, 300000000u);
    cr_expect_eq(cfg_parse_duration("2h", &v, err, sizeof err), 0); cr_expect_eq(v, 7200000000u);
    cr_expect_eq(cfg_parse_duration("40us", &v, err, sizeof err), 0); cr_expect_eq(v, 40u);
    cr_expect_eq(cfg_parse_duration("1.5s", &v, err, sizeof err), 0); cr_expect_eq(v, 1500000u);
    cr_expect_eq(cfg_parse_duration("-1s", &v, err, sizeof err), -1);
    cr_expect_eq(cfg_parse_duration("1x", &v, err, sizeof err), -1);
    cr_expect_eq(cfg_parse_duration("", &v, err, sizeof err), -1);
    cr_expect_eq(cfg_parse_duration("s", &v, err, sizeof err), -1);
    cr_expect_eq(cfg_parse_size("64KiB", &v, err, sizeof err), 0); cr_expect_eq(v, 65536u);
    cr_expect_eq(cfg_parse_size("1MB", &v, err, sizeof err), 0); cr_expect_eq(v, 1000000u);
    cr_expect_eq(cfg_parse_size("2GiB", &v, err, sizeof err), 0); cr_expect_eq(v, 2147483648u);
    cr_expect_eq(cfg_parse_size("100B", &v, err, sizeof err), 0); cr_expect_eq(v, 100u);
    cr_expect_eq(cfg_parse_size("1.5KiB", &v, err, sizeof err), 0); cr_expect_eq(v, 1536u);
    cr_expect_eq(cfg_parse_size("99999999999999999999GiB", &v, err, sizeof err), -1);
    cr_expect_eq(cfg_parse_bool("yes", &b), 0); cr_expect(b);
    cr_expect_eq(cfg_parse_bool("Off", &b), 0); cr_expect(!b);
    cr_expect_eq(cfg_parse_bool("2", &b), -1);
    char out[64];
    cfg_format_duration(1500000, out, sizeof out); cr_expect_str_eq(out, "1.5s");
    cfg_format_duration(250000, out, sizeof out); cr_expect_str_eq(out, "250ms");
    cfg_format_duration(40, out, sizeof out); cr_expect_str_eq(out, "40us");
    cfg_format_duration(300000000, out, sizeof out); cr_expect_str_eq(out, "5m");
    cfg_format_duration(90000000, out, sizeof out); cr_expect_str_eq(out, "90s");
    cfg_format_duration(0, out, sizeof out); cr_expect_str_eq(out, "0s");
    /* formatting then parsing is the identity */
    for (uint64_t us = 1; us < 100000000000ULL; us = us * 7 + 3) {
        cfg_format_duration(us, out, sizeof out);
        cr_assert_eq(cfg_parse_duration(out, &v, err, sizeof err), 0, "%s", out);
        cr_assert_eq(v, us, "%s", out);
    }
}

Test(config, doc_markdown)
{
    buf b;
    buf_init(&b);
    cfg_doc_markdown(&top_schema, "", &b);
    cr_assert_eq(buf_append(&b, "", 1), 0);
    const char *md = buf_head(&b);
    cr_expect(strstr(md, "| Key | Type | Default | Env | Description |") != NULL);
    cr_expect(strstr(md, "| `workers` | int, 1..64 | `2` | `TCFG_WORKERS` | worker threads |") != NULL, "%s", md);
    cr_expect(strstr(md, "| `mode` | enum: `safe`, `fast`, `paranoid` | `safe` |") != NULL, "%s", md);
    cr_expect(strstr(md, "### `pools[]` — pool") != NULL, "%s", md);
    cr_expect(strstr(md, "| `pools[].backends[]` |") != NULL, "%s", md);
    cr_expect(strstr(md, "| `pools[].health.interval` | duration, 1ms..1m | `2s` | — |") != NULL, "%s", md);
    cr_expect(strstr(md, "balancing \\| algorithm") != NULL, "pipes escaped");
    buf_free(&b);
}

/* --check and API GETs print a config through cfg_to_json_redacted: a
 * credential (a key named *token, *password, *secret) and a URL's password
 * never show; everything else does, and cfg_to_json (which files are
 * written with) keeps them all. */
typedef struct { char *token, *url, *plain, *unset; } t_cred;
static const cfg_field cred_fields[] = {
    { .key = "admin_token", .type = CFG_STRING, .offset = offsetof(t_cred, token), .help = "t" },
    { .key = "url", .type = CFG_STRING, .offset = offsetof(t_cred, url), .help = "u" },
    { .key = "plain", .type = CFG_STRING, .offset = offsetof(t_cred, plain), .help = "p" },
    { .key = "password", .type = CFG_STRING, .offset = offsetof(t_cred, unset), .help = "n" },
};
static const cfg_schema cred_schema = { "cred", cred_fields, 4, NULL };

Test(config, redacted_json_hides_credentials)
{
    t_cred c = { .token = "s3cr3t-token", .url = "redis://user:pa55@10.0.0.1:6379/0",
                 .plain = "http://host:80/path@x", .unset = NULL };
    buf full, red;
    buf_init(&full);
    buf_init(&red);
    cfg_to_json(&cred_schema, &c, &full);
    cfg_to_json_redacted(&cred_schema, &c, &red);
    buf_append(&full, "", 1);
    buf_append(&red, "", 1);
    cr_assert(strstr(buf_head(&full), "s3cr3t-token") && strstr(buf_head(&full), "pa55"));
    cr_assert_str_eq(buf_head(&red),
                     "{\"admin_token\":\"(redacted)\",\"url\":\"redis://user:***@10.0.0.1:6379/0\","
                     "\"plain\":\"http://host:80/path@x\",\"password\":\"\"}");
    buf_free(&full);
    buf_free(&red);
}
