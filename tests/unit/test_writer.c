/* test_writer.c -- byte-exact output of the HTTP writer: status lines,
 * headers, whole responses (HEAD, 204, keep-alive), JSON errors with
 * escaping, chunk framing and the cached Date header's shape. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "http/writer.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static buf out;
static void setup(void) { buf_init(&out); }
static void teardown(void) { buf_free(&out); }

static char *str(void)
{
    static char s[4096];
    size_t n = out.len < sizeof s - 1 ? out.len : sizeof s - 1;
    memcpy(s, buf_head(&out), n);
    s[n] = '\0';
    return s;
}

/* Removes the "Date: ...\r\n" line (its value changes) after checking it. */
static char *str_nodate(void)
{
    char *s = str();
    char *d = strstr(s, "Date: ");
    if (d) {
        char *e = strstr(d, "\r\n");
        cr_assert(e);
        cr_assert_eq(e - d, 35, "Date line has the IMF-fixdate length: %.*s", (int)(e - d), d);
        cr_assert(strstr(d, " GMT\r\n") == e - 4);
        memmove(d, e + 2, strlen(e + 2) + 1);
    }
    return s;
}

TestSuite(writer, .init = setup, .fini = teardown);

Test(writer, status_lines)
{
    http_write_status_line(&out, 200);
    http_write_status_line(&out, 404);
    http_write_status_line(&out, 431);
    http_write_status_line(&out, 299);
    cr_assert_str_eq(str(), "HTTP/1.1 200 OK\r\nHTTP/1.1 404 Not Found\r\n"
                            "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                            "HTTP/1.1 299 Success\r\n");
}

Test(writer, headers_and_numbers)
{
    http_write_header(&out, "X-A", "b c");
    http_write_header_n(&out, "X-Bxx", 3, "val", 2);
    http_write_header_u64(&out, "Content-Length", 0);
    http_write_header_u64(&out, "N", 18446744073709551615ull);
    http_write_header_u64(&out, "M", 1234567890);
    cr_assert_str_eq(str(), "X-A: b c\r\nX-B: va\r\nContent-Length: 0\r\n"
                            "N: 18446744073709551615\r\nM: 1234567890\r\n");
}

Test(writer, response_keepalive)
{
    http_write_response(&out, 200, "text/plain", "hello", 5, true, NULL, false);
    cr_assert_str_eq(str_nodate(), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 5\r\n\r\nhello");
}

Test(writer, response_close_extra_head)
{
    http_write_response(&out, 201, "application/json", "{}", 2, false, "X-Id: 7\r\n", true);
    cr_assert_str_eq(str_nodate(), "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                                   "Content-Length: 2\r\nConnection: close\r\nX-Id: 7\r\n\r\n");
}

Test(writer, response_204_has_no_length)
{
    http_write_response(&out, 204, "text/plain", "ignored", 7, true, NULL, false);
    cr_assert_str_eq(str_nodate(), "HTTP/1.1 204 No Content\r\n\r\n");
}

Test(writer, error_json)
{
    http_write_error(&out, 422, "user_id", "bad \"id\"\n", true, NULL);
    const char *body = "{\"error\":\"bad \\\"id\\\"\\n\",\"status\":422,\"field\":\"user_id\"}";
    char want[512];
    snprintf(want, sizeof want, "HTTP/1.1 422 Unprocessable Content\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
    cr_assert_str_eq(str_nodate(), want);
}

Test(writer, error_close_no_field)
{
    http_write_error(&out, 400, NULL, "x", false, "Allow: GET\r\n");
    const char *body = "{\"error\":\"x\",\"status\":400}";
    char want[512];
    snprintf(want, sizeof want, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nConnection: close\r\nAllow: GET\r\n\r\n%s", strlen(body), body);
    cr_assert_str_eq(str_nodate(), want);
}

Test(writer, json_escaping)
{
    const char in[] = "a\"b\\c\x01\x1f\t\r\n\x7f" "caf\xc3\xa9 \xe2\x82\xac";
    http_write_json_string(&out, in, sizeof in - 1);
    cr_assert_str_eq(str(), "\"a\\\"b\\\\c\\u0001\\u001f\\t\\r\\n\\u007f" "caf\xc3\xa9 \xe2\x82\xac\"");
}

/* Error messages quote request bytes and are cut to fit a buffer, so a
 * string may hold broken UTF-8 (found by fuzz_app_body: jansson's "invalid
 * escape near '\"c\\\xde'" cut a character in two, and the 400 reply was
 * not valid JSON). Such bytes become U+FFFD; good sequences pass. */
Test(writer, json_invalid_utf8_replaced)
{
    const char in[] = "c\\\xde" "|\xff|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82|\xf0\x9f\x98\x80";
    http_write_json_string(&out, in, sizeof in - 1);
    cr_assert_str_eq(str(), "\"c\\\\\\ufffd|\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
                     "\\ufffd\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd|\xf0\x9f\x98\x80\"");
    /* a cut at the very end */
    buf_reset(&out);
    http_write_json_string(&out, "ab\xc3", 3);
    cr_assert_str_eq(str(), "\"ab\\ufffd\"");
}

Test(writer, json_nul_inside)
{
    http_write_json_string(&out, "a\0b", 3);
    cr_assert_eq(out.len, 10);
    cr_assert(memcmp(buf_head(&out), "\"a\\u0000b\"", 10) == 0);
}

Test(writer, chunks)
{
    char big[300];
    memset(big, 'z', sizeof big);
    http_write_chunk(&out, "hello", 5);
    http_write_chunk(&out, "", 0);             /* must not end the body */
    http_write_chunk(&out, big, sizeof big);
    http_write_last_chunk(&out);
    char want[1024];
    int n = snprintf(want, sizeof want, "5\r\nhello\r\n12c\r\n%.*s\r\n0\r\n\r\n", 300, big);
    cr_assert_eq(out.len, (size_t)n);
    cr_assert(memcmp(buf_head(&out), want, (size_t)n) == 0);
}

Test(writer, date_cached_and_consistent)
{
    http_write_date(&out);
    http_write_date(&out);
    cr_assert_eq(out.len, 74, "two 37-byte Date lines");
    cr_assert(memcmp(buf_head(&out), "Date: ", 6) == 0);
    cr_assert(memcmp(buf_head(&out) + 37, "Date: ", 6) == 0);
    cr_assert(memcmp(buf_head(&out) + 35, "\r\n", 2) == 0);
    cr_assert(memcmp(buf_head(&out) + 31, " GMT", 4) == 0);
}
