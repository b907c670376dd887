/* redis_sentinel.c -- finding and following the Redis master through Redis
 * Sentinel, for the shared cache.
 *
 * One thread per cache. It asks the sentinels in turn for the master's
 * address (SENTINEL get-master-addr-by-name), and believes an address only
 * once that server answers ROLE with "master": a sentinel may still name a
 * master that is dead or was just demoted. It then holds a subscription to
 * +switch-master on the sentinel that answered and waits on that socket
 * and on a wake-up pipe:
 *   - a +switch-master for our name: check the new address with ROLE, and
 *     report it (or re-ask when it is not a master yet);
 *   - st_sentinel_reask (a worker saw -READONLY, a timeout or a refused
 *     connection): ask the sentinels again now;
 *   - nothing for SN_RECHECK_MS while up: ask again anyway (a missed
 *     message, a partition between us and the sentinel);
 *   - while no verified master exists: ask again every SN_RETRY_MS.
 * The callback reports up (a verified address) or lost; the cache fails
 * open while lost. Commands on the subscribed connection are impossible in
 * RESP2, so every question uses its own short connection: questions are
 * rare (a failover, a reask, every few seconds), so this costs nothing.
 *
 * The hiredis context is blocking; the thread polls its fd and only reads
 * when data is there, so a quiet subscription never trips the context's
 * read timeout (which would kill the context). */
#include <errno.h>
#include <fcntl.h>
#include <hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "store/store_int.h"

#define SN_RECHECK_MS 5000
#define SN_RETRY_MS   100
#define SN_MAX        16

typedef struct sn_addr { char host[128]; int port; } sn_addr;

struct st_sentinel {
    sn_addr          sentinels[SN_MAX];
    int              n;
    int              next;          /* sentinel to ask first */
    char             master[128];
    char            *password;
    uint64_t         timeout_us;
    st_sentinel_cb  *cb;
    void            *cb_arg;
    int              wake[2];       /* pipe: [0] polled by the thread */
    _Atomic bool     reask, stopping;
    pthread_t        thread;
    bool             started;
    bool             up;            /* what the callback last heard (thread only) */
    sn_addr          cur;
};

/* ---- parsers ------------------------------------------------------------ */

/* A host as sentinels print it: an IP or a name, printable ASCII with no
 * quote or backslash (it ends up in logs and JSON). */
static bool sn_host_ok(const char *h, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)h[i] < 0x21 || (unsigned char)h[i] > 0x7e || h[i] == '"' ||
            h[i] == '\\')
            return false;
    return true;
}

static int sn_port(const char *s, size_t n)
{
    if (!n || n > 5)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

int st_sentinel_parse_switch(const char *msg, size_t len, const char *master,
                             char *host, size_t hostlen, int *port)
{
    const char *f[5];
    size_t fl[5];
    size_t i = 0;
    int nf = 0;
    while (i < len) {
        while (i < len && msg[i] == ' ')
            i++;
        if (i == len)
            break;
        if (nf == 5)
            return -1;            /* more than five fields */
        f[nf] = msg + i;
        while (i < len && msg[i] != ' ')
            i++;
        fl[nf] = (size_t)(msg + i - f[nf]);
        nf++;
    }
    if (nf != 5)
        return -1;
    for (int k = 0; k < 5; k++)
        for (size_t j = 0; j < fl[k]; j++)
            if ((unsigned char)f[k][j] < 0x21 || (unsigned char)f[k][j] > 0x7e)
                return -1;        /* control bytes, NUL, non-ASCII: not ours */
    int oldp = sn_port(f[2], fl[2]), newp = sn_port(f[4], fl[4]);
    if (oldp < 0 || newp < 0 || fl[3] >= hostlen || !sn_host_ok(f[3], fl[3]))
        return -1;
    if (strlen(master) != fl[0] || memcmp(master, f[0], fl[0]) != 0)
        return 0;
    memcpy(host, f[3], fl[3]);
    host[fl[3]] = '\0';
    *port = newp;
    return 1;
}

int st_sentinel_parse_addr(const redisReply *r, char *host, size_t hostlen, int *port)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return -1;
    const redisReply *h = r->element[0], *p = r->element[1];
    if (!h || !p || h->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING)
        return -1;
    if (h->len >= hostlen || !sn_host_ok(h->str, h->len))
        return -1;
    int v = sn_port(p->str, p->len);
    if (v < 0)
        return -1;
    memcpy(host, h->str, h->len);
    host[h->len] = '\0';
    *port = v;
    return 0;
}

int st_redis_parse_role(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || !r->element[0])
        return -1;
    const redisReply *e = r->element[0];
    if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS)
        return -1;
    return e->len == 6 && memcmp(e->str, "master", 6) == 0 ? 1 : 0;
}

/* ---- questions ---------------------------------------------------------- */

/* 1 when host:port answers ROLE as a master, 0 when as something else,
 * -1 when it cannot be asked. */
static int sn_verify(st_sentinel *sn, const char *host, int port)
{
    redisContext *c = st_redis_connect(host, port, sn->timeout_us, sn->password, NULL);
    if (!c)
        return -1;
    redisReply *rep = redisCommand(c, "ROLE");
    int rc = rep ? st_redis_parse_role(rep) : -1;
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return rc;
}

/* Asks each sentinel, starting with sn->next, until one names a master
 * that ROLE confirms. 1 with *out set (and sn->next pointing at that
 * sentinel), 0 when sentinels answered but no named master is one, -1
 * when no sentinel answered. */
static int sn_resolve(st_sentinel *sn, sn_addr *out)
{
    int answered = 0;
    for (int k = 0; k < sn->n && !sn->stopping; k++) {
        int i = (sn->next + k) % sn->n;
        redisContext *c = st_redis_connect(sn->sentinels[i].host, sn->sentinels[i].port,
                                           sn->timeout_us, sn->password, NULL);
        if (!c)
            continue;
        redisReply *rep = redisCommand(c, "SENTINEL get-master-addr-by-name %s", sn->master);
        sn_addr a;
        int ok = rep ? st_sentinel_parse_addr(rep, a.host, sizeof a.host, &a.port) : -1;
        if (rep) {
            answered++;
            freeReplyObject(rep);
        }
        redisFree(c);
        if (ok < 0)
            continue;
        if (sn_verify(sn, a.host, a.port) == 1) {
            sn->next = i;
            *out = a;
            return 1;
        }
    }
    return answered ? 0 : -1;
}

static void sn_report(st_sentinel *sn, int rc, const sn_addr *a)
{
    if (rc == 1) {
        if (!sn->up || strcmp(sn->cur.host, a->host) || sn->cur.port != a->port)
            log_info("cache: redis master '%s' is %s:%d (checked with ROLE)", sn->master,
                     a->host, a->port);
        sn->up = true;
        sn->cur = *a;
        sn->cb(sn->cb_arg, true, a->host, a->port);
    } else if (rc == 0 || sn->up) {
        /* rc -1 (no sentinel answered) keeps a master we have: the
         * sentinels being unreachable says nothing about it, and workers'
         * errors re-ask if it fails too. rc 0 means they answered and none
         * of the masters they named is one. */
        if (rc == 0) {
            if (sn->up)
                log_warn("cache: redis master '%s' lost: no sentinel names a master that "
                         "answers ROLE as one; the cache misses until one does", sn->master);
            sn->up = false;
            sn->cb(sn->cb_arg, false, NULL, 0);
        }
    }
}

/* The subscription: a connection to a sentinel (the one that answered
 * last) subscribed to +switch-master, or NULL. */
static redisContext *sn_subscribe(st_sentinel *sn)
{
    for (int k = 0; k < sn->n; k++) {
        int i = (sn->next + k) % sn->n;
        redisContext *c = st_redis_connect(sn->sentinels[i].host, sn->sentinels[i].port,
                                           sn->timeout_us, sn->password, NULL);
        if (!c)
            continue;
        redisReply *rep = redisCommand(c, "SUBSCRIBE +switch-master");
        bool ok = rep && rep->type == REDIS_REPLY_ARRAY;
        if (rep)
            freeReplyObject(rep);
        if (ok)
            return c;
        redisFree(c);
    }
    return NULL;
}

/* Handles one pushed message. true when the master may have moved. */
static bool sn_message(st_sentinel *sn, const redisReply *m, sn_addr *moved)
{
    if (!m || m->type != REDIS_REPLY_ARRAY || m->elements != 3)
        return false;
    const redisReply *kind = m->element[0], *payload = m->element[2];
    if (kind->type != REDIS_REPLY_STRING || kind->len != 7 || memcmp(kind->str, "message", 7) ||
        payload->type != REDIS_REPLY_STRING)
        return false;
    int rc = st_sentinel_parse_switch(payload->str, payload->len, sn->master, moved->host,
                                      sizeof moved->host, &moved->port);
    if (rc < 0)
        log_warn("cache: unreadable +switch-master message from a sentinel: %.*s",
                 (int)(payload->len > 200 ? 200 : payload->len), payload->str);
    return rc == 1;
}

static void *sn_main(void *arg)
{
    st_sentinel *sn = arg;
    redisContext *sub = NULL;
    uint64_t last_ask = 0;
    bool ask = false;
    while (!sn->stopping) {
        if (ask || atomic_exchange(&sn->reask, false)) {
            sn_addr a;
            int rc = sn_resolve(sn, &a);
            sn_report(sn, rc, &a);
            last_ask = st_now_us();
            ask = false;
        }
        if (!sub && !(sub = sn_subscribe(sn))) {
            /* No sentinel reachable: keep asking on the retry period. */
            struct pollfd pw = { sn->wake[0], POLLIN, 0 };
            poll(&pw, 1, SN_RETRY_MS * 5);
            char drain[64];
            while (read(sn->wake[0], drain, sizeof drain) > 0)
                ;
            ask = true;
            continue;
        }
        int wait = sn->up ? SN_RECHECK_MS : SN_RETRY_MS;
        uint64_t since = (st_now_us() - last_ask) / 1000;
        wait = since >= (uint64_t)wait ? 0 : wait - (int)since;
        struct pollfd pf[2] = { { sub->fd, POLLIN, 0 }, { sn->wake[0], POLLIN, 0 } };
        int n = poll(pf, 2, wait);
        if (n < 0 && errno != EINTR)
            break;
        if (n == 0) {
            ask = true;            /* the periodic check, or the retry while lost */
            continue;
        }
        if (pf[1].revents) {
            char drain[64];
            while (read(sn->wake[0], drain, sizeof drain) > 0)
                ;
        }
        if (pf[0].revents) {
            if (redisBufferRead(sub) != REDIS_OK) {
                log_warn("cache: lost the sentinel subscription: %s; re-subscribing",
                         sub->errstr);
                redisFree(sub);
                sub = NULL;
                ask = true;
                continue;
            }
            void *rep = NULL;
            while (redisGetReplyFromReader(sub, &rep) == REDIS_OK && rep) {
                sn_addr a;
                if (sn_message(sn, rep, &a)) {
                    log_info("cache: sentinel says redis master '%s' moved to %s:%d",
                             sn->master, a.host, a.port);
                    if (sn_verify(sn, a.host, a.port) == 1)
                        sn_report(sn, 1, &a);
                    else
                        ask = true;   /* not promoted yet: ask until it is */
                }
                freeReplyObject(rep);
                rep = NULL;
            }
        }
    }
    if (sub)
        redisFree(sub);
    return NULL;
}

st_sentinel *st_sentinel_start(const st_redis_opts *o, st_sentinel_cb *cb, void *arg,
                               st_err *err)
{
    if (!o->nsentinels || o->nsentinels > SN_MAX) {
        st_fail(err, ST_EINVAL, "cache.sentinels: expected 1 to %d host:port addresses, got %zu",
                SN_MAX, o->nsentinels);
        return NULL;
    }
    if (!o->master || !*o->master || strlen(o->master) >= 128 || strchr(o->master, ' ')) {
        st_fail(err, ST_EINVAL, "cache.sentinel_master: expected a master name without "
                "spaces, got '%s'", o->master ? o->master : "");
        return NULL;
    }
    st_sentinel *sn = calloc(1, sizeof *sn);
    if (!sn) {
        st_fail(err, ST_ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < o->nsentinels; i++) {
        if (st_redis_split_addr(o->sentinels[i], sn->sentinels[i].host,
                                sizeof sn->sentinels[i].host, &sn->sentinels[i].port) < 0) {
            st_fail(err, ST_EINVAL, "cache.sentinels[%zu]: expected host:port, got '%s'", i,
                    o->sentinels[i] ? o->sentinels[i] : "");
            free(sn);
            return NULL;
        }
    }
    sn->n = (int)o->nsentinels;
    snprintf(sn->master, sizeof sn->master, "%s", o->master);
    sn->timeout_us = o->timeout_us ? o->timeout_us : 50000;
    sn->cb = cb;
    sn->cb_arg = arg;
    sn->wake[0] = sn->wake[1] = -1;
    if ((o->password && !(sn->password = strdup(o->password))) ||
        pipe2(sn->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        st_fail(err, ST_ENOMEM, "cannot set up the sentinel follower: %s", strerror(errno));
        st_sentinel_stop(sn);
        return NULL;
    }
    /* The first answer before serving, so the first requests can hit; a
     * failure here is not fatal (the thread keeps asking). */
    sn_addr a;
    int rc = sn_resolve(sn, &a);
    if (rc == 1)
        sn_report(sn, rc, &a);
    else
        log_warn("cache: no verified redis master '%s' from %d sentinel%s yet; the cache "
                 "misses until there is one", sn->master, sn->n, sn->n == 1 ? "" : "s");
    if (pthread_create(&sn->thread, NULL, sn_main, sn) != 0) {
        st_fail(err, ST_ENOMEM, "cannot start the sentinel follower thread");
        st_sentinel_stop(sn);
        return NULL;
    }
    sn->started = true;
    return sn;
}

void st_sentinel_reask(st_sentinel *sn)
{
    if (!sn || atomic_exchange(&sn->reask, true))
        return;
    ssize_t w = write(sn->wake[1], "r", 1);
    (void)w;     /* a full pipe already wakes the thread */
}

void st_sentinel_stop(st_sentinel *sn)
{
    if (!sn)
        return;
    if (sn->started) {
        sn->stopping = true;
        ssize_t w = write(sn->wake[1], "s", 1);
        (void)w;
        pthread_join(sn->thread, NULL);
    }
    if (sn->wake[0] >= 0)
        close(sn->wake[0]);
    if (sn->wake[1] >= 0)
        close(sn->wake[1]);
    free(sn->password);
    free(sn);
}
