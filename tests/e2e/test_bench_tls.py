"""End-to-end tests for `hscale bench https://...` against a real nginx
serving a certificate from a throw-away CA (tests/e2e/tls_util.py).

What is checked is what the handshake counters mean: with keep-alive one
handshake per connection; with --new-conn one per request, all full, or
nearly all resumed with --tls-resume (TLS 1.2 session ids and TLS 1.3
tickets alike); an untrusted certificate or a wrong name stops the run at
once with the reason and the flag that fixes it. bench/tls_floor.c, the
library's floor in bench/tls_vs_peers.sh, resumes exactly when asked.
"""
import json
import os
import subprocess

import pytest

from conftest import ROOT, run_hscale
from tls_util import make_ca, make_leaf, start_nginx_tls


@pytest.fixture
def tls_server(procs, tmp_path):
    """(port, ca_cert) of an nginx with a certificate for localhost/127.0.0.1."""
    ca = make_ca(tmp_path)
    cert, key = make_leaf(tmp_path, ca)
    return start_nginx_tls(procs, tmp_path, cert, key), ca[0]


def bench(tmp_path, url, *args, timeout=60):
    out = tmp_path / "report.json"
    if out.exists():
        out.unlink()
    r = run_hscale("bench", url, *args, "--json", out, "-q", timeout=timeout)
    rep = json.loads(out.read_text()) if out.exists() else None
    return r, rep


def test_keep_alive_one_handshake_per_connection(tls_server, tmp_path):
    port, ca = tls_server
    r, rep = bench(tmp_path, f"https://localhost:{port}/", "--cacert", ca, "-c", "4", "-t", "2",
                   "-d", "1s")
    assert r.returncode == 0, r.stdout + r.stderr
    tot, tls = rep["total"], rep["tls"]
    assert tot["failures"] == 0 and tot["status"] == {"200": tot["count"]}, tot
    assert rep["connections_opened"] == 4, rep["connections_opened"]
    assert tls["handshakes"] == 4 and tls["full"] == 4 and tls["failed"] == 0, tls
    assert tot["count"] > 10 * tls["handshakes"], (tot["count"], tls)
    assert tls["verified"] is True and tls["alpn"] == "http/1.1", tls
    assert tls["version"] in ("TLSv1.2", "TLSv1.3"), tls
    assert "handshakes: 4 " in r.stdout and "verified" in r.stdout, r.stdout


@pytest.mark.parametrize("proto", ["TLSv1.2", "TLSv1.3"])
def test_new_conn_full_then_resumed_handshakes(procs, tmp_path, proto):
    ca = make_ca(tmp_path)
    cert, key = make_leaf(tmp_path, ca)
    port = start_nginx_tls(procs, tmp_path, cert, key, protocols=proto)
    url = f"https://127.0.0.1:{port}/"   # an IP literal: verified against the IP SAN, no SNI

    r, rep = bench(tmp_path, url, "--cacert", ca[0], "--new-conn", "-c", "2", "-t", "1", "-d", "1s")
    assert r.returncode == 0, r.stdout + r.stderr
    tot, tls = rep["total"], rep["tls"]
    assert tot["failures"] == 0 and tot["count"] >= 20, tot
    assert tls["version"] == proto, tls
    # One handshake per request; at most one per connection is in flight at the end.
    assert abs(tls["handshakes"] - tot["count"]) <= 2, (tls, tot["count"])
    assert tls["resumed"] == 0 and tls["full"] == tls["handshakes"], tls
    assert rep["new_conn"] is True and rep["connections_opened"] >= tot["count"], rep

    r, rep = bench(tmp_path, url, "--cacert", ca[0], "--new-conn", "--tls-resume", "-c", "2",
                   "-t", "1", "-d", "1s")
    assert r.returncode == 0, r.stdout + r.stderr
    tot, tls = rep["total"], rep["tls"]
    assert tot["failures"] == 0 and abs(tls["handshakes"] - tot["count"]) <= 2, (tls, tot)
    assert tls["resume"] is True and tls["resumed_ratio"] > 0.9, tls
    assert tls["full"] >= 1, tls   # the first one per connection cannot resume


def test_untrusted_or_misnamed_certificate_stops_the_run(tls_server, tmp_path):
    port, ca = tls_server
    url = f"https://127.0.0.1:{port}/"
    r, rep = bench(tmp_path, url, "-c", "2", "-d", "5s")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "certificate of 127.0.0.1 was refused" in r.stderr, r.stderr
    assert "--cacert FILE" in r.stderr and "--insecure" in r.stderr, r.stderr
    assert rep["tls"]["aborted"] is True and rep["total"]["errors"]["tls"] >= 1, rep
    assert rep["tls"]["handshakes"] == 0 and rep["total"]["status"] == {}, rep
    assert rep["elapsed_s"] < 3, rep["elapsed_s"]   # stopped at once, not after 5 s

    r, rep = bench(tmp_path, url, "--cacert", ca, "--sni", "other.example", "-c", "2", "-d", "5s")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "hostname mismatch" in r.stderr and "--sni" in r.stderr, r.stderr

    # --insecure: a load tool's switch for a test certificate, said in the report.
    r, rep = bench(tmp_path, url, "--insecure", "-c", "2", "-d", "500ms")
    assert r.returncode == 0, r.stdout + r.stderr
    assert rep["tls"]["verified"] is False and rep["total"]["failures"] == 0, rep
    assert "NOT verified" in r.stdout, r.stdout


def test_tls_flags_are_checked_before_any_load(tls_server, tmp_path):
    port, ca = tls_server
    r = run_hscale("bench", f"http://127.0.0.1:{port}/", "--cacert", ca, "-d", "1s")
    assert r.returncode == 2 and "--cacert goes with an https:// URL" in r.stderr, r.stderr
    r = run_hscale("bench", f"https://127.0.0.1:{port}/", "--cacert", ca, "--insecure", "-d", "1s")
    assert r.returncode == 2 and "contradict" in r.stderr, r.stderr
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    r = run_hscale("bench", f"https://127.0.0.1:{port}/", "--cacert", bad, "-d", "1s")
    assert r.returncode == 2 and "--cacert" in r.stderr and "PEM" in r.stderr, r.stderr
    r = run_hscale("bench", f"https://127.0.0.1:{port}/", "--cacert", tmp_path / "none.pem")
    assert r.returncode == 2 and "cannot read" in r.stderr, r.stderr


def test_the_library_floor_resumes_as_asked(tmp_path):
    """bench/tls_floor.c (the floor under every proxy in tls_vs_peers.sh)
    really resumes when asked and only then: its bound on what hscale can
    reach rests on resumed handshakes being resumed."""
    exe = tmp_path / "tls_floor"
    subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror", "-Wshadow",
                    "-I", os.path.join(ROOT, "src"), os.path.join(ROOT, "bench/tls_floor.c"),
                    os.path.join(ROOT, "src/http/tls_ctx.c"), "-o", exe, "-lssl", "-lcrypto"],
                   check=True, capture_output=True)
    ca = make_ca(tmp_path)
    cert, key = make_leaf(tmp_path, ca)
    for kind, version in (("full", "1.2"), ("full", "1.3"), ("resumed", "1.2"), ("resumed", "1.3")):
        r = subprocess.run([exe, cert, key, kind, version, "20"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        words = r.stdout.split()
        assert words[:3] == [kind, "TLS", version + ":"] and float(words[3]) > 0, r.stdout
        assert words[-2] == ("20/20" if kind == "resumed" else "0/20"), r.stdout
    r = subprocess.run([exe, cert, key, "resumed", "1.4"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "usage" in r.stderr, r.stderr
