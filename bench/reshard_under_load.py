"""Driver of bench/reshard_under_load.sh: one backend (sqlite | pg), N
cases seeded over 2 shards, INSTANCES app instances under a steady mix of
reads and writes (tests/e2e/reshard_util.Load), then a third shard added
online. Prints one JSON line: rows moved per second in the copy, the
coordinator's write pause, the longest write any client saw while the
cutover ran, writes lost or duplicated, failed requests, and p99 before,
during and after. Every process it starts is stopped by PID."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from reshard_util import Load, call, check_placement  # noqa: E402

HSCALE = os.environ.get("HSCALE_BIN", os.path.join(ROOT, "build", "hscale"))
BACKEND = sys.argv[1]
N = int(os.environ.get("N", "1000000"))
USERS = int(os.environ.get("USERS", str(max(60, N // 200))))
INSTANCES = int(os.environ.get("INSTANCES", "2"))
THREADS = int(os.environ.get("THREADS", "4"))
BATCH = int(os.environ.get("BATCH", "2000"))
PHASE = float(os.environ.get("PHASE_SECONDS", "5"))
TIMEOUT = float(os.environ.get("TIMEOUT_SECONDS", "600"))


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(port, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        try:
            if call(port, "/health", timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"reshard_under_load: instance on {port} did not start")


def main():
    tmp = tempfile.mkdtemp(prefix="reshard_bench_")
    procs, cluster = [], None
    try:
        if BACKEND == "pg":
            from pg_fixture import PGBIN, PgCluster, have_pg
            if not have_pg():
                print(json.dumps({"backend": "pg", "skipped": "needs PostgreSQL 15 and root"}))
                return

            class QuietPg(PgCluster):
                """The test cluster without log_statement=all (a million
                logged inserts would measure the log)."""
                def start(self, node):
                    opts = (f"-p {self.port[node]} -k {self.dir} -c listen_addresses=127.0.0.1"
                            " -c fsync=off")
                    self._pg(f"{PGBIN}/pg_ctl", "-w", "-t", "30", "-D", f"{self.dir}/{node}",
                             "-l", self.log_path(node), "-o", opts, "start")
            cluster = QuietPg(apply_delay="0s")
            cluster.setup()
            for db in ("rs0", "rs1", "rs2"):
                cluster.psql(f"CREATE DATABASE {db}")
            urls = [cluster.url("p", f"rs{i}") for i in range(3)]
        else:
            urls = [f"sqlite:{tmp}/data/s{i}.db" for i in range(3)]
        ports = [free_port() for _ in range(INSTANCES)]
        cfgs = []
        for i, port in enumerate(ports):
            cfg = os.path.join(tmp, f"h{i}.yaml")
            with open(cfg, "w") as f:
                f.write(f"""app:
  listen: 127.0.0.1:{port}
  workers: 2
  store:
    data_dir: {tmp}/data
    replica_check: 200ms
    reshard_batch: {BATCH}
    reshard_cleanup_delay: 1s
    cache:
      kind: none
    shards:
      - name: s0
        primary: {urls[0]}
      - name: s1
        primary: {urls[1]}
""")
            cfgs.append(cfg)
        t0 = time.time()
        subprocess.run([HSCALE, "app", "seed", "-c", cfgs[0], "--users", str(USERS), "--cases",
                        str(N)], check=True, capture_output=True, timeout=TIMEOUT)
        seed_s = time.time() - t0
        for i, cfg in enumerate(cfgs):
            log = open(os.path.join(tmp, f"app{i}.log"), "wb")
            procs.append(subprocess.Popen([HSCALE, "app", "-c", cfg], stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        for p in ports:
            wait_http(p)
        load = Load(ports, users=USERS, threads=THREADS)
        load.start()
        try:
            time.sleep(PHASE)
            t_start = time.time()
            st, body = call(ports[0], "/admin/reshard", "POST",
                            {"op": "add_shard", "name": "s2", "primary": urls[2]})
            if st != 202:
                raise SystemExit(f"reshard_under_load: start refused: {st} {body[:300]}")
            status = None
            while time.time() - t_start < TIMEOUT:
                status = json.loads(call(ports[0], "/admin/reshard")[1])
                if status["state"] in ("done", "failed", "rolled_back"):
                    break
                time.sleep(0.1)
            t_end = time.time()
            cut = [e for e in status["events"] if e["phase"] == "cutover"]
            time.sleep(PHASE)
        finally:
            load.stop()
        t_after = time.time()
        if status["state"] != "done":
            raise SystemExit(f"reshard_under_load: ended {status['state']}: {status.get('error')}")
        # where every row is, to count lost and duplicated writes
        rows = {}
        for i, u in enumerate(urls):
            tables = {}
            for t, pk in (("users", "user_id"), ("facilities", "facility_id"),
                          ("surgeons", "surgeon_id"), ("cases", "case_id")):
                if BACKEND == "pg":
                    text = cluster.psql(f"SELECT {pk}, user_id FROM {t}", db=f"rs{i}")
                    tables[t] = [tuple(int(x) for x in ln.split("|")) for ln in text.splitlines() if ln]
                else:
                    db = sqlite3.connect(u[len("sqlite:"):])
                    tables[t] = db.execute(f"SELECT {pk}, user_id FROM {t}").fetchall()
                    db.close()
            rows[f"s{i}"] = tables
        where = {}
        for s, tables in rows.items():
            for pk, _ in tables["cases"]:
                where[pk] = where.get(pk, 0) + 1
        lost = sum(1 for cid in load.acked if where.get(cid, 0) == 0)
        dup = sum(1 for n in where.values() if n > 1)
        try:
            check_placement(rows, load.acked)
            placement_ok = True
        except AssertionError as e:
            placement_ok = str(e)[:200]
        moved_cases = len(rows["s2"]["cases"])
        total_cases = sum(len(t["cases"]) for t in rows.values())
        # the write pause clients saw: the longest write that overlapped the
        # cutover (freeze to publication), and the longest during the whole move
        c0, c1 = status["cutover_window"]
        longest = longest_cut = 0.0
        for (t, d, w) in load.samples:
            if w and t <= t_end and t + d >= t_start:
                longest = max(longest, d)
            if w and t <= c1 and t + d >= c0:
                longest_cut = max(longest_cut, d)
        out = {
            "backend": BACKEND, "cases": N, "users": USERS, "instances": INSTANCES,
            "threads": THREADS, "seed_seconds": round(seed_s, 1),
            "rows_copied": status["rows_copied"], "rows_moved": status["rows_moved"],
            "moved_share_of_cases": round(moved_cases / max(1, total_cases), 3),
            "copy_seconds": status["copy_seconds"],
            "copy_rows_per_second": status["copy_rows_per_second"],
            "reshard_seconds": round(status["elapsed_seconds"], 2),
            "pause_ms": status["pause_ms"],
            "longest_write_during_move_ms": round(longest * 1e3, 1),
            "longest_write_at_cutover_ms": round(longest_cut * 1e3, 1),
            "acked_writes": len(load.acked), "lost": lost, "duplicated": dup,
            "placement_ok": placement_ok, "failed_requests": len(load.failures),
            "p99_ms_before": round(load.p99(t_start - PHASE, t_start)[0] * 1e3, 2),
            "p99_ms_during": round(load.p99(t_start, t_end)[0] * 1e3, 2),
            "p99_ms_after": round(load.p99(t_end, t_after)[0] * 1e3, 2),
            "requests": len(load.samples), "cutover_events": [e["what"] for e in cut],
        }
        print(json.dumps(out))
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        if cluster:
            cluster.teardown()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
