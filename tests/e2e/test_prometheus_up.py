"""A real Prometheus, with the shipped config and rules (test timings),
discovering a running `hscale up` through the targets file its control plane
keeps: every instance is scraped with up == 1, a scale-out appears as a new
target without a restart, and a stopped instance fires InstanceDown."""
import os
import signal
import time

import pytest

from prometheus_util import PROMETHEUS, firing, start_prometheus, up_by_instance, wait_for
from up_util import start_up, wait_until

# Probes far apart and a high unhealthy count: the control plane must not
# replace the stopped instance before Prometheus has seen it down.
CONFIG = """\
control:
  check_interval: 500ms
  unhealthy_checks: 100
  drain_timeout: 2s
  stop_grace: 1s
autoscaling:
  enabled: false
"""


@pytest.mark.skipif(not PROMETHEUS, reason="prometheus is not installed")
def test_prometheus_discovers_up_and_fires_instance_down(procs, tmp_path):
    s = start_up(procs, tmp_path, config=CONFIG, instances=2)
    targets = s.data / "prometheus" / "targets.json"
    wait_until(targets.exists, what="the targets file")
    pport = start_prometheus(procs, tmp_path, targets)
    deadline = time.time() + 30

    def addrs():
        return {i["address"] for i in s.ready()}

    def all_up(want):
        up = up_by_instance(pport)
        return want <= set(up) and all(up[a] == "1" for a in want) and up

    # Prometheus spreads first scrapes over the interval: wait for the
    # gateway's target as for the instances'.
    gateway = f"127.0.0.1:{s.admin}"
    up = wait_for("every instance and the gateway scraped",
                  lambda: all_up(addrs() | {gateway}), deadline)
    assert up[gateway] == "1"

    # Scale out through the API: a new target, no Prometheus restart.
    st, _ = s.api("POST", "/api/v1/scaling/desired", {"count": 3})
    assert st == 200
    three = wait_until(lambda: len(addrs()) == 3 and addrs(), what="a third ready instance")
    wait_for("the new instance scraped", lambda: all_up(three), time.time() + 30)

    victim = s.ready()[0]
    os.kill(victim["pid"], signal.SIGSTOP)
    try:
        fired = wait_for("InstanceDown", lambda: firing(pport, "InstanceDown"), time.time() + 30)
        assert fired == {victim["address"]}, fired
    finally:
        os.kill(victim["pid"], signal.SIGCONT)
