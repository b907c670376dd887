/* http_names.c -- the parser's lookup helpers: slice comparisons, header
 * lookup, method names and status reasons. Kept apart from the parser
 * proper because they are tables, not grammar; none allocates. */
#include "http/parser.h"

#include <string.h>

bool http_slice_eq(const char *buf, http_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(buf + s.off, lit, n) == 0;
}

static inline char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

bool http_slice_ieq(const char *buf, http_slice s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.len != n)
        return false;
    const char *p = buf + s.off;
    for (size_t i = 0; i < n; i++)
        if (lower(p[i]) != lower(lit[i]))
            return false;
    return true;
}

const http_header *http_find_header(const char *buf, const http_head_common *h, const char *name)
{
    for (uint16_t i = 0; i < h->nheaders; i++)
        if (http_slice_ieq(buf, h->headers[i].name, name))
            return &h->headers[i];
    return NULL;
}

static const char *const method_names[] = {
    [HTTP_OTHER] = NULL, [HTTP_GET] = "GET", [HTTP_HEAD] = "HEAD", [HTTP_POST] = "POST",
    [HTTP_PUT] = "PUT", [HTTP_DELETE] = "DELETE", [HTTP_PATCH] = "PATCH",
    [HTTP_OPTIONS] = "OPTIONS", [HTTP_CONNECT] = "CONNECT", [HTTP_TRACE] = "TRACE",
};

/* Methods are case-sensitive (RFC 9110 9.1): "get" is not GET. */
http_method http_method_from(const char *p, size_t len)
{
#define M(lit, m) if (memcmp(p, lit, len) == 0) return m
    switch (len) {
    case 3: M("GET", HTTP_GET); M("PUT", HTTP_PUT); break;
    case 4: M("POST", HTTP_POST); M("HEAD", HTTP_HEAD); break;
    case 5: M("PATCH", HTTP_PATCH); M("TRACE", HTTP_TRACE); break;
    case 6: M("DELETE", HTTP_DELETE); break;
    case 7: M("OPTIONS", HTTP_OPTIONS); M("CONNECT", HTTP_CONNECT); break;
    default: break;
    }
#undef M
    return HTTP_OTHER;
}

const char *http_method_name(http_method m)
{
    if ((int)m <= HTTP_OTHER || (int)m > HTTP_TRACE)
        return NULL;
    return method_names[m];
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    case 511: return "Network Authentication Required";
    default:  break;
    }
    if (status >= 100 && status < 200) return "Informational";
    if (status >= 200 && status < 300) return "Success";
    if (status >= 300 && status < 400) return "Redirection";
    if (status >= 400 && status < 500) return "Client Error";
    return "Server Error";
}
