/* server_audit.c -- request ids and the audit trail of accepted changes.
 *
 * A handler that has applied a change calls http_audit(); the event goes
 * to the log at info level and into a fixed ring on the server (oldest
 * overwritten) that an API can serve, and optionally to the caller as JSON
 * for its own history. The ring is guarded by audit_mu because a server
 * may have several workers. Events hold the role name, never a token. */
#include "server_conn.h"
#include "writer.h"
#include "../core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AUDIT_DEFAULT 256
#define REQ_ID_MAX    64

http_server *http_ctx_server(const http_ctx *c) { return c->srv; }

static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REQ_ID_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')
              || *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

const char *http_ctx_request_id(http_ctx *c)
{
    if (c->request_id)
        return c->request_id;
    const char *h = http_ctx_header(c, "X-Request-Id");
    if (h && id_ok(h)) {
        c->request_id = h;
    } else {
        char *b = http_ctx_alloc(c, 80);
        if (!b)
            return "-";
        unsigned long n = c->srv ? atomic_fetch_add(&c->srv->req_seq, 1) + 1 : 0;
        snprintf(b, 80, "%s-%lx-%lu", c->srv ? c->srv->name : "http",
                 (unsigned long)time(NULL), n);
        c->request_id = b;
    }
    http_ctx_add_header(c, "X-Request-Id", c->request_id);
    return c->request_id;
}

static void field(buf *b, const char *k, const char *v, bool first)
{
    if (!first)
        buf_append_str(b, ",");
    http_write_json_string(b, k, strlen(k));
    buf_append_str(b, ":");
    http_write_json_string(b, v, strlen(v));
}

void http_audit(http_ctx *c, buf *json_out, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* Names in it may come from the request (a version, an id): one event
     * stays one log line. */
    for (char *p = what; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    char peer[128] = "-", when[40];
    if (c->peer)
        sock_addr_format(c->peer, peer, sizeof peer);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + k, sizeof when - k, ".%03ldZ", ts.tv_nsec / 1000000);
    const char *rid = http_ctx_request_id(c);
    const char *role = http_role_str(c->role);
    log_info("audit: %s role=%s peer=%s request_id=%s", what, role, peer, rid);

    /* The shape of the control plane's history events (time in Unix
     * seconds, kind, reason), so the dashboard and status show them too. */
    char reason[700];
    snprintf(reason, sizeof reason, "%s (%s, from %s)", what, role, peer);
    buf b;
    buf_init(&b);
    buf_printf(&b, "{\"time\":%lld.%03ld", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
    field(&b, "kind", "audit", false);
    field(&b, "when", when, false);
    field(&b, "what", what, false);
    field(&b, "reason", reason, false);
    field(&b, "role", role, false);
    field(&b, "peer", peer, false);
    field(&b, "request_id", rid, false);
    buf_append_str(&b, "}");
    if (json_out)
        buf_append(json_out, buf_head(&b), b.len);
    http_server *s = c->srv;
    char *ev = s && b.len ? strndup(buf_head(&b), b.len) : NULL;
    buf_free(&b);
    if (!ev)
        return;
    pthread_mutex_lock(&s->audit_mu);
    if (!s->audit) {
        s->audit = calloc(s->o.audit_ring, sizeof *s->audit);
        if (!s->audit) {
            pthread_mutex_unlock(&s->audit_mu);
            free(ev);
            return;
        }
    }
    audit_ent *e = &s->audit[s->audit_next];
    free(e->json);
    e->json = ev;
    s->audit_next = (s->audit_next + 1) % s->o.audit_ring;
    if (s->naudit < s->o.audit_ring)
        s->naudit++;
    pthread_mutex_unlock(&s->audit_mu);
}

void http_server_audit_json(http_server *s, buf *out)
{
    buf_append_str(out, "{\"events\":[");
    pthread_mutex_lock(&s->audit_mu);
    unsigned first = (s->audit_next + s->o.audit_ring - s->naudit) % s->o.audit_ring;
    for (unsigned i = 0; i < s->naudit; i++) {
        if (i)
            buf_append_str(out, ",");
        buf_append_str(out, s->audit[(first + i) % s->o.audit_ring].json);
    }
    pthread_mutex_unlock(&s->audit_mu);
    buf_append_str(out, "]}");
}

void http_reply_audit(http_ctx *c)
{
    buf b;
    buf_init(&b);
    http_server_audit_json(c->srv, &b);
    http_reply_buf_json(c, 200, &b);
    buf_free(&b);
}

void http_audit_free(http_server *s)
{
    if (s->audit)
        for (unsigned i = 0; i < s->o.audit_ring; i++)
            free(s->audit[i].json);
    free(s->audit);
    s->audit = NULL;
}
