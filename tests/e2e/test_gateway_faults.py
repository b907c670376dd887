"""Fault tests of `hscale gateway` under load (the project's own load
generator): backends killed, hung, drained; config reloaded; slow clients.
Each asserts what a user would page on: failed requests."""
import json
import os
import signal
import socket
import threading
import time

import pytest

from gw_util import http as requests  # noqa: E402 (default timeouts)

from conftest import read_log
from gw_util import Backend, Gateway, write_yaml
from up_util import start_up, wait_until


def pool_config(tmp_path, backends, extra_pool="", extra_top=""):
    members = ", ".join(f'{{address: "{b.addr}"}}' for b in backends)
    return write_yaml(tmp_path, f"""
gateway:
  try_timeout: 300ms
  retry_budget: 50
{extra_top}
  pools:
    - name: web
      backends: [{members}]
      health: {{interval: 200ms, timeout: 200ms, rise: 2, fall: 2}}
      outlier: {{consecutive_failures: 3, base_ejection: 10s}}
{extra_pool}
  routes: [{{prefix: /, pool: web}}]
""")


def start_load(procs, tmp_path, url, seconds, conns=16):
    out = tmp_path / f"load-{time.monotonic_ns()}.json"
    p = procs.hscale("bench", url, "-c", conns, "-t", 2, "-d", f"{seconds}s", "--timeout", "5s",
                     "--json", out, "-q", name="load")
    return p, out


def finish_load(p, out, timeout=60):
    p.wait(timeout)
    rep = json.loads(out.read_text())
    return rep["total"]


def assert_no_failures(total):
    assert total["count"] > 200, total
    assert total["failures"] == 0, total
    assert total["errors"] == {"connect": 0, "reset": 0, "timeout": 0, "protocol": 0,
                               "tls": 0, "http_4xx": 0, "http_5xx": 0}, total


def test_kill_9_of_one_backend_loses_no_request(procs, tmp_path):
    bs = [Backend(procs, n) for n in "abc"]
    gw = Gateway(procs, config=pool_config(tmp_path, bs))
    load, out = start_load(procs, tmp_path, gw.url("/"), 10)
    time.sleep(3)
    os.kill(bs[1].proc.pid, signal.SIGKILL)
    total = finish_load(load, out)
    assert_no_failures(total)
    m = requests.get(gw.admin_url("/metrics")).text
    assert 'hscale_gateway_backend_up{pool="web",backend="%s"} 0' % bs[1].addr in m


def test_sigstop_of_one_backend_fails_no_get_and_ejects_it(procs, tmp_path):
    bs = [Backend(procs, n) for n in "abc"]
    gw = Gateway(procs, config=pool_config(tmp_path, bs))
    load, out = start_load(procs, tmp_path, gw.url("/"), 8)
    time.sleep(2)
    os.kill(bs[2].proc.pid, signal.SIGSTOP)
    try:
        time.sleep(3)
        pool = requests.get(gw.admin_url("/api/v1/pools/web")).json()
        hung = [m for m in pool["members"] if m["address"] == bs[2].addr][0]
        assert hung["ejected"] or not hung["healthy"], hung
        total = finish_load(load, out)
    finally:
        os.kill(bs[2].proc.pid, signal.SIGCONT)
    assert_no_failures(total)
    # Bounded: a request that met the hung backend waited one try_timeout.
    assert total["latency_ms"]["max"] < 1500, total["latency_ms"]


def test_drain_during_load_loses_no_request(procs, tmp_path):
    bs = [Backend(procs, n) for n in "ab"]
    gw = Gateway(procs, config=pool_config(tmp_path, bs))
    load, out = start_load(procs, tmp_path, gw.url("/slow?ms=50"), 6)
    time.sleep(2)
    r = requests.delete(gw.admin_url(f"/api/v1/pools/web/backends/{bs[0].addr}?drain=10s"))
    assert r.status_code in (200, 202), r.text
    deadline = time.time() + 5
    while time.time() < deadline:
        members = requests.get(gw.admin_url("/api/v1/pools/web")).json()["members"]
        if [m["address"] for m in members] == [bs[1].addr]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"drained backend still listed: {members}")
    # Gone from the pool, so stopping it now cannot fail anything.
    procs.stop(bs[0].proc)
    total = finish_load(load, out)
    assert_no_failures(total)
    assert "drained" in read_log(gw.proc)


def test_sighup_reload_during_load_loses_no_request(procs, tmp_path):
    bs = [Backend(procs, n) for n in "abc"]
    cfg = pool_config(tmp_path, bs[:2])
    gw = Gateway(procs, config=cfg)
    load, out = start_load(procs, tmp_path, gw.url("/"), 6)
    time.sleep(1.5)
    # Grow the pool to three through the file, then shrink it back.
    pool_config(tmp_path, bs)
    gw.proc.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    members = requests.get(gw.admin_url("/api/v1/pools/web")).json()["members"]
    assert sorted(m["address"] for m in members) == sorted(b.addr for b in bs)
    assert all(m["total"] > 0 for m in members), members      # the new one takes traffic
    pool_config(tmp_path, bs[1:])
    gw.proc.send_signal(signal.SIGHUP)
    total = finish_load(load, out)
    assert_no_failures(total)
    log = read_log(gw.proc)
    assert log.count("configuration reloaded") == 2, log
    # A broken file is refused and the running config stays.
    with open(cfg, "a") as f:
        f.write("  bogus_key: 1\n")
    gw.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert "reload refused" in read_log(gw.proc)
    assert requests.get(gw.url("/")).status_code == 200


def test_slow_header_clients_do_not_slow_others(procs, tmp_path):
    b = Backend(procs, "a")
    gw = Gateway(procs, config=pool_config(tmp_path, [b], extra_top="  client_header_timeout: 3s"))
    socks = []
    for _ in range(1000):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(b"GET / HTTP/1.1\r\n")
        socks.append(s)
    stop = threading.Event()

    def dribble():
        while not stop.is_set():
            for s in socks:
                try:
                    s.send(b"X")
                except OSError:
                    pass
            time.sleep(1)
    t = threading.Thread(target=dribble)
    t.start()
    try:
        lat = []
        sess = requests.Session()
        t0 = time.time()
        while time.time() - t0 < 2:
            a = time.perf_counter()
            assert sess.get(gw.url("/")).status_code == 200
            lat.append(time.perf_counter() - a)
        lat.sort()
        assert lat[int(len(lat) * 0.99)] < 0.1, lat[-5:]
        # The slowloris clients are cut at the header deadline with 408.
        time.sleep(2.5)
        s = socks[0]
        s.settimeout(2)
        data = s.recv(4096)
        assert data.startswith(b"HTTP/1.1 408"), data[:60]
    finally:
        stop.set()
        t.join()
        for s in socks:
            s.close()


def served(gw):
    """Requests the gateway answered so far (any status), from /metrics."""
    total = 0
    for line in requests.get(gw.admin_url("/metrics")).text.splitlines():
        if line.startswith("hscale_gateway_requests_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def rate_over(gw, seconds):
    t0, n0 = time.monotonic(), served(gw)
    wait_until(lambda: time.monotonic() - t0 >= seconds, timeout=seconds + 5, step=0.05,
               what=f"{seconds}s of load")
    return (served(gw) - n0) / (time.monotonic() - t0)


def member(gw, addr, pool="default"):
    ms = requests.get(gw.admin_url(f"/api/v1/pools/{pool}")).json()["members"]
    return [m for m in ms if m["address"] == addr][0]


@pytest.mark.parametrize("algorithm", [None, "round_robin"], ids=["defaults", "round_robin"])
def test_hung_member_keeps_throughput_and_answers_in_flight(procs, tmp_path, algorithm):
    """Issue 20's acceptance: flags only (every default), three backends, 50
    connections; one backend SIGSTOPped. Throughput keeps >= 60 % of what it
    was (the healthy share is 67 %), the requests in flight on the hung one
    are answered within 2 s, nothing fails; it is ejected as slow, visible
    in the API and /metrics, and back in rotation once it answers. The
    machine is shared with other work, so the reference rate is the lower
    of the rates measured just before the hang and just after it.
    Slow-member ejection applies to every algorithm, so the same holds for
    `round_robin` (docs/gateway.md recommends it for thread-pool services)."""
    bs = [Backend(procs, n) for n in "abc"]
    if algorithm:
        members = ", ".join(f'{{address: "{b.addr}"}}' for b in bs)
        cfg = write_yaml(tmp_path, f"""
gateway:
  pools:
    - name: default
      algorithm: {algorithm}
      backends: [{members}]
  routes: [{{prefix: /, pool: default}}]
""")
        gw = Gateway(procs, config=cfg)
    else:
        gw = Gateway(procs, bs)
    pool = requests.get(gw.admin_url("/api/v1/pools/default")).json()
    assert pool["algorithm"] == (algorithm or "least_request"), pool
    hung = bs[1]
    load, out = start_load(procs, tmp_path, gw.url("/"), 14, conns=50)
    wait_until(lambda: served(gw) > 500, timeout=10, what="load under way")
    before = rate_over(gw, 2.5)
    os.kill(hung.proc.pid, signal.SIGSTOP)
    try:
        during = rate_over(gw, 4)
        m = member(gw, hung.addr)
        assert m["slow"] and m["slow_ejections"] >= 1 and m["in_flight"] <= 1, m
        metrics = requests.get(gw.admin_url("/metrics")).text
        assert ('hscale_gateway_backend_slow{pool="default",backend="%s"} 1' % hung.addr) in metrics
        assert ('hscale_gateway_backend_up{pool="default",backend="%s"} 0' % hung.addr) in metrics
    finally:
        os.kill(hung.proc.pid, signal.SIGCONT)
    # Its next probe is answered: back in rotation without a health check.
    wait_until(lambda: not member(gw, hung.addr)["slow"], timeout=5, what="slow flag cleared")
    after = rate_over(gw, 2)
    total = finish_load(load, out)
    print(f"hung member: {before:.0f} -> {during:.0f} -> {after:.0f} req/s, "
          f"max {total['latency_ms']['max']} ms")
    assert during >= 0.6 * min(before, after), (before, during, after)
    assert_no_failures(total)
    # Those in flight on it when it froze went elsewhere after one try timeout.
    assert total["latency_ms"]["max"] < 2000, total["latency_ms"]
    log = read_log(gw.proc)
    assert "answered none" in log and "answers again" in log, log


def gateway_pid(up_pid):
    """The `hscale gateway` child of an `hscale up` process, or None."""
    kids = []
    for t in os.listdir(f"/proc/{up_pid}/task"):
        try:
            with open(f"/proc/{up_pid}/task/{t}/children") as f:
                kids += f.read().split()
        except OSError:
            pass
    for k in kids:
        try:
            with open(f"/proc/{k}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1] == b"gateway":
            return int(k)
    return None


def test_kill_9_of_the_gateway_under_up_serves_again_at_once(procs, tmp_path):
    """Issue 20's acceptance: `kill -9` of the gateway under load through
    `hscale up`: only the requests in flight at the kill fail (the client
    sees a reset), full service within 1 s, no 503 for want of members:
    the new gateway starts with the pool its state file kept, and its
    listening socket (held by `up`) queued the connections that arrived
    while it was down. Then: a member the state file brings back that the
    control plane does not know is removed on its next sync."""
    s = start_up(procs, tmp_path, "--min", "2", "--max", "2")
    url = f"http://127.0.0.1:{s.gw}/health"
    load, out = start_load(procs, tmp_path, url, 8, conns=50)
    wait_until(lambda: requests.get(url).status_code == 200, what="load under way")
    t_load = time.monotonic()
    wait_until(lambda: time.monotonic() - t_load > 2, what="2 s of load", step=0.05)
    old = gateway_pid(s.proc.pid)
    assert old, "no gateway child of hscale up"
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()

    def serving():
        pid = gateway_pid(s.proc.pid)
        return pid and pid != old and requests.get(url, timeout=2).status_code == 200
    wait_until(serving, timeout=5, step=0.01, what="the restarted gateway serving")
    back = time.monotonic() - t0
    members = s.members()
    assert len(members) == 2, members
    total = finish_load(load, out)
    print(f"gateway kill -9: serving again after {back:.3f} s; errors {total['errors']}")
    assert back < 1.0, back
    errs = total["errors"]
    assert errs["http_5xx"] == 0 and errs["http_4xx"] == 0, total       # no 503: members known
    # The (at most 50) in flight at the kill fail with a reset; new
    # connections wait in the backlog of the socket `up` holds.
    assert errs["connect"] == 0, total
    assert errs["reset"] + errs["timeout"] + errs["protocol"] <= 50, total
    log = open(os.path.join(s.data, "gateway.log")).read()
    assert "2 members restored" in log, log

    # A member restored from the file that no instance of the control plane
    # has (one stopped while the gateway was down) goes on the next sync.
    os.kill(s.proc.pid, signal.SIGSTOP)        # hold `up`: no restart yet
    try:
        pid = gateway_pid(s.proc.pid)
        os.kill(pid, signal.SIGKILL)
        state = os.path.join(s.data, "gateway.state")
        wait_until(lambda: gateway_pid(s.proc.pid) is None or
                   not os.path.exists(f"/proc/{pid}/cmdline"), timeout=5, what="gateway gone")
        doc = json.loads(open(state).read())
        doc["pools"][0]["members"].append({"address": "127.0.0.1:1", "weight": 1,
                                           "backup": False, "state": "ready"})
        with open(state, "w") as f:
            json.dump(doc, f)
    finally:
        os.kill(s.proc.pid, signal.SIGCONT)
    wait_until(lambda: "127.0.0.1:1" in [m["address"] for m in s.members()], timeout=5,
               step=0.02, what="the stale member restored")
    wait_until(lambda: sorted(m["address"] for m in s.members())
               == sorted(i["address"] for i in s.ready()), timeout=5, what="the stale member removed")
    assert "is no instance of ours" in open(s.proc.log_path).read()


def test_state_file_brings_back_members_weights_states_and_split_weights(procs, tmp_path):
    """kill -9 of a plain `hscale gateway` with state_file: the next one
    starts with the member registered through the API (and its weight), the
    member put in maintenance still in maintenance, and the split weights
    set at run time; a file it cannot use is set aside, naming the field."""
    a, b, c = Backend(procs, "a"), Backend(procs, "b"), Backend(procs, "c")
    state = tmp_path / "gateway.state"
    cfg = write_yaml(tmp_path, f"""
gateway:
  state_file: {state}
  pools:
    - name: web
      backends: [{{address: "{a.addr}"}}]
    - name: canary
      backends: [{{address: "{c.addr}"}}]
  routes:
    - prefix: /
      split: [{{pool: web, weight: 90}}, {{pool: canary, weight: 10}}]
""")
    gw = Gateway(procs, config=cfg)
    api = gw.admin_url("/api/v1/pools/web")
    assert requests.post(api + "/backends", json={"address": b.addr, "weight": 3}).status_code == 201
    assert requests.patch(f"{api}/backends/{a.addr}", json={"state": "maint"}).status_code == 200
    routes = requests.get(gw.admin_url("/api/v1/routes")).json()["routes"]
    routes[0]["split"] = [{"pool": "web", "weight": 50}, {"pool": "canary", "weight": 50}]
    assert requests.put(gw.admin_url("/api/v1/routes"), json={"routes": routes}).status_code == 200
    saved = json.loads(state.read_text())
    web = [p for p in saved["pools"] if p["name"] == "web"][0]["members"]
    assert {(m["address"], m["weight"], m["state"]) for m in web} == {(a.addr, 1, "maint"),
                                                                      (b.addr, 3, "ready")}
    os.kill(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait(5)

    gw = Gateway(procs, config=cfg)
    members = {m["address"]: m for m in requests.get(gw.admin_url("/api/v1/pools/web")).json()["members"]}
    assert (members[a.addr]["state"], members[a.addr]["restored"]) == ("maint", False)
    assert (members[b.addr]["weight"], members[b.addr]["restored"]) == (3, True)
    split = requests.get(gw.admin_url("/api/v1/routes")).json()["routes"][0]["split"]
    assert [s["weight"] for s in split] == [50, 50], split
    seen = {requests.get(gw.url("/")).headers["X-Backend"] for _ in range(40)}
    assert seen == {"b", "c"}, seen          # a stays in maintenance
    assert "3 members restored (1 not in the configuration), 2 split weights" in read_log(gw.proc)
    os.kill(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait(5)

    state.write_text('{"version":1,"pools":[{"name":"web","members":[{"address":"%s","weight":0}]}]}'
                     % b.addr)
    gw = Gateway(procs, config=cfg)
    members = requests.get(gw.admin_url("/api/v1/pools/web")).json()["members"]
    assert [m["address"] for m in members] == [a.addr]      # the configuration alone
    log = read_log(gw.proc)
    assert "pools[0].members[0].weight: expected an integer 1..1000" in log, log
    assert (tmp_path / "gateway.state.bad").exists()
    assert json.loads(state.read_text())["version"] == 1     # a good file written again


def test_a_slow_request_on_a_healthy_member_is_not_cut_by_the_p99(procs, tmp_path):
    """The latency-derived try timeout (4 x p99, here its 250 ms floor)
    moves requests off a member that answers nothing; a 1.2 s request on a
    member that keeps answering the others is merely slow, and waits."""
    bs = [Backend(procs, n) for n in "abc"]
    gw = Gateway(procs, bs)
    load, out = start_load(procs, tmp_path, gw.url("/"), 6, conns=20)
    wait_until(lambda: served(gw) > 500, timeout=10, what="load under way")
    rate_over(gw, 1)            # a second of answers: the worker knows the pool's p99
    t0 = time.monotonic()
    r = requests.get(gw.url("/slow?ms=1200"))
    took = time.monotonic() - t0
    assert r.status_code == 200 and 1.2 <= took < 3, (r.status_code, took)
    total = finish_load(load, out)
    assert_no_failures(total)
    m = requests.get(gw.admin_url("/metrics")).text
    assert 'hscale_gateway_retries_total{pool="default"} 0' in m, \
        [line for line in m.splitlines() if "retries" in line]


def test_sighup_keeps_members_added_at_run_time(procs, tmp_path):
    """A reload re-reads the file, which does not list the members the
    control plane registered through the API: they stay (with their
    weight), while a member the new file drops goes."""
    a, b, c = Backend(procs, "a"), Backend(procs, "b"), Backend(procs, "c")
    cfg = pool_config(tmp_path, [a, c])
    gw = Gateway(procs, config=cfg)
    api = gw.admin_url("/api/v1/pools/web")
    assert requests.post(api + "/backends", json={"address": b.addr, "weight": 2}).status_code == 201
    pool_config(tmp_path, [a])                   # c leaves the file
    gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in read_log(gw.proc), timeout=5, what="reload")
    members = {m["address"]: m["weight"] for m in requests.get(api).json()["members"]}
    assert members == {a.addr: 1, b.addr: 2}, members
    assert "1 members added at run time kept" in read_log(gw.proc)
