/* test_gw_lb.c -- gateway decision logic: balancing algorithms, backups,
 * slow start, sticky cookies, health rise/fall, outlier ejection, retry
 * budget and the shared rate limiter. */
#include <criterion/criterion.h>
#include <string.h>
#include <stdio.h>

#include "gateway/gw_lb.h"

static gw_member M[8];
static gw_pool P;
static gw_lb_cursor C;

static void mkpool(gw_algo algo, int n, const uint32_t *w)
{
    gw_pool_init(&P, "p", algo);
    gw_lb_cursor_init(&C, 42);
    for (int i = 0; i < n; i++) {
        char a[32], err[128];
        snprintf(a, sizeof a, "127.0.0.1:%d", 9001 + i);
        cr_assert_eq(gw_member_init(&M[i], a, w ? w[i] : 1, false, err, sizeof err), 0, "%s", err);
        cr_assert_eq(gw_pool_add(&P, &M[i]), 0);
    }
}

Test(gw_lb, member_init_errors)
{
    char err[128];
    cr_assert_eq(gw_member_init(&M[0], "127.0.0.1:9000", 0, false, err, sizeof err), -1);
    cr_assert(strstr(err, "weight"), "%s", err);
    cr_assert_eq(gw_member_init(&M[0], "nope", 1, false, err, sizeof err), -1);
    cr_assert(strstr(err, "address"), "%s", err);
}

Test(gw_lb, swrr_smooth_sequence)
{
    uint32_t w[3] = { 5, 1, 1 };
    mkpool(GW_ALGO_SWRR, 3, w);
    /* nginx's documented sequence for 5:1:1 */
    int want[7] = { 0, 0, 1, 0, 2, 0, 0 };
    for (int i = 0; i < 7; i++)
        cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 1), want[i], "pick %d", i);
    int cnt[3] = { 0 };
    for (int i = 0; i < 700; i++)
        cnt[gw_lb_pick(&P, &C, NULL, 0, -1, 1)]++;
    cr_assert_eq(cnt[0], 500);
    cr_assert_eq(cnt[1], 100);
    cr_assert_eq(cnt[2], 100);
}

Test(gw_lb, skips_ineligible_and_exclude)
{
    mkpool(GW_ALGO_SWRR, 3, NULL);
    atomic_store(&M[0].state, GW_ST_DRAINING);
    atomic_store(&M[1].healthy, false);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 1), 2);
    cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, 2, 1), -1);
    atomic_store(&M[2].ejected_until_us, 100);
    cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 50), -1);
    cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 100), 2);   /* ejection over */
}

Test(gw_lb, backups_only_when_primaries_down)
{
    mkpool(GW_ALGO_SWRR, 3, NULL);
    M[2].backup = true;
    for (int i = 0; i < 20; i++)
        cr_assert_neq(gw_lb_pick(&P, &C, NULL, 0, -1, 1), 2);
    atomic_store(&M[0].healthy, false);
    atomic_store(&M[1].state, GW_ST_MAINT);
    cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 1), 2);
    atomic_store(&M[0].healthy, true);
    cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 1), 0);
}

Test(gw_lb, leastconn_weighted)
{
    uint32_t w[3] = { 1, 2, 1 };
    mkpool(GW_ALGO_LEASTCONN, 3, w);
    atomic_store(&M[0].inflight, 3);
    atomic_store(&M[1].inflight, 4);    /* 4/2 = 2 per weight: lightest */
    atomic_store(&M[2].inflight, 3);
    cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 1), 1);
    atomic_store(&M[1].inflight, 8);
    atomic_store(&M[2].inflight, 1);
    cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 1), 2);
    /* ties rotate rather than always hitting the first */
    for (int i = 0; i < 3; i++)
        atomic_store(&M[i].inflight, 0);
    M[1].weight = 1;
    int seen[3] = { 0 };
    for (int i = 0; i < 30; i++)
        seen[gw_lb_pick(&P, &C, NULL, 0, -1, 1)]++;
    cr_assert(seen[0] > 0 && seen[1] > 0 && seen[2] > 0);
}

Test(gw_lb, p2c_avoids_loaded)
{
    mkpool(GW_ALGO_P2C, 4, NULL);
    atomic_store(&M[3].inflight, 100);
    int cnt[4] = { 0 };
    for (int i = 0; i < 4000; i++)
        cnt[gw_lb_pick(&P, &C, NULL, 0, -1, 1)]++;
    /* the loaded member only wins when it is not drawn at all: never */
    cr_assert_eq(cnt[3], 0);
    for (int i = 0; i < 3; i++)
        cr_assert(cnt[i] > 1000 && cnt[i] < 1700, "member %d got %d", i, cnt[i]);
}

Test(gw_lb, hash_stable_and_bounded)
{
    mkpool(GW_ALGO_HASH, 5, NULL);
    cr_assert_eq(gw_pool_build_ring(&P), 0);
    int home[100];
    for (int k = 0; k < 100; k++) {
        char key[32];
        int n = snprintf(key, sizeof key, "user_id=%d", k);
        home[k] = gw_lb_pick(&P, &C, key, (size_t)n, -1, 1);
        cr_assert_eq(gw_lb_pick(&P, &C, key, (size_t)n, -1, 1), home[k]);
    }
    /* removing one member moves only its keys */
    atomic_store(&M[0].healthy, false);
    for (int k = 0; k < 100; k++) {
        char key[32];
        int n = snprintf(key, sizeof key, "user_id=%d", k);
        int now = gw_lb_pick(&P, &C, key, (size_t)n, -1, 1);
        if (home[k] != 0)
            cr_assert_eq(now, home[k], "key %d moved", k);
        else
            cr_assert_neq(now, 0);
    }
    atomic_store(&M[0].healthy, true);
    /* one hot key with requests held in flight: no member above (1+eps)x share */
    for (int i = 0; i < 200; i++) {
        int m = gw_lb_pick(&P, &C, "hot", 3, -1, 1);
        atomic_fetch_add(&M[m].inflight, 1);
    }
    for (int i = 0; i < 5; i++) {
        uint32_t in = atomic_load(&M[i].inflight);
        cr_assert(in <= 50 + 1, "member %d holds %u of 200", i, in);  /* 1.25 * 40 */
    }
    gw_pool_free_ring(&P);
}

Test(gw_lb, slow_start_ramps)
{
    uint32_t w[2] = { 10, 10 };
    mkpool(GW_ALGO_SWRR, 2, w);
    P.slow_start_us = 1000;
    atomic_store(&M[1].up_since_us, 1000);
    cr_assert_eq(gw_member_eff_weight(&P, &M[1], 1000), 1);
    cr_assert_eq(gw_member_eff_weight(&P, &M[1], 1500), 5);
    cr_assert_eq(gw_member_eff_weight(&P, &M[1], 2000), 10);
    cr_assert_eq(gw_member_eff_weight(&P, &M[0], 1000), 10);
    int c1 = 0;
    for (int i = 0; i < 110; i++)
        c1 += gw_lb_pick(&P, &C, NULL, 0, -1, 1000) == 1;
    cr_assert_eq(c1, 10);   /* 1 : 10 at the start of the ramp */
}

Test(gw_lb, sticky_cookie_roundtrip)
{
    mkpool(GW_ALGO_SWRR, 3, NULL);
    char v[17];
    gw_sticky_value(&M[1], v);
    cr_assert_eq(strlen(v), 16);
    cr_assert_eq(gw_sticky_find(&P, v, 16, 1), 1);
    cr_assert_eq(gw_sticky_find(&P, v, 15, 1), -1);
    cr_assert_eq(gw_sticky_find(&P, "zzzzzzzzzzzzzzzz", 16, 1), -1);
    atomic_store(&M[1].state, GW_ST_DOWN);
    cr_assert_eq(gw_sticky_find(&P, v, 16, 1), -1);   /* re-pick when down */
}

Test(gw_health, rise_fall)
{
    gw_health_sm h;
    gw_health_init(&h, 2, 3, true);
    cr_assert_eq(gw_health_observe(&h, false), 0);
    cr_assert_eq(gw_health_observe(&h, false), 0);
    cr_assert_eq(gw_health_observe(&h, true), 0);     /* resets the streak */
    cr_assert_eq(gw_health_observe(&h, false), 0);
    cr_assert_eq(gw_health_observe(&h, false), 0);
    cr_assert_eq(gw_health_observe(&h, false), -1);
    cr_assert_not(h.up);
    cr_assert_eq(gw_health_observe(&h, false), 0);
    cr_assert_eq(gw_health_observe(&h, true), 0);
    cr_assert_eq(gw_health_observe(&h, true), 1);
    cr_assert(h.up);
}

Test(gw_health, outlier_eject_backoff_and_cap)
{
    mkpool(GW_ALGO_SWRR, 4, NULL);
    P.outlier_consec = 3;
    P.outlier_base_us = 100;
    P.outlier_max_us = 350;
    P.outlier_max_pct = 50;
    cr_assert_not(gw_outlier_report(&P, &M[0], false, 10));
    cr_assert_not(gw_outlier_report(&P, &M[0], true, 10));   /* success resets */
    cr_assert_not(gw_outlier_report(&P, &M[0], false, 10));
    cr_assert_not(gw_outlier_report(&P, &M[0], false, 10));
    cr_assert(gw_outlier_report(&P, &M[0], false, 10));
    cr_assert_eq(atomic_load(&M[0].ejected_until_us), 110);
    cr_assert_not(gw_member_eligible(&M[0], 50));
    /* second member may go (2 of 4 = 50%), a third may not */
    for (int i = 0; i < 2; i++)
        gw_outlier_report(&P, &M[1], false, 10);
    cr_assert(gw_outlier_report(&P, &M[1], false, 10));
    for (int i = 0; i < 2; i++)
        gw_outlier_report(&P, &M[2], false, 10);
    cr_assert_not(gw_outlier_report(&P, &M[2], false, 10));
    /* repeat ejection doubles, capped */
    for (int i = 0; i < 2; i++)
        gw_outlier_report(&P, &M[0], false, 200);
    cr_assert(gw_outlier_report(&P, &M[0], false, 200));
    cr_assert_eq(atomic_load(&M[0].ejected_until_us), 400);
    for (int i = 0; i < 2; i++)
        gw_outlier_report(&P, &M[0], false, 1000);
    cr_assert(gw_outlier_report(&P, &M[0], false, 1000));
    cr_assert_eq(atomic_load(&M[0].ejected_until_us), 1350);   /* 400 capped to 350 */
}

Test(gw_retry, budget)
{
    gw_retry_budget b;
    gw_retry_budget_init(&b, 0.2, 1);
    cr_assert(gw_retry_try_begin(&b));          /* floor of one */
    cr_assert_not(gw_retry_try_begin(&b));
    gw_retry_end(&b);
    for (int i = 0; i < 20; i++)
        gw_retry_request_begin(&b);
    int ok = 0;
    for (int i = 0; i < 10; i++)
        ok += gw_retry_try_begin(&b);
    /* 20% of 20 in flight, plus the 4 retries 20 requests paid into the bank */
    cr_assert_eq(ok, 8);
    cr_assert_eq(atomic_load(&b.bank), 0);
    for (int i = 0; i < 8; i++)
        gw_retry_end(&b);
    for (int i = 0; i < 20; i++)
        gw_retry_request_end(&b);
    cr_assert_eq(atomic_load(&b.retries), 0);
    cr_assert_eq(atomic_load(&b.active), 0);
    /* The bank is capped: a long quiet success run does not buy a storm. */
    for (int i = 0; i < 100000; i++) {
        gw_retry_request_begin(&b);
        gw_retry_request_end(&b);
    }
    cr_assert_leq(atomic_load(&b.bank), (GW_RETRY_BANK + 1) * 1000);
    ok = 0;
    for (int i = 0; i < 1000; i++)
        ok += gw_retry_try_begin(&b);
    cr_assert_leq(ok, GW_RETRY_BANK + 2, "got %d retries", ok);
}

Test(gw_rl, bucket_refill_and_headers)
{
    gw_rl *rl = gw_rl_new(1024);
    cr_assert_not_null(rl);
    gw_rl_class per_min = { 100, 60ULL * 1000000 };   /* TutorMax: 100/min/IP */
    gw_rl_result r;
    for (int i = 0; i < 100; i++) {
        gw_rl_take(rl, 0, &per_min, "10.0.0.1", 8, 1000, &r);
        cr_assert(r.allowed, "request %d", i);
        cr_assert_eq(r.remaining, (uint32_t)(99 - i));
        cr_assert_eq(r.limit, 100);
    }
    gw_rl_take(rl, 0, &per_min, "10.0.0.1", 8, 1000, &r);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.retry_after_s, 1);                  /* 0.6 s to a token */
    /* another IP and another class are independent */
    gw_rl_take(rl, 0, &per_min, "10.0.0.2", 8, 1000, &r);
    cr_assert(r.allowed);
    gw_rl_take(rl, 1, &per_min, "10.0.0.1", 8, 1000, &r);
    cr_assert(r.allowed);
    /* 0.6 s later one token is back, not two */
    gw_rl_take(rl, 0, &per_min, "10.0.0.1", 8, 1000 + 600000, &r);
    cr_assert(r.allowed);
    gw_rl_take(rl, 0, &per_min, "10.0.0.1", 8, 1000 + 600000, &r);
    cr_assert_not(r.allowed);
    gw_rl_free(rl);
}

Test(gw_rl, bounded_memory_evicts_idle)
{
    gw_rl *rl = gw_rl_new(16);          /* tiny: 16 slots per shard */
    gw_rl_class c = { 1, 1000000 };
    gw_rl_result r;
    gw_rl_take(rl, 0, &c, "victim", 6, 1, &r);
    cr_assert(r.allowed);
    gw_rl_take(rl, 0, &c, "victim", 6, 2, &r);
    cr_assert_not(r.allowed);
    /* a flood of new keys completes without growth or failure */
    char k[32];
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(k, sizeof k, "ip%d", i);
        gw_rl_take(rl, 0, &c, k, (size_t)n, 10 + (uint64_t)i, &r);
        cr_assert(r.allowed);
    }
    gw_rl_free(rl);
}

#include <pthread.h>
static gw_rl *shared_rl;
static void *rl_thread(void *arg)
{
    gw_rl_class c = { 1000, 3600ULL * 1000000 };
    gw_rl_result r;
    long ok = 0;
    for (int i = 0; i < 1000; i++) {
        gw_rl_take(shared_rl, 0, &c, "same", 4, 5, &r);
        ok += r.allowed;
    }
    return (void *)ok;
}

Test(gw_rl, shared_across_threads)
{
    shared_rl = gw_rl_new(1024);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, rl_thread, NULL);
    long total = 0;
    for (int i = 0; i < 4; i++) {
        void *v;
        pthread_join(t[i], &v);
        total += (long)v;
    }
    cr_assert_eq(total, 1000);           /* exactly the bucket, no more */
    gw_rl_free(shared_rl);
}

/* --- least request, observed latency, slow members ---------------------- */

Test(gw_lb, least_request_prefers_the_faster_member_until_it_is_busier)
{
    mkpool(GW_ALGO_LEASTREQ, 2, NULL);
    gw_member_observe(&M[0], 1000, 1);      /* 1 ms */
    gw_member_observe(&M[1], 10000, 1);     /* 10 ms */
    for (int i = 0; i < 50; i++)
        cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 1), 0, "pick %d", i);
    /* 1 ms x 21 in flight costs more than 10 ms x 1 */
    atomic_store(&M[0].inflight, 20);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 1), 1);
    /* p2c by name still looks at in-flight alone */
    P.algo = GW_ALGO_P2C;
    atomic_store(&M[0].inflight, 0);
    atomic_store(&M[1].inflight, 1);
    cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 1), 0);
}

Test(gw_lb, least_request_respects_weights_and_probes_new_members)
{
    uint32_t w[2] = { 3, 1 };
    mkpool(GW_ALGO_LEASTREQ, 2, w);
    gw_member_observe(&M[0], 1000, 1);
    gw_member_observe(&M[1], 1000, 1);
    int cnt[2] = { 0 };
    for (int round = 0; round < 1000; round++) {
        for (int k = 0; k < 4; k++) {
            int i = gw_lb_pick(&P, &C, NULL, 0, -1, 1);
            cnt[i]++;
            atomic_fetch_add(&M[i].inflight, 1);
        }
        atomic_store(&M[0].inflight, 0);
        atomic_store(&M[1].inflight, 0);
    }
    cr_assert(cnt[0] > 2600 && cnt[0] < 3400, "3:1 weights gave %d:%d", cnt[0], cnt[1]);
    /* A member with no sample yet: free while idle, a penalty once busy. */
    mkpool(GW_ALGO_LEASTREQ, 2, NULL);
    gw_member_observe(&M[0], 50000, 1);
    cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 1), 1);
    atomic_store(&M[1].inflight, 1);
    cr_assert_eq(gw_lb_pick(&P, &C, NULL, 0, -1, 1), 0);
}

Test(gw_lb, peak_ewma_jumps_up_and_decays_with_time)
{
    mkpool(GW_ALGO_LEASTREQ, 1, NULL);
    gw_member_observe(&M[0], 100, 1000);
    gw_member_observe(&M[0], 1000, 1000);                /* a peak replaces it */
    cr_assert_eq(atomic_load(&M[0].ewma_ns) / 1000, 1000);
    gw_member_observe(&M[0], 100, 1000);                 /* no time passed: stays */
    cr_assert_eq(atomic_load(&M[0].ewma_ns) / 1000, 1000);
    gw_member_observe(&M[0], 100, 1000 + GW_EWMA_DECAY_US);   /* one decay time */
    uint64_t us = atomic_load(&M[0].ewma_ns) / 1000;    /* 1000/e + 100(1-1/e) = 431 */
    cr_assert(us >= 425 && us <= 437, "%llu", (unsigned long long)us);
}

Test(gw_lb, latency_window_p99_and_thresholds)
{
    static gw_lat_win w;
    memset(&w, 0, sizeof w);
    uint64_t t = 1;
    for (int i = 0; i < 20; i++)
        gw_lat_record(&w, 1000, t);
    gw_lat_record(&w, 1000, t + GW_LAT_PERIOD_US);
    cr_assert_eq(gw_lat_p99(&w), 0, "too few samples: unknown");
    for (int i = 0; i < 990; i++)
        gw_lat_record(&w, 1000, t + GW_LAT_PERIOD_US);
    for (int i = 0; i < 5; i++)
        gw_lat_record(&w, 50000, t + GW_LAT_PERIOD_US);
    gw_lat_record(&w, 1000, t + 2 * GW_LAT_PERIOD_US);
    /* 1000 us falls in [896, 1023]: reported high */
    cr_assert_eq(gw_lat_p99(&w), 1023);
    for (int i = 0; i < 100; i++)
        gw_lat_record(&w, 50000, t + 2 * GW_LAT_PERIOD_US);
    gw_lat_record(&w, 1000, t + 3 * GW_LAT_PERIOD_US);
    cr_assert_geq(gw_lat_p99(&w), 50000, "a slow tenth moves the p99");
    /* a long quiet spell empties the window: unknown again */
    gw_lat_record(&w, 1000, t + 200 * GW_LAT_PERIOD_US);
    gw_lat_record(&w, 1000, t + 201 * GW_LAT_PERIOD_US);
    cr_assert_eq(gw_lat_p99(&w), 0);

    mkpool(GW_ALGO_LEASTREQ, 1, NULL);
    P.try_min_us = 250000;
    P.try_max_us = 2000000;
    w.p99_us = 1000;
    cr_assert_eq(gw_lat_threshold(&P, &w, 4), 250000, "floor");
    w.p99_us = 100000;
    cr_assert_eq(gw_lat_threshold(&P, &w, 4), 400000);
    cr_assert_eq(gw_lat_threshold(&P, &w, 40), 2000000, "cap");
    cr_assert_eq(gw_lat_threshold(&P, &w, 0), 0, "factor 0: off");
    w.p99_us = 0;
    cr_assert_eq(gw_lat_threshold(&P, &w, 4), 0, "unknown p99: off");
}

Test(gw_lb, slow_member_is_ejected_probed_and_readmitted)
{
    mkpool(GW_ALGO_LEASTREQ, 3, NULL);
    uint64_t now = 10000000, thr = 250000;
    atomic_store(&M[1].inflight, 3);
    atomic_store(&M[1].progress_us, now - 100000);
    cr_assert_not(gw_slow_check(&P, &M[1], thr, now), "silent for less than the threshold");
    atomic_store(&M[1].progress_us, now - 300000);
    cr_assert_not(gw_slow_check(&P, &M[1], 0, now), "threshold unknown: off");
    cr_assert(gw_slow_check(&P, &M[1], thr, now));
    cr_assert_not(gw_slow_check(&P, &M[1], thr, now), "ejected once");
    cr_assert_eq(atomic_load(&M[1].slow_ejections), 1);
    cr_assert_not(gw_member_eligible(&M[1], now));
    for (int i = 0; i < 100; i++)
        cr_assert_neq(gw_lb_pick(&P, &C, NULL, 0, -1, now + 1000), 1);
    /* One probe a second: it is a candidate once, then waits again. */
    int probes = 0;
    for (int i = 0; i < 100; i++)
        probes += gw_lb_pick(&P, &C, NULL, 0, 0, now + GW_SLOW_PROBE_US) == 1;
    cr_assert_leq(probes, 1);
    cr_assert_not(gw_slow_probe(&M[1], now + GW_SLOW_PROBE_US + 10));
    cr_assert(gw_member_answered(&M[1], now + 2000000), "an answer readmits it");
    cr_assert_not(gw_member_answered(&M[1], now + 2000001));
    cr_assert(gw_member_eligible(&M[1], now + 2000001));
}

Test(gw_lb, no_slow_ejection_when_every_member_stalls)
{
    mkpool(GW_ALGO_LEASTREQ, 3, NULL);
    uint64_t now = 10000000;
    for (int i = 0; i < 3; i++) {
        atomic_store(&M[i].inflight, 2);
        atomic_store(&M[i].progress_us, now - 1000000);
    }
    cr_assert_not(gw_slow_check(&P, &M[0], 250000, now), "a shared stall is not one slow member");
    atomic_store(&M[2].progress_us, now - 1000);
    cr_assert(gw_slow_check(&P, &M[0], 250000, now), "one other answering is enough");
    atomic_store(&M[2].progress_us, now - 1000000);
    cr_assert_not(gw_slow_check(&P, &M[1], 250000, now), "the slow one does not count as answering");
}

Test(gw_lb, a_lone_slow_request_is_not_a_stuck_member)
{
    mkpool(GW_ALGO_LEASTREQ, 3, NULL);
    uint64_t now = 10000000, thr = 250000, since = now - 300000;
    /* one request in flight, silent for longer than the threshold: a report
     * or an export looks like this, so it is neither ejected nor cut */
    atomic_store(&M[0].inflight, 1);
    atomic_store(&M[0].progress_us, since);
    cr_assert_not(gw_slow_check(&P, &M[0], thr, now));
    cr_assert_not(gw_member_stuck(&M[0], since, thr, now));
    /* a second request waiting with it, and still no answer: stuck */
    atomic_store(&M[0].inflight, 2);
    cr_assert(gw_member_stuck(&M[0], since, thr, now));
    /* it answered another request during the last window: alive */
    atomic_store(&M[0].progress_us, now - 1000);
    cr_assert_not(gw_member_stuck(&M[0], since, thr, now));
    /* an answer long ago, before the window, is no proof of life */
    atomic_store(&M[0].progress_us, since + 1);
    cr_assert(gw_member_stuck(&M[0], since, thr, now));
    /* ejected as slow: every attempt on it is stuck, even a lone probe */
    atomic_store(&M[0].inflight, 1);
    atomic_store(&M[0].slow, true);
    cr_assert(gw_member_stuck(&M[0], since, thr, now));
}
