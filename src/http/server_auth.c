/* server_auth.c -- bearer-token checks for the admin APIs (gateway runtime
 * API, control plane). One implementation so every listener compares
 * tokens the same way: in constant time, and answering 401 with
 * `WWW-Authenticate: Bearer` and the field named. */
#include "http/server.h"

#include <string.h>

bool http_ctx_bearer_ok(http_ctx *c, const char *token)
{
    if (!token || !*token)
        return true;
    const char *h = http_ctx_header(c, "Authorization");
    size_t tl = strlen(token);
    if (h && strncmp(h, "Bearer ", 7) == 0 && strlen(h + 7) == tl) {
        /* Constant time: how far a guess matches must not show. */
        unsigned char diff = 0;
        for (size_t i = 0; i < tl; i++)
            diff |= (unsigned char)(h[7 + i] ^ token[i]);
        if (diff == 0)
            return true;
    }
    http_ctx_add_header(c, "WWW-Authenticate", "Bearer");
    http_reply_error(c, 401, "Authorization", "a bearer token is required");
    return false;
}
