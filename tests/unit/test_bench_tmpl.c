/* test_bench_tmpl.c -- request templates: parsing, bounds, rendering, and
 * the rendered wire form of scenario requests. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "bench/bench.h"

static char err[BENCH_ERRLEN];

static size_t render(const char *text, bench_rng *r, char *out)
{
    bench_tmpl t;
    cr_assert_eq(bench_tmpl_parse(&t, text, err, sizeof err), 0, "%s: %s", text, err);
    size_t n = bench_tmpl_render(&t, r, out);
    cr_assert_leq(n, bench_tmpl_max_len(&t));
    out[n] = 0;
    bench_tmpl_free(&t);
    return n;
}

Test(bench_tmpl, literal_is_static_and_verbatim)
{
    bench_tmpl t;
    cr_assert_eq(bench_tmpl_parse(&t, "/health?x=1", err, sizeof err), 0);
    cr_assert_not(t.dynamic);
    cr_assert_eq(t.max_len, 11);
    bench_tmpl_free(&t);
    bench_rng r;
    bench_rng_seed(&r, 1, 0, 1);
    char out[64];
    render("/a{{b}}c", &r, out);
    cr_assert_str_eq(out, "/a{b}c");
}

Test(bench_tmpl, rand_stays_in_range_and_covers_it)
{
    bench_rng r;
    bench_rng_seed(&r, 42, 0, 1);
    bench_tmpl t;
    cr_assert_eq(bench_tmpl_parse(&t, "/c?u={rand:1:100}&s={rand:0:20}", err, sizeof err), 0);
    cr_assert(t.dynamic);
    int seen[101] = {0};
    char out[128];
    for (int i = 0; i < 20000; i++) {
        size_t n = bench_tmpl_render(&t, &r, out);
        out[n] = 0;
        int u, s;
        cr_assert_eq(sscanf(out, "/c?u=%d&s=%d", &u, &s), 2, "%s", out);
        cr_assert(u >= 1 && u <= 100 && s >= 0 && s <= 20, "%s", out);
        seen[u]++;
    }
    for (int u = 1; u <= 100; u++)   /* uniform: about 200 each */
        cr_assert(seen[u] > 100 && seen[u] < 300, "value %d seen %d times", u, seen[u]);
    bench_tmpl_free(&t);
}

Test(bench_tmpl, negative_rand_and_bounds)
{
    bench_rng r;
    bench_rng_seed(&r, 7, 0, 1);
    char out[64];
    for (int i = 0; i < 1000; i++) {
        render("{rand:-5:-3}", &r, out);
        int v = atoi(out);
        cr_assert(v >= -5 && v <= -3, "%s", out);
    }
    render("{rand:9:9}", &r, out);
    cr_assert_str_eq(out, "9");
}

Test(bench_tmpl, seq_and_pick)
{
    bench_rng r;
    bench_rng_seed(&r, 3, 5, 2);
    char out[64];
    render("n={seq}", &r, out);
    cr_assert_str_eq(out, "n=5");
    int seen[3] = {0};
    for (int i = 0; i < 3000; i++) {
        render("{pick:alpha|b|cc}", &r, out);
        if (!strcmp(out, "alpha"))
            seen[0]++;
        else if (!strcmp(out, "b"))
            seen[1]++;
        else if (!strcmp(out, "cc"))
            seen[2]++;
        else
            cr_assert_fail("unexpected pick '%s'", out);
    }
    for (int i = 0; i < 3; i++)
        cr_assert(seen[i] > 800, "choice %d seen %d times", i, seen[i]);
    bench_tmpl t;
    cr_assert_eq(bench_tmpl_parse(&t, "{pick:alpha|b|cc}", err, sizeof err), 0);
    cr_assert_eq(t.max_len, 5);
    bench_tmpl_free(&t);
}

Test(bench_tmpl, errors_say_where_and_what)
{
    bench_tmpl t;
    cr_assert_eq(bench_tmpl_parse(&t, "/x?{nope}", err, sizeof err), -1);
    cr_assert(strstr(err, "column 4") && strstr(err, "{nope}"), "%s", err);
    cr_assert_eq(bench_tmpl_parse(&t, "/x?{rand:1}", err, sizeof err), -1);
    cr_assert(strstr(err, "rand:LO:HI"), "%s", err);
    cr_assert_eq(bench_tmpl_parse(&t, "/x?{rand:9:1}", err, sizeof err), -1);
    cr_assert(strstr(err, "LO > HI"), "%s", err);
    cr_assert_eq(bench_tmpl_parse(&t, "/x?{seq", err, sizeof err), -1);
    cr_assert(strstr(err, "never closed"), "%s", err);
    cr_assert_eq(bench_tmpl_parse(&t, "/x}", err, sizeof err), -1);
    cr_assert(strstr(err, "unmatched"), "%s", err);
}

Test(bench_scenario, single_request_wire_form)
{
    bench_scenario sc;
    char *hdrs[] = {"X-A: 1"};
    cr_assert_eq(bench_scenario_single(&sc, "POST", "/c/{seq}", hdrs, 1, "{{\"n\":{rand:5:5}}}",
                                       err, sizeof err), 0, "%s", err);
    cr_assert_eq(bench_scenario_prepare(&sc, "h:8", err, sizeof err), 0);
    cr_assert_null(sc.reqs[0].static_bytes);
    bench_rng r;
    bench_rng_seed(&r, 1, 7, 1);
    char *out = malloc(sc.reqs[0].max_len + 1);
    size_t n = bench_req_render(&sc.reqs[0], "h:8", &r, out);
    out[n] = 0;
    cr_assert_str_eq(out, "POST /c/7 HTTP/1.1\r\nHost: h:8\r\nX-A: 1\r\nContent-Length: 7\r\n\r\n{\"n\":5}");
    n = bench_req_render(&sc.reqs[0], "h:8", &r, out);   /* seq advances per request */
    out[n] = 0;
    cr_assert(strstr(out, "POST /c/8 "), "%s", out);
    free(out);
    bench_scenario_free(&sc);
}

Test(bench_scenario, static_request_is_prerendered)
{
    bench_scenario sc;
    cr_assert_eq(bench_scenario_single(&sc, "GET", "/health", NULL, 0, NULL, err, sizeof err), 0);
    cr_assert_eq(bench_scenario_prepare(&sc, "127.0.0.1:9", err, sizeof err), 0);
    cr_assert_not_null(sc.reqs[0].static_bytes);
    cr_assert_eq(sc.reqs[0].static_len, strlen("GET /health HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n"));
    cr_assert_eq(memcmp(sc.reqs[0].static_bytes, "GET /health HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
                        sc.reqs[0].static_len), 0);
    bench_scenario_free(&sc);
}

Test(bench_scenario, bad_single_inputs)
{
    bench_scenario sc;
    char *bad[] = {"NoColon"};
    cr_assert_eq(bench_scenario_single(&sc, "GET", "/", bad, 1, NULL, err, sizeof err), -1);
    cr_assert(strstr(err, "Name: value"), "%s", err);
    char *cl[] = {"Content-Length: 3"};
    cr_assert_eq(bench_scenario_single(&sc, "GET", "/", cl, 1, NULL, err, sizeof err), -1);
    cr_assert_eq(bench_scenario_single(&sc, "GET", "nopath", NULL, 0, NULL, err, sizeof err), -1);
    cr_assert(strstr(err, "bad path"), "%s", err);
    cr_assert_eq(bench_scenario_single(&sc, "G T", "/", NULL, 0, NULL, err, sizeof err), -1);
}

static const char *write_tmp(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/test_bench_scXXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

Test(bench_scenario, yaml_surgicase_locustfile)
{
    const char *p = write_tmp(
        "think: 10ms-50ms\n"
        "headers: {Accept: application/json}\n"
        "requests:\n"
        "  - name: health_check\n"
        "    weight: 3\n"
        "    path: /health\n"
        "  - name: get_cases\n"
        "    weight: 2\n"
        "    path: /casefilter?user_id={rand:1:100}&status=10\n");
    bench_scenario sc;
    cr_assert_eq(bench_scenario_load(&sc, p, err, sizeof err), 0, "%s", err);
    unlink(p);
    cr_assert_eq(sc.nreqs, 2);
    cr_assert_eq(sc.think_min_us, 10000);
    cr_assert_eq(sc.think_max_us, 50000);
    cr_assert_str_eq(sc.reqs[1].name, "get_cases");
    cr_assert_eq(sc.reqs[0].nheaders, 1);
    cr_assert_eq(bench_scenario_prepare(&sc, "h", err, sizeof err), 0);
    cr_assert_eq(sc.total_weight, 5);
    bench_rng r;
    bench_rng_seed(&r, 9, 0, 1);
    int n0 = 0;
    for (int i = 0; i < 10000; i++)
        n0 += bench_scenario_pick(&sc, &r) == 0;
    cr_assert(n0 > 5700 && n0 < 6300, "weight 3 of 5 picked %d/10000", n0);
    cr_assert_not_null(sc.reqs[0].static_bytes);
    cr_assert(strstr(sc.reqs[0].static_bytes, "Accept: application/json\r\n"));
    bench_scenario_free(&sc);
}

Test(bench_scenario, yaml_errors_name_the_field)
{
    bench_scenario sc;
    const char *p = write_tmp("requests:\n  - path: /a\n    weight: zero\n");
    cr_assert_eq(bench_scenario_load(&sc, p, err, sizeof err), -1);
    cr_assert(strstr(err, "/requests/0/weight") && strstr(err, "whole number"), "%s", err);
    unlink(p);
    p = write_tmp("requests:\n  - name: a\n    pth: /a\n");
    cr_assert_eq(bench_scenario_load(&sc, p, err, sizeof err), -1);
    cr_assert(strstr(err, "unknown key 'pth'"), "%s", err);
    unlink(p);
    p = write_tmp("requests: []\n");
    cr_assert_eq(bench_scenario_load(&sc, p, err, sizeof err), -1);
    cr_assert(strstr(err, "non-empty"), "%s", err);
    unlink(p);
    p = write_tmp("requests:\n  - path: /a?{bad}\n");
    cr_assert_eq(bench_scenario_load(&sc, p, err, sizeof err), -1);
    cr_assert(strstr(err, "{bad}"), "%s", err);
    unlink(p);
    cr_assert_eq(bench_scenario_load(&sc, "/nonexistent/x.yaml", err, sizeof err), -1);
    cr_assert(strstr(err, "No such file"), "%s", err);
}

Test(bench_scenario, new_conn_says_connection_close_unless_the_request_does)
{
    bench_scenario sc;
    cr_assert_eq(bench_scenario_single(&sc, "GET", "/health", NULL, 0, NULL, err, sizeof err), 0);
    sc.close_each = true;
    cr_assert_eq(bench_scenario_prepare(&sc, "h", err, sizeof err), 0);
    const char *want = "GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    cr_assert_eq(sc.reqs[0].static_len, strlen(want));
    cr_assert_eq(memcmp(sc.reqs[0].static_bytes, want, strlen(want)), 0);
    cr_assert_leq(sc.reqs[0].static_len, sc.reqs[0].max_len);
    bench_scenario_free(&sc);

    char *hdrs[] = {"Connection: keep-alive"};   /* the user's own header wins */
    cr_assert_eq(bench_scenario_single(&sc, "GET", "/{seq}", hdrs, 1, NULL, err, sizeof err), 0);
    sc.close_each = true;
    cr_assert_eq(bench_scenario_prepare(&sc, "h", err, sizeof err), 0);
    bench_rng r;
    bench_rng_seed(&r, 1, 3, 1);
    char *out = malloc(sc.reqs[0].max_len + 1);
    size_t n = bench_req_render(&sc.reqs[0], "h", &r, out);
    out[n] = 0;
    cr_assert_str_eq(out, "GET /3 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n");
    free(out);
    bench_scenario_free(&sc);
}
