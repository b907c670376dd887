/* buf.h -- a growable byte buffer with a read cursor.
 *
 * Bytes live in data[off, off+len). Appending grows the allocation
 * geometrically; consuming advances off, and buf_compact() moves the live
 * bytes to the front when the head room is worth reclaiming. A buffer
 * borrowed by the HTTP parser must not be compacted while offsets into it
 * are held. */
#ifndef HSCALE_CORE_BUF_H
#define HSCALE_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct buf {
    char  *data;
    size_t off;   /* first live byte */
    size_t len;   /* live bytes */
    size_t cap;   /* allocated bytes */
} buf;

void   buf_init(buf *b);
void   buf_free(buf *b);
/* Makes room for at least `extra` more bytes after the live ones. 0 or -1. */
int    buf_reserve(buf *b, size_t extra);
int    buf_append(buf *b, const void *p, size_t n);
int    buf_append_str(buf *b, const char *s);
int    buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int    buf_vprintf(buf *b, const char *fmt, va_list ap);
void   buf_consume(buf *b, size_t n);
void   buf_reset(buf *b);           /* drops live bytes, keeps the memory */
void   buf_compact(buf *b);         /* moves live bytes to data[0] */
static inline char  *buf_head(const buf *b) { return b->data + b->off; }
static inline char  *buf_tail(const buf *b) { return b->data + b->off + b->len; }
static inline size_t buf_room(const buf *b) { return b->cap - b->off - b->len; }
static inline void   buf_commit(buf *b, size_t n) { b->len += n; }

/* Decimal forms of v into out (at least 20 bytes for u64, 21 for i64);
 * return the length written, no NUL. snprintf costs a tenth of a cached
 * query and more than a whole status line, so hot paths use these. */
size_t fmt_u64(char *out, uint64_t v);
size_t fmt_i64(char *out, int64_t v);

/* Reads once from fd into the free room (reserving `want` bytes first).
 * Returns bytes read, 0 on EOF, -1 with errno (EAGAIN included). */
ssize_t buf_read_fd(buf *b, int fd, size_t want);
/* Writes once from the live bytes and consumes what was written.
 * Returns bytes written or -1 with errno. */
ssize_t buf_write_fd(buf *b, int fd);

#endif
