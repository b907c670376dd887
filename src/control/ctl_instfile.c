/* ctl_instfile.c -- reading, writing and judging the instance state file
 * (format in ctl_instfile.h).
 *
 * The parser is strict because its output decides which processes the
 * control plane will later signal: every field is typed and bounded, an
 * entry that fails names itself, and a refused file adopts nothing (the
 * instances it named are then left alone, never stopped by mistake). */
#include "control/ctl_instfile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control/ctl_instances.h"

/* Linux's pid_max ceiling (PID_MAX_LIMIT on 64-bit). */
#define CTL_PID_MAX 4194304

const char *ctl_adopt_verdict_str(ctl_adopt_verdict v)
{
    switch (v) {
    case CTL_ADOPT_YES: return "adopted";
    case CTL_ADOPT_GONE: return "gone";
    case CTL_ADOPT_REUSED: return "pid reused by another process";
    case CTL_ADOPT_FOREIGN: return "another process group or session";
    case CTL_ADOPT_BAD: return "no process named";
    }
    return "unknown";
}

ctl_adopt_verdict ctl_adopt_decide(const ctl_saved_inst *s, const proc_ident *now)
{
    if (s->pid <= 0 || s->start == 0)
        return CTL_ADOPT_BAD;
    if (!now)
        return CTL_ADOPT_GONE;
    if (now->start != s->start)
        return CTL_ADOPT_REUSED;
    if ((s->pgid && now->pgid != s->pgid) || (s->sid && now->sid != s->sid))
        return CTL_ADOPT_FOREIGN;
    return CTL_ADOPT_YES;
}

ctl_adopt_verdict ctl_adopt_check(const ctl_saved_inst *s)
{
    proc_ident id;
    if (s->pid <= 0)
        return CTL_ADOPT_BAD;
    return ctl_adopt_decide(s, proc_ident_read(s->pid, &id) == 0 ? &id : NULL);
}

void ctl_instfile_free(ctl_instfile *f)
{
    free(f->insts);
    memset(f, 0, sizeof *f);
}

static int get_str(json_t *o, const char *key, const char *where, bool required, char *out,
                   size_t cap, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    out[0] = '\0';
    if (!v && !required)
        return 0;
    if (!json_is_string(v) || json_string_length(v) >= cap
        || strlen(json_string_value(v)) != json_string_length(v)) {
        snprintf(err, errlen, "%s%s: expected a string of at most %zu bytes", where, key, cap - 1);
        return -1;
    }
    snprintf(out, cap, "%s", json_string_value(v));
    return 0;
}

static int get_u64(json_t *o, const char *key, const char *where, bool required, uint64_t min,
                   uint64_t max, uint64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v && !required)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0
        || (uint64_t)json_integer_value(v) < min || (uint64_t)json_integer_value(v) > max) {
        snprintf(err, errlen, "%s%s: expected an integer %llu..%llu", where, key,
                 (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_bool(json_t *o, const char *key, const char *where, bool *out, char *err,
                    size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = false;
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        snprintf(err, errlen, "%s%s: expected true or false", where, key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static int parse_inst(json_t *j, size_t i, ctl_saved_inst *s, char *err, size_t errlen)
{
    char where[48];
    snprintf(where, sizeof where, "instances[%zu].", i);
    if (!json_is_object(j)) {
        snprintf(err, errlen, "instances[%zu]: expected an object", i);
        return -1;
    }
    uint64_t pid, pgid, sid, how;
    if (get_str(j, "id", where, true, s->id, sizeof s->id, err, errlen) < 0
        || get_u64(j, "pid", where, true, 1, CTL_PID_MAX, &pid, err, errlen) < 0
        || get_u64(j, "start", where, true, 1, UINT64_MAX >> 1, &s->start, err, errlen) < 0
        || get_u64(j, "pgid", where, false, 0, CTL_PID_MAX, &pgid, err, errlen) < 0
        || get_u64(j, "sid", where, false, 0, CTL_PID_MAX, &sid, err, errlen) < 0
        || get_str(j, "address", where, false, s->address, sizeof s->address, err, errlen) < 0
        || get_str(j, "version", where, false, s->version, sizeof s->version, err, errlen) < 0
        || get_str(j, "ready_path", where, false, s->ready_path, sizeof s->ready_path, err,
                   errlen) < 0
        || get_bool(j, "noport", where, &s->noport, err, errlen) < 0
        || get_u64(j, "stop_how", where, false, CTL_TERM_GROUP, CTL_TERM_MAIN, &how, err,
                   errlen) < 0
        || get_bool(j, "managed", where, &s->managed, err, errlen) < 0
        || get_bool(j, "registered", where, &s->registered, err, errlen) < 0)
        return -1;
    if (how == CTL_TERM_KILL) {
        snprintf(err, errlen, "%sstop_how: expected 0 (group) or 2 (main process)", where);
        return -1;
    }
    if (!s->id[0]) {
        snprintf(err, errlen, "%sid: expected a non-empty string", where);
        return -1;
    }
    if (s->ready_path[0] && s->ready_path[0] != '/') {
        snprintf(err, errlen, "%sready_path: expected a path starting with /", where);
        return -1;
    }
    if (s->noport == (s->address[0] != '\0')) {
        snprintf(err, errlen, "%saddress: expected host:port, or \"\" with noport", where);
        return -1;
    }
    s->pid = (pid_t)pid;
    s->pgid = (pid_t)pgid;
    s->sid = (pid_t)sid;
    s->stop_how = (int)how;
    return 0;
}

int ctl_instfile_parse(const char *text, size_t len, ctl_instfile *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        snprintf(err, errlen, "line %d column %d: %s", je.line, je.column, je.text);
        return -1;
    }
    ctl_instfile f;
    memset(&f, 0, sizeof f);
    uint64_t ver, opid, ostart;
    json_t *arr = json_is_object(j) ? json_object_get(j, "instances") : NULL;
    int rc = -1;
    if (!json_is_object(j)) {
        snprintf(err, errlen, "file: expected a JSON object");
        goto out;
    }
    if (get_u64(j, "version", "", true, 1, 1, &ver, err, errlen) < 0
        || get_u64(j, "owner_pid", "", false, 0, CTL_PID_MAX, &opid, err, errlen) < 0
        || get_u64(j, "owner_start", "", false, 0, UINT64_MAX >> 1, &ostart, err, errlen) < 0
        || get_str(j, "pool", "", false, f.pool, sizeof f.pool, err, errlen) < 0
        || get_str(j, "gateway", "", false, f.gateway, sizeof f.gateway, err, errlen) < 0)
        goto out;
    f.owner_pid = (pid_t)opid;
    f.owner_start = ostart;
    if (!json_is_array(arr) || json_array_size(arr) > CTL_INSTFILE_MAX) {
        snprintf(err, errlen, "instances: expected an array of at most %d entries",
                 CTL_INSTFILE_MAX);
        goto out;
    }
    f.n = json_array_size(arr);
    f.insts = f.n ? calloc(f.n, sizeof *f.insts) : NULL;
    if (f.n && !f.insts) {
        snprintf(err, errlen, "file: out of memory");
        goto out;
    }
    for (size_t i = 0; i < f.n; i++) {
        if (parse_inst(json_array_get(arr, i), i, &f.insts[i], err, errlen) < 0)
            goto out;
        for (size_t k = 0; k < i; k++)
            if (strcmp(f.insts[k].id, f.insts[i].id) == 0 || f.insts[k].pid == f.insts[i].pid) {
                snprintf(err, errlen, "instances[%zu]: id %s or pid %d already in instances[%zu]",
                         i, f.insts[i].id, (int)f.insts[i].pid, k);
                goto out;
            }
    }
    *out = f;
    rc = 0;
out:
    if (rc < 0)
        ctl_instfile_free(&f);
    json_decref(j);
    return rc;
}

void ctl_instfile_render(const ctl_instfile *f, double now_unix, buf *out)
{
    json_t *j = json_object();
    json_t *arr = json_array();
    json_object_set_new(j, "version", json_integer(1));
    json_object_set_new(j, "written", json_integer((json_int_t)now_unix));
    json_object_set_new(j, "owner_pid", json_integer(f->owner_pid));
    json_object_set_new(j, "owner_start", json_integer((json_int_t)f->owner_start));
    json_object_set_new(j, "pool", json_string(f->pool));
    json_object_set_new(j, "gateway", json_string(f->gateway));
    for (size_t i = 0; i < f->n; i++) {
        const ctl_saved_inst *s = &f->insts[i];
        json_t *e = json_object();
        json_object_set_new(e, "id", json_string(s->id));
        json_object_set_new(e, "pid", json_integer(s->pid));
        json_object_set_new(e, "start", json_integer((json_int_t)s->start));
        json_object_set_new(e, "pgid", json_integer(s->pgid));
        json_object_set_new(e, "sid", json_integer(s->sid));
        json_object_set_new(e, "address", json_string(s->address));
        json_object_set_new(e, "version", json_string(s->version));
        json_object_set_new(e, "ready_path", json_string(s->ready_path));
        json_object_set_new(e, "noport", json_boolean(s->noport));
        json_object_set_new(e, "stop_how", json_integer(s->stop_how));
        json_object_set_new(e, "managed", json_boolean(s->managed));
        json_object_set_new(e, "registered", json_boolean(s->registered));
        json_array_append_new(arr, e);
    }
    json_object_set_new(j, "instances", arr);
    /* json_string of invalid UTF-8 is NULL and set_new drops it: the
     * values come from our own config and ids, which are UTF-8. */
    char *text = json_dumps(j, JSON_COMPACT);
    if (text) {
        buf_append(out, text, strlen(text));
        free(text);
    }
    json_decref(j);
}

int ctl_instfile_load(const char *path, ctl_instfile *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    buf b;
    buf_init(&b);
    char chunk[8192];
    ssize_t r;
    while ((r = read(fd, chunk, sizeof chunk)) > 0 && b.len < (size_t)4 << 20)
        buf_append(&b, chunk, (size_t)r);
    close(fd);
    char e[400];
    int rc = 0;
    if (r < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    } else if (ctl_instfile_parse(buf_head(&b), b.len, out, e, sizeof e) < 0) {
        snprintf(err, errlen, "%s: %s", path, e);
        rc = -1;
    }
    buf_free(&b);
    return rc;
}

int ctl_instfile_write(const char *path, const ctl_instfile *f, char *err, size_t errlen)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    buf b;
    buf_init(&b);
    ctl_instfile_render(f, (double)ts.tv_sec, &b);
    int rc = ctl_sd_write(path, &b, err, errlen);
    buf_free(&b);
    return rc;
}
