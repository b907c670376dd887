/* ctl_history.c -- the event log: JSON objects, one per line, appended to a
 * file in the state directory so a restart keeps the scaling (and deploy)
 * history.
 *
 * Durability is "fsync-light": each event is one write(2) of the whole line
 * on an O_APPEND descriptor followed by fdatasync, so a crash loses at most
 * the line being written and never reorders lines. A line cut by a crash
 * has no newline: at open it is skipped with a warning and cut off the
 * file, so the next append starts on a line of its own. Other lines that
 * do not parse are skipped and kept (they are someone's evidence).
 *
 * Bounded: when the live file holds `limit` lines it becomes NAME.jsonl.1
 * (replacing the previous one) and a new file starts; both are read at
 * open, so the newest `limit` events survive a rotation. The newest `limit`
 * lines are also held in memory, a ring of strings, for queries. */
#include "control/ctl_autoscale.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

struct ctl_history {
    char   *path, *path_old;
    char   *dir;
    int     fd;
    size_t  limit;
    size_t  file_lines;        /* lines in the live file */
    size_t  skipped;
    char  **ring;              /* limit slots, oldest at head */
    size_t  head, len;
};

static bool valid_object(const char *s, size_t len)
{
    json_error_t je;
    json_t *j = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
    bool ok = j && json_is_object(j);
    json_decref(j);
    return ok;
}

static int ring_add(ctl_history *h, const char *s, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    if (h->len == h->limit) {
        free(h->ring[h->head]);
        h->head = (h->head + 1) % h->limit;
        h->len--;
    }
    h->ring[(h->head + h->len) % h->limit] = copy;
    h->len++;
    return 0;
}

/* Reads one file into the ring. For the live file (`live`), counts its
 * lines and cuts a torn last line. A missing file is empty. */
static int load_file(ctl_history *h, const char *path, bool live, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    off_t good_end = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[n - 1] != '\n') {
            log_write(LOG_WARN, "%s:%zu: last line is cut short (a crash while writing?); "
                      "dropping it", path, lineno);
            h->skipped++;
            break;
        }
        good_end += n;
        if (live)
            h->file_lines++;
        if (!valid_object(line, (size_t)n - 1)) {
            log_write(LOG_WARN, "%s:%zu: not a JSON object; skipped", path, lineno);
            h->skipped++;
            continue;
        }
        if (ring_add(h, line, (size_t)n - 1) < 0) {
            snprintf(err, errlen, "%s: out of memory", path);
            free(line);
            fclose(f);
            return -1;
        }
    }
    free(line);
    fclose(f);
    if (live) {
        struct stat st;
        if (stat(path, &st) == 0 && st.st_size > good_end && truncate(path, good_end) < 0) {
            snprintf(err, errlen, "%s: cannot cut the torn last line: %s", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int open_live(ctl_history *h, char *err, size_t errlen)
{
    h->fd = open(h->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (h->fd < 0) {
        snprintf(err, errlen, "%s: %s", h->path, strerror(errno));
        return -1;
    }
    return 0;
}

static char *join(const char *dir, const char *name, const char *ext)
{
    size_t l = strlen(dir) + strlen(name) + strlen(ext) + 2;
    char *p = malloc(l);
    if (p)
        snprintf(p, l, "%s/%s%s", dir, name, ext);
    return p;
}

ctl_history *ctl_history_open(const char *dir, const char *name, size_t limit,
                              char *err, size_t errlen)
{
    if (!limit) {
        snprintf(err, errlen, "history limit must be at least 1");
        return NULL;
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "state directory %s: %s", dir, strerror(errno));
        return NULL;
    }
    ctl_history *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->fd = -1;
    h->limit = limit;
    h->dir = strdup(dir);
    h->path = join(dir, name, ".jsonl");
    h->path_old = join(dir, name, ".jsonl.1");
    h->ring = calloc(limit, sizeof *h->ring);
    if (!h->dir || !h->path || !h->path_old || !h->ring) {
        snprintf(err, errlen, "out of memory");
        ctl_history_close(h);
        return NULL;
    }
    if (load_file(h, h->path_old, false, err, errlen) < 0 ||
        load_file(h, h->path, true, err, errlen) < 0 || open_live(h, err, errlen) < 0) {
        ctl_history_close(h);
        return NULL;
    }
    return h;
}

void ctl_history_close(ctl_history *h)
{
    if (!h)
        return;
    if (h->fd >= 0)
        close(h->fd);
    for (size_t k = 0; h->ring && k < h->len; k++)
        free(h->ring[(h->head + k) % h->limit]);
    free(h->ring);
    free(h->path);
    free(h->path_old);
    free(h->dir);
    free(h);
}

static int rotate(ctl_history *h, char *err, size_t errlen)
{
    close(h->fd);
    h->fd = -1;
    if (rename(h->path, h->path_old) < 0) {
        snprintf(err, errlen, "rotating %s: %s", h->path, strerror(errno));
        open_live(h, err, errlen);
        return -1;
    }
    h->file_lines = 0;
    if (open_live(h, err, errlen) < 0)
        return -1;
    int dfd = open(h->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {                    /* make the rename itself durable */
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int ctl_history_append(ctl_history *h, const char *json, size_t len, char *err, size_t errlen)
{
    if (memchr(json, '\n', len)) {
        snprintf(err, errlen, "event holds a newline");
        return -1;
    }
    if (!valid_object(json, len)) {
        snprintf(err, errlen, "event is not a JSON object");
        return -1;
    }
    if (h->fd < 0 && open_live(h, err, errlen) < 0)
        return -1;
    if (h->file_lines >= h->limit && rotate(h, err, errlen) < 0)
        return -1;
    /* one write for the line and its newline: a crash cannot split them
     * into two records, only cut the last one short */
    char small[1024];
    char *line = len + 1 <= sizeof small ? small : malloc(len + 1);
    if (!line) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(line, json, len);
    line[len] = '\n';
    size_t off = 0;
    while (off < len + 1) {
        ssize_t w = write(h->fd, line + off, len + 1 - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, errlen, "%s: write: %s", h->path, w < 0 ? strerror(errno) : "no progress");
            if (line != small)
                free(line);
            return -1;
        }
        off += (size_t)w;
    }
    if (line != small)
        free(line);
    if (fdatasync(h->fd) < 0) {
        snprintf(err, errlen, "%s: fdatasync: %s", h->path, strerror(errno));
        return -1;
    }
    h->file_lines++;
    if (ring_add(h, json, len) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

size_t ctl_history_count(const ctl_history *h)
{
    return h->len;
}

const char *ctl_history_get(const ctl_history *h, size_t i)
{
    if (i >= h->len)
        return NULL;
    return h->ring[(h->head + h->len - 1 - i) % h->limit];
}

void ctl_history_query(const ctl_history *h, size_t limit, buf *out)
{
    size_t n = !limit || limit > h->len ? h->len : limit;
    buf_append_str(out, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_append_str(out, ",");
        buf_append_str(out, ctl_history_get(h, i));
    }
    buf_append_str(out, "]");
}

size_t ctl_history_skipped(const ctl_history *h)
{
    return h->skipped;
}
