/* server_auth.c -- bearer-token checks for the admin APIs (gateway runtime
 * API, control plane): two roles, a per-address slowdown after failed
 * attempts, the loopback rule for listeners and token files.
 *
 * One implementation so every listener compares tokens the same way: in
 * constant time, answering 401 with `WWW-Authenticate: Bearer` and never
 * repeating the token. Wrong tokens are counted per peer IP (port ignored):
 * from the AF_FREE-th failure in a row the address must wait 1 s, 2 s,
 * 4 s ... (at most AF_MAX_WAIT_US) after its last failure before it may try
 * again, answered 429 with Retry-After meanwhile; a success clears the
 * count and an address quiet for AF_FORGET_US is forgotten. The table has
 * a fixed size: when full, the stalest entry in the probe window is reused,
 * so an attacker spraying addresses can only make the slowdown forget. */
#include "server_conn.h"
#include "../core/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define AF_FREE         5                  /* failures allowed before waiting */
#define AF_MAX_WAIT_US  60000000ull
#define AF_FORGET_US    600000000ull       /* 10 min */
#define AF_PROBE        8

const char *http_role_str(http_role r)
{
    switch (r) {
    case HTTP_ROLE_LOCAL: return "local";
    case HTTP_ROLE_READ:  return "read";
    case HTTP_ROLE_ADMIN: return "admin";
    case HTTP_ROLE_NONE:  break;
    }
    return "none";
}

http_role http_ctx_role(const http_ctx *c) { return c->role; }

/* ---- per-address failures ---- */

static void peer_ip(const sock_addr *a, uint8_t ip[16])
{
    memset(ip, 0, 16);
    const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
    if (sa->sa_family == AF_INET)
        memcpy(ip, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    else if (sa->sa_family == AF_INET6)
        memcpy(ip, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
}

static uint32_t ip_hash(const uint8_t ip[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ ip[i]) * 16777619u;
    return h;
}

static uint64_t af_wait_us(uint32_t fails)
{
    if (fails < AF_FREE)
        return 0;
    unsigned sh = fails - AF_FREE;
    uint64_t w = sh >= 6 ? AF_MAX_WAIT_US : 1000000ull << sh;
    return w > AF_MAX_WAIT_US ? AF_MAX_WAIT_US : w;
}

/* The entry for ip (caller holds af_mu); created when create is set. */
static authfail_ent *af_find(http_server *s, const uint8_t ip[16], uint64_t now, bool create)
{
    uint32_t h = ip_hash(ip);
    authfail_ent *victim = NULL;
    for (unsigned i = 0; i < AF_PROBE; i++) {
        authfail_ent *e = &s->af[(h + i) % AUTHFAIL_SLOTS];
        if (e->used && now - e->last_us > AF_FORGET_US)
            e->used = 0;
        if (e->used && memcmp(e->ip, ip, 16) == 0)
            return e;
        if (!victim || !e->used || (victim->used && e->last_us < victim->last_us))
            victim = e;
    }
    if (!create)
        return NULL;
    memset(victim, 0, sizeof *victim);
    memcpy(victim->ip, ip, 16);
    victim->used = 1;
    return victim;
}

/* Microseconds this peer must still wait, 0 when it may try. */
static uint64_t af_blocked(http_server *s, const sock_addr *peer)
{
    uint8_t ip[16];
    peer_ip(peer, ip);
    uint64_t now = ev_monotonic_us(), wait = 0;
    pthread_mutex_lock(&s->af_mu);
    authfail_ent *e = af_find(s, ip, now, false);
    if (e) {
        uint64_t until = e->last_us + af_wait_us(e->fails);
        wait = until > now ? until - now : 0;
    }
    pthread_mutex_unlock(&s->af_mu);
    return wait;
}

static void af_record(http_server *s, const sock_addr *peer, bool ok)
{
    uint8_t ip[16];
    peer_ip(peer, ip);
    uint64_t now = ev_monotonic_us();
    pthread_mutex_lock(&s->af_mu);
    authfail_ent *e = af_find(s, ip, now, !ok);
    if (e) {
        if (ok) {
            e->used = 0;
        } else {
            e->fails++;
            e->last_us = now;
        }
    }
    pthread_mutex_unlock(&s->af_mu);
}

/* ---- tokens ---- */

static bool set(const char *t) { return t && *t; }

/* Constant time in the token's content: how far a guess matches must not
 * show. (The length may; tokens should be long and random.) */
static bool token_eq(const char *given, size_t glen, const char *want)
{
    size_t wl = strlen(want);
    unsigned char diff = glen != wl;
    for (size_t i = 0; i < wl; i++)
        diff |= (unsigned char)((i < glen ? given[i] : 0) ^ want[i]);
    return diff == 0;
}

bool http_ctx_authorize(http_ctx *c, const http_tokens *t, http_role need)
{
    c->role = HTTP_ROLE_NONE;
    if (!set(t->admin) && !set(t->read)) {
        c->role = HTTP_ROLE_LOCAL;
        return true;
    }
    uint64_t wait = c->srv ? af_blocked(c->srv, c->peer) : 0;
    if (wait) {
        char ra[24];
        snprintf(ra, sizeof ra, "%llu", (unsigned long long)((wait + 999999) / 1000000));
        http_ctx_add_header(c, "Retry-After", ra);
        http_reply_error(c, 429, "Authorization",
                         "too many failed authentication attempts from this address; "
                         "retry in %s s", ra);
        return false;
    }
    const char *h = http_ctx_header(c, "Authorization");
    http_role got = HTTP_ROLE_NONE;
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        const char *v = h + 7;
        size_t vl = strlen(v);
        /* Both compared, so the time does not tell which one matched. */
        bool adm = set(t->admin) && token_eq(v, vl, t->admin);
        bool rd = set(t->read) && token_eq(v, vl, t->read);
        got = adm ? HTTP_ROLE_ADMIN : rd ? HTTP_ROLE_READ : HTTP_ROLE_NONE;
    }
    if (got == HTTP_ROLE_NONE) {
        /* Only a wrong guess counts: a page polling before its user typed
         * the token must not lock that user out. */
        if (c->srv && h)
            af_record(c->srv, c->peer, false);
        http_ctx_add_header(c, "WWW-Authenticate", "Bearer");
        http_reply_error(c, 401, "Authorization", h ? "the bearer token is not valid"
                                                    : "a bearer token is required");
        return false;
    }
    if (c->srv)
        af_record(c->srv, c->peer, true);
    if (need == HTTP_ROLE_ADMIN && got != HTTP_ROLE_ADMIN) {
        http_reply_error(c, 403, "Authorization",
                         "the read-only token cannot change anything; use the admin token");
        return false;
    }
    c->role = got;
    return true;
}

bool http_ctx_bearer_ok(http_ctx *c, const char *token)
{
    http_tokens t = { NULL, token };
    return http_ctx_authorize(c, &t, HTTP_ROLE_ADMIN);
}

/* ---- listeners ---- */

bool http_addr_is_loopback(const sock_addr *a)
{
    const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6))
            return a6->s6_addr[12] == 127;
        return IN6_IS_ADDR_LOOPBACK(a6);
    }
    return false;
}

int http_listen_check(const sock_addr *a, bool has_token, const char *what, const char *how,
                      char *err, size_t errlen)
{
    if (has_token || http_addr_is_loopback(a))
        return 0;
    char as[128];
    snprintf(err, errlen, "%s: %s is not a loopback address and no token guards it; "
             "anyone who can reach it could change the system. Set %s, or listen on "
             "127.0.0.1", what, sock_addr_format(a, as, sizeof as), how);
    return -1;
}

char *http_token_read_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "token file %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "token file %s: expected a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(err, errlen, "token file %s: readable by others (mode %03o); "
                 "run chmod 600 on it", path, (unsigned)(st.st_mode & 0777));
        close(fd);
        return NULL;
    }
    char b[1024];
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "token file %s: %s", path, strerror(errno));
        return NULL;
    }
    b[n] = '\0';
    b[strcspn(b, "\r\n")] = '\0';
    char *s = b;
    while (isspace((unsigned char)*s))
        s++;
    size_t l = strlen(s);
    while (l && isspace((unsigned char)s[l - 1]))
        s[--l] = '\0';
    if (!l) {
        snprintf(err, errlen, "token file %s: empty (expected the token on the first line)", path);
        return NULL;
    }
    char *out = strdup(s);
    if (!out)
        snprintf(err, errlen, "token file %s: out of memory", path);
    explicit_bzero(b, sizeof b);
    return out;
}
