/* app_config.c -- the `app:` configuration section: where the service
 * listens, how many workers, and its data layer (the `store:` schema of
 * src/store, embedded as app.store).
 *
 * Precedence is defaults < file < environment < flags, the same as every
 * other command; a bad value anywhere fails the whole load with the file,
 * line and key path, and nothing is applied. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "app/app.h"

#define F(m) offsetof(app_config, m)

static const cfg_field app_fields[] = {
    { "listen", CFG_ADDR, F(listen), "127.0.0.1:8001", "HSCALE_APP_LISTEN", 0, 0, NULL, NULL, 0,
      0, "address of the HTTP API" },
    { "workers", CFG_INT, F(workers), "0", "HSCALE_APP_WORKERS", 0, 256, NULL, NULL, 0, 0,
      "worker threads, one event loop each (0: one per core); a slow query stalls only its worker" },
    { "instance_id", CFG_STRING, F(instance_id), NULL, "HSCALE_INSTANCE_ID", 0, 0, NULL, NULL, 0,
      0, "name reported by /health (empty: hostname-pid)" },
    { "max_body", CFG_SIZE, F(max_body), "64KiB", "HSCALE_APP_MAX_BODY", 1024, 64 << 20, NULL,
      NULL, 0, 0, "largest request body accepted; larger ones get 413 before any handler runs" },
    { "drain_timeout", CFG_DURATION, F(drain_timeout), "10s", NULL, 0, 600, NULL, NULL, 0, 0,
      "on SIGTERM, wait this long for in-flight requests before exiting" },
    { "admin_token", CFG_STRING, F(admin_token), NULL, "HSCALE_APP_ADMIN_TOKEN", 0, 0, NULL, NULL,
      0, 0, "bearer token for /admin/* (shard map, resharding); unset: those paths answer only"
      " when listen is loopback" },
    { "store", CFG_OBJECT, F(store), NULL, NULL, 0, 0, NULL, &st_config_schema, 0, 0,
      "the data layer: shards, replicas, pools, cache" },
};

const cfg_schema app_config_schema = { "app", app_fields, sizeof app_fields / sizeof app_fields[0],
                                       NULL };

/* The file holds the section under its name, like gateway's `gateway:`. */
typedef struct app_file {
    app_config app;
} app_file;

static const cfg_field file_fields[] = {
    { .key = "app", .type = CFG_OBJECT, .offset = offsetof(app_file, app),
      .sub = &app_config_schema, .help = "the reference service" },
};
static const cfg_schema file_schema = { "hscale", file_fields, 1, NULL };

int app_config_load(const char *path, const char *const *sets, app_config *out, char *err,
                    size_t errlen)
{
    app_file f;
    cfg_error e;
    memset(&f, 0, sizeof f);
    memset(&e, 0, sizeof e);
    int rc = cfg_load(&file_schema, &f, path, &e);
    for (size_t i = 0; rc == 0 && sets && sets[i]; i += 2) {
        if (sets[i + 1])
            rc = cfg_set(&file_schema, &f, sets[i], sets[i + 1], &e);
    }
    if (rc == 0)
        rc = cfg_validate(&file_schema, &f, &e);
    if (rc != 0) {
        cfg_error_format(&e, err, errlen);
        cfg_free(&file_schema, &f);
        return -1;
    }
    *out = f.app;      /* moved: the wrapper holds nothing else */
    return 0;
}

void app_config_free(app_config *c)
{
    cfg_free(&app_config_schema, c);
}

void app_config_json(const app_config *c, buf *out)
{
    cfg_to_json_redacted(&app_config_schema, c, out);
}
