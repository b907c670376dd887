/* bench_tmpl.c -- request templating, durations, stages and the open-model
 * arrival schedule: the pure arithmetic of a run, no I/O.
 *
 * A template is parsed once into segments over an owned copy of its text;
 * rendering walks the segments into a caller buffer sized by max_len, so the
 * request path never allocates. The schedule is closed-form (the inverse of
 * the integral of a piecewise-linear rate), so a worker can compute the
 * scheduled time of any arrival without keeping a queue of them: requests
 * that are due but not yet sent are simply the indices between "next to
 * send" and "now". */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "core/buf.h"

/* ---- PRNG: xorshift64*, one per thread ---- */

void bench_rng_seed(bench_rng *r, uint64_t seed, uint64_t seq_base, uint64_t seq_stride)
{
    /* splitmix64 so that small consecutive seeds give unrelated streams */
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    r->s = z ? z : 0x2545f4914f6cdd1dull;
    r->seq = seq_base;
    r->seq_stride = seq_stride ? seq_stride : 1;
}

uint64_t bench_rng_next(bench_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dull;
}

uint64_t bench_rng_below(bench_rng *r, uint64_t n)
{
    /* Lemire's multiply-shift: the bias is < n / 2^64, far below noise. */
    return (uint64_t)(((unsigned __int128)bench_rng_next(r) * n) >> 64);
}

/* ---- templates ---- */

static int seg_push(bench_tmpl *t, size_t *cap, bench_seg s)
{
    if (t->nsegs == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        bench_seg *ns = realloc(t->segs, nc * sizeof *ns);
        if (!ns)
            return -1;
        t->segs = ns;
        *cap = nc;
    }
    t->segs[t->nsegs++] = s;
    return 0;
}

static int parse_i64(const char *p, size_t n, int64_t *out)
{
    char tmp[32];
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, p, n);
    tmp[n] = 0;
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno || *end || end == tmp)
        return -1;
    *out = v;
    return 0;
}

static size_t digits_i64(int64_t v)
{
    char tmp[24];
    return (size_t)snprintf(tmp, sizeof tmp, "%" PRId64, v);
}

/* Parses the inside of one "{...}" (p[0, n)) at column col. */
static int parse_placeholder(bench_tmpl *t, size_t *cap, uint32_t off, size_t n,
                             size_t col, char *err, size_t errlen)
{
    const char *p = t->text + off;
    bench_seg s = {0};
    if (n == 3 && memcmp(p, "seq", 3) == 0) {
        s.kind = BENCH_SEG_SEQ;
        t->max_len += 20;
    } else if (n > 5 && memcmp(p, "rand:", 5) == 0) {
        const char *a = p + 5, *end = p + n;
        const char *colon = memchr(a + 1, ':', (size_t)(end - a - 1));
        if (!colon || parse_i64(a, (size_t)(colon - a), &s.lo) < 0 ||
            parse_i64(colon + 1, (size_t)(end - colon - 1), &s.hi) < 0) {
            snprintf(err, errlen, "column %zu: bad '{%.*s}', expected {rand:LO:HI} with integers",
                     col, (int)n, p);
            return -1;
        }
        if (s.lo > s.hi) {
            snprintf(err, errlen, "column %zu: '{%.*s}' has LO > HI", col, (int)n, p);
            return -1;
        }
        s.kind = BENCH_SEG_RAND;
        size_t dl = digits_i64(s.lo), dh = digits_i64(s.hi);
        t->max_len += dl > dh ? dl : dh;
    } else if (n > 5 && memcmp(p, "pick:", 5) == 0) {
        s.kind = BENCH_SEG_PICK;
        s.off = off + 5;
        s.len = (uint32_t)(n - 5);
        size_t longest = 0, cur = 0;
        s.npick = 1;
        for (uint32_t i = 0; i < s.len; i++) {
            if (t->text[s.off + i] == '|') {
                s.npick++;
                cur = 0;
            } else if (++cur > longest) {
                longest = cur;
            }
        }
        t->max_len += longest;
    } else {
        snprintf(err, errlen, "column %zu: unknown placeholder '{%.*s}', expected "
                 "{rand:LO:HI}, {seq} or {pick:A|B|C} ('{{' for a literal brace)",
                 col, (int)n, p);
        return -1;
    }
    t->dynamic = true;
    return seg_push(t, cap, s);
}

int bench_tmpl_parse(bench_tmpl *t, const char *text, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    t->text = strdup(text);
    if (!t->text) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t cap = 0, n = strlen(text), lit = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = text[i];
        bool brace = (c == '{' || c == '}') && i < n;
        if (!brace && i < n)
            continue;
        if (i > lit) {   /* flush the literal run before i */
            bench_seg s = { .kind = BENCH_SEG_LIT, .off = (uint32_t)lit, .len = (uint32_t)(i - lit) };
            if (seg_push(t, &cap, s) < 0)
                goto oom;
            t->max_len += i - lit;
        }
        if (i == n)
            break;
        if (text[i + 1] == c) {   /* "{{" or "}}": one literal brace */
            bench_seg s = { .kind = BENCH_SEG_LIT, .off = (uint32_t)i, .len = 1 };
            if (seg_push(t, &cap, s) < 0)
                goto oom;
            t->max_len += 1;
            i++;
            lit = i + 1;
            continue;
        }
        if (c == '}') {
            snprintf(err, errlen, "column %zu: unmatched '}' ('}}' for a literal brace)", i + 1);
            goto fail;
        }
        const char *close = strchr(text + i + 1, '}');
        if (!close) {
            snprintf(err, errlen, "column %zu: '{' is never closed ('{{' for a literal brace)", i + 1);
            goto fail;
        }
        size_t in = (size_t)(close - text) - i - 1;
        if (parse_placeholder(t, &cap, (uint32_t)(i + 1), in, i + 1, err, errlen) < 0)
            goto fail;
        i = (size_t)(close - text);
        lit = i + 1;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    bench_tmpl_free(t);
    return -1;
}

void bench_tmpl_free(bench_tmpl *t)
{
    free(t->text);
    free(t->segs);
    memset(t, 0, sizeof *t);
}

size_t bench_tmpl_max_len(const bench_tmpl *t) { return t->max_len; }

size_t bench_tmpl_render(const bench_tmpl *t, bench_rng *r, char *out)
{
    size_t w = 0;
    for (size_t i = 0; i < t->nsegs; i++) {
        const bench_seg *s = &t->segs[i];
        switch (s->kind) {
        case BENCH_SEG_LIT:
            memcpy(out + w, t->text + s->off, s->len);
            w += s->len;
            break;
        case BENCH_SEG_RAND: {
            uint64_t span = (uint64_t)s->hi - (uint64_t)s->lo + 1;   /* 0: the full range */
            uint64_t x = span ? bench_rng_below(r, span) : bench_rng_next(r);
            w += fmt_i64(out + w, (int64_t)((uint64_t)s->lo + x));
            break;
        }
        case BENCH_SEG_SEQ:
            w += fmt_i64(out + w, (int64_t)r->seq);
            break;
        case BENCH_SEG_PICK: {
            uint64_t k = bench_rng_below(r, s->npick);
            const char *p = t->text + s->off, *end = p + s->len;
            while (k) {
                if (*p++ == '|')
                    k--;
            }
            const char *bar = memchr(p, '|', (size_t)(end - p));
            size_t n = (size_t)((bar ? bar : end) - p);
            memcpy(out + w, p, n);
            w += n;
            break;
        }
        }
    }
    return w;
}

/* ---- durations and stages ---- */

int bench_parse_duration(const char *s, uint64_t *out_us)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0) || isinf(v))
        return -1;
    double mul;
    if (*end == 0 || strcmp(end, "s") == 0)
        mul = 1e6;
    else if (strcmp(end, "ms") == 0)
        mul = 1e3;
    else if (strcmp(end, "us") == 0)
        mul = 1;
    else if (strcmp(end, "m") == 0)
        mul = 60e6;
    else if (strcmp(end, "h") == 0)
        mul = 3600e6;
    else
        return -1;
    double us = v * mul;
    if (us > 1e15)
        return -1;
    *out_us = (uint64_t)(us + 0.5);
    return 0;
}

int bench_parse_stages(const char *s, bench_stage *out, size_t *n, char *err, size_t errlen)
{
    *n = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item) {
            snprintf(err, errlen, "stage %zu: expected DURATION:TARGET, e.g. 30s:100", *n + 1);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = 0;
        char *colon = strchr(item, ':');
        if (!colon) {
            snprintf(err, errlen, "stage %zu '%s': expected DURATION:TARGET, e.g. 30s:100", *n + 1, item);
            return -1;
        }
        *colon = 0;
        uint64_t d;
        if (bench_parse_duration(item, &d) < 0 || d == 0) {
            snprintf(err, errlen, "stage %zu: bad duration '%s' (expected e.g. 500ms, 30s, 2m)", *n + 1, item);
            return -1;
        }
        char *end;
        errno = 0;
        double tg = strtod(colon + 1, &end);
        if (errno || end == colon + 1 || *end || !(tg >= 0) || tg > 1e9) {
            snprintf(err, errlen, "stage %zu: bad target '%s' (expected a number >= 0)", *n + 1, colon + 1);
            return -1;
        }
        if (*n == BENCH_MAX_STAGES) {
            snprintf(err, errlen, "too many stages (at most %d)", BENCH_MAX_STAGES);
            return -1;
        }
        out[*n].dur_us = d;
        out[*n].target = tg;
        (*n)++;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

uint64_t bench_stages_total_us(const bench_stage *st, size_t n)
{
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += st[i].dur_us;
    return t;
}

double bench_stages_target(const bench_stage *st, size_t n, uint64_t t_us)
{
    double prev = 0;
    for (size_t i = 0; i < n; i++) {
        if (t_us < st[i].dur_us)
            return prev + (st[i].target - prev) * ((double)t_us / (double)st[i].dur_us);
        t_us -= st[i].dur_us;
        prev = st[i].target;
    }
    return prev;
}

uint64_t bench_sched_at(const bench_stage *st, size_t n, double k)
{
    double prev = 0, t0 = 0, acc = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)st[i].dur_us / 1e6, r0 = prev, r1 = st[i].target;
        double area = (r0 + r1) / 2 * d;
        if (k < acc + area) {
            /* Solve a*x^2 + r0*x = rem with a = (r1-r0)/(2d); this form of
             * the root is stable whether the rate rises, falls or is flat. */
            double rem = k - acc, a = (r1 - r0) / (2 * d);
            double den = r0 + sqrt(r0 * r0 + 4 * a * rem);
            double x = den > 0 ? 2 * rem / den : 0;
            if (x > d)
                x = d;
            return (uint64_t)((t0 + x) * 1e6 + 0.5);
        }
        acc += area;
        t0 += d;
        prev = r1;
    }
    return UINT64_MAX;
}
