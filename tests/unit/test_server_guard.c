/* test_server_guard.c -- the admin-API protections of the server
 * framework against a live server: the cross-site and rebinding guard
 * (Host, Origin, Content-Type, JSON depth), the two roles, the slowdown
 * after wrong tokens, the audit ring and request ids, token files and the
 * loopback rule for listeners. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/client.h"
#include "http/server.h"

static const http_tokens toks = { "rd", "adm" };

static void h_read(http_ctx *c, void *arg)
{
    if (http_ctx_authorize(c, &toks, HTTP_ROLE_READ))
        http_reply_json(c, 200, "{}", 2);
}

static void h_change(http_ctx *c, void *arg)
{
    if (!http_ctx_authorize(c, &toks, HTTP_ROLE_ADMIN))
        return;
    const char *what = http_ctx_header(c, "X-What");
    http_audit(c, NULL, "changed %s", what ? what : "x");
    http_reply_json(c, 200, "{}", 2);
}

static void h_audit(http_ctx *c, void *arg)
{
    buf b;
    buf_init(&b);
    http_server_audit_json(http_ctx_server(c), &b);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

static http_router *router;
static http_server *srv;
static int port;
static char *allowed[] = { "ctl.example" };
static const char *const open_paths[] = { "/health", NULL };

static void start(void)
{
    router = http_router_new();
    http_route(router, "GET", "/health", h_read, NULL);
    http_route(router, "GET", "/read", h_read, NULL);
    http_route(router, "POST", "/change", h_change, NULL);
    http_route(router, "DELETE", "/change", h_change, NULL);
    http_route(router, "GET", "/audit", h_audit, NULL);
    http_server_opts o;
    memset(&o, 0, sizeof o);
    o.name = "guarded";
    char err[256];
    cr_assert_eq(sock_addr_parse("127.0.0.1:0", &o.listen, err, sizeof err), 0, "%s", err);
    o.workers = 1;
    o.router = router;
    o.audit_ring = 2;
    o.guard = (http_guard_opts){ .enabled = true, .allowed_hosts = allowed, .nallowed_hosts = 1,
                                 .open_paths = open_paths, .max_json_depth = 4,
                                 .hosts_setting = "test.allowed_hosts" };
    srv = http_server_new(&o, err, sizeof err);
    cr_assert_not_null(srv, "%s", err);
    cr_assert_eq(http_server_start(srv, err, sizeof err), 0, "%s", err);
    port = http_server_port(srv);
}

static void stop(void)
{
    http_server_free(srv);
    http_router_free(router);
    srv = NULL;
}

/* Status of one request; the raw extra headers as given. */
static int req(const char *method, const char *path, const char *hdrs, const char *body,
               http_result *keep)
{
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    http_result r;
    http_result_init(&r);
    int rc = http_fetch(method, url, hdrs, body, body ? strlen(body) : 0, 3000, &r, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    int st = r.status;
    if (keep)
        *keep = r;
    else
        http_result_free(&r);
    return st;
}

#define JSON "Content-Type: application/json\r\n"
#define ADM  "Authorization: Bearer adm\r\n"
#define RD   "Authorization: Bearer rd\r\n"

TestSuite(guard, .init = start, .fini = stop, .timeout = 20);

Test(guard, json_depth)
{
    cr_assert_eq(http_json_depth("{}", 2, 10), 1);
    cr_assert_eq(http_json_depth("{\"a\":[1,{\"b\":[]}]}", 17, 10), 4);
    cr_assert_eq(http_json_depth("\"[[[[\"", 6, 10), 0);          /* inside a string */
    cr_assert_eq(http_json_depth("[\"\\\"[[[\"]", 9, 10), 1);      /* escaped quote */
    cr_assert_eq(http_json_depth("[[[[[[[[", 8, 3), 4);            /* stops past limit */
    cr_assert_eq(http_json_depth("]]]", 3, 3), 0);
}

Test(guard, content_type_origin_host_depth)
{
    cr_assert_eq(req("POST", "/change", ADM "Content-Type: text/plain\r\n", "{}", NULL), 415);
    cr_assert_eq(req("POST", "/change", ADM, "{}", NULL), 415);
    cr_assert_eq(req("POST", "/change", ADM "Content-Type: application/x-www-form-urlencoded\r\n",
                     "a=1", NULL), 415);
    cr_assert_eq(req("POST", "/change", ADM "Content-Type: application/jsonx\r\n", "{}", NULL), 415);
    cr_assert_eq(req("DELETE", "/change", ADM, NULL, NULL), 200);      /* no body: no type */
    cr_assert_eq(req("DELETE", "/change", ADM "Content-Type: text/plain\r\n", "x", NULL), 415);
    cr_assert_eq(req("POST", "/change", ADM "Content-Type: Application/JSON; charset=utf-8\r\n",
                     "{}", NULL), 200);
    cr_assert_eq(req("POST", "/change", ADM JSON "Origin: http://evil.example\r\n", "{}", NULL), 403);
    cr_assert_eq(req("POST", "/change", ADM JSON "Origin: null\r\n", "{}", NULL), 403);
    char o[128];
    snprintf(o, sizeof o, ADM JSON "Origin: http://127.0.0.1:%d\r\n", port);
    cr_assert_eq(req("POST", "/change", o, "{}", NULL), 200);
    snprintf(o, sizeof o, ADM JSON "Origin: https://127.0.0.1:%d\r\n", port);
    cr_assert_eq(req("POST", "/change", o, "{}", NULL), 403);            /* scheme differs */
    cr_assert_eq(req("POST", "/change", ADM JSON, "[[[[[1]]]]]", NULL), 400);
    cr_assert_eq(req("POST", "/change", ADM JSON, "[[[[1]]]]", NULL), 200);
}

/* http_fetch always sends its own Host; these go over a raw socket. */
static int raw_status(const char *head)
{
    char url[64], err[256];
    snprintf(url, sizeof url, "127.0.0.1:%d", port);
    sock_addr a;
    cr_assert_eq(sock_addr_parse(url, &a, err, sizeof err), 0);
    int fd = sock_connect_blocking(&a, 2000);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, head, strlen(head)), (ssize_t)strlen(head));
    char b[2048];
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    cr_assert_gt(n, 12);
    b[n] = '\0';
    return atoi(b + 9);
}

Test(guard, host_names)
{
    cr_assert_eq(raw_status("GET /read HTTP/1.1\r\nHost: evil.example\r\n" RD "\r\n"), 421);
    cr_assert_eq(raw_status("GET /read HTTP/1.1\r\nHost: evil.example:80\r\n" RD "\r\n"), 421);
    cr_assert_eq(raw_status("GET /read HTTP/1.1\r\nHost: 127.0.0.1.evil.example\r\n" RD "\r\n"), 421);
    cr_assert_eq(raw_status("GET /read HTTP/1.1\r\nHost: localhost:1\r\n" RD "\r\n"), 200);
    cr_assert_eq(raw_status("GET /read HTTP/1.1\r\nHost: LOCALHOST.\r\n" RD "\r\n"), 200);
    cr_assert_eq(raw_status("GET /read HTTP/1.1\r\nHost: [::1]:8\r\n" RD "\r\n"), 200);
    cr_assert_eq(raw_status("GET /read HTTP/1.1\r\nHost: 10.1.2.3\r\n" RD "\r\n"), 200);
    cr_assert_eq(raw_status("GET /read HTTP/1.1\r\nHost: Ctl.Example:8081\r\n" RD "\r\n"), 200);
    cr_assert_eq(raw_status("GET /health HTTP/1.1\r\nHost: probe.internal\r\n" RD "\r\n"), 200);
    /* not host[:port]: refused whatever the name */
    cr_assert_eq(raw_status("GET /read HTTP/1.1\r\nHost: 127.0.0.1:80x\r\n" RD "\r\n"), 421);
    cr_assert_eq(raw_status("GET /read HTTP/1.1\r\nHost: [::1\r\n" RD "\r\n"), 421);
    cr_assert_eq(raw_status("GET /read HTTP/1.1\r\nHost: 127.0.0.1:\r\n" RD "\r\n"), 421);
}

Test(guard, roles_and_audit)
{
    cr_assert_eq(req("GET", "/read", NULL, NULL, NULL), 401);
    cr_assert_eq(req("GET", "/read", RD, NULL, NULL), 200);
    cr_assert_eq(req("GET", "/read", ADM, NULL, NULL), 200);
    cr_assert_eq(req("GET", "/read", "Authorization: Bearer rdx\r\n", NULL, NULL), 401);
    cr_assert_eq(req("GET", "/read", "Authorization: Bearer r\r\n", NULL, NULL), 401);
    cr_assert_eq(req("POST", "/change", RD JSON, "{}", NULL), 403);
    cr_assert_eq(req("POST", "/change", JSON, "{}", NULL), 401);
    http_result r;
    cr_assert_eq(req("POST", "/change", ADM JSON "X-Request-Id: abc-1\r\n", "{}", &r), 200);
    char id[80];
    cr_assert(http_result_header(&r, "X-Request-Id", id, sizeof id));
    cr_assert_str_eq(id, "abc-1");
    http_result_free(&r);
    /* an id that could break a log line is replaced by one of ours */
    cr_assert_eq(req("POST", "/change", ADM JSON "X-Request-Id: a b\r\n", "{}", &r), 200);
    cr_assert(http_result_header(&r, "X-Request-Id", id, sizeof id));
    cr_assert_not_null(strstr(id, "guarded-"), "%s", id);
    http_result_free(&r);
    cr_assert_eq(req("POST", "/change", ADM JSON "X-What: a\tb\r\n", "{}", NULL), 200);
    /* the ring keeps the newest two, oldest first */
    cr_assert_eq(req("GET", "/audit", NULL, NULL, &r), 200);
    buf_append(&r.body, "", 1);   /* NUL-terminated for strstr */
    const char *b = buf_head(&r.body);
    cr_assert_null(strstr(b, "abc-1"), "%.*s", (int)r.body.len, b);
    cr_assert_not_null(strstr(b, "\"role\":\"admin\""));
    cr_assert_not_null(strstr(b, "\"peer\":\"127.0.0.1:"));
    cr_assert_null(strstr(b, "adm\""));      /* never the token */
    cr_assert_not_null(strstr(b, "changed a?b"), "%s", b);   /* control characters replaced */
    http_result_free(&r);
}

Test(guard, wrong_tokens_slow_down)
{
    for (int i = 0; i < 5; i++)
        cr_assert_eq(req("GET", "/read", "Authorization: Bearer guess\r\n", NULL, NULL), 401);
    http_result r;
    cr_assert_eq(req("GET", "/read", RD, NULL, &r), 429);
    char ra[16];
    cr_assert(http_result_header(&r, "Retry-After", ra, sizeof ra));
    cr_assert_eq(atoi(ra), 1);
    http_result_free(&r);
    cr_assert_eq(req("GET", "/read", NULL, NULL, NULL), 429);
}

Test(guard, missing_tokens_do_not_count)
{
    for (int i = 0; i < 10; i++)
        cr_assert_eq(req("GET", "/read", NULL, NULL, NULL), 401);
    cr_assert_eq(req("GET", "/read", RD, NULL, NULL), 200);
}

Test(tokens, file_and_listen_rules)
{
    char path[] = "/tmp/hscale-token-XXXXXX", err[300];
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "  s3cret \nignored\n", 18), 18);
    close(fd);
    char *t = http_token_read_file(path, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_assert_str_eq(t, "s3cret");
    free(t);
    chmod(path, 0644);
    cr_assert_null(http_token_read_file(path, err, sizeof err));
    cr_assert_not_null(strstr(err, "chmod 600"), "%s", err);
    chmod(path, 0600);
    fd = open(path, O_WRONLY | O_TRUNC);
    cr_assert_eq(write(fd, "\n", 1), 1);
    close(fd);
    cr_assert_null(http_token_read_file(path, err, sizeof err));
    cr_assert_not_null(strstr(err, "empty"), "%s", err);
    unlink(path);
    cr_assert_null(http_token_read_file(path, err, sizeof err));

    sock_addr a;
    cr_assert_eq(sock_addr_parse("0.0.0.0:1", &a, err, sizeof err), 0);
    cr_assert_eq(http_listen_check(&a, false, "x.listen", "x.token", err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "x.token"), "%s", err);
    cr_assert_eq(http_listen_check(&a, true, "x.listen", "x.token", err, sizeof err), 0);
    cr_assert_eq(sock_addr_parse("127.0.0.9:1", &a, err, sizeof err), 0);
    cr_assert_eq(http_listen_check(&a, false, "x.listen", "x.token", err, sizeof err), 0);
    cr_assert_eq(sock_addr_parse("[::1]:1", &a, err, sizeof err), 0);
    cr_assert(http_addr_is_loopback(&a));
    cr_assert_eq(sock_addr_parse("[::]:1", &a, err, sizeof err), 0);
    cr_assert_not(http_addr_is_loopback(&a));
}
