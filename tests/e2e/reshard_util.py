"""Helpers for the resharding tests and bench/reshard_under_load.sh: app
instances over one shard set, a steady mix of reads and writes through
them that records every acknowledged write and every failure, and the
checks that each acknowledged write is on its owner exactly once."""
import json
import random
import threading
import time
import urllib.error
import urllib.request

from conftest import wait_until


def call(port, path, method="GET", body=None, token=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def quantile(xs, q):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class Load:
    """Threads sending POST /cases, GET /cases/{id} and GET /casefilter to
    the given ports in turn. acked: case_id -> user_id of every 201.
    Latencies are kept with their start time so a window can be cut."""

    def __init__(self, ports, users, threads=4, write_share=0.3, seed=1):
        self.ports, self.users, self.nthreads = ports, users, threads
        self.write_share = write_share
        self.rng = random.Random(seed)
        self.acked = {}
        self.acked_port = {}     # case_id -> the instance that wrote it (reads go back there)
        self.failures = []       # (time, method, path, status, body)
        self.samples = []        # (start, seconds, is_write)
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = []

    def _one(self, rng, i):
        port = self.ports[i % len(self.ports)]
        uid = rng.randint(1, self.users)
        t0 = time.time()
        if rng.random() < self.write_share or not self.acked:
            st, body = call(port, "/cases", "POST", {
                "user_id": uid, "patient_first": "P", "patient_last": f"L{i}",
                "case_date": "2026-12-07"})
            ok = st == 201
            if ok:
                case = json.loads(body)
                with self.lock:
                    self.acked[case["case_id"]] = case["user_id"]
                    self.acked_port[case["case_id"]] = port
            method, path = "POST", "/cases"
        else:
            with self.lock:
                cid, uid = self.rng.choice(list(self.acked.items())[-500:])
                port = self.acked_port[cid]     # read-your-writes holds per instance
            if rng.random() < 0.5:
                path = f"/cases/{cid}?user_id={uid}"
            else:
                path = f"/casefilter?user_id={uid}&limit=5"
            st, body = call(port, path)
            ok = st == 200
            method = "GET"
        dt = time.time() - t0
        with self.lock:
            self.samples.append((t0, dt, method == "POST"))
            if not ok:
                self.failures.append((t0, method, path, st, body[:200]))

    def _run(self, k):
        rng = random.Random(k * 7919 + 1)
        i = k
        while not self.stop_ev.is_set():
            self._one(rng, i)
            i += self.nthreads

    def start(self):
        for k in range(self.nthreads):
            t = threading.Thread(target=self._run, args=(k,), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30)

    def p99(self, t_from, t_to, writes=None):
        xs = [d for (t, d, w) in self.samples if t_from <= t < t_to and (writes is None or w == writes)]
        return quantile(xs, 0.99), len(xs)

    def longest_write(self, t_from, t_to):
        xs = [d for (t, d, w) in self.samples if t_from <= t < t_to and w]
        return max(xs) if xs else 0.0


def wait_reshard(port, states=("done",), timeout=120, token=None):
    """Polls the app's /admin/reshard (the suite's wait_until) until the
    resharding is in one of `states`; an end it was not waiting for fails
    at once."""
    seen = {}

    def reached():
        st, body = call(port, "/admin/reshard", token=token)
        if st != 200:
            return None
        last = seen["last"] = json.loads(body)
        if last["state"] in states:
            return last
        if last["state"] in ("failed", "rolled_back", "done"):
            raise AssertionError(f"resharding ended {last['state']}: {last}")
        return None

    try:
        return wait_until(reached, timeout, what=f"resharding in {states}", step=0.05)
    except AssertionError as e:
        if "timed out" not in str(e):
            raise                   # an end it was not waiting for
        raise AssertionError(f"resharding did not reach {states}: {seen.get('last')}") from None


def placement(rows_by_shard):
    """rows_by_shard: shard -> {table: [(pk, user_id)]}. Returns
    (owner of each user, {(table, pk): [shards]})."""
    owner, where = {}, {}
    for shard, tables in rows_by_shard.items():
        for table, rows in tables.items():
            for pk, uid in rows:
                where.setdefault((table, pk), []).append(shard)
                if table == "users":
                    assert uid not in owner, f"user {uid} on {owner[uid]} and {shard}"
                    owner[uid] = shard
    return owner, where


def check_placement(rows_by_shard, acked):
    owner, where = placement(rows_by_shard)
    dup = {k: v for k, v in where.items() if len(v) > 1}
    assert not dup, f"rows on several shards: {list(dup.items())[:5]}"
    for shard, tables in rows_by_shard.items():
        for table, rows in tables.items():
            for pk, uid in rows:
                assert owner.get(uid) == shard, f"{table} {pk} of user {uid} on {shard}, owner {owner.get(uid)}"
    missing = [cid for cid in acked if ("cases", cid) not in where]
    assert not missing, f"{len(missing)} acknowledged cases lost, e.g. {missing[:5]}"
    return owner
