"""Control surfaces under attack: off-loopback listeners without a token,
cross-site and DNS-rebinding requests, missing, wrong and read-only tokens,
repeated failed logins, TLS with and without the CA, and the audit trail
(issue 19). Every refused request is checked to have changed nothing."""
import http.client
import json
import os
import signal
import ssl
import subprocess

import pytest

from conftest import free_port, read_log, run_hscale, wait_port
from gw_util import Gateway, raw
from test_control import start_control, wait_until

ADMIN = "tok-Adm1n-5ecret-7f3a"
READ = "tok-R3ad-only-91c2"
PY_APP = "python3 -m http.server {port} --bind {host}"


def call(port, method, path, body=None, headers=None, token=None, tls=None, timeout=5):
    """One request with exactly the headers given (plus Host unless set)."""
    if tls is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    hs = dict(headers or {})
    if token:
        hs["Authorization"] = f"Bearer {token}"
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    skip_host = "Host" in hs
    conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
    for k, v in hs.items():
        conn.putheader(k, v)
    data = body.encode() if isinstance(body, str) else body
    if data is not None or method in ("POST", "PUT", "PATCH"):
        conn.putheader("Content-Length", str(len(data or b"")))
    conn.endheaders(data)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    try:
        out = json.loads(raw) if raw else None
    except ValueError:
        out = raw.decode("utf-8", "replace")
    return r.status, out, dict(r.getheaders())


JSON = {"Content-Type": "application/json"}


def desired(port, token=None):
    code, body, _ = call(port, "GET", "/api/v1/scaling/status", token=token)
    assert code == 200, body
    return body["desired"]


def audit(port, token=None, tls=None):
    code, body, _ = call(port, "GET", "/api/v1/audit", token=token, tls=tls)
    assert code == 200, body
    return body["events"]


def deploy_events(port, token=None):
    code, body, _ = call(port, "GET", "/api/v1/deploys", token=token)
    assert code == 200, body
    return body["events"]


# ---- off loopback without a token -------------------------------------------

def test_off_loopback_start_without_token_is_refused(tmp_path):
    r = run_hscale("control", "--listen", f"0.0.0.0:{free_port()}", "--instances", "0",
                   "--state-dir", tmp_path / "c")
    assert r.returncode != 0
    assert "not a loopback address" in r.stderr and "HSCALE_CONTROL_TOKEN" in r.stderr, r.stderr

    r = run_hscale("gateway", "--listen", f"127.0.0.1:{free_port()}",
                   "--admin", f"0.0.0.0:{free_port()}", "--backend", "127.0.0.1:9")
    assert r.returncode != 0 and "HSCALE_GATEWAY_ADMIN_TOKEN" in r.stderr, r.stderr

    for flag, hint in (("--admin", "HSCALE_GATEWAY_ADMIN_TOKEN"),
                       ("--control", "HSCALE_CONTROL_TOKEN")):
        data = tmp_path / f"up{flag}"
        r = run_hscale("up", flag, f"0.0.0.0:{free_port()}", "--data", data, timeout=60)
        assert r.returncode == 2 and hint in r.stderr, r.stderr
        assert not data.exists(), "up seeded data before refusing"


def test_tokens_come_from_env_or_file_never_a_flag(procs, tmp_path):
    r = run_hscale("control", "--token", ADMIN)
    assert r.returncode == 2 and "shows in ps" in r.stderr and ADMIN not in r.stderr, r.stderr
    r = run_hscale("doctor", "--token", ADMIN)
    assert r.returncode == 2 and "shows in ps" in r.stderr, r.stderr

    tf = tmp_path / "admin.token"
    tf.write_text(ADMIN + "\n")
    os.chmod(tf, 0o644)
    r = run_hscale("control", "--token-file", tf, "--instances", "0", "--check")
    assert r.returncode == 2 and "chmod 600" in r.stderr, r.stderr
    os.chmod(tf, 0o600)
    p, port = start_control(procs, tmp_path, "--token-file", str(tf), instances=0)
    assert call(port, "GET", "/api/v1/scaling/status")[0] == 401
    assert call(port, "GET", "/api/v1/scaling/status", token=ADMIN)[0] == 200
    assert ADMIN not in " ".join(open(f"/proc/{p.pid}/cmdline").read().split("\0"))
    # --check prints the effective config, credentials hidden
    r = run_hscale("control", "--instances", "0", "--check",
                   env={"HSCALE_CONTROL_TOKEN": ADMIN, "HSCALE_CONTROL_GATEWAY_TOKEN": ADMIN + "gw"})
    assert r.returncode == 0, r.stderr
    assert ADMIN not in r.stdout and json.loads(r.stdout)["token"] == "(redacted)", r.stdout
    cfg = tmp_path / "gw.yaml"
    cfg.write_text('gateway:\n  admin_token: "%s"\n  pools: [{name: p, backends: [{address: "127.0.0.1:1"}]}]\n'
                   '  routes: [{prefix: /, pool: p}]\n' % ADMIN)
    r = run_hscale("gateway", "-c", cfg, "--check")
    assert r.returncode == 0, r.stderr
    assert ADMIN not in r.stdout and json.loads(r.stdout)["admin_token"] == "(redacted)", r.stdout


# ---- cross-site and rebinding -----------------------------------------------

def test_cross_site_requests_change_nothing(procs, tmp_path):
    marker = tmp_path / "pwned"
    p, port = start_control(procs, tmp_path, "--command", PY_APP, "--ready-path", "/",
                            instances=1)
    wait_until(lambda: [i for i in call(port, "GET", "/api/v1/instances")[1]["instances"]
                        if i["state"] == "ready"], what="1 ready")
    evil_deploy = {"strategy": "rolling", "version": "evil",
                   "command": f"sh -c 'touch {marker}; exec {PY_APP}'"}
    here = f"127.0.0.1:{port}"
    refused = [
        # a page's "simple" requests: no preflight, so no JSON content type
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
        ({}, 415),
        # a page that got a JSON request out anyway, from its own origin
        ({**JSON, "Origin": "http://evil.example"}, 403),
        ({**JSON, "Origin": "null"}, 403),
        ({**JSON, "Origin": f"http://{here}.evil.example"}, 403),
        # DNS rebinding: our address under the attacker's name
        ({**JSON, "Host": f"evil.example:{port}"}, 421),
        ({**JSON, "Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}, 421),
    ]
    for headers, want in refused:
        code, body, _ = call(port, "POST", "/api/v1/scaling/desired", {"count": 3}, headers)
        assert code == want, (headers, code, body)
        code, body, _ = call(port, "POST", "/api/v1/deploys", evil_deploy, headers)
        assert code == want, (headers, code, body)
        code, body, _ = call(port, "POST", "/api/v1/scaling/start", None, headers)
        assert code == want, (headers, code, body)
    # reading through a rebinding name is refused too; probes stay open
    assert call(port, "GET", "/api/v1/scaling/status", headers={"Host": "evil.example"})[0] == 421
    assert call(port, "GET", "/", headers={"Host": "evil.example"})[0] == 421
    assert call(port, "GET", "/health", headers={"Host": "probe.internal"})[0] == 200

    assert desired(port) == 1
    assert len(call(port, "GET", "/api/v1/instances")[1]["instances"]) == 1
    assert deploy_events(port) == []
    assert audit(port) == []
    assert not marker.exists()
    assert "audit:" not in read_log(p)

    # The dashboard keeps working from its own origin.
    code, page, _ = call(port, "GET", "/", headers={"Host": here})
    assert code == 200 and "fetch(" in page
    code, _, _ = call(port, "GET", "/api/v1/scaling/status",
                      headers={"Host": here, "Origin": f"http://{here}"})
    assert code == 200
    code, _, _ = call(port, "GET", "/api/v1/scaling/status", headers={"Host": f"localhost:{port}"})
    assert code == 200
    # and a same-origin JSON change is accepted, once, with one audit event
    code, body, hs = call(port, "POST", "/api/v1/scaling/desired", {"count": 1},
                          {**JSON, "Origin": f"http://{here}", "X-Request-Id": "req-42"})
    assert code == 200 and hs.get("X-Request-Id") == "req-42", (code, body)
    ev = audit(port)
    assert len(ev) == 1 and ev[0]["request_id"] == "req-42" and ev[0]["role"] == "local", ev
    assert ev[0]["peer"].startswith("127.0.0.1:") and "desired count set to 1" in ev[0]["what"]


def test_allowed_hosts_let_a_name_in(procs, tmp_path):
    _, port = start_control(procs, tmp_path, instances=0,
                            env={"HSCALE_CONTROL_ALLOWED_HOSTS": "ctl.example"})
    assert call(port, "GET", "/api/v1/scaling/status", headers={"Host": "ctl.example"})[0] == 200
    code, body, _ = call(port, "GET", "/api/v1/scaling/status", headers={"Host": "other.example"})
    assert code == 421 and "control.allowed_hosts" in body["error"], body


def test_hostile_bodies_and_heads_are_capped(procs, tmp_path):
    _, port = start_control(procs, tmp_path, instances=0)
    deep = "[" * 100 + "]" * 100
    code, body, _ = call(port, "POST", "/api/v1/scaling/desired", deep, JSON)
    assert code == 400 and "nested deeper" in body["error"], body
    resp = raw(port, b"POST /api/v1/scaling/desired HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 413"), resp
    many = {**JSON, **{f"X-H{i}": "v" for i in range(40)}}
    code, _, _ = call(port, "POST", "/api/v1/scaling/desired", {"count": 0}, many)
    assert code == 431
    assert desired(port) == 0 and audit(port) == []


# ---- tokens and roles ----------------------------------------------------------

def test_read_token_reads_admin_token_changes(procs, tmp_path):
    p, port = start_control(procs, tmp_path, instances=0,
                            env={"HSCALE_CONTROL_TOKEN": ADMIN, "HSCALE_CONTROL_READ_TOKEN": READ})
    code, body, hs = call(port, "GET", "/api/v1/scaling/status")
    assert code == 401 and hs.get("WWW-Authenticate") == "Bearer", body
    assert call(port, "GET", "/api/v1/scaling/status", token="wrong")[0] == 401
    for path in ("/api/v1/scaling/status", "/api/v1/instances", "/api/v1/scaling/history",
                 "/api/v1/deploys", "/api/v1/audit"):
        assert call(port, "GET", path, token=READ)[0] == 200, path
        assert call(port, "GET", path, token=ADMIN)[0] == 200, path

    changes = [("POST", "/api/v1/scaling/desired", {"count": 2}),
               ("PUT", "/api/v1/scaling/config", {"enabled": True}),
               ("POST", "/api/v1/scaling/start", None),
               ("POST", "/api/v1/deploys", {"strategy": "rolling", "version": "v9",
                                            "command": "sh -c 'exit 1'"})]
    for method, path, body in changes:
        code, out, _ = call(port, method, path, body, JSON, token=READ)
        assert code == 403 and "read-only" in out["error"], (path, code, out)
        code, out, _ = call(port, method, path, body, JSON)
        assert code == 401, (path, code, out)
    assert desired(port, READ) == 0
    assert deploy_events(port, READ) == [] and audit(port, READ) == []
    _, st, _ = call(port, "GET", "/api/v1/scaling/status", token=READ)
    assert st["autoscaling"]["enabled"] is False, st

    # The admin token changes; each change leaves exactly one audit event.
    code, out, _ = call(port, "POST", "/api/v1/scaling/desired", {"count": 0}, JSON, token=ADMIN)
    assert code == 200, out
    code, out, _ = call(port, "POST", "/api/v1/scaling/stop", None, JSON, token=ADMIN)
    assert code == 200, out
    code, out, _ = call(port, "POST", "/api/v1/deploys", {"strategy": "rolling", "version": "v2",
                                               "command": "true"},
             {**JSON, "X-Request-Id": "dep-7"}, token=ADMIN)
    assert code == 202, out
    ev = audit(port, READ)
    assert [e["role"] for e in ev] == ["admin", "admin", "admin"], ev
    assert "desired count" in ev[0]["what"] and "autoscaling: stopped" in ev[1]["what"], ev
    assert "deploy: version v2 started, new command" in ev[2]["what"], ev
    # the deploy history shows who asked
    def started():
        return [e for e in deploy_events(port, READ) if e["kind"] == "deploy_started"]
    wait_until(started, timeout=10, what="the deploy's started event")
    started = started()
    assert len(started) == 1 and started[0]["requested_by"]["role"] == "admin", started
    assert started[0]["requested_by"]["request_id"] == "dep-7", started
    # in the scaling history too, and in the log; the token nowhere
    hist = call(port, "GET", "/api/v1/scaling/history", token=READ)[1]["events"]
    assert len([e for e in hist if e.get("kind") == "audit"]) == 2, hist
    log = read_log(p)
    assert log.count("audit:") == 3, log
    state = tmp_path / "control"
    files = [log] + [f.read_text() for f in state.glob("*.jsonl")]
    assert not any(ADMIN in t or READ in t for t in files)


def test_repeated_failed_logins_are_slowed_down(procs, tmp_path):
    _, port = start_control(procs, tmp_path, instances=0, env={"HSCALE_CONTROL_TOKEN": ADMIN})
    for i in range(5):
        assert call(port, "GET", "/api/v1/instances", token=f"guess-{i}")[0] == 401
    code, body, hs = call(port, "GET", "/api/v1/instances", token="guess-5")
    assert code == 429 and int(hs["Retry-After"]) >= 1, body
    # even the right token waits: the attacker learns nothing meanwhile
    assert call(port, "GET", "/api/v1/instances", token=ADMIN)[0] == 429
    wait_until(lambda: call(port, "GET", "/api/v1/instances", token=ADMIN)[0] == 200,
               timeout=10, what="the slowdown to end")
    assert call(port, "GET", "/health")[0] == 200


class Dead:
    addr = "127.0.0.1:9"     # a backend nobody answers: the pool only has to exist


def test_gateway_admin_roles_guard_and_audit(procs):
    gw = Gateway(procs, [Dead()], env={"HSCALE_GATEWAY_ADMIN_TOKEN": ADMIN,
                                 "HSCALE_GATEWAY_ADMIN_READ_TOKEN": READ})
    ap = gw.admin_port
    path = "/api/v1/pools/default/backends"
    new = {"address": f"127.0.0.1:{free_port()}"}

    def members():
        code, body, _ = call(ap, "GET", "/api/v1/pools/default", token=READ)
        assert code == 200, body
        return [m["address"] for m in body["members"]]

    before = members()
    assert call(ap, "POST", path, new, JSON)[0] == 401
    assert call(ap, "POST", path, new, JSON, token="nope")[0] == 401
    assert call(ap, "POST", path, new, JSON, token=READ)[0] == 403
    assert call(ap, "PUT", "/api/v1/routes", {"routes": []}, JSON, token=READ)[0] == 403
    assert call(ap, "POST", path, new, {"Content-Type": "text/plain"}, token=ADMIN)[0] == 415
    assert call(ap, "POST", path, new, {**JSON, "Origin": "http://evil.example"},
                token=ADMIN)[0] == 403
    assert call(ap, "POST", path, new, {**JSON, "Host": "evil.example"}, token=ADMIN)[0] == 421
    assert members() == before and audit(ap, READ) == []

    code, body, _ = call(ap, "POST", path, new, JSON, token=ADMIN)
    assert code == 201, body
    code, body, _ = call(ap, "DELETE", f"{path}/{new['address']}", token=ADMIN)
    assert code == 200, body
    ev = audit(ap, READ)
    assert len(ev) == 2 and all(e["role"] == "admin" for e in ev), ev
    assert "added" in ev[0]["what"] and "removed" in ev[1]["what"], ev
    assert read_log(gw.proc).count("audit:") == 2


# ---- TLS -----------------------------------------------------------------------

def make_cert(d, name):
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def served_cert(port):
    return ssl.get_server_certificate(("127.0.0.1", port))


def pem_body(text):
    return "".join(line for line in text.splitlines() if "-----" not in line)


def renew_and_reload(d, cert, key, proc, port):
    """Replaces the pair in place, sends SIGHUP, waits until port serves it."""
    old = served_cert(port)
    cert2, key2 = make_cert(d, "renewed")
    os.replace(cert2, cert)
    os.replace(key2, key)
    os.kill(proc.pid, signal.SIGHUP)
    wait_until(lambda: pem_body(served_cert(port)) != pem_body(old), timeout=10,
               what="the renewed certificate")
    assert pem_body(served_cert(port)) == pem_body(cert.read_text())


def test_tls_control_api_and_clients(procs, tmp_path):
    cert, key = make_cert(tmp_path, "ctl")
    env = {"HSCALE_CONTROL_TLS_CERT": str(cert), "HSCALE_CONTROL_TLS_KEY": str(key),
           "HSCALE_CONTROL_TOKEN": ADMIN}
    p, port = start_control(procs, tmp_path, instances=0, env=env)
    url = f"https://127.0.0.1:{port}"

    # Python clients: without the CA the handshake fails, with it the API answers.
    with pytest.raises(ssl.SSLCertVerificationError):
        call(port, "GET", "/health", tls=ssl.create_default_context())
    ca = ssl.create_default_context(cafile=str(cert))
    assert call(port, "GET", "/api/v1/scaling/status", token=ADMIN, tls=ca)[0] == 200
    code, body, _ = call(port, "POST", "/api/v1/scaling/desired", {"count": 0}, JSON,
                         token=ADMIN, tls=ca)
    assert code == 200, body
    assert len(audit(port, ADMIN, tls=ca)) == 1

    # hscale's own clients: the same.
    tok = {"HSCALE_CONTROL_TOKEN": ADMIN}
    r = run_hscale("status", "--control", url, env=tok)
    assert r.returncode == 1 and "certificate" in r.stderr, r.stderr
    r = run_hscale("status", "--control", url, "--ca-file", cert, env=tok)
    assert r.returncode == 0, r.stderr
    r = run_hscale("status", "--control", url, "--json", env={**tok, "HSCALE_CA_FILE": str(cert)})
    assert r.returncode == 0 and json.loads(r.stdout)["status"]["desired"] == 0, r.stderr
    r = run_hscale("deploy", "status", "--control", url, env=tok)
    assert r.returncode != 0 and "certificate" in (r.stderr + r.stdout)
    code, body, _ = call(port, "POST", "/api/v1/deploys", {"strategy": "rolling", "version": "v2"},
                         JSON, token=ADMIN, tls=ca)
    assert code == 202, body
    wait_until(lambda: "succeeded" in run_hscale("deploy", "status", "--control", url,
                                                  "--ca-file", cert, env=tok).stdout,
               timeout=20, what="the deploy seen over https")
    r = run_hscale("doctor", "--control", url, "--json", "--timeout", "2s", env=tok)
    checks = {(c["check"], c["status"]) for c in json.loads(r.stdout)["checks"]}
    assert ("control", "fail") in checks, checks
    r = run_hscale("doctor", "--control", url, "--ca-file", cert, "--json", "--timeout", "2s",
                   env=tok)
    checks = {(c["check"], c["status"]) for c in json.loads(r.stdout)["checks"]}
    assert ("control", "ok") in checks, checks
    # a plain-http client gets no answer from the TLS listener
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        call(port, "GET", "/health", timeout=3)

    # SIGHUP reloads a renewed certificate.
    renew_and_reload(tmp_path, cert, key, p, port)
    assert "TLS certificate reloaded" in read_log(p)


def test_tls_gateway_admin_and_control_to_gateway(procs, tmp_path):
    cert, key = make_cert(tmp_path, "gw")
    gwcfg = tmp_path / "gw.yaml"
    gport, aport = free_port(), free_port()
    gwcfg.write_text("gateway:\n"
                     f"  listen: 127.0.0.1:{gport}\n"
                     f"  admin: 127.0.0.1:{aport}\n"
                     f"  admin_tls_cert: {cert}\n"
                     f"  admin_tls_key: {key}\n"
                     "  pools:\n    - name: app\n      health: {interval: 1s, timeout: 500ms}\n"
                     "  routes:\n    - prefix: /\n      pool: app\n")
    gw = procs.hscale("gateway", "-c", gwcfg, name="gateway",
                      env={"HSCALE_GATEWAY_ADMIN_TOKEN": ADMIN})
    wait_port(aport, proc=gw)
    ca = ssl.create_default_context(cafile=str(cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        call(aport, "GET", "/api/v1/pools", token=ADMIN, tls=ssl.create_default_context())
    assert call(aport, "GET", "/api/v1/pools", token=ADMIN, tls=ca)[0] == 200

    def members():
        return call(aport, "GET", "/api/v1/pools/app", token=ADMIN, tls=ca)[1]["members"]

    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    common = ("--gateway", f"https://127.0.0.1:{aport}", "--pool", "app", "--command", PY_APP,
              "--ready-path", "/")
    # Without the CA the control plane cannot register anything.
    bad, bport = start_control(procs, tmp_path / "bad", *common, instances=1,
                               env={"HSCALE_CONTROL_GATEWAY_TOKEN": ADMIN})
    wait_until(lambda: "certificate" in read_log(bad), timeout=20, what="a TLS refusal")
    assert members() == []
    procs.stop(bad)
    # With it, its instance joins the pool through https.
    _, port = start_control(procs, tmp_path / "good", *common, instances=1,
                            env={"HSCALE_CONTROL_GATEWAY_TOKEN": ADMIN,
                                 "HSCALE_CONTROL_GATEWAY_CA_FILE": str(cert)})
    wait_until(lambda: len(members()) == 1, timeout=30, what="1 member registered over https")
    ev = audit(aport, ADMIN, tls=ca)
    assert len(ev) == 1 and "added to pool app" in ev[0]["what"], ev

    # SIGHUP: the gateway reloads a renewed certificate for its admin API.
    renew_and_reload(tmp_path, cert, key, gw, aport)
    assert "admin TLS certificate reloaded" in read_log(gw)
