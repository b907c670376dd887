/* writer.h -- serialising HTTP/1.1 responses and requests into a buf.
 *
 * Plain appends, no formatting engine on the hot path: status lines for the
 * common codes are precomputed, numbers are written with a small itoa. */
#ifndef HSCALE_HTTP_WRITER_H
#define HSCALE_HTTP_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../core/buf.h"

/* "HTTP/1.1 200 OK\r\n" */
int http_write_status_line(buf *out, int status);
/* "Name: value\r\n" */
int http_write_header(buf *out, const char *name, const char *value);
int http_write_header_n(buf *out, const char *name, size_t nlen, const char *value, size_t vlen);
int http_write_header_u64(buf *out, const char *name, uint64_t v);
/* "Date: ...\r\n", cached per second per thread. */
int http_write_date(buf *out);
/* A whole response with Content-Length. extra_headers is raw
 * "Name: value\r\n" lines or NULL. A HEAD response gets the headers only. */
int http_write_response(buf *out, int status, const char *content_type,
                        const void *body, size_t len, bool keep_alive,
                        const char *extra_headers, bool head_only);
/* A JSON error body: {"error":"<msg>","status":N[,"field":"<field>"]}. */
int http_write_error(buf *out, int status, const char *field, const char *msg,
                     bool keep_alive, const char *extra_headers);
/* Chunked framing pieces. */
int http_write_chunk(buf *out, const void *data, size_t len);
int http_write_last_chunk(buf *out);
/* Appends s as a JSON string literal (quotes and escapes included); bytes
 * that are not well-formed UTF-8 become \ufffd, so the result is valid JSON. */
int http_write_json_string(buf *out, const char *s, size_t len);

#endif
