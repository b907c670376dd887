/* chunked.c -- the chunked transfer coding decoder (RFC 9112 section 7.1).
 *
 * A byte-driven state machine, so a message split anywhere decodes the same
 * as one handed over whole; only chunk data is passed on in bulk. It never
 * reads past the final CRLF of the message, so pipelined bytes after it stay
 * with the caller. Once it has failed it stays failed: a framing error means
 * the connection can no longer be trusted to have message boundaries.
 *
 * Sizes are 1 to 16 hex digits and must fit in 63 bits; extensions are
 * checked against their grammar and otherwise ignored; trailer fields obey
 * the same octet rules as header fields and their total is capped. */
#include "http/parser.h"

#include <stdint.h>

enum {
    S_SIZE_FIRST, S_SIZE, S_EXT, S_SIZE_LF, S_DATA, S_DATA_CR, S_DATA_LF,
    S_TRAILER_START, S_TRAILER_NAME, S_TRAILER_VALUE, S_TRAILER_LF, S_END_LF,
    S_DONE, S_ERROR,
};

/* Where the chunk-ext grammar stands, in S_EXT:
 *   chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ) */
enum {
    E_PRE_SEMI,     /* after size or an element: BWS then ';' or CR */
    E_PRE_NAME,     /* after ';': BWS then the name */
    E_NAME,
    E_POST_NAME,    /* BWS after name: '=' ';' or CR */
    E_PRE_VAL,      /* after '=': BWS then token or quote */
    E_VAL_TOKEN,
    E_VAL_QUOTED,
    E_VAL_ESCAPE,
    E_POST_QUOTE,   /* closing quote seen: BWS, ';' or CR */
};

#define MAX_SIZE_LINE   4096          /* size plus extensions */
#define MAX_TRAILERS    8192          /* all trailer lines together */
#define MAX_DIGITS      16

static bool is_tchar(unsigned char c)
{
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
        return true;
    if (c >= '0' && c <= '9')
        return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

/* field-value octets: VCHAR, SP, HT, obs-text */
static bool is_vchar_ws(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

void http_chunked_init(http_chunked *c, uint64_t max_body)
{
    *c = (http_chunked){ .state = S_SIZE_FIRST, .max_body = max_body };
}

bool http_chunked_done(const http_chunked *c)
{
    return c->state == S_DONE;
}

static long cfail(http_chunked *c, uint16_t status, const char *why)
{
    c->state = S_ERROR;
    c->error = why;
    c->error_status = status;
    return -1;
}

/* One byte of a chunk-size line after the digits. Returns 0 or -1. */
static int ext_byte(http_chunked *c, unsigned char ch)
{
    bool ws = ch == ' ' || ch == '\t';
    switch (c->ext_state) {
    case E_PRE_SEMI:
        if (ch == ';')
            c->ext_state = E_PRE_NAME;
        else if (!ws)
            return -1;
        return 0;
    case E_PRE_NAME:
        if (is_tchar(ch))
            c->ext_state = E_NAME;
        else if (!ws)
            return -1;
        return 0;
    case E_NAME:
    case E_POST_NAME:
        if (c->ext_state == E_NAME && is_tchar(ch))
            return 0;
        if (ws)
            c->ext_state = E_POST_NAME;
        else if (ch == ';')
            c->ext_state = E_PRE_NAME;
        else if (ch == '=')
            c->ext_state = E_PRE_VAL;
        else
            return -1;
        return 0;
    case E_PRE_VAL:
        if (is_tchar(ch))
            c->ext_state = E_VAL_TOKEN;
        else if (ch == '"')
            c->ext_state = E_VAL_QUOTED;
        else if (!ws)
            return -1;
        return 0;
    case E_VAL_TOKEN:
    case E_POST_QUOTE:
        if (c->ext_state == E_VAL_TOKEN && is_tchar(ch))
            return 0;
        if (ws)
            c->ext_state = E_PRE_SEMI;
        else if (ch == ';')
            c->ext_state = E_PRE_NAME;
        else
            return -1;
        return 0;
    case E_VAL_QUOTED:
        if (ch == '"')
            c->ext_state = E_POST_QUOTE;
        else if (ch == '\\')
            c->ext_state = E_VAL_ESCAPE;
        else if (!is_vchar_ws(ch))
            return -1;
        return 0;
    case E_VAL_ESCAPE:
        if (!is_vchar_ws(ch))
            return -1;
        c->ext_state = E_VAL_QUOTED;
        return 0;
    default:
        return -1;
    }
}

/* Can the size line end here (CR seen)? Not inside a name/value wanted by
 * the grammar, nor with whitespace hanging before CRLF. */
static bool ext_can_end(const http_chunked *c)
{
    return c->ext_state == E_NAME || c->ext_state == E_VAL_TOKEN ||
           c->ext_state == E_POST_QUOTE;
}

long http_chunked_feed(http_chunked *c, const char *p, size_t n,
                       http_chunk_data_fn *on_data, void *arg)
{
    size_t i = 0;
    if (c->state == S_ERROR)
        return -1;
    while (i < n) {
        unsigned char ch = (unsigned char)p[i];
        switch (c->state) {
        case S_SIZE_FIRST: {
            int d = hexval(ch);
            if (d < 0)
                return cfail(c, 400, "chunk size: expected a hex digit");
            c->remaining = (uint64_t)d;
            c->line_len = 1;
            c->state = S_SIZE;
            i++;
            break;
        }
        case S_SIZE: {
            int d = hexval(ch);
            if (d >= 0) {
                if (++c->line_len > MAX_DIGITS || c->remaining > (UINT64_C(0x7fffffffffffffff) >> 4))
                    return cfail(c, 400, "chunk size: too large");
                c->remaining = c->remaining << 4 | (uint64_t)d;
            } else if (ch == '\r') {
                c->state = S_SIZE_LF;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                c->ext_state = ch == ';' ? E_PRE_NAME : E_PRE_SEMI;
                c->state = S_EXT;
            } else {
                return cfail(c, 400, "chunk size: expected a hex digit, ';' or CRLF");
            }
            i++;
            break;
        }
        case S_EXT:
            if (++c->line_len > MAX_SIZE_LINE)
                return cfail(c, 400, "chunk extensions too long");
            if (ch == '\r') {
                if (!ext_can_end(c))
                    return cfail(c, 400, "chunk extension: malformed before CRLF");
                c->state = S_SIZE_LF;
            } else if (ext_byte(c, ch) < 0) {
                return cfail(c, 400, "chunk extension: malformed");
            }
            i++;
            break;
        case S_SIZE_LF:
            if (ch != '\n')
                return cfail(c, 400, "chunk size line: CR not followed by LF");
            i++;
            if (c->remaining == 0) {
                c->state = S_TRAILER_START;
                c->line_len = 0;
                break;
            }
            /* total never exceeds max_body, so the subtraction is safe */
            if (c->max_body && c->remaining > c->max_body - c->total)
                return cfail(c, 413, "chunked body exceeds the body limit");
            c->state = S_DATA;
            break;
        case S_DATA: {
            size_t take = n - i;
            if ((uint64_t)take > c->remaining)
                take = (size_t)c->remaining;
            if (on_data)
                on_data(arg, p + i, take);
            c->remaining -= take;
            c->total += take;
            i += take;
            if (c->remaining == 0)
                c->state = S_DATA_CR;
            break;
        }
        case S_DATA_CR:
            if (ch != '\r')
                return cfail(c, 400, "chunk data not followed by CRLF");
            c->state = S_DATA_LF;
            i++;
            break;
        case S_DATA_LF:
            if (ch != '\n')
                return cfail(c, 400, "chunk data not followed by CRLF");
            c->state = S_SIZE_FIRST;
            i++;
            break;
        case S_TRAILER_START:
            if (ch == '\r') {
                c->state = S_END_LF;
            } else if (is_tchar(ch)) {
                c->state = S_TRAILER_NAME;
            } else {
                return cfail(c, 400, ch == ' ' || ch == '\t' ? "trailer: obs-fold"
                                                             : "trailer: invalid field name");
            }
            i++;
            if (++c->trailer_bytes > MAX_TRAILERS)
                return cfail(c, 431, "trailer section too large");
            break;
        case S_TRAILER_NAME:
            if (ch == ':')
                c->state = S_TRAILER_VALUE;
            else if (!is_tchar(ch))
                return cfail(c, 400, ch == ' ' || ch == '\t'
                                         ? "trailer: whitespace between name and colon"
                                         : "trailer: invalid character in field name");
            i++;
            if (++c->trailer_bytes > MAX_TRAILERS)
                return cfail(c, 431, "trailer section too large");
            break;
        case S_TRAILER_VALUE:
            if (ch == '\r')
                c->state = S_TRAILER_LF;
            else if (!is_vchar_ws(ch))
                return cfail(c, 400, "trailer: control character in field value");
            i++;
            if (++c->trailer_bytes > MAX_TRAILERS)
                return cfail(c, 431, "trailer section too large");
            break;
        case S_TRAILER_LF:
            if (ch != '\n')
                return cfail(c, 400, "trailer: bare CR");
            c->state = S_TRAILER_START;
            i++;
            break;
        case S_END_LF:
            if (ch != '\n')
                return cfail(c, 400, "chunked body: bare CR at the end");
            c->state = S_DONE;
            i++;
            return (long)i;
        case S_DONE:
            return (long)i;
        default:
            return cfail(c, 400, "chunked decoder in an invalid state");
        }
    }
    return (long)i;
}
