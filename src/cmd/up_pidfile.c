/* up_pidfile.c -- the stack's pid files (up.pid, gateway.pid; see
 * up_int.h): written atomically (temporary file, fsync, rename) so a
 * reader never sees half of one, and trusted only while the pid still has
 * the start time written next to it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd/up_int.h"
#include "core/proc.h"

static int up_pidfile_num(const char **p, const char *end, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    const char *s = *p;
    while (*p < end && **p >= '0' && **p <= '9') {
        if (v > (max - (uint64_t)(**p - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(**p - '0');
        (*p)++;
    }
    if (*p == s || v == 0)
        return -1;
    *out = v;
    return 0;
}

int up_pidfile_parse(const char *text, size_t len, pid_t *pid, uint64_t *start)
{
    const char *p = text, *end = text + len;
    uint64_t v, st;
    if (up_pidfile_num(&p, end, 4194304u, &v) < 0 || p == end || *p++ != ' '
        || up_pidfile_num(&p, end, UINT64_MAX >> 1, &st) < 0)
        return -1;
    if (p < end && *p == '\n')
        p++;
    if (p != end)
        return -1;
    *pid = (pid_t)v;
    *start = st;
    return 0;
}

int up_pidfile_write(const char *path, pid_t pid, char *err, size_t errlen)
{
    proc_ident id;
    if (proc_ident_read(pid, &id) < 0) {
        snprintf(err, errlen, "%s: pid %d does not run", path, (int)pid);
        return -1;
    }
    char tmp[PATH_MAX + 8], text[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int n = snprintf(text, sizeof text, "%d %llu\n", (int)pid, (unsigned long long)id.start);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    if (fd >= 0 && close(fd) < 0)
        ok = false;
    if (!ok || rename(tmp, path) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

bool up_pidfile_alive(const char *path, pid_t *pid, uint64_t *start)
{
    char text[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, text, sizeof text);
    close(fd);
    return n > 0 && up_pidfile_parse(text, (size_t)n, pid, start) == 0 && proc_same(*pid, *start);
}
