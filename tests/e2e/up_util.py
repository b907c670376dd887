"""Helpers for the `hscale up` tests: start the stack on free ports with a
config file, and talk to its control API."""
import http.client
import json

from conftest import free_port, wait_port, wait_until  # noqa: F401 (wait_until: re-exported)

# Short intervals and cooldowns so a test sees a whole scaling cycle in
# seconds; rps is the target metric because it is what the load sets
# (CPU on two shared cores is noise).
FAST = """\
control:
  check_interval: 500ms
  drain_timeout: 5s
  stop_grace: 2s
autoscaling:
  check_interval: 500ms
  warmup: 1s
  scale_out_cooldown: 2s
  scale_in_cooldown: 3s
  scale_in_stabilization: 3s
  target:
    cpu: 0
    memory: 0
    rps: 30
"""


class Stack:
    def __init__(self, proc, gw, admin, control, data):
        self.proc, self.gw, self.admin, self.control, self.data = proc, gw, admin, control, data

    def api(self, method, path, body=None, port=None, timeout=5):
        conn = http.client.HTTPConnection("127.0.0.1", port or self.control, timeout=timeout)
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        conn.close()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw.decode("utf-8", "replace")

    def status(self):
        return self.api("GET", "/api/v1/scaling/status")[1]

    def ready(self):
        return [i for i in self.status()["instances"] if i["state"] == "ready"]

    def members(self):
        return self.api("GET", "/api/v1/pools/default", port=self.admin)[1]["members"]


def start_up(procs, tmp_path, *extra, config=FAST, data=None, ports=None, instances=2):
    gw, admin, control = ports or (free_port(), free_port(), free_port())
    cfg = tmp_path / "up.yaml"
    cfg.write_text(config)
    data = data or tmp_path / "data"
    p = procs.hscale("up", "--listen", f"127.0.0.1:{gw}", "--admin", f"127.0.0.1:{admin}",
                     "--control", f"127.0.0.1:{control}", "--data", data, "-c", cfg,
                     "--instances", instances, *extra, name="up")
    wait_port(control, timeout=60, proc=p)
    s = Stack(p, gw, admin, control, data)
    wait_until(lambda: len([i for i in s.ready() if i["registered"]]) == instances,
               what=f"{instances} registered instances")
    return s
