/* log.c -- levelled logging, plain or JSON lines, one write(2) per record.
 *
 * A record is formatted into a stack buffer and written with a single
 * write() so concurrent records never interleave (writes to a pipe or
 * O_APPEND file up to PIPE_BUF are atomic; longer ones are truncated to
 * LOG_MAX with a marker rather than split). Level, format, component and fd
 * are set at start-up, before threads exist, so they are plain statics; the
 * level is read on every log_* call and is atomic only to keep TSan quiet
 * when a test flips it. */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_MAX 4096

static atomic_int g_level = LOG_INFO;
static bool g_json;
static int  g_fd = STDERR_FILENO;
static char g_component[32];

static const char *const upper_names[] = { "DEBUG", "INFO", "WARN", "ERROR", "OFF" };
static const char *const lower_names[] = { "debug", "info", "warn", "error", "off" };

int log_level_parse(const char *s, log_level *out)
{
    if (!s)
        return -1;
    for (int i = LOG_DEBUG; i <= LOG_OFF; i++) {
        if (strcasecmp(s, lower_names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return -1;
}

void log_set_level(log_level level) { atomic_store(&g_level, (int)level); }
log_level log_get_level(void) { return (log_level)atomic_load_explicit(&g_level, memory_order_relaxed); }
void log_set_json(bool json) { g_json = json; }
void log_set_fd(int fd) { g_fd = fd; }

void log_set_component(const char *name)
{
    snprintf(g_component, sizeof g_component, "%s", name ? name : "");
}

int log_init_from_env(void)
{
    int rc = 0;
    const char *lv = getenv("HSCALE_LOG_LEVEL");
    if (lv && *lv) {
        log_level l;
        if (log_level_parse(lv, &l) == 0)
            log_set_level(l);
        else {
            log_write(LOG_WARN, "HSCALE_LOG_LEVEL: unknown level '%s', expected debug|info|warn|error|off", lv);
            rc = -1;
        }
    }
    const char *fmt = getenv("HSCALE_LOG_FORMAT");
    if (fmt && *fmt) {
        if (strcasecmp(fmt, "json") == 0)
            log_set_json(true);
        else if (strcasecmp(fmt, "text") == 0 || strcasecmp(fmt, "plain") == 0)
            log_set_json(false);
        else {
            log_write(LOG_WARN, "HSCALE_LOG_FORMAT: unknown format '%s', expected text|json", fmt);
            rc = -1;
        }
    }
    return rc;
}

/* "2026-11-22T18:00:00.123Z" */
static size_t format_ts(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(out + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000L);
    return k + (m > 0 ? (size_t)m : 0);
}

/* Appends s JSON-escaped into out[*pos..cap); stops early when full. */
static void json_escape(char *out, size_t *pos, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t p = *pos;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc = 0;
        switch (c) {
        case '"':  esc = '"'; break;
        case '\\': esc = '\\'; break;
        case '\n': esc = 'n'; break;
        case '\r': esc = 'r'; break;
        case '\t': esc = 't'; break;
        case '\b': esc = 'b'; break;
        case '\f': esc = 'f'; break;
        default: break;
        }
        if (esc) {
            if (p + 2 > cap) break;
            out[p++] = '\\';
            out[p++] = esc;
        } else if (c < 0x20 || c == 0x7f) {
            if (p + 6 > cap) break;
            memcpy(out + p, "\\u00", 4);
            out[p + 4] = hex[c >> 4];
            out[p + 5] = hex[c & 15];
            p += 6;
        } else {
            if (p + 1 > cap) break;
            out[p++] = (char)c;
        }
    }
    *pos = p;
}

void log_write(log_level level, const char *fmt, ...)
{
    if (level < log_get_level() || level >= LOG_OFF)
        return;
    char msg[LOG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int mn = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (mn < 0)
        return;
    if ((size_t)mn >= sizeof msg)
        memcpy(msg + sizeof msg - 4, "...", 4);
    /* Records are single lines: drop the caller's trailing newlines. */
    size_t ml = strlen(msg);
    while (ml && (msg[ml - 1] == '\n' || msg[ml - 1] == '\r'))
        msg[--ml] = '\0';

    char ts[40];
    format_ts(ts, sizeof ts);

    /* Room for the escaped message (up to 6x) plus the envelope. */
    char line[LOG_MAX + 256];
    size_t cap = sizeof line - 2;   /* keep space for "}\n" */
    size_t p = 0;
    if (g_json) {
        int n = snprintf(line, cap, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"", ts, lower_names[level]);
        p = (size_t)n;
        json_escape(line, &p, cap, g_component);
        const char *mid = "\",\"msg\":\"";
        memcpy(line + p, mid, strlen(mid));
        p += strlen(mid);
        json_escape(line, &p, cap - 1, msg);
        line[p++] = '"';
        line[p++] = '}';
    } else {
        int n = g_component[0]
            ? snprintf(line, cap, "%s %s %s: %s", ts, upper_names[level], g_component, msg)
            : snprintf(line, cap, "%s %s %s", ts, upper_names[level], msg);
        p = n < 0 ? 0 : ((size_t)n >= cap ? cap - 1 : (size_t)n);
    }
    line[p++] = '\n';

    ssize_t w;
    do
        w = write(g_fd, line, p);
    while (w < 0 && errno == EINTR);
}
