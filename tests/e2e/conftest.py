"""Shared fixtures for the end-to-end suite.

Every test drives real processes over loopback: the hscale binary under test
(HSCALE_BIN, the ASan+UBSan build under `make test`) and real peers. Each
process a test starts is registered with `procs` and stopped by PID at
teardown (SIGTERM, then SIGKILL), so a failing test leaves nothing behind.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)


def hscale_path():
    return os.environ.get("HSCALE_BIN", os.path.join(ROOT, "build", "hscale"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, host="127.0.0.1", proc=None):
    """Waits until something accepts on host:port; fails fast if proc died."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class Procs:
    """Starts processes and guarantees they are stopped by PID."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.items = []

    def start(self, args, name=None, env=None, cwd=None, **kw):
        name = name or os.path.basename(str(args[0]))
        log = open(os.path.join(self.tmp, f"{name}-{len(self.items)}.log"), "wb")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        p = subprocess.Popen([str(a) for a in args], stdout=log, stderr=subprocess.STDOUT,
                             env=full_env, cwd=cwd, start_new_session=True, **kw)
        p.log_path = log.name
        log.close()
        self.items.append(p)
        return p

    def hscale(self, *args, **kw):
        return self.start([hscale_path(), *args], name=kw.pop("name", "hscale-" + str(args[0])), **kw)

    def stop(self, p, sig=signal.SIGTERM, timeout=10.0):
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        return p.returncode

    def stop_all(self):
        for p in reversed(self.items):
            try:
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.stop(p, timeout=5.0)


def wait_until(pred, timeout=30.0, what="condition", step=0.1):
    """The suite's one way to wait: polls pred until it returns something
    true (returned) or the deadline passes (AssertionError naming what and
    the last value). An exception a not-yet-ready peer raises (refused
    connection, half-written JSON, a missing key) counts as not yet."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (OSError, ValueError, KeyError, TypeError) as e:
            last = e
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def read_log(p):
    with open(p.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def run_hscale(*args, timeout=30, env=None, input=None):
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([hscale_path(), *[str(a) for a in args]], capture_output=True,
                          text=True, timeout=timeout, env=full_env, input=input)


@pytest.fixture
def procs(tmp_path):
    ps = Procs(tmp_path)
    yield ps
    ps.stop_all()


@pytest.fixture
def hscale():
    return hscale_path()
