#!/usr/bin/env bash
# reshard_under_load.sh -- online resharding from 2 to 3 shards under steady
# load (issue 23): N cases seeded over two shards (SQLite files, then
# PostgreSQL databases of one cluster), INSTANCES app instances serving a
# 30 % write / 70 % read mix from THREADS client threads, then a third shard
# added online; about a third of the rows change owner.
#
#   bench/reshard_under_load.sh            N=1000000 INSTANCES=2 THREADS=4 BATCH=2000
#   BACKENDS="sqlite" N=200000 bench/reshard_under_load.sh
#
# Prints per backend: rows copied per second, the coordinator's write pause
# at cutover and the longest write a client saw while the move ran (target
# under 1 s, the bar Vitess and PgDog publish), writes lost or duplicated
# (target 0), failed requests, and p99 before, during and after the move,
# each against its target. Bounded: every phase has a timeout
# (TIMEOUT_SECONDS, default 600) and every process is stopped by PID.
# PostgreSQL needs root and PostgreSQL 15 (skipped otherwise). There is no
# peer in this run: Vitess and PgDog are not packaged here, so the figures
# are set against their published targets.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export HSCALE_BIN=${HSCALE_BIN:-$ROOT/build/hscale}
PY=${PYTHON:-/usr/bin/python3}
BACKENDS=${BACKENDS:-sqlite pg}
export N=${N:-1000000}

[ -x "$HSCALE_BIN" ] || { echo "reshard_under_load: $HSCALE_BIN not built (make, or set HSCALE_BIN)" >&2; exit 1; }

for b in $BACKENDS; do
  echo "== $b: $N cases, 2 -> 3 shards under load"
  line=$(timeout "${TIMEOUT_SECONDS:-600}" "$PY" "$ROOT/bench/reshard_under_load.py" "$b")
  "$PY" - "$line" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
if "skipped" in r:
    print(f"  skipped: {r['skipped']}")
    sys.exit(0)
ok = lambda c: "ok" if c else "MISSED"
print(f"  seeded {r['cases']} cases / {r['users']} users in {r['seed_seconds']} s; "
      f"{r['instances']} instances, {r['threads']} client threads, {r['requests']} requests")
print(f"  copy: {r['rows_copied']} rows in {r['copy_seconds']:.2f} s = "
      f"{r['copy_rows_per_second']:.0f} rows/s; whole move {r['reshard_seconds']} s; "
      f"{r['moved_share_of_cases']*100:.1f} % of cases moved")
across = (f"{r['longest_write_at_cutover_ms']:.1f} ms" if r['longest_write_at_cutover_ms'] > 0
          else "none (no client write overlapped it)")
print(f"  write pause at cutover: {r['pause_ms']:.1f} ms (coordinator: freeze to publication), "
      f"longest client write across it: {across}   target < 1000 ms: "
      f"{ok(max(r['pause_ms'], r['longest_write_at_cutover_ms']) < 1000)}")
print(f"  longest client write during the whole move (copy included): "
      f"{r['longest_write_during_move_ms']:.1f} ms")
print(f"  writes acknowledged {r['acked_writes']}, lost {r['lost']}, duplicated {r['duplicated']}, "
      f"placement {r['placement_ok']}, failed requests {r['failed_requests']}   target 0: "
      f"{ok(r['lost'] == 0 and r['duplicated'] == 0 and r['failed_requests'] == 0)}")
print(f"  p99 ms before / during / after: {r['p99_ms_before']} / {r['p99_ms_during']} / "
      f"{r['p99_ms_after']}  (during/before x{r['p99_ms_during']/max(r['p99_ms_before'],1e-9):.2f})")
PY
done
