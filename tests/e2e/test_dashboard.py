"""End-to-end tests of the control plane's dashboard: a real stack (hscale
gateway --admin, hscale control with app instances) under load, the page
opened in headless Chromium, its DOM checked for the instances and a chart
with data points, and a screenshot saved and checked to be a real image.
Also: the page is self-contained (nothing remote), needs no token itself but
sends one to the API, and the embedded copy matches dashboard.html."""
import os
import re
import shutil
import struct
import subprocess
import zlib

import pytest

from conftest import ROOT, free_port, wait_port
from test_control import Load, api, ready_instances, start_control, status, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/deps.sh)")


def chromium(tmp_path, url, *mode, budget_ms=6000):
    """Runs headless Chromium on url; virtual time lets the page's 2 s
    polling run a few rounds without the test waiting for real."""
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}", *mode, url]
    r = subprocess.run(args, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def png_info(path):
    """Width, height and the number of distinct bytes of the decoded image
    data: a blank or failed render is a PNG too, but a flat one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    return width, height, len(set(zlib.decompress(idat)))


def start_stack(procs, tmp_path, instances=2):
    gport, aport = free_port(), free_port()
    (tmp_path / "gw.yaml").write_text(
        "gateway:\n"
        f"  listen: 127.0.0.1:{gport}\n"
        f"  admin: 127.0.0.1:{aport}\n"
        "  pools:\n"
        "    - name: app\n"
        "      health: {interval: 1s, timeout: 500ms}\n"
        "  routes:\n"
        "    - prefix: /\n"
        "      pool: app\n")
    gw = procs.hscale("gateway", "-c", tmp_path / "gw.yaml", name="gateway")
    wait_port(aport, proc=gw)
    wait_port(gport, proc=gw)
    _, port = start_control(procs, tmp_path, "--gateway", f"http://127.0.0.1:{aport}",
                            "--pool", "app", instances=instances)
    wait_until(lambda: len([i for i in ready_instances(port) if i["registered"]]) == instances,
               what=f"{instances} registered")
    return gport, aport, port


def test_embedded_page_is_current():
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gen_dashboard.sh"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@needs_chromium
def test_dashboard_shows_live_instances_and_charts(procs, tmp_path):
    gport, aport, port = start_stack(procs, tmp_path)

    # Served at / and /dashboard, with nothing fetched from anywhere else.
    for path in ("/", "/dashboard"):
        code, page = api(port, "GET", path)
        assert code == 200 and "<svg" in page and "hscale" in page
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page

    # Load through the gateway, and a scaling event to show on the axis.
    with Load(gport) as load:
        assert api(port, "POST", "/api/v1/scaling/desired", {"count": 3})[0] == 200
        wait_until(lambda: len(ready_instances(port)) == 3, what="3 ready")
        wait_until(lambda: load.ok > 200, what="some load")
        # A few samples of the control plane's own series (one per check
        # interval), so the charts have lines, not single dots.
        code, met = api(port, "GET", "/api/v1/scaling/metrics")
        if code == 200:
            wait_until(lambda: len(api(port, "GET", "/api/v1/scaling/metrics")[1]["series"]) >= 3,
                       timeout=30, what="3 metric samples")
        dom = chromium(tmp_path, f"http://127.0.0.1:{port}/", "--dump-dom")
    assert load.fail == [], load.fail[:5]

    insts = {i["id"]: i["state"] for i in status(port)["instances"]}
    rows = dict(re.findall(r'<tr class="instance" data-id="([^"]+)" data-state="([^"]+)"', dom))
    assert rows == insts, dom[:3000]
    for iid in insts:
        assert re.search(rf'<td class="id">{re.escape(iid)}</td>', dom)
    assert 'class="badge s-ready">ready<' in dom
    assert re.search(r'id="conn" class="ok">live', dom), "the page never reached the API"

    points = dict(re.findall(r'<svg class="chart" id="(c-[a-z0-9]+)"[^>]*data-points="(\d+)"', dom))
    assert set(points) == {"c-rps", "c-p95", "c-err", "c-inst"}, points
    assert int(points["c-inst"]) >= 2, points      # instance count, at least two samples
    inst_svg = re.search(r'<svg class="chart" id="c-inst".*?</svg>', dom, re.S).group(0)
    assert '<polyline class="series"' in inst_svg, inst_svg
    # The manual scale-out is in the events table and drawn on the time axis.
    assert re.search(r'<tr class="event">.*?2 \u2192 3', dom, re.S), "no scaling event listed"
    assert 'class="ev"' in dom

    shot = tmp_path / "dashboard.png"
    chromium(tmp_path, f"http://127.0.0.1:{port}/", f"--screenshot={shot}", "--window-size=1280,900")
    w, h, distinct = png_info(shot)
    assert (w, h) == (1280, 900)
    assert shot.stat().st_size > 20000 and distinct > 50, (shot.stat().st_size, distinct)


@needs_chromium
def test_dashboard_asks_for_the_token_and_uses_it(procs, tmp_path):
    _, port = start_control(procs, tmp_path, instances=1, env={"HSCALE_CONTROL_TOKEN": "s3cret"})
    wait_until(lambda: len(ready_instances(port, token="s3cret")) == 1, what="1 ready")
    assert api(port, "GET", "/")[0] == 200            # the page holds no data
    dom = chromium(tmp_path, f"http://127.0.0.1:{port}/", "--dump-dom", budget_ms=3000)
    assert 'id="auth" style="display: block;"' in dom and "token required" in dom
    assert 'class="instance"' not in dom
    dom = chromium(tmp_path, f"http://127.0.0.1:{port}/#token=s3cret", "--dump-dom", budget_ms=3000)
    assert re.search(r'id="conn" class="ok">live', dom)
    assert 'data-id="i-1" data-state="ready"' in dom


def test_dashboard_is_served_with_no_instances(procs, tmp_path):
    """The page is static: it answers with no instances and no gateway."""
    _, port = start_control(procs, tmp_path, instances=0)
    code, page = api(port, "GET", "/dashboard")
    assert code == 200 and page.startswith("<!DOCTYPE html>")


@needs_chromium
def test_dashboard_picks_one_of_several_services(procs, tmp_path):
    """Two services of the reference app behind one control plane: the page
    offers both and #service=NAME shows the second's own instances."""
    port = free_port()
    cfg = tmp_path / "svc.yaml"
    cfg.write_text(f"control:\n  listen: 127.0.0.1:{port}\n  state_dir: {tmp_path}/state\n"
                   "  sd_file: ''\n"
                   "services:\n"
                   "  - name: web\n    instances: 1\n    autoscaling: {enabled: false}\n"
                   "  - name: reports\n    instances: 2\n    autoscaling: {enabled: false}\n")
    p = procs.hscale("control", "-c", cfg, name="control")
    wait_port(port, proc=p)
    wait_until(lambda: len([i for i in api(port, "GET", "/api/v1/services/reports/instances")[1]["instances"]
                            if i["state"] == "ready"]) == 2, what="2 reports instances")
    dom = chromium(tmp_path, f"http://127.0.0.1:{port}/#service=reports", "--dump-dom")
    assert re.search(r'id="conn" class="ok">live', dom), dom[:3000]
    # the selector is shown (display reset) and offers both services
    assert 'id="svcbox" style=""' in dom, dom[:3000]
    assert '<option value="web">web</option><option value="reports">reports</option>' in dom
    rows = re.findall(r'<tr class="instance" data-id="([^"]+)"', dom)
    ids = sorted(i["id"] for i in api(port, "GET", "/api/v1/services/reports/instances")[1]["instances"])
    assert sorted(rows) == ids and len(ids) == 2, (rows, ids)
    assert re.search(r'id="pool">reports<', dom)
    assert os.path.isdir(tmp_path / "state" / "reports" / "logs")
