/* replicas_int.h -- nodes and replica sets that change at run time
 * (store_replicas.c), for the store's own files.
 *
 * A shard's replicas are node pointers under sh->rep_lk, a rwlock held
 * only to copy or swap pointers. Each replica node is reference-counted:
 * the shard's list holds one reference, and whoever uses a node outside
 * the lock (a query between pick and put, a probe, statistics) holds
 * another; the last put closes and frees it. */
#ifndef HSCALE_STORE_REPLICAS_INT_H
#define HSCALE_STORE_REPLICAS_INT_H

#include "store/store_priv.h"

/* Sets up a node (driver, pool; no connection yet) and closes one
 * (store_open.c, shared with the nodes made at open). */
int  st_node_init(st_node *n, const char *url, const st_pool_cfg *pc, bool replica, st_err *err);
void st_node_close(st_node *n);
/* One probe of one node (store_open.c): health, lag, dropping dead idle
 * connections. */
void st_probe_node(st_store *s, st_shard *sh, st_node *n);

/* A replica node with one reference (the list's). */
st_node *st_replica_new(const char *url, const st_pool_cfg *pc, st_err *err);
/* Drops a reference (NULL: nothing); the last one closes and frees. */
void     st_replica_put(st_shard *sh, st_node *n);
/* The shard's replicas, each with a reference taken (put them back). */
size_t   st_replicas_get(st_shard *sh, st_node **out);
/* A healthy replica within max_lag, least busy first (round-robin among
 * ties), with a reference taken; NULL when none. */
st_node *st_replica_pick(st_store *s, st_shard *sh);
/* A shard's replica lock and list, at open and close. */
void     st_replicas_init(st_shard *sh);
void     st_replicas_free(st_shard *sh);

#endif
