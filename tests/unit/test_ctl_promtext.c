/* test_ctl_promtext.c -- the Prometheus text parser: a real hscale app
 * scrape, labels with escapes, histograms and summaries, timestamps and
 * special values, and every refusal naming its line (cut-short input,
 * bad values, bad escapes, duplicate labels, TYPE misplacement, families
 * split apart, broken bucket series). */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "control/ctl_autoscale.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

#define MAXS 64
typedef struct seen {
    int n;
    char name[MAXS][96];
    char family[MAXS][96];
    ctl_pt_type type[MAXS];
    ctl_pt_suffix suffix[MAXS];
    double value[MAXS], le[MAXS];
    int nlabels[MAXS], line[MAXS];
    bool has_ts[MAXS];
    int64_t ts[MAXS];
    int stop_after;
} seen;

static int collect(const ctl_pt_sample *s, void *ud)
{
    seen *o = ud;
    if (o->n < MAXS) {
        snprintf(o->name[o->n], 96, "%.*s", (int)s->name.len, s->name.p);
        snprintf(o->family[o->n], 96, "%.*s", (int)s->family.len, s->family.p);
        o->type[o->n] = s->type;
        o->suffix[o->n] = s->suffix;
        o->value[o->n] = s->value;
        o->le[o->n] = s->le;
        o->nlabels[o->n] = s->nlabels;
        o->line[o->n] = s->line;
        o->has_ts[o->n] = s->has_timestamp;
        o->ts[o->n] = s->timestamp_ms;
    }
    o->n++;
    return o->stop_after && o->n >= o->stop_after;
}

static int parse(const char *text, seen *o, char *err)
{
    memset(o, 0, sizeof *o);
    return ctl_promtext_parse(text, strlen(text), collect, o, err, 256);
}

static const char app_scrape[] =
    "# HELP hscale_db_replica_lag_seconds Replication lag (-1: unknown).\n"
    "# TYPE hscale_db_replica_lag_seconds gauge\n"
    "# HELP hscale_http_requests_total HTTP requests answered.\n"
    "# TYPE hscale_http_requests_total counter\n"
    "hscale_http_requests_total{server=\"app\",route=\"/health\",method=\"GET\",code=\"200\"} 1\n"
    "hscale_http_requests_total{server=\"app\",route=\"/casefilter\",method=\"GET\",code=\"200\"} 7\n"
    "# HELP hscale_http_request_duration_seconds Time spent answering HTTP requests.\n"
    "# TYPE hscale_http_request_duration_seconds histogram\n"
    "hscale_http_request_duration_seconds_bucket{server=\"app\",route=\"/casefilter\",le=\"0.001\"} 2\n"
    "hscale_http_request_duration_seconds_bucket{server=\"app\",route=\"/casefilter\",le=\"0.01\"} 6\n"
    "hscale_http_request_duration_seconds_bucket{server=\"app\",route=\"/casefilter\",le=\"+Inf\"} 7\n"
    "hscale_http_request_duration_seconds_sum{server=\"app\",route=\"/casefilter\"} 0.0315\n"
    "hscale_http_request_duration_seconds_count{server=\"app\",route=\"/casefilter\"} 7\n"
    "hscale_http_request_duration_seconds_bucket{server=\"app\",route=\"/health\",le=\"0.001\"} 1\n"
    "hscale_http_request_duration_seconds_bucket{server=\"app\",route=\"/health\",le=\"0.01\"} 1\n"
    "hscale_http_request_duration_seconds_bucket{server=\"app\",route=\"/health\",le=\"+Inf\"} 1\n"
    "hscale_http_request_duration_seconds_sum{server=\"app\",route=\"/health\"} 0.000515\n"
    "hscale_http_request_duration_seconds_count{server=\"app\",route=\"/health\"} 1\n"
    "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
    "# TYPE process_cpu_seconds_total counter\n"
    "process_cpu_seconds_total 0.01\n"
    "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
    "# TYPE process_resident_memory_bytes gauge\n"
    "process_resident_memory_bytes 9932800\n"
    "process_start_time_seconds 1795394262.35\n";

Test(promtext, real_app_scrape)
{
    seen o;
    char err[256];
    cr_assert_eq(parse(app_scrape, &o, err), 0, "%s", err);
    cr_assert_eq(o.n, 15);
    cr_assert_str_eq(o.name[0], "hscale_http_requests_total");
    cr_assert_eq(o.type[0], CTL_PT_COUNTER);
    cr_assert_eq(o.nlabels[0], 4);
    cr_assert_eq(o.value[1], 7);
    cr_assert_str_eq(o.family[2], "hscale_http_request_duration_seconds");
    cr_assert_eq(o.type[2], CTL_PT_HISTOGRAM);
    cr_assert_eq(o.suffix[2], CTL_PT_BUCKET);
    cr_assert_float_eq(o.le[2], 0.001, 1e-12);
    cr_assert(isinf(o.le[4]) && o.le[4] > 0);
    cr_assert_eq(o.suffix[5], CTL_PT_SUM);
    cr_assert_eq(o.suffix[6], CTL_PT_COUNT);
    cr_assert_str_eq(o.name[12], "process_cpu_seconds_total");
    cr_assert_float_eq(o.value[12], 0.01, 1e-12);
    cr_assert_eq(o.type[13], CTL_PT_GAUGE);
    cr_assert_eq(o.type[14], CTL_PT_UNTYPED);    /* no TYPE line: untyped, own family */
    cr_assert_str_eq(o.family[14], "process_start_time_seconds");
    cr_assert_eq(o.line[14], 25);
}

static int find_label(const ctl_pt_sample *s, void *ud)
{
    char *out = ud;
    const ctl_pt_label *l = ctl_pt_label_find(s, "path");
    cr_assert(l);
    cr_assert(l->escaped);
    ctl_pt_label_decode(l, out, 64);
    cr_assert(ctl_pt_label_eq(l, "a\"b\\c\nd"));
    cr_assert(!ctl_pt_label_eq(l, "a\"b\\c\n"));
    cr_assert(!ctl_pt_label_eq(l, "a\"b\\c\nde"));
    cr_assert(!ctl_pt_label_find(s, "nope"));
    char small[4];
    cr_assert_eq(ctl_pt_label_decode(l, small, sizeof small), 7);
    cr_assert_str_eq(small, "a\"b");
    return 0;
}

Test(promtext, label_escapes)
{
    const char *t = "x{ path = \"a\\\"b\\\\c\\nd\" , other=\"\" , } 1\n";
    char got[64] = "", err[256];
    cr_assert_eq(ctl_promtext_parse(t, strlen(t), find_label, got, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(got, "a\"b\\c\nd");
}

Test(promtext, values_timestamps_and_blanks)
{
    seen o;
    char err[256];
    const char *t =
        "\n"
        "# just a comment\n"
        "  a 1 1700000000000\n"
        "b{} +Inf\n"
        "c -Inf -5\n"
        "d NaN\n"
        "e\t1.5e3\t\n"
        "f 0x10\n";
    cr_assert_eq(parse(t, &o, err), -1);
    cr_assert_str_eq(err, "line 8: value '0x10' of f is not a number");
    cr_assert_eq(parse("a 1 1700000000000\nb{} +Inf\nc -Inf -5\nd NaN\ne\t1.5e3\t\n", &o, err), 0, "%s", err);
    cr_assert_eq(o.n, 5);
    cr_assert(o.has_ts[0]);
    cr_assert_eq(o.ts[0], 1700000000000ll);
    cr_assert(isinf(o.value[1]) && o.value[1] > 0);
    cr_assert(isinf(o.value[2]) && o.value[2] < 0);
    cr_assert_eq(o.ts[2], -5);
    cr_assert(isnan(o.value[3]));
    cr_assert_float_eq(o.value[4], 1500, 1e-9);
    cr_assert(!o.has_ts[4]);
    cr_assert_eq(parse("", &o, err), 0);
    cr_assert_eq(o.n, 0);
}

Test(promtext, callback_stops)
{
    seen o;
    memset(&o, 0, sizeof o);
    o.stop_after = 2;
    const char *t = "a 1\nb 2\nc 3\n";
    cr_assert_eq(ctl_promtext_parse(t, strlen(t), collect, &o, NULL, 0), 1);
    cr_assert_eq(o.n, 2);
}

Test(promtext, summary)
{
    seen o;
    char err[256];
    const char *t = "# TYPE rpc summary\nrpc{quantile=\"0.5\"} 1\nrpc{quantile=\"0.99\"} 3\n"
                    "rpc_sum 10\nrpc_count 4\n";
    cr_assert_eq(parse(t, &o, err), 0, "%s", err);
    cr_assert_eq(o.n, 4);
    cr_assert_eq(o.suffix[0], CTL_PT_PLAIN);
    cr_assert_eq(o.suffix[3], CTL_PT_COUNT);
    cr_assert_eq(parse("# TYPE rpc summary\nrpc 1\n", &o, err), -1);
    cr_assert(strstr(err, "line 2:") && strstr(err, "quantile"), "%s", err);
}

/* Every refusal: the input, the line it names, and words from the message. */
static const struct { const char *text, *want; } bad[] = {
    { "a 1", "line 1: input does not end with a newline" },
    { "a 1\nb 2", "line 2: input does not end with a newline" },
    { "a\n", "line 1: a has no value" },
    { "a 1x\n", "line 1: value '1x' of a is not a number" },
    { "a infinity\n", "not a number" },
    { "a 1 2 3\n", "unexpected text after the timestamp" },
    { "a 1 1.5\n", "timestamp '1.5' of a is not an integer" },
    { "1a 1\n", "line 1: expected a metric name" },
    { "a-b 1\n", "invalid character '-'" },
    { "a{x=\"1\",x=\"2\"} 1\n", "duplicate label 'x'" },
    { "a{x=\"\\t\"} 1\n", "invalid escape" },
    { "a{x=\"1} 1\n", "unterminated value of label 'x'" },
    { "a{x=1} 1\n", "expected '\"' to open the value of label 'x'" },
    { "a{x} 1\n", "expected '=' after label 'x'" },
    { "a{x=\"1\" y=\"2\"} 1\n", "expected ',' or '}'" },
    { "a{:x=\"1\"} 1\n", "expected a label name" },
    { "a{x=\"1\"}1\n", "expected a space before the value" },
    { "# TYPE a counter\n# TYPE a counter\na 1\n", "line 2: second TYPE line for a" },
    { "# HELP a x\n# HELP a y\n", "line 2: second HELP line for a" },
    { "# HELP a bad \\t escape\n", "invalid escape in HELP" },
    { "a 1\n# TYPE a gauge\n", "line 2: TYPE line for a after its samples" },
    { "# TYPE a kounter\n", "unknown TYPE 'kounter'" },
    { "# TYPE a gauge extra\n", "unexpected text after TYPE" },
    { "a 1\nb 1\na 2\n", "line 3: samples of a are not together" },
    { "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nx 1\nh_sum 2\n",
      "line 6: samples of h are not together" },
    { "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\n", "line 3: bucket counts of h must not decrease" },
    { "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n", "line 3: buckets of h must have increasing le" },
    { "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", "line 3: histogram h has no +Inf bucket" },
    { "# TYPE h histogram\nh_bucket{le=\"1\"} 1\n", "histogram h has a series without a +Inf bucket" },
    { "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", "line 4: h_count differs from its +Inf bucket" },
    { "# TYPE h histogram\nh_bucket 1\n", "line 2: bucket of h without an le label" },
    { "# TYPE h histogram\nh_bucket{le=\"x\"} 1\n", "le=\"x\" is not a number" },
    { "# TYPE h histogram\nh_bucket{le=\"1\"} -1\n", "non-negative" },
    { "# TYPE h histogram\nh 1\n", "histogram h has a sample without _bucket" },
    { "# TYPE h histogram\nh_bucket{a=\"1\",le=\"1\"} 1\nh_bucket{a=\"2\",le=\"1\"} 1\n",
      "line 3: histogram h has a series without a +Inf bucket" },
    { "a{x=\"a\0b\"} 1\n", "does not end with a newline" },   /* strlen stops at the NUL */
};

Test(promtext, refusals_name_the_line)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        seen o;
        char err[256] = "";
        int rc = parse(bad[i].text, &o, err);
        cr_assert_eq(rc, -1, "case %zu accepted: %s", i, bad[i].text);
        cr_assert(strstr(err, bad[i].want), "case %zu: got '%s', want '%s'", i, err, bad[i].want);
        cr_assert(!strncmp(err, "line ", 5), "case %zu: %s", i, err);
    }
}

Test(promtext, nul_inside_a_label_value)
{
    static const char t[] = "a{x=\"a\0b\"} 1\n";
    char err[256];
    cr_assert_eq(ctl_promtext_parse(t, sizeof t - 1, NULL, NULL, err, sizeof err), -1);
    cr_assert(strstr(err, "NUL byte"), "%s", err);
}

Test(promtext, histograms_with_many_series)
{
    seen o;
    char err[256];
    const char *t =
        "# TYPE h histogram\n"
        "h_bucket{r=\"a\",le=\"0.1\"} 1\nh_bucket{r=\"a\",le=\"+Inf\"} 2\nh_sum{r=\"a\"} 1\nh_count{r=\"a\"} 2\n"
        "h_bucket{le=\"0.1\",r=\"b\"} 0\nh_bucket{r=\"b\",le=\"+Inf\"} 0\nh_sum{r=\"b\"} 0\nh_count{r=\"b\"} 0\n"
        "# TYPE g gauge\ng 3\n";
    cr_assert_eq(parse(t, &o, err), 0, "%s", err);
    cr_assert_eq(o.n, 9);
    cr_assert_eq(o.type[8], CTL_PT_GAUGE);
}
