/* ctl_sd.c -- Prometheus discovery of the fleet: one target group per
 * instance of every service (role app, with service, instance_id, version
 * and pool; instances of a service without metrics_path, or without an
 * address, are not scrapeable and left out: they would read as down),
 * the gateway's
 * admin listener (role gateway) and the control listener (role control),
 * in the file_sd shape, which is also the HTTP SD shape (GET /api/v1/sd).
 *
 * The file is rewritten by write-to-temporary then rename(2), so Prometheus
 * never reads half of it; docs/monitoring.md documents the contract. Only
 * instances that serve are listed (ready or draining): one starting or
 * stopping would read as an InstanceDown that is not one. */
#include "control/ctl_instances.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/client.h"

static json_t *group(const char *target, const char *role)
{
    return json_pack("{s:[s], s:{s:s}}", "targets", target, "labels", "role", role);
}

static void ctl_sd_service(const ctl_api *a, json_t *arr)
{
    size_t cap = 64;
    ctl_instance_info *inst = malloc(cap * sizeof *inst);
    size_t n = inst ? ctl_instances_list(a->mgr, inst, cap) : 0;
    if (n > cap) {
        ctl_instance_info *ni = realloc(inst, n * sizeof *ni);
        if (ni) {
            inst = ni;
            cap = n;
            n = ctl_instances_list(a->mgr, inst, cap);
        }
        if (n > cap)
            n = cap;
    }
    const char *mp = a->c->tmpl.metrics_path;
    for (size_t i = 0; i < n && mp && mp[0]; i++) {
        if ((inst[i].state != CTL_INST_READY && inst[i].state != CTL_INST_DRAINING)
            || !inst[i].address[0])
            continue;
        json_t *g = json_pack("{s:[s], s:{s:s, s:s, s:s, s:s, s:s}}",
            "targets", inst[i].address, "labels", "role", "app", "service", a->service,
            "instance_id", inst[i].id, "version", inst[i].version, "pool", a->c->pool);
        if (g && strcmp(mp, "/metrics") != 0)
            json_object_set_new(json_object_get(g, "labels"), "__metrics_path__", json_string(mp));
        json_array_append_new(arr, g);
    }
    free(inst);
}

void ctl_sd_json(const ctl_api *svcs, size_t n, const char *control_addr, buf *out)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        ctl_sd_service(&svcs[i], arr);
    const ctl_config *c = n ? svcs[0].c : NULL;
    if (c && c->gateway && c->gateway[0]) {
        char url[512], e[256], hp[300];
        http_url u;
        snprintf(url, sizeof url, "%s%s", strstr(c->gateway, "://") ? "" : "http://", c->gateway);
        if (http_url_parse(url, &u, e, sizeof e) == 0) {
            snprintf(hp, sizeof hp, "%s:%d", u.host, u.port);
            json_array_append_new(arr, group(hp, "gateway"));
        }
    }
    if (control_addr && control_addr[0])
        json_array_append_new(arr, group(control_addr, "control"));
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    buf_append_str(out, s ? s : "[]");
    free(s);
}

static int mkdirs_for(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *slash = strrchr(tmp, '/');
    if (!slash || slash == tmp)
        return 0;
    *slash = '\0';
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

int ctl_sd_write(const char *path, const buf *b, char *err, size_t errlen)
{
    char tmp[1100];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    if (mkdirs_for(path) < 0) {
        snprintf(err, errlen, "cannot create the directory of %s: %s", path,
                 strerror(errno));
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    const char *p = buf_head(b);
    size_t left = b->len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, errlen, "writing %s: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    bool ok = write(fd, "\n", 1) == 1;
    /* fsync before the rename: after a power cut the name must not point
     * at a file whose blocks never reached the disk. */
    ok = ok && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}
