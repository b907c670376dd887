/* config_value.c -- the value syntax of config.h: parsing text into typed
 * fields and formatting them back.
 *
 * Durations and sizes are parsed as exact decimals (no floating point), so
 * "1.5s" is 1500000us and formatting then reparsing is the identity; that
 * is what lets cfg_to_json round-trip. Every parser leaves the field
 * untouched on error. */
#include "core/config_int.h"
#include "core/sock.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *cfg__type_name(cfg_type t)
{
    static const char *const names[] = {
        "bool", "int", "double", "percent", "duration", "size", "string",
        "address", "enum", "string list", "object", "list",
    };
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* "12.5" times unit, exactly, rounded to nearest. Leaves *end after the
 * number. -1 when there is no number or it overflows. */
static int dec_scale(const char *s, const char **end, uint64_t unit, uint64_t *out)
{
    uint64_t ip = 0, frac = 0, div = 1;
    const char *p = s;
    if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        if (ip > (UINT64_MAX - 9) / 10) return -1;
        ip = ip * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '.') {
        for (p++; isdigit((unsigned char)*p); p++)
            if (div < 1000000000000ULL) { frac = frac * 10 + (uint64_t)(*p - '0'); div *= 10; }
    }
    if (unit && ip > UINT64_MAX / unit) return -1;
    uint64_t v = ip * unit;
    /* frac < div <= 1e12 and unit <= 2^30 * 1e6-ish: use long double only
     * for the product's rounding, the integer part stays exact. */
    long double f = (long double)frac * (long double)unit / (long double)div;
    uint64_t fr = (uint64_t)(f + 0.5L);
    if (v > UINT64_MAX - fr) return -1;
    *out = v + fr;
    *end = p;
    return 0;
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t') p++;
    return p;
}

typedef struct unit_scale { const char *name; uint64_t mul; } unit_scale;

/* A decimal number followed by an optional unit from `units` (bare: `bare`
 * multiplier), scaled exactly; surrounding blanks are allowed. */
static int parse_scaled(const char *text, const unit_scale *units, size_t nunits, uint64_t bare,
                        bool fold_case, uint64_t *out)
{
    const char *p = skip_ws(text ? text : ""), *end;
    const char *q = p;
    while (isdigit((unsigned char)*q) || *q == '.') q++;
    const char *u = skip_ws(q);
    size_t ulen = strlen(u);
    while (ulen && (u[ulen - 1] == ' ' || u[ulen - 1] == '\t')) ulen--;
    uint64_t mul = ulen == 0 ? bare : 0;
    for (size_t i = 0; !mul && i < nunits; i++)
        if (strlen(units[i].name) == ulen &&
            (fold_case ? strncasecmp(u, units[i].name, ulen) : strncmp(u, units[i].name, ulen)) == 0)
            mul = units[i].mul;
    uint64_t v;
    if (!mul || dec_scale(p, &end, mul, &v) < 0 || end != q)
        return -1;
    *out = v;   /* only on success: a failed parse leaves the field as it was */
    return 0;
}

int cfg_parse_duration(const char *text, uint64_t *us, char *err, size_t errlen)
{
    static const unit_scale units[] = {
        { "us", 1 }, { "ms", 1000 }, { "s", 1000000 }, { "m", 60000000 },
        { "h", 3600000000ULL },
    };
    if (parse_scaled(text, units, sizeof units / sizeof units[0], 1000000, false, us) < 0) {
        if (err) snprintf(err, errlen, "expected a duration like 30s, 250ms or 5m, got '%s'", text ? text : "");
        return -1;
    }
    return 0;
}

int cfg_parse_size(const char *text, uint64_t *bytes, char *err, size_t errlen)
{
    static const unit_scale units[] = {
        { "B", 1 }, { "KB", 1000 }, { "KiB", 1024 }, { "MB", 1000000 },
        { "MiB", 1048576 }, { "GB", 1000000000 }, { "GiB", 1073741824 },
        { "K", 1024 }, { "M", 1048576 }, { "G", 1073741824 },
    };
    if (parse_scaled(text, units, sizeof units / sizeof units[0], 1, true, bytes) < 0) {
        if (err) snprintf(err, errlen, "expected a size like 64KiB, 1MB or 4096, got '%s'", text ? text : "");
        return -1;
    }
    return 0;
}

int cfg_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    if (!text) return -1;
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) { *out = true; return 0; }
        if (strcasecmp(text, no[i]) == 0) { *out = false; return 0; }
    }
    return -1;
}

/* v / div as the shortest decimal ("1.5"), or 0 when it needs more than
 * six fraction digits. */
static int fmt_exact(uint64_t v, uint64_t div, const char *unit, char *out, size_t outlen)
{
    if (div == 0) return 0;
    uint64_t ip = v / div, rem = v % div;
    if (rem == 0) { snprintf(out, outlen, "%" PRIu64 "%s", ip, unit); return 1; }
    char frac[8];
    int n = 0;
    while (rem && n < 6) {
        rem *= 10;
        frac[n++] = (char)('0' + rem / div);
        rem %= div;
    }
    if (rem) return 0;
    frac[n] = '\0';
    snprintf(out, outlen, "%" PRIu64 ".%s%s", ip, frac, unit);
    return 1;
}

void cfg_format_duration(uint64_t us, char *out, size_t outlen)
{
    static const struct { const char *u; uint64_t div; } units[] = {
        { "h", 3600000000ULL }, { "m", 60000000 }, { "s", 1000000 }, { "ms", 1000 }, { "us", 1 },
    };
    char best[64] = "", cand[64];
    if (us == 0) { snprintf(out, outlen, "0s"); return; }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (us < units[i].div) continue;   /* "0.5s" reads worse than "500ms" */
        if (fmt_exact(us, units[i].div, units[i].u, cand, sizeof cand) &&
            (!best[0] || strlen(cand) < strlen(best)))
            memcpy(best, cand, sizeof best);
    }
    snprintf(out, outlen, "%s", best);
}

void cfg__format_size(uint64_t bytes, char *out, size_t outlen)
{
    static const struct { const char *u; uint64_t div; } units[] = {
        { "GiB", 1073741824 }, { "MiB", 1048576 }, { "KiB", 1024 },
        { "GB", 1000000000 }, { "MB", 1000000 }, { "KB", 1000 },
    };
    for (size_t i = 0; bytes && i < sizeof units / sizeof units[0]; i++)
        if (bytes % units[i].div == 0) {
            snprintf(out, outlen, "%" PRIu64 "%s", bytes / units[i].div, units[i].u);
            return;
        }
    snprintf(out, outlen, "%" PRIu64 "B", bytes);
}

/* Shortest "%g" that reads back to the same double. */
static void fmt_double(double d, char *out, size_t outlen)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(out, outlen, "%.*g", prec, d);
        if (strtod(out, NULL) == d) return;
    }
}

static bool has_bounds(const cfg_field *f) { return f->min != 0 || f->max != 0; }

/* Bounds: both 0 means unbounded; max <= min means "at least min". */
static int check_range(const cfg_field *f, double v, const char *shown, char *msg, size_t msglen)
{
    double lo = f->min, hi = f->max;
    if (f->type == CFG_PERCENT && !has_bounds(f)) { lo = 0; hi = 100; }
    else if (!has_bounds(f)) return 0;
    if (hi > lo ? (v < lo || v > hi) : v < lo) {
        char a[48], b[48];
        if (f->type == CFG_DURATION) {
            cfg_format_duration((uint64_t)(lo * 1e6), a, sizeof a);
            cfg_format_duration((uint64_t)(hi * 1e6), b, sizeof b);
        } else if (f->type == CFG_SIZE) {
            cfg__format_size((uint64_t)lo, a, sizeof a);
            cfg__format_size((uint64_t)hi, b, sizeof b);
        } else {
            fmt_double(lo, a, sizeof a);
            fmt_double(hi, b, sizeof b);
        }
        if (hi > lo) snprintf(msg, msglen, "must be between %s and %s, got %s", a, b, shown);
        else snprintf(msg, msglen, "must be at least %s, got %s", a, shown);
        return -1;
    }
    return 0;
}

static int set_strlist(const cfg_field *f, void *obj, const char *text, char *msg, size_t msglen)
{
    size_t n = 0;
    char **v = NULL;
    const char *p = text;
    while (*p) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        const char *s = p;
        while (len && isspace((unsigned char)*s)) { s++; len--; }
        while (len && isspace((unsigned char)s[len - 1])) len--;
        if (len) {
            char **nv = realloc(v, (n + 1) * sizeof *v);
            char *item = strndup(s, len);
            if (!nv || !item) {
                free(item);
                if (nv) v = nv;
                for (size_t i = 0; i < n; i++) free(v[i]);
                free(v);
                snprintf(msg, msglen, "out of memory");
                return -1;
            }
            v = nv;
            v[n++] = item;
        }
        p = c ? c + 1 : p + strlen(p);
    }
    cfg__free_field(f, obj);
    *CFG_AT(obj, f->offset, char **) = v;
    *CFG_AT(obj, f->count_offset, size_t) = n;
    return 0;
}

int cfg__set_text(const cfg_field *f, void *obj, const char *text, char *msg, size_t msglen)
{
    char *end;
    if (!text) text = "";
    switch (f->type) {
    case CFG_BOOL: {
        bool b;
        if (cfg_parse_bool(text, &b) < 0) {
            snprintf(msg, msglen, "expected true or false, got '%s'", text);
            return -1;
        }
        *CFG_AT(obj, f->offset, bool) = b;
        return 0;
    }
    case CFG_INT: {
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (!*text || *end || errno || v < INT32_MIN || v > INT32_MAX) {
            snprintf(msg, msglen, "expected an integer, got '%s'", text);
            return -1;
        }
        if (check_range(f, (double)v, text, msg, msglen) < 0) return -1;
        *CFG_AT(obj, f->offset, int) = (int)v;
        return 0;
    }
    case CFG_DOUBLE:
    case CFG_PERCENT: {
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%s", text);
        size_t l = strlen(tmp);
        if (f->type == CFG_PERCENT && l && tmp[l - 1] == '%') tmp[--l] = '\0';
        errno = 0;
        double v = strtod(tmp, &end);
        if (!l || *end || errno || !isfinite(v) || strlen(text) >= sizeof tmp) {
            snprintf(msg, msglen, f->type == CFG_PERCENT ? "expected a percentage like 70%%, got '%s'"
                                                          : "expected a number, got '%s'", text);
            return -1;
        }
        if (check_range(f, v, text, msg, msglen) < 0) return -1;
        *CFG_AT(obj, f->offset, double) = v;
        return 0;
    }
    case CFG_DURATION: {
        uint64_t us;
        if (cfg_parse_duration(text, &us, msg, msglen) < 0) return -1;
        if (check_range(f, (double)us / 1e6, text, msg, msglen) < 0) return -1;
        *CFG_AT(obj, f->offset, uint64_t) = us;
        return 0;
    }
    case CFG_SIZE: {
        uint64_t b;
        if (cfg_parse_size(text, &b, msg, msglen) < 0) return -1;
        if (check_range(f, (double)b, text, msg, msglen) < 0) return -1;
        *CFG_AT(obj, f->offset, uint64_t) = b;
        return 0;
    }
    case CFG_ADDR: {
        sock_addr a;
        char why[128];
        /* An optional address (no default) may be given empty: unset, which
         * is also how cfg_to_json writes it, so that form must load back. */
        if (!*text && !f->def) {
            cfg__free_field(f, obj);
            return 0;
        }
        if (sock_addr_parse(text, &a, why, sizeof why) < 0) {
            snprintf(msg, msglen, "expected an address like 127.0.0.1:8080, got '%s' (%s)", text, why);
            return -1;
        }
    }   /* fall through: stored as its text */
    /* FALLTHROUGH */
    case CFG_STRING: {
        char *s = NULL;
        if (*text && !(s = strdup(text))) { snprintf(msg, msglen, "out of memory"); return -1; }
        cfg__free_field(f, obj);
        *CFG_AT(obj, f->offset, char *) = s;
        return 0;
    }
    case CFG_ENUM:
        for (int i = 0; f->choices && f->choices[i]; i++)
            if (strcasecmp(f->choices[i], text) == 0) {
                *CFG_AT(obj, f->offset, int) = i;
                return 0;
            }
        {
            size_t o = (size_t)snprintf(msg, msglen, "expected one of: ");
            for (int i = 0; f->choices && f->choices[i] && o < msglen; i++)
                o += (size_t)snprintf(msg + o, msglen - o, "%s%s", i ? ", " : "", f->choices[i]);
            if (o < msglen) snprintf(msg + o, msglen - o, "; got '%s'", text);
        }
        return -1;
    case CFG_STRLIST:
        return set_strlist(f, obj, text, msg, msglen);
    case CFG_OBJECT:
    case CFG_LIST:
        snprintf(msg, msglen, "is a%s %s; set one of its keys instead",
                 f->type == CFG_OBJECT ? "n" : "", cfg__type_name(f->type));
        return -1;
    }
    snprintf(msg, msglen, "unknown field type");
    return -1;
}

void cfg__format_scalar(const cfg_field *f, const void *obj, char *out, size_t outlen)
{
    switch (f->type) {
    case CFG_BOOL: snprintf(out, outlen, "%s", *CFG_CAT(obj, f->offset, bool) ? "true" : "false"); return;
    case CFG_INT: snprintf(out, outlen, "%d", *CFG_CAT(obj, f->offset, int)); return;
    case CFG_DOUBLE:
    case CFG_PERCENT: fmt_double(*CFG_CAT(obj, f->offset, double), out, outlen); return;
    case CFG_DURATION: cfg_format_duration(*CFG_CAT(obj, f->offset, uint64_t), out, outlen); return;
    case CFG_SIZE: cfg__format_size(*CFG_CAT(obj, f->offset, uint64_t), out, outlen); return;
    case CFG_STRING:
    case CFG_ADDR: {
        const char *s = *CFG_CAT(obj, f->offset, char *);
        snprintf(out, outlen, "%s", s ? s : "");
        return;
    }
    case CFG_ENUM: {
        int i = *CFG_CAT(obj, f->offset, int), n = 0;
        while (f->choices && f->choices[n]) n++;
        snprintf(out, outlen, "%s", i >= 0 && i < n ? f->choices[i] : "");
        return;
    }
    default: snprintf(out, outlen, "%s", ""); return;
    }
}
