/* gw_statefile.h -- the gateway's runtime state kept across restarts
 * (HAProxy's server-state-file): members with their weights and admin
 * states, drains in progress and the split weights of routes, written on
 * every runtime change and read back at start. Internal to src/gateway.
 *
 * The file is JSON:
 *   {"version":1,"written":<unix s>,
 *    "pools":[{"name":"app","members":[{"address":"127.0.0.1:9001","weight":1,
 *              "backup":false,"state":"ready","drain_until":0}]}],
 *    "routes":[{"prefix":"/","host":"","split":[{"pool":"app","weight":100}]}]}
 * drain_until is a wall-clock time (unix seconds), the only clock that
 * means the same thing to the next process; 0 when not draining. */
#ifndef HSCALE_GATEWAY_GW_STATEFILE_H
#define HSCALE_GATEWAY_GW_STATEFILE_H

#include "gateway/gw_proxy.h"

typedef struct gw_saved_member {
    char     pool[GW_NAME_MAX];
    char     address[GW_NAME_MAX];
    int      weight;
    bool     backup;
    int      state;            /* gw_state */
    double   drain_until;      /* unix s; 0: not draining */
} gw_saved_member;

typedef struct gw_saved_split {
    char     prefix[256];
    char     host[256];
    char     pool[GW_NAME_MAX];
    int      weight;
} gw_saved_split;

typedef struct gw_statefile {
    gw_saved_member *members;
    size_t           nmembers;
    gw_saved_split  *splits;
    size_t           nsplits;
} gw_statefile;

/* Parses and checks a state file's text. On a refusal returns -1 with err
 * naming the entry and field ("pools[0].members[2].weight: expected an
 * integer 1..1000"); nothing is kept. */
int  gw_statefile_parse(const char *text, size_t len, gw_statefile *out, char *err, size_t errlen);
void gw_statefile_free(gw_statefile *sf);

/* Merges the saved state into a configuration before the first snapshot:
 * saved members of pools the configuration has are added when missing
 * (registered through the API before the restart) and given their saved
 * weight; members whose drain ran out are removed; saved split weights go
 * to the routes with the same prefix and host. restored[i] tells whether
 * saved member i was added (not in the configuration file); an entry that
 * does not fit (an unknown pool, a full pool) is skipped. Returns how many
 * members were taken. */
size_t gw_statefile_merge(const gw_statefile *sf, gw_config *cfg, double now_unix, bool *restored);

/* After the first snapshot: admin states, drains (with the time they had
 * left) and the restored flag go into the live members. */
void gw_statefile_apply(const gw_statefile *sf, const bool *restored, gw_rt *rt, double now_unix);

/* A reload (SIGHUP) re-reads the file, which does not hold the members
 * added at run time (through the API or from the state file): they are
 * merged into `next` for the pools it still has, with their weights, as
 * the state file would bring them back after a restart. Members of the
 * old file that the new one drops do go. Returns how many were kept. */
size_t gw_statefile_keep_dynamic(const gw_snap *cur, gw_config *next);

/* Reads and parses `path`: 0 when there is no file (a first start), 1 when
 * *out holds it, -1 when it is unreadable or refused (err says why). */
int  gw_statefile_read(const char *path, gw_statefile *out, char *err, size_t errlen);

/* Writes the current state to rt->cfg.state_file (when set) through a
 * temporary file and a rename, so a reader (the next gateway) sees the old
 * file or the new one, never half of one. Caller holds rt->edit_lock.
 * Failures are logged; the running gateway is not affected. */
void gw_statefile_save(gw_rt *rt);

#endif
