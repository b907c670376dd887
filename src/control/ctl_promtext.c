/* ctl_promtext.c -- a strict parser of the Prometheus text format 0.0.4.
 *
 * The collector reads hscale's own /metrics (and any service's process_*
 * metrics) through this. It hands each sample to a callback with slices
 * into the caller's text and allocates nothing: families seen so far live
 * in a fixed table of 64-bit name hashes on the stack, which is enough to
 * refuse a second TYPE or HELP line, a TYPE after its samples, and a family
 * whose samples come back after another family began.
 *
 * Strict because a scrape cut short must not read as a smaller number: the
 * input has to end with a newline, every value must parse whole, and a
 * histogram's buckets must be a cumulative series (le increasing, counts
 * non-decreasing, +Inf equal to _count). The first error stops the parse
 * and names the line. */
#include "control/ctl_autoscale.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAM_SLOTS 1024               /* power of two; tracking stops at 3/4 full */
#define FAM_TYPED  1u
#define FAM_HELPED 2u
#define FAM_SAMPLED 4u

typedef struct fam_slot {
    uint64_t hash;                   /* 0: empty */
    unsigned flags;
} fam_slot;

typedef struct pt_state {
    const char *text;
    size_t      len;
    int         line;
    char       *err;
    size_t      errlen;
    fam_slot    fams[FAM_SLOTS];
    size_t      nfams;
    /* the current family: set by TYPE/HELP, or by a sample outside it */
    ctl_pt_str  fam;
    ctl_pt_type type;
    uint64_t    fam_hash;
    /* the histogram series whose buckets are being read */
    bool        in_series;
    uint64_t    series_sig;
    double      last_le, last_cum, inf_cum;
    bool        inf_seen;
} pt_state;

static int fail(pt_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(pt_state *st, const char *fmt, ...)
{
    if (st->err && st->errlen) {
        int n = snprintf(st->err, st->errlen, "line %d: ", st->line);
        if (n >= 0 && (size_t)n < st->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(st->err + n, st->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

static uint64_t hash_bytes(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {            /* FNV-1a */
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t name_hash(const char *p, size_t n)
{
    uint64_t h = hash_bytes(0xcbf29ce484222325ull, p, n);
    return h ? h : 1;
}

/* The slot for hash h, or NULL when the table is too full to add it. */
static fam_slot *fam_lookup(pt_state *st, uint64_t h, bool add)
{
    size_t i = (size_t)h & (FAM_SLOTS - 1);
    for (;;) {
        if (st->fams[i].hash == h)
            return &st->fams[i];
        if (!st->fams[i].hash) {
            if (!add || st->nfams >= FAM_SLOTS * 3 / 4)
                return NULL;
            st->nfams++;
            st->fams[i].hash = h;
            st->fams[i].flags = 0;
            return &st->fams[i];
        }
        i = (i + 1) & (FAM_SLOTS - 1);
    }
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }
static bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
static bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

static size_t skip_blank(const char *p, size_t i, size_t end)
{
    while (i < end && is_blank(p[i]))
        i++;
    return i;
}

/* A metric name at p[i]; returns its end, or i when there is none. */
static size_t scan_name(const char *p, size_t i, size_t end, bool label)
{
    if (i >= end || !name_start(p[i]) || (label && p[i] == ':'))
        return i;
    size_t j = i + 1;
    while (j < end && name_char(p[j]) && !(label && p[j] == ':'))
        j++;
    return j;
}

static bool str_eq(ctl_pt_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && !memcmp(s.p, lit, n);
}

/* Parses a whole token as a double the way Go's ParseFloat reads
 * Prometheus values ("+Inf", "-Inf", "NaN" included). */
static int parse_double(const char *p, size_t n, double *out)
{
    char tmp[64];
    if (!n || n >= sizeof tmp)
        return -1;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    if (!strcmp(tmp, "+Inf") || !strcmp(tmp, "Inf")) { *out = INFINITY; return 0; }
    if (!strcmp(tmp, "-Inf")) { *out = -INFINITY; return 0; }
    if (!strcmp(tmp, "NaN")) { *out = NAN; return 0; }
    /* strtod also takes "infinity", "nan(...)" and whitespace: refuse them */
    for (size_t i = 0; i < n; i++) {
        char c = tmp[i];
        if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'))
            return -1;
    }
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (end != tmp + n || (errno == ERANGE && fabs(v) > 1.0))
        return -1;
    *out = v;
    return 0;
}

static int parse_i64(const char *p, size_t n, int64_t *out)
{
    char tmp[32];
    if (!n || n >= sizeof tmp)
        return -1;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    for (size_t i = (tmp[0] == '-' ? 1 : 0); i < n; i++)
        if (tmp[i] < '0' || tmp[i] > '9')
            return -1;
    if (tmp[0] == '-' && n == 1)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno || end != tmp + n)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static int parse_type(ctl_pt_str s, ctl_pt_type *t)
{
    static const char *const names[] = { "untyped", "counter", "gauge", "histogram", "summary" };
    for (int i = 0; i < 5; i++)
        if (str_eq(s, names[i])) {
            *t = (ctl_pt_type)i;
            return 0;
        }
    return -1;
}

/* A histogram series ends when another begins or the family changes. */
static int end_series(pt_state *st)
{
    if (st->in_series && !st->inf_seen)
        return fail(st, "histogram %.*s has a series without a +Inf bucket",
                    (int)st->fam.len, st->fam.p);
    st->in_series = false;
    return 0;
}

static int set_family(pt_state *st, ctl_pt_str name, ctl_pt_type t, uint64_t h)
{
    if (end_series(st) < 0)
        return -1;
    st->fam = name;
    st->type = t;
    st->fam_hash = h;
    return 0;
}

/* "# HELP name text" / "# TYPE name type" / any other comment. */
static int comment_line(pt_state *st, const char *p, size_t i, size_t end)
{
    i = skip_blank(p, i + 1, end);
    size_t kw = i;
    while (i < end && !is_blank(p[i]))
        i++;
    ctl_pt_str word = { p + kw, i - kw };
    bool help = str_eq(word, "HELP"), type = str_eq(word, "TYPE");
    if (!help && !type)
        return 0;
    i = skip_blank(p, i, end);
    size_t ne = scan_name(p, i, end, false);
    if (ne == i)
        return fail(st, "%s needs a metric name", help ? "HELP" : "TYPE");
    ctl_pt_str name = { p + i, ne - i };
    if (ne < end && !is_blank(p[ne]))
        return fail(st, "invalid character '%c' in metric name", p[ne]);
    i = skip_blank(p, ne, end);
    uint64_t h = name_hash(name.p, name.len);
    fam_slot *slot = fam_lookup(st, h, true);
    if (help) {
        for (size_t j = i; j < end; j++) {
            if (p[j] == '\\') {
                if (j + 1 >= end || (p[j + 1] != '\\' && p[j + 1] != 'n'))
                    return fail(st, "invalid escape in HELP of %.*s (only \\\\ and \\n)",
                                (int)name.len, name.p);
                j++;
            }
        }
        if (slot && (slot->flags & FAM_HELPED))
            return fail(st, "second HELP line for %.*s", (int)name.len, name.p);
        if (slot)
            slot->flags |= FAM_HELPED;
    } else {
        size_t te = i;
        while (te < end && !is_blank(p[te]))
            te++;
        ctl_pt_str ts = { p + i, te - i };
        ctl_pt_type t;
        if (parse_type(ts, &t) < 0)
            return fail(st, "unknown TYPE '%.*s' for %.*s (expected counter, gauge, histogram, "
                        "summary or untyped)", (int)ts.len, ts.p, (int)name.len, name.p);
        if (skip_blank(p, te, end) != end)
            return fail(st, "unexpected text after TYPE of %.*s", (int)name.len, name.p);
        if (slot && (slot->flags & FAM_TYPED))
            return fail(st, "second TYPE line for %.*s", (int)name.len, name.p);
        if (slot && (slot->flags & FAM_SAMPLED))
            return fail(st, "TYPE line for %.*s after its samples", (int)name.len, name.p);
        if (slot)
            slot->flags |= FAM_TYPED;
        if (!(st->fam_hash == h && st->fam.len) && set_family(st, name, t, h) < 0)
            return -1;
        st->type = t;
        return 0;
    }
    if (!(st->fam_hash == h && st->fam.len) && set_family(st, name, CTL_PT_UNTYPED, h) < 0)
        return -1;
    return 0;
}

/* Does name equal the current family plus suffix? */
static bool has_suffix(const pt_state *st, ctl_pt_str name, const char *suf)
{
    size_t n = strlen(suf);
    return name.len == st->fam.len + n && !memcmp(name.p, st->fam.p, st->fam.len) &&
           !memcmp(name.p + st->fam.len, suf, n);
}

/* Which family a sample belongs to, starting a new untyped one if needed. */
static int resolve_family(pt_state *st, ctl_pt_sample *s)
{
    ctl_pt_str n = s->name;
    s->suffix = CTL_PT_PLAIN;
    if (st->fam.len) {
        bool same = n.len == st->fam.len && !memcmp(n.p, st->fam.p, n.len);
        if (st->type == CTL_PT_HISTOGRAM || st->type == CTL_PT_SUMMARY) {
            if (has_suffix(st, n, "_sum")) s->suffix = CTL_PT_SUM;
            else if (has_suffix(st, n, "_count")) s->suffix = CTL_PT_COUNT;
            else if (st->type == CTL_PT_HISTOGRAM && has_suffix(st, n, "_bucket"))
                s->suffix = CTL_PT_BUCKET;
            if (s->suffix != CTL_PT_PLAIN || (same && st->type == CTL_PT_SUMMARY))
                goto found;
            if (same)
                return fail(st, "histogram %.*s has a sample without _bucket, _sum or _count",
                            (int)n.len, n.p);
        } else if (same) {
            goto found;
        }
    }
    /* a new family: it must not be one met before */
    static const char *const sufs[] = { "_bucket", "_sum", "_count" };
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(sufs[k]);
        if (n.len > l && !memcmp(n.p + n.len - l, sufs[k], l)) {
            fam_slot *base = fam_lookup(st, name_hash(n.p, n.len - l), false);
            if (base && (base->flags & (FAM_TYPED | FAM_SAMPLED)))
                return fail(st, "samples of %.*s are not together with the rest of their family",
                            (int)(n.len - l), n.p);
        }
    }
    uint64_t h = name_hash(n.p, n.len);
    fam_slot *slot = fam_lookup(st, h, true);
    if (slot && (slot->flags & (FAM_SAMPLED | FAM_TYPED)))
        return fail(st, "samples of %.*s are not together with the rest of their family",
                    (int)n.len, n.p);
    if (set_family(st, n, CTL_PT_UNTYPED, h) < 0)
        return -1;
found:
    s->family = st->fam;
    s->type = st->type;
    fam_slot *fs = fam_lookup(st, st->fam_hash, true);
    if (fs)
        fs->flags |= FAM_SAMPLED;
    return 0;
}

static int parse_labels(pt_state *st, const char *p, size_t *pi, size_t end, ctl_pt_sample *s)
{
    size_t i = *pi + 1;                       /* past '{' */
    for (;;) {
        i = skip_blank(p, i, end);
        if (i < end && p[i] == '}') {
            *pi = i + 1;
            return 0;
        }
        size_t ne = scan_name(p, i, end, true);
        if (ne == i)
            return fail(st, "expected a label name or '}' in the labels of %.*s",
                        (int)s->name.len, s->name.p);
        ctl_pt_str name = { p + i, ne - i };
        for (int k = 0; k < s->nlabels; k++)
            if (s->labels[k].name.len == name.len && !memcmp(s->labels[k].name.p, name.p, name.len))
                return fail(st, "duplicate label '%.*s'", (int)name.len, name.p);
        if (s->nlabels >= CTL_PT_MAX_LABELS)
            return fail(st, "more than %d labels", CTL_PT_MAX_LABELS);
        i = skip_blank(p, ne, end);
        if (i >= end || p[i] != '=')
            return fail(st, "expected '=' after label '%.*s'", (int)name.len, name.p);
        i = skip_blank(p, i + 1, end);
        if (i >= end || p[i] != '"')
            return fail(st, "expected '\"' to open the value of label '%.*s'", (int)name.len, name.p);
        size_t vs = ++i;
        bool esc = false;
        for (;;) {
            if (i >= end)
                return fail(st, "unterminated value of label '%.*s'", (int)name.len, name.p);
            char c = p[i];
            if (c == '"')
                break;
            if (c == '\0')
                return fail(st, "NUL byte in the value of label '%.*s'", (int)name.len, name.p);
            if (c == '\\') {
                if (i + 1 >= end || (p[i + 1] != '\\' && p[i + 1] != '"' && p[i + 1] != 'n'))
                    return fail(st, "invalid escape in the value of label '%.*s' "
                                "(only \\\\, \\\" and \\n)", (int)name.len, name.p);
                esc = true;
                i++;
            }
            i++;
        }
        ctl_pt_label *l = &s->labels[s->nlabels++];
        l->name = name;
        l->value.p = p + vs;
        l->value.len = i - vs;
        l->escaped = esc;
        i = skip_blank(p, i + 1, end);
        if (i < end && p[i] == ',') {
            i++;
            continue;
        }
        if (i < end && p[i] == '}') {
            *pi = i + 1;
            return 0;
        }
        return fail(st, "expected ',' or '}' after the value of label '%.*s'", (int)name.len, name.p);
    }
}

/* Order-independent signature of the labels other than le. */
static uint64_t series_sig(const ctl_pt_sample *s)
{
    uint64_t sig = 0;
    for (int k = 0; k < s->nlabels; k++) {
        const ctl_pt_label *l = &s->labels[k];
        if (str_eq(l->name, "le"))
            continue;
        uint64_t h = hash_bytes(0xcbf29ce484222325ull, l->name.p, l->name.len);
        h = hash_bytes(h ^ 0xff, l->value.p, l->value.len);
        sig += h * 0x9e3779b97f4a7c15ull | 1;
    }
    return sig;
}

static int check_histogram(pt_state *st, ctl_pt_sample *s)
{
    if (s->type != CTL_PT_HISTOGRAM)
        return 0;
    uint64_t sig = series_sig(s);
    if (s->suffix == CTL_PT_BUCKET) {
        const ctl_pt_label *le = ctl_pt_label_find(s, "le");
        if (!le)
            return fail(st, "bucket of %.*s without an le label", (int)s->family.len, s->family.p);
        if (le->escaped || parse_double(le->value.p, le->value.len, &s->le) < 0 || isnan(s->le))
            return fail(st, "le=\"%.*s\" is not a number", (int)le->value.len, le->value.p);
        if (isnan(s->value) || s->value < 0)
            return fail(st, "bucket count of %.*s must be a non-negative number",
                        (int)s->family.len, s->family.p);
        if (!st->in_series || st->series_sig != sig) {
            if (end_series(st) < 0)
                return -1;
            st->in_series = true;
            st->series_sig = sig;
            st->last_le = -INFINITY;
            st->last_cum = 0;
            st->inf_seen = false;
        }
        if (st->inf_seen || s->le <= st->last_le)
            return fail(st, "buckets of %.*s must have increasing le", (int)s->family.len, s->family.p);
        if (s->value < st->last_cum)
            return fail(st, "bucket counts of %.*s must not decrease", (int)s->family.len, s->family.p);
        st->last_le = s->le;
        st->last_cum = s->value;
        if (isinf(s->le)) {
            st->inf_seen = true;
            st->inf_cum = s->value;
        }
    } else if (s->suffix == CTL_PT_COUNT) {
        if (isnan(s->value) || s->value < 0)
            return fail(st, "%.*s_count must be a non-negative number", (int)s->family.len, s->family.p);
        if (st->in_series && st->series_sig == sig) {
            if (!st->inf_seen)
                return fail(st, "histogram %.*s has no +Inf bucket", (int)s->family.len, s->family.p);
            if (st->inf_cum != s->value)
                return fail(st, "%.*s_count differs from its +Inf bucket", (int)s->family.len, s->family.p);
        }
    }
    if (s->suffix != CTL_PT_BUCKET && st->in_series && st->series_sig == sig && !st->inf_seen)
        return fail(st, "histogram %.*s has no +Inf bucket", (int)s->family.len, s->family.p);
    return 0;
}

static int sample_line(pt_state *st, const char *p, size_t i, size_t end, ctl_pt_sample *s)
{
    size_t ne = scan_name(p, i, end, false);
    if (ne == i)
        return fail(st, "expected a metric name, got '%c'", p[i]);
    s->name.p = p + i;
    s->name.len = ne - i;
    s->nlabels = 0;
    s->has_timestamp = false;
    s->timestamp_ms = 0;
    s->le = NAN;
    s->line = st->line;
    i = ne;
    size_t j = skip_blank(p, ne, end);
    if (j < end && p[j] == '{') {
        i = j;
        if (parse_labels(st, p, &i, end, s) < 0)
            return -1;
    } else if (j == ne && j < end) {
        return fail(st, "invalid character '%c' in metric name", p[j]);
    }
    if (i < end && !is_blank(p[i]))
        return fail(st, "expected a space before the value of %.*s", (int)s->name.len, s->name.p);
    i = skip_blank(p, i, end);
    size_t vs = i;
    while (i < end && !is_blank(p[i]))
        i++;
    if (vs == i)
        return fail(st, "%.*s has no value", (int)s->name.len, s->name.p);
    if (parse_double(p + vs, i - vs, &s->value) < 0)
        return fail(st, "value '%.*s' of %.*s is not a number", (int)(i - vs), p + vs,
                    (int)s->name.len, s->name.p);
    i = skip_blank(p, i, end);
    if (i < end) {
        size_t ts = i;
        while (i < end && !is_blank(p[i]))
            i++;
        if (parse_i64(p + ts, i - ts, &s->timestamp_ms) < 0)
            return fail(st, "timestamp '%.*s' of %.*s is not an integer", (int)(i - ts), p + ts,
                        (int)s->name.len, s->name.p);
        s->has_timestamp = true;
        if (skip_blank(p, i, end) != end)
            return fail(st, "unexpected text after the timestamp of %.*s", (int)s->name.len, s->name.p);
    }
    if (resolve_family(st, s) < 0)
        return -1;
    if (s->type == CTL_PT_SUMMARY && s->suffix == CTL_PT_PLAIN) {
        const ctl_pt_label *q = ctl_pt_label_find(s, "quantile");
        double qv;
        if (!q || q->escaped || parse_double(q->value.p, q->value.len, &qv) < 0)
            return fail(st, "summary %.*s sample needs a numeric quantile label",
                        (int)s->name.len, s->name.p);
    }
    return check_histogram(st, s);
}

int ctl_promtext_parse(const char *text, size_t len, ctl_pt_fn fn, void *ud, char *err, size_t errlen)
{
    /* large (the family table): static would not be reentrant, so heap-free
     * means stack; 16 KiB is fine for the control thread */
    pt_state st;
    memset(&st, 0, sizeof st);
    st.text = text;
    st.len = len;
    st.err = err;
    st.errlen = errlen;
    if (err && errlen)
        err[0] = '\0';
    if (len && text[len - 1] != '\n') {
        st.line = 1;
        for (size_t k = 0; k < len; k++)
            st.line += text[k] == '\n';
        return fail(&st, "input does not end with a newline (cut short?)");
    }
    ctl_pt_sample s;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = (size_t)(nl - text);    /* nl is never NULL: the text ends with '\n' */
        st.line++;
        size_t i = skip_blank(text, pos, end);
        int rc = 0;
        if (i == end)
            rc = 0;
        else if (text[i] == '#')
            rc = comment_line(&st, text, i, end);
        else if (sample_line(&st, text, i, end, &s) < 0)
            rc = -1;
        else if (fn && fn(&s, ud))
            return 1;
        if (rc < 0)
            return -1;
        pos = end + 1;
    }
    return end_series(&st);
}

const ctl_pt_label *ctl_pt_label_find(const ctl_pt_sample *s, const char *name)
{
    for (int k = 0; k < s->nlabels; k++)
        if (str_eq(s->labels[k].name, name))
            return &s->labels[k];
    return NULL;
}

size_t ctl_pt_label_decode(const ctl_pt_label *l, char *out, size_t outlen)
{
    size_t n = 0;
    for (size_t i = 0; i < l->value.len; i++) {
        char c = l->value.p[i];
        if (c == '\\' && i + 1 < l->value.len) {
            c = l->value.p[++i];
            if (c == 'n')
                c = '\n';
        }
        if (outlen && n < outlen - 1)
            out[n] = c;
        n++;
    }
    if (outlen)
        out[n < outlen ? n : outlen - 1] = '\0';
    return n;
}

bool ctl_pt_label_eq(const ctl_pt_label *l, const char *str)
{
    if (!l->escaped)
        return str_eq(l->value, str);
    size_t k = 0;
    for (size_t i = 0; i < l->value.len; i++, k++) {
        char c = l->value.p[i];
        if (c == '\\' && i + 1 < l->value.len) {
            c = l->value.p[++i];
            if (c == 'n')
                c = '\n';
        }
        if (str[k] != c)
            return false;
    }
    return str[k] == '\0';
}
