/* parser.h -- HTTP/1.1 message heads and chunked bodies (RFC 9110/9112).
 *
 * The parser works in place, picohttpparser-style: it returns offsets into
 * the caller's buffer and allocates nothing. It is incremental: the caller
 * hands it the bytes received so far and gets HTTP_INCOMPLETE until the head
 * is whole; `scanned` lets a repeated call resume the search for the end of
 * the head where the last one stopped instead of rescanning.
 *
 * It is strict wherever leniency enables request smuggling or response
 * splitting; the rules, each with its RFC section, are in docs/http.md and
 * the unit tests. In short, a request is rejected (400 unless noted) with:
 * Content-Length and Transfer-Encoding together; several Content-Length
 * values that differ or any that is not a plain decimal; Transfer-Encoding
 * other than a final "chunked" (501 for an unknown coding); obs-fold;
 * whitespace between a field name and the colon; CTL or NUL in a name or
 * value; a bare CR or bare LF anywhere in the head; a missing or repeated
 * Host on HTTP/1.1; a version other than HTTP/1.x (505; 1.2+ reads as 1.1).
 * Limits answer 414 (request target), 431 (header bytes or count) and 413
 * (declared body size). A malformed response always answers 502.
 *
 * On HTTP_ERROR a request should be answered with h.error_status and the
 * connection closed: after a framing error the byte stream has no trusted
 * message boundary left. */
#ifndef HSCALE_HTTP_PARSER_H
#define HSCALE_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 64

typedef struct http_slice { uint32_t off, len; } http_slice;

typedef struct http_header { http_slice name, value; } http_header;

typedef enum {
    HTTP_OTHER = 0, HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_PUT, HTTP_DELETE,
    HTTP_PATCH, HTTP_OPTIONS, HTTP_CONNECT, HTTP_TRACE,
} http_method;

typedef enum {
    HTTP_BODY_NONE,      /* no body (or zero length) */
    HTTP_BODY_LENGTH,    /* content_length bytes follow */
    HTTP_BODY_CHUNKED,   /* chunked framing follows */
    HTTP_BODY_CLOSE,     /* responses only: body runs to connection close */
} http_body_kind;

/* What a parse returns: > 0 is the length of the head (request line or
 * status line through the blank line); these are the other outcomes. */
enum {
    HTTP_INCOMPLETE = 0,
    HTTP_ERROR      = -1,   /* see status and error fields */
};

typedef struct http_limits {
    uint32_t max_request_line;   /* 414 beyond this (default 8 KiB) */
    uint32_t max_head;           /* 431 beyond this (default 32 KiB) */
    uint32_t max_headers;        /* 431 beyond this (default 64, <= HTTP_MAX_HEADERS) */
    uint64_t max_body;           /* 413 when Content-Length exceeds it (0: no limit; default 1 MiB) */
} http_limits;

void http_limits_default(http_limits *l);

/* Fields common to requests and responses. */
typedef struct http_head_common {
    uint8_t        version_minor;  /* 0 or 1 */
    uint16_t       nheaders;
    http_header    headers[HTTP_MAX_HEADERS];
    http_body_kind body;
    uint64_t       content_length;
    bool           keep_alive;     /* after this message, per 1.0/1.1 rules */
    bool           conn_close;     /* "Connection: close" seen */
    bool           upgrade;        /* Upgrade header present */
    /* On HTTP_ERROR: the status to answer with and a short reason. */
    uint16_t       error_status;
    const char    *error;
} http_head_common;

typedef struct http_request {
    http_head_common h;
    http_method method;
    http_slice  method_text;
    http_slice  target;          /* as sent: "/cases/7?user_id=3" */
    http_slice  path;            /* "/cases/7" */
    http_slice  query;           /* "user_id=3" (len 0 when none) */
    http_slice  host;            /* Host header value (len 0 when none) */
    bool        expect_continue; /* "Expect: 100-continue" */
    uint32_t    scanned;         /* resume point for incremental calls; zero it for a new request */
} http_request;

typedef struct http_response {
    http_head_common h;
    uint16_t   status;
    http_slice reason;
    uint32_t   scanned;
} http_response;

/* Parses a request head from buf[0, len). */
int http_parse_request(const char *buf, size_t len, http_request *req, const http_limits *lim);

/* Parses a response head. The body framing depends on the request that
 * asked for it: pass its method (HEAD and 2xx to CONNECT have no body) so
 * the framing is right. 1xx responses are returned like any other; the
 * caller skips them and parses again. */
int http_parse_response(const char *buf, size_t len, http_response *resp,
                        http_method request_method, const http_limits *lim);

/* Header helpers over a parsed head. */
bool http_slice_eq(const char *buf, http_slice s, const char *lit);      /* exact */
bool http_slice_ieq(const char *buf, http_slice s, const char *lit);     /* ASCII case-insensitive */
/* The first header with this name (case-insensitive), or NULL. */
const http_header *http_find_header(const char *buf, const http_head_common *h, const char *name);
http_method http_method_from(const char *p, size_t len);
const char *http_method_name(http_method m);
const char *http_status_reason(int status);

/* Chunked body decoder (RFC 9112 section 7.1). Feed it bytes as they arrive;
 * it reports which of them are payload so a proxy can forward the framing
 * verbatim while a server collects only the data. Strict: chunk sizes are
 * hex without sign or whitespace and must fit in 63 bits; extensions must be
 * token[=token|quoted-string]; every line ends in CRLF (bare LF or CR is an
 * error); trailers obey the header rules. */
typedef struct http_chunked {
    uint8_t  state;
    uint8_t  ext_state;
    uint64_t remaining;    /* payload bytes left in the current chunk */
    uint32_t line_len;     /* bytes on the current size/trailer line (limit) */
    uint32_t trailer_bytes;
    uint64_t total;        /* payload bytes so far */
    uint64_t max_body;     /* 0: no limit; otherwise 413 past it */
    const char *error;
    uint16_t error_status;
} http_chunked;

void http_chunked_init(http_chunked *c, uint64_t max_body);
/* Consumes up to n bytes of p. Returns the number consumed (stops after the
 * final CRLF of the message, leaving what follows for the next message), or
 * -1 on a framing error. Payload bytes inside the consumed range are
 * reported through on_data, in order, as spans of p. */
typedef void http_chunk_data_fn(void *arg, const char *data, size_t len);
long http_chunked_feed(http_chunked *c, const char *p, size_t n,
                       http_chunk_data_fn *on_data, void *arg);
bool http_chunked_done(const http_chunked *c);

#endif
