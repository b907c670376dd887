/* test_ctl_history.c -- the JSON lines event log: append and reload
 * newest first, a torn last line skipped and cut off (and the next append
 * on a line of its own), garbage lines skipped, rotation bounding the disk
 * and keeping the newest across a reopen, refusals, and a scaler event
 * round trip. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/ctl_autoscale.h"
#include "core/log.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static char dir[64];

static void mkscratch(void)
{
    snprintf(dir, sizeof dir, "/tmp/hscale-hist-XXXXXX");
    cr_assert(mkdtemp(dir));
    log_set_level(LOG_ERROR);          /* the torn-line warnings are expected */
}

static void rmscratch(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void append(ctl_history *h, int i)
{
    char line[64], err[128];
    int n = snprintf(line, sizeof line, "{\"seq\":%d,\"kind\":\"scale_out\"}", i);
    cr_assert_eq(ctl_history_append(h, line, (size_t)n, err, sizeof err), 0, "%s", err);
}

static int seq_of(const char *json)
{
    json_t *j = json_loads(json, 0, NULL);
    cr_assert(j, "%s", json);
    int s = (int)json_integer_value(json_object_get(j, "seq"));
    json_decref(j);
    return s;
}

static size_t file_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

Test(history, append_reload_newest_first, .init = mkscratch, .fini = rmscratch)
{
    char err[128];
    ctl_history *h = ctl_history_open(dir, "scaling", 100, err, sizeof err);
    cr_assert(h, "%s", err);
    cr_assert_eq(ctl_history_count(h), 0);
    for (int i = 1; i <= 5; i++)
        append(h, i);
    cr_assert_eq(ctl_history_count(h), 5);
    cr_assert_eq(seq_of(ctl_history_get(h, 0)), 5);
    cr_assert_eq(seq_of(ctl_history_get(h, 4)), 1);
    cr_assert_null(ctl_history_get(h, 5));
    ctl_history_close(h);

    h = ctl_history_open(dir, "scaling", 100, err, sizeof err);
    cr_assert(h, "%s", err);
    cr_assert_eq(ctl_history_count(h), 5);
    cr_assert_eq(ctl_history_skipped(h), 0);
    buf b;
    buf_init(&b);
    ctl_history_query(h, 2, &b);
    json_t *arr = json_loadb(buf_head(&b), b.len, 0, NULL);
    cr_assert(json_is_array(arr));
    cr_assert_eq(json_array_size(arr), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(arr, 0), "seq")), 5);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(arr, 1), "seq")), 4);
    json_decref(arr);
    buf_reset(&b);
    ctl_history_query(h, 0, &b);
    arr = json_loadb(buf_head(&b), b.len, 0, NULL);
    cr_assert_eq(json_array_size(arr), 5);
    json_decref(arr);
    buf_free(&b);
    ctl_history_close(h);
}

Test(history, torn_last_line_is_skipped_and_cut, .init = mkscratch, .fini = rmscratch)
{
    char path[128], err[128];
    snprintf(path, sizeof path, "%s/scaling.jsonl", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs("{\"seq\":1}\nnot json at all\n{\"seq\":2}\n{\"seq\":3,\"kind\":\"sca", f);
    fclose(f);
    ctl_history *h = ctl_history_open(dir, "scaling", 100, err, sizeof err);
    cr_assert(h, "%s", err);
    cr_assert_eq(ctl_history_count(h), 2);
    cr_assert_eq(ctl_history_skipped(h), 2);
    cr_assert_eq(seq_of(ctl_history_get(h, 0)), 2);
    append(h, 3);
    ctl_history_close(h);

    h = ctl_history_open(dir, "scaling", 100, err, sizeof err);
    cr_assert(h, "%s", err);
    cr_assert_eq(ctl_history_count(h), 3);
    cr_assert_eq(ctl_history_skipped(h), 1);          /* only the garbage line now */
    cr_assert_eq(seq_of(ctl_history_get(h, 0)), 3);
    cr_assert_eq(file_lines(path), 4);
    ctl_history_close(h);
}

Test(history, rotation_bounds_the_disk, .init = mkscratch, .fini = rmscratch)
{
    char path[128], old[128], err[128];
    snprintf(path, sizeof path, "%s/scaling.jsonl", dir);
    snprintf(old, sizeof old, "%s/scaling.jsonl.1", dir);
    ctl_history *h = ctl_history_open(dir, "scaling", 10, err, sizeof err);
    cr_assert(h, "%s", err);
    for (int i = 1; i <= 25; i++) {
        append(h, i);
        cr_assert_leq(file_lines(path) + file_lines(old), 20);
    }
    cr_assert_eq(ctl_history_count(h), 10);
    cr_assert_eq(seq_of(ctl_history_get(h, 0)), 25);
    cr_assert_eq(seq_of(ctl_history_get(h, 9)), 16);
    cr_assert_eq(file_lines(path), 5);
    cr_assert_eq(file_lines(old), 10);
    ctl_history_close(h);

    /* the newest 10 survive a reopen, from both files */
    h = ctl_history_open(dir, "scaling", 10, err, sizeof err);
    cr_assert(h, "%s", err);
    cr_assert_eq(ctl_history_count(h), 10);
    cr_assert_eq(seq_of(ctl_history_get(h, 0)), 25);
    cr_assert_eq(seq_of(ctl_history_get(h, 9)), 16);
    for (int i = 26; i <= 30; i++)
        append(h, i);
    cr_assert_eq(file_lines(path), 10);
    append(h, 31);                                    /* rotates again */
    cr_assert_eq(file_lines(path), 1);
    cr_assert_eq(seq_of(ctl_history_get(h, 0)), 31);
    ctl_history_close(h);
}

Test(history, refusals, .init = mkscratch, .fini = rmscratch)
{
    char err[128];
    ctl_history *h = ctl_history_open(dir, "scaling", 10, err, sizeof err);
    cr_assert(h, "%s", err);
    cr_assert_eq(ctl_history_append(h, "[1]", 3, err, sizeof err), -1);
    cr_assert(strstr(err, "not a JSON object"), "%s", err);
    cr_assert_eq(ctl_history_append(h, "{\"a\":\n1}", 8, err, sizeof err), -1);
    cr_assert(strstr(err, "newline"), "%s", err);
    cr_assert_eq(ctl_history_append(h, "{\"a\":1", 6, err, sizeof err), -1);
    cr_assert_eq(ctl_history_count(h), 0);
    ctl_history_close(h);

    cr_assert_null(ctl_history_open("/proc/no/such/dir", "scaling", 10, err, sizeof err));
    cr_assert(strstr(err, "/proc/no/such/dir"), "%s", err);
    cr_assert_null(ctl_history_open(dir, "scaling", 0, err, sizeof err));
}

Test(history, large_event_and_scaler_round_trip, .init = mkscratch, .fini = rmscratch)
{
    char err[128];
    ctl_history *h = ctl_history_open(dir, "scaling", 10, err, sizeof err);
    cr_assert(h, "%s", err);
    ctl_event e;
    memset(&e, 0, sizeof e);
    e.kind = CTL_EV_SCALE_OUT;
    e.time_us = 1700000000000000ull;
    e.old_count = 2;
    e.new_count = 4;
    snprintf(e.reason, sizeof e.reason, "target:cpu: \"quoted\" and \\ backslash");
    e.nrecs = CTL_MAX_RECS;                           /* > 1 KiB of JSON */
    for (size_t i = 0; i < e.nrecs; i++) {
        snprintf(e.recs[i].policy, sizeof e.recs[i].policy, "rule:rules[%zu]", i);
        e.recs[i].replicas = CTL_NO_REC;
        snprintf(e.recs[i].note, sizeof e.recs[i].note, "cpu 12.5, not > 70");
    }
    buf b;
    buf_init(&b);
    ctl_event_to_json(&e, &b);
    cr_assert_gt(b.len, 1024);
    cr_assert_eq(ctl_history_append(h, buf_head(&b), b.len, err, sizeof err), 0, "%s", err);
    ctl_history_close(h);
    h = ctl_history_open(dir, "scaling", 10, err, sizeof err);
    cr_assert(h, "%s", err);
    json_t *j = json_loads(ctl_history_get(h, 0), 0, NULL);
    cr_assert(j);
    cr_assert_str_eq(json_string_value(json_object_get(j, "reason")), e.reason);
    cr_assert_eq(json_integer_value(json_object_get(j, "new")), 4);
    cr_assert_eq(json_array_size(json_object_get(j, "recommendations")), CTL_MAX_RECS);
    json_decref(j);
    buf_free(&b);
    ctl_history_close(h);
}
