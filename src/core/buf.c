/* buf.c -- growable byte buffer with a read cursor.
 *
 * Invariants: off + len <= cap; data is NULL only while cap == 0. Every size
 * computation is checked before it can wrap, so a hostile length turns into
 * -1/ENOMEM instead of a short allocation. Growth doubles, so appending n
 * bytes one at a time costs O(n) copies. Only buf_reserve() (and so the
 * appenders and buf_read_fd) moves bytes: it slides the live bytes to the
 * front when the head room would satisfy the request, which keeps a
 * steady-state connection buffer from ever reallocating; consuming never
 * moves anything, so pointers into the live bytes survive it. */
#include "core/buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUF_MIN_CAP 256

void buf_init(buf *b)
{
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

void buf_free(buf *b)
{
    free(b->data);
    buf_init(b);
}

void buf_compact(buf *b)
{
    if (b->off == 0)
        return;
    if (b->len)
        memmove(b->data, b->data + b->off, b->len);
    b->off = 0;
}

int buf_reserve(buf *b, size_t extra)
{
    if (buf_room(b) >= extra)
        return 0;
    if (extra > SIZE_MAX - b->len) {
        errno = ENOMEM;
        return -1;
    }
    size_t need = b->len + extra;
    /* Head room is reclaimed before asking for more memory. */
    if (need <= b->cap) {
        buf_compact(b);
        return 0;
    }
    size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    buf_compact(b);
    char *d = realloc(b->data, cap);
    if (!d) {
        errno = ENOMEM;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

int buf_append(buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(buf_tail(b), p, n);
    b->len += n;
    return 0;
}

int buf_append_str(buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_vprintf(buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    /* Try the room we have first: most formats fit, and then vsnprintf
     * runs once. */
    size_t room = buf_room(b);
    int n = vsnprintf(room ? buf_tail(b) : NULL, room, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        errno = EINVAL;
        return -1;
    }
    if ((size_t)n < room) {
        b->len += (size_t)n;
        va_end(ap2);
        return 0;
    }
    if (buf_reserve(b, (size_t)n + 1) < 0) {
        va_end(ap2);
        return -1;
    }
    vsnprintf(buf_tail(b), buf_room(b), fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void buf_consume(buf *b, size_t n)
{
    if (n >= b->len) {
        /* Empty: rewinding is free and restores all the room. */
        b->off = 0;
        b->len = 0;
        return;
    }
    /* No compaction here: callers may hold pointers into the live bytes
     * across a consume. buf_reserve() reclaims the head when it matters. */
    b->off += n;
    b->len -= n;
}

void buf_reset(buf *b)
{
    b->off = 0;
    b->len = 0;
}

ssize_t buf_read_fd(buf *b, int fd, size_t want)
{
    if (buf_reserve(b, want ? want : 1) < 0)
        return -1;
    ssize_t n;
    do
        n = read(fd, buf_tail(b), buf_room(b));
    while (n < 0 && errno == EINTR);
    if (n > 0)
        b->len += (size_t)n;
    return n;
}

ssize_t buf_write_fd(buf *b, int fd)
{
    if (b->len == 0)
        return 0;
    ssize_t n;
    do
        n = write(fd, buf_head(b), b->len);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        buf_consume(b, (size_t)n);
    return n;
}

size_t fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t fmt_i64(char *out, int64_t v)
{
    if (v >= 0)
        return fmt_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + fmt_u64(out + 1, (uint64_t)0 - (uint64_t)v);
}
