/* gw_cache_policy.c -- RFC 9111 for a shared cache, as pure functions:
 * Cache-Control parsing, HTTP dates, freshness lifetime and age,
 * storability, the use of a stored response (fresh, stale with
 * stale-while-revalidate or stale-if-error, revalidate) and client
 * conditionals.
 *
 * Choices where the RFC leaves room (each the stricter one):
 *  - no heuristic freshness: a response without s-maxage, max-age or
 *    Expires is not served from the cache unless the route gives a TTL;
 *  - a malformed or conflicting max-age / s-maxage makes the response
 *    stale (4.2.1), an invalid Expires is in the past (5.3);
 *  - qualified no-cache="f" and private="f" act as their unqualified forms
 *    (the whole response, not just the named fields);
 *  - a response that sets a cookie is not stored (one client's session
 *    must never reach another);
 *  - s-maxage, must-revalidate and proxy-revalidate forbid serving stale
 *    for any reason (5.2.2.2, 5.2.2.8, 5.2.2.10), so they override
 *    stale-while-revalidate and stale-if-error. */
#include "gateway/gw_cache.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void gw_cc_init(gw_cc *cc)
{
    cc->f = 0;
    cc->max_age = cc->s_maxage = cc->swr = cc->sie = GW_CC_ABSENT;
    cc->max_stale = cc->min_fresh = GW_CC_ABSENT;
}

int64_t gw_delta_seconds(const char *p, size_t n)
{
    if (n == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (v < GW_DELTA_MAX)
            v = v * 10 + (p[i] - '0');
    }
    return v > GW_DELTA_MAX ? GW_DELTA_MAX : v;
}

/* A delta directive's value: the first one wins; a second that differs,
 * or a malformed one, marks the ages bad (for max-age and s-maxage). */
static void set_delta(gw_cc *cc, int64_t *slot, const char *v, size_t n, bool is_age)
{
    int64_t d = gw_delta_seconds(v, n);
    if (d < 0) {
        if (is_age)
            cc->f |= GW_CC_BAD_AGE;
        return;
    }
    if (*slot == GW_CC_ABSENT)
        *slot = d;
    else if (*slot != d && is_age)
        cc->f |= GW_CC_BAD_AGE;
}

static bool name_is(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

void gw_cc_parse(gw_cc *cc, const char *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t ns = i;
        while (i < n && v[i] != '=' && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        size_t nl = i - ns;
        const char *val = NULL;
        size_t vl = 0;
        bool has_val = false;
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i < n && v[i] == '=') {
            i++;
            while (i < n && (v[i] == ' ' || v[i] == '\t'))
                i++;
            has_val = true;
            if (i < n && v[i] == '"') {
                /* quoted-string: backslash escapes one character */
                size_t s = ++i;
                while (i < n && v[i] != '"')
                    i += (v[i] == '\\' && i + 1 < n) ? 2 : 1;
                val = v + s;
                vl = (i < n ? i : n) - s;
                if (i < n)
                    i++;
            } else {
                size_t s = i;
                while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
                    i++;
                val = v + s;
                vl = i - s;
            }
        }
        /* anything else up to the next comma is junk of this directive */
        while (i < n && v[i] != ',')
            i++;
        if (nl == 0)
            continue;
        const char *nm = v + ns;
        if (name_is(nm, nl, "max-age"))
            set_delta(cc, &cc->max_age, val, has_val ? vl : 0, true);
        else if (name_is(nm, nl, "s-maxage"))
            set_delta(cc, &cc->s_maxage, val, has_val ? vl : 0, true);
        else if (name_is(nm, nl, "stale-while-revalidate"))
            set_delta(cc, &cc->swr, val, has_val ? vl : 0, false);
        else if (name_is(nm, nl, "stale-if-error"))
            set_delta(cc, &cc->sie, val, has_val ? vl : 0, false);
        else if (name_is(nm, nl, "min-fresh"))
            set_delta(cc, &cc->min_fresh, val, has_val ? vl : 0, false);
        else if (name_is(nm, nl, "max-stale")) {
            if (!has_val)
                cc->max_stale = GW_DELTA_MAX;
            else
                set_delta(cc, &cc->max_stale, val, vl, false);
        } else if (name_is(nm, nl, "no-store"))
            cc->f |= GW_CC_NO_STORE;
        else if (name_is(nm, nl, "no-cache"))
            cc->f |= GW_CC_NO_CACHE;
        else if (name_is(nm, nl, "private"))
            cc->f |= GW_CC_PRIVATE;
        else if (name_is(nm, nl, "public"))
            cc->f |= GW_CC_PUBLIC;
        else if (name_is(nm, nl, "must-revalidate"))
            cc->f |= GW_CC_MUST_REVALIDATE;
        else if (name_is(nm, nl, "proxy-revalidate"))
            cc->f |= GW_CC_PROXY_REVALIDATE;
        else if (name_is(nm, nl, "must-understand"))
            cc->f |= GW_CC_MUST_UNDERSTAND;
        else if (name_is(nm, nl, "immutable"))
            cc->f |= GW_CC_IMMUTABLE;
        else if (name_is(nm, nl, "no-transform"))
            cc->f |= GW_CC_NO_TRANSFORM;
        else if (name_is(nm, nl, "only-if-cached"))
            cc->f |= GW_CC_ONLY_IF_CACHED;
    }
}

/* --- dates -------------------------------------------------------------- */

static const char *const months[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
static const char *const wdays[7] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };

static int num(const char *p, size_t n, size_t *i, int digits_min, int digits_max)
{
    int v = 0, d = 0;
    while (*i < n && d < digits_max && p[*i] >= '0' && p[*i] <= '9') {
        v = v * 10 + (p[*i] - '0');
        (*i)++;
        d++;
    }
    return d >= digits_min ? v : -1;
}

static int month(const char *p, size_t n, size_t *i)
{
    if (*i + 3 > n)
        return -1;
    for (int m = 0; m < 12; m++)
        if (strncmp(p + *i, months[m], 3) == 0) {
            *i += 3;
            return m;
        }
    return -1;
}

static bool lit(const char *p, size_t n, size_t *i, const char *s)
{
    size_t l = strlen(s);
    if (*i + l > n || memcmp(p + *i, s, l) != 0)
        return false;
    *i += l;
    return true;
}

static bool hms(const char *p, size_t n, size_t *i, int *h, int *mi, int *s)
{
    *h = num(p, n, i, 2, 2);
    if (*h < 0 || !lit(p, n, i, ":"))
        return false;
    *mi = num(p, n, i, 2, 2);
    if (*mi < 0 || !lit(p, n, i, ":"))
        return false;
    *s = num(p, n, i, 2, 2);
    return *s >= 0;
}

static int64_t mk(int y, int mo, int d, int h, int mi, int s)
{
    if (mo < 0 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 || y < 1970 || y > 9999)
        return -1;
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mo, .tm_mday = d,
                     .tm_hour = h, .tm_min = mi, .tm_sec = s };
    time_t t = timegm(&tm);
    return t < 0 ? -1 : (int64_t)t;
}

int64_t gw_http_date(const char *p, size_t n)
{
    while (n && (p[0] == ' ' || p[0] == '\t')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    size_t i = 0;
    int d, mo, y, h, mi, s;
    /* the day name: three letters (IMF, asctime) or a full name (RFC 850) */
    while (i < n && ((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z')))
        i++;
    if (i < 3)
        return -1;
    if (i < n && p[i] == ',') {
        i++;
        if (!lit(p, n, &i, " "))
            return -1;
        d = num(p, n, &i, 2, 2);
        if (d < 0)
            return -1;
        if (i < n && p[i] == ' ') {           /* IMF-fixdate: "06 Nov 1994 08:49:37 GMT" */
            i++;
            if ((mo = month(p, n, &i)) < 0 || !lit(p, n, &i, " ") || (y = num(p, n, &i, 4, 4)) < 0
                || !lit(p, n, &i, " ") || !hms(p, n, &i, &h, &mi, &s) || !lit(p, n, &i, " GMT"))
                return -1;
        } else {                              /* RFC 850: "06-Nov-94 08:49:37 GMT" */
            if (!lit(p, n, &i, "-") || (mo = month(p, n, &i)) < 0 || !lit(p, n, &i, "-")
                || (y = num(p, n, &i, 2, 2)) < 0 || !lit(p, n, &i, " ")
                || !hms(p, n, &i, &h, &mi, &s) || !lit(p, n, &i, " GMT"))
                return -1;
            y += y < 70 ? 2000 : 1900;        /* RFC 9110 5.6.7: the 50-year rule, simplified */
        }
    } else {                                  /* asctime: "Sun Nov  6 08:49:37 1994" */
        if (!lit(p, n, &i, " ") || (mo = month(p, n, &i)) < 0 || !lit(p, n, &i, " "))
            return -1;
        if (i < n && p[i] == ' ')
            i++;
        if ((d = num(p, n, &i, 1, 2)) < 0 || !lit(p, n, &i, " ") || !hms(p, n, &i, &h, &mi, &s)
            || !lit(p, n, &i, " ") || (y = num(p, n, &i, 4, 4)) < 0)
            return -1;
    }
    if (i != n)
        return -1;
    return mk(y, mo, d, h, mi, s);
}

size_t gw_http_date_fmt(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    int n = snprintf(out, 32, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday], tm.tm_mday,
                     months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return n > 0 && n < 32 ? (size_t)n : 0;
}

/* --- freshness ---------------------------------------------------------- */

int64_t gw_cache_lifetime(const gw_cc *cc, int64_t date, int64_t expires,
                          int64_t response_time, int64_t override_ttl)
{
    if (cc->f & GW_CC_BAD_AGE)
        return 0;
    if (cc->s_maxage != GW_CC_ABSENT)
        return cc->s_maxage;
    if (cc->max_age != GW_CC_ABSENT)
        return cc->max_age;
    if (expires != GW_CC_ABSENT) {
        int64_t base = date >= 0 ? date : response_time;
        return expires > base ? expires - base : 0;
    }
    return override_ttl >= 0 ? override_ttl : GW_CC_ABSENT;
}

int64_t gw_cache_initial_age(int64_t age_hdr, int64_t date, int64_t request_time,
                             int64_t response_time)
{
    int64_t apparent = date >= 0 && response_time > date ? response_time - date : 0;
    int64_t delay = response_time > request_time ? response_time - request_time : 0;
    int64_t corrected = (age_hdr >= 0 ? age_hdr : 0) + delay;
    return apparent > corrected ? apparent : corrected;
}

bool gw_cache_status_ok(int status)
{
    switch (status) {
    case 200: case 203: case 204: case 300: case 301: case 302: case 303: case 307: case 308:
    case 400: case 403: case 404: case 405: case 410: case 414: case 451:
    case 500: case 501: case 502: case 503: case 504:
        return true;
    default:
        return false;
    }
}

const char *gw_cache_unstorable(const gw_store_check *in)
{
    const gw_cc *rc = in->resp_cc;
    if (in->method != HTTP_GET)
        return "method";
    if (!gw_cache_status_ok(in->status))
        return (rc->f & GW_CC_MUST_UNDERSTAND) ? "must-understand" : "status";
    /* must-understand with a status this cache knows overrides no-store
     * (RFC 9111 5.2.2.3); the request's no-store still holds. */
    if ((rc->f & GW_CC_NO_STORE) && !(rc->f & GW_CC_MUST_UNDERSTAND))
        return "no-store";
    if (in->req_cc && (in->req_cc->f & GW_CC_NO_STORE))
        return "request no-store";
    if (rc->f & GW_CC_PRIVATE)
        return "private";
    if (in->req_auth && !(rc->f & (GW_CC_PUBLIC | GW_CC_MUST_REVALIDATE)) && rc->s_maxage == GW_CC_ABSENT)
        return "authorization";
    if (in->set_cookie)
        return "set-cookie";
    if (in->vary_star)
        return "vary *";
    /* Heuristic-free: no explicit lifetime (and no route TTL) means a
     * response the cache could never serve without asking, unless it
     * carries no-cache (stored to be revalidated each time). */
    if (in->lifetime == GW_CC_ABSENT && !(rc->f & GW_CC_NO_CACHE))
        return "no freshness";
    return NULL;
}

const char *gw_cache_use_str(gw_cache_use u)
{
    switch (u) {
    case GW_USE_FRESH:      return "fresh";
    case GW_USE_STALE_OK:   return "stale-ok";
    case GW_USE_SWR:        return "stale-while-revalidate";
    case GW_USE_REVALIDATE: return "revalidate";
    default:                return "unknown";
    }
}

/* Stale may never be served without asking the origin. */
static bool stale_forbidden(const gw_cc *rc)
{
    return (rc->f & (GW_CC_MUST_REVALIDATE | GW_CC_PROXY_REVALIDATE | GW_CC_NO_CACHE))
           || rc->s_maxage != GW_CC_ABSENT;
}

gw_cache_use gw_cache_decide(const gw_use_in *in)
{
    const gw_cc *rc = in->resp_cc, *q = in->req_cc;
    int64_t life = in->lifetime < 0 ? 0 : in->lifetime;
    bool fresh = !(rc->f & GW_CC_NO_CACHE) && in->age < life;
    bool req_nocache = in->req_pragma_no_cache || (q && ((q->f & GW_CC_NO_CACHE) || q->max_age == 0));
    if (fresh) {
        /* immutable: a fresh response is not re-asked for on a reload */
        if (req_nocache && !(rc->f & GW_CC_IMMUTABLE))
            return GW_USE_REVALIDATE;
        if (q && q->max_age != GW_CC_ABSENT && in->age > q->max_age)
            return GW_USE_REVALIDATE;
        if (q && q->min_fresh != GW_CC_ABSENT && life - in->age < q->min_fresh)
            return GW_USE_REVALIDATE;
        return GW_USE_FRESH;
    }
    if (req_nocache || stale_forbidden(rc))
        return GW_USE_REVALIDATE;
    int64_t over = in->age - life;
    if (q && q->max_stale != GW_CC_ABSENT && over <= q->max_stale
        && (q->max_age == GW_CC_ABSENT || in->age <= q->max_age))
        return GW_USE_STALE_OK;
    int64_t swr = rc->swr != GW_CC_ABSENT ? rc->swr : in->route_swr;
    if (swr > 0 && over < swr)
        return GW_USE_SWR;
    return GW_USE_REVALIDATE;
}

bool gw_cache_sie_ok(const gw_use_in *in)
{
    const gw_cc *rc = in->resp_cc;
    if ((rc->f & (GW_CC_MUST_REVALIDATE | GW_CC_PROXY_REVALIDATE)) || rc->s_maxage != GW_CC_ABSENT)
        return false;
    int64_t sie = rc->sie != GW_CC_ABSENT ? rc->sie : in->route_sie;
    int64_t life = in->lifetime < 0 || (rc->f & GW_CC_NO_CACHE) ? 0 : in->lifetime;
    return sie > 0 && in->age - life < sie;
}

/* --- conditionals ------------------------------------------------------- */

/* Weak comparison (RFC 9110 8.8.3.2): opaque tags equal, W/ ignored. */
static bool etag_weak_eq(const char *a, size_t al, const char *b, size_t bl)
{
    if (al >= 2 && a[0] == 'W' && a[1] == '/') {
        a += 2;
        al -= 2;
    }
    if (bl >= 2 && b[0] == 'W' && b[1] == '/') {
        b += 2;
        bl -= 2;
    }
    return al == bl && al >= 2 && a[0] == '"' && memcmp(a, b, al) == 0;
}

bool gw_cache_not_modified(const char *inm, size_t inm_len, bool has_inm,
                           const char *etag, size_t etag_len,
                           int64_t ims, int64_t last_modified)
{
    if (has_inm) {
        size_t i = 0;
        while (i < inm_len) {
            while (i < inm_len && (inm[i] == ' ' || inm[i] == '\t' || inm[i] == ','))
                i++;
            size_t s = i;
            if (i + 1 < inm_len && inm[i] == 'W' && inm[i + 1] == '/')
                i += 2;
            if (i < inm_len && inm[i] == '"') {
                i++;
                while (i < inm_len && inm[i] != '"')
                    i++;
                if (i < inm_len)
                    i++;
            } else {
                while (i < inm_len && inm[i] != ',')
                    i++;
            }
            size_t tl = i - s;
            if (tl == 1 && inm[s] == '*')
                return true;       /* any current representation: one is stored */
            if (etag_len && etag_weak_eq(inm + s, tl, etag, etag_len))
                return true;
        }
        return false;
    }
    return ims >= 0 && last_modified >= 0 && last_modified <= ims;
}
