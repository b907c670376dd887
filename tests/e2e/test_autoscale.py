"""The autoscaler end to end under `hscale up`: a load that quadruples for
60 s (the issue's step) adds instances, they are removed once it drops, not one request
fails over the whole run, and the history survives a restart."""
import json
import subprocess
import threading
import time

from conftest import hscale_path
from up_util import start_up, wait_until


def test_load_step_scales_out_then_in_without_a_failure(procs, tmp_path):
    s = start_up(procs, tmp_path, "--min", "2", "--max", "6")
    seen = []           # (t, desired, ready) every 250 ms
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                st = s.status()
                seen.append((time.time(), st["desired"], st["ready"]))
            except OSError:
                pass
            time.sleep(0.25)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    report = tmp_path / "bench.json"
    # 40 req/s (2 instances at 20 against a target of 30), x4 for 60 s, back
    bench = subprocess.run(
        [hscale_path(), "bench", f"http://127.0.0.1:{s.gw}/casefilter?user_id=7&status=10",
         "--open", "--stages", "3s:40,0.5s:160,60s:160,0.5s:40,12s:40", "-c", "50",
         "--json", str(report), "-q"], capture_output=True, text=True, timeout=150)
    try:
        wait_until(lambda: s.status()["desired"] == 2 and len(s.ready()) == 2, timeout=15,
                   what="back to 2 instances")
    finally:
        stop.set()
        t.join(5)
    tot = json.loads(report.read_text())["total"]
    assert tot["count"] > 2500 and tot["failures"] == 0, (tot, bench.stdout, bench.stderr)
    assert set(tot["status"]) == {"200"}
    peak = max(d for _, d, _ in seen)
    assert peak >= 4, seen
    # No flapping: through the last 40 s of the steady high load the count
    # does not go down.
    t0 = seen[0][0]
    hold = [d for t, d, _ in seen if t0 + 24 <= t <= t0 + 62]
    assert hold and all(b >= a for a, b in zip(hold, hold[1:])), hold
    assert max(r for _, _, r in seen) >= 4, "the added instances became ready"

    events = s.api("GET", "/api/v1/scaling/history")[1]["events"]
    kinds = [e["kind"] for e in events]
    assert "scale_out" in kinds and "scale_in" in kinds, kinds
    outs = [e for e in events if e["kind"] == "scale_out"]      # newest first
    assert outs[-1]["old"] == 2 and max(e["new"] for e in outs) >= 4
    out = outs[-1]
    assert out["new"] > 2 and out["policy"] == "target:rps"
    assert out["metrics"]["rps"] > 30 and out["reason"]

    # history is in the state dir: a restart of the stack keeps it
    assert procs.stop(s.proc, timeout=30) == 0
    s2 = start_up(procs, tmp_path, "--min", "2", "--max", "6", data=s.data)
    again = s2.api("GET", "/api/v1/scaling/history?limit=1000")[1]["events"]
    assert [e for e in again if e["kind"] in ("scale_out", "scale_in")][:len(kinds)] \
        == [e for e in events if e["kind"] in ("scale_out", "scale_in")]
    assert procs.stop(s2.proc, timeout=30) == 0
