/* fuzz_guard.c -- libFuzzer target for the admin APIs' request guard and
 * token check (src/http/server_guard.c, server_auth.c): the input is a
 * whole request (head and body) as a client would send it; it is parsed
 * by the server's parser, then run through http_guard_check and
 * http_ctx_authorize exactly as the server framework does before a
 * handler.
 *
 * Beyond "no crash": a refusal is one of 400/403/415/421, is answered
 * (the reply starts with that status) and only then; anything let through
 * obeys every rule: a change (POST/PUT/PATCH, a DELETE with a body) says
 * application/json, an Origin equals scheme://Host, the Host is an IP
 * literal, localhost or the allowed name, and the body nests at most the
 * cap; the token check grants admin only to the admin token and read only
 * to the read token, and its answer never holds a token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/server_int.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static char *allowed[] = { "ok.example" };
static const char *const open_paths[] = { "/health", NULL };

static bool json_type(const char *ct)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return strncasecmp(ct, "application/json", 16) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static http_ctx c;
    static buf out;
    static bool init;
    if (!init) {
        buf_init(&c.extra);
        buf_init(&out);
        init = true;
    }
    const char *in = (const char *)data;
    http_request req;
    memset(&req, 0, sizeof req);
    http_limits lim;
    http_limits_default(&lim);
    int n = http_parse_request(in, size, &req, &lim);
    if (n <= 0)
        return 0;
    http_ctx_reset(&c);
    buf_reset(&out);
    sock_addr peer;
    char e[64];
    CHECK(sock_addr_parse("127.0.0.1:1", &peer, e, sizeof e) == 0);
    c.req = &req;
    c.base = in;
    c.peer = &peer;
    c.out = &out;
    c.keep_alive = false;
    c.method_name = req.method != HTTP_OTHER ? http_method_name(req.method)
                  : http_ctx_strndup(&c, in + req.method_text.off, req.method_text.len);
    c.path = http_ctx_strndup(&c, in + req.path.off, req.path.len);
    CHECK(c.method_name && c.path);
    if (req.h.body == HTTP_BODY_LENGTH && req.h.content_length <= size - (size_t)n) {
        c.body = in + n;
        c.body_len = (size_t)req.h.content_length;
    }
    bool tls = size & 1;
    http_guard_opts g = { .enabled = true, .allowed_hosts = allowed, .nallowed_hosts = 1,
                          .open_paths = open_paths, .max_json_depth = 8 };
    int st = http_guard_check(&c, &g, tls);
    CHECK(st == 0 || st == 400 || st == 403 || st == 415 || st == 421);
    CHECK((st != 0) == c.replied);
    if (st) {
        char want[16];
        int k = snprintf(want, sizeof want, "HTTP/1.1 %d ", st);
        CHECK(out.len > (size_t)k && memcmp(buf_head(&out), want, (size_t)k) == 0);
        return 0;
    }
    http_method m = req.method;
    const char *ct = http_ctx_header(&c, "Content-Type");
    if (m == HTTP_POST || m == HTTP_PUT || m == HTTP_PATCH || (m == HTTP_DELETE && c.body_len))
        CHECK(ct && json_type(ct));
    const char *host = http_ctx_header(&c, "Host");
    const char *origin = http_ctx_header(&c, "Origin");
    if (origin) {
        size_t sl = tls ? 8 : 7;
        CHECK(host && strncasecmp(origin, tls ? "https://" : "http://", sl) == 0
              && strcasecmp(origin + sl, host) == 0);
    }
    if (host && !(strcmp(c.path, "/health") == 0 && (m == HTTP_GET || m == HTTP_HEAD)))
        CHECK(strncasecmp(host, "localhost", 9) == 0 || strncasecmp(host, "ok.example", 10) == 0
              || strspn(host, "0123456789.:[]abcdefABCDEF") == strlen(host));
    CHECK(http_json_depth(c.body, c.body_len, 8) <= 8);

    http_tokens t = { "t0k-RD-y", "t0k-ADM-x" };
    http_role need = data[0] & 1 ? HTTP_ROLE_ADMIN : HTTP_ROLE_READ;
    bool ok = http_ctx_authorize(&c, &t, need);
    const char *a = http_ctx_header(&c, "Authorization");
    CHECK(ok == !c.replied);
    if (ok) {
        CHECK(a && strncasecmp(a, "Bearer ", 7) == 0);
        CHECK(strcmp(a + 7, "t0k-ADM-x") == 0
              || (need == HTTP_ROLE_READ && strcmp(a + 7, "t0k-RD-y") == 0));
        CHECK(http_ctx_role(&c) == (strcmp(a + 7, "t0k-ADM-x") == 0 ? HTTP_ROLE_ADMIN
                                                                     : HTTP_ROLE_READ));
    } else {
        CHECK(memmem(buf_head(&out), out.len, "HTTP/1.1 40", 11) == buf_head(&out));
        CHECK(!memmem(buf_head(&out), out.len, "t0k-", 4));
    }
    return 0;
}
