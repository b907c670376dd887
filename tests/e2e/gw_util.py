"""Helpers for the gateway's end-to-end tests: start real backends and a
real `hscale gateway`, talk raw HTTP, run `hscale bench` as load."""
import json
import os
import socket
import sys
import time

import requests

from conftest import HERE, free_port, run_hscale, wait_port


class Backend:
    def __init__(self, procs, name, health_file=None):
        self.name = name
        self.port = free_port()
        args = [sys.executable, os.path.join(HERE, "gw_backend.py"), self.port, name]
        if health_file:
            args += ["--health-file", health_file]
        self.proc = procs.start(args, name=f"backend-{name}")
        wait_port(self.port, proc=self.proc)

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"


class Gateway:
    def __init__(self, procs, backends=(), config=None, workers=1, admin=True, extra=(), env=None):
        self.port = free_port()
        self.admin_port = free_port() if admin else None
        args = ["gateway", "--listen", f"127.0.0.1:{self.port}", "--workers", str(workers)]
        for b in backends:
            args += ["--backend", b.addr]
        if admin:
            args += ["--admin", f"127.0.0.1:{self.admin_port}"]
        if config:
            args += ["-c", config]
        args += list(extra)
        self.proc = procs.hscale(*args, name="gateway", env=env)
        wait_port(self.port, proc=self.proc)
        if admin:
            wait_port(self.admin_port, proc=self.proc)

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def admin_url(self, path):
        return f"http://127.0.0.1:{self.admin_port}{path}"


def raw(port, data, timeout=5.0, read_until_close=False):
    """Sends bytes, returns what comes back (until close, or a short quiet)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        s.settimeout(timeout if read_until_close else 0.5)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
        return out


def bench(tmp_path, url, *args, timeout=90):
    out = tmp_path / f"bench-{time.monotonic_ns()}.json"
    r = run_hscale("bench", url, *args, "--json", out, "-q", timeout=timeout)
    rep = json.loads(out.read_text()) if out.exists() else None
    return r, rep


def write_yaml(tmp_path, text, name="hscale.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


class _TimeoutRequests:
    """`requests` with a default timeout, so a hung gateway fails a test
    instead of hanging the suite."""

    class Session(requests.Session):
        def request(self, *a, **kw):
            kw.setdefault("timeout", 10)
            return super().request(*a, **kw)

    def __getattr__(self, name):
        attr = getattr(requests, name)
        if name in ("get", "post", "put", "patch", "delete", "head", "request"):
            def call(*a, **kw):
                kw.setdefault("timeout", 10)
                return attr(*a, **kw)
            return call
        return attr


http = _TimeoutRequests()
