/* test_buf.c -- buffer growth, consume/compact, printf, fd io, and the
 * log record formats (plain and JSON escaping). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

Test(buf, append_grows_geometrically_and_keeps_bytes)
{
    buf b;
    buf_init(&b);
    cr_assert_null(b.data);
    int reallocs = 0;
    size_t last_cap = 0;
    for (int i = 0; i < 100000; i++) {
        char c = (char)('a' + i % 26);
        cr_assert_eq(buf_append(&b, &c, 1), 0);
        if (b.cap != last_cap) {
            reallocs++;
            last_cap = b.cap;
        }
    }
    cr_assert_eq(b.len, 100000);
    cr_assert_leq(reallocs, 20, "growth is not geometric: %d reallocs", reallocs);
    for (int i = 0; i < 100000; i++)
        cr_assert_eq(b.data[i], (char)('a' + i % 26));
    buf_free(&b);
    cr_assert_null(b.data);
    cr_assert_eq(b.cap, 0);
}

Test(buf, reserve_refuses_overflow)
{
    buf b;
    buf_init(&b);
    cr_assert_eq(buf_append_str(&b, "abc"), 0);
    errno = 0;
    cr_assert_eq(buf_reserve(&b, SIZE_MAX), -1);
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(buf_reserve(&b, SIZE_MAX - 2), -1);
    cr_assert_eq(b.len, 3);
    cr_assert_eq(memcmp(buf_head(&b), "abc", 3), 0);
    buf_free(&b);
}

Test(buf, consume_and_compact)
{
    buf b;
    buf_init(&b);
    buf_append_str(&b, "hello world");
    size_t cap = b.cap;
    char *head_before = buf_head(&b) + 6;
    buf_consume(&b, 6);
    cr_assert_eq(b.len, 5);
    cr_assert_eq(buf_head(&b), head_before, "consume must not move bytes");
    cr_assert_eq(memcmp(buf_head(&b), "world", 5), 0);
    /* Reserving what only fits once the head is reclaimed compacts
     * instead of reallocating. */
    cr_assert_eq(buf_reserve(&b, cap - 5), 0);
    cr_assert_eq(b.cap, cap);
    cr_assert_eq(b.off, 0);
    cr_assert_eq(memcmp(buf_head(&b), "world", 5), 0);
    buf_consume(&b, 2);
    buf_compact(&b);
    cr_assert_eq(b.off, 0);
    cr_assert_eq(memcmp(b.data, "rld", 3), 0);
    /* Consuming everything rewinds. */
    buf_consume(&b, 100);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.off, 0);
    buf_append_str(&b, "x");
    buf_reset(&b);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.cap, cap);
    buf_free(&b);
}

Test(buf, printf_fits_and_grows)
{
    buf b;
    buf_init(&b);
    cr_assert_eq(buf_printf(&b, "%d-%s", 42, "x"), 0);
    cr_assert_eq(b.len, 4);
    cr_assert_eq(memcmp(buf_head(&b), "42-x", 4), 0);
    char big[5000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_eq(buf_printf(&b, "[%s]", big), 0);
    cr_assert_eq(b.len, 4 + 5001);
    cr_assert_eq(buf_head(&b)[4], '[');
    cr_assert_eq(buf_head(&b)[4 + 5000], ']');
    cr_assert_eq(buf_head(&b)[4 + 4999], 'z');
    /* Exactly filling the room must still work. */
    buf_reset(&b);
    size_t room = buf_room(&b);
    char *fill = malloc(room + 1);
    memset(fill, 'q', room);
    fill[room] = '\0';
    cr_assert_eq(buf_printf(&b, "%s", fill), 0);
    cr_assert_eq(b.len, room);
    cr_assert_eq(buf_head(&b)[room - 1], 'q');
    free(fill);
    buf_free(&b);
}

Test(buf, read_write_fd)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    buf out, in;
    buf_init(&out);
    buf_init(&in);
    buf_append_str(&out, "ping pong");
    cr_assert_eq(buf_write_fd(&out, sv[0]), 9);
    cr_assert_eq(out.len, 0);
    cr_assert_eq(buf_read_fd(&in, sv[1], 4096), 9);
    cr_assert_eq(memcmp(buf_head(&in), "ping pong", 9), 0);
    cr_assert_eq(buf_read_fd(&in, sv[1], 16), -1);
    cr_assert_eq(errno, EAGAIN);
    close(sv[0]);
    cr_assert_eq(buf_read_fd(&in, sv[1], 16), 0);
    close(sv[1]);
    buf_free(&out);
    buf_free(&in);
}

/* ---- log -------------------------------------------------------------- */

static size_t capture(int fds[2], char *out, size_t n)
{
    ssize_t r = read(fds[0], out, n - 1);
    out[r > 0 ? r : 0] = '\0';
    return r > 0 ? (size_t)r : 0;
}

Test(log, plain_and_json_records)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    log_set_fd(p[1]);
    log_set_component("gateway");
    log_set_level(LOG_INFO);
    log_set_json(false);

    char got[8192];
    log_info("listening on %s\n", "127.0.0.1:80");
    capture(p, got, sizeof got);
    /* 2026-11-22T18:00:00.123Z INFO gateway: listening on 127.0.0.1:80\n */
    cr_assert_eq(strlen(got), 24 + strlen(" INFO gateway: listening on 127.0.0.1:80\n"), "%s", got);
    cr_assert_eq(got[4], '-'); cr_assert_eq(got[10], 'T');
    cr_assert_eq(got[19], '.'); cr_assert_eq(got[23], 'Z');
    cr_assert_str_eq(got + 24, " INFO gateway: listening on 127.0.0.1:80\n");

    /* Below the level: nothing written. */
    log_debug("hidden");
    log_warn("shown");
    capture(p, got, sizeof got);
    cr_assert(strstr(got, "WARN gateway: shown\n"), "%s", got);
    cr_assert_null(strstr(got, "hidden"));

    log_set_json(true);
    log_error("bad \"quote\" \\ tab\t nl\n ctl\x01 end");
    capture(p, got, sizeof got);
    cr_assert_eq(strncmp(got, "{\"ts\":\"", 7), 0, "%s", got);
    cr_assert(strstr(got, "\",\"level\":\"error\",\"component\":\"gateway\",\"msg\":"
                          "\"bad \\\"quote\\\" \\\\ tab\\t nl\\n ctl\\u0001 end\"}\n"), "%s", got);

    /* A huge message is truncated, still one well-formed line. */
    char big[10000];
    memset(big, '"', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_error("%s", big);
    size_t n = capture(p, got, sizeof got);
    cr_assert_gt(n, 4000);
    cr_assert_eq(got[n - 1], '\n');
    cr_assert_eq(got[n - 2], '}');
    cr_assert_eq(got[n - 3], '"');
    cr_assert_eq(memchr(got, '\n', n), got + n - 1);

    log_set_json(false);
    log_set_fd(2);
    close(p[0]);
    close(p[1]);
}

Test(log, level_parse_and_env)
{
    log_level l;
    cr_assert_eq(log_level_parse("debug", &l), 0); cr_assert_eq(l, LOG_DEBUG);
    cr_assert_eq(log_level_parse("WARN", &l), 0);  cr_assert_eq(l, LOG_WARN);
    cr_assert_eq(log_level_parse("off", &l), 0);   cr_assert_eq(l, LOG_OFF);
    cr_assert_eq(log_level_parse("loud", &l), -1);
    setenv("HSCALE_LOG_LEVEL", "error", 1);
    setenv("HSCALE_LOG_FORMAT", "json", 1);
    cr_assert_eq(log_init_from_env(), 0);
    cr_assert_eq(log_get_level(), LOG_ERROR);
    setenv("HSCALE_LOG_LEVEL", "nope", 1);
    cr_assert_eq(log_init_from_env(), -1);
    cr_assert_eq(log_get_level(), LOG_ERROR);
    unsetenv("HSCALE_LOG_LEVEL");
    unsetenv("HSCALE_LOG_FORMAT");
    log_set_json(false);
    log_set_level(LOG_INFO);
}

Test(buf, decimal_formatting_matches_printf_at_the_edges)
{
    const int64_t is[] = {0, 1, -1, 9, 10, -10, 123456789, INT64_MAX, INT64_MIN};
    for (size_t k = 0; k < sizeof is / sizeof is[0]; k++) {
        char got[32], want[32];
        size_t n = fmt_i64(got, is[k]);
        got[n] = 0;
        snprintf(want, sizeof want, "%lld", (long long)is[k]);
        cr_assert_str_eq(got, want);
    }
    const uint64_t us[] = {0, 7, 1000, UINT64_MAX};
    for (size_t k = 0; k < sizeof us / sizeof us[0]; k++) {
        char got[32], want[32];
        size_t n = fmt_u64(got, us[k]);
        got[n] = 0;
        snprintf(want, sizeof want, "%llu", (unsigned long long)us[k]);
        cr_assert_str_eq(got, want);
    }
}
