/* fuzz_resolver.h -- a hermetic getaddrinfo for fuzz targets that reach
 * sock_addr_parse with fuzzed host names: without it every odd name would
 * be a DNS query (slow, and traffic leaving the machine). "localhost"
 * resolves to 127.0.0.1, every other name fails as unknown; numeric
 * addresses never get here (sock_addr_parse uses inet_pton first).
 *
 * Include it from exactly one translation unit of a target: it defines
 * getaddrinfo and freeaddrinfo, which take precedence over libc's (and
 * over the sanitizer interceptors, which are weak). */
#ifndef HSCALE_FUZZ_RESOLVER_H
#define HSCALE_FUZZ_RESOLVER_H

#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    (void)service;
    (void)hints;
    *res = NULL;
    if (!node || strcmp(node, "localhost") != 0)
        return EAI_NONAME;
    struct blk { struct addrinfo ai; struct sockaddr_in sin; } *b = calloc(1, sizeof *b);
    if (!b)
        return EAI_MEMORY;
    b->sin.sin_family = AF_INET;
    b->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    b->ai.ai_family = AF_INET;
    b->ai.ai_socktype = SOCK_STREAM;
    b->ai.ai_addr = (struct sockaddr *)&b->sin;
    b->ai.ai_addrlen = sizeof b->sin;
    *res = &b->ai;
    return 0;
}

void freeaddrinfo(struct addrinfo *res)
{
    free(res);   /* the addrinfo is the first member of its block */
}

#endif
