/* writer.c -- HTTP/1.1 serialisation into a buf.
 *
 * Everything is a plain append: status lines for the codes we actually send
 * take their reason from http_status_reason (parser.h), numbers go through a
 * small itoa, and the Date header is formatted at most once per second per
 * thread. No call allocates beyond growing the output buffer.
 *
 * Invariant: every function either appends a complete piece or returns -1
 * (out of memory) with the buffer possibly holding a partial piece; callers
 * treat -1 as fatal for the connection. */
#include "writer.h"
#include "parser.h"
#include "core/utf8.h"

#include <string.h>
#include <time.h>

int http_write_status_line(buf *out, int status)
{
    if (status < 100 || status > 999)
        status = 500;
    const char *reason = http_status_reason(status);
    size_t rlen = strlen(reason);
    if (buf_reserve(out, 9 + 4 + rlen + 2) < 0)
        return -1;
    char *p = buf_tail(out);
    memcpy(p, "HTTP/1.1 ", 9);
    p[9]  = (char)('0' + status / 100);
    p[10] = (char)('0' + status / 10 % 10);
    p[11] = (char)('0' + status % 10);
    p[12] = ' ';
    memcpy(p + 13, reason, rlen);
    memcpy(p + 13 + rlen, "\r\n", 2);
    buf_commit(out, 15 + rlen);
    return 0;
}

int http_write_header_n(buf *out, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (buf_reserve(out, nlen + vlen + 4) < 0)
        return -1;
    char *p = buf_tail(out);
    memcpy(p, name, nlen);
    p[nlen] = ':';
    p[nlen + 1] = ' ';
    memcpy(p + nlen + 2, value, vlen);
    p[nlen + 2 + vlen] = '\r';
    p[nlen + 3 + vlen] = '\n';
    buf_commit(out, nlen + vlen + 4);
    return 0;
}

int http_write_header(buf *out, const char *name, const char *value)
{
    return http_write_header_n(out, name, strlen(name), value, strlen(value));
}

int http_write_header_u64(buf *out, const char *name, uint64_t v)
{
    char num[24];
    size_t n = fmt_u64(num, v);
    return http_write_header_n(out, name, strlen(name), num, n);
}

/* The formatted "Date: ...\r\n" line for the current second; one strftime
 * per second per thread instead of one per response. */
static _Thread_local time_t date_sec = (time_t)-1;
static _Thread_local char   date_line[64];
static _Thread_local size_t date_len;

int http_write_date(buf *out)
{
    time_t now = time(NULL);
    if (now != date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        date_len = strftime(date_line, sizeof date_line,
                            "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        date_sec = now;
    }
    return buf_append(out, date_line, date_len);
}

int http_write_response(buf *out, int status, const char *content_type,
                        const void *body, size_t len, bool keep_alive,
                        const char *extra_headers, bool head_only)
{
    if (http_write_status_line(out, status) < 0 || http_write_date(out) < 0)
        return -1;
    /* 1xx, 204 and 304 carry no body and no Content-Length (RFC 9110 8.6). */
    bool no_body = (status >= 100 && status < 200) || status == 204 || status == 304;
    if (!no_body) {
        if (content_type && content_type[0] &&
            http_write_header(out, "Content-Type", content_type) < 0)
            return -1;
        if (http_write_header_u64(out, "Content-Length", len) < 0)
            return -1;
    }
    if (!keep_alive && buf_append(out, "Connection: close\r\n", 19) < 0)
        return -1;
    if (extra_headers && buf_append_str(out, extra_headers) < 0)
        return -1;
    if (buf_append(out, "\r\n", 2) < 0)
        return -1;
    if (!no_body && !head_only && len && buf_append(out, body, len) < 0)
        return -1;
    return 0;
}

int http_write_json_string(buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case every byte becomes \u00XX. */
    if (buf_reserve(out, len * 6 + 2) < 0)
        return -1;
    char *p = buf_tail(out), *start = p;
    *p++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            *p++ = '\\';
            *p++ = (char)ch;
        } else if (ch >= 0x80) {
            /* UTF-8 passes through; any other byte (a message cut in the
             * middle of a character, bytes quoted from a bad request)
             * becomes U+FFFD, so the output is always valid JSON. */
            size_t k = utf8_seq_len((const unsigned char *)s + i, len - i);
            if (k) {
                memcpy(p, s + i, k);
                p += k;
                i += k - 1;
            } else {
                memcpy(p, "\\ufffd", 6);
                p += 6;
            }
        } else if (ch >= 0x20 && ch != 0x7f) {
            *p++ = (char)ch;
        } else {
            switch (ch) {
            case '\n': *p++ = '\\'; *p++ = 'n'; break;
            case '\r': *p++ = '\\'; *p++ = 'r'; break;
            case '\t': *p++ = '\\'; *p++ = 't'; break;
            default:
                memcpy(p, "\\u00", 4);
                p[4] = hex[ch >> 4];
                p[5] = hex[ch & 15];
                p += 6;
            }
        }
    }
    *p++ = '"';
    buf_commit(out, (size_t)(p - start));
    return 0;
}

int http_write_error(buf *out, int status, const char *field, const char *msg,
                     bool keep_alive, const char *extra_headers)
{
    /* The body is built after the headers and the Content-Length patched
     * in, so the message is escaped only once. */
    char num[24];
    if (http_write_status_line(out, status) < 0 || http_write_date(out) < 0 ||
        buf_append_str(out, "Content-Type: application/json\r\nContent-Length: ") < 0)
        return -1;
    size_t len_pos = out->len;
    if (buf_append(out, "          \r\n", 12) < 0)   /* 10 spaces: room for the length */
        return -1;
    if (!keep_alive && buf_append(out, "Connection: close\r\n", 19) < 0)
        return -1;
    if (extra_headers && buf_append_str(out, extra_headers) < 0)
        return -1;
    if (buf_append(out, "\r\n", 2) < 0)
        return -1;
    size_t body_start = out->len;
    if (buf_append(out, "{\"error\":", 9) < 0 ||
        http_write_json_string(out, msg ? msg : "", msg ? strlen(msg) : 0) < 0 ||
        buf_append(out, ",\"status\":", 10) < 0)
        return -1;
    size_t n = fmt_u64(num, (uint64_t)(status < 0 ? 0 : status));
    if (buf_append(out, num, n) < 0)
        return -1;
    if (field && (buf_append(out, ",\"field\":", 9) < 0 ||
                  http_write_json_string(out, field, strlen(field)) < 0))
        return -1;
    if (buf_append(out, "}", 1) < 0)
        return -1;
    /* Patch the length left-aligned; trailing spaces before CRLF would be
     * OWS that some peers dislike, so shift the rest of the head left. */
    n = fmt_u64(num, out->len - body_start);
    char *base = out->data + out->off;
    memcpy(base + len_pos, num, n);
    memmove(base + len_pos + n, base + len_pos + 10, out->len - (len_pos + 10));
    out->len -= 10 - n;
    return 0;
}

int http_write_chunk(buf *out, const void *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (len == 0)
        return 0;   /* a zero-size chunk would end the body */
    char tmp[20];
    size_t n = 0;
    for (size_t v = len; v; v >>= 4)
        tmp[n++] = hex[v & 15];
    if (buf_reserve(out, n + 4 + len) < 0)
        return -1;
    char *p = buf_tail(out);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    p[n] = '\r';
    p[n + 1] = '\n';
    memcpy(p + n + 2, data, len);
    p[n + 2 + len] = '\r';
    p[n + 3 + len] = '\n';
    buf_commit(out, n + 4 + len);
    return 0;
}

int http_write_last_chunk(buf *out)
{
    return buf_append(out, "0\r\n\r\n", 5);
}
