/* test_gw_statefile.c -- the gateway's state file: what is written (through
 * a temporary file and a rename), what a restart merges back (members
 * added through the API, weights, admin states, drains with the time they
 * had left, split weights), and refusals that name the entry and field. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/gw_statefile.h"

static void load(gw_config *c, const char *doc)
{
    cfg_error err;
    memset(c, 0, sizeof *c);
    memset(&err, 0, sizeof err);
    cr_assert_eq(cfg_defaults(&gw_config_schema, c, &err), 0);
    int rc = cfg_load_text(&gw_config_schema, c, doc, strlen(doc), "t", &err);
    if (rc == 0)
        rc = cfg_validate(&gw_config_schema, c, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
}

static const char *DOC =
    "pools:\n"
    "  - {name: app, backends: [{address: '127.0.0.1:9001'}]}\n"
    "  - {name: canary, backends: [{address: '127.0.0.1:9004'}]}\n"
    "routes:\n"
    "  - {prefix: /, split: [{pool: app, weight: 90}, {pool: canary, weight: 10}]}\n";

static void expect_refused(const char *text, const char *where)
{
    gw_statefile sf;
    char err[400] = "";
    cr_assert_eq(gw_statefile_parse(text, strlen(text), &sf, err, sizeof err), -1, "accepted %s", text);
    cr_assert(strstr(err, where), "'%s' does not name %s", err, where);
    cr_assert_null(sf.members);
}

Test(gw_statefile, refusals_name_the_entry_and_field)
{
    expect_refused("{\"version\":1,\"pools\":[", "line 1");
    expect_refused("[1]", "file");
    expect_refused("{\"pools\":[]}", "file.version");
    expect_refused("{\"version\":2,\"pools\":[]}", "version");
    expect_refused("{\"version\":1,\"pools\":{}}", "pools");
    expect_refused("{\"version\":1,\"pools\":[{\"members\":[]}]}", "pools[0].name");
    expect_refused("{\"version\":1,\"pools\":[{\"name\":\"a\",\"members\":[{\"address\":\"127.0.0.1:1\","
                   "\"weight\":0}]}]}", "pools[0].members[0].weight");
    expect_refused("{\"version\":1,\"pools\":[{\"name\":\"a\",\"members\":[{\"address\":\"nope\"}]}]}",
                   "pools[0].members[0].address");
    expect_refused("{\"version\":1,\"pools\":[{\"name\":\"a\",\"members\":[{\"address\":\"127.0.0.1:1\","
                   "\"state\":\"asleep\"}]}]}", "pools[0].members[0].state");
    expect_refused("{\"version\":1,\"pools\":[],\"routes\":[{\"prefix\":\"/\",\"split\":[{\"pool\":\"a\","
                   "\"weight\":-1}]}]}", "routes[0].split[0].weight");
}

Test(gw_statefile, merge_adds_api_members_and_restores_weights)
{
    const char *text =
        "{\"version\":1,\"pools\":[{\"name\":\"app\",\"members\":["
        "{\"address\":\"127.0.0.1:9001\",\"weight\":5},"
        "{\"address\":\"127.0.0.1:9002\",\"weight\":2,\"state\":\"maint\"},"
        "{\"address\":\"127.0.0.1:9003\",\"state\":\"draining\",\"drain_until\":100}]},"
        "{\"name\":\"gone\",\"members\":[{\"address\":\"127.0.0.1:9009\"}]}],"
        "\"routes\":[{\"prefix\":\"/\",\"split\":[{\"pool\":\"canary\",\"weight\":50}]}]}";
    gw_statefile sf;
    char err[400] = "";
    cr_assert_eq(gw_statefile_parse(text, strlen(text), &sf, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sf.nmembers, 4);
    gw_config c;
    load(&c, DOC);
    bool restored[4];
    /* at t=200 the drain of 9003 (until 100) is over: it does not come back */
    cr_assert_eq(gw_statefile_merge(&sf, &c, 200, restored), 2);
    cr_assert_eq(c.pools[0].nbackends, 2);
    cr_assert_eq(c.pools[0].backends[0].weight, 5, "the saved weight wins");
    cr_assert_str_eq(c.pools[0].backends[1].address, "127.0.0.1:9002");
    cr_assert_eq(c.pools[0].backends[1].weight, 2);
    cr_assert_not(restored[0], "in the configuration file");
    cr_assert(restored[1], "registered through the API before the restart");
    cr_assert_not(restored[3], "a pool the configuration no longer has");
    cr_assert_eq(c.routes[0].split[0].weight, 90);
    cr_assert_eq(c.routes[0].split[1].weight, 50, "split weight restored");
    cfg_free(&gw_config_schema, &c);
    gw_statefile_free(&sf);
}

/* The smallest runtime the writer needs: a published snapshot, its config. */
static gw_rt *mkrt(const char *doc, const char *path)
{
    gw_rt *rt = calloc(1, sizeof *rt);
    load(&rt->cfg, doc);
    free(rt->cfg.state_file);
    rt->cfg.state_file = strdup(path);
    char err[256] = "";
    gw_snap *s = gw_snap_build(&rt->cfg, NULL, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    gw_rcu_init(&rt->rcu, 1, s);
    return rt;
}

static void freert(gw_rt *rt)
{
    while (rt->drains) {
        gw_drain *d = rt->drains;
        rt->drains = d->next;
        gw_member_unref(d->m);
        free(d);
    }
    gw_rcu_destroy(&rt->rcu);
    cfg_free(&gw_config_schema, &rt->cfg);
    free(rt);
}

Test(gw_statefile, written_atomically_and_read_back_by_the_next_gateway)
{
    char dir[] = "/tmp/hscale-statefile-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256], tmp[280];
    snprintf(path, sizeof path, "%s/gateway.state", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    gw_statefile sf;
    char err[400] = "";
    cr_assert_eq(gw_statefile_read(path, &sf, err, sizeof err), 0, "no file yet: nothing to load");

    gw_rt *rt = mkrt(DOC, path);
    gw_snap *s = gw_rcu_read(&rt->rcu);
    atomic_store(&s->pools[1].members[0]->state, GW_ST_MAINT);
    gw_drain *d = calloc(1, sizeof *d);
    snprintf(d->pool, sizeof d->pool, "app");
    snprintf(d->id, sizeof d->id, "127.0.0.1:9001");
    d->m = s->pools[0].members[0];
    gw_member_ref(d->m);
    d->deadline_us = ev_monotonic_us() + 30000000;
    rt->drains = d;
    atomic_store(&d->m->state, GW_ST_DRAINING);
    gw_statefile_save(rt);
    cr_assert_eq(access(tmp, F_OK), -1, "the temporary file was renamed");
    freert(rt);

    cr_assert_eq(gw_statefile_read(path, &sf, err, sizeof err), 1, "%s", err);
    cr_assert_eq(sf.nmembers, 2);
    cr_assert_str_eq(sf.members[0].pool, "app");
    cr_assert_eq(sf.members[0].state, GW_ST_DRAINING);
    double now = (double)ev_wall_us() / 1e6;
    cr_assert(sf.members[0].drain_until > now + 25 && sf.members[0].drain_until < now + 31,
              "drain time left kept as a wall-clock deadline");
    cr_assert_eq(sf.members[1].state, GW_ST_MAINT);
    cr_assert_eq(sf.nsplits, 2);

    /* The next gateway: states and the drain go back into its members. */
    gw_rt *next = mkrt(DOC, path);
    bool restored[2] = { false, false };
    gw_statefile_apply(&sf, restored, next, now);
    s = gw_rcu_read(&next->rcu);
    cr_assert_eq(atomic_load(&s->pools[1].members[0]->state), GW_ST_MAINT);
    cr_assert_eq(atomic_load(&s->pools[0].members[0]->state), GW_ST_DRAINING);
    cr_assert_not_null(next->drains);
    uint64_t left = next->drains->deadline_us - ev_monotonic_us();
    cr_assert(left > 25000000 && left <= 31000000, "%llu", (unsigned long long)left);
    freert(next);
    gw_statefile_free(&sf);

    /* A file that cannot be used is refused with the path named. */
    FILE *f = fopen(path, "w");
    fputs("{\"version\":1,\"pools\":[{\"name\":\"app\",\"members\":[{\"address\":7}]}]}", f);
    fclose(f);
    cr_assert_eq(gw_statefile_read(path, &sf, err, sizeof err), -1);
    cr_assert(strstr(err, path) && strstr(err, "members[0].address"), "%s", err);
    unlink(path);
    rmdir(dir);
}
