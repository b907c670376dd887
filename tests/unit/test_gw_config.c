/* test_gw_config.c -- the gateway: configuration section (defaults from the
 * seeds, cross-field errors naming the key) and `hscale gateway` flags. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "gateway/gateway.h"

static int load(gw_config *c, const char *doc, cfg_error *err)
{
    memset(c, 0, sizeof *c);
    memset(err, 0, sizeof *err);
    if (cfg_defaults(&gw_config_schema, c, err) < 0)
        return -1;
    if (cfg_load_text(&gw_config_schema, c, doc, strlen(doc), "t.yaml", err) < 0)
        return -1;
    return cfg_validate(&gw_config_schema, c, err);
}

Test(gw_config, full_document_and_seed_defaults)
{
    const char *doc =
        "listen: 127.0.0.1:9080\n"
        "workers: 2\n"
        "rate_limits:\n"
        "  - {name: per_ip, limit: 100, period: 1m}\n"
        "pools:\n"
        "  - name: rw\n"
        "    algorithm: least_conn\n"
        "    backends: [{address: '127.0.0.1:9001', weight: 3}, {address: '127.0.0.1:9002', backup: true}]\n"
        "  - name: ro\n"
        "    algorithm: hash\n"
        "    hash_on: query\n"
        "    hash_key: user_id\n"
        "    sticky_cookie: hs\n"
        "    health: {interval: 2s, timeout: 500ms}\n"
        "    backends: [{address: '127.0.0.1:9003'}]\n"
        "routes:\n"
        "  - prefix: /api\n"
        "    read_pool: ro\n"
        "    write_pool: rw\n"
        "    rate_limit: per_ip\n"
        "    security_headers: true\n"
        "  - prefix: /\n"
        "    split: [{pool: rw, weight: 90}, {pool: ro, weight: 10}]\n";
    gw_config c;
    cfg_error err;
    int rc = load(&c, doc, &err);
    char msg[512];
    cfg_error_format(&err, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s", msg);
    cr_assert_eq(c.workers, 2);
    cr_assert_eq(c.npools, 2);
    cr_assert_eq(c.pools[0].algo, GW_CFG_ALGO_LEAST_CONN);
    cr_assert_eq(c.pools[0].backends[0].weight, 3);
    cr_assert(c.pools[0].backends[1].backup);
    /* SurgiCase seed: 30 s / 5 s / rise 2 / fall 3 */
    cr_assert_eq(c.pools[0].health.interval_us, 30000000ULL);
    cr_assert_eq(c.pools[0].health.timeout_us, 5000000ULL);
    cr_assert_eq(c.pools[0].health.rise, 2);
    cr_assert_eq(c.pools[0].health.fall, 3);
    cr_assert_str_eq(c.pools[0].health.path, "/health/ready");
    cr_assert_eq(c.pools[1].health.interval_us, 2000000ULL);
    cr_assert_eq(c.pools[1].sticky_max_age_us, 86400ULL * 1000000);
    cr_assert_eq(c.rate_limits[0].period_us, 60000000ULL);
    cr_assert_eq(c.routes[1].nsplit, 2);
    cr_assert_eq(gw_config_find_pool(&c, "ro"), 1);
    cr_assert_eq(gw_config_find_pool(&c, "nope"), -1);
    cfg_free(&gw_config_schema, &c);
}


static void expect_error(const char *doc, const char *key_part, const char *msg_part)
{
    gw_config c;
    cfg_error err;
    cr_assert_eq(load(&c, doc, &err), -1, "accepted: %s", doc);
    char msg[512];
    cfg_error_format(&err, msg, sizeof msg);
    cr_assert(strstr(msg, key_part), "want key '%s' in: %s", key_part, msg);
    cr_assert(strstr(msg, msg_part), "want '%s' in: %s", msg_part, msg);
    cfg_free(&gw_config_schema, &c);
}

Test(gw_config, errors_name_the_field)
{
    expect_error("pools: [{name: a, backends: [{address: '127.0.0.1:1'}]}]\n"
                 "routes: [{prefix: /, pool: b}]\n", "routes[0].pool", "no pool named 'b'");
    expect_error("pools: [{name: a}, {name: a}]\n", "pools[1].name", "duplicate");
    expect_error("pools: [{name: a, backends: [{address: '127.0.0.1:1', weight: 0}]}]\n",
                 "weight", "");
    expect_error("pools: [{name: a, algorithm: hash}]\n", "hash_key", "hash_on");
    expect_error("pools: [{name: a}]\nroutes: [{prefix: /, read_pool: a}]\n",
                 "routes[0].write_pool", "both");
    expect_error("pools: [{name: a}]\nroutes: [{prefix: x, pool: a}]\n",
                 "routes[0].prefix", "'/'");
    expect_error("pools: [{name: a}]\nroutes: [{prefix: /, pool: a, rate_limit: z}]\n",
                 "routes[0].rate_limit", "'z'");
    expect_error("pools: [{name: a, health: {interval: 1s, timeout: 2s}}]\n", "timeout", "interval");
    expect_error("pools: [{name: a, algorithm: fastest}]\n", "algorithm", "");
    expect_error("pools: [{name: a, tls_ca_file: /x.pem}]\n", "tls_ca_file", "set tls: true");
    expect_error("pools: [{name: a, tls: true, tls_server_name: 'a b'}]\n", "tls_server_name",
                 "host name");
}

Test(gw_config, from_backends)
{
    gw_config c;
    cfg_error err;
    memset(&c, 0, sizeof c);
    memset(&err, 0, sizeof err);
    cr_assert_eq(cfg_defaults(&gw_config_schema, &c, &err), 0);
    char *b[2] = { "127.0.0.1:9001", "127.0.0.1:9002" };
    cr_assert_eq(gw_config_from_backends(&c, b, 2, &err), 0, "%s", err.msg);
    cr_assert_eq(c.npools, 1);
    cr_assert_str_eq(c.pools[0].name, "default");
    cr_assert_eq(c.pools[0].nbackends, 2);
    cr_assert_eq(c.nroutes, 1);
    cr_assert_str_eq(c.routes[0].pool, "default");
    char *bad[1] = { "127.0.0.1" };
    cr_assert_eq(gw_config_from_backends(&c, bad, 1, &err), -1);
    cr_assert_str_eq(err.key, "--backend");
    cfg_free(&gw_config_schema, &c);
}

static int run(int n, char **argv)
{
    return cmd_gateway(n, argv);
}

Test(gw_cmd, unknown_flag_exits_2, .init = cr_redirect_stderr)
{
    char *a[] = { "gateway", "--bogus" };
    cr_assert_eq(run(2, a), 2);
    fflush(stderr);
    cr_assert_stderr_neq_str("");
}

Test(gw_cmd, missing_value_exits_2, .init = cr_redirect_stderr)
{
    char *a[] = { "gateway", "--backend" };
    cr_assert_eq(run(2, a), 2);
}

Test(gw_cmd, bad_backend_exits_2, .init = cr_redirect_stderr)
{
    char *a[] = { "gateway", "--backend", "nohost" };
    cr_assert_eq(run(3, a), 2);
}

Test(gw_cmd, no_backends_exits_2, .init = cr_redirect_stderr)
{
    char *a[] = { "gateway", "--listen", "127.0.0.1:0" };
    cr_assert_eq(run(3, a), 2);
}

Test(gw_cmd, help_exits_0, .init = cr_redirect_stdout)
{
    char *a[] = { "gateway", "--help" };
    cr_assert_eq(run(2, a), 0);
}

Test(gw_cmd, check_prints_effective_config, .init = cr_redirect_stdout)
{
    char *a[] = { "gateway", "--listen=127.0.0.1:7000", "--backend", "127.0.0.1:9001",
                  "--backend", "127.0.0.1:9002", "--workers", "3", "--check" };
    cr_assert_eq(run(9, a), 0);
    fflush(stdout);
    FILE *f = cr_get_redirected_stdout();
    char out[8192] = { 0 };
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    cr_assert(strstr(out, "127.0.0.1:7000"), "%s", out);
    cr_assert(strstr(out, "127.0.0.1:9002"), "%s", out);
    cr_assert(strstr(out, "\"workers\":3") || strstr(out, "\"workers\": 3"), "%s", out);
}

Test(gw_cmd, config_file_and_bad_workers, .init = cr_redirect_stderr)
{
    char path[] = "/tmp/gw_cfg_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char *doc = "gateway:\n  pools: [{name: a, backends: [{address: '127.0.0.1:9001'}]}]\n"
                      "  routes: [{prefix: /, pool: a}]\n";
    cr_assert_eq(write(fd, doc, strlen(doc)), (ssize_t)strlen(doc));
    close(fd);
    char *a[] = { "gateway", "-c", path, "--workers", "x", "--check" };
    cr_assert_eq(run(6, a), 2);
    char *b[] = { "gateway", "-c", path, "--check" };
    cr_assert_eq(run(4, b), 0);
    char *c[] = { "gateway", "-c", path, "--listen", "nohost", "--check" };
    cr_assert_eq(run(6, c), 2);
    unlink(path);
}

Test(gw_config, resilience_defaults)
{
    gw_config c;
    cfg_error err;
    cr_assert_eq(load(&c, "pools: [{name: p, backends: [{address: '127.0.0.1:9001'}]}]\n"
                          "routes: [{prefix: /, pool: p}]\n", &err), 0, "%s", err.msg);
    cr_assert_eq(c.pools[0].algo, GW_CFG_ALGO_LEAST_REQUEST, "least_request is the default");
    cr_assert_eq(c.try_timeout_factor, 4);
    cr_assert_eq(c.try_timeout_min_us, 250000ULL);
    cr_assert_eq(c.slow_eject_factor, 8);
    cr_assert_eq(c.try_timeout_us, 15000000ULL);
    cr_assert_null(c.state_file);
    cfg_free(&gw_config_schema, &c);
    cr_assert_eq(load(&c, "try_timeout_factor: 0\nslow_eject_factor: 0\nstate_file: /tmp/x\n"
                          "pools: [{name: p, algorithm: round_robin}]\n", &err), 0, "%s", err.msg);
    cr_assert_eq(c.pools[0].algo, GW_CFG_ALGO_ROUND_ROBIN);
    cr_assert_eq(c.try_timeout_factor, 0);
    cr_assert_str_eq(c.state_file, "/tmp/x");
    cfg_free(&gw_config_schema, &c);
    expect_error("try_timeout_factor: -1\n", "try_timeout_factor", "");
    expect_error("try_timeout_min: soon\n", "try_timeout_min", "");
}

Test(gw_config, cache_keys_defaults_and_errors)
{
    const char *doc =
        "cache_size: 8MiB\n"
        "pools: [{name: p, backends: [{address: '127.0.0.1:9001'}]}]\n"
        "routes:\n"
        "  - prefix: /\n"
        "    pool: p\n"
        "    cache:\n"
        "      enabled: true\n"
        "      ttl: [{match: '*.js', ttl: 24h}, {match: /static/}]\n"
        "      stale_if_error: 5m\n";
    gw_config c;
    cfg_error err;
    char msg[512];
    int rc = load(&c, doc, &err);
    cfg_error_format(&err, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s", msg);
    cr_assert_eq(c.cache_size, 8u << 20);
    cr_assert_eq(c.cache_max_object, 1u << 20);
    const gw_route_cache_cfg *rc0 = &c.routes[0].cache;
    cr_assert(rc0->enabled);
    cr_assert_eq(rc0->nttl, 2);
    cr_assert_eq(rc0->ttl[0].ttl_us, 86400ull * 1000000u);
    cr_assert_eq(rc0->ttl[1].ttl_us, 60ull * 1000000u);       /* default TTL */
    cr_assert_eq(rc0->sie_us, 300ull * 1000000u);
    cr_assert_eq(rc0->swr_us, 0);
    cr_assert_eq(rc0->lock_timeout_us, 5ull * 1000000u);
    cfg_free(&gw_config_schema, &c);

    rc = load(&c, "routes: [{prefix: /, pool: p, cache: {ttl: [{ttl: 1s}]}}]\n"
                  "pools: [{name: p, backends: [{address: '127.0.0.1:9001'}]}]\n", &err);
    cfg_error_format(&err, msg, sizeof msg);
    cr_assert_eq(rc, -1);
    cr_assert(strstr(msg, "routes[0].cache.ttl[0].match"), "%s", msg);
    cfg_free(&gw_config_schema, &c);

    rc = load(&c, "cache_size: 1MiB\ncache_max_object: 2MiB\n", &err);
    cfg_error_format(&err, msg, sizeof msg);
    cr_assert_eq(rc, -1);
    cr_assert(strstr(msg, "cache_max_object"), "%s", msg);
    cfg_free(&gw_config_schema, &c);

    rc = load(&c, "routes: [{prefix: /, pool: p, cache: {lock_timeout: 0s}}]\n"
                  "pools: [{name: p, backends: [{address: '127.0.0.1:9001'}]}]\n", &err);
    cfg_error_format(&err, msg, sizeof msg);
    cr_assert_eq(rc, -1);
    cr_assert(strstr(msg, "lock_timeout"), "%s", msg);
    cfg_free(&gw_config_schema, &c);
}

/* TLS keys: defaults, and every cross-field refusal names its key. */
Test(gw_config, tls_keys_defaults_and_refusals)
{
    static const char pools[] = "pools: [{name: p, backends: [{address: '127.0.0.1:9001'}]}]\n"
                                "routes: [{prefix: /, pool: p, hsts_max_age: 8760h}]\n";
    char doc[1024];
    gw_config c;
    cfg_error err;
    char msg[512];
    snprintf(doc, sizeof doc, "tls_listen: 127.0.0.1:8443\ntls_cert: c.pem\ntls_key: k.pem\n"
             "redirect_listen: 127.0.0.1:8080\nlisten: 127.0.0.1:8081\n%s", pools);
    int rc = load(&c, doc, &err);
    cfg_error_format(&err, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s", msg);
    cr_assert_eq(c.tls_min_version, GW_CFG_TLS_12);
    cr_assert_eq(c.tls_max_version, GW_CFG_TLS_13);
    cr_assert(c.tls_tickets && c.tls_ktls && !c.tls_only);
    cr_assert_eq(c.tls_ticket_rotate_us, 3600ull * 1000000);
    cr_assert_eq(c.redirect_status, 301);
    cr_assert(strstr(c.tls_ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256") && !strstr(c.tls_ciphers, "CBC"));
    cr_assert_eq(c.routes[0].hsts_max_age_us, 8760ull * 3600 * 1000000);
    cfg_free(&gw_config_schema, &c);

    static const struct { const char *doc, *key, *says; } bad[] = {
        { "tls_listen: 127.0.0.1:8443\ntls_key: k.pem\n", "tls_cert", "needs tls_cert and tls_key" },
        { "tls_listen: 127.0.0.1:8443\ntls_cert: c.pem\n", "tls_key", "needs tls_cert and tls_key" },
        { "redirect_listen: 127.0.0.1:8080\n", "redirect_listen", "need tls_listen" },
        { "tls_only: true\n", "tls_only", "needs tls_listen" },
        { "redirect_status: 302\n", "redirect_status", "expected 301 or 308, got 302" },
        { "tls_min_version: '1.3'\ntls_max_version: '1.2'\n", "tls_max_version", "at least tls_min_version" },
        { "tls_min_version: '1.1'\n", "tls_min_version", "1.1" },
        { "tls_listen: 127.0.0.1:8443\ntls_cert: c.pem\ntls_key: k.pem\ntls_certs: [{cert: r.pem}]\n",
          "tls_certs[0].key", "expected a PEM file" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(doc, sizeof doc, "%s%s", bad[i].doc, pools);
        rc = load(&c, doc, &err);
        cfg_error_format(&err, msg, sizeof msg);
        cr_assert_eq(rc, -1, "case %zu accepted", i);
        cr_assert(strstr(err.key, bad[i].key), "case %zu: key '%s' (%s)", i, err.key, msg);
        cr_assert(strstr(msg, bad[i].says), "case %zu: %s", i, msg);
        cfg_free(&gw_config_schema, &c);
    }
}
