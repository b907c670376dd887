/* fuzz_queue.c -- libFuzzer target for the queue policy's parsers of
 * outside input (control/ctl_queue_parse.c): a Prometheus instant query's
 * answer, a number in any JSON document at a JSON pointer or dotted path,
 * and a Redis URL.
 *
 * The first byte picks the parser; for the JSON document the path is the
 * text up to the first newline and the document the rest. Beyond "no
 * crash": an accepted depth is finite and >= 0; a refusal has a message;
 * parsing the same bytes twice gives the same answer; an accepted Redis URL
 * has a host, a port in 1..65535, a database >= 0, and every string is
 * terminated inside its array. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_autoscale.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static void check_depth(int rc, double v, const char *err)
{
    if (rc == 0)
        CHECK(isfinite(v) && v >= 0);
    else
        CHECK(rc == -1 && err[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int which = data[0] % 3;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    char err[200] = "", err2[200] = "";
    double v = -1, v2 = -1;
    if (which == 0) {
        int rc = ctl_prom_value_parse(body, len, &v, err, sizeof err);
        check_depth(rc, v, err);
        int rc2 = ctl_prom_value_parse(body, len, &v2, err2, sizeof err2);
        CHECK(rc == rc2 && (rc < 0 || v == v2));
    } else if (which == 1) {
        const char *nl = memchr(body, '\n', len);
        size_t pl = nl ? (size_t)(nl - body) : len;
        char *path = malloc(pl + 1);
        if (!path)
            return 0;
        memcpy(path, body, pl);
        path[pl] = '\0';
        const char *doc = nl ? nl + 1 : body + len;
        size_t dl = nl ? len - pl - 1 : 0;
        int rc = ctl_json_number_at(doc, dl, path, &v, err, sizeof err);
        check_depth(rc, v, err);
        int rc2 = ctl_json_number_at(doc, dl, path, &v2, err2, sizeof err2);
        CHECK(rc == rc2 && (rc < 0 || v == v2));
        free(path);
    } else {
        char *url = malloc(len + 1);
        if (!url)
            return 0;
        memcpy(url, body, len);
        url[len] = '\0';
        ctl_redis_url u;
        int rc = ctl_redis_url_parse(url, &u, err, sizeof err);
        if (rc == 0) {
            CHECK(memchr(u.host, '\0', sizeof u.host) && u.host[0]);
            CHECK(memchr(u.user, '\0', sizeof u.user) && memchr(u.password, '\0', sizeof u.password));
            CHECK(u.port >= 1 && u.port <= 65535 && u.db >= 0);
            CHECK(strncmp(url, "redis://", 8) == 0);
        } else {
            CHECK(rc == -1 && err[0]);
        }
        free(url);
    }
    return 0;
}
