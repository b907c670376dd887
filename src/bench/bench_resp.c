/* bench_resp.c -- finding where an HTTP/1.1 response ends, in place.
 *
 * A load generator reads every byte but keeps none: the status, the framing
 * (Content-Length, chunked, or until close) and Connection: close are all it
 * needs. Nothing is copied; the caller drops consumed bytes from its fixed
 * buffer, so a body of any size flows through 16 KiB. A head must fit the
 * buffer. Responses are trusted to be well-formed only as far as framing
 * goes: a malformed status line, length or chunk size is an error, which the
 * run counts as a protocol failure. */
#include <string.h>
#include <strings.h>
#include "bench/bench_int.h"

enum { R_HEAD, R_BODY, R_CHUNK_SIZE, R_CHUNK_DATA, R_CHUNK_CRLF, R_TRAILER, R_UNTIL_CLOSE };

void bench_resp_reset(bench_resp *r)
{
    memset(r, 0, sizeof *r);
}

bool bench_resp_eof(const bench_resp *r)
{
    return r->state == R_UNTIL_CLOSE;
}

static bool field_is(const char *p, size_t n, const char *name)
{
    size_t l = strlen(name);
    return n == l && strncasecmp(p, name, l) == 0;
}

/* Does the comma-separated value hold this token (case-insensitive)? */
static bool value_has(const char *v, size_t n, const char *tok)
{
    size_t l = strlen(tok);
    for (size_t i = 0; i + l <= n; i++) {
        if (strncasecmp(v + i, tok, l) == 0 &&
            (i == 0 || v[i - 1] == ' ' || v[i - 1] == ',') &&
            (i + l == n || v[i + l] == ' ' || v[i + l] == ','))
            return true;
    }
    return false;
}

/* Parses the head buf[0, n) (ending in CRLFCRLF). */
static int parse_head(bench_resp *r, const char *buf, size_t n, bool head_only)
{
    if (n < 16 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
        buf[8] != ' ' || buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' ||
        buf[11] < '0' || buf[11] > '9' || (buf[12] != ' ' && buf[12] != '\r'))
        return -1;
    r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    bool http10 = buf[7] == '0', keep_alive = false, chunked = false, has_len = false;
    uint64_t len = 0;
    const char *p = (const char *)memchr(buf, '\n', n) + 1, *end = buf + n - 2;   /* before the last CRLF */
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p + 1));
        if (!eol || eol == p || eol[-1] != '\r')
            return -1;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon)
            return -1;
        const char *v = colon + 1, *ve = eol - 1;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t nl = (size_t)(colon - p), vl = (size_t)(ve - v);
        if (field_is(p, nl, "Content-Length")) {
            uint64_t x = 0;
            if (vl == 0 || vl > 18)
                return -1;
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return -1;
                x = x * 10 + (uint64_t)(v[i] - '0');
            }
            if (has_len && x != len)
                return -1;
            len = x;
            has_len = true;
        } else if (field_is(p, nl, "Transfer-Encoding")) {
            chunked = value_has(v, vl, "chunked");
        } else if (field_is(p, nl, "Connection")) {
            if (value_has(v, vl, "close"))
                r->close_after = true;
            if (value_has(v, vl, "keep-alive"))
                keep_alive = true;
        }
        p = eol + 1;
    }
    if (http10 && !keep_alive)
        r->close_after = true;
    if (head_only || r->status < 200 || r->status == 204 || r->status == 304) {
        r->state = R_HEAD;   /* no body; the caller sees completion */
        return 1;
    }
    if (chunked) {
        r->state = R_CHUNK_SIZE;
    } else if (has_len) {
        r->state = R_BODY;
        r->left = len;
    } else {
        r->state = R_UNTIL_CLOSE;
        r->close_after = true;
    }
    return 0;
}

int bench_resp_feed(bench_resp *r, const char *buf, size_t len, size_t *used, bool head_only)
{
    size_t pos = 0;
    for (;;) {
        switch (r->state) {
        case R_HEAD: {
            size_t avail = len - pos, from = r->scan > 3 ? r->scan - 3 : 0;
            const char *e = avail > from ? memmem(buf + pos + from, avail - from, "\r\n\r\n", 4) : NULL;
            if (!e) {
                r->scan = (uint32_t)avail;
                *used = pos;
                return 0;
            }
            size_t hl = (size_t)(e - (buf + pos)) + 4;
            int rc = parse_head(r, buf + pos, hl, head_only);
            if (rc < 0)
                return -1;
            pos += hl;
            r->bytes += hl;
            r->scan = 0;
            if (rc == 1) {
                if (r->status >= 100 && r->status < 200) {   /* interim: the real one follows */
                    r->close_after = false;
                    continue;
                }
                *used = pos;
                return 1;
            }
            if (r->state == R_BODY && r->left == 0) {
                *used = pos;
                return 1;
            }
            break;
        }
        case R_BODY:
        case R_CHUNK_DATA: {
            size_t avail = len - pos, take = avail < r->left ? avail : (size_t)r->left;
            pos += take;
            r->left -= take;
            r->bytes += take;
            if (r->left > 0) {
                *used = pos;
                return 0;
            }
            if (r->state == R_BODY) {
                *used = pos;
                return 1;
            }
            r->state = R_CHUNK_CRLF;
            break;
        }
        case R_CHUNK_CRLF:
            if (len - pos < 2) {
                *used = pos;
                return 0;
            }
            if (buf[pos] != '\r' || buf[pos + 1] != '\n')
                return -1;
            pos += 2;
            r->bytes += 2;
            r->state = R_CHUNK_SIZE;
            break;
        case R_CHUNK_SIZE:
        case R_TRAILER: {
            const char *eol = memchr(buf + pos, '\n', len - pos);
            if (!eol) {
                *used = pos;
                return len - pos > 4096 ? -1 : 0;
            }
            size_t ll = (size_t)(eol - (buf + pos)) + 1;
            if (ll < 2 || eol[-1] != '\r')
                return -1;
            const char *p = buf + pos;
            pos += ll;
            r->bytes += ll;
            if (r->state == R_TRAILER) {
                if (ll == 2) {
                    *used = pos;
                    return 1;
                }
                break;
            }
            uint64_t x = 0;
            size_t i = 0;
            for (; i < ll - 2 && p[i] != ';'; i++) {
                char c = p[i];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                if (d < 0 || i >= 15)
                    return -1;
                x = x * 16 + (uint64_t)d;
            }
            if (i == 0)
                return -1;
            if (x == 0) {
                r->state = R_TRAILER;
            } else {
                r->left = x;
                r->state = R_CHUNK_DATA;
            }
            break;
        }
        case R_UNTIL_CLOSE:
            r->bytes += len - pos;
            *used = len;
            return 0;
        default:
            return -1;
        }
    }
}
