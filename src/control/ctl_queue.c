/* ctl_queue.c -- polls a queue's depth for the queue policy: a Redis list
 * (Celery's Redis broker), a Prometheus instant query, or a number in a
 * JSON document at a URL.
 *
 * Every poll is bounded by the configured timeout and answers a reading;
 * a failure of any kind leaves depth NAN with the reason, never 0: an
 * unreachable broker must not look like an empty queue.
 *
 * Redis: one connection is kept between polls (re-made after any error).
 * One pipelined round trip asks LLEN of the list, LLEN of kombu's priority
 * lists (list + "\x06\x16" + 1..9: kombu's separator; its default steps
 * are 3, 6 and 9, others may be configured), and HLEN of the unacked hash,
 * where kombu keeps messages a worker reserved and has not acknowledged
 * (prefetched ones, and running ones with acks_late). Key names were
 * checked against a celery 5.2 worker with redis-cli MONITOR. */
#include "control/ctl_autoscale.h"

#include <hiredis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/client.h"

#define KOMBU_SEP   "\x06\x16"
#define PRIORITIES  9

struct ctl_queue_src {
    redisContext *rc;
    char          for_url[1024];   /* the URL rc was made for */
};

ctl_qsrc ctl_queue_source(const ctl_queue_cfg *q)
{
    if (q->redis && q->redis[0])
        return CTL_QSRC_REDIS;
    if (q->prometheus.url && q->prometheus.url[0])
        return CTL_QSRC_PROMETHEUS;
    if (q->url && q->url[0])
        return CTL_QSRC_JSON;
    return CTL_QSRC_NONE;
}

ctl_queue_src *ctl_queue_src_new(void)
{
    return calloc(1, sizeof(ctl_queue_src));
}

static void drop(ctl_queue_src *s)
{
    if (s->rc)
        redisFree(s->rc);
    s->rc = NULL;
}

void ctl_queue_src_free(ctl_queue_src *s)
{
    if (!s)
        return;
    drop(s);
    free(s);
}

/* Not inlined: the message is cut to fit by design, and inlined the
 * truncation check would flag every call. */
static __attribute__((noinline)) void fail(ctl_queue_reading *out, const char *fmt, const char *a,
                                           const char *b)
{
    out->depth = out->waiting = out->reserved = NAN;
    snprintf(out->error, sizeof out->error, fmt, a, b);
}

/* A reply that must be an integer; false (and the reason) otherwise. */
static bool int_reply(redisReply *r, const char *what, double *acc, ctl_queue_reading *out)
{
    if (r && r->type == REDIS_REPLY_INTEGER) {
        *acc += (double)r->integer;
        return true;
    }
    fail(out, "%s: %.120s", what,
         r && r->type == REDIS_REPLY_ERROR ? r->str : "no integer in the reply");
    return false;
}

static bool redis_cmd_ok(ctl_queue_src *s, ctl_queue_reading *out, const char *what,
                         redisReply *r)
{
    bool ok = r && r->type != REDIS_REPLY_ERROR;
    if (!ok)
        fail(out, "redis %s: %.120s", what, r ? r->str : s->rc->errstr);
    if (r)
        freeReplyObject(r);
    return ok;
}

static bool redis_connect(ctl_queue_src *s, const ctl_queue_cfg *q, ctl_queue_reading *out,
                          struct timeval tv)
{
    ctl_redis_url u;
    char e[200];
    if (ctl_redis_url_parse(q->redis, &u, e, sizeof e) < 0) {
        fail(out, "redis: %s%s", e, "");
        return false;
    }
    s->rc = redisConnectWithTimeout(u.host, u.port, tv);
    if (!s->rc || s->rc->err) {
        char hp[300];
        snprintf(hp, sizeof hp, "%s:%d", u.host, u.port);
        fail(out, "redis %s: %.120s", hp, s->rc ? s->rc->errstr : "out of memory");
        drop(s);
        return false;
    }
    redisSetTimeout(s->rc, tv);
    if (u.password[0]) {
        redisReply *r = u.user[0] ? redisCommand(s->rc, "AUTH %s %s", u.user, u.password)
                                  : redisCommand(s->rc, "AUTH %s", u.password);
        if (!redis_cmd_ok(s, out, "AUTH", r))
            goto fail;
    }
    if (u.db && !redis_cmd_ok(s, out, "SELECT", redisCommand(s->rc, "SELECT %d", u.db)))
        goto fail;
    snprintf(s->for_url, sizeof s->for_url, "%s", q->redis);
    return true;
fail:
    drop(s);
    return false;
}

static void poll_redis(ctl_queue_src *s, const ctl_queue_cfg *q, ctl_queue_reading *out)
{
    uint64_t t = q->timeout ? q->timeout : 1000000u;
    struct timeval tv = { (time_t)(t / 1000000u), (suseconds_t)(t % 1000000u) };
    if (s->rc && strcmp(s->for_url, q->redis) != 0)
        drop(s);
    if (!s->rc && !redis_connect(s, q, out, tv))
        return;
    const char *list = q->list && q->list[0] ? q->list : "celery";
    size_t ll = strlen(list);
    char key[600];
    if (ll > sizeof key - 4) {
        fail(out, "list: name too long%s%s", "", "");
        return;
    }
    int sent = 0;
    redisAppendCommand(s->rc, "LLEN %b", list, ll);
    sent++;
    for (int pri = 1; pri <= PRIORITIES; pri++) {
        int n = snprintf(key, sizeof key, "%s" KOMBU_SEP "%d", list, pri);
        redisAppendCommand(s->rc, "LLEN %b", key, (size_t)n);
        sent++;
    }
    bool unacked = q->unacked && q->unacked[0];
    if (unacked) {
        redisAppendCommand(s->rc, "HLEN %s", q->unacked);
        sent++;
    }
    double waiting = 0, reserved = 0;
    bool ok = true;
    for (int i = 0; i < sent; i++) {
        redisReply *r = NULL;
        if (redisGetReply(s->rc, (void **)&r) != REDIS_OK) {
            fail(out, "redis: %.120s%s", s->rc->errstr[0] ? s->rc->errstr : "no reply", "");
            drop(s);   /* the stream is out of step: start over */
            return;
        }
        if (ok)
            ok = unacked && i == sent - 1 ? int_reply(r, q->unacked, &reserved, out)
                                          : int_reply(r, i == 0 ? list : "priority list",
                                                      &waiting, out);
        freeReplyObject(r);
    }
    if (!ok)
        return;   /* e.g. WRONGTYPE: the key is not a list; the connection is fine */
    out->waiting = waiting;
    out->reserved = unacked ? reserved : NAN;
    out->depth = waiting + reserved;
}

static void poll_http(const ctl_queue_cfg *q, ctl_qsrc kind, ctl_queue_reading *out)
{
    buf url;
    buf_init(&url);
    if (kind == CTL_QSRC_PROMETHEUS)
        ctl_prom_query_url(q->prometheus.url, q->prometheus.query, &url);
    else
        buf_append_str(&url, q->url);
    buf_append(&url, "", 1);
    int timeout_ms = (int)((q->timeout ? q->timeout : 1000000u) / 1000u);
    http_result r;
    http_result_init(&r);
    char e[256];
    double v = NAN;
    const char *what = kind == CTL_QSRC_PROMETHEUS ? "prometheus" : "url";
    if (http_fetch("GET", buf_head(&url), "Accept: application/json\r\n", NULL, 0,
                   timeout_ms > 0 ? timeout_ms : 1, &r, e, sizeof e) < 0) {
        fail(out, "%s: %.150s", what, e);
    } else if (r.status != 200 && !(kind == CTL_QSRC_PROMETHEUS && r.status == 400)) {
        snprintf(e, sizeof e, "answered %d", r.status);
        fail(out, "%s: %s", what, e);
    } else if ((kind == CTL_QSRC_PROMETHEUS
                    ? ctl_prom_value_parse(buf_head(&r.body), r.body.len, &v, e, sizeof e)
                    : ctl_json_number_at(buf_head(&r.body), r.body.len, q->json, &v, e, sizeof e)) < 0) {
        fail(out, "%s: %.150s", what, e);
    } else {
        out->depth = out->waiting = v;
        out->reserved = NAN;
    }
    http_result_free(&r);
    buf_free(&url);
}

void ctl_queue_poll(ctl_queue_src *s, const ctl_queue_cfg *q, ctl_queue_reading *out)
{
    memset(out, 0, sizeof *out);
    out->depth = out->waiting = out->reserved = NAN;
    ctl_qsrc kind = ctl_queue_source(q);
    out->on = kind != CTL_QSRC_NONE;
    if (kind == CTL_QSRC_REDIS)
        poll_redis(s, q, out);
    else if (kind != CTL_QSRC_NONE)
        poll_http(q, kind, out);
}
