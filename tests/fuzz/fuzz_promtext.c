/* fuzz_promtext.c -- libFuzzer target for the Prometheus text parser and
 * the collector built on it.
 *
 * Beyond "no crash": every slice handed to the callback lies inside the
 * input, line numbers never go back, label names are non-empty and each
 * label's decoded value compares equal to itself through ctl_pt_label_eq;
 * histogram buckets carry a parsed le; an error names a line; two parses of
 * the same bytes agree; and the collector's reductions of an accepted
 * scrape give finite-or-NAN quantiles, never a crash. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_autoscale.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

typedef struct fz {
    const char *base;
    size_t      size;
    int         last_line;
    size_t      samples;
} fz;

static void inside(const fz *f, ctl_pt_str s)
{
    CHECK(s.p >= f->base && s.p + s.len <= f->base + f->size);
}

static int on_sample(const ctl_pt_sample *s, void *ud)
{
    fz *f = ud;
    inside(f, s->name);
    inside(f, s->family);
    CHECK(s->name.len > 0 && s->family.len > 0 && s->family.len <= s->name.len);
    CHECK(s->line >= f->last_line && s->line >= 1);
    f->last_line = s->line;
    CHECK(s->nlabels >= 0 && s->nlabels <= CTL_PT_MAX_LABELS);
    for (int i = 0; i < s->nlabels; i++) {
        const ctl_pt_label *l = &s->labels[i];
        inside(f, l->name);
        inside(f, l->value);
        CHECK(l->name.len > 0);
        char dec[256];
        size_t n = ctl_pt_label_decode(l, dec, sizeof dec);
        CHECK(n <= l->value.len);
        if (n < sizeof dec && !memchr(dec, '\0', n))
            CHECK(ctl_pt_label_eq(l, dec));
    }
    if (s->suffix == CTL_PT_BUCKET) {
        CHECK(s->type == CTL_PT_HISTOGRAM);
        CHECK(!isnan(s->le) && s->value >= 0);
    }
    f->samples++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the parser must not read past the input: give it an exact copy */
    char *text = malloc(size ? size : 1);
    CHECK(text);
    memcpy(text, data, size);
    char err[256];
    fz a = { text, size, 0, 0 }, b = { text, size, 0, 0 };
    int rc = ctl_promtext_parse(text, size, on_sample, &a, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc < 0)
        CHECK(!strncmp(err, "line ", 5));
    int rc2 = ctl_promtext_parse(text, size, on_sample, &b, NULL, 0);
    CHECK(rc2 == rc && b.samples == a.samples);

    static ctl_scrape sc;
    static ctl_gwm_scrape gw;
    int r1 = ctl_scrape_parse(&sc, text, size, 1, err, sizeof err);
    int r2 = ctl_gwm_parse(&gw, text, size, 1, err, sizeof err);
    CHECK(r1 == rc && r2 == rc);
    if (rc == 0) {
        double q = ctl_lat_quantile(&sc.lat, 0.95);
        /* within the bounds it interpolates between (or the first one) */
        CHECK(isnan(q) || (q <= sc.lat.le[sc.lat.n - 1] && q >= fmin(0, sc.lat.le[0])));
        CHECK(gw.n <= CTL_GWM_MAX_BACKENDS);
        ctl_inst_metrics m;
        memset(&m, 0, sizeof m);
        ctl_collect_opts o = { 1, 1u << 30 };
        ctl_collect_instance(&m, &sc, &sc, &o);
        if (gw.n) {
            memcpy(m.address, gw.b[0].backend, sizeof m.address);
            ctl_collect_gateway(&m, gw.b[0].pool, &gw, &gw);
        }
    }
    free(text);
    return 0;
}
