"""End-to-end tests of `hscale control`: the process driver running real
`hscale app` children, the scaling API, crash replacement, a clean stop that
leaves no child behind, and, with a real `hscale gateway --admin`,
registration and scale-in under load with zero failed requests."""
import http.client
import json
import os
import signal
import threading
import time

import pytest

from conftest import free_port, read_log, run_hscale, wait_port, wait_until  # noqa: F401 (re-exported)


def api(port, method, path, body=None, token=None, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {}
    if body is not None or method != "GET":    # the API takes changes only as JSON
        headers["Content-Type"] = "application/json"
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    try:
        return r.status, json.loads(data) if data else None
    except ValueError:
        return r.status, data.decode()


def status(port, token=None):
    code, body = api(port, "GET", "/api/v1/scaling/status", token=token)
    assert code == 200, body
    return body


def ready_instances(port, token=None):
    return [i for i in status(port, token)["instances"] if i["state"] == "ready"]


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def start_control(procs, tmp_path, *extra, instances=2, env=None):
    port = free_port()
    p = procs.hscale("control", "--listen", f"127.0.0.1:{port}", "--instances", str(instances),
                     "--state-dir", str(tmp_path / "control"), "--drain-timeout", "3s", *extra,
                     cwd=str(tmp_path), env=env)
    wait_port(port, proc=p, timeout=20)
    return p, port


def test_help_and_usage_errors():
    r = run_hscale("control", "--help")
    assert r.returncode == 0 and "--gateway" in r.stdout and "/api/v1/scaling/desired" in r.stdout
    r = run_hscale("control", "--bogus")
    assert r.returncode == 2 and "unknown option '--bogus'" in r.stderr
    r = run_hscale("control", "--instances")
    assert r.returncode == 2 and "needs a value" in r.stderr
    r = run_hscale("control", "--instances", "many")
    assert r.returncode == 2 and "control.instances" in r.stderr
    r = run_hscale("control", "--driver", "exec")
    assert r.returncode == 2 and "exec.launch" in r.stderr


def test_check_prints_effective_config(tmp_path):
    cfg = tmp_path / "h.yaml"
    cfg.write_text("control:\n  pool: app\n  template:\n    version: v7\n")
    r = run_hscale("control", "-c", cfg, "--instances", "4", "--check",
                   env={"HSCALE_CONTROL_LISTEN": "127.0.0.1:9999"})
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["pool"] == "app" and c["instances"] == 4 and c["listen"] == "127.0.0.1:9999"
    assert c["template"]["version"] == "v7" and c["template"]["ready_path"] == "/health/ready"
    cfg.write_text("control:\n  template:\n    ready_path: nope\n")
    r = run_hscale("control", "-c", cfg, "--check")
    assert r.returncode == 2 and "control.template.ready_path" in r.stderr


def test_control_alone_scales_restarts_and_stops_clean(procs, tmp_path):
    p, port = start_control(procs, tmp_path, instances=2)
    wait_until(lambda: len(ready_instances(port)) == 2, what="2 ready")
    code, body = api(port, "GET", "/health")
    assert code == 200 and body["status"] == "ok"

    # Each instance is a real app answering on its own address.
    for inst in ready_instances(port):
        host, iport = inst["address"].split(":")
        c = http.client.HTTPConnection(host, int(iport), timeout=5)
        c.request("GET", "/health/ready")
        assert c.getresponse().status == 200
        c.close()
        assert inst["version"] == "v1" and inst["pid"] > 0 and inst["managed"]

    # Bad bodies are refused naming the field; nothing changes.
    code, body = api(port, "POST", "/api/v1/scaling/desired", {"count": "x"})
    assert code == 400 and body["field"] == "count"
    code, body = api(port, "POST", "/api/v1/scaling/desired", {"count": 101})
    assert code == 400 and body["field"] == "count"
    code, body = api(port, "POST", "/api/v1/scaling/desired", {"cnt": 1})
    assert code == 400 and body["field"] == "cnt"
    code, body = api(port, "POST", "/api/v1/scaling/desired", "{not json")
    assert code == 400 and body["field"] == "body"
    assert status(port)["desired"] == 2

    code, body = api(port, "POST", "/api/v1/scaling/desired", {"count": 3})
    assert code == 200 and body == {"desired": 3, "previous": 2}
    wait_until(lambda: len(ready_instances(port)) == 3, what="3 ready")

    # kill -9 of an instance: restarted under the same id.
    victim = ready_instances(port)[0]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_until(lambda: any(i["id"] == victim["id"] and i["restarts"] == 1 and i["state"] == "ready"
                           for i in status(port)["instances"]), what="restart")
    st = status(port)
    assert st["restarts"] == 1 and st["ready"] == 3

    code, _ = api(port, "POST", "/api/v1/scaling/desired", {"count": 1})
    assert code == 200
    wait_until(lambda: len(status(port)["instances"]) == 1, what="scale-in to 1")

    code, text = api(port, "GET", "/metrics")
    assert code == 200
    assert 'hscale_control_instances{service="default",state="ready"} 1' in text
    assert 'hscale_control_desired_instances{service="default"} 1' in text
    assert 'hscale_control_instance_restarts_total{service="default"} 1' in text

    pids = [i["pid"] for i in status(port)["instances"]]
    assert procs.stop(p) == 0
    for pid in pids:
        assert not alive(pid), f"instance {pid} left behind"
    assert "stopped" in read_log(p)


def test_token_protects_the_api(procs, tmp_path):
    p, port = start_control(procs, tmp_path, instances=0, env={"HSCALE_CONTROL_TOKEN": "t0k"})
    code, body = api(port, "GET", "/api/v1/instances")
    assert code == 401 and body["field"] == "Authorization"
    code, body = api(port, "POST", "/api/v1/scaling/desired", {"count": 1})
    assert code == 401
    code, body = api(port, "GET", "/api/v1/instances", token="t0k")
    assert code == 200 and body == {"instances": []}
    assert api(port, "GET", "/health")[0] == 200


def gateway_supports_admin():
    r = run_hscale("gateway", "--help")
    return r.returncode == 0 and "--admin" in r.stdout


class Load:
    """Keep-alive GETs through the gateway from a few threads; counts any
    answer that is not 2xx and any transport error as a failure."""

    def __init__(self, port, threads=4):
        self.port, self.stop, self.ok, self.fail = port, threading.Event(), 0, []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/health")
                r = conn.getresponse()
                r.read()
                with self.lock:
                    if 200 <= r.status < 300:
                        self.ok += 1
                    else:
                        self.fail.append(r.status)
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 -- every failure counts
                with self.lock:
                    self.fail.append(repr(e))
                conn = None
                time.sleep(0.01)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(15)


@pytest.mark.skipif(not gateway_supports_admin(), reason="hscale gateway --admin not built yet")
def test_with_gateway_scale_under_load_drops_nothing(procs, tmp_path):
    gport, aport = free_port(), free_port()
    (tmp_path / "gw.yaml").write_text(
        "gateway:\n"
        f"  listen: 127.0.0.1:{gport}\n"
        f"  admin: 127.0.0.1:{aport}\n"
        "  admin_token: gwtok\n"
        "  pools:\n"
        "    - name: app\n"
        "      health: {interval: 1s, timeout: 500ms}\n"
        "  routes:\n"
        "    - prefix: /\n"
        "      pool: app\n")
    gw = procs.hscale("gateway", "-c", tmp_path / "gw.yaml", name="gateway")
    wait_port(aport, proc=gw)
    wait_port(gport, proc=gw)
    p, port = start_control(procs, tmp_path, "--gateway", f"http://127.0.0.1:{aport}",
                            "--pool", "app", instances=2,
                            env={"HSCALE_CONTROL_GATEWAY_TOKEN": "gwtok"})

    def members():
        conn = http.client.HTTPConnection("127.0.0.1", aport, timeout=5)
        conn.request("GET", "/api/v1/pools/app", headers={"Authorization": "Bearer gwtok"})
        r = conn.getresponse()
        body = json.loads(r.read())
        conn.close()
        return sorted(m["address"] for m in body["members"])

    wait_until(lambda: len([i for i in ready_instances(port) if i["registered"]]) == 2,
               what="2 registered")
    assert members() == sorted(i["address"] for i in ready_instances(port))
    assert status(port)["gateway"] == f"http://127.0.0.1:{aport}"

    with Load(gport) as load:
        time.sleep(1.0)
        assert api(port, "POST", "/api/v1/scaling/desired", {"count": 4})[0] == 200
        wait_until(lambda: len(members()) == 4, what="4 members")
        time.sleep(1.0)
        assert api(port, "POST", "/api/v1/scaling/desired", {"count": 1})[0] == 200
        wait_until(lambda: len(status(port)["instances"]) == 1, what="scale-in to 1")
        time.sleep(1.0)
    assert load.ok > 100, f"load ran: {load.ok} requests"
    assert load.fail == [], f"{len(load.fail)} failed of {load.ok}: {load.fail[:5]}"
    assert members() == [i["address"] for i in status(port)["instances"]]

    # Prometheus discovery follows: the file (atomic rewrites) and HTTP SD.
    sd_path = tmp_path / "hscale-data" / "prometheus" / "targets.json"

    def sd_file():
        try:
            return json.loads(sd_path.read_text())
        except (OSError, ValueError):
            return None

    code, http_sd = api(port, "GET", "/api/v1/sd")
    assert code == 200
    wait_until(lambda: sd_file() == http_sd, timeout=5, what="targets file")
    roles = {g["labels"]["role"]: g for g in http_sd}
    assert roles["gateway"]["targets"] == [f"127.0.0.1:{aport}"]
    assert roles["control"]["targets"] == [f"127.0.0.1:{port}"]
    inst = status(port)["instances"][0]
    assert roles["app"] == {"targets": [inst["address"]],
                            "labels": {"role": "app", "service": "default", "instance_id": inst["id"],
                                       "version": "v1", "pool": "app"}}

    # A stop deregisters everything it started.
    assert procs.stop(p) == 0
    assert members() == []


EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "contrib", "exec-driver", "example.sh")


def kill_detached(tmp_path):
    """The example driver detaches its instances: stop any a failed test left."""
    d = tmp_path / "control" / "example-driver"
    for f in d.glob("*.instance") if d.exists() else []:
        try:
            os.kill(int(f.read_text().split()[2]), signal.SIGKILL)
        except (ProcessLookupError, ValueError, IndexError):
            pass


def test_exec_driver_example_launches_adopts_and_terminates(procs, tmp_path):
    try:
        exec_driver_scenario(procs, tmp_path)
    finally:
        procs.stop_all()
        kill_detached(tmp_path)


def exec_driver_scenario(procs, tmp_path):
    (tmp_path / "h.yaml").write_text(
        "control:\n"
        "  driver: exec\n"
        "  exec:\n"
        f"    launch: {EXAMPLE} launch\n"
        f"    terminate: {EXAMPLE} terminate\n"
        f"    list: {EXAMPLE} list\n"
        "    timeout: 20s\n")
    p, port = start_control(procs, tmp_path, "-c", tmp_path / "h.yaml", instances=2)
    wait_until(lambda: len(ready_instances(port)) == 2, what="2 ready via exec")
    first = sorted((i["id"], i["address"]) for i in ready_instances(port))
    assert all(i["pid"] == 0 for i in ready_instances(port))

    # Control dies hard: the scripts' instances live on and are adopted.
    procs.stop(p, sig=signal.SIGKILL)
    p2, port = start_control(procs, tmp_path, "-c", tmp_path / "h.yaml", instances=2)
    wait_until(lambda: len(ready_instances(port)) == 2, what="2 adopted")
    assert sorted((i["id"], i["address"]) for i in ready_instances(port)) == first
    assert "adopted 2 instance(s)" in read_log(p2)

    # Scale-in runs `terminate ID ADDR`; the instance really stops.
    assert api(port, "POST", "/api/v1/scaling/desired", {"count": 1})[0] == 200
    wait_until(lambda: len(status(port)["instances"]) == 1, what="terminated one")
    gone = [a for (_, a) in first if a not in [i["address"] for i in status(port)["instances"]]][0]
    host, gport = gone.split(":")
    with pytest.raises(OSError):
        http.client.HTTPConnection(host, int(gport), timeout=2).request("GET", "/health")

    # A failing launch is surfaced with the script's stderr.
    assert procs.stop(p2) == 0
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\necho 'no capacity in zone a' >&2\nexit 3\n")
    bad.chmod(0o755)
    (tmp_path / "bad.yaml").write_text(
        "control:\n  driver: exec\n  restart_backoff: 5s\n  exec:\n"
        f"    launch: {bad}\n    terminate: {bad}\n")
    p3, port = start_control(procs, tmp_path, "-c", tmp_path / "bad.yaml", instances=1)
    inst = wait_until(lambda: [i for i in status(port)["instances"] if i["state"] == "failed"],
                      what="failed launch")[0]
    assert "status 3" in inst["last_error"] and "no capacity in zone a" in inst["last_error"]


@pytest.mark.skipif(not gateway_supports_admin(), reason="hscale gateway --admin not built yet")
def test_restarted_gateway_gets_its_members_back(procs, tmp_path):
    gport, aport = free_port(), free_port()
    (tmp_path / "gw.yaml").write_text(
        "gateway:\n"
        f"  listen: 127.0.0.1:{gport}\n"
        f"  admin: 127.0.0.1:{aport}\n"
        "  pools:\n"
        "    - name: app\n"
        "  routes:\n"
        "    - prefix: /\n"
        "      pool: app\n")
    gw = procs.hscale("gateway", "-c", tmp_path / "gw.yaml", name="gateway")
    wait_port(aport, proc=gw)
    p, port = start_control(procs, tmp_path, "--gateway", f"http://127.0.0.1:{aport}",
                            "--pool", "app", instances=2)

    def members():
        code, body = api(aport, "GET", "/api/v1/pools/app")
        return sorted(m["address"] for m in body["members"])

    wait_until(lambda: len(members()) == 2, what="2 members")
    procs.stop(gw, sig=signal.SIGKILL)
    gw2 = procs.hscale("gateway", "-c", tmp_path / "gw.yaml", name="gateway")
    wait_port(aport, proc=gw2)
    assert members() == []
    wait_until(lambda: members() == sorted(i["address"] for i in ready_instances(port)),
               timeout=15, what="members registered again")


SLOW_PY = """
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(0.4)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.do_GET()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


@pytest.mark.skipif(not gateway_supports_admin(), reason="hscale gateway --admin not built yet")
def test_scale_in_waits_for_slow_requests(procs, tmp_path):
    """The instance is a python server that dies at once on SIGTERM and
    answers /slow after 0.4 s; the load POSTs, which the gateway does not
    retry: only the drain keeps requests from failing."""
    (tmp_path / "slow.py").write_text(SLOW_PY)
    gport, aport = free_port(), free_port()
    (tmp_path / "gw.yaml").write_text(
        "gateway:\n"
        f"  listen: 127.0.0.1:{gport}\n"
        f"  admin: 127.0.0.1:{aport}\n"
        "  pools:\n"
        "    - name: app\n"
        "  routes:\n"
        "    - prefix: /\n"
        "      pool: app\n")
    gw = procs.hscale("gateway", "-c", tmp_path / "gw.yaml", name="gateway")
    wait_port(aport, proc=gw)
    wait_port(gport, proc=gw)
    p, port = start_control(procs, tmp_path, "--gateway", f"http://127.0.0.1:{aport}",
                            "--pool", "app", "--command", f"python3 {tmp_path}/slow.py {{port}}",
                            instances=3)
    wait_until(lambda: len([i for i in ready_instances(port) if i["registered"]]) == 3,
               what="3 registered")

    class SlowLoad(Load):
        def run(self):
            while not self.stop.is_set():
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    conn.request("POST", "/slow", body=b"{}",
                                 headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    conn.close()
                    with self.lock:
                        if r.status == 200:
                            self.ok += 1
                        else:
                            self.fail.append(r.status)
                except Exception as e:  # noqa: BLE001
                    with self.lock:
                        self.fail.append(repr(e))

    with SlowLoad(gport, threads=6) as load:
        time.sleep(1.0)
        assert api(port, "POST", "/api/v1/scaling/desired", {"count": 1})[0] == 200
        wait_until(lambda: len(status(port)["instances"]) == 1, what="scale-in to 1")
        time.sleep(0.5)
    assert load.ok > 20, load.ok
    assert load.fail == [], f"{len(load.fail)} failed of {load.ok}: {load.fail[:5]}"
    log = read_log(p)
    assert log.count("draining") >= 2, log
