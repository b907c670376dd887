/* ctl_procstat.c -- an instance's CPU and memory from /proc and cgroup v2:
 * the process tree under its root pid, PSS (RSS where PSS is unreadable),
 * and the cgroup's own counters when a cgroup holds exactly that tree.
 * What counts as the tree and why is in ctl_procstat_int.h.
 *
 * Parsers take text and a length (never a NUL terminator: fuzzed inputs
 * have none) and read nothing else; file reading is kept to the
 * ps_read_* helpers and ctl_ptable_read / ctl_procstat_take, so unit tests
 * feed recorded text through the same parsers. A file that vanishes while
 * it is read (a process that exited) is "not there", never an error. */
#include "control/ctl_procstat_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- parsers --------------------------------------------------------------- */

/* Skips blanks, then reads an optionally negative decimal integer. */
static int ps_int(const char **pp, const char *end, long long *v)
{
    const char *p = *pp;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    bool neg = p < end && *p == '-';
    if (neg)
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return -1;
    unsigned long long n = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (n > (9223372036854775807ULL - d) / 10)
            return -1;
        n = n * 10 + d;
        p++;
    }
    *v = neg ? -(long long)n : (long long)n;
    *pp = p;
    return 0;
}

static int ps_u64(const char **pp, const char *end, uint64_t *v)
{
    long long x;
    if (ps_int(pp, end, &x) < 0 || x < 0)
        return -1;
    *v = (uint64_t)x;
    return 0;
}

/* The line starting at p: its end (the '\n' or end). */
static const char *ps_eol(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl : end;
}

int ctl_ps_parse_stat(const char *text, size_t len, ctl_ps_proc *out)
{
    const char *p = text, *end = text + len;
    long long pid;
    if (ps_int(&p, end, &pid) < 0 || pid <= 0 || pid > 0x7fffffff)
        return -1;
    if (p + 2 > end || p[0] != ' ' || p[1] != '(')
        return -1;
    const char *rp = memrchr(p, ')', (size_t)(end - p));
    if (!rp || rp + 3 > end || rp[1] != ' ')
        return -1;
    p = rp + 2;
    char state = *p++;
    if (state < 'A' || state > 'z')
        return -1;
    /* fields 4..22: ppid pgrp session tty_nr tpgid flags minflt cminflt
     * majflt cmajflt utime stime cutime cstime priority nice num_threads
     * itrealvalue starttime */
    long long f[23];
    for (int i = 4; i <= 22; i++)
        if (ps_int(&p, end, &f[i]) < 0)
            return -1;
    if (f[4] < 0 || f[4] > 0x7fffffff || f[5] < 0 || f[5] > 0x7fffffff)
        return -1;
    for (int i = 14; i <= 17; i++)
        if (f[i] < 0 || f[i] > (1LL << 60))
            return -1;
    if (f[22] < 0)
        return -1;
    out->pid = (pid_t)pid;
    out->ppid = (pid_t)f[4];
    out->pgrp = (pid_t)f[5];
    out->state = state;
    /* four values of at most 2^60 each: the sum cannot wrap */
    out->ticks = (uint64_t)f[14] + (uint64_t)f[15] + (uint64_t)f[16] + (uint64_t)f[17];
    out->start = (uint64_t)f[22];
    return 0;
}

/* The value after "key" + separator at the start of some line. */
static int ps_find_line(const char *text, size_t len, const char *key, size_t klen,
                        const char **val, const char **eol)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *e = ps_eol(p, end);
        if ((size_t)(e - p) > klen && !memcmp(p, key, klen)) {
            *val = p + klen;
            *eol = e;
            return 0;
        }
        p = e < end ? e + 1 : end;
    }
    return -1;
}

int ctl_ps_parse_pss(const char *text, size_t len, uint64_t *bytes)
{
    const char *v, *e;
    uint64_t kb;
    if (ps_find_line(text, len, "Pss:", 4, &v, &e) < 0 || ps_u64(&v, e, &kb) < 0)
        return -1;
    while (v < e && *v == ' ')
        v++;
    if (e - v < 2 || memcmp(v, "kB", 2) != 0 || kb > UINT64_MAX / 1024)
        return -1;
    *bytes = kb * 1024;
    return 0;
}

int ctl_ps_parse_statm(const char *text, size_t len, uint64_t page, uint64_t *bytes)
{
    const char *p = text, *end = text + len;
    uint64_t size, rss;
    if (ps_u64(&p, end, &size) < 0 || ps_u64(&p, end, &rss) < 0)
        return -1;
    if (page && rss > UINT64_MAX / page)
        return -1;
    *bytes = rss * page;
    return 0;
}

int ctl_ps_parse_cgroup(const char *text, size_t len, char *path, size_t pathlen)
{
    const char *v, *e;
    if (ps_find_line(text, len, "0::", 3, &v, &e) < 0 || v >= e || *v != '/')
        return -1;
    size_t n = (size_t)(e - v);
    if (n >= pathlen || memchr(v, '\0', n))
        return -1;
    memcpy(path, v, n);
    path[n] = '\0';
    return 0;
}

int ctl_ps_parse_keyed(const char *text, size_t len, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *e = ps_eol(p, end);
        if ((size_t)(e - p) > kl + 1 && !memcmp(p, key, kl) && p[kl] == ' ') {
            const char *v = p + kl;
            return ps_u64(&v, e, out) == 0 && v == e ? 0 : -1;
        }
        p = e < end ? e + 1 : end;
    }
    return -1;
}

int ctl_ps_parse_u64(const char *text, size_t len, uint64_t *out)
{
    const char *p = text, *end = text + len;
    if (p >= end || *p < '0' || *p > '9' || ps_u64(&p, end, out) < 0)
        return -1;
    if (p < end && *p == '\n')
        p++;
    return p == end ? 0 : -1;
}

/* Copies a mountinfo field, decoding \ooo escapes. -1 when it does not fit. */
static int ps_unescape(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3'
            && s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            c = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        }
        if (c == '\0' || o + 1 >= outlen)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

int ctl_ps_parse_mountinfo(const char *text, size_t len, char *mnt, size_t mntlen,
                           char *root, size_t rootlen)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *e = ps_eol(p, end);
        /* fields: id parent maj:min root mountpoint options [optional...] - fstype src opts */
        const char *tok[64];
        size_t tl[64];
        int nt = 0;
        const char *q = p;
        while (q < e && nt < 64) {
            while (q < e && *q == ' ')
                q++;
            if (q >= e)
                break;
            const char *s = q;
            while (q < e && *q != ' ')
                q++;
            tok[nt] = s;
            tl[nt] = (size_t)(q - s);
            nt++;
        }
        int dash = -1;
        for (int i = 6; i < nt; i++)
            if (tl[i] == 1 && tok[i][0] == '-') {
                dash = i;
                break;
            }
        if (dash > 0 && dash + 1 < nt && tl[dash + 1] == 7 && !memcmp(tok[dash + 1], "cgroup2", 7)
            && ps_unescape(tok[4], tl[4], mnt, mntlen) == 0
            && ps_unescape(tok[3], tl[3], root, rootlen) == 0
            && mnt[0] == '/' && root[0] == '/')
            return 0;
        p = e < end ? e + 1 : end;
    }
    return -1;
}

long ctl_ps_parse_pids(const char *text, size_t len, pid_t *out, size_t max)
{
    const char *p = text, *end = text + len;
    long n = 0;
    while (p < end) {
        const char *e = ps_eol(p, end);
        if (e > p) {
            long long v;
            const char *q = p;
            if (*q < '0' || *q > '9' || ps_int(&q, e, &v) < 0 || q != e || v <= 0 || v > 0x7fffffff)
                return -1;
            if ((size_t)n < max)
                out[n] = (pid_t)v;
            n++;
        }
        p = e < end ? e + 1 : end;
    }
    return n;
}

/* ---- the process table ----------------------------------------------------- */

/* Index of the first entry with pid >= pid. */
static size_t pt_lower(const ctl_ptable *t, pid_t pid)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->p[mid].pid < pid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const ctl_ps_proc *ctl_ptable_find(const ctl_ptable *t, pid_t pid)
{
    size_t i = pt_lower(t, pid);
    return i < t->n && t->p[i].pid == pid ? &t->p[i] : NULL;
}

static int pt_reserve(ctl_ptable *t, size_t need)
{
    if (need <= t->cap)
        return 0;
    size_t c = t->cap ? t->cap : 256;
    while (c < need)
        c *= 2;
    ctl_ps_proc *q = realloc(t->p, c * sizeof *q);
    if (!q)
        return -1;
    t->p = q;
    t->cap = c;
    return 0;
}

int ctl_ptable_add(ctl_ptable *t, const ctl_ps_proc *p)
{
    size_t i = pt_lower(t, p->pid);
    if (i < t->n && t->p[i].pid == p->pid) {
        t->p[i] = *p;
        return 0;
    }
    if (pt_reserve(t, t->n + 1) < 0)
        return -1;
    memmove(&t->p[i + 1], &t->p[i], (t->n - i) * sizeof t->p[0]);
    t->p[i] = *p;
    t->n++;
    return 0;
}

void ctl_ptable_free(ctl_ptable *t)
{
    free(t->p);
    t->p = NULL;
    t->n = t->cap = 0;
}

/* Reads a whole small file into b (NUL-terminated). Its length, -1 when it
 * cannot be opened or read, -2 when it does not fit. */
static ssize_t ps_read(const char *path, char *b, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, b + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap - 1) {
            char extra;
            ssize_t more = read(fd, &extra, 1);
            close(fd);
            b[n] = '\0';
            return more > 0 ? -2 : (ssize_t)n;
        }
    }
    close(fd);
    b[n] = '\0';
    return (ssize_t)n;
}

static int pt_cmp(const void *a, const void *b)
{
    pid_t x = ((const ctl_ps_proc *)a)->pid, y = ((const ctl_ps_proc *)b)->pid;
    return (x > y) - (x < y);
}

int ctl_ptable_read(ctl_ptable *t, const char *proc_root)
{
    DIR *d = opendir(proc_root);
    if (!d)
        return -1;
    t->n = 0;
    const struct dirent *de;
    char path[512], b[1024];
    bool sorted = true;
    while ((de = readdir(d))) {
        const char *s = de->d_name;
        if (*s < '1' || *s > '9' || s[strspn(s, "0123456789")] != '\0')
            continue;
        snprintf(path, sizeof path, "%s/%s/stat", proc_root, s);
        ssize_t n = ps_read(path, b, sizeof b);
        ctl_ps_proc p;
        if (n <= 0 || ctl_ps_parse_stat(b, (size_t)n, &p) < 0)
            continue;                         /* gone meanwhile, or a kernel oddity */
        if (pt_reserve(t, t->n + 1) < 0) {
            closedir(d);
            return -1;
        }
        if (t->n && t->p[t->n - 1].pid >= p.pid)
            sorted = false;
        t->p[t->n++] = p;
    }
    closedir(d);
    if (!sorted)
        qsort(t->p, t->n, sizeof t->p[0], pt_cmp);
    return 0;
}

/* ---- the tree ------------------------------------------------------------- */

#define PS_MAX_DEPTH 128     /* deeper ppid chains (or a loop in bad input) are not members */

size_t ctl_ps_tree(const ctl_ptable *t, pid_t root, size_t *idx, size_t max)
{
    const ctl_ps_proc *r = ctl_ptable_find(t, root);
    if (!r)
        return 0;
    bool leader = r->pgrp == root;
    unsigned char *memo = calloc(t->n ? t->n : 1, 1);   /* 0 unknown, 1 member, 2 not */
    if (!memo)
        return 0;
    size_t ri = (size_t)(r - t->p), count = 0;
    memo[ri] = 1;
    if (max)
        idx[0] = ri;
    count = 1;
    size_t path[PS_MAX_DEPTH];
    for (size_t i = 0; i < t->n; i++) {
        size_t depth = 0, cur = i;
        unsigned char verdict = 0;
        while (!(verdict = memo[cur])) {
            const ctl_ps_proc *p = &t->p[cur];
            if (leader && p->pgrp == root) {
                verdict = 1;
            } else {
                const ctl_ps_proc *pp = p->ppid > 0 && p->ppid != p->pid
                                        ? ctl_ptable_find(t, p->ppid) : NULL;
                if (!pp || depth == PS_MAX_DEPTH)
                    verdict = 2;
                else {
                    path[depth++] = cur;
                    cur = (size_t)(pp - t->p);
                    continue;
                }
            }
            memo[cur] = verdict;
            break;
        }
        while (depth > 0)
            memo[path[--depth]] = verdict;
        if (i != ri && memo[i] == 1) {
            if (count < max)
                idx[count] = i;
            count++;
        }
    }
    free(memo);
    return count;
}

/* ---- one instance's sample --------------------------------------------------- */

void ctl_ps_env_init(ctl_ps_env *e, const char *proc_root)
{
    memset(e, 0, sizeof *e);
    snprintf(e->proc_root, sizeof e->proc_root, "%s", proc_root);
    long hz = sysconf(_SC_CLK_TCK), pg = sysconf(_SC_PAGESIZE);
    e->clk_tck = hz > 0 ? (double)hz : 100.0;
    e->page = pg > 0 ? (uint64_t)pg : 4096;
    char path[300];
    snprintf(path, sizeof path, "%s/self/mountinfo", proc_root);
    size_t cap = 256 * 1024;
    char *b = malloc(cap);
    if (!b)
        return;
    ssize_t n = ps_read(path, b, cap);
    if (n == -2)
        n = (ssize_t)strlen(b);      /* a huge table: the cgroup2 line is usually early */
    if (n <= 0 || ctl_ps_parse_mountinfo(b, (size_t)n, e->cg_mount, sizeof e->cg_mount,
                                         e->cg_root, sizeof e->cg_root) < 0)
        e->cg_mount[0] = e->cg_root[0] = '\0';
    free(b);
}

/* Memory of one member in bytes: PSS, else RSS (*rss set); -1 when gone. */
static int ps_member_mem(const ctl_ps_env *e, pid_t pid, uint64_t *bytes, bool *rss)
{
    char path[320], b[4096];
    snprintf(path, sizeof path, "%s/%d/smaps_rollup", e->proc_root, (int)pid);
    ssize_t n = ps_read(path, b, sizeof b);
    if (n > 0 && ctl_ps_parse_pss(b, (size_t)n, bytes) == 0) {
        *rss = false;
        return 0;
    }
    snprintf(path, sizeof path, "%s/%d/statm", e->proc_root, (int)pid);
    n = ps_read(path, b, sizeof b);
    if (n > 0 && ctl_ps_parse_statm(b, (size_t)n, e->page, bytes) == 0) {
        *rss = true;
        return 0;
    }
    return -1;
}

#define PS_CG_MAX_DEPTH 8
#define PS_CG_PROCS_CAP (12 * (CTL_PS_MAX_TREE + 2))   /* pids of 11 digits at most */

/* Appends the pids of dir's cgroup.procs and its descendants' to pids.
 * -1 when more than max or unreadable. */
static int ps_cg_pids(const char *dir, int depth, pid_t *pids, size_t *n, size_t max,
                      char *b, size_t bcap)
{
    char path[640];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    ssize_t len = ps_read(path, b, bcap);
    if (len < 0)
        return -1;
    long k = ctl_ps_parse_pids(b, (size_t)len, pids + *n, max - *n);
    if (k < 0 || (size_t)k > max - *n)
        return -1;
    *n += (size_t)k;
    if (depth >= PS_CG_MAX_DEPTH)
        return 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    const struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d))) {
        if (de->d_type != DT_DIR || de->d_name[0] == '.')
            continue;
        char sub[640];
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name) >= sizeof sub)
            rc = -1;
        else
            rc = ps_cg_pids(sub, depth + 1, pids, n, max, b, bcap);
    }
    closedir(d);
    return rc;
}

static int pid_cmp(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

static bool pid_in(const pid_t *sorted, size_t n, pid_t p)
{
    return bsearch(&p, sorted, n, sizeof *sorted, pid_cmp) != NULL;
}

/* The cgroup's counters when it holds exactly the tree (see the header). */
static void ps_cgroup(ctl_procstat *out, const ctl_ps_env *e, const ctl_ptable *t,
                      const size_t *idx, size_t nm)
{
    if (!e->cg_mount[0] || nm == 0 || nm > CTL_PS_MAX_TREE)
        return;
    char path[640], b[4096], cg[sizeof out->cgroup];
    snprintf(path, sizeof path, "%s/%d/cgroup", e->proc_root, (int)out->root);
    ssize_t n = ps_read(path, b, sizeof b);
    if (n <= 0 || ctl_ps_parse_cgroup(b, (size_t)n, cg, sizeof cg) < 0 || !strcmp(cg, "/"))
        return;
    /* the path is relative to the hierarchy; the mount shows e->cg_root of it */
    size_t rl = strlen(e->cg_root);
    const char *rel = cg;
    if (strcmp(e->cg_root, "/") != 0) {
        if (strncmp(cg, e->cg_root, rl) != 0 || (cg[rl] != '/' && cg[rl] != '\0'))
            return;
        rel = cg + rl;
    }
    if (strstr(rel, "/../") || strstr(rel, " (deleted)"))
        return;
    char dir[600];
    if ((size_t)snprintf(dir, sizeof dir, "%s%s", e->cg_mount, rel) >= sizeof dir)
        return;
    pid_t members[CTL_PS_MAX_TREE] = { 0 }, inside[CTL_PS_MAX_TREE + 1];
    size_t live = 0, nin = 0;
    for (size_t i = 0; i < nm; i++)
        members[i] = t->p[idx[i]].pid;
    qsort(members, nm, sizeof members[0], pid_cmp);
    /* each level has parsed its own list before it descends: one buffer */
    char *scratch = malloc(PS_CG_PROCS_CAP);
    int rc = scratch ? ps_cg_pids(dir, 0, inside, &nin, CTL_PS_MAX_TREE + 1, scratch,
                                  PS_CG_PROCS_CAP) : -1;
    free(scratch);
    if (rc < 0)
        return;
    for (size_t i = 0; i < nin; i++)
        if (!pid_in(members, nm, inside[i]))
            return;                      /* someone else is in there */
    qsort(inside, nin, sizeof inside[0], pid_cmp);
    for (size_t i = 0; i < nm; i++) {
        const ctl_ps_proc *p = &t->p[idx[i]];
        if (p->state == 'Z' || p->state == 'X')
            continue;                    /* exited tasks leave cgroup.procs */
        live++;
        if (!pid_in(inside, nin, p->pid))
            return;                      /* part of the tree is elsewhere */
    }
    if (!live)
        return;
    uint64_t usec, cur, inactive = 0;
    snprintf(path, sizeof path, "%s/cpu.stat", dir);
    n = ps_read(path, b, sizeof b);
    if (n <= 0 || ctl_ps_parse_keyed(b, (size_t)n, "usage_usec", &usec) < 0)
        return;
    out->cg_cpu_s = (double)usec / 1e6;
    snprintf(out->cgroup, sizeof out->cgroup, "%s", cg);
    snprintf(path, sizeof path, "%s/memory.current", dir);
    n = ps_read(path, b, sizeof b);
    if (n <= 0 || ctl_ps_parse_u64(b, (size_t)n, &cur) < 0)
        return;                          /* no memory controller here */
    snprintf(path, sizeof path, "%s/memory.stat", dir);
    n = ps_read(path, b, sizeof b);
    if (n > 0)
        (void)ctl_ps_parse_keyed(b, (size_t)n, "inactive_file", &inactive);
    out->cg_mem_bytes = (double)(cur > inactive ? cur - inactive : 0);
}

void ctl_procstat_take(ctl_procstat *out, const ctl_ps_env *e, const ctl_ptable *t,
                       pid_t root, uint64_t at_us)
{
    memset(out, 0, sizeof *out);
    out->at_us = at_us;
    out->root = root;
    out->cpu_s = out->mem_bytes = out->cg_cpu_s = out->cg_mem_bytes = NAN;
    const ctl_ps_proc *r = root > 0 ? ctl_ptable_find(t, root) : NULL;
    if (!r)
        return;
    out->ok = true;
    out->root_start = r->start;
    size_t idx[CTL_PS_MAX_TREE];
    size_t n = ctl_ps_tree(t, root, idx, CTL_PS_MAX_TREE);
    size_t nm = n < CTL_PS_MAX_TREE ? n : CTL_PS_MAX_TREE;
    out->nprocs = (int)n;
    uint64_t ticks = 0, mem = 0;
    int measured = 0;
    for (size_t i = 0; i < nm; i++) {
        const ctl_ps_proc *p = &t->p[idx[i]];
        ticks += p->ticks;
        if (p->state == 'Z' || p->state == 'X')
            continue;                    /* no memory left to count */
        uint64_t b;
        bool rss;
        if (ps_member_mem(e, p->pid, &b, &rss) == 0) {
            mem += b;
            measured++;
            out->mem_rss += rss;
        }
    }
    out->cpu_s = (double)ticks / e->clk_tck;
    if (measured)
        out->mem_bytes = (double)mem;
    if (n <= CTL_PS_MAX_TREE)
        ps_cgroup(out, e, t, idx, nm);
}
