/* gw_rl.c -- token buckets per (route class, client key), shared by all
 * workers, in memory fixed at creation.
 *
 * The table is open-addressed and split into 64 shards, each behind its own
 * mutex: a take holds one lock for a few dozen instructions, so workers
 * rarely meet. A key probes at most RL_PROBE slots; when it is absent and
 * none of them is free, the least recently touched slot in the window is
 * reused. That is how idle entries expire without a sweeper, and why a
 * flood of spoofed addresses costs nothing but the evicted clients' state
 * (an evicted client starts again with a full bucket: the limiter errs on
 * the side of admitting, never of refusing someone it forgot).
 *
 * Tokens are kept in millionths so refill is exact integer arithmetic:
 * a class of `limit` per `period_us` adds limit*1e6/period_us micro-tokens
 * per microsecond, done as (elapsed * limit * 1e6) / period_us. */
#include "gateway/gw_lb.h"

#include <stdlib.h>
#include <string.h>

#define RL_SHARDS 64
#define RL_PROBE  8
#define RL_UNIT   1000000ULL

typedef struct rl_slot {
    uint64_t key;          /* hash of (class, key); 0: free */
    uint64_t last_us;
    uint64_t tokens;       /* micro-tokens */
} rl_slot;

typedef struct rl_shard {
    pthread_mutex_t mu;
    uint32_t mask;
    rl_slot *slots;
    char pad[64 - sizeof(pthread_mutex_t) % 64];   /* keep shards' locks apart */
} rl_shard;

struct gw_rl {
    rl_shard shards[RL_SHARDS];
};

gw_rl *gw_rl_new(uint32_t capacity)
{
    gw_rl *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    uint32_t per = 16;
    while (per * RL_SHARDS < capacity && per < (1u << 24))
        per <<= 1;
    for (int i = 0; i < RL_SHARDS; i++) {
        rl->shards[i].slots = calloc(per, sizeof(rl_slot));
        if (!rl->shards[i].slots) {
            gw_rl_free(rl);
            return NULL;
        }
        rl->shards[i].mask = per - 1;
        pthread_mutex_init(&rl->shards[i].mu, NULL);
    }
    return rl;
}

void gw_rl_free(gw_rl *rl)
{
    if (!rl)
        return;
    for (int i = 0; i < RL_SHARDS; i++) {
        if (rl->shards[i].slots)
            pthread_mutex_destroy(&rl->shards[i].mu);
        free(rl->shards[i].slots);
    }
    free(rl);
}

void gw_rl_take(gw_rl *rl, uint32_t class_id, const gw_rl_class *cls,
                const void *key, size_t klen, uint64_t now_us, gw_rl_result *out)
{
    uint64_t h = gw_hash64(key, klen) ^ ((uint64_t)class_id * 0x9e3779b97f4a7c15ULL);
    if (h == 0)
        h = 1;
    uint64_t cap = (uint64_t)cls->limit * RL_UNIT;
    uint64_t period = cls->period_us ? cls->period_us : 1;
    out->limit = cls->limit;
    rl_shard *s = &rl->shards[h >> 58];   /* top 6 bits: shard */
    pthread_mutex_lock(&s->mu);
    rl_slot *hit = NULL, *victim = NULL;
    for (uint32_t k = 0; k < RL_PROBE; k++) {
        rl_slot *sl = &s->slots[(h + k) & s->mask];
        if (sl->key == h) {
            hit = sl;
            break;
        }
        if (sl->key == 0) {
            if (!victim || victim->key != 0)
                victim = sl;
        } else if (!victim || (victim->key != 0 && sl->last_us < victim->last_us)) {
            victim = sl;
        }
    }
    if (!hit) {
        hit = victim;
        hit->key = h;
        hit->tokens = cap;
        hit->last_us = now_us;
    } else if (now_us > hit->last_us) {
        uint64_t el = now_us - hit->last_us;
        /* el * limit * 1e6 can overflow for a long idle: it is full anyway */
        uint64_t add = el >= period ? cap
                     : (uint64_t)((unsigned __int128)el * cap / period);
        hit->tokens = hit->tokens + add > cap ? cap : hit->tokens + add;
        hit->last_us = now_us;
    }
    if (hit->tokens >= RL_UNIT) {
        hit->tokens -= RL_UNIT;
        out->allowed = true;
        out->retry_after_s = 0;
    } else {
        out->allowed = false;
        uint64_t need = RL_UNIT - hit->tokens;
        uint64_t wait_us = cls->limit
            ? (uint64_t)((unsigned __int128)need * period / cap) : period;
        out->retry_after_s = (uint32_t)((wait_us + 999999) / 1000000);
        if (out->retry_after_s == 0)
            out->retry_after_s = 1;
    }
    out->remaining = (uint32_t)(hit->tokens / RL_UNIT);
    pthread_mutex_unlock(&s->mu);
}
